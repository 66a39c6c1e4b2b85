"""Metadata indexes, filters and namespaces through the CLI (docs/contract.md, "Queries" and "Metadata filters").

Expected answers come from a plain reference evaluator (``reference_matches``) and brute-force
float64 scores, never from vcli itself.
"""

from __future__ import annotations

import re
import shlex

import numpy as np
import orjson
import pytest
from helpers import GOLDEN, GOLDEN_QUERY, exact_order, ndjson

from vcli.engine import Tuning

INDEXED_BYTES = 64


# == the reference: plain Python, written from docs/contract.md, "Metadata filters" ===============
def cut(text: str) -> str:
    """The longest prefix of whole characters that fits in 64 UTF-8 bytes."""
    out = ""
    for ch in text:
        if len((out + ch).encode()) > INDEXED_BYTES:
            break
        out += ch
    return out


def kind(value) -> str | None:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return None


def indexed_view(metadata: dict | None, indexes: dict[str, str]) -> dict:
    """What the metadata indexes hold for a vector written while ``indexes`` existed."""
    view = {}
    for prop, typ in indexes.items():
        node = metadata
        for part in prop.split("."):
            node = node.get(part, KeyError) if isinstance(node, dict) else KeyError
        if node is not KeyError and kind(node) == typ:
            view[prop] = cut(node) if typ == "string" else node
    return view


def _same(v, x) -> bool:
    if kind(v) != kind(x) or kind(x) is None:
        return False
    if kind(x) == "string":
        return v == cut(x)
    return v == x if kind(x) == "boolean" else float(v) == float(x)


def _compare(v, op: str, x) -> bool:
    if kind(v) != kind(x) or kind(x) not in ("string", "number"):
        return False
    if kind(x) == "string":
        x = cut(x)
    return {"$lt": v < x, "$lte": v <= x, "$gt": v > x, "$gte": v >= x}[op]


def reference_match(view: dict, flt: dict) -> bool:
    for prop, spec in flt.items():
        ops = spec if isinstance(spec, dict) else {"$eq": spec}
        present = prop in view
        v = view.get(prop)
        for op, x in ops.items():
            if op == "$eq":
                ok = present and _same(v, x)
            elif op == "$ne":
                ok = not (present and _same(v, x))
            elif op == "$in":
                ok = present and any(_same(v, y) for y in x)
            elif op == "$nin":
                ok = not (present and any(_same(v, y) for y in x))
            else:
                ok = present and _compare(v, op, x)
            if not ok:
                return False
    return True


def reference_matches(records, views: dict[str, dict], flt: dict | None, query, top_k: int,
                      namespace: str | None = None, metric: str = "cosine") -> list[tuple[str, float]]:
    keep = {
        r["id"]: r["values"] for r in records
        if (namespace is None or r.get("namespace") == namespace)
        and (flt is None or reference_match(views[r["id"]], flt))
    }
    return exact_order(keep, query, metric)[:top_k]


# == helpers ==================================================================================
def make_index(vcli, tmp_path, name, records, indexes: dict[str, str], dims: int, metric="cosine",
               before: list | None = None):
    """An index whose ``before`` records are written first, then the metadata indexes, then
    ``records`` (upserted)."""
    assert vcli("create", name, "--dimensions", dims, "--metric", metric).code == 0
    if before:
        path = tmp_path / f"{name}-before.ndjson"
        path.write_text(ndjson(before))
        assert vcli("upsert", name, "--file", path).code == 0
    for prop, typ in indexes.items():
        res = vcli("create-metadata-index", name, "--property-name", prop, "--type", typ, "--json")
        assert res.code == 0, res.err
    path = tmp_path / f"{name}.ndjson"
    path.write_text(ndjson(records))
    res = vcli("upsert", name, "--file", path)
    assert res.code == 0, res.err


def query(vcli, name, vector, *args):
    res = vcli("query", name, "--vector", *map(str, vector), *map(str, args), "--json")
    assert res.code == 0, res.err
    return res.json


