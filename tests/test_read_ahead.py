"""A filtered batch reads its filters' conditions ahead of the lines that need them, on two threads
of its own with two cores, each on a connection of its own in the store's snapshot
(``Store.twin``). The batch reads one snapshot throughout: a write committed while it runs is not
in its answers, whether it lands before the second connection is opened (which is then refused)
or after."""

from __future__ import annotations

import numpy as np
import pytest

from vcli.engine import Catalog, Query, Tuning
from vcli.engine.search import common
from vcli.engine.store import Store, filtering

DIMS = 16
N = 600


def build(tmp_path) -> tuple[Catalog, np.ndarray]:
    rng = np.random.default_rng(5)
    # every filter by its conditions (few rows each: no widened search), two lines a block
    catalog = Catalog(tmp_path / "indexes", tuning=Tuning(max_block_queries=2, filter_exact_rows=10))
    catalog.create("ix", DIMS, "cosine")
    vals = rng.standard_normal((N, DIMS)).astype(np.float32)
    with catalog.open("ix", write=True) as ix:
        ix.create_metadata_index("u", "string")
        ix.create_metadata_index("f", "boolean")
        ix.insert_arrays([f"v{i:03d}" for i in range(N)], vals, [{"u": f"u{i % 12}", "f": bool(i % 3)} for i in range(N)],
                         [("a", "b")[i % 2] for i in range(N)])
    return catalog, vals


def lines(vals: np.ndarray, plain_first: bool) -> list[Query]:
    out = [Query(vector=vals[i].tolist(), top_k=5) for i in range(4)] if plain_first else []  # two blocks
    for i in range(30):
        flt = [{"u": f"u{i % 12}"}, {"u": {"$in": [f"u{i % 12}", f"u{(i + 5) % 12}"]}, "f": bool(i % 2)}][i % 2]
        out.append(Query(vector=vals[(7 * i) % N].tolist(), top_k=5, filter=flt, namespace=(None, "a", "b")[i % 3]))
    return out


def answers(results) -> list[list[tuple[str, float]]]:
    return [[(m.id, m.score) for m in r.matches] for r in results]


def test_conditions_are_read_on_two_connections_with_the_same_answers(tmp_path, monkeypatch):
    catalog, vals = build(tmp_path)
    batch = lines(vals, plain_first=False)
    with catalog.open("ix") as ix:
        alone = [answers([ix.query(q.vector, top_k=q.top_k, filter=q.filter, namespace=q.namespace)])[0]
                 for q in batch]
    read_by: list[int] = []
    keys = filtering.condition_keys
    monkeypatch.setattr(filtering, "condition_keys", lambda store, *a: read_by.append(id(store)) or keys(store, *a))
    for count in (1, 2):
        read_by.clear()
        monkeypatch.setattr(common, "cores", lambda count=count: count)
        with catalog.open("ix") as ix:
            assert answers(ix.query_many(batch)) == alone
            own = id(ix.store)
        assert len(read_by) > 10
        if count == 1:  # on the caller's thread, on the store's connection
            assert set(read_by) == {own}
        else:  # ahead, on two connections of their own (the store's is the caller's alone)
            assert len(set(read_by)) == 2 and own not in read_by


@pytest.mark.parametrize("plain_first", [True, False], ids=["write-before-the-twin", "write-after-the-twin"])
def test_a_write_committed_during_a_batch_is_not_in_its_answers(tmp_path, monkeypatch, plain_first):
    catalog, vals = build(tmp_path)
    batch = lines(vals, plain_first)
    with catalog.open("ix") as ix:
        before = answers(ix.query_many(batch))
    twins: list = []
    twin = Store.twin
    monkeypatch.setattr(Store, "twin", lambda self: twins.append(twin(self)) or twins[-1])
    monkeypatch.setattr(common, "cores", lambda: 2)
    with catalog.open("ix") as ix:
        results = ix.query_many(batch)
        got = answers([next(results)])  # the first block, answered
        assert bool(twins) != plain_first  # a twin only once a filter has been read
        with catalog.open("ix", write=True) as writer:
            # the answers' vectors deleted (a condition read in the new snapshot would lack them),
            # and every line's own vector again, matching every filter
            writer.delete(sorted({i for found in before for i, _ in found}))
            queries = np.array([q.vector for q in batch], np.float32)
            for u in range(12):
                for f in (True, False):
                    writer.insert_arrays([f"w{u:02d}{f:d}{j:02d}" for j in range(len(queries))], queries,
                                         [{"u": f"u{u}", "f": f}] * len(queries), ["a"] * len(queries))
        got += answers(results)
    assert twins and (twins[0] is None) == plain_first  # refused when the write came before it
    assert got == before
    with catalog.open("ix") as ix:  # (the write is there for the next batch)
        assert answers(ix.query_many(batch)) != before
