"""What the fixture scripts share: the command line (write, or --check) and the check that the
committed fixtures are what the script writes now."""
import argparse
import json
import tempfile
from pathlib import Path

import numpy as np


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


def check_regenerated(write_all, committed, tol, json_tol=None):
    """Runs write_all into a temp dir and compares with `committed`: the same files; arrays of the
    same shape and dtype within `tol` (max |fresh - committed| / max |committed|); JSON files equal
    as text, or, with json_tol, numbers within json_tol relative. Returns a process exit code."""
    committed = Path(committed)
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp) / committed.name
        write_all(fresh)
        names = sorted(p.relative_to(fresh) for p in fresh.rglob("*") if p.is_file())
        old = sorted(p.relative_to(committed) for p in committed.rglob("*") if p.is_file())
        if names != old:
            print("fixture files differ:", sorted(set(names) ^ set(old))[:10])
            return 1
        worst = [0.0]
        for rel in names:
            if rel.suffix == ".json":
                a, b = (fresh / rel).read_text(), (committed / rel).read_text()
                same = a == b if json_tol is None else _close_json(json.loads(a), json.loads(b), str(rel), json_tol, worst)
                if not same:
                    print(f"{rel}: differs")
                    return 1
                continue
            a, b = np.load(fresh / rel), np.load(committed / rel)
            if a.shape != b.shape or a.dtype != b.dtype:
                print(f"{rel}: shape/dtype {a.shape} {a.dtype} vs {b.shape} {b.dtype}")
                return 1
            if a.size == 0:
                continue
            finite = np.isfinite(b)
            if not np.array_equal(np.isfinite(a), finite) or not np.array_equal(a[~finite], b[~finite], equal_nan=True):
                print(f"{rel}: non-finite values differ")
                return 1
            if finite.any():
                scale = max(float(np.abs(b[finite]).max()), 1e-30)
                err = float(np.abs(a[finite].astype(np.float64) - b[finite]).max()) / scale
                worst[0] = max(worst[0], err)
                if err > tol:
                    print(f"{rel}: regenerated values differ by {err:.3g} (relative)")
                    return 1
        print(f"{len(names)} fixture files reproduce (largest relative difference {worst[0]:.3g})")
        return 0


def fixture_main(doc, default_out, write_all, tol, json_tol=None):
    """The scripts' command line: write the fixtures to --out, or --check them."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=default_out, help="fixture folder (default: %(default)s)")
    ap.add_argument("--check", action="store_true", help="compare a fresh run to the fixtures in --out")
    args = ap.parse_args()
    if args.check:
        return check_regenerated(write_all, args.out, tol, json_tol)
    write_all(args.out)
    print(f"wrote {sum(1 for _ in args.out.rglob('*.npy'))} arrays under {args.out}")
    return 0
