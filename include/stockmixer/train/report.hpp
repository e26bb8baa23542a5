// stockmixer/train/report.hpp — what a run folder tells a reader: the best epoch's labelled predictions
// (predictions.csv), a report over the folder (report.md and its charts) and the short table `train`
// ends with. Everything here reads or writes files of the run folder; nothing trains.
//
//   predictions.csv  header `date,ticker,score,label,split`, then one row per target day and stock of the
//                    best epoch's validation days, then of its test days, for the stocks valid that day
//                    (window mask 1): score = the predicted return ratio the loss ranks by, rr = (pred -
//                    base) / base (SPEC §4), label = the realised return gt, split = valid or test. Within
//                    a day the stocks keep the market's order. The date is the data's date of the target
//                    day, or the day index where the data has no dates or dates that do not ascend
//                    strictly (a dates file that repeats a line). Numbers are the shortest text
//                    that reads back to the same float (or double, with --precision f64): read as float32
//                    (float64 with f64) they are exactly what the epoch's evaluation scored; read as
//                    float64 from an f32 run they differ from those by at most half a float32 ulp. A field holding a comma, a quote
//                    or a line break is refused (a ticker or date holding one). metrics::read_predictions_csv reads
//                    it.
//   report.md        from summary.json, metrics.jsonl and predictions.csv alone (`stockmixer report --run
//                    DIR` rewrites it byte for byte): the run, the best epoch's metrics beside the
//                    baselines', the training curves (loss.png) and the backtest of the best epoch's
//                    predictions with and without costs (equity.png)
//
// Tests: tests/check_report.py.
#pragma once

#include "stockmixer/common.hpp"
#include "stockmixer/io/files.hpp"
#include "stockmixer/io/input.hpp"
#include "stockmixer/io/plot.hpp"
#include "stockmixer/metrics/backtest.hpp"
#include "stockmixer/tensor.hpp"

#include <nlohmann/json.hpp>

#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace stockmixer::train {

// ---- interface -------------------------------------------------------------------------------------

inline constexpr const char* kPredictionsHeader = "date,ticker,score,label,split";

// Appends to csv the rows of one period: day d (0 <= d < score.dim(1)) is named day_names[d], stock i
// tickers[i]; a stock whose mask is below 0.5 that day has no row. score, label, mask: [N, days].
// Error when the shapes disagree or a name cannot be written unquoted (detail::check_field).
template <class T>
void append_predictions(std::string& csv, const std::string& split, const std::vector<std::string>& day_names,
                        const std::vector<std::string>& tickers, const Tensor<T>& score, const Tensor<T>& label,
                        const Tensor<T>& mask);

// The short table `stockmixer train` ends with: the best epoch's validation and test IC, Rank IC,
// ICIR, prec@10 and bt_long5, and the test days' baselines (the planted signal's on the synthetic
// market); for a --seeds summary, each figure's mean and std over the seeds.
std::string summary_table(const nlohmann::json& summary);

// What the report's backtest runs on the best epoch's predictions: top-k equal weights, Qlib's
// TopkDropout when n_drop > 0, costs in basis points of the turnover.
struct ReportOptions {
  Index topk = 5;
  Index n_drop = 0;
  double cost_bps = 10;
};

// Writes dir/report.md, dir/loss.png and dir/equity.png from dir/summary.json, dir/metrics.jsonl and
// dir/predictions.csv (each file replaced whole). The same files give the same report.md, byte for
// byte. Errors name the file that is missing or malformed; a --seeds summary is refused (its seed_<s>
// folders have a report each).
void write_report(const std::filesystem::path& dir, const ReportOptions& options = {});

// ---- implementation --------------------------------------------------------------------------------

namespace detail {

// Error unless `name` can be a field of predictions.csv as written, unquoted: no comma, quote or line
// break, no space at either end (metrics::read_predictions_csv trims them).
inline void check_field(const std::string& name, const char* what) {
  if (name.empty() || name.find_first_of(",\"\r\n") != std::string::npos || name.front() == ' ' ||
      name.back() == ' ' || name.front() == '\t' || name.back() == '\t')
    throw Error("stockmixer::train: predictions.csv: the " + std::string(what) + " '" + name +
                "' cannot be a CSV field as written (empty, or holding a comma, a quote, a line break or spaces at "
                "either end)");
}

// The shortest text that reads back to the same float or double (std::to_chars).
template <class T>
void append_number(std::string& out, T v) {
  char text[64];
  const std::to_chars_result r = std::to_chars(text, text + sizeof text, v);
  out.append(text, r.ptr);
}

}  // namespace detail

