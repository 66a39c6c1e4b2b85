"""Finding candidate keys for a query: the derived file (matrix or graph) plus the delta.

A ``Searcher`` opens the newest derived file, then a read snapshot of the store that is at least as
new (a derived file is only written after its mutation has committed), and from the snapshot reads
the delta: rows written since the file's mutation, and keys removed since. Candidates come from
the file (minus removed keys) and from the delta; ``VectorIndex`` then rescores them exactly.

``allowed`` (sorted int64 keys) restricts the search to a subset, for namespaces and filters that
match few rows; ``accept`` (a check of candidate keys) for those that match many.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .matrix import Matrix

Accept = Callable[[np.ndarray], np.ndarray]  # keys -> boolean mask of the keys that pass

# The candidate pass works in float32. Besides the k best it keeps every row whose float32 distance
# is within a tolerance of the k-th (scaled by the vectors' norms, see ``tolerance``), so float32
# rounding and ties (broken by id) never change the answer once rescored in float64.
RELATIVE_TOLERANCE = 1e-5
MAX_EXTRA_TIES = 1000
# Batch queries (``candidates_many``) score a block of queries against all rows at once: at most
# BLOCK_FLOATS distances at a time (64 MiB), at most MAX_BLOCK_QUERIES queries a block.
BLOCK_FLOATS = 16 * 2**20
MAX_BLOCK_QUERIES = 256
# A graph opened without its key table is checked by searching it for this many of the store's
# vectors (see ``_check_graph_finds``), each for this many results at this ef.
SEARCH_SAMPLES = 4
SEARCH_SAMPLE_COUNT = 16
SEARCH_SAMPLE_EF = 64
SAFE_NORM = 1e18  # above this, candidate distances are computed in float64 (see ``_huge``)
GROUPS = 1024  # column groups whose minima bound the k-th distance (see ``group_bounds``)


def _search_count(k: int) -> int:
    from .graph import search_count  # (imports usearch, which a graph search has done already)

    return search_count(k)


class StaleFile(ValueError):
    """A derived file older than the removals the store still remembers: a writer has replaced it
    (or it was restored from an old copy), so it cannot be caught up any more."""


def load_derived(
    kind: str, seq: int, path: Path, dims: int, metric: str, *, view: bool = True, lookups: bool = True,
):
    """Open a matrix or graph file; ``ValueError``/``RuntimeError``/``OSError`` if it is damaged.
    ``lookups=False`` opens a graph without its key table (see ``graph.load``)."""
    if kind == "matrix":
        return Matrix.load(path, seq, dims)
    from . import graph as graph_mod  # usearch: only for indexes that have a graph

    return graph_mod.load(path, dims, metric, None, view=view, lookups=lookups)


def verify_derived(kind: str, seq: int, obj, store, *, samples: int = 8, lookups: bool = True) -> None:
    """Cheap checks, inside a store snapshot, that a loaded derived file fits this store: not newer
    than it, still catchable (``StaleFile`` otherwise), the graph's size, and ``samples`` vectors
    from each side equal in both (for a graph opened without its key table, ``lookups=False``: a
    few of the store's vectors found in it by search). Raises ``ValueError`` saying what is wrong."""
    last = store.last_seq()
    if seq > last:
        raise ValueError(f"it is from mutation {seq} but the store has only {last}: "
                         "it belongs to another index")
    pruned = store.pruned_upto()
    if seq < pruned:
        raise StaleFile(f"it is from mutation {seq}, older than the removals the store keeps ({pruned})")
    import random  # (not numpy.random nor np.unique: they cost a one-shot query ~20 ms of imports)

    rng = random.Random()
    if kind == "graph":
        expected = store.count_at(seq)
        if len(obj) != expected:
            raise ValueError(f"it holds {len(obj)} vectors, the store had {expected} at mutation {seq}")
    else:
        n = len(obj.keys)
        if n:
            pos = np.array(sorted({0, n - 1, *(rng.randrange(n) for _ in range(samples))}))
            _check_file_keys(store, seq, obj.keys[pos], obj.values[pos])
    # (Two subqueries: SQLite answers min() or max() alone from the rowid b-tree, but scans the
    # whole table for both in one SELECT: 175 ms at 1M vectors.)
    lo, hi = store.conn.execute(
        "SELECT (SELECT min(key) FROM vectors), (SELECT max(key) FROM vectors)").fetchone()
    if lo is None:
        return
    by_search = kind == "graph" and not lookups
    if by_search:
        samples = min(samples, SEARCH_SAMPLES)
    pivots = {}
    for pivot in sorted({lo, hi, *(rng.randint(lo, hi) for _ in range(samples))}):
        row = store.conn.execute(
            "SELECT key, vec FROM vectors WHERE key >= ? AND seq <= ? ORDER BY key LIMIT 1",
            (int(pivot), seq),
        ).fetchone()
        if row is not None:
            pivots[row[0]] = row[1]
    if by_search:
        _check_graph_finds(obj, pivots, store)
        return
    for key, blob in pivots.items():
        _check_file_has(kind, obj, key, blob)


def _check_file_keys(store, seq: int, keys: np.ndarray, values: np.ndarray) -> None:
    """Each of the file's ``keys`` existed at ``seq`` in the store, with these ``values``."""
    wanted = [int(k) for k in keys]
    marks = ",".join("?" * len(wanted))
    live = {k: (s, v) for k, s, v in store.conn.execute(
        f"SELECT key, seq, vec FROM vectors WHERE key IN ({marks})", wanted)}
    gone = {r[0] for r in store.conn.execute(
        f"SELECT key FROM removed WHERE key IN ({marks}) AND added_seq <= ? AND removed_seq > ?",
        (*wanted, seq, seq))}
    for key, vec in zip(wanted, values, strict=True):
        if key in live:
            if live[key][0] > seq or live[key][1] != np.asarray(vec, "<f4").tobytes():
                raise ValueError(f"its vector {key} differs from the store's: it belongs to another index")
        elif key not in gone:
            raise ValueError(f"it holds vector {key}, which the store did not have at mutation {seq}")


def _check_graph_finds(g, pivots: dict[int, bytes], store) -> None:
    """For a graph opened without its key table (which ``get`` needs): search it for each of the
    store's ``pivots`` (key -> vector). A graph of this index holds each at distance ~0 from itself
    (or, when several keys share a vector, an equal one), found unless the approximate search
    misses it; another index's graph holds none (its vectors under these keys differ). One found
    is enough, so an unlucky search can never make a sound graph look foreign."""
    wanted = {k: b for k, b in pivots.items() if any(b)}  # zero vectors have no cosine direction
    if not wanted or not len(g):
        return
    queries = np.frombuffer(b"".join(wanted.values()), "<f4").reshape(len(wanted), -1)
    # usearch's distance of a vector to itself: 0, except 1 - |v|^2 for the inner product
    from .graph import MetricKind

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
        keys, distances = _matches(found, i)
        near = np.abs(distances - own[i]) <= 1e-4 * max(1.0, abs(own[i]))
        close[key] = {int(k) for k in keys[near]}
        if key in close[key]:
            return
    others = sorted(set().union(*close.values()))
    if others:  # the equal-vector case: a key at distance ~0 whose vector is the pivot's
        vecs = dict(store.rows_for_keys(others, "key, vec"))
        if any(vecs.get(k) == wanted[key] for key, keys in close.items() for k in keys):
            return
    raise ValueError(f"none of {len(wanted)} of the store's vectors is in it")


def _matches(found, i: int) -> tuple[np.ndarray, np.ndarray]:
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


class _Problem(NamedTuple):
    kind: str  # "damaged" (or foreign, or too old), "missing", "behind"
    text: str


_RETRY = object()


class Searcher:
    """Use as a context manager. On entry it opens the newest derived file and a store snapshot.

    A derived file that is damaged, foreign or missing (while the store has vectors), or more than
    ``index.FOLD_ROWS`` changes behind, is repaired from the store when this process can take the
    writer lock at once (``index.repair_search_files``), with a note; otherwise this query is
    answered from the store alone, still exactly right.

    ``lookups=False`` opens a graph without its key table: ~0.1 s less per million vectors, which a
    one-shot query saves, while the vectors of its candidates come from the store instead (the
    same bytes: a key's vector never changes). Many queries (``query_many``) want the table."""

    def __init__(self, index, *, lookups: bool = True):
        self.index = index
        self.lookups = lookups
        self.store = index.store
        self.metric = index.metric
        self.dims = index.dimensions
        self.matrix: Matrix | None = None
        self.graph = None
        self.seq = 0
        self._snapshot = None
        self._removed_keys: np.ndarray | None = None
        self._removed_rows: np.ndarray | None = None
        self._pool = None  # a thread for the heavy part of batch queries (see ``begin``)
        # usearch keeps per-thread search contexts indexed from 0 in every call, so two searches
        # of one graph must not overlap (the background block and a filtered query of a batch).
        import threading

        self._graph_lock = threading.Lock()
        self._delta_cache: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    # -- opening ----------------------------------------------------------------------------
    def __enter__(self) -> Searcher:
        self._removed_keys = self._removed_rows = self._delta_cache = None
        tried_repair = False
        for _attempt in range(10):
            problem = self._open(accept_behind=tried_repair)
            if problem is None:
                return self
            if problem is _RETRY:  # a writer replaced the file meanwhile: take the new one
                continue
            if tried_repair:  # still wrong after a rebuild
                self.index.notes.append(f"{problem.text}; answering from the store")
                break
            tried_repair = True
            why_not = self.index.repair_search_files()
            if why_not is None:
                done = "brought it up to date" if problem.kind == "behind" else "rebuilt it from the store"
                self.index.notes.append(f"{problem.text}; {done}")
                continue
            if problem.kind == "damaged":
                self.index.notes.append(f"{problem.text}; answering from the store ({why_not})")
                break
            if problem.kind == "missing":
                break
            # behind, and no lock now (the writer holding it refreshes after its commit) or
            # read-only: the delta is scanned exactly, as always
        self._open_store_only()
        return self

    def _open(self, accept_behind: bool = False):
        """Open the newest derived file and a store snapshot. Returns ``None`` when all is well,
        else ``_RETRY`` or a ``_Problem`` (with no snapshot left open)."""
        files = self.index.derived_files()
        problem = None
        if files:
            kind, seq, path = files[0]
            try:
                obj = load_derived(kind, seq, path, self.dims, self.metric, lookups=self.lookups)
            except (ValueError, OSError, RuntimeError) as exc:
                if not path.exists():
                    return _RETRY
                problem = _Problem("damaged", f"the search file {path.name} is damaged ({exc})")
        self._snapshot = self.store.snapshot()
        self._snapshot.__enter__()
        try:
            if problem is None and files:
                try:
                    verify_derived(kind, seq, obj, self.store, lookups=self.lookups)
                except StaleFile:
                    problem = _RETRY if self.index.derived_files()[:1] != files[:1] else _Problem(
                        "damaged", f"the search file {path.name} is too old to catch up")
                except ValueError as exc:
                    problem = _Problem("damaged", f"the search file {path.name} does not match the store ({exc})")
            elif problem is None and self.store.count():
                problem = _Problem("missing", "the search file was missing")
            if problem is None and files and not accept_behind:
                from .index import FOLD_ROWS

                added, removed = self.store.count_since(seq)
                if added + removed > FOLD_ROWS:
                    problem = _Problem("behind", f"the search file was {added + removed} changes behind "
                                                 "the store (an earlier refresh did not finish)")
        except BaseException:
            self._close_snapshot()
            raise
        if problem is not None:
            self._close_snapshot()
            return problem
        if files:
            self.seq = seq
            if kind == "matrix":
                self.matrix = obj
            else:
                self.graph = obj
        return None

    def _open_store_only(self) -> None:
        """No usable derived file: every vector is in the delta (exact, slower)."""
        self.matrix, self.graph, self.seq = None, None, 0
        self._snapshot = self.store.snapshot()
        self._snapshot.__enter__()

    def _close_snapshot(self) -> None:
        if self._snapshot is not None:
            self._snapshot.__exit__(None, None, None)
            self._snapshot = None

    def __exit__(self, *exc) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        if self._snapshot is not None:
            self._snapshot.__exit__(*exc)
            self._snapshot = None

    # -- search -----------------------------------------------------------------------------
    def candidates(
        self, q: np.ndarray, k: int, allowed: np.ndarray | None = None, accept: Accept | None = None,
    ) -> list[int]:
        """Keys that contain the top ``k`` matches (more when scores tie). ``accept`` (a mask of
        which keys pass, for filters matching many rows) makes the search widen until ``k``
        candidates pass or none are left."""
        if allowed is None and accept is None:
            return self.candidates_many(np.asarray(q, np.float32)[None, :], [k])[0]
        return self._candidates_one(q, k, allowed, accept)

    def _candidates_one(
        self, q: np.ndarray, k: int, allowed: np.ndarray | None = None, accept: Accept | None = None,
    ) -> list[int]:
        removed = self._removed()
        self.max_norm = 0.0
        keys, dists = self._delta(q, allowed, accept)
        if self.matrix is not None:
            m_keys, m_dists = self._matrix(q, allowed, removed, k, accept)
            keys, dists = np.concatenate([keys, m_keys]), np.concatenate([dists, m_dists])
        elif self.graph is not None:
            g_keys, g_dists = self._graph(q, k, allowed, removed, accept)
            keys, dists = np.concatenate([keys, g_keys]), np.concatenate([dists, g_dists])
        return top_candidates(keys, dists, k, self.tolerance(q)).tolist()

    def tolerance(self, q: np.ndarray) -> float:
        """How far float32 distances may stray from exact ones, for this query."""
        qn = float(np.linalg.norm(np.asarray(q, np.float64)))
        if self.metric == "cosine":
            return RELATIVE_TOLERANCE
        if self.metric == "dot-product":
            return RELATIVE_TOLERANCE * qn * self.max_norm
        return RELATIVE_TOLERANCE * (qn * qn + self.max_norm * self.max_norm)

    def _seen(self, norms: np.ndarray) -> None:
        if len(norms):
            self.max_norm = max(self.max_norm, float(norms.max()))

    def _removed(self) -> np.ndarray | None:
        """Keys the derived file holds that are gone since (read once per searcher: the snapshot
        does not change)."""
        if not self.seq:
            return None
        if self._removed_keys is None:
            self._removed_keys = np.sort(np.asarray(self.store.removed_since(self.seq), np.int64))
        return self._removed_keys

    def _delta_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(keys, vectors, norms)`` of the rows written since the derived file (read once)."""
        if self._delta_cache is None:
            rows = self.store.conn.execute(
                "SELECT key, vec FROM vectors WHERE seq > ?", (self.seq,)
            ).fetchall()
            keys = np.fromiter((r[0] for r in rows), np.int64, len(rows))
            vecs = np.frombuffer(b"".join(r[1] for r in rows), "<f4").reshape(len(rows), self.dims)
            norms = row_norms(vecs)
            self._delta_cache = (keys, vecs, norms)
        return self._delta_cache

    def _delta(self, q, allowed, accept=None) -> tuple[np.ndarray, np.ndarray]:
        keys, vecs, norms = self._delta_arrays()
        if not len(keys):
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        if allowed is None and accept is None:
            return keys, self._distances(q, vecs, norms)
        if allowed is not None:
            keep = np.isin(keys, allowed)
            keys, vecs = keys[keep], vecs[keep]
        if accept is not None:
            keep = accept(keys)
            keys, vecs = keys[keep], vecs[keep]
        return keys, self._distances(q, vecs, None)

    def _distances(self, q, vecs, norms) -> np.ndarray:
        if norms is None:
            norms = row_norms(vecs)
        self._seen(norms)
        return distances(self.metric, q, vecs, norms)

    def _matrix(self, q, allowed, removed, k=1, accept=None) -> tuple[np.ndarray, np.ndarray]:
        m = self.matrix
        if allowed is not None:
            rows = m.rows_of(allowed)
            ok = rows < len(m.keys)
            rows = rows[ok][m.keys[rows[ok]] == allowed[ok]]
            keys, vecs, norms = m.keys[rows], m.values[rows], m.norms[rows]
        else:
            keys, vecs, norms = m.keys, m.values, m.norms
        dists = self._distances(q, vecs, norms)
        if removed is not None and len(removed):
            dists[np.isin(keys, removed)] = np.inf
        if accept is not None:
            return self._nearest_accepted(q, keys, dists, k, accept)
        return keys, dists

    def _nearest_accepted(self, q, keys, dists, k, accept) -> tuple[np.ndarray, np.ndarray]:
        """Check the nearest rows against ``accept`` in a widening window until ``k`` pass and no
        row outside the window can come within the tolerance of the k-th: the exact filtered
        answer, having checked only a few times more rows than needed."""
        n = len(dists)
        tol = self.tolerance(q)
        status = np.zeros(n, np.int8)  # 0 not checked yet, 1 passes, -1 does not
        width = max(4 * k, 64)
        while True:
            if width >= n:
                rows, boundary = np.flatnonzero(np.isfinite(dists)), np.inf
            else:
                part = np.argpartition(dists, width)
                rows, boundary = part[:width], dists[part[width]]
                rows = rows[np.isfinite(dists[rows])]
            new = rows[status[rows] == 0]
            if len(new):
                status[new] = np.where(accept(keys[new]), 1, -1)
            rows = rows[status[rows] == 1]
            if not np.isfinite(boundary) or (
                len(rows) >= k and np.partition(dists[rows], k - 1)[k - 1] + tol < boundary
            ):
                return keys[rows], dists[rows]
            width *= 4

    def _graph(self, q, k, allowed, removed, accept=None) -> tuple[np.ndarray, np.ndarray]:
        g = self.graph
        skip = 0 if removed is None else len(removed)
        if allowed is not None and len(allowed) <= max(4 * k, 2048):
            keys = allowed[np.isin(allowed, removed, invert=True)] if skip else allowed
            # those the graph holds: the rest are in the delta
            keys = keys[np.isin(keys, self._delta_arrays()[0], invert=True)]
            keys, vecs = self._graph_vectors(keys)
            return keys, self._distances(q, vecs, None)
        want = _search_count(k) + min(skip, _search_count(k))
        size = len(g)
        # A filtered search widens until as many candidates pass as an unfiltered search looks
        # at (search_count(k)), not just k: the graph is approximate deep in its answer too, and
        # this keeps a filtered query's recall at an unfiltered one's (benchmarks/filters.py).
        filtered = allowed is not None or accept is not None
        need = _search_count(k) if filtered else k
        while True:
            count = min(size, want)
            with self._graph_lock:
                found = g.search(q, count)
            keys = np.asarray(found.keys, np.int64)
            keep = np.ones(len(keys), bool)
            if skip:
                keep &= ~np.isin(keys, removed)
            if allowed is not None:
                keep &= np.isin(keys, allowed)
            if accept is not None and keep.any():
                keep[keep] = accept(keys[keep])
            passing = int(keep.sum())
            if passing >= need or count >= size:
                keys, vecs = self._graph_vectors(keys[keep])
                return keys, self._distances(q, vecs, None)
            # go straight to the depth the pass rate seen so far calls for (at least twice as deep)
            want = max(count * 2, int(need * count / max(passing, 1) * 1.25)) if filtered else count * 4


    # -- many queries at once (vcli query --file) --------------------------------------------
    def candidates_many(self, queries: np.ndarray, ks: Sequence[int]) -> list[list[int]]:
        """``candidates(q, k)`` for each row of ``queries`` (no namespace, no filter), sharing the
        work between them: one matrix product per block of queries, or one graph search on all
        cores, and the delta read once. Same answers as one ``candidates`` call per query."""
        queries = np.ascontiguousarray(queries, np.float32).reshape(-1, self.dims)
        ks = list(ks)
        step = self.block_size()
        out: list[list[int]] = []
        for start in range(0, len(queries), step):
            out += self.finish(self.begin(queries[start : start + step], ks[start : start + step],
                                          background=False))
        return out

    def block_size(self) -> int:
        """How many queries ``begin`` takes at once: the product of a block with the matrix is at
        most ``BLOCK_FLOATS`` numbers."""
        n = len(self.matrix.keys) if self.matrix is not None else 0
        return max(1, min(MAX_BLOCK_QUERIES, BLOCK_FLOATS // max(1, n + len(self._delta_arrays()[0]))))

    def begin(self, queries: np.ndarray, ks: Sequence[int], *, background: bool = True) -> _Block:
        """Start ``candidates_many`` for at most ``block_size()`` queries; ``finish`` completes
        it. The heavy part (the matrix product and its group minima, or the graph search), which
        runs without Python's lock, goes to a background thread, so that a caller can answer the
        block before (fetch rows, rescore, print) meanwhile: ``query_many`` does."""
        queries = np.ascontiguousarray(queries, np.float32).reshape(-1, self.dims)
        ks = list(ks)
        # Everything read from the store, and all shared state, is set up here, in the caller's
        # thread; the background part only computes from arrays.
        self._delta_arrays()
        self._removed_columns() if self.matrix is not None else self._removed()
        heavy = self._graph_heavy if self.graph is not None else self._matrix_heavy
        if not background:
            return _Block(queries, ks, result=heavy(queries, ks))
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(1, thread_name_prefix="vcli-search")
        return _Block(queries, ks, future=self._pool.submit(heavy, queries, ks))

    def finish(self, block: _Block) -> list[list[int]]:
        heavy = block.future.result() if block.future is not None else block.result
        if self.graph is not None:
            return self._graph_finish(block.queries, block.ks, heavy)
        return self._matrix_finish(block.queries, block.ks, heavy)

    def _norm_bound(self) -> float:
        """The largest norm among the delta and the matrix (for ``tolerance``)."""
        _keys, _vecs, d_norms = self._delta_arrays()
        top = float(d_norms.max()) if len(d_norms) else 0.0
        if self.matrix is not None and len(self.matrix.norms):
            top = max(top, float(self.matrix.norms.max()))
        return top

    def _matrix_heavy(self, queries: np.ndarray, ks: list[int]):
        m = self.matrix
        if m is None or not len(m.keys):
            return None
        dists = batch_distances(self.metric, queries, m.values, m.norms)
        gone = self._removed_rows
        if gone is not None and len(gone):
            dists[:, gone] = np.inf
        return dists, Groups(dists, ks)

    def _matrix_finish(self, queries: np.ndarray, ks: list[int], heavy) -> list[list[int]]:
        """Exact candidates for a block of queries: the delta and (when there is one) the matrix,
        each as one matrix product. Scanning the product is what costs beyond it, so each row is
        read once more only: for the minimum of each of ``GROUPS`` interleaved groups of columns.
        The k-th smallest of those minima bounds the k-th distance from above (k groups hold at
        least k rows that near), and only the few groups whose minimum is within the bound (plus
        the tolerance) are looked into."""
        d_keys, d_vecs, d_norms = self._delta_arrays()
        d_dists = batch_distances(self.metric, queries, d_vecs, d_norms)
        self.max_norm = self._norm_bound()
        m = self.matrix
        out = []
        for i, k in enumerate(ks):
            tol = self.tolerance(queries[i])
            keys, row = d_keys, d_dists[i]
            if heavy is not None:
                dists, groups = heavy
                near = groups.near(i, tol)
                keys, row = np.concatenate([keys, m.keys[near]]), np.concatenate([row, dists[i, near]])
            out.append(top_candidates(keys, row, k, tol).tolist())
        return out

    def _removed_columns(self) -> np.ndarray | None:
        """Matrix rows whose keys were removed since the matrix was written (found once)."""
        removed = self._removed()
        if removed is None or not len(removed):
            return None
        if self._removed_rows is None:
            self._removed_rows = np.flatnonzero(np.isin(self.matrix.keys, removed))
        return self._removed_rows

    def _graph_heavy(self, queries: np.ndarray, ks: list[int]):
        g = self.graph
        removed = self._removed_keys
        size = len(g)
        wanted = _search_count(max(ks))
        count = min(size, wanted + min(wanted, 0 if removed is None else len(removed)))
        if not size or not count:
            return None
        with self._graph_lock:
            return g.search(queries, count, threads=os.cpu_count() or 1)

    def _graph_vectors(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(keys, float32 vectors)`` of keys the graph holds: read from the graph, or from the
        store when the graph was opened without its key table (then in the store's order)."""
        if not len(keys):
            return keys, np.zeros((0, self.dims), np.float32)
        if self.lookups:
            vecs = self.graph.get(keys.astype(np.uint64))
            return keys, np.asarray(vecs, np.float32).reshape(-1, self.dims)
        rows = self.store.rows_for_keys(keys, "key, vec")
        found = np.fromiter((r[0] for r in rows), np.int64, len(rows))
        return found, np.frombuffer(b"".join(r[1] for r in rows), "<f4").reshape(len(rows), self.dims)

    def _graph_finish(self, queries: np.ndarray, ks: list[int], found) -> list[list[int]]:
        """Graph candidates for a block of queries, found in one search on all cores; a query
        that loses too many of its candidates to removed keys widens alone (``_candidates_one``)."""
        g = self.graph
        d_keys, d_vecs, d_norms = self._delta_arrays()
        d_dists = batch_distances(self.metric, queries, d_vecs, d_norms)
        removed = self._removed()
        size = len(g)
        out = []
        for i, k in enumerate(ks):
            keys = np.zeros(0, np.int64) if found is None else np.asarray(_matches(found, i)[0], np.int64)
            if removed is not None and len(removed) and len(keys):
                keys = keys[~np.isin(keys, removed)]
            if len(keys) < min(k, size - (0 if removed is None else len(removed))):
                out.append(self._candidates_one(queries[i], k))  # widens until k are found
                continue
            keys, vecs = self._graph_vectors(keys)
            self.max_norm = float(d_norms.max()) if len(d_norms) else 0.0
            g_dists = self._distances(queries[i], vecs, None)
            keys = np.concatenate([d_keys, keys])
            row = np.concatenate([d_dists[i], g_dists])
            out.append(top_candidates(keys, row, k, self.tolerance(queries[i])).tolist())
        return out


class _Block:
    """A block of queries in ``Searcher.begin`` / ``finish``: its heavy part, done or coming."""

    __slots__ = ("queries", "ks", "result", "future")

    def __init__(self, queries: np.ndarray, ks: list[int], result: object = None, future: object = None):
        self.queries, self.ks, self.result, self.future = queries, ks, result, future


def row_norms(vecs: np.ndarray) -> np.ndarray:
    """L2 norm of each row, computed in float64 (float32 squares overflow above ~1.8e19)."""
    if not len(vecs):
        return np.zeros(0, np.float32)
    with np.errstate(over="ignore"):
        return np.linalg.norm(np.asarray(vecs, np.float64), axis=-1).astype(np.float32)


def _huge(queries: np.ndarray, norms: np.ndarray) -> bool:
    """Whether float32 products could overflow: a norm over ``SAFE_NORM`` (never seen in
    embeddings, but valid float32). Such searches are done in float64 instead."""
    return not (float(np.max(row_norms(queries))) < SAFE_NORM
                and (not len(norms) or float(norms.max()) < SAFE_NORM))


def batch_distances(metric: str, queries: np.ndarray, vecs: np.ndarray, norms: np.ndarray) -> np.ndarray:
    """``distances`` of each query (rows) to each vector (columns), as one matrix product."""
    if len(vecs) == 0:
        return np.zeros((len(queries), 0), np.float32)
    if _huge(queries, norms):
        queries, vecs = np.asarray(queries, np.float64), np.asarray(vecs, np.float64)
        norms = np.linalg.norm(vecs, axis=1)
    # Each pass over the (queries x vectors) product costs about a tenth of the product itself,
    # so what depends only on the query is folded into the queries before it.
    if metric == "dot-product":
        return -queries @ vecs.T
    qn = np.linalg.norm(queries, axis=1).astype(queries.dtype)
    if metric == "euclidean":  # |v|^2 - 2 q.v + |q|^2
        dists = (-2 * queries) @ vecs.T
        dists += (norms * norms)[None, :]
        dists += (qn * qn)[:, None]
        return dists
    # -cos = -(q / |q|).v / |v|, and 0 where a norm is 0 (as ``distances``)
    with np.errstate(divide="ignore"):
        inv_q = np.where(qn > 0, -1 / qn, 0).astype(queries.dtype)
        inv_v = np.where(norms > 0, 1 / norms, 0).astype(queries.dtype)
    dists = (queries * inv_q[:, None]) @ vecs.T
    dists *= inv_v[None, :]
    return dists


class Groups:
    """The columns of a block of distances in ``GROUPS`` interleaved groups (column ``j`` in group
    ``j % groups``), each group's minimum per row, and per row the k-th smallest minimum: a bound
    that at least k entries of the row are at or below."""

    def __init__(self, dists: np.ndarray, ks: Sequence[int]):
        self.dists = dists
        rows, n = dists.shape
        self.groups = groups = min(GROUPS, n)
        self.width = width = n // groups
        self.whole = width < 2 or max(ks) > groups  # too few columns: look at all of them
        if self.whole:
            return
        self.mins = dists[:, : groups * width].reshape(rows, width, groups).min(axis=1)
        kth = sorted({k - 1 for k in ks})
        self.bounds = np.partition(self.mins, kth, axis=1)[np.arange(rows), np.asarray(ks) - 1]
        self.steps = np.arange(width) * groups
        self.tail = np.arange(groups * width, n)  # the last columns, in no group

    def near(self, i: int, tol: float) -> np.ndarray:
        """Columns of row ``i`` within ``tol`` of its bound: all of its k nearest, and ties."""
        row = self.dists[i]
        if self.whole:
            return np.flatnonzero(row <= np.inf)
        limit = self.bounds[i] + tol
        cols = (np.flatnonzero(self.mins[i] <= limit)[None, :] + self.steps[:, None]).ravel()
        cols = np.concatenate([cols, self.tail])
        return cols[row[cols] <= limit]


def distances(metric: str, q: np.ndarray, vecs: np.ndarray, norms: np.ndarray) -> np.ndarray:
    """float32 distances, lower is better, used only to choose candidates: the negative cosine,
    the squared L2 distance, or the negative dot product."""
    if len(vecs) == 0:
        return np.zeros(0, np.float32)
    if _huge(q, norms):
        q, vecs = np.asarray(q, np.float64), np.asarray(vecs, np.float64)
        norms = np.linalg.norm(vecs, axis=1)
    dots = vecs @ q
    if metric == "dot-product":
        return -dots
    qn = dots.dtype.type(np.linalg.norm(q))
    if metric == "euclidean":
        return norms * norms - 2 * dots + qn * qn
    denom = norms * qn
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.where(denom > 0, dots / np.where(denom > 0, denom, 1), 0).astype(dots.dtype)


def top_candidates(keys: np.ndarray, dists: np.ndarray, k: int, tolerance: float) -> np.ndarray:
    finite = np.isfinite(dists)
    if not finite.all():
        keys, dists = keys[finite], dists[finite]
    if len(keys) <= k:
        return keys
    kth = np.partition(dists, k - 1)[k - 1]
    near = dists <= kth + tolerance
    if near.sum() > k + MAX_EXTRA_TIES:
        return keys[np.argpartition(dists, k + MAX_EXTRA_TIES)[: k + MAX_EXTRA_TIES]]
    return keys[near]
