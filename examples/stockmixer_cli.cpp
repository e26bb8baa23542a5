// stockmixer — the command-line tool: predict, gradients, train, bench.
//
//   stockmixer predict   --weights W.safetensors --input X.npy --out P.npy
//   stockmixer gradients --weights W --input X.npy --gt G.npy --base B.npy --mask K.npy --out OUT.safetensors
//   stockmixer train     [--out DIR] [--epochs E] ... (the built-in synthetic market)
//   stockmixer bench     [--stocks N --lookback T --features C --market M --threads K --iters I]
//
// Every subcommand has --help. Arrays are .npy, weights .safetensors, reports JSON.
#include <stockmixer/data/market.hpp>
#include <stockmixer/io/npy.hpp>
#include <stockmixer/loss.hpp>
#include <stockmixer/metrics/evaluate.hpp>
#include <stockmixer/model.hpp>
#include <stockmixer/parallel.hpp>
#include <stockmixer/train/run.hpp>
#include <stockmixer/train/step.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <csignal>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>
#include <map>
#include <new>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace fs = std::filesystem;
using namespace stockmixer;
using nlohmann::json;

namespace {

// Set by SIGINT (a lock-free atomic: safe to store from a signal handler).
std::atomic<bool> interrupt_requested{false};

// ---- arguments -------------------------------------------------------------------------------------

// What an option holds. Integer and real options carry their accepted range; every value, from the
// command line or from --config, is parsed and range-checked by Args::validate before a command
// reads any file or touches any output.
enum class Kind { text, flag, integer, real };

struct Option {
  std::string name;   // without the leading --
  std::string value;  // the default; "" for required options (and for numbers taken from the data)
  std::string help;
  Kind kind = Kind::text;
  bool required = false;
  long long int_lo = 0, int_hi = 0;  // integer: [int_lo, int_hi]
  double lo = 0, hi = 0;             // real: between lo and hi, each end included unless *_open
  bool lo_open = false, hi_open = false;
};

Option text(const std::string& name, const std::string& value, const std::string& help) {
  return {name, value, help};
}
Option required(const std::string& name, const std::string& help) {
  Option o{name, "", help};
  o.required = true;
  return o;
}
Option flag(const std::string& name, const std::string& help) { return {name, "false", help, Kind::flag}; }
Option integer(const std::string& name, const std::string& value, const std::string& help, long long lo,
               long long hi) {
  Option o{name, value, help, Kind::integer};
  o.int_lo = lo;
  o.int_hi = hi;
  return o;
}
Option real(const std::string& name, const std::string& value, const std::string& help, double lo, double hi,
            bool lo_open = false, bool hi_open = false) {
  Option o{name, value, help, Kind::real};
  o.lo = lo;
  o.hi = hi;
  o.lo_open = lo_open;
  o.hi_open = hi_open;
  return o;
}

// "-12", "0", "4096": an optional minus sign and decimal digits, nothing else (no "1e9", "12abc",
// " 7", "+3", "0x10"); false also when the value does not fit a long long.
bool parse_integer(const std::string& v, long long& out) {
  const char* first = v.data();
  const char* last = v.data() + v.size();
  const char* digits = first + (v.size() > 1 && v[0] == '-' ? 1 : 0);
  if (digits == last || !std::all_of(digits, last, [](char c) { return c >= '0' && c <= '9'; })) return false;
  const auto [end, ec] = std::from_chars(first, last, out);
  return ec == std::errc() && end == last;
}

// A finite decimal number ("0.001", "-2", "1e-3", ".5"): no hexadecimal, no "inf" or "nan", no spaces.
bool parse_real(const std::string& v, double& out) {
  if (v.empty() || !std::all_of(v.begin(), v.end(), [](char c) {
        return (c >= '0' && c <= '9') || c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-';
      }))
    return false;
  errno = 0;
  char* end = nullptr;
  out = std::strtod(v.c_str(), &end);
  return end == v.c_str() + v.size() && errno == 0 && std::isfinite(out);
}

std::string number_text(double v) {
  std::ostringstream s;
  s << v;
  return s.str();
}

std::string range_text(const Option& o) {
  if (o.kind == Kind::integer)
    return "a whole number from " + std::to_string(o.int_lo) + " to " + std::to_string(o.int_hi);
  return "a number in " + std::string(o.lo_open ? "(" : "[") + number_text(o.lo) + ", " + number_text(o.hi) +
         (o.hi_open ? ")" : "]");
}

class Args {
 public:
  Args(const std::string& command, const std::string& summary, std::vector<Option> options, int argc, char** argv)
      : command_(command), options_(std::move(options)) {
    for (const auto& o : options_) values_[o.name] = o.value;
    for (int i = 2; i < argc; ++i) {
      const std::string a = argv[i];
      if (a == "--help" || a == "-h") {
        std::cout << usage(summary);
        std::exit(0);
      }
      if (a.rfind("--", 0) != 0) fail("unexpected argument '" + a + "'");
      const Option& o = find(a.substr(2));
      if (o.kind == Kind::flag) {
        values_[o.name] = "true";
      } else {
        if (i + 1 >= argc) fail("--" + o.name + " needs a value");
        values_[o.name] = argv[++i];
      }
      given_.push_back(o.name);
    }
  }

