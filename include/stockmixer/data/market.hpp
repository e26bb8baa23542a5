// stockmixer/data/market.hpp — a market in memory (SPEC §5), its training windows, and a
// deterministic synthetic market with a planted, learnable signal.
//
// Layout (what load_EOD_data returns, N stocks, D days, C features):
//   eod   [N, D, C]  features per stock and day; NASDAQ: ma5, ma10, ma20, ma30, close, each divided
//                    by the stock's largest close of the period (see "Normalisation" below)
//   mask  [N, D]     1 where the day's close is present, 0 where it is missing
//   gt    [N, D]     gt[i, d] = (close[i, d] - close[i, d - steps]) / close[i, d - steps]   (d >= steps,
//                    day d present; else 0). Quirk kept from the original: load_EOD_data replaces a
//                    missing cell by 1.1 while it walks the rows, so close[i, d - steps] is already
//                    1.1 when that day is missing and gt[i, d] = (close[i, d] - 1.1) / 1.1 there.
//                    No window ever reads such a gt unmasked (get_batch's mask covers day d - steps).
//   price [N, D]     the close column (1.1 where missing): the base price of the loss
//   every missing feature cell holds 1.1.
//
// get_batch(m, offset, T, out), exactly the original's get_batch with steps = m.steps:
//   x    [N, T, C] = eod[:, offset : offset + T, :]
//   mask [N, 1]    = min over d in [offset, offset + T + steps) of mask[:, d]
//   base [N, 1]    = price[:, offset + T - 1]
//   gt   [N, 1]    = gt[:, offset + T + steps - 1]
// The window [offset, offset + T + steps) must lie inside [0, D) (numpy would silently truncate a
// slice that runs past D; we throw). After the first call for a shape it allocates nothing.
//
// synthetic_market(opts): N stocks over D days in exactly that format, from this process (all draws
// from one std::mt19937_64 seeded with opts.seed; normals by Box-Muller written here; see
// docs/synthetic_market.md):
//   stock i:   beta_i ~ U(0.6, 1.4), sigma_i ~ U(0.010, 0.030)       (market exposure, daily vol)
//   day t:     f_t ~ N(0.0003, 0.010^2)                              (market factor)
//   log-return r[i, t] = beta_i f_t + sigma_i eps[i, t] + p[i, t],   eps ~ N(0, 1)
//   planted    p[i, t] = -signal * log(close[i, t-1] / ma5[i, t-1])  (5-day reversal)
//   close[i, t] = close[i, t-1] exp(r[i, t]), ma_k = mean of the last k closes (today included),
// simulated from close = 1 on the first of 64 burn-in days before day 0 (more when C > 5 needs longer
// averages), so ma30 is a full 30-day average from day 0 on, as in the NASDAQ files; the columns are
// ma5, ma10, ma20, ma30, close (for C != 5: C - 1 moving averages of 5, 10, 20, 30, 40, 50, ...
// days, then close). The planted part is a fixed function of the last feature row of the model's
// window: the same ratio in normalised units, since normalising divides both by the same number.
// With the default signal = 0.15 its oracle (synthetic_oracle) has a mean daily cross-sectional Pearson
// IC with the next day's gt of 0.147 (tests/test_data.cpp checks it); a shuffled oracle scores 0.
// Missing cells: runs of 1..10 days at uniformly drawn (stock, start) until exactly
// round(missing * N * D) cells are missing; then every stock's rows go through load_EOD_data's loop
// (ingest_eod_rows below), so mask, gt, price and the 1.1 fill are what the loader would produce.
//
// Normalisation. The real NASDAQ files are not min-max normalised column by column: all five columns
// of a stock are divided by that stock's largest close over the period (the moving averages share its
// scale and exceed 1 in places). The synthetic market does the same with the largest close over its
// present days, so close lies in (0, 1] and is never 0: gt and the loss divide by it.
// A min-max map would send each stock's lowest close to 0 and break that division.
//
// Determinism: mt19937_64 is specified bit for bit by the standard, and the transforms to uniforms
// and normals are written here, so the same seed gives the same market with any standard library
// whose std::log, std::cos and std::exp return the same bits (in practice: the same C math library;
// the tests check that two runs agree bit for bit, not that two platforms do).
//
// Refusing what cannot be trained on. A market whose mask is all zero (every stock missing every
// day) is refused where it is loaded or built (load_eod, load_sp500_npy, synthetic_market call
// check_has_data). check_trainable(m, lookback, train_start, train_end, source) is what a trainer calls
// before its first epoch: it refuses a market in which no training window [o, o + lookback + steps), with
// train_start <= o and o + lookback + steps <= train_end, holds a stock present on every one of its days
// (a walk-forward window trains from its train_start, not from day 0): get_batch's mask
// would be zero for every stock of every training batch, so the loss would have nothing to average.
//
// Memory: a failed allocation here (a market too large for the machine, e.g. synthetic --stocks 1e9)
// is an Error naming what was being allocated and its size in bytes, not a bare std::bad_alloc; the
// synthetic options are checked so that no size computation can overflow.
//
// tests: tests/test_data.cpp
#pragma once

