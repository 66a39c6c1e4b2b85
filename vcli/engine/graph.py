"""The graph: usearch HNSW graphs over the matrix of a large index, to find candidates fast.

A large index's graph comes in *parts*. File ``graph-<seq>-<lo>-<hi>.usearch`` holds every vector
of the matrix of mutation ``<seq>`` whose key is ``lo..hi`` (but its tombstones), and nothing
else; the parts of an index cover consecutive key ranges from 0 up, each at most
``Tuning.graph_part_rows`` vectors. Keys are never reused and new vectors always get larger ones, so a part stays right for every later matrix: the
vectors of a later matrix with keys in ``lo..hi`` are among the part's (the others were deleted or
replaced since, and a search drops them, as it drops any key the matrix lacks). Rows of the matrix
that no part covers (those written since the last part, usually) are scanned exactly beside the
parts. So a write never takes the graph away from queries: the builder extends the last part (or
starts a new one) with what is new, and rebuilds a part once a quarter of it is gone.

Why parts rather than one graph: at two million vectors one graph (connectivity 16, built at
expansion 128) finds 0.983 of the true top 10 at ef 384 and no more than 0.985 however deep it is
searched, while four parts of 500,000 find 0.993 at ef 128, faster; at a million, two parts of
500,000 at ef 128 find 0.993 where one graph finds 0.994 at ef 384, and search ~60 % faster.
Each part also builds faster (a graph's build slows as it grows), and adding to the index
rewrites one part, not all (docs/scale.md has the figures).

A part stores bfloat16: it only *finds* candidates, whose float32 values (and so every score)
come from the matrix, so the coarser copy costs no exactness, halves the file and builds ~3x
faster than float32. A part is never modified in place: extending one loads it, adds the new
vectors and saves a new file under the new sequence number and key range (temporary name, fsync,
rename). Queries open parts memory-mapped (``view``) without their key tables, so a query reads
only the pages it visits. ``builder.py`` decides when parts are built, and in which process.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from . import fsutil
from ._usearch import import_usearch
from .layout import Folder, SearchFile
from .matrix import Matrix, in_sorted
from .tuning import DEFAULT, Tuning

_usearch = import_usearch()
if TYPE_CHECKING:
    from usearch.index import Index, MetricKind
else:
    Index, MetricKind = _usearch.Index, _usearch.MetricKind

USEARCH_METRIC = {"cosine": MetricKind.Cos, "euclidean": MetricKind.L2sq, "dot-product": MetricKind.IP}
DTYPE, SCALAR = "bf16", "BF16"
CHUNK = 16384  # rows added per call while building


def add_threads(size: int, tuning: Tuning) -> int:
    """Threads for adding vectors to a graph that will hold ``size``: one below
    ``Tuning.graph_parallel_rows`` (its comment says why), else every core."""
    return 1 if size < tuning.graph_parallel_rows else os.cpu_count() or 1


def search_depth(size: int, share: float, tuning: Tuning) -> int:
    """The expansion a search of a part of ``size`` vectors goes to when ``share`` of them pass a
    filter (``Parts.search``): deeper for a part smaller than ``Tuning.graph_small_part``."""
    base = tuning.graph_expansion_search * min(1.5, max(1.0, math.sqrt(tuning.graph_small_part / max(size, 1))))
    return min(tuning.graph_max_expansion, int(base / min(max(share, 1e-6), 1.0)))


def new_index(dimensions: int, metric: str, lookups: bool = True, tuning: Tuning = DEFAULT) -> Index:
    return Index(
        ndim=dimensions,
        metric=USEARCH_METRIC[metric],
        dtype=DTYPE,
        connectivity=tuning.graph_connectivity,
        expansion_add=tuning.graph_expansion_add,
        expansion_search=tuning.graph_expansion_search,
        enable_key_lookups=lookups,
    )


def load(path: Path, dimensions: int, metric: str, tuning: Tuning, *, view: bool = True,
         keys: bool = False) -> Index:
    """Open a graph file, checking that it fits this index; ``ValueError`` if it does not.

    A view (for queries) is opened without the key -> node table, which would cost time in
    proportion to its size: search works, but ``keys``, ``get``, ``contains`` and ``remove`` do not (they
    answer garbage or nothing), and none is needed, as values come from the matrix. ``keys=True``
    (``vcli check``) or a full load (``view=False``, to extend it) has the table."""
    meta = Index.metadata(str(path))
    if meta is None:
        raise ValueError(f"{path.name} is not a usearch graph")
    if (
        meta["dimensions"] != dimensions
        or meta["kind_metric"] != USEARCH_METRIC[metric]
        or str(meta["kind_scalar"]).split(".")[-1] != SCALAR
    ):
        raise ValueError(f"{path.name} does not match this index")
    index = new_index(dimensions, metric, lookups=keys or not view, tuning=tuning)
    if view:
        index.view(str(path))
    else:
        index.load(str(path))
    return index


def size_of(path: Path) -> int:
    """How many vectors a graph file holds, from its header; ``ValueError`` if it is not one."""
    meta = Index.metadata(str(path))
    if meta is None:
        raise ValueError(f"{path.name} is not a usearch graph")
    return int(meta["count_present"])


def rows_of(m: Matrix, part: SearchFile) -> slice:
    """The rows of matrix ``m`` whose keys are in the key range of ``part``."""
    return slice(int(np.searchsorted(m.keys, part.lo)), int(np.searchsorted(m.keys, part.hi, side="right")))


def uncovered(m: Matrix, parts: Sequence[SearchFile]) -> list[slice]:
    """The runs of rows of ``m`` that no part covers (searched exactly beside the parts), but
    runs of tombstones only, which no part will cover."""
    out, at = [], 0
    for part in parts:  # (in key order, not overlapping)
        rows = rows_of(m, part)
        if rows.start > at:
            out.append(slice(at, rows.start))
        at = max(at, rows.stop)
    if at < len(m.keys):
        out.append(slice(at, len(m.keys)))
    if len(m.gone):
        out = [r for r in out if r.stop - r.start > np.searchsorted(m.gone, m.keys[r.stop - 1], side="right")
               - np.searchsorted(m.gone, m.keys[r.start])]
    return out


def _add_rows(index: Index, m: Matrix, folder: Folder, rows: slice, tuning: Tuning) -> int:
    """Add the matrix's rows ``rows`` but its tombstones, ``CHUNK`` at a time; how many.
    ``FileNotFoundError`` once the index is gone (``vcli delete``): a builder stops at its next
    chunk rather than spend minutes of CPU on a part no one will open."""
    added = 0
    for start in range(rows.start, rows.stop, CHUNK):
        if not folder.store.exists():
            raise FileNotFoundError(f"{folder.store} is gone: the index was deleted")
        stop = min(rows.stop, start + CHUNK)
        keys = np.asarray(m.keys[start:stop])
        values = np.ascontiguousarray(m.values[start:stop])
        if len(m.gone):
            live = np.flatnonzero(~in_sorted(keys, m.gone))
            keys, values = keys[live], values[live]
        if len(keys):
            index.add(keys.astype(np.uint64), values, threads=add_threads(len(index) + len(keys), tuning))
        added += len(keys)
    return added


def save(index: Index, path: Path) -> None:
    with fsutil.replacing(path) as tmp:
        index.save(str(tmp))
        os.chmod(tmp, fsutil.FILE_MODE)


def build_part(m: Matrix, folder: Folder, metric: str, keys: tuple[int, int], tuning: Tuning) -> Path:
    """Build anew the part of matrix ``m`` that holds its vectors with keys ``keys`` (lo, hi)."""
    index = new_index(m.values.shape[1], metric, tuning=tuning)
    lo, hi = keys
    rows = slice(int(np.searchsorted(m.keys, lo)), int(np.searchsorted(m.keys, hi, side="right")))
    _add_rows(index, m, folder, rows, tuning)
    path = folder.search_file("graph", m.seq, keys)
    save(index, path)
    return path


def extend_part(old: SearchFile, m: Matrix, folder: Folder, metric: str, hi: int, tuning: Tuning) -> Path:
    """The part ``old`` (a part of an earlier matrix) with the vectors of ``m`` whose keys are
    above its range and at most ``hi`` added: a part of ``m`` for keys ``old.lo..hi``. Its stale
    vectors stay (searches drop them) until it is rebuilt. ``ValueError`` or ``RuntimeError``
    when ``old`` is unusable."""
    index = load(old.path, m.values.shape[1], metric, tuning, view=False)
    before = len(index)
    rows = slice(int(np.searchsorted(m.keys, old.hi, side="right")), int(np.searchsorted(m.keys, hi, side="right")))
    added = _add_rows(index, m, folder, rows, tuning)
    if len(index) != before + added:
        raise RuntimeError(f"{old.path.name} extended holds {len(index)} vectors, not {before + added}")
    path = folder.search_file("graph", m.seq, (old.lo, hi))
    save(index, path)
    return path


class Parts:
    """The graph parts a search uses (opened views, in key order), searched as one."""

    def __init__(self, files: Sequence[SearchFile], views: Sequence[Index], tuning: Tuning):
        self.files = list(files)
        self.views = list(views)
        self.tuning = tuning

    def __len__(self) -> int:
        """The vectors they hold (stale ones included)."""
        return sum(len(v) for v in self.views)

    @property
    def largest(self) -> int:
        """The vectors of the largest part: a search asking each part for this many gets all."""
        return max((len(v) for v in self.views), default=0)

    def depth(self, share: float = 1.0) -> int:
        """The expansions of all the parts a search goes to (what it costs) when ``share`` of the
        vectors pass a filter."""
        return sum(search_depth(len(v), share, self.tuning) for v in self.views)

    def search(self, queries: np.ndarray, count: int, threads: int = 1,
               share: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        """``(keys, dists)``, each of shape (queries, count x parts): the keys each part found
        for each query (int64) and the graph's own (bfloat16) distances to them, inf where a
        part found fewer. Those distances rank the nearest so closely to float32 that the true
        top k are among the nearest few of all the parts' answers (``nearest``).

        ``share``: the part of the vectors a filter lets through. Its top k are then among the
        nearest k / share of all, deeper in the graph's answer, where a search at the usual
        depth is less exact: the search goes 1 / share times as deep (at 500k x 384, a filter
        passing half the vectors found 0.98 of the true top 10 at ef 128), and a small part
        deeper still (``search_depth``)."""
        queries = np.ascontiguousarray(queries, np.float32).reshape(-1, queries.shape[-1])
        keys, dists = [], []
        for view in self.views:
            n = min(count, len(view))
            if not n:
                continue
            # (usearch has the setter, but apart from its getter, which mypy does not follow)
            view.expansion_search = search_depth(len(view), share, self.tuning)  # type: ignore[misc]
            answer = view.search(queries, n, threads=threads)
            if hasattr(answer, "counts"):
                counts = np.asarray(answer.counts).reshape(-1, 1)
                got = np.asarray(answer.keys, np.int64).reshape(len(queries), -1)
                far = np.asarray(answer.distances, np.float32).reshape(len(queries), -1)
            else:  # one query: usearch answers a ``Matches``, trimmed to what it found
                got = np.asarray(answer.keys, np.int64).reshape(1, -1)
                far = np.asarray(answer.distances, np.float32).reshape(1, -1)
                counts = np.full((1, 1), got.shape[1])
            keys.append(got)
            dists.append(np.where(np.arange(got.shape[1])[None, :] < counts, far, np.inf))
        if not keys:
            return np.zeros((len(queries), 0), np.int64), np.zeros((len(queries), 0), np.float32)
        return np.concatenate(keys, axis=1), np.concatenate(dists, axis=1)


class PartValues:
    """The bfloat16 values a graph part holds, read from its file: ``vectors`` (one row of
    uint16 a node, in the order usearch added them) and the node of each row of the matrix in
    the part's range of keys (a contiguous run of rows, from ``first``). A filtered batch gathers
    its rows' bfloat16 copies from here (``Grouped._bf16``): half the bytes of the matrix's
    float32, already rounded, each row's node one lookup (a binary search of the part's keys a
    row took 0.12 s of the 1,000-line batch at 500k)."""

    def __init__(self, vectors: np.ndarray, first: int, run: np.ndarray):
        self.vectors, self._first, self._run = vectors, first, run

    def nodes(self, rows: np.ndarray) -> np.ndarray:
        """The node of each of the matrix's ``rows``, -1 for those the part does not hold."""
        at = np.asarray(rows, np.int64) - self._first
        inside = (at >= 0) & (at < len(self._run))
        if inside.all():
            return self._run[at]
        out = np.full(len(at), -1, np.int32)
        out[inside] = self._run[at[inside]]
        return out


