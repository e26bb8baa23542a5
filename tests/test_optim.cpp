// Adam and AdamW against PyTorch 1.13 (fixtures written by tests/make_optim_fixtures.py with Debian's
// python3-torch), plus the properties the fixtures cannot show on their own: one step counter for all
// tensors (a known answer of the bias correction over two tensors), zero_grad, option validation,
// checkpoint restore, and 1 vs 2 threads.
//
// Exactness: the replay of 10 steps requires BIT-IDENTICAL parameters after every step, and
// bit-identical final moments, in float against PyTorch's float32 and in double against its float64.
// adam_update performs PyTorch's operations in PyTorch's order with PyTorch's roundings (scalars in
// double, rounded once to T; fused multiply-adds where PyTorch's AVX2 kernels fuse), so there is no
// tolerance to state. Each comparison prints its measured error (run with -s, or see the ctest log).
#include "testing.hpp"

#include <stockmixer/optim/adam.hpp>
#include <stockmixer/parallel.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <limits>
#include <string>
#include <vector>

using namespace stockmixer;

namespace {

// One case of tests/fixtures/optim/<name>/ (see tests/make_optim_fixtures.py for the layout).
class OptimFixture : public testing::Fixture {
 public:
  explicit OptimFixture(const std::string& name) : Fixture(name, "optim"), name_(name) {}

  const std::string& name() const { return name_; }
  int steps() const { return meta().at("steps").get<int>(); }
  AdamOptions options() const {
    AdamOptions o;
    o.lr = meta().at("lr").get<double>();
    o.beta1 = meta().at("beta1").get<double>();
    o.beta2 = meta().at("beta2").get<double>();
    o.eps = meta().at("eps").get<double>();
    o.weight_decay = meta().at("weight_decay").get<double>();
    o.decoupled_weight_decay = meta().at("decoupled_weight_decay").get<bool>();
    return o;
  }
  std::vector<std::string> param_names() const {
    std::vector<std::string> names;
    for (const auto& p : meta().at("params")) names.push_back(p.at("name").get<std::string>());
    return names;
  }

 private:
  std::string name_;
};

const char* const kCases[] = {"adam", "adam_l2", "adamw", "adam_betas"};

// Counts elements that differ from PyTorch's and prints the measured error; requires none to differ.
template <class T>
void require_bit_identical(const std::string& what, const T* ours, const std::vector<T>& torch) {
  std::size_t differ = 0;
  for (std::size_t i = 0; i < torch.size(); ++i) differ += (ours[i] != torch[i]) ? 1 : 0;
  const std::vector<T> mine(ours, ours + torch.size());
  const double err = testing::max_rel_error(mine, torch);
  std::cout << "torch-optim " << std::left << std::setw(36) << what << (std::is_same_v<T, float> ? " float " : " double")
            << "  max rel error " << std::scientific << std::setprecision(2) << err << "  elements differing "
            << differ << "/" << torch.size() << "\n"
            << std::defaultfloat;
  INFO(what << ": " << differ << " of " << torch.size() << " elements differ, max rel error " << err);
  REQUIRE(differ == 0);
}

// The parameters of one fixture case and their gradient buffers, owned here.
template <class T>
struct Model {
  std::vector<std::string> names;
  std::vector<std::vector<T>> values, grads, all_grads;  // all_grads[j]: [steps, size]

  explicit Model(const OptimFixture& fx) : names(fx.param_names()) {
    for (const auto& n : names) {
      values.push_back(fx.input<T>(n));
      grads.emplace_back(values.back().size(), T(0));
      all_grads.push_back(fx.input<T>(n + ".grads"));
    }
  }
  std::vector<AdamParam<T>> params() {
    std::vector<AdamParam<T>> p;
    for (std::size_t j = 0; j < names.size(); ++j)
      p.push_back({names[j], values[j].data(), grads[j].data(), static_cast<Index>(values[j].size())});
    return p;
  }
  void load_grads(int step) {
    for (std::size_t j = 0; j < names.size(); ++j) {
      const auto* g = all_grads[j].data() + static_cast<std::size_t>(step) * grads[j].size();
      std::copy(g, g + grads[j].size(), grads[j].begin());
    }
  }
};

// Step `step`'s slice of a [steps, size] array.
template <class T>
std::vector<T> step_slice(const std::vector<T>& all, int step, std::size_t size) {
  const auto* p = all.data() + static_cast<std::size_t>(step) * size;
  return std::vector<T>(p, p + size);
}

// Refills a gradient buffer in place: the optimiser holds a pointer into it, so it must not be
// reassigned (a moved-in vector would leave that pointer dangling).
template <class T>
void refill(std::vector<T>& v, std::uint64_t seed, double lo = -1.0, double hi = 1.0) {
  const std::vector<T> r = testing::random_vector<T>(v.size(), seed, lo, hi);
  std::copy(r.begin(), r.end(), v.begin());
}

}  // namespace

