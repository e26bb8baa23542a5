// stockmixer/kernels/gelu.hpp — GELU, the exact erf form, as torch.nn.GELU() (approximate='none').
//
//   forward   y = x · Φ(x),  Φ(x) = (1 + erf(x / √2)) / 2
//   backward  dx += dy · (Φ(x) + x · φ(x)),  φ(x) = exp(-x² / 2) / √(2π)
//   saves     nothing: backward reads the forward input x.
//
// Elementwise on n values; threads by fixed chunks.
// Derivation: docs/math/gelu.md · tests: tests/test_kernels_*.cpp · benchmark: benchmarks/bench_kernels.cpp
#pragma once

#include "stockmixer/common.hpp"
#include "stockmixer/parallel.hpp"

#include <cmath>

namespace stockmixer {

// ---- interface -------------------------------------------------------------------------------------

template <class T>
void gelu_forward(T* y, const T* x, Index n);
template <class T>
void gelu_backward(T* dx, const T* dy, const T* x, Index n);

// ---- implementation --------------------------------------------------------------------------------

namespace detail {
constexpr double kSqrtHalf = 0.70710678118654752440;       // 1/√2
constexpr double kInvSqrt2Pi = 0.39894228040143267794;     // 1/√(2π)
}  // namespace detail

template <class T>
void gelu_forward(T* y, const T* x, Index n) {
  parallel_for(n, 8192, [&](Index i0, Index i1) {
    for (Index i = i0; i < i1; ++i)
      y[i] = x[i] * T(0.5) * (T(1) + std::erf(x[i] * static_cast<T>(detail::kSqrtHalf)));
  });
}

template <class T>
void gelu_backward(T* dx, const T* dy, const T* x, Index n) {
  parallel_for(n, 8192, [&](Index i0, Index i1) {
    for (Index i = i0; i < i1; ++i) {
      const T cdf = T(0.5) * (T(1) + std::erf(x[i] * static_cast<T>(detail::kSqrtHalf)));
      const T pdf = std::exp(T(-0.5) * x[i] * x[i]) * static_cast<T>(detail::kInvSqrt2Pi);
      dx[i] += dy[i] * (cdf + x[i] * pdf);
    }
  });
}

}  // namespace stockmixer
