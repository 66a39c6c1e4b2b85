"""The graph: a derived usearch HNSW index over the store's vectors, for large indexes.

File ``graph-<seq>.usearch`` reflects the store as of mutation ``seq``; its keys are the store's
integer keys. It stores float32 explicitly (usearch 2.26 would default to bf16, which moves scores
in the fourth digit). A graph is never modified in place: catching up loads it, applies the rows
added and removed since ``seq``, and saves a new file under the new sequence number (temporary name,
fsync, rename). Queries open it memory-mapped (``view``), so a query reads only the pages it visits.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..startup import import_usearch
from . import fsutil
from .layout import Folder
from .store import Store

_usearch = import_usearch()
Index, MetricKind = _usearch.Index, _usearch.MetricKind

USEARCH_METRIC = {"cosine": MetricKind.Cos, "euclidean": MetricKind.L2sq, "dot-product": MetricKind.IP}
# Build and search settings, chosen by measurement (docs/performance.md, "The graph"): usearch's
# build defaults, and recall bought at search time, where a one-shot query can afford it (recall@10
# >= 0.99 at every size measured).
CONNECTIVITY = 16
EXPANSION_ADD = 128
EXPANSION_SEARCH = 256
EXPANSION_SEARCH_LARGE = 512  # from LARGE_GRAPH vectors on
LARGE_GRAPH = 500_000


def search_ef(size: int) -> int:
    return EXPANSION_SEARCH if size < LARGE_GRAPH else EXPANSION_SEARCH_LARGE


CHUNK = 16384  # rows read from the store and added per call while building
PARALLEL_MIN_SIZE = 20_000  # graphs smaller than this are built on one thread (see add_threads)
# Candidates asked of the graph per query (at least k), all rescored exactly. Asking for more than
# 10 did not change recall at a given ef (the search visits ef nodes either way), but leaves room
# for candidates lost to removed keys and to ties.
SEARCH_CANDIDATES = 128


def add_threads(size: int) -> int:
    """Threads for adding vectors to a graph that will hold ``size``. Concurrent inserts into a
    small graph contend for the same few nodes, and usearch then sometimes leaves a node that
    searches cannot reach (seen on graphs of a few hundred vectors: a top-10 match missing even
    at ef 128); on one thread, or on large graphs, that did not happen."""
    return 1 if size < PARALLEL_MIN_SIZE else os.cpu_count() or 1


def search_count(k: int) -> int:
    """How many candidates to ask the graph for, to find the top ``k``."""
    return max(k, SEARCH_CANDIDATES)


def new_index(dimensions: int, metric: str, lookups: bool = True) -> Index:
    return Index(
        ndim=dimensions,
        metric=USEARCH_METRIC[metric],
        dtype="f32",
        connectivity=CONNECTIVITY,
        expansion_add=EXPANSION_ADD,
        expansion_search=EXPANSION_SEARCH,
        enable_key_lookups=lookups,
    )


def load(
    path: Path, dimensions: int, metric: str, expected_count: int | None, *, view: bool, lookups: bool = True,
) -> Index:
    """Open a graph file, checking that it fits this index; ``ValueError`` if it does not.

    ``lookups=False`` skips building the key -> node table, which costs a view ~0.1 s per million
    vectors (every node's key is read and hashed): then search works, but ``get``, ``contains``
    and ``remove`` do not (they answer None/False silently), so only a searcher that reads
    vectors from the store may open a graph so."""
    meta = Index.metadata(str(path))
    if meta is None:
        raise ValueError(f"{path.name} is not a usearch graph")
    if (
        meta["dimensions"] != dimensions
        or meta["kind_metric"] != USEARCH_METRIC[metric]
        or str(meta["kind_scalar"]).split(".")[-1] != "F32"
        or (expected_count is not None and meta["count_present"] != expected_count)
    ):
        raise ValueError(f"{path.name} does not match this index")
    index = new_index(dimensions, metric, lookups)
    if view:
        index.view(str(path))
    else:
        index.load(str(path))
    index.expansion_search = search_ef(len(index))
    return index


def add_from_store(index: Index, store: Store, after_seq: int | None = None) -> int:
    """Add the store's vectors (all, or those written after ``after_seq``; in key order, ``CHUNK``
    rows at a time, so memory holds the graph plus one chunk) on all cores. Reading a chunk from
    SQLite takes ~1% of the time usearch takes to insert it, so the build runs at usearch's speed."""
    added = 0
    cur = store.vectors(after_seq=after_seq)
    dims = index.ndim
    while rows := cur.fetchmany(CHUNK):
        keys = np.fromiter((r[0] for r in rows), np.uint64, len(rows))
        block = np.frombuffer(b"".join(r[1] for r in rows), "<f4").reshape(len(rows), dims)
        index.add(keys, block, threads=add_threads(len(index) + len(rows)))
        added += len(rows)
    return added


def save(index: Index, path: Path) -> None:
    with fsutil.replacing(path) as tmp:
        index.save(str(tmp))
        os.chmod(tmp, fsutil.FILE_MODE)


def build(store: Store, folder: Folder, dimensions: int, metric: str) -> Path:
    """Build a whole new graph from the store."""
    with store.snapshot():
        seq = store.last_seq()
        index = new_index(dimensions, metric)
        # (usearch 2.26's Python Index has no reserve(); add() grows it)
        add_from_store(index, store)
        path = folder.search_file("graph", seq)
        save(index, path)
    return path


def catch_up(index: Index, store: Store, old_seq: int, folder: Folder) -> Path:
    """Apply the store's changes since ``old_seq`` to a loaded graph and save it anew."""
    with store.snapshot():
        seq = store.last_seq()
        gone = store.removed_since(old_seq)
        if gone:
            index.remove(np.asarray(gone, np.uint64))
        add_from_store(index, store, after_seq=old_seq)
        path = folder.search_file("graph", seq)
        save(index, path)
    return path
