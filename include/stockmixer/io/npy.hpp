// stockmixer/io/npy.hpp — NumPy .npy arrays in and out (written through xtensor's .npy codec).
//
// read_npy<T>(path) accepts float32 or float64 little-endian C-order arrays of rank 0..4 (format
// versions 1.0, 2.0 and 3.0) and converts to T; anything else (another dtype, Fortran order, a
// truncated or corrupt file) is an Error that names the file and what was expected. It parses the
// format itself and trusts nothing it declares: only a regular file is opened (a FIFO or a device is
// refused by name), the header length is checked against the file's size (and 1 MiB) before the header
// is read, and the shape's product against the bytes that follow it before anything is allocated, so
// it allocates no more than the file holds (twice, for float32 read as double). write_npy replaces
// <path> whole or not at all, through io::write_file (a unique temporary file, synced, renamed).
#pragma once

#include "stockmixer/io/files.hpp"
#include "stockmixer/io/input.hpp"
#include "stockmixer/tensor.hpp"
#include "stockmixer/xtensor.hpp"

#include <xtensor/xnpy.hpp>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <new>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

namespace stockmixer::io {

// ---- interface -------------------------------------------------------------------------------------

// `dtype`, when given, receives the file's dtype string ("<f4" or "<f8").
template <class T>
Tensor<T> read_npy(const std::string& path, std::string* dtype = nullptr);
template <class T>
void write_npy(const std::string& path, TensorMap<const T> tensor);

// ---- implementation --------------------------------------------------------------------------------

namespace detail {

constexpr std::uint64_t kMaxNpyHeaderBytes = 1 << 20;  // numpy writes ~120 bytes; its reader stops at 10 000

inline std::string shape_text(const std::vector<Index>& shape) {
  std::string s = "(";
  for (std::size_t a = 0; a < shape.size(); ++a) s += (a ? ", " : "") + std::to_string(shape[a]);
  return s + (shape.size() == 1 ? ",)" : ")");
}

struct NpyHeader {
  std::string descr;          // '<f4', ...
  bool fortran_order = false;
  std::vector<Index> shape;
};

// The header's Python literal: {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), } padded with
// spaces and ended by '\n'. Each of the three keys exactly once, in any order; nothing else.
inline NpyHeader parse_npy_header(const std::string& path, const std::string& text) {
  const char* p = text.data();
  const char* end = p + text.size();
  auto fail = [&](const std::string& what) -> void {
    std::string shown = text.substr(0, 120);
    for (char& c : shown)
      if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f) c = '?';
    throw Error(path + ": not a valid .npy file (" + what + " in its header \"" + shown +
                (text.size() > 120 ? "..." : "") + "\")");
  };
  auto skip = [&] {
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) ++p;
  };
  auto expect = [&](char c, const char* what) {
    skip();
    if (p == end || *p != c) fail(std::string("expected ") + what);
    ++p;
  };
  auto string = [&] {
    skip();
    if (p == end || (*p != '\'' && *p != '"')) fail("expected a quoted string");
    const char quote = *p++;
    const char* s = p;
    while (p < end && *p != quote) ++p;
    if (p == end) fail("unterminated string");
    return std::string(s, p++);
  };
  NpyHeader h;
  bool seen_descr = false, seen_fortran = false, seen_shape = false;
  expect('{', "'{'");
  for (;;) {
    skip();
    if (p < end && *p == '}') break;
    const std::string key = string();
    expect(':', "':' after a key");
    skip();
    bool* seen = nullptr;
    if (key == "descr") {
      seen = &seen_descr;
      if (p < end && *p == '[') fail("a structured dtype");
      h.descr = string();
    } else if (key == "fortran_order") {
      seen = &seen_fortran;
      if (text.compare(static_cast<std::size_t>(p - text.data()), 4, "True") == 0) {
        h.fortran_order = true;
        p += 4;
      } else if (text.compare(static_cast<std::size_t>(p - text.data()), 5, "False") == 0) {
        p += 5;
      } else {
        fail("'fortran_order' is neither True nor False");
      }
    } else if (key == "shape") {
      seen = &seen_shape;
      expect('(', "'(' opening the shape");
      for (;;) {
        skip();
        if (p < end && *p == ')') break;
        if (p == end || *p < '0' || *p > '9') fail("a shape that is not a tuple of non-negative integers");
        Index d = 0;
        for (; p < end && *p >= '0' && *p <= '9'; ++p)
          if (__builtin_mul_overflow(d, Index(10), &d) || __builtin_add_overflow(d, Index(*p - '0'), &d))
            fail("a dimension above 2^63 - 1");
        if (p < end && *p == 'L') ++p;  // Python 2's long suffix
        if (h.shape.size() == static_cast<std::size_t>(Shape::kMaxRank))
          throw Error(path + ": rank above 4 (the header's shape has more than 4 dimensions)");
        h.shape.push_back(d);
        skip();
        if (p < end && *p == ',') ++p;
        else if (p == end || *p != ')') fail("expected ',' or ')' in the shape");
      }
      ++p;  // ')'
    } else {
      fail("unexpected key '" + key + "'");
    }
    if (*seen) fail("the key '" + key + "' twice");
    *seen = true;
    skip();
    if (p < end && *p == ',') ++p;
    else if (p == end || *p != '}') fail("expected ',' or '}' after a value");
  }
  ++p;  // '}'
  skip();
  if (p != end) fail("bytes after the dictionary");
  if (!seen_descr || !seen_fortran || !seen_shape) fail("'descr', 'fortran_order' and 'shape' not all present");
  return h;
}

}  // namespace detail

