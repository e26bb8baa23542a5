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
             "Writes metrics.jsonl, best.safetensors and summary.json to --out. Options can also come from\n"
             "--config FILE (a JSON object, keys = option names).",
             argc, argv))
    return 0;
  if (!a.str("config").empty()) a.apply_config(a.str("config"));
  a.validate();
  // Ctrl-C: the run finishes its current step, writes the summary of its completed epochs and stops.
  std::signal(SIGINT, [](int) { interrupt_requested.store(true); });
  const json summary = train::train_job(a, {&std::cerr, nullptr, &interrupt_requested});
  std::cout << summary.dump(1) << "\n";
  return 0;
}

}  // namespace stockmixer::cli
