// The market in memory (stockmixer/data/market.hpp): get_batch against a hand-built market with every
// output value written out, its range errors, Market::validate's errors, load_EOD_data's row loop
// (with its 1.1 quirk), and the synthetic market: deterministic, in the loader's format, and with a
// planted signal that an oracle reading only the features can find.
#include <stockmixer/data/market.hpp>
#include <stockmixer/provenance.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>
#include <random>
#include <string>
#include <vector>

// Every allocation can be made to fail in turn (alloc_counter.hpp): see the synthetic market's memory test.
#include "alloc_counter.hpp"

using namespace stockmixer;
using namespace stockmixer::data;
using Catch::Matchers::Contains;

namespace {

// N = 2 stocks, D = 6 days, C = 2 features. eod[i, d, f] = 100 i + 10 d + f; price and gt as in the
// tables; stock 0 misses day 5, stock 1 misses day 3.
template <class T>
Market<T> tiny_market(Index steps) {
  const double price[2][6] = {{1.0, 1.1, 1.2, 1.3, 1.4, 1.5}, {2.0, 2.1, 2.2, 2.3, 2.4, 2.5}};
  const double gt[2][6] = {{0.010, 0.011, 0.012, 0.013, 0.014, 0.015}, {0.020, 0.021, 0.022, 0.023, 0.024, 0.025}};
  Market<T> m;
  m.steps = steps;
  m.eod = Tensor<T>({2, 6, 2});
  m.mask = Tensor<T>({2, 6});
  m.gt = Tensor<T>({2, 6});
  m.price = Tensor<T>({2, 6});
  m.tickers = {"AAA", "BBB"};
  for (Index i = 0; i < 2; ++i)
    for (Index d = 0; d < 6; ++d) {
      for (Index f = 0; f < 2; ++f) m.eod(i, d, f) = static_cast<T>(100 * i + 10 * d + f);
      m.mask(i, d) = T(1);
      m.price(i, d) = static_cast<T>(price[i][d]);
      m.gt(i, d) = static_cast<T>(gt[i][d]);
    }
  m.mask(0, 5) = T(0);
  m.mask(1, 3) = T(0);
  return m;
}

template <class T>
std::vector<T> values(const Tensor<T>& t) {
  return {t.data(), t.data() + t.size()};
}

// One expected window, written out by hand.
template <class T>
void check_batch(const Batch<T>& b, std::vector<T> x, std::vector<T> mask, std::vector<T> base, std::vector<T> gt) {
  CHECK(b.x.shape() == Shape{2, 2, 2});
  CHECK(b.mask.shape() == Shape{2, 1});
  CHECK(b.base.shape() == Shape{2, 1});
  CHECK(b.gt.shape() == Shape{2, 1});
  CHECK(values(b.x) == x);
  CHECK(values(b.mask) == mask);
  CHECK(values(b.base) == base);
  CHECK(values(b.gt) == gt);
}

template <class T>
bool same_bits(const Tensor<T>& a, const Tensor<T>& b) {
  return a.shape() == b.shape() && std::memcmp(a.data(), b.data(), sizeof(T) * static_cast<std::size_t>(a.size())) == 0;
}

// Mean over days [first, last] of the Pearson correlation, across the stocks valid on day d and d - 1
// (so gt[i, d] is a real one-day return and the oracle read real features), of pred[:, d] and gt[:, d].
// `shuffle` permutes the predictions among the stocks each day (a fixed seed).
template <class T>
double mean_daily_ic(const Market<T>& m, const Tensor<T>& pred, Index first, Index last, bool shuffle = false) {
  std::mt19937_64 rng(12345);
  double sum = 0.0;
  Index count = 0;
  std::vector<double> p, g;
  for (Index d = first; d <= last; ++d) {
    p.clear();
    g.clear();
    for (Index i = 0; i < m.stocks(); ++i)
      if (m.mask(i, d) == T(1) && m.mask(i, d - 1) == T(1)) {
        p.push_back(static_cast<double>(pred(i, d)));
        g.push_back(static_cast<double>(m.gt(i, d)));
      }
    if (shuffle) std::shuffle(p.begin(), p.end(), rng);
    const auto k = static_cast<double>(p.size());
    double mp = 0.0, mg = 0.0;
    for (std::size_t j = 0; j < p.size(); ++j) mp += p[j], mg += g[j];
    mp /= k;
    mg /= k;
    double spg = 0.0, spp = 0.0, sgg = 0.0;
    for (std::size_t j = 0; j < p.size(); ++j) {
      spg += (p[j] - mp) * (g[j] - mg);
      spp += (p[j] - mp) * (p[j] - mp);
      sgg += (g[j] - mg) * (g[j] - mg);
    }
    REQUIRE(spp > 0.0);
    REQUIRE(sgg > 0.0);
    sum += spg / std::sqrt(spp * sgg);
    ++count;
  }
  return sum / static_cast<double>(count);
}

}  // namespace

