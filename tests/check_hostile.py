#!/usr/bin/python3
"""The command-line tool against hostile options and files: every case must end with the expected
exit code and a message holding the expected words, must not crash or hang, and must leave the
named files as they were (or never create them).

  - every integer and real option parsed strictly and range-checked, before any output is touched
    (--epochs 4294967296, --threads 100000, 1e9, 12abc, nan, ...); sizes too large for memory refused,
    and a std::bad_alloc (under an address-space limit) reported naming the command and what it was
    allocating;
  - a bad split (--steps 40 on 100 days) refused before the run folder exists;
  - --config: duplicate keys, nesting deeper than io::kMaxJsonDepth, a FIFO, unknown keys, wrong types;
  - --weights or --input a FIFO or a folder; NaN weights; weights that make predictions or the loss and
    gradients overflow (nothing written); --out a FIFO (refused, left a FIFO); a symlink planted at
    <out>.tmp is not followed;
  - write errors: under a file-size limit (RLIMIT_FSIZE, SIGXFSZ ignored by the tool) an output fails
    with exit 1 naming the file and the old file stays whole; a report cut short on stdout is exit 1;
  - `dataset --overwrite` killed with SIGKILL at random moments leaves the old dataset or the new one,
    byte for byte, never a mix.

    /usr/bin/python3 tests/check_hostile.py build/examples/stockmixer [--kills 12]
"""
import argparse
import json
import os
import random
import resource
import signal
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

FAILURES = []
SMALL = ["--stocks", "40", "--days", "200", "--threads", "1"]  # a synthetic market that trains in 0.1 s


def check(ok, what):
    print(("ok    " if ok else "FAIL  ") + what)
    if not ok:
        FAILURES.append(what)


def snapshot(path):
    """What a path is now: absent, a link (and its target), a FIFO, a folder (its entries' snapshots) or a
    regular file (its bytes)."""
    p = Path(path)
    if not os.path.lexists(p):
        return ("absent",)
    if p.is_symlink():
        return ("link", os.readlink(p))
    if p.is_fifo():
        return ("fifo",)
    if p.is_dir():
        return ("dir", tuple((c.name, snapshot(c)) for c in sorted(p.iterdir())))
    return ("file", p.read_bytes())


def case(cli, args, rc, words, keep=(), absent=(), limits=None, stdout=None, timeout=60, what=None):
    """Runs `cli args`; passes when the exit code is rc, stderr holds every word (case-insensitive), every
    path in keep is as before and no path in absent exists afterwards."""
    before = {str(p): snapshot(p) for p in keep}

    def child():
        for res, value in (limits or {}).items():
            resource.setrlimit(res, (value, value))

    label = what or " ".join(str(a) for a in args)
    try:
        p = subprocess.run([cli, *[str(a) for a in args]], stdout=stdout if stdout is not None else subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=timeout, preexec_fn=child if limits else None)
    except subprocess.TimeoutExpired:
        check(False, f"{label}: still running after {timeout} s (hangs)")
        return None
    err = p.stderr.strip().splitlines()
    message = err[-1] if err else ""
    problems = []
    if p.returncode != rc:
        problems.append(f"exit {p.returncode} (expected {rc})")
    missing = [w for w in words if w.lower() not in p.stderr.lower()]
    if missing:
        problems.append(f"message lacks {missing}")
    for path, snap in before.items():
        if snapshot(path) != snap:
            problems.append(f"{path} changed")
    for path in absent:
        if os.path.lexists(path):
            problems.append(f"{path} was created")
    check(not problems, f"{label} -> exit {p.returncode}: {message[:150]}" +
          ("" if not problems else "  [" + "; ".join(problems) + "]"))
    return p


# ---- files -----------------------------------------------------------------------------------------

def read_safetensors(path):
    data = Path(path).read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8:8 + n]), data, 8 + n


def scaled_weights(src, dst, scale=None, nan=False, value=np.nan):
    """src's weights with every F32 value multiplied by scale, or (nan) with the first value made `value`."""
    header, data, start = read_safetensors(src)
    out = bytearray(data)
    for name, info in header.items():
        if name == "__metadata__" or info["dtype"] != "F32":
            continue
        a, b = info["data_offsets"]
        values = np.frombuffer(data[start + a:start + b], dtype="<f4").copy()
        if nan:
            values[0] = value
            out[start + a:start + b] = values.tobytes()
            break
        values *= np.float32(scale)
        out[start + a:start + b] = values.tobytes()
    Path(dst).write_bytes(bytes(out))


