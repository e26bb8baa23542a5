// tests/fuzz/fuzz_config.cpp — any bytes as a JSON training config.
//
// The library has no from-JSON for train::TrainConfig: `stockmixer train --config FILE` reads the file
// in the CLI (examples/stockmixer_cli.cpp, Args::apply_config), whose option table is private to the
// tool. This target fuzzes what that path is built from: io::read_json_file, which the CLI calls (a
// regular file, io::json_depth_problem before anything recurses, a key repeated in any object refused
// from inside the parser), then for each value what the CLI does with it (a string as is, anything else
// dump()ed back to text), and a TrainConfig filled from the numeric and boolean values (integers
// range-checked, nlohmann's get<> for the rest, its type errors turned into an Error as model.hpp does
// for 'stockmixer.config'), validated and written back with to_json().dump(). Deep nesting that passed
// the depth check would overflow the stack in dump(): the target checks that what parses nests at
// most io::kMaxJsonDepth deep.
#include "fuzz_input.hpp"

#include "stockmixer/io/input.hpp"
#include "stockmixer/train/trainer.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <utility>
#include <vector>

namespace {

using nlohmann::json;
using stockmixer::Error;

// How deep `j` nests (a scalar 0, [] or {} 1), walked without recursion.
int nesting(const json& j) {
  int deepest = 0;
  std::vector<std::pair<const json*, int>> todo = {{&j, j.is_structured() ? 1 : 0}};
  while (!todo.empty()) {
    const auto [at, depth] = todo.back();
    todo.pop_back();
    deepest = std::max(deepest, depth);
    if (at->is_structured())
      for (const json& child : *at) todo.emplace_back(&child, child.is_structured() ? depth + 1 : depth);
  }
  return deepest;
}

// An integer option's value: a JSON integer within I's range (nlohmann's get<I>() casts a floating-point
// value without a range check, undefined behaviour beyond I's range, and wraps a wider integer).
template <class I>
I integer(const json& value, const std::string& key) {
  bool fits = false;
  if (value.is_number_unsigned()) {
    fits = value.get<std::uint64_t>() <= static_cast<std::uint64_t>(std::numeric_limits<I>::max());
  } else if (value.is_number_integer()) {
    if constexpr (std::is_signed_v<I>) {
      const auto v = value.get<std::int64_t>();
      fits = v >= static_cast<std::int64_t>(std::numeric_limits<I>::min()) &&
             v <= static_cast<std::int64_t>(std::numeric_limits<I>::max());
    }
  }
  if (!fits) throw Error("config: '" + key + "' must be a whole number within range, got " + value.dump());
  return value.is_number_unsigned() ? static_cast<I>(value.get<std::uint64_t>())
                                    : static_cast<I>(value.get<std::int64_t>());
}

// The config as the CLI reads it, up to the typed fields; Error for anything it refuses.
void read_config(const std::string& path) {
  const json j = stockmixer::io::read_json_file(path, "config file", 1 << 20);
  // What the depth check promises: nothing deeper than io::kMaxJsonDepth reaches code that recurses.
  if (nesting(j) > stockmixer::io::kMaxJsonDepth) {
    std::fprintf(stderr, "stockmixer fuzz: a config nested %d levels deep passed io::json_depth_problem (limit %d)\n",
                 nesting(j), stockmixer::io::kMaxJsonDepth);
    std::abort();
  }
  if (!j.is_object()) throw Error(path + ": expected a JSON object whose keys are option names");

  stockmixer::train::TrainConfig c;
  std::string option_text;
  try {
    for (const auto& [key, value] : j.items()) {
      option_text += key + "=" + (value.is_string() ? value.get<std::string>() : value.dump()) + "\n";
      if (key == "epochs") c.epochs = integer<int>(value, key);
      else if (key == "lookback") c.lookback = integer<stockmixer::Index>(value, key);
      else if (key == "market-width") c.market = integer<stockmixer::Index>(value, key);
      else if (key == "alpha") c.alpha = value.get<double>();
      else if (key == "dropout") c.dropout = value.get<double>();
      else if (key == "lr") c.adam.lr = value.get<double>();
      else if (key == "weight-decay") c.adam.weight_decay = value.get<double>();
      else if (key == "adamw") c.adam.decoupled_weight_decay = value.get<bool>();
      else if (key == "strict-split") c.strict_split = value.get<bool>();
      else if (key == "seed") c.seed = integer<std::uint64_t>(value, key);
      else if (key == "valid-index") c.valid_index = integer<stockmixer::Index>(value, key);
      else if (key == "test-index") c.test_index = integer<stockmixer::Index>(value, key);
    }
  } catch (const json::exception& e) {
    throw Error(path + ": " + e.what());
  }
  c.validate(/*days*/ 1245, /*steps*/ 1);
  (void)c.to_json().dump();
  (void)option_text;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string path = stockmixer_fuzz::write_input("config.json", data, size);
  stockmixer_fuzz::expect_error_or_success("the --config path", [&] { read_config(path); });
  return 0;
}