template <class T>
void append_predictions(std::string& csv, const std::string& split, const std::vector<std::string>& day_names,
                        const std::vector<std::string>& tickers, const Tensor<T>& score, const Tensor<T>& label,
                        const Tensor<T>& mask) {
  const Index n = score.dim(0), days = score.dim(1);
  if (static_cast<Index>(day_names.size()) != days || static_cast<Index>(tickers.size()) != n ||
      label.shape() != score.shape() || mask.shape() != score.shape())
    throw Error("stockmixer::train::append_predictions: " + split + ": score " + score.shape().str() + ", label " +
                label.shape().str() + ", mask " + mask.shape().str() + ", " + std::to_string(day_names.size()) +
                " day names and " + std::to_string(tickers.size()) + " tickers do not agree");
  for (const std::string& name : day_names) detail::check_field(name, "date");
  for (const std::string& name : tickers) detail::check_field(name, "ticker");
  for (Index d = 0; d < days; ++d)
    for (Index i = 0; i < n; ++i) {
      if (!(mask(i, d) >= T(0.5))) continue;
      csv += day_names[static_cast<std::size_t>(d)];
      csv += ',';
      csv += tickers[static_cast<std::size_t>(i)];
      csv += ',';
      detail::append_number(csv, score(i, d));
      csv += ',';
      detail::append_number(csv, label(i, d));
      csv += ',';
      csv += split;
      csv += '\n';
    }
}

namespace detail {

// A number of a summary with printf's format, or "n/a" where it holds none or NaN (a summary read
// back from its file has null where the run's had NaN).
inline std::string figure(const nlohmann::json& j, const char* format) {
  if (!j.is_number() || std::isnan(j.get<double>())) return "n/a";
  char text[64];
  std::snprintf(text, sizeof text, format, j.get<double>());
  return text;
}
inline const nlohmann::json& at(const nlohmann::json& j, const std::string& key) {
  static const nlohmann::json none;
  return j.is_object() && j.contains(key) ? j.at(key) : none;
}

// A metric as the table and the report show it: its name, its key in a summary, the format of its
// value and of a spread (a std, without sign).
struct MetricRow {
  const char* name;
  const char* key;
  const char* format;
  const char* spread;
};
inline constexpr MetricRow kTableMetrics[] = {{"IC", "IC", "%+.4f", "%.4f"},
                                              {"Rank IC", "rank_ic", "%+.4f", "%.4f"},
                                              {"ICIR", "RIC", "%+.3f", "%.3f"},
                                              {"prec@10", "prec_10", "%.4f", "%.4f"},
                                              {"bt_long5", "bt_long5", "%.4f", "%.4f"}};

inline std::string pad_left(const std::string& s, std::size_t width) {
  return s.size() >= width ? " " + s : std::string(width - s.size(), ' ') + s;
}
inline std::string pad_right(const std::string& s, std::size_t width) {
  return s.size() >= width ? s + " " : s + std::string(width - s.size(), ' ');
}

}  // namespace detail

inline std::string summary_table(const nlohmann::json& summary) {
  using detail::at;
  std::string out;
  const bool seeds = summary.contains("seeds");
  const std::size_t label = 24, width = seeds ? 18 : 10;
  auto header = [&](const std::string& title) {
    out += detail::pad_right(title, label);
    for (const auto& m : detail::kTableMetrics) out += detail::pad_left(m.name, width);
    out += "\n";
  };
  auto row = [&](const std::string& name, const nlohmann::json& perf) {
    out += detail::pad_right(name, label);
    for (const auto& m : detail::kTableMetrics) {
      const nlohmann::json& v = at(perf, m.key);
      std::string cell = detail::figure(v, m.format);
      if (seeds) {
        cell = detail::figure(at(v, "mean"), m.format);
        if (cell != "n/a") cell += " +- " + detail::figure(at(v, "std"), m.spread);
      }
      out += detail::pad_left(cell, width);
    }
    out += "\n";
  };
  if (seeds) {
    header("mean +- std, " + at(summary, "seeds").dump() + " seeds");
    row("valid (best epochs)", at(summary, "valid"));
    row("test (best epochs)", at(summary, "test"));
    return out;
  }
  const nlohmann::json& best = at(summary, "best_epoch");
  if (!at(summary, "test").is_object()) {
    out += "no best epoch: no completed epoch had a finite validation loss\n";
    return out;
  }
  header("best epoch " + best.dump() + " of " + at(summary, "epochs").dump());
  row("valid", at(summary, "valid"));
  row("test", at(summary, "test"));
  const nlohmann::json& base = at(summary, "baselines_test");
  row("test, zero prediction", at(base, "zero"));
  row("test, 1-day reversal", at(base, "reversal"));
  if (summary.contains("oracle_test")) row("test, planted signal", at(summary, "oracle_test"));
  return out;
}

