// Every kernel against PyTorch's golden fixtures (tests/make_kernel_fixtures.py, Debian's python3-torch 1.13),
// forward and every gradient, in float against PyTorch's float32 and in double against its float64.
//
// Error measure: max |ours - torch| / max |torch| over the tensor (testing::max_rel_error). The
// tolerances are stated per kernel below with their reason; each passing comparison prints its
// measured error so the figures can be quoted (run the binary with -s, or see the ctest log).
#include "testing.hpp"

#include <stockmixer/kernels.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <iomanip>
#include <iostream>

using namespace stockmixer;
using testing::Fixture;

namespace {

// Float32 tolerances, one per kind of arithmetic:
//  - elementwise maps (GELU, Hardswish, dropout): one rounding per element on each side plus
//    PyTorch's vectorised erf/exp (≤ 2 ulp): 1e-6 ≈ 8 ulp of float.
//  - reductions of up to a few hundred terms (Linear, Conv1d, TriU, LayerNorm rows of 80): both
//    sides sum in a different order; the error grows like √K · ulp: 1e-5 holds for K ≤ 1026.
//  - the loss: PyTorch sums N² = 1M float terms; we sum in double. 1e-5.
// Double tolerances: 1e-12 (the same orders of summation, with 2^-53 rounding).
struct Tol {
  double f32, f64;
};
constexpr Tol kElementwise{1e-6, 1e-14};
constexpr Tol kReduction{1e-5, 1e-12};

template <class T, class A, class B>
void compare(const std::string& fixture, const std::string& tensor, const A& ours, const B& torch, Tol tol) {
  const double limit = std::is_same_v<T, float> ? tol.f32 : tol.f64;
  const double err = testing::max_rel_error(ours, torch);
  std::cout << "torch-fixture " << std::left << std::setw(24) << fixture << std::setw(8) << tensor
            << (std::is_same_v<T, float> ? " float " : " double") << "  error " << std::scientific
            << std::setprecision(2) << err << "  (tolerance " << limit << ")\n"
            << std::defaultfloat;
  INFO(fixture << " / " << tensor << ": max rel error " << err << ", tolerance " << limit);
  REQUIRE(ours.size() == torch.size());
  REQUIRE(err <= limit);
}

template <class T>
std::vector<T> zeros(Index n) {
  return std::vector<T>(static_cast<std::size_t>(n), T(0));
}

}  // namespace

TEMPLATE_TEST_CASE("linear equals PyTorch", "[torch][linear]", float, double) {
  using T = TestType;
  for (const char* name :
       {"linear_small", "linear_channel_mixer", "linear_stock_dense1", "linear_stock_dense2", "linear_time_fc"}) {
    DYNAMIC_SECTION(name) {
      const Fixture fx(name);
      const Index rows = fx.size("rows"), in = fx.size("in"), out = fx.size("out");
      const auto x = fx.input<T>("x"), wt = fx.input<T>("weight"), b = fx.input<T>("bias"), dy = fx.input<T>("dy");
      auto y = zeros<T>(rows * out), dx = zeros<T>(rows * in), dw = zeros<T>(out * in), db = zeros<T>(out);
      linear_forward(y.data(), x.data(), wt.data(), b.data(), rows, in, out);
      linear_backward(dx.data(), dw.data(), db.data(), dy.data(), x.data(), wt.data(), rows, in, out);
      compare<T>(name, "y", y, fx.expected<T>("y"), kReduction);
      compare<T>(name, "dx", dx, fx.expected<T>("dx"), kReduction);
      compare<T>(name, "dweight", dw, fx.expected<T>("dweight"), kReduction);
      compare<T>(name, "dbias", db, fx.expected<T>("dbias"), kReduction);
    }
  }
}

