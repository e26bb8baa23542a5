// The panel importer (stockmixer/data/panel.hpp): one long CSV of (date, ticker, features) rows in any
// order read into the folder loader's arrays; an absent row and a -1234 row are the loader's -1234 row
// (checked against load_eod on the same data as per-ticker files); every bad input's error names the
// file and line; raw prices (--features original) against a hand computation, the warm-up dates and
// missing days inside an average; causal normalisation never reads a later day; day_of_date.
#include <stockmixer/data/eod.hpp>
#include <stockmixer/data/panel.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <sys/stat.h>

#include "testing.hpp"

using namespace stockmixer;
using namespace stockmixer::data;
using Catch::Matchers::Contains;
namespace fs = std::filesystem;

namespace {

using testing::TempDir;

template <class T>
bool same_bits(const Tensor<T>& a, const Tensor<T>& b) {
  return a.shape() == b.shape() && std::memcmp(a.data(), b.data(), sizeof(T) * static_cast<std::size_t>(a.size())) == 0;
}

template <class T>
void require_same_market(const Market<T>& a, const Market<T>& b) {
  CHECK(same_bits(a.eod, b.eod));
  CHECK(same_bits(a.mask, b.mask));
  CHECK(same_bits(a.gt, b.gt));
  CHECK(same_bits(a.price, b.price));
  CHECK(a.tickers == b.tickers);
  CHECK(a.steps == b.steps);
}

// The error read_panel raises for `text`, written to a file of its own.
std::string panel_error(const TempDir& dir, const std::string& text, const PanelOptions& options = {}) {
  const std::string path = dir.write("bad.csv", text);
  try {
    read_panel<float>(path, options);
  } catch (const Error& e) {
    return e.what();
  }
  FAIL("read_panel accepted:\n" << text);
  return "";
}

// Raw closes as a panel of raw prices: "" for an absent row, "-1234" for a missing close.
std::string raw_panel(const std::vector<std::string>& tickers, const std::vector<std::vector<std::string>>& closes,
                      Index first_day = 0) {
  std::string text = "date,ticker,open,close,volume\n";
  for (std::size_t i = 0; i < tickers.size(); ++i)
    for (std::size_t t = 0; t < closes[i].size(); ++t)
      if (!closes[i][t].empty())
        text += iso_date(19723 + first_day + static_cast<Index>(t)) + "," + tickers[i] + ",1," + closes[i][t] + ",100\n";
  return text;
}

}  // namespace

TEMPLATE_TEST_CASE("read_panel: rows in any order, dates ascending, tickers in order of first appearance",
                   "[panel]", float, double) {
  using T = TestType;
  TempDir dir;
  // Two tickers over three dates, rows shuffled; ZZZ appears first. Blank lines, CRLF, spaces, a BOM.
  const std::string path = dir.write("p.csv",
                                     "\xEF\xBB\xBF"
                                     "Date, Ticker ,f1,close\r\n"
                                     "2024-01-03,ZZZ,0.25,20\r\n"
                                     "2024-01-04,AAA,3.5,12\n"
                                     "\n"
                                     "2024-01-02, AAA ,1.5,10\n"
                                     "2024-01-02,ZZZ,0.5,25\n"
                                     "2024-01-03,AAA,2.5,11\n"
                                     "2024-01-04,ZZZ,0.75 ,24\n");
  const Panel<T> p = read_panel<T>(path, PanelOptions{});
  REQUIRE(p.tickers == std::vector<std::string>{"ZZZ", "AAA"});
  REQUIRE(p.dates == std::vector<std::string>{"2024-01-02", "2024-01-03", "2024-01-04"});
  const Market<T>& m = p.market;
  REQUIRE(m.eod.shape() == Shape{2, 3, 2});
  CHECK(m.tickers == p.tickers);
  CHECK(m.eod(0, 0, 0) == T(0.5));
  CHECK(m.eod(0, 1, 1) == T(20));
  CHECK(m.eod(1, 2, 0) == T(3.5));
  CHECK(m.price(1, 0) == T(10));
  CHECK(m.price(0, 2) == T(24));
  CHECK(m.mask(0, 0) == T(1));
  CHECK(m.gt(0, 0) == T(0));
  CHECK(m.gt(0, 1) == (T(20) - T(25)) / T(25));
  CHECK(m.gt(1, 2) == (T(12) - T(11)) / T(11));
}

