"""Hostile input: any bytes, any argv, any filter end in success or a clean error; index names and
links never lead outside the data dir; SQL never carries a value in its text.

``VCLI_FUZZ_SCALE=N`` runs N times more examples per fuzz test (benchmarks/soak.py), with fresh
random seeds (CI runs a fixed, derandomized set).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from collections import Counter

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_crash import report

from vcli.engine import Catalog
from vcli.engine import store as store_mod
from vcli.engine.records import VectorLine
from vcli.engine.validate import quick_check
from vcli.errors import BadInput, VcliError
from vcli.ndjson import decode, parse_line, read_vectors

SCALE = int(os.environ.get("VCLI_FUZZ_SCALE", "1"))
RAN: Counter = Counter()  # examples run per fuzz test, reported at the end of the module


@pytest.fixture(autouse=True, scope="module")
def _report_examples():
    yield
    report("fuzz examples", dict(RAN, total=sum(RAN.values())))


def fuzz(examples: int):
    return settings(max_examples=examples * SCALE, deadline=None, derandomize="VCLI_FUZZ_SCALE" not in os.environ,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
DIMS = 3

# -- NDJSON ----------------------------------------------------------------------------------
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=80),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=30,
)
records = st.dictionaries(
    st.sampled_from(["id", "values", "metadata", "namespace", "vector", "", "ID"]) | st.text(max_size=5),
    json_values | st.lists(st.floats(allow_nan=False, allow_infinity=False, width=32), min_size=DIMS,
                           max_size=DIMS),
    max_size=5,
)
VALID = b'{"id": "a", "values": [1, 2.5, -3e-4], "metadata": {"k": "v", "n": {"x": [1, true]}}, "namespace": "ns"}'


def parsed(raw: bytes):
    try:
        return parse_line(raw, 7, DIMS)
    except BadInput as exc:
        assert exc.line == 7 and exc.message.startswith("line 7")
        return exc


@fuzz(300)
@given(st.binary(max_size=300))
def test_any_bytes_give_a_vector_or_bad_input(raw):
    RAN["any_bytes_give_a_vector_or_bad_input"] += 1
    assert isinstance(parsed(raw), (VectorLine, BadInput))


@fuzz(80)
@given(records)
def test_any_json_object_gives_a_vector_or_bad_input(rec):
    RAN["any_json_object_gives_a_vector_or_bad_input"] += 1
    out = parsed(json.dumps(rec).encode())  # (orjson refuses integers past 64 bits)
    assert isinstance(out, (VectorLine, BadInput))
    if isinstance(out, VectorLine):  # then it really is a valid vector, stored exactly
        assert set(rec) <= {"id", "values", "metadata", "namespace"}
        assert np.frombuffer(out.blob, "<f4").tolist() == np.asarray(rec["values"], np.float32).tolist()


@fuzz(200)
@given(st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.binary(max_size=3)), max_size=4))
def test_mutated_valid_lines(edits):
    RAN["mutated_valid_lines"] += 1
    raw = bytearray(VALID)
    for pos, repl in edits:
        raw[pos : pos + 1] = repl
    assert isinstance(parsed(bytes(raw)), (VectorLine, BadInput))


@fuzz(150)
@given(st.lists(st.binary(max_size=60) | st.just(VALID) | st.just(b"\n") | st.just(b"   \r\n"), max_size=8))
def test_any_stream_reads_or_stops_at_a_numbered_line(chunks):
    RAN["any_stream_reads_or_stops_at_a_numbered_line"] += 1
    stream = b"\n".join(chunks).splitlines(keepends=True)
    try:
        for v in read_vectors(iter(stream), DIMS):
            assert isinstance(v, VectorLine)
    except BadInput as exc:
        assert exc.line is not None and 1 <= exc.line <= len(stream)


@pytest.mark.parametrize("raw", [
    b'{"id": "x", "values": [1, 2, 3], "metadata": ' + b'{"a": ' * 600 + b"1" + b"}" * 601,
    b'{"id": "x", "values": [1, 2, 3], "metadata": {"a": ' + b"[" * 600 + b"]" * 600 + b"}}",
    b'{"id": "x", "values": [1, 2, 3], "metadata": ' + b'{"a": ' * 2000 + b"1" + b"}" * 2001,
    b'{"id": "x", "values": [1e400, 2, 3]}',
    b'{"id": "x", "values": [123456789012345678901234567890123, 2, 3]}',
    b'{"id": "\\ud800", "values": [1, 2, 3]}',
    b'{"id": "x", "values": [1, 2, 3], "id": 5}',
    b"\xef\xbb\xbf" + VALID,
    b'{"id": "x", "values": [1, 2, 3]}\x00',
    b"[" * 100_000,
])
def test_nasty_lines(raw):
    assert isinstance(parsed(raw), (VectorLine, BadInput))


# -- quick_check: parse_line's shortcut gives the same vector, or leaves the line to it --------
def outcome(read):
    """What reading a line gives: the vector, or the error as a user or a client sees it."""
    try:
        return read()
    except BadInput as exc:
        return type(exc).__name__, exc.message, exc.line, exc.vector_id, exc.service_message, exc.code


def assert_read_alike(raw: bytes, dims: int = DIMS):
    """``quick_check`` gives parse_line's vector or None, and reading the line in a stream gives
    what parse_line gives; returns that and the shortcut's answer."""
    want = outcome(lambda: parse_line(raw, 1, dims))
    quick = quick_check(dims)(raw, 1, decode(raw))
    assert quick is None or quick == want
    assert outcome(lambda: list(read_vectors([raw], dims))) == ([want] if isinstance(want, VectorLine) else want)
    return want, quick


