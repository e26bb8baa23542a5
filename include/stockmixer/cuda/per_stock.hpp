// stockmixer/cuda/per_stock.hpp — the per-stock block's device work, one stock per thread, as plain
// C++ bodies (__host__ __device__ under nvcc): conv, both Mixer2dTriU, channel_fc, forward and backward.
// src/cuda/model.cu launches them; tests/test_cuda_host.cpp runs the same launch sequence on the CPU
// (every thread index in turn) against model/per_stock.hpp, the CPU kernel this mirrors.
//
//   per_stock_forward_thread(a, n)    stock n: x [N, T, C] -> y[f·N + n] and its activations in acts
//   per_stock_backward_thread(a, n)   stock n: dy [F, N] -> its parameter-gradient terms (partials
//                                     column n, in double) and dx[n] (+=)
//   per_stock_block_sum_thread(a, i)  parameter q, block b of kStockBlock stocks (i = q·nb + b): their
//                                     terms' sum, in stock order, into the block's first entry
//   per_stock_reduce_thread(a, q)     parameter q of the block: grads += Σ_b (block b's sum), b in order
//   per_stock_forward_steps, per_stock_backward_steps   the launch sequences, over any Grid:
//                                     grid(count, body) runs body(i) for every i in [0, count)
//
// Layout. Every per-stock array is a set of rows of N values: row r of stock n at base[r·N + n], so the
// threads of a warp (consecutive stocks) touch consecutive addresses. acts (model_buffer_sizes' acts):
//   v                    [S·C] rows   conv's output (scale_mix's input)
//   per mixer, mix (L = T) then scale_mix (L = S), D = L·C:
//     xhat1, a1          [D] each     LN_1's normalised input and output
//     xhat2, x2          [D] each     LN_2's (its input, TriU(a1) + u, passes through `out` first)
//     hd                 [D]          the channel MixerBlock's hidden layer before GELU; after a
//                                     training forward, GELU's derivative there
//     g                  [D]          GELU's output
//     out                [D]          the mixer's output
//     rstd1, rstd2       1 each       the two LayerNorms' 1/σ
// work (the backward's scratch, T): dy [F] (model_backward's; unused here), dh [F·C] (h's gradient,
// whose first T·C rows then accumulate dx), dv [S·C], four temporaries [T·C].
// partials [P][N] doubles, P = per_stock_parameter_count: row q holds each stock's term of parameter q,
// q running over the block's tensors in store order (both mixers and channel_fc, then conv; time_fc,
// which lies between them in the store, is skipped).
//
// Numerics, as model/per_stock.hpp: every step in T, in the CPU's order of operations (a bias, then the
// terms in index order; residuals added last); LayerNorm statistics in double (float: one pass, Σx and
// Σx², through pointwise::layernorm_moments; double: two passes), rounded to T once; the LayerNorm
// backward's two row sums in double, its dx through pointwise::layernorm_dx in T. GELU: x·Φ(x) with
// the device's (or the C library's) erf and exp in T; the CPU's float path uses Eigen's rational erf,
// which differs by a few ulp. Parameter gradients: each stock's term in double (a product of two
// floats is exact there), summed over the stocks in double (in blocks of 64 stocks, then the blocks in
// order), rounded to T once (the CPU sums 16 lanes in T, then in double: closer to the exact sum here,
// within the parity tolerance).
// No two threads write one address within a launch; nothing is atomic.
#pragma once

#include "stockmixer/cuda/model.hpp"
#include "stockmixer/cuda/pointwise.hpp"

#include <cmath>

namespace stockmixer {
namespace cuda {

// ---- math the host and the device both have, by the same name -------------------------------------

namespace math {
STOCKMIXER_HD inline float erf(float x) {
#if defined(__CUDA_ARCH__)
  return ::erff(x);
#else
  return std::erf(x);
#endif
}
STOCKMIXER_HD inline double erf(double x) {
#if defined(__CUDA_ARCH__)
  return ::erf(x);
#else
  return std::erf(x);
#endif
}
STOCKMIXER_HD inline float exp(float x) {
#if defined(__CUDA_ARCH__)
  return ::expf(x);
#else
  return std::exp(x);
#endif
}
STOCKMIXER_HD inline double exp(double x) {
#if defined(__CUDA_ARCH__)
  return ::exp(x);
#else
  return std::exp(x);
#endif
}
// Correctly rounded on both (nvcc's default -prec-sqrt=true).
STOCKMIXER_HD inline double sqrt(double x) {
#if defined(__CUDA_ARCH__)
  return ::sqrt(x);
#else
  return std::sqrt(x);
#endif
}
}  // namespace math

// Rows of a per-stock array: row r at p[r · stride] (stride N for [row][N] arrays, 1 for a stock's own
// contiguous values, as x [N, T, C]).
template <class V>
struct Rows {
  V* p;
  Index stride;
  STOCKMIXER_HD V& operator[](Index r) const { return p[r * stride]; }
  STOCKMIXER_HD Rows from(Index r) const { return Rows{p + r * stride, stride}; }
};

// Everything the per-stock bodies read and write (device pointers; null where a step does not use one).
template <class T>
struct PerStockArgs {
  Index N, T_, S, C, F, P, nb;  // P: per_stock_parameter_count; nb: stock_blocks(N)
  ParameterLayout lay;
  const T* params;
  const T* x;           // [N, T, C]
  T* acts;              // the rows listed above
  T* y;                 // forward: [F, N]
  bool training;        // forward: keep GELU's derivative in hd
  const T* dy;          // backward: [F, N]
  T* dx;                // backward: [N, T, C] (+=), or null
  T* work;              // backward: model_buffer_sizes' work
  double* partials;     // backward: [P][N]
  T* grads;             // reduction: the store's gradients (+=)

  // Row q of partials for the parameter value at store offset o (o in the block's tensors).
  STOCKMIXER_HD Index part_row(Index o) const {
    return o < lay.conv_w ? o - lay.mix.ln1_w : (lay.channel_fc_b + 1 - lay.mix.ln1_w) + (o - lay.conv_w);
  }
  // The store offset of partials' row q.
  STOCKMIXER_HD Index store_offset(Index q) const {
    const Index head = lay.channel_fc_b + 1 - lay.mix.ln1_w;
    return q < head ? lay.mix.ln1_w + q : lay.conv_w + (q - head);
  }
};

template <class T>
PerStockArgs<T> per_stock_args(const ModelDims& d, const T* params) {
  PerStockArgs<T> a{};
  a.N = d.stocks, a.T_ = d.lookback, a.S = d.scale(), a.C = d.features, a.F = d.fused();
  a.P = per_stock_parameter_count(d);
  a.nb = stock_blocks(d.stocks);
  a.lay = parameter_layout(d);
  a.params = params;
  return a;
}

namespace per_stock_detail {

constexpr double kEps = 1e-5;                            // the mixers' LayerNorms
constexpr double kSqrtHalf = 0.70710678118654752440;     // 1/√2
constexpr double kInvSqrt2Pi = 0.39894228040143267794;   // 1/√(2π)

// One Mixer2dTriU's activations for one stock (the rows above).
template <class T>
struct MixerRows {
  Rows<T> xhat1, a1, xhat2, x2, hd, g, out;
  T *rstd1, *rstd2;
};
template <class T>
STOCKMIXER_HD inline MixerRows<T> mixer_rows(Rows<T> base, Index D) {
  return MixerRows<T>{base,           base.from(D),      base.from(2 * D), base.from(3 * D),
                      base.from(4 * D), base.from(5 * D), base.from(6 * D), &base[7 * D], &base[7 * D + 1]};
}
// The activations of mix (m = 0) or scale_mix (m = 1) of stock n.
template <class T>
STOCKMIXER_HD inline MixerRows<T> stock_mixer_rows(const PerStockArgs<T>& a, Index n, int m) {
  const Rows<T> acts{a.acts + n, a.N};
  const Index v = a.S * a.C, mix = 7 * a.T_ * a.C + 2;
  return m == 0 ? mixer_rows(acts.from(v), a.T_ * a.C) : mixer_rows(acts.from(v + mix), a.S * a.C);
}

// LayerNorm over D values: y = x̂ · γ + β, x̂ = (x − mean) · rstd, statistics in double.
template <class T>
STOCKMIXER_HD inline void layernorm_forward(Rows<T> y, Rows<T> xhat, T* rstd, Rows<const T> x, const T* gamma,
                                            const T* beta, Index D) {
  double mean, var;
  if (sizeof(T) == sizeof(float)) {  // one pass, Σx and Σx² (model/per_stock.hpp's argument)
    double sum = 0.0, sum_sq = 0.0;
    for (Index j = 0; j < D; ++j) {
      const double v = static_cast<double>(x[j]);
      sum += v;
      sum_sq += v * v;
    }
    pointwise::layernorm_moments(mean, var, sum, sum_sq, static_cast<double>(D));
  } else {  // two passes, the deviations summed
    double sum = 0.0;
    for (Index j = 0; j < D; ++j) sum += static_cast<double>(x[j]);
    mean = sum / static_cast<double>(D);
    double sq = 0.0;
    for (Index j = 0; j < D; ++j) {
      const double dv = static_cast<double>(x[j]) - mean;
      sq += dv * dv;
    }
    var = sq / static_cast<double>(D);
  }
  const T mu = static_cast<T>(mean), rs = static_cast<T>(1.0 / math::sqrt(var + kEps));
  *rstd = rs;
  for (Index j = 0; j < D; ++j) {
    const T xh = (x[j] - mu) * rs;
    xhat[j] = xh;
    y[j] = xh * gamma[j] + beta[j];
  }
}

// y[r, o] = (b[o] + Σ_i w[o, i] · x[r, i]) + res[r, o]  (res may be null: no residual)
template <class T>
STOCKMIXER_HD inline void linear_forward(Rows<T> y, Rows<const T> x, const T* w, const T* b, Index rows, Index C,
                                         const Rows<const T>* res) {
  for (Index r = 0; r < rows; ++r)
    for (Index o = 0; o < C; ++o) {
      T acc = b[o];
      for (Index i = 0; i < C; ++i) acc += w[o * C + i] * x[r * C + i];
      y[r * C + o] = res ? acc + (*res)[r * C + o] : acc;
    }
}

// y[i, c] = (b[i] + Σ_{j <= i} w[i, j] · x[j, c]) + res[i, c]
template <class T>
STOCKMIXER_HD inline void triu_forward(Rows<T> y, Rows<const T> x, const T* w, const T* b, Index L, Index C,
                                       Rows<const T> res) {
  for (Index i = 0; i < L; ++i)
    for (Index c = 0; c < C; ++c) {
      T acc = b[i];
      for (Index j = 0; j <= i; ++j) acc += w[i * L + j] * x[j * C + c];
      y[i * C + c] = acc + res[i * C + c];
    }
}

// g = h · Φ(h); with `training`, h is then overwritten by GELU's derivative Φ(h) + h · φ(h).
template <class T>
STOCKMIXER_HD inline void gelu_forward(Rows<T> g, Rows<T> h, Index D, bool training) {
  for (Index j = 0; j < D; ++j) {
    const T x = h[j];
    const T cdf = T(0.5) * (T(1) + math::erf(x * static_cast<T>(kSqrtHalf)));
    g[j] = x * cdf;
    if (training) h[j] = cdf + x * (math::exp(T(-0.5) * x * x) * static_cast<T>(kInvSqrt2Pi));
  }
}

template <class T>
STOCKMIXER_HD inline Rows<const T> in(Rows<T> r) {
  return Rows<const T>{r.p, r.stride};
}

// One Mixer2dTriU(L, C) on u [L, C]: a1 = LN_1(u), s = TriU(a1) + u, x2 = LN_2(s),
// out = x2 + fc2(GELU(fc1(x2))).
template <class T>
STOCKMIXER_HD inline void mixer_forward(const MixerRows<T>& r, Rows<const T> u, const T* p, const MixerOffsets& m,
                                        Index C, bool training) {
  const Index L = m.L, D = L * C;
  layernorm_forward(r.a1, r.xhat1, r.rstd1, u, p + m.ln1_w, p + m.ln1_b, D);
  triu_forward(r.out, in(r.a1), p + m.triu_w, p + m.triu_b, L, C, u);  // out holds s, LN_2's input
  layernorm_forward(r.x2, r.xhat2, r.rstd2, in(r.out), p + m.ln2_w, p + m.ln2_b, D);
  linear_forward<T>(r.hd, in(r.x2), p + m.fc1_w, p + m.fc1_b, L, C, nullptr);
  gelu_forward(r.g, r.hd, D, training);
  const Rows<const T> x2 = in(r.x2);
  linear_forward(r.out, in(r.g), p + m.fc2_w, p + m.fc2_b, L, C, &x2);
}

// ---- backward ----------------------------------------------------------------------------------------

// The gradient terms of one stock: part[q] += v, q = the partials row of store offset o.
template <class T>
struct Terms {
  const PerStockArgs<T>& a;
  Rows<double> part;
  STOCKMIXER_HD void add(Index o, double v) const { part[a.part_row(o)] += v; }
};

// dx[r, i] = (init[r, i] + Σ_o w[o, i] · dy[r, o]) · scale[r, i] (init null: 0, scale null: 1);
// dw[o, i] += Σ_r dy[r, o] · x[r, i], db[o] += Σ_r dy[r, o].
template <class T>
STOCKMIXER_HD inline void linear_backward(Rows<T> dx, const Rows<const T>* init, const Rows<const T>* scale,
                                          const Terms<T>& t, Index w_at, Index b_at, Rows<const T> dy,
                                          Rows<const T> x, const T* w, Index rows, Index C) {
  for (Index o = 0; o < C; ++o) {
    double gb = 0.0;
    for (Index r = 0; r < rows; ++r) gb += static_cast<double>(dy[r * C + o]);
    t.add(b_at + o, gb);
    for (Index i = 0; i < C; ++i) {
      double gw = 0.0;
      for (Index r = 0; r < rows; ++r) gw += static_cast<double>(dy[r * C + o]) * static_cast<double>(x[r * C + i]);
      t.add(w_at + o * C + i, gw);
    }
  }
  for (Index r = 0; r < rows; ++r)
    for (Index i = 0; i < C; ++i) {
      T acc = init ? (*init)[r * C + i] : T(0);
      for (Index o = 0; o < C; ++o) acc += w[o * C + i] * dy[r * C + o];
      dx[r * C + i] = scale ? acc * (*scale)[r * C + i] : acc;
    }
}

// LayerNorm's backward over D values: dgamma += dy · x̂, dbeta += dy, and when dx is not null
// dx = init + add + rstd · (g − mean(g) − x̂ · mean(g · x̂)), g = dy · γ (init, add null: 0).
template <class T>
STOCKMIXER_HD inline void layernorm_backward(Rows<T>* dx, bool init, const Rows<const T>* add, const Terms<T>& t,
                                             Index gamma_at, Index beta_at, Rows<const T> dy, Rows<const T> xhat,
                                             T rstd, const T* gamma, Index D) {
  double sum_g = 0.0, sum_gx = 0.0;
  for (Index j = 0; j < D; ++j) {
    const double d = static_cast<double>(dy[j]), xh = static_cast<double>(xhat[j]);
    t.add(gamma_at + j, d * xh);
    t.add(beta_at + j, d);
    const double g = d * static_cast<double>(gamma[j]);
    sum_g += g;
    sum_gx += g * xh;
  }
  if (!dx) return;
  const T mean_g = static_cast<T>(sum_g / static_cast<double>(D));
  const T mean_gx = static_cast<T>(sum_gx / static_cast<double>(D));
  for (Index j = 0; j < D; ++j) {
    T d;
    pointwise::layernorm_dx(d, rstd, dy[j] * gamma[j], mean_g, xhat[j], mean_gx);
    const T prior = init ? (*dx)[j] : T(0);
    if (init) (*dx)[j] = add ? (prior + (*add)[j]) + d : prior + d;
    else (*dx)[j] = add ? (*add)[j] + d : d;
  }
}

// TriU's backward: db[i] += Σ_c dy[i, c], dw[i, j] += Σ_c dy[i, c] · x[j, c] (j <= i),
// dx[j, c] = Σ_{i >= j} w[i, j] · dy[i, c].
template <class T>
STOCKMIXER_HD inline void triu_backward(Rows<T> dx, const Terms<T>& t, Index w_at, Index b_at, Rows<const T> dy,
                                        Rows<const T> x, const T* w, Index L, Index C) {
  for (Index i = 0; i < L; ++i) {
    double sb = 0.0;
    for (Index c = 0; c < C; ++c) sb += static_cast<double>(dy[i * C + c]);
    t.add(b_at + i, sb);
    for (Index j = 0; j <= i; ++j) {
      double sw = 0.0;
      for (Index c = 0; c < C; ++c) sw += static_cast<double>(dy[i * C + c]) * static_cast<double>(x[j * C + c]);
      t.add(w_at + i * L + j, sw);
    }
  }
  for (Index j = 0; j < L; ++j)
    for (Index c = 0; c < C; ++c) {
      T acc = T(0);
      for (Index i = j; i < L; ++i) acc += w[i * L + j] * dy[i * C + c];
      dx[j * C + c] = acc;
    }
}

// One Mixer2dTriU's backward from dout [L, C]: its parameters' terms and, when du is not null, du
// (= or, with `accumulate`, +=) the gradient of its input. tmp: four [T·C] scratch rows.
template <class T>
STOCKMIXER_HD inline void mixer_backward(Rows<T>* du, bool accumulate, const MixerRows<T>& r, Rows<const T> dout,
                                         const T* p, const MixerOffsets& m, Index C, const Terms<T>& t,
                                         Rows<T> (&tmp)[4]) {
  const Index L = m.L, D = L * C;
  const Rows<T> dhid = tmp[1], dx2 = tmp[2], ds = tmp[0], da1 = tmp[1];
  const Rows<const T> hd = in(r.hd);  // GELU's derivative (a training forward's)
  // dhid = (fc2ᵀ · dout) ⊙ GELU'(h);  dx2 = dout (the residual) + fc1ᵀ · dhid
  linear_backward<T>(dhid, nullptr, &hd, t, m.fc2_w, m.fc2_b, dout, in(r.g), p + m.fc2_w, L, C);
  linear_backward<T>(dx2, &dout, nullptr, t, m.fc1_w, m.fc1_b, in(dhid), in(r.x2), p + m.fc1_w, L, C);
  Rows<T> ds_out = ds;
  layernorm_backward<T>(&ds_out, false, nullptr, t, m.ln2_w, m.ln2_b, in(dx2), in(r.xhat2), *r.rstd2,
                        p + m.ln2_w, D);
  triu_backward(da1, t, m.triu_w, m.triu_b, in(ds), in(r.a1), p + m.triu_w, L, C);
  // du (+)= ds, the residual around LN_1 and TriU, + LN_1's backward
  const Rows<const T> ds_in = in(ds);
  layernorm_backward<T>(du, accumulate, du ? &ds_in : nullptr, t, m.ln1_w, m.ln1_b, in(da1), in(r.xhat1), *r.rstd1,
                        p + m.ln1_w, D);
}

}  // namespace per_stock_detail

// ---- the bodies ----------------------------------------------------------------------------------------

// Stock n's forward: v = conv(x), both mixers, y[f·N + n] = fc_b + Σ_c fc_w[c] · h[f, c].
template <class T>
STOCKMIXER_HD inline void per_stock_forward_thread(const PerStockArgs<T>& a, Index n) {
  using namespace per_stock_detail;
  const Index T_ = a.T_, S = a.S, C = a.C, N = a.N;
  const T* p = a.params;
  const Rows<const T> x{a.x + n * T_ * C, 1};
  const Rows<T> v{a.acts + n, N};
  // v[s, o] = b[o] + Σ_c Σ_j w[o, c, j] · x[2s + j, c]  (kernel = stride = 2)
  const T *cw = p + a.lay.conv_w, *cb = p + a.lay.conv_b;
  for (Index s = 0; s < S; ++s)
    for (Index o = 0; o < C; ++o) {
      T acc = cb[o];
      for (Index c = 0; c < C; ++c)
        for (Index j = 0; j < 2; ++j) acc += cw[(o * C + c) * 2 + j] * x[(2 * s + j) * C + c];
      v[s * C + o] = acc;
    }
  const MixerRows<T> mix = stock_mixer_rows(a, n, 0), scale = stock_mixer_rows(a, n, 1);
  mixer_forward(mix, x, p, a.lay.mix, C, a.training);
  mixer_forward(scale, in(v), p, a.lay.scale_mix, C, a.training);
  const T *fw = p + a.lay.channel_fc_w, *fb = p + a.lay.channel_fc_b;
  for (Index f = 0; f < a.F; ++f) {
    T acc = fb[0];
    for (Index c = 0; c < C; ++c) {
      const T h = f < T_ ? x[f * C + c] : f < 2 * T_ ? mix.out[(f - T_) * C + c] : scale.out[(f - 2 * T_) * C + c];
      acc += fw[c] * h;
    }
    a.y[f * N + n] = acc;
  }
}

// Stock n's backward from dy [F, N] and the training forward's acts: its terms of every parameter of
// the block into partials column n (written whole: zeros where it has none), dx[n] += its input
// gradient when dx is not null.
template <class T>
STOCKMIXER_HD inline void per_stock_backward_thread(const PerStockArgs<T>& a, Index n) {
  using namespace per_stock_detail;
  const Index T_ = a.T_, S = a.S, C = a.C, N = a.N, F = a.F, tc = T_ * C;
  const T* p = a.params;
  const Terms<T> t{a, Rows<double>{a.partials + n, N}};
  for (Index q = 0; q < a.P; ++q) t.part[q] = 0.0;
  const Rows<const T> x{a.x + n * tc, 1}, dy{a.dy + n, N};
  const Rows<T> work{a.work + n, N};
  const Rows<T> dh = work.from(F), dv = work.from(F + F * C);
  Rows<T> tmp[4];
  for (int k = 0; k < 4; ++k) tmp[k] = work.from(F + F * C + S * C + k * tc);
  const MixerRows<T> mix = stock_mixer_rows(a, n, 0), scale = stock_mixer_rows(a, n, 1);
  // channel_fc: dh[f, c] = fc_w[c] · dy[f];  dfc_w[c] += Σ_f dy[f] · h[f, c];  dfc_b += Σ_f dy[f]
  const T* fw = p + a.lay.channel_fc_w;
  for (Index c = 0; c < C; ++c) {
    double sw = 0.0;
    for (Index f = 0; f < F; ++f) {
      const T h = f < T_ ? x[f * C + c] : f < 2 * T_ ? mix.out[(f - T_) * C + c] : scale.out[(f - 2 * T_) * C + c];
      sw += static_cast<double>(dy[f]) * static_cast<double>(h);
    }
    t.add(a.lay.channel_fc_w + c, sw);
  }
  double sb = 0.0;
  for (Index f = 0; f < F; ++f) sb += static_cast<double>(dy[f]);
  t.add(a.lay.channel_fc_b, sb);
  const bool want_dx = a.dx != nullptr;
  for (Index f = want_dx ? 0 : T_; f < F; ++f)  // dh's first T rows (x's share) are dx's only
    for (Index c = 0; c < C; ++c) dh[f * C + c] = fw[c] * dy[f];
  // scale_mix: dv = its input gradient
  Rows<T> dv_out = dv;
  mixer_backward<T>(&dv_out, false, scale, in(dh.from(2 * tc)), p, a.lay.scale_mix, C, t, tmp);
  // conv: db[o] += Σ_s dv[s, o];  dw[o, c, j] += Σ_s dv[s, o] · x[2s + j, c];  dx[2s + j, c] += Σ_o w[o, c, j] · dv[s, o]
  const T* cw = p + a.lay.conv_w;
  for (Index o = 0; o < C; ++o) {
    double gb = 0.0;
    for (Index s = 0; s < S; ++s) gb += static_cast<double>(dv[s * C + o]);
    t.add(a.lay.conv_b + o, gb);
    for (Index c = 0; c < C; ++c)
      for (Index j = 0; j < 2; ++j) {
        double gw = 0.0;
        for (Index s = 0; s < S; ++s)
          gw += static_cast<double>(dv[s * C + o]) * static_cast<double>(x[(2 * s + j) * C + c]);
        t.add(a.lay.conv_w + (o * C + c) * 2 + j, gw);
      }
  }
  Rows<T> gx = dh;  // x's gradient accumulates over dh's x share
  if (want_dx)
    for (Index s = 0; s < S; ++s)
      for (Index j = 0; j < 2; ++j)
        for (Index c = 0; c < C; ++c) {
          T acc = gx[(2 * s + j) * C + c];
          for (Index o = 0; o < C; ++o) acc += cw[(o * C + c) * 2 + j] * dv[s * C + o];
          gx[(2 * s + j) * C + c] = acc;
        }
  mixer_backward<T>(want_dx ? &gx : nullptr, true, mix, in(dh.from(tc)), p, a.lay.mix, C, t, tmp);
  if (!want_dx) return;
  T* dx = a.dx + n * tc;
  for (Index r = 0; r < tc; ++r) dx[r] += gx[r];
}

// i = q·nb + b: the sum of parameter q's terms over block b's stocks [64·b, 64·b + 64), in stock order,
// in place of the block's first term (only this thread reads or writes those entries).
template <class T>
STOCKMIXER_HD inline void per_stock_block_sum_thread(const PerStockArgs<T>& a, Index i) {
  const Index q = i / a.nb, b = i % a.nb;
  double* row = a.partials + q * a.N;
  const Index n0 = b * kStockBlock, n1 = n0 + kStockBlock < a.N ? n0 + kStockBlock : a.N;
  double s = 0.0;
  for (Index n = n0; n < n1; ++n) s += row[n];
  row[n0] = s;
}

// Parameter q of the block (q < P): grads[store offset] += Σ_b (block b's sum), b in order, in double.
template <class T>
STOCKMIXER_HD inline void per_stock_reduce_thread(const PerStockArgs<T>& a, Index q) {
  const double* row = a.partials + q * a.N;
  double s = 0.0;
  for (Index n0 = 0; n0 < a.N; n0 += kStockBlock) s += row[n0];
  a.grads[a.store_offset(q)] += static_cast<T>(s);
}

// ---- the launch sequences ------------------------------------------------------------------------------
// Bodies as function objects: a grid runs body(i) for every i in [0, count). The device's grid
// (src/cuda/model.cu) launches one kernel per call; the host's (tests) loops.

template <class T>
struct PerStockForwardBody {
  PerStockArgs<T> a;
  STOCKMIXER_HD void operator()(Index n) const { per_stock_forward_thread(a, n); }
};
template <class T>
struct PerStockBackwardBody {
  PerStockArgs<T> a;
  STOCKMIXER_HD void operator()(Index n) const { per_stock_backward_thread(a, n); }
};
template <class T>
struct PerStockBlockSumBody {
  PerStockArgs<T> a;
  STOCKMIXER_HD void operator()(Index i) const { per_stock_block_sum_thread(a, i); }
};
template <class T>
struct PerStockReduceBody {
  PerStockArgs<T> a;
  STOCKMIXER_HD void operator()(Index q) const { per_stock_reduce_thread(a, q); }
};

// y [F, N] and acts from x (a.x, a.acts, a.y, a.training set).
template <class T, class Grid>
void per_stock_forward_steps(Grid& grid, const PerStockArgs<T>& a) {
  grid(a.N, PerStockForwardBody<T>{a});
}

// grads += the block's parameter gradients, dx += the input gradient (a.dy, a.x, a.acts, a.work,
// a.partials, a.grads, a.dx set): one thread per stock, then one per (parameter, block of stocks), then
// one per parameter.
template <class T, class Grid>
void per_stock_backward_steps(Grid& grid, const PerStockArgs<T>& a) {
  grid(a.N, PerStockBackwardBody<T>{a});
  grid(a.P * a.nb, PerStockBlockSumBody<T>{a});
  grid(a.P, PerStockReduceBody<T>{a});
}

}  // namespace cuda
}  // namespace stockmixer
