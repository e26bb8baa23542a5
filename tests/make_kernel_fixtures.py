#!/usr/bin/python3
"""Writes the PyTorch golden fixtures the kernel tests compare against (tests/test_kernels_torch.cpp).

Run with Debian's python3-torch (installed by cmake/install-deps.sh):

    /usr/bin/python3 tests/make_kernel_fixtures.py            # rewrite tests/fixtures/kernels/
    /usr/bin/python3 tests/make_kernel_fixtures.py --check    # regenerate in a temp dir, compare to the committed

Inputs are the same bits on every CPU (fixture_tools.generator, uniform, normal_like; PyTorch's own
random fills and linspace differ between instruction sets).

Every case is a folder tests/fixtures/kernels/<case>/ holding
    meta.json            the op, its sizes and parameters
    <input>.npy          float32 inputs (float32 values, so float and double runs see the same numbers)
    <output>.f32.npy     PyTorch's forward outputs and gradients computed in float32
    <output>.f64.npy     the same computed in float64
Gradients are taken with a random upstream gradient `dy` (an input), except for the loss, whose
upstream is d(loss) = 1 as in training.

Layouts follow the C++ kernels (see their headers): Conv1d and TriU take channels-last [B, L, C] /
[B, L, K] inputs, so the PyTorch side permutes to PyTorch's layout and back; TriU's weight is packed
into a lower-triangular [L, L] matrix whose row i holds `triU.i.weight`.
"""
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fixture_tools import fixture_main, generator, normal_like, uniform  # noqa: E402

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "fixtures" / "kernels"

# StockMixer's NASDAQ shapes.
N, T, C, S, M = 1026, 16, 5, 8, 20
FT = 2 * T + S  # fused time length F = 40


# The original's TriU and get_loss (the article's src/model.py) live in tests/make_model_fixtures.py.
from make_model_fixtures import TriU, default_init, get_loss  # noqa: E402


# ---- helpers ---------------------------------------------------------------------------------------

class Case:
    """Collects one fixture case: float32 inputs, and outputs for each precision."""

    def __init__(self, root, name, op, seed, **meta):
        self.dir = root / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.meta = {"op": op, **meta}
        self.gen = generator(seed)
        self.inputs = {}

    def randn(self, name, *shape, scale=1.0, shift=0.0):
        return self.add(name, torch.from_numpy(normal_like(self.gen, shape, scale, mean=shift)))

    def uniform(self, name, *shape, low=-1.0, high=1.0):
        return self.add(name, torch.from_numpy(uniform(self.gen, shape, low, high)))

    def add(self, name, tensor):
        t = tensor.to(torch.float32).contiguous()
        self.inputs[name] = t
        np.save(self.dir / f"{name}.npy", t.numpy())
        return t

    def inp(self, name, dtype, grad=False):
        return self.inputs[name].to(dtype).clone().requires_grad_(grad)

    def out(self, dtype, **tensors):
        suffix = "f32" if dtype == torch.float32 else "f64"
        for name, t in tensors.items():
            a = t.detach().to(dtype).contiguous().numpy()
            np.save(self.dir / f"{name}.{suffix}.npy", a.reshape(a.shape if a.ndim else (1,)))

    def done(self):
        (self.dir / "meta.json").write_text(json.dumps(self.meta, indent=1, sort_keys=True) + "\n")


DTYPES = (torch.float32, torch.float64)


def grid(lo, hi, n):
    """n points from lo to hi, evenly spaced: lo + k (hi - lo) / (n - 1) in float64, rounded to float32."""
    return torch.from_numpy((lo + np.arange(n, dtype=np.float64) * ((hi - lo) / (n - 1))).astype(np.float32))


def grads(*tensors):
    return [t.grad for t in tensors]


# ---- one function per kernel -----------------------------------------------------------------------

