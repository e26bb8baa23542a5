// stockmixer/optim/adam.hpp — Adam, bit for bit as torch.optim.Adam / torch.optim.AdamW of PyTorch 1.13
// (single-tensor CPU path: foreach=False, amsgrad=False, maximize=False), in float or double.
//
//   once per step():  t += 1                                   (one counter for all tensors)
//   per element, in PyTorch's order, each line rounded to T as PyTorch rounds it:
//     L2 decay (Adam)       g  = g + wd·p                      grad.add(param, alpha=wd)        fused
//     decoupled (AdamW)     p  = p · (1 − lr·wd)               param.mul_(1 - lr*wd)
//     first moment          m  = m·β1 + (1 − β1)·g             exp_avg.mul_(β1).add_(g, 1-β1)   fused
//     second moment         v  = v·β2 + ((1 − β2)·g)·g         exp_avg_sq.mul_(β2).addcmul_(g, g, 1-β2)  fused
//     denominator           d  = √v / √(1 − β2^t) + ε          (exp_avg_sq.sqrt() / bc2_sqrt).add_(eps)
//     update                p  = p + ((−lr / (1 − β1^t))·m) / d   param.addcdiv_(m, d, value=-step_size)
//   The scalars 1 − β, β^t, 1 − β^t, √(1 − β2^t), lr / (1 − β1^t), 1 − lr·wd are computed in double
//   as Python computes them, then rounded once to T where PyTorch's kernels take them.
//   "fused": PyTorch's CPU kernels (AVX2 build, the capability Debian's torch picks on any x86-64 with
//   AVX2) evaluate `a + s·b` and `a + s·b·c` with a fused multiply-add; we call std::fma there, so the
//   result is the same on any CPU and with any compiler flags.
//   stores  per tensor exp_avg m and exp_avg_sq v (zero at first), and the step count t.
//
// adam_update is the kernel: one tensor, contiguous memory, no allocation, threads by fixed chunks
// (results do not depend on the thread count). Adam<T> owns the moments of a list of parameters.
// Math: docs/math/adam.md · tests: tests/test_optim.cpp (fixtures: tests/make_optim_fixtures.py)
#pragma once

#include "stockmixer/common.hpp"
#include "stockmixer/parallel.hpp"
#include "stockmixer/tensor.hpp"

#include <algorithm>
#include <cmath>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif
#include <cstdint>
#include <sstream>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace stockmixer {

// ---- interface -------------------------------------------------------------------------------------

// torch.optim.Adam(lr, betas=(beta1, beta2), eps, weight_decay) when decoupled_weight_decay is false;
// torch.optim.AdamW(...) when it is true (note: AdamW's default weight_decay is 0.01, ours is 0).
struct AdamOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
  bool decoupled_weight_decay = false;

  // PyTorch's checks: lr >= 0, 0 <= beta1 < 1, 0 <= beta2 < 1, eps >= 0, weight_decay >= 0 (NaN
  // fails every one). Throws stockmixer::Error naming the option and its value.
  void validate() const;
};

// One Adam step on one tensor of n contiguous values. `step` is the step number after this step's
// increment (1 on the first step); param, exp_avg and exp_avg_sq are updated in place, grad is read
// only (L2 weight decay is applied to a copy, as PyTorch's grad.add does).
template <class T>
void adam_update(T* param, T* exp_avg, T* exp_avg_sq, const T* grad, Index n, std::int64_t step,
                 const AdamOptions& opt);

// A parameter as the optimiser sees it: its name (for checkpoints), values and gradient, both of
// `size` contiguous values owned by somebody else.
template <class T>
struct AdamParam {
  std::string name;
  T* value;
  T* grad;
  Index size;
};

template <class T>
class Adam {
  static_assert(std::is_floating_point_v<T>, "Adam<T> works in float or double");

 public:
  // Validates the options and the parameters (non-null, size >= 0, distinct names) and allocates the
  // moment buffers, zero-filled; nothing allocates after this.
  explicit Adam(std::vector<AdamParam<T>> params, AdamOptions options = {});

  void step();       // t += 1, then adam_update's update on every parameter with the same t
  void zero_grad();  // every gradient set to 0

  std::int64_t steps() const { return steps_; }
  const AdamOptions& options() const { return options_; }
  Index num_params() const { return static_cast<Index>(params_.size()); }
  const AdamParam<T>& param(Index i) const { return params_.at(static_cast<std::size_t>(i)); }

