// stockmixer::metrics::backtest (the top-k and TopkDropout backtest with costs), read_predictions_csv,
// and the PNG writer and line charts (io/png.hpp, io/plot.hpp).
//
// Tolerances: the backtest against evaluate's bt_long5 / bt_long10 is exact (the same stocks summed in
// the same order); hand-computed cases within 1e-15 absolute (a handful of additions of numbers below
// 1, each rounding by at most 2^-53 relative). PNG pixels are compared exactly, after decoding with an
// inflater written here from RFC 1951 (stored and fixed-Huffman blocks: what encode_png writes).
// tests/check_backtest.py checks the CLI against an independent pandas computation and decodes its
// equity.png with Python's zlib.
#include <stockmixer/io/plot.hpp>
#include <stockmixer/io/png.hpp>
#include <stockmixer/metrics/backtest.hpp>
#include <stockmixer/metrics/evaluate.hpp>

#include <catch2/catch.hpp>

#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "testing.hpp"

using namespace stockmixer;
using Catch::Matchers::Contains;

namespace {

const double kNaN = std::numeric_limits<double>::quiet_NaN();

// Random [N, days] pred, gt, mask: predictions on a coarse grid (many ties) or continuous, about
// `invalid` of the stocks masked each day, at least `min_valid` valid.
struct Market3 {
  Tensor<double> pred, gt, mask;
};
Market3 random_market(Index N, Index days, double invalid, bool ties, unsigned seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  Market3 m{Tensor<double>({N, days}), Tensor<double>({N, days}), Tensor<double>({N, days})};
  for (Index n = 0; n < N; ++n)
    for (Index t = 0; t < days; ++t) {
      m.pred(n, t) = ties ? std::floor(u(rng) * 4) / 4 : u(rng) - 0.5;
      // With tied predictions, returns on a 1e-4 grid (ties too); else continuous and of order 1 to 10,
      // so that the last bit of each day's return shows in a sum of 50 days that starts from 1.
      m.gt(n, t) = ties ? std::round((u(rng) - 0.5) * 0.1 * 1e4) / 1e4 : (u(rng) - 0.5) * 10;
      m.mask(n, t) = u(rng) < invalid ? 0.0 : 1.0;
    }
  return m;
}

// ---- a small inflater (RFC 1951 stored and fixed-Huffman blocks) and PNG reader ---------------------

struct BitReader {
  const std::string& s;
  std::size_t at = 0;  // bit position
  unsigned bit() {
    if (at / 8 >= s.size()) throw std::runtime_error("inflate: the stream ends early");
    const unsigned b = (static_cast<unsigned char>(s[at / 8]) >> (at % 8)) & 1u;
    ++at;
    return b;
  }
  unsigned bits(int n) {  // LSB first
    unsigned v = 0;
    for (int k = 0; k < n; ++k) v |= bit() << k;
    return v;
  }
  unsigned code(int n) {  // Huffman code, MSB first
    unsigned v = 0;
    for (int k = 0; k < n; ++k) v = (v << 1) | bit();
    return v;
  }
};

std::string inflate(const std::string& z) {
  static const int len_base[] = {3,  4,  5,  6,  7,  8,  9,  10, 11,  13,  15,  17,  19,  23, 27,
                                 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258};
  static const int len_extra[] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0};
  static const int dist_base[] = {1,   2,   3,   4,   5,   7,    9,    13,   17,   25,   33,   49,   65,    97,    129,
                                  193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577};
  static const int dist_extra[] = {0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13};
  REQUIRE(z.size() >= 6);
  REQUIRE(((static_cast<unsigned char>(z[0]) << 8) | static_cast<unsigned char>(z[1])) % 31 == 0);
  REQUIRE((static_cast<unsigned char>(z[0]) & 0x0F) == 8);  // deflate
  const std::string body = z.substr(2, z.size() - 6);
  BitReader r{body};
  std::string out;
  for (bool final = false; !final;) {
    final = r.bit();
    const unsigned type = r.bits(2);
    if (type == 0) {
      r.at = (r.at + 7) / 8 * 8;
      const unsigned len = r.bits(16), nlen = r.bits(16);
      REQUIRE((len ^ 0xFFFFu) == nlen);
      for (unsigned k = 0; k < len; ++k) out.push_back(static_cast<char>(r.bits(8)));
      continue;
    }
    REQUIRE(type == 1);  // encode_png writes stored or fixed blocks only
    for (;;) {
      int sym;
      unsigned c = r.code(7);
      if (c <= 0x17) sym = 256 + static_cast<int>(c);
      else {
        c = (c << 1) | r.bit();
        if (c >= 0x30 && c <= 0xBF) sym = static_cast<int>(c) - 0x30;
        else if (c >= 0xC0 && c <= 0xC7) sym = 280 + static_cast<int>(c) - 0xC0;
        else sym = 144 + static_cast<int>(((c << 1) | r.bit()) - 0x190);
      }
      if (sym < 256) {
        out.push_back(static_cast<char>(sym));
        continue;
      }
      if (sym == 256) break;
      REQUIRE(sym <= 285);
      const int l = sym - 257;
      const int length = len_base[l] + static_cast<int>(r.bits(len_extra[l]));
      REQUIRE((sym != 284 || length < 258));  // RFC 1951: 284 codes 227-257; 258 is 285
      const int d = static_cast<int>(r.code(5));
      REQUIRE(d < 30);
      const std::size_t dist = static_cast<std::size_t>(dist_base[d] + static_cast<int>(r.bits(dist_extra[d])));
      REQUIRE(dist <= out.size());
      for (int k = 0; k < length; ++k) out.push_back(out[out.size() - dist]);
    }
  }
  const std::string tail = z.substr(z.size() - 4);
  std::uint32_t adler = 0;
  for (char ch : tail) adler = (adler << 8) | static_cast<unsigned char>(ch);
  CHECK(adler == io::adler32(reinterpret_cast<const unsigned char*>(out.data()), out.size()));
  return out;
}

