// The original's data loaders (stockmixer/data/eod.hpp): tiny markets written into a temp folder with
// every value worked out by hand (mask, gt with the 1.1 quirk, price, the NASDAQ last-row drop), every
// bad input with the file, line and column its error names, the ticker and date lists, the S&P 500
// .npy branch (the wrap-around of its negative index), the relation matrices, the SFM prices; the
// original Python code's own outputs (tests/make_eod_fixtures.py); and the real NASDAQ data ("[real]":
// skipped with a warning when ../shared/data/NASDAQ is absent).
#include <stockmixer/data/eod.hpp>
#include <stockmixer/io/npy.hpp>

#include "testing.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>
#include <random>
#include <string>
#include <vector>

using namespace stockmixer;
using namespace stockmixer::data;
using Catch::Matchers::Contains;
namespace fs = std::filesystem;

namespace {

using testing::TempDir;

template <class T>
std::vector<T> values(const Tensor<T>& t) {
  return {t.data(), t.data() + t.size()};
}

template <class T>
bool same_bits(const Tensor<T>& a, const Tensor<T>& b) {
  return a.shape() == b.shape() &&
         std::memcmp(a.data(), b.data(), sizeof(T) * static_cast<std::size_t>(a.size())) == 0;
}

template <class T>
bool same_market(const Market<T>& a, const Market<T>& b) {
  return same_bits(a.eod, b.eod) && same_bits(a.mask, b.mask) && same_bits(a.gt, b.gt) &&
         same_bits(a.price, b.price) && a.tickers == b.tickers && a.steps == b.steps;
}

// The hand-worked market: tickers AA and BB, columns day, f1, close, five rows; the last row of AA is
// all missing. Values are exact in binary, so expected gt are written as the same float expressions.
const char* const kAA = "0,0.5,0.25\n1,-1234,0.5\n2,0.75,-1234\n3,1.5,0.75\n4,-1234,-1234\n";
const char* const kBB = "0,1,-1234\n1,2,0.5\n2,3,0.25\n3,4,0.125\n4,5,0.0625\n";

void write_tiny(const TempDir& dir, const std::string& market) {
  dir.write(market + "_AA_1.csv", kAA);
  dir.write(market + "_BB_1.csv", kBB);
}

std::string nasdaq_dir() {
  return (fs::path(STOCKMIXER_FIXTURE_DIR) / ".." / ".." / ".." / "shared" / "data" / "NASDAQ")
      .lexically_normal()
      .string();
}

}  // namespace

// ---- load_eod: hand-worked values ------------------------------------------------------------------

TEMPLATE_TEST_CASE("load_eod: NASDAQ drops the last row: mask, gt (the 1.1 quirk), price, the 1.1 fill",
                   "[eod][load]", float, double) {
  using T = TestType;
  TempDir dir;
  write_tiny(dir, "NASDAQ");
  const Market<T> m = load_eod<T>(dir.str(), "NASDAQ", {"AA", "BB"});
  REQUIRE(m.eod.shape() == Shape{2, 4, 2});  // 5 rows, the last dropped
  CHECK(m.steps == 1);
  CHECK(m.tickers == std::vector<std::string>{"AA", "BB"});
  const T fill = static_cast<T>(1.1);
  // eod = columns 1.. with every -1234 replaced by 1.1 (the day index column is gone)
  CHECK(values(m.eod) == std::vector<T>{T(0.5), T(0.25), fill, T(0.5), T(0.75), fill, T(1.5), T(0.75),  //
                                        T(1), fill, T(2), T(0.5), T(3), T(0.25), T(4), T(0.125)});
  CHECK(values(m.mask) == std::vector<T>{1, 1, 0, 1, 0, 1, 1, 1});
  CHECK(values(m.price) == std::vector<T>{T(0.25), T(0.5), fill, T(0.75), fill, T(0.5), T(0.25), T(0.125)});
  // AA: row 1 (0.5 - 0.25) / 0.25; row 2 missing; row 3 reads row 2's close, already 1.1.
  // BB: row 0 missing; row 1 reads 1.1; rows 2, 3 halve.
  const T q_aa = (T(0.75) - fill) / fill, q_bb = (T(0.5) - fill) / fill;
  CHECK(values(m.gt) == std::vector<T>{0, 1, 0, q_aa, 0, q_bb, T(-0.5), T(-0.5)});
}

