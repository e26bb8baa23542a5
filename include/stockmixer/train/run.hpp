// stockmixer/train/run.hpp — a training run as `stockmixer train` makes it, for any caller: the market
// (a folder laid out as the original's, or the built-in synthetic one), the original protocol
// (Trainer), and the run folder it leaves:
//
//   metrics.jsonl      one EpochLog a line, rewritten whole as each epoch ends
//   best.safetensors   the weights of the epoch with the lowest validation loss, with the training
//                      configuration, the data's description and the epoch in the metadata
//   state.safetensors  after each epoch: the weights, Adam's moments and step count, the shuffle
//                      generator and the best so far; `resume` continues from it
//   summary.json       that epoch's validation and test metrics beside the baselines' (the zero
//                      prediction and the 1-day reversal), on the synthetic market the planted
//                      signal's own, and the run's configuration
//   predictions.csv    that epoch's scores and realised returns on the validation and test days, one
//                      row per valid stock and day (train/report.hpp), from the epoch's own sweeps
//   report.md          with loss.png and equity.png: the run for a reader, from the files above alone
//                      (train::write_report), written when the run ends
//
// A folder holds one run: one process writes it at a time (io::FolderLock), a run's files are
// replaced whole (io::write_file), --overwrite removes the last run's files before anything new is
// written, and a run killed at any moment (kill -9 included) leaves files that `resume` continues:
// state.safetensors is written before the first epoch and after each one's best.safetensors and
// predictions.csv, and a resumed run writes metrics.jsonl back to the epochs that state holds (its
// metadata keeps them). Resumed or not, a run ends with the same metrics.jsonl and summary.json (but
// for their "seconds") and the same best.safetensors, predictions.csv and report.md, byte for byte.
//
// run_seeds makes K such runs, seed after seed, in <out>/seed_<s>/, and writes their mean and
// population std per metric in <out>/summary.json.
#pragma once

#include "stockmixer/data/eod.hpp"
#include "stockmixer/data/market.hpp"
#include "stockmixer/io/files.hpp"
#include "stockmixer/model.hpp"
#include "stockmixer/parallel.hpp"
#include "stockmixer/provenance.hpp"
#include "stockmixer/train/report.hpp"
#include "stockmixer/train/trainer.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
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
  std::vector<std::string> tickers;       // stock i's name (the synthetic market's: S0000, S0001, ...)
  std::vector<std::string> dates;         // day row r's date, where the data has dates (empty otherwise)
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
  bool resume = false;                    // continue the run in `out` from its last completed epoch
  const std::atomic<bool>* stop = nullptr;  // read between steps: once true the run stops (Interrupted)
  EngineHooks engine{};                     // where the training steps run (empty: the CPU)
};

// The files a run writes into its folder.
inline constexpr const char* kRunFiles[] = {"metrics.jsonl",   "best.safetensors", "state.safetensors",
                                            "summary.json",    "predictions.csv",  "report.md",
                                            "loss.png",        "equity.png"};

// A replay file: one line per epoch of that epoch's window offsets (blank lines skipped), each line
// checked by order_problem; exactly config.epochs of them. Errors name the file and the line.
std::vector<std::vector<Index>> read_order(const std::string& path, const TrainConfig& config, Index steps);

// One run into options.out; returns the summary (also written as summary.json). Everything it reads
// (initial weights, the replay order, a resumed run's state and configuration) is checked before the
// folder's files are touched. With options.stop set, the run ends after the current step by throwing
// Interrupted, having written the summary of the epochs it completed; `resume` continues it.
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
    d.tickers = data::synthetic_tickers(so.stocks);
    return d;
  }
  if (source.market == "SP500") {
    d.market = data::load_sp500_npy<T>((std::filesystem::path(source.folder) / "SP500.npy").string(), source.steps);
    d.tickers = data::synthetic_tickers(d.market.stocks());  // SP500.npy names no stocks
  } else {
    data::LoadedMarket<T> loaded = data::load_market_dir<T>(source.folder, source.market, source.tickers, source.steps);
    d.market = std::move(loaded.market);
    d.tickers = std::move(loaded.tickers);
    for (Index r = 0; r < d.market.days(); ++r) d.dates.push_back(data::date_of_row(loaded.dates, r));
  }
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

