// src/cuda/model.cu — StockMixer's forward and backward on the device (include/stockmixer/cuda/model.hpp).
// Built only with -DSTOCKMIXER_CUDA=ON.
//
// Every thread's work is a body of cuda/per_stock.hpp or cuda/stock_head.hpp, and the order of the
// launches is theirs too (the *_steps templates): this file supplies the grid that turns each step into
// one kernel launch, run_body, which computes the thread's index and calls the body. The CPU tests
// (tests/test_cuda_host.cpp) run the same steps with a host grid. Compiled with -fmad=false, IEEE
// division and square root (nvcc's defaults), no flush to zero. docs/cuda.md.
#include "stockmixer/cuda/model.hpp"
#include "stockmixer/cuda/stock_head.hpp"

#include <cuda_runtime.h>

#include <limits>
#include <string>
#include <vector>

namespace stockmixer {
namespace cuda {

namespace {

constexpr int kModelThreads = 128;  // threads per block of every model kernel

void check_status(cudaError_t status, const std::string& what) {
  if (status != cudaSuccess)
    throw Error("stockmixer::cuda::" + what + ": " + cudaGetErrorName(status) + " (" + cudaGetErrorString(status) + ")");
}

// Thread i of the launch runs body(i), for i < count.
template <class Body>
__global__ void run_body(Body body, Index count) {
  const Index i = static_cast<Index>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < count) body(i);
}

// The device grid: each call is one launch on the stream, its failure named with the caller and step.
struct DeviceGrid {
  cudaStream_t stream;
  const char* who;
  int step = 0;
  template <class Body>
  void operator()(Index count, const Body& body) {
    ++step;
    if (count <= 0) return;
    const Index blocks = (count + kModelThreads - 1) / kModelThreads;
    run_body<Body><<<static_cast<unsigned>(blocks), kModelThreads, 0, stream>>>(body, count);
    check_status(cudaGetLastError(), std::string(who) + ": launch " + std::to_string(step));
  }
};

// One device allocation of count values, freed on scope exit (the host-array wrappers only).
template <class V>
class Buffer {
 public:
  explicit Buffer(Index count, const char* what) : count_(count > 0 ? static_cast<std::size_t>(count) : 0) {
    if (count_ > 0) check_status(cudaMalloc(reinterpret_cast<void**>(&data_), count_ * sizeof(V)), std::string("cudaMalloc ") + what);
  }
  ~Buffer() {
    if (data_) cudaFree(data_);
  }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  V* get() const { return data_; }
  void upload(const V* host, const char* what) {
    if (count_ > 0) check_status(cudaMemcpy(data_, host, count_ * sizeof(V), cudaMemcpyHostToDevice), std::string("upload ") + what);
  }
  void download(V* host, const char* what) const {
    if (count_ > 0) check_status(cudaMemcpy(host, data_, count_ * sizeof(V), cudaMemcpyDeviceToHost), std::string("download ") + what);
  }