def linear(root, name, seed, rows, fin, fout):
    c = Case(root, name, "linear", seed, rows=rows, **{"in": fin, "out": fout})
    c.randn("x", rows, fin)
    c.uniform("weight", fout, fin, low=-fin ** -0.5, high=fin ** -0.5)
    c.uniform("bias", fout, low=-fin ** -0.5, high=fin ** -0.5)
    c.randn("dy", rows, fout)
    for dt in DTYPES:
        x, w, b = (c.inp(k, dt, True) for k in ("x", "weight", "bias"))
        y = F.linear(x, w, b)
        y.backward(c.inp("dy", dt))
        c.out(dt, y=y, dx=x.grad, dweight=w.grad, dbias=b.grad)
    c.done()


def layernorm(root, name, seed, rows, shape):
    dim = int(np.prod(shape))
    c = Case(root, name, "layernorm", seed, rows=rows, dim=dim, normalized_shape=list(shape), eps=1e-5)
    c.randn("x", rows, *shape, scale=2.0, shift=0.5)
    c.randn("gamma", *shape, scale=0.5, shift=1.0)
    c.randn("beta", *shape, scale=0.5)
    c.randn("dy", rows, *shape)
    for dt in DTYPES:
        x, g, b = (c.inp(k, dt, True) for k in ("x", "gamma", "beta"))
        y = F.layer_norm(x, list(shape), g, b, eps=1e-5)
        y.backward(c.inp("dy", dt))
        xd = x.detach().reshape(rows, dim)
        mean = xd.mean(dim=1)
        rstd = 1.0 / torch.sqrt(xd.var(dim=1, unbiased=False) + 1e-5)
        c.out(dt, y=y, mean=mean, rstd=rstd, dx=x.grad, dgamma=g.grad, dbeta=b.grad)
    c.done()


def elementwise(root, name, seed, op, x_values, one_by_one=False):
    """one_by_one: evaluate each element in its own one-element call. PyTorch 1.13's CPU Hardswish
    backward is not consistent at exactly x = 3: its vectorised body returns 1 (it tests x >= 3) while
    its scalar path, used for a tensor's tail and by the CUDA kernel, returns 3/2 (it tests x <= 3).
    Kink values are therefore taken from the scalar path, the definition the library follows."""
    c = Case(root, name, op, seed, n=int(x_values.numel()))
    c.add("x", x_values)
    c.randn("dy", x_values.numel())
    fn = {"gelu": nn.GELU(), "hardswish": nn.Hardswish()}[op]
    for dt in DTYPES:
        x = c.inp("x", dt, True)
        dy = c.inp("dy", dt)
        if one_by_one:
            y = torch.cat([fn(x[i : i + 1]) for i in range(x.numel())])
        else:
            y = fn(x)
        y.backward(dy)
        c.out(dt, y=y, dx=x.grad)
    c.done()


