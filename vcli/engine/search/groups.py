"""A batch's groups: the queries of a batch that share a namespace or filter, scored together
against one contiguous copy of the vectors it matches or of the rows of the conditions it is made
of (each kept for the rest of the batch, and shared by every filter that uses the condition), when
that costs less than answering them with their block: ``route``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..scoring import (
    Groups,
    batch_distances,
    bf16_tensor,
    max_norm,
    pair_distances,
    prescorable,
    prescore_distances,
    prescore_errors,
    prescore_fast,
    row_norms,
    to_bf16,
    tolerances,
)
from .blocks import Blocks
from .common import _EMPTY_NORMS, in_sorted, nearest_keys

if TYPE_CHECKING:
    from concurrent.futures import Future

# keys, vectors (float32, or a NumKong bfloat16 tensor: ``scoring.to_bf16``), norms, matrix rows
Subset = tuple[np.ndarray, Any, np.ndarray, np.ndarray]


class _Coming:
    """A subset being gathered (or to be, ``Grouped.prefetch``): its size (float32 numbers'
    worth), whether a thread has taken it on, and the future of it."""

    __slots__ = ("size", "claimed", "future")

    def __init__(self, size: int):
        from concurrent.futures import Future

        self.size, self.claimed = size, False
        self.future: Future[Subset] = Future()


class Grouped(Blocks):
    """``candidates_within`` a group's gathered vectors, ``candidates_in_rows`` its conditions'
    rows, and ``route``: which of them, or the group's block, answers a group."""

    def candidates_within(self, queries: np.ndarray, ks: Sequence[int], allowed: np.ndarray,
                          token: object, busy: frozenset = frozenset()) -> list[list[int]]:
        """``candidates(q, k, allowed)`` for each row of ``queries``, sharing the work: the vectors
        of ``allowed`` (sorted keys: a namespace's or a filter's matches) are gathered once into
        one contiguous array, kept under ``token`` for the rest of the batch, and scored against
        the block with one matrix product; exact, as a matrix search is. (A filter whose matches
        cost more to gather than its queries cost with their block is a mask of ``begin``'s
        instead: ``route``.) ``busy``: the tokens of the caller's current block, which are not
        given up to keep this one."""
        queries = np.ascontiguousarray(queries, np.float32).reshape(-1, self.dims)
        d_keys, d_vecs, d_norms = self._delta_arrays()
        keep = in_sorted(d_keys, allowed)
        d_keys, d_vecs, d_norms = d_keys[keep], d_vecs[keep], d_norms[keep]
        brief = self._prescorable(queries, len(allowed), token)
        s_keys, s_vecs, s_norms, s_rows = self._subset(allowed, token, busy, brief)
        bound = max_norm(d_norms, s_norms)
        step = max(1, self.tuning.group_floats // max(1, len(s_keys)))
        out = []
        for start in range(0, len(queries), step):
            qs, qks = queries[start : start + step], ks[start : start + step]
            dists = self._distances(qs, s_vecs, s_norms, brief)
            d_dists = batch_distances(self.metric, qs, d_vecs, d_norms)  # the delta's few rows: all kept
            # (each row read once more)
            groups = Groups(dists, qks, self.tuning.score_groups) if len(s_keys) else None
            nears = self._nears(qs, groups, s_rows, s_norms, bound, brief)
            for i, k in enumerate(qks):
                near, found, tol = nears[i]
                out.append(nearest_keys([d_keys, s_keys[near]], [d_dists[i], found], k, tol))
        return out

    def candidates_in_rows(self, queries: np.ndarray, ks: Sequence[int], rows: np.ndarray, token: object,
                           drops: Sequence[np.ndarray | None], deltas: Sequence[np.ndarray | None],
                           busy: frozenset = frozenset()) -> list[list[int]]:
        """For each row of ``queries``, the candidates of its top ``ks[i]`` among the matrix's
        ``rows`` (positions: the rows holding one condition, ``masks.BatchMasks``) that
        ``drops[i]`` does not drop (a bool per row of ``rows``; None: none), and the delta's rows
        that ``deltas[i]`` lets through (a bool per row of the delta; None: none). The rows'
        vectors are gathered once and kept under ``token`` for the batch, whichever filters use
        the condition, and scored against the queries with one matrix product at a time; exact.
        (Ordering the rows by namespace, so that a line in one is scored against its part alone,
        cost more: three smaller products a condition instead of one took a 1,000-line batch at
        500k from 4.1-4.8 to 5.5-6.0 CPU seconds.)"""
        queries = np.ascontiguousarray(queries, np.float32).reshape(-1, self.dims)
        d_keys, d_vecs, d_norms = self._delta_arrays()
        # (a condition's rows are read from the store's snapshot, which holds no removed key)
        brief = self._prescorable(queries, len(rows), token)
        s_keys, s_vecs, s_norms, s_rows = self._kept(token, busy, len(rows), lambda: self._gather(rows, brief), brief)
        bound = max_norm(d_norms, s_norms)
        step = max(1, self.tuning.group_floats // max(1, len(s_keys)))
        out = []
        penalties: dict[int, np.ndarray] = {}  # inf where dropped, by the drops that share it (a filter's lines)
        for start in range(0, len(queries), step):
            qs, qks = queries[start : start + step], ks[start : start + step]
            dists = self._distances(qs, s_vecs, s_norms, brief)
            for i, drop in enumerate(drops[start : start + step]):
                if drop is not None:  # an addition costs less than a masked store
                    if id(drop) not in penalties:
                        penalties[id(drop)] = np.where(drop, np.float32(np.inf), np.float32(0))
                    dists[i] += penalties[id(drop)]
            groups = Groups(dists, qks, self.tuning.score_groups) if len(s_keys) else None
            chunk = deltas[start : start + step]
            # the delta's few rows, all kept: one product for the chunk, not one a line
            d_dists = batch_distances(self.metric, qs, d_vecs, d_norms) \
                if any(bits is not None and bits.any() for bits in chunk) else None
            nears = self._nears(qs, groups, s_rows, s_norms, bound, brief)
            for i, k in enumerate(qks):
                near, scores, tol = nears[i]
                keys, found = [s_keys[near]], [scores]
                bits = chunk[i]
                if d_dists is not None and bits is not None:
                    keys.append(d_keys[bits])
                    found.append(d_dists[i, bits])
                out.append(nearest_keys(keys, found, k, tol))
        return out

    def begin_in_rows(self, *args) -> Future:
        """``candidates_in_rows`` in the background thread, after the work queued there before it."""
        self._prepare()
        return self._background().submit(self.candidates_in_rows, *args)

    def begin_within(self, queries: np.ndarray, ks: Sequence[int], allowed: np.ndarray, token: object,
                     busy: frozenset = frozenset()):
        """``candidates_within`` in the background thread, after the work queued there before it;
        a future of its answer. Meanwhile the caller can read the next group's matching keys from
        SQLite, which, like the matrix products, runs without Python's lock."""
        self._prepare()
        return self._background().submit(self.candidates_within, queries, ks, allowed, token, busy)

    def _subset(self, allowed: np.ndarray, token: object, busy: frozenset, brief: bool):
        """The keys, vectors and norms of ``allowed`` in the search file (removed keys left out),
        gathered once per token and kept (``_kept``)."""
        def gather():
            if self.matrix is None:  # (every row is the delta's: an index too small for a matrix)
                return self._gather(np.zeros(0, np.intp), brief)
            rows = self._matrix_rows(allowed)
            removed = self._removed()
            if removed is not None and len(removed):  # rewritten since: the delta has them now
                rows = rows[~in_sorted(self._open_matrix().keys[rows], removed)]
            return self._gather(rows, brief)

        return self._kept(token, busy, len(allowed), gather, brief)

    def prefetch(self, token: object, rows: np.ndarray) -> None:
        """Start gathering the matrix's ``rows`` (a condition's) under ``token`` as a bfloat16
        copy ahead of the block that will score against them, on a thread of its own while the
        caller reads the block's other lines (so the caller keeps a core): when they fit in what
        ``Tuning.gather_floats`` has left without giving up a kept copy, and would be pre-scored
        (``_prescore_rows``). A job of the block that needs the copy before that thread has
        started on it gathers it itself; one that needs it while it is under way waits for it."""
        if not self._prescore_rows():
            return
        key, size = (True, token), len(rows) * self.dims // 2
        with self._subsets_lock:
            if key in self._subsets or key in self._gathering or self._held() + size > self.tuning.gather_floats:
                return
            self._gathering[key] = _Coming(size)
        if self._ahead is None:
            from concurrent.futures import ThreadPoolExecutor

            self._ahead = ThreadPoolExecutor(1, thread_name_prefix="vcli-gather")
        self._ahead.submit(self._gather_ahead, key, rows)

    def _gather_ahead(self, key: tuple[bool, object], rows: np.ndarray) -> None:
        with self._subsets_lock:
            coming = self._gathering.get(key)
            if coming is None or coming.claimed:  # (a job of the block took it on first)
                return
            coming.claimed = True
        self._fill(key, coming, lambda: self._gather(rows, True))

    def _held(self) -> int:
        """The float32 numbers' worth of bytes of the kept copies and of those coming (under
        ``_subsets_lock``)."""
        return sum(v[1].nbytes // 4 for v in self._subsets.values()) + sum(c.size for c in self._gathering.values())

    def _kept(self, token: object, busy: frozenset, size: int, gather: Callable[[], Subset], brief: bool) -> Subset:
        """The subset ``gather()`` gives (of at most ``size`` rows, bfloat16 if ``brief``), once
        per token and kept (at most ``Tuning.gather_floats`` float32 numbers' worth of bytes in
        all, the oldest not ``busy`` given up first). A float32 copy is kept apart from a
        bfloat16 one (for queries the bfloat16 kernel cannot take, or too many a product). The
        background threads share them: a copy another thread is gathering is waited for, not
        gathered twice."""
        key, size = (brief, token), size * self.dims // (2 if brief else 1)
        with self._subsets_lock:
            if key in self._subsets:
                return self._subsets[key]
            coming = self._gathering.get(key)
            mine = coming is None or not coming.claimed
            if coming is None:
                held, limit = self._held(), self.tuning.gather_floats
                for old in [t for t in self._subsets if t[1] not in busy]:  # the oldest first
                    if held + size <= limit:
                        break
                    held -= self._subsets.pop(old)[1].nbytes // 4
                coming = self._gathering[key] = _Coming(size)
            coming.claimed = True
        return self._fill(key, coming, gather) if mine else coming.future.result()

    def _fill(self, key: tuple[bool, object], coming: _Coming, gather: Callable[[], Subset]) -> Subset:
        """Gather what ``coming`` (claimed by this thread) stands for, keep it if it fits, and hand
        it to those waiting for it."""
        try:
            found = gather()
        except BaseException as exc:
            with self._subsets_lock:
                del self._gathering[key]
            coming.future.set_exception(exc)
            raise
        with self._subsets_lock:
            del self._gathering[key]
            if self._held() + coming.size <= self.tuning.gather_floats:
                self._subsets[key] = found
        coming.future.set_result(found)
        return found

    def _gather(self, rows: np.ndarray, brief: bool = False) -> Subset:
        """The keys, vectors and norms of the matrix's ``rows``, as contiguous copies (the vectors
        in bfloat16 if ``brief``: ``scoring.to_bf16``), and ``rows``."""
        m = self.matrix
        if m is None:
            return np.zeros(0, np.int64), np.zeros((0, self.dims), np.float32), _EMPTY_NORMS, np.zeros(0, np.intp)
        vecs = self._bf16(rows) if brief else m.values[rows]
        return m.keys[rows], vecs, m.norms[rows], rows

    def _bf16(self, rows: np.ndarray):
        """A bfloat16 copy of the matrix's ``rows``: taken from the graph parts' own values where
        they hold them (``graph.PartValues``: half the bytes to read, already rounded; a gather of
        a million rows at 500k took 0.2 s so, against 0.64 s from the matrix), rounded from the
        matrix's float32 elsewhere (``scoring.to_bf16``)."""
        m = self._open_matrix()
        parts = self._part_values()
        if not parts:
            return to_bf16(m.values, rows)
        keys = m.keys[rows]
        bits = np.empty((len(rows), self.dims), np.uint16)
        left = np.ones(len(rows), bool)
        for values in parts:
            nodes = values.nodes(keys)
            got = (nodes >= 0) & left
            if got.all():
                np.take(values.vectors, nodes, axis=0, out=bits)
                return bf16_tensor(bits)
            bits[got] = values.vectors[nodes[got]]
            left &= ~got
        if left.any():
            bits[left] = np.asarray(to_bf16(m.values, rows[left]))
        return bf16_tensor(bits)

    def _part_values(self) -> list:
        """The usable ``graph.PartValues`` of the open graph parts (none without a graph), read once."""
        if self.graph is None:
            return []
        with self._values_lock:
            if self._values is None:
                from ..graph import part_values  # lazy: usearch, imported already with the graph

                found = (part_values(f, self._open_matrix(), self.tuning.check_samples) for f in self.graph.files)
                self._values = [v for v in found if v is not None]
            return self._values

    def _prescorable(self, queries: np.ndarray, size: int, token: object = None) -> bool:
        """Whether rows gathered for ``queries`` (at most ``size``) are scored from a bfloat16
        copy first: ``_prescore_rows``, query norms the kernel can take (``scoring.prescorable``),
        and fewer than ``Tuning.prescore_queries`` queries a product, unless a bfloat16 copy of
        ``token`` is kept or being gathered already (``prefetch``): its products then cost less
        than gathering a float32 copy for BLAS."""
        if not self._prescore_rows() or not prescorable(row_norms(queries)):
            return False
        with self._subsets_lock:
            if token is not None and ((True, token) in self._subsets or (True, token) in self._gathering):
                return True
        tuning = self.tuning
        return min(len(queries), max(1, tuning.group_floats // max(1, size))) < tuning.prescore_queries

    def _prescore_rows(self) -> bool:
        """Whether the matrix's rows may be pre-scored in bfloat16: ``Tuning.prescore``, NumKong's
        kernel not its serial one (``scoring.prescore_fast``) and the matrix's norms
        (``scoring.prescorable``), checked once."""
        if not self.tuning.prescore or self.matrix is None:
            return False
        if self._matrix_prescorable is None:
            self._matrix_prescorable = prescore_fast() and prescorable(self.matrix.norms)
        return self._matrix_prescorable

    def _distances(self, queries: np.ndarray, vecs, norms: np.ndarray, brief: bool) -> np.ndarray:
        if brief:
            return prescore_distances(self.metric, queries, vecs, norms)
        return batch_distances(self.metric, queries, vecs, norms)

    def _nears(self, qs: np.ndarray, groups: Groups | None, rows: np.ndarray, norms: np.ndarray, bound: float,
               brief: bool) -> list[tuple[np.ndarray, np.ndarray, float]]:
        """For each line ``i`` of ``groups`` (the distances of ``qs[i]`` to gathered ``rows`` of
        ``norms``), the columns that hold its top k and ties, their float32 distances, and
        float32's tolerance. From a bfloat16 pre-score, every column within 2 (ε + t) of the k-th
        (ε its error bound, ``prescore_error``; t float32's ``tolerance``) holds every row of the
        float32 top k, so these are rescored in float32 from the matrix (inf where dropped),
        every line's at once, before any candidate is cut by ``MAX_EXTRA_TIES``, which must
        never go by bfloat16 order."""
        tols = tolerances(self.metric, qs, bound).tolist()
        if groups is None:
            return [(np.zeros(0, np.intp), np.zeros(0, np.float32), tol) for tol in tols]
        m = self.matrix
        if not brief or m is None:
            return [(near, groups.dists[i, near], tol) for i, tol in enumerate(tols) for near in [groups.near(i, tol)]]
        widths = 2 * (prescore_errors(self.metric, qs, bound) + tols)
        nears = [groups.near(i, float(w)) for i, w in enumerate(widths)]
        cols = np.concatenate(nears)
        line = np.repeat(np.arange(len(qs)), [len(near) for near in nears])
        found = pair_distances(self.metric, qs[line], m.values[rows[cols]], norms[cols])
        found[~np.isfinite(groups.dists[line, cols])] = np.inf
        ends = np.cumsum([len(near) for near in nears]).tolist()
        return [(near, found[end - len(near) : end], tol) for near, end, tol in zip(nears, ends, tols, strict=True)]

    def route(self, queries: int, matches: int, conditions: Sequence[tuple[int, int]] | None = None) -> str:
        """How ``queries`` queries of a filter passing ``matches`` vectors cost least, in rows
        scored: ``"block"``, with their block, masked (``begin``: ``_masked_cost`` each);
        ``"rows"``, from those vectors, gathered (``Tuning.gather_rows`` a row) and scored against
        every query (``candidates_within``); or ``"conditions"``, from the rows of ``conditions``
        (the filter's narrowest part: (rows, the block's queries that use it) each), each
        gathered once for all those queries and scored against these (``candidates_in_rows``).
        A product of its own costs ``Tuning.product_rows`` more, shared by the queries in it.
        On a graph, rows that are more than ``Tuning.gather_floats`` numbers are not gathered."""
        gather, limit, call = self.tuning.gather_rows, self.tuning.gather_floats, self.tuning.product_rows
        costs = {}
        if self.graph is None or matches * self.dims <= limit:
            costs["rows"] = matches * (queries + gather) + call
        if conditions and (self.graph is None or max(rows for rows, _ in conditions) * self.dims <= limit):
            costs["conditions"] = sum(rows * queries + (rows * gather + call) * queries / users
                                      for rows, users in conditions)
        if matches:  # (a filter nothing passes is answered at once, from its no rows)
            costs["block"] = queries * self._masked_cost(matches)
        return min(costs, key=lambda way: costs[way])
