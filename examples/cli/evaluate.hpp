// cli/evaluate.hpp — stockmixer evaluate: the original evaluator and named extras on saved arrays.
#pragma once

#include "common.hpp"

#include <stockmixer/metrics/evaluate.hpp>

namespace stockmixer::cli {

inline int evaluate(const Options& a) {
  const Tensor<double> pred = io::read_npy<double>(a.str("pred")), gt = io::read_npy<double>(a.str("gt")),
                       mask = io::read_npy<double>(a.str("mask"));
  for (const auto& [t, name] : {std::pair<const Tensor<double>*, std::string>{&pred, "pred"}, {&gt, "gt"}, {&mask, "mask"}})
    if (t->rank() != 2) a.fail(a.str(name) + ": shape " + t->shape().str() + ", expected [N, days]");
  std::cout << metrics::evaluate(pred, gt, mask).to_json().dump(1) << "\n";
  return 0;
}

inline int evaluate_command(int argc, char** argv) {
  Options a("evaluate", {required("pred", "predicted return ratios [N, days] (.npy)"),
                         required("gt", "realised return ratios [N, days] (.npy)"),
                         required("mask", "1 where the stock counts that day, else 0 [N, days] (.npy)")});
  if (!parse(a,
             "Scores predictions with the original evaluate (mse, IC, RIC, prec_10, sharpe5, mrr_top, the cumulative\n"
             "top-1/5/10 backtests) and named extras (rank_ic: mean daily Spearman over valid stocks, its IR, the\n"
             "Pearson IC over valid stocks and its IR); prints JSON. docs/metrics.md defines each.",
             argc, argv))
    return 0;
  a.validate();
  return evaluate(a);
}

}  // namespace stockmixer::cli