namespace detail {

inline std::string format(const char* fmt, double v) {
  char text[64];
  std::snprintf(text, sizeof text, fmt, v);
  return text;
}
// A JSON value as text: a string without quotes, anything else as JSON writes it ("?" when absent).
inline std::string text_of(const nlohmann::json& j) {
  if (j.is_null()) return "?";
  return j.is_string() ? j.get<std::string>() : j.dump();
}

// The compounded value of a daily return series: Π_{s<=t} (1 + r_s).
inline std::vector<double> compounded(const std::vector<double>& r) {
  std::vector<double> out;
  double e = 1;
  for (double v : r) out.push_back(e *= 1 + v);
  return out;
}

// metrics.jsonl: one EpochLog a line; what the loss chart draws.
struct EpochCurves {
  std::vector<double> train, valid, test;
};
inline EpochCurves read_curves(const std::string& path) {
  const std::string text = io::read_regular_file(path, "metrics file (one JSON object per epoch)", std::uint64_t(1) << 30);
  EpochCurves c;
  std::size_t at_byte = 0;
  for (long long no = 1; at_byte < text.size(); ++no) {
    std::size_t end = text.find('\n', at_byte);
    if (end == std::string::npos) end = text.size();
    const std::string line = text.substr(at_byte, end - at_byte);
    at_byte = end + 1;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = path + ":" + std::to_string(no) + ": ";
    const std::string too_deep = io::json_depth_problem(line.data(), line.data() + line.size());
    if (!too_deep.empty()) throw Error(where + too_deep);
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      throw Error(where + "not valid JSON (" + e.what() + ")");
    }
    auto loss = [&](const char* period) {
      const nlohmann::json& v = at(at(j, period), "loss");
      if (v.is_null() && at(j, period).is_object()) return std::nan("");  // a NaN loss is written as null
      if (!v.is_number()) throw Error(where + "no number at " + period + ".loss (an epoch's line of metrics.jsonl)");
      return v.get<double>();
    };
    c.train.push_back(loss("train"));
    c.valid.push_back(loss("valid"));
    c.test.push_back(loss("test"));
  }
  return c;
}

// "the synthetic market: 200 stocks, 600 days, 5 features, returns over 1 day"
inline std::string describe_data(const nlohmann::json& d) {
  std::string source = text_of(at(d, "source"));
  if (source == "synthetic")
    source = "the synthetic market (data seed " + text_of(at(d, "seed")) + ", signal " + text_of(at(d, "signal")) +
             ", missing " + text_of(at(d, "missing")) + ")";
  else if (at(d, "market").is_string())
    source = "`" + source + "` (" + text_of(at(d, "market")) + ")";
  else
    source = "`" + source + "`";
  return source + ": " + text_of(at(d, "stocks")) + " stocks, " + text_of(at(d, "days")) + " days, " +
         text_of(at(d, "features")) + " features, returns over " + text_of(at(d, "steps")) + " day(s)";
}

inline std::string describe_split(const nlohmann::json& summary) {
  const nlohmann::json& split = at(at(summary, "provenance"), "split");
  const nlohmann::json& config = at(summary, "config");
  auto dated = [&](const std::string& day, const char* key) {
    const nlohmann::json& date = at(split, key);
    return "day " + day + (date.is_string() ? " (" + date.get<std::string>() + ")" : std::string());
  };
  const nlohmann::json& end = at(config, "test_end");
  const std::string last = end.is_number_integer() ? std::to_string(end.get<long long>() - 1)
                           : at(split, "days").is_number_integer()
                               ? std::to_string(at(split, "days").get<long long>() - 1)
                               : std::string("?");
  const nlohmann::json& start = at(config, "train_start");
  std::string s = "training windows from day " + (start.is_number_integer() ? start.dump() : std::string("0")) +
                  (at(config, "strict_split") == true
                       ? ", their targets before validation (strict split)"
                       : ", offsets before validation (the last targets fall inside it, as in the original)");
  s += "; validation from " + dated(text_of(at(config, "valid_index")), "valid_first_date") + "; test from " +
       dated(text_of(at(config, "test_index")), "test_first_date") + " to day " + last;
  return s + "; windows of " + text_of(at(config, "lookback")) + " days";
}

