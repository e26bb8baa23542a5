// stockmixer/data/panel.hpp — a market of one's own from one long CSV table (a "panel"): one row per
// (date, ticker), the features in columns; and the day of a date in a market's calendar.
//
// The file (read_panel; docs/own_market.md is the user's page):
//   date,ticker,<C feature columns>          the header (names matched without regard to case)
//   2024-01-02,AAA,1.5,2.5,...               one row per (date, ticker), in any order
//   Dates are ISO YYYY-MM-DD and real calendar dates; the market's calendar is the panel's own dates,
//   ascending (a date with no row at all is no trading day); tickers come in order of first appearance.
//   Cells are separated by ',', spaces and tabs around a cell are ignored, blank lines skipped, "\r\n"
//   line ends and a UTF-8 byte order mark accepted; quoted cells are not (no cell of a panel needs one).
//   Numbers are read as the EOD files' are (detail::scan_number: the correctly rounded double, then
//   cast to T), so the same text gives the same bits here and in load_eod.
//
// PanelOptions::features == "columns": the C columns are the features as given, the last one the close
//   that returns are computed from (as in the original's files). Every stock's rows, in date order,
//   go through ingest_eod_rows (market.hpp), the folder loader's own per-row loop: a row whose close is
//   -1234 and an absent (ticker, date) row (read as a row of -1234 in every column) are both what the
//   original's loader makes of a -1234 row (mask 0, every -1234 cell 1.1, gt 0 there and the 1.1 quirk
//   after it). So the original's files exported to a panel (tests/check_panel.py) re-import to eod,
//   mask, gt and price identical bit for bit to load_market_dir's.
//
// PanelOptions::features == "original": raw end-of-day prices. The header holds a `close` column and
//   may hold open, high, low and volume (read and checked as numbers, not used: the original's
//   features are built from the close alone). From each stock's closes c[t] over the panel's dates:
//     ma_k[t] = mean of the present closes among the dates t-k+1 .. t   (k = 5, 10, 20, 30)
//     features[t] = (ma5, ma10, ma20, ma30, close) / scale[t]           (C = 5, the original's order)
//   as the original's files hold them (their ma5 is the mean of the file's last 5 closes). Decisions:
//   - Warm-up: the first kOriginalWarmup = 29 dates are consumed by the 30-day average and are not
//     days of the market (as the original's dates file holds 29 dates before a file's first row): the
//     market's day 0 is the panel's 30th date, and every average there spans 30 dates.
//   - Missing days inside an average (an absent row or a close of -1234) are left out of it: ma_k is
//     the mean of the closes present in its k dates (always >= 1: a day's features exist only when its
//     own close does). A stock that starts trading late thus has shorter averages on its first days.
//   - A day whose close is missing is a -1234 row (every feature missing: mask 0, 1.1 everywhere).
//   - scale[t] with normalise == "max": the stock's largest close over the market's days (the
//     original's normalisation, by which the files' closes lie in (0, 1]; it looks ahead: day t's
//     features depend on closes after t). With normalise == "causal" (the default for own data):
//     the stock's largest close over the dates up to and including t (the warm-up's included), so
//     changing a later close never changes an earlier day's features.
//   - gt is the true return of the raw closes, (c[t] - c[t-steps]) / c[t-steps], computed in double
//     and cast to T, in both modes: with a causal scale that changes on a new high, the normalised
//     closes' ratio would not be the return. (Where c[t-steps] is missing gt keeps the loader's 1.1
//     quirk value; no window reads it unmasked.)
//   - price (the loss's base) is the day's own normalised close, the last feature of that day's row:
//     the model's prediction is a price in the units of the last day of its window, so
//     (pred - base) / base is a predicted return in the same units, compared with gt, a raw return.
//
// Errors (stockmixer::Error; each names the file and the 1-based line, and for a cell its column):
//   an empty file; a header that is not date,ticker,<features> (or, for "original", lacks close or
//   holds a column other than open, high, low, close, volume; or repeats a name); a row with fewer or
//   more fields than the header; a date that is not YYYY-MM-DD or not a real date; an empty ticker or
//   one with whitespace, a control character, '/', '\\' or '"'; a cell that is not a finite number
//   (an empty cell too) or outside T's range; a close that is present and not > 0; a (ticker, date)
//   given twice (both lines); a ticker with no usable row (every close -1234, or for "original" none
//   in the market's days); for "original", fewer than 30 dates. The file is read as the other readers
//   read theirs (io::read_regular_file): a regular file of at most kMaxPanelBytes, a FIFO, a device or
//   a folder refused by name before it is opened; a market larger than the machine's memory is
//   refused from its size before it is allocated. The result passes Market::validate.
//
// day_of_date(dates, iso, option): the first day whose date is on or after `iso` (the day a period
//   starting on `iso` starts on). Each entry of `dates` starts with its YYYY-MM-DD (the NASDAQ dates
//   file's carry a time after it); they are ascending. Error naming `option` when iso is not a real
//   YYYY-MM-DD date, when `dates` is empty (a market without dates), or when iso is before the first
//   date or after the last.
//
// tests: tests/test_panel.cpp, tests/check_panel.py; fuzzing: tests/fuzz/fuzz_panel.cpp
#pragma once

