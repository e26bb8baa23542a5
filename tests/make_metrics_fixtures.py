#!/usr/bin/python3
"""Writes the fixtures tests/test_metrics.cpp compares stockmixer::metrics::evaluate against.

Run with Debian's python3 (numpy 1.24 and python3-pandas 1.5, installed by cmake/install-deps.sh):

    /usr/bin/python3 tests/make_metrics_fixtures.py            # rewrite tests/fixtures/metrics/
    /usr/bin/python3 tests/make_metrics_fixtures.py --check    # regenerate in a temp dir, compare

The reference is the original StockMixer `evaluate` (src/evaluator.py), quoted below in
ORIGINAL_EVALUATE exactly as the article prints it, and run as it is. Every case is a folder
tests/fixtures/metrics/<case>/ holding
    prediction.npy, ground_truth.npy, mask.npy   [N, days] float64, stock-major as the original's
    expected.json   what the original returns (mse, IC, RIC, sharpe5, prec_10), the accumulators it
                    keeps but never returns (mrr_top, all_miss_days_top, bt_long, bt_long5, bt_long10,
                    read from its frame when it returns), its per-day IC, and the extras
                    (rank_ic, rank_icir, ic_valid, ic_valid_ir, days, skipped_days) computed with
                    pandas. NaN and infinities are written as null (JSON has no NaN).
and tests/fixtures/metrics/argsort/ holds tie-heavy arrays with np.argsort's order for them, in its
default kind (introsort, "quicksort") and in kind="heapsort" (introsort's fallback), so that our port
of numpy's argsort is checked on ties, not only on distinct values.

Cases (seeded; prediction and ground truth values are distinct within a day except in "ties"):
    masked_50x30      N = 50, 30 days, ~10 % of the entries masked
    nasdaq_1026x20    N = 1026 (NASDAQ's width), 20 days, ~5 % masked
    sparse_days       N = 20, 12 days: one day with every stock masked, one with one valid stock,
                      one with 3 valid stocks (fewer than 5 and 10), one with 7 (fewer than 10)
    ties              N = 40, 15 days, predictions and ground truths rounded to a coarse grid, so
                      that the top-1/5/10 picks depend on np.argsort's order among equal values
The original raises IndexError on a day with every stock masked (`list(pre_top1)[0]` of an empty
set); for "sparse_days" the reference is the original with that one line guarded (PATCHED_LINE:
the day's top-1 return counts as 0), and expected.json records the original's error.
"""
import json
import math
import shutil
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fixture_tools import fixture_main  # noqa: E402

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "fixtures" / "metrics"

