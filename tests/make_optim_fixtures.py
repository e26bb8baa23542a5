#!/usr/bin/python3
"""Writes the PyTorch golden fixtures the optimiser tests compare against (tests/test_optim.cpp).

Run with Debian's python3-torch 1.13 (installed by cmake/install-deps.sh):

    /usr/bin/python3 tests/make_optim_fixtures.py            # rewrite tests/fixtures/optim/
    /usr/bin/python3 tests/make_optim_fixtures.py --check    # regenerate in a temp dir, compare

Every case is a folder tests/fixtures/optim/<case>/ holding, for the three parameters of PARAMS,
    meta.json                     the optimiser (Adam or AdamW), its options, the step count and the
                                  parameters' names and shapes, in the order they are given to it
    <param>.npy                   the initial value                     float64 array of float32 values
    <param>.grads.npy             [STEPS, *shape] the gradient of each step   (same: float and double
                                  runs see the same numbers)
    <param>.values.f32.npy        [STEPS, *shape] the parameter after each step, PyTorch in float32
    <param>.exp_avg.f32.npy       exp_avg after the last step
    <param>.exp_avg_sq.f32.npy    exp_avg_sq after the last step
    ... and the same three with .f64.npy, PyTorch in float64.

PyTorch runs its single-tensor CPU path (foreach=False, amsgrad=False, maximize=False) with one
thread. The three parameters have different sizes (one below AVX2's 16-float vector loop, so PyTorch's
scalar tail is covered) and gradients of different scales (1, 1e-3, 1e-6), so that eps matters for
the smallest.
"""
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fixture_tools import fixture_main, generator, normal_like  # noqa: E402

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "fixtures" / "optim"

STEPS = 10
# name, shape, gradient scale
PARAMS = (("weight", (6, 7), 1.0), ("bias", (13,), 1e-3), ("kernel", (2, 3, 5), 1e-6))
DTYPES = ((torch.float32, "f32"), (torch.float64, "f64"))


def case(root, name, seed, optimizer, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
    """One optimiser configuration: seeded inputs (the same bits on every CPU: fixture_tools), then 10
    steps in float32 and in float64."""
    out = root / name
    out.mkdir(parents=True)
    gen = generator(seed)
    init, grads = {}, {}
    for pname, shape, scale in PARAMS:
        init[pname] = torch.from_numpy(normal_like(gen, shape, 1.0))
        grads[pname] = torch.from_numpy(normal_like(gen, (STEPS, *shape), scale))
        np.save(out / f"{pname}.npy", init[pname].to(torch.float64).numpy())
        np.save(out / f"{pname}.grads.npy", grads[pname].to(torch.float64).numpy())

    cls = {"Adam": torch.optim.Adam, "AdamW": torch.optim.AdamW}[optimizer]
    for dtype, suffix in DTYPES:
        params = [init[pname].to(dtype).clone().requires_grad_(True) for pname, _, _ in PARAMS]
        opt = cls(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=False,
                  foreach=False, maximize=False)
        values = {pname: [] for pname, _, _ in PARAMS}
        for k in range(STEPS):
            for p, (pname, _, _) in zip(params, PARAMS):
                p.grad = grads[pname][k].to(dtype).clone()
            opt.step()
            for p, (pname, _, _) in zip(params, PARAMS):
                values[pname].append(p.detach().clone())
        for p, (pname, _, _) in zip(params, PARAMS):
            state = opt.state[p]
            assert int(state["step"].item()) == STEPS
            np.save(out / f"{pname}.values.{suffix}.npy", torch.stack(values[pname]).numpy())
            np.save(out / f"{pname}.exp_avg.{suffix}.npy", state["exp_avg"].numpy())
            np.save(out / f"{pname}.exp_avg_sq.{suffix}.npy", state["exp_avg_sq"].numpy())

    meta = {
        "optimizer": optimizer,
        "lr": lr, "beta1": betas[0], "beta2": betas[1], "eps": eps, "weight_decay": weight_decay,
        "decoupled_weight_decay": optimizer == "AdamW",
        "steps": STEPS,
        "params": [{"name": pname, "shape": list(shape)} for pname, shape, _ in PARAMS],
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")


def write_all(root):
    torch.set_num_threads(1)
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    case(root, "adam", 1, "Adam", lr=1e-3)                                   # the defaults
    case(root, "adam_l2", 2, "Adam", lr=1e-2, weight_decay=0.01)             # L2: grad += wd·param
    case(root, "adamw", 3, "AdamW", lr=1e-2, weight_decay=0.1)               # decoupled: param *= 1 − lr·wd
    case(root, "adam_betas", 4, "Adam", lr=1e-3, betas=(0.8, 0.99), eps=1e-6)  # other betas, a larger eps


# --check (fixture_tools' docstring says what each kind proves): bit-identical on a CPU where PyTorch
# runs its AVX2 kernels (fused multiply-adds). With ATEN_CPU_CAPABILITY=default (no FMA) or avx512 the
# inputs are the same bits and a few roundings differ: float64 results at most 2.5e-16 apart (measured),
# float32 ones 1.6e-7. An elementwise update has no cancellation to amplify a rounding: each of the ten
# steps adds at most a few float64 epsilons (2^-53 = 1.1e-16), so 1e-14 (90 epsilons) bounds float64;
# float32 by the same rule and constants as the model's fixtures (measured: a committed folder within
# 1.2x of this CPU's float32 error).
def main():
    return fixture_main(__doc__, DEFAULT_OUT, write_all, tol=0.0, f64_tol=1e-14, f32_factor=8.0, f32_floor=2.0 ** -23)


if __name__ == "__main__":
    sys.exit(main())
