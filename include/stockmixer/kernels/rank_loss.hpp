// stockmixer/kernels/rank_loss.hpp — the ranking objective of the original's get_loss:
// a masked MSE on return ratios plus alpha times a pairwise ranking hinge.
//
//   shapes    pred, base, gt, mask, rr [N] (the original's [N, 1] columns); loss, reg, rank scalars
//   forward   rr_i   = (pred_i - base_i) / base_i
//             reg    = (1/N)  Σ_i (rr_i·m_i - gt_i·m_i)²                         (F.mse_loss)
//             P_ij   = ((rr_i - rr_j) · (gt_j - gt_i)) · (m_i · m_j)
//             rank   = (1/N²) Σ_i Σ_j relu(P_ij)
//             loss   = reg + alpha · rank
//   backward  P is symmetric (P_ij = P_ji bit for bit: both factors change sign), so
//             drr_i   = dloss · [ (2/N) (rr_i·m_i - gt_i·m_i) · m_i
//                             + alpha · (2/N²) Σ_j [P_ij > 0] (gt_j - gt_i) · m_i · m_j ]
//             dpred_i += drr_i / base_i
//             [P_ij > 0] is PyTorch's relu gradient: zero at zero (ties, masked pairs).
//   saves     rr (an output). Memory is O(N): no N x N buffer is ever made; time is O(N²).
//
// Sums are accumulated in double, products are formed in T exactly as PyTorch forms them, so the
// relu's zero tests agree with PyTorch's even at ties.
// Threads: the rank sum by fixed row chunks (partial sums added in chunk order); dpred by rows.
//
// rank_loss_forward_sorted / rank_loss_backward_sorted compute the same quantities exactly in
// O(N log N) time (a sort by rr, a Fenwick tree over the ranks of gt) with caller-owned scratch
// memory (RankLossWorkspace): equal to the O(N²) pair for masks in {0, 1}, up to summation order
// (see their declarations and docs/math/rank_loss.md, "An exact O(N log N) form").
// Derivation: docs/math/rank_loss.md · tests: tests/test_kernels_*.cpp · benchmark: benchmarks/bench_kernels.cpp
#pragma once

#include "stockmixer/common.hpp"
#include "stockmixer/cuda/pointwise.hpp"
#include "stockmixer/parallel.hpp"
#include "stockmixer/sort.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace stockmixer {

// ---- interface -------------------------------------------------------------------------------------

template <class T>
struct RankLoss {
  T loss;  // reg + alpha · rank
  T reg;   // masked mean squared error of the return ratios
  T rank;  // mean pairwise ranking hinge
};

template <class T>
RankLoss<T> rank_loss_forward(T* rr, const T* pred, const T* base, const T* gt, const T* mask, Index n, T alpha);

// dpred += d(loss)/d(pred) · dloss. rr is the forward's output.
template <class T>
void rank_loss_backward(T* dpred, T dloss, const T* rr, const T* base, const T* gt, const T* mask, Index n,
                        T alpha);

// The original's formulation: three N x N matrices (O(N²) memory). For tests and benchmarks only.
template <class T>
RankLoss<T> rank_loss_forward_naive(T* rr, const T* pred, const T* base, const T* gt, const T* mask, Index n,
                                    T alpha);

// ---- the O(N log N) form ------------------------------------------------------------------------------
//
// For masked-in stocks P_ij > 0 exactly when the pair is discordant (rr_i > rr_j and gt_i < gt_j, or
// rr_i < rr_j and gt_i > gt_j; a tie in either gives 0). With D(i) the discordant partners of i and
//   S_i = Σ_{j ∈ D(i)} (gt_j - gt_i)        (the rank part of the gradient: drr_i ∋ (2/N²)·S_i)
//   Σ_ij relu(P_ij) = 2 Σ_i rr_i·S_i        (the rank sum is homogeneous of degree 1 in rr)
// A sort by rr and two Fenwick sweeps over the ranks of gt give every S_i in O(N log N).
//
// Preconditions and exactness:
//  - mask values must be exactly 0 or 1 (as in training); any other value (NaN included) throws
//    stockmixer::Error before anything is written. For such masks m_i·m_j = 1 is exact, so the
//    discordance test above is PyTorch's `P_ij > 0` bit for bit, except where a nonzero product
//    (rr_i - rr_j)·(gt_j - gt_i) underflows to zero in T (|product| below T's smallest subnormal:
//    impossible for return ratios, which differ by at least ~1e-8 when they differ).
//  - a masked-in stock whose rr or gt is NaN has every P_ij NaN (never > 0): it is left out, as the
//    O(N²) form leaves it out. Infinite rr or gt give a non-finite rank (the O(N²) form too).
//  - equal values (+0 and -0 included) are ties: they are compared in T, exactly.
//  - the result equals the O(N²) one up to rounding: all sums are in double, in another order; in
//    float the O(N²) form also rounds each P_ij and each gt_j - gt_i to float, this one does not.
//    Tolerances: docs/math/rank_loss.md, tests/test_rank_loss_sorted.cpp.
//  - reg, rr and the reg part of dpred are computed exactly as rank_loss_forward/backward do them
//    (bit for bit).
// Threads: the two sorts run as two tasks, then the two sweeps as two tasks (2 threads at most, from
// m = 512 masked-in stocks up); every sum has a fixed order, so 1 or more threads give bit-identical
// results.

