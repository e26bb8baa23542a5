// cli/common.hpp — what the subcommands share: output-file checks, reading [N, 1] columns and [N, T, C]
// inputs, finiteness checks, medians of timings, the f32/f64 dispatch and --device (device.hpp).
#pragma once

#include "device.hpp"

#include <stockmixer/io/npy.hpp>
#include <stockmixer/memory.hpp>
#include <stockmixer/model.hpp>
#include <stockmixer/options.hpp>
#if defined(STOCKMIXER_HAVE_CUDA)
#include <stockmixer/cuda/step.hpp>
#endif

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

namespace stockmixer::cli {

namespace fs = std::filesystem;
using nlohmann::json;
using namespace limits;

// Set by SIGINT (a lock-free atomic: safe to store from a signal handler).
inline std::atomic<bool> interrupt_requested{false};

// Parses a subcommand's options; false when --help was asked (usage printed).
inline bool parse(Options& a, const std::string& summary, int argc, char** argv) {
  if (!a.parse_command_line(argc, argv, 2)) {
    std::cout << a.usage(summary);
    return false;
  }
  return true;
}

template <template <class> class F>
int with_precision(const Options& a) {
  return a.choice("precision", {"f32", "f64"}) == "f32" ? F<float>::run(a) : F<double>::run(a);
}

// Refuses sizes whose arrays alone (`bytes`, a lower bound of what `what` allocates) exceed the
// machine's memory, before anything is allocated.
inline void require_memory_for(const Options& a, double bytes, const std::string& what) {
  const std::string problem = memory_problem(bytes, what);
  if (!problem.empty()) a.fail(problem);
}

inline std::string file_kind(std::filesystem::file_type type) {
  switch (type) {
    case fs::file_type::directory: return "a directory";
    case fs::file_type::symlink: return "a symbolic link";
    case fs::file_type::character: return "a character device";
    case fs::file_type::block: return "a block device";
    case fs::file_type::fifo: return "a FIFO (named pipe)";
    case fs::file_type::socket: return "a socket";
    default: return "not a regular file";
  }
}

// The file an option names as output: absent or a regular file (never a link, device, FIFO or folder,
// which io::write_file also refuses), in a folder that exists. Checked before any work is done.
inline void require_output_file(const Options& a, const std::string& option) {
  const std::string& path = a.str(option);
  std::error_code ec;
  const fs::file_type type = fs::symlink_status(path, ec).type();
  if (type != fs::file_type::not_found && type != fs::file_type::regular)
    a.fail("--" + option + " " + path + ": exists and is " + file_kind(type) + ", not a regular file: not replaced");
  const fs::path parent = fs::path(path).parent_path();
  if (!parent.empty() && !fs::is_directory(parent, ec))
    a.fail("--" + option + " " + path + ": the folder " + parent.string() + " does not exist");
}

template <class T>
void require_finite(const Tensor<T>& t, const std::string& path) {
  for (Index i = 0; i < t.size(); ++i)
    if (!std::isfinite(static_cast<double>(t.data()[i])))
      throw Error(path + ": value " + std::to_string(i) + " (flat index) is not finite");
}

template <class T>
Tensor<T> read_column(const std::string& path, Index n) {
  Tensor<T> t = io::read_npy<T>(path);
  if (t.size() != n || !(t.rank() == 1 || (t.rank() == 2 && t.dim(1) == 1)))
    throw Error(path + ": shape " + t.shape().str() + ", expected [" + std::to_string(n) + ", 1]");
  require_finite(t, path);
  t.resize({n, 1});
  return t;
}

template <class T>
Tensor<T> read_input(const std::string& path, const StockMixerConfig& c) {
  Tensor<T> x = io::read_npy<T>(path);
  const Shape want{c.stocks, c.lookback, c.features};
  if (x.shape() != want)
    throw Error(path + ": shape " + x.shape().str() + ", the weights expect [N, T, C] = " + want.str());
  require_finite(x, path);
  return x;
}

#if defined(STOCKMIXER_HAVE_CUDA)
// A device trainer for `model`'s dims holding its parameters (cuda/step.hpp). The device's store must
// be laid out as the CPU's: a different size is refused rather than read misaligned.
template <class T>
std::unique_ptr<cuda::DeviceTrainer<T>> device_trainer(const StockMixer<T>& model, T alpha) {
  const StockMixerConfig& c = model.config();
  auto device = std::make_unique<cuda::DeviceTrainer<T>>(cuda::ModelDims{c.stocks, c.lookback, c.features, c.market},
                                                         alpha);
  if (device->parameter_count() != model.parameters().size())
    throw Error("stockmixer --device cuda: the device's parameter store holds " +
                std::to_string(device->parameter_count()) + " values, the model's " +
                std::to_string(model.parameters().size()) + " (expected the same layout)");
  device->upload_parameters(model.parameters().values());
  return device;
}
#endif

template <class F>
double median_ms(Index iters, F&& body) {
  std::vector<double> t;
  for (Index i = 0; i < iters; ++i) {
    const auto a = std::chrono::steady_clock::now();
    body();
    t.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - a).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

}  // namespace stockmixer::cli
