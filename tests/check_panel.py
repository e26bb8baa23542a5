#!/usr/bin/python3
"""The panel importer end to end, through the `stockmixer` tool.

  check_panel.py CLI nasdaq DATA   (DATA: ../shared/data/NASDAQ)
    The original's NASDAQ folder exported to one long panel CSV (date,ticker,ma5,ma10,ma20,ma30,close;
    row r of a ticker file is dated by line r + 30 of the dates file; the loader's dropped last row and
    every row whose cells are all -1234 left out; the rest in a shuffled order, each ticker's first row
    first so that the order of first appearance is the folder's), then `dataset --panel` and `dataset
    --data` in f32 and f64: eod, mask, gt and price must be the same bytes; and --valid-start 2016-01-01
    --test-start 2017-01-01 on the folder give the original's split, days 756 and 1008. Exit 77 (ctest:
    skipped) when DATA does not exist.

  check_panel.py CLI own
    A 12-ticker, 300-date panel of raw prices with a header (open, high, low, close, volume; some rows
    absent, some closes -1234, one ticker listed late, rows shuffled): `dataset --panel --features
    original` (causal and max) against an independent numpy computation of the original's features;
    `train --panel ... --epochs 2` trains on it with no padding (the 60/20/20 split by dates), and
    --valid-start / --test-start / --train-start / --test-end and walk's --first-test land on the first
    trading day on or after each date (a date after the last is the end, for --test-end); refusals of
    mixed or bad options name the option.
"""
import datetime
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

SKIP = 77
FAILURES = []


def check(ok, what):
    print(("ok    " if ok else "FAIL  ") + what)
    if not ok:
        FAILURES.append(what)


def run(cli, *args, expect=0):
    p = subprocess.run([str(cli), *map(str, args)], capture_output=True, text=True, timeout=300)
    if p.returncode != expect:
        print(f"stockmixer {' '.join(map(str, args))}: exit {p.returncode}, expected {expect}\n{p.stdout}\n{p.stderr}")
        FAILURES.append(f"exit {p.returncode} of {args[0]}")
    return p


def same_arrays(a, b, what):
    for name in ("eod", "mask", "gt", "price"):
        x, y = (Path(a) / f"{name}.npy").read_bytes(), (Path(b) / f"{name}.npy").read_bytes()
        if x == y:
            check(True, f"{what}: {name}.npy identical ({len(x)} bytes)")
            continue
        u, v = np.load(Path(a) / f"{name}.npy"), np.load(Path(b) / f"{name}.npy")
        where = np.argwhere(u != v)[:3].tolist() if u.shape == v.shape else f"shapes {u.shape} and {v.shape}"
        check(False, f"{what}: {name}.npy differs (first at {where})")


def nasdaq(cli, data, tmp):
    data = Path(data)
    if not data.is_dir():
        print(f"skipped: the NASDAQ panel check needs {data} (the original's data folder)")
        return SKIP
    tickers = [t.strip() for t in (data / "NASDAQ_tickers_qualify_dr-0.98_min-5_smooth.csv").read_text().split("\n")
               if t.strip()]
    dates = [d.strip() for d in (data / "NASDAQ_aver_line_dates.csv").read_text().split("\n")]
    first, rest, dropped = [], [], 0
    for t in tickers:
        lines = [l for l in (data / "2013-01-01" / f"NASDAQ_{t}_1.csv").read_text().split("\n") if l.strip()]
        kept = []
        for r, line in enumerate(lines[:-1]):  # the loader drops a NASDAQ file's last row
            features = line.split(",", 1)[1]
            if "-1234" in features and all(abs(float(v) + 1234) < 1e-8 for v in features.split(",")):
                dropped += 1  # every cell missing: an absent row reads the same
                continue
            kept.append(f"{dates[r + 29][:10]},{t},{features}")
        first.append(kept[0])
        rest.extend(kept[1:])
    random.Random(16).shuffle(rest)
    panel = tmp / "nasdaq_panel.csv"
    panel.write_text("date,ticker,ma5,ma10,ma20,ma30,close\n" + "\n".join(first + rest) + "\n")
    print(f"panel: {len(first) + len(rest)} rows of {len(tickers)} tickers ({dropped} all-missing rows left out)")
    for precision in ("f32", "f64"):
        a, b = tmp / f"panel_{precision}", tmp / f"folder_{precision}"
        p = run(cli, "dataset", "--panel", panel, "--out", a, "--precision", precision)
        run(cli, "dataset", "--data", data, "--market", "NASDAQ", "--out", b, "--precision", precision)
        if p.returncode == 0:
            desc = json.loads(p.stdout)
            check((desc["stocks"], desc["days"], desc["first_date"], desc["last_date"]) ==
                  (1026, 1245, "2013-01-02", "2017-12-08"), f"{precision}: the panel's description {desc}")
        same_arrays(a, b, f"{precision}: --panel against --data")
    # Splits by date on the folder (its dates file is the calendar): the original's days 756 and 1008 are the
    # first trading days of 2016 and 2017. (30 tickers: the split, not the training, is checked.)
    few = tmp / "tickers30.txt"
    few.write_text("\n".join(tickers[:30]) + "\n")
    run_dir = tmp / "run_dates"
    p = run(cli, "train", "--data", data, "--tickers", few, "--valid-start", "2016-01-01", "--test-start",
            "2017-01-01", "--epochs", "1", "--out", run_dir)
    if p.returncode == 0:
        split = json.loads((run_dir / "summary.json").read_text())["provenance"]["split"]
        check((split["valid_index"], split["test_index"]) == (756, 1008),
              f"--data with --valid-start 2016-01-01 --test-start 2017-01-01: days 756 and 1008 "
              f"({split['valid_index']}, {split['test_index']}: {split['valid_first_date']}, {split['test_first_date']})")
    return 0