def assert_same_answer(got: dict, expected: list[tuple[str, float]]) -> None:
    assert got["count"] == len(expected) == len(got["matches"])
    assert [m["id"] for m in got["matches"]] == [vid for vid, _ in expected]
    for match, (_vid, score) in zip(got["matches"], expected, strict=True):
        assert match["score"] == pytest.approx(score, abs=1e-6)


# == the catalogue data set: every kind of value an operator meets ============================
INDEXES = {"genre": "string", "price": "number", "ok": "boolean", "a.b": "number", "title": "string"}
LONG = "x" * 63 + "é" + "tail"  # the 64-byte cut falls inside "é"


def catalogue() -> list[dict]:
    rng = np.random.default_rng(7)
    metas = [
        {"genre": "drama", "price": 10, "ok": True, "a": {"b": 1}},
        {"genre": "comedy", "price": 10.0, "ok": False, "a": {"b": 2}},
        {"genre": "comedy-drama", "price": 9.5, "ok": True},
        {"genre": "Drama", "price": -3, "a": {"b": 1.0}},
        {"genre": "cooking", "price": 20, "ok": False, "a": {"c": 1}},
        {"genre": "drama", "price": "10", "ok": "true"},  # wrong types: not indexed
        {"genre": 5, "price": True, "a": 1},  # wrong types again
        {"genre": None, "price": None},
        {"title": LONG, "genre": "docu"},
        {"title": "x" * 63, "price": 1e300},
        {"genre": "žluťoučký", "price": 0},
        {"price": 19.999, "ok": True, "genre": "comedy"},
        {},
        None,
    ]
    return [
        {"id": f"v{i:02d}", "values": rng.standard_normal(4).round(3).tolist(),
         **({"metadata": m} if m is not None else {})}
        for i, m in enumerate(metas)
    ]


GOOD_FILTERS = [
    {"genre": "drama"},
    {"genre": {"$eq": "drama"}},
    {"genre": {"$ne": "drama"}},
    {"genre": {"$in": ["drama", "comedy"]}},
    {"genre": {"$nin": ["drama", "comedy"]}},
    {"genre": {"$gte": "co", "$lt": "cp"}},  # prefix search
    {"genre": {"$gt": "comedy"}},
    {"genre": {"$lte": "Drama"}},
    {"price": 10},
    {"price": {"$lt": 10}},
    {"price": {"$lte": 10}},
    {"price": {"$gt": 10}},
    {"price": {"$gte": 9.5, "$lt": 20}},
    {"price": {"$gt": -5, "$lte": 0}},
    {"price": {"$in": [10, 20, 1e300]}},
    {"price": {"$nin": [10]}},
    {"ok": True},
    {"ok": False},
    {"ok": {"$ne": True}},
    {"ok": {"$in": [True, False]}},
    {"a.b": 1},
    {"a.b": {"$gte": 1.5}},
    {"genre": "comedy", "ok": True},  # implicit AND
    {"genre": {"$ne": "drama"}, "price": {"$lt": 15}, "ok": {"$ne": False}},
    {"title": LONG},  # compared on the first 64 bytes
    {"title": "x" * 63},
    {"title": {"$gte": "x" * 63}},
    {"genre": "žluťoučký"},
    # strict types: a string never equals a number, a number never a boolean
    {"price": "10"},
    {"price": {"$ne": "10"}},
    {"ok": 1},
    {"genre": {"$in": ["drama", 5, None, True]}},
    {"genre": {"$nin": ["drama", None]}},
    {"price": {"$lt": "z"}},
    # null: a metadata index holds no nulls; a missing property matches only $ne and $nin
    {"genre": None},
    {"genre": {"$ne": None}},
]


@pytest.fixture
def shop(vcli, tmp_path):
    records = catalogue()
    make_index(vcli, tmp_path, "shop", records, INDEXES, dims=4)
    views = {r["id"]: indexed_view(r.get("metadata"), INDEXES) for r in records}
    return records, views


