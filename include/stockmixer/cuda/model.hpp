// stockmixer/cuda/model.hpp — StockMixer's forward and backward on a CUDA device (-DSTOCKMIXER_CUDA=ON;
// the kernels are compiled in src/cuda/model.cu). Plain C++: no CUDA header is needed to include it.
//
//   ModelDims, ParameterLayout         N, T, C, M and where each tensor lies in the parameter store
//                                      (StockMixer<T>'s ParameterStore, state_dict order, no padding)
//   ModelBufferSizes                   the device buffers a caller allocates (values of T or double)
//   model_forward / model_backward     the whole model on device pointers, launched on a stream
//   per_stock_forward / _backward      the per-stock block (conv, both Mixer2dTriU, channel_fc)
//   stock_head_forward / _backward     the stock mixer and both heads
//   model_forward_host, model_backward_host   the same on host arrays (copies in and out; for tests)
//
// Every function on device pointers only enqueues kernels on `stream` (a cudaStream_t passed as void*,
// null: the default stream): it allocates nothing, copies nothing to or from the host and never
// synchronises, so a sequence of them can be captured in a CUDA graph. Pointers are device memory the
// caller owns; sizes are counts of values (of T, or of double where said). Errors (bad dims, a failed
// launch) throw stockmixer::Error naming the function; faults inside a kernel surface at the caller's
// next synchronisation.
//
// Layouts (the CPU's, so that one parameter store and one batch serve both):
//   params, grads  [layout.size] each: the values and the gradients of StockMixer<T>'s ParameterStore
//                  (ParameterStore::values(), grads()), tensor by tensor at ParameterLayout's offsets
//   x, dx          [N, T, C] (the model's input; dx accumulates, +=)
//   out, dout      [N] (the model's [N, 1])
//   y              [F, N] (the per-stock block's output, transposed as on the CPU: stock n of row f at f·N + n)
//   acts           the per-stock block's activations, rows of N stocks ([row][N]: consecutive threads,
//                  one stock each, touch consecutive addresses); cuda/per_stock.hpp lists the rows
//   head           the stock head's saved values in double (cuda/stock_head.hpp lists them)
// Backward functions accumulate (+=) into grads and dx and never zero them; zeroing is the caller's.
//
// Numerics follow the CPU kernels (model/per_stock.hpp, model/stock_head.hpp): the per-stock block in
// T with LayerNorm statistics and their backward's row sums in double; the stock head entirely in
// double, rounded once to T; every parameter gradient summed over the stocks in double, in a fixed
// order (each stock's term, summed over fixed blocks of 64 stocks, the blocks' sums added in block
// order). No atomics: the same inputs give the same bits on every run. Against the CPU the
// results agree within the parity tolerances, not bit for bit (sums run in another order; GELU in
// float uses erff, not Eigen's rational erf): double within 1e-10 of the CPU's double; float within
// 1e-5 of the exact answer plus the CPU float path's own distance from it (tests/test_cuda_host.cpp).
//
// The per-thread arithmetic lives in cuda/per_stock.hpp and cuda/stock_head.hpp as __host__ __device__
// bodies, and the launch sequence as templates over a "grid"; tests/test_cuda_host.cpp runs the same
// sequence on the CPU (every thread index in turn) against the CPU model, so the bodies' arithmetic
// and indexing are tested without a device (not the launch configuration, nor what only a device can
// show: faults, races). The kernels compile with nvcc and have not yet run on a device. docs/cuda.md.
#pragma once

#include "stockmixer/cuda/kernels.hpp"
#include "stockmixer/error.hpp"

#include <string>

