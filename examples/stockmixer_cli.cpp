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
#include <csignal>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using namespace stockmixer;
using nlohmann::json;

namespace {

// Set by SIGINT (a lock-free atomic: safe to store from a signal handler).
std::atomic<bool> interrupt_requested{false};

// ---- arguments -------------------------------------------------------------------------------------

struct Option {
  std::string name;  // without the leading --
  std::string value; // the default; "" for required options, "false" for flags
  std::string help;
  bool flag = false;
  bool required = false;
};

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
      if (o.flag) {
        values_[o.name] = "true";
      } else {
        if (i + 1 >= argc) fail("--" + o.name + " needs a value");
        values_[o.name] = argv[++i];
      }
      given_.push_back(o.name);
    }
  }

  // Keys of a JSON config file mirror the options; options given on the command line win.
  void apply_config(const std::string& path) {
    std::ifstream in(path);
    if (!in) fail("cannot read the config file " + path);
    json j;
    try {
      j = json::parse(in);
    } catch (const json::exception& e) {
      fail(path + ": not valid JSON (" + e.what() + ")");
    }
    if (!j.is_object()) fail(path + ": expected a JSON object whose keys are option names");
    for (const auto& [key, value] : j.items()) {
      const Option& o = find(key, path);
      if (std::find(given_.begin(), given_.end(), key) != given_.end()) continue;
      if (o.flag) {
        if (!value.is_boolean()) fail(path + ": '" + key + "' must be true or false");
        values_[key] = value.get<bool>() ? "true" : "false";
      } else {
        values_[key] = value.is_string() ? value.get<std::string>() : value.dump();
      }
      given_.push_back(key);
    }
  }

  void require_all() const {
    for (const auto& o : options_)
      if (o.required && values_.at(o.name).empty()) fail("--" + o.name + " is required (see --help)");
  }

  const std::string& str(const std::string& name) const { return values_.at(name); }
  bool flag(const std::string& name) const { return values_.at(name) == "true"; }
  bool given(const std::string& name) const {
    return std::find(given_.begin(), given_.end(), name) != given_.end();
  }
  double number(const std::string& name) const {
    const std::string& v = values_.at(name);
    try {
      std::size_t used = 0;
      const double d = std::stod(v, &used);
      if (used != v.size() || !std::isfinite(d)) throw std::invalid_argument(v);
      return d;
    } catch (const std::exception&) {
      fail("--" + name + " expects a number, got '" + v + "'");
    }
  }
  Index integer(const std::string& name) const {
    const double d = number(name);
    if (d != std::floor(d) || std::abs(d) > 1e15) fail("--" + name + " expects a whole number, got '" + str(name) + "'");
    return static_cast<Index>(d);
  }
  std::string choice(const std::string& name, const std::vector<std::string>& allowed) const {
    const std::string& v = values_.at(name);
    if (std::find(allowed.begin(), allowed.end(), v) == allowed.end()) {
      std::string list;
      for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
      fail("--" + name + " must be one of " + list + ", got '" + v + "'");
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
      std::string left = "  --" + o.name + (o.flag ? "" : " " + std::string(o.required ? "VALUE" : "VALUE"));
      s << left << std::string(left.size() < 26 ? 26 - left.size() : 1, ' ') << o.help;
      if (o.required) s << " (required)";
      else if (!o.flag && !o.value.empty()) s << " (default " << o.value << ")";
      s << "\n";
    }
    return s.str();
  }

  std::string command_;
  std::vector<Option> options_;
  std::map<std::string, std::string> values_;
  std::vector<std::string> given_;
};

// ---- helpers ---------------------------------------------------------------------------------------

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
  StockMixer<T> model = load_checkpoint<T>(a.str("weights"));
  const Tensor<T> x = read_input<T>(a.str("input"), model.config());
  io::write_npy<T>(a.str("out"), model.predict(x.map()).map());
  return 0;
}

// ---- gradients -------------------------------------------------------------------------------------

template <class T>
int gradients(const Args& a) {
  StockMixer<T> model = load_checkpoint<T>(a.str("weights"));
  const Index n = model.config().stocks;
  const Tensor<T> x = read_input<T>(a.str("input"), model.config());
  const Tensor<T> gt = read_column<T>(a.str("gt"), n), base = read_column<T>(a.str("base"), n),
                  mask = read_column<T>(a.str("mask"), n);
  for (Index i = 0; i < n; ++i)
    if (base(i, 0) == T(0)) throw Error(a.str("base") + ": base price of stock " + std::to_string(i) + " is 0");
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
  return train::load_data<T>(source);
}

