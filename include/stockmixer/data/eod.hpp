// stockmixer/data/eod.hpp — the original's data loaders (SPEC §5): end-of-day CSV files, the ticker
// and trading-date lists, the S&P 500 .npy variant, the relation matrices and the SFM price matrix.
//
// Every function matches one piece of the original code (src/load_data.py and the SP500 branch of
// src/train.py, as printed in the StockMixer article), value for value; where it deliberately does
// less or more, the line "Differs:" says so. Values are parsed as double and then cast to T, which is
// what np.genfromtxt(dtype=np.float32) does (Python float, then float32), and arithmetic happens in T,
// so with T = float every array is bit for bit what the original's float32 arrays hold.
//
// Files are read only when they are regular files (a FIFO, a device or a folder is refused by name
// before it is opened: io::regular_file_size), with the memory for their bytes and values asked for
// once, up front: a failed allocation is an Error naming the file and the bytes. In every message a
// ticker or a cell's text shows each byte outside printable ASCII as \xHH, so a stray byte (a BOM,
// a non-breaking space, a control character) is visible.
//
// read_tickers(path)
//   One ticker per line; each line trimmed of spaces, tabs and '\r'; blank lines skipped; a UTF-8 byte
//   order mark at the start of the file (Excel writes one) skipped, as it is for the dates file. Error
//   (naming the file) when the file cannot be read, holds no ticker, a ticker repeats (both line
//   numbers), or a ticker contains whitespace, '/', '\\' or a control character (it is part of a file
//   name).
//
// read_trading_dates(path), date_of_row(dates, row)
//   The lines of <MARKET>_aver_line_dates.csv, each trimmed (NASDAQ: "2012-11-19 16:00:00"); blank
//   lines at the end are ignored, a blank line before the end is an error (it would shift every date).
//   Row r of a ticker file is the date dates[r + 29] (0-based; the 1-based line r + 30): the dates file
//   holds 29 dates before a ticker file's first row. date_of_row throws when row + 29 is outside the list.
//
// load_eod<T>(dir, market, tickers, steps)  ==  load_EOD_data(data_path, market_name, tickers, steps)
//   For each ticker, in order, reads <dir>/<market>_<ticker>_1.csv (dir is the original's data_path,
//   the folder holding the CSV files, for NASDAQ <root>/2013-01-01): no header, comma-separated,
//   column 0 the day index, then C features, the last of them the close; -1234 marks a missing value.
//   For market == "NASDAQ" (exactly; as the original) the file's last row is dropped. The first file
//   fixes D and C; then every file's rows go through ingest_eod_rows (market.hpp), the original's
//   per-row loop: mask 0 where the close is missing, gt = (close[r] - close[r-steps]) / close[r-steps]
//   for r >= steps with close[r] present (a missing close[r-steps] already reads 1.1: the quirk), every
//   missing cell becomes 1.1, eod = columns 1.., price = the last column. tickers is copied into the
//   Market; the result passes Market::validate (called before returning).
//   Errors (stockmixer::Error; the message names the file and, for a cell, its 1-based line and column,
//   where column counts comma-separated fields): a file that cannot be read (with the ticker and its
//   place in the list), an empty file, a row with fewer fields than the file's first row or more, a
//   cell that is not a number (an empty cell too), NaN or Inf in a cell, a value outside T's range, a
//   file whose row or field count differs from the first file's (both files and both counts), fewer
//   than two fields, no row left after the NASDAQ drop, an empty ticker list, a ticker with whitespace
//   or '/', steps < 1, a present close that is not > 0, and a market with no close present at all
//   (every cell -1234: Market's check_has_data). The Market is built in a local and
//   returned only when complete: an error leaves nothing half-loaded.
//   Differs: the original (np.genfromtxt) turns a non-numeric or empty cell into NaN and carries it on,
//   accepts NaN, Inf and a close <= 0 (which make gt or the loss's return ratio Inf or NaN), and fails
//   with an IndexError or a broadcast error on files of different lengths; we raise an Error for each.
//   Blank lines are skipped, as np.genfromtxt does; '#' comments are not supported (an error).
//
// load_market_dir<T>(dir, market, tickers_file, steps)
//   The dataset folder layout: <dir>/<M>_tickers_qualify_dr-0.98_min-5_smooth.csv (or tickers_file
//   when not empty), <dir>/<M>_aver_line_dates.csv and <dir>/2013-01-01/<M>_<T>_1.csv. Returns the
//   load_eod Market and the dates; Error when the dates file has fewer than D + 29 lines.
//
// load_sp500_npy<T>(path, steps)  ==  the `if market_name == "SP500"` branch of train.py
//   data = np.load(path)[:, 915:, :]  ([N, D, F] after the cut; the file must have more than 915 days);
//   eod = data (all F columns, the close included), price = data[:, :, -1], mask = 1,
//   gt[i, 0] = 0 and gt[i, r] = (data[i, r, -1] - data[i, r - steps, -1]) / data[i, r - steps, -1] for
//   r = 1 .. D-1. The original's loop starts at r = 1 whatever steps is, so for r < steps it reads
//   index r - steps < 0, which numpy wraps to D + r - steps (a close from the end of the period). We
//   replicate that wrap-around; steps > D + 1, where numpy raises IndexError, is an Error here.
//   The arithmetic is float32 for a float32 file and float64 for a float64 file, as numpy's, and the
//   results are cast to T. Errors: not a float32/float64 rank-3 .npy (read_npy's errors), 915 days or
//   fewer, steps < 1, a NaN or Inf in the data, a close <= 0 (named by stock, day and feature in the
//   file's own indices); the result passes Market::validate.
//   Differs: the original accepts NaN, Inf and a close <= 0.
//
// relation_adjacency<T>(relation, laplacian)  ==  load_graph_relation_data(relation_file, lap)
//   relation: [N, N, R] (np.load of the relation file). A[i, j] = 0 where sum_r relation[i, j, r] == 0,
//   else 1 (the sum, not "any": entries that cancel count as no relation; no self loops are added: the
//   relation files carry them). The sum runs in double, left to right: exact for the integer-valued
//   encodings the relation files hold (numpy sums in the file's dtype). degree[j] = sum_i A[i, j] (np.sum(axis=0): the column sums),
//   d[j] = sqrt(1 / degree[j]), out[i, j] = (d[i] A[i, j]) d[j] (what np.dot(np.dot(D, A), D) computes,
//   the other terms being exact zeros), and for the Laplacian (i == j) - out[i, j]. Computed in double,
//   as the original (float64), then cast to T.
//   Differs: a stock with degree 0 makes the original's 1 / degree Inf and its row and column of the
//   result NaN; we raise an Error naming the stock. Also Errors: relation not [N, N, R] with N, R >= 1,
//   a NaN or Inf entry (the message names the tensor).
//
// relation_mask<T>(relation)  ==  the mask of load_relation_data(relation_file)
//   [N, N]: -1e9 where sum_r relation[i, j, r] == 0, else 0 (the original's relation_encoding is the
//   input itself). Same shape and finiteness errors.
//
// build_sfm_data<T>(dir, market, tickers)  ==  build_SFM_data(data_path, market_name, tickers)
//   [N, D]: the close column of each <dir>/<market>_<ticker>_1.csv, with NO last-row drop (the original
//   drops it only in load_EOD_data, for NASDAQ D = 1246 here). A missing close at row r < 3 takes the
//   next present close of the file (0 when there is none); at r >= 3 it is
//   (out[r-3] + out[r-2] + out[r-1]) / 3 of the values already written (summed left to right in T, as
//   np.sum of three float32 values). The original saves the result as <market>_sfm_data.npy in the
//   working directory; here the caller writes it (io::write_npy) where it wants.
//   Same file errors as load_eod, without the close > 0 rule (nothing divides by it).
//
// tests: tests/test_eod.cpp (fixtures from tests/make_eod_fixtures.py, which runs the original code)
#pragma once

