// The O(N log N) rank loss (rank_loss_forward_sorted / rank_loss_backward_sorted) against the O(N²)
// kernels (rank_loss_forward / rank_loss_backward) and against PyTorch's fixtures.
//
// What must be identical bit for bit: rr, reg, and dpred when alpha = 0 (the reg part is computed by
// the same expressions); everything with no discordant pair (rank 0, the rank gradient 0).
// What may differ by rounding only (docs/math/rank_loss.md, "An exact O(N log N) form"), with u the
// unit roundoff of T (2^-24 for float, 2^-53 for double):
//  - rank. The O(N²) form rounds each P_ij three times in T (two differences, one product), so in
//    float its sum of positive terms is within 3u of the exact sum of the float inputs; the sorted
//    form is within ~1e-15 of it (double sums). Each then rounds its rank to T (u each):
//      float  |Δrank| <= 5u·rank     (5·2^-24 = 2.98e-7)
//      double |Δrank| <= 1e-12·rank  (both within ~1e-15 on these inputs; the bound holds while the
//                                     sorted form's condition number stays below ~1e3, see the doc)
//  - loss = reg + alpha·rank in T: |Δloss| <= rel_rank·|alpha·rank| + 4u·(|loss| + |alpha·rank|).
//  - dpred, element by element. With c_i the number of discordant partners of stock i and R the
//    range of gt over the masked-in stocks, the rank part of dpred_i is a sum of c_i terms each at
//    most R in size: B_i = |dloss·alpha|·(2/N²)·c_i·R/|base_i|. The O(N²) form rounds each
//    gt_j - gt_i to T (u·B_i at most) and sums up to N terms in double ((N+1)·2^-53·B_i); the sorted
//    form's centred Fenwick sums are within (N + log2 K + 3)·2^-53·B_i. The last roundings of each
//    side (the reg part, dloss, the division by base, the cast to T) are at most a few u·|dpred_i|:
//      |Δdpred_i| <= rel_grad·B_i + 8u·|dpred_i|,
//      rel_grad = u + (2N + 64)·2^-53 (float),  (2N + 64)·2^-53 (double; 1.1e-12 at N = 5000).
//    These are worst-case bounds; the errors measured are far inside them (printed as err/tol).
// Every comparison prints its measured errors (run with -s, or see the ctest log).
#include "testing.hpp"

#include <stockmixer/kernels.hpp>
#include <stockmixer/parallel.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <iomanip>
#include <iostream>
#include <limits>
#include <new>
#include <random>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include "alloc_counter.hpp"  // counts every heap allocation of this executable

using namespace stockmixer;
using testing::Fixture;

namespace {

template <class T>
constexpr double unit_roundoff() {
  return std::is_same_v<T, float> ? 0x1p-24 : 0x1p-53;
}
template <class T>
constexpr double rel_rank() {
  return std::is_same_v<T, float> ? 5 * 0x1p-24 : 1e-12;
}
template <class T>
double rel_grad(Index n) {
  return (std::is_same_v<T, float> ? 0x1p-24 : 0.0) + (2.0 * static_cast<double>(n) + 64) * 0x1p-53;
}
template <class T>
const char* type_name() {
  return std::is_same_v<T, float> ? "float " : "double";
}

template <class T>
struct Inputs {
  std::vector<T> pred, base, gt, mask;
  Index n() const { return static_cast<Index>(pred.size()); }
};

enum class Ties { none, rr, gt, both };

// Returns of ±5% on prices in [0.5, 2], ~masked_share of the mask zeros. With ties in rr: base is a
// power of two and pred = base·(1 + k/64), so rr = k/64 exactly (17 values). With ties in gt:
// gt = k/128 (13 values), zeros of either sign.
template <class T>
Inputs<T> make_inputs(Index n, std::uint64_t seed, Ties ties, double masked_share = 0.1) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u01(0.0, 1.0), price(0.5, 2.0), ret(-0.05, 0.05);
  std::uniform_int_distribution<int> krr(-8, 8), kgt(-6, 6), pow2(-1, 2);
  const bool rr_ties = ties == Ties::rr || ties == Ties::both, gt_ties = ties == Ties::gt || ties == Ties::both;
  Inputs<T> in;
  for (Index i = 0; i < n; ++i) {
    if (rr_ties) {
      const T b = static_cast<T>(std::ldexp(1.0, pow2(rng)));
      in.base.push_back(b);
      in.pred.push_back(b * (T(1) + static_cast<T>(krr(rng)) / T(64)));
    } else {
      const T b = static_cast<T>(price(rng));
      in.base.push_back(b);
      in.pred.push_back(static_cast<T>(b * (1.0 + ret(rng))));
    }
    if (gt_ties) {
      const int k = kgt(rng);
      in.gt.push_back(k == 0 && u01(rng) < 0.5 ? -T(0) : static_cast<T>(k) / T(128));
    } else {
      in.gt.push_back(static_cast<T>(ret(rng)));
    }
    in.mask.push_back(u01(rng) < masked_share ? T(0) : T(1));
  }
  return in;
}

