// cli/train.hpp — stockmixer train: train::train_job with the command line's options, Ctrl-C stopping
// the run after its current step.
#pragma once

#include "common.hpp"

#include <stockmixer/train/job.hpp>

#include <csignal>

namespace stockmixer::cli {

inline int train_command(int argc, char** argv) {
  Options a("train", train::train_options());
  if (!parse(a,
             "Trains StockMixer with the original protocol (shuffled offsets, one date per step, validation and test\n"
             "every epoch, the epoch with the best validation loss kept) on real end-of-day data (--data) or on the\n"
             "built-in synthetic market (a planted, learnable cross-sectional signal; docs/synthetic_market.md).\n"
             "Writes metrics.jsonl, best.safetensors, summary.json, predictions.csv (the best epoch's scores and\n"
             "realised returns on the validation and test days) and report.md (with loss.png and equity.png) to\n"
             "--out, and prints a short table of the best epoch. Options can also come from --config FILE (a JSON\n"
             "object, keys = option names).",
             argc, argv))
    return 0;
  if (!a.str("config").empty()) a.apply_config(a.str("config"));
  a.validate();
  // Ctrl-C: the run finishes its current step, writes the summary of its completed epochs and stops.
  std::signal(SIGINT, [](int) { interrupt_requested.store(true); });
  const json summary = train::train_job(a, {&std::cerr, nullptr, &interrupt_requested});
  // The table of the best epoch; every figure is in the summary.json it names.
  const fs::path out = a.str("out");
  std::cout << train::summary_table(summary);
  if (summary.contains("seeds"))
    std::cout << "every figure: " << (out / "summary.json").string() << "; each run, with its report.md: "
              << (out / "seed_<s>").string() << "/\n";
  else
    std::cout << "every figure: " << (out / "summary.json").string() << "; the report: " << (out / "report.md").string()
              << "; the best epoch's predictions: " << (out / "predictions.csv").string() << "\n";
  return 0;
}

}  // namespace stockmixer::cli