TEMPLATE_TEST_CASE("get_batch: every output of a hand-built market, steps = 1", "[data][get_batch]", float, double) {
  using T = TestType;
  const Market<T> m = tiny_market<T>(1);
  m.validate("tiny");
  Batch<T> b;
  // offset 0, T = 2: x days 0-1, mask over days 0..2, base = price day 1, gt = gt day 2.
  get_batch(m, 0, 2, b);
  check_batch<T>(b, {0, 1, 10, 11, 100, 101, 110, 111}, {1, 1}, {T(1.1), T(2.1)}, {T(0.012), T(0.022)});
  // offset 1: mask over days 1..3, stock 1 misses day 3 -> 0.
  get_batch(m, 1, 2, b);
  check_batch<T>(b, {10, 11, 20, 21, 110, 111, 120, 121}, {1, 0}, {T(1.2), T(2.2)}, {T(0.013), T(0.023)});
  // offset 2: days 2..4; stock 1's day 3 is in the input window itself.
  get_batch(m, 2, 2, b);
  check_batch<T>(b, {20, 21, 30, 31, 120, 121, 130, 131}, {1, 0}, {T(1.3), T(2.3)}, {T(0.014), T(0.024)});
  // offset 3 (the last): days 3..5; stock 0 misses the target day 5, stock 1 day 3.
  get_batch(m, 3, 2, b);
  check_batch<T>(b, {30, 31, 40, 41, 130, 131, 140, 141}, {0, 0}, {T(1.4), T(2.4)}, {T(0.015), T(0.025)});
  // T = 4 at offset 0: days 0..4, base = price day 3, gt = gt day 4.
  get_batch(m, 0, 4, b);
  CHECK(b.x.shape() == Shape{2, 4, 2});
  CHECK(values(b.x) == std::vector<T>{0, 1, 10, 11, 20, 21, 30, 31, 100, 101, 110, 111, 120, 121, 130, 131});
  CHECK(values(b.mask) == std::vector<T>{1, 0});
  CHECK(values(b.base) == std::vector<T>{T(1.3), T(2.3)});
  CHECK(values(b.gt) == std::vector<T>{T(0.014), T(0.024)});
}

TEMPLATE_TEST_CASE("get_batch: every output of a hand-built market, steps = 2", "[data][get_batch]", float, double) {
  using T = TestType;
  const Market<T> m = tiny_market<T>(2);
  Batch<T> b;
  // offset 0, T = 2: x days 0-1, mask over days 0..3 (stock 1 misses day 3), base = price day 1,
  // gt = gt day 3 (the target is T + steps - 1 days after the offset).
  get_batch(m, 0, 2, b);
  check_batch<T>(b, {0, 1, 10, 11, 100, 101, 110, 111}, {1, 0}, {T(1.1), T(2.1)}, {T(0.013), T(0.023)});
  // offset 1: mask over days 1..4.
  get_batch(m, 1, 2, b);
  check_batch<T>(b, {10, 11, 20, 21, 110, 111, 120, 121}, {1, 0}, {T(1.2), T(2.2)}, {T(0.014), T(0.024)});
  // offset 2 (the last): mask over days 2..5, stock 0 misses day 5.
  get_batch(m, 2, 2, b);
  check_batch<T>(b, {20, 21, 30, 31, 120, 121, 130, 131}, {0, 0}, {T(1.3), T(2.3)}, {T(0.015), T(0.025)});
  // With steps = 2 a window whose mask would be clean under steps = 1 reads the missing day too.
  Market<T> clean = tiny_market<T>(2);
  clean.mask(1, 3) = T(1);
  get_batch(clean, 0, 2, b);
  CHECK(values(b.mask) == std::vector<T>{1, 1});
  get_batch(clean, 2, 2, b);
  CHECK(values(b.mask) == std::vector<T>{0, 1});
}

