#!/usr/bin/python3
"""The tables and plots of docs/results.md, from the run folders that `stockmixer train` and
benchmarks/pytorch_reference.py wrote. Nothing here is typed in by hand: every figure is read from a
summary.json or metrics.jsonl, or recomputed from the saved weights.

    /usr/bin/python3 benchmarks/results_page.py --data ../shared/data/NASDAQ --cli build/examples/stockmixer \\
        --stockmixer paper=runs/stockmixer_paper --stockmixer strict=runs/stockmixer_strict \\
        --pytorch paper=runs/pytorch_paper_seed0 --pytorch strict=runs/pytorch_strict_seed0 \\
        --plots docs/results > tables.md

--stockmixer PROTOCOL=DIR: a `train --seeds K` folder (DIR/seed_<s>/summary.json, metrics.jsonl,
best.safetensors). --pytorch PROTOCOL=DIR: one or more folders of pytorch_reference.py runs (repeat the
option for more seeds). Prints the markdown tables; writes two PNGs into --plots (needs Debian's
python3-matplotlib):

  loss.png  training and validation loss per epoch, every stockmixer seed and every PyTorch run, per
            protocol;
  top5.png  over the test period, the original's additive backtest (1 + the running sum of daily
            returns) of the predicted top 5 (the best-validation weights of each paper-protocol seed,
            scored day by day with `stockmixer predict`) against the equal-weight market (the mean
            realised return of the valid stocks). The script checks that its top-5 sum equals the
            bt_long5 the trainer reported for that run.
"""
import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
from make_eod_fixtures import get_batch  # noqa: E402  (the original train.py's windows)

METRICS = [("IC", "IC"), ("RIC", "RIC (ICIR)"), ("prec_10", "prec@10"), ("sharpe5", "SR"), ("rank_ic", "rank IC")]


def protocol_dirs(items):
    out = {}
    for item in items or []:
        protocol, _, path = item.partition("=")
        if not path:
            sys.exit(f"results_page: expected PROTOCOL=DIR, got {item!r}")
        out.setdefault(protocol, []).append(Path(path))
    return out


def stockmixer_runs(folder):
    runs = sorted(folder.glob("seed_*/summary.json"), key=lambda p: int(p.parent.name.split("_")[1]))
    if not runs:
        sys.exit(f"results_page: no seed_*/summary.json under {folder}")
    return [(p.parent, json.loads(p.read_text())) for p in runs]


def pytorch_runs(folders):
    """summary.json of each run; a run still going (or stopped) is summarised from its metrics.jsonl so
    far, as the same rule would (the epoch of lowest validation loss), and labelled with its epochs."""
    out = []
    for f in folders:
        s = f / "summary.json"
        if s.exists():
            out.append((f, json.loads(s.read_text())))
            continue
        log = read_jsonl(f / "metrics.jsonl")
        if not log:
            sys.exit(f"results_page: {f} has neither summary.json nor any epoch in metrics.jsonl")
        best = min(log, key=lambda e: e["valid"]["loss"])
        out.append((f, {"best_epoch": best["epoch"], "valid": best["valid"], "test": best["test"],
                        "seconds": sum(e["seconds"] for e in log), "epochs_done": len(log), "partial": True}))
    return out


def mean_std(values):
    v = np.array([x for x in values if x is not None and np.isfinite(x)], dtype=float)
    if v.size == 0:
        return "n/a"
    if v.size == 1:
        return f"{v[0]:.4f}"
    return f"{v.mean():.4f} ± {v.std():.4f}"  # population std, as `stockmixer train --seeds`


def minutes(seconds):
    return f"{np.mean(seconds) / 60:.1f} min"


def table(rows):
    head = "| | runs | " + " | ".join(name for _, name in METRICS) + " | best epoch | wall time per run |"
    lines = [head, "|" + "---|" * (len(METRICS) + 4)]
    for label, summaries, wall in rows:
        cells = [mean_std([s["test"].get(k) for s in summaries]) for k, _ in METRICS]
        epochs = ", ".join(str(s["best_epoch"]) for s in summaries) if "best_epoch" in summaries[0] else "–"
        lines.append(f"| {label} | {len(summaries)} | " + " | ".join(cells) + f" | {epochs} | {wall} |")
    return "\n".join(lines)


