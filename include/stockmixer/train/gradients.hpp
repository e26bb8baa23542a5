// stockmixer/train/gradients.hpp — one batch through the model and get_loss, then backward: what
// `stockmixer gradients` writes and what the Python module's `gradients` returns, computed once here.
//
//   pred = model.forward(tape, x)                       [N, 1]
//   loss, reg, rank, rr = get_loss(pred, gt, base, mask, alpha)
//   model.zero_grad(); tape.backward(loss)              every parameter's d(loss)/d(parameter)
//
// The result is a list of named tensors, in this order: "prediction" [N, 1], "rr" [N, 1], "loss" [1],
// "reg_loss" [1], "rank_loss" [1], then the gradient of every parameter under its PyTorch state_dict
// name and shape, in state_dict order (the same names PyTorch's `named_parameters()` gives, so each
// can be compared with PyTorch's `.grad`). The model's own gradient buffers hold the same gradients
// afterwards.
#pragma once

#include "stockmixer/loss.hpp"
#include "stockmixer/model.hpp"

#include <cmath>
#include <string>
#include <utility>
#include <vector>

namespace stockmixer::train {

// ---- interface -------------------------------------------------------------------------------------

template <class T>
using NamedTensors = std::vector<std::pair<std::string, Tensor<T>>>;

// x [N, T, C] as the model's config; gt, base, mask [N, 1] or [N] (read as [N, 1]). Throws Error naming
// the tensor and what was expected on a shape that does not fit the model, and naming the stock when a
// base price is 0 (the return ratio divides by it).
template <class T>
NamedTensors<T> loss_gradients(StockMixer<T>& model, TensorMap<const T> x, TensorMap<const T> gt,
                               TensorMap<const T> base, TensorMap<const T> mask, T alpha);

// "" when every value of every tensor is finite; otherwise "K of the M tensors hold NaN or Inf:" and one
// line per such tensor ("\n  name: k of n values"), the first ten, then how many more.
template <class T>
std::string nonfinite_report(const NamedTensors<T>& tensors);

// ---- implementation --------------------------------------------------------------------------------

template <class T>
NamedTensors<T> loss_gradients(StockMixer<T>& model, TensorMap<const T> x, TensorMap<const T> gt,
                               TensorMap<const T> base, TensorMap<const T> mask, T alpha) {
  const StockMixerConfig& c = model.config();
  const Index n = c.stocks;
  const Shape want_x{n, c.lookback, c.features};
  if (x.shape() != want_x)
    throw Error("stockmixer::train::loss_gradients: x has shape " + x.shape().str() +
                ", the model expects [N, T, C] = " + want_x.str());
  auto column = [n](TensorMap<const T> t, const char* name) {
    if (t.size() != n || !(t.rank() == 1 || (t.rank() == 2 && t.dim(1) == 1)))
      throw Error(std::string("stockmixer::train::loss_gradients: ") + name + " has shape " + t.shape().str() +
                  ", expected [" + std::to_string(n) + ", 1] (N = " + std::to_string(n) + " stocks)");
    return TensorMap<T>(const_cast<T*>(t.data()), Shape{n, 1});  // read only: wrapped without a gradient
  };
  const TensorMap<T> g = column(gt, "gt"), b = column(base, "base"), m = column(mask, "mask");
  for (Index i = 0; i < n; ++i)
    if (b.data()[i] == T(0))
      throw Error("stockmixer::train::loss_gradients: base price of stock " + std::to_string(i) +
                  " is 0 (the return ratio divides by it)");
  autograd::Tape<T> tape;
  RankLossWorkspace workspace;
  autograd::Node<T>* pred = model.forward(tape, tape.wrap(TensorMap<T>(const_cast<T*>(x.data()), x.shape())));
  const auto out = get_loss(tape, pred, tape.wrap(g), tape.wrap(b), tape.wrap(m), alpha, workspace);
  model.zero_grad();
  tape.backward(out.loss);
  auto copy = [](const T* data, Shape shape) {
    Tensor<T> t(shape);
    std::copy(data, data + t.size(), t.data());
    return t;
  };
  const T reg = out.reg, rank = out.rank;
  NamedTensors<T> tensors;
  tensors.reserve(static_cast<std::size_t>(5 + model.parameters().count()));
  tensors.emplace_back("prediction", copy(pred->data(), pred->shape()));
  tensors.emplace_back("rr", copy(out.rr->data(), out.rr->shape()));
  tensors.emplace_back("loss", copy(out.loss->data(), out.loss->shape()));
  tensors.emplace_back("reg_loss", copy(&reg, Shape{1}));
  tensors.emplace_back("rank_loss", copy(&rank, Shape{1}));
  for (const auto& p : model.parameters()) tensors.emplace_back(p.name(), copy(p.grad(), p.shape()));
  return tensors;
}

template <class T>
std::string nonfinite_report(const NamedTensors<T>& tensors) {
  std::string lines;
  Index bad_tensors = 0;
  for (const auto& [name, t] : tensors) {
    const Index k = count_nonfinite(t.data(), t.size());
    if (k == 0) continue;
    if (++bad_tensors <= 10)
      lines += "\n  " + name + ": " + std::to_string(k) + " of " + std::to_string(t.size()) + " values";
  }
  if (bad_tensors == 0) return "";
  return std::to_string(bad_tensors) + " of the " + std::to_string(tensors.size()) + " tensors hold NaN or Inf:" +
         lines + (bad_tensors > 10 ? "\n  and " + std::to_string(bad_tensors - 10) + " more" : "");
}

}  // namespace stockmixer::train