def test_every_operator_matches_the_reference(vcli, shop):
    records, views = shop
    q = [0.3, -1.0, 0.5, 2.0]
    for flt in GOOD_FILTERS:
        text = orjson.dumps(flt).decode()
        for top_k in (100, 2):
            got = query(vcli, "shop", q, "--top-k", top_k, "--filter", text)
            expected = reference_matches(records, views, flt, q, top_k)
            assert [m["id"] for m in got["matches"]] == [vid for vid, _ in expected], text
            assert_same_answer(got, expected)


def test_operators_select_what_the_spec_says(vcli, shop):
    """A few answers spelled out, so the reference itself is held to docs/contract.md."""
    records, views = shop

    def ids(flt):
        return {r["id"] for r in records if reference_match(views[r["id"]], flt)}

    assert ids({"genre": "drama"}) == {"v00", "v05"}  # v05's price "10" and ok "true" are not indexed
    assert "v05" in ids({"genre": "drama", "price": {"$ne": 10}})  # "10" is not the number 10
    assert ids({"genre": {"$gte": "co", "$lt": "cp"}}) == {"v01", "v02", "v04", "v11"}
    assert ids({"price": 10}) == {"v00", "v01"}  # 10 and 10.0
    assert "v12" in ids({"genre": {"$ne": "drama"}}) and "v12" not in ids({"genre": {"$gt": ""}})
    assert ids({"genre": None}) == set()
    assert ids({"title": LONG}) == ids({"title": "x" * 63}) == {"v08", "v09"}


def test_golden_case_with_the_docs_filter(vcli, tmp_path):
    """The Vectorize docs' example: ids 1 and 4 are on netflix."""
    platforms = {"1": "netflix", "2": "hbo", "3": "hulu", "4": "netflix", "5": "disney"}
    records = [{"id": i, "values": v, "metadata": {"streaming_platform": platforms[i]}} for i, v in GOLDEN]
    make_index(vcli, tmp_path, "golden", records, {"streaming_platform": "string"}, dims=3)
    got = query(vcli, "golden", GOLDEN_QUERY, "--top-k", 3, "--filter", '{"streaming_platform":"netflix"}')
    expected = [(i, s) for i, s in exact_order(dict(GOLDEN), GOLDEN_QUERY) if platforms[i] == "netflix"]
    assert_same_answer(got, expected)
    assert [m["id"] for m in got["matches"]] == ["4", "1"]


# == bad filters =============================================================================
BAD_FILTERS = [
    ("{not json", "not valid JSON"),
    ('["genre"]', "must be a JSON object"),
    ("42", "must be a JSON object"),
    ("null", "must be a JSON object"),
    ('{"genre": ["drama"]}', '"genre"'),
    ('{"genre": {}}', '"genre"'),
    ('{"genre": {"$regex": "d.*"}}', "$regex"),
    ('{"genre": {"gte": "a"}}', '"gte"'),
    ('{"genre": {"address": {"$eq": "x"}}}', "genre.address"),
    ('{"genre": {"$in": []}}', "$in"),
    ('{"genre": {"$nin": "drama"}}', "$nin"),
    ('{"genre": {"$in": [["drama"]]}}', "$in"),
    ('{"genre": {"$in": [{"a": 1}]}}', "$in"),
    ('{"genre": {"$eq": ["drama"]}}', "$eq"),
    ('{"genre": {"$ne": {}}}', "$ne"),
    ('{"price": {"$lt": true}}', "$lt"),
    ('{"price": {"$gte": null}}', "$gte"),
    ('{"price": {"$gt": [1]}}', "$gt"),
    ('{"price": {"$gt": 1, "$gte": 2}}', "lower bound"),
    ('{"price": {"$lt": 1, "$lte": 2}}', "upper bound"),
    ('{"price": {"$eq": 1, "$lt": 3}}', "$eq"),
    ('{"price": {"$in": [1], "$nin": [2]}}', "$in"),
    ('{"price": {"$gt": 1, "$lt": "z"}}', "must both be numbers or both strings"),
    ('{"": 1}', "empty"),
    ('{"$and": [1]}', '"$and"'),
    ('{"a..b": 1}', '"a..b"'),
    ('{".a": 1}', '".a"'),
    ('{"a\\"b": 1}', "a\"b"),
    (orjson.dumps({"k" * 513: 1}).decode(), "512"),
    (orjson.dumps({"genre": {"$in": [f"g{i:04d}" for i in range(300)]}}).decode(), "2,048"),
    ('{"price": 1e400}', "not valid JSON"),
]


