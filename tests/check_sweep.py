#!/usr/bin/python3
"""Sweeps and walk-forward retraining (stockmixer sweep, stockmixer walk; include/stockmixer/train/sweep.hpp):

- every job's folder holds what `stockmixer train` with the job's options writes: the same files, the
  same metrics.jsonl and summary.json but for their wall-clock "seconds", the same best.safetensors bytes;
- sweep.json's configuration means are the means of the jobs' own summaries; a re-run trains nothing;
- a sweep killed with SIGKILL at random moments and run again until it completes ends with the bytes of
  the sweep never stopped (job folders but for "seconds"; plan.json, sweep.json and report.md whole);
- walk-forward windows never train on a day they test (read from each window's own summary), their test
  periods follow each other, the stitched predictions.csv scores as sweep.json says, and the ensemble's
  scores are the members' mean;
- with an MPI launcher given (a build with -DSTOCKMIXER_MPI=ON), `mpiexec --oversubscribe -np 3` writes
  the one-process sweep's bytes and its jobs ran on more than one rank.

    /usr/bin/python3 tests/check_sweep.py build/examples/stockmixer [mpiexec | none]
"""
import json
import math
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FAILURES = []
MARKET = {"stocks": 40, "days": 160}


def check(ok, what):
    print(("ok    " if ok else "FAIL  ") + what)
    if not ok:
        FAILURES.append(what)


def without_seconds(text):
    return re.sub(r'"seconds":[^,}\n]*', '"seconds":_', text)


def same_job(a, b):
    """What differs between two run folders (but for "seconds"), as a list of file names."""
    # Hidden names are the lock and the temporaries io::write_file leaves when a kill lands mid-write
    # (train leaves them too: tests/check_resume.py compares the run files by name as well).
    names_a = sorted(p.name for p in a.iterdir() if not p.name.startswith("."))
    names_b = sorted(p.name for p in b.iterdir() if not p.name.startswith("."))
    if names_a != names_b:
        return [f"files {names_a} vs {names_b}"]
    differ = []
    for name in names_a:
        x, y = (a / name).read_bytes(), (b / name).read_bytes()
        if name.endswith(".json") or name.endswith(".jsonl"):
            x, y = without_seconds(x.decode()), without_seconds(y.decode())
        elif name == "state.safetensors":
            continue  # holds the accumulated seconds in its metadata (train's own resume test covers it)
        if x != y:
            differ.append(name)
    return differ


def same_sweep(a, b, what):
    jobs = json.loads((a / "plan.json").read_text())["jobs"]
    bad = []
    for job in jobs:
        d = same_job(a / job["name"], b / job["name"]) if (b / job["name"]).is_dir() else ["no folder"]
        if d:
            bad.append(f"{job['name']}: {d}")
    for name in ("plan.json", "sweep.json", "report.md"):
        if not (b / name).exists() or (a / name).read_bytes() != (b / name).read_bytes():
            bad.append(name)
    check(not bad, f"{what}: {len(jobs)} job folders (but for seconds), plan.json, sweep.json, report.md "
                   f"{'identical' if not bad else 'DIFFER: ' + '; '.join(bad)}")


def sweep(cli, *args, launcher=None, check_rc=True):
    cmd = ([*launcher] if launcher else []) + [cli, *args]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if check_rc and r.returncode != 0:
        print(r.stdout[-3000:], r.stderr[-3000:])
    return r


