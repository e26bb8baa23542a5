// stockmixer::metrics::evaluate against the original StockMixer evaluator (fixtures written by
// tests/make_metrics_fixtures.py, which runs the original code itself), hand-computed 3-stock x 2-day
// cases for every metric, np.argsort's tie order, and the input errors.
//
// Tolerance: every field within 1e-10 relative of the original's value (it sums in other orders, e.g.
// over Python sets, so a few ulps differ); NaN must match NaN, ±Inf the same ±Inf. Counts are exact.
#include <stockmixer/metrics/evaluate.hpp>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <xtensor/xarray.hpp>
#include <xtensor/xnpy.hpp>

#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <new>
#include <string>
#include <vector>

// Every allocation can be made to fail in turn (alloc_counter.hpp): see evaluate's memory tests.
#include "alloc_counter.hpp"

using namespace stockmixer;
using metrics::evaluate;
using metrics::Performance;
using Catch::Matchers::Contains;

namespace {

const double kNaN = std::numeric_limits<double>::quiet_NaN();

// a and b agree: both NaN, the same infinity, or within `rel` relative (exactly equal when b is 0).
bool same(double a, double b, double rel = 1e-10) {
  if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b);
  if (std::isinf(a) || std::isinf(b)) return a == b;
  return std::abs(a - b) <= rel * std::max(std::abs(a), std::abs(b));
}

#define CHECK_SAME(actual, expected)                                        \
  do {                                                                      \
    const double a_ = (actual), e_ = (expected);                            \
    INFO(#actual << " = " << a_ << ", expected " << e_ << " (rel. diff " \
                 << std::abs(a_ - e_) / std::max(std::abs(e_), 1e-300) << ")"); \
    CHECK(same(a_, e_));                                                    \
  } while (0)

// [N, days] row-major from rows of stocks.
Tensor<double> matrix(Index n, Index days, std::initializer_list<double> values) {
  return Tensor<double>({n, days}, values);
}

std::string fixture_dir(const std::string& name) {
  return std::string(STOCKMIXER_FIXTURE_DIR) + "/metrics/" + name + "/";
}

Tensor<double> load_matrix(const std::string& path) {
  const auto a = xt::load_npy<double>(path);
  REQUIRE(a.dimension() == 2);
  Tensor<double> t({static_cast<Index>(a.shape()[0]), static_cast<Index>(a.shape()[1])});
  std::copy(a.begin(), a.end(), t.data());
  return t;
}

double json_number(const nlohmann::json& j, const char* key) {
  const auto& v = j.at(key);
  return v.is_null() ? kNaN : v.get<double>();  // the script writes NaN as null
}

}  // namespace

// ---- against the original ----------------------------------------------------------------------