TEMPLATE_TEST_CASE("read_panel: an absent row and a -1234 row are the folder loader's -1234 row, bit for bit",
                   "[panel]", float, double) {
  using T = TestType;
  TempDir dir;
  // Per-ticker files as the original's folder holds them (market NYSE: no last-row drop), steps = 2.
  // BBB misses day 1 (every cell -1234) and day 3 (close -1234, the averages present: the loader keeps
  // them); CCC misses day 0 and day 4 entirely.
  const std::vector<std::string> tickers = {"AAA", "BBB", "CCC"};
  const std::vector<std::vector<std::string>> rows = {
      {"0.1,0.2,0.9", "0.11,0.21,0.95", "0.12,0.22,0.93", "0.13,0.23,0.97", "0.14,0.24,1.0", "0.15,0.25,0.99"},
      {"0.5,0.6,0.7", "-1234,-1234,-1234", "0.52,0.62,0.75", "0.53,0.63,-1234", "0.54,0.64,0.8", "0.55,0.65,0.77"},
      {"-1234,-1234,-1234", "0.3,0.3,0.4", "0.31,0.31,0.42", "0.32,0.32,0.41", "-1234,-1234,-1234", "0.33,0.33,0.45"}};
  std::string with_rows = "date,ticker,ma5,ma10,close\n", absent = with_rows;
  for (std::size_t i = 0; i < tickers.size(); ++i) {
    std::string file;
    for (std::size_t t = 0; t < rows[i].size(); ++t) {
      file += std::to_string(t) + "," + rows[i][t] + "\n";
      const std::string line = iso_date(20000 + static_cast<Index>(t)) + "," + tickers[i] + "," + rows[i][t] + "\n";
      with_rows += line;
      if (rows[i][t] != "-1234,-1234,-1234") absent += line;  // every cell missing: the row is left out
    }
    dir.write("eod/NYSE_" + tickers[i] + "_1.csv", file);
  }
  const Market<T> folder = load_eod<T>(dir.path("eod"), "NYSE", tickers, 2);
  PanelOptions options;
  options.steps = 2;
  const Panel<T> a = read_panel<T>(dir.write("rows.csv", with_rows), options);
  const Panel<T> b = read_panel<T>(dir.write("absent.csv", absent), options);
  require_same_market(a.market, folder);
  require_same_market(b.market, folder);
  CHECK(folder.eod(1, 3, 0) == T(0.53));  // the loader keeps the features of a row whose close is missing
  CHECK(folder.mask(2, 0) == T(0));
  CHECK(folder.eod(2, 4, 1) == T(1.1));
}