TEMPLATE_TEST_CASE("layernorm equals PyTorch", "[torch][layernorm]", float, double) {
  using T = TestType;
  for (const char* name : {"layernorm_small_2d", "layernorm_small_1d", "layernorm_tc", "layernorm_stock"}) {
    DYNAMIC_SECTION(name) {
      const Fixture fx(name);
      const Index rows = fx.size("rows"), dim = fx.size("dim");
      const auto x = fx.input<T>("x"), g = fx.input<T>("gamma"), b = fx.input<T>("beta"), dy = fx.input<T>("dy");
      auto y = zeros<T>(rows * dim), mean = zeros<T>(rows), rstd = zeros<T>(rows);
      auto dx = zeros<T>(rows * dim), dg = zeros<T>(dim), db = zeros<T>(dim);
      layernorm_forward(y.data(), mean.data(), rstd.data(), x.data(), g.data(), b.data(), rows, dim,
                        fx.meta().at("eps").get<double>());
      layernorm_backward(dx.data(), dg.data(), db.data(), dy.data(), x.data(), mean.data(), rstd.data(), g.data(), rows,
                         dim);
      compare<T>(name, "y", y, fx.expected<T>("y"), kReduction);
      compare<T>(name, "mean", mean, fx.expected<T>("mean"), kReduction);
      compare<T>(name, "rstd", rstd, fx.expected<T>("rstd"), kReduction);
      compare<T>(name, "dx", dx, fx.expected<T>("dx"), kReduction);
      compare<T>(name, "dgamma", dg, fx.expected<T>("dgamma"), kReduction);
      compare<T>(name, "dbeta", db, fx.expected<T>("dbeta"), kReduction);
    }
  }
}

TEMPLATE_TEST_CASE("gelu and hardswish equal PyTorch, kinks included", "[torch][gelu][hardswish]", float, double) {
  using T = TestType;
  for (const char* name : {"gelu_range", "gelu_nasdaq", "hardswish_range", "hardswish_kinks", "hardswish_stock"}) {
    DYNAMIC_SECTION(name) {
      const Fixture fx(name);
      const Index n = fx.size("n");
      const bool gelu = fx.meta().at("op") == "gelu";
      const auto x = fx.input<T>("x"), dy = fx.input<T>("dy");
      auto y = zeros<T>(n), dx = zeros<T>(n);
      if (gelu) {
        gelu_forward(y.data(), x.data(), n);
        gelu_backward(dx.data(), dy.data(), x.data(), n);
      } else {
        hardswish_forward(y.data(), x.data(), n);
        hardswish_backward(dx.data(), dy.data(), x.data(), n);
      }
      compare<T>(name, "y", y, fx.expected<T>("y"), kElementwise);
      compare<T>(name, "dx", dx, fx.expected<T>("dx"), kElementwise);
    }
  }
}

TEMPLATE_TEST_CASE("conv1d equals PyTorch", "[torch][conv1d]", float, double) {
  using T = TestType;
  for (const char* name : {"conv1d_small", "conv1d_nasdaq", "conv1d_k4"}) {
    DYNAMIC_SECTION(name) {
      const Fixture fx(name);
      const Index batch = fx.size("batch"), length = fx.size("length"), cin = fx.size("cin"), cout = fx.size("cout"),
                  kernel = fx.size("kernel");
      const Index lo = conv1d_output_length(length, kernel);
      const auto x = fx.input<T>("x"), wt = fx.input<T>("weight"), b = fx.input<T>("bias"), dy = fx.input<T>("dy");
      auto y = zeros<T>(batch * lo * cout), dx = zeros<T>(batch * length * cin), dw = zeros<T>(cout * cin * kernel),
           db = zeros<T>(cout);
      conv1d_forward(y.data(), x.data(), wt.data(), b.data(), batch, length, cin, cout, kernel);
      conv1d_backward(dx.data(), dw.data(), db.data(), dy.data(), x.data(), wt.data(), batch, length, cin, cout, kernel);
      compare<T>(name, "y", y, fx.expected<T>("y"), kReduction);
      compare<T>(name, "dx", dx, fx.expected<T>("dx"), kReduction);
      compare<T>(name, "dweight", dw, fx.expected<T>("dweight"), kReduction);
      compare<T>(name, "dbias", db, fx.expected<T>("dbias"), kReduction);
    }
  }
}

