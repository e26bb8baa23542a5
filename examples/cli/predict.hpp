// cli/predict.hpp — stockmixer predict: scores a universe with saved weights.
#pragma once

#include "common.hpp"

namespace stockmixer::cli {

template <class T>
int predict(const Options& a) {
  require_output_file(a, "out");
  allocating("the model of " + a.str("weights"));
  StockMixer<T> model = load_checkpoint<T>(a.str("weights"));
  const Tensor<T> x = read_input<T>(a.str("input"), model.config());
  allocating("the prediction of " + a.str("input") + " and the model's activations");
  const Tensor<T>& pred = model.predict(x.map());
  // Finite weights and inputs can still overflow (weights near the float range): refuse what no caller
  // can rank by rather than write it.
  const Index bad = count_nonfinite(pred.data(), pred.size());
  if (bad > 0)
    a.fail(std::to_string(bad) + " of the " + std::to_string(pred.size()) +
           " predictions are not finite (NaN or Inf), although the weights (" + a.str("weights") + ") and the input (" +
           a.str("input") + ") are: nothing written to " + a.str("out"));
  io::write_npy<T>(a.str("out"), pred.map());
  return 0;
}

template <class T> struct Predict { static int run(const Options& a) { return predict<T>(a); } };

inline int predict_command(int argc, char** argv) {
  Options a("predict", {required("weights", "StockMixer weights (.safetensors, PyTorch state_dict names)"),
                        required("input", "features X [N, T, C], float32 or float64 .npy"),
                        required("out", "predictions [N, 1] (.npy, dtype of --precision)"), precision_option()});
  if (!parse(a, "Scores a universe with saved weights (N, T, C, M are read from the weights).", argc, argv)) return 0;
  a.validate();
  return with_precision<Predict>(a);
}

}  // namespace stockmixer::cli
