#!/usr/bin/python3
"""Measures stockmixer on this machine and writes docs/performance.md: every figure on the page comes
from one run of this script, made from the binaries already in the build folder. Nothing is typed in
by hand except the explanatory text, which is kept here, beside the code that measures what it
explains.

    /usr/bin/python3 benchmarks/performance_page.py --build build [--data ../shared/data/NASDAQ]
        [--out docs/performance.md] [--quick] [--rounds 5]

What it runs (each measurement in a fresh process; nothing is built):
  build/examples/stockmixer bench   N = 1026 (NASDAQ), 5000 and 20000 (T = 16, C = 5, M = 20) on 1 and
                                    2 threads, --rounds processes per shape, rounds interleaved;
  benchmarks/compare_pytorch.py     PyTorch beside stockmixer at N = 1026 and 5000 on 1 thread (the
                                    section says so when python3-torch is missing), and LibTorch when
                                    build/benchmarks/libtorch_bench exists (-DSTOCKMIXER_LIBTORCH=ON);
  build/examples/stockmixer train   the NASDAQ protocol (--data) for 3 epochs on 1 and 2 threads;
  build/benchmarks/bench_kernels    its default set, --kernel-repetitions runs each (medians), and the
                                    core's peak it measures first for the instruction set the fused
                                    kernels run (its JSON context).
The instruction set is the one `stockmixer bench` reports ("isa"), the peak the one `bench_kernels`
measures: both follow STOCKMIXER_MAX_ISA in this script's environment.

--quick: one round, N = 1026 only, bench --iters 20, a handful of kernels at
--benchmark_min_time=0.01, one epoch, PyTorch with a small budget; the page then says it is not for
citing. A full run takes several minutes and wants idle cores (see the page's "How it is measured").
"""
import argparse
import datetime
import json
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

FULL_STOCKS = (1026, 5000, 20000)
QUICK_STOCKS = (1026,)
THREADS = (1, 2)
TORCH_STOCKS_FULL = (1026, 5000)
TORCH_STOCKS_QUICK = (1026,)
# --quick's kernels: the fused blocks, the model at NASDAQ's shape and one of each generic family.
QUICK_KERNEL_FILTER = ("^(per_stock_(fwd|bwd)/|stock_head_(fwd|bwd)/|model_(train_step|inference)/N_1026/"
                       "|linear_fwd/dense1_|layernorm_fwd/TC_|gelu_fwd/|rank_loss_sorted_(fwd|bwd)/N_1026/)")
# The time targets (set for one thread).
TARGET_STEP_MS, TARGET_INFERENCE_MS = 0.5, 0.1
TARGET_STEP_20K_MS, TARGET_PEAK_20K_MB, TARGET_100_EPOCHS_S = 20.0, 200.0, 60.0
# The share of the core's measured peak the NASDAQ step and inference should reach (one thread).
TARGET_PEAK_SHARE = 0.4


def log(msg):
    print(f"performance_page: {msg}", file=sys.stderr, flush=True)


class Failed(Exception):
    pass


# ---- running ------------------------------------------------------------------------------------------

def run_measured(cmd, env=None, cwd=None):
    """Runs cmd to completion; returns (stdout, stderr, peak RSS in MB of that process alone). Output goes
    through temporary files, so neither pipe can fill and stall the child; os.wait4 gives its rusage."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        try:
            p = subprocess.Popen([str(c) for c in cmd], stdout=out, stderr=err, text=True, env=env, cwd=cwd)
        except OSError as e:
            raise Failed(f"{cmd[0]}: {e}")
        _, status, usage = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if p.returncode != 0:
        raise Failed(f"`{' '.join(shlex.quote(str(c)) for c in cmd)}` exited {p.returncode}: {stderr.strip()[-1500:]}")
    return stdout, stderr, usage.ru_maxrss / 1024.0


def quiet(cmd, cwd=ROOT):
    """stdout of a small read-only command, or None."""
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return r.stdout if r.returncode == 0 else None


def last_json_line(text):
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            return json.loads(line)
    raise Failed(f"no JSON line in: {text.strip()[-500:]}")


# ---- formatting ---------------------------------------------------------------------------------------

def md_table(headers, rows, align):
    """A Markdown table whose columns line up in the source: align is one of 'l'/'r' per column."""
    rows = [[str(c) for c in r] for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    widths = [max(w, 3) for w in widths]

    def line(cells):
        return "| " + " | ".join(c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(cells, widths, align)) + " |"

    sep = "|" + "|".join(("-" * (w + 1) + ":") if a == "r" else (":" + "-" * (w + 1)) for w, a in zip(widths, align)) + "|"
    return "\n".join([line(headers), sep] + [line(r) for r in rows])


def prose(block, width=100):
    """Wraps a block's paragraphs, bullet items and quotes at width; headings, tables and code stay."""
    risky = re.compile(r"^(#{1,6} |[-+*] |>|1[.)] |\||```)")

    def fill(text, first="", rest=""):
        lines = textwrap.wrap(text, width, initial_indent=first, subsequent_indent=rest,
                              break_long_words=False, break_on_hyphens=False)
        if any(risky.match(l[len(rest):]) for l in lines[1:]):
            return first + text  # a wrapped line would start a list, a heading, a table: leave it long
        return "\n".join(lines)

    out = []
    for para in block.split("\n\n"):
        lines = para.split("\n")
        if para.startswith(("#", "|", "```")) or any(l.startswith("|") for l in lines):
            out.append(para)
        elif para.startswith("> "):
            out.append(fill(" ".join(l[2:].strip() for l in lines), "> ", "> "))
        elif para.startswith("- "):
            items = []
            for l in lines:
                if l.startswith("- "):
                    items.append(l[2:].strip())
                else:
                    items[-1] += " " + l.strip()
            out.append("\n".join(fill(i, "- ", "  ") for i in items))
        else:
            out.append(fill(" ".join(l.strip() for l in lines)))
    return "\n\n".join(out)


def fmt_ms(v):
    if v is None:
        return "n/a"
    return f"{v:.3f}" if v < 10 else f"{v:.2f}" if v < 100 else f"{v:.1f}"


def fmt_spread(values, fmt=fmt_ms):
    """median (min–max) of values, or the one value."""
    if not values:
        return "n/a"
    med = statistics.median(values)
    if len(values) == 1:
        return fmt(med)
    return f"{fmt(med)} ({fmt(min(values))}–{fmt(max(values))})"


def fmt_time_us(us):
    if us < 1:
        return f"{us * 1000:.0f} ns"
    if us < 1000:
        return f"{us:.1f} µs" if us < 100 else f"{us:.0f} µs"
    return f"{us / 1000:.3f} ms" if us < 10000 else f"{us / 1000:.2f} ms"


def fmt_pct(x):
    return "n/a" if x is None else f"{100 * x:.0f} %" if x >= 0.1 else f"{100 * x:.1f} %"


