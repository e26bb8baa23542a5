// src/cuda/stockmixer_cuda.cu — the CUDA unit (include/stockmixer/cuda/kernels.hpp): the rank loss in
// its O(N log N) and O(N²) forms and Adam, float and double. Built only with -DSTOCKMIXER_CUDA=ON.
//
// Every element's arithmetic is cuda/pointwise.hpp's, the functions the CPU kernels call; this file
// only arranges the work. Compiled with -fmad=false (no contraction beyond the explicit fma()), IEEE
// division and square root (nvcc's defaults), no flush to zero. docs/cuda.md.
#include "stockmixer/cuda/kernels.hpp"
#include "stockmixer/cuda/pointwise.hpp"

#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

namespace stockmixer {
namespace cuda {

namespace {

constexpr int kThreads = 256;  // threads per block of every kernel

void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess)
    throw Error(std::string("stockmixer::cuda: ") + what + ": " + cudaGetErrorName(status) + " (" +
                cudaGetErrorString(status) + ")");
}

// After a launch: a bad configuration is reported at once, an execution fault at the next sync.
void check_launch(const char* kernel) {
  check(cudaGetLastError(), kernel);
}

int blocks_for(int n) {
  return (n + kThreads - 1) / kThreads;
}

int checked_size(Index n, const char* who) {
  if (n < 1 || n > std::numeric_limits<int>::max() / 2)
    throw Error(std::string("stockmixer::cuda::") + who + ": n = " + std::to_string(n) + " stocks (expected 1 to " +
                std::to_string(std::numeric_limits<int>::max() / 2) + ")");
  return static_cast<int>(n);
}

// One device allocation of count values, freed on scope exit.
template <class V>
class DeviceArray {
 public:
  explicit DeviceArray(std::size_t count) : count_(count) {
    if (count > 0) check(cudaMalloc(reinterpret_cast<void**>(&data_), count * sizeof(V)), "cudaMalloc");
  }
  ~DeviceArray() {
    if (data_) cudaFree(data_);
  }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;

  V* get() const { return data_; }
  void upload(const V* host) { check(cudaMemcpy(data_, host, count_ * sizeof(V), cudaMemcpyHostToDevice), "upload"); }
  void download(V* host) const {
    check(cudaMemcpy(host, data_, count_ * sizeof(V), cudaMemcpyDeviceToHost), "download");
  }

