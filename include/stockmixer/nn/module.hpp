// stockmixer/nn/module.hpp — what every module shares: parameters (value + gradient, with PyTorch's
// state_dict name), the flat list of parameter views that optimisers and checkpoints walk, and
// PyTorch's default initialisation from one seed.
//
// A module owns Parameters and wires ops (autograd/ops.hpp); it has `forward(tape, ...)`,
// `init(rng)` and `parameters(prefix, out)`, which appends one ParamView per PyTorch parameter, in
// PyTorch's registration order, named as in `model.state_dict()`.
#pragma once

#include "stockmixer/autograd/tape.hpp"

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace stockmixer::nn {

using autograd::Node;
using autograd::Tape;

// ---- interface -------------------------------------------------------------------------------------

// One PyTorch parameter: its state_dict name and shape, and where its values and gradient live.
template <class T>
struct ParamView {
  std::string name;
  Shape shape;
  T* value;
  T* grad;
  Index size() const { return shape.size(); }
};

// A trainable tensor and its gradient, owned by a module.
template <class T>
class Parameter {
 public:
  Parameter() = default;
  explicit Parameter(Shape shape) : value_(shape), grad_(shape) {}

  Tensor<T>& value() { return value_; }
  const Tensor<T>& value() const { return value_; }
  Tensor<T>& grad() { return grad_; }
  const Shape& shape() const { return value_.shape(); }
  // The node ops read: value and gradient views (refreshed on every call, so copies stay correct).
  Node<T>* node() {
    node_.value = value_.map();
    node_.grad = grad_.map();
    return &node_;
  }
  ParamView<T> view(const std::string& name) { return {name, value_.shape(), value_.data(), grad_.data()}; }

 private:
  Tensor<T> value_, grad_;
  Node<T> node_;
};

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

 private:
  std::mt19937_64 rng_;
};

// Sets every gradient in `params` to zero.
template <class T>
void zero_grad(const std::vector<ParamView<T>>& params) {
  for (const auto& p : params) std::fill(p.grad, p.grad + p.size(), T(0));
}

}  // namespace stockmixer::nn