def check_grid(cli, tmp):
    grid = {"base": {**MARKET, "epochs": 3}, "grid": {"lr": [0.001, 0.003], "seed": [0, 1]}}
    (tmp / "grid.json").write_text(json.dumps(grid))
    out = tmp / "A"
    r = sweep(cli, "sweep", "--grid", str(tmp / "grid.json"), "--out", str(out), "--threads", "1", "--ensemble")
    check(r.returncode == 0, f"sweep of 2 learning rates x 2 seeds runs (exit {r.returncode})")
    names = sorted(p.name for p in out.iterdir() if p.is_dir())
    check(names == ["lr=0.001,seed=0", "lr=0.001,seed=1", "lr=0.003,seed=0", "lr=0.003,seed=1"],
          f"one folder per job, named by its grid values: {names}")
    # The job is `stockmixer train` with its options.
    ref = tmp / "ref"
    t = subprocess.run([cli, "train", "--stocks", "40", "--days", "160", "--epochs", "3", "--lr", "0.003",
                        "--seed", "1", "--threads", "1", "--out", str(ref)], capture_output=True, text=True)
    d = same_job(out / "lr=0.003,seed=1", ref)
    check(t.returncode == 0 and not d, f"job lr=0.003,seed=1 holds what stockmixer train writes (differs: {d})")
    s = json.loads((out / "sweep.json").read_text())
    confs = {c["name"]: c for c in s["configurations"]}
    check(sorted(confs) == ["lr=0.001", "lr=0.003"] and all(len(c["members"]) == 2 for c in confs.values()),
          f"two configurations of two seeds each: {sorted(confs)}")
    worst = 0.0
    for name, c in confs.items():
        for period in ("valid", "test"):
            values = [json.loads((out / m / "summary.json").read_text())[period]["IC"] for m in c["members"]]
            mean = sum(values) / len(values)
            std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
            worst = max(worst, abs(c[period]["IC"]["mean"] - mean), abs(c[period]["IC"]["std"] - std))
    # Two doubles summed and halved in a different order: within a few ulps of values below 1.
    check(worst < 1e-15, f"configuration IC mean and std are the jobs' own (largest difference {worst:.1e})")
    check(all(m["scores_match_summaries"] for m in s["members"]),
          "each job's valid and test scores recomputed from best.safetensors give its summary's metrics")
    check(all(c["ensemble"]["test"]["IC"] is not None for c in s["configurations"]),
          "each configuration reports its seed ensemble's test metrics")
    ranked = [c["valid"]["IC"]["mean"] for c in s["configurations"]]
    check(ranked == sorted(ranked, reverse=True), f"configurations ranked by validation IC: {ranked}")
    rows = [line for line in (out / "report.md").read_text().splitlines() if line.startswith("| 1 ") or line.startswith("| 2 ")]
    check(len(rows) == 2, "report.md holds a table row per configuration")
    # A second run finds every job finished and trains nothing.
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.safetensors")}
    r2 = sweep(cli, "sweep", "--grid", str(tmp / "grid.json"), "--out", str(out), "--threads", "1", "--ensemble")
    after = {p: p.stat().st_mtime_ns for p in out.rglob("*.safetensors")}
    check(r2.returncode == 0 and before == after and "4 already finished" in r2.stderr,
          "a re-run skips the finished jobs (no weights rewritten)")
    # Another base under the same folder is refused before anything runs.
    grid2 = {"base": {**MARKET, "epochs": 3, "alpha": 0.2}, "grid": grid["grid"]}
    (tmp / "grid2.json").write_text(json.dumps(grid2))
    r3 = sweep(cli, "sweep", "--grid", str(tmp / "grid2.json"), "--out", str(out), check_rc=False)
    check(r3.returncode == 1 and "ran with other options" in r3.stderr and "lr=0.001,seed=0" in r3.stderr,
          f"a job of the same name with other options is refused: {r3.stderr.strip()[:160]}")
    return out


def check_refusals(cli, tmp):
    cases = [({"base": {"out": "x"}}, "'base' sets 'out'"),
             ({"grid": {"lr": 0.1}}, "grid 'lr' must be a non-empty list"),
             ({"grid": {"seeds": [1, 2]}}, "'grid' sets 'seeds'"),
             ({"base": {"epochz": 3}}, "unknown option 'epochz'"),
             ({"grid": {"lr": [-1]}}, "job lr=-1) expects a number in (0"),
             ({"walk": {"train-days": 10}}, "the walk needs 'valid-days'")]
    for k, (grid, expect) in enumerate(cases):
        path = tmp / f"bad{k}.json"
        path.write_text(json.dumps(grid))
        r = sweep(cli, "sweep", "--grid", str(path), "--out", str(tmp / f"bad{k}"), check_rc=False)
        check(r.returncode == 1 and expect in r.stderr and not (tmp / f"bad{k}").exists(),
              f"refused before any job: {json.dumps(grid)} -> {r.stderr.strip()[:120]}")


