#!/usr/bin/python3
"""A training run survives faults: killed with SIGKILL at random moments and resumed (--resume, as
often as it takes), or stopped with SIGINT and resumed, it ends with the same metrics.jsonl and
summary.json (but for their wall-clock "seconds") and the same best.safetensors, predictions.csv and
report.md, byte for byte, as the run that was never stopped, and no half-written temporary file is left
in its folder (--resume removes a killed writer's). Also: the run's provenance, one writer per folder, --overwrite keeps nothing of the last run,
a plain run refuses a folder holding any run file, and --resume refuses another configuration (an
empty folder it starts).

    /usr/bin/python3 tests/check_resume.py build/examples/stockmixer [--kills 8]
"""
import argparse
import json
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FAILURES = []
ARGS = ["--stocks", "120", "--days", "400", "--epochs", "5", "--threads", "1"]


def check(ok, what):
    print(("ok    " if ok else "FAIL  ") + what)
    if not ok:
        FAILURES.append(what)


def train(cli, out, *extra):
    return subprocess.run([cli, "train", *ARGS, "--out", str(out), *extra], capture_output=True, text=True)


def start(cli, out, *extra):
    return subprocess.Popen([cli, "train", *ARGS, "--out", str(out), *extra], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def without_seconds(text):
    return re.sub(r'"seconds":[^,}]*', '"seconds":_', text)


def same_run(a, b, what):
    m = without_seconds((a / "metrics.jsonl").read_text()) == without_seconds((b / "metrics.jsonl").read_text())
    s = without_seconds((a / "summary.json").read_text()) == without_seconds((b / "summary.json").read_text())
    w = (a / "best.safetensors").read_bytes() == (b / "best.safetensors").read_bytes()
    # The best epoch's predictions and the report (which holds no wall-clock time) are the same bytes too.
    r = all((a / f).read_bytes() == (b / f).read_bytes() for f in ("predictions.csv", "report.md"))
    check(m and s and w and r, f"{what}: metrics.jsonl {'same' if m else 'DIFFERS'}, summary.json "
                               f"{'same' if s else 'DIFFERS'}, best.safetensors {'same' if w else 'DIFFERS'}, "
                               f"predictions.csv and report.md {'same' if r else 'DIFFER'}")


def safetensors_metadata(path):
    raw = Path(path).read_bytes()
    n = int.from_bytes(raw[:8], "little")
    return json.loads(raw[8:8 + n]).get("__metadata__", {})


def rewrite_metadata(path, metadata):
    """The same tensors (offsets unchanged: the data section follows the header) with other metadata."""
    raw = Path(path).read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    header["__metadata__"] = metadata
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    Path(path).write_bytes(len(text).to_bytes(8, "little") + text + raw[8 + n:])


def check_provenance(cli, tmp):
    """Every run records what produced it: the build, this machine's choices, the data, the split."""
    summary = json.loads((tmp / "ref" / "summary.json").read_text())
    prov = summary.get("provenance", {})
    build, data, split = prov.get("build", {}), prov.get("data", {}), prov.get("split", {})
    check(re.fullmatch(r"[0-9a-f]{40}(-dirty)?|unknown", build.get("commit", "")) is not None
          and re.fullmatch(r"\d+\.\d+\.\d+", build.get("version", "")) is not None
          and re.match(r"(GCC|Clang) \d", build.get("compiler", "")) is not None
          and build.get("isa") in ("baseline", "avx2", "avx512") and build.get("threads") == 1,
          f"provenance: version, commit, compiler, instruction set, threads ({build})")
    check(re.fullmatch(r"[0-9a-f]{16}", data.get("data_fnv1a64", "")) is not None
          and re.fullmatch(r"[0-9a-f]{16}", data.get("tickers_fnv1a64", "")) is not None
          and data.get("stocks") == 120 and data.get("days") == 400,
          f"provenance: the data's shape and hashes ({data})")
    check(split.get("valid_index") == summary["config"]["valid_index"]
          and split.get("test_index") == summary["config"]["test_index"] and split.get("lookback") == 16,
          f"provenance: the split days ({split})")
    meta = safetensors_metadata(tmp / "ref" / "best.safetensors")
    check(json.loads(meta.get("stockmixer.provenance", "null")) == prov,
          "provenance: best.safetensors carries the summary's")
    other = tmp / "other-data"
    p = subprocess.run([cli, "train", *ARGS, "--epochs", "1", "--data-seed", "7", "--out", str(other)],
                       capture_output=True, text=True)
    theirs = json.loads((other / "summary.json").read_text())["provenance"]["data"] if p.returncode == 0 else {}
    check(theirs.get("data_fnv1a64") not in (None, data.get("data_fnv1a64"))
          and theirs.get("tickers_fnv1a64") == data.get("tickers_fnv1a64"),
          "provenance: other data (another --data-seed) hashes differently, the same tickers alike")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cli")
    ap.add_argument("--kills", type=int, default=8)
    args = ap.parse_args()
    cli = args.cli
    rng = random.Random(2026)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.monotonic()
        p = train(cli, tmp / "ref")
        whole = time.monotonic() - t0
        check(p.returncode == 0, f"the uninterrupted run ({whole:.2f} s)")
        check_provenance(cli, tmp)

        # SIGKILL at random moments, then --resume until the run completes (each resume may be killed too).
        for k in range(args.kills):
            out = tmp / f"kill{k}"
            proc = start(cli, out)
            time.sleep(rng.uniform(0.02, whole))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills, tries = 1, 0
            while True:
                tries += 1
                proc = start(cli, out, "--resume")
                if kills < 3 and rng.random() < 0.5:
                    time.sleep(rng.uniform(0.02, whole))
                    if proc.poll() is None:
                        proc.send_signal(signal.SIGKILL)
                        kills += 1
                _, err = proc.communicate()
                if proc.returncode == 0 or tries > 6:
                    break
            check(proc.returncode == 0, f"kill {k}: resumed to the end after {kills} SIGKILL(s) ({err.strip()[-200:]})")
            if proc.returncode == 0:
                same_run(tmp / "ref", out, f"kill {k}")
                hidden = [f.name for f in out.iterdir() if f.name.startswith(".") and f.name != ".lock"]
                check(not hidden, f"kill {k}: no half-written temporary left in the folder ({hidden})")

        # SIGINT: the current step finishes, the summary of the completed epochs is written, exit 130.
        # The signal must arrive while the run is still going: on a loaded machine a run can finish in less
        # than 0.6 of the reference's time, so a run that ended first is redone (with --overwrite) earlier.
        out = tmp / "sigint"
        delay = whole * 0.6
        for attempt in range(4):
            proc = start(cli, out, *(["--overwrite"] if attempt else []))
            time.sleep(delay)
            if proc.poll() is None:
                break
            proc.communicate()
            delay /= 2
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate()
        check(proc.returncode == 130 and "--resume" in err,
              f"SIGINT: exit {proc.returncode} with how to resume ({err.strip()[-160:]})")
        if proc.returncode == 130:
            summary = json.loads((out / "summary.json").read_text())
            check(summary.get("interrupted") is True, "SIGINT: summary.json of the completed epochs, marked interrupted")
        # What a writer killed between creating its temporary and renaming it leaves; --resume removes it
        # (and only it: a file of the user's with a similar name stays).
        (out / ".best.safetensors.Q7xY2k").write_bytes(b"half")
        (out / ".best.safetensors.mine").write_bytes(b"the user's")
        p = train(cli, out, "--resume")
        check(p.returncode == 0, "SIGINT: --resume completes the run")
        check(not (out / ".best.safetensors.Q7xY2k").exists() and (out / ".best.safetensors.mine").exists(),
              "--resume removes a killed writer's temporary file, and nothing else")
        (out / ".best.safetensors.mine").unlink()
        if p.returncode == 0:
            same_run(tmp / "ref", out, "SIGINT then --resume")

        # One writer per folder.
        out = tmp / "locked"
        first = start(cli, out, "--epochs", "30")
        time.sleep(0.3)
        second = train(cli, out, "--overwrite")
        first.send_signal(signal.SIGKILL)
        first.wait()
        check(second.returncode == 1 and "another run is writing into this folder" in second.stderr,
              "a second run into a folder in use is refused")

        # A folder holding any run file is refused without --overwrite; --overwrite keeps nothing of it.
        out = tmp / "old"
        out.mkdir()
        (out / "summary.json").write_text("{\"an\": \"old run\"}\n")
        (out / "best.safetensors").write_bytes(b"old")
        p = train(cli, out)
        check(p.returncode == 1 and "already holds a run" in p.stderr and (out / "best.safetensors").read_bytes() == b"old",
              "a folder with an old run's best.safetensors and summary.json is refused, untouched")
        p = train(cli, out, "--overwrite")
        check(p.returncode == 0, "--overwrite replaces it")
        same_run(tmp / "ref", out, "--overwrite over an old run")

        # --resume refuses a run of another configuration, naming the difference.
        p = train(cli, tmp / "ref", "--resume", "--lr", "0.002")
        check(p.returncode == 1 and "another configuration" in p.stderr, "--resume with another --lr is refused")
        p = train(cli, tmp / "nothing", "--resume")
        check(p.returncode == 0 and "nothing to resume" in p.stderr, "--resume of an empty folder starts the run")
        p = train(cli, tmp / "old", "--resume")
        (tmp / "old" / "state.safetensors").unlink()
        p = train(cli, tmp / "old", "--resume")
        check(p.returncode == 1 and "no resumable run" in p.stderr,
              "--resume of run files without a state is refused")
        # A state file is input like any other: tampered metadata is refused by name, nothing written.
        for what, change in [("epoch 1e300", lambda m: m.update(epoch=1e300)),
                             ("epoch -1", lambda m: m.update(epoch=-1)),
                             ("epoch as text", lambda m: m.update(epoch="3")),
                             ("no rng", lambda m: m.pop("rng")),
                             ("seconds not a number", lambda m: m.update(seconds="0x1p+0junk"))]:
            out = tmp / ("tampered-" + what.replace(" ", "-"))
            p = train(cli, out, "--epochs", "2")
            state = out / "state.safetensors"
            meta = safetensors_metadata(state)
            inner = json.loads(meta["stockmixer.state"])
            change(inner)
            meta["stockmixer.state"] = json.dumps(inner)
            rewrite_metadata(state, meta)
            before = {f: (out / f).read_bytes() for f in ("metrics.jsonl", "best.safetensors", "summary.json")}
            p = train(cli, out, "--resume")
            after = {f: (out / f).read_bytes() for f in before}
            check(p.returncode == 1 and "not a stockmixer run state" in p.stderr and str(state) in p.stderr
                  and before == after, f"--resume of a state with {what} is refused, nothing written "
                                       f"({p.stderr.strip()[-140:]})")
    if FAILURES:
        print(f"{len(FAILURES)} check(s) failed")
        return 1
    print("all resume checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