template <class T>
int train(const Args& a) {
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
  c.seed = static_cast<std::uint64_t>(a.integer("seed"));
  c.valid_index = a.given("valid-index") ? a.integer("valid-index") : d.valid_index;
  c.test_index = a.given("test-index") ? a.integer("test-index") : d.test_index;
  train::RunOptions o;
  o.out = a.str("out");
  o.overwrite = a.flag("overwrite");
  o.resume = a.flag("resume");
  if (o.resume && o.overwrite) a.fail("--resume and --overwrite exclude each other");
  // Ctrl-C: the run finishes its current step, writes the summary of its completed epochs and stops.
  std::signal(SIGINT, [](int) { interrupt_requested.store(true); });
  o.stop = &interrupt_requested;
  o.init_weights = a.str("init-weights");
  o.order_file = a.str("order");
  if (!o.order_file.empty()) o.order = train::read_order(o.order_file, c, d.market.steps);
  o.precision = a.str("precision");
  o.progress = &std::cerr;
  const Index seeds = a.integer("seeds");
  const json summary = seeds == 1 ? train::run(d, c, o) : train::run_seeds(d, c, seeds, o);
  std::cout << summary.dump(1) << "\n";
  return 0;
}

// ---- dataset ---------------------------------------------------------------------------------------

