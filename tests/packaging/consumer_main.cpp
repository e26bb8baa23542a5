// A user's program, built by both consumer projects (find_package against an installed stockmixer, and
// add_subdirectory): includes the whole library, runs Linear and LayerNorm forward on Tensor<float>
// and checks both against values worked out by hand.
// Returns non-zero, naming each mismatch, when anything is off.
#include <stockmixer/stockmixer.hpp>

#include <cmath>
#include <cstdio>

// Built a second time linked to stockmixer::openmp: that target must bring OpenMP and switch off
// Eigen's own threading.
#ifdef STOCKMIXER_CONSUMER_OPENMP
#ifndef _OPENMP
#error "linking stockmixer::openmp did not enable OpenMP"
#endif
#ifndef EIGEN_DONT_PARALLELIZE
#error "linking stockmixer::openmp did not define EIGEN_DONT_PARALLELIZE"
#endif
#endif

namespace {

int failures = 0;

void check(const char* what, int i, double got, double want) {
  if (!(std::fabs(got - want) <= 1e-6 * (1.0 + std::fabs(want)))) {  // written so NaN fails too
    std::printf("MISMATCH %s[%d]: got %.9g, expected %.9g\n", what, i, got, want);
    ++failures;
  }
}

}  // namespace

int main() {
  using stockmixer::Tensor;

#ifdef STOCKMIXER_CONSUMER_OPENMP
  stockmixer::set_num_threads(2);
  if (stockmixer::num_threads() != 2) {
    std::printf("MISMATCH num_threads(): got %d after set_num_threads(2)\n", stockmixer::num_threads());
    ++failures;
  }
#endif

  // Linear(3 -> 2) on 2 rows, y = x W^T + b:
  //   y[0] = (1 - 3 + 0.25, 0.5 * (1 + 2 + 3) - 1) = (-1.75, 2)
  //   y[1] = (4 - 6 + 0.25, 0.5 * (4 + 5 + 6) - 1) = (-1.75, 6.5)
  const Tensor<float> x({2, 3}, {1, 2, 3, 4, 5, 6});
  const Tensor<float> w({2, 3}, {1, 0, -1, 0.5f, 0.5f, 0.5f});
  const Tensor<float> b({2}, {0.25f, -1});
  Tensor<float> y({2, 2});
  stockmixer::linear_forward(y.data(), x.data(), w.data(), b.data(), 2, 3, 2);
  const double y_want[] = {-1.75, 2.0, -1.75, 6.5};
  for (int i = 0; i < 4; ++i) check("linear_forward y", i, y.data()[i], y_want[i]);

  // LayerNorm over one row of 4, eps = 1e-5:
  //   mean = 2.5, biased var = (2.25 + 0.25 + 0.25 + 2.25) / 4 = 1.25, rstd = 1 / sqrt(1.25 + 1e-5)
  //   xhat = (-1.5, -0.5, 0.5, 1.5) * rstd,  y = xhat * gamma + beta
  const Tensor<float> xl({1, 4}, {1, 2, 3, 4});
  const Tensor<float> gamma({4}, {1, 1, 2, 0.5f});
  const Tensor<float> beta({4}, {0, 0.5f, 0, -1});
  Tensor<float> yl({1, 4}), mean({1}), rstd({1});
  stockmixer::layernorm_forward(yl.data(), mean.data(), rstd.data(), xl.data(), gamma.data(), beta.data(), 1, 4);
  const double rs = 1.0 / std::sqrt(1.25 + 1e-5);
  const double yl_want[] = {-1.5 * rs, -0.5 * rs + 0.5, 0.5 * rs * 2, 1.5 * rs * 0.5 - 1};
  check("layernorm_forward mean", 0, mean.data()[0], 2.5);
  check("layernorm_forward rstd", 0, rstd.data()[0], rs);
  for (int i = 0; i < 4; ++i) check("layernorm_forward y", i, yl.data()[i], yl_want[i]);

  if (failures) {
    std::printf("stockmixer consumer: %d mismatch(es)\n", failures);
    return 1;
  }
  std::printf("stockmixer consumer: linear_forward and layernorm_forward match the hand computation\n");
  return 0;
}