def part_values(part: SearchFile, m: Matrix, samples: int) -> PartValues | None:
    """``PartValues`` of ``part``, or None where its file is not laid out as usearch 2 writes an
    index (vectors first: two uint32, nodes and bytes a vector, then each node's vector; a
    64-byte head that starts ``usearch``; the graph's header of five uint64 (nodes, connectivity,
    connectivity of the base level, top level, entry node); a 16-bit level a node; then each node:
    its uint64 key, its level, and a uint32 count and slots a level) to the byte, or where any of
    ``samples`` of its vectors, drawn at random among those the matrix ``m`` holds, strays from the
    matrix's float32 by more than rounding to bfloat16 does (2^-8 of each number): a pre-score
    from these values is then as exact as one from ``scoring.to_bf16``'s. (Damage to a few
    vectors of a part that the samples miss would bias which rows a filtered batch rescores, as
    it biases which candidates the part's searches find; ``vcli check`` samples the parts too.)"""
    dims = m.values.shape[1]
    if sys.byteorder != "little":  # (usearch writes the machine's order; read as little-endian here)
        return None
    try:
        data = np.memmap(part.path, np.uint8, mode="r")
        count, width = (int(x) for x in np.frombuffer(data[:8], np.uint32))
        at = 8 + count * width
        if width != 2 * dims or bytes(data[at : at + 7]) != b"usearch":
            return None
        at += 64
        nodes, links, base_links, _, _ = (int(x) for x in np.frombuffer(data[at : at + 40], np.uint64))
        at += 40
        levels = np.frombuffer(data[at : at + 2 * nodes], np.int16).astype(np.int64)
        at += 2 * nodes
        sizes = 10 + 4 + 4 * base_links + (4 + 4 * links) * levels
        starts = at + np.cumsum(sizes) - sizes
        if nodes != count or not nodes or int(starts[-1] + sizes[-1]) != len(data) or levels.min() < 0:
            return None
        keys = np.empty(nodes, np.int64)
        offsets = starts % 8
        for a in range(8):  # the keys that start at each offset from a multiple of 8, one 8-byte read each
            which = np.flatnonzero(offsets == a)
            if len(which):
                words = np.frombuffer(data, "<i8", count=(len(data) - a) // 8, offset=a)
                keys[which] = words[(starts[which] - a) // 8]
    except (OSError, ValueError, IndexError):
        return None
    if keys.min() < part.lo or keys.max() > part.hi:
        return None
    if (keys[1:] > keys[:-1]).all():  # (as a part is built: in key order)
        order = np.arange(nodes, dtype=np.int32)
    else:
        order = np.argsort(keys, kind="stable").astype(np.int32)
        keys = keys[order]
        if (keys[1:] == keys[:-1]).any():  # a key twice
            return None
    vectors = np.frombuffer(data, np.uint16, count=nodes * dims, offset=8).reshape(nodes, dims)
    rows = np.searchsorted(m.keys, keys)
    held = np.flatnonzero((rows < len(m.keys)) & (m.keys[np.minimum(rows, len(m.keys) - 1)] == keys))
    first, last = int(np.searchsorted(m.keys, part.lo, "left")), int(np.searchsorted(m.keys, part.hi, "right"))
    run = np.full(last - first, -1, np.int32)
    run[rows[held] - first] = order[held]
    found = PartValues(vectors, first, run)
    if len(held):
        pick = np.random.default_rng().choice(held, min(samples, len(held)), replace=False)
        exact = np.asarray(m.values[rows[pick]], np.float32)
        rounded = (vectors[order[pick]].astype(np.uint32) << 16).view(np.float32)
        if not (np.abs(rounded - exact) <= np.abs(exact) * 2**-8).all():
            return None
    return found


def nearest(keys: np.ndarray, dists: np.ndarray, usable: np.ndarray, keep: int) -> tuple[np.ndarray, np.ndarray]:
    """Of each row's candidates (``Parts.search``), the ``keep`` nearest of those ``usable`` by
    the graphs' distances: ``(keys, usable)`` of shape (rows, at most keep). So the matrix rows
    gathered to score them do not grow with the number of parts: at 1M and 2M in parts of 500k,
    the nearest 12 of all the parts' answers held the same top 10 as all of them (docs/scale.md)."""
    if keys.shape[1] <= keep:
        return keys, usable & np.isfinite(dists)
    dists = np.where(usable, dists, np.inf)
    near = np.argpartition(dists, keep - 1, axis=1)[:, :keep]
    return np.take_along_axis(keys, near, axis=1), np.isfinite(np.take_along_axis(dists, near, axis=1))
