#!/usr/bin/env python3
"""The long reliability run, by hand: many more kills, fuzz examples and concurrent runs than CI.

    python benchmarks/soak.py                  # 500 kill trials, fuzz x20, readers/writers x10
    python benchmarks/soak.py --trials 100 --fuzz-scale 5 --rounds 3 --seed 42

It runs the same tests as CI (tests/test_crash.py, test_concurrency.py, test_hostile.py) with the
sizes raised through their environment variables, then prints what was done: kill trials and in
which phase each kill landed, which state the index was found in (before or after the killed
command; any other state fails the run), fuzz examples, and concurrent reads seen during writes.
Exit status 0 means no lost or half-applied write was found.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=500, help="SIGKILL trials (default 500)")
    ap.add_argument("--graph-trials", type=int, default=30, help="SIGKILL trials on a graph index (30)")
    ap.add_argument("--fuzz-scale", type=int, default=20, help="times CI's fuzz examples (20)")
    ap.add_argument("--rounds", type=int, default=10, help="times CI's reader/writer run (10)")
    ap.add_argument("--seed", type=int, default=int(time.time()), help="kill schedule seed")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.ndjson"
        env = {
            **os.environ,
            "VCLI_CRASH_TRIALS": str(args.trials),
            "VCLI_CRASH_GRAPH_TRIALS": str(args.graph_trials),
            "VCLI_CRASH_SEED": str(args.seed),
            "VCLI_FUZZ_SCALE": str(args.fuzz_scale),
            "VCLI_CONCURRENCY_ROUNDS": str(args.rounds),
            "VCLI_SOAK_REPORT": str(report),
        }
        started = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
             "tests/test_crash.py", "tests/test_concurrency.py", "tests/test_hostile.py"],
            cwd=ROOT, env=env,
        )
        minutes = (time.monotonic() - started) / 60
        lines = [orjson.loads(x) for x in report.read_bytes().splitlines()] if report.exists() else []

    print(f"\nsoak run, seed {args.seed}, {minutes:.1f} min, pytest exit {proc.returncode}")
    kills: Counter = Counter()
    for line in lines:
        name = line.pop("test")
        print(f"  {name}: " + ", ".join(f"{k} {v}" for k, v in sorted(line.items())))
        if name.startswith("sigkill"):
            kills.update({k: v for k, v in line.items() if isinstance(v, int)})
    if kills:
        killed = sum(v for k, v in kills.items() if k.startswith("killed"))
        print(f"  kill trials {kills['trials']}: {killed} killed, {kills['finished']} finished; "
              f"found {kills['state before']} times as before and {kills['state after']} as after "
              "the command, never anything else")
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
