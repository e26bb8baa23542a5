// Every kernel's backward against central finite differences in double (tests/gradcheck.hpp), every
// fast forward against its _naive reference, and the checker itself shown to reject wrong backwards.
//
// Tolerances: |analytic - numeric| <= 1e-8 + 1e-6 |numeric| with h = 1e-6 · max(1, |x|). Central
// differences in double carry a truncation error ~h² · f''' ≈ 1e-12 and a round-off error
// ~eps · |f| / h ≈ 1e-10, so a correct backward passes by two orders of magnitude and a wrong term of
// relative size 1e-6 or more fails.
#include "gradcheck.hpp"
#include "testing.hpp"

#include <stockmixer/kernels.hpp>

#include <catch2/catch.hpp>

#include <cstring>
#include <tuple>

using namespace stockmixer;
using testing::Buffers;
using testing::gradcheck;
using testing::random_vector;

namespace {

#define REQUIRE_GRADCHECK(result)      \
  do {                                 \
    const auto r_ = (result);          \
    INFO(r_.report);                   \
    INFO("worst ratio " << r_.worst);  \
    REQUIRE(r_.ok);                    \
  } while (0)

double* w(Buffers& b, const char* k) { return b.at(k).data(); }
const double* r(const Buffers& b, const char* k) { return b.at(k).data(); }

// Values in [lo, hi) kept at least `gap` away from each kink.
std::vector<double> away_from(std::vector<double> v, std::initializer_list<double> kinks, double gap) {
  for (auto& x : v)
    for (double k : kinks)
      if (std::abs(x - k) < gap) x = k + (x < k ? -gap : gap);
  return v;
}

}  // namespace

TEST_CASE("linear backward matches finite differences", "[gradcheck][linear]") {
  // {5, 4, 3}: the general (Eigen GEMM) path; 5 -> 5 and 5 -> 1: the fixed-size path.
  const auto shape = GENERATE(std::tuple<Index, Index, Index>{5, 4, 3}, std::tuple<Index, Index, Index>{6, 5, 5},
                              std::tuple<Index, Index, Index>{7, 5, 1});
  const Index rows = std::get<0>(shape), in = std::get<1>(shape), out = std::get<2>(shape);
  INFO("rows " << rows << ", in " << in << ", out " << out);
  Buffers in_{{"x", random_vector<double>(rows * in, 1)},
              {"weight", random_vector<double>(out * in, 2)},
              {"bias", random_vector<double>(out, 3)}};
  auto fwd = [&](const Buffers& b) {
    std::vector<double> y(rows * out);
    linear_forward(y.data(), r(b, "x"), r(b, "weight"), r(b, "bias"), rows, in, out);
    return y;
  };
  auto bwd = [&](const Buffers& b, const std::vector<double>& dy, Buffers& g) {
    linear_backward(w(g, "x"), w(g, "weight"), w(g, "bias"), dy.data(), r(b, "x"), r(b, "weight"), rows, in, out);
  };
  REQUIRE_GRADCHECK(gradcheck(in_, fwd, bwd));

  SECTION("and so does the naive backward") {
    auto bwd_naive = [&](const Buffers& b, const std::vector<double>& dy, Buffers& g) {
      linear_backward_naive(w(g, "x"), w(g, "weight"), w(g, "bias"), dy.data(), r(b, "x"), r(b, "weight"), rows, in,
                            out);
    };
    REQUIRE_GRADCHECK(gradcheck(in_, fwd, bwd_naive));
  }
}

TEST_CASE("layernorm backward matches finite differences", "[gradcheck][layernorm]") {
  for (auto [rows, dim] : {std::pair<Index, Index>{3, 20}, {4, 7}, {2, 1}}) {
    DYNAMIC_SECTION("rows " << rows << ", D " << dim) {
      Buffers in_{{"x", random_vector<double>(rows * dim, 4, -2, 2)},
                  {"gamma", random_vector<double>(dim, 5, 0.5, 1.5)},
                  {"beta", random_vector<double>(dim, 6)}};
      auto fwd = [&, rows = rows, dim = dim](const Buffers& b) {
        std::vector<double> y(rows * dim), mean(rows), rstd(rows);
        layernorm_forward(y.data(), mean.data(), rstd.data(), r(b, "x"), r(b, "gamma"), r(b, "beta"), rows, dim);
        return y;
      };
      auto bwd = [&, rows = rows, dim = dim](const Buffers& b, const std::vector<double>& dy, Buffers& g) {
        std::vector<double> y(rows * dim), mean(rows), rstd(rows);
        layernorm_forward(y.data(), mean.data(), rstd.data(), r(b, "x"), r(b, "gamma"), r(b, "beta"), rows, dim);
        layernorm_backward(w(g, "x"), w(g, "gamma"), w(g, "beta"), dy.data(), r(b, "x"), mean.data(), rstd.data(),
                           r(b, "gamma"), rows, dim);
      };
      REQUIRE_GRADCHECK(gradcheck(in_, fwd, bwd));
    }
  }
}

