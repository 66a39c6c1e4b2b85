"""The graph: a usearch HNSW index over the matrix of a large index, to find candidates fast.

File ``graph-<seq>.usearch`` is built from ``matrix-<seq>.f32`` (never from the store) and holds
the same keys. It stores bfloat16: it only *finds* candidates, whose float32 values (and so every
score) come from the matrix beside it, so the coarser copy costs no exactness, halves the file
and builds ~3x faster than float32 (docs/scale.md has the measurements). A graph is never modified
in place: catching up loads the one before, removes the keys the new matrix lacks, adds those it
lacks, and saves a new file under the new sequence number (temporary name, fsync, rename).
Queries open it memory-mapped (``view``) without its key table, so a query reads only the pages
it visits. ``builder.py`` decides when a graph is built, and in which process.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..startup import import_usearch
from . import fsutil
from .layout import Folder
from .matrix import Matrix

_usearch = import_usearch()
Index, MetricKind = _usearch.Index, _usearch.MetricKind

USEARCH_METRIC = {"cosine": MetricKind.Cos, "euclidean": MetricKind.L2sq, "dot-product": MetricKind.IP}
DTYPE, SCALAR = "bf16", "BF16"
# Build and search settings, chosen by measurement (docs/scale.md): recall@10 after exact
# rescoring >= 0.99 from 1k to 1M vectors, at the build speed those sizes allow.
CONNECTIVITY = 16
EXPANSION_ADD = 128
EXPANSION_SEARCH = 384
CHUNK = 16384  # rows added per call while building
PARALLEL_MIN_SIZE = 20_000  # graphs smaller than this are built on one thread (see add_threads)
# Candidates asked of the graph per query (at least twice k), all rescored exactly from the matrix.
# The bf16 graph ranks so close to float32 that more do not help: at 1M, recall@10 after rescoring
# was the same for 16 candidates as for 128 (docs/scale.md); what recall needs is search depth.
SEARCH_CANDIDATES = 32
# Catching up is worth it while the changes are at most this share of the graph; beyond it (and
# because removed nodes leave holes that later searches step around) the graph is built anew.
CATCH_UP_SHARE = 0.25


def add_threads(size: int) -> int:
    """Threads for adding vectors to a graph that will hold ``size``. Concurrent inserts into a
    small graph contend for the same few nodes, and usearch then sometimes leaves a node that
    searches cannot reach (seen on graphs of a few hundred vectors: a top-10 match missing even
    at ef 128); on one thread, or on large graphs, that did not happen."""
    return 1 if size < PARALLEL_MIN_SIZE else os.cpu_count() or 1


def search_count(k: int) -> int:
    """How many candidates to ask the graph for, to find the top ``k``."""
    return max(2 * k, SEARCH_CANDIDATES)


def new_index(dimensions: int, metric: str, lookups: bool = True) -> Index:
    return Index(
        ndim=dimensions,
        metric=USEARCH_METRIC[metric],
        dtype=DTYPE,
        connectivity=CONNECTIVITY,
        expansion_add=EXPANSION_ADD,
        expansion_search=EXPANSION_SEARCH,
        enable_key_lookups=lookups,
    )


def load(path: Path, dimensions: int, metric: str, expected_count: int | None = None, *,
         view: bool = True, keys: bool = False) -> Index:
    """Open a graph file, checking that it fits this index; ``ValueError`` if it does not.

    A view (for queries) is opened without the key -> node table, which would cost ~0.1 s per
    million vectors: search works, but ``keys``, ``get``, ``contains`` and ``remove`` do not (they
    answer garbage or nothing), and none is needed, as values come from the matrix. ``keys=True``
    (``vcli check``) or a full load (``view=False``, to catch up) has the table."""
    meta = Index.metadata(str(path))
    if meta is None:
        raise ValueError(f"{path.name} is not a usearch graph")
    if (
        meta["dimensions"] != dimensions
        or meta["kind_metric"] != USEARCH_METRIC[metric]
        or str(meta["kind_scalar"]).split(".")[-1] != SCALAR
        or (expected_count is not None and meta["count_present"] != expected_count)
    ):
        raise ValueError(f"{path.name} does not match this index")
    index = new_index(dimensions, metric, lookups=keys or not view)
    if view:
        index.view(str(path))
    else:
        index.load(str(path))
    return index


def _add_rows(index: Index, m: Matrix, rows: np.ndarray | None = None) -> None:
    """Add the matrix's rows (all, or those at positions ``rows``), ``CHUNK`` at a time."""
    total = len(m.keys) if rows is None else len(rows)
    for start in range(0, total, CHUNK):
        pick = slice(start, min(total, start + CHUNK)) if rows is None else rows[start : start + CHUNK]
        keys = np.asarray(m.keys[pick]).astype(np.uint64)
        index.add(keys, np.ascontiguousarray(m.values[pick]), threads=add_threads(len(index) + len(keys)))


def save(index: Index, path: Path) -> None:
    with fsutil.replacing(path) as tmp:
        index.save(str(tmp))
        os.chmod(tmp, fsutil.FILE_MODE)


def build(m: Matrix, folder: Folder, metric: str) -> Path:
    """Build the graph of matrix ``m`` anew."""
    index = new_index(m.values.shape[1], metric)
    _add_rows(index, m)
    path = folder.search_file("graph", m.seq)
    save(index, path)
    return path


def catch_up(old: Path, m: Matrix, folder: Folder, metric: str) -> Path | None:
    """The graph of matrix ``m`` made from the graph file ``old`` (an earlier matrix's): None when
    that would change more than ``CATCH_UP_SHARE`` of it (then build anew). ``ValueError`` or
    ``RuntimeError`` when ``old`` is unusable."""
    index = load(old, m.values.shape[1], metric, view=False)
    have = np.sort(np.asarray(index.keys, np.uint64).astype(np.int64))
    gone = np.setdiff1d(have, m.keys, assume_unique=True)
    new_rows = np.flatnonzero(~np.isin(m.keys, have, assume_unique=True))
    if len(gone) + len(new_rows) > CATCH_UP_SHARE * max(len(have), 1):
        return None
    if len(gone):
        index.remove(gone.astype(np.uint64))
    _add_rows(index, m, new_rows)
    if len(index) != len(m.keys):
        raise RuntimeError(f"{old.name} caught up holds {len(index)} vectors, not {len(m.keys)}")
    path = folder.search_file("graph", m.seq)
    save(index, path)
    return path