# Values as a load's lines hold them, some with a thing that makes parse_line refuse them: a
# boolean (which struct would pack as 1 or 0), an integer past float32 or past 64 bits, text, null;
# or a value too many or too few.
number = st.floats(allow_nan=False, allow_infinity=False, width=32) | st.sampled_from([0, 1, 0.0, 1.0, -0.0, 2**64])
spoiler = (st.booleans() | st.integers(-(2**70), 2**70) | st.sampled_from([3.4028235e38, 3.4028236e38, 1e39, -1e39])
           | st.none() | st.sampled_from(["1.5", "true", [1.0]]))


def spoilt(values_and_spoiler):
    values, spoil = values_and_spoiler
    if spoil is not None:
        at, what = spoil
        values[at % len(values):at % len(values) + 1] = [] if what == "drop" else [what]
    return values


values = st.tuples(st.lists(number, min_size=DIMS, max_size=DIMS),
                   st.none() | st.tuples(st.integers(0, DIMS), spoiler | st.just("drop"))).map(spoilt)
loads = st.fixed_dictionaries(
    {"id": st.sampled_from(["a", "doc-0000001"]) | st.text(max_size=20) | st.sampled_from(["é" * 16, "é" * 33, 7]),
     "values": values},
    optional={"metadata": st.sampled_from([{"t": "true"}, {"ok": True, "no": False}, {"n": 1}]) | json_values
              | st.dictionaries(st.sampled_from(["k", "a.b", "$x", "", "true"]), json_values),
              "namespace": st.sampled_from(["ns", "", "n" * 65]) | json_values,
              "extra": json_values},
)


@fuzz(300)
@given(loads, st.booleans())
def test_quick_check_reads_any_line_as_parse_line_does(rec, spaced):
    RAN["quick_check_reads_any_line_as_parse_line_does"] += 1
    assert_read_alike(json.dumps(rec, separators=None if spaced else (",", ":")).encode())


@fuzz(100)
@given(st.binary(min_size=1, max_size=200).filter(lambda raw: not raw.isspace()))
def test_quick_check_reads_any_bytes_as_parse_line_does(raw):
    RAN["quick_check_reads_any_bytes_as_parse_line_does"] += 1
    assert_read_alike(raw)


@pytest.mark.parametrize("raw, reads, quick", [
    (b'{"id": "a", "values": [1, 0, 0.5]}', True, True),
    (b'{"id":"a","values":[1,0,0.5],"metadata":{"ok":true,"no":false},"namespace":"n"}', True, False),
    (b'{"id": "a", "values": [true, 0, 0.5]}', False, False),
    (b'{"id": "a", "values": [1, false, 0.5], "metadata": {"t": "true"}}', False, False),
    (b'{"id": "a", "values": [0.25, 2, 3], "metadata": {"t": true}}', True, True),
    (b'{"id": "a", "values": [1, 2, 3.4028236e38]}', False, False),
    (b'{"id": "a", "values": [1, 2, 3.4028235e38]}', True, True),
    (b'{"id": "a", "values": [1, 2, 18446744073709551615]}', True, True),
    (b'{"id": "a", "values": [1, 2, 3], "namespace": null, "metadata": null}', True, True),
    (b'{"id": "a", "values": [1, 2, 3], "namespace": 5}', False, False),
    (b'{"id": "a", "values": [1, "2", 3]}', False, False),
    (b'{"id": "a", "values": [1, 2, 3]', False, False),
    (b'{"id": "a", "values": [1, 2, 3], "text": "t"}', False, False),
])
def test_quick_check_cases(raw, reads, quick):
    want, got = assert_read_alike(raw)
    assert isinstance(want, VectorLine) == reads and (got is not None) == quick


