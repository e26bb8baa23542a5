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
#include <type_traits>
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

// Transposes the kWidth x kWidth block a in place (a[i][j] <-> a[j][i]) with 4 rounds of kWidth two-row
// shuffles: round by round, rows i and i + 8 are interleaved, their first halves into row 2i and their
// second halves into row 2i + 1. Seen on the element's 8-bit address (row bits, then column bits), a
// round rotates the address left by one bit; four rounds swap the row and column bits.
template <class T>
STOCKMIXER_LANE_INLINE void transpose(Lanes<T> (&a)[kWidth]) {
  static_assert(kWidth == 16, "four rounds transpose 16 x 16");
  typedef std::conditional_t<sizeof(T) == 4, std::int32_t, std::int64_t> I;
  typedef I Mask __attribute__((vector_size(kWidth * sizeof(I))));
  const Mask lo = {0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23};
  const Mask hi = {8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
  for (int round = 0; round < 4; ++round) {
    Lanes<T> b[kWidth];
    for (int i = 0; i < kWidth / 2; ++i) {
      b[2 * i] = __builtin_shuffle(a[i], a[i + kWidth / 2], lo);
      b[2 * i + 1] = __builtin_shuffle(a[i], a[i + kWidth / 2], hi);
    }
    for (int i = 0; i < kWidth; ++i) a[i] = b[i];
  }
}

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
