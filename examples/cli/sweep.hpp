// cli/sweep.hpp — stockmixer sweep and stockmixer walk: many train jobs (train/sweep.hpp) from one grid.
//
//   stockmixer sweep --grid GRID.json --out DIR [--ensemble] [--rank-by IC] [--threads K]
//   stockmixer walk  --train-days A --valid-days B --test-days C [--first-test F] --out DIR [--seeds S]
//                    [--grid GRID.json] [--ensemble] [train options ...]
//   mpirun -np R stockmixer sweep ...      (built with -DSTOCKMIXER_MPI=ON)
//
// In one process --jobs J jobs train at once, each in its own thread on --threads engine threads
// (J x threads in all); a job's results do not depend on either count (1, 2 or 16 engine threads give
// the same bits; only the "threads" its summary records differ). Under MPI rank 0 holds the queue: it
// trains jobs in a second thread while its first thread hands the other ranks one job each as they
// ask, and gathers their outcomes; every rank writes its jobs' folders under DIR (one filesystem seen by all ranks, as on a cluster), and
// rank 0 writes plan.json, sweep.json and report.md, the same bytes as a one-process run.
#pragma once

#include "common.hpp"

#include <stockmixer/io/files.hpp>
#include <stockmixer/train/job.hpp>
#include <stockmixer/train/sweep.hpp>

#if defined(STOCKMIXER_MPI)
#include "mpi.hpp"
#endif

#include <chrono>
#include <csignal>
#include <cstdint>
#include <mutex>
#include <set>
#include <thread>

