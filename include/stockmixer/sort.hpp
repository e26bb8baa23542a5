// stockmixer/sort.hpp — (value, index) keys sorted into the one order a comparison sort gives them.
//
// The rank loss's sorted form (kernels/rank_loss.hpp) and Spearman's average ranks
// (metrics/evaluate.hpp) both sort values with their indices. Sorted by (value, index), a total
// order, the result does not depend on the algorithm, so small inputs take std::sort and larger ones
// a radix sort, which has no data-dependent branches to mispredict.
// Tests: tests/test_rank_loss_sorted.cpp ("the radix sort gives the (value, index) order ...").
#pragma once

#include "stockmixer/common.hpp"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <utility>

namespace stockmixer {

struct SortKey {
  double value;
  Index index;
};

namespace detail {

// Sorts keys[0, m) by (value, index), given keys in increasing index order and no NaN: an LSD radix
// sort on the value's bits, 8 bits a pass. Each pass is stable, so equal values keep index order: the
// result is the unique (value, index) order a comparison sort gives, in O(m) a pass. A pass whose
// byte is the same in every key is skipped (a float widened to double leaves 29 low bits zero: five
// passes, not eight). tmp: m keys of scratch. The keys are permuted, never changed.
//
// Each value is replaced in place by its order-preserving unsigned image for the passes (computed
// once, without branches: a branch on the sign mispredicts on returns of either sign) and restored at
// the end. -0 takes +0's image, since the two are equal and must keep index order between them; a flag
// in the index's top bit remembers which were -0.
inline void radix_sort_keys(SortKey* keys, SortKey* tmp, Index m) {
  constexpr std::uint64_t kSign = std::uint64_t(1) << 63;
  constexpr Index kNegativeZero = Index(1) << 62;  // indices are far below 2^62
  Index count[8][256] = {};
  for (Index k = 0; k < m; ++k) {
    std::uint64_t u;
    std::memcpy(&u, &keys[k].value, sizeof u);
    if (u == kSign) keys[k].index |= kNegativeZero;
    const double v = keys[k].value + 0.0;  // -0 + 0 = +0; every other value unchanged
    std::memcpy(&u, &v, sizeof u);
    u ^= (std::uint64_t(0) - (u >> 63)) | kSign;  // negatives: every bit flipped; the rest: sign bit set
    std::memcpy(&keys[k].value, &u, sizeof u);
    for (int b = 0; b < 8; ++b) ++count[b][(u >> (8 * b)) & 255];
  }
  const auto image = [](const SortKey& key) {
    std::uint64_t u;
    std::memcpy(&u, &key.value, sizeof u);
    return u;
  };
  SortKey *src = keys, *dst = tmp;
  for (int b = 0; b < 8; ++b) {
    Index* c = count[b];
    if (m == 0 || c[(image(src[0]) >> (8 * b)) & 255] == m) continue;  // one bucket: nothing moves
    Index offset = 0;
    for (int d = 0; d < 256; ++d) {
      const Index n = c[d];
      c[d] = offset;
      offset += n;
    }
    for (Index k = 0; k < m; ++k) dst[c[(image(src[k]) >> (8 * b)) & 255]++] = src[k];
    std::swap(src, dst);
  }
  for (Index k = 0; k < m; ++k) {  // the values back, into keys
    std::uint64_t u = image(src[k]);
    u ^= ((u >> 63) - 1) | kSign;  // the inverse: sign bit set -> cleared; clear -> every bit flipped
    Index index = src[k].index;
    if (index & kNegativeZero) {
      u = kSign;
      index &= ~kNegativeZero;
    }
    std::memcpy(&keys[k].value, &u, sizeof u);
    keys[k].index = index;
  }
}

// Sorts keys[0, m) (in increasing index order, no NaN) by (value, index): a total order, so the
// result does not depend on the algorithm. std::sort below kRadixMin keys (the crossover with a new
// input every call, as in training), the radix sort from there.
constexpr Index kRadixMin = 160;
inline void sort_keys(SortKey* keys, SortKey* tmp, Index m) {
  if (m >= kRadixMin) return radix_sort_keys(keys, tmp, m);
  std::sort(keys, keys + m, [](const SortKey& a, const SortKey& b) {
    return a.value < b.value || (a.value == b.value && a.index < b.index);
  });
}

}  // namespace detail
}  // namespace stockmixer
