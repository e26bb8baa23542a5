// cli/device.hpp — `--device cpu|cuda` of train, bench and predict: which device runs the model.
//
// cuda needs the CUDA unit (the tool configured with -DSTOCKMIXER_CUDA=ON, which defines
// STOCKMIXER_HAVE_CUDA and links stockmixer::cuda) and a device the CUDA runtime reports; otherwise the
// command stops before any work with one of
//   "stockmixer <command>: --device cuda: this stockmixer was built without the CUDA unit (configure with
//    -DSTOCKMIXER_CUDA=ON)"
//   "stockmixer <command>: --device cuda: no CUDA device: <the runtime's reason>"
// The choice is written as device_choice (the build and the device given as arguments) so that both
// refusals are tested in any build (tests/test_cli_device.cpp).
#pragma once

#include <stockmixer/options.hpp>

#if defined(STOCKMIXER_HAVE_CUDA)
#include <stockmixer/cuda/kernels.hpp>
#endif

#include <string>

namespace stockmixer::cli {

enum class Device { cpu, cuda };

inline Option device_option() {
  return text("device", "cpu", "cpu or cuda: the device that runs the model (cuda: a tool built with "
                               "-DSTOCKMIXER_CUDA=ON, docs/cuda.md)");
}

// --device of `a`. For cuda: refused unless `unit_built`, then unless probe(&why) says a device exists
// (why: the runtime's reason when it does not).
template <class Probe>
Device device_choice(const Options& a, bool unit_built, Probe&& probe) {
  if (a.choice("device", {"cpu", "cuda"}) == "cpu") return Device::cpu;
  if (!unit_built)
    a.fail("--device cuda: this stockmixer was built without the CUDA unit (configure with -DSTOCKMIXER_CUDA=ON)");
  std::string why;
  if (!probe(&why)) a.fail("--device cuda: no CUDA device: " + why);
  return Device::cuda;
}

// --device of `a` in this build, with the CUDA runtime as the probe.
inline Device device_of(const Options& a) {
#if defined(STOCKMIXER_HAVE_CUDA)
  return device_choice(a, true, [](std::string* why) { return cuda::device_available(why); });
#else
  return device_choice(a, false, [](std::string*) { return false; });
#endif
}

inline const char* device_name(Device d) { return d == Device::cuda ? "cuda" : "cpu"; }

}  // namespace stockmixer::cli
