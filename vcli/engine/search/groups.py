"""A batch's groups: the queries of a batch that share a namespace or filter, scored together
against one copy of the vectors it matches or of the rows of the conditions it is made of (each
kept for the rest of the batch, and shared by every filter that uses the condition; bfloat16 rows
that one graph part holds are read from it where they lie, ``scoring.Bf16Rows``), when that costs
less than answering them with their block: ``route``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from ..scoring import (
    Bf16Rows,
    Groups,
    batch_distances,
    max_norm,
    paired_distances,
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

# keys, vectors (float32, or bfloat16: ``scoring.Bf16Rows``), norms, matrix rows
Subset = tuple[np.ndarray, Any, np.ndarray, np.ndarray]
RESCORED = 8192  # rows of the pre-score windows of a product's lines rescored in float32 at once (12 MiB at 384)


class _Coming:
    """A subset a thread is gathering: its size (float32 numbers' worth) and the future of it."""

    __slots__ = ("size", "future")

    def __init__(self, size: int):
        from concurrent.futures import Future

        self.size = size
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
        brief = self._prescorable(queries, ks, len(allowed), token)
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
        the condition; exact. When the lines' drops split the rows into a few cells (rows that
        the same lines drop: a namespace, a flag) and scoring each cell against only the lines
        that keep it saves enough (``_Cells``), the rows are gathered cell by cell and each cell
        is one product of those lines; otherwise one product of every line and the dropped
        rows' distances made inf. (Before the bfloat16 pre-score, three float32 products a
        condition, one a namespace, cost more than one: a 1,000-line batch at 500k took 5.5-6.0
        CPU seconds against 4.1-4.8.)"""
        queries = np.ascontiguousarray(queries, np.float32).reshape(-1, self.dims)
        d_keys, d_vecs, d_norms = self._delta_arrays()
        # (a condition's rows are read from the store's snapshot, which holds no removed key)
        brief = self._prescorable(queries, ks, len(rows), token)
        cells, order = self.cells_of(rows, drops)
        s_keys, s_vecs, s_norms, s_rows = self._kept(token, busy, len(rows), lambda: self._gather(order, brief), brief)
        # where each column of the copy is in ``rows`` (None: the same order), ``drops``' order
        at = cells.order if s_rows is order and cells is not None else _positions(rows, s_rows)
        view = None if cells is None else cells.view(at, self.tuning.cell_take_pairs)
        if view is not None:
            s_keys, s_norms, s_rows = (a if view.take is None else a[view.take] for a in (s_keys, s_norms, s_rows))
        bound = max_norm(d_norms, s_norms)
        step = max(1, self.tuning.group_floats // max(1, len(s_keys)))
        out = []
        penalties: dict[int, np.ndarray] = {}  # inf where dropped, by the drops that share it (a filter's lines)
        for start in range(0, len(queries), step):
            qs, qks = queries[start : start + step], ks[start : start + step]
            if view is not None:
                assert cells is not None
                dists = self._cell_distances(qs, s_vecs, s_norms, brief, cells, view, start)
            else:
                dists = self._distances(qs, s_vecs, s_norms, brief)
                for i, drop in enumerate(drops[start : start + step]):
                    if drop is not None:  # an addition costs less than a masked store
                        if id(drop) not in penalties:
                            dropped = drop if at is None else drop[at]
                            penalties[id(drop)] = np.where(dropped, np.float32(np.inf), np.float32(0))
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

    def cells_of(self, rows: np.ndarray, drops: Sequence[np.ndarray | None]) -> tuple[_Cells | None, np.ndarray]:
        """The cells of a condition's ``rows`` by its lines' ``drops`` when they pay (``_Cells.of``),
        and the order to gather its rows in: cell by cell, so that ``candidates_in_rows`` scores
        each cell from its span of the copy (a copy in another order is taken from cell by cell,
        or scored whole: ``_Cells.view``)."""
        cells = _Cells.of(drops, len(rows), self.tuning.cell_product_pairs)
        return cells, rows if cells is None else rows[cells.order]

    def _cell_distances(self, qs: np.ndarray, vecs, norms: np.ndarray, brief: bool, cells: _Cells, view: _View,
                        start: int) -> np.ndarray:
        """The distances of ``qs`` (the lines from ``start``) to the copy's rows in ``view``'s
        order (``norms`` already in it), each cell scored against the lines that keep it, inf
        for the others."""
        dists = np.empty((len(qs), len(norms)), np.float32)
        for c, (a, b) in enumerate(view.spans):
            keep = cells.keeps[c, start : start + len(qs)]
            lines = np.flatnonzero(keep)
            if len(lines) < len(qs):
                dists[~keep, a:b] = np.inf
            if not len(lines):
                continue
            part = vecs[a:b] if view.take is None else vecs[view.take[a:b]]
            if len(lines) == len(qs):
                dists[:, a:b] = self._distances(qs, part, norms[a:b], brief)
            else:
                dists[lines, a:b] = self._distances(qs[lines], part, norms[a:b], brief)
        return dists

    def begin_in_rows(self, *args) -> Future:
        """``candidates_in_rows`` on a background thread, after the work queued there before it starts."""
        self._prepare()
        return self._background().submit(self.candidates_in_rows, *args)

    def begin_within(self, queries: np.ndarray, ks: Sequence[int], allowed: np.ndarray, token: object,
                     busy: frozenset = frozenset()):
        """``candidates_within`` on a background thread, after the work queued there before it starts;
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
        gathered twice. Room is made for what a copy is expected to hold (``_copy_floats``)
        before it is gathered, and for what it holds after."""
        key = (brief, token)
        with self._subsets_lock:
            if key in self._subsets:
                return self._subsets[key]
            coming = self._gathering.get(key)
            if coming is not None:
                mine = False
            else:
                mine = True
                size = self._copy_floats(size, brief)
                self._make_room(size, busy)
                coming = self._gathering[key] = _Coming(size)
        if not mine:
            return coming.future.result()
        try:
            found = gather()
        except BaseException as exc:
            with self._subsets_lock:
                del self._gathering[key]
            coming.future.set_exception(exc)
            raise
        with self._subsets_lock:
            del self._gathering[key]
            size = found[1].nbytes // 4
            if self._make_room(size, busy):
                self._subsets[key] = found
        coming.future.set_result(found)
        return found

    def _make_room(self, size: int, busy: frozenset) -> bool:
        """Give up kept copies not ``busy``, the oldest first, till ``size`` more float32 numbers'
        worth fit in ``Tuning.gather_floats``; whether they do (under ``_subsets_lock``)."""
        held, limit = self._held(), self.tuning.gather_floats
        for old in [t for t in self._subsets if t[1] not in busy]:  # the oldest first
            if held + size <= limit:
                break
            held -= self._subsets.pop(old)[1].nbytes // 4
        return held + size <= limit

    def _gather(self, rows: np.ndarray, brief: bool = False) -> Subset:
        """The keys, vectors and norms of the matrix's ``rows``, as contiguous copies (the vectors
        in bfloat16 if ``brief``: ``scoring.to_bf16``), and ``rows``."""
        m = self.matrix
        if m is None:
            return np.zeros(0, np.int64), np.zeros((0, self.dims), np.float32), _EMPTY_NORMS, np.zeros(0, np.intp)
        vecs = self._bf16(rows) if brief else m.values[rows]
        return m.keys[rows], vecs, m.norms[rows], rows

    def _bf16(self, rows: np.ndarray) -> Bf16Rows:
        """The matrix's ``rows`` in bfloat16: where one graph part holds them all, its own values
        (``graph.PartValues``: half the bytes of float32 to read, already rounded), read where
        they lie as they are scored (``scoring.Bf16Rows``); else a copy, from the parts' values
        where they hold the rows and rounded from the matrix's float32 elsewhere
        (``scoring.to_bf16``)."""
        m = self._open_matrix()
        parts = self._part_values()
        if not parts:
            return to_bf16(m.values, rows)
        bits = None
        left = np.ones(len(rows), bool)
        for values in parts:
            nodes = values.nodes(rows)
            got = (nodes >= 0) & left
            if got.all():
                return Bf16Rows(values.vectors, nodes)
            if bits is None:
                bits = np.empty((len(rows), self.dims), np.uint16)
            bits[got] = values.vectors[nodes[got]]
            left &= ~got
        assert bits is not None  # (a part that held every row returned above)
        if left.any():
            bits[left] = to_bf16(m.values, rows[left]).bits
        return Bf16Rows(bits)

    def _copy_floats(self, rows: int, brief: bool) -> int:
        """What a copy of ``rows`` rows is expected to hold, in float32 numbers' worth of bytes
        (``_kept``): in bfloat16 on a graph, only their nodes (``_bf16``: where one part holds
        them all, as it does for most conditions; ``_kept`` counts the copy again once made)."""
        if brief and self._part_values():
            return rows  # (an int32 node a row)
        return rows * self.dims // (2 if brief else 1)

    def values_ahead(self) -> None:
        """Start reading the graph parts' values (``_part_values``, 0.05 s a part of 500k) on a
        background thread, so that a filtered batch's first block does not wait for them: the
        threads are idle while its lines are read."""
        if self.graph is not None and self._prescore_rows():
            self._background().submit(self._part_values)

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

    def _prescorable(self, queries: np.ndarray, ks: Sequence[int], size: int, token: object = None) -> bool:
        """Whether rows gathered for ``queries`` (at most ``size``) are scored from a bfloat16
        copy first: ``_prescore_rows``, query norms the kernel can take (``scoring.prescorable``),
        rows enough that ``scoring.Groups`` narrows each line down (else every row would be
        rescored in float32 anyway: conditions under 2 ``Tuning.score_groups`` rows), and fewer
        than ``Tuning.prescore_queries`` queries a product, unless a bfloat16 copy of ``token``
        is kept or being gathered already (by an earlier block's lines): its products then cost
        less than gathering a float32 copy for BLAS."""
        if Groups.whole_of(size, ks, self.tuning.score_groups):
            return False
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
        found: list[np.ndarray] = []
        start = 0
        while start < len(nears):  # lines a run at a time, one gather each of at most RESCORED rows
            stop, count = start + 1, len(nears[start])
            while stop < len(nears) and count + len(nears[stop]) <= RESCORED:
                count += len(nears[stop])
                stop += 1
            cols = np.concatenate(nears[start:stop])
            line = np.repeat(np.arange(start, stop), [len(near) for near in nears[start:stop]])
            dists = paired_distances(self.metric, qs[line], m.values[rows[cols]][:, None, :], norms[cols][:, None])[:, 0]
            dists[~np.isfinite(groups.dists[line, cols])] = np.inf
            found += np.split(dists, np.cumsum([len(near) for near in nears[start : stop - 1]]))
            start = stop
        return list(zip(nears, found, tols, strict=True))

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


MAX_CELLS = 64  # more, and a condition's rows are scored with one product of all its lines
# Past 16 drop patterns a condition's rows are sorted by theirs, which at 500k rows and 300
# patterns took 5.9 s: rows x patterns past this, one product of all its lines instead
SORTED_PATTERNS = 2**22


class _View(NamedTuple):
    """A kept copy's columns cell by cell: each cell's span (by cell), of the copy itself when
    ``take`` is None, else of the copy's columns ``take`` (cell by cell), taken from it."""

    spans: list[tuple[int, int]]
    take: np.ndarray | None


class _Cells(NamedTuple):
    """The rows of a condition split by which lines drop them: ``labels`` (a cell a row),
    ``order`` (the rows cell by cell), ``sizes`` (rows a cell), ``keeps`` (cells x lines: whether
    a line keeps a cell's rows), and ``saved``: the row-line pairs the cells' products do not
    score, of ``pairs`` that one product of every line would."""

    labels: np.ndarray
    order: np.ndarray
    sizes: np.ndarray
    keeps: np.ndarray
    saved: int
    pairs: int

    @staticmethod
    def of(drops: Sequence[np.ndarray | None], n: int, product: float) -> _Cells | None:
        """The cells of ``drops`` (a bool per row of ``n``, or None, a line), when scoring each
        against its lines alone costs less than one product of all of them, in row-line pairs
        scored and ``product`` a cell's product (``Tuning.cell_product_pairs``); else None."""
        index: dict[int, int] = {}  # a drop array's pattern, by id (a filter's lines share one)
        by_bits: dict[bytes, int] = {}  # a pattern, by content: exact, no two merged
        patterns: list[np.ndarray] = []
        which = np.full(len(drops), -1, np.intp)  # each line's pattern (-1: it drops nothing)
        for i, drop in enumerate(drops):
            if drop is None:
                continue
            if id(drop) not in index:
                j = by_bits.setdefault(np.packbits(drop).tobytes(), len(by_bits))
                if j == len(patterns):
                    patterns.append(drop)
                index[id(drop)] = j
            which[i] = index[id(drop)]
        if not patterns or not n or (len(patterns) > 16 and n * len(patterns) > SORTED_PATTERNS):
            return None
        bits = np.packbits(np.stack(patterns), axis=0, bitorder="little").T  # (rows, bytes) a row's pattern
        if bits.shape[1] <= 2:  # (a few patterns: counted, not sorted)
            word = np.zeros((n, 2), np.uint8)
            word[:, : bits.shape[1]] = bits
            sig = word.view("<u2").ravel()
            found = np.flatnonzero(np.bincount(sig))
            names = np.zeros(int(found[-1]) + 1, np.int16)
            names[found] = np.arange(len(found))
            labels = names[sig]
            kinds = found.astype("<u2").view(np.uint8).reshape(-1, 2)
        else:
            kinds, labels = np.unique(bits, axis=0, return_inverse=True)
        if len(kinds) > MAX_CELLS:
            return None
        dropped = np.unpackbits(kinds, axis=1, bitorder="little")[:, : len(patterns)].astype(bool)
        keeps = ~np.concatenate([dropped, np.zeros((len(kinds), 1), bool)], axis=1)[:, which]
        labels = labels.reshape(-1).astype(np.int16)
        sizes = np.bincount(labels, minlength=len(kinds))
        pairs = n * len(drops)
        scored = int(sizes @ keeps.sum(axis=1))
        if scored + len(kinds) * product >= pairs:
            return None
        return _Cells(labels, np.argsort(labels, kind="stable"), sizes, keeps, pairs - scored, pairs)

    def view(self, at: np.ndarray | None, take: float) -> _View | None:
        """The cells over a copy whose columns are ``at`` of the rows (None: in their order):
        its own spans when each cell is one run of it (as in a copy an earlier block gathered
        in the same cells, whatever their order), else the columns to take from it, when that
        costs less than the pairs the cells save (``take`` pairs a row,
        ``Tuning.cell_take_pairs``); else None."""
        labels = self.labels if at is None else self.labels[at]
        edges = (np.flatnonzero(labels[1:] != labels[:-1]) + 1).tolist()
        if len(edges) == len(self.sizes) - 1:
            spans = [(0, 0)] * len(self.sizes)
            for a, b in zip([0, *edges], [*edges, len(labels)], strict=True):
                spans[labels[a]] = (a, b)
            return _View(spans, None)
        if len(labels) * take >= self.saved:
            return None
        ends = np.cumsum(self.sizes)
        return _View(list(zip((ends - self.sizes).tolist(), ends.tolist(), strict=True)),
                     np.argsort(labels, kind="stable"))


def _positions(rows: np.ndarray, copy: np.ndarray) -> np.ndarray | None:
    """Where each of ``copy`` (the same rows as ``rows``, in some order) is in ``rows``; None when
    it is ``rows``."""
    if copy is rows or np.array_equal(copy, rows):
        return None
    if bool((rows[1:] >= rows[:-1]).all()):  # (a condition's rows are sorted)
        return np.searchsorted(rows, copy)
    by = np.argsort(rows, kind="stable")
    return by[np.searchsorted(rows, copy, sorter=by)]

