"""Masks of a batch's filters over the rows of the matrix and the delta (``vcli query --file``).

A batch whose lines carry many different filters (a filter per user, tenant or document set)
would pay for each distinct filter what a shared one pays once: its keys read from SQLite, its
rows gathered, a matrix product of its own. On a matrix, ``BatchMasks`` instead reads the keys of
each *condition* once per batch (one range scan of the metadata index: a namespace, a property
``= value``, or a range) and keeps them as a bitmap over the matrix's rows and one over the
delta's; a ``$in`` is the union of its values' ``=`` bitmaps, so filters that share a value share
its read. A filter's mask is its conditions' bitmaps combined (AND, OR for ``$in``, NOT for
``$ne``/``$nin``), a few passes over a byte per row.

A line whose filter is shared by few others is then scored with the whole block of queries, by
the block's one matrix product over every row, and its mask picks its matches out of its row of
distances (``Searcher._matrix_finish``): what an unfiltered line costs, plus its mask. A filter
shared by many lines, or matching few rows, is still answered from a contiguous copy of its rows
(``Searcher.candidates_within``), which then costs less: ``use_product`` chooses, per filter.
"""

from __future__ import annotations

import numpy as np

from .filters import Clause, Plan, sorted_keys
from .search import GATHER_ROWS, in_sorted
from .store import filtering

Bits = tuple[np.ndarray, np.ndarray]  # (over the matrix's rows, over the delta's rows), bool


class BatchMasks:
    """The bitmaps of a batch's conditions over ``matrix_keys`` and ``delta_keys`` (the rows of an
    open ``Searcher``), read from ``store``'s snapshot once each and kept while they fit in
    ``budget`` bytes (the oldest used given up first)."""

    def __init__(self, store, matrix_keys: np.ndarray, delta_keys: np.ndarray, budget: int):
        self.store = store
        self.matrix_keys = matrix_keys
        self.delta_keys = delta_keys
        self.budget = budget
        self._kept: dict[tuple, Bits] = {}  # the least recently used first

    def of(self, plan: Plan) -> Bits:
        """Which rows of the matrix and of the delta pass ``plan`` (its namespace and filter)."""
        m = np.zeros(len(self.matrix_keys), bool)
        d = np.zeros(len(self.delta_keys), bool)
        if plan.nothing:
            return m, d
        m[:], d[:] = True, True
        if plan.namespace is not None:
            self._and(m, d, self._condition(("namespace", plan.namespace), None), True)
        for clause in plan.clauses:
            self._and(m, d, self._clause(clause), clause.positive)
        return m, d

    def keys(self, bits: Bits) -> np.ndarray:
        """The sorted keys of the rows ``bits`` selects (the delta's are newer than the matrix's)."""
        return np.sort(np.concatenate([self.matrix_keys[bits[0]], self.delta_keys[bits[1]]]))

    @staticmethod
    def _and(m: np.ndarray, d: np.ndarray, bits: Bits, positive: bool) -> None:
        if positive:
            m &= bits[0]
            d &= bits[1]
        else:
            m &= ~bits[0]
            d &= ~bits[1]

    def _clause(self, clause: Clause) -> Bits:
        """The rows with a value in the clause's metadata index that passes its test."""
        (op, value), *more = clause.test
        if more or op not in ("=", "in"):  # a range: read as it is
            return self._condition((clause.slot, clause.test), clause)
        values = value if op == "in" else (value,)
        parts = [self._condition((clause.slot, (("=", v),)), Clause(clause.slot, True, (("=", v),)))
                 for v in values]
        if len(parts) == 1:
            return parts[0]
        m, d = parts[0][0].copy(), parts[0][1].copy()
        for pm, pd in parts[1:]:
            m |= pm
            d |= pd
        return m, d

    def _condition(self, name: tuple, clause: Clause | None) -> Bits:
        if name in self._kept:
            self._kept[name] = bits = self._kept.pop(name)  # now the most recently used
            return bits
        keys = sorted_keys(filtering.condition_keys(self.store, clause, None if clause else name[1]))
        mk = self.matrix_keys
        rows = np.searchsorted(mk, keys)
        rows = rows[rows < len(mk)]
        m = np.zeros(len(mk), bool)
        m[rows[mk[rows] == keys[: len(rows)]]] = True
        bits = (m, in_sorted(self.delta_keys, keys))
        size = len(mk) + len(self.delta_keys)
        held = size * len(self._kept)
        while self._kept and held + size > self.budget:
            self._kept.pop(next(iter(self._kept)))
            held -= size
        if size <= self.budget:
            self._kept[name] = bits
        return bits


def use_product(members: int, matches: int, rows: int, row_cost: float) -> bool:
    """Whether the ``members`` lines of a block that share a filter passing ``matches`` of the
    ``rows`` rows are cheaper scored against every row with the block's product, then masked
    (``row_cost`` a row: ``Tuning.masked_row_cost``), than from a copy of their matches, gathered
    (``GATHER_ROWS`` a row) and scored against each of them."""
    return matches > 0 and members * rows * row_cost < matches * (members + GATHER_ROWS)
