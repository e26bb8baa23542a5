// stockmixer — the command-line tool. Each subcommand lives in cli/<name>.hpp; this file holds the
// table of them and main, which turns every error into a message and an exit status.
//
//   stockmixer predict   --weights W.safetensors --input X.npy --out P.npy
//   stockmixer gradients --weights W --input X.npy --gt G.npy --base B.npy --mask K.npy --out OUT.safetensors
//   stockmixer train     [--out DIR] [--epochs E] ... (the built-in synthetic market, or --data DIR)
//   stockmixer bench     [--stocks N --lookback T --features C --market M --threads K --iters I]
//
// Every subcommand has --help. Arrays are .npy, weights .safetensors, reports JSON.
#include "cli/backtest.hpp"
#include "cli/bench.hpp"
#include "cli/dataset.hpp"
#include "cli/evaluate.hpp"
#include "cli/gradients.hpp"
#include "cli/predict.hpp"
#include "cli/report.hpp"
#include "cli/sweep.hpp"
#include "cli/train.hpp"

#include <csignal>
#include <iostream>
#include <new>
#include <string>

using namespace stockmixer;

namespace {

struct Command {
  const char* name;
  const char* summary;
  int (*run)(int argc, char** argv);
};

const Command kCommands[] = {
    {"predict", "score a universe: weights + X [N, T, C] -> predictions [N, 1]", cli::predict_command},
    {"gradients", "the loss, its parts and d(loss)/d(every parameter), as a safetensors file", cli::gradients_command},
    {"train", "train StockMixer (real end-of-day data or the built-in synthetic market)", cli::train_command},
    {"bench", "time inference, a training step and the loss on random data", cli::bench_command},
    {"evaluate", "the original evaluator (and named extras) on predictions, returns and a mask", cli::evaluate_command},
    {"dataset", "write the arrays training sees (eod, mask, gt, price) as .npy", cli::dataset_command},
    {"report", "report.md over a run folder: metrics, baselines, loss curves, a backtest with costs", cli::report_command},
    {"backtest", "top-K (or TopkDropout) backtest with costs: backtest.json, daily.csv, equity.png", cli::backtest_command},
    {"sweep", "train a grid of jobs (seeds, hyperparameters; MPI ranks share them) and rank them", cli::sweep_command},
    {"walk", "walk-forward retraining: one job per rolling window, out-of-sample predictions stitched", cli::walk_command},
};

std::string usage() {
  std::string s = "usage: stockmixer <command> [options]   (stockmixer <command> --help for its options)\n\ncommands:\n";
  for (const Command& c : kCommands) s += "  " + std::string(c.name) + std::string(12 - std::string(c.name).size(), ' ') + c.summary + "\n";
  return s;
}

int run(int argc, char** argv) {
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
    std::cout << usage();
    return argc < 2 ? 2 : 0;
  }
  const std::string cmd = argv[1];
  for (const Command& c : kCommands)
    if (cmd == c.name) return c.run(argc, argv);
  std::cerr << "stockmixer: unknown command '" << cmd << "'\n\n" << usage();
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
#if defined(SIGXFSZ)
  // Past the file-size limit (ulimit -f) a write then fails with EFBIG, which io::write_file reports
  // naming the file and leaving the old one, instead of the signal killing the process mid-write.
  std::signal(SIGXFSZ, SIG_IGN);
#endif
  const std::string command_name = argc > 1 ? argv[1] : "";
  int status = 0;
  try {
    status = run(argc, argv);
  } catch (const train::Interrupted& e) {
    std::cerr << e.what() << "\n";
    return 130;  // as a shell reports a run stopped by SIGINT
  } catch (const std::bad_alloc&) {
    std::cerr << "stockmixer " << command_name << ": out of memory while allocating " << allocating_now() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << e.what() << "\n";
    return 1;
  }
  // A report cut short (a full disk, a closed pipe) is an error, not a result.
  std::cout.flush();
  if (!std::cout) {
    std::cerr << "stockmixer " << command_name << ": cannot write to the standard output\n";
    return 1;
  }
  return status;
}
