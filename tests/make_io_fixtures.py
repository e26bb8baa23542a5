#!/usr/bin/python3
"""safetensors both ways with PyTorch, for tests/test_io.cpp (stockmixer/io/safetensors.hpp).

Run with Debian's python3-torch (installed by cmake/install-deps.sh). The `safetensors` Python
package is not needed: the format is written and read here by hand (struct + json), laid out as the
safetensors library lays it out (header JSON with sorted keys and no spaces, padded with spaces to a
multiple of 8 bytes; data ordered by dtype size, largest first, then by name).

    /usr/bin/python3 tests/make_io_fixtures.py               # rewrite tests/fixtures/io/
    /usr/bin/python3 tests/make_io_fixtures.py --check       # regenerate in a temp dir, compare bytes
    /usr/bin/python3 tests/make_io_fixtures.py --read PATH   # names, dtypes, shapes, sums as JSON
    /usr/bin/python3 tests/make_io_fixtures.py --check-cpp build/tests/test_io

tests/fixtures/io/ holds
    torch_written.safetensors   tensors from a seeded torch.randn, float32 and float64, rank 0..4,
                                one empty, plus __metadata__
    torch_written.json          each tensor's name, dtype, shape and flat values, and the metadata:
                                the C++ test reads the .safetensors and compares to these exactly

--check-cpp runs the test_io binary's "[interop]" case with STOCKMIXER_IO_EXPORT_DIR set to a temp
dir; that case writes cpp_written_f32.safetensors and cpp_written_f64.safetensors with values from
cpp_expected() below (the same formula is in tests/test_io.cpp). PyTorch then loads both files and
they must hold exactly those names, shapes, dtypes, values and metadata (a ctest, io_torch_reads_ours).
By hand, the same check is:

    mkdir -p /tmp/io && STOCKMIXER_IO_EXPORT_DIR=/tmp/io build/tests/test_io "[interop]"
    /usr/bin/python3 tests/make_io_fixtures.py --read /tmp/io/cpp_written_f32.safetensors
"""
import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "fixtures" / "io"

# dtype name -> (torch dtype, bytes per element)
DTYPES = {
    "F64": (torch.float64, 8), "F32": (torch.float32, 4), "F16": (torch.float16, 2),
    "BF16": (torch.bfloat16, 2), "I64": (torch.int64, 8), "I32": (torch.int32, 4),
    "I16": (torch.int16, 2), "I8": (torch.int8, 1), "U8": (torch.uint8, 1), "BOOL": (torch.bool, 1),
}
NAME_OF = {tdtype: name for name, (tdtype, _) in DTYPES.items()}


# ---- the format by hand ----------------------------------------------------------------------------