 private:
  V* data_ = nullptr;
  std::size_t count_;
};

// ---- reductions ---------------------------------------------------------------------------------------
// A fixed-order sum of doubles: block b adds elements [b·kReduceSpan, (b+1)·kReduceSpan) (each thread a
// strided eighth, then a tree in shared memory), pass after pass until one value is left. The same n
// always gives the same bits.
constexpr int kReducePerThread = 8;
constexpr int kReduceSpan = kThreads * kReducePerThread;

__global__ void sum_blocks(double* out, const double* in, int n) {
  __shared__ double part[kThreads];
  const int base = blockIdx.x * kReduceSpan;
  double acc = 0.0;
  for (int k = 0; k < kReducePerThread; ++k) {
    const int i = base + k * kThreads + threadIdx.x;
    if (i < n) acc += in[i];
  }
  part[threadIdx.x] = acc;
  __syncthreads();
  for (int half = kThreads / 2; half > 0; half /= 2) {
    if (static_cast<int>(threadIdx.x) < half) part[threadIdx.x] += part[threadIdx.x + half];
    __syncthreads();
  }
  if (threadIdx.x == 0) out[blockIdx.x] = part[0];
}

// The scratch device_sum needs for n values: two arrays of this many block sums.
std::size_t partial_count(int n) {
  return static_cast<std::size_t>((n + kReduceSpan - 1) / kReduceSpan);
}

// Σ values[0, n) of a device array (which it leaves unchanged), with a and b partial_count(n) doubles,
// enqueued on `stream`: the returned device pointer (into a or b) holds the sum once the stream gets
// there, until the next sum over the same a and b.
const double* device_sum(const double* values, int n, DeviceArray<double>& a, DeviceArray<double>& b,
                         cudaStream_t stream) {
  const double* in = values;
  double* out = a.get();
  int count = n;
  for (;;) {
    const int blocks = (count + kReduceSpan - 1) / kReduceSpan;
    sum_blocks<<<blocks, kThreads, 0, stream>>>(out, in, count);
    check_launch("sum_blocks");
    count = blocks;
    if (count == 1) break;
    in = out;
    out = (out == a.get()) ? b.get() : a.get();
  }
  return out;
}

// ---- the rank loss: per-stock terms -------------------------------------------------------------------

// rr_i = return_ratio(pred_i, base_i); sq_i = (rr_i·m_i − gt_i·m_i)² in double (rank_loss_forward's
// first loop, one stock per thread).
template <class T>
__global__ void return_ratio_kernel(T* rr, double* sq, const T* pred, const T* base, const T* gt, const T* mask,
                                    int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  rr[i] = pointwise::return_ratio(pred[i], base[i]);
  const T d = pointwise::rank_reg_diff(rr[i], gt[i], mask[i]);
  sq[i] = static_cast<double>(d) * d;
}

// dpred_i += rank_dpred(...): rank_loss_backward_from_hinge, one stock per thread.
template <class T>
__global__ void rank_backward_kernel(T* dpred, T dloss, const T* rr, const T* base, const T* gt, const T* mask,
                                     int n, T alpha, const double* hinge, double inv_n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  dpred[i] += pointwise::rank_dpred(dloss, alpha, rr[i], gt[i], mask[i], base[i], hinge[i], inv_n);
}

// ---- the rank loss: the O(N²) tiled form ----------------------------------------------------------------
// rank_loss_forward's double loop with one row i per thread: row_rank_i = Σ_j relu(P_ij) and
// hinge_i = Σ_j [P_ij > 0] (gt_j − gt_i)·m_j (rank_loss_backward's inner loop), j in tiles of kThreads
// stocks staged in shared memory. P_ij is pointwise::rank_pair, formed in T: the relu tests are the
// CPU's bit for bit; only the order of the double sums differs.
template <class T>
__global__ void rank_tiled_kernel(double* row_rank, double* hinge, const T* rr, const T* gt, const T* mask, int n) {
  __shared__ T tile_rr[kThreads], tile_gt[kThreads], tile_m[kThreads];
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  const bool row = i < n;
  const T rr_i = row ? rr[i] : T(0), gt_i = row ? gt[i] : T(0), m_i = row ? mask[i] : T(0);
  double acc = 0.0, h = 0.0;
  for (int j0 = 0; j0 < n; j0 += kThreads) {  // every thread of the block loads one stock of the tile
    const int j = j0 + threadIdx.x;
    if (j < n) {
      tile_rr[threadIdx.x] = rr[j];
      tile_gt[threadIdx.x] = gt[j];
      tile_m[threadIdx.x] = mask[j];
    }
    __syncthreads();
    const int len = min(kThreads, n - j0);
    if (row)
      for (int k = 0; k < len; ++k) {
        const T p = pointwise::rank_pair(rr_i, tile_rr[k], gt_i, tile_gt[k], m_i, tile_m[k]);
        if (p > T(0)) {
          acc += p;
          h += pointwise::rank_hinge_term(gt_i, tile_gt[k], tile_m[k]);
        }
      }
    __syncthreads();
  }
  if (row) {
    row_rank[i] = acc;
    hinge[i] = h;
  }
}

// ---- the rank loss: the exact O(N log N) form -------------------------------------------------------------
// docs/math/rank_loss.md, "An exact O(N log N) form": for masked-in stocks P_ij > 0 exactly when the pair
// is discordant, S_i = Σ_{j discordant with i} (gt_j − gt_i) and Σ_ij relu(P_ij) = 2 Σ_i rr_i·S_i.
// The CPU sweeps Fenwick trees; here:
//  1. stage 1 sorts the stocks by (rr, gt, index) with a merge sort (log₂ N merge passes);
//  2. stage 2 merge-sorts that sequence by gt. When two sibling runs L (earlier in stage 1's order:
//     lower rr, or equal rr and gt not above) and R merge, every pair j ∈ L, i ∈ R meets once, and it is
//     discordant exactly when gt_j > gt_i (an equal rr has gt_j <= gt_i by stage 1's order: never
//     counted, as the CPU's tie rule). The binary search that places an element in the merged run also
//     counts its discordant partners in the sibling; the sibling's segmented prefix sums of w and w·gt
//     give Σ (gt_j − gt_i) over them in O(1).
// Stocks left out (mask 0, or NaN rr or gt: every P_ij is NaN) take part with weight w = 0 and keys 0, so
// they add nothing, and their S is set to 0 (as hinge_by_stock does).

struct RrKey {  // stage 1
  double rr, gt;
  int index;
};
struct GtItem {  // stage 2
  double gt, w;
  int index;
};
struct RrLess {
  __device__ bool operator()(const RrKey& a, const RrKey& b) const {
    if (a.rr != b.rr) return a.rr < b.rr;
    if (a.gt != b.gt) return a.gt < b.gt;
    return a.index < b.index;
  }
};

// Elements of sorted[0, len) that are < key (lower) or <= key (upper), by binary search.
template <class Key, class Less>
__device__ int count_below(const Key* sorted, int len, const Key& key, Less less, bool or_equal) {
  int lo = 0, hi = len;
  while (lo < hi) {
    const int mid = (lo + hi) / 2;
    const bool before = or_equal ? !less(key, sorted[mid]) : less(sorted[mid], key);
    if (before)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

template <class T>
__global__ void make_keys(RrKey* keys, const T* rr, const T* gt, const T* mask, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const bool in = mask[i] == T(1) && !isnan(rr[i]) && !isnan(gt[i]);
  keys[i] = in ? RrKey{static_cast<double>(rr[i]), static_cast<double>(gt[i]), i} : RrKey{0.0, 0.0, i};
}

// One merge pass of stage 1: runs of `width` become runs of 2·width. An element of the left run goes
// after the right run's elements below it, one of the right run after the left's elements not above it
// (a stable merge; the keys are distinct anyway).
__global__ void merge_rr_pass(RrKey* out, const RrKey* in, int n, int width) {
  const int p = blockIdx.x * blockDim.x + threadIdx.x;
  if (p >= n) return;
  const int run = p / width, local = p - run * width;
  const int sibling_start = (run ^ 1) * width;
  if (sibling_start >= n) {  // the last run has no sibling at this width
    out[p] = in[p];
    return;
  }
  const int sibling_len = min(width, n - sibling_start);
  const bool left = (run & 1) == 0;
  const int k = count_below(in + sibling_start, sibling_len, in[p], RrLess{}, !left);
  out[(run & ~1) * width + local + k] = in[p];
}

__global__ void make_items(GtItem* items, const RrKey* keys, const double* weight_of, int n) {
  const int k = blockIdx.x * blockDim.x + threadIdx.x;
  if (k >= n) return;
  const int i = keys[k].index;
  items[k] = GtItem{keys[k].gt, weight_of[i], i};
}

template <class T>
__global__ void weights_kernel(double* w, const T* rr, const T* gt, const T* mask, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  w[i] = (mask[i] == T(1) && !isnan(rr[i]) && !isnan(gt[i])) ? 1.0 : 0.0;
}

// Inclusive prefix sums of (w, w·gt) within each run of `width`, one Hillis–Steele step at offset d.
__global__ void scan_init(double2* out, const GtItem* items, int n) {
  const int p = blockIdx.x * blockDim.x + threadIdx.x;
  if (p >= n) return;
  out[p] = make_double2(items[p].w, items[p].w * items[p].gt);
}
__global__ void scan_step(double2* out, const double2* in, int n, int width, int d) {
  const int p = blockIdx.x * blockDim.x + threadIdx.x;
  if (p >= n) return;
  double2 v = in[p];
  if (p % width >= d) {
    v.x += in[p - d].x;
    v.y += in[p - d].y;
  }
  out[p] = v;
}

// One merge pass of stage 2 (runs of `width` sorted by gt, prefix sums `scan` of each run): adds to
// S[index] the sum over the sibling run's discordant partners, then places the element in its 2·width run.
//   left element j, partners i ∈ R with gt_i < gt_j:  Σ w_i gt_i − (Σ w_i)·gt_j   over R[0, k)
//   right element i, partners j ∈ L with gt_j > gt_i: Σ w_j gt_j − (Σ w_j)·gt_i   over L[k, len)
__global__ void merge_gt_pass(GtItem* out, double* hinge, const GtItem* in, const double2* scan, int n,
                              int width) {
  const int p = blockIdx.x * blockDim.x + threadIdx.x;
  if (p >= n) return;
  const int run = p / width, local = p - run * width;
  const int sibling_start = (run ^ 1) * width;
  const GtItem item = in[p];
  if (sibling_start >= n) {
    out[p] = item;
    return;
  }
  const int sibling_len = min(width, n - sibling_start);
  const bool left = (run & 1) == 0;
  int lo = 0, hi = sibling_len;  // left: count gt < item.gt; right: count gt <= item.gt
  while (lo < hi) {
    const int mid = (lo + hi) / 2;
    const double g = in[sibling_start + mid].gt;
    if (left ? g < item.gt : g <= item.gt)
      lo = mid + 1;
    else
      hi = mid;
  }
  const int k = lo;
  const double2 before = k > 0 ? scan[sibling_start + k - 1] : make_double2(0.0, 0.0);
  double count, sum;
  if (left) {
    count = before.x;
    sum = before.y;
  } else {
    const double2 total = scan[sibling_start + sibling_len - 1];
    count = total.x - before.x;
    sum = total.y - before.y;
  }
  if (item.w != 0.0) hinge[item.index] += sum - count * item.gt;
  out[(run & ~1) * width + local + k] = item;
}

template <class T>
__global__ void rank_product_kernel(double* prod, const T* rr, const double* w, const double* hinge, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  prod[i] = w[i] != 0.0 ? static_cast<double>(rr[i]) * hinge[i] : 0.0;
}

// rank_loss_forward's closing lines, from the double sums of the squared errors and of the rank term
// (for the sorted form, Σ_i rr_i·S_i: doubled and clamped here). The host path and finish_loss_kernel
// both call it.
template <class T>
STOCKMIXER_HD inline RankLossValues<T> finish_loss(double reg_sum, double rank_sum, int n, T alpha, bool sorted) {
  double rank = rank_sum;
  if (sorted) {
    rank = 2.0 * rank_sum;
    if (rank < 0.0) rank = 0.0;  // the exact value is >= 0; rounding may not be (as the CPU's)
  }
  RankLossValues<T> out;
  out.reg = static_cast<T>(reg_sum / static_cast<double>(n));
  out.rank = static_cast<T>(rank / (static_cast<double>(n) * static_cast<double>(n)));
  out.loss = out.reg + alpha * out.rank;
  return out;
}

// out[0..2] = loss, reg, rank on the device (one thread), from sums[0] (reg) and sums[1] (rank).
template <class T>
__global__ void finish_loss_kernel(T* out, const double* sums, int n, T alpha, bool sorted) {
  if (blockIdx.x != 0 || threadIdx.x != 0) return;
  const RankLossValues<T> v = finish_loss<T>(sums[0], sums[1], n, alpha, sorted);
  out[0] = v.loss;
  out[1] = v.reg;
  out[2] = v.rank;
}

// Device buffers of one rank-loss evaluation over n stocks. Every launch, fill and copy is enqueued on
// `stream` (the default stream unless set), so a stream capture records the whole evaluation.
template <class T>
struct RankLossDevice {
  explicit RankLossDevice(int n_)
      : n(n_), pred(n_), base(n_), gt(n_), mask(n_), rr(n_), dpred(n_), sq(n_), hinge(n_), work(n_), weight(n_),
        keys_a(n_), keys_b(n_), items_a(n_), items_b(n_), scan_a(n_), scan_b(n_), partial_a(partial_count(n_)),
        partial_b(partial_count(n_)), sums(2) {}
  int n;
  cudaStream_t stream = nullptr;
  DeviceArray<T> pred, base, gt, mask, rr, dpred;
  DeviceArray<double> sq, hinge, work, weight;
  DeviceArray<RrKey> keys_a, keys_b;
  DeviceArray<GtItem> items_a, items_b;
  DeviceArray<double2> scan_a, scan_b;
  DeviceArray<double> partial_a, partial_b;  // device_sum's block sums
  DeviceArray<double> sums;                  // the reg and rank sums of the last forward

  // sums[slot] = Σ values[0, n), enqueued.
  void sum_into(int slot, const double* values) {
    const double* s = device_sum(values, n, partial_a, partial_b, stream);
    check(cudaMemcpyAsync(sums.get() + slot, s, sizeof(double), cudaMemcpyDeviceToDevice, stream), "sum copy");
  }

  // Enqueues rr, hinge and the two sums (sums[0]: reg's, sums[1]: rank's) from the inputs at these
  // device pointers.
  void enqueue_forward(const T* pred_, const T* base_, const T* gt_, const T* mask_, RankForm form) {
    const int g = blocks_for(n);
    return_ratio_kernel<T><<<g, kThreads, 0, stream>>>(rr.get(), sq.get(), pred_, base_, gt_, mask_, n);
    check_launch("return_ratio_kernel");
    sum_into(0, sq.get());
    if (form == RankForm::tiled) {
      rank_tiled_kernel<T><<<g, kThreads, 0, stream>>>(work.get(), hinge.get(), rr.get(), gt_, mask_, n);
      check_launch("rank_tiled_kernel");
    } else {
      sorted_hinge(gt_, mask_);
      rank_product_kernel<T><<<g, kThreads, 0, stream>>>(work.get(), rr.get(), weight.get(), hinge.get(), n);
      check_launch("rank_product_kernel");
    }
    sum_into(1, work.get());
  }

  // rr, hinge and the loss's three values (sums read back to the host).
  RankLossValues<T> forward(T alpha, RankForm form) {
    enqueue_forward(pred.get(), base.get(), gt.get(), mask.get(), form);
    double host_sums[2] = {0.0, 0.0};
    check(cudaMemcpyAsync(host_sums, sums.get(), sizeof host_sums, cudaMemcpyDeviceToHost, stream), "sums download");
    check(cudaStreamSynchronize(stream), "rank loss forward");
    return finish_loss<T>(host_sums[0], host_sums[1], n, alpha, form == RankForm::sorted);
  }

  void sorted_hinge(const T* gt_, const T* mask_) {
    const int g = blocks_for(n);
    check(cudaMemsetAsync(hinge.get(), 0, sizeof(double) * static_cast<std::size_t>(n), stream), "cudaMemset hinge");
    weights_kernel<T><<<g, kThreads, 0, stream>>>(weight.get(), rr.get(), gt_, mask_, n);
    check_launch("weights_kernel");
    make_keys<T><<<g, kThreads, 0, stream>>>(keys_a.get(), rr.get(), gt_, mask_, n);
    check_launch("make_keys");
    RrKey *keys = keys_a.get(), *keys_next = keys_b.get();
    for (int width = 1; width < n; width *= 2) {  // stage 1: by (rr, gt, index)
      merge_rr_pass<<<g, kThreads, 0, stream>>>(keys_next, keys, n, width);
      check_launch("merge_rr_pass");
      std::swap(keys, keys_next);
    }
    make_items<<<g, kThreads, 0, stream>>>(items_a.get(), keys, weight.get(), n);
    check_launch("make_items");
    GtItem *items = items_a.get(), *items_next = items_b.get();
    for (int width = 1; width < n; width *= 2) {  // stage 2: by gt, counting partners at each merge
      double2 *scan = scan_a.get(), *scan_next = scan_b.get();
      scan_init<<<g, kThreads, 0, stream>>>(scan, items, n);
      check_launch("scan_init");
      for (int d = 1; d < width; d *= 2) {
        scan_step<<<g, kThreads, 0, stream>>>(scan_next, scan, n, width, d);
        check_launch("scan_step");
        std::swap(scan, scan_next);
      }
      merge_gt_pass<<<g, kThreads, 0, stream>>>(items_next, hinge.get(), items, scan, n, width);
      check_launch("merge_gt_pass");
      std::swap(items, items_next);
    }
  }

  // dpred_ += d(loss)/d(pred)·dloss from the last forward's rr and hinge, enqueued.
  void enqueue_backward(T* dpred_, T dloss, const T* base_, const T* gt_, const T* mask_, T alpha) {
    rank_backward_kernel<T><<<blocks_for(n), kThreads, 0, stream>>>(dpred_, dloss, rr.get(), base_, gt_, mask_, n,
                                                                    alpha, hinge.get(), 1.0 / static_cast<double>(n));
    check_launch("rank_backward_kernel");
  }
  void backward(T dloss, T alpha) { enqueue_backward(dpred.get(), dloss, base.get(), gt.get(), mask.get(), alpha); }
};

// ---- Adam ---------------------------------------------------------------------------------------------------
// detail::adam_values, one value per thread: AdamW's decay, then L2 decay into g, the moments
// (pointwise::adam_moments), √v and the parameter (pointwise::adam_param). The same correctly rounded
// operations in the same order as the CPU's, so the same bits are expected.
template <class T>
__device__ void adam_one(T* param, T* exp_avg, T* exp_avg_sq, const T* grad, int i, const AdamCoefficients<T>& a) {
  T p = param[i];
  if (a.decoupled) p = p * a.decay;
  T g = grad[i];
  if (a.l2) g = pointwise::fma(p, a.wd, g);
  T m = exp_avg[i], v = exp_avg_sq[i];
  pointwise::adam_moments(g, m, v, a.beta1, a.one_minus_beta1, a.beta2, a.one_minus_beta2);
  exp_avg[i] = m;
  exp_avg_sq[i] = v;
  param[i] = pointwise::adam_param(p, m, sqrt(v), a.bc2_sqrt, a.eps, a.neg_step_size);
}

template <class T>
__global__ void adam_kernel(T* param, T* exp_avg, T* exp_avg_sq, const T* grad, int n, AdamCoefficients<T> a) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  adam_one(param, exp_avg, exp_avg_sq, grad, i, a);
}

// The resident step's Adam: the coefficients read from device memory (a captured graph replays the
// launch with the step's own), and nothing changed when the step's loss is not finite (the CPU step
// throws before Adam; the host reads the loss after the step and throws then).
template <class T>
__global__ void adam_guarded_kernel(T* param, T* exp_avg, T* exp_avg_sq, const T* grad, int n,
                                    const AdamCoefficients<T>* a, const T* loss) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n || !isfinite(*loss)) return;
  adam_one(param, exp_avg, exp_avg_sq, grad, i, *a);
}

