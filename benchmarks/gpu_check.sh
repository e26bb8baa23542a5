#!/usr/bin/env bash
# benchmarks/gpu_check.sh — the CUDA unit on a machine with an NVIDIA GPU, in one command (docs/cuda.md):
#   1. configures and builds test_cuda and the stockmixer tool with -DSTOCKMIXER_CUDA=ON into build-gpu/;
#   2. runs test_cuda under ctest: every device kernel against the CPU's, float and double, at NASDAQ's
#      shape and small odd shapes; a case reported skipped (no device seen) fails this script;
#   3. prints the device's and the CPU's times side by side: the training step (the device's resident,
#      graph-launched step), inference and the rank loss at NASDAQ's shape (N = 1026, T = 16, C = 5,
#      M = 20), N = 20 000 and N = 100 000 (stockmixer bench --device cuda / cpu), the issue's targets
#      beside the step; then the rank loss alone in both forms and Adam (test_cuda "[.benchmark]").
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

echo "== timings: the device beside the CPU ($jobs threads), milliseconds (medians; stockmixer bench)"
cli="$build/examples/stockmixer"
# One figure of a bench's JSON; a missing one stops the script.
field() {
  local value
  value=$(sed -n "s/.*\"$1\":\([-0-9.eE+]*\).*/\1/p" <<< "$2")
  if [[ -z $value ]]; then
    echo "gpu_check.sh: no \"$1\" in: $2" >&2
    return 1
  fi
  echo "$value"
}
printf '%-7s %-4s %11s %11s %11s %11s %11s %11s %7s %4s\n' "N" "type" "step dev" "step cpu" "infer dev" \
  "infer cpu" "loss dev" "loss cpu" "target" "met"
for stocks in 1026 20000 100000; do
  for precision in f32 f64; do
    iters=50
    [[ $stocks -ge 20000 ]] && iters=20
    [[ $stocks -ge 100000 ]] && iters=5
    dev=$("$cli" bench --device cuda --stocks "$stocks" --iters "$((iters * 4))" --precision "$precision")
    cpu=$("$cli" bench --device cpu --stocks "$stocks" --threads "$jobs" --iters "$iters" --precision "$precision")
    step_dev=$(field train_step_ms "$dev")
    step_cpu=$(field train_step_ms "$cpu")
    infer_dev=$(field inference_ms "$dev")
    infer_cpu=$(field inference_ms "$cpu")
    loss_dev=$(field loss_ms "$dev")
    loss_cpu=$(field loss_ms "$cpu")
    # The issue's targets on one H100/H200-class GPU: a NASDAQ step within 0.1 ms, N = 100 000 within 5 ms.
    target=-
    met=-
    [[ $stocks -eq 1026 ]] && target=0.1
    [[ $stocks -eq 100000 ]] && target=5
    if [[ $target != - ]]; then
      met=$(awk -v t="$step_dev" -v limit="$target" 'BEGIN { print (t <= limit) ? "yes" : "no" }')
    fi
    printf '%-7s %-4s %11.4f %11.4f %11.4f %11.4f %11.4f %11.4f %7s %4s\n' "$stocks" "$precision" "$step_dev" \
      "$step_cpu" "$infer_dev" "$infer_cpu" "$loss_dev" "$loss_cpu" "$target" "$met"
  done
done
echo "step dev: the resident step, one CUDA graph launch and its loss read back; infer dev: x copied in and the"
echo "prediction out; loss dev: the sorted rank loss's forward and backward, its two sums read back;"
echo "target: the issue's for the step (ms); met: whether the device's step is within it."
"$cli" bench --device cuda --stocks 1026 --iters 1 | sed -n 's/.*"gpu":"\([^"]*\)".*"graph_nodes":\([0-9]*\).*/device: \1; the step graph: \2 nodes/p'

echo "== stockmixer train --device cuda beside --device cpu (synthetic market, 2 epochs, f64; printed, not judged:"
echo "   the two sum in different orders, and Adam turns a gradient's sign noise near zero into a step of lr)"
for device in cuda cpu; do
  "$cli" train --device "$device" --epochs 2 --precision f64 --threads "$jobs" --out "$build/train-$device" \
    --overwrite > /dev/null 2> "$build/train-$device.log"
  sed -n 's/.*"epoch":\([0-9]*\),.*"train":{"loss":\([-0-9.eE+]*\).*/'"$device"' epoch \1 train loss \2/p' \
    "$build/train-$device/metrics.jsonl"
done

echo "== timings: the rank loss alone and Adam, device beside CPU (microseconds per call; -1: not run)"
OMP_NUM_THREADS=$jobs OMP_WAIT_POLICY=passive "$build/tests/test_cuda" "[.benchmark]"

echo "gpu_check.sh: done in $(( $(date +%s) - started )) s"