TEMPLATE_TEST_CASE("load_eod: another market keeps the last row, steps = 2", "[eod][load]", float, double) {
  using T = TestType;
  TempDir dir;
  write_tiny(dir, "NYSE");
  const T fill = static_cast<T>(1.1);
  const Market<T> m = load_eod<T>(dir.str(), "NYSE", {"AA", "BB"});
  REQUIRE(m.eod.shape() == Shape{2, 5, 2});
  CHECK(values(m.mask) == std::vector<T>{1, 1, 0, 1, 0, 0, 1, 1, 1, 1});
  CHECK(m.eod(0, 4, 0) == fill);
  CHECK(m.eod(0, 4, 1) == fill);
  CHECK(m.price(1, 4) == T(0.0625));
  CHECK(m.gt(1, 4) == T(-0.5));

  const Market<T> m2 = load_eod<T>(dir.str(), "NYSE", {"AA", "BB"}, 2);
  CHECK(m2.steps == 2);
  // AA: rows 0, 1 < steps; row 2 missing; row 3 from row 1: (0.75 - 0.5) / 0.5; row 4 missing.
  // BB: row 2 from row 0, missing, so 1.1; row 3 from row 1; row 4 from row 2.
  CHECK(values(m2.gt) ==
        std::vector<T>{0, 0, 0, T(0.5), 0, 0, 0, (T(0.25) - fill) / fill, T(-0.75), T(-0.75)});
  CHECK(values(m2.mask) == values(m.mask));
  CHECK(values(m2.price) == values(m.price));
  // "NASDAQ" is matched exactly, as the original does: "nasdaq" keeps the last row.
  write_tiny(dir, "nasdaq");
  CHECK(load_eod<T>(dir.str(), "nasdaq", {"AA", "BB"}).days() == 5);
}

TEST_CASE("load_eod: number spellings, blank lines and CRLF parse as np.genfromtxt reads them", "[eod][load]") {
  TempDir dir;
  dir.write("M_A_1.csv",
            "0, 0.123456789012345678 ,+0.25\r\n\r\n1,.5,5.\r\n  \n2,-0.0,1e-1\n3,2.5E-1,1.0000000596046448\n"
            "4,1e-400,3.4028235e-01");  // no final newline
  const Market<double> d = load_eod<double>(dir.str(), "M", {"A"});
  REQUIRE(d.eod.shape() == Shape{1, 5, 2});
  CHECK(d.eod(0, 0, 0) == std::strtod("0.123456789012345678", nullptr));
  CHECK(d.eod(0, 1, 0) == 0.5);
  CHECK(d.eod(0, 1, 1) == 5.0);
  CHECK(d.eod(0, 2, 0) == 0.0);
  CHECK(std::signbit(d.eod(0, 2, 0)));
  CHECK(d.eod(0, 2, 1) == 0.1);
  CHECK(d.eod(0, 3, 0) == 0.25);
  CHECK(d.eod(0, 3, 1) == 1.0 + std::ldexp(1.0, -24));  // the correctly rounded double
  CHECK(d.eod(0, 4, 0) == 0.0);                           // underflow: 0, as Python's float()
  CHECK(d.eod(0, 4, 1) == 0.34028235);
  // float: the double, then rounded to float (np.genfromtxt's float32): 1 + 2^-24 is a tie and goes to
  // 1.0, where a direct decimal -> float conversion would give 1 + 2^-23.
  const Market<float> f = load_eod<float>(dir.str(), "M", {"A"});
  CHECK(f.eod(0, 3, 1) == 1.0f);
  CHECK(f.eod(0, 0, 0) == static_cast<float>(std::strtod("0.123456789012345678", nullptr)));
}

// ---- load_eod: bad input ---------------------------------------------------------------------------

