"""The core commands, end to end through the CLI (docs/contract.md: commands, input, queries, writes, errors)."""

from __future__ import annotations

import pytest
from helpers import GOLDEN, GOLDEN_QUERY, exact_order, ndjson

from vcli.engine.presets import PRESETS


def numpy_answer(metric: str, top_k: int):
    """Scores from float32-stored vectors, computed independently in float64."""
    return exact_order(dict(GOLDEN), GOLDEN_QUERY, metric)[:top_k]


def test_golden_case_through_the_installed_cli(vcli_proc, tmp_path):
    assert vcli_proc("create", "golden", "--dimensions", "3", "--metric", "cosine").code == 0
    src = tmp_path / "v.ndjson"
    src.write_text(ndjson({"id": i, "values": v} for i, v in GOLDEN))
    ins = vcli_proc("insert", "golden", "--file", src, "--json")
    assert ins.code == 0, ins.err
    assert ins.json == {"index": "golden", "count": 5}
    res = vcli_proc("query", "golden", "--vector", "54.8", "5.5", "3.1", "--top-k", "3", "--json")
    assert res.code == 0, res.err
    got = res.json
    assert got["count"] == 3
    assert [m["id"] for m in got["matches"]] == ["5", "4", "2"]
    for m, want in zip(got["matches"], [0.999909, 0.789848, 0.611976], strict=True):
        assert m["score"] == pytest.approx(want, abs=1e-6)
        assert set(m) == {"id", "score"}


@pytest.mark.parametrize("metric", ["cosine", "euclidean", "dot-product"])
def test_scores_match_numpy_for_every_metric(vcli, golden, metric):
    golden(metric)
    res = vcli("query", "golden", "--vector", *map(str, GOLDEN_QUERY), "--top-k", "5", "--json")
    assert res.code == 0, res.err
    got = [(m["id"], m["score"]) for m in res.json["matches"]]
    want = numpy_answer(metric, 5)
    assert [g[0] for g in got] == [w[0] for w in want]
    for (_, g), (_, w) in zip(got, want, strict=True):
        assert g == pytest.approx(w, abs=1e-6)


def test_query_by_vector_id_includes_itself(vcli, golden):
    golden()
    res = vcli("query", "golden", "--vector-id", "5", "--top-k", "2", "--json")
    assert res.code == 0, res.err
    assert res.json["matches"][0]["id"] == "5"
    assert res.json["matches"][0]["score"] == pytest.approx(1.0, abs=1e-6)
    missing = vcli("query", "golden", "--vectorId", "nope")
    assert missing.code == 1 and "nope" in missing.err


def test_values_print_as_shortest_float32(vcli, golden):
    golden()
    res = vcli("query", "golden", "--vector", "54.8", "5.5", "3.1", "--top-k", "1", "--return-values", "--json")
    assert res.json["matches"][0]["values"] == [58.8, 6.7, 3.4]
    assert "58.8," in res.out and "58.79999" not in res.out
    got = vcli("get-vectors", "golden", "--ids", "1", "--json")
    assert got.json[0]["values"] == [32.4, 74.1, 3.2]


