#!/usr/bin/python3
"""End-to-end checks of the `stockmixer` command-line tool against PyTorch (Debian's python3-torch).

    /usr/bin/python3 tests/check_cli.py BUILD/examples/stockmixer BUILD/examples/score_universe

1. PyTorch writes a safetensors file of the original model's weights; `stockmixer predict` loads it
   and predicts what PyTorch predicts (float32 and float64).
2. `stockmixer gradients` writes prediction, rr, the loss parts and every parameter's gradient; each
   equals PyTorch's (the same tolerances as tests/test_model.cpp).
3. `stockmixer train` on a small synthetic market writes metrics.jsonl, summary.json and
   best.safetensors; PyTorch loads best.safetensors into the original model (strict state_dict) and
   predicts what `stockmixer predict` predicts; score_universe ranks with it.
4. Bad input gives exit status 1 and a message naming the file or option; `bench` prints its JSON.
5. `dataset` and `train --data` on a small market folder written here; `--seeds`.

    /usr/bin/python3 tests/check_cli.py BUILD/examples/stockmixer --real ../shared/data/NASDAQ
runs 2 epochs of the paper's protocol on the real NASDAQ data and compares `gradients` with PyTorch on
three real windows (skipped, saying so, without the data).
"""
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from make_io_fixtures import read_safetensors, write_safetensors  # noqa: E402
from make_model_fixtures import StockMixer, get_loss  # noqa: E402

FAILURES = []


def check(ok, what):
    print(("ok    " if ok else "FAIL  ") + what)
    if not ok:
        FAILURES.append(what)


def rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


def close(name, ours, f32, f64, precision):
    """float: within 1e-5 of PyTorch's float64 and no farther from its float32 than 1e-5 plus
    PyTorch's own float32 error; double: within 1e-10 of PyTorch's float64."""
    if precision == "f64":
        e = rel(ours, f64)
        check(e <= 1e-10, f"{name} (f64): error {e:.2e} <= 1e-10")
    else:
        e64, e32, own = rel(ours, f64), rel(ours, f32), rel(f32, f64)
        check(e64 <= 1e-5 and e32 <= 1e-5 + own, f"{name} (f32): vs f64 {e64:.2e}, vs f32 {e32:.2e} (torch {own:.2e})")


def run(*args, expect=0):
    p = subprocess.run([str(a) for a in args], capture_output=True, text=True)
    if p.returncode != expect:
        print(p.stdout, p.stderr)
    return p


def write_market_dir(root, stocks, rows):
    """A market folder as ../shared/data/NASDAQ lays it out: tickers, dates, one CSV per ticker with
    day_index, ma5, ma10, ma20, ma30, close (normalised by the stock's largest close), -1234 missing."""
    rng = np.random.default_rng(5)
    (root / "2013-01-01").mkdir(parents=True)
    tickers = [f"S{i:04d}" for i in range(stocks)]
    (root / "NASDAQ_tickers_qualify_dr-0.98_min-5_smooth.csv").write_text("\n".join(tickers) + "\n")
    (root / "NASDAQ_aver_line_dates.csv").write_text(
        "".join(f"2013-01-{1 + k % 28:02d} 16:00:00\n" for k in range(rows + 29)))
    for t in tickers:
        close = np.exp(np.cumsum(0.02 * rng.standard_normal(rows + 30)))
        ma = [np.convolve(close, np.ones(w) / w, mode="full")[:rows + 30] for w in (5, 10, 20, 30)]
        cols = np.stack(ma + [close], axis=1)[30:] / close[30:].max()
        lines = []
        for r in range(rows):
            cells = ["-1234" if (r == rows - 1 or rng.random() < 0.01) else f"{v:.6f}" for v in cols[r]]
            lines.append(f"{r:.6f}," + ",".join(cells))
        (root / "2013-01-01" / f"NASDAQ_{t}_1.csv").write_text("\n".join(lines) + "\n")
    return root


def torch_model(sd, n, t, c, m, dtype):
    model = StockMixer(n, t, c, m, 3).to(dtype)
    model.load_state_dict({k: v.to(dtype) for k, v in sd.items()}, strict=True)
    return model


