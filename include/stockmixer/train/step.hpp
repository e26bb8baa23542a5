// stockmixer/train/step.hpp — one training step of the original protocol, written once: the Trainer,
// the `stockmixer` tool, the examples and every later caller run this.
//
//   tape.reset(), tape.set_seed(...)    forget the last step's graph (its buffers are kept); this step's
//                                       dropout seeds (only the reference path with dropout reads them)
//   adam.zero_grad()                    every gradient of the parameter store to 0
//   pred = model.forward(tape, x)       the two fused blocks, recorded as two ops   [N, 1]
//   loss = get_loss(tape, pred, ...)    MSE + alpha · rank hinge, recorded as one op
//   tape.backward(loss)                 replays the three records: every parameter's gradient
//   adam.step()                         one update over the whole store
//
// After its first call (which sizes the tape, the workspaces and the optimiser), a step allocates
// nothing (tests/test_alloc.cpp counts).
#pragma once

#include "stockmixer/data/market.hpp"
#include "stockmixer/loss.hpp"
#include "stockmixer/model.hpp"
#include "stockmixer/optim/adam.hpp"

#include <cmath>
#include <cstdint>
#include <string>

namespace stockmixer::train {

// ---- interface -------------------------------------------------------------------------------------

struct StepLoss {
  double loss = 0, reg = 0, rank = 0;
};

template <class T>
class TrainStep {
 public:
  // Trains `model` (which must outlive the step) with Adam(options) and rank-loss weight alpha. With
  // dropout, step k's masks come from (seed, k), k being Adam's step count: every step draws new ones,
  // and a run resumed with Adam's state draws the masks the uninterrupted run would have.
  TrainStep(StockMixer<T>& model, const AdamOptions& options, double alpha, std::uint64_t seed = 0)
      : model_(model), adam_(model.parameters(), options), alpha_(static_cast<T>(alpha)), seed_(seed) {}

  // One step on one window (x [N, T, C]; gt, base, mask [N, 1]). Throws Error, before any weight
  // changes, when the loss is not finite.
  StepLoss operator()(const data::Batch<T>& batch);

  Adam<T>& optimizer() { return adam_; }

 private:
  StockMixer<T>& model_;
  Adam<T> adam_;
  T alpha_;
  std::uint64_t seed_;
  autograd::Tape<T> tape_;
  RankLossWorkspace loss_workspace_;
};

// ---- implementation --------------------------------------------------------------------------------

template <class T>
StepLoss TrainStep<T>::operator()(const data::Batch<T>& b) {
  auto input = [&](const Tensor<T>& t) { return tape_.wrap(TensorMap<T>(const_cast<T*>(t.data()), t.shape())); };
  tape_.reset();
  tape_.set_seed(seed_ ^ (static_cast<std::uint64_t>(adam_.steps()) * 0xD1B54A32D192ED03ull));  // this step's
  adam_.zero_grad();
  auto* pred = model_.forward(tape_, input(b.x));
  const auto out = get_loss(tape_, pred, input(b.gt), input(b.base), input(b.mask), alpha_, loss_workspace_);
  const double loss = static_cast<double>(out.loss->data()[0]);
  if (!std::isfinite(loss))
    throw Error("stockmixer::train: the loss is " + std::to_string(loss) + ": training diverged; lower the learning rate");
  tape_.backward(out.loss);
  adam_.step();
  return {loss, static_cast<double>(out.reg), static_cast<double>(out.rank)};
}

}  // namespace stockmixer::train