# ---- the reference implementation ----------------------------------------------------------------
# The original StockMixer evaluator (SJTU-DMTai/StockMixer, src/evaluator.py), copied verbatim from
# /work/shared/reference/stockmixer-article.txt ("def evaluate(prediction, ground_truth, mask,
# report=False)"). The article's text lost its indentation and prints typographic quotes; both are
# restored as in the authors' repository. Nothing else is changed: this IS the reference.
ORIGINAL_EVALUATE = """\
def evaluate(prediction, ground_truth, mask, report=False):
    assert ground_truth.shape == prediction.shape, 'shape mis-match'
    performance = {}
    performance['mse'] = np.linalg.norm((prediction - ground_truth) * mask) ** 2 / np.sum(mask)
    df_pred = pd.DataFrame(prediction * mask)
    df_gt = pd.DataFrame(ground_truth * mask)
    ic = []
    mrr_top = 0.0
    all_miss_days_top = 0
    bt_long = 1.0
    bt_long5 = 1.0
    bt_long10 = 1.0
    irr = 0.0
    sharpe_li5 = []
    prec_10 = []
    for i in range(prediction.shape[1]):
        ic.append(df_pred[i].corr(df_gt[i]))
        rank_gt = np.argsort(ground_truth[:, i])
        gt_top1 = set()
        gt_top5 = set()
        gt_top10 = set()
        for j in range(1, prediction.shape[0] + 1):
            cur_rank = rank_gt[-1 * j]
            if mask[cur_rank][i] < 0.5:
                continue
            if len(gt_top1) < 1:
                gt_top1.add(cur_rank)
            if len(gt_top5) < 5:
                gt_top5.add(cur_rank)
            if len(gt_top10) < 10:
                gt_top10.add(cur_rank)
        rank_pre = np.argsort(prediction[:, i])
        pre_top1 = set()
        pre_top5 = set()
        pre_top10 = set()
        for j in range(1, prediction.shape[0] + 1):
            cur_rank = rank_pre[-1 * j]
            if mask[cur_rank][i] < 0.5:
                continue
            if len(pre_top1) < 1:
                pre_top1.add(cur_rank)
            if len(pre_top5) < 5:
                pre_top5.add(cur_rank)
            if len(pre_top10) < 10:
                pre_top10.add(cur_rank)
        top1_pos_in_gt = 0
        for j in range(1, prediction.shape[0] + 1):
            cur_rank = rank_gt[-1 * j]
            if mask[cur_rank][i] < 0.5:
                continue
            else:
                top1_pos_in_gt += 1
                if cur_rank in pre_top1:
                    break
        if top1_pos_in_gt == 0:
            all_miss_days_top += 1
        else:
            mrr_top += 1.0 / top1_pos_in_gt
        real_ret_rat_top = ground_truth[list(pre_top1)[0]][i]
        bt_long += real_ret_rat_top
        gt_irr = 0.0
        for gt in gt_top10:
            gt_irr += ground_truth[gt][i]
        real_ret_rat_top5 = 0
        for pre in pre_top5:
            real_ret_rat_top5 += ground_truth[pre][i]
        irr += real_ret_rat_top5
        real_ret_rat_top5 /= 5
        bt_long5 += real_ret_rat_top5
        prec = 0.0
        real_ret_rat_top10 = 0
        for pre in pre_top10:
            real_ret_rat_top10 += ground_truth[pre][i]
            prec += (ground_truth[pre][i] >= 0)
        prec_10.append(prec / 10)
        real_ret_rat_top10 /= 10
        bt_long10 += real_ret_rat_top10
        sharpe_li5.append(real_ret_rat_top5)
    performance['IC'] = np.mean(ic)
    performance['RIC'] = np.mean(ic) / np.std(ic)
    sharpe_li5 = np.array(sharpe_li5)
    performance['sharpe5'] = (np.mean(sharpe_li5)/np.std(sharpe_li5))*15.87
    performance['prec_10'] = np.mean(prec_10)
    return performance
"""

# The one line that fails on a day with no valid stock, and its guarded form (used only for cases
# where the original raises; stockmixer does the same: that day's top-1 return is 0).
ORIGINAL_LINE = "real_ret_rat_top = ground_truth[list(pre_top1)[0]][i]"
PATCHED_LINE = "real_ret_rat_top = ground_truth[list(pre_top1)[0]][i] if pre_top1 else 0.0"
assert ORIGINAL_EVALUATE.count(ORIGINAL_LINE) == 1


def _compile(source):
    scope = {"np": np, "pd": pd}
    exec(compile(source, "<original evaluate>", "exec"), scope)
    return scope["evaluate"]


original_evaluate = _compile(ORIGINAL_EVALUATE)
patched_evaluate = _compile(ORIGINAL_EVALUATE.replace(ORIGINAL_LINE, PATCHED_LINE))

# The accumulators the original keeps in locals but never returns.
ACCUMULATORS = ("ic", "mrr_top", "all_miss_days_top", "bt_long", "bt_long5", "bt_long10")


def run_reference(fn, prediction, ground_truth, mask):
    """Runs fn (the original evaluate) unchanged, reading its locals from the frame as it returns."""
    captured = {}

    def profiler(frame, event, arg):
        if event == "return" and frame.f_code is fn.__code__:
            captured.update({k: frame.f_locals[k] for k in ACCUMULATORS})

    old = sys.getprofile()
    sys.setprofile(profiler)
    try:
        performance = fn(prediction, ground_truth, mask)
    finally:
        sys.setprofile(old)
    return performance, captured


