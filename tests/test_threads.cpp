// 1 thread and 2 threads give bit-identical outputs and gradients for every kernel at StockMixer's
// NASDAQ shapes (threads split work by ownership over fixed chunks: include/stockmixer/parallel.hpp).
#include "testing.hpp"

#include <stockmixer/kernels.hpp>
#include <stockmixer/parallel.hpp>
#include <stockmixer/train/trainer.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <string>

using namespace stockmixer;
using testing::random_vector;

namespace {

constexpr Index N = 1026, T = 16, C = 5, S = 8, F = 2 * T + S, M = 20;

using Outputs = std::vector<std::vector<float>>;

// Runs `kernel` with 1 and with 2 threads and requires every output buffer to match bit for bit.
void require_thread_invariant(const std::function<Outputs()>& kernel) {
  set_num_threads(1);
  const Outputs one = kernel();
  set_num_threads(2);
  const Outputs two = kernel();
  set_num_threads(1);
  REQUIRE(one.size() == two.size());
  for (std::size_t k = 0; k < one.size(); ++k) {
    INFO("output " << k);
    REQUIRE(one[k].size() == two[k].size());
    REQUIRE(std::memcmp(one[k].data(), two[k].data(), one[k].size() * sizeof(float)) == 0);
  }
}

std::vector<float> zeros(Index n) { return std::vector<float>(static_cast<std::size_t>(n), 0.0f); }

}  // namespace

TEST_CASE("threads are available to the test", "[threads]") {
#ifdef _OPENMP
  set_num_threads(2);
  REQUIRE(num_threads() == 2);
  set_num_threads(1);
#else
  WARN("built without OpenMP: the 1-vs-2-thread tests below compare two serial runs");
#endif
}

TEST_CASE("set_num_threads refuses 0, negative counts and counts the runtime cannot create", "[threads][errors]") {
  // 0 and -1 used to become 1 silently; 100 000 made libgomp abort creating its threads.
  for (const int n : {0, -1, 100000, std::numeric_limits<int>::max()}) {
    INFO(n << " threads");
    const std::string expected = "stockmixer::set_num_threads: " + std::to_string(n) + " threads; expected 1 to " +
                                 std::to_string(max_threads());
    REQUIRE_THROWS_WITH(set_num_threads(n), Catch::Contains(expected));
  }
  REQUIRE(max_threads() >= 256);
  set_num_threads(max_threads());  // the bound itself is accepted
  set_num_threads(1);
  REQUIRE(num_threads() == 1);
}

TEST_CASE("linear: 1 and 2 threads agree bit for bit", "[threads][linear]") {
  struct Shape3 { Index rows, in, out; };
  for (const Shape3 s : {Shape3{N * T, C, C}, Shape3{F, N, M}, Shape3{F, M, N}, Shape3{N, F, 1}}) {
    const auto x = random_vector<float>(s.rows * s.in, 1), w = random_vector<float>(s.out * s.in, 2),
               b = random_vector<float>(s.out, 3), dy = random_vector<float>(s.rows * s.out, 4);
    require_thread_invariant([&] {
      auto y = zeros(s.rows * s.out), dx = zeros(s.rows * s.in), dw = zeros(s.out * s.in), db = zeros(s.out);
      linear_forward(y.data(), x.data(), w.data(), b.data(), s.rows, s.in, s.out);
      linear_backward(dx.data(), dw.data(), db.data(), dy.data(), x.data(), w.data(), s.rows, s.in, s.out);
      return Outputs{y, dx, dw, db};
    });
  }
}