TEST_CASE("get_batch: windows outside the market throw, naming offset, lookback, steps and D", "[data][get_batch]") {
  Batch<double> b;
  const Market<double> m1 = tiny_market<double>(1);
  REQUIRE_NOTHROW(get_batch(m1, 3, 2, b));  // [3, 6): the last window
  REQUIRE_THROWS_AS(get_batch(m1, 4, 2, b), Error);
  REQUIRE_THROWS_WITH(get_batch(m1, 4, 2, b), Contains("offset 4") && Contains("lookback 2") && Contains("steps 1") &&
                                                  Contains("D = 6") && Contains("[4, 7)"));
  REQUIRE_THROWS_WITH(get_batch(m1, -1, 2, b), Contains("offset -1") && Contains("D = 6"));
  REQUIRE_THROWS_WITH(get_batch(m1, 0, 0, b), Contains("lookback 0"));
  REQUIRE_THROWS_WITH(get_batch(m1, 0, 6, b), Contains("lookback 6") && Contains("[0, 7)"));
  const Market<double> m2 = tiny_market<double>(2);
  REQUIRE_NOTHROW(get_batch(m2, 2, 2, b));
  REQUIRE_THROWS_WITH(get_batch(m2, 3, 2, b), Contains("offset 3") && Contains("steps 2") && Contains("D = 6"));
}

TEST_CASE("get_batch: after the first call for a shape it does not allocate", "[data][get_batch]") {
  const Market<float> m = tiny_market<float>(1);
  Batch<float> b;
  get_batch(m, 0, 2, b);
  const float *x = b.x.data(), *mask = b.mask.data(), *base = b.base.data(), *gt = b.gt.data();
  for (Index offset : {1, 2, 3, 0}) {
    get_batch(m, offset, 2, b);
    CHECK(b.x.data() == x);
    CHECK(b.mask.data() == mask);
    CHECK(b.base.data() == base);
    CHECK(b.gt.data() == gt);
  }
}

