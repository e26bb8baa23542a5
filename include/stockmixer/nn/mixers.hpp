// stockmixer/nn/mixers.hpp — the blocks of StockMixer (SPEC §2), with the original's state_dict names.
//
// Layout: features stay [N, L, C] throughout; time mixing runs on axis 1 (TriU with K = C, or a
// Linear after a swap12) so the original's permute pairs disappear where they cancel. Shapes in the
// comments use the legend N stocks, L time steps, C channels, F fused time, M market width.
#pragma once

#include "stockmixer/autograd/ops.hpp"
#include "stockmixer/nn/layers.hpp"

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace stockmixer::nn {

// ---- interface -------------------------------------------------------------------------------------

// Linear(D, H) -> GELU -> [dropout] -> Linear(H, D) -> [dropout], on the last axis.
// Dropout runs only on a recording (training) tape, each with a seed drawn from the tape's stream
// (Tape::draw_seed: a new mask every dropout and every step); the original's F.dropout defaults to
// training=True and would also drop at inference. StockMixer uses p = 0, where both agree.
template <class T>
class MixerBlock {
 public:
  MixerBlock(Index dim, Index hidden, double dropout = 0.0) : dense_1(dim, hidden), dense_2(hidden, dim), p_(dropout) {}
  void init(Init& init) {
    dense_1.init(init);
    dense_2.init(init);
  }
  Node<T>* forward(Tape<T>& tape, Node<T>* x);
  void declare(ParameterStore<T>& store, const std::string& prefix) {
    dense_1.declare(store, prefix + "dense_1.");
    dense_2.declare(store, prefix + "dense_2.");
  }

  Linear<T> dense_1, dense_2;

 private:
  double p_;
};

// LN_1 over [L, C] -> time mixer on axis 1 -> LN_2(· + u) -> x + MixerBlock(C, C)(x).
// TimeMixer is TriU<T> (Mixer2dTriU) or MixerBlock<T> (Mixer2d); dropout is the channel mixer's.
template <class T, class TimeMixer>
class Mixer2dBase {
 public:
  Mixer2dBase(Index steps, Index channels, TimeMixer time_mixer, double dropout = 0.0)
      : LN_1(Shape{steps, channels}), LN_2(Shape{steps, channels}), timeMixer(std::move(time_mixer)),
        channelMixer(channels, channels, dropout) {}
  void init(Init& init) {
    LN_1.init(init);
    LN_2.init(init);
    timeMixer.init(init);
    channelMixer.init(init);
  }
  Node<T>* forward(Tape<T>& tape, Node<T>* u);  // u [N, L, C] -> [N, L, C]
  void declare(ParameterStore<T>& store, const std::string& prefix) {
    LN_1.declare(store, prefix + "LN_1.");
    LN_2.declare(store, prefix + "LN_2.");
    timeMixer.declare(store, prefix + "timeMixer.");
    channelMixer.declare(store, prefix + "channelMixer.");
  }

  LayerNorm<T> LN_1, LN_2;
  TimeMixer timeMixer;
  MixerBlock<T> channelMixer;
};

template <class T>
struct Mixer2dTriU : Mixer2dBase<T, TriU<T>> {
  Mixer2dTriU(Index steps, Index channels, double dropout = 0.0)
      : Mixer2dBase<T, TriU<T>>(steps, channels, TriU<T>(steps), dropout) {}
};

template <class T>
struct Mixer2d : Mixer2dBase<T, MixerBlock<T>> {
  Mixer2d(Index steps, Index channels) : Mixer2dBase<T, MixerBlock<T>>(steps, channels, MixerBlock<T>(steps, steps)) {}
};

// TriU(L) -> GELU -> TriU(L), on axis 1 of [B, L, K].
template <class T>
class TimeMixerBlock {
 public:
  explicit TimeMixerBlock(Index steps) : dense_1(steps), dense_2(steps) {}
  void init(Init& init) {
    dense_1.init(init);
    dense_2.init(init);
  }
  Node<T>* forward(Tape<T>& tape, Node<T>* x) {
    return dense_2.forward(tape, autograd::gelu(tape, dense_1.forward(tape, x)));
  }
  void declare(ParameterStore<T>& store, const std::string& prefix) {
    dense_1.declare(store, prefix + "dense_1.");
    dense_2.declare(store, prefix + "dense_2.");
  }

  TriU<T> dense_1, dense_2;
};

// The original's MultiScaleTimeMixer(L, C, scales), on x [N, L, C] -> [N, C, Σ_i L / 2^i].
// Branch 0: LayerNorm -> TriU(L) -> Hardswish -> TriU(L) on the [N, C, L] layout; branch i > 0:
// Conv1d(C, C, 2^i, stride 2^i) -> TriU(L/2^i) -> Hardswish -> TriU(L/2^i); concatenated on the last
// axis. Documented fix: the original builds LayerNorm([L, C]) but applies it to [N, C, L], which only
// runs when L == C; here it normalises jointly over the trailing [C, L] dims, with weight and bias of
// shape [C, L]. Parameter names follow the original's nn.Sequential: mix_layer.<i>.<0|1|3>.*.
template <class T>
class MultiScaleTimeMixer {
 public:
  MultiScaleTimeMixer(Index steps, Index channels, Index scales);
  void init(Init& init);
  Node<T>* forward(Tape<T>& tape, Node<T>* x);
  void declare(ParameterStore<T>& store, const std::string& prefix);

 private:
  struct Branch {
    LayerNorm<T> norm;  // branch 0 only (an empty shape elsewhere)
    Conv1d<T> conv;     // branches i > 0 only
    TriU<T> first, second;
  };
  Index steps_, channels_;
  std::vector<Branch> branches_;
};

// cat([u, Mixer2dTriU(T, C)(u), Mixer2dTriU(S, C)(v)], time axis): u [N, T, C], v [N, S, C] -> [N, F, C].
template <class T>
class MultTime2dMixer {
 public:
  MultTime2dMixer(Index steps, Index channels, Index scale_steps, double dropout = 0.0)
      : mix_layer(steps, channels, dropout), scale_mix_layer(scale_steps, channels, dropout) {}
  void init(Init& init) {
    mix_layer.init(init);
    scale_mix_layer.init(init);
  }
  Node<T>* forward(Tape<T>& tape, Node<T>* u, Node<T>* v) {
    Node<T>* y = scale_mix_layer.forward(tape, v);
    Node<T>* x = mix_layer.forward(tape, u);
    return autograd::concat1(tape, {u, x, y});
  }
  void declare(ParameterStore<T>& store, const std::string& prefix) {
    mix_layer.declare(store, prefix + "mix_layer.");
    scale_mix_layer.declare(store, prefix + "scale_mix_layer.");
  }

  Mixer2dTriU<T> mix_layer, scale_mix_layer;
};

// On y [N, F]: transpose to [F, N], LayerNorm(N), Linear(N, M), Hardswish, Linear(M, N), transpose back.
template <class T>
class NoGraphMixer {
 public:
  NoGraphMixer(Index stocks, Index market)
      : dense1(stocks, market), dense2(market, stocks), layer_norm_stock(Shape{stocks}) {}
  void init(Init& init) {
    dense1.init(init);
    dense2.init(init);
    layer_norm_stock.init(init);
  }
  Node<T>* forward(Tape<T>& tape, Node<T>* y) {
    Node<T>* x = autograd::transpose(tape, y);          // [F, N]
    x = layer_norm_stock.forward(tape, x);              // [F, N]
    x = autograd::hardswish(tape, dense1.forward(tape, x));  // [F, M]
    x = dense2.forward(tape, x);                        // [F, N]
    return autograd::transpose(tape, x);                // [N, F]
  }
  void declare(ParameterStore<T>& store, const std::string& prefix) {
    dense1.declare(store, prefix + "dense1.");
    dense2.declare(store, prefix + "dense2.");
    layer_norm_stock.declare(store, prefix + "layer_norm_stock.");
  }

  Linear<T> dense1, dense2;
  LayerNorm<T> layer_norm_stock;
};

// ---- implementation --------------------------------------------------------------------------------

template <class T>
Node<T>* MixerBlock<T>::forward(Tape<T>& tape, Node<T>* x) {
  x = autograd::gelu(tape, dense_1.forward(tape, x));
  if (p_ > 0.0 && tape.recording()) x = autograd::dropout(tape, x, p_, tape.draw_seed());
  x = dense_2.forward(tape, x);
  if (p_ > 0.0 && tape.recording()) x = autograd::dropout(tape, x, p_, tape.draw_seed());
  return x;
}

namespace detail {
template <class T>
Node<T>* time_mix(Tape<T>& tape, TriU<T>& m, Node<T>* a) {
  return m.forward(tape, a);  // TriU on axis 1 of [N, L, C]: no permutes needed
}
template <class T>
Node<T>* time_mix(Tape<T>& tape, MixerBlock<T>& m, Node<T>* a) {
  // A Linear mixes the last axis: [N, L, C] -> [N, C, L] -> MixerBlock(L) -> [N, L, C].
  return autograd::swap12(tape, m.forward(tape, autograd::swap12(tape, a)));
}
}  // namespace detail

template <class T, class TimeMixer>
Node<T>* Mixer2dBase<T, TimeMixer>::forward(Tape<T>& tape, Node<T>* u) {
  Node<T>* a = LN_1.forward(tape, u);                         // [N, L, C]
  a = detail::time_mix(tape, timeMixer, a);                   // [N, L, C]
  Node<T>* x = LN_2.forward(tape, autograd::add(tape, a, u));  // [N, L, C]
  Node<T>* y = channelMixer.forward(tape, x);                 // [N, L, C]
  return autograd::add(tape, x, y);
}

template <class T>
MultiScaleTimeMixer<T>::MultiScaleTimeMixer(Index steps, Index channels, Index scales)
    : steps_(steps), channels_(channels) {
  if (scales < 1) throw Error("stockmixer::nn::MultiScaleTimeMixer: needs at least one scale");
  for (Index i = 0; i < scales; ++i) {
    const Index k = Index(1) << i, len = steps / k;
    if (len < 1) throw Error("stockmixer::nn::MultiScaleTimeMixer: scale " + std::to_string(i) + " leaves no steps");
    branches_.push_back(Branch{LayerNorm<T>(i == 0 ? Shape{channels, steps} : Shape{0}),
                               Conv1d<T>(channels, channels, i == 0 ? 1 : k), TriU<T>(len), TriU<T>(len)});
  }
}

template <class T>
void MultiScaleTimeMixer<T>::init(Init& init) {
  for (std::size_t i = 0; i < branches_.size(); ++i) {
    if (i == 0) branches_[i].norm.init(init);
    else branches_[i].conv.init(init);
    branches_[i].first.init(init);
    branches_[i].second.init(init);
  }
}

template <class T>
Node<T>* MultiScaleTimeMixer<T>::forward(Tape<T>& tape, Node<T>* x) {
  const Index n = x->shape()[0];
  Node<T>* out[4] = {};
  Node<T>* xt = autograd::swap12(tape, x);  // [N, C, L], the original's x.permute(0, 2, 1)
  for (std::size_t i = 0; i < branches_.size(); ++i) {
    Branch& br = branches_[i];
    Node<T>* h;
    if (i == 0) {
      h = br.norm.forward(tape, xt);  // jointly over [C, L]
    } else {
      h = autograd::swap12(tape, br.conv.forward(tape, x));  // conv on [N, L, C] -> [N, C, L/2^i]
    }
    const Index len = br.first.length();
    h = autograd::view(tape, h, {n * channels_, len});  // TriU on the last axis
    h = br.second.forward(tape, autograd::hardswish(tape, br.first.forward(tape, h)));
    out[i] = autograd::view(tape, h, {n * channels_, 1, len});
  }
  if (branches_.size() == 1) return autograd::view(tape, out[0], {n, channels_, steps_});
  // Concatenating on the last axis of [N, C, ·] is concatenating on axis 2 of [N·C, 1, ·]; concat1
  // works on axis 1 of [B, L, C], so view each part as [N·C, len, 1].
  Index total = 0;
  for (std::size_t i = 0; i < branches_.size(); ++i) {
    const Index len = branches_[i].first.length();
    out[i] = autograd::view(tape, out[i], {n * channels_, len, 1});
    total += len;
  }
  Node<T>* cat;
  switch (branches_.size()) {
    case 2: cat = autograd::concat1(tape, {out[0], out[1]}); break;
    case 3: cat = autograd::concat1(tape, {out[0], out[1], out[2]}); break;
    case 4: cat = autograd::concat1(tape, {out[0], out[1], out[2], out[3]}); break;
    default: throw Error("stockmixer::nn::MultiScaleTimeMixer: at most 4 scales");
  }
  return autograd::view(tape, cat, {n, channels_, total});
}

template <class T>
void MultiScaleTimeMixer<T>::declare(ParameterStore<T>& store, const std::string& prefix) {
  for (std::size_t i = 0; i < branches_.size(); ++i) {
    const std::string p = prefix + "mix_layer." + std::to_string(i) + ".";
    if (i == 0) branches_[i].norm.declare(store, p + "0.");
    else branches_[i].conv.declare(store, p + "0.");
    branches_[i].first.declare(store, p + "1.");
    branches_[i].second.declare(store, p + "3.");
  }
}

}  // namespace stockmixer::nn
