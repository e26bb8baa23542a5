// cli/gradients.hpp — stockmixer gradients: the loss, its parts and every parameter's gradient on one batch.
#pragma once

#include "common.hpp"

#include <stockmixer/autograd/tape.hpp>
#include <stockmixer/io/safetensors.hpp>
#include <stockmixer/loss.hpp>

namespace stockmixer::cli {

template <class T>
int gradients(const Options& a) {
  require_output_file(a, "out");
  allocating("the model of " + a.str("weights"));
  StockMixer<T> model = load_checkpoint<T>(a.str("weights"));
  const Index n = model.config().stocks;
  const Tensor<T> x = read_input<T>(a.str("input"), model.config());
  const Tensor<T> gt = read_column<T>(a.str("gt"), n), base = read_column<T>(a.str("base"), n),
                  mask = read_column<T>(a.str("mask"), n);
  for (Index i = 0; i < n; ++i)
    if (base(i, 0) == T(0)) throw Error(a.str("base") + ": base price of stock " + std::to_string(i) + " is 0");
  allocating("the tape and the gradients of " + a.str("weights"));
  autograd::Tape<T> tape;
  RankLossWorkspace workspace;
  auto wrap = [&](const Tensor<T>& t) { return tape.wrap(TensorMap<T>(const_cast<T*>(t.data()), t.shape())); };
  auto* pred = model.forward(tape, wrap(x));
  const auto out =
      get_loss(tape, pred, wrap(gt), wrap(base), wrap(mask), static_cast<T>(a.number("alpha")), workspace);
  model.zero_grad();
  tape.backward(out.loss);
  const T reg = out.reg, rank = out.rank;
  std::vector<std::pair<std::string, TensorMap<const T>>> tensors = {
      {"prediction", TensorMap<const T>(pred->value)},
      {"rr", TensorMap<const T>(out.rr->value)},
      {"loss", TensorMap<const T>(out.loss->value)},
      {"reg_loss", TensorMap<const T>(&reg, Shape{1})},
      {"rank_loss", TensorMap<const T>(&rank, Shape{1})}};
  for (const auto& p : model.parameters()) tensors.emplace_back(p.name(), TensorMap<const T>(p.grad(), p.shape()));
  // A NaN or Inf anywhere (a loss that overflowed, a gradient that did) is an error, not a result: the
  // message names every such tensor (the first ten, then how many more) and nothing is written.
  std::string bad;
  Index bad_tensors = 0;
  for (const auto& [name, t] : tensors) {
    const Index k = count_nonfinite(t.data(), t.size());
    if (k == 0) continue;
    if (++bad_tensors <= 10)
      bad += "\n  " + name + ": " + std::to_string(k) + " of " + std::to_string(t.size()) + " values";
  }
  if (bad_tensors > 0)
    a.fail(std::to_string(bad_tensors) + " of the " + std::to_string(tensors.size()) +
           " tensors hold NaN or Inf (the loss or its gradients overflowed for these weights and inputs); nothing "
           "written to " + a.str("out") + ":" + bad +
           (bad_tensors > 10 ? "\n  and " + std::to_string(bad_tensors - 10) + " more" : ""));
  io::save_safetensors<T>(a.str("out"), tensors,
                          {{"content", "stockmixer gradients: outputs of get_loss and d(loss)/d(parameter)"},
                           {"alpha", a.str("alpha")}});
  return 0;
}

template <class T> struct Gradients { static int run(const Options& a) { return gradients<T>(a); } };

inline int gradients_command(int argc, char** argv) {
  Options a("gradients",
            {required("weights", "StockMixer weights (.safetensors)"), required("input", "features X [N, T, C] (.npy)"),
             required("gt", "realised returns [N, 1] (.npy)"), required("base", "base prices [N, 1] (.npy)"),
             required("mask", "mask [N, 1] (.npy)"), real("alpha", "0.1", "weight of the rank loss", 0, 1e6),
             required("out", "output .safetensors"), precision_option()});
  if (!parse(a,
             "Runs the model and get_loss on one batch and writes prediction, rr, loss, reg_loss, rank_loss and the\n"
             "gradient of every parameter under its PyTorch name: compare them with PyTorch's.",
             argc, argv))
    return 0;
  a.validate();
  return with_precision<Gradients>(a);
}

}  // namespace stockmixer::cli