template <class T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}
template <class T>
bool same_bits(T a, T b) {
  return std::memcmp(&a, &b, sizeof(T)) == 0;
}

// The measured errors of one comparison.
struct Measured {
  double rank = 0;        // |Δrank| / rank
  double dpred_inf = 0;   // max |Δdpred| / max |dpred|
  double dpred_elem = 0;  // max_i |Δdpred_i| / tolerance_i (the share of the element-wise bound used)
};

// Sorted vs O(N²) on one input: forward and backward, every check of the header comment.
template <class T>
// kappa_bound: the rank tolerance is rel_rank + (2N + 64)·2^-53·κ (the worst-case bound of the doc's
// error analysis) instead of rel_rank alone; for inputs built to be ill-conditioned.
Measured compare_to_quadratic(const Inputs<T>& in, T alpha, T dloss, RankLossWorkspace& ws, const std::string& label,
                              bool kappa_bound = false) {
  const Index n = in.n();
  const auto un = static_cast<std::size_t>(n);
  std::vector<T> rr0(un), rr1(un), dp0(un, T(0)), dp1(un, T(0));
  const auto l0 = rank_loss_forward(rr0.data(), in.pred.data(), in.base.data(), in.gt.data(), in.mask.data(), n, alpha);
  const auto l1 = rank_loss_forward_sorted(rr1.data(), in.pred.data(), in.base.data(), in.gt.data(), in.mask.data(), n,
                                           alpha, ws);
  rank_loss_backward(dp0.data(), dloss, rr0.data(), in.base.data(), in.gt.data(), in.mask.data(), n, alpha);
  rank_loss_backward_sorted(dp1.data(), dloss, rr1.data(), in.base.data(), in.gt.data(), in.mask.data(), n, alpha, ws);

  INFO(label << " (" << type_name<T>() << ", N = " << n << ")");
  REQUIRE(same_bits(rr1, rr0));
  REQUIRE(same_bits(l1.reg, l0.reg));

  // Per-stock discordant-partner counts c_i (PyTorch's own test, P_ij > 0 in T), gt's range R, and
  // the condition number κ = range(rr)·range(gt)·D / Σ_ij relu(P_ij), D = Σ_i c_i (exact products).
  std::vector<double> count(un, 0.0);
  double gt_lo = INFINITY, gt_hi = -INFINITY, rr_lo = INFINITY, rr_hi = -INFINITY;
  long double pair_sum = 0;
  for (Index i = 0; i < n; ++i) {
    if (in.mask[static_cast<std::size_t>(i)] == T(0) || std::isnan(rr0[static_cast<std::size_t>(i)]) ||
        std::isnan(in.gt[static_cast<std::size_t>(i)]))
      continue;
    gt_lo = std::min(gt_lo, static_cast<double>(in.gt[static_cast<std::size_t>(i)]));
    gt_hi = std::max(gt_hi, static_cast<double>(in.gt[static_cast<std::size_t>(i)]));
    rr_lo = std::min(rr_lo, static_cast<double>(rr0[static_cast<std::size_t>(i)]));
    rr_hi = std::max(rr_hi, static_cast<double>(rr0[static_cast<std::size_t>(i)]));
    for (Index j = 0; j < n; ++j)
      if (detail::rank_pair(rr0.data(), in.gt.data(), in.mask.data(), i, j) > T(0)) {
        count[static_cast<std::size_t>(i)] += 1;
        const auto ui = static_cast<std::size_t>(i), uj = static_cast<std::size_t>(j);
        pair_sum += (static_cast<long double>(rr0[ui]) - rr0[uj]) * (static_cast<long double>(in.gt[uj]) - in.gt[ui]);
      }
  }
  const double range = gt_hi >= gt_lo ? gt_hi - gt_lo : 0.0;
  double pairs = 0;
  for (const double c : count) pairs += c;
  const double kappa = pair_sum > 0 ? (rr_hi - rr_lo) * range * pairs / static_cast<double>(pair_sum) : 0.0;
  const double rank_tol = rel_rank<T>() + (kappa_bound ? (2.0 * static_cast<double>(n) + 64) * 0x1p-53 * kappa : 0.0);
  const double u = unit_roundoff<T>();

  Measured m;
  const double r0 = l0.rank, r1 = l1.rank;
  if (r0 == 0.0) {
    REQUIRE(r1 == 0.0);
  } else {
    m.rank = std::abs(r1 - r0) / std::abs(r0);
    INFO("rank " << r1 << " vs " << r0 << ", relative error " << m.rank << ", tolerance " << rank_tol << ", kappa "
                  << kappa);
    REQUIRE(m.rank <= rank_tol);
  }
  const double ar = std::abs(static_cast<double>(alpha) * r0);
  const double loss_tol = rank_tol * ar + 4 * u * (std::abs(static_cast<double>(l0.loss)) + ar);
  if (std::isnan(static_cast<double>(l0.loss))) {
    REQUIRE(std::isnan(static_cast<double>(l1.loss)));
  } else {
    INFO("loss " << l1.loss << " vs " << l0.loss << ", tolerance " << loss_tol);
    REQUIRE(std::abs(static_cast<double>(l1.loss) - static_cast<double>(l0.loss)) <= loss_tol);
  }

  double diff = 0, scale = 0;
  for (std::size_t i = 0; i < un; ++i) {
    const double a = dp1[i], b = dp0[i];
    if (std::isnan(b)) {
      REQUIRE(std::isnan(a));
      continue;
    }
    const double b_i = std::abs(static_cast<double>(dloss) * static_cast<double>(alpha)) * 2.0 /
                       (static_cast<double>(n) * static_cast<double>(n)) * count[i] * range /
                       std::abs(static_cast<double>(in.base[i]));
    const double tol = rel_grad<T>(n) * b_i + 8 * u * std::abs(b);
    const double err = std::abs(a - b);
    INFO("dpred[" << i << "] = " << a << " vs " << b << ", error " << err << ", tolerance " << tol << " (c_i "
                  << count[i] << ")");
    REQUIRE(err <= tol);
    if (tol > 0) m.dpred_elem = std::max(m.dpred_elem, err / tol);
    diff = std::max(diff, err);
    scale = std::max(scale, std::abs(b));
  }
  m.dpred_inf = scale > 0 ? diff / scale : diff;
  std::cout << "rank-sorted " << std::left << std::setw(28) << label << type_name<T>() << " N " << std::setw(6) << n
            << std::scientific << std::setprecision(2) << " rank rel " << m.rank << "  dpred inf-rel " << m.dpred_inf
            << "  dpred elem err/tol " << m.dpred_elem << "  kappa " << kappa << "\n"
            << std::defaultfloat;
  return m;
}