// Deterministic synthetic inputs for the benchmarks (a 64-bit LCG): prices near 1, returns of order 1e-2,
// one stock in ten masked out.
struct Lcg {
  std::uint64_t state;
  double next() {  // in [0, 1)
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    return static_cast<double>(state >> 11) * (1.0 / 9007199254740992.0);
  }
};

double elapsed_us(cudaEvent_t start, cudaEvent_t stop, int iters) {
  float ms = 0.0f;
  check(cudaEventElapsedTime(&ms, start, stop), "cudaEventElapsedTime");
  return 1000.0 * static_cast<double>(ms) / iters;
}

struct EventPair {
  EventPair() {
    check(cudaEventCreate(&start), "cudaEventCreate");
    check(cudaEventCreate(&stop), "cudaEventCreate");
  }
  ~EventPair() {
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
  }
  cudaEvent_t start{}, stop{};
};

}  // namespace

// ---- the interface ------------------------------------------------------------------------------------------

bool device_available(std::string* why) {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    if (why) *why = std::string(cudaGetErrorName(status)) + " (" + cudaGetErrorString(status) + ")";
    cudaGetLastError();  // clear the sticky error state the query left
    return false;
  }
  if (count < 1) {
    if (why) *why = "the CUDA runtime reports no device";
    return false;
  }
  return true;
}