def test_insert_keeps_first_copy_and_upsert_replaces_whole(vcli, tmp_path):
    vcli("create", "idx", "--dimensions", "2", "--metric", "euclidean")
    first = tmp_path / "first.ndjson"
    first.write_text(ndjson([
        {"id": "a", "values": [1, 1], "metadata": {"v": 1}, "namespace": "n1"},
        {"id": "a", "values": [2, 2], "metadata": {"v": 2}},  # same file: first wins
        {"id": "b", "values": [3, 3]},
    ]))
    assert vcli("insert", "idx", "--file", first).code == 0
    again = tmp_path / "again.ndjson"
    again.write_text(ndjson([{"id": "a", "values": [9, 9]}]))
    assert vcli("insert", "idx", "--file", again, "--json").json == {"index": "idx", "count": 1}
    vec = vcli("get-vectors", "idx", "--ids", "a", "--json").json
    assert vec == [{"id": "a", "values": [1.0, 1.0], "namespace": "n1", "metadata": {"v": 1}}]

    up = tmp_path / "up.ndjson"
    up.write_text(ndjson([
        {"id": "a", "values": [5, 5], "metadata": {"w": 1}},
        {"id": "a", "values": [6, 6]},  # same file: last wins, replacing metadata and namespace
    ]))
    assert vcli("upsert", "idx", "--file", up).code == 0
    vec = vcli("get-vectors", "idx", "--ids", "a", "b", "zzz", "--json").json
    assert vec == [
        {"id": "a", "values": [6.0, 6.0], "namespace": None, "metadata": None},
        {"id": "b", "values": [3.0, 3.0], "namespace": None, "metadata": None},
    ]
    assert vcli("info", "idx", "--json").json["vectorCount"] == 2
    res = vcli("query", "idx", "--vector", "6", "6", "--top-k", "1", "--json")
    assert res.json["matches"][0] == {"id": "a", "score": 0.0}


def test_delete_vectors_and_missing_ids(vcli, golden):
    golden()
    res = vcli("delete-vectors", "golden", "--ids", "1", "missing", "--json")
    assert res.code == 0, res.err
    assert res.json["count"] == 2 and len(res.json["mutationId"]) == 36
    info = vcli("info", "golden", "--json").json
    assert info["vectorCount"] == 4
    assert info["processedUpToMutation"] == res.json["mutationId"]
    assert vcli("get-vectors", "golden", "--ids", "1", "--json").json == []
    ids = [m["id"] for m in vcli("query", "golden", "--vector", "32.4", "74.1", "3.2", "--json").json["matches"]]
    assert "1" not in ids and len(ids) == 4


def test_list_vectors_pages_through_every_id_in_order(vcli, tmp_path):
    vcli("create", "many", "--dimensions", "2", "--metric", "cosine")
    ids = [f"id-{i:05d}" for i in range(2500)]
    src = tmp_path / "many.ndjson"
    src.write_text(ndjson({"id": i, "values": [1.0, float(n)]} for n, i in enumerate(reversed(ids))))
    assert vcli("insert", "many", "--file", src).code == 0
    seen, cursor, pages = [], None, 0
    while True:
        args = ["list-vectors", "many", "--count", "1000", "--json"]
        if cursor:
            args += ["--cursor", cursor]
        page = vcli(*args).json
        pages += 1
        assert page["totalCount"] == 2500
        assert page["count"] == len(page["vectors"])
        seen += [v["id"] for v in page["vectors"]]
        if not page["isTruncated"]:
            assert page["nextCursor"] is None and page["cursorExpirationTimestamp"] is None
            break
        cursor = page["nextCursor"]
        assert page["cursorExpirationTimestamp"]
    assert pages == 3
    assert seen == sorted(ids)


def test_list_vectors_orders_by_bytes(vcli, tmp_path):
    vcli("create", "b", "--dimensions", "1", "--metric", "euclidean")
    ids = ["b", "B", "é", "a", "Z", "~", "10", "9"]
    src = tmp_path / "b.ndjson"
    src.write_text(ndjson({"id": i, "values": [1]} for i in ids))
    vcli("insert", "b", "--file", src)
    got = [v["id"] for v in vcli("list-vectors", "b", "--json").json["vectors"]]
    assert got == sorted(ids, key=lambda s: s.encode())


@pytest.mark.parametrize("channel", ["file", "stdin"])
def test_input_from_file_or_stdin(vcli, tmp_path, channel):
    vcli("create", "io", "--dimensions", "3", "--metric", "cosine")
    text = ndjson({"id": i, "values": v} for i, v in GOLDEN)
    if channel == "file":
        path = tmp_path / "in.ndjson"
        path.write_text(text)
        res = vcli("upsert", "io", "--file", path, "--json")
    else:
        res = vcli("upsert", "io", "--file", "-", "--json", input=text)
    assert res.code == 0, res.err
    assert res.json == {"index": "io", "count": 5}