TEST_CASE("load_eod: every bad input names the file, line and column, and nothing is half-loaded",
          "[eod][load][errors]") {
  TempDir dir;
  write_tiny(dir, "NYSE");
  const Market<double> good = load_eod<double>(dir.str(), "NYSE", {"AA", "BB"});
  Market<double> m = good;
  // Each bad file is BB's, so AA has been loaded into the local market before the error.
  auto bad = [&](const std::string& text) {
    dir.write("NYSE_BB_1.csv", text);
    return dir.path("NYSE_BB_1.csv");
  };
  auto load = [&] { m = load_eod<double>(dir.str(), "NYSE", {"AA", "BB"}); };

  SECTION("a missing file, named with its ticker") {
    const std::string path = dir.path("NYSE_CC_1.csv");
    CHECK_THROWS_WITH(m = load_eod<double>(dir.str(), "NYSE", {"AA", "CC"}),
                      Contains(path) && Contains("cannot open the file") && Contains("ticker 'CC', 2 of 2"));
  }
  SECTION("a short row") {
    const std::string path = bad("0,1,0.5\n1,2,0.5\n2,3\n3,4,0.5\n4,5,0.5\n");
    CHECK_THROWS_WITH(load(), Contains(path + ": line 3, column 3: the row ends after 2 fields; expected 3") &&
                                  Contains("first row (line 1)"));
  }
  SECTION("a long row, and a trailing comma") {
    const std::string path = bad("0,1,0.5\n1,2,0.5,7\n2,3,0.5\n3,4,0.5\n4,5,0.5\n");
    CHECK_THROWS_WITH(load(), Contains(path + ": line 2, column 4: the row has more than the 3 fields"));
    bad("0,1,0.5\n1,2,0.5,\n2,3,0.5\n3,4,0.5\n4,5,0.5\n");
    CHECK_THROWS_WITH(load(), Contains(path + ": line 2, column 4: the row has more than the 3 fields"));
  }
  SECTION("a non-numeric cell, an empty one, a number with trailing text (line numbers count blank lines)") {
    const std::string path = bad("0,1,0.5\n\n1,abc,0.5\n2,3,0.5\n3,4,0.5\n4,5,0.5\n");
    CHECK_THROWS_WITH(load(), Contains(path + ": line 3, column 2: expected a number, got 'abc'"));
    bad("0,1,0.5\n1,,0.5\n2,3,0.5\n3,4,0.5\n4,5,0.5\n");
    CHECK_THROWS_WITH(load(), Contains(path + ": line 2, column 2: expected a number, got an empty cell"));
    bad("0,1,0.5\n1,2,0.5\n2,3,0.5x\n3,4,0.5\n4,5,0.5\n");
    CHECK_THROWS_WITH(load(), Contains(path + ": line 3, column 3: expected a number, got '0.5x'"));
    bad("0,1,0.5\n1,2,0.5\n2,3,1e\n3,4,0.5\n4,5,0.5\n");
    CHECK_THROWS_WITH(load(), Contains(path + ": line 3, column 3: expected a number, got '1e'"));
    bad("0;1;0.5\n1;2;0.5\n");
    CHECK_THROWS_WITH(load(), Contains(path + ": line 1, column 1: expected a number, got '0;1;0.5'"));
  }
  SECTION("NaN or Inf in a cell, and a value outside the type's range") {
    const std::string path = bad("0,1,0.5\n1,nan,0.5\n2,3,0.5\n3,4,0.5\n4,5,0.5\n");
    CHECK_THROWS_WITH(load(), Contains(path + ": line 2, column 2: 'nan' is NaN or Inf"));
    bad("0,1,0.5\n1,2,0.5\n2,3,-Inf\n3,4,0.5\n4,5,0.5\n");
    CHECK_THROWS_WITH(load(), Contains(path + ": line 3, column 3: '-Inf' is NaN or Inf"));
    bad("0,1,0.5\n1,2,0.5\n2,3,0.5\n3,Infinity,0.5\n4,5,0.5\n");
    CHECK_THROWS_WITH(load(), Contains(path + ": line 4, column 2: 'Infinity' is NaN or Inf"));
    bad("0,1,0.5\n1,2,0.5\n2,1e999,0.5\n3,4,0.5\n4,5,0.5\n");
    CHECK_THROWS_WITH(load(), Contains(path + ": line 3, column 2: '1e999' is outside the range of double"));
    bad("0,1,0.5\n1,2,0.5\n2,1e39,0.5\n3,4,0.5\n4,5,0.5\n");
    CHECK_THROWS_WITH(load_eod<float>(dir.str(), "NYSE", {"AA", "BB"}),
                      Contains(path + ": line 3, column 2: '1e39' is outside the range of float"));
  }
  SECTION("files of different lengths or widths name both files and both counts") {
    const std::string path = bad("0,1,0.5\n1,2,0.5\n2,3,0.5\n3,4,0.5\n");
    CHECK_THROWS_WITH(load(), Contains(path + " has 4 rows but " + dir.path("NYSE_AA_1.csv") + " has 5"));
    bad("0,1,0.5,0.5\n1,2,0.5,0.5\n2,3,0.5,0.5\n3,4,0.5,0.5\n4,5,0.5,0.5\n");
    CHECK_THROWS_WITH(load(), Contains(path + " has 4 fields a row but " + dir.path("NYSE_AA_1.csv") + " has 3"));
  }
  SECTION("an empty file, a blank one, a single column") {
    const std::string path = bad("");
    CHECK_THROWS_WITH(load(), Contains(path + ": the file is empty"));
    bad(" \n\r\n\n");
    CHECK_THROWS_WITH(load(), Contains(path + ": the file is empty"));
    bad("0\n1\n2\n3\n4\n");
    CHECK_THROWS_WITH(load(), Contains(path + ": line 1: 1 field"));
  }
  SECTION("a present close that is not > 0") {
    const std::string path = bad("0,1,0.5\n1,2,0.5\n2,3,0\n3,4,0.5\n4,5,0.5\n");
    CHECK_THROWS_WITH(load(), Contains(path + ": line 3, column 3: the close 0 is not > 0"));
    bad("0,1,0.5\n1,2,0.5\n2,3,0.5\n3,4,-0.25\n4,5,0.5\n");
    CHECK_THROWS_WITH(load(), Contains(path + ": line 4, column 3: the close -0.25 is not > 0"));
  }
  SECTION("NASDAQ with one row has no row left after the drop") {
    dir.write("NASDAQ_ONE_1.csv", "0,1,0.5\n");
    CHECK_THROWS_WITH(m = load_eod<double>(dir.str(), "NASDAQ", {"ONE"}),
                      Contains(dir.path("NASDAQ_ONE_1.csv")) && Contains("no row is left"));
  }
  SECTION("bad arguments") {
    CHECK_THROWS_WITH(m = load_eod<double>(dir.str(), "NYSE", {}), Contains("the ticker list is empty"));
    CHECK_THROWS_WITH(m = load_eod<double>(dir.str(), "NYSE", {"AA", "../AA"}),
                      Contains("ticker 2 of 2 ('../AA') contains '/'"));
    CHECK_THROWS_WITH(m = load_eod<double>(dir.str(), "NYSE", {"A A"}), Contains("('A A') contains whitespace"));
    CHECK_THROWS_WITH(m = load_eod<double>(dir.str(), "NYSE", {"AA"}, 0), Contains("steps must be >= 1, got 0"));
    CHECK_THROWS_WITH(m = load_eod<double>(dir.str(), "NY/SE", {"AA"}), Contains("market name 'NY/SE'"));
  }
  // Whatever failed, the caller's market is the one it had.
  CHECK(same_market(m, good));
}