// Scratch memory for the sorted kernels, reused across calls. Not templated: values are held as
// double, which every float and double converts to exactly (order and equality kept). After
// reserve(n) (or one call with n stocks), calls with at most n stocks allocate nothing; a call with
// more stocks grows it. About 168 bytes per stock. One workspace per concurrent caller.
// The members are the kernels' scratch: their contents between calls are unspecified.
struct RankLossWorkspace {
  using Key = SortKey;  // a masked-in stock: a value (rr or gt) and the stock's index
  struct Item {  // a stock in rr order: its gt, centred, and the dense rank of its gt
    double gt;
    Index rank;
  };
  struct Node {  // a Fenwick node, or the partner statistics of one stock: Σ centred gt, count
    double sum;
    double count;
  };

  RankLossWorkspace() = default;
  explicit RankLossWorkspace(Index n) { reserve(n); }

  // Sizes every buffer for n stocks (never shrinks).
  void reserve(Index n) {
    if (n <= capacity_) return;
    const auto u = static_cast<std::size_t>(n);
    for (auto* v : {&by_gt, &by_rr, &sort_gt, &sort_rr}) v->resize(u);
    for (auto* v : {&tree_below, &tree_above}) v->resize(u + 1);
    for (auto* v : {&below, &above}) v->resize(u);
    gt_rank.resize(u);
    items.resize(u);
    hinge.resize(u);
    capacity_ = n;
  }
  Index capacity() const { return capacity_; }

  std::vector<Key> by_gt, by_rr;             // masked-in stocks sorted by (gt, index) / (rr, index)
  std::vector<Key> sort_gt, sort_rr;         // the radix sorts' second buffers
  std::vector<Index> gt_rank;                // per stock index: dense rank of gt (ties share a rank)
  std::vector<Item> items;                   // per rr-sorted position
  std::vector<Node> tree_below, tree_above;  // Fenwick trees over gt ranks (1-based, K + 1 nodes)
  std::vector<Node> below, above;            // per rr-sorted position: partners with lower / higher rr
  std::vector<double> hinge;                 // per stock index: S_i (backward)

 private:
  Index capacity_ = 0;
};

// As rank_loss_forward (same outputs, rr written the same way), in O(N log N) time. No allocation
// once ws holds n stocks. Throws stockmixer::Error if a mask value is neither 0 nor 1. With `hinge`
// (n doubles, or null) it also keeps there what the backward needs, S_i for every stock (0 for
// those left out), so that rank_loss_backward_from_hinge need not sort again.
template <class T>
RankLoss<T> rank_loss_forward_sorted(T* rr, const T* pred, const T* base, const T* gt, const T* mask, Index n,
                                     T alpha, RankLossWorkspace& ws, double* hinge = nullptr);

// The backward from the forward's `hinge` (rank_loss_forward_sorted on the same inputs): O(N), the
// same bits as rank_loss_backward_sorted.
template <class T>
void rank_loss_backward_from_hinge(T* dpred, T dloss, const T* rr, const T* base, const T* gt, const T* mask,
                                   Index n, T alpha, const double* hinge);

// As rank_loss_backward (dpred += ...), in O(N log N) time. No allocation once ws holds n stocks.
// Throws stockmixer::Error (before touching dpred) if a mask value is neither 0 nor 1.
template <class T>
void rank_loss_backward_sorted(T* dpred, T dloss, const T* rr, const T* base, const T* gt, const T* mask, Index n,
                               T alpha, RankLossWorkspace& ws);

