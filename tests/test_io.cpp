// safetensors checkpoints (stockmixer/io/safetensors.hpp): round trips, conversions, every malformed
// file the reader must reject with a precise error, atomic saves, and PyTorch both ways
// (tests/make_io_fixtures.py writes tests/fixtures/io/ and checks that PyTorch reads what we write).
#include <stockmixer/io/files.hpp>
#include <stockmixer/io/input.hpp>
#include <stockmixer/io/npy.hpp>
#include <stockmixer/io/safetensors.hpp>
#include <stockmixer/model.hpp>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include <atomic>
#include <limits>
#include <new>

#include <unistd.h>
#include <sys/stat.h>

// The largest request made while a testing::LargestAllocation is alive is recorded, and any above its
// cap refused (alloc_counter.hpp): the hostile-file tests below show that a small file never makes the
// reader ask for what the file only declares.
#include "alloc_counter.hpp"
#include "testing.hpp"

using namespace stockmixer;
using stockmixer::io::SafetensorsReader;
using stockmixer::io::save_safetensors;
namespace fs = std::filesystem;

namespace {

using testing::TempDir;

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  REQUIRE(out.good());
}

std::string u64_le(std::uint64_t v) {
  std::string s(8, '\0');
  for (int b = 0; b < 8; ++b) s[static_cast<std::size_t>(b)] = static_cast<char>((v >> (8 * b)) & 0xFF);
  return s;
}

// A file with header `header` (its true length) and then `data`, or `data_bytes` zero bytes.
std::string st_file(const std::string& header, const std::string& data) {
  return u64_le(header.size()) + header + data;
}
std::string st_file(const std::string& header, std::size_t data_bytes) {
  return st_file(header, std::string(data_bytes, '\0'));
}

template <class T>
Tensor<T> iota_tensor(Shape shape, double start) {
  Tensor<T> t(shape);
  for (Index i = 0; i < t.size(); ++i) t.data()[i] = static_cast<T>(start + 0.37 * static_cast<double>(i) - 1.0 / 3.0);
  return t;
}

template <class T>
bool bit_equal(const Tensor<T>& a, const Tensor<T>& b) {
  if (a.shape() != b.shape()) return false;
  for (Index i = 0; i < a.size(); ++i)
    if (a.data()[i] != b.data()[i]) return false;
  return true;
}

// The tensors the [interop] case writes for tests/make_io_fixtures.py --check-cpp (same list there).
struct CppSpec {
  std::string name;
  Shape shape;
};
std::vector<CppSpec> cpp_tensor_specs() {
  return {{"z.written_first", {2, 3}}, {"a.vector", {5}}, {"scalar", {}},
          {"rank4", {2, 1, 3, 2}},     {"empty", {0, 4}}, {"rank3", {3, 2, 2}}};
}
double cpp_value(int k, Index i) { return static_cast<double>((i * 7 + k * 5) % 23 - 11) / 7.0 + 0.5 * k; }
const std::map<std::string, std::string> kCppMetadata = {
    {"producer", "stockmixer test_io"}, {"note", "ünïcode ✓"}, {"empty", ""}};

template <class T>
std::vector<Tensor<T>> cpp_tensors() {
  std::vector<Tensor<T>> out;
  int k = 0;
  for (const auto& spec : cpp_tensor_specs()) {
    Tensor<T> t(spec.shape);
    for (Index i = 0; i < t.size(); ++i) t.data()[i] = static_cast<T>(cpp_value(k, i));
    out.push_back(std::move(t));
    ++k;
  }
  return out;
}

template <class T>
void round_trip(const TempDir& dir) {
  const std::string path = dir.path(std::string("round_trip_") + io::dtype_name<T>() + ".safetensors");
  const auto t0 = iota_tensor<T>(Shape{}, 4.0);                // rank 0
  const auto t1 = iota_tensor<T>(Shape{7}, -2.0);              // rank 1
  const auto t2 = iota_tensor<T>(Shape{3, 5}, 1.5);            // rank 2
  const auto t3 = iota_tensor<T>(Shape{2, 3, 4}, 0.25);        // rank 3
  const auto t4 = iota_tensor<T>(Shape{2, 1, 3, 2}, -0.75);    // rank 4
  const auto te = iota_tensor<T>(Shape{0, 5}, 0.0);            // empty
  const std::map<std::string, std::string> meta = {{"format", "pt"}, {"epoch", "12"}, {"note", "ä ✓"}};
  save_safetensors<T>(path, {{"t4", t4}, {"t0", t0}, {"t2", t2}, {"empty", te}, {"t1", t1}, {"t3", t3}}, meta);

  const std::string raw = slurp(path);
  REQUIRE(raw.size() >= 8);
  std::uint64_t h = 0;
  for (int b = 7; b >= 0; --b) h = (h << 8) | static_cast<unsigned char>(raw[static_cast<std::size_t>(b)]);
  REQUIRE(h % 8 == 0);  // padded: the data section starts 8-aligned
  const std::string header = raw.substr(8, h);
  const std::string compact = header.substr(0, header.find_last_not_of(' ') + 1);  // spaces only as padding
  REQUIRE(nlohmann::ordered_json::parse(compact).dump() == compact);                 // and no others
  REQUIRE(header.find("\"t4\"") < header.find("\"t0\""));          // entries in the order given
  REQUIRE(raw.size() == 8 + h + sizeof(T) * (1 + 7 + 15 + 24 + 12));

  const SafetensorsReader r(path);
  REQUIRE(r.metadata() == meta);
  REQUIRE(r.names() == std::vector<std::string>{"empty", "t0", "t1", "t2", "t3", "t4"});
  REQUIRE(r.contains("t3"));
  REQUIRE_FALSE(r.contains("t5"));
  REQUIRE(r.info("t4").dtype == io::dtype_name<T>());
  REQUIRE(r.info("t4").begin == 0);  // data in the order given
  REQUIRE(r.info("t0").begin == 12 * sizeof(T));
  REQUIRE(r.info("t3").shape == std::vector<Index>{2, 3, 4});
  REQUIRE(r.info("t0").shape.empty());
  CHECK(bit_equal(r.read<T>("t0"), t0));
  CHECK(bit_equal(r.read<T>("t1"), t1));
  CHECK(bit_equal(r.read<T>("t2"), t2));
  CHECK(bit_equal(r.read<T>("t3"), t3));
  CHECK(bit_equal(r.read<T>("t4"), t4));
  CHECK(bit_equal(r.read<T>("empty"), te));

  Tensor<T> into({3, 5});
  r.read<T>("t2", into.map());
  CHECK(bit_equal(into, t2));
}

}  // namespace