TEST_CASE("evaluate matches the original StockMixer evaluator on every field", "[metrics][fixtures]") {
  const std::string name = GENERATE(as<std::string>{}, "masked_50x30", "nasdaq_1026x20", "sparse_days", "ties");
  INFO("fixture " << name);
  const std::string dir = fixture_dir(name);
  std::ifstream in(dir + "expected.json");
  REQUIRE(in);  // run tests/make_metrics_fixtures.py
  const auto expected = nlohmann::json::parse(in);
  const auto pred = load_matrix(dir + "prediction.npy");
  const auto gt = load_matrix(dir + "ground_truth.npy");
  const auto mask = load_matrix(dir + "mask.npy");

  const Performance perf = evaluate(pred, gt, mask);
  CHECK_SAME(perf.mse, json_number(expected, "mse"));
  CHECK_SAME(perf.IC, json_number(expected, "IC"));
  CHECK_SAME(perf.RIC, json_number(expected, "RIC"));
  CHECK_SAME(perf.prec_10, json_number(expected, "prec_10"));
  CHECK_SAME(perf.sharpe5, json_number(expected, "sharpe5"));
  CHECK_SAME(perf.mrr_top, json_number(expected, "mrr_top"));
  CHECK_SAME(perf.bt_long, json_number(expected, "bt_long"));
  CHECK_SAME(perf.bt_long5, json_number(expected, "bt_long5"));
  CHECK_SAME(perf.bt_long10, json_number(expected, "bt_long10"));
  CHECK_SAME(perf.rank_ic, json_number(expected, "rank_ic"));
  CHECK_SAME(perf.rank_icir, json_number(expected, "rank_icir"));
  CHECK_SAME(perf.ic_valid, json_number(expected, "ic_valid"));
  CHECK_SAME(perf.ic_valid_ir, json_number(expected, "ic_valid_ir"));
  CHECK(perf.days == expected.at("days").get<Index>());
  CHECK(perf.skipped_days == expected.at("skipped_days").get<Index>());

  // The daily IC the original appends, one day at a time (pandas Series.corr of P·M and G·M).
  const auto& ic_days = expected.at("ic_days");
  REQUIRE(static_cast<Index>(ic_days.size()) == perf.days);
  const Index n = pred.dim(0), days = pred.dim(1);
  for (Index i = 0; i < days; ++i) {
    std::vector<double> pm(static_cast<std::size_t>(n)), gm(static_cast<std::size_t>(n));
    for (Index s = 0; s < n; ++s) {
      pm[static_cast<std::size_t>(s)] = pred(s, i) * mask(s, i);
      gm[static_cast<std::size_t>(s)] = gt(s, i) * mask(s, i);
    }
    INFO("day " << i);
    const auto& e = ic_days[static_cast<std::size_t>(i)];
    CHECK_SAME(metrics::pearson(pm.data(), gm.data(), n), e.is_null() ? kNaN : e.get<double>());
  }

  if (name == "sparse_days") {  // the original raises here; our answer is the guarded original's
    CHECK(expected.at("original_error").get<std::string>().find("IndexError") != std::string::npos);
    CHECK(std::isnan(perf.IC));
    CHECK(std::isnan(perf.RIC));
  }
}

TEST_CASE("float inputs are evaluated in double: same result as their double values", "[metrics]") {
  const std::string dir = fixture_dir("masked_50x30");
  const auto pred = load_matrix(dir + "prediction.npy");
  const auto gt = load_matrix(dir + "ground_truth.npy");
  const auto mask = load_matrix(dir + "mask.npy");
  Tensor<float> pf(pred.shape()), gf(gt.shape()), mf(mask.shape());
  Tensor<double> pd(pred.shape()), gd(gt.shape());
  for (Index k = 0; k < pred.size(); ++k) {
    pf.data()[k] = static_cast<float>(pred.data()[k]);
    gf.data()[k] = static_cast<float>(gt.data()[k]);
    mf.data()[k] = static_cast<float>(mask.data()[k]);
    pd.data()[k] = pf.data()[k];
    gd.data()[k] = gf.data()[k];
  }
  const auto a = evaluate(pf, gf, mf).to_json();
  const auto b = evaluate(pd, gd, mask).to_json();
  CHECK(a.dump() == b.dump());
}

// ---- np.argsort -------------------------------------------------------------------------------

TEST_CASE("numpy_argsort reproduces np.argsort's order among ties (default kind and heapsort)", "[metrics][argsort]") {
  const int n = GENERATE(5, 16, 17, 40, 1026);
  INFO("n = " << n);
  const std::string dir = fixture_dir("argsort");
  const auto values = xt::load_npy<double>(dir + "values_" + std::to_string(n) + ".npy");
  const auto quick = xt::load_npy<std::int64_t>(dir + "quicksort_" + std::to_string(n) + ".npy");
  const auto heap = xt::load_npy<std::int64_t>(dir + "heapsort_" + std::to_string(n) + ".npy");
  std::vector<double> v(values.begin(), values.end());
  std::vector<Index> order(v.size());
  metrics::numpy_argsort(order.data(), v.data(), n);
  CHECK(std::vector<Index>(quick.begin(), quick.end()) == order);
  metrics::numpy_argsort_heapsort(order.data(), v.data(), n);
  CHECK(std::vector<Index>(heap.begin(), heap.end()) == order);
}

