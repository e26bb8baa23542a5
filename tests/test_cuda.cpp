// The CUDA unit (-DSTOCKMIXER_CUDA=ON; include/stockmixer/cuda/kernels.hpp) against the CPU kernels.
//
// Each device case compares the device kernel with the CPU kernel it mirrors, in float and double, at
// NASDAQ's shape (1026 stocks) and at small odd shapes (1, 2, 3, 17, 257 stocks), on inputs with ties
// and masked-out stocks. Where no CUDA device exists each device case prints
// "SKIPPED: no CUDA device: <reason>" and returns; ctest reports it skipped (SKIP_REGULAR_EXPRESSION in
// tests/CMakeLists.txt), not passed. The refusals (no device, a mask outside {0, 1}) run everywhere.
//
// Tolerances (the project's parity tolerances: 1e-5 in float, 1e-10 in double, relative):
//  - rr: bit for bit (the same pointwise::return_ratio, IEEE division on both).
//  - loss, reg, rank: |device − cpu| <= tol·|cpu|. Both sum in double; only the order differs (the
//    device sorts and reduces in another order, and does not centre gt and rr), so the double sums
//    agree to ~1e-13 relative at these sizes; the float values are then one rounding of them.
//  - hinge S_i and dpred_i: |device − cpu| <= tol·max_j |cpu_j| (the vector's scale: a stock with few
//    discordant partners has a small S_i that the others' rounding is not relative to).
//  - Adam: the same correctly rounded operations in the same order (fma, ·, /, √): the bits are
//    expected equal; the test asserts the tolerance and prints how many values differ at all.
//  - The resident step (cuda/step.hpp) against train::TrainStep, three steps from the same initial
//    model on the same windows: each step's loss, reg and rank within the tolerance relative to the
//    CPU's value; then every parameter and both Adam moments within the tolerance relative to the
//    largest magnitude of that array (the device's forward and backward sum in another order, and Adam
//    divides by √v, so a gradient's relative error reaches the parameters at most scaled by lr).
//    Device predict against StockMixer::predict: within the tolerance relative to max |prediction|.
// What a CPU can check of the step runs everywhere: the batch gather (gather_stock) against
// data::get_batch bit for bit, the offset checks, and `--device` (examples/cli/device.hpp).
// Timings: the hidden case "[.benchmark]" (benchmarks/gpu_check.sh runs it) prints the device and the
// CPU side by side; it is not a test.
#include "../examples/cli/device.hpp"

#include <stockmixer/cuda/kernels.hpp>
#include <stockmixer/cuda/step.hpp>
#include <stockmixer/data/market.hpp>
#include <stockmixer/kernels/rank_loss.hpp>
#include <stockmixer/optim/adam.hpp>
#include <stockmixer/train/step.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

using namespace stockmixer;