TEST_CASE("safetensors: dtype names", "[io]") {
  REQUIRE(io::dtype_name<float>() == "F32");
  REQUIRE(io::dtype_name<double>() == "F64");
}

TEST_CASE("safetensors: float and double round trips, rank 0..4, metadata", "[io]") {
  const TempDir dir("round_trip");
  round_trip<float>(dir);
  round_trip<double>(dir);

  // No metadata: no __metadata__ entry at all; a file can hold no tensors.
  const std::string path = dir.path("plain.safetensors");
  const Tensor<float> a({2, 2}, {1.f, 2.f, 3.f, 4.f});
  save_safetensors<float>(path, {{"a", a}});
  REQUIRE(slurp(path).find("__metadata__") == std::string::npos);
  REQUIRE(SafetensorsReader(path).metadata().empty());
  save_safetensors<double>(path, {});
  REQUIRE(SafetensorsReader(path).names().empty());
  REQUIRE(slurp(path).size() == 16);  // "{}" padded to 8
}

TEST_CASE("safetensors: F32 read into double and F64 into float", "[io]") {
  const TempDir dir("convert");
  const std::string path = dir.path("mixed.safetensors");
  const auto f = iota_tensor<float>(Shape{3, 4}, 0.1);
  const auto d = iota_tensor<double>(Shape{2, 5}, -0.3);
  save_safetensors<float>(path, {{"f", f}});
  const SafetensorsReader rf(path);
  const auto f_as_d = rf.read<double>("f");
  for (Index i = 0; i < f.size(); ++i) REQUIRE(f_as_d.data()[i] == static_cast<double>(f.data()[i]));

  save_safetensors<double>(path, {{"d", d}});
  const SafetensorsReader rd(path);
  Tensor<float> d_as_f({2, 5});
  rd.read<float>("d", d_as_f.map());
  for (Index i = 0; i < d.size(); ++i) REQUIRE(d_as_f.data()[i] == static_cast<float>(d.data()[i]));
}

TEST_CASE("safetensors: read errors name the file, the tensor and the mismatch", "[io]") {
  const TempDir dir("read_errors");
  const std::string path = dir.path("w.safetensors");
  const Tensor<float> w({2, 3});
  save_safetensors<float>(path, {{"w", w}});
  const SafetensorsReader r(path);
  Tensor<float> wrong({3, 2});
  REQUIRE_THROWS_WITH(r.read<float>("w", wrong.map()),
                      Catch::Contains(path + ": tensor 'w' has shape [2, 3], expected [3, 2]"));
  Tensor<double> flat({6});
  REQUIRE_THROWS_WITH(r.read<double>("w", flat.map()), Catch::Contains("has shape [2, 3], expected [6]"));
  REQUIRE_THROWS_WITH(r.info("nope"), Catch::Contains(path) && Catch::Contains("no tensor named 'nope'") &&
                                          Catch::Contains("'w'"));
  REQUIRE_THROWS_WITH(r.read<float>("nope"), Catch::Contains("no tensor named 'nope'"));

  // A dtype the format knows but we do not convert; a rank above 4 (fine on open, not as a Tensor).
  const std::string other = dir.path("other.safetensors");
  write_bytes(other, st_file(R"({"h":{"dtype":"F16","shape":[2],"data_offsets":[0,4]},)"
                             R"("r5":{"dtype":"F32","shape":[1,1,1,1,2],"data_offsets":[4,12]}})",
                             12));
  const SafetensorsReader ro(other);
  REQUIRE(ro.info("h").dtype == "F16");
  Tensor<float> h({2});
  REQUIRE_THROWS_WITH(ro.read<float>("h", h.map()),
                      Catch::Contains(other) && Catch::Contains("'h' has dtype F16") && Catch::Contains("F32, F64"));
  REQUIRE(ro.info("r5").shape.size() == 5);
  REQUIRE_THROWS_WITH(ro.read<float>("r5"), Catch::Contains(other) && Catch::Contains("'r5' has rank 5"));
}