const Index kSizes[] = {1, 2, 3, 7, 100, 1026, 5000};

}  // namespace

TEMPLATE_TEST_CASE("sorted rank loss equals the O(N^2) kernels on random data", "[rank_loss][sorted]", float, double) {
  using T = TestType;
  RankLossWorkspace ws;
  for (const Index n : kSizes) {
    for (const std::uint64_t seed : {1u, 2u, 3u}) {
      const auto in = make_inputs<T>(n, 100 * static_cast<std::uint64_t>(n) + seed, Ties::none);
      compare_to_quadratic(in, T(0.1), T(1), ws, "random");
    }
    const auto in = make_inputs<T>(n, 7 * static_cast<std::uint64_t>(n) + 5, Ties::none, 0.3);
    compare_to_quadratic(in, T(3), T(0.7), ws, "random alpha3 dloss0.7");
  }
}

TEMPLATE_TEST_CASE("sorted rank loss equals the O(N^2) kernels with ties", "[rank_loss][sorted][ties]", float,
                   double) {
  using T = TestType;
  RankLossWorkspace ws;
  for (const Index n : kSizes) {
    for (const auto& [ties, name] : {std::pair{Ties::rr, "ties in rr"}, std::pair{Ties::gt, "ties in gt"},
                                     std::pair{Ties::both, "ties in both"}}) {
      compare_to_quadratic(make_inputs<T>(n, 31 * static_cast<std::uint64_t>(n) + 1, ties), T(0.1), T(1), ws, name);
      compare_to_quadratic(make_inputs<T>(n, 37 * static_cast<std::uint64_t>(n) + 2, ties, 0.5), T(0.1), T(1), ws,
                           std::string(name) + ", half masked");
    }
  }
  SECTION("duplicates at the boundaries: many stocks at the lowest and highest rr and gt") {
    for (const Index n : {Index(7), Index(100), Index(1026), Index(5000)}) {
      auto in = make_inputs<T>(n, 41 * static_cast<std::uint64_t>(n), Ties::both);
      // The first quarter at (min rr, max gt), the next at (max rr, min gt), the next at (min rr, min gt).
      for (Index i = 0; i < 3 * n / 4; ++i) {
        const auto u = static_cast<std::size_t>(i);
        const bool low_rr = i < n / 4 || i >= n / 2;
        in.base[u] = T(1);
        in.pred[u] = low_rr ? T(1) - T(8) / T(64) : T(1) + T(8) / T(64);
        in.gt[u] = i < n / 4 ? T(6) / T(128) : -T(6) / T(128);
      }
      compare_to_quadratic(in, T(0.1), T(1), ws, "boundary duplicates");
    }
  }
  SECTION("every rr equal, or every gt equal: no discordant pair") {
    for (const Index n : {Index(2), Index(100), Index(1026)}) {
      auto a = make_inputs<T>(n, 43, Ties::none);
      std::fill(a.pred.begin(), a.pred.end(), T(1.25));
      std::fill(a.base.begin(), a.base.end(), T(1));
      const auto m = compare_to_quadratic(a, T(0.1), T(1), ws, "all rr equal");
      REQUIRE(m.rank == 0);
      auto b = make_inputs<T>(n, 44, Ties::none);
      for (std::size_t i = 0; i < b.gt.size(); ++i) b.gt[i] = i % 2 ? T(0) : -T(0);
      compare_to_quadratic(b, T(0.1), T(1), ws, "all gt equal (+-0)");
    }
  }
}