def test_index_lifecycle_and_json_shapes(vcli):
    assert vcli("list", "--json").json == []
    made = vcli("create", "docs", "--dimensions", "8", "--metric", "dot-product", "--description", "my docs", "--json")
    assert made.code == 0, made.err
    obj = made.json
    assert list(obj) == ["created_on", "modified_on", "name", "description", "config"]
    assert obj["name"] == "docs" and obj["description"] == "my docs"
    assert obj["config"] == {"dimensions": 8, "metric": "dot-product"}
    assert obj["created_on"].endswith("Z")
    assert vcli("get", "docs", "--json").json == obj
    assert vcli("list", "--json").json == [obj]
    assert vcli("info", "docs", "--json").json == {
        "vectorCount": 0, "dimensions": 8, "processedUpToDatetime": None, "processedUpToMutation": None,
    }
    dup = vcli("create", "docs", "--dimensions", "8", "--metric", "cosine")
    assert dup.code == 1 and dup.err == 'Error: index "docs" already exists\n'
    assert vcli("delete", "docs", "--force", "--json").json == {"deleted": "docs"}
    gone = vcli("get", "docs", "--json")
    assert gone.code == 1 and gone.out == "" and gone.err == 'Error: index "docs" not found\n'


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset(vcli, preset):
    res = vcli("create", "p", "--preset", preset, "--json")
    assert res.code == 0, res.err
    dims, metric = PRESETS[preset]
    assert res.json["config"] == {"dimensions": dims, "metric": metric}


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--dimensions", "3"], "--metric"),
        (["--metric", "cosine"], "--dimensions"),
        (["--dimensions", "0", "--metric", "cosine"], "between 1 and 1536"),
        (["--dimensions", "1537", "--metric", "cosine"], "between 1 and 1536"),
        (["--dimensions", "3", "--metric", "manhattan"], "manhattan"),
        (["--preset", "nope/model"], "nope/model"),
    ],
)
def test_create_refuses_bad_configuration(vcli, data_dir, args, needle):
    res = vcli("create", "bad", *args)
    assert res.code == 1 and needle in res.err and res.err.startswith("Error: ")
    assert not (data_dir / "bad").exists()


@pytest.mark.parametrize("name", ["../x", "A", "a/b", "-a", "a-", "x" * 65, "a b", "..", "/tmp/x"])
def test_bad_index_names_touch_nothing(vcli, data_dir, tmp_path, name):
    res = vcli("create", name, "--dimensions", "3", "--metric", "cosine")
    assert res.code in (1, 2), res.out
    assert "Traceback" not in res.err
    assert not list(tmp_path.glob("x")) and not (tmp_path / "data" / "a").exists()
    if data_dir.exists():
        assert [p.name for p in data_dir.iterdir() if not p.name.startswith(".")] == []
    assert vcli("query", name, "--vector", "1", "2", "3").code in (1, 2)


def test_flag_spellings_of_wrangler(vcli, golden, tmp_path):
    golden()
    res = vcli("query", "golden", "--vector", "54.8", "5.5", "3.1", "--topK", "2", "--returnValues",
               "--returnMetadata", "all", "--json")
    assert res.code == 0, res.err
    assert len(res.json["matches"]) == 2 and "values" in res.json["matches"][0]
    res = vcli("query", "golden", "--vector=54.8", "--vector=5.5", "--vector=3.1", "--top-k=1", "--json")
    assert [m["id"] for m in res.json["matches"]] == ["5"]
    src = tmp_path / "more.ndjson"
    src.write_text(ndjson({"id": f"x{i}", "values": [i, 1, 1]} for i in range(7)))
    assert vcli("insert", "golden", "--file", src, "--batchSize", "3", "--json").json["count"] == 7
    assert vcli("upsert", "golden", "--file", src, "--batch-size=2", "--json").json["count"] == 7