  // The moments of parameter i, [size] (read them to save a checkpoint, write them to restore one).
  TensorMap<T> exp_avg(Index i) { return exp_avg_.at(static_cast<std::size_t>(i)).map(); }
  TensorMap<const T> exp_avg(Index i) const { return exp_avg_.at(static_cast<std::size_t>(i)).map(); }
  TensorMap<T> exp_avg_sq(Index i) { return exp_avg_sq_.at(static_cast<std::size_t>(i)).map(); }
  TensorMap<const T> exp_avg_sq(Index i) const { return exp_avg_sq_.at(static_cast<std::size_t>(i)).map(); }

  // Restores the step count of a checkpoint (the moments are restored through exp_avg / exp_avg_sq).
  void set_state(std::int64_t steps);

 private:
  std::vector<AdamParam<T>> params_;
  AdamOptions options_;
  std::int64_t steps_ = 0;
  std::vector<Tensor<T>> exp_avg_, exp_avg_sq_;  // one [size] tensor per parameter
  struct Span {
    Index param, begin, end;  // values [begin, end) of parameter `param`
  };
  std::vector<Span> spans_;          // every parameter, cut where the concatenation crosses a chunk
  std::vector<Index> chunk_start_;   // the spans of chunk c: [chunk_start_[c], chunk_start_[c + 1])

  // Calls f(span) for every span, the chunks on the threads (the same chunk on the same thread in
  // step() and zero_grad()).
  template <class F>
  void for_each_span(F&& f) const;
};

// ---- implementation --------------------------------------------------------------------------------

namespace detail {
inline std::string adam_value_str(double v) {
  std::ostringstream s;
  s.precision(17);
  s << v;
  return s.str();
}

inline void adam_check(bool ok, const char* option, double value, const char* expected) {
  if (!ok)
    throw Error(std::string("stockmixer::AdamOptions: invalid ") + option + " " + adam_value_str(value) +
                " (expected " + expected + ")");
}
}  // namespace detail

inline void AdamOptions::validate() const {
  detail::adam_check(lr >= 0.0, "lr", lr, "lr >= 0");
  detail::adam_check(beta1 >= 0.0 && beta1 < 1.0, "beta1", beta1, "0 <= beta1 < 1");
  detail::adam_check(beta2 >= 0.0 && beta2 < 1.0, "beta2", beta2, "0 <= beta2 < 1");
  detail::adam_check(eps >= 0.0, "eps", eps, "eps >= 0");
  detail::adam_check(weight_decay >= 0.0, "weight_decay", weight_decay, "weight_decay >= 0");
}