// Near-perfect predictions: rr = gt + noise, so only near-ties in gt are discordant and each
// discordant pair's product is tiny against range(rr)·range(gt): κ grows like 1/noise². The sorted
// form's relative error grows with κ (an expanded sum: docs/math/rank_loss.md); its absolute error
// stays at ~u·range(rr)·range(gt)·D/N², negligible next to reg.
TEMPLATE_TEST_CASE("sorted rank loss on ill-conditioned inputs (near-perfect predictions)", "[rank_loss][sorted]", float,
                   double) {
  using T = TestType;
  RankLossWorkspace ws;
  for (const Index n : {Index(1026), Index(5000)}) {
    for (const double noise : {1e-2, 1e-3, 1e-4, 1e-5}) {
      auto in = make_inputs<T>(n, 83 * static_cast<std::uint64_t>(n), Ties::none);
      std::mt19937_64 rng(89);
      std::uniform_real_distribution<double> z(-1.0, 1.0);
      for (std::size_t i = 0; i < in.gt.size(); ++i) {
        in.base[i] = T(1);
        in.pred[i] = static_cast<T>(1.0 + static_cast<double>(in.gt[i]) + noise * z(rng));
      }
      std::ostringstream label;
      label << "near-perfect, noise " << noise;
      compare_to_quadratic(in, T(0.1), T(1), ws, label.str(), true);
    }
  }
}