inline std::string markdown_row(const std::vector<std::string>& cells) {
  std::string s = "|";
  for (const std::string& c : cells) s += " " + c + " |";
  return s + "\n";
}

}  // namespace detail

inline void write_report(const std::filesystem::path& dir, const ReportOptions& options) {
  using detail::at;
  using detail::figure;
  using detail::markdown_row;
  const std::string summary_path = (dir / "summary.json").string();
  const nlohmann::json summary = io::read_json_file(summary_path, "run summary", std::uint64_t(1) << 26);
  if (!summary.is_object()) throw Error(summary_path + ": expected a JSON object (a run's summary)");
  if (summary.contains("seeds"))
    throw Error(summary_path + ": the summary of " + at(summary, "seeds").dump() +
                " seeds (--seeds): each of its seed_<s> folders holds one run and its report");
  const detail::EpochCurves curves = detail::read_curves((dir / "metrics.jsonl").string());

  std::string md = "# StockMixer run report\n\n";
  md += "Written by `stockmixer train` at the end of the run, and again by `stockmixer report --run DIR`, from this "
        "folder's summary.json (metrics), metrics.jsonl (curves) and predictions.csv (backtest) alone.\n\n";
  md += "| | |\n|---|---|\n";
  md += markdown_row({"data", detail::describe_data(at(summary, "data"))});
  md += markdown_row({"split", detail::describe_split(summary)});
  const nlohmann::json& config = at(summary, "config");
  md += markdown_row({"training", detail::text_of(at(summary, "epochs")) + " of " +
                                      detail::text_of(at(config, "epochs")) + " epochs" +
                                      (at(summary, "interrupted") == true ? " (interrupted: continue with --resume)" : "") +
                                      "; lr " + detail::text_of(at(config, "lr")) + ", alpha " +
                                      detail::text_of(at(config, "alpha")) + ", seed " +
                                      detail::text_of(at(config, "seed")) + ", " +
                                      detail::text_of(at(summary, "precision")) + ", " +
                                      detail::text_of(at(summary, "parameters")) + " parameters"});
  const bool has_best = at(summary, "valid").is_object() && at(summary, "test").is_object();
  md += markdown_row({"best epoch", has_best ? detail::text_of(at(summary, "best_epoch")) + " (lowest validation loss)"
                                             : "none: no completed epoch had a finite validation loss"});

  // The metrics of the best epoch beside the baselines' on the same test days.
  md += "\n## Metrics of the best epoch\n\n";
  md += "IC: the daily Pearson correlation of score and realised return over all stocks (invalid ones as zeros), "
        "averaged (the original's); ICIR: its mean over its std; Rank IC and Rank ICIR: the same with Spearman over "
        "the valid stocks; prec@10: the share of the daily top 10 with a return >= 0; sharpe5: the daily top 5's "
        "mean return over its std, times 15.87; bt_long5: 1 + the sum of the daily top 5's mean returns. The "
        "baselines are scored on the test days with the same masks (docs/metrics.md).\n\n";
  const nlohmann::json& base = at(summary, "baselines_test");
  std::vector<std::pair<std::string, const nlohmann::json*>> columns = {{"valid", &at(summary, "valid")},
                                                                        {"test", &at(summary, "test")},
                                                                        {"zero (test)", &at(base, "zero")},
                                                                        {"1-day reversal (test)", &at(base, "reversal")}};
  if (summary.contains("oracle_test")) columns.push_back({"planted signal (test)", &at(summary, "oracle_test")});
  std::vector<std::string> header = {"metric"}, rule = {"---"};
  for (const auto& c : columns) header.push_back(c.first), rule.push_back("---:");
  md += markdown_row(header) + markdown_row(rule);
  const detail::MetricRow rows[] = {{"IC", "IC", "%+.4f", ""},           {"ICIR", "RIC", "%+.3f", ""},
                                    {"Rank IC", "rank_ic", "%+.4f", ""}, {"Rank ICIR", "rank_icir", "%+.3f", ""},
                                    {"prec@10", "prec_10", "%.4f", ""},  {"sharpe5", "sharpe5", "%+.3f", ""},
                                    {"bt_long5", "bt_long5", "%.4f", ""}, {"mse", "mse", "%.4e", ""},
                                    {"days", "days", "%.0f", ""}};
  for (const auto& r : rows) {
    std::vector<std::string> cells = {r.name};
    for (const auto& c : columns) cells.push_back(figure(at(*c.second, r.key), r.format));
    md += markdown_row(cells);
  }

  // The training curves.
  md += "\n## Training curves\n\n";
  md += "The mean loss (MSE + alpha x rank loss) per epoch, from metrics.jsonl: training over its steps, validation "
        "and test over their days.\n\n![loss per epoch](loss.png)\n";
  io::write_line_chart((dir / "loss.png").string(), "loss (x: epoch)",
                       {{"train", curves.train, {31, 119, 180}},
                        {"valid", curves.valid, {255, 127, 14}},
                        {"test", curves.test, {44, 160, 44}}});

  // The backtest of the best epoch's predictions.
  md += "\n## Backtest of the best epoch's predictions\n\n";
  if (!has_best) {
    md += "No best epoch, so no predictions.csv to trade on.\n";
    std::filesystem::remove(dir / "equity.png");
    io::write_file((dir / "report.md").string(), md);
    return;
  }
  md += "From predictions.csv, each split alone: every day equal weights 1/" + std::to_string(options.topk) +
        " on the " + std::to_string(options.topk) + " highest scores among the valid stocks" +
        (options.n_drop > 0 ? " (Qlib's TopkDropout, dropping " + std::to_string(options.n_drop) + " a day)"
                            : std::string()) +
        "; gross is before costs, net after " + detail::format("%g", options.cost_bps) +
        " bps of the day's turnover; the market is the equal-weight mean of the valid stocks' returns "
        "(docs/metrics.md).\n\n";
  const std::string predictions_path = (dir / "predictions.csv").string();
  // One column per split and series: its figures, with the split's turnover and days beside them.
  std::vector<std::pair<std::string, nlohmann::json>> bt_columns;
  std::vector<std::string> failures;
  metrics::BacktestResult test_result;
  bool test_ran = false;
  for (const std::string split : {"valid", "test"}) {
    const metrics::LabelledPredictions p = metrics::read_predictions_csv(predictions_path, split);
    try {
      metrics::BacktestResult r =
          metrics::backtest(p.score, p.label, p.mask, options.topk, options.n_drop, options.cost_bps);
      const nlohmann::json j = r.to_json();
      for (const char* series : {"gross", "net", "market"}) {
        nlohmann::json figures = j.at(series);
        figures["days"] = j.at("days");
        if (std::string(series) != "market") figures["turnover_mean"] = j.at("turnover_mean");
        bt_columns.push_back({split + ", " + series, figures});
      }
      if (split == "test") test_result = std::move(r), test_ran = true;
    } catch (const Error& e) {
      failures.push_back(split + " days: " + e.what());
    }
  }
  if (!bt_columns.empty()) {
    std::vector<std::string> bt_header = {"figure"}, bt_rule = {"---"};
    for (const auto& c : bt_columns) bt_header.push_back(c.first), bt_rule.push_back("---:");
    md += markdown_row(bt_header) + markdown_row(bt_rule);
    const detail::MetricRow bt_rows[] = {{"cumulative return, additive (1 + sum)", "cum_additive", "%.4f", ""},
                                         {"cumulative return, compounded", "cum_compound", "%.4f", ""},
                                         {"annual return (mean x 252)", "annual_return", "%+.4f", ""},
                                         {"annual volatility", "annual_vol", "%.4f", ""},
                                         {"Sharpe ratio", "sharpe", "%+.3f", ""},
                                         {"max drawdown", "max_drawdown", "%.4f", ""},
                                         {"mean daily turnover", "turnover_mean", "%.4f", ""},
                                         {"days", "days", "%.0f", ""}};
    for (const auto& r : bt_rows) {
      std::vector<std::string> cells = {r.name};
      for (const auto& c : bt_columns)
        cells.push_back(c.second.contains(r.key) ? figure(c.second.at(r.key), r.format) : std::string());
      md += markdown_row(cells);
    }
  }
  for (const std::string& f : failures) md += "\nThe backtest did not run on " + f + "\n";
  if (test_ran) {
    md += "\nThe test days' equity (compounded), net and gross of costs, against the equal-weight market:\n\n"
          "![test equity](equity.png)\n";
    io::write_line_chart((dir / "equity.png").string(), "test equity, compounded (x: test day)",
                         {{"market", detail::compounded(test_result.market), {127, 127, 127}},
                          {"gross", detail::compounded(test_result.gross), {31, 119, 180}},
                          {"net", test_result.equity, {214, 39, 40}}});
  } else {
    std::filesystem::remove(dir / "equity.png");  // an older run's chart would be read as this one's
  }
  io::write_file((dir / "report.md").string(), md);
}

}  // namespace stockmixer::train