#include "stockmixer/common.hpp"
#include "stockmixer/io/input.hpp"
#include "stockmixer/parallel.hpp"
#include "stockmixer/tensor.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <new>
#include <random>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace stockmixer::data {

// ---- interface -------------------------------------------------------------------------------------

template <class T>
struct Market {
  Tensor<T> eod;                     // [N, D, C]
  Tensor<T> mask, gt, price;         // [N, D]
  std::vector<std::string> tickers;  // N names, or empty
  Index steps = 1;                   // the horizon gt was computed with (>= 1)

  Index stocks() const { return eod.rank() == 3 ? eod.dim(0) : 0; }    // N
  Index days() const { return eod.rank() == 3 ? eod.dim(1) : 0; }      // D
  Index features() const { return eod.rank() == 3 ? eod.dim(2) : 0; }  // C

  // Throws Error naming `source`, the tensor and the first bad (stock, day) when: eod is not rank 3,
  // mask, gt or price is not [N, D], tickers is neither empty nor N long, steps < 1, any value is NaN
  // or infinite, a mask value is not 0 or 1, or a price is not > 0 (the loss divides by it).
  void validate(const std::string& source) const;
};

// One window: the model's input and what the loss needs.
template <class T>
struct Batch {
  Tensor<T> x;               // [N, T, C]
  Tensor<T> mask, base, gt;  // [N, 1]
};

// The original's get_batch(offset) with lookback T and m.steps (formulas in the header comment).
// Throws Error naming offset, lookback, steps and D when the window [offset, offset + T + steps)
// is not inside [0, D), or when lookback < 1.
template <class T>
void get_batch(const Market<T>& m, Index offset, Index lookback, Batch<T>& out);

// Error naming `source` when every (stock, day) of m is missing (its mask is all zero).
template <class T>
void check_has_data(const Market<T>& m, const std::string& source);

// Error naming `source` when no training window holds a present stock (see the header comment):
// windows [o, o + lookback + steps) with train_start <= o and o + lookback + steps <= train_end (the
// first day after the training period, the trainer's valid_index, or its end under the strict split);
// also when lookback < 1, train_start < 0 or train_end is outside [train_start + lookback + steps, D].
template <class T>
void check_trainable(const Market<T>& m, Index lookback, Index train_start, Index train_end, const std::string& source);

// load_EOD_data's per-ticker loop (src/load_data.py), for one stock. `rows` is that ticker's file
// after the NASDAQ last-row drop: [D, 1 + C] row-major, column 0 the day index, the last column the
// close, -1234 for a missing value; it is modified in place exactly as the original modifies its
// array (missing cells become 1.1 row by row). Writes m.eod[stock], m.mask[stock], m.gt[stock] and
// m.price[stock] with m.steps; m's tensors must already be [N, D, C] and [N, D].
template <class T>
void ingest_eod_rows(Market<T>& m, Index stock, T* rows);

struct SyntheticOptions {
  Index stocks = 200;  // N
  Index days = 600;    // D
  Index features = 5;  // C: C - 1 moving averages, then close (5: ma5, ma10, ma20, ma30, close)
  std::uint64_t seed = 1;
  double missing = 0.02;  // share of (stock, day) cells missing, in [0, 0.5]
  double signal = 0.15;   // strength of the planted 5-day reversal (0: no signal)
  Index steps = 1;        // gt horizon

  // Error on N < 1, D < 1, C < 1, steps < 1 or steps >= D, missing outside [0, 0.5], a non-finite
  // signal, or sizes whose product overflows 64 bits (N * (burn-in + D) * (C + 1)).
  void validate() const;
};

