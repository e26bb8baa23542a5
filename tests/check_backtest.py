#!/usr/bin/python3
"""`stockmixer backtest` against an independent pandas computation.

On random predictions, returns and masks (invalid stocks every day, predictions on a coarse grid so
that many tie), for K in {1, 5, 10}, n_drop in {0, 2} and costs of 0 and 10 bps, the tool's
backtest.json and daily.csv must equal what this script computes with pandas within 1e-12 (absolute:
every figure is of order 1, and the two sides sum the same terms in different orders, each rounding by
about 1e-16). The holdings come from Qlib's TopkDropoutStrategy.generate_trade_decision written out
with pandas (method_sell "bottom", method_buy "top"; held stocks that are invalid that day sold first),
the ranking from np.argsort as the original evaluator takes its top-k. With K = 5, no drop and no
cost, gross.cum_additive must equal `stockmixer evaluate`'s bt_long5 exactly. The same arrays given as a
predictions.csv give the same figures, with the dates in daily.csv. equity.png is decoded with zlib
(every chunk's CRC, the zlib stream's Adler-32) and must be 800 x 450 and show the three curves'
colours. Bad inputs are refused with a message naming the file, and nothing is written.

    /usr/bin/python3 tests/check_backtest.py build/examples/stockmixer
"""
import argparse
import json
import math
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

TOL = 1e-12
FAILURES = []


def check(ok, what):
    if not ok:
        FAILURES.append(what)
        print("FAIL:", what)


def ranking(pred_col, valid_col):
    """The day's valid stocks, best first: np.argsort read from the end, as the original evaluate."""
    return [int(n) for n in np.argsort(pred_col)[::-1] if valid_col[n]]


def holdings_by_day(pred, mask, topk, n_drop):
    """Each day's held stocks: the top K, or Qlib's TopkDropout over the day's ranking."""
    N, D = pred.shape
    held, out = [], []
    for t in range(D):
        valid = mask[:, t] >= 0.5
        order = ranking(pred[:, t], valid)
        if n_drop == 0:
            held = order[:topk]
        else:
            # A score without ties: minus the place in the ranking (pandas then sorts as np.argsort did).
            pred_score = pd.Series([-float(k) for k in range(len(order))], index=order)
            current_stock_list = [n for n in held if valid[n]]
            last = pred_score.reindex(current_stock_list).sort_values(ascending=False).index
            today = list(pred_score[~pred_score.index.isin(last)].sort_values(ascending=False).index)[
                : n_drop + topk - len(last)]
            comb = pred_score.reindex(last.union(pd.Index(today))).sort_values(ascending=False).index
            sell = last[last.isin(list(comb)[-n_drop:])]
            buy = today[: len(sell) + topk - len(last)]
            held = [n for n in last if n not in set(sell)] + list(buy)
        out.append(list(held))
    return out


def pandas_backtest(pred, gt, mask, topk, n_drop, cost_bps):
    N, D = pred.shape
    rows, prev = [], pd.Series(dtype=float)
    market = []
    for t, held in enumerate(holdings_by_day(pred, mask, topk, n_drop)):
        w = pd.Series(1.0 / topk, index=held)
        ret = pd.Series(gt[held, t], index=held)
        turnover = w.sub(prev, fill_value=0.0).abs().sum()
        gross = (w * ret).sum()
        cost = turnover * cost_bps / 1e4
        rows.append({"gross": gross, "cost": cost, "net": gross - cost, "turnover": turnover})
        valid = mask[:, t] >= 0.5
        market.append(pd.Series(gt[valid, t]).mean())
        prev = w
    daily = pd.DataFrame(rows)
    daily["equity"] = (1 + daily["net"]).cumprod()

    def summary(r):
        equity = (1 + r).cumprod()
        peak = equity.cummax().clip(lower=1.0)
        ann = r.mean() * 252
        vol = r.std(ddof=0) * math.sqrt(252)
        return {"cum_additive": 1 + r.sum(), "cum_compound": equity.iloc[-1], "annual_return": ann,
                "annual_vol": vol, "sharpe": ann / vol if vol > 0 else float("nan"),
                "max_drawdown": max(0.0, ((peak - equity) / peak).max())}

    result = {"gross": summary(daily["gross"]), "net": summary(daily["net"]),
              "market": summary(pd.Series(market)), "turnover_mean": daily["turnover"].mean(),
              "days": D, "topk": topk, "n_drop": n_drop, "cost_bps": float(cost_bps)}
    return result, daily


