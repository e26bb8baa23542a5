// Adam and AdamW against PyTorch 1.13 (fixtures written by tests/make_optim_fixtures.py with Debian's
// python3-torch), plus the properties the fixtures cannot show on their own: one step counter for all
// tensors (a known answer of the bias correction over two tensors), zero_grad, option validation,
// checkpoint restore, and 1 vs 2 threads. Adam updates a ParameterStore, as it does a model's.
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

// Named tensors of the given sizes in one parameter store, as a model's are.
template <class T>
struct Tensors {
  ParameterStore<T> store;
  explicit Tensors(const std::vector<std::pair<std::string, Index>>& sizes) {
    for (const auto& [name, size] : sizes) store.add(name, Shape{size});
    store.allocate();
  }
  T* value(const std::string& name) const { return store.at(name).value(); }
  T* grad(const std::string& name) const { return store.at(name).grad(); }
  std::vector<T> values(const std::string& name) const {
    return std::vector<T>(value(name), value(name) + store.at(name).size());
  }
  void set(T* dst, const std::vector<T>& v) const { std::copy(v.begin(), v.end(), dst); }
};

// The parameters of one fixture case and every step's gradients.
template <class T>
struct Model : Tensors<T> {
  std::vector<std::string> names;
  std::vector<std::vector<T>> all_grads;  // all_grads[j]: [steps, size]

  static std::vector<std::pair<std::string, Index>> sizes(const OptimFixture& fx) {
    std::vector<std::pair<std::string, Index>> out;
    for (const auto& n : fx.param_names()) out.push_back({n, static_cast<Index>(fx.input<T>(n).size())});
    return out;
  }
  explicit Model(const OptimFixture& fx) : Tensors<T>(sizes(fx)), names(fx.param_names()) {
    for (const auto& n : names) {
      this->set(this->value(n), fx.input<T>(n));
      all_grads.push_back(fx.input<T>(n + ".grads"));
    }
  }
  std::size_t size(std::size_t j) const { return static_cast<std::size_t>(this->store.at(names[j]).size()); }
  void load_grads(int step) {
    for (std::size_t j = 0; j < names.size(); ++j) {
      const auto* g = all_grads[j].data() + static_cast<std::size_t>(step) * size(j);
      std::copy(g, g + size(j), this->grad(names[j]));
    }
  }
};

// Step `step`'s slice of a [steps, size] array.
template <class T>
std::vector<T> step_slice(const std::vector<T>& all, int step, std::size_t size) {
  const auto* p = all.data() + static_cast<std::size_t>(step) * size;
  return std::vector<T>(p, p + size);
}

// Refills n gradient values in place with random ones.
template <class T>
void refill(T* g, Index n, std::uint64_t seed, double lo = -1.0, double hi = 1.0) {
  const std::vector<T> r = testing::random_vector<T>(static_cast<std::size_t>(n), seed, lo, hi);
  std::copy(r.begin(), r.end(), g);
}

}  // namespace

