// python/stockmixer_py.cpp — the `stockmixer` Python module: the library's model, checkpoints, data
// loaders, evaluator and training job, with numpy arrays in and out (docs/python.md).
//
// What it binds, and what each call runs:
//   StockMixer(stocks, ...), load_checkpoint   StockMixer<T> (T = float or double: the model's dtype),
//                                              load_checkpoint<T>, save_checkpoint
//   m.predict(x)                               StockMixer<T>::predict, the result copied into a new array
//   m.gradients(x, gt, base, mask, alpha)      train::loss_gradients (what `stockmixer gradients` writes)
//   m.state_dict(), m.load_state_dict(d)       the parameter store's name table, copied out and in
//   evaluate(pred, gt, mask)                   metrics::evaluate
//   load_market, load_panel, synthetic_market  train::load_data (the markets `stockmixer train` reads)
//   train(**options)                           train::train_options() read by Options::apply_json, then
//                                              train::train_job (a market in memory: train_job<T>)
//
// Arrays. Inputs the engine only reads (x, gt, base, mask, evaluate's arrays) are used in place: they
// must be C-contiguous, aligned, native-endian and of the model's dtype (evaluate: float32 or float64,
// all three alike); anything else is refused with a message saying what to pass, never copied behind
// the caller's back. What the engine returns is a new array: predict's output is copied out of the
// model's buffer (which the next call reuses); gradients', load_market's and state_dict's arrays are
// handed over without a further copy (gradients, load_market) or copied from the store (state_dict).
//
// Threads and the GIL. Engine work runs with the GIL released, so other Python threads run meanwhile;
// one model serves one call at a time (a mutex per model: its buffers are reused by every call). A
// model's mutex is only ever taken with the GIL released, and nothing done under it touches Python, so
// the two locks cannot deadlock. train's callbacks (on_epoch, the progress lines) take the GIL for the
// time of the call.
//
// Errors. A stockmixer::Error becomes stockmixer.Error (a subclass of Exception) with the C++ message;
// std::bad_alloc becomes MemoryError; an exception raised by on_epoch stops the run and reaches the
// caller unchanged.
#include <stockmixer/data/eod.hpp>
#include <stockmixer/metrics/evaluate.hpp>
#include <stockmixer/model.hpp>
#include <stockmixer/options.hpp>
#include <stockmixer/parallel.hpp>
#include <stockmixer/train/gradients.hpp>
#include <stockmixer/train/job.hpp>

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>
#include <pybind11/stl/filesystem.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cmath>
#include <exception>
#include <filesystem>
#include <memory>
#include <mutex>
#include <ostream>
#include <set>
#include <streambuf>
#include <string>
#include <utility>
#include <variant>
#include <vector>

namespace py = pybind11;
using stockmixer::Error;
using stockmixer::Index;
using stockmixer::Shape;
using stockmixer::StockMixer;
using stockmixer::Tensor;
using stockmixer::TensorMap;

namespace {

// ---- dtypes and arrays -----------------------------------------------------------------------------

enum class DType { f32, f64 };

const char* dtype_name(DType d) { return d == DType::f32 ? "float32" : "float64"; }

std::string str_of(py::handle h) { return py::str(h).cast<std::string>(); }

// "float32", "float64", np.float32, np.dtype("f8"), ...: whatever numpy reads as a dtype.
DType parse_dtype(const py::object& spec, const std::string& who) {
  const py::dtype d = py::dtype::from_args(spec);
  if (d.is(py::dtype::of<float>())) return DType::f32;
  if (d.is(py::dtype::of<double>())) return DType::f64;
  throw Error(who + ": dtype " + str_of(d) + " is not supported (float32 or float64)");
}

std::string shape_text(const py::array& a) {
  std::string s = "[";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) s += (i ? ", " : "") + std::to_string(a.shape(i));
  return s + "]";
}

std::string array_dtype(const py::array& a) { return str_of(a.dtype()); }

// A read-only view of `a`'s memory as a tensor of T: no copy. Refused (naming `name`, what it is and
// what to pass instead) unless its dtype is T's, native-endian, and it is C-contiguous and aligned.
template <class T>
TensorMap<const T> view(const py::array& a, const std::string& name) {
  const char* want = std::is_same_v<T, float> ? "float32" : "float64";
  if (!a.dtype().is(py::dtype::of<T>()))
    throw Error(name + ": dtype " + array_dtype(a) + ", expected " + want + " (pass np.ascontiguousarray(" + name +
                ", dtype=np." + want + "))");
  if (a.ndim() > Shape::kMaxRank)
    throw Error(name + ": " + std::to_string(a.ndim()) + " dimensions " + shape_text(a) + ", at most " +
                std::to_string(Shape::kMaxRank) + " are supported");
  constexpr int kAligned = py::detail::npy_api::NPY_ARRAY_ALIGNED_;
  if (!(a.flags() & py::array::c_style) || !(a.flags() & kAligned))
    throw Error(name + ": the array " + shape_text(a) + " is not C-contiguous and aligned (a slice, a transpose or "
                "a Fortran-ordered array): pass np.ascontiguousarray(" + name + ")");
  std::vector<Index> dims(a.shape(), a.shape() + a.ndim());
  return TensorMap<const T>(static_cast<const T*>(a.data()), Shape(dims.begin(), dims.end()));
}

