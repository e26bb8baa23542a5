// stockmixer/train/trainer.hpp — the original training protocol (SPEC §6), on any Market.
//
//   each epoch   shuffle the offsets train_start .. valid_index - 1 (train_start 0 but in walk-forward
//                windows), use the first valid_index - train_start - T - steps + 1, one date (all N
//                stocks) per step: train/step.hpp's TrainStep
//   validate     offsets [start - T - steps + 1, end - T - steps + 1): predict without a tape, the
//                loss parts averaged over end - start days, rr / gt / mask gathered into [N, days]
//                and scored by metrics::evaluate
//   keep         the epoch with the lowest validation loss: its weights, validation and test metrics
//
// Quirk kept by default: an offset near valid_index reads a target inside the validation period.
// strict_split uses only the offsets whose target lies before valid_index, which cannot leak.
// The shuffle is a Fisher-Yates on std::mt19937_64 (NumPy's stream is not reproduced).
#pragma once

#include "stockmixer/data/market.hpp"
#include "stockmixer/metrics/evaluate.hpp"
#include "stockmixer/model.hpp"
#include "stockmixer/train/step.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <numeric>
#include <random>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

namespace stockmixer::train {

// ---- interface -------------------------------------------------------------------------------------

struct TrainConfig {
  int epochs = 100;
  Index lookback = 16;       // T
  Index market = 20;         // M
  double alpha = 0.1;        // weight of the rank loss
  double dropout = 0.0;
  AdamOptions adam;          // lr 1e-3, betas (0.9, 0.999), eps 1e-8, no weight decay
  Index valid_index = 756;   // first validation target day
  Index test_index = 1008;   // first test target day
  bool strict_split = false;
  std::uint64_t seed = 0;    // initialisation and shuffling
  // A window of the market (walk-forward retraining, train/sweep.hpp): training windows start at day
  // train_start or later, and the test period ends before day test_end (0: at the market's end). Both
  // appear in to_json only when set, so the summaries and checkpoints of whole-market runs are unchanged.
  Index train_start = 0;
  Index test_end = 0;