// The synthetic market of `opts` (process in the header comment), tickers "SYN0000", "SYN0001", ...
template <class T>
Market<T> synthetic_market(const SyntheticOptions& opts);

// Names for stocks that have none (the synthetic market, SP500.npy): S0000, S0001, ... (at least four
// digits, more when N needs them, so that the names sort in stock order).
inline std::vector<std::string> synthetic_tickers(Index n) {
  const std::size_t width = std::max<std::size_t>(4, std::to_string(n > 0 ? n - 1 : 0).size());
  std::vector<std::string> names;
  names.reserve(static_cast<std::size_t>(n));
  for (Index i = 0; i < n; ++i) {
    const std::string digits = std::to_string(i);
    names.push_back("S" + std::string(width - digits.size(), '0') + digits);
  }
  return names;
}

// The oracle of the planted signal, read from the features alone: [N, D] with
//   oracle[i, d] = -signal * log(close[i, d-1] / ma5[i, d-1])      (columns C - 1 and 0)
// the planted part of stock i's log-return from day d-1 to day d, and 0 where d = 0 or day d-1 is
// masked. With steps = 1 it predicts gt[i, d]; a model's IC can be read against its IC. Needs C >= 2.
template <class T>
Tensor<T> synthetic_oracle(const Market<T>& m, double signal);

// ---- implementation --------------------------------------------------------------------------------

namespace detail {

inline std::string index_str(Index stock, Index day, const std::vector<std::string>& tickers) {
  std::string s = "stock " + std::to_string(stock);
  if (static_cast<std::size_t>(stock) < tickers.size()) s += " (" + tickers[static_cast<std::size_t>(stock)] + ")";
  return s + ", day " + std::to_string(day);
}

inline std::string value_str(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

// Uniform in [0, 1) from the top 53 bits: the same double on every platform.
inline double uniform01(std::mt19937_64& rng) { return static_cast<double>(rng() >> 11) * 0x1.0p-53; }

// Standard normal by Box-Muller (the cosine branch only; one normal per two uniforms). u1 in (0, 1].
inline double normal01(std::mt19937_64& rng) {
  const double u1 = static_cast<double>((rng() >> 11) + 1) * 0x1.0p-53;
  const double u2 = uniform01(rng);
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586476925 * u2);
}

// Uniform integer in [0, n): modulo of a 64-bit draw (bias below n / 2^64).
inline Index uniform_index(std::mt19937_64& rng, Index n) {
  return static_cast<Index>(rng() % static_cast<std::uint64_t>(n));
}

// Window length of moving-average column j (0-based): 5, 10, 20, 30, then 40, 50, ...
inline Index ma_window(Index j) {
  constexpr Index first[4] = {5, 10, 20, 30};
  return j < 4 ? first[j] : 30 + 10 * (j - 3);
}

constexpr double kMissing = -1234.0;  // the CSV's missing marker
constexpr double kFill = 1.1;         // what load_EOD_data writes over it
inline bool is_missing(double v) { return std::abs(v - kMissing) < 1e-8; }

// count * size in bytes, saturated at 2^64 - 1 (for messages about sizes that cannot be had).
inline std::uint64_t bytes_of(std::uint64_t count, std::uint64_t size) {
  std::uint64_t bytes = 0;
  return __builtin_mul_overflow(count, size, &bytes) ? std::numeric_limits<std::uint64_t>::max() : bytes;
}

// make(), with a failed allocation (std::bad_alloc, or std::length_error from a container asked for
// more than it can hold) turned into an Error naming what() and the `bytes` asked for. what() builds
// the message only then, so that nothing is allocated for it beforehand.
template <class What, class F>
auto allocating(What&& what, std::uint64_t bytes, F&& make) -> decltype(make()) {
  try {
    return make();
  } catch (const std::bad_alloc&) {
    throw Error(what() + ": cannot allocate " + io::byte_size(bytes) + ": out of memory");
  } catch (const std::length_error&) {
    throw Error(what() + ": cannot allocate " + io::byte_size(bytes) + ": more than a container can hold");
  }
}

// A market of N stocks, D days and C features, every tensor zero. `who` names the caller in errors
// (a C string: nothing is allocated for it unless an error is raised).
template <class T>
Market<T> zero_market(Index n, Index d, Index c, Index steps, const char* who) {
  const Shape ndc{n, d, c}, nd{n, d};  // Error when a product of the dims overflows
  const std::uint64_t values = static_cast<std::uint64_t>(ndc.size()) + 3 * static_cast<std::uint64_t>(nd.size());
  auto what = [&] {
    return std::string(who) + ": a market of " + std::to_string(n) + " stocks, " + std::to_string(d) + " days and " +
           std::to_string(c) + " features (eod, mask, gt, price)";
  };
  return allocating(what, bytes_of(values, sizeof(T)), [&] {
                      Market<T> m;
                      m.steps = steps;
                      m.eod = Tensor<T>(ndc);
                      m.mask = m.gt = m.price = Tensor<T>(nd);
                      return m;
                    });
}

}  // namespace detail