TEMPLATE_TEST_CASE("Adam and AdamW replay PyTorch's 10 steps bit for bit", "[optim][torch]", float, double) {
  using T = TestType;
  for (const char* name : kCases) {
    DYNAMIC_SECTION(name) {
      const OptimFixture fx(name);
      Model<T> model(fx);
      Adam<T> adam(model.params(), fx.options());
      for (int k = 0; k < fx.steps(); ++k) {
        model.load_grads(k);
        adam.step();
        REQUIRE(adam.steps() == k + 1);
        for (std::size_t j = 0; j < model.names.size(); ++j) {
          const auto torch = step_slice(fx.expected<T>(model.names[j] + ".values"), k, model.values[j].size());
          require_bit_identical(fx.name() + "/" + model.names[j] + " step " + std::to_string(k + 1),
                                model.values[j].data(), torch);
        }
      }
      for (std::size_t j = 0; j < model.names.size(); ++j) {
        const auto i = static_cast<Index>(j);
        REQUIRE(adam.exp_avg(i).size() == static_cast<Index>(model.values[j].size()));
        require_bit_identical(fx.name() + "/" + model.names[j] + " exp_avg", adam.exp_avg(i).data(),
                              fx.expected<T>(model.names[j] + ".exp_avg"));
        require_bit_identical(fx.name() + "/" + model.names[j] + " exp_avg_sq", adam.exp_avg_sq(i).data(),
                              fx.expected<T>(model.names[j] + ".exp_avg_sq"));
      }
    }
  }
}

TEMPLATE_TEST_CASE("a restored checkpoint continues PyTorch's trajectory bit for bit", "[optim][torch]", float,
                   double) {
  using T = TestType;
  for (const char* name : kCases) {
    DYNAMIC_SECTION(name) {
      const OptimFixture fx(name);
      Model<T> model(fx);
      const int split = 4;
      std::vector<std::vector<T>> saved_m, saved_v;
      std::int64_t saved_steps = 0;
      {
        Adam<T> first(model.params(), fx.options());
        for (int k = 0; k < split; ++k) {
          model.load_grads(k);
          first.step();
        }
        for (Index i = 0; i < first.num_params(); ++i) {
          const auto m = first.exp_avg(i), v = first.exp_avg_sq(i);
          saved_m.emplace_back(m.data(), m.data() + m.size());
          saved_v.emplace_back(v.data(), v.data() + v.size());
        }
        saved_steps = first.steps();
      }
      Adam<T> resumed(model.params(), fx.options());
      for (Index i = 0; i < resumed.num_params(); ++i) {
        REQUIRE(resumed.param(i).name == model.names[static_cast<std::size_t>(i)]);
        std::copy(saved_m[static_cast<std::size_t>(i)].begin(), saved_m[static_cast<std::size_t>(i)].end(),
                  resumed.exp_avg(i).data());
        std::copy(saved_v[static_cast<std::size_t>(i)].begin(), saved_v[static_cast<std::size_t>(i)].end(),
                  resumed.exp_avg_sq(i).data());
      }
      resumed.set_state(saved_steps);
      REQUIRE(resumed.steps() == split);
      for (int k = split; k < fx.steps(); ++k) {
        model.load_grads(k);
        resumed.step();
      }
      for (std::size_t j = 0; j < model.names.size(); ++j) {
        const auto torch = step_slice(fx.expected<T>(model.names[j] + ".values"), fx.steps() - 1,
                                      model.values[j].size());
        require_bit_identical(fx.name() + "/" + model.names[j] + " resumed", model.values[j].data(), torch);
      }
    }
  }
}

