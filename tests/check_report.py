#!/usr/bin/python3
"""What `stockmixer train` leaves for a reader, checked against the run's own arrays (numpy only).

    /usr/bin/python3 tests/check_report.py BUILD/examples/stockmixer

1. predictions.csv: exactly one row per validation and test day and stock whose window mask is 1
   (recomputed from `stockmixer dataset`'s mask.npy), in day order and the market's stock order; each
   label is gt.npy's value bit for bit; the IC recomputed from the CSV (the original's: Pearson over
   all stocks, the absent ones as zeros) equals summary.json's valid and test IC within 1e-6, and
   the other epochs' test IC differ from it by more than that, so the rows are the best epoch's.
2. report.md holds summary.json's figures as it prints them, and its backtest's gross additive return
   on the test days (top 5, no drop) equals the evaluator's bt_long5; `stockmixer report --run`
   rewrites report.md and the charts byte for byte; a missing predictions.csv and a --seeds folder
   are refused naming them.
3. The terminal: train ends with the short table, not the summary's JSON.
4. `predict --tickers --date` writes P.csv beside P.npy: its predictions are P.npy's, its scores
   (prediction - base) / base with base = the window's last close, in float32 as the loss computes
   them, and equal to predictions.csv's scores of the valid stocks on that day (the same weights and
   windows); a tickers file of the wrong length and an --out ending in .csv are refused.
5. On a market folder, predictions.csv names the days by the dates file when its dates ascend
   strictly, by their index when a date repeats.

Tolerance: the IC is recomputed in float64 from the CSV's scores and labels read as float32, which
gives back exactly the float32 values the evaluator scored (they are written as the shortest text that
reads back to them); the evaluator also computes in float64 but sums in another order, so the two agree
to about 1e-16. 1e-6 is the bound the issue sets; read as float64 instead, the values differ by up to
half a float32 ulp and the ICs by about 1e-9, still well inside it.
"""
import csv
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

FAILURES = []
MARKET = ["--stocks", "48", "--days", "180", "--missing", "0.05", "--data-seed", "3"]
T, STEPS = 16, 1


def check(ok, what):
    print(("ok    " if ok else "FAIL  ") + what)
    if not ok:
        FAILURES.append(what)


def run(cli, *args):
    return subprocess.run([str(cli), *[str(a) for a in args]], capture_output=True, text=True)


def ic(score, label, mask):
    """The original's IC: per day, Pearson of score*mask and label*mask over all stocks; the mean."""
    days = []
    for d in range(score.shape[1]):
        p, g = score[:, d] * mask[:, d], label[:, d] * mask[:, d]
        days.append(np.corrcoef(p, g)[0, 1])
    return float(np.mean(days))


def write_market_dir(root, dates, stocks=20):
    """A market folder laid out as ../shared/data/NASDAQ: tickers, the dates file (29 lines before row
    0's date), one CSV per ticker (day index, four moving averages, close; NASDAQ's last row dropped)."""
    rng = np.random.default_rng(11)
    rows = len(dates) - 29
    (root / "2013-01-01").mkdir(parents=True)
    tickers = [f"X{i:03d}" for i in range(stocks)]
    (root / "NASDAQ_tickers_qualify_dr-0.98_min-5_smooth.csv").write_text("\n".join(tickers) + "\n")
    (root / "NASDAQ_aver_line_dates.csv").write_text("".join(d + "\n" for d in dates))
    for t in tickers:
        close = np.exp(np.cumsum(0.02 * rng.standard_normal(rows)))
        close /= close.max()
        lines = [f"{r}," + ",".join(f"{close[r]:.6f}" for _ in range(5)) for r in range(rows)]
        (root / "2013-01-01" / f"NASDAQ_{t}_1.csv").write_text("\n".join(lines) + "\n")
    return root


def check_dates(cli, tmp):
    """predictions.csv names a day by the data's date when the dates ascend strictly, else by its index."""
    iso = [str(np.datetime64("2013-01-01") + k) for k in range(160)]
    for name, dates, dated in (("ascending", iso, True), ("repeated", iso[:100] + iso[99:159], False)):
        folder = write_market_dir(tmp / f"market_{name}", dates)
        p = run(cli, "train", "--data", folder, "--epochs", "1", "--valid-index", "70", "--test-index", "100",
                "--threads", "1", "--out", tmp / f"dated_{name}")
        if p.returncode != 0:
            check(False, f"train --data on a folder with {name} dates: {p.stderr[-300:]}")
            continue
        with open(tmp / f"dated_{name}" / "predictions.csv", newline="") as f:
            days = sorted({r[0] for r in list(csv.reader(f))[1:]}, key=lambda d: (len(d), d))
        want = [dates[d + 29] for d in range(70, 130)] if dated else [str(d) for d in range(70, 130)]
        check(days == want, f"{name} dates: predictions.csv names the days {days[0]} .. {days[-1]} "
                            f"({'the dates file' if dated else 'day indices'})")