TEST_CASE("numpy_argsort: the stated tie rule", "[metrics][argsort]") {
  // Up to 16 values numpy insertion-sorts, which is stable: among equal predictions the LAST stock
  // comes last in argsort, so the original (scanning from the end) ranks it first.
  std::vector<Index> order(17);
  const std::vector<double> three = {0.2, 0.2, 0.1};
  metrics::numpy_argsort(order.data(), three.data(), 3);
  CHECK(std::vector<Index>(order.begin(), order.begin() + 3) == std::vector<Index>{2, 0, 1});
  // From 17 values on, the median-of-3 partition is not stable: np.argsort(np.zeros(17)) is
  // [0 14 13 12 11 10 9 15 8 6 5 4 3 2 1 7 16], so the top-5 of 17 tied predictions is {16, 7, 1, 2, 3}.
  const std::vector<double> zeros(17, 0.0);
  metrics::numpy_argsort(order.data(), zeros.data(), 17);
  CHECK(order == std::vector<Index>{0, 14, 13, 12, 11, 10, 9, 15, 8, 6, 5, 4, 3, 2, 1, 7, 16});
  // Distinct values: the plain ascending order.
  const std::vector<double> distinct = {0.3, -1.0, 2.0, 0.0, 0.1, -0.5, 7.0, 1.5,  1.0, -2.0,
                                        0.2, 0.4,  3.0, -3.0, 5.0, 0.05, 0.9, -0.1, 4.0};
  std::vector<Index> o(distinct.size());
  metrics::numpy_argsort(o.data(), distinct.data(), static_cast<Index>(distinct.size()));
  for (std::size_t k = 1; k < o.size(); ++k)
    CHECK(distinct[static_cast<std::size_t>(o[k - 1])] < distinct[static_cast<std::size_t>(o[k])]);
}

TEST_CASE("average_ranks, pearson and spearman on known answers", "[metrics]") {
  const std::vector<double> x = {0.2, 0.2, 0.1, 0.5, 0.2};
  std::vector<double> r(5);
  metrics::average_ranks(r.data(), x.data(), 5);
  CHECK(r == std::vector<double>{3.0, 3.0, 1.0, 5.0, 3.0});  // 0.2 holds ranks 2, 3, 4
  const std::vector<double> a = {1, 2, 3}, b = {2, 4, 7}, c = {5, 5, 5};
  CHECK_SAME(metrics::pearson(a.data(), b.data(), 3), 15 / std::sqrt(228.0));  // dx (-1,0,1), dy (-7,-1,8)/3
  CHECK_SAME(metrics::spearman(a.data(), b.data(), 3), 1.0);  // same order: ranks (1,2,3) both
  CHECK(std::isnan(metrics::pearson(a.data(), c.data(), 3)));  // constant: undefined
  CHECK(std::isnan(metrics::pearson(a.data(), b.data(), 1)));  // one point: undefined
}

TEST_CASE("average_ranks equals its definition on sizes both sorts handle", "[metrics]") {
  // rank_i = 1 + #{j : x_j < x_i} + (#{j : x_j == x_i} - 1) / 2, counted pair by pair. Values on a
  // coarse grid (many ties), with -0 beside +0 and infinities; sizes below and above the radix
  // sort's threshold (sort.hpp).
  std::uint64_t state = 12345;
  auto next = [&state] {  // a fixed LCG: the same values everywhere
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    return static_cast<int>((state >> 33) % 41) - 20;
  };
  for (const Index n : {Index(7), stockmixer::detail::kRadixMin - 1, stockmixer::detail::kRadixMin, Index(1026)}) {
    std::vector<double> x(static_cast<std::size_t>(n));
    for (auto& v : x) v = 0.125 * next();
    x[0] = -0.0;
    x[static_cast<std::size_t>(n / 2)] = std::numeric_limits<double>::infinity();
    x[static_cast<std::size_t>(n - 1)] = -std::numeric_limits<double>::infinity();
    std::vector<double> r(static_cast<std::size_t>(n));
    metrics::average_ranks(r.data(), x.data(), n);
    for (std::size_t i = 0; i < x.size(); ++i) {
      double below = 0, equal = 0;
      for (const double v : x) {
        below += v < x[i] ? 1 : 0;
        equal += v == x[i] ? 1 : 0;
      }
      INFO("n = " << n << ", i = " << i << ", x = " << x[i]);
      CHECK(r[i] == 1 + below + (equal - 1) / 2);
    }
  }
}

