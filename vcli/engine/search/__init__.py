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
on all cores, on background threads while the block before is answered; filtered ones with a
mask each (the rows they pass, ``masks.py``) or, sharing a filter, from a gathered copy of its
rows (``candidates_within``).
"""

from __future__ import annotations

import numpy as np

from .common import Accept, in_sorted
from .groups import Grouped

__all__ = ["Accept", "Searcher", "in_sorted"]


class Searcher(Grouped):
    """Use as a context manager. On entry it opens the newest matrix (and its graph parts) and a
    store snapshot.

    A matrix that is damaged, foreign or missing (while the store has vectors), or more than
    ``Tuning.fold_rows`` changes behind, is repaired from the store when this process can take the
    writer lock at once (``SearchFiles.repair``), with a note in ``notes``; otherwise the queries
    are answered from the store alone, still exactly right. In a large index, rows that no sound
    graph part covers (missing, damaged, or written since the last part) are scanned exactly from
    the matrix while a builder makes the parts."""

    # Its modes live one a module, each class extending the one before (``Opened`` -> ``OneQuery``
    # -> ``GraphBlocks`` -> ``Blocks`` -> ``Grouped``), so that each module reads alone; this
    # class only chooses between them.

    def candidates(
        self, q: np.ndarray, k: int, allowed: np.ndarray | None = None, accept: Accept | None = None,
    ) -> list[int]:
        """Keys that contain the top ``k`` matches (more when scores tie). ``accept`` (a mask of
        which keys pass, for filters matching many rows) makes the search widen until ``k``
        candidates pass or none are left."""
        if allowed is None and accept is None:
            return self.candidates_many(np.asarray(q, np.float32)[None, :], [k])[0]
        return self._candidates_one(q, k, allowed, accept)
