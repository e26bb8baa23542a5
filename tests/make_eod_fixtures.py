#!/usr/bin/python3
"""Writes the fixtures tests/test_eod.cpp compares stockmixer/data/eod.hpp against.

Run with Debian's python3 (numpy 1.24, installed by cmake/install-deps.sh):

    /usr/bin/python3 tests/make_eod_fixtures.py            # rewrite tests/fixtures/eod/
    /usr/bin/python3 tests/make_eod_fixtures.py --check    # regenerate in a temp dir, compare

The reference is the original code, quoted below exactly as the StockMixer article prints it
(/work/shared/reference/stockmixer-article.txt): load_EOD_data, load_graph_relation_data,
load_relation_data and build_SFM_data (src/load_data.py) and the `if market_name == "SP500"` branch of
src/train.py. The article's text lost its indentation and prints typographic quotes; both are restored
as in the authors' repository. Three things around the code are not the original's, and change no
value: `tqdm` (not installed here) is a pass-through, the SP500 branch's hard-coded path
'../dataset/SP500/SP500.npy' is replaced by the fixture's file, and build_SFM_data's np.save of
<market>_sfm_data.npy runs in a temp directory, from where the array is read back.

Cases, each a folder tests/fixtures/eod/<case>/:
    nasdaq_small   market "NASDAQ", steps 1, tickers AAA BBB CCC, 8 rows of day, f1, f2, close: the
                   loader drops the last row. Missing features and closes (the 1.1 quirk in gt),
                   CRLF line ends and a blank line (BBB), and CCC's number spellings: spaces, '+',
                   '.5', '5.', exponents, 18 significant digits, -0.0, and 1.0000000596046448, which
                   is 1 + 2^-24 as a double and rounds to 1.0 in float32 (np.genfromtxt's
                   decimal -> double -> float32; a direct decimal -> float32 would give 1 + 2^-23).
    nyse_steps2    market "NYSE" (no drop), steps 2, tickers XA XB ZZZ, 6 rows of day, f1, close;
                   ZZZ's closes are all missing, XB's first two are.
        inputs.json                      market, steps, tickers, and each CSV file's exact text
        eod.npy, mask.npy, gt.npy, price.npy    what load_EOD_data returns (float32)
        sfm.npy                          what build_SFM_data saves for the same files (float32)
    sp500_f32      data.npy [2, 919, 2] float32 (4 days after the cut at 915)
    sp500_f64      data.npy [2, 917, 1] float64 (2 days after the cut)
        gt_steps<k>.npy   the branch's gt_data (float64) for steps k (1, 2, and D + 1, which reads
                          wrapped negative indices), price.npy, mask.npy (the branch's dtypes)
    relation       relation.npy [5, 5, 2] float64: self loops, an asymmetric pair, a pair whose two
                   channels cancel (sum 0: no relation)
        adjacency.npy, laplacian.npy     load_graph_relation_data(lap=False / True)
        mask.npy                          load_relation_data's mask
    relation_isolated   stock 2 has no relation at all: the original's adjacency has NaN in row and
                   column 2 (stored as it is: our relation_adjacency raises an Error instead)
"""
import contextlib
import io
import json
import os
import pickle
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fixture_tools import fixture_main  # noqa: E402

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "fixtures" / "eod"

