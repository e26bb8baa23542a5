// stockmixer/kernels/hardswish.hpp — Hardswish, as torch.nn.Hardswish().
//
//   forward   y = x · min(max(x + 3, 0), 6) / 6
//   backward  dx += dy · h'(x),  h'(x) = 0 for x < -3,  x/3 + 1/2 for -3 <= x <= 3,  1 for x > 3
//   saves     nothing: backward reads the forward input x.
//
// The kinks take PyTorch's one-sided values: h'(-3) = -1/2 and h'(3) = 3/2, as PyTorch's scalar
// hardswish_backward (x < -3 -> 0, x <= 3 -> x/3 + 1/2, else 1) and its CUDA kernel define them.
// Caveat: PyTorch 1.13's vectorised CPU loop tests x >= 3 and returns 1 at exactly x = 3, so on the
// CPU PyTorch itself gives 1 or 3/2 there depending on the element's position; we follow the scalar
// definition everywhere.
// Elementwise on n values; threads by fixed chunks.
// Derivation: docs/math/hardswish.md · tests: tests/test_kernels_*.cpp · benchmark: benchmarks/bench_kernels.cpp
#pragma once

#include "stockmixer/common.hpp"
#include "stockmixer/cuda/pointwise.hpp"
#include "stockmixer/parallel.hpp"

namespace stockmixer {

// ---- interface -------------------------------------------------------------------------------------

template <class T>
void hardswish_forward(T* y, const T* x, Index n);
template <class T>
void hardswish_backward(T* dx, const T* dy, const T* x, Index n);

// One value (the fused stock head calls these in double): the per-element math the CUDA unit shares
// (cuda/pointwise.hpp).
template <class T>
T hardswish(T x) {
  return pointwise::hardswish(x);
}
template <class T>
T hardswish_grad(T x) {
  return pointwise::hardswish_grad(x);
}

// ---- implementation --------------------------------------------------------------------------------

template <class T>
void hardswish_forward(T* y, const T* x, Index n) {
  parallel_for(n, 16384, [&](Index i0, Index i1) {
    for (Index i = i0; i < i1; ++i) y[i] = hardswish(x[i]);
  });
}

template <class T>
void hardswish_backward(T* dx, const T* dy, const T* x, Index n) {
  parallel_for(n, 16384, [&](Index i0, Index i1) {
    for (Index i = i0; i < i1; ++i)
      if (!(x[i] < T(-3))) dx[i] += dy[i] * hardswish_grad(x[i]);  // h' = 0 below -3: nothing added
  });
}

}  // namespace stockmixer