// ---- hand-computed 3 stocks x 2 days ------------------------------------------------------------
// P = [[0.3, 0.1], [0.1, 0.2], [0.2, 0.3]], G = [[0.1, 0.2], [-0.2, 0.1], [0.3, 0.0]] (rows: stocks).

TEST_CASE("hand-computed: no mask", "[metrics][hand]") {
  const auto P = matrix(3, 2, {0.3, 0.1, 0.1, 0.2, 0.2, 0.3});
  const auto G = matrix(3, 2, {0.1, 0.2, -0.2, 0.1, 0.3, 0.0});
  const auto M = matrix(3, 2, {1, 1, 1, 1, 1, 1});
  const Performance p = evaluate(P, G, M);
  // (P-G)² summed: day 0 .04+.09+.01, day 1 .01+.01+.09; 6 entries.
  CHECK_SAME(p.mse, 0.25 / 6);
  // Day 0: dP = (1,-1,0)/10, dG = (1,-8,7)/30 -> r = 9/√(2·114); day 1: dP = -dG -> r = -1.
  const double r0 = 9 / std::sqrt(228.0), r1 = -1;
  CHECK_SAME(p.IC, (r0 + r1) / 2);
  CHECK_SAME(p.RIC, ((r0 + r1) / 2) / (std::abs(r0 - r1) / 2));  // population std of two = |a-b|/2
  // Predicted top-1: stock 0 on day 0 (2nd in realised order), stock 2 on day 1 (3rd).
  CHECK_SAME(p.mrr_top, (1.0 / 2 + 1.0 / 3) / 2);
  CHECK_SAME(p.bt_long, 1 + 0.1 + 0.0);
  // Top 5 = all three stocks: day 0 sums 0.2, day 1 0.3; divided by 5 and by 10 regardless.
  CHECK_SAME(p.bt_long5, 1 + 0.2 / 5 + 0.3 / 5);
  CHECK_SAME(p.bt_long10, 1 + 0.2 / 10 + 0.3 / 10);
  CHECK_SAME(p.prec_10, (2.0 / 10 + 3.0 / 10) / 2);  // 0.0 counts as >= 0
  CHECK_SAME(p.sharpe5, 0.05 / 0.01 * 15.87);         // r5 = (0.04, 0.06)
  // Spearman: day 0 ranks (3,1,2) vs (2,1,3) -> 0.5; day 1 -> -1.
  CHECK_SAME(p.rank_ic, -0.25);
  CHECK_SAME(p.rank_icir, -0.25 / 0.75);
  CHECK_SAME(p.ic_valid, p.IC);  // no stock masked: the same correlations
  CHECK_SAME(p.ic_valid_ir, p.RIC);
  CHECK(p.days == 2);
  CHECK(p.skipped_days == 0);
}

