#!/usr/bin/python3
"""The Python call's overhead on predict at NASDAQ's shape (N = 1026, T = 16, C = 5, M = 20, float32):
the median wall time of `model.predict(x)` timed from Python, against the median of the engine's own
`StockMixer::predict` timed in C++ (`model.time_predict`), on the same model, input and threads.

    PYTHONPATH=BUILD/python OMP_NUM_THREADS=1 /usr/bin/python3 tests/python/measure_overhead.py [--repeats 3000]

The overhead is the difference of the medians (argument checks, the result's array and its copy, the
GIL's release and retake, pybind11's dispatch), stated as a share of the engine's median. Rounds of
the two alternate, so that a change of the machine's load falls on both.
"""
import argparse
import statistics
import time

import numpy as np

import stockmixer


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3000, help="calls of each kind, in rounds of 100")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    stockmixer.set_num_threads(args.threads)
    model = stockmixer.StockMixer(1026, 16, 5, 20, seed=0)
    rng = np.random.default_rng(0)
    x = (1.0 + 0.05 * rng.standard_normal((1026, 16, 5))).astype(np.float32)
    for _ in range(50):  # warm up: the model sizes its buffers on the first call
        model.predict(x)
    python_s, engine_s = [], []
    clock = time.perf_counter
    for _ in range(max(1, args.repeats // 100)):
        for _ in range(100):
            start = clock()
            model.predict(x)
            python_s.append(clock() - start)
        engine_s += model.time_predict(x, 100)
    py, cpp = statistics.median(python_s), statistics.median(engine_s)
    print(f"N = 1026, T = 16, C = 5, float32, threads {stockmixer.num_threads()}, {len(python_s)} calls each")
    print(f"  model.predict from Python (median): {py * 1e6:8.1f} us")
    print(f"  StockMixer::predict in C++ (median): {cpp * 1e6:8.1f} us")
    print(f"  overhead: {(py - cpp) * 1e6:.1f} us = {100 * (py - cpp) / cpp:.2f} % of predict's time")


if __name__ == "__main__":
    main()