template <class T>
void Market<T>::validate(const std::string& source) const {
  const std::string where = source + ": ";
  if (eod.rank() != 3) throw Error(where + "eod must be [N, D, C], got shape " + eod.shape().str());
  const Index n = stocks(), d = days(), c = features();
  const Shape nd{n, d};
  const std::pair<const char*, const Tensor<T>*> planes[] = {{"mask", &mask}, {"gt", &gt}, {"price", &price}};
  for (const auto& [name, t] : planes)
    if (t->shape() != nd)
      throw Error(where + name + " has shape " + t->shape().str() + " but eod " + eod.shape().str() + " needs " +
                  nd.str());
  if (!tickers.empty() && static_cast<Index>(tickers.size()) != n)
    throw Error(where + std::to_string(tickers.size()) + " tickers for " + std::to_string(n) + " stocks");
  if (steps < 1) throw Error(where + "steps must be >= 1, got " + std::to_string(steps));

  for (Index i = 0; i < n; ++i)
    for (Index t = 0; t < d; ++t)
      for (Index f = 0; f < c; ++f) {
        const T v = eod(i, t, f);
        if (!std::isfinite(v))
          throw Error(where + "eod at " + detail::index_str(i, t, tickers) + ", feature " + std::to_string(f) + " is " +
                      detail::value_str(v));
      }
  for (const auto& [name, t] : planes)
    for (Index i = 0; i < n; ++i)
      for (Index day = 0; day < d; ++day) {
        const T v = (*t)(i, day);
        if (!std::isfinite(v))
          throw Error(where + name + " at " + detail::index_str(i, day, tickers) + " is " + detail::value_str(v));
      }
  for (Index i = 0; i < n; ++i)
    for (Index t = 0; t < d; ++t) {
      if (mask(i, t) != T(0) && mask(i, t) != T(1))
        throw Error(where + "mask at " + detail::index_str(i, t, tickers) + " is " + detail::value_str(mask(i, t)) +
                    " (must be 0 or 1)");
      if (!(price(i, t) > T(0)))
        throw Error(where + "price at " + detail::index_str(i, t, tickers) + " is " + detail::value_str(price(i, t)) +
                    " (must be > 0: the loss divides by it)");
    }
}

namespace detail {
template <class T>
bool any_present(const Market<T>& m) {
  const T* mask = m.mask.data();
  for (Index k = 0; k < m.mask.size(); ++k)
    if (mask[k] != T(0)) return true;
  return false;
}
}  // namespace detail

template <class T>
void check_has_data(const Market<T>& m, const std::string& source) {
  if (detail::any_present(m)) return;
  throw Error(source + ": every stock is missing on every day (the mask of " + std::to_string(m.stocks()) +
              " stocks over " + std::to_string(m.days()) +
              " days is all zero: no close is present, -1234 everywhere): nothing to train or evaluate on");
}

template <class T>
void check_trainable(const Market<T>& m, Index lookback, Index train_start, Index train_end, const std::string& source) {
  const Index n = m.stocks(), d = m.days(), window = lookback + m.steps;
  if (lookback < 1 || train_start < 0 || train_end < train_start + window || train_end > d)
    throw Error(source + ": no training window: lookback " + std::to_string(lookback) + " and steps " +
                std::to_string(m.steps) + " need lookback >= 1 and the training days' end (" +
                std::to_string(train_end) + ") within [start + lookback + steps, D] = [" +
                std::to_string(train_start + window) + ", " + std::to_string(d) + "] (start " +
                std::to_string(train_start) + ")");
  Index present = 0;  // (stock, day) cells present in the training days
  for (Index i = 0; i < n; ++i) {
    Index run = 0;  // consecutive present days ending at t
    for (Index t = train_start; t < train_end; ++t) {
      run = m.mask(i, t) != T(0) ? run + 1 : 0;
      present += run > 0;
      if (run >= window) return;  // the window [t + 1 - window, t + 1) of stock i is complete
    }
  }
  throw Error(source + ": no training window holds a present stock: in every window of lookback + steps = " +
              std::to_string(window) + " days within the training days [" + std::to_string(train_start) + ", " +
              std::to_string(train_end) + ") every stock misses a day (" + std::to_string(present) + " of " +
              std::to_string(n * (train_end - train_start)) +
              " stock-days present there), so every training batch's mask would be zero and the loss would have "
              "no stock to average over");
}

