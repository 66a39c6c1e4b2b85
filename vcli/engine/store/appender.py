"""Appending a write's float32 values to the columns, inside the write's own transaction.

A write inserts its rows in ``vectors`` (which hands out their keys, ascending), then appends their
keys and values at the committed end of the current generation's ``keys`` and ``f32`` columns
(``Folder.vector_file``) with ``os.pwrite``, fsyncs both, and records the append in ``appends``
(its rows and CRC-32s) in the same transaction, which then commits. A write killed before its
commit leaves bytes past the committed end: no reader reads them (a reader maps only the rows its
snapshot says are committed) and the next writer writes over them. The first write of an index
creates the generation's four column files (``norms`` and ``gone`` stay empty until a fold:
``matrix.py``), and removes them again if it does not commit.

No NumPy: a one-vector upsert costs about what ``vcli info`` does.
"""

from __future__ import annotations

import os
import sqlite3
import struct
import zlib

from .. import fsutil
from ..layout import VECTOR_COLUMNS, Folder, new_generation


class Appender:
    """The values of one write, appended to the columns from their committed end."""

    def __init__(self, store, seq: int, dimensions: int):
        self.store = store
        self.folder = Folder(store.path.parent)
        self.row_bytes = dimensions * 4
        generation, rows = store.tail()
        self.created = generation is None
        if generation is None:
            generation = new_generation(seq)
            for column in VECTOR_COLUMNS:
                os.close(os.open(self.folder.vector_file(generation, column),
                                 os.O_WRONLY | os.O_CREAT | os.O_EXCL, fsutil.FILE_MODE))
        self.generation, self.start, self.rows = generation, rows, rows
        self.crcs = [0, 0]
        self.fds: list[int] = []
        try:
            for column in ("keys", "f32"):
                self.fds.append(os.open(self.folder.vector_file(generation, column), os.O_WRONLY))
        except BaseException:
            self.close()
            raise

    def add(self, keys: list[int], blobs: bytes) -> None:
        """Rows of ``keys`` (ascending, above every key appended before) with their values."""
        self._write(0, struct.pack(f"<{len(keys)}q", *keys), self.rows * 8)
        self._write(1, blobs, self.rows * self.row_bytes)
        self.rows += len(keys)

    def _write(self, column: int, data: bytes, offset: int) -> None:
        view = memoryview(data)
        while len(view):  # (pwrite may write less than asked)
            done = os.pwrite(self.fds[column], view, offset)
            self.crcs[column] = zlib.crc32(view[:done], self.crcs[column])
            offset += done
            view = view[done:]

    def commit(self) -> None:
        """fsync what was appended and record it (inside the write's transaction, which commits
        after this)."""
        try:
            if self.rows == self.start:
                return
            for fd in self.fds:
                os.fsync(fd)
            if self.created:
                fsutil.fsync_dir(self.folder.path)
            self.store.record_append(self.generation, self.start, self.rows, (self.crcs[0], self.crcs[1]))
        finally:
            self._close_fds()

    def close(self) -> None:
        """Close the columns once the write's transaction has ended: a generation this write
        created that the store does not name (the transaction rolled back, or its COMMIT failed)
        is removed (the writer lock is held: nobody else knows it)."""
        self._close_fds()
        if self.created and not self._named():
            self.created = False
            for column in VECTOR_COLUMNS:
                self.folder.vector_file(self.generation, column).unlink(missing_ok=True)

    def _close_fds(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds = []

    def _named(self) -> bool:
        """Whether the store's committed generation is this one (True when it cannot tell: the
        files are then kept, and a later refresh removes them if they are not the store's)."""
        try:
            return self.store.tail()[0] == self.generation
        except sqlite3.Error:
            return True
