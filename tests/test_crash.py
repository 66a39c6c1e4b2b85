"""Crash safety: the installed `vcli insert`, `upsert` and `delete-vectors` are SIGKILLed at random
moments; after every kill the index holds exactly the state before or after that command.

Each trial runs one real command on thousands of lines and kills it:
  * at a random moment (the delay is drawn from the durations of the commands that finished);
  * while SQLite is writing its log (as soon as the ``-wal`` file has grown by a random amount);
  * during the search-file refresh that follows a large write (as soon as a temporary manifest or
    graph file appears);
  * while a write appends its values to the columns (as soon as the keys or values column grows:
    the bytes are written, then fsynced, then the transaction that commits them);
  * during a fold (as soon as a norms or tombstones column grows or a new generation's appears:
    norms appended, or rows copied by a compaction, that no manifest names yet);
  * while the first writer of an index of an older vcli migrates its values out of the store (as
    soon as the new generation's files appear: copied, read back, committed, vacuumed).
Then: the index opens, ``info`` works, ``vectorCount`` is the count before or after the command,
every vector (values, namespace, metadata) equals one of the two states, ``processedUpToMutation``
agrees, and queries return the same ids and scores as NumPy brute force over that state.

CI runs a short series; ``VCLI_CRASH_TRIALS=500`` (or ``benchmarks/soak.py``) runs a long one.
``VCLI_SOAK_REPORT=path`` appends the tallies as JSON lines.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import numpy as np
import orjson
from helpers import as_older_vcli, program, vcli_executable, writer_lock_held

from vcli.engine import Catalog, Tuning

TRIALS = int(os.environ.get("VCLI_CRASH_TRIALS", "12"))
GRAPH_TRIALS = int(os.environ.get("VCLI_CRASH_GRAPH_TRIALS", "2"))
DIMS = 8
NAME = "crash"

GRAPHS = Tuning(graph_min_floats=1, graph_in_background=False, graph_part_rows=3000)


def wrapped_vcli(graph: bool, stall: bool) -> list[str]:
    """The CLI in a subprocess, optionally with a graph at any size, in parts of 3,000 vectors
    (so that kills land in builds, extensions and rebuilds of several parts), and with every fsync
    stalled (tests/programs/vcli_tuned.py)."""
    return program("vcli_tuned", *(["--graphs", "--small-parts"] if graph else []),
                   *(["--stall-fsync"] if stall else []), "--")


def report(kind: str, tallies: dict) -> None:
    line = {"test": kind, **tallies}
    print(f"\n{kind}: {tallies}")
    path = os.environ.get("VCLI_SOAK_REPORT")
    if path:
        with open(path, "ab") as f:
            f.write(orjson.dumps(line) + b"\n")


def size_of(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:  # (SQLite deletes its log when the last connection closes)
        return 0


def column_sizes(folder: Path, kinds: tuple[str, ...]) -> dict[str, int]:
    """The column files (``values-*``, ``vectors-*``) of these kinds (keys, f32: the values; norms,
    gone: the matrix's) and their sizes."""
    return {n: size_of(folder / n) for n in os.listdir(folder)
            if n.startswith(("values-", "vectors-")) and n.rsplit(".", 1)[-1] in kinds}


VALUES = ("keys", "f32")
DERIVED = ("norms", "gone")


class Model:
    """What the index must hold: id -> (float32 bytes, namespace, metadata)."""

    def __init__(self, state=None):
        self.state: dict[str, tuple[bytes, str | None, dict | None]] = dict(state or {})

    def copy(self) -> Model:
        return Model(self.state)

    def apply(self, op: str, lines: list[dict] | None, ids: list[str] | None) -> Model:
        new = self.copy()
        if op == "delete-vectors":
            for i in ids:
                new.state.pop(i, None)
            return new
        for rec in lines:
            row = (np.asarray(rec["values"], "<f4").tobytes(), rec.get("namespace"), rec.get("metadata"))
            if op == "upsert" or rec["id"] not in new.state:
                new.state[rec["id"]] = row
        return new

    def brute(self, q: np.ndarray, k: int) -> list[tuple[str, float]]:
        ids = sorted(self.state)
        if not ids:
            return []
        m = np.frombuffer(b"".join(self.state[i][0] for i in ids), "<f4").reshape(len(ids), DIMS)
        m = m.astype(np.float64)
        q = np.asarray(q, np.float64)
        s = m @ q / (np.linalg.norm(m, axis=1) * np.linalg.norm(q))
        order = sorted(range(len(ids)), key=lambda i: (-s[i], ids[i]))[:k]
        return [(ids[i], float(s[i])) for i in order]


class Harness:
    def __init__(self, data_dir: Path, tmp: Path, seed: int, graph: bool = False):
        self.data_dir, self.tmp = data_dir, tmp
        self.rng = random.Random(seed)
        self.nrng = np.random.default_rng(seed)
        self.graph = graph
        self.tuning = GRAPHS if graph else Tuning()  # the verifying reader uses graphs too
        self.cmd = wrapped_vcli(graph, stall=False) if graph else [vcli_executable()]
        self.durations: dict[str, float] = {}
        self.tally: Counter = Counter()
        self.serial = 0
        Catalog(data_dir).create(NAME, DIMS, "cosine")
        self.model = Model()
        self.last_mutation = None
        seed_lines = self.lines(3000, existing=0.0)
        with Catalog(data_dir, tuning=self.tuning).open(NAME, write=True) as ix:
            res = ix.insert(seed_lines)
        self.model = self.model.apply("insert", seed_lines, None)
        self.last_mutation = res.mutation_id
        self.folder = data_dir / NAME

    # -- inputs ------------------------------------------------------------------------------
    def vector(self) -> list[float]:
        v = self.nrng.standard_normal(DIMS).astype(np.float32)
        return v.tolist()

    def lines(self, n: int, existing: float) -> list[dict]:
        old = sorted(self.model.state)
        out = []
        big = self.rng.random() < 0.3  # large metadata: SQLite spills pages to its log mid-command
        for _ in range(n):
            self.serial += 1
            if old and self.rng.random() < existing:
                vid = self.rng.choice(old)
            elif out and self.rng.random() < 0.02:
                vid = self.rng.choice(out)["id"]  # repeated inside one file
            else:
                vid = f"t{self.serial}"
            rec = {"id": vid, "values": self.vector()}
            if self.rng.random() < 0.3:
                rec["namespace"] = self.rng.choice(["a", "b", "ns 'x'"])
            if big or self.rng.random() < 0.3:
                rec["metadata"] = {"n": self.serial, "pad": "x" * (self.rng.randrange(1500) if big else 5)}
            out.append(rec)
        return out

    def next_op(self, fold: bool = False) -> tuple[str, list[dict] | None, list[str] | None]:
        """A command; with ``fold``, one of more changes than ``fold_rows`` (the refresh folds)."""
        size = len(self.model.state)
        op = "delete-vectors" if size > 7000 else self.rng.choice(["insert", "upsert", "delete-vectors"])
        if fold and size < 2500:
            op = "insert"
        if op == "delete-vectors":
            ids = self.rng.sample(sorted(self.model.state), min(size, 2300 if fold else self.rng.choice([300, 2300])))
            return op, None, ids + [f"missing-{self.serial}", "also 'missing'"]
        n = self.rng.choice([2100, 2600, 4000])
        return op, self.lines(n, existing=0.1 if op == "insert" else 0.5), None

    # -- one trial ---------------------------------------------------------------------------
    def trial(self, mode: str) -> None:
        op, lines, ids = self.next_op(fold=mode == "fold")
        cmd = wrapped_vcli(self.graph, stall=True) if mode in ("refresh", "fold", "append", "migrate") else self.cmd
        args = [*cmd, op, NAME, "--json"]
        stdin = None
        if op == "delete-vectors":
            args += ["--ids", *ids]
        else:
            src = self.tmp / "input.ndjson"
            src.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in lines))
            args += ["--file", str(src), "--batch-size", str(self.rng.choice([100, 1000, 5000]))]
        before, after = self.model, self.model.apply(op, lines, ids)
        wal = self.folder / "store.sqlite-wal"
        wal_start = size_of(wal)
        wal_goal = wal_start + self.rng.randrange(1, 400_000)
        guess = self.durations.get(op, 1.0)
        delay = self.rng.uniform(0.0, 1.15 * guess)
        values, derived = column_sizes(self.folder, VALUES), column_sizes(self.folder, DERIVED)
        started = time.monotonic()
        proc = subprocess.Popen(args, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        killed_in = None
        while proc.poll() is None:
            now = time.monotonic() - started
            if mode == "random" and now >= delay:
                killed_in = "random"
            elif mode == "wal" and size_of(wal) >= wal_goal:
                killed_in = "wal"
            elif mode == "refresh" and any(".tmp-" in n for n in os.listdir(self.folder)):
                time.sleep(self.rng.uniform(0, 0.4))  # before the rename, after it, or not at all
                killed_in = "refresh"
            elif mode == "fold" and column_sizes(self.folder, DERIVED) != derived:
                time.sleep(self.rng.uniform(0, 0.3))  # mid-append, before its manifest, or after
                killed_in = "fold"
            elif mode == "append" and column_sizes(self.folder, VALUES) != values:
                time.sleep(self.rng.uniform(0, 0.6))  # before the fsyncs, between them, or after the commit
                killed_in = "append"
            elif mode == "migrate" and column_sizes(self.folder, VALUES):
                time.sleep(self.rng.uniform(0, 2.5))  # copying, fsyncing, committing, the write, or after
                killed_in = "migrate"
            if killed_in:
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.0005)
        out, err = proc.communicate(timeout=120)
        if proc.returncode == 0:
            self.durations[op] = 0.7 * self.durations.get(op, 1.0) + 0.3 * (time.monotonic() - started)
            self.tally["finished"] += 1
        else:
            assert proc.returncode == -signal.SIGKILL, (proc.returncode, err.decode())
            self.tally[f"killed ({killed_in})"] += 1
        assert b"Traceback" not in err
        self.verify(before, after, finished=proc.returncode == 0)

    # -- after it ----------------------------------------------------------------------------
    def verify(self, before: Model, after: Model, finished: bool) -> None:
        with Catalog(self.data_dir, tuning=self.tuning).open(NAME) as ix:
            info = ix.info()
            assert info.vector_count in (len(before.state), len(after.state))
            everyone = sorted(set(before.state) | set(after.state))
            got = {v.id: (np.asarray(v.values, "<f4").tobytes(), v.namespace, v.metadata)
                   for v in ix.get(everyone)}
            moved = info.processed_up_to_mutation != self.last_mutation
            if got == after.state and (got != before.state or moved):
                state, outcome = after, "after"
            else:
                assert got == before.state, "the index holds neither the state before nor after"
                state, outcome = before, "before"
            assert moved == (outcome == "after"), "processedUpToMutation disagrees with the vectors"
            assert outcome == "after" or not finished
            assert info.vector_count == len(state.state)
            self.tally[f"state {outcome}"] += 1
            if any(".tmp-" in n for n in os.listdir(self.folder)):
                self.tally["temporary file left"] += 1
            for _ in range(2):
                q = self.nrng.standard_normal(DIMS).astype(np.float32)
                res = ix.query(q.tolist(), top_k=10)
                want = state.brute(q, 10)
                assert [m.id for m in res.matches] == [w[0] for w in want]
                assert np.allclose([m.score for m in res.matches], [w[1] for w in want], atol=1e-6)
                self.tally["notes"] += len(res.notes)
        self.model = state
        self.last_mutation = info.processed_up_to_mutation


