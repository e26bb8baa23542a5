// tests/fuzz/fuzz_dates.cpp — data::read_trading_dates on any bytes as the trading-dates list, then
// data::date_of_row for rows around both ends of the list (each an Error or a date of the list).
#include "fuzz_input.hpp"

#include "stockmixer/data/eod.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string path = stockmixer_fuzz::write_input("dates.csv", data, size);
  stockmixer_fuzz::expect_error_or_success("data::read_trading_dates", [&] {
    const std::vector<std::string> dates = stockmixer::data::read_trading_dates(path);
    if (dates.empty() || dates.back().empty()) {
      std::fprintf(stderr, "stockmixer fuzz: read_trading_dates returned an empty list or a blank last date\n");
      std::abort();
    }
    const auto n = static_cast<stockmixer::Index>(dates.size());
    for (const stockmixer::Index row : {stockmixer::Index(-1), stockmixer::Index(0), n - 30, n - 29, n})
      stockmixer_fuzz::expect_error_or_success("data::date_of_row",
                                               [&] { (void)stockmixer::data::date_of_row(dates, row); });
  });
  return 0;
}
