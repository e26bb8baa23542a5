// stockmixer/metrics/backtest.hpp — a long-only top-k backtest with transaction costs, and the reader of
// the labelled predictions that `stockmixer train` writes (predictions.csv).
//
// Inputs: prediction P, realised return G and mask M, each [N, days] row-major (stock-major, as
// metrics::evaluate), float or double; computed in double. Stock n is valid on day t when
// M[n, t] >= 0.5 (evaluate's rule); only valid stocks are ranked, bought or held.
//
// Ranking: the day's valid stocks in the order evaluate builds its top-k: np.argsort(P[:, t]) of
// numpy 1.24 (metrics::numpy_argsort, ties included) read from the largest value down, skipping
// invalid stocks. So tied predictions are broken exactly as evaluate and the original break them.
//
// Holdings H_t (at most K stocks), each held with weight 1/K (the rest, if any, is cash at return 0):
//   n_drop = 0: H_t = the first K stocks of the day's ranking (evaluate's top-K).
//   n_drop > 0: Qlib's TopkDropoutStrategy (method_sell "bottom", method_buy "top", hold_thresh 1):
//     last  = H_{t-1} minus the stocks invalid on day t, in ranking order (a held stock that becomes
//             invalid has no return for the day, so it is sold; it is not one of the n_drop);
//     today = the first n_drop + K − |last| stocks of the ranking not in last;
//     comb  = last ∪ today in ranking order;
//     sell  = the stocks of last among the final n_drop of comb (so a held stock is never sold for a
//             candidate ranked below it);
//     buy   = the first |sell| + K − |last| stocks of today;
//     H_t   = (last − sell) ∪ buy, in ranking order. On day 0 last is empty, so H_0 is the top K.
//   H_t has K stocks unless fewer than |sell| + K stocks are valid (as Qlib, the sold ones are then
//   not all replaced). n_drop >= K gives the same holdings as n_drop = 0 when n_drop + K stocks are valid.
// Per day (H_{-1} = ∅):
//   gross_t    = (Σ_{n ∈ H_t, ranking order} G[n, t]) / K
//   turnover_t = Σ_n |w_t[n] − w_{t−1}[n]| = |H_t △ H_{t−1}| / K      (1 on day 0: buying K stocks)
//   cost_t     = turnover_t · cost_bps / 10⁴
//   net_t      = gross_t − cost_t
//   market_t   = the mean of G[n, t] over the valid stocks (the equal-weight market, no cost)
//   equity_t   = Π_{s<=t} (1 + net_s)
// Summary of a daily series r (gross, net, market), D = days:
//   cum_additive  = 1 + Σ_t r_t                (the original's bt_long form; summed from 1 in day order)
//   cum_compound  = Π_t (1 + r_t)
//   annual_return = mean(r) · 252
//   annual_vol    = population std(r) · √252
//   sharpe        = annual_return / annual_vol (IEEE division: 0/0 is NaN, x/0 is ±Inf; JSON null)
//   max_drawdown  = max_t (peak_t − E_t) / peak_t, E_t = Π_{s<=t}(1 + r_s), peak_t = max(1, E_0..E_t):
//                   the largest fall of compounded equity from its running peak (the start, 1, counts),
//                   a positive fraction, 0 when equity never falls
// With n_drop = 0 and cost_bps = 0, gross.cum_additive is evaluate's bt_long5 (K = 5) and bt_long10
// (K = 10) bit for bit: the same stocks, summed in the same order, divided by K, added from 1.
//
// Refused (stockmixer::Error naming the tensor, stock, day or value): shapes that are not one
// [N, days], an empty tensor, NaN or ±Inf anywhere, K < 1 or K > N, n_drop < 0, cost_bps outside
// [0, 10000], and a day with fewer than K valid stocks.
//
// read_predictions_csv(path, split): predictions.csv (`date,ticker,score,label,split`, one row per valid
// stock and day) -> score P, label G and mask M [N, days]. Tickers in order of first appearance in the
// file, rows of every split counted (that order breaks ties between equal scores); dates sorted
// ascending (as text, which orders ISO dates; day indices of digits only as numbers); a (ticker,
// date) with no row has score 0, label 0 and mask 0. Rows whose split differs from `split` are skipped
// ("" keeps every row). Errors name the file and line.
// Tests: tests/test_backtest.cpp; tests/check_backtest.py (against an independent pandas computation).
#pragma once