TEST_CASE("layernorm: 1 and 2 threads agree bit for bit", "[threads][layernorm]") {
  for (auto [rows, dim] : {std::pair<Index, Index>{N, T * C}, {F, N}}) {
    const auto x = random_vector<float>(rows * dim, 5), g = random_vector<float>(dim, 6),
               b = random_vector<float>(dim, 7), dy = random_vector<float>(rows * dim, 8);
    require_thread_invariant([&, rows = rows, dim = dim] {
      auto y = zeros(rows * dim), mean = zeros(rows), rstd = zeros(rows), dx = zeros(rows * dim), dg = zeros(dim),
           db = zeros(dim);
      layernorm_forward(y.data(), mean.data(), rstd.data(), x.data(), g.data(), b.data(), rows, dim);
      layernorm_backward(dx.data(), dg.data(), db.data(), dy.data(), x.data(), mean.data(), rstd.data(), g.data(), rows,
                         dim);
      return Outputs{y, mean, rstd, dx, dg, db};
    });
  }
}

TEST_CASE("elementwise kernels: 1 and 2 threads agree bit for bit", "[threads][gelu][hardswish][dropout]") {
  const Index n = N * T * C;
  const auto x = random_vector<float>(n, 9, -5, 5), dy = random_vector<float>(n, 10);
  require_thread_invariant([&] {
    auto y1 = zeros(n), d1 = zeros(n), y2 = zeros(n), d2 = zeros(n), mask = zeros(n), y3 = zeros(n), d3 = zeros(n);
    gelu_forward(y1.data(), x.data(), n);
    gelu_backward(d1.data(), dy.data(), x.data(), n);
    hardswish_forward(y2.data(), x.data(), n);
    hardswish_backward(d2.data(), dy.data(), x.data(), n);
    dropout_mask(mask.data(), n, 0.1, 2024);
    dropout_forward(y3.data(), x.data(), mask.data(), n);
    dropout_backward(d3.data(), dy.data(), mask.data(), n);
    return Outputs{y1, d1, y2, d2, mask, y3, d3};
  });
}

TEST_CASE("gelu: a value's result does not depend on where it sits (alignment, packet tail)", "[threads][gelu]") {
  // The float kernel runs on SIMD packets and sends the tail through a padded packet: shifting the
  // same values by one slot (misaligned, different tail) must not change a single bit.
  const Index n = 37;
  const auto x = random_vector<float>(n + 1, 19, -5, 5), dy = random_vector<float>(n + 1, 20);
  auto y0 = zeros(n), y1 = zeros(n), d0 = zeros(n), d1 = zeros(n);
  gelu_forward(y0.data(), x.data() + 1, n);
  gelu_backward(d0.data(), dy.data() + 1, x.data() + 1, n);
  for (Index i = 0; i < n; ++i) {
    gelu_forward(y1.data() + i, x.data() + 1 + i, 1);
    gelu_backward(d1.data() + i, dy.data() + 1 + i, x.data() + 1 + i, 1);
  }
  CHECK(y0 == y1);
  CHECK(d0 == d1);
}

TEST_CASE("conv1d: 1 and 2 threads agree bit for bit", "[threads][conv1d]") {
  const auto x = random_vector<float>(N * T * C, 11), w = random_vector<float>(C * C * 2, 12),
             b = random_vector<float>(C, 13), dy = random_vector<float>(N * S * C, 14);
  require_thread_invariant([&] {
    auto y = zeros(N * S * C), dx = zeros(N * T * C), dw = zeros(C * C * 2), db = zeros(C);
    conv1d_forward(y.data(), x.data(), w.data(), b.data(), N, T, C, C, 2);
    conv1d_backward(dx.data(), dw.data(), db.data(), dy.data(), x.data(), w.data(), N, T, C, C, 2);
    return Outputs{y, dx, dw, db};
  });
}

