// The device model (include/stockmixer/cuda/model.hpp, src/cuda/model.cu) against the CPU model: the
// forward for inference, and a training forward and backward (every parameter gradient and dx), in
// float and double, at NASDAQ's shape and small odd ones. Part of test_cuda (label cuda): where no CUDA
// device exists each device case prints "SKIPPED: no CUDA device: <reason>" and ctest reports it
// skipped; the refusals run everywhere.
//
// Tolerances, as tests/test_cuda_host.cpp (which runs the same bodies on the host): double within
// 1e-10 of the CPU model in double (testing::max_rel_error per tensor); float within 1e-5 of the exact
// answer (the same problem in double) plus the CPU float path's own distance from it, tensor by tensor
// (test_model.cpp's rule for float: where the model is ill-conditioned in float no float path comes
// closer). The device's erf and exp differ from the C library's by an ulp or two, far inside these.
// Also: two runs give the same bits (fixed-order sums, no atomics).
#include <stockmixer/cuda/model.hpp>
#include <stockmixer/model.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdint>
#include <cstring>
#include <iostream>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

using namespace stockmixer;
namespace {

// Uniform values in [lo, hi) from a fixed seed (tests/testing.hpp's, which this target does not include).
template <class T>
std::vector<T> random_vector(std::size_t n, std::uint64_t seed, double lo, double hi) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> dist(lo, hi);
  std::vector<T> v(n);
  for (auto& x : v) x = static_cast<T>(dist(rng));
  return v;
}

// The largest difference relative to the largest value of b (testing::max_rel_error).
double max_rel_error(const std::vector<double>& a, const std::vector<double>& b) {
  double diff = 0.0, scale = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    diff = std::max(diff, std::abs(a[i] - b[i]));
    scale = std::max(scale, std::abs(b[i]));
  }
  return scale > 0 ? diff / scale : diff;
}

bool no_device() {
  std::string why;
  if (cuda::device_available(&why)) return false;
  std::cout << "SKIPPED: no CUDA device: " << why << std::endl;
  return true;
}

cuda::ModelDims dims_of(const StockMixerConfig& c) { return {c.stocks, c.lookback, c.features, c.market}; }

// Parameters uniform in [-1, 1), x in [-2, 2), dout in [-1, 1) (fixed seeds).
template <class T>
struct Problem {
  StockMixerConfig config;
  StockMixer<T> model;
  std::vector<T> x, dout;
  explicit Problem(const StockMixerConfig& c) : config(c), model(c, 5) {
    std::uint64_t seed = 300;
    const auto& store = model.parameters();
    for (Index i = 0; i < store.count(); ++i) {
      const auto v = random_vector<T>(static_cast<std::size_t>(store[i].size()), seed++, -1, 1);
      std::copy(v.begin(), v.end(), store[i].value());
    }
    x = random_vector<T>(static_cast<std::size_t>(c.stocks * c.lookback * c.features), 17, -2, 2);
    dout = random_vector<T>(static_cast<std::size_t>(c.stocks), 18, -1, 1);
  }
  template <class U>  // the same problem with every value widened
  explicit Problem(const Problem<U>& p)
      : config(p.config), model(p.config, 5), x(p.x.begin(), p.x.end()), dout(p.dout.begin(), p.dout.end()) {
    const auto& from = p.model.parameters();
    std::copy(from.values(), from.values() + from.size(), model.parameters().values());
  }
  std::vector<T> params() const {
    const auto& s = model.parameters();
    return std::vector<T>(s.values(), s.values() + s.size());
  }
};

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

template <class T>
Result<T> device_result(const Problem<T>& p) {
  const cuda::ModelDims d = dims_of(p.config);
  const std::vector<T> params = p.params();
  Result<T> r;
  r.out.assign(static_cast<std::size_t>(d.stocks), T(0));
  r.grads.assign(params.size(), T(0));
  r.dx.assign(p.x.size(), T(0));
  cuda::model_backward_host(r.out.data(), r.grads.data(), r.dx.data(), p.dout.data(), p.x.data(), params.data(), d);
  return r;
}