def shape_of(weights):
    """(N, T, C) of the weights' model, from the tensors' PyTorch names and shapes."""
    header, _, _ = read_safetensors(weights)
    n = header["stock_mixer.dense1.weight"]["shape"][1]   # Linear(N, M): weight [M, N]
    t, c = header["mixer.mix_layer.LN_1.weight"]["shape"]  # LayerNorm([T, C])
    return n, t, c


# ---- the cases ---------------------------------------------------------------------------------------

INTEGER_OPTIONS = {  # option: (a value past its upper bound, its lower bound - 1)
    "train": {"epochs": "4294967296", "lookback": "5000", "market-width": "1000001", "seed": "9223372036854775808",
              "seeds": "10001", "valid-index": "10000001", "test-index": "10000001", "steps": "10000001",
              "stocks": "100000001", "days": "10000001", "features": "4097", "data-seed": "9223372036854775808",
              "threads": "100000"},
    "dataset": {"steps": "10000001", "stocks": "100000001", "days": "10000001", "features": "4097",
                "data-seed": "9223372036854775808"},
    "bench": {"stocks": "100000001", "lookback": "5000", "features": "4097", "market": "1000001", "threads": "100000",
              "iters": "1000001"},
}
REAL_OPTIONS = {  # option: a value outside its range
    "train": {"lr": "0", "alpha": "-0.1", "weight-decay": "-1", "dropout": "1", "signal": "-1", "missing": "0.6"},
    "dataset": {"signal": "-1", "missing": "0.6"},
    "gradients": {"alpha": "-1"},
}


def options_cases(cli, tmp):
    out = tmp / "never"
    for cmd, options in INTEGER_OPTIONS.items():
        base = [cmd] + (["--out", out] if cmd in ("train", "dataset") else [])
        for name, too_big in options.items():
            for value in (too_big, "-1" if name in ("seed", "data-seed") else "0", "-5", "1e9", "12abc", "1.5", " 7",
                          "0x10", ""):
                case(cli, [*base, f"--{name}", value], 1, [f"--{name}", "whole number", repr(value)[1:-1]],
                     absent=[out])
    for cmd, options in REAL_OPTIONS.items():
        base = [cmd] + (["--out", out] if cmd in ("train", "dataset") else [])
        if cmd == "gradients":
            w = tmp / "w.safetensors"
            base += ["--weights", w, "--input", tmp / "x.npy", "--gt", tmp / "gt.npy", "--base", tmp / "base.npy",
                     "--mask", tmp / "mask.npy", "--out", out]
        for name, outside in options.items():
            for value in (outside, "nan", "inf", "-inf", "1e999", "0x1p-3", "1x", "0.1 "):
                case(cli, [*base, f"--{name}", value], 1, [f"--{name}", "number in"], absent=[out])
    # Values that parse and are in range, but that the run cannot use: refused before --out exists.
    case(cli, ["train", *SMALL, "--days", "100", "--steps", "40", "--epochs", "1", "--out", out], 1,
         ["--steps", "100 days"], absent=[out], what="train --days 100 --steps 40 (a window past the last day)")
    case(cli, ["train", *SMALL, "--lookback", "15", "--epochs", "1", "--out", out], 1, ["lookback", "even"],
         absent=[out])
    case(cli, ["train", *SMALL, "--valid-index", "150", "--test-index", "120", "--epochs", "1", "--out", out], 1,
         ["valid_index < test_index"], absent=[out])
    case(cli, ["dataset", "--days", "50", "--steps", "50", "--out", out], 1, ["--steps", "--days"], absent=[out])
    case(cli, ["train", *SMALL, "--seed", "9223372036854775807", "--seeds", "2", "--out", out], 1, ["--seeds"],
         absent=[out])
    case(cli, ["train", *SMALL, "--resume", "--overwrite", "--out", out], 1, ["--resume", "--overwrite"], absent=[out])
    # Sizes: more than the machine's memory is refused from the sizes; under an address-space limit the
    # std::bad_alloc that ends the allocation is reported naming the command and what was being allocated.
    case(cli, ["bench", "--stocks", "100000000", "--market", "1000000", "--iters", "1"], 1,
         ["stockmixer bench", "needs at least", "of memory"])
    case(cli, ["train", "--stocks", "100000000", "--days", "10000000", "--out", out], 1,
         ["synthetic market", "needs at least"], absent=[out])
    # (A sanitizer's runtime reserves terabytes of address space at start: there the limit cannot be set.)
    if any(tag in Path(cli).read_bytes() for tag in (b"__asan_init", b"__tsan_init", b"__msan_init")):
        print("skip  bench under an address-space limit: the tool is built with a sanitizer")
    else:
        case(cli, ["bench", "--stocks", "10000000", "--iters", "1"], 1,
             ["stockmixer bench: out of memory while allocating", "StockMixer(N = 10000000"],
             limits={resource.RLIMIT_AS: 2 << 30}, what="bench --stocks 10000000 under a 2 GiB address-space limit")


