// src/cuda/step.cu — the resident training step and inference (include/stockmixer/cuda/step.hpp): the
// parameter store, Adam's moments, the market and one batch on the device, a step captured once into a
// CUDA graph and replayed. The model's kernels are cuda/model.hpp's (src/cuda/model.cu), the rank loss
// and Adam kernels.hpp's device-pointer entry points (src/cuda/stockmixer_cuda.cu). docs/cuda.md.
#include "stockmixer/cuda/step.hpp"

#include <cuda_runtime.h>

#include <cmath>
#include <cstddef>
#include <string>

namespace stockmixer {
namespace cuda {

namespace {

constexpr int kThreads = 256;

void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess)
    throw Error(std::string("stockmixer::cuda::DeviceTrainer: ") + what + ": " + cudaGetErrorName(status) + " (" +
                cudaGetErrorString(status) + ")");
}

// One device allocation of `count` values, freed with its owner.
template <class V>
class Buffer {
 public:
  Buffer() = default;
  explicit Buffer(std::size_t count) { reset(count); }
  ~Buffer() { release(); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  void reset(std::size_t count) {
    release();
    count_ = count;
    if (count > 0) {
      check(cudaMalloc(reinterpret_cast<void**>(&data_), count * sizeof(V)), "cudaMalloc");
      check(cudaMemset(data_, 0, count * sizeof(V)), "cudaMemset");
    }
  }
  V* get() const { return data_; }
  std::size_t count() const { return count_; }

 private:
  void release() {
    if (data_) cudaFree(data_);
    data_ = nullptr;
    count_ = 0;
  }
  V* data_ = nullptr;
  std::size_t count_ = 0;
};

// What a step reads from device memory, written by the host before each graph launch.
template <class T>
struct StepScalars {
  Index offset;
  AdamCoefficients<T> adam;
};

template <class T>
__global__ void gather_kernel(GatherArgs<T> g, const StepScalars<T>* scalars) {
  const Index i = static_cast<Index>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= g.stocks) return;
  gather_stock(g, scalars->offset, i);
}

std::size_t count_of(Index n) {
  return static_cast<std::size_t>(n);
}

}  // namespace