TEST_CASE("Market::validate names the source, the tensor and the first bad index", "[data][validate]") {
  using M = Market<double>;
  REQUIRE_NOTHROW(tiny_market<double>(1).validate("tiny"));
  const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();

  M m = tiny_market<double>(1);
  m.eod(1, 4, 1) = nan;
  m.eod(1, 5, 0) = nan;  // a later one: the first is reported
  REQUIRE_THROWS_AS(m.validate("tiny"), Error);
  REQUIRE_THROWS_WITH(m.validate("tiny"), Contains("tiny: ") && Contains("eod") && Contains("stock 1 (BBB)") &&
                                              Contains("day 4") && Contains("feature 1") && Contains("NaN"));
  m = tiny_market<double>(1);
  m.gt(0, 2) = inf;
  REQUIRE_THROWS_WITH(m.validate("src"), Contains("src: gt") && Contains("stock 0 (AAA), day 2") && Contains("+Inf"));
  m = tiny_market<double>(1);
  m.price(1, 0) = -inf;
  REQUIRE_THROWS_WITH(m.validate("src"), Contains("price") && Contains("stock 1 (BBB), day 0") && Contains("-Inf"));
  m = tiny_market<double>(1);
  m.mask(0, 1) = nan;
  REQUIRE_THROWS_WITH(m.validate("src"), Contains("mask") && Contains("stock 0 (AAA), day 1") && Contains("NaN"));
  m = tiny_market<double>(1);
  m.mask(1, 2) = 0.5;
  REQUIRE_THROWS_WITH(m.validate("src"), Contains("mask") && Contains("stock 1 (BBB), day 2") && Contains("0.5") &&
                                             Contains("must be 0 or 1"));
  m = tiny_market<double>(1);
  m.price(0, 4) = 0.0;
  REQUIRE_THROWS_WITH(m.validate("src"), Contains("price") && Contains("stock 0 (AAA), day 4") && Contains("> 0"));

  // Shapes.
  m = tiny_market<double>(1);
  m.mask = Tensor<double>({2, 5});
  REQUIRE_THROWS_WITH(m.validate("src"),
                      Contains("src: mask has shape [2, 5]") && Contains("[2, 6, 2]") && Contains("needs [2, 6]"));
  m = tiny_market<double>(1);
  m.gt = Tensor<double>({3, 6});
  REQUIRE_THROWS_WITH(m.validate("src"), Contains("gt has shape [3, 6]"));
  m = tiny_market<double>(1);
  m.price = Tensor<double>({2, 6, 1});
  REQUIRE_THROWS_WITH(m.validate("src"), Contains("price has shape [2, 6, 1]"));
  m = tiny_market<double>(1);
  m.eod = Tensor<double>({2, 6});
  REQUIRE_THROWS_WITH(m.validate("src"), Contains("eod must be [N, D, C]") && Contains("[2, 6]"));
  m = tiny_market<double>(1);
  m.tickers.push_back("CCC");
  REQUIRE_THROWS_WITH(m.validate("src"), Contains("3 tickers for 2 stocks"));
  m.tickers.clear();  // names are optional
  REQUIRE_NOTHROW(m.validate("src"));
  m.steps = 0;
  REQUIRE_THROWS_WITH(m.validate("src"), Contains("steps must be >= 1"));
}

TEMPLATE_TEST_CASE("ingest_eod_rows: load_EOD_data's row loop, the 1.1 fill and its gt quirk", "[data][loader]", float,
                   double) {
  using T = TestType;
  const T X = T(-1234);
  // One ticker, D = 6, C = 2 (one moving average, then close). Day 2's close is missing; day 4 has its
  // moving average but no close (AMAT has such a row); day 5's moving average is missing alone.
  const std::vector<T> file = {
      0, T(0.5),  T(0.5),  //
      1, T(0.55), T(0.6),  //
      2, X,       X,       //
      3, T(0.7),  T(0.8),  //
      4, T(0.75), X,       //
      5, X,       T(0.4),  //
  };
  for (Index steps : {1, 2}) {
    Market<T> m;
    m.steps = steps;
    m.eod = Tensor<T>({2, 6, 2});
    m.mask = Tensor<T>({2, 6});
    m.gt = Tensor<T>({2, 6});
    m.price = Tensor<T>({2, 6});
    std::vector<T> rows = file;
    ingest_eod_rows(m, 1, rows.data());
    const T f = T(1.1);
    CHECK(std::vector<T>(&m.eod(1, 0, 0), &m.eod(1, 0, 0) + 12) ==
          std::vector<T>{T(0.5), T(0.5), T(0.55), T(0.6), f, f, T(0.7), T(0.8), T(0.75), f, f, T(0.4)});
    CHECK(std::vector<T>(&m.mask(1, 0), &m.mask(1, 0) + 6) == std::vector<T>{1, 1, 0, 1, 0, 1});
    CHECK(std::vector<T>(&m.price(1, 0), &m.price(1, 0) + 6) == std::vector<T>{T(0.5), T(0.6), f, T(0.8), f, T(0.4)});
    std::vector<T> gt(&m.gt(1, 0), &m.gt(1, 0) + 6);
    if (steps == 1) {
      // Day 3 follows the missing day 2, whose close the loop has already turned into 1.1.
      CHECK(gt == std::vector<T>{0, (T(0.6) - T(0.5)) / T(0.5), 0, (T(0.8) - f) / f, 0, (T(0.4) - f) / f});
    } else {
      CHECK(gt == std::vector<T>{0, 0, 0, (T(0.8) - T(0.6)) / T(0.6), 0, (T(0.4) - T(0.8)) / T(0.8)});
    }
    CHECK(rows[7] == f);  // the array is rewritten in place, as the original's
    CHECK(rows[8] == f);
    // Stock 0 untouched.
    CHECK(std::all_of(m.mask.data(), m.mask.data() + 6, [](T v) { return v == T(0); }));
    REQUIRE_THROWS_WITH(ingest_eod_rows(m, 2, rows.data()), Contains("stock 2"));
  }
}

