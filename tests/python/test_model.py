"""The model from Python: predict and gradients against the `stockmixer` tool (bit for bit) and against
the original PyTorch model (within the parity tolerances of tests/check_cli.py), state_dict and checkpoints
both ways, and what is refused."""

import numpy as np
import pytest
import torch

import stockmixer
from conftest import DTYPES, batch, python_during, run_cli
from make_io_fixtures import read_safetensors
from make_model_fixtures import StockMixer as TorchStockMixer
from make_model_fixtures import get_loss

# N = 1026 is NASDAQ's universe; N = 37 leaves a partial group of 16 stocks in the fused kernel.
SHAPES = [(37, 16, 5, 20), (1026, 16, 5, 20)]


def write_inputs(tmp, arrays):
    paths = {}
    for name, a in arrays.items():
        paths[name] = tmp / f"{name}.npy"
        np.save(paths[name], a)
    return paths


@pytest.mark.parametrize("n,t,c,m", SHAPES)
@pytest.mark.parametrize("dtype,precision", DTYPES)
def test_predict_and_gradients_equal_the_tool_bit_for_bit(cli, tmp_path, n, t, c, m, dtype, precision):
    model = stockmixer.StockMixer(n, t, c, m, seed=3, dtype=dtype)
    weights = tmp_path / "w.safetensors"
    model.save_checkpoint(str(weights))
    x, gt, base, mask = batch(n, t, c, seed=n, dtype=dtype)
    p = write_inputs(tmp_path, {"x": x, "gt": gt, "base": base, "mask": mask})

    run_cli(cli, "predict", "--weights", weights, "--input", p["x"], "--out", tmp_path / "pred.npy",
            "--precision", precision)
    tool = np.load(tmp_path / "pred.npy")
    ours = model.predict(x)
    assert ours.dtype == dtype and ours.shape == (n, 1)
    assert tool.dtype == ours.dtype and np.array_equal(tool, ours)

    run_cli(cli, "gradients", "--weights", weights, "--input", p["x"], "--gt", p["gt"], "--base", p["base"],
            "--mask", p["mask"], "--alpha", "0.25", "--out", tmp_path / "g.safetensors", "--precision", precision)
    _, header, _, tool = read_safetensors(tmp_path / "g.safetensors")
    ours = model.gradients(x, gt, base, mask, alpha=0.25)
    again = model.gradients(x, gt, base, mask, alpha=0.25)  # the gradients are zeroed first, not accumulated
    assert all(np.array_equal(again[k], v) for k, v in ours.items())
    assert list(ours)[:5] == ["prediction", "rr", "loss", "reg_loss", "rank_loss"]
    assert set(ours) == set(tool)
    for name, a in ours.items():
        b = tool[name].numpy()
        assert a.dtype == b.dtype and a.shape == b.shape, name
        assert np.array_equal(a, b), name
    # The parameters' gradients come in state_dict order, under the state_dict's names.
    assert list(ours)[5:] == list(model.state_dict())


def torch_model(sd, n, t, c, m, dtype):
    net = TorchStockMixer(n, t, c, m, 3).to(dtype)
    net.load_state_dict({k: torch.from_numpy(v).to(dtype) for k, v in sd.items()}, strict=True)
    return net


def rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


@pytest.mark.parametrize("dtype,precision", DTYPES)
def test_state_dict_moves_to_pytorch_and_back(dtype, precision):
    """Our weights into PyTorch's model (strict) and PyTorch's into ours, through torch.from_numpy and
    .numpy(). Float: within 1e-5 of PyTorch's float64, no farther from its float32 than 1e-5 plus PyTorch's
    own float32 error; double: within 1e-10 (the bounds of tests/check_cli.py, which gives their reasons)."""
    torch.manual_seed(0)
    n, t, c, m = 37, 16, 5, 20
    ours = stockmixer.StockMixer(n, t, c, m, seed=5, dtype=dtype)
    sd = ours.state_dict()
    assert all(v.dtype == dtype for v in sd.values())
    x, gt, base, mask = batch(n, t, c, seed=1, dtype=dtype)
    ref = {}
    for tdt in (torch.float32, torch.float64):
        net = torch_model(sd, n, t, c, m, tdt)
        xt, gtt, bt, mt = (torch.from_numpy(a).to(tdt) for a in (x, gt, base, mask))
        pred = net(xt)
        loss, reg, rank, rr = get_loss(pred, gtt, bt, mt, n, 0.1)
        loss.backward()
        ref[tdt] = {"prediction": pred, "loss": loss, **{k: p.grad for k, p in net.named_parameters()}}
        ref[tdt] = {k: v.detach().numpy() for k, v in ref[tdt].items()}
    got = ours.gradients(x, gt, base, mask)
    assert np.array_equal(got["prediction"], ours.predict(x))
    for name in ref[torch.float64]:
        a, f32, f64 = got[name].reshape(ref[torch.float64][name].shape), ref[torch.float32][name], ref[torch.float64][name]
        if precision == "f64":
            assert rel(a, f64) <= 1e-10, name
        else:
            assert rel(a, f64) <= 1e-5 and rel(a, f32) <= 1e-5 + rel(f32, f64), name

    # PyTorch's weights (another initialisation) into ours: the same predictions as PyTorch's model.
    net = TorchStockMixer(n, t, c, m, 3).double()
    back = stockmixer.StockMixer(n, t, c, m, seed=9, dtype=dtype)
    back.load_state_dict({k: v.detach() for k, v in net.state_dict().items()})  # torch tensors, read by np.asarray
    assert all(np.array_equal(back.state_dict()[k], v.numpy().astype(dtype)) for k, v in net.state_dict().items())
    want = net(torch.from_numpy(x.astype(np.float64))).detach().numpy()
    bound = 1e-10 if precision == "f64" else 1e-5
    assert rel(back.predict(x), want) <= bound


