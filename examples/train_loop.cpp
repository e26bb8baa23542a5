// The training loop written out by hand: batch, forward on the tape, loss, backward, Adam step.
// (stockmixer::train::Trainer does the same, plus validation, test and checkpoints.)
#include <stockmixer/data/market.hpp>
#include <stockmixer/loss.hpp>
#include <stockmixer/model.hpp>
#include <stockmixer/optim/adam.hpp>

#include <algorithm>
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

  std::vector<AdamParam<float>> params;  // Adam sees every parameter by its PyTorch name
  for (const auto& p : model.parameters()) params.push_back({p.name, p.value, p.grad, p.size()});
  Adam<float> adam(params, AdamOptions{});  // lr 1e-3, as the original

  autograd::Tape<float> tape;
  data::Batch<float> batch;
  std::vector<Index> offsets(static_cast<std::size_t>(train_days - lookback));
  std::iota(offsets.begin(), offsets.end(), Index(0));
  std::mt19937_64 rng(0);

  for (int epoch = 1; epoch <= 5; ++epoch) {
    std::shuffle(offsets.begin(), offsets.end(), rng);
    double total = 0;
    for (Index offset : offsets) {
      data::get_batch(market, offset, lookback, batch);  // x [N, T, C]; mask, base, gt [N, 1]
      tape.reset();                                     // forget the last step's graph
      adam.zero_grad();
      auto* x = tape.wrap(batch.x.map());
      auto* prediction = model.forward(tape, x);  // [N, 1]
      const auto loss = get_loss(tape, prediction, tape.wrap(batch.gt.map()), tape.wrap(batch.base.map()),
                                 tape.wrap(batch.mask.map()), 0.1f);
      tape.backward(loss.loss);  // d(loss)/d(every parameter)
      adam.step();
      total += loss.loss->data()[0];
    }
    std::printf("epoch %d  mean training loss %.4e\n", epoch, total / static_cast<double>(offsets.size()));
  }
  return 0;
}