TEMPLATE_TEST_CASE("sorted rank loss with masked stocks", "[rank_loss][sorted][mask]", float, double) {
  using T = TestType;
  RankLossWorkspace ws;
  for (const Index n : kSizes) {
    auto in = make_inputs<T>(n, 53 * static_cast<std::uint64_t>(n), Ties::none);
    std::fill(in.mask.begin(), in.mask.end(), T(0));
    const auto m = compare_to_quadratic(in, T(0.1), T(1), ws, "all masked");
    REQUIRE(m.dpred_inf == 0);
    in.mask[static_cast<std::size_t>(n / 2)] = T(1);
    compare_to_quadratic(in, T(0.1), T(1), ws, "all but one masked");
    if (n >= 2) {
      in.mask[0] = T(1);
      compare_to_quadratic(in, T(0.1), T(1), ws, "all but two masked");
    }
    auto half = make_inputs<T>(n, 59 * static_cast<std::uint64_t>(n), Ties::both, 0.5);
    compare_to_quadratic(half, T(0.1), T(1), ws, "half masked, ties");
  }
}

TEMPLATE_TEST_CASE("sorted rank loss: the reg part is bit for bit the O(N^2) kernels'", "[rank_loss][sorted]", float,
                   double) {
  using T = TestType;
  RankLossWorkspace ws;
  for (const Index n : {Index(7), Index(1026)}) {
    const auto in = make_inputs<T>(n, 61, Ties::none);
    const auto un = static_cast<std::size_t>(n);
    std::vector<T> rr0(un), rr1(un), dp0(un, T(0.25)), dp1(un, T(0.25));  // accumulates into dpred
    const auto l0 = rank_loss_forward(rr0.data(), in.pred.data(), in.base.data(), in.gt.data(), in.mask.data(), n, T(0));
    const auto l1 = rank_loss_forward_sorted(rr1.data(), in.pred.data(), in.base.data(), in.gt.data(), in.mask.data(),
                                             n, T(0), ws);
    rank_loss_backward(dp0.data(), T(1), rr0.data(), in.base.data(), in.gt.data(), in.mask.data(), n, T(0));
    rank_loss_backward_sorted(dp1.data(), T(1), rr1.data(), in.base.data(), in.gt.data(), in.mask.data(), n, T(0), ws);
    REQUIRE(same_bits(l1.loss, l0.loss));
    REQUIRE(same_bits(l1.reg, l0.reg));
    REQUIRE(same_bits(dp1, dp0));
  }
}

