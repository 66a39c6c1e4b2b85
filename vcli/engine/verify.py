"""Does a search file fit the store? The checks a query runs on the file it opens (``verify``)
and the thorough one of ``vcli check`` (``check_contents``). Each raises or returns what is wrong.
"""

from __future__ import annotations

import random

import numpy as np

from .columns import Values, open_values
from .layout import Folder, SearchFile
from .matrix import in_sorted, segment_problems
from .store import Store

# A graph (opened without its key table) is checked by searching it for a few of its matrix's
# vectors and comparing what it finds with the matrix (see ``_check_graph_finds``), each search
# for this many results at this ef.
SEARCH_SAMPLES = 4
SEARCH_SAMPLE_COUNT = 8
SEARCH_SAMPLE_EF = 64
# bfloat16 rounds each number of both vectors by up to 2^-8 of it, which moves a squared L2
# distance by up to ~2^-6 of |q|^2 + |v|^2 (and a dot product by less of |q||v|); a graph of other
# vectors is off by about the whole scale. A graph is foreign when most distances are off.
DISTANCE_TOLERANCE = 0.03
CHUNK = 8192


class StaleFile(ValueError):
    """A search file older than the removals the store still remembers: a writer has replaced it
    (or it was restored from an old copy), so it cannot be caught up any more."""


def verify(store: Store, file: SearchFile, obj, *, samples: int, matrix=None, values: Values | None = None) -> None:
    """Cheap checks, inside a store snapshot, that a loaded file fits this store. A matrix: not
    newer than the store, still catchable (``StaleFile`` otherwise), and ``samples`` vectors from
    each side equal in both. A graph part: at least as many vectors as ``matrix`` (the loaded
    newest matrix, itself verified) has in its key range, and a few of those found in it by
    search. ``values``: the snapshot's (``columns.open_values``), when open already. Raises
    ``ValueError`` saying what is wrong."""
    rng = random.Random()  # (not numpy.random: it costs a one-shot query ~20 ms of imports)
    if file.kind == "graph":
        if file.seq > matrix.seq:
            raise ValueError(f"it is from mutation {file.seq}, newer than the matrix's {matrix.seq}")
        from .graph import rows_of  # (usearch: a graph has been opened already)

        _check_graph_finds(obj, matrix, rows_of(matrix, file), rng, min(samples, SEARCH_SAMPLES))
        return
    seq = file.seq
    last = store.last_seq()
    if seq > last:
        raise ValueError(f"it is from mutation {seq} but the store has only {last}: it belongs to another index")
    pruned = store.pruned_upto()
    if seq < pruned:
        raise StaleFile(f"it is from mutation {seq}, older than the removals the store keeps ({pruned})")
    if values is None:
        values = open_values(store, obj.values.shape[1])
    n = len(obj.keys)
    if n:
        pos = np.array(sorted({0, n - 1, *(rng.randrange(n) for _ in range(samples))}))
        pos = pos[~in_sorted(obj.keys[pos], obj.gone)]  # (a tombstone's key is gone from the store)
        _check_file_keys(store, seq, obj.keys[pos], obj.values[pos], values)
    lo, hi = store.key_range()
    if lo is None or hi is None:  # (both are, in an empty store)
        return
    for pivot in sorted({lo, hi, *(rng.randint(lo, hi) for _ in range(samples))}):
        key = store.first_key_from(pivot, seq)
        if key is not None:
            _check_matrix_has(obj, key, _values_of(values, [key])[0].tobytes())


def _values_of(values: Values, keys) -> np.ndarray:
    try:
        return values.of(keys)
    except RuntimeError as exc:  # (MissingValues: the columns are damaged)
        raise ValueError(str(exc)) from None


def _check_file_keys(store: Store, seq: int, keys, vecs, values: Values) -> None:
    """Each of the file's ``keys`` existed at ``seq`` in the store, with these values ``vecs``."""
    wanted = [int(k) for k in keys]
    live = store.written_for_keys(wanted)
    gone = store.removed_since_among(wanted, seq)
    stored = dict(zip(live, _values_of(values, list(live)), strict=True))
    for key, vec in zip(wanted, vecs, strict=True):
        if key in live:
            if live[key] > seq or stored[key].tobytes() != np.asarray(vec, "<f4").tobytes():
                raise ValueError(f"its vector {key} differs from the store's: it belongs to another index")
        elif key not in gone:
            raise ValueError(f"it holds vector {key}, which the store did not have at mutation {seq}")

def check_contents(store: Store, file: SearchFile, obj, matrix=None) -> str | None:
    """``vcli check``'s thorough look, after ``verify``: a matrix's columns match their checksums
    (``matrix.segment_problems``) and, tombstones aside, it holds exactly the keys the store had
    at its mutation, with the same values and norms; a graph part every key ``matrix`` (the
    newest) has in its key range and no key outside it (its values are the matrix's, rounded to
    bfloat16, and serve only to find candidates; keys gone since it was built may remain). What
    is wrong, or None."""
    seq = file.seq
    if file.kind == "graph":
        from .graph import rows_of

        keys = np.sort(np.asarray(obj.keys, np.uint64).astype(np.int64))
        wanted = np.asarray(matrix.keys[rows_of(matrix, file)], np.int64)
        wanted = wanted[~in_sorted(wanted, matrix.gone)]  # (a part leaves tombstones out)
        missing = np.setdiff1d(wanted, keys, assume_unique=True).size
        outside = int(((keys < file.lo) | (keys > file.hi)).sum())
        if missing or outside:
            return (f"does not hold the vectors of keys {file.lo}..{file.hi} of matrix-{matrix.seq} "
                    f"({missing} missing, {outside} outside its keys)")
        return None
    else:
        wrong = segment_problems(obj, Folder(file.path.parent))
        if wrong:
            return wrong
        expected = np.fromiter(store.keys_at(seq), np.int64)
        keys = np.asarray(obj.keys, np.int64)
        keys = keys[~in_sorted(keys, obj.gone)]
        what = f"the vectors the store had at mutation {seq}"
    if len(keys) != len(expected) or not np.array_equal(keys, expected):
        missing = np.setdiff1d(expected, keys).size
        extra = np.setdiff1d(keys, expected).size
        return f"does not hold {what} ({missing} missing, {extra} extra)"
    return _matrix_differences(store, obj, seq) if file.kind == "matrix" else None