TEMPLATE_TEST_CASE("Adam and AdamW replay PyTorch's 10 steps bit for bit", "[optim][torch]", float, double) {
  using T = TestType;
  for (const char* name : kCases) {
    DYNAMIC_SECTION(name) {
      const OptimFixture fx(name);
      Model<T> model(fx);
      Adam<T> adam(model.store, fx.options());
      for (int k = 0; k < fx.steps(); ++k) {
        model.load_grads(k);
        adam.step();
        REQUIRE(adam.steps() == k + 1);
        for (std::size_t j = 0; j < model.names.size(); ++j) {
          const auto torch = step_slice(fx.expected<T>(model.names[j] + ".values"), k, model.size(j));
          require_bit_identical(fx.name() + "/" + model.names[j] + " step " + std::to_string(k + 1),
                                model.value(model.names[j]), torch);
        }
      }
      for (std::size_t j = 0; j < model.names.size(); ++j) {
        const Parameter<T>& p = model.store.at(model.names[j]);
        REQUIRE(adam.exp_avg(p).size() == static_cast<Index>(model.size(j)));
        require_bit_identical(fx.name() + "/" + model.names[j] + " exp_avg", adam.exp_avg(p).data(),
                              fx.expected<T>(model.names[j] + ".exp_avg"));
        require_bit_identical(fx.name() + "/" + model.names[j] + " exp_avg_sq", adam.exp_avg_sq(p).data(),
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
      std::vector<std::vector<T>> saved_m, saved_v;  // per named tensor, as a checkpoint keeps them
      std::int64_t saved_steps = 0;
      {
        Adam<T> first(model.store, fx.options());
        for (int k = 0; k < split; ++k) {
          model.load_grads(k);
          first.step();
        }
        for (const auto& p : model.store) {
          const auto m = first.exp_avg(p), v = first.exp_avg_sq(p);
          saved_m.emplace_back(m.data(), m.data() + m.size());
          saved_v.emplace_back(v.data(), v.data() + v.size());
        }
        saved_steps = first.steps();
      }
      Adam<T> resumed(model.store, fx.options());
      for (Index i = 0; i < model.store.count(); ++i) {
        const Parameter<T>& p = model.store[i];
        REQUIRE(p.name() == model.names[static_cast<std::size_t>(i)]);
        std::copy(saved_m[static_cast<std::size_t>(i)].begin(), saved_m[static_cast<std::size_t>(i)].end(),
                  resumed.exp_avg(p).data());
        std::copy(saved_v[static_cast<std::size_t>(i)].begin(), saved_v[static_cast<std::size_t>(i)].end(),
                  resumed.exp_avg_sq(p).data());
      }
      resumed.set_state(saved_steps);
      REQUIRE(resumed.steps() == split);
      for (int k = split; k < fx.steps(); ++k) {
        model.load_grads(k);
        resumed.step();
      }
      for (std::size_t j = 0; j < model.names.size(); ++j) {
        const auto torch = step_slice(fx.expected<T>(model.names[j] + ".values"), fx.steps() - 1, model.size(j));
        require_bit_identical(fx.name() + "/" + model.names[j] + " resumed", model.value(model.names[j]), torch);
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
  Tensors<double> t({{"a", 3}, {"b", 2}});
  const std::vector<double> a0 = {1.0, -2.0, 0.5}, b0 = {3.0, 4.0};
  double *a = t.value("a"), *b = t.value("b");
  t.set(a, a0);
  t.set(b, b0);
  const double ca = 0.5, cb = -2.0;
  Adam<double> adam(t.store, opt);
  for (int k = 1; k <= 5; ++k) {
    std::fill(t.grad("a"), t.grad("a") + 3, ca);
    std::fill(t.grad("b"), t.grad("b") + 2, cb);
    adam.step();
    REQUIRE(adam.steps() == k);
    for (std::size_t i = 0; i < a0.size(); ++i)
      REQUIRE(std::abs(a[i] - (a0[i] - k * opt.lr * ca / (std::abs(ca) + opt.eps))) <= 1e-13);
    for (std::size_t i = 0; i < b0.size(); ++i)
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
      Tensors<double> tensors({{"p", 7}, {"q", 4}});
      double *p = tensors.value("p"), *q = tensors.value("q"), *gp = tensors.grad("p"), *gq = tensors.grad("q");
      tensors.set(p, testing::random_vector<double>(7, 1));
      tensors.set(q, testing::random_vector<double>(4, 2));
      std::vector<long double> P(p, p + 7), Q(q, q + 4);
      std::vector<long double> mp(7), vp(7), mq(4), vq(4);
      Adam<double> adam(tensors.store, opt);
      auto reference = [&](std::vector<long double>& x, std::vector<long double>& m, std::vector<long double>& v,
                           const double* g, int t) {
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
        refill(gp, 7, 100 + static_cast<std::uint64_t>(t));
        refill(gq, 4, 200 + static_cast<std::uint64_t>(t), -1e-3, 1e-3);
        adam.step();
        reference(P, mp, vp, gp, t);
        reference(Q, mq, vq, gq, t);
        for (std::size_t i = 0; i < P.size(); ++i) REQUIRE(std::abs(p[i] - static_cast<double>(P[i])) <= 1e-13);
        for (std::size_t i = 0; i < Q.size(); ++i) REQUIRE(std::abs(q[i] - static_cast<double>(Q[i])) <= 1e-13);
      }
    }
  }
}

TEST_CASE("AdamW with weight_decay 0 is Adam, bit for bit", "[optim]") {
  Tensors<float> one({{"w", 50}}), two({{"w", 50}});
  const std::vector<float> w = testing::random_vector<float>(50, 3);
  one.set(one.value("w"), w);
  two.set(two.value("w"), w);
  AdamOptions plain;
  AdamOptions decoupled;
  decoupled.decoupled_weight_decay = true;
  Adam<float> a(one.store, plain);
  Adam<float> b(two.store, decoupled);
  for (int t = 1; t <= 3; ++t) {
    refill(one.grad("w"), 50, 10 + static_cast<std::uint64_t>(t));
    std::copy(one.grad("w"), one.grad("w") + 50, two.grad("w"));
    a.step();
    b.step();
  }
  REQUIRE(std::memcmp(one.value("w"), two.value("w"), 50 * sizeof(float)) == 0);
}

TEST_CASE("zero_grad sets every gradient to 0 and nothing else", "[optim]") {
  Tensors<float> t({{"w", 3}, {"b", 1}});
  t.set(t.value("w"), {1, 2, 3});
  t.set(t.grad("w"), {4, 5, 6});
  t.set(t.value("b"), {7});
  t.set(t.grad("b"), {8});
  Adam<float> adam(t.store);
  adam.step();
  const std::vector<float> w1 = t.values("w"), b1 = t.values("b");
  const Parameter<float>& w = t.store.at("w");
  const std::vector<float> m0(adam.exp_avg(w).data(), adam.exp_avg(w).data() + 3);
  adam.zero_grad();
  REQUIRE(std::vector<float>(t.grad("w"), t.grad("w") + 3) == std::vector<float>{0, 0, 0});
  REQUIRE(t.grad("b")[0] == 0.0f);
  REQUIRE(t.values("w") == w1);
  REQUIRE(t.values("b") == b1);
  REQUIRE(std::vector<float>(adam.exp_avg(w).data(), adam.exp_avg(w).data() + 3) == m0);
  REQUIRE(adam.steps() == 1);
}

TEST_CASE("invalid options and parameters raise stockmixer::Error naming them", "[optim]") {
  const auto with = [](auto change) {
    AdamOptions o;
    change(o);
    return o;
  };
  const double nan = std::numeric_limits<double>::quiet_NaN();
  Tensors<float> t({{"w", 4}});
  std::vector<float> w(4), g(4);
  const auto make = [&](const AdamOptions& o) { Adam<float> adam(t.store, o); };

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

  // The store: a negative size, a repeated name, a store not yet allocated; set_state with a negative
  // count.
  ParameterStore<float> bad;
  REQUIRE_THROWS_WITH(bad.add("w", Shape{-1}), Catch::Contains("negative dimension"));
  bad.add("w", Shape{2});
  REQUIRE_THROWS_WITH(bad.add("w", Shape{2}), Catch::Contains("two tensors are named 'w'"));
  REQUIRE_THROWS_WITH(Adam<float>(bad), Catch::Contains("not allocated"));
  bad.allocate();
  REQUIRE_THROWS_WITH(bad.add("v", Shape{2}), Catch::Contains("after the store was allocated"));
  Adam<float> ok(t.store);
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
        Tensors<T> tensors({{"w", n}, {"b", 5}});
        tensors.set(tensors.value("w"), testing::random_vector<T>(n, 7));
        tensors.set(tensors.value("b"), testing::random_vector<T>(5, 8));
        Adam<T> adam(tensors.store, opt);
        for (int t = 1; t <= 3; ++t) {
          refill(tensors.grad("w"), n, 20 + static_cast<std::uint64_t>(t));
          refill(tensors.grad("b"), 5, 30 + static_cast<std::uint64_t>(t));
          adam.step();
        }
        std::vector<T> out = tensors.values("w");
        const Parameter<T>& w = tensors.store.at("w");
        out.insert(out.end(), adam.exp_avg(w).data(), adam.exp_avg(w).data() + n);
        out.insert(out.end(), adam.exp_avg_sq(w).data(), adam.exp_avg_sq(w).data() + n);
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
  std::vector<std::pair<std::string, Index>> named;
  for (std::size_t i = 0; i < sizes.size(); ++i) named.push_back({"p" + std::to_string(i), sizes[i]});
  Tensors<T> tensors(named);
  std::vector<std::vector<T>> rw, rm, rv;
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    const auto n = static_cast<std::size_t>(sizes[i]);
    tensors.set(tensors.value(named[i].first), testing::random_vector<T>(n, 70 + i));
    rw.push_back(tensors.values(named[i].first));
    rm.push_back(std::vector<T>(n, T(0)));
    rv.push_back(std::vector<T>(n, T(0)));
  }
  Adam<T> adam(tensors.store, opt);
  for (std::int64_t step = 1; step <= 3; ++step) {
    for (std::size_t i = 0; i < sizes.size(); ++i) {
      const auto fresh = testing::random_vector<T>(static_cast<std::size_t>(sizes[i]), 100 * i + static_cast<std::uint64_t>(step), -1e-2, 1e-2);
      tensors.set(tensors.grad(named[i].first), fresh);
    }
    adam.step();
    for (std::size_t i = 0; i < sizes.size(); ++i)
      adam_update(rw[i].data(), rm[i].data(), rv[i].data(), tensors.grad(named[i].first), sizes[i], step, opt);
  }
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    const Parameter<T>& p = tensors.store.at(named[i].first);
    require_bit_identical("chunked step: " + p.name(), p.value(), rw[i]);
    require_bit_identical("chunked step: " + p.name() + " exp_avg", adam.exp_avg(p).data(), rm[i]);
  }
}