// Replaces path whole or not at all (io::write_file).
inline void write_json(const std::filesystem::path& path, const nlohmann::json& j) {
  io::write_file(path.string(), j.dump(1) + "\n");
}

// The resumable state after an epoch: the store's values and Adam's moments as flat tensors, the rest
// in the metadata (doubles as hex floats, so that they read back exactly).
inline std::string hex(double v) {
  char text[64];
  std::snprintf(text, sizeof text, "%a", v);
  return text;
}
template <class T>
void save_state(const std::filesystem::path& path, Trainer<T>& trainer, const nlohmann::json& identity,
                const nlohmann::json& best, const std::string& metrics, double seconds) {
  ParameterStore<T>& store = trainer.model().parameters();
  Adam<T>& adam = trainer.optimizer();
  const Progress p = trainer.progress();
  const nlohmann::json meta = {{"epoch", p.epoch},   {"adam_steps", adam.steps()}, {"rng", p.rng},
                               {"best_valid_loss", hex(p.best_valid_loss)},      {"best", best},
                               {"seconds", hex(seconds)}, {"identity", identity}, {"metrics", metrics}};
  const Shape shape{store.size()};
  io::save_safetensors<T>(path.string(),
                          {{"values", TensorMap<const T>(store.values(), shape)},
                           {"exp_avg", TensorMap<const T>(adam.exp_avg().data(), shape)},
                           {"exp_avg_sq", TensorMap<const T>(adam.exp_avg_sq().data(), shape)}},
                          {{"stockmixer.state", meta.dump()}});
}

// Where the run's periods begin and end: day indices (windows end the day before their target) and,
// where the data has a dates file, the dates of those days.
template <class T>
nlohmann::json split_days(const RunData<T>& data, const TrainConfig& config) {
  const Index days = data.market.days();
  nlohmann::json split = {{"lookback", config.lookback},     {"steps", data.market.steps},
                          {"valid_index", config.valid_index}, {"test_index", config.test_index},
                          {"days", days}};
  if (static_cast<Index>(data.dates.size()) == days && config.valid_index < days && config.test_index < days) {
    split["first_date"] = data.dates.front();
    split["valid_first_date"] = data.dates[static_cast<std::size_t>(config.valid_index)];
    split["test_first_date"] = data.dates[static_cast<std::size_t>(config.test_index)];
    split["last_date"] = data.dates.back();
  }
  return split;
}

// What state.safetensors' metadata holds beside the tensors, every field checked (a state file is input
// like any other: a wrong type or an out-of-range number is an Error naming the file and the field).
struct SavedState {
  int epoch = 0;
  std::int64_t adam_steps = 0;
  std::string rng, metrics;
  double best_valid_loss = 0, seconds = 0;
  nlohmann::json best, identity;
};
inline SavedState read_state(const io::SafetensorsReader& state, int max_epochs) {
  auto fail = [&](const std::string& what) -> void {
    throw Error(state.path() + ": not a stockmixer run state (" + what + ")");
  };
  if (!state.metadata().count("stockmixer.state")) fail("no 'stockmixer.state' metadata");
  const std::string& text = state.metadata().at("stockmixer.state");
  const std::string too_deep = io::json_depth_problem(text.data(), text.data() + text.size());
  if (!too_deep.empty()) fail("'stockmixer.state' is " + too_deep);
  nlohmann::json meta;
  try {
    meta = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    fail(std::string("'stockmixer.state' is not JSON: ") + e.what());
  }
  if (!meta.is_object()) fail("'stockmixer.state' is not a JSON object");
  auto field = [&](const char* key) -> const nlohmann::json& {
    if (!meta.contains(key)) fail(std::string("no '") + key + "'");
    return meta.at(key);
  };
  auto integer = [&](const char* key, std::int64_t lo, std::int64_t hi) {
    const nlohmann::json& j = field(key);
    if (!j.is_number_integer() || (j.is_number_unsigned() && j.get<std::uint64_t>() > std::uint64_t(hi)) ||
        j.get<std::int64_t>() < lo || j.get<std::int64_t>() > hi)
      fail(std::string("'") + key + "' is " + j.dump() + ", expected an integer in [" + std::to_string(lo) + ", " +
           std::to_string(hi) + "]");
    return j.get<std::int64_t>();
  };
  auto text_of = [&](const char* key) {
    const nlohmann::json& j = field(key);
    if (!j.is_string()) fail(std::string("'") + key + "' is not a string");
    return j.get<std::string>();
  };
  auto hex_double = [&](const char* key) {  // written by hex(): "%a"
    const std::string t = text_of(key);
    char* end = nullptr;
    const double v = std::strtod(t.c_str(), &end);
    if (t.empty() || *end != '\0') fail(std::string("'") + key + "' is \"" + t + "\", not a number");
    return v;
  };
  SavedState s;
  s.epoch = static_cast<int>(integer("epoch", 0, std::numeric_limits<int>::max()));
  s.adam_steps = integer("adam_steps", 0, std::numeric_limits<std::int64_t>::max());
  s.rng = text_of("rng");
  s.metrics = text_of("metrics");
  s.best_valid_loss = hex_double("best_valid_loss");
  s.seconds = hex_double("seconds");
  s.best = field("best");
  if (!s.best.is_null() && !(s.best.is_object() && s.best.contains("epoch") && s.best.contains("valid") &&
                             s.best.contains("test")))
    fail("'best' is neither null nor an epoch's log");
  s.identity = field("identity");
  if (s.epoch > max_epochs)
    throw Error("stockmixer train: " + state.path() + " already holds " + std::to_string(s.epoch) +
                " epochs; --epochs is the total, so it must be at least that");
  return s;
}

