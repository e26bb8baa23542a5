// stockmixer/model.hpp — StockMixer(N, T, C, M) (SPEC §3): its modules with PyTorch's names, one
// parameter store, the fused path that trains and serves, the op-by-op reference, and checkpoints.
//
//   x [N, T, C] --conv(k=2)--> v [N, S, C]
//   h = MultTime2dMixer(x, v)                              [N, F, C],  F = 2T + S
//   y = channel_fc(h), squeezed                            [N, F]
//   z = NoGraphMixer(N, M)(y)                              [N, F]
//   out = time_fc(y) + time_fc_(z)                         [N, 1]
//
// forward(tape, x) runs two fused blocks, each recorded on the tape as one op: model/per_stock.hpp
// (conv, both mixers and channel_fc, x -> y as [F, N]) and model/stock_head.hpp (the stock mixer and
// both heads, y -> out). They read the modules' parameters, which live in one ParameterStore in
// state_dict order (45,077 values at N = 1026, T = 16, C = 5, M = 20), and take their scratch from
// workspaces the model owns. With `fused = false`, or with dropout (which only the reference has),
// the same math runs op by op through nn/ and autograd/: the reference the fused blocks are tested
// against. S = T / 2; the original hard-codes 8, which is T / 2 for its T = 16 and fails for any other
// T. Inference (`predict`) runs without a tape and, after its first call for a given N, allocates
// nothing.
#pragma once

#include "stockmixer/autograd/ops.hpp"
#include "stockmixer/io/checkpoint.hpp"
#include "stockmixer/model/per_stock.hpp"
#include "stockmixer/model/stock_head.hpp"
#include "stockmixer/nn/mixers.hpp"
#include "stockmixer/parameters.hpp"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace stockmixer {

// ---- interface -------------------------------------------------------------------------------------

struct StockMixerConfig {
  Index stocks = 1026;   // N
  Index lookback = 16;   // T (even)
  Index features = 5;    // C
  Index market = 20;     // M
  double dropout = 0.0;  // in the channel MixerBlocks (the original uses 0)

  Index scale() const { return lookback / 2; }            // S
  Index fused() const { return 2 * lookback + scale(); }  // F
  void validate() const;
};

template <class T>
class StockMixer {
 public:
  using value_type = T;
  using Tape = autograd::Tape<T>;
  using Node = autograd::Node<T>;

  // PyTorch's default initialisation, drawn from `seed`.
  explicit StockMixer(const StockMixerConfig& config, std::uint64_t seed = 0);
  StockMixer(StockMixer&&) = default;  // the store's allocation moves with it: every view stays valid
  StockMixer& operator=(StockMixer&&) = default;

  const StockMixerConfig& config() const { return config_; }

  // On the tape: x [N, T, C] -> prediction [N, 1].
  Node* forward(Tape& tape, Node* x);

  // Inference: x [N, T, C] -> prediction [N, 1], no tape. The result is valid until the next call.
  // After the first call for a shape, it allocates nothing. (An xtensor array: as_tensor_map in
  // stockmixer/xtensor.hpp.)
  const Tensor<T>& predict(TensorMap<const T> x);

  // Every parameter: values, gradients and the state_dict name table.
  ParameterStore<T>& parameters() { return store_; }
  const ParameterStore<T>& parameters() const { return store_; }
  Index num_parameters() const {  // values under a state_dict name (PyTorch's count)
    Index n = 0;
    for (const auto& p : store_) n += p.size();
    return n;
  }
  void zero_grad() { store_.zero_grad(); }

  // The modules, in PyTorch's registration order.
  nn::MultTime2dMixer<T> mixer;
  nn::Linear<T> channel_fc, time_fc;
  nn::Conv1d<T> conv;
  nn::NoGraphMixer<T> stock_mixer;
  nn::Linear<T> time_fc_;

  // Runs the two fused blocks; false runs the op-by-op reference (so does dropout > 0).
  bool fused = true;

 private:
  struct PerStockRecord;
  struct StockHeadRecord;
  Node* per_stock(Tape& tape, Node* x);   // x [N, T, C] -> y [F, N]
  Node* stock_head(Tape& tape, Node* y);  // y [F, N] -> out [N, 1]
  Node* reference(Tape& tape, Node* x);   // op by op

