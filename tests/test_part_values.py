"""A filtered batch on a graph gathers its rows' bfloat16 copies from the graph parts' own values
(``graph.part_values``), on as many background threads as the machine has cores. Every answer
stays exact: a part whose file is not laid out as expected, or whose values are not its vectors
rounded to bfloat16, is not used, and the batch gives the same ids and scores with one thread or
two."""

from __future__ import annotations

import shutil
import threading

import numpy as np
import pytest

from vcli.engine import Catalog, Query, Tuning
from vcli.engine.graph import PartValues, part_values
from vcli.engine.layout import Folder
from vcli.engine.lock import writer_lock
from vcli.engine.scoring import to_bf16
from vcli.engine.search import Searcher
from vcli.engine.search.groups import Grouped

DIMS = 24
N = 900
GRAPHS = Tuning(graph_min_floats=1, graph_part_rows=300, graph_in_background=False, fold_rows=5)


def build(tmp_path, tuning: Tuning = GRAPHS, metric: str = "cosine", uncovered: int = 40) -> tuple[Catalog, np.ndarray]:
    """An index of ``N`` vectors in graph parts (three of ``GRAPHS``' size), then ``uncovered``
    more no part covers yet."""
    rng = np.random.default_rng(3)
    catalog = Catalog(tmp_path / "indexes", tuning=tuning)
    catalog.create("ix", DIMS, metric)
    vals = rng.standard_normal((N + 40, DIMS)).astype(np.float32)
    meta = [{"u": f"u{i % 9}", "c": f"c{i % 4}", "f": bool(i % 2)} for i in range(N + 40)]
    with catalog.open("ix", write=True) as ix:
        for prop, kind in (("u", "string"), ("c", "string"), ("f", "boolean")):
            ix.create_metadata_index(prop, kind)
        ids = [f"v{i:04d}" for i in range(N + 40)]
        ix.insert_arrays(ids[:N], vals[:N], meta[:N], [("even", "odd")[i % 2] for i in range(N)])
    folder = Folder(tmp_path / "indexes" / "ix")
    if uncovered:
        with writer_lock(folder.build_lock, 0), catalog.open("ix", write=True) as ix:  # (no part built for them)
            ix.insert_arrays(ids[N : N + uncovered], vals[N : N + uncovered], meta[N : N + uncovered],
                             [("even", "odd")[i % 2] for i in range(N, N + uncovered)])
    return catalog, vals[: N + uncovered]


def parts(searcher: Searcher) -> list:
    assert searcher.graph is not None
    return searcher.graph.files


def test_each_key_finds_its_vector_rounded_to_bfloat16(tmp_path):
    catalog, _ = build(tmp_path)
    with catalog.open("ix") as ix, Searcher(ix.search_files, []) as searcher:
        m = searcher.matrix
        assert m is not None and len(parts(searcher)) == 3
        found = 0
        for part in parts(searcher):
            values = part_values(part, m, 64)
            assert values is not None
            keys = np.asarray(m.keys)
            nodes = values.nodes(np.arange(len(keys)))
            held = nodes >= 0
            inside = (keys >= part.lo) & (keys <= part.hi)
            assert (held == inside).all()  # every key of its range, and none other
            want = to_bf16(m.values, np.flatnonzero(held)).bits
            got = values.vectors[nodes[held]]
            # usearch rounds a tie to even, vcli away from zero: one unit apart at most
            assert np.abs(got.astype(np.int32) - want.astype(np.int32)).max() <= 1
            found += int(held.sum())
        assert found == N  # the 40 rows written since are in no part