void require_device(const std::string& who) {
  std::string why;
  if (!device_available(&why)) throw Error(who + ": no CUDA device: " + why);
}

std::string device_description() {
  require_device("stockmixer::cuda::device_description");
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties");
  return std::string(prop.name) + ", compute capability " + std::to_string(prop.major) + "." +
         std::to_string(prop.minor) + ", " + std::to_string(prop.totalGlobalMem >> 20) + " MiB";
}

template <class T>
RankLossValues<T> rank_loss_forward(T* rr, double* hinge, const T* pred, const T* base, const T* gt,
                                    const T* mask, Index n, T alpha, RankForm form) {
  const int count = checked_size(n, "rank_loss_forward");
  if (form == RankForm::sorted)
    for (int i = 0; i < count; ++i)
      if (!(mask[i] == T(0) || mask[i] == T(1)))
        throw Error("stockmixer::cuda::rank_loss_forward: mask[" + std::to_string(i) + "] = " +
                    std::to_string(static_cast<double>(mask[i])) +
                    "; the sorted rank loss needs masks in {0, 1} (use RankForm::tiled)");
  require_device("stockmixer::cuda::rank_loss_forward");
  RankLossDevice<T> dev(count);
  dev.pred.upload(pred);
  dev.base.upload(base);
  dev.gt.upload(gt);
  dev.mask.upload(mask);
  const RankLossValues<T> out = dev.forward(alpha, form);
  dev.rr.download(rr);
  dev.hinge.download(hinge);
  check(cudaDeviceSynchronize(), "rank_loss_forward");
  return out;
}

