"""What the fixture scripts share: the command line (write, or --check), inputs that are the same bits
on every CPU, and the check that the committed fixtures are what the script writes now.

Why inputs come from here and not from torch.rand/randn: PyTorch picks its kernels by instruction set
(ATEN_CPU_CAPABILITY=default|avx2|avx512, chosen from the CPU), and its random fills round differently
in each (torch.randn on a CPU without AVX2 gives other floats than with it). Here a PCG64 stream
(numpy's Generator, integers only) becomes floats by IEEE additions and multiplications in float64,
each correctly rounded on any x86-64, then one rounding to float32: the same bits everywhere.

What the check proves, per kind of file (the suffix says which):
  - inputs (no .f32/.f64 suffix): equal within `tol` (the scripts give 0: the same bits);
  - PyTorch's float64 results (.f64.npy): within `f64_tol` of the committed ones;
  - PyTorch's float32 results (.f32.npy, beside the .f64.npy of the same result): float32 is not
    reproducible across instruction sets (other FMA contraction, other summation orders, oneDNN's
    blocking, and ten Adam steps amplify it), so a committed float32 result must lie no farther from
    the float64 answer regenerated here than `f32_factor` times the largest distance this CPU's own
    float32 run shows among the float32 results of the same folder (one computation: its gradients,
    its final weights), plus `f32_floor`:
        err(committed f32, fresh f64) <= f32_factor * max over the folder of err(fresh f32, fresh f64)
                                         + f32_floor.
    The folder's largest, not the file's own: one result's float32 error can be small by chance on
    one CPU and 100 times larger on another (a bias gradient of the tiny model: 1.5e-7 vs 1.4e-5),
    while the largest over a computation's results reflects its conditioning. It proves the file is
    PyTorch's float32 computation of the same thing, to float32's accuracy on that computation; a
    value moved by more than that fails.
Errors are max |a - b| / max |b| per array, as in the C++ tests."""
import argparse
import json
import math
import os
import re
import sys
import tempfile
from pathlib import Path

import numpy as np


# ---- inputs: the same bits on every CPU ------------------------------------------------------------

def generator(seed):
    """A PCG64 stream; only its integers are used (see `uniform`)."""
    return np.random.Generator(np.random.PCG64(seed))


def uniform(gen, shape, lo, hi, dtype=np.float32):
    """U[lo, hi) of `shape`: 53-bit integers times 2^-53 (exact), times (hi - lo), plus lo, in float64
    (two correctly rounded operations), then rounded once to `dtype`."""
    u = (gen.integers(0, 1 << 53, size=shape, dtype=np.int64).astype(np.float64)) * (2.0 ** -53)
    return np.asarray(u * (float(hi) - float(lo)) + float(lo)).astype(dtype)


def normal_like(gen, shape, std, mean=0.0, dtype=np.float32):
    """mean + std * (U1 + U2 + U3 + U4 - 2) * sqrt(3): mean 0 and variance 1 before scaling (each U
    has variance 1/12), bell-shaped on [-2 sqrt(3), 2 sqrt(3)]; additions and multiplications only, so
    no libm function (whose vector variants differ between CPUs) is involved."""
    s = uniform(gen, shape, 0.0, 1.0, np.float64)
    for _ in range(3):
        s = s + uniform(gen, shape, 0.0, 1.0, np.float64)
    return np.asarray(float(mean) + float(std) * ((s - 2.0) * math.sqrt(3.0))).astype(dtype)


# ---- the check -------------------------------------------------------------------------------------

def _close_json(a, b, where, tol, worst):
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close_json(a[k], b[k], f"{where}.{k}", tol, worst) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close_json(x, y, f"{where}[{k}]", tol, worst)
                                        for k, (x, y) in enumerate(zip(a, b)))
    if isinstance(a, float) and isinstance(b, float):
        err = abs(a - b) / max(abs(a), abs(b), 1e-300)
        worst[0] = max(worst[0], err)
        if err > tol:
            print(f"{where}: {a!r} vs {b!r}")
        return err <= tol
    if a != b or type(a) is not type(b):
        print(f"{where}: {a!r} vs {b!r}")
        return False
    return True


def _rel_err(a, b):
    """max |a - b| / max |b| over the finite values of b (a and b have the same non-finite places)."""
    finite = np.isfinite(b)
    if not finite.any():
        return 0.0
    scale = max(float(np.abs(b[finite]).max()), 1e-30)
    return float(np.abs(a[finite].astype(np.float64) - b[finite].astype(np.float64)).max()) / scale


def _same_layout(a, b, rel):
    """Shape, dtype and the non-finite values agree; prints why not."""
    if a.shape != b.shape or a.dtype != b.dtype:
        print(f"{rel}: shape/dtype {a.shape} {a.dtype} regenerated vs {b.shape} {b.dtype} committed")
        return False
    finite = np.isfinite(b)
    if not np.array_equal(np.isfinite(a), finite) or not np.array_equal(a[~finite], b[~finite], equal_nan=True):
        print(f"{rel}: non-finite values differ")
        return False
    return True