// max_rel_error per tensor (the prediction, every named parameter's gradient, dx) within tol plus the
// baseline's own error where one is given. conv.bias at C = 1 is zero in exact arithmetic (see
// test_cuda_host.cpp): held to the tolerance relative to conv.weight's gradient.
template <class T, class W>
void require_close(const Problem<W>& p, const Result<T>& got, const Result<W>& want, double tol,
                   const Result<T>* baseline = nullptr) {
  auto wide = [](const auto* p0, std::size_t n) { return std::vector<double>(p0, p0 + n); };
  auto check = [&](const std::string& name, std::size_t at, std::size_t n, const auto& g, const auto& w,
                   const auto* b, double scale) {
    const std::vector<double> a = wide(g.data() + at, n), e = wide(w.data() + at, n);
    double diff = 0.0;
    for (std::size_t i = 0; i < n; ++i) diff = std::max(diff, std::abs(a[i] - e[i]));
    const double err = scale > 0 ? diff / scale : max_rel_error(a, e);
    const double allowance = b ? max_rel_error(wide(b->data() + at, n), e) : 0.0;
    INFO(name << ": error " << err << ", allowed " << tol << " + " << allowance);
    CHECK(err <= tol + allowance);
  };
  check("prediction", 0, got.out.size(), got.out, want.out, baseline ? &baseline->out : nullptr, 0.0);
  check("dx", 0, got.dx.size(), got.dx, want.dx, baseline ? &baseline->dx : nullptr, 0.0);
  const cuda::ParameterLayout lay = cuda::parameter_layout(dims_of(p.config));
  for (const auto& q : p.model.parameters()) {
    double scale = 0.0;
    if (p.config.features == 1 && q.offset() == lay.conv_b)
      for (Index i = 0; i < 2; ++i) scale = std::max(scale, std::abs(double(want.grads[std::size_t(lay.conv_w + i)])));
    check("grad " + q.name(), std::size_t(q.offset()), std::size_t(q.size()), got.grads, want.grads,
          baseline ? &baseline->grads : nullptr, scale);
  }
}

template <class T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

const std::vector<StockMixerConfig> kShapes = {{1026, 16, 5, 20}, {1, 2, 1, 1}, {3, 6, 3, 3}, {17, 6, 1, 3},
                                               {17, 10, 3, 1}};

template <class T>
void check_device_model(const StockMixerConfig& c) {
  Problem<T> p(c);
  const Result<T> cpu = cpu_result(p);
  const Result<T> dev = device_result(p);
  if constexpr (std::is_same_v<T, double>) {
    require_close(p, dev, cpu, 1e-10);
  } else {
    Problem<double> exact_problem(p);
    const Result<double> exact = cpu_result(exact_problem);
    require_close(exact_problem, dev, exact, 1e-5, &cpu);
  }
  // The inference forward predicts the training forward's bits; a second run gives the same bits.
  std::vector<T> out(static_cast<std::size_t>(c.stocks));
  const std::vector<T> params = p.params();
  cuda::model_forward_host(out.data(), p.x.data(), params.data(), dims_of(c));
  CHECK(same_bits(out, dev.out));
  const Result<T> again = device_result(p);
  CHECK(same_bits(again.grads, dev.grads));
  CHECK(same_bits(again.dx, dev.dx));
}

}  // namespace

TEST_CASE("cuda model: the host-array entry points refuse bad dims, then a missing device", "[cuda]") {
  std::vector<float> v(64, 0.f);
  try {
    cuda::model_forward_host(v.data(), v.data(), v.data(), cuda::ModelDims{4, 3, 1, 1});
    FAIL("odd T accepted");
  } catch (const Error& e) {
    CHECK(std::string(e.what()) == "stockmixer::cuda::model_forward_host: lookback (T) must be even and at least 2, got 3");
  }
  std::string why;
  if (cuda::device_available(&why)) return;
  try {
    cuda::model_forward_host(v.data(), v.data(), v.data(), cuda::ModelDims{1, 2, 1, 1});
    FAIL("ran without a device");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find("stockmixer::cuda::model_forward_host: no CUDA device") == 0);
  }
}

TEST_CASE("cuda model: forward and backward equal the CPU model, float", "[cuda]") {
  if (no_device()) return;
  for (const StockMixerConfig& c : kShapes)
    DYNAMIC_SECTION("N " << c.stocks << " T " << c.lookback << " C " << c.features << " M " << c.market) {
      check_device_model<float>(c);
    }
}

TEST_CASE("cuda model: forward and backward equal the CPU model, double", "[cuda]") {
  if (no_device()) return;
  for (const StockMixerConfig& c : kShapes)
    DYNAMIC_SECTION("N " << c.stocks << " T " << c.lookback << " C " << c.features << " M " << c.market) {
      check_device_model<double>(c);
    }
}
