// tests/alloc_counter.hpp — replaces the global operator new/delete of the test executable that
// includes it, so that a test can see and steer every heap allocation, from any thread:
//
//   testing::allocations()          heap allocations since the program started
//   testing::fail_allocation(k)     the k-th allocation from now (0: the next) throws std::bad_alloc;
//   testing::fail_none()            ... until this disarms it
//   testing::fail_each_allocation(run, on_error)
//                                   runs run() with its 0th, 1st, ... allocation failing, calling
//                                   on_error(k, message) for each exception it throws, until a run
//                                   makes fewer than k + 1 allocations and returns (run should only
//                                   call and keep the result: checks belong after, disarmed); gives k
//   testing::LargestAllocation w(cap)  while w lives: w.largest() is the largest request so far, and
//                                   any request above cap bytes throws std::bad_alloc
//
// Include it in exactly one translation unit of an executable: it defines the replaceable global
// operators, every form (the nothrow ones too: Catch2 allocates with one, and memory from the
// library's operator new released by our free() is a mismatch AddressSanitizer reports).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdlib>
#include <new>
#include <string>

// GCC 12 inlines these into std::vector and then flags free() on operator new's pointer, which is
// exactly the pairing intended here.
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

namespace testing {

inline std::atomic<long> g_allocations{0};
inline std::atomic<long> g_fail_at{-1};  // the allocation (by count) that throws; -1: none
inline std::atomic<bool> g_watching{false};
inline std::atomic<std::size_t> g_largest{0}, g_cap{0};

inline long allocations() { return g_allocations.load(); }
inline void fail_allocation(long k) { g_fail_at = g_allocations.load() + k; }
inline void fail_none() { g_fail_at = -1; }

template <class Run, class OnError>
long fail_each_allocation(Run&& run, OnError&& on_error, long limit = 100000) {
  for (long k = 0; k < limit; ++k) {
    std::string error;
    bool failed = false;
    fail_allocation(k);
    try {
      run();
    } catch (const std::exception& e) {  // stockmixer::Error, or anything else: on_error judges the message
      failed = true;
      error = e.what();
    }
    fail_none();
    if (!failed) return k;
    on_error(k, error);
  }
  return limit;
}

class LargestAllocation {
 public:
  explicit LargestAllocation(std::size_t cap) {
    g_largest = 0;
    g_cap = cap;
    g_watching = true;
  }
  ~LargestAllocation() { g_watching = false; }
  LargestAllocation(const LargestAllocation&) = delete;
  LargestAllocation& operator=(const LargestAllocation&) = delete;
  std::size_t largest() const { return g_largest.load(); }
};

// Every operator new below comes here; align 0 means malloc's own alignment.
inline void* allocate(std::size_t size, std::size_t align) {
  if (g_allocations.fetch_add(1) == g_fail_at.load()) throw std::bad_alloc();
  if (g_watching.load()) {
    std::size_t seen = g_largest.load();
    while (size > seen && !g_largest.compare_exchange_weak(seen, size)) {
    }
    if (size > g_cap.load()) throw std::bad_alloc();
  }
  void* p = align ? std::aligned_alloc(align, (size + align - 1) / align * align) : std::malloc(size ? size : 1);
  if (!p) throw std::bad_alloc();
  return p;
}

inline void* allocate_or_null(std::size_t size, std::size_t align) noexcept {
  try {
    return allocate(size, align);
  } catch (const std::bad_alloc&) {
    return nullptr;
  }
}

}  // namespace testing

void* operator new(std::size_t size) { return testing::allocate(size, 0); }
void* operator new[](std::size_t size) { return testing::allocate(size, 0); }
void* operator new(std::size_t size, std::align_val_t a) { return testing::allocate(size, static_cast<std::size_t>(a)); }
void* operator new[](std::size_t size, std::align_val_t a) {
  return testing::allocate(size, static_cast<std::size_t>(a));
}
void* operator new(std::size_t size, const std::nothrow_t&) noexcept { return testing::allocate_or_null(size, 0); }
void* operator new[](std::size_t size, const std::nothrow_t&) noexcept { return testing::allocate_or_null(size, 0); }
void* operator new(std::size_t size, std::align_val_t a, const std::nothrow_t&) noexcept {
  return testing::allocate_or_null(size, static_cast<std::size_t>(a));
}
void* operator new[](std::size_t size, std::align_val_t a, const std::nothrow_t&) noexcept {
  return testing::allocate_or_null(size, static_cast<std::size_t>(a));
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }
