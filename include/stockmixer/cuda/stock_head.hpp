// stockmixer/cuda/stock_head.hpp — the stock head's device work (NoGraphMixer: LayerNorm over the
// stocks, dense1, Hardswish, dense2; then time_fc and time_fc_), forward and backward, as plain C++
// bodies (__host__ __device__ under nvcc), and the launch sequences of the head and of the whole model.
// src/cuda/model.cu launches them; tests/test_cuda_host.cpp runs the same sequences on the CPU (every
// thread index in turn) against model/stock_head.hpp and the CPU model. The math is
// docs/math/stock_head.md's, with its names:
//
//   forward   x̂[f, n] = (y[f, n] − mean_f) · rstd_f,  xn = x̂ · γ[n] + β[n]
//             h[f, m] = Σ_n xn[f, n] · W1[m, n] + b1[m],  a = hardswish(h),  u[m] = Σ_f a[f, m] · w_[f]
//             out[n] = Σ_f y[f, n] · w[f] + b + Σ_m W2[n, m] · u[m] + b2[n] · Σ_f w_[f] + b_
//   backward  d = dout;  v[m] = Σ_n d[n] · W2[n, m];  db, db_ += Σ_n d[n];  dw[f] += Σ_n y[f, n] · d[n]
//             dw_[f] += Σ_m a[f, m] · v[m] + Σ_n b2[n] · d[n];  dW2[n, m] += d[n] · u[m];
//             db2[n] += d[n] · Σ_f w_[f];  dh[f, m] = w_[f] · v[m] · hardswish'(h[f, m]);  db1[m] += Σ_f dh
//             dW1[m, n] += Σ_f dh[f, m] · xn[f, n];  dxn[f, n] = Σ_m dh[f, m] · W1[m, n]
//             dγ[n] += Σ_f dxn · x̂,  dβ[n] += Σ_f dxn,  g = dxn · γ[n]
//             dy[f, n] += w[f] · d[n] + rstd_f · (g − mean_n g − x̂ · mean_n(g · x̂))
//
// Launches (one thread per output; sums over the stocks in blocks of kStockBlock stocks, one thread a
// (sum, block), then one thread a sum adding its blocks in block order):
//   forward   moments (2F sums, per block) -> mean, rstd (F) -> x̂, xn (F·N) -> dense1 (F·M sums, per
//             block) -> h, a (F·M) -> u (M) -> out (N)
//   backward  the sums of d (M + F + 2, per block) -> their totals -> dh, db1 (M), dw, dw_ (F), db, db_
//             -> per stock n: dW1[:, n], dW2[n, :], db2[n], dγ[n], dβ[n], g[:, n] -> the sums of g and
//             g·x̂ (2F, per block) -> their totals -> dy (F·N)
// Layouts (doubles): head = mean [F], rstd [F], h [F·M], a [F·M], u [M], x̂ [F·N], xn [F·N];
// head_work = the block partials [widest · nb], the d sums [M + F + 2], the g sums [2F], dh [F·M],
// g [F·N] (nb = stock_blocks(N); widest: the largest number of sums one round takes).
//
// Numerics, as model/stock_head.hpp: everything in double, y and the weights widened on reading, every
// result rounded to T once. The LayerNorm statistics take one pass (Σy and Σy² in double, then
// pointwise::layernorm_moments) for float and double alike: the CPU's double path takes two, and the
// difference, about 2^-52 · (mean / σ)² relative in the variance, is far below 1e-10 for a LayerNorm's
// inputs. Sums run in another order than the CPU's (blocks of 64 stocks rather than 8 lanes): the
// results agree within rounding of double, not bit for bit.
#pragma once

#include "stockmixer/cuda/per_stock.hpp"

namespace stockmixer {
namespace cuda {

template <class T>
struct StockHeadArgs {
  Index N, F, M, nb, widest;
  ParameterLayout lay;
  const T* params;
  const T* y;          // [F, N]
  T* out;              // forward: [N]
  const T* dout;       // backward: [N]
  T* dy;               // backward: [F, N] (+=), or null
  T* grads;            // backward: the store's gradients (+=)
  double* head;        // the forward's saved values (layout above)
  double* work;        // head_work