def test_orjson_gives_no_infinity():
    """quick_check's premise: a JSON number past the double range is refused, never infinity,
    so a value packs as float32 or struct refuses it (past float32), as parse_line does."""
    for raw in (b"1e400", b"-1e400", b"[1e309]"):
        with pytest.raises(orjson.JSONDecodeError):
            orjson.loads(raw)


# -- the command line ------------------------------------------------------------------------
COMMANDS = ["create", "delete", "get", "list", "list-vectors", "query", "insert", "upsert", "get-vectors",
            "delete-vectors", "info", "create-metadata-index", "list-metadata-index",
            "delete-metadata-index", "check", "export", "config"]
FLAGS = ["--dimensions", "--metric", "--preset", "--description", "--json", "--force", "-y", "--file",
         "--batch-size", "--batchSize", "--vector", "--vector-id", "--vectorId", "--top-k", "--topK",
         "--return-values", "--return-metadata", "--returnMetadata", "--namespace", "--filter", "--ids",
         "--count", "--cursor", "--property-name", "--propertyName", "--type", "--repair", "--help",
         "-h", "--version", "--unknown", "--", "-"]
VALUES = ["fz", "nope", "../fz", "/etc", "A", "a/b", "", "x" * 70, "fz\x00", "1", "-1", "0", "3", "-0.5",
          "1e309", "nan", "inf", "5000", "5001", "100", "101", "cosine", "euclidean", "dot-product",
          "bogus", "string", "number", "boolean", "none", "indexed", "all", "@cf/baai/bge-small-en-v1.5",
          '{"k": "v"}', '{"k": {"$in": []}}', '{"k": {"$gte": 1, "$lt": "z"}}', "{", "[1, 2, 3]",
          "[1, 2]", '{"$eq": 1}', "good.ndjson", "bad.ndjson", "missing.ndjson", "folder", "k", "a.b",
          "'; DROP TABLE vectors; --", "é", "\u202e", "--1", "1 2 3"]
argv = st.lists(st.sampled_from(COMMANDS) | st.sampled_from(FLAGS) | st.sampled_from(VALUES)
                | st.text(max_size=8), max_size=10)


@pytest.fixture
def fuzz_dir(data_dir, tmp_path):
    (tmp_path / "good.ndjson").write_text('{"id": "g", "values": [1, 2, 3], "metadata": {"k": "v"}}\n')
    (tmp_path / "bad.ndjson").write_text('{"id": "g", "values": [1, 2]}\n')
    (tmp_path / "folder").mkdir()

    def ensure():
        cat = Catalog(data_dir)
        if not (data_dir / "fz").exists():
            cat.create("fz", DIMS, "cosine")
            with cat.open("fz", write=True) as ix:
                ix.create_metadata_index("k", "string")
                ix.insert([{"id": f"v{i}", "values": [i, 1.5, -i], "metadata": {"k": "v"}} for i in range(5)])

    return ensure


@fuzz(40)
@given(st.sampled_from(COMMANDS), argv)
def test_any_command_line_ends_cleanly(vcli, fuzz_dir, command, args):
    RAN["any_command_line_ends_cleanly"] += 1
    fuzz_dir()
    if command in ("insert", "upsert") and "--file" not in args:
        args = [*args, "--file", "good.ndjson"]
    res = vcli(command, *args, input="")
    assert res.code in (0, 1, 2, 3), (command, args, res.code, res.err)
    assert "Traceback" not in res.out + res.err
    if res.code == 1:
        assert res.err.startswith("Error: ") or res.err.startswith("Note: "), (command, args, res.err)
        assert "unexpected" not in res.err, (command, args, res.err)