  StockMixerConfig config_;
  ParameterStore<T> store_;
  PerStockWorkspace<T> per_stock_workspace_;
  StockHeadWorkspace stock_head_workspace_;
  Tape inference_{autograd::Mode::kInference};
  Tensor<T> output_;
};

// Checkpoints: the model's state_dict (io/checkpoint.hpp) with its dims in the metadata
// ("stockmixer.config", JSON) beside the caller's own entries.
template <class T>
void save_checkpoint(const std::string& path, const StockMixer<T>& model,
                     const std::map<std::string, std::string>& metadata = {});
// The model dims a checkpoint's weights imply (N, T, C, M from their shapes; dropout from the metadata).
StockMixerConfig checkpoint_config(const io::SafetensorsReader& file);
// Every state_dict entry of a StockMixer of dims c, in state_dict order, as f(name, shape): the
// original PyTorch model's names and shapes, computed from the dims alone (tests/test_io.cpp checks
// them against the model's own name table).
template <class F>
void for_each_checkpoint_tensor(const StockMixerConfig& c, F&& f);
// A model of the checkpoint's dims with its weights. Before the model is built, the file's tensor set
// and shapes are checked against those the dims imply (every one present with its shape, no other):
// the memory rule is that a model is built only from a file that holds every one of its parameters,
// so its values and gradients take at most 2 * sizeof(T) / 4 times the file's size (4x for float32
// data read as double), never more than the file itself justifies: a small file that declares a
// [100000, 1] LayerNorm is refused before anything of that size is allocated. Then every value is
// checked finite (io::load_parameters) before any is copied.
template <class T>
StockMixer<T> load_checkpoint(const std::string& path);

// ---- implementation --------------------------------------------------------------------------------

inline void StockMixerConfig::validate() const {
  auto fail = [](const std::string& what) { throw Error("stockmixer::StockMixerConfig: " + what); };
  if (stocks < 1) fail("stocks (N) must be at least 1, got " + std::to_string(stocks));
  if (lookback < 2 || lookback % 2) fail("lookback (T) must be even and at least 2, got " + std::to_string(lookback));
  if (features < 1) fail("features (C) must be at least 1, got " + std::to_string(features));
  if (market < 1) fail("market (M) must be at least 1, got " + std::to_string(market));
  if (!(dropout >= 0.0 && dropout < 1.0)) fail("dropout must lie in [0, 1), got " + std::to_string(dropout));
}

namespace detail {
inline const StockMixerConfig& validated(const StockMixerConfig& c) {
  c.validate();
  return c;
}
}  // namespace detail

template <class T>
StockMixer<T>::StockMixer(const StockMixerConfig& config, std::uint64_t seed)
    : mixer(detail::validated(config).lookback, config.features, config.scale(), config.dropout),
      channel_fc(config.features, 1),
      time_fc(config.fused(), 1),
      conv(config.features, config.features, 2),
      stock_mixer(config.stocks, config.market),
      time_fc_(config.fused(), 1),
      config_(config) {
  mixer.declare(store_, "mixer.");
  channel_fc.declare(store_, "channel_fc.");
  time_fc.declare(store_, "time_fc.");
  conv.declare(store_, "conv.");
  stock_mixer.declare(store_, "stock_mixer.");
  time_fc_.declare(store_, "time_fc_.");
  store_.allocate();
  nn::Init init(seed);  // PyTorch's construction order
  mixer.init(init);
  channel_fc.init(init);
  time_fc.init(init);
  conv.init(init);
  stock_mixer.init(init);
  time_fc_.init(init);
}

// The fused blocks as ops on the tape: what each backward reads, typed.
template <class T>
struct StockMixer<T>::PerStockRecord {
  StockMixer* model;
  Node *x, *y;
  T* stash;  // the forward's activations, or null: the backward recomputes them
  void backward() const {
    const StockMixerConfig& c = model->config_;
    per_stock_backward(autograd::detail::grad_or_null(x), y->grad.data(), x->data(), model->conv, model->mixer,
                       model->channel_fc, c.stocks, c.lookback, c.features, stash, model->per_stock_workspace_);
  }
};

template <class T>
struct StockMixer<T>::StockHeadRecord {
  StockMixer* model;
  Node *y, *out;
  const double* stash;
  void backward() const {
    const StockMixerConfig& c = model->config_;
    stock_head_backward(autograd::detail::grad_or_null(y), out->grad.data(), model->stock_mixer, model->time_fc,
                        model->time_fc_, c.stocks, c.fused(), c.market, stash, model->stock_head_workspace_);
  }
};