def main(cli, score):
    torch.set_num_threads(1)
    fx = HERE / "fixtures" / "model" / "mid"
    meta = json.loads((fx / "meta.json").read_text())
    n, t, c, m = meta["stocks"], meta["lookback"], meta["features"], meta["market"]
    sd = {k: torch.from_numpy(np.load(fx / "params" / f"{k}.npy")) for k, _ in meta["state_dict"]}
    arrays = {k: torch.from_numpy(np.load(fx / f"{k}.npy")) for k in ("x", "gt", "base", "mask")}

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        weights = tmp / "torch_written.safetensors"
        write_safetensors(weights, sd, {"format": "pt"})  # PyTorch writes, we read

        ref = {}
        for dt, tag in ((torch.float32, "f32"), (torch.float64, "f64")):
            model = torch_model(sd, n, t, c, m, dt)
            x, gt, base, mask = (arrays[k].to(dt) for k in ("x", "gt", "base", "mask"))
            pred = model(x)
            loss, reg, rank, rr = get_loss(pred, gt, base, mask, n, 0.1)
            loss.backward()
            ref[tag] = {"prediction": pred, "rr": rr, "loss": loss, "reg_loss": reg, "rank_loss": rank,
                        **{k: p.grad for k, p in model.named_parameters()}}
            ref[tag] = {k: v.detach().numpy() for k, v in ref[tag].items()}

        # 1. predict
        for precision in ("f32", "f64"):
            out = tmp / f"pred_{precision}.npy"
            p = run(cli, "predict", "--weights", weights, "--input", fx / "x.npy", "--out", out,
                    "--precision", precision)
            check(p.returncode == 0, f"predict --precision {precision} runs")
            if p.returncode == 0:
                got = np.load(out)
                check(got.shape == (n, 1) and got.dtype == (np.float32 if precision == "f32" else np.float64),
                      f"predict writes [N, 1] {got.dtype}")
                close("predict", got, ref["f32"]["prediction"], ref["f64"]["prediction"], precision)

        # 2. gradients
        for precision in ("f32", "f64"):
            out = tmp / f"grads_{precision}.safetensors"
            p = run(cli, "gradients", "--weights", weights, "--input", fx / "x.npy", "--gt", fx / "gt.npy",
                    "--base", fx / "base.npy", "--mask", fx / "mask.npy", "--out", out, "--precision", precision)
            check(p.returncode == 0, f"gradients --precision {precision} runs")
            if p.returncode == 0:
                _, _, _, got = read_safetensors(out)
                check(set(got) == set(ref["f64"]), f"gradients holds exactly the {len(ref['f64'])} expected tensors")
                for k in sorted(ref["f64"]):
                    if k in got:
                        close(f"gradients {k}", got[k].numpy().reshape(ref["f64"][k].shape), ref["f32"][k],
                              ref["f64"][k], precision)

        # 3. train, then PyTorch loads our checkpoint
        run_dir = tmp / "run"
        p = run(cli, "train", "--epochs", "2", "--stocks", "40", "--days", "160", "--out", run_dir)
        check(p.returncode == 0, "train runs")
        lines = (run_dir / "metrics.jsonl").read_text().splitlines() if p.returncode == 0 else []
        check(len(lines) == 2 and all("valid" in json.loads(line) for line in lines), "metrics.jsonl: one line per epoch")
        summary = json.loads((run_dir / "summary.json").read_text()) if p.returncode == 0 else {}
        check("test" in summary and "IC" in summary.get("test", {}), "summary.json holds the test metrics")
        if p.returncode == 0:
            _, _, tmeta, ours = read_safetensors(run_dir / "best.safetensors")
            cfg = json.loads(tmeta["stockmixer.config"])
            model = torch_model(ours, cfg["stocks"], cfg["lookback"], cfg["features"], cfg["market"], torch.float64)
            x = 0.5 + 0.1 * torch.rand(40, 16, 5, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
            np.save(tmp / "x40.npy", x.numpy())
            p = run(cli, "predict", "--weights", run_dir / "best.safetensors", "--input", tmp / "x40.npy",
                    "--out", tmp / "p40.npy", "--precision", "f64")
            theirs = model(x).detach().numpy()
            check(p.returncode == 0 and rel(np.load(tmp / "p40.npy"), theirs) <= 1e-10,
                  "PyTorch loads best.safetensors (strict) and predicts what stockmixer predicts")
            p = run(score, run_dir / "best.safetensors")
            check(p.returncode == 0 and p.stdout.count("\n") == 11, "score_universe prints the top 10")

        # 4. bad input and bench
        bad = tmp / "bad.npy"
        np.save(bad, np.zeros((n, t + 1, c), np.float32))
        p = run(cli, "predict", "--weights", weights, "--input", bad, "--out", tmp / "o.npy", expect=1)
        check(p.returncode == 1 and str(bad) in p.stderr and "expect [N, T, C]" in p.stderr,
              "predict: a wrong input shape names the file and the expected shape")
        np.save(bad, np.full((n, t, c), np.nan, np.float32))
        p = run(cli, "predict", "--weights", weights, "--input", bad, "--out", tmp / "o.npy", expect=1)
        check(p.returncode == 1 and "not finite" in p.stderr, "predict: NaN input is refused")
        p = run(cli, "predict", "--weights", tmp / "missing.safetensors", "--input", bad, "--out", tmp / "o.npy",
                expect=1)
        check(p.returncode == 1 and "missing.safetensors" in p.stderr, "predict: a missing weights file is named")
        check(not (tmp / "o.npy").exists(), "predict: nothing is written on error")
        truncated = tmp / "truncated.safetensors"
        truncated.write_bytes(weights.read_bytes()[:-100])
        p = run(cli, "predict", "--weights", truncated, "--input", fx / "x.npy", "--out", tmp / "o.npy", expect=1)
        check(p.returncode == 1 and "truncated.safetensors" in p.stderr, "predict: a truncated weights file is refused")
        p = run(cli, "train", "--epochs", "1", "--stocks", "40", "--days", "160", "--out", run_dir, expect=1)
        check(p.returncode == 1 and "already holds a run" in p.stderr, "train: an existing run is not overwritten")
        p = run(cli, "train", "--epochs", "1", "--stocks", "40", "--days", "160", "--lr", "1e9", "--out",
                tmp / "diverged", expect=1)
        check(p.returncode == 1 and "training diverged" in p.stderr, "train: a diverging run stops with a clear error")
        p = run(cli, "train", "--epoch", "1", expect=1)
        check(p.returncode == 1 and "unknown option 'epoch'" in p.stderr, "train: an unknown option is named")
        config = tmp / "config.json"
        config.write_text(json.dumps({"epochs": 1, "stocks": 40, "days": 160, "learning_rate": 0.1}))
        p = run(cli, "train", "--config", config, "--out", tmp / "run2", expect=1)
        check(p.returncode == 1 and "learning_rate" in p.stderr and "config.json" in p.stderr,
              "train: an unknown key in --config is named with the file")
        config.write_text(json.dumps({"epochs": 1, "stocks": 40, "days": 160, "lr": 0.01}))
        p = run(cli, "train", "--config", config, "--out", tmp / "run2")
        check(p.returncode == 0 and json.loads((tmp / "run2" / "summary.json").read_text())["config"]["lr"] == 0.01,
              "train: --config keys mirror the options")
        p = run(cli, "bench", "--stocks", "50", "--iters", "3")
        keys = {"inference_ms", "train_step_ms", "loss_ms", "stocks", "lookback", "features", "threads"}
        check(p.returncode == 0 and keys <= set(json.loads(p.stdout)), "bench prints its JSON report")
        # ... naming the instruction set it ran: the cap's, where the cap is below what the CPU has
        capped = subprocess.run([str(cli), "bench", "--stocks", "50", "--iters", "3"], capture_output=True, text=True,
                                env={**os.environ, "STOCKMIXER_MAX_ISA": "baseline"})
        check(capped.returncode == 0 and json.loads(capped.stdout).get("isa") == "baseline",
              f"bench under STOCKMIXER_MAX_ISA=baseline says it ran baseline ({capped.stdout.strip()[:80]})")
        # evaluate: the original evaluator's numbers, from the metrics fixture the original wrote
        mfx = HERE / "fixtures" / "metrics" / "masked_50x30"
        if mfx.exists():
            p = run(cli, "evaluate", "--pred", mfx / "prediction.npy", "--gt", mfx / "ground_truth.npy",
                    "--mask", mfx / "mask.npy")
            want = json.loads((mfx / "expected.json").read_text())
            got = json.loads(p.stdout) if p.returncode == 0 else {}
            keys = ("mse", "IC", "RIC", "prec_10", "sharpe5", "mrr_top", "rank_ic")
            check(p.returncode == 0 and all(abs(got[k] - want[k]) <= 1e-10 * max(1, abs(want[k])) for k in keys),
                  "evaluate prints the original evaluator's numbers")
        else:
            check(False, f"metrics fixture {mfx} exists")
        p = run(cli, "evaluate", "--pred", fx / "x.npy", "--gt", fx / "gt.npy", "--mask", fx / "mask.npy", expect=1)
        check(p.returncode == 1 and "expected [N, days]" in p.stderr, "evaluate: a wrong shape is named")
        # --data: a small market folder laid out as ../shared/data/NASDAQ
        market_dir = write_market_dir(tmp / "market", stocks=30, rows=131)
        p = run(cli, "dataset", "--data", market_dir, "--market", "NASDAQ", "--out", tmp / "ds")
        check(p.returncode == 0, "dataset --data runs")
        if p.returncode == 0:
            eod, mask = np.load(tmp / "ds" / "eod.npy"), np.load(tmp / "ds" / "mask.npy")
            check(eod.shape == (30, 130, 5) and eod.dtype == np.float32 and mask.shape == (30, 130),
                  "dataset writes eod [N, D, 5] and mask [N, D] as float32 (NASDAQ's last row dropped)")
        p = run(cli, "train", "--data", market_dir, "--epochs", "1", "--valid-index", "70", "--test-index", "100",
                "--out", tmp / "real")
        check(p.returncode == 0 and json.loads((tmp / "real" / "summary.json").read_text())["data"]["market"] == "NASDAQ",
              "train --data trains on a market folder")
        p = run(cli, "train", "--data", market_dir, "--epochs", "1", "--seeds", "2", "--valid-index", "70",
                "--test-index", "100", "--out", tmp / "seeds")
        summary = json.loads((tmp / "seeds" / "summary.json").read_text()) if p.returncode == 0 else {}
        check(p.returncode == 0 and summary.get("test", {}).get("IC", {}).get("runs") == 2
              and (tmp / "seeds" / "seed_1" / "best.safetensors").exists(), "train --seeds 2: two runs, mean and std")
        # replay: given initial weights and a given order of window offsets (54 per epoch here)
        order = tmp / "order.txt"
        rng = np.random.default_rng(5)
        order.write_text("\n".join(" ".join(map(str, rng.permutation(70)[:54])) for _ in range(2)) + "\n")
        replay = ("train", "--data", market_dir, "--epochs", "2", "--valid-index", "70", "--test-index", "100",
                  "--init-weights", tmp / "real" / "best.safetensors", "--order", order)
        logs = []
        for k in range(2):
            p = run(cli, *replay, "--out", tmp / f"replay{k}")
            logs.append([{key: e[key] for key in ("train", "valid", "test")}
                         for e in map(json.loads, (tmp / f"replay{k}" / "metrics.jsonl").read_text().splitlines())]
                        if p.returncode == 0 else k)
        check(logs[0] == logs[1], "train --init-weights --order: a replay is repeatable to the bit")
        order.write_text(" ".join(map(str, range(53))) + "\n")
        p = run(cli, *replay, "--out", tmp / "bad_order", expect=1)
        check(p.returncode == 1 and "order.txt:1: 53 offsets, expected 54" in p.stderr and not (tmp / "bad_order").exists(),
              "train --order: a short epoch is named with its file and line, and nothing is written")
        order.write_text(" ".join(map(str, range(54))) + "\n" + " ".join(map(str, range(53))) + " 70\n")
        p = run(cli, *replay, "--out", tmp / "bad_order", expect=1)
        check(p.returncode == 1 and "order.txt:2: offset 54 is '70'" in p.stderr, "train --order: an offset out of range is named")
        p = run(cli, "train", "--data", market_dir, "--epochs", "1", "--valid-index", "70", "--test-index", "100",
                "--init-weights", weights, "--out", tmp / "bad_init", expect=1)
        check(p.returncode == 1 and weights.name in p.stderr and not (tmp / "bad_init").exists(),
              "train --init-weights: weights of another model are refused, naming the file, and nothing is written")
        (market_dir / "2013-01-01" / "NASDAQ_S0007_1.csv").unlink()
        p = run(cli, "train", "--data", market_dir, "--epochs", "1", "--out", tmp / "broken", expect=1)
        check(p.returncode == 1 and "NASDAQ_S0007_1.csv" in p.stderr and not (tmp / "broken").exists(),
              "train --data: a ticker whose file is missing is named, and nothing is written")

        for cmd in ("predict", "gradients", "train", "bench", "evaluate", "dataset"):
            p = run(cli, cmd, "--help")
            check(p.returncode == 0 and "usage: stockmixer " + cmd in p.stdout, f"{cmd} --help")

    print(f"{len(FAILURES)} failed" if FAILURES else "all CLI checks passed")
    return 1 if FAILURES else 0


def real_batches_match_torch(cli, data, tmp):
    """On real NASDAQ windows (masked stocks, zero returns, ties): `stockmixer gradients` in double
    against PyTorch float64 with the same weights, every tensor within 1e-10 (the double bound above)."""
    from make_eod_fixtures import get_batch, load_EOD_data
    tickers = [t for t in (data / "NASDAQ_tickers_qualify_dr-0.98_min-5_smooth.csv").read_text().split() if t]
    eod, mask, gt, price = load_EOD_data(str(data / "2013-01-01") + "/", "NASDAQ", tickers, 1)
    torch.manual_seed(12345678)  # benchmarks/pytorch_reference.py's initial weights, seed 0
    sd = {k: v.detach().clone() for k, v in StockMixer(len(tickers), 16, 5, 20, 3).state_dict().items()}
    weights = tmp / "torch_init.safetensors"
    write_safetensors(weights, sd, {"format": "pt"})
    for offset in (0, 300, 700):
        names = ("x", "mask", "base", "gt")
        for name, a in zip(names, get_batch(eod, mask, price, gt, offset)):
            np.save(tmp / f"{name}.npy", np.ascontiguousarray(a, dtype=np.float64))
        model = torch_model(sd, len(tickers), 16, 5, 20, torch.float64)
        x, m, base, g = (torch.from_numpy(np.load(tmp / f"{name}.npy")) for name in names)
        pred = model(x)
        loss, reg, rank, rr = get_loss(pred, g, base, m, len(tickers), 0.1)
        loss.backward()
        ref = {"prediction": pred, "rr": rr, "loss": loss, "reg_loss": reg, "rank_loss": rank,
               **{k: q.grad for k, q in model.named_parameters()}}
        p = run(cli, "gradients", "--weights", weights, "--input", tmp / "x.npy", "--gt", tmp / "gt.npy",
                "--base", tmp / "base.npy", "--mask", tmp / "mask.npy", "--out", tmp / "grads.safetensors",
                "--precision", "f64")
        if p.returncode != 0:
            check(False, f"gradients on the real window at offset {offset} runs")
            continue
        _, _, _, got = read_safetensors(tmp / "grads.safetensors")
        worst = max((rel(got[k].numpy().reshape(v.shape), v.detach().numpy()), k) for k, v in ref.items())
        check(worst[0] <= 1e-10, f"real NASDAQ window at offset {offset} ({int(m.sum())} valid stocks): every gradient "
              f"within 1e-10 of PyTorch float64 (worst {worst[0]:.1e}, {worst[1]})")


def real_data(cli, data):
    """A short run of the paper's protocol on the real NASDAQ data (2 epochs, strict split), and the
    gradients of three real windows against PyTorch."""
    if not (data / "NASDAQ_tickers_qualify_dr-0.98_min-5_smooth.csv").exists():
        print(f"skipped: the real-data run needs {data} (../shared/data/NASDAQ beside the clone), not found")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "nasdaq"
        p = run(cli, "train", "--data", data, "--market", "NASDAQ", "--epochs", "2", "--strict-split", "--threads", "1",
                "--out", out)
        check(p.returncode == 0, "train --data ../shared/data/NASDAQ runs 2 epochs")
        if p.returncode == 0:
            s = json.loads((out / "summary.json").read_text())
            check(s["data"]["stocks"] == 1026 and s["data"]["days"] == 1245, "the NASDAQ market is [1026, 1245]")
            check(np.isfinite(s["test"]["IC"]) and np.isfinite(s["test"]["rank_ic"]) and 0 < s["test"]["prec_10"] <= 1,
                  f"test metrics are finite (IC {s['test']['IC']:.4f}, rank IC {s['test']['rank_ic']:.4f})")
            check(len((out / "metrics.jsonl").read_text().splitlines()) == 2, "metrics.jsonl has 2 epochs")
        real_batches_match_torch(cli, data, Path(tmp))
    print(f"{len(FAILURES)} failed" if FAILURES else "real-data checks passed")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[2] == "--real":
        sys.exit(real_data(Path(sys.argv[1]), Path(sys.argv[3])))
    if len(sys.argv) != 3:
        print(__doc__)
        sys.exit(2)
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