TEMPLATE_TEST_CASE("triu equals PyTorch's list of Linear(i + 1, 1)", "[torch][triu]", float, double) {
  using T = TestType;
  for (const char* name : {"triu_small_last_axis", "triu_small", "triu_nasdaq_t", "triu_nasdaq_s"}) {
    DYNAMIC_SECTION(name) {
      const Fixture fx(name);
      const Index batch = fx.size("batch"), length = fx.size("length"), inner = fx.size("inner");
      const auto x = fx.input<T>("x"), wt = fx.input<T>("weight"), b = fx.input<T>("bias"), dy = fx.input<T>("dy");
      auto y = zeros<T>(batch * length * inner), dx = zeros<T>(batch * length * inner), dw = zeros<T>(length * length),
           db = zeros<T>(length);
      triu_forward(y.data(), x.data(), wt.data(), b.data(), batch, length, inner);
      triu_backward(dx.data(), dw.data(), db.data(), dy.data(), x.data(), wt.data(), batch, length, inner);
      compare<T>(name, "y", y, fx.expected<T>("y"), kReduction);
      compare<T>(name, "dx", dx, fx.expected<T>("dx"), kReduction);
      compare<T>(name, "dweight", dw, fx.expected<T>("dweight"), kReduction);
      compare<T>(name, "dbias", db, fx.expected<T>("dbias"), kReduction);
    }
  }
}

TEMPLATE_TEST_CASE("dropout with PyTorch's mask equals PyTorch", "[torch][dropout]", float, double) {
  using T = TestType;
  for (const char* name : {"dropout_small", "dropout_nasdaq"}) {
    DYNAMIC_SECTION(name) {
      const Fixture fx(name);
      const Index n = fx.size("n");
      const double p = fx.meta().at("p").get<double>();
      const auto x = fx.input<T>("x"), dy = fx.input<T>("dy"), keep = fx.input<T>("keep");
      // Our own mask's kept value is the scale PyTorch multiplies by (1 / (1 - p) rounded to T); the
      // keep decisions are PyTorch's (its RNG stream is not reproduced).
      std::vector<T> ours_mask(static_cast<std::size_t>(n));
      dropout_mask(ours_mask.data(), n, p, 99);
      const T scale = *std::max_element(ours_mask.begin(), ours_mask.end());
      REQUIRE(scale == T(1) / static_cast<T>(1.0 - p));
      for (Index i = 0; i < n; ++i) ours_mask[i] = keep[i] != T(0) ? scale : T(0);
      auto y = zeros<T>(n), dx = zeros<T>(n);
      dropout_forward(y.data(), x.data(), ours_mask.data(), n);
      dropout_backward(dx.data(), dy.data(), ours_mask.data(), n);
      compare<T>(name, "y", y, fx.expected<T>("y"), kElementwise);
      compare<T>(name, "dx", dx, fx.expected<T>("dx"), kElementwise);
    }
  }
}

TEMPLATE_TEST_CASE("rank loss equals the original get_loss", "[torch][rank_loss]", float, double) {
  using T = TestType;
  for (const char* name : {"rank_loss_small", "rank_loss_nasdaq", "rank_loss_ties"}) {
    DYNAMIC_SECTION(name) {
      const Fixture fx(name);
      const Index n = fx.size("n");
      const T alpha = static_cast<T>(fx.meta().at("alpha").get<double>());
      const auto pred = fx.input<T>("pred"), base = fx.input<T>("base"), gt = fx.input<T>("gt"),
                 mask = fx.input<T>("mask");
      auto rr = zeros<T>(n), dpred = zeros<T>(n);
      const auto l = rank_loss_forward(rr.data(), pred.data(), base.data(), gt.data(), mask.data(), n, alpha);
      rank_loss_backward(dpred.data(), T(1), rr.data(), base.data(), gt.data(), mask.data(), n, alpha);
      compare<T>(name, "rr", rr, fx.expected<T>("rr"), kElementwise);
      compare<T>(name, "loss", std::vector<T>{l.loss}, fx.expected<T>("loss"), kReduction);
      compare<T>(name, "reg", std::vector<T>{l.reg}, fx.expected<T>("reg"), kReduction);
      compare<T>(name, "rank", std::vector<T>{l.rank}, fx.expected<T>("rank"), kReduction);
      compare<T>(name, "dpred", dpred, fx.expected<T>("dpred"), kReduction);
    }
  }
}
