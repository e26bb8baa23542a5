// tests/fuzz/fuzz_safetensors.cpp — any bytes as a safetensors file: io::SafetensorsReader (open, then
// every tensor's info, read<float>, read<double> and first_non_finite) and
// stockmixer::load_checkpoint<float> (the tensor set and shapes the dims imply, then the model).
// A file that opens is checked against the reader's promise: every tensor lies inside the file.
#include "fuzz_input.hpp"

#include "stockmixer/model.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string path = stockmixer_fuzz::write_input("input.safetensors", data, size);
  stockmixer_fuzz::expect_error_or_success("io::SafetensorsReader", [&] {
    const stockmixer::io::SafetensorsReader file(path);
    for (const std::string& name : file.names()) {
      const stockmixer::io::TensorInfo& info = file.info(name);
      if (info.begin > info.end || info.end > size) {
        std::fprintf(stderr, "stockmixer fuzz: tensor '%s' [%llu, %llu) lies outside a %zu-byte file\n", name.c_str(),
                     static_cast<unsigned long long>(info.begin), static_cast<unsigned long long>(info.end), size);
        std::abort();
      }
      stockmixer_fuzz::expect_error_or_success("SafetensorsReader::read<float>",
                                               [&] { (void)file.read<float>(name); });
      stockmixer_fuzz::expect_error_or_success("SafetensorsReader::read<double>",
                                               [&] { (void)file.read<double>(name); });
      stockmixer_fuzz::expect_error_or_success("SafetensorsReader::first_non_finite", [&] {
        double v = 0;
        (void)file.first_non_finite<float>(name, &v);
      });
    }
  });
  stockmixer_fuzz::expect_error_or_success("load_checkpoint<float>",
                                           [&] { (void)stockmixer::load_checkpoint<float>(path); });
  return 0;
}