// ---- implementation --------------------------------------------------------------------------------

// The per-stock and per-pair terms are cuda/pointwise.hpp's, shared with the CUDA unit.
namespace detail {
template <class T>
inline T rank_pair(const T* rr, const T* gt, const T* mask, Index i, Index j) {
  return pointwise::rank_pair(rr[i], rr[j], gt[i], gt[j], mask[i], mask[j]);
}
}  // namespace detail

template <class T>
RankLoss<T> rank_loss_forward(T* rr, const T* pred, const T* base, const T* gt, const T* mask, Index n, T alpha) {
  double reg = 0.0;
  for (Index i = 0; i < n; ++i) {
    rr[i] = pointwise::return_ratio(pred[i], base[i]);
    const T d = pointwise::rank_reg_diff(rr[i], gt[i], mask[i]);
    reg += static_cast<double>(d) * d;
  }
  const double rank = parallel_sum(n, grain_for(n, 65536), [&](Index i0, Index i1) {
    double acc = 0.0;
    for (Index i = i0; i < i1; ++i)
      for (Index j = 0; j < n; ++j) {
        const T p = detail::rank_pair(rr, gt, mask, i, j);
        if (p > T(0)) acc += p;
      }
    return acc;
  });
  RankLoss<T> out;
  out.reg = static_cast<T>(reg / static_cast<double>(n));
  out.rank = static_cast<T>(rank / (static_cast<double>(n) * static_cast<double>(n)));
  out.loss = out.reg + alpha * out.rank;
  return out;
}

template <class T>
void rank_loss_backward(T* dpred, T dloss, const T* rr, const T* base, const T* gt, const T* mask, Index n,
                        T alpha) {
  const double inv_n = 1.0 / static_cast<double>(n);
  parallel_for(n, grain_for(n, 65536), [&](Index i0, Index i1) {
    for (Index i = i0; i < i1; ++i) {
      double hinge = 0.0;  // Σ_j [P_ij > 0] (gt_j - gt_i) m_j
      for (Index j = 0; j < n; ++j)
        if (detail::rank_pair(rr, gt, mask, i, j) > T(0)) hinge += pointwise::rank_hinge_term(gt[i], gt[j], mask[j]);
      dpred[i] += pointwise::rank_dpred(dloss, alpha, rr[i], gt[i], mask[i], base[i], hinge, inv_n);
    }
  });
}

template <class T>
RankLoss<T> rank_loss_forward_naive(T* rr, const T* pred, const T* base, const T* gt, const T* mask, Index n,
                                    T alpha) {
  for (Index i = 0; i < n; ++i) rr[i] = (pred[i] - base[i]) / base[i];
  const auto nn = static_cast<std::size_t>(n * n);
  std::vector<T> pre_pw_dif(nn), gt_pw_dif(nn), mask_pw(nn);  // the original's three N x N matrices
  for (Index i = 0; i < n; ++i)
    for (Index j = 0; j < n; ++j) {
      const auto ij = static_cast<std::size_t>(i * n + j);
      pre_pw_dif[ij] = rr[i] - rr[j];
      gt_pw_dif[ij] = gt[j] - gt[i];
      mask_pw[ij] = mask[i] * mask[j];
    }
  long double reg = 0, rank = 0;
  for (Index i = 0; i < n; ++i) reg += (rr[i] * mask[i] - gt[i] * mask[i]) * (rr[i] * mask[i] - gt[i] * mask[i]);
  for (std::size_t k = 0; k < nn; ++k) {
    const T p = pre_pw_dif[k] * gt_pw_dif[k] * mask_pw[k];
    if (p > T(0)) rank += p;
  }
  RankLoss<T> out;
  out.reg = static_cast<T>(reg / n);
  out.rank = static_cast<T>(rank / (static_cast<long double>(n) * n));
  out.loss = out.reg + alpha * out.rank;
  return out;
}

