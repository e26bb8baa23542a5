// cli/gradients.hpp — stockmixer gradients: the loss, its parts and every parameter's gradient on one batch.
#pragma once

#include "common.hpp"

#include <stockmixer/io/safetensors.hpp>
#include <stockmixer/train/gradients.hpp>

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
  const train::NamedTensors<T> grads =
      train::loss_gradients<T>(model, x, gt, base, mask, static_cast<T>(a.number("alpha")));
  // A NaN or Inf anywhere (a loss that overflowed, a gradient that did) is an error, not a result: the
  // message names every such tensor (the first ten, then how many more) and nothing is written.
  const std::string bad = train::nonfinite_report(grads);
  if (!bad.empty())
    a.fail(bad + "\nthe loss or its gradients overflowed for these weights and inputs; nothing written to " +
           a.str("out"));
  std::vector<std::pair<std::string, TensorMap<const T>>> tensors;
  for (const auto& [name, t] : grads) tensors.emplace_back(name, t.map());
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
