"""The store: one SQLite database per index, the source of truth.

Every vector is a row with an integer ``key`` (AUTOINCREMENT, so never reused; it is also the
usearch key), its string ``id``, namespace, metadata as compact JSON, its values as a float32
little-endian blob, and ``seq``: the mutation that wrote it. A vector that is deleted or replaced
leaves a row in ``removed`` so that derived files (matrix, graph) built before can catch up.
Each write command runs in one transaction and records one row in ``mutations``.

This module imports neither NumPy nor usearch: ``list``, ``info`` and small writes stay fast.
"""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from ..errors import StorageError
from . import fsutil
from .records import Mutation

SCHEMA = """
CREATE TABLE IF NOT EXISTS settings (k TEXT PRIMARY KEY, v) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS mutations (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    uuid TEXT NOT NULL,
    kind TEXT NOT NULL,
    at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS vectors (
    key INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    namespace TEXT,
    metadata BLOB,
    vec BLOB NOT NULL,
    seq INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS vectors_seq ON vectors (seq);
CREATE INDEX IF NOT EXISTS vectors_namespace ON vectors (namespace) WHERE namespace IS NOT NULL;
CREATE TABLE IF NOT EXISTS removed (
    key INTEGER PRIMARY KEY,
    added_seq INTEGER NOT NULL,
    removed_seq INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS removed_seq ON removed (removed_seq);
CREATE TABLE IF NOT EXISTS metadata_indexes (
    property TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    seq INTEGER NOT NULL
);
"""

# Row written by insert/upsert: (id, namespace, metadata JSON bytes or None, float32 blob)
Row = tuple[str, "str | None", "bytes | None", bytes]

BUSY_TIMEOUT_MS = 30_000


def _storage_error(exc: BaseException, path: Path) -> StorageError:
    text = str(exc)
    if isinstance(exc, sqlite3.OperationalError) and "readonly" in text:
        text = "the index is read-only (check the permissions of its folder)"
    elif "disk is full" in text or "database or disk is full" in text:
        text = "the disk is full"
    return StorageError(f"{path}: {text}")


