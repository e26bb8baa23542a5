// stockmixer/parallel.hpp — threads by ownership.
//
// Every parallel loop in the kernels runs over a FIXED list of chunks whose boundaries depend only on
// the problem size, never on the thread count; each chunk writes outputs no other chunk writes and
// computes them in the same order whatever thread runs it. So 1, 2 or 16 threads give bit-identical
// results (tests/test_threads.cpp checks it). Threads come from OpenMP when the user links
// stockmixer::openmp; otherwise every loop runs serially and the pragmas compile away.
#pragma once

#include "stockmixer/common.hpp"

#include <algorithm>
#include <string>
#include <thread>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace stockmixer {

// Number of threads kernels may use (1 without OpenMP).
inline int num_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

// The calling thread's index in the running parallel loop, in [0, num_threads() read before the loop);
// 0 outside one and without OpenMP. Kernels use it only to pick a per-thread scratch block
// (workspace.hpp), never to decide what a thread computes.
inline int thread_index() {
#ifdef _OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

// The most threads set_num_threads accepts: 4 times the hardware threads, and at least 256. Our loops
// split work into fixed chunks, so threads beyond the cores only wait; a count far above them makes
// the OpenMP runtime fail to create its threads (libgomp aborts at 100 000).
inline int max_threads() {
  const unsigned hardware = std::thread::hardware_concurrency();  // 0 when unknown
  return static_cast<int>(std::max<unsigned>(256, 4 * std::min<unsigned>(hardware, 1u << 20)));
}

// Sets the number of threads kernels use (a no-op without OpenMP); Error unless 1 <= n <= max_threads().
inline void set_num_threads(int n) {
  if (n < 1 || n > max_threads())
    throw Error("stockmixer::set_num_threads: " + std::to_string(n) + " threads; expected 1 to " +
                std::to_string(max_threads()) + " (4 x the " + std::to_string(std::thread::hardware_concurrency()) +
                " hardware threads, at least 256)");
#ifdef _OPENMP
  omp_set_num_threads(n);
#endif
}

// Calls body(begin, end) for consecutive ranges of [0, n) of `grain` items each (the last may be
// shorter). The ranges depend only on n and grain, so results do not depend on the thread count.
template <class Body>
inline void parallel_for(Index n, Index grain, Body&& body) {
  if (n <= 0) return;
  grain = std::max<Index>(grain, 1);
  const Index chunks = (n + grain - 1) / grain;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (chunks > 1)
#endif
  for (Index c = 0; c < chunks; ++c) {
    const Index begin = c * grain;
    body(begin, std::min(n, begin + grain));
  }
}

// Calls body(c, begin, end) for the `chunks` consecutive ranges c of [0, n) whose sizes differ by at
// most one (boundaries c·n / chunks). Like parallel_for, the ranges depend only on n and chunks; with an
// even number of chunks two threads get equal shares, where fixed-size ranges leave the last one short.
// chunks is clamped to [1, max(n, 1)]; every chunk is called (with an empty range when n is 0), so a
// caller keeping one partial result per chunk (its c) sees each one written.
template <class Body>
inline void parallel_for_even(Index n, Index chunks, Body&& body) {
  n = std::max<Index>(n, 0);
  chunks = std::clamp<Index>(chunks, 1, std::max<Index>(n, 1));
  parallel_for(chunks, 1, [&](Index c0, Index c1) {
    for (Index c = c0; c < c1; ++c) body(c, c * n / chunks, (c + 1) * n / chunks);
  });
}

// Deterministic parallel sum: splits [0, n) into at most kMaxChunks fixed ranges of at least `grain`
// items, calls body(begin, end) -> double for each, and adds the partial sums in range order. The
// ranges depend only on n and grain, so the total is bit-identical for any thread count. No heap.
template <class Body>
inline double parallel_sum(Index n, Index grain, Body&& body) {
  constexpr Index kMaxChunks = 64;
  if (n <= 0) return 0.0;
  grain = std::max<Index>(grain, 1);
  const Index chunks = std::min(kMaxChunks, (n + grain - 1) / grain);
  const Index size = (n + chunks - 1) / chunks;
  double partial[kMaxChunks];
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (chunks > 1)
#endif
  for (Index c = 0; c < chunks; ++c) {
    const Index begin = std::min(n, c * size);
    partial[c] = body(begin, std::min(n, begin + size));
  }
  double total = 0.0;
  for (Index c = 0; c < chunks; ++c) total += partial[c];
  return total;
}

// A grain that gives each chunk roughly `work_per_chunk` units when each item costs `item_cost`.
inline Index grain_for(Index item_cost, Index work_per_chunk = 32768) {
  return std::max<Index>(1, work_per_chunk / std::max<Index>(item_cost, 1));
}

}  // namespace stockmixer