TEMPLATE_TEST_CASE("sorted rank loss leaves out a masked-in stock with a NaN, as relu does", "[rank_loss][sorted]",
                   float, double) {
  using T = TestType;
  RankLossWorkspace ws;
  auto in = make_inputs<T>(100, 67, Ties::both);
  in.mask[3] = T(1);
  in.pred[3] = std::numeric_limits<T>::quiet_NaN();  // rr_3 NaN: reg and loss NaN, rank finite
  in.mask[5] = T(1);
  in.gt[5] = std::numeric_limits<T>::quiet_NaN();
  const auto m = compare_to_quadratic(in, T(0.1), T(1), ws, "NaN rr and gt");
  REQUIRE(std::isfinite(m.rank));
}

TEMPLATE_TEST_CASE("sorted rank loss rejects masks outside {0, 1}", "[rank_loss][sorted][mask]", float, double) {
  using T = TestType;
  RankLossWorkspace ws;
  auto in = make_inputs<T>(10, 71, Ties::none);
  std::vector<T> rr(10), dpred(10, T(0));
  for (const T bad : {T(0.5), T(2), T(-1), std::numeric_limits<T>::quiet_NaN()}) {
    in.mask[4] = bad;
    REQUIRE_THROWS_AS(rank_loss_forward_sorted(rr.data(), in.pred.data(), in.base.data(), in.gt.data(), in.mask.data(),
                                               Index(10), T(0.1), ws),
                      Error);
    REQUIRE_THROWS_AS(rank_loss_backward_sorted(dpred.data(), T(1), rr.data(), in.base.data(), in.gt.data(),
                                                in.mask.data(), Index(10), T(0.1), ws),
                      Error);
    REQUIRE(std::all_of(dpred.begin(), dpred.end(), [](T v) { return v == T(0); }));
  }
}

TEST_CASE("sorted rank loss: 1 and 2 threads agree bit for bit", "[rank_loss][sorted][threads]") {
  RankLossWorkspace ws;
  for (const Index n : {Index(300), Index(1026), Index(5000), Index(20000)}) {  // two tasks from 512 masked-in
    for (const Ties ties : {Ties::none, Ties::both}) {
      const auto in = make_inputs<float>(n, 73, ties);
      const auto un = static_cast<std::size_t>(n);
      auto run = [&](int threads) {
        set_num_threads(threads);
        std::vector<float> rr(un), dpred(un, 0.0f);
        const auto l = rank_loss_forward_sorted(rr.data(), in.pred.data(), in.base.data(), in.gt.data(),
                                                in.mask.data(), n, 0.1f, ws);
        rank_loss_backward_sorted(dpred.data(), 1.0f, rr.data(), in.base.data(), in.gt.data(), in.mask.data(), n, 0.1f,
                                  ws);
        dpred.push_back(l.loss);
        dpred.push_back(l.reg);
        dpred.push_back(l.rank);
        return dpred;
      };
      const auto one = run(1), two = run(2);
      set_num_threads(1);
      INFO("N = " << n);
      REQUIRE(same_bits(one, two));
    }
  }
}