def conv1d(root, name, seed, batch, length, cin, cout, kernel):
    c = Case(root, name, "conv1d", seed, batch=batch, length=length, cin=cin, cout=cout, kernel=kernel)
    bound = (cin * kernel) ** -0.5
    c.randn("x", batch, length, cin)
    c.uniform("weight", cout, cin, kernel, low=-bound, high=bound)
    c.uniform("bias", cout, low=-bound, high=bound)
    c.randn("dy", batch, length // kernel, cout)
    for dt in DTYPES:
        x, w, b = (c.inp(k, dt, True) for k in ("x", "weight", "bias"))
        y = F.conv1d(x.permute(0, 2, 1), w, b, stride=kernel).permute(0, 2, 1)  # [B, Lo, Co]
        y.backward(c.inp("dy", dt))
        c.out(dt, y=y, dx=x.grad, dweight=w.grad, dbias=b.grad)
    c.done()


def triu(root, name, seed, batch, length, inner):
    c = Case(root, name, "triu", seed, batch=batch, length=length, inner=inner)
    module = TriU(length)  # one Linear(i + 1, 1) per position
    default_init(module, seed)  # PyTorch's default init's distribution, the same bits on every CPU
    packed = torch.zeros(length, length)
    for i in range(length):
        packed[i, : i + 1] = module.triU[i].weight.detach()[0]
    c.add("weight", packed)
    c.add("bias", torch.cat([module.triU[i].bias.detach() for i in range(length)]))
    c.randn("x", batch, length, inner)
    c.randn("dy", batch, length, inner)
    for dt in DTYPES:
        m = TriU(length).to(dt)
        with torch.no_grad():
            for i in range(length):
                m.triU[i].weight.copy_(c.inputs["weight"][i, : i + 1].to(dt)[None, :])
                m.triU[i].bias.copy_(c.inputs["bias"][i : i + 1].to(dt))
        x = c.inp("x", dt, True)
        y = m(x.permute(0, 2, 1)).permute(0, 2, 1)  # the original applies TriU on [B, K, L]
        y.backward(c.inp("dy", dt))
        dw = torch.zeros(length, length, dtype=dt)
        for i in range(length):
            dw[i, : i + 1] = m.triU[i].weight.grad[0]
        db = torch.cat([m.triU[i].bias.grad for i in range(length)])
        c.out(dt, y=y, dx=x.grad, dweight=dw, dbias=db)
    c.done()


def dropout(root, name, seed, n, p):
    c = Case(root, name, "dropout", seed, n=n, p=p)
    x = torch.from_numpy(normal_like(c.gen, (n,), 1.0))
    x[x == 0] = 1.0  # the keep mask is read back from y != 0
    c.add("x", x)
    c.randn("dy", n)
    for dt in DTYPES:
        xi = c.inp("x", dt, True)
        torch.manual_seed(seed)
        y = F.dropout(xi, p=p, training=True)
        y.backward(c.inp("dy", dt))
        if dt == torch.float32:
            c.add("keep", (y.detach() != 0).to(torch.float32))
        c.out(dt, y=y, dx=xi.grad)
    c.done()


def rank_loss(root, name, seed, n, alpha, ties=False, masked=0.1):
    c = Case(root, name, "rank_loss", seed, n=n, alpha=alpha, ties=ties)
    base = torch.from_numpy(uniform(c.gen, (n, 1), 0.5, 2.0))
    gt = torch.from_numpy(normal_like(c.gen, (n, 1), 0.02))
    pred = base * torch.from_numpy(normal_like(c.gen, (n, 1), 0.02, mean=1.0))
    if ties:  # quantised returns and predictions: many exact ties, where relu's gradient is 0
        gt = torch.round(gt * 200) / 200
        base = torch.ones(n, 1)
        pred = 1.0 + torch.round((pred - 1.0) * 100) / 100
    mask = torch.from_numpy((uniform(c.gen, (n, 1), 0.0, 1.0) >= masked).astype(np.float32))
    c.add("pred", pred)
    c.add("base", base)
    c.add("gt", gt)
    c.add("mask", mask)
    for dt in DTYPES:
        p = c.inp("pred", dt, True)
        loss, reg, rank, rr = get_loss(p, c.inp("gt", dt), c.inp("base", dt), c.inp("mask", dt), n, alpha)
        loss.backward()
        c.out(dt, rr=rr, loss=loss, reg=reg, rank=rank, dpred=p.grad)
    c.done()


def write_all(root):
    torch.set_num_threads(1)
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    # Linear: a small odd shape and the four Linear shapes of StockMixer on NASDAQ.
    linear(root, "linear_small", 1, rows=7, fin=3, fout=4)
    linear(root, "linear_channel_mixer", 2, rows=N * T, fin=C, fout=C)
    linear(root, "linear_stock_dense1", 3, rows=FT, fin=N, fout=M)
    linear(root, "linear_stock_dense2", 4, rows=FT, fin=M, fout=N)
    linear(root, "linear_time_fc", 5, rows=N, fin=FT, fout=1)
    # LayerNorm over two trailing dims [T, C] and over one [N].
    layernorm(root, "layernorm_small_2d", 10, rows=3, shape=(4, 5))
    layernorm(root, "layernorm_small_1d", 11, rows=5, shape=(7,))
    layernorm(root, "layernorm_tc", 12, rows=N, shape=(T, C))
    layernorm(root, "layernorm_stock", 13, rows=FT, shape=(N,))
    # GELU and Hardswish, with Hardswish's kinks (-3, 3) and its flat regions included exactly.
    elementwise(root, "gelu_range", 20, "gelu", grid(-6, 6, 97))
    elementwise(root, "gelu_nasdaq", 21, "gelu", torch.from_numpy(normal_like(generator(21), (N * T * C,), 1.0)))
    elementwise(root, "hardswish_range", 22, "hardswish", grid(-5, 5, 80))  # no exact kink
    elementwise(root, "hardswish_kinks", 24, "hardswish",
                torch.tensor([-3.0, 3.0, -3.0001, -2.9999, 2.9999, 3.0001, 0.0, -6.0, 6.0]), one_by_one=True)
    elementwise(root, "hardswish_stock", 23, "hardswish",
                torch.from_numpy(normal_like(generator(23), (FT * M,), 3.0)))
    # Conv1d, kernel = stride: a tail that is not read, StockMixer's k = 2, and k = 4.
    conv1d(root, "conv1d_small", 30, batch=3, length=7, cin=2, cout=3, kernel=3)
    conv1d(root, "conv1d_nasdaq", 31, batch=N, length=T, cin=C, cout=C, kernel=2)
    conv1d(root, "conv1d_k4", 32, batch=6, length=16, cin=5, cout=4, kernel=4)
    # TriU: the original's last-axis layout (K = 1) and StockMixer's time mixers (B = N, K = C).
    triu(root, "triu_small_last_axis", 40, batch=4, length=5, inner=1)
    triu(root, "triu_small", 41, batch=3, length=6, inner=3)
    triu(root, "triu_nasdaq_t", 42, batch=N, length=T, inner=C)
    triu(root, "triu_nasdaq_s", 43, batch=N, length=S, inner=C)
    # Dropout: PyTorch draws the mask; the test feeds it to our kernel.
    dropout(root, "dropout_small", 50, n=100, p=0.3)
    dropout(root, "dropout_nasdaq", 51, n=N * T * C, p=0.1)
    # The loss: small, NASDAQ-sized, and one full of ties.
    rank_loss(root, "rank_loss_small", 60, n=7, alpha=0.1)
    rank_loss(root, "rank_loss_nasdaq", 61, n=N, alpha=0.1)
    rank_loss(root, "rank_loss_ties", 62, n=64, alpha=0.1, ties=True, masked=0.2)


# --check (fixture_tools' docstring says what each kind proves), measured by regenerating with PyTorch's
# kernels for each instruction set (ATEN_CPU_CAPABILITY=default, avx2, avx512; oneDNN capped to AVX2 or
# SSE4.1 by DNNL_MAX_CPU_ISA) against fixtures written with avx2 on an AVX-512 CPU:
#   inputs: the same bits (0).
#   float64 results: 5.0e-16 at most (layernorm_tc's dgamma). One op each, so differences are
#     reordered sums: about sqrt(n) float64 epsilons (2^-53) for a sum of n terms, 1.4e-14 for the
#     longest here (linear_channel_mixer's dweight, n = N * T = 16,416). Bound 1e-13.
#   float32 results: a committed folder lies at most 6.6x as far from the float64 answer as another
#     instruction set's float32 run of it does (conv1d_nasdaq's dbias, a sum of 8,208 terms, with oneDNN
#     at SSE4.1: 2.5e-6), because a case's largest float32 error can be one long sum that happens to
#     land close on this CPU. So the model's factor 8 plus a floor of a reordered float32 sum's typical
#     error, sqrt(n) * 2^-24 for n = 16,416: 7.6e-6 = 2^-17.
def main():
    return fixture_main(__doc__, DEFAULT_OUT, write_all, tol=0.0, f64_tol=1e-13, f32_factor=8.0, f32_floor=2.0 ** -17)


if __name__ == "__main__":
    sys.exit(main())
