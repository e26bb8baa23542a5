// stockmixer/provenance.hpp — what produced a result: the library and its build, the choices made on
// this machine, and a fingerprint of the data. train::run writes it into every run's summary.json and
// best.safetensors, so a figure can be traced to the code, the compiler, the instruction set and the
// exact data that made it.
//
// build_info()
//   {"version", "commit", "compiler", "isa", "threads", "openmp"}. "commit" is the git commit the
//   build was configured from, where the build defines STOCKMIXER_GIT_COMMIT (our CMake does, for its
//   own targets, with "-dirty" when the tree had uncommitted changes); "unknown" otherwise.
// data_fingerprint(market)
//   {"stocks", "days", "features", "steps", "tickers_fnv1a64", "data_fnv1a64"}: 64-bit FNV-1a hashes
//   (hex) of the ticker names (each followed by '\n') and of the bytes of eod, mask, gt and price in
//   that order. FNV-1a identifies data; it is no defence against someone forging a collision.
//
// tests: tests/test_data.cpp ("provenance")
#pragma once

#include "stockmixer/data/market.hpp"
#include "stockmixer/isa.hpp"
#include "stockmixer/parallel.hpp"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <cstdio>
#include <string>

namespace stockmixer {

// ---- interface -------------------------------------------------------------------------------------

constexpr const char* kVersion = "0.1.0";  // the project VERSION in CMakeLists.txt (checked when configuring)

nlohmann::json build_info();
template <class T>
nlohmann::json data_fingerprint(const data::Market<T>& market);

// 64-bit FNV-1a of n bytes, continuing from h (start with kFnvOffset).
constexpr std::uint64_t kFnvOffset = 14695981039346656037ull;
std::uint64_t fnv1a64(const void* bytes, std::size_t n, std::uint64_t h = kFnvOffset);

// ---- implementation --------------------------------------------------------------------------------

inline std::uint64_t fnv1a64(const void* bytes, std::size_t n, std::uint64_t h) {
  const auto* p = static_cast<const unsigned char*>(bytes);
  for (std::size_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= 1099511628211ull;
  }
  return h;
}

namespace detail {
inline std::string hex64(std::uint64_t h) {
  char text[17];
  std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(h));
  return text;
}
}  // namespace detail

inline nlohmann::json build_info() {
#if defined(__clang__)
  const std::string compiler = "Clang " __clang_version__;
#elif defined(__GNUC__)
  const std::string compiler = "GCC " __VERSION__;
#else
  const std::string compiler = "unknown";
#endif
#if defined(STOCKMIXER_GIT_COMMIT)
  const std::string commit = STOCKMIXER_GIT_COMMIT;
#else
  const std::string commit = "unknown";
#endif
#if defined(_OPENMP)
  const bool openmp = true;
#else
  const bool openmp = false;
#endif
  return {{"version", kVersion},          {"commit", commit},         {"compiler", compiler},
          {"isa", isa_name(kernel_isa())}, {"threads", num_threads()}, {"openmp", openmp}};
}

template <class T>
nlohmann::json data_fingerprint(const data::Market<T>& market) {
  std::uint64_t tickers = kFnvOffset;
  for (const std::string& name : market.tickers) {
    tickers = fnv1a64(name.data(), name.size(), tickers);
    tickers = fnv1a64("\n", 1, tickers);
  }
  std::uint64_t data = kFnvOffset;
  for (const Tensor<T>* t : {&market.eod, &market.mask, &market.gt, &market.price})
    data = fnv1a64(t->data(), static_cast<std::size_t>(t->size()) * sizeof(T), data);
  return {{"stocks", market.stocks()},
          {"days", market.days()},
          {"features", market.features()},
          {"steps", market.steps},
          {"tickers_fnv1a64", detail::hex64(tickers)},
          {"data_fnv1a64", detail::hex64(data)}};
}

}  // namespace stockmixer
