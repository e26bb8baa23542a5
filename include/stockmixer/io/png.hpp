// stockmixer/io/png.hpp — an RGB image written as a PNG file, with no dependency beyond the standard
// library.
//
// RgbImage: width × height pixels, 3 bytes each (red, green, blue), rows top to bottom.
// encode_png(image) -> the bytes of a PNG file (PNG 1.2 / RFC 2083): the signature, IHDR (8-bit
//   truecolour, no interlace), one IDAT chunk and IEND, each chunk with its CRC-32. The IDAT data is a
//   zlib stream (RFC 1950: header 0x78 0x01, Adler-32 of the data at the end) of the scanlines, each
//   preceded by filter byte 0 (None), compressed into one deflate block with the fixed Huffman codes
//   (RFC 1951 §3.2.6). Matches are found greedily among four candidate distances: the previous byte,
//   the previous pixel, the pixel above, and the last position whose next 3 bytes hashed alike; the
//   longest wins (3 to 258 bytes). Charts are mostly runs of one colour, which these find, so an
//   800 × 450 chart takes a few kB; an image of noise grows by under 15 % over its raw size.
// write_png(path, image): encode_png, written whole (io::write_file).
// crc32(bytes, n, crc) and adler32(bytes, n, adler): the two checksums, each continued from a previous
//   value (crc 0 and adler 1 start a new one).
//
// Limits: width and height 1 to 16384 (Error otherwise, naming the size).
// Tests: tests/test_backtest.cpp decodes what encode_png writes with a small inflater of its own;
// tests/check_backtest.py decodes the CLI's equity.png with Python's zlib.
#pragma once

#include "stockmixer/common.hpp"
#include "stockmixer/io/files.hpp"

#include <algorithm>
#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace stockmixer::io {

// ---- interface -------------------------------------------------------------------------------------

struct RgbImage {
  int width = 0, height = 0;
  std::vector<unsigned char> pixels;  // [height, width, 3], rows top to bottom

  RgbImage() = default;
  RgbImage(int w, int h, std::array<unsigned char, 3> fill = {255, 255, 255});
  // Pixel (x, y) with y = 0 the top row; points outside the image are ignored.
  void set(int x, int y, std::array<unsigned char, 3> rgb);
  std::array<unsigned char, 3> get(int x, int y) const;
};

std::string encode_png(const RgbImage& image);
void write_png(const std::string& path, const RgbImage& image);
std::uint32_t crc32(const unsigned char* bytes, std::size_t n, std::uint32_t crc = 0);
std::uint32_t adler32(const unsigned char* bytes, std::size_t n, std::uint32_t adler = 1);

// ---- implementation --------------------------------------------------------------------------------

namespace detail {

constexpr int kMaxPngSide = 16384;

inline void check_png_size(int w, int h, const char* who) {
  if (w < 1 || h < 1 || w > kMaxPngSide || h > kMaxPngSide)
    throw Error(std::string(who) + ": image size " + std::to_string(w) + " x " + std::to_string(h) +
                ": expected width and height 1 to " + std::to_string(kMaxPngSide));
}

// Deflate's bit order: values LSB first; Huffman codes are sent from their most significant bit.
class BitWriter {
 public:
  explicit BitWriter(std::string& out) : out_(out) {}
  void bits(std::uint32_t value, int n) {
    acc_ |= static_cast<std::uint64_t>(value) << fill_;
    fill_ += n;
    while (fill_ >= 8) {
      out_.push_back(static_cast<char>(acc_ & 0xFF));
      acc_ >>= 8;
      fill_ -= 8;
    }
  }
  void code(std::uint32_t code, int n) {  // a Huffman code, most significant bit first
    std::uint32_t reversed = 0;
    for (int k = 0; k < n; ++k) reversed |= ((code >> k) & 1u) << (n - 1 - k);
    bits(reversed, n);
  }
  void flush() {
    if (fill_ > 0) out_.push_back(static_cast<char>(acc_ & 0xFF));
    acc_ = 0;
    fill_ = 0;
  }

