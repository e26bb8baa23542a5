// stockmixer/cuda/step.hpp — the training step and inference resident on a CUDA device
// (-DSTOCKMIXER_CUDA=ON; compiled in src/cuda/step.cu). Plain C++: no CUDA header is needed to include it.
//
// A DeviceTrainer<T> holds on the device, each in one allocation:
//   the parameter store    values and gradients laid out as StockMixer<T>'s ParameterStore (cuda/model.hpp's
//                          ParameterLayout), and Adam's two moments laid out as optim/adam.hpp's
//   the market             eod [N, D, C], mask, gt, price [N, D], uploaded once (upload_market)
//   one batch              x [N, T, C], mask, base, gt [N], gathered on the device from the market
//   the model's buffers    cuda/model.hpp's ModelBuffers, the rank loss's (detail::ResidentRankLoss)
// and one stream. A step (step(offset, adam)) is, all on that stream:
//   gather the window at the offset read from device memory      gather_stock below, one thread a stock
//   zero the gradients; model_forward (training)                 cuda/model.hpp
//   the rank loss, exact sorted form, forward and backward       detail::ResidentRankLoss (kernels.hpp)
//   model_backward into the gradient store
//   Adam with the coefficients read from device memory           detail::adam_resident, skipped when the
//                                                                loss is not finite
// The first step captures that sequence into a CUDA graph; every step (the first included) copies its
// offset and Adam coefficients to the device, launches the graph and reads loss, reg and rank back: one
// graph launch and one synchronisation per step. Parameters, gradients and moments move between the
// device and a CPU model only through upload_* / download_*: checkpoints, evaluation and everything
// else stay on the CPU path (StockMixer<T>, Adam<T>).
//
// Numerics: the device's forward, backward and rank loss agree with the CPU's within the parity
// tolerances (1e-5 float, 1e-10 double, relative), not bit for bit (sums in another order); Adam and the
// gather compute the CPU's bits. tests/test_cuda.cpp compares whole steps with train::TrainStep.
#pragma once

#include "stockmixer/cuda/kernels.hpp"
#include "stockmixer/cuda/model.hpp"
#include "stockmixer/cuda/pointwise.hpp"

#include <cstdint>
#include <string>

namespace stockmixer {
namespace cuda {

// ---- the batch gather (host and device) -------------------------------------------------------------

// data::get_batch's arrays on plain pointers: the market (N stocks, D days, C features) and one batch.
template <class T>
struct GatherArgs {
  const T* eod;         // [N, D, C]
  const T* mask;        // [N, D]
  const T* gt;          // [N, D]
  const T* price;       // [N, D]
  T* x;                 // [N, T, C]
  T* batch_mask;        // [N]
  T* base;              // [N]
  T* batch_gt;          // [N]
  Index stocks, days, features, lookback, steps;
};

// Stock i of the window at `offset` (data::get_batch's formulas, one stock):
//   x[i]        = eod[i, offset : offset + T, :]
//   batch_mask  = min over d in [offset, offset + T + steps) of mask[i, d]
//   base        = price[i, offset + T - 1]
//   batch_gt    = gt[i, offset + T + steps - 1]
// The offset must satisfy gather_offset_problem (the caller checks it on the host).
template <class T>
STOCKMIXER_HD inline void gather_stock(const GatherArgs<T>& g, Index offset, Index i) {
  const Index row = i * g.days;  // stock i's first day in mask, gt, price
  const T* src = g.eod + (row + offset) * g.features;
  T* dst = g.x + i * g.lookback * g.features;
  for (Index k = 0; k < g.lookback * g.features; ++k) dst[k] = src[k];
  const Index window = g.lookback + g.steps;
  T m = g.mask[row + offset];
  for (Index d = 1; d < window; ++d) {
    const T v = g.mask[row + offset + d];
    m = v < m ? v : m;  // std::min_element's choice: the first of equal minima
  }
  g.batch_mask[i] = m;
  g.base[i] = g.price[row + offset + g.lookback - 1];
  g.batch_gt[i] = g.gt[row + offset + g.lookback + g.steps - 1];
}

// What is wrong with `offset` as a window of lookback T and horizon `steps` on D days, or "".
inline std::string gather_offset_problem(Index days, Index lookback, Index steps, Index offset) {
  if (offset >= 0 && lookback >= 1 && steps >= 1 && offset + lookback + steps <= days) return "";
  return "window offset " + std::to_string(offset) + " with lookback " + std::to_string(lookback) + " and steps " +
         std::to_string(steps) + " is not inside the market's D = " + std::to_string(days) +
         " days (expected 0 <= offset <= D - lookback - steps = " + std::to_string(days - lookback - steps) + ")";
}

// ---- the resident trainer ---------------------------------------------------------------------------

// What one step returns: the loss's three values (as train::StepLoss), read back from the device.
template <class T>
struct DeviceStepLoss {
  T loss, reg, rank;
};

template <class T>
class DeviceTrainer {
 public:
  // Allocates everything but the market for a model of `dims` with rank-loss weight alpha; parameters,
  // gradients and moments start at zero (upload_parameters, upload_moments). Throws "<who>: no CUDA
  // device: <reason>" without a device, and the model's errors for invalid dims.
  DeviceTrainer(const ModelDims& dims, T alpha);
  ~DeviceTrainer();
  DeviceTrainer(const DeviceTrainer&) = delete;
  DeviceTrainer& operator=(const DeviceTrainer&) = delete;

