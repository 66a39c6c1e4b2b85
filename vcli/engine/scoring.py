"""The arithmetic of search: distances, the tolerance of float32 candidate scores, exact scores.

Candidates are chosen in float32 (``distances``, ``batch_distances``): lower is better, as the
negative cosine, the squared L2 distance or the negative dot product. Besides the k best, a search
keeps every row within ``tolerance`` of the k-th (``top_candidates``), so float32 rounding and ties
(broken by id) never change the answer once every candidate is rescored exactly in float64
(``exact_scores``, Vectorize's scores).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# Relative error allowed to a float32 distance (scaled by the vectors' norms, see ``tolerance``).
RELATIVE_TOLERANCE = 1e-5
MAX_EXTRA_TIES = 1000  # candidates kept beyond k for ties, at most
SAFE_NORM = 1e18  # above this, candidate distances are computed in float64 (see ``_huge``)


def tolerance(metric: str, q: np.ndarray, max_norm: float) -> float:
    """How far the float32 distances of query ``q`` to vectors of norm at most ``max_norm`` may
    stray from exact ones."""
    if metric == "cosine":
        return RELATIVE_TOLERANCE
    return float(tolerances(metric, np.asarray(q)[None, :], max_norm)[0])


def tolerances(metric: str, queries: np.ndarray, max_norm: float) -> np.ndarray:
    """``tolerance`` of each of ``queries``."""
    if metric == "cosine":
        return np.full(len(queries), RELATIVE_TOLERANCE)
    qn = np.linalg.norm(np.asarray(queries, np.float64), axis=1)
    if metric == "dot-product":
        return RELATIVE_TOLERANCE * qn * max_norm
    return RELATIVE_TOLERANCE * (qn * qn + max_norm * max_norm)


def max_norm(*norms: np.ndarray) -> float:
    """The largest of several arrays of norms (0 when all are empty)."""
    return max((float(n.max()) for n in norms if len(n)), default=0.0)


def exact_scores(metric: str, q, vecs):
    """Vectorize's score of each row of ``vecs`` against ``q``, computed in float64. Each row's
    score is computed alone, by the same loop (``einsum``, not BLAS, whose result for a row can
    change in the last bit with the number of rows), so exact ties stay ties whatever else is
    among the candidates, and are broken by id."""
    q64 = np.asarray(q, np.float64)
    v64 = np.asarray(vecs, np.float64)
    dots = np.einsum("ij,j->i", v64, q64)
    if metric == "dot-product":
        return -dots
    if metric == "euclidean":
        return np.sqrt(np.maximum(((v64 - q64) ** 2).sum(axis=1), 0.0))
    denom = np.linalg.norm(v64, axis=1) * np.linalg.norm(q64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denom > 0, dots / np.where(denom > 0, denom, 1.0), 0.0)


def row_norms(vecs: np.ndarray) -> np.ndarray:
    """L2 norm of each row, computed in float64 (float32 squares overflow above ~1.8e19)."""
    if not len(vecs):
        return np.zeros(0, np.float32)
    with np.errstate(over="ignore"):
        return np.linalg.norm(np.asarray(vecs, np.float64), axis=-1).astype(np.float32)


def _huge(queries: np.ndarray, norms: np.ndarray) -> bool:
    """Whether float32 products could overflow: a norm over ``SAFE_NORM`` (never seen in
    embeddings, but valid float32). Such searches are done in float64 instead."""
    return not (float(np.max(row_norms(queries))) < SAFE_NORM
                and (not len(norms) or float(norms.max()) < SAFE_NORM))


def batch_distances(metric: str, queries: np.ndarray, vecs: np.ndarray, norms: np.ndarray) -> np.ndarray:
    """``distances`` of each query (rows) to each vector (columns), as one matrix product."""
    if len(vecs) == 0:
        return np.zeros((len(queries), 0), np.float32)
    if _huge(queries, norms):
        queries, vecs = np.asarray(queries, np.float64), np.asarray(vecs, np.float64)
        norms = np.linalg.norm(vecs, axis=1)
    # Each pass over the (queries x vectors) product costs about a tenth of the product itself,
    # so what depends only on the query is folded into the queries before it.
    if metric == "dot-product":
        return -queries @ vecs.T
    qn = np.linalg.norm(queries, axis=1).astype(queries.dtype)
    if metric == "euclidean":  # |v|^2 - 2 q.v + |q|^2
        dists = (-2 * queries) @ vecs.T
        dists += (norms * norms)[None, :]
        dists += (qn * qn)[:, None]
        return dists
    # -cos = -(q / |q|).v / |v|, and 0 where a norm is 0 (as ``distances``)
    with np.errstate(divide="ignore"):
        inv_q = np.where(qn > 0, -1 / qn, 0).astype(queries.dtype)
        inv_v = np.where(norms > 0, 1 / norms, 0).astype(queries.dtype)
    dists = (queries * inv_q[:, None]) @ vecs.T
    dists *= inv_v[None, :]
    return dists


def to_bf16(vecs: np.ndarray, rows: np.ndarray | None = None, chunk: int = 4096) -> Bf16Rows:
    """A bfloat16 copy of float32 ``vecs`` (of its ``rows`` if given): taken a few thousand rows
    at a time into a float32 buffer that stays in the cache and rounded there (``bf16_bits``)."""
    src = np.asarray(vecs, np.float32)
    rows = np.arange(len(src)) if rows is None else rows
    # NumPy's memory, not NumKong's: NumPy asks the kernel for huge pages for a large array,
    # which a batch's hundreds of MB of copies then fault in ~50 times less often
    bits = np.empty((len(rows), src.shape[1]), np.uint16)
    buf = np.empty((min(chunk, len(rows)), src.shape[1]), np.float32)
    for start in range(0, len(rows), chunk):
        part = rows[start : start + chunk]
        np.take(src, part, axis=0, out=buf[: len(part)], mode="clip")  # ("raise" would copy twice)
        bf16_bits(buf[: len(part)], bits[start : start + len(part)])
    return Bf16Rows(bits)


class Bf16Rows:
    """bfloat16 rows where they lie: rows ``nodes`` of ``bits`` (uint16, the numbers' upper
    halves; None: all of its rows, in order), such as a graph part's own values
    (``graph.PartValues``). ``prescore_distances`` reads them a thousand rows at a time into a
    buffer that stays in the cache; they are never copied whole. (Copied whole, the million rows
    of the 1,000-line many-filter batch at 500k were 768 MB of fresh memory a batch, whose
    zeroing by the kernel took 0.4-1.5 CPU seconds, against 1.3 for everything else.) Slicing
    or indexing (``rows[a:b]``, ``rows[cols]``) picks rows without reading them."""

    __slots__ = ("bits", "nodes")

    def __init__(self, bits: np.ndarray, nodes: np.ndarray | None = None):
        if nodes is not None and len(nodes) and not (0 <= int(nodes.min()) and int(nodes.max()) < len(bits)):
            raise ValueError("rows outside the values")  # (``tensor`` takes them unchecked)
        self.bits, self.nodes = bits, nodes

    def __len__(self) -> int:
        return len(self.bits) if self.nodes is None else len(self.nodes)

    @property
    def nbytes(self) -> int:
        """The bytes these rows hold of their own (a copy's rows, or only the nodes)."""
        return self.bits.nbytes if self.nodes is None else self.nodes.nbytes

    def __getitem__(self, which) -> Bf16Rows:
        """Rows by a slice, positions or a mask of them (picked from rows already checked: a
        batch's cells slice them per product, and are not checked again)."""
        if self.nodes is not None:
            return _picked(self.bits, self.nodes[which])
        if isinstance(which, slice):
            return _picked(self.bits[which], None)
        which = np.asarray(which)
        return Bf16Rows(self.bits, np.flatnonzero(which) if which.dtype == bool else which)

    def tensor(self, start: int, stop: int, buf: np.ndarray | None = None):
        """Rows ``start:stop`` as a NumKong bfloat16 tensor: a view of ``bits`` when they are its
        rows in order, else taken into ``buf`` (uint16, as many rows at least)."""
        if self.nodes is None:
            return bf16_tensor(self.bits[start:stop])
        if buf is None:
            buf = np.empty((stop - start, self.bits.shape[1]), np.uint16)
        out = buf[: stop - start]
        np.take(self.bits, self.nodes[start:stop], axis=0, out=out, mode="clip")  # (nodes are valid)
        return bf16_tensor(out)


def _picked(bits: np.ndarray, nodes: np.ndarray | None) -> Bf16Rows:
    """``Bf16Rows`` of nodes known to be inside ``bits``, unchecked."""
    rows = Bf16Rows.__new__(Bf16Rows)
    rows.bits, rows.nodes = bits, nodes
    return rows


def bf16_tensor(bits: np.ndarray):
    """The bfloat16 numbers whose bits are ``bits`` (uint16, C-contiguous) as a NumKong tensor,
    without a copy."""
    import numkong  # lazy: only filtered batches use it (and vcli imports it here alone)

    return numkong.from_pointer(bits.ctypes.data, bits.shape, "bf16", owner=bits)


def bf16_bits(vecs: np.ndarray, out: np.ndarray) -> None:
    """Round float32 rows to bfloat16 (nearest; a tie away from zero) into ``out`` (uint16, the
    memory of a NumKong bfloat16 tensor); ``vecs`` is overwritten. Each number is within 2^-8 of
    its float32 value (relative), as with round-to-even, in two thirds of ``numkong.astype``'s time."""
    bits = vecs.view(np.uint32)
    bits += 0x8000  # (a carry into the exponent is the rounding up to the next power of two)
    bits >>= 16
    out[...] = bits


def prescorable(norms: np.ndarray) -> bool:
    """Whether vectors of these norms (queries' or rows') may be scored by ``prescore_distances``
    rather than ``batch_distances``: none so large that float32 could overflow (``_huge``), none
    but 0 so small that products of their bfloat16 parts fall below float32's normal range,
    where the bfloat16 kernel flushes them to zero."""
    live = norms[norms > 0]
    return not len(live) or (float(live.max()) < SAFE_NORM and float(live.min()) > 1e-12)


def prescore_fast() -> bool:
    """Whether NumKong runs its bfloat16 kernel with SIMD instructions here (any capability but
    ``serial``): its serial kernel is about fifty times slower than float32 BLAS."""
    import numkong

    return any(on for isa, on in numkong.get_capabilities().items() if isa != "serial")


def prescore_distances(metric: str, queries: np.ndarray, rows16: Bf16Rows, norms: np.ndarray, chunk: int = 1024,
                       per_call: int = 64) -> np.ndarray:
    """``batch_distances`` against ``rows16``, the rows in bfloat16 (``Bf16Rows``) whose float32
    norms are ``norms``: the queries rounded to bfloat16 too, the products summed in float32 by
    NumKong's kernel on one core, ``chunk`` rows at a time (read into one buffer, when they are
    not a copy's rows in order) against ``per_call`` queries a call, each call's (rows x queries)
    products written transposed into the (queries x rows) result. Calls of that size cost ~7 ns
    a pair at 384 dimensions whatever the queries; one call for all of them cost ~12 ns at 1,000
    (its result outgrows the cache before it is transposed). Each distance within
    ``prescore_error`` of the exact one."""
    import numkong

    qn = np.linalg.norm(queries, axis=1).astype(np.float32)
    if metric == "cosine":  # as batch_distances: -(q / |q|).v / |v|, 0 where a norm is 0
        with np.errstate(divide="ignore"):
            scale = np.where(qn > 0, -1 / qn, 0).astype(np.float32)
            inv_v = np.where(norms > 0, 1 / norms, 0).astype(np.float32)
    else:
        scale = np.full(len(queries), -2 if metric == "euclidean" else -1, np.float32)
    scaled = to_bf16(queries * scale[:, None])
    packed = [(q0, numkong.dots_pack(scaled.tensor(q0, min(q0 + per_call, len(queries))), dtype="bf16"))
              for q0 in range(0, len(queries), per_call)]
    dists = np.empty((len(queries), len(rows16)), np.float32)
    buf = None if rows16.nodes is None else np.empty((min(chunk, len(rows16)), rows16.bits.shape[1]), np.uint16)
    for start in range(0, len(rows16), chunk):
        stop = min(start + chunk, len(rows16))
        rows = rows16.tensor(start, stop, buf)
        for q0, queries16 in packed:
            part = np.asarray(numkong.dots_packed(rows, queries16)).T
            out = dists[q0 : q0 + per_call, start:stop]
            if metric == "cosine":
                np.multiply(part, inv_v[None, start:stop], out=out)
            else:
                out[...] = part
    if metric == "euclidean":  # |v|^2 - 2 q.v + |q|^2
        dists += (norms * norms)[None, :]
        dists += (qn * qn)[:, None]
    return dists


# Each of a bfloat16 query's and row's numbers is within 2^-8 of its float32 one (relative), so a
# product of the two is within (2 * 2^-8 + 2^-16) |q| |v| of the exact one; float32 summing adds
# at most dims * 2^-24 (2^-13.4 at 1,536 dimensions, ``limits.MAX_DIMENSIONS``: a generous 2^-12
# here), float32 scaling a few 2^-24.
BF16_RELATIVE = 2 * 2**-8 + 2**-16 + 2**-12


def prescore_error(metric: str, q: np.ndarray, max_norm: float) -> float:
    """How far a ``prescore_distances`` distance of query ``q`` to vectors of norm at most
    ``max_norm`` may stray from the exact one: every row of the float32 top k is within twice
    this plus twice ``tolerance`` of the k-th smallest pre-score (``Grouped._nears``)."""
    return float(prescore_errors(metric, np.asarray(q)[None, :], max_norm)[0])


def prescore_errors(metric: str, queries: np.ndarray, max_norm: float) -> np.ndarray:
    """``prescore_error`` of each of ``queries``."""
    if metric == "cosine":
        return np.full(len(queries), BF16_RELATIVE)
    qn = np.linalg.norm(np.asarray(queries, np.float64), axis=1)
    return BF16_RELATIVE * qn * max_norm * (2 if metric == "euclidean" else 1)


class Groups:
    """The columns of a block of distances in ``groups`` interleaved groups
    (``Tuning.score_groups``; column ``j`` in group ``j % groups``), each group's minimum per row,
    and per row the k-th smallest minimum: a bound that at least k entries of the row are at or
    below."""

    def __init__(self, dists: np.ndarray, ks: Sequence[int], groups: int):
        self.dists = dists
        rows, n = dists.shape
        self.groups = groups = min(groups, n)
        self.width = width = n // groups
        self.whole = Groups.whole_of(n, ks, groups)  # too few columns: look at all of them
        if self.whole:
            return
        self.mins = dists[:, : groups * width].reshape(rows, width, groups).min(axis=1)
        kth = sorted({k - 1 for k in ks})
        self.bounds = np.partition(self.mins, kth, axis=1)[np.arange(rows), np.asarray(ks) - 1]
        self.steps = np.arange(width) * groups
        self.tail = np.arange(groups * width, n)  # the last columns, in no group

    @staticmethod
    def whole_of(columns: int, ks: Sequence[int], groups: int) -> bool:
        """Whether ``Groups`` of so many columns looks into all of them: too few for the groups
        to bound anything."""
        groups = min(groups, columns)
        return not groups or columns // groups < 2 or max(ks) > groups

    def near(self, i: int, tol: float) -> np.ndarray:
        """Columns of row ``i`` within ``tol`` of its bound: all of its k nearest, and ties."""
        row = self.dists[i]
        if self.whole:
            return np.flatnonzero(row <= np.inf)
        limit = self.bounds[i] + tol
        cols = (np.flatnonzero(self.mins[i] <= limit)[None, :] + self.steps[:, None]).ravel()
        cols = np.concatenate([cols, self.tail])
        return cols[row[cols] <= limit]


def distances(metric: str, q: np.ndarray, vecs: np.ndarray, norms: np.ndarray) -> np.ndarray:
    """float32 distances, lower is better, used only to choose candidates: the negative cosine,
    the squared L2 distance, or the negative dot product."""
    if len(vecs) == 0:
        return np.zeros(0, np.float32)
    if _huge(q, norms):
        q, vecs = np.asarray(q, np.float64), np.asarray(vecs, np.float64)
        norms = np.linalg.norm(vecs, axis=1)
    dots = vecs @ q
    if metric == "dot-product":
        return -dots
    qn = dots.dtype.type(np.linalg.norm(q))
    if metric == "euclidean":
        return norms * norms - 2 * dots + qn * qn
    denom = norms * qn
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.where(denom > 0, dots / np.where(denom > 0, denom, 1), 0).astype(dots.dtype)


def paired_distances(metric: str, queries: np.ndarray, vecs: np.ndarray, norms: np.ndarray) -> np.ndarray:
    """``distances`` of each query (``queries[b]``) to its own candidates (``vecs[b, c]``, of norms
    ``norms[b, c]``): a block's graph candidates scored at once, not one query at a time."""
    if not vecs.size:
        return np.zeros(vecs.shape[:2], np.float32)
    if _huge(queries, norms):
        queries, vecs = np.asarray(queries, np.float64), np.asarray(vecs, np.float64)
        norms = np.linalg.norm(vecs, axis=-1)
    dots = np.einsum("bcd,bd->bc", vecs, queries)
    if metric == "dot-product":
        return -dots
    qn = np.linalg.norm(queries, axis=1).astype(dots.dtype)[:, None]
    if metric == "euclidean":
        return norms * norms - 2 * dots + qn * qn
    denom = norms * qn
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.where(denom > 0, dots / np.where(denom > 0, denom, 1), 0).astype(dots.dtype)


def top_candidates_rows(keys: np.ndarray, dists: np.ndarray, ks: Sequence[int],
                        tolerances: Sequence[float]) -> list[np.ndarray]:
    """``top_candidates`` of each row of ``keys`` and ``dists`` (same shape), with its own k and
    tolerance, the rows partitioned together."""
    dists = np.asarray(dists)
    rows, n = dists.shape
    k_of = np.asarray(ks, np.int64)
    kth = np.full(rows, np.inf, dists.dtype)
    for k in sorted(set(k_of[k_of <= n].tolist())):  # not np.unique: it imports numpy.ma
        pick = np.flatnonzero(k_of == k)
        kth[pick] = np.partition(dists[pick], k - 1, axis=1)[:, k - 1]
    with np.errstate(invalid="ignore"):
        near = (dists <= (kth + np.asarray(tolerances, dists.dtype))[:, None]) & np.isfinite(dists)
    counts = near.sum(axis=1)
    return [top_candidates(keys[i], dists[i], int(k_of[i]), float(tolerances[i]))
            if counts[i] > k_of[i] + MAX_EXTRA_TIES else keys[i][near[i]] for i in range(rows)]


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
