// stockmixer/common.hpp — the index type, the shape legend, the error type and row-major Eigen maps
// that every layer shares.
//
// Shape legend used in every comment of the library:
//   N stocks (the batch), T lookback time, C features, S = T/2 scale length, H hidden width,
//   F = 2T + S fused time length, M market width, L a generic mixing length, B a generic batch.
#pragma once

#include "stockmixer/error.hpp"

#include <Eigen/Core>

#include <cstddef>
#include <stdexcept>
#include <string>

namespace stockmixer {

using Index = std::ptrdiff_t;

// Row-major dense matrix views over contiguous memory: the only way kernels see Eigen.
template <class T>
using RowMatrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using MatrixMap = Eigen::Map<RowMatrix<T>>;
template <class T>
using ConstMatrixMap = Eigen::Map<const RowMatrix<T>>;
template <class T>
using ConstVectorMap = Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, 1>>;

}  // namespace stockmixer