# -- filters ---------------------------------------------------------------------------------
def test_filter_parser_is_there():
    """The filter fuzzing below needs vcli/engine/filters.py (issue 3)."""
    pytest.importorskip("vcli.engine.filters")


filter_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=70),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["$eq", "$ne", "$in", "$nin", "$lt", "$lte", "$gt", "$gte", "$bogus", "k", "a.b"])
        | st.text(max_size=6), inner, max_size=4),
    max_leaves=20,
)
filters_st = st.dictionaries(st.sampled_from(["k", "n", "b", "a.b", "", "$k", 'q"']) | st.text(max_size=6),
                             filter_values, max_size=4) | filter_values


@fuzz(120)
@given(filters_st)
def test_any_filter_parses_or_says_why(obj):
    RAN["any_filter_parses_or_says_why"] += 1
    filters = pytest.importorskip("vcli.engine.filters")
    try:
        filters.parse(obj)
    except VcliError as exc:
        assert exc.message


@fuzz(25)
@given(filters_st)
def test_any_filter_queries_or_fails_cleanly(vcli, fuzz_dir, obj):
    RAN["any_filter_queries_or_fails_cleanly"] += 1
    pytest.importorskip("vcli.engine.filters")
    fuzz_dir()
    res = vcli("query", "fz", "--vector", "1", "2", "3", "--filter", json.dumps(obj), "--json")
    assert res.code in (0, 1), res.err
    assert "Traceback" not in res.err and "unexpected" not in res.err
    if res.code == 0:
        assert res.json["count"] == len(res.json["matches"])


# -- names and links -------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["..", "../x", "/tmp/x", "a/b", ".", "a/../b", "x\x00", "~", "A", "", "-a",
                                  "a" * 65, "é", "a b", ".hidden"])
def test_index_names_never_reach_outside(vcli, data_dir, tmp_path, name):
    before = sorted(p.name for p in tmp_path.iterdir())
    for args in (("create", name, "--dimensions", "3", "--metric", "cosine"), ("info", name),
                 ("delete", name, "-y"), ("insert", name, "--file", "-"), ("check", name, "--repair")):
        res = vcli(*args, input=VALID.decode())
        assert res.code in (1, 2), (args, res)
        assert "Traceback" not in res.err
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert not data_dir.exists() or list(data_dir.iterdir()) == []


def test_symlinks_in_the_data_dir_are_refused(vcli, data_dir, tmp_path):
    outside = tmp_path / "outside"
    Catalog(outside).create("real", DIMS, "cosine")
    with Catalog(outside).open("real", write=True) as ix:
        ix.insert([{"id": "keep", "values": [1, 2, 3]}])
    snapshot = {p.name: p.read_bytes() for p in (outside / "real").iterdir()}
    data_dir.mkdir()
    (data_dir / "evil").symlink_to(outside / "real")
    (data_dir / "dangling").symlink_to(tmp_path / "nowhere")
    for args in (("info", "evil"), ("get", "evil"), ("query", "evil", "--vector", "1", "2", "3"),
                 ("get-vectors", "evil", "--ids", "keep"), ("insert", "evil", "--file", "-"),
                 ("delete-vectors", "evil", "--ids", "keep"), ("delete", "evil", "-y"),
                 ("create", "evil", "--dimensions", "3", "--metric", "cosine"), ("check", "evil", "--repair"),
                 ("create", "dangling", "--dimensions", "3", "--metric", "cosine"), ("export", "evil")):
        res = vcli(*args, input=VALID.decode())
        assert res.code == 1, args
        assert res.err.startswith("Error: ") and res.err.count("\n") == 1, (args, res.err)
        assert "link" in res.err or "not found" in res.err, (args, res.err)
    assert vcli("list", "--json").json == []
    assert {p.name: p.read_bytes() for p in (outside / "real").iterdir()} == snapshot
    assert not (tmp_path / "nowhere").exists()


@pytest.mark.parametrize("part", ["store.sqlite", "lock", "index.toml"])
def test_links_inside_an_index_are_refused(vcli, data_dir, tmp_path, part):
    Catalog(data_dir).create("idx", DIMS, "cosine")
    target = tmp_path / f"elsewhere-{part}"
    shutil.copy(data_dir / "idx" / part, target) if (data_dir / "idx" / part).exists() else target.write_bytes(b"")
    (data_dir / "idx" / part).unlink(missing_ok=True)
    (data_dir / "idx" / part).symlink_to(target)
    before = target.read_bytes()
    res = vcli("insert", "idx", "--file", "-", input=VALID.decode())
    assert res.code == 1 and "symbolic link" in res.err and res.err.count("\n") == 1
    assert target.read_bytes() == before


