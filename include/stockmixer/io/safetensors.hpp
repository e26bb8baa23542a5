// stockmixer/io/safetensors.hpp — reading and writing Hugging Face safetensors checkpoints.
//
// The format (https://github.com/huggingface/safetensors):
//   [8 bytes]   H, the header length, a little-endian uint64
//   [H bytes]   UTF-8 JSON: { "<name>": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]},
//                             ..., "__metadata__": {"<key>": "<string value>", ...} }   (metadata optional)
//               padded with trailing spaces; writers pad so that 8 + H is a multiple of 8
//   [the rest]  the data section: each tensor's row-major little-endian bytes at [begin, end),
//               offsets counted from the first byte after the header
//
// SafetensorsReader reads the whole file and validates every header entry on open, with errors that
// name the file and what is wrong; it never reads outside the file. Only a regular file is opened (a
// FIFO or a device is refused by name), the header length is checked against the file's size and
// its JSON nesting against io::kMaxJsonDepth before it is parsed (io/input.hpp). Any dtype the format knows may
// be present; `read` converts F32 or F64 data to float or double. Overlapping tensors are rejected,
// gaps between them are allowed (some writers leave them). save_safetensors writes F32 (float) or
// F64 (double) in the order given, through io::write_file, so an existing file is replaced whole or
// not at all and only a regular file is ever replaced. Both need a little-endian host (checked, an Error otherwise).
// PyTorch cross-check: tests/make_io_fixtures.py · tests: tests/test_io.cpp
#pragma once

#include "stockmixer/common.hpp"
#include "stockmixer/io/files.hpp"
#include "stockmixer/io/input.hpp"
#include "stockmixer/tensor.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <new>
#include <set>
#include <string>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

namespace stockmixer::io {

// ---- interface -------------------------------------------------------------------------------------

// One header entry. begin and end are byte offsets into the data section (after the header).
struct TensorInfo {
  std::string dtype;         // "F32", "F64", "F16", "BF16", "I64", ... as in the file
  std::vector<Index> shape;  // any rank; stockmixer tensors take rank <= 4
  std::uint64_t begin = 0, end = 0;
};

// "F32" for float, "F64" for double.
template <class T>
std::string dtype_name();

class SafetensorsReader {
 public:
  // Reads and validates the whole file; throws Error naming the file and the problem.
  explicit SafetensorsReader(const std::string& path);

