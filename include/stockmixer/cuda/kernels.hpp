// stockmixer/cuda/kernels.hpp — the CUDA unit's interface (-DSTOCKMIXER_CUDA=ON, target stockmixer::cuda;
// the kernels are compiled in src/cuda/stockmixer_cuda.cu). Plain C++: no CUDA header is needed to
// include it, only to build the unit. docs/cuda.md says what runs on the device and what was verified.
//
//   device_available, require_device    is there a device; "no CUDA device: <the runtime's reason>"
//   rank_loss_forward / _backward       the rank loss (kernels/rank_loss.hpp) on the device, float or
//                                       double: the exact O(N log N) form (a device merge sort and
//                                       segmented prefix sums) or the O(N²) tiled form for checking
//   adam_values                         one Adam step over n contiguous values (optim/adam.hpp's
//                                       adam_values: the parameter store is one allocation)
//   benchmark_rank_loss, benchmark_adam device-resident timings (data uploaded once)
//
// These entry points take host arrays and copy them to the device and back on every call: they are
// what the tests compare with the CPU kernels, not a training path. Every failure throws
// stockmixer::Error naming the function and the CUDA runtime's message.
#pragma once

#include "stockmixer/error.hpp"

#include <cstddef>
#include <string>

namespace stockmixer {
namespace cuda {

using Index = std::ptrdiff_t;

// True when the CUDA runtime reports at least one device; otherwise false, with the runtime's reason
// in *why (when given).
bool device_available(std::string* why = nullptr);

// Throws stockmixer::Error("<who>: no CUDA device: <reason>") when device_available() is false.
void require_device(const std::string& who);

// The first device: its name, compute capability and memory, for logs.
std::string device_description();

// The two device forms of the rank loss.
enum class RankForm {
  sorted,  // exact O(N log N): as rank_loss_forward_sorted; masks must be 0 or 1
  tiled    // O(N²): every pair, as rank_loss_forward; any mask
};

template <class T>
struct RankLossValues {  // as RankLoss<T> (kernels/rank_loss.hpp)
  T loss, reg, rank;
};

// rank_loss_forward (tiled) or rank_loss_forward_sorted (sorted) on the device: writes rr [n] and
// hinge [n] (S_i = Σ_j [P_ij > 0] (gt_j − gt_i)·m_j per stock, in double; 0 for stocks the sorted form
// leaves out), returns loss, reg and rank. Sums are in double in another order than the CPU's, so the
// values agree with the CPU within rounding, not bit for bit; rr is bit for bit.
// The sorted form throws (naming the index) if a mask value is neither 0 nor 1, before any copy.
template <class T>
RankLossValues<T> rank_loss_forward(T* rr, double* hinge, const T* pred, const T* base, const T* gt,
                                    const T* mask, Index n, T alpha, RankForm form);

// dpred += d(loss)/d(pred) · dloss from the forward's rr and hinge: rank_loss_backward_from_hinge on the
// device (each element pointwise::rank_dpred, the CPU's expression).
template <class T>
void rank_loss_backward(T* dpred, T dloss, const T* rr, const T* base, const T* gt, const T* mask, Index n,
                        T alpha, const double* hinge);

// The per-step Adam scalars as optim/adam.hpp's detail::AdamScalars<T> computes them (in double, then
// rounded to T): the caller passes them, so the device and the CPU use the same bits.
template <class T>
struct AdamCoefficients {
  bool l2, decoupled;
  T wd, decay, beta1, one_minus_beta1, beta2, one_minus_beta2, bc2_sqrt, eps, neg_step_size;
};

// optim/adam.hpp's detail::adam_values on the device: param, exp_avg, exp_avg_sq updated in place.
template <class T>
void adam_values(T* param, T* exp_avg, T* exp_avg_sq, const T* grad, Index n, const AdamCoefficients<T>& a);

// Mean microseconds of one forward and backward of the rank loss over n stocks (synthetic inputs, all
// resident on the device, timed with CUDA events over `iters` calls after one warm-up call). Each
// forward reads its two sums (reg, rank) back to the host, as a training step would, so the time
// includes those two synchronisations.
template <class T>
double benchmark_rank_loss(Index n, RankForm form, int iters);

// Mean microseconds of one Adam step over n values (resident, as above).
template <class T>
double benchmark_adam(Index n, int iters);

// ---- device-pointer entry points of the resident training step (cuda/step.hpp) ------------------------
// Unlike the functions above, these take device pointers and only enqueue work on the given stream
// (a cudaStream_t passed as void*, so that no CUDA header is needed here): no allocation, copy to the
// host or synchronisation, so that a stream capture records them into a CUDA graph.
namespace detail {

// The exact O(N log N) rank loss (RankForm::sorted) over n stocks, its buffers allocated once on the
// device. Masks must be 0 or 1 (not checked here: a market's masks are, and a window's is their min).
template <class T>
class ResidentRankLoss {
 public:
  explicit ResidentRankLoss(Index n);  // throws "no CUDA device" without one
  ~ResidentRankLoss();
  ResidentRankLoss(const ResidentRankLoss&) = delete;
  ResidentRankLoss& operator=(const ResidentRankLoss&) = delete;

  // out[0], out[1], out[2] = loss, reg, rank (device memory) of pred, base, gt, mask [n] (device
  // memory); keeps rr and each stock's hinge S_i for backward.
  void forward(T* out, const T* pred, const T* base, const T* gt, const T* mask, T alpha, void* stream);
  // dpred = d(loss)/d(pred)·dloss (overwritten), from the last forward: rank_loss_backward_from_hinge.
  void backward(T* dpred, T dloss, const T* base, const T* gt, const T* mask, T alpha, void* stream);
  const T* rr() const;  // the last forward's return ratios [n], device memory

 private:
  struct Impl;
  Impl* impl_ = nullptr;
};

// adam_values over n device values with the coefficients at `a` (device memory, read when the launch
// runs), skipped entirely when *loss (device memory) is not finite.
template <class T>
void adam_resident(T* param, T* exp_avg, T* exp_avg_sq, const T* grad, Index n, const AdamCoefficients<T>* a,
                   const T* loss, void* stream);

}  // namespace detail

}  // namespace cuda
}  // namespace stockmixer