def write_safetensors(path, tensors, metadata=None):
    """tensors: dict name -> torch.Tensor. Layout as the safetensors library writes it."""
    assert sys.byteorder == "little"
    order = sorted(tensors, key=lambda n: (-tensors[n].element_size(), n))
    header, chunks, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = dict(metadata)
    for name in order:
        t = tensors[name].detach().contiguous()
        data = t.numpy().tobytes()
        header[name] = {"dtype": NAME_OF[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for c in chunks:
            f.write(c)


def read_safetensors(path):
    """Returns (header_len, header as an ordered dict, metadata, dict name -> torch.Tensor)."""
    assert sys.byteorder == "little"
    raw = Path(path).read_bytes()
    if len(raw) < 8:
        raise ValueError(f"{path}: shorter than 8 bytes")
    (n,) = struct.unpack("<Q", raw[:8])
    if n > len(raw) - 8:
        raise ValueError(f"{path}: header length {n} exceeds the file")
    header = json.loads(raw[8:8 + n].decode("utf-8"), object_pairs_hook=dict)
    data = raw[8 + n:]
    metadata = header.get("__metadata__") or {}
    tensors = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        tdtype, size = DTYPES[e["dtype"]]
        b, end = e["data_offsets"]
        shape = e["shape"]
        if not (0 <= b <= end <= len(data)) or end - b != size * int(np.prod(shape, dtype=np.int64)):
            raise ValueError(f"{path}: tensor {name!r} has bad data_offsets {[b, end]}")
        if end == b:
            tensors[name] = torch.empty(shape, dtype=tdtype)
        else:
            tensors[name] = torch.frombuffer(bytearray(data[b:end]), dtype=tdtype).reshape(shape)
    return n, header, metadata, tensors


# ---- fixtures PyTorch writes and C++ reads ---------------------------------------------------------

def torch_tensors():
    g = torch.Generator().manual_seed(20240117)
    return {
        "encoder.weight": torch.randn(4, 3, generator=g, dtype=torch.float32),        # rank 2, F32
        "encoder.bias": torch.randn(4, generator=g, dtype=torch.float32),             # rank 1, F32
        "mixer.scale": torch.randn((), generator=g, dtype=torch.float64),             # rank 0, F64
        "mixer.kernel": torch.randn(2, 3, 2, 2, generator=g, dtype=torch.float64),    # rank 4, F64
        "mixer.time": torch.randn(3, 1, 5, generator=g, dtype=torch.float32),         # rank 3, F32
        "head.empty": torch.zeros(0, 3, dtype=torch.float32),                         # empty
        "Head.weight": torch.randn(5, generator=g, dtype=torch.float64),              # sorts before __metadata__
    }


TORCH_METADATA = {"format": "pt", "producer": "tests/make_io_fixtures.py"}


def write_all(out):
    out.mkdir(parents=True, exist_ok=True)
    tensors = torch_tensors()
    write_safetensors(out / "torch_written.safetensors", tensors, TORCH_METADATA)
    listing = {
        "metadata": TORCH_METADATA,
        "tensors": [{"name": name, "dtype": NAME_OF[t.dtype], "shape": list(t.shape),
                     "values": [float(v) for v in t.reshape(-1).tolist()]}
                    for name, t in tensors.items()],
    }
    (out / "torch_written.json").write_text(json.dumps(listing, indent=1) + "\n")


def check(committed):
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp)
        write_all(fresh)
        for name in ("torch_written.safetensors", "torch_written.json"):
            if not (committed / name).exists():
                print(f"{committed / name}: missing (run tests/make_io_fixtures.py)")
                return 1
            if (fresh / name).read_bytes() != (committed / name).read_bytes():
                print(f"{committed / name}: differs from a fresh run")
                return 1
    print(f"the io fixtures in {committed} reproduce byte for byte")
    return 0


# ---- files C++ writes and PyTorch reads ------------------------------------------------------------

# The same list and formula as cpp_tensor_specs() / cpp_value() in tests/test_io.cpp, in this order.
CPP_SPECS = [("z.written_first", [2, 3]), ("a.vector", [5]), ("scalar", []), ("rank4", [2, 1, 3, 2]),
             ("empty", [0, 4]), ("rank3", [3, 2, 2])]
CPP_METADATA = {"producer": "stockmixer test_io", "note": "ünïcode ✓", "empty": ""}


def cpp_value(k, i):
    return ((i * 7 + k * 5) % 23 - 11) / 7.0 + 0.5 * k


def cpp_expected(dtype):
    out = {}
    for k, (name, shape) in enumerate(CPP_SPECS):
        n = int(np.prod(shape, dtype=np.int64))
        out[name] = torch.tensor(np.array([cpp_value(k, i) for i in range(n)], dtype=np.float64),
                                 dtype=dtype).reshape(shape)
    return out


def check_cpp(binary):
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, STOCKMIXER_IO_EXPORT_DIR=tmp)
        run = subprocess.run([str(binary), "[interop]"], env=env, capture_output=True, text=True)
        if run.returncode != 0:
            print(run.stdout, run.stderr)
            print(f"{binary} [interop] failed with exit code {run.returncode}")
            return 1
        for suffix, dtype in (("f32", torch.float32), ("f64", torch.float64)):
            path = Path(tmp) / f"cpp_written_{suffix}.safetensors"
            if not path.exists():
                print(f"{path}: not written by {binary}")
                return 1
            n, header, metadata, tensors = read_safetensors(path)
            problems = []
            if (8 + n) % 8:
                problems.append(f"header length {n}: 8 + H is not a multiple of 8")
            if metadata != CPP_METADATA:
                problems.append(f"metadata {metadata} != {CPP_METADATA}")
            order = [k for k in header if k != "__metadata__"]
            if order != [name for name, _ in CPP_SPECS]:
                problems.append(f"header order {order}, expected the order given")
            offsets = [header[k]["data_offsets"] for k in order]
            if any(a[1] != b[0] for a, b in zip(offsets, offsets[1:])) or (offsets and offsets[0][0] != 0):
                problems.append(f"data not packed in the given order: {offsets}")
            expected = cpp_expected(dtype)
            for name, want in expected.items():
                got = tensors.get(name)
                if got is None:
                    problems.append(f"{name}: missing")
                elif got.dtype != dtype or list(got.shape) != list(want.shape):
                    problems.append(f"{name}: {got.dtype} {list(got.shape)}, expected {dtype} {list(want.shape)}")
                elif not torch.equal(got, want):
                    problems.append(f"{name}: values differ (max |diff| {float((got - want).abs().max())})")
            if set(tensors) != set(expected):
                problems.append(f"names {sorted(tensors)}, expected {sorted(expected)}")
            if problems:
                print(f"{path}:\n  " + "\n  ".join(problems))
                return 1
            print(f"PyTorch reads {path.name}: {len(tensors)} tensors, exact")
    return 0


def describe(path):
    n, _, metadata, tensors = read_safetensors(path)
    print(json.dumps({
        "header_bytes": n,
        "metadata": metadata,
        "tensors": {name: {"dtype": NAME_OF[t.dtype], "shape": list(t.shape),
                           "sum": float(t.double().sum()) if t.is_floating_point() else int(t.sum())}
                    for name, t in sorted(tensors.items())},
    }, indent=1, ensure_ascii=False))
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="fixture folder (default: %(default)s)")
    ap.add_argument("--check", action="store_true", help="compare a fresh run to the fixtures in --out")
    ap.add_argument("--read", type=Path, metavar="PATH", help="print a safetensors file's contents as JSON")
    ap.add_argument("--check-cpp", type=Path, metavar="TEST_IO", help="check that PyTorch reads what test_io writes")
    args = ap.parse_args()
    if args.read:
        return describe(args.read)
    if args.check_cpp:
        return check_cpp(args.check_cpp)
    if args.check:
        return check(args.out)
    write_all(args.out)
    print(f"wrote torch_written.safetensors and torch_written.json under {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