TEST_CASE("one step counter for all tensors: bias correction known answer over two tensors", "[optim]") {
  // Constant gradients c: m_t = c·(1 − β1^t), v_t = c²·(1 − β2^t), so the bias-corrected moments are
  // exactly c and c², and every step moves each parameter by −lr·c / (|c| + ε), for BOTH tensors.
  // An optimiser that advances the counter once per tensor (tiny-dnn) gives the second tensor t = 2 on
  // the first step: m̂ = c/(1 + β1), √v̂ = |c|/√(1 + β2), a move of −lr·sign(c)·√1.999/1.9 ≈ −0.744·lr.
  AdamOptions opt;
  opt.lr = 0.01;
  std::vector<double> a = {1.0, -2.0, 0.5}, b = {3.0, 4.0};
  std::vector<double> ga(a.size()), gb(b.size());
  const double ca = 0.5, cb = -2.0;
  const std::vector<double> a0 = a, b0 = b;
  Adam<double> adam({{"a", a.data(), ga.data(), 3}, {"b", b.data(), gb.data(), 2}}, opt);
  for (int k = 1; k <= 5; ++k) {
    std::fill(ga.begin(), ga.end(), ca);
    std::fill(gb.begin(), gb.end(), cb);
    adam.step();
    REQUIRE(adam.steps() == k);
    for (std::size_t i = 0; i < a.size(); ++i)
      REQUIRE(std::abs(a[i] - (a0[i] - k * opt.lr * ca / (std::abs(ca) + opt.eps))) <= 1e-13);
    for (std::size_t i = 0; i < b.size(); ++i)
      REQUIRE(std::abs(b[i] - (b0[i] - k * opt.lr * cb / (std::abs(cb) + opt.eps))) <= 1e-13);
  }
  // The per-tensor-counter answer is far away: the check above can fail.
  const double wrong_first_move_b = -opt.lr * (cb / (1 + opt.beta1)) / (std::abs(cb) / std::sqrt(1 + opt.beta2) + opt.eps);
  REQUIRE(std::abs(wrong_first_move_b - (-opt.lr * cb / (std::abs(cb) + opt.eps))) > 1e-3);
}

TEST_CASE("Adam equals the textbook update in long double, over two tensors and varying gradients", "[optim]") {
  // Kingma & Ba, with PyTorch's placement of eps: p -= lr · m̂ / (√v̂ + ε), m̂ = m/(1 − β1^t),
  // v̂ = v/(1 − β2^t), t shared by both tensors; L2 and decoupled weight decay as PyTorch applies them.
  for (const bool decoupled : {false, true}) {
    DYNAMIC_SECTION((decoupled ? "AdamW" : "Adam L2")) {
      AdamOptions opt;
      opt.lr = 0.05;
      opt.beta1 = 0.8;
      opt.beta2 = 0.95;
      opt.eps = 1e-6;
      opt.weight_decay = 0.03;
      opt.decoupled_weight_decay = decoupled;
      std::vector<double> p = testing::random_vector<double>(7, 1), q = testing::random_vector<double>(4, 2);
      std::vector<double> gp(p.size()), gq(q.size());
      std::vector<long double> P(p.begin(), p.end()), Q(q.begin(), q.end());
      std::vector<long double> mp(p.size()), vp(p.size()), mq(q.size()), vq(q.size());
      Adam<double> adam({{"p", p.data(), gp.data(), 7}, {"q", q.data(), gq.data(), 4}}, opt);
      auto reference = [&](std::vector<long double>& x, std::vector<long double>& m, std::vector<long double>& v,
                           const std::vector<double>& g, int t) {
        const long double b1 = opt.beta1, b2 = opt.beta2, lr = opt.lr, wd = opt.weight_decay;
        for (std::size_t i = 0; i < x.size(); ++i) {
          long double gi = g[i];
          if (decoupled) x[i] *= 1 - lr * wd;
          else gi += wd * x[i];
          m[i] = b1 * m[i] + (1 - b1) * gi;
          v[i] = b2 * v[i] + (1 - b2) * gi * gi;
          const long double mhat = m[i] / (1 - std::pow(b1, static_cast<long double>(t)));
          const long double vhat = v[i] / (1 - std::pow(b2, static_cast<long double>(t)));
          x[i] -= lr * mhat / (std::sqrt(vhat) + static_cast<long double>(opt.eps));
        }
      };
      for (int t = 1; t <= 6; ++t) {
        refill(gp, 100 + static_cast<std::uint64_t>(t));
        refill(gq, 200 + static_cast<std::uint64_t>(t), -1e-3, 1e-3);
        adam.step();
        reference(P, mp, vp, gp, t);
        reference(Q, mq, vq, gq, t);
        for (std::size_t i = 0; i < p.size(); ++i) REQUIRE(std::abs(p[i] - static_cast<double>(P[i])) <= 1e-13);
        for (std::size_t i = 0; i < q.size(); ++i) REQUIRE(std::abs(q[i] - static_cast<double>(Q[i])) <= 1e-13);
      }
    }
  }
}