def test_every_bad_filter_is_one_clear_error(vcli, shop):
    before = vcli("info", "shop", "--json").json
    for text, says in BAD_FILTERS:
        res = vcli("query", "shop", "--vector", "1", "2", "3", "4", "--filter", text, "--json")
        assert res.code == 1, text
        assert res.out == "", text
        lines = res.err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: "), (text, res.err)
        assert says in lines[0], (text, lines[0])
        assert "Traceback" not in res.err
    assert vcli("info", "shop", "--json").json == before


def test_filter_just_under_the_size_limit_is_fine(vcli, shop):
    records, views = shop
    values = ["drama"]
    flt = {"genre": {"$in": values}}
    while len(orjson.dumps({"genre": {"$in": values + ["y" * 20]}})) < 2048:
        values.append("y" * 20)
    assert len(orjson.dumps(flt)) < 2048
    got = query(vcli, "shop", [1, 2, 3, 4], "--top-k", 10, "--filter", orjson.dumps(flt).decode())
    assert_same_answer(got, reference_matches(records, views, flt, [1, 2, 3, 4], 10))


def test_filter_on_a_property_without_metadata_index_says_how_to_fix_it(vcli, tmp_path):
    records = [{"id": str(i), "values": [1, i, 0], "metadata": {"lang": "en" if i % 2 else "fr"}}
               for i in range(6)]
    make_index(vcli, tmp_path, "docs", records, {}, dims=3)
    res = vcli("query", "docs", "--vector", "1", "1", "0", "--filter", '{"lang": "en"}', "--json")
    assert res.code == 1 and res.out == ""
    err = res.err.strip()
    assert err.startswith("Error: ") and len(err.splitlines()) == 1
    assert "lang" in err
    command = re.search(r"`(vcli create-metadata-index [^`]+)`", err)
    assert command, err
    # The command it names works as given, and after an upsert the filter does too.
    args = shlex.split(command.group(1))[1:]
    assert vcli(*args).code == 0
    assert vcli("list-metadata-index", "docs", "--json").json == [{"propertyName": "lang", "indexType": "string"}]
    path = tmp_path / "again.ndjson"
    path.write_text(ndjson(records))
    assert vcli("upsert", "docs", "--file", path).code == 0
    got = query(vcli, "docs", [1, 1, 0], "--filter", '{"lang": "en"}')
    assert sorted(m["id"] for m in got["matches"]) == ["1", "3", "5"]