def raw_panel(tmp):
    """12 tickers over 300 weekdays of raw prices; returns the file, the closes [N, D] (NaN: missing) and the
    dates."""
    rng = np.random.default_rng(16)
    n, d = 12, 300
    day0 = np.datetime64("2021-01-04")
    dates = np.busday_offset(day0, np.arange(d), roll="forward").astype(str).tolist()
    close = 20 * np.exp(np.cumsum(rng.normal(0.0004, 0.02, (n, d)), axis=1)) * rng.uniform(0.5, 5, (n, 1))
    close = np.round(close, 4)
    absent = rng.random((n, d)) < 0.02
    absent[5, :45] = True  # listed late: its first averages hold fewer closes
    flagged = (rng.random((n, d)) < 0.01) & ~absent  # a row whose close is -1234
    tickers = [f"T{k:02d}" for k in range(n)]
    rows = []
    for i in range(n):
        for t in range(d):
            if absent[i, t]:
                continue
            c = "-1234" if flagged[i, t] else f"{close[i, t]:.4f}"
            rows.append(f"{dates[t]},{tickers[i]},{close[i, t] * 0.99:.4f},{close[i, t] * 1.01:.4f},"
                        f"{close[i, t] * 0.98:.4f},{c},{int(rng.integers(1000, 100000))}")
    # Tickers first appear in their own order; the rest shuffled.
    order = list(range(len(rows)))
    firsts = sorted({next(k for k, r in enumerate(rows) if r.split(",")[1] == t) for t in tickers})
    taken = set(firsts)
    others = [k for k in order if k not in taken]
    random.Random(3).shuffle(others)
    path = tmp / "own.csv"
    path.write_text("date,ticker,open,high,low,close,volume\n" + "\n".join(rows[k] for k in firsts + others) + "\n")
    close = np.where(absent | flagged, np.nan, close)
    return path, close, dates, tickers


def expected_arrays(close, normalise, steps=1, warmup=29):
    """The original's features from raw closes, written independently of the C++: [N, D, 5], mask, gt, price."""
    n, d_all = close.shape
    d = d_all - warmup
    eod = np.full((n, d, 5), 1.1)
    mask = np.zeros((n, d))
    gt = np.zeros((n, d))
    for i in range(n):
        c = close[i]
        whole = np.nanmax(c[warmup:])
        for t in range(warmup, d_all):
            if np.isnan(c[t]):
                continue
            scale = whole if normalise == "max" else np.nanmax(c[:t + 1])
            for j, k in enumerate((5, 10, 20, 30)):
                w = c[t - k + 1:t + 1]
                eod[i, t - warmup, j] = np.mean(w[~np.isnan(w)]) / scale
            eod[i, t - warmup, 4] = c[t] / scale
            mask[i, t - warmup] = 1
            if t - warmup >= steps and not np.isnan(c[t - steps]):
                gt[i, t - warmup] = (c[t] - c[t - steps]) / c[t - steps]
    return eod, mask, gt, eod[:, :, 4].copy()


