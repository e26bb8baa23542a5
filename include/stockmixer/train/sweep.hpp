// stockmixer/train/sweep.hpp — many training runs from one description: hyperparameter grids, seeds,
// walk-forward retraining, and what their results say together.
//
// GRID.json: {"base": {<train options>}, "grid": {<option>: [values, ...], ...}, "walk": {...}}
//   jobs       the Cartesian product of the grid's lists (keys in sorted order, the last varying
//              fastest) over the base; each job is one `stockmixer train` (train_job) into OUT/<job>/,
//              which holds exactly the files that command writes with those options
//   names      key=value pairs joined by ',' in key order ("lr=0.001,seed=1"); a value's bytes outside
//              [A-Za-z0-9._+-] are written %XX; no grid key: "base"
//   walk       {"train-days", "valid-days", "test-days", "first-test"}: every grid point is trained once
//              per window k: test days [F + kC, F + (k+1)C) (the last window may be shorter, ending at
//              the market's end), validation the B days before, training windows inside the A days
//              before those, strict split (no training target on or after the first validation day).
//              F defaults to the data's own first test day; "first-test" may be a date YYYY-MM-DD (the
//              first trading day on or after it, on each market). The window's name part: "test=FIRST..LAST"
//   member     a grid point with its seed (the windows of one member are one out-of-sample series)
//   configuration  a grid point without its seed: the report's rows, the seeds ensembled together
//
// What the sweep writes beside the jobs' folders (every file replaced whole, io::write_file):
//   plan.json     the jobs and their options, written before any job runs; a later sweep into the same
//                 folder must give a job of the same name the same options (but for "epochs")
//   sweep.json    every job's best-epoch metrics, every member's, every configuration's mean and
//                 population std over its members (and with ensemble, the ensemble's metrics)
//   report.md     the configurations ranked by the validation mean of one metric, as a table
//   stitched/<member>/predictions.csv (walk)  the member's out-of-sample predictions, window after
//                 window (date,ticker,score,label,split; one row per valid stock and test day), scored
//                 as one series by metrics::evaluate and backtested (metrics::backtest: top 5, 10 bps)
// sweep.json and report.md hold no wall-clock time: two sweeps of the same grid write the same bytes.
//
// A job is finished when its summary.json is complete (parses, not "interrupted", as many epochs as
// asked) and every other file a run writes (kRunFiles) is there; a re-run skips it. Any other job runs
// with train's resume: from its last completed epoch where it left a state (a run killed after its
// summary but before its last files resumes with no epoch left and writes them), from the start
// otherwise; either way it ends with the bytes a job never stopped would have written (train/run.hpp).
//
// Scores for ensembles and walk-forward stitching are computed again from each job's best.safetensors
// over the period, exactly as the trainer computed them (model.predict, then rank_loss_forward_sorted's
// return ratio): sweep.json records whether the metrics of those scores equal the job's summary.
#pragma once

#include "stockmixer/io/files.hpp"
#include "stockmixer/metrics/backtest.hpp"
#include "stockmixer/metrics/evaluate.hpp"
#include "stockmixer/model.hpp"
#include "stockmixer/options.hpp"
#include "stockmixer/train/job.hpp"
#include "stockmixer/train/run.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <new>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace stockmixer::train {

// ---- interface -------------------------------------------------------------------------------------

// Walk-forward: A training days, B validation days, C test days per window, the first test day F
// (-1: the data's own first test day), or the date it is the first trading day on or after
// (first_test_date, YYYY-MM-DD; resolved against each market's dates when the sweep is planned).
struct WalkSpec {
  Index train_days = 0, valid_days = 0, test_days = 0, first_test = -1;
  std::string first_test_date;
  static WalkSpec from_json(const nlohmann::json& j, const std::string& where);
  nlohmann::json to_json() const;
};

// One window of a market: training windows read days [train_start, valid_index) (strict split),
// validation targets [valid_index, test_index), test targets [test_index, test_end).
struct Window {
  Index train_start = 0, valid_index = 0, test_index = 0, test_end = 0;
  std::string name() const { return "test=" + std::to_string(test_index) + ".." + std::to_string(test_end - 1); }
};

// The windows of `walk` on a market of `days` days whose own first test day is `data_test_index`;
// Error naming the walk's field when a window cannot hold its days.
std::vector<Window> walk_windows(const WalkSpec& walk, Index days, Index data_test_index, const std::string& where);

struct SweepJob {
  std::string name;           // its folder under the sweep's out
  std::string member;         // the grid point, seed included (== name without a walk)
  std::string configuration;  // the grid point without its seed ("base" when only the seed varies)
  nlohmann::json values;      // the grid point: option -> value
  nlohmann::json options;     // the train options: base, the grid point, the window (no "out")
  std::optional<Window> window;
};

struct SweepPlan {
  nlohmann::json grid;  // the GRID.json object
  std::vector<SweepJob> jobs;
  bool walk() const { return grid.contains("walk"); }
  nlohmann::json to_json() const;  // plan.json
  static SweepPlan from_json(const nlohmann::json& j);  // to_json's object back (a plan sent to other ranks)
};