// "42s", "3m05s", "2h07m": a duration for the epoch lines.
inline std::string duration_text(double seconds) {
  const long long s = std::llround(seconds);
  char text[64];
  if (s < 60) std::snprintf(text, sizeof text, "%llds", s);
  else if (s < 3600) std::snprintf(text, sizeof text, "%lldm%02llds", s / 60, s % 60);
  else std::snprintf(text, sizeof text, "%lldh%02lldm", s / 3600, s % 3600 / 60);
  return text;
}

// Whether predictions.csv can name days by the data's dates: one per day, strictly ascending in the
// order metrics::read_predictions_csv sorts them (a dates file may repeat a line or be out of order;
// its dates would then not tell the days apart).
template <class T>
bool dates_name_days(const RunData<T>& data) {
  if (static_cast<Index>(data.dates.size()) != data.market.days()) return false;
  for (std::size_t d = 1; d < data.dates.size(); ++d)
    if (!metrics::detail::day_before(data.dates[d - 1], data.dates[d])) return false;
  return true;
}

// predictions.csv from the trainer's last validation and test sweeps (those of the epoch just run).
template <class T>
void write_predictions(const std::filesystem::path& path, const RunData<T>& data, const Trainer<T>& trainer) {
  const Index n = data.market.stocks();
  const std::vector<std::string> tickers = static_cast<Index>(data.tickers.size()) == n ? data.tickers
                                           : static_cast<Index>(data.market.tickers.size()) == n
                                               ? data.market.tickers
                                               : data::synthetic_tickers(n);
  const bool dated = dates_name_days(data);
  std::string csv = std::string(kPredictionsHeader) + "\n";
  for (const auto& [split, period] : {std::pair<const char*, const PeriodPredictions<T>*>{"valid", &trainer.last_valid()},
                                      {"test", &trainer.last_test()}}) {
    std::vector<std::string> days;
    for (Index d = period->start; d < period->start + period->pred.dim(1); ++d)
      days.push_back(dated ? data.dates[static_cast<std::size_t>(d)] : std::to_string(d));
    append_predictions(csv, split, days, tickers, period->pred, period->gt, period->mask);
  }
  io::write_file(path.string(), csv);
}

