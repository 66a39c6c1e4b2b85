"""Opening a store's SQLite connection, and one clear line for what SQLite says went wrong.

``connect`` sets what every connection needs (busy timeout, WAL for writers, full sync) and, for a
reader, falls back to a read-only or immutable open where the folder cannot be written.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

from ...errors import StorageError

BUSY_TIMEOUT_MS = 30_000


def storage_error(exc: BaseException, path: Path) -> StorageError:
    """One clear line for what SQLite said (``sqlite_errorname`` is set on Python 3.11+)."""
    text = str(exc)
    code = getattr(exc, "sqlite_errorname", "") or ""
    if code.startswith("SQLITE_READONLY") or "readonly" in text:
        text = "the index is read-only (check the permissions of its folder and files)"
    elif code == "SQLITE_FULL" or "disk is full" in text:
        text = "the disk is full (or a file size limit was reached); nothing was written"
    elif code in ("SQLITE_IOERR_WRITE", "SQLITE_IOERR_FSYNC", "SQLITE_IOERR_TRUNCATE"):
        text = (f"could not write to the disk ({text}: is it full, or is a file size limit set?); "
                "nothing was written")
    elif code.startswith("SQLITE_CANTOPEN") or "unable to open" in text:
        text = f"cannot open the store ({text}; check the permissions of the index folder)"
    elif code.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")):
        text = f"the store is damaged ({text}); run `vcli check` on this index"
    return StorageError(f"{path}: {text}")


def connect(path: Path, readonly: bool = False) -> sqlite3.Connection:
    """A connection to the store at ``path``: autocommit (transactions are explicit), usable from
    any thread, waiting up to ``BUSY_TIMEOUT_MS`` for a lock; ``StorageError`` when SQLite refuses."""
    try:
        conn = sqlite3.connect(
            path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
        )
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        # The store is created in WAL mode and stays in it; only a writer sets it again.
        # (Setting it needs write access, so a reader of a read-only folder must not.)
        if not readonly:
            conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA foreign_keys = OFF")
        try:
            conn.execute("PRAGMA synchronous = FULL")
        except sqlite3.DatabaseError:
            if not readonly:
                raise
            # a damaged store: let the reader (e.g. ``vcli check``) find out and say so
        if readonly:
            conn = _readable(conn, path)
    except sqlite3.Error as exc:
        raise storage_error(exc, path) from exc
    return conn


def _readable(conn: sqlite3.Connection, path: Path) -> sqlite3.Connection:
    """A reader's connection that works in a read-only folder too.

    In WAL mode even a reader must create ``-shm`` (and ``-wal``) next to the store; in a folder it
    cannot write to, SQLite then refuses every read. Then: with no ``-wal`` file every committed
    write is in the store file itself, so it is opened ``immutable`` (no locks, no log); with a
    ``-wal`` (and its ``-shm``) present it is opened read-only, reading both."""
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return conn
    except sqlite3.DatabaseError as exc:
        name = getattr(exc, "sqlite_errorname", "") or ""
        if not (name.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN")) or "readonly" in str(exc)):
            return conn  # another problem (a damaged store): the reader finds out and says so
    conn.close()
    wal = path.with_name(path.name + "-wal")
    has_log = wal.exists() and wal.stat().st_size > 0
    uri = path.resolve().as_uri() + ("?mode=ro" if has_log else "?mode=ro&immutable=1")
    conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                           check_same_thread=False)
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.OperationalError as exc:
        conn.close()
        raise StorageError(
            f"{path}: the index folder is read-only and the store's log ({wal.name}) cannot be read "
            f"without write access ({exc}); open the index once where it can be written"
        ) from None
    return conn


def has_table(conn: sqlite3.Connection, name: str) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                        (name,)).fetchone() is not None


def chunks(items: list, size: int) -> Iterator[list]:
    """``items`` in lists of at most ``size`` (SQLite binds a bounded number of parameters)."""
    for i in range(0, len(items), size):
        yield items[i : i + size]