  // Keys of a JSON config file mirror the options; options given on the command line win. The file
  // must be a regular file of at most 1 MiB, nest at most io::kMaxJsonDepth levels (checked before it
  // is parsed) and hold each key once; each value has its option's type.
  void apply_config(const std::string& path) {
    json j;
    try {
      j = io::read_json_file(path, "config file (--config)", 1u << 20);
    } catch (const Error& e) {
      fail(e.what());
    }
    if (!j.is_object()) fail(path + ": expected a JSON object whose keys are option names");
    for (const auto& [key, value] : j.items()) {
      const Option& o = find(key, path);
      if (key == "config") fail(path + ": 'config' cannot name another config file");
      // Every key's type is checked, also where the command line overrides it: the file is wrong either way.
      const std::string where = path + ": '" + key + "' ";
      std::string text;
      switch (o.kind) {
        case Kind::flag:
          if (!value.is_boolean()) fail(where + "must be true or false, got " + value.dump());
          text = value.get<bool>() ? "true" : "false";
          break;
        case Kind::text:
          if (!value.is_string()) fail(where + "must be a string, got " + value.dump());
          text = value.get<std::string>();
          break;
        case Kind::integer:
        case Kind::real:
          if (value.is_string()) text = value.get<std::string>();
          else if (value.is_number()) text = value.dump();
          else fail(where + "must be " + range_text(o) + ", got " + value.dump());
          break;
      }
      if (given(key)) continue;
      values_[key] = text;
      from_[key] = " (from " + path + ")";
      given_.push_back(key);
    }
  }

  // Every required option present, every number parsed and inside its range.
  void validate() const {
    for (const auto& o : options_) {
      const std::string& v = values_.at(o.name);
      if (o.required && v.empty()) fail("--" + o.name + source(o.name) + " is required (see --help)");
      if (v.empty()) continue;
      if (o.kind == Kind::integer) integer(o.name);
      if (o.kind == Kind::real) number(o.name);
    }
  }

  const std::string& str(const std::string& name) const { return values_.at(name); }
  bool flag(const std::string& name) const { return values_.at(name) == "true"; }
  bool given(const std::string& name) const {
    return std::find(given_.begin(), given_.end(), name) != given_.end();
  }
  double number(const std::string& name) const {
    const Option& o = find(name);
    const std::string& v = values_.at(name);
    double d = 0;
    if (o.kind != Kind::real || !parse_real(v, d) || (o.lo_open ? !(d > o.lo) : !(d >= o.lo)) ||
        (o.hi_open ? !(d < o.hi) : !(d <= o.hi)))
      fail("--" + name + source(name) + " expects " + range_text(o) + ", got '" + v + "'");
    return d;
  }
  Index integer(const std::string& name) const {
    const Option& o = find(name);
    const std::string& v = values_.at(name);
    long long n = 0;
    if (o.kind != Kind::integer || !parse_integer(v, n) || n < o.int_lo || n > o.int_hi)
      fail("--" + name + source(name) + " expects " + range_text(o) + ", got '" + v + "'");
    return static_cast<Index>(n);
  }
  std::string choice(const std::string& name, const std::vector<std::string>& allowed) const {
    const std::string& v = values_.at(name);
    if (std::find(allowed.begin(), allowed.end(), v) == allowed.end()) {
      std::string list;
      for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
      fail("--" + name + source(name) + " must be one of " + list + ", got '" + v + "'");
    }
    return v;
  }

  [[noreturn]] void fail(const std::string& what) const { throw Error("stockmixer " + command_ + ": " + what); }

 private:
  const Option& find(const std::string& name, const std::string& where = "") const {
    for (const auto& o : options_)
      if (o.name == name) return o;
    std::string list;
    for (const auto& o : options_) list += " --" + o.name;
    fail((where.empty() ? "" : where + ": ") + "unknown option '" + name + "' (options:" + list + ")");
  }
  std::string usage(const std::string& summary) const {
    std::ostringstream s;
    s << "usage: stockmixer " << command_ << " [options]\n\n" << summary << "\n\noptions:\n";
    for (const auto& o : options_) {
      std::string left = "  --" + o.name + (o.kind == Kind::flag ? "" : " VALUE");
      s << left << std::string(left.size() < 26 ? 26 - left.size() : 1, ' ') << o.help;
      if (o.required) s << " (required)";
      else if (o.kind != Kind::flag && !o.value.empty()) s << " (default " << o.value << ")";
      if (o.kind == Kind::integer || o.kind == Kind::real) s << "; " << range_text(o);
      s << "\n";
    }
    return s.str();
  }

  std::string command_;
  std::vector<Option> options_;
  std::map<std::string, std::string> values_;
  std::vector<std::string> given_;
  std::map<std::string, std::string> from_;  // " (from FILE)" for the options a config file set
  std::string source(const std::string& name) const {
    const auto it = from_.find(name);
    return it == from_.end() ? "" : it->second;
  }
};

// ---- helpers ---------------------------------------------------------------------------------------

// What the command is allocating now, for the message main prints when memory runs out (a
// std::bad_alloc reaching main names the command and this).
std::string command_name = "";
std::string allocating_now = "its working memory";
void allocating(const std::string& what) { allocating_now = what; }

// The machine's physical memory in bytes; 0 when the system does not say.
double physical_memory() {
#if defined(_SC_PHYS_PAGES) && defined(_SC_PAGESIZE)
  const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGESIZE);
  if (pages > 0 && page > 0) return static_cast<double>(pages) * static_cast<double>(page);
#endif
  return 0;
}