// ---- the ticker and date lists, the folder layout ----------------------------------------------------

TEST_CASE("read_tickers: trimmed lines, blank lines skipped, and its errors name the file and lines", "[eod][lists]") {
  TempDir dir;
  CHECK(read_tickers(dir.write("t.csv", "  AAPL \n\nMSFT\r\n\tGOOG\n\n")) ==
        std::vector<std::string>{"AAPL", "MSFT", "GOOG"});
  std::string p = dir.write("dup.csv", "A\nB\n\nA\n");
  CHECK_THROWS_WITH(read_tickers(p), Contains(p + ": line 4: ticker 'A' repeats line 1"));
  p = dir.write("space.csv", "A\nB C\n");
  CHECK_THROWS_WITH(read_tickers(p), Contains(p + ": line 2: ticker 'B C' contains whitespace"));
  p = dir.write("slash.csv", "A/B\n");
  CHECK_THROWS_WITH(read_tickers(p), Contains(p + ": line 1: ticker 'A/B' contains '/'"));
  p = dir.write("empty.csv", "\n \n");
  CHECK_THROWS_WITH(read_tickers(p), Contains(p + ": no tickers"));
  CHECK_THROWS_WITH(read_tickers(dir.path("absent.csv")), Contains(dir.path("absent.csv") + ": cannot open"));
}

TEST_CASE("read_trading_dates and date_of_row: row r is line r + 29 (0-based)", "[eod][lists]") {
  TempDir dir;
  std::string text;
  for (int i = 0; i < 31; ++i) text += "day" + std::to_string(i) + " 16:00:00\r\n";
  const auto dates = read_trading_dates(dir.write("d.csv", text + "\n\n"));  // trailing blank lines ignored
  REQUIRE(dates.size() == 31);
  CHECK(dates[0] == "day0 16:00:00");
  CHECK(date_of_row(dates, 0) == "day29 16:00:00");
  CHECK(date_of_row(dates, 1) == "day30 16:00:00");
  CHECK_THROWS_WITH(date_of_row(dates, 2), Contains("row 2 has no date: it is line 32 of the dates file, which has 31"));
  CHECK_THROWS_WITH(date_of_row(dates, -1), Contains("row -1 has no date"));
  const std::string p = dir.write("gap.csv", "a\n\nb\n");
  CHECK_THROWS_WITH(read_trading_dates(p), Contains(p + ": line 2 is blank"));
  const std::string e = dir.write("e.csv", "");
  CHECK_THROWS_WITH(read_trading_dates(e), Contains(e + ": no dates"));
}

TEST_CASE("load_market_dir: the dataset folder layout, --tickers, and the dates it needs", "[eod][load]") {
  TempDir dir;
  dir.write("2013-01-01/NASDAQ_AA_1.csv", kAA);
  dir.write("2013-01-01/NASDAQ_BB_1.csv", kBB);
  dir.write("NASDAQ_tickers_qualify_dr-0.98_min-5_smooth.csv", "AA\nBB\n");
  std::string dates;
  for (int i = 0; i < 33; ++i) dates += "date" + std::to_string(i) + "\n";  // 29 + D = 4 rows
  dir.write("NASDAQ_aver_line_dates.csv", dates);

  const LoadedMarket<float> lm = load_market_dir<float>(dir.str(), "NASDAQ");
  CHECK(same_market(lm.market, load_eod<float>(dir.path("2013-01-01"), "NASDAQ", {"AA", "BB"})));
  CHECK(lm.dates.size() == 33);
  CHECK(date_of_row(lm.dates, lm.market.days() - 1) == "date32");

  const std::string only_bb = dir.write("mine.csv", "BB\n");
  const LoadedMarket<float> bb = load_market_dir<float>(dir.str(), "NASDAQ", only_bb, 2);
  CHECK(bb.market.tickers == std::vector<std::string>{"BB"});
  CHECK(bb.market.steps == 2);
  CHECK(values(bb.market.price) == std::vector<float>{1.1f, 0.5f, 0.25f, 0.125f});

  const std::string short_dates = dir.write("NASDAQ_aver_line_dates.csv", "a\nb\n");
  CHECK_THROWS_WITH(load_market_dir<float>(dir.str(), "NASDAQ"),
                    Contains(short_dates + ": 2 lines, but the market's 4 rows need 33"));
  fs::remove(short_dates);
  CHECK_THROWS_WITH(load_market_dir<float>(dir.str(), "NASDAQ"), Contains(short_dates + ": cannot open"));
}

// ---- the original's own outputs ----------------------------------------------------------------------