TEST_CASE("hand-computed: one masked stock", "[metrics][hand]") {
  const auto P = matrix(3, 2, {0.3, 0.1, 0.1, 0.2, 0.2, 0.3});
  const auto G = matrix(3, 2, {0.1, 0.2, -0.2, 0.1, 0.3, 0.0});
  const auto M = matrix(3, 2, {1, 0, 1, 1, 1, 1});  // stock 0 masked on day 1
  const Performance p = evaluate(P, G, M);
  CHECK_SAME(p.mse, (0.14 + 0.01 + 0.09) / 5);  // the masked entry counts neither above nor below
  // Day 1 over ALL stocks with stock 0 as zeros: P·M = (0, .2, .3), G·M = (0, .1, 0):
  // dP = (-5,1,4)/30, dG = (-1,2,-1)/30 -> r = 3/√(42·6) = 1/(2√7).
  const double r0 = 9 / std::sqrt(228.0), r1 = 1 / (2 * std::sqrt(7.0));
  CHECK_SAME(p.IC, (r0 + r1) / 2);
  CHECK_SAME(p.RIC, ((r0 + r1) / 2) / (std::abs(r0 - r1) / 2));
  // Day 1: predicted top-1 stock 2; realised order of the valid stocks: 1, 2 -> position 2.
  CHECK_SAME(p.mrr_top, (1.0 / 2 + 1.0 / 2) / 2);
  CHECK_SAME(p.bt_long, 1 + 0.1 + 0.0);
  CHECK_SAME(p.bt_long5, 1 + 0.2 / 5 + 0.1 / 5);  // day 1: stocks 2 and 1 only, still / 5
  CHECK_SAME(p.bt_long10, 1 + 0.2 / 10 + 0.1 / 10);
  CHECK_SAME(p.prec_10, (2.0 / 10 + 2.0 / 10) / 2);
  CHECK_SAME(p.sharpe5, 0.03 / 0.01 * 15.87);  // r5 = (0.04, 0.02)
  // Valid-only day 1: stocks 1, 2 with P (.2, .3), G (.1, 0): Pearson = Spearman = -1.
  CHECK_SAME(p.rank_ic, (0.5 - 1) / 2);
  CHECK_SAME(p.rank_icir, -1.0 / 3);
  CHECK_SAME(p.ic_valid, (r0 - 1) / 2);
  CHECK_SAME(p.ic_valid_ir, ((r0 - 1) / 2) / ((r0 + 1) / 2));
  CHECK(p.skipped_days == 0);
}

TEST_CASE("hand-computed: a day with every stock masked, and tied predictions", "[metrics][hand]") {
  // Day 0: every stock masked (the original raises IndexError). Day 1: stocks 0 and 1 tie at 0.2.
  const auto P = matrix(3, 2, {0.5, 0.2, 0.4, 0.2, 0.3, 0.1});
  const auto G = matrix(3, 2, {0.2, 0.1, 0.1, 0.3, 0.4, -0.2});
  const auto M = matrix(3, 2, {0, 1, 0, 1, 0, 1});
  const Performance p = evaluate(P, G, M);
  CHECK_SAME(p.mse, (0.01 + 0.01 + 0.09) / 3);
  // Day 0: P·M and G·M are all zeros -> IC NaN, and np.mean propagates it, as the original.
  CHECK(std::isnan(p.IC));
  CHECK(std::isnan(p.RIC));
  // Day 1: np.argsort((.2, .2, .1)) = [2, 0, 1]: the tie goes to stock 1 (see the tie rule above),
  // the realised best; a stable-descending pick (stock 0) would give mrr 1/2 and bt_long 1.1.
  // Day 0 is an all-miss day, left out of mrr_top.
  CHECK_SAME(p.mrr_top, 1.0);
  CHECK_SAME(p.bt_long, 1 + 0.0 + 0.3);  // day 0 holds nothing: 0
  CHECK_SAME(p.bt_long5, 1 + 0.0 + 0.2 / 5);
  CHECK_SAME(p.bt_long10, 1 + 0.0 + 0.2 / 10);
  CHECK_SAME(p.prec_10, (0.0 + 2.0 / 10) / 2);
  CHECK_SAME(p.sharpe5, 0.02 / 0.02 * 15.87);  // r5 = (0, 0.04)
  // Extras skip day 0; day 1: ranks P (2.5, 2.5, 1), G (2, 3, 1) -> 1.5/√(1.5·2) = √3/2.
  CHECK(p.skipped_days == 1);
  CHECK_SAME(p.rank_ic, std::sqrt(3.0) / 2);
  CHECK_SAME(p.ic_valid, 24 / std::sqrt(684.0));  // dP = (1,1,-2)/30, dG = (1,7,-8)/30
  CHECK(std::isnan(p.rank_icir));  // one kept day: std 0 -> NaN
  CHECK(std::isnan(p.ic_valid_ir));
}

