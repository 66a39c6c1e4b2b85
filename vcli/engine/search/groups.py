"""A batch's groups: the queries of a batch that share a namespace or filter, scored together
against one contiguous copy of the vectors it matches, kept for the rest of the batch (when that
costs less than answering them with their block: ``with_block``)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..scoring import Groups, batch_distances, max_norm, tolerance
from .blocks import Blocks
from .common import _EMPTY_NORMS, in_sorted, nearest_keys


class Grouped(Blocks):
    """``candidates_within`` a group's gathered vectors, and ``with_block``: whether a group is
    better answered with its block instead."""

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
        step = max(1, self.tuning.group_floats // max(1, len(s_keys)))
        out = []
        for start in range(0, len(queries), step):
            qs, qks = queries[start : start + step], ks[start : start + step]
            dists = batch_distances(self.metric, qs, s_vecs, s_norms)
            d_dists = batch_distances(self.metric, qs, d_vecs, d_norms)  # the delta's few rows: all kept
            # (each row read once more)
            groups = Groups(dists, qks, self.tuning.score_groups) if len(s_keys) else None
            for i, k in enumerate(qks):
                tol = tolerance(self.metric, qs[i], bound)
                near = groups.near(i, tol) if groups else np.zeros(0, np.intp)
                out.append(nearest_keys([d_keys, s_keys[near]], [d_dists[i], dists[i, near]], k, tol))
        return out

    def begin_within(self, queries: np.ndarray, ks: Sequence[int], allowed: np.ndarray, token: object,
                     busy: frozenset = frozenset()):
        """``candidates_within`` in the background thread, after the work queued there before it;
        a future of its answer. Meanwhile the caller can read the next group's matching keys from
        SQLite, which, like the matrix products, runs without Python's lock."""
        self._prepare()
        return self._background().submit(self.candidates_within, queries, ks, allowed, token, busy)

    def _subset(self, allowed: np.ndarray, token: object, busy: frozenset):
        """The keys, float32 vectors and norms of ``allowed`` in the search file (removed keys
        left out), gathered once per token and kept (at most ``Tuning.gather_floats`` numbers in
        all, the oldest not ``busy`` given up first)."""
        if token in self._subsets:
            return self._subsets[token]
        removed, limit = self._removed(), self.tuning.gather_floats
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
        gathered (again, if they cannot be kept: ``Tuning.gather_rows`` a row) and scored against every
        query (``candidates_within``); on a graph, always when they are more than
        ``Tuning.gather_floats`` numbers."""
        if not matches:
            return False
        if self.graph is not None and matches * self.dims > self.tuning.gather_floats:
            return True
        return queries * self._masked_cost(matches) < matches * (queries + self.tuning.gather_rows)