# == the metadata-index rule ====================================================================
def test_vectors_written_before_a_metadata_index_are_not_indexed(vcli, tmp_path):
    old = [{"id": f"old{i}", "values": [1, i, 1], "metadata": {"color": "red"}} for i in range(3)]
    old.append({"id": "old-blue", "values": [1, 9, 1], "metadata": {"color": "blue"}})
    old.append({"id": "old-none", "values": [2, 9, 1]})
    assert vcli("create", "paint", "--dimensions", "3", "--metric", "euclidean").code == 0
    path = tmp_path / "old.ndjson"
    path.write_text(ndjson(old))
    assert vcli("insert", "paint", "--file", path).code == 0

    res = vcli("create-metadata-index", "paint", "--property-name", "color", "--type", "string", "--json")
    assert res.code == 0, res.err
    assert set(res.json) == {"mutationId"}
    assert vcli("info", "paint", "--json").json["processedUpToMutation"] == res.json["mutationId"]
    # It says how many existing vectors are not covered (5), and how many hold a string there (4).
    assert "5 vectors" in res.err and "4 of them" in res.err and "upsert" in res.err

    new = [{"id": "new-red", "values": [1, 1, 2], "metadata": {"color": "red"}}]
    path = tmp_path / "new.ndjson"
    path.write_text(ndjson(new))
    assert vcli("insert", "paint", "--file", path).code == 0
    red = query(vcli, "paint", [1, 1, 1], "--top-k", 10, "--filter", '{"color": "red"}')
    assert [m["id"] for m in red["matches"]] == ["new-red"]
    # Old vectors lack the indexed property, so they match $ne and $nin.
    not_red = query(vcli, "paint", [1, 1, 1], "--top-k", 10, "--filter", '{"color": {"$ne": "red"}}')
    assert {m["id"] for m in not_red["matches"]} == {"old0", "old1", "old2", "old-blue", "old-none"}

    # Upserting the old vectors again indexes them.
    path.write_text(ndjson(old[:2]))
    assert vcli("upsert", "paint", "--file", path).code == 0
    red = query(vcli, "paint", [1, 1, 1], "--top-k", 10, "--filter", '{"color": "red"}')
    assert {m["id"] for m in red["matches"]} == {"new-red", "old0", "old1"}

    # Deleting the metadata index forgets; creating it again does not re-index anything.
    deleted = vcli("delete-metadata-index", "paint", "--property-name", "color", "--json")
    assert deleted.code == 0 and set(deleted.json) == {"mutationId"}
    gone = vcli("query", "paint", "--vector", "1", "1", "1", "--filter", '{"color": "red"}')
    assert gone.code == 1 and "create-metadata-index" in gone.err
    again = vcli("create-metadata-index", "paint", "--property-name", "color", "--type", "string")
    assert again.code == 0
    assert "6 vectors" in again.err and "5 of them" in again.err
    red = query(vcli, "paint", [1, 1, 1], "--top-k", 10, "--filter", '{"color": "red"}')
    assert red["matches"] == []


def test_replacing_and_deleting_vectors_updates_what_filters_see(vcli, tmp_path):
    make_index(vcli, tmp_path, "kv", [
        {"id": "a", "values": [1, 0], "metadata": {"k": 1}},
        {"id": "b", "values": [0, 1], "metadata": {"k": 1}},
        {"id": "c", "values": [1, 1], "metadata": {"k": 2}},
    ], {"k": "number"}, dims=2)
    path = tmp_path / "more.ndjson"
    # insert keeps the first copy (of the index, and of the file); upsert the last
    path.write_text(ndjson([
        {"id": "a", "values": [1, 0], "metadata": {"k": 3}},
        {"id": "d", "values": [2, 1], "metadata": {"k": 1}},
        {"id": "d", "values": [2, 1], "metadata": {"k": 3}},
    ]))
    assert vcli("insert", "kv", "--file", path).code == 0

    def ids(flt):
        got = query(vcli, "kv", [1, 1], "--top-k", 10, "--filter", orjson.dumps(flt).decode())
        return sorted(m["id"] for m in got["matches"])

    assert ids({"k": 1}) == ["a", "b", "d"] and ids({"k": 3}) == []
    path.write_text(ndjson([
        {"id": "b", "values": [0, 1], "metadata": {"k": 1}},
        {"id": "b", "values": [0, 1], "metadata": {"k": 3}},
        {"id": "c", "values": [1, 1]},
    ]))
    assert vcli("upsert", "kv", "--file", path).code == 0
    assert ids({"k": 1}) == ["a", "d"] and ids({"k": 3}) == ["b"] and ids({"k": 2}) == []
    assert ids({"k": {"$ne": 1}}) == ["b", "c"]
    assert vcli("delete-vectors", "kv", "--ids", "a", "b").code == 0
    assert ids({"k": {"$gte": 0}}) == ["d"] and ids({"k": {"$nin": [3]}}) == ["c", "d"]