namespace detail {

// Runs task(0) and task(1), on two threads when `parallel` (each task writes its own outputs, so the
// result does not depend on it).
template <class Task>
inline void run_two(bool parallel, Task&& task) {
  if (parallel) {
    parallel_for(2, 1, [&](Index c0, Index c1) {
      for (Index c = c0; c < c1; ++c) task(c);
    });
  } else {
    task(0);
    task(1);
  }
}

inline void fenwick_add(RankLossWorkspace::Node* tree, Index size, Index pos, double value) {
  for (Index p = pos + 1; p <= size; p += p & -p) {
    tree[p].sum += value;
    tree[p].count += 1.0;
  }
}
// Σ over positions < pos.
inline RankLossWorkspace::Node fenwick_prefix(const RankLossWorkspace::Node* tree, Index pos) {
  RankLossWorkspace::Node acc{0.0, 0.0};
  for (Index p = pos; p > 0; p -= p & -p) {
    acc.sum += tree[p].sum;
    acc.count += tree[p].count;
  }
  return acc;
}

// The sorted kernels' common part. On return ws.by_rr[0, m) holds the m masked-in stocks sorted by
// (rr, index), ws.below[k] / ws.above[k] the Σ (gt_j - c_gt) and count of the discordant partners of
// the stock at sorted position k with lower / higher rr, ws.items[k].gt its own gt - c_gt.
// S_k = (below.sum - below.count·g_k) + (above.sum - above.count·g_k). Returns m.
template <class T>
Index rank_partners_sorted(RankLossWorkspace& ws, const T* rr, const T* gt, const T* mask, Index n,
                           const char* who) {
  ws.reserve(n);
  Index m = 0;
  for (Index i = 0; i < n; ++i) {
    const T mi = mask[i];
    if (mi == T(0)) continue;
    if (!(mi == T(1)))
      throw Error(std::string(who) + ": mask[" + std::to_string(i) + "] = " + std::to_string(mi) +
                  "; the sorted rank loss needs masks in {0, 1} (use rank_loss_forward/backward)");
    if (std::isnan(rr[i]) || std::isnan(gt[i])) continue;  // every P_ij is NaN: never counted
    ws.by_gt[static_cast<std::size_t>(m)] = {static_cast<double>(gt[i]), i};
    ws.by_rr[static_cast<std::size_t>(m)] = {static_cast<double>(rr[i]), i};
    ++m;
  }
  if (m < 2) {  // no pairs: S = 0
    if (m == 1) {
      ws.below[0] = ws.above[0] = RankLossWorkspace::Node{0.0, 0.0};
      ws.items[0] = RankLossWorkspace::Item{0.0, 0};
    }
    return m;
  }
  const bool parallel = m >= 512;
  using Key = RankLossWorkspace::Key;
  Key* by_gt = ws.by_gt.data();
  Key* by_rr = ws.by_rr.data();
  Index* gt_rank = ws.gt_rank.data();
  Index distinct = 0;  // K, the number of distinct gt values
  run_two(parallel, [&](Index task) {
    if (task == 0) {
      sort_keys(by_gt, ws.sort_gt.data(), m);  // by (gt, index)
      Index r = 0;
      for (Index k = 0; k < m; ++k) {
        if (k > 0 && by_gt[k].value != by_gt[k - 1].value) ++r;
        gt_rank[by_gt[k].index] = r;
      }
      distinct = r + 1;
    } else {
      sort_keys(by_rr, ws.sort_rr.data(), m);  // by (rr, index)
    }
  });
  // Centring gt (any constant cancels from gt_j - gt_i) keeps the partner sums' rounding relative to
  // gt's spread, not to its magnitude.
  const double c_gt = 0.5 * by_gt[0].value + 0.5 * by_gt[m - 1].value;
  RankLossWorkspace::Item* items = ws.items.data();
  for (Index k = 0; k < m; ++k) {
    const Index i = by_rr[k].index;
    items[k] = {static_cast<double>(gt[i]) - c_gt, gt_rank[i]};
  }
  const Index K = distinct;
  run_two(parallel, [&](Index task) {
    if (task == 0) {
      // Ascending rr. Partners with lower rr and higher gt: the tree holds the stocks of strictly lower
      // rr (a group of equal rr queries before it is inserted), over reversed ranks K-1-r, so a prefix
      // (positions < K-1-r) is the ranks > r (strictly higher gt).
      RankLossWorkspace::Node* tree = ws.tree_below.data();
      RankLossWorkspace::Node* out = ws.below.data();
      std::fill(tree, tree + K + 1, RankLossWorkspace::Node{0.0, 0.0});
      for (Index k = 0; k < m;) {
        Index e = k + 1;
        while (e < m && by_rr[e].value == by_rr[k].value) ++e;
        for (Index q = k; q < e; ++q) out[q] = fenwick_prefix(tree, K - 1 - items[q].rank);
        for (Index q = k; q < e; ++q) fenwick_add(tree, K, K - 1 - items[q].rank, items[q].gt);
        k = e;
      }
    } else {
      // Descending rr. Partners with higher rr and lower gt: prefix over ranks < r.
      RankLossWorkspace::Node* tree = ws.tree_above.data();
      RankLossWorkspace::Node* out = ws.above.data();
      std::fill(tree, tree + K + 1, RankLossWorkspace::Node{0.0, 0.0});
      for (Index e = m; e > 0;) {
        Index k = e - 1;
        while (k > 0 && by_rr[k - 1].value == by_rr[e - 1].value) --k;
        for (Index q = k; q < e; ++q) out[q] = fenwick_prefix(tree, items[q].rank);
        for (Index q = k; q < e; ++q) fenwick_add(tree, K, items[q].rank, items[q].gt);
        e = k;
      }
    }
  });
  return m;
}

// S_k = Σ_{j ∈ D(k)} (gt_j - gt_k) at rr-sorted position k (after rank_partners_sorted).
inline double rank_hinge_at(const RankLossWorkspace& ws, Index k) {
  const auto u = static_cast<std::size_t>(k);
  const double g = ws.items[u].gt;
  return (ws.below[u].sum - ws.below[u].count * g) + (ws.above[u].sum - ws.above[u].count * g);
}

// S_i by stock index (0 for stocks left out), after rank_partners_sorted returned m.
inline void hinge_by_stock(double* hinge, const RankLossWorkspace& ws, Index m, Index n) {
  std::fill(hinge, hinge + n, 0.0);
  for (Index k = 0; k < m; ++k) hinge[ws.by_rr[static_cast<std::size_t>(k)].index] = rank_hinge_at(ws, k);
}

}  // namespace detail