namespace detail {
// out[i] = √in[i] for i < n, four floats (two doubles) per SSE2 instruction on x86-64, else std::sqrt.
// Both are IEEE square roots, correctly rounded: the same bits. It exists because GCC does not
// vectorise a loop that calls std::sqrt (the errno branch for negative inputs) unless the whole
// program is built with -fno-math-errno, which a header-only library cannot impose.
template <class T>
inline void sqrt_values(T* out, const T* in, Index n) {
  Index i = 0;
#if defined(__SSE2__)
  if constexpr (std::is_same_v<T, float>)
    for (; i + 4 <= n; i += 4) _mm_storeu_ps(out + i, _mm_sqrt_ps(_mm_loadu_ps(in + i)));
  else if constexpr (std::is_same_v<T, double>)
    for (; i + 2 <= n; i += 2) _mm_storeu_pd(out + i, _mm_sqrt_pd(_mm_loadu_pd(in + i)));
#endif
  for (; i < n; ++i) out[i] = std::sqrt(in[i]);
}

// The update of n values, compiled per instruction set (run_versioned, common.hpp): with FMA hardware
// std::fma is one instruction; without, it is a libm call per value (55.2 M -> 45.0 M instructions a
// NASDAQ step). Blocks of kBlock values run in three passes so that each vectorises: the moments,
// their square roots (sqrt_values), the parameters. Every operation is correctly rounded (fma, sqrt,
// division), so all versions give the same bits.
constexpr Index kAdamChunk = 8192;  // values per thread chunk

// The per-step scalars, in double as Python computes them (step is a float in PyTorch's state:
// beta ** step is pow(double, double)), then rounded once to T where the tensor kernels receive them.
template <class T>
struct AdamScalars {
  bool l2, decoupled;
  T wd, decay, beta1, one_minus_beta1, beta2, one_minus_beta2, bc2_sqrt, eps, neg_step_size;
};
template <class T>
AdamScalars<T> adam_scalars(std::int64_t step, const AdamOptions& opt) {
  const double t = static_cast<double>(step);
  const double bias_correction1 = 1.0 - std::pow(opt.beta1, t);
  const double bias_correction2 = 1.0 - std::pow(opt.beta2, t);
  const double step_size = opt.lr / bias_correction1;
  AdamScalars<T> a;
  a.l2 = !opt.decoupled_weight_decay && opt.weight_decay != 0.0;
  a.decoupled = opt.decoupled_weight_decay && opt.weight_decay != 0.0;  // p·1 is p: skipped
  a.wd = static_cast<T>(opt.weight_decay);                    // grad.add(param, alpha=wd)
  a.decay = static_cast<T>(1.0 - opt.lr * opt.weight_decay);  // param.mul_(1 - lr*wd)
  a.beta1 = static_cast<T>(opt.beta1);                        // exp_avg.mul_(beta1)
  a.one_minus_beta1 = static_cast<T>(1.0 - opt.beta1);        // .add_(grad, alpha=1-beta1)
  a.beta2 = static_cast<T>(opt.beta2);                        // exp_avg_sq.mul_(beta2)
  a.one_minus_beta2 = static_cast<T>(1.0 - opt.beta2);        // .addcmul_(grad, grad, value=1-beta2)
  a.bc2_sqrt = static_cast<T>(std::sqrt(bias_correction2));   // exp_avg_sq.sqrt() / bc2_sqrt
  a.eps = static_cast<T>(opt.eps);                            // .add_(eps)
  a.neg_step_size = static_cast<T>(-step_size);               // addcdiv_(value=-step_size)
  return a;
}

template <class T>
void adam_values(T* param, T* exp_avg, T* exp_avg_sq, const T* grad, Index n, const AdamScalars<T>& a) {
  // Copied into locals: the loops store through T*, which may alias the struct's T fields, so read
  // through `a` they would be reloaded after every store.
  const bool l2 = a.l2;
  const T wd = a.wd, beta1 = a.beta1, one_minus_beta1 = a.one_minus_beta1, beta2 = a.beta2,
          one_minus_beta2 = a.one_minus_beta2, bc2_sqrt = a.bc2_sqrt, eps = a.eps, neg_step_size = a.neg_step_size;
  // AdamW's decay is its own pass, as in PyTorch: p·decay is rounded and stored before the update
  // adds to it, and a compiler that contracts across statements cannot fuse the two.
  if (a.decoupled)
    for (Index i = 0; i < n; ++i) param[i] = param[i] * a.decay;
  constexpr Index kBlock = 512;
  T root[kBlock];
  for (Index b = 0; b < n; b += kBlock) {
    const Index k = std::min(kBlock, n - b);
    T *p = param + b, *m = exp_avg + b, *v = exp_avg_sq + b;
    const T* gr = grad + b;
    for (Index i = 0; i < k; ++i) {
      T g = gr[i];
      if (l2) g = std::fma(p[i], wd, g);                                     // g + wd·p
      m[i] = std::fma(g, one_minus_beta1, m[i] * beta1);                     // m·β1 + (1−β1)·g
      v[i] = std::fma(one_minus_beta2 * g, g, v[i] * beta2);                 // v·β2 + ((1−β2)·g)·g
    }
    sqrt_values(root, v, k);
    for (Index i = 0; i < k; ++i) p[i] = p[i] + (neg_step_size * m[i]) / (root[i] / bc2_sqrt + eps);  // p + (−s·m) / (√v / √bc2 + ε)
  }
}
template <class T>
void adam_range(Isa isa, T* param, T* exp_avg, T* exp_avg_sq, const T* grad, Index n, const AdamScalars<T>& a) {
  run_versioned(isa, [&](auto) { adam_values(param, exp_avg, exp_avg_sq, grad, n, a); });
}
}  // namespace detail

