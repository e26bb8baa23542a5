// stockmixer/io/plot.hpp — line charts as PNG files (loss curves, equity curves), drawn with a small
// built-in bitmap font: no dependency beyond io/png.hpp.
//
// write_line_chart(png_path, title, series, width, height): one chart, written whole (io::write_file).
// render_line_chart(title, series, width, height): the same chart as an RgbImage.
//
// Layout: the title on top; the plot frame (black axes left and bottom, grey top and right); the y axis
// labelled at its two ends with the range's minimum and maximum (printf "%.4g"), the x axis with the
// first and last point's 1-based index (1 and the longest series' length; point i of every series is
// drawn at the same x); the legend below (a colour swatch and the name per series, wrapped into rows).
// The y range is the smallest and largest finite value of all series (a constant v gets v ± 1, or
// v ± |v|/2 when |v| > 2). Each series is a polyline, two pixels thick, between consecutive finite points;
// a NaN or ±Inf value is a gap (the segments on both sides of it are not drawn), and a finite point with
// no finite neighbour is drawn as a 3 × 3 dot. Series are drawn in order, so the last is on top.
// Text: a 5 × 7 font in 6 × 8 cells holding digits, capital letters and ! " # $ % & ' ( ) * + , - . / :
// ; < = > ? @ [ ] _ |; lower-case letters are drawn as capitals, any other character as '?'.
//
// Refused (stockmixer::Error naming the size or the file): width < 200 or height < 120, or larger
// than io/png.hpp allows; a legend that leaves no room for the plot.
// Tests: tests/test_backtest.cpp ("a line chart ...").
#pragma once

#include "stockmixer/common.hpp"
#include "stockmixer/io/png.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <string>
#include <vector>