TEST_CASE("safetensors: malformed files give precise errors and never read out of bounds", "[io]") {
  const TempDir dir("malformed");
  int counter = 0;
  // Writes `bytes` to a fresh file and expects opening it to throw an Error naming it and `phrase`.
  auto rejects = [&](const std::string& bytes, const std::string& phrase) {
    const std::string path = dir.path("bad_" + std::to_string(counter++) + ".safetensors");
    write_bytes(path, bytes);
    INFO("file contents: " << bytes);
    REQUIRE_THROWS_AS(SafetensorsReader(path), Error);
    REQUIRE_THROWS_WITH(SafetensorsReader(path), Catch::Contains(path) && Catch::Contains(phrase));
  };
  const std::string ok_entry = R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";

  SECTION("the file itself") {
    const std::string missing = dir.path("missing.safetensors");
    REQUIRE_THROWS_WITH(SafetensorsReader(missing), Catch::Contains(missing) && Catch::Contains("cannot open") &&
                                                        Catch::Contains("no such file"));
    const std::string a_dir = dir.path("a_directory");
    fs::create_directories(a_dir);
    REQUIRE_THROWS_WITH(SafetensorsReader(a_dir), Catch::Contains(a_dir) && Catch::Contains("is a directory"));
    rejects("", "shorter than 8 bytes");
    rejects(std::string("\x05\0\0\0\0\0\0", 7), "shorter than 8 bytes");
    rejects(u64_le(1000) + "{}", "header length 1000 is larger than the file");
    rejects(u64_le(9) + "{}      ", "is larger than the file");  // 8 bytes follow, 9 claimed
    rejects(u64_le(std::uint64_t(1) << 62) + "{}", "absurdly large");
    rejects(u64_le(~std::uint64_t(0)) + "{}", "absurdly large");
    rejects(u64_le(100'000'001) + "{}", "absurdly large");
  }
  SECTION("the header JSON") {
    rejects(st_file("{not json", 0), "header is not valid JSON");
    rejects(st_file("{not json", 0), "parse error");  // nlohmann's own message
    rejects(st_file("", 0), "header is not valid JSON");
    rejects(st_file("{\"a\":1", 0), "header is not valid JSON");
    rejects(st_file("{\"\xff\":{}}", 0), "header is not valid JSON");  // not UTF-8
    rejects(st_file("{} trailing", 0), "header is not valid JSON");
    rejects(st_file("[1, 2]", 0), "header is not a JSON object");
    rejects(st_file("\"text\"", 0), "header is not a JSON object");
    rejects(st_file("{" + ok_entry + "," + ok_entry + "}", 8), "header has the key 'a' twice");
  }
  SECTION("entries: missing fields and wrong types") {
    rejects(st_file(R"({"a":3})", 0), "tensor 'a': header entry is not an object");
    rejects(st_file(R"({"a":{"shape":[2],"data_offsets":[0,8]}})", 8), "tensor 'a': header entry is missing \"dtype\"");
    rejects(st_file(R"({"a":{"dtype":"F32","data_offsets":[0,8]}})", 8), "missing \"shape\"");
    rejects(st_file(R"({"a":{"dtype":"F32","shape":[2]}})", 8), "missing \"data_offsets\"");
    rejects(st_file(R"({"a":{"dtype":4,"shape":[2],"data_offsets":[0,8]}})", 8), "\"dtype\" must be a string");
    rejects(st_file(R"({"a":{"dtype":"F33","shape":[2],"data_offsets":[0,8]}})", 8), "unknown dtype 'F33'");
    rejects(st_file(R"({"a":{"dtype":"F32","shape":2,"data_offsets":[0,8]}})", 8), "\"shape\" must be an array");
    rejects(st_file(R"({"a":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}})", 8), "\"shape\" must be an array");
    rejects(st_file(R"({"a":{"dtype":"F32","shape":["2"],"data_offsets":[0,8]}})", 8), "\"shape\" must be an array");
    std::string long_shape = R"({"a":{"dtype":"F32","data_offsets":[0,8],"shape":[)";
    for (int i = 0; i < 10000; ++i) long_shape += "1,";
    rejects(st_file(long_shape + "null]}}", 8), "(got [1,1,1,");  // quoted, but cut short
    REQUIRE_THROWS_WITH(SafetensorsReader(dir.path("bad_" + std::to_string(counter - 1) + ".safetensors")),
                        Catch::EndsWith("1,1,...)") &&
                            Catch::Predicate<std::string>([](const std::string& m) { return m.size() < 300; }));
    rejects(st_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", 8),
            "\"data_offsets\" must be [begin, end]");
    rejects(st_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8,9]}})", 8), "\"data_offsets\" must be");
    rejects(st_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,"8"]}})", 8), "\"data_offsets\" must be");
    rejects(st_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[-8,0]}})", 8), "\"data_offsets\" must be");
    rejects(st_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":{"begin":0}}})", 8), "\"data_offsets\" must be");
  }
  SECTION("entries: shapes, offsets and sizes") {
    rejects(st_file(R"({"a":{"dtype":"F32","shape":[2,-3],"data_offsets":[0,8]}})", 8), "negative dimension -3");
    rejects(st_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,4]}})", 8), "begin 8 > end 4");
    rejects(st_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 4),
            "tensor 'a': data_offsets end 8 is beyond the data section (4 bytes)");
    rejects(st_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[18446744073709551612,18446744073709551615]}})",
                    8),
            "byte length mismatch");
    rejects(st_file(R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[18446744073709551615,18446744073709551615]}})",
                    8),
            "beyond the data section");
    rejects(st_file(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8),
            "8 bytes but shape [3] of F32 needs 12 bytes");
    rejects(st_file(R"({"a":{"dtype":"F64","shape":[2],"data_offsets":[0,8]}})", 8), "byte length mismatch");
    rejects(st_file(R"({"a":{"dtype":"F32","shape":[4611686018427387904,4611686018427387904],"data_offsets":[0,8]}})",
                    8),
            "is too large");
    rejects(st_file(R"({"a":{"dtype":"F32","shape":[9223372036854775808],"data_offsets":[0,8]}})", 8),
            "dimension 9223372036854775808");
    rejects(st_file(R"({"a":{"dtype":"F32","shape":[99999999999999999999],"data_offsets":[0,8]}})", 8),
            "\"shape\" must be an array");  // beyond uint64: parsed as a float
    rejects(st_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                    R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                    12),
            "tensors 'a' [0, 8) and 'b' [4, 12) overlap");
    rejects(st_file(R"({"b":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
                    R"("a":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
                    16),
            "overlap");
  }
  SECTION("__metadata__") {
    rejects(st_file(R"({"__metadata__":{"epoch":12}})", 0), "__metadata__ value for key 'epoch' is not a string");
    rejects(st_file(R"({"__metadata__":{"a":"x","b":["y"]}})", 0), "for key 'b' is not a string");
    rejects(st_file(R"({"__metadata__":"pt"})", 0), "\"__metadata__\" must be an object of strings");
    rejects(st_file(R"({"__metadata__":[]})", 0), "\"__metadata__\" must be an object");
  }
}

