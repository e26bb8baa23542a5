// stockmixer/train/run.hpp — a training run as `stockmixer train` makes it, for any caller: the market
// (a folder laid out as the original's, or the built-in synthetic one), the original protocol
// (Trainer), and the run folder it leaves:
//
//   metrics.jsonl      one EpochLog a line, written as each epoch ends
//   best.safetensors   the weights of the epoch with the lowest validation loss, with the training
//                      configuration, the data's description and the epoch in the metadata
//   summary.json       that epoch's validation and test metrics beside the baselines' (the zero
//                      prediction and the 1-day reversal), on the synthetic market the planted
//                      signal's own, and the run's configuration
//
// run_seeds makes K such runs, seed after seed, in <out>/seed_<s>/, and writes their mean and
// population std per metric in <out>/summary.json.
#pragma once

#include "stockmixer/data/eod.hpp"
#include "stockmixer/data/market.hpp"
#include "stockmixer/model.hpp"
#include "stockmixer/parallel.hpp"
#include "stockmixer/train/trainer.hpp"

#include <nlohmann/json.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <ostream>
#include <sstream>
#include <string>
#include <vector>

namespace stockmixer::train {

// ---- interface -------------------------------------------------------------------------------------

// Where a run's market comes from: a folder laid out as ../shared/data/NASDAQ, or (folder empty) the
// synthetic market of `synthetic` (its steps replaced by `steps`).
struct DataSource {
  std::string folder;
  std::string market = "NASDAQ";  // NASDAQ, NYSE or SP500 (SP500 reads <folder>/SP500.npy)
  std::string tickers;            // a ticker list replacing the market's
  Index steps = 1;                // return horizon in days
  data::SyntheticOptions synthetic;
};

// The market and what a summary says of it.
template <class T>
struct RunData {
  data::Market<T> market;
  nlohmann::json description;
  Index valid_index = 0, test_index = 0;  // this data's default split
  double signal = 0;                      // synthetic only: the planted signal's strength
};
template <class T>
RunData<T> load_data(const DataSource& source);

// The baselines of the original protocol's periods, through the same evaluator: the zero prediction
// (a constant: its IC is undefined, NaN, as in the original) and the 1-day reversal factor
// rr_i = -(close_i[t] / close_i[t-1] - 1), read from the last two days of the window's close column.
struct Baselines {
  metrics::Performance zero, reversal;
  nlohmann::json to_json() const { return {{"zero", zero.to_json()}, {"reversal", reversal.to_json()}}; }
};
template <class T>
Baselines evaluate_baselines(const data::Market<T>& market, Index lookback, Index start, Index end);

struct RunOptions {
  std::filesystem::path out = "stockmixer-run";
  bool overwrite = false;                 // replace a run already in `out`
  std::string init_weights;               // start from these weights (.safetensors) instead of the seeded init
  std::vector<std::vector<Index>> order;  // replay: every epoch's window offsets (empty: shuffle)
  std::string order_file;                 // where `order` came from, for the summary
  std::string precision = "f32";          // for the summary
  std::ostream* progress = nullptr;       // human-readable lines as the run goes (null: none)
  std::function<bool(const EpochLog&)> on_epoch;  // after each epoch; false stops the run there
};

// A replay file: one line per epoch of that epoch's window offsets (blank lines skipped), each line
// checked by order_problem; exactly config.epochs of them. Errors name the file and the line.
std::vector<std::vector<Index>> read_order(const std::string& path, const TrainConfig& config, Index steps);

// One run into options.out; returns the summary (also written as summary.json). Everything it reads
// (initial weights, the replay order) is checked before the folder is touched.
template <class T>
nlohmann::json run(const RunData<T>& data, const TrainConfig& config, const RunOptions& options);

// Runs with seeds config.seed, config.seed + 1, ... in out/seed_<s>/; returns (and writes as
// out/summary.json) every metric's mean and population std over the seeds.
template <class T>
nlohmann::json run_seeds(const RunData<T>& data, TrainConfig config, Index seeds, const RunOptions& options);

// ---- implementation --------------------------------------------------------------------------------

template <class T>
RunData<T> load_data(const DataSource& source) {
  RunData<T> d;
  if (source.folder.empty()) {
    data::SyntheticOptions so = source.synthetic;
    so.steps = source.steps;
    d.market = data::synthetic_market<T>(so);
    d.description = {{"source", "synthetic"}, {"stocks", so.stocks}, {"days", so.days}, {"features", so.features},
                     {"seed", so.seed},       {"signal", so.signal}, {"missing", so.missing}, {"steps", so.steps}};
    d.valid_index = so.days * 61 / 100;  // NASDAQ's proportions: 756 / 1245 and 1008 / 1245
    d.test_index = so.days * 81 / 100;
    d.signal = so.signal;
    return d;
  }
  if (source.market == "SP500")
    d.market = data::load_sp500_npy<T>((std::filesystem::path(source.folder) / "SP500.npy").string(), source.steps);
  else
    d.market = data::load_market_dir<T>(source.folder, source.market, source.tickers, source.steps).market;
  d.description = {{"source", source.folder},         {"market", source.market},
                   {"tickers", source.tickers},       {"stocks", d.market.stocks()},
                   {"days", d.market.days()},         {"features", d.market.features()},
                   {"steps", source.steps}};
  d.valid_index = 756;  // the original's split (src/train.py), for every market
  d.test_index = 1008;
  return d;
}

template <class T>
Baselines evaluate_baselines(const data::Market<T>& market, Index lookback, Index start, Index end) {
  if (lookback < 2) throw Error("stockmixer::train::evaluate_baselines: the reversal needs a lookback of 2 or more");
  data::Batch<T> batch;
  Tensor<T> pred, gt, mask;
  Baselines b;
  sweep_period(market, lookback, start, end, batch, pred, gt, mask, [](const data::Batch<T>&, Tensor<T>& rr) {
    rr.zero();
  });
  b.zero = metrics::evaluate(pred, gt, mask);
  const Index c = market.features();
  sweep_period(market, lookback, start, end, batch, pred, gt, mask, [&](const data::Batch<T>& w, Tensor<T>& rr) {
    for (Index i = 0; i < market.stocks(); ++i)
      rr(i, 0) = -(w.x(i, lookback - 1, c - 1) / w.x(i, lookback - 2, c - 1) - T(1));
  });
  b.reversal = metrics::evaluate(pred, gt, mask);
  return b;
}

inline std::vector<std::vector<Index>> read_order(const std::string& path, const TrainConfig& config, Index steps) {
  std::ifstream in(path);
  if (!in) throw Error("stockmixer train: cannot open --order file " + path);
  std::vector<std::vector<Index>> order;
  std::string line;
  for (int no = 1; std::getline(in, line); ++no) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = "stockmixer train: " + path + ":" + std::to_string(no) + ": ";
    std::istringstream is(line);
    std::vector<Index> offsets;
    std::string word;
    while (is >> word) {
      std::size_t used = 0;
      long long v = 0;
      try {
        v = std::stoll(word, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (used != word.size())
        throw Error(where + "offset " + std::to_string(offsets.size() + 1) + " is '" + word + "', expected an integer");
      offsets.push_back(static_cast<Index>(v));
    }
    const std::string problem = order_problem(config, steps, offsets);
    if (!problem.empty()) throw Error(where + problem);
    order.push_back(std::move(offsets));
  }
  if (static_cast<int>(order.size()) != config.epochs)
    throw Error("stockmixer train: " + path + ": " + std::to_string(order.size()) +
                " epochs of offsets, expected --epochs = " + std::to_string(config.epochs));
  return order;
}

namespace detail {

// Writes through "<path>.tmp" renamed over <path>, so a file is never left half-written.
inline void write_json(const std::filesystem::path& path, const nlohmann::json& j) {
  const std::string tmp = path.string() + ".tmp";
  {
    std::ofstream s(tmp);
    s << j.dump(1) << "\n";
    if (!s) throw Error("stockmixer::train: cannot write " + tmp);
  }
  std::filesystem::rename(tmp, path);
}

// The synthetic market's planted signal scored on the test days, as the model is.
template <class T>
metrics::Performance oracle_performance(const RunData<T>& d, Index lookback, Index test_index) {
  const data::Market<T>& market = d.market;
  const Tensor<T> oracle = data::synthetic_oracle(market, d.signal);
  data::Batch<T> batch;
  Tensor<T> pred, gt, mask;
  sweep_period(market, lookback, test_index, market.days(), batch, pred, gt, mask,
               [&, day = test_index](const data::Batch<T>&, Tensor<T>& rr) mutable {
                 for (Index i = 0; i < market.stocks(); ++i) rr(i, 0) = oracle(i, day);
                 ++day;
               });
  return metrics::evaluate(pred, gt, mask);
}

}  // namespace detail

template <class T>
nlohmann::json run(const RunData<T>& data, const TrainConfig& config, const RunOptions& options) {
  namespace fs = std::filesystem;
  const data::Market<T>& market = data.market;
  const fs::path& out = options.out;
  if (fs::exists(out / "metrics.jsonl") && !options.overwrite)
    throw Error("stockmixer train: " + out.string() +
                " already holds a run (metrics.jsonl); pass --overwrite or choose another --out");
  Trainer<T> trainer(market, config);
  // What the run reads, checked before the output folder is touched.
  if (!options.init_weights.empty())
    io::load_parameters(trainer.model().parameters(), io::SafetensorsReader(options.init_weights));
  if (!options.order.empty() && static_cast<int>(options.order.size()) != config.epochs)
    throw Error("stockmixer train: " + std::to_string(options.order.size()) + " epochs of offsets, expected " +
                std::to_string(config.epochs));
  for (std::size_t e = 0; e < options.order.size(); ++e) {
    const std::string problem = trainer.order_problem(options.order[e]);
    if (!problem.empty()) throw Error("stockmixer train: epoch " + std::to_string(e + 1) + " of the order: " + problem);
  }
  fs::create_directories(out);
  std::ofstream metrics(out / "metrics.jsonl", std::ios::trunc);
  if (!metrics) throw Error("stockmixer train: cannot write " + (out / "metrics.jsonl").string());
  std::ostream* log = options.progress;
  if (log)
    *log << "stockmixer train: " << data.description.value("source", std::string()) << " market N=" << market.stocks()
         << " D=" << market.days() << ", seed " << config.seed << ", StockMixer " << trainer.model().num_parameters()
         << " parameters, " << trainer.train_offsets() << " steps per epoch, threads " << num_threads() << "\n";
  const auto start = std::chrono::steady_clock::now();
  EpochLog best;
  int epochs = 0;
  for (int e = 0; e < config.epochs; ++e) {
    const EpochLog epoch = options.order.empty() ? trainer.run_epoch() : trainer.run_epoch(options.order[e]);
    ++epochs;
    metrics << epoch.to_json().dump() << "\n" << std::flush;
    if (epoch.best) {
      best = epoch;
      save_checkpoint((out / "best.safetensors").string(), trainer.model(),
                      {{"stockmixer.train", config.to_json().dump()},
                       {"stockmixer.data", data.description.dump()},
                       {"stockmixer.epoch", std::to_string(epoch.epoch)}});
    }
    if (log) {
      char line[256];
      std::snprintf(line, sizeof line,
                    "epoch %3d/%d  train loss %.3e  valid loss %.3e IC %+.4f  test IC %+.4f RIC %+.3f  %.1fs%s\n",
                    epoch.epoch, config.epochs, epoch.train_loss, epoch.valid.loss, epoch.valid.perf.IC,
                    epoch.test.perf.IC, epoch.test.perf.RIC, epoch.seconds, epoch.best ? "  *" : "");
      *log << line;
    }
    if (options.on_epoch && !options.on_epoch(epoch)) break;
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  // Context: the baselines (and, on the synthetic market, the planted signal itself), scored on the same
  // test days and masks.
  const Baselines baselines = evaluate_baselines(market, config.lookback, config.test_index, market.days());
  nlohmann::json run_config = config.to_json();
  if (!options.init_weights.empty()) run_config["init_weights"] = options.init_weights;
  if (!options.order_file.empty()) run_config["order"] = options.order_file;
  nlohmann::json summary = {{"best_epoch", best.epoch},
                            {"valid", best.to_json()["valid"]},
                            {"test", best.to_json()["test"]},
                            {"baselines_test", baselines.to_json()},
                            {"epochs", epochs},
                            {"seconds", seconds},
                            {"parameters", trainer.model().num_parameters()},
                            {"precision", options.precision},
                            {"threads", num_threads()},
                            {"config", run_config},
                            {"data", data.description}};
  std::string oracle_text;
  if (data.description.value("source", std::string()) == "synthetic") {
    const metrics::Performance oracle = detail::oracle_performance(data, config.lookback, config.test_index);
    summary["oracle_test"] = oracle.to_json();
    char text[96];
    std::snprintf(text, sizeof text, "the planted signal itself: IC %+.4f; ", oracle.IC);
    oracle_text = text;
  }
  if (log) {
    char line[256];
    std::snprintf(line, sizeof line, "best epoch %d: test IC %+.4f, rank IC %+.4f (%s1-day reversal: IC %+.4f)\n",
                  best.epoch, best.test.perf.IC, best.test.perf.rank_ic, oracle_text.c_str(), baselines.reversal.IC);
    *log << line;
  }
  detail::write_json(out / "summary.json", summary);
  return summary;
}

namespace detail {
// Mean and population std of a metric over runs (NaN-free runs only), as {"mean", "std", "runs"}.
inline nlohmann::json mean_std(const std::vector<nlohmann::json>& runs, const std::string& period,
                               const std::string& key) {
  std::vector<double> v;
  for (const auto& r : runs)
    if (r[period].contains(key) && r[period][key].is_number()) v.push_back(r[period][key].get<double>());
  double mean = 0, var = 0;
  for (double x : v) mean += x / static_cast<double>(v.size());
  for (double x : v) var += (x - mean) * (x - mean) / static_cast<double>(v.size());
  using nlohmann::json;
  return {{"mean", v.empty() ? json(nullptr) : json(mean)},
          {"std", v.empty() ? json(nullptr) : json(std::sqrt(var))},
          {"runs", v.size()}};
}
}  // namespace detail

template <class T>
nlohmann::json run_seeds(const RunData<T>& data, TrainConfig config, Index seeds, const RunOptions& options) {
  if (seeds < 1) throw Error("stockmixer train: --seeds must be at least 1");
  if (seeds > 1 && (!options.init_weights.empty() || !options.order.empty()))
    throw Error("stockmixer train: --init-weights and --order replay one run: they cannot be combined with --seeds");
  std::vector<nlohmann::json> runs;
  const std::uint64_t first = config.seed;
  for (Index k = 0; k < seeds; ++k) {
    config.seed = first + static_cast<std::uint64_t>(k);
    RunOptions one = options;
    one.out = options.out / ("seed_" + std::to_string(config.seed));
    runs.push_back(run(data, config, one));
  }
  nlohmann::json summary = {
      {"seeds", seeds}, {"first_seed", first}, {"config", runs.front()["config"]}, {"data", data.description}};
  for (const std::string period : {"valid", "test"})
    for (const std::string key : {"IC", "RIC", "prec_10", "sharpe5", "rank_ic", "mse"})
      summary[period][key] = detail::mean_std(runs, period, key);
  double seconds = 0;
  for (const auto& r : runs) seconds += r["seconds"].get<double>();
  summary["seconds"] = seconds;
  std::filesystem::create_directories(options.out);
  detail::write_json(options.out / "summary.json", summary);
  return summary;
}

}  // namespace stockmixer::train