#include "stockmixer/common.hpp"
#include "stockmixer/data/market.hpp"
#include "stockmixer/io/npy.hpp"
#include "stockmixer/tensor.hpp"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <system_error>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

namespace stockmixer::data {

// ---- interface -------------------------------------------------------------------------------------

constexpr Index kDateLineOffset = 29;      // row r of a ticker file is dates[r + 29]
constexpr Index kSp500TimeCut = 915;       // train.py: data = data[:, 915:, :]
inline const char* const kEodSubdir = "2013-01-01";  // <dir>/2013-01-01/<M>_<T>_1.csv

std::vector<std::string> read_tickers(const std::string& path);
std::vector<std::string> read_trading_dates(const std::string& path);
std::string date_of_row(const std::vector<std::string>& dates, Index row);

template <class T>
Market<T> load_eod(const std::string& dir, const std::string& market, const std::vector<std::string>& tickers,
                   Index steps = 1);

template <class T>
struct LoadedMarket {
  Market<T> market;
  std::vector<std::string> tickers;  // stock i's ticker
  std::vector<std::string> dates;    // the dates file's lines: row r's date is date_of_row(dates, r)
};

template <class T>
LoadedMarket<T> load_market_dir(const std::string& dir, const std::string& market,
                                const std::string& tickers_file = "", Index steps = 1);

template <class T>
Market<T> load_sp500_npy(const std::string& path, Index steps = 1);

template <class T>
Tensor<T> relation_adjacency(const Tensor<T>& relation, bool laplacian);  // [N, N, R] -> [N, N]
template <class T>
Tensor<T> relation_mask(const Tensor<T>& relation);                       // [N, N, R] -> [N, N]

template <class T>
Tensor<T> build_sfm_data(const std::string& dir, const std::string& market,
                         const std::vector<std::string>& tickers);        // [N, D]

// ---- implementation --------------------------------------------------------------------------------

namespace detail {

inline bool csv_blank(char c) { return c == ' ' || c == '\t'; }
inline bool text_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f'; }

inline std::string trimmed(const std::string& s) {
  std::size_t a = 0, b = s.size();
  while (a < b && text_space(s[a])) ++a;
  while (b > a && text_space(s[b - 1])) --b;
  return s.substr(a, b - a);
}

inline std::string join_path(const std::string& dir, const std::string& name) {
  return (std::filesystem::path(dir) / name).string();
}

// `s` with every byte outside printable ASCII (below 0x20, 0x7f, 0x80 and above) written as \xHH.
inline std::string escaped(const std::string& s) {
  std::string out;
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c >= 0x20 && c < 0x7f) {
      out += ch;
    } else {
      char hex[8];
      std::snprintf(hex, sizeof hex, "\\x%02X", static_cast<unsigned>(c));
      out += hex;
    }
  }
  return out;
}

