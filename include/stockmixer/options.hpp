// stockmixer/options.hpp — named, typed, range-checked options: what `stockmixer <command>` accepts on
// its command line, in a --config file, from Python keyword arguments and in a sweep's jobs, defined
// once per command (train/job.hpp holds train's) and read the same way wherever they come from.
//
//   Options o("train", train::train_options());
//   if (!o.parse_command_line(argc, argv, 2)) { std::cout << o.usage(summary); return 0; }  // --help
//   o.apply_json(json_object, "keyword arguments");   // keys = option names; the command line wins
//   o.validate();                                     // every number parsed and in range
//   o.integer("epochs"), o.number("lr"), o.str("out"), o.flag("overwrite"), o.given("seed")
//
// Every error is a stockmixer::Error "stockmixer <command>: ..." naming the option and, for values from
// a file, the file.
#pragma once

#include "stockmixer/common.hpp"
#include "stockmixer/io/input.hpp"
#include "stockmixer/parallel.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace stockmixer {


// ---- arguments -------------------------------------------------------------------------------------

// What an option holds. Integer and real options carry their accepted range; every value, from the
// command line, a --config file or a JSON object, is parsed and range-checked by Options::validate
// before a command reads any file or touches any output.
enum class Kind { text, flag, integer, real };

struct Option {
  std::string name;   // without the leading --
  std::string value;  // the default; "" for required options (and for numbers taken from the data)
  std::string help;
  Kind kind = Kind::text;
  bool required = false;
  long long int_lo = 0, int_hi = 0;  // integer: [int_lo, int_hi]
  double lo = 0, hi = 0;             // real: between lo and hi, each end included unless *_open
  bool lo_open = false, hi_open = false;
  bool number_as_text = false;       // text: a JSON number is taken as its decimal text (an option holding a
                                     // count or a name, as --features)
};

inline Option text(const std::string& name, const std::string& value, const std::string& help) {
  return {name, value, help};
}
inline Option required(const std::string& name, const std::string& help) {
  Option o{name, "", help};
  o.required = true;
  return o;
}
// A text option that also takes a JSON number, as its decimal text.
inline Option text_or_number(const std::string& name, const std::string& value, const std::string& help) {
  Option o{name, value, help};
  o.number_as_text = true;
  return o;
}
inline Option flag(const std::string& name, const std::string& help) { return {name, "false", help, Kind::flag}; }
inline Option integer(const std::string& name, const std::string& value, const std::string& help, long long lo,
                      long long hi) {
  Option o{name, value, help, Kind::integer};
  o.int_lo = lo;
  o.int_hi = hi;
  return o;
}
inline Option real(const std::string& name, const std::string& value, const std::string& help, double lo, double hi,
                   bool lo_open = false, bool hi_open = false) {
  Option o{name, value, help, Kind::real};
  o.lo = lo;
  o.hi = hi;
  o.lo_open = lo_open;
  o.hi_open = hi_open;
  return o;
}

// "-12", "0", "4096": an optional minus sign and decimal digits, nothing else (no "1e9", "12abc",
// " 7", "+3", "0x10"); false also when the value does not fit a long long.
inline bool parse_integer(const std::string& v, long long& out) {
  const char* first = v.data();
  const char* last = v.data() + v.size();
  const char* digits = first + (v.size() > 1 && v[0] == '-' ? 1 : 0);
  if (digits == last || !std::all_of(digits, last, [](char c) { return c >= '0' && c <= '9'; })) return false;
  const auto [end, ec] = std::from_chars(first, last, out);
  return ec == std::errc() && end == last;
}

// A finite decimal number ("0.001", "-2", "1e-3", ".5"): no hexadecimal, no "inf" or "nan", no spaces.
inline bool parse_real(const std::string& v, double& out) {
  if (v.empty() || !std::all_of(v.begin(), v.end(), [](char c) {
        return (c >= '0' && c <= '9') || c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-';
      }))
    return false;
  errno = 0;
  char* end = nullptr;
  out = std::strtod(v.c_str(), &end);
  return end == v.c_str() + v.size() && errno == 0 && std::isfinite(out);
}