namespace stockmixer::cli {

namespace sweep_detail {

constexpr int kAskTag = 1;  // rank -> 0: the outcome of its last job (or hello), asking for the next
constexpr int kJobTag = 2;  // 0 -> rank: the next job's index, or -1: no more

inline std::vector<Option> run_options(bool grid_required) {
  return {grid_required ? required("grid", "GRID.json: {\"base\": {train options}, \"grid\": {option: [values]}, \"walk\": {...}}")
                        : text("grid", "", "GRID.json whose base and grid this walk runs (the command line's options win)"),
          required("out", "the sweep's folder: one folder per job, plan.json, sweep.json, report.md"),
          flag("ensemble", "average the seeds' scores per configuration and report the ensemble's metrics"),
          text("rank-by", "IC", "the validation metric the report ranks by: IC, rank_ic, RIC, prec_10, sharpe5 or mse"),
          threads_option(),
          integer("jobs", "1", "jobs trained at once in this process (each on --threads threads)", 1, 4096)};
}

// One line per finished job on stderr (under MPI from rank 0's two threads, naming the rank; -1: none).
inline void report_job(std::size_t done, std::size_t total, const train::SweepJob& job, const json& r, int rank) {
  static std::mutex mutex;
  std::lock_guard<std::mutex> lock(mutex);
  std::cerr << "stockmixer sweep: job " << done << "/" << total << " " << job.name
            << (rank >= 0 ? " on rank " + std::to_string(rank) : std::string()) << ": ";
  if (r.at("status") == "done") {
    const json& s = r.at("summary");
    char line[160];
    const json& ic = s.at("test").at("IC");
    std::snprintf(line, sizeof line, "best epoch %d, test IC %+.4f", s.at("best_epoch").get<int>(),
                  ic.is_number() ? ic.get<double>() : std::nan(""));
    std::cerr << line << "\n";
  } else {
    std::cerr << r.at("status").get<std::string>() << ": " << r.value("error", std::string()) << "\n";
  }
}

// The plan's jobs that still need to run; the finished ones' outcomes go into results.
inline std::vector<std::size_t> pending_jobs(const train::SweepPlan& plan, const fs::path& out,
                                             std::vector<json>& results) {
  std::vector<std::size_t> pending;
  for (std::size_t k = 0; k < plan.jobs.size(); ++k) {
    const Index epochs = train::detail::point_options(plan.jobs[k].options, "job " + plan.jobs[k].name).integer("epochs");
    const json summary = train::finished_summary(out / plan.jobs[k].name, epochs);
    if (summary.is_null()) pending.push_back(k);
    else results[k] = train::job_result_of(summary);
  }
  return pending;
}

// Jobs in this process, `jobs` at a time, each in its own thread taking the queue's next job when done
// (each job writes only its own results[k]; the count of finished ones is shared under a lock).
inline void run_here(const train::SweepPlan& plan, train::JobQueue& queue, const fs::path& out, Index threads,
                     std::vector<json>& results, std::size_t& done, std::size_t total, Index jobs = 1) {
  std::mutex mutex;
  auto take_jobs = [&] {  // train_job sets this thread's engine threads (OpenMP counts them per thread)
    while (const std::optional<std::size_t> k = queue.next()) {
      json r = train::run_job(plan, *k, out, threads, &interrupt_requested);
      if (r.at("status") == "interrupted") queue.stop();
      std::size_t finished = 0;
      {
        std::lock_guard<std::mutex> lock(mutex);
        results[*k] = std::move(r);
        finished = ++done;
      }
      report_job(finished, total, plan.jobs[*k], results[*k], -1);
    }
  };
  if (jobs <= 1) return take_jobs();
  std::vector<std::thread> workers;
  for (Index j = 0; j < jobs; ++j) workers.emplace_back(take_jobs);
  for (std::thread& w : workers) w.join();
}

#if defined(STOCKMIXER_MPI)
// Rank 0: a thread trains jobs here while this one serves the other ranks until each was told to stop.
inline void serve(mpi::World& world, const train::SweepPlan& plan, train::JobQueue& queue, const fs::path& out,
                  Index threads, std::vector<json>& results, std::size_t& done, std::size_t total) {
  std::mutex done_mutex;
  std::thread here;
  if (world.funneled())
    here = std::thread([&] {
      while (const std::optional<std::size_t> k = queue.next()) {
        results[*k] = train::run_job(plan, *k, out, threads, &interrupt_requested);
        if (results[*k].at("status") == "interrupted") queue.stop();
        std::lock_guard<std::mutex> lock(done_mutex);
        report_job(++done, total, plan.jobs[*k], results[*k], 0);
      }
    });
  int asking = world.size() - 1;
  while (asking > 0) {
    const int from = mpi::waiting(kAskTag);
    if (from < 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
      continue;
    }
    const json message = json::parse(mpi::receive_text(from, kAskTag));
    if (message.contains("index")) {
      const auto k = message.at("index").get<std::size_t>();
      results.at(k) = message.at("result");
      if (results[k].at("status") == "interrupted") queue.stop();
      std::lock_guard<std::mutex> lock(done_mutex);
      report_job(++done, total, plan.jobs[k], results[k], from);
    }
    const std::optional<std::size_t> next = queue.next();
    mpi::send_text(from, kJobTag, std::to_string(next ? static_cast<long long>(*next) : -1));
    if (!next) --asking;
  }
  if (here.joinable()) here.join();
}

// Ranks 1..: ask rank 0 for a job, run it, send its outcome with the next request.
inline void work(const train::SweepPlan& plan, const fs::path& out, Index threads) {
  json message = {{"hello", true}};
  for (;;) {
    mpi::send_text(0, kAskTag, message.dump());
    const long long k = std::stoll(mpi::receive_text(0, kJobTag));
    if (k < 0) return;
    const auto job = static_cast<std::size_t>(k);
    message = {{"index", job}, {"result", train::run_job(plan, job, out, threads, &interrupt_requested)}};
  }
}
#endif

// The sweep of `grid` into out: plan, jobs (here or over MPI), report. Exit status: 0, 1 when a job
// failed, 130 when stopped.
inline int run_sweep(int argc, char** argv, const Options& a, const std::function<json()>& grid_of) {
  const fs::path out = a.str("out");
  const Index threads = a.integer("threads");
  train::SweepReport report;
  report.ensemble = a.flag("ensemble");
  report.rank_by = a.choice("rank-by", train::report_metrics());
  std::signal(SIGINT, [](int) { interrupt_requested.store(true); });
#if defined(STOCKMIXER_MPI)
  mpi::World world(&argc, &argv);
#else
  (void)argc;
  (void)argv;
#endif
  set_num_threads(static_cast<int>(threads));
  train::SweepPlan plan;
  std::string plan_text;
  std::optional<io::FolderLock> lock;
  try {
#if defined(STOCKMIXER_MPI)
    if (world.rank() == 0) {
#endif
      plan = train::plan_sweep(grid_of(), a.str("grid").empty() ? "the walk's options" : a.str("grid"));
      fs::create_directories(out);
      lock.emplace(out);  // one sweep writes a folder at a time
      train::record_plan(plan, out);
      plan_text = plan.to_json().dump();
#if defined(STOCKMIXER_MPI)
    }
#endif
  } catch (...) {
#if defined(STOCKMIXER_MPI)
    if (world.size() > 1) mpi::broadcast("");  // the other ranks stop too
#endif
    throw;
  }
#if defined(STOCKMIXER_MPI)
  if (world.size() > 1) {
    plan_text = mpi::broadcast(plan_text);
    if (plan_text.empty()) return 1;  // rank 0 refused the sweep and said why
    if (world.rank() != 0) {
      work(train::SweepPlan::from_json(json::parse(plan_text)), out, threads);
      return 0;
    }
  }
#endif
  std::vector<json> results(plan.jobs.size());
  train::JobQueue queue(pending_jobs(plan, out, results));
  std::size_t done = plan.jobs.size();
  for (const json& r : results) done -= r.is_null() ? 1 : 0;
  std::cerr << "stockmixer sweep: " << plan.jobs.size() << " jobs, " << done << " already finished, into "
            << out.string() << "\n";
#if defined(STOCKMIXER_MPI)
  if (world.size() > 1)
    serve(world, plan, queue, out, threads, results, done, plan.jobs.size());
  else
#endif
    run_here(plan, queue, out, threads, results, done, plan.jobs.size(), a.integer("jobs"));
  std::size_t failed = 0;
  for (std::size_t k = 0; k < results.size(); ++k) {
    if (results[k].is_null() || results[k].at("status") == "interrupted") {
      std::cerr << "stockmixer sweep: stopped; finished jobs are kept and the interrupted one resumes: run the same "
                   "command again to continue\n";
      return 130;
    }
    failed += results[k].at("status") == "failed" ? 1 : 0;
  }
  train::finish_sweep(plan, results, out, report);
  std::ifstream md(out / "report.md");
  std::cout << md.rdbuf();
  if (failed > 0) {
    std::cerr << "stockmixer sweep: " << failed << " of " << results.size() << " jobs failed (sweep.json says why)\n";
    return 1;
  }
  return 0;
}

}  // namespace sweep_detail

inline int sweep_command(int argc, char** argv) {
  Options a("sweep", sweep_detail::run_options(true));
  if (!parse(a,
             "Runs the jobs of a grid (the Cartesian product of its lists over its base; each job a `stockmixer train`\n"
             "into OUT/<job>/), skipping finished ones, then writes OUT/sweep.json and OUT/report.md: per\n"
             "configuration the mean and std of the metrics over its seeds, ranked by validation. Under mpirun the\n"
             "ranks share the jobs (built with -DSTOCKMIXER_MPI=ON). docs/scaling.md.",
             argc, argv))
    return 0;
  a.validate();
  return sweep_detail::run_sweep(argc, argv, a, [&] {
    return io::read_json_file(a.str("grid"), "grid file (--grid)", 1u << 20);
  });
}

inline int walk_command(int argc, char** argv) {
  // The walk's own options, the sweep's, and train's but those the walk or the sweep decides.
  std::vector<Option> options = sweep_detail::run_options(false);
  for (Option o : {integer("train-days", "", "A: days of training windows per window", 1, limits::kMaxDays),
                   integer("valid-days", "", "B: validation days per window", 1, limits::kMaxDays),
                   integer("test-days", "", "C: test days per window (windows roll forward by C)", 1, limits::kMaxDays),
                   text_or_number("first-test", "", "first test day: a day index or a date YYYY-MM-DD (the first "
                                                    "trading day on or after it; default: the data's own)")})
    options.push_back(std::move(o));
  const std::set<std::string> skip = {"out",         "config",     "overwrite",   "resume",     "threads",
                                      "valid-index", "test-index", "valid-start", "test-start", "strict-split",
                                      "train-start", "test-end"};
  for (Option& o : train::train_options())
    if (!skip.count(o.name)) options.push_back(std::move(o));
  Options a("walk", options);
  if (!parse(a,
             "Walk-forward retraining: for each window (A training days, B validation days, C test days, rolled\n"
             "forward by C from the first test day) one `stockmixer train` with the strict split into OUT/<job>/;\n"
             "the windows' out-of-sample predictions stitched into OUT/stitched/<member>/predictions.csv and scored\n"
             "as one series in OUT/sweep.json and OUT/report.md. --seeds S trains every window with S seeds\n"
             "(members); --grid adds a grid. Train options given here are every job's base.",
             argc, argv))
    return 0;
  a.validate();
  return sweep_detail::run_sweep(argc, argv, a, [&] {
    json grid = a.str("grid").empty() ? json{{"base", json::object()}, {"grid", json::object()}}
                                      : io::read_json_file(a.str("grid"), "grid file (--grid)", 1u << 20);
    if (!grid.is_object()) a.fail(a.str("grid") + ": expected a JSON object");
    json& base = grid["base"];
    if (!base.is_object()) base = json::object();
    json walk = grid.value("walk", json::object());
    for (const char* key : {"train-days", "valid-days", "test-days"})
      if (a.given(key)) walk[key] = a.integer(key);
    if (a.given("first-test")) {  // a day index as a number, a date as text (WalkSpec::from_json reads both)
      const std::string first = a.str("first-test");
      const bool index = first.size() <= 9 && std::all_of(first.begin(), first.end(), [](char c) {
        return c >= '0' && c <= '9';
      }) && !first.empty();
      if (index) walk["first-test"] = std::stoll(first);
      else walk["first-test"] = first;
    }
    grid["walk"] = walk;
    const json given = a.given_json();
    for (auto it = given.begin(); it != given.end(); ++it) {
      const std::string& key = it.key();
      if (key == "grid" || key == "out" || key == "ensemble" || key == "rank-by" || key == "threads" ||
          key == "jobs" || walk.contains(key) || key == "seeds")
        continue;
      base[key] = it.value();
    }
    const Index seeds = a.integer("seeds");
    if (seeds > 1) {
      if (grid.contains("grid") && grid["grid"].contains("seed")) a.fail("--seeds and a grid of 'seed' exclude each other");
      const Index first = a.integer("seed");
      json list = json::array();
      for (Index s = 0; s < seeds; ++s) list.push_back(first + s);
      grid["grid"]["seed"] = list;
      base.erase("seed");
    }
    return grid;
  });
}

}  // namespace stockmixer::cli