 private:
  std::string& out_;
  std::uint64_t acc_ = 0;
  int fill_ = 0;
};

// The fixed literal/length code of RFC 1951 §3.2.6.
inline void fixed_literal(BitWriter& w, int symbol) {
  if (symbol < 144) w.code(static_cast<std::uint32_t>(0x30 + symbol), 8);
  else if (symbol < 256) w.code(static_cast<std::uint32_t>(0x190 + symbol - 144), 9);
  else if (symbol < 280) w.code(static_cast<std::uint32_t>(symbol - 256), 7);
  else w.code(static_cast<std::uint32_t>(0xC0 + symbol - 280), 8);
}

inline void fixed_match(BitWriter& w, int length, int distance) {
  static constexpr std::array<int, 29> kLengthBase{3,  4,  5,  6,  7,  8,  9,  10, 11,  13,  15,  17,  19,  23, 27,
                                                   31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258};
  static constexpr std::array<int, 29> kLengthExtra{0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2,
                                                    2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0};
  static constexpr std::array<int, 30> kDistBase{1,    2,    3,    4,    5,    7,     9,     13,    17,  25,
                                                 33,   49,   65,   97,   129,  193,   257,   385,   513, 769,
                                                 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577};
  int l = 28;  // length 258 has its own symbol (285); 227 + 31 is not a valid encoding of it
  if (length < 258)
    for (l = 27; kLengthBase[static_cast<std::size_t>(l)] > length; --l) {
    }
  fixed_literal(w, 257 + l);
  w.bits(static_cast<std::uint32_t>(length - kLengthBase[static_cast<std::size_t>(l)]),
         kLengthExtra[static_cast<std::size_t>(l)]);
  int d = 29;
  for (; kDistBase[static_cast<std::size_t>(d)] > distance; --d) {
  }
  w.code(static_cast<std::uint32_t>(d), 5);
  w.bits(static_cast<std::uint32_t>(distance - kDistBase[static_cast<std::size_t>(d)]), d < 4 ? 0 : d / 2 - 1);
}

// One deflate block (BFINAL = 1, fixed codes) of data, appended to out.
inline void deflate_fixed(std::string& out, const unsigned char* data, std::size_t n, std::size_t row) {
  constexpr std::size_t kWindow = 32768, kMin = 3, kMax = 258, kHash = 1u << 15;
  BitWriter w(out);
  w.bits(1, 1);  // BFINAL
  w.bits(1, 2);  // BTYPE 01: fixed Huffman codes
  std::vector<std::int64_t> head(kHash, -1);
  auto hash = [data](std::size_t i) {
    return ((std::size_t{data[i]} << 10) ^ (std::size_t{data[i + 1]} << 5) ^ data[i + 2]) & (kHash - 1);
  };
  std::size_t i = 0;
  while (i < n) {
    std::size_t best_len = 0, best_dist = 0;
    if (i + kMin <= n) {
      const std::int64_t previous = head[hash(i)];
      const std::array<std::size_t, 4> candidates{1, 3, row, previous >= 0 ? i - static_cast<std::size_t>(previous) : 0};
      for (std::size_t dist : candidates) {
        if (dist == 0 || dist > i || dist > kWindow) continue;
        std::size_t len = 0;
        const std::size_t limit = std::min(kMax, n - i);
        while (len < limit && data[i + len] == data[i + len - dist]) ++len;
        if (len > best_len) {
          best_len = len;
          best_dist = dist;
        }
      }
    }
    const std::size_t step = best_len >= kMin ? best_len : 1;
    if (best_len >= kMin) fixed_match(w, static_cast<int>(best_len), static_cast<int>(best_dist));
    else fixed_literal(w, data[i]);
    for (std::size_t k = i; k < i + step && k + kMin <= n; ++k) head[hash(k)] = static_cast<std::int64_t>(k);
    i += step;
  }
  fixed_literal(w, 256);  // end of block
  w.flush();
}

inline void put_u32(std::string& out, std::uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<char>((v >> shift) & 0xFF));
}

inline void png_chunk(std::string& out, const char* type, const std::string& data) {
  put_u32(out, static_cast<std::uint32_t>(data.size()));
  const std::size_t start = out.size();
  out.append(type, 4);
  out += data;
  put_u32(out, crc32(reinterpret_cast<const unsigned char*>(out.data() + start), out.size() - start));
}

}  // namespace detail