TEST_CASE("safetensors: what the format allows is accepted", "[io]") {
  const TempDir dir("accepted");
  const std::string path = dir.path("ok.safetensors");
  // Gaps between tensors, any order of offsets, empty tensors anywhere (even inside another's bytes),
  // padding spaces, null metadata, extra entry keys, a header that does not start at '{'.
  std::string data(24, '\0');
  const float one = 1.0f, two = 2.0f;
  std::memcpy(&data[4], &one, 4);
  std::memcpy(&data[20], &two, 4);
  write_bytes(path, st_file(R"(  {"b":{"dtype":"F32","shape":[1],"data_offsets":[20,24]},)"
                            R"("a":{"dtype":"F32","shape":[1,1],"data_offsets":[4,8],"extra":true},)"
                            R"("e":{"dtype":"F32","shape":[3,0],"data_offsets":[6,6]},)"
                            R"("__metadata__":null}      )",
                            data));
  const SafetensorsReader r(path);
  REQUIRE(r.names() == std::vector<std::string>{"a", "b", "e"});
  REQUIRE(r.metadata().empty());
  REQUIRE(r.read<float>("a")(0, 0) == 1.0f);
  REQUIRE(r.read<double>("b")(0) == 2.0);
  REQUIRE(r.read<float>("e").shape() == Shape{3, 0});
}

TEST_CASE("safetensors: truncated and corrupted files throw Error, nothing else", "[io]") {
  const TempDir dir("fuzz");
  const std::string path = dir.path("good.safetensors");
  const auto a = iota_tensor<float>(Shape{3, 2}, 0.5);
  const auto b = iota_tensor<float>(Shape{4}, -1.5);
  save_safetensors<float>(path, {{"a", a}, {"b", b}}, {{"k", "v"}});
  const std::string good = slurp(path);
  const std::string bad = dir.path("bad.safetensors");

  // Every strict prefix is rejected (the data section is always too short or the header cut).
  for (std::size_t n = 0; n < good.size(); ++n) {
    write_bytes(bad, good.substr(0, n));
    INFO("prefix of " << n << " bytes");
    REQUIRE_THROWS_AS(SafetensorsReader(bad), Error);
  }
  // Random changes in the length and the header: either a clean Error or a file that reads. Odd
  // trials change any byte (mostly broken JSON), even trials swap digits for digits or '-' (valid
  // JSON, wrong shapes and offsets).
  std::mt19937_64 rng(7);
  const std::size_t header_end = good.size() - sizeof(float) * 10;
  std::vector<std::size_t> digits;
  for (std::size_t i = 8; i < header_end; ++i)
    if (good[i] >= '0' && good[i] <= '9') digits.push_back(i);
  int rejected = 0, accepted = 0;
  for (int trial = 0; trial < 4000; ++trial) {
    std::string mutated = good;
    const int edits = 1 + static_cast<int>(rng() % 3);
    for (int e = 0; e < edits; ++e) {
      if (trial % 2) mutated[rng() % header_end] = static_cast<char>(rng() % 256);
      else mutated[digits[rng() % digits.size()]] = "0123456789-"[rng() % 11];
    }
    write_bytes(bad, mutated);
    try {
      const SafetensorsReader r(bad);
      for (const auto& name : r.names()) {
        const auto& info = r.info(name);
        if (info.dtype != "F32" && info.dtype != "F64") continue;
        if (info.shape.size() <= 4) (void)r.read<double>(name);
      }
      ++accepted;
    } catch (const Error&) {
      ++rejected;
    }
  }
  INFO(rejected << " rejected, " << accepted << " accepted");
  REQUIRE(rejected > 0);
  REQUIRE(accepted > 0);
}