template <class T>
void get_batch(const Market<T>& m, Index offset, Index lookback, Batch<T>& out) {
  const Index n = m.stocks(), d = m.days(), c = m.features(), steps = m.steps;
  if (lookback < 1 || steps < 1 || offset < 0 || offset + lookback + steps > d)
    throw Error("stockmixer::data::get_batch: window [offset, offset + lookback + steps) = [" + std::to_string(offset) +
                ", " + std::to_string(offset + lookback + steps) + ") with offset " + std::to_string(offset) +
                ", lookback " + std::to_string(lookback) + ", steps " + std::to_string(steps) +
                " is not inside the market's D = " + std::to_string(d) +
                " days (need lookback >= 1, steps >= 1, 0 <= offset <= D - lookback - steps)");
  try {  // (no message built in advance: after the first call for a shape, get_batch allocates nothing)
    out.x.resize({n, lookback, c});  // [N, T, C]
    out.mask.resize({n, 1});
    out.base.resize({n, 1});
    out.gt.resize({n, 1});
  } catch (const std::bad_alloc&) {
    throw Error("stockmixer::data::get_batch: cannot allocate " +
                io::byte_size(detail::bytes_of(static_cast<std::uint64_t>(n * (lookback * c + 3)), sizeof(T))) +
                " for a batch of " + std::to_string(n) + " stocks: out of memory");
  }
  const Index window = lookback + steps;  // days the mask covers
  // Each stock's window lies D days from the last one's: lines no prefetcher predicts, so a batch of
  // a random day is bound by memory latency; two threads halve it (stocks in two even ranges).
  // Each range also asks for the lines of the stock kAhead places on (its window, mask, base, gt)
  // while it copies this one, so that their latency overlaps the copy.
  constexpr Index kAhead = 4;
  const auto bytes = static_cast<Index>(sizeof(T));
  parallel_for_even(n, 2, [&](Index, Index i0, Index i1) {
    for (Index i = i0; i < i1; ++i) {
      if (i + kAhead < i1) {
        const char* e = reinterpret_cast<const char*>(&m.eod(i + kAhead, offset, 0));
        for (Index b = 0; b < lookback * c * bytes; b += 64) __builtin_prefetch(e + b);
        __builtin_prefetch(e + lookback * c * bytes - 1);
        __builtin_prefetch(&m.mask(i + kAhead, offset));
        __builtin_prefetch(&m.mask(i + kAhead, offset + window - 1));
        __builtin_prefetch(&m.price(i + kAhead, offset + lookback - 1));
        __builtin_prefetch(&m.gt(i + kAhead, offset + lookback + steps - 1));
      }
      const T* src = &m.eod(i, offset, 0);  // [T, C], contiguous
      std::copy(src, src + lookback * c, &out.x(i, 0, 0));
      const T* mk = &m.mask(i, offset);
      out.mask(i, 0) = *std::min_element(mk, mk + window);
      out.base(i, 0) = m.price(i, offset + lookback - 1);
      out.gt(i, 0) = m.gt(i, offset + lookback + steps - 1);
    }
  });
}

