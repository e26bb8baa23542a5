// stockmixer/io/input.hpp — reading files that may be hostile: only regular files, sizes known before
// anything is allocated, JSON nesting bounded before anything recurses over it.
//
// regular_file_size(path, what)
//   The size of the regular file at path. Error naming path and `what` ("safetensors file", ".npy
//   file", ...) when it is missing, a folder, or anything but a regular file: a character device
//   (/dev/zero reads forever), a FIFO (opening one blocks until a writer comes), a socket or a block
//   device. Checked before the file is opened, so nothing blocks.
// read_regular_file(path, what, max_bytes)
//   The whole regular file as bytes; Error when it is larger than max_bytes, or when the memory for
//   it cannot be had (naming the file and the bytes it asked for).
// json_depth_problem(begin, end, max_depth)
//   nlohmann/json parses iteratively, but dump(), copies and comparisons recurse once per level of
//   nesting: about 200 KB of "[[[[..." overflows the stack. This scans the bytes once (brackets
//   inside strings do not count, escapes are followed) and says, before any parse, when the text
//   nests deeper than max_depth; "" otherwise. Every JSON text read from a file goes through it.
// read_json_file(path, what, max_bytes)
//   A JSON file as read_regular_file reads it, its nesting checked by json_depth_problem before it is
//   parsed, each object's keys distinct (the parser alone would keep the last of a repeated key
//   silently): Error naming path and the problem ("key 'lr' appears twice", "not valid JSON (...)").
// byte_size(bytes)
//   "3.2 GB (3200000000 bytes)" for messages.
//
// tests: tests/test_io.cpp
#pragma once

#include "stockmixer/common.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <new>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

namespace stockmixer::io {

// ---- interface -------------------------------------------------------------------------------------

constexpr int kMaxJsonDepth = 64;  // a safetensors header nests 3 levels, a config 1 or 2

std::uint64_t regular_file_size(const std::string& path, const std::string& what);
std::string read_regular_file(const std::string& path, const std::string& what, std::uint64_t max_bytes);
std::string json_depth_problem(const char* begin, const char* end, int max_depth = kMaxJsonDepth);
nlohmann::json read_json_file(const std::string& path, const std::string& what, std::uint64_t max_bytes);
std::string byte_size(std::uint64_t bytes);

// ---- implementation --------------------------------------------------------------------------------

inline std::string byte_size(std::uint64_t bytes) {
  char buf[64];
  const double b = static_cast<double>(bytes);
  if (b >= 1e9) std::snprintf(buf, sizeof buf, "%.1f GB", b / 1e9);
  else if (b >= 1e6) std::snprintf(buf, sizeof buf, "%.1f MB", b / 1e6);
  else if (b >= 1e3) std::snprintf(buf, sizeof buf, "%.1f kB", b / 1e3);
  else return std::to_string(bytes) + " bytes";
  return std::string(buf) + " (" + std::to_string(bytes) + " bytes)";
}

inline std::uint64_t regular_file_size(const std::string& path, const std::string& what) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);  // follows links: a link to a FIFO is a FIFO
  if (st.type() == fs::file_type::not_found) throw Error(path + ": cannot open the " + what + " (no such file)");
  if (ec) throw Error(path + ": cannot open the " + what + " (" + ec.message() + ")");
  const char* kind = nullptr;
  switch (st.type()) {
    case fs::file_type::regular: break;
    case fs::file_type::directory: kind = "a directory"; break;
    case fs::file_type::character: kind = "a character device"; break;
    case fs::file_type::block: kind = "a block device"; break;
    case fs::file_type::fifo: kind = "a FIFO (named pipe)"; break;
    case fs::file_type::socket: kind = "a socket"; break;
    default: kind = "not a regular file"; break;
  }
  if (kind) throw Error(path + ": cannot read the " + what + ": it is " + kind + ", not a regular file");
  const std::uintmax_t size = fs::file_size(path, ec);
  if (ec) throw Error(path + ": cannot read the " + what + " (" + ec.message() + ")");
  return static_cast<std::uint64_t>(size);
}

inline std::string read_regular_file(const std::string& path, const std::string& what, std::uint64_t max_bytes) {
  const std::uint64_t size = regular_file_size(path, what);
  if (size > max_bytes)
    throw Error(path + ": the " + what + " is " + byte_size(size) + ", more than the " + byte_size(max_bytes) +
                " accepted");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot open the " + what + " (unreadable)");
  std::string bytes;
  try {
    bytes.resize(static_cast<std::size_t>(size));
  } catch (const std::bad_alloc&) {
    throw Error(path + ": cannot allocate " + byte_size(size) + " to read the " + what + ": out of memory");
  }
  if (size > 0) in.read(bytes.data(), static_cast<std::streamsize>(size));
  if (static_cast<std::uint64_t>(in.gcount()) != size)
    throw Error(path + ": cannot read the " + what + " (read " + std::to_string(in.gcount()) + " of " +
                std::to_string(size) + " bytes)");
  return bytes;
}

inline std::string json_depth_problem(const char* begin, const char* end, int max_depth) {
  int depth = 0;
  bool in_string = false;
  for (const char* p = begin; p < end; ++p) {
    const char c = *p;
    if (in_string) {
      if (c == '\\') ++p;  // the escaped character cannot end the string
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > max_depth)
        return "JSON nested more than " + std::to_string(max_depth) + " levels deep (at byte " +
               std::to_string(p - begin) + ")";
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return "";
}

inline nlohmann::json read_json_file(const std::string& path, const std::string& what, std::uint64_t max_bytes) {
  const std::string text = read_regular_file(path, what, max_bytes);
  const std::string too_deep = json_depth_problem(text.data(), text.data() + text.size());
  if (!too_deep.empty()) throw Error(path + ": " + too_deep);
  // The keys seen in each object being parsed, innermost last; a repeated one throws from inside the
  // parser's callback, which unwinds through the parser.
  std::vector<std::vector<std::string>> keys;
  const nlohmann::json::parser_callback_t refuse_duplicates = [&](int, nlohmann::json::parse_event_t event,
                                                                  nlohmann::json& parsed) {
    if (event == nlohmann::json::parse_event_t::object_start) {
      keys.emplace_back();
    } else if (event == nlohmann::json::parse_event_t::object_end && !keys.empty()) {
      keys.pop_back();
    } else if (event == nlohmann::json::parse_event_t::key && !keys.empty()) {
      const std::string key = parsed.get<std::string>();
      if (std::find(keys.back().begin(), keys.back().end(), key) != keys.back().end())
        throw Error(path + ": key '" + key + "' appears twice");
      keys.back().push_back(key);
    }
    return true;
  };
  try {
    return nlohmann::json::parse(text, refuse_duplicates);
  } catch (const nlohmann::json::exception& e) {
    throw Error(path + ": not valid JSON (" + e.what() + ")");
  }
}

}  // namespace stockmixer::io