TEST_CASE("safetensors: save rejects bad input and never leaves a half-written file", "[io]") {
  const TempDir dir("save_errors");
  const std::string path = dir.path("model.safetensors");
  const Tensor<float> w({2, 2}, {1.f, 2.f, 3.f, 4.f});
  const Tensor<float> v({3}, {5.f, 6.f, 7.f});
  save_safetensors<float>(path, {{"w", w}}, {{"epoch", "1"}});
  const std::string before = slurp(path);

  REQUIRE_THROWS_WITH(save_safetensors<float>(path, {{"w", w}, {"v", v}, {"w", v}}),
                      Catch::Contains(path) && Catch::Contains("duplicate tensor name 'w'"));
  REQUIRE_THROWS_WITH(save_safetensors<float>(path, {{"__metadata__", w}}), Catch::Contains("is reserved"));
  REQUIRE_THROWS_WITH(save_safetensors<float>(path, {{"n", TensorMap<const float>(nullptr, Shape{2})}}),
                      Catch::Contains("tensor 'n' has no data"));
  REQUIRE_THROWS_WITH(save_safetensors<float>(path, {{"bad\xff", w}}),
                      Catch::Contains(path) && Catch::Contains("UTF-8"));
  REQUIRE(slurp(path) == before);

  // Only a regular file is replaced: a link (its target is never written through), a FIFO, a folder.
  const std::string victim = dir.path("victim.txt"), link = dir.path("link.safetensors");
  { std::ofstream(victim) << "keep me"; }
  fs::create_symlink(victim, link);
  REQUIRE_THROWS_WITH(save_safetensors<float>(link, {{"v", v}}),
                      Catch::Contains(link) && Catch::Contains("not a regular file"));
  REQUIRE(slurp(victim) == "keep me");
  REQUIRE(fs::is_symlink(link));
  const std::string fifo = dir.path("fifo.safetensors");
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  REQUIRE_THROWS_WITH(save_safetensors<float>(fifo, {{"v", v}}),
                      Catch::Contains(fifo) && Catch::Contains("not a regular file"));
  REQUIRE(fs::is_fifo(fifo));
  const std::string target_dir = dir.path("occupied");
  fs::create_directories(target_dir + "/inside");
  REQUIRE_THROWS_WITH(save_safetensors<float>(target_dir, {{"v", v}}),
                      Catch::Contains(target_dir) && Catch::Contains("not a regular file"));
  REQUIRE(fs::is_directory(target_dir + "/inside"));
  // A file at the name the old writer used for its temporary file is neither used nor followed.
  fs::create_symlink(victim, path + ".tmp");
  save_safetensors<float>(path, {{"w", w}}, {{"epoch", "1"}});
  REQUIRE(slurp(victim) == "keep me");
  REQUIRE(slurp(path) == before);
  fs::remove(path + ".tmp");

  // A directory that does not exist.
  const std::string nowhere = dir.path("no/such/dir/model.safetensors");
  REQUIRE_THROWS_WITH(save_safetensors<float>(nowhere, {{"v", v}}), Catch::Contains(nowhere) && Catch::Contains("cannot create"));
  REQUIRE_FALSE(fs::exists(nowhere));

  // A good save replaces the old file whole and leaves no temporary file behind.
  save_safetensors<float>(path, {{"v", v}});
  for (const auto& entry : fs::directory_iterator(fs::path(path).parent_path()))
    CHECK(entry.path().filename().string().rfind(".", 0) != 0);  // write_file's temporaries start with '.'

  const SafetensorsReader r(path);
  REQUIRE(r.names() == std::vector<std::string>{"v"});
  REQUIRE(bit_equal(r.read<float>("v"), v));
}

TEST_CASE("safetensors: reads exactly what PyTorch wrote", "[io][torch]") {
  const std::string dir = std::string(STOCKMIXER_FIXTURE_DIR) + "/io/";
  std::ifstream in(dir + "torch_written.json");
  REQUIRE(in.good());  // else run tests/make_io_fixtures.py
  const auto expected = nlohmann::json::parse(in);
  const SafetensorsReader r(dir + "torch_written.safetensors");
  REQUIRE(r.metadata() == expected.at("metadata").get<std::map<std::string, std::string>>());
  REQUIRE(r.names().size() == expected.at("tensors").size());
  for (const auto& e : expected.at("tensors")) {
    const auto name = e.at("name").get<std::string>();
    INFO("tensor " << name);
    const auto shape = e.at("shape").get<std::vector<Index>>();
    const auto values = e.at("values").get<std::vector<double>>();
    REQUIRE(r.info(name).dtype == e.at("dtype").get<std::string>());
    REQUIRE(r.info(name).shape == shape);
    const auto as_float = r.read<float>(name);
    const auto as_double = r.read<double>(name);
    REQUIRE(as_float.shape() == Shape(shape.begin(), shape.end()));
    REQUIRE(static_cast<std::size_t>(as_double.size()) == values.size());
    for (std::size_t i = 0; i < values.size(); ++i) {
      REQUIRE(as_double.data()[i] == values[i]);  // F32 values are exact in double
      REQUIRE(as_float.data()[i] == static_cast<float>(values[i]));
    }
  }
}