TEST_CASE("sorted rank loss allocates nothing once its workspace is sized", "[rank_loss][sorted][alloc]") {
  const Index n = 5000;
  const auto in = make_inputs<float>(n, 79, Ties::both);
  const auto un = static_cast<std::size_t>(n);
  std::vector<float> rr(un), dpred(un, 0.0f);
  RankLossWorkspace ws;
  REQUIRE(ws.capacity() == 0);
  rank_loss_forward_sorted(rr.data(), in.pred.data(), in.base.data(), in.gt.data(), in.mask.data(), n, 0.1f, ws);
  REQUIRE(ws.capacity() == n);  // the first call sized it
  const std::vector<const void*> pointers{ws.by_gt.data(),      ws.by_rr.data(),      ws.gt_rank.data(),
                                          ws.items.data(),      ws.tree_below.data(), ws.tree_above.data(),
                                          ws.below.data(),      ws.above.data(),      ws.hinge.data()};
  const auto same_pointers = [&] {
    return pointers == std::vector<const void*>{ws.by_gt.data(),      ws.by_rr.data(),      ws.gt_rank.data(),
                                                ws.items.data(),      ws.tree_below.data(), ws.tree_above.data(),
                                                ws.below.data(),      ws.above.data(),      ws.hinge.data()};
  };
  long allocations = 0;
  for (const Index m : {n, Index(1026), Index(7), n}) {  // any size up to the capacity
    const long before = testing::allocations();
    const auto l = rank_loss_forward_sorted(rr.data(), in.pred.data(), in.base.data(), in.gt.data(), in.mask.data(), m,
                                            0.1f, ws);
    rank_loss_backward_sorted(dpred.data(), 1.0f, rr.data(), in.base.data(), in.gt.data(), in.mask.data(), m, 0.1f, ws);
    allocations += testing::allocations() - before;
    REQUIRE(std::isfinite(l.loss));
    REQUIRE(same_pointers());
  }
  REQUIRE(allocations == 0);
  REQUIRE(ws.capacity() == n);

  SECTION("reserve sizes it up front; a larger call grows it") {
    RankLossWorkspace w2;
    w2.reserve(1026);
    const long before = testing::allocations();
    rank_loss_forward_sorted(rr.data(), in.pred.data(), in.base.data(), in.gt.data(), in.mask.data(), Index(1026), 0.1f,
                             w2);
    REQUIRE(testing::allocations() - before == 0);
    rank_loss_forward_sorted(rr.data(), in.pred.data(), in.base.data(), in.gt.data(), in.mask.data(), Index(2000), 0.1f,
                             w2);
    REQUIRE(w2.capacity() == 2000);
  }
}

// PyTorch's get_loss, as tests/test_kernels_torch.cpp checks the O(N²) kernels, with the same
// tolerances (float32: PyTorch sums N² float terms, 1e-5; float64: 1e-12): the sorted form is within
// 3e-7 (float) of the O(N²) one, far inside them.
TEMPLATE_TEST_CASE("sorted rank loss equals the original get_loss", "[rank_loss][sorted][torch]", float, double) {
  using T = TestType;
  const double tol = std::is_same_v<T, float> ? 1e-5 : 1e-12;
  RankLossWorkspace ws;
  for (const char* name : {"rank_loss_small", "rank_loss_nasdaq", "rank_loss_ties"}) {
    DYNAMIC_SECTION(name) {
      const Fixture fx(name);
      const Index n = fx.size("n");
      const T alpha = static_cast<T>(fx.meta().at("alpha").get<double>());
      Inputs<T> in{fx.input<T>("pred"), fx.input<T>("base"), fx.input<T>("gt"), fx.input<T>("mask")};
      const auto un = static_cast<std::size_t>(n);
      std::vector<T> rr(un), dpred(un, T(0));
      const auto l = rank_loss_forward_sorted(rr.data(), in.pred.data(), in.base.data(), in.gt.data(), in.mask.data(),
                                              n, alpha, ws);
      rank_loss_backward_sorted(dpred.data(), T(1), rr.data(), in.base.data(), in.gt.data(), in.mask.data(), n, alpha,
                                ws);
      const auto check = [&](const char* tensor, const std::vector<T>& ours) {
        const double err = testing::max_rel_error(ours, fx.expected<T>(tensor));
        std::cout << "torch-fixture sorted " << std::left << std::setw(18) << name << std::setw(6) << tensor
                  << type_name<T>() << "  error " << std::scientific << std::setprecision(2) << err << "  (tolerance "
                  << tol << ")\n"
                  << std::defaultfloat;
        INFO(name << " / " << tensor << ": max rel error " << err << ", tolerance " << tol);
        REQUIRE(err <= tol);
      };
      check("rr", rr);
      check("loss", {l.loss});
      check("reg", {l.reg});
      check("rank", {l.rank});
      check("dpred", dpred);
      compare_to_quadratic(in, alpha, T(1), ws, std::string("fixture ") + name);  // and the O(N²) kernels on it
    }
  }
}