template <class T>
void ingest_eod_rows(Market<T>& m, Index stock, T* rows) {
  const Index d = m.days(), c = m.features(), cols = c + 1, steps = m.steps;
  if (stock < 0 || stock >= m.stocks())
    throw Error("stockmixer::data::ingest_eod_rows: stock " + std::to_string(stock) + " outside [0, " +
                std::to_string(m.stocks()) + ")");
  if (m.eod.rank() != 3 || m.mask.shape() != Shape{m.stocks(), d} || m.gt.shape() != m.mask.shape() ||
      m.price.shape() != m.mask.shape())
    throw Error("stockmixer::data::ingest_eod_rows: the market's tensors must be [N, D, C] and [N, D] already");
  auto missing = [](T v) { return detail::is_missing(static_cast<double>(v)); };
  for (Index row = 0; row < d; ++row) {
    T* r = rows + row * cols;
    m.mask(stock, row) = T(1);
    m.gt(stock, row) = T(0);
    if (missing(r[cols - 1])) {
      m.mask(stock, row) = T(0);
    } else if (row > steps - 1 && !missing(rows[(row - steps) * cols + cols - 1])) {
      // The earlier row was already rewritten, so a missing close there reads as 1.1 (the quirk).
      const T prev = rows[(row - steps) * cols + cols - 1];
      m.gt(stock, row) = (r[cols - 1] - prev) / prev;
    }
    for (Index col = 0; col < cols; ++col)
      if (missing(r[col])) r[col] = static_cast<T>(detail::kFill);
  }
  for (Index row = 0; row < d; ++row) {
    std::copy(rows + row * cols + 1, rows + (row + 1) * cols, &m.eod(stock, row, 0));
    m.price(stock, row) = rows[row * cols + cols - 1];
  }
}

inline void SyntheticOptions::validate() const {
  const char* const who = "stockmixer::data::SyntheticOptions: ";
  if (stocks < 1 || days < 1 || features < 1)
    throw Error(std::string(who) + "stocks, days and features must be >= 1, got " + std::to_string(stocks) + ", " +
                std::to_string(days) + ", " + std::to_string(features));
  if (steps < 1 || steps >= days)
    throw Error(std::string(who) + "steps must be in [1, days), got " + std::to_string(steps));
  if (!(missing >= 0.0 && missing <= 0.5))
    throw Error(std::string(who) + "missing must be in [0, 0.5], got " + detail::value_str(missing));
  if (!std::isfinite(signal)) throw Error(std::string(who) + "signal must be finite");
  // Every size synthetic_market computes must fit in Index: N * (burn-in + D) * (C + 1) bounds them all
  // (the burn-in is below 10 C + 64).
  const Index most = std::numeric_limits<Index>::max();
  Index cells = 0;
  if (features > most / 16 || days > most / 2 ||
      __builtin_mul_overflow(stocks, days + 10 * features + 64, &cells) ||
      __builtin_mul_overflow(cells, features + 1, &cells))
    throw Error(std::string(who) + std::to_string(stocks) + " stocks, " + std::to_string(days) + " days and " +
                std::to_string(features) + " features: the market's size overflows a 64-bit count");
}

