// stockmixer/nn/module.hpp — what every module shares: PyTorch's default initialisation from one seed.
//
// A module owns Parameters (parameters.hpp) with PyTorch's names, shapes and layouts and wires ops
// (autograd/ops.hpp). It has `declare(store, prefix)`, which adds its tensors to a ParameterStore in
// PyTorch's registration order under their state_dict names, `init(init)` and `forward(tape, ...)`:
// the op-by-op path, the reference the model's fused blocks are tested against.
#pragma once

#include "stockmixer/autograd/tape.hpp"
#include "stockmixer/parameters.hpp"

#include <cmath>
#include <cstdint>
#include <random>

namespace stockmixer::nn {

using autograd::Node;
using autograd::Tape;

// PyTorch's default initialisation: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for Linear and Conv1d weights
// and biases (kaiming_uniform_ with a = sqrt(5) reduces to this bound), drawn from a 64-bit Mersenne
// twister. The values differ from PyTorch's (another generator), the distribution does not.
class Init {
 public:
  explicit Init(std::uint64_t seed) : rng_(seed) {}
  template <class T>
  void uniform_fan_in(T* data, Index n, Index fan_in) {
    const double bound = 1.0 / std::sqrt(static_cast<double>(fan_in));
    std::uniform_real_distribution<double> dist(-bound, bound);
    for (Index i = 0; i < n; ++i) data[i] = static_cast<T>(dist(rng_));
  }
  // A Linear's or Conv1d's weight, then its bias, with the same bound.
  template <class T>
  void weight_and_bias(const Parameter<T>& weight, const Parameter<T>& bias, Index fan_in) {
    uniform_fan_in(weight.value(), weight.size(), fan_in);
    uniform_fan_in(bias.value(), bias.size(), fan_in);
  }

 private:
  std::mt19937_64 rng_;
};

}  // namespace stockmixer::nn
