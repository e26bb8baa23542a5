// Inference allocates nothing after its first call: this binary replaces the global operator new to
// count every heap allocation (its own translation unit and executable, so no other test is affected).
#include <stockmixer/model.hpp>

#include <catch2/catch.hpp>
#include <xtensor/xarray.hpp>

#include <atomic>
#include <cstdlib>
#include <new>

namespace {
std::atomic<long> g_allocations{0};
}

void* operator new(std::size_t size) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(size ? size : 1)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t size) { return operator new(size); }
void* operator new(std::size_t size, std::align_val_t align) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  const std::size_t a = static_cast<std::size_t>(align);
  if (void* p = std::aligned_alloc(a, (size + a - 1) / a * a)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t size, std::align_val_t align) { return operator new(size, align); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }

using namespace stockmixer;

TEST_CASE("the counter sees allocations", "[alloc]") {
  const long before = g_allocations.load();
  auto* v = new std::vector<int>(100);
  delete v;
  REQUIRE(g_allocations.load() - before >= 2);
}

TEST_CASE("StockMixer::predict allocates nothing after its first call", "[alloc][model]") {
  StockMixer<float> model(StockMixerConfig{}, 1);  // NASDAQ's shape
  Tensor<float> x({1026, 16, 5});
  for (Index i = 0; i < x.size(); ++i) x.data()[i] = 0.5f + 0.001f * static_cast<float>(i % 997);
  const TensorMap<const float> in(x.data(), x.shape());
  const float first = model.predict(in)(7, 0);  // sizes every buffer

  const long before = g_allocations.load();
  for (int k = 0; k < 3; ++k) REQUIRE(model.predict(in)(7, 0) == first);
  REQUIRE(g_allocations.load() - before == 0);
}

TEST_CASE("predict from a row-major xtensor container allocates nothing after its first call", "[alloc][xtensor]") {
  StockMixer<double> model(StockMixerConfig{50, 16, 5, 8}, 2);
  xt::xarray<double> x = xt::ones<double>({50, 16, 5});
  model.predict(x);
  const long before = g_allocations.load();
  model.predict(x);
  REQUIRE(g_allocations.load() - before == 0);
}
