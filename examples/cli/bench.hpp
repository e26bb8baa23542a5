// cli/bench.hpp — stockmixer bench: medians of inference, a training step and the loss on random data,
// on the CPU or (--device cuda) on the device: the resident step (cuda/step.hpp, one graph launch a
// step, its window gathered on the device from a market uploaded once), inference from a host x to a
// host prediction (copies included), and the rank loss alone (forward and backward, its two sums read
// back: cuda::benchmark_rank_loss).
#pragma once

#include "common.hpp"

#include <stockmixer/isa.hpp>
#include <stockmixer/loss.hpp>
#include <stockmixer/train/step.hpp>

#include <random>

namespace stockmixer::cli {

#if defined(STOCKMIXER_HAVE_CUDA)
// The device's three figures for the model `model` (its initial parameters), in milliseconds.
template <class T>
json bench_device(const Options& a, const StockMixer<T>& model, T alpha) {
  const StockMixerConfig& c = model.config();
  const Index n = c.stocks, iters = a.integer("iters");
  const Index windows = 8, days = windows + c.lookback;  // offsets 0 .. 7, steps = 1
  // A random market of that many days: values as the CPU's batches, each stock present on every day
  // or on none (so that a window's mask, the min over its days, keeps nine stocks in ten).
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> u(-1, 1);
  const auto cells = static_cast<std::size_t>(n * days);
  std::vector<T> eod(cells * static_cast<std::size_t>(c.features)), mask(cells), gt(cells), price(cells);
  for (T& v : eod) v = static_cast<T>(0.5 + 0.1 * u(rng));
  for (Index i = 0; i < n; ++i) {
    const T present = u(rng) > -0.8 ? T(1) : T(0);
    for (Index d = 0; d < days; ++d) {
      const auto k = static_cast<std::size_t>(i * days + d);
      mask[k] = present;
      gt[k] = static_cast<T>(0.02 * u(rng));
      price[k] = static_cast<T>(1 + 0.1 * u(rng));
    }
  }
  allocating("the model, the market and the buffers of the resident step on the device");
  const std::unique_ptr<cuda::DeviceTrainer<T>> trainer = device_trainer(model, alpha);
  cuda::DeviceTrainer<T>& device = *trainer;
  device.upload_market(eod.data(), mask.data(), gt.data(), price.data(), days, 1);
  const AdamOptions adam;
  std::int64_t steps = 0;
  Index next = 0;
  auto step = [&] {
    ++steps;
    device.step(next++ % windows, cuda::adam_coefficients<T>(stockmixer::detail::adam_scalars<T>(steps, adam)));
  };
  // Inference's input: N·T·C of the market's random values (any values of that shape time the same).
  std::vector<T> x(eod.begin(), eod.begin() + static_cast<std::ptrdiff_t>(n * c.lookback * c.features));
  std::vector<T> pred(static_cast<std::size_t>(n));
  device.predict(pred.data(), x.data());  // warm up; the first step captures the graph
  step();
  const double inference = median_ms(iters, [&] { device.predict(pred.data(), x.data()); });
  const double train_step = median_ms(iters, step);
  const double loss = cuda::benchmark_rank_loss<T>(n, cuda::RankForm::sorted, static_cast<int>(iters)) / 1000.0;
  return {{"gpu", cuda::device_description()},
          {"graph_nodes", device.graph_nodes()},
          {"inference_ms", inference},
          {"train_step_ms", train_step},
          {"loss_ms", loss}};
}
#endif

template <class T>
int bench(const Options& a) {
  const Device device = device_of(a);
  StockMixerConfig c;
  c.stocks = a.integer("stocks");
  c.lookback = a.integer("lookback");
  c.features = a.integer("features");
  c.market = a.integer("market");
  const Index iters = a.integer("iters");
  set_num_threads(static_cast<int>(a.integer("threads")));
  const Index n = c.stocks;
  // One batch (x [N, T, C], gt, base, mask and a prediction [N, 1]) and the stock mixer's [M, N] weights
  // with their gradients and Adam's moments: a lower bound of what the benchmark holds.
  const double stocks = static_cast<double>(n);
  require_memory_for(a,
                 stocks * static_cast<double>(c.lookback * c.features + 5) * sizeof(T) +
                     8.0 * static_cast<double>(c.market) * stocks * sizeof(T),
                 "a benchmark of --stocks " + std::to_string(n) + " --lookback " + std::to_string(c.lookback) +
                     " --features " + std::to_string(c.features) + " --market " + std::to_string(c.market));
  allocating("the model StockMixer(N = " + std::to_string(n) + ", T = " + std::to_string(c.lookback) + ", C = " +
             std::to_string(c.features) + ", M = " + std::to_string(c.market) + "), its random batches and buffers");
  StockMixer<T> model(c, 1);
  // Several random batches, used in turn, as training meets a new day every step: the rank loss
  // branches on its inputs, and on one batch repeated the branch predictor learns those branches
  // (its sorts then look up to three times faster than they are). Eight batches, or fewer so that
  // their inputs take at most 16 MiB (a step's own memory is what the peak should show). Each batch
  // has a prediction too, for timing the loss alone.
  const double batch_bytes = static_cast<double>(n) * static_cast<double>(c.lookback * c.features + 4) * sizeof(T);
  const auto batches = static_cast<Index>(std::clamp(std::floor(16.0 * 1024 * 1024 / batch_bytes), 1.0, 8.0));
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> u(-1, 1);
  std::vector<data::Batch<T>> inputs(static_cast<std::size_t>(batches));
  std::vector<Tensor<T>> preds(inputs.size(), Tensor<T>({n, 1}));
  for (std::size_t k = 0; k < inputs.size(); ++k) {
    data::Batch<T>& b = inputs[k];
    b.x.resize({n, c.lookback, c.features});
    b.gt.resize({n, 1});
    b.base.resize({n, 1});
    b.mask.resize({n, 1});
    for (Index i = 0; i < b.x.size(); ++i) b.x.data()[i] = static_cast<T>(0.5 + 0.1 * u(rng));
    for (Index i = 0; i < n; ++i) {
      b.gt(i, 0) = static_cast<T>(0.02 * u(rng));
      b.base(i, 0) = static_cast<T>(1 + 0.1 * u(rng));
      b.mask(i, 0) = u(rng) > -0.8 ? T(1) : T(0);
      preds[k](i, 0) = static_cast<T>(b.base(i, 0) * (1 + 0.02 * u(rng)));
    }
  }
  Index next = 0;  // the batch the next call uses
  auto take = [&] { return static_cast<std::size_t>(next++ % batches); };
  Tensor<T> rr({n, 1}), dpred({n, 1});
  const T alpha = T(0.1);
#if defined(STOCKMIXER_HAVE_CUDA)
  if (device == Device::cuda) {
    json report = {{"device", "cuda"},     {"stocks", n},         {"lookback", c.lookback},
                   {"features", c.features}, {"market", c.market}, {"iters", iters},
                   {"precision", a.str("precision")}, {"parameters", model.num_parameters()}};
    report.update(bench_device<T>(a, model, alpha));
    std::cout << report.dump() << "\n";
    return 0;
  }
#endif
  train::TrainStep<T> one_step(model, AdamOptions{}, alpha);
  auto step = [&] { one_step(inputs[take()]); };
  model.predict(inputs[0].x.map());  // warm up: sizes every buffer
  step();
  const double inference = median_ms(iters, [&] { model.predict(inputs[take()].x.map()); });
  const double train_step = median_ms(iters, step);
  RankLossWorkspace ws(n);
  const double loss = median_ms(iters, [&] {
    const std::size_t k = take();
    const data::Batch<T>& b = inputs[k];
    rank_loss_forward_sorted(rr.data(), preds[k].data(), b.base.data(), b.gt.data(), b.mask.data(), n, alpha, ws);
    rank_loss_backward_sorted(dpred.data(), T(1), rr.data(), b.base.data(), b.gt.data(), b.mask.data(), n, alpha, ws);
  });
  const json report = {{"device", device_name(device)},
                       {"stocks", n},
                       {"lookback", c.lookback},
                       {"features", c.features},
                       {"market", c.market},
                       {"threads", num_threads()},
                       {"iters", iters},
                       {"batches", batches},
                       {"precision", a.str("precision")},
                       // The instruction set the fused kernels and Adam ran (isa.hpp, after STOCKMIXER_MAX_ISA).
                       {"isa", isa_name(kernel_isa())},
                       {"parameters", model.num_parameters()},
                       {"inference_ms", inference},
                       {"train_step_ms", train_step},
                       {"loss_ms", loss}};
  std::cout << report.dump() << "\n";
  return 0;
}

template <class T> struct Bench { static int run(const Options& a) { return bench<T>(a); } };

inline int bench_command(int argc, char** argv) {
  Options a("bench", {integer("stocks", "1026", "N", 1, kMaxStocks), integer("lookback", "16", "T (even)", 2, kMaxLookback),
                      integer("features", "5", "C", 1, kMaxFeatures), integer("market", "20", "M", 1, kMaxWidth),
                      threads_option(), integer("iters", "50", "timed iterations per figure", 1, 1'000'000),
                      precision_option(), device_option()});
  if (!parse(a,
             "Times, on random data of the given shape, the medians of inference (predict), a training step\n"
             "(forward, loss, backward, Adam) and the loss (forward + backward); prints one JSON object. With\n"
             "--device cuda: the training step resident on the device (one CUDA graph launch), inference from and\n"
             "to host arrays, and the rank loss alone (docs/cuda.md).",
             argc, argv))
    return 0;
  a.validate();
  return with_precision<Bench>(a);
}

}  // namespace stockmixer::cli
