// stockmixer/isa.hpp — the one instruction-set dispatch: which version of a hot loop runs.
//
// The library stays header-only and runs on any x86-64, while its hot loops (the fused blocks in
// model/, Adam's update) use the widest vectors the machine has: run_versioned(isa, f) calls f inside
// a function compiled for AVX-512 (x86-64-v4), for AVX2 + FMA (x86-64-v3) or for the build's own
// target, with everything f calls inlined (flatten). f is told the floats in one register of that set,
// so that code on lane vectors (lanes.hpp) sizes a row as one register: GCC keeps a wider vector type
// in memory, and every operation on it then loads and stores. Where the build already targets AVX-512
// (-march, e.g. STOCKMIXER_NATIVE), or with another compiler or CPU family, only the build's own
// version exists. Valgrind hides AVX-512 from the program, so under valgrind the AVX2 version runs.
#pragma once

#include "stockmixer/common.hpp"

#include <cstdlib>
#include <string>
#include <type_traits>

#if defined(__GNUC__)
#define STOCKMIXER_FLATTEN __attribute__((flatten))
#else
#define STOCKMIXER_FLATTEN
#endif
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(__AVX512F__) && \
    defined(__has_attribute)
#if __has_attribute(target)
#define STOCKMIXER_X86_VERSIONS 1
#define STOCKMIXER_AVX512 __attribute__((target("arch=x86-64-v4"), flatten))
#define STOCKMIXER_AVX2 __attribute__((target("arch=x86-64-v3"), flatten))
#endif
#endif

namespace stockmixer {

// ---- interface -------------------------------------------------------------------------------------

// The instruction sets the versioned loops are written for.
enum class Isa { baseline, avx2, avx512 };

// The instruction set the versioned loops run: the widest this CPU has, capped by the environment
// variable STOCKMIXER_MAX_ISA (baseline, avx2 or avx512) to compare versions or test each on one
// machine (where only the build's own version exists, that is what runs, whatever the cap). Decided
// once per process; a cap that names no instruction set throws Error.
Isa kernel_isa();
// "baseline", "avx2" or "avx512": what STOCKMIXER_MAX_ISA accepts.
const char* isa_name(Isa isa);

// The floats in one register of the build's own target: what runs where no other version exists.
#if defined(__AVX512F__)
constexpr int kBuildWidth = 16;
#elif defined(__AVX2__)
constexpr int kBuildWidth = 8;
#else
constexpr int kBuildWidth = 4;
#endif

// The width a versioned function is told: std::integral_constant<int, W>.
template <int W>
using Width = std::integral_constant<int, W>;

// Calls f(Width<W>{}) in the version for isa, W the floats in one register of that version (16, 8, or
// kBuildWidth for baseline). Callers read isa = kernel_isa() on the calling thread, before their
// parallel loops, and pass it in: a bad STOCKMIXER_MAX_ISA then throws where it can be caught.
template <class F>
void run_versioned(Isa isa, F&& f);

// Calls f(Width<kBuildWidth>{}) in the build's own version only: for code not worth compiling once per
// instruction set (it is what run_versioned runs for Isa::baseline).
template <class F>
void run_build(F&& f);

// The width run_versioned passes for isa (asked of run_versioned itself, so the two cannot disagree).
int versioned_width(Isa isa);

// ---- implementation --------------------------------------------------------------------------------

inline Isa kernel_isa() {
  static const Isa isa = [] {
    Isa best = Isa::baseline;
#if defined(STOCKMIXER_X86_VERSIONS)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("x86-64-v4")) best = Isa::avx512;
    else if (__builtin_cpu_supports("x86-64-v3")) best = Isa::avx2;
#elif defined(__AVX512F__)
    best = Isa::avx512;
#elif defined(__AVX2__) && defined(__FMA__)
    best = Isa::avx2;
#endif
    const char* cap = std::getenv("STOCKMIXER_MAX_ISA");
    if (cap == nullptr || *cap == '\0') return best;
    const std::string name(cap);
    const Isa limit = name == "avx512" ? Isa::avx512 : name == "avx2" ? Isa::avx2 : name == "baseline" ? Isa::baseline
                      : throw Error("STOCKMIXER_MAX_ISA is '" + name + "': expected baseline, avx2 or avx512");
    return limit < best ? limit : best;
  }();
  return isa;
}

inline const char* isa_name(Isa isa) {
  return isa == Isa::avx512 ? "avx512" : isa == Isa::avx2 ? "avx2" : "baseline";
}

namespace detail {
template <class F>
STOCKMIXER_FLATTEN void run_build_version(F& f) {
  f(Width<kBuildWidth>{});
}
#if defined(STOCKMIXER_X86_VERSIONS)
template <class F>
STOCKMIXER_AVX512 void run_avx512(F& f) {
  f(Width<16>{});
}
template <class F>
STOCKMIXER_AVX2 void run_avx2(F& f) {
  f(Width<8>{});
}
#endif
}  // namespace detail

template <class F>
void run_versioned(Isa isa, F&& f) {
#if defined(STOCKMIXER_X86_VERSIONS)
  switch (isa) {
    case Isa::avx512: return detail::run_avx512(f);
    case Isa::avx2: return detail::run_avx2(f);
    case Isa::baseline: break;
  }
#else
  (void)isa;
#endif
  detail::run_build_version(f);
}

template <class F>
void run_build(F&& f) {
  detail::run_build_version(f);
}

inline int versioned_width(Isa isa) {
  int width = 0;
  run_versioned(isa, [&](auto w) { width = decltype(w)::value; });
  return width;
}

}  // namespace stockmixer
