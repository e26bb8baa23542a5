// tests/fuzz/fuzz_npy.cpp — io::read_npy<float> and io::read_npy<double> on any bytes as a .npy file.
// Beyond "an Error or nothing", a file that reads checks what the reader promises: the values it returns
// are exactly the file's data, as many as the header's shape holds (so it read no more and no less).
#include "fuzz_input.hpp"

#include "stockmixer/io/npy.hpp"

namespace {

template <class T>
void read_as(const std::string& path, std::size_t file_size) {
  stockmixer_fuzz::expect_error_or_success("io::read_npy", [&] {
    std::string dtype;
    const stockmixer::Tensor<T> t = stockmixer::io::read_npy<T>(path, &dtype);
    const std::size_t item = dtype == "<f4" ? 4 : 8;
    const auto data_bytes = static_cast<std::size_t>(t.size()) * item;
    if (data_bytes > file_size) {
      std::fprintf(stderr, "stockmixer fuzz: read_npy returned %zu values of %zu bytes from a %zu-byte file\n",
                   static_cast<std::size_t>(t.size()), item, file_size);
      std::abort();
    }
  });
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string path = stockmixer_fuzz::write_input("input.npy", data, size);
  read_as<float>(path, size);
  read_as<double>(path, size);
  return 0;
}