def config_cases(cli, tmp):
    out = tmp / "never"

    def config(name, text):
        path = tmp / name
        path.write_text(text)
        return path

    base = ["train", *SMALL, "--out", out, "--config"]  # what the files set is not given here
    case(cli, [*base, config("dup.json", '{"epochs": 1, "lr": 0.01, "epochs": 2}')], 1,
         ["dup.json", "'epochs'", "twice"], absent=[out])
    case(cli, [*base, config("deep.json", '{"epochs": ' + "[" * 100000 + "]" * 100000 + "}")], 1,
         ["deep.json", "nested more than 64"], absent=[out])
    case(cli, [*base, config("deep_bad.json", "[" * 200000)], 1, ["deep_bad.json", "nested"], absent=[out])
    case(cli, [*base, config("unknown.json", '{"epoch": 3}')], 1, ["unknown.json", "unknown option 'epoch'"],
         absent=[out])
    for text, words in (('{"epochs": "abc"}', ["--epochs", "whole number"]),
                        ('{"epochs": [1]}', ["'epochs'", "whole number"]),
                        ('{"epochs": 2.5}', ["--epochs (from", "whole number"]),
                        ('{"epochs": true}', ["'epochs'", "whole number"]),
                        ('{"lr": null}', ["'lr'", "number in"]),
                        ('{"lr": "fast"}', ["--lr (from", "number in"]),
                        ('{"seeds": 0}', ["--seeds (from", "whole number"]),
                        ('{"out": 5}', ["'out'", "string"]),
                        ('{"overwrite": 1}', ["'overwrite'", "true or false"]),
                        ('{"config": "x.json"}', ["'config'"]),
                        ('[1, 2]', ["JSON object"]),
                        ('{"epochs": 1', ["not valid JSON"])):
        case(cli, [*base, config("types.json", text)], 1, ["types.json", *words], absent=[out],
             what=f"train --config {text}")
    fifo = tmp / "config.fifo"
    os.mkfifo(fifo)
    case(cli, [*base, fifo], 1, [str(fifo), "FIFO"], keep=[fifo], absent=[out], timeout=20)
    case(cli, [*base, tmp], 1, [str(tmp), "directory"], absent=[out])
    case(cli, [*base, tmp / "missing.json"], 1, ["missing.json", "no such file"], absent=[out])


def panel_cases(cli, tmp):
    """--panel files that are not a panel: refused naming the file (and line, column), nothing written."""
    d = tmp / "panels"
    d.mkdir()
    out = d / "never"
    files = {
        "dup.csv": "date,ticker,a,close\n2020-01-02,AAA,1,2\n2020-01-02,AAA,1,3\n",
        "cell.csv": "date,ticker,a,close\n2020-01-02,AAA,1,x2\n",
        "date.csv": "date,ticker,a,close\n2020-02-30,AAA,1,2\n",
        "nocol.csv": "date,ticker\n2020-01-02,AAA\n",
        "empty.csv": "",
    }
    for name, text in files.items():
        (d / name).write_text(text)
    for cmd in (["train", "--epochs", "1"], ["dataset"]):
        case(cli, [*cmd, "--panel", d / "dup.csv", "--out", out], 1, ["dup.csv", "line 3", "again", "line 2"],
             absent=[out])
        case(cli, [*cmd, "--panel", d / "cell.csv", "--out", out], 1, ["cell.csv", "line 2, column 4", "'x2'"],
             absent=[out])
        case(cli, [*cmd, "--panel", d / "date.csv", "--out", out], 1, ["date.csv", "line 2, column 1", "2020-02-30"],
             absent=[out])
        case(cli, [*cmd, "--panel", d / "nocol.csv", "--out", out], 1, ["nocol.csv", "no feature column"],
             absent=[out])
        case(cli, [*cmd, "--panel", d / "empty.csv", "--out", out], 1, ["empty.csv", "empty"], absent=[out])
        case(cli, [*cmd, "--panel", d / "missing.csv", "--out", out], 1, ["missing.csv", "no such file"],
             absent=[out])
        case(cli, [*cmd, "--panel", d, "--out", out], 1, [str(d), "directory"], absent=[out])
    fifo = d / "p.fifo"
    os.mkfifo(fifo)
    case(cli, ["train", "--panel", fifo, "--out", out], 1, [str(fifo), "FIFO"], keep=[fifo], absent=[out], timeout=20)