std::uint32_t be32(const std::string& s, std::size_t at) {
  std::uint32_t v = 0;
  for (std::size_t k = 0; k < 4; ++k) v = (v << 8) | static_cast<unsigned char>(s[at + k]);
  return v;
}

// The PNG's pixels, every chunk's CRC checked; only what encode_png writes (8-bit RGB, filter 0).
io::RgbImage decode_png(const std::string& png) {
  REQUIRE(png.substr(0, 8) == std::string("\x89PNG\r\n\x1a\n"));
  std::size_t at = 8;
  std::string idat, ihdr;
  std::vector<std::string> types;
  while (at < png.size()) {
    const std::uint32_t n = be32(png, at);
    const std::string type = png.substr(at + 4, 4), data = png.substr(at + 8, n);
    CHECK(be32(png, at + 8 + n) ==
          io::crc32(reinterpret_cast<const unsigned char*>(png.data() + at + 4), std::size_t{n} + 4));
    types.push_back(type);
    if (type == "IHDR") ihdr = data;
    if (type == "IDAT") idat += data;
    at += 12 + n;
  }
  REQUIRE(types.front() == "IHDR");
  REQUIRE(types.back() == "IEND");
  REQUIRE(ihdr.size() == 13);
  REQUIRE(ihdr.substr(8) == std::string("\x08\x02\x00\x00\x00", 5));
  const int w = static_cast<int>(be32(ihdr, 0)), h = static_cast<int>(be32(ihdr, 4));
  const std::string raw = inflate(idat);
  const std::size_t row = 1 + 3 * static_cast<std::size_t>(w);
  REQUIRE(raw.size() == row * static_cast<std::size_t>(h));
  io::RgbImage image(w, h);
  for (std::size_t y = 0; y < static_cast<std::size_t>(h); ++y) {
    REQUIRE(raw[y * row] == 0);
    for (std::size_t k = 0; k + 1 < row; ++k)
      image.pixels[y * (row - 1) + k] = static_cast<unsigned char>(raw[y * row + 1 + k]);
  }
  return image;
}

Index count_colour(const io::RgbImage& image, std::array<unsigned char, 3> rgb, int x0 = 0, int x1 = -1) {
  if (x1 < 0) x1 = image.width;
  Index n = 0;
  for (int y = 0; y < image.height; ++y)
    for (int x = x0; x < x1; ++x) n += image.get(x, y) == rgb;
  return n;
}

}  // namespace

