"""Loading an input of several write batches through ``validate.quick_check``'s shortcut
(docs/performance.md, "Reading the lines"): the same vectors as read line by line; a bad line
anywhere, in the middle of a batch too, is named by the same one error line, the first one if
there are several, and the index stays exactly as it was."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from vcli.engine import limits
from vcli.ndjson import parse_line, read_vectors

BATCH = limits.INSERT_BATCH_SIZE
N = 3 * BATCH + 7


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
        if i % 11 == 0:
            rec["values"][i % 3] = [0, 1, 1.0][i % 3]  # a 0 or a 1 beside true in the metadata
        out.append(rec)
    return out


def text(recs: list[dict]) -> bytes:
    return b"".join(orjson.dumps(r) + b"\n" for r in recs)


def test_a_file_reads_as_line_by_line(tmp_path):
    data = text(records()).replace(b'{"id":"v2100"', b'\n  \r\n{"id":"v2100"')  # blank lines count too
    path = tmp_path / "big.ndjson"
    path.write_bytes(data)
    want = [parse_line(raw, n, 3) for n, raw in enumerate(data.splitlines(keepends=True), 1) if raw.strip()]
    with open(path, "rb") as f:
        got = list(read_vectors(f, 3))
    assert got == want and len(got) == N and got[-1].line == N + 2


@pytest.mark.parametrize("channel", ["file", "stdin"])
def test_a_load_stores_every_vector_as_written(vcli_proc, tmp_path, channel):
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
    ("file", BATCH + BATCH // 2, "{not json", "not valid JSON"),
    ("file", 2 * BATCH + 3, '{"id": "d", "values": [1, 2]}', 'id "d": expected 3 dimensions, got 2'),
    ("stdin", 2 * BATCH + BATCH // 2, '{"id": "b", "values": [1, false, 3], "metadata": {"t": true}}',
     'id "b": values[1] is a boolean'),
    ("stdin", N, '{"id": "m", "values": [1, 2, 3], "metadata": {"a.b": 1}}', 'metadata key "a.b"'),
])
def test_a_bad_line_deep_in_a_load_is_named_and_writes_nothing(vcli_proc, tmp_path, channel, at, bad, reason):
    assert vcli_proc("create", "big", "--dimensions", "3", "--metric", "cosine").code == 0
    assert vcli_proc("insert", "big", "--file", "-", input=text(records(5))).code == 0
    before = (vcli_proc("info", "big", "--json").out, vcli_proc("export", "big").out)
    lines = text(records()).splitlines(keepends=True)
    lines[at - 1] = bad.encode() + b"\n"
    if at < N:
        lines[-1] = b'{"id": 5, "values": [1, 2, 3]}\n'  # a later error is never the one named
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
