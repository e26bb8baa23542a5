// tests/fuzz/fuzz_eod_csv.cpp — one stock's end-of-day CSV file as the loaders read it: data::load_eod
// (float or double) and data::build_sfm_data over a ticker list of one, whose file is the input.
//
// Input layout: byte 0 chooses how the file is loaded (bit 0: market "NASDAQ", which drops the last
// row, or "NYSE"; bits 1-2: steps 1..4; bit 3: load_eod<double> instead of <float>); the remaining bytes
// are the file <work_dir>/<market>_AAA_1.csv. A market that loads is checked against the reader's
// promise: N = 1 and every value finite (Market::validate ran inside; this checks it ran).
#include "fuzz_input.hpp"

#include "stockmixer/data/eod.hpp"

#include <cmath>

namespace {

template <class T>
void load(const std::string& dir, const std::string& market, stockmixer::Index steps) {
  const std::vector<std::string> tickers = {"AAA"};
  stockmixer_fuzz::expect_error_or_success("data::load_eod", [&] {
    const stockmixer::data::Market<T> m = stockmixer::data::load_eod<T>(dir, market, tickers, steps);
    bool ok = m.stocks() == 1 && m.days() >= 1;
    for (const stockmixer::Tensor<T>* t : {&m.eod, &m.mask, &m.gt, &m.price})
      for (stockmixer::Index i = 0; ok && i < t->size(); ++i) ok = std::isfinite(t->data()[i]);
    if (!ok) {
      std::fprintf(stderr, "stockmixer fuzz: load_eod returned a market that is not 1 stock of finite values\n");
      std::abort();
    }
  });
  stockmixer_fuzz::expect_error_or_success("data::build_sfm_data", [&] {
    const stockmixer::Tensor<T> sfm = stockmixer::data::build_sfm_data<T>(dir, market, tickers);
    if (sfm.rank() != 2 || sfm.dim(0) != 1) {
      std::fprintf(stderr, "stockmixer fuzz: build_sfm_data returned shape %s for one ticker\n",
                   sfm.shape().str().c_str());
      std::abort();
    }
  });
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const unsigned flags = data[0];
  const std::string market = flags & 1u ? "NASDAQ" : "NYSE";
  const auto steps = static_cast<stockmixer::Index>(1 + ((flags >> 1) & 3u));
  stockmixer_fuzz::write_input(market + "_AAA_1.csv", data + 1, size - 1);
  if (flags & 8u) load<double>(stockmixer_fuzz::work_dir(), market, steps);
  else load<float>(stockmixer_fuzz::work_dir(), market, steps);
  return 0;
}