  const ModelDims& dims() const;
  Index parameter_count() const;  // values in the store (ParameterLayout::size)

  // A market of N stocks (the model's), D days, C features (the model's), horizon `steps`: eod
  // [N, D, C], mask, gt, price [N, D], host arrays, copied once. Replaces the previous market.
  void upload_market(const T* eod, const T* mask, const T* gt, const T* price, Index days, Index steps);

  // The parameter store's values [parameter_count()] (StockMixer<T>::parameters().values()), and
  // Adam's moments [parameter_count()] each (Adam<T>::exp_avg(), exp_avg_sq()), host arrays.
  void upload_parameters(const T* values);
  void download_parameters(T* values) const;
  void download_gradients(T* grads) const;  // the last step's gradients
  void upload_moments(const T* exp_avg, const T* exp_avg_sq);
  void download_moments(T* exp_avg, T* exp_avg_sq) const;

  // One training step on the window at `offset` of the uploaded market, Adam with the coefficients of
  // this step (optim/adam.hpp's detail::adam_scalars for the step number after its increment). When
  // the loss is not finite the parameters and moments are left unchanged and the loss is returned as
  // it is: the caller throws, as train::TrainStep does. Throws naming the offset when it is outside
  // the market, and when no market was uploaded.
  DeviceStepLoss<T> step(Index offset, const AdamCoefficients<T>& adam);

  // Inference: pred [N] = the model on x [N, T, C] (host arrays), with the device's parameters.
  void predict(T* pred, const T* x);

  // Whether the step's graph was captured (after the first step), and its node count (0 before).
  bool graph_captured() const;
  std::size_t graph_nodes() const;

 private:
  struct Impl;
  Impl* impl_ = nullptr;
};

// The AdamCoefficients of a detail::AdamScalars<T> (optim/adam.hpp), which the caller computes on the
// host so that the device and the CPU use the same bits. Templated on the scalars' type so that this
// header needs no CPU optimiser header.
template <class T, class Scalars>
AdamCoefficients<T> adam_coefficients(const Scalars& s) {
  return {s.l2, s.decoupled, s.wd, s.decay, s.beta1, s.one_minus_beta1, s.beta2, s.one_minus_beta2,
          s.bc2_sqrt, s.eps, s.neg_step_size};
}

}  // namespace cuda
}  // namespace stockmixer
