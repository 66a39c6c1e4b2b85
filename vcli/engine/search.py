"""Finding candidate keys for a query: the matrix (or its graph parts) plus the delta.

A ``Searcher`` opens the newest matrix and, for a large index, the graph parts a builder has made
(``graph.py``); then a read snapshot of the store that is at least as new (a search file is only
written after its mutation has committed), and from the snapshot reads the delta: rows written
since the matrix's mutation, and keys removed since. Candidates come from the matrix (searched
exactly), or are found in the graph parts and scored from the matrix (keys it lacks and keys
removed since dropped) while the matrix rows no part covers are scanned exactly, and from the
delta; ``query.py`` then rescores them exactly.

``allowed`` (sorted int64 keys) restricts the search to a subset, for namespaces and filters that
match few rows; ``accept`` (a check of candidate keys) for those that match many. Batch queries
(``begin``/``finish``) search a block of queries at once: one matrix product, or one graph search
on all cores, in a background thread while the block before is answered; filtered ones with a
mask each (the rows they pass, ``masks.py``) or, sharing a filter, from a gathered copy of its
rows (``candidates_within``).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from .scoring import (
    Groups,
    batch_distances,
    distances,
    max_norm,
    paired_distances,
    row_norms,
    tolerance,
    top_candidates,
    top_candidates_rows,
)
from .searchfiles import FILE_ERRORS, SearchFiles
from .verify import StaleFile

if TYPE_CHECKING:
    from concurrent.futures import Future, ThreadPoolExecutor
    from contextlib import AbstractContextManager

    from .graph import Parts
    from .matrix import Matrix

Accept = Callable[[np.ndarray], np.ndarray]  # keys -> boolean mask of the keys that pass

# Batch queries score a block of queries against all rows at once: at most BLOCK_FLOATS distances
# at a time (64 MiB), at most MAX_BLOCK_QUERIES queries a block (a graph's block is that large:
# its queries that share a filter are scored together, a gathered subset used by more of them).
BLOCK_FLOATS = 16 * 2**20
MAX_BLOCK_QUERIES = 1024
GROUP_FLOATS = BLOCK_FLOATS  # the queries of a block that share a filter: distances at a time
# A filtered graph search that still has too few passing candidates at this many a part gives up
# for an exact scan of the matrix (``Searcher._graph``).
MAX_WIDENING = 4096
# Rows no graph part covers are scored for a whole block at once; from a run longer than this only
# each query's nearest few are kept (``scoring.Groups``), not the whole row of distances.
SMALL_RUN = 4096
_EMPTY_NORMS = np.zeros(0, np.float32)
# What a batch's group of queries sharing a filter costs, in rows scored exactly by one matrix
# product (500k x 384, 2 cores: ~12 ns a row): a graph part searched to expansion e, about
# GRAPH_ROWS_PER_DEPTH x e a query (0.6 ms at 128, 2.8 ms at 512 with the rescoring), and each
# matching row gathered from the matrix into a contiguous copy, GATHER_ROWS (~0.8 µs).
GRAPH_ROWS_PER_DEPTH = 400
GATHER_ROWS = 64


def in_sorted(keys: np.ndarray, sorted_keys: np.ndarray) -> np.ndarray:
    """Which of ``keys`` are in ``sorted_keys`` (ascending): a binary search per key, so a few
    candidates are checked against a filter's hundreds of thousands of matches in microseconds
    (``np.isin`` would sort or tabulate all of them on every call)."""
    if not len(sorted_keys):
        return np.zeros(np.shape(keys), bool)
    pos = np.searchsorted(sorted_keys, keys)
    pos[pos == len(sorted_keys)] = 0
    return sorted_keys[pos] == keys


def _search_count(k: int) -> int:
    from .graph import search_count  # lazy: usearch, which a graph search has imported already

    return search_count(k)


def _nearest(keys, dists, usable, keep):
    from .graph import nearest  # lazy: usearch, which a graph search has imported already

    return nearest(keys, dists, usable, keep)


class _Problem(NamedTuple):
    kind: str  # "damaged" (or foreign, or too old), "missing", "behind"
    text: str


_RETRY = _Problem("retry", "a writer replaced the search file meanwhile")  # (compared by identity)


class Searcher:
    """Use as a context manager. On entry it opens the newest matrix (and its graph parts) and a
    store snapshot.

    A matrix that is damaged, foreign or missing (while the store has vectors), or more than
    ``Tuning.fold_rows`` changes behind, is repaired from the store when this process can take the
    writer lock at once (``SearchFiles.repair``), with a note in ``notes``; otherwise the queries
    are answered from the store alone, still exactly right. In a large index, rows that no sound
    graph part covers (missing, damaged, or written since the last part) are scanned exactly from
    the matrix while a builder makes the parts."""

    def __init__(self, files: SearchFiles, notes: list[str]):
        self.files = files
        self.notes = notes
        self.store = files.store
        self.metric = files.metric
        self.dims = files.dimensions
        self.matrix: Matrix | None = None  # the open matrix and graph parts (``_open``)
        self.graph: Parts | None = None
        self.seq = 0
        self._snapshot: AbstractContextManager[None] | None = None
        self._removed_keys: np.ndarray | None = None
        self._uncovered: list[slice] = []  # rows of the matrix no graph part covers, searched exactly
        self._uncovered_rows = 0  # how many
        self._uncovered_bound: float | None = None  # their largest norm (``_graph_block``), once found
        self._removed_rows: np.ndarray | None = None
        self._delta_cache: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        # a thread for the heavy part of batch queries (see ``begin``)
        self._pool: ThreadPoolExecutor | None = None
        # ``candidates_within``: the keys, vectors and norms of a subset, by the caller's token
        self._subsets: dict[object, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        # usearch keeps per-thread search contexts indexed from 0 in every call, so two searches
        # of one graph must not overlap (the background block and a filtered query of a batch).
        self._graph_lock = threading.Lock()

    # -- opening ----------------------------------------------------------------------------
    def __enter__(self) -> Searcher:
        tried_repair = False
        for _attempt in range(10):
            problem = self._open(accept_behind=tried_repair)
            if problem is None:
                return self
            if problem is _RETRY:  # a writer replaced the file meanwhile: take the new one
                continue
            if tried_repair:  # still wrong after a rebuild
                self.notes.append(f"{problem.text}; answering from the store")
                break
            tried_repair = True
            why_not = self.files.repair()
            if why_not is None:
                done = "brought it up to date" if problem.kind == "behind" else "rebuilt it from the store"
                self.notes.append(f"{problem.text}; {done}")
                continue
            if problem.kind == "damaged":
                self.notes.append(f"{problem.text}; answering from the store ({why_not})")
                break
            if problem.kind == "missing":
                break
            # behind, and no lock now (the writer holding it refreshes after its commit) or
            # read-only: the delta is scanned exactly, as always
        self._open_store_only()
        return self

    def _open(self, accept_behind: bool = False):
        """Open the newest matrix, its graph parts and a store snapshot. Returns ``None`` when all is
        well, else ``_RETRY`` or a ``_Problem`` (with no snapshot left open)."""
        file = self.files.newest()
        problem = obj = None
        if file is not None:
            try:
                obj = self.files.load(file)
            except FILE_ERRORS as exc:
                if not file.path.exists():
                    return _RETRY
                problem = _Problem("damaged", f"the search file {file.path.name} is damaged ({exc})")
        self._snapshot = self.store.snapshot()
        self._snapshot.__enter__()
        try:
            if problem is None and file is not None:
                try:
                    self.files.verify(file, obj)
                except StaleFile:
                    problem = _RETRY if self.files.newest() != file else _Problem(
                        "damaged", f"the search file {file.path.name} is too old to catch up")
                except ValueError as exc:
                    problem = _Problem("damaged", f"the search file {file.path.name} does not match the store ({exc})")
            elif problem is None and self.files.needs_matrix():
                problem = _Problem("missing", "the search file was missing")
            if problem is None and file is not None and not accept_behind:
                added, removed = self.store.count_since(file.seq)
                if self.files.tuning.due((added, removed)):
                    problem = _Problem("behind", f"the search file was {added + removed} changes behind "
                                                 "the store (an earlier refresh did not finish)")
        except BaseException:
            self._close_snapshot()
            raise
        if problem is not None:
            self._close_snapshot()
            return problem
        if file is not None:
            self.seq, self.matrix = file.seq, obj
            self.graph = self._open_graph(file, obj)
        return None

    def _open_graph(self, file, m):
        """The graph parts of matrix ``file`` (loaded as ``m``) when the index wants a graph and
        they cover at least half of its rows; else None (queries are then exact from the
        matrix). Rows no part covers (``_uncovered``) are scanned exactly beside the parts, and a
        builder is started to cover them; a damaged part is discarded (its rows then too)."""
        if not self.files.tuning.wants_graph(len(m.keys), self.dims):
            return None
        from .graph import Parts, uncovered  # lazy: usearch, only for indexes that have a graph

        files, views = [], []
        for part in self.files.folder.graph_parts(file):  # (the store's count would be read again)
            inode = None
            try:
                inode = part.path.stat().st_ino
                view = self.files.load(part)
                self.files.verify(part, view, matrix=m)
            except FILE_ERRORS as exc:
                if inode is not None:
                    self.notes.append(f"the search graph {part.path.name} is unusable ({exc}); answering "
                                      "exactly from the matrix where it was while it is built anew")
                    self.files.discard_graph(part, start=False, inode=inode)
                continue
            files.append(part)
            views.append(view)
        self._uncovered = uncovered(m, files)
        self._uncovered_rows = left = sum(r.stop - r.start for r in self._uncovered)
        self._uncovered_bound = None
        if left:
            self.files.start_graph()
        return Parts(files, views) if files and 2 * left <= len(m.keys) else None

    def _open_store_only(self) -> None:
        """No usable search file: every vector is in the delta (exact, slower)."""
        self.matrix, self.graph, self.seq, self._uncovered, self._uncovered_rows = None, None, 0, [], 0
        self._snapshot = self.store.snapshot()
        self._snapshot.__enter__()

    def _open_matrix(self) -> Matrix:
        """The open matrix, on the search paths that only run with one."""
        assert self.matrix is not None  # (for the type checker: those paths check before)
        return self.matrix

    def _open_parts(self) -> Parts:
        """The open graph parts, on the search paths that only run with them."""
        assert self.graph is not None
        return self.graph

    def _close_snapshot(self) -> None:
        if self._snapshot is not None:
            self._snapshot.__exit__(None, None, None)
            self._snapshot = None

    def __exit__(self, *exc) -> None:
        if self._pool is not None:  # (left early, by an error or Ctrl-C: what has not started, won't)
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        if self._snapshot is not None:
            self._snapshot.__exit__(*exc)
            self._snapshot = None

    # -- what the snapshot holds besides the file (read once: the snapshot does not change) ------
    def _removed(self) -> np.ndarray | None:
        """Keys the search file holds that are gone since."""
        if not self.seq:
            return None
        if self._removed_keys is None:
            self._removed_keys = np.sort(np.asarray(self.store.removed_since(self.seq), np.int64))
        return self._removed_keys

    def delta_keys(self) -> np.ndarray:
        """The keys of the rows written since the search file (the delta), in its order."""
        return self._delta_arrays()[0]

    def _delta_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(keys, vectors, norms)`` of the rows written since the search file."""
        if self._delta_cache is None:
            rows = self.store.rows_since(self.seq)
            keys = np.fromiter((r[0] for r in rows), np.int64, len(rows))
            vecs = np.frombuffer(b"".join(r[1] for r in rows), "<f4").reshape(len(rows), self.dims)
            self._delta_cache = (keys, vecs, row_norms(vecs))
        return self._delta_cache

    def _removed_columns(self) -> np.ndarray | None:
        """Matrix rows whose keys were removed since the matrix was written (found once)."""
        removed = self._removed()
        if removed is None or not len(removed):
            return None
        if self._removed_rows is None:
            self._removed_rows = np.flatnonzero(in_sorted(self._open_matrix().keys, removed))
        return self._removed_rows

    # -- one query ----------------------------------------------------------------------------
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
        keys, dists, top = self._delta(q, allowed, accept)
        found = None
        if self.graph is not None and (allowed is None or len(allowed) > max(4 * k, 2048)):
            found = self._graph(q, k, allowed, removed, accept)
        if found is not None:
            parts = [found, *(self._matrix(q, allowed, removed, k, accept, top, rows) for rows in self._uncovered)]
            m_keys, m_dists = (np.concatenate([f[i] for f in parts]) for i in (0, 1))
            m_top = max(f[2] for f in parts)
        elif self.matrix is not None:  # (a few allowed keys, or a filter the graph finds too few of)
            m_keys, m_dists, m_top = self._matrix(q, allowed, removed, k, accept, top)
        else:
            m_keys, m_dists, m_top = keys[:0], dists[:0], 0.0
        keys, dists = np.concatenate([keys, m_keys]), np.concatenate([dists, m_dists])
        return top_candidates(keys, dists, k, tolerance(self.metric, q, max(top, m_top))).tolist()

    def _scored(self, q, vecs, norms=None) -> tuple[np.ndarray, float]:
        """float32 distances of ``q`` to ``vecs`` and the largest norm among them."""
        if norms is None:
            norms = row_norms(vecs)
        return distances(self.metric, q, vecs, norms), max_norm(norms)

    def _delta(self, q, allowed, accept=None) -> tuple[np.ndarray, np.ndarray, float]:
        keys, vecs, norms = self._delta_arrays()
        if not len(keys):
            return np.zeros(0, np.int64), np.zeros(0, np.float32), 0.0
        if allowed is None and accept is None:
            return (keys, *self._scored(q, vecs, norms))
        if allowed is not None:
            keep = in_sorted(keys, allowed)
            keys, vecs = keys[keep], vecs[keep]
        if accept is not None:
            keep = accept(keys)
            keys, vecs = keys[keep], vecs[keep]
        return (keys, *self._scored(q, vecs))

    def _matrix(self, q, allowed, removed, k, accept, delta_top: float,
                part: slice = slice(None)) -> tuple[np.ndarray, np.ndarray, float]:
        """Candidates among the matrix's rows (those of ``part``), scored exactly."""
        m = self._open_matrix()
        if allowed is not None:
            rows = self._matrix_rows(allowed)
            if part != slice(None):
                rows = rows[(rows >= part.start) & (rows < part.stop)]
            keys, vecs, norms = m.keys[rows], m.values[rows], m.norms[rows]
        else:
            keys, vecs, norms = m.keys[part], m.values[part], m.norms[part]
        dists, top = self._scored(q, vecs, norms)
        if removed is not None and len(removed):
            dists[in_sorted(keys, removed)] = np.inf
        if accept is not None:
            tol = tolerance(self.metric, q, max(delta_top, top))
            return (*self._nearest_accepted(keys, dists, k, accept, tol), top)
        return keys, dists, top

    def _matrix_rows(self, allowed: np.ndarray) -> np.ndarray:
        """The matrix's row positions of those of ``allowed`` (sorted keys) that it holds."""
        m = self._open_matrix()
        rows = m.rows_of(allowed)
        ok = rows < len(m.keys)
        return rows[ok][m.keys[rows[ok]] == allowed[ok]]

    @staticmethod
    def _nearest_accepted(keys, dists, k, accept, tol) -> tuple[np.ndarray, np.ndarray]:
        """Check the nearest rows against ``accept`` in a widening window until ``k`` pass and no
        row outside the window can come within ``tol`` of the k-th: the exact filtered answer,
        having checked only a few times more rows than needed."""
        n = len(dists)
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

    def _graph(self, q, k, allowed, removed, accept=None) -> tuple[np.ndarray, np.ndarray, float] | None:
        """Candidates from the graph parts, scored from the matrix; with a filter, the search
        widens until enough pass. None when a filter's matches are so rare in the parts that the
        search would go deeper than ``MAX_WIDENING``: the caller scans the matrix exactly instead
        (matches written since the parts were built, say, are in no part)."""
        g = self._open_parts()
        skip = 0 if removed is None else len(removed)
        want = _search_count(k) + min(skip, _search_count(k))
        # A filtered search widens until as many candidates pass as an unfiltered search looks
        # at (search_count(k)), not just k: the graph is approximate deep in its answer too, and
        # this keeps a filtered query's recall at an unfiltered one's (benchmarks/filters.py).
        filtered = allowed is not None or accept is not None
        need = _search_count(k) if filtered else k
        if allowed is not None:  # only those in the parts can be found there
            need = min(need, self._covered(allowed))
            if not need:
                return np.zeros(0, np.int64), np.zeros(0, np.float32), 0.0
        share = 1.0  # of the candidates, the part that passed the filter so far
        while True:
            count = min(g.largest, want)
            with self._graph_lock:
                keys, dists = g.search(q, count, share=share)
            keep = self._usable(keys, dists, removed, allowed)[0]
            keys, dists = keys[0], dists[0]
            if accept is not None and keep.any():
                keep[keep] = accept(keys[keep])
            passing = int(keep.sum())
            if passing >= need or count >= g.largest:
                keys, keep = _nearest(keys[None, :], dists[None, :], keep[None, :], max(need, _search_count(k)))
                return self._scored_from_matrix(q, keys[0][keep[0]])
            if count >= MAX_WIDENING:
                return None
            # go straight to the depth the pass rate seen so far calls for (at least twice as deep)
            if filtered:
                share = min(share, max(passing, 1) / max(int(np.isfinite(dists).sum()), 1))
                want = max(count * 2, int(need / share * 1.25))
            else:
                want = count * 4

    def _covered(self, allowed: np.ndarray) -> int:
        """How many of ``allowed`` (sorted keys) are in the key ranges of the graph parts."""
        files = self._open_parts().files
        starts = np.searchsorted(allowed, [f.lo for f in files], side="left")
        ends = np.searchsorted(allowed, [f.hi for f in files], side="right")
        return int((ends - starts).sum())

    def _usable(self, keys: np.ndarray, dists: np.ndarray, removed, allowed, masks=None) -> np.ndarray:
        """Which graph candidates (``keys``, ``dists`` as ``Parts.search`` gives them) can be
        answers: found, in the matrix (not gone since their part was built), not removed since
        the matrix, in ``allowed`` (sorted keys) when given, and with ``masks`` (a mask of the
        matrix's rows and the delta's per query), in the query's mask."""
        mk = self._open_matrix().keys
        if masks is not None and len(mk):
            rows = np.minimum(np.searchsorted(mk, keys), len(mk) - 1)
            usable = np.isfinite(dists) & (mk[rows] == keys)
            for i, (m_bits, _) in enumerate(masks):
                usable[i] &= m_bits[rows[i]]
        else:
            usable = np.isfinite(dists) & in_sorted(keys, mk)
        if removed is not None and len(removed):
            usable &= ~in_sorted(keys, removed)
        if allowed is not None:
            usable &= in_sorted(keys, allowed)
        return usable

    def _scored_from_matrix(self, q, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        """Graph candidates ``keys`` that ``_usable`` kept (so all in the matrix), scored from it."""
        m = self._open_matrix()
        keys = np.sort(keys)
        rows = m.rows_of(keys)
        return (keys, *self._scored(q, m.values[rows], m.norms[rows]))

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

    def candidates_within(self, queries: np.ndarray, ks: Sequence[int], allowed: np.ndarray,
                          token: object, busy: frozenset = frozenset()) -> list[list[int]]:
        """``candidates(q, k, allowed)`` for each row of ``queries``, sharing the work: the vectors
        of ``allowed`` (sorted keys: a namespace's or a filter's matches) are gathered once into
        one contiguous array, kept under ``token`` for the rest of the batch, and scored against
        the block with one matrix product; exact, as a matrix search is. (A filter whose matches
        cost more to gather than its queries cost with their block is a mask of ``begin``'s
        instead: ``with_block``.) ``busy``: the tokens of the caller's current block, which are not
        given up to keep this one."""
        queries = np.ascontiguousarray(queries, np.float32).reshape(-1, self.dims)
        d_keys, d_vecs, d_norms = self._delta_arrays()
        keep = in_sorted(d_keys, allowed)
        d_keys, d_vecs, d_norms = d_keys[keep], d_vecs[keep], d_norms[keep]
        s_keys, s_vecs, s_norms = self._subset(allowed, token, busy)
        bound = max_norm(d_norms, s_norms)
        step = max(1, GROUP_FLOATS // max(1, len(s_keys)))
        out = []
        for start in range(0, len(queries), step):
            qs, qks = queries[start : start + step], ks[start : start + step]
            dists = batch_distances(self.metric, qs, s_vecs, s_norms)
            d_dists = batch_distances(self.metric, qs, d_vecs, d_norms)  # the delta's few rows: all kept
            groups = Groups(dists, qks) if len(s_keys) else None  # (each row read once more)
            for i, k in enumerate(qks):
                tol = tolerance(self.metric, qs[i], bound)
                near = groups.near(i, tol) if groups else np.zeros(0, np.intp)
                out.append(top_candidates(np.concatenate([d_keys, s_keys[near]]),
                                          np.concatenate([d_dists[i], dists[i, near]]), k, tol).tolist())
        return out

    def _subset(self, allowed: np.ndarray, token: object, busy: frozenset):
        """The keys, float32 vectors and norms of ``allowed`` in the search file (removed keys
        left out), gathered once per token and kept (at most ``Tuning.gather_floats`` numbers in
        all, the oldest not ``busy`` given up first)."""
        if token in self._subsets:
            return self._subsets[token]
        removed, limit = self._removed(), self.files.tuning.gather_floats
        size = len(allowed) * self.dims
        held = sum(v[1].size for v in self._subsets.values())
        for old in [t for t in self._subsets if t not in busy]:  # the oldest first
            if held + size <= limit:
                break
            held -= self._subsets.pop(old)[1].size
        kept = held + size <= limit
        if self.matrix is not None:
            rows = self._matrix_rows(allowed)
            if removed is not None and len(removed):  # rewritten since: the delta has them now
                rows = rows[~in_sorted(self.matrix.keys[rows], removed)]
            m = self.matrix
            found = (m.keys[rows], m.values[rows], m.norms[rows])
        else:
            found = (np.zeros(0, np.int64), np.zeros((0, self.dims), np.float32), _EMPTY_NORMS)
        if kept:
            self._subsets[token] = found
        return found

    def with_block(self, queries: int, matches: int) -> bool:
        """Whether ``queries`` queries of a filter passing ``matches`` vectors cost less answered
        with their block, masked (``begin``: ``_masked_cost`` each), than from those vectors,
        gathered (again, if they cannot be kept: ``GATHER_ROWS`` a row) and scored against every
        query (``candidates_within``); on a graph, always when they are more than
        ``Tuning.gather_floats`` numbers."""
        if not matches:
            return False
        if self.graph is not None and matches * self.dims > self.files.tuning.gather_floats:
            return True
        return queries * self._masked_cost(matches) < matches * (queries + GATHER_ROWS)

    def _masked_cost(self, matches: int, graph: bool | None = None) -> float:
        """What a masked query of a block costs, in rows scored: every row of the matrix's product
        (``Tuning.masked_row_cost`` each; on a graph, a product of its own, times
        ``graph_product_row_cost``), or on a graph (unless ``graph`` is False) a search of the
        parts as deep as a filter passing ``matches`` vectors calls for, whichever is less."""
        rows = (len(self.matrix.keys) if self.matrix is not None else 0) + len(self._delta_arrays()[0])
        tuning = self.files.tuning
        if self.graph is None:
            return rows * tuning.masked_row_cost
        product = rows * tuning.masked_row_cost * tuning.graph_product_row_cost
        if graph is False:
            return product
        return min(product, GRAPH_ROWS_PER_DEPTH * self.graph.depth(matches / max(len(self.graph), 1)))

    def _within_depth(self, ks: Sequence[int], matches: int) -> int:
        """How many candidates a graph search for a filter passing ``matches`` vectors asks for:
        enough that about ``search_count(k)`` of them are expected to pass."""
        removed, size = self._removed(), len(self._open_parts())
        share = max(matches / max(size, 1), 1e-6)
        # 1.6x the expected need: at 1.25x, one query in ten of a 50 % filter found too few
        # passing and widened alone, costing the batch a fifth of its time
        need = _search_count(max(ks)) / share * 1.6
        return min(self._open_parts().largest, int(need) + (0 if removed is None else len(removed)))

    def _graph_block(self, queries: np.ndarray, ks: list[int], found, delta, enough: list[int],
                     masks=None) -> list[list[int]]:
        """The candidates of a block of queries from one search of the graph parts (``found``: keys
        and graph distances, as ``Parts.search`` gives them; None when the parts are empty), the
        matrix rows they do not cover, and the ``delta`` (keys, vectors, norms), all scored at
        once. Graph candidates that are gone (and, given ``masks``, per query a bool per row of
        the matrix and of the delta, outside the query's) are dropped and only the nearest few of
        the rest gathered from the matrix; a query left with fewer than ``enough[i]`` widens
        alone (``_candidates_one``)."""
        m, removed = self._open_matrix(), self._removed()
        d_keys, d_vecs, d_norms = delta
        dists = [batch_distances(self.metric, queries, d_vecs, d_norms)]
        keys = [np.broadcast_to(d_keys, (len(queries), len(d_keys)))]
        for i, (_, d_bits) in enumerate(masks or ()):
            dists[0][i, ~d_bits] = np.inf
        if self._uncovered_bound is None:
            self._uncovered_bound = max_norm(*(m.norms[part] for part in self._uncovered))
        bound = max(max_norm(d_norms), self._uncovered_bound)
        short = np.asarray(enough) > 0
        if found is not None:
            g_keys, g_dists = found
            valid = self._usable(g_keys, g_dists, removed, None, masks)
            g_keys, valid = _nearest(g_keys, g_dists, valid, _search_count(max(ks)))
            rows = np.minimum(np.searchsorted(m.keys, g_keys), len(m.keys) - 1)
            rows[~valid] = 0
            norms = m.norms[rows]
            g_dists = paired_distances(self.metric, queries, m.values[rows], norms)
            g_dists[~valid] = np.inf
            keys.append(g_keys)
            dists.append(g_dists)
            bound = max(bound, max_norm(norms[valid]))
            short = valid.sum(axis=1) < np.asarray(enough)
        tols = [tolerance(self.metric, q, bound) for q in queries]
        extra: list[list[tuple[np.ndarray, np.ndarray]]] = [[] for _ in ks]  # per query, from long runs
        for part in self._uncovered:  # scanned exactly
            u_keys = m.keys[part]
            u_dists = batch_distances(self.metric, queries, m.values[part], m.norms[part])
            drop = np.zeros(len(u_keys), bool)
            if removed is not None and len(removed):
                drop |= in_sorted(u_keys, removed)
            u_dists[:, drop] = np.inf
            for i, (m_bits, _) in enumerate(masks or ()):
                u_dists[i, ~m_bits[part]] = np.inf
            if len(u_keys) <= SMALL_RUN:
                keys.append(np.broadcast_to(u_keys, (len(queries), len(u_keys))))
                dists.append(u_dists)
                continue
            groups = Groups(u_dists, ks)  # a long run: only each query's nearest few go on
            for i in range(len(ks)):
                near = groups.near(i, tols[i])
                extra[i].append((u_keys[near], u_dists[i, near]))
        all_keys, all_dists = np.concatenate(keys, axis=1), np.concatenate(dists, axis=1)
        if any(extra):
            out = [top_candidates(np.concatenate([all_keys[i], *(e[0] for e in extra[i])]),
                                  np.concatenate([all_dists[i], *(e[1] for e in extra[i])]), k, tols[i])
                   for i, k in enumerate(ks)]
        else:
            out = top_candidates_rows(all_keys, all_dists, ks, tols)
        return [self._candidates_one(queries[i], k, self._mask_keys(masks[i]) if masks else None)
                if short[i] else out[i].tolist() for i, k in enumerate(ks)]

    def _mask_keys(self, bits) -> np.ndarray:
        """The sorted keys of the matrix's and the delta's rows that a mask passes."""
        return np.sort(np.concatenate([self._open_matrix().keys[bits[0]], self._delta_arrays()[0][bits[1]]]))

    def block_size(self) -> int:
        """How many queries ``begin`` takes at once: the product of a block with the matrix (when
        it is searched exactly) is at most ``BLOCK_FLOATS`` numbers."""
        if self.graph is not None:  # the rows no graph part covers are scanned exactly
            n = self._uncovered_rows
        else:
            n = len(self.matrix.keys) if self.matrix is not None else 0
        return max(1, min(MAX_BLOCK_QUERIES, BLOCK_FLOATS // max(1, n + len(self._delta_arrays()[0]))))

    def block_filters(self) -> int:
        """How many distinct filters a block of a batch may hold: their masks (``begin``), at most
        4 bytes a row of the matrix and 1 a row of the delta each, are at most
        ``Tuning.block_mask_bytes``."""
        rows = 4 * (len(self.matrix.keys) if self.matrix is not None else 0) + len(self._delta_arrays()[0])
        return max(1, self.files.tuning.block_mask_bytes // max(1, rows))

    def begin(self, queries: np.ndarray, ks: Sequence[int], *, background: bool = True,
              masks: Sequence[tuple[np.ndarray, np.ndarray]] = ()) -> _Block:
        """Start ``candidates_many`` for at most ``block_size()`` queries; ``finish`` completes
        it. The heavy part (the matrix product and its group minima, or the graph search), which
        runs without Python's lock, goes to a background thread, so that a caller can answer the
        block before (fetch rows, rescore, print) meanwhile: ``query.answer_many`` does.

        ``masks``: the last ``len(masks)`` queries are filtered, each by the matrix's rows it
        passes (positions, in any order) and a mask of the delta's (``masks.BatchMasks.rows``).
        On a matrix they share the block's product and their candidates are the nearest of the
        rows they pass. On a graph, each is scored against every row of the matrix the same way
        or, when that costs more (``_masked_cost``), searched in the parts with those whose
        filters pass about as many vectors (within a factor of two), as deep as the narrowest of
        them calls for, keeping the candidates it passes."""
        queries = np.ascontiguousarray(queries, np.float32).reshape(-1, self.dims)
        ks = list(ks)
        self._prepare()
        plain = len(ks) - len(masks)
        heavy = self._graph_heavy if self.graph is not None else self._matrix_heavy
        args = (queries, ks, plain) if self.graph is None else (queries, ks, plain, masks)
        if not background:
            return _Block(queries, ks, masks, result=heavy(*args))
        return _Block(queries, ks, masks, future=self._background().submit(heavy, *args))

    def begin_within(self, queries: np.ndarray, ks: Sequence[int], allowed: np.ndarray, token: object,
                     busy: frozenset = frozenset()):
        """``candidates_within`` in the background thread, after the work queued there before it;
        a future of its answer. Meanwhile the caller can read the next group's matching keys from
        SQLite, which, like the matrix products, runs without Python's lock."""
        self._prepare()
        return self._background().submit(self.candidates_within, queries, ks, allowed, token, busy)

    def _prepare(self) -> None:
        """Everything read from the store, and all shared state, is set up in the caller's thread;
        the background thread only computes from arrays (and alone touches the kept subsets)."""
        self._delta_arrays()
        self._removed()
        if self.matrix is not None:
            self._removed_columns()

    def _background(self):
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor  # lazy: only batches use a thread

            self._pool = ThreadPoolExecutor(1, thread_name_prefix="vcli-search")
        return self._pool

    def finish(self, block: _Block) -> list[list[int]]:
        heavy = block.future.result() if block.future is not None else block.result
        if self.graph is not None:
            return self._graph_finish(block.queries, block.ks, heavy, block.masks)
        return self._matrix_finish(block.queries, block.ks, heavy, block.masks)

    def _matrix_heavy(self, queries: np.ndarray, ks: list[int], plain: int):
        """The block's product with the matrix, and the group minima of its first ``plain`` rows
        (the queries that are not masked)."""
        m = self.matrix
        if m is None or not len(m.keys):
            return None
        dists = batch_distances(self.metric, queries, m.values, m.norms)
        gone = self._removed_rows
        if gone is not None and len(gone):
            dists[:, gone] = np.inf
        return dists, Groups(dists[:plain], ks[:plain]) if plain else None

    def _matrix_finish(self, queries: np.ndarray, ks: list[int], heavy, masks=()) -> list[list[int]]:
        """Exact candidates for a block of queries: the delta and (when there is one) the matrix,
        each as one matrix product. Scanning the product is what costs beyond it, so each row is
        read once more only: for the minimum of each of ``GROUPS`` interleaved groups of columns.
        The k-th smallest of those minima bounds the k-th distance from above (k groups hold at
        least k rows that near), and only the few groups whose minimum is within the bound (plus
        the tolerance) are looked into. A masked query (the last ``len(masks)``) looks into the
        rows its mask passes."""
        d_keys, d_vecs, d_norms = self._delta_arrays()
        d_dists = batch_distances(self.metric, queries, d_vecs, d_norms)
        m = self.matrix
        bound = max_norm(d_norms, m.norms if m is not None else _EMPTY_NORMS)
        plain = len(ks) - len(masks)
        out = []
        for i, k in enumerate(ks):
            tol = tolerance(self.metric, queries[i], bound)
            keys, row = d_keys, d_dists[i]
            if i >= plain:
                m_rows, d_bits = masks[i - plain]
                keys, row = keys[d_bits], row[d_bits]
                if heavy is not None:
                    keys = np.concatenate([keys, self._open_matrix().keys[m_rows]])
                    row = np.concatenate([row, heavy[0][i][m_rows]])
            elif heavy is not None:
                dists, groups = heavy
                near = groups.near(i, tol)
                keys, row = np.concatenate([keys, self._open_matrix().keys[near]]), np.concatenate([row, dists[i, near]])
            out.append(top_candidates(keys, row, k, tol).tolist())
        return out

    def _graph_heavy(self, queries: np.ndarray, ks: list[int], plain: int, masks=()):
        """The search of the graph parts for the block's first ``plain`` queries (None when there
        are none); for the masked ones after them, those cheaper scored against every row of the
        matrix (``_masked_cost``) scored so, their nearest kept (``{which: (keys, distances)}``),
        and the others searched in the parts, ``(which, found)`` for each bin of them searched
        together (``_mask_bins``)."""
        found = self._graph_search(queries[:plain], ks[:plain]) if plain else None
        masked = [(j, max(len(m_rows), 1)) for j, (m_rows, _) in enumerate(masks)]
        product = [j for j, n in masked if self._masked_cost(n, graph=False) <= self._masked_cost(n)]
        near = self._product_near(queries[plain:], ks[plain:], masks, product)
        bins = []
        for which, matches in self._mask_bins([(j, n) for j, n in masked if j not in near]):
            qks = [ks[plain + j] for j in which]
            with self._graph_lock:
                parts = self._open_parts()
                bins.append((which, parts.search(queries[plain + which], self._within_depth(qks, matches),
                                                 threads=os.cpu_count() or 1,
                                                 share=matches / max(len(parts), 1))))
        return found, near, bins

    def _product_near(self, queries: np.ndarray, ks: list[int], masks, which: list[int]) -> dict:
        """For queries ``which`` (of ``queries``, ``ks`` and ``masks``): the matrix's rows of
        each one's mask within the tolerance of its k-th nearest, ``{j: (keys, distances)}``,
        from matrix products of at most ``BLOCK_FLOATS`` distances."""
        m = self._open_matrix()
        near: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        if not which:
            return near
        bound = max_norm(self._delta_arrays()[2], m.norms)
        gone = self._removed_rows
        step = max(1, BLOCK_FLOATS // max(1, len(m.keys)))
        for start in range(0, len(which), step):
            js = which[start : start + step]
            dists = batch_distances(self.metric, queries[js], m.values, m.norms)
            if gone is not None and len(gone):
                dists[:, gone] = np.inf
            for j, row in zip(js, dists, strict=True):
                rows = masks[j][0]
                keys = top_candidates(rows, row[rows], ks[j], tolerance(self.metric, queries[j], bound))
                near[j] = (m.keys[keys], row[keys])
        return near

    def _mask_bins(self, masked: list[tuple[int, int]]) -> list[tuple[np.ndarray, int]]:
        """The masked queries ``masked`` (``(which, the rows its mask passes)``) in bins of those
        whose masks pass about as many (within a factor of two): ``(which, the fewest rows one
        of them passes)``."""
        size = max(len(self._open_parts()), 1)
        bins: dict[int, list[tuple[int, int]]] = {}
        for j, matches in masked:
            bins.setdefault(int(np.log2(size / matches)), []).append((j, matches))
        return [(np.array([j for j, _ in members]), min(n for _, n in members)) for members in bins.values()]

    def _graph_search(self, queries: np.ndarray, ks: list[int]):
        g, m = self._open_parts(), self._open_matrix()
        removed = self._removed_keys
        wanted = _search_count(max(ks))
        # candidates that will be dropped: keys removed since the matrix, and the parts' vectors
        # gone since they were built (a share of what each part finds)
        gone = len(g) - (len(m.keys) - self._uncovered_rows)
        margin = (0 if removed is None else len(removed)) + -(-wanted * gone // max(len(g), 1))
        count = min(g.largest, wanted + min(wanted, margin))
        if not count:
            return None
        with self._graph_lock:
            return g.search(queries, count, threads=os.cpu_count() or 1)

    def _graph_finish(self, queries: np.ndarray, ks: list[int], heavy, masks=()) -> list[list[int]]:
        """Graph candidates for a block of queries, found in one search on all cores (and one per
        bin of the masked ones); a query that loses too many of its candidates to removed keys
        (or its mask) widens alone."""
        found, near, bins = heavy
        removed, delta = self._removed(), self._delta_arrays()
        live = len(self._open_parts()) - (0 if removed is None else len(removed))
        plain = len(ks) - len(masks)
        out = self._graph_block(queries[:plain], ks[:plain], found, delta, [min(k, live) for k in ks[:plain]]) \
            if plain else []
        masked: list = [None] * len(masks)
        d_keys, d_vecs, d_norms = delta
        bound = max_norm(d_norms, self._open_matrix().norms)
        for j, (keys, dists) in near.items():  # scored against every row
            q, d_bits = queries[plain + j], masks[j][1]
            d_dists = batch_distances(self.metric, q[None, :], d_vecs[d_bits], d_norms[d_bits])[0]
            masked[j] = top_candidates(np.concatenate([d_keys[d_bits], keys]), np.concatenate([d_dists, dists]),
                                       ks[plain + j], tolerance(self.metric, q, bound)).tolist()
        for which, found_bin in bins:
            qks, bits = [ks[plain + j] for j in which], [self._bits(masks[j]) for j in which]
            enough = [min(_search_count(k), self._covered_rows(b[0])) for k, b in zip(qks, bits, strict=True)]
            got = self._graph_block(queries[plain + which], qks, found_bin, delta, enough, masks=bits)
            for j, candidates in zip(which, got, strict=True):
                masked[j] = candidates
        return out + masked

    def _bits(self, mask):
        """A query's mask (``begin``) as a bool per row of the matrix and of the delta."""
        m_bits = np.zeros(len(self._open_matrix().keys), bool)
        m_bits[mask[0]] = True
        return m_bits, mask[1]

    def _covered_rows(self, m_bits: np.ndarray) -> int:
        """How many of the matrix's rows that ``m_bits`` passes are in the graph parts."""
        return int(np.count_nonzero(m_bits)) - sum(int(np.count_nonzero(m_bits[run])) for run in self._uncovered)


class _Block:
    """A block of queries in ``Searcher.begin`` / ``finish``: its heavy part, done or coming."""

    __slots__ = ("queries", "ks", "masks", "result", "future")

    def __init__(self, queries: np.ndarray, ks: list[int], masks=(), result: object = None,
                 future: Future | None = None):
        self.queries, self.ks, self.masks, self.result, self.future = queries, ks, masks, result, future
