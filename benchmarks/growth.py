"""Growth: what adding vectors to a large index costs, beside the same into a small one (issue 34).

    python benchmarks/growth.py [--large 1000000] [--small 20000] [--more 10000] [--rounds 3] [--work DIR]

Loads a small and a large index of 384 dimensions through a pipe from ``datagen.py`` and waits
for each one's graph; then, ``--rounds`` times, inserts ``--more`` new vectors into each (the small
one first, then the large one, so that other load on the machine hits both alike; every index's
files read once before, and its builder waited for after, so that neither a cold page cache nor a
builder running beside it is what is timed). The figure is the median of the rounds; the target:
the large index's <= 2x the small one's. Then a one-vector upsert into the large index beside
``vcli info`` (<= 1.2x), as ``run.py`` times it. Run it with another checkout's code on
``PYTHONPATH`` to time that code the same way (the before figures of docs/scale.md).
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import (  # noqa: E402
    DIMS,
    HERE,
    MB,
    PY,
    VCLI,
    Bench,
    bench_growth,
    bench_writes,
    child,
    fmt_s,
    report_end,
    wait_for_graph,
    warm,
)


def settle(b: Bench, name: str, n: int) -> float:
    """Wait for the index's graph builder, if it is large enough for a graph."""
    from vcli.engine import Tuning

    return wait_for_graph(b, name) if Tuning().wants_graph(n, DIMS) else 0.0


def load(b: Bench, n: int) -> str:
    name = f"grow-{n}"
    b.vcli("create", name, "--dimensions", str(DIMS), "--metric", "cosine")
    cmd = f"{shlex.quote(PY)} {shlex.quote(str(HERE / 'datagen.py'))} {n} {DIMS} | " \
          f"{shlex.quote(VCLI)} insert {name} --file - --json"
    v = child(["bash", "-c", f"set -o pipefail; {cmd}"], env=b.env)
    b.report("growth", f"load {n:,} x {DIMS} (pipe)", fmt_s(v.seconds), "", f"{n / v.seconds:,.0f} vectors/s", None)
    b.report("growth", f"{n:,}: graph built after", fmt_s(settle(b, name, n)), "", "in the background", None)
    return name


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--large", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=20_000)
    parser.add_argument("--more", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--work", type=Path, help="work folder (kept)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="vcli-growth-"))
    work.mkdir(parents=True, exist_ok=True)
    b = Bench(work, quick=False)
    code = subprocess.run([VCLI, "--version"], capture_output=True, env=b.env, text=True).stdout.strip()
    print(f"vcli growth benchmark: {os.cpu_count()} cores, {code}, vcli from "
          f"{os.environ.get('PYTHONPATH') or 'this checkout'}, work {work}")
    started = time.perf_counter()
    names = {n: load(b, n) for n in (args.small, args.large)}
    bench_growth(b, names, args.more, args.rounds, lambda name, n: settle(b, name, n))
    disk = sum(p.stat().st_size for p in (b.data / names[args.large]).iterdir())
    b.report("growth", f"{args.large:,}: disk after", f"{disk / MB:,.0f} MB", "", "", None)
    warm(b, names[args.large])
    bench_writes(b, names[args.large], 5)
    return report_end(b, started)


if __name__ == "__main__":
    sys.exit(main())