TEST_CASE("synthetic market: deterministic for a seed, different for another", "[data][synthetic]") {
  SyntheticOptions o;
  const Market<float> a = synthetic_market<float>(o), b = synthetic_market<float>(o);
  CHECK(same_bits(a.eod, b.eod));
  CHECK(same_bits(a.mask, b.mask));
  CHECK(same_bits(a.gt, b.gt));
  CHECK(same_bits(a.price, b.price));
  CHECK(a.tickers == b.tickers);
  o.seed = 2;
  const Market<float> c = synthetic_market<float>(o);
  CHECK_FALSE(same_bits(a.eod, c.eod));
  CHECK_FALSE(same_bits(a.mask, c.mask));
  CHECK_FALSE(same_bits(a.gt, c.gt));
  // float and double come from the same double-precision path: one rounding apart.
  o.seed = 1;
  const Market<double> d = synthetic_market<double>(o);
  for (Index k = 0; k < a.eod.size(); ++k) REQUIRE(a.eod.data()[k] == static_cast<float>(d.eod.data()[k]));
  CHECK(std::equal(a.mask.data(), a.mask.data() + a.mask.size(), d.mask.data()));
}

TEMPLATE_TEST_CASE("synthetic market: the loader's format, exactly", "[data][synthetic]", float, double) {
  using T = TestType;
  struct Case {
    Index stocks, days, features, steps;
    double missing;
  };
  const Case cases[] = {{200, 600, 5, 1, 0.02}, {50, 300, 5, 2, 0.05}, {30, 120, 3, 1, 0.0}, {20, 80, 7, 3, 0.1}};
  for (const Case& k : cases) {
    SyntheticOptions o;
    o.stocks = k.stocks;
    o.days = k.days;
    o.features = k.features;
    o.steps = k.steps;
    o.missing = k.missing;
    o.seed = 7;
    INFO("N " << k.stocks << " D " << k.days << " C " << k.features << " steps " << k.steps << " missing "
              << k.missing);
    const Market<T> m = synthetic_market<T>(o);
    REQUIRE_NOTHROW(m.validate("synthetic"));
    const Index n = k.stocks, d = k.days, c = k.features;
    REQUIRE(m.eod.shape() == Shape{n, d, c});
    REQUIRE(m.mask.shape() == Shape{n, d});
    REQUIRE(m.gt.shape() == Shape{n, d});
    REQUIRE(m.price.shape() == Shape{n, d});
    CHECK(m.steps == k.steps);
    REQUIRE(m.tickers.size() == static_cast<std::size_t>(n));
    CHECK(m.tickers.front() == "SYN0000");
    CHECK(m.tickers[static_cast<std::size_t>(n - 1)] == (n == 200 ? "SYN0199" : m.tickers.back()));

    // Exactly round(missing * N * D) cells are missing.
    const auto zeros = std::count(m.mask.data(), m.mask.data() + m.mask.size(), T(0));
    CHECK(zeros == std::llround(k.missing * static_cast<double>(n * d)));

    const T fill = T(1.1);
    Index runs_longer_than_one = 0;
    for (Index i = 0; i < n; ++i) {
      T top = 0;
      for (Index t = 0; t < d; ++t) {
        const T close = m.eod(i, t, c - 1);
        CHECK(m.price(i, t) == close);  // base price = the close column
        if (m.mask(i, t) == T(0)) {
          for (Index f = 0; f < c; ++f) REQUIRE(m.eod(i, t, f) == fill);
          REQUIRE(m.gt(i, t) == T(0));
          if (t > 0 && m.mask(i, t - 1) == T(0)) ++runs_longer_than_one;
          continue;
        }
        // Present: every column positive, close in (0, 1], moving averages on the same scale.
        REQUIRE(close > T(0));
        REQUIRE(close <= T(1));
        top = std::max(top, close);
        for (Index f = 0; f + 1 < c; ++f) {
          REQUIRE(m.eod(i, t, f) > T(0));
          REQUIRE(m.eod(i, t, f) < T(1.5));
        }
        // gt as load_EOD_data computes it, in T, with the 1.1 quirk after a missing day.
        if (t < k.steps) {
          REQUIRE(m.gt(i, t) == T(0));
        } else {
          const T prev = m.eod(i, t - k.steps, c - 1);
          REQUIRE(m.gt(i, t) == (close - prev) / prev);
        }
        // Column 0 is the 5-day moving average of close (today included) where the days are present.
        if (c >= 2 && t >= 4) {
          bool all = true;
          double sum = 0.0;
          for (Index u = t - 4; u <= t; ++u) {
            all = all && m.mask(i, u) == T(1);
            sum += static_cast<double>(m.eod(i, u, c - 1));
          }
          if (all) REQUIRE(static_cast<double>(m.eod(i, t, 0)) == Approx(sum / 5.0).epsilon(1e-5));
        }
      }
      CHECK(top == T(1));  // divided by the stock's largest present close
    }
    if (k.missing > 0) CHECK(runs_longer_than_one > 0);  // missing days come in runs
  }
}

