"""docs/python.md's Python blocks, run in order as one session from the repository root: a snippet that
no longer runs fails here. Then what the walkthrough claims in its prose and comments is checked on the
session's own objects."""
import contextlib
import io
import os
import re

import numpy as np
import pytest
import torch

from conftest import ROOT

PAGE = ROOT / "docs" / "python.md"
NASDAQ = ROOT.parent / "shared" / "data" / "NASDAQ"


def python_blocks(text):
    return re.findall(r"^```python\n(.*?)^```$", text, flags=re.S | re.M)


def test_the_page_has_its_walkthrough():
    blocks = python_blocks(PAGE.read_text())
    assert len(blocks) == 5, "docs/python.md's walkthrough: data, windows, training, evaluating, PyTorch"


def test_every_snippet_runs(monkeypatch):
    if not NASDAQ.is_dir():
        pytest.skip(f"skipped: the walkthrough reads the NASDAQ data, not found at {NASDAQ}")
    monkeypatch.chdir(ROOT)
    session = {"__name__": "docs_python_md"}
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        for k, block in enumerate(python_blocks(PAGE.read_text())):
            try:
                exec(compile(block, f"{PAGE}:python block {k + 1}", "exec"), session)
            except Exception as e:  # noqa: BLE001 - the block's number and text make the failure readable
                raise AssertionError(f"docs/python.md, python block {k + 1} fails:\n{block}") from e
    s = session
    # "(1026, 1245, 5) float32: [N, D, C]"
    assert s["nasdaq"]["eod"].shape == (1026, 1245, 5) and s["nasdaq"]["eod"].dtype == np.float32
    assert (s["nasdaq"]["valid_index"], s["nasdaq"]["test_index"]) == (756, 1008)
    # window() is get_batch: its x is the eod slice, its mask the minimum over the window and the target.
    x, gt, base, mask = s["window"](s["nasdaq"], 900)
    assert x.shape == (1026, 16, 5) and gt.shape == base.shape == mask.shape == (1026, 1)
    assert np.array_equal(base[:, 0], s["nasdaq"]["price"][:, 915])
    # "stop after the fourth epoch"
    assert s["summary"]["epochs"] == 4
    # Scoring the best model as training scored it gives the summary's test figures, exactly.
    for key in ("IC", "RIC", "prec_10", "sharpe5", "mse", "rank_ic"):
        assert s["perf"][key] == s["summary"]["test"][key], key
    # "~1e-6: float32 rounding" (predictions near 1; tests/check_cli.py's bound for float is 1e-5 relative)
    x = s["window"](s["market"], 200)[0]
    assert np.abs(s["net"](torch.from_numpy(x)).detach().numpy() - s["best"].predict(x)).max() < 1e-5
    # The model took PyTorch's changed bias back; the checkpoint reads back in float64.
    assert np.array_equal(s["best"].state_dict()["time_fc.bias"], s["net"].time_fc.bias.detach().numpy())
    assert s["again"].dtype == np.float64 and os.path.isfile(os.path.join(s["work"], "best.safetensors"))