def fmt_count(n):
    """12345678 -> '12 345 678' (the docs' thousands separator)."""
    return f"{n:,}".replace(",", " ")


# ---- the machine and the build ------------------------------------------------------------------------

X86_64_V4 = ("avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl")
X86_64_V3 = ("avx2", "fma", "bmi1", "bmi2", "f16c", "abm", "movbe")


def cpu_info():
    model, flags, mhz = "unknown", set(), None
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "model name" and model == "unknown":
            model = value
        elif key == "flags" and not flags:
            flags = set(value.split())
        elif key == "cpu MHz" and mhz is None:
            try:
                mhz = float(value)
            except ValueError:
                pass
    return model, flags, mhz


def cmake_cache(build):
    values = {}
    try:
        for line in (build / "CMakeCache.txt").read_text().splitlines():
            m = re.match(r"^([A-Za-z0-9_.-]+):[A-Z]+=(.*)$", line)
            if m:
                values[m.group(1)] = m.group(2)
    except OSError:
        pass
    # CMake keeps the compiler's id and version in CMakeFiles/<cmake version>/CMakeCXXCompiler.cmake;
    # the cache holds them only when a project put them there.
    if "CMAKE_CXX_COMPILER_ID" not in values or "CMAKE_CXX_COMPILER_VERSION" not in values:
        for f in sorted((build / "CMakeFiles").glob("*/CMakeCXXCompiler.cmake")):
            text = f.read_text()
            for key in ("CMAKE_CXX_COMPILER_ID", "CMAKE_CXX_COMPILER_VERSION"):
                m = re.search(rf'set\({key} "([^"]*)"\)', text)
                if m and key not in values:
                    values[key] = m.group(1)
    return values


def cpu_isa(flags):
    """The widest of isa.hpp's instruction sets the CPU flags offer (x86-64-v4, -v3, else baseline)."""
    if all(f in flags for f in X86_64_V4):
        return "avx512"
    if all(f in flags for f in X86_64_V3):
        return "avx2"
    return "baseline"


def isa_ran(bench, flags, cache):
    """The instruction set the fused kernels ran, as `stockmixer bench` reported it ("isa"), with why."""
    reported = sorted({isa for e in bench.values() for isa in e.get("isa", []) if isa})
    if not reported:
        return "not reported (this `stockmixer bench` predates its \"isa\" field)"
    isa = ", ".join(reported)
    if cache.get("STOCKMIXER_NATIVE", "OFF").upper() in ("ON", "1", "TRUE", "YES"):
        return f"{isa}: the build's own target, the only version compiled (STOCKMIXER_NATIVE=ON, -march=native)"
    offers, cap = cpu_isa(flags), os.environ.get("STOCKMIXER_MAX_ISA")
    if cap and isa != offers:
        return f"{isa}: capped by STOCKMIXER_MAX_ISA={cap} in this run's environment, the CPU offers {offers}"
    return f"{isa}, the widest the CPU offers" if isa == offers else f"{isa}, where the CPU flags suggest {offers}"


def git_state():
    head = (quiet(["git", "--no-optional-locks", "rev-parse", "--short", "HEAD"]) or "").strip() or "unknown"
    status = quiet(["git", "--no-optional-locks", "status", "--porcelain"])
    if status is None:
        return head
    return head if not status.strip() else f"{head} + uncommitted changes"


# ---- 2. stockmixer bench ------------------------------------------------------------------------------

def run_bench(cli, stocks, rounds, iters):
    """{(n, threads): {"inference_ms": [...], "train_step_ms": [...], "loss_ms": [...], "peak_mb": [...],
    "isa": [...], "batches": b, "parameters": p, "threads_reported": t}}, rounds interleaved over the shapes."""
    results = {}
    for r in range(rounds):
        for n in stocks:
            for k in THREADS:
                out, _, peak = run_measured([cli, "bench", "--stocks", n, "--lookback", 16, "--features", 5,
                                             "--market", 20, "--threads", k, "--iters", iters])
                j = last_json_line(out)
                e = results.setdefault((n, k), {"inference_ms": [], "train_step_ms": [], "loss_ms": [], "peak_mb": [],
                                                "isa": []})
                e["isa"].append(j.get("isa"))
                for key in ("inference_ms", "train_step_ms", "loss_ms"):
                    e[key].append(float(j[key]))
                e["peak_mb"].append(peak)
                e["batches"], e["parameters"], e["threads_reported"] = j.get("batches"), j.get("parameters"), j.get("threads")
        log(f"bench round {r + 1}/{rounds} done")
    return results


def med(results, n, k, key):
    e = results.get((n, k))
    return statistics.median(e[key]) if e and e[key] else None


# ---- 3. PyTorch -----------------------------------------------------------------------------------------

