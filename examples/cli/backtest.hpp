// cli/backtest.hpp — stockmixer backtest: the top-K (or TopkDropout) backtest with costs
// (metrics/backtest.hpp) on saved arrays or on a run's predictions.csv; writes backtest.json, daily.csv
// and equity.png into --out.
#pragma once

#include "common.hpp"

#include <stockmixer/io/files.hpp>
#include <stockmixer/io/plot.hpp>
#include <stockmixer/metrics/backtest.hpp>

#include <cstdio>

namespace stockmixer::cli {

inline int backtest(const Options& a) {
  const bool csv = !a.str("predictions").empty();
  const bool arrays = !a.str("pred").empty() || !a.str("gt").empty() || !a.str("mask").empty();
  if (csv == arrays)
    a.fail(csv ? "give either --predictions or --pred, --gt and --mask, not both"
               : "give --pred, --gt and --mask (.npy), or --predictions (predictions.csv)");
  if (arrays)
    for (const char* name : {"pred", "gt", "mask"})
      if (a.str(name).empty()) a.fail(std::string("--") + name + " is missing: --pred, --gt and --mask go together");
  if (!csv && a.given("split")) a.fail("--split selects rows of --predictions; the .npy inputs have no split");
  const Index topk = a.integer("topk"), n_drop = a.integer("n-drop");
  const double cost_bps = a.number("cost-bps");

  // --out: a folder (created when absent, in a folder that exists); its three files replaced whole.
  const fs::path out = a.str("out");
  std::error_code ec;
  const fs::file_type out_type = fs::symlink_status(out, ec).type();
  if (out_type == fs::file_type::not_found) {
    const fs::path parent = out.has_parent_path() ? out.parent_path() : fs::path(".");
    if (!fs::is_directory(parent, ec))
      a.fail("--out " + out.string() + ": the folder " + parent.string() + " does not exist");
  } else if (out_type != fs::file_type::directory) {
    a.fail("--out " + out.string() + ": exists and is " + file_kind(out_type) + ", not a folder");
  }
  for (const char* name : {"backtest.json", "daily.csv", "equity.png"}) {
    const fs::file_type type = fs::symlink_status(out / name, ec).type();
    if (type != fs::file_type::not_found && type != fs::file_type::regular)
      a.fail("--out " + (out / name).string() + ": exists and is " + file_kind(type) + ", not a regular file: not replaced");
  }

  // The inputs as [N, days] arrays, and the label of each day.
  Tensor<double> pred, gt, mask;
  std::vector<std::string> days;
  std::string source;
  if (csv) {
    metrics::LabelledPredictions p = metrics::read_predictions_csv(a.str("predictions"), a.str("split"));
    pred = std::move(p.score);
    gt = std::move(p.label);
    mask = std::move(p.mask);
    days = std::move(p.dates);
    source = a.str("predictions") + (a.str("split").empty() ? "" : " (split " + a.str("split") + ")");
  } else {
    pred = io::read_npy<double>(a.str("pred"));
    gt = io::read_npy<double>(a.str("gt"));
    mask = io::read_npy<double>(a.str("mask"));
    for (const auto& [t, name] : {std::pair<const Tensor<double>*, std::string>{&pred, "pred"}, {&gt, "gt"}, {&mask, "mask"}})
      if (t->rank() != 2) a.fail("--" + name + " " + a.str(name) + ": shape " + t->shape().str() + ", expected [N, days]");
    if (pred.shape() != gt.shape() || pred.shape() != mask.shape())
      a.fail("--pred " + a.str("pred") + " is " + pred.shape().str() + ", --gt " + a.str("gt") + " is " +
             gt.shape().str() + ", --mask " + a.str("mask") + " is " + mask.shape().str() + ": expected one [N, days]");
    for (const auto& [t, name] : {std::pair<const Tensor<double>*, std::string>{&pred, "pred"}, {&gt, "gt"}, {&mask, "mask"}})
      for (Index k = 0; k < t->size(); ++k)
        if (!std::isfinite(t->data()[k]))
          a.fail("--" + name + " " + a.str(name) + ": " + std::to_string(t->data()[k]) + " at stock " +
                 std::to_string(k / t->dim(1)) + ", day " + std::to_string(k % t->dim(1)) + ": expected finite values");
    for (Index t = 0; t < pred.dim(1); ++t) days.push_back(std::to_string(t));
    source = a.str("pred");
  }
  const Index N = pred.dim(0), D = pred.dim(1);
  if (topk > N) a.fail("--topk " + std::to_string(topk) + ": " + source + " holds " + std::to_string(N) + " stocks");
  for (Index t = 0; t < D; ++t) {
    Index valid = 0;
    for (Index n = 0; n < N; ++n) valid += mask(n, t) >= 0.5;
    if (valid < topk)
      a.fail("--topk " + std::to_string(topk) + ": " + (csv ? "date " : "day ") + days[static_cast<std::size_t>(t)] +
             " of " + source + " has " + std::to_string(valid) + " valid stocks (" +
             (csv ? "rows" : "mask >= 0.5") + "): at least topk are needed every day");
  }

  const metrics::BacktestResult r = metrics::backtest(pred, gt, mask, topk, n_drop, cost_bps);

  // daily.csv: one row a day; numbers with 17 significant digits (they read back to the same doubles).
  std::string daily = std::string(csv ? "date" : "day") + ",gross,cost,net,turnover,equity\n";
  char buf[160];
  for (Index t = 0; t < D; ++t) {
    const auto s = static_cast<std::size_t>(t);
    std::snprintf(buf, sizeof buf, ",%.17g,%.17g,%.17g,%.17g,%.17g\n", r.gross[s], r.cost[s], r.net[s], r.turnover[s],
                  r.equity[s]);
    daily += days[s] + buf;
  }
  // equity.png: compounded equity of the strategy after costs, before costs, and of the market.
  auto compounded = [](const std::vector<double>& daily_returns) {
    std::vector<double> e;
    double v = 1;
    for (double x : daily_returns) e.push_back(v *= 1 + x);
    return e;
  };
  std::string title = "Top-" + std::to_string(topk) + (n_drop > 0 ? " dropout " + std::to_string(n_drop) : "") +
                      ": equity, " + days.front() + " to " + days.back();
  const std::vector<io::Series> curves{
      {"market (equal weight, valid stocks)", compounded(r.market), {150, 150, 150}},
      {"gross", compounded(r.gross), {40, 90, 200}},
      {"net of " + a.str("cost-bps") + " bps", r.equity, {200, 40, 40}}};

  if (out_type == fs::file_type::not_found && !fs::create_directory(out, ec) && !fs::is_directory(out))
    a.fail("--out " + out.string() + ": cannot create the folder (" + ec.message() + ")");
  const nlohmann::json summary = r.to_json();
  io::write_file((out / "backtest.json").string(), summary.dump(1) + "\n");
  io::write_file((out / "daily.csv").string(), daily);
  io::write_line_chart((out / "equity.png").string(), title, curves);
  std::cout << summary.dump(1) << "\n";
  return 0;
}

inline int backtest_command(int argc, char** argv) {
  Option topk = integer("topk", "", "stocks held each day, with equal weights 1/K", 1, kMaxStocks);
  topk.required = true;
  Options a("backtest",
            {text("pred", "", "predicted scores [N, days] (.npy); with --gt and --mask"),
             text("gt", "", "realised returns [N, days] (.npy)"),
             text("mask", "", "1 where the stock can be held that day, else 0 [N, days] (.npy)"),
             text("predictions", "", "instead of the arrays: a predictions.csv written by train (date,ticker,score,label,split)"),
             text("split", "test", "with --predictions: the rows of this split (valid, test; empty: every row)"),
             topk,
             integer("n-drop", "0", "Qlib's TopkDropout: at most this many held stocks replaced a day (0: the top K every day)",
                     0, kMaxStocks),
             real("cost-bps", "0", "cost per unit of turnover, in basis points (10 = 0.1 % of the value traded)", 0, 10'000),
             required("out", "folder for backtest.json, daily.csv and equity.png (created if absent)")});
  if (!parse(a,
             "Backtests a long-only portfolio: each day the K best-scored valid stocks at equal weights (or Qlib's\n"
             "TopkDropout with --n-drop), paying --cost-bps on the turnover. Writes backtest.json (gross, net and the\n"
             "equal-weight market: cumulative additive and compounded return, annual return and volatility, Sharpe\n"
             "ratio, maximum drawdown; mean turnover), daily.csv and equity.png; prints backtest.json.\n"
             "docs/metrics.md defines each figure.",
             argc, argv))
    return 0;
  a.validate();
  return backtest(a);
}

}  // namespace stockmixer::cli
