#!/usr/bin/python3
"""PyTorch and stockmixer, one after the other, on the same shapes: the median time of a training step
(forward, loss, backward, Adam) and of inference, each process's peak memory, and the ratios.

    /usr/bin/python3 benchmarks/compare_pytorch.py --cli build/examples/stockmixer [--stocks 1026,1737,5000,20000]
        [--threads 1] [--budget 20]

PyTorch is Debian's python3-torch running the original model and get_loss (tests/make_model_fixtures.py,
copied verbatim from the article) with torch.optim.Adam; stockmixer is `stockmixer bench` (random
data of the same shape, eight batches in turn: its sorted rank loss branches on the data, and one batch
repeated would let the branch predictor learn it; PyTorch's dense O(N²) loss does not branch on it). Every measurement runs in a fresh process (its peak RSS is that shape's
alone) on --threads threads. Iterations: up to 200 per figure after two warm-ups, fewer when one
iteration is slow (about --budget seconds per figure, at least 3), so N = 20000 stays affordable in
PyTorch (about 10 s a step). PyTorch's loss builds three N x N matrices: shapes whose float32 N x N
matrices would need more than --torch-max-gb are not run in PyTorch and print n/a.
"""
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run_measured(cmd, env=None):
    """Runs cmd; returns (stdout, peak RSS in MB) of that process alone (os.wait4)."""
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    out = p.stdout.read()
    err = p.stderr.read()
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        sys.exit(f"compare_pytorch: {' '.join(cmd)} failed ({p.returncode}):\n{err[-2000:]}")
    return out, usage.ru_maxrss / 1024.0


def torch_worker(n, t, c, m, threads, budget):
    import numpy as np
    import torch
    sys.path.insert(0, str(HERE.parent / "tests"))
    from make_model_fixtures import StockMixer, get_loss

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = StockMixer(stocks=n, time_steps=t, channels=c, market=m, scale=3)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = np.random.default_rng(0)
    x = torch.tensor(gen.uniform(0.5, 1.5, (n, t, c)), dtype=torch.float32)
    base = x[:, -1, -1:].clone()
    gt = torch.tensor(gen.normal(0, 0.02, (n, 1)), dtype=torch.float32)
    mask = torch.tensor((gen.uniform(size=(n, 1)) > 0.05), dtype=torch.float32)

    def step():
        opt.zero_grad()
        loss, _, _, _ = get_loss(model(x), gt, base, mask, n, 0.1)
        loss.backward()
        opt.step()

    def infer():
        with torch.no_grad():
            model(x)

    out = {}
    for name, fn in (("train_step_ms", step), ("inference_ms", infer)):
        times = []
        fn(), fn()
        while len(times) < 200 and (len(times) < 3 or sum(times) < budget):
            s = time.perf_counter()
            fn()
            times.append(time.perf_counter() - s)
        out[name] = 1000 * float(np.median(times))
        out[name.replace("_ms", "_iters")] = len(times)
    print(json.dumps(out))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cli", type=Path, help="the stockmixer executable (build/examples/stockmixer)")
    ap.add_argument("--stocks", default="1026,1737,5000,20000")
    ap.add_argument("--lookback", type=int, default=16)
    ap.add_argument("--features", type=int, default=5)
    ap.add_argument("--market", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--budget", type=float, default=20.0, help="seconds per figure, roughly")
    ap.add_argument("--torch-max-gb", type=float, default=12.0)
    ap.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    t, c, m = args.lookback, args.features, args.market
    if args.worker:
        return torch_worker(args.worker, t, c, m, args.threads, args.budget)
    if not args.cli:
        ap.error("--cli is required")

    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    rows = []
    for n in (int(s) for s in args.stocks.split(",")):
        if 3 * 4 * n * n / 2**30 <= args.torch_max_gb:
            out, torch_mb = run_measured([sys.executable, __file__, "--worker", str(n), "--threads", str(args.threads),
                                          "--budget", str(args.budget), "--lookback", str(t), "--features", str(c),
                                          "--market", str(m)], env)
            pt = json.loads(out)
        else:
            pt, torch_mb = None, None
        probe, _ = run_measured([str(args.cli), "bench", "--stocks", str(n), "--lookback", str(t), "--features",
                                 str(c), "--market", str(m), "--threads", str(args.threads), "--iters", "3"], env)
        slowest = max(json.loads(probe)["train_step_ms"], 1e-3) / 1000
        iters = int(max(3, min(200, args.budget / slowest)))
        out, sm_mb = run_measured([str(args.cli), "bench", "--stocks", str(n), "--lookback", str(t), "--features",
                                   str(c), "--market", str(m), "--threads", str(args.threads), "--iters", str(iters)],
                                  env)
        sm = json.loads(out)
        rows.append((n, pt, torch_mb, sm, sm_mb, iters))
        print(f"N={n} done", file=sys.stderr)

    import torch
    print(f"PyTorch {torch.__version__} vs stockmixer, T={t} C={c} M={m}, {args.threads} thread(s); "
          "medians; peak RSS of each process\n")
    print("| N | PyTorch step | stockmixer step | step ratio | PyTorch inference | stockmixer inference "
          "| inference ratio | PyTorch peak | stockmixer peak |")
    print("|---|---|---|---|---|---|---|---|---|")

    def f(v, unit=" ms"):
        return "n/a" if v is None else f"{v:.3f}{unit}" if v < 10 else f"{v:.1f}{unit}"

    for n, pt, torch_mb, sm, sm_mb, iters in rows:
        ps, pi = (pt["train_step_ms"], pt["inference_ms"]) if pt else (None, None)
        ratio_s = f"{ps / sm['train_step_ms']:.1f}x" if pt else "n/a"
        ratio_i = f"{pi / sm['inference_ms']:.1f}x" if pt else "n/a"
        print(f"| {n} | {f(ps)} | {f(sm['train_step_ms'])} | {ratio_s} | {f(pi)} | {f(sm['inference_ms'])} | {ratio_i} "
              f"| {f(torch_mb, ' MB')} | {f(sm_mb, ' MB')} |")


if __name__ == "__main__":
    main()