template <class T>
typename StockMixer<T>::Node* StockMixer<T>::forward(Tape& tape, Node* x) {
  const Index n = config_.stocks, t = config_.lookback, c = config_.features;
  if (x->shape() != Shape{n, t, c})
    throw Error("stockmixer::StockMixer: input has shape " + x->shape().str() + ", the model expects [N, T, C] = " +
                Shape{n, t, c}.str());
  if (!fused || config_.dropout > 0.0) return reference(tape, x);
  return stock_head(tape, per_stock(tape, x));
}

template <class T>
typename StockMixer<T>::Node* StockMixer<T>::per_stock(Tape& tape, Node* x) {
  const Index n = config_.stocks, t = config_.lookback, c = config_.features;
  Node* y = tape.node({config_.fused(), n}, true);
  // Training keeps the forward's activations for the backward (2.4 KB a stock at T = 16, C = 5) while
  // they fit in 8 MB, about the caches (N up to about 3 300); beyond, the backward recomputes them in
  // cache rather than read them back from memory (docs/math/per_stock.md).
  const Index stash_size = per_stock_stash_size<T>(n, t, c);
  T* stash = y->requires_grad() && stash_size * static_cast<Index>(sizeof(T)) <= (Index(8) << 20)
                 ? tape.template save<T>(stash_size)
                 : nullptr;
  per_stock_forward(y->data(), x->data(), conv, mixer, channel_fc, n, t, c, stash, per_stock_workspace_);
  if (y->requires_grad()) tape.record(PerStockRecord{this, x, y, stash});
  return y;
}

template <class T>
typename StockMixer<T>::Node* StockMixer<T>::stock_head(Tape& tape, Node* y) {
  const Index n = config_.stocks, f = config_.fused(), m = config_.market;
  Node* out = tape.node({n, 1}, true);
  double* stash = tape.template save<double>(stock_head_stash_size(n, f, m));  // its activations, in double
  stock_head_forward(out->data(), y->data(), stock_mixer, time_fc, time_fc_, n, f, m, stash, stock_head_workspace_);
  if (out->requires_grad()) tape.record(StockHeadRecord{this, y, out, stash});
  return out;
}

template <class T>
typename StockMixer<T>::Node* StockMixer<T>::reference(Tape& tape, Node* x) {
  const Index n = config_.stocks;
  Node* v = conv.forward(tape, x);                                                    // [N, S, C]
  Node* h = mixer.forward(tape, x, v);                                                // [N, F, C]
  Node* y = autograd::view(tape, channel_fc.forward(tape, h), {n, config_.fused()});  // [N, F]
  Node* z = stock_mixer.forward(tape, y);                                             // [N, F]
  return autograd::add(tape, time_fc.forward(tape, y), time_fc_.forward(tape, z));    // [N, 1]
}

template <class T>
const Tensor<T>& StockMixer<T>::predict(TensorMap<const T> x) {
  inference_.reset();
  Node* in = inference_.wrap(TensorMap<T>(const_cast<T*>(x.data()), x.shape()));  // read only
  Node* out = forward(inference_, in);
  output_.resize(out->shape());
  std::copy(out->data(), out->data() + out->size(), output_.data());
  return output_;
}

template <class T>
void save_checkpoint(const std::string& path, const StockMixer<T>& model,
                     const std::map<std::string, std::string>& metadata) {
  const StockMixerConfig& c = model.config();
  std::map<std::string, std::string> meta = metadata;
  meta["stockmixer.config"] = nlohmann::json{{"stocks", c.stocks},
                                             {"lookback", c.lookback},
                                             {"features", c.features},
                                             {"market", c.market},
                                             {"dropout", c.dropout}}
                                  .dump();
  meta["format"] = "pt";  // as PyTorch's safetensors writer labels its files
  io::save_parameters(path, model.parameters(), meta);
}