// Refuses sizes whose arrays alone (`bytes`, a lower bound of what `what` allocates) exceed the
// machine's memory, before anything is allocated; smaller sizes that still do not fit end in
// std::bad_alloc, which main reports.
void require_memory(const Args& a, double bytes, const std::string& what) {
  const double have = physical_memory();
  if (have > 0 && bytes > have)
    a.fail(what + " needs at least " + io::byte_size(static_cast<std::uint64_t>(bytes)) + ", more than this machine's " +
           io::byte_size(static_cast<std::uint64_t>(have)) + " of memory");
}

std::string file_kind(std::filesystem::file_type type) {
  switch (type) {
    case fs::file_type::directory: return "a directory";
    case fs::file_type::symlink: return "a symbolic link";
    case fs::file_type::character: return "a character device";
    case fs::file_type::block: return "a block device";
    case fs::file_type::fifo: return "a FIFO (named pipe)";
    case fs::file_type::socket: return "a socket";
    default: return "not a regular file";
  }
}

// The file an option names as output: absent or a regular file (never a link, device, FIFO or folder,
// which io::write_file also refuses), in a folder that exists. Checked before any work is done.
void require_output_file(const Args& a, const std::string& option) {
  const std::string& path = a.str(option);
  std::error_code ec;
  const fs::file_type type = fs::symlink_status(path, ec).type();
  if (type != fs::file_type::not_found && type != fs::file_type::regular)
    a.fail("--" + option + " " + path + ": exists and is " + file_kind(type) + ", not a regular file: not replaced");
  const fs::path parent = fs::path(path).parent_path();
  if (!parent.empty() && !fs::is_directory(parent, ec))
    a.fail("--" + option + " " + path + ": the folder " + parent.string() + " does not exist");
}

template <class T>
Index count_nonfinite(const T* values, Index n) {
  Index bad = 0;
  for (Index i = 0; i < n; ++i) bad += std::isfinite(static_cast<double>(values[i])) ? 0 : 1;
  return bad;
}

template <class T>
void require_finite(const Tensor<T>& t, const std::string& path) {
  for (Index i = 0; i < t.size(); ++i)
    if (!std::isfinite(static_cast<double>(t.data()[i])))
      throw Error(path + ": value " + std::to_string(i) + " (flat index) is not finite");
}

template <class T>
Tensor<T> read_column(const std::string& path, Index n) {
  Tensor<T> t = io::read_npy<T>(path);
  if (t.size() != n || !(t.rank() == 1 || (t.rank() == 2 && t.dim(1) == 1)))
    throw Error(path + ": shape " + t.shape().str() + ", expected [" + std::to_string(n) + ", 1]");
  require_finite(t, path);
  t.resize({n, 1});
  return t;
}

template <class T>
Tensor<T> read_input(const std::string& path, const StockMixerConfig& c) {
  Tensor<T> x = io::read_npy<T>(path);
  const Shape want{c.stocks, c.lookback, c.features};
  if (x.shape() != want)
    throw Error(path + ": shape " + x.shape().str() + ", the weights expect [N, T, C] = " + want.str());
  require_finite(x, path);
  return x;
}

