// The instruction-set cap took effect: linked into every test binary that tests/CMakeLists.txt reruns
// under STOCKMIXER_MAX_ISA (test_model, test_threads), whose reruns include this "[isa]" case in
// their filters. Without it a rerun whose cap were ignored would test the widest version again and
// pass. The expected instruction set is worked out here from the CPU and the cap, not asked of
// kernel_isa(); the expected width from the versions the build has (isa.hpp).
#include <stockmixer/isa.hpp>

#include <catch2/catch.hpp>

#include <cstdlib>
#include <string>

using namespace stockmixer;

namespace {

// The widest instruction set this CPU runs a version for, as the build sees it.
Isa cpu_best() {
#if defined(STOCKMIXER_X86_VERSIONS)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("x86-64-v4")) return Isa::avx512;
  if (__builtin_cpu_supports("x86-64-v3")) return Isa::avx2;
  return Isa::baseline;
#elif defined(__AVX512F__)
  return Isa::avx512;
#elif defined(__AVX2__) && defined(__FMA__)
  return Isa::avx2;
#else
  return Isa::baseline;
#endif
}

// The floats per register of the version that runs for isa: one per instruction set where the build
// compiles per-ISA versions, else only the build's own.
int expected_width(Isa isa) {
#if defined(STOCKMIXER_X86_VERSIONS)
  return isa == Isa::avx512 ? 16 : isa == Isa::avx2 ? 8 : kBuildWidth;
#else
  (void)isa;
  return kBuildWidth;
#endif
}

}  // namespace

TEST_CASE("STOCKMIXER_MAX_ISA caps the instruction set and the lane width the versioned loops run at", "[isa]") {
  const char* env = std::getenv("STOCKMIXER_MAX_ISA");
  const std::string cap = env ? env : "";
  const Isa best = cpu_best();
  Isa want = best;
  if (!cap.empty()) {
    REQUIRE((cap == "baseline" || cap == "avx2" || cap == "avx512"));
    const Isa limit = cap == "avx512" ? Isa::avx512 : cap == "avx2" ? Isa::avx2 : Isa::baseline;
    want = limit < best ? limit : best;
  }
  const Isa isa = kernel_isa();
  const int width = versioned_width(isa);
  INFO("STOCKMIXER_MAX_ISA '" << cap << "', CPU's best " << isa_name(best) << ": kernel_isa() "
                              << isa_name(isa) << " at " << width << " lanes, expected " << isa_name(want)
                              << " at " << expected_width(want));
  REQUIRE(isa == want);
  REQUIRE(width == expected_width(want));
#if defined(STOCKMIXER_X86_VERSIONS) && !defined(__AVX2__)
  // The build's own version is SSE2's (no -march): the caps' widths, stated.
  if (cap == "baseline") REQUIRE(width == 4);
  if (cap == "avx2" && best >= Isa::avx2) REQUIRE(width == 8);
#endif
  if (!cap.empty() && want == best && best != Isa::baseline)
    WARN("STOCKMIXER_MAX_ISA=" << cap << " is no cap on this CPU (its best: " << isa_name(best) << ")");
}