def per_run_table(label, runs):
    lines = [f"| {label} | seed | best epoch | " + " | ".join(n for _, n in METRICS) + " | seconds | median step |",
             "|" + "---|" * (len(METRICS) + 5)]
    for folder, s in runs:
        seed = s.get("seed", s.get("config", {}).get("seed"))
        step = s.get("median_step_ms")
        best = f"{s['best_epoch']} (of {s['epochs_done']} run so far)" if s.get("partial") else s["best_epoch"]
        lines.append(f"| {folder.name} | {seed} | {best} | "
                     + " | ".join(f"{s['test'][k]:.4f}" if s["test"].get(k) is not None else "n/a" for k, _ in METRICS)
                     + f" | {s['seconds']:.0f} | {f'{step:.1f} ms' if step else '–'} |")
    return "\n".join(lines)


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_losses(plt, sm, pt, path):
    protocols = sorted(sm)
    fig, axes = plt.subplots(1, len(protocols), figsize=(6 * len(protocols), 4), squeeze=False, sharey=True)
    for ax, protocol in zip(axes[0], protocols):
        for i, (folder, _) in enumerate(sm[protocol]):
            log = read_jsonl(folder / "metrics.jsonl")
            ep = [e["epoch"] for e in log]
            ax.plot(ep, [e["train"]["loss"] for e in log], color="tab:blue", lw=0.8, alpha=0.7,
                    label="stockmixer train" if i == 0 else None)
            ax.plot(ep, [e["valid"]["loss"] for e in log], color="tab:orange", lw=0.8, alpha=0.7,
                    label="stockmixer validation" if i == 0 else None)
        for i, (folder, _) in enumerate(pt.get(protocol, [])):
            log = read_jsonl(folder / "metrics.jsonl")
            ep = [e["epoch"] for e in log]
            ax.plot(ep, [e["train"]["loss"] for e in log], "k--", lw=1, label="PyTorch train" if i == 0 else None)
            ax.plot(ep, [e["valid"]["loss"] for e in log], "r--", lw=1,
                    label="PyTorch validation" if i == 0 else None)
        ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_title(f"NASDAQ, {protocol} protocol ({len(sm[protocol])} stockmixer seeds)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel("loss (MSE + 0.1 · rank loss)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def test_windows(args, tmp):
    """eod, mask, gt, price [N, D] exactly as training sees them (`stockmixer dataset`)."""
    subprocess.run([str(args.cli), "dataset", "--data", str(args.data), "--market", args.market, "--out", str(tmp)],
                   check=True, stdout=subprocess.DEVNULL)
    return [np.load(tmp / f"{n}.npy") for n in ("eod", "mask", "gt", "price")]


def top5_curves(args, runs, eod, mask, gt, price, tmp):
    T, steps, test_index = 16, 1, 1008
    days = mask.shape[1]
    first = test_index - T - steps + 1
    market, curves = [], []
    for k, (folder, summary) in enumerate(runs):
        daily = []
        for offset in range(first, days - T - steps + 1):
            x, m, base, g = get_batch(eod, mask, price, gt, offset, T, steps)
            m, base, g = m[:, 0], base[:, 0], g[:, 0]
            np.save(tmp / "x.npy", np.ascontiguousarray(x, dtype=np.float32))
            subprocess.run([str(args.cli), "predict", "--weights", str(folder / "best.safetensors"),
                            "--input", str(tmp / "x.npy"), "--out", str(tmp / "p.npy")], check=True)
            rr = (np.load(tmp / "p.npy")[:, 0] - base) / base
            valid = m >= 0.5
            order = np.argsort(rr)[::-1]
            top = [n for n in order if valid[n]][:5]
            daily.append(float(np.sum(g[top])) / 5)
            if k == 0:
                market.append(float(np.mean(g[valid])) if valid.any() else 0.0)
        reported = summary["test"]["bt_long5"] - 1
        if abs(sum(daily) - reported) > 1e-4 * max(1.0, abs(reported)):
            sys.exit(f"results_page: {folder}: top-5 sum {sum(daily):.6f} differs from the reported {reported:.6f}")
        curves.append((folder.name, np.cumsum(daily)))
    return np.cumsum(market), curves


def plot_top5(plt, market, curves, path):
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, (name, c) in enumerate(curves):
        ax.plot(1 + c, color="tab:blue", lw=1, alpha=0.8, label="predicted top 5, one line per seed" if i == 0 else None)
    ax.plot(1 + market, "k", lw=1.5, label="equal-weight market (valid stocks)")
    ax.set_xlabel("test day (0 = day 1008 of the data, the first test day)")
    ax.set_ylabel("1 + cumulative daily return (additive)")
    ax.set_title("Test period: best-validation weights, paper protocol")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--market", default="NASDAQ")
    ap.add_argument("--cli", type=Path, required=True, help="the stockmixer executable")
    ap.add_argument("--stockmixer", action="append", required=True, metavar="PROTOCOL=DIR")
    ap.add_argument("--pytorch", action="append", metavar="PROTOCOL=DIR")
    ap.add_argument("--plots", type=Path, help="folder for loss.png and top5.png (omit: tables only)")
    args = ap.parse_args()

    sm = {p: stockmixer_runs(d[0]) for p, d in protocol_dirs(args.stockmixer).items()}
    pt = {p: pytorch_runs(d) for p, d in protocol_dirs(args.pytorch).items()}

    rows = []
    for protocol in sorted(sm):
        runs = sm[protocol]
        rows.append((f"stockmixer, {protocol}", [s for _, s in runs], minutes([s["seconds"] for _, s in runs])))
        if protocol in pt:
            runs = pt[protocol]
            partial = [s["epochs_done"] for _, s in runs if s.get("partial")]
            note = f" (stopped after {', '.join(map(str, partial))} epochs)" if partial else ""
            rows.append((f"PyTorch reference, {protocol}{note}", [s for _, s in runs],
                         minutes([s["seconds"] for _, s in runs])))
    base = next(iter(sm.values()))[0][1]["baselines_test"]
    rows.append(("1-day reversal", [{"test": base["reversal"]}], "–"))
    rows.append(("zero prediction", [{"test": base["zero"]}], "–"))
    print("## Test metrics (mean ± population std over runs)\n")
    print(table(rows))
    print("\n## Every run\n")
    for protocol in sorted(sm):
        print(per_run_table(f"stockmixer {protocol}", sm[protocol]) + "\n")
        if protocol in pt:
            print(per_run_table(f"PyTorch {protocol}", pt[protocol]) + "\n")

    if args.plots:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        args.plots.mkdir(parents=True, exist_ok=True)
        plot_losses(plt, sm, pt, args.plots / "loss.png")
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            eod, mask, gt, price = test_windows(args, tmp)
            market, curves = top5_curves(args, sm.get("paper", next(iter(sm.values()))), eod, mask, gt, price, tmp)
        plot_top5(plt, market, curves, args.plots / "top5.png")
        print(f"\nfinal additive value over the test period: market {1 + market[-1]:.4f}; top 5 "
              + ", ".join(f"{name} {1 + c[-1]:.4f}" for name, c in curves))


if __name__ == "__main__":
    main()