def file_cases(cli, tmp, weights):
    n, t, c = shape_of(weights)
    rng = np.random.default_rng(5)
    x = tmp / "x.npy"
    np.save(x, rng.normal(0.5, 0.1, (n, t, c)).astype(np.float32))
    gt, base, mask = tmp / "gt.npy", tmp / "base.npy", tmp / "mask.npy"
    np.save(gt, rng.normal(0, 0.02, (n, 1)).astype(np.float32))
    np.save(base, rng.uniform(0.9, 1.1, (n, 1)).astype(np.float32))
    np.save(mask, np.ones((n, 1), np.float32))
    p = tmp / "p.npy"
    old = tmp / "old.npy"
    np.save(old, np.zeros((3,), np.float32))
    grad_args = ["--input", x, "--gt", gt, "--base", base, "--mask", mask]

    fifo = tmp / "w.fifo"
    os.mkfifo(fifo)
    case(cli, ["predict", "--weights", fifo, "--input", x, "--out", p], 1, [str(fifo), "FIFO"], keep=[fifo],
         absent=[p], timeout=20)
    case(cli, ["predict", "--weights", weights, "--input", fifo, "--out", p], 1, [str(fifo), "FIFO"], keep=[fifo],
         absent=[p], timeout=20)
    case(cli, ["predict", "--weights", weights, "--input", tmp, "--out", p], 1, [str(tmp), "directory"], absent=[p])
    run = tmp / "never_run"
    case(cli, ["train", *SMALL, "--epochs", "1", "--order", fifo, "--out", run], 1, [str(fifo), "FIFO", "--order"],
         keep=[fifo], absent=[run], timeout=20)
    case(cli, ["train", *SMALL, "--epochs", "1", "--init-weights", fifo, "--out", run], 1, [str(fifo), "FIFO"],
         keep=[fifo], absent=[run], timeout=20)
    case(cli, ["predict", "--weights", tmp, "--input", x, "--out", p], 1, [str(tmp), "directory"], absent=[p])

    nan_w = tmp / "nan.safetensors"
    scaled_weights(weights, nan_w, nan=True)
    case(cli, ["predict", "--weights", nan_w, "--input", x, "--out", p], 1, ["nan.safetensors", "NaN", "finite"],
         absent=[p])
    case(cli, ["gradients", "--weights", nan_w, *grad_args, "--out", p], 1, ["nan.safetensors", "NaN", "finite"],
         absent=[p])
    inf_w = tmp / "inf.safetensors"
    scaled_weights(weights, inf_w, nan=True, value=-np.inf)
    case(cli, ["predict", "--weights", inf_w, "--input", x, "--out", p], 1, ["inf.safetensors", "Inf", "finite"],
         absent=[p])

    # Finite weights 1e12 times too large: finite inputs give predictions (and losses, gradients) that
    # overflow float32. Refused, naming how many values and which tensors; nothing written.
    big = tmp / "big.safetensors"
    scaled_weights(weights, big, scale=1e12)
    case(cli, ["predict", "--weights", big, "--input", x, "--out", p], 1, [f"of the {n} predictions are not finite"],
         absent=[p], what="predict with weights x 1e12 (finite weights, predictions overflow)")
    g = tmp / "g.safetensors"
    case(cli, ["gradients", "--weights", big, *grad_args, "--out", g], 1,
         ["tensors hold NaN or Inf", "prediction:", "loss:", "more", str(g)], absent=[g],
         what="gradients with weights x 1e12 (the loss and gradients overflow)")
    hot = tmp / "hot.npy"
    np.save(hot, np.full((n, 1), 1e30, np.float32))
    case(cli, ["gradients", "--weights", weights, "--input", x, "--gt", hot, "--base", base, "--mask", mask,
               "--out", g], 1, ["tensors hold NaN or Inf", "loss:", "reg_loss"], absent=[g],
         what="gradients with gt = 1e30 (finite inputs, the squared error overflows)")

    # Outputs that are not regular files are refused, and stay what they were.
    out_fifo = tmp / "p.fifo"
    os.mkfifo(out_fifo)
    case(cli, ["predict", "--weights", weights, "--input", x, "--out", out_fifo], 1,
         [str(out_fifo), "FIFO", "not replaced"], keep=[out_fifo], timeout=20)
    case(cli, ["gradients", "--weights", weights, *grad_args, "--out", out_fifo], 1, [str(out_fifo), "FIFO"],
         keep=[out_fifo], timeout=20)
    link = tmp / "p_link.npy"
    link.symlink_to(old)
    case(cli, ["predict", "--weights", weights, "--input", x, "--out", link], 1, [str(link), "symbolic link"],
         keep=[link, old])
    case(cli, ["predict", "--weights", weights, "--input", x, "--out", tmp], 1, [str(tmp), "directory"])
    case(cli, ["predict", "--weights", weights, "--input", x, "--out", tmp / "no" / "p.npy"], 1,
         [str(tmp / "no"), "does not exist"], absent=[tmp / "no"])
    # A symlink planted at <out>.tmp (where a fixed temporary name would be) is never followed.
    planted = tmp / "p.npy.tmp"
    planted.symlink_to(old)
    case(cli, ["predict", "--weights", weights, "--input", x, "--out", p], 0, [], keep=[planted, old],
         what="predict with a symlink planted at p.npy.tmp (the link and its target untouched)")
    check(p.is_file() and not p.is_symlink() and np.load(p).shape == (n, 1), "predict wrote p.npy [N, 1] itself")

    # Write errors: past the file-size limit the write fails (EFBIG, SIGXFSZ ignored): exit 1 naming the
    # file, the old file whole, no temporary file left.
    case(cli, ["gradients", "--weights", weights, *grad_args, "--out", g], 0, [])
    case(cli, ["gradients", "--weights", weights, *grad_args, "--alpha", "0.5", "--out", g], 1,
         [str(g), "File too large"], keep=[g], limits={resource.RLIMIT_FSIZE: 4096},
         what="gradients under a 4 KiB file-size limit (the old output stays)")
    case(cli, ["predict", "--weights", weights, "--input", x, "--out", p], 1, [str(p), "File too large"], keep=[p],
         limits={resource.RLIMIT_FSIZE: 64}, what="predict under a 64-byte file-size limit (the old output stays)")
    leftovers = [q.name for q in tmp.iterdir() if q.name.startswith((".p.npy.", ".g.safetensors."))]
    check(not leftovers, f"no temporary files left beside the outputs ({leftovers})")
    # A report cut short on the standard output (here by the file-size limit) is an error too.
    pred2 = tmp / "pred2.npy"
    np.save(pred2, rng.normal(0, 1, (n, 30)))
    gt2 = tmp / "gt2.npy"
    np.save(gt2, rng.normal(0, 1, (n, 30)))
    mask2 = tmp / "mask2.npy"
    np.save(mask2, np.ones((n, 30)))
    with open(tmp / "report.json", "w") as report:
        case(cli, ["evaluate", "--pred", pred2, "--gt", gt2, "--mask", mask2], 1, ["standard output"],
             limits={resource.RLIMIT_FSIZE: 100}, stdout=report,
             what="evaluate with stdout past a 100-byte file-size limit")
    # train under the limit: its run files fail to write, as an error naming one, not a death by SIGXFSZ.
    run = tmp / "run_small"
    case(cli, ["train", *SMALL, "--epochs", "2", "--out", run], 1, [str(run), "File too large"],
         limits={resource.RLIMIT_FSIZE: 2048}, what="train under a 2 KiB file-size limit")