def damaged(path, how: str) -> None:
    data = bytearray(path.read_bytes())
    if how == "truncated":
        del data[-10:]
    else:  # the head after the vectors
        at = 8 + int.from_bytes(data[0:4], "little") * int.from_bytes(data[4:8], "little")
        data[at : at + 7] = b"xsearch"
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["truncated", "head", "unrounded"])
def test_a_part_not_as_expected_is_not_used(tmp_path, how):
    catalog, _ = build(tmp_path)
    with catalog.open("ix") as ix, Searcher(ix.search_files, []) as searcher:
        m = searcher.matrix
        part = parts(searcher)[0]
        copy = tmp_path / "copy.usearch"
        shutil.copy(part.path, copy)
        if how == "unrounded":  # each number cut to bfloat16 rather than rounded: up to twice the error
            values = part_values(part, m, 64)
            assert values is not None
            rows = np.flatnonzero((m.keys >= part.lo) & (m.keys <= part.hi))
            exact = np.asarray(m.values[rows], np.float32)
            cut = (exact.view(np.uint32) >> 16).astype(np.uint16)
            raw = bytearray(copy.read_bytes())
            nodes = values.nodes(rows)
            block = np.frombuffer(raw, np.uint16, count=len(nodes) * DIMS, offset=8).reshape(-1, DIMS).copy()
            block[nodes[nodes >= 0]] = cut[nodes >= 0]
            raw[8 : 8 + block.nbytes] = block.tobytes()
            copy.write_bytes(bytes(raw))
        else:
            damaged(copy, how)
        assert part_values(part._replace(path=copy), m, 64) is None


def lines(vals: np.ndarray, count: int) -> list[Query]:
    """A batch with a filter on almost every line, as a retrieval service's log has them."""
    rng = np.random.default_rng(11)
    out = []
    for i in range(count):
        q = vals[rng.integers(len(vals))] + rng.standard_normal(DIMS).astype(np.float32)
        kind = i % 4
        flt = [{"u": f"u{i % 9}"}, {"u": {"$in": [f"u{i % 9}", f"u{(i + 4) % 9}"]}},
               {"c": {"$in": [f"c{i % 4}", f"c{(i + 1) % 4}"]}, "f": bool(i % 3)}, {"c": f"c{i % 4}"}][kind]
        out.append(Query(vector=q.tolist(), top_k=(10, 3)[i % 2], filter=flt,
                         namespace=(None, "even", "odd")[i % 3]))
    return out


def answers(catalog: Catalog, batch: list[Query], tuning: Tuning) -> list[list[tuple[str, float]]]:
    with Catalog(catalog.data_dir, tuning=tuning).open("ix") as ix:
        return [[(m.id, m.score) for m in r.matches] for r in ix.query_many(batch)]


@pytest.mark.parametrize("metric", ["cosine", "euclidean", "dot-product"])
def test_a_many_filter_batch_is_exact_from_the_parts_values(tmp_path, metric, monkeypatch):
    """The batch from the parts' values (on two threads, or one) gives what each of its
    lines gives alone through an exact scan of the matrix (the graph never consulted: its rows
    few enough for every filter)."""
    catalog, vals = build(tmp_path, metric=metric)
    batch = lines(vals, 120)
    # every filter by its conditions, in groups of columns few enough that the pre-score chooses
    # which rows are rescored (with too few, every row is)
    cheap = GRAPHS._replace(product_rows=0, graph_rows_per_depth=10**9, score_groups=16)
    read: list[int] = []
    nodes = PartValues.nodes
    monkeypatch.setattr(PartValues, "nodes", lambda self, rows: read.append(len(rows)) or nodes(self, rows))
    got = answers(catalog, batch, cheap._replace(batch_threads=2))
    assert sum(read) > 0  # the copies came from the parts' values
    assert got == answers(catalog, batch, cheap._replace(batch_threads=1))
    assert got == answers(catalog, batch, cheap._replace(prescore=False, batch_threads=1))
    with Catalog(catalog.data_dir, tuning=cheap._replace(filter_exact_rows=10**6)).open("ix") as ix:
        for line, found in zip(batch, got, strict=True):
            alone = ix.query(line.vector, top_k=line.top_k, filter=line.filter, namespace=line.namespace)
            assert [m.id for m in alone.matches] == [i for i, _ in found]
            np.testing.assert_allclose([m.score for m in alone.matches], [s for _, s in found], rtol=1e-9)


