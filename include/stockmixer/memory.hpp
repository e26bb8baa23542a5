// stockmixer/memory.hpp — sizes refused before they are allocated, and what is being allocated when
// memory runs out anyway.
//
// memory_problem(bytes, what) is empty when `bytes` (a lower bound of what `what` allocates) fits in
// the machine's physical memory, else the message to refuse it with; smaller sizes that still do not
// fit end in std::bad_alloc, and allocating(what) names, for the message a caller prints then, what
// the process was allocating.
#pragma once

#include "stockmixer/io/input.hpp"

#include <cstdint>
#include <string>

#include <unistd.h>

namespace stockmixer {

// The machine's physical memory in bytes; 0 when the system does not say.
inline double physical_memory() {
#if defined(_SC_PHYS_PAGES) && defined(_SC_PAGESIZE)
  const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGESIZE);
  if (pages > 0 && page > 0) return static_cast<double>(pages) * static_cast<double>(page);
#endif
  return 0;
}

inline std::string memory_problem(double bytes, const std::string& what) {
  const double have = physical_memory();
  if (have > 0 && bytes > have)
    return what + " needs at least " + io::byte_size(static_cast<std::uint64_t>(bytes)) + ", more than this machine's " +
           io::byte_size(static_cast<std::uint64_t>(have)) + " of memory";
  return "";
}

// What the calling thread is allocating now (one record per thread: a sweep trains jobs in several
// threads at once, and each reports its own std::bad_alloc).
inline std::string& allocating_now() {
  static thread_local std::string what = "its working memory";
  return what;
}
inline void allocating(const std::string& what) { allocating_now() = what; }

}  // namespace stockmixer
