// tests/testing.hpp — what every test file shares: random inputs, the error measure, and the PyTorch
// fixture reader (fixtures written by tests/make_kernel_fixtures.py).
#pragma once

#include <nlohmann/json.hpp>
#include <xtensor/xarray.hpp>
#include <xtensor/xnpy.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <random>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

namespace testing {

// Uniform values in [lo, hi) from a fixed seed.
template <class T>
std::vector<T> random_vector(std::size_t n, std::uint64_t seed, double lo = -1.0, double hi = 1.0) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> dist(lo, hi);
  std::vector<T> v(n);
  for (auto& x : v) x = static_cast<T>(dist(rng));
  return v;
}

// The error measure of every comparison: max_i |a_i - b_i| / max_i |b_i| (relative in the ∞-norm).
// Elementwise relative error is meaningless for outputs that cancel to near zero; this is not.
template <class A, class B>
double max_rel_error(const A& a, const B& b) {
  if (a.size() != b.size()) return INFINITY;
  double diff = 0.0, scale = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    diff = std::max(diff, std::abs(static_cast<double>(a[i]) - static_cast<double>(b[i])));
    scale = std::max(scale, std::abs(static_cast<double>(b[i])));
  }
  return scale > 0 ? diff / scale : diff;
}

// One fixture case: tests/fixtures/kernels/<name>/.
class Fixture {
 public:
  explicit Fixture(const std::string& name) : dir_(std::string(STOCKMIXER_FIXTURE_DIR) + "/kernels/" + name + "/") {
    std::ifstream in(dir_ + "meta.json");
    if (!in) throw std::runtime_error("missing fixture " + dir_ + "meta.json (run tests/make_kernel_fixtures.py)");
    meta_ = nlohmann::json::parse(in);
  }

  const nlohmann::json& meta() const { return meta_; }
  long size(const std::string& key) const { return meta_.at(key).get<long>(); }

  // An input (stored as float32), converted to T.
  template <class T>
  std::vector<T> input(const std::string& name) const {
    return convert<T>(xt::load_npy<float>(dir_ + name + ".npy"));
  }
  // PyTorch's output or gradient computed in T's precision.
  template <class T>
  std::vector<T> expected(const std::string& name) const {
    if constexpr (std::is_same_v<T, float>) return convert<T>(xt::load_npy<float>(dir_ + name + ".f32.npy"));
    else return convert<T>(xt::load_npy<double>(dir_ + name + ".f64.npy"));
  }

 private:
  template <class T, class E>
  static std::vector<T> convert(const E& a) {
    std::vector<T> v(a.size());
    std::transform(a.begin(), a.end(), v.begin(), [](auto x) { return static_cast<T>(x); });
    return v;
  }

  std::string dir_;
  nlohmann::json meta_;
};

}  // namespace testing