def main():
    cli = Path(sys.argv[1])
    with tempfile.TemporaryDirectory(prefix="check_report_") as t:
        tmp = Path(t)
        out = tmp / "run"
        p = run(cli, "train", *MARKET, "--epochs", "4", "--threads", "1", "--out", out)
        check(p.returncode == 0, "train on a small synthetic market" + ("" if p.returncode == 0 else ": " + p.stderr[-400:]))
        if p.returncode != 0:
            return
        summary = json.loads((out / "summary.json").read_text())
        epochs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        check(not p.stdout.lstrip().startswith("{") and p.stdout.startswith(f"best epoch {summary['best_epoch']} of 4")
              and "test, 1-day reversal" in p.stdout and len(p.stdout.splitlines()) <= 8,
              f"train ends with the short table, not the JSON:\n{p.stdout}")
        check(all("ETA" in line for line in p.stderr.splitlines() if line.startswith("epoch") and "  4/4" not in line),
              "each epoch line but the last estimates the time left")

        p = run(cli, "dataset", *MARKET, "--out", tmp / "ds")
        check(p.returncode == 0, "dataset writes the same market's arrays")
        mask, gt = np.load(tmp / "ds" / "mask.npy"), np.load(tmp / "ds" / "gt.npy")
        n, days = mask.shape
        split = summary["provenance"]["split"]
        valid_index, test_index = split["valid_index"], split["test_index"]

        # 1. predictions.csv against the arrays
        with open(out / "predictions.csv", newline="") as f:
            rows = list(csv.reader(f))
        check(rows[0] == ["date", "ticker", "score", "label", "split"], "predictions.csv's header")
        tickers = [f"S{i:04d}" for i in range(n)]
        want = []
        for name, lo, hi in (("valid", valid_index, test_index), ("test", test_index, days)):
            for d in range(lo, hi):
                window = mask[:, d - T - STEPS + 1:d + 1].min(axis=1)
                want += [(str(d), tickers[i], name) for i in range(n) if window[i] == 1]
        got = [(r[0], r[1], r[4]) for r in rows[1:]]
        check(got == want, f"rows exactly for the stocks valid that day (window mask 1), in day and stock order "
                           f"({len(got)} rows, {len(want)} expected, of {n * (days - valid_index)} stock-days)")
        index = {name: i for i, name in enumerate(tickers)}
        labels_exact = all(np.float32(r[3]) == gt[index[r[1]], int(r[0])] for r in rows[1:])
        check(labels_exact, "every label is gt.npy's value, bit for bit")
        for name, lo, hi in (("valid", valid_index, test_index), ("test", test_index, days)):
            score, label, present = (np.zeros((n, hi - lo)) for _ in range(3))
            for r in rows[1:]:
                if r[4] == name:
                    i, d = index[r[1]], int(r[0]) - lo
                    score[i, d], label[i, d], present[i, d] = np.float32(r[2]), np.float32(r[3]), 1
            ours, theirs = ic(score, label, present), summary[name]["IC"]
            check(abs(ours - theirs) <= 1e-6, f"{name} IC from predictions.csv {ours:+.15f} = summary.json's "
                                              f"{theirs:+.15f} (within 1e-6; {abs(ours - theirs):.1e} apart)")
        others = [e["test"]["IC"] for e in epochs if e["epoch"] != summary["best_epoch"]]
        check(all(abs(o - summary["test"]["IC"]) > 1e-6 for o in others),
              f"the other epochs' test IC differ from the best's by more than 1e-6 ({others}), so the check above "
              "tells the best epoch's rows from another epoch's")

        # 2. report.md
        report = (out / "report.md").read_text()
        figures = [f"{summary[s]['IC']:+.4f}" for s in ("valid", "test")] + \
                  [f"{summary['test']['rank_ic']:+.4f}", f"{summary['test']['RIC']:+.3f}",
                   f"{summary['test']['prec_10']:.4f}", f"{summary['baselines_test']['reversal']['IC']:+.4f}",
                   f"{summary['oracle_test']['IC']:+.4f}"]
        check(all(f in report for f in figures), f"report.md holds summary.json's figures {figures}")
        line = next((ln for ln in report.splitlines() if ln.startswith("| cumulative return, additive")), "")
        header = next((ln for ln in report.splitlines() if ln.startswith("| figure |")), "")
        cells = dict(zip([c.strip() for c in header.split("|")[1:-1]], [c.strip() for c in line.split("|")[1:-1]]))
        check(cells.get("test, gross") == f"{summary['test']['bt_long5']:.4f}",
              f"the report's test backtest (top 5, no drop, before costs) returns the evaluator's bt_long5 "
              f"({cells.get('test, gross')} and {summary['test']['bt_long5']:.4f})")
        check(cells.get("test, net", "x") < cells.get("test, gross", ""), "costs lower the net return")
        pngs = {name: (out / name).read_bytes() for name in ("loss.png", "equity.png")}
        check(all(b.startswith(b"\x89PNG\r\n\x1a\n") for b in pngs.values()), "loss.png and equity.png are PNGs")
        for name in ("report.md", "loss.png", "equity.png"):
            (out / name).unlink()
        p = run(cli, "report", "--run", out)
        check(p.returncode == 0 and (out / "report.md").read_text() == report
              and all((out / k).read_bytes() == v for k, v in pngs.items()),
              "report --run rewrites report.md, loss.png and equity.png byte for byte")
        bare = tmp / "bare"
        bare.mkdir()
        for name in ("summary.json", "metrics.jsonl"):
            (bare / name).write_bytes((out / name).read_bytes())
        p = run(cli, "report", "--run", bare)
        check(p.returncode == 1 and str(bare / "predictions.csv") in p.stderr, f"a run without predictions.csv is "
                                                                               f"refused, naming it: {p.stderr.strip()}")

        # 3. --seeds: a table of means and stds; a report in each seed's folder
        seeds = tmp / "seeds"
        p = run(cli, "train", *MARKET, "--epochs", "1", "--seeds", "2", "--threads", "1", "--out", seeds)
        check(p.returncode == 0 and p.stdout.startswith("mean +- std, 2 seeds") and "+-" in p.stdout.splitlines()[1]
              and all((seeds / s / "report.md").exists() and (seeds / s / "predictions.csv").exists()
                      for s in ("seed_0", "seed_1")),
              "train --seeds 2: the table of means and stds; each seed's folder has its predictions and report")
        p = run(cli, "report", "--run", seeds)
        check(p.returncode == 1 and "seed_<s>" in p.stderr, f"report --run on a --seeds folder is refused: "
                                                            f"{p.stderr.strip()}")

        # 4. predict --tickers --date
        eod = np.load(tmp / "ds" / "eod.npy")
        day = days - 1  # the last test day: its window starts T + STEPS - 1 days before
        x = np.ascontiguousarray(eod[:, day - T - STEPS + 1:day - STEPS + 1, :])
        np.save(tmp / "x.npy", x)
        (tmp / "tickers.txt").write_text("\n".join(tickers) + "\n")
        p = run(cli, "predict", "--weights", out / "best.safetensors", "--input", tmp / "x.npy", "--out", tmp / "p.npy",
                "--tickers", tmp / "tickers.txt", "--date", "2024-05-31")
        check(p.returncode == 0, "predict --tickers --date" + ("" if p.returncode == 0 else ": " + p.stderr))
        if p.returncode == 0:
            pred = np.load(tmp / "p.npy")[:, 0]
            with open(tmp / "p.csv", newline="") as f:
                labelled = list(csv.reader(f))
            check(labelled[0] == ["date", "ticker", "score", "prediction"] and len(labelled) == n + 1
                  and [r[0] for r in labelled[1:]] == ["2024-05-31"] * n and [r[1] for r in labelled[1:]] == tickers,
                  "p.csv: the header, the date and the tickers in the input's order")
            base = x[:, -1, -1]
            check(all(np.float32(r[3]) == pred[i] for i, r in enumerate(labelled[1:])), "p.csv's predictions are p.npy's")
            check(all(np.float32(r[2]) == (pred[i] - base[i]) / base[i] for i, r in enumerate(labelled[1:])),
                  "p.csv's scores are (prediction - base) / base in float32, base = the window's last close")
            trained = {r[1]: r[2] for r in rows[1:] if r[0] == str(day)}
            check(len(trained) > 0 and all(labelled[1 + index[k]][2] == v for k, v in trained.items()),
                  f"p.csv's scores equal predictions.csv's for the {len(trained)} stocks valid on day {day}")
        (tmp / "short.txt").write_text("\n".join(tickers[:-1]) + "\n")
        p = run(cli, "predict", "--weights", out / "best.safetensors", "--input", tmp / "x.npy", "--out", tmp / "q.npy",
                "--tickers", tmp / "short.txt")
        check(p.returncode == 1 and "short.txt" in p.stderr and f"{n - 1} tickers" in p.stderr
              and not (tmp / "q.npy").exists(), f"a tickers file of the wrong length is refused: {p.stderr.strip()}")
        p = run(cli, "predict", "--weights", out / "best.safetensors", "--input", tmp / "x.npy", "--out", tmp / "q.csv",
                "--date", "2024-05-31")
        check(p.returncode == 1 and "q.csv" in p.stderr, f"an --out ending in .csv is refused: {p.stderr.strip()}")

        check_dates(cli, tmp)

    if FAILURES:
        print(f"\n{len(FAILURES)} check(s) failed")
        sys.exit(1)
    print("\nall checks passed")


if __name__ == "__main__":
    main()
