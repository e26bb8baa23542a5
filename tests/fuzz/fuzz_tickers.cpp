// tests/fuzz/fuzz_tickers.cpp — data::read_tickers on any bytes as the tickers list. A list that reads
// must hold what the reader promises: at least one ticker, none repeated, none that could not be part
// of a file name.
#include "fuzz_input.hpp"

#include "stockmixer/data/eod.hpp"

#include <set>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string path = stockmixer_fuzz::write_input("tickers.csv", data, size);
  stockmixer_fuzz::expect_error_or_success("data::read_tickers", [&] {
    const std::vector<std::string> tickers = stockmixer::data::read_tickers(path);
    const std::set<std::string> distinct(tickers.begin(), tickers.end());
    bool ok = !tickers.empty() && distinct.size() == tickers.size();
    for (const auto& t : tickers) ok = ok && stockmixer::data::detail::ticker_problem(t).empty();
    if (!ok) {
      std::fprintf(stderr, "stockmixer fuzz: read_tickers returned an empty, repeating or unusable list\n");
      std::abort();
    }
  });
  return 0;
}