TEST_CASE("read_panel: every bad input's error names the file and the line", "[panel][hostile]") {
  TempDir dir;
  const std::string head = "date,ticker,a,close\n";
  const std::string file = dir.path("bad.csv");
  auto error = [&](const std::string& text, const PanelOptions& o = {}) { return panel_error(dir, text, o); };
  CHECK_THAT(error(""), Contains(file) && Contains("the file is empty"));
  CHECK_THAT(error("\n  \n"), Contains("the file is empty"));
  CHECK_THAT(error(head), Contains(file) && Contains("no rows after the header (line 1)"));
  CHECK_THAT(error("2024-01-02,AAA,1,2\n"), Contains("line 1") && Contains("expected 'date'") && Contains("no header"));
  CHECK_THAT(error("date,symbol,a,close\n"), Contains("line 1") && Contains("expected 'ticker'"));
  CHECK_THAT(error("date,ticker\n"), Contains("no feature column"));
  CHECK_THAT(error("date,ticker,a,A\n"), Contains("columns 3 and 4 are both named 'A'"));
  // missing and extra columns
  CHECK_THAT(error(head + "2024-01-02,AAA,1,2\n2024-01-03,AAA,1\n"),
             Contains(file + ": line 3, column 4") && Contains("ends after 3 fields; expected 4"));
  CHECK_THAT(error(head + "2024-01-02,AAA\n"), Contains("line 2, column 3") && Contains("ends after 2 fields"));
  CHECK_THAT(error(head + "2024-01-02\n"), Contains("line 2, column 2") && Contains("ends after 1 fields"));
  CHECK_THAT(error(head + "2024-01-02,AAA,1,2,3\n"), Contains("line 2, column 5") && Contains("more than the 4 fields"));
  CHECK_THAT(error(head + "2024-01-02,AAA,1,2,\n"), Contains("line 2, column 5"));
  // non-numeric cells, named by column
  CHECK_THAT(error(head + "2024-01-02,AAA,1,2\n2024-01-03,AAA,x1,2\n"),
             Contains(file + ": line 3, column 3") && Contains("expected a number, got 'x1'") && Contains("(column 'a')"));
  CHECK_THAT(error(head + "2024-01-02,AAA,1,\n"), Contains("line 2, column 4") && Contains("empty cell"));
  CHECK_THAT(error(head + "2024-01-02,AAA,nan,2\n"), Contains("line 2, column 3") && Contains("NaN or Inf"));
  CHECK_THAT(error(head + "2024-01-02,AAA,1e39,2\n"), Contains("line 2, column 3") && Contains("outside the range of float"));
  CHECK_THAT(error(head + "2024-01-02,AAA,\"1\",2\n"), Contains("line 2, column 3"));
  // dates: the format and the calendar
  for (const char* bad : {"2024-02-30", "2023-02-29", "2024-13-01", "2024-00-10", "2024/01/02", "24-01-02",
                          "2024-1-2", "2024-01-02 16:00", ""})
    CHECK_THAT(error(head + "2024-01-02,AAA,1,2\n" + bad + ",AAA,1,2\n"),
               Contains(file + ": line 3, column 1") && Contains("expected a date YYYY-MM-DD") &&
                   Contains(std::string("'") + bad + "'"));
  // tickers
  CHECK_THAT(error(head + "2024-01-02,,1,2\n"), Contains("line 2, column 2") && Contains("is empty"));
  CHECK_THAT(error(head + "2024-01-02,A B,1,2\n"), Contains("line 2, column 2") && Contains("whitespace"));
  CHECK_THAT(error(head + "2024-01-02,\"AAA\",1,2\n"), Contains("line 2, column 2") && Contains("quoted"));
  // a (ticker, date) twice: both lines
  CHECK_THAT(error(head + "2024-01-02,AAA,1,2\n2024-01-03,AAA,1,2\n2024-01-02,AAA,1,3\n"),
             Contains(file + ": line 4") && Contains("'AAA' on 2024-01-02 again (line 2 has it)"));
  // a ticker with no usable row
  CHECK_THAT(error(head + "2024-01-02,AAA,1,2\n2024-01-02,BBB,1,-1234\n2024-01-03,BBB,1,-1234\n"),
             Contains(file + ": ticker 'BBB' (first row at line 3) has no usable row"));
  // a close that is not > 0
  CHECK_THAT(error(head + "2024-01-02,AAA,1,2\n2024-01-03,AAA,1,0\n"),
             Contains("line 3, column 4") && Contains("the close 0 is not > 0"));
  // raw prices: the columns they take, and enough dates for the warm-up
  PanelOptions raw;
  raw.features = "original";
  CHECK_THAT(error(head + "2024-01-02,AAA,1,2\n", raw), Contains("line 1") && Contains("column 3 is 'a'"));
  CHECK_THAT(error("date,ticker,open,volume\n2024-01-02,AAA,1,2\n", raw), Contains("need a 'close' column"));
  CHECK_THAT(error("date,ticker,close\n2024-01-02,AAA,1\n", raw),
             Contains(file) && Contains("1 dates") && Contains("need at least 30"));
  std::vector<std::string> late(40, "");  // a ticker whose only closes are in the warm-up
  for (int t = 0; t < 10; ++t) late[static_cast<std::size_t>(t)] = "5";
  std::vector<std::string> full(40, "7");
  CHECK_THAT(error(raw_panel({"AAA", "BBB"}, {full, late}), raw), Contains("ticker 'BBB'") && Contains("no usable row"));
  CHECK_THAT(error(raw_panel({"AAA"}, {std::vector<std::string>(40, "-3")}), raw), Contains("the close -3 is not > 0"));
  // bad options
  PanelOptions odd;
  odd.features = "raw";
  CHECK_THROWS_WITH(read_panel<float>(file, odd), Contains("features must be 'columns' or 'original'"));
  odd = {};
  odd.normalise = "min";
  CHECK_THROWS_WITH(read_panel<float>(file, odd), Contains("normalise must be 'causal' or 'max'"));
  odd = {};
  odd.steps = 0;
  CHECK_THROWS_WITH(read_panel<float>(file, odd), Contains("steps must be >= 1"));
}

TEST_CASE("read_panel: the file is read as the other readers read theirs", "[panel][hostile]") {
  TempDir dir;
  CHECK_THROWS_WITH(read_panel<float>(dir.path("none.csv"), {}), Contains("none.csv") && Contains("no such file"));
  CHECK_THROWS_WITH(read_panel<float>(dir.path(""), {}), Contains("a directory"));
  const std::string fifo = dir.path("p.fifo");
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  CHECK_THROWS_WITH(read_panel<float>(fifo, {}), Contains(fifo) && Contains("FIFO"));
  // A file larger than kMaxPanelBytes is refused from its size (a sparse file: nothing is written).
  const std::string huge = dir.write("huge.csv", "");
  std::error_code ec;
  fs::resize_file(huge, kMaxPanelBytes + 1, ec);
  if (!ec) CHECK_THROWS_WITH(read_panel<float>(huge, {}), Contains(huge) && Contains("more than the"));
  // A path too long for the system: an error naming it, no crash.
  std::string deep = dir.path("");
  for (int k = 0; k < 400; ++k) deep += "deep_folder/";
  CHECK_THROWS_WITH(read_panel<float>(deep + "p.csv", {}), Contains("cannot open the panel file"));
}

