// stockmixer/model.hpp — StockMixer(N, T, C, M) (SPEC §3), trainable on the tape and servable
// without one.
//
//   x [N, T, C] --conv(k=2)--> v [N, S, C]
//   h = MultTime2dMixer(x, v)                              [N, F, C],  F = 2T + S
//   y = channel_fc(h), squeezed                            [N, F]
//   z = NoGraphMixer(N, M)(y)                              [N, F]
//   out = time_fc(y) + time_fc_(z)                         [N, 1]
//
// Parameters carry PyTorch's state_dict names, shapes and layouts (45,077 of them at N = 1026,
// T = 16, C = 5, M = 20). S = T / 2; the original hard-codes 8, which is T / 2 for its T = 16 and
// fails for any other T. Inference (`predict`) runs without a tape and, after its first call for a
// given N, allocates nothing.
#pragma once

#include "stockmixer/autograd/ops.hpp"
#include "stockmixer/nn/mixers.hpp"
#include "stockmixer/xtensor.hpp"

#include <cstdint>
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

  Index scale() const { return lookback / 2; }               // S
  Index fused() const { return 2 * lookback + scale(); }     // F
  void validate() const;
};

template <class T>
class StockMixer {
 public:
  using Tape = autograd::Tape<T>;
  using Node = autograd::Node<T>;

  // PyTorch's default initialisation, drawn from `seed`.
  explicit StockMixer(const StockMixerConfig& config, std::uint64_t seed = 0);

  const StockMixerConfig& config() const { return config_; }

  // On the tape: x [N, T, C] -> prediction [N, 1].
  Node* forward(Tape& tape, Node* x);

  // Inference: x [N, T, C] -> prediction [N, 1], no tape. The result is valid until the next call.
  // An xtensor row-major container of T is read in place; any other expression is first evaluated
  // into a buffer the model keeps. After the first call for a shape, neither allocates.
  const Tensor<T>& predict(TensorMap<const T> x);
  template <class E>
  const Tensor<T>& predict(const xt::xexpression<E>& x);

  // Every parameter, named and ordered as PyTorch's state_dict.
  std::vector<nn::ParamView<T>> parameters();
  void parameters(const std::string& prefix, std::vector<nn::ParamView<T>>& out);
  Index num_parameters();
  void zero_grad() { nn::zero_grad(parameters()); }

  nn::Conv1d<T> conv;
  nn::MultTime2dMixer<T> mixer;
  nn::Linear<T> channel_fc, time_fc;
  nn::NoGraphMixer<T> stock_mixer;
  nn::Linear<T> time_fc_;

  // Runs the model as two fused kernels: conv, both mixers and channel_fc (kernels/per_stock.hpp),
  // then the stock mixer and both heads (kernels/stock_head.hpp). false runs the same math op by op:
  // the reference the fused kernels are tested against. Dropout > 0 runs the per-stock part op by op
  // (that kernel has no dropout); the stock head stays fused.
  bool fused = true;

  // The fused kernels' views of their modules' parameters: values and gradients.
  const autograd::PerStockParams<T>& per_stock_params();
  const autograd::StockHeadParams<T>& stock_head_params();

 private:
  StockMixerConfig config_;
  autograd::PerStockParams<T> per_stock_{};
  autograd::StockHeadParams<T> stock_head_{};
  Tape inference_{autograd::Mode::kInference};
  Tensor<T> output_, input_;
};

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

// Points a fused kernel's weight and gradient pointers at a module parameter.
template <class T>
void bind(nn::Parameter<T>& p, const T*& value, T*& grad) {
  value = p.value().data();
  grad = p.grad().data();
}
}  // namespace detail

template <class T>
StockMixer<T>::StockMixer(const StockMixerConfig& config, std::uint64_t seed)
    : conv(detail::validated(config).features, config.features, 2),
      mixer(config.lookback, config.features, config.scale()),
      channel_fc(config.features, 1),
      time_fc(config.fused(), 1),
      stock_mixer(config.stocks, config.market),
      time_fc_(config.fused(), 1),
      config_(config) {
  if (config.dropout > 0.0) {
    mixer.mix_layer.channelMixer = nn::MixerBlock<T>(config.features, config.features, config.dropout);
    mixer.scale_mix_layer.channelMixer = nn::MixerBlock<T>(config.features, config.features, config.dropout);
  }
  nn::Init init(seed);  // PyTorch's construction order
  mixer.init(init);
  channel_fc.init(init);
  time_fc.init(init);
  conv.init(init);
  stock_mixer.init(init);
  time_fc_.init(init);
}

