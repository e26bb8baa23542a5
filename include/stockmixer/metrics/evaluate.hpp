// stockmixer/metrics/evaluate.hpp — the original StockMixer `evaluate` (src/evaluator.py), field for
// field, plus NaN-robust rank-IC and valid-only IC extras.
//
// Inputs: prediction P, ground truth G and mask M, each [N, days] row-major (stock-major, as the
// original's arrays), float or double; everything is computed in double (the original's arrays are
// float64). A stock is "valid" on day i when M[n, i] >= 0.5; M is also a weight where the original
// multiplies by it (mse, IC).
//
// The original's fields, exactly as it computes them (D = days):
//   mse       = Σ_{n,i} ((P − G)·M)² / Σ_{n,i} M                  (np.linalg.norm(...)**2 / np.sum(mask))
//   ic_i      = Pearson over ALL N stocks of P[:, i]·M[:, i] and G[:, i]·M[:, i] (masked stocks enter as
//               zeros; pandas Series.corr = np.corrcoef, clipped to [−1, 1]); NaN when N < 2 or either
//               vector is constant (a day with every stock masked: both are all zeros)
//   IC        = mean_i ic_i                                       (np.mean: one NaN day makes it NaN)
//   RIC       = IC / std_i ic_i, population std                   (really an ICIR; NaN propagates too)
//   per day, top-k (k = 1, 5, 10): scan np.argsort(P[:, i]) from the largest, skipping invalid stocks,
//               and keep the first k valid ones (fewer when fewer are valid); the same for G
//   mrr_top   = Σ_i 1 / pos_i / (D − all_miss_days), pos_i = 1-based position of the predicted top-1
//               among the valid stocks in np.argsort(G[:, i]) order from the largest; a day with no
//               valid stock is an all-miss day and is left out (the original only accumulates the sum
//               and the all-miss count; this quotient is our definition; NaN when every day misses)
//   bt_long   = 1 + Σ_i G[top1_i, i]                               (0 on a day with no valid stock)
//   bt_long5  = 1 + Σ_i (Σ_{n ∈ top5_i} G[n, i]) / 5                (always / 5, even with fewer stocks)
//   bt_long10 = 1 + Σ_i (Σ_{n ∈ top10_i} G[n, i]) / 10              (always / 10)
//   prec_10   = mean_i #{n ∈ top10_i : G[n, i] >= 0} / 10          (always / 10)
//   sharpe5   = mean_i r5_i / std_i r5_i · 15.87, r5_i = (Σ_{n ∈ top5_i} G[n, i]) / 5, population std
//               (IEEE division: a zero std gives ±inf or NaN, as numpy does)
// Extras (NaN-robust), per day over the valid stocks only, with the raw P and G values:
//   a day with fewer than 2 valid stocks, or a constant P or G among them, is skipped (skipped_days);
//   rank_ic   = mean over kept days of Spearman (Pearson of average ranks; ties share their mean rank)
//   rank_icir = rank_ic / population std of the daily values
//   ic_valid  = mean over kept days of Pearson;  ic_valid_ir = ic_valid / population std
//   an IR whose std is 0, and every extra when no day is kept, is NaN.
//   days = D.
//
// Decisions (docs/metrics.md):
//   - np.argsort's order among equal values decides which of tied stocks enters a top-k. Its default
//     kind in numpy 1.24 (Debian 12) is an introsort (median-of-3 quicksort, insertion sort up to 16 values,
//     heapsort when too deep) that is not stable; numpy_argsort reproduces it step for step, so ties
//     are broken exactly as the original breaks them (checked against np.argsort on tie-heavy data).
//     numpy >= 1.25 on AVX-512 machines sorts differently; ties may then differ from that numpy.
//   - A day with every stock masked makes the original raise IndexError (`list(pre_top1)[0]`); we
//     take that day's top-1 return as 0 (exactly the original with that one line guarded): it still
//     adds 0 to the backtests, 0 to r5 and 0 to prec_10, and counts as an all-miss day for mrr_top.
//   - Constancy is tested exactly (all values equal), so a constant vector's correlation is NaN. numpy
//     agrees whenever its float mean of the constant is exact (always for all zeros); otherwise it
//     returns a rounding artefact (usually 0.0) where we return NaN.
//   - The original has no input checks; we throw stockmixer::Error on rank ≠ 2, differing shapes, an
//     empty tensor, and a NaN or ±Inf in prediction, ground_truth or mask (naming tensor, stock, day).
//   - to_json writes NaN and ±Inf as null (JSON has no NaN).
// Threads: the days run on the threads (each day's quantities depend on that day alone) and are
// added in day order afterwards, so every field is the same on any thread count.
// Memory: every buffer evaluate needs (one scratch set per thread, the per-day results) is allocated
// before the days run, and nothing allocates inside the parallel region (numpy_argsort keeps its
// partition stack on the stack, the ranks go to the thread's scratch); a failed allocation is an Error
// naming the bytes asked for, and any exception a day raises is caught in its thread and rethrown
// after the region (an exception leaving an OpenMP region would end the program).
// Pearson scales each vector by a power of two that brings its largest magnitude into [0.5, 1)
// before summing: r does not change under that scaling, and every operation of the formula commutes
// with it exactly, so the result is bit for bit the unscaled formula's wherever that one neither
// overflows nor underflows, and stays right for predictions of any magnitude (1e160 squared overflows).
//
// Tests: tests/test_metrics.cpp (fixtures: tests/make_metrics_fixtures.py, which runs the original),
// tests/test_threads.cpp (1 and 2 threads).
#pragma once

