// Inference allocates nothing after its first call: this executable counts every heap allocation
// (tests/alloc_counter.hpp replaces the global operator new in this binary only).
#include "alloc_counter.hpp"

#include <stockmixer/model.hpp>
#include <stockmixer/train/trainer.hpp>
#include <stockmixer/xtensor.hpp>

#include <catch2/catch.hpp>
#include <xtensor/xarray.hpp>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <new>

using namespace stockmixer;

TEST_CASE("the counter sees allocations", "[alloc]") {
  const long before = testing::allocations();
  auto* v = new std::vector<int>(100);
  delete v;
  REQUIRE(testing::allocations() - before >= 2);
}

TEST_CASE("StockMixer::predict allocates nothing after its first call", "[alloc][model]") {
  StockMixer<float> model(StockMixerConfig{}, 1);  // NASDAQ's shape
  Tensor<float> x({1026, 16, 5});
  for (Index i = 0; i < x.size(); ++i) x.data()[i] = 0.5f + 0.001f * static_cast<float>(i % 997);
  const TensorMap<const float> in(x.data(), x.shape());
  const float first = model.predict(in)(7, 0);  // sizes every buffer

  const long before = testing::allocations();
  for (int k = 0; k < 3; ++k) REQUIRE(model.predict(in)(7, 0) == first);
  REQUIRE(testing::allocations() - before == 0);
}

TEST_CASE("predict from a row-major xtensor container allocates nothing after its first call", "[alloc][xtensor]") {
  StockMixer<double> model(StockMixerConfig{50, 16, 5, 8}, 2);
  xt::xarray<double> x = xt::ones<double>({50, 16, 5});
  Tensor<double> buffer;  // not used: the container is read in place
  model.predict(as_tensor_map(x, buffer));
  const long before = testing::allocations();
  model.predict(as_tensor_map(x, buffer));
  REQUIRE(testing::allocations() - before == 0);
  REQUIRE(buffer.data() == nullptr);  // read in place: the buffer was never used
}

TEST_CASE("a training step (forward, loss, backward, Adam) allocates nothing after its first", "[alloc][train]") {
  data::SyntheticOptions o;
  o.stocks = 300;
  o.days = 200;
  const data::Market<float> market = data::synthetic_market<float>(o);
  train::TrainConfig c;
  c.valid_index = 120;
  c.test_index = 160;
  c.dropout = 0.1;  // the dropout masks are redrawn every step: into the same buffers
  train::Trainer<float> trainer(market, c);
  const double first = trainer.train_step(3).loss;  // sizes the tape, the rank-loss workspace, Adam's state
  REQUIRE(std::isfinite(first));

  const long before = testing::allocations();
  for (Index offset : {5, 40, 3, 77, 100}) REQUIRE(std::isfinite(trainer.train_step(offset).loss));
  REQUIRE(testing::allocations() - before == 0);
}
