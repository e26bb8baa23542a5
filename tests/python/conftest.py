"""Shared fixtures of the Python module's tests (pytest; ctest entry python_module, label python).

ctest sets PYTHONPATH to the folder holding the built module and STOCKMIXER_CLI to the `stockmixer`
tool of the same build, so every comparison is between the module and the tool compiled together.
By hand, from the repository root:

    PYTHONPATH=BUILD/python STOCKMIXER_CLI=BUILD/examples/stockmixer /usr/bin/python3 -m pytest tests/python
"""
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent
ROOT = TESTS.parent
sys.path.insert(0, str(TESTS))  # make_model_fixtures (the original PyTorch model), make_io_fixtures, check_cli


@pytest.fixture(scope="session")
def cli():
    """The `stockmixer` tool built with the module; the tests that compare with it skip without it."""
    path = os.environ.get("STOCKMIXER_CLI", "")
    if not path or not Path(path).is_file():
        pytest.skip("STOCKMIXER_CLI does not name the stockmixer tool (configure with the examples on)")
    return path


def run_cli(cli, *args, expect=0):
    p = subprocess.run([str(cli)] + [str(a) for a in args], capture_output=True, text=True)
    assert p.returncode == expect, f"stockmixer {' '.join(map(str, args))} exited {p.returncode}:\n{p.stderr}"
    return p


def batch(n, t=16, c=5, seed=0, dtype=np.float32):
    """A normalised-price-like batch: features near 1, the last close as base, returns of sd 0.02, ~10% masked."""
    rng = np.random.default_rng(seed)
    x = (1.0 + 0.05 * rng.standard_normal((n, t, c))).astype(dtype)
    base = x[:, -1, -1:].copy()
    gt = (0.02 * rng.standard_normal((n, 1))).astype(dtype)
    mask = (rng.random((n, 1)) >= 0.1).astype(dtype)
    return x, gt, base, mask


DTYPES = [(np.float32, "f32"), (np.float64, "f64")]


def python_during(call):
    """Runs call() in another thread while this one counts how it gets to run Python: returns the call's
    wall time and the times this thread ran during it (an engine call holding the GIL leaves almost none)."""
    window, ticks = {}, []

    def engine():
        window["start"] = time.perf_counter()
        call()
        window["end"] = time.perf_counter()

    worker = threading.Thread(target=engine)
    worker.start()
    while worker.is_alive():
        ticks.append(time.perf_counter())
    worker.join()
    return window["end"] - window["start"], [t for t in ticks if window["start"] < t < window["end"]]
