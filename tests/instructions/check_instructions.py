#!/usr/bin/python3
"""The instruction-count guard: runs step_instructions (one NASDAQ-shaped training step) under
`valgrind --tool=callgrind --instr-atstart=no`, reads the instructions executed (Ir) between the
program's start and stop requests, and compares them with baseline.json:

    more than baseline · (1 + margin)  -> fail: the step got slower (in instructions)
    less than baseline · (1 - margin)  -> fail: it got faster; record it deliberately with --update
    otherwise                          -> pass

The count is exact for one binary (one thread, seeded data), but it belongs to the compiler and the
build flags that made the binary, and Eigen picks its GEMM blocking from the CPU's cache sizes: so the
baseline records the compiler and the build type, a different one skips the test (exit code 77) with
a message, and the margin (3 %) absorbs cache-size differences between machines of the same kind.

    /usr/bin/python3 tests/instructions/check_instructions.py --binary build/tests/instructions/step_instructions \\
        --baseline tests/instructions/baseline.json --compiler "GNU 12.2.0" --build-type Release [--update]
"""
import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

SKIP = 77


def count(valgrind, binary):
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        run = subprocess.run([valgrind, "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
                              binary], capture_output=True, text=True)
        if run.returncode != 0:
            sys.exit(f"check_instructions: {binary} under valgrind exited {run.returncode}:\n{run.stderr[-2000:]}")
        text = out.read_text()
    totals = re.search(r"^totals:\s+(\d+)", text, re.M)
    if not totals:
        sys.exit(f"check_instructions: no totals line in callgrind's output for {binary}")
    return int(totals.group(1)), run.stdout.strip()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--valgrind", default="valgrind")
    ap.add_argument("--binary", required=True)
    ap.add_argument("--baseline", type=Path, required=True)
    ap.add_argument("--compiler", required=True, help="CMAKE_CXX_COMPILER_ID and version, as CMake passes them")
    ap.add_argument("--build-type", required=True)
    ap.add_argument("--update", action="store_true", help="write the measured count as the new baseline")
    args = ap.parse_args()

    n, said = count(args.valgrind, args.binary)
    print(f"{said}\ninstructions: {n:,}")
    if args.update:
        margin = json.loads(args.baseline.read_text())["margin"] if args.baseline.exists() else 0.03
        args.baseline.write_text(json.dumps({"instructions": n, "margin": margin, "compiler": args.compiler,
                                             "build_type": args.build_type}, indent=1) + "\n")
        print(f"baseline written: {args.baseline}")
        return 0
    base = json.loads(args.baseline.read_text())
    if (base["compiler"], base["build_type"]) != (args.compiler, args.build_type):
        print(f"SKIPPED: the baseline was measured with {base['compiler']} {base['build_type']}, this binary is "
              f"{args.compiler} {args.build_type}; instruction counts only compare within one toolchain and build type")
        return SKIP
    ref, margin = base["instructions"], base["margin"]
    ratio = n / ref
    print(f"baseline: {ref:,} ({args.baseline}), ratio {ratio:.4f}, margin ±{margin:.0%}")
    if ratio > 1 + margin:
        print(f"FAIL: one training step now executes {ratio - 1:.1%} more instructions than the baseline")
        return 1
    if ratio < 1 - margin:
        print(f"FAIL: {1 - ratio:.1%} fewer instructions than the baseline: faster! Record it deliberately: rerun "
              f"this command with --update and commit {args.baseline.name} with the change that earned it")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
