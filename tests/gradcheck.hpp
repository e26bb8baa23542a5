// tests/gradcheck.hpp — finite-difference gradient checks in double.
//
// A kernel under test is a set of named input buffers, a forward that maps them to one flat output y,
// and a backward that, given an upstream gradient dy, ACCUMULATES d<dy, y>/d(input) into one gradient
// buffer per input. The checker draws a random dy, fills every gradient buffer with random garbage
// first (so a backward that overwrites instead of accumulating fails), and compares
//     analytic  g_k = (backward result - garbage)_k
//     numeric   g_k ≈ (<dy, f(x + h e_k)> - <dy, f(x - h e_k)>) / 2h      (central differences)
// for every coordinate k of every input: |analytic - numeric| <= atol + rtol · |numeric|.
// Inputs must be chosen away from kinks (Hardswish at ±3, relu at 0), where the derivative jumps.
#pragma once

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace testing {

using Buffers = std::map<std::string, std::vector<double>>;

struct GradCheckOptions {
  double step = 1e-6;   // h: truncation error O(h²) ~ 1e-12, round-off O(eps / h) ~ 1e-10
  double rtol = 1e-6;
  double atol = 1e-8;
  unsigned seed = 7;
};

struct GradCheckResult {
  bool ok = true;
  double worst = 0.0;     // largest |analytic - numeric| / (atol + rtol |numeric|); ok iff <= 1
  std::string report;     // where the worst mismatch is, in words
};

// forward(inputs) -> y;  backward(inputs, dy, grads) accumulates into grads (same keys as inputs).
// `checked` lists the inputs to differentiate (all when empty).
inline GradCheckResult gradcheck(Buffers inputs, const std::function<std::vector<double>(const Buffers&)>& forward,
                                 const std::function<void(const Buffers&, const std::vector<double>&, Buffers&)>& backward,
                                 const GradCheckOptions& opt = {}, std::vector<std::string> checked = {}) {
  std::mt19937_64 rng(opt.seed);
  std::normal_distribution<double> normal;
  const std::vector<double> y0 = forward(inputs);
  std::vector<double> dy(y0.size());
  for (auto& v : dy) v = normal(rng);

  Buffers garbage, grads;
  for (const auto& [name, buf] : inputs) {
    auto& g = garbage[name];
    g.resize(buf.size());
    for (auto& v : g) v = normal(rng);
    grads[name] = g;
  }
  backward(inputs, dy, grads);

  auto objective = [&](const Buffers& in) {
    const std::vector<double> y = forward(in);
    double s = 0.0;
    for (std::size_t i = 0; i < y.size(); ++i) s += dy[i] * y[i];
    return s;
  };

  if (checked.empty())
    for (const auto& kv : inputs) checked.push_back(kv.first);

  GradCheckResult res;
  for (const auto& name : checked) {
    auto& buf = inputs.at(name);
    for (std::size_t k = 0; k < buf.size(); ++k) {
      const double x0 = buf[k];
      const double h = opt.step * std::max(1.0, std::abs(x0));
      buf[k] = x0 + h;
      const double fp = objective(inputs);
      buf[k] = x0 - h;
      const double fm = objective(inputs);
      buf[k] = x0;
      const double numeric = (fp - fm) / (2 * h);
      const double analytic = grads.at(name)[k] - garbage.at(name)[k];
      const double ratio = std::abs(analytic - numeric) / (opt.atol + opt.rtol * std::abs(numeric));
      if (!(ratio <= res.worst)) {  // also catches NaN
        res.worst = std::isnan(ratio) ? INFINITY : ratio;
        std::ostringstream os;
        os << "d/d" << name << "[" << k << "]: analytic " << analytic << ", numeric " << numeric;
        res.report = os.str();
      }
    }
  }
  res.ok = res.worst <= 1.0;
  return res;
}

}  // namespace testing
