"""What every mode of search shares: a key check against sorted keys, the graph's
nearest-first pick (imported lazily: usearch), and the distances -> nearest candidates step that
ends each mode."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import numpy as np

from ..scoring import top_candidates

Accept = Callable[[np.ndarray], np.ndarray]  # keys -> boolean mask of the keys that pass
_EMPTY_NORMS = np.zeros(0, np.float32)


def cores() -> int:
    """The cores this process may run on (its affinity, where the system says)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def in_sorted(keys: np.ndarray, sorted_keys: np.ndarray) -> np.ndarray:
    """Which of ``keys`` are in ``sorted_keys`` (ascending): a binary search per key, so a few
    candidates are checked against a filter's hundreds of thousands of matches in microseconds
    (``np.isin`` would sort or tabulate all of them on every call)."""
    if not len(sorted_keys):
        return np.zeros(np.shape(keys), bool)
    pos = np.searchsorted(sorted_keys, keys)
    pos[pos == len(sorted_keys)] = 0
    return sorted_keys[pos] == keys


def _nearest(keys, dists, usable, keep):
    from ..graph import nearest  # lazy: usearch, which a graph search has imported already

    return nearest(keys, dists, usable, keep)


def nearest_keys(keys: Sequence[np.ndarray], dists: Sequence[np.ndarray], k: int, tol: float) -> list[int]:
    """The keys of the candidates (pieces ``keys`` with their distances ``dists``, from the delta,
    the matrix, the graph...) that contain the top ``k``: the scoring that ends every mode."""
    return top_candidates(np.concatenate(keys), np.concatenate(dists), k, tol).tolist()