# ---- the reference implementation (verbatim, see the docstring) ----------------------------------
ORIGINAL_LOAD_DATA = """\
def load_EOD_data(data_path, market_name, tickers, steps=1):
    eod_data = []
    masks = []
    ground_truth = []
    base_price = []
    for index, ticker in enumerate(tqdm(tickers)):
        single_EOD = np.genfromtxt(
            os.path.join(data_path, market_name + '_' + ticker + '_1.csv'),
            dtype=np.float32, delimiter=',', skip_header=False
        )
        if market_name == 'NASDAQ':
            single_EOD = single_EOD[:-1, :]
        if index == 0:
            print('single EOD data shape:', single_EOD.shape)
            eod_data = np.zeros([len(tickers), single_EOD.shape[0],
                                 single_EOD.shape[1] - 1], dtype=np.float32)
            masks = np.ones([len(tickers), single_EOD.shape[0]],
                            dtype=np.float32)
            ground_truth = np.zeros([len(tickers), single_EOD.shape[0]],
                                    dtype=np.float32)
            base_price = np.zeros([len(tickers), single_EOD.shape[0]],
                                  dtype=np.float32)
        for row in range(single_EOD.shape[0]):
            if abs(single_EOD[row][-1] + 1234) < 1e-8:
                masks[index][row] = 0.0
            elif row > steps - 1 and abs(single_EOD[row - steps][-1] + 1234) \\
                    > 1e-8:
                ground_truth[index][row] = \\
                    (single_EOD[row][-1] - single_EOD[row - steps][-1]) / \\
                    single_EOD[row - steps][-1]
            for col in range(single_EOD.shape[1]):
                if abs(single_EOD[row][col] + 1234) < 1e-8:
                    single_EOD[row][col] = 1.1
        eod_data[index, :, :] = single_EOD[:, 1:]
        base_price[index, :] = single_EOD[:, -1]
    return eod_data, masks, ground_truth, base_price


def load_graph_relation_data(relation_file, lap=False):
    relation_encoding = np.load(relation_file)
    print('relation encoding shape:', relation_encoding.shape)
    rel_shape = [relation_encoding.shape[0], relation_encoding.shape[1]]
    mask_flags = np.equal(np.zeros(rel_shape, dtype=int),
                          np.sum(relation_encoding, axis=2))
    ajacent = np.where(mask_flags, np.zeros(rel_shape, dtype=float),
                       np.ones(rel_shape, dtype=float))
    degree = np.sum(ajacent, axis=0)
    for i in range(len(degree)):
        degree[i] = 1.0 / degree[i]
    np.sqrt(degree, degree)
    deg_neg_half_power = np.diag(degree)
    if lap:
        return np.identity(ajacent.shape[0], dtype=float) - np.dot(
            np.dot(deg_neg_half_power, ajacent), deg_neg_half_power)
    else:
        return np.dot(np.dot(deg_neg_half_power, ajacent), deg_neg_half_power)


def load_relation_data(relation_file):
    relation_encoding = np.load(relation_file)
    rel_shape = [relation_encoding.shape[0], relation_encoding.shape[1]]
    mask_flags = np.equal(np.zeros(rel_shape, dtype=int),
                          np.sum(relation_encoding, axis=2))
    mask = np.where(mask_flags, np.ones(rel_shape) * -1e9, np.zeros(rel_shape))
    return relation_encoding, mask


def build_SFM_data(data_path, market_name, tickers):
    eod_data = []
    for index, ticker in enumerate(tickers):
        single_EOD = np.genfromtxt(
            os.path.join(data_path, market_name + '_' + ticker + '_1.csv'),
            dtype=np.float32, delimiter=',', skip_header=False
        )
        if index == 0:
            print('single EOD data shape:', single_EOD.shape)
            eod_data = np.zeros([len(tickers), single_EOD.shape[0]],
                                dtype=np.float32)
        for row in range(single_EOD.shape[0]):
            if abs(single_EOD[row][-1] + 1234) < 1e-8:
                if row < 3:
                    for i in range(row + 1, single_EOD.shape[0]):
                        if abs(single_EOD[i][-1] + 1234) > 1e-8:
                            eod_data[index][row] = single_EOD[i][-1]
                            break
                else:
                    eod_data[index][row] = np.sum(
                        eod_data[index, row - 3:row]) / 3
            else:
                eod_data[index][row] = single_EOD[row][-1]
    np.save(market_name + '_sfm_data', eod_data)
"""

ORIGINAL_SP500_BRANCH = """\
if market_name == "SP500":
    data = np.load('../dataset/SP500/SP500.npy')
    data = data[:, 915:, :]
    price_data = data[:, :, -1]
    mask_data = np.ones((data.shape[0], data.shape[1]))
    eod_data = data
    gt_data = np.zeros((data.shape[0], data.shape[1]))
    for ticket in range(0, data.shape[0]):
        for row in range(1, data.shape[1]):
            gt_data[ticket][row] = (data[ticket][row][-1] - data[ticket][row - steps][-1]) / \\
                                   data[ticket][row - steps][-1]
else:
    with open(os.path.join(dataset_path, "eod_data.pkl"), "rb") as f:
        eod_data = pickle.load(f)
    with open(os.path.join(dataset_path, "mask_data.pkl"), "rb") as f:
        mask_data = pickle.load(f)
    with open(os.path.join(dataset_path, "gt_data.pkl"), "rb") as f:
        gt_data = pickle.load(f)
    with open(os.path.join(dataset_path, "price_data.pkl"), "rb") as f:
        price_data = pickle.load(f)
"""
SP500_PATH = "'../dataset/SP500/SP500.npy'"
assert ORIGINAL_SP500_BRANCH.count(SP500_PATH) == 1