// ---- the backtest -----------------------------------------------------------------------------------

TEST_CASE("backtest: top-K with no drop and no cost is evaluate's bt_long5 and bt_long10, bit for bit",
          "[backtest]") {
  // Tied predictions on 12 stocks (insertion sort decides ties) and on 40 (numpy's introsort does):
  // the backtest must pick the same stocks as evaluate and sum them in the same order.
  for (const auto& [N, ties] : std::vector<std::pair<Index, bool>>{{12, true}, {40, true}, {40, false}}) {
    const Market3 m = random_market(N, 50, N == 12 ? 0.1 : 0.2, ties, static_cast<unsigned>(N) + ties);
    // keep at least 10 valid stocks every day
    Tensor<double> mask = m.mask;
    for (Index t = 0; t < 50; ++t)
      for (Index n = 0; n < 10; ++n) mask(n, t) = 1;
    const metrics::Performance perf = metrics::evaluate(m.pred, m.gt, mask);
    INFO("N = " << N << (ties ? ", tied predictions" : ""));
    CHECK(metrics::backtest(m.pred, m.gt, mask, 5).gross_summary.cum_additive == perf.bt_long5);
    CHECK(metrics::backtest(m.pred, m.gt, mask, 10).gross_summary.cum_additive == perf.bt_long10);
    CHECK(metrics::backtest(m.pred, m.gt, mask, 1).gross_summary.cum_additive == perf.bt_long);
  }
}

TEST_CASE("backtest: hand-computed TopkDropout with costs (K = 2, n_drop = 1, 10 bps)", "[backtest][hand]") {
  // Day 0: the top 2 {0, 1}. Day 1: ranking 1 2 3 4 0; last = [1, 0], today = [2], comb = [1, 2, 0]:
  // sell 0, buy 2. Day 2: stock 2 invalid (sold, not one of the n_drop); ranking 0 3 4 1; last = [1],
  // today = [0, 3], comb = [0, 3, 1]: sell 1, buy 0 and 3.
  const Tensor<double> pred({5, 3}, {5, 1, 9, 4, 5, 1, 3, 4, 2, 2, 3, 8, 1, 2, 7});
  const Tensor<double> gt({5, 3}, {0.01, 0.1, 0.02, 0.02, -0.02, 0.04, 0.03, 0.03, 999, 0.04, 0, 0.01, 0.05, 0, 0});
  const Tensor<double> mask({5, 3}, {1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1});
  const metrics::BacktestResult r = metrics::backtest(pred, gt, mask, 2, 1, 10.0);
  CHECK(r.holdings == std::vector<Index>{0, 1, 1, 2, 0, 3});
  CHECK(r.held == std::vector<Index>{2, 2, 2});
  CHECK(r.turnover == std::vector<double>{1, 1, 2});
  const std::vector<double> gross{0.015, 0.005, 0.015}, cost{0.001, 0.001, 0.002}, net{0.014, 0.004, 0.013};
  for (std::size_t t = 0; t < 3; ++t) {
    CHECK(r.gross[t] == Approx(gross[t]).margin(1e-15));
    CHECK(r.cost[t] == Approx(cost[t]).margin(1e-15));
    CHECK(r.net[t] == Approx(net[t]).margin(1e-15));
  }
  CHECK(r.market[2] == Approx((0.02 + 0.04 + 0.01 + 0) / 4).margin(1e-15));
  CHECK(r.equity[2] == Approx(1.014 * 1.004 * 1.013).margin(1e-15));
  CHECK(r.net_summary.cum_additive == Approx(1.031).margin(1e-15));
  CHECK(r.net_summary.cum_compound == Approx(1.014 * 1.004 * 1.013).margin(1e-15));
  CHECK(r.net_summary.annual_return == Approx(0.031 / 3 * 252).margin(1e-13));
  const double mean = 0.031 / 3;
  const double sd = std::sqrt(((0.014 - mean) * (0.014 - mean) + (0.004 - mean) * (0.004 - mean) +
                               (0.013 - mean) * (0.013 - mean)) / 3);
  CHECK(r.net_summary.annual_vol == Approx(sd * std::sqrt(252.0)).margin(1e-13));
  CHECK(r.net_summary.sharpe == Approx(mean / sd * std::sqrt(252.0)).epsilon(1e-12));
  CHECK(r.net_summary.max_drawdown == 0);
  CHECK(r.turnover_mean == Approx(4.0 / 3).margin(1e-15));
  const nlohmann::json j = r.to_json();
  CHECK(j["topk"] == 2);
  CHECK(j["n_drop"] == 1);
  CHECK(j["cost_bps"] == 10.0);
  CHECK(j["days"] == 3);
  CHECK(j["net"]["cum_additive"] == r.net_summary.cum_additive);
  CHECK(j["gross"]["sharpe"] == r.gross_summary.sharpe);
  CHECK(j["market"]["cum_compound"] == r.market_summary.cum_compound);
}