def own(cli, tmp):
    path, close, dates, tickers = raw_panel(tmp)
    for normalise in ("causal", "max"):
        out = {}
        for precision in ("f64", "f32"):
            out[precision] = tmp / f"own_{normalise}_{precision}"
            run(cli, "dataset", "--panel", path, "--features", "original", "--normalise", normalise,
                "--precision", precision, "--out", out[precision])
        got = {name: np.load(out["f64"] / f"{name}.npy") for name in ("eod", "mask", "gt", "price")}
        eod, mask, gt, price = expected_arrays(close, normalise)
        check(got["eod"].shape == (12, 271, 5), f"{normalise}: eod is [12, 271, 5] (300 dates less 29 of warm-up)")
        check(np.array_equal(got["mask"], mask), f"{normalise}: mask as computed independently")
        # Independent arithmetic (numpy's mean sums pairwise, ours left to right): within 1e-14 relative,
        # a few roundings of values near 1. gt where a day's own close and the one before are present.
        both = (mask[:, 1:] == 1) & (mask[:, :-1] == 1)
        for name, want, sel in (("eod", eod, mask[:, :, None].repeat(5, 2) == 1), ("price", price, mask == 1),
                                ("gt", gt[:, 1:], both)):
            g = got[name][:, 1:] if name == "gt" else got[name]
            err = np.max(np.abs(g[sel] - want[sel]) / np.maximum(np.abs(want[sel]), 1e-3))
            check(err < 1e-14, f"{normalise}: {name} within 1e-14 of numpy's (max relative error {err:.1e})")
        check(np.all(got["eod"][mask == 0] == 1.1), f"{normalise}: missing days hold 1.1 in every feature")
        # f32: the same double computation, rounded once to float32 (gt where both closes are present).
        e32 = np.load(out["f32"] / "eod.npy")
        check(np.array_equal(e32, got["eod"].astype(np.float32)), f"{normalise}: f32 eod is f64's rounded to float32")
        if normalise == "causal":
            check(np.max(got["price"][mask == 1]) <= 1.0, "causal: no close above its scale (the largest so far)")

    # Training on it: no padding, the split 60/20/20 of its 271 days.
    market_dates = dates[29:]
    run_dir = tmp / "run"
    p = run(cli, "train", "--panel", path, "--features", "original", "--epochs", "2", "--out", run_dir, "--threads", "1")
    if p.returncode == 0:
        s = json.loads((run_dir / "summary.json").read_text())
        split = s["provenance"]["split"]
        check((s["data"]["stocks"], s["data"]["days"], s["epochs"]) == (12, 271, 2),
              f"train --panel: 12 stocks, 271 days, 2 epochs ({s['data']['stocks']}, {s['data']['days']}, {s['epochs']})")
        check((split["valid_index"], split["test_index"]) == (271 * 6 // 10, 271 * 8 // 10),
              f"train --panel: the default split is 60/20/20 of the days ({split['valid_index']}, {split['test_index']})")
        check((split["first_date"], split["valid_first_date"], split["last_date"]) ==
              (market_dates[0], market_dates[split["valid_index"]], market_dates[-1]),
              f"train --panel: the split's dates are the panel's own ({split['first_date']} .. {split['last_date']})")
    # Splits by date: a Saturday lands on the Monday after it.
    valid_start, test_start = market_dates[150], "2022-01-01"  # 2022-01-01 is a Saturday
    want_test = next(k for k, d in enumerate(market_dates) if d >= test_start)
    run_dir = tmp / "run_dates"
    p = run(cli, "train", "--panel", path, "--features", "original", "--epochs", "1", "--out", run_dir,
            "--valid-start", valid_start, "--test-start", test_start)
    if p.returncode == 0:
        split = json.loads((run_dir / "summary.json").read_text())["provenance"]["split"]
        check((split["valid_index"], split["test_index"]) == (150, want_test),
              f"--valid-start {valid_start} --test-start {test_start}: days 150 and {want_test} "
              f"({split['valid_index']}, {split['test_index']}; test starts {split['test_first_date']})")
    # --train-start and --test-end as dates (a Saturday lands on the Monday after it; an end after the last
    # date is the market's end), and walk's --first-test as a date: the same windows as its day index.
    def date_before(k):  # a calendar date after market_dates[k - 1] that lands on day k
        return (datetime.date.fromisoformat(market_dates[k - 1]) + datetime.timedelta(days=1)).isoformat()
    gap = next(k for k in range(100, len(market_dates))
               if date_before(k) != market_dates[k])  # a weekend: the day after k - 1 is no trading day
    run_dir = tmp / "run_bounds"
    p = run(cli, "train", "--panel", path, "--features", "original", "--epochs", "1", "--out", run_dir,
            "--train-start", date_before(gap), "--test-end", "2030-01-01", "--valid-index", "200",
            "--test-index", "230", "--strict-split")
    if p.returncode == 0:
        config = json.loads((run_dir / "summary.json").read_text())["config"]
        check((config.get("train_start"), config.get("test_end", len(market_dates))) == (gap, len(market_dates)),
              f"--train-start {date_before(gap)} --test-end 2030-01-01: days {gap} and the end "
              f"{len(market_dates)} ({config.get('train_start')}, {config.get('test_end')})")
    p = run(cli, "train", "--panel", path, "--features", "original", "--epochs", "1", "--out", tmp / "run_end",
            "--test-end", date_before(gap), "--valid-index", "60", "--test-index", "80")
    if p.returncode == 0:
        config = json.loads((tmp / "run_end" / "summary.json").read_text())["config"]
        check(config.get("test_end") == gap, f"--test-end {date_before(gap)}: day {gap} ({config.get('test_end')})")
    walks = {}
    for first in (date_before(gap), str(gap)):
        out_dir = tmp / f"walk_{first}"
        p = run(cli, "walk", "--panel", path, "--features", "original", "--epochs", "1", "--threads", "1",
                "--train-days", "60", "--valid-days", "20", "--test-days", "30", "--first-test", first,
                "--out", out_dir)
        if p.returncode == 0:
            walks[first] = sorted(j["name"] for j in json.loads((out_dir / "sweep.json").read_text())["jobs"])
    if len(walks) == 2:
        names = list(walks.values())
        check(names[0] == names[1] and names[0] and names[0][0].startswith(f"test={gap}.."),
              f"walk --first-test {date_before(gap)}: the windows of --first-test {gap} ({names[0]})")
    # Refusals, each naming what is wrong; nothing written.
    never = tmp / "never"
    for args, words in (
            (["--valid-start", valid_start, "--valid-index", "100"], ["--valid-start", "exclude each other"]),
            (["--test-start", "2030-01-01"], ["--test-start 2030-01-01 is after the market's last date"]),
            (["--valid-start", "2021-02-30"], ["--valid-start '2021-02-30' is not a date"]),
            (["--train-start", "2021-02-30"], ["--train-start '2021-02-30': expected a day index or a date"]),
            (["--train-start", "2030-01-01"], ["--train-start 2030-01-01 is after the market's last date"]),
            (["--test-end", "1999-01-01"], ["--test-end 1999-01-01 is before the market's first date"]),
            (["--normalise", "median"], ["--normalise", "causal, max"]),
            (["--features", "5"], ["--features", "columns, original"]),
            (["--data", tmp], ["--panel and --data"])):
        p = run(cli, "train", "--panel", path, "--features", "original", "--epochs", "1", "--out", never, *args,
                expect=1)
        check(all(w in p.stderr for w in words) and not never.exists(),
              f"train {' '.join(map(str, args))}: refused ({p.stderr.strip()[:150]})")
    p = run(cli, "train", "--valid-start", "2021-06-01", "--epochs", "1", "--out", never, expect=1)
    check("--valid-start" in p.stderr and "no dates" in p.stderr, "the synthetic market has no dates for --valid-start")
    p = run(cli, "dataset", "--panel", path, "--normalise", "max", "--out", never, expect=1)
    check("--normalise applies to raw prices only" in p.stderr, "--normalise without --features original is refused")
    return 0


def main():
    if len(sys.argv) < 3 or sys.argv[2] not in ("nasdaq", "own") or (sys.argv[2] == "nasdaq") != (len(sys.argv) == 4):
        sys.exit(__doc__)
    cli = Path(sys.argv[1]).resolve()
    # On tmpfs where there is one: the arrays are synced as they are written (io::write_file), which on a
    # disk costs more than the whole check.
    shm = Path("/dev/shm")
    base = str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None
    with tempfile.TemporaryDirectory(prefix="stockmixer_check_panel_", dir=base) as tmp:
        status = nasdaq(cli, sys.argv[3], Path(tmp)) if sys.argv[2] == "nasdaq" else own(cli, Path(tmp))
    if status == SKIP:
        return SKIP
    print(f"{len(FAILURES)} failures" if FAILURES else "all checks passed")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
