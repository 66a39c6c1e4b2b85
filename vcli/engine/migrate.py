"""Moving the values of a store of an older vcli (format 1: a ``vec`` blob in each ``vectors``
row) into the columns, once, in place.

Run by the first writer of such an index (``VectorIndex._mutation``, ``SearchFiles.refresh``)
with the writer lock held. Until then, and in a folder that cannot be written, readers read the
blobs as they are (``columns._OldValues``). Safe at any point of a kill:

1. The blobs are copied, in key order, into the keys and values columns of a new generation,
   which are fsynced (with the folder) and then read back and compared with the CRC-32 of what
   was written. Killed here: the store is untouched; the files are another generation's, which
   the next refresh removes.
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
        rows, crcs = _copy_values(store, folder, generation, dimensions)
        _check_written(folder, generation, rows, crcs, dimensions)
    except BaseException:
        for column in VECTOR_COLUMNS:  # (a SIGKILL leaves them to the next refresh instead)
            folder.vector_file(generation, column).unlink(missing_ok=True)
        raise
    with store.mutation_free_transaction():
        if not store.old_format() or store.count() != rows:
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
    try:
        store.conn.execute("VACUUM")
        store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    except sqlite3.Error:
        pass


def _copy_values(store: Store, folder: Folder, generation: str, dimensions: int) -> tuple[int, tuple[int, int]]:
    """Write every blob, in key order, to a new generation's columns; its rows and CRC-32s."""
    fds = [os.open(folder.vector_file(generation, c), os.O_WRONLY | os.O_CREAT | os.O_EXCL, fsutil.FILE_MODE)
           for c in VECTOR_COLUMNS]
    crcs = [0, 0]
    rows = 0
    size = dimensions * 4
    try:
        with store.snapshot():
            cur = store.conn.execute("SELECT key, vec FROM vectors ORDER BY key")
            while block := cur.fetchmany(CHUNK):
                if any(not isinstance(v, bytes) or len(v) != size for _k, v in block):
                    raise StorageError(f"{store.path}: the store holds values that are not float32 blobs "
                                       "of its dimensions, so they cannot be moved to the columns; run "
                                       "`vcli check` on this index")
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
    return rows, (crcs[0], crcs[1])


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