# == the 64-byte cut and indexed output =========================================================
def test_strings_are_indexed_on_their_first_64_bytes(vcli, tmp_path):
    euro = "€" * 22  # 66 bytes: the cut keeps 21 characters (63 bytes)
    mixed = "a" * 63 + "é"  # 65 bytes: the cut drops the whole "é"
    exact = "b" * 64
    records = [
        {"id": "euro", "values": [1, 0, 0], "metadata": {"s": euro}},
        {"id": "mixed", "values": [0, 1, 0], "metadata": {"s": mixed}},
        {"id": "exact", "values": [0, 0, 1], "metadata": {"s": exact}},
        {"id": "euro2", "values": [1, 1, 0], "metadata": {"s": "€" * 21 + "x" * 10}},
    ]
    make_index(vcli, tmp_path, "cut", records, {"s": "string"}, dims=3)

    def ids(flt):
        got = query(vcli, "cut", [1, 1, 1], "--top-k", 10, "--filter", orjson.dumps(flt).decode())
        return sorted(m["id"] for m in got["matches"])

    assert ids({"s": "€" * 21}) == ["euro"]
    assert ids({"s": euro}) == ["euro"]  # the filter's string is cut the same way
    assert ids({"s": "€" * 21 + "x"}) == ["euro2"]
    assert ids({"s": "a" * 63}) == ["mixed"] and ids({"s": mixed}) == ["mixed"]
    assert ids({"s": exact}) == ["exact"] and ids({"s": exact + "zzz"}) == ["exact"]
    assert ids({"s": {"$gte": "€" * 21, "$lt": "€" * 21 + "y"}}) == ["euro", "euro2"]
    # a bound is cut too: "€" * 22 compares as "€" * 21, which "euro" is not below
    assert ids({"s": {"$lt": "€" * 22}}) == ["exact", "mixed"]

    got = query(vcli, "cut", [1, 1, 1], "--top-k", 10, "--return-metadata", "indexed")
    shown = {m["id"]: m["metadata"]["s"] for m in got["matches"]}
    assert shown == {"euro": "€" * 21, "mixed": "a" * 63, "exact": exact, "euro2": "€" * 21 + "x"}
    assert all(len(s.encode()) <= 64 for s in shown.values())
    full = query(vcli, "cut", [1, 1, 1], "--top-k", 10, "--return-metadata", "all")
    assert {m["id"]: m["metadata"]["s"] for m in full["matches"]}["euro"] == euro


def test_return_metadata_indexed_shows_only_indexed_properties(vcli, tmp_path):
    before = [{"id": "early", "values": [1, 0.5], "metadata": {"n": 1, "tag": "x"}}]
    records = [
        {"id": "late", "values": [1, 0], "metadata": {
            "n": 3, "f": 2.5, "flag": True, "tag": "y", "other": "not indexed",
            "a": {"b": "deep", "c": 1}, "wrong": "a string where a number is indexed"}},
        {"id": "bare", "values": [0, 1]},
    ]
    indexes = {"n": "number", "f": "number", "flag": "boolean", "tag": "string", "a.b": "string",
               "wrong": "number"}
    make_index(vcli, tmp_path, "meta", records, indexes, dims=2, before=before)
    got = query(vcli, "meta", [1, 0], "--return-metadata", "indexed", "--top-k", 10)
    by_id = {m["id"]: m for m in got["matches"]}
    assert by_id["late"]["metadata"] == {"n": 3, "f": 2.5, "flag": True, "tag": "y", "a": {"b": "deep"}}
    assert by_id["early"]["metadata"] == {}  # written before its metadata indexes existed
    assert by_id["bare"]["metadata"] == {}
    none = query(vcli, "meta", [1, 0], "--top-k", 10)
    assert all("metadata" not in m for m in none["matches"])
    table = vcli("query", "meta", "--vector", "1", "0", "--return-metadata", "indexed")
    assert table.code == 0 and '"deep"' in table.out and "not indexed" not in table.out


# == namespaces ==================================================================================
def namespaced() -> list[dict]:
    rng = np.random.default_rng(3)
    out = []
    for i in range(40):
        rec = {"id": f"n{i:02d}", "values": rng.standard_normal(3).round(3).tolist(),
               "metadata": {"i": i, "even": i % 2 == 0}}
        if i % 4:
            rec["namespace"] = ["alpha", "beta", "gamma"][i % 4 - 1]
        out.append(rec)
    return out