// A new numpy array that owns `t` (moved, not copied): numpy frees the tensor with the array.
template <class T>
py::array to_numpy(Tensor<T>&& t) {
  auto* owned = new Tensor<T>(std::move(t));
  py::capsule owner(owned, [](void* p) { delete static_cast<Tensor<T>*>(p); });
  std::vector<py::ssize_t> shape;
  for (int a = 0; a < owned->rank(); ++a) shape.push_back(static_cast<py::ssize_t>(owned->dim(a)));
  return py::array_t<T>(shape, owned->data(), owner);
}

template <class T>
Index first_nonfinite(TensorMap<const T> t) {
  for (Index i = 0; i < t.size(); ++i)
    if (!std::isfinite(static_cast<double>(t.data()[i]))) return i;
  return -1;
}

// ---- JSON <-> Python ---------------------------------------------------------------------------------

// JSON to Python: objects keep their key order; a NaN or ±Inf the library stored as a number (metrics
// JSON dumps them as null) stays a float.
py::object to_python(const nlohmann::json& j) {
  switch (j.type()) {
    case nlohmann::json::value_t::null: return py::none();
    case nlohmann::json::value_t::boolean: return py::bool_(j.get<bool>());
    case nlohmann::json::value_t::number_integer: return py::int_(j.get<std::int64_t>());
    case nlohmann::json::value_t::number_unsigned: return py::int_(j.get<std::uint64_t>());
    case nlohmann::json::value_t::number_float: return py::float_(j.get<double>());
    case nlohmann::json::value_t::string: return py::str(j.get<std::string>());
    case nlohmann::json::value_t::array: {
      py::list l;
      for (const auto& e : j) l.append(to_python(e));
      return std::move(l);
    }
    case nlohmann::json::value_t::object: {
      py::dict d;
      for (const auto& [k, v] : j.items()) d[py::str(k)] = to_python(v);
      return std::move(d);
    }
    default: return py::none();
  }
}

// One keyword argument's value as the JSON Options::apply_json reads: bool, int, float or str.
nlohmann::json option_value(const std::string& key, const py::handle& v) {
  if (py::isinstance<py::bool_>(v)) return v.cast<bool>();
  if (py::isinstance<py::int_>(v)) {
    try {
      return v.cast<long long>();
    } catch (const py::cast_error&) {
      throw Error("stockmixer.train: '" + key + "' is " + py::repr(v).cast<std::string>() +
                  ", beyond the range of a 64-bit integer");
    }
  }
  if (py::isinstance<py::float_>(v)) return v.cast<double>();
  if (py::isinstance<py::str>(v)) return v.cast<std::string>();
  if (py::hasattr(v, "__fspath__")) return py::module_::import("os").attr("fspath")(v).cast<std::string>();
  throw Error("stockmixer.train: '" + key + "' is a " + py::type::of(v).attr("__name__").cast<std::string>() +
              " (" + py::repr(v).cast<std::string>() + "); options take a bool, an int, a float or a str");
}

// ---- the model ---------------------------------------------------------------------------------------

// A StockMixer of either dtype. Every call that reads or writes its weights or buffers holds `mutex`,
// taken with the GIL released.
class Model {
 public:
  template <class T>
  explicit Model(StockMixer<T>&& m) : model_(std::make_unique<StockMixer<T>>(std::move(m))) {}

  DType dtype() const { return std::holds_alternative<Ptr<float>>(model_) ? DType::f32 : DType::f64; }
  template <class F>
  decltype(auto) visit(F&& f) {
    return std::visit([&](auto& p) -> decltype(auto) { return f(*p); }, model_);
  }
  const stockmixer::StockMixerConfig& config() const {
    return std::visit([](const auto& p) -> const stockmixer::StockMixerConfig& { return p->config(); }, model_);
  }
  std::mutex& mutex() { return mutex_; }

 private:
  template <class T>
  using Ptr = std::unique_ptr<StockMixer<T>>;
  std::variant<Ptr<float>, Ptr<double>> model_;
  std::mutex mutex_;
};

std::string config_text(const stockmixer::StockMixerConfig& c) {
  return "N = " + std::to_string(c.stocks) + ", T = " + std::to_string(c.lookback) + ", C = " +
         std::to_string(c.features) + ", M = " + std::to_string(c.market);
}

