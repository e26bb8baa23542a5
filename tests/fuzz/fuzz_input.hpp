// tests/fuzz/fuzz_input.hpp — what every fuzz target shares: the readers take paths, so each input is
// written to a file in a folder of this process's own (on tmpfs, /dev/shm, when there is one), and the
// reader's outcome is judged the same way everywhere.
//
// A stockmixer::Error is the expected answer to a bad input. Anything else is a finding and aborts, so
// that libFuzzer keeps the input as a crash: another exception type (its type and message are
// printed), a sanitizer report, a crash, std::terminate, a hang (libFuzzer's -timeout) or memory
// above -rss_limit_mb / -malloc_limit_mb.
#pragma once

#include "stockmixer/common.hpp"

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <string>
#include <system_error>
#include <typeinfo>
#include <fcntl.h>
#include <unistd.h>

namespace stockmixer_fuzz {

// A fresh folder for this process, removed at exit (a crash leaves it behind: libFuzzer keeps the
// input itself as crash-<sha1>, so nothing in the folder is needed to reproduce).
inline const std::string& work_dir() {
  // Never deleted: the exit handler below reads it after static objects may have been destroyed.
  static const std::string* const dir = [] {
    namespace fs = std::filesystem;
    std::error_code ec;
    const fs::path base = fs::is_directory("/dev/shm", ec) && access("/dev/shm", W_OK) == 0
                              ? fs::path("/dev/shm")
                              : fs::temp_directory_path();
    std::string pattern = (base / "stockmixer-fuzz-XXXXXX").string();
    if (!mkdtemp(pattern.data())) {
      std::perror(("stockmixer fuzz: cannot create a folder from " + pattern).c_str());
      std::abort();
    }
    return new std::string(pattern);
  }();
  static const bool removed_at_exit = std::atexit([] {
    std::error_code ignored;
    std::filesystem::remove_all(*dir, ignored);
  }) == 0;
  (void)removed_at_exit;
  return *dir;
}

// Writes [data, data + size) to <work_dir>/<name> (replacing it) and returns its path.
inline std::string write_input(const std::string& name, const std::uint8_t* data, std::size_t size) {
  const std::string path = work_dir() + "/" + name;
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  bool ok = fd >= 0;
  for (std::size_t done = 0; ok && done < size;) {
    const ssize_t n = write(fd, data + done, size - done);
    ok = n > 0;
    done += ok ? static_cast<std::size_t>(n) : 0;
  }
  if (fd < 0 || close(fd) != 0 || !ok) {
    std::fprintf(stderr, "stockmixer fuzz: cannot write the input to %s\n", path.c_str());
    std::abort();
  }
  return path;
}

// Runs f; a stockmixer::Error is an accepted outcome, any other exception aborts with its type and
// message (libFuzzer then saves the input as a crash).
template <class F>
void expect_error_or_success(const char* what, F&& f) {
  try {
    f();
  } catch (const stockmixer::Error&) {
  } catch (const std::exception& e) {
    std::fprintf(stderr, "stockmixer fuzz: %s threw %s, not stockmixer::Error: %s\n", what, typeid(e).name(),
                 e.what());
    std::abort();
  } catch (...) {
    std::fprintf(stderr, "stockmixer fuzz: %s threw something that is not a std::exception\n", what);
    std::abort();
  }
}

}  // namespace stockmixer_fuzz