def dataset_cases(cli, tmp, kills, rng):
    ds = tmp / "ds"
    args = ["dataset", "--stocks", "400", "--days", "2000", "--out", ds]
    case(cli, [*args, "--data-seed", "1"], 0, [])
    old = snapshot(ds)
    case(cli, [*args, "--data-seed", "2"], 1, ["holds a dataset", "--overwrite"], keep=[ds])
    case(cli, [*args, "--data-seed", "2", "--overwrite"], 0, [])
    new = snapshot(ds)
    check(old != new and [e[0] for e in old[1]] == ["eod.npy", "gt.npy", "mask.npy", "price.npy"] and
          [e[0] for e in new[1]] == [e[0] for e in old[1]], "dataset --overwrite replaces the four arrays")
    # Write errors: the old dataset stays whole, no staging folder is left.
    case(cli, [*args, "--data-seed", "1", "--overwrite"], 1, ["File too large", "eod.npy", f"{ds} not written", "the arrays in it are kept"], keep=[ds],
         limits={resource.RLIMIT_FSIZE: 1 << 20}, what="dataset --overwrite under a 1 MiB file-size limit")
    staging = [q.name for q in tmp.iterdir() if q.name.startswith(".ds.staging-")]
    check(not staging, f"no staging folder left after the failed write ({staging})")
    # Folders that are not a dataset are not replaced; neither are links or files.
    other = tmp / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    case(cli, ["dataset", "--out", other], 1, ["notes.txt", "not part of a dataset"], keep=[other])
    (tmp / "plain").write_text("x")
    case(cli, ["dataset", "--out", tmp / "plain"], 1, ["plain", "not a folder"], keep=[tmp / "plain"])

    # SIGKILL at random moments of `dataset --overwrite`: the folder holds the old arrays or the new ones.
    case(cli, [*args, "--data-seed", "1", "--overwrite"], 0, [])
    t0 = time.monotonic()
    subprocess.run([str(a) for a in [cli, *args, "--data-seed", "2", "--overwrite"]], stdout=subprocess.DEVNULL,
                   check=True)
    whole = time.monotonic() - t0
    seen = {"old": 0, "new": 0}
    state = new
    for k in range(kills):
        seed = "1" if state == new else "2"
        proc = subprocess.Popen([str(a) for a in [cli, *args, "--data-seed", seed, "--overwrite"]],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.0, whole * 1.1))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        now = snapshot(ds)
        # A stale .lock may remain in the folder if the kill came between the swap and its removal.
        entries = tuple(e for e in now[1] if e[0] != ".lock") if now[0] == "dir" else None
        if entries == old[1]:
            seen["old"] += 1
            state = old
        elif entries == new[1]:
            seen["new"] += 1
            state = new
        else:
            olds, news = dict(old[1]), dict(new[1])
            found = ([f"{name} ({'old' if e == olds.get(name) else 'new' if e == news.get(name) else 'other'})"
                      for name, e in now[1]] if now[0] == "dir" else now[0])
            check(False, f"kill {k + 1}: {ds} holds neither the old dataset nor the new one: {found}")
            return
    check(True, f"{kills} kills of dataset --overwrite at random moments ({whole:.2f} s a run): the folder held "
                f"one whole dataset each time (before the swap {seen['old']}, after it {seen['new']})")
    case(cli, [*args, "--data-seed", "1", "--overwrite"], 0, [])
    staging = [q.name for q in tmp.iterdir() if q.name.startswith(".ds.staging-")]
    check(not staging and snapshot(ds)[1] == old[1],
          f"the next dataset removes the staging folders the kills left ({staging}) and writes the old arrays")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cli")
    ap.add_argument("--kills", type=int, default=12)
    ap.add_argument("--only", choices=["files", "options", "config", "dataset", "panel"], help="one group of cases")
    args = ap.parse_args()
    cli = str(Path(args.cli).resolve())
    rng = random.Random(2026)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        p = subprocess.run([cli, "train", *SMALL, "--epochs", "1", "--out", str(tmp / "run")], capture_output=True,
                           text=True)
        check(p.returncode == 0, "a small run for weights to test with")
        if p.returncode != 0:
            print(p.stderr)
            return 1
        weights = tmp / "w.safetensors"
        weights.write_bytes((tmp / "run" / "best.safetensors").read_bytes())
        if args.only in (None, "files"):
            file_cases(cli, tmp, weights)
        if args.only in (None, "options"):
            options_cases(cli, tmp)
        if args.only in (None, "config"):
            config_cases(cli, tmp)
        if args.only in (None, "dataset"):
            dataset_cases(cli, tmp, args.kills, rng)
        if args.only in (None, "panel"):
            panel_cases(cli, tmp)
    print(f"{len(FAILURES)} failed" if FAILURES else "all passed")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