template <class T>
void rank_loss_backward(T* dpred, T dloss, const T* rr, const T* base, const T* gt, const T* mask, Index n,
                        T alpha, const double* hinge) {
  const int count = checked_size(n, "rank_loss_backward");
  require_device("stockmixer::cuda::rank_loss_backward");
  RankLossDevice<T> dev(count);
  dev.dpred.upload(dpred);
  dev.rr.upload(rr);
  dev.base.upload(base);
  dev.gt.upload(gt);
  dev.mask.upload(mask);
  dev.hinge.upload(hinge);
  dev.backward(dloss, alpha);
  dev.dpred.download(dpred);
  check(cudaDeviceSynchronize(), "rank_loss_backward");
}

template <class T>
void adam_values(T* param, T* exp_avg, T* exp_avg_sq, const T* grad, Index n, const AdamCoefficients<T>& a) {
  const int count = checked_size(n, "adam_values");
  require_device("stockmixer::cuda::adam_values");
  const auto size = static_cast<std::size_t>(count);
  DeviceArray<T> p(size), m(size), v(size), g(size);
  p.upload(param);
  m.upload(exp_avg);
  v.upload(exp_avg_sq);
  g.upload(grad);
  adam_kernel<T><<<blocks_for(count), kThreads>>>(p.get(), m.get(), v.get(), g.get(), count, a);
  check_launch("adam_kernel");
  p.download(param);
  m.download(exp_avg);
  v.download(exp_avg_sq);
  check(cudaDeviceSynchronize(), "adam_values");
}

