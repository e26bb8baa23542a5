// stockmixer/kernels/layernorm.hpp — LayerNorm over the trailing D values of each row, as
// torch.nn.LayerNorm(shape) with D = prod(shape): [T, C] and [S, C] in the mixers (D = 80 and 40),
// [N] in the stock mixer (D = 1026). Biased variance, eps inside the square root, elementwise affine.
//
//   forward   mean[r] = Σ_j x[r,j] / D,  var[r] = Σ_j (x[r,j] - mean[r])² / D
//             rstd[r] = 1 / sqrt(var[r] + eps),  xhat = (x - mean) · rstd
//             y[r,j]  = xhat[r,j] · gamma[j] + beta[j]
//   backward  g = dy · gamma
//             dx[r,j]   += rstd[r] · (g[r,j] - mean_j(g[r,:]) - xhat[r,j] · mean_j(g[r,:] · xhat[r,:]))
//             dgamma[j] += Σ_r dy[r,j] · xhat[r,j]
//             dbeta[j]  += Σ_r dy[r,j]
//   saves     mean[R] and rstd[R] (xhat is recomputed from x: D values cost less than storing R·D).
//
// Row statistics and the dgamma/dbeta sums are accumulated in double for both float and double.
// Threads: y, dx by row chunks; dgamma, dbeta by column chunks (each column summed over all rows in
// row order, so the result does not depend on the thread count).
// Derivation: docs/math/layernorm.md · tests: tests/test_kernels_*.cpp · benchmark: benchmarks/bench_kernels.cpp
#pragma once

#include "stockmixer/common.hpp"
#include "stockmixer/parallel.hpp"

#include <cmath>

namespace stockmixer {

// ---- interface -------------------------------------------------------------------------------------

template <class T>
void layernorm_forward(T* y, T* mean, T* rstd, const T* x, const T* gamma, const T* beta, Index rows, Index dim,
                       double eps = 1e-5);

// dx, dgamma or dbeta may be null to skip that gradient.
template <class T>
void layernorm_backward(T* dx, T* dgamma, T* dbeta, const T* dy, const T* x, const T* mean, const T* rstd,
                        const T* gamma, Index rows, Index dim);

template <class T>
void layernorm_forward_naive(T* y, T* mean, T* rstd, const T* x, const T* gamma, const T* beta, Index rows,
                             Index dim, double eps = 1e-5);

// ---- implementation --------------------------------------------------------------------------------

template <class T>
void layernorm_forward(T* y, T* mean, T* rstd, const T* x, const T* gamma, const T* beta, Index rows, Index dim,
                       double eps) {
  parallel_for(rows, grain_for(4 * dim), [&](Index r0, Index r1) {
    for (Index r = r0; r < r1; ++r) {
      const T* xr = x + r * dim;  // [D]
      T* yr = y + r * dim;        // [D]
      double m = 0.0;
      for (Index j = 0; j < dim; ++j) m += xr[j];
      m /= static_cast<double>(dim);
      double v = 0.0;
      for (Index j = 0; j < dim; ++j) {
        const double d = xr[j] - m;
        v += d * d;
      }
      v /= static_cast<double>(dim);
      const T mu = static_cast<T>(m);
      const T rs = static_cast<T>(1.0 / std::sqrt(v + eps));
      mean[r] = mu;
      rstd[r] = rs;
      for (Index j = 0; j < dim; ++j) yr[j] = (xr[j] - mu) * rs * gamma[j] + beta[j];
    }
  });
}

template <class T>
void layernorm_backward(T* dx, T* dgamma, T* dbeta, const T* dy, const T* x, const T* mean, const T* rstd,
                        const T* gamma, Index rows, Index dim) {
  if (dx) {
    parallel_for(rows, grain_for(6 * dim), [&](Index r0, Index r1) {
      for (Index r = r0; r < r1; ++r) {
        const T* xr = x + r * dim;   // [D]
        const T* gr = dy + r * dim;  // [D]
        T* dxr = dx + r * dim;       // [D]
        const T mu = mean[r], rs = rstd[r];
        double g_mean = 0.0, gx_mean = 0.0;  // mean_j(g), mean_j(g · xhat)
        for (Index j = 0; j < dim; ++j) {
          const double g = static_cast<double>(gr[j]) * gamma[j];
          g_mean += g;
          gx_mean += g * ((xr[j] - mu) * rs);
        }
        g_mean /= static_cast<double>(dim);
        gx_mean /= static_cast<double>(dim);
        for (Index j = 0; j < dim; ++j) {
          const double g = static_cast<double>(gr[j]) * gamma[j];
          const double xhat = (xr[j] - mu) * rs;
          dxr[j] += static_cast<T>(rs * (g - g_mean - xhat * gx_mean));
        }
      }
    });
  }
  if (dgamma || dbeta) {
    constexpr Index kCols = 256;  // columns per chunk: their double accumulators live on the stack
    parallel_for(dim, kCols, [&](Index j0, Index j1) {
      double acc_gamma[kCols] = {}, acc_beta[kCols] = {};
      for (Index r = 0; r < rows; ++r) {
        const T* xr = x + r * dim;
        const T* gr = dy + r * dim;
        const T mu = mean[r], rs = rstd[r];
        for (Index j = j0; j < j1; ++j) {
          acc_gamma[j - j0] += static_cast<double>(gr[j]) * ((xr[j] - mu) * rs);
          acc_beta[j - j0] += gr[j];
        }
      }
      for (Index j = j0; j < j1; ++j) {
        if (dgamma) dgamma[j] += static_cast<T>(acc_gamma[j - j0]);
        if (dbeta) dbeta[j] += static_cast<T>(acc_beta[j - j0]);
      }
    });
  }
}

template <class T>
void layernorm_forward_naive(T* y, T* mean, T* rstd, const T* x, const T* gamma, const T* beta, Index rows,
                             Index dim, double eps) {
  for (Index r = 0; r < rows; ++r) {
    long double m = 0, v = 0;
    for (Index j = 0; j < dim; ++j) m += x[r * dim + j];
    m /= dim;
    for (Index j = 0; j < dim; ++j) v += (x[r * dim + j] - m) * (x[r * dim + j] - m);
    v /= dim;
    mean[r] = static_cast<T>(m);
    rstd[r] = static_cast<T>(1.0L / std::sqrt(v + eps));
    for (Index j = 0; j < dim; ++j)
      y[r * dim + j] = static_cast<T>((x[r * dim + j] - m) / std::sqrt(v + eps) * gamma[j] + beta[j]);
  }
}

}  // namespace stockmixer