// Writes the files tests/make_io_fixtures.py --check-cpp loads with PyTorch (into
// $STOCKMIXER_IO_EXPORT_DIR when set), and reads them back here.
TEST_CASE("safetensors: files for PyTorch to read", "[io][interop]") {
  const char* env = std::getenv("STOCKMIXER_IO_EXPORT_DIR");
  const TempDir scratch("interop");
  const std::string out = env && *env ? std::string(env) : scratch.str();
  const auto specs = cpp_tensor_specs();

  const auto fs32 = cpp_tensors<float>();
  const auto fs64 = cpp_tensors<double>();
  std::vector<std::pair<std::string, TensorMap<const float>>> list32;
  std::vector<std::pair<std::string, TensorMap<const double>>> list64;
  for (std::size_t k = 0; k < specs.size(); ++k) {
    list32.emplace_back(specs[k].name, fs32[k].map());
    list64.emplace_back(specs[k].name, fs64[k].map());
  }
  const std::string p32 = (fs::path(out) / "cpp_written_f32.safetensors").string();
  const std::string p64 = (fs::path(out) / "cpp_written_f64.safetensors").string();
  save_safetensors<float>(p32, list32, kCppMetadata);
  save_safetensors<double>(p64, list64, kCppMetadata);

  const SafetensorsReader r32(p32), r64(p64);
  REQUIRE(r32.metadata() == kCppMetadata);
  for (std::size_t k = 0; k < specs.size(); ++k) {
    CHECK(bit_equal(r32.read<float>(specs[k].name), fs32[k]));
    CHECK(bit_equal(r64.read<double>(specs[k].name), fs64[k]));
  }
}

// ---- hostile files: only regular files, sizes checked before anything is allocated ---------------

namespace {

// Every tensor of a StockMixer of dims c (for_each_checkpoint_tensor), values small and distinct.
template <class T>
std::vector<std::pair<std::string, Tensor<T>>> checkpoint_tensors(const StockMixerConfig& c) {
  std::vector<std::pair<std::string, Tensor<T>>> out;
  for_each_checkpoint_tensor(c, [&](const std::string& name, const std::vector<Index>& shape) {
    Tensor<T> t(Shape(shape.begin(), shape.end()));
    for (Index i = 0; i < t.size(); ++i) t.data()[i] = static_cast<T>(0.01 * static_cast<double>(i % 17) - 0.05);
    out.emplace_back(name, std::move(t));
  });
  return out;
}

template <class T>
void save_tensors(const std::string& path, const std::vector<std::pair<std::string, Tensor<T>>>& tensors,
                  const std::map<std::string, std::string>& metadata = {}) {
  std::vector<std::pair<std::string, TensorMap<const T>>> list;
  for (const auto& [name, t] : tensors) list.emplace_back(name, t.map());
  save_safetensors<T>(path, list, metadata);
}

template <class T>
Tensor<T>& tensor_named(std::vector<std::pair<std::string, Tensor<T>>>& tensors, const std::string& name) {
  for (auto& [n, t] : tensors)
    if (n == name) return t;
  FAIL("no tensor " << name);
  return tensors.front().second;
}

// A .npy file: the v1 (2-byte length) or v2 (4-byte length) preamble, then `header` as it is, then `data`.
std::string npy_bytes(int major, const std::string& header, const std::string& data = "") {
  std::string s = std::string("\x93NUMPY", 6) + static_cast<char>(major) + '\0';
  const std::size_t len = header.size();
  s += static_cast<char>(len & 0xFF);
  s += static_cast<char>((len >> 8) & 0xFF);
  if (major > 1) {
    s += static_cast<char>((len >> 16) & 0xFF);
    s += static_cast<char>((len >> 24) & 0xFF);
  }
  return s + header + data;
}

}  // namespace

TEST_CASE("regular_file_size refuses a FIFO, a device and a folder by name, without blocking", "[io][hostile]") {
  const TempDir dir("regular");
  const std::string fifo = dir.path("pipe.npy");
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);  // opening it for reading would block until a writer comes
  REQUIRE_THROWS_WITH(io::regular_file_size(fifo, ".npy file"),
                      Catch::Contains(fifo) && Catch::Contains("FIFO") && Catch::Contains(".npy file"));
  REQUIRE_THROWS_WITH(io::read_npy<float>(fifo), Catch::Contains(fifo) && Catch::Contains("FIFO"));
  REQUIRE_THROWS_WITH(SafetensorsReader(fifo), Catch::Contains(fifo) && Catch::Contains("FIFO"));
  REQUIRE_THROWS_WITH(io::regular_file_size("/dev/zero", "safetensors file"),  // reads forever
                      Catch::Contains("/dev/zero") && Catch::Contains("character device"));
  REQUIRE_THROWS_WITH(io::read_npy<float>("/dev/zero"), Catch::Contains("/dev/zero") && Catch::Contains("device"));
  const std::string folder = dir.path("a_folder");
  fs::create_directories(folder);
  REQUIRE_THROWS_WITH(io::regular_file_size(folder, ".npy file"),
                      Catch::Contains(folder) && Catch::Contains("a directory"));
  // `--input DIR`: predict and evaluate read their inputs with read_npy, which names the folder.
  REQUIRE_THROWS_WITH(io::read_npy<float>(folder), Catch::Contains(folder) && Catch::Contains("a directory"));
  REQUIRE_THROWS_WITH(io::regular_file_size(dir.path("missing.npy"), ".npy file"),
                      Catch::Contains("missing.npy") && Catch::Contains("no such file"));
  const std::string file = dir.path("ok.bin");
  write_bytes(file, "12345");
  REQUIRE(io::regular_file_size(file, "file") == 5);
}