# -- SQL takes values as parameters -----------------------------------------------------------
MARK = "ZQX"
HOSTILE = [f"{MARK}'; DROP TABLE vectors; --", f'{MARK}" OR 1=1 --', f"{MARK}\\'", f"{MARK}%_*",
           f"{MARK}) UNION SELECT * FROM settings --", f"{MARK}\u2019\u02bc", f"{MARK}?:1"]


def key_safe(text: str) -> str:
    """``text`` as a metadata key (no "." or '"', not starting with "$")."""
    return text.replace(".", "").replace('"', "").lstrip("$")


class Recorder:
    """A sqlite3 connection that remembers the text of every statement."""

    def __init__(self, conn, seen):
        self._conn, self._seen = conn, seen

    def __getattr__(self, name):
        return getattr(self._conn, name)

    def execute(self, sql, *args):
        self._seen.append(sql)
        return self._conn.execute(sql, *args)

    def executemany(self, sql, *args):
        self._seen.append(sql)
        return self._conn.executemany(sql, *args)

    def executescript(self, sql):
        self._seen.append(sql)
        return self._conn.executescript(sql)

    def __enter__(self):
        return self._conn.__enter__()

    def __exit__(self, *exc):
        return self._conn.__exit__(*exc)


def test_values_never_enter_sql_text(vcli, data_dir, monkeypatch, tmp_path):
    seen: list[str] = []
    real_init = store_mod.Store.__init__

    def recording_init(self, conn, path):
        real_init(self, Recorder(conn, seen), path)

    monkeypatch.setattr(store_mod.Store, "__init__", recording_init)
    assert vcli("create", "sql", "--dimensions", "3", "--metric", "euclidean").code == 0
    props = [f"p{i}{key_safe(h)}" for i, h in enumerate(HOSTILE[:3])]
    for p in props:
        res = vcli("create-metadata-index", "sql", "--property-name", p, "--type", "string")
        assert res.code == 0, res.err
    recs = [{"id": h, "values": [i, 1, 2], "namespace": HOSTILE[-1 - i],
             "metadata": {props[0]: h, props[1]: HOSTILE[0], "free": {key_safe(h): h}}} for i, h in enumerate(HOSTILE)]
    src = tmp_path / "h.ndjson"
    src.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in recs))
    assert vcli("upsert", "sql", "--file", src).code == 0
    assert vcli("insert", "sql", "--file", src).code == 0
    got = vcli("get-vectors", "sql", "--ids", *HOSTILE, "--json")
    assert got.code == 0
    assert {v["id"]: (v["namespace"], v["metadata"]) for v in got.json} == {
        r["id"]: (r["namespace"], r["metadata"]) for r in recs}
    for r in recs:
        q = vcli("query", "sql", "--vector", "0", "1", "2", "--namespace", r["namespace"], "--filter",
                 orjson.dumps({props[0]: r["id"]}).decode(), "--return-metadata", "all", "--json")
        assert q.code == 0, q.err
        assert [m["id"] for m in q.json["matches"]] == [r["id"]]
    q = vcli("query", "sql", "--vector-id", HOSTILE[2], "--top-k", "3", "--json")
    assert q.code == 0 and q.json["matches"][0]["id"] == HOSTILE[2]
    page = vcli("list-vectors", "sql", "--count", "2", "--json").json
    assert vcli("list-vectors", "sql", "--cursor", page["nextCursor"], "--json").code == 0
    assert vcli("export", "sql").code == 0
    assert vcli("delete-vectors", "sql", "--ids", HOSTILE[0], HOSTILE[1]).code == 0
    assert vcli("delete-metadata-index", "sql", "--property-name", props[2]).code == 0
    assert vcli("check", "sql").code == 0
    assert vcli("info", "sql", "--json").json["vectorCount"] == len(HOSTILE) - 2
    assert len(seen) > 50
    leaked = [s for s in seen if MARK in s]
    assert leaked == [], leaked[:3]
    with sqlite3.connect(data_dir / "sql" / "store.sqlite") as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"vectors", "mutations", "settings", "removed"} <= tables