TEST_CASE("synthetic market: options are checked", "[data][synthetic]") {
  SyntheticOptions o;
  o.missing = 0.6;
  REQUIRE_THROWS_WITH(synthetic_market<float>(o), Contains("missing"));
  o = SyntheticOptions{};
  o.steps = 0;
  REQUIRE_THROWS_WITH(synthetic_market<float>(o), Contains("steps"));
  o = SyntheticOptions{};
  o.stocks = 0;
  REQUIRE_THROWS_WITH(synthetic_market<float>(o), Contains("stocks"));
  o = SyntheticOptions{};
  o.features = 1;
  o.days = 50;
  const Market<float> m = synthetic_market<float>(o);  // close only: valid, but nothing to read the signal from
  CHECK(m.eod.shape() == Shape{200, 50, 1});
  REQUIRE_THROWS_WITH(synthetic_oracle(m, o.signal), Contains("C >= 2"));
}

TEMPLATE_TEST_CASE("synthetic market: the planted signal is real and readable from the features", "[data][synthetic]",
                   float, double) {
  using T = TestType;
  const SyntheticOptions o;  // 200 stocks, 600 days, signal 0.15
  const Market<T> m = synthetic_market<T>(o);

  // The oracle, computed here from the features alone: -signal * log(close / ma5) on the day before.
  Tensor<T> oracle({o.stocks, o.days});
  for (Index i = 0; i < o.stocks; ++i)
    for (Index d = 1; d < o.days; ++d)
      if (m.mask(i, d - 1) == T(1))
        oracle(i, d) = static_cast<T>(
            -o.signal * std::log(static_cast<double>(m.eod(i, d - 1, 4)) / static_cast<double>(m.eod(i, d - 1, 0))));
  CHECK(same_bits(oracle, synthetic_oracle(m, o.signal)));

  const double ic = mean_daily_ic(m, oracle, 100, 500);
  const double shuffled = mean_daily_ic(m, oracle, 100, 500, /*shuffle=*/true);
  INFO("oracle IC " << ic << ", shuffled " << shuffled);
  CHECK(ic > 0.05);
  CHECK(ic < 0.3);
  CHECK(std::abs(shuffled) < 0.02);
  CHECK(std::abs(ic - 0.147) < 0.005);  // the value the header and docs/synthetic_market.md quote

  // The same predictor on a market without the planted part finds nothing: the IC is the signal's.
  SyntheticOptions none = o;
  none.signal = 0.0;
  const Market<T> flat = synthetic_market<T>(none);
  const Tensor<T> reader = synthetic_oracle(flat, 1.0);
  CHECK(std::abs(mean_daily_ic(flat, reader, 100, 500)) < 0.02);
}

