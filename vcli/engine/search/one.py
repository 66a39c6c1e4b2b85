"""One query: candidates from the delta and the matrix (scored exactly) or the graph parts
(scored from the matrix), with a namespace or filter as sorted keys (``allowed``) or a check
(``accept``); a filtered graph search widens until enough candidates pass."""

from __future__ import annotations

import numpy as np

from ..scoring import SAFE_NORM, distances, max_norm, row_norms, tolerance
from .common import Accept, _nearest, in_sorted, nearest_keys
from .opening import Opened


class OneQuery(Opened):
    """One query at a time (``Searcher.candidates`` with a namespace or filter, and a batch's
    query that loses too many candidates to widen alone)."""

    def _candidates_one(
        self, q: np.ndarray, k: int, allowed: np.ndarray | None = None, accept: Accept | None = None,
    ) -> list[int]:
        removed = self._removed()
        keys, dists, top = self._delta(q, allowed, accept)
        found = None
        if self.graph is not None and (allowed is None or len(allowed) > max(4 * k, 2048)) \
                and float(np.linalg.norm(q.astype(np.float64))) < SAFE_NORM:  # (the graph overflows beyond)
            found = self._graph(q, k, allowed, removed, accept)
        if found is not None:
            parts = [found, *(self._matrix(q, allowed, removed, k, accept, top, rows) for rows in self._uncovered)]
            m_keys, m_dists = (np.concatenate([f[i] for f in parts]) for i in (0, 1))
            m_top = max(f[2] for f in parts)
        elif self.matrix is not None:  # (a few allowed keys, or a filter the graph finds too few of)
            m_keys, m_dists, m_top = self._matrix(q, allowed, removed, k, accept, top)
        else:
            m_keys, m_dists, m_top = keys[:0], dists[:0], 0.0
        return nearest_keys([keys, m_keys], [dists, m_dists], k, tolerance(self.metric, q, max(top, m_top)))

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
        search would go deeper than ``Tuning.max_widening``: the caller scans the matrix exactly instead
        (matches written since the parts were built, say, are in no part)."""
        g = self._open_parts()
        skip = 0 if removed is None else len(removed)
        count_k = self.tuning.search_count(k)
        want = count_k + min(skip, count_k)
        # A filtered search widens until as many candidates pass as an unfiltered search looks
        # at (``Tuning.search_count(k)``), not just k: the graph is approximate deep in its answer too, and
        # this keeps a filtered query's recall at an unfiltered one's (benchmarks/filters.py).
        filtered = allowed is not None or accept is not None
        need = count_k if filtered else k
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
                keys, keep = _nearest(keys[None, :], dists[None, :], keep[None, :], max(need, count_k))
                return self._scored_from_matrix(q, keys[0][keep[0]])
            if count >= self.tuning.max_widening:
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