# ---- the extras (NaN-robust), with pandas ---------------------------------------------------------

def extras(prediction, ground_truth, mask):
    """rank_ic / rank_icir (Spearman, average ranks) and ic_valid / ic_valid_ir (Pearson), per day over
    the valid stocks (mask >= 0.5); a day with fewer than 2 valid stocks or a constant prediction or
    ground truth among them is skipped. IR = mean / population std, NaN when the std is 0 or no day
    is kept."""
    rank, pearson, skipped = [], [], 0
    for i in range(prediction.shape[1]):
        valid = mask[:, i] >= 0.5
        p, g = prediction[valid, i], ground_truth[valid, i]
        if len(p) < 2 or np.all(p == p[0]) or np.all(g == g[0]):
            skipped += 1
            continue
        # DataFrame.corr's Spearman (pandas' own average-rank code; Series.corr would call scipy).
        rank.append(float(pd.DataFrame({"p": p, "g": g}).corr(method="spearman").iloc[0, 1]))
        pearson.append(float(pd.Series(p).corr(pd.Series(g))))

    def mean_ir(xs):
        if not xs:
            return math.nan, math.nan
        m, s = float(np.mean(xs)), float(np.std(xs))
        return m, (m / s if s > 0 else math.nan)

    rank_ic, rank_icir = mean_ir(rank)
    ic_valid, ic_valid_ir = mean_ir(pearson)
    return {"rank_ic": rank_ic, "rank_icir": rank_icir, "ic_valid": ic_valid, "ic_valid_ir": ic_valid_ir,
            "days": int(prediction.shape[1]), "skipped_days": skipped}


# ---- cases -----------------------------------------------------------------------------------------

def finite_or_none(x):
    x = float(x)
    return x if math.isfinite(x) else None


def write_case(root, name, prediction, ground_truth, mask, note):
    out = root / name
    out.mkdir(parents=True)
    for arr, fname in ((prediction, "prediction"), (ground_truth, "ground_truth"), (mask, "mask")):
        assert arr.dtype == np.float64 and arr.shape == prediction.shape
        np.save(out / f"{fname}.npy", arr)

    original_error = None
    try:
        performance, acc = run_reference(original_evaluate, prediction, ground_truth, mask)
        reference = "original"
    except IndexError as e:
        original_error = f"IndexError: {e}"
        performance, acc = run_reference(patched_evaluate, prediction, ground_truth, mask)
        reference = "original with the top-1 line guarded: " + PATCHED_LINE
    days = prediction.shape[1]
    counted = days - acc["all_miss_days_top"]
    expected = {
        "note": note,
        "reference": reference,
        "original_error": original_error,
        "mse": finite_or_none(performance["mse"]),
        "IC": finite_or_none(performance["IC"]),
        "RIC": finite_or_none(performance["RIC"]),
        "sharpe5": finite_or_none(performance["sharpe5"]),
        "prec_10": finite_or_none(performance["prec_10"]),
        "mrr_top_sum": acc["mrr_top"],
        "all_miss_days_top": acc["all_miss_days_top"],
        "mrr_top": finite_or_none(acc["mrr_top"] / counted) if counted else None,
        "bt_long": finite_or_none(acc["bt_long"]),
        "bt_long5": finite_or_none(acc["bt_long5"]),
        "bt_long10": finite_or_none(acc["bt_long10"]),
        "ic_days": [finite_or_none(x) for x in acc["ic"]],
    }
    expected.update({k: (finite_or_none(v) if isinstance(v, float) else v)
                     for k, v in extras(prediction, ground_truth, mask).items()})
    (out / "expected.json").write_text(json.dumps(expected, indent=1, allow_nan=False) + "\n")