TEST_CASE("backtest: TopkDropout keeps held stocks ranked above the candidates and drops at most n_drop",
          "[backtest][hand]") {
  // K = 3, n_drop = 1. Day 0 holds {0, 1, 2}. Day 1 ranks 3 4 0 1 2: plain top-3 would be {3, 4, 0};
  // TopkDropout sells only the worst held (2) for the best candidate (3). Day 2 ranks 1 3 0 4 2: every
  // held stock ranks above the candidate 4, so nothing is traded.
  const Tensor<double> pred({5, 3}, {9, 3, 3, 8, 2, 5, 7, 1, 1, 1, 5, 4, 1, 4, 2});
  const Tensor<double> gt({5, 3});
  const Tensor<double> mask({5, 3}, {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1});
  const metrics::BacktestResult drop = metrics::backtest(pred, gt, mask, 3, 1);
  CHECK(drop.holdings == std::vector<Index>{0, 1, 2, 3, 0, 1, 1, 3, 0});
  CHECK(drop.turnover[1] == Approx(2.0 / 3));
  CHECK(drop.turnover[2] == 0);
  const metrics::BacktestResult top = metrics::backtest(pred, gt, mask, 3, 0);
  CHECK(top.holdings == std::vector<Index>{0, 1, 2, 3, 4, 0, 1, 3, 0});
}

TEST_CASE("backtest: n_drop >= K holds the top K, as n_drop = 0, when n_drop + K stocks are valid", "[backtest]") {
  const Market3 m = random_market(30, 40, 0.2, true, 7);
  Tensor<double> mask = m.mask;
  for (Index t = 0; t < 40; ++t)
    for (Index n = 0; n < 12; ++n) mask(n, t) = 1;
  const metrics::BacktestResult top = metrics::backtest(m.pred, m.gt, mask, 5, 0, 10.0);
  for (Index d : {5, 7}) {
    const metrics::BacktestResult drop = metrics::backtest(m.pred, m.gt, mask, 5, d, 10.0);
    CHECK(drop.holdings == top.holdings);
    CHECK(drop.net == top.net);
  }
  // A small n_drop trades less.
  CHECK(metrics::backtest(m.pred, m.gt, mask, 5, 1, 10.0).turnover_mean < top.turnover_mean);
}

TEST_CASE("backtest: the summary of a daily series", "[backtest][hand]") {
  // Equity 1.1, 0.88, 0.924, 0.8316, 1.08108: the deepest fall is from 1.1 to 0.8316.
  const metrics::SeriesSummary s = metrics::summarise({0.1, -0.2, 0.05, -0.1, 0.3});
  CHECK(s.cum_additive == Approx(1.15).margin(1e-15));
  CHECK(s.cum_compound == Approx(1.1 * 0.8 * 1.05 * 0.9 * 1.3).margin(1e-15));
  CHECK(s.max_drawdown == Approx((1.1 - 0.8316) / 1.1).margin(1e-15));
  CHECK(s.annual_return == Approx(0.03 * 252).margin(1e-13));
  // A fall from the start counts: the start's equity, 1, is a peak.
  CHECK(metrics::summarise({-0.5, 0.2}).max_drawdown == Approx(0.5).margin(1e-15));
  // A constant series has no volatility: the ratio is IEEE's (+Inf here, NaN for 0/0), written as null.
  const metrics::SeriesSummary flat = metrics::summarise({0.01, 0.01});
  CHECK(std::isinf(flat.sharpe));
  CHECK(std::isnan(metrics::summarise({0.0, 0.0}).sharpe));
  CHECK(flat.to_json().dump().find("\"sharpe\":null") != std::string::npos);
}