def test_sigkill_at_random_moments(data_dir, tmp_path, vcli_proc):
    h = Harness(data_dir, tmp_path, seed=int(os.environ.get("VCLI_CRASH_SEED", "1")))
    modes = ["random", "random", "wal", "refresh", "fold", "append"]
    done = 0
    try:
        for i in range(TRIALS):
            h.trial(modes[i % len(modes)])
            done += 1
    finally:
        report("sigkill", dict(h.tally, trials=done, **({} if done == TRIALS else {"FAILED at trial": done})))
    # The installed CLI agrees, and `check --repair` leaves a healthy index.
    info = vcli_proc("info", NAME, "--json")
    assert info.code == 0 and info.json["vectorCount"] == len(h.model.state)
    repaired = vcli_proc("check", NAME, "--repair", "--json")
    assert repaired.code in (0, 3), repaired.err
    assert vcli_proc("check", NAME).code == 0
    some = sorted(h.model.state)[:50]
    got = vcli_proc("get-vectors", NAME, "--ids", *some, "--json")
    assert got.code == 0
    assert {v["id"]: np.asarray(v["values"], "<f4").tobytes() for v in got.json} == {
        i: h.model.state[i][0] for i in some}
    assert h.tally["killed (random)"] + h.tally["killed (wal)"] + h.tally["killed (refresh)"] > 0
    assert h.tally["killed (fold)"] > 0 and h.tally["killed (append)"] > 0


