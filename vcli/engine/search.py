"""Finding candidate keys for a query: the derived file (matrix or graph) plus the delta.

A ``Searcher`` opens the newest derived file, then a read snapshot of the store that is at least as
new (a derived file is only written after its mutation has committed), and from the snapshot reads
the delta: rows written since the file's mutation, and keys removed since. Candidates come from
the file (minus removed keys) and from the delta; ``VectorIndex`` then rescores them exactly.

``allowed`` (sorted int64 keys) restricts the search to a subset, for namespaces and filters.
"""

from __future__ import annotations

import numpy as np

from . import graph as graph_mod
from .matrix import Matrix

# The candidate pass works in float32. Besides the k best it keeps every row whose float32 distance
# is within a tolerance of the k-th (scaled by the vectors' norms, see ``tolerance``), so float32
# rounding and ties (broken by id) never change the answer once rescored in float64.
RELATIVE_TOLERANCE = 1e-5
MAX_EXTRA_TIES = 1000


class Searcher:
    def __init__(self, index):
        self.index = index
        self.store = index.store
        self.metric = index.metric
        self.dims = index.dimensions
        self.matrix: Matrix | None = None
        self.graph = None
        self.seq = 0
        self._snapshot = None

    # -- opening ----------------------------------------------------------------------------
    def __enter__(self) -> Searcher:
        for kind, seq, path in self.index.derived_files():
            try:
                if kind == "matrix":
                    self.matrix = Matrix.load(path, seq, self.dims)
                else:
                    self.graph = graph_mod.load(path, self.dims, self.metric, None, view=True)
            except FileNotFoundError:
                continue  # replaced by a writer just now: the next one is older, still fine
            except (ValueError, OSError, RuntimeError) as exc:
                self.index.notes.append(f"ignoring damaged search file {path.name} ({exc})")
                continue
            self.seq = seq
            break
        self._snapshot = self.store.snapshot()
        self._snapshot.__enter__()
        if self.graph is not None and self.store.count_at(self.seq) != len(self.graph):
            self.index.notes.append(f"ignoring search graph graph-{self.seq}: it does not match the store")
            self.graph, self.seq = None, 0
        return self

    def __exit__(self, *exc) -> None:
        self._snapshot.__exit__(*exc)

    # -- search -----------------------------------------------------------------------------
    def candidates(self, q: np.ndarray, k: int, allowed: np.ndarray | None = None) -> list[int]:
        """Keys that contain the top ``k`` matches (more when scores tie)."""
        removed = np.asarray(self.store.removed_since(self.seq), np.int64) if self.seq else None
        self.max_norm = 0.0
        keys, dists = self._delta(q, allowed)
        if self.matrix is not None:
            m_keys, m_dists = self._matrix(q, allowed, removed)
            keys, dists = np.concatenate([keys, m_keys]), np.concatenate([dists, m_dists])
        elif self.graph is not None:
            g_keys, g_dists = self._graph(q, k, allowed, removed)
            keys, dists = np.concatenate([keys, g_keys]), np.concatenate([dists, g_dists])
        return top_candidates(keys, dists, k, self.tolerance(q)).tolist()

    def tolerance(self, q: np.ndarray) -> float:
        """How far float32 distances may stray from exact ones, for this query."""
        qn = float(np.linalg.norm(q))
        if self.metric == "cosine":
            return RELATIVE_TOLERANCE
        if self.metric == "dot-product":
            return RELATIVE_TOLERANCE * qn * self.max_norm
        return RELATIVE_TOLERANCE * (qn * qn + self.max_norm * self.max_norm)

    def _seen(self, norms: np.ndarray) -> None:
        if len(norms):
            self.max_norm = max(self.max_norm, float(norms.max()))

    def _delta(self, q, allowed) -> tuple[np.ndarray, np.ndarray]:
        rows = self.store.conn.execute(
            "SELECT key, vec FROM vectors WHERE seq > ?", (self.seq,)
        ).fetchall()
        if not rows:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        keys = np.fromiter((r[0] for r in rows), np.int64, len(rows))
        vecs = np.frombuffer(b"".join(r[1] for r in rows), "<f4").reshape(len(rows), self.dims)
        if allowed is not None:
            keep = np.isin(keys, allowed)
            keys, vecs = keys[keep], vecs[keep]
        return keys, self._distances(q, vecs, None)

    def _distances(self, q, vecs, norms) -> np.ndarray:
        if norms is None:
            norms = np.linalg.norm(vecs, axis=1) if len(vecs) else np.zeros(0, np.float32)
        self._seen(norms)
        return distances(self.metric, q, vecs, norms)

    def _matrix(self, q, allowed, removed) -> tuple[np.ndarray, np.ndarray]:
        m = self.matrix
        if allowed is not None:
            rows = m.rows_of(allowed)
            ok = rows < len(m.keys)
            rows = rows[ok][m.keys[rows[ok]] == allowed[ok]]
            keys, vecs, norms = m.keys[rows], m.values[rows], m.norms[rows]
        else:
            keys, vecs, norms = m.keys, m.values, m.norms
        dists = self._distances(q, vecs, norms)
        if removed is not None and len(removed):
            dists[np.isin(keys, removed)] = np.inf
        return keys, dists

    def _graph(self, q, k, allowed, removed) -> tuple[np.ndarray, np.ndarray]:
        g = self.graph
        skip = 0 if removed is None else len(removed)
        if allowed is not None and len(allowed) <= max(4 * k, 2048):
            keys = allowed[np.isin(allowed, removed, invert=True)] if skip else allowed
            keys = keys[[g.contains(int(x)) for x in keys]] if len(keys) else keys
            vecs = g.get(keys.astype(np.uint64)) if len(keys) else np.zeros((0, self.dims), np.float32)
            return keys, self._distances(q, np.asarray(vecs, np.float32).reshape(-1, self.dims), None)
        want = k + skip
        size = len(g)
        while True:
            count = min(size, max(want, 2 * k))
            found = g.search(q, count)
            keys = np.asarray(found.keys, np.int64)
            keep = np.ones(len(keys), bool)
            if skip:
                keep &= ~np.isin(keys, removed)
            if allowed is not None:
                keep &= np.isin(keys, allowed)
            if keep.sum() >= k or count >= size:
                vecs = g.get(keys[keep].astype(np.uint64))
                vecs = np.asarray(vecs, np.float32).reshape(-1, self.dims)
                return keys[keep], self._distances(q, vecs, None)
            want = count * 4


def distances(metric: str, q: np.ndarray, vecs: np.ndarray, norms: np.ndarray) -> np.ndarray:
    """float32 distances, lower is better, used only to choose candidates: the negative cosine,
    the squared L2 distance, or the negative dot product."""
    if len(vecs) == 0:
        return np.zeros(0, np.float32)
    dots = vecs @ q
    if metric == "dot-product":
        return -dots
    qn = np.float32(np.linalg.norm(q))
    if metric == "euclidean":
        return norms * norms - 2 * dots + qn * qn
    denom = norms * qn
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.where(denom > 0, dots / np.where(denom > 0, denom, 1), 0).astype(np.float32)


def top_candidates(keys: np.ndarray, dists: np.ndarray, k: int, tolerance: float) -> np.ndarray:
    finite = np.isfinite(dists)
    if not finite.all():
        keys, dists = keys[finite], dists[finite]
    if len(keys) <= k:
        return keys
    kth = np.partition(dists, k - 1)[k - 1]
    near = dists <= kth + tolerance
    if near.sum() > k + MAX_EXTRA_TIES:
        return keys[np.argpartition(dists, k + MAX_EXTRA_TIES)[: k + MAX_EXTRA_TIES]]
    return keys[near]
