"""``vcli query NAME --file PATH|-``: one NDJSON query a line in, one compact JSON result a line out,
in order; a bad line is an ``Error:`` naming its line, after the answers to the lines before it."""

from __future__ import annotations

import os
import select
import subprocess

import orjson
import pytest
from helpers import GOLDEN_QUERY, ndjson, vcli_executable


def answers(run) -> list[dict]:
    return [orjson.loads(line) for line in run.out.splitlines()]


def test_one_result_line_per_query_line_in_order(vcli, golden, tmp_path):
    golden()
    queries = tmp_path / "q.ndjson"
    queries.write_text(ndjson([
        {"vector": GOLDEN_QUERY, "topK": 3},
        {"vectorId": "1", "topK": 1},
        {"vector": [0.16, 1.2, 3.8], "topK": 2, "returnValues": True, "returnMetadata": "all"},
    ]) + "\n   \n")  # blank lines are skipped
    run = vcli("query", "golden", "--file", queries)
    assert run.code == 0, run.err
    assert run.out.count("\n") == 3 and "  " not in run.out  # compact, one line each
    first, second, third = answers(run)
    assert [m["id"] for m in first["matches"]] == ["5", "4", "2"]
    assert [m["score"] for m in first["matches"]] == pytest.approx([0.999909, 0.789848, 0.611976], abs=1e-6)
    assert first["count"] == 3
    assert second == {"count": 1, "matches": [{"id": "1", "score": pytest.approx(1.0)}]}
    assert third["matches"][0] == {"id": "3", "score": pytest.approx(1.0), "values": [0.16, 1.2, 3.8],
                                   "metadata": {}}


def test_answers_equal_one_shot_queries(vcli, golden):
    golden("euclidean")
    lines = [{"vector": [float(i), 2.5, -1.0], "topK": 4} for i in range(0, 80, 25)]
    run = vcli("query", "golden", "--file", "-", input=ndjson(lines))
    assert run.code == 0, run.err
    for line, got in zip(lines, answers(run), strict=True):
        one = vcli("query", "golden", "--vector", orjson.dumps(line["vector"]).decode(), "--top-k", "4", "--json")
        assert got == one.json


def test_flags_are_defaults_for_lines_that_leave_options_out(vcli, golden):
    golden()
    run = vcli("query", "golden", "--file", "-", "--top-k", "2", "--return-values",
               input=ndjson([{"vector": GOLDEN_QUERY}, {"vector": GOLDEN_QUERY, "topK": 1, "returnValues": False}]))
    assert run.code == 0, run.err
    first, second = answers(run)
    assert [m["id"] for m in first["matches"]] == ["5", "4"] and first["matches"][0]["values"] == [58.8, 6.7, 3.4]
    assert second["matches"] == [{"id": "5", "score": pytest.approx(0.999909, abs=1e-6)}]


def test_namespace_on_a_line(vcli, tmp_path):
    assert vcli("create", "ns", "--dimensions", "2", "--metric", "euclidean").code == 0
    rows = [{"id": f"v{i}", "values": [float(i), 0.0], **({"namespace": "odd"} if i % 2 else {})} for i in range(10)]
    assert vcli("insert", "ns", "--file", "-", input=ndjson(rows)).code == 0
    run = vcli("query", "ns", "--file", "-", input=ndjson([
        {"vector": [4.0, 0.0], "topK": 3, "namespace": "odd"}, {"vector": [4.0, 0.0], "topK": 3}]))
    assert run.code == 0, run.err
    odd, every = answers(run)
    assert [m["id"] for m in odd["matches"]] == ["v3", "v5", "v1"]
    assert all(m["namespace"] == "odd" for m in odd["matches"])
    assert [m["id"] for m in every["matches"]] == ["v4", "v3", "v5"]


BAD_LINES = [
    ("{not json", "line 3: not valid JSON"),
    ('{"vector": [1, 2, 3], "top_k": 2}', 'line 3: unknown field "top_k"'),
    ('{"topK": 2}', 'line 3: give either "vector" or "vectorId"'),
    ('{"vector": [1, 2]}', "line 3: invalid query vector, expected 3 dimensions"),
    ('{"vectorId": "nope"}', 'line 3: vector id "nope" not found'),
    ('{"vector": [1, 2, 3], "topK": 101}', "line 3: top-k must be between 1 and 100"),
    ('{"vector": [1, 2, 3], "topK": 60, "returnValues": true}', "line 3: max top K is 50"),
    ('{"vector": [1, 2, 3], "filter": null}', 'line 3: "filter" must be a JSON object'),
    ('{"vector": [1, 2, 3], "filter": {"genre": "drama"}}', "line 3: "),  # no metadata index
    ("[1, 2, 3]", "line 3: expected a JSON object"),
]


def test_a_bad_line_stops_with_its_line_number(vcli, golden):
    golden()
    good = orjson.dumps({"vector": GOLDEN_QUERY, "topK": 1}).decode()
    for bad, message in BAD_LINES:
        run = vcli("query", "golden", "--file", "-", input=f"{good}\n\n{bad}\n{good}\n")
        assert run.code == 1, bad
        assert run.err.startswith(f"Error: {message}") and run.err.count("\n") == 1, (bad, run.err)
        assert "Traceback" not in run.err
        assert [a["matches"][0]["id"] for a in answers(run)] == ["5"]  # the line before it was answered


def test_file_problems(vcli, golden, tmp_path):
    golden()
    missing = vcli("query", "golden", "--file", tmp_path / "nope.ndjson")
    assert missing.code == 1 and missing.err.startswith("Error: cannot read")
    both = vcli("query", "golden", "--file", "-", "--vector", "1", "2", "3", input="")
    assert both.code == 1 and both.err.startswith("Error: give either --file or --vector")
    empty = vcli("query", "golden", "--file", "-", input="")
    assert empty.code == 0 and empty.out == ""
    unknown = vcli("query", "nope", "--file", "-", input="")
    assert unknown.code == 1 and unknown.err == 'Error: index "nope" not found\n'


def test_answers_arrive_while_the_input_is_still_open(vcli, golden):
    """A program can send a query on a pipe and read its answer before sending the next."""
    golden()
    proc = subprocess.Popen([vcli_executable(), "query", "golden", "--file", "-"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(os.environ))
    try:
        for expected in ("5", "1"):
            vector = GOLDEN_QUERY if expected == "5" else [32.4, 74.1, 3.2]
            proc.stdin.write(orjson.dumps({"vector": vector, "topK": 1}) + b"\n")
            proc.stdin.flush()
            ready, _, _ = select.select([proc.stdout], [], [], 60)
            assert ready, "no answer while the input stayed open"
            assert orjson.loads(proc.stdout.readline())["matches"][0]["id"] == expected
        proc.stdin.close()
        assert proc.wait(60) == 0
    finally:
        proc.kill()
        proc.wait()
