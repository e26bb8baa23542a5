// stockmixer/cuda/pointwise.hpp — per-element math shared by the CPU kernels and the CUDA unit.
//
// Each function is one element's arithmetic, written once: the CPU kernels (kernels/hardswish.hpp,
// kernels/layernorm.hpp and the fused blocks, kernels/rank_loss.hpp, optim/adam.hpp) call these, and
// under nvcc the same functions are `__host__ __device__`, so the device kernels
// (src/cuda/stockmixer_cuda.cu) compute the same expressions and the CPU tests exercise them. Plain C++17 without CUDA: any compiler includes it.
//
//   hardswish, hardswish_grad        torch.nn.Hardswish and its one-sided kinks (docs/math/hardswish.md)
//   layernorm_moments, layernorm_dx   LayerNorm's per-row moments and input gradient (docs/math/layernorm.md)
//   adam_moments, adam_param          one value of torch.optim.Adam's update (docs/math/adam.md)
//   return_ratio, rank_reg_diff,      the rank loss's per-stock and per-pair terms (docs/math/rank_loss.md)
//   rank_pair, rank_hinge_term, rank_dpred
//
// Floating point: every operation is written out as the CPU kernel rounds it; a fused multiply-add
// appears only where PyTorch's kernels fuse (Adam), through fma() below, correctly rounded on host and
// device alike. The CUDA unit is compiled with -fmad=false so that nvcc contracts nothing else.
#pragma once

#include <cmath>

#if defined(__CUDACC__)
#define STOCKMIXER_HD __host__ __device__
#else
#define STOCKMIXER_HD
#endif

namespace stockmixer {
namespace pointwise {

// a·b + c rounded once (IEEE fused multiply-add) on the host and on the device.
STOCKMIXER_HD inline float fma(float a, float b, float c) {
#if defined(__CUDA_ARCH__)
  return __fmaf_rn(a, b, c);
#else
  return std::fma(a, b, c);
#endif
}
STOCKMIXER_HD inline double fma(double a, double b, double c) {
#if defined(__CUDA_ARCH__)
  return __fma_rn(a, b, c);
#else
  return std::fma(a, b, c);
#endif
}

// ---- Hardswish ---------------------------------------------------------------------------------------

// y = x · min(max(x + 3, 0), 6) / 6. The ternaries are std::max(x + 3, 0) and std::min(·, 6) as the
// standard library defines them ((a < b) ? b : a and (b < a) ? b : a), NaN included.
template <class T>
STOCKMIXER_HD inline T hardswish(T x) {
  const T shifted = x + T(3);
  const T low = (shifted < T(0)) ? T(0) : shifted;
  const T clipped = (T(6) < low) ? T(6) : low;
  return x * clipped / T(6);
}

// h'(x) = 0 for x < -3, x/3 + 1/2 for -3 <= x <= 3, 1 for x > 3 (PyTorch's scalar/CUDA kinks).
template <class T>
STOCKMIXER_HD inline T hardswish_grad(T x) {
  return x < T(-3) ? T(0) : x <= T(3) ? x / T(3) + T(0.5) : T(1);
}

// ---- LayerNorm ---------------------------------------------------------------------------------------
// kernels/layernorm.hpp's per-row formulas (also the fused blocks' LayerNorms, on double or GCC vector
// types V; results go through references, as a vector returned by value draws GCC's -Wpsabi note).

// Mean and biased variance of n values from their sums Σx and Σx² in double, the variance clamped at 0.
template <class V>
STOCKMIXER_HD inline void layernorm_moments(V& mean, V& var, const V& sum, const V& sum_sq, double n) {
  mean = sum / n;
  var = sum_sq / n - mean * mean;
  var = var > 0.0 ? var : V{};
}

// One input gradient: dx = rstd · ((g − mean(g)) − x̂ · mean(g · x̂)), g = dy · gamma.
template <class Out, class R, class G, class M, class X>
STOCKMIXER_HD inline void layernorm_dx(Out& dx, const R& rstd, const G& g, const M& mean_g, const X& xhat,
                                       const M& mean_gx) {
  dx = rstd * ((g - mean_g) - xhat * mean_gx);
}

// ---- Adam --------------------------------------------------------------------------------------------

// The moments of one value, in place: m = m·β1 + (1−β1)·g and v = v·β2 + ((1−β2)·g)·g, each one fused
// multiply-add as PyTorch's exp_avg.mul_(β1).add_(g, 1−β1) and exp_avg_sq.mul_(β2).addcmul_(g, g, 1−β2).
// g already holds the L2 decay when there is one (g + wd·p, also fused: fma(p, wd, g)).
template <class T>
STOCKMIXER_HD inline void adam_moments(T g, T& m, T& v, T beta1, T one_minus_beta1, T beta2, T one_minus_beta2) {
  m = pointwise::fma(g, one_minus_beta1, m * beta1);
  v = pointwise::fma(one_minus_beta2 * g, g, v * beta2);
}

// The parameter after the step: p + (−s·m) / (√v / √(1−β2^t) + ε), with root = √v (correctly rounded)
// and neg_step_size = −lr / (1−β1^t), as param.addcdiv_(m, √v / bc2_sqrt + ε, value = −step_size).
template <class T>
STOCKMIXER_HD inline T adam_param(T p, T m, T root, T bc2_sqrt, T eps, T neg_step_size) {
  return p + (neg_step_size * m) / (root / bc2_sqrt + eps);
}

// ---- The rank loss -----------------------------------------------------------------------------------

// rr_i = (pred_i − base_i) / base_i
template <class T>
STOCKMIXER_HD inline T return_ratio(T pred, T base) {
  return (pred - base) / base;
}

// The masked error of one stock, rr_i·m_i − gt_i·m_i (F.mse_loss's operand, formed in T).
template <class T>
STOCKMIXER_HD inline T rank_reg_diff(T rr, T gt, T m) {
  return rr * m - gt * m;
}

// P_ij = ((rr_i − rr_j) · (gt_j − gt_i)) · (m_i · m_j), formed in T as PyTorch forms it, so relu's
// zero test (P_ij > 0) agrees with PyTorch's at ties. P_ij = P_ji bit for bit.
template <class T>
STOCKMIXER_HD inline T rank_pair(T rr_i, T rr_j, T gt_i, T gt_j, T m_i, T m_j) {
  return ((rr_i - rr_j) * (gt_j - gt_i)) * (m_i * m_j);
}

// One term of the rank gradient's hinge S_i = Σ_j [P_ij > 0] (gt_j − gt_i)·m_j, in double.
template <class T>
STOCKMIXER_HD inline double rank_hinge_term(T gt_i, T gt_j, T m_j) {
  return static_cast<double>(gt_j - gt_i) * m_j;
}

// d(loss)/d(pred_i) · dloss from the stock's hinge S_i (inv_n = 1/N):
//   drr_i = dloss · [ (2/N)(rr_i·m_i − gt_i·m_i)·m_i + alpha · (2/N²)·S_i·m_i ],  dpred_i = drr_i / base_i
template <class T>
STOCKMIXER_HD inline T rank_dpred(T dloss, T alpha, T rr, T gt, T m, T base, double hinge, double inv_n) {
  const double d_reg = 2.0 * inv_n * static_cast<double>(rank_reg_diff(rr, gt, m)) * m;
  const double d_rank = 2.0 * inv_n * inv_n * hinge * m;
  const double drr = static_cast<double>(dloss) * (d_reg + static_cast<double>(alpha) * d_rank);
  return static_cast<T>(drr / base);
}

}  // namespace pointwise
}  // namespace stockmixer