TEST_CASE("JSON nested 200 KB deep: a safetensors header and a checkpoint's config refused, no crash",
          "[io][hostile]") {
  // nlohmann::json parses iteratively but dump() and copies recurse once per level: 100 000 levels
  // overflow the stack. The nesting is measured before anything parses the text.
  const TempDir dir("deep_json");
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');  // 200 KB
  const std::string st = dir.path("deep.safetensors");
  write_bytes(st, st_file("{\"__metadata__\": {}, \"x\": " + deep + "}", 0));
  REQUIRE_THROWS_WITH(SafetensorsReader(st), Catch::Contains(st) && Catch::Contains("nested more than 64"));

  const StockMixerConfig c{6, 4, 3, 2};
  const std::string ckpt = dir.path("deep_config.safetensors");
  save_tensors<float>(ckpt, checkpoint_tensors<float>(c), {{"stockmixer.config", "{\"dropout\": 0, \"x\": " + deep + "}"}});
  REQUIRE_THROWS_WITH(load_checkpoint<float>(ckpt), Catch::Contains(ckpt) && Catch::Contains("stockmixer.config") &&
                                                        Catch::Contains("nested more than 64"));
  // The same checkpoint with a shallow config loads.
  save_tensors<float>(ckpt, checkpoint_tensors<float>(c), {{"stockmixer.config", "{\"dropout\": 0}"}});
  REQUIRE(load_checkpoint<float>(ckpt).config().lookback == 4);
}