template <class F>
double median_ms(Index iters, F&& body) {
  std::vector<double> t;
  for (Index i = 0; i < iters; ++i) {
    const auto a = std::chrono::steady_clock::now();
    body();
    t.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - a).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

// ---- predict ---------------------------------------------------------------------------------------

template <class T>
int predict(const Args& a) {
  require_output_file(a, "out");
  allocating("the model of " + a.str("weights"));
  StockMixer<T> model = load_checkpoint<T>(a.str("weights"));
  const Tensor<T> x = read_input<T>(a.str("input"), model.config());
  allocating("the prediction of " + a.str("input") + " and the model's activations");
  const Tensor<T>& pred = model.predict(x.map());
  // Finite weights and inputs can still overflow (weights near the float range): refuse what no caller
  // can rank by rather than write it.
  const Index bad = count_nonfinite(pred.data(), pred.size());
  if (bad > 0)
    a.fail(std::to_string(bad) + " of the " + std::to_string(pred.size()) +
           " predictions are not finite (NaN or Inf), although the weights (" + a.str("weights") + ") and the input (" +
           a.str("input") + ") are: nothing written to " + a.str("out"));
  io::write_npy<T>(a.str("out"), pred.map());
  return 0;
}

// ---- gradients -------------------------------------------------------------------------------------

template <class T>
int gradients(const Args& a) {
  require_output_file(a, "out");
  allocating("the model of " + a.str("weights"));
  StockMixer<T> model = load_checkpoint<T>(a.str("weights"));
  const Index n = model.config().stocks;
  const Tensor<T> x = read_input<T>(a.str("input"), model.config());
  const Tensor<T> gt = read_column<T>(a.str("gt"), n), base = read_column<T>(a.str("base"), n),
                  mask = read_column<T>(a.str("mask"), n);
  for (Index i = 0; i < n; ++i)
    if (base(i, 0) == T(0)) throw Error(a.str("base") + ": base price of stock " + std::to_string(i) + " is 0");
  allocating("the tape and the gradients of " + a.str("weights"));
  autograd::Tape<T> tape;
  RankLossWorkspace workspace;
  auto wrap = [&](const Tensor<T>& t) { return tape.wrap(TensorMap<T>(const_cast<T*>(t.data()), t.shape())); };
  auto* pred = model.forward(tape, wrap(x));
  const auto out =
      get_loss(tape, pred, wrap(gt), wrap(base), wrap(mask), static_cast<T>(a.number("alpha")), workspace);
  model.zero_grad();
  tape.backward(out.loss);
  const T reg = out.reg, rank = out.rank;
  std::vector<std::pair<std::string, TensorMap<const T>>> tensors = {
      {"prediction", TensorMap<const T>(pred->value)},
      {"rr", TensorMap<const T>(out.rr->value)},
      {"loss", TensorMap<const T>(out.loss->value)},
      {"reg_loss", TensorMap<const T>(&reg, Shape{1})},
      {"rank_loss", TensorMap<const T>(&rank, Shape{1})}};
  for (const auto& p : model.parameters()) tensors.emplace_back(p.name(), TensorMap<const T>(p.grad(), p.shape()));
  // A NaN or Inf anywhere (a loss that overflowed, a gradient that did) is an error, not a result: the
  // message names every such tensor (the first ten, then how many more) and nothing is written.
  std::string bad;
  Index bad_tensors = 0;
  for (const auto& [name, t] : tensors) {
    const Index k = count_nonfinite(t.data(), t.size());
    if (k == 0) continue;
    if (++bad_tensors <= 10)
      bad += "\n  " + name + ": " + std::to_string(k) + " of " + std::to_string(t.size()) + " values";
  }
  if (bad_tensors > 0)
    a.fail(std::to_string(bad_tensors) + " of the " + std::to_string(tensors.size()) +
           " tensors hold NaN or Inf (the loss or its gradients overflowed for these weights and inputs); nothing "
           "written to " + a.str("out") + ":" + bad +
           (bad_tensors > 10 ? "\n  and " + std::to_string(bad_tensors - 10) + " more" : ""));
  io::save_safetensors<T>(a.str("out"), tensors,
                          {{"content", "stockmixer gradients: outputs of get_loss and d(loss)/d(parameter)"},
                           {"alpha", a.str("alpha")}});
  return 0;
}

// ---- train -----------------------------------------------------------------------------------------

// The market of --data (a folder laid out as ../shared/data/NASDAQ) or, without it, the synthetic one.
template <class T>
train::RunData<T> run_data(const Args& a) {
  train::DataSource source;
  source.folder = a.str("data");
  source.steps = a.integer("steps");
  if (!source.folder.empty()) {
    source.market = a.choice("market", {"NASDAQ", "NYSE", "SP500"});
    source.tickers = a.str("tickers");
  }
  data::SyntheticOptions& so = source.synthetic;
  so.stocks = a.integer("stocks");
  so.days = a.integer("days");
  so.features = a.integer("features");
  so.seed = static_cast<std::uint64_t>(a.integer("data-seed"));
  so.signal = a.number("signal");
  so.missing = a.number("missing");
  if (source.folder.empty()) {
    if (source.steps >= so.days)
      a.fail("--steps " + std::to_string(source.steps) + " must be below --days " + std::to_string(so.days));
    // eod [N, D, C], mask, gt and price [N, D] in T, and the simulation's closes [N, D + burn-in] in double.
    const double cells = static_cast<double>(so.stocks) * static_cast<double>(so.days);
    require_memory(a, cells * (static_cast<double>(so.features + 3) * sizeof(T) + sizeof(double)),
                   "the synthetic market of --stocks " + std::to_string(so.stocks) + " and --days " +
                       std::to_string(so.days));
    allocating("the synthetic market (N = " + std::to_string(so.stocks) + ", D = " + std::to_string(so.days) +
               ", C = " + std::to_string(so.features) + ")");
  } else {
    allocating("the market read from " + source.folder);
  }
  return train::load_data<T>(source);
}

// TrainConfig::validate (which also checks that every window training can draw ends inside the market),
// before the run touches its folder, so a bad split fails with nothing written.
void check_split(const Args& a, const train::TrainConfig& c, Index days, Index steps) {
  try {
    c.validate(days, steps);
  } catch (const Error& e) {
    a.fail(std::string(e.what()) + " (the options: --lookback, --steps, --valid-index, --test-index, --strict-split)");
  }
}

template <class T>
int train(const Args& a) {
  if (a.flag("resume") && a.flag("overwrite")) a.fail("--resume and --overwrite exclude each other");
  const Index seeds = a.integer("seeds");
  const Index seed = a.integer("seed");
  if (seed > std::numeric_limits<Index>::max() - (seeds - 1))
    a.fail("--seed " + std::to_string(seed) + " with --seeds " + std::to_string(seeds) + " runs past the largest seed");
  const train::RunData<T> d = run_data<T>(a);
  train::TrainConfig c;
  c.epochs = static_cast<int>(a.integer("epochs"));
  c.lookback = a.integer("lookback");
  c.market = a.integer("market-width");
  c.alpha = a.number("alpha");
  c.dropout = a.number("dropout");
  c.adam.lr = a.number("lr");
  c.adam.weight_decay = a.number("weight-decay");
  c.adam.decoupled_weight_decay = a.flag("adamw");
  c.strict_split = a.flag("strict-split");
  c.seed = static_cast<std::uint64_t>(seed);
  c.valid_index = a.given("valid-index") ? a.integer("valid-index") : d.valid_index;
  c.test_index = a.given("test-index") ? a.integer("test-index") : d.test_index;
  check_split(a, c, d.market.days(), d.market.steps);
  require_memory(a, 8.0 * static_cast<double>(c.market) * static_cast<double>(d.market.stocks()) * sizeof(T),
                 "StockMixer's stock mixer for " + std::to_string(d.market.stocks()) + " stocks and --market-width " +
                     std::to_string(c.market) + " (weights, gradients, Adam's moments)");
  allocating("the model StockMixer(N = " + std::to_string(d.market.stocks()) + ", T = " + std::to_string(c.lookback) +
             ", C = " + std::to_string(d.market.features()) + ", M = " + std::to_string(c.market) +
             "), its optimiser and its training buffers");
  train::RunOptions o;
  o.out = a.str("out");
  o.overwrite = a.flag("overwrite");
  o.resume = a.flag("resume");
  // Ctrl-C: the run finishes its current step, writes the summary of its completed epochs and stops.
  std::signal(SIGINT, [](int) { interrupt_requested.store(true); });
  o.stop = &interrupt_requested;
  o.init_weights = a.str("init-weights");
  o.order_file = a.str("order");
  if (!o.order_file.empty()) {
    io::regular_file_size(o.order_file, "order file (--order)");  // a FIFO would block the read, a device never end
    o.order = train::read_order(o.order_file, c, d.market.steps);
  }
  o.precision = a.str("precision");
  o.progress = &std::cerr;
  const json summary = seeds == 1 ? train::run(d, c, o) : train::run_seeds(d, c, seeds, o);
  std::cout << summary.dump(1) << "\n";
  return 0;
}

// ---- dataset ---------------------------------------------------------------------------------------

const char* const kDatasetFiles[] = {"eod.npy", "mask.npy", "gt.npy", "price.npy"};

// The --out of `dataset` is published whole, so it may hold only a dataset: absent, or a folder (not a
// link to one) whose entries are the four arrays (and the .lock file a killed dataset may leave).
void check_dataset_folder(const Args& a, const fs::path& out) {
  std::error_code ec;
  const fs::file_type type = fs::symlink_status(out, ec).type();
  if (type == fs::file_type::not_found) {
    const fs::path parent = out.has_parent_path() ? out.parent_path() : fs::path(".");
    if (!fs::is_directory(parent, ec)) a.fail("--out " + out.string() + ": the folder " + parent.string() + " does not exist");
    return;
  }
  if (type != fs::file_type::directory)
    a.fail("--out " + out.string() + ": exists and is " + file_kind(type) + ", not a folder");
  bool holds_arrays = false;
  for (const fs::directory_entry& e : fs::directory_iterator(out)) {
    const std::string name = e.path().filename().string();
    const bool array = std::find_if(std::begin(kDatasetFiles), std::end(kDatasetFiles),
                                    [&](const char* f) { return name == f; }) != std::end(kDatasetFiles);
    if (!array && name != ".lock")
      a.fail("--out " + out.string() + ": holds " + name + ", which is not part of a dataset (the folder is "
             "replaced whole): choose another --out");
    holds_arrays = holds_arrays || array;
  }
  if (holds_arrays && !a.flag("overwrite"))
    a.fail("--out " + out.string() + " holds a dataset; pass --overwrite or choose another --out");
}

// Staging folders are named ".<out's name>.staging-XXXXXX" beside out. One whose lock no process holds
// was left by a killed dataset (or is the old dataset a killed one had swapped out): removed.
void remove_stale_staging(const fs::path& out) {
  const fs::path parent = out.has_parent_path() ? out.parent_path() : fs::path(".");
  const std::string prefix = "." + out.filename().string() + ".staging-";
  std::error_code ec;
  std::vector<fs::path> stale;
  for (const fs::directory_entry& e : fs::directory_iterator(parent, ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind(prefix, 0) != 0 || !e.is_directory(ec) || e.is_symlink(ec)) continue;
    try {
      const io::FolderLock unused(e.path());  // taken: nobody is writing there
      stale.push_back(e.path());
    } catch (const Error&) {
      // a live dataset's staging folder: leave it
    }
  }
  for (const fs::path& p : stale) fs::remove_all(p, ec);
}

// Writes the arrays into a new staging folder beside out, then publishes it whole: renamed to out when out
// does not exist, otherwise exchanged with out in one atomic step (Linux renameat2 RENAME_EXCHANGE), after
// which the old dataset, now at the staging name, is removed. A kill at any moment leaves out holding the
// old arrays or the new ones, never a mix.
template <class T>
void publish_dataset(const Args& a, const fs::path& out, const data::Market<T>& m) {
  remove_stale_staging(out);
  const fs::path parent = out.has_parent_path() ? out.parent_path() : fs::path(".");
  std::string staging = (parent / ("." + out.filename().string() + ".staging-XXXXXX")).string();
  if (::mkdtemp(staging.data()) == nullptr)
    a.fail("cannot create a staging folder in " + parent.string() + " (" + std::strerror(errno) + ")");
  std::optional<io::FolderLock> lock;  // held until the staging folder is published or removed
  try {
    lock.emplace(staging);
    // The new folder gets the old one's permissions, or the usual ones (mkdtemp makes it private).
    std::error_code ec;
    const fs::perms perms = fs::exists(out, ec) ? fs::status(out).permissions() : [] {
      const mode_t mask = ::umask(0);
      ::umask(mask);
      return static_cast<fs::perms>(0777 & ~mask);
    }();
    fs::permissions(staging, perms);
    io::write_npy<T>((fs::path(staging) / "eod.npy").string(), m.eod.map());
    io::write_npy<T>((fs::path(staging) / "mask.npy").string(), m.mask.map());
    io::write_npy<T>((fs::path(staging) / "gt.npy").string(), m.gt.map());
    io::write_npy<T>((fs::path(staging) / "price.npy").string(), m.price.map());
    if (fs::exists(out)) {
#if defined(RENAME_EXCHANGE)
      if (::renameat2(AT_FDCWD, staging.c_str(), AT_FDCWD, out.c_str(), RENAME_EXCHANGE) != 0)
        throw Error("stockmixer dataset: cannot replace " + out.string() + " by " + staging + " (" +
                    std::strerror(errno) + ")");
#else
      throw Error("stockmixer dataset: replacing " + out.string() + " whole needs Linux (renameat2): remove it first");
#endif
    } else if (::rename(staging.c_str(), out.c_str()) != 0) {
      throw Error("stockmixer dataset: cannot rename " + staging + " to " + out.string() + " (" + std::strerror(errno) + ")");
    }
    fs::remove(out / ".lock", ec);  // the staging folder's lock file, published with it
    const int dir = ::open(parent.c_str(), O_RDONLY | O_DIRECTORY);
    if (dir >= 0) {  // the rename itself reaches the disk
      ::fsync(dir);
      ::close(dir);
    }
    lock.reset();
    fs::remove_all(staging, ec);  // the old dataset, if there was one
  } catch (const Error& e) {
    lock.reset();
    std::error_code ec;
    fs::remove_all(staging, ec);  // the new arrays, never published
    throw Error("stockmixer dataset: " + out.string() + " not written (" +
                (fs::exists(out, ec) ? "the arrays in it are kept" : "nothing published") + "): " + e.what());
  } catch (...) {
    lock.reset();
    std::error_code ec;
    fs::remove_all(staging, ec);
    throw;
  }
}

template <class T>
int dataset(const Args& a) {
  const fs::path out = fs::path(a.str("out")).lexically_normal();
  if (out.filename().empty() || out.filename() == "." || out.filename() == "..")
    a.fail("--out " + a.str("out") + ": name the dataset folder itself (it is replaced whole)");
  check_dataset_folder(a, out);
  const train::RunData<T> d = run_data<T>(a);
  allocating("the arrays written to " + out.string());
  publish_dataset(a, out, d.market);
  std::cout << d.description.dump(1) << "\n";
  return 0;
}

// ---- bench -----------------------------------------------------------------------------------------

template <class T>
int bench(const Args& a) {
  StockMixerConfig c;
  c.stocks = a.integer("stocks");
  c.lookback = a.integer("lookback");
  c.features = a.integer("features");
  c.market = a.integer("market");
  const Index iters = a.integer("iters");
  set_num_threads(static_cast<int>(a.integer("threads")));
  const Index n = c.stocks;
  // One batch (x [N, T, C], gt, base, mask and a prediction [N, 1]) and the stock mixer's [M, N] weights
  // with their gradients and Adam's moments: a lower bound of what the benchmark holds.
  const double stocks = static_cast<double>(n);
  require_memory(a,
                 stocks * static_cast<double>(c.lookback * c.features + 5) * sizeof(T) +
                     8.0 * static_cast<double>(c.market) * stocks * sizeof(T),
                 "a benchmark of --stocks " + std::to_string(n) + " --lookback " + std::to_string(c.lookback) +
                     " --features " + std::to_string(c.features) + " --market " + std::to_string(c.market));
  allocating("the model StockMixer(N = " + std::to_string(n) + ", T = " + std::to_string(c.lookback) + ", C = " +
             std::to_string(c.features) + ", M = " + std::to_string(c.market) + "), its random batches and buffers");
  StockMixer<T> model(c, 1);
  // Several random batches, used in turn, as training meets a new day every step: the rank loss
  // branches on its inputs, and on one batch repeated the branch predictor learns those branches
  // (its sorts then look up to three times faster than they are). Eight batches, or fewer so that
  // their inputs take at most 16 MiB (a step's own memory is what the peak should show). Each batch
  // has a prediction too, for timing the loss alone.
  const double batch_bytes = static_cast<double>(n) * static_cast<double>(c.lookback * c.features + 4) * sizeof(T);
  const auto batches = static_cast<Index>(std::clamp(std::floor(16.0 * 1024 * 1024 / batch_bytes), 1.0, 8.0));
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> u(-1, 1);
  std::vector<data::Batch<T>> inputs(static_cast<std::size_t>(batches));
  std::vector<Tensor<T>> preds(inputs.size(), Tensor<T>({n, 1}));
  for (std::size_t k = 0; k < inputs.size(); ++k) {
    data::Batch<T>& b = inputs[k];
    b.x.resize({n, c.lookback, c.features});
    b.gt.resize({n, 1});
    b.base.resize({n, 1});
    b.mask.resize({n, 1});
    for (Index i = 0; i < b.x.size(); ++i) b.x.data()[i] = static_cast<T>(0.5 + 0.1 * u(rng));
    for (Index i = 0; i < n; ++i) {
      b.gt(i, 0) = static_cast<T>(0.02 * u(rng));
      b.base(i, 0) = static_cast<T>(1 + 0.1 * u(rng));
      b.mask(i, 0) = u(rng) > -0.8 ? T(1) : T(0);
      preds[k](i, 0) = static_cast<T>(b.base(i, 0) * (1 + 0.02 * u(rng)));
    }
  }
  Index next = 0;  // the batch the next call uses
  auto take = [&] { return static_cast<std::size_t>(next++ % batches); };
  Tensor<T> rr({n, 1}), dpred({n, 1});
  const T alpha = T(0.1);
  train::TrainStep<T> one_step(model, AdamOptions{}, alpha);
  auto step = [&] { one_step(inputs[take()]); };
  model.predict(inputs[0].x.map());  // warm up: sizes every buffer
  step();
  const double inference = median_ms(iters, [&] { model.predict(inputs[take()].x.map()); });
  const double train_step = median_ms(iters, step);
  RankLossWorkspace ws(n);
  const double loss = median_ms(iters, [&] {
    const std::size_t k = take();
    const data::Batch<T>& b = inputs[k];
    rank_loss_forward_sorted(rr.data(), preds[k].data(), b.base.data(), b.gt.data(), b.mask.data(), n, alpha, ws);
    rank_loss_backward_sorted(dpred.data(), T(1), rr.data(), b.base.data(), b.gt.data(), b.mask.data(), n, alpha, ws);
  });
  const json report = {{"stocks", n},
                       {"lookback", c.lookback},
                       {"features", c.features},
                       {"market", c.market},
                       {"threads", num_threads()},
                       {"iters", iters},
                       {"batches", batches},
                       {"precision", a.str("precision")},
                       {"parameters", model.num_parameters()},
                       {"inference_ms", inference},
                       {"train_step_ms", train_step},
                       {"loss_ms", loss}};
  std::cout << report.dump() << "\n";
  return 0;
}

// ---- evaluate --------------------------------------------------------------------------------------

int evaluate(const Args& a) {
  const Tensor<double> pred = io::read_npy<double>(a.str("pred")), gt = io::read_npy<double>(a.str("gt")),
                       mask = io::read_npy<double>(a.str("mask"));
  for (const auto& [t, name] : {std::pair<const Tensor<double>*, std::string>{&pred, "pred"}, {&gt, "gt"}, {&mask, "mask"}})
    if (t->rank() != 2) a.fail(a.str(name) + ": shape " + t->shape().str() + ", expected [N, days]");
  std::cout << metrics::evaluate(pred, gt, mask).to_json().dump(1) << "\n";
  return 0;
}

// ---- dispatch --------------------------------------------------------------------------------------

template <template <class> class F>
int with_precision(const Args& a) {
  return a.choice("precision", {"f32", "f64"}) == "f32" ? F<float>::run(a) : F<double>::run(a);
}
template <class T> struct Predict { static int run(const Args& a) { return predict<T>(a); } };
template <class T> struct Gradients { static int run(const Args& a) { return gradients<T>(a); } };
template <class T> struct Train { static int run(const Args& a) { return train<T>(a); } };
template <class T> struct Bench { static int run(const Args& a) { return bench<T>(a); } };
template <class T> struct Dataset { static int run(const Args& a) { return dataset<T>(a); } };

const char* kUsage =
    "usage: stockmixer <command> [options]   (stockmixer <command> --help for its options)\n\n"
    "commands:\n"
    "  predict     score a universe: weights + X [N, T, C] -> predictions [N, 1]\n"
    "  gradients   the loss, its parts and d(loss)/d(every parameter), as a safetensors file\n"
    "  train       train StockMixer (real end-of-day data or the built-in synthetic market)\n"
    "  bench       time inference, a training step and the loss on random data\n"
    "  evaluate    the original evaluator (and named extras) on predictions, returns and a mask\n"
    "  dataset     write the arrays training sees (eod, mask, gt, price) as .npy\n";

const Option kPrecision = text("precision", "f32", "f32 or f64: the arithmetic (and, for outputs, the dtype)");

// Bounds shared by the commands. Sizes are bounded so that their products stay far from overflow;
// whether they fit in memory is checked from the actual sizes (require_memory).
constexpr long long kMaxStocks = 100'000'000, kMaxDays = 10'000'000, kMaxFeatures = 4096, kMaxLookback = 4096,
                    kMaxWidth = 1'000'000, kMaxSeed = std::numeric_limits<long long>::max();
Option threads_option() { return integer("threads", "1", "threads (with OpenMP)", 1, max_threads()); }

int run(int argc, char** argv) {
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
    std::cout << kUsage;
    return argc < 2 ? 2 : 0;
  }
  const std::string cmd = argv[1];
  if (cmd == "predict") {
    Args a(cmd, "Scores a universe with saved weights (N, T, C, M are read from the weights).",
           {required("weights", "StockMixer weights (.safetensors, PyTorch state_dict names)"),
            required("input", "features X [N, T, C], float32 or float64 .npy"),
            required("out", "predictions [N, 1] (.npy, dtype of --precision)"), kPrecision},
           argc, argv);
    a.validate();
    return with_precision<Predict>(a);
  }
  if (cmd == "gradients") {
    Args a(cmd,
           "Runs the model and get_loss on one batch and writes prediction, rr, loss, reg_loss, rank_loss and the\n"
           "gradient of every parameter under its PyTorch name: compare them with PyTorch's.",
           {required("weights", "StockMixer weights (.safetensors)"), required("input", "features X [N, T, C] (.npy)"),
            required("gt", "realised returns [N, 1] (.npy)"), required("base", "base prices [N, 1] (.npy)"),
            required("mask", "mask [N, 1] (.npy)"), real("alpha", "0.1", "weight of the rank loss", 0, 1e6),
            required("out", "output .safetensors"), kPrecision},
           argc, argv);
    a.validate();
    return with_precision<Gradients>(a);
  }
  if (cmd == "train") {
    Args a(cmd,
           "Trains StockMixer with the original protocol (shuffled offsets, one date per step, validation and test\n"
           "every epoch, the epoch with the best validation loss kept) on real end-of-day data (--data) or on the\n"
           "built-in synthetic market (a planted, learnable cross-sectional signal; docs/synthetic_market.md).\n"
           "Writes metrics.jsonl, best.safetensors and summary.json to --out. Options can also come from\n"
           "--config FILE (a JSON object, keys = option names).",
           {text("out", "stockmixer-run", "output folder"),
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
            integer("seeds", "1", "K runs with seeds seed .. seed+K-1, in OUT/seed_<s>/; OUT/summary.json: mean and std",
                    1, 10'000),
            flag("strict-split", "drop training offsets whose target falls in validation"),
            integer("valid-index", "", "first validation day (real data: 756; synthetic: 61% of --days)", 1, kMaxDays),
            integer("test-index", "", "first test day (real data: 1008; synthetic: 81% of --days)", 1, kMaxDays),
            text("data", "", "a folder laid out as ../shared/data/NASDAQ (default: the synthetic market)"),
            text("market", "NASDAQ", "with --data: NASDAQ, NYSE or SP500 (SP500 reads DIR/SP500.npy)"),
            text("tickers", "", "with --data: a ticker list replacing the market's"),
            integer("steps", "1", "return horizon in days", 1, kMaxDays),
            integer("stocks", "200", "synthetic market: N stocks", 1, kMaxStocks),
            integer("days", "600", "synthetic market: D days", 2, kMaxDays),
            integer("features", "5", "synthetic market: C features (C-1 moving averages and the close)", 2, kMaxFeatures),
            real("signal", "0.15", "synthetic market: strength of the planted signal", 0, 100),
            real("missing", "0.02", "synthetic market: share of missing (stock, day) cells", 0, 0.5),
            integer("data-seed", "1", "synthetic market: generator seed", 0, kMaxSeed),
            text("init-weights", "", "start from these weights (.safetensors, PyTorch names) instead of the seeded init"),
            text("order", "", "replay: a file with one line per epoch of that epoch's window offsets (as many as steps)"),
            threads_option(), kPrecision},
           argc, argv);
    if (!a.str("config").empty()) a.apply_config(a.str("config"));
    a.validate();
    set_num_threads(static_cast<int>(a.integer("threads")));
    return with_precision<Train>(a);
  }
  if (cmd == "bench") {
    Args a(cmd,
           "Times, on random data of the given shape, the medians of inference (predict), a training step\n"
           "(forward, loss, backward, Adam) and the loss (forward + backward); prints one JSON object.",
           {integer("stocks", "1026", "N", 1, kMaxStocks), integer("lookback", "16", "T (even)", 2, kMaxLookback),
            integer("features", "5", "C", 1, kMaxFeatures), integer("market", "20", "M", 1, kMaxWidth),
            threads_option(), integer("iters", "50", "timed iterations per figure", 1, 1'000'000), kPrecision},
           argc, argv);
    a.validate();
    return with_precision<Bench>(a);
  }
  if (cmd == "dataset") {
    Args a(cmd,
           "Writes exactly what training sees: eod.npy [N, D, C], mask.npy, gt.npy and price.npy [N, D], from real\n"
           "end-of-day data (--data) or the synthetic market.",
           {text("data", "", "a folder laid out as ../shared/data/NASDAQ (default: the synthetic market)"),
            text("market", "NASDAQ", "NASDAQ, NYSE or SP500"),
            text("tickers", "", "a ticker list replacing the market's"),
            integer("steps", "1", "return horizon in days", 1, kMaxDays),
            required("out", "output folder (replaced whole: it holds the four arrays and nothing else)"),
            flag("overwrite", "replace the arrays already in --out"),
            integer("stocks", "200", "synthetic market: N stocks", 1, kMaxStocks),
            integer("days", "600", "synthetic market: D days", 2, kMaxDays),
            integer("features", "5", "synthetic market: C features", 2, kMaxFeatures),
            real("signal", "0.15", "synthetic market: strength of the planted signal", 0, 100),
            real("missing", "0.02", "synthetic market: share of missing (stock, day) cells", 0, 0.5),
            integer("data-seed", "1", "synthetic market: generator seed", 0, kMaxSeed),
            text("precision", "f32", "f32 or f64: the dtype of the arrays")},
           argc, argv);
    a.validate();
    return with_precision<Dataset>(a);
  }
  if (cmd == "evaluate") {
    Args a(cmd,
           "Scores predictions with the original evaluate (mse, IC, RIC, prec_10, sharpe5, mrr_top, the cumulative\n"
           "top-1/5/10 backtests) and named extras (rank_ic: mean daily Spearman over valid stocks, its IR, the\n"
           "Pearson IC over valid stocks and its IR); prints JSON. docs/metrics.md defines each.",
           {required("pred", "predicted return ratios [N, days] (.npy)"),
            required("gt", "realised return ratios [N, days] (.npy)"),
            required("mask", "1 where the stock counts that day, else 0 [N, days] (.npy)")},
           argc, argv);
    a.validate();
    return evaluate(a);
  }
  std::cerr << "stockmixer: unknown command '" << cmd << "'\n\n" << kUsage;
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
#if defined(SIGXFSZ)
  // Past the file-size limit (ulimit -f) a write then fails with EFBIG, which io::write_file reports
  // naming the file and leaving the old one, instead of the signal killing the process mid-write.
  std::signal(SIGXFSZ, SIG_IGN);
#endif
  command_name = argc > 1 ? argv[1] : "";
  int status = 0;
  try {
    status = run(argc, argv);
  } catch (const train::Interrupted& e) {
    std::cerr << e.what() << "\n";
    return 130;  // as a shell reports a run stopped by SIGINT
  } catch (const std::bad_alloc&) {
    std::cerr << "stockmixer " << command_name << ": out of memory while allocating " << allocating_now << "\n";
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
