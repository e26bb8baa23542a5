// stockmixer/io/npy.hpp — NumPy .npy arrays in and out, through xtensor's .npy codec.
//
// read_npy<T>(path) accepts float32 or float64 little-endian C-order arrays of rank 0..4 and converts
// to T; anything else (another dtype, Fortran order, a truncated or corrupt file) is an Error that
// names the file and what was expected. write_npy writes through "<path>.tmp" renamed over <path>, so
// an existing file is never left half-written.
#pragma once

#include "stockmixer/tensor.hpp"
#include "stockmixer/xtensor.hpp"

#include <xtensor/xnpy.hpp>

#include <cstdio>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>

namespace stockmixer::io {

// ---- interface -------------------------------------------------------------------------------------

// `dtype`, when given, receives the file's dtype string ("<f4" or "<f8").
template <class T>
Tensor<T> read_npy(const std::string& path, std::string* dtype = nullptr);
template <class T>
void write_npy(const std::string& path, TensorMap<const T> tensor);

// ---- implementation --------------------------------------------------------------------------------

template <class T>
Tensor<T> read_npy(const std::string& path, std::string* dtype) {
  std::ifstream file(path, std::ios::binary);
  if (!file) throw Error(path + ": cannot open the file");
  const std::string bytes((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  std::istringstream stream(bytes);
  xt::detail::npy_file npy = [&] {
    try {
      return xt::detail::load_npy_file(stream);
    } catch (const std::exception& e) {
      throw Error(path + ": not a valid .npy file (" + e.what() + ")");
    }
  }();
  if (!stream) throw Error(path + ": the file is truncated (its header promises more data than it holds)");
  if (stream.peek() != std::char_traits<char>::eof())
    throw Error(path + ": the file holds more data than its header describes");
  if (npy.m_fortran_order && npy.m_shape.size() > 1)
    throw Error(path + ": Fortran-ordered arrays are not supported (save it with np.ascontiguousarray)");
  auto convert = [&](auto tag) {
    using S = decltype(tag);
    auto a = std::move(npy).template cast<S, xt::layout_type::dynamic>(true);
    if (a.dimension() > static_cast<std::size_t>(Shape::kMaxRank))
      throw Error(path + ": rank " + std::to_string(a.dimension()) + " is above 4");
    return from_xtensor<T>(a);
  };
  const std::string& type = npy.m_typestring;
  if (dtype) *dtype = type;
  if (type == "<f4") return convert(float{});
  if (type == "<f8") return convert(double{});
  throw Error(path + ": dtype '" + type + "' is not supported (expected float32 '<f4' or float64 '<f8')");
}

template <class T>
void write_npy(const std::string& path, TensorMap<const T> tensor) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary);
    if (!out) throw Error(path + ": cannot write (cannot create " + tmp + ")");
    auto view = to_xtensor(tensor);
    xt::detail::dump_npy_stream(out, view);
    out.flush();
    if (!out) {
      std::remove(tmp.c_str());
      throw Error(path + ": writing failed");
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    throw Error(path + ": cannot replace the file");
  }
}

}  // namespace stockmixer::io