TEMPLATE_TEST_CASE("read_panel --features original: the original's features against a hand computation",
                   "[panel][raw]", float, double) {
  using T = TestType;
  TempDir dir;
  // AAA: close 10 + t on the 35 dates t = 0..34 (market days 0..5 are dates 29..34).
  // BBB: close 200 - t, date 27 absent, date 31 close -1234.
  std::vector<std::string> a(35), b(35);
  for (int t = 0; t < 35; ++t) {
    a[static_cast<std::size_t>(t)] = std::to_string(10 + t);
    b[static_cast<std::size_t>(t)] = std::to_string(200 - t);
  }
  b[27] = "";
  b[31] = "-1234";
  const std::string path = dir.write("raw.csv", raw_panel({"AAA", "BBB"}, {a, b}));
  for (const std::string normalise : {"causal", "max"}) {
    PanelOptions o;
    o.features = "original";
    o.normalise = normalise;
    const Panel<T> p = read_panel<T>(path, o);
    const Market<T>& m = p.market;
    REQUIRE(m.eod.shape() == Shape{2, 6, 5});
    REQUIRE(p.dates.size() == 6);
    CHECK(p.dates.front() == iso_date(19723 + 29));  // the 29 warm-up dates are not market days
    // AAA, day 0 (date 29, close 39): ma5 = mean(35..39) = 37, ma10 = mean(30..39) = 34.5,
    // ma20 = mean(20..39) = 29.5, ma30 = mean(10..39) = 24.5. Its closes only rise: the causal scale is
    // today's close, 39; the whole period's largest is 44 (date 34).
    const double sa = normalise == "causal" ? 39.0 : 44.0;
    const double want_a[5] = {37 / sa, 34.5 / sa, 29.5 / sa, 24.5 / sa, 39 / sa};
    for (int j = 0; j < 5; ++j) CHECK(m.eod(0, 0, j) == static_cast<T>(want_a[j]));
    CHECK(m.price(0, 0) == static_cast<T>(39 / sa));
    CHECK(m.eod(0, 5, 4) == T(1));  // date 34: the largest close either way
    // gt: the raw closes' return, whatever the scale.
    CHECK(m.gt(0, 1) == static_cast<T>((40.0 - 39.0) / 39.0));
    CHECK(m.gt(0, 0) == T(0));
    // BBB, day 1 (date 30, close 170): its 5 dates 26..30 hold 4 closes (27 is absent): ma5 =
    // (174 + 172 + 171 + 170) / 4; ma30 over dates 1..30 without 27 = 29 closes. Causal scale: 200 (date
    // 0, in the warm-up); the largest over the market's days: 171 (date 29).
    const double sb = normalise == "causal" ? 200.0 : 171.0;
    double ma30 = 0;
    for (int u = 1; u <= 30; ++u)
      if (u != 27) ma30 += 200 - u;
    CHECK(m.eod(1, 1, 0) == static_cast<T>((174.0 + 172 + 171 + 170) / 4 / sb));
    CHECK(m.eod(1, 1, 3) == static_cast<T>(ma30 / 29 / sb));
    CHECK(m.eod(1, 1, 4) == static_cast<T>(170 / sb));
    // Day 2 (date 31) is missing: a -1234 row (mask 0, 1.1 in every cell, gt 0).
    CHECK(m.mask(1, 2) == T(0));
    for (int j = 0; j < 5; ++j) CHECK(m.eod(1, 2, j) == T(1.1));
    CHECK(m.gt(1, 2) == T(0));
    // Day 3 (date 32): after the missing day, ma5 over dates 28..32 holds 4 closes.
    CHECK(m.eod(1, 3, 0) == static_cast<T>((172.0 + 171 + 170 + 168) / 4 / sb));
    CHECK(m.gt(1, 4) == static_cast<T>((167.0 - 168.0) / 168.0));
    CHECK(m.mask(1, 4) == T(1));
  }
}