  const std::string& path() const { return path_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  std::vector<std::string> names() const;  // sorted
  bool contains(const std::string& name) const { return tensors_.count(name) != 0; }
  const TensorInfo& info(const std::string& name) const;  // Error if absent

  // Copies tensor `name` into dst, converting F32 or F64 to T. dst's shape must equal the stored one.
  template <class T>
  void read(const std::string& name, TensorMap<T> dst) const;
  // The tensor as a new Tensor<T> (rank <= 4).
  template <class T>
  Tensor<T> read(const std::string& name) const;
  // The flat index of tensor `name`'s first value that is NaN or infinite, or that read as T would be
  // (an F64 value beyond float's range); -1 when every value is finite. `value` receives it (as
  // stored). F32 or F64 only (an Error otherwise, as read).
  template <class T>
  Index first_non_finite(const std::string& name, double* value = nullptr) const;

  // Header limits: a longer header is taken for a corrupt file rather than allocated.
  static constexpr std::uint64_t kMaxHeaderBytes = 100'000'000;

 private:
  std::string path_;
  std::vector<char> bytes_;      // the whole file
  std::size_t data_start_ = 0;   // 8 + H
  std::map<std::string, TensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
};

// Writes `tensors` (float -> F32, double -> F64) in the given order, with `metadata`. Duplicate or
// reserved ("__metadata__") names, a write failure, a failed rename or a `path` that is not a regular
// file (a link, a device, a FIFO) throw Error; a pre-existing file at `path` is then left as it was.
template <class T>
void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, TensorMap<const T>>>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

// ---- implementation --------------------------------------------------------------------------------

namespace detail {

inline void require_little_endian(const std::string& path) {
  const std::uint16_t one = 1;
  unsigned char first = 0;
  std::memcpy(&first, &one, 1);
  if (first != 1)
    throw Error(path + ": safetensors I/O needs a little-endian host (the format is little-endian)");
}

// Bytes per element of the dtypes the format defines (the sub-byte F4/F6 ones aside); 0 if unknown.
inline std::uint64_t dtype_size(const std::string& dtype) {
  static const std::map<std::string, std::uint64_t> sizes = {
      {"BOOL", 1}, {"U8", 1},   {"I8", 1},  {"F8_E4M3", 1}, {"F8_E5M2", 1}, {"F8_E8M0", 1}, {"U16", 2},
      {"I16", 2},  {"F16", 2},  {"BF16", 2}, {"U32", 4},     {"I32", 4},     {"F32", 4},     {"U64", 8},
      {"I64", 8},  {"F64", 8},  {"C64", 8}};
  const auto it = sizes.find(dtype);
  return it == sizes.end() ? 0 : it->second;
}

inline std::string shape_str(const std::vector<Index>& shape) {
  std::string s = "[";
  for (std::size_t a = 0; a < shape.size(); ++a) s += (a ? ", " : "") + std::to_string(shape[a]);
  return s + "]";
}

// A JSON value for an error message, cut to 80 characters.
template <class Json>
std::string brief(const Json& j) {
  std::string s = j.dump();
  return s.size() <= 80 ? s : s.substr(0, 77) + "...";
}

// Parses one header entry; `where` is "<path>: tensor '<name>'".
inline TensorInfo parse_entry(const std::string& where, const nlohmann::json& entry) {
  if (!entry.is_object()) throw Error(where + ": header entry is not an object (got " + brief(entry) + ")");
  for (const char* key : {"dtype", "shape", "data_offsets"})
    if (!entry.contains(key)) throw Error(where + ": header entry is missing \"" + key + "\"");

  TensorInfo info;
  const auto& dtype = entry.at("dtype");
  if (!dtype.is_string()) throw Error(where + ": \"dtype\" must be a string (got " + brief(dtype) + ")");
  info.dtype = dtype.get<std::string>();
  const std::uint64_t item = dtype_size(info.dtype);
  if (item == 0)
    throw Error(where + ": unknown dtype '" + info.dtype +
                "' (known: BOOL, U8, I8, F8_E4M3, F8_E5M2, F8_E8M0, U16, I16, F16, BF16, U32, I32, F32, U64, I64, "
                "F64, C64)");

  const auto& shape = entry.at("shape");
  if (!shape.is_array()) throw Error(where + ": \"shape\" must be an array of integers (got " + brief(shape) + ")");
  for (const auto& d : shape) {
    if (d.is_number_integer() && !d.is_number_unsigned())
      throw Error(where + ": negative dimension " + d.dump() + " in shape " + brief(shape));
    if (!d.is_number_unsigned())
      throw Error(where + ": \"shape\" must be an array of integers (got " + brief(shape) + ")");
    const auto v = d.get<std::uint64_t>();
    if (v > static_cast<std::uint64_t>(std::numeric_limits<Index>::max()))
      throw Error(where + ": dimension " + d.dump() + " in shape " + brief(shape) + " is too large");
    info.shape.push_back(static_cast<Index>(v));
  }

  const auto& offsets = entry.at("data_offsets");
  if (!offsets.is_array() || offsets.size() != 2 || !offsets[0].is_number_unsigned() ||
      !offsets[1].is_number_unsigned())
    throw Error(where + ": \"data_offsets\" must be [begin, end], two non-negative integers (got " +
                brief(offsets) + ")");
  info.begin = offsets[0].get<std::uint64_t>();
  info.end = offsets[1].get<std::uint64_t>();
  if (info.begin > info.end)
    throw Error(where + ": data_offsets begin " + std::to_string(info.begin) + " > end " + std::to_string(info.end));

  // Expected byte length = product(shape) * item. The product of the nonzero dims must fit in Index
  // (so that Shape::size() cannot overflow, even for an empty tensor), and the bytes in 64 bits.
  Index nonzero = 1;
  for (const Index d : info.shape)
    if (d != 0) {
      if (nonzero > std::numeric_limits<Index>::max() / d)
        throw Error(where + ": shape " + shape_str(info.shape) + " is too large (over 2^63 elements)");
      nonzero *= d;
    }
  const bool empty = std::find(info.shape.begin(), info.shape.end(), Index(0)) != info.shape.end();
  const auto numel = empty ? std::uint64_t(0) : static_cast<std::uint64_t>(nonzero);
  if (numel > std::numeric_limits<std::uint64_t>::max() / item)
    throw Error(where + ": shape " + shape_str(info.shape) + " of " + info.dtype + " is too large (over 2^64 bytes)");
  const std::uint64_t bytes = numel * item;
  if (info.end - info.begin != bytes)
    throw Error(where + ": data_offsets [" + std::to_string(info.begin) + ", " + std::to_string(info.end) + ") hold " +
                std::to_string(info.end - info.begin) + " bytes but shape " + shape_str(info.shape) + " of " +
                info.dtype + " needs " + std::to_string(bytes) + " bytes (byte length mismatch)");
  return info;
}

// Converts n elements of stored type S at unaligned `src` to T.
template <class S, class T>
void convert_from_bytes(T* dst, const char* src, std::size_t n) {
  if constexpr (std::is_same_v<S, T>) {
    if (n) std::memcpy(dst, src, n * sizeof(T));
  } else {
    for (std::size_t i = 0; i < n; ++i) {
      S v;
      std::memcpy(&v, src + i * sizeof(S), sizeof(S));
      dst[i] = static_cast<T>(v);
    }
  }
}

}  // namespace detail

template <class T>
std::string dtype_name() {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "safetensors: float (F32) or double (F64)");
  return std::is_same_v<T, float> ? "F32" : "F64";
}

inline SafetensorsReader::SafetensorsReader(const std::string& path) : path_(path) {
  detail::require_little_endian(path);

  // ---- the bytes (a regular file only: a FIFO would block, a device never end) ----
  const std::uint64_t file_size = regular_file_size(path, "safetensors file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot open the safetensors file (unreadable)");
  try {
    bytes_.resize(static_cast<std::size_t>(file_size));
  } catch (const std::bad_alloc&) {
    throw Error(path + ": cannot allocate " + byte_size(file_size) + " to read the safetensors file: out of memory");
  }
  if (file_size > 0) in.read(bytes_.data(), static_cast<std::streamsize>(file_size));
  if (static_cast<std::uint64_t>(in.gcount()) != file_size)
    throw Error(path + ": cannot read the safetensors file (read " + std::to_string(in.gcount()) + " of " +
                std::to_string(file_size) + " bytes)");

  // ---- header length ----
  if (file_size < 8)
    throw Error(path + ": file is " + std::to_string(file_size) +
                " bytes, shorter than 8 bytes (the header length alone takes 8): not a safetensors file");
  std::uint64_t header_len = 0;
  for (int b = 7; b >= 0; --b)
    header_len = (header_len << 8) | static_cast<unsigned char>(bytes_[static_cast<std::size_t>(b)]);
  if (header_len > kMaxHeaderBytes)
    throw Error(path + ": header length " + std::to_string(header_len) + " is absurdly large (over " +
                std::to_string(kMaxHeaderBytes) + " bytes): not a safetensors file or corrupt");
  if (header_len > file_size - 8)
    throw Error(path + ": header length " + std::to_string(header_len) + " is larger than the file (" +
                std::to_string(file_size - 8) + " bytes follow the length): truncated or not a safetensors file");
  data_start_ = static_cast<std::size_t>(8 + header_len);
  const std::uint64_t data_size = file_size - 8 - header_len;

  // ---- header JSON: nesting bounded (before anything recurses over it), an object, no duplicate keys ----
  const std::string too_deep = json_depth_problem(bytes_.data() + 8, bytes_.data() + data_start_);
  if (!too_deep.empty()) throw Error(path + ": header is not a safetensors header: " + too_deep);
  nlohmann::json header;
  std::string duplicate;
  try {
    std::set<std::string> seen;
    header = nlohmann::json::parse(
        bytes_.begin() + 8, bytes_.begin() + static_cast<std::ptrdiff_t>(data_start_),
        [&](int depth, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
          if (event == nlohmann::json::parse_event_t::key && depth == 1 && parsed.is_string() &&
              !seen.insert(parsed.get<std::string>()).second && duplicate.empty())
            duplicate = parsed.get<std::string>();
          return true;
        });
  } catch (const nlohmann::json::exception& e) {
    throw Error(path + ": header is not valid JSON: " + e.what());
  }
  if (!header.is_object())
    throw Error(path + ": header is not a JSON object (got a JSON " + std::string(header.type_name()) + ")");
  if (!duplicate.empty()) throw Error(path + ": header has the key '" + duplicate + "' twice");

  // ---- entries ----
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      if (entry.is_null()) continue;
      if (!entry.is_object())
        throw Error(path + ": \"__metadata__\" must be an object of strings (got " + detail::brief(entry) + ")");
      for (const auto& [key, value] : entry.items()) {
        if (!value.is_string())
          throw Error(path + ": __metadata__ value for key '" + key + "' is not a string (got " +
                      detail::brief(value) + ")");
        metadata_[key] = value.get<std::string>();
      }
      continue;
    }
    const std::string where = path + ": tensor '" + name + "'";
    TensorInfo info = detail::parse_entry(where, entry);
    if (info.end > data_size)
      throw Error(where + ": data_offsets end " + std::to_string(info.end) + " is beyond the data section (" +
                  std::to_string(data_size) + " bytes)");
    tensors_.emplace(name, std::move(info));
  }

  // ---- no two tensors share a byte (gaps are allowed) ----
  std::vector<std::pair<const std::string*, const TensorInfo*>> by_offset;
  for (const auto& [name, info] : tensors_)
    if (info.end > info.begin) by_offset.emplace_back(&name, &info);
  std::sort(by_offset.begin(), by_offset.end(),
            [](const auto& a, const auto& b) { return a.second->begin < b.second->begin; });
  for (std::size_t i = 1; i < by_offset.size(); ++i) {
    const auto& [pa, a] = by_offset[i - 1];
    const auto& [pb, b] = by_offset[i];
    if (b->begin < a->end)
      throw Error(path + ": tensors '" + *pa + "' [" + std::to_string(a->begin) + ", " + std::to_string(a->end) +
                  ") and '" + *pb + "' [" + std::to_string(b->begin) + ", " + std::to_string(b->end) + ") overlap");
  }
}

