// The CUDA unit's model kernels without a device: the bodies of cuda/per_stock.hpp and
// cuda/stock_head.hpp (the per-thread work src/cuda/model.cu launches) run through the same launch
// sequences on a host "grid" that calls every thread index in turn, against the CPU model
// (StockMixer<T>, its fused blocks). Built and run in every build: no nvcc, no device.
//
// What this checks: each body's arithmetic and indexing, the sequence of launches and the buffer
// layouts. What it cannot check: launch configuration, shared memory, races between threads of one
// launch on a real device. It does check that no body reads what another thread of the same launch
// writes: the grid runs the threads in ascending and in descending order, and the two must give the
// same bits.
//
// Tolerances (testing::max_rel_error: the largest difference over a tensor relative to its largest
// value), the project's parity bounds: double within 1e-10 of the CPU model in double (the same
// expressions, sums in another order: the CPU's lanes and chunks, the bodies' stocks in index order and
// blocks of 64); float within 1e-5 of the exact answer plus the CPU float path's own distance from it,
// tensor by tensor (check_model says why, and test_model.cpp holds the fused float path to the same
// rule). Each case prints its worst tensor.
#include <stockmixer/cuda/stock_head.hpp>
#include <stockmixer/model.hpp>

#include "testing.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

using namespace stockmixer;
using testing::max_rel_error;
using testing::random_vector;

