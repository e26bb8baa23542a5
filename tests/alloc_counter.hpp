// tests/alloc_counter.hpp — replaces the global operator new/delete of the test executable that
// includes it, to count every heap allocation (`testing::allocations()`). Include it in exactly one
// translation unit of an executable: it defines the replaceable global operators.
#pragma once

#include <atomic>
#include <cstdlib>
#include <new>

// GCC 12 inlines these into std::vector and then flags free() on operator new's pointer, which is
// exactly the pairing intended here.
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

namespace testing {
inline std::atomic<long> g_allocations{0};
// Heap allocations since the program started.
inline long allocations() { return g_allocations.load(); }
}  // namespace testing

void* operator new(std::size_t size) {
  testing::g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(size ? size : 1)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t size) { return operator new(size); }
void* operator new(std::size_t size, std::align_val_t align) {
  testing::g_allocations.fetch_add(1, std::memory_order_relaxed);
  const std::size_t a = static_cast<std::size_t>(align);
  if (void* p = std::aligned_alloc(a, (size + a - 1) / a * a)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t size, std::align_val_t align) { return operator new(size, align); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