// The whole file into `buf` (reused between calls): a regular file only. Error naming the file and
// `what_for`.
inline void read_file(const std::string& path, std::vector<char>& buf, const std::string& what_for = "") {
  std::uint64_t size = 0;
  try {
    size = io::regular_file_size(path, "file");  // a FIFO would block, /dev/zero never end
  } catch (const Error& e) {
    throw Error(e.what() + what_for);
  }
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) {
    const int err = errno;
    throw Error(path + ": cannot open the file (" + std::strerror(err) + ")" + what_for);
  }
  std::size_t n = 0;
  try {
    if (buf.size() < size + 1) buf.resize(static_cast<std::size_t>(size + 1));  // + 1: the read that sees the end
    for (;;) {
      if (n == buf.size()) buf.resize(buf.size() * 2);  // the file grew while it was read
      const std::size_t got = std::fread(buf.data() + n, 1, buf.size() - n, f);
      n += got;
      if (got == 0) break;
    }
  } catch (const std::bad_alloc&) {
    std::fclose(f);
    throw Error(path + ": cannot allocate " + io::byte_size(std::max<std::uint64_t>(size + 1, 2 * n)) +
                " to read the file: out of memory" + what_for);
  }
  const bool failed = std::ferror(f) != 0;
  std::fclose(f);
  if (failed) throw Error(path + ": cannot read the file" + what_for);
  buf.resize(n);
}

// The file's lines (without '\n'), for the small text lists.
inline std::vector<std::string> read_lines(const std::string& path) {
  std::vector<char> buf;
  read_file(path, buf);
  std::vector<std::string> lines;
  const char* p = buf.data();
  const char* end = p + buf.size();
  if (end - p >= 3 && std::memcmp(p, "\xEF\xBB\xBF", 3) == 0) p += 3;  // a UTF-8 byte order mark
  while (p < end) {
    const char* e = static_cast<const char*>(std::memchr(p, '\n', static_cast<std::size_t>(end - p)));
    if (!e) e = end;
    lines.emplace_back(p, e);
    p = e + 1;
  }
  return lines;
}

inline bool bad_ticker_char(char c) { return text_space(c) || c == '\n' || c == '/' || c == '\\'; }

// "" when the ticker can be part of a file name, else why not.
inline std::string ticker_problem(const std::string& t) {
  if (t.empty()) return "is empty";
  for (char c : t) {
    if (c == '/' || c == '\\') return std::string("contains '") + c + "'";
    if (bad_ticker_char(c)) return "contains whitespace";
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
      return "contains the control character " + escaped(std::string(1, c));
  }
  return "";
}