TEMPLATE_TEST_CASE("load_eod and build_sfm_data: the original load_EOD_data and build_SFM_data's arrays",
                   "[eod][fixtures]", float, double) {
  using T = TestType;
  for (const char* name : {"nasdaq_small", "nyse_steps2"}) {
    INFO(name);
    const std::string fixture = std::string(STOCKMIXER_FIXTURE_DIR) + "/eod/" + name + "/";
    std::ifstream in(fixture + "inputs.json");
    REQUIRE(in);
    const nlohmann::json inputs = nlohmann::json::parse(in);
    TempDir dir;
    for (const auto& [file, text] : inputs.at("files").items()) dir.write(file, text.template get<std::string>());
    const auto tickers = inputs.at("tickers").template get<std::vector<std::string>>();
    const auto market = inputs.at("market").template get<std::string>();
    const Market<T> m = load_eod<T>(dir.str(), market, tickers, inputs.at("steps").template get<Index>());
    const Tensor<T> sfm = build_sfm_data<T>(dir.str(), market, tickers);
    const std::pair<const char*, const Tensor<T>*> outputs[] = {
        {"eod", &m.eod}, {"mask", &m.mask}, {"gt", &m.gt}, {"price", &m.price}, {"sfm", &sfm}};
    for (const auto& [key, ours] : outputs) {
      INFO(key);
      const Tensor<T> expected = io::read_npy<T>(fixture + key + ".npy");  // float32, the original's dtype
      if constexpr (std::is_same_v<T, float>) {
        CHECK(same_bits(*ours, expected));  // bit for bit
      } else {
        REQUIRE(ours->shape() == expected.shape());
        CHECK(testing::max_rel_error(values(*ours), values(expected)) < 1e-6);  // float32's rounding
      }
    }
  }
}

TEST_CASE("build_sfm_data: hand-worked prices (no last-row drop, forward fill, 3-day means)", "[eod][sfm]") {
  TempDir dir;
  write_tiny(dir, "NASDAQ");
  const Tensor<double> s = build_sfm_data<double>(dir.str(), "NASDAQ", {"AA", "BB"});
  REQUIRE(s.shape() == Shape{2, 5});  // NASDAQ's last row is kept here, as the original does
  // AA: row 2 missing (< 3): the next present close, row 3's; row 4: the mean of rows 1..3.
  CHECK(values(s) == std::vector<double>{0.25, 0.5, 0.75, 0.75, ((0.5 + 0.75) + 0.75) / 3.0,  //
                                         0.5, 0.5, 0.25, 0.125, 0.0625});
  dir.write("NASDAQ_CC_1.csv", "0,1,-1234\n1,1,-1234\n2,1,-1234\n3,1,-1234\n4,1,-1234\n");
  CHECK(values(build_sfm_data<double>(dir.str(), "NASDAQ", {"CC"})) == std::vector<double>(5, 0.0));
  CHECK_THROWS_WITH(build_sfm_data<double>(dir.str(), "NASDAQ", {"AA", "DD"}),
                    Contains(dir.path("NASDAQ_DD_1.csv") + ": cannot open"));
}

// ---- the S&P 500 branch ------------------------------------------------------------------------------

TEMPLATE_TEST_CASE("load_sp500_npy: the cut at 915, price, mask, gt and its wrapped negative index",
                   "[eod][sp500]", float, double) {
  using T = TestType;
  TempDir dir;
  Tensor<double> data({1, 918, 2});  // D = 3 after the cut; closes 2, 4, 5; days before 915 unused
  const double closes[3] = {2, 4, 5};
  for (Index t = 0; t < 3; ++t) {
    data(0, 915 + t, 0) = 10.0 + static_cast<double>(t);
    data(0, 915 + t, 1) = closes[t];
  }
  const std::string path = dir.path("sp.npy");
  io::write_npy<double>(path, data);
  const Market<T> m = load_sp500_npy<T>(path);
  REQUIRE(m.eod.shape() == Shape{1, 3, 2});
  CHECK(values(m.eod) == std::vector<T>{10, 2, 11, 4, 12, 5});  // all F columns, the close included
  CHECK(values(m.price) == std::vector<T>{2, 4, 5});
  CHECK(values(m.mask) == std::vector<T>{1, 1, 1});
  CHECK(values(m.gt) == std::vector<T>{0, 1, T(0.25)});
  // steps 2: row 1 reads index -1, numpy's last row (5): (4 - 5) / 5; row 2 reads row 0.
  CHECK(values(load_sp500_npy<T>(path, 2).gt) == std::vector<T>{0, static_cast<T>(-0.2), T(1.5)});
  CHECK(values(load_sp500_npy<T>(path, 3).gt) == std::vector<T>{0, 0, 0});          // -2 -> 1, -1 -> 2
  CHECK(values(load_sp500_npy<T>(path, 4).gt) == std::vector<T>{0, 1, T(0.25)});    // -3 -> 0, -2 -> 1
  CHECK_THROWS_WITH(load_sp500_npy<T>(path, 5), Contains(path + ": steps 5 > D + 1 = 4"));
  CHECK_THROWS_WITH(load_sp500_npy<T>(path, 0), Contains("steps must be >= 1"));

  // A float32 file: gt in float32 arithmetic, as numpy's.
  Tensor<float> f32({1, 917, 1});
  f32(0, 915, 0) = 0.3f;
  f32(0, 916, 0) = 0.7f;
  io::write_npy<float>(dir.path("f32.npy"), f32);
  CHECK(load_sp500_npy<T>(dir.path("f32.npy")).gt(0, 1) == static_cast<T>((0.7f - 0.3f) / 0.3f));

  const std::string few = dir.path("few.npy");
  io::write_npy<double>(few, Tensor<double>({1, 915, 2}));
  CHECK_THROWS_WITH(load_sp500_npy<T>(few), Contains(few + ": shape [1, 915, 2]") && Contains("more than 915 days"));
  io::write_npy<double>(few, Tensor<double>({2, 920}));
  CHECK_THROWS_WITH(load_sp500_npy<T>(few), Contains(few + ": the S&P 500 array must be [N, D, F], got shape [2, 920]"));
  Tensor<double> bad = data;
  bad(0, 916, 0) = std::numeric_limits<double>::quiet_NaN();
  io::write_npy<double>(few, bad);
  CHECK_THROWS_WITH(load_sp500_npy<T>(few),
                    Contains(few + ": stock 0, day 916 (row 1 after the cut at 915), feature 0: NaN is not a finite"));
  bad = data;
  bad(0, 917, 1) = 0.0;
  io::write_npy<double>(few, bad);
  CHECK_THROWS_WITH(load_sp500_npy<T>(few), Contains(few + ": stock 0, day 917") && Contains("the close 0 is not > 0"));
  CHECK_THROWS_WITH(load_sp500_npy<T>(dir.path("absent.npy")), Contains(dir.path("absent.npy")));
}