// The synthetic market's planted signal scored on the test days, as the model is.
template <class T>
metrics::Performance oracle_performance(const RunData<T>& d, Index lookback, Index test_index, Index test_end) {
  const data::Market<T>& market = d.market;
  const Tensor<T> oracle = data::synthetic_oracle(market, d.signal);
  data::Batch<T> batch;
  Tensor<T> pred, gt, mask;
  sweep_period(market, lookback, test_index, test_end, batch, pred, gt, mask,
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
  auto file = [&](const char* name) { return out / name; };
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
  // What makes two runs the same run: a resumed one must match it in everything but the epoch count.
  nlohmann::json identity = config.to_json();
  identity.erase("epochs");
  identity["data"] = data.description;
  identity["data_fingerprint"] = data_fingerprint(market);  // the same folder with other contents is other data
  identity["init_weights"] = options.init_weights;
  identity["order"] = options.order_file;
  identity["precision"] = options.precision;

  fs::create_directories(out);
  const io::FolderLock lock(out);
  io::remove_temporaries(out, kRunFiles);  // a killed run's half-written files: never read, not kept
  nlohmann::json best = nullptr;  // the best epoch's EpochLog
  std::string metrics;            // metrics.jsonl's lines
  double seconds = 0;             // of the epochs done, over every session of the run
  // A run killed before it saved its first state left nothing to lose: resuming it starts it.
  bool resume = options.resume && fs::exists(file("state.safetensors"));
  if (options.resume && !resume)
    for (const char* name : kRunFiles)
      if (fs::exists(file(name)))
        throw Error("stockmixer train: " + out.string() + " holds no resumable run (" + name +
                    " but no state.safetensors): pass --overwrite to replace it");
  if (resume) {
    const io::SafetensorsReader state(file("state.safetensors").string());
    const detail::SavedState saved = detail::read_state(state, config.epochs);
    if (saved.identity != identity)
      throw Error("stockmixer train: " + out.string() + " holds a run of another configuration or data: resume "
                  "it with the options it started with (only --epochs may change)\n  that run: " +
                  saved.identity.dump() + "\n  this one: " + identity.dump());
    const int done = saved.epoch;
    ParameterStore<T>& store = trainer.model().parameters();
    Adam<T>& adam = trainer.optimizer();
    for (const char* name : {"values", "exp_avg", "exp_avg_sq"})
      if (!state.contains(name) || state.info(name).shape != std::vector<Index>{store.size()})
        throw Error(state.path() + ": tensor '" + name + "' is not [" + std::to_string(store.size()) + "]");
    state.read<T>("values", TensorMap<T>(store.values(), Shape{store.size()}));
    state.read<T>("exp_avg", adam.exp_avg());
    state.read<T>("exp_avg_sq", adam.exp_avg_sq());
    adam.set_state(saved.adam_steps);
    trainer.restore({done, saved.rng, saved.best_valid_loss});
    best = saved.best;
    seconds = saved.seconds;
    // metrics.jsonl as the state has it (a kill may have come before or after the next epoch's line).
    metrics = saved.metrics;
    io::write_file(file("metrics.jsonl").string(), metrics);
  } else {
    for (const char* name : kRunFiles)
      if (fs::exists(file(name)) && !options.overwrite)
        throw Error("stockmixer train: " + out.string() + " already holds a run (" + name +
                    "); pass --overwrite, --resume, or choose another --out");
    for (const char* name : kRunFiles) fs::remove(file(name));  // --overwrite: none of the last run is kept
    // The state of epoch 0 first: from here on the folder always holds a state to resume from.
    detail::save_state(file("state.safetensors"), trainer, identity, best, metrics, seconds);
  }
  trainer.set_stop(options.stop);
  options.engine.attach(trainer);
  // What produced this run: the library's build, this machine's choices, the data and its split.
  const nlohmann::json provenance = {{"build", build_info()},
                                     {"data", identity["data_fingerprint"]},
                                     {"split", detail::split_days(data, config)}};
  std::ostream* log = options.progress;
  if (log)
    *log << "stockmixer train: " << data.description.value("source", std::string()) << " market N=" << market.stocks()
         << " D=" << market.days() << ", seed " << config.seed << ", StockMixer " << trainer.model().num_parameters()
         << " parameters, " << trainer.train_offsets() << " steps per epoch, threads " << num_threads()
         << (resume ? ", resumed after epoch " + std::to_string(trainer.progress().epoch)
                    : options.resume ? ", nothing to resume: starting" : "")
         << "\n";
  int epochs = trainer.progress().epoch;
  std::string interrupted;
  try {
    while (epochs < config.epochs) {
      const EpochLog epoch =
          options.order.empty() ? trainer.run_epoch() : trainer.run_epoch(options.order[static_cast<std::size_t>(epochs)]);
      ++epochs;
      seconds += epoch.seconds;
      metrics += epoch.to_json().dump() + "\n";
      if (epoch.best) {
        best = epoch.to_json();
        save_checkpoint(file("best.safetensors").string(), trainer.model(),
                        {{"stockmixer.train", config.to_json().dump()},
                         {"stockmixer.data", data.description.dump()},
                         {"stockmixer.provenance", provenance.dump()},
                         {"stockmixer.epoch", std::to_string(epoch.epoch)}});
        detail::write_predictions(file("predictions.csv"), data, trainer);
      }
      detail::save_state(file("state.safetensors"), trainer, identity, best, metrics, seconds);  // the epoch is done
      io::write_file(file("metrics.jsonl").string(), metrics);
      if (log) {
        // The time left: the mean epoch so far (over every session of the run) times the epochs to go.
        const std::string eta = epochs < config.epochs
                                    ? "  ETA " + detail::duration_text(seconds / epochs * (config.epochs - epochs))
                                    : std::string();
        char line[256];
        std::snprintf(line, sizeof line,
                      "epoch %3d/%d  train loss %.3e  valid loss %.3e IC %+.4f  test IC %+.4f RIC %+.3f  %.1fs%s%s\n",
                      epoch.epoch, config.epochs, epoch.train_loss, epoch.valid.loss, epoch.valid.perf.IC,
                      epoch.test.perf.IC, epoch.test.perf.RIC, epoch.seconds, eta.c_str(), epoch.best ? "  *" : "");
        *log << line;
      }
      if (options.on_epoch && !options.on_epoch(epoch)) break;
    }
  } catch (const Interrupted& e) {
    interrupted = e.what();
  }

  // Context: the baselines (and, on the synthetic market, the planted signal itself), scored on the same
  // test days and masks.
  const Baselines baselines =
      evaluate_baselines(market, config.lookback, config.test_index, config.test_stop(market.days()));
  nlohmann::json run_config = config.to_json();
  if (!options.init_weights.empty()) run_config["init_weights"] = options.init_weights;
  if (!options.order_file.empty()) run_config["order"] = options.order_file;
  auto of_best = [&](const char* key) { return best.is_object() ? best.at(key) : nlohmann::json(nullptr); };
  nlohmann::json summary = {{"best_epoch", best.is_object() ? best.at("epoch") : nlohmann::json(0)},
                            {"valid", of_best("valid")},
                            {"test", of_best("test")},
                            {"baselines_test", baselines.to_json()},
                            {"epochs", epochs},
                            {"seconds", seconds},
                            {"parameters", trainer.model().num_parameters()},
                            {"precision", options.precision},
                            {"threads", num_threads()},
                            {"config", run_config},
                            {"data", data.description},
                            {"provenance", provenance}};
  if (!interrupted.empty()) summary["interrupted"] = true;
  if (data.description.value("source", std::string()) == "synthetic") {
    const metrics::Performance oracle = detail::oracle_performance(data, config.lookback, config.test_index, config.test_stop(market.days()));
    summary["oracle_test"] = oracle.to_json();
  }
  detail::write_json(file("summary.json"), summary);
  write_report(out);
  if (!interrupted.empty())
    throw Interrupted(interrupted + "; " + std::to_string(epochs) + " epochs are saved in " + out.string() +
                      ": run the same command with --resume to continue");
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
    for (const std::string key : {"IC", "RIC", "prec_10", "sharpe5", "rank_ic", "rank_icir", "bt_long5", "mse"})
      summary[period][key] = detail::mean_std(runs, period, key);
  double seconds = 0;
  for (const auto& r : runs) seconds += r["seconds"].get<double>();
  summary["seconds"] = seconds;
  std::filesystem::create_directories(options.out);
  detail::write_json(options.out / "summary.json", summary);
  return summary;
}

}  // namespace stockmixer::train
