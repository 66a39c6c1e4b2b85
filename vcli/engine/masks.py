"""Masks of a batch's filters over the rows of the matrix and the delta (``vcli query --file``).

A batch whose lines carry many different filters (a filter per user, tenant or document set)
would pay for each distinct filter what a shared one pays once: its keys read from SQLite, its
rows gathered, a matrix product of its own. ``BatchMasks`` instead reads the keys of each
*condition* once per batch (one range scan of the metadata index: a namespace, a property
``= value``, or a range) and keeps the matrix's rows that hold it, as a list and as a bitmap, and
a bitmap of the delta's rows; a ``$in`` is its values' ``=`` conditions, so filters that share a
value share its read. A filter (``BatchMasks.filter``) is then the conditions of its narrowest
positive part (``split``: a ``$in``'s values, or one condition), each with the rows among its own
that the filter's other conditions drop (NOT for ``$ne``/``$nin``), looked up for those rows only.

A line is then answered from the rows of those conditions, each gathered once for all the lines
of its block whose filters use it and scored against them with one matrix product
(``Searcher.candidates_in_rows``), or, when that costs more (a filter few lines use whose rows
are many), with the whole block of queries: scored by a matrix product over every row, its rows
picked out of its row of distances, or on a graph, searched with the lines of other filters about
as wide, as deep as that calls for, its candidates checked against its rows (``Searcher.begin``).
A filter that many lines share may cost less answered from its own rows, gathered: ``Searcher.route``
chooses, per filter.
"""

from __future__ import annotations

import queue
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from .filters import Clause, Plan, sorted_keys
from .search import in_sorted
from .store import filtering

if TYPE_CHECKING:
    from concurrent.futures import Future, ThreadPoolExecutor

Rows = tuple[np.ndarray, np.ndarray]  # (the matrix's rows, int32 positions in no order; a bool per delta row)


class _Condition(NamedTuple):
    rows: np.ndarray  # the matrix's rows that hold it (sorted int32 positions)
    bits: np.ndarray  # the same as a bool per row
    delta: np.ndarray  # a bool per row of the delta


Named = list[tuple[tuple, _Condition]]  # conditions with their names (as ``BatchMasks`` keeps them)


class Split(NamedTuple):
    """A plan as the conditions one of which a row must hold and the others, each (must hold or
    must not, conditions of which one is enough)."""

    first: Named
    rest: list[tuple[bool, Named]]


class FilterRows:
    """The rows one filter (and namespace) of a batch passes: ``parts``, the rows of each
    condition of its narrowest positive part (``BatchMasks.split``) as (the condition's name, its
    rows, a bool per row that the filter's other conditions drop, or None when none), None for
    a filter with no positive part; and the rows themselves (``rows``: the matrix's, in no
    order, and a bool per row of the delta), made from the parts when first asked for."""

    __slots__ = ("parts", "_rows", "delta", "matches", "nbytes")

    def __init__(self, parts: list[tuple[tuple, np.ndarray, np.ndarray | None]] | None,
                 rows: Rows | None = None, delta: np.ndarray | None = None):
        self.parts, self._rows = parts, rows
        self.delta = rows[1] if rows is not None else delta
        assert self.delta is not None
        if parts is None:
            assert rows is not None
            self.matches = len(rows[0]) + int(np.count_nonzero(self.delta))
            self.nbytes = rows[0].nbytes + self.delta.nbytes
        else:
            kept = [len(r) - (0 if drop is None else int(np.count_nonzero(drop))) for _, r, drop in parts]
            self.matches = sum(kept) + int(np.count_nonzero(self.delta))
            # (its rows, made when asked for, and the drops: the conditions' rows are the batch's)
            self.nbytes = 4 * sum(kept) + sum(drop.nbytes for _, _, drop in parts if drop is not None) \
                + self.delta.nbytes

    def rows(self) -> Rows:
        if self._rows is None:
            assert self.parts is not None and self.delta is not None
            found = np.concatenate([r if drop is None else r[~drop] for _, r, drop in self.parts])
            self._rows = found, self.delta
        return self._rows


