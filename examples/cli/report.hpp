// cli/report.hpp — stockmixer report: report.md (and loss.png, equity.png) over a run folder, from its
// summary.json, metrics.jsonl and predictions.csv alone (train/report.hpp); what `train` writes at the
// end of a run, byte for byte with the same options.
#pragma once

#include "common.hpp"

#include <stockmixer/io/files.hpp>
#include <stockmixer/train/report.hpp>

namespace stockmixer::cli {

inline int report_command(int argc, char** argv) {
  Options a("report", {required("run", "a run folder written by stockmixer train (one run: not a --seeds folder)"),
                       integer("topk", "5", "backtest: stocks held each day (equal weights)", 1, kMaxStocks),
                       integer("n-drop", "0", "backtest: Qlib's TopkDropout, stocks replaced a day (0: plain top-k)",
                               0, kMaxStocks),
                       real("cost-bps", "10", "backtest: cost per unit of turnover, in basis points", 0, 10'000)});
  if (!parse(a,
             "Writes RUN/report.md, RUN/loss.png and RUN/equity.png from the run's summary.json, metrics.jsonl and\n"
             "predictions.csv: the best epoch's metrics beside the baselines, the loss curves, and a backtest of the\n"
             "best epoch's predictions with and without costs. `train` writes the same report with the defaults.",
             argc, argv))
    return 0;
  a.validate();
  const fs::path run = a.str("run");
  std::error_code ec;
  if (!fs::is_directory(run, ec)) a.fail("--run " + run.string() + ": not a folder");
  train::ReportOptions o;
  o.topk = a.integer("topk");
  o.n_drop = a.integer("n-drop");
  o.cost_bps = a.number("cost-bps");
  const io::FolderLock lock(run);  // a train still writing there would change the files under us
  train::write_report(run, o);
  std::cout << (run / "report.md").string() << "\n";
  return 0;
}

}  // namespace stockmixer::cli
