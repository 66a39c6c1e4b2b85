"""The graph builder: a large index's graph is built by a detached process after the write returns.

Real subprocesses throughout: the CLI (``tests/programs/vcli_tuned.py --background-graphs
--small-parts``, which gives every index a graph at any size, in parts of 3,000 vectors) writes and
returns, a builder (``python -m vcli.graph_builder``) makes the graph parts meanwhile, and queries
answer exactly before, during and after. A builder SIGKILLed mid-build leaves no half part and
loses nothing; the next query or write starts another. Every wait has a generous deadline and polls for the condition, never for a duration.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import orjson
import pytest
from helpers import ndjson, program

from vcli.engine import Catalog, Tuning
from vcli.engine.builder import needs_graph, running
from vcli.engine.layout import Folder

DIMS = 32
NAME = "big"
BACKGROUND = Tuning(graph_min_floats=1, graph_part_rows=3000)
DEADLINE = 180  # seconds: a busy CI machine may build slowly, never this slowly


def tuned(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    done = subprocess.run([*program("vcli_tuned", "--background-graphs", "--small-parts", "--"), *args],
                          input=stdin, capture_output=True, timeout=DEADLINE)
    assert b"Traceback" not in done.stderr
    assert done.returncode == 0, done.stderr.decode()
    return done


def files(folder: Path) -> list[str]:
    return sorted(n for n in os.listdir(folder) if n.startswith(("matrix-", "graph-", ".graph-", ".matrix-")))


def wait_for(what, deadline: float = DEADLINE):
    end = time.monotonic() + deadline
    while not (found := what()):
        assert time.monotonic() < end, "timed out"
        time.sleep(0.02)
    return found


def graph_built(folder: Path) -> bool:
    """The newest matrix is covered by graph parts, and no builder is at work."""
    return not needs_graph(Folder(folder), DIMS, BACKGROUND.graph_part_rows) and not running(Folder(folder))


def brute(model: dict[str, np.ndarray], q: np.ndarray, k: int) -> list[tuple[str, float]]:
    ids = sorted(model)
    m = np.stack([model[i] for i in ids]).astype(np.float64)
    q64 = q.astype(np.float64)
    scores = m @ q64 / (np.linalg.norm(m, axis=1) * np.linalg.norm(q64))
    order = sorted(range(len(ids)), key=lambda j: (-scores[j], ids[j]))[:k]
    return [(ids[j], scores[j]) for j in order]


def assert_exact(data_dir: Path, model: dict[str, np.ndarray], rng, count: int = 5) -> list[str]:
    """Queries through the library (as a reader would, while a builder may be at work) give the
    brute-force answer; their notes."""
    notes = []
    with Catalog(data_dir, tuning=BACKGROUND, background_builds=True).open(NAME) as ix:
        for _ in range(count):
            q = rng.standard_normal(DIMS).astype(np.float32)
            res = ix.query(q.tolist(), top_k=10)
            want = brute(model, q, 10)
            assert [m.id for m in res.matches] == [w[0] for w in want]
            assert np.allclose([m.score for m in res.matches], [w[1] for w in want], atol=1e-6)
            notes += res.notes
    return notes


def load(tmp_path: Path, rng, n: int, prefix: str) -> dict[str, np.ndarray]:
    vecs = {f"{prefix}{i:06d}": v for i, v in enumerate(rng.standard_normal((n, DIMS)).astype(np.float32))}
    src = tmp_path / f"{prefix}.ndjson"
    src.write_text(ndjson({"id": i, "values": v.tolist()} for i, v in vecs.items()))
    tuned("upsert", NAME, "--file", str(src))
    return vecs


def test_a_write_returns_before_its_graph_and_queries_stay_exact(data_dir, tmp_path):
    rng = np.random.default_rng(1)
    tuned("create", NAME, "--dimensions", str(DIMS), "--metric", "cosine")
    folder = data_dir / NAME
    model = load(tmp_path, rng, 4000, "a")
    assert any(n.startswith("matrix-") for n in files(folder))  # durable and queryable at once
    assert assert_exact(data_dir, model, rng) == []  # from the matrix, or the graph once it is there
    wait_for(lambda: graph_built(folder))
    assert [n.split("-")[0] for n in files(folder)] == ["graph", "graph", "matrix"]  # 3,000 + 1,000
    assert assert_exact(data_dir, model, rng) == []  # through the graph
    # A fold writes a new matrix; the builder fills the last part and starts a new one in the
    # background, and meanwhile the rows they do not cover yet are scanned exactly.
    model |= load(tmp_path, rng, 2500, "b")
    assert assert_exact(data_dir, model, rng) == []
    wait_for(lambda: graph_built(folder))
    assert [n.split("-")[0] for n in files(folder)] == ["graph", "graph", "graph", "matrix"]
    assert assert_exact(data_dir, model, rng) == []
    check = subprocess.run([*program("vcli_tuned", "--background-graphs", "--small-parts", "--"), "check", NAME, "--json"],
                           capture_output=True, timeout=DEADLINE)
    assert check.returncode == 0, check.stdout.decode()
    assert orjson.loads(check.stdout)["healthy"] is True


def test_a_killed_builder_leaves_no_half_graph(data_dir, tmp_path):
    rng = np.random.default_rng(2)
    Catalog(data_dir, tuning=BACKGROUND, background_builds=True).create(NAME, DIMS, "cosine")
    folder = data_dir / NAME
    model = load(tmp_path, rng, 10_000, "a")
    wait_for(lambda: graph_built(folder))
    builder = [sys.executable, "-m", "vcli.graph_builder", str(folder), str(DIMS), "cosine",
               str(BACKGROUND.graph_part_rows)]

    def remove_parts() -> None:
        for part in folder.glob("graph-*.usearch"):
            part.unlink()

    # How long a whole build of its four parts takes here (a kill lands anywhere within it)
    remove_parts()
    started = time.monotonic()
    subprocess.run(builder, timeout=DEADLINE, check=True)
    took = time.monotonic() - started
    kills = 0
    for trial in range(3):
        remove_parts()
        proc = subprocess.Popen(builder)
        wait_for(lambda p=proc: p.poll() is not None or running(Folder(folder)))
        if trial == 0:  # as soon as its first temporary file appears (fsync, rename still to come)
            wait_for(lambda p=proc: p.poll() is not None or any(n.startswith(".graph-") for n in files(folder)))
        else:
            time.sleep(rng.uniform(0, took))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait(timeout=DEADLINE)
        # Whatever moment the kill hit: whole parts or none (a query verifies the parts it opens,
        # and would say so in a note), and exact answers either way; a query that finds rows in
        # no part starts a builder, and a write removes a leftover temporary file.
        assert assert_exact(data_dir, model, rng, 2) == []
        model |= load(tmp_path, rng, 1, f"t{trial}-")
        wait_for(lambda: graph_built(folder))
        assert not any(n.startswith(".") for n in files(folder))
        assert assert_exact(data_dir, model, rng, 2) == []
    assert kills > 0


def test_a_library_catalog_starts_no_builder_unless_asked(data_dir, monkeypatch):
    """A notebook's write starts no process: the graph is built before the write returns. A
    catalog opened with ``background_builds=True`` (the CLI's, the server's) starts a builder."""
    from vcli.engine import builder

    started = []
    real_start = builder.start
    monkeypatch.setattr(builder, "start", lambda *args: started.append(args) or real_start(*args))
    rows = np.random.default_rng(5).standard_normal((4000, DIMS)).astype(np.float32)
    for background, name in ((False, "quiet"), (True, "busy")):
        catalog = Catalog(data_dir, tuning=BACKGROUND, background_builds=background)
        catalog.create(name, DIMS, "cosine")
        with catalog.open(name, write=True) as ix:
            ix.upsert_arrays([f"v{i}" for i in range(len(rows))], rows)
        if not background:
            assert started == [] and graph_built(data_dir / name)
    assert [Path(args[0].path).name for args in started] == ["busy"]
    wait_for(lambda: graph_built(data_dir / "busy"))


def test_a_build_stops_at_its_next_chunk_once_the_index_is_deleted(tmp_path, monkeypatch):
    """A builder working on an index that ``vcli delete`` removes stops at its next chunk of rows
    rather than spend minutes of CPU on a part no one will open."""
    from vcli.engine import graph
    from vcli.engine.matrix import Matrix

    catalog = Catalog(tmp_path / "indexes", tuning=Tuning(fold_rows=10))
    catalog.create(NAME, DIMS, "cosine")
    rng = np.random.default_rng(3)
    with catalog.open(NAME, write=True) as ix:
        ix.upsert([{"id": f"v{i}", "values": v.tolist()} for i, v in enumerate(rng.standard_normal((500, DIMS)))])
    folder = Folder(catalog.path_of(NAME))
    newest = folder.newest_matrix()
    assert newest is not None
    m = Matrix.load(newest.path, newest.seq, DIMS)
    made, chunks = graph.new_index, []

    def new_index(*args, **kwargs):
        index = made(*args, **kwargs)
        add = index.add

        def adding(*a, **kw):
            chunks.append(len(a[0]))
            if len(chunks) == 1:
                catalog.delete(NAME)  # (meanwhile, in another process)
            return add(*a, **kw)

        index.add = adding
        return index

    monkeypatch.setattr(graph, "CHUNK", 100)
    monkeypatch.setattr(graph, "new_index", new_index)
    with pytest.raises(FileNotFoundError, match="the index was deleted"):
        graph.build_part(m, folder, "cosine", (int(m.keys[0]), int(m.keys[-1])), Tuning())
    assert chunks == [100]