TEST_CASE("hand-computed: a constant prediction among valid stocks", "[metrics][hand]") {
  // Day 0: stocks 0 and 1 valid with equal predictions; stock 2 masked. The original still has an IC
  // (P·M = (.2, .2, 0) is not constant); the extras skip the day.
  const auto P = matrix(3, 2, {0.2, 0.1, 0.2, 0.2, 0.5, 0.3});
  const auto G = matrix(3, 2, {0.1, 0.2, -0.2, 0.1, 0.3, 0.0});
  const auto M = matrix(3, 2, {1, 1, 1, 1, 0, 1});
  const Performance p = evaluate(P, G, M);
  // Day 0: dP = (2,2,-4)/30, G·M = (.1, -.2, 0): dG = (4,-5,1)/30 -> r = -3/√(6·42) = -1/(2√7); day 1 -> -1.
  const double r0 = -1 / (2 * std::sqrt(7.0));
  CHECK_SAME(p.IC, (r0 - 1) / 2);
  CHECK(p.skipped_days == 1);
  CHECK_SAME(p.rank_ic, -1.0);
  CHECK(std::isnan(p.rank_icir));
  // Every stock masked on every day: no day is counted for mrr_top, nor for the extras.
  const auto none = matrix(3, 2, {0, 0, 0, 0, 0, 0});
  const Performance q = evaluate(P, G, none);
  CHECK(std::isnan(q.mrr_top));
  CHECK(std::isnan(q.mse));  // 0 / 0, as np.sum(mask) = 0 gives
  CHECK(q.bt_long == 1.0);
  CHECK(q.skipped_days == 2);
  CHECK(std::isnan(q.rank_ic));
  CHECK(std::isnan(q.ic_valid_ir));
}

TEST_CASE("to_json names every field, and NaN becomes null", "[metrics]") {
  const auto P = matrix(3, 2, {0.5, 0.2, 0.4, 0.2, 0.3, 0.1});
  const auto G = matrix(3, 2, {0.2, 0.1, 0.1, 0.3, 0.4, -0.2});
  const auto M = matrix(3, 2, {0, 1, 0, 1, 0, 1});
  const Performance p = evaluate(P, G, M);
  const auto j = p.to_json();
  for (const char* key : {"mse", "IC", "RIC", "prec_10", "sharpe5", "mrr_top", "bt_long", "bt_long5", "bt_long10",
                          "rank_ic", "rank_icir", "ic_valid", "ic_valid_ir", "days", "skipped_days"})
    CHECK(j.contains(key));
  CHECK(j.size() == 15);
  CHECK(j.at("bt_long").get<double>() == p.bt_long);
  CHECK(j.at("skipped_days").get<Index>() == 1);
  CHECK(std::isnan(j.at("IC").get<double>()));
  CHECK(nlohmann::json::parse(j.dump()).at("IC").is_null());
}

// ---- errors ----------------------------------------------------------------------------------

TEST_CASE("evaluate rejects mismatched shapes, empty inputs and non-finite values", "[metrics][errors]") {
  Tensor<double> a({3, 2}), b({3, 2}), m({3, 2}), wide({3, 4}), flat({6});
  m.fill(1.0);
  REQUIRE_THROWS_AS(evaluate(a, wide, m), Error);
  REQUIRE_THROWS_WITH(evaluate(a, wide, m), Contains("prediction [3, 2]") && Contains("ground_truth [3, 4]") &&
                                                Contains("mask [3, 2]"));
  REQUIRE_THROWS_WITH(evaluate(a, b, wide), Contains("mask [3, 4]"));
  REQUIRE_THROWS_WITH(evaluate(flat, flat, flat), Contains("prediction [6]"));
  Tensor<double> empty({0, 2});
  REQUIRE_THROWS_WITH(evaluate(empty, empty, empty), Contains("at least one stock") && Contains("[0, 2]"));

  Tensor<double> bad({3, 2});
  bad(1, 0) = kNaN;
  REQUIRE_THROWS_WITH(evaluate(bad, b, m), Contains("prediction") && Contains("NaN") && Contains("stock 1, day 0"));
  bad(1, 0) = 0;
  bad(2, 1) = -std::numeric_limits<double>::infinity();
  REQUIRE_THROWS_WITH(evaluate(a, bad, m), Contains("ground_truth") && Contains("-Inf") && Contains("stock 2, day 1"));
  REQUIRE_THROWS_WITH(evaluate(a, b, bad), Contains("mask") && Contains("stock 2, day 1"));
  REQUIRE_NOTHROW(evaluate(a, b, m));
}