std::unique_ptr<Model> new_model(Index stocks, Index lookback, Index features, Index market, std::uint64_t seed,
                                 const py::object& dtype) {
  const stockmixer::StockMixerConfig c{stocks, lookback, features, market};
  if (parse_dtype(dtype, "stockmixer.StockMixer") == DType::f32) return std::make_unique<Model>(StockMixer<float>(c, seed));
  return std::make_unique<Model>(StockMixer<double>(c, seed));
}

std::unique_ptr<Model> load_model(const std::filesystem::path& path, DType dtype) {
  py::gil_scoped_release unlocked;
  if (dtype == DType::f32) return std::make_unique<Model>(stockmixer::load_checkpoint<float>(path.string()));
  return std::make_unique<Model>(stockmixer::load_checkpoint<double>(path.string()));
}

// x [N, T, C] of the model's dtype -> a new array [N, 1]. Refuses non-finite predictions as `stockmixer
// predict` does, naming the input when it holds non-finite values (the check runs on the N outputs, so
// the call's cost does not grow with x).
py::array predict(Model& model, const py::array& x) {
  return model.visit([&](auto& m) -> py::array {
    using T = typename std::decay_t<decltype(m)>::value_type;
    const TensorMap<const T> in = view<T>(x, "x");
    const stockmixer::StockMixerConfig& c = m.config();
    const Shape want{c.stocks, c.lookback, c.features};
    if (in.shape() != want)
      throw Error("predict: x has shape " + in.shape().str() + ", the model expects [N, T, C] = " + want.str());
    py::array_t<T> out({static_cast<py::ssize_t>(c.stocks), py::ssize_t{1}});
    T* dst = out.mutable_data();
    Index bad = 0;
    {
      py::gil_scoped_release unlocked;
      std::lock_guard<std::mutex> lock(model.mutex());
      const Tensor<T>& pred = m.predict(in);
      for (Index i = 0; i < pred.size(); ++i) {
        dst[i] = pred.data()[i];
        bad += std::isfinite(static_cast<double>(dst[i])) ? 0 : 1;
      }
    }
    if (bad > 0) {
      const Index at = first_nonfinite(in);
      throw Error("predict: " + std::to_string(bad) + " of the " + std::to_string(c.stocks) +
                  " predictions are not finite (NaN or Inf), " +
                  (at >= 0 ? "x holds a non-finite value at flat index " + std::to_string(at)
                           : std::string("although the weights and x are finite")));
    }
    return std::move(out);
  });
}

// The engine's own time for predict(x), without Python: `repeats` calls of StockMixer::predict, each
// timed alone, in seconds (what the binding's overhead is measured against; docs/python.md).
std::vector<double> time_predict(Model& model, const py::array& x, int repeats) {
  if (repeats < 1) throw Error("time_predict: repeats must be at least 1, got " + std::to_string(repeats));
  return model.visit([&](auto& m) {
    using T = typename std::decay_t<decltype(m)>::value_type;
    const TensorMap<const T> in = view<T>(x, "x");
    std::vector<double> seconds;
    py::gil_scoped_release unlocked;
    std::lock_guard<std::mutex> lock(model.mutex());
    for (int r = 0; r < repeats; ++r) {
      const auto start = std::chrono::steady_clock::now();
      m.predict(in);
      seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    }
    return seconds;
  });
}

// What `stockmixer gradients` writes, as a dict of new arrays (train/gradients.hpp).
py::dict gradients(Model& model, const py::array& x, const py::array& gt, const py::array& base,
                   const py::array& mask, double alpha) {
  if (!(alpha >= 0 && alpha <= 1e6)) throw Error("gradients: alpha must be in [0, 1e6], got " + std::to_string(alpha));
  return model.visit([&](auto& m) {
    using T = typename std::decay_t<decltype(m)>::value_type;
    const TensorMap<const T> vx = view<T>(x, "x"), vgt = view<T>(gt, "gt"), vbase = view<T>(base, "base"),
                             vmask = view<T>(mask, "mask");
    stockmixer::train::NamedTensors<T> tensors;
    std::string bad;
    {
      py::gil_scoped_release unlocked;
      std::lock_guard<std::mutex> lock(model.mutex());
      tensors = stockmixer::train::loss_gradients(m, vx, vgt, vbase, vmask, static_cast<T>(alpha));
      bad = stockmixer::train::nonfinite_report(tensors);
      if (!bad.empty())
        for (const auto& [name, t] : {std::pair<const char*, TensorMap<const T>>{"x", vx}, {"gt", vgt}, {"base", vbase},
                                      {"mask", vmask}})
          if (const Index at = first_nonfinite(t); at >= 0)
            bad += "\n  the input " + std::string(name) + " holds a non-finite value at flat index " + std::to_string(at);
    }
    if (!bad.empty()) throw Error("gradients: " + bad + "\n(the loss or its gradients overflowed for these weights and inputs)");
    py::dict out;
    for (auto& [name, t] : tensors) out[py::str(name)] = to_numpy(std::move(t));
    return out;
  });
}