#include "stockmixer/common.hpp"
#include "stockmixer/io/input.hpp"
#include "stockmixer/parallel.hpp"
#include "stockmixer/sort.hpp"
#include "stockmixer/tensor.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <exception>
#include <limits>
#include <new>
#include <numeric>
#include <string>
#include <utility>
#include <vector>

namespace stockmixer::metrics {

// ---- interface -------------------------------------------------------------------------------------

struct Performance {
  // The original's fields (NaN propagates as in the original).
  double mse = 0, IC = 0, RIC = 0, prec_10 = 0, sharpe5 = 0, mrr_top = 0;
  double bt_long = 1, bt_long5 = 1, bt_long10 = 1;
  // Named extras: daily Spearman and Pearson over valid stocks, skipping degenerate days.
  double rank_ic = 0, rank_icir = 0, ic_valid = 0, ic_valid_ir = 0;
  Index days = 0, skipped_days = 0;

  // Every field by its name; NaN and ±Inf are stored as numbers and dumped as null.
  nlohmann::json to_json() const;
};

// prediction, ground_truth, mask: [N, days]. Throws stockmixer::Error on bad input (see above).
template <class T>
Performance evaluate(TensorMap<const T> prediction, TensorMap<const T> ground_truth, TensorMap<const T> mask);
template <class T>
Performance evaluate(const Tensor<T>& prediction, const Tensor<T>& ground_truth, const Tensor<T>& mask);

// The building blocks, public so that tests can check each alone.

// order = np.argsort(values) of numpy 1.24, default kind ("quicksort", an introsort), ties included.
void numpy_argsort(Index* order, const double* values, Index n);
// order = np.argsort(values, kind="heapsort"); also the introsort's fallback on a deep partition.
void numpy_argsort_heapsort(Index* order, const double* values, Index n);
// Pearson correlation r = Σ dx·dy / √Σ dx² / √Σ dy², clipped to [−1, 1]; NaN when n < 2 or x or y is
// constant. Each of x and y is first scaled by a power of two (exact; see the header comment), so
// finite inputs of any magnitude give a finite r, and x scaled by any positive factor gives the same r
// up to the rounding of the scaled values.
double pearson(const double* x, const double* y, Index n);
// 1-based ranks; equal values share the mean of the ranks they occupy (pandas' method="average").
// x must hold no NaN (evaluate rejects one before ranking).
void average_ranks(double* ranks, const double* x, Index n);
// Spearman correlation: pearson of the average ranks.
double spearman(const double* x, const double* y, Index n);

// ---- implementation --------------------------------------------------------------------------------

namespace detail {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// numpy's DOUBLE_LT: NaN sorts last (our inputs hold none, but the order stays numpy's).
inline bool numpy_less(double a, double b) { return a < b || (b != b && a == a); }

// The heapsort of numpy's npysort (aheapsort_), on order[0, n) with 1-based heap indices.
inline void argsort_heap(Index* order, const double* v, Index n) {
  auto a = [order](Index k) -> Index& { return order[k - 1]; };
  auto sift = [&](Index tmp, Index i, Index size) {
    for (Index j = 2 * i; j <= size;) {
      if (j < size && numpy_less(v[a(j)], v[a(j + 1)])) j += 1;
      if (!numpy_less(v[tmp], v[a(j)])) break;
      a(i) = a(j);
      i = j;
      j += j;
    }
    a(i) = tmp;
  };
  for (Index l = n >> 1; l > 0; --l) sift(a(l), l, n);
  for (; n > 1;) {
    const Index tmp = a(n);
    a(n) = a(1);
    n -= 1;
    sift(tmp, 1, n);
  }
}

inline double mean(const std::vector<double>& x) {
  if (x.empty()) return kNaN;
  double s = 0;
  for (double v : x) s += v;
  return s / static_cast<double>(x.size());
}

// np.std: √(mean((x − mean(x))²)), the population standard deviation.
inline double population_std(const std::vector<double>& x) {
  const double m = mean(x);
  double s = 0;
  for (double v : x) s += (v - m) * (v - m);
  return x.empty() ? kNaN : std::sqrt(s / static_cast<double>(x.size()));
}

// The k stocks i with valid(i) of largest value, largest first, into top, when no two of the k + 1
// largest valid values are equal: then np.argsort puts them last in that order whatever its tie
// rule. Returns false (top unspecified) where a tie could matter.
template <class Valid>
bool top_by_value(std::vector<Index>& top, const double* value, Index n, std::size_t k, Valid&& valid) {
  top.clear();
  bool tie = false;  // a value equal to the smallest kept one when the k + 1 kept are full
  for (Index i = 0; i < n; ++i) {
    if (!valid(i)) continue;
    const double v = value[i];
    if (top.size() == k + 1) {
      const double smallest = value[top.back()];
      if (v < smallest) continue;
      if (v == smallest) {
        tie = true;
        continue;
      }
      top.pop_back();
    }
    std::size_t at = top.size();
    top.push_back(i);
    for (; at > 0 && value[top[at - 1]] < v; --at) top[at] = top[at - 1];
    top[at] = i;
  }
  for (std::size_t j = 1; j < top.size(); ++j)
    if (value[top[j]] == value[top[j - 1]]) tie = true;
  if (tie) return false;
  if (top.size() > k) top.pop_back();
  return true;
}

inline bool constant(const double* x, Index n) {
  for (Index k = 1; k < n; ++k)
    if (x[k] != x[0]) return false;
  return true;
}

// Two powers of two whose product p brings max |x| into [0.5, 1): x[k] * a * b is x[k] * p exactly
// whenever that is a normal double. Two factors, because p alone would overflow for subnormal inputs
// (max |x| = 2^-1070 needs p = 2^1070); each factor stays within 2^±538.
inline std::pair<double, double> unit_scale(const double* x, Index n) {
  double top = 0;
  for (Index k = 0; k < n; ++k) top = std::max(top, std::abs(x[k]));
  int e = 0;
  std::frexp(top, &e);  // top = f * 2^e, f in [0.5, 1); e = 0 for top = 0
  const int half = -e / 2;
  return {std::ldexp(1.0, half), std::ldexp(1.0, -e - half)};
}

// 1-based average ranks into `ranks`, with `sorted` and `tmp` of n keys as scratch (no allocation).
inline void average_ranks(double* ranks, const double* x, Index n, SortKey* sorted, SortKey* tmp);

template <class T>
void check_finite(const TensorMap<const T>& t, const char* name) {
  const Index days = t.dim(1);
  for (Index k = 0; k < t.size(); ++k) {
    const double v = static_cast<double>(t.data()[k]);
    if (!std::isfinite(v))
      throw Error(std::string("stockmixer::metrics::evaluate: ") + name + " holds " +
                  (std::isnan(v) ? "NaN" : (v > 0 ? "+Inf" : "-Inf")) + " at stock " + std::to_string(k / days) +
                  ", day " + std::to_string(k % days));
  }
}

// One day of evaluate: its column i of the [N, days] inputs and every per-day quantity.
struct DayResult {
  double ic = 0;              // Pearson(P·M, G·M)
  bool all_miss = false;      // no valid stock: no top-1
  double mrr = 0;             // 1 / the top-1's place in realised order (when !all_miss)
  double bt_long = 0;         // the top-1's return (0 when all miss)
  double mean5 = 0, mean10 = 0, prec10 = 0;  // the top 5's and 10's mean return / 5, / 10; share >= 0
  bool skipped = false;       // fewer than 2 valid stocks, or constant P or G over them
  double rank_ic = 0, pearson = 0;  // Spearman and Pearson over the valid stocks (when !skipped)
};

// Buffers one thread reuses from day to day, all sized here: a day allocates nothing.
struct DayScratch {
  std::vector<double> p, g, m;     // [N] one day's columns
  std::vector<double> pm, gm;      // [N] P·M, G·M
  std::vector<double> pv, gv;      // [valid] the valid stocks' P and G (capacity N)
  std::vector<double> rp, rg;      // [valid] their average ranks (capacity N)
  std::vector<SortKey> sorted, tmp;  // [N] average_ranks' keys
  std::vector<Index> order_p, order_g;  // [N] np.argsort of P and of G
  std::vector<Index> top;          // the predicted top 10, best first (capacity 11: top_by_value holds k + 1)
  explicit DayScratch(Index N)
      : p(static_cast<std::size_t>(N)), g(p.size()), m(p.size()), pm(p.size()), gm(p.size()), rp(p.size()),
        rg(p.size()), sorted(p.size()), tmp(p.size()), order_p(p.size()), order_g(p.size()) {
    pv.reserve(p.size());
    gv.reserve(p.size());
    top.reserve(11);
  }
  // The bytes one DayScratch of N stocks takes (for the out-of-memory message).
  static std::uint64_t bytes(Index N) {
    return static_cast<std::uint64_t>(N) * (9 * sizeof(double) + 2 * sizeof(SortKey) + 2 * sizeof(Index)) +
           11 * sizeof(Index);
  }
};

template <class T>
DayResult evaluate_day(TensorMap<const T> prediction, TensorMap<const T> ground_truth, TensorMap<const T> mask,
                       Index i, DayScratch& sc) {
  const Index N = prediction.dim(0);
  DayResult day;
  std::vector<double>&p = sc.p, &g = sc.g, &m = sc.m, &pm = sc.pm, &gm = sc.gm, &pv = sc.pv, &gv = sc.gv;
  std::vector<Index>&order_p = sc.order_p, &order_g = sc.order_g, &top = sc.top;
  for (Index n = 0; n < N; ++n) {
    const auto s = static_cast<std::size_t>(n);
    p[s] = static_cast<double>(prediction(n, i));
    g[s] = static_cast<double>(ground_truth(n, i));
    m[s] = static_cast<double>(mask(n, i));
    pm[s] = p[s] * m[s];
    gm[s] = g[s] * m[s];
  }
  auto valid = [&m](Index n) { return m[static_cast<std::size_t>(n)] >= 0.5; };
  day.ic = pearson(pm.data(), gm.data(), N);

  // The predicted top 10 (valid stocks, best first) as they come from the end of np.argsort(P).
  // np.argsort's order among equal values is its own (numpy_argsort reproduces it); where no tie
  // touches the top 10 the values alone decide it, in one pass (detail::top_by_value).
  if (!detail::top_by_value(top, p.data(), N, 10, valid)) {
    top.clear();
    numpy_argsort(order_p.data(), p.data(), N);
    for (Index j = N - 1; j >= 0 && top.size() < 10; --j)
      if (valid(order_p[static_cast<std::size_t>(j)])) top.push_back(order_p[static_cast<std::size_t>(j)]);
  }

  // Reciprocal rank of the predicted top-1 among the valid stocks in realised order (np.argsort(G)
  // from the end): one plus the valid stocks of higher G, counted directly unless another valid
  // stock's G equals the top-1's, where np.argsort's tie order decides.
  if (top.empty()) {
    day.all_miss = true;
  } else {
    const double g_top = g[static_cast<std::size_t>(top[0])];
    Index higher = 0, equal = 0;
    for (Index n = 0; n < N; ++n)
      if (valid(n) && n != top[0]) {
        higher += g[static_cast<std::size_t>(n)] > g_top;
        equal += g[static_cast<std::size_t>(n)] == g_top;
      }
    Index pos = higher + 1;
    if (equal > 0) {
      numpy_argsort(order_g.data(), g.data(), N);
      pos = 0;
      for (Index j = N - 1; j >= 0; --j) {
        const Index n = order_g[static_cast<std::size_t>(j)];
        if (!valid(n)) continue;
        ++pos;
        if (n == top[0]) break;
      }
    }
    day.mrr = 1.0 / static_cast<double>(pos);
  }

  auto ret = [&g](Index n) { return g[static_cast<std::size_t>(n)]; };
  day.bt_long = top.empty() ? 0.0 : ret(top[0]);
  double sum5 = 0, sum10 = 0, positive = 0;
  for (std::size_t k = 0; k < top.size(); ++k) {
    if (k < 5) sum5 += ret(top[k]);
    sum10 += ret(top[k]);
    positive += ret(top[k]) >= 0 ? 1.0 : 0.0;
  }
  day.mean5 = sum5 / 5;
  day.mean10 = sum10 / 10;
  day.prec10 = positive / 10;

  // Extras over the valid stocks.
  pv.clear();
  gv.clear();
  for (Index n = 0; n < N; ++n)
    if (valid(n)) {
      pv.push_back(p[static_cast<std::size_t>(n)]);
      gv.push_back(g[static_cast<std::size_t>(n)]);
    }
  const auto nv = static_cast<Index>(pv.size());
  if (nv < 2 || detail::constant(pv.data(), nv) || detail::constant(gv.data(), nv)) {
    day.skipped = true;
  } else {
    average_ranks(sc.rp.data(), pv.data(), nv, sc.sorted.data(), sc.tmp.data());
    average_ranks(sc.rg.data(), gv.data(), nv, sc.sorted.data(), sc.tmp.data());
    day.rank_ic = pearson(sc.rp.data(), sc.rg.data(), nv);  // spearman, on the scratch
    day.pearson = pearson(pv.data(), gv.data(), nv);
  }
  return day;
}

}  // namespace detail

inline void numpy_argsort_heapsort(Index* order, const double* values, Index n) {
  for (Index k = 0; k < n; ++k) order[k] = k;
  detail::argsort_heap(order, values, n);
}

// numpy's aquicksort_ (npysort/quicksort.cpp), the same decisions on indices instead of pointers:
// partitions longer than 16 are split around the median of (first, middle, last), the larger side is
// pushed on a stack; each partition gets a depth budget of 2·⌊log2 n⌋ splits before it is heapsorted;
// short partitions are insertion-sorted. The stack lives on the stack, as numpy's (PYA_QS_STACK = 128):
// the larger side is pushed and the smaller one sorted first, so it never holds more than log2(n) < 64
// partitions.
inline void numpy_argsort(Index* order, const double* values, Index n) {
  using detail::numpy_less;
  for (Index k = 0; k < n; ++k) order[k] = k;
  if (n < 2) return;
  constexpr Index kSmall = 15;  // numpy's SMALL_QUICKSORT
  const double* v = values;
  constexpr std::size_t kStack = 128;
  std::array<std::pair<Index, Index>, kStack> stack;  // pushed (pl, pr) partitions
  std::array<int, kStack> depths;                     // their depth budgets
  std::size_t top = 0;                                // entries in use
  Index pl = 0, pr = n - 1;
  int cdepth = 0;
  for (Index u = n; u >>= 1;) ++cdepth;  // npy_get_msb(n)
  cdepth *= 2;

  for (;;) {
    if (cdepth < 0) {
      detail::argsort_heap(order + pl, v, pr - pl + 1);
    } else {
      while (pr - pl > kSmall) {
        const Index pm = pl + ((pr - pl) >> 1);
        if (numpy_less(v[order[pm]], v[order[pl]])) std::swap(order[pm], order[pl]);
        if (numpy_less(v[order[pr]], v[order[pm]])) std::swap(order[pr], order[pm]);
        if (numpy_less(v[order[pm]], v[order[pl]])) std::swap(order[pm], order[pl]);
        const double vp = v[order[pm]];
        Index pi = pl, pj = pr - 1;
        std::swap(order[pm], order[pj]);
        for (;;) {
          do ++pi; while (numpy_less(v[order[pi]], vp));
          do --pj; while (numpy_less(vp, v[order[pj]]));
          if (pi >= pj) break;
          std::swap(order[pi], order[pj]);
        }
        std::swap(order[pi], order[pr - 1]);
        if (pi - pl < pr - pi) {
          stack[top] = {pi + 1, pr};
          pr = pi - 1;
        } else {
          stack[top] = {pl, pi - 1};
          pl = pi + 1;
        }
        depths[top++] = --cdepth;
      }
      for (Index pi = pl + 1; pi <= pr; ++pi) {  // insertion sort
        const Index vi = order[pi];
        const double vp = v[vi];
        Index pj = pi;
        for (; pj > pl && numpy_less(vp, v[order[pj - 1]]); --pj) order[pj] = order[pj - 1];
        order[pj] = vi;
      }
    }
    if (top == 0) break;
    --top;
    std::tie(pl, pr) = stack[top];
    cdepth = depths[top];
  }
}

inline double pearson(const double* x, const double* y, Index n) {
  if (n < 2 || detail::constant(x, n) || detail::constant(y, n)) return detail::kNaN;
  // x and y scaled by powers of two first: |x|, |y| < 1, so no sum below can overflow.
  const auto [xa, xb] = detail::unit_scale(x, n);
  const auto [ya, yb] = detail::unit_scale(y, n);
  double mx = 0, my = 0;
  for (Index k = 0; k < n; ++k) {
    mx += x[k] * xa * xb;
    my += y[k] * ya * yb;
  }
  mx /= static_cast<double>(n);
  my /= static_cast<double>(n);
  double sxx = 0, syy = 0, sxy = 0;
  for (Index k = 0; k < n; ++k) {
    const double dx = x[k] * xa * xb - mx, dy = y[k] * ya * yb - my;
    sxx += dx * dx;
    syy += dy * dy;
    sxy += dx * dy;
  }
  const double r = sxy / std::sqrt(sxx) / std::sqrt(syy);  // np.corrcoef's order of divisions
  return std::clamp(r, -1.0, 1.0);
}

inline void average_ranks(double* ranks, const double* x, Index n) {
  std::vector<SortKey> sorted, tmp;
  try {
    sorted.resize(static_cast<std::size_t>(n));
    tmp.resize(static_cast<std::size_t>(n));
  } catch (const std::bad_alloc&) {
    throw Error("stockmixer::metrics::average_ranks: cannot allocate " +
                io::byte_size(2 * static_cast<std::uint64_t>(n) * sizeof(SortKey)) + " to rank " +
                std::to_string(n) + " values: out of memory");
  }
  detail::average_ranks(ranks, x, n, sorted.data(), tmp.data());
}

inline void detail::average_ranks(double* ranks, const double* x, Index n, SortKey* sorted, SortKey* tmp) {
  // (value, index) keys sorted (sort.hpp): equal values get one rank, so their order does not matter
  for (Index k = 0; k < n; ++k) sorted[k] = {x[k], k};
  stockmixer::detail::sort_keys(sorted, tmp, n);
  auto at = [sorted](Index k) -> const SortKey& { return sorted[k]; };
  for (Index start = 0; start < n;) {
    Index end = start + 1;  // [start, end): one group of equal values
    while (end < n && at(end).value == at(start).value) ++end;
    const double rank = 0.5 * static_cast<double>(start + 1 + end);  // mean of start+1 .. end
    for (Index k = start; k < end; ++k) ranks[at(k).index] = rank;
    start = end;
  }
}

inline double spearman(const double* x, const double* y, Index n) {
  std::vector<double> rx, ry;
  try {
    rx.resize(static_cast<std::size_t>(n));
    ry.resize(static_cast<std::size_t>(n));
  } catch (const std::bad_alloc&) {
    throw Error("stockmixer::metrics::spearman: cannot allocate " +
                io::byte_size(2 * static_cast<std::uint64_t>(n) * sizeof(double)) + " for the ranks of " +
                std::to_string(n) + " values: out of memory");
  }
  average_ranks(rx.data(), x, n);
  average_ranks(ry.data(), y, n);
  return pearson(rx.data(), ry.data(), n);
}

inline nlohmann::json Performance::to_json() const {
  return nlohmann::json{
      {"mse", mse},         {"IC", IC},           {"RIC", RIC},
      {"prec_10", prec_10}, {"sharpe5", sharpe5}, {"mrr_top", mrr_top},
      {"bt_long", bt_long}, {"bt_long5", bt_long5}, {"bt_long10", bt_long10},
      {"rank_ic", rank_ic}, {"rank_icir", rank_icir}, {"ic_valid", ic_valid},
      {"ic_valid_ir", ic_valid_ir}, {"days", days}, {"skipped_days", skipped_days}};
}

template <class T>
Performance evaluate(TensorMap<const T> prediction, TensorMap<const T> ground_truth, TensorMap<const T> mask) {
  if (prediction.rank() != 2 || prediction.shape() != ground_truth.shape() || prediction.shape() != mask.shape())
    throw Error("stockmixer::metrics::evaluate: prediction, ground_truth and mask must share one shape [N, days]; "
                "got prediction " + prediction.shape().str() + ", ground_truth " + ground_truth.shape().str() +
                ", mask " + mask.shape().str());
  const Index N = prediction.dim(0), D = prediction.dim(1);
  if (N == 0 || D == 0)
    throw Error("stockmixer::metrics::evaluate: needs at least one stock and one day, got shape " +
                prediction.shape().str());
  detail::check_finite(prediction, "prediction");
  detail::check_finite(ground_truth, "ground_truth");
  detail::check_finite(mask, "mask");

  Performance perf;
  perf.days = D;

  // mse over every entry, the mask as a weight.
  double squares = 0, mask_sum = 0;
  for (Index k = 0; k < prediction.size(); ++k) {
    const double m = static_cast<double>(mask.data()[k]);
    const double d = (static_cast<double>(prediction.data()[k]) - static_cast<double>(ground_truth.data()[k])) * m;
    squares += d * d;
    mask_sum += m;
  }
  perf.mse = squares / mask_sum;

  // Every buffer first (one scratch set per thread, one result and one failure slot per day chunk, the
  // daily series), so that nothing allocates while the days run.
  constexpr Index kGrain = 16;  // days per chunk
  const Index chunks = (D + kGrain - 1) / kGrain;
  const auto threads = static_cast<std::size_t>(std::max(1, num_threads()));
  std::vector<detail::DayResult> days;
  std::vector<detail::DayScratch> scratch;
  std::vector<std::exception_ptr> failures;
  std::vector<double> ic, r5, prec10, rank_days, pearson_days;  // [D] or [kept days]
  try {
    days.resize(static_cast<std::size_t>(D));
    scratch.reserve(threads);
    for (std::size_t t = 0; t < threads; ++t) scratch.emplace_back(N);
    failures.resize(static_cast<std::size_t>(chunks));
    for (auto* series : {&ic, &r5, &prec10, &rank_days, &pearson_days}) series->reserve(static_cast<std::size_t>(D));
  } catch (const std::bad_alloc&) {
    const std::uint64_t bytes = threads * detail::DayScratch::bytes(N) +
                                static_cast<std::uint64_t>(D) * (sizeof(detail::DayResult) + 5 * sizeof(double)) +
                                static_cast<std::uint64_t>(chunks) * sizeof(std::exception_ptr);
    throw Error("stockmixer::metrics::evaluate: cannot allocate " + io::byte_size(bytes) + " of working memory for " +
                std::to_string(N) + " stocks over " + std::to_string(D) + " days on " + std::to_string(threads) +
                " threads: out of memory");
  }

  // Each day on its own (any thread: every day's results depend on that day alone), then the days'
  // results added in day order, so the fields are the same on any thread count. An exception stays
  // in its chunk's slot until the region has ended; the first chunk's is rethrown.
  parallel_for(D, kGrain, [&](Index i0, Index i1) {
    try {
      const auto t = static_cast<std::size_t>(thread_index());
      if (t >= scratch.size())
        throw Error("stockmixer::metrics::evaluate: thread " + std::to_string(t) + " of a team larger than the " +
                    std::to_string(scratch.size()) + " threads num_threads() announced");
      for (Index i = i0; i < i1; ++i)
        days[static_cast<std::size_t>(i)] = detail::evaluate_day(prediction, ground_truth, mask, i, scratch[t]);
    } catch (...) {
      failures[static_cast<std::size_t>(i0 / kGrain)] = std::current_exception();
    }
  });
  for (const std::exception_ptr& failure : failures)
    if (failure) std::rethrow_exception(failure);
  double mrr_sum = 0;
  Index all_miss_days = 0;
  for (const detail::DayResult& day : days) {
    ic.push_back(day.ic);
    if (day.all_miss) ++all_miss_days;
    else mrr_sum += day.mrr;
    perf.bt_long += day.bt_long;
    perf.bt_long5 += day.mean5;
    perf.bt_long10 += day.mean10;
    r5.push_back(day.mean5);
    prec10.push_back(day.prec10);
    if (day.skipped) {
      ++perf.skipped_days;
    } else {
      rank_days.push_back(day.rank_ic);
      pearson_days.push_back(day.pearson);
    }
  }

  perf.IC = detail::mean(ic);
  perf.RIC = perf.IC / detail::population_std(ic);
  perf.sharpe5 = detail::mean(r5) / detail::population_std(r5) * 15.87;
  perf.prec_10 = detail::mean(prec10);
  perf.mrr_top = all_miss_days == D ? detail::kNaN : mrr_sum / static_cast<double>(D - all_miss_days);

  auto ir = [](const std::vector<double>& x) {
    const double sd = detail::population_std(x);
    return sd > 0 ? detail::mean(x) / sd : detail::kNaN;
  };
  perf.rank_ic = detail::mean(rank_days);
  perf.rank_icir = ir(rank_days);
  perf.ic_valid = detail::mean(pearson_days);
  perf.ic_valid_ir = ir(pearson_days);
  return perf;
}

template <class T>
Performance evaluate(const Tensor<T>& prediction, const Tensor<T>& ground_truth, const Tensor<T>& mask) {
  return evaluate<T>(prediction.map(), ground_truth.map(), mask.map());
}

}  // namespace stockmixer::metrics