template <class T>
double benchmark_rank_loss(Index n, RankForm form, int iters) {
  const int count = checked_size(n, "benchmark_rank_loss");
  if (iters < 1) throw Error("stockmixer::cuda::benchmark_rank_loss: iters = " + std::to_string(iters) + " (expected >= 1)");
  require_device("stockmixer::cuda::benchmark_rank_loss");
  const auto size = static_cast<std::size_t>(count);
  std::vector<T> pred(size), base(size), gt(size), mask(size), zero(size, T(0));
  Lcg rng{12345};
  for (std::size_t i = 0; i < size; ++i) {
    base[i] = static_cast<T>(0.5 + rng.next());
    pred[i] = static_cast<T>(base[i] * (1.0 + 0.02 * (rng.next() - 0.5)));
    gt[i] = static_cast<T>(0.02 * (rng.next() - 0.5));
    mask[i] = rng.next() < 0.9 ? T(1) : T(0);
  }
  RankLossDevice<T> dev(count);
  dev.pred.upload(pred.data());
  dev.base.upload(base.data());
  dev.gt.upload(gt.data());
  dev.mask.upload(mask.data());
  dev.dpred.upload(zero.data());
  const T alpha = T(0.1);
  dev.forward(alpha, form);  // warm-up
  dev.backward(T(1), alpha);
  EventPair ev;
  check(cudaEventRecord(ev.start), "cudaEventRecord");
  for (int k = 0; k < iters; ++k) {
    dev.forward(alpha, form);
    dev.backward(T(1), alpha);
  }
  check(cudaEventRecord(ev.stop), "cudaEventRecord");
  check(cudaEventSynchronize(ev.stop), "cudaEventSynchronize");
  return elapsed_us(ev.start, ev.stop, iters);
}