TEST_CASE("the radix sort gives the (value, index) order of a comparison sort", "[rank_loss][sorted]") {
  // Values chosen to trip a radix sort on IEEE bits: -0 and +0 (equal: their order is the index
  // order), negatives, infinities, denormals, many duplicates, floats widened to double (29 low
  // bits zero, so passes are skipped) and full doubles. Keys arrive in index order, as in the kernels.
  using Key = RankLossWorkspace::Key;
  const double pool[] = {-0.0, 0.0, -1.5, 1.5, -std::numeric_limits<double>::infinity(),
                         std::numeric_limits<double>::infinity(), std::numeric_limits<double>::denorm_min(),
                         -std::numeric_limits<double>::denorm_min(), 1e300, -1e-300};
  for (const bool widened_floats : {true, false}) {
    for (const Index m : {Index(0), Index(1), Index(2), Index(5), Index(255), Index(5000)}) {
      DYNAMIC_SECTION((widened_floats ? "float values" : "double values") << ", m = " << m) {
        const auto r = testing::random_vector<double>(static_cast<std::size_t>(m), 90 + static_cast<std::uint64_t>(m), -3, 3);
        std::vector<Key> keys(static_cast<std::size_t>(m)), tmp(keys.size());
        for (Index i = 0; i < m; ++i) {
          const auto u = static_cast<std::size_t>(i);
          double v = i % 3 == 0 ? pool[u % (sizeof pool / sizeof pool[0])] : r[u];
          if (i % 7 == 0) v = std::round(v);  // duplicates
          if (widened_floats) v = static_cast<double>(static_cast<float>(v));
          keys[u] = {v, i};
        }
        std::vector<Key> want = keys;
        std::sort(want.begin(), want.end(), [](const Key& a, const Key& b) {
          return a.value < b.value || (a.value == b.value && a.index < b.index);
        });
        detail::radix_sort_keys(keys.data(), tmp.data(), m);
        Index differ = 0, changed = 0;
        for (std::size_t k = 0; k < keys.size(); ++k) {
          differ += keys[k].index != want[k].index;
          changed += std::memcmp(&keys[k].value, &want[k].value, sizeof(double)) != 0;  // -0 stays -0
        }
        INFO(differ << " of " << m << " positions differ from std::sort's order, " << changed << " values changed");
        REQUIRE(differ == 0);
        REQUIRE(changed == 0);
      }
    }
  }
}

TEMPLATE_TEST_CASE("the backward from the forward's hinge equals the sorted backward bit for bit", "[rank_loss][sorted]",
                   float, double) {
  // The tape's rank-loss op keeps S_i from the forward and runs rank_loss_backward_from_hinge: the
  // same bits as rank_loss_backward_sorted, which sorts again. Random data, ties, half masked.
  using T = TestType;
  RankLossWorkspace ws;
  for (const Index n : {Index(1), Index(7), Index(1026), Index(5000)}) {
    for (const Ties ties : {Ties::none, Ties::both}) {
      const auto in = make_inputs<T>(n, 53 * static_cast<std::uint64_t>(n) + 9, ties, 0.5);
      std::vector<T> rr(static_cast<std::size_t>(n)), a(rr.size(), T(0)), b(rr.size(), T(0));
      std::vector<double> hinge(rr.size(), -1.0);
      rank_loss_forward_sorted(rr.data(), in.pred.data(), in.base.data(), in.gt.data(), in.mask.data(), n, T(0.1), ws,
                               hinge.data());
      rank_loss_backward_sorted(a.data(), T(0.7), rr.data(), in.base.data(), in.gt.data(), in.mask.data(), n, T(0.1), ws);
      rank_loss_backward_from_hinge(b.data(), T(0.7), rr.data(), in.base.data(), in.gt.data(), in.mask.data(), n, T(0.1),
                                    hinge.data());
      INFO("N " << n);
      REQUIRE(std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0);
    }
  }
}