// A value as the part of a job's name: strings as they are, other values as JSON; bytes outside
// [A-Za-z0-9._+-] as %XX.
std::string name_part(const std::string& key, const nlohmann::json& value);

// Expands GRID.json (`where` names it in errors). Walk windows need each member's market length:
// its data is loaded once per distinct data option set.
SweepPlan plan_sweep(const nlohmann::json& grid, const std::string& where);

// The train options of job k writing into out/<job>/ with `threads` engine threads, resuming whatever
// the folder holds.
Options job_options(const SweepPlan& plan, std::size_t k, const std::filesystem::path& out, Index threads);

// The job's summary.json when it is complete for `epochs` epochs and the folder holds every run file, else null.
nlohmann::json finished_summary(const std::filesystem::path& folder, Index epochs);

// Checks plan against the plan.json a previous sweep left in `out` (same options for a job of the same
// name, "epochs" aside) and that no job folder predates a plan; then writes plan.json.
void record_plan(const SweepPlan& plan, const std::filesystem::path& out);

// A job's outcome, small enough to send between processes: {"status": "done" | "failed" |
// "interrupted", "error": text (failed), "summary": {"best_epoch", "epochs", "valid", "test"} (done)}.
nlohmann::json job_result_of(const nlohmann::json& summary);
// Runs job k (train_job with job_options) and returns its outcome; Errors and std::bad_alloc become a
// "failed" outcome naming the job, a stop request an "interrupted" one.
nlohmann::json run_job(const SweepPlan& plan, std::size_t k, const std::filesystem::path& out, Index threads,
                       const std::atomic<bool>* stop);

// The jobs still to run, handed out in plan order to any number of takers (threads or, through
// rank 0, MPI ranks); stop() hands out nothing more.
class JobQueue {
 public:
  explicit JobQueue(std::vector<std::size_t> pending) : pending_(std::move(pending)) {}
  std::optional<std::size_t> next();
  void stop();

 private:
  std::mutex mutex_;
  std::vector<std::size_t> pending_;
  std::size_t taken_ = 0;
  bool stopped_ = false;
};

struct SweepReport {
  bool ensemble = false;       // average the seeds' scores per configuration
  std::string rank_by = "IC";  // the validation metric the report ranks configurations by
};

// sweep.json and report.md (and, for a walk, the stitched predictions) from every job's outcome
// (results[k] for plans.jobs[k]); returns sweep.json's content.
nlohmann::json finish_sweep(const SweepPlan& plan, const std::vector<nlohmann::json>& results,
                            const std::filesystem::path& out, const SweepReport& report);

// The metrics a report shows per period, and whether a larger value is better for each.
inline const std::vector<std::string>& report_metrics() {
  static const std::vector<std::string> keys = {"IC", "rank_ic", "RIC", "prec_10", "sharpe5", "mse"};
  return keys;
}

// ---- implementation --------------------------------------------------------------------------------

namespace detail {

[[noreturn]] inline void sweep_fail(const std::string& where, const std::string& what) {
  throw Error("stockmixer sweep: " + where + ": " + what);
}

// Options a grid may not set: the sweep decides where and how each job runs.
inline const std::set<std::string>& sweep_owned_options() {
  static const std::set<std::string> owned = {"out", "config", "overwrite", "resume", "seeds", "threads"};
  return owned;
}
// Options a walk sets in every window.
inline const std::set<std::string>& walk_owned_options() {
  static const std::set<std::string> owned = {"valid-index", "test-index", "valid-start", "test-start",
                                              "train-start", "test-end",   "strict-split"};
  return owned;
}
// Options that decide the market (and so the data a walk's windows are laid on): market_options() and
// the precision it is read in.
inline std::vector<std::string> data_option_names() {
  std::vector<std::string> names;
  for (const Option& o : market_options()) names.push_back(o.name);
  names.push_back("precision");
  return names;
}

inline Index walk_field(const nlohmann::json& j, const char* key, const std::string& where, Index lo, bool required) {
  if (!j.contains(key)) {
    if (required) sweep_fail(where, "the walk needs '" + std::string(key) + "' (a whole number of days)");
    return -1;
  }
  const nlohmann::json& v = j.at(key);
  if (!v.is_number_integer() || v.get<long long>() < lo || v.get<long long>() > limits::kMaxDays)
    sweep_fail(where, "walk '" + std::string(key) + "' is " + v.dump() + ", expected a whole number from " +
                          std::to_string(lo) + " to " + std::to_string(limits::kMaxDays));
  return static_cast<Index>(v.get<long long>());
}

// Options of a job's grid point, for reading its data options and lookback.
inline Options point_options(const nlohmann::json& options, const std::string& where) {
  Options o("sweep", train_options());
  o.apply_json(options, where);
  o.validate();
  return o;
}

}  // namespace detail

