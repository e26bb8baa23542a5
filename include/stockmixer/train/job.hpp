// stockmixer/train/job.hpp — `stockmixer train` as a library call: its options (one table, read from a
// command line, a --config file, Python keyword arguments or a sweep's job alike), the market they
// name, the TrainConfig they make, and the run (train/run.hpp) they start.
//
//   Options o("train", train::train_options());
//   o.apply_json({{"epochs", 20}, {"out", "run1"}}, "keyword arguments");
//   o.validate();
//   const nlohmann::json summary = train::train_job(o, {&std::cerr});
//
// Everything the options name is checked before the run's folder is touched: the numbers' ranges
// (Options::validate), the split against the market (TrainConfig::validate), the sizes against the
// machine's memory.
#pragma once

#include "stockmixer/data/panel.hpp"
#include "stockmixer/memory.hpp"
#include "stockmixer/options.hpp"
#include "stockmixer/train/run.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <functional>
#include <limits>
#include <ostream>
#include <string>
#include <vector>

namespace stockmixer::train {

// ---- interface -------------------------------------------------------------------------------------

// Where the market comes from: shared by `train` and `dataset`.
std::vector<Option> market_options();

// Every option of `stockmixer train` (market_options included).
std::vector<Option> train_options();

// The market the options name: a folder laid out as ../shared/data/NASDAQ (--data), a panel CSV (--panel,
// data/panel.hpp: its tickers and dates, the split 60/20/20 of its days) or the synthetic one.
template <class T>
RunData<T> load_data(const Options& o);

// The training configuration of the options, the split defaulting to the data's own; checked against
// the market (TrainConfig::validate), an error naming the options otherwise.
template <class T>
TrainConfig train_config(const Options& o, const RunData<T>& data);

// What a caller hears of a job as it runs.
struct JobHooks {
  std::ostream* progress = nullptr;               // the epoch lines (null: none)
  std::function<bool(const EpochLog&)> on_epoch;  // after each epoch; false stops the run there
  const std::atomic<bool>* stop = nullptr;        // read between steps: once true the run stops (Interrupted)
  EngineHooks engine{};                           // where the training steps run (empty: the CPU)
};

// What `stockmixer train` does with these options: the market loaded, then run (or run_seeds with
// --seeds); returns the summary (also written to the run folder). --threads sets the engine's threads.
nlohmann::json train_job(const Options& o, const JobHooks& hooks);

// The same on a market already in memory (the options' market ones are then not read).
template <class T>
nlohmann::json train_job(const Options& o, const RunData<T>& data, const JobHooks& hooks);

// ---- implementation --------------------------------------------------------------------------------

inline std::vector<Option> market_options() {
  using namespace limits;
  return {text("data", "", "a folder laid out as ../shared/data/NASDAQ (default: the synthetic market)"),
          text("panel", "", "a CSV of one's own market: date,ticker,<features>, a row per (date, ticker) "
                            "(docs/own_market.md)"),
          text("normalise", "causal", "with --panel --features original: causal (each day by the stock's largest "
                                      "close so far) or max (by its largest close of the whole period, as the "
                                      "original's files: looks ahead)"),
          text("market", "NASDAQ", "with --data: NASDAQ, NYSE or SP500 (SP500 reads DIR/SP500.npy)"),
          text("tickers", "", "with --data: a ticker list replacing the market's"),
          integer("steps", "1", "return horizon in days", 1, kMaxDays),
          integer("stocks", "200", "synthetic market: N stocks", 1, kMaxStocks),
          integer("days", "600", "synthetic market: D days", 2, kMaxDays),
          text_or_number("features", "", "with --panel: columns (the feature columns as given; the default) or original (raw "
                                         "prices -> the original's 5 features); synthetic market: C features (C-1 "
                                         "moving averages and the close), a whole number from 2 to 4096 (default 5)"),
          real("signal", "0.15", "synthetic market: strength of the planted signal", 0, 100),
          real("missing", "0.02", "synthetic market: share of missing (stock, day) cells", 0, 0.5),
          integer("data-seed", "1", "synthetic market: generator seed", 0, kMaxSeed)};
}

inline std::vector<Option> train_options() {
  using namespace limits;
  std::vector<Option> options = {
      text("out", "stockmixer-run", "output folder"),
      text("config", "", "JSON file of options (command-line options win)"),
      flag("overwrite", "replace a run already in --out"),
      flag("resume", "continue the run in --out from its last completed epoch (--epochs is the total)"),
      integer("epochs", "100", "training epochs", 1, 1'000'000),
      real("lr", "0.001", "Adam learning rate", 0, 1e12, true),
      real("alpha", "0.1", "weight of the rank loss", 0, 1e6),
      real("weight-decay", "0", "weight decay (Adam's L2; with --adamw, decoupled)", 0, 1e6),
      flag("adamw", "decoupled weight decay (torch.optim.AdamW)"),
      real("dropout", "0", "dropout in the channel mixers", 0, 1, false, true),
      integer("lookback", "16", "T: days per window (even)", 2, kMaxLookback),
      integer("market-width", "20", "M: hidden width of the stock mixer", 1, kMaxWidth),
      integer("seed", "0", "initialisation and shuffling seed (the first, with --seeds)", 0, kMaxSeed),
      integer("seeds", "1", "K runs with seeds seed .. seed+K-1, in OUT/seed_<s>/; OUT/summary.json: mean and std", 1,
              10'000),
      flag("strict-split", "drop training offsets whose target falls in validation"),
      text("valid-start", "", "first validation date YYYY-MM-DD: the first trading day on or after it (instead of "
                              "the indices)"),
      text("test-start", "", "first test date YYYY-MM-DD: the first trading day on or after it"),
      integer("valid-index", "", "first validation day (real data: 756; --panel: 60% of its days; synthetic: 61% of "
                                 "--days)", 1, kMaxDays),
      integer("test-index", "", "first test day (real data: 1008; synthetic: 81% of --days)", 1, kMaxDays),
      text_or_number("train-start", "0", "first day a training window may read (walk-forward windows): a day index or "
                                         "a date YYYY-MM-DD (the first trading day on or after it)"),
      text_or_number("test-end", "0", "one past the last test day: a day index (0: the market's end) or a date "
                                      "YYYY-MM-DD (the test ends before the first trading day on or after it)")};
  for (Option& m : market_options()) options.push_back(std::move(m));
  for (Option o :
       {text("init-weights", "", "start from these weights (.safetensors, PyTorch names) instead of the seeded init"),
        text("order", "", "replay: a file with one line per epoch of that epoch's window offsets (as many as steps)"),
        threads_option(), precision_option()})
    options.push_back(std::move(o));
  return options;
}

namespace detail {

// The synthetic market's --features: a whole number (a text option, as a panel's --features names which
// features). Empty and not given: the default, 5.
inline Index synthetic_features(const Options& a) {
  const std::string& v = a.str("features");
  if (v.empty() && !a.given("features")) return 5;
  long long n = 0;
  if (!parse_integer(v, n) || n < 2 || n > limits::kMaxFeatures)
    a.fail("--features expects a whole number from 2 to " + std::to_string(limits::kMaxFeatures) +
           " for the synthetic market, got '" + v + "'" +
           (v == "columns" || v == "original" ? " (columns and original name the features of a --panel)" : ""));
  return static_cast<Index>(n);
}

// The market of a panel CSV (--panel): its tickers and dates; the default split 60/20/20 of its days.
template <class T>
RunData<T> panel_data(const Options& a) {
  const std::string& path = a.str("panel");
  if (!a.str("data").empty()) a.fail("--panel and --data name two markets: give one of them");
  for (const char* name : {"market", "tickers"})
    if (a.given(name)) a.fail(std::string("--") + name + " applies to a --data folder, not to --panel");
  data::PanelOptions po;
  po.features = a.str("features").empty() && !a.given("features") ? "columns" : a.choice("features", {"columns", "original"});
  if (a.given("normalise") && po.features != "original")
    a.fail("--normalise applies to raw prices only (--panel with --features original)");
  po.normalise = a.choice("normalise", {"causal", "max"});
  po.steps = a.integer("steps");
  allocating("the market read from " + path);
  data::Panel<T> panel = data::read_panel<T>(path, po);
  RunData<T> d;
  d.market = std::move(panel.market);
  d.tickers = std::move(panel.tickers);
  d.dates = std::move(panel.dates);
  const Index days = d.market.days();
  if (days <= a.integer("steps"))
    a.fail(path + ": " + std::to_string(days) + " days, not more than --steps " + std::to_string(a.integer("steps")));
  d.description = {{"source", path},
                   {"format", "panel"},
                   {"panel_features", po.features},
                   {"normalise", po.features == "original" ? nlohmann::json(po.normalise) : nlohmann::json(nullptr)},
                   {"stocks", d.market.stocks()},
                   {"days", days},
                   {"features", d.market.features()},
                   {"steps", po.steps},
                   {"first_date", d.dates.front()},
                   {"last_date", d.dates.back()}};
  d.valid_index = days * 6 / 10;  // 60/20/20 of the panel's own days
  d.test_index = days * 8 / 10;
  return d;
}

// Where a period starts: --<period>-start (a date: the first trading day on or after it), else
// --<period>-index, else the data's default. Dates and indices do not mix.
template <class T>
Index split_day(const Options& a, const RunData<T>& d, const std::string& period, Index fallback) {
  const std::string start = period + "-start", index = period + "-index";
  if (a.given(start) && (a.given("valid-index") || a.given("test-index")))
    a.fail("--" + start + " and --valid-index / --test-index exclude each other: give the split as dates or as day "
           "indices");
  if (a.given(start)) {
    try {
      return data::day_of_date(d.dates, a.str(start), "--" + start);
    } catch (const Error& e) {
      a.fail(e.what());
    }
  }
  return a.given(index) ? a.integer(index) : fallback;
}

// --train-start or --test-end: a day index (0 to kMaxDays), or a date: the first trading day on or after
// it. For an end (`end`), a date after the market's last is its end: the days run out before it.
template <class T>
Index day_option(const Options& a, const RunData<T>& d, const std::string& name, bool end) {
  const std::string s = a.str(name);
  if (!s.empty() && s.size() <= 9 && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    const long long day = std::stoll(s);
    if (day > limits::kMaxDays)
      a.fail("--" + name + " " + s + ": expected a day index from 0 to " + std::to_string(limits::kMaxDays));
    return static_cast<Index>(day);
  }
  std::int64_t want = 0, last = 0;
  if (!data::parse_iso_date(s.data(), s.data() + s.size(), want))
    a.fail("--" + name + " '" + s + "': expected a day index or a date YYYY-MM-DD");
  if (end && !d.dates.empty() && d.dates.back().size() >= 10 &&
      data::parse_iso_date(d.dates.back().data(), d.dates.back().data() + 10, last) && want > last)
    return d.market.days();
  try {
    return data::day_of_date(d.dates, s, "--" + name);
  } catch (const Error& e) {
    a.fail(e.what());
  }
}

}  // namespace detail

template <class T>
RunData<T> load_data(const Options& a) {
  if (!a.str("panel").empty()) return detail::panel_data<T>(a);
  if (a.given("normalise")) a.fail("--normalise applies to raw prices only (--panel with --features original)");
  DataSource source;
  source.folder = a.str("data");
  source.steps = a.integer("steps");
  if (!source.folder.empty()) {
    source.market = a.choice("market", {"NASDAQ", "NYSE", "SP500"});
    source.tickers = a.str("tickers");
  }
  data::SyntheticOptions& so = source.synthetic;
  so.stocks = a.integer("stocks");
  so.days = a.integer("days");
  so.features = detail::synthetic_features(a);
  so.seed = static_cast<std::uint64_t>(a.integer("data-seed"));
  so.signal = a.number("signal");
  so.missing = a.number("missing");
  if (source.folder.empty()) {
    if (source.steps >= so.days)
      a.fail("--steps " + std::to_string(source.steps) + " must be below --days " + std::to_string(so.days));
    // eod [N, D, C], mask, gt and price [N, D] in T, and the simulation's closes [N, D + burn-in] in double.
    const double cells = static_cast<double>(so.stocks) * static_cast<double>(so.days);
    const std::string problem =
        memory_problem(cells * (static_cast<double>(so.features + 3) * sizeof(T) + sizeof(double)),
                       "the synthetic market of --stocks " + std::to_string(so.stocks) + " and --days " +
                           std::to_string(so.days));
    if (!problem.empty()) a.fail(problem);
    allocating("the synthetic market (N = " + std::to_string(so.stocks) + ", D = " + std::to_string(so.days) +
               ", C = " + std::to_string(so.features) + ")");
  } else {
    allocating("the market read from " + source.folder);
  }
  return load_data<T>(source);
}

template <class T>
TrainConfig train_config(const Options& a, const RunData<T>& d) {
  TrainConfig c;
  c.epochs = static_cast<int>(a.integer("epochs"));
  c.lookback = a.integer("lookback");
  c.market = a.integer("market-width");
  c.alpha = a.number("alpha");
  c.dropout = a.number("dropout");
  c.adam.lr = a.number("lr");
  c.adam.weight_decay = a.number("weight-decay");
  c.adam.decoupled_weight_decay = a.flag("adamw");
  c.strict_split = a.flag("strict-split");
  c.seed = static_cast<std::uint64_t>(a.integer("seed"));
  c.valid_index = detail::split_day(a, d, "valid", d.valid_index);
  c.test_index = detail::split_day(a, d, "test", d.test_index);
  c.train_start = detail::day_option(a, d, "train-start", false);
  c.test_end = detail::day_option(a, d, "test-end", true);
  // TrainConfig::validate also checks that every window training can draw ends inside the market, before
  // the run touches its folder, so a bad split fails with nothing written.
  try {
    c.validate(d.market.days(), d.market.steps);
  } catch (const Error& e) {
    a.fail(std::string(e.what()) + " (the options: --lookback, --steps, --valid-index, --test-index, --strict-split, --train-start, --test-end)");
  }
  return c;
}

namespace detail {
// What the options alone can refuse, before any data is read.
inline void check_job_options(const Options& a) {
  if (a.flag("resume") && a.flag("overwrite")) a.fail("--resume and --overwrite exclude each other");
  const Index seeds = a.integer("seeds");
  const Index seed = a.integer("seed");
  if (seed > std::numeric_limits<Index>::max() - (seeds - 1))
    a.fail("--seed " + std::to_string(seed) + " with --seeds " + std::to_string(seeds) + " runs past the largest seed");
}
}  // namespace detail

template <class T>
nlohmann::json train_job(const Options& a, const RunData<T>& d, const JobHooks& hooks) {
  detail::check_job_options(a);
  const Index seeds = a.integer("seeds");
  const TrainConfig c = train_config(a, d);
  const std::string problem = memory_problem(
      8.0 * static_cast<double>(c.market) * static_cast<double>(d.market.stocks()) * sizeof(T),
      "StockMixer's stock mixer for " + std::to_string(d.market.stocks()) + " stocks and --market-width " +
          std::to_string(c.market) + " (weights, gradients, Adam's moments)");
  if (!problem.empty()) a.fail(problem);
  allocating("the model StockMixer(N = " + std::to_string(d.market.stocks()) + ", T = " + std::to_string(c.lookback) +
             ", C = " + std::to_string(d.market.features()) + ", M = " + std::to_string(c.market) +
             "), its optimiser and its training buffers");
  RunOptions o;
  o.out = a.str("out");
  o.overwrite = a.flag("overwrite");
  o.resume = a.flag("resume");
  o.stop = hooks.stop;
  o.on_epoch = hooks.on_epoch;
  o.progress = hooks.progress;
  o.engine = hooks.engine;
  o.init_weights = a.str("init-weights");
  o.order_file = a.str("order");
  if (!o.order_file.empty()) {
    io::regular_file_size(o.order_file, "order file (--order)");  // a FIFO would block the read, a device never end
    o.order = read_order(o.order_file, c, d.market.steps);
  }
  o.precision = a.str("precision");
  return seeds == 1 ? run(d, c, o) : run_seeds(d, c, seeds, o);
}

inline nlohmann::json train_job(const Options& a, const JobHooks& hooks) {
  detail::check_job_options(a);
  set_num_threads(static_cast<int>(a.integer("threads")));
  if (a.choice("precision", {"f32", "f64"}) == "f32") return train_job<float>(a, load_data<float>(a), hooks);
  return train_job<double>(a, load_data<double>(a), hooks);
}

}  // namespace stockmixer::train
