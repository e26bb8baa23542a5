// stockmixer/tensor.hpp — Shape, Tensor<T> (owning) and TensorMap<T> (non-owning view).
//
// A tensor is contiguous row-major memory of rank 0..4 and its shape; nothing more. Kernels take raw
// pointers and sizes; tensors hand them out (`data()`) and offer row-major Eigen maps (`matrix()`).
// There are no expression templates here: Eigen and xtensor already have them
// (see stockmixer/xtensor.hpp for zero-copy interop).
#pragma once

#include "stockmixer/common.hpp"

#include <Eigen/Core>

#include <algorithm>
#include <array>
#include <cmath>
#include <initializer_list>
#include <string>
#include <type_traits>
#include <vector>

namespace stockmixer {

// ---- interface -------------------------------------------------------------------------------------

class Shape {
 public:
  static constexpr int kMaxRank = 4;

  Shape() = default;  // rank 0: a scalar of size 1
  Shape(std::initializer_list<Index> dims) : Shape(dims.begin(), dims.end()) {}
  template <class It>
  Shape(It first, It last);

  int rank() const { return rank_; }
  Index operator[](int axis) const { return dims_[static_cast<std::size_t>(axis)]; }
  Index size() const {  // product of the dims (1 for rank 0); construction checks that it fits in Index
    Index n = 1;
    for (int a = 0; a < rank_; ++a) n *= dims_[static_cast<std::size_t>(a)];
    return n;
  }
  Index stride(int axis) const {  // row-major stride of `axis`, in elements
    Index s = 1;
    for (int a = rank_ - 1; a > axis; --a) s *= dims_[static_cast<std::size_t>(a)];
    return s;
  }
  Index last() const { return rank_ == 0 ? 1 : dims_[static_cast<std::size_t>(rank_ - 1)]; }
  std::string str() const {  // "[1026, 16, 5]"
    std::string s = "[";
    for (int a = 0; a < rank_; ++a) s += (a ? ", " : "") + std::to_string(dims_[static_cast<std::size_t>(a)]);
    return s + "]";
  }

  friend bool operator==(const Shape& a, const Shape& b) {
    return a.rank_ == b.rank_ && std::equal(a.dims_.begin(), a.dims_.begin() + a.rank_, b.dims_.begin());
  }
  friend bool operator!=(const Shape& a, const Shape& b) { return !(a == b); }

 private:
  std::array<Index, kMaxRank> dims_{};
  int rank_ = 0;
};

// Non-owning view of contiguous row-major memory. T may be const.
template <class T>
class TensorMap {
 public:
  using value_type = std::remove_const_t<T>;
  using Matrix = Eigen::Map<std::conditional_t<std::is_const_v<T>, const RowMatrix<value_type>, RowMatrix<value_type>>>;

  TensorMap() = default;
  TensorMap(T* data, Shape shape) : data_(data), shape_(shape) {}
  // A mutable view converts to a read-only one.
  template <class U, class = std::enable_if_t<std::is_same_v<const U, T> && !std::is_same_v<U, T>>>
  TensorMap(const TensorMap<U>& other) : data_(other.data()), shape_(other.shape()) {}

  T* data() const { return data_; }
  const Shape& shape() const { return shape_; }
  int rank() const { return shape_.rank(); }
  Index dim(int axis) const { return shape_[axis]; }
  Index size() const { return shape_.size(); }

  // Element access by up to four indices (unchecked, like Eigen's operator()).
  template <class... I>
  T& operator()(I... idx) const { return data_[offset(shape_, idx...)]; }

  // [size / last, last] row-major Eigen map, or [rows, cols] after a checked reshape.
  Matrix matrix() const { return {data_, shape_.size() / std::max<Index>(shape_.last(), 1), shape_.last()}; }
  Matrix matrix(Index rows, Index cols) const;

  template <class... I>
  static Index offset(const Shape& s, I... idx);

 private:
  T* data_ = nullptr;
  Shape shape_;
};

// Owning tensor: 64-byte aligned storage, zero-initialised. `resize` keeps the allocation when the
// new size fits, so a module that resizes its buffers to the same shape every call never allocates.
template <class T>
class Tensor {
  static_assert(std::is_floating_point_v<T>, "Tensor<T> holds float or double");

