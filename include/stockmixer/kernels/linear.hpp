// stockmixer/kernels/linear.hpp — Linear(in, out) on the last axis, as torch.nn.Linear.
//
//   forward   y[R, O]  = x[R, I] · W[O, I]^T + b[O]
//   backward  dx[R, I] += dy[R, O] · W[O, I]
//             dW[O, I] += dy[R, O]^T · x[R, I]
//             db[O]    += Σ_r dy[r, O]
//   saves     nothing: backward reads the forward input x.
//
// R is every leading axis flattened: N·T and N·S in the channel mixers, N·F for channel_fc, N for
// time_fc, F in the stock mixer. W is stored
// [out, in] as in PyTorch. Threads: y and dx by row chunks, dW and db by output-feature chunks.
// in = 5 with out = 5 or 1 (the channel mixers and channel_fc at C = 5) take a fixed-size path (below).
// Derivation: docs/math/linear.md · tests: tests/test_kernels_*.cpp · benchmark: benchmarks/bench_kernels.cpp
#pragma once

#include "stockmixer/common.hpp"
#include "stockmixer/parallel.hpp"

namespace stockmixer {

// ---- interface -------------------------------------------------------------------------------------

template <class T>
void linear_forward(T* y, const T* x, const T* weight, const T* bias, Index rows, Index in, Index out);

// dx, dweight or dbias may be null to skip that gradient.
template <class T>
void linear_backward(T* dx, T* dweight, T* dbias, const T* dy, const T* x, const T* weight, Index rows,
                     Index in, Index out);

// Plain triple loops: the reference the fast versions are tested and benchmarked against.
template <class T>
void linear_forward_naive(T* y, const T* x, const T* weight, const T* bias, Index rows, Index in, Index out);
template <class T>
void linear_backward_naive(T* dx, T* dweight, T* dbias, const T* dy, const T* x, const T* weight, Index rows,
                           Index in, Index out);

// ---- implementation --------------------------------------------------------------------------------

namespace detail {
// Fixed-size path for the narrowest Linears, C -> C and C -> 1 at C = 5 (the model's channel mixers
// and channel_fc, run on N·T, N·S and N·F rows): a GEMM with inner size 5 spends its time packing,
// and a row with I and O known at compile time is a few unrolled multiply-adds. dW sums over the rows in
// double (16416 terms), in row order per output row; threads own output rows, as in the general path.
template <int I, int O, class T>
void linear_forward_fixed(T* y, const T* x, const T* weight, const T* bias, Index rows) {
  using W = Eigen::Matrix<T, O, I, Eigen::RowMajor>;
  const W w = Eigen::Map<const W>(weight);
  Eigen::Matrix<T, O, 1> b = Eigen::Matrix<T, O, 1>::Zero();
  if (bias) b = Eigen::Map<const Eigen::Matrix<T, O, 1>>(bias);
  parallel_for(rows, grain_for(I * O), [&](Index r0, Index r1) {
    for (Index r = r0; r < r1; ++r)
      Eigen::Map<Eigen::Matrix<T, O, 1>>(y + r * O).noalias() = w * Eigen::Map<const Eigen::Matrix<T, I, 1>>(x + r * I) + b;
  });
}

template <int I, int O, class T>
void linear_backward_fixed(T* dx, T* dweight, T* dbias, const T* dy, const T* x, const T* weight, Index rows) {
  using W = Eigen::Matrix<T, O, I, Eigen::RowMajor>;
  if (dx) {
    const W w = Eigen::Map<const W>(weight);
    parallel_for(rows, grain_for(I * O), [&](Index r0, Index r1) {
      for (Index r = r0; r < r1; ++r)
        Eigen::Map<Eigen::Matrix<T, I, 1>>(dx + r * I).noalias() +=
            w.transpose() * Eigen::Map<const Eigen::Matrix<T, O, 1>>(dy + r * O);
    });
  }
  if (dweight || dbias) {
    parallel_for(O, 1, [&](Index o0, Index o1) {
      for (Index o = o0; o < o1; ++o) {
        Eigen::Matrix<double, I, 1> gw = Eigen::Matrix<double, I, 1>::Zero();
        double gb = 0.0;
        for (Index r = 0; r < rows; ++r) {
          const double g = dy[r * O + o];
          gw += g * Eigen::Map<const Eigen::Matrix<T, I, 1>>(x + r * I).template cast<double>();
          gb += g;
        }
        if (dweight) Eigen::Map<Eigen::Matrix<T, I, 1>>(dweight + o * I) += gw.template cast<T>();
        if (dbias) dbias[o] += static_cast<T>(gb);
      }
    });
  }
}
}  // namespace detail

template <class T>
void linear_forward(T* y, const T* x, const T* weight, const T* bias, Index rows, Index in, Index out) {
  if (in == 5 && out == 5) return detail::linear_forward_fixed<5, 5>(y, x, weight, bias, rows);
  if (in == 5 && out == 1) return detail::linear_forward_fixed<5, 1>(y, x, weight, bias, rows);
  ConstMatrixMap<T> X(x, rows, in);        // [R, I]
  ConstMatrixMap<T> W(weight, out, in);    // [O, I]
  MatrixMap<T> Y(y, rows, out);            // [R, O]
  parallel_for(rows, grain_for(in * out), [&](Index r0, Index r1) {
    auto Yb = Y.middleRows(r0, r1 - r0);
    Yb.noalias() = X.middleRows(r0, r1 - r0) * W.transpose();
    if (bias) Yb.rowwise() += ConstVectorMap<T>(bias, out).transpose();
  });
}

template <class T>
void linear_backward(T* dx, T* dweight, T* dbias, const T* dy, const T* x, const T* weight, Index rows,
                     Index in, Index out) {
  if (in == 5 && out == 5) return detail::linear_backward_fixed<5, 5>(dx, dweight, dbias, dy, x, weight, rows);
  if (in == 5 && out == 1) return detail::linear_backward_fixed<5, 1>(dx, dweight, dbias, dy, x, weight, rows);
  ConstMatrixMap<T> dY(dy, rows, out);     // [R, O]
  ConstMatrixMap<T> X(x, rows, in);        // [R, I]
  ConstMatrixMap<T> W(weight, out, in);    // [O, I]
  if (dx) {
    MatrixMap<T> dX(dx, rows, in);         // [R, I]
    parallel_for(rows, grain_for(in * out), [&](Index r0, Index r1) {
      dX.middleRows(r0, r1 - r0).noalias() += dY.middleRows(r0, r1 - r0) * W;
    });
  }
  if (dweight || dbias) {
    parallel_for(out, grain_for(rows * in), [&](Index o0, Index o1) {
      if (dweight) {
        MatrixMap<T> dW(dweight, out, in);  // [O, I]
        dW.middleRows(o0, o1 - o0).noalias() += dY.middleCols(o0, o1 - o0).transpose() * X;
      }
      if (dbias) {
        for (Index o = o0; o < o1; ++o) {
          double acc = 0.0;  // R can be N·T = 16416 terms: sum in double
          for (Index r = 0; r < rows; ++r) acc += dY(r, o);
          dbias[o] += static_cast<T>(acc);
        }
      }
    });
  }
}

template <class T>
void linear_forward_naive(T* y, const T* x, const T* weight, const T* bias, Index rows, Index in, Index out) {
  for (Index r = 0; r < rows; ++r)
    for (Index o = 0; o < out; ++o) {
      T acc = bias ? bias[o] : T(0);
      for (Index i = 0; i < in; ++i) acc += x[r * in + i] * weight[o * in + i];
      y[r * out + o] = acc;
    }
}

template <class T>
void linear_backward_naive(T* dx, T* dweight, T* dbias, const T* dy, const T* x, const T* weight, Index rows,
                           Index in, Index out) {
  for (Index r = 0; r < rows; ++r)
    for (Index o = 0; o < out; ++o) {
      const T g = dy[r * out + o];
      if (dbias) dbias[o] += g;
      for (Index i = 0; i < in; ++i) {
        if (dx) dx[r * in + i] += g * weight[o * in + i];
        if (dweight) dweight[o * in + i] += g * x[r * in + i];
      }
    }
}

}  // namespace stockmixer