// Powers of ten exactly representable in double (Clinger's fast path).
inline double exact_pow10(int k) {
  static constexpr double p[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                                   1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
  return p[k];
}

// A decimal number [+-]digits[.digits][(e|E)[+-]digits] at p (at least one mantissa digit), stopping
// at `end`. Returns the end of the number, or nullptr when p does not start one. The value is the
// correctly rounded double (what strtod and Python's float() give): with at most 15 significant
// digits and a decimal exponent within +-22 the integer mantissa and the power of ten are exact
// doubles and one IEEE multiply or divide rounds once (Clinger's fast path); anything else goes to
// std::from_chars (strtod for under/overflow). Overflow returns an infinite value.
inline const char* scan_number(const char* p, const char* end, double& out) {
  const char* start = p;
  bool negative = false;
  if (p < end && (*p == '+' || *p == '-')) negative = *p++ == '-';
  auto is_digit = [](char c) { return static_cast<unsigned char>(c - '0') < 10; };
  const char* digits = p;
  std::uint64_t mantissa = 0;  // wraps past 19 significant digits: then only the slow path is used
  while (p < end && is_digit(*p)) mantissa = mantissa * 10 + static_cast<std::uint64_t>(*p++ - '0');
  const Index n_int = p - digits;
  Index n_frac = 0;
  if (p < end && *p == '.') {
    const char* frac = ++p;
    while (p < end && is_digit(*p)) mantissa = mantissa * 10 + static_cast<std::uint64_t>(*p++ - '0');
    n_frac = p - frac;
  }
  if (n_int + n_frac == 0) return nullptr;
  Index leading_zeros = 0;
  for (const char* z = digits; z < p && (*z == '0' || *z == '.'); ++z) leading_zeros += *z == '0';
  const Index significant = n_int + n_frac - leading_zeros;
  Index exp10 = -n_frac;
  if (p < end && (*p == 'e' || *p == 'E')) {
    const char* q = p + 1;
    bool neg_exp = false;
    if (q < end && (*q == '+' || *q == '-')) neg_exp = *q++ == '-';
    if (q < end && is_digit(*q)) {
      Index e = 0;
      while (q < end && is_digit(*q)) {
        if (e < 100000) e = e * 10 + (*q - '0');
        ++q;
      }
      exp10 += neg_exp ? -e : e;
      p = q;
    }  // else the 'e' is not part of the number (the caller rejects the cell)
  }
  if (significant <= 15 && exp10 >= -22 && exp10 <= 22) {
    double v = static_cast<double>(mantissa);  // exact: below 10^15 < 2^53
    if (mantissa != 0) v = exp10 < 0 ? v / exact_pow10(static_cast<int>(-exp10)) : v * exact_pow10(static_cast<int>(exp10));
    out = negative ? -v : v;
    return p;
  }
  const char* from = start + (*start == '+' ? 1 : 0);  // from_chars takes no '+'
  double v = 0.0;
  const auto r = std::from_chars(from, p, v, std::chars_format::general);
  if (r.ec == std::errc::result_out_of_range) {
    const std::string token(from, p);
    v = std::strtod(token.c_str(), nullptr);  // 0 or a denormal on underflow, +-HUGE_VAL on overflow
  } else if (r.ec != std::errc() || r.ptr != p) {
    return nullptr;
  }
  out = v;
  return p;
}

// One parsed CSV file: values [rows, cols] row-major in T, and the 1-based file line of each row.
template <class T>
struct CsvRows {
  std::vector<T> values;
  std::vector<Index> lines;
  Index rows = 0, cols = 0;
};

inline std::string at_cell(const std::string& path, Index line, Index col) {
  return path + ": line " + std::to_string(line) + ", column " + std::to_string(col) + ": ";
}

// Why the cell at `cell` (running to the next ',' or the end of the line) is not a number.
[[noreturn]] inline void bad_cell(const std::string& path, Index line, Index col, const char* cell,
                                  const char* line_end) {
  const char* e = static_cast<const char*>(std::memchr(cell, ',', static_cast<std::size_t>(line_end - cell)));
  if (!e) e = line_end;
  std::string text = trimmed(std::string(cell, e));
  std::string word;
  for (char c : text.substr(text.size() && (text[0] == '+' || text[0] == '-') ? 1 : 0))
    word += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (text.size() > 40) text = text.substr(0, 40) + "...";
  if (word == "nan" || word == "inf" || word == "infinity")
    throw Error(at_cell(path, line, col) + "'" + text + "' is NaN or Inf (only finite numbers are accepted)");
  if (text.empty()) throw Error(at_cell(path, line, col) + "expected a number, got an empty cell");
  throw Error(at_cell(path, line, col) + "expected a number, got '" + escaped(text) + "'");
}

// Parses [begin, end) as comma-separated rows of numbers, every row with as many fields as the first.
template <class T>
void parse_csv(const std::string& path, const char* begin, const char* end, CsvRows<T>& out) {
  out.values.clear();
  out.lines.clear();
  out.rows = 0;
  out.cols = 0;
  // Every value takes at least 2 bytes ("1," or "1\n") and every row too: the room for all of them,
  // asked for once (push_back below never reallocates).
  const auto most = static_cast<std::uint64_t>(end - begin) / 2 + 1;
  try {
    out.values.reserve(static_cast<std::size_t>(most));
    out.lines.reserve(static_cast<std::size_t>(most));
  } catch (const std::bad_alloc&) {
    throw Error(path + ": cannot allocate " + io::byte_size(most * (sizeof(T) + sizeof(Index))) +
                " for the values of a " + io::byte_size(static_cast<std::uint64_t>(end - begin)) +
                " file: out of memory");
  }
  Index line = 0, first_line = 0;
  for (const char* p = begin; p < end;) {
    ++line;
    const char* nl = static_cast<const char*>(std::memchr(p, '\n', static_cast<std::size_t>(end - p)));
    const char* le = nl ? nl : end;
    const char* next = nl ? nl + 1 : end;
    if (le > p && le[-1] == '\r') --le;
    const char* q = p;
    while (q < le && csv_blank(*q)) ++q;
    if (q == le) {  // a blank line: np.genfromtxt skips it
      p = next;
      continue;
    }
    Index col = 0;
    for (;;) {
      while (q < le && csv_blank(*q)) ++q;
      const char* cell = q;
      ++col;
      if (out.cols > 0 && col > out.cols)
        throw Error(at_cell(path, line, col) + "the row has more than the " + std::to_string(out.cols) +
                    " fields of the file's first row (line " + std::to_string(first_line) + ")");
      double v = 0.0;
      const char* after = scan_number(q, le, v);
      if (after) {
        q = after;
        while (q < le && csv_blank(*q)) ++q;
      }
      if (!after || (q < le && *q != ',')) bad_cell(path, line, col, cell, le);
      if (!std::isfinite(v) || std::abs(v) > static_cast<double>(std::numeric_limits<T>::max()))
        throw Error(at_cell(path, line, col) + "'" + escaped(trimmed(std::string(cell, q))) +
                    "' is outside the range of " +
                    (std::is_same_v<T, float> ? "float" : "double"));
      out.values.push_back(static_cast<T>(v));
      if (q == le) break;
      ++q;  // the ','
    }
    if (out.cols == 0) {
      if (col < 2)
        throw Error(path + ": line " + std::to_string(line) +
                    ": 1 field; expected the day index, then the features (the last one the close)");
      out.cols = col;
      first_line = line;
    } else if (col < out.cols) {
      throw Error(at_cell(path, line, col + 1) + "the row ends after " + std::to_string(col) + " fields; expected " +
                  std::to_string(out.cols) + " as in the file's first row (line " + std::to_string(first_line) + ")");
    }
    out.lines.push_back(line);
    ++out.rows;
    p = next;
  }
  if (out.rows == 0)
    throw Error(path + ": the file is empty (expected comma-separated rows: the day index, then the features)");
}

inline void check_market_name(const std::string& who, const std::string& market) {
  const std::string problem = ticker_problem(market);
  if (!problem.empty()) throw Error(who + ": the market name '" + escaped(market) + "' " + problem);
}

// Reads and parses <dir>/<market>_<ticker>_1.csv for every ticker in order, checks that each file has
// the first file's row and field counts, and calls each(index, path, csv).
template <class T, class Each>
void for_each_ticker_file(const std::string& who, const std::string& dir, const std::string& market,
                          const std::vector<std::string>& tickers, Each&& each) {
  check_market_name(who, market);
  if (tickers.empty()) throw Error(who + ": the ticker list is empty");
  for (std::size_t i = 0; i < tickers.size(); ++i) {
    const std::string problem = ticker_problem(tickers[i]);
    if (!problem.empty())
      throw Error(who + ": ticker " + std::to_string(i + 1) + " of " + std::to_string(tickers.size()) + " ('" +
                  escaped(tickers[i]) + "') " + problem);
  }
  std::vector<char> buf;
  CsvRows<T> csv;
  std::string first_path;
  Index first_rows = 0, first_cols = 0;
  for (std::size_t i = 0; i < tickers.size(); ++i) {
    const std::string path = join_path(dir, market + "_" + tickers[i] + "_1.csv");
    try {
      read_file(path, buf,
                " (ticker '" + escaped(tickers[i]) + "', " + std::to_string(i + 1) + " of " +
                    std::to_string(tickers.size()) + " in the ticker list)");
    } catch (const Error& e) {  // the message starts with the path, the ticker's bytes as they are: escape them
      const std::string message = e.what();
      throw Error(message.compare(0, path.size(), path) == 0 ? escaped(path) + message.substr(path.size()) : message);
    }
    parse_csv(path, buf.data(), buf.data() + buf.size(), csv);
    if (i == 0) {
      first_path = path;
      first_rows = csv.rows;
      first_cols = csv.cols;
    } else if (csv.rows != first_rows) {
      throw Error(path + " has " + std::to_string(csv.rows) + " rows but " + first_path + " has " +
                  std::to_string(first_rows) + ": every ticker's file must have as many rows as the first one's");
    } else if (csv.cols != first_cols) {
      throw Error(path + " has " + std::to_string(csv.cols) + " fields a row but " + first_path + " has " +
                  std::to_string(first_cols) + ": every ticker's file must have as many fields as the first one's");
    }
    each(static_cast<Index>(i), path, csv);
  }
}

// sum_r relation[i, j, r] == 0 for every (i, j), after the shape and finiteness checks.
template <class T>
std::vector<char> relation_absent(const Tensor<T>& relation, const std::string& who) {
  if (relation.rank() != 3 || relation.dim(0) != relation.dim(1) || relation.dim(0) < 1 || relation.dim(2) < 1)
    throw Error(who + ": the relation tensor must be [N, N, R] with N, R >= 1, got shape " + relation.shape().str());
  const Index n = relation.dim(0), r = relation.dim(2);
  auto absent = allocating([&] { return who + ": the [" + std::to_string(n) + ", " + std::to_string(n) + "] flags"; },
                           bytes_of(static_cast<std::uint64_t>(n * n), 1),
                           [&] { return std::vector<char>(static_cast<std::size_t>(n * n)); });
  for (Index i = 0; i < n; ++i)
    for (Index j = 0; j < n; ++j) {
      double sum = 0.0;
      for (Index k = 0; k < r; ++k) {
        const T v = relation(i, j, k);
        if (!std::isfinite(v))
          throw Error(who + ": the relation tensor at [" + std::to_string(i) + ", " + std::to_string(j) + ", " +
                      std::to_string(k) + "] is " + value_str(v));
        sum += static_cast<double>(v);
      }
      absent[static_cast<std::size_t>(i * n + j)] = sum == 0.0;
    }
  return absent;
}

}  // namespace detail