namespace stockmixer {
namespace cuda {

// StockMixer's dims (StockMixerConfig's without dropout, which the device path does not have).
struct ModelDims {
  Index stocks = 0;    // N
  Index lookback = 0;  // T (even)
  Index features = 0;  // C
  Index market = 0;    // M
  Index scale() const { return lookback / 2; }            // S
  Index fused() const { return 2 * lookback + scale(); }  // F
};

// Throws stockmixer::Error("<who>: <what was expected>") unless N, C, M >= 1, T even and >= 2, and every
// buffer (and so every launch) holds fewer than 2^31 values.
inline void validate(const ModelDims& dims, const std::string& who);

// Sums over the stocks (the stock head's) run in blocks of this many stocks: one partial sum per block
// (a thread each), then the blocks' sums added in block order.
constexpr Index kStockBlock = 64;
inline Index stock_blocks(Index stocks) { return (stocks + kStockBlock - 1) / kStockBlock; }

// Offsets (in values) of one Mixer2dTriU(L, C)'s tensors in the store: LN_1 and LN_2 weight and bias
// [L, C], TriU [L, L] (lower triangle; the upper one is never read and its gradient stays zero) and
// [L], the channel MixerBlock's two Linears [C, C] and [C].
struct MixerOffsets {
  Index L;
  Index ln1_w, ln1_b, ln2_w, ln2_b, triu_w, triu_b, fc1_w, fc1_b, fc2_w, fc2_b;
};

// Every tensor's offset in the parameter store, in StockMixer's declaration order (mixer.mix_layer,
// mixer.scale_mix_layer, channel_fc, time_fc, conv, stock_mixer.dense1, .dense2, .layer_norm_stock,
// time_fc_), and the store's size. tests/test_cuda_host.cpp checks it against StockMixer<T>'s store.
struct ParameterLayout {
  MixerOffsets mix, scale_mix;
  Index channel_fc_w, channel_fc_b;  // [1, C], [1]
  Index time_fc_w, time_fc_b;        // [1, F], [1]
  Index conv_w, conv_b;              // [C, C, 2], [C]
  Index dense1_w, dense1_b;          // [M, N], [M]
  Index dense2_w, dense2_b;          // [N, M], [N]
  Index ln_w, ln_b;                  // layer_norm_stock [N], [N]
  Index time_fc2_w, time_fc2_b;      // time_fc_ [1, F], [1]
  Index size;                        // values in the store
};
inline ParameterLayout parameter_layout(const ModelDims& dims);

// Sizes of the buffers the device functions take (counts of values; all are device memory):
struct ModelBufferSizes {
  Index acts;       // T: per-stock activations, written by the forward, read by the backward
  Index y;          // T: y [F, N], written by the forward, read by the backward
  Index head;       // double: the stock head's saved values, written by the forward, read by the backward
  Index head_work;  // double: the stock head's scratch (partial sums over blocks of stocks, g, dh)
  Index work;       // T: the backward's scratch (dy [F, N] and the per-stock block's temporaries)
  Index partials;   // double: the per-stock block's parameter-gradient terms, one per parameter and stock
};
inline ModelBufferSizes model_buffer_sizes(const ModelDims& dims);
// At N = 1026, T = 16, C = 5, M = 20: acts 884·N, y 40·N, work 600·N values of T; head 80·N + 1700,
// head_work 40·N + 14 542, partials 1005·N doubles (6.3 MB of float and 9.4 MB of double in all).

// The device buffers one forward (and its backward) use, sized by model_buffer_sizes.
template <class T>
struct ModelBuffers {
  T* acts;
  T* y;
  double* head;
  double* head_work;
  T* work;          // backward only (may be null for a forward)
  double* partials; // backward only (may be null for a forward)
};

// ---- the whole model -----------------------------------------------------------------------------

// out [N] = StockMixer(x [N, T, C]) with the parameter values `params`. `training`: the forward also
// keeps GELU's derivative in acts for model_backward (inference skips it); acts, y and head hold what
// the backward reads either way, and must not change between the two calls.
template <class T>
void model_forward(T* out, const T* x, const T* params, const ModelDims& dims, const ModelBuffers<T>& buffers,
                   bool training, void* stream);

// After model_forward(..., training = true) on the same x, params and buffers: grads += d(out·dout)/dθ
// for every parameter (the whole store's layout; only the model's tensors are written) and, when dx is
// not null, dx += the input gradient [N, T, C].
template <class T>
void model_backward(T* grads, T* dx, const T* dout, const T* x, const T* params, const ModelDims& dims,
                    const ModelBuffers<T>& buffers, void* stream);

// ---- the two blocks, for tests and for callers that run them apart ----------------------------------

// y [F, N] from x [N, T, C]; writes acts (per_stock.hpp's rows); `training`: acts also get GELU's derivative.
template <class T>
void per_stock_forward(T* y, T* acts, const T* x, const T* params, const ModelDims& dims, bool training,
                       void* stream);
// From dy [F, N] and the training forward's acts: grads += the gradients of conv, both mixers and
// channel_fc; dx (when not null) += the input gradient. work: model_buffer_sizes' work values
// (its first F·N are not used here), partials: its partials.
template <class T>
void per_stock_backward(T* grads, T* dx, const T* dy, const T* x, const T* acts, const T* params,
                        const ModelDims& dims, T* work, double* partials, void* stream);

// out [N] from y [F, N]; writes head (stock_head.hpp's saved values) and uses head_work.
template <class T>
void stock_head_forward(T* out, double* head, const T* y, const T* params, const ModelDims& dims,
                        double* head_work, void* stream);
// From dout [N], y and the forward's head: grads += the gradients of stock_mixer, time_fc and time_fc_;
// dy (when not null) += the gradient of y [F, N].
template <class T>
void stock_head_backward(T* grads, T* dy, const T* dout, const T* y, const double* head, const T* params,
                         const ModelDims& dims, double* head_work, void* stream);

// ---- on host arrays (each call allocates, copies in, runs on the default stream, copies out) --------

// out [N] = model_forward(x, params) (inference).
template <class T>
void model_forward_host(T* out, const T* x, const T* params, const ModelDims& dims);
// out [N] as above, then grads [layout.size] += the parameter gradients and dx [N, T, C] (when not
// null) += the input gradient for the upstream gradient dout [N].
template <class T>
void model_backward_host(T* out, T* grads, T* dx, const T* dout, const T* x, const T* params, const ModelDims& dims);

// ---- implementation (sizes and layout: plain C++, shared by the device unit and the host tests) -----

inline ParameterLayout parameter_layout(const ModelDims& d) {
  const Index N = d.stocks, T = d.lookback, S = d.scale(), C = d.features, M = d.market, F = d.fused();
  ParameterLayout p{};
  Index end = 0;
  auto take = [&end](Index n) {
    const Index at = end;
    end += n;
    return at;
  };
  auto mixer = [&](MixerOffsets& m, Index L) {
    m.L = L;
    m.ln1_w = take(L * C), m.ln1_b = take(L * C), m.ln2_w = take(L * C), m.ln2_b = take(L * C);
    m.triu_w = take(L * L), m.triu_b = take(L);
    m.fc1_w = take(C * C), m.fc1_b = take(C), m.fc2_w = take(C * C), m.fc2_b = take(C);
  };
  mixer(p.mix, T);
  mixer(p.scale_mix, S);
  p.channel_fc_w = take(C), p.channel_fc_b = take(1);
  p.time_fc_w = take(F), p.time_fc_b = take(1);
  p.conv_w = take(2 * C * C), p.conv_b = take(C);
  p.dense1_w = take(M * N), p.dense1_b = take(M);
  p.dense2_w = take(N * M), p.dense2_b = take(N);
  p.ln_w = take(N), p.ln_b = take(N);
  p.time_fc2_w = take(F), p.time_fc2_b = take(1);
  p.size = end;
  return p;
}

// Parameters of the per-stock block (both mixers, channel_fc, conv): the rows of `partials`.
inline Index per_stock_parameter_count(const ModelDims& d) {
  const Index C = d.features;
  auto mixer = [C](Index L) { return 4 * L * C + L * L + L + 2 * C * C + 2 * C; };
  return mixer(d.lookback) + mixer(d.scale()) + (C + 1) + (2 * C * C + C);
}

inline ModelBufferSizes model_buffer_sizes(const ModelDims& d) {
  const Index N = d.stocks, T = d.lookback, S = d.scale(), C = d.features, M = d.market, F = d.fused();
  const Index nb = stock_blocks(N);
  Index widest = 2 * F;  // partial sums per block: LayerNorm's moments, dense1, the backward's two rounds
  if (F * M > widest) widest = F * M;
  if (M + F + 2 > widest) widest = M + F + 2;
  ModelBufferSizes s{};
  s.acts = (S * C + 7 * (T + S) * C + 4) * N;
  s.y = F * N;
  s.head = 2 * F * N + 2 * F + 2 * F * M + M;
  s.head_work = widest * nb + (M + F + 2) + 2 * F + F * M + F * N;
  s.work = (F + F * C + S * C + 4 * T * C) * N;
  s.partials = per_stock_parameter_count(d) * N;
  return s;
}

inline void validate(const ModelDims& d, const std::string& who) {
  auto fail = [&who](const std::string& what) { throw Error(who + ": " + what); };
  if (d.stocks < 1) fail("stocks (N) must be at least 1, got " + std::to_string(d.stocks));
  if (d.lookback < 2 || d.lookback % 2)
    fail("lookback (T) must be even and at least 2, got " + std::to_string(d.lookback));
  if (d.features < 1) fail("features (C) must be at least 1, got " + std::to_string(d.features));
  if (d.market < 1) fail("market (M) must be at least 1, got " + std::to_string(d.market));
  // Every buffer, and so every launch's thread count, below 2^31 (the grid's block count stays in range).
  const double limit = 2147483647.0;
  const ModelBufferSizes s = model_buffer_sizes(d);
  for (const Index n : {s.acts, s.work, s.partials, s.head_work, parameter_layout(d).size})
    if (static_cast<double>(n) >= limit)
      fail("N = " + std::to_string(d.stocks) + ", T = " + std::to_string(d.lookback) + ", C = " +
           std::to_string(d.features) + ", M = " + std::to_string(d.market) + " needs a buffer of " +
           std::to_string(n) + " values (expected below 2^31)");
}

}  // namespace cuda
}  // namespace stockmixer
