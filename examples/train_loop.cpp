// A training loop by hand: shuffled windows of the synthetic market, one TrainStep each (forward on
// the tape, get_loss, backward, Adam: train/step.hpp). stockmixer::train::Trainer adds validation,
// test and the original protocol's bookkeeping; this shows what a user's own loop needs.
#include <stockmixer/data/market.hpp>
#include <stockmixer/model.hpp>
#include <stockmixer/train/step.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <random>
#include <vector>

using namespace stockmixer;

int main() {
  data::SyntheticOptions opts;  // 200 stocks, 600 days, a planted signal
  const data::Market<float> market = data::synthetic_market<float>(opts);
  const Index lookback = 16, train_days = 360;

  StockMixerConfig config;
  config.stocks = market.stocks();
  config.features = market.features();
  StockMixer<float> model(config, /*seed=*/0);
  train::TrainStep<float> step(model, AdamOptions{}, /*alpha=*/0.1);  // Adam lr 1e-3, as the original

  data::Batch<float> batch;
  std::vector<Index> offsets(static_cast<std::size_t>(train_days - lookback));
  std::iota(offsets.begin(), offsets.end(), Index(0));
  std::mt19937_64 rng(0);

  double first = 0, last = 0;
  for (int epoch = 1; epoch <= 5; ++epoch) {
    std::shuffle(offsets.begin(), offsets.end(), rng);
    double total = 0;
    for (Index offset : offsets) {
      data::get_batch(market, offset, lookback, batch);  // x [N, T, C]; mask, base, gt [N, 1]
      total += step(batch).loss;
    }
    last = total / static_cast<double>(offsets.size());
    if (epoch == 1) first = last;
    std::printf("epoch %d  mean training loss %.4e\n", epoch, last);
  }
  // A loop that does not learn is a failure: the planted signal makes the loss fall.
  if (!(std::isfinite(last) && last < first)) {
    std::printf("training did not reduce the loss (%.4e -> %.4e)\n", first, last);
    return 1;
  }
  return 0;
}