inline std::vector<std::string> SafetensorsReader::names() const {
  std::vector<std::string> out;
  out.reserve(tensors_.size());
  for (const auto& kv : tensors_) out.push_back(kv.first);
  return out;
}

inline const TensorInfo& SafetensorsReader::info(const std::string& name) const {
  const auto it = tensors_.find(name);
  if (it != tensors_.end()) return it->second;
  std::string held;
  std::size_t shown = 0;
  for (const auto& kv : tensors_) {
    if (shown == 10) {
      held += ", ...";
      break;
    }
    held += (shown++ ? ", '" : "'") + kv.first + "'";
  }
  throw Error(path_ + ": no tensor named '" + name + "' (the file holds " +
              (held.empty() ? std::string("no tensors") : held) + ")");
}

template <class T>
void SafetensorsReader::read(const std::string& name, TensorMap<T> dst) const {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "safetensors: read into float or double");
  const TensorInfo& ti = info(name);
  const Shape& want = dst.shape();
  bool same = static_cast<int>(ti.shape.size()) == want.rank();
  for (int a = 0; same && a < want.rank(); ++a) same = ti.shape[static_cast<std::size_t>(a)] == want[a];
  if (!same)
    throw Error(path_ + ": tensor '" + name + "' has shape " + detail::shape_str(ti.shape) + ", expected " +
                want.str());
  const auto n = static_cast<std::size_t>(want.size());
  if (n > 0 && dst.data() == nullptr) throw Error(path_ + ": tensor '" + name + "': destination has no memory");
  const char* src = bytes_.data() + data_start_ + ti.begin;  // in bounds: checked on open
  if (ti.dtype == "F32") detail::convert_from_bytes<float>(dst.data(), src, n);
  else if (ti.dtype == "F64") detail::convert_from_bytes<double>(dst.data(), src, n);
  else
    throw Error(path_ + ": tensor '" + name + "' has dtype " + ti.dtype +
                ", which cannot be read (supported: F32, F64)");
}

