#!/usr/bin/python3
"""Replays a benchmarks/pytorch_reference.py run in stockmixer: the same initial weights and the same
shuffled window order, epoch by epoch, and prints both runs' per-epoch figures side by side. Two
seeds of either implementation differ by far more than the two implementations do; this separates
the two: with initialisation and order shared, what is left is float rounding (the kernels' sums in
another order), which grows slowly through training.

    /usr/bin/python3 benchmarks/replay_pytorch.py --data ../shared/data/NASDAQ --cli build/examples/stockmixer \\
        --pytorch-run runs/pytorch_paper_seed0 --epochs 3 --out runs/replay_paper_seed0

The initial weights and the order are rebuilt from the reference run's seed exactly as
pytorch_reference.py draws them (torch.random.manual_seed(12345678 + seed) right before the model is
built; np.random.seed(123456789 + seed) and one np.random.shuffle per epoch of the offsets), written
as init.safetensors and order.txt, and given to `stockmixer train --init-weights --order`.
"""
import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
from make_io_fixtures import write_safetensors  # noqa: E402
from make_model_fixtures import StockMixer  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--market", default="NASDAQ")
    ap.add_argument("--cli", type=Path, required=True)
    ap.add_argument("--pytorch-run", type=Path, required=True, help="a pytorch_reference.py output folder")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()

    log = [json.loads(line) for line in (args.pytorch_run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    summary_path = args.pytorch_run / "summary.json"
    if summary_path.exists():
        summary = json.loads(summary_path.read_text())
        seed, strict = summary["seed"], summary["strict_split"]
    else:  # a run still going: its folder name says the seed, and strict runs say so in the name
        name = args.pytorch_run.name
        seed, strict = int(name.rsplit("seed", 1)[1]), "strict" in name
        print(f"replay_pytorch: {summary_path} missing; taking seed {seed}, strict {strict} from the folder name")
    if len(log) < args.epochs:
        sys.exit(f"replay_pytorch: the reference run has {len(log)} epochs, fewer than --epochs {args.epochs}")

    tickers = [t for t in (args.data / f"{args.market}_tickers_qualify_dr-0.98_min-5_smooth.csv").read_text().split() if t]
    lookback, steps, valid_index = 16, 1, 756
    used = valid_index - lookback - steps + 1
    torch.random.manual_seed(12345678 + seed)
    model = StockMixer(stocks=len(tickers), time_steps=lookback, channels=5, market=20, scale=3)
    args.out.mkdir(parents=True, exist_ok=True)
    write_safetensors(args.out / "init.safetensors", {k: v.detach().clone() for k, v in model.state_dict().items()},
                      {"format": "pt"})
    np.random.seed(123456789 + seed)
    offsets = np.arange(start=0, stop=used if strict else valid_index, dtype=int)
    with open(args.out / "order.txt", "w") as f:
        for _ in range(args.epochs):
            np.random.shuffle(offsets)
            f.write(" ".join(map(str, offsets[:used])) + "\n")

    cmd = [str(args.cli), "train", "--data", str(args.data), "--market", args.market, "--epochs", str(args.epochs),
           "--init-weights", str(args.out / "init.safetensors"), "--order", str(args.out / "order.txt"),
           "--out", str(args.out / "stockmixer"), "--overwrite"] + (["--strict-split"] if strict else [])
    run = subprocess.run(cmd, capture_output=True, text=True)
    if run.returncode != 0:
        sys.exit(f"replay_pytorch: {' '.join(cmd)} failed:\n{run.stderr[-3000:]}")
    ours = [json.loads(line) for line in (args.out / "stockmixer" / "metrics.jsonl").read_text().splitlines()]

    print(f"replay of {args.pytorch_run} (seed {seed}, {'strict' if strict else 'paper'} protocol): "
          "PyTorch | stockmixer, same initial weights and order\n")
    print("| epoch | train loss | valid loss | valid IC | test IC |")
    print("|---|---|---|---|---|")
    for p, o in zip(log, ours):
        def pair(a, b, fmt):
            return f"{a:{fmt}} \\| {b:{fmt}}"
        print(f"| {o['epoch']} | {pair(p['train']['loss'], o['train']['loss'], '.4e')} "
              f"| {pair(p['valid']['loss'], o['valid']['loss'], '.4e')} | {pair(p['valid']['IC'], o['valid']['IC'], '+.4f')} "
              f"| {pair(p['test']['IC'], o['test']['IC'], '+.4f')} |")


if __name__ == "__main__":
    main()