_scope = {"np": np, "os": os, "tqdm": lambda it: it}
exec(compile(ORIGINAL_LOAD_DATA, "<original src/load_data.py>", "exec"), _scope)
load_EOD_data = _scope["load_EOD_data"]
load_graph_relation_data = _scope["load_graph_relation_data"]
load_relation_data = _scope["load_relation_data"]
build_SFM_data = _scope["build_SFM_data"]


def get_batch(eod_data, mask_data, price_data, gt_data, offset, lookback_length=16, steps=1):
    """The original src/train.py's get_batch(offset), with the globals it reads passed in: the window
    eod[:, offset : offset + T, :], the mask's minimum over the window and the target day, the base
    price of the window's last day and the return of the target day (each [N, 1] but the window)."""
    seq_len = lookback_length
    mask_batch = mask_data[:, offset: offset + seq_len + steps]
    mask_batch = np.min(mask_batch, axis=1)
    return (eod_data[:, offset:offset + seq_len, :], np.expand_dims(mask_batch, axis=1),
            np.expand_dims(price_data[:, offset + seq_len - 1], axis=1),
            np.expand_dims(gt_data[:, offset + seq_len + steps - 1], axis=1))


def run_sp500_branch(npy_path, steps):
    scope = {"np": np, "os": os, "pickle": pickle, "market_name": "SP500", "steps": steps,
             "dataset_path": None}
    source = ORIGINAL_SP500_BRANCH.replace(SP500_PATH, repr(str(npy_path)))
    exec(compile(source, "<original src/train.py, SP500 branch>", "exec"), scope)
    return scope


# ---- the inputs ----------------------------------------------------------------------------------

def lines(*rows, end="\n"):
    return "".join(r + end for r in rows)


CASES = {
    "nasdaq_small": {
        "market": "NASDAQ", "steps": 1, "tickers": ["AAA", "BBB", "CCC"],
        "files": {
            "NASDAQ_AAA_1.csv": lines(
                "0.000000,0.500000,0.510000,0.520000",
                "1.000000,0.530000,0.540000,0.550000",
                "2.000000,-1234.000000,0.560000,0.570000",
                "3.000000,0.580000,0.590000,0.600000",
                "4.000000,0.610000,0.620000,0.630000",
                "5.000000,0.640000,0.650000,0.660000",
                "6.000000,0.670000,0.680000,0.690000",
                "7.000000,-1234.000000,-1234.000000,-1234.000000"),
            "NASDAQ_BBB_1.csv": lines(
                "0.000000,0.410000,0.420000,-1234.000000",
                "1.000000,0.430000,0.440000,0.450000",
                "2.000000,0.460000,0.470000,0.480000",
                "3.000000,-1234.000000,0.490000,-1234.000000",
                "",
                "4.000000,0.500000,0.510000,-1234.000000",
                "5.000000,0.520000,0.530000,0.540000",
                "6.000000,0.550000,0.560000,0.570000",
                "7.000000,-1234.000000,-1234.000000,-1234.000000", end="\r\n"),
            "NASDAQ_CCC_1.csv": lines(
                "0, 0.123456789012345678, 1e-1, 0.3",
                "1,+0.25 , .5,0.35",
                "2,5.,0.75,0.4",
                "3,-0.0,0.2,0.45",
                "4,0.1,0.2,3.4028235e-01",
                "5,1.0000000596046448,0.2,1.0000000596046448",
                "6,0.9999999,2.5E-1,0.55",
                "7,-1234,-1234,-1234"),
        },
    },
    "nyse_steps2": {
        "market": "NYSE", "steps": 2, "tickers": ["XA", "XB", "ZZZ"],
        "files": {
            "NYSE_XA_1.csv": lines("0,0.20,0.30", "1,0.21,-1234", "2,0.22,0.33", "3,0.23,0.36", "4,0.24,0.39",
                                   "5,0.25,0.42"),
            "NYSE_XB_1.csv": lines("0,0.5,-1234", "1,0.5,-1234", "2,0.5,0.6", "3,-1234,0.7", "4,0.5,-1234",
                                   "5,0.5,0.8"),
            "NYSE_ZZZ_1.csv": lines("0,0.1,-1234", "1,0.1,-1234", "2,0.1,-1234", "3,0.1,-1234", "4,0.1,-1234",
                                    "5,0.1,-1234"),
        },
    },
}