// Every parameter under its state_dict name, in state_dict order, as a new array (a copy).
py::dict state_dict(Model& model) {
  return model.visit([&](auto& m) {
    using T = typename std::decay_t<decltype(m)>::value_type;
    stockmixer::train::NamedTensors<T> copies;
    {
      py::gil_scoped_release unlocked;
      std::lock_guard<std::mutex> lock(model.mutex());
      for (const auto& p : m.parameters()) {
        Tensor<T> t(p.shape());
        std::copy(p.value(), p.value() + p.size(), t.data());
        copies.emplace_back(p.name(), std::move(t));
      }
    }
    py::dict d;
    for (auto& [name, t] : copies) d[py::str(name)] = to_numpy(std::move(t));
    return d;
  });
}

// Every name of the model's state_dict, each with its shape, float32 or float64, every value finite in
// the model's dtype, and no other name: all checked before any value is written (as io::load_parameters
// checks a file). Values may be numpy arrays or anything np.asarray reads (a CPU torch tensor).
void load_state_dict(Model& model, const py::dict& d) {
  model.visit([&](auto& m) {
    using T = typename std::decay_t<decltype(m)>::value_type;
    std::vector<std::pair<const stockmixer::Parameter<T>*, py::array_t<T, py::array::c_style | py::array::forcecast>>> values;
    std::set<std::string> names;
    for (const auto& p : m.parameters()) {
      names.insert(p.name());
      const py::str key(p.name());
      if (!d.contains(key)) throw Error("load_state_dict: missing '" + p.name() + "' " + p.shape().str());
      const py::array a = py::array::ensure(d[key]);
      if (!a) throw Error("load_state_dict: '" + p.name() + "' is not an array");
      if (!a.dtype().is(py::dtype::of<float>()) && !a.dtype().is(py::dtype::of<double>()))
        throw Error("load_state_dict: '" + p.name() + "' has dtype " + array_dtype(a) + " (expected float32 or float64)");
      std::vector<Index> dims(a.shape(), a.shape() + a.ndim());
      if (a.ndim() > Shape::kMaxRank || Shape(dims.begin(), dims.end()) != p.shape())
        throw Error("load_state_dict: '" + p.name() + "' has shape " + shape_text(a) + ", expected " + p.shape().str());
      // A copy only where dtype or layout differ; float64 beyond float32's range becomes inf (refused below).
      auto converted = py::array_t<T, py::array::c_style | py::array::forcecast>::ensure(a);
      if (!converted)
        throw Error("load_state_dict: '" + p.name() + "' cannot be read as " +
                    (std::is_same_v<T, float> ? "float32" : "float64"));
      const T* v = converted.data();
      for (Index i = 0; i < p.size(); ++i)
        if (!std::isfinite(static_cast<double>(v[i])))
          throw Error("load_state_dict: '" + p.name() + "' " + p.shape().str() + " holds " +
                      std::to_string(static_cast<double>(v[i])) + " at flat index " + std::to_string(i) +
                      (std::is_same_v<T, float> && std::isfinite(py::cast<double>(a.attr("flat")[py::int_(i)]))
                           ? " (beyond the range of float32)"
                           : "") +
                      ": weights must be finite");
      values.emplace_back(&p, std::move(converted));
    }
    for (const auto& [key, value] : d) {
      const std::string name = py::str(key).cast<std::string>();
      if (!names.count(name)) throw Error("load_state_dict: unexpected key '" + name + "' (not a parameter of this model)");
    }
    py::gil_scoped_release unlocked;  // the arrays stay referenced by `values`; only their memory is read
    std::lock_guard<std::mutex> lock(model.mutex());
    for (const auto& [p, a] : values) std::copy(a.data(), a.data() + p->size(), p->value());
  });
}

void save_model(Model& model, const std::filesystem::path& path) {
  model.visit([&](auto& m) {
    py::gil_scoped_release unlocked;
    std::lock_guard<std::mutex> lock(model.mutex());
    stockmixer::save_checkpoint(path.string(), m);
  });
}

// ---- evaluate and the data loaders ---------------------------------------------------------------

// metrics::evaluate on three [N, days] arrays of one dtype, read in place.
py::dict evaluate(const py::array& pred, const py::array& gt, const py::array& mask) {
  auto run = [&](auto tag) {
    using T = decltype(tag);
    const TensorMap<const T> p = view<T>(pred, "pred"), g = view<T>(gt, "gt"), k = view<T>(mask, "mask");
    nlohmann::json j;
    {
      py::gil_scoped_release unlocked;
      j = stockmixer::metrics::evaluate<T>(p, g, k).to_json();
    }
    return to_python(j).cast<py::dict>();
  };
  if (pred.dtype().is(py::dtype::of<float>())) return run(float{});
  if (pred.dtype().is(py::dtype::of<double>())) return run(double{});
  throw Error("evaluate: pred has dtype " + array_dtype(pred) + ", expected float32 or float64 (gt and mask alike)");
}

