// stockmixer/model/per_stock.hpp — everything StockMixer does to one stock before the stock mixer,
// fused: conv, both Mixer2dTriU blocks, the concatenation and channel_fc, for 16 stocks at a time.
// It reads and accumulates into the modules' own parameters (nn/, PyTorch's names); its scratch
// comes from the caller (PerStockWorkspace, owned by the model).
//
//   shapes    x [N, T, C] -> y [F, N], F = 2T + S, S = T / 2: model.hpp's `y` transposed, the layout
//             the stock mixer works in (stock_head.hpp reads it; rows of stocks are contiguous)
//   forward   v = Conv1d(C, C, 2, stride 2)(x)                       [S, C] per stock
//             h = [x, Mixer2dTriU(T, C)(x), Mixer2dTriU(S, C)(v)]     [F, C] (concatenated in time)
//             y = h · fc_w^T + fc_b                                   [F]
//             with Mixer2dTriU(L, C)(u) = x2 + Linear(GELU(Linear(x2))),
//                  x2 = LN_2(TriU(LN_1(u)) + u), LayerNorms over [L, C] jointly.
//   backward  the chain rule through the same steps, each step's rule as in its own kernel
//             (docs/math/conv1d.md, layernorm.md, triu.md, linear.md, gelu.md); docs/math/per_stock.md
//             gives the order and what flows where. Parameter gradients accumulate (+=), dx too.
//   saves     with a stash, each group's activations (2.4 KB per stock at T = 16, C = 5); without,
//             nothing: the backward then recomputes each group's forward (in cache) from x.
//
// Why fused: every op here is tiny per stock (5 x 5 Linears, 16 x 16 triangles, LayerNorms of 80
// values), so op by op the time goes to passes over N·T·C-sized buffers, GEMM packing and the tape.
// Here stocks are SIMD lanes: each group holds 16 stocks in [rows][16] arrays, every row is one
// vector (lanes.hpp), every step is a loop over rows, and the weights are scalars broadcast across
// lanes. Parameter gradients accumulate per lane (in lane accumulators laid out as the parameter store
// is), are added over lanes in double at the end of a chunk of groups, and the chunks' sums are added
// in chunk order.
//
// Numerics follow the op-by-op kernels: LayerNorm statistics and its backward's row sums in double,
// GELU with the same algorithms as gelu.hpp's packets (Eigen's float erf and exp) on the lane vectors
// (the derivative shares erf's square, and exp rounds its exponent by a shift). The op-by-op path is
// the reference this kernel is tested against (tests/test_model.cpp: equal within 1e-12 in double;
// finite differences).
// Threads: groups of 16 stocks for y and dx; parameter gradients by fixed chunks of groups (at most
// kMaxChunks, boundaries set by N alone), so results do not depend on the thread count.
// Derivation: docs/math/per_stock.md · tests: tests/test_model.cpp · benchmark: benchmarks/bench_kernels.cpp
#pragma once

#include "stockmixer/isa.hpp"
#include "stockmixer/kernels/gelu.hpp"
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

// The block's scratch: one group buffer per thread, and the backward's partial sums per chunk.
template <class T>
struct PerStockWorkspace {
  PerThread<T> groups;
  Scratch<double> partials;
};

// The forward, x [N, T, C] -> y [F, N], with StockMixer's conv, mixer and channel_fc. With a stash
// (per_stock_stash_size values, or null) it also keeps there what the backward reads, so that the
// backward need not recompute it.
template <class T>
void per_stock_forward(T* y, const T* x, const nn::Conv1d<T>& conv, const nn::MultTime2dMixer<T>& mixer,
                       const nn::Linear<T>& channel_fc, Index stocks, Index steps, Index channels, T* stash,
                       PerStockWorkspace<T>& workspace);
template <class T>
Index per_stock_stash_size(Index stocks, Index steps, Index channels);

// From dy [F, N]: accumulates the gradient of every parameter of conv, mixer and channel_fc and, when
// dx is not null, the input gradient. `stash`: the forward's, or null to recompute each group's
// forward (the same values, bit for bit).
template <class T>
void per_stock_backward(T* dx, const T* dy, const T* x, const nn::Conv1d<T>& conv, const nn::MultTime2dMixer<T>& mixer,
                        const nn::Linear<T>& channel_fc, Index stocks, Index steps, Index channels, T* stash,
                        PerStockWorkspace<T>& workspace);

// ---- implementation --------------------------------------------------------------------------------