TEST_CASE("AdamW with weight_decay 0 is Adam, bit for bit", "[optim]") {
  std::vector<float> p1 = testing::random_vector<float>(50, 3), p2 = p1, g(50);
  AdamOptions plain;
  AdamOptions decoupled;
  decoupled.decoupled_weight_decay = true;
  Adam<float> a({{"w", p1.data(), g.data(), 50}}, plain);
  Adam<float> b({{"w", p2.data(), g.data(), 50}}, decoupled);
  for (int t = 1; t <= 3; ++t) {
    refill(g, 10 + static_cast<std::uint64_t>(t));
    a.step();
    b.step();
  }
  REQUIRE(std::memcmp(p1.data(), p2.data(), p1.size() * sizeof(float)) == 0);
}

TEST_CASE("zero_grad sets every gradient to 0 and nothing else", "[optim]") {
  std::vector<float> w = {1, 2, 3}, gw = {4, 5, 6}, b = {7}, gb = {8};
  Adam<float> adam({{"w", w.data(), gw.data(), 3}, {"b", b.data(), gb.data(), 1}});
  adam.step();
  const std::vector<float> w1 = w, b1 = b;
  const std::vector<float> m0(adam.exp_avg(0).data(), adam.exp_avg(0).data() + 3);
  adam.zero_grad();
  REQUIRE(gw == std::vector<float>{0, 0, 0});
  REQUIRE(gb == std::vector<float>{0});
  REQUIRE(w == w1);
  REQUIRE(b == b1);
  REQUIRE(std::vector<float>(adam.exp_avg(0).data(), adam.exp_avg(0).data() + 3) == m0);
  REQUIRE(adam.steps() == 1);
}