def test_state_dict_round_trip_is_exact(tmp_path):
    a = stockmixer.StockMixer(50, seed=1)
    b = stockmixer.StockMixer(50, seed=2)
    x = batch(50, seed=3)[0]
    assert not np.array_equal(a.predict(x), b.predict(x))
    sd = a.state_dict()
    b.load_state_dict(sd)
    assert np.array_equal(a.predict(x), b.predict(x))
    sd["time_fc.bias"][0] += 1  # a copy: the model does not change with it
    assert np.array_equal(a.state_dict()["time_fc.bias"], b.state_dict()["time_fc.bias"])
    # Checkpoints: written and read back bit for bit, in either dtype.
    a.save_checkpoint(str(tmp_path / "a.safetensors"))
    c = stockmixer.load_checkpoint(str(tmp_path / "a.safetensors"))
    assert c.config == a.config and np.array_equal(c.predict(x), a.predict(x))
    d = stockmixer.load_checkpoint(tmp_path / "a.safetensors", dtype=np.float64)
    assert d.dtype == np.float64
    assert all(np.array_equal(v, a.state_dict()[k].astype(np.float64)) for k, v in d.state_dict().items())


def expect_error(fragments, fn, *args, **kwargs):
    with pytest.raises(stockmixer.Error) as e:
        fn(*args, **kwargs)
    for f in fragments:
        assert f in str(e.value), (f, str(e.value))
    return str(e.value)


def test_bad_arrays_are_refused_naming_them(tmp_path):
    m = stockmixer.StockMixer(20, seed=0)
    x, gt, base, mask = batch(20)
    expect_error(["x: dtype float64, expected float32", "np.ascontiguousarray"], m.predict, x.astype(np.float64))
    expect_error(["x: the array [20, 8, 5] is not C-contiguous"], m.predict, x[:, ::2])
    expect_error(["x: the array [5, 16, 20] is not C-contiguous"], m.predict, x.T)
    expect_error(["x has shape [10, 16, 5]", "[N, T, C] = [20, 16, 5]"], m.predict, x[:10])
    expect_error(["x: dtype >f4"], m.predict, x.astype(">f4"))
    expect_error(["gt has shape [19, 1]", "expected [20, 1]"], m.gradients, x, gt[:19], base, mask)
    expect_error(["mask: dtype int64"], m.gradients, x, gt, base, mask.astype(np.int64))
    zero = base.copy()
    zero[7] = 0
    expect_error(["base price of stock 7 is 0"], m.gradients, x, gt, zero, mask)
    bad = x.copy()
    bad[3, 2, 1] = np.nan
    expect_error(["predictions are not finite", "x holds a non-finite value at flat index " + str(3 * 80 + 2 * 5 + 1)],
                 m.predict, bad)
    expect_error(["tensors hold NaN or Inf", "prediction:", "the input x holds a non-finite value"],
                 m.gradients, bad, gt, base, mask)
    expect_error(["/nonexistent/w.safetensors", "no such file"], stockmixer.load_checkpoint, "/nonexistent/w.safetensors")
    expect_error(["dtype float16 is not supported"], stockmixer.StockMixer, 10, dtype="float16")
    expect_error(["lookback (T) must be even"], stockmixer.StockMixer, 10, lookback=15)
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 4)
    expect_error(["junk.safetensors"], stockmixer.load_checkpoint, str(tmp_path / "junk.safetensors"))


def test_load_state_dict_checks_everything_before_writing():
    m = stockmixer.StockMixer(20, seed=0)
    before = m.state_dict()
    sd = m.state_dict()
    sd["conv.bias"] = sd["conv.bias"][:3]
    expect_error(["'conv.bias' has shape [3], expected [5]"], m.load_state_dict, sd)
    sd = stockmixer.StockMixer(20, seed=1).state_dict()
    del sd["time_fc_.weight"]
    expect_error(["missing 'time_fc_.weight' [1, 40]"], m.load_state_dict, sd)
    sd = stockmixer.StockMixer(20, seed=1).state_dict()
    sd["extra.weight"] = np.zeros(3, np.float32)
    expect_error(["unexpected key 'extra.weight'"], m.load_state_dict, sd)
    sd = stockmixer.StockMixer(20, seed=1).state_dict()
    sd["stock_mixer.dense1.bias"] = sd["stock_mixer.dense1.bias"].astype(np.float64)
    sd["stock_mixer.dense1.bias"][4] = 1e300
    expect_error(["'stock_mixer.dense1.bias' [20] holds inf at flat index 4 (beyond the range of float32)"],
                 m.load_state_dict, sd)
    sd["stock_mixer.dense1.bias"][4] = np.nan
    expect_error(["holds nan at flat index 4", "weights must be finite"], m.load_state_dict, sd)
    sd["stock_mixer.dense1.bias"] = np.zeros(20, np.int32)
    expect_error(["dtype int32 (expected float32 or float64)"], m.load_state_dict, sd)
    # Nothing was written by any refused call (the last entry checked in each comes after others).
    assert all(np.array_equal(v, before[k]) for k, v in m.state_dict().items())


def test_engine_work_releases_the_gil():
    """While one thread is inside a long engine call (time_predict at NASDAQ's shape), another runs Python."""
    m = stockmixer.StockMixer(1026, seed=0)
    x = batch(1026)[0]
    m.predict(x)
    span, inside = python_during(lambda: m.time_predict(x, repeats=300))
    # With the GIL held, the loop could run only in the interpreter's switch interval before the call
    # (5 ms by default) while the call itself takes 300 predictions; released, it runs throughout.
    assert span > 0.02 and inside and inside[-1] - inside[0] > 0.5 * span, (span, len(inside))
