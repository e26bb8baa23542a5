// stockmixer/lanes.hpp — rows of N values as one vector, for the fused blocks.
//
// A row of N values is one GCC/Clang vector (Lanes<T, N>): arithmetic on it is elementwise, a scalar
// operand is broadcast, and the compiler emits the SIMD instructions of the target. Its alignment is
// the element's, so rows need no particular alignment, and it may alias T. The fused blocks
// (model/per_stock.hpp, model/stock_head.hpp) run their loops on such vectors inside functions compiled
// per instruction set (run_versioned, isa.hpp), with N chosen so that a row is one register of that set:
// GCC keeps a vector wider than the target's registers in memory, and every operation on it then
// loads and stores.
#pragma once

#include "stockmixer/common.hpp"

#include <cstdint>
#include <type_traits>
#include <utility>

namespace stockmixer::lanes {

// N values of T as one vector (N · sizeof(T) bytes). N has no default: it must come from the
// version being compiled (run_versioned's width), never be assumed.
template <class T, int N>
struct LaneType {
  typedef T type __attribute__((vector_size(N * sizeof(T)), aligned(sizeof(T)), may_alias));
};
template <class T, int N>
using Lanes = typename LaneType<T, N>::type;

#if defined(__clang__)
// Clang keeps a typedef's aligned() as sugar only: a template argument deduced from a Lanes value, or
// given as Lanes<T, N>, is the plain vector type, aligned to its size, so a row of memory passed by
// reference to such a parameter (layernorm.hpp's per-value formulas) would be read and written with
// aligned vector loads and stores (-Walign-mismatch). Those calls take Reg values instead: the same
// N values as the plain vector type, which a functional cast Reg<T, N>(row) loads at any alignment.
template <class T, int N>
struct RegType {
  typedef T type __attribute__((vector_size(N * sizeof(T))));
};
template <class T, int N>
using Reg = typename RegType<T, N>::type;
#endif

// The memory at p as consecutive rows of N values.
template <int N, class T>
const Lanes<T, N>* rows(const T* p) {
  return reinterpret_cast<const Lanes<T, N>*>(p);
}
template <int N, class T>
Lanes<T, N>* rows(T* p) {
  return reinterpret_cast<Lanes<T, N>*>(p);
}

// Helpers that take or give a vector are always inlined into the versioned workers, and pass
// vectors by reference: a vector returned by value draws GCC's -Wpsabi note in the baseline build.
#define STOCKMIXER_LANE_INLINE inline __attribute__((always_inline))

#if defined(__clang__)
// One shuffle pair of transpose's rounds with Clang's __builtin_shufflevector (GCC's __builtin_shuffle
// takes a mask vector; Clang's builtin takes constant indices, K... = 0 .. N-1): lane K of lo is lane
// K/2 of x (K even) or of y (K odd); hi the same from the second halves, lanes N/2 + K/2.
template <class T, int N, int... K>
STOCKMIXER_LANE_INLINE void transpose_round(Lanes<T, N>& lo, Lanes<T, N>& hi, const Lanes<T, N>& x,
                                            const Lanes<T, N>& y, std::integer_sequence<int, K...>) {
  lo = __builtin_shufflevector(x, y, (K % 2 == 0 ? K / 2 : N + K / 2)...);
  hi = __builtin_shufflevector(x, y, (K % 2 == 0 ? N / 2 + K / 2 : N + N / 2 + K / 2)...);
}
#endif

// Transposes the N x N block a in place (a[i][j] <-> a[j][i]) with log2(N) rounds of N two-row
// shuffles: round by round, rows i and i + N/2 are interleaved, their first halves into row 2i and
// their second halves into row 2i + 1. Seen on the element's address (row bits, then column bits), a
// round rotates the address left by one bit; log2(N) rounds swap the row and column bits. (N = 16:
// 64 vpermt2ps.)
template <class T, int N>
STOCKMIXER_LANE_INLINE void transpose(Lanes<T, N> (&a)[N]) {
  static_assert(N >= 2 && (N & (N - 1)) == 0, "N x N blocks, N a power of two");
#if defined(__clang__)
  for (int round = 1; round < N; round *= 2) {
    Lanes<T, N> b[N];
    for (int i = 0; i < N / 2; ++i)
      transpose_round<T, N>(b[2 * i], b[2 * i + 1], a[i], a[i + N / 2], std::make_integer_sequence<int, N>{});
    for (int i = 0; i < N; ++i) a[i] = b[i];
  }
#else
  typedef std::conditional_t<sizeof(T) == 4, std::int32_t, std::int64_t> I;
  typedef I Mask __attribute__((vector_size(N * sizeof(I))));
  Mask lo, hi;
  for (int m = 0; m < N / 2; ++m) {
    lo[2 * m] = m, lo[2 * m + 1] = N + m;
    hi[2 * m] = N / 2 + m, hi[2 * m + 1] = N + N / 2 + m;
  }
  for (int round = 1; round < N; round *= 2) {
    Lanes<T, N> b[N];
    for (int i = 0; i < N / 2; ++i) {
      b[2 * i] = __builtin_shuffle(a[i], a[i + N / 2], lo);
      b[2 * i + 1] = __builtin_shuffle(a[i], a[i + N / 2], hi);
    }
    for (int i = 0; i < N; ++i) a[i] = b[i];
  }
#endif
}

}  // namespace stockmixer::lanes