#include "stockmixer/common.hpp"
#include "stockmixer/data/eod.hpp"
#include "stockmixer/data/market.hpp"
#include "stockmixer/io/input.hpp"
#include "stockmixer/memory.hpp"
#include "stockmixer/tensor.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

namespace stockmixer::data {

// ---- interface -------------------------------------------------------------------------------------

struct PanelOptions {
  std::string features = "columns";  // "columns": the C feature columns as given; "original": raw prices
                                     // (close, optionally open high low volume) -> the original's 5 features
  std::string normalise = "causal";  // with "original": "causal" or "max" (each stock's largest close over
                                     // the whole period: looks ahead)
  Index steps = 1;                   // the return horizon of gt

  // Error naming the field when features or normalise is none of the above or steps < 1.
  void validate() const;
};

template <class T>
struct Panel {
  Market<T> market;
  std::vector<std::string> tickers, dates;  // stock i's ticker; day d's date (YYYY-MM-DD)
};

constexpr Index kOriginalWarmup = 29;                          // dates the 30-day average consumes first
constexpr std::uint64_t kMaxPanelBytes = std::uint64_t(16) << 30;  // 16 GiB: the largest panel file read

// The market of the panel file at csv_path (format, decisions and errors in the header comment).
template <class T>
Panel<T> read_panel(const std::string& csv_path, const PanelOptions& options);

// The same from text in memory; `source` names it in errors (a path, "<stdin>").
template <class T>
Panel<T> parse_panel(const std::string& source, const char* begin, const char* end, const PanelOptions& options);

Index day_of_date(const std::vector<std::string>& dates, const std::string& iso, const std::string& option);

// [begin, end) is exactly a real calendar date YYYY-MM-DD: true, and `day` its day number (days since
// 1970-01-01, proleptic Gregorian). iso_date is its inverse.
bool parse_iso_date(const char* begin, const char* end, std::int64_t& day);
std::string iso_date(std::int64_t day);

// ---- implementation --------------------------------------------------------------------------------

inline void PanelOptions::validate() const {
  if (features != "columns" && features != "original")
    throw Error("stockmixer::data::PanelOptions: features must be 'columns' or 'original', got '" +
                detail::escaped(features) + "'");
  if (normalise != "causal" && normalise != "max")
    throw Error("stockmixer::data::PanelOptions: normalise must be 'causal' or 'max', got '" +
                detail::escaped(normalise) + "'");
  if (steps < 1) throw Error("stockmixer::data::PanelOptions: steps must be >= 1, got " + std::to_string(steps));
}

inline bool parse_iso_date(const char* begin, const char* end, std::int64_t& day) {
  if (end - begin != 10 || begin[4] != '-' || begin[7] != '-') return false;
  auto digits = [&](int from, int count, int& out) {
    out = 0;
    for (int k = from; k < from + count; ++k) {
      if (begin[k] < '0' || begin[k] > '9') return false;
      out = out * 10 + (begin[k] - '0');
    }
    return true;
  };
  int y = 0, m = 0, d = 0;
  if (!digits(0, 4, y) || !digits(5, 2, m) || !digits(8, 2, d)) return false;
  const bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  static constexpr int kDays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (m < 1 || m > 12 || d < 1 || d > kDays[m - 1] + (m == 2 && leap ? 1 : 0)) return false;
  // days_from_civil (H. Hinnant): March-based years, so that the leap day ends a year.
  const std::int64_t yy = y - (m <= 2 ? 1 : 0);
  const std::int64_t era = (yy >= 0 ? yy : yy - 399) / 400;
  const std::int64_t yoe = yy - era * 400;                               // [0, 399]
  const std::int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;  // [0, 365]
  const std::int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;        // [0, 146096]
  day = era * 146097 + doe - 719468;
  return true;
}

inline std::string iso_date(std::int64_t day) {
  // civil_from_days (H. Hinnant)
  const std::int64_t z = day + 719468;
  const std::int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const std::int64_t doe = z - era * 146097;
  const std::int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const std::int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const std::int64_t mp = (5 * doy + 2) / 153;
  const std::int64_t d = doy - (153 * mp + 2) / 5 + 1;
  const std::int64_t m = mp < 10 ? mp + 3 : mp - 9;
  const std::int64_t y = yoe + era * 400 + (m <= 2 ? 1 : 0);
  char text[80];  // room for any long long, though a day of parse_iso_date's gives exactly 10 characters
  std::snprintf(text, sizeof text, "%04lld-%02lld-%02lld", static_cast<long long>(y), static_cast<long long>(m),
                static_cast<long long>(d));
  return text;
}

inline Index day_of_date(const std::vector<std::string>& dates, const std::string& iso, const std::string& option) {
  std::int64_t want = 0;
  if (!parse_iso_date(iso.data(), iso.data() + iso.size(), want))
    throw Error(option + " '" + detail::escaped(iso) + "' is not a date: expected YYYY-MM-DD, a real calendar date");
  if (dates.empty())
    throw Error(option + " " + iso + ": this market has no dates (the synthetic market and SP500.npy have none): "
                "give the day's index instead");
  auto day_of = [&](std::size_t k) {
    std::int64_t d = 0;
    const std::string& s = dates[k];
    if (s.size() < 10 || !parse_iso_date(s.data(), s.data() + 10, d))
      throw Error(option + " " + iso + ": the market's date " + std::to_string(k) + " ('" + detail::escaped(s) +
                  "') does not start with a YYYY-MM-DD date");
    return d;
  };
  if (want < day_of(0))
    throw Error(option + " " + iso + " is before the market's first date, " + dates.front().substr(0, 10) + " (its " +
                std::to_string(dates.size()) + " days run to " + dates.back().substr(0, 10) + ")");
  for (std::size_t k = 0; k < dates.size(); ++k)
    if (day_of(k) >= want) return static_cast<Index>(k);
  throw Error(option + " " + iso + " is after the market's last date, " + dates.back().substr(0, 10) + " (its " +
              std::to_string(dates.size()) + " days start on " + dates.front().substr(0, 10) + ")");
}

namespace detail {

// The original's feature columns, built from the close: moving averages over these many dates.
constexpr Index kOriginalWindows[4] = {5, 10, 20, 30};

inline std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

inline std::string_view trimmed_view(const char* a, const char* b) {
  while (a < b && csv_blank(*a)) ++a;
  while (b > a && csv_blank(b[-1])) --b;
  return std::string_view(a, static_cast<std::size_t>(b - a));
}

// The cells of a header line, trimmed.
inline std::vector<std::string> header_cells(const char* p, const char* le) {
  std::vector<std::string> cells;
  for (;;) {
    const char* e = static_cast<const char*>(std::memchr(p, ',', static_cast<std::size_t>(le - p)));
    if (!e) e = le;
    cells.emplace_back(trimmed_view(p, e));
    if (e == le) break;
    p = e + 1;
  }
  return cells;
}

// What the rows of a panel hold, before they are placed on the calendar.
struct PanelRows {
  std::vector<std::int32_t> day;     // [R] the row's date, as a day number
  std::vector<std::int32_t> stock;   // [R] the row's ticker, in order of first appearance
  std::vector<Index> line;           // [R] its 1-based line in the file
  std::vector<double> values;        // [R, K] the kept columns (all C, or the close alone)
  std::vector<std::string> tickers;  // [N]
  std::vector<Index> first_line;     // [N] each ticker's first line
  Index header_line = 0;
};

template <class T>
PanelRows parse_panel_rows(const std::string& source, const char* begin, const char* end, bool original,
                           std::vector<std::string>& feature_names, Index& close_column) {
  PanelRows out;
  if (end - begin >= 3 && std::memcmp(begin, "\xEF\xBB\xBF", 3) == 0) begin += 3;  // a UTF-8 byte order mark
  // The header: the first line that is not blank.
  const char* p = begin;
  Index line = 0;
  std::vector<std::string> header;
  while (p < end) {
    ++line;
    const char* nl = static_cast<const char*>(std::memchr(p, '\n', static_cast<std::size_t>(end - p)));
    const char* le = nl ? nl : end;
    const char* next = nl ? nl + 1 : end;
    if (le > p && le[-1] == '\r') --le;
    if (!trimmed_view(p, le).empty()) {
      header = header_cells(p, le);
      p = next;
      break;
    }
    p = next;
  }
  const std::string at_header = source + ": line " + std::to_string(line) + " (the header): ";
  if (header.empty())
    throw Error(source + ": the file is empty (expected a header line date,ticker,<feature columns> and one row "
                "per (date, ticker))");
  out.header_line = line;
  std::int64_t unused = 0;
  if (lower(header[0]) != "date") {
    const bool data_row = parse_iso_date(header[0].data(), header[0].data() + header[0].size(), unused);
    throw Error(at_header + "the first column is '" + escaped(header[0]) + "', expected 'date' (the header is " +
                "date,ticker,<feature columns>" + (data_row ? "; the file seems to have no header line)" : ")"));
  }
  if (header.size() < 2 || lower(header[1]) != "ticker")
    throw Error(at_header + "the second column is '" + (header.size() < 2 ? std::string() : escaped(header[1])) +
                "', expected 'ticker' (the header is date,ticker,<feature columns>)");
  if (header.size() < 3)
    throw Error(at_header + "no feature column after date,ticker (the last feature column is the close)");
  feature_names.assign(header.begin() + 2, header.end());
  const Index c = static_cast<Index>(feature_names.size());
  for (Index j = 0; j < c; ++j) {
    const std::string& name = feature_names[static_cast<std::size_t>(j)];
    if (name.empty()) throw Error(at_header + "column " + std::to_string(j + 3) + " has no name");
    for (Index k = 0; k < j; ++k)
      if (lower(feature_names[static_cast<std::size_t>(k)]) == lower(name))
        throw Error(at_header + "columns " + std::to_string(k + 3) + " and " + std::to_string(j + 3) +
                    " are both named '" + escaped(name) + "'");
  }
  close_column = c - 1;
  if (original) {
    close_column = -1;
    for (Index j = 0; j < c; ++j) {
      const std::string name = lower(feature_names[static_cast<std::size_t>(j)]);
      if (name == "close") close_column = j;
      else if (name != "open" && name != "high" && name != "low" && name != "volume")
        throw Error(at_header + "column " + std::to_string(j + 3) + " is '" + escaped(feature_names[static_cast<std::size_t>(j)]) +
                    "'; raw prices (--features original) take close and optionally open, high, low, volume");
    }
    if (close_column < 0)
      throw Error(at_header + "raw prices (--features original) need a 'close' column (optionally open, high, low, "
                  "volume too)");
  }
  const Index kept = original ? 1 : c;  // values kept per row
  const Index fields = 2 + c;

  // Room for every row, asked for once: at most one per line left.
  const auto lines_left = static_cast<std::uint64_t>(std::count(p, end, '\n')) + 1;
  auto what = [&] {
    return source + ": the rows of a " + io::byte_size(static_cast<std::uint64_t>(end - begin)) + " panel";
  };
  const std::uint64_t row_bytes =
      bytes_of(lines_left, 2 * sizeof(std::int32_t) + sizeof(Index) + sizeof(double) * static_cast<std::uint64_t>(kept));
  const std::string too_large = memory_problem(static_cast<double>(row_bytes), what());
  if (!too_large.empty()) throw Error(too_large);
  allocating(what, row_bytes, [&] {
               out.day.reserve(static_cast<std::size_t>(lines_left));
               out.stock.reserve(static_cast<std::size_t>(lines_left));
               out.line.reserve(static_cast<std::size_t>(lines_left));
               out.values.reserve(static_cast<std::size_t>(lines_left * static_cast<std::uint64_t>(kept)));
             });
  std::unordered_map<std::string_view, std::int32_t> stock_of;
  const char* const kType = std::is_same_v<T, float> ? "float" : "double";
  for (; p < end;) {
    ++line;
    const char* nl = static_cast<const char*>(std::memchr(p, '\n', static_cast<std::size_t>(end - p)));
    const char* le = nl ? nl : end;
    const char* next = nl ? nl + 1 : end;
    if (le > p && le[-1] == '\r') --le;
    if (trimmed_view(p, le).empty()) {  // a blank line
      p = next;
      continue;
    }
    auto ends_early = [&](Index got) {
      throw Error(at_cell(source, line, got + 1) + "the row ends after " + std::to_string(got) + " fields; expected " +
                  std::to_string(fields) + " as in the header (line " + std::to_string(out.header_line) + ")");
    };
    // date
    const char* e = static_cast<const char*>(std::memchr(p, ',', static_cast<std::size_t>(le - p)));
    const std::string_view date = trimmed_view(p, e ? e : le);
    std::int64_t day = 0;
    if (!parse_iso_date(date.data(), date.data() + date.size(), day)) {
      std::string text(date.substr(0, 40));
      throw Error(at_cell(source, line, 1) + "expected a date YYYY-MM-DD (a real calendar date), got '" + escaped(text) +
                  "'");
    }
    if (!e) ends_early(1);
    // ticker
    const char* q = e + 1;
    e = static_cast<const char*>(std::memchr(q, ',', static_cast<std::size_t>(le - q)));
    const std::string_view ticker = trimmed_view(q, e ? e : le);
    std::string problem = ticker_problem(std::string(ticker));
    if (problem.empty() && ticker.find('"') != std::string_view::npos) problem = "contains '\"' (quoted cells are not read)";
    if (!problem.empty())
      throw Error(at_cell(source, line, 2) + "ticker '" + escaped(std::string(ticker.substr(0, 40))) + "' " + problem);
    if (!e) ends_early(2);
    q = e + 1;
    // the features
    for (Index col = 3; col <= fields; ++col) {
      while (q < le && csv_blank(*q)) ++q;
      const char* cell = q;
      double v = 0.0;
      const char* after = scan_number(q, le, v);
      if (after) {
        q = after;
        while (q < le && csv_blank(*q)) ++q;
      }
      if (!after || (q < le && *q != ',')) {
        try {
          bad_cell(source, line, col, cell, le);
        } catch (const Error& err) {
          throw Error(std::string(err.what()) + " (column '" +
                      escaped(feature_names[static_cast<std::size_t>(col - 3)]) + "')");
        }
      }
      const bool used = !original || col - 3 == close_column;
      if (!std::isfinite(v) || (used && !original && std::abs(v) > static_cast<double>(std::numeric_limits<T>::max())))
        throw Error(at_cell(source, line, col) + "'" + escaped(std::string(trimmed_view(cell, q))) +
                    (std::isfinite(v) ? std::string("' is outside the range of ") + kType : "' is not finite"));
      if (used) out.values.push_back(v);
      if (col < fields) {
        if (q == le) ends_early(col);
        ++q;  // the ','
      } else if (q < le) {
        throw Error(at_cell(source, line, col + 1) + "the row has more than the " + std::to_string(fields) +
                    " fields of the header (line " + std::to_string(out.header_line) + ")");
      }
    }
    const auto [it, fresh] = stock_of.emplace(ticker, static_cast<std::int32_t>(out.tickers.size()));
    if (fresh) {
      out.tickers.emplace_back(ticker);
      out.first_line.push_back(line);
    }
    out.day.push_back(static_cast<std::int32_t>(day));  // within +-4 million: a 4-digit year
    out.stock.push_back(it->second);
    out.line.push_back(line);
    p = next;
  }
  if (out.line.empty())
    throw Error(source + ": no rows after the header (line " + std::to_string(out.header_line) +
                "): expected one row per (date, ticker)");
  return out;
}

}  // namespace detail

template <class T>
Panel<T> read_panel(const std::string& csv_path, const PanelOptions& options) {
  options.validate();
  const std::string text = io::read_regular_file(csv_path, "panel file", kMaxPanelBytes);
  return parse_panel<T>(csv_path, text.data(), text.data() + text.size(), options);
}

template <class T>
Panel<T> parse_panel(const std::string& source, const char* begin, const char* end, const PanelOptions& options) {
  options.validate();
  const bool original = options.features == "original";
  std::vector<std::string> names;
  Index close_column = 0;
  detail::PanelRows rows = detail::parse_panel_rows<T>(source, begin, end, original, names, close_column);
  const Index kept = original ? 1 : static_cast<Index>(names.size());
  const Index close_at = original ? 0 : kept - 1;  // the close among the kept values
  const auto r_count = static_cast<Index>(rows.line.size());
  auto value = [&](Index r, Index j) { return rows.values[static_cast<std::size_t>(r * kept + j)]; };

  // The calendar: the panel's dates, ascending.
  std::vector<std::int32_t> calendar(rows.day);
  std::sort(calendar.begin(), calendar.end());
  calendar.erase(std::unique(calendar.begin(), calendar.end()), calendar.end());
  const auto n = static_cast<Index>(rows.tickers.size()), d_all = static_cast<Index>(calendar.size());
  const Index skip = original ? kOriginalWarmup : 0;  // the warm-up dates, not days of the market
  if (d_all <= skip)
    throw Error(source + ": " + std::to_string(d_all) + " dates; raw prices (--features original) need at least " +
                std::to_string(skip + 1) + ": the 30-day average consumes the first " + std::to_string(skip) +
                " (docs/own_market.md)");
  const Index d = d_all - skip, c = original ? 5 : kept;

  // Every (stock, date)'s row, -1 where there is none: [N, D_all]. Its memory and the market's, checked
  // against the machine's before either is allocated (a sparse panel of many tickers and dates is small
  // as a file and large as a market).
  const double cells = static_cast<double>(n) * static_cast<double>(d_all);
  const std::string too_large =
      memory_problem(cells * (sizeof(Index) + static_cast<double>(c + 3) * sizeof(T)),
                     "the market of " + source + " (" + std::to_string(n) + " tickers over " + std::to_string(d_all) +
                         " dates, " + std::to_string(c) + " features)");
  if (!too_large.empty()) throw Error(too_large);
  std::vector<Index> grid = detail::allocating(
      [&] { return source + ": the [" + std::to_string(n) + ", " + std::to_string(d_all) + "] table of rows"; },
      detail::bytes_of(static_cast<std::uint64_t>(n) * static_cast<std::uint64_t>(d_all), sizeof(Index)),
      [&] { return std::vector<Index>(static_cast<std::size_t>(n * d_all), Index(-1)); });
  for (Index r = 0; r < r_count; ++r) {
    const auto t = static_cast<Index>(std::lower_bound(calendar.begin(), calendar.end(), rows.day[static_cast<std::size_t>(r)]) -
                                      calendar.begin());
    const Index i = rows.stock[static_cast<std::size_t>(r)];
    Index& cell = grid[static_cast<std::size_t>(i * d_all + t)];
    if (cell >= 0)
      throw Error(source + ": line " + std::to_string(rows.line[static_cast<std::size_t>(r)]) + ": ticker '" +
                  detail::escaped(rows.tickers[static_cast<std::size_t>(i)]) + "' on " + iso_date(calendar[static_cast<std::size_t>(t)]) +
                  " again (line " + std::to_string(rows.line[static_cast<std::size_t>(cell)]) +
                  " has it): one row per (date, ticker)");
    cell = r;
  }
  // A close that is present must be > 0: gt and the loss divide by it (-1234 marks a missing one).
  for (Index r = 0; r < r_count; ++r) {
    const double close = value(r, close_at);
    // (as the folder loader: the value as T, where a tiny close rounds to 0; raw closes are used in double)
    const double as_read = original ? close : static_cast<double>(static_cast<T>(close));
    if (!detail::is_missing(as_read) && !(as_read > 0.0))
      throw Error(detail::at_cell(source, rows.line[static_cast<std::size_t>(r)], 3 + (original ? close_column : kept - 1)) +
                  "the close " + detail::value_str(close) +
                  " is not > 0 (gt and the loss divide by it; -1234 marks a missing value)");
  }

  Panel<T> panel;
  Market<T> m = detail::zero_market<T>(n, d, c, options.steps, "stockmixer::data::read_panel");
  std::vector<T> buffer = detail::allocating(
      [&] { return source + ": one stock's rows [" + std::to_string(d) + ", " + std::to_string(c + 1) + "]"; },
      detail::bytes_of(static_cast<std::uint64_t>(d * (c + 1)), sizeof(T)),
      [&] { return std::vector<T>(static_cast<std::size_t>(d * (c + 1))); });
  std::vector<double> close(static_cast<std::size_t>(original ? d_all : 0));
  const T missing = static_cast<T>(detail::kMissing);
  for (Index i = 0; i < n; ++i) {
    const Index* row_of = &grid[static_cast<std::size_t>(i * d_all)];
    auto no_usable_row = [&](const std::string& why) {
      throw Error(source + ": ticker '" + detail::escaped(rows.tickers[static_cast<std::size_t>(i)]) +
                  "' (first row at line " + std::to_string(rows.first_line[static_cast<std::size_t>(i)]) +
                  ") has no usable row: " + why);
    };
    if (!original) {
      // The folder loader's rows [D, 1 + C]: the day index, then the features; an absent row is -1234 throughout.
      bool usable = false;
      for (Index t = 0; t < d; ++t) {
        T* out = &buffer[static_cast<std::size_t>(t * (c + 1))];
        out[0] = static_cast<T>(t);
        const Index r = row_of[t];
        for (Index j = 0; j < c; ++j) out[1 + j] = r < 0 ? missing : static_cast<T>(value(r, j));
        usable = usable || !detail::is_missing(static_cast<double>(out[c]));
      }
      if (!usable) no_usable_row("its close (the last column) is -1234 on every one of its rows");
      ingest_eod_rows(m, i, buffer.data());
      continue;
    }
    // Raw prices: the closes over every date (NaN where missing), then the features of each market day.
    for (Index t = 0; t < d_all; ++t) {
      const Index r = row_of[t];
      close[static_cast<std::size_t>(t)] =
          r < 0 || detail::is_missing(static_cast<double>(static_cast<T>(value(r, 0)))) ? std::nan("") : value(r, 0);
    }
    auto present = [&](Index t) { return !std::isnan(close[static_cast<std::size_t>(t)]); };
    double whole_max = 0.0;  // the largest close over the market's days
    for (Index t = skip; t < d_all; ++t)
      if (present(t)) whole_max = std::max(whole_max, close[static_cast<std::size_t>(t)]);
    if (whole_max == 0.0)
      no_usable_row("no close is present on the market's days (the dates after the first " + std::to_string(skip) +
                    ", which the 30-day average consumes)");
    double running_max = 0.0;  // the largest close over the dates up to t
    for (Index t = 0; t < skip; ++t)
      if (present(t)) running_max = std::max(running_max, close[static_cast<std::size_t>(t)]);
    for (Index t = skip; t < d_all; ++t) {
      T* out = &buffer[static_cast<std::size_t>((t - skip) * (c + 1))];
      out[0] = static_cast<T>(t - skip);
      if (!present(t)) {
        for (Index j = 1; j <= c; ++j) out[j] = missing;
        continue;
      }
      const double today = close[static_cast<std::size_t>(t)];
      running_max = std::max(running_max, today);
      const double scale = options.normalise == "max" ? whole_max : running_max;
      for (Index j = 0; j < 4; ++j) {
        double sum = 0.0;
        Index count = 0;
        for (Index u = t - detail::kOriginalWindows[j] + 1; u <= t; ++u)
          if (present(u)) {
            sum += close[static_cast<std::size_t>(u)];
            ++count;
          }
        out[1 + j] = static_cast<T>(sum / static_cast<double>(count) / scale);
      }
      out[5] = static_cast<T>(today / scale);
    }
    ingest_eod_rows(m, i, buffer.data());
    // gt: the raw closes' return (the normalised closes' ratio is not one when the scale moves).
    for (Index t = skip + options.steps; t < d_all; ++t)
      if (present(t) && present(t - options.steps)) {
        const double before = close[static_cast<std::size_t>(t - options.steps)];
        m.gt(i, t - skip) = static_cast<T>((close[static_cast<std::size_t>(t)] - before) / before);
      }
  }
  m.tickers = rows.tickers;
  m.validate(source);
  check_has_data(m, source);
  panel.market = std::move(m);
  panel.tickers = std::move(rows.tickers);
  panel.dates.reserve(static_cast<std::size_t>(d));
  for (Index t = skip; t < d_all; ++t) panel.dates.push_back(iso_date(calendar[static_cast<std::size_t>(t)]));
  return panel;
}

}  // namespace stockmixer::data
