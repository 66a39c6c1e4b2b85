"""Scores: Vectorize's score per metric, computed in float64 from the stored float32 values, as the
library returns them; and the float32 arithmetic that picks candidates staying within the
tolerance that makes exact rescoring safe (vcli/engine/scoring.py)."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import GOLDEN, GOLDEN_QUERY

from vcli.engine import Catalog, Tuning, scoring

MATRIX = Tuning(fold_rows=8)  # a matrix from 9 vectors on


def numpy_score(metric: str, v, q) -> float:
    v = np.asarray(np.float32(v), np.float64)
    q = np.asarray(np.float32(q), np.float64)
    if metric == "cosine":
        return float(np.dot(v, q) / (np.linalg.norm(v) * np.linalg.norm(q)))
    if metric == "euclidean":
        return float(np.sqrt(np.sum((v - q) ** 2)))
    return float(-np.dot(v, q))


@pytest.mark.parametrize("metric", ["cosine", "euclidean", "dot-product"])
def test_golden_scores_per_metric(tmp_path, metric):
    """Every score of the five launch-post vectors, and their order: cosine highest first, the
    euclidean distance and the negative dot product lowest first."""
    catalog = Catalog(tmp_path)
    catalog.create("golden", 3, metric)
    with catalog.open("golden", write=True) as ix:
        ix.insert([{"id": vid, "values": v} for vid, v in GOLDEN])
        result = ix.query(GOLDEN_QUERY, top_k=5)
    want = {vid: numpy_score(metric, v, GOLDEN_QUERY) for vid, v in GOLDEN}
    assert {m.id: m.score for m in result.matches} == pytest.approx(want, rel=1e-12, abs=1e-12)
    scores = [m.score for m in result.matches]
    assert scores == sorted(scores, reverse=metric == "cosine")
    if metric == "cosine":
        assert [m.id for m in result.matches] == ["5", "4", "2", "1", "3"]


@pytest.mark.parametrize("tuning", [None, MATRIX], ids=["delta", "matrix"])
@pytest.mark.parametrize("metric", ["euclidean", "dot-product"])
def test_huge_values_are_scored_without_overflow(tmp_path, tuning, metric):
    """Values near 1e20 (float32 holds them; their squares overflow float32) rank and score as in
    float64: the delta and the matrix switch to float64 above ``scoring.SAFE_NORM``."""
    rng = np.random.default_rng(0)
    vals = (rng.standard_normal((40, 4)) * 1e20).astype(np.float32)
    q = (rng.standard_normal(4) * 1e20).astype(np.float32)
    catalog = Catalog(tmp_path, tuning=tuning)
    catalog.create("huge", 4, metric)
    with catalog.open("huge", write=True) as ix:
        ix.insert_arrays([f"h{i:02d}" for i in range(40)], vals)
        result = ix.query(q, top_k=10)
    want = sorted(((f"h{i:02d}", numpy_score(metric, v, q)) for i, v in enumerate(vals)), key=lambda t: (t[1], t[0]))
    assert [m.id for m in result.matches] == [vid for vid, _ in want[:10]]
    assert [m.score for m in result.matches] == pytest.approx([s for _, s in want[:10]], rel=1e-9)
    assert all(np.isfinite(m.score) for m in result.matches)


@pytest.mark.parametrize("metric", ["cosine", "euclidean", "dot-product"])
def test_exact_scores_are_float64_per_row(metric):
    rng = np.random.default_rng(1)
    vecs = rng.standard_normal((200, 24)).astype(np.float32)
    q = rng.standard_normal(24).astype(np.float32)
    got = scoring.exact_scores(metric, q, vecs)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, [numpy_score(metric, v, q) for v in vecs], rtol=1e-12, atol=1e-12)
    # A row's score does not depend on which other rows are scored with it: ties stay ties.
    np.testing.assert_array_equal(scoring.exact_scores(metric, q, vecs[[5, 5, 7]]), got[[5, 5, 7]])


def test_a_zero_vector_scores_zero_under_cosine():
    vecs = np.array([[0, 0, 0], [1, 0, 0]], np.float32)
    assert scoring.exact_scores("cosine", np.array([1, 1, 0], np.float32), vecs).tolist() == \
        pytest.approx([0.0, 2 ** -0.5])
    assert scoring.exact_scores("cosine", np.zeros(3, np.float32), vecs).tolist() == [0.0, 0.0]


@pytest.mark.parametrize("metric", ["cosine", "euclidean", "dot-product"])
def test_float32_distances_stay_within_the_tolerance(metric):
    """The candidates' float32 distances (lower is better: the negative cosine, the squared L2
    distance, the negative dot product) differ from exact ones by less than ``tolerance``: the
    margin a search keeps beyond the k-th so that rescoring in float64 picks the right k."""
    rng = np.random.default_rng(2)
    vecs = (rng.standard_normal((500, 64)) * rng.uniform(0.01, 100, (500, 1))).astype(np.float32)
    norms = scoring.row_norms(vecs)
    for q in rng.standard_normal((5, 64)).astype(np.float32):
        got = scoring.distances(metric, q, vecs, norms).astype(np.float64)
        exact = scoring.exact_scores(metric, q, vecs)
        if metric == "cosine":
            exact = -exact
        elif metric == "euclidean":
            exact = exact**2
        assert np.abs(got - exact).max() <= scoring.tolerance(metric, q, scoring.max_norm(norms))
        batch = scoring.batch_distances(metric, q[None, :], vecs, norms)[0].astype(np.float64)
        assert np.abs(batch - exact).max() <= scoring.tolerance(metric, q, scoring.max_norm(norms))


@pytest.mark.parametrize("metric", ["cosine", "euclidean", "dot-product"])
def test_bfloat16_prescores_stay_within_their_error(metric):
    """A batch's condition rows are scored first from a bfloat16 copy (``prescore_distances``):
    each distance is within ``prescore_error`` of the exact one (plus float32's ``tolerance``),
    whatever the scale of rows and queries, and the rows within twice that of the k-th smallest
    pre-score hold the exact top k. Norms bfloat16 products cannot take are refused."""
    rng = np.random.default_rng(3)
    vecs = (rng.standard_normal((3000, 384)) * rng.uniform(0.01, 100, (3000, 1))).astype(np.float32)
    vecs[:40] = vecs[40:80] * np.float32(1 + 1e-6)  # near-ties, which bfloat16 cannot tell apart
    norms = scoring.row_norms(vecs)
    queries = (rng.standard_normal((7, 384)) * rng.uniform(0.1, 10, (7, 1))).astype(np.float32)
    queries[0] = vecs[50]
    pre = scoring.prescore_distances(metric, queries, scoring.to_bf16(vecs), norms, chunk=1024)
    assert pre.flags.c_contiguous and pre.dtype == np.float32
    pre = pre.astype(np.float64)
    assert pre.shape == (7, 3000) and not np.array_equal(pre, scoring.batch_distances(metric, queries, vecs, norms))
    for q, row in zip(queries, pre, strict=True):
        exact = scoring.exact_scores(metric, q, vecs)
        exact = -exact if metric == "cosine" else exact**2 if metric == "euclidean" else exact
        bound = scoring.max_norm(norms)
        err = scoring.prescore_error(metric, q, bound) + scoring.tolerance(metric, q, bound)
        assert np.abs(row - exact).max() <= err
        kept = scoring.top_candidates(np.arange(len(vecs)), row.astype(np.float32), 10, 2 * err)
        assert set(np.argsort(exact, kind="stable")[:10]) <= set(kept.tolist())
    assert scoring.prescorable(norms) and scoring.prescorable(np.array([0.0, 1e-11, 1e17]))
    assert not scoring.prescorable(np.array([1.0, 1e-13])) and not scoring.prescorable(np.array([1.0, 1e19]))


@pytest.mark.parametrize("metric", ["cosine", "euclidean", "dot-product"])
@pytest.mark.parametrize("dims", [1, 7, 384, 1536])
def test_bfloat16_prescore_error_bound_is_tight(metric, dims):
    """The worst input for bfloat16: every number just below a rounding midpoint (rounded down by
    nearly 2^-8) and the query pointing the same way, so that no error cancels. The pre-score
    strays by more than half ``prescore_error`` (a bound much looser than the error would widen
    the window for nothing) and never beyond it. (For cosine, a third: the query is divided by
    its norm before it is rounded, which the input cannot place below a midpoint; with one
    dimension it is then 1, rounded exactly.)"""
    rng = np.random.default_rng(dims)
    x = np.float32(1 + 2**-8 - 2**-20)
    vecs = np.full((50, dims), x, np.float32) * rng.uniform(0.5, 2, (50, 1)).astype(np.float32)
    vecs[0] = 2 * x  # the longest row, each number still just below a midpoint
    queries = np.full((3, dims), x, np.float32) * np.float32([[1], [2**-10], [2**6]])
    norms = scoring.row_norms(vecs)
    pre = scoring.prescore_distances(metric, queries, scoring.to_bf16(vecs), norms)
    bound = scoring.max_norm(norms)
    for q, row in zip(queries, pre.astype(np.float64), strict=True):
        exact = scoring.exact_scores(metric, q, vecs)
        exact = -exact if metric == "cosine" else exact**2 if metric == "euclidean" else exact
        pe = scoring.prescore_error(metric, q, bound)
        assert pe / (3 if metric == "cosine" else 2) < np.abs(row - exact).max() <= pe


def test_top_candidates_keeps_every_tie_of_the_kth():
    keys = np.arange(10, 20)
    dists = np.array([0.5, 0.1, 0.2, 0.2, 0.9, 0.2, np.inf, 0.3, 0.2000001, 0.1], np.float32)
    assert sorted(scoring.top_candidates(keys, dists, 3, 0.0).tolist()) == [11, 12, 13, 15, 19]
    assert sorted(scoring.top_candidates(keys, dists, 3, 1e-6).tolist()) == [11, 12, 13, 15, 18, 19]
    assert sorted(scoring.top_candidates(keys, dists, 2, 0.0).tolist()) == [11, 19]
    # fewer finite rows than k: all of them, never an infinite one
    assert sorted(scoring.top_candidates(keys, dists, 20, 0.0).tolist()) == [10, 11, 12, 13, 14, 15, 17, 18, 19]
    rows = scoring.top_candidates_rows(np.vstack([keys, keys]), np.vstack([dists, dists]), [3, 1], [0.0, 0.0])
    assert [sorted(r.tolist()) for r in rows] == [[11, 12, 13, 15, 19], [11, 19]]


@pytest.mark.parametrize("metric", ["cosine", "euclidean", "dot-product"])
def test_bfloat16_rows_read_in_place_score_as_a_copy_of_them(metric):
    """``Bf16Rows`` over some rows of a larger array (a graph part's values, by node), sliced and
    picked as a batch's cells are, scores exactly as a copy of those rows does, across the
    chunks ``prescore_distances`` reads them in; rows outside the array are refused."""
    rng = np.random.default_rng(8)
    vecs = rng.standard_normal((5000, 48)).astype(np.float32)
    everything = scoring.to_bf16(vecs)
    nodes = rng.choice(len(vecs), 2600, replace=False)
    queries = rng.standard_normal((70, 48)).astype(np.float32)
    in_place = scoring.Bf16Rows(everything.bits, nodes)
    copy = scoring.to_bf16(vecs, nodes)
    norms = scoring.row_norms(vecs[nodes])
    for got, want, picked in [(in_place, copy, slice(None)), (in_place[100:2300], copy[100:2300], slice(100, 2300)),
                              (in_place[nodes % 3 == 0][7:], copy[nodes % 3 == 0][7:], np.flatnonzero(nodes % 3 == 0)[7:])]:
        assert np.array_equal(scoring.prescore_distances(metric, queries, got, norms[picked], chunk=1000),
                              scoring.prescore_distances(metric, queries, want, norms[picked], chunk=1000))
    with pytest.raises(ValueError):
        scoring.Bf16Rows(everything.bits, np.array([0, 5000]))