TEMPLATE_TEST_CASE("load_sp500_npy: the original train.py branch's arrays", "[eod][sp500][fixtures]", float, double) {
  using T = TestType;
  const std::string root = std::string(STOCKMIXER_FIXTURE_DIR) + "/eod/";
  const std::pair<const char*, std::vector<Index>> cases[] = {{"sp500_f32", {1, 2, 5}}, {"sp500_f64", {1, 2, 3}}};
  for (const auto& [name, steps_list] : cases) {
    INFO(name);
    const std::string dir = root + name + "/";
    for (Index steps : steps_list) {
      INFO("steps " << steps);
      const Market<T> m = load_sp500_npy<T>(dir + "data.npy", steps);
      CHECK(values(m.gt) == values(io::read_npy<T>(dir + "gt_steps" + std::to_string(steps) + ".npy")));
      CHECK(values(m.price) == values(io::read_npy<T>(dir + "price.npy")));
      CHECK(values(m.mask) == values(io::read_npy<T>(dir + "mask.npy")));
    }
  }
}

// ---- relations ----------------------------------------------------------------------------------------

TEMPLATE_TEST_CASE("relation_adjacency and relation_mask: hand-worked, column degrees, cancelling channels",
                   "[eod][relation]", float, double) {
  using T = TestType;
  // [3, 3, 2]. Present: (0,0) (0,1) (0,2) (1,1) (2,2); (1,0) has channels 1 and -1: their sum is 0, so
  // no relation. Row sums 3, 1, 1; the original's degree is the column sums: 1, 2, 2.
  Tensor<T> rel({3, 3, 2});
  rel(0, 0, 0) = 1;
  rel(0, 1, 1) = 2;
  rel(0, 2, 0) = 1;
  rel(0, 2, 1) = 1;
  rel(1, 1, 0) = 1;
  rel(2, 2, 1) = 1;
  rel(1, 0, 0) = 1;
  rel(1, 0, 1) = -1;
  const double h = std::sqrt(0.5);  // 2^-1/2
  const std::vector<double> adj = {1, h, h, 0, 0.5, 0, 0, 0, 0.5};
  const Tensor<T> a = relation_adjacency(rel, false), l = relation_adjacency(rel, true);
  REQUIRE(a.shape() == Shape{3, 3});
  REQUIRE(l.shape() == Shape{3, 3});
  for (Index i = 0; i < 3; ++i)
    for (Index j = 0; j < 3; ++j) {
      const double v = adj[static_cast<std::size_t>(i * 3 + j)];
      CHECK(a(i, j) == Approx(static_cast<T>(v)).epsilon(1e-15));
      CHECK(l(i, j) == Approx(static_cast<T>((i == j ? 1.0 : 0.0) - v)).epsilon(1e-15).margin(1e-15));
    }
  CHECK(values(relation_mask(rel)) == std::vector<T>{0, 0, 0, T(-1e9), 0, T(-1e9), T(-1e9), T(-1e9), 0});

  Tensor<T> isolated = rel;
  isolated(2, 2, 1) = 0;
  isolated(0, 2, 0) = isolated(0, 2, 1) = 0;
  CHECK_THROWS_WITH(relation_adjacency(isolated, false), Contains("stock 2 has no relation at all"));
  CHECK_THROWS_WITH(relation_adjacency(Tensor<T>({3, 2, 1}), false),
                    Contains("relation_adjacency: the relation tensor must be [N, N, R]") && Contains("[3, 2, 1]"));
  CHECK_THROWS_WITH(relation_mask(Tensor<T>({3, 3})), Contains("relation_mask: the relation tensor must be [N, N, R]"));
  CHECK_THROWS_WITH(relation_mask(Tensor<T>({3, 3, 0})), Contains("got shape [3, 3, 0]"));
  Tensor<T> nan = rel;
  nan(1, 2, 1) = std::numeric_limits<T>::quiet_NaN();
  CHECK_THROWS_WITH(relation_mask(nan), Contains("the relation tensor at [1, 2, 1] is NaN"));
}