TEST_CASE("triu: 1 and 2 threads agree bit for bit", "[threads][triu]") {
  for (auto [batch, length, inner] : {std::tuple<Index, Index, Index>{N, T, C}, {N, S, C}, {N * C, T, 1}}) {
    const auto x = random_vector<float>(batch * length * inner, 15), w = random_vector<float>(length * length, 16),
               b = random_vector<float>(length, 17), dy = random_vector<float>(batch * length * inner, 18);
    require_thread_invariant([&, batch = batch, length = length, inner = inner] {
      auto y = zeros(batch * length * inner), dx = zeros(batch * length * inner), dw = zeros(length * length),
           db = zeros(length);
      triu_forward(y.data(), x.data(), w.data(), b.data(), batch, length, inner);
      triu_backward(dx.data(), dw.data(), db.data(), dy.data(), x.data(), w.data(), batch, length, inner);
      return Outputs{y, dx, dw, db};
    });
  }
}

TEST_CASE("rank loss: 1 and 2 threads agree bit for bit", "[threads][rank_loss]") {
  const auto base = random_vector<float>(N, 19, 0.5, 2), gt = random_vector<float>(N, 20, -0.05, 0.05),
             pred = random_vector<float>(N, 21, 0.5, 2);
  auto mask = random_vector<float>(N, 22, 0, 1);
  for (auto& m : mask) m = m < 0.1f ? 0.0f : 1.0f;
  require_thread_invariant([&] {
    auto rr = zeros(N), dpred = zeros(N);
    const auto l = rank_loss_forward(rr.data(), pred.data(), base.data(), gt.data(), mask.data(), N, 0.1f);
    rank_loss_backward(dpred.data(), 1.0f, rr.data(), base.data(), gt.data(), mask.data(), N, 0.1f);
    return Outputs{rr, dpred, {l.loss, l.reg, l.rank}};
  });
}

TEST_CASE("training: 1 and 2 threads give the same weights bit for bit after three steps", "[threads][train]") {
  // The whole step at NASDAQ's shape: every kernel forward and backward, the sorted rank loss, Adam.
  data::SyntheticOptions o;
  o.stocks = N;
  o.days = 60;
  const data::Market<float> market = data::synthetic_market<float>(o);
  train::TrainConfig c;
  c.valid_index = 40;
  c.test_index = 50;
  require_thread_invariant([&] {
    train::Trainer<float> trainer(market, c);
    Outputs out;
    for (Index offset : {0, 11, 23}) out.push_back({static_cast<float>(trainer.train_step(offset).loss)});
    for (const auto& p : trainer.model().parameters()) {
      out.emplace_back(p.value(), p.value() + p.size());
      out.emplace_back(p.grad(), p.grad() + p.size());  // the last step's gradients
    }
    return out;
  });
}

TEST_CASE("dropout: new masks every step, the same masks for the same seed and step", "[train][dropout]") {
  // The tape's seed stream: each draw a new seed, reset() the same stream again, another seed another one.
  autograd::Tape<float> tape;
  tape.set_seed(5);
  const std::uint64_t first = tape.draw_seed(), second = tape.draw_seed();
  CHECK(first != second);
  tape.reset();
  CHECK(tape.draw_seed() == first);
  tape.set_seed(6);
  CHECK(tape.draw_seed() != first);
  // A training step's loss, from the same weights and window, as the first step (Adam at step 0) or as
  // the fourth (step 3), with run seed 7 or 8: with dropout each gives other masks, so another loss;
  // without dropout all are the same. Run seed and step equal: the same loss, bit for bit.
  data::SyntheticOptions o;
  o.stocks = 40;
  o.days = 60;
  const data::Market<float> market = data::synthetic_market<float>(o);
  data::Batch<float> batch;
  data::get_batch(market, 5, 16, batch);
  for (double p : {0.0, 0.3}) {
    const StockMixerConfig config{40, 16, 5, 20, p};
    auto loss_at = [&](std::int64_t steps, std::uint64_t seed) {
      StockMixer<float> model(config, 1);
      train::TrainStep<float> step(model, AdamOptions{}, 0.1, seed);
      step.optimizer().set_state(steps);
      return step(batch).loss;
    };
    const double base = loss_at(0, 7);
    INFO("dropout " << p);
    CHECK(loss_at(0, 7) == base);
    if (p == 0.0) {
      CHECK(loss_at(3, 7) == base);
      CHECK(loss_at(0, 8) == base);
    } else {
      CHECK(loss_at(3, 7) != base);
      CHECK(loss_at(0, 8) != base);
    }
  }
}