namespace stockmixer::io {

// ---- interface -------------------------------------------------------------------------------------

struct Series {
  std::string name;
  std::vector<double> y;
  std::array<unsigned char, 3> rgb;
};

void write_line_chart(const std::string& png_path, const std::string& title, const std::vector<Series>& series,
                      int width = 800, int height = 450);
RgbImage render_line_chart(const std::string& title, const std::vector<Series>& series, int width = 800,
                           int height = 450);

// Text drawn with the built-in font at (x, y) = its top-left corner, each glyph scale × scale pixels
// per font pixel; returns the width it takes (6 · scale per character).
int draw_text(RgbImage& image, int x, int y, const std::string& text, std::array<unsigned char, 3> rgb, int scale = 1);
inline int text_width(const std::string& text, int scale = 1) { return static_cast<int>(text.size()) * 6 * scale; }

// ---- implementation --------------------------------------------------------------------------------

namespace detail {

struct Glyph {
  char c;
  std::array<const char*, 7> rows;  // '#' = ink
};

// The font: 5 × 7 glyphs, one string per row, top to bottom.
inline const std::vector<Glyph>& font() {
  static const std::vector<Glyph> glyphs{
      {' ', {".....", ".....", ".....", ".....", ".....", ".....", "....."}},
      {'0', {".###.", "#...#", "#..##", "#.#.#", "##..#", "#...#", ".###."}},
      {'1', {"..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###."}},
      {'2', {".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####"}},
      {'3', {"#####", "...#.", "..#..", "...#.", "....#", "#...#", ".###."}},
      {'4', {"...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#."}},
      {'5', {"#####", "#....", "####.", "....#", "....#", "#...#", ".###."}},
      {'6', {"..##.", ".#...", "#....", "####.", "#...#", "#...#", ".###."}},
      {'7', {"#####", "....#", "...#.", "..#..", ".#...", ".#...", ".#..."}},
      {'8', {".###.", "#...#", "#...#", ".###.", "#...#", "#...#", ".###."}},
      {'9', {".###.", "#...#", "#...#", ".####", "....#", "...#.", ".##.."}},
      {'A', {".###.", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"}},
      {'B', {"####.", "#...#", "#...#", "####.", "#...#", "#...#", "####."}},
      {'C', {".###.", "#...#", "#....", "#....", "#....", "#...#", ".###."}},
      {'D', {"###..", "#..#.", "#...#", "#...#", "#...#", "#..#.", "###.."}},
      {'E', {"#####", "#....", "#....", "####.", "#....", "#....", "#####"}},
      {'F', {"#####", "#....", "#....", "####.", "#....", "#....", "#...."}},
      {'G', {".###.", "#...#", "#....", "#.###", "#...#", "#...#", ".####"}},
      {'H', {"#...#", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"}},
      {'I', {".###.", "..#..", "..#..", "..#..", "..#..", "..#..", ".###."}},
      {'J', {"..###", "...#.", "...#.", "...#.", "...#.", "#..#.", ".##.."}},
      {'K', {"#...#", "#..#.", "#.#..", "##...", "#.#..", "#..#.", "#...#"}},
      {'L', {"#....", "#....", "#....", "#....", "#....", "#....", "#####"}},
      {'M', {"#...#", "##.##", "#.#.#", "#.#.#", "#...#", "#...#", "#...#"}},
      {'N', {"#...#", "#...#", "##..#", "#.#.#", "#..##", "#...#", "#...#"}},
      {'O', {".###.", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."}},
      {'P', {"####.", "#...#", "#...#", "####.", "#....", "#....", "#...."}},
      {'Q', {".###.", "#...#", "#...#", "#...#", "#.#.#", "#..#.", ".##.#"}},
      {'R', {"####.", "#...#", "#...#", "####.", "#.#..", "#..#.", "#...#"}},
      {'S', {".####", "#....", "#....", ".###.", "....#", "....#", "####."}},
      {'T', {"#####", "..#..", "..#..", "..#..", "..#..", "..#..", "..#.."}},
      {'U', {"#...#", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."}},
      {'V', {"#...#", "#...#", "#...#", "#...#", "#...#", ".#.#.", "..#.."}},
      {'W', {"#...#", "#...#", "#...#", "#.#.#", "#.#.#", "#.#.#", ".#.#."}},
      {'X', {"#...#", "#...#", ".#.#.", "..#..", ".#.#.", "#...#", "#...#"}},
      {'Y', {"#...#", "#...#", ".#.#.", "..#..", "..#..", "..#..", "..#.."}},
      {'Z', {"#####", "....#", "...#.", "..#..", ".#...", "#....", "#####"}},
      {'!', {"..#..", "..#..", "..#..", "..#..", "..#..", ".....", "..#.."}},
      {'"', {".#.#.", ".#.#.", ".....", ".....", ".....", ".....", "....."}},
      {'#', {".#.#.", ".#.#.", "#####", ".#.#.", "#####", ".#.#.", ".#.#."}},
      {'$', {"..#..", ".####", "#.#..", ".###.", "..#.#", "####.", "..#.."}},
      {'%', {"##...", "##..#", "...#.", "..#..", ".#...", "#..##", "...##"}},
      {'&', {".##..", "#..#.", "#.#..", ".#...", "#.#.#", "#..#.", ".##.#"}},
      {'\'', {"..#..", "..#..", ".#...", ".....", ".....", ".....", "....."}},
      {'(', {"...#.", "..#..", ".#...", ".#...", ".#...", "..#..", "...#."}},
      {')', {".#...", "..#..", "...#.", "...#.", "...#.", "..#..", ".#..."}},
      {'*', {".....", "..#..", "#.#.#", ".###.", "#.#.#", "..#..", "....."}},
      {'+', {".....", "..#..", "..#..", "#####", "..#..", "..#..", "....."}},
      {',', {".....", ".....", ".....", ".....", ".##..", "..#..", ".#..."}},
      {'-', {".....", ".....", ".....", "#####", ".....", ".....", "....."}},
      {'.', {".....", ".....", ".....", ".....", ".....", ".##..", ".##.."}},
      {'/', {".....", "....#", "...#.", "..#..", ".#...", "#....", "....."}},
      {':', {".....", ".##..", ".##..", ".....", ".##..", ".##..", "....."}},
      {';', {".....", ".##..", ".##..", ".....", ".##..", "..#..", ".#..."}},
      {'<', {"...#.", "..#..", ".#...", "#....", ".#...", "..#..", "...#."}},
      {'=', {".....", ".....", "#####", ".....", "#####", ".....", "....."}},
      {'>', {".#...", "..#..", "...#.", "....#", "...#.", "..#..", ".#..."}},
      {'?', {".###.", "#...#", "....#", "...#.", "..#..", ".....", "..#.."}},
      {'@', {".###.", "#...#", "#.###", "#.#.#", "#.###", "#....", ".###."}},
      {'[', {".###.", ".#...", ".#...", ".#...", ".#...", ".#...", ".###."}},
      {']', {".###.", "...#.", "...#.", "...#.", "...#.", "...#.", ".###."}},
      {'_', {".....", ".....", ".....", ".....", ".....", ".....", "#####"}},
      {'|', {"..#..", "..#..", "..#..", "..#..", "..#..", "..#..", "..#.."}},
  };
  return glyphs;
}

inline const Glyph& glyph(char c) {
  if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  const std::vector<Glyph>& f = font();
  for (const Glyph& g : f)
    if (g.c == c) return g;
  for (const Glyph& g : f)
    if (g.c == '?') return g;
  return f.front();
}

inline void fill_rect(RgbImage& image, int x0, int y0, int w, int h, std::array<unsigned char, 3> rgb) {
  for (int y = y0; y < y0 + h; ++y)
    for (int x = x0; x < x0 + w; ++x) image.set(x, y, rgb);
}

// A segment two pixels thick (Bresenham, each step a 2 × 2 block).
inline void draw_segment(RgbImage& image, int x0, int y0, int x1, int y1, std::array<unsigned char, 3> rgb) {
  const int dx = std::abs(x1 - x0), dy = -std::abs(y1 - y0);
  const int sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1;
  int err = dx + dy;
  for (;;) {
    fill_rect(image, x0, y0, 2, 2, rgb);
    if (x0 == x1 && y0 == y1) break;
    const int e2 = 2 * err;
    if (e2 >= dy) {
      err += dy;
      x0 += sx;
    }
    if (e2 <= dx) {
      err += dx;
      y0 += sy;
    }
  }
}

inline std::string tick_label(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4g", v);
  return buf;
}

}  // namespace detail

inline int draw_text(RgbImage& image, int x, int y, const std::string& text, std::array<unsigned char, 3> rgb,
                     int scale) {
  for (std::size_t k = 0; k < text.size(); ++k) {
    const detail::Glyph& g = detail::glyph(text[k]);
    const int x0 = x + static_cast<int>(k) * 6 * scale;
    for (int row = 0; row < 7; ++row)
      for (int col = 0; col < 5; ++col)
        if (g.rows[static_cast<std::size_t>(row)][col] == '#')
          detail::fill_rect(image, x0 + col * scale, y + row * scale, scale, scale, rgb);
  }
  return text_width(text, scale);
}

inline RgbImage render_line_chart(const std::string& title, const std::vector<Series>& series, int width,
                                  int height) {
  if (width < 200 || height < 120)
    throw Error("stockmixer::io::render_line_chart: a chart of " + std::to_string(width) + " x " +
                std::to_string(height) + " pixels: expected at least 200 x 120");
  RgbImage image(width, height);
  const std::array<unsigned char, 3> black{0, 0, 0}, grey{190, 190, 190};

  // The y range over every finite value, and the longest series.
  double lo = std::numeric_limits<double>::infinity(), hi = -lo;
  std::size_t points = 0;
  for (const Series& s : series) {
    points = std::max(points, s.y.size());
    for (double v : s.y)
      if (std::isfinite(v)) {
        lo = std::min(lo, v);
        hi = std::max(hi, v);
      }
  }
  const bool any = lo <= hi;
  if (any && lo == hi) {
    const double pad = std::abs(lo) > 2 ? std::abs(lo) / 2 : 1.0;
    lo -= pad;
    hi += pad;
  }

  // The legend's rows, bottom up from the image's lower edge.
  std::vector<std::vector<std::size_t>> legend_rows(1);
  int row_width = 0;
  for (std::size_t k = 0; k < series.size(); ++k) {
    const int w = 14 + text_width(series[k].name) + 16;  // swatch, gap, name, gap
    if (row_width > 0 && row_width + w > width - 20) {
      legend_rows.emplace_back();
      row_width = 0;
    }
    legend_rows.back().push_back(k);
    row_width += w;
  }
  const int legend_height = series.empty() ? 0 : static_cast<int>(legend_rows.size()) * 12 + 6;

  const int title_scale = text_width(title, 2) <= width - 20 ? 2 : 1;
  const std::string hi_label = any ? detail::tick_label(hi) : "", lo_label = any ? detail::tick_label(lo) : "";
  const int left = std::max(40, std::max(text_width(hi_label), text_width(lo_label)) + 12);
  const int right = width - 16;
  const int top = 8 + 7 * title_scale + 12;
  const int bottom = height - legend_height - 22;
  if (bottom - top < 20 || right - left < 20)
    throw Error("stockmixer::io::render_line_chart: a chart of " + std::to_string(width) + " x " +
                std::to_string(height) + " pixels has no room for the plot beside its labels and a legend of " +
                std::to_string(series.size()) + " series");

  draw_text(image, (width - text_width(title, title_scale)) / 2, 8, title, black, title_scale);
  detail::fill_rect(image, left, top, right - left + 1, 1, grey);
  detail::fill_rect(image, right, top, 1, bottom - top + 1, grey);

  auto x_of = [&](std::size_t i) {
    if (points <= 1) return (left + right) / 2;
    return left + static_cast<int>(std::lround(static_cast<double>(i) / static_cast<double>(points - 1) *
                                               static_cast<double>(right - left)));
  };
  auto y_of = [&](double v) {
    return bottom - static_cast<int>(std::lround((v - lo) / (hi - lo) * static_cast<double>(bottom - top)));
  };
  if (any)
    for (const Series& s : series) {
      const std::size_t n = s.y.size();
      for (std::size_t i = 0; i < n; ++i) {
        if (!std::isfinite(s.y[i])) continue;
        const bool next = i + 1 < n && std::isfinite(s.y[i + 1]);
        const bool before = i > 0 && std::isfinite(s.y[i - 1]);
        if (next) detail::draw_segment(image, x_of(i), y_of(s.y[i]), x_of(i + 1), y_of(s.y[i + 1]), s.rgb);
        else if (!before) detail::fill_rect(image, x_of(i) - 1, y_of(s.y[i]) - 1, 3, 3, s.rgb);
      }
    }

  // Axes over the lines, then the labels.
  detail::fill_rect(image, left, top, 1, bottom - top + 1, black);
  detail::fill_rect(image, left, bottom, right - left + 1, 1, black);
  for (int y : {top, bottom}) detail::fill_rect(image, left - 4, y, 4, 1, black);
  for (int x : {left, right}) detail::fill_rect(image, x, bottom + 1, 1, 4, black);
  if (any) {
    draw_text(image, left - 6 - text_width(hi_label), top - 3, hi_label, black);
    draw_text(image, left - 6 - text_width(lo_label), bottom - 3, lo_label, black);
  } else {
    const std::string none = "no finite values";
    draw_text(image, (left + right - text_width(none)) / 2, (top + bottom) / 2 - 3, none, black);
  }
  if (points > 0) {
    const std::string first = "1", last = std::to_string(points);
    draw_text(image, left - text_width(first) / 2, bottom + 7, first, black);
    if (points > 1) draw_text(image, right - text_width(last) / 2, bottom + 7, last, black);
  }
  int y = height - legend_height + 4;
  for (const std::vector<std::size_t>& row : legend_rows) {
    int x = 10;
    for (std::size_t k : row) {
      detail::fill_rect(image, x, y, 10, 7, series[k].rgb);
      x += 14;
      x += draw_text(image, x, y, series[k].name, black) + 16;
    }
    y += 12;
  }
  return image;
}

inline void write_line_chart(const std::string& png_path, const std::string& title, const std::vector<Series>& series,
                             int width, int height) {
  RgbImage image;
  try {
    image = render_line_chart(title, series, width, height);
  } catch (const Error& e) {
    throw Error(png_path + ": cannot draw the chart '" + title + "': " + e.what());
  }
  write_png(png_path, image);  // its errors name the file
}

}  // namespace stockmixer::io
