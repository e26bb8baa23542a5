// stockmixer/kernels/triu.hpp — TriU(L): one Linear(i + 1, 1) per output position i, as the original's
// list of nn.Linear(i + 1, 1); together a lower-triangular L x L weight plus a bias per position.
//
//   shapes    x, y [B, L, K]: the mixing axis L sits between a batch B and a trailing K. K = 1 is
//             the original's layout ([..., L], the last axis); on a [N, T, C] layout a time mixer is
//             B = N, L = T, K = C, which spares the two permutes of the original.
//             weight [L, L] row-major, only the lower triangle (k <= i) is read or written, so row
//             i's first i + 1 values are exactly PyTorch's `triU.i.weight` [1, i + 1]; bias [L]
//             holds the `triU.i.bias` values (bias may be null: no bias).
//   forward   y[b,i,k] = bias[i] + Σ_{j<=i} weight[i,j] · x[b,j,k]
//   backward  dx[b,j,k]    += Σ_{i>=j} weight[i,j] · dy[b,i,k]
//             dweight[i,j] += Σ_b Σ_k dy[b,i,k] · x[b,j,k]          (j <= i only)
//             dbias[i]     += Σ_b Σ_k dy[b,i,k]
//   saves     nothing: backward reads the forward input x.
//
// Per sample, y_b = tril(W) · x_b: Eigen's triangular product (K = 1 folds the batch into one GEMM).
// Threads: y, dx by batch chunks; dweight and dbias by output-position rows, each summed over the
// whole batch in order.
// Derivation: docs/math/triu.md · tests: tests/test_kernels_*.cpp · benchmark: benchmarks/bench_kernels.cpp
#pragma once

#include "stockmixer/common.hpp"
#include "stockmixer/parallel.hpp"

namespace stockmixer {

// ---- interface -------------------------------------------------------------------------------------

template <class T>
void triu_forward(T* y, const T* x, const T* weight, const T* bias, Index batch, Index length, Index inner);

// dx, dweight or dbias may be null to skip that gradient.
template <class T>
void triu_backward(T* dx, T* dweight, T* dbias, const T* dy, const T* x, const T* weight, Index batch,
                   Index length, Index inner);

template <class T>
void triu_forward_naive(T* y, const T* x, const T* weight, const T* bias, Index batch, Index length, Index inner);

// ---- implementation --------------------------------------------------------------------------------

template <class T>
void triu_forward(T* y, const T* x, const T* weight, const T* bias, Index batch, Index length, Index inner) {
  ConstMatrixMap<T> W(weight, length, length);  // [L, L], lower triangle
  if (inner == 1) {  // Y[B, L] = X[B, L] · tril(W)^T + bias
    ConstMatrixMap<T> X(x, batch, length);
    MatrixMap<T> Y(y, batch, length);
    parallel_for(batch, grain_for(length * length), [&](Index b0, Index b1) {
      auto Yb = Y.middleRows(b0, b1 - b0);
      Yb.noalias() = X.middleRows(b0, b1 - b0) * W.transpose().template triangularView<Eigen::Upper>();
      if (bias) Yb.rowwise() += ConstVectorMap<T>(bias, length).transpose();
    });
    return;
  }
  parallel_for(batch, grain_for(length * length * inner), [&](Index b0, Index b1) {
    for (Index b = b0; b < b1; ++b) {
      MatrixMap<T> Yb(y + b * length * inner, length, inner);  // [L, K]
      Yb.noalias() = W.template triangularView<Eigen::Lower>() *
                     ConstMatrixMap<T>(x + b * length * inner, length, inner);
      if (bias) Yb.colwise() += ConstVectorMap<T>(bias, length);
    }
  });
}

template <class T>
void triu_backward(T* dx, T* dweight, T* dbias, const T* dy, const T* x, const T* weight, Index batch,
                   Index length, Index inner) {
  ConstMatrixMap<T> W(weight, length, length);  // [L, L], lower triangle
  if (dx) {
    parallel_for(batch, grain_for(length * length * inner), [&](Index b0, Index b1) {
      if (inner == 1) {  // dX[B, L] += dY[B, L] · tril(W)
        MatrixMap<T>(dx + b0 * length, b1 - b0, length).noalias() +=
            ConstMatrixMap<T>(dy + b0 * length, b1 - b0, length) * W.template triangularView<Eigen::Lower>();
        return;
      }
      for (Index b = b0; b < b1; ++b)  // dX_b[L, K] += tril(W)^T · dY_b[L, K]
        MatrixMap<T>(dx + b * length * inner, length, inner).noalias() +=
            W.transpose().template triangularView<Eigen::Upper>() *
            ConstMatrixMap<T>(dy + b * length * inner, length, inner);
    });
  }
  if (dweight || dbias) {
    // Row i of dweight: Σ_b dY_b[i, :] · X_b[0..i, :]^T. Each chunk of rows owns its outputs.
    parallel_for(length, 1, [&](Index i0, Index i1) {
      for (Index i = i0; i < i1; ++i) {
        double db = 0.0;
        for (Index b = 0; b < batch; ++b) {
          const T* dyb = dy + (b * length + i) * inner;  // dY_b[i, :]   [K]
          const T* xb = x + b * length * inner;          // X_b          [L, K]
          for (Index k = 0; k < inner; ++k) db += dyb[k];
          if (!dweight) continue;
          for (Index j = 0; j <= i; ++j) {
            T acc = T(0);
            for (Index k = 0; k < inner; ++k) acc += dyb[k] * xb[j * inner + k];
            dweight[i * length + j] += acc;
          }
        }
        if (dbias) dbias[i] += static_cast<T>(db);
      }
    });
  }
}

template <class T>
void triu_forward_naive(T* y, const T* x, const T* weight, const T* bias, Index batch, Index length, Index inner) {
  for (Index b = 0; b < batch; ++b)
    for (Index i = 0; i < length; ++i)
      for (Index k = 0; k < inner; ++k) {
        T acc = bias ? bias[i] : T(0);
        for (Index j = 0; j <= i; ++j) acc += weight[i * length + j] * x[(b * length + j) * inner + k];
        y[(b * length + i) * inner + k] = acc;
      }
}

}  // namespace stockmixer