inline std::vector<std::string> read_tickers(const std::string& path) {
  const std::vector<std::string> lines = detail::read_lines(path);
  std::vector<std::string> tickers;
  std::unordered_map<std::string, std::size_t> seen;  // ticker -> its 1-based line
  for (std::size_t l = 0; l < lines.size(); ++l) {
    std::string t = detail::trimmed(lines[l]);
    if (t.empty()) continue;
    const std::string problem = detail::ticker_problem(t);
    if (!problem.empty())
      throw Error(path + ": line " + std::to_string(l + 1) + ": ticker '" + detail::escaped(t) + "' " + problem);
    const auto [it, fresh] = seen.emplace(t, l + 1);
    if (!fresh)
      throw Error(path + ": line " + std::to_string(l + 1) + ": ticker '" + detail::escaped(t) + "' repeats line " +
                  std::to_string(it->second));
    tickers.push_back(std::move(t));
  }
  if (tickers.empty()) throw Error(path + ": no tickers (the file is empty or holds only blank lines)");
  return tickers;
}

inline std::vector<std::string> read_trading_dates(const std::string& path) {
  std::vector<std::string> lines = detail::read_lines(path);
  for (auto& l : lines) l = detail::trimmed(l);
  while (!lines.empty() && lines.back().empty()) lines.pop_back();
  if (lines.empty()) throw Error(path + ": no dates (the file is empty or holds only blank lines)");
  for (std::size_t l = 0; l < lines.size(); ++l)
    if (lines[l].empty())
      throw Error(path + ": line " + std::to_string(l + 1) +
                  " is blank (every line is a trading date; a blank one would shift the dates after it)");
  return lines;
}

