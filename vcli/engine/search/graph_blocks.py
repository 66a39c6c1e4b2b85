"""A batch's blocks on a graph: one search of the parts on all cores for the block's unfiltered
queries, and for its masked ones (a filter each, as the rows it passes) a product with the matrix
or a search of the parts per bin of those whose filters pass about as many vectors."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from ..scoring import (
    Groups,
    batch_distances,
    max_norm,
    paired_distances,
    tolerance,
    top_candidates,
    top_candidates_rows,
)
from .common import _nearest, in_sorted, nearest_keys
from .one import OneQuery


class GraphBlocks(OneQuery):
    """The graph's half of ``Blocks`` (``begin``/``finish`` on an index with graph parts)."""

    def _masked_cost(self, matches: int, graph: bool | None = None) -> float:
        """What a masked query of a block costs, in rows scored: every row of the matrix's product
        (``Tuning.masked_row_cost`` each; on a graph, a product of its own, times
        ``graph_product_row_cost``), or on a graph (unless ``graph`` is False) a search of the
        parts as deep as a filter passing ``matches`` vectors calls for, whichever is less."""
        rows = (len(self.matrix.keys) if self.matrix is not None else 0) + len(self._delta_arrays()[0])
        tuning = self.tuning
        if self.graph is None:
            return rows * tuning.masked_row_cost
        product = rows * tuning.masked_row_cost * tuning.graph_product_row_cost
        if graph is False:
            return product
        return min(product, tuning.graph_rows_per_depth * self.graph.depth(matches / max(len(self.graph), 1)))

    def _within_depth(self, ks: Sequence[int], matches: int) -> int:
        """How many candidates a graph search for a filter passing ``matches`` vectors asks for:
        enough that about ``Tuning.search_count(k)`` of them are expected to pass."""
        removed, size = self._removed(), len(self._open_parts())
        share = max(matches / max(size, 1), 1e-6)
        # 1.6x the expected need: at 1.25x, one query in ten of a 50 % filter found too few
        # passing and widened alone, each a search of its own rather than a share of the block's
        need = self.tuning.search_count(max(ks)) / share * 1.6
        return min(self._open_parts().largest, int(need) + (0 if removed is None else len(removed)))

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
        from matrix products of at most ``Tuning.block_floats`` distances."""
        m = self._open_matrix()
        near: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        if not which:
            return near
        bound = max_norm(self._delta_arrays()[2], m.norms)
        gone = self._removed_rows
        step = max(1, self.tuning.block_floats // max(1, len(m.keys)))
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
        wanted = self.tuning.search_count(max(ks))
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
            masked[j] = nearest_keys([d_keys[d_bits], keys], [d_dists, dists], ks[plain + j],
                                     tolerance(self.metric, q, bound))
        for which, found_bin in bins:
            qks, bits = [ks[plain + j] for j in which], [self._bits(masks[j]) for j in which]
            enough = [min(self.tuning.search_count(k), self._covered_rows(b[0]))
                      for k, b in zip(qks, bits, strict=True)]
            got = self._graph_block(queries[plain + which], qks, found_bin, delta, enough, masks=bits)
            for j, candidates in zip(which, got, strict=True):
                masked[j] = candidates
        return out + masked

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
            g_keys, valid = _nearest(g_keys, g_dists, valid, self.tuning.search_count(max(ks)))
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
            if len(u_keys) <= self.tuning.small_run:
                keys.append(np.broadcast_to(u_keys, (len(queries), len(u_keys))))
                dists.append(u_dists)
                continue
            # a long run: only each query's nearest few go on
            groups = Groups(u_dists, ks, self.tuning.score_groups)
            for i in range(len(ks)):
                near = groups.near(i, tols[i])
                extra[i].append((u_keys[near], u_dists[i, near]))
        all_keys, all_dists = np.concatenate(keys, axis=1), np.concatenate(dists, axis=1)
        if any(extra):
            out = [nearest_keys([all_keys[i], *(e[0] for e in extra[i])],
                                [all_dists[i], *(e[1] for e in extra[i])], k, tols[i]) for i, k in enumerate(ks)]
        else:
            out = [row.tolist() for row in top_candidates_rows(all_keys, all_dists, ks, tols)]
        return [self._candidates_one(queries[i], k, self._mask_keys(masks[i]) if masks else None)
                if short[i] else out[i] for i, k in enumerate(ks)]

    def _mask_keys(self, bits) -> np.ndarray:
        """The sorted keys of the matrix's and the delta's rows that a mask passes."""
        return np.sort(np.concatenate([self._open_matrix().keys[bits[0]], self._delta_arrays()[0][bits[1]]]))

    def _bits(self, mask):
        """A query's mask (``begin``) as a bool per row of the matrix and of the delta."""
        m_bits = np.zeros(len(self._open_matrix().keys), bool)
        m_bits[mask[0]] = True
        return m_bits, mask[1]

    def _covered_rows(self, m_bits: np.ndarray) -> int:
        """How many of the matrix's rows that ``m_bits`` passes are in the graph parts."""
        return int(np.count_nonzero(m_bits)) - sum(int(np.count_nonzero(m_bits[run])) for run in self._uncovered)
