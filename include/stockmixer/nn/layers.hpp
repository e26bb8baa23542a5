// stockmixer/nn/layers.hpp — the parameterised layers: Linear, LayerNorm, Conv1d, TriU. Each owns its
// parameters in PyTorch's layout and calls one op.
#pragma once

#include "stockmixer/autograd/ops.hpp"
#include "stockmixer/nn/module.hpp"

#include <string>
#include <vector>

namespace stockmixer::nn {

// ---- interface -------------------------------------------------------------------------------------

// nn.Linear(in, out): weight [out, in], bias [out].
template <class T>
class Linear {
 public:
  Linear(Index in, Index out) : weight({out, in}), bias({out}), in_(in) {}
  void init(Init& init);
  Node<T>* forward(Tape<T>& tape, Node<T>* x) { return autograd::linear(tape, x, weight.node(), bias.node()); }
  void parameters(const std::string& prefix, std::vector<ParamView<T>>& out);

  Parameter<T> weight, bias;

 private:
  Index in_;
};

// nn.LayerNorm(shape): weight (gamma) and bias (beta) of `shape`, normalising the trailing dims.
template <class T>
class LayerNorm {
 public:
  explicit LayerNorm(Shape shape) : weight(shape), bias(shape) {}
  void init(Init&) {
    weight.value().fill(T(1));
    bias.value().zero();
  }
  Node<T>* forward(Tape<T>& tape, Node<T>* x) { return autograd::layernorm(tape, x, weight.node(), bias.node()); }
  void parameters(const std::string& prefix, std::vector<ParamView<T>>& out) {
    out.push_back(weight.view(prefix + "weight"));
    out.push_back(bias.view(prefix + "bias"));
  }

  Parameter<T> weight, bias;
};

// nn.Conv1d(cin, cout, k, stride=k) on the channels-last layout [B, L, Ci]: weight [Co, Ci, K].
template <class T>
class Conv1d {
 public:
  Conv1d(Index cin, Index cout, Index kernel) : weight({cout, cin, kernel}), bias({cout}) {}
  void init(Init& init);
  Node<T>* forward(Tape<T>& tape, Node<T>* x) { return autograd::conv1d(tape, x, weight.node(), bias.node()); }
  void parameters(const std::string& prefix, std::vector<ParamView<T>>& out) {
    out.push_back(weight.view(prefix + "weight"));
    out.push_back(bias.view(prefix + "bias"));
  }

  Parameter<T> weight, bias;
};

// The original's TriU: a list of nn.Linear(i + 1, 1). Stored as one lower-triangular [L, L] weight and
// an [L] bias; the PyTorch parameters `triU.i.weight` [1, i + 1] and `triU.i.bias` [1] are views into
// them (row i's first i + 1 values, and bias[i]). Applied on axis 1 of [B, L, K] (or [B, L]).
template <class T>
class TriU {
 public:
  explicit TriU(Index length) : weight({length, length}), bias({length}), length_(length) {}
  void init(Init& init);
  Node<T>* forward(Tape<T>& tape, Node<T>* x) { return autograd::triu(tape, x, weight.node(), bias.node()); }
  void parameters(const std::string& prefix, std::vector<ParamView<T>>& out);
  Index length() const { return length_; }

  Parameter<T> weight, bias;

 private:
  Index length_;
};

// ---- implementation --------------------------------------------------------------------------------

template <class T>
void Linear<T>::init(Init& init) {
  init.uniform_fan_in(weight.value().data(), weight.value().size(), in_);
  init.uniform_fan_in(bias.value().data(), bias.value().size(), in_);
}

template <class T>
void Linear<T>::parameters(const std::string& prefix, std::vector<ParamView<T>>& out) {
  out.push_back(weight.view(prefix + "weight"));
  out.push_back(bias.view(prefix + "bias"));
}

template <class T>
void Conv1d<T>::init(Init& init) {
  const Index fan_in = weight.shape()[1] * weight.shape()[2];
  init.uniform_fan_in(weight.value().data(), weight.value().size(), fan_in);
  init.uniform_fan_in(bias.value().data(), bias.value().size(), fan_in);
}

template <class T>
void TriU<T>::init(Init& init) {
  weight.value().zero();  // the upper triangle stays zero: it is not a parameter
  for (Index i = 0; i < length_; ++i) {
    init.uniform_fan_in(weight.value().data() + i * length_, i + 1, i + 1);
    init.uniform_fan_in(bias.value().data() + i, 1, i + 1);
  }
}

template <class T>
void TriU<T>::parameters(const std::string& prefix, std::vector<ParamView<T>>& out) {
  for (Index i = 0; i < length_; ++i) {
    const std::string p = prefix + "triU." + std::to_string(i) + ".";
    out.push_back({p + "weight", Shape{1, i + 1}, weight.value().data() + i * length_,
                   weight.grad().data() + i * length_});
    out.push_back({p + "bias", Shape{1}, bias.value().data() + i, bias.grad().data() + i});
  }
}

}  // namespace stockmixer::nn
