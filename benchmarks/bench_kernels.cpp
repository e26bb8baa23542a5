// bench_kernels — every stockmixer kernel, forward and backward, at StockMixer's NASDAQ shapes, and the
// whole model (a training step, inference) at N = 1026 to 100000.
//
// Before them it measures one core's floating-point peak for the instruction set the fused kernels run
// (measure_peak, "the machine's peak" below), which the model benchmarks' peak_share divides by.
// Then the workbench runs in two phases, as llm.c's dev/cuda benchmarks do:
//   1. validation: every fast forward is checked against its plain reference on the same random
//      inputs (and linear_backward against linear_backward_naive). The reference is the kernel's
//      `_naive` evaluated in double on the float inputs, so the measured error is the fast kernel's
//      own: max |fast - ref| / max |ref| must stay <= 1e-5 for float (1e-12 for double). Any failure
//      prints the kernel and its error to stderr and exits 1 before anything is timed.
//   2. timing with Google Benchmark, in wall-clock time. Each benchmark reports its rate as a counter:
//        FLOP/s   = flops_per_iter  · iterations / wall time   (compute-bound kernels)
//        bytes/s  = bytes_per_iter  · iterations / wall time   (memory-bound kernels)
//      The formula of each count sits next to the benchmark that reports it.
//
// Shape legend (SPEC.md): N = 1026 stocks, T = 16 lookback, C = 5 features, S = T/2 = 8,
// F = 2T + S = 40, M = 20 market width, H = C hidden width of the channel mixer.
//
// Threads: every benchmark takes a `threads` argument passed to stockmixer::set_num_threads. The
// largest kernels (Linear dense1/dense2, LayerNorm over [N], rank loss) run at 1 and 2 threads
// (2 only when built with stockmixer::openmp); the others at 1.
//
// Backward benchmarks keep the kernel contract: gradients are accumulated (+=) over the iterations
// and never zeroed inside the timed loop.
//
// Run: see benchmarks/README.md.
#include "stockmixer/kernels.hpp"
#include "stockmixer/data/market.hpp"
#include "stockmixer/isa.hpp"
#include "stockmixer/train/trainer.hpp"
#include "stockmixer/parallel.hpp"
#include "stockmixer/tensor.hpp"

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include <time.h>  // clock_gettime(CLOCK_THREAD_CPUTIME_ID): the peak's clock

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace {

using stockmixer::Index;
using stockmixer::Tensor;

// ---- shapes (NASDAQ) --------------------------------------------------------------------------------

constexpr Index kN = 1026;          // stocks
constexpr Index kT = 16;            // lookback
constexpr Index kC = 5;             // features
constexpr Index kS = kT / 2;        // scale length (Conv1d k = stride = 2)
constexpr Index kF = 2 * kT + kS;   // fused time length, 40
constexpr Index kM = 20;            // market width
constexpr Index kH = kC;            // channel-mixer hidden width
constexpr Index kK = 2;             // Conv1d kernel = stride
constexpr Index kNTC = kN * kT * kC;
constexpr double kDropP = 0.1;
constexpr float kAlpha = 0.1f;

// The four Linear layers of StockMixer, as R rows x I in -> O out.
struct LinearShape {
  const char* name;
  Index rows, in, out;
};
constexpr LinearShape kLinearShapes[] = {
    {"channel_mixer_16416x5to5", kN * kT, kC, kH},  // MixerBlock(C, H) on [N, T, C]
    {"dense1_40x1026to20", kF, kN, kM},             // NoGraphMixer dense1 on [F, N]
    {"dense2_40x20to1026", kF, kM, kN},             // NoGraphMixer dense2 on [F, M]
    {"time_fc_1026x40to1", kN, kF, 1},              // time_fc on [N, F]
};
bool linear_is_large(const LinearShape& s) { return s.in == kN || s.out == kN; }

struct RowShape {  // LayerNorm: R rows of D values
  const char* name;
  Index rows, dim;
};
constexpr RowShape kLayerNormShapes[] = {
    {"TC_1026x80", kN, kT * kC},  // LayerNorm([T, C]) on [N, T, C]
    {"N_40x1026", kF, kN},        // LayerNorm(N) on [F, N]
};

struct VecShape {  // elementwise: n values
  const char* name;
  Index n;
};
constexpr VecShape kHardswishShapes[] = {
    {"FM_800", kF * kM},    // NoGraphMixer, between dense1 and dense2
    {"NTC_82080", kNTC},    // MultiScaleTimeMixer-sized activation
};

struct TriUShape {  // TriU: [B, L, K], mixing along L
  const char* name;
  Index batch, length, inner;
};
constexpr TriUShape kTriUShapes[] = {
    {"T_1026x16x5", kN, kT, kC},  // Mixer2dTriU(T, C) time mixer
    {"S_1026x8x5", kN, kS, kC},   // Mixer2dTriU(S, C) time mixer
};

// ---- helpers ----------------------------------------------------------------------------------------

template <class T>
Tensor<T> uniform(stockmixer::Shape shape, double lo, double hi, std::uint32_t seed) {
  Tensor<T> t(shape);
  std::mt19937 gen(seed);
  std::uniform_real_distribution<double> dist(lo, hi);
  for (Index i = 0; i < t.size(); ++i) t.data()[i] = static_cast<T>(dist(gen));
  return t;
}

// Same values in another precision (the double reference reads exactly the float inputs).
template <class To, class From>
Tensor<To> cast(const Tensor<From>& a) {
  Tensor<To> t(a.shape());
  for (Index i = 0; i < a.size(); ++i) t.data()[i] = static_cast<To>(a.data()[i]);
  return t;
}

// The inputs of the rank loss: base prices around the normalised close, small returns, ~90% valid.
struct RankInputs {
  Tensor<float> pred, base, gt, mask;
};
RankInputs rank_inputs(Index n, std::uint32_t seed) {
  RankInputs in{Tensor<float>({n}), Tensor<float>({n}), Tensor<float>({n}), Tensor<float>({n})};
  std::mt19937 gen(seed);
  std::uniform_real_distribution<double> price(0.5, 1.5), ret(-0.05, 0.05), u(0.0, 1.0);
  for (Index i = 0; i < n; ++i) {
    in.base.data()[i] = static_cast<float>(price(gen));
    in.pred.data()[i] = static_cast<float>(in.base.data()[i] * (1.0 + ret(gen)));
    in.gt.data()[i] = static_cast<float>(ret(gen));
    in.mask.data()[i] = u(gen) < 0.9 ? 1.0f : 0.0f;
  }
  return in;
}
// Training calls the rank loss on a new day every step. Its sorted form branches on the data (the
// sorts' comparisons, the Fenwick sweeps), and on one input repeated the branch predictor learns
// those branches: std::sort then looked three times faster than on fresh inputs. So every
// rank-loss benchmark cycles through kRankInputSets inputs.
constexpr Index kRankInputSets = 16;
std::vector<RankInputs> rank_input_sets(Index n) {
  std::vector<RankInputs> sets;
  for (Index k = 0; k < kRankInputSets; ++k) sets.push_back(rank_inputs(n, static_cast<std::uint32_t>(1 + k)));
  return sets;
}

void set_threads(benchmark::State& state) { stockmixer::set_num_threads(static_cast<int>(state.range(0))); }

void report_flops(benchmark::State& state, double flops_per_iter) {
  state.counters["FLOP/s"] = benchmark::Counter(flops_per_iter, benchmark::Counter::kIsIterationInvariantRate);
}
void report_bytes(benchmark::State& state, double bytes_per_iter) {
  state.counters["bytes/s"] = benchmark::Counter(bytes_per_iter, benchmark::Counter::kIsIterationInvariantRate);
}

double d(Index v) { return static_cast<double>(v); }

// ---- validation -------------------------------------------------------------------------------------

// max |got - ref| / max |ref| (the absolute error when ref is all zeros).
template <class A, class B>
double rel_error(const A* got, const B* ref, Index n) {
  double diff = 0.0, scale = 0.0;
  for (Index i = 0; i < n; ++i) {
    diff = std::max(diff, std::abs(static_cast<double>(got[i]) - static_cast<double>(ref[i])));
    scale = std::max(scale, std::abs(static_cast<double>(ref[i])));
  }
  return scale > 0.0 ? diff / scale : diff;
}

struct Validator {
  int failures = 0;
  void check(const std::string& kernel, double err, double tol) {
    const bool ok = err <= tol && std::isfinite(err);
    if (!ok) ++failures;
    std::fprintf(stderr, "  %-56s %.3e  (tol %.0e)  %s\n", kernel.c_str(), err, tol, ok ? "ok" : "FAILED");
  }
};

constexpr double kTolFloat = 1e-5;
constexpr double kTolDouble = 1e-12;

template <class T>
void validate_linear(Validator& v, const LinearShape& s, double tol, const char* tag) {
  const auto x = uniform<T>({s.rows, s.in}, -1, 1, 11);
  const double bound = 1.0 / std::sqrt(d(s.in));
  const auto w = uniform<T>({s.out, s.in}, -bound, bound, 12);
  const auto b = uniform<T>({s.out}, -bound, bound, 13);
  const auto dy = uniform<T>({s.rows, s.out}, -1, 1, 14);
  const auto xd = cast<double>(x), wd = cast<double>(w), bd = cast<double>(b), dyd = cast<double>(dy);
  const std::string name = std::string(tag) + "/" + s.name;

  Tensor<T> y({s.rows, s.out});
  Tensor<double> yr({s.rows, s.out});
  stockmixer::linear_forward(y.data(), x.data(), w.data(), b.data(), s.rows, s.in, s.out);
  stockmixer::linear_forward_naive(yr.data(), xd.data(), wd.data(), bd.data(), s.rows, s.in, s.out);
  v.check("linear_forward" + name, rel_error(y.data(), yr.data(), y.size()), tol);

  Tensor<T> dx({s.rows, s.in}), dw({s.out, s.in}), db({s.out});
  Tensor<double> dxr({s.rows, s.in}), dwr({s.out, s.in}), dbr({s.out});
  stockmixer::linear_backward(dx.data(), dw.data(), db.data(), dy.data(), x.data(), w.data(), s.rows, s.in, s.out);
  stockmixer::linear_backward_naive(dxr.data(), dwr.data(), dbr.data(), dyd.data(), xd.data(), wd.data(), s.rows,
                                    s.in, s.out);
  v.check("linear_backward" + name + " dx", rel_error(dx.data(), dxr.data(), dx.size()), tol);
  v.check("linear_backward" + name + " dweight", rel_error(dw.data(), dwr.data(), dw.size()), tol);
  v.check("linear_backward" + name + " dbias", rel_error(db.data(), dbr.data(), db.size()), tol);
}

int validate_all() {
  Validator v;
  std::fprintf(stderr,
               "bench_kernels: validating every fast kernel against its reference (threads: %d)\n"
               "  error = max |fast - ref| / max |ref| unless stated\n",
               stockmixer::num_threads());

  for (const auto& s : kLinearShapes) validate_linear<float>(v, s, kTolFloat, "");
  for (const auto& s : kLinearShapes) validate_linear<double>(v, s, kTolDouble, "_f64");

  for (const auto& s : kLayerNormShapes) {
    const auto x = uniform<float>({s.rows, s.dim}, -2, 3, 21);
    const auto g = uniform<float>({s.dim}, 0.5, 1.5, 22);
    const auto b = uniform<float>({s.dim}, -0.5, 0.5, 23);
    const auto xd = cast<double>(x), gd = cast<double>(g), bd = cast<double>(b);
    Tensor<float> y({s.rows, s.dim}), mean({s.rows}), rstd({s.rows});
    Tensor<double> yr({s.rows, s.dim}), meanr({s.rows}), rstdr({s.rows});
    stockmixer::layernorm_forward(y.data(), mean.data(), rstd.data(), x.data(), g.data(), b.data(), s.rows, s.dim);
    stockmixer::layernorm_forward_naive(yr.data(), meanr.data(), rstdr.data(), xd.data(), gd.data(), bd.data(),
                                        s.rows, s.dim);
    const std::string name = std::string("layernorm_forward/") + s.name;
    v.check(name + " y", rel_error(y.data(), yr.data(), y.size()), kTolFloat);
    v.check(name + " mean", rel_error(mean.data(), meanr.data(), mean.size()), kTolFloat);
    v.check(name + " rstd", rel_error(rstd.data(), rstdr.data(), rstd.size()), kTolFloat);
  }

  {  // GELU and Hardswish ship no _naive: the reference is the textbook formula in double.
    const auto x = uniform<float>({kNTC}, -5, 5, 31);
    Tensor<float> y({kNTC});
    std::vector<double> ref(static_cast<std::size_t>(kNTC));
    stockmixer::gelu_forward(y.data(), x.data(), kNTC);
    for (Index i = 0; i < kNTC; ++i) {
      const double xi = x.data()[i];
      ref[static_cast<std::size_t>(i)] = 0.5 * xi * (1.0 + std::erf(xi / std::sqrt(2.0)));
    }
    v.check("gelu_forward/NTC_82080 (vs double formula)", rel_error(y.data(), ref.data(), kNTC), kTolFloat);
    for (const auto& s : kHardswishShapes) {
      const auto xh = uniform<float>({s.n}, -5, 5, 32);
      Tensor<float> yh({s.n});
      std::vector<double> rh(static_cast<std::size_t>(s.n));
      stockmixer::hardswish_forward(yh.data(), xh.data(), s.n);
      for (Index i = 0; i < s.n; ++i) {
        const double xi = xh.data()[i];
        rh[static_cast<std::size_t>(i)] = xi * std::min(std::max(xi + 3.0, 0.0), 6.0) / 6.0;
      }
      v.check(std::string("hardswish_forward/") + s.name + " (vs double formula)", rel_error(yh.data(), rh.data(), s.n),
              kTolFloat);
    }
  }

  {  // Dropout ships no _naive either: mask values and kept share, then y == x · mask.
    const auto x = uniform<float>({kNTC}, -1, 1, 41);
    Tensor<float> mask({kNTC}), y({kNTC});
    stockmixer::dropout_mask(mask.data(), kNTC, kDropP, 42);
    stockmixer::dropout_forward(y.data(), x.data(), mask.data(), kNTC);
    const float scale = 1.0f / static_cast<float>(1.0 - kDropP);
    Index kept = 0, bad = 0;
    std::vector<double> ref(static_cast<std::size_t>(kNTC));
    for (Index i = 0; i < kNTC; ++i) {
      const float m = mask.data()[i];
      kept += m != 0.0f;
      bad += m != 0.0f && m != scale;
      ref[static_cast<std::size_t>(i)] = static_cast<double>(x.data()[i] * m);
    }
    const double kept_share = d(kept) / d(kNTC);
    v.check("dropout_mask/NTC_82080 error = |kept share - (1 - p)|", std::abs(kept_share - (1.0 - kDropP)), 1e-2);
    v.check("dropout_mask/NTC_82080 error = #values not in {0, 1/(1-p)}", d(bad), 0.0);
    v.check("dropout_forward/NTC_82080 (vs x * mask)", rel_error(y.data(), ref.data(), kNTC), kTolFloat);
  }

  {
    const Index lo = stockmixer::conv1d_output_length(kT, kK);
    const double bound = 1.0 / std::sqrt(d(kC * kK));
    const auto x = uniform<float>({kN, kT, kC}, -1, 1, 51);
    const auto w = uniform<float>({kC, kC, kK}, -bound, bound, 52);
    const auto b = uniform<float>({kC}, -bound, bound, 53);
    const auto xd = cast<double>(x), wd = cast<double>(w), bd = cast<double>(b);
    Tensor<float> y({kN, lo, kC});
    Tensor<double> yr({kN, lo, kC});
    stockmixer::conv1d_forward(y.data(), x.data(), w.data(), b.data(), kN, kT, kC, kC, kK);
    stockmixer::conv1d_forward_naive(yr.data(), xd.data(), wd.data(), bd.data(), kN, kT, kC, kC, kK);
    v.check("conv1d_forward/NTC_1026x16x5_k2", rel_error(y.data(), yr.data(), y.size()), kTolFloat);
  }

  for (const auto& s : kTriUShapes) {
    const auto x = uniform<float>({s.batch, s.length, s.inner}, -1, 1, 61);
    const auto w = uniform<float>({s.length, s.length}, -0.5, 0.5, 62);
    const auto b = uniform<float>({s.length}, -0.5, 0.5, 63);
    const auto xd = cast<double>(x), wd = cast<double>(w), bd = cast<double>(b);
    Tensor<float> y({s.batch, s.length, s.inner});
    Tensor<double> yr({s.batch, s.length, s.inner});
    stockmixer::triu_forward(y.data(), x.data(), w.data(), b.data(), s.batch, s.length, s.inner);
    stockmixer::triu_forward_naive(yr.data(), xd.data(), wd.data(), bd.data(), s.batch, s.length, s.inner);
    v.check(std::string("triu_forward/") + s.name, rel_error(y.data(), yr.data(), y.size()), kTolFloat);
  }

  {
    const auto in = rank_inputs(kN, 71);
    const auto pd = cast<double>(in.pred), bd = cast<double>(in.base), gd = cast<double>(in.gt),
               md = cast<double>(in.mask);
    Tensor<float> rr({kN});
    Tensor<double> rrr({kN});
    const auto got = stockmixer::rank_loss_forward(rr.data(), in.pred.data(), in.base.data(), in.gt.data(),
                                                   in.mask.data(), kN, kAlpha);
    const auto ref = stockmixer::rank_loss_forward_naive(rrr.data(), pd.data(), bd.data(), gd.data(), md.data(), kN,
                                                         static_cast<double>(kAlpha));
    v.check("rank_loss_forward/N_1026 rr", rel_error(rr.data(), rrr.data(), kN), kTolFloat);
    v.check("rank_loss_forward/N_1026 loss", rel_error(&got.loss, &ref.loss, 1), kTolFloat);
    v.check("rank_loss_forward/N_1026 reg", rel_error(&got.reg, &ref.reg, 1), kTolFloat);
    v.check("rank_loss_forward/N_1026 rank", rel_error(&got.rank, &ref.rank, 1), kTolFloat);
  }

  // The O(N log N) rank loss, forward and backward, against the O(N²) kernels in double on the same
  // float inputs (the naive form's three N x N matrices would not fit at 5000 in double), and in
  // double against the O(N²) kernels in double. Up to 5000 stocks: the reference is O(N²).
  for (const Index n : {Index(64), kN, Index(5000)}) {
    const auto in = rank_inputs(n, 72);
    const auto pd = cast<double>(in.pred), bd = cast<double>(in.base), gd = cast<double>(in.gt),
               md = cast<double>(in.mask);
    stockmixer::RankLossWorkspace ws(n);
    Tensor<float> rr({n}), dpred({n});
    Tensor<double> rrr({n}), dpredr({n}), rrd({n}), dpredd({n});
    const auto got = stockmixer::rank_loss_forward_sorted(rr.data(), in.pred.data(), in.base.data(), in.gt.data(),
                                                          in.mask.data(), n, kAlpha, ws);
    stockmixer::rank_loss_backward_sorted(dpred.data(), 1.0f, rr.data(), in.base.data(), in.gt.data(), in.mask.data(),
                                          n, kAlpha, ws);
    const double alpha = static_cast<double>(kAlpha);
    const auto ref = stockmixer::rank_loss_forward(rrr.data(), pd.data(), bd.data(), gd.data(), md.data(), n, alpha);
    stockmixer::rank_loss_backward(dpredr.data(), 1.0, rrr.data(), bd.data(), gd.data(), md.data(), n, alpha);
    const auto gotd = stockmixer::rank_loss_forward_sorted(rrd.data(), pd.data(), bd.data(), gd.data(), md.data(), n,
                                                           alpha, ws);
    stockmixer::rank_loss_backward_sorted(dpredd.data(), 1.0, rrd.data(), bd.data(), gd.data(), md.data(), n, alpha,
                                          ws);
    const std::string name = "rank_loss_sorted/N_" + std::to_string(n);
    v.check(name + " loss", rel_error(&got.loss, &ref.loss, 1), kTolFloat);
    v.check(name + " rank", rel_error(&got.rank, &ref.rank, 1), kTolFloat);
    v.check(name + " dpred", rel_error(dpred.data(), dpredr.data(), n), kTolFloat);
    v.check(name + "_f64 rank", rel_error(&gotd.rank, &ref.rank, 1), kTolDouble);
    v.check(name + "_f64 dpred", rel_error(dpredd.data(), dpredr.data(), n), kTolDouble);
  }

  if (v.failures) {
    std::fprintf(stderr, "bench_kernels: %d validation check(s) FAILED; nothing was timed\n", v.failures);
    return 1;
  }
  std::fprintf(stderr, "bench_kernels: all kernels validated\n");
  return 0;
}

// ---- benchmarks -------------------------------------------------------------------------------------

// Linear: y[R, O] = x[R, I] · W[O, I]^T + b
//   FLOP fwd = 2·R·I·O + R·O              (a multiply-add per weight and row, a bias add per output)
template <class T>
void bm_linear_fwd(benchmark::State& state, LinearShape s) {
  set_threads(state);
  const double bound = 1.0 / std::sqrt(d(s.in));
  const auto x = uniform<T>({s.rows, s.in}, -1, 1, 1);
  const auto w = uniform<T>({s.out, s.in}, -bound, bound, 2);
  const auto b = uniform<T>({s.out}, -bound, bound, 3);
  Tensor<T> y({s.rows, s.out});
  for (auto _ : state) {
    stockmixer::linear_forward(y.data(), x.data(), w.data(), b.data(), s.rows, s.in, s.out);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  report_flops(state, 2 * d(s.rows) * d(s.in) * d(s.out) + d(s.rows) * d(s.out));
}

// Linear backward, all three gradients:
//   FLOP bwd = 2·R·I·O (dx = dy·W) + 2·R·I·O (dW = dy^T·x) + R·O (db = Σ_r dy) = 4·R·I·O + R·O
template <class T>
void bm_linear_bwd(benchmark::State& state, LinearShape s) {
  set_threads(state);
  const double bound = 1.0 / std::sqrt(d(s.in));
  const auto x = uniform<T>({s.rows, s.in}, -1, 1, 1);
  const auto w = uniform<T>({s.out, s.in}, -bound, bound, 2);
  const auto dy = uniform<T>({s.rows, s.out}, -1, 1, 4);
  Tensor<T> dx({s.rows, s.in}), dw({s.out, s.in}), db({s.out});
  for (auto _ : state) {
    stockmixer::linear_backward(dx.data(), dw.data(), db.data(), dy.data(), x.data(), w.data(), s.rows, s.in, s.out);
    benchmark::DoNotOptimize(dx.data());
    benchmark::DoNotOptimize(dw.data());
    benchmark::ClobberMemory();
  }
  report_flops(state, 4 * d(s.rows) * d(s.in) * d(s.out) + d(s.rows) * d(s.out));
}

// LayerNorm over the last D values of R rows, s = sizeof(float):
//   FLOP fwd  = 8·R·D   (mean: add; var: sub, mul, add; y: sub, mul, mul, add)
//   bytes fwd = (2·R·D + 2·D + 2·R)·s   (read x, write y; gamma, beta; write mean, rstd)
void bm_layernorm_fwd(benchmark::State& state, RowShape s) {
  set_threads(state);
  const auto x = uniform<float>({s.rows, s.dim}, -2, 3, 1);
  const auto g = uniform<float>({s.dim}, 0.5, 1.5, 2);
  const auto b = uniform<float>({s.dim}, -0.5, 0.5, 3);
  Tensor<float> y({s.rows, s.dim}), mean({s.rows}), rstd({s.rows});
  for (auto _ : state) {
    stockmixer::layernorm_forward(y.data(), mean.data(), rstd.data(), x.data(), g.data(), b.data(), s.rows, s.dim);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  const double rd = d(s.rows) * d(s.dim);
  report_flops(state, 8 * rd);
  report_bytes(state, (2 * rd + 2 * d(s.dim) + 2 * d(s.rows)) * sizeof(float));
}

// LayerNorm backward (dx, dgamma, dbeta), s = sizeof(float):
//   FLOP bwd  = 19·R·D  (dx pass 1: g = dy·gamma, Σg, xhat (sub, mul), Σ g·xhat (mul, add) = 6;
//                        dx pass 2: g, xhat (2), g - mean(g) - xhat·mean(g·xhat) (3), ·rstd, += = 8;
//                        dgamma, dbeta: xhat (2), dy·xhat, two adds = 5)
//   bytes bwd = (4·R·D + 5·D + 2·R)·s   (read x, dy, read+write dx; gamma, dgamma, dbeta r+w; mean, rstd)
void bm_layernorm_bwd(benchmark::State& state, RowShape s) {
  set_threads(state);
  const auto x = uniform<float>({s.rows, s.dim}, -2, 3, 1);
  const auto g = uniform<float>({s.dim}, 0.5, 1.5, 2);
  const auto b = uniform<float>({s.dim}, -0.5, 0.5, 3);
  const auto dy = uniform<float>({s.rows, s.dim}, -1, 1, 4);
  Tensor<float> y({s.rows, s.dim}), mean({s.rows}), rstd({s.rows});
  stockmixer::layernorm_forward(y.data(), mean.data(), rstd.data(), x.data(), g.data(), b.data(), s.rows, s.dim);
  Tensor<float> dx({s.rows, s.dim}), dg({s.dim}), db({s.dim});
  for (auto _ : state) {
    stockmixer::layernorm_backward(dx.data(), dg.data(), db.data(), dy.data(), x.data(), mean.data(), rstd.data(),
                                   g.data(), s.rows, s.dim);
    benchmark::DoNotOptimize(dx.data());
    benchmark::ClobberMemory();
  }
  const double rd = d(s.rows) * d(s.dim);
  report_flops(state, 19 * rd);
  report_bytes(state, (4 * rd + 5 * d(s.dim) + 2 * d(s.rows)) * sizeof(float));
}

// GELU on n values, s = sizeof(float) (erf and exp make FLOPs ill-defined: bytes only):
//   bytes fwd = 2·n·s   (read x, write y)
//   bytes bwd = 4·n·s   (read dy, x, read+write dx)
void bm_gelu_fwd(benchmark::State& state, VecShape s) {
  set_threads(state);
  const auto x = uniform<float>({s.n}, -5, 5, 1);
  Tensor<float> y({s.n});
  for (auto _ : state) {
    stockmixer::gelu_forward(y.data(), x.data(), s.n);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  report_bytes(state, 2 * d(s.n) * sizeof(float));
}
void bm_gelu_bwd(benchmark::State& state, VecShape s) {
  set_threads(state);
  const auto x = uniform<float>({s.n}, -5, 5, 1);
  const auto dy = uniform<float>({s.n}, -1, 1, 2);
  Tensor<float> dx({s.n});
  for (auto _ : state) {
    stockmixer::gelu_backward(dx.data(), dy.data(), x.data(), s.n);
    benchmark::DoNotOptimize(dx.data());
    benchmark::ClobberMemory();
  }
  report_bytes(state, 4 * d(s.n) * sizeof(float));
}

// Hardswish on n values (inputs span all three pieces, [-5, 5]), s = sizeof(float):
//   bytes fwd = 2·n·s   (read x, write y)
//   bytes bwd = 4·n·s   (read dy, x, read+write dx)
void bm_hardswish_fwd(benchmark::State& state, VecShape s) {
  set_threads(state);
  const auto x = uniform<float>({s.n}, -5, 5, 1);
  Tensor<float> y({s.n});
  for (auto _ : state) {
    stockmixer::hardswish_forward(y.data(), x.data(), s.n);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  report_bytes(state, 2 * d(s.n) * sizeof(float));
}
void bm_hardswish_bwd(benchmark::State& state, VecShape s) {
  set_threads(state);
  const auto x = uniform<float>({s.n}, -5, 5, 1);
  const auto dy = uniform<float>({s.n}, -1, 1, 2);
  Tensor<float> dx({s.n});
  for (auto _ : state) {
    stockmixer::hardswish_backward(dx.data(), dy.data(), x.data(), s.n);
    benchmark::DoNotOptimize(dx.data());
    benchmark::ClobberMemory();
  }
  report_bytes(state, 4 * d(s.n) * sizeof(float));
}

// Conv1d(C, C, K, stride K) on x [N, T, C] -> y [N, S, C], S = T / K:
//   FLOP fwd = 2·N·S·C·C·K + N·S·C        (a multiply-add per weight tap and output, a bias add)
//   FLOP bwd = 2·N·S·C·C·K (dx) + 2·N·S·C·C·K (dweight) + N·S·C (dbias) = 4·N·S·C·C·K + N·S·C
void bm_conv1d_fwd(benchmark::State& state) {
  set_threads(state);
  const Index lo = stockmixer::conv1d_output_length(kT, kK);
  const double bound = 1.0 / std::sqrt(d(kC * kK));
  const auto x = uniform<float>({kN, kT, kC}, -1, 1, 1);
  const auto w = uniform<float>({kC, kC, kK}, -bound, bound, 2);
  const auto b = uniform<float>({kC}, -bound, bound, 3);
  Tensor<float> y({kN, lo, kC});
  for (auto _ : state) {
    stockmixer::conv1d_forward(y.data(), x.data(), w.data(), b.data(), kN, kT, kC, kC, kK);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  report_flops(state, 2 * d(kN) * d(lo) * d(kC) * d(kC) * d(kK) + d(kN) * d(lo) * d(kC));
}
void bm_conv1d_bwd(benchmark::State& state) {
  set_threads(state);
  const Index lo = stockmixer::conv1d_output_length(kT, kK);
  const double bound = 1.0 / std::sqrt(d(kC * kK));
  const auto x = uniform<float>({kN, kT, kC}, -1, 1, 1);
  const auto w = uniform<float>({kC, kC, kK}, -bound, bound, 2);
  const auto dy = uniform<float>({kN, lo, kC}, -1, 1, 4);
  Tensor<float> dx({kN, kT, kC}), dw({kC, kC, kK}), db({kC});
  for (auto _ : state) {
    stockmixer::conv1d_backward(dx.data(), dw.data(), db.data(), dy.data(), x.data(), w.data(), kN, kT, kC, kC, kK);
    benchmark::DoNotOptimize(dx.data());
    benchmark::DoNotOptimize(dw.data());
    benchmark::ClobberMemory();
  }
  report_flops(state, 4 * d(kN) * d(lo) * d(kC) * d(kC) * d(kK) + d(kN) * d(lo) * d(kC));
}

// TriU(L) along L of [B, L, K]: row i of the lower-triangular weight has i + 1 taps, L(L+1)/2 in all.
//   FLOP fwd = 2·B·K·L(L+1)/2 + B·L·K = B·K·L(L+1) + B·L·K
//   FLOP bwd = B·K·L(L+1) (dx) + B·K·L(L+1) (dweight) + B·L·K (dbias) = 2·B·K·L(L+1) + B·L·K
void bm_triu_fwd(benchmark::State& state, TriUShape s) {
  set_threads(state);
  const auto x = uniform<float>({s.batch, s.length, s.inner}, -1, 1, 1);
  const auto w = uniform<float>({s.length, s.length}, -0.5, 0.5, 2);
  const auto b = uniform<float>({s.length}, -0.5, 0.5, 3);
  Tensor<float> y({s.batch, s.length, s.inner});
  for (auto _ : state) {
    stockmixer::triu_forward(y.data(), x.data(), w.data(), b.data(), s.batch, s.length, s.inner);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  const double bk = d(s.batch) * d(s.inner);
  report_flops(state, bk * d(s.length) * d(s.length + 1) + bk * d(s.length));
}
void bm_triu_bwd(benchmark::State& state, TriUShape s) {
  set_threads(state);
  const auto x = uniform<float>({s.batch, s.length, s.inner}, -1, 1, 1);
  const auto w = uniform<float>({s.length, s.length}, -0.5, 0.5, 2);
  const auto dy = uniform<float>({s.batch, s.length, s.inner}, -1, 1, 4);
  Tensor<float> dx({s.batch, s.length, s.inner}), dw({s.length, s.length}), db({s.length});
  for (auto _ : state) {
    stockmixer::triu_backward(dx.data(), dw.data(), db.data(), dy.data(), x.data(), w.data(), s.batch, s.length,
                              s.inner);
    benchmark::DoNotOptimize(dx.data());
    benchmark::DoNotOptimize(dw.data());
    benchmark::ClobberMemory();
  }
  const double bk = d(s.batch) * d(s.inner);
  report_flops(state, 2 * bk * d(s.length) * d(s.length + 1) + bk * d(s.length));
}

// Dropout at p = 0.1 on n = N·T·C values, s = sizeof(float):
//   bytes mask = 1·n·s  (write mask; one splitmix64 hash per element)
//   bytes fwd  = 3·n·s  (read x, mask, write y)
//   bytes bwd  = 4·n·s  (read dy, mask, read+write dx)
void bm_dropout_mask(benchmark::State& state) {
  set_threads(state);
  Tensor<float> mask({kNTC});
  for (auto _ : state) {
    stockmixer::dropout_mask(mask.data(), kNTC, kDropP, 42);
    benchmark::DoNotOptimize(mask.data());
    benchmark::ClobberMemory();
  }
  report_bytes(state, 1 * d(kNTC) * sizeof(float));
}
void bm_dropout_fwd(benchmark::State& state) {
  set_threads(state);
  const auto x = uniform<float>({kNTC}, -1, 1, 1);
  Tensor<float> mask({kNTC}), y({kNTC});
  stockmixer::dropout_mask(mask.data(), kNTC, kDropP, 42);
  for (auto _ : state) {
    stockmixer::dropout_forward(y.data(), x.data(), mask.data(), kNTC);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  report_bytes(state, 3 * d(kNTC) * sizeof(float));
}
void bm_dropout_bwd(benchmark::State& state) {
  set_threads(state);
  const auto dy = uniform<float>({kNTC}, -1, 1, 2);
  Tensor<float> mask({kNTC}), dx({kNTC});
  stockmixer::dropout_mask(mask.data(), kNTC, kDropP, 42);
  for (auto _ : state) {
    stockmixer::dropout_backward(dx.data(), dy.data(), mask.data(), kNTC);
    benchmark::DoNotOptimize(dx.data());
    benchmark::ClobberMemory();
  }
  report_bytes(state, 4 * d(kNTC) * sizeof(float));
}

// Rank loss on N stocks, alpha = 0.1, ~90% of the mask ones. O(N) terms (rr, reg) are not counted,
// nor are the relu's compares.
//   FLOP fwd   = 6·N²   per pair: P_ij = ((rr_i - rr_j)·(gt_j - gt_i))·(m_i·m_j) (5), Σ relu (1)
//   FLOP bwd   = 8·N²   per pair: P_ij (5), hinge += (gt_j - gt_i)·m_j (3)
//   FLOP naive = 6·N²   the same arithmetic through three materialised N x N matrices
void bm_rank_loss_fwd(benchmark::State& state, Index n) {
  set_threads(state);
  const auto sets = rank_input_sets(n);
  Tensor<float> rr({n});
  Index k = 0;
  for (auto _ : state) {
    const auto& in = sets[static_cast<std::size_t>(k++ % kRankInputSets)];
    auto out = stockmixer::rank_loss_forward(rr.data(), in.pred.data(), in.base.data(), in.gt.data(),
                                             in.mask.data(), n, kAlpha);
    benchmark::DoNotOptimize(out);
    benchmark::ClobberMemory();
  }
  report_flops(state, 6 * d(n) * d(n));
}
// Each input's rr from its forward, made before timing.
// Each set's rr (the sorted forward writes the same rr as the O(N²) one, and takes milliseconds where
// that takes seconds at N = 20 000 and minutes at 100 000).
std::vector<Tensor<float>> rank_rr(const std::vector<RankInputs>& sets, Index n) {
  std::vector<Tensor<float>> rr;
  stockmixer::RankLossWorkspace ws(n);
  for (const auto& in : sets) {
    rr.emplace_back(stockmixer::Shape{n});
    stockmixer::rank_loss_forward_sorted(rr.back().data(), in.pred.data(), in.base.data(), in.gt.data(),
                                         in.mask.data(), n, kAlpha, ws);
  }
  return rr;
}
void bm_rank_loss_bwd(benchmark::State& state, Index n) {
  set_threads(state);
  const auto sets = rank_input_sets(n);
  const auto rr = rank_rr(sets, n);
  Tensor<float> dpred({n});
  Index k = 0;
  for (auto _ : state) {
    const auto u = static_cast<std::size_t>(k++ % kRankInputSets);
    const auto& in = sets[u];
    stockmixer::rank_loss_backward(dpred.data(), 1.0f, rr[u].data(), in.base.data(), in.gt.data(), in.mask.data(), n,
                                   kAlpha);
    benchmark::DoNotOptimize(dpred.data());
    benchmark::ClobberMemory();
  }
  report_flops(state, 8 * d(n) * d(n));
}
void bm_rank_loss_fwd_naive(benchmark::State& state) {
  set_threads(state);
  const auto in = rank_inputs(kN, 1);
  Tensor<float> rr({kN});
  for (auto _ : state) {
    auto out = stockmixer::rank_loss_forward_naive(rr.data(), in.pred.data(), in.base.data(), in.gt.data(),
                                                   in.mask.data(), kN, kAlpha);
    benchmark::DoNotOptimize(out);
    benchmark::ClobberMemory();
  }
  report_flops(state, 6 * d(kN) * d(kN));
}

// The O(N log N) rank loss (rank_loss_{forward,backward}_sorted) on the same inputs, with a workspace
// sized before timing (the timed loop allocates nothing). Its work is two sorts of the m masked-in
// stocks and two Fenwick sweeps (2·m·log2 K node visits each way), so no FLOP count: the counter is
//   stocks/s  = N · iterations / wall time
// Compare its time with rank_loss_{fwd,bwd}/N_<n> (O(N²)) at the same N.
void bm_rank_loss_sorted_fwd(benchmark::State& state, Index n) {
  set_threads(state);
  const auto sets = rank_input_sets(n);
  Tensor<float> rr({n});
  stockmixer::RankLossWorkspace ws(n);
  Index k = 0;
  for (auto _ : state) {
    const auto& in = sets[static_cast<std::size_t>(k++ % kRankInputSets)];
    auto out = stockmixer::rank_loss_forward_sorted(rr.data(), in.pred.data(), in.base.data(), in.gt.data(),
                                                    in.mask.data(), n, kAlpha, ws);
    benchmark::DoNotOptimize(out);
    benchmark::ClobberMemory();
  }
  state.counters["stocks/s"] = benchmark::Counter(d(n), benchmark::Counter::kIsIterationInvariantRate);
}
void bm_rank_loss_sorted_bwd(benchmark::State& state, Index n) {
  set_threads(state);
  const auto sets = rank_input_sets(n);
  const auto rr = rank_rr(sets, n);
  Tensor<float> dpred({n});
  stockmixer::RankLossWorkspace ws(n);
  Index k = 0;
  for (auto _ : state) {
    const auto u = static_cast<std::size_t>(k++ % kRankInputSets);
    const auto& in = sets[u];
    stockmixer::rank_loss_backward_sorted(dpred.data(), 1.0f, rr[u].data(), in.base.data(), in.gt.data(),
                                          in.mask.data(), n, kAlpha, ws);
    benchmark::DoNotOptimize(dpred.data());
    benchmark::ClobberMemory();
  }
  state.counters["stocks/s"] = benchmark::Counter(d(n), benchmark::Counter::kIsIterationInvariantRate);
}

// ---- the machine's peak ------------------------------------------------------------------------------
//
// One core's floating-point peak for the instruction set the fused kernels run (kernel_isa(): the
// widest the CPU has, capped by STOCKMIXER_MAX_ISA), measured rather than taken from a data sheet:
//   avx512    512-bit FMAs (16 floats, 8 doubles), 16 independent chains (32 registers)
//   avx2      256-bit FMAs (8 floats, 4 doubles), 12 chains (16 registers: 12 accumulators, 2 operands)
//   baseline  128-bit SSE2 multiply, then add (4 floats, 2 doubles), 12 chains: the build's own target
//             has no FMA, so a multiply-add is two instructions there, as in the kernels' baseline version
// Each chain is acc = acc·a + b, dependent on itself only; 12 or more chains keep more operations in
// flight than FMA latency (4-5 cycles) times the FMA ports (2) needs, so the loop runs at the ports'
// throughput. a is just below 1 and b small, so every chain converges to b / (1 - a) without overflow or
// subnormals. FLOP per step: chains · lanes · 2. Each loop is compiled for its set (target attributes,
// as isa.hpp's versions; intrinsics, so no contraction is left to the compiler), reads a and b at run
// time and returns the sum of its accumulators, which the caller keeps: nothing can be folded or
// dropped. The peak is the best of kPeakRuns runs of at least kPeakSeconds each, timed in this
// thread's CPU time (CLOCK_THREAD_CPUTIME_ID): on a machine where other processes take turns on the
// core, wall time would count their turns too, and the peak is what the core does while it runs us.
// It is measured first, before validation starts OpenMP's threads (whose spinning would share the
// core's FMA units through a sibling hyperthread).
struct Peak {
  const char* isa = "none";
  double f32 = 0, f64 = 0;  // FLOP/s; 0 where not measured (not x86-64)
};
Peak g_peak;

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define STOCKMIXER_PEAK_LOOP(NAME, TARGET, VEC, SET1, MULADD, STORE, T, LANES, CHAINS)                   \
  __attribute__((target(TARGET), noinline)) double NAME(std::int64_t steps, double a_in, double b_in) { \
    const VEC a = SET1(static_cast<T>(a_in)), b = SET1(static_cast<T>(b_in));                           \
    VEC acc[CHAINS];                                                                                    \
    for (int j = 0; j < CHAINS; ++j) acc[j] = SET1(static_cast<T>(1 + 0.001 * j));                     \
    for (std::int64_t i = 0; i < steps; ++i) {                                                          \
      _Pragma("GCC unroll 16") for (int j = 0; j < CHAINS; ++j) acc[j] = MULADD(acc[j], a, b);          \
    }                                                                                                   \
    alignas(64) T lanes[LANES];                                                                         \
    double sum = 0;                                                                                     \
    for (int j = 0; j < CHAINS; ++j) {                                                                  \
      STORE(lanes, acc[j]);                                                                             \
      for (int k = 0; k < LANES; ++k) sum += static_cast<double>(lanes[k]);                             \
    }                                                                                                   \
    return sum;                                                                                         \
  }
inline __m128 sse2_muladd_ps(__m128 x, __m128 a, __m128 b) { return _mm_add_ps(_mm_mul_ps(x, a), b); }
inline __m128d sse2_muladd_pd(__m128d x, __m128d a, __m128d b) { return _mm_add_pd(_mm_mul_pd(x, a), b); }
STOCKMIXER_PEAK_LOOP(peak_avx512_f32, "avx512f,fma", __m512, _mm512_set1_ps, _mm512_fmadd_ps, _mm512_store_ps, float, 16, 16)
STOCKMIXER_PEAK_LOOP(peak_avx512_f64, "avx512f,fma", __m512d, _mm512_set1_pd, _mm512_fmadd_pd, _mm512_store_pd, double, 8, 16)
STOCKMIXER_PEAK_LOOP(peak_avx2_f32, "avx2,fma", __m256, _mm256_set1_ps, _mm256_fmadd_ps, _mm256_store_ps, float, 8, 12)
STOCKMIXER_PEAK_LOOP(peak_avx2_f64, "avx2,fma", __m256d, _mm256_set1_pd, _mm256_fmadd_pd, _mm256_store_pd, double, 4, 12)
STOCKMIXER_PEAK_LOOP(peak_sse2_f32, "sse2", __m128, _mm_set1_ps, sse2_muladd_ps, _mm_store_ps, float, 4, 12)
STOCKMIXER_PEAK_LOOP(peak_sse2_f64, "sse2", __m128d, _mm_set1_pd, sse2_muladd_pd, _mm_store_pd, double, 2, 12)
#undef STOCKMIXER_PEAK_LOOP

constexpr int kPeakRuns = 7;
constexpr double kPeakSeconds = 0.02;

double thread_seconds() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

// FLOP/s of loop (flop_per_step FLOP a step): the best of kPeakRuns runs, each of a step count that
// takes at least kPeakSeconds. `sink` keeps every run's result.
double time_peak(double (*loop)(std::int64_t, double, double), double flop_per_step, double& sink) {
  volatile double a = 0.999999, b = 1e-6;  // read at run time: the loop cannot be evaluated at compile time
  std::int64_t steps = 1 << 12;
  for (;;) {  // calibrate
    const double t0 = thread_seconds();
    sink += loop(steps, a, b);
    if (thread_seconds() - t0 >= kPeakSeconds) break;
    steps *= 2;
  }
  double best = 0;
  for (int r = 0; r < kPeakRuns; ++r) {
    const double t0 = thread_seconds();
    sink += loop(steps, a, b);
    best = std::max(best, flop_per_step * static_cast<double>(steps) / (thread_seconds() - t0));
  }
  return best;
}

Peak measure_peak() {
  Peak p;
  double sink = 0;
  const stockmixer::Isa isa = stockmixer::kernel_isa();
  p.isa = stockmixer::isa_name(isa);
  switch (isa) {
    case stockmixer::Isa::avx512:
      p.f32 = time_peak(peak_avx512_f32, 16 * 16 * 2, sink);
      p.f64 = time_peak(peak_avx512_f64, 16 * 8 * 2, sink);
      break;
    case stockmixer::Isa::avx2:
      p.f32 = time_peak(peak_avx2_f32, 12 * 8 * 2, sink);
      p.f64 = time_peak(peak_avx2_f64, 12 * 4 * 2, sink);
      break;
    case stockmixer::Isa::baseline:
      p.f32 = time_peak(peak_sse2_f32, 12 * 4 * 2, sink);
      p.f64 = time_peak(peak_sse2_f64, 12 * 2 * 2, sink);
      break;
  }
  benchmark::DoNotOptimize(sink);
  return p;
}
#else
Peak measure_peak() { return Peak{}; }  // the loops above are x86-64's: no peak, no peak_share
#endif

// ---- the whole model ---------------------------------------------------------------------------------
//
// One training step (forward, get_loss with the sorted rank loss, backward, Adam) and one inference
// (StockMixer::predict) at T = 16, C = 5, M = 20 for N = 1026 (NASDAQ), 1737 (NYSE), 5000, 20000 and
// 100000, on the synthetic market (the arithmetic does not depend on the values). FLOP/s counts the matmul-like
// ops only, as multiply-adds of one forward pass (S = T/2, F = 2T + S):
//   conv (k = 2)          N·S·C·C·2
//   TriU time mixers      N·C·T(T+1)/2 + N·C·S(S+1)/2        (the lower triangle only)
//   channel mixers        2·N·T·C² + 2·N·S·C²                 (two C x C Linears each)
//   channel_fc            N·F·C
//   time_fc, time_fc_     2·N·F
//   dense1, dense2        2·F·N·M
// 2 FLOPs per multiply-add; a training step does each product three times (forward, dx, dW). LayerNorm,
// the activations, the loss and Adam are left out (a few FLOPs per value, memory-bound), so the rate is
// a lower bound. NASDAQ: 4.45 M multiply-adds forward, 8.9 MFLOP inference, 26.7 MFLOP a step.
// peak_share is that rate over g_peak.f32, this core's float peak for the instruction set the fused
// kernels run (measure_peak above, before any benchmark): a fraction, which Google Benchmark prints
// with a "/s" because it is computed as a rate.

double forward_macs(double n, double t, double c, double m) {
  const double s = t / 2, f = 2 * t + s;
  return n * s * c * c * 2 + n * c * t * (t + 1) / 2 + n * c * s * (s + 1) / 2 + 2 * n * t * c * c +
         2 * n * s * c * c + n * f * c + 2 * n * f + 2 * f * n * m;
}

// The step is Trainer::train_step (the one the tool and the tests run) on a synthetic market of N
// stocks in the real data's format, on kWindows different training days in turn (as training does:
// the rank loss's branches depend on the day, see kRankInputSets); inference is StockMixer::predict on
// one of its windows.
struct ModelBench {
  explicit ModelBench(Index n) : market(synthetic(n)), trainer(market, config()) {
    stockmixer::data::get_batch(market, 0, kT, batch);
  }
  static stockmixer::data::Market<float> synthetic(Index n) {
    stockmixer::data::SyntheticOptions o;
    o.stocks = n;
    o.days = 48;
    return stockmixer::data::synthetic_market<float>(o);
  }
  static stockmixer::train::TrainConfig config() {
    stockmixer::train::TrainConfig c;  // T = 16, M = 20, alpha = 0.1, Adam(1e-3)
    c.valid_index = 36;
    c.test_index = 42;
    c.strict_split = true;  // the windows it times end before valid_index (TrainConfig::validate checks)
    return c;
  }
  static constexpr Index kWindows = 16;  // offsets 0..15: windows end before day 36 (validation)
  void step() { trainer.train_step(next++ % kWindows); }
  Index next = 0;
  const Tensor<float>& predict() { return trainer.model().predict(batch.x.map()); }
  stockmixer::data::Market<float> market;
  stockmixer::train::Trainer<float> trainer;
  stockmixer::data::Batch<float> batch;
};

// The fused per-stock kernel (conv, both Mixer2dTriU, channel_fc) at N stocks, on a model's initial
// weights. Its multiply-adds per forward are forward_macs without the stock mixer and the heads; the
// backward recomputes the forward, then does twice its work.
double per_stock_macs(double n, double t, double c) {
  const double s = t / 2, f = 2 * t + s;
  return n * s * c * c * 2 + n * c * t * (t + 1) / 2 + n * c * s * (s + 1) / 2 + 2 * n * t * c * c +
         2 * n * s * c * c + n * f * c;
}

struct PerStockBench {
  explicit PerStockBench(Index n)
      : model(stockmixer::StockMixerConfig{n, kT, kC, 20}), x(uniform<float>({n, kT, kC}, -1, 1, 3)),
        y({2 * kT + kT / 2, n}), dy(uniform<float>({2 * kT + kT / 2, n}, -1, 1, 4)), n_(n) {}
  void forward() {
    stockmixer::per_stock_forward(y.data(), x.data(), model.conv, model.mixer, model.channel_fc, n_, kT, kC, static_cast<float*>(nullptr),
                                  workspace);
  }
  void backward() {
    stockmixer::per_stock_backward<float>(nullptr, dy.data(), x.data(), model.conv, model.mixer, model.channel_fc, n_,
                                          kT, kC, static_cast<float*>(nullptr), workspace);
  }
  stockmixer::StockMixer<float> model;
  stockmixer::PerStockWorkspace<float> workspace;
  Tensor<float> x, y, dy;
  Index n_;
};

// The fused stock mixer and heads at N stocks, on a model's initial weights, y [F, N] random. FLOP
// counters count the N·M·F products only (dense1 forward; dW1 and dxn backward): the rest is O(N·(F + M)).
struct StockHeadBench {
  static constexpr Index kF = 2 * kT + kT / 2, kM = 20;
  explicit StockHeadBench(Index n)
      : model(stockmixer::StockMixerConfig{n, kT, kC, kM}), y(uniform<float>({kF, n}, -1, 1, 3)), out({n}),
        dout(uniform<float>({n}, -1, 1, 4)), dy({kF, n}), n_(n) {
    stash = stash_memory.get(stockmixer::stock_head_stash_size(n, kF, kM));  // 64-byte aligned, as the tape's
  }
  void forward() {
    stockmixer::stock_head_forward(out.data(), y.data(), model.stock_mixer, model.time_fc, model.time_fc_, n_, kF, kM,
                                   stash, workspace);
  }
  void backward() {
    stockmixer::stock_head_backward(dy.data(), dout.data(), model.stock_mixer, model.time_fc, model.time_fc_, n_, kF,
                                    kM, stash, workspace);
  }
  stockmixer::StockMixer<float> model;
  stockmixer::StockHeadWorkspace workspace;
  Tensor<float> y, out, dout, dy;
  stockmixer::Scratch<double> stash_memory;
  double* stash = nullptr;
  Index n_;
};

// One pass (Bench::forward or Bench::backward) of a fused kernel, after an untimed forward that sizes
// every buffer (and fills the stock head's stash for its backward); `flops` per pass.
template <class Bench, void (Bench::*Pass)()>
void bm_fused(benchmark::State& state, Index n, double flops) {
  set_threads(state);
  Bench b(n);
  b.forward();
  for (auto _ : state) {
    (b.*Pass)();
    benchmark::ClobberMemory();
  }
  report_flops(state, flops);
}

void report_model_flops(benchmark::State& state, double flops) {
  report_flops(state, flops);
  if (g_peak.f32 > 0)
    state.counters["peak_share"] = benchmark::Counter(flops / g_peak.f32, benchmark::Counter::kIsIterationInvariantRate);
}

void bm_model_train_step(benchmark::State& state, Index n) {
  set_threads(state);
  ModelBench b(n);
  b.step();  // sizes every buffer
  for (auto _ : state) {
    b.step();
    benchmark::ClobberMemory();
  }
  report_model_flops(state, 6 * forward_macs(d(n), kT, kC, 20));
}

void bm_model_inference(benchmark::State& state, Index n) {
  set_threads(state);
  ModelBench b(n);
  b.predict();
  for (auto _ : state) {
    benchmark::DoNotOptimize(b.predict().data());
    benchmark::ClobberMemory();
  }
  report_model_flops(state, 2 * forward_macs(d(n), kT, kC, 20));
}

// ---- registration -----------------------------------------------------------------------------------

// Every benchmark is named <kernel>_<fwd|bwd>/<shape>/threads:<t>. `large` kernels also run on 2
// threads when OpenMP is linked (without it set_num_threads is a no-op, so 2 would be a lie).
// Wall-clock time throughout (UseRealTime): Google Benchmark's CPU time counts the calling thread
// only, which would flatter every OpenMP run; the rate counters divide by the same wall time.
template <class Fn, class... Args>
void add(const std::string& name, bool large, benchmark::TimeUnit unit, Fn fn, Args... args) {
  auto* b = benchmark::RegisterBenchmark(name.c_str(), fn, args...);
  b->ArgName("threads")->Arg(1)->Unit(unit)->UseRealTime();
#ifdef _OPENMP
  if (large) b->Arg(2);
#else
  (void)large;
#endif
}

void register_all() {
  constexpr auto us = benchmark::kMicrosecond;
  for (const auto& s : kLinearShapes) {
    add(std::string("linear_fwd/") + s.name, linear_is_large(s), us, bm_linear_fwd<float>, s);
    add(std::string("linear_bwd/") + s.name, linear_is_large(s), us, bm_linear_bwd<float>, s);
  }
  for (const auto& s : kLinearShapes) {
    add(std::string("linear_fwd_f64/") + s.name, false, us, bm_linear_fwd<double>, s);
    add(std::string("linear_bwd_f64/") + s.name, false, us, bm_linear_bwd<double>, s);
  }
  for (const auto& s : kLayerNormShapes) {
    const bool large = s.dim == kN;  // LayerNorm(N) of the stock mixer
    add(std::string("layernorm_fwd/") + s.name, large, us, bm_layernorm_fwd, s);
    add(std::string("layernorm_bwd/") + s.name, large, us, bm_layernorm_bwd, s);
  }
  const VecShape ntc{"NTC_82080", kNTC};
  add("gelu_fwd/NTC_82080", false, us, bm_gelu_fwd, ntc);
  add("gelu_bwd/NTC_82080", false, us, bm_gelu_bwd, ntc);
  for (const auto& s : kHardswishShapes) {
    add(std::string("hardswish_fwd/") + s.name, false, us, bm_hardswish_fwd, s);
    add(std::string("hardswish_bwd/") + s.name, false, us, bm_hardswish_bwd, s);
  }
  add("conv1d_fwd/NTC_1026x16x5_k2", false, us, bm_conv1d_fwd);
  add("conv1d_bwd/NTC_1026x16x5_k2", false, us, bm_conv1d_bwd);
  for (const auto& s : kTriUShapes) {
    add(std::string("triu_fwd/") + s.name, false, us, bm_triu_fwd, s);
    add(std::string("triu_bwd/") + s.name, false, us, bm_triu_bwd, s);
  }
  add("dropout_mask/NTC_82080_p0.1", false, us, bm_dropout_mask);
  add("dropout_fwd/NTC_82080_p0.1", false, us, bm_dropout_fwd);
  add("dropout_bwd/NTC_82080_p0.1", false, us, bm_dropout_bwd);
  add("rank_loss_fwd/N_1026", true, us, bm_rank_loss_fwd, kN);
  add("rank_loss_bwd/N_1026", true, us, bm_rank_loss_bwd, kN);
  add("rank_loss_fwd_naive/N_1026", false, us, bm_rank_loss_fwd_naive);
  // O(N²) against O(N log N): the small sizes find the switch-over, the large ones the gap.
  for (const Index n : {Index(16), Index(32), Index(64), Index(128), Index(256), Index(512), kN, Index(5000), Index(20000),
                        Index(100000)}) {
    const std::string shape = "/N_" + std::to_string(n);
    if (n != kN && n <= 20000) {
      add("rank_loss_fwd" + shape, true, us, bm_rank_loss_fwd, n);
      add("rank_loss_bwd" + shape, true, us, bm_rank_loss_bwd, n);
    }
    add("rank_loss_sorted_fwd" + shape, true, us, bm_rank_loss_sorted_fwd, n);
    add("rank_loss_sorted_bwd" + shape, true, us, bm_rank_loss_sorted_bwd, n);
  }
  const double head_macs = d(kN) * StockHeadBench::kM * StockHeadBench::kF;  // the N·M·F products only
  add("per_stock_fwd/NTC_1026x16x5", true, us, bm_fused<PerStockBench, &PerStockBench::forward>, kN,
      2 * per_stock_macs(d(kN), kT, kC));
  add("per_stock_bwd/NTC_1026x16x5", true, us, bm_fused<PerStockBench, &PerStockBench::backward>, kN,
      6 * per_stock_macs(d(kN), kT, kC));
  add("stock_head_fwd/FN_40x1026_M20", true, us, bm_fused<StockHeadBench, &StockHeadBench::forward>, kN,
      2 * head_macs);
  add("stock_head_bwd/FN_40x1026_M20", true, us, bm_fused<StockHeadBench, &StockHeadBench::backward>, kN,
      4 * head_macs);
  for (const Index n : {kN, Index(1737), Index(5000), Index(20000), Index(100000)}) {
    const std::string shape = "/N_" + std::to_string(n);
    add("model_train_step" + shape, true, us, bm_model_train_step, n);
    add("model_inference" + shape, true, us, bm_model_inference, n);
  }
}

}  // namespace

int main(int argc, char** argv) {
  // Parse Google Benchmark's flags first (so --help answers at once), validate, then time.
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  g_peak = measure_peak();  // first: see measure_peak
  if (validate_all() != 0) return 1;
#ifdef _OPENMP
  benchmark::AddCustomContext("stockmixer_openmp", "yes, max threads " + std::to_string(stockmixer::num_threads()));
#else
  benchmark::AddCustomContext("stockmixer_openmp", "no (every kernel runs on 1 thread)");
#endif
  benchmark::AddCustomContext("stockmixer_validation", "passed");
  benchmark::AddCustomContext("stockmixer_isa", g_peak.isa);
  if (g_peak.f32 > 0) {
    char f32[32], f64[32];  // the context is text: full precision, performance_page.py divides by these
    std::snprintf(f32, sizeof f32, "%.6g", g_peak.f32);
    std::snprintf(f64, sizeof f64, "%.6g", g_peak.f64);
    benchmark::AddCustomContext("stockmixer_peak_flops_f32", f32);
    benchmark::AddCustomContext("stockmixer_peak_flops_f64", f64);
    std::fprintf(stderr,
                 "bench_kernels: one core's peak for the fused kernels' instruction set (%s): %.1f GFLOP/s float, "
                 "%.1f GFLOP/s double; model_* peak_share divides by the float figure\n",
                 g_peak.isa, g_peak.f32 / 1e9, g_peak.f64 / 1e9);
  } else {
    std::fprintf(stderr, "bench_kernels: no peak measured on this architecture (x86-64 only), so no peak_share\n");
  }
  register_all();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