inline std::string date_of_row(const std::vector<std::string>& dates, Index row) {
  if (row < 0 || row + kDateLineOffset >= static_cast<Index>(dates.size()))
    throw Error("stockmixer::data::date_of_row: row " + std::to_string(row) + " has no date: it is line " +
                std::to_string(row + kDateLineOffset + 1) + " of the dates file, which has " +
                std::to_string(dates.size()) + " lines");
  return dates[static_cast<std::size_t>(row + kDateLineOffset)];
}

template <class T>
Market<T> load_eod(const std::string& dir, const std::string& market, const std::vector<std::string>& tickers,
                   Index steps) {
  const std::string who = "stockmixer::data::load_eod";
  if (steps < 1) throw Error(who + ": steps must be >= 1, got " + std::to_string(steps));
  const bool nasdaq = market == "NASDAQ";  // the original: if market_name == 'NASDAQ': drop the last row
  const Index n = static_cast<Index>(tickers.size());
  Market<T> m;
  m.steps = steps;
  Index d = 0;
  detail::for_each_ticker_file<T>(who, dir, market, tickers, [&](Index i, const std::string& path,
                                                                 detail::CsvRows<T>& csv) {
    const Index cols = csv.cols;  // 1 + C
    if (i == 0) {
      d = csv.rows - (nasdaq ? 1 : 0);
      if (d < 1)
        throw Error(path + ": one row, and for NASDAQ the loader drops the last row (as load_EOD_data does): no "
                           "row is left");
      m = detail::zero_market<T>(n, d, cols - 1, steps, who.c_str());  // [N, D, C]
    }
    for (Index row = 0; row < d; ++row) {
      const T close = csv.values[static_cast<std::size_t>(row * cols + cols - 1)];
      if (!detail::is_missing(static_cast<double>(close)) && !(close > T(0)))
        throw Error(detail::at_cell(path, csv.lines[static_cast<std::size_t>(row)], cols) + "the close " +
                    detail::value_str(static_cast<double>(close)) +
                    " is not > 0 (gt and the loss divide by it; -1234 marks a missing value)");
    }
    ingest_eod_rows(m, i, csv.values.data());
  });
  m.tickers = tickers;
  m.validate(detail::join_path(dir, market + "_<ticker>_1.csv"));
  check_has_data(m, detail::join_path(dir, market + "_<ticker>_1.csv") + " (" + std::to_string(n) + " tickers)");
  return m;
}