template <class T>
Tensor<T> SafetensorsReader::read(const std::string& name) const {
  const TensorInfo& ti = info(name);
  if (ti.shape.size() > static_cast<std::size_t>(Shape::kMaxRank))
    throw Error(path_ + ": tensor '" + name + "' has rank " + std::to_string(ti.shape.size()) + " (shape " +
                detail::shape_str(ti.shape) + "); stockmixer tensors have rank at most 4");
  Tensor<T> out(Shape(ti.shape.begin(), ti.shape.end()));
  read<T>(name, out.map());
  return out;
}

template <class T>
Index SafetensorsReader::first_non_finite(const std::string& name, double* value) const {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "safetensors: float or double");
  const TensorInfo& ti = info(name);
  const char* src = bytes_.data() + data_start_ + ti.begin;  // in bounds: checked on open
  auto scan = [&](auto tag) -> Index {
    using S = decltype(tag);
    const auto n = static_cast<Index>((ti.end - ti.begin) / sizeof(S));
    for (Index i = 0; i < n; ++i) {
      S v;
      std::memcpy(&v, src + static_cast<std::size_t>(i) * sizeof(S), sizeof(S));
      if (!std::isfinite(v) || !std::isfinite(static_cast<T>(v))) {
        if (value) *value = static_cast<double>(v);
        return i;
      }
    }
    return -1;
  };
  if (ti.dtype == "F32") return scan(float{});
  if (ti.dtype == "F64") return scan(double{});
  throw Error(path_ + ": tensor '" + name + "' has dtype " + ti.dtype + ", which cannot be read (supported: F32, F64)");
}