namespace {

// Prints the skip marker ctest looks for and returns true when there is no device.
bool skip_without_device() {
  std::string why;
  if (cuda::device_available(&why)) return false;
  std::cout << "SKIPPED: no CUDA device: " << why << std::endl;
  return true;
}

template <class T>
constexpr double tolerance() {
  return std::is_same_v<T, float> ? 1e-5 : 1e-10;
}

// A market of n stocks: base near 1, predictions and gt of order 1e-2 with ties (gt rounded to a grid
// of 1e-3, every seventh rr equal to its neighbour's), one stock in five masked out.
template <class T>
struct Inputs {
  std::vector<T> pred, base, gt, mask;
};
template <class T>
Inputs<T> make_inputs(Index n, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  Inputs<T> in;
  for (Index i = 0; i < n; ++i) {
    const double b = 1.0 + 0.5 * u(rng);
    in.base.push_back(static_cast<T>(b));
    in.pred.push_back(static_cast<T>(b * (1.0 + 0.02 * u(rng))));
    in.gt.push_back(static_cast<T>(std::round(20.0 * u(rng)) * 1e-3));
    in.mask.push_back(i % 5 == 3 ? T(0) : T(1));
    if (i % 7 == 6) {  // the same prediction and base as the previous stock: a tie in rr
      in.pred.back() = in.pred[static_cast<std::size_t>(i - 1)];
      in.base.back() = in.base[static_cast<std::size_t>(i - 1)];
    }
  }
  return in;
}

double max_abs(const std::vector<double>& v) {
  double m = 0.0;
  for (double x : v) m = std::max(m, std::abs(x));
  return m;
}

template <class T>
std::vector<double> as_double(const std::vector<T>& v) {
  return std::vector<double>(v.begin(), v.end());
}

// |device − cpu| <= tol · max(scale, tiny) element by element, with the worst ratio printed.
void check_close(const char* what, const std::vector<double>& device, const std::vector<double>& cpu, double tol) {
  REQUIRE(device.size() == cpu.size());
  const double scale = std::max(max_abs(cpu), 1e-300);
  double worst = 0.0;
  std::size_t at = 0;
  for (std::size_t i = 0; i < cpu.size(); ++i) {
    const double err = std::abs(device[i] - cpu[i]) / scale;
    if (!(err <= worst)) {  // NaN becomes the worst
      worst = err;
      at = i;
    }
  }
  INFO(what << ": worst |device - cpu| / max|cpu| = " << worst << " at " << at << " (tolerance " << tol << ")");
  CHECK(worst <= tol);
}

template <class T>
void check_value(const char* what, T device, T cpu) {
  const double err = std::abs(static_cast<double>(device) - static_cast<double>(cpu));
  INFO(what << ": device " << device << ", cpu " << cpu << ", |difference| " << err);
  CHECK(err <= tolerance<T>() * std::abs(static_cast<double>(cpu)));
}

// One shape, one form: forward values, rr, hinge and the backward against the CPU kernels.
template <class T>
void compare_rank_loss(Index n, cuda::RankForm form) {
  const auto u = static_cast<std::size_t>(n);
  const Inputs<T> in = make_inputs<T>(n, static_cast<std::uint32_t>(1000 + n));
  const T alpha = T(0.7), dloss = T(1.3);
  const bool sorted = form == cuda::RankForm::sorted;
  INFO("n = " << n << ", " << (sorted ? "sorted" : "tiled") << " form, " << (std::is_same_v<T, float> ? "float" : "double"));

  std::vector<T> rr_cpu(u), rr_dev(u), dpred_cpu(u, T(0.25)), dpred_dev(u, T(0.25));
  std::vector<double> hinge_cpu(u), hinge_dev(u);
  RankLoss<T> cpu;
  if (sorted) {
    RankLossWorkspace ws;
    cpu = rank_loss_forward_sorted(rr_cpu.data(), in.pred.data(), in.base.data(), in.gt.data(), in.mask.data(), n,
                                   alpha, ws, hinge_cpu.data());
    rank_loss_backward_from_hinge(dpred_cpu.data(), dloss, rr_cpu.data(), in.base.data(), in.gt.data(),
                                  in.mask.data(), n, alpha, hinge_cpu.data());
  } else {
    cpu = rank_loss_forward(rr_cpu.data(), in.pred.data(), in.base.data(), in.gt.data(), in.mask.data(), n, alpha);
    rank_loss_backward(dpred_cpu.data(), dloss, rr_cpu.data(), in.base.data(), in.gt.data(), in.mask.data(), n,
                       alpha);
    for (std::size_t i = 0; i < u; ++i) {  // the CPU's hinge: rank_loss_backward's inner loop
      double h = 0.0;
      for (std::size_t j = 0; j < u; ++j)
        if (pointwise::rank_pair(rr_cpu[i], rr_cpu[j], in.gt[i], in.gt[j], in.mask[i], in.mask[j]) > T(0))
          h += pointwise::rank_hinge_term(in.gt[i], in.gt[j], in.mask[j]);
      hinge_cpu[i] = h;
    }
  }
  const cuda::RankLossValues<T> dev = cuda::rank_loss_forward(rr_dev.data(), hinge_dev.data(), in.pred.data(),
                                                              in.base.data(), in.gt.data(), in.mask.data(), n,
                                                              alpha, form);
  cuda::rank_loss_backward(dpred_dev.data(), dloss, rr_dev.data(), in.base.data(), in.gt.data(), in.mask.data(), n,
                           alpha, hinge_dev.data());
  CHECK(rr_dev == rr_cpu);
  check_value("reg", dev.reg, cpu.reg);
  check_value("rank", dev.rank, cpu.rank);
  check_value("loss", dev.loss, cpu.loss);
  check_close("hinge", hinge_dev, hinge_cpu, tolerance<T>());
  check_close("dpred", as_double(dpred_dev), as_double(dpred_cpu), tolerance<T>());
}

const Index kShapes[] = {1, 2, 3, 17, 257, 1026};  // small odd shapes and NASDAQ's 1026 stocks

template <class T>
cuda::AdamCoefficients<T> coefficients(std::int64_t step, const AdamOptions& opt) {
  const detail::AdamScalars<T> s = detail::adam_scalars<T>(step, opt);
  return {s.l2, s.decoupled, s.wd, s.decay, s.beta1, s.one_minus_beta1, s.beta2, s.one_minus_beta2,
          s.bc2_sqrt, s.eps, s.neg_step_size};
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

TEST_CASE("require_device says 'no CUDA device' and why, and every entry point refuses without one",
          "[cuda]") {
  std::string why;
  if (cuda::device_available(&why)) {
    CHECK_NOTHROW(cuda::require_device("test_cuda"));
    std::cout << "device: " << cuda::device_description() << std::endl;
    return;
  }
  INFO("the runtime's reason: " << why);
  CHECK(!why.empty());
  CHECK_THROWS_WITH(cuda::require_device("stockmixer train --device cuda"),
                    "stockmixer train --device cuda: no CUDA device: " + why);
  const Inputs<double> in = make_inputs<double>(4, 1);
  std::vector<double> rr(4), hinge(4), p(4, 0.0), m(4, 0.0), v(4, 0.0);
  CHECK_THROWS_WITH(cuda::rank_loss_forward(rr.data(), hinge.data(), in.pred.data(), in.base.data(), in.gt.data(),
                                            in.mask.data(), 4, 0.1, cuda::RankForm::sorted),
                    "stockmixer::cuda::rank_loss_forward: no CUDA device: " + why);
  CHECK_THROWS_WITH(cuda::adam_values(p.data(), m.data(), v.data(), in.gt.data(), 4, coefficients<double>(1, {})),
                    "stockmixer::cuda::adam_values: no CUDA device: " + why);
}

TEST_CASE("the sorted rank loss refuses a mask outside {0, 1} and a size below 1, naming them", "[cuda]") {
  Inputs<float> in = make_inputs<float>(5, 2);
  in.mask[3] = 0.5f;
  std::vector<float> rr(5);
  std::vector<double> hinge(5);
  CHECK_THROWS_WITH(cuda::rank_loss_forward(rr.data(), hinge.data(), in.pred.data(), in.base.data(), in.gt.data(),
                                            in.mask.data(), 5, 0.1f, cuda::RankForm::sorted),
                    "stockmixer::cuda::rank_loss_forward: mask[3] = 0.500000; the sorted rank loss needs masks "
                    "in {0, 1} (use RankForm::tiled)");
  CHECK_THROWS_WITH(cuda::rank_loss_forward(rr.data(), hinge.data(), in.pred.data(), in.base.data(), in.gt.data(),
                                            in.mask.data(), 0, 0.1f, cuda::RankForm::tiled),
                    Catch::Contains("rank_loss_forward: n = 0 stocks (expected 1 to"));
}

TEMPLATE_TEST_CASE("the sorted rank loss equals rank_loss_forward_sorted and its backward", "[cuda][rank]",
                   float, double) {
  if (skip_without_device()) return;
  for (Index n : kShapes) compare_rank_loss<TestType>(n, cuda::RankForm::sorted);
}

TEMPLATE_TEST_CASE("the tiled rank loss equals rank_loss_forward and rank_loss_backward", "[cuda][rank]",
                   float, double) {
  if (skip_without_device()) return;
  for (Index n : kShapes) compare_rank_loss<TestType>(n, cuda::RankForm::tiled);
}

TEMPLATE_TEST_CASE("Adam over contiguous values equals adam_update (Adam, L2 decay, AdamW)", "[cuda][adam]",
                   float, double) {
  using T = TestType;
  if (skip_without_device()) return;
  AdamOptions plain, l2, adamw;
  l2.weight_decay = 0.01;
  adamw.weight_decay = 0.01;
  adamw.decoupled_weight_decay = true;
  for (const AdamOptions& opt : {plain, l2, adamw})
    for (Index n : {Index(1), Index(7), Index(1026), Index(100003)}) {
      const auto u = static_cast<std::size_t>(n);
      std::mt19937 rng(static_cast<std::uint32_t>(n));
      std::normal_distribution<double> g(0.0, 1.0);
      std::vector<T> p(u), m(u, T(0)), v(u, T(0)), grad(u);
      for (auto& x : p) x = static_cast<T>(g(rng));
      std::vector<T> pd = p, md = m, vd = v;
      for (std::int64_t step = 1; step <= 3; ++step) {
        for (auto& x : grad) x = static_cast<T>(0.1 * g(rng));
        adam_update(p.data(), m.data(), v.data(), grad.data(), n, step, opt);
        cuda::adam_values(pd.data(), md.data(), vd.data(), grad.data(), n, coefficients<T>(step, opt));
      }
      std::size_t differ = 0;
      for (std::size_t i = 0; i < u; ++i) differ += (pd[i] != p[i]) + (md[i] != m[i]) + (vd[i] != v[i]);
      std::cout << "adam n = " << n << " wd = " << opt.weight_decay << (opt.decoupled_weight_decay ? " (AdamW)" : "")
                << ": " << differ << " of " << 3 * u << " values differ in any bit" << std::endl;
      check_close("param", as_double(pd), as_double(p), tolerance<T>());
      check_close("exp_avg", as_double(md), as_double(m), tolerance<T>());
      check_close("exp_avg_sq", as_double(vd), as_double(v), tolerance<T>());
    }
}

// Not a test: device and CPU timings side by side (benchmarks/gpu_check.sh). The CPU column is this
// process's kernels with the OpenMP threads it was given.
TEMPLATE_TEST_CASE("timings of the device kernels beside the CPU's", "[.benchmark]", float, double) {
  using T = TestType;
  if (skip_without_device()) return;
  const char* type = std::is_same_v<T, float> ? "float" : "double";
  std::printf("%-34s %8s %14s %14s\n", "kernel", "type", "device us", "cpu us");
  for (Index n : {Index(1026), Index(20000), Index(100000)}) {
    const auto u = static_cast<std::size_t>(n);
    const Inputs<T> in = make_inputs<T>(n, 7);
    std::vector<T> rr(u), dpred(u, T(0));
    std::vector<double> hinge(u);
    RankLossWorkspace ws(n);
    const int iters = n > 20000 ? 10 : 50;
    auto t0 = std::chrono::steady_clock::now();
    for (int k = 0; k < iters; ++k) {
      rank_loss_forward_sorted(rr.data(), in.pred.data(), in.base.data(), in.gt.data(), in.mask.data(), n, T(0.1),
                               ws, hinge.data());
      rank_loss_backward_from_hinge(dpred.data(), T(1), rr.data(), in.base.data(), in.gt.data(), in.mask.data(), n,
                                    T(0.1), hinge.data());
    }
    const double cpu_sorted = 1e6 * seconds_since(t0) / iters;
    const double dev_sorted = cuda::benchmark_rank_loss<T>(n, cuda::RankForm::sorted, iters);
    std::printf("rank loss sorted fwd+bwd N=%-7td %8s %14.1f %14.1f\n", n, type, dev_sorted, cpu_sorted);
    double cpu_tiled = -1.0;
    if (n <= 20000) {  // the CPU's O(N²) form at N = 100 000 takes minutes
      const int tiled_iters = n > 1026 ? 1 : 10;
      t0 = std::chrono::steady_clock::now();
      for (int k = 0; k < tiled_iters; ++k) {
        rank_loss_forward(rr.data(), in.pred.data(), in.base.data(), in.gt.data(), in.mask.data(), n, T(0.1));
        rank_loss_backward(dpred.data(), T(1), rr.data(), in.base.data(), in.gt.data(), in.mask.data(), n, T(0.1));
      }
      cpu_tiled = 1e6 * seconds_since(t0) / tiled_iters;
    }
    const double dev_tiled = cuda::benchmark_rank_loss<T>(n, cuda::RankForm::tiled, n > 20000 ? 2 : 10);
    std::printf("rank loss tiled  fwd+bwd N=%-7td %8s %14.1f %14.1f\n", n, type, dev_tiled, cpu_tiled);
  }
  for (Index n : {Index(100000), Index(10000000)}) {
    const auto u = static_cast<std::size_t>(n);
    std::vector<T> p(u, T(0.5)), m(u, T(0)), v(u, T(0)), grad(u, T(0.01));
    const int iters = 20;
    const auto t0 = std::chrono::steady_clock::now();
    for (int k = 1; k <= iters; ++k) adam_update(p.data(), m.data(), v.data(), grad.data(), n, k, AdamOptions{});
    const double cpu = 1e6 * seconds_since(t0) / iters;
    std::printf("adam step            n=%-9td %8s %14.1f %14.1f\n", n, type, cuda::benchmark_adam<T>(n, iters), cpu);
  }
}

// ---- the resident step ------------------------------------------------------------------------------

namespace {

template <class T>
data::Market<T> small_market(Index stocks, Index days, Index features, Index steps, std::uint64_t seed) {
  data::SyntheticOptions o;
  o.stocks = stocks;
  o.days = days;
  o.features = features;
  o.steps = steps;
  o.seed = seed;
  o.missing = 0.05;  // windows with and without missing days
  return data::synthetic_market<T>(o);
}

// gather_stock for every stock, as the device's grid runs it.
template <class T>
void gather_on_host(const data::Market<T>& m, Index offset, Index lookback, std::vector<T>& x, std::vector<T>& mask,
                    std::vector<T>& base, std::vector<T>& gt) {
  const Index n = m.stocks();
  x.assign(static_cast<std::size_t>(n * lookback * m.features()), T(-7));
  mask.assign(static_cast<std::size_t>(n), T(-7));
  base = mask;
  gt = mask;
  const cuda::GatherArgs<T> g{m.eod.data(), m.mask.data(), m.gt.data(), m.price.data(), x.data(), mask.data(),
                              base.data(),  gt.data(),     n,           m.days(),       m.features(), lookback,
                              m.steps};
  for (Index i = 0; i < n; ++i) cuda::gather_stock(g, offset, i);
}

template <class T>
std::vector<T> as_vector(const Tensor<T>& t) {
  return std::vector<T>(t.data(), t.data() + t.size());
}

struct Shape4 {
  Index stocks, lookback, features, market;
};
const Shape4 kStepShapes[] = {{17, 4, 3, 5}, {1026, 16, 5, 20}};  // a small odd shape, NASDAQ's

}  // namespace

TEST_CASE("the tool's --device is cpu by default, cuda refused without the unit or a device, saying why", "[cuda][cli]") {
  auto options = [](std::vector<std::string> args) {
    Options a("bench", {cli::device_option()});
    args.insert(args.begin(), {"stockmixer", "bench"});
    std::vector<char*> argv;
    for (std::string& s : args) argv.push_back(s.data());
    a.parse_command_line(static_cast<int>(argv.size()), argv.data(), 2);
    return a;
  };
  int probes = 0;
  auto no_device = [&](std::string* why) {
    ++probes;
    *why = "cudaErrorNoDevice (no CUDA-capable device is detected)";
    return false;
  };
  auto a_device = [&](std::string*) {
    ++probes;
    return true;
  };
  CHECK(cli::device_choice(options({}), true, a_device) == cli::Device::cpu);
  CHECK(cli::device_choice(options({"--device", "cpu"}), false, no_device) == cli::Device::cpu);
  CHECK(probes == 0);  // cpu never asks the runtime
  CHECK_THROWS_WITH(cli::device_choice(options({"--device", "cuda"}), false, a_device),
                    "stockmixer bench: --device cuda: this stockmixer was built without the CUDA unit (configure with "
                    "-DSTOCKMIXER_CUDA=ON)");
  CHECK(probes == 0);
  CHECK_THROWS_WITH(cli::device_choice(options({"--device", "cuda"}), true, no_device),
                    "stockmixer bench: --device cuda: no CUDA device: cudaErrorNoDevice (no CUDA-capable device is "
                    "detected)");
  CHECK(cli::device_choice(options({"--device", "cuda"}), true, a_device) == cli::Device::cuda);
  CHECK_THROWS_WITH(cli::device_choice(options({"--device", "gpu"}), true, a_device),
                    Catch::Contains("must be one of cpu, cuda, got 'gpu'"));
  // This build's own probe: the unit is linked here, so only a device can be missing.
  std::string why;
  if (!cuda::device_available(&why))
    CHECK_THROWS_WITH(cli::device_choice(options({"--device", "cuda"}), true,
                                         [](std::string* w) { return cuda::device_available(w); }),
                      "stockmixer bench: --device cuda: no CUDA device: " + why);
}

TEMPLATE_TEST_CASE("the device's batch gather is data::get_batch, bit for bit", "[cuda][gather]", float, double) {
  using T = TestType;
  for (Index steps : {Index(1), Index(3)})
    for (Index lookback : {Index(2), Index(16)}) {
      const data::Market<T> m = small_market<T>(23, 60, 5, steps, 11 + static_cast<std::uint64_t>(steps));
      for (Index offset : {Index(0), Index(7), m.days() - lookback - steps}) {
        INFO("steps " << steps << ", lookback " << lookback << ", offset " << offset);
        data::Batch<T> b;
        data::get_batch(m, offset, lookback, b);
        std::vector<T> x, mask, base, gt;
        gather_on_host(m, offset, lookback, x, mask, base, gt);
        CHECK(x == as_vector(b.x));
        CHECK(mask == as_vector(b.mask));
        CHECK(base == as_vector(b.base));
        CHECK(gt == as_vector(b.gt));
      }
    }
}

TEST_CASE("the device step refuses a window outside the market, naming the offset and the bound", "[cuda][gather]") {
  CHECK(cuda::gather_offset_problem(100, 16, 1, 0).empty());
  CHECK(cuda::gather_offset_problem(100, 16, 1, 83).empty());
  CHECK(cuda::gather_offset_problem(100, 16, 1, 84) ==
        "window offset 84 with lookback 16 and steps 1 is not inside the market's D = 100 days (expected 0 <= offset "
        "<= D - lookback - steps = 83)");
  CHECK(!cuda::gather_offset_problem(100, 16, 1, -1).empty());
  CHECK(!cuda::gather_offset_problem(100, 16, 0, 0).empty());
}

TEMPLATE_TEST_CASE("the resident device step equals train::TrainStep over three steps", "[cuda][step]", float,
                   double) {
  using T = TestType;
  if (skip_without_device()) return;
  for (const Shape4& sh : kStepShapes) {
    INFO("N = " << sh.stocks << ", T = " << sh.lookback << ", C = " << sh.features << ", M = " << sh.market);
    const data::Market<T> m = small_market<T>(sh.stocks, 3 * sh.lookback + 8, sh.features, 1, 5);
    const StockMixerConfig config{sh.stocks, sh.lookback, sh.features, sh.market, 0.0};
    StockMixer<T> cpu_model(config, 3);
    AdamOptions adam;
    adam.lr = 1e-2;  // large enough that three steps move every parameter visibly
    const double alpha = 0.7;
    train::TrainStep<T> cpu_step(cpu_model, adam, alpha);
    cuda::DeviceTrainer<T> device({sh.stocks, sh.lookback, sh.features, sh.market}, static_cast<T>(alpha));
    REQUIRE(device.parameter_count() == cpu_model.parameters().size());
    device.upload_parameters(cpu_model.parameters().values());
    device.upload_market(m.eod.data(), m.mask.data(), m.gt.data(), m.price.data(), m.days(), m.steps);
    data::Batch<T> batch;
    std::int64_t k = 0;
    for (Index offset : {Index(5), Index(0), m.days() - sh.lookback - 1}) {
      ++k;
      INFO("step " << k << " at offset " << offset);
      data::get_batch(m, offset, sh.lookback, batch);
      const train::StepLoss cpu = cpu_step(batch);
      const cuda::DeviceStepLoss<T> dev =
          device.step(offset, cuda::adam_coefficients<T>(detail::adam_scalars<T>(k, adam)));
      check_value("loss", dev.loss, static_cast<T>(cpu.loss));
      check_value("reg", dev.reg, static_cast<T>(cpu.reg));
      check_value("rank", dev.rank, static_cast<T>(cpu.rank));
    }
    CHECK(device.graph_captured());
    const auto p = static_cast<std::size_t>(device.parameter_count());
    std::vector<T> values(p), grads(p), m1(p), m2(p);
    device.download_parameters(values.data());
    device.download_gradients(grads.data());
    device.download_moments(m1.data(), m2.data());
    const ParameterStore<T>& store = cpu_model.parameters();
    Adam<T>& cpu_adam = cpu_step.optimizer();
    check_close("parameters", as_double(values), as_double(std::vector<T>(store.values(), store.values() + p)),
                tolerance<T>());
    check_close("gradients of the last step", as_double(grads),
                as_double(std::vector<T>(store.grads(), store.grads() + p)), tolerance<T>());
    const T* cpu_m1 = cpu_adam.exp_avg().data();
    const T* cpu_m2 = cpu_adam.exp_avg_sq().data();
    check_close("exp_avg", as_double(m1), as_double(std::vector<T>(cpu_m1, cpu_m1 + p)), tolerance<T>());
    check_close("exp_avg_sq", as_double(m2), as_double(std::vector<T>(cpu_m2, cpu_m2 + p)), tolerance<T>());
  }
}

TEMPLATE_TEST_CASE("device predict equals StockMixer::predict", "[cuda][step]", float, double) {
  using T = TestType;
  if (skip_without_device()) return;
  for (const Shape4& sh : kStepShapes) {
    INFO("N = " << sh.stocks << ", T = " << sh.lookback << ", C = " << sh.features << ", M = " << sh.market);
    const data::Market<T> m = small_market<T>(sh.stocks, sh.lookback + 4, sh.features, 1, 9);
    StockMixer<T> model(StockMixerConfig{sh.stocks, sh.lookback, sh.features, sh.market, 0.0}, 4);
    data::Batch<T> batch;
    data::get_batch(m, 2, sh.lookback, batch);
    const std::vector<T> cpu = as_vector(model.predict(batch.x.map()));
    cuda::DeviceTrainer<T> device({sh.stocks, sh.lookback, sh.features, sh.market}, T(0));
    device.upload_parameters(model.parameters().values());
    std::vector<T> dev(cpu.size());
    device.predict(dev.data(), batch.x.data());
    check_close("prediction", as_double(dev), as_double(cpu), tolerance<T>());
  }
}

TEST_CASE("the device step refuses an offset outside the market and a step before any market", "[cuda][step]") {
  if (skip_without_device()) return;
  cuda::DeviceTrainer<float> device({5, 4, 2, 3}, 0.1f);
  const cuda::AdamCoefficients<float> a = cuda::adam_coefficients<float>(detail::adam_scalars<float>(1, {}));
  CHECK_THROWS_WITH(device.step(0, a), Catch::Contains("no market uploaded"));
  const data::Market<float> m = small_market<float>(5, 10, 2, 1, 2);
  device.upload_market(m.eod.data(), m.mask.data(), m.gt.data(), m.price.data(), m.days(), m.steps);
  CHECK_THROWS_WITH(device.step(6, a), Catch::Contains("window offset 6 with lookback 4 and steps 1 is not inside"));
}
