"""Masks of a batch's filters over the rows of the matrix and the delta (``vcli query --file``).

A batch whose lines carry many different filters (a filter per user, tenant or document set)
would pay for each distinct filter what a shared one pays once: its keys read from SQLite, its
rows gathered, a matrix product of its own. ``BatchMasks`` instead reads the keys of each
*condition* once per batch (one range scan of the metadata index: a namespace, a property
``= value``, or a range) and keeps the matrix's rows that hold it, as a list and as a bitmap, and
a bitmap of the delta's rows; a ``$in`` is its values' ``=`` rows together, so filters that share
a value share its read. A filter's rows are those of its narrowest positive condition, the
others (NOT for ``$ne``/``$nin``) looked up in their bitmaps for those rows only.

A line whose filter is shared by few others is then answered with the whole block of queries:
scored by a matrix product over every row, its rows picked out of its row of distances, or on a
graph, searched with the lines of other filters about as wide, as deep as that calls for, its
candidates checked against its rows (``Searcher.begin``): what an unfiltered line costs, plus its
mask (or the depth). A filter shared by many lines, or matching few rows, is answered from a
contiguous copy of its rows (``Searcher.candidates_within``), which then costs less:
``Searcher.with_block`` chooses, per filter.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .filters import Clause, Plan, sorted_keys
from .search import in_sorted
from .store import filtering

Rows = tuple[np.ndarray, np.ndarray]  # (the matrix's rows, int32 positions in no order; a bool per delta row)


class _Condition(NamedTuple):
    rows: np.ndarray  # the matrix's rows that hold it (sorted int32 positions)
    bits: np.ndarray  # the same as a bool per row
    delta: np.ndarray  # a bool per row of the delta


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

    def rows(self, plan: Plan) -> Rows:
        """The rows of the matrix and of the delta that pass ``plan`` (its namespace and filter).
        Found from the positive condition with the fewest rows (a ``$in``: its values' rows
        together, which no two share), then each other condition looked up for those rows
        only: a line costs as much as its filter's matches, not as the rows of the index."""
        n, d = len(self.matrix_keys), len(self.delta_keys)
        if plan.nothing:
            return np.zeros(0, np.int32), np.zeros(d, bool)
        parts = [(True, [self._condition(("namespace", plan.namespace), None)])] if plan.namespace is not None else []
        parts += [(clause.positive, self._clause(clause)) for clause in plan.clauses]
        if any(keep for keep, _ in parts):
            at = min(range(len(parts)), key=lambda i: sum(len(c.rows) for c in parts[i][1]) if parts[i][0] else n + 1)
            first = parts.pop(at)
            rows = np.concatenate([c.rows for c in first[1]])
            delta = np.logical_or.reduce([c.delta for c in first[1]])
        else:
            rows, delta = np.arange(n, dtype=np.int32), np.ones(d, bool)
        for keep, conditions in parts:
            inside = np.logical_or.reduce([c.bits[rows] for c in conditions])
            rows = rows[inside if keep else ~inside]
            either = np.logical_or.reduce([c.delta for c in conditions])
            delta = delta & (either if keep else ~either)
        return rows, delta

    def keys(self, rows: Rows) -> np.ndarray:
        """The sorted keys of ``rows``."""
        return np.sort(np.concatenate([self.matrix_keys[rows[0]], self.delta_keys[rows[1]]]))

    def _clause(self, clause: Clause) -> list[_Condition]:
        """The conditions of which the rows with a value passing the clause's test hold one."""
        (op, value), *more = clause.test
        if more or op not in ("=", "in"):  # a range: read as it is
            return [self._condition((clause.slot, clause.test), clause)]
        return [self._condition((clause.slot, (("=", v),)), Clause(clause.slot, True, (("=", v),)))
                for v in (value if op == "in" else (value,))]

    def _condition(self, name: tuple, clause: Clause | None) -> _Condition:
        if name in self._kept:
            self._kept[name] = found = self._kept.pop(name)  # now the most recently used
            return found
        keys = sorted_keys(filtering.condition_keys(self.store, clause, None if clause else name[1]))
        mk = self.matrix_keys
        rows = np.searchsorted(mk, keys)
        rows = rows[rows < len(mk)]
        rows = rows[mk[rows] == keys[: len(rows)]].astype(np.int32)
        bits = np.zeros(len(mk), bool)
        bits[rows] = True
        found = _Condition(rows, bits, in_sorted(self.delta_keys, keys))
        size = _size(found)
        while self._kept and self._held + size > self.budget:
            self._held -= _size(self._kept.pop(next(iter(self._kept))))
        if size <= self.budget:
            self._kept[name] = found
            self._held += size
        return found


def _size(c: _Condition) -> int:
    return c.rows.nbytes + c.bits.nbytes + c.delta.nbytes
