"""``vcli export NAME [--namespace NS] [--output PATH]``: NDJSON in exactly the insert format, so
``vcli export a | vcli insert b --file -`` copies an index; ``--output`` appears whole or not at all."""

from __future__ import annotations

import os
import stat
import threading

import numpy as np
import orjson
import pytest
from helpers import GOLDEN, ndjson

import vcli.engine.index as index_mod
from vcli.engine import Tuning

ROWS = [
    {"id": "b", "values": [58.8, 6.7, 3.4]},
    {"id": "a", "values": [0.1, -2.5e-7, 3.0e20], "metadata": {"genre": "drama", "n": 1.5, "tags": ["x"],
                                                             "nested": {"ok": True}}},
    {"id": "ü-1", "values": [1, 2, 3], "namespace": "ns1"},
    {"id": "c", "values": [-0.0, 1e-45, 7], "metadata": {}, "namespace": "ns2"},
]


@pytest.fixture
def source(vcli):
    assert vcli("create", "src", "--dimensions", "3", "--metric", "cosine").code == 0
    assert vcli("insert", "src", "--file", "-", input=ndjson(ROWS)).code == 0
    return "src"


def test_lines_are_the_insert_format_in_write_order(vcli, source):
    run = vcli("export", source)
    assert run.code == 0, run.err
    lines = [orjson.loads(x) for x in run.out.splitlines()]
    assert [x["id"] for x in lines] == ["b", "a", "ü-1", "c"]
    assert lines[0] == {"id": "b", "values": [58.8, 6.7, 3.4]}  # shortest float32 decimals, no nulls
    assert lines[1]["metadata"] == ROWS[1]["metadata"] and "namespace" not in lines[1]
    assert lines[2] == {"id": "ü-1", "values": [1.0, 2.0, 3.0], "namespace": "ns1"}
    assert lines[3]["metadata"] == {} and lines[3]["namespace"] == "ns2"
    assert run.out.splitlines()[0] == '{"id":"b","values":[58.8,6.7,3.4]}'


def test_export_into_insert_copies_the_index(vcli, source):
    exported = vcli("export", source).out
    assert vcli("create", "copy", "--dimensions", "3", "--metric", "cosine").code == 0
    assert vcli("insert", "copy", "--file", "-", input=exported).code == 0
    ids = [r["id"] for r in ROWS]
    assert vcli("get-vectors", "copy", "--ids", *ids, "--json").json == \
        vcli("get-vectors", source, "--ids", *ids, "--json").json
    assert vcli("export", "copy").out == exported


def test_random_float32_values_survive_the_round_trip(vcli):
    rng = np.random.default_rng(5)
    values = (rng.standard_normal((50, 8)) * 10.0 ** rng.integers(-30, 30, (50, 1))).astype(np.float32)
    values[0] = [np.finfo(np.float32).max, np.finfo(np.float32).tiny, -np.finfo(np.float32).smallest_subnormal,
                 0.0, 1 / 3, 0.1, 16777217, 3.4028235e38]
    assert vcli("create", "r", "--dimensions", "8", "--metric", "euclidean").code == 0
    rows = [{"id": f"v{i}", "values": v} for i, v in enumerate(values)]
    data = b"".join(orjson.dumps(r, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n" for r in rows)
    assert vcli("insert", "r", "--file", "-", input=data).code == 0
    exported = [orjson.loads(x) for x in vcli("export", "r").out.splitlines()]
    got = np.array([x["values"] for x in exported], np.float64).astype(np.float32)
    assert got.tobytes() == values.tobytes()


def test_namespace(vcli, source):
    run = vcli("export", source, "--namespace", "ns2")
    assert run.code == 0 and [orjson.loads(x)["id"] for x in run.out.splitlines()] == ["c"]
    assert vcli("export", source, "--namespace", "none-such").out == ""
    bad = vcli("export", source, "--namespace", "x" * 65)
    assert bad.code == 1 and bad.err.startswith("Error: namespace must be 1 to 64 bytes")


def test_output_file(vcli, source, tmp_path):
    out = tmp_path / "out.ndjson"
    run = vcli("export", source, "--output", out)
    assert run.code == 0 and run.out == f"Exported 4 vectors from index 'src' to {out}.\n"
    assert out.read_text() == vcli("export", source).out
    again = vcli("export", source, "--output", out, "--json")
    assert again.json == {"index": "src", "count": 4, "output": str(out)}
    assert sorted(p.name for p in tmp_path.iterdir() if "out" in p.name) == ["out.ndjson"]


def test_output_is_whole_or_untouched(vcli, source, tmp_path, monkeypatch):
    out = tmp_path / "out.ndjson"
    out.write_text("before\n")

    def broken(self, namespace=None, *, progress=None, block_rows=1):
        yield b'{"id":"b","values":[1,2,3]}\n', 1
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(index_mod.VectorIndex, "export", broken)
    run = vcli("export", source, "--output", out)
    assert run.code == 1 and run.err.startswith("Error: ") and "No space left" in run.err
    assert out.read_text() == "before\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []


def test_output_through_a_symlink_or_into_a_named_pipe(vcli, source, tmp_path):
    # A symlink is written through (as `>` would), not replaced by a file; a device or a named
    # pipe is written straight: `-o /dev/null` must never put a regular file in place of it.
    expected = vcli("export", source).out
    real = tmp_path / "real.ndjson"
    real.write_text("old\n")
    link = tmp_path / "link.ndjson"
    link.symlink_to(real)
    assert vcli("export", source, "-o", link).code == 0
    assert link.is_symlink() and real.read_text() == expected

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_text()))
    reader.start()
    run = vcli("export", source, "-o", fifo)
    reader.join(timeout=30)
    assert run.code == 0 and got == [expected]
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_errors(vcli, source, tmp_path):
    unknown = vcli("export", "nope")
    assert unknown.code == 1 and unknown.err == 'Error: index "nope" not found\n'
    folder = vcli("export", source, "--output", tmp_path)
    assert folder.code == 1 and "is a directory" in folder.err
    nowhere = vcli("export", source, "--output", tmp_path / "no" / "such" / "dir.ndjson")
    assert nowhere.code == 1 and nowhere.err.startswith("Error: ")


def test_empty_index_exports_nothing(vcli):
    assert vcli("create", "empty", "--dimensions", "3", "--metric", "cosine").code == 0
    run = vcli("export", "empty")
    assert run.code == 0 and run.out == ""


def test_export_through_a_pipe(vcli_proc, golden):
    golden()
    assert vcli_proc("create", "copy", "--dimensions", "3", "--metric", "cosine").code == 0
    exported = vcli_proc("export", "golden")
    assert exported.code == 0 and exported.out.count("\n") == len(GOLDEN)
    assert vcli_proc("insert", "copy", "--file", "-", input=exported.out).code == 0
    ids = [i for i, _ in GOLDEN]
    assert vcli_proc("get-vectors", "copy", "--ids", *ids, "--json").json == \
        vcli_proc("get-vectors", "golden", "--ids", *ids, "--json").json


def test_large_exports_use_worker_processes_and_give_the_same_bytes(vcli, source):
    sequential = vcli("export", source, "--output", "one.ndjson")
    # workers at any size, one block per vector, in order
    parallel = vcli("export", source, tuning=Tuning(export_parallel_floats=1, export_block_rows=1))
    assert sequential.code == parallel.code == 0
    with open("one.ndjson") as f:
        assert parallel.out == f.read()