  // Error unless the split leaves training windows that end inside `days`, validation and test days.
  void validate(Index days, Index steps) const;
  nlohmann::json to_json() const;
  // One past the last day a training window can read (its target included): strict_split keeps the
  // targets before valid_index; otherwise offsets reach valid_index - 1 (the quirk above).
  Index train_end(Index steps) const { return strict_split ? valid_index : valid_index - 1 + lookback + steps; }
  // One past the last test target day on a market of `days` days.
  Index test_stop(Index days) const { return test_end > 0 ? test_end : days; }
  // Window offsets one epoch uses: valid_index - train_start - T - steps + 1.
  Index train_offsets(Index steps) const { return valid_index - train_start - lookback - steps + 1; }
};

// What one sweep over a period gives.
struct Evaluation {
  double loss = 0, reg = 0, rank = 0;  // averaged over the period's days
  metrics::Performance perf;
};

// Sweeps the target days [start, end) as validate does: for each day d it takes the window whose
// target is d (offset d - T - steps + 1), calls predict(batch, rr) to fill rr [N, 1] with predicted
// return ratios, and gathers rr, gt and the window mask into pred, gt, mask [N, end - start].
template <class T, class Predict>
void sweep_period(const data::Market<T>& market, Index lookback, Index start, Index end, data::Batch<T>& batch,
                  Tensor<T>& pred, Tensor<T>& gt, Tensor<T>& mask, Predict&& predict);

// What is wrong with `order` as one epoch's window offsets under `config` on a market whose returns
// look `steps` days ahead, or "" when nothing is: exactly config.train_offsets(steps) offsets, each a
// training offset (from train_start, below valid_index; with strict_split below train_start + that count).
std::string order_problem(const TrainConfig& config, Index steps, const std::vector<Index>& order);

// Thrown between two training steps when the trainer's stop flag is set: the epoch is cut short and the
// trainer's weights are mid-epoch (continue from the last completed epoch's saved state instead).
struct Interrupted : Error {
  using Error::Error;
};

// Beside the weights and the optimiser's state, what continues a run after its last completed epoch
// exactly as if it had never stopped.
struct Progress {
  int epoch = 0;                // epochs done
  std::string rng;              // the shuffle generator, as std::mt19937_64 writes itself
  double best_valid_loss = std::numeric_limits<double>::infinity();
};

// A period's last sweep in run_epoch: the predicted return ratios, realised returns and window masks
// [N, days] of its target days start, start + 1, ... (what that epoch's Evaluation scored).
template <class T>
struct PeriodPredictions {
  Index start = 0;
  Tensor<T> pred, gt, mask;
};

struct EpochLog {
  int epoch = 0;
  double train_loss = 0, train_reg = 0, train_rank = 0;
  Evaluation valid, test;
  double seconds = 0;
  bool best = false;  // lowest validation loss so far
  nlohmann::json to_json() const;
};

// A training step run elsewhere than the CPU's TrainStep (the CUDA unit's resident step: cli/train.hpp's
// --device cuda). Around each epoch's steps the trainer calls begin(model, adam), when the model's
// parameters and the optimiser's moments and step count are current on the CPU, and after the last step
// end(model, adam), which must leave them as the steps made them (evaluation, checkpoints and resume
// read them there); step(offset) is one step on the window at that offset and throws, as TrainStep
// does, when the loss is not finite.
template <class T>
class StepEngine {
 public:
  virtual ~StepEngine() = default;
  virtual void begin(StockMixer<T>& model, Adam<T>& adam) = 0;
  virtual StepLoss step(Index offset) = 0;
  virtual void end(StockMixer<T>& model, Adam<T>& adam) = 0;
};

template <class T>
class Trainer {
 public:
  // Builds StockMixer(N, T, C, M) for the market's N and C. The market must outlive the trainer.
  Trainer(const data::Market<T>& market, const TrainConfig& config);

  // One epoch of training, then validation and test sweeps.
  EpochLog run_epoch();
  // The same with the epoch's window offsets given (to replay another run's order): exactly
  // train_offsets() of them, each a valid training offset (below valid_index; with strict_split below
  // train_offsets()). Throws naming the first bad one. The trainer's own shuffle is not advanced.
  EpochLog run_epoch(const std::vector<Index>& order);
  // What is wrong with `order` as one epoch's offsets for run_epoch(order), or "" when nothing is.
  std::string order_problem(const std::vector<Index>& order) const {
    return train::order_problem(config_, market_.steps, order);
  }
  // One training step (TrainStep) on the window at `offset`. After its first call it allocates nothing
  // (tests/test_alloc.cpp counts). Throws, naming the epoch and the offset, if the loss is not finite.
  StepLoss train_step(Index offset);
  // A sweep over target days [start, end) without gradients.
  Evaluation evaluate_period(Index start, Index end);
  // The validation and test sweeps of the last run_epoch, kept until the next one (predictions.csv).
  const PeriodPredictions<T>& last_valid() const { return valid_; }
  const PeriodPredictions<T>& last_test() const { return test_; }

  StockMixer<T>& model() { return model_; }
  Adam<T>& optimizer() { return step_.optimizer(); }
  Progress progress() const;
  void restore(const Progress& progress);  // Error when the generator's text does not read back
  // A flag read between two training steps: once it holds true, run_epoch throws Interrupted.
  void set_stop(const std::atomic<bool>* stop) { stop_ = stop; }
  // Runs the training steps on `engine` (which must outlive the trainer's epochs); null: TrainStep.
  void set_engine(StepEngine<T>* engine) { engine_ = engine; }
  const data::Market<T>& market() const { return market_; }
  const TrainConfig& config() const { return config_; }
  Index train_offsets() const { return config_.train_offsets(market_.steps); }  // offsets used per epoch