template <class T>
LoadedMarket<T> load_market_dir(const std::string& dir, const std::string& market, const std::string& tickers_file,
                                Index steps) {
  detail::check_market_name("stockmixer::data::load_market_dir", market);
  const std::string tickers_path =
      tickers_file.empty() ? detail::join_path(dir, market + "_tickers_qualify_dr-0.98_min-5_smooth.csv") : tickers_file;
  const std::string dates_path = detail::join_path(dir, market + "_aver_line_dates.csv");
  const std::vector<std::string> tickers = read_tickers(tickers_path);
  std::vector<std::string> dates = read_trading_dates(dates_path);
  Market<T> m = load_eod<T>(detail::join_path(dir, kEodSubdir), market, tickers, steps);
  const Index d = m.days();
  if (static_cast<Index>(dates.size()) < d + kDateLineOffset)
    throw Error(dates_path + ": " + std::to_string(dates.size()) + " lines, but the market's " + std::to_string(d) +
                " rows need " + std::to_string(d + kDateLineOffset) + " (row r's date is line r + 30, 1-based)");
  return {std::move(m), tickers, std::move(dates)};
}

template <class T>
Market<T> load_sp500_npy(const std::string& path, Index steps) {
  std::string dtype;
  const Tensor<double> data = io::read_npy<double>(path, &dtype);  // [N, D_file, F]; float32 values are exact
  const bool f32 = dtype == "<f4";                                 // numpy computes gt in the file's dtype
  if (data.rank() != 3)
    throw Error(path + ": the S&P 500 array must be [N, D, F], got shape " + data.shape().str());
  const Index n = data.dim(0), d_file = data.dim(1), f = data.dim(2), d = d_file - kSp500TimeCut;
  if (n < 1 || f < 1 || d < 1)
    throw Error(path + ": shape " + data.shape().str() + ": need N >= 1, F >= 1 and more than " +
                std::to_string(kSp500TimeCut) + " days (train.py keeps data[:, 915:, :])");
  if (steps < 1) throw Error(path + ": steps must be >= 1, got " + std::to_string(steps));
  if (1 - steps < -d)
    throw Error(path + ": steps " + std::to_string(steps) + " > D + 1 = " + std::to_string(d + 1) +
                ": the original's gt loop reads index 1 - steps, which numpy cannot wrap (IndexError)");
  auto where = [&](Index i, Index t, Index k) {
    return path + ": stock " + std::to_string(i) + ", day " + std::to_string(t + kSp500TimeCut) + " (row " +
           std::to_string(t) + " after the cut at 915), feature " + std::to_string(k) + ": ";
  };
  Market<T> m = detail::zero_market<T>(n, d, f, steps, path.c_str());
  m.mask.fill(T(1));
  for (Index i = 0; i < n; ++i)
    for (Index t = 0; t < d; ++t) {
      for (Index k = 0; k < f; ++k) {
        const double v = data(i, t + kSp500TimeCut, k);
        if (!std::isfinite(v) || std::abs(v) > static_cast<double>(std::numeric_limits<T>::max()))
          throw Error(where(i, t, k) + detail::value_str(v) + " is not a finite " +
                      (std::is_same_v<T, float> ? "float" : "double"));
        m.eod(i, t, k) = static_cast<T>(v);
      }
      const double close = data(i, t + kSp500TimeCut, f - 1);
      if (!(close > 0.0))
        throw Error(where(i, t, f - 1) + "the close " + detail::value_str(close) + " is not > 0 (gt divides by it)");
      m.price(i, t) = static_cast<T>(close);
    }
  for (Index i = 0; i < n; ++i)
    for (Index row = 1; row < d; ++row) {
      Index prev = row - steps;  // numpy's negative index wraps: data[i][-k] is data[i][D - k]
      if (prev < 0) prev += d;
      const double now = data(i, row + kSp500TimeCut, f - 1), before = data(i, prev + kSp500TimeCut, f - 1);
      const double g = f32 ? static_cast<double>((static_cast<float>(now) - static_cast<float>(before)) /
                                                 static_cast<float>(before))
                           : (now - before) / before;
      m.gt(i, row) = static_cast<T>(g);
    }
  m.validate(path);
  check_has_data(m, path);
  return m;
}

