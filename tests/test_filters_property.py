"""Property test: random metadata, random metadata-index histories and random valid filters; vcli's
matches must equal a plain reference evaluator's over brute-force exact scores.

Each example writes vectors in several steps while metadata indexes come and go (so some vectors
are written before a metadata index exists and are not indexed for it), then runs random queries
with random filters and namespaces. Vectors and queries hold small integers: scores are then
computed exactly (the same float64 arithmetic in vcli and in the reference), so ties really tie
and must be broken by id. Every query runs under both plans: scoring every match exactly, and
(with ``filter_exact_rows`` at 0) widening the search while checking candidates; twice in a
batch, sharing their filter's rows; and all of them in one batch, a filter on each line. The index is searched from the store alone, or from a
matrix (and a delta), whose batches answer a filtered line through the block's product and its
mask or from its filter's rows, gathered.
"""

from __future__ import annotations

import shutil
import tempfile

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from test_filters import exact_order, indexed_view, reference_match

from vcli.engine import Catalog, Tuning
from vcli.errors import MetadataIndexError

PROPERTIES = {"s": "string", "n": "number", "b": "boolean", "o.x": "number", "t": "string"}
LONG = "é" * 40  # 80 bytes: indexed as its first 32 characters

strings = st.sampled_from(["", "a", "ab", "b", "ba", "é", "zz", LONG, LONG[:33], LONG[:32] + "q"])
numbers = st.sampled_from([-2, -1, 0, 0.5, 1, 1.0, 2, 1e10, -0.0])
TYPED = {"string": strings, "number": numbers, "boolean": st.booleans()}
scalars = st.one_of(strings, numbers, st.booleans())
any_value = st.one_of(scalars, st.none(), st.lists(scalars, max_size=2), st.just({"x": 1}))


def value_for(prop: str):
    """Mostly of the type its metadata index would take, sometimes anything."""
    return st.one_of(TYPED[PROPERTIES[prop]], TYPED[PROPERTIES[prop]], TYPED[PROPERTIES[prop]], any_value)


@st.composite
def metadata(draw):
    meta = {}
    for key in ("s", "n", "b", "t"):
        if draw(st.integers(0, 3)):
            meta[key] = draw(value_for(key))
    shape = draw(st.sampled_from(["missing", "nested", "nested", "scalar"]))
    if shape == "nested":
        meta["o"] = {"x": draw(value_for("o.x"))}
    elif shape == "scalar":
        meta["o"] = draw(scalars)
    return meta if meta or draw(st.booleans()) else None


vector = st.lists(st.integers(-3, 3), min_size=3, max_size=3).map(lambda v: v if any(v) else [1, *v[1:]])


@st.composite
def record(draw, vid: str):
    rec = {"id": vid, "values": draw(vector)}
    meta = draw(metadata())
    if meta is not None:
        rec["metadata"] = meta
    ns = draw(st.sampled_from([None, None, "x", "y"]))
    if ns is not None:
        rec["namespace"] = ns
    return rec


@st.composite
def condition(draw, prop: str):
    operand = st.one_of(TYPED[PROPERTIES[prop]], TYPED[PROPERTIES[prop]], scalars, st.none())
    form = draw(st.sampled_from(["implicit", "$eq", "$ne", "$in", "$nin", "range"]))
    if form == "implicit":
        return draw(operand)
    if form in ("$eq", "$ne"):
        return {form: draw(operand)}
    if form in ("$in", "$nin"):
        return {form: draw(st.lists(operand, min_size=1, max_size=4))}
    typ = PROPERTIES[prop]
    pool = TYPED[typ] if typ != "boolean" else draw(st.sampled_from([strings, numbers]))
    if draw(st.integers(0, 4)) == 0:
        pool = draw(st.sampled_from([strings, numbers]))
    ops = {}
    if draw(st.booleans()):
        ops[draw(st.sampled_from(["$gt", "$gte"]))] = draw(pool)
    if not ops or draw(st.booleans()):
        ops[draw(st.sampled_from(["$lt", "$lte"]))] = draw(pool)
    return ops


@st.composite
def a_filter(draw, props: list[str]):
    chosen = draw(st.lists(st.sampled_from(props), min_size=1, max_size=3, unique=True))
    return {p: draw(condition(p)) for p in chosen}


# Where the vectors are searched: the store alone (a small index), or a matrix (and a delta) whose
# batches mask each filtered line's row of the block's product, or gather every filter's rows.
TUNINGS = [Tuning(), Tuning(fold_rows=3), Tuning(fold_rows=3, masked_row_cost=1e12)]


# No shrink phase: one example costs a few hundred ms (an index, several writes), so shrinking
# a failure would take minutes; the failing example's draws are printed as they are.
@settings(max_examples=75, deadline=None,
          phases=[Phase.explicit, Phase.reuse, Phase.generate],
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data(), metric=st.sampled_from(["cosine", "euclidean", "dot-product"]),
       tuning=st.sampled_from(TUNINGS))