template <class T>
struct DeviceTrainer<T>::Impl {
  Impl(const ModelDims& d, T a)
      : dims((cuda::validate(d, "stockmixer::cuda::DeviceTrainer"), d)),
        alpha(a),
        layout(cuda::parameter_layout(d)),
        sizes(cuda::model_buffer_sizes(d)),
        n(d.stocks) {
    check(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cudaStreamCreate");
    const auto p = count_of(layout.size), stocks = count_of(n);
    store.reset(2 * p);
    moments.reset(2 * p);
    x.reset(stocks * count_of(d.lookback * d.features));
    batch_mask.reset(stocks);
    base.reset(stocks);
    batch_gt.reset(stocks);
    out.reset(stocks);
    dout.reset(stocks);
    loss.reset(3);
    scalars.reset(1);
    acts.reset(count_of(sizes.acts));
    y.reset(count_of(sizes.y));
    head.reset(count_of(sizes.head));
    head_work.reset(count_of(sizes.head_work));
    work.reset(count_of(sizes.work));
    partials.reset(count_of(sizes.partials));
    check(cudaMallocHost(reinterpret_cast<void**>(&host_scalars), sizeof(StepScalars<T>)), "cudaMallocHost");
    check(cudaMallocHost(reinterpret_cast<void**>(&host_loss), 3 * sizeof(T)), "cudaMallocHost");
    // The buffers were zeroed on the default stream, which this non-blocking stream does not wait for.
    check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
  }

  // A copy on the step's stream, complete when it returns (every transfer goes through the stream: it
  // does not synchronise with the default stream).
  void copy(void* to, const void* from, std::size_t bytes, cudaMemcpyKind kind, const char* what) const {
    check(cudaMemcpyAsync(to, from, bytes, kind, stream), what);
    check(cudaStreamSynchronize(stream), what);
  }
  ~Impl() {
    drop_graph();
    if (host_scalars) cudaFreeHost(host_scalars);
    if (host_loss) cudaFreeHost(host_loss);
    if (stream) cudaStreamDestroy(stream);
  }

  T* params() const { return store.get(); }
  T* grads() const { return store.get() + layout.size; }
  T* exp_avg() const { return moments.get(); }
  T* exp_avg_sq() const { return moments.get() + layout.size; }
  ModelBuffers<T> buffers() const {
    return {acts.get(), y.get(), head.get(), head_work.get(), work.get(), partials.get()};
  }

  void drop_graph() {
    if (exec) cudaGraphExecDestroy(exec);
    if (graph) cudaGraphDestroy(graph);
    exec = nullptr;
    graph = nullptr;
    nodes = 0;
  }

  // The step's launches, in order, on `stream` (captured once by capture()).
  void enqueue_step() {
    const GatherArgs<T> g{eod.get(),      market_mask.get(), market_gt.get(), price.get(),    x.get(),
                          batch_mask.get(), base.get(),      batch_gt.get(),  n,              days,
                          dims.features,  dims.lookback,     steps};
    gather_kernel<T><<<static_cast<unsigned>((n + kThreads - 1) / kThreads), kThreads, 0, stream>>>(g, scalars.get());
    check(cudaGetLastError(), "gather_kernel");
    check(cudaMemsetAsync(grads(), 0, count_of(layout.size) * sizeof(T), stream), "cudaMemsetAsync gradients");
    model_forward<T>(out.get(), x.get(), params(), dims, buffers(), true, stream);
    rank_loss.forward(loss.get(), out.get(), base.get(), batch_gt.get(), batch_mask.get(), alpha, stream);
    rank_loss.backward(dout.get(), T(1), base.get(), batch_gt.get(), batch_mask.get(), alpha, stream);
    model_backward<T>(grads(), nullptr, dout.get(), x.get(), params(), dims, buffers(), stream);
    detail::adam_resident<T>(params(), exp_avg(), exp_avg_sq(), grads(), layout.size, &scalars.get()->adam,
                             loss.get(), stream);
  }

  void capture() {
    check(cudaStreamBeginCapture(stream, cudaStreamCaptureModeRelaxed), "cudaStreamBeginCapture");
    try {
      enqueue_step();
    } catch (...) {
      cudaGraph_t partial = nullptr;
      cudaStreamEndCapture(stream, &partial);
      if (partial) cudaGraphDestroy(partial);
      cudaGetLastError();
      throw;
    }
    check(cudaStreamEndCapture(stream, &graph), "cudaStreamEndCapture");
    check(cudaGraphInstantiate(&exec, graph, 0), "cudaGraphInstantiate");
    check(cudaGraphGetNodes(graph, nullptr, &nodes), "cudaGraphGetNodes");
  }

  ModelDims dims;
  T alpha;
  ParameterLayout layout;
  ModelBufferSizes sizes;
  Index n;
  Index days = 0, steps = 0;  // the market's; days 0: none uploaded
  cudaStream_t stream = nullptr;
  Buffer<T> store, moments;                        // [values | gradients], [exp_avg | exp_avg_sq]
  Buffer<T> eod, market_mask, market_gt, price;    // the market
  Buffer<T> x, batch_mask, base, batch_gt;         // one window
  Buffer<T> out, dout, loss;                       // prediction [N], its gradient, loss/reg/rank
  Buffer<StepScalars<T>> scalars;
  Buffer<T> acts, y, work;
  Buffer<double> head, head_work, partials;
  detail::ResidentRankLoss<T> rank_loss{n};
  StepScalars<T>* host_scalars = nullptr;  // pinned: copied asynchronously before each launch
  T* host_loss = nullptr;                  // pinned
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  std::size_t nodes = 0;
};

template <class T>
DeviceTrainer<T>::DeviceTrainer(const ModelDims& dims, T alpha) {
  require_device("stockmixer::cuda::DeviceTrainer");
  impl_ = new Impl(dims, alpha);
}

template <class T>
DeviceTrainer<T>::~DeviceTrainer() {
  delete impl_;
}

template <class T>
const ModelDims& DeviceTrainer<T>::dims() const {
  return impl_->dims;
}

template <class T>
Index DeviceTrainer<T>::parameter_count() const {
  return impl_->layout.size;
}

template <class T>
void DeviceTrainer<T>::upload_market(const T* eod, const T* mask, const T* gt, const T* price, Index days,
                                     Index steps) {
  Impl& d = *impl_;
  if (days < d.dims.lookback + steps || steps < 1)
    throw Error("stockmixer::cuda::DeviceTrainer::upload_market: D = " + std::to_string(days) + " days, steps " +
                std::to_string(steps) + " (expected steps >= 1 and D >= lookback + steps = " +
                std::to_string(d.dims.lookback + steps) + ")");
  check(cudaStreamSynchronize(d.stream), "cudaStreamSynchronize");
  d.drop_graph();  // the graph holds the old market's addresses
  const std::size_t cells = count_of(d.n) * count_of(days);
  d.eod.reset(cells * count_of(d.dims.features));
  d.market_mask.reset(cells);
  d.market_gt.reset(cells);
  d.price.reset(cells);
  check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");  // the zero fills, on the default stream
  d.copy(d.eod.get(), eod, d.eod.count() * sizeof(T), cudaMemcpyHostToDevice, "upload eod");
  d.copy(d.market_mask.get(), mask, cells * sizeof(T), cudaMemcpyHostToDevice, "upload mask");
  d.copy(d.market_gt.get(), gt, cells * sizeof(T), cudaMemcpyHostToDevice, "upload gt");
  d.copy(d.price.get(), price, cells * sizeof(T), cudaMemcpyHostToDevice, "upload price");
  d.days = days;
  d.steps = steps;
}

template <class T>
void DeviceTrainer<T>::upload_parameters(const T* values) {
  Impl& d = *impl_;
  d.copy(d.params(), values, count_of(d.layout.size) * sizeof(T), cudaMemcpyHostToDevice, "upload parameters");
}

template <class T>
void DeviceTrainer<T>::download_parameters(T* values) const {
  const Impl& d = *impl_;
  d.copy(values, d.params(), count_of(d.layout.size) * sizeof(T), cudaMemcpyDeviceToHost, "download parameters");
}

template <class T>
void DeviceTrainer<T>::download_gradients(T* grads) const {
  const Impl& d = *impl_;
  d.copy(grads, d.grads(), count_of(d.layout.size) * sizeof(T), cudaMemcpyDeviceToHost, "download gradients");
}

template <class T>
void DeviceTrainer<T>::upload_moments(const T* exp_avg, const T* exp_avg_sq) {
  Impl& d = *impl_;
  const std::size_t bytes = count_of(d.layout.size) * sizeof(T);
  d.copy(d.exp_avg(), exp_avg, bytes, cudaMemcpyHostToDevice, "upload exp_avg");
  d.copy(d.exp_avg_sq(), exp_avg_sq, bytes, cudaMemcpyHostToDevice, "upload exp_avg_sq");
}

template <class T>
void DeviceTrainer<T>::download_moments(T* exp_avg, T* exp_avg_sq) const {
  const Impl& d = *impl_;
  const std::size_t bytes = count_of(d.layout.size) * sizeof(T);
  d.copy(exp_avg, d.exp_avg(), bytes, cudaMemcpyDeviceToHost, "download exp_avg");
  d.copy(exp_avg_sq, d.exp_avg_sq(), bytes, cudaMemcpyDeviceToHost, "download exp_avg_sq");
}

template <class T>
DeviceStepLoss<T> DeviceTrainer<T>::step(Index offset, const AdamCoefficients<T>& adam) {
  Impl& d = *impl_;
  if (d.days == 0) throw Error("stockmixer::cuda::DeviceTrainer::step: no market uploaded (upload_market first)");
  const std::string problem = gather_offset_problem(d.days, d.dims.lookback, d.steps, offset);
  if (!problem.empty()) throw Error("stockmixer::cuda::DeviceTrainer::step: " + problem);
  // The previous step synchronised, so the pinned scalars are free to be written.
  d.host_scalars->offset = offset;
  d.host_scalars->adam = adam;
  check(cudaMemcpyAsync(d.scalars.get(), d.host_scalars, sizeof(StepScalars<T>), cudaMemcpyHostToDevice, d.stream),
        "upload the step's offset and Adam coefficients");
  if (!d.exec) d.capture();
  check(cudaGraphLaunch(d.exec, d.stream), "cudaGraphLaunch");
  check(cudaMemcpyAsync(d.host_loss, d.loss.get(), 3 * sizeof(T), cudaMemcpyDeviceToHost, d.stream),
        "download the loss");
  check(cudaStreamSynchronize(d.stream), "the training step");
  return {d.host_loss[0], d.host_loss[1], d.host_loss[2]};
}

template <class T>
void DeviceTrainer<T>::predict(T* pred, const T* x) {
  Impl& d = *impl_;
  check(cudaMemcpyAsync(d.x.get(), x, d.x.count() * sizeof(T), cudaMemcpyHostToDevice, d.stream), "upload x");
  model_forward<T>(d.out.get(), d.x.get(), d.params(), d.dims, d.buffers(), false, d.stream);
  check(cudaMemcpyAsync(pred, d.out.get(), count_of(d.n) * sizeof(T), cudaMemcpyDeviceToHost, d.stream),
        "download the prediction");
  check(cudaStreamSynchronize(d.stream), "predict");
}

template <class T>
bool DeviceTrainer<T>::graph_captured() const {
  return impl_->exec != nullptr;
}

template <class T>
std::size_t DeviceTrainer<T>::graph_nodes() const {
  return impl_->nodes;
}

template class DeviceTrainer<float>;
template class DeviceTrainer<double>;

}  // namespace cuda
}  // namespace stockmixer