// ---- markets that cannot be trained on -------------------------------------------------------------

TEST_CASE("check_has_data and check_trainable refuse markets with nothing to learn from", "[data][validate][hostile]") {
  // 3 stocks over 12 days, steps 1, lookback 3: a training window covers 4 days.
  Market<double> m;
  m.eod = Tensor<double>({3, 12, 2});
  m.mask = m.gt = m.price = Tensor<double>({3, 12});
  m.price.fill(1.0);
  CHECK_THROWS_WITH(check_has_data(m, "hand-built"),
                    Contains("hand-built: every stock is missing on every day") && Contains("3 stocks over 12 days"));
  CHECK_THROWS_WITH(check_trainable(m, 3, 0, 8, "hand-built"),
                    Contains("hand-built: no training window holds a present stock") && Contains("[0, 8)") &&
                        Contains("0 of 24 stock-days present"));
  // Present every day but one in three: runs of 2 days, never a whole window of 4.
  for (Index i = 0; i < 3; ++i)
    for (Index t = 0; t < 12; ++t) m.mask(i, t) = (t + i) % 3 == 0 ? 0.0 : 1.0;
  REQUIRE_NOTHROW(check_has_data(m, "hand-built"));
  CHECK_THROWS_WITH(check_trainable(m, 3, 0, 12, "hand-built"), Contains("24 of 36 stock-days present"));
  // Stock 1 present on days 7..10: a whole window, but it ends on day 10, outside training days [0, 8).
  for (Index t = 7; t < 11; ++t) m.mask(1, t) = 1.0;
  CHECK_THROWS_WITH(check_trainable(m, 3, 0, 8, "hand-built"), Contains("no training window"));
  REQUIRE_NOTHROW(check_trainable(m, 3, 0, 11, "hand-built"));
  REQUIRE_NOTHROW(check_trainable(m, 2, 0, 12, "hand-built"));  // lookback 2: windows of 3
  // From a later start (a walk-forward window): stock 1's window [7, 11) is the only whole one, so a
  // start after day 7 leaves none, and the message names the days searched.
  REQUIRE_NOTHROW(check_trainable(m, 3, 7, 11, "hand-built"));
  CHECK_THROWS_WITH(check_trainable(m, 3, 8, 12, "hand-built"),
                    Contains("no training window holds a present stock") && Contains("[8, 12)") &&
                        Contains("of 12 stock-days present"));
  CHECK_THROWS_WITH(check_trainable(m, 3, 9, 12, "hand-built"), Contains("within [start + lookback + steps, D] = [13, 12]"));
  // The arguments themselves.
  CHECK_THROWS_WITH(check_trainable(m, 0, 0, 12, "hand-built"), Contains("lookback 0") && Contains("lookback >= 1"));
  CHECK_THROWS_WITH(check_trainable(m, 3, 0, 13, "hand-built"), Contains("(13) within [start + lookback + steps, D] = [4, 12]"));
  CHECK_THROWS_WITH(check_trainable(m, 3, 0, 3, "hand-built"), Contains("(3) within"));
  // The default synthetic market trains from its start (NASDAQ's split scaled: 600 days).
  const Market<float> s = synthetic_market<float>(SyntheticOptions{});
  REQUIRE_NOTHROW(check_has_data(s, "synthetic"));
  REQUIRE_NOTHROW(check_trainable(s, 16, 0, 400, "synthetic"));
}