def test_namespace_comes_before_the_filter_and_top_k(vcli, tmp_path):
    records = namespaced()
    indexes = {"i": "number", "even": "boolean"}
    make_index(vcli, tmp_path, "ns", records, indexes, dims=3)
    views = {r["id"]: indexed_view(r["metadata"], indexes) for r in records}
    q = [0.5, -0.2, 1.0]
    for ns, flt in [("alpha", None), ("beta", {"even": True}), ("gamma", {"i": {"$lt": 20}}),
                    ("alpha", {"i": {"$nin": [1, 5, 9]}}), ("beta", {"even": False})]:
        args = ["--namespace", ns, "--top-k", 3] + (["--filter", orjson.dumps(flt).decode()] if flt else [])
        got = query(vcli, "ns", q, *args)
        assert_same_answer(got, reference_matches(records, views, flt, q, 3, namespace=ns))
        assert all(m["namespace"] == ns for m in got["matches"])
    assert query(vcli, "ns", q, "--namespace", "nowhere") == {"count": 0, "matches": []}
    human = vcli("query", "ns", "--vector", *map(str, q), "--namespace", "nowhere")
    assert human.code == 0 and "Could not find any relevant vectors" in human.err
    # without --namespace every namespace is searched; a vector without one has no "namespace"
    everything = query(vcli, "ns", q, "--top-k", 40)
    assert_same_answer(everything, reference_matches(records, views, None, q, 40))
    assert sum("namespace" not in m for m in everything["matches"]) == 10


def test_namespace_longer_than_64_bytes_is_an_error(vcli, tmp_path):
    make_index(vcli, tmp_path, "ns", namespaced()[:4], {}, dims=3)
    res = vcli("query", "ns", "--vector", "1", "2", "3", "--namespace", "n" * 65, "--json")
    assert res.code == 1 and res.out == "" and res.err.startswith("Error: ") and "64" in res.err


# == metadata index commands =====================================================================
def test_metadata_index_commands_and_their_errors(vcli, tmp_path):
    make_index(vcli, tmp_path, "mi", [{"id": "a", "values": [1, 2]}], {}, dims=2)
    assert vcli("list-metadata-index", "mi", "--json").json == []
    empty = vcli("list-metadata-index", "mi")
    assert empty.code == 0 and "create-metadata-index" in empty.err

    made = vcli("create-metadata-index", "mi", "--propertyName", "genre", "--type=string")
    assert made.code == 0 and "genre" in made.out and "Mutation changeset identifier" in made.out
    mutation = re.search(r"identifier: ([0-9a-f-]{36})", made.out).group(1)
    assert vcli("info", "mi", "--json").json["processedUpToMutation"] == mutation

    table = vcli("list-metadata-index", "mi")
    assert table.code == 0 and "propertyName" in table.out and "genre" in table.out and "string" in table.out

    def fails(*args, says):
        before = vcli("list-metadata-index", "mi", "--json").json
        info = vcli("info", "mi", "--json").json
        res = vcli(*args, "--json")
        assert res.code == 1, res
        assert res.out == "" and res.err.startswith("Error: ") and len(res.err.strip().splitlines()) == 1
        assert says in res.err, res.err
        assert vcli("list-metadata-index", "mi", "--json").json == before
        assert vcli("info", "mi", "--json").json == info

    fails("create-metadata-index", "mi", "--property-name", "genre", "--type", "number", says="already")
    fails("create-metadata-index", "mi", "--property-name", "x", "--type", "text", says="text")
    fails("create-metadata-index", "mi", "--property-name", "$x", "--type", "string", says="$x")
    fails("create-metadata-index", "mi", "--property-name", "a..b", "--type", "string", says="a..b")
    fails("create-metadata-index", "mi", "--property-name", "", "--type", "string", says="empty")
    fails("delete-metadata-index", "mi", "--property-name", "nope", says="nope")
    fails("create-metadata-index", "missing", "--property-name", "x", "--type", "string", says="not found")

    for i in range(9):
        assert vcli("create-metadata-index", "mi", "--property-name", f"p{i}", "--type", "number").code == 0
    fails("create-metadata-index", "mi", "--property-name", "p9", "--type", "number", says="10")
    listed = vcli("list-metadata-index", "mi", "--json").json
    assert listed[0] == {"propertyName": "genre", "indexType": "string"} and len(listed) == 10

    deleted = vcli("delete-metadata-index", "mi", "--propertyName", "p3")
    assert deleted.code == 0 and "p3" in deleted.out
    assert {"propertyName": "p3", "indexType": "number"} not in vcli("list-metadata-index", "mi", "--json").json
    assert vcli("create-metadata-index", "mi", "--property-name", "p9", "--type", "boolean").code == 0

    usage = vcli("create-metadata-index", "mi", "--property-name", "q")
    assert usage.code == 2  # a missing required option is Click's usage error