namespace detail::per_stock {

using namespace lanes;
constexpr Index kMaxChunks = 32;      // parameter-gradient chunks (their partial sums are kept)
constexpr Index kGroupsPerChunk = 16;  // groups a chunk aims at

// The modules the block reads, StockMixer's own.
template <class T>
struct Modules {
  const nn::Conv1d<T>& conv;
  const nn::MultTime2dMixer<T>& mixer;
  const nn::Linear<T>& channel_fc;
};

// Calls f(p) for each parameter tensor the block reads (module tensors: TriU's whole [L, L] weight).
template <class T, class F>
void for_each_parameter(const Modules<T>& w, F&& f) {
  for (const nn::Mixer2dTriU<T>* m : {&w.mixer.mix_layer, &w.mixer.scale_mix_layer})
    for (const Parameter<T>* p : {&m->LN_1.weight, &m->LN_1.bias, &m->LN_2.weight, &m->LN_2.bias, &m->timeMixer.weight,
                                  &m->timeMixer.bias, &m->channelMixer.dense_1.weight, &m->channelMixer.dense_1.bias,
                                  &m->channelMixer.dense_2.weight, &m->channelMixer.dense_2.bias})
      f(*p);
  f(w.channel_fc.weight);
  f(w.channel_fc.bias);
  f(w.conv.weight);
  f(w.conv.bias);
}

// The span of the parameter store those tensors lie in, [first, first + size): the block's lane
// accumulators and partial sums are laid out as the store is, so a tensor's lanes are found from its
// offset. (Tensors of other modules inside the span, time_fc's in StockMixer, keep zero lanes.)
struct StoreSpan {
  Index first = 0, size = 0;
};
template <class T>
StoreSpan parameter_span(const Modules<T>& w) {
  Index first = -1, end = 0;
  for_each_parameter(w, [&](const Parameter<T>& p) {
    first = first < 0 ? p.offset() : std::min(first, p.offset());
    end = std::max(end, p.offset() + p.size());
  });
  return {first, end - first};
}

// The channel steps take the channel count C both at run time and, as CC, at compile time (CC = 0:
// not known). Where outputs of several channels are accumulated at once they are held in a block of
// up to kBlock(CC) registers, so that independent multiply-adds interleave instead of waiting on one
// another: with CC = 5 (StockMixer's C) the block is exactly the five channels, unrolled.
template <int CC>
constexpr Index kBlock = CC > 0 ? CC : 8;
template <int CC>
Index channels(Index c) {
  return CC > 0 ? CC : c;
}

// What one Mixer2dTriU(L, C) keeps for its backward, each [L, C][lanes] (rstd: [lanes]). h is the
// channel MixerBlock's hidden layer before GELU, or after a forward for training GELU's derivative there.
template <class T>
struct MixerActs {
  T *xhat1, *a1, *xhat2, *x2, *h, *g, *out, *rstd1, *rstd2;
};

// ---- every step on groups of W stocks: each buffer is [rows][W] (lanes.hpp), row-major in the
// per-stock layout, each row one vector of W lanes. W follows the instruction set the code is compiled
// for (16 floats for AVX-512, 8 for AVX2, 4 for SSE2): a row must be one register, or GCC keeps every
// vector temporary in memory and each operation loads and stores.
template <int W>
struct Kernel {

// Sums in double run on half rows of H = W/2 lanes (Doubles: as wide as a row of floats, one
// register), where a W-double vector would take two.
static constexpr int H = W / 2;
typedef typename LaneType<double, H>::type Doubles;
template <class T>
using Lanes = lanes::Lanes<T, W>;
template <class P>
static auto rows(P* p) {
  return lanes::rows<W>(p);
}
// K sums Σ_j over j < D of half rows, in one pass over the rows: add(j, acc) adds row j's K terms
// into acc[0, K). Four interleaved partial sums each (independent additions overlap instead of
// waiting on one another), added in a fixed order.
template <int K, class Add>
static STOCKMIXER_LANE_INLINE void sum4(Doubles (&out)[K], Index D, Add&& add) {
  Doubles a[4][K] = {};
  Index j = 0;
  for (; j + 4 <= D; j += 4)
    for (int u = 0; u < 4; ++u) add(j + u, a[u]);
  for (; j < D; ++j) add(j, a[j % 4]);
  for (int k = 0; k < K; ++k) out[k] = (a[0][k] + a[1][k]) + (a[2][k] + a[3][k]);
}

// Lanes [H·h, H·h + H) of the row at p, in double. Written lane by lane: GCC 12 turns that into one
// conversion instruction (H floats -> H doubles) where __builtin_convertvector on the half-row type
// takes five. (A macro: a function returning a vector by value draws GCC's -Wpsabi note in the
// baseline build even when it is always inlined.)
#define STOCKMIXER_HALF(T, p, h)                                               \
  __extension__({                                                              \
    const T* half_row_ = (p) + H * (h);                                        \
    Doubles half_value_;                                                       \
    for (int k_ = 0; k_ < H; ++k_) half_value_[k_] = static_cast<double>(half_row_[k_]); \
    half_value_;                                                               \
  })


// y[r, o] = (b[o] + Σ_i w[o, i] · x[r, i]) + res[r, o]   (in = out = C; res, a residual, may be null)
template <int CC, class T>
static void linear_forward(T* y, const T* x, const T* w, const T* b, Index n_rows, Index c_run,
                           const T* res = nullptr) {
  const Index C = channels<CC>(c_run);
  const Lanes<T>*X = rows(x), *R = rows(res);
  Lanes<T>* Y = rows(y);
  for (Index r = 0; r < n_rows; ++r)
    for (Index o0 = 0; o0 < C; o0 += kBlock<CC>) {
      const Index no = std::min(kBlock<CC>, C - o0);
      Lanes<T> acc[kBlock<CC>];
      for (Index o = 0; o < no; ++o) acc[o] = Lanes<T>{} + b[o0 + o];
      for (Index i = 0; i < C; ++i) {
        const Lanes<T> xi = X[r * C + i];
        for (Index o = 0; o < no; ++o) acc[o] += w[(o0 + o) * C + i] * xi;
      }
      for (Index o = 0; o < no; ++o) Y[r * C + o0 + o] = res ? acc[o] + R[r * C + o0 + o] : acc[o];
    }
}

// dx[r, i] = (init[r, i] + Σ_o w[o, i] · dy[r, o]) · scale[r, i];  dw[o, i] += dy[r, o] · x[r, i];
// db[o] += dy[r, o]  (per lane). init null: zero; init = dx: accumulate; scale null: one. (The
// backward's buffers start from what the step needs, so nothing is zeroed or copied first.)
template <int CC, class T>
static void linear_backward(T* dx, const T* init, const T* scale, T* dw, T* db, const T* dy, const T* x, const T* w,
                            Index n_rows, Index c_run) {
  const Index C = channels<CC>(c_run);
  const Lanes<T>*X = rows(x), *dY = rows(dy), *I = rows(init), *Sc = rows(scale);
  Lanes<T>*dX = rows(dx), *dW = rows(dw), *dB = rows(db);
  if constexpr (CC > 0) {
    // C known: each output's C + 1 gradients summed over the group's rows in registers, then added
    // to the lane accumulators once (not once per row)
    for (Index o = 0; o < C; ++o) {
      Lanes<T> gb = {}, gw[CC] = {};
      for (Index r = 0; r < n_rows; ++r) {
        const Lanes<T> g = dY[r * C + o];
        gb += g;
        for (Index i = 0; i < C; ++i) gw[i] += g * X[r * C + i];
      }
      dB[o] += gb;
      for (Index i = 0; i < C; ++i) dW[o * C + i] += gw[i];
    }
  }
  for (Index r = 0; r < n_rows; ++r) {
    if constexpr (CC == 0)
      for (Index o = 0; o < C; ++o) {
        const Lanes<T> g = dY[r * C + o];
        dB[o] += g;
        for (Index i = 0; i < C; ++i) dW[o * C + i] += g * X[r * C + i];
      }
    if (!dx) continue;
    for (Index i0 = 0; i0 < C; i0 += kBlock<CC>) {
      const Index ni = std::min(kBlock<CC>, C - i0);
      Lanes<T> acc[kBlock<CC>];
      for (Index i = 0; i < ni; ++i) acc[i] = init ? I[r * C + i0 + i] : Lanes<T>{};
      for (Index o = 0; o < C; ++o) {
        const Lanes<T> g = dY[r * C + o];
        for (Index i = 0; i < ni; ++i) acc[i] += w[o * C + i0 + i] * g;
      }
      for (Index i = 0; i < ni; ++i) dX[r * C + i0 + i] = scale ? acc[i] * Sc[r * C + i0 + i] : acc[i];
    }
  }
}

// y[i, c] = (b[i] + Σ_{j <= i} w[i, j] · x[j, c]) + res[i, c]   (res, a residual, may be null)
template <int CC, class T>
static void triu_forward(T* y, const T* x, const T* w, const T* b, Index L, Index c_run, const T* res = nullptr) {
  const Index C = channels<CC>(c_run);
  const Lanes<T>*X = rows(x), *R = rows(res);
  Lanes<T>* Y = rows(y);
  for (Index i = 0; i < L; ++i)
    for (Index c0 = 0; c0 < C; c0 += kBlock<CC>) {
      const Index nc = std::min(kBlock<CC>, C - c0);
      Lanes<T> acc[kBlock<CC>];
      for (Index c = 0; c < nc; ++c) acc[c] = Lanes<T>{} + b[i];
      for (Index j = 0; j <= i; ++j) {
        const T wij = w[i * L + j];
        for (Index c = 0; c < nc; ++c) acc[c] += wij * X[j * C + c0 + c];
      }
      for (Index c = 0; c < nc; ++c) Y[i * C + c0 + c] = res ? acc[c] + R[i * C + c0 + c] : acc[c];
    }
}

// dx[j, c] += Σ_{i >= j} w[i, j] · dy[i, c];  dw[i, j] += Σ_c dy[i, c] · x[j, c];  db[i] += Σ_c dy[i, c]
template <int CC, class T>
static void triu_backward(T* dx, const T* init, T* dw, T* db, const T* dy, const T* x, const T* w, Index L,
                          Index c_run) {
  const Index C = channels<CC>(c_run);
  const Lanes<T>*X = rows(x), *dY = rows(dy), *I = rows(init);
  Lanes<T>*dX = rows(dx), *dW = rows(dw), *dB = rows(db);
  for (Index i = 0; i < L; ++i) {
    const Lanes<T>* g = dY + i * C;
    Lanes<T> sum = g[0];
    for (Index c = 1; c < C; ++c) sum += g[c];
    dB[i] += sum;
  }
  if constexpr (CC > 0) {
    // C known: four rows i of dy held in registers, each row j of x loaded once for all four
    constexpr Index kRows = 4;
    for (Index i0 = 0; i0 < L; i0 += kRows) {
      const Index ni = std::min(kRows, L - i0);
      Lanes<T> g[kRows][CC];
      for (Index r = 0; r < ni; ++r)
        for (Index c = 0; c < CC; ++c) g[r][c] = dY[(i0 + r) * C + c];
      for (Index j = 0; j < i0 + ni; ++j) {
        Lanes<T> xj[CC];
        for (Index c = 0; c < CC; ++c) xj[c] = X[j * C + c];
        for (Index r = std::max<Index>(0, j - i0); r < ni; ++r) {  // j <= i0 + r
          Lanes<T> acc = g[r][0] * xj[0];
          for (Index c = 1; c < CC; ++c) acc += g[r][c] * xj[c];
          dW[(i0 + r) * L + j] += acc;
        }
      }
    }
  } else {
    for (Index i = 0; i < L; ++i) {
      const Lanes<T>* g = dY + i * C;
      for (Index j = 0; j <= i; ++j) {
        Lanes<T> acc = g[0] * X[j * C];
        for (Index c = 1; c < C; ++c) acc += g[c] * X[j * C + c];
        dW[i * L + j] += acc;
      }
    }
  }
  // dx column by column: row j collects from every i >= j, in registers
  for (Index j = 0; j < L; ++j)
    for (Index c0 = 0; c0 < C; c0 += kBlock<CC>) {
      const Index nc = std::min(kBlock<CC>, C - c0);
      Lanes<T> acc[kBlock<CC>];
      for (Index c = 0; c < nc; ++c) acc[c] = init ? I[j * C + c0 + c] : Lanes<T>{};
      for (Index i = j; i < L; ++i) {
        const T wij = w[i * L + j];
        for (Index c = 0; c < nc; ++c) acc[c] += wij * dY[i * C + c0 + c];
      }
      for (Index c = 0; c < nc; ++c) dX[j * C + c0 + c] = acc[c];
    }
}

// √v lane by lane (v >= 0), the same correctly rounded roots as std::sqrt: with GCC on x86 the
// version's vector square root (std::sqrt on a lane compiles to a scalar root and an errno check).
static STOCKMIXER_LANE_INLINE void sqrt_lanes(Doubles& out, const Doubles& v) {
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpsabi"  // the builtins return vectors; they are always inlined here
  if constexpr (H == 8) {
    out = __builtin_ia32_sqrtpd512_mask(v, v, static_cast<unsigned char>(-1), 4);  // AVX-512 versions
    return;
  } else if constexpr (H == 4) {
    out = __builtin_ia32_sqrtpd256(v);  // AVX2 versions
    return;
  } else if constexpr (H == 2) {
    out = __builtin_ia32_sqrtpd(v);  // SSE2, every x86-64
    return;
  }
#pragma GCC diagnostic pop
#endif
  for (int k = 0; k < H; ++k) out[k] = std::sqrt(v[k]);
}

// LayerNorm over all D rows of each lane (layernorm.hpp's formulas; statistics in double).
template <class T>
static void layernorm_forward(T* y, T* xhat, T* rstd, const T* x, const T* gamma, const T* beta, Index D, double eps) {
  T mu[W], rs[W];
  for (int h = 0; h < 2; ++h) {  // per half row
    Doubles mean, var;
    if constexpr (std::is_same_v<T, float>) {
      // one pass, Σx and Σx² in double: float inputs carry 24 bits, so var = E[x²] - mean² loses
      // ~2·log2(|mean| / σ) of double's 53 and stays far below float's rounding unless |mean| > 1e3·σ
      Doubles sum[2];
      sum4(sum, D, [&](Index j, Doubles(&a)[2]) {
        const Doubles v = STOCKMIXER_HALF(T, x + j * W, h);
        a[0] += v;
        a[1] += v * v;
      });
#if defined(__clang__)  // values, not Doubles references, into the deduced formula (lanes.hpp, Reg)
      Reg<double, H> m, v;
      layernorm_moments(m, v, Reg<double, H>(sum[0]), Reg<double, H>(sum[1]), static_cast<double>(D));
      mean = m, var = v;
#else
      layernorm_moments(mean, var, sum[0], sum[1], static_cast<double>(D));
#endif
    } else {  // double: two passes, the deviations summed
      Doubles sum[1], sq[1];
      sum4(sum, D, [&](Index j, Doubles(&a)[1]) { a[0] += STOCKMIXER_HALF(T, x + j * W, h); });
      mean = sum[0] / static_cast<double>(D);
      sum4(sq, D, [&](Index j, Doubles(&a)[1]) {
        const Doubles d = STOCKMIXER_HALF(T, x + j * W, h) - mean;
        a[0] += d * d;
      });
      var = sq[0] / static_cast<double>(D);
    }
    Doubles root;
    sqrt_lanes(root, var + eps);
    const Doubles inv = 1.0 / root;
    for (int k = 0; k < H; ++k) {
      mu[H * h + k] = static_cast<T>(mean[k]);
      rs[H * h + k] = static_cast<T>(inv[k]);
    }
  }
  const Lanes<T> muv = *rows(mu), rsv = *rows(rs);
  *rows(rstd) = rsv;
  const Lanes<T>* X = rows(x);
  Lanes<T>*Y = rows(y), *Xh = rows(xhat);
  for (Index j = 0; j < D; ++j) {
    const Lanes<T> xh = (X[j] - muv) * rsv;
    Xh[j] = xh;
    Y[j] = xh * gamma[j] + beta[j];
  }
}

// y = xhat · gamma + beta: the LayerNorm's output from its normalised input, as the forward computes
// it (the backward redoes it rather than keep y).
template <class T>
static void layernorm_output(T* y, const T* xhat, const T* gamma, const T* beta, Index D) {
  const Lanes<T>* Xh = rows(xhat);
  Lanes<T>* Y = rows(y);
  for (Index j = 0; j < D; ++j) Y[j] = Xh[j] * gamma[j] + beta[j];
}

// dx = init + add + rstd · (g - mean(g) - xhat · mean(g · xhat)), g = dy · gamma (init, add null: zero;
// init = dx: accumulate);  dgamma += dy · xhat;  dbeta += dy
template <class T>
static void layernorm_backward(T* dx, const T* init, const T* add, T* dgamma, T* dbeta, const T* dy, const T* xhat,
                               const T* rstd, const T* gamma, Index D) {
  const Lanes<T>*dY = rows(dy), *Xh = rows(xhat);
  Lanes<T>*dG = rows(dgamma), *dB = rows(dbeta);
  if (!dx) {
    for (Index j = 0; j < D; ++j) {
      dG[j] += dY[j] * Xh[j];
      dB[j] += dY[j];
    }
    return;
  }
  // One pass for dgamma, dbeta and the four sums (Σ g and Σ g · xhat per half row), one for dx.
  Doubles sums[4];  // Σ g (first half, second half), Σ g · xhat (first half, second half)
  sum4(sums, D, [&](Index j, Doubles(&a)[4]) {
    dG[j] += dY[j] * Xh[j];
    dB[j] += dY[j];
    for (int h = 0; h < 2; ++h) {
      const Doubles g = STOCKMIXER_HALF(T, dy + j * W, h) * static_cast<double>(gamma[j]);
      a[h] += g;
      a[2 + h] += g * STOCKMIXER_HALF(T, xhat + j * W, h);
    }
  });
  // The means in double, rounded once to T; the pass over the rows in T, whole rows: each dx value is
  // a few roundings of T from its terms (no cancellation is summed over here, unlike the means).
  T mg[W], mgx[W];
  for (int h = 0; h < 2; ++h) {
    const Doubles g = sums[h] / static_cast<double>(D), gx = sums[2 + h] / static_cast<double>(D);
    for (int k = 0; k < H; ++k) {
      mg[H * h + k] = static_cast<T>(g[k]);
      mgx[H * h + k] = static_cast<T>(gx[k]);
    }
  }
  const Lanes<T> mean_g = *rows(mg), mean_gx = *rows(mgx), rs = *rows(rstd);
  const Lanes<T>*I = rows(init), *A = rows(add);
  Lanes<T>* dX = rows(dx);
  for (Index j = 0; j < D; ++j) {
    Lanes<T> d;
#if defined(__clang__)  // values, not Lanes references, into the deduced formula (lanes.hpp, Reg)
    Reg<T, W> r;
    layernorm_dx(r, Reg<T, W>(rs), Reg<T, W>(dY[j] * gamma[j]), Reg<T, W>(mean_g), Reg<T, W>(Xh[j]),
                 Reg<T, W>(mean_gx));
    d = r;
#else
    layernorm_dx(d, rs, dY[j] * gamma[j], mean_g, Xh[j], mean_gx);
#endif
    if (init) dX[j] = add ? (I[j] + A[j]) + d : I[j] + d;
    else dX[j] = add ? A[j] + d : d;
  }
}

// GELU on lanes. float: Eigen's algorithms (gelu.hpp's packet path) written on lane vectors so they
// run at the version's full width, sharing what they can: erf is Eigen's generic_fast_erf_float (a
// 13/8 rational on [-4, 4]), the density's exp is Eigen's pexp_float (Cephes). double: std::erf and
// std::exp per lane.
static STOCKMIXER_LANE_INLINE void clamp(Lanes<float>& y, const Lanes<float>& x, float lo, float hi) {
  const Lanes<float> l = Lanes<float>{} + lo, h = Lanes<float>{} + hi;
  y = x < h ? x : h;
  y = y > l ? y : l;
}

// erf(u), given u and uu = u · u. Eigen squares u clamped to [-4, 4]: that square is min(uu, 16), the
// same bits, and uu is shared with the density below.
static STOCKMIXER_LANE_INLINE void erf_lanes(Lanes<float>& out, const Lanes<float>& u, const Lanes<float>& uu) {
  Lanes<float> x;
  clamp(x, u, -4.f, 4.f);
  const Lanes<float> sixteen = Lanes<float>{} + 16.f;
  const Lanes<float> x2 = uu < sixteen ? uu : sixteen;
  Lanes<float> p = x2 * -2.72614225801306e-10f + 2.77068142495902e-08f;
  p = x2 * p + -2.10102402082508e-06f;
  p = x2 * p + -5.69250639462346e-05f;
  p = x2 * p + -7.34990630326855e-04f;
  p = x2 * p + -2.95459980854025e-03f;
  p = x2 * p + -1.60960333262415e-02f;
  p = x * p;
  Lanes<float> q = x2 * -1.45660718464996e-05f + -2.13374055278905e-04f;
  q = x2 * q + -1.68282697438203e-03f;
  q = x2 * q + -7.37332916720468e-03f;
  q = x2 * q + -1.42647390514189e-02f;
  out = p / q;
}

// The standard normal density at x = √2 · u, φ = exp(-uu) / √(2π), uu = u · u: Cephes' exp (Eigen's
// pexp_float: exp(-uu) = 2^m · e^r, m = round(-uu · log2 e), r = -uu - m · ln 2 in two steps, a 6th-
// degree polynomial for e^r) with 1/√(2π) folded into the polynomial's coefficients, and m rounded by
// adding 1.5 · 2²³ + 127: the sum's low bits are then m + 127, 2^m's exponent field, one shift away
// (where floor(x + 1/2) and the exponent took seven conversions and compares). uu is capped at 87 so
// that 2^m stays a normal float: beyond, φ < 1e-38 is negligible beside Φ(x) in GELU's derivative.
static STOCKMIXER_LANE_INLINE void density_lanes(Lanes<float>& out, const Lanes<float>& uu) {
  typedef std::int32_t Int __attribute__((vector_size(W * sizeof(std::int32_t))));
  constexpr float kShift = 12583039.f;  // 1.5 · 2^23 + 127
  constexpr double c = detail::kInvSqrt2Pi;
  const Lanes<float> cap = Lanes<float>{} + 87.f;
  const Lanes<float> a = uu < cap ? uu : cap;
  const Lanes<float> shifted = a * -1.44269504088896341f + kShift;  // rounds: ulp(2^23 · 1.5) = 1
  const Lanes<float> m = shifted - kShift;
  Lanes<float> r = m * -0.693359375f - a;
  r = m * 2.12194440e-4f + r;
  const Lanes<float> r2 = r * r, r3 = r2 * r;
  Lanes<float> y = static_cast<float>(c * 1.9875691500E-4) * r + static_cast<float>(c * 1.3981999507E-3);
  Lanes<float> y1 = static_cast<float>(c * 4.1665795894E-2) * r + static_cast<float>(c * 1.6666665459E-1);
  const Lanes<float> y2 = static_cast<float>(c) * r + static_cast<float>(c);
  y = y * r + static_cast<float>(c * 8.3334519073E-3);
  y1 = y1 * r + static_cast<float>(c * 5.0000001201E-1);
  y = y * r3 + y1;
  y = y * r2 + y2;
  const Int bits = (Int)shifted << 23;  // (m + 127) << 23: 2^m (a vector cast keeps the bits)
  out = y * (Lanes<float>)bits;
}

// y = x · Φ(x), Φ(x) = (1 + erf(x / √2)) / 2. With `grad` (training), x is then overwritten by the
// derivative Φ(x) + x · φ(x): all the backward needs of x, and erf is computed once for both.
template <class T>
static void gelu_forward(T* y, T* x, Index n_rows, bool grad) {
  Lanes<T>*X = rows(x), *Y = rows(y);
  for (Index j = 0; j < n_rows; ++j) {
    if constexpr (std::is_same_v<T, float>) {
      const Lanes<float> u = X[j] * static_cast<float>(detail::kSqrtHalf), uu = u * u;
      Lanes<float> e, pdf;
      erf_lanes(e, u, uu);
      const Lanes<float> cdf = e * 0.5f + 0.5f;  // (1 + e) / 2, the same bits: halving is exact
      Y[j] = X[j] * cdf;
      if (!grad) continue;
      density_lanes(pdf, uu);
      X[j] = X[j] * pdf + cdf;
    } else {
      for (int k = 0; k < W; ++k) {
        const T xk = X[j][k];
        const T cdf = T(0.5) * (T(1) + std::erf(xk * static_cast<T>(detail::kSqrtHalf)));
        Y[j][k] = xk * cdf;
        if (grad) X[j][k] = cdf + xk * (std::exp(T(-0.5) * xk * xk) * static_cast<T>(detail::kInvSqrt2Pi));
      }
    }
  }
}

// v[s, o] = b[o] + Σ_c Σ_j w[o, c, j] · x[2s + j, c]  (kernel = stride = 2)
template <int CC, class T>
static void conv_forward(T* v, const T* x, const T* w, const T* b, Index S, Index c_run) {
  const Index C = channels<CC>(c_run);
  const Lanes<T>* X = rows(x);
  Lanes<T>* V = rows(v);
  for (Index s = 0; s < S; ++s)
    for (Index o0 = 0; o0 < C; o0 += kBlock<CC>) {
      const Index no = std::min(kBlock<CC>, C - o0);
      Lanes<T> acc[kBlock<CC>];
      for (Index o = 0; o < no; ++o) acc[o] = Lanes<T>{} + b[o0 + o];
      for (Index c = 0; c < C; ++c)
        for (Index j = 0; j < 2; ++j) {
          const Lanes<T> xr = X[(2 * s + j) * C + c];
          for (Index o = 0; o < no; ++o) acc[o] += w[((o0 + o) * C + c) * 2 + j] * xr;
        }
      for (Index o = 0; o < no; ++o) V[s * C + o0 + o] = acc[o];
    }
}

// dx[2s + j, c] += Σ_o w[o, c, j] · dv[s, o];  dw[o, c, j] += dv[s, o] · x[2s + j, c];  db[o] += dv[s, o]
template <int CC, class T>
static void conv_backward(T* dx, T* dw, T* db, const T* dv, const T* x, const T* w, Index S, Index c_run) {
  const Index C = channels<CC>(c_run);
  const Lanes<T>*X = rows(x), *dV = rows(dv);
  Lanes<T>*dX = rows(dx), *dW = rows(dw), *dB = rows(db);
  if constexpr (CC > 0) {
    // C known: each output's 2C + 1 gradients summed over s in registers, then added to the lanes once
    for (Index o = 0; o < C; ++o) {
      Lanes<T> gb = {}, gw[CC][2] = {};
      for (Index s = 0; s < S; ++s) {
        const Lanes<T> g = dV[s * C + o];
        gb += g;
        for (Index c = 0; c < C; ++c)
          for (Index j = 0; j < 2; ++j) gw[c][j] += g * X[(2 * s + j) * C + c];
      }
      dB[o] += gb;
      for (Index c = 0; c < C; ++c)
        for (Index j = 0; j < 2; ++j) dW[(o * C + c) * 2 + j] += gw[c][j];
    }
  }
  for (Index s = 0; s < S; ++s) {
    if constexpr (CC == 0)
      for (Index o = 0; o < C; ++o) {
        const Lanes<T> g = dV[s * C + o];
        dB[o] += g;
        for (Index c = 0; c < C; ++c)
          for (Index j = 0; j < 2; ++j) dW[(o * C + c) * 2 + j] += g * X[(2 * s + j) * C + c];
      }
    if (!dx) continue;
    for (Index j = 0; j < 2; ++j)
      for (Index c0 = 0; c0 < C; c0 += kBlock<CC>) {
        const Index nc = std::min(kBlock<CC>, C - c0);
        Lanes<T> acc[kBlock<CC>];
        for (Index c = 0; c < nc; ++c) acc[c] = dX[(2 * s + j) * C + c0 + c];
        for (Index o = 0; o < C; ++o) {
          const Lanes<T> g = dV[s * C + o];
          for (Index c = 0; c < nc; ++c) acc[c] += w[(o * C + c0 + c) * 2 + j] * g;
        }
        for (Index c = 0; c < nc; ++c) dX[(2 * s + j) * C + c0 + c] = acc[c];
      }
  }
}

// ---- one group of W stocks ---------------------------------------------------------------------------

// The per-thread scratch: the group's input, activations, lane accumulators of the parameter
// gradients and backward temporaries, carved out of one buffer that grows to the largest shape seen.
template <class T>
struct Group {
  Index T_, S, C, F;
  T *x, *v, *y, *dy, *dh, *dv, *tmp[4], *acc;
  // channel_fc's gradient lanes, [C + 1][lanes] (weight, then bias), in double: they sum dy over the
  // stocks, where the stock LayerNorm's share cancels (its backward sums to zero), so float lanes would
  // add rounding of the size of the result. dy · h of two floats is exact in double.
  double* fc_acc;
  MixerActs<T> mix, scale_mix;
  T* norm_out[4];  // a1 and x2 of mix, then of scale_mix (never in the stash)
  StoreSpan span;   // acc holds span.size · lanes: parameter p's lanes at (p.offset() - span.first) · lanes