// ---- hostile magnitudes and memory ---------------------------------------------------------------

TEST_CASE("IC does not depend on the predictions' scale: no overflow at 1e160", "[metrics][scale]") {
  // The NASDAQ-shaped fixture (1026 stocks, 20 days, predictions around 1e-2). Scaled by a power of two
  // every IC is bit for bit the same (Pearson scales by powers of two itself); by another factor the
  // scaled values are rounded (0.5 ulp each), which moves r by a few ulps: 1e-12 relative bounds that
  // with a wide margin. Before the scaling, 1e160 made Σ dx² overflow to +Inf and every daily IC 0.
  const std::string dir = fixture_dir("nasdaq_1026x20");
  const auto pred = load_matrix(dir + "prediction.npy");
  const auto gt = load_matrix(dir + "ground_truth.npy");
  const auto mask = load_matrix(dir + "mask.npy");
  const Performance base = evaluate(pred, gt, mask);
  REQUIRE(std::abs(base.IC) > 1e-3);
  for (const double factor : {0x1p-1000, 0x1p-60, 0x1p+7, 0x1p+520, 0x1p+1000}) {
    INFO("factor " << factor);
    Tensor<double> scaled = pred;
    for (Index k = 0; k < scaled.size(); ++k) scaled.data()[k] *= factor;
    const Performance p = evaluate(scaled, gt, mask);
    CHECK(p.IC == base.IC);
    CHECK(p.RIC == base.RIC);
    CHECK(p.ic_valid == base.ic_valid);
  }
  for (const double factor : {1e-300, 1e-160, 3.7, 1e160, 1e300}) {
    INFO("factor " << factor);
    Tensor<double> scaled = pred;
    for (Index k = 0; k < scaled.size(); ++k) scaled.data()[k] *= factor;
    const Performance p = evaluate(scaled, gt, mask);
    CHECK(same(p.IC, base.IC, 1e-12));
    CHECK(same(p.RIC, base.RIC, 1e-12));
    CHECK(same(p.ic_valid, base.ic_valid, 1e-12));
  }
  // pearson alone, at the extremes of double: the largest finite values and subnormal ones.
  const double x[] = {1.0, 2.0, 4.0, 3.0}, y[] = {0.5, 0.1, 0.9, 0.7};
  const double r = metrics::pearson(x, y, 4);
  for (const double factor : {0x1p-1070, 0x1p+1020}) {
    double xs[4];
    for (int k = 0; k < 4; ++k) xs[k] = x[k] * factor;
    INFO("factor " << factor);
    CHECK(metrics::pearson(xs, y, 4) == r);
  }
}

TEST_CASE("evaluate: every allocation it makes may fail: an Error naming the bytes, never std::terminate",
          "[metrics][memory]") {
  // Fails the k-th allocation of one evaluate call, for k = 0, 1, ... until a call makes fewer than k
  // allocations and succeeds. An allocation inside the days' OpenMP region that threw there would end
  // the program; every one now happens before it, and a failure is an Error that names the size.
  const std::string dir = fixture_dir("nasdaq_1026x20");  // 20 days: two chunks of days, two threads
  const auto pred = load_matrix(dir + "prediction.npy");
  const auto gt = load_matrix(dir + "ground_truth.npy");
  const auto mask = load_matrix(dir + "mask.npy");
  const Performance base = evaluate(pred, gt, mask);
  Performance p;
  const long k = testing::fail_each_allocation([&] { p = evaluate(pred, gt, mask); },
                                               [&](long failed, const std::string& error) {
                                                 INFO("allocation " << failed << " failed: " << error);
                                                 CHECK_THAT(error, Contains("cannot allocate") && Contains("bytes") &&
                                                                       Contains("1026 stocks over 20 days"));
                                               });
  REQUIRE(k < 100000);
  CHECK(p.IC == base.IC);
  CHECK(k > 0);  // at least one allocation was made to fail
}