TEST_CASE("read_panel: causal normalisation never reads a later day, max does", "[panel][raw]") {
  TempDir dir;
  std::mt19937_64 rng(16);
  std::normal_distribution<double> step(0.0, 0.02);
  const std::vector<std::string> tickers = {"A1", "B2", "C3", "D4"};
  std::vector<std::vector<std::string>> closes(tickers.size(), std::vector<std::string>(90));
  for (auto& c : closes) {
    double price = 50;
    for (auto& cell : c) {
      price *= std::exp(step(rng));
      char text[32];
      std::snprintf(text, sizeof text, "%.4f", price);
      cell = text;
    }
  }
  closes[1][40] = "";  // a few missing days
  closes[2][55] = "-1234";
  const Index changed = 70;  // date 70: market day 41
  std::vector<std::vector<std::string>> later = closes;
  later[0][changed] = "1000";  // a new high far above every earlier close
  later[3][changed + 5] = "";  // and an absent row after it
  for (const std::string normalise : {"causal", "max"}) {
    PanelOptions o;
    o.features = "original";
    o.normalise = normalise;
    const Panel<double> p = read_panel<double>(dir.write("a.csv", raw_panel(tickers, closes)), o);
    const Panel<double> q = read_panel<double>(dir.write("b.csv", raw_panel(tickers, later)), o);
    const Index days = p.market.days(), first_changed = changed - kOriginalWarmup;
    REQUIRE(days == 61);
    REQUIRE(q.market.days() == days);
    bool earlier_same = true, later_differs = false;
    for (Index i = 0; i < 4; ++i)
      for (Index t = 0; t < days; ++t) {
        bool same = p.market.mask(i, t) == q.market.mask(i, t) && p.market.gt(i, t) == q.market.gt(i, t) &&
                    p.market.price(i, t) == q.market.price(i, t);
        for (Index j = 0; j < 5; ++j) same = same && p.market.eod(i, t, j) == q.market.eod(i, t, j);
        if (t < first_changed) earlier_same = earlier_same && same;
        else later_differs = later_differs || !same;
      }
    CHECK(later_differs);
    if (normalise == "causal") CHECK(earlier_same);
    else CHECK_FALSE(earlier_same);  // the whole period's largest close looks ahead
  }
}

TEST_CASE("parse_iso_date, iso_date and day_of_date", "[panel][dates]") {
  std::int64_t day = -1;
  const std::string epoch = "1970-01-01", leap = "2016-02-29", y2k = "2000-03-01";
  REQUIRE(parse_iso_date(epoch.data(), epoch.data() + 10, day));
  CHECK(day == 0);
  REQUIRE(parse_iso_date(y2k.data(), y2k.data() + 10, day));
  CHECK(day == 11017);
  REQUIRE(parse_iso_date(leap.data(), leap.data() + 10, day));
  CHECK(iso_date(day) == leap);
  // Every day from 1900 to 2100 round-trips, and consecutive days are consecutive numbers.
  const std::string from = "1900-01-01";
  REQUIRE(parse_iso_date(from.data(), from.data() + 10, day));
  for (std::int64_t d = day; d < day + 200 * 366; ++d) {
    const std::string text = iso_date(d);
    std::int64_t back = 0;
    REQUIRE(parse_iso_date(text.data(), text.data() + text.size(), back));
    REQUIRE(back == d);
  }
  for (const std::string bad : {"1900-02-29", "2100-02-29", "2023-04-31", "2023-4-30", "20230430", "2023-04-3x"})
    CHECK_FALSE(parse_iso_date(bad.data(), bad.data() + bad.size(), day));

  // A calendar with a weekend gap, NASDAQ-style entries (a time after the date).
  const std::vector<std::string> dates = {"2024-01-04 16:00:00", "2024-01-05 16:00:00", "2024-01-08 16:00:00",
                                          "2024-01-09 16:00:00"};
  CHECK(day_of_date(dates, "2024-01-04", "--valid-start") == 0);
  CHECK(day_of_date(dates, "2024-01-06", "--valid-start") == 2);  // a Saturday: the next trading day
  CHECK(day_of_date(dates, "2024-01-09", "--test-start") == 3);
  CHECK_THROWS_WITH(day_of_date(dates, "2024-01-10", "--test-start"),
                    Contains("--test-start 2024-01-10 is after the market's last date, 2024-01-09"));
  CHECK_THROWS_WITH(day_of_date(dates, "2024-01-03", "--valid-start"),
                    Contains("--valid-start 2024-01-03 is before the market's first date, 2024-01-04"));
  CHECK_THROWS_WITH(day_of_date(dates, "2024-02-30", "--valid-start"),
                    Contains("--valid-start '2024-02-30' is not a date"));
  CHECK_THROWS_WITH(day_of_date({}, "2024-01-04", "--test-start"), Contains("--test-start") && Contains("no dates"));
}