  // Values of what the backward reads from the forward, for one group: both mixers' activations
  // but a1 and x2 (the stash holds one such block per group). The rest lives in the group's scratch:
  // the backward reads x again from the input, does not read v, and recomputes a1 and x2, the
  // LayerNorms' outputs, from x̂ (one multiply-add a value): cheaper than a stash a third larger to
  // write and read back.
  static Index acts_size(Index steps, Index channels) {
    const Index tc = steps * channels * W, sc = steps / 2 * channels * W;
    return (5 * tc + 2 * W) + (5 * sc + 2 * W);
  }
  // Values of scratch a group needs (fc_acc first: the buffer's start is aligned for doubles).
  static constexpr Index kPerDouble = static_cast<Index>(sizeof(double) / sizeof(T));
  static Index scratch_size(Index steps, Index channels, StoreSpan span) {
    const Index S = steps / 2, F = 2 * steps + S, tc = steps * channels * W, sc = S * channels * W;
    return (channels + 1) * W * kPerDouble + acts_size(steps, channels) + 3 * (tc + sc) + sc + 2 * F * W +
           F * channels * W + 4 * tc + span.size * W;
  }

  // The next n values from p, advancing p.
  static T* take(T*& p, Index n) {
    T* q = p;
    p += n;
    return q;
  }

