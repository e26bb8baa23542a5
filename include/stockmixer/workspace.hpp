// stockmixer/workspace.hpp — scratch memory a caller owns and lends to kernels.
//
// Kernels hold no state: what a call needs beyond its inputs and outputs (a group's activations,
// partial sums, widened copies) comes from a Scratch or PerThread buffer its caller owns and passes in
// (the model owns one for each fused block; a test or a benchmark makes its own), as cuBLAS and llm.c
// take workspaces. Buffers start on a 64-byte boundary (a cache line, an AVX-512 register: a row of
// 16 floats never straddles two lines), grow to the largest size asked and are never shrunk, so after
// the first call of a shape nothing allocates. Contents between calls are unspecified.
#pragma once

#include "stockmixer/common.hpp"
#include "stockmixer/parallel.hpp"

#include <cstdint>
#include <vector>

namespace stockmixer {

// ---- interface -------------------------------------------------------------------------------------

// One buffer of U (a trivial type) on a 64-byte boundary.
template <class U>
class Scratch {
 public:
  // At least `count` values; allocates only when count exceeds every earlier request.
  U* get(Index count);

 private:
  std::vector<U> storage_;
};

// One block of U for each thread a parallel loop may run on.
template <class U>
class PerThread {
 public:
  // Sizes a block of `count` values for each of num_threads() threads. Call it before the parallel
  // loop, on the calling thread.
  void reserve(Index count) {
    constexpr Index kLine = 64 / static_cast<Index>(sizeof(U));
    stride_ = (count + kLine - 1) / kLine * kLine;
    base_ = scratch_.get(stride_ * static_cast<Index>(num_threads()));
  }
  // The block of the thread that calls it (thread_index()), inside a loop started after reserve.
  U* local() { return base_ + static_cast<Index>(thread_index()) * stride_; }

 private:
  Scratch<U> scratch_;
  U* base_ = nullptr;
  Index stride_ = 0;  // values from one block to the next: count rounded up to whole 64-byte lines
};

// ---- implementation --------------------------------------------------------------------------------

template <class U>
U* Scratch<U>::get(Index count) {
  constexpr Index kAlign = 64 / static_cast<Index>(sizeof(U));
  static_assert(64 % sizeof(U) == 0, "Scratch holds types whose size divides 64 bytes");
  if (static_cast<Index>(storage_.size()) < count + kAlign) storage_.resize(static_cast<std::size_t>(count + kAlign));
  const auto address = reinterpret_cast<std::uintptr_t>(storage_.data());
  return storage_.data() + (kAlign - static_cast<Index>(address % 64) / static_cast<Index>(sizeof(U))) % kAlign;
}

}  // namespace stockmixer
