// cli/predict.hpp — stockmixer predict: scores a universe with saved weights; with --tickers or --date,
// also a labelled OUT.csv beside the .npy.
//
// The model outputs a price level: the next close, in the normalised units of the input's close column.
// What ranks stocks is its return ratio against the base price, score = (prediction - base) / base (the
// rr the loss ranks by, SPEC §4), with base = x[:, T-1, C-1], the window's last close: what training's
// get_batch takes as the base (price[:, offset + T - 1], the close column of eod on that day).
// --device cuda runs the model on the device (cuda/step.hpp's predict, the checkpoint's parameters
// uploaded); everything else (reading, checks, the CSV) is the same code.
#pragma once

#include "common.hpp"

#include <stockmixer/data/eod.hpp>
#include <stockmixer/io/files.hpp>

#include <charconv>

namespace stockmixer::cli {

// The shortest text that reads back to the same float or double.
template <class T>
void append_shortest(std::string& out, T v) {
  char text[64];
  const std::to_chars_result r = std::to_chars(text, text + sizeof text, v);
  out.append(text, r.ptr);
}

// Where the labelled predictions go: --out with its extension replaced by .csv.
inline std::string labelled_path(const Options& a) {
  fs::path csv = a.str("out");
  csv.replace_extension(".csv");
  if (csv == fs::path(a.str("out")))
    a.fail("--out " + a.str("out") + ": ends in .csv, the name of the labelled predictions beside it: give the .npy "
           "another name (P.npy gives P.csv)");
  return csv.string();
}

template <class T>
int predict(const Options& a) {
  const Device device = device_of(a);
  require_output_file(a, "out");
  const bool labelled = !a.str("tickers").empty() || a.given("date");
  std::string csv_path;
  std::vector<std::string> tickers;
  if (labelled) {
    csv_path = labelled_path(a);
    std::error_code ec;
    const fs::file_type type = fs::symlink_status(csv_path, ec).type();
    if (type != fs::file_type::not_found && type != fs::file_type::regular)
      a.fail(csv_path + " (the labelled predictions beside --out): exists and is " + file_kind(type) +
             ", not a regular file: not replaced");
    const std::string& date = a.str("date");
    if (date.find_first_of(",\"\r\n") != std::string::npos)
      a.fail("--date '" + date + "' holds a comma, a quote or a line break, which a CSV field cannot hold unquoted");
    if (!a.str("tickers").empty()) {
      io::regular_file_size(a.str("tickers"), "tickers file (--tickers)");  // a FIFO would block the read
      tickers = data::read_tickers(a.str("tickers"));
      for (const std::string& t : tickers)
        if (t.find_first_of(",\"") != std::string::npos)
          a.fail("--tickers " + a.str("tickers") + ": ticker '" + t + "' holds a comma or a quote, which a CSV field "
                 "cannot hold unquoted");
    }
  }
  allocating("the model of " + a.str("weights"));
  StockMixer<T> model = load_checkpoint<T>(a.str("weights"));
  const StockMixerConfig& c = model.config();
  if (!tickers.empty() && static_cast<Index>(tickers.size()) != c.stocks)
    a.fail("--tickers " + a.str("tickers") + ": " + std::to_string(tickers.size()) + " tickers, but the weights " +
           a.str("weights") + " score N = " + std::to_string(c.stocks) + " stocks");
  const Tensor<T> x = read_input<T>(a.str("input"), c);
  allocating("the prediction of " + a.str("input") + " and the model's activations");
#if defined(STOCKMIXER_HAVE_CUDA)
  Tensor<T> device_pred;
  if (device == Device::cuda) {
    device_pred.resize({c.stocks, 1});
    device_trainer(model, T(0))->predict(device_pred.data(), x.data());
  }
  const Tensor<T>& pred = device == Device::cuda ? device_pred : model.predict(x.map());
#else
  (void)device;  // cpu: device_of refused cuda in a build without the unit
  const Tensor<T>& pred = model.predict(x.map());
#endif
  // Finite weights and inputs can still overflow (weights near the float range): refuse what no caller
  // can rank by rather than write it.
  const Index bad = count_nonfinite(pred.data(), pred.size());
  if (bad > 0)
    a.fail(std::to_string(bad) + " of the " + std::to_string(pred.size()) +
           " predictions are not finite (NaN or Inf), although the weights (" + a.str("weights") + ") and the input (" +
           a.str("input") + ") are: nothing written to " + a.str("out"));
  if (labelled) {
    std::string csv = "date,ticker,score,prediction\n";
    for (Index i = 0; i < c.stocks; ++i) {
      const T base = x(i, c.lookback - 1, c.features - 1);
      if (!(base != T(0)))
        a.fail("the base price of stock " + std::to_string(i) + " (x[" + std::to_string(i) + ", " +
               std::to_string(c.lookback - 1) + ", " + std::to_string(c.features - 1) + "] of " + a.str("input") +
               ", the window's last close) is 0: no return ratio; nothing written");
      // As the loss computes rr: in T, from the prediction and the base.
      const T score = (pred(i, 0) - base) / base;
      if (!std::isfinite(static_cast<double>(score)))
        a.fail("the score of stock " + std::to_string(i) + " is not finite (prediction " +
               std::to_string(static_cast<double>(pred(i, 0))) + ", base " + std::to_string(static_cast<double>(base)) +
               "); nothing written");
      csv += a.str("date") + "," + (tickers.empty() ? std::to_string(i) : tickers[static_cast<std::size_t>(i)]) + ",";
      append_shortest(csv, score);
      csv += ",";
      append_shortest(csv, pred(i, 0));
      csv += "\n";
    }
    io::write_npy<T>(a.str("out"), pred.map());
    io::write_file(csv_path, csv);
    return 0;
  }
  io::write_npy<T>(a.str("out"), pred.map());
  return 0;
}

template <class T> struct Predict { static int run(const Options& a) { return predict<T>(a); } };

inline int predict_command(int argc, char** argv) {
  Options a("predict", {required("weights", "StockMixer weights (.safetensors, PyTorch state_dict names)"),
                        required("input", "features X [N, T, C], float32 or float64 .npy"),
                        required("out", "predictions [N, 1] (.npy, dtype of --precision)"),
                        text("tickers", "", "a file of the N tickers, one a line: also write OUT.csv (date,ticker,score,"
                                            "prediction) beside OUT"),
                        text("date", "", "the date the predictions are for (the CSV's date column): also write OUT.csv"),
                        precision_option(), device_option()});
  if (!parse(a,
             "Scores a universe with saved weights (N, T, C, M are read from the weights). The model outputs a price\n"
             "level (the next close, in the input's normalised units); with --tickers or --date it also writes OUT.csv\n"
             "beside OUT (P.npy gives P.csv): date, ticker, score = (prediction - base) / base, the return ratio that\n"
             "ranks stocks, with base = X[:, T-1, C-1], the window's last close, and the prediction itself. Without\n"
             "--tickers a stock is named by its row; without --date the date column is empty. --device cuda runs the\n"
             "model on the device (docs/cuda.md).",
             argc, argv))
    return 0;
  a.validate();
  return with_precision<Predict>(a);
}

}  // namespace stockmixer::cli
