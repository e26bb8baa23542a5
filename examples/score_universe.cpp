// Loads StockMixer weights and scores a universe: prints the 10 stocks with the highest predicted
// next-day return ratio.
//
//   score_universe WEIGHTS.safetensors [FEATURES.npy BASE.npy]
//
// Without the two arrays it scores a synthetic universe of the weights' shape (the last day of the
// built-in synthetic market), so it runs on any checkpoint `stockmixer train` writes.
#include <stockmixer/data/market.hpp>
#include <stockmixer/model.hpp>
#include <stockmixer/io/npy.hpp>

#include <algorithm>
#include <cstdio>
#include <numeric>
#include <string>
#include <vector>

using namespace stockmixer;

int main(int argc, char** argv) try {
  if (argc != 2 && argc != 4) {
    std::fprintf(stderr, "usage: score_universe WEIGHTS.safetensors [FEATURES.npy BASE.npy]\n");
    return 2;
  }
  StockMixer<float> model = load_checkpoint<float>(argv[1]);
  const StockMixerConfig& c = model.config();

  Tensor<float> x, base;  // [N, T, C] features, [N] base prices (today's close)
  std::vector<std::string> names;
  if (argc == 4) {
    x = io::read_npy<float>(argv[2]);
    base = io::read_npy<float>(argv[3]);
  } else {
    data::SyntheticOptions opts;
    opts.stocks = c.stocks;
    opts.features = c.features;
    const auto market = data::synthetic_market<float>(opts);
    data::Batch<float> batch;
    data::get_batch(market, market.days() - c.lookback - 1, c.lookback, batch);
    x = batch.x;
    base = batch.base;
    names = market.tickers;
  }

  const Tensor<float>& pred = model.predict(x.map());  // [N, 1] predicted prices
  std::vector<Index> order(static_cast<std::size_t>(c.stocks));
  std::iota(order.begin(), order.end(), Index(0));
  auto ratio = [&](Index i) { return (pred.data()[i] - base.data()[i]) / base.data()[i]; };
  std::sort(order.begin(), order.end(), [&](Index a, Index b) { return ratio(a) > ratio(b); });

  std::printf("rank  stock       predicted return\n");
  for (Index k = 0; k < std::min<Index>(10, c.stocks); ++k) {
    const Index i = order[static_cast<std::size_t>(k)];
    const std::string name = names.empty() ? "#" + std::to_string(i) : names[static_cast<std::size_t>(i)];
    std::printf("%4lld  %-10s  %+.4f%%\n", static_cast<long long>(k + 1), name.c_str(), 100.0 * ratio(i));
  }
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "%s\n", e.what());
  return 1;
}