def half_trained(out):
    """Job folders holding a state but no summary: a job stopped mid-training."""
    if not out.exists():
        return 0
    return sum(1 for j in out.iterdir() if j.is_dir() and (j / "state.safetensors").exists()
               and not (j / "summary.json").exists())


def check_kills(cli, tmp, reference):
    """SIGKILL three times as soon as a job is training (watched every 2 ms), then at random moments,
    then a run to the end."""
    out = tmp / "K"
    rng = random.Random(18)
    cmd = [cli, "sweep", "--grid", str(tmp / "grid.json"), "--out", str(out), "--threads", "1", "--ensemble"]
    kills, unfinished_seen = 0, 0
    for attempt in range(6):
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if attempt < 3:
            deadline = time.time() + 30
            while p.poll() is None and half_trained(out) == 0 and time.time() < deadline:
                time.sleep(0.002)
        else:
            time.sleep(rng.uniform(0.0, 0.3))
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            p.wait()
            kills += 1
            unfinished_seen += 1 if half_trained(out) > 0 else 0
    r = subprocess.run(cmd, capture_output=True, text=True)
    check(r.returncode == 0, f"the sweep completes after {kills} kills (exit {r.returncode})")
    check(kills >= 3 and unfinished_seen >= 1, f"killed {kills} times, {unfinished_seen} times with a job half-trained")
    same_sweep(reference, out, "killed and re-run against never stopped")


def check_walk(cli, tmp):
    out = tmp / "W"
    args = ["walk", "--stocks", "40", "--days", "200", "--epochs", "2", "--train-days", "60", "--valid-days", "10",
            "--test-days", "15", "--seeds", "2", "--ensemble", "--out", str(out), "--threads", "1"]
    r = sweep(cli, *args)
    check(r.returncode == 0, f"walk of 3 windows x 2 seeds runs (exit {r.returncode})")
    s = json.loads((out / "sweep.json").read_text())
    leaks, previous_end = [], {}
    for job in s["jobs"]:
        summary = json.loads((out / job["name"] / "summary.json").read_text())
        c = summary["config"]
        steps = summary["data"]["steps"]
        # The last training target: strict split keeps targets before valid_index; the quirk reaches
        # valid_index + T + steps - 2. Training features start at train_start.
        last_target = c["valid_index"] - 1 if c["strict_split"] else c["valid_index"] + c["lookback"] + steps - 2
        if not (last_target < c["valid_index"] < c["test_index"] < c.get("test_end", 200)) or c.get("train_start", 0) < 0:
            leaks.append(job["name"])
        member = job["name"].rsplit(",", 1)[0]
        if member in previous_end and previous_end[member] != c["test_index"]:
            leaks.append(job["name"] + " (gap)")
        previous_end[member] = c.get("test_end", 200)
    check(len(s["jobs"]) == 6 and not leaks,
          f"{len(s['jobs'])} windows: no training target on or after its window's first validation day, test "
          f"periods back to back ({leaks or 'none wrong'})")
    check(all(m["scores_match_summaries"] for m in s["members"]),
          "each window's scores recomputed from best.safetensors give its summary's test metrics")
    # The stitched series, scored again here from predictions.csv: the original's daily IC (Pearson over all
    # N stocks, a masked stock entering as 0).
    member = s["members"][0]
    rows = [line.split(",") for line in (out / "stitched" / member["name"] / "predictions.csv").read_text().splitlines()[1:]]
    days = sorted({int(r[0]) for r in rows})
    tickers = sorted({r[1] for r in rows})
    check(days == list(range(162, 200)), f"stitched predictions cover test days 162..199 once each ({days[0]}..{days[-1]}, {len(days)})")
    daily = []
    for d in days:
        pred = {t: 0.0 for t in tickers}
        gt = dict(pred)
        for r in rows:
            if int(r[0]) == d:
                pred[r[1]], gt[r[1]] = float(r[2]), float(r[3])
        n = 40  # stocks never valid on a day are zeros too
        p = list(pred.values()) + [0.0] * (n - len(tickers))
        g = list(gt.values()) + [0.0] * (n - len(tickers))
        mp, mg = sum(p) / n, sum(g) / n
        cov = sum((a - mp) * (b - mg) for a, b in zip(p, g))
        daily.append(cov / math.sqrt(sum((a - mp) ** 2 for a in p) * sum((b - mg) ** 2 for b in g)))
    ic = sum(daily) / len(daily)
    # predictions.csv holds 9 significant digits: the IC agrees to about 1e-8.
    check(abs(ic - member["test"]["IC"]) < 1e-6,
          f"the stitched series' IC from predictions.csv {ic:.8f} = sweep.json's {member['test']['IC']:.8f}")
    # The ensemble's scores are the members' mean.
    def scores(folder):
        return {(r[0], r[1]): float(r[2]) for r in
                (line.split(",") for line in (out / "stitched" / folder / "predictions.csv").read_text().splitlines()[1:])}
    a, b, e = scores("seed=0"), scores("seed=1"), scores("seed=ensemble")
    # Each score is written with 9 significant digits (a relative error up to 5e-9 each): the mean agrees within
    # 1e-8 of the members' larger magnitude.
    worst = max(abs(e[k] - (a[k] + b[k]) / 2) / max(1e-300, abs(a[k]), abs(b[k])) for k in e)
    check(set(a) == set(e) and worst < 1e-8, f"ensemble scores = the seeds' mean (largest difference {worst:.1e} of the larger score)")
    bt = member.get("backtest", {})
    check(bt.get("topk") == 5 and bt.get("days") == len(days) and "net" in bt,
          f"the stitched series is backtested (top 5, 10 bps): {json.dumps(bt)[:100]}")
    conf = s["configurations"][0]
    check("ensemble" in conf and conf["ensemble"]["test"]["IC"] is not None,
          f"ensemble test IC {conf['ensemble']['test']['IC']:+.4f} beside the members' {conf['test']['IC']['mean']:+.4f}")