inline StockMixerConfig checkpoint_config(const io::SafetensorsReader& file) {
  auto shape_of = [&](const char* name, std::size_t rank) {
    if (!file.contains(name))
      throw Error(file.path() + ": no tensor '" + name + "': not a StockMixer checkpoint");
    const auto& s = file.info(name).shape;
    if (s.size() != rank)
      throw Error(file.path() + ": tensor '" + name + "' has rank " + std::to_string(s.size()) + ", expected " +
                  std::to_string(rank));
    return s;
  };
  StockMixerConfig c;
  const auto dense1 = shape_of("stock_mixer.dense1.weight", 2);  // [M, N]
  const auto ln = shape_of("mixer.mix_layer.LN_1.weight", 2);    // [T, C]
  c.market = dense1[0];
  c.stocks = dense1[1];
  c.lookback = ln[0];
  c.features = ln[1];
  if (file.metadata().count("stockmixer.config")) {
    const std::string& text = file.metadata().at("stockmixer.config");
    const std::string too_deep = io::json_depth_problem(text.data(), text.data() + text.size());
    if (!too_deep.empty()) throw Error(file.path() + ": metadata 'stockmixer.config' is " + too_deep);
    try {
      const nlohmann::json j = nlohmann::json::parse(text);
      if (!j.is_object()) throw Error(file.path() + ": metadata 'stockmixer.config' is not a JSON object");
      c.dropout = j.value("dropout", 0.0);
    } catch (const nlohmann::json::exception& e) {
      throw Error(file.path() + ": metadata 'stockmixer.config' is not valid JSON (" + e.what() + ")");
    }
  }
  try {
    c.validate();
  } catch (const Error& e) {
    throw Error(file.path() + ": the weights imply an invalid model: " + e.what());
  }
  return c;
}

template <class F>
void for_each_checkpoint_tensor(const StockMixerConfig& c, F&& f) {
  using Dims = std::vector<Index>;
  const Index n = c.stocks, t = c.lookback, ch = c.features, m = c.market, s = c.scale(), fused = c.fused();
  auto linear = [&](const std::string& prefix, Index in, Index out) {
    f(prefix + "weight", Dims{out, in});
    f(prefix + "bias", Dims{out});
  };
  auto mixer2d_triu = [&](const std::string& prefix, Index steps) {  // Mixer2dTriU(steps, C)
    for (const char* ln : {"LN_1.", "LN_2."}) {
      f(prefix + ln + "weight", Dims{steps, ch});
      f(prefix + ln + "bias", Dims{steps, ch});
    }
    for (Index i = 0; i < steps; ++i) linear(prefix + "timeMixer.triU." + std::to_string(i) + ".", i + 1, 1);
    linear(prefix + "channelMixer.dense_1.", ch, ch);
    linear(prefix + "channelMixer.dense_2.", ch, ch);
  };
  mixer2d_triu("mixer.mix_layer.", t);
  mixer2d_triu("mixer.scale_mix_layer.", s);
  linear("channel_fc.", ch, 1);
  linear("time_fc.", fused, 1);
  f("conv.weight", Dims{ch, ch, 2});
  f("conv.bias", Dims{ch});
  linear("stock_mixer.dense1.", n, m);
  linear("stock_mixer.dense2.", m, n);
  f("stock_mixer.layer_norm_stock.weight", Dims{n});
  f("stock_mixer.layer_norm_stock.bias", Dims{n});
  linear("time_fc_.", fused, 1);
}

template <class T>
StockMixer<T> load_checkpoint(const std::string& path) {
  const io::SafetensorsReader file(path);
  const StockMixerConfig config = checkpoint_config(file);
  // The tensor set and shapes the dims imply, before the model is built. Each entry visited is one the
  // file holds (the first that it lacks stops the walk), so the walk is as long as the file's header.
  const std::string dims = "N = " + std::to_string(config.stocks) + ", T = " + std::to_string(config.lookback) +
                           ", C = " + std::to_string(config.features) + ", M = " + std::to_string(config.market);
  std::set<std::string> implied;
  for_each_checkpoint_tensor(config, [&](const std::string& name, const std::vector<Index>& shape) {
    if (!file.contains(name))
      throw Error(path + ": missing tensor '" + name + "' " + io::detail::shape_str(shape) + " (the weights' dims " +
                  dims + " imply it)");
    if (file.info(name).shape != shape)
      throw Error(path + ": tensor '" + name + "' has shape " + io::detail::shape_str(file.info(name).shape) +
                  ", expected " + io::detail::shape_str(shape) + " (the weights' dims " + dims + " imply it)");
    implied.insert(name);
  });
  for (const auto& name : file.names())
    if (!implied.count(name))
      throw Error(path + ": unexpected tensor '" + name + "' (not a parameter of StockMixer with " + dims + ")");
  StockMixer<T> model(config);
  io::load_parameters(model.parameters(), file);
  return model;
}

}  // namespace stockmixer