TEST_CASE("gelu backward matches finite differences", "[gradcheck][gelu]") {
  Buffers in_{{"x", random_vector<double>(64, 7, -4, 4)}};
  auto fwd = [](const Buffers& b) {
    std::vector<double> y(b.at("x").size());
    gelu_forward(y.data(), r(b, "x"), static_cast<Index>(y.size()));
    return y;
  };
  auto bwd = [](const Buffers& b, const std::vector<double>& dy, Buffers& g) {
    gelu_backward(w(g, "x"), dy.data(), r(b, "x"), static_cast<Index>(dy.size()));
  };
  REQUIRE_GRADCHECK(gradcheck(in_, fwd, bwd));
}

TEST_CASE("hardswish backward matches finite differences away from its kinks", "[gradcheck][hardswish]") {
  Buffers in_{{"x", away_from(random_vector<double>(64, 8, -6, 6), {-3.0, 3.0}, 1e-3)}};
  auto fwd = [](const Buffers& b) {
    std::vector<double> y(b.at("x").size());
    hardswish_forward(y.data(), r(b, "x"), static_cast<Index>(y.size()));
    return y;
  };
  auto bwd = [](const Buffers& b, const std::vector<double>& dy, Buffers& g) {
    hardswish_backward(w(g, "x"), dy.data(), r(b, "x"), static_cast<Index>(dy.size()));
  };
  REQUIRE_GRADCHECK(gradcheck(in_, fwd, bwd));
}

TEST_CASE("conv1d backward matches finite differences", "[gradcheck][conv1d]") {
  struct Case { Index batch, length, cin, cout, kernel; };
  for (const Case c : {Case{2, 7, 3, 2, 3}, Case{3, 16, 5, 5, 2}, Case{2, 4, 1, 3, 1}}) {
    DYNAMIC_SECTION("B " << c.batch << " L " << c.length << " Ci " << c.cin << " Co " << c.cout << " K " << c.kernel) {
      const Index lo = conv1d_output_length(c.length, c.kernel);
      Buffers in_{{"x", random_vector<double>(c.batch * c.length * c.cin, 9)},
                  {"weight", random_vector<double>(c.cout * c.cin * c.kernel, 10)},
                  {"bias", random_vector<double>(c.cout, 11)}};
      auto fwd = [&](const Buffers& b) {
        std::vector<double> y(c.batch * lo * c.cout);
        conv1d_forward(y.data(), r(b, "x"), r(b, "weight"), r(b, "bias"), c.batch, c.length, c.cin, c.cout, c.kernel);
        return y;
      };
      auto bwd = [&](const Buffers& b, const std::vector<double>& dy, Buffers& g) {
        conv1d_backward(w(g, "x"), w(g, "weight"), w(g, "bias"), dy.data(), r(b, "x"), r(b, "weight"), c.batch,
                        c.length, c.cin, c.cout, c.kernel);
      };
      REQUIRE_GRADCHECK(gradcheck(in_, fwd, bwd));
    }
  }
}