 private:
  const data::Market<T>& market_;
  TrainConfig config_;
  StockMixer<T> model_;
  TrainStep<T> step_;
  std::mt19937_64 rng_;
  std::vector<Index> offsets_;
  data::Batch<T> batch_;
  PeriodPredictions<T> sweep_, valid_, test_;  // evaluate_period's buffers; run_epoch's two periods
  RankLossWorkspace eval_loss_;  // the evaluation's loss
  double best_valid_loss_ = std::numeric_limits<double>::infinity();
  // Trains over the first train_offsets() of offsets_, then validates and tests.
  EpochLog run_epoch_over(std::chrono::steady_clock::time_point start);
  Evaluation evaluate_into(Index start, Index end, PeriodPredictions<T>& into);
  int epoch_ = 0;
  const std::atomic<bool>* stop_ = nullptr;
  StepEngine<T>* engine_ = nullptr;
};

// Sets a StepEngine on a run's trainer before its first epoch (cli/train.hpp's --device cuda), one
// function per precision; empty: the CPU's TrainStep.
struct EngineHooks {
  std::function<void(Trainer<float>&)> f32;
  std::function<void(Trainer<double>&)> f64;
  template <class T>
  void attach(Trainer<T>& trainer) const {
    if constexpr (std::is_same_v<T, float>) {
      if (f32) f32(trainer);
    } else if constexpr (std::is_same_v<T, double>) {
      if (f64) f64(trainer);
    }
  }
};

// ---- implementation --------------------------------------------------------------------------------

inline void TrainConfig::validate(Index days, Index steps) const {
  auto fail = [](const std::string& what) { throw Error("stockmixer::train::TrainConfig: " + what); };
  if (epochs < 0) fail("epochs must be >= 0, got " + std::to_string(epochs));
  if (!(alpha >= 0)) fail("alpha must be >= 0");
  adam.validate();
  if (train_start < 0) fail("train_start must be >= 0, got " + std::to_string(train_start));
  if (train_offsets(steps) < 1)
    fail("valid_index " + std::to_string(valid_index) + " leaves no training window of lookback " +
         std::to_string(lookback) + " and steps " + std::to_string(steps) +
         (train_start > 0 ? " after train_start " + std::to_string(train_start) : std::string()));
  if (!(valid_index < test_index && test_index < days))
    fail("need valid_index < test_index < days, got " + std::to_string(valid_index) + ", " +
         std::to_string(test_index) + ", " + std::to_string(days));
  if (test_end != 0 && !(test_index < test_end && test_end <= days))
    fail("need test_index < test_end <= days (or test_end 0: the market's end), got " + std::to_string(test_index) +
         ", " + std::to_string(test_end) + ", " + std::to_string(days));
  if (train_end(steps) > days)
    fail("the last training window (offset valid_index - 1 = " + std::to_string(valid_index - 1) + ", lookback " +
         std::to_string(lookback) + ", steps " + std::to_string(steps) + ") reaches day " +
         std::to_string(train_end(steps)) + ", past the market's " + std::to_string(days) +
         " days: lower steps, lookback or valid_index, or use strict_split");
}

inline nlohmann::json TrainConfig::to_json() const {
  nlohmann::json j = {{"epochs", epochs},
          {"lookback", lookback},
          {"market", market},
          {"alpha", alpha},
          {"dropout", dropout},
          {"lr", adam.lr},
          {"beta1", adam.beta1},
          {"beta2", adam.beta2},
          {"eps", adam.eps},
          {"weight_decay", adam.weight_decay},
          {"decoupled_weight_decay", adam.decoupled_weight_decay},
          {"valid_index", valid_index},
          {"test_index", test_index},
          {"strict_split", strict_split},
          {"seed", seed}};
  if (train_start != 0) j["train_start"] = train_start;
  if (test_end != 0) j["test_end"] = test_end;
  return j;
}

inline nlohmann::json EpochLog::to_json() const {
  auto eval = [](const Evaluation& e) {
    nlohmann::json j = e.perf.to_json();
    j["loss"] = e.loss;
    j["reg_loss"] = e.reg;
    j["rank_loss"] = e.rank;
    return j;
  };
  return {{"epoch", epoch},
          {"train", {{"loss", train_loss}, {"reg_loss", train_reg}, {"rank_loss", train_rank}}},
          {"valid", eval(valid)},
          {"test", eval(test)},
          {"seconds", seconds},
          {"best", best}};
}

namespace detail {
template <class T>
const TrainConfig& checked(const data::Market<T>& market, const TrainConfig& c) {
  market.validate("training market");
  c.validate(market.days(), market.steps);
  // At least one window training can draw must hold a stock present on all its days.
  data::check_trainable(market, c.lookback, c.train_start, c.train_end(market.steps), "training market");
  return c;
}

}  // namespace detail

template <class T>
Trainer<T>::Trainer(const data::Market<T>& market, const TrainConfig& config)
    : market_(market),
      config_(detail::checked(market, config)),
      model_(StockMixerConfig{market.stocks(), config.lookback, market.features(), config.market, config.dropout},
             config.seed),
      step_(model_, config.adam, config.alpha, config.seed),
      rng_(config.seed ^ 0x5DEECE66Dull) {
  offsets_.resize(static_cast<std::size_t>(config_.valid_index - config_.train_start));
  std::iota(offsets_.begin(), offsets_.end(), config_.train_start);
}

template <class T>
EpochLog Trainer<T>::run_epoch() {
  const auto start = std::chrono::steady_clock::now();
  const Index used = train_offsets();
  // strict: shuffle only the offsets whose target day lies before valid_index; otherwise shuffle all
  // valid_index - train_start offsets and take the first `used`, as the original does.
  const std::size_t pool = config_.strict_split ? static_cast<std::size_t>(used) : offsets_.size();
  std::iota(offsets_.begin(), offsets_.end(), config_.train_start);
  for (std::size_t i = pool; i > 1; --i)
    std::swap(offsets_[i - 1], offsets_[static_cast<std::size_t>(rng_() % i)]);
  return run_epoch_over(start);
}

template <class T>
EpochLog Trainer<T>::run_epoch(const std::vector<Index>& order) {
  const auto start = std::chrono::steady_clock::now();
  const std::string problem = order_problem(order);
  if (!problem.empty()) throw Error("stockmixer::train: epoch " + std::to_string(epoch_ + 1) + ": " + problem);
  std::copy(order.begin(), order.end(), offsets_.begin());
  return run_epoch_over(start);
}

inline std::string order_problem(const TrainConfig& config, Index steps, const std::vector<Index>& order) {
  const Index used = config.train_offsets(steps);
  const Index limit = config.strict_split ? config.train_start + used : config.valid_index;
  if (static_cast<Index>(order.size()) != used)
    return std::to_string(order.size()) + " offsets, expected " + std::to_string(used) + " (one epoch's training steps)";
  for (std::size_t k = 0; k < order.size(); ++k)
    if (order[k] < config.train_start || order[k] >= limit)
      return "offset " + std::to_string(k + 1) + " is '" + std::to_string(order[k]) + "', expected " +
             std::to_string(config.train_start) + " <= offset < " + std::to_string(limit) +
             (config.strict_split ? " (strict split)" : "");
  return "";
}

template <class T>
EpochLog Trainer<T>::run_epoch_over(std::chrono::steady_clock::time_point start) {
  const Index used = train_offsets();
  EpochLog log;
  log.epoch = ++epoch_;
  if (engine_) engine_->begin(model_, optimizer());
  for (Index k = 0; k < used; ++k) {
    if (stop_ && stop_->load())
      throw Interrupted("stockmixer::train: interrupted in epoch " + std::to_string(epoch_) + " after " +
                        std::to_string(k) + " of its " + std::to_string(used) + " steps");
    const StepLoss step = train_step(offsets_[static_cast<std::size_t>(k)]);
    log.train_loss += step.loss;
    log.train_reg += step.reg;
    log.train_rank += step.rank;
  }
  if (engine_) engine_->end(model_, optimizer());
  log.train_loss /= static_cast<double>(used);
  log.train_reg /= static_cast<double>(used);
  log.train_rank /= static_cast<double>(used);

  log.valid = evaluate_into(config_.valid_index, config_.test_index, valid_);
  log.test = evaluate_into(config_.test_index, config_.test_stop(market_.days()), test_);
  log.best = log.valid.loss < best_valid_loss_;
  if (log.best) best_valid_loss_ = log.valid.loss;
  log.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return log;
}

template <class T>
Progress Trainer<T>::progress() const {
  std::ostringstream rng;
  rng << rng_;
  return {epoch_, rng.str(), best_valid_loss_};
}

template <class T>
void Trainer<T>::restore(const Progress& progress) {
  std::istringstream in(progress.rng);
  std::mt19937_64 rng;
  if (!(in >> rng)) throw Error("stockmixer::train: the saved shuffle generator does not read back");
  rng_ = rng;
  epoch_ = progress.epoch;
  best_valid_loss_ = progress.best_valid_loss;
}

template <class T>
StepLoss Trainer<T>::train_step(Index offset) {
  if (!engine_) data::get_batch(market_, offset, config_.lookback, batch_);
  try {
    return engine_ ? engine_->step(offset) : step_(batch_);
  } catch (const Error& e) {
    throw Error(std::string(e.what()) + " (epoch " + std::to_string(epoch_) + ", offset " + std::to_string(offset) + ")");
  }
}

template <class T, class Predict>
void sweep_period(const data::Market<T>& market, Index lookback, Index start, Index end, data::Batch<T>& batch,
                  Tensor<T>& pred, Tensor<T>& gt, Tensor<T>& mask, Predict&& predict) {
  const Index n = market.stocks(), days = end - start;
  const Index first = start - lookback - market.steps + 1;
  pred.resize({n, days});
  gt.resize({n, days});
  mask.resize({n, days});
  Tensor<T> rr({n, 1});
  for (Index d = 0; d < days; ++d) {
    data::get_batch(market, first + d, lookback, batch);
    predict(batch, rr);
    for (Index i = 0; i < n; ++i) {
      pred(i, d) = rr(i, 0);
      gt(i, d) = batch.gt(i, 0);
      mask(i, d) = batch.mask(i, 0);
    }
  }
}

template <class T>
Evaluation Trainer<T>::evaluate_period(Index start, Index end) {
  return evaluate_into(start, end, sweep_);
}

template <class T>
Evaluation Trainer<T>::evaluate_into(Index start, Index end, PeriodPredictions<T>& into) {
  const Index n = market_.stocks(), days = end - start;
  Evaluation e;
  into.start = start;
  sweep_period(market_, config_.lookback, start, end, batch_, into.pred, into.gt, into.mask,
               [&](const data::Batch<T>& b, Tensor<T>& rr) {
                 const Tensor<T>& pred = model_.predict(TensorMap<const T>(b.x.data(), b.x.shape()));
                 const RankLoss<T> l =
                     rank_loss_forward_sorted(rr.data(), pred.data(), b.base.data(), b.gt.data(), b.mask.data(), n,
                                              static_cast<T>(config_.alpha), eval_loss_);
                 e.loss += l.loss;
                 e.reg += l.reg;
                 e.rank += l.rank;
               });
  e.loss /= static_cast<double>(days);
  e.reg /= static_cast<double>(days);
  e.rank /= static_cast<double>(days);
  e.perf = metrics::evaluate(into.pred, into.gt, into.mask);
  return e;
}

}  // namespace stockmixer::train