def _matrix_differences(store: Store, m, seq: int) -> str | None:
    """Every vector still live since the matrix was written must be equal to the columns' (the
    same bytes when the matrix is of the store's generation), with its norm."""
    n_bad = 0
    values = open_values(store, m.values.shape[1])
    cur = store.keys(upto_seq=seq)
    while rows := cur.fetchmany(CHUNK):
        keys = np.fromiter((r[0] for r in rows), np.int64, len(rows))
        pos = np.searchsorted(m.keys, keys)
        mine = np.asarray(m.values[pos])
        stored = _values_of(values, keys)
        n_bad += int((mine != stored).any(axis=1).sum())
        norms = np.linalg.norm(stored, axis=1)
        n_bad += int((~np.isclose(np.asarray(m.norms[pos]), norms, rtol=1e-5, atol=1e-30)).sum())
    return f"holds {n_bad} vectors or norms that differ from the store" if n_bad else None

def _check_graph_finds(g, m, part: slice, rng: random.Random, samples: int) -> None:
    """A graph part holds at least the vectors of rows ``part`` of matrix ``m``, and its answers
    agree with the matrix: searched for a few of those vectors, it finds keys the matrix has, at
    the distances the matrix's vectors of those keys are (to bfloat16's precision). A graph of
    other vectors (another index's, with the same keys) reports other distances. This holds for
    every metric, however the vectors are scaled: a search need not find the sampled vector
    itself (under the inner product, longer vectors in its direction score higher)."""
    n = part.stop - part.start
    if n and len(m.gone):  # (a part leaves tombstones out)
        lo, hi = int(m.keys[part.start]), int(m.keys[part.stop - 1])
        live = n - int(np.searchsorted(m.gone, hi, side="right") - np.searchsorted(m.gone, lo))
    else:
        live = n
    if len(g) < live:
        raise ValueError(f"it holds {len(g)} vectors, fewer than the {live} of its keys in the matrix")
    if not n:
        return
    rows = part.start + np.array(sorted({0, n - 1, *(rng.randrange(n) for _ in range(samples))}))
    rows = rows[np.asarray(m.norms[rows]) > 0]  # zero vectors have no cosine direction
    if not len(rows):
        return
    queries = np.ascontiguousarray(m.values[rows])
    ef = g.expansion_search
    g.expansion_search = SEARCH_SAMPLE_EF  # a vector's neighbours are found at once: no need to look wide
    try:
        found = g.search(queries, SEARCH_SAMPLE_COUNT)
    finally:
        g.expansion_search = ef
    compared = wrong = 0
    for i in range(len(rows)):
        keys, dists = graph_matches(found, i)
        keys = np.asarray(keys, np.int64)
        at = np.minimum(np.searchsorted(m.keys, keys), len(m.keys) - 1)
        here = (m.keys[at] == keys) & (np.asarray(m.norms[at]) > 0)  # (others: gone since it was built)
        if not here.any():
            continue
        expected, scale = _usearch_distances(g, queries[i], np.asarray(m.values[at[here]], np.float64))
        wrong += int((np.abs(np.asarray(dists, np.float64)[here] - expected) > DISTANCE_TOLERANCE * scale).sum())
        compared += int(here.sum())
    if not compared:
        raise ValueError(f"none of what it finds for {len(rows)} of its matrix's vectors is in the matrix")
    if 2 * wrong > compared:
        raise ValueError(f"{wrong} of the {compared} distances it reports are not the matrix's: "
                         "it belongs to another index")


def _usearch_distances(g, q, vecs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distances usearch reports from ``q`` to ``vecs`` for the graph's metric (1 - cosine,
    1 - dot product, or squared L2), and the size a rounding error of theirs scales with."""
    from .graph import MetricKind  # (usearch: a graph has been opened already)

    q = np.asarray(q, np.float64)
    dots = vecs @ q
    qn, vn = np.linalg.norm(q), np.linalg.norm(vecs, axis=1)
    if g.metric_kind == MetricKind.Cos:
        return 1 - dots / np.maximum(vn * qn, 1e-300), np.ones(len(vecs))
    if g.metric_kind == MetricKind.IP:
        return 1 - dots, np.maximum(1.0, vn * qn)
    return ((vecs - q) ** 2).sum(axis=1), np.maximum(1.0, vn * vn + qn * qn)


def graph_matches(found, i: int):
    """Keys and distances found for query ``i`` of a usearch search (whose answer to a batch of
    one query is a ``Matches``, not a ``BatchMatches``)."""
    if hasattr(found, "counts"):
        n = found.counts[i]
        return found.keys[i][:n], found.distances[i][:n]
    return found.keys, found.distances


def _check_matrix_has(m, key: int, blob: bytes) -> None:
    pos = int(np.searchsorted(m.keys, key))
    if pos >= len(m.keys) or m.keys[pos] != key or in_sorted(np.array([key]), m.gone)[0]:
        raise ValueError(f"it lacks vector {key}, which the store had")
    if np.asarray(m.values[pos], "<f4").tobytes() != blob:
        raise ValueError(f"its vector {key} differs from the store's: it belongs to another index")