// A market as `stockmixer train` reads it: train::load_data on train options (`given`, read and checked
// by the same table as the tool's, `who` named as their origin in messages), as a dict: its arrays (moved
// out of the loader's tensors, not copied), the tickers, each day's date (where the data has dates), the
// horizon and the data's default split.
py::dict market_dict(const nlohmann::json& given, const py::object& dtype, const std::string& who) {
  stockmixer::Options o("train", stockmixer::train::train_options());
  o.apply_json(given, who);
  o.validate();
  auto run = [&](auto tag) {
    using T = decltype(tag);
    stockmixer::train::RunData<T> d;
    {
      py::gil_scoped_release unlocked;
      d = stockmixer::train::load_data<T>(o);
    }
    py::dict out;
    out["eod"] = to_numpy(std::move(d.market.eod));
    out["mask"] = to_numpy(std::move(d.market.mask));
    out["gt"] = to_numpy(std::move(d.market.gt));
    out["price"] = to_numpy(std::move(d.market.price));
    out["tickers"] = py::cast(d.tickers);
    out["dates"] = py::cast(d.dates);
    out["steps"] = d.market.steps;
    out["valid_index"] = d.valid_index;
    out["test_index"] = d.test_index;
    return out;
  };
  if (parse_dtype(dtype, who) == DType::f32) return run(float{});
  return run(double{});
}

// A folder laid out as ../shared/data/NASDAQ (`stockmixer train --data DIR`).
py::dict load_market(const std::filesystem::path& dir, const std::string& market, const std::filesystem::path& tickers,
                     Index steps, const py::object& dtype) {
  if (dir.empty()) throw Error("stockmixer.load_market: dir is empty (a folder laid out as ../shared/data/NASDAQ)");
  nlohmann::json given = {{"data", dir.string()}, {"market", market}, {"steps", std::to_string(steps)}};
  if (!tickers.empty()) given["tickers"] = tickers.string();
  return market_dict(given, dtype, "stockmixer.load_market");
}

// A market of one's own from one long CSV (`stockmixer train --panel FILE`; data/panel.hpp,
// docs/own_market.md): features "columns" (as given) or "original" (from raw prices, normalised "causal" or
// "max"); its tickers and dates, split 60/20/20 of its days by default.
py::dict load_panel(const std::filesystem::path& csv, const std::string& features, const py::object& normalise,
                    Index steps, const py::object& dtype) {
  if (csv.empty()) throw Error("stockmixer.load_panel: csv is empty (a file of rows date,ticker,<features>)");
  nlohmann::json given = {{"panel", csv.string()}, {"features", features}, {"steps", std::to_string(steps)}};
  if (!normalise.is_none()) given["normalise"] = normalise.cast<std::string>();
  return market_dict(given, dtype, "stockmixer.load_panel");
}

// The built-in synthetic market (`stockmixer train` without --data; docs/synthetic_market.md).
py::dict synthetic_market(Index stocks, Index days, Index features, std::uint64_t seed, double signal, double missing,
                          Index steps, const py::object& dtype) {
  const nlohmann::json given = {{"stocks", std::to_string(stocks)},   {"days", std::to_string(days)},
                                {"features", std::to_string(features)}, {"data-seed", std::to_string(seed)},
                                {"signal", signal},                   {"missing", missing},
                                {"steps", std::to_string(steps)}};
  return market_dict(given, dtype, "stockmixer.synthetic_market");
}

// ---- train -----------------------------------------------------------------------------------------

// Lines written to it go to Python's sys.stderr, one write per line, each with the GIL taken for it. An
// exception raised there (a KeyboardInterrupt, Ctrl-C, delivered while Python ran the write) cannot pass
// through the ostream, which would swallow it: it is kept, and rethrow_pending raises it.
class PythonStderr : public std::streambuf {
 public:
  void rethrow_pending() {
    if (!pending_) return;
    const std::exception_ptr p = pending_;
    pending_ = nullptr;
    std::rethrow_exception(p);
  }

 protected:
  int_type overflow(int_type c) override {
    if (c == traits_type::eof()) return traits_type::not_eof(c);
    line_ += static_cast<char>(c);
    if (c == '\n') flush_line();
    return c;
  }
  std::streamsize xsputn(const char* s, std::streamsize n) override {
    for (std::streamsize i = 0; i < n; ++i) overflow(traits_type::to_int_type(s[i]));
    return n;
  }
  int sync() override {
    flush_line();
    return 0;
  }

