#!/usr/bin/python3
"""The original PyTorch StockMixer, trained with the original protocol on the same data, for the results
page and for timing comparisons. Run with Debian's python3-torch:

    /usr/bin/python3 benchmarks/pytorch_reference.py --data ../shared/data/NASDAQ --epochs 100 --seed 0 \\
        --out runs/pytorch_seed0 [--strict-split] [--threads 1]

It is src/train.py with the article's code for every piece: load_EOD_data (tests/make_eod_fixtures.py),
the model and get_loss (tests/make_model_fixtures.py), evaluate (tests/make_metrics_fixtures.py), all
copied verbatim from the article there. The loop is train.py's: np.random.shuffle of
arange(valid_index), the first valid_index - T - steps + 1 offsets, one date per step, Adam(lr 1e-3),
validation and test every epoch, the best validation loss selecting the reported metrics.
--strict-split uses only the offsets whose target day lies before valid_index (as stockmixer's).
Writes metrics.jsonl (one line per epoch) and summary.json in the shape stockmixer's train writes.
"""
import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
from make_eod_fixtures import get_batch as original_get_batch, load_EOD_data  # noqa: E402
from make_metrics_fixtures import original_evaluate as evaluate  # noqa: E402
from make_model_fixtures import StockMixer, get_loss  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="a folder laid out as ../shared/data/NASDAQ")
    ap.add_argument("--market", default="NASDAQ")
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--strict-split", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    np.random.seed(123456789 + args.seed)  # the original: np.random.seed(123456789), torch seed 12345678
    torch.random.manual_seed(12345678 + args.seed)
    lookback_length, steps, alpha, lr = 16, 1, 0.1, 0.001
    valid_index, test_index, market_num = 756, 1008, 20

    tickers = [t.strip() for t in (args.data / f"{args.market}_tickers_qualify_dr-0.98_min-5_smooth.csv")
               .read_text().splitlines() if t.strip()]
    eod_data, mask_data, gt_data, price_data = load_EOD_data(str(args.data / "2013-01-01") + "/", args.market,
                                                             tickers, steps)
    stock_num, trade_dates, fea_num = eod_data.shape[0], mask_data.shape[1], eod_data.shape[2]
    model = StockMixer(stocks=stock_num, time_steps=lookback_length, channels=fea_num, market=market_num, scale=3)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)

    def get_batch(offset):
        return original_get_batch(eod_data, mask_data, price_data, gt_data, offset, lookback_length, steps)

    def validate(start_index, end_index):
        with torch.no_grad():
            days = end_index - start_index
            pred, gt, mask = (np.zeros([stock_num, days], dtype=float) for _ in range(3))
            loss = reg_loss = rank_loss = 0.0
            first = start_index - lookback_length - steps + 1
            for cur_offset in range(first, end_index - lookback_length - steps + 1):
                data_batch, mask_batch, price_batch, gt_batch = map(torch.Tensor, get_batch(cur_offset))
                prediction = model(data_batch)
                cur_loss, cur_reg, cur_rank, cur_rr = get_loss(prediction, gt_batch, price_batch, mask_batch,
                                                               stock_num, alpha)
                loss += cur_loss.item()
                reg_loss += cur_reg.item()
                rank_loss += cur_rank.item()
                pred[:, cur_offset - first] = cur_rr[:, 0]
                gt[:, cur_offset - first] = gt_batch[:, 0]
                mask[:, cur_offset - first] = mask_batch[:, 0]
            perf = evaluate(pred, gt, mask)
            perf = {k: (float(v) if np.isfinite(v) else None) for k, v in perf.items()}
            perf.update(loss=loss / days, reg_loss=reg_loss / days, rank_loss=rank_loss / days)
            return perf

    args.out.mkdir(parents=True, exist_ok=True)
    used = valid_index - lookback_length - steps + 1
    batch_offsets = np.arange(start=0, stop=used if args.strict_split else valid_index, dtype=int)
    best_valid_loss, best = np.inf, None
    start = time.time()
    step_times = []
    with open(args.out / "metrics.jsonl", "w") as log:
        for epoch in range(args.epochs):
            t0 = time.time()
            np.random.shuffle(batch_offsets)
            tra = np.zeros(3)
            for j in range(used):
                s0 = time.perf_counter()
                data_batch, mask_batch, price_batch, gt_batch = map(torch.Tensor, get_batch(batch_offsets[j]))
                optimizer.zero_grad()
                prediction = model(data_batch)
                cur_loss, cur_reg, cur_rank, _ = get_loss(prediction, gt_batch, price_batch, mask_batch, stock_num,
                                                          alpha)
                cur_loss.backward()
                optimizer.step()
                step_times.append(time.perf_counter() - s0)
                tra += [cur_loss.item(), cur_reg.item(), cur_rank.item()]
            tra /= used
            valid, test = validate(valid_index, test_index), validate(test_index, trade_dates)
            entry = {"epoch": epoch + 1, "train": dict(zip(("loss", "reg_loss", "rank_loss"), tra.tolist())),
                     "valid": valid, "test": test, "seconds": time.time() - t0,
                     "best": valid["loss"] < best_valid_loss}
            if entry["best"]:
                best_valid_loss, best = valid["loss"], entry
            log.write(json.dumps(entry) + "\n")
            log.flush()
            print(f"epoch {epoch + 1:3d}/{args.epochs}  train loss {tra[0]:.3e}  valid loss {valid['loss']:.3e} "
                  f"IC {valid['IC']:+.4f}  test IC {test['IC']:+.4f}  {entry['seconds']:.1f}s", file=sys.stderr)
    summary = {"best_epoch": best["epoch"], "valid": best["valid"], "test": best["test"], "epochs": args.epochs,
               "seconds": time.time() - start, "median_step_ms": 1000 * float(np.median(step_times)),
               "threads": args.threads, "seed": args.seed, "strict_split": args.strict_split,
               "data": {"source": str(args.data), "market": args.market, "stocks": stock_num, "days": trade_dates},
               "torch": torch.__version__}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
