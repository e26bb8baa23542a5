// stockmixer/kernels/conv1d.hpp — Conv1d(Ci, Co, kernel_size=K, stride=K), as torch.nn.Conv1d, on the
// channels-last layout [B, L, C] (features last).
//
//   shapes    x [B, L, Ci] (PyTorch's input is x.permute(0, 2, 1)), weight [Co, Ci, K] (PyTorch's
//             layout), bias [Co], y [B, Lo, Co] with Lo = floor((L - K) / K) + 1 = floor(L / K);
//             the last L - Lo·K steps are not read, as in PyTorch. Like every kernel it does not
//             validate sizes: L < K gives Lo = 0 and writes nothing (the autograd op rejects it).
//   forward   y[b,s,o] = bias[o] + Σ_j Σ_c weight[o,c,j] · x[b, s·K + j, c]
//   backward  dx[b, s·K + j, c] += Σ_o dy[b,s,o] · weight[o,c,j]
//             dweight[o,c,j]    += Σ_b Σ_s dy[b,s,o] · x[b, s·K + j, c]
//             dbias[o]          += Σ_b Σ_s dy[b,s,o]
//   saves     nothing: backward reads the forward input x.
//
// Because stride = kernel, windows do not overlap: for each tap j the convolution is one dense
// product Y += X_j · W_j^T, where X_j [Lo, Ci] takes every K-th row of x starting at row j and W_j
// [Co, Ci] is weight[:, :, j]; both are strided Eigen maps, nothing is copied.
// Threads: y, dx by batch chunks; dweight by tap j; dbias serially (Co values).
// Derivation: docs/math/conv1d.md · tests: tests/test_kernels_*.cpp · benchmark: benchmarks/bench_kernels.cpp
#pragma once

#include "stockmixer/common.hpp"
#include "stockmixer/parallel.hpp"

#include <type_traits>

namespace stockmixer {

// ---- interface -------------------------------------------------------------------------------------

inline Index conv1d_output_length(Index length, Index kernel) { return kernel > 0 ? length / kernel : 0; }

template <class T>
void conv1d_forward(T* y, const T* x, const T* weight, const T* bias, Index batch, Index length, Index cin,
                    Index cout, Index kernel);

// dx, dweight or dbias may be null to skip that gradient.
template <class T>
void conv1d_backward(T* dx, T* dweight, T* dbias, const T* dy, const T* x, const T* weight, Index batch,
                     Index length, Index cin, Index cout, Index kernel);

template <class T>
void conv1d_forward_naive(T* y, const T* x, const T* weight, const T* bias, Index batch, Index length, Index cin,
                          Index cout, Index kernel);

// ---- implementation --------------------------------------------------------------------------------

namespace detail {
using Strided = Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic>;
template <class T>
using ConstStridedMap = Eigen::Map<const RowMatrix<T>, Eigen::Unaligned, Strided>;
template <class T>
using StridedMap = Eigen::Map<RowMatrix<T>, Eigen::Unaligned, Strided>;

// X_j of sample b: rows s·K + j of x[b] ([Lo, Ci], row stride K·Ci).
template <class T, class Ptr>
auto conv1d_tap(Ptr x, Index b, Index j, Index length, Index cin, Index kernel) {
  using Map = std::conditional_t<std::is_const_v<std::remove_pointer_t<Ptr>>, ConstStridedMap<T>, StridedMap<T>>;
  return Map(x + b * length * cin + j * cin, length / kernel, cin, Strided(kernel * cin, 1));
}
// W_j = weight[:, :, j] ([Co, Ci], strides Ci·K and K).
template <class T>
ConstStridedMap<T> conv1d_weight_tap(const T* weight, Index j, Index cin, Index cout, Index kernel) {
  return ConstStridedMap<T>(weight + j, cout, cin, Strided(cin * kernel, kernel));
}
}  // namespace detail

template <class T>
void conv1d_forward(T* y, const T* x, const T* weight, const T* bias, Index batch, Index length, Index cin,
                    Index cout, Index kernel) {
  const Index lo = conv1d_output_length(length, kernel);
  parallel_for(batch, grain_for(lo * kernel * cin * cout), [&](Index b0, Index b1) {
    for (Index b = b0; b < b1; ++b) {
      MatrixMap<T> Y(y + b * lo * cout, lo, cout);  // [Lo, Co]
      if (bias) Y.rowwise() = ConstVectorMap<T>(bias, cout).transpose();
      else Y.setZero();
      for (Index j = 0; j < kernel; ++j)
        Y.noalias() += detail::conv1d_tap<T>(x, b, j, length, cin, kernel) *
                       detail::conv1d_weight_tap(weight, j, cin, cout, kernel).transpose();
    }
  });
}

template <class T>
void conv1d_backward(T* dx, T* dweight, T* dbias, const T* dy, const T* x, const T* weight, Index batch,
                     Index length, Index cin, Index cout, Index kernel) {
  const Index lo = conv1d_output_length(length, kernel);
  if (dx) {
    parallel_for(batch, grain_for(lo * kernel * cin * cout), [&](Index b0, Index b1) {
      for (Index b = b0; b < b1; ++b) {
        ConstMatrixMap<T> dY(dy + b * lo * cout, lo, cout);  // [Lo, Co]
        for (Index j = 0; j < kernel; ++j)
          detail::conv1d_tap<T>(dx, b, j, length, cin, kernel).noalias() +=
              dY * detail::conv1d_weight_tap(weight, j, cin, cout, kernel);
      }
    });
  }
  if (dweight) {
    parallel_for(kernel, 1, [&](Index j0, Index j1) {
      for (Index j = j0; j < j1; ++j) {
        detail::StridedMap<T> dW(dweight + j, cout, cin, detail::Strided(cin * kernel, kernel));  // [Co, Ci]
        for (Index b = 0; b < batch; ++b)
          dW.noalias() += ConstMatrixMap<T>(dy + b * lo * cout, lo, cout).transpose() *
                          detail::conv1d_tap<T>(x, b, j, length, cin, kernel);
      }
    });
  }
  if (dbias) {
    for (Index o = 0; o < cout; ++o) {
      double acc = 0.0;
      for (Index r = 0; r < batch * lo; ++r) acc += dy[r * cout + o];
      dbias[o] += static_cast<T>(acc);
    }
  }
}

template <class T>
void conv1d_forward_naive(T* y, const T* x, const T* weight, const T* bias, Index batch, Index length, Index cin,
                          Index cout, Index kernel) {
  const Index lo = conv1d_output_length(length, kernel);
  for (Index b = 0; b < batch; ++b)
    for (Index s = 0; s < lo; ++s)
      for (Index o = 0; o < cout; ++o) {
        T acc = bias ? bias[o] : T(0);
        for (Index c = 0; c < cin; ++c)
          for (Index j = 0; j < kernel; ++j)
            acc += weight[(o * cin + c) * kernel + j] * x[(b * length + s * kernel + j) * cin + c];
        y[(b * lo + s) * cout + o] = acc;
      }
}

}  // namespace stockmixer