 private:
  void flush_line() {
    if (line_.empty()) return;
    py::gil_scoped_acquire gil;
    try {
      py::object err = py::module_::import("sys").attr("stderr");
      err.attr("write")(line_);
      err.attr("flush")();
    } catch (...) {
      if (!pending_) pending_ = std::current_exception();
    }
    line_.clear();
  }
  std::string line_;
  std::exception_ptr pending_;
};

// The engine's thread count, put back when the scope ends (train sets it from its `threads` option).
class ThreadsRestored {
 public:
  ThreadsRestored() : threads_(stockmixer::num_threads()) {}
  ~ThreadsRestored() { stockmixer::set_num_threads(threads_); }

 private:
  int threads_;
};

template <class T>
Tensor<T> market_array(const py::dict& data, const char* key, int rank) {
  if (!data.contains(key)) throw Error(std::string("stockmixer.train: data has no '") + key + "' array");
  const py::array a = py::array::ensure(data[key]);
  if (!a) throw Error(std::string("stockmixer.train: data['") + key + "'] is not an array");
  const char kind = a.dtype().kind();
  if (kind != 'f' && kind != 'i' && kind != 'u' && kind != 'b')
    throw Error(std::string("stockmixer.train: data['") + key + "'] has dtype " + array_dtype(a) + ", expected numbers");
  if (a.ndim() != rank)
    throw Error(std::string("stockmixer.train: data['") + key + "'] has shape " + shape_text(a) + ", expected " +
                (rank == 3 ? "[N, D, C]" : "[N, D]"));
  const auto converted = py::array_t<T, py::array::c_style | py::array::forcecast>::ensure(a);
  if (!converted) throw Error(std::string("stockmixer.train: data['") + key + "'] cannot be read as numbers");
  std::vector<Index> dims(a.shape(), a.shape() + a.ndim());
  Tensor<T> t(Shape(dims.begin(), dims.end()));
  std::copy(converted.data(), converted.data() + t.size(), t.data());
  return t;
}

// A market given as arrays (as load_market returns them): eod [N, D, C], mask, gt, price [N, D]; optional
// tickers, dates (one a day, or none), steps, valid_index and test_index. Copied into the engine's market, in the
// precision's dtype.
template <class T>
stockmixer::train::RunData<T> market_from_arrays(const py::dict& data, const stockmixer::Options& o) {
  for (const auto& [key, value] : data) {
    const std::string k = py::str(key).cast<std::string>();
    static const std::set<std::string> known = {"eod",  "mask",  "gt",          "price",     "tickers",
                                                "dates", "steps", "valid_index", "test_index"};
    if (!known.count(k))
      throw Error("stockmixer.train: data has an unknown key '" + k +
                  "' (eod, mask, gt, price; optional tickers, dates, steps, valid_index, test_index)");
  }
  for (const char* name :
       {"panel", "features", "normalise", "market", "tickers", "stocks", "days", "signal", "missing", "data-seed"})
    if (o.given(name))
      throw Error(std::string("stockmixer.train: '") + name + "' describes the market to load, but data is given as arrays");
  stockmixer::train::RunData<T> d;
  stockmixer::data::Market<T>& m = d.market;
  m.eod = market_array<T>(data, "eod", 3);
  m.mask = market_array<T>(data, "mask", 2);
  m.gt = market_array<T>(data, "gt", 2);
  m.price = market_array<T>(data, "price", 2);
  m.steps = o.integer("steps");
  if (data.contains("steps")) {
    const Index steps = data["steps"].cast<Index>();
    if (o.given("steps") && steps != m.steps)
      throw Error("stockmixer.train: steps = " + std::to_string(m.steps) + " but data's gt was computed with steps = " +
                  std::to_string(steps));
    m.steps = steps;
  }
  if (data.contains("tickers")) m.tickers = data["tickers"].cast<std::vector<std::string>>();
  m.validate("stockmixer.train: data");
  const Index days = m.days();
  d.tickers = m.tickers.empty() ? stockmixer::data::synthetic_tickers(m.stocks()) : m.tickers;
  d.valid_index = data.contains("valid_index") ? data["valid_index"].cast<Index>() : days * 61 / 100;
  d.test_index = data.contains("test_index") ? data["test_index"].cast<Index>() : days * 81 / 100;
  if (data.contains("dates")) {
    d.dates = data["dates"].cast<std::vector<std::string>>();
    if (!d.dates.empty() && static_cast<Index>(d.dates.size()) != days)
      throw Error("stockmixer.train: data['dates'] holds " + std::to_string(d.dates.size()) + " dates for " +
                  std::to_string(days) + " days");
  }
  d.description = {{"source", "arrays"}, {"stocks", m.stocks()}, {"days", days},
                   {"features", m.features()}, {"steps", m.steps}};
  return d;
}

template <class T>
py::object trained_model(const std::filesystem::path& out) {
  const std::filesystem::path best = out / "best.safetensors";
  if (!std::filesystem::exists(best)) return py::none();
  return py::cast(load_model(best, std::is_same_v<T, float> ? DType::f32 : DType::f64));
}