template <class T>
double benchmark_adam(Index n, int iters) {
  const int count = checked_size(n, "benchmark_adam");
  if (iters < 1) throw Error("stockmixer::cuda::benchmark_adam: iters = " + std::to_string(iters) + " (expected >= 1)");
  require_device("stockmixer::cuda::benchmark_adam");
  const auto size = static_cast<std::size_t>(count);
  std::vector<T> host(size);
  Lcg rng{777};
  for (auto& x : host) x = static_cast<T>(rng.next() - 0.5);
  DeviceArray<T> p(size), m(size), v(size), g(size);
  p.upload(host.data());
  g.upload(host.data());
  check(cudaMemset(m.get(), 0, size * sizeof(T)), "cudaMemset");
  check(cudaMemset(v.get(), 0, size * sizeof(T)), "cudaMemset");
  const AdamCoefficients<T> a{false, false, T(0), T(1), T(0.9), T(0.1), T(0.999), T(0.001), T(0.5), T(1e-8), T(-1e-3)};
  adam_kernel<T><<<blocks_for(count), kThreads>>>(p.get(), m.get(), v.get(), g.get(), count, a);  // warm-up
  check_launch("adam_kernel");
  EventPair ev;
  check(cudaEventRecord(ev.start), "cudaEventRecord");
  for (int k = 0; k < iters; ++k) {
    adam_kernel<T><<<blocks_for(count), kThreads>>>(p.get(), m.get(), v.get(), g.get(), count, a);
    check_launch("adam_kernel");
  }
  check(cudaEventRecord(ev.stop), "cudaEventRecord");
  check(cudaEventSynchronize(ev.stop), "cudaEventSynchronize");
  return elapsed_us(ev.start, ev.stop, iters);
}