inline WalkSpec WalkSpec::from_json(const nlohmann::json& j, const std::string& where) {
  if (!j.is_object()) detail::sweep_fail(where, "'walk' must be an object, got " + j.dump());
  for (const auto& [key, value] : j.items())
    if (key != "train-days" && key != "valid-days" && key != "test-days" && key != "first-test")
      detail::sweep_fail(where, "unknown walk field '" + key + "' (fields: train-days valid-days test-days first-test)");
  WalkSpec w;
  w.train_days = detail::walk_field(j, "train-days", where, 1, true);
  w.valid_days = detail::walk_field(j, "valid-days", where, 1, true);
  w.test_days = detail::walk_field(j, "test-days", where, 1, true);
  if (j.contains("first-test") && j.at("first-test").is_string()) {
    const std::string date = j.at("first-test").get<std::string>();
    std::int64_t day = 0;
    if (!data::parse_iso_date(date.data(), date.data() + date.size(), day))
      detail::sweep_fail(where, "walk 'first-test' is \"" + date + "\", expected a day index or a date YYYY-MM-DD");
    w.first_test_date = date;
  } else {
    w.first_test = detail::walk_field(j, "first-test", where, 0, false);
  }
  return w;
}

inline nlohmann::json WalkSpec::to_json() const {
  nlohmann::json j = {{"train-days", train_days}, {"valid-days", valid_days}, {"test-days", test_days}};
  if (!first_test_date.empty()) j["first-test"] = first_test_date;
  else if (first_test >= 0) j["first-test"] = first_test;
  return j;
}

inline std::vector<Window> walk_windows(const WalkSpec& walk, Index days, Index data_test_index,
                                        const std::string& where) {
  const Index first = walk.first_test >= 0 ? walk.first_test : data_test_index;
  const Index span = walk.train_days + walk.valid_days;
  if (first < span)
    detail::sweep_fail(where, "the first test day " + std::to_string(first) + " leaves no room for train-days " +
                                  std::to_string(walk.train_days) + " + valid-days " + std::to_string(walk.valid_days) +
                                  " before it (they need days 0 .. " + std::to_string(span - 1) +
                                  "): lower them or set first-test to " + std::to_string(span) + " or more");
  if (first >= days)
    detail::sweep_fail(where, "the first test day " + std::to_string(first) + " is past the market's " +
                                  std::to_string(days) + " days");
  std::vector<Window> windows;
  for (Index test = first; test < days; test += walk.test_days) {
    Window w;
    w.test_index = test;
    w.test_end = std::min(days, test + walk.test_days);
    w.valid_index = test - walk.valid_days;
    w.train_start = w.valid_index - walk.train_days;
    windows.push_back(w);
  }
  return windows;
}

inline nlohmann::json SweepPlan::to_json() const {
  nlohmann::json jobs_json = nlohmann::json::array();
  for (const SweepJob& j : jobs)
    jobs_json.push_back({{"name", j.name}, {"member", j.member}, {"configuration", j.configuration},
                         {"values", j.values}, {"options", j.options}});
  return {{"grid", grid}, {"jobs", jobs_json}};
}

inline SweepPlan SweepPlan::from_json(const nlohmann::json& j) {
  SweepPlan plan;
  plan.grid = j.at("grid");
  for (const auto& job : j.at("jobs")) {
    SweepJob s{job.at("name"), job.at("member"), job.at("configuration"), job.at("values"), job.at("options"),
               std::nullopt};
    if (plan.walk())
      s.window = Window{s.options.at("train-start").get<Index>(), s.options.at("valid-index").get<Index>(),
                        s.options.at("test-index").get<Index>(), s.options.at("test-end").get<Index>()};
    plan.jobs.push_back(std::move(s));
  }
  return plan;
}

inline std::string name_part(const std::string& key, const nlohmann::json& value) {
  const std::string text = value.is_string() ? value.get<std::string>() : value.dump();
  std::string out = key + "=";
  for (const char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    if (std::isalnum(c) || c == '.' || c == '_' || c == '+' || c == '-') {
      out += ch;
    } else {
      char hex[4];
      std::snprintf(hex, sizeof hex, "%%%02X", c);
      out += hex;
    }
  }
  return out;
}

