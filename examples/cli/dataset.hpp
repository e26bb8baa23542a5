// cli/dataset.hpp — stockmixer dataset: writes exactly what training sees, as .npy arrays.
#pragma once

#include "common.hpp"

#include <stockmixer/io/files.hpp>
#include <stockmixer/train/job.hpp>

#include <cerrno>
#include <cstring>
#include <optional>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace stockmixer::cli {

const char* const kDatasetFiles[] = {"eod.npy", "mask.npy", "gt.npy", "price.npy"};

// The --out of `dataset` is published whole, so it may hold only a dataset: absent, or a folder (not a
// link to one) whose entries are the four arrays (and the .lock file a killed dataset may leave).
void check_dataset_folder(const Options& a, const fs::path& out) {
  std::error_code ec;
  const fs::file_type type = fs::symlink_status(out, ec).type();
  if (type == fs::file_type::not_found) {
    const fs::path parent = out.has_parent_path() ? out.parent_path() : fs::path(".");
    if (!fs::is_directory(parent, ec)) a.fail("--out " + out.string() + ": the folder " + parent.string() + " does not exist");
    return;
  }
  if (type != fs::file_type::directory)
    a.fail("--out " + out.string() + ": exists and is " + file_kind(type) + ", not a folder");
  bool holds_arrays = false;
  for (const fs::directory_entry& e : fs::directory_iterator(out)) {
    const std::string name = e.path().filename().string();
    const bool array = std::find_if(std::begin(kDatasetFiles), std::end(kDatasetFiles),
                                    [&](const char* f) { return name == f; }) != std::end(kDatasetFiles);
    if (!array && name != ".lock")
      a.fail("--out " + out.string() + ": holds " + name + ", which is not part of a dataset (the folder is "
             "replaced whole): choose another --out");
    holds_arrays = holds_arrays || array;
  }
  if (holds_arrays && !a.flag("overwrite"))
    a.fail("--out " + out.string() + " holds a dataset; pass --overwrite or choose another --out");
}

// Staging folders are named ".<out's name>.staging-XXXXXX" beside out. One whose lock no process holds
// was left by a killed dataset (or is the old dataset a killed one had swapped out): removed.
void remove_stale_staging(const fs::path& out) {
  const fs::path parent = out.has_parent_path() ? out.parent_path() : fs::path(".");
  const std::string prefix = "." + out.filename().string() + ".staging-";
  std::error_code ec;
  std::vector<fs::path> stale;
  for (const fs::directory_entry& e : fs::directory_iterator(parent, ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind(prefix, 0) != 0 || !e.is_directory(ec) || e.is_symlink(ec)) continue;
    try {
      const io::FolderLock unused(e.path());  // taken: nobody is writing there
      stale.push_back(e.path());
    } catch (const Error&) {
      // a live dataset's staging folder: leave it
    }
  }
  for (const fs::path& p : stale) fs::remove_all(p, ec);
}

// Writes the arrays into a new staging folder beside out, then publishes it whole: renamed to out when out
// does not exist, otherwise exchanged with out in one atomic step (Linux renameat2 RENAME_EXCHANGE), after
// which the old dataset, now at the staging name, is removed. A kill at any moment leaves out holding the
// old arrays or the new ones, never a mix.
template <class T>
void publish_dataset(const Options& a, const fs::path& out, const data::Market<T>& m) {
  remove_stale_staging(out);
  const fs::path parent = out.has_parent_path() ? out.parent_path() : fs::path(".");
  std::string staging = (parent / ("." + out.filename().string() + ".staging-XXXXXX")).string();
  if (::mkdtemp(staging.data()) == nullptr)
    a.fail("cannot create a staging folder in " + parent.string() + " (" + std::strerror(errno) + ")");
  std::optional<io::FolderLock> lock;  // held until the staging folder is published or removed
  try {
    lock.emplace(staging);
    // The new folder gets the old one's permissions, or the usual ones (mkdtemp makes it private).
    std::error_code ec;
    const fs::perms perms = fs::exists(out, ec) ? fs::status(out).permissions() : [] {
      const mode_t mask = ::umask(0);
      ::umask(mask);
      return static_cast<fs::perms>(0777 & ~mask);
    }();
    fs::permissions(staging, perms);
    io::write_npy<T>((fs::path(staging) / "eod.npy").string(), m.eod.map());
    io::write_npy<T>((fs::path(staging) / "mask.npy").string(), m.mask.map());
    io::write_npy<T>((fs::path(staging) / "gt.npy").string(), m.gt.map());
    io::write_npy<T>((fs::path(staging) / "price.npy").string(), m.price.map());
    if (fs::exists(out)) {
#if defined(RENAME_EXCHANGE)
      if (::renameat2(AT_FDCWD, staging.c_str(), AT_FDCWD, out.c_str(), RENAME_EXCHANGE) != 0)
        throw Error("stockmixer dataset: cannot replace " + out.string() + " by " + staging + " (" +
                    std::strerror(errno) + ")");
#else
      throw Error("stockmixer dataset: replacing " + out.string() + " whole needs Linux (renameat2): remove it first");
#endif
    } else if (::rename(staging.c_str(), out.c_str()) != 0) {
      throw Error("stockmixer dataset: cannot rename " + staging + " to " + out.string() + " (" + std::strerror(errno) + ")");
    }
    fs::remove(out / ".lock", ec);  // the staging folder's lock file, published with it
    const int dir = ::open(parent.c_str(), O_RDONLY | O_DIRECTORY);
    if (dir >= 0) {  // the rename itself reaches the disk
      ::fsync(dir);
      ::close(dir);
    }
    lock.reset();
    fs::remove_all(staging, ec);  // the old dataset, if there was one
  } catch (const Error& e) {
    lock.reset();
    std::error_code ec;
    fs::remove_all(staging, ec);  // the new arrays, never published
    throw Error("stockmixer dataset: " + out.string() + " not written (" +
                (fs::exists(out, ec) ? "the arrays in it are kept" : "nothing published") + "): " + e.what());
  } catch (...) {
    lock.reset();
    std::error_code ec;
    fs::remove_all(staging, ec);
    throw;
  }
}

template <class T>
int dataset(const Options& a) {
  const fs::path out = fs::path(a.str("out")).lexically_normal();
  if (out.filename().empty() || out.filename() == "." || out.filename() == "..")
    a.fail("--out " + a.str("out") + ": name the dataset folder itself (it is replaced whole)");
  check_dataset_folder(a, out);
  const train::RunData<T> d = train::load_data<T>(a);
  allocating("the arrays written to " + out.string());
  publish_dataset(a, out, d.market);
  std::cout << d.description.dump(1) << "\n";
  return 0;
}

template <class T> struct Dataset { static int run(const Options& a) { return dataset<T>(a); } };

inline int dataset_command(int argc, char** argv) {
  std::vector<Option> options = train::market_options();
  options.push_back(required("out", "output folder (replaced whole: it holds the four arrays and nothing else)"));
  options.push_back(flag("overwrite", "replace the arrays already in --out"));
  options.push_back(text("precision", "f32", "f32 or f64: the dtype of the arrays"));
  Options a("dataset", std::move(options));
  if (!parse(a,
             "Writes exactly what training sees: eod.npy [N, D, C], mask.npy, gt.npy and price.npy [N, D], from real\n"
             "end-of-day data (--data), a panel CSV of one's own market (--panel, with --features and --normalise;\n"
             "docs/own_market.md) or the synthetic market.",
             argc, argv))
    return 0;
  a.validate();
  return with_precision<Dataset>(a);
}

}  // namespace stockmixer::cli