#include "stockmixer/common.hpp"
#include "stockmixer/io/input.hpp"
#include "stockmixer/metrics/evaluate.hpp"
#include "stockmixer/tensor.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <iterator>
#include <limits>
#include <map>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace stockmixer::metrics {

// ---- interface -------------------------------------------------------------------------------------

// The figures of one daily return series (see the header comment).
struct SeriesSummary {
  double cum_additive = 1, cum_compound = 1, annual_return = 0, annual_vol = 0, sharpe = 0, max_drawdown = 0;
  nlohmann::json to_json() const;  // NaN and ±Inf dump as null
};

struct BacktestResult {
  Index topk = 0, n_drop = 0, days = 0;
  double cost_bps = 0;
  // Daily series, [days] each.
  std::vector<double> gross, cost, net, turnover, market, equity;
  std::vector<Index> held;         // [days] how many stocks were held (K unless valid stocks were scarce)
  std::vector<Index> holdings;     // [days, topk] the held stocks in ranking order, −1 past held[t]
  SeriesSummary gross_summary, net_summary, market_summary;
  double turnover_mean = 0;
  // {"gross", "net", "market": SeriesSummary, "turnover_mean", "days", "topk", "n_drop", "cost_bps"}
  nlohmann::json to_json() const;
};

// pred, gt, mask: [N, days]. Throws stockmixer::Error on bad input (see the header comment).
template <class T>
BacktestResult backtest(TensorMap<const T> pred, TensorMap<const T> gt, TensorMap<const T> mask, Index topk,
                        Index n_drop = 0, double cost_bps = 0);
template <class T>
BacktestResult backtest(const Tensor<T>& pred, const Tensor<T>& gt, const Tensor<T>& mask, Index topk,
                        Index n_drop = 0, double cost_bps = 0);

// The summary of one daily series.
SeriesSummary summarise(const std::vector<double>& daily);

// predictions.csv as [N, days] arrays.
struct LabelledPredictions {
  std::vector<std::string> dates, tickers;  // [days], [N]
  Tensor<double> score, label, mask;        // [N, days]
};
LabelledPredictions read_predictions_csv(const std::string& path, const std::string& split);

// ---- implementation --------------------------------------------------------------------------------

namespace detail {

inline std::string backtest_where(Index n, Index t) {
  return "stock " + std::to_string(n) + ", day " + std::to_string(t);
}

template <class T>
void backtest_check_finite(const TensorMap<const T>& x, const char* name) {
  const Index days = x.dim(1);
  for (Index k = 0; k < x.size(); ++k) {
    const double v = static_cast<double>(x.data()[k]);
    if (!std::isfinite(v))
      throw Error(std::string("stockmixer::metrics::backtest: ") + name + " holds " +
                  (std::isnan(v) ? "NaN" : (v > 0 ? "+Inf" : "-Inf")) + " at " + backtest_where(k / days, k % days));
  }
}

}  // namespace detail

inline nlohmann::json SeriesSummary::to_json() const {
  return nlohmann::json{{"cum_additive", cum_additive}, {"cum_compound", cum_compound},
                        {"annual_return", annual_return}, {"annual_vol", annual_vol},
                        {"sharpe", sharpe}, {"max_drawdown", max_drawdown}};
}

inline nlohmann::json BacktestResult::to_json() const {
  return nlohmann::json{{"gross", gross_summary.to_json()}, {"net", net_summary.to_json()},
                        {"market", market_summary.to_json()}, {"turnover_mean", turnover_mean},
                        {"days", days}, {"topk", topk}, {"n_drop", n_drop}, {"cost_bps", cost_bps}};
}

inline SeriesSummary summarise(const std::vector<double>& daily) {
  SeriesSummary s;
  const double D = static_cast<double>(daily.size());
  double sum = 0, equity = 1, peak = 1, drawdown = 0;
  for (double r : daily) {
    s.cum_additive += r;
    sum += r;
    equity *= 1 + r;
    peak = std::max(peak, equity);
    drawdown = std::max(drawdown, (peak - equity) / peak);
  }
  s.cum_compound = equity;
  s.max_drawdown = drawdown;
  const double mean = daily.empty() ? std::numeric_limits<double>::quiet_NaN() : sum / D;
  double squares = 0;
  for (double r : daily) squares += (r - mean) * (r - mean);
  const double sd = std::sqrt(squares / D);
  s.annual_return = mean * 252;
  s.annual_vol = sd * std::sqrt(252.0);
  s.sharpe = s.annual_return / s.annual_vol;
  return s;
}