template <class T>
Tensor<T> relation_adjacency(const Tensor<T>& relation, bool laplacian) {
  const std::string who = "stockmixer::data::relation_adjacency";
  const std::vector<char> absent = detail::relation_absent(relation, who);
  const Index n = relation.dim(0);
  auto a = [&](Index i, Index j) { return absent[static_cast<std::size_t>(i * n + j)] ? 0.0 : 1.0; };
  std::vector<double> dinv(static_cast<std::size_t>(n));  // degree^-1/2, degree = column sums
  for (Index j = 0; j < n; ++j) {
    double degree = 0.0;
    for (Index i = 0; i < n; ++i) degree += a(i, j);
    if (degree == 0.0)
      throw Error(who + ": stock " + std::to_string(j) + " has no relation at all (column " + std::to_string(j) +
                  " of the adjacency is empty): the original's 1 / degree is Inf and its row and column of the "
                  "result are NaN; give every stock a self-relation");
    dinv[static_cast<std::size_t>(j)] = std::sqrt(1.0 / degree);
  }
  auto what = [&] { return who + ": the [" + std::to_string(n) + ", " + std::to_string(n) + "] result"; };
  Tensor<T> out = detail::allocating(what,
                                      detail::bytes_of(static_cast<std::uint64_t>(n * n), sizeof(T)),
                                      [&] { return Tensor<T>({n, n}); });  // [N, N]
  for (Index i = 0; i < n; ++i)
    for (Index j = 0; j < n; ++j) {
      const double v = dinv[static_cast<std::size_t>(i)] * a(i, j) * dinv[static_cast<std::size_t>(j)];
      out(i, j) = static_cast<T>(laplacian ? (i == j ? 1.0 : 0.0) - v : v);
    }
  return out;
}

template <class T>
Tensor<T> relation_mask(const Tensor<T>& relation) {
  const std::string who = "stockmixer::data::relation_mask";
  const std::vector<char> absent = detail::relation_absent(relation, who);
  const Index n = relation.dim(0);
  auto what = [&] { return who + ": the [" + std::to_string(n) + ", " + std::to_string(n) + "] result"; };
  Tensor<T> out = detail::allocating(what,
                                      detail::bytes_of(static_cast<std::uint64_t>(n * n), sizeof(T)),
                                      [&] { return Tensor<T>({n, n}); });  // [N, N]
  for (Index i = 0; i < n; ++i)
    for (Index j = 0; j < n; ++j) out(i, j) = absent[static_cast<std::size_t>(i * n + j)] ? T(-1e9) : T(0);
  return out;
}

template <class T>
Tensor<T> build_sfm_data(const std::string& dir, const std::string& market, const std::vector<std::string>& tickers) {
  const Index n = static_cast<Index>(tickers.size());
  Tensor<T> out;
  const std::string who = "stockmixer::data::build_sfm_data";
  detail::for_each_ticker_file<T>(who, dir, market, tickers, [&](Index i, const std::string&, detail::CsvRows<T>& csv) {
    const Index d = csv.rows, cols = csv.cols;
    if (i == 0)
      out = detail::allocating([&] { return who + ": [" + std::to_string(n) + ", " + std::to_string(d) + "] closes"; },
                               detail::bytes_of(static_cast<std::uint64_t>(Shape{n, d}.size()), sizeof(T)),
                               [&] { return Tensor<T>({n, d}); });  // [N, D]
    auto close = [&](Index row) { return csv.values[static_cast<std::size_t>(row * cols + cols - 1)]; };
    for (Index row = 0; row < d; ++row) {
      if (!detail::is_missing(static_cast<double>(close(row)))) {
        out(i, row) = close(row);
      } else if (row < 3) {
        for (Index later = row + 1; later < d; ++later)
          if (!detail::is_missing(static_cast<double>(close(later)))) {
            out(i, row) = close(later);
            break;
          }
      } else {
        const T sum = (out(i, row - 3) + out(i, row - 2)) + out(i, row - 1);
        out(i, row) = sum / T(3);
      }
    }
  });
  return out;
}

}  // namespace stockmixer::data