template <class T>
Tensor<T> read_npy(const std::string& path, std::string* dtype) {
  {
    const std::uint16_t one = 1;
    unsigned char first = 0;
    std::memcpy(&first, &one, 1);
    if (first != 1) throw Error(path + ": reading .npy files needs a little-endian host");
  }
  // ---- the preamble: magic, version, header length (checked against the file's size) ----
  const std::uint64_t size = regular_file_size(path, ".npy file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot open the .npy file (unreadable)");
  unsigned char pre[12] = {};
  in.read(reinterpret_cast<char*>(pre), static_cast<std::streamsize>(std::min<std::uint64_t>(size, 12)));
  if (size < 10 || std::memcmp(pre, "\x93NUMPY", 6) != 0)
    throw Error(path + ": not a valid .npy file (it does not start with the magic \\x93NUMPY and a version" +
                (size < 10 ? ": the file is " + std::to_string(size) + " bytes" : std::string()) + ")");
  const unsigned major = pre[6], minor = pre[7];
  if (major < 1 || major > 3 || minor != 0)
    throw Error(path + ": not a valid .npy file (format version " + std::to_string(major) + "." +
                std::to_string(minor) + "; known: 1.0, 2.0, 3.0)");
  const std::uint64_t header_start = major == 1 ? 10 : 12;
  if (size < header_start) throw Error(path + ": the file is truncated (" + std::to_string(size) + " bytes)");
  std::uint64_t header_len = std::uint64_t(pre[8]) | std::uint64_t(pre[9]) << 8;
  if (major > 1) header_len |= std::uint64_t(pre[10]) << 16 | std::uint64_t(pre[11]) << 24;
  if (header_len > size - header_start)
    throw Error(path + ": not a valid .npy file (its header length " + std::to_string(header_len) +
                " runs past the end of the file, which holds " + std::to_string(size - header_start) +
                " bytes after the length): truncated or corrupt");
  if (header_len > detail::kMaxNpyHeaderBytes)
    throw Error(path + ": not a valid .npy file (its header length " + std::to_string(header_len) + " is above " +
                std::to_string(detail::kMaxNpyHeaderBytes) + " bytes)");
  std::string text(static_cast<std::size_t>(header_len), '\0');
  in.clear();  // a file of 10 or 11 bytes ended the preamble's read
  in.seekg(static_cast<std::streamoff>(header_start));
  in.read(text.data(), static_cast<std::streamsize>(header_len));
  if (static_cast<std::uint64_t>(in.gcount()) != header_len) throw Error(path + ": cannot read the .npy header");

  // ---- the header: dtype, order, shape; the data's length against the file ----
  const detail::NpyHeader h = detail::parse_npy_header(path, text);
  if (dtype) *dtype = h.descr;
  if (h.descr != "<f4" && h.descr != "<f8")
    throw Error(path + ": dtype '" + h.descr + "' is not supported (expected float32 '<f4' or float64 '<f8')");
  if (h.fortran_order && h.shape.size() > 1)
    throw Error(path + ": Fortran-ordered arrays are not supported (save it with np.ascontiguousarray)");
  const std::uint64_t item = h.descr == "<f4" ? 4 : 8;
  const Shape shape = [&] {
    try {
      return Shape(h.shape.begin(), h.shape.end());
    } catch (const Error& e) {
      throw Error(path + ": the header's shape " + detail::shape_text(h.shape) + " is not a tensor's (" + e.what() +
                  ")");
    }
  }();
  const std::uint64_t data = size - header_start - header_len;
  const auto numel = static_cast<std::uint64_t>(shape.size());
  std::uint64_t bytes = 0;
  if (__builtin_mul_overflow(numel, item, &bytes) || bytes > data)
    throw Error(path + ": the file is truncated (its header promises " + detail::shape_text(h.shape) + " of " +
                h.descr + ", " + std::to_string(numel) + " values of " + std::to_string(item) + " bytes, but " +
                std::to_string(data) + " bytes follow the header)");
  if (bytes < data)
    throw Error(path + ": the file holds more data than its header describes (" + std::to_string(data) +
                " bytes for " + detail::shape_text(h.shape) + " of " + h.descr + ", " + std::to_string(bytes) +
                " bytes)");

  // ---- the values: no more memory than the file holds (twice, float32 read as double) ----
  Tensor<T> out = [&] {
    try {
      return Tensor<T>(shape);
    } catch (const std::bad_alloc&) {
      throw Error(path + ": cannot allocate " + byte_size(numel * sizeof(T)) + " for its array " + shape.str() +
                  ": out of memory");
    }
  }();
  auto read = [&](auto tag) {
    using S = decltype(tag);
    if constexpr (std::is_same_v<S, T>) {
      in.read(reinterpret_cast<char*>(out.data()), static_cast<std::streamsize>(numel * sizeof(T)));
      if (static_cast<std::uint64_t>(in.gcount()) != numel * sizeof(T)) throw Error(path + ": cannot read the data");
    } else {
      std::vector<S> chunk(std::min<std::uint64_t>(numel, 1 << 14));
      for (std::uint64_t done = 0; done < numel;) {
        const std::uint64_t n = std::min<std::uint64_t>(chunk.size(), numel - done);
        in.read(reinterpret_cast<char*>(chunk.data()), static_cast<std::streamsize>(n * sizeof(S)));
        if (static_cast<std::uint64_t>(in.gcount()) != n * sizeof(S)) throw Error(path + ": cannot read the data");
        for (std::uint64_t k = 0; k < n; ++k) out.data()[done + k] = static_cast<T>(chunk[k]);
        done += n;
      }
    }
  };
  if (item == 4) read(float{});
  else read(double{});
  return out;
}

template <class T>
void write_npy(const std::string& path, TensorMap<const T> tensor) {
  std::ostringstream bytes;
  auto view = to_xtensor(tensor);
  xt::detail::dump_npy_stream(bytes, view);
  write_file(path, bytes.str());
}

}  // namespace stockmixer::io