inline SweepPlan plan_sweep(const nlohmann::json& grid_file, const std::string& where) {
  using nlohmann::json;
  if (!grid_file.is_object()) detail::sweep_fail(where, "expected a JSON object {\"base\": {...}, \"grid\": {...}}");
  for (const auto& [key, value] : grid_file.items())
    if (key != "base" && key != "grid" && key != "walk")
      detail::sweep_fail(where, "unknown key '" + key + "' (keys: base, grid, walk)");
  const json base = grid_file.value("base", json::object());
  const json grid = grid_file.value("grid", json::object());
  if (!base.is_object()) detail::sweep_fail(where, "'base' must be an object of train options, got " + base.dump());
  if (!grid.is_object()) detail::sweep_fail(where, "'grid' must be an object of option -> [values], got " + grid.dump());
  const bool walk = grid_file.contains("walk");
  const WalkSpec spec = walk ? WalkSpec::from_json(grid_file.at("walk"), where) : WalkSpec{};
  auto check_key = [&](const std::string& key, const char* part) {
    if (detail::sweep_owned_options().count(key))
      detail::sweep_fail(where, std::string(part) + " sets '" + key + "', which the sweep decides (out: OUT/<job>; " +
                                    "seeds: make 'seed' a grid key; threads: the sweep's --threads)");
    if (walk && detail::walk_owned_options().count(key))
      detail::sweep_fail(where, std::string(part) + " sets '" + key + "', which each walk window sets");
  };
  for (const auto& [key, value] : base.items()) check_key(key, "'base'");
  std::vector<std::pair<std::string, std::vector<json>>> axes;  // sorted by key (json objects are)
  for (const auto& [key, values] : grid.items()) {
    check_key(key, "'grid'");
    if (key == "precision")
      detail::sweep_fail(where, "'grid' sets 'precision': a sweep computes in one precision (set it in 'base')");
    if (!values.is_array() || values.empty())
      detail::sweep_fail(where, "grid '" + key + "' must be a non-empty list of values, got " + values.dump());
    std::vector<json> list(values.begin(), values.end());
    for (std::size_t a = 0; a < list.size(); ++a)
      for (std::size_t b = a + 1; b < list.size(); ++b)
        if (name_part(key, list[a]) == name_part(key, list[b]))
          detail::sweep_fail(where, "grid '" + key + "' lists " + list[a].dump() + " and " + list[b].dump() +
                                        ", which name the same job");
    axes.emplace_back(key, std::move(list));
  }
  SweepPlan plan;
  plan.grid = grid_file;
  std::size_t points = 1;
  for (const auto& axis : axes) {
    points *= axis.second.size();
    if (points > 1'000'000) detail::sweep_fail(where, "the grid has more than 1,000,000 points");
  }
  struct MarketDays {
    Index days, test_index, first_test;  // the first test day of the walk on this market (-1: its own)
  };
  std::map<std::string, MarketDays> market_days;  // data options -> its days
  for (std::size_t p = 0; p < points; ++p) {
    json values = json::object();
    std::size_t rest = p;
    for (std::size_t a = axes.size(); a-- > 0;) {
      const auto& [key, list] = axes[a];
      values[key] = list[rest % list.size()];
      rest /= list.size();
    }
    std::string member, configuration;
    for (const auto& [key, value] : values.items()) {
      const std::string part = name_part(key, value);
      member += (member.empty() ? "" : ",") + part;
      if (key != "seed") configuration += (configuration.empty() ? "" : ",") + part;
    }
    if (member.empty()) member = "base";
    if (configuration.empty()) configuration = "base";
    json options = base;
    for (const auto& [key, value] : values.items()) options[key] = value;
    const std::string at = where + ", job " + member;
    // Every job's options are read now, so that a bad value fails the sweep before any job runs.
    const Options o = detail::point_options(options, at);
    if (!walk) {
      plan.jobs.push_back({member, member, configuration, values, options, std::nullopt});
      continue;
    }
    json data_key = json::object();
    for (const std::string& name : detail::data_option_names()) data_key[name] = o.str(name);
    auto found = market_days.find(data_key.dump());
    if (found == market_days.end()) {
      const RunData<float> d = load_data<float>(o);
      Index first_test = spec.first_test;
      if (!spec.first_test_date.empty()) {
        try {
          first_test = data::day_of_date(d.dates, spec.first_test_date, "walk first-test");
        } catch (const Error& e) {
          detail::sweep_fail(at, e.what());
        }
      }
      found = market_days.emplace(data_key.dump(), MarketDays{d.market.days(), d.test_index, first_test}).first;
    }
    const Index need = o.integer("lookback") + o.integer("steps");
    if (spec.train_days < need)
      detail::sweep_fail(where, "walk train-days " + std::to_string(spec.train_days) + " holds no training window of " +
                                    "lookback + steps = " + std::to_string(need) + " days (job " + member + ")");
    WalkSpec on_market = spec;
    on_market.first_test = found->second.first_test;
    for (const Window& w : walk_windows(on_market, found->second.days, found->second.test_index, at)) {
      json window_options = options;
      window_options["train-start"] = w.train_start;
      window_options["valid-index"] = w.valid_index;
      window_options["test-index"] = w.test_index;
      window_options["test-end"] = w.test_end;
      window_options["strict-split"] = true;
      const std::string name = member == "base" ? w.name() : member + "," + w.name();
      plan.jobs.push_back({name, member, configuration, values, window_options, w});
    }
  }
  for (const SweepJob& j : plan.jobs)
    if (j.name.size() > 200)
      detail::sweep_fail(where, "job name '" + j.name.substr(0, 60) + "...' is " + std::to_string(j.name.size()) +
                                    " bytes long, more than a folder name may safely be (200): shorten the values");
  return plan;
}

inline Options job_options(const SweepPlan& plan, std::size_t k, const std::filesystem::path& out, Index threads) {
  const SweepJob& job = plan.jobs.at(k);
  nlohmann::json j = job.options;
  j["out"] = (out / job.name).string();
  j["resume"] = true;
  j["threads"] = threads;
  Options o("sweep", train_options());
  o.apply_json(j, "job " + job.name);
  o.validate();
  return o;
}

inline nlohmann::json finished_summary(const std::filesystem::path& folder, Index epochs) {
  const std::filesystem::path path = folder / "summary.json";
  std::error_code ec;
  for (const char* name : kRunFiles)
    if (!std::filesystem::is_regular_file(folder / name, ec)) return nullptr;
  nlohmann::json s;
  try {
    s = io::read_json_file(path.string(), "a job's summary", 1u << 30);
  } catch (const Error&) {
    return nullptr;  // cut short or foreign: the job runs again (train's resume then judges the folder)
  }
  if (!s.is_object() || s.contains("interrupted") || !s.contains("epochs") || !s.at("epochs").is_number_integer() ||
      s.at("epochs").get<long long>() != epochs || !s.contains("valid") || !s.contains("test"))
    return nullptr;
  return s;
}

