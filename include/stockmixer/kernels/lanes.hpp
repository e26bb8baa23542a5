// stockmixer/kernels/lanes.hpp — rows of kWidth values as one vector, for the fused kernels.
//
// A row of kWidth values is one GCC/Clang vector (Lanes<T>): arithmetic on it is elementwise, a scalar
// operand is broadcast, and the compiler emits the widest SIMD the target has (one AVX-512 register,
// two AVX2 or four SSE registers per row of floats). Its alignment is the element's, so rows need no
// particular alignment, and it may alias T. The fused kernels (per_stock.hpp, stock_head.hpp) run
// their loops on such vectors inside functions compiled per instruction set (STOCKMIXER_MULTIVERSION).
#pragma once

#include "stockmixer/common.hpp"

#include <cstdint>
#include <vector>

namespace stockmixer::detail::lanes {

constexpr int kWidth = 16;  // values per row: one AVX-512 register of floats

template <class T>
struct LaneType {
  typedef T type __attribute__((vector_size(kWidth * sizeof(T)), aligned(sizeof(T)), may_alias));
};
template <class T>
using Lanes = typename LaneType<T>::type;

// Eight doubles: one AVX-512 register (two AVX2 ones). The fused kernels' sums in double use it, and
// the stock head (stock_head.hpp) computes on it throughout.
typedef double Doubles8 __attribute__((vector_size(8 * sizeof(double)), aligned(sizeof(double)), may_alias));

// The memory at p as consecutive rows of kWidth values.
template <class T>
const Lanes<T>* rows(const T* p) {
  return reinterpret_cast<const Lanes<T>*>(p);
}
template <class T>
Lanes<T>* rows(T* p) {
  return reinterpret_cast<Lanes<T>*>(p);
}

// Helpers that take or give a vector are always inlined into the multiversioned workers, and pass
// vectors by reference: a vector returned by value draws GCC's -Wpsabi note in the baseline build.
#define STOCKMIXER_LANE_INLINE inline __attribute__((always_inline))

// A scratch buffer of at least `size` values of T for the calling thread, starting on a 64-byte
// boundary (a std::vector's data may sit 16 bytes off, and then every 64-byte row straddles two cache
// lines), grown to the largest size asked and then reused. Tag keeps different kernels' buffers apart.
template <class Tag, class T>
T* aligned_scratch(Index size) {
  static thread_local std::vector<T> buffer;
  constexpr Index kAlign = 64 / static_cast<Index>(sizeof(T));
  if (static_cast<Index>(buffer.size()) < size + kAlign) buffer.resize(static_cast<std::size_t>(size + kAlign));
  const auto address = reinterpret_cast<std::uintptr_t>(buffer.data());
  return buffer.data() + (kAlign - static_cast<Index>(address % 64) / static_cast<Index>(sizeof(T))) % kAlign;
}

}  // namespace stockmixer::detail::lanes