template <class T>
BacktestResult backtest(TensorMap<const T> pred, TensorMap<const T> gt, TensorMap<const T> mask, Index topk,
                        Index n_drop, double cost_bps) {
  const char* who = "stockmixer::metrics::backtest: ";
  if (pred.rank() != 2 || pred.shape() != gt.shape() || pred.shape() != mask.shape())
    throw Error(std::string(who) + "pred, gt and mask must share one shape [N, days]; got pred " + pred.shape().str() +
                ", gt " + gt.shape().str() + ", mask " + mask.shape().str());
  const Index N = pred.dim(0), D = pred.dim(1);
  if (N == 0 || D == 0)
    throw Error(std::string(who) + "needs at least one stock and one day, got shape " + pred.shape().str());
  if (topk < 1 || topk > N)
    throw Error(std::string(who) + "topk is " + std::to_string(topk) + ": expected 1 to the " + std::to_string(N) +
                " stocks");
  if (n_drop < 0) throw Error(std::string(who) + "n_drop is " + std::to_string(n_drop) + ": expected 0 or more");
  if (!(cost_bps >= 0 && cost_bps <= 10000))
    throw Error(std::string(who) + "cost_bps is " + std::to_string(cost_bps) + ": expected 0 to 10000 basis points");
  detail::backtest_check_finite(pred, "pred");
  detail::backtest_check_finite(gt, "gt");
  detail::backtest_check_finite(mask, "mask");

  BacktestResult r;
  r.topk = topk;
  r.n_drop = n_drop;
  r.cost_bps = cost_bps;
  r.days = D;
  const auto K = static_cast<std::size_t>(topk);
  const auto n_stocks = static_cast<std::size_t>(N);
  std::vector<double> p(n_stocks);
  std::vector<Index> order(n_stocks), ranking, last, today, comb, next, previous;
  std::vector<Index> position(n_stocks);  // position of each valid stock in the day's ranking
  std::vector<char> valid(n_stocks), in_last(n_stocks), sold(n_stocks), was_held(n_stocks, 0);
  ranking.reserve(n_stocks);
  for (auto* v : {&r.gross, &r.cost, &r.net, &r.turnover, &r.market, &r.equity}) v->resize(static_cast<std::size_t>(D));
  r.held.resize(static_cast<std::size_t>(D));
  r.holdings.assign(static_cast<std::size_t>(D) * K, -1);

  double equity = 1;
  for (Index t = 0; t < D; ++t) {
    const auto day = static_cast<std::size_t>(t);
    Index valid_count = 0;
    double market_sum = 0;
    for (Index n = 0; n < N; ++n) {
      const auto s = static_cast<std::size_t>(n);
      p[s] = static_cast<double>(pred(n, t));
      valid[s] = static_cast<double>(mask(n, t)) >= 0.5;
      if (valid[s]) {
        ++valid_count;
        market_sum += static_cast<double>(gt(n, t));
      }
    }
    if (valid_count < topk)
      throw Error(std::string(who) + "day " + std::to_string(t) + " has " + std::to_string(valid_count) +
                  " valid stocks (mask >= 0.5), fewer than topk = " + std::to_string(topk));
    r.market[day] = market_sum / static_cast<double>(valid_count);

    // The day's ranking: np.argsort(P[:, t]) from the largest down, valid stocks only (evaluate's order).
    numpy_argsort(order.data(), p.data(), N);
    ranking.clear();
    for (Index j = N - 1; j >= 0; --j) {
      const Index n = order[static_cast<std::size_t>(j)];
      if (valid[static_cast<std::size_t>(n)]) {
        position[static_cast<std::size_t>(n)] = static_cast<Index>(ranking.size());
        ranking.push_back(n);
      }
    }

    next.clear();
    if (n_drop == 0) {
      next.assign(ranking.begin(), ranking.begin() + topk);
    } else {
      // Qlib's TopkDropout on the held stocks still valid today.
      last.clear();
      for (Index n : previous)
        if (valid[static_cast<std::size_t>(n)]) last.push_back(n);
      std::sort(last.begin(), last.end(), [&](Index a, Index b) {
        return position[static_cast<std::size_t>(a)] < position[static_cast<std::size_t>(b)];
      });
      for (Index n : last) in_last[static_cast<std::size_t>(n)] = 1;
      const std::size_t want = static_cast<std::size_t>(n_drop) + K - last.size();
      today.clear();
      for (Index n : ranking) {
        if (today.size() == want) break;
        if (!in_last[static_cast<std::size_t>(n)]) today.push_back(n);
      }
      comb.clear();
      std::merge(last.begin(), last.end(), today.begin(), today.end(), std::back_inserter(comb),
                 [&](Index a, Index b) {
                   return position[static_cast<std::size_t>(a)] < position[static_cast<std::size_t>(b)];
                 });
      const std::size_t drop_from = comb.size() - std::min(comb.size(), static_cast<std::size_t>(n_drop));
      std::size_t sells = 0;
      for (std::size_t j = drop_from; j < comb.size(); ++j)
        if (in_last[static_cast<std::size_t>(comb[j])]) {
          sold[static_cast<std::size_t>(comb[j])] = 1;
          ++sells;
        }
      const std::size_t buys = std::min(today.size(), sells + K - last.size());
      for (Index n : last)
        if (!sold[static_cast<std::size_t>(n)]) next.push_back(n);
      next.insert(next.end(), today.begin(), today.begin() + static_cast<std::ptrdiff_t>(buys));
      std::sort(next.begin(), next.end(), [&](Index a, Index b) {
        return position[static_cast<std::size_t>(a)] < position[static_cast<std::size_t>(b)];
      });
      for (Index n : last) in_last[static_cast<std::size_t>(n)] = sold[static_cast<std::size_t>(n)] = 0;
    }

    // Returns, turnover and cost of the day's holdings.
    double sum = 0;
    std::size_t changed = previous.size();  // every stock held yesterday, less those kept
    for (std::size_t j = 0; j < next.size(); ++j) {
      const Index n = next[j];
      sum += static_cast<double>(gt(n, t));
      r.holdings[day * K + j] = n;
      if (was_held[static_cast<std::size_t>(n)]) --changed;
      else ++changed;
    }
    for (Index n : previous) was_held[static_cast<std::size_t>(n)] = 0;
    for (Index n : next) was_held[static_cast<std::size_t>(n)] = 1;
    previous.swap(next);
    r.held[day] = static_cast<Index>(previous.size());
    r.gross[day] = sum / static_cast<double>(topk);
    r.turnover[day] = static_cast<double>(changed) / static_cast<double>(topk);
    r.cost[day] = r.turnover[day] * cost_bps / 1e4;
    r.net[day] = r.gross[day] - r.cost[day];
    equity *= 1 + r.net[day];
    r.equity[day] = equity;
  }

  r.gross_summary = summarise(r.gross);
  r.net_summary = summarise(r.net);
  r.market_summary = summarise(r.market);
  double turnover_sum = 0;
  for (double x : r.turnover) turnover_sum += x;
  r.turnover_mean = turnover_sum / static_cast<double>(D);
  return r;
}