def test_sigkill_while_an_older_index_is_migrated(data_dir, tmp_path, vcli_proc):
    """An index of an older vcli (values in the store) is migrated by its first writer: killed at
    any point of that, it holds the state before or after the write, readable, and the next
    writer finishes the migration."""
    h = Harness(data_dir, tmp_path, seed=11)
    done = 0
    try:
        for i in range(TRIALS // 3):
            with Catalog(data_dir).open(NAME, write=True) as ix, ix.writing():
                ix.refresh(force=True)  # (migrates what a kill left as it was; a manifest to turn old)
            as_older_vcli(h.folder, DIMS, one_file=i % 2 == 0)
            h.trial("migrate")
            with closing(sqlite3.connect(h.folder / "store.sqlite")) as conn:
                migrated = conn.execute("SELECT v FROM settings WHERE k = 'format'").fetchone()[0] == 2
            h.tally["migrated" if migrated else "not migrated"] += 1
            done += 1
    finally:
        report("sigkill-migrate", dict(h.tally, trials=done,
                                       **({} if done == TRIALS // 3 else {"FAILED at trial": done})))
    assert h.tally["killed (migrate)"] > 0
    repaired = vcli_proc("check", NAME, "--repair", "--json")
    assert repaired.code in (0, 3), repaired.err
    assert vcli_proc("check", NAME).code == 0


def test_sigkill_during_graph_refresh(data_dir, tmp_path):
    h = Harness(data_dir, tmp_path, seed=7, graph=True)
    with Catalog(data_dir, tuning=GRAPHS).open(NAME, write=True) as ix, ix.writing():  # the first graph
        ix.refresh()
    assert any(n.startswith("graph-") for n in os.listdir(h.folder))
    done = 0
    try:
        for i in range(GRAPH_TRIALS):
            h.trial("refresh" if i % 3 != 2 else "random")
            done += 1
    finally:
        report("sigkill-graph", dict(h.tally, trials=done,
                                     **({} if done == GRAPH_TRIALS else {"FAILED at trial": done})))
    assert h.tally["killed (refresh)"] > 0


def test_killed_writer_releases_the_lock(data_dir, tmp_path, vcli_proc):
    """The next writer does not wait for a dead one (flock dies with its process)."""

    h = Harness(data_dir, tmp_path, seed=3)
    proc = subprocess.Popen([vcli_executable(), "upsert", NAME, "--file", "-", "--batch-size", "10"],
                            stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdin.write(b"".join(orjson.dumps(r) + b"\n" for r in h.lines(500, existing=0.5)))
    proc.stdin.flush()

    end = time.monotonic() + 60
    while not writer_lock_held(h.folder):  # inside its transaction, waiting for more input
        assert time.monotonic() < end
        time.sleep(0.01)
    proc.kill()
    proc.wait()
    line = {"id": "after-kill", "values": [1.0] * DIMS}
    started = time.monotonic()
    res = vcli_proc("upsert", NAME, "--file", "-", "--json", input=orjson.dumps(line).decode(),
                    env={"VCLI_LOCK_TIMEOUT": "30"})
    assert res.code == 0, res.err
    assert time.monotonic() - started < 30
    with Catalog(data_dir).open(NAME) as ix:
        assert ix.info().vector_count == len(h.model.state) + 1


def kill_when(cmd: list[str], appears: Callable[[], list[Path]]) -> list[Path]:
    """Run ``cmd`` (with fsyncs stalled) and SIGKILL it as soon as ``appears()`` finds something."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    end = time.monotonic() + 60
    while not (found := appears()):
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < end
        time.sleep(0.002)
    proc.kill()
    proc.wait()
    return found


def test_killed_create_and_delete_leave_nothing_for_long(data_dir, vcli_proc):
    """A create or delete killed half-way leaves a hidden folder; the next create or delete removes
    a delete's at once and a create's once it is stale (never one a live create may still use)."""
    wrapped = wrapped_vcli(graph=False, stall=True)
    assert vcli_proc("create", "doomed", "--dimensions", "3", "--metric", "cosine").code == 0
    trash = kill_when([*wrapped, "delete", "doomed", "--force"], lambda: list(data_dir.glob(".delete-*")))
    assert trash[0].is_dir() and vcli_proc("list", "--json").json == []  # hidden, and not an index
    half = kill_when([*wrapped, "create", "half", "--dimensions", "3", "--metric", "cosine"],
                     lambda: list(data_dir.glob(".create-*")))
    assert not trash[0].exists()  # that create removed the deleted index's files first
    assert half[0].is_dir() and vcli_proc("list", "--json").json == []
    assert vcli_proc("create", "next", "--dimensions", "3", "--metric", "cosine").code == 0
    assert half[0].is_dir()  # young: it could be another process's create in progress
    old = time.time() - 3600
    os.utime(half[0], (old, old))
    assert vcli_proc("delete", "next", "--force").code == 0
    assert sorted(p.name for p in data_dir.iterdir()) == []
    assert vcli_proc("create", "half", "--dimensions", "3", "--metric", "cosine").code == 0