template <class T>
void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, TensorMap<const T>>>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "safetensors: save float or double");
  detail::require_little_endian(path);

  // ---- the header, built before touching the disk ----
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    auto& meta = header["__metadata__"];
    meta = nlohmann::ordered_json::object();
    for (const auto& [key, value] : metadata) meta[key] = value;
  }
  std::uint64_t offset = 0;
  std::set<std::string> seen;
  for (const auto& [name, t] : tensors) {
    if (name == "__metadata__") throw Error(path + ": '__metadata__' is reserved and cannot name a tensor");
    if (!seen.insert(name).second) throw Error(path + ": duplicate tensor name '" + name + "'");
    if (t.size() > 0 && t.data() == nullptr) throw Error(path + ": tensor '" + name + "' has no data");
    const auto bytes = static_cast<std::uint64_t>(t.size()) * sizeof(T);
    auto& entry = header[name];
    entry["dtype"] = dtype_name<T>();
    entry["shape"] = nlohmann::ordered_json::array();
    for (int a = 0; a < t.rank(); ++a) entry["shape"].push_back(static_cast<std::int64_t>(t.dim(a)));
    entry["data_offsets"] = {offset, offset + bytes};
    offset += bytes;
  }
  std::string text;
  try {
    text = header.dump();  // compact, no spaces
  } catch (const nlohmann::json::exception& e) {
    throw Error(path + ": cannot write the safetensors header (names and metadata must be UTF-8): " + e.what());
  }
  text.append((8 - text.size() % 8) % 8, ' ');  // 8 + H stays a multiple of 8
  char len[8];
  for (int b = 0; b < 8; ++b) len[b] = static_cast<char>((static_cast<std::uint64_t>(text.size()) >> (8 * b)) & 0xFF);

  // ---- the bytes, then io::write_file: a unique temporary file, synced, renamed over path ----
  std::string bytes(len, 8);
  bytes += text;
  for (const auto& kv : tensors)
    if (kv.second.size() > 0)
      bytes.append(reinterpret_cast<const char*>(kv.second.data()), static_cast<std::size_t>(kv.second.size()) * sizeof(T));
  write_file(path, bytes);
}

}  // namespace stockmixer::io
