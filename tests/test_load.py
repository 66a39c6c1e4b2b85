"""Loading a large input: past ``ndjson.PARALLEL_AFTER`` lines, a child process reads the rest
beside the write (docs/performance.md, "Loading"). The same vectors as read line by line; a bad
line anywhere is named by the same one error line, the first one if there are several, and the
index stays exactly as it was; the child never outlives the read."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import numpy as np
import orjson
import pytest
from helpers import vcli_executable, writer_lock_held

from vcli import ndjson
from vcli.errors import BadInput
from vcli.ndjson import PARALLEL_AFTER, parse_line, read_vectors

SHIP = ndjson._SHIP
N = PARALLEL_AFTER + 3 * SHIP + 7  # the child's part spans several of its messages


def records(n: int = N) -> list[dict]:
    rng = np.random.default_rng(34)
    values = rng.standard_normal((n, 3)).astype(np.float32)
    out = []
    for i in range(n):
        rec: dict = {"id": f"v{i}", "values": values[i].tolist()}
        if i % 3 == 0:
            rec["metadata"] = {"cat": f"c{i % 7}", "n": i, "ok": i % 2 == 0}
        if i % 5 == 0:
            rec["namespace"] = f"ns{i % 4}"
        out.append(rec)
    return out


def text(recs: list[dict]) -> bytes:
    return b"".join(orjson.dumps(r) + b"\n" for r in recs)


@pytest.fixture
def forks(monkeypatch):
    """How many times a read forked a child."""
    count = []
    real = os.fork
    monkeypatch.setattr(os, "fork", lambda: count.append(1) or real())
    return count


def test_a_large_file_reads_as_line_by_line(tmp_path, forks):
    data = text(records()).replace(b'{"id":"v2100"', b'\n  \n{"id":"v2100"')  # blank lines count too
    path = tmp_path / "big.ndjson"
    path.write_bytes(data)
    want = [parse_line(raw, n, 3) for n, raw in enumerate(data.splitlines(keepends=True), 1) if raw.strip()]
    with open(path, "rb") as f:
        got = list(read_vectors(f, 3))
    assert forks == [1]
    assert got == want and len(got) == N and got[-1].line == N + 2
    assert _no_children()


def _no_children() -> bool:
    try:
        os.waitpid(-1, os.WNOHANG)
    except ChildProcessError:
        return True
    return False


def test_a_small_input_or_an_iterator_is_read_here(tmp_path, forks):
    small = tmp_path / "small.ndjson"
    small.write_bytes(text(records(PARALLEL_AFTER)))
    with open(small, "rb") as f:
        assert len(list(read_vectors(f, 3))) == PARALLEL_AFTER
    assert len(list(read_vectors(iter(text(records()).splitlines(keepends=True)), 3))) == N
    assert forks == []


@pytest.mark.parametrize("at", [PARALLEL_AFTER + 2, PARALLEL_AFTER + SHIP + SHIP // 2, N])
def test_an_error_read_by_the_child_is_the_first_bad_line(tmp_path, forks, at):
    lines = text(records()).splitlines(keepends=True)
    lines[at - 1] = b'{"id": "x", "values": [1, true, 3]}\n'
    lines[-1] = b"{not json\n"  # a later error is never the one named
    path = tmp_path / "bad.ndjson"
    path.write_bytes(b"".join(lines))
    with open(path, "rb") as f, pytest.raises(BadInput) as err:
        list(read_vectors(f, 3))
    want = "values[1] is a boolean" if at < N else "not valid JSON"
    assert err.value.line == at and want in err.value.message
    assert forks == [1] and _no_children()


def test_a_read_stopped_early_ends_its_child(tmp_path, forks):
    path = tmp_path / "big.ndjson"
    path.write_bytes(text(records()))
    with open(path, "rb") as f:
        read = read_vectors(f, 3)
        for _ in range(PARALLEL_AFTER + 10):
            next(read)
        read.close()
    assert forks == [1] and _no_children()


@pytest.mark.parametrize("channel", ["file", "stdin"])
def test_a_large_load_stores_every_vector_as_written(vcli_proc, tmp_path, channel):
    recs = records()
    assert vcli_proc("create", "big", "--dimensions", "3", "--metric", "euclidean").code == 0
    path = tmp_path / "big.ndjson"
    path.write_bytes(text(recs))
    args = ("--file", path) if channel == "file" else ("--file", "-")
    res = vcli_proc("insert", "big", *args, "--json", input=path.read_bytes() if channel == "stdin" else None)
    assert res.code == 0, res.err
    assert orjson.loads(res.out) == {"index": "big", "count": N}
    exported = {r["id"]: r for r in map(orjson.loads, vcli_proc("export", "big").out.splitlines())}
    for rec in recs:
        got = exported[rec["id"]]
        assert np.array(got["values"], np.float32).tobytes() == np.array(rec["values"], np.float32).tobytes()
        assert got.get("metadata") == rec.get("metadata") and got.get("namespace") == rec.get("namespace")


@pytest.mark.parametrize("channel, at, bad, reason", [
    ("file", PARALLEL_AFTER + 2, "{not json", "not valid JSON"),
    ("file", PARALLEL_AFTER + SHIP + 3, '{"id": "d", "values": [1, 2]}', 'id "d": expected 3 dimensions, got 2'),
    ("stdin", PARALLEL_AFTER + 2 * SHIP + SHIP // 2, '{"id": "b", "values": [1, false, 3]}',
     'id "b": values[1] is a boolean'),
    ("stdin", N, '{"id": "m", "values": [1, 2, 3], "metadata": {"a.b": 1}}', 'metadata key "a.b"'),
])
def test_a_bad_line_deep_in_a_large_load_is_named_and_writes_nothing(vcli_proc, tmp_path, channel, at, bad, reason):
    assert vcli_proc("create", "big", "--dimensions", "3", "--metric", "cosine").code == 0
    assert vcli_proc("insert", "big", "--file", "-", input=text(records(5))).code == 0
    before = (vcli_proc("info", "big", "--json").out, vcli_proc("export", "big").out)
    lines = text(records()).splitlines(keepends=True)
    lines[at - 1] = bad.encode() + b"\n"
    data = b"".join(lines)
    path = tmp_path / "bad.ndjson"
    path.write_bytes(data)
    if channel == "file":
        res = vcli_proc("upsert", "big", "--file", path, "--json")
    else:
        res = vcli_proc("upsert", "big", "--file", "-", "--json", input=data)
    assert res.code == 1 and res.out == ""
    assert res.err.startswith(f"Error: line {at}") and res.err.count("\n") == 1 and reason in res.err, res.err
    assert (vcli_proc("info", "big", "--json").out, vcli_proc("export", "big").out) == before
    assert vcli_proc("upsert", "big", "--file", "-", input=text(records(7))).code == 0  # the lock is free


def children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def test_a_killed_load_leaves_the_lock_free_though_its_child_reads_on(data_dir, vcli_proc):
    """The child keeps no file of the parent's open: killed while waiting for more input, the
    parent's lock dies with it, though the child still waits on the pipe."""
    assert vcli_proc("create", "big", "--dimensions", "3", "--metric", "cosine").code == 0
    proc = subprocess.Popen([vcli_executable(), "upsert", "big", "--file", "-"], stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        proc.stdin.write(text(records(PARALLEL_AFTER + 100)))
        proc.stdin.flush()
        end = time.monotonic() + 60
        while not children(proc.pid):  # the child reads the pipe now, waiting for more
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < end
            time.sleep(0.01)
        assert writer_lock_held(data_dir / "big")
        proc.kill()
        proc.wait()
        assert not writer_lock_held(data_dir / "big")
        assert vcli_proc("upsert", "big", "--file", "-", input=text(records(3))).code == 0
    finally:
        proc.stdin.close()  # the orphaned child reads the end of its input and ends