  Group(T* buffer, Index steps, Index channels, StoreSpan parameters)
      : T_(steps), S(steps / 2), C(channels), F(2 * steps + steps / 2), span(parameters) {
    const Index tc = T_ * C * W, sc = S * C * W;
    T* p = buffer;
    fc_acc = reinterpret_cast<double*>(take(p, (C + 1) * W * kPerDouble));
    x = take(p, tc), v = take(p, sc);
    norm_out[0] = take(p, tc), norm_out[1] = take(p, tc), norm_out[2] = take(p, sc), norm_out[3] = take(p, sc);
    use_acts(take(p, acts_size(T_, C)));
    dv = take(p, sc), y = take(p, F * W), dy = take(p, F * W), dh = take(p, F * C * W);
    for (T*& t : tmp) t = take(p, tc);
    acc = take(p, span.size * W);
  }

  // The lane accumulators of parameter p's gradient, [p.size()][lanes].
  T* lanes_of(const Parameter<T>& p) const { return acc + (p.offset() - span.first) * W; }

  // Row f of h = [x, mix out, scale_mix out] (concatenated in time): C rows of lanes.
  const T* h_row(Index f) const {
    if (f < T_) return x + f * C * W;
    if (f < 2 * T_) return mix.out + (f - T_) * C * W;
    return scale_mix.out + (f - 2 * T_) * C * W;
  }