def test_a_copy_being_gathered_is_waited_for_not_gathered_twice(tmp_path):
    catalog, _ = build(tmp_path)
    with catalog.open("ix") as ix, Searcher(ix.search_files, []) as searcher:
        rows = np.arange(0, N, 3)
        calls, release = [], threading.Event()

        def slow():
            calls.append(1)
            release.wait(30)
            return searcher._gather(rows, True)

        got: list = []
        threads = [threading.Thread(target=lambda: got.append(searcher._kept("t", frozenset(), len(rows), slow, True)))
                   for _ in range(3)]
        for t in threads:
            t.start()
        deadline = threading.Event()
        for _ in range(300):  # until one thread gathers and the others wait on it (30 s at most)
            if calls:
                break
            deadline.wait(0.1)
        release.set()
        for t in threads:
            t.join(30)
        assert len(calls) == 1 and len(got) == 3
        assert all(g is got[0] for g in got)


def test_the_windows_are_rescored_a_bounded_run_of_lines_at_a_time(tmp_path, monkeypatch):
    """The pre-score windows of a product's lines are rescored in float32 together, but never more
    rows at once than ``groups.RESCORED`` (or one line's window, when that alone is more): the
    batch's memory does not grow with its lines. The answers are those of the default runs."""
    from vcli.engine.search import groups

    catalog, vals = build(tmp_path)
    batch = lines(vals, 80)
    tuning = GRAPHS._replace(product_rows=0, graph_rows_per_depth=10**9, score_groups=16, batch_threads=1)
    want = answers(catalog, batch, tuning)
    calls: list[tuple[int, int]] = []  # (rows rescored in one call, the lines they are of)
    paired = groups.paired_distances

    def spy(metric, queries, vecs, norms):
        calls.append((len(vecs), len(np.unique(queries, axis=0))))  # (each line has a query of its own)
        return paired(metric, queries, vecs, norms)

    monkeypatch.setattr(groups, "paired_distances", spy)
    monkeypatch.setattr(groups, "RESCORED", 40)
    assert answers(catalog, batch, tuning) == want
    assert any(lines > 1 for _, lines in calls)  # (lines were rescored together)
    assert all(rows <= 40 for rows, lines in calls if lines > 1)


def test_rows_one_part_holds_are_read_where_they_lie(tmp_path, monkeypatch):
    """With one part holding every row, a condition's bfloat16 rows are read from the part's
    values in place (``scoring.Bf16Rows`` over its nodes: no copy is made), and the batch gives
    what each line gives alone, on one thread or two."""
    catalog, vals = build(tmp_path, GRAPHS._replace(graph_part_rows=N), uncovered=0)
    batch = lines(vals, 120)
    cheap = GRAPHS._replace(graph_part_rows=N, product_rows=0, graph_rows_per_depth=10**9, score_groups=16)
    made: list = []
    bf16 = Grouped._bf16
    monkeypatch.setattr(Grouped, "_bf16", lambda self, rows: made.append(bf16(self, rows)) or made[-1])
    got = answers(catalog, batch, cheap._replace(batch_threads=2))
    assert made and all(r.nodes is not None for r in made)  # every condition read in place
    assert got == answers(catalog, batch, cheap._replace(batch_threads=1))
    assert got == answers(catalog, batch, cheap._replace(prescore=False, batch_threads=1))
    with Catalog(catalog.data_dir, tuning=cheap._replace(filter_exact_rows=10**6)).open("ix") as ix:
        for line, found in zip(batch, got, strict=True):
            alone = ix.query(line.vector, top_k=line.top_k, filter=line.filter, namespace=line.namespace)
            assert [(m.id, m.score) for m in alone.matches] == found
