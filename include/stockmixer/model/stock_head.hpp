// stockmixer/model/stock_head.hpp — everything StockMixer does after the per-stock part, fused: the
// stock mixer (NoGraphMixer: LayerNorm over the stocks, dense1, Hardswish, dense2) and both output
// heads, out = time_fc(y) + time_fc_(z). It reads and accumulates into the modules' own parameters
// (nn/, PyTorch's names); its scratch comes from the caller (StockHeadWorkspace, owned by the model).
//
//   shapes    y [F, N] (per_stock.hpp's output: the model's y [N, F] transposed, as the stock mixer
//             reads it) -> out [N] (the model's [N, 1]); M market width
//   forward   x̂[f, n] = (y[f, n] - mean_f) · rstd_f       mean, biased variance over the N stocks, eps 1e-5
//             xn[f, n] = x̂[f, n] · ln_w[n] + ln_b[n]
//             h[f, m]  = Σ_n xn[f, n] · W1[m, n] + b1[m],     a = hardswish(h)
//             z[n, f]  = Σ_m W2[n, m] · a[f, m] + b2[n]
//             out[n]   = Σ_f y[f, n] · w[f] + b  +  Σ_f z[n, f] · w_[f] + b_
//             time_fc_ is linear and reads nothing but z, so z is never formed:
//             Σ_f z[n, f] · w_[f] = Σ_m W2[n, m] · u[m] + b2[n] · Σ_f w_[f],   u[m] = Σ_f a[f, m] · w_[f]
//             (dense2 and time_fc_ cost N·M instead of N·M·F; docs/math/stock_head.md).
//   backward  d = dout [N];  v[m] = Σ_n d[n] · W2[n, m]
//             db += Σ_n d[n],  db_ += Σ_n d[n],  dw[f] += Σ_n y[f, n] · d[n]
//             dw_[f] += Σ_n z[n, f] · d[n] = Σ_m a[f, m] · v[m] + Σ_n b2[n] · d[n]
//             dW2[n, m] += d[n] · u[m],   db2[n] += d[n] · Σ_f w_[f]
//             dh[f, m] = w_[f] · v[m] · hardswish'(h[f, m]),   db1[m] += Σ_f dh[f, m]
//             dW1[m, n] += Σ_f dh[f, m] · xn[f, n]
//             dxn[f, n] = Σ_m dh[f, m] · W1[m, n],  dln_w[n] += Σ_f dxn · x̂,  dln_b[n] += Σ_f dxn
//             g = dxn · ln_w[n]
//             dy[f, n] += w[f] · d[n] + rstd_f · (g[f, n] - mean_n g[f, :] - x̂[f, n] · mean_n (g · x̂)[f, :])
//   saves     (the stash, in double) mean and rstd [F], h and a [F, M], u [M], x̂ and xn [F, Np]
//             (Np: N rounded up to 8), and W1 and ln_w widened to double ([M, Np], [Np]); the
//             backward reads nothing else of the forward (y enters it through x̂).
//
// Why fused: op by op this is two transposes, a LayerNorm over 1026 values, four Eigen GEMMs of
// inner size 20 or 40 (SSE code in a build without -march) and two GEMVs.
// Here every value is computed once, in double, on the [F, N] layout with V stocks as the lanes of
// one vector, and the three products that cost N·M·F (dense1 forward, dW1, dxn) run as register
// tiles of 4 x 4 vectors, in passes compiled per instruction set with vectors
// as wide as its registers (8 doubles for AVX-512, 4 for AVX2, 2 for SSE2: isa.hpp's run_versioned).
//
// Numerics: inputs and weights are read once into double and every result is rounded once; nothing
// is summed in float. Against the op-by-op path (tests/test_model.cpp) it agrees within 1e-12 in
// double and is closer to the exact answer in float.
// Threads: each pass splits its rows (f) or its stocks (blocks of 8) into fixed ranges; every output
// is written by one range and every sum runs in a fixed order, so the results do not depend on the
// thread count.
// Derivation: docs/math/stock_head.md · tests: tests/test_model.cpp · benchmark: benchmarks/bench_kernels.cpp
#pragma once

#include "stockmixer/isa.hpp"
#include "stockmixer/kernels/hardswish.hpp"
#include "stockmixer/kernels/layernorm.hpp"
#include "stockmixer/lanes.hpp"
#include "stockmixer/nn/layers.hpp"
#include "stockmixer/nn/mixers.hpp"
#include "stockmixer/parallel.hpp"
#include "stockmixer/workspace.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>

