#!/usr/bin/env bash
# cmake/install-deps.sh — install the Debian 12 packages stockmixer needs to build, test and benchmark.
#
# Only packages that are missing are installed, and `apt-get update` runs only when something is
# missing, so on a ready machine this is a quick no-op. Runs unattended (CI, no stdin): as root it
# calls apt-get directly, otherwise through sudo; with neither it stops and names what is missing.
set -euo pipefail

# libxtl-dev comes in as a dependency of xtensor-dev. python3-torch, python3-numpy and python3-pandas
# (the original evaluator, tests/make_metrics_fixtures.py) serve the fixture scripts (tests/, run
# with /usr/bin/python3, not a pyenv or venv python). valgrind runs the instruction-count test
# (tests/instructions/). CI builds the suite with Clang too: clang, libomp-dev (Clang's OpenMP runtime;
# GCC's libgomp comes with g++) and libclang-rt-dev (Clang's sanitizer and libFuzzer runtimes, only a
# recommendation of clang, which --no-install-recommends below would skip).
# pybind11-dev, python3-dev (Python.h) and python3-pytest build and test the Python module
# (-DSTOCKMIXER_PYTHON=ON); python3-pybind11 lets setup.py build it for pip (docs/python.md).
# libopenmpi-dev and openmpi-bin (mpirun) build and test the MPI sweeps (-DSTOCKMIXER_MPI=ON, docs/scaling.md).
packages=(
  cmake g++ make git
  clang libomp-dev libclang-rt-dev
  libeigen3-dev xtensor-dev nlohmann-json3-dev
  catch2 libbenchmark-dev
  python3-torch python3-numpy python3-pandas
  valgrind
  pybind11-dev python3-pybind11 python3-dev python3-pytest
  libopenmpi-dev openmpi-bin
)

missing=()
for pkg in "${packages[@]}"; do
  # Captured rather than piped into grep -q: under pipefail an early-exiting grep can fail the pipe.
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  if ! grep -q "install ok installed" <<<"$status"; then
    missing+=("$pkg")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "install-deps: nothing missing (${#packages[@]} packages already installed)"
  exit 0
fi

if ((EUID == 0)); then
  as_root=()
elif command -v sudo >/dev/null 2>&1; then
  # -n: never wait for a password when nobody can type one (CI); ask normally on a terminal.
  if [[ -t 0 ]]; then as_root=(sudo); else as_root=(sudo -n); fi
else
  echo "install-deps: missing Debian packages: ${missing[*]}" >&2
  echo "install-deps: not root and sudo is not available; install them as root with:" >&2
  echo "  apt-get update && apt-get install -y ${missing[*]}" >&2
  exit 1
fi

apt=("${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300)
"${apt[@]}" update -q >&2
"${apt[@]}" install -y -q --no-install-recommends "${missing[@]}" >&2

echo "install-deps: installed ${missing[*]}"