TEST_CASE("invalid options and parameters raise stockmixer::Error naming them", "[optim]") {
  const auto with = [](auto change) {
    AdamOptions o;
    change(o);
    return o;
  };
  const double nan = std::numeric_limits<double>::quiet_NaN();
  std::vector<float> w(4), g(4);
  const auto make = [&](const AdamOptions& o) { Adam<float> adam({{"w", w.data(), g.data(), 4}}, o); };

  REQUIRE_NOTHROW(make(with([](AdamOptions& o) { o.lr = 0; o.beta1 = 0; o.beta2 = 0; o.eps = 0; })));
  REQUIRE_THROWS_AS(make(with([](AdamOptions& o) { o.lr = -1e-3; })), Error);
  REQUIRE_THROWS_WITH(make(with([](AdamOptions& o) { o.lr = -1e-3; })), Catch::Contains("lr -0.001"));
  REQUIRE_THROWS_WITH(make(with([&](AdamOptions& o) { o.lr = nan; })), Catch::Contains("lr nan"));
  REQUIRE_THROWS_WITH(make(with([](AdamOptions& o) { o.beta1 = 1.0; })), Catch::Contains("beta1 1"));
  REQUIRE_THROWS_WITH(make(with([](AdamOptions& o) { o.beta1 = -0.1; })), Catch::Contains("beta1 -0.1"));
  REQUIRE_THROWS_WITH(make(with([](AdamOptions& o) { o.beta2 = 1.5; })), Catch::Contains("beta2 1.5"));
  REQUIRE_THROWS_WITH(make(with([](AdamOptions& o) { o.eps = -1e-8; })), Catch::Contains("eps -1e-08"));
  REQUIRE_THROWS_WITH(make(with([](AdamOptions& o) { o.weight_decay = -0.01; })),
                      Catch::Contains("weight_decay -0.01"));
  REQUIRE_THROWS_AS(with([](AdamOptions& o) { o.beta2 = 1.0; }).validate(), Error);

  // adam_update checks its arguments too.
  std::vector<float> m(4), v(4);
  REQUIRE_THROWS_WITH(adam_update(w.data(), m.data(), v.data(), g.data(), 4, 0, AdamOptions{}),
                      Catch::Contains("step 0"));
  REQUIRE_THROWS_WITH(adam_update(w.data(), m.data(), v.data(), g.data(), 4, 1,
                                  with([](AdamOptions& o) { o.eps = -1; })),
                      Catch::Contains("eps"));

  // Parameters: null pointers, negative sizes, repeated names; set_state with a negative count.
  REQUIRE_THROWS_WITH((Adam<float>({{"w", nullptr, g.data(), 4}})), Catch::Contains("'w'"));
  REQUIRE_THROWS_WITH((Adam<float>({{"w", w.data(), g.data(), -1}})), Catch::Contains("negative size"));
  REQUIRE_THROWS_WITH((Adam<float>({{"w", w.data(), g.data(), 2}, {"w", w.data() + 2, g.data() + 2, 2}})),
                      Catch::Contains("repeats"));
  Adam<float> ok({{"w", w.data(), g.data(), 4}});
  REQUIRE_THROWS_AS(ok.set_state(-1), Error);
}

TEMPLATE_TEST_CASE("1 and 2 threads give bit-identical Adam steps", "[optim][threads]", float, double) {
  using T = TestType;
  constexpr Index n = 100003;  // 13 chunks of 8192, the last one short
  struct Flavour {
    const char* name;
    double wd;
    bool decoupled;
  };
  for (const Flavour& f : {Flavour{"adam", 0.0, false}, Flavour{"adam_l2", 0.01, false}, Flavour{"adamw", 0.1, true}}) {
    DYNAMIC_SECTION(f.name) {
      AdamOptions opt;
      opt.lr = 1e-2;
      opt.weight_decay = f.wd;
      opt.decoupled_weight_decay = f.decoupled;
      auto run = [&](int threads) {
        set_num_threads(threads);
        std::vector<T> w = testing::random_vector<T>(n, 7), g(n), b = testing::random_vector<T>(5, 8), gb(5);
        Adam<T> adam({{"w", w.data(), g.data(), n}, {"b", b.data(), gb.data(), 5}}, opt);
        for (int t = 1; t <= 3; ++t) {
          refill(g, 20 + static_cast<std::uint64_t>(t));
          refill(gb, 30 + static_cast<std::uint64_t>(t));
          adam.step();
        }
        std::vector<T> out = w;
        out.insert(out.end(), adam.exp_avg(0).data(), adam.exp_avg(0).data() + n);
        out.insert(out.end(), adam.exp_avg_sq(0).data(), adam.exp_avg_sq(0).data() + n);
        return out;
      };
      const std::vector<T> one = run(1), two = run(2);
      set_num_threads(1);
      REQUIRE(one.size() == two.size());
      REQUIRE(std::memcmp(one.data(), two.data(), one.size() * sizeof(T)) == 0);
    }
  }
}

