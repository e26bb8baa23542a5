// stockmixer/common.hpp — the index type, the shape legend, the error type and row-major Eigen maps
// that every layer shares.
//
// Shape legend used in every comment of the library:
//   N stocks (the batch), T lookback time, C features, S = T/2 scale length, H hidden width,
//   F = 2T + S fused time length, M market width, L a generic mixing length, B a generic batch.
#pragma once

#include <Eigen/Core>

#include <cstddef>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <type_traits>

// One version of a kernel per instruction set. The library stays header-only and runs on any x86-64,
// while its hot loops use the widest vectors the machine has: run_versioned(f) (below) calls f inside
// a function compiled for AVX-512 (x86-64-v4), for AVX2 + FMA (x86-64-v3) or for the build's own
// target, with everything f calls inlined (flatten), picking the version at run time (kernel_isa()).
// f is told the floats in one register of that set, so that kernels on lane vectors
// (kernels/lanes.hpp) size a row as one register: GCC keeps a wider vector type in memory, and the
// per-stock kernel ran 5 to 7 times slower on AVX2 with rows of 16 floats. Where the build already
// targets AVX-512 (-march, e.g. STOCKMIXER_NATIVE), or with another compiler or CPU family, only the
// build's own version exists. Valgrind hides AVX-512 from the program, so under valgrind the AVX2
// version runs.
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

using Index = std::ptrdiff_t;

// The instruction sets the versioned kernels are written for.
enum class Isa { baseline, avx2, avx512 };

// Every error the library raises on bad input: the message names the tensor, file or line and what
// was expected.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The instruction set the versioned kernels run: the widest this CPU has (x86-64-v4: AVX-512; v3:
// AVX2 + FMA), capped by the environment variable STOCKMIXER_MAX_ISA (baseline, avx2 or avx512) to
// compare versions or test each on one machine (where only the build's own version exists, that is
// what runs, whatever the cap). Decided once per process.
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

// The floats in one register of the build's own target: what run_versioned passes where no other
// version runs.
#if defined(__AVX512F__)
constexpr int kBuildWidth = 16;
#elif defined(__AVX2__)
constexpr int kBuildWidth = 8;
#else
constexpr int kBuildWidth = 4;
#endif

namespace detail {
template <int W>
using Width = std::integral_constant<int, W>;
template <class F>
STOCKMIXER_FLATTEN void run_build(F& f) {
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

// Calls f(std::integral_constant<int, W>{}) in the version for isa (see the top of this file), W the
// floats in one register of that version. Kernels read isa = kernel_isa() on the calling thread,
// before their parallel loops, and pass it in: a bad STOCKMIXER_MAX_ISA then throws where it can be
// caught.
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
  detail::run_build(f);
}

// The width run_versioned passes for isa: 16 (AVX-512), 8 (AVX2) or kBuildWidth (asked of
// run_versioned itself, so the two cannot disagree).
inline int versioned_width(Isa isa) {
  int width = 0;
  run_versioned(isa, [&](auto w) { width = decltype(w)::value; });
  return width;
}

// Row-major dense matrix views over contiguous memory: the only way kernels see Eigen.
template <class T>
using RowMatrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using MatrixMap = Eigen::Map<RowMatrix<T>>;
template <class T>
using ConstMatrixMap = Eigen::Map<const RowMatrix<T>>;
template <class T>
using VectorMap = Eigen::Map<Eigen::Matrix<T, Eigen::Dynamic, 1>>;
template <class T>
using ConstVectorMap = Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, 1>>;

}  // namespace stockmixer
