"""Reading the float32 values of the vectors, from their one home: the columns.

A store snapshot says which generation's columns hold the values and how many of their rows are
committed (``Store.tail``); ``open_values`` maps that prefix of ``values-<gen>.keys`` and ``.f32``
read-only, and ``Values.of`` finds a key's row by binary search (keys ascend: they are handed out
in order, and a compaction copies rows in order). Bytes past the committed end (a write killed
before its commit, or one still in progress) are never mapped. A compaction that replaced the
generation after the snapshot began may have removed its files: ``reading`` then takes a new
snapshot. A store of an older vcli, not migrated yet, is read from its blobs (``_OldValues``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ..errors import StorageError
from .layout import Folder
from .store import Store

RETRIES = 5


class MissingValues(StorageError, RuntimeError):
    """The columns lack the values of vectors the store has (a damaged or foreign column): one
    clear line for the user, and a ``RuntimeError`` to the refresh and checks that catch those.
    ``refused``: the damaged append a compaction refused to copy (``Store.record_refusal``)."""

    refused: tuple[str, int, int, int, int] | None = None


def map_column(path: Path, dtype: str, count: int) -> np.ndarray:
    """The first ``count`` numbers of column ``path``, memory-mapped read-only."""
    size = path.stat().st_size  # (FileNotFoundError for a generation removed meanwhile)
    need = count * np.dtype(dtype).itemsize
    if size < need:
        raise ValueError(f"{path.name} holds {size:,} bytes, fewer than the {need:,} committed")
    if not count:
        return np.zeros(0, dtype)
    # a plain view of the map: np.memmap's own indexing costs ~25 µs a call in Python
    return np.memmap(path, dtype=dtype, mode="r", shape=(count,)).view(np.ndarray)


class Values:
    """The committed rows of one generation's keys and values columns (of ``store``'s snapshot:
    its ids name the vectors an error is about)."""

    def __init__(self, generation: str | None, keys: np.ndarray, values: np.ndarray, store: Store | None = None):
        self.generation = generation
        self.keys = keys
        self.values = values
        self.store = store

    def rows_of(self, keys) -> np.ndarray:
        """The rows of ``keys``; ``MissingValues`` when one is not in the columns."""
        keys = np.asarray(keys, np.int64)
        if not len(keys):
            return np.zeros(0, np.intp)
        pos = np.searchsorted(self.keys, keys)
        found = pos < len(self.keys)
        found[found] = self.keys[pos[found]] == keys[found]
        if not found.all():
            missing = keys[~found]
            raise MissingValues(f"the columns lack the values of {len(missing):,} vector{'s' if len(missing) > 1 else ''} "
                                f"({self._name(int(missing[0]))}{' and more' if len(missing) > 1 else ''}); "
                                "run `vcli check` on this index")
        return pos

    def _name(self, key: int) -> str:
        """The id of the vector of ``key``, as `vcli check` names it (its key when the store cannot
        say: the store is then damaged too)."""
        try:
            rows = self.store.rows_for_keys([key]) if self.store is not None else []
        except sqlite3.Error:
            rows = []
        return f'"{rows[0][1]}"' if rows else f"key {key}"

    def of(self, keys) -> np.ndarray:
        """The float32 values of ``keys`` (which the snapshot holds), one row each, in their order."""
        return np.asarray(self.values[self.rows_of(keys)])

    def present(self, keys) -> np.ndarray:
        """Which of ``keys`` have values (``vcli check``)."""
        keys = np.asarray(keys, np.int64)
        pos = np.minimum(np.searchsorted(self.keys, keys), max(len(self.keys) - 1, 0))
        return self.keys[pos] == keys if len(self.keys) else np.zeros(len(keys), bool)


class _OldValues(Values):
    """A store of an older vcli: the values are its ``vectors.vec`` blobs."""

    def __init__(self, store: Store, dimensions: int):
        super().__init__(None, np.zeros(0, np.int64), np.zeros((0, dimensions), np.float32), store)
        self.dimensions = dimensions

    def _blobs(self, keys) -> tuple[list[int], dict[int, bytes], np.ndarray]:
        keys = [int(k) for k in keys]
        assert self.store is not None
        blobs = self.store.old_blobs(keys)
        size = self.dimensions * 4
        ok = np.array([isinstance(blobs.get(k), bytes) and len(blobs[k]) == size for k in keys], bool)
        return keys, blobs, ok

    def of(self, keys) -> np.ndarray:
        keys, blobs, ok = self._blobs(keys)
        if not ok.all():
            bad = int(np.count_nonzero(~ok))
            first = keys[int(np.flatnonzero(~ok)[0])]
            raise MissingValues(f"the store holds values that are not float32 blobs of its dimensions "
                                f"({self._name(first)}{' and more' if bad > 1 else ''}); run `vcli check` on this index")
        return np.frombuffer(b"".join(blobs[k] for k in keys), "<f4").reshape(len(keys), self.dimensions)

    def present(self, keys) -> np.ndarray:
        return self._blobs(keys)[2]


def open_values(store: Store, dimensions: int) -> Values:
    """The values the store's current snapshot holds (call inside one: ``Store.snapshot``);
    ``FileNotFoundError`` when a compaction has removed its generation since it began,
    ``MissingValues`` when a column is shorter than its committed rows."""
    if store.old_format():
        return _OldValues(store, dimensions)
    generation, rows = store.tail()
    if generation is None:
        return Values(None, np.zeros(0, np.int64), np.zeros((0, dimensions), np.float32), store)
    folder = Folder(store.path.parent)
    try:
        keys = map_column(folder.vector_file(generation, "keys"), "<i8", rows)
        values = map_column(folder.vector_file(generation, "f32"), "<f4", rows * dimensions).reshape(rows, dimensions)
    except ValueError as exc:  # shorter than committed: damaged
        raise MissingValues(f"{exc}; run `vcli check` on this index") from None
    return Values(generation, keys, values, store)


@contextmanager
def reading(store: Store, dimensions: int) -> Iterator[Values]:
    """A store snapshot and the values it holds (a new snapshot when a compaction removed the
    generation of the first one meanwhile)."""
    for attempt in range(RETRIES):
        with store.snapshot():
            try:
                values = open_values(store, dimensions)
            except FileNotFoundError as exc:
                if attempt == RETRIES - 1:
                    raise missing(store, exc) from None
                continue
            yield values
            return


def missing(store: Store, exc: OSError) -> StorageError:
    """The error for columns that stay missing (not replaced by a compaction meanwhile)."""
    return StorageError(f"{store.path.parent}: the columns that hold the vectors' values are missing "
                        f"({exc.strerror}: {Path(exc.filename or '').name}); run `vcli check` on this index")