TEST_CASE("backtest: float inputs give the result of their double values", "[backtest]") {
  const Market3 m = random_market(20, 30, 0.1, false, 3);
  Tensor<float> pf({20, 30}), gf({20, 30}), mf({20, 30});
  Tensor<double> pd({20, 30}), gd({20, 30});
  for (Index k = 0; k < 600; ++k) {
    pf.data()[k] = static_cast<float>(m.pred.data()[k]);
    gf.data()[k] = static_cast<float>(m.gt.data()[k]);
    mf.data()[k] = static_cast<float>(m.mask.data()[k]);
    pd.data()[k] = pf.data()[k];
    gd.data()[k] = gf.data()[k];
  }
  CHECK(metrics::backtest(pf, gf, mf, 4, 2, 5.0).net == metrics::backtest(pd, gd, m.mask, 4, 2, 5.0).net);
}

TEST_CASE("backtest: refuses bad input, naming what is wrong", "[backtest][errors]") {
  const Market3 m = random_market(6, 4, 0.0, false, 1);
  const Tensor<double> wide({6, 5});
  REQUIRE_THROWS_WITH(metrics::backtest(m.pred, wide, m.mask, 2),
                      Contains("pred [6, 4]") && Contains("gt [6, 5]") && Contains("mask [6, 4]"));
  Tensor<double> bad = m.gt;
  bad(3, 2) = kNaN;
  REQUIRE_THROWS_WITH(metrics::backtest(m.pred, bad, m.mask, 2), Contains("gt holds NaN at stock 3, day 2"));
  REQUIRE_THROWS_WITH(metrics::backtest(m.pred, m.gt, m.mask, 0), Contains("topk is 0: expected 1 to the 6 stocks"));
  REQUIRE_THROWS_WITH(metrics::backtest(m.pred, m.gt, m.mask, 7), Contains("topk is 7"));
  REQUIRE_THROWS_WITH(metrics::backtest(m.pred, m.gt, m.mask, 2, -1), Contains("n_drop is -1"));
  REQUIRE_THROWS_WITH(metrics::backtest(m.pred, m.gt, m.mask, 2, 0, -3.0), Contains("cost_bps is -3"));
  Tensor<double> few = m.mask;
  for (Index n = 0; n < 4; ++n) few(n, 1) = 0;
  REQUIRE_THROWS_WITH(metrics::backtest(m.pred, m.gt, few, 3),
                      Contains("day 1 has 2 valid stocks (mask >= 0.5), fewer than topk = 3"));
}

// ---- predictions.csv ----------------------------------------------------------------------------------

namespace {
// The test files live in one temporary folder, removed when the process ends.
const testing::TempDir& scratch() {
  static const testing::TempDir dir("backtest");
  return dir;
}
std::string write_temp(const std::string& name, const std::string& text) { return scratch().write(name, text); }
}  // namespace