TEST_CASE("triu backward matches finite differences", "[gradcheck][triu]") {
  for (auto [batch, length, inner] : {std::tuple<Index, Index, Index>{4, 5, 1}, {3, 6, 3}, {2, 8, 5}}) {
    DYNAMIC_SECTION("B " << batch << " L " << length << " K " << inner) {
      Buffers in_{{"x", random_vector<double>(batch * length * inner, 12)},
                  {"weight", random_vector<double>(length * length, 13)},
                  {"bias", random_vector<double>(length, 14)}};
      auto fwd = [&, batch = batch, length = length, inner = inner](const Buffers& b) {
        std::vector<double> y(batch * length * inner);
        triu_forward(y.data(), r(b, "x"), r(b, "weight"), r(b, "bias"), batch, length, inner);
        return y;
      };
      auto bwd = [&, batch = batch, length = length, inner = inner](const Buffers& b, const std::vector<double>& dy,
                                                                    Buffers& g) {
        triu_backward(w(g, "x"), w(g, "weight"), w(g, "bias"), dy.data(), r(b, "x"), r(b, "weight"), batch, length,
                      inner);
      };
      // The upper triangle is not a parameter: its numeric derivative is 0 and the backward must leave
      // it untouched, which the accumulate-into-garbage check verifies too.
      REQUIRE_GRADCHECK(gradcheck(in_, fwd, bwd));
    }
  }
}

TEST_CASE("dropout backward matches finite differences for a fixed mask", "[gradcheck][dropout]") {
  const Index n = 200;
  const double p = 0.3;
  std::vector<double> mask(n);
  dropout_mask(mask.data(), n, p, 1234);
  Buffers in_{{"x", random_vector<double>(n, 15)}};
  auto fwd = [&](const Buffers& b) {
    std::vector<double> y(n);
    dropout_forward(y.data(), r(b, "x"), mask.data(), n);
    return y;
  };
  auto bwd = [&](const Buffers&, const std::vector<double>& dy, Buffers& g) {
    dropout_backward(w(g, "x"), dy.data(), mask.data(), n);
  };
  REQUIRE_GRADCHECK(gradcheck(in_, fwd, bwd));
}

TEST_CASE("dropout masks: scaled, seeded, about 1 - p kept", "[dropout]") {
  const Index n = 100000;
  std::vector<float> a(n), b(n), c(n);
  dropout_mask(a.data(), n, 0.25, 42);
  dropout_mask(b.data(), n, 0.25, 42);
  dropout_mask(c.data(), n, 0.25, 43);
  REQUIRE(std::memcmp(a.data(), b.data(), n * sizeof(float)) == 0);
  REQUIRE(std::memcmp(a.data(), c.data(), n * sizeof(float)) != 0);
  const auto kept = std::count(a.begin(), a.end(), 1.0f / 0.75f);
  REQUIRE(kept + std::count(a.begin(), a.end(), 0.0f) == n);  // every value is 0 or 1 / (1 - p)
  // Binomial(1e5, 0.75): std 137; 5 std either side.
  REQUIRE(std::abs(static_cast<double>(kept) - 75000.0) < 5 * 137.0);
  dropout_mask(a.data(), n, 0.0, 1);
  REQUIRE(std::all_of(a.begin(), a.end(), [](float m) { return m == 1.0f; }));
  dropout_mask(a.data(), n, 1.0, 1);
  REQUIRE(std::all_of(a.begin(), a.end(), [](float m) { return m == 0.0f; }));
  REQUIRE_THROWS_WITH(dropout_mask(a.data(), n, 1.5, 1), Catch::Contains("p must lie in [0, 1]"));
}

TEST_CASE("rank loss backward matches finite differences", "[gradcheck][rank_loss]") {
  const Index n = 24;
  auto base = random_vector<double>(n, 16, 0.5, 2.0);
  auto gt = random_vector<double>(n, 17, -0.05, 0.05);
  auto mask = random_vector<double>(n, 18, 0, 1);
  for (auto& m : mask) m = m < 0.2 ? 0.0 : 1.0;  // some masked stocks
  auto pred = random_vector<double>(n, 19, -0.05, 0.05);
  for (Index i = 0; i < n; ++i) pred[i] = base[i] * (1 + pred[i]);
  const double alpha = GENERATE(0.1, 3.0);
  Buffers in_{{"pred", pred}};
  auto fwd = [&](const Buffers& b) {
    std::vector<double> rr(n);
    const auto l = rank_loss_forward(rr.data(), r(b, "pred"), base.data(), gt.data(), mask.data(), n, alpha);
    return std::vector<double>{l.loss};
  };
  auto bwd = [&](const Buffers& b, const std::vector<double>& dy, Buffers& g) {
    std::vector<double> rr(n);
    rank_loss_forward(rr.data(), r(b, "pred"), base.data(), gt.data(), mask.data(), n, alpha);
    rank_loss_backward(w(g, "pred"), dy[0], rr.data(), base.data(), gt.data(), mask.data(), n, alpha);
  };
  REQUIRE_GRADCHECK(gradcheck(in_, fwd, bwd));
}