inline std::string number_text(double v) {
  std::ostringstream s;
  s << v;
  return s.str();
}

inline std::string range_text(const Option& o) {
  if (o.kind == Kind::integer)
    return "a whole number from " + std::to_string(o.int_lo) + " to " + std::to_string(o.int_hi);
  return "a number in " + std::string(o.lo_open ? "(" : "[") + number_text(o.lo) + ", " + number_text(o.hi) +
         (o.hi_open ? ")" : "]");
}

class Options {
 public:
  Options(const std::string& command, std::vector<Option> options) : command_(command), options_(std::move(options)) {
    for (const auto& o : options_) values_[o.name] = o.value;
  }

  // argv[first..argc): "--name value" and "--flag". False when --help (or -h) was asked: the caller
  // prints usage() and stops.
  bool parse_command_line(int argc, const char* const* argv, int first) {
    for (int i = first; i < argc; ++i) {
      const std::string a = argv[i];
      if (a == "--help" || a == "-h") return false;
      if (a.rfind("--", 0) != 0) fail("unexpected argument '" + a + "'");
      const Option& o = find(a.substr(2));
      if (o.kind == Kind::flag) {
        values_[o.name] = "true";
      } else {
        if (i + 1 >= argc) fail("--" + o.name + " needs a value");
        values_[o.name] = argv[++i];
      }
      given_.push_back(o.name);
    }
    return true;
  }

  // Keys of a JSON object mirror the options; each value has its option's type (a flag true or false,
  // text a string (or a number, where the option says so), a number a number or its decimal text). Options already given (on the command line)
  // win, but every key's type is checked. `where` names the object's origin in messages (a file's path,
  // "keyword arguments", a sweep's job).
  void apply_json(const nlohmann::json& j, const std::string& where) {
    if (!j.is_object()) fail(where + ": expected a JSON object whose keys are option names");
    for (const auto& [key, value] : j.items()) {
      const Option& o = find(key, where);
      const std::string at = where + ": '" + key + "' ";
      std::string text;
      switch (o.kind) {
        case Kind::flag:
          if (!value.is_boolean()) fail(at + "must be true or false, got " + value.dump());
          text = value.get<bool>() ? "true" : "false";
          break;
        case Kind::text:
          if (value.is_string()) text = value.get<std::string>();
          else if (value.is_number() && o.number_as_text) text = value.dump();
          else fail(at + "must be a string, got " + value.dump());
          break;
        case Kind::integer:
        case Kind::real:
          if (value.is_string()) text = value.get<std::string>();
          else if (value.is_number()) text = value.dump();
          else fail(at + "must be " + range_text(o) + ", got " + value.dump());
          break;
      }
      if (given(key)) continue;
      values_[key] = text;
      from_[key] = " (from " + where + ")";
      given_.push_back(key);
    }
  }

  // Every option given, as the JSON object apply_json takes (flags as booleans, the rest as text).
  nlohmann::json given_json() const {
    nlohmann::json j = nlohmann::json::object();
    for (const auto& name : given_) j[name] = find(name).kind == Kind::flag ? nlohmann::json(flag(name)) : nlohmann::json(str(name));
    return j;
  }

  // A JSON config file (--config): a regular file of at most 1 MiB that nests at most
  // io::kMaxJsonDepth levels (checked before it is parsed) and holds each key once.
  void apply_config(const std::string& path) {
    nlohmann::json j;
    try {
      j = io::read_json_file(path, "config file (--config)", 1u << 20);
    } catch (const Error& e) {
      fail(e.what());
    }
    if (j.is_object() && j.contains("config")) fail(path + ": 'config' cannot name another config file");
    apply_json(j, path);
  }

