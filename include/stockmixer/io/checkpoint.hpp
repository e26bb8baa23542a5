// stockmixer/io/checkpoint.hpp — a parameter store as a safetensors file that PyTorch reads and writes
// too: one tensor per state_dict key of the store's name table (same names, shapes and layouts),
// float32 or float64, plus string metadata. docs/checkpoints.md shows the PyTorch side; the model's
// own checkpoints (its dims in the metadata, a model built from a file) are in model.hpp.
//
// Loading checks the whole file against the name table first (every name present, every shape as
// expected, F32 or F64, no tensor the store does not have, every value finite in the store's type:
// NaN, Inf, or an F64 value beyond float's range read into float, would only make NaN predictions),
// each problem an Error naming the file, the tensor and, for a value, its flat index; nothing is
// written into the store until all of it has been checked.
#pragma once

#include "stockmixer/io/safetensors.hpp"
#include "stockmixer/parameters.hpp"

#include <cmath>
#include <cstdio>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace stockmixer::io {

// ---- interface -------------------------------------------------------------------------------------

// Every named tensor's values, in name-table order.
template <class T>
void save_parameters(const std::string& path, const ParameterStore<T>& store,
                     const std::map<std::string, std::string>& metadata = {});

// Checks the file against the store's name table, then copies every tensor in (converting dtype).
template <class T>
void load_parameters(ParameterStore<T>& store, const SafetensorsReader& file);

// ---- implementation --------------------------------------------------------------------------------

template <class T>
void save_parameters(const std::string& path, const ParameterStore<T>& store,
                     const std::map<std::string, std::string>& metadata) {
  std::vector<std::pair<std::string, TensorMap<const T>>> tensors;
  for (const auto& p : store) tensors.emplace_back(p.name(), TensorMap<const T>(p.value(), p.shape()));
  save_safetensors<T>(path, tensors, metadata);
}

template <class T>
void load_parameters(ParameterStore<T>& store, const SafetensorsReader& file) {
  std::set<std::string> expected;
  for (const auto& p : store) {
    expected.insert(p.name());
    if (!file.contains(p.name())) throw Error(file.path() + ": missing tensor '" + p.name() + "' " + p.shape().str());
    const auto& info = file.info(p.name());
    const Shape got(info.shape.begin(), info.shape.end());
    if (got != p.shape())
      throw Error(file.path() + ": tensor '" + p.name() + "' has shape " + got.str() + ", expected " + p.shape().str());
    if (info.dtype != "F32" && info.dtype != "F64")
      throw Error(file.path() + ": tensor '" + p.name() + "' has dtype " + info.dtype + " (expected F32 or F64)");
  }
  for (const auto& name : file.names())
    if (!expected.count(name))
      throw Error(file.path() + ": unexpected tensor '" + name + "' (not a parameter of this model)");
  for (const auto& p : store) {
    double v = 0;
    const Index at = file.template first_non_finite<T>(p.name(), &v);
    if (at >= 0) {
      char value[32];
      if (std::isnan(v)) std::snprintf(value, sizeof value, "NaN");
      else if (std::isinf(v)) std::snprintf(value, sizeof value, v > 0 ? "+Inf" : "-Inf");
      else std::snprintf(value, sizeof value, "%.9g", v);
      throw Error(file.path() + ": tensor '" + p.name() + "' " + p.shape().str() + " holds " + value +
                  " at flat index " + std::to_string(at) +
                  (std::isfinite(v) ? " (beyond the range of float)" : "") + ": weights must be finite");
    }
  }
  for (const auto& p : store) file.read<T>(p.name(), TensorMap<T>(p.value(), p.shape()));  // all checked: copy
}

}  // namespace stockmixer::io