class Store:
    def __init__(self, conn: sqlite3.Connection, path: Path):
        self.conn = conn
        self.path = path

    # -- opening ---------------------------------------------------------------------------
    @classmethod
    def create(cls, path: Path) -> Store:
        # Create the file owner-only first: SQLite gives its -wal and -shm files the same mode.
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, fsutil.FILE_MODE))
        store = cls.open(path)
        with store.conn:
            store.conn.executescript(SCHEMA)
            store.conn.execute("INSERT INTO settings VALUES ('format', 1)")
        return store

    @classmethod
    def open(cls, path: Path, readonly: bool = False) -> Store:
        try:
            conn = sqlite3.connect(
                path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
            )
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            if not readonly:
                conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = OFF")
        except sqlite3.Error as exc:
            raise _storage_error(exc, path) from exc
        return cls(conn, path)

    def close(self) -> None:
        self.conn.close()

    # -- transactions ----------------------------------------------------------------------
    @contextmanager
    def mutation(self, kind: str, at: str) -> Iterator[Mutation]:
        """One write command: BEGIN IMMEDIATE, a new mutation row, COMMIT on success, ROLLBACK on any
        exception (including KeyboardInterrupt), so a command's writes land whole or not at all."""
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise _storage_error(exc, self.path) from exc
        try:
            mid = str(uuid.uuid4())
            cur = self.conn.execute(
                "INSERT INTO mutations (uuid, kind, at) VALUES (?, ?, ?)", (mid, kind, at)
            )
            yield Mutation(cur.lastrowid, mid, at)
            self.conn.execute("COMMIT")
        except BaseException as exc:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise _storage_error(exc, self.path) from exc
            raise

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """A consistent read of several statements (a read transaction in WAL mode)."""
        self.conn.execute("BEGIN")
        try:
            yield
        finally:
            self.conn.execute("COMMIT")

    # -- writes (inside ``mutation``) ------------------------------------------------------
    def insert_rows(self, seq: int, rows: Sequence[Row]) -> int:
        """Insert rows whose id is new; keep existing ids (and the first of repeated ids)."""
        before = self.conn.total_changes
        self.conn.executemany(
            "INSERT OR IGNORE INTO vectors (id, namespace, metadata, vec, seq) VALUES (?, ?, ?, ?, ?)",
            [(*r, seq) for r in rows],
        )
        return self.conn.total_changes - before

    def upsert_rows(self, seq: int, rows: Sequence[Row]) -> int:
        """Insert rows, replacing whole any existing vector with the same id (the last one wins)."""
        last = {r[0]: r for r in rows}
        self._remove_where_ids(seq, list(last))
        self.conn.executemany(
            "INSERT INTO vectors (id, namespace, metadata, vec, seq) VALUES (?, ?, ?, ?, ?)",
            [(*r, seq) for r in last.values()],
        )
        return len(rows)

    def delete_ids(self, seq: int, ids: Sequence[str]) -> int:
        return self._remove_where_ids(seq, list(dict.fromkeys(ids)))

    def _remove_where_ids(self, seq: int, ids: list[str]) -> int:
        removed = 0
        for chunk in _chunks(ids, 500):
            marks = ",".join("?" * len(chunk))
            self.conn.execute(
                f"INSERT OR REPLACE INTO removed (key, added_seq, removed_seq) "
                f"SELECT key, seq, ? FROM vectors WHERE id IN ({marks})",
                (seq, *chunk),
            )
            removed += self.conn.execute(f"DELETE FROM vectors WHERE id IN ({marks})", chunk).rowcount
        return removed

    def prune_removed(self, upto_seq: int) -> None:
        """Forget removals that every derived file already reflects."""
        with self.conn:
            self.conn.execute("DELETE FROM removed WHERE removed_seq <= ?", (upto_seq,))

    # -- reads -----------------------------------------------------------------------------
    def count(self) -> int:
        return self.conn.execute("SELECT count(*) FROM vectors").fetchone()[0]

    def last_mutation(self) -> Mutation | None:
        row = self.conn.execute(
            "SELECT seq, uuid, at FROM mutations ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        return Mutation(*row) if row else None

    def last_seq(self) -> int:
        row = self.conn.execute("SELECT max(seq) FROM mutations").fetchone()
        return row[0] or 0

    def get_rows(self, ids: Sequence[str]) -> dict[str, tuple[int, str | None, bytes | None, bytes]]:
        """``id -> (key, namespace, metadata JSON, blob)`` for the ids that exist."""
        out = {}
        for chunk in _chunks(list(dict.fromkeys(ids)), 500):
            marks = ",".join("?" * len(chunk))
            for row in self.conn.execute(
                f"SELECT id, key, namespace, metadata, vec FROM vectors WHERE id IN ({marks})", chunk
            ):
                out[row[0]] = row[1:]
        return out

    def rows_for_keys(
        self, keys: Iterable[int], columns: str = "key, id, namespace, metadata, vec"
    ) -> list[tuple]:
        rows: list[tuple] = []
        for chunk in _chunks([int(k) for k in keys], 500):
            marks = ",".join("?" * len(chunk))
            rows += self.conn.execute(
                f"SELECT {columns} FROM vectors WHERE key IN ({marks})", chunk
            ).fetchall()
        return rows

    def ids_after(self, after: str | None, limit: int) -> list[str]:
        if after is None:
            cur = self.conn.execute("SELECT id FROM vectors ORDER BY id LIMIT ?", (limit,))
        else:
            cur = self.conn.execute(
                "SELECT id FROM vectors WHERE id > ? ORDER BY id LIMIT ?", (after, limit)
            )
        return [r[0] for r in cur]

    def iter_vectors(self, where: str = "", params: Sequence = ()) -> Iterator[tuple[int, bytes]]:
        """``(key, blob)`` in key order, optionally restricted by a WHERE clause."""
        yield from self.conn.execute(f"SELECT key, vec FROM vectors {where} ORDER BY key", params)

    def count_since(self, seq: int) -> tuple[int, int]:
        """(rows written after ``seq``, rows removed after ``seq`` that existed at ``seq``)."""
        added = self.conn.execute("SELECT count(*) FROM vectors WHERE seq > ?", (seq,)).fetchone()[0]
        removed = self.conn.execute(
            "SELECT count(*) FROM removed WHERE removed_seq > ? AND added_seq <= ?", (seq, seq)
        ).fetchone()[0]
        return added, removed

    def count_at(self, seq: int) -> int:
        """How many vectors were live just after mutation ``seq``."""
        live = self.conn.execute("SELECT count(*) FROM vectors WHERE seq <= ?", (seq,)).fetchone()[0]
        return live + self.count_since(seq)[1]

    def removed_since(self, seq: int) -> list[int]:
        """Keys that existed at ``seq`` and are gone now."""
        return [
            r[0]
            for r in self.conn.execute(
                "SELECT key FROM removed WHERE removed_seq > ? AND added_seq <= ?", (seq, seq)
            )
        ]

    def integrity_errors(self) -> list[str]:
        rows = self.conn.execute("PRAGMA integrity_check").fetchall()
        return [r[0] for r in rows if r[0] != "ok"]


def _chunks(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