template <class T>
typename StockMixer<T>::Node* StockMixer<T>::forward(Tape& tape, Node* x) {
  const Index n = config_.stocks, t = config_.lookback, c = config_.features;
  if (x->shape() != Shape{n, t, c})
    throw Error("stockmixer::StockMixer: input has shape " + x->shape().str() + ", the model expects [N, T, C] = " +
                Shape{n, t, c}.str());
  if (fused && config_.dropout == 0.0)  // both fused kernels, y passed transposed: [F, N]
    return autograd::stock_head(tape, autograd::per_stock(tape, x, per_stock_params()), stock_head_params());
  Node* v = conv.forward(tape, x);                                          // [N, S, C]
  Node* h = mixer.forward(tape, x, v);                                      // [N, F, C]
  Node* y = autograd::view(tape, channel_fc.forward(tape, h), {n, config_.fused()});  // [N, F]
  if (fused) return autograd::stock_head(tape, autograd::transpose(tape, y), stock_head_params());  // [N, 1]
  Node* z = stock_mixer.forward(tape, y);                                    // [N, F]
  return autograd::add(tape, time_fc.forward(tape, y), time_fc_.forward(tape, z));  // [N, 1]
}

template <class T>
const autograd::StockHeadParams<T>& StockMixer<T>::stock_head_params() {
  auto& v = stock_head_.value;
  auto& g = stock_head_.grad;
  detail::bind(stock_mixer.layer_norm_stock.weight, v.ln_w, g.ln_w);
  detail::bind(stock_mixer.layer_norm_stock.bias, v.ln_b, g.ln_b);
  detail::bind(stock_mixer.dense1.weight, v.dense1_w, g.dense1_w);
  detail::bind(stock_mixer.dense1.bias, v.dense1_b, g.dense1_b);
  detail::bind(stock_mixer.dense2.weight, v.dense2_w, g.dense2_w);
  detail::bind(stock_mixer.dense2.bias, v.dense2_b, g.dense2_b);
  detail::bind(time_fc.weight, v.fc_w, g.fc_w);
  detail::bind(time_fc.bias, v.fc_b, g.fc_b);
  detail::bind(time_fc_.weight, v.fc2_w, g.fc2_w);
  detail::bind(time_fc_.bias, v.fc2_b, g.fc2_b);
  stock_head_.stocks = config_.stocks;
  stock_head_.market = config_.market;
  return stock_head_;
}

template <class T>
const autograd::PerStockParams<T>& StockMixer<T>::per_stock_params() {
  auto bind_mixer = [&](nn::Mixer2dTriU<T>& m, Mixer2dWeights<const T*>& v, Mixer2dWeights<T*>& g) {
    detail::bind(m.LN_1.weight, v.ln1_w, g.ln1_w);
    detail::bind(m.LN_1.bias, v.ln1_b, g.ln1_b);
    detail::bind(m.LN_2.weight, v.ln2_w, g.ln2_w);
    detail::bind(m.LN_2.bias, v.ln2_b, g.ln2_b);
    detail::bind(m.timeMixer.weight, v.triu_w, g.triu_w);
    detail::bind(m.timeMixer.bias, v.triu_b, g.triu_b);
    detail::bind(m.channelMixer.dense_1.weight, v.fc1_w, g.fc1_w);
    detail::bind(m.channelMixer.dense_1.bias, v.fc1_b, g.fc1_b);
    detail::bind(m.channelMixer.dense_2.weight, v.fc2_w, g.fc2_w);
    detail::bind(m.channelMixer.dense_2.bias, v.fc2_b, g.fc2_b);
  };
  auto& v = per_stock_.value;
  auto& g = per_stock_.grad;
  detail::bind(conv.weight, v.conv_w, g.conv_w);
  detail::bind(conv.bias, v.conv_b, g.conv_b);
  bind_mixer(mixer.mix_layer, v.mix, g.mix);
  bind_mixer(mixer.scale_mix_layer, v.scale_mix, g.scale_mix);
  detail::bind(channel_fc.weight, v.fc_w, g.fc_w);
  detail::bind(channel_fc.bias, v.fc_b, g.fc_b);
  return per_stock_;
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
template <class E>
const Tensor<T>& StockMixer<T>::predict(const xt::xexpression<E>& x) {
  const auto& e = x.derived_cast();
  if constexpr (xt::has_data_interface<E>::value && std::is_same_v<typename E::value_type, T>) {
    if (e.layout() == xt::layout_type::row_major)  // a row-major container of T: read in place
      return predict(TensorMap<const T>(map_xtensor(e, "StockMixer::predict input")));
  }
  assign_xtensor(input_, x);  // any other expression: evaluated into a buffer kept between calls
  return predict(TensorMap<const T>(input_.data(), input_.shape()));
}

template <class T>
std::vector<nn::ParamView<T>> StockMixer<T>::parameters() {
  std::vector<nn::ParamView<T>> out;
  parameters("", out);
  return out;
}

template <class T>
void StockMixer<T>::parameters(const std::string& prefix, std::vector<nn::ParamView<T>>& out) {
  mixer.parameters(prefix + "mixer.", out);
  channel_fc.parameters(prefix + "channel_fc.", out);
  time_fc.parameters(prefix + "time_fc.", out);
  conv.parameters(prefix + "conv.", out);
  stock_mixer.parameters(prefix + "stock_mixer.", out);
  time_fc_.parameters(prefix + "time_fc_.", out);
}

template <class T>
Index StockMixer<T>::num_parameters() {
  Index n = 0;
  for (const auto& p : parameters()) n += p.size();
  return n;
}

}  // namespace stockmixer
