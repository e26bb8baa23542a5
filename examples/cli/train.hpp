// cli/train.hpp — stockmixer train: train::train_job with the command line's options, Ctrl-C stopping
// the run after its current step. --device cuda runs the training steps on the device (DeviceStep below:
// cuda/step.hpp's resident step); each epoch's validation and test sweeps, checkpoints, the state a
// resume reads and everything written run on the CPU as without it, from the parameters and Adam's
// moments downloaded at the end of the epoch's steps.
#pragma once

#include "common.hpp"

#include <stockmixer/train/job.hpp>

#include <cmath>
#include <csignal>
#include <memory>

namespace stockmixer::cli {

#if defined(STOCKMIXER_HAVE_CUDA)
// train::StepEngine on the device: the trainer's market uploaded once; before each epoch's steps the
// CPU model's parameters and Adam's moments and step count go up, after them they come back.
template <class T>
class DeviceStep final : public train::StepEngine<T> {
 public:
  explicit DeviceStep(train::Trainer<T>& trainer)
      : device_(device_trainer(trainer.model(), static_cast<T>(trainer.config().alpha))),
        adam_(trainer.optimizer().options()) {
    const data::Market<T>& m = trainer.market();
    device_->upload_market(m.eod.data(), m.mask.data(), m.gt.data(), m.price.data(), m.days(), m.steps);
  }
  void begin(StockMixer<T>& model, Adam<T>& adam) override {
    device_->upload_parameters(model.parameters().values());
    device_->upload_moments(adam.exp_avg().data(), adam.exp_avg_sq().data());
    steps_ = adam.steps();
  }
  train::StepLoss step(Index offset) override {
    const cuda::DeviceStepLoss<T> l =
        device_->step(offset, cuda::adam_coefficients<T>(stockmixer::detail::adam_scalars<T>(steps_ + 1, adam_)));
    const double loss = static_cast<double>(l.loss);
    // As TrainStep: nothing was updated (the device skipped Adam), and the step does not count.
    if (!std::isfinite(loss))
      throw Error("stockmixer::train: the loss is " + std::to_string(loss) +
                  ": training diverged; lower the learning rate (--device cuda)");
    ++steps_;
    return {loss, static_cast<double>(l.reg), static_cast<double>(l.rank)};
  }
  void end(StockMixer<T>& model, Adam<T>& adam) override {
    device_->download_parameters(model.parameters().values());
    device_->download_moments(adam.exp_avg().data(), adam.exp_avg_sq().data());
    adam.set_state(steps_);
  }

 private:
  std::unique_ptr<cuda::DeviceTrainer<T>> device_;
  AdamOptions adam_;
  std::int64_t steps_ = 0;
};

// The hooks that put every run's trainer (one per seed) on the device.
inline train::EngineHooks device_engine() {
  auto f32 = std::make_shared<std::unique_ptr<DeviceStep<float>>>();
  auto f64 = std::make_shared<std::unique_ptr<DeviceStep<double>>>();
  train::EngineHooks hooks;
  hooks.f32 = [f32](train::Trainer<float>& t) {
    *f32 = std::make_unique<DeviceStep<float>>(t);
    t.set_engine(f32->get());
  };
  hooks.f64 = [f64](train::Trainer<double>& t) {
    *f64 = std::make_unique<DeviceStep<double>>(t);
    t.set_engine(f64->get());
  };
  return hooks;
}
#endif

inline int train_command(int argc, char** argv) {
  std::vector<Option> options = train::train_options();
  options.push_back(device_option());
  Options a("train", options);
  if (!parse(a,
             "Trains StockMixer with the original protocol (shuffled offsets, one date per step, validation and test\n"
             "every epoch, the epoch with the best validation loss kept) on real end-of-day data (--data) or on the\n"
             "built-in synthetic market (a planted, learnable cross-sectional signal; docs/synthetic_market.md).\n"
             "Writes metrics.jsonl, best.safetensors, summary.json, predictions.csv (the best epoch's scores and\n"
             "realised returns on the validation and test days) and report.md (with loss.png and equity.png) to\n"
             "--out, and prints a short table of the best epoch. Options can also come from --config FILE (a JSON\n"
             "object, keys = option names). --device cuda runs the training steps on the device (docs/cuda.md).",
             argc, argv))
    return 0;
  if (!a.str("config").empty()) a.apply_config(a.str("config"));
  a.validate();
  train::JobHooks hooks;
  hooks.progress = &std::cerr;
  hooks.stop = &interrupt_requested;
#if defined(STOCKMIXER_HAVE_CUDA)
  if (device_of(a) == Device::cuda) {
    if (a.number("dropout") > 0)
      a.fail("--device cuda: --dropout " + a.str("dropout") + ": the device's model has no dropout (expected 0, or "
             "--device cpu)");
    hooks.engine = device_engine();
  }
#else
  device_of(a);  // refuses cuda: this build has no CUDA unit
#endif
  // Ctrl-C: the run finishes its current step, writes the summary of its completed epochs and stops.
  std::signal(SIGINT, [](int) { interrupt_requested.store(true); });
  const json summary = train::train_job(a, hooks);
  // The table of the best epoch; every figure is in the summary.json it names.
  const fs::path out = a.str("out");
  std::cout << train::summary_table(summary);
  if (summary.contains("seeds"))
    std::cout << "every figure: " << (out / "summary.json").string() << "; each run, with its report.md: "
              << (out / "seed_<s>").string() << "/\n";
  else
    std::cout << "every figure: " << (out / "summary.json").string() << "; the report: " << (out / "report.md").string()
              << "; the best epoch's predictions: " << (out / "predictions.csv").string() << "\n";
  return 0;
}

}  // namespace stockmixer::cli