def test_metadata_index_commands_through_the_installed_cli(vcli_proc, tmp_path):
    assert vcli_proc("create", "p", "--dimensions", "2", "--metric", "cosine").code == 0
    made = vcli_proc("create-metadata-index", "p", "--property-name", "t", "--type", "string", "--json")
    assert made.code == 0 and set(made.json) == {"mutationId"}
    path = tmp_path / "p.ndjson"
    path.write_text(ndjson([{"id": "1", "values": [1, 0], "metadata": {"t": "a"}},
                            {"id": "2", "values": [0, 1], "metadata": {"t": "b"}}]))
    assert vcli_proc("insert", "p", "--file", path).code == 0
    got = vcli_proc("query", "p", "--vector", "1", "1", "--filter", '{"t": {"$in": ["b"]}}', "--json")
    assert got.code == 0 and [m["id"] for m in got.json["matches"]] == ["2"]


# == many matches: the search widens instead of listing every match =============================
@pytest.mark.parametrize("path", ["matrix", "graph"])
def test_broad_and_narrow_filters_on_a_bigger_index(vcli, tmp_path, path):
    # Score every match exactly only when at most 50 match (else 2048): most filters here widen.
    # (a matrix at 2,000 rows: by default an index that small is scanned from the store alone)
    tuning = Tuning(filter_exact_rows=50, fold_rows=1000,
                    **({"graph_min_floats": 1, "graph_in_background": False} if path == "graph" else {}))
    cli = vcli

    def vcli(*args, **kw):
        return cli(*args, tuning=tuning, **kw)

    rng = np.random.default_rng(11)
    n = 2000
    values = rng.standard_normal((n, 8)).astype(np.float32).round(4)
    records = [{"id": f"r{i:04d}", "values": values[i].tolist(),
                "metadata": {"b": int(rng.integers(0, 100)), "half": bool(i % 2)},
                **({"namespace": "odd"} if i % 3 == 1 else {})} for i in range(n)]
    indexes = {"b": "number", "half": "boolean"}
    make_index(vcli, tmp_path, "big", records, indexes, dims=8)
    files = {p.name.split("-")[0] for p in (tmp_path / "data" / "big").iterdir()}
    assert path in files
    views = {r["id"]: indexed_view(r["metadata"], indexes) for r in records}
    for flt, ns in [({"half": True}, None), ({"b": {"$lt": 90}}, None), ({"b": {"$ne": 3}}, "odd"),
                    ({"b": 7}, None), ({"half": False, "b": {"$gte": 50}}, None), (None, "odd")]:
        for q in rng.standard_normal((2, 8)).round(3).tolist():
            args = ["--top-k", 10] + (["--filter", orjson.dumps(flt).decode()] if flt else [])
            args += ["--namespace", ns] if ns else []
            got = query(vcli, "big", q, *args)
            expected = reference_matches(records, views, flt, q, 10, namespace=ns)
            if path == "matrix":
                assert_same_answer(got, expected)
            else:  # the graph is approximate; its recall must still be high
                found = {m["id"] for m in got["matches"]}
                assert len(found & {vid for vid, _ in expected}) >= 9