def write_eod_case(root, name, case):
    out = root / name
    out.mkdir(parents=True)
    (out / "inputs.json").write_text(json.dumps(case, indent=1) + "\n")
    with tempfile.TemporaryDirectory() as tmp:
        for fname, text in case["files"].items():
            with open(Path(tmp) / fname, "w", newline="") as f:
                f.write(text)
        with contextlib.redirect_stdout(io.StringIO()):
            eod, mask, gt, price = load_EOD_data(tmp, case["market"], case["tickers"], case["steps"])
            cwd = os.getcwd()
            os.chdir(tmp)
            try:
                build_SFM_data(tmp, case["market"], case["tickers"])
                sfm = np.load(Path(tmp) / (case["market"] + "_sfm_data.npy"))
            finally:
                os.chdir(cwd)
    for key, a in (("eod", eod), ("mask", mask), ("gt", gt), ("price", price), ("sfm", sfm)):
        assert a.dtype == np.float32
        np.save(out / f"{key}.npy", a)
    return eod, mask, gt, price, sfm


def write_sp500_case(root, name, data, steps_list):
    out = root / name
    out.mkdir(parents=True)
    np.save(out / "data.npy", data)
    for steps in steps_list:
        scope = run_sp500_branch(out / "data.npy", steps)
        np.save(out / f"gt_steps{steps}.npy", scope["gt_data"])
    np.save(out / "price.npy", scope["price_data"])
    np.save(out / "mask.npy", scope["mask_data"])


def write_relation_case(root, name, relation):
    out = root / name
    out.mkdir(parents=True)
    np.save(out / "relation.npy", relation)
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the isolated stock's 1 / 0
        np.save(out / "adjacency.npy", load_graph_relation_data(out / "relation.npy", lap=False))
        np.save(out / "laplacian.npy", load_graph_relation_data(out / "relation.npy", lap=True))
        np.save(out / "mask.npy", load_relation_data(out / "relation.npy")[1])


def write_all(root):
    root = Path(root)
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)

    eod, mask, gt, price, sfm = write_eod_case(root, "nasdaq_small", CASES["nasdaq_small"])
    assert eod.shape == (3, 7, 3)                    # the last row dropped, the blank line skipped
    assert eod[2, 5, 0] == 1.0 and price[2, 5] == 1.0  # 1 + 2^-24 as a double, then float32: 1.0
    assert gt[1, 1] == np.float32((np.float32(0.45) - np.float32(1.1)) / np.float32(1.1))  # the quirk
    assert sfm.shape == (3, 8)                       # build_SFM_data keeps the last row
    eod, mask, gt, price, sfm = write_eod_case(root, "nyse_steps2", CASES["nyse_steps2"])
    assert eod.shape == (3, 6, 2) and mask[2].sum() == 0

    rng = np.random.default_rng(20240601)
    data = (0.5 + rng.random((2, 919, 2))).astype(np.float32)
    write_sp500_case(root, "sp500_f32", data, [1, 2, 5])
    data = 0.5 + rng.random((2, 917, 1))
    write_sp500_case(root, "sp500_f64", data, [1, 2, 3])

    relation = np.zeros((5, 5, 2))
    for i in range(5):
        relation[i, i, 1] = 1.0                      # self loops
    relation[0, 1, 0] = relation[1, 0, 0] = 1.0      # a symmetric pair
    relation[0, 3, 0] = 2.0                          # only 0 -> 3 (asymmetric)
    relation[2, 4, :] = [1.0, -1.0]                  # cancels: no relation
    relation[4, 2, :] = [1.0, 1.0]
    relation[3, 4, 0] = relation[4, 3, 0] = 1.0
    write_relation_case(root, "relation", relation)
    isolated = relation.copy()
    isolated[2, 2, 1] = 0.0
    isolated[4, 2, :] = 0.0
    write_relation_case(root, "relation_isolated", isolated)
    adjacency = np.load(root / "relation_isolated" / "adjacency.npy")
    assert np.isnan(adjacency[2]).all() and np.isnan(adjacency[:, 2]).all()


def main():
    return fixture_main(__doc__, DEFAULT_OUT, write_all, tol=0.0)


if __name__ == "__main__":
    sys.exit(main())
