// cli/mpi.hpp — the little of MPI that `stockmixer sweep` and `walk` use (compiled only with
// -DSTOCKMIXER_MPI=ON): start and stop, text messages, one broadcast.
//
// MPI starts only when a launcher started the process (mpirun / mpiexec of Open MPI or MPICH, srun with
// PMI or PMIx): a plain `stockmixer sweep` then runs alone, without MPI's singleton start-up.
// Messages are JSON text; rank 0 holds the job queue (cli/sweep.hpp), the other ranks ask it for jobs.
#pragma once

#include <stockmixer/common.hpp>

// MPI's C interface only: Open MPI's and MPICH's deprecated C++ bindings are not needed (and warn).
#ifndef OMPI_SKIP_MPICXX
#define OMPI_SKIP_MPICXX 1
#endif
#ifndef MPICH_SKIP_MPICXX
#define MPICH_SKIP_MPICXX 1
#endif
#include <mpi.h>

#include <cstdint>
#include <cstdlib>
#include <string>

namespace stockmixer::cli::mpi {

// True when an MPI launcher started this process.
inline bool launched() {
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE"})
    if (std::getenv(name) != nullptr) return true;
  return false;
}

inline void check(int status, const char* call) {
  if (status != MPI_SUCCESS) throw Error(std::string("stockmixer: MPI ") + call + " failed (error " + std::to_string(status) + ")");
}

// MPI_COMM_WORLD for the lifetime of the object: rank 0 of 1 when no launcher started the process.
class World {
 public:
  World(int* argc, char*** argv) {
    if (!launched()) return;
    int provided = 0;
    check(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
    active_ = true;
    funneled_ = provided >= MPI_THREAD_FUNNELED;
    check(MPI_Comm_rank(MPI_COMM_WORLD, &rank_), "MPI_Comm_rank");
    check(MPI_Comm_size(MPI_COMM_WORLD, &size_), "MPI_Comm_size");
  }
  ~World() {
    if (active_) MPI_Finalize();
  }
  World(const World&) = delete;
  World& operator=(const World&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }
  // Whether a thread other than the one that started MPI may run beside MPI calls (it makes none).
  bool funneled() const { return funneled_; }

 private:
  bool active_ = false, funneled_ = false;
  int rank_ = 0, size_ = 1;
};

inline void send_text(int to, int tag, const std::string& text) {
  check(MPI_Send(text.data(), static_cast<int>(text.size()), MPI_CHAR, to, tag, MPI_COMM_WORLD), "MPI_Send");
}

// A message of `tag` waiting from any rank: its sender, or -1 when none is waiting (returns at once).
inline int waiting(int tag) {
  int flag = 0;
  MPI_Status status;
  check(MPI_Iprobe(MPI_ANY_SOURCE, tag, MPI_COMM_WORLD, &flag, &status), "MPI_Iprobe");
  return flag ? status.MPI_SOURCE : -1;
}

inline std::string receive_text(int from, int tag) {
  MPI_Status status;
  check(MPI_Probe(from, tag, MPI_COMM_WORLD, &status), "MPI_Probe");
  int count = 0;
  check(MPI_Get_count(&status, MPI_CHAR, &count), "MPI_Get_count");
  std::string text(static_cast<std::size_t>(count), '\0');
  check(MPI_Recv(text.data(), count, MPI_CHAR, from, tag, MPI_COMM_WORLD, MPI_STATUS_IGNORE), "MPI_Recv");
  return text;
}

// Rank 0's text on every rank.
inline std::string broadcast(std::string text) {
  std::int64_t size = static_cast<std::int64_t>(text.size());
  check(MPI_Bcast(&size, 1, MPI_INT64_T, 0, MPI_COMM_WORLD), "MPI_Bcast");
  text.resize(static_cast<std::size_t>(size));
  check(MPI_Bcast(text.data(), static_cast<int>(size), MPI_CHAR, 0, MPI_COMM_WORLD), "MPI_Bcast");
  return text;
}

}  // namespace stockmixer::cli::mpi