  // Points the mixers' activations at acts_size(T, C) values from p (a1 and x2: norm_out).
  void use_acts(T* p) {
    auto acts = [&](MixerActs<T>& a, Index L, T* a1, T* x2) {
      const Index n = L * C * W;
      a.xhat1 = take(p, n), a.xhat2 = take(p, n), a.h = take(p, n), a.g = take(p, n), a.out = take(p, n);
      a.rstd1 = take(p, W), a.rstd2 = take(p, W);
      a.a1 = a1, a.x2 = x2;
    };
    acts(mix, T_, norm_out[0], norm_out[1]);
    acts(scale_mix, S, norm_out[2], norm_out[3]);
  }
};

template <int CC, class T>
static void mixer_forward(MixerActs<T>& a, const T* u, const nn::Mixer2dTriU<T>& m, Index L, Index C, bool grad) {
  const Index D = L * C;
  const nn::Linear<T>&fc1 = m.channelMixer.dense_1, &fc2 = m.channelMixer.dense_2;
  layernorm_forward(a.a1, a.xhat1, a.rstd1, u, m.LN_1.weight.value(), m.LN_1.bias.value(), D, 1e-5);
  // a.out holds TriU(a1) + u, LN_2's input
  triu_forward<CC>(a.out, a.a1, m.timeMixer.weight.value(), m.timeMixer.bias.value(), L, C, u);
  layernorm_forward(a.x2, a.xhat2, a.rstd2, a.out, m.LN_2.weight.value(), m.LN_2.bias.value(), D, 1e-5);
  linear_forward<CC>(a.h, a.x2, fc1.weight.value(), fc1.bias.value(), L, C);
  gelu_forward(a.g, a.h, D, grad);  // with grad, a.h holds GELU's derivative from here on
  linear_forward<CC>(a.out, a.g, fc2.weight.value(), fc2.bias.value(), L, C, a.x2);  // + x2, the residual
}

// du (may be null) = d(out)/d(u)^T dout, added to du's values when `accumulate`; g's lane accumulators
// += the parameter gradients.
template <int CC, class T>
static void mixer_backward(T* du, bool accumulate, const MixerActs<T>& a, const T* dout, const nn::Mixer2dTriU<T>& m,
                           const Group<T>& g, Index L, Index C) {
  const Index D = L * C;
  const nn::Linear<T>&fc1 = m.channelMixer.dense_1, &fc2 = m.channelMixer.dense_2;
  const nn::LayerNorm<T>&ln1 = m.LN_1, &ln2 = m.LN_2;
  layernorm_output(a.x2, a.xhat2, ln2.weight.value(), ln2.bias.value(), D);  // not kept by the forward
  layernorm_output(a.a1, a.xhat1, ln1.weight.value(), ln1.bias.value(), D);
  T *dhid = g.tmp[1], *dx2 = g.tmp[2], *ds = g.tmp[0], *da1 = g.tmp[1];
  const T* none = nullptr;  // no init (zero) or no scale (one)
  // dhid = (fc2ᵀ · dout) · GELU'(h) (a.h holds the derivative); dx2 = dout (the residual) + fc1ᵀ · dhid
  linear_backward<CC>(dhid, none, a.h, g.lanes_of(fc2.weight), g.lanes_of(fc2.bias), dout, a.g, fc2.weight.value(),
                      L, C);
  linear_backward<CC>(dx2, dout, none, g.lanes_of(fc1.weight), g.lanes_of(fc1.bias), dhid, a.x2, fc1.weight.value(),
                      L, C);
  layernorm_backward(ds, none, none, g.lanes_of(ln2.weight), g.lanes_of(ln2.bias), dx2, a.xhat2, a.rstd2,
                     ln2.weight.value(), D);
  triu_backward<CC>(da1, none, g.lanes_of(m.timeMixer.weight), g.lanes_of(m.timeMixer.bias), ds, a.a1,
                    m.timeMixer.weight.value(), L, C);
  // du (+)= ds, the residual around LN_1 and TriU, + LN_1's backward, in LN_1's dx pass
  layernorm_backward(du, accumulate ? du : none, du ? ds : none, g.lanes_of(ln1.weight), g.lanes_of(ln1.bias), da1,
                     a.xhat1, a.rstd1, ln1.weight.value(), D);
}

// Reads stocks [s0, s0 + count) of x [N, T, C] into g.x ([T, C][lanes]; missing lanes are zero).
template <class T>
static void load_input(Group<T>& g, const T* x, Index s0, Index count) {
  const Index tc = g.T_ * g.C;
  Index r0 = 0;
  if (count == W)  // W x W blocks transposed in registers
    for (; r0 + W <= tc; r0 += W) {
      Lanes<T> a[W];
      for (int k = 0; k < W; ++k) a[k] = *rows(x + (s0 + k) * tc + r0);
      transpose<T, W>(a);
      for (int j = 0; j < W; ++j) rows(g.x)[r0 + j] = a[j];
    }
  for (Index r = r0; r < tc; ++r)
    for (int k = 0; k < W; ++k) g.x[r * W + k] = k < count ? x[(s0 + k) * tc + r] : T(0);
}

// Reads stocks [s0, s0 + count) of x with load_input and runs the forward, leaving y [F][lanes] and every
// activation in g; with `grad` (a backward follows) the activations are those the backward reads (GELU's
// derivative in place of its input).
template <int CC, class T>
static void group_forward(Group<T>& g, const T* x, Index s0, Index count, const Modules<T>& w, bool grad) {
  const Index T_ = g.T_, S = g.S, C = g.C;
  load_input(g, x, s0, count);
  conv_forward<CC>(g.v, g.x, w.conv.weight.value(), w.conv.bias.value(), S, C);
  mixer_forward<CC>(g.mix, g.x, w.mixer.mix_layer, T_, C, grad);
  mixer_forward<CC>(g.scale_mix, g.v, w.mixer.scale_mix_layer, S, C, grad);
  // y[f] = fc_b + Σ_c fc_w[c] · h[f, c]
  const T *fc_w = w.channel_fc.weight.value(), *fc_b = w.channel_fc.bias.value();
  for (Index f = 0; f < g.F; ++f) {
    const Lanes<T>* h = rows(g.h_row(f));
    Lanes<T> acc = Lanes<T>{} + fc_b[0];
    for (Index c = 0; c < C; ++c) acc += fc_w[c] * h[c];
    rows(g.y)[f] = acc;
  }
}

// After group_forward on the same stocks: reads dy [F, N] for them, adds the parameter gradients into
// g's lane accumulators and, when dx is not null, the input gradient into dx [N, T, C].
template <int CC, class T>
static void group_backward(Group<T>& g, T* dx, const T* dy, Index stocks, Index s0, Index count,
                           const Modules<T>& w) {
  const Index T_ = g.T_, S = g.S, C = g.C, F = g.F, tc = T_ * C;
  for (Index f = 0; f < F; ++f)
    if (count == W) rows(g.dy)[f] = *rows(dy + f * stocks + s0);
    else for (int k = 0; k < W; ++k) g.dy[f * W + k] = k < count ? dy[f * stocks + s0 + k] : T(0);
  // channel_fc: dh[f, c] = fc_w[c] · dy[f];  dfc_w[c] += Σ_f dy[f] · h[f, c];  dfc_b += Σ_f dy[f]
  Doubles* fc_acc = reinterpret_cast<Doubles*>(g.fc_acc);  // [C + 1][2 half rows]
  const T* fc_w = w.channel_fc.weight.value();
  for (Index f = 0; f < F; ++f) {
    const T *h = g.h_row(f), *dyf = g.dy + f * W;
    for (int hh = 0; hh < 2; ++hh) {
      const Doubles d = STOCKMIXER_HALF(T, dyf, hh);
      fc_acc[2 * C + hh] += d;
      for (Index c = 0; c < C; ++c) fc_acc[2 * c + hh] += d * STOCKMIXER_HALF(T, h + c * W, hh);
    }
    if (f < T_ && !dx) continue;  // dh's first T rows (x's share) are dx's only
    for (Index c = 0; c < C; ++c) rows(g.dh)[f * C + c] = fc_w[c] * rows(g.dy)[f];
  }
  const T* dh_mix = g.dh + tc * W;          // [T, C]
  const T* dh_scale = g.dh + 2 * tc * W;    // [S, C]
  mixer_backward<CC>(g.dv, false, g.scale_mix, dh_scale, w.mixer.scale_mix_layer, g, S, C);
  T* gx = dx ? g.dh : nullptr;  // dx of the group's stocks accumulates in place over dh's x share
  conv_backward<CC>(gx, g.lanes_of(w.conv.weight), g.lanes_of(w.conv.bias), g.dv, g.x, w.conv.weight.value(), S, C);
  mixer_backward<CC>(gx, true, g.mix, dh_mix, w.mixer.mix_layer, g, T_, C);
  if (!gx) return;
  Index r0 = 0;
  if (count == W)
    for (; r0 + W <= tc; r0 += W) {
      Lanes<T> a[W];
      for (int j = 0; j < W; ++j) a[j] = rows(gx)[r0 + j];
      transpose<T, W>(a);
      for (int k = 0; k < W; ++k) *rows(dx + (s0 + k) * tc + r0) += a[k];
    }
  for (Index r = r0; r < tc; ++r)
    for (int k = 0; k < count; ++k) dx[(s0 + k) * tc + r] += gx[r * W + k];
}

// The workers. Forward of groups [g0, g1) into y [F, N].
template <int CC, class T>
static void forward_groups(T* y, T* stash, const T* x, const Modules<T>& w, StoreSpan span, Index stocks,
                           Index steps, Index channels, Index g0, Index g1, T* scratch) {
  Group<T> g(scratch, steps, channels, span);
  for (Index gi = g0; gi < g1; ++gi) {
    const Index s0 = gi * W, count = std::min<Index>(W, stocks - s0);
    if (stash) g.use_acts(stash + gi * Group<T>::acts_size(steps, channels));
    group_forward<CC>(g, x, s0, count, w, stash != nullptr);  // a stash is kept for a backward
    for (Index f = 0; f < g.F; ++f)
      if (count == W) *rows(y + f * stocks + s0) = rows(g.y)[f];
      else for (Index k = 0; k < count; ++k) y[f * stocks + s0 + k] = g.y[f * W + k];
  }
}

// part[p] for the values [p0, p1) of the span: each one's W lanes summed in double, in lane order.
template <class T>
static void add_lanes(double* part, const T* acc, Index p0, Index p1) {
  Index p = p0;
  for (; p + W <= p1; p += W) {  // W values at a time: their rows transposed, lanes then added
    Lanes<T> a[W];               // across the vector in the same order as below
    for (int i = 0; i < W; ++i) a[i] = rows(acc)[p + i];
    transpose<T, W>(a);
    Doubles s[2] = {};
    for (int k = 0; k < W; ++k)
      for (int h = 0; h < 2; ++h) s[h] += STOCKMIXER_HALF(T, reinterpret_cast<const T*>(a + k), h);
    for (int i = 0; i < W; ++i) part[p + i] = s[i / H][i % H];
  }
  for (; p < p1; ++p) {  // lanes in a fixed order
    double s = 0.0;
    for (int k = 0; k < W; ++k) s += static_cast<double>(acc[p * W + k]);
    part[p] = s;
  }
}

// Backward of groups [g0, g1): their parameter gradients, summed over lanes in double, into part
// [span.size] (laid out as the span); dx (may be null) for their stocks.
template <int CC, class T>
static void backward_groups(double* part, T* dx, const T* dy, T* stash, const T* x, const Modules<T>& w,
                            StoreSpan span, Index stocks, Index steps, Index channels, Index g0, Index g1,
                            T* scratch) {
  Group<T> g(scratch, steps, channels, span);
  std::fill(g.acc, g.acc + span.size * W, T(0));
  std::fill(g.fc_acc, g.fc_acc + (channels + 1) * W, 0.0);
  for (Index gi = g0; gi < g1; ++gi) {
    const Index s0 = gi * W, count = std::min<Index>(W, stocks - s0);
    if (stash) {  // the forward's, kept
      g.use_acts(stash + gi * Group<T>::acts_size(steps, channels));
      load_input(g, x, s0, count);
    } else {  // or recomputed
      group_forward<CC>(g, x, s0, count, w, true);
    }
    group_backward<CC>(g, dx, dy, stocks, s0, count, w);
  }
  // The lanes of every tensor but channel_fc's, a run of consecutive tensors at a time; channel_fc's
  // from their double lanes (fc_acc: the weight's C, then the bias).
  const Parameter<T>&fc_w = w.channel_fc.weight, &fc_b = w.channel_fc.bias;
  Index run0 = 0, run1 = 0;
  for_each_parameter(w, [&](const Parameter<T>& p) {
    if (&p == &fc_w || &p == &fc_b) return;
    const Index begin = p.offset() - span.first;
    if (begin != run1) {
      add_lanes(part, g.acc, run0, run1);
      run0 = begin;
    }
    run1 = begin + p.size();
  });
  add_lanes(part, g.acc, run0, run1);
  for (Index c = 0; c <= channels; ++c) {
    double s = 0.0;
    for (int k = 0; k < W; ++k) s += g.fc_acc[c * W + k];
    part[c < channels ? fc_w.offset() - span.first + c : fc_b.offset() - span.first] = s;
  }
}
};  // struct Kernel

// The production case, float with C = 5 (StockMixer's features, the channel loops unrolled: see
// kBlock), runs the workers with every step inlined, one version per instruction set with its own
// lane width (run_versioned, isa.hpp). Float results can differ in the last bits between those
// versions (FMA contraction, lane width), never between runs or thread counts on one machine. double
// (the reference precision of the tests) and other C run the build's own version: compiling every
// combination per instruction set would triple the build for no use.
template <class T>
bool versioned_case(Index channels) {
  return std::is_same_v<T, float> && channels == 5;
}
// The lane width (stocks per group) the kernel runs at for this T and C on this machine.
template <class T>
int group_width(Isa isa, Index channels) {
  return versioned_case<T>(channels) ? versioned_width(isa) : kBuildWidth;
}
// f(Kernel<W>{}, cc) at group_width's W, in the version for it; cc is the channel count the steps are
// compiled for (kBlock): Width<5> for C = 5, Width<0> (known at run time only) otherwise.
template <class T, class F>
void run_kernel(Isa isa, Index channels, F&& f) {
  auto with = [&](auto cc) { return [&f, cc](auto width) { f(Kernel<decltype(width)::value>{}, cc); }; };
  if (versioned_case<T>(channels)) {
    run_versioned(isa, with(Width<5>{}));
  } else if (channels == 5) {
    run_build(with(Width<5>{}));
  } else {
    run_build(with(Width<0>{}));
  }
}

// Sizes a group scratch for each thread, for the kernel run_kernel picks.
template <class T>
void reserve_groups(PerStockWorkspace<T>& workspace, Isa isa, Index steps, Index channels, StoreSpan span) {
  Index size = 0;
  run_kernel<T>(isa, channels,
                [&](auto k, auto) { size = decltype(k)::template Group<T>::scratch_size(steps, channels, span); });
  workspace.groups.reserve(size);
}

// What both passes set up: the instruction set, the groups of lanes, and each thread's group scratch.
template <class T>
struct Setup {
  Isa isa = kernel_isa();
  Index groups;
  Setup(PerStockWorkspace<T>& workspace, Index stocks, Index steps, Index channels, StoreSpan span) {
    const int width = group_width<T>(isa, channels);
    groups = (stocks + width - 1) / width;
    reserve_groups(workspace, isa, steps, channels, span);
  }
};

}  // namespace detail::per_stock