TEST_CASE("read_predictions_csv: [N, days] arrays, dates ascending, absent rows masked", "[backtest][csv]") {
  const std::string path = write_temp("ok.csv",
                                      "date,ticker,score,label,split\n"
                                      "2023-12-29,ZZZ,7,7,valid\n"
                                      "2024-01-03,BBB,0.5,-0.01,test\n"
                                      "2024-01-02,AAA,0.25,0.02,test\n"
                                      "2024-01-02,BBB,-1e-3,0.03,test\n"
                                      "2023-12-29,AAA,9,9,valid\n"
                                      "2024-01-03,CCC,1.5,0.04,test\n");
  const metrics::LabelledPredictions p = metrics::read_predictions_csv(path, "test");
  CHECK(p.dates == std::vector<std::string>{"2024-01-02", "2024-01-03"});
  // every split's rows set the tickers' order: ZZZ has no test row and stays masked
  CHECK(p.tickers == std::vector<std::string>{"ZZZ", "BBB", "AAA", "CCC"});
  CHECK(p.score(1, 0) == -1e-3);
  CHECK(p.score(1, 1) == 0.5);
  CHECK(p.label(2, 0) == 0.02);
  CHECK(p.score(3, 1) == 1.5);
  CHECK(std::vector<double>(p.mask.data(), p.mask.data() + 8) == std::vector<double>{0, 0, 1, 1, 1, 0, 0, 1});
  // every split: the valid day comes first
  const metrics::LabelledPredictions all = metrics::read_predictions_csv(path, "");
  CHECK(all.dates.front() == "2023-12-29");
  // day indices sort as numbers
  const metrics::LabelledPredictions days = metrics::read_predictions_csv(
      write_temp("days.csv", "date,ticker,score,label,split\n10,A,1,0,test\n9,A,2,0,test\n100,A,3,0,test\n"), "test");
  CHECK(days.dates == std::vector<std::string>{"9", "10", "100"});
}

TEST_CASE("read_predictions_csv: errors name the file and line", "[backtest][csv][errors]") {
  const std::string head = "date,ticker,score,label,split\n";
  REQUIRE_THROWS_WITH(metrics::read_predictions_csv(write_temp("h.csv", "date,ticker,score\n"), "test"),
                      Contains("h.csv:1: expected the header 'date,ticker,score,label,split'"));
  REQUIRE_THROWS_WITH(
      metrics::read_predictions_csv(write_temp("dup.csv", head + "1,A,1,0,test\n1,B,1,0,test\n1,A,2,0,test\n"), "test"),
      Contains("dup.csv:4: ticker 'A' on date '1' appears twice (first on line 2)"));
  REQUIRE_THROWS_WITH(metrics::read_predictions_csv(write_temp("num.csv", head + "1,A,x1,0,test\n"), "test"),
                      Contains("num.csv:2: score 'x1' is not a number"));
  REQUIRE_THROWS_WITH(metrics::read_predictions_csv(write_temp("nan.csv", head + "1,A,1,nan,test\n"), "test"),
                      Contains("nan.csv:2: label is nan: expected a finite number"));
  REQUIRE_THROWS_WITH(metrics::read_predictions_csv(write_temp("cells.csv", head + "1,A,1,0\n"), "test"),
                      Contains("cells.csv:2: expected 5 cells"));
  REQUIRE_THROWS_WITH(metrics::read_predictions_csv(write_temp("split.csv", head + "1,A,1,0,valid\n"), "test"),
                      Contains("split.csv: no rows with split 'test'"));
  REQUIRE_THROWS_WITH(metrics::read_predictions_csv(write_temp("empty.csv", ""), "test"), Contains("empty file"));
}

// ---- PNG and charts -----------------------------------------------------------------------------------

TEST_CASE("png: CRC-32 and Adler-32 of the standard check strings", "[png]") {
  const std::string digits = "123456789", wiki = "Wikipedia";
  CHECK(io::crc32(reinterpret_cast<const unsigned char*>(digits.data()), digits.size()) == 0xCBF43926u);
  CHECK(io::adler32(reinterpret_cast<const unsigned char*>(wiki.data()), wiki.size()) == 0x11E60398u);
  // continued in two pieces
  const auto* d = reinterpret_cast<const unsigned char*>(digits.data());
  CHECK(io::crc32(d + 4, 5, io::crc32(d, 4)) == 0xCBF43926u);
  // 6000 bytes of 255: b passes 2^32 without the modulo every 5552 bytes
  const std::vector<unsigned char> ones(6000, 255);
  std::uint64_t a = 1, b = 0;
  for (unsigned char c : ones) {
    a = (a + c) % 65521;
    b = (b + a) % 65521;
  }
  CHECK(io::adler32(ones.data(), ones.size()) == ((b << 16) | a));
}