template <class T>
Market<T> synthetic_market(const SyntheticOptions& opts) {
  opts.validate();
  const Index n = opts.stocks, d = opts.days, c = opts.features, mas = c - 1;
  const Index burn = std::max<Index>(64, detail::ma_window(std::max<Index>(mas - 1, 0)) + 34);
  const Index total = burn + d;  // simulated days; day t of the market is simulated day burn + t
  std::mt19937_64 rng(opts.seed);

  // Stocks' parameters, then the paths, day by day.
  const char* const who = "stockmixer::data::synthetic_market";
  std::vector<double> beta, sigma, close;  // [N], [N], [N, total]
  std::vector<char> gone;                  // [N, D]
  std::vector<T> rows;                     // [D, 1 + C]
  auto what = [&] {
    return std::string(who) + ": the simulation of " + std::to_string(n) + " stocks over " + std::to_string(total) +
           " days (closes, missing cells, one stock's rows)";
  };
  detail::allocating(what,
                     detail::bytes_of(static_cast<std::uint64_t>(n * (total + 2)), sizeof(double)) +
                         static_cast<std::uint64_t>(n * d) + static_cast<std::uint64_t>(d * (c + 1)) * sizeof(T),
                     [&] {  // the largest first: a request that cannot be had fails before the others are filled
                       close.resize(static_cast<std::size_t>(n * total));
                       gone.resize(static_cast<std::size_t>(n * d));
                       beta.resize(static_cast<std::size_t>(n));
                       sigma.resize(static_cast<std::size_t>(n));
                       rows.resize(static_cast<std::size_t>(d * (c + 1)));
                     });
  for (Index i = 0; i < n; ++i) {
    beta[static_cast<std::size_t>(i)] = 0.6 + 0.8 * detail::uniform01(rng);
    sigma[static_cast<std::size_t>(i)] = 0.010 + 0.020 * detail::uniform01(rng);
  }
  auto at = [&](Index i, Index t) -> double& { return close[static_cast<std::size_t>(i * total + t)]; };
  // ma_k of stock i on simulated day t (fewer days at the very start of the burn-in).
  auto ma = [&](Index i, Index t, Index k) {
    const Index from = std::max<Index>(0, t - k + 1);
    double s = 0.0;
    for (Index u = from; u <= t; ++u) s += at(i, u);
    return s / static_cast<double>(t - from + 1);
  };
  for (Index i = 0; i < n; ++i) at(i, 0) = 1.0;
  for (Index t = 1; t < total; ++t) {
    const double f = 0.0003 + 0.010 * detail::normal01(rng);
    for (Index i = 0; i < n; ++i) {
      const auto s = static_cast<std::size_t>(i);
      const double planted = -opts.signal * std::log(at(i, t - 1) / ma(i, t - 1, 5));
      const double r = beta[s] * f + sigma[s] * detail::normal01(rng) + planted;
      at(i, t) = at(i, t - 1) * std::exp(r);
    }
  }

  // Missing cells: runs of 1..10 days until exactly round(missing * N * D) are missing.
  const auto target = static_cast<Index>(std::llround(opts.missing * static_cast<double>(n * d)));
  for (Index count = 0; count < target;) {
    const Index i = detail::uniform_index(rng, n), start = detail::uniform_index(rng, d);
    const Index len = 1 + detail::uniform_index(rng, 10);
    for (Index t = start; t < std::min(d, start + len) && count < target; ++t) {
      char& g = gone[static_cast<std::size_t>(i * d + t)];
      if (!g) {
        g = 1;
        ++count;
      }
    }
  }

  Market<T> m = detail::zero_market<T>(n, d, c, opts.steps, who);
  detail::allocating([&] { return std::string(who) + ": " + std::to_string(n) + " ticker names"; },
                     detail::bytes_of(static_cast<std::uint64_t>(n), sizeof(std::string)),
                     [&] { m.tickers.resize(static_cast<std::size_t>(n)); });
  for (Index i = 0; i < n; ++i) {
    char name[32];
    std::snprintf(name, sizeof name, "SYN%04lld", static_cast<long long>(i));
    m.tickers[static_cast<std::size_t>(i)] = name;
    // Scale: the largest close over the present days (all days if none is present).
    double top = 0.0;
    for (Index t = 0; t < d; ++t)
      if (!gone[static_cast<std::size_t>(i * d + t)]) top = std::max(top, at(i, burn + t));
    if (top == 0.0)
      for (Index t = 0; t < d; ++t) top = std::max(top, at(i, burn + t));
    for (Index t = 0; t < d; ++t) {
      T* r = &rows[static_cast<std::size_t>(t * (c + 1))];
      r[0] = static_cast<T>(t);
      const bool miss = gone[static_cast<std::size_t>(i * d + t)] != 0;
      for (Index j = 0; j < mas; ++j)
        r[1 + j] = static_cast<T>(miss ? detail::kMissing : ma(i, burn + t, detail::ma_window(j)) / top);
      r[c] = static_cast<T>(miss ? detail::kMissing : at(i, burn + t) / top);
    }
    ingest_eod_rows(m, i, rows.data());  // rows: one stock's "CSV", [D, 1 + C]
  }
  if (!detail::any_present(m)) check_has_data(m, who);  // (the message is built only when it is raised)
  return m;
}

template <class T>
Tensor<T> synthetic_oracle(const Market<T>& m, double signal) {
  const Index n = m.stocks(), d = m.days(), c = m.features();
  if (c < 2)
    throw Error("stockmixer::data::synthetic_oracle: needs close and ma5 (C >= 2), got C = " + std::to_string(c));
  Tensor<T> out = detail::allocating([&] {
                                        return "stockmixer::data::synthetic_oracle: [" + std::to_string(n) + ", " +
                                               std::to_string(d) + "]";
                                      },
                                      detail::bytes_of(static_cast<std::uint64_t>(n * d), sizeof(T)),
                                      [&] { return Tensor<T>({n, d}); });  // [N, D]
  for (Index i = 0; i < n; ++i)
    for (Index t = 1; t < d; ++t)
      if (m.mask(i, t - 1) != T(0))
        out(i, t) = static_cast<T>(
            -signal * std::log(static_cast<double>(m.eod(i, t - 1, c - 1)) / static_cast<double>(m.eod(i, t - 1, 0))));
  return out;
}

}  // namespace stockmixer::data