TEST_CASE("metrics: 1 and 2 threads agree bit for bit", "[threads][metrics]") {
  // evaluate runs its days on the threads and adds their results in day order. Returns on a coarse
  // grid (ties in the top 10 and at the top-1's return), a tenth of the stocks masked.
  const Index days = 100;
  auto pred = random_vector<double>(N * days, 23, -0.05, 0.05), gt = random_vector<double>(N * days, 24, -0.05, 0.05),
       mask = random_vector<double>(N * days, 25, 0, 1);
  for (auto& g : gt) g = std::round(g * 1000) / 1000;
  for (std::size_t k = 0; k < pred.size(); k += 7) pred[k] = std::round(pred[k] * 100) / 100;
  for (auto& m : mask) m = m < 0.1 ? 0.0 : 1.0;
  const TensorMap<const double> P(pred.data(), {N, days}), G(gt.data(), {N, days}), Mk(mask.data(), {N, days});
  set_num_threads(1);
  const metrics::Performance one = metrics::evaluate(P, G, Mk);
  set_num_threads(2);
  const metrics::Performance two = metrics::evaluate(P, G, Mk);
  set_num_threads(1);
  for (const auto field : {&metrics::Performance::mse, &metrics::Performance::IC, &metrics::Performance::RIC,
                           &metrics::Performance::prec_10, &metrics::Performance::sharpe5,
                           &metrics::Performance::mrr_top, &metrics::Performance::bt_long,
                           &metrics::Performance::bt_long5, &metrics::Performance::bt_long10,
                           &metrics::Performance::rank_ic, &metrics::Performance::rank_icir,
                           &metrics::Performance::ic_valid, &metrics::Performance::ic_valid_ir})
    REQUIRE(std::memcmp(&(one.*field), &(two.*field), sizeof(double)) == 0);
  REQUIRE(one.skipped_days == two.skipped_days);
  REQUIRE(one.days == two.days);
}

TEST_CASE("Trainer refuses a market or a split it cannot train on, before any step", "[trainer][hostile]") {
  data::SyntheticOptions o;
  o.stocks = 12;
  o.days = 80;
  data::Market<float> market = data::synthetic_market<float>(o);
  train::TrainConfig c;
  c.lookback = 8;
  c.valid_index = 40;
  c.test_index = 60;
  REQUIRE_NOTHROW(train::Trainer<float>(market, c));
  // Without strict_split the training offsets reach valid_index - 1: with valid_index 70 that window and
  // its target run to day 69 + 8 + steps, past the 80 days once steps is 4; strict_split keeps it inside.
  {
    train::TrainConfig late = c;
    late.valid_index = 70;
    late.test_index = 75;
    market.steps = 4;
    CHECK_THROWS_WITH(train::Trainer<float>(market, late),
                      Catch::Contains("reaches day 81, past the market's 80 days") && Catch::Contains("strict_split"));
    late.strict_split = true;
    REQUIRE_NOTHROW(train::Trainer<float>(market, late));
    market.steps = 1;
  }
  // Every stock misses one day in eight before valid_index + 8: no window of 9 days is whole, so
  // every training batch's mask would be zero. The days after keep the market itself valid.
  for (Index i = 0; i < market.stocks(); ++i)
    for (Index t = 0; t < 48; ++t)
      if ((t + i) % 8 == 0) market.mask(i, t) = 0.0f;
  CHECK_THROWS_WITH(train::Trainer<float>(market, c),
                    Catch::Contains("training market: no training window holds a present stock"));
  c.strict_split = true;  // windows end by valid_index: still none
  CHECK_THROWS_WITH(train::Trainer<float>(market, c), Catch::Contains("no training window"));
}