 public:
  using value_type = T;

  Tensor() = default;
  explicit Tensor(Shape shape) : shape_(shape), storage_(static_cast<std::size_t>(shape.size()), T(0)) {}
  Tensor(Shape shape, std::initializer_list<T> values);

  T* data() { return storage_.data(); }
  const T* data() const { return storage_.data(); }
  const Shape& shape() const { return shape_; }
  int rank() const { return shape_.rank(); }
  Index dim(int axis) const { return shape_[axis]; }
  Index size() const { return shape_.size(); }

  template <class... I>
  T& operator()(I... idx) { return storage_[static_cast<std::size_t>(TensorMap<T>::offset(shape_, idx...))]; }
  template <class... I>
  const T& operator()(I... idx) const {
    return storage_[static_cast<std::size_t>(TensorMap<T>::offset(shape_, idx...))];
  }

  void resize(Shape shape) {  // contents unspecified after a size change; no allocation if it fits
    shape_ = shape;
    storage_.resize(static_cast<std::size_t>(shape.size()));
  }
  void fill(T value) { std::fill(storage_.begin(), storage_.end(), value); }
  void zero() { fill(T(0)); }

  TensorMap<T> map() { return {data(), shape_}; }
  TensorMap<const T> map() const { return {data(), shape_}; }
  operator TensorMap<T>() { return map(); }
  operator TensorMap<const T>() const { return map(); }

  MatrixMap<T> matrix() { return map().matrix(); }
  ConstMatrixMap<T> matrix() const { return map().matrix(); }
  MatrixMap<T> matrix(Index rows, Index cols) { return map().matrix(rows, cols); }
  ConstMatrixMap<T> matrix(Index rows, Index cols) const { return map().matrix(rows, cols); }

 private:
  Shape shape_;
  std::vector<T, Eigen::aligned_allocator<T>> storage_;
};

// ---- implementation --------------------------------------------------------------------------------

template <class It>
Shape::Shape(It first, It last) {
  Index nonzero = 1;  // the product of the nonzero dims so far: it must fit in Index
  for (; first != last; ++first) {
    if (rank_ == kMaxRank) throw Error("stockmixer::Shape: rank above 4 is not supported");
    const auto d = static_cast<Index>(*first);
    if (d < 0) throw Error("stockmixer::Shape: negative dimension " + std::to_string(d));
    dims_[static_cast<std::size_t>(rank_++)] = d;
    if (d > 0 && __builtin_mul_overflow(nonzero, d, &nonzero))
      throw Error("stockmixer::Shape: the product of the dimensions " + str() +
                  " overflows Index (more than 2^63 - 1 elements)");
  }
}

template <class T>
template <class... I>
Index TensorMap<T>::offset(const Shape& s, I... idx) {
  static_assert(sizeof...(I) <= Shape::kMaxRank, "at most four indices");
  const std::array<Index, sizeof...(I)> ix{static_cast<Index>(idx)...};
  Index off = 0;
  for (std::size_t a = 0; a < ix.size(); ++a) off = off * s[static_cast<int>(a)] + ix[a];
  return off;
}

template <class T>
typename TensorMap<T>::Matrix TensorMap<T>::matrix(Index rows, Index cols) const {
  if (rows * cols != shape_.size())
    throw Error("stockmixer::TensorMap::matrix: cannot view a tensor of shape " + shape_.str() + " as [" +
                std::to_string(rows) + ", " + std::to_string(cols) + "]");
  return {data_, rows, cols};
}

template <class T>
Tensor<T>::Tensor(Shape shape, std::initializer_list<T> values) : Tensor(shape) {
  if (static_cast<Index>(values.size()) != shape.size())
    throw Error("stockmixer::Tensor: " + std::to_string(values.size()) + " values given for shape " +
                shape.str() + " (" + std::to_string(shape.size()) + " expected)");
  std::copy(values.begin(), values.end(), storage_.begin());
}

// How many of values[0, n) are NaN or ±Inf (outputs a caller refuses to hand on).
template <class T>
Index count_nonfinite(const T* values, Index n) {
  Index bad = 0;
  for (Index i = 0; i < n; ++i) bad += std::isfinite(static_cast<double>(values[i])) ? 0 : 1;
  return bad;
}

}  // namespace stockmixer
