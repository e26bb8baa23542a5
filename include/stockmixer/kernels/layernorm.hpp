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
// Row statistics and the dgamma/dbeta sums are accumulated in double for both float and double (row sums in
// eight lanes added in a fixed order, so they vectorise and do not depend on the thread count).
// Threads: y, dx by row chunks; dgamma, dbeta by column chunks (each column summed over all rows in
// row order, so the result does not depend on the thread count).
// Derivation: docs/math/layernorm.md · tests: tests/test_kernels_*.cpp · benchmark: benchmarks/bench_kernels.cpp
#pragma once

#include "stockmixer/common.hpp"
#include "stockmixer/cuda/pointwise.hpp"
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

// The per-row formulas, which the fused blocks' LayerNorms (model/) also use on their own layouts and
// vector types V (double, or GCC vectors of double or T: results are written through references, since
// a vector returned by value draws GCC's -Wpsabi note). They are defined in cuda/pointwise.hpp, the
// per-element math shared with the CUDA unit (__host__ __device__ under nvcc).
//   layernorm_moments(mean, var, sum, sum_sq, n): mean and biased variance of n values from one pass
//   of sums in double, Σx and Σx² (float input: 24-bit values in 53-bit sums), the variance clamped at 0
using pointwise::layernorm_moments;
//   layernorm_dx(dx, rstd, g, mean_g, xhat, mean_gx): one input gradient,
//   rstd · ((g - mean(g)) - x̂ · mean(g · x̂)), g = dy · gamma
using pointwise::layernorm_dx;

// ---- implementation --------------------------------------------------------------------------------

namespace detail {
// Row reductions in double with kLanes independent accumulators, added pairwise at the end: the
// compiler vectorises them without -ffast-math (a single running sum is one long dependency chain),
// and the order is fixed, so a row's result does not depend on the thread count.
constexpr Index kLanes = 8;

inline double add_lanes(const double* acc) {
  return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

// body(j, k) adds value j's terms into lane k, for j in [0, n): blocks of kLanes, then the tail.
template <class Body>
void for_lanes(Index n, Body&& body) {
  Index j = 0;
  for (; j + kLanes <= n; j += kLanes)
    for (Index k = 0; k < kLanes; ++k) body(j + k, k);
  for (; j < n; ++j) body(j, j % kLanes);
}

// Σ_j x[j]
template <class T>
double row_sum(const T* x, Index n) {
  double acc[kLanes] = {};
  for_lanes(n, [&](Index j, Index k) { acc[k] += static_cast<double>(x[j]); });
  return add_lanes(acc);
}

// Σ_j (x[j] - m)²
template <class T>
double row_sum_sq_dev(const T* x, Index n, double m) {
  double acc[kLanes] = {};
  for_lanes(n, [&](Index j, Index k) {
    const double d = static_cast<double>(x[j]) - m;
    acc[k] += d * d;
  });
  return add_lanes(acc);
}

// Σ_j g[j] and Σ_j g[j] · xhat[j] with g = dy · gamma, xhat = (x - mu) · rs (the LayerNorm backward's row sums)
template <class T>
void row_sums_g_gxhat(double& sum_g, double& sum_gx, const T* dy, const T* gamma, const T* x, T mu, T rs, Index n) {
  double ag[kLanes] = {}, agx[kLanes] = {};
  for_lanes(n, [&](Index j, Index k) {
    const double g = static_cast<double>(dy[j]) * gamma[j];
    ag[k] += g;
    agx[k] += g * ((x[j] - mu) * rs);
  });
  sum_g = add_lanes(ag);
  sum_gx = add_lanes(agx);
}
}  // namespace detail

template <class T>
void layernorm_forward(T* y, T* mean, T* rstd, const T* x, const T* gamma, const T* beta, Index rows, Index dim,
                       double eps) {
  parallel_for(rows, grain_for(4 * dim), [&](Index r0, Index r1) {
    for (Index r = r0; r < r1; ++r) {
      const T* xr = x + r * dim;  // [D]
      T* yr = y + r * dim;        // [D]
      const double m = detail::row_sum(xr, dim) / static_cast<double>(dim);
      const double v = detail::row_sum_sq_dev(xr, dim, m) / static_cast<double>(dim);
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
        double g_mean, gx_mean;  // mean_j(g), mean_j(g · xhat)
        detail::row_sums_g_gxhat(g_mean, gx_mean, gr, gamma, xr, mu, rs, dim);
        g_mean /= static_cast<double>(dim);
        gx_mean /= static_cast<double>(dim);
        for (Index j = 0; j < dim; ++j) {
          const double g = static_cast<double>(gr[j]) * gamma[j];
          const double xhat = (xr[j] - mu) * rs;
          double d;
          layernorm_dx(d, rs, g, g_mean, xhat, gx_mean);
          dxr[j] += static_cast<T>(d);
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