TEMPLATE_TEST_CASE("relation_adjacency and relation_mask: the original load_graph_relation_data's and "
                   "load_relation_data's arrays",
                   "[eod][relation][fixtures]", float, double) {
  using T = TestType;
  const std::string dir = std::string(STOCKMIXER_FIXTURE_DIR) + "/eod/relation/";
  const Tensor<T> rel = io::read_npy<T>(dir + "relation.npy");
  // float64 in the original; the same double arithmetic here, then cast to T: equal.
  CHECK(values(relation_adjacency(rel, false)) == values(io::read_npy<T>(dir + "adjacency.npy")));
  CHECK(values(relation_adjacency(rel, true)) == values(io::read_npy<T>(dir + "laplacian.npy")));
  CHECK(values(relation_mask(rel)) == values(io::read_npy<T>(dir + "mask.npy")));
  // Where the original returns NaN rows and columns (a stock without relations), we raise.
  const std::string iso = std::string(STOCKMIXER_FIXTURE_DIR) + "/eod/relation_isolated/";
  const Tensor<double> original = io::read_npy<double>(iso + "adjacency.npy");
  CHECK(std::isnan(original(2, 0)));
  CHECK_THROWS_WITH(relation_adjacency(io::read_npy<T>(iso + "relation.npy"), false),
                    Contains("stock 2 has no relation at all"));
  CHECK(values(relation_mask(io::read_npy<T>(iso + "relation.npy"))) == values(io::read_npy<T>(iso + "mask.npy")));
}

// ---- the real NASDAQ data ------------------------------------------------------------------------------

TEST_CASE("load_market_dir: the real NASDAQ data (../shared/data/NASDAQ)", "[eod][real]") {
  const std::string root = nasdaq_dir();
  if (!fs::is_directory(root)) {
    WARN("[real] NASDAQ test skipped: " + root + " not found (the dataset lives beside the repository, "
         "in ../shared/data/NASDAQ; a fresh clone has none)");
    return;
  }
  const auto t0 = std::chrono::steady_clock::now();
  const LoadedMarket<float> lm = load_market_dir<float>(root, "NASDAQ");
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::cout << "[real] load_market_dir<float>(" << root << ", NASDAQ): 1026 files in " << seconds << " s\n";
  const Market<float>& m = lm.market;

  REQUIRE(m.eod.shape() == Shape{1026, 1245, 5});  // 1246 rows a file, the last dropped
  REQUIRE(m.mask.shape() == Shape{1026, 1245});
  CHECK(m.tickers.size() == 1026);
  CHECK(m.tickers[0] == "AABA");
  CHECK(m.tickers[2] == "AAPL");
  CHECK_NOTHROW(m.validate(root));
  // The original load_EOD_data's mask: 1275642 of the 1277370 cells present (99.865 %).
  double present = 0;
  for (Index k = 0; k < m.mask.size(); ++k) present += m.mask.data()[k];
  CHECK(present == 1275642.0);
  // AAPL's first and last kept rows (NASDAQ_AAPL_1.csv lines 1 and 1245).
  const float row0[5] = {0.424556f, 0.424768f, 0.429769f, 0.442628f, 0.445018f};
  const float row1244[5] = {0.961348f, 0.968384f, 0.973116f, 0.971692f, 0.961019f};
  for (Index f = 0; f < 5; ++f) {
    CHECK(m.eod(2, 0, f) == row0[f]);
    CHECK(m.eod(2, 1244, f) == row1244[f]);
  }
  CHECK(m.price(2, 1) == 0.439414f);
  CHECK(m.gt(2, 1) == (0.439414f - 0.445018f) / 0.445018f);
  // ABCO (stock 8) is missing from row 1231 (line 1232) on: mask 0, every cell 1.1, price 1.1, gt 0.
  CHECK(m.tickers[8] == "ABCO");
  CHECK(m.mask(8, 1230) == 1.0f);
  CHECK(m.mask(8, 1231) == 0.0f);
  CHECK(m.eod(8, 1231, 0) == 1.1f);
  CHECK(m.price(8, 1231) == 1.1f);
  CHECK(m.gt(8, 1231) == 0.0f);
  CHECK(m.gt(8, 1230) == (0.773904f - 0.773185f) / 0.773185f);
  // Dates: row 0 is 2013-01-02, the last kept row 2017-12-08 (lines 30 and 1274 of 1275).
  CHECK(lm.dates.size() == 1275);
  CHECK(lm.dates[0] == "2012-11-19 16:00:00");
  CHECK(date_of_row(lm.dates, 0) == "2013-01-02 16:00:00");
  CHECK(date_of_row(lm.dates, 1244) == "2017-12-08 16:00:00");
  CHECK(seconds < 5.0);  // about 0.2 s in a Release build; generous for Debug and sanitizer builds
}

