"""The `stockmixer` Python module (python/stockmixer_py.cpp) for pip, offline, with Debian's packages:

    python3 -m pip install --no-build-isolation .

(in a venv made with --system-site-packages, or with --user; needs python3-pybind11, python3-setuptools,
python3-wheel, python3-numpy, g++, libeigen3-dev, xtensor-dev and nlohmann-json3-dev: cmake/install-deps.sh).
The module is compiled with the flags of the CMake build's (Release: -O3 -DNDEBUG, GCC's default
-std=gnu++17, OpenMP with Eigen's own threading off), so it computes what the `stockmixer` tool computes,
bit for bit. docs/python.md says more.
"""
import atexit
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from pybind11.setup_helpers import Pybind11Extension, build_ext
from setuptools import setup

ROOT = Path(__file__).resolve().parent

# The library's version (include/stockmixer/provenance.hpp, which CMake checks against its project VERSION).
VERSION = re.search(r'kVersion = "([0-9.]+)"', (ROOT / "include/stockmixer/provenance.hpp").read_text()).group(1)


def git_commit():
    """The commit a run's provenance names (as the CMake build defines it), or None outside a git checkout."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True)
        changes = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                                 capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return head.stdout.strip() + ("-dirty" if changes.stdout.strip() else "")


macros = [("NDEBUG", None), ("EIGEN_DONT_PARALLELIZE", None)]
if git_commit():
    macros.append(("STOCKMIXER_GIT_COMMIT", f'"{git_commit()}"'))

extension = Pybind11Extension(
    "stockmixer",
    ["python/stockmixer_py.cpp"],
    include_dirs=[str(ROOT / "include"), "/usr/include/eigen3"],
    depends=[str(p) for p in sorted((ROOT / "include").rglob("*.hpp"))],
    define_macros=macros,
    # cxx_std=0 and -std=gnu++17 given here: Pybind11Extension's cxx_std=17 would pass -std=c++17, under
    # which GCC stops contracting a * b + c into FMA in the AVX2 and AVX-512 kernel versions, as the CMake
    # build (GCC's default, gnu++17) does; the two builds would then differ in the last bits.
    cxx_std=0,
    extra_compile_args=["-std=gnu++17", "-O3", "-g0", "-fopenmp"],
    extra_link_args=["-fopenmp"],
)

# Build in a folder of its own, removed afterwards: setuptools' default, ./build, is the CMake build's.
build_base = tempfile.mkdtemp(prefix="stockmixer-pip-build-")
atexit.register(shutil.rmtree, build_base, ignore_errors=True)

setup(
    version=VERSION,
    ext_modules=[extension],
    packages=[],  # the module alone: no Python package of the tree (cmake/, include/, ...) is installed
    cmdclass={"build_ext": build_ext},
    options={"build": {"build_base": build_base}, "egg_info": {"egg_base": build_base}},
    zip_safe=False,
)
