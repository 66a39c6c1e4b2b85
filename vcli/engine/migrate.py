"""Moving the values of a store of an older vcli (format 1: a ``vec`` blob in each ``vectors``
row) into the columns, once, in place.

Run by the first writer of such an index (``VectorIndex._mutation``, ``SearchFiles.refresh``)
with the writer lock held. Until then, and in a folder that cannot be written, readers read the
blobs as they are (``columns._OldValues``). Safe at any point of a kill:

1. The blobs are copied, in key order, into the keys and values columns of a new generation,
   which are fsynced (with the folder) and then read back and compared with the CRC-32 of what
   was written. A blob that is not ``dimensions`` float32 numbers (damage) is not copied: its
   vector is left without values, which ``vcli check`` reports (the user deletes it or upserts
   it again) rather than every later write failing. Killed here: the store is untouched; the
   files are another generation's, which the next refresh removes; any other failure removes
   them at once (the writer lock is held) and is one ``StorageError``.
2. One transaction copies ``vectors`` into a table without ``vec`` (keeping every key and the key
   counter), records the generation and its committed rows (``appends``) and sets the format.
   Killed before its commit: nothing changed; after it: the migration is done.
3. ``VACUUM`` then gives the blobs' pages back to the file system (best effort: a busy store keeps
   its free pages, which later writes reuse).
"""

from __future__ import annotations

import os
import sqlite3
import zlib

import numpy as np

from ..errors import StorageError
from . import fsutil
from .layout import VECTOR_COLUMNS, Folder, new_generation
from .store import Store
from .store.schema import FORMAT, VECTOR_INDEXES

CHUNK = 8192

_NEW_TABLE = """CREATE TABLE vectors_new (
    key INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    namespace TEXT,
    metadata BLOB,
    seq INTEGER NOT NULL
)"""


def migrate(store: Store, folder: Folder, dimensions: int) -> None:
    """Move the values out of a format-1 store (see the module's docstring); nothing to do when
    another process did it first."""
    if not store.old_format():
        return
    generation = new_generation(store.last_seq())
    try:
        _move(store, folder, generation, dimensions)
    except BaseException:
        try:
            undone = store.old_format()  # (not committed: nobody else knows the generation)
        except sqlite3.Error:
            undone = False  # (then the next refresh removes them, if they are not the store's)
        if undone:
            for column in VECTOR_COLUMNS:
                folder.vector_file(generation, column).unlink(missing_ok=True)
        raise
    try:
        store.conn.execute("VACUUM")
        store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    except sqlite3.Error:
        pass


def _move(store: Store, folder: Folder, generation: str, dimensions: int) -> None:
    """Steps 1 and 2 of the module's docstring."""
    try:
        rows, seen, crcs = _copy_values(store, folder, generation, dimensions)
    except OSError as exc:
        raise StorageError(f"{folder.path}: could not move the vectors' values out of the store of an "
                           f"older vcli ({exc.strerror or exc}); the store was left as it was") from None
    _check_written(folder, generation, rows, crcs, dimensions)
    with store.mutation_free_transaction():
        if not store.old_format() or store.count() != seen:
            raise StorageError(f"{store.path}: the store changed while its values were moved; try again")
        top = store.max_key()  # (the key counter: keys are never handed out twice)
        store.conn.execute(_NEW_TABLE)
        store.conn.execute("INSERT INTO vectors_new (key, id, namespace, metadata, seq) "
                           "SELECT key, id, namespace, metadata, seq FROM vectors ORDER BY key")
        store.conn.execute("DROP TABLE vectors")
        store.conn.execute("ALTER TABLE vectors_new RENAME TO vectors")
        store.conn.execute("DELETE FROM sqlite_sequence WHERE name IN ('vectors', 'vectors_new')")
        store.conn.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('vectors', ?)",
                           (top,))
        for statement in VECTOR_INDEXES.split(";"):
            if statement.strip():
                store.conn.execute(statement)
        store.record_append(generation, 0, rows, crcs, replace=True)
        store.conn.execute("UPDATE settings SET v = ? WHERE k = 'format'", (FORMAT,))


def _copy_values(store: Store, folder: Folder, generation: str, dimensions: int) -> tuple[int, int, tuple[int, int]]:
    """Write every blob that is ``dimensions`` float32 numbers, in key order, to a new
    generation's columns; the rows written, the store's rows seen and the CRC-32s."""
    fds = [os.open(folder.vector_file(generation, c), os.O_WRONLY | os.O_CREAT | os.O_EXCL, fsutil.FILE_MODE)
           for c in VECTOR_COLUMNS]
    crcs = [0, 0]
    rows = seen = 0
    size = dimensions * 4
    try:
        with store.snapshot():
            cur = store.conn.execute("SELECT key, vec FROM vectors ORDER BY key")
            while block := cur.fetchmany(CHUNK):
                seen += len(block)
                block = [(k, v) for k, v in block if isinstance(v, bytes) and len(v) == size]
                if not block:
                    continue
                keys = np.fromiter((k for k, _v in block), np.int64, len(block)).astype("<i8").tobytes()
                values = b"".join(v for _k, v in block)
                for i, (fd, data) in enumerate(((fds[0], keys), (fds[2], values))):
                    view, at = memoryview(data), rows * (8 if i == 0 else size)
                    while len(view):  # (pwrite may write less than asked)
                        done = os.pwrite(fd, view, at)
                        view, at = view[done:], at + done
                    crcs[i] = zlib.crc32(data, crcs[i])
                rows += len(block)
        for fd in fds:
            os.fsync(fd)
        fsutil.fsync_dir(folder.path)
    finally:
        for fd in fds:
            os.close(fd)
    return rows, seen, (crcs[0], crcs[1])


def _check_written(folder: Folder, generation: str, rows: int, crcs: tuple[int, int], dimensions: int) -> None:
    """The columns read back hold what was written (before the blobs may go)."""
    for column, size, crc in (("keys", 8, crcs[0]), ("f32", dimensions * 4, crcs[1])):
        path = folder.vector_file(generation, column)
        found = 0
        with open(path, "rb") as f:
            while data := f.read(1 << 24):
                found = zlib.crc32(data, found)
        if path.stat().st_size != rows * size or found != crc:
            raise StorageError(f"{path}: does not read back as written; the store was left as it was")