TEST_CASE(".npy: a 12-byte file declaring a 4 GB header, and shapes whose product overflows, refused "
          "without allocating", "[io][hostile]") {
  const TempDir dir("npy_hostile");
  const std::string huge = dir.path("huge_header.npy");
  std::string bytes = std::string("\x93NUMPY\x02\x00", 8) + std::string("\xff\xff\xff\xff", 4);  // 2^32 - 1
  REQUIRE(bytes.size() == 12);
  write_bytes(huge, bytes);
  {
    const testing::LargestAllocation watch(1 << 20);  // a request above 1 MiB is refused, as out of memory
    REQUIRE_THROWS_WITH(io::read_npy<float>(huge), Catch::Contains(huge) && Catch::Contains("header length 4294967295") &&
                                                       Catch::Contains("past the end of the file"));
    CHECK(watch.largest() <= 65536);  // the file stream's buffer (8 KiB here), nothing the file declares
  }
  // Shapes whose element count overflows 64 bits, or whose byte count does; the data is 16 bytes.
  const std::string data(16, '\0');
  const std::pair<const char*, const char*> shapes[] = {
      {"(4294967296, 4294967296, 2)", "overflows"},         // 2^65 elements: Shape refuses the product
      {"(9223372036854775807, 2)", "overflows"},            // (2^63 - 1) * 2
      {"(2147483648, 2147483648)", "the file is truncated"},  // 2^62 elements fit, 2^64 bytes do not
      {"(1000000, 1000000)", "the file is truncated"}};     // 4 TB declared, 16 bytes there
  for (const auto& [shape, expected] : shapes) {
    INFO("shape " << shape);
    const std::string path = dir.path("overflow.npy");
    write_bytes(path, npy_bytes(1, "{'descr': '<f4', 'fortran_order': False, 'shape': " + std::string(shape) + ", }\n", data));
    const testing::LargestAllocation watch(1 << 20);
    REQUIRE_THROWS_WITH(io::read_npy<double>(path), Catch::Contains(path) && Catch::Contains(expected));
    CHECK(watch.largest() <= 65536);  // the file stream's buffer (8 KiB here), nothing the file declares
  }
  // The same preamble and header writer gives a file read_npy accepts: the refusals above are the shapes'.
  const std::string good = dir.path("good.npy");
  write_bytes(good, npy_bytes(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }\n", data));
  REQUIRE(io::read_npy<float>(good).shape() == Shape{2, 2});
}

TEST_CASE("load_checkpoint: a small file declaring a [100000, 1] LayerNorm is refused before a model is built",
          "[io][hostile]") {
  // The dims come from the shapes (T = 100000, C = 1): such a model's 100 000 time-mixing rows alone
  // hold T (T + 1) / 2 = 5e9 weights. The file holds 400 kB; nothing near the model's size may be asked for.
  const TempDir dir("big_layernorm");
  const std::string path = dir.path("big.safetensors");
  std::vector<std::pair<std::string, Tensor<float>>> tensors;
  tensors.emplace_back("mixer.mix_layer.LN_1.weight", Tensor<float>(Shape{100000, 1}));
  tensors.emplace_back("stock_mixer.dense1.weight", Tensor<float>(Shape{2, 6}));
  save_tensors<float>(path, tensors);
  REQUIRE(fs::file_size(path) < 500000);
  const testing::LargestAllocation watch(16 << 20);  // 16 MiB: 40 times the file
  REQUIRE_THROWS_WITH(load_checkpoint<float>(path),
                      Catch::Contains(path) && Catch::Contains("missing tensor") && Catch::Contains("T = 100000"));
  CHECK(watch.largest() < (1 << 20));
}

TEST_CASE("load_checkpoint: NaN, Inf and F64 values beyond float refused, naming the tensor and the index",
          "[io][hostile]") {
  const TempDir dir("non_finite");
  const StockMixerConfig c{6, 4, 3, 2};
  const std::string path = dir.path("weights.safetensors");
  const double inf = std::numeric_limits<double>::infinity();
  for (const double bad : {std::numeric_limits<double>::quiet_NaN(), inf, -inf}) {
    INFO("value " << bad);
    auto tensors = checkpoint_tensors<float>(c);
    tensor_named(tensors, "stock_mixer.dense2.weight").data()[7] = static_cast<float>(bad);
    save_tensors<float>(path, tensors);
    const char* shown = std::isnan(bad) ? "NaN" : bad > 0 ? "+Inf" : "-Inf";
    REQUIRE_THROWS_WITH(load_checkpoint<float>(path), Catch::Contains(path) &&
                                                          Catch::Contains("'stock_mixer.dense2.weight'") &&
                                                          Catch::Contains(shown) && Catch::Contains("flat index 7"));
    REQUIRE_THROWS_WITH(load_checkpoint<double>(path), Catch::Contains("flat index 7"));
  }
  // An F64 file with 1e300: finite in double, +Inf once read into float.
  auto tensors = checkpoint_tensors<double>(c);
  tensor_named(tensors, "conv.weight").data()[3] = 1e300;
  save_tensors<double>(path, tensors);
  REQUIRE_THROWS_WITH(load_checkpoint<float>(path), Catch::Contains("'conv.weight'") && Catch::Contains("1e+300") &&
                                                        Catch::Contains("flat index 3") &&
                                                        Catch::Contains("beyond the range of float"));
  const StockMixer<double> model = load_checkpoint<double>(path);  // in double it is a weight like any other
  CHECK(model.config().lookback == 4);
}

TEST_CASE("read_json_file: bounded nesting, each key once in every object, errors naming the file", "[io][json]") {
  const TempDir dir("json");
  auto write = [&](const std::string& name, const std::string& text) {
    const std::string path = dir.path(name);
    std::ofstream(path) << text;
    return path;
  };
  const std::string good = write("good.json", R"({"a": 1, "b": {"a": 2, "c": [{"a": 3}, {"a": 4}]}})");
  CHECK(io::read_json_file(good, "config", 1 << 20)["b"]["c"][1]["a"] == 4);  // the same key in other objects
  const std::string top = write("top.json", R"({"a": 1, "b": 2, "a": 3})");
  CHECK_THROWS_WITH(io::read_json_file(top, "config", 1 << 20), Catch::Contains(top) && Catch::Contains("key 'a' appears twice"));
  const std::string inner = write("inner.json", R"({"a": 1, "b": [{"x": 1}, {"x": 2, "x": 3}]})");
  CHECK_THROWS_WITH(io::read_json_file(inner, "config", 1 << 20), Catch::Contains(inner) && Catch::Contains("key 'x' appears twice"));
  const std::string deep = write("deep.json", std::string(100000, '[') + std::string(100000, ']'));
  CHECK_THROWS_WITH(io::read_json_file(deep, "config", 1 << 20), Catch::Contains(deep) && Catch::Contains("nested more than 64"));
  const std::string bad = write("bad.json", R"({"a": 1)");
  CHECK_THROWS_WITH(io::read_json_file(bad, "config", 1 << 20), Catch::Contains(bad) && Catch::Contains("not valid JSON"));
  CHECK_THROWS_WITH(io::read_json_file(good, "config", 8), Catch::Contains(good) && Catch::Contains("more than the"));
}

TEST_CASE("remove_temporaries removes a killed writer's .NAME.XXXXXX files and nothing else", "[io][files]") {
  const TempDir dir("temporaries");
  const std::vector<std::string> names = {"summary.json", "predictions.csv"};
  for (const char* file : {".summary.json.a1B2c3", ".predictions.csv.ZZZZZZ"}) dir.write(file, "half");
  // Kept: the files themselves, another name's temporary, wrong lengths or characters, the lock, a folder.
  const std::vector<std::string> kept = {"summary.json", "predictions.csv", ".metrics.jsonl.a1B2c3",
                                         ".summary.json.a1B2c", ".summary.json.a1B2c3d", ".summary.json.a1-2c3",
                                         "x.summary.json.a1B2c3", ".lock", "notes.txt"};
  for (const std::string& file : kept) dir.write(file, "keep");
  std::filesystem::create_directories(dir.path(".predictions.csv.folder"));
  REQUIRE(io::remove_temporaries(std::filesystem::path(dir.str()), names) == 2);
  CHECK_FALSE(std::filesystem::exists(dir.path(".summary.json.a1B2c3")));
  CHECK_FALSE(std::filesystem::exists(dir.path(".predictions.csv.ZZZZZZ")));
  for (const std::string& file : kept) CHECK(std::filesystem::exists(dir.path(file)));
  CHECK(std::filesystem::is_directory(dir.path(".predictions.csv.folder")));
  REQUIRE(io::remove_temporaries(std::filesystem::path(dir.str()), names) == 0);  // nothing left to remove
}