def test_vector_takes_negative_numbers_and_json_arrays(vcli, tmp_path):
    vcli("create", "neg", "--dimensions", "3", "--metric", "euclidean")
    src = tmp_path / "n.ndjson"
    src.write_text(ndjson([{"id": "n", "values": [-0.12, 0.5, -3e-4]}, {"id": "p", "values": [1, 1, 1]}]))
    vcli("insert", "neg", "--file", src)
    res = vcli("query", "neg", "--vector", "-0.12", "0.5", "-3e-4", "--top-k", "1", "--json")
    assert res.code == 0, res.err
    assert res.json["matches"] == [{"id": "n", "score": 0.0}]
    res = vcli("query", "neg", "--vector", "[-0.12, 0.5, -3e-4]", "--top-k", "1", "--json")
    assert res.json["matches"][0]["id"] == "n"
    bad = vcli("query", "neg", "--vector", "1", "abc", "2")
    assert bad.code == 1 and '"abc"' in bad.err
    assert vcli("query", "neg", "--vector", "1", "nan", "2").code == 1
    short = vcli("query", "neg", "--vector", "1", "2")
    assert short.code == 1 and "expected 3 dimensions, and got 2" in short.err
    both = vcli("query", "neg", "--vector", "1", "2", "3", "--vector-id", "n")
    assert both.code == 1 and "not both" in both.err


@pytest.mark.parametrize(
    "top_k, extra, needle",
    [
        ("0", [], "between 1 and 100"),
        ("101", [], "between 1 and 100"),
        ("51", ["--return-values"], "max top K is 50"),
        ("51", ["--return-metadata", "all"], "max top K is 50"),
    ],
)
def test_top_k_limits(vcli, golden, top_k, extra, needle):
    golden()
    res = vcli("query", "golden", "--vector", "1", "2", "3", "--top-k", top_k, *extra, "--json")
    assert res.code == 1 and needle in res.err and res.out == ""


def test_top_k_limits_allow_the_edges(vcli, golden):
    golden()
    assert vcli("query", "golden", "--vector", "1", "2", "3", "--top-k", "100", "--json").json["count"] == 5
    assert vcli("query", "golden", "--vector", "1", "2", "3", "--top-k", "50", "--return-values").code == 0
    assert vcli("query", "golden", "--vector", "1", "2", "3", "--top-k", "100", "--return-metadata", "indexed").code == 0


GOOD = '{"id": "ok", "values": [1, 2, 3]}'
BAD_LINES = [
    ("{not json", "line 2", "not valid JSON"),
    ('[{"id": "x", "values": [1, 2, 3]}]', "line 2", "expected a JSON object, got an array"),
    ('{"values": [1, 2, 3]}', "line 2", 'missing "id"'),
    ('{"id": 7, "values": [1, 2, 3]}', "line 2", '"id" must be a string'),
    ('{"id": "' + "é" * 33 + '", "values": [1, 2, 3]}', "line 2", "66 bytes"),
    ('{"id": "e", "values": []}', 'line 2, id "e"', "values is empty"),
    ('{"id": "d", "values": [1, 2]}', 'line 2, id "d"', "expected 3 dimensions, got 2"),
    ('{"id": "s", "values": [1, "2", 3]}', 'line 2, id "s"', "values[1] is a string"),
    ('{"id": "n", "values": [1, null, 3]}', 'line 2, id "n"', "values[1] is null"),
    ('{"id": "b", "values": [1, true, 3]}', 'line 2, id "b"', "values[1] is a boolean"),
    ('{"id": "nan", "values": [1, NaN, 3]}', "line 2", "not valid JSON"),
    ('{"id": "inf", "values": [1, Infinity, 3]}', "line 2", "not valid JSON"),
    ('{"id": "big", "values": [1, 1e39, 3]}', 'line 2, id "big"', "float32"),
    ('{"id": "m", "values": [1, 2, 3], "metadata": [1]}', 'line 2, id "m"', "metadata must be an object"),
    ('{"id": "m", "values": [1, 2, 3], "metadata": {"a.b": 1}}', 'line 2, id "m"', "a.b"),
    ('{"id": "m", "values": [1, 2, 3], "metadata": {"$a": 1}}', 'line 2, id "m"', "$a"),
    ('{"id": "h", "values": [1, 2, 3], "metadata": {"t": "' + "x" * 10240 + '"}}', 'line 2, id "h"', "10,240 bytes"),
    ('{"id": "ns", "values": [1, 2, 3], "namespace": 5}', 'line 2, id "ns"', "namespace must be a string"),
    ('{"id": "ns", "values": [1, 2, 3], "namespace": ""}', 'line 2, id "ns"', "namespace must be 1 to 64 bytes"),
    ('{"id": "ns", "values": [1, 2, 3], "namespace": "' + "n" * 65 + '"}', 'line 2, id "ns"', "got 65"),
    ('{"id": "u", "values": [1, 2, 3], "metdata": {}}', 'line 2, id "u"', 'unknown field "metdata"'),
]


