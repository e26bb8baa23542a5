// stockmixer/kernels/rank_loss.hpp — the StockMixer objective, as the original's get_loss:
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
// Derivation: docs/math/rank_loss.md · tests: tests/test_kernels_*.cpp · benchmark: benchmarks/bench_kernels.cpp
#pragma once

#include "stockmixer/common.hpp"
#include "stockmixer/parallel.hpp"

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

// ---- implementation --------------------------------------------------------------------------------

namespace detail {
template <class T>
inline T rank_pair(const T* rr, const T* gt, const T* mask, Index i, Index j) {
  return ((rr[i] - rr[j]) * (gt[j] - gt[i])) * (mask[i] * mask[j]);
}
}  // namespace detail

template <class T>
RankLoss<T> rank_loss_forward(T* rr, const T* pred, const T* base, const T* gt, const T* mask, Index n, T alpha) {
  double reg = 0.0;
  for (Index i = 0; i < n; ++i) {
    rr[i] = (pred[i] - base[i]) / base[i];
    const T d = rr[i] * mask[i] - gt[i] * mask[i];
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
        if (detail::rank_pair(rr, gt, mask, i, j) > T(0)) hinge += static_cast<double>(gt[j] - gt[i]) * mask[j];
      const double d_reg = 2.0 * inv_n * static_cast<double>(rr[i] * mask[i] - gt[i] * mask[i]) * mask[i];
      const double d_rank = 2.0 * inv_n * inv_n * hinge * mask[i];
      const double drr = static_cast<double>(dloss) * (d_reg + static_cast<double>(alpha) * d_rank);
      dpred[i] += static_cast<T>(drr / base[i]);
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

}  // namespace stockmixer