class BatchMasks:
    """The rows of a batch's conditions in ``matrix_keys`` and ``delta_keys`` (the rows of an
    open ``Searcher``), read from ``store``'s snapshot once each and kept while they fit in
    ``budget`` bytes (the least recently used given up first)."""

    def __init__(self, store, matrix_keys: np.ndarray, delta_keys: np.ndarray, budget: int):
        self.store = store
        self.matrix_keys = matrix_keys
        self.delta_keys = delta_keys
        self.budget = budget
        self._kept: dict[tuple, _Condition] = {}  # the least recently used first
        self._held = 0
        self._table: np.ndarray | None = None  # the matrix's row of each key from its first (``rows_of``)
        self._within: dict[tuple, np.ndarray] = {}  # (a condition, another): which of its rows hold the other
        self._within_bytes = 0
        self._coming: dict[tuple, Future] = {}  # conditions being read ahead (``want``): their keys
        self._reader: ThreadPoolExecutor | None = None
        self._twins: queue.SimpleQueue | None = None  # the reading threads' connections (``Store.twin``)
        self._opened: list = []  # all of them, to close

    def want(self, plan: Plan) -> None:
        """Start reading the conditions of ``plan`` that are not read yet, in the order asked, on
        two threads of the batch's own (on a machine of two cores or more), each with a
        connection of its own in the store's snapshot (``Store.twin``; SQLite runs a scan without
        Python's lock, and two connections scan at once). The caller reads the batch's next lines
        meanwhile, and ``filter`` finds them read (a 1,000-line batch's 114 conditions at 500k:
        0.21 s of scans on one connection). Where no such connection can be had (a write
        committed since the batch's snapshot) nothing is read ahead: ``filter`` reads on the
        caller's thread, on the store's connection, which the threads never use. ``close`` ends it."""
        reader = None if plan.nothing else self._reading()
        if reader is None:
            return
        for _, named in self._names(plan):
            for name, clause in named:
                if name not in self._kept and name not in self._coming:
                    self._coming[name] = reader.submit(self._read_ahead, name, clause)

    def _reading(self) -> ThreadPoolExecutor | None:
        if self._twins is None:
            from .search.common import cores

            self._twins = queue.SimpleQueue()
            for _ in range(2 if cores() > 1 else 0):
                twin = self.store.twin()
                if twin is not None:
                    self._opened.append(twin)
                    self._twins.put(twin)
            if self._opened:
                from concurrent.futures import ThreadPoolExecutor  # lazy: only batches read ahead

                self._reader = ThreadPoolExecutor(len(self._opened), thread_name_prefix="vcli-conditions")
        return self._reader

    def _read_ahead(self, name: tuple, clause: Clause | None) -> np.ndarray:
        assert self._twins is not None
        store = self._twins.get()
        try:
            return self._keys_of(name, clause, store)
        finally:
            self._twins.put(store)

    def close(self) -> None:
        """Stop reading ahead: conditions not begun are dropped, those being read are waited for,
        and the reading connections closed."""
        if self._reader is not None:
            self._reader.shutdown(wait=True, cancel_futures=True)
            self._reader = None
        while self._opened:
            self._opened.pop().close()
        self._coming.clear()

    def split(self, plan: Plan) -> Split | None:
        """``plan`` (its namespace and filter) as the conditions of its positive part with the
        fewest rows (a ``$in``: its values', which no two rows share) and the others; None when
        nothing passes it or it has no positive part (then every row is a candidate)."""
        if plan.nothing:
            return None
        parts = self._parts(plan)
        if not any(keep for keep, _ in parts):
            return None
        at = min(range(len(parts)),
                 key=lambda i: sum(len(c.rows) for _, c in parts[i][1]) if parts[i][0] else len(self.matrix_keys) + 1)
        first = parts.pop(at)[1]
        return Split(first, parts)

    def filter(self, plan: Plan) -> FilterRows:
        """The rows of the matrix and of the delta that pass ``plan`` (its namespace and filter),
        found from the positive part with the fewest rows (``split``), each other condition
        looked up for those rows only: a line costs as much as its filter's matches, not as the
        rows of the index."""
        d = len(self.delta_keys)
        if plan.nothing:
            return FilterRows(None, (np.zeros(0, np.int32), np.zeros(d, bool)))
        split = self.split(plan)
        if split is None:  # every row, less those the negative conditions exclude
            rows = np.arange(len(self.matrix_keys), dtype=np.int32)
            rest = self._parts(plan)
            passing = self.passing(rest, rows)
            return FilterRows(None, ((rows if passing is None else rows[passing]), self.delta_passing(rest)))
        parts = []
        for name, c in split.first:
            passing = self.passing(split.rest, c.rows, name)
            parts.append((name, c.rows, None if passing is None else ~passing))
        return FilterRows(parts, delta=self.delta_of(split))

    def passing(self, rest: list[tuple[bool, Named]], rows: np.ndarray, of: tuple | None = None) -> np.ndarray | None:
        """Which of the matrix's ``rows`` pass the conditions ``rest`` (a bool each; None when
        there are none). ``of``: the name of the condition whose rows they are: which of them
        hold each other condition is then kept for the batch's other filters that pair the two
        (hundreds of filters of a batch are often a few dozen such pairs)."""
        if not rest:
            return None
        inside = np.ones(len(rows), bool)
        for keep, conditions in rest:
            held = np.logical_or.reduce([self._within_of(of, name, c, rows) for name, c in conditions])
            inside &= held if keep else ~held
        return inside

    def _within_of(self, of: tuple | None, name: tuple, c: _Condition, rows: np.ndarray) -> np.ndarray:
        """``c.bits[rows]``, kept by (``of``, ``name``) while they fit in a quarter of the budget."""
        if of is None:
            return c.bits[rows]
        pair = (of, name)
        found = self._within.get(pair)
        if found is None:
            found = c.bits[rows]
            if self._within_bytes + found.nbytes > self.budget // 4:
                self._within.clear()
                self._within_bytes = 0
            self._within[pair] = found
            self._within_bytes += found.nbytes
        return found

    def delta_of(self, split: Split) -> np.ndarray:
        """A bool per row of the delta: whether it passes ``split``'s plan."""
        delta = np.logical_or.reduce([c.delta for _, c in split.first])
        return delta & self.delta_passing(split.rest)

    def delta_passing(self, rest: list[tuple[bool, Named]]) -> np.ndarray:
        delta = np.ones(len(self.delta_keys), bool)
        for keep, conditions in rest:
            either = np.logical_or.reduce([c.delta for _, c in conditions])
            delta &= either if keep else ~either
        return delta

    def _parts(self, plan: Plan) -> list[tuple[bool, Named]]:
        """Each condition of ``plan`` (the namespace, each clause): whether a row must hold it or
        must not, and the named conditions of which one is enough."""
        return [(keep, [(name, self._condition(name, clause)) for name, clause in named])
                for keep, named in self._names(plan)]

    def _names(self, plan: Plan) -> list[tuple[bool, list[tuple[tuple, Clause | None]]]]:
        """``_parts``, each condition by its name and the clause that reads it (None: the namespace)."""
        parts: list = [(True, [(("namespace", plan.namespace), None)])] if plan.namespace is not None else []
        return parts + [(clause.positive, _clause_names(clause)) for clause in plan.clauses]

    def keys(self, rows: Rows) -> np.ndarray:
        """The sorted keys of ``rows``."""
        return np.sort(np.concatenate([self.matrix_keys[rows[0]], self.delta_keys[rows[1]]]))

    def _condition(self, name: tuple, clause: Clause | None) -> _Condition:
        if name in self._kept:
            self._kept[name] = found = self._kept.pop(name)  # now the most recently used
            return found
        coming = self._coming.pop(name, None)
        keys = coming.result() if coming is not None else self._keys_of(name, clause, self.store)
        rows = self.rows_of(keys)
        bits = np.zeros(len(self.matrix_keys), bool)
        bits[rows] = True
        found = _Condition(rows, bits, in_sorted(self.delta_keys, keys))
        size = _size(found)
        while self._kept and self._held + size > self.budget:
            self._held -= _size(self._kept.pop(next(iter(self._kept))))
        if size <= self.budget:
            self._kept[name] = found
            self._held += size
        return found

    @staticmethod
    def _keys_of(name: tuple, clause: Clause | None, store) -> np.ndarray:
        """The sorted keys of the condition ``name`` (read by ``clause``; None: a namespace), from
        ``store``'s connection."""
        return sorted_keys(filtering.condition_keys(store, clause, None if clause else name[1]))

    def rows_of(self, keys: np.ndarray) -> np.ndarray:
        """The matrix's rows (sorted int32 positions) of those of ``keys`` (sorted) that it holds.
        Keys are given in ascending order and never reused, so a matrix's keys are usually
        nearly consecutive: a table of the row of each key from its first (4 bytes a key of
        their span, counted against the batch's ``budget``) answers with one lookup a key. For
        the 114 conditions of a 1,000-line batch at 500k that took 0.02-0.04 s, a binary search
        a key 0.15 s (a sixth of reading them)."""
        mk = self.matrix_keys
        if not len(mk) or not len(keys):
            return np.zeros(0, np.int32)
        lo, span = int(mk[0]), int(mk[-1] - mk[0]) + 1
        if 4 * span > self.budget // 4:  # a table of more than a quarter of the budget: search
            rows = np.searchsorted(mk, keys)
            rows = rows[rows < len(mk)]
            return rows[mk[rows] == keys[: len(rows)]].astype(np.int32)
        if self._table is None:
            self._table = np.full(span, -1, np.int32)
            self._table[mk - lo] = np.arange(len(mk), dtype=np.int32)
            self._held += self._table.nbytes
        inside = keys[(keys >= lo) & (keys < lo + span)]
        rows = self._table[inside - lo]
        return rows[rows >= 0]


def _clause_names(clause: Clause) -> list[tuple[tuple, Clause]]:
    """The conditions of which the rows with a value passing the clause's test hold one, each by
    its name and the clause that reads it."""
    (op, value), *more = clause.test
    if more or op not in ("=", "in"):  # a range: read as it is
        return [((clause.slot, clause.test), clause)]
    return [((clause.slot, (("=", v),)), Clause(clause.slot, True, (("=", v),)))
            for v in (value if op == "in" else (value,))]


def _size(c: _Condition) -> int:
    return c.rows.nbytes + c.bits.nbytes + c.delta.nbytes