// Sized for 16-lane groups, the widest: narrower groups need no more (a group's activations grow
// with its lanes, so ⌈N/W⌉ groups of W lanes never exceed ⌈N/16⌉ of 16).
template <class T>
Index per_stock_stash_size(Index stocks, Index steps, Index channels) {
  using namespace detail::per_stock;
  return (stocks + 15) / 16 * Kernel<16>::Group<T>::acts_size(steps, channels);
}

template <class T>
void per_stock_forward(T* y, const T* x, const nn::Conv1d<T>& conv, const nn::MultTime2dMixer<T>& mixer,
                       const nn::Linear<T>& channel_fc, Index stocks, Index steps, Index channels, T* stash,
                       PerStockWorkspace<T>& workspace) {
  using namespace detail::per_stock;
  const Modules<T> w{conv, mixer, channel_fc};
  const StoreSpan span = parameter_span(w);
  const Setup<T> setup(workspace, stocks, steps, channels, span);
  const Isa isa = setup.isa;
  parallel_for(setup.groups, 4, [&](Index g0, Index g1) {
    T* scratch = workspace.groups.local();
    run_kernel<T>(isa, channels, [&](auto k, auto cc) {
      constexpr int CC = decltype(cc)::value;  // passed as the count too: a constant the compiler can unroll
      k.template forward_groups<CC>(y, stash, x, w, span, stocks, steps, CC > 0 ? CC : channels, g0, g1, scratch);
    });
  });
}

