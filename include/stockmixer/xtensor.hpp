// stockmixer/xtensor.hpp — zero-copy interop with xtensor, where users meet the library.
//
//   auto xs = stockmixer::to_xtensor(t);         // xtensor adaptor over t's memory (no copy)
//   auto tm = stockmixer::map_xtensor(xarr);     // TensorMap over an xtensor container (no copy)
//   auto t2 = stockmixer::from_xtensor<float>(e); // evaluate any xtensor expression into a Tensor
//   model.predict(stockmixer::as_tensor_map(e, buffer));  // in place where it can be, else into buffer
#pragma once

#include "stockmixer/tensor.hpp"

#include <xtensor/xadapt.hpp>
#include <xtensor/xarray.hpp>
#include <xtensor/xeval.hpp>

#include <algorithm>
#include <cstddef>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace stockmixer {

// ---- interface -------------------------------------------------------------------------------------

template <class T>
auto to_xtensor(TensorMap<T> t);
template <class T>
auto to_xtensor(Tensor<T>& t) { return to_xtensor(t.map()); }
template <class T>
auto to_xtensor(const Tensor<T>& t) { return to_xtensor(t.map()); }

// A view of an xtensor container's memory. Throws unless it is row-major contiguous of rank <= 4.
template <class E>
auto map_xtensor(E& container, std::string_view name = "xtensor argument");

// Copies (evaluates) any xtensor expression of rank <= 4 into a new Tensor<T>.
template <class T, class E>
Tensor<T> from_xtensor(const xt::xexpression<E>& expr);

// Evaluates an xtensor expression into `dst`, resized to its shape (no allocation when it fits).
template <class T, class E>
void assign_xtensor(Tensor<T>& dst, const xt::xexpression<E>& expr);

// An xtensor expression as a read-only TensorMap<const T>: a row-major container of T is viewed in
// place; any other expression is evaluated into `buffer` (the caller keeps it, so that repeated calls
// allocate nothing).
template <class T, class E>
TensorMap<const T> as_tensor_map(const xt::xexpression<E>& expr, Tensor<T>& buffer);

// ---- implementation --------------------------------------------------------------------------------

template <class T>
auto to_xtensor(TensorMap<T> t) {
  std::vector<std::size_t> shape(static_cast<std::size_t>(t.rank()));
  for (int a = 0; a < t.rank(); ++a) shape[static_cast<std::size_t>(a)] = static_cast<std::size_t>(t.dim(a));
  return xt::adapt(t.data(), static_cast<std::size_t>(t.size()), xt::no_ownership(), shape);
}

template <class E>
auto map_xtensor(E& container, std::string_view name) {
  using V = std::remove_reference_t<decltype(*container.data())>;
  if (container.dimension() > static_cast<std::size_t>(Shape::kMaxRank))
    throw Error(std::string(name) + ": rank " + std::to_string(container.dimension()) + " is above 4");
  if (container.layout() != xt::layout_type::row_major)
    throw Error(std::string(name) + ": expected a row-major xtensor container");
  const Shape shape(container.shape().begin(), container.shape().end());
  if (static_cast<Index>(container.size()) != shape.size())
    throw Error(std::string(name) + ": not contiguous");
  return TensorMap<V>(container.data(), shape);
}

template <class T, class E>
Tensor<T> from_xtensor(const xt::xexpression<E>& expr) {
  const auto& e = expr.derived_cast();
  if (e.dimension() > static_cast<std::size_t>(Shape::kMaxRank))
    throw Error("stockmixer::from_xtensor: rank " + std::to_string(e.dimension()) + " is above 4");
  Tensor<T> out(Shape(e.shape().begin(), e.shape().end()));
  assign_xtensor(out, expr);
  return out;
}

template <class T, class E>
void assign_xtensor(Tensor<T>& dst, const xt::xexpression<E>& expr) {
  const auto& e = expr.derived_cast();
  if (e.dimension() > static_cast<std::size_t>(Shape::kMaxRank))
    throw Error("stockmixer::assign_xtensor: rank " + std::to_string(e.dimension()) + " is above 4");
  dst.resize(Shape(e.shape().begin(), e.shape().end()));
  // Row-major traversal of the expression, straight into our storage.
  std::transform(e.cbegin(), e.cend(), dst.data(), [](const auto& v) { return static_cast<T>(v); });
}

template <class T, class E>
TensorMap<const T> as_tensor_map(const xt::xexpression<E>& expr, Tensor<T>& buffer) {
  const auto& e = expr.derived_cast();
  if constexpr (xt::has_data_interface<E>::value && std::is_same_v<typename E::value_type, T>) {
    if (e.layout() == xt::layout_type::row_major) return map_xtensor(e, "stockmixer::as_tensor_map");
  }
  assign_xtensor(buffer, expr);
  return buffer.map();
}

}  // namespace stockmixer