  // The saved arrays and the scratch, by name.
  STOCKMIXER_HD double* mean() const { return head; }
  STOCKMIXER_HD double* rstd() const { return head + F; }
  STOCKMIXER_HD double* h() const { return head + 2 * F; }
  STOCKMIXER_HD double* a() const { return head + 2 * F + F * M; }
  STOCKMIXER_HD double* u() const { return head + 2 * F + 2 * F * M; }
  STOCKMIXER_HD double* xhat() const { return head + 2 * F + 2 * F * M + M; }
  STOCKMIXER_HD double* xn() const { return xhat() + F * N; }
  STOCKMIXER_HD double* part() const { return work; }
  STOCKMIXER_HD double* dsums() const { return work + widest * nb; }  // v [M], Σd, Σ b2·d, Σ y·d [F]
  STOCKMIXER_HD double* gsums() const { return dsums() + M + F + 2; }  // Σ g, Σ g·x̂ per row f
  STOCKMIXER_HD double* dh() const { return gsums() + 2 * F; }
  STOCKMIXER_HD double* g() const { return dh() + F * M; }

  // Stocks [n0, n1) of block b.
  STOCKMIXER_HD Index block_begin(Index b) const { return b * kStockBlock; }
  STOCKMIXER_HD Index block_end(Index b) const { return b * kStockBlock + kStockBlock < N ? b * kStockBlock + kStockBlock : N; }
};

template <class T>
StockHeadArgs<T> stock_head_args(const ModelDims& d, const T* params) {
  StockHeadArgs<T> a{};
  a.N = d.stocks, a.F = d.fused(), a.M = d.market, a.nb = stock_blocks(d.stocks);
  a.widest = 2 * a.F;
  if (a.F * a.M > a.widest) a.widest = a.F * a.M;
  if (a.M + a.F + 2 > a.widest) a.widest = a.M + a.F + 2;
  a.lay = parameter_layout(d);
  a.params = params;
  return a;
}

// ---- forward bodies ----------------------------------------------------------------------------------

// i = f·nb + b: Σ y[f, n] and Σ y[f, n]² over block b's stocks, into part[2f·nb + b], part[(2f + 1)·nb + b].
template <class T>
STOCKMIXER_HD inline void head_moments_thread(const StockHeadArgs<T>& a, Index i) {
  const Index f = i / a.nb, b = i % a.nb;
  double s = 0.0, sq = 0.0;
  for (Index n = a.block_begin(b); n < a.block_end(b); ++n) {
    const double v = static_cast<double>(a.y[f * a.N + n]);
    s += v;
    sq += v * v;
  }
  a.part()[2 * f * a.nb + b] = s;
  a.part()[(2 * f + 1) * a.nb + b] = sq;
}

// f: mean_f and rstd_f = 1 / √(var_f + 1e-5) from the blocks' sums, in block order.
template <class T>
STOCKMIXER_HD inline void head_stats_thread(const StockHeadArgs<T>& a, Index f) {
  double s = 0.0, sq = 0.0;
  for (Index b = 0; b < a.nb; ++b) {
    s += a.part()[2 * f * a.nb + b];
    sq += a.part()[(2 * f + 1) * a.nb + b];
  }
  double mean, var;
  pointwise::layernorm_moments(mean, var, s, sq, static_cast<double>(a.N));
  a.mean()[f] = mean;
  a.rstd()[f] = 1.0 / math::sqrt(var + 1e-5);
}

// i = f·N + n: x̂[f, n] and xn[f, n].
template <class T>
STOCKMIXER_HD inline void head_normalise_thread(const StockHeadArgs<T>& a, Index i) {
  const Index f = i / a.N, n = i % a.N;
  const double xh = (static_cast<double>(a.y[i]) - a.mean()[f]) * a.rstd()[f];
  a.xhat()[i] = xh;
  a.xn()[i] = xh * static_cast<double>(a.params[a.lay.ln_w + n]) + static_cast<double>(a.params[a.lay.ln_b + n]);
}

// i = (f·M + m)·nb + b: Σ_n xn[f, n] · W1[m, n] over block b's stocks.
template <class T>
STOCKMIXER_HD inline void head_dense1_thread(const StockHeadArgs<T>& a, Index i) {
  const Index k = i / a.nb, b = i % a.nb, f = k / a.M, m = k % a.M;
  const double* xn = a.xn() + f * a.N;
  const T* w1 = a.params + a.lay.dense1_w + m * a.N;
  double s = 0.0;
  for (Index n = a.block_begin(b); n < a.block_end(b); ++n) s += xn[n] * static_cast<double>(w1[n]);
  a.part()[i] = s;
}

// k = f·M + m: h = the blocks' sums + b1[m], a = hardswish(h).
template <class T>
STOCKMIXER_HD inline void head_activation_thread(const StockHeadArgs<T>& a, Index k) {
  double s = 0.0;
  for (Index b = 0; b < a.nb; ++b) s += a.part()[k * a.nb + b];
  const double h = s + static_cast<double>(a.params[a.lay.dense1_b + k % a.M]);
  a.h()[k] = h;
  a.a()[k] = pointwise::hardswish(h);
}

// m: u[m] = Σ_f a[f, m] · w_[f].
template <class T>
STOCKMIXER_HD inline void head_u_thread(const StockHeadArgs<T>& a, Index m) {
  double s = 0.0;
  for (Index f = 0; f < a.F; ++f) s += a.a()[f * a.M + m] * static_cast<double>(a.params[a.lay.time_fc2_w + f]);
  a.u()[m] = s;
}

// n: out[n] = (Σ_f y[f, n] · w[f] + b) + (Σ_m W2[n, m] · u[m] + b2[n] · Σ_f w_[f] + b_), rounded once.
template <class T>
STOCKMIXER_HD inline void head_output_thread(const StockHeadArgs<T>& a, Index n) {
  const T* p = a.params;
  double head = static_cast<double>(p[a.lay.time_fc_b]), sum_w2 = 0.0;
  for (Index f = 0; f < a.F; ++f) {
    head += static_cast<double>(a.y[f * a.N + n]) * static_cast<double>(p[a.lay.time_fc_w + f]);
    sum_w2 += static_cast<double>(p[a.lay.time_fc2_w + f]);
  }
  double mix = static_cast<double>(p[a.lay.dense2_b + n]) * sum_w2 + static_cast<double>(p[a.lay.time_fc2_b]);
  for (Index m = 0; m < a.M; ++m) mix += static_cast<double>(p[a.lay.dense2_w + n * a.M + m]) * a.u()[m];
  a.out[n] = static_cast<T>(head + mix);
}

// ---- backward bodies ---------------------------------------------------------------------------------

// i = k·nb + b, k < M + F + 2: over block b's stocks, k < M: Σ d[n] · W2[n, k]; k = M: Σ d[n];
// k = M + 1: Σ b2[n] · d[n]; k = M + 2 + f: Σ y[f, n] · d[n].
template <class T>
STOCKMIXER_HD inline void head_dsums_thread(const StockHeadArgs<T>& a, Index i) {
  const Index k = i / a.nb, b = i % a.nb, M = a.M;
  const T* p = a.params;
  double s = 0.0;
  for (Index n = a.block_begin(b); n < a.block_end(b); ++n) {
    const double d = static_cast<double>(a.dout[n]);
    const double x = k < M       ? static_cast<double>(p[a.lay.dense2_w + n * M + k])
                     : k == M    ? 1.0
                     : k == M + 1 ? static_cast<double>(p[a.lay.dense2_b + n])
                                  : static_cast<double>(a.y[(k - M - 2) * a.N + n]);
    s += d * x;
  }
  a.part()[i] = s;
}

// k < M + F + 2: the total of sum k over the blocks, in block order.
template <class T>
STOCKMIXER_HD inline void head_dsums_total_thread(const StockHeadArgs<T>& a, Index k) {
  double s = 0.0;
  for (Index b = 0; b < a.nb; ++b) s += a.part()[k * a.nb + b];
  a.dsums()[k] = s;
}

// i < M: dh[:, m] and db1[m]; M <= i < M + F: dw[f], dw_[f]; i = M + F: db, db_.
template <class T>
STOCKMIXER_HD inline void head_small_grads_thread(const StockHeadArgs<T>& a, Index i) {
  const Index M = a.M, F = a.F;
  const T* p = a.params;
  const double* v = a.dsums();
  const double sum_d = v[M], sum_b2d = v[M + 1];
  if (i < M) {
    const Index m = i;
    double db = 0.0;
    for (Index f = 0; f < F; ++f) {
      const double dh = static_cast<double>(p[a.lay.time_fc2_w + f]) * v[m] * pointwise::hardswish_grad(a.h()[f * M + m]);
      a.dh()[f * M + m] = dh;
      db += dh;
    }
    a.grads[a.lay.dense1_b + m] += static_cast<T>(db);
  } else if (i < M + F) {
    const Index f = i - M;
    double dw2 = sum_b2d;
    for (Index m = 0; m < M; ++m) dw2 += a.a()[f * M + m] * v[m];
    a.grads[a.lay.time_fc_w + f] += static_cast<T>(v[M + 2 + f]);
    a.grads[a.lay.time_fc2_w + f] += static_cast<T>(dw2);
  } else {
    a.grads[a.lay.time_fc_b] += static_cast<T>(sum_d);
    a.grads[a.lay.time_fc2_b] += static_cast<T>(sum_d);
  }
}

// n: dW2[n, :], db2[n], dW1[:, n], dγ[n], dβ[n] and (when dy is wanted) g[:, n].
template <class T>
STOCKMIXER_HD inline void head_stock_thread(const StockHeadArgs<T>& a, Index n) {
  const Index N = a.N, F = a.F, M = a.M;
  const T* p = a.params;
  T* grads = a.grads;
  const double d = static_cast<double>(a.dout[n]);
  double sum_w2 = 0.0;
  for (Index f = 0; f < F; ++f) sum_w2 += static_cast<double>(p[a.lay.time_fc2_w + f]);
  for (Index m = 0; m < M; ++m) grads[a.lay.dense2_w + n * M + m] += static_cast<T>(d * a.u()[m]);
  grads[a.lay.dense2_b + n] += static_cast<T>(d * sum_w2);
  const double *dh = a.dh(), *xn = a.xn(), *xhat = a.xhat();
  for (Index m = 0; m < M; ++m) {
    double s = 0.0;
    for (Index f = 0; f < F; ++f) s += dh[f * M + m] * xn[f * N + n];
    grads[a.lay.dense1_w + m * N + n] += static_cast<T>(s);
  }
  const double gamma = static_cast<double>(p[a.lay.ln_w + n]);
  double dgamma = 0.0, dbeta = 0.0;
  for (Index f = 0; f < F; ++f) {
    double dxn = 0.0;
    for (Index m = 0; m < M; ++m) dxn += dh[f * M + m] * static_cast<double>(p[a.lay.dense1_w + m * N + n]);
    dgamma += dxn * xhat[f * N + n];
    dbeta += dxn;
    if (a.dy) a.g()[f * N + n] = dxn * gamma;
  }
  grads[a.lay.ln_w + n] += static_cast<T>(dgamma);
  grads[a.lay.ln_b + n] += static_cast<T>(dbeta);
}

// i = k·nb + b, k < 2F: over block b's stocks, Σ g[f, n] (k = 2f) or Σ g[f, n] · x̂[f, n] (k = 2f + 1).
template <class T>
STOCKMIXER_HD inline void head_gsums_thread(const StockHeadArgs<T>& a, Index i) {
  const Index k = i / a.nb, b = i % a.nb, f = k / 2;
  const double *g = a.g() + f * a.N, *xh = a.xhat() + f * a.N;
  double s = 0.0;
  for (Index n = a.block_begin(b); n < a.block_end(b); ++n) s += k % 2 ? g[n] * xh[n] : g[n];
  a.part()[i] = s;
}

// k < 2F: the total of g sum k over the blocks, in block order.
template <class T>
STOCKMIXER_HD inline void head_gsums_total_thread(const StockHeadArgs<T>& a, Index k) {
  double s = 0.0;
  for (Index b = 0; b < a.nb; ++b) s += a.part()[k * a.nb + b];
  a.gsums()[k] = s;
}

// i = f·N + n: dy[f, n] += w[f] · d[n] + rstd_f · (g − mean g − x̂ · mean(g · x̂)).
template <class T>
STOCKMIXER_HD inline void head_dy_thread(const StockHeadArgs<T>& a, Index i) {
  const Index f = i / a.N, n = i % a.N;
  const double mean_g = a.gsums()[2 * f] / static_cast<double>(a.N);
  const double mean_gx = a.gsums()[2 * f + 1] / static_cast<double>(a.N);
  double r;
  pointwise::layernorm_dx(r, a.rstd()[f], a.g()[i], mean_g, a.xhat()[i], mean_gx);
  r = static_cast<double>(a.params[a.lay.time_fc_w + f]) * static_cast<double>(a.dout[n]) + r;
  a.dy[i] += static_cast<T>(r);
}

// ---- the launch sequences ----------------------------------------------------------------------------

#define STOCKMIXER_HEAD_BODY(Name, fn)                                      \
  template <class T>                                                        \
  struct Name {                                                             \
    StockHeadArgs<T> a;                                                     \
    STOCKMIXER_HD void operator()(Index i) const { fn(a, i); }              \
  };
STOCKMIXER_HEAD_BODY(HeadMomentsBody, head_moments_thread)
STOCKMIXER_HEAD_BODY(HeadStatsBody, head_stats_thread)
STOCKMIXER_HEAD_BODY(HeadNormaliseBody, head_normalise_thread)
STOCKMIXER_HEAD_BODY(HeadDense1Body, head_dense1_thread)
STOCKMIXER_HEAD_BODY(HeadActivationBody, head_activation_thread)
STOCKMIXER_HEAD_BODY(HeadUBody, head_u_thread)
STOCKMIXER_HEAD_BODY(HeadOutputBody, head_output_thread)
STOCKMIXER_HEAD_BODY(HeadDsumsBody, head_dsums_thread)
STOCKMIXER_HEAD_BODY(HeadDsumsTotalBody, head_dsums_total_thread)
STOCKMIXER_HEAD_BODY(HeadSmallGradsBody, head_small_grads_thread)
STOCKMIXER_HEAD_BODY(HeadStockBody, head_stock_thread)
STOCKMIXER_HEAD_BODY(HeadGsumsBody, head_gsums_thread)
STOCKMIXER_HEAD_BODY(HeadGsumsTotalBody, head_gsums_total_thread)
STOCKMIXER_HEAD_BODY(HeadDyBody, head_dy_thread)
#undef STOCKMIXER_HEAD_BODY

// out and head from y (a.y, a.out, a.head, a.work set).
template <class T, class Grid>
void stock_head_forward_steps(Grid& grid, const StockHeadArgs<T>& a) {
  grid(a.F * a.nb, HeadMomentsBody<T>{a});
  grid(a.F, HeadStatsBody<T>{a});
  grid(a.F * a.N, HeadNormaliseBody<T>{a});
  grid(a.F * a.M * a.nb, HeadDense1Body<T>{a});
  grid(a.F * a.M, HeadActivationBody<T>{a});
  grid(a.M, HeadUBody<T>{a});
  grid(a.N, HeadOutputBody<T>{a});
}

// grads += the head's parameter gradients, dy += y's gradient when a.dy is set (a.dout, a.y, a.head,
// a.work, a.grads set).
template <class T, class Grid>
void stock_head_backward_steps(Grid& grid, const StockHeadArgs<T>& a) {
  const Index K = a.M + a.F + 2;
  grid(K * a.nb, HeadDsumsBody<T>{a});
  grid(K, HeadDsumsTotalBody<T>{a});
  grid(a.M + a.F + 1, HeadSmallGradsBody<T>{a});
  grid(a.N, HeadStockBody<T>{a});
  if (!a.dy) return;
  grid(2 * a.F * a.nb, HeadGsumsBody<T>{a});
  grid(2 * a.F, HeadGsumsTotalBody<T>{a});
  grid(a.F * a.N, HeadDyBody<T>{a});
}

// ---- the whole model -------------------------------------------------------------------------------

// i < count: p[i] = 0.
template <class T>
struct ZeroBody {
  T* p;
  STOCKMIXER_HD void operator()(Index i) const { p[i] = T(0); }
};

// out [N] from x [N, T, C]: the per-stock block into buffers.y and buffers.acts, then the stock head
// into buffers.head.
template <class T, class Grid>
void model_forward_steps(Grid& grid, T* out, const T* x, const T* params, const ModelDims& d,
                         const ModelBuffers<T>& buffers, bool training) {
  PerStockArgs<T> ps = per_stock_args(d, params);
  ps.x = x, ps.acts = buffers.acts, ps.y = buffers.y, ps.training = training;
  per_stock_forward_steps(grid, ps);
  StockHeadArgs<T> sh = stock_head_args(d, params);
  sh.y = buffers.y, sh.out = out, sh.head = buffers.head, sh.work = buffers.head_work;
  stock_head_forward_steps(grid, sh);
}

// After model_forward_steps(training = true): grads += every parameter's gradient, dx += x's (when not
// null). dy [F, N] lives in buffers.work's first F·N values, zeroed here.
template <class T, class Grid>
void model_backward_steps(Grid& grid, T* grads, T* dx, const T* dout, const T* x, const T* params, const ModelDims& d,
                          const ModelBuffers<T>& buffers) {
  T* dy = buffers.work;
  grid(d.fused() * d.stocks, ZeroBody<T>{dy});
  StockHeadArgs<T> sh = stock_head_args(d, params);
  sh.y = buffers.y, sh.dout = dout, sh.dy = dy, sh.grads = grads, sh.head = buffers.head, sh.work = buffers.head_work;
  stock_head_backward_steps(grid, sh);
  PerStockArgs<T> ps = per_stock_args(d, params);
  ps.x = x, ps.acts = buffers.acts, ps.dy = dy, ps.dx = dx, ps.work = buffers.work, ps.partials = buffers.partials,
  ps.grads = grads;
  per_stock_backward_steps(grid, ps);
}

}  // namespace cuda
}  // namespace stockmixer