template <class T>
void per_stock_backward(T* dx, const T* dy, const T* x, const nn::Conv1d<T>& conv, const nn::MultTime2dMixer<T>& mixer,
                        const nn::Linear<T>& channel_fc, Index stocks, Index steps, Index channels, T* stash,
                        PerStockWorkspace<T>& workspace) {
  using namespace detail::per_stock;
  const Modules<T> w{conv, mixer, channel_fc};
  const StoreSpan span = parameter_span(w);
  const Setup<T> setup(workspace, stocks, steps, channels, span);
  const Isa isa = setup.isa;
  const Index groups = setup.groups;
  if (groups == 0) return;
  // Chunks of about kGroupsPerChunk groups (at least one chunk, at most kMaxChunks), sizes as equal as
  // floor division makes them: each chunk ends with a lane reduction that costs about a group's
  // backward, and equal chunks keep two (or four, or eight) threads evenly loaded.
  const Index chunks = std::clamp<Index>(groups / kGroupsPerChunk, 1, kMaxChunks);
  const Index P = span.size;
  double* part = workspace.partials.get(chunks * P);  // [chunk][P]
  parallel_for_even(groups, chunks, [&](Index c, Index g0, Index g1) {
    T* scratch = workspace.groups.local();
    run_kernel<T>(isa, channels, [&](auto k, auto cc) {
      constexpr int CC = decltype(cc)::value;
      k.template backward_groups<CC>(part + c * P, dx, dy, stash, x, w, span, stocks, steps, CC > 0 ? CC : channels,
                                     g0, g1, scratch);
    });
  });
  for_each_parameter(w, [&](const Parameter<T>& q) {
    const double* pq = part + (q.offset() - span.first);
    for (Index i = 0; i < q.size(); ++i) {
      double s = 0.0;
      for (Index c = 0; c < chunks; ++c) s += pq[c * P + i];
      q.grad()[i] += static_cast<T>(s);
    }
  });
}

}  // namespace stockmixer
