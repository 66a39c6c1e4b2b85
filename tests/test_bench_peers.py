"""benchmarks/peers/bench.py runs without the peers' environment: it says it skips them, loads with
vcli alone, prints its table and removes the file and the index it made."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "peers" / "bench.py"


def test_tiny_run_without_the_peers(tmp_path):
    work = tmp_path / "work"
    run = subprocess.run([sys.executable, str(BENCH), "-n", "1000", "--work", str(work),
                          "--peers-python", str(tmp_path / "none" / "python")],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    assert "skipping lancedb, sqlite-vec: no peers' environment at" in run.stdout
    assert "tools: parse, vcli-parse, vcli\n" in run.stdout
    rows = {line.split()[0]: line.split() for line in run.stdout.splitlines() if line.split()[1:2] == ["1"]}
    assert set(rows) == {"parse", "vcli-parse", "vcli"}  # the first turn's rows, no peer's
    assert float(rows["vcli"][3]) > 0 and rows["vcli"][-1].endswith("x")  # seconds, ..., x float32
    assert "Traceback" not in run.stderr
    assert list(work.iterdir()) == []  # the data file and the index are gone