@pytest.mark.parametrize("mode", ["insert", "upsert"])
@pytest.mark.parametrize("line, where, reason", BAD_LINES)
def test_bad_input_names_the_line_and_writes_nothing(vcli, golden, tmp_path, mode, line, where, reason):
    golden()
    before = (vcli("info", "golden", "--json").json, vcli("list-vectors", "golden", "--json").json["vectors"])
    src = tmp_path / "bad.ndjson"
    src.write_text(GOOD + "\n" + line + "\n" + GOOD.replace("ok", "ok2") + "\n")
    res = vcli(mode, "golden", "--file", src, "--json")
    assert res.code == 1
    assert res.out == ""
    assert res.err.startswith("Error: ") and res.err.count("\n") == 1
    assert where in res.err and reason in res.err
    after = (vcli("info", "golden", "--json").json, vcli("list-vectors", "golden", "--json").json["vectors"])
    assert after == before


def test_missing_and_empty_input(vcli, golden, tmp_path):
    golden()
    res = vcli("insert", "golden", "--file", tmp_path / "nope.ndjson")
    assert res.code == 1 and "nope.ndjson" in res.err
    empty = tmp_path / "empty.ndjson"
    empty.write_text("\n\n")
    res = vcli("insert", "golden", "--file", empty)
    assert res.code == 1 and "no vectors" in res.err
    assert vcli("info", "golden", "--json").json["vectorCount"] == 5
    assert vcli("insert", "golden").code == 2  # --file is required: usage error
    assert vcli("insert", "golden", "--file", empty, "--batch-size", "5001").code == 1


def test_unknown_index_errors(vcli):
    for args in (["info", "x"], ["get", "x"], ["delete", "x", "--force"], ["query", "x", "--vector", "1"],
                 ["get-vectors", "x", "--ids", "a"], ["delete-vectors", "x", "--ids", "a"],
                 ["list-vectors", "x"], ["insert", "x", "--file", "-"]):
        res = vcli(*args, input="")
        assert res.code == 1 and res.err == 'Error: index "x" not found\n', args


def test_bad_cursor_and_count(vcli, golden):
    golden()
    assert vcli("list-vectors", "golden", "--count", "0").code == 1
    assert vcli("list-vectors", "golden", "--count", "1001").code == 1
    res = vcli("list-vectors", "golden", "--cursor", "%%%")
    assert res.code == 1 and "cursor" in res.err


def test_human_output(vcli, golden):
    golden()
    out = vcli("query", "golden", "--vector", "54.8", "5.5", "3.1", "--top-k", "2").out
    assert "0.999909" in out and "0.789848" in out
    assert "golden" in vcli("list").out
    pages = vcli("list-vectors", "golden", "--count", "2").out
    assert "Showing 2 of 5 total vectors" in pages and "--cursor" in pages
    none = vcli("query", "golden", "--vector", "1", "2", "3", "--namespace", "nothing-here")
    assert none.code in (0, 1)


def test_no_matches_is_success(vcli):
    vcli("create", "empty", "--dimensions", "2", "--metric", "cosine")
    res = vcli("query", "empty", "--vector", "1", "2", "--json")
    assert res.code == 0 and res.json == {"count": 0, "matches": []}
    human = vcli("query", "empty", "--vector", "1", "2")
    assert human.code == 0 and "Could not find any relevant vectors" in human.err
