"""Search through the library (``Catalog``/``VectorIndex``), on each way an index is searched: all
rows in the delta, a matrix plus a delta, graph parts plus a delta. A small ``Tuning`` takes each
path at a few hundred vectors; every path must give exact search's answer, computed here with NumPy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vcli.engine import Catalog, Query, Tuning, scoring
from vcli.engine.search import Searcher

DIMS = 16
N = 500
FOLD = 100  # changes after the last fold that stay in the delta (the writes below leave ~60)
MODES = {
    "delta": Tuning(fold_rows=10**6),  # never folded: every row is scanned from the store
    "matrix": Tuning(fold_rows=FOLD),
    "graph": Tuning(fold_rows=FOLD, graph_min_floats=1, graph_part_rows=150, graph_in_background=False),
}
METRICS = ("cosine", "euclidean", "dot-product")


@pytest.fixture(params=list(MODES))
def mode(request) -> str:
    return request.param


@pytest.fixture
def catalog(tmp_path, mode) -> Catalog:
    return Catalog(tmp_path / "indexes", tuning=MODES[mode])


def exact(model: dict, q, k: int, metric: str, keep=lambda vid: True) -> list[tuple[str, float]]:
    """The ``k`` best (id, score) of ``model`` ({id: float32 values}) for ``q``, ties by id."""
    ids = sorted(vid for vid in model if keep(vid))
    vecs = np.array([model[vid] for vid in ids], np.float64)
    q64 = np.asarray(q, np.float32).astype(np.float64)
    if metric == "cosine":
        scores = vecs @ q64 / (np.linalg.norm(vecs, axis=1) * np.linalg.norm(q64))
        order = sorted(range(len(ids)), key=lambda i: (-scores[i], ids[i]))
    else:
        scores = np.linalg.norm(vecs - q64, axis=1) if metric == "euclidean" else -(vecs @ q64)
        order = sorted(range(len(ids)), key=lambda i: (scores[i], ids[i]))
    return [(ids[i], float(scores[i])) for i in order[:k]]


def assert_same(result, want):
    assert [m.id for m in result.matches] == [vid for vid, _ in want]
    np.testing.assert_allclose([m.score for m in result.matches], [s for _, s in want], rtol=1e-9, atol=1e-9)


def build(catalog: Catalog, metric: str, seed: int = 0, namespaces: bool = False):
    """An index of ``N`` random vectors, folded, then changed by upserts, inserts and deletes that
    stay in the delta. Returns the index name, {id: values} now, and {id: values} replaced or
    deleted (so that queries can aim at what is gone)."""
    rng = np.random.default_rng(seed)
    catalog.create("idx", DIMS, metric)
    vals = rng.standard_normal((N, DIMS)).astype(np.float32)
    ids = [f"v{i:04d}" for i in range(N)]
    meta = [{"lang": ("en", "fr", "de")[i % 3], "n": i} for i in range(N)]
    spaces = [("a", "b")[i % 2] for i in range(N)] if namespaces else None
    with catalog.open("idx", write=True) as ix:
        ix.create_metadata_index("lang", "string")
        ix.insert_arrays(ids, vals, meta, spaces)
        model = dict(zip(ids, vals, strict=True))
        gone = {}
        replaced = ids[:10]
        new_vals = rng.standard_normal((10, DIMS)).astype(np.float32)
        ix.upsert_arrays(replaced, new_vals, meta[:10], spaces[:10] if spaces else None)
        for vid, v in zip(replaced, new_vals, strict=True):
            gone[vid], model[vid] = model[vid], v
        added = [f"w{i:04d}" for i in range(15)]
        add_vals = rng.standard_normal((15, DIMS)).astype(np.float32)
        ix.insert_arrays(added, add_vals, [{"lang": "en"}] * 15, "a" if namespaces else None)
        model.update(zip(added, add_vals, strict=True))
        deleted = ids[100:110]
        ix.delete(deleted)
        for vid in deleted:
            gone[vid] = model.pop(vid)
    return "idx", model, gone


def search_files(catalog: Catalog, name: str) -> set[str]:
    return {p.suffix for p in catalog.path_of(name).iterdir() if p.suffix in (".manifest", ".usearch")}


def test_each_mode_searches_what_it_says(catalog, mode):
    name, model, _ = build(catalog, "cosine")
    assert search_files(catalog, name) == {"delta": set(), "matrix": {".manifest"}, "graph": {".manifest", ".usearch"}}[mode]
    if mode == "graph":
        parts = [p for p in catalog.path_of(name).iterdir() if p.suffix == ".usearch"]
        assert len(parts) >= 3  # graph_part_rows=150 over ~500 vectors
    with catalog.open(name) as ix:
        assert ix.info().vector_count == len(model) == N + 15 - 10


@pytest.mark.parametrize("metric", METRICS)
def test_query_is_exact_search(catalog, metric):
    name, model, gone = build(catalog, metric)
    rng = np.random.default_rng(7)
    queries = [*rng.standard_normal((8, DIMS)).astype(np.float32), *list(gone.values())[:6]]
    with catalog.open(name) as ix:
        for q in queries:
            for k in (1, 10, 50):
                assert_same(ix.query(q, top_k=k), exact(model, q, k, metric))


def test_replaced_and_deleted_vectors_are_never_found_by_their_old_values(catalog):
    name, model, gone = build(catalog, "euclidean")
    with catalog.open(name) as ix:
        for vid, old in gone.items():
            result = ix.query(old, top_k=3)
            if vid in model:  # replaced: found again only at its new place
                assert not any(m.id == vid and m.score == 0 for m in result.matches)
            else:
                assert vid not in [m.id for m in result.matches]
            assert_same(result, exact(model, old, 3, "euclidean"))


def test_ties_are_broken_by_id_across_the_search_file_and_the_delta(catalog):
    """Twelve copies of one vector, half written before the fold and half after, in shuffled id
    order: the best k are the smallest ids, whichever file holds them."""
    rng = np.random.default_rng(3)
    catalog.create("ties", DIMS, "cosine")
    same = rng.standard_normal(DIMS).astype(np.float32)
    tied = [f"t{i:02d}" for i in rng.permutation(12)]
    others = rng.standard_normal((N, DIMS)).astype(np.float32)
    with catalog.open("ties", write=True) as ix:
        ix.insert_arrays([f"o{i:04d}" for i in range(N)] + tied[:6], np.vstack([others, np.tile(same, (6, 1))]))
        ix.insert_arrays(tied[6:], np.tile(same, (6, 1)))
    with catalog.open("ties") as ix:
        for k in (1, 4, 12):
            result = ix.query(same, top_k=k)
            assert [m.id for m in result.matches] == sorted(tied)[:k]
            assert len({m.score for m in result.matches}) == 1
        assert [m.id for m in ix.query(vector_id="t05", top_k=3).matches] == ["t00", "t01", "t02"]


def test_namespace_and_filter_search_only_what_matches(catalog):
    name, model, _ = build(catalog, "cosine", seed=1, namespaces=True)
    with catalog.open(name) as ix:
        stored = {v.id: v for v in ix.get(sorted(model))}
        q = np.random.default_rng(11).standard_normal(DIMS).astype(np.float32)
        assert_same(ix.query(q, top_k=20, namespace="b"),
                    exact(model, q, 20, "cosine", lambda vid: stored[vid].namespace == "b"))
        assert_same(ix.query(q, top_k=20, filter={"lang": "en"}),
                    exact(model, q, 20, "cosine", lambda vid: stored[vid].metadata["lang"] == "en"))
        assert_same(ix.query(q, top_k=20, namespace="a", filter={"lang": {"$ne": "en"}}),
                    exact(model, q, 20, "cosine",
                          lambda vid: stored[vid].namespace == "a" and stored[vid].metadata["lang"] != "en"))
        assert ix.query(q, top_k=5, namespace="nowhere").matches == []


def test_a_batch_answers_as_its_queries_one_by_one(catalog):
    """``query_many`` scores a batch's queries together (blocks, and groups sharing a filter);
    each answer is the one ``query`` gives."""
    name, model, gone = build(catalog, "dot-product", seed=2, namespaces=True)
    rng = np.random.default_rng(5)
    batch = []
    for i, q in enumerate([*rng.standard_normal((30, DIMS)).astype(np.float32), *gone.values()]):
        batch.append(Query(q.tolist(), top_k=1 + i % 20, namespace=(None, "a", "b")[i % 3],
                           filter={"lang": "fr"} if i % 4 == 0 else None))
    with catalog.open(name) as ix:
        together = list(ix.query_many(batch))
        alone = [ix.answer(query) for query in batch]
    assert [[(m.id, m.score) for m in r.matches] for r in together] == \
        [[(m.id, m.score) for m in r.matches] for r in alone]
    assert all(r.matches for r in together)


def test_a_search_maps_the_values_once(catalog, mode):
    """The matrix reads its rows through the same map of the values column as the rescoring:
    two maps of one file would each count every page a batch touches in its resident memory."""
    maps = Path("/proc/self/maps")
    if not maps.exists():
        pytest.skip("needs Linux's /proc")
    name, _, _ = build(catalog, "cosine")
    rng = np.random.default_rng(7)
    with catalog.open(name) as ix:
        answers = ix.query_many([Query(q.tolist(), top_k=5) for q in rng.standard_normal((3, DIMS)).astype(np.float32)])
        assert next(answers).matches  # (the searcher is open until the last answer)
        mapped = [line for line in maps.read_text().splitlines() if line.endswith(".f32") and "/values-" in line]
        assert len(mapped) == 1, mapped
        assert len(list(answers)) == 2


def test_top_k_above_the_count_returns_every_vector(tmp_path, mode):
    catalog = Catalog(tmp_path, tuning=MODES[mode])
    catalog.create("few", 3, "euclidean")
    with catalog.open("few", write=True) as ix:
        ix.insert([{"id": str(i), "values": [i, 0, 0]} for i in range(5)])
        assert [m.id for m in ix.query([0, 0, 0], top_k=50).matches] == ["0", "1", "2", "3", "4"]


def test_a_batch_gathers_a_filters_rows_on_an_index_without_a_matrix(tmp_path):
    """An index whose rows all sit in the delta (too few for a matrix) answers a batch whose
    filter's lines are routed to their own rows (``masked_row_cost`` huge): from the delta
    alone, as one-shot queries do (it used to stop on an internal assertion)."""
    catalog = Catalog(tmp_path, tuning=Tuning(fold_rows=3, masked_row_cost=1e12))
    catalog.create("few", 3, "cosine")
    with catalog.open("few", write=True) as ix:
        ix.create_metadata_index("t", "string")
        ix.upsert([{"id": "a", "values": [3, -2, 3]}, {"id": "b", "values": [-1, -1, -3], "metadata": {"t": "y"}},
                   {"id": "c", "values": [-3, 1, -3]}])
        ix.delete(["c"])
    batch = [Query([1, 3, 3], top_k=5, filter={"t": {"$ne": "x"}}), Query([-1, 2, 3], top_k=3),
             Query([1, 2, 3], top_k=2, filter={"t": {"$nin": ["x"]}})] * 2
    with catalog.open("few") as ix:
        together = list(ix.query_many(batch))
        alone = [ix.answer(query) for query in batch]
    assert [[(m.id, m.score) for m in r.matches] for r in together] == \
        [[(m.id, m.score) for m in r.matches] for r in alone]
    assert [m.id for m in together[0].matches] == ["a", "b"]


@pytest.mark.parametrize("metric", ["cosine", "euclidean", "dot-product"])
def test_a_filtered_batch_of_huge_and_tiny_queries(tmp_path, metric):
    """Queries of norm ~1e20 and ~1e-20 against an index of ordinary vectors, every filtered line
    from its filter's rows, gathered (``masked_row_cost`` huge): their bfloat16 products would
    overflow or flush to zero, so their rows are scored in float32 (``scoring.prescorable``),
    and each line gets its exact top k."""
    rng = np.random.default_rng(2)
    vecs = rng.standard_normal((400, 16)).astype(np.float32)
    catalog = Catalog(tmp_path, tuning=Tuning(fold_rows=5, masked_row_cost=1e12, score_groups=16))
    catalog.create("ix", 16, metric)
    with catalog.open("ix", write=True) as ix:
        ix.create_metadata_index("t", "string")
        ix.insert([{"id": f"v{i:04d}", "values": v.tolist(), "metadata": {"t": "ab"[i % 2]}}
                   for i, v in enumerate(vecs)])
    queries = [rng.standard_normal(16).astype(np.float32) * np.float32(s) for s in (1e20, 1e-20, 1e-14, 1.0)]
    batch = [Query(q.tolist(), top_k=5, filter={"t": "a"}) for q in queries] * 2
    with catalog.open("ix") as ix:
        answers = list(ix.query_many(batch))
    mine = vecs[::2]
    for query, answer in zip(batch, answers, strict=True):
        exact = scoring.exact_scores(metric, np.asarray(query.vector, np.float32), mine)
        order = np.lexsort((np.arange(len(mine)), -exact if metric == "cosine" else exact))[:5]
        assert [m.id for m in answer.matches] == [f"v{2 * i:04d}" for i in order]


def three_hundred(tmp_path, seed: int, metric: str, tuning: Tuning) -> tuple[Catalog, np.ndarray]:
    """An index "ix" of 300 random vectors of 8 dimensions, ``v000``..., with a matrix."""
    vecs = np.random.default_rng(seed).standard_normal((300, 8)).astype(np.float32)
    catalog = Catalog(tmp_path, tuning=tuning)
    catalog.create("ix", 8, metric)
    with catalog.open("ix", write=True) as ix:
        ix.insert([{"id": f"v{i:03d}", "values": v.tolist()} for i, v in enumerate(vecs)])
    return catalog, vecs


@pytest.mark.parametrize("prescore", [True, False])
def test_a_batch_keeps_the_gathered_copies_its_block_uses(tmp_path, prescore):
    """With room for one gathered copy, gathering a second gives up none that the current block
    uses (``busy``), whether the copies are bfloat16 or float32 (``Tuning.prescore``)."""
    catalog, vecs = three_hundred(tmp_path, 4, "euclidean", Tuning(
        fold_rows=5, gather_floats=200 * 8 // (2 if prescore else 1), prescore=prescore, score_groups=16))
    with catalog.open("ix") as ix, Searcher(ix.search_files, []) as searcher:
        assert searcher.matrix is not None and len(searcher.matrix.keys) == 300
        keys = np.sort(searcher.matrix.keys)
        first = searcher.candidates_within(vecs[:2], [3, 3], keys[:150], "first")
        second = searcher.candidates_within(vecs[2:4], [3, 3], keys[150:], "second", frozenset({"first"}))
        assert [(kept, token) for kept, token in searcher._subsets] == [(prescore, "first")]
        again = searcher.candidates_within(vecs[:2], [3, 3], keys[:150], "first")
    assert first == again and len(second) == 2


def test_a_batch_keeps_float32_where_numkong_has_only_its_serial_kernel(tmp_path):
    """On a CPU where NumKong finds no SIMD instructions (here switched off), its bfloat16 kernel
    is about fifty times slower than float32 BLAS: gathered rows stay float32, and the
    answers are the same."""
    import numkong

    catalog, vecs = three_hundred(tmp_path, 6, "cosine", Tuning(fold_rows=5, masked_row_cost=1e12, score_groups=16))
    answers, kept = [], []
    simd = [isa for isa, on in numkong.get_capabilities().items() if on and isa != "serial"]
    for serial in (False, True):
        try:
            for isa in simd if serial else ():
                numkong.disable_capability(isa)
            with catalog.open("ix") as ix, Searcher(ix.search_files, []) as searcher:
                keys = np.sort(searcher.matrix.keys)[::2]
                answers.append([sorted(c) for c in searcher.candidates_within(vecs[:3], [4, 4, 4], keys, "half")])
                kept.append([brief for brief, _token in searcher._subsets])
        finally:
            for isa in simd:
                numkong.enable_capability(isa)
    assert kept == [[bool(simd)], [False]]
    assert answers[0] == answers[1]


def test_a_batch_scores_products_of_many_queries_in_float32(tmp_path):
    """Products of ``Tuning.prescore_queries`` queries or more are scored from a float32 copy
    (BLAS's float32 products overtake one thread's bfloat16 ones), fewer from a bfloat16 one;
    the candidates are the same."""
    catalog, vecs = three_hundred(tmp_path, 8, "dot-product", Tuning(fold_rows=5, prescore_queries=3, score_groups=16))
    with catalog.open("ix") as ix, Searcher(ix.search_files, []) as searcher:
        keys = np.sort(searcher.matrix.keys)[1::2]
        few = searcher.candidates_within(vecs[:2], [5, 5], keys, "few")
        many = searcher.candidates_within(vecs[:3], [5, 5, 5], keys, "many")
        assert [(brief, token) for brief, token in searcher._subsets] == [(scoring.prescore_fast(), "few"),
                                                                        (False, "many")]
    assert [sorted(c) for c in few] == [sorted(c) for c in many[:2]]
