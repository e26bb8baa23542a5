// stockmixer/io/checkpoint.hpp — StockMixer weights as safetensors files that PyTorch reads and
// writes too: one tensor per state_dict key (same names, shapes and layouts), float32 or float64, and
// metadata "stockmixer.config" (the model dims, JSON) plus whatever the caller adds (the training
// configuration, under "stockmixer.train"). docs/checkpoints.md shows the PyTorch side.
//
// Loading infers N, T, C, M from the weights' shapes, then checks that the file holds exactly the
// model's tensors: every name present, every shape as expected, no tensor the model does not have.
// Each problem is an Error naming the file and the tensor. Nothing is written into a model until the
// whole file has been checked.
#pragma once

#include "stockmixer/io/safetensors.hpp"
#include "stockmixer/model.hpp"

#include <nlohmann/json.hpp>

#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace stockmixer::io {

// ---- interface -------------------------------------------------------------------------------------

template <class T>
void save_checkpoint(const std::string& path, StockMixer<T>& model,
                     const std::map<std::string, std::string>& metadata = {});

// The model dims a checkpoint's weights imply.
StockMixerConfig checkpoint_config(const SafetensorsReader& file);

// Checks the file against the model's parameters, then copies every tensor in (converting dtype).
template <class T>
void load_weights(StockMixer<T>& model, const SafetensorsReader& file);

// A model of the checkpoint's dims with its weights.
template <class T>
StockMixer<T> load_checkpoint(const std::string& path);

// ---- implementation --------------------------------------------------------------------------------

template <class T>
void save_checkpoint(const std::string& path, StockMixer<T>& model, const std::map<std::string, std::string>& metadata) {
  const StockMixerConfig& c = model.config();
  std::map<std::string, std::string> meta = metadata;
  meta["stockmixer.config"] = nlohmann::json{{"stocks", c.stocks},
                                             {"lookback", c.lookback},
                                             {"features", c.features},
                                             {"market", c.market},
                                             {"dropout", c.dropout}}
                                  .dump();
  meta["format"] = "pt";  // as PyTorch's safetensors writer labels its files
  std::vector<std::pair<std::string, TensorMap<const T>>> tensors;
  for (const auto& p : model.parameters()) tensors.emplace_back(p.name, TensorMap<const T>(p.value, p.shape));
  save_safetensors<T>(path, tensors, meta);
}

inline StockMixerConfig checkpoint_config(const SafetensorsReader& file) {
  auto shape_of = [&](const char* name, std::size_t rank) {
    if (!file.contains(name))
      throw Error(file.path() + ": no tensor '" + name + "': not a StockMixer checkpoint");
    const auto& s = file.info(name).shape;
    if (s.size() != rank)
      throw Error(file.path() + ": tensor '" + name + "' has rank " + std::to_string(s.size()) + ", expected " +
                  std::to_string(rank));
    return s;
  };
  StockMixerConfig c;
  const auto dense1 = shape_of("stock_mixer.dense1.weight", 2);  // [M, N]
  const auto ln = shape_of("mixer.mix_layer.LN_1.weight", 2);    // [T, C]
  c.market = dense1[0];
  c.stocks = dense1[1];
  c.lookback = ln[0];
  c.features = ln[1];
  if (file.metadata().count("stockmixer.config")) {
    try {
      c.dropout = nlohmann::json::parse(file.metadata().at("stockmixer.config")).value("dropout", 0.0);
    } catch (const nlohmann::json::exception& e) {
      throw Error(file.path() + ": metadata 'stockmixer.config' is not valid JSON (" + e.what() + ")");
    }
  }
  try {
    c.validate();
  } catch (const Error& e) {
    throw Error(file.path() + ": the weights imply an invalid model: " + e.what());
  }
  return c;
}

template <class T>
void load_weights(StockMixer<T>& model, const SafetensorsReader& file) {
  const auto params = model.parameters();
  std::set<std::string> expected;
  for (const auto& p : params) {
    expected.insert(p.name);
    if (!file.contains(p.name)) throw Error(file.path() + ": missing tensor '" + p.name + "' " + p.shape.str());
    const auto& dims = file.info(p.name).shape;
    const Shape got(dims.begin(), dims.end());
    if (got != p.shape)
      throw Error(file.path() + ": tensor '" + p.name + "' has shape " + got.str() + ", expected " + p.shape.str());
    if (file.info(p.name).dtype != "F32" && file.info(p.name).dtype != "F64")
      throw Error(file.path() + ": tensor '" + p.name + "' has dtype " + file.info(p.name).dtype +
                  " (expected F32 or F64)");
  }
  for (const auto& name : file.names())
    if (!expected.count(name))
      throw Error(file.path() + ": unexpected tensor '" + name + "' (not a parameter of this StockMixer)");
  for (const auto& p : params) file.read<T>(p.name, TensorMap<T>(p.value, p.shape));  // all checked: copy
}

template <class T>
StockMixer<T> load_checkpoint(const std::string& path) {
  const SafetensorsReader file(path);
  StockMixer<T> model(checkpoint_config(file));
  load_weights(model, file);
  return model;
}

}  // namespace stockmixer::io