// stockmixer.train(**options): the CLI's train options as keyword arguments ('-' written '_'), `data`
// either a folder (the CLI's --data) or a dict of arrays, `on_epoch` a callable, `progress` whether the
// epoch lines go to sys.stderr. Returns (summary, model): the model of the best epoch's weights (read
// back from best.safetensors), None when no epoch was best; with seeds > 1, a list of each seed's.
py::tuple train(const py::kwargs& kwargs) {
  nlohmann::json given = nlohmann::json::object();
  py::object on_epoch = py::none();
  py::object arrays = py::none();
  bool progress = false;
  for (const auto& [k, v] : kwargs) {
    std::string key = py::str(k).cast<std::string>();
    if (key == "on_epoch") {
      if (!v.is_none() && !PyCallable_Check(v.ptr())) throw Error("stockmixer.train: on_epoch must be callable");
      on_epoch = py::reinterpret_borrow<py::object>(v);
      continue;
    }
    if (key == "progress") {
      progress = v.cast<bool>();
      continue;
    }
    if (key == "data" && py::isinstance<py::dict>(v)) {
      arrays = py::reinterpret_borrow<py::object>(v);
      continue;
    }
    for (char& c : key)
      if (c == '_') c = '-';
    if (given.contains(key)) throw Error("stockmixer.train: '" + key + "' given twice (with '-' and with '_')");
    given[key] = option_value(key, v);
  }
  stockmixer::Options o("train", stockmixer::train::train_options());
  o.apply_json(given, "keyword arguments");
  if (!o.str("config").empty()) o.apply_config(o.str("config"));
  o.validate();
  const bool f32 = o.choice("precision", {"f32", "f64"}) == "f32";

  PythonStderr stderr_buf;
  std::ostream stderr_stream(&stderr_buf);
  stockmixer::train::JobHooks hooks;
  if (progress) hooks.progress = &stderr_stream;
  // Called between epochs, with the GIL taken for it: a pending KeyboardInterrupt (Ctrl-C), or an
  // exception the callback raises, leaves the run there (its files resumable) and reaches the caller.
  hooks.on_epoch = [&](const stockmixer::train::EpochLog& epoch) {
    py::gil_scoped_acquire gil;
    stderr_buf.rethrow_pending();
    if (PyErr_CheckSignals() != 0) throw py::error_already_set();
    if (on_epoch.is_none()) return true;
    const py::object r = on_epoch(to_python(epoch.to_json()));
    return r.is_none() || r.cast<bool>();
  };
  nlohmann::json summary;
  {
    ThreadsRestored threads;
    py::dict data = arrays.is_none() ? py::dict() : arrays.cast<py::dict>();
    if (arrays.is_none()) {
      py::gil_scoped_release unlocked;
      summary = stockmixer::train::train_job(o, hooks);
    } else if (f32) {
      const auto d = market_from_arrays<float>(data, o);
      stockmixer::set_num_threads(static_cast<int>(o.integer("threads")));
      py::gil_scoped_release unlocked;
      summary = stockmixer::train::train_job<float>(o, d, hooks);
    } else {
      const auto d = market_from_arrays<double>(data, o);
      stockmixer::set_num_threads(static_cast<int>(o.integer("threads")));
      py::gil_scoped_release unlocked;
      summary = stockmixer::train::train_job<double>(o, d, hooks);
    }
  }
  stderr_stream.flush();
  stderr_buf.rethrow_pending();
  const std::filesystem::path out = o.str("out");
  py::object model;
  const Index seeds = o.integer("seeds");
  if (seeds == 1) {
    model = f32 ? trained_model<float>(out) : trained_model<double>(out);
  } else {
    py::list models;
    const Index first = o.integer("seed");
    for (Index s = first; s < first + seeds; ++s) {
      const std::filesystem::path dir = out / ("seed_" + std::to_string(s));
      models.append(f32 ? trained_model<float>(dir) : trained_model<double>(dir));
    }
    model = std::move(models);
  }
  return py::make_tuple(to_python(summary), model);
}

}  // namespace

