"""The store through the library: a write lands whole or not at all (a bad vector, Ctrl-C, a quota
refused part-way), insert keeps and upsert replaces, every write is one mutation, a reopened
catalog reads the same bytes; and ``Store`` itself: its transactions and its read snapshots."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from vcli.engine import Catalog, Tuning
from vcli.engine.store import Store
from vcli.engine.store.core import AlreadyApplied
from vcli.errors import BadInput, QuotaExceeded, StorageError

DIMS = 4
TUNING = Tuning(fold_rows=20)  # writes of more than 20 changes fold into a new matrix


def vectors(n: int, prefix: str = "v", seed: int = 0, **extra) -> list[dict]:
    vals = np.random.default_rng(seed).standard_normal((n, DIMS)).astype(np.float32)
    return [{"id": f"{prefix}{i:04d}", "values": vals[i].tolist(), **extra} for i in range(n)]


@pytest.fixture
def catalog(tmp_path) -> Catalog:
    catalog = Catalog(tmp_path / "indexes", tuning=TUNING, max_namespaces=3)
    catalog.create("idx", DIMS, "cosine")
    with catalog.open("idx", write=True) as ix:
        ix.insert(vectors(50, namespace="a"))
    return catalog


def state(catalog: Catalog):
    """What a reader can see of the index, and its files."""
    with catalog.open("idx") as ix:
        ids = ix.list_ids(count=1000).ids
        got = ix.get([f"{p}{i:04d}" for p in "vw" for i in range(500)])
        answer = ix.query([1, 0, 0, 0], top_k=10)
        return (ix.info(), ids, [(v.id, v.values.tolist(), v.namespace, v.metadata) for v in got],
                answer.matches, sorted(p.name for p in catalog.path_of("idx").iterdir()))


def test_a_bad_vector_part_way_through_a_write_leaves_the_index_as_it_was(catalog):
    before = state(catalog)
    bad = [*vectors(450, "w"), {"id": "short", "values": [1.0, 2.0]}]  # after four batches of 100
    with catalog.open("idx", write=True) as ix:
        with pytest.raises(BadInput, match="dimension"):
            ix.insert(bad, batch_size=100)
    assert state(catalog) == before
    with catalog.open("idx", write=True) as ix:  # the lock and the store are free again
        assert ix.insert(vectors(5, "w")).written == 5


def test_ctrl_c_during_a_write_rolls_it_back(catalog):
    before = state(catalog)

    def interrupted():
        yield from vectors(300, "w")
        raise KeyboardInterrupt

    with catalog.open("idx", write=True) as ix:
        with pytest.raises(KeyboardInterrupt):
            ix.upsert(interrupted(), batch_size=100)
    assert state(catalog) == before
    with catalog.open("idx", write=True) as ix:
        assert ix.upsert(vectors(30, "w")).count == 30
    assert state(catalog)[0].vector_count == 80


def test_a_write_past_the_namespace_quota_is_refused_whole(catalog):
    before = state(catalog)
    with catalog.open("idx", write=True) as ix:
        ix.insert(vectors(10, "w", namespace="b"))
        ix.insert(vectors(10, "x", namespace="c"))
        after_three = state(catalog)
        with pytest.raises(QuotaExceeded, match="namespaces"):
            ix.insert([*vectors(200, "y", namespace="c"), *vectors(1, "z", namespace="d")], batch_size=50)
    assert state(catalog) == after_three != before


def test_insert_keeps_the_first_copy_and_upsert_replaces_it_whole(catalog):
    first, second = [1.0, 2.0, 3.0, 4.0], [4.0, 3.0, 2.0, 1.0]
    with catalog.open("idx", write=True) as ix:
        result = ix.insert([{"id": "k", "values": first, "metadata": {"n": 1}},
                            {"id": "k", "values": second}, {"id": "v0000", "values": second}])
        assert (result.count, result.written) == (3, 1)
        (k,) = ix.get(["k"])
        assert (k.values.tolist(), k.namespace, k.metadata) == (first, None, {"n": 1})
        assert ix.get(["v0000"])[0].values.tolist() != second  # an existing id keeps its copy

        result = ix.upsert([{"id": "k", "values": first}, {"id": "k", "values": second, "namespace": "b"}])
        assert (result.count, result.written) == (2, 2)
        (k,) = ix.get(["k"])
        assert (k.values.tolist(), k.namespace, k.metadata) == (second, "b", None)  # metadata gone too
        assert ix.info().vector_count == 51


def test_values_are_stored_as_float32_and_read_back_bit_exact_after_reopening(catalog, tmp_path):
    values = [0.1, 1 / 3, -2.5e-8, 3.4e38]
    with catalog.open("idx", write=True) as ix:
        ix.upsert([{"id": "f", "values": values, "metadata": {"t": "é", "x": [1, {"y": None}]}}])
    with Catalog(tmp_path / "indexes").open("idx") as ix:  # a new catalog: only what is on disk
        (f,) = ix.get(["f"])
    assert f.values.dtype == np.float32
    assert f.values.tobytes() == np.array(values, np.float32).tobytes()
    assert f.metadata == {"t": "é", "x": [1, {"y": None}]}


def test_every_write_is_one_mutation_and_info_names_the_last(catalog):
    seen = set()
    with catalog.open("idx", write=True) as ix:
        for write in (lambda: ix.insert(vectors(30, "w")), lambda: ix.upsert(vectors(3, "w", seed=1)),
                      lambda: ix.delete(["w0000", "nothing", "w0000"]),
                      lambda: ix.create_metadata_index("lang", "string")):
            result = write()
            assert ix.info().processed_up_to_mutation == result.mutation_id
            seen.add(result.mutation_id)
        deleted = ix.delete(["w0001", "w0002", "gone"])
        assert (deleted.count, deleted.deleted) == (3, 2)
        assert ix.info().vector_count == 50 + 30 - 3
    assert len(seen) == 4


def rows(n: int, start: int = 0):
    return [(f"r{i}", None, None) for i in range(start, start + n)]


def test_store_mutation_commits_whole_or_rolls_back(tmp_path):
    store = Store.create(tmp_path / "store.sqlite")
    try:
        with pytest.raises(RuntimeError):
            with store.mutation("insert", "2026-01-01T00:00:00.000000Z") as mut:
                assert store.insert_rows(mut.seq, rows(10)) == 10
                raise RuntimeError("boom")
        assert (store.count(), store.last_seq(), store.last_mutation()) == (0, 0, None)
        with store.mutation("insert", "2026-01-01T00:00:01.000000Z") as mut:
            store.insert_rows(mut.seq, rows(10))
        assert store.count() == 10
        assert store.last_mutation() == mut
        assert store.count_since(0) == (10, 0)
    finally:
        store.close()


def test_a_pending_write_is_applied_once(tmp_path):
    store = Store.create(tmp_path / "store.sqlite")
    try:
        store.add_pending("11111111-2222-3333-4444-555555555555", "insert", 0.0, b"{}")
        ((seq, mid, *_),) = store.pending()
        with store.mutation("insert", "2026-01-01T00:00:00.000000Z", pending=(seq, mid)) as mut:
            store.insert_rows(mut.seq, rows(3))
        assert (mut.id, store.pending(), store.count()) == (mid, [], 3)
        with pytest.raises(AlreadyApplied):  # another process applied it first: this one rolls back
            with store.mutation("insert", "2026-01-01T00:00:01.000000Z", pending=(seq, mid)) as again:
                store.insert_rows(again.seq, rows(3, start=3))
        assert (store.count(), store.last_mutation().id) == (3, mid)
    finally:
        store.close()


def test_a_snapshot_reads_one_committed_state_while_another_connection_writes(tmp_path):
    path = tmp_path / "store.sqlite"
    writer = Store.create(path)
    reader = Store.open(path, readonly=True)
    try:
        with writer.mutation("insert", "2026-01-01T00:00:00.000000Z") as mut:
            writer.insert_rows(mut.seq, rows(5))
        with reader.snapshot():
            assert reader.count() == 5
            with writer.mutation("delete", "2026-01-01T00:00:01.000000Z") as mut:
                writer.delete_ids(mut.seq, ["r0", "r1"])
            assert reader.count() == 5
            assert sorted(reader.get_rows(["r0", "r1", "r4"])) == ["r0", "r1", "r4"]
            assert reader.last_seq() == 1
        assert reader.count() == 3
        assert sorted(reader.get_rows(["r0", "r1", "r4"])) == ["r4"]
        assert reader.count_since(1) == (0, 2)
    finally:
        reader.close()
        writer.close()


@pytest.mark.parametrize("mode", ["insert", "upsert"])
def test_ids_namespaces_and_metadata_of_any_text_come_back_as_written(tmp_path, mode):
    """Rows go to SQLite as one JSON array a batch; unusual text comes back exactly, and so does a
    NUL character (SQLite's JSON functions would cut a text there: those rows go one by one)."""
    catalog = Catalog(tmp_path / "indexes")
    catalog.create("idx", DIMS, "cosine")
    odd = ["a\x00b", "é😀\u2028", 'q"\\', "x\ny", "\u0000"]
    lines = [{"id": vid, "values": [1.0, 2.0, 3.0, float(i)], "namespace": vid,
              "metadata": {"t": vid, "n": i, "u": "\\u0000"}} for i, vid in enumerate(odd)]
    plain = [{"id": "plain", "values": [1.0, 0.0, 0.0, 0.0], "metadata": {"k": "v"}}]
    with catalog.open("idx", write=True) as ix:
        with_nul = [line for line in lines if "\x00" in line["id"]]
        assert getattr(ix, mode)(plain + [line for line in lines if line not in with_nul] + plain).count == 5
        assert getattr(ix, mode)(with_nul).count == 2
        assert getattr(ix, mode)([{**lines[0], "values": [9.0, 9.0, 9.0, 9.0]}]).count == 1
    with catalog.open("idx") as ix:
        got = {v.id: v for v in ix.get([*odd, "plain"])}
    assert sorted(got) == sorted([*odd, "plain"])
    for i, vid in enumerate(odd):
        assert got[vid].namespace == vid and got[vid].metadata == {"t": vid, "n": i, "u": "\\u0000"}
    # insert keeps the first copy, upsert the last
    assert got["a\x00b"].values.tolist() == ([1.0, 2.0, 3.0, 0.0] if mode == "insert" else [9.0] * 4)
    assert got["plain"].metadata == {"k": "v"}


@pytest.mark.parametrize("path", ["with json", "without json"])
def test_rows_of_large_metadata_or_without_sqlites_json_come_back_as_written(tmp_path, monkeypatch, path):
    """Rows whose metadata is large (a chunk's text), and every row where SQLite lacks its JSON
    functions, are bound row by row; what comes back is the same."""
    if path == "without json":
        monkeypatch.setattr(Store, "_json_rows", lambda self: False)
    catalog = Catalog(tmp_path / "indexes")
    catalog.create("idx", DIMS, "cosine")
    lines = [{"id": f"v{i}", "values": [1.0, 2.0, 3.0, float(i)], "namespace": "ns" if i % 2 else None,
              "metadata": {"text": "é\"x\\" * (i * 200), "i": i}} for i in range(8)]
    with catalog.open("idx", write=True) as ix:
        assert ix.upsert(lines).count == 8
    with catalog.open("idx") as ix:
        got = {v.id: v for v in ix.get([line["id"] for line in lines])}
    for line in lines:
        v = got[line["id"]]
        assert (v.namespace, v.metadata, v.values.tolist()) == (line["namespace"], line["metadata"], line["values"])


def test_a_write_whose_commit_fails_leaves_no_columns_behind(tmp_path):
    """The first write of an index creates its columns; when its COMMIT fails (a disk error), they
    are removed with it, and the index is as it was: empty and healthy."""
    catalog = Catalog(tmp_path / "indexes")
    catalog.create("idx", DIMS, "cosine")
    folder = catalog.path_of("idx")
    with catalog.open("idx", write=True) as ix:
        real = ix.store.conn

        class FailingCommit:  # (the connection, but COMMIT fails as on a full disk)
            def __getattr__(self, name):
                return getattr(real, name)

            def execute(self, sql, *args):
                if sql == "COMMIT":
                    raise sqlite3.OperationalError("disk I/O error")
                return real.execute(sql, *args)

        ix.store.conn = FailingCommit()
        try:
            with pytest.raises(StorageError):
                ix.upsert([{"id": "a", "values": [1.0, 2.0, 3.0, 4.0]}])
        finally:
            ix.store.conn = real
            real.execute("ROLLBACK") if real.in_transaction else None
    assert not [p.name for p in folder.iterdir() if p.name.startswith("values-")]
    with catalog.open("idx") as ix:
        assert ix.info().vector_count == 0
