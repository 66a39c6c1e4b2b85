"""Does a search file fit the store? The checks a query runs on the file it opens (``verify``)
and the thorough one of ``vcli check`` (``check_contents``). Each raises or returns what is wrong.
"""

from __future__ import annotations

import random

import numpy as np

from .layout import SearchFile
from .store import Store

SAMPLES = 8  # store vectors a query compares with the file it opens (``vcli check``: 64)
# A graph opened without its key table is checked by searching it for this many of the store's
# vectors (see ``_check_graph_finds``), each for this many results at this ef.
SEARCH_SAMPLES = 4
SEARCH_SAMPLE_COUNT = 16
SEARCH_SAMPLE_EF = 64
GRAPH_VALUE_SAMPLE = 2000  # graph vectors that ``check_contents`` compares with the store
CHUNK = 8192


class StaleFile(ValueError):
    """A search file older than the removals the store still remembers: a writer has replaced it
    (or it was restored from an old copy), so it cannot be caught up any more."""


def verify(store: Store, file: SearchFile, obj, *, samples: int = SAMPLES, lookups: bool = True) -> None:
    """Cheap checks, inside a store snapshot, that a loaded file fits this store: not newer than
    it, still catchable (``StaleFile`` otherwise), the graph's size, and ``samples`` vectors from
    each side equal in both (for a graph opened without its key table, ``lookups=False``: a few
    of the store's vectors found in it by search). Raises ``ValueError`` saying what is wrong."""
    seq = file.seq
    last = store.last_seq()
    if seq > last:
        raise ValueError(f"it is from mutation {seq} but the store has only {last}: it belongs to another index")
    pruned = store.pruned_upto()
    if seq < pruned:
        raise StaleFile(f"it is from mutation {seq}, older than the removals the store keeps ({pruned})")
    rng = random.Random()  # (not numpy.random: it costs a one-shot query ~20 ms of imports)
    if file.kind == "graph":
        expected = store.count_at(seq)
        if len(obj) != expected:
            raise ValueError(f"it holds {len(obj)} vectors, the store had {expected} at mutation {seq}")
    else:
        n = len(obj.keys)
        if n:
            pos = np.array(sorted({0, n - 1, *(rng.randrange(n) for _ in range(samples))}))
            _check_file_keys(store, seq, obj.keys[pos], obj.values[pos])
    lo, hi = store.key_range()
    if lo is None:
        return
    by_search = file.kind == "graph" and not lookups
    if by_search:
        samples = min(samples, SEARCH_SAMPLES)
    pivots = {}
    for pivot in sorted({lo, hi, *(rng.randint(lo, hi) for _ in range(samples))}):
        row = store.first_vector_from(pivot, seq)
        if row is not None:
            pivots[row[0]] = row[1]
    if by_search:
        _check_graph_finds(obj, pivots, store)
        return
    for key, blob in pivots.items():
        _check_file_has(file.kind, obj, key, blob)

def _check_file_keys(store: Store, seq: int, keys, values) -> None:
    """Each of the file's ``keys`` existed at ``seq`` in the store, with these ``values``."""
    wanted = [int(k) for k in keys]
    live = store.written_for_keys(wanted)
    gone = store.removed_since_among(wanted, seq)
    for key, vec in zip(wanted, values, strict=True):
        if key in live:
            if live[key][0] > seq or live[key][1] != np.asarray(vec, "<f4").tobytes():
                raise ValueError(f"its vector {key} differs from the store's: it belongs to another index")
        elif key not in gone:
            raise ValueError(f"it holds vector {key}, which the store did not have at mutation {seq}")

def check_contents(store: Store, file: SearchFile, obj) -> str | None:
    """``vcli check``'s thorough look, after ``verify``: the file holds exactly the keys the store
    had at its mutation, with the same values (all of a matrix's, a sample of a graph's). What is
    wrong, or None."""
    seq = file.seq
    expected = np.fromiter(store.keys_at(seq), np.int64)
    if file.kind == "matrix":
        keys = np.asarray(obj.keys, np.int64)
    else:
        keys = np.sort(np.asarray(obj.keys, np.uint64).astype(np.int64))
    if len(keys) != len(expected) or not np.array_equal(keys, expected):
        missing = np.setdiff1d(expected, keys).size
        extra = np.setdiff1d(keys, expected).size
        return (f"does not hold the vectors the store had at mutation {seq} "
                f"({missing} missing, {extra} extra)")
    return _matrix_differences(store, obj, seq) if file.kind == "matrix" else _graph_differences(store, obj, seq)

