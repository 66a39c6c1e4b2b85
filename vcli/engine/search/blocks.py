"""A batch's blocks: many queries searched at once, one matrix product (or one graph search,
``graph_blocks.py``) per block, its heavy part on a background thread while the caller answers
the block before; filtered queries as masks of the rows they pass (``masks.py``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from ..scoring import Groups, batch_distances, max_norm, tolerance, top_candidates
from .common import _EMPTY_NORMS, cores
from .graph_blocks import GraphBlocks

if TYPE_CHECKING:
    from concurrent.futures import Future


class Blocks(GraphBlocks):
    """``begin``/``finish`` a block of queries, and ``candidates_many`` built on them."""

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
        """How many queries ``begin`` takes at once: the product of a block with the matrix (when
        it is searched exactly) is at most ``Tuning.block_floats`` numbers."""
        if self.graph is not None:  # the rows no graph part covers are scanned exactly
            n = self._uncovered_rows
        else:
            n = len(self.matrix.keys) if self.matrix is not None else 0
        rows = n + len(self._delta_arrays()[0])
        return max(1, min(self.tuning.max_block_queries, self.tuning.block_floats // max(1, rows)))

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

    def _prepare(self) -> None:
        """Everything read from the store, and all shared state, is set up in the caller's thread;
        the background threads compute from arrays (sharing the kept subsets under a lock; the
        graph parts' values are mapped on first use, ``Grouped._part_values``)."""
        self._delta_arrays()
        self._removed()
        if self.matrix is not None:
            self._removed_columns()

    def _background(self):
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor  # lazy: only batches use a thread

            self._pool = ThreadPoolExecutor(self.tuning.batch_threads or min(4, cores()), thread_name_prefix="vcli-search")
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
        return dists, Groups(dists[:plain], ks[:plain], self.tuning.score_groups) if plain else None

    def _matrix_finish(self, queries: np.ndarray, ks: list[int], heavy, masks=()) -> list[list[int]]:
        """Exact candidates for a block of queries: the delta and (when there is one) the matrix,
        each as one matrix product. Scanning the product is what costs beyond it, so each row is
        read once more only: for the minimum of each of ``Tuning.score_groups`` interleaved groups of columns.
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
                keys = np.concatenate([keys, self._open_matrix().keys[near]])
                row = np.concatenate([row, dists[i, near]])
            out.append(top_candidates(keys, row, k, tol).tolist())
        return out


class _Block:
    """A block of queries in ``Searcher.begin`` / ``finish``: its heavy part, done or coming."""

    __slots__ = ("queries", "ks", "masks", "result", "future")

    def __init__(self, queries: np.ndarray, ks: list[int], masks=(), result: object = None,
                 future: Future | None = None):
        self.queries, self.ks, self.masks, self.result, self.future = queries, ks, masks, result, future
