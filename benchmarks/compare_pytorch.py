#!/usr/bin/python3
"""PyTorch (and LibTorch) and stockmixer, one after the other, on the same shapes: the median time of a
training step (forward, loss, backward, Adam) and of inference, each process's peak memory, and the ratios.

    /usr/bin/python3 benchmarks/compare_pytorch.py --cli build/examples/stockmixer [--stocks 1026,1737,5000,20000]
        [--threads 1] [--budget 20] [--libtorch build/benchmarks/libtorch_bench] [--check-only]

PyTorch is Debian's python3-torch running the original model and get_loss (tests/make_model_fixtures.py,
copied verbatim from the article) with torch.optim.Adam; stockmixer is `stockmixer bench` (random
data of the same shape, eight batches in turn: its sorted rank loss branches on the data, and one batch
repeated would let the branch predictor learn it; PyTorch's dense O(N²) loss does not branch on it). Every measurement runs in a fresh process (its peak RSS is that shape's
alone) on --threads threads. Iterations: up to 200 per figure after two warm-ups, fewer when one
iteration is slow (about --budget seconds per figure, at least 3), so N = 20000 stays affordable in
PyTorch (about 10 s a step). PyTorch's loss builds three N x N matrices: shapes whose float32 N x N
matrices would need more than --torch-max-gb are not run in PyTorch and print n/a.

--libtorch adds LibTorch columns: benchmarks/libtorch_bench (-DSTOCKMIXER_LIBTORCH=ON), the same network
and get_loss in LibTorch C++ with torch::optim::Adam, timed the same way in a fresh process per shape.
Before anything is timed, its forward is checked against stockmixer's on every shape: PyTorch's
original model (default init, then every parameter moved by U(-0.2, 0.2) so LayerNorm's ones and zeros
are exercised too) is saved as safetensors, and `stockmixer predict` and `libtorch_bench --check`
predict one random input from it; max |libtorch - stockmixer| / max |stockmixer| and the same against
PyTorch's own forward must be <= 1e-5, else the script stops naming the shape and the error. All three
compute in float32 (stockmixer's stock head in double); LibTorch and PyTorch run the same ATen kernels
and agree to the bit, stockmixer sums in another order and stays within about 1e-6 of the largest
prediction at N = 37 and 1026, so 1e-5 leaves ten times that while a wrong layer or weight moves the
predictions by far more. --check-only runs that check alone (ctest libtorch_forward_parity does).
The stockmixer figures name the instruction set its fused kernels ran (`stockmixer bench`'s "isa").
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
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


CHECK_TOLERANCE = 1e-5


def forward_check(cli, libtorch, n, t, c, m):
    """LibTorch's forward against stockmixer's (and PyTorch's) on one checkpoint and input of shape n;
    exits naming the shape and the error when either exceeds CHECK_TOLERANCE. Returns the two errors."""
    import numpy as np
    import torch
    sys.path.insert(0, str(HERE.parent / "tests"))
    from make_io_fixtures import write_safetensors
    from make_model_fixtures import StockMixer

    torch.set_num_threads(1)  # as libtorch_bench --check runs: the same summation order, the same bits
    torch.manual_seed(n)
    model = StockMixer(stocks=n, time_steps=t, channels=c, market=m, scale=3)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.empty_like(p).uniform_(-0.2, 0.2))
    x = np.random.default_rng(n).uniform(0.5, 1.5, (n, t, c)).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy().astype(np.float64)
    with tempfile.TemporaryDirectory(prefix="compare_pytorch_") as tmp:
        weights, inp, sm_out, lt_out = (os.path.join(tmp, f) for f in ("w.safetensors", "x.npy", "sm.npy", "lt.npy"))
        write_safetensors(weights, dict(model.state_dict()))
        np.save(inp, x)
        run_measured([str(cli), "predict", "--weights", weights, "--input", inp, "--out", sm_out])
        run_measured([str(libtorch), "--check", "--weights", weights, "--input", inp, "--out", lt_out])
        sm = np.load(sm_out).astype(np.float64)
        lt = np.load(lt_out).astype(np.float64)
    if sm.shape != (n, 1) or lt.shape != (n, 1):
        sys.exit(f"compare_pytorch: N={n}: predictions of shape {sm.shape} (stockmixer) and {lt.shape} (LibTorch), "
                 f"expected ({n}, 1)")

    def err(a, b):
        return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))

    e_sm, e_pt = err(lt, sm), err(lt, ref)
    print(f"N={n}: LibTorch forward vs stockmixer predict {e_sm:.2e}, vs PyTorch {e_pt:.2e} "
          f"(max |diff| / max |reference|, tolerance {CHECK_TOLERANCE:g})", file=sys.stderr)
    if not (e_sm <= CHECK_TOLERANCE and e_pt <= CHECK_TOLERANCE):
        sys.exit(f"compare_pytorch: N={n} T={t} C={c} M={m}: LibTorch's forward ({libtorch} --check) differs from "
                 f"stockmixer predict's by {e_sm:.3e} and from PyTorch's by {e_pt:.3e} (relative, tolerance "
                 f"{CHECK_TOLERANCE:g}): the two networks are not the same, so nothing is timed")
    return e_sm, e_pt


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
    ap.add_argument("--libtorch", type=Path, help="benchmarks/libtorch_bench of a -DSTOCKMIXER_LIBTORCH=ON build: "
                    "adds LibTorch columns")
    ap.add_argument("--check-only", action="store_true", help="only check LibTorch's forward against stockmixer's "
                    "on each --stocks shape (needs --libtorch), time nothing")
    ap.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    t, c, m = args.lookback, args.features, args.market
    if args.worker:
        return torch_worker(args.worker, t, c, m, args.threads, args.budget)
    if not args.cli:
        ap.error("--cli is required")
    if args.check_only and not args.libtorch:
        ap.error("--check-only needs --libtorch")
    stocks = [int(s) for s in args.stocks.split(",")]
    if args.check_only:
        for n in stocks:
            forward_check(args.cli, args.libtorch, n, t, c, m)
        return
    if args.libtorch:
        # In a child process: this one must not import torch before the timed processes start, since a
        # child's peak RSS (ru_maxrss) counts the memory of the process it was forked from.
        r = subprocess.run([sys.executable, __file__, "--check-only", "--cli", str(args.cli), "--libtorch",
                            str(args.libtorch), "--stocks", args.stocks, "--lookback", str(t), "--features", str(c),
                            "--market", str(m)])
        if r.returncode != 0:
            sys.exit(f"compare_pytorch: LibTorch's forward check failed (exit {r.returncode}): nothing timed")

    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    rows = []
    for n in stocks:
        lt, lt_mb = None, None
        if 3 * 4 * n * n / 2**30 <= args.torch_max_gb:
            out, torch_mb = run_measured([sys.executable, __file__, "--worker", str(n), "--threads", str(args.threads),
                                          "--budget", str(args.budget), "--lookback", str(t), "--features", str(c),
                                          "--market", str(m)], env)
            pt = json.loads(out)
            if args.libtorch:
                out, lt_mb = run_measured([str(args.libtorch), "--stocks", str(n), "--threads", str(args.threads),
                                           "--budget", str(args.budget), "--lookback", str(t), "--features", str(c),
                                           "--market", str(m)], env)
                lt = json.loads(out)
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
        rows.append((n, pt, torch_mb, lt, lt_mb, sm, sm_mb, iters))
        print(f"N={n} done", file=sys.stderr)

    import torch
    isas = sorted({sm.get("isa", "?") for *_, sm, _, _ in rows})
    print(f"PyTorch {torch.__version__}" + (f" and LibTorch {rows[0][3]['torch']}" if rows and rows[0][3] else "")
          + f" vs stockmixer (fused kernels: {', '.join(isas)}), T={t} C={c} M={m}, {args.threads} thread(s); "
          "medians; peak RSS of each process\n")

    def f(v, unit=" ms"):
        return "n/a" if v is None else f"{v:.3f}{unit}" if v < 10 else f"{v:.1f}{unit}"

    def ratio(anchor, key, sm):
        return f"{anchor[key] / sm[key]:.1f}x" if anchor else "n/a"

    if not args.libtorch:
        print("| N | PyTorch step | stockmixer step | step ratio | PyTorch inference | stockmixer inference "
              "| inference ratio | PyTorch peak | stockmixer peak |")
        print("|---|---|---|---|---|---|---|---|---|")
        for n, pt, torch_mb, _, _, sm, sm_mb, iters in rows:
            ps, pi = (pt["train_step_ms"], pt["inference_ms"]) if pt else (None, None)
            print(f"| {n} | {f(ps)} | {f(sm['train_step_ms'])} | {ratio(pt, 'train_step_ms', sm)} | {f(pi)} "
                  f"| {f(sm['inference_ms'])} | {ratio(pt, 'inference_ms', sm)} | {f(torch_mb, ' MB')} | {f(sm_mb, ' MB')} |")
        return
    print("| N | PyTorch step | LibTorch step | stockmixer step | step ratio PyTorch | step ratio LibTorch "
          "| PyTorch inference | LibTorch inference | stockmixer inference | inference ratio PyTorch "
          "| inference ratio LibTorch | PyTorch peak | LibTorch peak | stockmixer peak |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for n, pt, torch_mb, lt, lt_mb, sm, sm_mb, iters in rows:
        def get(d, key):
            return d[key] if d else None
        print(f"| {n} | {f(get(pt, 'train_step_ms'))} | {f(get(lt, 'train_step_ms'))} | {f(sm['train_step_ms'])} "
              f"| {ratio(pt, 'train_step_ms', sm)} | {ratio(lt, 'train_step_ms', sm)} | {f(get(pt, 'inference_ms'))} "
              f"| {f(get(lt, 'inference_ms'))} | {f(sm['inference_ms'])} | {ratio(pt, 'inference_ms', sm)} "
              f"| {ratio(lt, 'inference_ms', sm)} | {f(torch_mb, ' MB')} | {f(lt_mb, ' MB')} | {f(sm_mb, ' MB')} |")


if __name__ == "__main__":
    main()