TEST_CASE("synthetic market: sizes whose product overflows are refused before anything is computed",
          "[data][synthetic][hostile]") {
  const Index big = Index(1) << 40;
  SyntheticOptions o;
  o.stocks = big;
  o.days = big;
  CHECK_THROWS_WITH(o.validate(), Contains("overflows a 64-bit count") && Contains("1099511627776 stocks"));
  CHECK_THROWS_WITH(synthetic_market<float>(o), Contains("overflows"));
  o = SyntheticOptions{};
  o.features = std::numeric_limits<Index>::max();  // its moving-average windows would overflow first
  CHECK_THROWS_WITH(o.validate(), Contains("overflows"));
  o = SyntheticOptions{};
  o.stocks = Index(1) << 51;  // N * (D + burn-in) fits in 64 bits, N * (D + burn-in) * (C + 1) does not
  CHECK_THROWS_WITH(o.validate(), Contains("overflows"));
}

TEST_CASE("synthetic market: every allocation it makes may fail: an Error naming the bytes, never a bare bad_alloc",
          "[data][synthetic][memory]") {
  // Fails the k-th allocation of one synthetic_market call, for k = 0, 1, ... until a call makes
  // fewer than k allocations and succeeds (`bench --stocks 1e9` printed a bare std::bad_alloc).
  SyntheticOptions o;
  o.stocks = 30;
  o.days = 80;
  const Market<float> base = synthetic_market<float>(o);
  Market<float> m;
  const long k = testing::fail_each_allocation([&] { m = synthetic_market<float>(o); },
                                               [&](long failed, const std::string& error) {
                                                 INFO("allocation " << failed << " failed: " << error);
                                                 CHECK_THAT(error, Contains("stockmixer::data::synthetic_market") &&
                                                                       Contains("cannot allocate") &&
                                                                       Contains("out of memory"));
                                               },
                                               10000);
  REQUIRE(k < 10000);
  CHECK(std::memcmp(m.eod.data(), base.eod.data(), sizeof(float) * static_cast<std::size_t>(m.eod.size())) == 0);
  CHECK(k >= 5);  // the simulation's buffers, the market's four tensors, the ticker list
}

TEST_CASE("provenance: FNV-1a of known strings, and the fingerprint follows every value and ticker", "[data][provenance]") {
  // The FNV-1a 64 test vectors (Fowler, Noll, Vo): "" and "a", "foobar".
  CHECK(fnv1a64("", 0) == 0xcbf29ce484222325ull);
  CHECK(fnv1a64("a", 1) == 0xaf63dc4c8601ec8cull);
  CHECK(fnv1a64("foobar", 6) == 0x85944171f73967e8ull);
  SyntheticOptions o;
  o.stocks = 6;
  o.days = 40;
  Market<float> m = synthetic_market<float>(o);
  const nlohmann::json a = data_fingerprint(m);
  CHECK(a.at("stocks") == 6);
  CHECK(a.at("days") == 40);
  CHECK(a.at("data_fnv1a64").get<std::string>().size() == 16);
  CHECK(data_fingerprint(synthetic_market<float>(o)) == a);  // the same data, the same fingerprint
  for (Tensor<float>* t : {&m.eod, &m.mask, &m.gt, &m.price}) {
    const float keep = t->data()[t->size() - 1];
    t->data()[t->size() - 1] = keep + 0.5f;  // the last value of each array counts
    const nlohmann::json b = data_fingerprint(m);
    CHECK(b.at("data_fnv1a64") != a.at("data_fnv1a64"));
    CHECK(b.at("tickers_fnv1a64") == a.at("tickers_fnv1a64"));
    t->data()[t->size() - 1] = keep;
  }
  m.tickers[5] += "X";
  CHECK(data_fingerprint(m).at("tickers_fnv1a64") != a.at("tickers_fnv1a64"));
  CHECK(data_fingerprint(m).at("data_fnv1a64") == a.at("data_fnv1a64"));
  const nlohmann::json build = build_info();
  CHECK(build.at("version") == kVersion);
  CHECK((build.at("isa") == "baseline" || build.at("isa") == "avx2" || build.at("isa") == "avx512"));
  CHECK(build.at("threads") == num_threads());
}