inline void record_plan(const SweepPlan& plan, const std::filesystem::path& out) {
  namespace fs = std::filesystem;
  const fs::path path = out / "plan.json";
  std::map<std::string, nlohmann::json> before;
  std::error_code ec;
  if (fs::exists(path, ec)) {
    const nlohmann::json old = io::read_json_file(path.string(), "the sweep's plan", 1u << 30);
    if (!old.is_object() || !old.contains("jobs") || !old.at("jobs").is_array())
      throw Error("stockmixer sweep: " + path.string() + " is not a sweep's plan: choose another --out");
    for (const auto& j : old.at("jobs"))
      if (j.is_object() && j.contains("name") && j.at("name").is_string() && j.contains("options"))
        before[j.at("name").get<std::string>()] = j.at("options");
  }
  auto without_epochs = [](nlohmann::json o) {
    o.erase("epochs");
    return o;
  };
  for (const SweepJob& job : plan.jobs) {
    if (!fs::exists(out / job.name, ec)) continue;
    const auto it = before.find(job.name);
    if (it == before.end())
      throw Error("stockmixer sweep: " + (out / job.name).string() + " exists but no plan.json of " + out.string() +
                  " names it: choose another --out");
    if (without_epochs(it->second) != without_epochs(job.options))
      throw Error("stockmixer sweep: job " + job.name + " in " + out.string() +
                  " ran with other options (only epochs may change between runs of a sweep)\n  then: " +
                  it->second.dump() + "\n  now:  " + job.options.dump());
  }
  io::write_file(path.string(), plan.to_json().dump(1) + "\n");
}

inline nlohmann::json job_result_of(const nlohmann::json& summary) {
  return {{"status", "done"},
          {"summary",
           {{"best_epoch", summary.at("best_epoch")},
            {"epochs", summary.at("epochs")},
            {"valid", summary.at("valid")},
            {"test", summary.at("test")}}}};
}

inline nlohmann::json run_job(const SweepPlan& plan, std::size_t k, const std::filesystem::path& out, Index threads,
                              const std::atomic<bool>* stop) {
  const std::string& name = plan.jobs.at(k).name;
  try {
    const Options o = job_options(plan, k, out, threads);
    const nlohmann::json summary = train_job(o, JobHooks{nullptr, nullptr, stop});
    return job_result_of(summary);
  } catch (const Interrupted& e) {
    return {{"status", "interrupted"}, {"error", "job " + name + ": " + e.what()}};
  } catch (const std::bad_alloc&) {
    return {{"status", "failed"}, {"error", "job " + name + ": out of memory while allocating " + allocating_now()}};
  } catch (const std::exception& e) {
    return {{"status", "failed"}, {"error", "job " + name + ": " + e.what()}};
  }
}

inline std::optional<std::size_t> JobQueue::next() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (stopped_ || taken_ >= pending_.size()) return std::nullopt;
  return pending_[taken_++];
}

inline void JobQueue::stop() {
  std::lock_guard<std::mutex> lock(mutex_);
  stopped_ = true;
}

namespace detail {

// The stitched series' backtest: the top 5 each day, 10 bps of cost per unit of turnover (a day with
// fewer than 5 valid stocks makes it an error, recorded in its place).
inline nlohmann::json stitched_backtest(const Tensor<double>& score, const Tensor<double>& gt, const Tensor<double>& mask) {
  try {
    return metrics::backtest(score, gt, mask, 5, 0, 10.0).to_json();
  } catch (const Error& e) {
    return {{"error", e.what()}};
  }
}

// A period's return ratios of a member, [N, days], with the period's gt and mask.
struct Scores {
  Tensor<double> score, gt, mask;
};

// What best.safetensors of a job scores over target days [start, end): model.predict on each day's
// window, then the return ratio rank_loss_forward_sorted forms, as Trainer::evaluate_period does.
template <class T>
Scores job_scores(const RunData<T>& data, const std::filesystem::path& weights, Index lookback, double alpha,
                  Index start, Index end) {
  StockMixer<T> model = load_checkpoint<T>(weights.string());
  const Index n = data.market.stocks(), days = end - start;
  data::Batch<T> batch;
  Tensor<T> pred, gt, mask;
  RankLossWorkspace workspace;
  sweep_period(data.market, lookback, start, end, batch, pred, gt, mask, [&](const data::Batch<T>& b, Tensor<T>& rr) {
    const Tensor<T>& p = model.predict(TensorMap<const T>(b.x.data(), b.x.shape()));
    rank_loss_forward_sorted(rr.data(), p.data(), b.base.data(), b.gt.data(), b.mask.data(), n, static_cast<T>(alpha),
                             workspace);
  });
  Scores s{Tensor<double>({n, days}), Tensor<double>({n, days}), Tensor<double>({n, days})};
  for (Index i = 0; i < n * days; ++i) {
    s.score.data()[i] = static_cast<double>(pred.data()[i]);
    s.gt.data()[i] = static_cast<double>(gt.data()[i]);
    s.mask.data()[i] = static_cast<double>(mask.data()[i]);
  }
  return s;
}

// Columns [from, from + part's days) of `whole` set from `part`.
inline void put_columns(Tensor<double>& whole, const Tensor<double>& part, Index from) {
  const Index n = whole.dim(0), days = whole.dim(1), width = part.dim(1);
  for (Index i = 0; i < n; ++i)
    for (Index d = 0; d < width; ++d) whole.data()[i * days + from + d] = part.data()[i * width + d];
}

// Population mean and std of one metric over members' {"valid": ..., "test": ...} objects.
inline nlohmann::json member_stats(const std::vector<nlohmann::json>& members) {
  nlohmann::json j;
  for (const std::string period : {"valid", "test"})
    for (const std::string& key : report_metrics()) j[period][key] = mean_std(members, period, key);
  return j;
}

// The market of a job's options, loaded once per distinct data option set.
template <class T>
class MarketCache {
 public:
  const RunData<T>& get(const Options& o) {
    nlohmann::json key = nlohmann::json::object();
    for (const std::string& name : data_option_names()) key[name] = o.str(name);
    auto it = cache_.find(key.dump());
    if (it == cache_.end()) it = cache_.emplace(key.dump(), load_data<T>(o)).first;
    return it->second;
  }

