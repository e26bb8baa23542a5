// stockmixer/io/files.hpp — files written whole or not at all, and one writer per run folder.
//
// write_file(path, content) writes into a new file with a unique name in path's folder (mkstemp:
// created with O_EXCL, so it never follows or reuses anything planted there), syncs it to the disk,
// renames it over path and syncs the folder: a reader, or a crash at any moment, sees the old file or
// the new one, never a mix. It refuses to replace anything but a regular file (a link, a device, a
// FIFO, a folder: their targets are never written through), and on any failure removes its temporary
// file and leaves path as it was. FolderLock holds an exclusive lock on a folder (flock on a
// `.lock` file in it) for as long as it lives: a second writer is refused at once, with a message.
// A writer killed between mkstemp and rename leaves its temporary file (`.NAME.XXXXXX`) behind;
// remove_temporaries(folder, names), called while holding the folder's lock (so no live writer owns
// one), removes those of the given names. Both are POSIX; other systems get an Error saying so.
#pragma once

#include "stockmixer/common.hpp"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string>
#include <string_view>

#if defined(__unix__) || defined(__APPLE__)
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#define STOCKMIXER_POSIX_FILES 1
#endif

namespace stockmixer::io {

// ---- interface -------------------------------------------------------------------------------------

// path's content becomes `content`, whole, or path is left untouched and Error names what failed.
void write_file(const std::string& path, std::string_view content);

// The run folder's lock, taken on construction (Error naming the folder when another process holds
// it), released when destroyed.
class FolderLock {
 public:
  explicit FolderLock(const std::filesystem::path& folder);
  ~FolderLock();
  FolderLock(const FolderLock&) = delete;
  FolderLock& operator=(const FolderLock&) = delete;

 private:
  int fd_ = -1;
};

// Removes folder's regular files named `.NAME.XXXXXX` (write_file's temporaries: the six characters
// mkstemp chose, letters and digits) for each NAME in `names`; nothing else. Returns how many it removed.
// Only safe while holding the folder's FolderLock.
template <class Names>
int remove_temporaries(const std::filesystem::path& folder, const Names& names);

// ---- implementation --------------------------------------------------------------------------------

template <class Names>
int remove_temporaries(const std::filesystem::path& folder, const Names& names) {
  namespace fs = std::filesystem;
  int removed = 0;
  std::error_code ec;
  for (const fs::directory_entry& entry : fs::directory_iterator(folder, ec)) {
    const std::string file = entry.path().filename().string();
    for (const auto& name : names) {
      const std::string prefix = "." + std::string(name) + ".";
      if (file.size() != prefix.size() + 6 || file.compare(0, prefix.size(), prefix) != 0) continue;
      bool random = true;  // mkstemp's characters: [A-Za-z0-9]
      for (std::size_t k = prefix.size(); k < file.size(); ++k)
        random = random && ((file[k] >= 'A' && file[k] <= 'Z') || (file[k] >= 'a' && file[k] <= 'z') ||
                            (file[k] >= '0' && file[k] <= '9'));
      if (random && entry.is_symlink(ec) == false && entry.is_regular_file(ec) && fs::remove(entry.path(), ec))
        ++removed;
      break;
    }
  }
  return removed;
}

namespace detail {
inline std::string errno_text() { return std::strerror(errno); }
}  // namespace detail

#if defined(STOCKMIXER_POSIX_FILES)

inline void write_file(const std::string& path, std::string_view content) {
  struct stat st;
  if (::lstat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode))
    throw Error(path + ": exists and is not a regular file (a link, a device, a FIFO or a folder): not replaced");
  const std::filesystem::path target(path);
  const std::filesystem::path folder = target.has_parent_path() ? target.parent_path() : std::filesystem::path(".");
  std::string tmp = (folder / ("." + target.filename().string() + ".XXXXXX")).string();
  const int fd = ::mkstemp(tmp.data());
  if (fd < 0) throw Error(path + ": cannot write (cannot create a file in " + folder.string() + ": " + detail::errno_text() + ")");
  auto fail = [&](const std::string& what) {
    const std::string reason = detail::errno_text();
    ::close(fd);
    ::unlink(tmp.c_str());
    throw Error(path + ": " + what + " (" + reason + ")");
  };
  for (std::size_t done = 0; done < content.size();) {
    const ssize_t n = ::write(fd, content.data() + done, content.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail("writing failed");
    }
    done += static_cast<std::size_t>(n);
  }
  if (::fchmod(fd, 0644) != 0) fail("cannot set the file's mode");
  if (::fsync(fd) != 0) fail("writing failed (fsync)");
  if (::close(fd) != 0) {
    const std::string reason = detail::errno_text();
    ::unlink(tmp.c_str());
    throw Error(path + ": writing failed (" + reason + ")");
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string reason = detail::errno_text();
    ::unlink(tmp.c_str());
    throw Error(path + ": cannot replace the file (" + reason + ")");
  }
  const int dir = ::open(folder.c_str(), O_RDONLY | O_DIRECTORY);
  if (dir >= 0) {  // the rename itself reaches the disk
    ::fsync(dir);
    ::close(dir);
  }
}

inline FolderLock::FolderLock(const std::filesystem::path& folder) {
  const std::string path = (folder / ".lock").string();
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (fd_ < 0) throw Error(folder.string() + ": cannot lock the run folder (" + path + ": " + detail::errno_text() + ")");
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    ::close(fd_);
    fd_ = -1;
    throw Error(folder.string() + ": another run is writing into this folder (it holds " + path + ")");
  }
}

inline FolderLock::~FolderLock() {
  if (fd_ >= 0) ::close(fd_);  // closing releases the lock
}

#else

inline void write_file(const std::string& path, std::string_view) {
  throw Error(path + ": safe file replacement needs a POSIX system");
}
inline FolderLock::FolderLock(const std::filesystem::path& folder) {
  throw Error(folder.string() + ": run folder locks need a POSIX system");
}
inline FolderLock::~FolderLock() = default;

#endif

}  // namespace stockmixer::io