// ---- the checker rejects wrong backwards -----------------------------------------------------------

TEST_CASE("the gradient checker rejects wrong backwards", "[gradcheck][meta]") {
  const Index rows = 5, in = 4, out = 3;
  Buffers in_{{"x", random_vector<double>(rows * in, 1)},
              {"weight", random_vector<double>(out * in, 2)},
              {"bias", random_vector<double>(out, 3)}};
  auto fwd = [&](const Buffers& b) {
    std::vector<double> y(rows * out);
    linear_forward(y.data(), r(b, "x"), r(b, "weight"), r(b, "bias"), rows, in, out);
    return y;
  };

  SECTION("a bias gradient that is forgotten") {
    auto bwd = [&](const Buffers& b, const std::vector<double>& dy, Buffers& g) {
      linear_backward(w(g, "x"), w(g, "weight"), static_cast<double*>(nullptr), dy.data(), r(b, "x"), r(b, "weight"),
                      rows, in, out);
    };
    REQUIRE_FALSE(gradcheck(in_, fwd, bwd).ok);
  }
  SECTION("a backward that overwrites instead of accumulating") {
    auto bwd = [&](const Buffers& b, const std::vector<double>& dy, Buffers& g) {
      for (auto& kv : g) std::fill(kv.second.begin(), kv.second.end(), 0.0);
      linear_backward(w(g, "x"), w(g, "weight"), w(g, "bias"), dy.data(), r(b, "x"), r(b, "weight"), rows, in, out);
    };
    REQUIRE_FALSE(gradcheck(in_, fwd, bwd).ok);
  }
  SECTION("a weight gradient off by one part in 10^4") {
    auto bwd = [&](const Buffers& b, const std::vector<double>& dy, Buffers& g) {
      std::vector<double> dw(out * in, 0.0);
      linear_backward(w(g, "x"), dw.data(), w(g, "bias"), dy.data(), r(b, "x"), r(b, "weight"), rows, in, out);
      for (Index k = 0; k < out * in; ++k) g.at("weight")[k] += dw[k] * (1 + 1e-4);
    };
    REQUIRE_FALSE(gradcheck(in_, fwd, bwd).ok);
  }
  SECTION("a layernorm backward that drops the variance path") {
    const Index lrows = 3, dim = 6;
    Buffers lin{{"x", random_vector<double>(lrows * dim, 4, -2, 2)}};
    const auto gamma = random_vector<double>(dim, 5, 0.5, 1.5), beta = random_vector<double>(dim, 6);
    std::vector<double> mean(lrows), rstd(lrows);
    auto lfwd = [&](const Buffers& b) {
      std::vector<double> y(lrows * dim);
      layernorm_forward(y.data(), mean.data(), rstd.data(), r(b, "x"), gamma.data(), beta.data(), lrows, dim);
      return y;
    };
    auto lbwd = [&](const Buffers& b, const std::vector<double>& dy, Buffers& g) {
      lfwd(b);
      for (Index i = 0; i < lrows; ++i) {  // dx = rstd (g - mean(g)): the xhat · mean(g xhat) term is missing
        double gm = 0;
        for (Index j = 0; j < dim; ++j) gm += dy[i * dim + j] * gamma[j] / dim;
        for (Index j = 0; j < dim; ++j) g.at("x")[i * dim + j] += rstd[i] * (dy[i * dim + j] * gamma[j] - gm);
      }
    };
    REQUIRE_FALSE(gradcheck(lin, lfwd, lbwd).ok);
  }
}

// ---- fast forwards equal their naive references ----------------------------------------------------