 private:
  std::map<std::string, RunData<T>> cache_;
};

inline std::string metric_text(const nlohmann::json& v) {
  if (!v.is_number()) return "n/a";
  char text[32];
  std::snprintf(text, sizeof text, "%+.4f", v.get<double>());
  return text;
}
inline std::string mean_std_text(const nlohmann::json& s) {
  if (!s.is_object() || !s.at("mean").is_number()) return "n/a";
  return metric_text(s.at("mean")) + " ± " + metric_text(s.at("std")).substr(1);
}

// The stitched out-of-sample rows of a member: date,ticker,score,label,split for every valid stock and day.
template <class T>
std::string predictions_csv(const RunData<T>& data, const Scores& s, const std::vector<Index>& days) {
  std::string csv = "date,ticker,score,label,split\n";
  const Index n = s.score.dim(0), width = s.score.dim(1);
  const auto& tickers = data.market.tickers;
  char number[64];
  for (Index d = 0; d < width; ++d) {
    const Index day = days[static_cast<std::size_t>(d)];
    const std::string date = static_cast<Index>(data.dates.size()) == data.market.days()
                                 ? data.dates[static_cast<std::size_t>(day)]
                                 : std::to_string(day);
    for (Index i = 0; i < n; ++i) {
      if (!(s.mask.data()[i * width + d] >= 0.5)) continue;
      csv += date + ",";
      csv += static_cast<Index>(tickers.size()) == n ? tickers[static_cast<std::size_t>(i)] : std::to_string(i);
      std::snprintf(number, sizeof number, ",%.9g", s.score.data()[i * width + d]);
      csv += number;
      std::snprintf(number, sizeof number, ",%.9g,test\n", s.gt.data()[i * width + d]);
      csv += number;
    }
  }
  return csv;
}

template <class T>
nlohmann::json finish_sweep_as(const SweepPlan& plan, const std::vector<nlohmann::json>& results,
                               const std::filesystem::path& out, const SweepReport& report) {
  namespace fs = std::filesystem;
  using nlohmann::json;
  const bool walk = plan.walk();
  MarketCache<T> markets;
  json jobs = json::array();
  // member -> its jobs in plan order; configuration -> its members in plan order
  std::vector<std::string> member_order, configuration_order;
  std::map<std::string, std::vector<std::size_t>> member_jobs;
  std::map<std::string, std::vector<std::string>> configuration_members;
  std::map<std::string, const SweepJob*> member_first;
  bool all_done = true;
  for (std::size_t k = 0; k < plan.jobs.size(); ++k) {
    const SweepJob& job = plan.jobs[k];
    const json& r = results.at(k);
    json entry = {{"name", job.name}, {"values", job.values}, {"status", r.at("status")}};
    if (job.window) entry["window"] = {{"train_start", job.window->train_start}, {"valid_index", job.window->valid_index},
                                       {"test_index", job.window->test_index},   {"test_end", job.window->test_end}};
    if (r.contains("error")) entry["error"] = r.at("error");
    if (r.at("status") == "done")
      for (const char* key : {"best_epoch", "epochs", "valid", "test"}) entry[key] = r.at("summary").at(key);
    else
      all_done = false;
    jobs.push_back(entry);
    if (!member_jobs.count(job.member)) {
      member_order.push_back(job.member);
      member_first[job.member] = &job;
      if (!configuration_members.count(job.configuration)) configuration_order.push_back(job.configuration);
      configuration_members[job.configuration].push_back(job.member);
    }
    member_jobs[job.member].push_back(k);
  }
  json sweep = {{"grid", plan.grid}, {"jobs", jobs}, {"ranked_by", "valid " + report.rank_by}};
  if (report.ensemble) sweep["ensemble"] = true;
  if (!all_done) {
    // Metrics over members need every job: the sweep says which failed, and a re-run retries them.
    io::write_file((out / "sweep.json").string(), sweep.dump(1) + "\n");
    return sweep;
  }
  const bool need_scores = walk || report.ensemble;
  std::map<std::string, json> member_metrics;  // {"valid": ..., "test": ...}
  std::map<std::string, std::map<std::string, Scores>> member_scores;  // member -> period -> scores
  std::map<std::string, std::vector<Index>> member_days;               // walk: the stitched test days
  json members = json::array();
  for (const std::string& member : member_order) {
    const std::vector<std::size_t>& ks = member_jobs[member];
    json m = {{"name", member}, {"jobs", json::array()}};
    for (std::size_t k : ks) m["jobs"].push_back(plan.jobs[k].name);
    if (!need_scores) {
      const json& s = results[ks.front()].at("summary");
      member_metrics[member] = {{"valid", s.at("valid")}, {"test", s.at("test")}};
      continue;
    }
    const Options first = detail::point_options(plan.jobs[ks.front()].options, "job " + plan.jobs[ks.front()].name);
    const RunData<T>& data = markets.get(first);
    const Index lookback = first.integer("lookback");
    const double alpha = first.number("alpha");
    bool matches = true;
    if (!walk) {
      const SweepJob& job = plan.jobs[ks.front()];
      const TrainConfig c = train_config(first, data);
      const fs::path weights = out / job.name / "best.safetensors";
      Scores valid = job_scores(data, weights, lookback, alpha, c.valid_index, c.test_index);
      Scores test = job_scores(data, weights, lookback, alpha, c.test_index, c.test_stop(data.market.days()));
      const json& s = results[ks.front()].at("summary");
      const json valid_perf = metrics::evaluate(valid.score, valid.gt, valid.mask).to_json();
      const json test_perf = metrics::evaluate(test.score, test.gt, test.mask).to_json();
      auto same = [](const json& perf, const json& summary_period) {
        for (const auto& [key, value] : perf.items())
          if (!summary_period.contains(key) || summary_period.at(key) != value) return false;
        return true;
      };
      matches = same(valid_perf, s.at("valid")) && same(test_perf, s.at("test"));
      member_metrics[member] = {{"valid", s.at("valid")}, {"test", s.at("test")}};
      member_scores[member]["valid"] = std::move(valid);
      member_scores[member]["test"] = std::move(test);
    } else {
      // The windows' test periods, in order, as one series; validation: the windows' mean.
      Index total = 0;
      for (std::size_t k : ks) total += plan.jobs[k].window->test_end - plan.jobs[k].window->test_index;
      const Index n = data.market.stocks();
      Scores stitched{Tensor<double>({n, total}), Tensor<double>({n, total}), Tensor<double>({n, total})};
      std::vector<Index> days;
      std::vector<json> windows_valid;
      Index at = 0, expected = plan.jobs[ks.front()].window->test_index;
      for (std::size_t k : ks) {
        const Window& w = *plan.jobs[k].window;
        if (w.test_index != expected)
          throw Error("stockmixer sweep: member " + member + ": window " + plan.jobs[k].name + " starts at day " +
                      std::to_string(w.test_index) + ", expected " + std::to_string(expected) +
                      " (the windows' test periods must follow each other)");
        expected = w.test_end;
        Scores part = job_scores(data, out / plan.jobs[k].name / "best.safetensors", lookback, alpha, w.test_index,
                                 w.test_end);
        const json window_test = metrics::evaluate(part.score, part.gt, part.mask).to_json();
        for (const auto& [key, value] : window_test.items())
          if (results[k].at("summary").at("test").at(key) != value) matches = false;
        put_columns(stitched.score, part.score, at);
        put_columns(stitched.gt, part.gt, at);
        put_columns(stitched.mask, part.mask, at);
        for (Index d = w.test_index; d < w.test_end; ++d) days.push_back(d);
        at += w.test_end - w.test_index;
        windows_valid.push_back({{"valid", results[k].at("summary").at("valid")}});
      }
      json valid = json::object();
      for (const std::string& key : report_metrics()) {
        const json st = mean_std(windows_valid, "valid", key);
        valid[key] = st.at("mean");
      }
      const json test = metrics::evaluate(stitched.score, stitched.gt, stitched.mask).to_json();
      member_metrics[member] = {{"valid", valid}, {"test", test}};
      m["backtest"] = stitched_backtest(stitched.score, stitched.gt, stitched.mask);
      m["test_days"] = {{"first", days.front()}, {"last", days.back()}, {"count", days.size()}};
      const fs::path folder = out / "stitched" / member;
      fs::create_directories(folder);
      io::write_file((folder / "predictions.csv").string(), predictions_csv(data, stitched, days));
      member_scores[member]["test"] = std::move(stitched);
      member_days[member] = std::move(days);
    }
    m["valid"] = member_metrics[member]["valid"];
    m["test"] = member_metrics[member]["test"];
    m["scores_match_summaries"] = matches;
    members.push_back(m);
  }
  if (need_scores) sweep["members"] = members;

  json configurations = json::array();
  for (const std::string& configuration : configuration_order) {
    const std::vector<std::string>& ms = configuration_members[configuration];
    std::vector<json> of;
    for (const std::string& m : ms) of.push_back(member_metrics[m]);
    json c = {{"name", configuration}, {"members", ms}};
    const json stats = member_stats(of);
    c["valid"] = stats.at("valid");
    c["test"] = stats.at("test");
    if (report.ensemble) {
      json ensemble = json::object();
      for (const std::string period : {"valid", "test"}) {
        if (!member_scores[ms.front()].count(period)) continue;
        const Scores& first = member_scores[ms.front()][period];
        Tensor<double> mean(first.score.shape());
        mean.zero();
        for (const std::string& m : ms) {
          const Tensor<double>& s = member_scores[m][period].score;
          for (Index i = 0; i < mean.size(); ++i) mean.data()[i] += s.data()[i];
        }
        for (Index i = 0; i < mean.size(); ++i) mean.data()[i] /= static_cast<double>(ms.size());
        ensemble[period] = metrics::evaluate(mean, first.gt, first.mask).to_json();
        if (walk && period == std::string("test")) {
          ensemble["backtest"] = stitched_backtest(mean, first.gt, first.mask);
          const Options o = detail::point_options(plan.jobs[member_jobs[ms.front()].front()].options, configuration);
          const std::vector<Index>& days = member_days[ms.front()];
          const std::string name = configuration == "base" ? "seed=ensemble" : configuration + ",seed=ensemble";
          const fs::path folder = out / "stitched" / name;
          fs::create_directories(folder);
          io::write_file((folder / "predictions.csv").string(),
                         predictions_csv(markets.get(o), Scores{mean, first.gt, first.mask}, days));
        }
      }
      c["ensemble"] = ensemble;
    }
    configurations.push_back(c);
  }
  // Ranked by the validation mean of rank_by: larger first, but for mse; configurations without a value last.
  const bool larger = report.rank_by != "mse";
  std::stable_sort(configurations.begin(), configurations.end(), [&](const json& a, const json& b) {
    const json& x = a.at("valid").at(report.rank_by).at("mean");
    const json& y = b.at("valid").at(report.rank_by).at("mean");
    if (!x.is_number() || !y.is_number()) return x.is_number() && !y.is_number();
    return larger ? x.get<double>() > y.get<double>() : x.get<double>() < y.get<double>();
  });
  sweep["configurations"] = configurations;
  io::write_file((out / "sweep.json").string(), sweep.dump(1) + "\n");

  // report.md: one row per configuration.
  std::ostringstream md;
  md << "# Sweep report\n\n"
     << plan.jobs.size() << " jobs, " << member_order.size() << " members, " << configuration_order.size()
     << " configurations" << (walk ? ", walk-forward (test: the windows' out-of-sample days stitched into one series)" : "")
     << ". Mean ± population std over each configuration's members (seeds); ranked by the validation "
     << report.rank_by << (walk ? " (the windows' mean)" : "") << ".\n\n"
     << "| rank | configuration | members | valid " << report.rank_by << " | test IC | test rank IC | test RIC | test prec@10 | test sharpe5 |"
     << (report.ensemble ? " ensemble test IC | ensemble test rank IC | ensemble test sharpe5 |" : "") << "\n"
     << "|---|---|---|---|---|---|---|---|---|" << (report.ensemble ? "---|---|---|" : "") << "\n";
  int rank = 0;
  for (const json& c : configurations) {
    md << "| " << ++rank << " | " << c.at("name").get<std::string>() << " | " << c.at("members").size() << " | "
       << mean_std_text(c.at("valid").at(report.rank_by));
    for (const char* key : {"IC", "rank_ic", "RIC", "prec_10", "sharpe5"}) md << " | " << mean_std_text(c.at("test").at(key));
    if (report.ensemble) {
      const json e = c.at("ensemble").value("test", json::object());
      for (const char* key : {"IC", "rank_ic", "sharpe5"}) md << " | " << metric_text(e.value(key, json(nullptr)));
    }
    md << " |\n";
  }
  io::write_file((out / "report.md").string(), md.str());
  return sweep;
}

}  // namespace detail

inline nlohmann::json finish_sweep(const SweepPlan& plan, const std::vector<nlohmann::json>& results,
                                   const std::filesystem::path& out, const SweepReport& report) {
  if (std::find(report_metrics().begin(), report_metrics().end(), report.rank_by) == report_metrics().end())
    throw Error("stockmixer sweep: --rank-by '" + report.rank_by + "' is not one of IC, rank_ic, RIC, prec_10, sharpe5, mse");
  if (results.size() != plan.jobs.size())
    throw Error("stockmixer sweep: " + std::to_string(results.size()) + " results for " +
                std::to_string(plan.jobs.size()) + " jobs");
  // Every job of a sweep scores in the precision its options name; the report's scores are computed in it.
  const std::string precision =
      plan.jobs.empty() ? "f32" : detail::point_options(plan.jobs.front().options, "job").str("precision");
  return precision == "f64" ? detail::finish_sweep_as<double>(plan, results, out, report)
                            : detail::finish_sweep_as<float>(plan, results, out, report);
}

}  // namespace stockmixer::train