def close(a, b):
    if a is None or b is None or (isinstance(b, float) and math.isnan(b)):
        return (a is None or (isinstance(a, float) and math.isnan(a))) and \
               (b is None or (isinstance(b, float) and math.isnan(b)))
    return abs(a - b) <= TOL


def compare(tool, ours, what):
    for key in ("gross", "net", "market"):
        for field, value in ours[key].items():
            check(close(tool[key][field], value), f"{what}: {key}.{field} = {tool[key][field]}, pandas {value}")
    for key in ("turnover_mean", "days", "topk", "n_drop", "cost_bps"):
        check(close(tool[key], ours[key]), f"{what}: {key} = {tool[key]}, pandas {ours[key]}")


def run(tool, *args):
    return subprocess.run([tool, *map(str, args)], capture_output=True, text=True, timeout=60)


def read_png(path):
    data = Path(path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "PNG signature"
    pos, chunks = 8, []
    while pos < len(data):
        n, = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        crc, = struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])
        assert zlib.crc32(kind + body) & 0xFFFFFFFF == crc, f"CRC of chunk {kind}"
        chunks.append((kind, body))
        pos += 12 + n
    assert chunks[0][0] == b"IHDR" and chunks[-1][0] == b"IEND"
    w, h, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    assert (depth, colour, interlace) == (8, 2, 0)
    raw = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))  # checks Adler-32
    rows = np.frombuffer(raw, dtype=np.uint8).reshape(h, 1 + 3 * w)
    assert (rows[:, 0] == 0).all(), "filter type 0 on every row"
    return rows[:, 1:].reshape(h, w, 3)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("tool")
    args = ap.parse_args()
    tool = args.tool
    rng = np.random.default_rng(16)
    N, D = 30, 45
    pred = np.floor(rng.random((N, D)) * 6) / 6 - 0.5          # 6 distinct values: ties everywhere
    gt = np.round((rng.random((N, D)) - 0.5) * 0.1, 4)
    mask = (rng.random((N, D)) > 0.25).astype(np.float64)
    mask[:12] = 1.0                                             # at least 12 valid stocks a day
    mask[np.arange(12), np.arange(12)] = 0.0                    # ... less one of them on the first 12 days
    pred[3, 7] = pred[4, 7] = 0.9                               # a tie at the very top
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name, a in (("P", pred), ("G", gt), ("M", mask)):
            np.save(tmp / f"{name}.npy", a)
        arrays = ["--pred", tmp / "P.npy", "--gt", tmp / "G.npy", "--mask", tmp / "M.npy"]

        for topk in (1, 5, 10):
            for n_drop in (0, 2):
                for cost in (0, 10):
                    what = f"K={topk} n_drop={n_drop} cost={cost}"
                    out = tmp / f"out_{topk}_{n_drop}_{cost}"
                    r = run(tool, "backtest", *arrays, "--topk", topk, "--n-drop", n_drop, "--cost-bps", cost,
                            "--out", out)
                    check(r.returncode == 0, f"{what}: exit {r.returncode}: {r.stderr}")
                    if r.returncode:
                        continue
                    tool_json = json.loads((out / "backtest.json").read_text())
                    check(json.loads(r.stdout) == tool_json, f"{what}: stdout differs from backtest.json")
                    ours, daily = pandas_backtest(pred, gt, mask, topk, n_drop, cost)
                    compare(tool_json, ours, what)
                    tool_daily = pd.read_csv(out / "daily.csv")
                    check(list(tool_daily.columns) == ["day", "gross", "cost", "net", "turnover", "equity"],
                          f"{what}: daily.csv columns {list(tool_daily.columns)}")
                    check((tool_daily["day"] == np.arange(D)).all(), f"{what}: daily.csv days")
                    for col in ("gross", "cost", "net", "turnover", "equity"):
                        err = np.abs(tool_daily[col].to_numpy() - daily[col].to_numpy()).max()
                        check(err <= TOL, f"{what}: daily.csv {col} differs from pandas by {err:.3g}")
                    if topk == 5 and n_drop == 0 and cost == 0:
                        ev = json.loads(run(tool, "evaluate", *arrays).stdout)
                        check(tool_json["gross"]["cum_additive"] == ev["bt_long5"],
                              f"gross.cum_additive {tool_json['gross']['cum_additive']!r} != bt_long5 "
                              f"{ev['bt_long5']!r}")
                    if n_drop == 2 and cost == 10:
                        top = json.loads((tmp / f"out_{topk}_0_10" / "backtest.json").read_text())
                        if topk > 1:
                            check(tool_json["turnover_mean"] < top["turnover_mean"],
                                  f"{what}: TopkDropout trades no less than top-K")

        # The same arrays as a predictions.csv (rows of valid stocks only, dates, a validation split).
        dates = pd.bdate_range("2023-01-02", periods=D).strftime("%Y-%m-%d")
        rows = [(dates[t], f"T{n:02d}", pred[n, t], gt[n, t], "test")
                for t in range(D) for n in range(N) if mask[n, t] >= 0.5]
        rows += [("2022-12-30", f"T{n:02d}", 1.0, 0.5, "valid") for n in range(N)]
        rows.sort(key=lambda r: (r[0], r[1]))
        pd.DataFrame(rows, columns=["date", "ticker", "score", "label", "split"]).to_csv(
            tmp / "predictions.csv", index=False, float_format="%.17g")
        r = run(tool, "backtest", "--predictions", tmp / "predictions.csv", "--topk", 5, "--n-drop", 2,
                "--cost-bps", 10, "--out", tmp / "csv")
        check(r.returncode == 0, f"predictions.csv: exit {r.returncode}: {r.stderr}")
        if r.returncode == 0:
            # Absent rows read as score 0: np.argsort's order among tied valid stocks depends on every value
            # it sorts, so the CSV's result is that of the arrays with 0 where the mask is 0.
            pred_csv = np.where(mask >= 0.5, pred, 0.0)
            compare(json.loads((tmp / "csv" / "backtest.json").read_text()), pandas_backtest(pred_csv, gt, mask, 5, 2, 10)[0],
                    "predictions.csv")
            csv_daily = pd.read_csv(tmp / "csv" / "daily.csv")
            check(list(csv_daily["date"]) == list(dates), "predictions.csv: daily.csv dates")

        # equity.png: a valid PNG of the stated size holding the three curves.
        try:
            img = read_png(tmp / "out_5_2_10" / "equity.png")
            check(img.shape == (450, 800, 3), f"equity.png shape {img.shape}")
            for rgb, name in (((150, 150, 150), "market"), ((40, 90, 200), "gross"), ((200, 40, 40), "net")):
                count = int((img == np.array(rgb, dtype=np.uint8)).all(axis=2).sum())
                check(count > 500, f"equity.png: {count} pixels of the {name} curve's colour {rgb}")
            check((img[0, 0] == 255).all() and (img[-1, -1] == 255).all(), "equity.png: white background")
        except AssertionError as e:
            check(False, f"equity.png: {e}")

        # Refusals: exit 1, a message naming the problem, nothing written.
        nan_pred = pred.copy()
        nan_pred[2, 5] = np.nan
        np.save(tmp / "nan.npy", nan_pred)
        np.save(tmp / "short.npy", pred[:, :10])
        cases = [
            (arrays + ["--topk", 29], "valid stocks (mask >= 0.5): at least topk are needed every day"),
            (arrays + ["--topk", 31], "holds 30 stocks"),
            (arrays[:4] + ["--topk", 5], "--mask is missing"),
            (arrays + ["--predictions", tmp / "predictions.csv", "--topk", 5], "not both"),
            (["--pred", tmp / "nan.npy"] + arrays[2:] + ["--topk", 5], "nan.npy: nan at stock 2, day 5"),
            (["--pred", tmp / "short.npy"] + arrays[2:] + ["--topk", 5], "short.npy is [30, 10]"),
            (arrays + ["--topk", 5, "--cost-bps", -1], "--cost-bps"),
            (arrays + ["--topk", 5, "--split", "test"], "--split selects rows of --predictions"),
            (["--predictions", tmp / "predictions.csv", "--split", "train", "--topk", 5], "no rows with split 'train'"),
        ]
        for extra, words in cases:
            out = tmp / "refused"
            r = run(tool, "backtest", *extra, "--out", out)
            check(r.returncode == 1 and words in r.stderr,
                  f"{' '.join(map(str, extra))}: exit {r.returncode}, stderr {r.stderr.strip()!r}, expected {words!r}")
            check(not out.exists(), f"{' '.join(map(str, extra))}: {out} was created")

    if FAILURES:
        print(f"{len(FAILURES)} check(s) failed")
        return 1
    print("backtest: the tool equals the pandas computation (12 configurations, the CSV input), bt_long5 exactly, "
          "equity.png decodes, 9 refusals")
    return 0


if __name__ == "__main__":
    sys.exit(main())
