"""The matrix: a derived, memory-mapped float32 copy of every vector, for exact search.

File ``matrix-<seq>.f32`` holds the live vectors of the store as of mutation ``seq``, in key order:

    header  64 bytes: magic b"VCLIMAT1", uint64 seq, uint64 n, uint32 dimensions (little-endian)
    keys    int64[n]    ascending
    norms   float32[n]  L2 norm of each vector
    values  float32[n * dimensions]

It is written to a temporary name, fsynced and renamed, so it is whole or absent. Queries open it
with ``np.memmap`` (no read of the whole file) and scan rows written since ``seq`` from the store.
Every index with vectors has one: small ones are searched in it exactly, large ones find their
candidates in a graph (``graph.py``) and take their values from it. ``build`` writes it from the
store; ``catch_up`` from the matrix before it and the store's few changes since (new rows always
have larger keys, so they go at the end): a copy at disk speed rather than a read of every row.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import NamedTuple

import numpy as np

from . import fsutil
from .layout import Folder
from .store import Store

MAGIC = b"VCLIMAT1"
HEADER = struct.Struct("<8sQQI")
HEADER_SIZE = 64
CHUNK = 2048  # rows per step while writing (small: the float64 copy for norms is 8 bytes a number)


class Matrix(NamedTuple):
    seq: int
    keys: np.ndarray  # int64[n]
    norms: np.ndarray  # float32[n]
    values: np.ndarray  # float32[n, d]

    @classmethod
    def load(cls, path: Path, seq: int, dimensions: int) -> Matrix:
        with open(path, "rb") as f:
            magic, file_seq, n, dims = HEADER.unpack(f.read(HEADER.size))
        size = path.stat().st_size
        expected = HEADER_SIZE + n * 8 + n * 4 + n * dims * 4
        if magic != MAGIC or file_seq != seq or dims != dimensions or size != expected:
            raise ValueError(f"{path.name} is damaged or belongs to another index")
        if n == 0:
            return cls(seq, np.zeros(0, np.int64), np.zeros(0, np.float32), np.zeros((0, dims), np.float32))
        # a plain view of the map: np.memmap's own indexing costs ~25 µs a call in Python
        raw = np.memmap(path, dtype=np.uint8, mode="r").view(np.ndarray)
        keys = raw[HEADER_SIZE : HEADER_SIZE + n * 8].view("<i8")
        off = HEADER_SIZE + n * 8
        norms = raw[off : off + n * 4].view("<f4")
        values = raw[off + n * 4 :].view("<f4").reshape(n, dims)
        return cls(seq, keys, norms, values)

    def rows_of(self, keys: np.ndarray) -> np.ndarray:
        """Row positions of ``keys`` (which must be present)."""
        return np.searchsorted(self.keys, keys)


def _header(seq: int, n: int, dimensions: int) -> bytes:
    return HEADER.pack(MAGIC, seq, n, dimensions).ljust(HEADER_SIZE, b"\0")


def _norms(block: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):  # in float64: float32 squares overflow at 1.8e19
        return np.linalg.norm(block.astype(np.float64), axis=1).astype(np.float32)


def build(store: Store, folder: Folder, dimensions: int) -> Path:
    """Write a new matrix file from the store's live vectors; return its path."""
    with store.snapshot():
        seq = store.last_seq()
        n = store.count()
        path = folder.search_file("matrix", seq)

        def write(f) -> None:
            f.write(_header(seq, n, dimensions))
            keys = np.empty(n, np.int64)
            norms = np.empty(n, np.float32)
            f.seek(HEADER_SIZE + n * 12)
            done = 0
            cur = store.vectors()
            while rows := cur.fetchmany(CHUNK):
                block = np.frombuffer(b"".join(r[1] for r in rows), "<f4").reshape(len(rows), dimensions)
                keys[done : done + len(rows)] = [r[0] for r in rows]
                norms[done : done + len(rows)] = _norms(block)
                f.write(block.tobytes())
                done += len(rows)
            if done != n:  # pragma: no cover - the snapshot makes this impossible
                raise RuntimeError("the store changed while the matrix was written")
            f.seek(HEADER_SIZE)
            f.write(keys.astype("<i8").tobytes())
            f.write(norms.astype("<f4").tobytes())

        fsutil.write_atomic(path, write)
    return path


def catch_up(old: Matrix, store: Store, folder: Folder) -> Path | None:
    """A new matrix from ``old`` minus the keys removed since it plus the rows written since; None
    when the store's rows since do not all come after ``old``'s keys (then ``build`` anew)."""
    dims = old.values.shape[1]
    with store.snapshot():
        seq = store.last_seq()
        gone = np.asarray(store.removed_since(old.seq), np.int64)
        keep = np.flatnonzero(~np.isin(old.keys, gone)) if len(gone) else np.arange(len(old.keys))
        rows = sorted(store.rows_since(old.seq))
        new_keys = np.fromiter((r[0] for r in rows), np.int64, len(rows))
        if len(rows) and len(old.keys) and new_keys[0] <= old.keys[-1]:
            return None
        n = len(keep) + len(rows)
        if n != store.count():
            raise RuntimeError(f"{len(keep)} kept and {len(rows)} new rows are not the store's {store.count()}")
        new_vecs = np.frombuffer(b"".join(r[1] for r in rows), "<f4").reshape(len(rows), dims)
        path = folder.search_file("matrix", seq)

        def write(f) -> None:
            f.write(_header(seq, n, dims))
            f.write(np.concatenate([old.keys[keep], new_keys]).astype("<i8").tobytes())
            f.write(np.concatenate([old.norms[keep], _norms(new_vecs)]).astype("<f4").tobytes())
            whole = len(keep) == len(old.keys)
            step = CHUNK * 32
            for start in range(0, len(keep), step):
                part = old.values[start : start + step] if whole else old.values[keep[start : start + step]]
                f.write(np.ascontiguousarray(part, "<f4").tobytes())
            f.write(new_vecs.tobytes())

        fsutil.write_atomic(path, write)
    return path