template <class T>
BacktestResult backtest(const Tensor<T>& pred, const Tensor<T>& gt, const Tensor<T>& mask, Index topk, Index n_drop,
                        double cost_bps) {
  return backtest<T>(pred.map(), gt.map(), mask.map(), topk, n_drop, cost_bps);
}

namespace detail {

// The cells of one predictions.csv line, each without surrounding blanks (the format has no quotes).
inline std::vector<std::string> split_csv_line(const std::string& line) {
  std::vector<std::string> cells;
  std::size_t start = 0;
  for (;;) {
    const std::size_t comma = line.find(',', start);
    std::string cell = line.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    const auto first = cell.find_first_not_of(" \t\r");
    const auto end = cell.find_last_not_of(" \t\r");
    cells.push_back(first == std::string::npos ? std::string() : cell.substr(first, end - first + 1));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return cells;
}

// A day index written as digits only sorts as a number; anything else (ISO dates) as text.
inline bool day_before(const std::string& a, const std::string& b) {
  const bool da = !a.empty() && a.find_first_not_of("0123456789") == std::string::npos;
  const bool db = !b.empty() && b.find_first_not_of("0123456789") == std::string::npos;
  if (da && db && a.size() != b.size()) return a.size() < b.size();
  return a < b;
}

}  // namespace detail

inline LabelledPredictions read_predictions_csv(const std::string& path, const std::string& split) {
  constexpr std::uint64_t kMaxBytes = std::uint64_t{4} << 30;  // 4 GB: ~60 M rows
  const std::string text = io::read_regular_file(path, "predictions file (date,ticker,score,label,split)", kMaxBytes);
  struct Row {
    std::size_t date, ticker;
    double score, label;
    Index line;
  };
  std::vector<Row> rows;
  std::vector<std::string> dates, tickers;
  std::unordered_map<std::string, std::size_t> date_id, ticker_id;
  auto at = [&path](Index line) { return path + ":" + std::to_string(line) + ": "; };

  std::size_t pos = 0;
  Index line_no = 0;
  bool header = false;
  while (pos < text.size()) {
    std::size_t eol = text.find('\n', pos);
    if (eol == std::string::npos) eol = text.size();
    const std::string line = text.substr(pos, eol - pos);
    pos = eol + 1;
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;  // blank lines
    const std::vector<std::string> cells = detail::split_csv_line(line);
    if (!header) {
      if (cells != std::vector<std::string>{"date", "ticker", "score", "label", "split"})
        throw Error(at(line_no) + "expected the header 'date,ticker,score,label,split', got '" + line + "'");
      header = true;
      continue;
    }
    if (cells.size() != 5)
      throw Error(at(line_no) + "expected 5 cells (date,ticker,score,label,split), got " +
                  std::to_string(cells.size()));
    if (cells[0].empty() || cells[1].empty())
      throw Error(at(line_no) + "empty " + (cells[0].empty() ? "date" : "ticker"));
    const auto k = ticker_id.emplace(cells[1], tickers.size());  // every row's ticker: the file's order
    if (k.second) tickers.push_back(cells[1]);
    if (!split.empty() && cells[4] != split) continue;
    double values[2];
    for (int c = 0; c < 2; ++c) {
      const std::string& cell = cells[static_cast<std::size_t>(2 + c)];
      const char* name = c == 0 ? "score" : "label";
      const auto [end, ec] = std::from_chars(cell.data(), cell.data() + cell.size(), values[c]);
      if (cell.empty() || ec != std::errc() || end != cell.data() + cell.size())
        throw Error(at(line_no) + name + " '" + cell + "' is not a number");
      if (!std::isfinite(values[c])) throw Error(at(line_no) + name + " is " + cell + ": expected a finite number");
    }
    const auto d = date_id.emplace(cells[0], dates.size());
    if (d.second) dates.push_back(cells[0]);
    rows.push_back({d.first->second, k.first->second, values[0], values[1], line_no});
  }
  if (!header) throw Error(path + ": empty file: expected the header 'date,ticker,score,label,split'");
  if (rows.empty())
    throw Error(path + ": no rows" + (split.empty() ? std::string() : " with split '" + split + "'"));

  // Dates ascending; a row's column is its date's place in that order.
  std::vector<std::size_t> by_time(dates.size());
  for (std::size_t j = 0; j < by_time.size(); ++j) by_time[j] = j;
  std::sort(by_time.begin(), by_time.end(),
            [&](std::size_t a, std::size_t b) { return detail::day_before(dates[a], dates[b]); });
  std::vector<std::size_t> column(dates.size());
  LabelledPredictions out;
  for (std::size_t j = 0; j < by_time.size(); ++j) {
    column[by_time[j]] = j;
    out.dates.push_back(dates[by_time[j]]);
  }
  out.tickers = tickers;
  const Shape shape{static_cast<Index>(tickers.size()), static_cast<Index>(dates.size())};
  out.score = Tensor<double>(shape);  // zeros: a (ticker, date) without a row stays 0 with mask 0
  out.label = Tensor<double>(shape);
  out.mask = Tensor<double>(shape);
  std::vector<Index> first_line(static_cast<std::size_t>(shape.size()), 0);
  for (const Row& row : rows) {
    const auto n = static_cast<Index>(row.ticker), t = static_cast<Index>(column[row.date]);
    Index& seen = first_line[static_cast<std::size_t>(n * shape[1] + t)];
    if (seen)
      throw Error(at(row.line) + "ticker '" + tickers[row.ticker] + "' on date '" + dates[row.date] +
                  "' appears twice (first on line " + std::to_string(seen) + ")");
    seen = row.line;
    out.score.map()(n, t) = row.score;
    out.label.map()(n, t) = row.label;
    out.mask.map()(n, t) = 1;
  }
  return out;
}

}  // namespace stockmixer::metrics
