// Tensor, Shape and the xtensor adaptors.
#include <stockmixer/tensor.hpp>
#include <stockmixer/xtensor.hpp>

#include <catch2/catch.hpp>
#include <limits>
#include <vector>
#include <xtensor/xarray.hpp>
#include <xtensor/xtensor.hpp>
#include <xtensor/xview.hpp>

using namespace stockmixer;

TEST_CASE("Shape: sizes, strides and errors", "[tensor]") {
  const Shape s{1026, 16, 5};
  REQUIRE(s.rank() == 3);
  REQUIRE(s.size() == 1026 * 16 * 5);
  REQUIRE(s.stride(0) == 80);
  REQUIRE(s.stride(1) == 5);
  REQUIRE(s.stride(2) == 1);
  REQUIRE(s.str() == "[1026, 16, 5]");
  REQUIRE(Shape{}.size() == 1);
  REQUIRE(Shape{2, 3} != Shape{3, 2});
  REQUIRE_THROWS_WITH((Shape{1, 2, 3, 4, 5}), Catch::Contains("rank above 4"));
  REQUIRE_THROWS_WITH((Shape{2, -1}), Catch::Contains("negative dimension -1"));
}

TEST_CASE("Shape: a product of dimensions that overflows Index is refused", "[tensor][hostile]") {
  // Index is 64-bit signed: 2^32 * 2^32 = 2^64 and (2^62) * 2 = 2^63 overflow it; size() would wrap
  // and a Tensor of that shape would allocate a wrapped (small) count and then be indexed past it.
  const Index big = Index(1) << 32;
  REQUIRE_THROWS_WITH((Shape{big, big}), Catch::Contains("overflows") && Catch::Contains("[4294967296, 4294967296]"));
  REQUIRE_THROWS_WITH((Shape{Index(1) << 62, 2}), Catch::Contains("overflows"));
  REQUIRE_THROWS_WITH((Shape{3, big, big, 0}), Catch::Contains("overflows"));  // the nonzero dims must fit, a 0 or not
  const std::vector<Index> dims{big, big, 2};  // the iterator constructor (read_npy's header shapes)
  REQUIRE_THROWS_WITH(Shape(dims.begin(), dims.end()), Catch::Contains("overflows"));
  // Products that fit are accepted up to 2^63 - 1, and a zero dimension makes the size 0.
  REQUIRE(Shape{Index(1) << 31, (Index(1) << 31) - 1}.size() == (Index(1) << 62) - (Index(1) << 31));
  REQUIRE(Shape{std::numeric_limits<Index>::max()}.size() == std::numeric_limits<Index>::max());
  REQUIRE(Shape{0, big, big / 4}.size() == 0);  // the nonzero dims alone (2^62) must fit
}

TEST_CASE("Tensor: row-major storage, element access, Eigen views", "[tensor]") {
  Tensor<float> t({2, 3, 4});
  REQUIRE(t.size() == 24);
  REQUIRE(reinterpret_cast<std::uintptr_t>(t.data()) % 16 == 0);
  for (Index i = 0; i < 24; ++i) t.data()[i] = static_cast<float>(i);
  REQUIRE(t(1, 2, 3) == 23.0f);
  REQUIRE(t(1, 0, 1) == 13.0f);
  auto m = t.matrix();  // [2·3, 4]
  REQUIRE(m.rows() == 6);
  REQUIRE(m.cols() == 4);
  REQUIRE(m(5, 3) == 23.0f);
  auto m2 = t.matrix(2, 12);
  REQUIRE(m2(1, 0) == 12.0f);
  REQUIRE_THROWS_WITH(t.matrix(5, 5), Catch::Contains("cannot view a tensor of shape [2, 3, 4] as [5, 5]"));
  REQUIRE_THROWS_WITH((Tensor<double>({2, 2}, {1.0, 2.0, 3.0})), Catch::Contains("3 values given for shape [2, 2]"));
}

TEST_CASE("Tensor::resize keeps the allocation when the size fits", "[tensor]") {
  Tensor<double> t({100, 10});
  const double* before = t.data();
  t.resize({10, 100});
  REQUIRE(t.data() == before);
  t.resize({5, 5});
  REQUIRE(t.data() == before);
  REQUIRE(t.shape() == Shape{5, 5});
}

TEST_CASE("xtensor interop is zero-copy both ways", "[tensor][xtensor]") {
  Tensor<float> t({2, 3});
  auto xs = to_xtensor(t);
  REQUIRE(xs.dimension() == 2);
  REQUIRE(xs.shape()[1] == 3);
  xs(1, 2) = 7.0f;  // writes through to t
  REQUIRE(t(1, 2) == 7.0f);
  REQUIRE(&xs(0, 0) == t.data());

  xt::xtensor<double, 3> a = xt::zeros<double>({4, 2, 5});
  auto view = map_xtensor(a, "features");
  REQUIRE(view.shape() == Shape{4, 2, 5});
  view(3, 1, 4) = 2.5;  // writes through to a
  REQUIRE(a(3, 1, 4) == 2.5);

  const xt::xarray<double> b = {{1.0, 2.0}, {3.0, 4.0}};
  auto cview = map_xtensor(b);
  REQUIRE(cview(1, 0) == 3.0);

  xt::xarray<double, xt::layout_type::column_major> cm = xt::zeros<double>({2, 2});
  REQUIRE_THROWS_WITH(map_xtensor(cm, "weights"), Catch::Contains("weights: expected a row-major"));

  // Any expression evaluates into a new Tensor.
  auto t2 = from_xtensor<float>(xt::view(b, xt::all(), 1) * 10.0);
  REQUIRE(t2.shape() == Shape{2});
  REQUIRE(t2(0) == 20.0f);
  REQUIRE(t2(1) == 40.0f);
}