template <class T>
int dataset(const Args& a) {
  const train::RunData<T> d = run_data<T>(a);
  const fs::path out = a.str("out");
  const char* names[] = {"eod.npy", "mask.npy", "gt.npy", "price.npy"};
  for (const char* n : names)
    if (fs::exists(out / n) && !a.flag("overwrite"))
      a.fail((out / n).string() + " exists; pass --overwrite or choose another --out");
  fs::create_directories(out);
  io::write_npy<T>((out / "eod.npy").string(), d.market.eod.map());
  io::write_npy<T>((out / "mask.npy").string(), d.market.mask.map());
  io::write_npy<T>((out / "gt.npy").string(), d.market.gt.map());
  io::write_npy<T>((out / "price.npy").string(), d.market.price.map());
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
  if (iters < 1) a.fail("--iters must be at least 1");
  set_num_threads(static_cast<int>(a.integer("threads")));
  StockMixer<T> model(c, 1);
  const Index n = c.stocks;
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

const Option kPrecision{"precision", "f32", "f32 or f64: the arithmetic (and, for outputs, the dtype)"};

int run(int argc, char** argv) {
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
    std::cout << kUsage;
    return argc < 2 ? 2 : 0;
  }
  const std::string cmd = argv[1];
  if (cmd == "predict") {
    Args a(cmd, "Scores a universe with saved weights (N, T, C, M are read from the weights).",
           {{"weights", "", "StockMixer weights (.safetensors, PyTorch state_dict names)", false, true},
            {"input", "", "features X [N, T, C], float32 or float64 .npy", false, true},
            {"out", "", "predictions [N, 1] (.npy, dtype of --precision)", false, true},
            kPrecision},
           argc, argv);
    a.require_all();
    return with_precision<Predict>(a);
  }
  if (cmd == "gradients") {
    Args a(cmd,
           "Runs the model and get_loss on one batch and writes prediction, rr, loss, reg_loss, rank_loss and the\n"
           "gradient of every parameter under its PyTorch name: compare them with PyTorch's.",
           {{"weights", "", "StockMixer weights (.safetensors)", false, true},
            {"input", "", "features X [N, T, C] (.npy)", false, true},
            {"gt", "", "realised returns [N, 1] (.npy)", false, true},
            {"base", "", "base prices [N, 1] (.npy)", false, true},
            {"mask", "", "mask [N, 1] (.npy)", false, true},
            {"alpha", "0.1", "weight of the rank loss"},
            {"out", "", "output .safetensors", false, true},
            kPrecision},
           argc, argv);
    a.require_all();
    return with_precision<Gradients>(a);
  }
  if (cmd == "train") {
    Args a(cmd,
           "Trains StockMixer with the original protocol (shuffled offsets, one date per step, validation and test\n"
           "every epoch, the epoch with the best validation loss kept) on real end-of-day data (--data) or on the\n"
           "built-in synthetic market (a planted, learnable cross-sectional signal; docs/synthetic_market.md).\n"
           "Writes metrics.jsonl, best.safetensors and summary.json to --out. Options can also come from\n"
           "--config FILE (a JSON object, keys = option names).",
           {{"out", "stockmixer-run", "output folder"},
            {"config", "", "JSON file of options (command-line options win)"},
            {"overwrite", "false", "replace a run already in --out", true},
            {"resume", "false", "continue the run in --out from its last completed epoch (--epochs is the total)", true},
            {"epochs", "100", "training epochs"},
            {"lr", "0.001", "Adam learning rate"},
            {"alpha", "0.1", "weight of the rank loss"},
            {"weight-decay", "0", "weight decay (Adam's L2; with --adamw, decoupled)"},
            {"adamw", "false", "decoupled weight decay (torch.optim.AdamW)", true},
            {"dropout", "0", "dropout in the channel mixers"},
            {"lookback", "16", "T: days per window"},
            {"market-width", "20", "M: hidden width of the stock mixer"},
            {"seed", "0", "initialisation and shuffling seed (the first, with --seeds)"},
            {"seeds", "1", "K runs with seeds seed .. seed+K-1, in OUT/seed_<s>/; OUT/summary.json: mean and std"},
            {"strict-split", "false", "drop training offsets whose target falls in validation", true},
            {"valid-index", "", "first validation day (real data: 756; synthetic: 61% of --days)"},
            {"test-index", "", "first test day (real data: 1008; synthetic: 81% of --days)"},
            {"data", "", "a folder laid out as ../shared/data/NASDAQ (default: the synthetic market)"},
            {"market", "NASDAQ", "with --data: NASDAQ, NYSE or SP500 (SP500 reads DIR/SP500.npy)"},
            {"tickers", "", "with --data: a ticker list replacing the market's"},
            {"steps", "1", "return horizon in days"},
            {"stocks", "200", "synthetic market: N stocks"},
            {"days", "600", "synthetic market: D days"},
            {"features", "5", "synthetic market: C features (C-1 moving averages and the close)"},
            {"signal", "0.15", "synthetic market: strength of the planted signal"},
            {"missing", "0.02", "synthetic market: share of missing (stock, day) cells"},
            {"data-seed", "1", "synthetic market: generator seed"},
            {"init-weights", "", "start from these weights (.safetensors, PyTorch names) instead of the seeded init"},
            {"order", "", "replay: a file with one line per epoch of that epoch's window offsets (as many as steps)"},
            {"threads", "1", "threads (with OpenMP)"},
            kPrecision},
           argc, argv);
    if (!a.str("config").empty()) a.apply_config(a.str("config"));
    set_num_threads(static_cast<int>(a.integer("threads")));
    return with_precision<Train>(a);
  }
  if (cmd == "bench") {
    Args a(cmd,
           "Times, on random data of the given shape, the medians of inference (predict), a training step\n"
           "(forward, loss, backward, Adam) and the loss (forward + backward); prints one JSON object.",
           {{"stocks", "1026", "N"},
            {"lookback", "16", "T"},
            {"features", "5", "C"},
            {"market", "20", "M"},
            {"threads", "1", "threads (with OpenMP)"},
            {"iters", "50", "timed iterations per figure"},
            kPrecision},
           argc, argv);
    return with_precision<Bench>(a);
  }
  if (cmd == "dataset") {
    Args a(cmd,
           "Writes exactly what training sees: eod.npy [N, D, C], mask.npy, gt.npy and price.npy [N, D], from real\n"
           "end-of-day data (--data) or the synthetic market.",
           {{"data", "", "a folder laid out as ../shared/data/NASDAQ (default: the synthetic market)"},
            {"market", "NASDAQ", "NASDAQ, NYSE or SP500"},
            {"tickers", "", "a ticker list replacing the market's"},
            {"steps", "1", "return horizon in days"},
            {"out", "", "output folder", false, true},
            {"overwrite", "false", "replace arrays already in --out", true},
            {"stocks", "200", "synthetic market: N stocks"},
            {"days", "600", "synthetic market: D days"},
            {"features", "5", "synthetic market: C features"},
            {"signal", "0.15", "synthetic market: strength of the planted signal"},
            {"missing", "0.02", "synthetic market: share of missing (stock, day) cells"},
            {"data-seed", "1", "synthetic market: generator seed"},
            {"precision", "f32", "f32 or f64: the dtype of the arrays"}},
           argc, argv);
    a.require_all();
    return with_precision<Dataset>(a);
  }
  if (cmd == "evaluate") {
    Args a(cmd,
           "Scores predictions with the original evaluate (mse, IC, RIC, prec_10, sharpe5, mrr_top, the cumulative\n"
           "top-1/5/10 backtests) and named extras (rank_ic: mean daily Spearman over valid stocks, its IR, the\n"
           "Pearson IC over valid stocks and its IR); prints JSON. docs/metrics.md defines each.",
           {{"pred", "", "predicted return ratios [N, days] (.npy)", false, true},
            {"gt", "", "realised return ratios [N, days] (.npy)", false, true},
            {"mask", "", "1 where the stock counts that day, else 0 [N, days] (.npy)", false, true}},
           argc, argv);
    a.require_all();
    return evaluate(a);
  }
  std::cerr << "stockmixer: unknown command '" << cmd << "'\n\n" << kUsage;
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const train::Interrupted& e) {
    std::cerr << e.what() << "\n";
    return 130;  // as a shell reports a run stopped by SIGINT
  } catch (const std::exception& e) {
    std::cerr << e.what() << "\n";
    return 1;
  }
}