// ---- the resident step's entry points (kernels.hpp, namespace detail) -----------------------------------

namespace detail {

template <class T>
struct ResidentRankLoss<T>::Impl {
  explicit Impl(int n) : dev(n) {}
  RankLossDevice<T> dev;
};

template <class T>
ResidentRankLoss<T>::ResidentRankLoss(Index n) {
  const int count = checked_size(n, "detail::ResidentRankLoss");
  require_device("stockmixer::cuda::detail::ResidentRankLoss");
  impl_ = new Impl(count);
}

template <class T>
ResidentRankLoss<T>::~ResidentRankLoss() {
  delete impl_;
}

template <class T>
void ResidentRankLoss<T>::forward(T* out, const T* pred, const T* base, const T* gt, const T* mask, T alpha,
                                  void* stream) {
  RankLossDevice<T>& d = impl_->dev;
  d.stream = static_cast<cudaStream_t>(stream);
  d.enqueue_forward(pred, base, gt, mask, RankForm::sorted);
  finish_loss_kernel<T><<<1, 1, 0, d.stream>>>(out, d.sums.get(), d.n, alpha, true);
  check_launch("finish_loss_kernel");
}

template <class T>
void ResidentRankLoss<T>::backward(T* dpred, T dloss, const T* base, const T* gt, const T* mask, T alpha,
                                   void* stream) {
  RankLossDevice<T>& d = impl_->dev;
  d.stream = static_cast<cudaStream_t>(stream);
  check(cudaMemsetAsync(dpred, 0, sizeof(T) * static_cast<std::size_t>(d.n), d.stream), "cudaMemset dpred");
  d.enqueue_backward(dpred, dloss, base, gt, mask, alpha);
}

template <class T>
const T* ResidentRankLoss<T>::rr() const {
  return impl_->dev.rr.get();
}

template <class T>
void adam_resident(T* param, T* exp_avg, T* exp_avg_sq, const T* grad, Index n, const AdamCoefficients<T>* a,
                   const T* loss, void* stream) {
  const int count = checked_size(n, "detail::adam_resident");
  adam_guarded_kernel<T><<<blocks_for(count), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      param, exp_avg, exp_avg_sq, grad, count, a, loss);
  check_launch("adam_guarded_kernel");
}

template class ResidentRankLoss<float>;
template class ResidentRankLoss<double>;
template void adam_resident<float>(float*, float*, float*, const float*, Index, const AdamCoefficients<float>*,
                                   const float*, void*);
template void adam_resident<double>(double*, double*, double*, const double*, Index,
                                    const AdamCoefficients<double>*, const double*, void*);

}  // namespace detail

// The unit's float and double instances.
#define STOCKMIXER_CUDA_INSTANCES(T)                                                                          \
  template RankLossValues<T> rank_loss_forward<T>(T*, double*, const T*, const T*, const T*, const T*, Index, \
                                                  T, RankForm);                                               \
  template void rank_loss_backward<T>(T*, T, const T*, const T*, const T*, const T*, Index, T, const double*); \
  template void adam_values<T>(T*, T*, T*, const T*, Index, const AdamCoefficients<T>&);                     \
  template double benchmark_rank_loss<T>(Index, RankForm, int);                                              \
  template double benchmark_adam<T>(Index, int);
STOCKMIXER_CUDA_INSTANCES(float)
STOCKMIXER_CUDA_INSTANCES(double)
#undef STOCKMIXER_CUDA_INSTANCES

}  // namespace cuda
}  // namespace stockmixer
