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
//   AVX2) evaluate `a + s·b` and `a + s·b·c` with a fused multiply-add; we call pointwise::fma there
//   (std::fma; cuda/pointwise.hpp, the per-element math shared with the CUDA unit), so the
//   result is the same on any CPU and with any compiler flags.
//   stores  per tensor exp_avg m and exp_avg_sq v (zero at first), and the step count t.
//
// adam_update is the kernel: one tensor, contiguous memory, no allocation, threads by fixed chunks
// (results do not depend on the thread count). Adam<T> updates a whole ParameterStore with it: its
// moments are one allocation laid out as the store, so a step is one adam_update over every value.
// Math: docs/math/adam.md · tests: tests/test_optim.cpp (fixtures: tests/make_optim_fixtures.py)
#pragma once

#include "stockmixer/cuda/pointwise.hpp"
#include "stockmixer/isa.hpp"
#include "stockmixer/parallel.hpp"
#include "stockmixer/parameters.hpp"
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

template <class T>
class Adam {
  static_assert(std::is_floating_point_v<T>, "Adam<T> works in float or double");

 public:
  // Validates the options and allocates the moments of every value of the store (allocated before),
  // zero-filled; nothing allocates after this. The store must outlive the optimiser.
  explicit Adam(ParameterStore<T>& store, AdamOptions options = {}) : store_(&store), options_(options) {
    options_.validate();
    if (!store.allocated()) throw Error("stockmixer::Adam: the parameter store is not allocated yet");
    moments_ = Tensor<T>(Shape{2 * store.size()});
  }

  void step() {  // t += 1, then adam_update's update of every value with the same t
    kernel_isa();  // before anything changes: a bad STOCKMIXER_MAX_ISA throws here
    const Index n = store_->size();
    adam_update(store_->values(), moments_.data(), moments_.data() + n, store_->grads(), n, ++steps_, options_);
  }
  void zero_grad();  // every gradient set to 0

  std::int64_t steps() const { return steps_; }
  const AdamOptions& options() const { return options_; }

  // The moments of the whole store, [size], or of one named parameter (a Parameter of the store's name
  // table): read them to save a checkpoint, write them to restore one.
  TensorMap<T> exp_avg() { return {moments_.data(), Shape{store_->size()}}; }
  TensorMap<T> exp_avg_sq() { return {moments_.data() + store_->size(), Shape{store_->size()}}; }
  TensorMap<T> exp_avg(const Parameter<T>& p) { return {moments_.data() + p.offset(), p.shape()}; }
  TensorMap<T> exp_avg_sq(const Parameter<T>& p) { return {moments_.data() + store_->size() + p.offset(), p.shape()}; }

  // Restores the step count of a checkpoint (the moments are restored through exp_avg / exp_avg_sq).
  void set_state(std::int64_t steps) {
    if (steps < 0) throw Error("stockmixer::Adam::set_state: negative step count " + std::to_string(steps));
    steps_ = steps;
  }

 private:
  ParameterStore<T>* store_;
  AdamOptions options_;
  std::int64_t steps_ = 0;
  Tensor<T> moments_;  // [exp_avg | exp_avg_sq], each laid out as the store's values
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

// The update of n values, compiled per instruction set (run_versioned, isa.hpp): with FMA hardware
// std::fma is one instruction; without, it is a libm call per value. Blocks of kBlock values run in three passes so that each vectorises: the moments,
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
      if (l2) g = pointwise::fma(p[i], wd, g);                                         // g + wd·p
      pointwise::adam_moments(g, m[i], v[i], beta1, one_minus_beta1, beta2, one_minus_beta2);  // m, v
    }
    sqrt_values(root, v, k);
    for (Index i = 0; i < k; ++i)  // p + (−s·m) / (√v / √bc2 + ε)
      p[i] = pointwise::adam_param(p[i], m[i], root[i], bc2_sqrt, eps, neg_step_size);
  }
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
    run_versioned(isa,
                  [&](auto) { detail::adam_values(param + i0, exp_avg + i0, exp_avg_sq + i0, grad + i0, i1 - i0, a); });
  });
}

template <class T>
void Adam<T>::zero_grad() {
  // By step()'s chunks, so that each thread clears the gradients it reads in step() (and its cache holds).
  T* g = store_->grads();
  parallel_for(store_->size(), detail::kAdamChunk, [&](Index i0, Index i1) { std::fill(g + i0, g + i1, T(0)); });
}

}  // namespace stockmixer