 private:
  V* data_ = nullptr;
  std::size_t count_;
};

cudaStream_t as_stream(void* stream) { return static_cast<cudaStream_t>(stream); }

// Device buffers for one model, sized by model_buffer_sizes.
template <class T>
struct OwnedBuffers {
  ModelBufferSizes s;
  Buffer<T> acts, y, work;
  Buffer<double> head, head_work, partials;
  explicit OwnedBuffers(const ModelDims& d)
      : s(model_buffer_sizes(d)), acts(s.acts, "acts"), y(s.y, "y"), work(s.work, "work"), head(s.head, "head"),
        head_work(s.head_work, "head_work"), partials(s.partials, "partials") {}
  ModelBuffers<T> view() const {
    return {acts.get(), y.get(), head.get(), head_work.get(), work.get(), partials.get()};
  }
};

}  // namespace

template <class T>
void model_forward(T* out, const T* x, const T* params, const ModelDims& dims, const ModelBuffers<T>& buffers,
                   bool training, void* stream) {
  validate(dims, "stockmixer::cuda::model_forward");
  DeviceGrid grid{as_stream(stream), "model_forward"};
  model_forward_steps(grid, out, x, params, dims, buffers, training);
}

template <class T>
void model_backward(T* grads, T* dx, const T* dout, const T* x, const T* params, const ModelDims& dims,
                    const ModelBuffers<T>& buffers, void* stream) {
  validate(dims, "stockmixer::cuda::model_backward");
  DeviceGrid grid{as_stream(stream), "model_backward"};
  model_backward_steps(grid, grads, dx, dout, x, params, dims, buffers);
}

template <class T>
void per_stock_forward(T* y, T* acts, const T* x, const T* params, const ModelDims& dims, bool training,
                       void* stream) {
  validate(dims, "stockmixer::cuda::per_stock_forward");
  DeviceGrid grid{as_stream(stream), "per_stock_forward"};
  PerStockArgs<T> a = per_stock_args(dims, params);
  a.x = x, a.acts = acts, a.y = y, a.training = training;
  per_stock_forward_steps(grid, a);
}

template <class T>
void per_stock_backward(T* grads, T* dx, const T* dy, const T* x, const T* acts, const T* params,
                        const ModelDims& dims, T* work, double* partials, void* stream) {
  validate(dims, "stockmixer::cuda::per_stock_backward");
  DeviceGrid grid{as_stream(stream), "per_stock_backward"};
  PerStockArgs<T> a = per_stock_args(dims, params);
  // The bodies only read acts in the backward; the args hold one pointer type for both passes.
  a.x = x, a.acts = const_cast<T*>(acts), a.dy = dy, a.dx = dx, a.work = work, a.partials = partials, a.grads = grads;
  per_stock_backward_steps(grid, a);
}

template <class T>
void stock_head_forward(T* out, double* head, const T* y, const T* params, const ModelDims& dims, double* head_work,
                        void* stream) {
  validate(dims, "stockmixer::cuda::stock_head_forward");
  DeviceGrid grid{as_stream(stream), "stock_head_forward"};
  StockHeadArgs<T> a = stock_head_args(dims, params);
  a.y = y, a.out = out, a.head = head, a.work = head_work;
  stock_head_forward_steps(grid, a);
}

template <class T>
void stock_head_backward(T* grads, T* dy, const T* dout, const T* y, const double* head, const T* params,
                         const ModelDims& dims, double* head_work, void* stream) {
  validate(dims, "stockmixer::cuda::stock_head_backward");
  DeviceGrid grid{as_stream(stream), "stock_head_backward"};
  StockHeadArgs<T> a = stock_head_args(dims, params);
  // The backward bodies only read head; the args hold one pointer type for both passes.
  a.y = y, a.dout = dout, a.dy = dy, a.grads = grads, a.head = const_cast<double*>(head), a.work = head_work;
  stock_head_backward_steps(grid, a);
}

template <class T>
void model_forward_host(T* out, const T* x, const T* params, const ModelDims& dims) {
  validate(dims, "stockmixer::cuda::model_forward_host");
  require_device("stockmixer::cuda::model_forward_host");
  const ParameterLayout lay = parameter_layout(dims);
  const Index nx = dims.stocks * dims.lookback * dims.features;
  Buffer<T> d_x(nx, "x"), d_params(lay.size, "params"), d_out(dims.stocks, "out");
  d_x.upload(x, "x");
  d_params.upload(params, "params");
  OwnedBuffers<T> b(dims);
  model_forward(d_out.get(), d_x.get(), d_params.get(), dims, b.view(), false, nullptr);
  check_status(cudaDeviceSynchronize(), "model_forward_host");
  d_out.download(out, "out");
}

template <class T>
void model_backward_host(T* out, T* grads, T* dx, const T* dout, const T* x, const T* params, const ModelDims& dims) {
  validate(dims, "stockmixer::cuda::model_backward_host");
  require_device("stockmixer::cuda::model_backward_host");
  const ParameterLayout lay = parameter_layout(dims);
  const Index nx = dims.stocks * dims.lookback * dims.features;
  Buffer<T> d_x(nx, "x"), d_params(lay.size, "params"), d_grads(lay.size, "grads"), d_out(dims.stocks, "out"),
      d_dout(dims.stocks, "dout"), d_dx(dx ? nx : 0, "dx");
  d_x.upload(x, "x");
  d_params.upload(params, "params");
  d_grads.upload(grads, "grads");
  d_dout.upload(dout, "dout");
  if (dx) d_dx.upload(dx, "dx");
  OwnedBuffers<T> b(dims);
  model_forward(d_out.get(), d_x.get(), d_params.get(), dims, b.view(), true, nullptr);
  model_backward(d_grads.get(), dx ? d_dx.get() : nullptr, d_dout.get(), d_x.get(), d_params.get(), dims, b.view(),
                 nullptr);
  check_status(cudaDeviceSynchronize(), "model_backward_host");
  d_out.download(out, "out");
  d_grads.download(grads, "grads");
  if (dx) d_dx.download(dx, "dx");
}

#define STOCKMIXER_CUDA_MODEL(T)                                                                                  \
  template void model_forward<T>(T*, const T*, const T*, const ModelDims&, const ModelBuffers<T>&, bool, void*);  \
  template void model_backward<T>(T*, T*, const T*, const T*, const T*, const ModelDims&, const ModelBuffers<T>&, \
                                  void*);                                                                         \
  template void per_stock_forward<T>(T*, T*, const T*, const T*, const ModelDims&, bool, void*);                  \
  template void per_stock_backward<T>(T*, T*, const T*, const T*, const T*, const T*, const ModelDims&, T*,       \
                                      double*, void*);                                                            \
  template void stock_head_forward<T>(T*, double*, const T*, const T*, const ModelDims&, double*, void*);         \
  template void stock_head_backward<T>(T*, T*, const T*, const T*, const double*, const T*, const ModelDims&,     \
                                       double*, void*);                                                           \
  template void model_forward_host<T>(T*, const T*, const T*, const ModelDims&);                                  \
  template void model_backward_host<T>(T*, T*, T*, const T*, const T*, const T*, const ModelDims&);
STOCKMIXER_CUDA_MODEL(float)
STOCKMIXER_CUDA_MODEL(double)
#undef STOCKMIXER_CUDA_MODEL

}  // namespace cuda
}  // namespace stockmixer