def test_filtered_queries_match_the_reference(data, metric, tuning):
    tmp = tempfile.mkdtemp(prefix="vcli-prop-")
    try:
        catalog = Catalog(tmp, tuning=tuning)
        catalog.create("p", dimensions=3, metric=metric)
        with catalog.open("p", write=True) as index:
            run_history(data, index)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run_history(data, index) -> None:
    indexes: dict[str, str] = {}  # the metadata indexes that exist now
    records: dict[str, dict] = {}  # id -> the stored record
    views: dict[str, dict] = {}  # id -> what the metadata indexes hold for it
    next_id = 0
    for step in range(data.draw(st.integers(1, 3), label="steps")):
        for prop in data.draw(st.lists(st.sampled_from(list(PROPERTIES)), min_size=int(step == 0),
                                       max_size=3, unique=True), label="create metadata indexes"):
            if prop not in indexes:
                index.create_metadata_index(prop, PROPERTIES[prop])
                indexes[prop] = PROPERTIES[prop]
        if indexes and data.draw(st.booleans(), label="delete one"):
            prop = data.draw(st.sampled_from(sorted(indexes)), label="deleted")
            index.delete_metadata_index(prop)
            del indexes[prop]
            for view in views.values():
                view.pop(prop, None)
        # upsert new ids and some existing ones (replaced whole, indexed anew)
        ids = [f"id{next_id + i:02d}" for i in range(data.draw(st.integers(1, 12), label="new"))]
        next_id += len(ids)
        ids += data.draw(st.lists(st.sampled_from(sorted(records)), max_size=4, unique=True), label="again") \
            if records else []
        batch = [data.draw(record(vid), label="record") for vid in ids]
        index.upsert(batch)
        for rec in batch:
            records[rec["id"]] = rec
            views[rec["id"]] = indexed_view(rec.get("metadata"), indexes)
        if records and data.draw(st.booleans(), label="delete vectors"):
            gone = data.draw(st.lists(st.sampled_from(sorted(records)), max_size=3), label="deleted ids")
            if gone:
                index.delete(gone)
                for vid in gone:
                    records.pop(vid, None)
                    views.pop(vid, None)

    assert {m.property_name: m.index_type for m in index.list_metadata_indexes()} == indexes
    asked = [check_one_query(data, index, indexes, records, views)
             for _ in range(data.draw(st.integers(4, 12), label="queries"))]
    # all of them in one batch: a filter (or none) of its own on each line
    for result, (_line, check) in zip(index.query_many([a[0] for a in asked]), asked, strict=True):
        check_result(result, *check)


def check_one_query(data, index, indexes, records, views) -> tuple[dict, tuple]:
    """Check one query every way; its batch line and what ``check_result`` checks it with."""
    q = data.draw(vector, label="query")
    top_k = data.draw(st.integers(1, 12), label="top_k")
    namespace = data.draw(st.sampled_from([None, None, "x", "y"]), label="namespace")
    if not indexes:
        flt = None
    else:
        filtered = data.draw(st.sampled_from([False, True, True, True]), label="filtered?")
        flt = data.draw(a_filter(sorted(indexes)), label="filter") if filtered else None
    if data.draw(st.integers(0, 9), label="unindexed?") == 0:
        missing = sorted(set(PROPERTIES) - set(indexes))
        if missing:
            bad = {**(flt or {}), missing[0]: 1}
            with pytest.raises(MetadataIndexError, match="create-metadata-index"):
                index.query(q, top_k=top_k, filter=bad)
    return_metadata = data.draw(st.sampled_from(["none", "indexed"]), label="metadata")
    # both plans: every match scored exactly, and the widening search that checks candidates
    for exact_rows in (2048, 0):
        index.filter_exact_rows = exact_rows
        result = index.query(q, top_k=top_k, namespace=namespace, filter=flt,
                             return_metadata=return_metadata)
        check_result(result, q, top_k, namespace, flt, index.metric, records, views)
    # a batch of two such lines: they share the filter's rows, found from its conditions' rows
    line = {"vector": q, "topK": top_k, "returnMetadata": return_metadata,
            **({"namespace": namespace} if namespace else {}), **({"filter": flt} if flt is not None else {})}
    for result in index.query_many([line, line]):
        check_result(result, q, top_k, namespace, flt, index.metric, records, views)
    return line, (q, top_k, namespace, flt, index.metric, records, views)


def check_result(result, q, top_k, namespace, flt, metric, records, views) -> None:
    keep = {
        vid: rec["values"] for vid, rec in records.items()
        if (namespace is None or rec.get("namespace") == namespace)
        and (flt is None or reference_match(views[vid], flt))
    }
    expected = exact_order(keep, q, metric)[:top_k]
    got = [(m.id, m.score) for m in result.matches]
    assert [vid for vid, _ in got] == [vid for vid, _ in expected], (flt, namespace)
    for (_, score), (_, want) in zip(got, expected, strict=True):
        assert score == pytest.approx(want, rel=1e-9, abs=1e-9)
    for m in result.matches:
        assert m.namespace == records[m.id].get("namespace")
        if m.metadata is not None:  # indexed: what the views hold, nested back
            flat = flatten(m.metadata)
            assert flat.keys() == views[m.id].keys()
            for prop, value in flat.items():
                want = views[m.id][prop]
                assert value == want and isinstance(value, bool) == isinstance(want, bool)


def flatten(obj: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in obj.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out
