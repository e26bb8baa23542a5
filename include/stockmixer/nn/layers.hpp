// stockmixer/nn/layers.hpp — the parameterised layers: Linear, LayerNorm, Conv1d, TriU. Each owns its
// parameters in PyTorch's layout and calls one op.
#pragma once

#include "stockmixer/autograd/ops.hpp"
#include "stockmixer/nn/module.hpp"

#include <string>

namespace stockmixer::nn {

// ---- interface -------------------------------------------------------------------------------------

// nn.Linear(in, out): weight [out, in], bias [out].
template <class T>
class Linear {
 public:
  Linear(Index in, Index out) : weight(Shape{out, in}), bias(Shape{out}) {}
  void declare(ParameterStore<T>& store, const std::string& prefix) {
    store.add(prefix + "weight", weight);
    store.add(prefix + "bias", bias);
  }
  void init(Init& init) { init.weight_and_bias(weight, bias, weight.shape()[1]); }
  Node<T>* forward(Tape<T>& tape, Node<T>* x) {
    return autograd::linear(tape, x, tape.parameter(weight), tape.parameter(bias));
  }

  Parameter<T> weight, bias;
};

// nn.LayerNorm(shape): weight (gamma) and bias (beta) of `shape`, normalising the trailing dims.
template <class T>
class LayerNorm {
 public:
  explicit LayerNorm(Shape shape) : weight(shape), bias(shape) {}
  void declare(ParameterStore<T>& store, const std::string& prefix) {
    store.add(prefix + "weight", weight);
    store.add(prefix + "bias", bias);
  }
  void init(Init&) {
    std::fill(weight.value(), weight.value() + weight.size(), T(1));
    std::fill(bias.value(), bias.value() + bias.size(), T(0));
  }
  Node<T>* forward(Tape<T>& tape, Node<T>* x) {
    return autograd::layernorm(tape, x, tape.parameter(weight), tape.parameter(bias));
  }

  Parameter<T> weight, bias;
};

// nn.Conv1d(cin, cout, k, stride=k) on the channels-last layout [B, L, Ci]: weight [Co, Ci, K].
template <class T>
class Conv1d {
 public:
  Conv1d(Index cin, Index cout, Index kernel) : weight(Shape{cout, cin, kernel}), bias(Shape{cout}) {}
  void declare(ParameterStore<T>& store, const std::string& prefix) {
    store.add(prefix + "weight", weight);
    store.add(prefix + "bias", bias);
  }
  void init(Init& init) { init.weight_and_bias(weight, bias, weight.shape()[1] * weight.shape()[2]); }
  Node<T>* forward(Tape<T>& tape, Node<T>* x) {
    return autograd::conv1d(tape, x, tape.parameter(weight), tape.parameter(bias));
  }

  Parameter<T> weight, bias;
};

// The original's TriU: a list of nn.Linear(i + 1, 1). Kept as one lower-triangular [L, L] weight (the
// upper triangle zero, never a parameter) and an [L] bias; the PyTorch parameters `triU.i.weight`
// [1, i + 1] and `triU.i.bias` [1] are views into them (row i's first i + 1 values, and bias[i]).
// Applied on axis 1 of [B, L, K] (or [B, L]).
template <class T>
class TriU {
 public:
  explicit TriU(Index length) : weight(Shape{length, length}), bias(Shape{length}), length_(length) {}
  void declare(ParameterStore<T>& store, const std::string& prefix);
  void init(Init& init);
  Node<T>* forward(Tape<T>& tape, Node<T>* x) {
    return autograd::triu(tape, x, tape.parameter(weight), tape.parameter(bias));
  }
  Index length() const { return length_; }

  Parameter<T> weight, bias;

 private:
  Index length_;
};

// ---- implementation --------------------------------------------------------------------------------

template <class T>
void TriU<T>::declare(ParameterStore<T>& store, const std::string& prefix) {
  store.add_storage(weight);
  store.add_storage(bias);
  for (Index i = 0; i < length_; ++i) {
    const std::string p = prefix + "triU." + std::to_string(i) + ".";
    store.add_view(p + "weight", weight, i * length_, Shape{1, i + 1});
    store.add_view(p + "bias", bias, i, Shape{1});
  }
}

template <class T>
void TriU<T>::init(Init& init) {
  std::fill(weight.value(), weight.value() + weight.size(), T(0));  // the upper triangle stays zero
  for (Index i = 0; i < length_; ++i) {
    init.uniform_fan_in(weight.value() + i * length_, i + 1, i + 1);
    init.uniform_fan_in(bias.value() + i, 1, i + 1);
  }
}

}  // namespace stockmixer::nn
