// stockmixer/kernels/dropout.hpp — inverted dropout, as torch.nn.functional.dropout(x, p, training=True).
//
//   mask      keep[i] ~ Bernoulli(1 - p);  mask[i] = keep[i] / (1 - p)   (0 everywhere when p = 1)
//   forward   y = x · mask
//   backward  dx += dy · mask
//   saves     the scaled mask (one value per element), written by dropout_mask before forward.
//
// The mask comes from a counter-based generator: element i's draw depends only on (seed, i), so a
// seed gives the same mask on any thread count and in any order. It is not PyTorch's RNG stream;
// tests feed PyTorch's own mask to compare values and gradients.
// Derivation: docs/math/dropout.md · tests: tests/test_kernels_*.cpp · benchmark: benchmarks/bench_kernels.cpp
#pragma once

#include "stockmixer/common.hpp"
#include "stockmixer/parallel.hpp"

#include <cstdint>
#include <string>

namespace stockmixer {

// ---- interface -------------------------------------------------------------------------------------

// Fills mask[0..n) with 0 or 1/(1-p). Throws stockmixer::Error unless 0 <= p <= 1.
template <class T>
void dropout_mask(T* mask, Index n, double p, std::uint64_t seed);
template <class T>
void dropout_forward(T* y, const T* x, const T* mask, Index n);
template <class T>
void dropout_backward(T* dx, const T* dy, const T* mask, Index n);

// ---- implementation --------------------------------------------------------------------------------

// The uniform draw in [0, 1) of element `i` under `seed` (splitmix64 of the counter, top 53 bits).
inline double dropout_uniform(std::uint64_t seed, std::uint64_t i) {
  std::uint64_t z = seed + (i + 1) * 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return static_cast<double>(z >> 11) * 0x1.0p-53;
}

template <class T>
void dropout_mask(T* mask, Index n, double p, std::uint64_t seed) {
  if (!(p >= 0.0 && p <= 1.0))
    throw Error("stockmixer::dropout_mask: p must lie in [0, 1], got " + std::to_string(p));
  const T scale = p < 1.0 ? T(1) / static_cast<T>(1.0 - p) : T(0);
  parallel_for(n, 16384, [&](Index i0, Index i1) {
    for (Index i = i0; i < i1; ++i)
      mask[i] = dropout_uniform(seed, static_cast<std::uint64_t>(i)) >= p ? scale : T(0);
  });
}

template <class T>
void dropout_forward(T* y, const T* x, const T* mask, Index n) {
  parallel_for(n, 16384, [&](Index i0, Index i1) {
    for (Index i = i0; i < i1; ++i) y[i] = x[i] * mask[i];
  });
}

template <class T>
void dropout_backward(T* dx, const T* dy, const T* mask, Index n) {
  parallel_for(n, 16384, [&](Index i0, Index i1) {
    for (Index i = i0; i < i1; ++i) dx[i] += dy[i] * mask[i];
  });
}

}  // namespace stockmixer
