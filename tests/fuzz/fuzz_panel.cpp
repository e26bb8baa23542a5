// tests/fuzz/fuzz_panel.cpp — a panel CSV (date,ticker,<features>) as data::read_panel reads it, then
// data::day_of_date on the calendar it returns.
//
// Input layout: byte 0 chooses how the file is read (bit 0: --features original (raw prices) instead of
// columns; bit 1: normalise max instead of causal; bits 2-3: steps 1..4; bit 4: read_panel<double>
// instead of <float>); the remaining bytes are the file <work_dir>/panel.csv. A panel that loads is
// checked against the reader's promise: as many tickers as stocks, one date per day, strictly
// ascending real YYYY-MM-DD dates, 5 features for raw prices, every value finite (Market::validate ran
// inside; this checks it ran); day_of_date finds each of the first and last dates at its own day and
// refuses (an Error) a date past the last.
#include "fuzz_input.hpp"

#include "stockmixer/data/panel.hpp"

#include <cmath>

namespace {

[[noreturn]] void broken(const char* what) {
  std::fprintf(stderr, "stockmixer fuzz: read_panel returned a panel that breaks its promise: %s\n", what);
  std::abort();
}

template <class T>
void load(const std::string& path, const stockmixer::data::PanelOptions& options) {
  using stockmixer::Index;
  stockmixer_fuzz::expect_error_or_success("data::read_panel", [&] {
    const stockmixer::data::Panel<T> p = stockmixer::data::read_panel<T>(path, options);
    const stockmixer::data::Market<T>& m = p.market;
    if (m.stocks() < 1 || static_cast<Index>(p.tickers.size()) != m.stocks() || p.tickers != m.tickers)
      broken("the tickers are not one per stock");
    if (static_cast<Index>(p.dates.size()) != m.days() || m.days() < 1) broken("the dates are not one per day");
    if (options.features == "original" && m.features() != 5) broken("raw prices without the original's 5 features");
    std::int64_t before = 0;
    for (std::size_t k = 0; k < p.dates.size(); ++k) {
      std::int64_t day = 0;
      const std::string& d = p.dates[k];
      if (!stockmixer::data::parse_iso_date(d.data(), d.data() + d.size(), day) || (k > 0 && day <= before))
        broken("a date that is not a real YYYY-MM-DD date after the one before it");
      before = day;
    }
    for (const stockmixer::Tensor<T>* t : {&m.eod, &m.mask, &m.gt, &m.price})
      for (Index i = 0; i < t->size(); ++i)
        if (!std::isfinite(t->data()[i])) broken("a value that is not finite");
    if (stockmixer::data::day_of_date(p.dates, p.dates.front(), "--first") != 0 ||
        stockmixer::data::day_of_date(p.dates, p.dates.back(), "--last") != m.days() - 1)
      broken("day_of_date does not find the first and last dates at their days");
    std::int64_t last = 0;
    stockmixer::data::parse_iso_date(p.dates.back().data(), p.dates.back().data() + p.dates.back().size(), last);
    bool refused = false;  // (past 9999-12-31 the day after is no YYYY-MM-DD date: refused too)
    try {
      stockmixer::data::day_of_date(p.dates, stockmixer::data::iso_date(last + 1), "--past");
    } catch (const stockmixer::Error&) {
      refused = true;
    }
    if (!refused) broken("day_of_date accepts a date past the last");
  });
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const unsigned flags = data[0];
  stockmixer::data::PanelOptions options;
  options.features = flags & 1u ? "original" : "columns";
  options.normalise = flags & 2u ? "max" : "causal";
  options.steps = static_cast<stockmixer::Index>(1 + ((flags >> 2) & 3u));
  const std::string path = stockmixer_fuzz::write_input("panel.csv", data + 1, size - 1);
  if (flags & 16u) load<double>(path, options);
  else load<float>(path, options);
  return 0;
}
