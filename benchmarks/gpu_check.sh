#!/usr/bin/env bash
# benchmarks/gpu_check.sh — the CUDA unit on a machine with an NVIDIA GPU, in one command (docs/cuda.md):
#   1. configures and builds test_cuda and the stockmixer tool with -DSTOCKMIXER_CUDA=ON into build-gpu/;
#   2. runs test_cuda under ctest: every device kernel against the CPU's, float and double, at NASDAQ's
#      shape and small odd shapes; a case reported skipped (no device seen) fails this script;
#   3. prints device-and-CPU timings: the rank loss alone (sorted and tiled forms, N = 1026, 20 000,
#      100 000) and Adam (test_cuda "[.benchmark]"), then the CPU's NASDAQ-shaped, N = 20 000 and
#      N = 100 000 training steps and inference (stockmixer bench), which have no device path yet.
# Usage, from the repository root:  bash benchmarks/gpu_check.sh [BUILD_DIR]     (default build-gpu)
# Needs nvcc (CUDA 12.8 or later; /usr/local/cuda/bin/nvcc is found by CMake), a driver that runs it,
# and cmake/install-deps.sh's packages. Any failing step stops the script with its line and command.
set -euo pipefail
trap 'echo "gpu_check.sh: FAILED at line $LINENO: $BASH_COMMAND (exit $?)" >&2' ERR

cd "$(dirname "$0")/.."
build=${1:-build-gpu}
jobs=$(nproc)
started=$(date +%s)

echo "== the device"
if ! command -v nvidia-smi > /dev/null; then
  echo "gpu_check.sh: nvidia-smi not found: this machine has no NVIDIA driver, so no GPU to check" >&2
  exit 1
fi
nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv,noheader
nvcc_path=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
if [[ ! -x $nvcc_path ]]; then
  echo "gpu_check.sh: nvcc not found on PATH nor at /usr/local/cuda/bin/nvcc" >&2
  exit 1
fi
"$nvcc_path" --version | tail -n 1

echo "== build ($build, -DSTOCKMIXER_CUDA=ON, $jobs jobs)"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DSTOCKMIXER_CUDA=ON -DCMAKE_CUDA_COMPILER="$nvcc_path" > "$build.configure.log"
cmake --build "$build" -j "$jobs" --target test_cuda stockmixer_cli
echo "built in $(( $(date +%s) - started )) s"

echo "== test_cuda (ctest -L cuda)"
ctest_log=$(mktemp)
# ctest's exit status is that of the tests; the log is kept to look for skipped ones.
ctest --test-dir "$build" -L cuda --output-on-failure --no-tests=error | tee "$ctest_log"
if grep -q "(Skipped)" "$ctest_log"; then
  echo "gpu_check.sh: test_cuda skipped cases: the CUDA runtime saw no usable device (see the SKIPPED lines)" >&2
  grep "(Skipped)" "$ctest_log" >&2
  rm -f "$ctest_log"
  exit 1
fi
rm -f "$ctest_log"
# The cases' own lines (the device's name, how many Adam values differ in any bit), for the record.
"$build/tests/test_cuda" "[cuda]" | grep -E "^(device|adam)"

echo "== timings: the device's kernels beside the CPU's (microseconds per call; -1: not run)"
OMP_NUM_THREADS=$jobs OMP_WAIT_POLICY=passive "$build/tests/test_cuda" "[.benchmark]"

echo "== timings: the CPU's step and inference ($jobs threads; no device path yet, docs/cuda.md)"
cli="$build/examples/stockmixer"
printf '%-10s %-8s %14s %14s %14s\n' "N" "type" "step ms" "inference ms" "loss ms"
for stocks in 1026 20000 100000; do
  for precision in f32 f64; do
    iters=20
    [[ $stocks -ge 100000 ]] && iters=5
    json=$("$cli" bench --stocks "$stocks" --threads "$jobs" --iters "$iters" --precision "$precision")
    field() { sed -n "s/.*\"$1\":\\([-0-9.eE+]*\\).*/\\1/p" <<< "$json"; }
    step=$(field train_step_ms)
    inference=$(field inference_ms)
    loss=$(field loss_ms)
    if [[ -z $step || -z $inference || -z $loss ]]; then
      echo "gpu_check.sh: could not read train_step_ms, inference_ms and loss_ms from: $json" >&2
      exit 1
    fi
    printf '%-10s %-8s %14s %14s %14s\n' "$stocks" "$precision" "$step" "$inference" "$loss"
  done
done

echo "gpu_check.sh: done in $(( $(date +%s) - started )) s"