TEMPLATE_TEST_CASE("adam_update on a long tensor equals the scalar formula bit for bit", "[optim]", float, double) {
  // The fixtures' tensors are short (42, 13 and 30 values). Here 1300 values cross adam_update's
  // 512-value blocks and its 4-wide square roots with a tail of each, against one scalar loop of
  // the same operations (std::fma, std::sqrt, the same order), for Adam with L2 decay and for AdamW.
  using T = TestType;
  const Index n = 1300;
  for (const bool decoupled : {false, true}) {
    DYNAMIC_SECTION((decoupled ? "AdamW" : "Adam, L2")) {
      AdamOptions opt;
      opt.lr = 3e-3;
      opt.weight_decay = 0.05;
      opt.decoupled_weight_decay = decoupled;
      std::vector<T> p = testing::random_vector<T>(n, 41), m(n, T(0)), v(n, T(0));
      std::vector<T> rp = p, rm = m, rv = v;
      for (std::int64_t step = 1; step <= 3; ++step) {
        const std::vector<T> g = testing::random_vector<T>(n, 50 + static_cast<std::uint64_t>(step), -2e-2, 2e-2);
        adam_update(p.data(), m.data(), v.data(), g.data(), n, step, opt);
        const double t = static_cast<double>(step);
        const T bc2 = static_cast<T>(std::sqrt(1.0 - std::pow(opt.beta2, t)));
        const T neg = static_cast<T>(-(opt.lr / (1.0 - std::pow(opt.beta1, t))));
        const T b1 = static_cast<T>(opt.beta1), c1 = static_cast<T>(1.0 - opt.beta1);
        const T b2 = static_cast<T>(opt.beta2), c2 = static_cast<T>(1.0 - opt.beta2);
        const T wd = static_cast<T>(opt.weight_decay), decay = static_cast<T>(1.0 - opt.lr * opt.weight_decay);
        for (Index i = 0; i < n; ++i) {
          T gi = g[static_cast<std::size_t>(i)];
          T& pi = rp[static_cast<std::size_t>(i)];
          if (decoupled) pi = pi * decay;
          else gi = std::fma(pi, wd, gi);
          T& mi = rm[static_cast<std::size_t>(i)];
          T& vi = rv[static_cast<std::size_t>(i)];
          mi = std::fma(gi, c1, mi * b1);
          vi = std::fma(c2 * gi, gi, vi * b2);
          const T d = std::sqrt(vi) / bc2 + static_cast<T>(opt.eps);
          pi = pi + (neg * mi) / d;
        }
      }
      require_bit_identical("long tensor: parameters", p.data(), rp);
      require_bit_identical("long tensor: exp_avg", m.data(), rm);
      require_bit_identical("long tensor: exp_avg_sq", v.data(), rv);
    }
  }
}

TEMPLATE_TEST_CASE("Adam::step over tensors cut into chunks equals adam_update tensor by tensor", "[optim]", float,
                   double) {
  // Adam::step runs the concatenation of every parameter in fixed chunks of values, so a chunk holds
  // pieces of several tensors and a tensor may span several chunks. Sizes here cross the chunk
  // boundaries in every way; the result must equal adam_update on each tensor, bit for bit.
  using T = TestType;
  const std::vector<Index> sizes = {5000, 9000, 3, 20000, 0, 7, 8192};
  AdamOptions opt;
  opt.lr = 2e-3;
  opt.weight_decay = 0.01;
  std::vector<std::vector<T>> w, g, rw, rm, rv;
  std::vector<AdamParam<T>> params;
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    const auto n = static_cast<std::size_t>(sizes[i]);
    w.push_back(testing::random_vector<T>(n, 70 + i));
    g.push_back(std::vector<T>(n));
    rw.push_back(w.back());
    rm.push_back(std::vector<T>(n, T(0)));
    rv.push_back(std::vector<T>(n, T(0)));
  }
  for (std::size_t i = 0; i < sizes.size(); ++i)
    params.push_back({"p" + std::to_string(i), w[i].data(), g[i].data(), sizes[i]});
  Adam<T> adam(params, opt);
  for (std::int64_t step = 1; step <= 3; ++step) {
    for (std::size_t i = 0; i < sizes.size(); ++i) {  // into the same storage: Adam holds its pointers
      const auto fresh = testing::random_vector<T>(g[i].size(), 100 * i + static_cast<std::uint64_t>(step), -1e-2, 1e-2);
      std::copy(fresh.begin(), fresh.end(), g[i].begin());
    }
    adam.step();
    for (std::size_t i = 0; i < sizes.size(); ++i)
      adam_update(rw[i].data(), rm[i].data(), rv[i].data(), g[i].data(), sizes[i], step, opt);
  }
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    require_bit_identical("chunked step: " + params[i].name, w[i].data(), rw[i]);
    require_bit_identical("chunked step: " + params[i].name + " exp_avg", adam.exp_avg(static_cast<Index>(i)).data(), rm[i]);
  }
}