template <class T>
RankLoss<T> rank_loss_forward_sorted(T* rr, const T* pred, const T* base, const T* gt, const T* mask, Index n,
                                     T alpha, RankLossWorkspace& ws, double* hinge) {
  double reg = 0.0;  // as rank_loss_forward, bit for bit
  for (Index i = 0; i < n; ++i) {
    rr[i] = pointwise::return_ratio(pred[i], base[i]);
    const T d = pointwise::rank_reg_diff(rr[i], gt[i], mask[i]);
    reg += static_cast<double>(d) * d;
  }
  const Index m = detail::rank_partners_sorted(ws, rr, gt, mask, n, "rank_loss_forward_sorted");
  double rank = 0.0;  // Σ_ij relu(P_ij) = 2 Σ_k (rr_k - c_rr)·S_k   (Σ_k S_k = 0: any c_rr)
  if (m >= 2) {
    const RankLossWorkspace::Key* by_rr = ws.by_rr.data();
    const double c_rr = 0.5 * by_rr[0].value + 0.5 * by_rr[m - 1].value;
    double acc = 0.0;
    for (Index k = 0; k < m; ++k) acc += (by_rr[k].value - c_rr) * detail::rank_hinge_at(ws, k);
    rank = std::max(0.0, 2.0 * acc);  // the exact value is >= 0; rounding may not be
  }
  if (hinge) detail::hinge_by_stock(hinge, ws, m, n);
  RankLoss<T> out;
  out.reg = static_cast<T>(reg / static_cast<double>(n));
  out.rank = static_cast<T>(rank / (static_cast<double>(n) * static_cast<double>(n)));
  out.loss = out.reg + alpha * out.rank;
  return out;
}

template <class T>
void rank_loss_backward_sorted(T* dpred, T dloss, const T* rr, const T* base, const T* gt, const T* mask, Index n,
                               T alpha, RankLossWorkspace& ws) {
  const Index m = detail::rank_partners_sorted(ws, rr, gt, mask, n, "rank_loss_backward_sorted");
  double* hinge = ws.hinge.data();
  detail::hinge_by_stock(hinge, ws, m, n);
  rank_loss_backward_from_hinge(dpred, dloss, rr, base, gt, mask, n, alpha, hinge);
}

template <class T>
void rank_loss_backward_from_hinge(T* dpred, T dloss, const T* rr, const T* base, const T* gt, const T* mask,
                                   Index n, T alpha, const double* hinge) {
  const double inv_n = 1.0 / static_cast<double>(n);
  for (Index i = 0; i < n; ++i)  // as rank_loss_backward, with hinge_i = S_i
    dpred[i] += pointwise::rank_dpred(dloss, alpha, rr[i], gt[i], mask[i], base[i], hinge[i], inv_n);
}

}  // namespace stockmixer