def distinct_normal(rng, shape, scale):
    """Gaussian values, checked distinct within each day (column), so np.argsort has no ties."""
    x = rng.standard_normal(shape) * scale
    for i in range(shape[1]):
        assert len(np.unique(x[:, i])) == shape[0]
    return x


def signal_case(rng, n, days, masked, noise=1.0):
    """Ground truth ~ N(0, 0.02²); prediction = ground truth + noise, so IC is clearly positive."""
    gt = distinct_normal(rng, (n, days), 0.02)
    pred = gt + distinct_normal(rng, (n, days), 0.02 * noise)
    for i in range(days):
        assert len(np.unique(pred[:, i])) == n
    mask = (rng.random((n, days)) >= masked).astype(np.float64)
    return pred, gt, mask


def write_argsort(root):
    """Tie-heavy arrays and np.argsort's answer for them (default kind, and heapsort)."""
    out = root / "argsort"
    out.mkdir(parents=True)
    rng = np.random.default_rng(99)
    for n in (5, 16, 17, 40, 1026):
        values = rng.integers(0, 4, n).astype(np.float64) * 0.01
        np.save(out / f"values_{n}.npy", values)
        np.save(out / f"quicksort_{n}.npy", np.argsort(values).astype(np.int64))
        np.save(out / f"heapsort_{n}.npy", np.argsort(values, kind="heapsort").astype(np.int64))


def write_all(root):
    warnings.simplefilter("ignore", RuntimeWarning)  # NaN correlations and divisions, as intended
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)

    rng = np.random.default_rng(20240101)
    write_case(root, "masked_50x30", *signal_case(rng, 50, 30, 0.10),
               "N = 50, 30 days, ~10 % masked, distinct values")

    rng = np.random.default_rng(20240102)
    write_case(root, "nasdaq_1026x20", *signal_case(rng, 1026, 20, 0.05, noise=3.0),
               "N = 1026, 20 days, ~5 % masked, distinct values")

    rng = np.random.default_rng(20240103)
    pred, gt, mask = signal_case(rng, 20, 12, 0.10)
    mask[:, 3] = 0.0                       # every stock masked: IC NaN, the original raises
    mask[:, 5] = 0.0
    mask[7, 5] = 1.0                       # one valid stock
    mask[:, 8] = 0.0
    mask[[2, 11, 17], 8] = 1.0             # three valid stocks: top-5 and top-10 sums still / 5, / 10
    mask[:, 10] = 0.0
    mask[[0, 3, 4, 9, 12, 15, 19], 10] = 1.0  # seven valid stocks
    write_case(root, "sparse_days", pred, gt, mask,
               "N = 20, 12 days; day 3 all masked, day 5 one valid stock, day 8 three, day 10 seven")

    rng = np.random.default_rng(20240104)
    gt = np.round(rng.standard_normal((40, 15)) * 2.0) * 0.01      # about 9 distinct values a day
    pred = np.round((gt + rng.standard_normal((40, 15)) * 0.02) * 200.0) / 200.0
    mask = (rng.random((40, 15)) >= 0.1).astype(np.float64)
    write_case(root, "ties", pred, gt, mask,
               "N = 40, 15 days, predictions and ground truths on a coarse grid: many ties")
    # The case must depend on np.argsort's order among ties: a stable sort picks other stocks.
    stable_source = ORIGINAL_EVALUATE
    for column in ("ground_truth[:, i]", "prediction[:, i]"):
        call = f"np.argsort({column})"
        assert stable_source.count(call) == 1
        stable_source = stable_source.replace(call, f"np.argsort({column}, kind='stable')")
    stable = _compile(stable_source)
    _, acc_default = run_reference(original_evaluate, pred, gt, mask)
    _, acc_stable = run_reference(stable, pred, gt, mask)
    assert acc_default["mrr_top"] != acc_stable["mrr_top"] and acc_default["bt_long"] != acc_stable["bt_long"]

    write_argsort(root)


def main():
    return fixture_main(__doc__, DEFAULT_OUT, write_all, tol=1e-12, json_tol=1e-12)


if __name__ == "__main__":
    sys.exit(main())