def check_jobs(cli, tmp, reference):
    """Jobs trained at once in threads of one process: the same bytes as one at a time."""
    out = tmp / "J"
    r = sweep(cli, "sweep", "--grid", str(tmp / "grid.json"), "--out", str(out), "--threads", "1", "--ensemble",
              "--jobs", "3")
    check(r.returncode == 0, f"sweep --jobs 3 runs (exit {r.returncode})")
    same_sweep(reference, out, "3 jobs at once in one process against one at a time")


def check_mpi(cli, tmp, launcher, reference):
    out = tmp / "M"
    r = sweep(cli, "sweep", "--grid", str(tmp / "grid.json"), "--out", str(out), "--threads", "1", "--ensemble",
              launcher=[launcher, "--oversubscribe", "-np", "3"])
    check(r.returncode == 0, f"mpiexec -np 3 stockmixer sweep runs (exit {r.returncode})")
    ranks = set(re.findall(r"on rank (\d+)", r.stderr))
    check(len(ranks) >= 2, f"the jobs ran on ranks {sorted(ranks)}")
    same_sweep(reference, out, "3 MPI ranks against one process")


def main():
    cli = sys.argv[1]
    launcher = sys.argv[2] if len(sys.argv) > 2 and sys.argv[2] not in ("", "none") else None
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        reference = check_grid(cli, tmp)
        check_refusals(cli, tmp)
        check_kills(cli, tmp, reference)
        check_jobs(cli, tmp, reference)
        check_walk(cli, tmp)
        if launcher:
            check_mpi(cli, tmp, launcher, reference)
        else:
            print("skipped: the MPI part (the tool was built without -DSTOCKMIXER_MPI=ON)")
    if FAILURES:
        print(f"{len(FAILURES)} check(s) failed")
        sys.exit(1)


if __name__ == "__main__":
    main()