def _matrix_differences(store: Store, m, seq: int) -> str | None:
    """Every vector still live since the matrix was written must be equal, with its norm."""
    n_bad = 0
    cur = store.vectors(upto_seq=seq)
    size = m.values.shape[1] * 4
    while rows := cur.fetchmany(CHUNK):
        rows = [r for r in rows if isinstance(r[1], bytes) and len(r[1]) == size]  # others: reported
        if not rows:
            continue
        keys = np.fromiter((r[0] for r in rows), np.int64, len(rows))
        pos = np.searchsorted(m.keys, keys)
        mine = np.asarray(m.values[pos])
        stored = np.frombuffer(b"".join(r[1] for r in rows), "<f4").reshape(len(rows), -1)
        n_bad += int((mine != stored).any(axis=1).sum())
        norms = np.linalg.norm(stored, axis=1)
        n_bad += int((~np.isclose(np.asarray(m.norms[pos]), norms, rtol=1e-5, atol=1e-30)).sum())
    return f"holds {n_bad} vectors or norms that differ from the store" if n_bad else None

def _graph_differences(store: Store, g, seq: int) -> str | None:
    rows = store.sample_vectors_at(seq, GRAPH_VALUE_SAMPLE)
    n_bad = 0
    for key, blob in rows:
        got = g.get(key) if g.contains(key) else None
        if got is None or np.asarray(got, "<f4").tobytes() != blob:
            n_bad += 1
    return f"holds {n_bad} of {len(rows)} sampled vectors that differ from the store" if n_bad else None


def _check_graph_finds(g, pivots: dict[int, bytes], store: Store) -> None:
    """For a graph opened without its key table (which ``get`` needs): search it for each of the
    store's ``pivots`` (key -> vector). A graph of this index holds each at distance ~0 from itself
    (or, when several keys share a vector, an equal one), found unless the approximate search
    misses it; another index's graph holds none (its vectors under these keys differ). One found
    is enough, so an unlucky search can never make a sound graph look foreign."""
    from .graph import MetricKind  # (usearch: a graph has been opened already)

    wanted = {k: b for k, b in pivots.items() if any(b)}  # zero vectors have no cosine direction
    if not wanted or not len(g):
        return
    queries = np.frombuffer(b"".join(wanted.values()), "<f4").reshape(len(wanted), -1)
    # usearch's distance of a vector to itself: 0, except 1 - |v|^2 for the inner product
    own = 1 - np.einsum("ij,ij->i", queries.astype(np.float64), queries) \
        if g.metric_kind == MetricKind.IP else np.zeros(len(wanted))
    ef = g.expansion_search
    g.expansion_search = SEARCH_SAMPLE_EF  # an exact copy is found at once; no need to look wide
    try:
        found = g.search(queries, SEARCH_SAMPLE_COUNT)
    finally:
        g.expansion_search = ef
    close: dict[int, set[int]] = {}  # pivot -> keys found at its own distance
    for i, key in enumerate(wanted):
        keys, distances = graph_matches(found, i)
        near = np.abs(distances - own[i]) <= 1e-4 * max(1.0, abs(own[i]))
        close[key] = {int(k) for k in keys[near]}
        if key in close[key]:
            return
    others = sorted(set().union(*close.values()))
    if others:  # the equal-vector case: a key at distance ~0 whose vector is the pivot's
        vecs = dict(store.vectors_for_keys(others))
        if any(vecs.get(k) == wanted[key] for key, keys in close.items() for k in keys):
            return
    raise ValueError(f"none of {len(wanted)} of the store's vectors is in it")


def graph_matches(found, i: int):
    """Keys and distances found for query ``i`` of a usearch search (whose answer to a batch of
    one query is a ``Matches``, not a ``BatchMatches``)."""
    if hasattr(found, "counts"):
        n = found.counts[i]
        return found.keys[i][:n], found.distances[i][:n]
    return found.keys, found.distances


def _check_file_has(kind: str, obj, key: int, blob: bytes) -> None:
    if kind == "matrix":
        pos = int(np.searchsorted(obj.keys, key))
        got = obj.values[pos] if pos < len(obj.keys) and obj.keys[pos] == key else None
    else:
        got = obj.get(key) if obj.contains(key) else None
    if got is None:
        raise ValueError(f"it lacks vector {key}, which the store had")
    if np.asarray(got, "<f4").tobytes() != blob:
        raise ValueError(f"its vector {key} differs from the store's: it belongs to another index")