TEST_CASE("png: the file decodes to the pixels written (noise, runs, one pixel, rows alike)", "[png]") {
  std::mt19937 rng(5);
  std::vector<io::RgbImage> images;
  io::RgbImage noise(97, 31);
  for (auto& v : noise.pixels) v = static_cast<unsigned char>(rng());
  images.push_back(noise);
  io::RgbImage runs(300, 40);  // long runs, rows equal to the one above, a few odd pixels
  for (int y = 0; y < 40; ++y)
    for (int x = 0; x < 300; ++x)
      if ((x / 37 + y / 9) % 3 == 0) runs.set(x, y, {10, static_cast<unsigned char>(y), 200});
  runs.set(299, 39, {1, 2, 3});
  images.push_back(runs);
  images.emplace_back(1, 1, std::array<unsigned char, 3>{7, 8, 9});
  images.emplace_back(11000, 2, std::array<unsigned char, 3>{0, 0, 0});  // rows wider than deflate's window
  for (const io::RgbImage& image : images) {
    INFO(image.width << " x " << image.height);
    const std::string png = io::encode_png(image);
    const io::RgbImage back = decode_png(png);
    CHECK(back.width == image.width);
    CHECK(back.height == image.height);
    CHECK(back.pixels == image.pixels);
  }
  // Compression: noise grows by under 15 %, an image of runs shrinks many times over.
  CHECK(io::encode_png(noise).size() < 97 * 31 * 3 * 115 / 100 + 100);
  CHECK(io::encode_png(runs).size() * 10 < 300 * 40 * 3);
  REQUIRE_THROWS_WITH(io::RgbImage(0, 5), Contains("image size 0 x 5: expected width and height 1 to 16384"));
}

TEST_CASE("a line chart: the series, the gaps at NaN, the legend and the frame", "[png][plot]") {
  const std::array<unsigned char, 3> red{200, 20, 20}, blue{20, 20, 200}, green{0, 150, 0};
  std::vector<double> up, down;
  for (int i = 0; i < 100; ++i) {
    up.push_back(i);
    down.push_back(i >= 40 && i < 60 ? kNaN : 100 - i);
  }
  const io::RgbImage image = io::render_line_chart("net and gross", {{"up", up, red}, {"down", down, blue}}, 400, 240);
  // The round trip through the file.
  const std::string path = scratch().path("chart.png");
  io::write_line_chart(path, "net and gross", {{"up", up, red}, {"down", down, blue}}, 400, 240);
  std::ifstream in(path, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  CHECK(decode_png(bytes).pixels == image.pixels);

  CHECK(count_colour(image, red) > 300);
  CHECK(count_colour(image, blue) > 200);
  // The gap: points 40 to 59 of `down` are NaN, so no blue between points 39 and 60 (x of point i is
  // left + i / 99 · (right − left); the legend's swatch is below the plot).
  int left = 0;
  while (image.get(left, 120) != std::array<unsigned char, 3>{0, 0, 0}) ++left;  // the y axis
  const int right = 400 - 16;
  const auto x_of = [&](int i) { return left + static_cast<int>(std::lround(i / 99.0 * (right - left))); };
  Index gap = 0;
  for (int y = 0; y < 200; ++y)
    for (int x = x_of(39) + 2; x < x_of(60) - 1; ++x) gap += image.get(x, y) == blue;
  CHECK(gap == 0);
  CHECK(count_colour(image, blue, x_of(30), x_of(39)) > 0);
  // The legend's swatches: a 10 x 7 block of each colour at the bottom left.
  CHECK(image.get(12, 240 - 18 + 4 + 3) == red);
  CHECK(count_colour(image, green) == 0);
  // A single point is drawn as a dot; an all-NaN chart still draws its frame.
  CHECK(count_colour(io::render_line_chart("one", {{"x", {1.0}, green}}, 200, 120), green) >= 9 + 70);
  const io::RgbImage empty = io::render_line_chart("nothing", {{"x", {kNaN, kNaN}, green}}, 200, 120);
  CHECK(count_colour(empty, {0, 0, 0}) > 100);
  REQUIRE_THROWS_WITH(io::render_line_chart("t", {}, 100, 100), Contains("100 x 100 pixels: expected at least 200 x 120"));
  REQUIRE_THROWS_WITH(io::write_line_chart("/nonexistent-folder/x.png", "t", {{"x", {1.0, 2.0}, red}}),
                      Contains("/nonexistent-folder/x.png"));
}