inline RgbImage::RgbImage(int w, int h, std::array<unsigned char, 3> fill) : width(w), height(h) {
  detail::check_png_size(w, h, "stockmixer::io::RgbImage");
  pixels.resize(static_cast<std::size_t>(w) * static_cast<std::size_t>(h) * 3);
  for (std::size_t k = 0; k < pixels.size(); k += 3)
    for (std::size_t c = 0; c < 3; ++c) pixels[k + c] = fill[c];
}

inline void RgbImage::set(int x, int y, std::array<unsigned char, 3> rgb) {
  if (x < 0 || y < 0 || x >= width || y >= height) return;
  const std::size_t at = (static_cast<std::size_t>(y) * static_cast<std::size_t>(width) + static_cast<std::size_t>(x)) * 3;
  for (std::size_t c = 0; c < 3; ++c) pixels[at + c] = rgb[c];
}

inline std::array<unsigned char, 3> RgbImage::get(int x, int y) const {
  const std::size_t at = (static_cast<std::size_t>(y) * static_cast<std::size_t>(width) + static_cast<std::size_t>(x)) * 3;
  return {pixels[at], pixels[at + 1], pixels[at + 2]};
}

inline std::uint32_t crc32(const unsigned char* bytes, std::size_t n, std::uint32_t crc) {
  static const std::array<std::uint32_t, 256> table = [] {
    std::array<std::uint32_t, 256> t{};
    for (std::uint32_t k = 0; k < 256; ++k) {
      std::uint32_t c = k;
      for (int b = 0; b < 8; ++b) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[k] = c;
    }
    return t;
  }();
  crc = ~crc;
  for (std::size_t k = 0; k < n; ++k) crc = table[(crc ^ bytes[k]) & 0xFF] ^ (crc >> 8);
  return ~crc;
}

inline std::uint32_t adler32(const unsigned char* bytes, std::size_t n, std::uint32_t adler) {
  constexpr std::uint32_t kMod = 65521;
  std::uint32_t a = adler & 0xFFFF, b = adler >> 16;
  while (n > 0) {
    const std::size_t block = std::min<std::size_t>(n, 5552);  // the most bytes before b can overflow
    for (std::size_t k = 0; k < block; ++k) {
      a += bytes[k];
      b += a;
    }
    a %= kMod;
    b %= kMod;
    bytes += block;
    n -= block;
  }
  return (b << 16) | a;
}

inline std::string encode_png(const RgbImage& image) {
  detail::check_png_size(image.width, image.height, "stockmixer::io::encode_png");
  const std::size_t row = 1 + 3 * static_cast<std::size_t>(image.width);  // filter byte + pixels
  if (image.pixels.size() != 3 * static_cast<std::size_t>(image.width) * static_cast<std::size_t>(image.height))
    throw Error("stockmixer::io::encode_png: " + std::to_string(image.pixels.size()) + " pixel bytes for a " +
                std::to_string(image.width) + " x " + std::to_string(image.height) + " image: expected " +
                std::to_string(3 * static_cast<std::size_t>(image.width) * static_cast<std::size_t>(image.height)));
  std::vector<unsigned char> raw(row * static_cast<std::size_t>(image.height));
  for (std::size_t y = 0; y < static_cast<std::size_t>(image.height); ++y) {
    raw[y * row] = 0;  // filter type None
    std::copy_n(image.pixels.begin() + static_cast<std::ptrdiff_t>(y * (row - 1)), row - 1, raw.begin() + static_cast<std::ptrdiff_t>(y * row + 1));
  }
  std::string z{'\x78', '\x01'};  // deflate, 32 KB window, no dictionary; (0x78 * 256 + 0x01) % 31 == 0
  detail::deflate_fixed(z, raw.data(), raw.size(), row);
  detail::put_u32(z, adler32(raw.data(), raw.size()));

  std::string header;
  detail::put_u32(header, static_cast<std::uint32_t>(image.width));
  detail::put_u32(header, static_cast<std::uint32_t>(image.height));
  header += std::string{'\x08', '\x02', '\x00', '\x00', '\x00'};  // 8 bits, truecolour, deflate, filter 0, no interlace
  std::string png = "\x89PNG\r\n\x1a\n";
  detail::png_chunk(png, "IHDR", header);
  detail::png_chunk(png, "IDAT", z);
  detail::png_chunk(png, "IEND", "");
  return png;
}

inline void write_png(const std::string& path, const RgbImage& image) { write_file(path, encode_png(image)); }

}  // namespace stockmixer::io