namespace {

// Runs body(i) for every thread index of a launch, one after another, ascending or descending.
struct HostGrid {
  bool descending = false;
  Index launches = 0;
  template <class Body>
  void operator()(Index count, const Body& body) {
    ++launches;
    if (descending)
      for (Index i = count - 1; i >= 0; --i) body(i);
    else
      for (Index i = 0; i < count; ++i) body(i);
  }
};

cuda::ModelDims dims_of(const StockMixerConfig& c) { return {c.stocks, c.lookback, c.features, c.market}; }

// A model with every parameter uniform in [-1, 1) (LayerNorm gains away from 1, biases away from 0,
// so that an index slip in any tensor shows), x and dout uniform.
template <class T>
struct Problem {
  StockMixerConfig config;
  StockMixer<T> model;
  std::vector<T> x, dout;
  explicit Problem(const StockMixerConfig& c) : config(c), model(c, 5) {
    std::uint64_t seed = 100;
    const auto& store = model.parameters();
    for (Index i = 0; i < store.count(); ++i) {
      const auto v = random_vector<T>(static_cast<std::size_t>(store[i].size()), seed++, -1, 1);
      std::copy(v.begin(), v.end(), store[i].value());
    }
    x = random_vector<T>(static_cast<std::size_t>(c.stocks * c.lookback * c.features), 7, -2, 2);
    dout = random_vector<T>(static_cast<std::size_t>(c.stocks), 8, -1, 1);
  }
  // The same problem in double: every value widened (the exact answer to the float problem).
  template <class U>
  explicit Problem(const Problem<U>& p) : config(p.config), model(p.config, 5), x(p.x.begin(), p.x.end()),
                                          dout(p.dout.begin(), p.dout.end()) {
    const auto& from = p.model.parameters();
    std::copy(from.values(), from.values() + from.size(), model.parameters().values());
  }
};

// The CPU model's prediction, parameter gradients (the whole store) and dx for upstream gradient dout.
template <class T>
struct Result {
  std::vector<T> out, grads, dx;
};
template <class T>
Result<T> cpu_result(Problem<T>& p) {
  const StockMixerConfig& c = p.config;
  const Shape xs{c.stocks, c.lookback, c.features};
  std::vector<T> xv = p.x;
  Result<T> r;
  r.dx.assign(p.x.size(), T(0));
  autograd::Tape<T> tape;
  p.model.zero_grad();
  autograd::Node<T>* pred = p.model.forward(tape, tape.wrap(TensorMap<T>(xv.data(), xs), TensorMap<T>(r.dx.data(), xs)));
  tape.backward(pred, TensorMap<const T>(p.dout.data(), pred->shape()));
  r.out.assign(pred->data(), pred->data() + pred->size());
  const auto& store = p.model.parameters();
  r.grads.assign(store.grads(), store.grads() + store.size());
  return r;
}

// Host buffers sized as model_buffer_sizes says, filled with NaN so that a value read before it is
// written shows in the results.
template <class T>
struct HostBuffers {
  std::vector<T> acts, y, work;
  std::vector<double> head, head_work, partials;
  explicit HostBuffers(const cuda::ModelDims& d) {
    const cuda::ModelBufferSizes s = cuda::model_buffer_sizes(d);
    const T nan_t = std::numeric_limits<T>::quiet_NaN();
    const double nan = std::numeric_limits<double>::quiet_NaN();
    acts.assign(static_cast<std::size_t>(s.acts), nan_t);
    y.assign(static_cast<std::size_t>(s.y), nan_t);
    work.assign(static_cast<std::size_t>(s.work), nan_t);
    head.assign(static_cast<std::size_t>(s.head), nan);
    head_work.assign(static_cast<std::size_t>(s.head_work), nan);
    partials.assign(static_cast<std::size_t>(s.partials), nan);
  }
  cuda::ModelBuffers<T> view() {
    return {acts.data(), y.data(), head.data(), head_work.data(), work.data(), partials.data()};
  }
};

// The device path on the host grid: the training forward, then the backward into zeroed gradients
// and dx (none when with_dx is false); also the inference forward's prediction.
template <class T>
struct Emulated {
  Result<T> r;
  std::vector<T> out_inference;
  Index launches = 0;
};
template <class T>
Emulated<T> emulate(Problem<T>& p, bool descending, bool with_dx = true) {
  const cuda::ModelDims d = dims_of(p.config);
  const std::vector<T> params(p.model.parameters().values(), p.model.parameters().values() + p.model.parameters().size());
  HostGrid grid{descending};
  HostBuffers<T> b(d);
  Emulated<T> e;
  e.out_inference.assign(static_cast<std::size_t>(d.stocks), T(0));
  cuda::model_forward_steps(grid, e.out_inference.data(), p.x.data(), params.data(), d, b.view(), false);
  HostBuffers<T> fresh(d);  // the training pair on buffers the inference call never touched
  e.r.out.assign(static_cast<std::size_t>(d.stocks), T(0));
  cuda::model_forward_steps(grid, e.r.out.data(), p.x.data(), params.data(), d, fresh.view(), true);
  e.r.grads.assign(params.size(), T(0));
  e.r.dx.assign(p.x.size(), T(0));
  cuda::model_backward_steps(grid, e.r.grads.data(), with_dx ? e.r.dx.data() : nullptr, p.dout.data(), p.x.data(),
                             params.data(), d, fresh.view());
  e.launches = grid.launches;
  return e;
}

// The stock head's backward alone with no dy wanted (its last three launches skipped), after a
// training forward: the gradients of the store (only the head's tensors written).
template <class T>
std::vector<T> head_grads_without_dy(Problem<T>& p) {
  const cuda::ModelDims d = dims_of(p.config);
  const std::vector<T> params(p.model.parameters().values(), p.model.parameters().values() + p.model.parameters().size());
  HostGrid grid;
  HostBuffers<T> b(d);
  std::vector<T> out(static_cast<std::size_t>(d.stocks)), grads(params.size(), T(0));
  cuda::model_forward_steps(grid, out.data(), p.x.data(), params.data(), d, b.view(), true);
  cuda::StockHeadArgs<T> a = cuda::stock_head_args(d, params.data());
  a.y = b.y.data(), a.dout = p.dout.data(), a.grads = grads.data(), a.head = b.head.data(), a.work = b.head_work.data();
  cuda::stock_head_backward_steps(grid, a);
  return grads;
}

// Every named parameter's gradient, the prediction and dx: max_rel_error(got, want) <= tol +
// allowance(name), allowance(name) = max_rel_error(baseline, want) when a baseline is given (else 0).
// One gradient is zero in exact arithmetic: conv.bias at C = 1 sums all of a stock's dv, the input
// gradient of scale_mix, whose two LayerNorm backwards each sum to zero over the stock's values; both
// sides hold rounding noise there, so it is held to the tolerance relative to conv.weight's gradient
// (made of the same dv, times x).
template <class T, class W>
void require_close(const Problem<W>& p, const Result<T>& got, const Result<W>& want, double tol,
                   const Result<T>* baseline = nullptr, bool with_dx = true) {
  std::pair<double, std::string> worst{0.0, ""};
  auto wide = [](const auto* p0, Index n) { return std::vector<double>(p0, p0 + n); };
  auto check = [&](const std::string& name, const std::vector<double>& a, const std::vector<double>& b,
                   const std::vector<double>* base, double scale) {
    double diff = 0.0;
    for (std::size_t i = 0; i < a.size(); ++i) diff = std::max(diff, std::abs(a[i] - b[i]));
    const double e = scale > 0 ? diff / scale : max_rel_error(a, b);
    const double allowance = base ? max_rel_error(*base, b) : 0.0;
    INFO(name << ": error " << e << ", allowed " << tol << " + " << allowance);
    CHECK(e <= tol + allowance);
    if (e - allowance > worst.first) worst = {e - allowance, name};
  };
  auto tensor = [&](const std::string& name, Index at, Index n, double scale) {
    std::vector<double> base;
    if (baseline) base = wide(baseline->grads.data() + at, n);
    check(name, wide(got.grads.data() + at, n), wide(want.grads.data() + at, n), baseline ? &base : nullptr, scale);
  };
  {
    std::vector<double> base;
    if (baseline) base = wide(baseline->out.data(), Index(baseline->out.size()));
    check("prediction", wide(got.out.data(), Index(got.out.size())), wide(want.out.data(), Index(want.out.size())),
          baseline ? &base : nullptr, 0.0);
  }
  const cuda::ParameterLayout lay = cuda::parameter_layout(dims_of(p.config));
  const Index C = p.config.features;
  for (const auto& q : p.model.parameters()) {
    double scale = 0.0;
    if (C == 1 && q.offset() == lay.conv_b)
      for (Index i = 0; i < 2 * C * C; ++i) scale = std::max(scale, std::abs(double(want.grads[std::size_t(lay.conv_w + i)])));
    tensor("grad " + q.name(), q.offset(), q.size(), scale);
  }
  if (with_dx) {
    std::vector<double> base;
    if (baseline) base = wide(baseline->dx.data(), Index(baseline->dx.size()));
    check("dx", wide(got.dx.data(), Index(got.dx.size())), wide(want.dx.data(), Index(want.dx.size())),
          baseline ? &base : nullptr, 0.0);
  }
  // The rest of the store is TriU's upper triangle, whose gradient stays zero.
  for (const cuda::MixerOffsets* m : {&lay.mix, &lay.scale_mix})
    for (Index i = 0; i < m->L; ++i)
      for (Index j = i + 1; j < m->L; ++j) REQUIRE(got.grads[static_cast<std::size_t>(m->triu_w + i * m->L + j)] == T(0));
  std::printf("N %td T %td C %td M %td, %s: worst %s, %.3g beyond its allowance (tolerance %g)\n", p.config.stocks,
              p.config.lookback, p.config.features, p.config.market, sizeof(T) == 4 ? "float" : "double",
              worst.second.c_str(), worst.first, tol);
}

template <class T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

// NASDAQ's shape and small odd ones: one stock, three, seventeen; C = 1 and 3; M = 1 and 3; T must be
// even (S = T / 2), so the odd lengths are S = 1, 3, 5 (T = 2, 6, 10).
const std::vector<StockMixerConfig> kShapes = {{1026, 16, 5, 20}, {1, 2, 1, 1}, {3, 6, 3, 3}, {17, 6, 1, 3},
                                               {17, 10, 3, 1}};

// The device path on the host grid against the CPU model. double: within 1e-10 of the CPU's double.
// float: against the exact answer (the same problem in double), within 1e-5 plus the CPU float path's
// own distance from it, tensor by tensor (test_model.cpp's rule for the fused float path): a float
// implementation cannot come closer than rounding allows where the model is ill-conditioned in float
// (a LayerNorm over one or two values at T = 2 or C = 1 multiplies rounding by up to 1/√1e-5; sums over
// the stocks of the stock LayerNorm's backward cancel), and there the CPU's float lands up to 1e-4
// from the exact value too.
template <class T>
void check_model(const StockMixerConfig& c) {
  Problem<T> p(c);
  const Result<T> cpu = cpu_result(p);
  const Emulated<T> up = emulate(p, false);
  if constexpr (std::is_same_v<T, double>) {
    require_close(p, up.r, cpu, 1e-10);
  } else {
    Problem<double> exact_problem(p);
    const Result<double> exact = cpu_result(exact_problem);
    require_close(exact_problem, up.r, exact, 1e-5, &cpu);
  }
  // The inference forward (no GELU derivative kept) predicts the same bits as the training forward.
  CHECK(same_bits(up.out_inference, up.r.out));
  // Threads in the other order: the same bits (no body reads another thread's output of its launch).
  const Emulated<T> down = emulate(p, true);
  CHECK(same_bits(down.r.out, up.r.out));
  CHECK(same_bits(down.r.grads, up.r.grads));
  CHECK(same_bits(down.r.dx, up.r.dx));
  // Without dx the parameter gradients are the same bits.
  const Emulated<T> no_dx = emulate(p, false, false);
  CHECK(same_bits(no_dx.r.grads, up.r.grads));
  CHECK(std::all_of(no_dx.r.dx.begin(), no_dx.r.dx.end(), [](T v) { return v == T(0); }));
  // The stock head without dy: its own tensors' gradients are the same bits, the rest stays zero.
  const std::vector<T> head = head_grads_without_dy(p);
  const cuda::ParameterLayout lay = cuda::parameter_layout(dims_of(c));
  for (std::size_t i = 0; i < head.size(); ++i) {
    const Index o = static_cast<Index>(i);
    const bool in_head = (o >= lay.time_fc_w && o < lay.conv_w) || o >= lay.dense1_w;
    if (in_head ? head[i] != up.r.grads[i] : head[i] != T(0)) FAIL("stock head without dy: store value " << i);
  }
}

}  // namespace

