"""stockmixer.train against `stockmixer train` with the same options (the same metrics.jsonl but for the
"seconds" fields, the same best weights), on the synthetic market, on a market given as arrays and on a
market folder; the on_epoch callback (progress, early stop, an exception that leaves a resumable run);
evaluate and the market loaders against the tool; what is refused."""
import json
import math
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import stockmixer
from check_cli import write_market_dir
from check_panel import raw_panel
from conftest import python_during, run_cli

# A small synthetic market: 40 stocks, 150 days (split at 91 and 121), a few seconds for all the runs.
SMALL = {"stocks": 40, "days": 150, "epochs": 3, "seed": 2, "lr": 0.002, "alpha": 0.2, "threads": 1}


def cli_args(options):
    args = []
    for k, v in options.items():
        args += [f"--{k.replace('_', '-')}"] + ([] if v is True else [str(v)])
    return args


def epochs_of(path):
    """metrics.jsonl's epochs without their wall-clock "seconds"."""
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    for e in lines:
        e.pop("seconds")
    return lines


def plain(value):
    """JSON's view of a value: NaN and infinities as None (the files write them as null), tuples as lists."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return list(sa) == list(sb) and all(np.array_equal(sa[k], sb[k]) for k in sa)


@pytest.fixture(scope="module")
def cli_run(cli, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    run_cli(cli, "train", *cli_args(SMALL), "--out", out)
    return out


def test_train_writes_what_the_tool_writes(cli_run, tmp_path):
    out = tmp_path / "run"
    summary, model = stockmixer.train(**SMALL, out=str(out))
    assert epochs_of(out / "metrics.jsonl") == epochs_of(cli_run / "metrics.jsonl")
    tool = json.loads((cli_run / "summary.json").read_text())
    for key in ("best_epoch", "valid", "test", "baselines_test", "oracle_test", "epochs", "config", "data"):
        assert plain(summary[key]) == tool[key], key
    assert json.loads((out / "summary.json").read_text())["best_epoch"] == summary["best_epoch"]
    assert same_weights(model, stockmixer.load_checkpoint(str(cli_run / "best.safetensors")))


def test_train_on_arrays_equals_the_tool(cli_run, tmp_path):
    market = stockmixer.synthetic_market(stocks=SMALL["stocks"], days=SMALL["days"])
    assert market["eod"].shape == (40, 150, 5) and market["eod"].dtype == np.float32
    assert (market["valid_index"], market["test_index"]) == (91, 121)
    options = {k: v for k, v in SMALL.items() if k not in ("stocks", "days")}
    summary, model = stockmixer.train(data=market, **options, out=str(tmp_path / "run"))
    assert epochs_of(tmp_path / "run" / "metrics.jsonl") == epochs_of(cli_run / "metrics.jsonl")
    assert same_weights(model, stockmixer.load_checkpoint(str(cli_run / "best.safetensors")))
    assert summary["data"]["source"] == "arrays"
    # The same market in float64 arrays trains in float32 as --precision says: the same run.
    market64 = {k: (v.astype(np.float64) if isinstance(v, np.ndarray) else v) for k, v in market.items()}
    stockmixer.train(data=market64, **options, out=str(tmp_path / "run64"))
    assert epochs_of(tmp_path / "run64" / "metrics.jsonl") == epochs_of(cli_run / "metrics.jsonl")


def test_market_folder_as_the_tool_reads_it(cli, tmp_path):
    folder = write_market_dir(tmp_path / "NASDAQ", 24, 161)
    # One date a line (check_cli.py's file repeats dates; a run's predictions.csv needs them distinct).
    first = np.datetime64("2013-01-01")
    (folder / "NASDAQ_aver_line_dates.csv").write_text("".join(f"{first + k} 16:00:00\n" for k in range(161 + 29)))
    run_cli(cli, "dataset", "--data", folder, "--out", tmp_path / "ds")
    market = stockmixer.load_market(str(folder))
    for name in ("eod", "mask", "gt", "price"):
        tool = np.load(tmp_path / "ds" / f"{name}.npy")
        assert market[name].dtype == tool.dtype and np.array_equal(market[name], tool), name
    assert market["tickers"] == [f"S{i:04d}" for i in range(24)]
    assert len(market["dates"]) == 160 and market["dates"][0] == "2013-01-30 16:00:00"  # line 30 of the file
    assert market["steps"] == 1 and (market["valid_index"], market["test_index"]) == (756, 1008)

    options = {"data": str(folder), "epochs": 2, "valid_index": 100, "test_index": 130, "threads": 1}
    run_cli(cli, "train", *cli_args(options), "--out", tmp_path / "cli")
    stockmixer.train(**options, out=str(tmp_path / "py"))
    assert epochs_of(tmp_path / "py" / "metrics.jsonl") == epochs_of(tmp_path / "cli" / "metrics.jsonl")
    options["data"] = market
    stockmixer.train(**options, out=str(tmp_path / "arrays"))
    assert epochs_of(tmp_path / "arrays" / "metrics.jsonl") == epochs_of(tmp_path / "cli" / "metrics.jsonl")


def test_panel_as_the_tool_reads_it(cli, tmp_path):
    """Raw prices of 12 tickers over 300 dates (tests/check_panel.py's panel) -> the original's features."""
    path, _, dates, tickers = raw_panel(tmp_path)
    run_cli(cli, "dataset", "--panel", path, "--features", "original", "--normalise", "max", "--out", tmp_path / "ds")
    market = stockmixer.load_panel(path, features="original", normalise="max")
    for name in ("eod", "mask", "gt", "price"):
        tool = np.load(tmp_path / "ds" / f"{name}.npy")
        assert market[name].dtype == tool.dtype and np.array_equal(market[name], tool), name
    assert market["eod"].shape == (12, 271, 5) and market["dates"] == dates[29:]
    assert market["tickers"] == tickers and (market["valid_index"], market["test_index"]) == (162, 216)

    options = {"panel": str(path), "features": "original", "epochs": 1, "threads": 1}
    run_cli(cli, "train", *cli_args(options), "--out", tmp_path / "cli")
    stockmixer.train(**options, out=str(tmp_path / "py"))
    assert epochs_of(tmp_path / "py" / "metrics.jsonl") == epochs_of(tmp_path / "cli" / "metrics.jsonl")
    stockmixer.train(data=stockmixer.load_panel(path, features="original"), epochs=1, threads=1,
                     out=str(tmp_path / "arrays"))
    assert epochs_of(tmp_path / "arrays" / "metrics.jsonl") == epochs_of(tmp_path / "cli" / "metrics.jsonl")
    with pytest.raises(stockmixer.Error, match="--normalise applies to raw prices only"):
        stockmixer.load_panel(path, normalise="max")


@pytest.mark.parametrize("dtype,precision", [(np.float32, "f32"), (np.float64, "f64")])
def test_evaluate_equals_the_tool(cli, tmp_path, dtype, precision):
    rng = np.random.default_rng(4)
    n, days = 30, 12
    pred = (0.01 * rng.standard_normal((n, days))).astype(dtype)
    gt = (0.02 * rng.standard_normal((n, days))).astype(dtype)
    mask = (rng.random((n, days)) > 0.2).astype(dtype)
    mask[:, 5] = 0  # a day with every stock masked: IC is NaN there, so IC and RIC are NaN (null in JSON)
    for name, a in (("pred", pred), ("gt", gt), ("mask", mask)):
        np.save(tmp_path / f"{name}.npy", a)
    tool = json.loads(run_cli(cli, "evaluate", "--pred", tmp_path / "pred.npy", "--gt", tmp_path / "gt.npy",
                              "--mask", tmp_path / "mask.npy").stdout)
    ours = stockmixer.evaluate(pred, gt, mask)
    assert list(ours) == list(tool)
    assert math.isnan(ours["IC"]) and tool["IC"] is None
    assert plain(ours) == tool
    with pytest.raises(stockmixer.Error, match="gt: dtype float64, expected float32"):
        stockmixer.evaluate(pred.astype(np.float32), gt.astype(np.float64), mask)
    with pytest.raises(stockmixer.Error, match="pred: the array \\[12, 30\\] is not C-contiguous"):
        stockmixer.evaluate(pred.T, gt, mask)


def test_on_epoch_reports_and_stops(cli_run, tmp_path):
    seen = []

    def on_epoch(epoch):
        seen.append(epoch)
        if epoch["epoch"] == 2:
            return False
        return None  # no return value: the run goes on

    summary, model = stockmixer.train(**SMALL, out=str(tmp_path / "run"), on_epoch=on_epoch)
    full = epochs_of(cli_run / "metrics.jsonl")
    assert [e["epoch"] for e in seen] == [1, 2] and summary["epochs"] == 2
    assert epochs_of(tmp_path / "run" / "metrics.jsonl") == full[:2]
    assert [plain({k: v for k, v in e.items() if k != "seconds"}) for e in seen] == full[:2]
    assert model is not None and summary["best_epoch"] in (1, 2)


def test_an_exception_in_on_epoch_stops_the_run_resumably(cli_run, tmp_path):
    def on_epoch(epoch):
        if epoch["epoch"] == 2:
            raise KeyError("enough")

    with pytest.raises(KeyError, match="enough"):
        stockmixer.train(**SMALL, out=str(tmp_path / "run"), on_epoch=on_epoch)
    assert len(epochs_of(tmp_path / "run" / "metrics.jsonl")) == 2
    summary, model = stockmixer.train(**SMALL, out=str(tmp_path / "run"), resume=True)
    assert summary["epochs"] == 3
    assert epochs_of(tmp_path / "run" / "metrics.jsonl") == epochs_of(cli_run / "metrics.jsonl")
    assert same_weights(model, stockmixer.load_checkpoint(str(cli_run / "best.safetensors")))


@pytest.mark.parametrize("progress", [False, True])
def test_ctrl_c_stops_at_the_end_of_the_epoch(tmp_path, progress):
    """SIGINT while the engine trains (GIL released), with no on_epoch: KeyboardInterrupt once the epoch
    ends, its files saved. With progress=True, sys.stderr is written in Python (as a notebook's is), so the
    interpreter runs the signal's handler inside the next progress line's write, where the C++ stream the
    engine writes to would swallow the exception if the module did not keep it and raise it."""
    out = tmp_path / "run"
    script = ("import sys, stockmixer\n"
              "class Stream:\n"
              "    def write(self, text): sys.__stderr__.write(text)\n"
              "    def flush(self): sys.__stderr__.flush()\n"
              "sys.stderr = Stream()\n"
              f"stockmixer.train(stocks=60, days=300, epochs=1000, threads=1, out={str(out)!r}, progress={progress})\n")
    p = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        if progress:
            while "epoch   1/1000" not in p.stderr.readline():
                pass
        else:
            deadline = time.monotonic() + 60
            while not ((out / "metrics.jsonl").exists() and (out / "metrics.jsonl").read_text()):
                assert time.monotonic() < deadline and p.poll() is None, "training did not start"
                time.sleep(0.01)
        p.send_signal(signal.SIGINT)  # training is under way
        _, err = p.communicate(timeout=60)
    finally:
        p.kill()
    # An uncaught KeyboardInterrupt ends Python by SIGINT (the status a shell reads as Ctrl-C), raised in train.
    assert p.returncode == -signal.SIGINT and "line 6" in err and "KeyboardInterrupt" in err, err  # line 6: train
    done = len(epochs_of(out / "metrics.jsonl"))
    assert 1 <= done < 1000
    summary, _ = stockmixer.train(stocks=60, days=300, epochs=done + 1, threads=1, out=str(out), resume=True)
    assert summary["epochs"] == done + 1


def test_progress_lines_and_seeds(tmp_path, capsys):
    summary, models = stockmixer.train(stocks=20, days=100, epochs=1, seeds=2, threads=1, out=str(tmp_path / "s"),
                                       progress=True)
    err = capsys.readouterr().err
    assert err.count("stockmixer train: synthetic market N=20 D=100") == 2 and err.count("epoch   1/1") == 2
    assert summary["seeds"] == 2 and len(models) == 2
    for seed, model in zip((0, 1), models):
        assert same_weights(model, stockmixer.load_checkpoint(str(tmp_path / "s" / f"seed_{seed}" / "best.safetensors")))
    # Quiet without progress=True; the engine's thread count is put back after the run's threads=1.
    stockmixer.set_num_threads(3)
    stockmixer.train(stocks=20, days=100, epochs=1, threads=1, out=str(tmp_path / "quiet"))
    assert capsys.readouterr().err == "" and stockmixer.num_threads() == 3
    stockmixer.set_num_threads(1)


def test_training_releases_the_gil(tmp_path):
    span, inside = python_during(
        lambda: stockmixer.train(stocks=100, days=200, epochs=2, threads=1, out=str(tmp_path / "run")))
    assert inside and inside[-1] - inside[0] > 0.5 * span, (span, len(inside))


def test_bad_options_are_refused(tmp_path):
    out = str(tmp_path / "run")

    def refused(fragment, **kwargs):
        with pytest.raises(stockmixer.Error) as e:
            stockmixer.train(out=out, **kwargs)
        assert fragment in str(e.value), str(e.value)

    refused("keyword arguments: unknown option 'epoch'", epoch=3)
    refused("--epochs (from keyword arguments) expects a whole number from 1 to 1000000, got '0'", epochs=0)
    refused("--lr (from keyword arguments) expects a number in (0, 1e+12], got 'fast'", lr="fast")
    refused("'lr' is a list ([0.1]); options take a bool, an int, a float or a str", lr=[0.1])
    refused("'strict-split' must be true or false, got 1", strict_split=1)
    refused("'market-width' given twice", **{"market-width": 20, "market_width": 20})
    refused("on_epoch must be callable", on_epoch=3)
    refused("--resume and --overwrite exclude each other", resume=True, overwrite=True)
    market = stockmixer.synthetic_market(stocks=10, days=80)
    refused("data has no 'gt' array", data={k: v for k, v in market.items() if k != "gt"})
    refused("'stocks' describes the market to load, but data is given as arrays", data=market, stocks=10)
    refused("data['eod'] has shape [10, 80], expected [N, D, C]", data=dict(market, eod=market["mask"]))
    bad_mask = dict(market, mask=market["mask"] * 2)
    refused("stockmixer.train: data", data=bad_mask)
    refused("valid", data=market, valid_index=79)  # TrainConfig::validate, naming the options
    with pytest.raises(stockmixer.Error, match="/nonexistent"):
        stockmixer.train(data="/nonexistent", out=out)
    with pytest.raises(stockmixer.Error, match="/nonexistent"):
        stockmixer.load_market("/nonexistent")