def torch_version():
    """(version, None) when this interpreter imports torch and numpy, else (None, why)."""
    r = subprocess.run([sys.executable, "-c", "import numpy, torch; print(torch.__version__)"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        lines = r.stderr.strip().splitlines()
        return None, lines[-1] if lines else f"exit {r.returncode}"
    return r.stdout.strip(), None


def run_compare(cli, stocks, budget, libtorch):
    """compare_pytorch.py run as it is (with --libtorch when that binary is given); its Markdown table
    parsed: (title, headers, rows)."""
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    out, _, _ = run_measured([sys.executable, HERE / "compare_pytorch.py", "--cli", cli, "--stocks",
                              ",".join(str(n) for n in stocks), "--threads", 1, "--budget", budget]
                             + (["--libtorch", libtorch] if libtorch else []), env=env)
    title, headers, rows = None, None, []
    for line in out.splitlines():
        s = line.strip()
        if s.startswith("PyTorch ") and " vs " in s:
            title = s
        elif s.startswith("|"):
            cells = [c.strip() for c in s.strip("|").split("|")]
            if headers is None:
                headers = cells
            elif not all(re.fullmatch(r":?-+:?", c) for c in cells):
                rows.append(cells)
    if not headers or not rows:
        raise Failed(f"compare_pytorch.py printed no table:\n{out[-1500:]}")
    return title, headers, rows


# ---- 4. the NASDAQ epoch --------------------------------------------------------------------------------

def run_train(cli, data, epochs):
    """{threads: [seconds per epoch]}, whether every epoch's metrics agree across thread counts, and what
    an epoch holds ({"steps": .., "valid_days": .., "test_days": ..}, from the run's own report)."""
    seconds, metrics, shape = {}, {}, {}
    with tempfile.TemporaryDirectory(prefix="performance_page_") as tmp:
        for k in THREADS:
            out_dir = Path(tmp) / f"threads_{k}"
            _, stderr, _ = run_measured([cli, "train", "--data", data, "--market", "NASDAQ", "--epochs", epochs,
                                         "--threads", k, "--out", out_dir, "--overwrite"])
            lines = [json.loads(l) for l in (out_dir / "metrics.jsonl").read_text().splitlines() if l.strip()]
            if lines and all("seconds" in l for l in lines):
                seconds[k] = [float(l["seconds"]) for l in lines]
            else:  # the epoch lines on stderr: "... 1.1s  *"
                seconds[k] = [float(m) for m in re.findall(r"^epoch\s.*?\s([0-9.]+)s\b", stderr, re.M)]
            metrics[k] = [{key: v for key, v in l.items() if key != "seconds"} for l in lines]
            m = re.search(r"(\d+) steps per epoch", stderr)
            if m:
                shape["steps"] = int(m.group(1))
            if lines:
                shape["valid_days"] = lines[0].get("valid", {}).get("days")
                shape["test_days"] = lines[0].get("test", {}).get("days")
            log(f"train on {k} thread(s): {seconds[k]}")
    same = len({json.dumps(m, sort_keys=True) for m in metrics.values()}) == 1
    return seconds, same, shape


# ---- 5. bench_kernels -----------------------------------------------------------------------------------

def run_kernels(binary, quick, repetitions):
    cmd = [binary, "--benchmark_format=json"]
    if quick:
        cmd += [f"--benchmark_filter={QUICK_KERNEL_FILTER}", "--benchmark_min_time=0.01"]
    elif repetitions > 1:
        cmd += [f"--benchmark_repetitions={repetitions}", "--benchmark_report_aggregates_only=true"]
    out, _, _ = run_measured(cmd)
    j = json.loads(out)
    scale = {"ns": 1e-3, "us": 1.0, "ms": 1e3, "s": 1e6}
    rows = []
    for b in j.get("benchmarks", []):
        if b.get("run_type") == "aggregate" and b.get("aggregate_name") != "median":
            continue
        name = b.get("run_name", b["name"])
        parts = name.split("/")
        m = re.search(r"threads:(\d+)", name)
        rows.append({"name": name, "kernel": parts[0],
                     "shape": "/".join(p for p in parts[1:] if not p.startswith("threads:") and p != "real_time"),
                     "threads": int(m.group(1)) if m else 1,
                     "us": b["real_time"] * scale.get(b.get("time_unit", "ns"), 1e-3),
                     "flops": b.get("FLOP/s"), "bytes": b.get("bytes/s"), "stocks": b.get("stocks/s"),
                     "peak_share": b.get("peak_share")})
    return j.get("context", {}), rows, cmd


def peak_flops(kernel_context, precision):
    """One core's peak in FLOP/s that bench_kernels measured for the fused kernels' instruction set
    (precision "f32" or "f64"; its peak_share divides by the f32 one), or None when it measured none."""
    try:
        v = float(kernel_context.get(f"stockmixer_peak_flops_{precision}", ""))
    except ValueError:
        return None
    return v if v > 0 else None


def find_kernel(rows, kernel, shape_prefix, threads):
    for r in rows:
        if r["kernel"] == kernel and r["shape"].startswith(shape_prefix) and r["threads"] == threads:
            return r
    return None


# ---- the page -----------------------------------------------------------------------------------------

MEASURED_HOW = """\
## How it is measured

- **Fresh processes.** Every figure comes from a process this script starts, on the binaries of the
  build folder named above; the script builds nothing. Peak memory is each process's own peak
  resident set (`ru_maxrss` from `os.wait4`).
- **`stockmixer bench`** builds the model on random data of the given shape (T = 16, C = 5, M = 20),
  warms up once (the first call sizes every buffer; nothing is allocated after it), then times
  `--iters` calls of each figure and prints the median of each. *Training step*: forward, loss,
  backward and Adam (`train::TrainStep`, the six lines every trainer runs). *Inference*:
  `StockMixer::predict`, without a tape. *Loss*: the masked MSE and rank hinge that training runs
  (the exact O(N log N) form), forward and backward.
- **Eight batches cycled.** The sorted rank loss branches on its data; on one batch repeated the
  branch predictor learns those branches and the sorts look up to three times faster than they are.
  So `stockmixer bench` uses eight random batches in turn (fewer when their inputs would take more
  than 16 MiB: the *batches* column), and `bench_kernels` cycles its rank-loss benchmarks through 16
  inputs and `model_train_step` through 16 training days of its synthetic market.
- **Medians of medians.** Each `stockmixer bench` shape and thread count runs in `--rounds` separate
  processes, the rounds interleaved over the shapes (a noisy minute spreads over every row instead
  of spoiling one). A cell shows the median of those processes' medians, and their min–max.
- **Threads are bit-identical.** Every kernel splits its work by ownership over fixed chunks, so 1, 2
  or 16 threads give the same bits (`tests/test_threads.cpp`, kernel by kernel and three whole
  training steps); only the time changes. The epoch section below checks it again on NASDAQ.
- **Idle cores.** A multi-threaded timing is only as good as the machine is idle: an OpenMP worker
  that is not scheduled stalls every parallel region by a scheduler time slice. The load averages at
  the start and end of the run are in the header; pin a run (`taskset -c 0,1`) on a shared machine.
  Everything runs with OpenMP's default wait policy unless the header says otherwise.
- **Wall-clock time throughout.** `bench_kernels` times with `UseRealTime()` (CPU time counts only
  the calling thread and would flatter every OpenMP run) and checks every fast kernel against a
  plain reference before timing anything (`benchmarks/README.md`)."""

THREADS_TEXT = """\
Every parallel loop splits its work over fixed chunks that do not depend on the thread count, and
sums that cross chunks are added in chunk order: the per-stock kernel (groups of stocks as SIMD
lanes), the stock head's passes over ranges of stocks, the large Linears, LayerNorm over the stocks,
the rank loss, Adam's update and `zero_grad` (by the same chunks, so each thread clears the gradients
its own cache holds), the batch copy (`get_batch`) and `metrics::evaluate` (its days, added in day
order). What a second thread cannot help: the serial parts between regions (the stock head's small
loops, the loss's scalars, the tape), and the stock head's forward, whose passes are short (tens of
µs) and each open an OpenMP region. With `OMP_WAIT_POLICY=passive` (threads sleep between regions)
those short regions cost far more; the tool and the benchmarks run with OpenMP's default, the unit
tests set passive (speed does not matter there, and the CI machine is shared)."""

ALLOCATION_TEXT = """\
After its first call a training step (forward, loss, backward, Adam, dropout included) and inference
allocate nothing: the tape recycles its buffers and the rank loss keeps its workspace.
`tests/test_alloc.cpp` counts every `operator new` over five steps (and over repeated `predict`
calls) and requires zero. The per-stock kernel keeps the forward's activations for the backward
(2.4 KB a stock at T = 16, C = 5) while they fit in 8 MB, about N = 3300 stocks, so NASDAQ's step
reads them back; beyond that the backward recomputes them in cache, which measured faster than the
round trip through memory."""

ISA_TEXT = """\
The versioned loops (the per-stock kernel, the stock head, Adam's update) are compiled three times,
for AVX-512 (x86-64-v4), for AVX2 + FMA (x86-64-v3) and for the build's own target, and
`run_versioned` (`include/stockmixer/isa.hpp`) picks one at run time, the widest the CPU has. Each
version sizes a row of lanes to one register of its set (16 / 8 / 4 floats, 8 / 4 / 2 doubles): GCC
keeps a wider vector type in memory, and every operation on it would load and store.
`STOCKMIXER_MAX_ISA=avx2` (or `baseline`) caps the choice, to compare versions on one machine; the
model's fused and PyTorch tests and the thread tests run again under each cap
(`tests/CMakeLists.txt`), so every version is tested on an AVX-512 machine. A build with
`-DSTOCKMIXER_NATIVE=ON` (`-march=native`) has only its own version, and its binaries need the
building CPU."""

GUARD_TEXT = """\
Timings on a shared machine are noisy; instruction counts are not. `tests/instructions/` builds
`step_instructions` (one NASDAQ-shaped training step between callgrind's start and stop requests,
single-threaded, seeded), and the ctest `instructions_training_step` runs it under
`valgrind --tool=callgrind` and compares the instructions executed with
`tests/instructions/baseline.json`. The count repeats to the instruction. It fails when the count
moves more than the margin either way: slower is a regression; faster must be recorded on purpose,
and committed with the change that earned it:

```sh
/usr/bin/python3 tests/instructions/check_instructions.py --binary build/tests/instructions/step_instructions \\
    --baseline tests/instructions/baseline.json --compiler "GNU 12.2.0" --build-type Release --update
```

Valgrind hides AVX-512 from the program, so the versioned loops run their AVX2 version under it: the
count is that version's, and gains that are AVX-512 only (or that instruction counts do not see,
such as cache lines) show only in time. The baseline names the compiler and build type; another
toolchain skips the test with a message rather than compare counts that cannot match."""


def guard_baseline():
    try:
        b = json.loads((ROOT / "tests/instructions/baseline.json").read_text())
        return (f"The current baseline: {fmt_count(int(b['instructions']))} instructions a step, margin "
                f"{100 * float(b['margin']):.0f} %, recorded with {b.get('compiler', '?')}, {b.get('build_type', '?')}.")
    except (OSError, KeyError, ValueError):
        return "(tests/instructions/baseline.json could not be read.)"


def rel(p):
    try:
        return os.path.relpath(p, ROOT)
    except ValueError:
        return str(p)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", type=Path, required=True, help="the CMake build folder (Release)")
    ap.add_argument("--data", type=Path, default=None, help="NASDAQ data folder (default ../shared/data/NASDAQ "
                    "beside the repository); the epoch section is skipped when it does not exist")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "performance.md")
    ap.add_argument("--quick", action="store_true", help="a smoke run of every section, not for citing")
    ap.add_argument("--rounds", type=int, default=None, help="stockmixer bench processes per shape (default 5; 1 with --quick)")
    ap.add_argument("--iters", type=int, default=None, help="stockmixer bench --iters (default 50; 20 with --quick)")
    ap.add_argument("--epochs", type=int, default=None, help="NASDAQ epochs per thread count (default 3; 1 with --quick)")
    ap.add_argument("--torch-budget", type=float, default=None,
                    help="compare_pytorch.py --budget, seconds per figure (default 20; 1 with --quick)")
    ap.add_argument("--kernel-repetitions", type=int, default=3,
                    help="bench_kernels repetitions, the median reported (default 3; 1 with --quick)")
    args = ap.parse_args()
    quick = args.quick
    rounds = args.rounds or (1 if quick else 5)
    iters = args.iters or (20 if quick else 50)
    epochs = args.epochs or (1 if quick else 3)
    budget = args.torch_budget or (1.0 if quick else 20.0)
    kernel_reps = 1 if quick else max(1, args.kernel_repetitions)
    stocks = QUICK_STOCKS if quick else FULL_STOCKS
    torch_stocks = TORCH_STOCKS_QUICK if quick else TORCH_STOCKS_FULL
    build = args.build.resolve()
    data = args.data.resolve() if args.data else (ROOT.parent / "shared" / "data" / "NASDAQ").resolve()
    cli = build / "examples" / "stockmixer"
    kernels_bin = build / "benchmarks" / "bench_kernels"
    libtorch_bin = build / "benchmarks" / "libtorch_bench"
    libtorch_bin = libtorch_bin if libtorch_bin.is_file() else None
    if not cli.is_file():
        sys.exit(f"performance_page: {cli} not found: build it first (cmake --build {rel(build)} --target stockmixer_cli)")

    started = time.time()
    now = datetime.datetime.now(datetime.timezone.utc)
    load_start = os.getloadavg()
    model, flags, mhz = cpu_info()
    cache = cmake_cache(build)
    commit = git_state()
    built = datetime.datetime.fromtimestamp(cli.stat().st_mtime, datetime.timezone.utc)

    # --- measure (the order: bench, PyTorch, epochs, kernels) ---
    log(f"stockmixer bench: N = {', '.join(map(str, stocks))}, threads {THREADS}, {rounds} round(s), --iters {iters}")
    bench = run_bench(cli, stocks, rounds, iters)

    torch_ver, torch_missing = torch_version()
    compare, compare_error = None, None
    if torch_ver:
        log(f"compare_pytorch.py: N = {torch_stocks}, budget {budget} s")
        try:
            compare = run_compare(cli, torch_stocks, budget, libtorch_bin)
        except Failed as e:
            compare_error = str(e)

    train, train_same, train_shape, train_error = None, None, {}, None
    if data.is_dir():
        log(f"stockmixer train: {epochs} epoch(s) on {THREADS} threads")
        try:
            train, train_same, train_shape = run_train(cli, data, epochs)
        except Failed as e:
            train_error = str(e)

    kernel_context, kernel_rows, kernel_cmd, kernel_error = {}, [], None, None
    if kernels_bin.is_file():
        log("bench_kernels" + (" (quick filter)" if quick else f" (default set, {kernel_reps} repetition(s))"))
        try:
            kernel_context, kernel_rows, kernel_cmd = run_kernels(kernels_bin, quick, kernel_reps)
        except (Failed, json.JSONDecodeError) as e:
            kernel_error = str(e)
    else:
        kernel_error = f"{rel(kernels_bin)} not found (configure with STOCKMIXER_BUILD_BENCHMARKS=ON and build bench_kernels)"
    load_end = os.getloadavg()
    took = time.time() - started

    # --- write ---
    P = []  # the page, as blocks joined by blank lines
    P.append("# Performance")
    if quick:
        P.append("> **Quick run, not for citing.** One process per figure, N = 1026 only, a handful of "
                 "kernels at a tiny minimum time, one epoch: this page only shows that every section runs. "
                 "Regenerate it without `--quick` before quoting anything.")
    command = "/usr/bin/python3 benchmarks/performance_page.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    P.append("Where stockmixer stands on a CPU today: its own timings, PyTorch beside it, the NASDAQ epoch and "
             "every kernel, all measured in one run of `benchmarks/performance_page.py` on the machine below. "
             "Do not edit this page by hand: rerun the script (see the last section). "
             "Single thread unless a column says otherwise.")

    isa_line = isa_ran(bench, flags, cache)
    peak32, peak64 = peak_flops(kernel_context, "f32"), peak_flops(kernel_context, "f64")
    kernels_isa = kernel_context.get("stockmixer_isa")
    isa_flags = [f for f in ("avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512cd") if f in flags]
    compiler = f"{cache.get('CMAKE_CXX_COMPILER_ID', '?')} {cache.get('CMAKE_CXX_COMPILER_VERSION', '?')}"
    build_type = cache.get("CMAKE_BUILD_TYPE") or "(none)"
    flags_used = " ".join(x for x in (cache.get("CMAKE_CXX_FLAGS", ""),
                                      cache.get(f"CMAKE_CXX_FLAGS_{build_type.upper()}", "")) if x).strip()
    openmp = kernel_context.get("stockmixer_openmp") or ("yes" if cache.get("OpenMP_CXX_FLAGS") else "not found")
    env_notes = [f"{k}={os.environ[k]}" for k in ("OMP_WAIT_POLICY", "OMP_PROC_BIND", "STOCKMIXER_MAX_ISA", "OMP_NUM_THREADS")
                 if os.environ.get(k)]
    header = [
        ("date", now.strftime("%Y-%m-%d %H:%M UTC") + f" (the run took {took / 60:.1f} min)"),
        ("commit", f"`{commit}` (binaries built {built.strftime('%Y-%m-%d %H:%M UTC')})"),
        ("CPU", f"{model}, {os.cpu_count()} logical CPUs" + (f", /proc/cpuinfo reports {mhz:.0f} MHz" if mhz else "")),
        ("ISA flags", ", ".join(isa_flags) if isa_flags else "none of avx2, fma, avx512*"),
        ("fused kernels run", isa_line + " (as `stockmixer bench` reports it)"),
        ("core's peak", (f"{peak32 / 1e9:.1f} GFLOP/s float, {peak64 / 1e9:.1f} GFLOP/s double, measured by `bench_kernels` "
                         f"for {kernels_isa}") if peak32 and peak64 else "not measured (no `bench_kernels` run)"),
        ("compiler", f"{compiler}, `{flags_used}`" if flags_used else compiler),
        ("build", f"{build_type}, STOCKMIXER_NATIVE={cache.get('STOCKMIXER_NATIVE', '?')}, OpenMP: {openmp}"),
        ("OS", f"Linux {platform.release()}, Python {platform.python_version()}"),
        ("load average", f"{load_start[0]:.2f} / {load_start[1]:.2f} at the start, {load_end[0]:.2f} / {load_end[1]:.2f} "
                         "at the end (1 / 5 min)"),
        ("environment", ", ".join(env_notes) if env_notes else "no OMP_* or STOCKMIXER_* variables set"),
    ]
    P.append(md_table(["", "this run"], [[f"**{k}**", v] for k, v in header], "ll"))
    warnings = []
    if load_start[0] > 0.5:
        warnings.append(f"the 1-minute load average was {load_start[0]:.2f} when the run started: other processes "
                        "were using the cores.")
    slower = [f"the training step at N = {n}" for n in stocks
              if med(bench, n, 1, "train_step_ms") and med(bench, n, 2, "train_step_ms")
              and med(bench, n, 2, "train_step_ms") > med(bench, n, 1, "train_step_ms")]
    if train and train.get(1) and train.get(2) and statistics.median(train[2]) > statistics.median(train[1]):
        slower.append("the NASDAQ epoch")
    for r in kernel_rows:  # on idle cores the model's step and inference gain from a second thread
        one = find_kernel(kernel_rows, r["kernel"], r["shape"], 1)
        if r["threads"] == 2 and r["kernel"].startswith("model_") and one and r["us"] > one["us"]:
            slower.append(f"`{r['kernel']}/{r['shape']}`")
    if slower:
        warnings.append("on 2 threads " + ", ".join(slower) + " ran slower than on 1: the cores were not idle, so "
                        "this run's 2-thread figures do not show what two threads do (see \"How it is measured\").")
    bench_isas = {isa for e in bench.values() for isa in e.get("isa", []) if isa}
    if kernels_isa and bench_isas and bench_isas != {kernels_isa}:
        warnings.append(f"`stockmixer bench` ran {', '.join(sorted(bench_isas))} but `bench_kernels` measured the peak "
                        f"for {kernels_isa}: the shares of peak compare different instruction sets.")
    if warnings:
        P.append("> **Warning:** " + " ".join(w[0].upper() + w[1:] for w in warnings))

    # targets
    step1, inf1 = med(bench, 1026, 1, "train_step_ms"), med(bench, 1026, 1, "inference_ms")
    step2, inf2 = med(bench, 1026, 2, "train_step_ms"), med(bench, 1026, 2, "inference_ms")

    def verdict(v, target, unit):
        return "not measured" if v is None else f"{fmt_ms(v)} {unit}" + (" (met)" if v <= target else "")

    epoch_med = {k: statistics.median(v) for k, v in (train or {}).items() if v}
    rows = [
        ["NASDAQ training step", f"{TARGET_STEP_MS} ms", verdict(step1, TARGET_STEP_MS, "ms"), verdict(step2, TARGET_STEP_MS, "ms")],
        ["NASDAQ inference", f"{TARGET_INFERENCE_MS} ms", verdict(inf1, TARGET_INFERENCE_MS, "ms"), verdict(inf2, TARGET_INFERENCE_MS, "ms")],
        ["N = 20 000 training step", f"{TARGET_STEP_20K_MS:.0f} ms",
         verdict(med(bench, 20000, 1, "train_step_ms"), TARGET_STEP_20K_MS, "ms"),
         verdict(med(bench, 20000, 2, "train_step_ms"), TARGET_STEP_20K_MS, "ms")],
        ["N = 20 000 peak memory", f"{TARGET_PEAK_20K_MB:.0f} MB",
         verdict(med(bench, 20000, 1, "peak_mb"), TARGET_PEAK_20K_MB, "MB"),
         verdict(med(bench, 20000, 2, "peak_mb"), TARGET_PEAK_20K_MB, "MB")],
        ["100 NASDAQ epochs (100 × the median epoch)", f"{TARGET_100_EPOCHS_S:.0f} s",
         verdict(100 * epoch_med[1] if 1 in epoch_med else None, TARGET_100_EPOCHS_S, "s"),
         verdict(100 * epoch_med[2] if 2 in epoch_med else None, TARGET_100_EPOCHS_S, "s")],
    ]
    P.append("## At a glance: the time targets\n\nThe time targets were set for one thread; the medians "
             "below are this run's (sections that follow give the spread). The same work as a share of the "
             "core's FMA peak and as a ratio to PyTorch is in the sections below.\n\n"
             + md_table(["figure", "target", "1 thread", "2 threads"], rows, "lrrr"))

    # 2. stockmixer alone
    rows = []
    for n in stocks:
        for k in THREADS:
            e = bench.get((n, k))
            if not e:
                continue
            speedup = ""
            if k > 1 and bench.get((n, 1)):
                speedup = f"{med(bench, n, 1, 'train_step_ms') / med(bench, n, k, 'train_step_ms'):.2f}×"
            threads = str(k) if e.get("threads_reported") in (None, k) else f"{k} (ran {e['threads_reported']})"
            rows.append([f"{n:,}".replace(",", " "), threads, fmt_spread(e["train_step_ms"]), fmt_spread(e["inference_ms"]),
                         fmt_spread(e["loss_ms"]), speedup or "—", fmt_spread(e["peak_mb"], lambda v: f"{v:.0f}"),
                         e.get("batches", "?")])
    params = bench.get((1026, 1), {}).get("parameters")
    P.append("## stockmixer alone\n\n"
             f"`stockmixer bench --stocks N --threads K --iters {iters}` (T = 16, C = 5, M = 20; "
             f"{fmt_count(params) + ' parameters at N = 1026' if params else 'random data'}). "
             + (f"Each cell: the median over {rounds} processes of the bench's own median of {iters} calls, with "
                "the min–max of those processes. " if rounds > 1 else
                f"Each cell: the bench's own median of {iters} calls, in one process. ") + "Milliseconds; "
             "the speed-up is the training step's on 2 threads over 1; peak is the process's peak RSS in MB.\n\n"
             + md_table(["N", "threads", "training step, ms", "inference, ms", "loss, ms", "step speed-up", "peak, MB", "batches"],
                        rows, "rrrrrrrr"))

    # 3. PyTorch
    section = ["## Against PyTorch"]
    if torch_missing:
        section.append(f"Not measured: `{sys.executable}` cannot import PyTorch and NumPy ({torch_missing}). "
                       "Install Debian's `python3-torch` and `python3-numpy` (`cmake/install-deps.sh` does) and rerun.")
    elif compare_error:
        section.append(f"Not measured: `benchmarks/compare_pytorch.py` failed: {compare_error}")
    else:
        title, headers, crow = compare
        section.append(f"`benchmarks/compare_pytorch.py --cli {rel(cli)} --stocks {','.join(map(str, torch_stocks))} "
                       f"--threads 1 --budget {budget:g}`: Debian's PyTorch running the original model and `get_loss` "
                       "with `torch.optim.Adam`, and `stockmixer bench` on the same shapes, each measurement in a fresh "
                       "process; medians of up to 200 iterations after two warm-ups (fewer when one is slow: about "
                       f"{budget:g} s a figure). Its stockmixer figures are its own processes, so they differ a little "
                       "from the section above. The ratio is PyTorch's time over stockmixer's."
                       + (f" LibTorch is `{rel(libtorch_bin)}` (`-DSTOCKMIXER_LIBTORCH=ON`): the same network, `get_loss` "
                          "and `torch::optim::Adam` in LibTorch C++ on Debian's libtorch-dev, timed the same way, its "
                          "forward checked against `stockmixer predict` (relative 1e-5) before anything is timed; its "
                          "ratio is LibTorch's time over stockmixer's." if libtorch_bin else
                          " (No LibTorch column: configure with `-DSTOCKMIXER_LIBTORCH=ON` and build `libtorch_bench`.)"))
        section.append(f"*{title}*" if title else "")
        align = "".join("r" for _ in headers)
        section.append(md_table(headers, [r + [""] * (len(headers) - len(r)) for r in crow], align))
    P.append("\n\n".join(s for s in section if s))

    # 4. epochs
    section = ["## The NASDAQ epoch"]
    if not data.is_dir():
        section.append(f"Not measured: no data folder at `{rel(data)}` (pass `--data`).")
    elif train_error:
        section.append(f"Not measured: {train_error}")
    else:
        rows = []
        for k in THREADS:
            v = train.get(k, [])
            rows.append([str(k), " ".join(f"{s:.3f}" for s in v) or "n/a",
                         f"{statistics.median(v):.3f}" if v else "n/a",
                         f"{100 * statistics.median(v):.0f}" if v else "n/a"])
        steps = train_shape.get("steps")
        days = [train_shape.get("valid_days"), train_shape.get("test_days")]
        holds = (f"each epoch {steps} training steps (one shuffled date each), then "
                 if steps else "each epoch its training steps (one shuffled date each), then ")
        holds += (f"validation and test inference over their {days[0]} + {days[1]} days"
                  if all(days) else "validation and test inference") + " with their losses and the original metrics"
        section.append(f"`stockmixer train --data {rel(data)} --market NASDAQ --epochs {epochs} --threads K`: the "
                       f"original protocol, {holds}. Seconds an epoch as the trainer records them (`metrics.jsonl`; "
                       "loading the data is not included).\n\n"
                       + md_table(["threads", "each epoch, s", "median, s", "100 epochs at that rate, s"], rows, "rlrr"))
        section.append("Every epoch's metrics on 1 and 2 threads: "
                       + ("identical, bit for bit." if train_same else "**different** (they should be identical: a bug)."))
    P.append("\n\n".join(section))

    # work per step and the machine's limit
    peak = peak32
    ms1 = find_kernel(kernel_rows, "model_train_step", "N_1026", 1)
    mi1 = find_kernel(kernel_rows, "model_inference", "N_1026", 1)
    section = ["## Work per step and the machine's limit",
               "`bench_kernels`' `model_*` benchmarks count the multiply-adds of the matmul-like ops of one "
               "forward pass as PyTorch computes them (conv, the two TriU time mixers, the channel mixers, "
               "`channel_fc`, `time_fc`, `time_fc_`, `dense1`, `dense2`; the formula is beside `forward_macs` "
               "in `benchmarks/bench_kernels.cpp`), two FLOP a multiply-add: inference does each product once, "
               "a training step three times (forward, dx, dW). LayerNorm, the activations, the loss and Adam are "
               "left out (a few FLOP a value, memory-bound), so the rate is a lower bound. The fused stock head "
               "does less than this nominal work (dense2 and `time_fc_` folded into N·M, "
               "`docs/math/stock_head.md`).",
               "The limit is this core's own peak for the instruction set the fused kernels run, which "
               "`bench_kernels` measures before its benchmarks (`measure_peak` in `bench_kernels.cpp`): independent "
               "chains (16 for AVX-512, 12 otherwise, more than FMA latency times the FMA ports need) of 512-bit "
               "FMAs for avx512, 256-bit FMAs for avx2, 128-bit SSE2 multiply-then-add for baseline, in float and "
               "in double, the best of seven runs timed in the thread's CPU time (so that other processes' turns on "
               "a shared core do not count). `peak_share` divides the `model_*` rates by the float "
               "figure. It follows `STOCKMIXER_MAX_ISA`, so a capped run is measured against the capped set's "
               "peak. A wider vector need not give a higher peak: a core whose FMA units are 256 bits wide runs "
               "a 512-bit FMA as two halves."
               + (f" This run: {peak32 / 1e9:.1f} GFLOP/s in float and {peak64 / 1e9:.1f} GFLOP/s in double, "
                  f"for {kernels_isa}." if peak32 and peak64 else " This run has no peak (`bench_kernels` did not run).")]
    if peak and ms1 and ms1["flops"]:
        step_flop = ms1["flops"] * ms1["us"] * 1e-6
        inf_flop = mi1["flops"] * mi1["us"] * 1e-6 if mi1 and mi1["flops"] else None
        lines = [f"- nominal work at N = 1026: {step_flop / 1e6:.1f} MFLOP a training step"
                 + (f", {inf_flop / 1e6:.1f} MFLOP an inference" if inf_flop else "")
                 + f"; the peak `peak_share` divides by: {peak / 1e9:.1f} GFLOP/s (float, {kernels_isa});",
                 f"- at that peak the step's nominal work alone takes {step_flop / peak * 1e6:.0f} µs"
                 + (f" and inference's {inf_flop / peak * 1e6:.0f} µs" if inf_flop else "") + ";"]
        if step1:
            lines.append(f"- measured (`stockmixer bench` above, one thread): the step at {fmt_ms(step1)} ms runs at "
                         f"{step_flop / (step1 * 1e-3) / 1e9:.1f} GFLOP/s of nominal work, {fmt_pct(step_flop / (step1 * 1e-3) / peak)} "
                         "of the peak" + (f"; inference at {fmt_ms(inf1)} ms, {fmt_pct(inf_flop / (inf1 * 1e-3) / peak)}" if inf_flop and inf1 else "")
                         + ";")
        lines.append(f"- at {fmt_pct(TARGET_PEAK_SHARE)} of the peak (the target) the step would take "
                     f"{fmt_ms(step_flop / (TARGET_PEAK_SHARE * peak) * 1e3)} ms"
                     + (f" and inference {fmt_ms(inf_flop / (TARGET_PEAK_SHARE * peak) * 1e3)} ms" if inf_flop else "")
                     + ";")
        lines.append(f"- the {TARGET_STEP_MS} ms step target asks for {fmt_pct(step_flop / (TARGET_STEP_MS * 1e-3) / peak)} of the "
                     "peak for the nominal work alone, everything else (LayerNorms, GELU, the loss, Adam, the batch copy) "
                     "included in the same time"
                     + (f"; the {TARGET_INFERENCE_MS} ms inference target {fmt_pct(inf_flop / (TARGET_INFERENCE_MS * 1e-3) / peak)}."
                        if inf_flop else "."))
        section.append("From this run:\n\n" + "\n".join(lines))
    else:
        section.append("(This run has no `model_train_step/N_1026` figure from `bench_kernels`, so the numbers are left out.)")

    # what the fused blocks do, and the step split
    section.append("What bounds the two fused blocks (the VM has no hardware counters, so this is from experiments "
                   "on copies of the kernels, `docs/math/per_stock.md` and `docs/math/stock_head.md`):\n\n"
                   "- `per_stock` (conv, both Mixer2dTriU, `channel_fc`; stocks as SIMD lanes): every step is a loop "
                   "over rows of one register held in L1, mostly multiply-adds and multiplies on the FMA pipes. Beyond "
                   "the nominal multiply-adds it spends on GELU (erf's rational and, for training, exp: about a third "
                   "of the training forward) and on the sums it keeps in double for their cancellation (the "
                   "LayerNorms' statistics and backward means, `channel_fc`'s gradient). What is left there is fewer "
                   "operations, not faster ones.\n"
                   "- `stock_head` (LayerNorm over the stocks, dense1, Hardswish, dense2, `time_fc`, `time_fc_`): in "
                   "double, because the LayerNorm(N) backward makes every upstream bias gradient a sum with "
                   "cancellation (a float head pushed them past the tests' tolerances). Its three N·M·F products "
                   "(dense1; dW1 and dxn) are double FMA tiles; the rest is the normalisation, ∂y and the dense2 "
                   "pass, each a short pass over the stocks.")
    fused = [("per_stock_fwd", "NTC_", "per-stock forward (inference form)", peak32),
             ("per_stock_bwd", "NTC_", "per-stock backward (recomputes the forward)", peak32),
             ("stock_head_fwd", "FN_", "stock head forward (N·M·F products only)", peak64),
             ("stock_head_bwd", "FN_", "stock head backward (N·M·F products only)", peak64)]
    rows = []
    for kern, shape, label, block_peak in fused:
        r = find_kernel(kernel_rows, kern, shape, 1)
        if r:
            share = r["flops"] / block_peak if r["flops"] and block_peak else None
            rows.append([label, fmt_time_us(r["us"]), f"{r['flops'] / 1e9:.1f}" if r["flops"] else "—", fmt_pct(share)])
    if rows:
        section.append("This run, one thread, NASDAQ's shape (`bench_kernels`; the share is over the float peak for "
                       "`per_stock` and the double peak for `stock_head`, whose counters count its N·M·F "
                       "products only, so its share reads low by the passes that are not products):\n\n"
                       + md_table(["block", "time", "GFLOP/s", "share of peak"], rows, "lrrr"))
    # the step, split
    psb = find_kernel(kernel_rows, "per_stock_bwd", "NTC_", 1)
    shf = find_kernel(kernel_rows, "stock_head_fwd", "FN_", 1)
    shb = find_kernel(kernel_rows, "stock_head_bwd", "FN_", 1)
    loss1 = med(bench, 1026, 1, "loss_ms")
    if psb and shf and shb and step1 and loss1:
        parts = [("per-stock block (`per_stock_bwd`: the forward recomputed, then the backward)", psb["us"]),
                 ("stock head (`stock_head_fwd` + `stock_head_bwd`)", shf["us"] + shb["us"]),
                 ("loss, forward and backward (`stockmixer bench` loss)", loss1 * 1000)]
        total = sum(us for _, us in parts)
        rest = step1 * 1000 - total
        if rest > 0:
            rows = [[label, fmt_time_us(us), fmt_pct(us / (step1 * 1000))] for label, us in parts]
            rows.append(["the rest: Adam, the tape, gradient zeroing, the per-stock stash", fmt_time_us(rest),
                         fmt_pct(rest / (step1 * 1000))])
            rows.append(["**the training step** (`stockmixer bench`, median)", fmt_time_us(step1 * 1000), "100 %"])
            section.append("Where a NASDAQ training step goes, roughly (one thread; the blocks timed alone, so the "
                           "split is approximate: in a step the per-stock forward writes the activations its "
                           "backward reads, where `per_stock_bwd` recomputes them):\n\n"
                           + md_table(["part", "time", "share of the step"], rows, "lrr"))
        else:
            section.append(f"Where a NASDAQ training step goes: not split in this run. The per-stock block, the stock "
                           f"head and the loss timed alone add up to {fmt_time_us(total)}, more than the whole step's "
                           f"{fmt_time_us(step1 * 1000)}: the timings were too noisy to subtract.")
    P.append("\n\n".join(section))

    # threads
    section = ["## Threads", THREADS_TEXT]
    rows = []
    for kern, shape, label in (("per_stock_fwd", "NTC_", "per-stock forward"), ("per_stock_bwd", "NTC_", "per-stock backward"),
                               ("stock_head_fwd", "FN_", "stock head forward"), ("stock_head_bwd", "FN_", "stock head backward"),
                               ("model_train_step", "N_1026", "training step, N = 1026"),
                               ("model_inference", "N_1026", "inference, N = 1026"),
                               ("model_train_step", "N_20000", "training step, N = 20 000"),
                               ("model_inference", "N_20000", "inference, N = 20 000")):
        a, b = find_kernel(kernel_rows, kern, shape, 1), find_kernel(kernel_rows, kern, shape, 2)
        if a and b:
            rows.append([label, fmt_time_us(a["us"]), fmt_time_us(b["us"]), f"{a['us'] / b['us']:.2f}×"])
    if rows:
        section.append("This run's fused blocks and model on one and two threads (`bench_kernels`):\n\n"
                       + md_table(["", "1 thread", "2 threads", "speed-up"], rows, "lrrr"))
    P.append("\n\n".join(section))

    P.append("## Allocation\n\n" + ALLOCATION_TEXT)

    # kernel table
    section = ["## Every kernel"]
    if kernel_error:
        section.append(f"Not measured: {kernel_error}")
    else:
        how = ("`bench_kernels " + " ".join(shlex.quote(str(c)) for c in kernel_cmd[1:]) + "`")
        section.append(f"{how}: wall-clock time per call"
                       + (f", the median of {kernel_reps} repetitions" if kernel_reps > 1 else "")
                       + ", at NASDAQ's shapes unless the name says otherwise (names: `benchmarks/README.md`). "
                       "Rates are over that wall time: GFLOP/s from the FLOP formulas in `benchmarks/README.md`, GB/s "
                       "of the bytes the kernel must move, M stocks/s for the rank-loss sweep, and `peak_share` (the "
                       "model rows: nominal FLOP/s over the float FMA peak above). Everything in float except the "
                       "`_f64` Linears and, inside, the stock head."
                       + (f" Validation: {kernel_context.get('stockmixer_validation')}." if kernel_context.get("stockmixer_validation") else ""))

        def group(pred):
            return [r for r in kernel_rows if pred(r["kernel"])]

        def rate(v, div, digits=1):
            return f"{v / div:.{digits}f}" if v else "—"

        groups = [
            ("The fused blocks", group(lambda k: k.startswith(("per_stock", "stock_head"))),
             ["benchmark", "threads", "time", "GFLOP/s"], lambda r: [rate(r["flops"], 1e9)]),
            ("The model", group(lambda k: k.startswith("model_")),
             ["benchmark", "threads", "time", "GFLOP/s", "peak_share"],
             lambda r: [rate(r["flops"], 1e9), fmt_pct(r["peak_share"]) if r["peak_share"] else "—"]),
            ("The generic kernels", group(lambda k: not k.startswith(("per_stock", "stock_head", "model_", "rank_loss"))),
             ["benchmark", "threads", "time", "GFLOP/s", "GB/s"], lambda r: [rate(r["flops"], 1e9), rate(r["bytes"], 1e9)]),
            ("The rank loss", group(lambda k: k.startswith("rank_loss")),
             ["benchmark", "threads", "time", "GFLOP/s", "M stocks/s"],
             lambda r: [rate(r["flops"], 1e9), rate(r["stocks"], 1e6)]),
        ]
        for title, rows_, headers, extra in groups:
            if not rows_:
                continue
            table = [[f"`{r['kernel']}/{r['shape']}`", str(r["threads"]), fmt_time_us(r["us"])] + extra(r) for r in rows_]
            section.append(f"### {title}\n\n" + md_table(headers, table, "lr" + "r" * (len(headers) - 2)))
        if any(r["kernel"].startswith("rank_loss_") and not r["kernel"].startswith("rank_loss_sorted") for r in kernel_rows):
            section.append("The O(N²) `rank_loss_*` rows are the form PyTorch computes (run up to N = 20 000); the "
                           "`rank_loss_sorted_*` rows are the exact O(N log N) form training runs.")
        section.append("A `_bwd` row accumulates into its gradients across iterations, as the kernels' contract "
                       "says (`+=`), never zeroing inside the timed loop.")
    P.append("\n\n".join(section))

    P.append("## Instruction sets\n\n" + ISA_TEXT + f"\n\nThis run: {isa_line}, as `stockmixer bench` reports it "
             "(its JSON's \"isa\"); `bench_kernels` measured the peak for "
             f"{kernels_isa or 'no instruction set (it did not run)'}.")
    P.append("## The instruction-count guard\n\n" + GUARD_TEXT + "\n\n" + guard_baseline())
    P.append(MEASURED_HOW)
    P.append("## Regenerating this page\n\n"
             "From the repository root, with a Release build of the tool and the benchmarks, on an otherwise idle "
             "machine (several minutes):\n\n"
             "```sh\n"
             "cmake -S . -B build -DCMAKE_BUILD_TYPE=Release && cmake --build build -j2 --target stockmixer_cli bench_kernels\n"
             "/usr/bin/python3 benchmarks/performance_page.py --build build --data ../shared/data/NASDAQ --out docs/performance.md\n"
             "```\n\n"
             "`--rounds N` sets the `stockmixer bench` processes per shape (5), `--kernel-repetitions` the "
             "`bench_kernels` repetitions (3); `--quick` checks that every section runs in about a minute and marks "
             "the page as not for citing. Other ways to look: `benchmarks/compare_pytorch.py` alone for more shapes, "
             "`bench_kernels --benchmark_filter=...` for one kernel, `STOCKMIXER_MAX_ISA=avx2` for another version.\n\n"
             f"This page was written by: `{command}`")

    text = "\n\n".join(prose(b) for b in P).rstrip() + "\n"
    out = args.out if args.out.is_absolute() else Path.cwd() / args.out
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(out)
    log(f"wrote {out} in {took:.0f} s")


if __name__ == "__main__":
    try:
        main()
    except Failed as e:
        sys.exit(f"performance_page: {e}")