  // Every required option present, every number parsed and inside its range.
  void validate() const {
    for (const auto& o : options_) {
      const std::string& v = values_.at(o.name);
      if (o.required && v.empty()) fail("--" + o.name + source(o.name) + " is required (see --help)");
      if (v.empty()) continue;
      if (o.kind == Kind::integer) integer(o.name);
      if (o.kind == Kind::real) number(o.name);
    }
  }

  const std::string& str(const std::string& name) const { return values_.at(name); }
  bool flag(const std::string& name) const { return values_.at(name) == "true"; }
  bool given(const std::string& name) const {
    return std::find(given_.begin(), given_.end(), name) != given_.end();
  }
  double number(const std::string& name) const {
    const Option& o = find(name);
    const std::string& v = values_.at(name);
    double d = 0;
    if (o.kind != Kind::real || !parse_real(v, d) || (o.lo_open ? !(d > o.lo) : !(d >= o.lo)) ||
        (o.hi_open ? !(d < o.hi) : !(d <= o.hi)))
      fail("--" + name + source(name) + " expects " + range_text(o) + ", got '" + v + "'");
    return d;
  }
  Index integer(const std::string& name) const {
    const Option& o = find(name);
    const std::string& v = values_.at(name);
    long long n = 0;
    if (o.kind != Kind::integer || !parse_integer(v, n) || n < o.int_lo || n > o.int_hi)
      fail("--" + name + source(name) + " expects " + range_text(o) + ", got '" + v + "'");
    return static_cast<Index>(n);
  }
  std::string choice(const std::string& name, const std::vector<std::string>& allowed) const {
    const std::string& v = values_.at(name);
    if (std::find(allowed.begin(), allowed.end(), v) == allowed.end()) {
      std::string list;
      for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
      fail("--" + name + source(name) + " must be one of " + list + ", got '" + v + "'");
    }
    return v;
  }

  [[noreturn]] void fail(const std::string& what) const { throw Error("stockmixer " + command_ + ": " + what); }
  const std::string& command() const { return command_; }

  std::string usage(const std::string& summary) const {
    std::ostringstream s;
    s << "usage: stockmixer " << command_ << " [options]\n\n" << summary << "\n\noptions:\n";
    for (const auto& o : options_) {
      std::string left = "  --" + o.name + (o.kind == Kind::flag ? "" : " VALUE");
      s << left << std::string(left.size() < 26 ? 26 - left.size() : 1, ' ') << o.help;
      if (o.required) s << " (required)";
      else if (o.kind != Kind::flag && !o.value.empty()) s << " (default " << o.value << ")";
      if (o.kind == Kind::integer || o.kind == Kind::real) s << "; " << range_text(o);
      s << "\n";
    }
    return s.str();
  }

 private:
  const Option& find(const std::string& name, const std::string& where = "") const {
    for (const auto& o : options_)
      if (o.name == name) return o;
    std::string list;
    for (const auto& o : options_) list += " --" + o.name;
    fail((where.empty() ? "" : where + ": ") + "unknown option '" + name + "' (options:" + list + ")");
  }

  std::string command_;
  std::vector<Option> options_;
  std::map<std::string, std::string> values_;
  std::vector<std::string> given_;
  std::map<std::string, std::string> from_;  // " (from FILE)" for the options a config file set
  std::string source(const std::string& name) const {
    const auto it = from_.find(name);
    return it == from_.end() ? "" : it->second;
  }
};

// Bounds and options shared by the commands. Sizes are bounded so that their products stay far from
// overflow; whether they fit in memory is checked from the actual sizes (memory.hpp).
namespace limits {
constexpr long long kMaxStocks = 100'000'000, kMaxDays = 10'000'000, kMaxFeatures = 4096, kMaxLookback = 4096,
                    kMaxWidth = 1'000'000, kMaxSeed = std::numeric_limits<long long>::max();
}  // namespace limits
inline Option precision_option() {
  return text("precision", "f32", "f32 or f64: the arithmetic (and, for outputs, the dtype)");
}
inline Option threads_option() { return integer("threads", "1", "threads (with OpenMP)", 1, max_threads()); }

}  // namespace stockmixer
