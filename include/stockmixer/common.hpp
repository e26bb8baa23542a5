// stockmixer/common.hpp — the index type, the shape legend, the error type and row-major Eigen maps
// that every layer shares.
//
// Shape legend used in every comment of the library:
//   N stocks (the batch), T lookback time, C features, S = T/2 scale length, H hidden width,
//   F = 2T + S fused time length, M market width, L a generic mixing length, B a generic batch.
#pragma once

#include <Eigen/Core>

#include <cstddef>
#include <stdexcept>
#include <string>

// STOCKMIXER_MULTIVERSION before a function compiles it three times with everything it calls
// inlined (flatten): for AVX-512, for AVX2 + FMA and for the baseline x86-64, and the dynamic loader
// picks the one the CPU runs (GCC's target_clones). The library stays header-only and runs on any
// x86-64, while its hot loops use the widest vectors the machine has. Elsewhere (another compiler or
// CPU family, or a build that already targets AVX-512, e.g. STOCKMIXER_NATIVE) it compiles once.
// Valgrind hides AVX-512 from the program, so under valgrind the AVX2 version runs.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(__AVX512F__) && \
    defined(__has_attribute)
#if __has_attribute(target_clones)
#define STOCKMIXER_MULTIVERSION \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default"), flatten))
#endif
#endif
#ifndef STOCKMIXER_MULTIVERSION
#if defined(__GNUC__)
#define STOCKMIXER_MULTIVERSION __attribute__((flatten))
#else
#define STOCKMIXER_MULTIVERSION
#endif
#endif

namespace stockmixer {

using Index = std::ptrdiff_t;

// Every error the library raises on bad input: the message names the tensor, file or line and what
// was expected.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Row-major dense matrix views over contiguous memory: the only way kernels see Eigen.
template <class T>
using RowMatrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using MatrixMap = Eigen::Map<RowMatrix<T>>;
template <class T>
using ConstMatrixMap = Eigen::Map<const RowMatrix<T>>;
template <class T>
using VectorMap = Eigen::Map<Eigen::Matrix<T, Eigen::Dynamic, 1>>;
template <class T>
using ConstVectorMap = Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, 1>>;

}  // namespace stockmixer