TEST_CASE("cuda::parameter_layout is StockMixer's parameter store", "[cuda_host]") {
  for (const StockMixerConfig& c : kShapes) {
    DYNAMIC_SECTION("N " << c.stocks << " T " << c.lookback << " C " << c.features << " M " << c.market) {
      StockMixer<float> m(c);
      const cuda::ParameterLayout lay = cuda::parameter_layout(dims_of(c));
      CHECK(lay.size == m.parameters().size());
      auto mixer = [](const cuda::MixerOffsets& o, const nn::Mixer2dTriU<float>& x) {
        CHECK(o.L == x.timeMixer.length());
        CHECK(o.ln1_w == x.LN_1.weight.offset());
        CHECK(o.ln1_b == x.LN_1.bias.offset());
        CHECK(o.ln2_w == x.LN_2.weight.offset());
        CHECK(o.ln2_b == x.LN_2.bias.offset());
        CHECK(o.triu_w == x.timeMixer.weight.offset());
        CHECK(o.triu_b == x.timeMixer.bias.offset());
        CHECK(o.fc1_w == x.channelMixer.dense_1.weight.offset());
        CHECK(o.fc1_b == x.channelMixer.dense_1.bias.offset());
        CHECK(o.fc2_w == x.channelMixer.dense_2.weight.offset());
        CHECK(o.fc2_b == x.channelMixer.dense_2.bias.offset());
      };
      mixer(lay.mix, m.mixer.mix_layer);
      mixer(lay.scale_mix, m.mixer.scale_mix_layer);
      CHECK(lay.channel_fc_w == m.channel_fc.weight.offset());
      CHECK(lay.channel_fc_b == m.channel_fc.bias.offset());
      CHECK(lay.time_fc_w == m.time_fc.weight.offset());
      CHECK(lay.time_fc_b == m.time_fc.bias.offset());
      CHECK(lay.conv_w == m.conv.weight.offset());
      CHECK(lay.conv_b == m.conv.bias.offset());
      CHECK(lay.dense1_w == m.stock_mixer.dense1.weight.offset());
      CHECK(lay.dense1_b == m.stock_mixer.dense1.bias.offset());
      CHECK(lay.dense2_w == m.stock_mixer.dense2.weight.offset());
      CHECK(lay.dense2_b == m.stock_mixer.dense2.bias.offset());
      CHECK(lay.ln_w == m.stock_mixer.layer_norm_stock.weight.offset());
      CHECK(lay.ln_b == m.stock_mixer.layer_norm_stock.bias.offset());
      CHECK(lay.time_fc2_w == m.time_fc_.weight.offset());
      CHECK(lay.time_fc2_b == m.time_fc_.bias.offset());
      // The per-stock block's partials rows map one to one onto its tensors' store offsets.
      const cuda::PerStockArgs<float> a = cuda::per_stock_args<float>(dims_of(c), nullptr);
      for (Index q = 0; q < a.P; ++q) REQUIRE(a.part_row(a.store_offset(q)) == q);
      CHECK(a.store_offset(a.P - 1) == lay.conv_b + c.features - 1);
    }
  }
}