// ---- hostile files ---------------------------------------------------------------------------------

TEST_CASE("read_tickers skips a UTF-8 BOM, and other stray bytes are shown escaped in every message",
          "[eod][lists][hostile]") {
  TempDir dir;
  // Excel writes a byte order mark before the first ticker: without the skip it became part of it.
  CHECK(read_tickers(dir.write("bom.csv", "\xEF\xBB\xBF" "AA\nBB\n")) == std::vector<std::string>{"AA", "BB"});
  CHECK(read_trading_dates(dir.write("bom_dates.csv", "\xEF\xBB\xBF" "2013-01-02\n")) ==
        std::vector<std::string>{"2013-01-02"});
  // A control character cannot be part of a file name: refused, and shown.
  std::string p = dir.write("control.csv", "AA\nB\x01" "B\n");
  CHECK_THROWS_WITH(read_tickers(p), Contains(p + ": line 2: ticker 'B\\x01B' contains the control character \\x01"));
  // A BOM in the middle of the file (two exports pasted together) and a non-breaking space are kept in
  // the ticker; the missing file's message shows their bytes.
  write_tiny(dir, "NYSE");
  p = dir.write("mid.csv", "AA\n\xEF\xBB\xBF" "BB\xC2\xA0\n");
  const std::vector<std::string> tickers = read_tickers(p);
  REQUIRE(tickers.size() == 2);
  CHECK_THROWS_WITH(load_eod<float>(dir.str(), "NYSE", tickers),
                    Contains("NYSE_\\xEF\\xBB\\xBFBB\\xC2\\xA0_1.csv: cannot open the file") &&
                        Contains("ticker '\\xEF\\xBB\\xBFBB\\xC2\\xA0', 2 of 2"));
  // A CSV cell with a stray byte: the cell is shown with it escaped.
  dir.write("NYSE_BB_1.csv", "0,1,0.5\n1,2\xC2\xA0" ",0.5\n2,3,0.5\n3,4,0.5\n4,5,0.5\n");
  CHECK_THROWS_WITH(load_eod<float>(dir.str(), "NYSE", {"AA", "BB"}),
                    Contains("NYSE_BB_1.csv: line 2, column 2: expected a number, got '2\\xC2\\xA0'"));
  dir.write("NYSE_BB_1.csv", "\xEF\xBB\xBF" "0,1,0.5\n1,2,0.5\n2,3,0.5\n3,4,0.5\n4,5,0.5\n");
  CHECK_THROWS_WITH(load_eod<float>(dir.str(), "NYSE", {"AA", "BB"}),
                    Contains("line 1, column 1: expected a number, got '\\xEF\\xBB\\xBF0'"));
  // Only regular files are read: a folder where a file should be is named as one.
  fs::create_directories(dir.path("folder.csv"));
  CHECK_THROWS_WITH(read_tickers(dir.path("folder.csv")), Contains(dir.path("folder.csv")) && Contains("a directory"));
}

TEST_CASE("load_eod refuses a market in which every close is missing", "[eod][load][hostile]") {
  TempDir dir;
  dir.write("NYSE_AA_1.csv", "0,1,-1234\n1,2,-1234\n2,3,-1234\n");
  dir.write("NYSE_BB_1.csv", "0,-1234,-1234\n1,-1234,-1234\n2,-1234,-1234\n");
  CHECK_THROWS_WITH(load_eod<float>(dir.str(), "NYSE", {"AA", "BB"}),
                    Contains(dir.path("NYSE_<ticker>_1.csv")) && Contains("every stock is missing on every day") &&
                        Contains("2 stocks over 3 days"));
  dir.write("NYSE_BB_1.csv", "0,-1234,-1234\n1,-1234,0.5\n2,-1234,-1234\n");  // one close present
  CHECK(load_eod<float>(dir.str(), "NYSE", {"AA", "BB"}).mask(1, 1) == 1.0f);
}

TEST_CASE("load_sp500_npy: a file whose shape's product overflows is refused, naming it", "[eod][sp500][hostile]") {
  // dataset --market SP500 on such a file corrupted the heap: the product wrapped, the array was
  // allocated at the wrapped size and written at the declared one.
  TempDir dir;
  for (const char* shape : {"(4294967296, 4294967296, 5)", "(2, 3074457345618258603, 3)", "(3, 1000, 100000000000)"}) {
    INFO("shape " << shape);
    const std::string header = std::string("{'descr': '<f4', 'fortran_order': False, 'shape': ") + shape + ", }";
    std::string bytes = std::string("\x93NUMPY\x01\x00", 8);
    const std::string padded = header + std::string(63 - (10 + header.size()) % 64, ' ') + "\n";
    bytes += static_cast<char>(padded.size() & 0xFF);
    bytes += static_cast<char>(padded.size() >> 8);
    const std::string path = dir.write("sp500.npy", bytes + padded + std::string(48, '\0'));
    CHECK_THROWS_WITH(load_sp500_npy<float>(path), Contains(path) && (Contains("overflows") || Contains("truncated")));
  }
}