def check_regenerated(write_all, committed, tol, json_tol=None, f64_tol=None, f32_factor=None, f32_floor=None):
    """Runs write_all into a temp dir and compares with `committed`: the same files; arrays of the
    same shape and dtype; JSON files equal as text, or, with json_tol, numbers within json_tol
    relative. Arrays within `tol`, except, when f64_tol is given, .f64.npy files within f64_tol and
    .f32.npy files by the float32 rule of the module's docstring (f32_factor, f32_floor). Compares
    every file, prints each failure and the largest difference of each kind; returns an exit code."""
    committed = Path(committed)
    paired = f64_tol is not None
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp) / committed.name
        write_all(fresh)
        names = sorted(p.relative_to(fresh) for p in fresh.rglob("*") if p.is_file())
        old = sorted(p.relative_to(committed) for p in committed.rglob("*") if p.is_file())
        if names != old:
            print("fixture files differ (regenerated ^ committed):", sorted(set(names) ^ set(old))[:10])
            return 1
        worst = {}  # kind -> (measure, file)
        failures = 0

        def note(kind, value, rel, bound, what):
            nonlocal failures
            if value > worst.get(kind, (-1.0, ""))[0]:
                worst[kind] = (value, str(rel))
            if value > bound and what:
                failures += 1
                print(f"{rel}: {what}")

        # This CPU's float32 error, the largest per folder (see the module's docstring).
        own = {}  # rel -> (err(fresh f32, fresh f64), the fresh f64 values)
        folder_own = {}
        if paired:
            for rel in names:
                if rel.name.endswith(".f32.npy"):
                    twin = rel.with_name(rel.name[:-len(".f32.npy")] + ".f64.npy")
                    if (fresh / twin).exists():
                        exact = np.load(fresh / twin)
                        own[rel] = (_rel_err(np.load(fresh / rel), exact), exact)
                        folder_own[rel.parent] = max(folder_own.get(rel.parent, 0.0), own[rel][0])

        for rel in names:
            if rel.suffix == ".json":
                a, b = (fresh / rel).read_text(), (committed / rel).read_text()
                w = [0.0]
                same = a == b if json_tol is None else _close_json(json.loads(a), json.loads(b), str(rel), json_tol, w)
                if json_tol is not None:
                    note("JSON numbers", w[0], rel, json_tol, "")
                if not same:
                    print(f"{rel}: differs")
                    failures += 1
                continue
            a, b = np.load(fresh / rel), np.load(committed / rel)
            if not _same_layout(a, b, rel):
                failures += 1
                continue
            if a.size == 0:
                continue
            name = rel.name
            if paired and name.endswith(".f64.npy"):
                err = _rel_err(a, b)
                note("float64 results", err, rel, f64_tol,
                     f"regenerated float64 values differ by {err:.3g} (relative), tolerance {f64_tol:g}")
            elif paired and name.endswith(".f32.npy"):
                if rel not in own:
                    print(f"{rel}: no .f64.npy beside it to check a float32 result against")
                    failures += 1
                    continue
                theirs = _rel_err(b, own[rel][1])
                cpu = folder_own[rel.parent]
                bound = f32_factor * cpu + f32_floor
                note("float32 results, committed vs fresh float64", theirs, rel, bound,
                     f"committed float32 values lie {theirs:.3g} (relative) from the regenerated float64 ones; this "
                     f"CPU's float32 results in {rel.parent}/ lie at most {cpu:.3g} from theirs, so at most "
                     f"{f32_factor:g} x {cpu:.3g} + {f32_floor:.3g} = {bound:.3g}")
                note("float32 results, committed vs fresh float32 (reported only)", _rel_err(a, b), rel,
                     math.inf, "")
            else:
                err = _rel_err(a, b)
                note("inputs" if paired else "arrays", err, rel, tol,
                     f"regenerated values differ by {err:.3g} (relative), tolerance {tol:g}")
        for kind, (value, rel) in sorted(worst.items()):
            print(f"  {kind}: largest relative difference {value:.3g} ({rel})")
        if failures:
            print(f"{failures} of {len(names)} fixture files do not reproduce")
            return 1
        print(f"{len(names)} fixture files reproduce")
        return 0


def torch_cpu_capability():
    """The instruction set PyTorch runs its kernels for, as torch.__config__.show() names it ('NO AVX',
    'AVX2', 'AVX512'; ATEN_CPU_CAPABILITY=default, avx2, avx512 choose them), or None without torch."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    m = re.search(r"CPU capability usage: ([^\n]+)", torch.__config__.show())
    return m.group(1).strip() if m else "unknown"


def fixture_main(doc, default_out, write_all, tol, json_tol=None, f64_tol=None, f32_factor=None, f32_floor=None):
    """The scripts' command line: write the fixtures to --out, or --check them (see check_regenerated)."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=default_out, help="fixture folder (default: %(default)s)")
    ap.add_argument("--check", action="store_true", help="compare a fresh run to the fixtures in --out")
    ap.add_argument("--expect-cpu-capability", metavar="NAME",
                    help="fail unless PyTorch runs its kernels for this instruction set, as "
                         "torch.__config__.show() names it: 'NO AVX', 'AVX2' or 'AVX512'")
    args = ap.parse_args()
    capability = torch_cpu_capability()
    if capability is not None:
        print(f"PyTorch's CPU capability: {capability}")
    if args.expect_cpu_capability is not None and capability != args.expect_cpu_capability:
        print(f"--expect-cpu-capability '{args.expect_cpu_capability}': PyTorch runs its kernels for "
              f"'{capability}' (ATEN_CPU_CAPABILITY is {os.environ.get('ATEN_CPU_CAPABILITY')!r})")
        return 1
    if args.check:
        return check_regenerated(write_all, args.out, tol, json_tol, f64_tol, f32_factor, f32_floor)
    write_all(args.out)
    print(f"wrote {sum(1 for _ in args.out.rglob('*.npy'))} arrays under {args.out}")
    return 0