PYBIND11_MODULE(stockmixer, m) {
  m.doc() =
      "StockMixer (Fan & Shen, AAAI 2024) from Python: the stockmixer C++ library's model, checkpoints, data "
      "loaders, evaluator and training, numpy in and out (docs/python.md).";
  m.attr("__version__") = stockmixer::kVersion;
  py::register_exception<Error>(m, "Error", PyExc_Exception);

  py::class_<Model>(m, "StockMixer",
                    "StockMixer(N, T, C, M) with PyTorch's parameter names and default initialisation, float32 or "
                    "float64.")
      .def(py::init(&new_model), py::arg("stocks"), py::arg("lookback") = 16, py::arg("features") = 5,
           py::arg("market") = 20, py::arg("seed") = 0, py::arg("dtype") = "float32",
           "A model of N stocks, lookback T (even), C features and stock-mixer width M, initialised as PyTorch's "
           "defaults from `seed`.")
      .def_property_readonly("dtype", [](const Model& model) { return py::dtype(dtype_name(model.dtype())); },
                             "numpy.float32 or numpy.float64: the arrays predict and gradients take and return")
      .def_property_readonly(
          "config",
          [](const Model& model) {
            const auto& c = model.config();
            py::dict d;
            d["stocks"] = c.stocks;
            d["lookback"] = c.lookback;
            d["features"] = c.features;
            d["market"] = c.market;
            return d;
          },
          "{'stocks': N, 'lookback': T, 'features': C, 'market': M}")
      .def_property_readonly(
          "num_parameters", [](Model& model) { return model.visit([](auto& mm) { return mm.num_parameters(); }); },
          "values under a state_dict name (PyTorch's count)")
      .def("predict", &predict, py::arg("x"),
           "x [N, T, C] (C-contiguous, the model's dtype, read in place) -> a new array [N, 1]: what `stockmixer "
           "predict` writes")
      .def("gradients", &gradients, py::arg("x"), py::arg("gt"), py::arg("base"), py::arg("mask"),
           py::arg("alpha") = 0.1,
           "One batch through the model and get_loss, then backward: a dict of prediction, rr, loss, reg_loss, "
           "rank_loss and every parameter's gradient under its PyTorch name (what `stockmixer gradients` writes)")
      .def("time_predict", &time_predict, py::arg("x"), py::arg("repeats") = 100,
           "The engine's own time of predict(x), in seconds, for each of `repeats` calls (no Python inside)")
      .def("state_dict", &state_dict, "Every parameter under its PyTorch name, in state_dict order (copies)")
      .def("load_state_dict", &load_state_dict, py::arg("state_dict"),
           "Replaces every parameter: exactly the model's names and shapes, float32 or float64, finite values; "
           "all checked before any is written")
      .def("save_checkpoint", &save_model, py::arg("path"),
           "The weights as safetensors with PyTorch's names (the model's dims in the metadata)")
      .def("__repr__", [](const Model& model) {
        return "stockmixer.StockMixer(" + config_text(model.config()) + ", " + dtype_name(model.dtype()) + ")";
      });

  m.def(
      "load_checkpoint",
      [](const std::filesystem::path& path, const py::object& dtype) {
        return load_model(path, parse_dtype(dtype, "stockmixer.load_checkpoint"));
      },
      py::arg("path"), py::arg("dtype") = "float32",
      "A model of the checkpoint's dims with its weights (safetensors, PyTorch names), in float32 or float64");
  m.def("evaluate", &evaluate, py::arg("pred"), py::arg("gt"), py::arg("mask"),
        "The original evaluate and the named extras on [N, days] arrays: the keys and values `stockmixer evaluate` "
        "prints (NaN where it prints null)");
  m.def("load_market", &load_market, py::arg("dir"), py::arg("market") = "NASDAQ", py::arg("tickers") = "",
        py::arg("steps") = 1, py::arg("dtype") = "float32",
        "A folder laid out as ../shared/data/NASDAQ, read as `stockmixer train --data` reads it: eod [N, D, C], "
        "mask, gt, price [N, D], tickers, dates (one a day), steps, and the original's split (valid_index, "
        "test_index)");
  m.def("load_panel", &load_panel, py::arg("csv"), py::arg("features") = "columns", py::arg("normalise") = py::none(),
        py::arg("steps") = 1, py::arg("dtype") = "float32",
        "A market of one's own from one CSV of rows date,ticker,<features> (docs/own_market.md), read as `stockmixer "
        "train --panel` reads it; features 'columns' (as given) or 'original' (the original's five from raw prices, "
        "normalise 'causal' (the default) or 'max'); load_market's dict, split 60/20/20 of its days");
  m.def("synthetic_market", &synthetic_market, py::arg("stocks") = 200, py::arg("days") = 600,
        py::arg("features") = 5, py::arg("seed") = 1, py::arg("signal") = 0.15, py::arg("missing") = 0.02,
        py::arg("steps") = 1, py::arg("dtype") = "float32",
        "The built-in synthetic market (what `stockmixer train` trains on without --data), as load_market's dict");
  m.def("train", &train,
        "stockmixer.train(**options): `stockmixer train` with its options as keyword arguments ('_' for '-'); "
        "data= a folder or a dict of arrays; on_epoch=callable(dict), returning False stops; progress=True prints "
        "the epoch lines to sys.stderr. Returns (summary, model of the best epoch).");
  m.def("num_threads", &stockmixer::num_threads, "The engine's threads (OpenMP)");
  m.def("set_num_threads", &stockmixer::set_num_threads, py::arg("n"),
        "The engine's threads: any count gives bit-identical results");
}