TEST_CASE("cuda::validate refuses dims the model does not have", "[cuda_host]") {
  auto message = [](cuda::ModelDims d) {
    try {
      cuda::validate(d, "cuda::model_forward");
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  CHECK(message({1026, 16, 5, 20}) == "accepted");
  CHECK(message({0, 16, 5, 20}) == "cuda::model_forward: stocks (N) must be at least 1, got 0");
  CHECK(message({8, 5, 5, 20}) == "cuda::model_forward: lookback (T) must be even and at least 2, got 5");
  CHECK(message({8, 16, 0, 20}) == "cuda::model_forward: features (C) must be at least 1, got 0");
  CHECK(message({8, 16, 5, 0}) == "cuda::model_forward: market (M) must be at least 1, got 0");
  CHECK(message({3000000, 16, 5, 20}).find("expected below 2^31") != std::string::npos);
}

TEST_CASE("the device model's bodies on the host grid equal the CPU model, float", "[cuda_host]") {
  for (const StockMixerConfig& c : kShapes)
    DYNAMIC_SECTION("N " << c.stocks << " T " << c.lookback << " C " << c.features << " M " << c.market) {
      check_model<float>(c);
    }
}

TEST_CASE("the device model's bodies on the host grid equal the CPU model, double", "[cuda_host]") {
  for (const StockMixerConfig& c : kShapes)
    DYNAMIC_SECTION("N " << c.stocks << " T " << c.lookback << " C " << c.features << " M " << c.market) {
      check_model<double>(c);
    }
}
