// tests/testing.hpp — what every test file shares: random inputs, the error measure, the PyTorch
// fixture reader (fixtures written by the tests/make_*_fixtures.py scripts) and temporary folders.
#pragma once

#include <stockmixer/io/npy.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <random>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

namespace testing {

// A fresh folder under the system's temp directory (its name: the tag, a random number and a counter),
// removed with everything in it at scope exit.
class TempDir {
 public:
  explicit TempDir(const std::string& tag = "") {
    static int counter = 0;
    std::random_device rd;
    path_ = std::filesystem::temp_directory_path() /
            ("stockmixer_test_" + tag + "_" + std::to_string(rd()) + "_" + std::to_string(counter++));
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  std::string str() const { return path_.string(); }
  std::string path(const std::string& name) const { return (path_ / name).string(); }
  // Writes `text` byte for byte (binary: "\r\n" stays), creating the folders it names; returns its path.
  std::string write(const std::string& name, const std::string& text) const {
    std::filesystem::create_directories((path_ / name).parent_path());
    std::ofstream out(path(name), std::ios::binary);
    out << text;
    return path(name);
  }

 private:
  std::filesystem::path path_;
};

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

// One fixture case: tests/fixtures/<kind>/<name>/ with its meta.json, written by a
// tests/make_<kind>_fixtures.py script.
class Fixture {
 public:
  explicit Fixture(const std::string& name, const std::string& kind = "kernels")
      : dir_(std::string(STOCKMIXER_FIXTURE_DIR) + "/" + kind + "/" + name + "/") {
    std::ifstream in(dir_ + "meta.json");
    if (!in) throw std::runtime_error("missing fixture " + dir_ + "meta.json (run the tests/make_*_fixtures.py script)");
    meta_ = nlohmann::json::parse(in);
  }

  const nlohmann::json& meta() const { return meta_; }
  long size(const std::string& key) const { return meta_.at(key).get<long>(); }

  // An input (float32 or float64 values that are exact in float32), converted to T.
  template <class T>
  std::vector<T> input(const std::string& rel) const {
    return values(stockmixer::io::read_npy<T>(dir_ + rel + ".npy"));
  }
  // PyTorch's output or gradient computed in T's precision (<rel>.f32.npy or <rel>.f64.npy).
  template <class T>
  std::vector<T> expected(const std::string& rel) const {
    return values(stockmixer::io::read_npy<T>(dir_ + rel + (std::is_same_v<T, float> ? ".f32.npy" : ".f64.npy")));
  }

 private:
  template <class T>
  static std::vector<T> values(const stockmixer::Tensor<T>& t) {
    return std::vector<T>(t.data(), t.data() + t.size());
  }

  std::string dir_;
  nlohmann::json meta_;
};

}  // namespace testing