template <class T>
void adam_update(T* param, T* exp_avg, T* exp_avg_sq, const T* grad, Index n, std::int64_t step,
                 const AdamOptions& opt) {
  opt.validate();
  if (step < 1) throw Error("stockmixer::adam_update: step " + std::to_string(step) + " (expected >= 1)");
  if (n < 0) throw Error("stockmixer::adam_update: negative size " + std::to_string(n));

  const detail::AdamScalars<T> a = detail::adam_scalars<T>(step, opt);
  const Isa isa = kernel_isa();
  parallel_for(n, detail::kAdamChunk, [&](Index i0, Index i1) {
    detail::adam_range(isa, param + i0, exp_avg + i0, exp_avg_sq + i0, grad + i0, i1 - i0, a);
  });
}

template <class T>
Adam<T>::Adam(std::vector<AdamParam<T>> params, AdamOptions options)
    : params_(std::move(params)), options_(options) {
  options_.validate();
  for (std::size_t i = 0; i < params_.size(); ++i) {
    const auto& p = params_[i];
    const std::string what = "stockmixer::Adam: parameter " + std::to_string(i) + " '" + p.name + "'";
    if (p.size < 0) throw Error(what + " has negative size " + std::to_string(p.size));
    if (p.size > 0 && (p.value == nullptr || p.grad == nullptr))
      throw Error(what + " has a null value or gradient pointer");
    for (std::size_t j = 0; j < i; ++j)
      if (params_[j].name == p.name) throw Error(what + " repeats the name of parameter " + std::to_string(j));
  }
  exp_avg_.reserve(params_.size());
  exp_avg_sq_.reserve(params_.size());
  for (const auto& p : params_) {
    exp_avg_.emplace_back(Shape{p.size});
    exp_avg_sq_.emplace_back(Shape{p.size});
  }
  // The parameters' values, concatenated, in chunks of kAdamChunk: each chunk is the spans of the
  // tensors it covers. The chunks depend only on the sizes, so the update is the same on any thread
  // count (each value's update is independent anyway).
  Index offset = 0;  // of parameter i's first value in the concatenation
  chunk_start_.push_back(0);
  for (std::size_t i = 0; i < params_.size(); ++i) {
    for (Index b = 0; b < params_[i].size;) {
      const Index at = offset + b, end = std::min(params_[i].size, b + detail::kAdamChunk - at % detail::kAdamChunk);
      if (!spans_.empty() && at % detail::kAdamChunk == 0) chunk_start_.push_back(static_cast<Index>(spans_.size()));
      spans_.push_back({static_cast<Index>(i), b, end});
      b = end;
    }
    offset += params_[i].size;
  }
  if (!spans_.empty()) chunk_start_.push_back(static_cast<Index>(spans_.size()));
}

template <class T>
template <class F>
void Adam<T>::for_each_span(F&& f) const {
  const Index chunks = static_cast<Index>(chunk_start_.size()) - 1;
  parallel_for(chunks, 1, [&](Index c0, Index c1) {
    for (Index k = chunk_start_[static_cast<std::size_t>(c0)]; k < chunk_start_[static_cast<std::size_t>(c1)]; ++k)
      f(spans_[static_cast<std::size_t>(k)]);
  });
}

template <class T>
void Adam<T>::step() {
  const Isa isa = kernel_isa();  // before anything changes: a bad STOCKMIXER_MAX_ISA throws here
  ++steps_;
  const detail::AdamScalars<T> a = detail::adam_scalars<T>(steps_, options_);  // the same for every tensor
  for_each_span([&](const Span& s) {
    const auto& p = params_[static_cast<std::size_t>(s.param)];
    T* m = exp_avg_[static_cast<std::size_t>(s.param)].data();
    T* v = exp_avg_sq_[static_cast<std::size_t>(s.param)].data();
    detail::adam_range(isa, p.value + s.begin, m + s.begin, v + s.begin, p.grad + s.begin, s.end - s.begin, a);
  });
}

template <class T>
void Adam<T>::zero_grad() {
  // By step()'s chunks, so that each thread clears the gradients it reads in step() (and its cache
  // holds): one thread clearing all of them after two threads updated took 10.8 µs instead of 2.4.
  for_each_span([&](const Span& s) {
    T* g = params_[static_cast<std::size_t>(s.param)].grad;
    std::fill(g + s.begin, g + s.end, T(0));
  });
}

template <class T>
void Adam<T>::set_state(std::int64_t steps) {
  if (steps < 0) throw Error("stockmixer::Adam::set_state: negative step count " + std::to_string(steps));
  steps_ = steps;
}

}  // namespace stockmixer