TEMPLATE_TEST_CASE("fast forwards equal their naive references", "[naive]", float, double) {
  using T = TestType;
  const double tol = std::is_same_v<T, float> ? 1e-6 : 1e-14;  // same sums, different association
  SECTION("linear") {
    const Index rows = 37, in = 19, out = 11;
    auto x = random_vector<T>(rows * in, 1), wt = random_vector<T>(out * in, 2), b = random_vector<T>(out, 3);
    auto dy = random_vector<T>(rows * out, 4);
    std::vector<T> y(rows * out), y0(rows * out);
    linear_forward(y.data(), x.data(), wt.data(), b.data(), rows, in, out);
    linear_forward_naive(y0.data(), x.data(), wt.data(), b.data(), rows, in, out);
    REQUIRE(testing::max_rel_error(y, y0) <= tol);
    std::vector<T> dx(rows * in), dw(out * in), db(out), dx0(rows * in), dw0(out * in), db0(out);
    linear_backward(dx.data(), dw.data(), db.data(), dy.data(), x.data(), wt.data(), rows, in, out);
    linear_backward_naive(dx0.data(), dw0.data(), db0.data(), dy.data(), x.data(), wt.data(), rows, in, out);
    REQUIRE(testing::max_rel_error(dx, dx0) <= tol);
    REQUIRE(testing::max_rel_error(dw, dw0) <= tol * 10);
    REQUIRE(testing::max_rel_error(db, db0) <= tol * 10);
  }
  SECTION("layernorm") {
    const Index rows = 9, dim = 80;
    auto x = random_vector<T>(rows * dim, 5, -3, 3), g = random_vector<T>(dim, 6), b = random_vector<T>(dim, 7);
    std::vector<T> y(rows * dim), y0(rows * dim), m(rows), m0(rows), s(rows), s0(rows);
    layernorm_forward(y.data(), m.data(), s.data(), x.data(), g.data(), b.data(), rows, dim);
    layernorm_forward_naive(y0.data(), m0.data(), s0.data(), x.data(), g.data(), b.data(), rows, dim);
    REQUIRE(testing::max_rel_error(y, y0) <= tol * 4);
    REQUIRE(testing::max_rel_error(s, s0) <= tol);
  }
  SECTION("conv1d") {
    const Index batch = 6, length = 17, cin = 5, cout = 4, kernel = 4;
    auto x = random_vector<T>(batch * length * cin, 8), wt = random_vector<T>(cout * cin * kernel, 9);
    auto b = random_vector<T>(cout, 10);
    const Index lo = conv1d_output_length(length, kernel);
    std::vector<T> y(batch * lo * cout), y0(batch * lo * cout);
    conv1d_forward(y.data(), x.data(), wt.data(), b.data(), batch, length, cin, cout, kernel);
    conv1d_forward_naive(y0.data(), x.data(), wt.data(), b.data(), batch, length, cin, cout, kernel);
    REQUIRE(testing::max_rel_error(y, y0) <= tol);
  }
  SECTION("triu") {
    for (Index inner : {1, 5}) {
      const Index batch = 7, length = 16;
      auto x = random_vector<T>(batch * length * inner, 11), wt = random_vector<T>(length * length, 12);
      auto b = random_vector<T>(length, 13);
      std::vector<T> y(batch * length * inner), y0(batch * length * inner);
      triu_forward(y.data(), x.data(), wt.data(), b.data(), batch, length, inner);
      triu_forward_naive(y0.data(), x.data(), wt.data(), b.data(), batch, length, inner);
      REQUIRE(testing::max_rel_error(y, y0) <= tol);
    }
  }
  SECTION("rank loss") {
    const Index n = 300;
    auto base = random_vector<T>(n, 14, 0.5, 2), gt = random_vector<T>(n, 15, -0.05, 0.05);
    auto mask = random_vector<T>(n, 16, 0, 1), pred = random_vector<T>(n, 17, 0.5, 2);
    for (auto& m : mask) m = m < T(0.1) ? T(0) : T(1);
    std::vector<T> rr(n), rr0(n);
    const auto l = rank_loss_forward(rr.data(), pred.data(), base.data(), gt.data(), mask.data(), n, T(0.1));
    const auto l0 = rank_loss_forward_naive(rr0.data(), pred.data(), base.data(), gt.data(), mask.data(), n, T(0.1));
    REQUIRE(rr == rr0);
    REQUIRE(std::abs(l.rank - l0.rank) <= tol * std::abs(l0.rank));
    REQUIRE(std::abs(l.reg - l0.reg) <= tol * std::abs(l0.reg));
    REQUIRE(std::abs(l.loss - l0.loss) <= tol * std::abs(l0.loss));
  }
}