namespace stockmixer {

// ---- interface -------------------------------------------------------------------------------------

// The block's scratch (it holds nothing between calls).
struct StockHeadWorkspace {
  Scratch<double> scratch;
};

// The doubles the forward keeps for the backward (64-byte aligned memory; about (2·F + M)·N).
Index stock_head_stash_size(Index stocks, Index fused, Index market);

// out [N] from y [F, N] with StockMixer's stock_mixer, time_fc and time_fc_; fills `stash` for the
// backward.
template <class T>
void stock_head_forward(T* out, const T* y, const nn::NoGraphMixer<T>& stock_mixer, const nn::Linear<T>& time_fc,
                        const nn::Linear<T>& time_fc_, Index stocks, Index fused, Index market, double* stash,
                        StockHeadWorkspace& workspace);

// Accumulates the gradient of every parameter of stock_mixer, time_fc and time_fc_ and, when dy is not
// null, the gradient of y, [F, N] like y. `stash`: the forward's (it holds all the backward reads of y).
template <class T>
void stock_head_backward(T* dy, const T* dout, const nn::NoGraphMixer<T>& stock_mixer, const nn::Linear<T>& time_fc,
                         const nn::Linear<T>& time_fc_, Index stocks, Index fused, Index market, const double* stash,
                         StockHeadWorkspace& workspace);

// ---- implementation --------------------------------------------------------------------------------

namespace detail::stock_head {

using namespace lanes;
constexpr Index kPad = 8;  // rows of stocks padded to a multiple of 8: whole vectors at every width
constexpr double kEps = 1e-5;

inline Index padded(Index n) { return (n + kPad - 1) / kPad * kPad; }
inline Index aligned8(Index n) { return (n + 7) / 8 * 8; }  // 64-byte offsets into the stash

// Where each saved array lives in the stash (x̂, xn, w1 and ln_w start on 64-byte boundaries).
struct Saved {
  double *mean, *rstd, *h, *a, *u, *xhat, *xn, *w1, *ln_w;
  Saved(double* p, Index N, Index F, Index M) {
    mean = p;
    rstd = mean + F;
    h = rstd + F;
    a = h + F * M;
    u = a + F * M;
    xhat = p + aligned8(2 * F + 2 * F * M + M);
    xn = xhat + F * padded(N);
    w1 = xn + F * padded(N);
    ln_w = w1 + M * padded(N);
  }
  static Index size(Index N, Index F, Index M) {
    return aligned8(2 * F + 2 * F * M + M) + (2 * F + M + 1) * padded(N);
  }
};

// Rows [r0, r1) of a [R, N] matrix of T into a padded [R, Np] one of double (pads zero).
template <class T>
void widen_rows(double* out, const T* in, Index N, Index r0, Index r1) {
  const Index Np = padded(N);
  for (Index r = r0; r < r1; ++r) {
    for (Index n = 0; n < N; ++n) out[r * Np + n] = static_cast<double>(in[r * N + n]);
    for (Index n = N; n < Np; ++n) out[r * Np + n] = 0.0;
  }
}

// ---- every pass on vectors of V doubles (V stocks): V follows the instruction set the pass is compiled
// for (8 for AVX-512, 4 for AVX2, 2 for SSE2), so that a vector is one register (a wider one lives in
// memory, and each operation loads and stores). Rows stay padded to 8 at every V.
template <int V>
struct Kernel {
typedef typename LaneType<double, V>::type Doubles;

static STOCKMIXER_LANE_INLINE const Doubles& at(const double* p) { return *reinterpret_cast<const Doubles*>(p); }
static STOCKMIXER_LANE_INLINE Doubles& at(double* p) { return *reinterpret_cast<Doubles*>(p); }

// The V lanes added in a fixed order: halves added lane by lane until one is left.
static STOCKMIXER_LANE_INLINE double add_lanes(const Doubles& v) {
  double a[V];
  for (int l = 0; l < V; ++l) a[l] = v[l];
  for (int half = V / 2; half > 0; half /= 2)
    for (int l = 0; l < half; ++l) a[l] += a[l + half];
  return a[0];
}

// Σ_n x[n] and Σ_n x[n] · y[n] over one padded row of Np values: two interleaved vector sums (a
// single one would wait on each addition), added in a fixed order.
static STOCKMIXER_LANE_INLINE double row_sum(const double* x, Index Np) {
  Doubles s[2] = {};
  Index n = 0;
  for (; n + 2 * V <= Np; n += 2 * V) {
    s[0] += at(x + n);
    s[1] += at(x + n + V);
  }
  if (n < Np) s[0] += at(x + n);
  return add_lanes(s[0] + s[1]);
}
static STOCKMIXER_LANE_INLINE double row_dot(const double* x, const double* y, Index Np) {
  Doubles s[2] = {};
  Index n = 0;
  for (; n + 2 * V <= Np; n += 2 * V) {
    s[0] += at(x + n) * at(y + n);
    s[1] += at(x + n + V) * at(y + n + V);
  }
  if (n < Np) s[0] += at(x + n) * at(y + n);
  return add_lanes(s[0] + s[1]);
}

// Register tiles. dot_tile: acc[i][j] = Σ_k a[i·lda + k] · b[j·ldb + k] over K (a multiple of 8)
// values, lane by lane (add_lanes finishes the sum). axpy_tile: acc[i][j] = Σ_k s(i, k) · b[k·ldb + V·j],
// a scalar times a vector of V stocks.
template <int BI, int BJ>
static STOCKMIXER_LANE_INLINE void dot_tile(Doubles (&acc)[BI][BJ], const double* a, Index lda, const double* b,
                                            Index ldb, Index K) {
  for (int i = 0; i < BI; ++i)
    for (int j = 0; j < BJ; ++j) acc[i][j] = Doubles{};
  for (Index k = 0; k < K; k += V) {
    Doubles av[BI], bv[BJ];
    for (int i = 0; i < BI; ++i) av[i] = at(a + i * lda + k);
    for (int j = 0; j < BJ; ++j) bv[j] = at(b + j * ldb + k);
    for (int i = 0; i < BI; ++i)
      for (int j = 0; j < BJ; ++j) acc[i][j] += av[i] * bv[j];
  }
}
template <int BI, int BJ>
static STOCKMIXER_LANE_INLINE void axpy_tile(Doubles (&acc)[BI][BJ], const double* s, Index si, Index sk,
                                             const double* b, Index ldb, Index K) {
  for (int i = 0; i < BI; ++i)
    for (int j = 0; j < BJ; ++j) acc[i][j] = Doubles{};
  for (Index k = 0; k < K; ++k) {
    Doubles bv[BJ];
    for (int j = 0; j < BJ; ++j) bv[j] = at(b + k * ldb + j * V);
    for (int i = 0; i < BI; ++i) {
      const double c = s[i * si + k * sk];
      for (int j = 0; j < BJ; ++j) acc[i][j] += c * bv[j];
    }
  }
}

// ---- the passes, each over a range of rows f or of stock vectors; compiled per instruction set --

// V consecutive values from p (any alignment) in double.
template <class T>
static STOCKMIXER_LANE_INLINE void widen(Doubles& v, const T* p) {
  for (int l = 0; l < V; ++l) v[l] = static_cast<double>(p[l]);
}

// out = Σ_l of `count` values p[l · stride] as lanes (the rest zero): a column of a row-major [N, ·] array.
template <class T>
static STOCKMIXER_LANE_INLINE void load_column(Doubles& out, const T* p, Index stride, Index count) {
  out = Doubles{};
  for (Index l = 0; l < count; ++l) out[l] = static_cast<double>(p[l * stride]);
}
// p[l] += v[l] for the first `count` lanes (all eight: one vector operation).
template <class T>
static STOCKMIXER_LANE_INLINE void add_row(T* p, const Doubles& v, Index count) {
  if (count == V)
    for (Index l = 0; l < V; ++l) p[l] += static_cast<T>(v[l]);
  else
    for (Index l = 0; l < count; ++l) p[l] += static_cast<T>(v[l]);
}

// p[l] += v[l] for all V lanes, with one vector load and store of p (add_row's lane loop reads p one
// value at a time where the compiler cannot prove the V values contiguous; the dW1 tiles keep add_row).
template <class T>
static STOCKMIXER_LANE_INLINE void add_vector(T* p, const Doubles& v) {
  Lanes<T, V> sum;
  for (int l = 0; l < V; ++l) sum[l] = static_cast<T>(v[l]);
  *rows<V>(p) += sum;
}

// x̂ and xn for rows [f0, f1) of y, with mean and rstd. ln_w and ln_b are widened to Np (pads zero),
// so xn's pads are zero; x̂'s are set back to zero after centring.
template <class T>
static void normalise_rows(const Saved& s, const T* y, const double* ln_w, const double* ln_b, Index N, Index f0,
                           Index f1) {
  const Index Np = padded(N);
  for (Index f = f0; f < f1; ++f) {
    double* xh = s.xhat + f * Np;
    double* xn = s.xn + f * Np;
    if constexpr (std::is_same_v<T, float>) {
      // float: Σy and Σy² in one pass, in double (the per-stock kernel's argument, docs/math/
      // per_stock.md: 24-bit inputs in 53-bit sums), then x̂ and xn in one more; y is read as vectors
      // and widened on the way, never copied. (double, the reference, keeps the two passes below.)
      const T* yf = y + f * N;
      Doubles sum[2] = {}, sq[2] = {};
      Index n = 0;
      for (; n + 2 * V <= N; n += 2 * V)
        for (int u = 0; u < 2; ++u) {
          Doubles v;
          widen(v, yf + n + u * V);
          sum[u] += v;
          sq[u] += v * v;
        }
      double total = add_lanes(sum[0] + sum[1]), squares = add_lanes(sq[0] + sq[1]);
      for (; n < N; ++n) {
        const double v = static_cast<double>(yf[n]);
        total += v;
        squares += v * v;
      }
      double mean, var;
      layernorm_moments(mean, var, total, squares, static_cast<double>(N));
      const double rstd = 1.0 / std::sqrt(var + kEps);
      for (n = 0; n + V <= N; n += V) {
        Doubles x;
        widen(x, yf + n);
        x = (x - mean) * rstd;
        at(xh + n) = x;
        at(xn + n) = x * at(ln_w + n) + at(ln_b + n);
      }
      for (; n < N; ++n) {
        xh[n] = (static_cast<double>(yf[n]) - mean) * rstd;
        xn[n] = xh[n] * ln_w[n] + ln_b[n];
      }
      for (; n < Np; ++n) xh[n] = xn[n] = 0.0;
      s.mean[f] = mean;
      s.rstd[f] = rstd;
      continue;
    }
    for (Index n = 0; n < N; ++n) xh[n] = static_cast<double>(y[f * N + n]);
    for (Index n = N; n < Np; ++n) xh[n] = 0.0;
    const double mean = row_sum(xh, Np) / static_cast<double>(N);
    for (Index n = 0; n < Np; n += V) at(xh + n) -= mean;
    for (Index n = N; n < Np; ++n) xh[n] = 0.0;
    const double rstd = 1.0 / std::sqrt(row_dot(xh, xh, Np) / static_cast<double>(N) + kEps);
    for (Index n = 0; n < Np; n += V) {
      at(xh + n) *= rstd;
      at(xn + n) = at(xh + n) * at(ln_w + n) + at(ln_b + n);
    }
    s.mean[f] = mean;
    s.rstd[f] = rstd;
  }
}

// h and a for rows [f, f + BF) and columns [m, m + BM).
template <int BF, int BM, class T>
static STOCKMIXER_LANE_INLINE void dense1_tile(const Saved& s, const double* w1, const T* b1, Index Np, Index M,
                                               Index f, Index m) {
  Doubles acc[BF][BM];
  dot_tile(acc, s.xn + f * Np, Np, w1 + m * Np, Np, Np);
  for (int i = 0; i < BF; ++i)
    for (int j = 0; j < BM; ++j) {
      const double h = add_lanes(acc[i][j]) + static_cast<double>(b1[m + j]);
      s.h[(f + i) * M + m + j] = h;
      s.a[(f + i) * M + m + j] = hardswish(h);
    }
}
template <int BF, class T>
static STOCKMIXER_LANE_INLINE void dense1_block(const Saved& s, const double* w1, const T* b1, Index Np, Index M,
                                                Index f) {
  Index m = 0;
  for (; m + 4 <= M; m += 4) dense1_tile<BF, 4>(s, w1, b1, Np, M, f, m);
  for (; m < M; ++m) dense1_tile<BF, 1>(s, w1, b1, Np, M, f, m);
}

// h = xn · W1ᵀ + b1 and a = hardswish(h) for rows [f0, f1), in tiles of 4 rows x 4 columns.
template <class T>
static void dense1_rows(Saved s, const double* w1, const T* b1, Index N, Index M, Index f0, Index f1) {
  const Index Np = padded(N);
  Index f = f0;
  for (; f + 4 <= f1; f += 4) dense1_block<4>(s, w1, b1, Np, M, f);
  for (; f < f1; ++f) dense1_block<1>(s, w1, b1, Np, M, f);
}

// out for stocks [8·b0, 8·b1) (blocks of kPad). Σ_f y[f, n] · w[f] is read from x̂ (y = x̂ / rstd + mean):
// Σ_f (w[f] / rstd_f) · x̂[f, n] + Σ_f w[f] · mean_f, with cw[f] = w[f] / rstd_f and base holding the
// constant terms.
template <class T>
static void output_stocks(T* out, const Saved s, const double* cw, const T* w2, const T* b2, double base, double sum_w2,
                          Index N, Index F, Index M, Index b0, Index b1) {
  const Index Np = padded(N);
  for (Index v = b0 * kPad / V; v < b1 * kPad / V; ++v) {
    const Index n0 = v * V, count = std::min<Index>(V, N - n0);
    Doubles head = {}, mix = {}, col, bias;
    for (Index f = 0; f < F; ++f) head += cw[f] * at(s.xhat + f * Np + n0);
    for (Index m = 0; m < M; ++m) {
      load_column(col, w2 + n0 * M + m, M, count);
      mix += col * s.u[m];
    }
    load_column(bias, b2 + n0, 1, count);
    const Doubles o = base + head + (mix + bias * sum_w2);
    for (Index l = 0; l < count; ++l) out[n0 + l] = static_cast<T>(o[l]);
  }
}

// dW1[m, n] += Σ_f dh[f, m] · xn[f, n] for rows [m, m + BM) and BJ vectors of stocks from n0.
template <int BM, int BJ, class T>
static STOCKMIXER_LANE_INLINE void dw1_tile(T* dw1, const Saved& s, const double* dh, Index N, Index F, Index M,
                                            Index m, Index n0) {
  const Index Np = padded(N);
  Doubles acc[BM][BJ];
  axpy_tile(acc, dh + m, 1, M, s.xn + n0, Np, F);
  for (int i = 0; i < BM; ++i)
    for (int j = 0; j < BJ; ++j) {
      const Index n = n0 + j * V;
      if (n < N) add_row(dw1 + (m + i) * N + n, acc[i][j], std::min<Index>(V, N - n));
    }
}

// dxn[f, n] = Σ_m dh[f, m] · W1[m, n] for rows [f, f + BF) and BJ vectors of stocks from n0: adds
// Σ_f dxn · x̂ and Σ_f dxn into dgamma and dbeta, and stores g = dxn · ln_w into G (when not null).
template <int BF, int BJ>
static STOCKMIXER_LANE_INLINE void dxn_tile(Doubles (&dgamma)[BJ], Doubles (&dbeta)[BJ], double* G, const Saved& s,
                                            const double* w1, const double* ln_w, const double* dh, Index Np, Index M,
                                            Index f, Index n0) {
  Doubles acc[BF][BJ];
  axpy_tile(acc, dh + f * M, M, 1, w1 + n0, Np, M);
  for (int i = 0; i < BF; ++i)
    for (int j = 0; j < BJ; ++j) {
      dgamma[j] += acc[i][j] * at(s.xhat + (f + i) * Np + n0 + j * V);
      dbeta[j] += acc[i][j];
      if (G) at(G + (f + i) * Np + n0 + j * V) = acc[i][j] * at(ln_w + n0 + j * V);
    }
}

// Everything the backward does for BJ vectors of stocks from n0 (into the gradients of dense1's weight and
// the stock LayerNorm's parameters).
template <int BJ, class T>
static STOCKMIXER_LANE_INLINE void backward_block(double* G, const nn::NoGraphMixer<T>& grad, const Saved& s,
                                                  const double* w1, const double* ln_w, const double* dh, Index N,
                                                  Index F, Index M, Index n0) {
  const Index Np = padded(N);
  Index m = 0;
  T* dw1 = grad.dense1.weight.grad();
  for (; m + 4 <= M; m += 4) dw1_tile<4, BJ>(dw1, s, dh, N, F, M, m, n0);
  for (; m < M; ++m) dw1_tile<1, BJ>(dw1, s, dh, N, F, M, m, n0);
  Doubles dgamma[BJ] = {}, dbeta[BJ] = {};
  Index f = 0;
  for (; f + 4 <= F; f += 4) dxn_tile<4, BJ>(dgamma, dbeta, G, s, w1, ln_w, dh, Np, M, f, n0);
  for (; f < F; ++f) dxn_tile<1, BJ>(dgamma, dbeta, G, s, w1, ln_w, dh, Np, M, f, n0);
  for (int j = 0; j < BJ; ++j) {
    const Index n = n0 + j * V;
    if (n >= N) continue;
    add_row(grad.layer_norm_stock.weight.grad() + n, dgamma[j], std::min<Index>(V, N - n));
    add_row(grad.layer_norm_stock.bias.grad() + n, dbeta[j], std::min<Index>(V, N - n));
  }
}

// For stocks [8·b0, 8·b1) (blocks of kPad): dW1, and dxn -> dln_w, dln_b and g (into G, when not null), in tiles of
// 4 x 4 vectors.
template <class T>
static void backward_stocks(double* G, const nn::NoGraphMixer<T>& grad, const Saved s, const double* w1,
                            const double* ln_w, const double* dh, Index N, Index F, Index M, Index b0, Index b1) {
  const Index v1 = b1 * kPad / V;
  Index v = b0 * kPad / V;
  for (; v + 4 <= v1; v += 4) backward_block<4>(G, grad, s, w1, ln_w, dh, N, F, M, v * V);
  for (; v < v1; ++v) backward_block<1>(G, grad, s, w1, ln_w, dh, N, F, M, v * V);
}

// dy for rows [f0, f1), after the row means of g and g·x̂; d is dout widened to Np.
template <class T>
static void dy_rows(T* dy, const double* d, const T* fc_w, const Saved& s, const double* G, Index N, Index f0,
                    Index f1) {
  const Index Np = padded(N);
  for (Index f = f0; f < f1; ++f) {
    const double* g = G + f * Np;
    const double* xh = s.xhat + f * Np;
    const double mean_g = row_sum(g, Np) / static_cast<double>(N);
    const double mean_gx = row_dot(g, xh, Np) / static_cast<double>(N);
    const double w = static_cast<double>(fc_w[f]), rstd = s.rstd[f];
    for (Index n = 0; n < N; n += V) {
      Doubles r;
#if defined(__clang__)  // values, not Doubles references, into the deduced formula (lanes.hpp, Reg)
      Reg<double, V> dx;
      layernorm_dx(dx, rstd, Reg<double, V>(at(g + n)), mean_g, Reg<double, V>(at(xh + n)), mean_gx);
      r = dx;
#else
      layernorm_dx(r, rstd, at(g + n), mean_g, at(xh + n), mean_gx);
#endif
      r = w * at(d + n) + r;
      if (N - n >= V) add_vector(dy + f * N + n, r);  // one vector load and store where the row is whole
      else add_row(dy + f * N + n, r, N - n);
    }
  }
}

// dense2's gradients for stocks [n0, n1) (dW2[n, m] += d[n] · u[m], db2[n] += d[n] · Σ_f w_[f]) and the
// chunk's partial sums into part: v [M] (Σ_n d[n] · W2[n, m]), Σ_n d[n], Σ_n b2[n] · d[n]. Columns m
// in vectors of V, up to four at once so that their sums over n overlap; the last columns (fewer than
// V) lane by lane, together. Every sum runs over n in order.
template <class T>
static void dense2_stocks(double* part, T* dw2, T* db2, const T* w2, const T* b2, const double* d, const double* u,
                          double sum_w2, Index M, Index n0, Index n1) {
  constexpr int kVectors = 4;
  Index m0 = 0;
  for (; m0 + V <= M; m0 += kVectors * V) {
    const int nv = static_cast<int>(std::min<Index>(kVectors, (M - m0) / V));
    Doubles acc[kVectors] = {}, um[kVectors];
    for (int j = 0; j < nv; ++j) widen(um[j], u + m0 + j * V);
    for (Index n = n0; n < n1; ++n)
      for (int j = 0; j < nv; ++j) {
        const Index at_nm = n * M + m0 + j * V;
        Doubles x;
        widen(x, w2 + at_nm);
        acc[j] += d[n] * x;
        add_vector(dw2 + at_nm, d[n] * um[j]);
      }
    for (int j = 0; j < nv; ++j)
      for (int l = 0; l < V; ++l) part[m0 + j * V + l] = acc[j][l];
    if (nv < kVectors) {
      m0 += nv * V;
      break;
    }
  }
  if (m0 < M) {  // the last M - m0 < V columns
    double acc[V] = {};
    const Index rest = M - m0;
    for (Index n = n0; n < n1; ++n)
      for (Index j = 0; j < rest; ++j) {
        acc[j] += d[n] * static_cast<double>(w2[n * M + m0 + j]);
        dw2[n * M + m0 + j] += static_cast<T>(d[n] * u[m0 + j]);
      }
    for (Index j = 0; j < rest; ++j) part[m0 + j] = acc[j];
  }
  double sum_d = 0.0, sum_b2d = 0.0;
  for (Index n = n0; n < n1; ++n) {
    sum_d += d[n];
    sum_b2d += static_cast<double>(b2[n]) * d[n];
    db2[n] += static_cast<T>(d[n] * sum_w2);
  }
  part[M] = sum_d;
  part[M + 1] = sum_b2d;
}
};  // struct Kernel

// f(Kernel<V>{}) compiled for the instruction set kernel_isa() picks, V the doubles of one of its
// registers (isa.hpp's run_versioned, W floats = 2V doubles).
template <class F>
void versioned(Isa isa, F&& f) {
  run_versioned(isa, [&](auto width) { f(Kernel<decltype(width)::value / 2>{}); });
}

// The dense2 pass's chunks of stocks (kernel: Kernel::dense2_stocks): about kChunkStocks each, at most
// kChunks, sizes as equal as floor division makes them (two threads get equal shares).
constexpr Index kChunks = 8;
constexpr Index kChunkStocks = 256;

}  // namespace detail::stock_head

inline Index stock_head_stash_size(Index stocks, Index fused, Index market) {
  return detail::stock_head::Saved::size(stocks, fused, market);
}

template <class T>
void stock_head_forward(T* out, const T* y, const nn::NoGraphMixer<T>& stock_mixer, const nn::Linear<T>& time_fc,
                        const nn::Linear<T>& time_fc_, Index stocks, Index fused, Index market, double* stash,
                        StockHeadWorkspace& workspace) {
  using namespace detail::stock_head;
  const Index N = stocks, F = fused, M = market, Np = padded(N), blocks = Np / kPad;
  const Saved s(stash, N, F, M);
  const Isa isa = kernel_isa();
  const nn::Linear<T>&dense1 = stock_mixer.dense1, &dense2 = stock_mixer.dense2;
  const nn::LayerNorm<T>& ln = stock_mixer.layer_norm_stock;
  const T *fc_w = time_fc.weight.value(), *fc2_w = time_fc_.weight.value();
  // W1 and ln_w widened into the stash (the backward reads them too); scratch: ln_b widened, cw.
  double* ln_b = workspace.scratch.get(Np + F);
  double* cw = ln_b + Np;
  parallel_for(M, 4, [&](Index m0, Index m1) { widen_rows(s.w1, dense1.weight.value(), N, m0, m1); });
  widen_rows(s.ln_w, ln.weight.value(), N, 0, 1);
  widen_rows(ln_b, ln.bias.value(), N, 0, 1);
  parallel_for(F, 4, [&](Index f0, Index f1) {  // each range normalises its rows, then multiplies them
    versioned(isa, [&](auto k) {
      k.normalise_rows(s, y, s.ln_w, ln_b, N, f0, f1);
      k.dense1_rows(s, s.w1, dense1.bias.value(), N, M, f0, f1);
    });
  });
  double sum_w2 = 0.0, base = static_cast<double>(time_fc.bias.value()[0]) + static_cast<double>(time_fc_.bias.value()[0]);
  for (Index f = 0; f < F; ++f) {
    sum_w2 += static_cast<double>(fc2_w[f]);
    base += static_cast<double>(fc_w[f]) * s.mean[f];
    cw[f] = static_cast<double>(fc_w[f]) / s.rstd[f];
  }
  for (Index m = 0; m < M; ++m) {
    double u = 0.0;
    for (Index f = 0; f < F; ++f) u += s.a[f * M + m] * static_cast<double>(fc2_w[f]);
    s.u[m] = u;
  }
  parallel_for_even(blocks, 8, [&](Index, Index b0, Index b1) {
    versioned(isa, [&](auto k) {
      k.output_stocks(out, s, cw, dense2.weight.value(), dense2.bias.value(), base, sum_w2, N, F, M, b0, b1);
    });
  });
}

template <class T>
void stock_head_backward(T* dy, const T* dout, const nn::NoGraphMixer<T>& stock_mixer, const nn::Linear<T>& time_fc,
                         const nn::Linear<T>& time_fc_, Index stocks, Index fused, Index market, const double* stash,
                         StockHeadWorkspace& workspace) {
  using namespace detail::stock_head;
  const Index N = stocks, F = fused, M = market, Np = padded(N), blocks = Np / kPad;
  const Saved s(const_cast<double*>(stash), N, F, M);  // read only
  const Isa isa = kernel_isa();
  const nn::Linear<T>&dense1 = stock_mixer.dense1, &dense2 = stock_mixer.dense2;
  const T* fc2_w = time_fc_.weight.value();
  // Scratch: dout widened to Np, g [F, Np], then v, dh and the dense2 pass's partial sums.
  const Index chunks = std::clamp<Index>(N / kChunkStocks, 1, kChunks);
  double* d = workspace.scratch.get(Np + F * Np + M + F * M + chunks * (M + 2));
  double *G = d + Np, *v = G + F * Np, *dh = v + M, *part = dh + F * M;
  widen_rows(d, dout, N, 0, 1);

  // The heads and dense2: O(N·(F + M)), by fixed chunks of stocks whose partial sums
  // (v [M], Σ d, Σ b2·d) are then added in chunk order.
  double sum_w2 = 0.0;
  for (Index f = 0; f < F; ++f) sum_w2 += static_cast<double>(fc2_w[f]);
  parallel_for_even(N, chunks, [&](Index c, Index n0, Index n1) {
    versioned(isa, [&](auto k) {
      k.dense2_stocks(part + c * (M + 2), dense2.weight.grad(), dense2.bias.grad(), dense2.weight.value(),
                      dense2.bias.value(), d, s.u, sum_w2, M, n0, n1);
    });
  });
  double sum_d = 0.0, sum_b2d = 0.0;
  std::fill(v, v + M, 0.0);
  for (Index c = 0; c < chunks; ++c) {
    const double* pc = part + c * (M + 2);
    for (Index m = 0; m < M; ++m) v[m] += pc[m];
    sum_d += pc[M];
    sum_b2d += pc[M + 1];
  }
  time_fc.bias.grad()[0] += static_cast<T>(sum_d);
  time_fc_.bias.grad()[0] += static_cast<T>(sum_d);
  versioned(isa, [&](auto k) {
    for (Index f = 0; f < F; ++f) {  // Σ_n y[f, n] · d[n] = Σ_n x̂[f, n] · d[n] / rstd_f + mean_f · Σ_n d[n]
      double dw2 = sum_b2d;
      for (Index m = 0; m < M; ++m) dw2 += s.a[f * M + m] * v[m];
      time_fc.weight.grad()[f] += static_cast<T>(k.row_dot(s.xhat + f * Np, d, Np) / s.rstd[f] + s.mean[f] * sum_d);
      time_fc_.weight.grad()[f] += static_cast<T>(dw2);
    }
  });
  // Hardswish and dense1's bias.
  for (Index f = 0; f < F; ++f)
    for (Index m = 0; m < M; ++m)
      dh[f * M + m] = static_cast<double>(fc2_w[f]) * v[m] * hardswish_grad(s.h[f * M + m]);
  for (Index m = 0; m < M; ++m) {
    double db = 0.0;
    for (Index f = 0; f < F; ++f) db += dh[f * M + m];
    dense1.bias.grad()[m] += static_cast<T>(db);
  }
  // dense1's weight, the LayerNorm's parameters and g: O(N·M·F), by blocks of stocks.
  double* g = dy ? G : nullptr;
  parallel_for_even(blocks, 8, [&](Index, Index b0, Index b1) {
    versioned(isa, [&](auto k) { k.backward_stocks(g, stock_mixer, s, s.w1, s.ln_w, dh, N, F, M, b0, b1); });
  });
  if (!dy) return;
  parallel_for(F, 4, [&](Index f0, Index f1) {
    versioned(isa, [&](auto k) { k.dy_rows(dy, d, time_fc.weight.value(), s, G, N, f0, f1); });
  });
}

}  // namespace stockmixer
