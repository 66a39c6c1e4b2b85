"""The store: one SQLite database per index, the source of truth (tables: ``schema.py``).

Each write command runs in one transaction (``mutation``) and records one row in ``mutations``; a
reader that runs several statements takes a ``snapshot``. A vector's float32 values are not here
but in the columns (``appender.py`` writes them in the write's transaction, ``columns.py`` of the
engine reads them); SQLite records where the columns' committed rows end (``tail``), so a reader's
snapshot also says which rows it may read. The other modules of this package hold
the connection and its errors (``connection.py``), what ``list-vectors`` pages from
(``listing.py``), the SQL of filters (``filtering.py``) and of ``vcli check`` (``audit.py``); no
SQL lives outside it.

This module imports neither NumPy nor usearch: ``list``, ``info`` and small writes stay fast.
"""

from __future__ import annotations

import os
import sqlite3
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import orjson

from ...errors import Interrupted, StorageError
from .. import fsutil
from ..records import Mutation
from . import listing
from .connection import chunks, connect, has_table, storage_error
from .schema import FORMAT, METADATA_SCHEMA, OLD_FORMAT, PENDING_SCHEMA, SCHEMA

# Row written by insert/upsert: (id, namespace, metadata JSON bytes or None); its values go to the
# columns (``appender.py``)
Row = tuple[str, "str | None", "bytes | None"]

# Rows whose JSON array passes this many bytes a row on average are bound row by row
# (``Store._add_rows``): 5,000 rows of ~10 KB of metadata took 0.70 s of CPU as one JSON array
# and 0.11 s bound row by row, where rows of short metadata take 0.011 s against 0.017 s.
JSON_ROWS_BYTES = 1024


class AlreadyApplied(Exception):
    """A pending write was applied by another process while this one was applying it too."""


class Store:
    def __init__(self, conn: sqlite3.Connection, path: Path):
        self.conn = conn
        self.path = path
        # Set by the index for each write: whether a list-vectors listing may be open, so that the
        # versions the write removes are kept in ``listed_gone`` for it (else that table is emptied).
        self.listing_open = False
        self._has_json: bool | None = None  # whether SQLite has its JSON functions (``_json_rows``)

    # -- opening ---------------------------------------------------------------------------
    @classmethod
    def create(cls, path: Path) -> Store:
        # Create the file owner-only first: SQLite gives its -wal and -shm files the same mode.
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, fsutil.FILE_MODE))
        store = cls.open(path)
        try:
            with store.conn:
                store.conn.executescript(SCHEMA)
                store.conn.execute("INSERT INTO settings VALUES ('format', ?)", (FORMAT,))
        except sqlite3.Error as exc:
            store.close()
            raise storage_error(exc, path) from exc
        return store

    @classmethod
    def open(cls, path: Path, readonly: bool = False) -> Store:
        return cls(connect(path, readonly), path)

    def twin(self) -> Store | None:
        """Another connection to this store, in a read transaction that holds the same mutations
        as this one's open one, so that scans run beside it (SQLite runs each without Python's
        lock, on each connection apart: a batch's filters' conditions, ``masks.BatchMasks``);
        None when that cannot be made sure of. Every write to the vectors and their metadata
        values is a mutation, which takes the next number of ``mutations``' sequence: the twin
        is used only when its last number is this one's. (Housekeeping writes, which are not
        mutations, may differ between the two: the twin is for reading vectors and metadata
        values only.) The caller closes it."""
        if not self.conn.in_transaction:
            return None
        try:
            twin = Store(connect(self.path, readonly=True), self.path)
        except StorageError:  # (SQLite refused a second connection: the caller reads on one)
            return None
        try:
            twin.conn.execute("BEGIN")
            if twin._last_mutation() == self._last_mutation():
                return twin
        except sqlite3.Error:
            pass
        twin.close()
        return None

    def _last_mutation(self) -> tuple | None:
        return self.conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'mutations'").fetchone()

    def close(self) -> None:
        # A Ctrl-C can land where no ``except`` runs (e.g. on entry to a context manager's
        # ``__exit__``): whatever transaction is still open is rolled back here, never committed.
        self._rollback_quietly()
        self.conn.close()

    def _rollback_quietly(self) -> None:
        try:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # rolled back already (e.g. after an I/O error), or closed (which rolls back)

    # -- transactions ----------------------------------------------------------------------
    @contextmanager
    def mutation(self, kind: str, at: str, pending: tuple[int, str] | None = None) -> Iterator[Mutation]:
        """One write command: BEGIN IMMEDIATE, a new mutation row, COMMIT on success, ROLLBACK on any
        exception (including KeyboardInterrupt), so a command's writes land whole or not at all.
        ``pending``: the ``(seq, uuid)`` of the pending write this applies; its row is deleted in
        the same transaction (``AlreadyApplied`` and a rollback if another process got there first)."""
        with self._write_transaction():
            mid = pending[1] if pending else str(uuid.uuid4())
            cur = self.conn.execute(
                "INSERT INTO mutations (uuid, kind, at) VALUES (?, ?, ?)", (mid, kind, at)
            )
            assert cur.lastrowid is not None  # (an INSERT's row id: for the type checker)
            yield Mutation(cur.lastrowid, mid, at)
            if pending and not self.conn.execute("DELETE FROM pending WHERE seq = ?", (pending[0],)).rowcount:
                raise AlreadyApplied()

    @contextmanager
    def _write_transaction(self) -> Iterator[None]:
        """BEGIN IMMEDIATE, COMMIT on success, ROLLBACK on any exception (including
        KeyboardInterrupt); SQLite's errors as the storage error. The one wrapper of every write
        (``mutation``, ``mutation_free_transaction``, ``add_pending``)."""
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise storage_error(exc, self.path) from exc
        committed = False
        try:
            yield
            self.conn.execute("COMMIT")
            committed = True
        except BaseException as exc:
            if not committed:
                self._rollback_quietly()
            if isinstance(exc, sqlite3.Error):
                raise storage_error(exc, self.path) from exc
            if committed and isinstance(exc, KeyboardInterrupt):
                raise Interrupted("interrupted just after the write was saved") from None
            raise

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """A consistent read of several statements (a read transaction in WAL mode). Inside a
        transaction already (a snapshot or a mutation) it simply joins it."""
        if self.conn.in_transaction:
            yield
            return
        self.conn.execute("BEGIN")
        try:
            yield
        finally:
            self._rollback_quietly()  # a read transaction: ending it changes nothing

    # -- writes (inside ``mutation``) ------------------------------------------------------
    def insert_rows(self, seq: int, rows: Sequence[Row]) -> int:
        """Insert rows whose id is new; keep existing ids (and the first of repeated ids)."""
        before = self.conn.total_changes
        self._add_rows("INSERT OR IGNORE", seq, rows)
        return self.conn.total_changes - before

    def upsert_rows(self, seq: int, rows: Sequence[Row]) -> int:
        """Insert rows, replacing whole any existing vector with the same id (the last one wins)."""
        last = {r[0]: r for r in rows}
        self._remove_where_ids(seq, list(last))
        self._add_rows("INSERT", seq, list(last.values()))
        return len(rows)

    def _add_rows(self, verb: str, seq: int, rows: Sequence[Row]) -> None:
        """``rows`` into ``vectors``, in their order. Rows of small metadata go as one statement
        over one JSON array: about half the CPU of binding them row by row (``executemany``), and
        SQLite runs it without taking Python's lock back for each row, which matters beside the
        reading thread (``batches.py``). Rows whose metadata is large (a chunk's text: unescaping
        it from the array costs more than binding it) or that hold a NUL (SQLite's JSON functions
        cut a text there), and SQLite builds without JSON functions, go row by row."""
        payload = orjson.dumps([(vid, ns, None if meta is None else meta.decode()) for vid, ns, meta in rows])
        if len(payload) > JSON_ROWS_BYTES * len(rows) or b"\\u0000" in payload or not self._json_rows():
            self.conn.executemany(f"{verb} INTO vectors (id, namespace, metadata, seq) VALUES (?, ?, ?, ?)",
                                  [(*r, seq) for r in rows])
        else:  # (bound as text: SQLite 3.45.0 reads a blob as its binary JSON)
            self.conn.execute(f"{verb} INTO vectors (id, namespace, metadata, seq) SELECT json_extract(value, '$[0]'), "
                              "json_extract(value, '$[1]'), CAST(json_extract(value, '$[2]') AS BLOB), ? "
                              "FROM json_each(?) ORDER BY key", (seq, payload.decode()))

    def _json_rows(self) -> bool:
        """Whether this SQLite has the JSON functions ``_add_rows`` uses (built in since 3.38, and
        in most builds before: Python's own and the Linux distributions')."""
        if self._has_json is None:
            try:
                self.conn.execute("SELECT json_extract(value, '$[0]') FROM json_each('[[1]]')").fetchall()
                self._has_json = True
            except sqlite3.OperationalError:
                self._has_json = False
        return self._has_json

    def delete_ids(self, seq: int, ids: Sequence[str]) -> int:
        return self._remove_where_ids(seq, list(dict.fromkeys(ids)))

    def _remove_where_ids(self, seq: int, ids: list[str]) -> int:
        removed = 0
        indexed = self.has_metadata_indexes()
        listing.begin_removals(self.conn, self.listing_open)
        for chunk in chunks(ids, 500):
            marks = ",".join("?" * len(chunk))
            if indexed:  # their metadata index values go with them
                self.conn.execute(
                    f"DELETE FROM metadata_values WHERE key IN "
                    f"(SELECT key FROM vectors WHERE id IN ({marks}))",
                    chunk,
                )
            if self.listing_open:
                listing.keep_removed(self.conn, seq, chunk)
            self.conn.execute(
                f"INSERT OR REPLACE INTO removed (key, added_seq, removed_seq) "
                f"SELECT key, seq, ? FROM vectors WHERE id IN ({marks})",
                (seq, *chunk),
            )
            removed += self.conn.execute(f"DELETE FROM vectors WHERE id IN ({marks})", chunk).rowcount
        return removed

    def prune_removed(self, upto_seq: int) -> None:
        """Forget removals that every derived file already reflects, and remember up to where
        (``pruned_upto``): a derived file older than that can no longer be caught up."""
        # One transaction: a reader sees both the mark and the deletion, or neither.
        with self.mutation_free_transaction():
            self.conn.execute(
                "INSERT INTO settings VALUES ('pruned_upto', ?) ON CONFLICT (k) "
                "DO UPDATE SET v = max(v, excluded.v)",
                (upto_seq,),
            )
            self.conn.execute("DELETE FROM removed WHERE removed_seq <= ?", (upto_seq,))

    @contextmanager
    def mutation_free_transaction(self) -> Iterator[None]:
        """A write transaction that is not a user-visible mutation (housekeeping)."""
        with self._write_transaction():
            yield

    def removed_rows(self) -> int:
        """How many removals are remembered (``prune_removed`` forgets them)."""
        return self.conn.execute("SELECT count(*) FROM removed").fetchone()[0]

    def pruned_upto(self) -> int:
        """Removals up to this mutation are forgotten; derived files must be at least this new."""
        row = self.conn.execute("SELECT v FROM settings WHERE k = 'pruned_upto'").fetchone()
        return int(row[0]) if row else 0

    # -- metadata indexes (see filters/) ---------------------------------------------------
    def has_metadata_indexes(self) -> bool:
        return self.conn.execute("SELECT 1 FROM metadata_indexes LIMIT 1").fetchone() is not None

    def metadata_indexes(self) -> list[tuple[str, str, int]]:
        """``(property, type, seq)`` of each metadata index, oldest first."""
        return self.conn.execute("SELECT property, type, seq FROM metadata_indexes ORDER BY seq").fetchall()

    def add_metadata_index(self, seq: int, prop: str, kind: str) -> None:
        for statement in METADATA_SCHEMA:  # stores made before metadata_values existed
            self.conn.execute(statement)
        self.conn.execute("INSERT INTO metadata_indexes (property, type, seq) VALUES (?, ?, ?)",
                          (prop, kind, seq))

    def drop_metadata_index(self, prop: str) -> None:
        row = self.conn.execute("SELECT seq FROM metadata_indexes WHERE property = ?", (prop,)).fetchone()
        if row is not None:
            self.conn.execute("DELETE FROM metadata_values WHERE slot = ?", (row[0],))
            self.conn.execute("DELETE FROM metadata_indexes WHERE property = ?", (prop,))

    def add_metadata_values(self, rows: Sequence[tuple]) -> None:
        """``(slot, value, key)`` rows for vectors just written."""
        self.conn.executemany(
            "INSERT OR IGNORE INTO metadata_values (slot, value, key) VALUES (?, ?, ?)", rows
        )

    def metadata_values_for(self, keys: Iterable[int]) -> list[tuple[int, str, str, object]]:
        """``(key, property, type, value)`` indexed for these vectors."""
        out: list[tuple] = []
        for chunk in chunks([int(k) for k in keys], 500):
            marks = ",".join("?" * len(chunk))
            out += self.conn.execute(
                f"SELECT m.key, i.property, i.type, m.value FROM metadata_values m "
                f"JOIN metadata_indexes i ON i.seq = m.slot WHERE m.key IN ({marks}) ORDER BY i.seq",
                chunk,
            ).fetchall()
        return out

    def max_key(self) -> int:
        """A key at least as large as any key used so far (new rows get larger ones)."""
        row = self.conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'vectors'").fetchone()
        top = self.conn.execute("SELECT max(key) FROM vectors").fetchone()[0]
        return max(row[0] if row else 0, top or 0)

    def ids_above(self, key: int) -> list[tuple[int, str]]:
        """``(key, id)`` of the rows with a key above ``key`` (those written since it was read)."""
        return self.conn.execute("SELECT key, id FROM vectors WHERE key > ? ORDER BY key", (key,)).fetchall()

    def metadata_json(self) -> Iterator[bytes]:
        """The metadata of every vector that has some."""
        for (meta,) in self.conn.execute("SELECT metadata FROM vectors WHERE metadata IS NOT NULL"):
            yield meta

    # -- writes acknowledged but not applied yet (schema.py, ``pending``) --------------------
    def add_pending(self, mid: str, kind: str, delay: float, payload: bytes) -> float:
        """Keep a write to apply ``delay`` seconds from now, and never before one kept earlier
        (writes apply in the order acknowledged); durable when this returns. Its due time."""
        with self._write_transaction():
            self.conn.execute(PENDING_SCHEMA)
            last = self.conn.execute("SELECT max(due) FROM pending").fetchone()[0]
            due = max(time.time() + delay, last or 0.0)
            self.conn.execute("INSERT INTO pending (uuid, kind, due, payload) VALUES (?, ?, ?, ?)",
                              (mid, kind, due, payload))
        return due

    def pending(self, due_by: float | None = None) -> list[tuple[int, str, str, float, bytes]]:
        """``(seq, uuid, kind, due, payload)`` of the pending writes (due by ``due_by``), in order."""
        if not has_table(self.conn, "pending"):
            return []
        return self.conn.execute(
            "SELECT seq, uuid, kind, due, payload FROM pending WHERE due <= ? ORDER BY seq",
            (float("inf") if due_by is None else due_by,)).fetchall()

    def next_due(self) -> float | None:
        if not has_table(self.conn, "pending"):
            return None
        return self.conn.execute("SELECT min(due) FROM pending").fetchone()[0]

    # -- reads -----------------------------------------------------------------------------
    def has_namespace(self, namespace: str) -> bool:
        return self.conn.execute("SELECT 1 FROM vectors WHERE namespace = ? LIMIT 1", (namespace,)).fetchone() is not None

    def namespace_count(self) -> int:
        return self.conn.execute(
            "SELECT COUNT(DISTINCT namespace) FROM vectors WHERE namespace IS NOT NULL").fetchone()[0]

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

    def get_rows(self, ids: Sequence[str]) -> dict[str, tuple[int, str | None, bytes | None]]:
        """``id -> (key, namespace, metadata JSON)`` for the ids that exist."""
        out = {}
        with self.snapshot():  # several statements must see one committed state
            for chunk in chunks(list(dict.fromkeys(ids)), 500):
                marks = ",".join("?" * len(chunk))
                for row in self.conn.execute(
                    f"SELECT id, key, namespace, metadata FROM vectors WHERE id IN ({marks})", chunk
                ):
                    out[row[0]] = row[1:]
        return out

    def rows_for_keys(self, keys: Iterable[int]) -> list[tuple[int, str, str | None, bytes | None]]:
        """``(key, id, namespace, metadata JSON)`` of the vectors with these keys that exist."""
        return self._by_keys("key, id, namespace, metadata", keys)

    def _by_keys(self, columns: str, keys: Iterable[int]) -> list[tuple]:
        rows: list[tuple] = []
        for chunk in chunks([int(k) for k in keys], 500):
            marks = ",".join("?" * len(chunk))
            rows += self.conn.execute(f"SELECT {columns} FROM vectors WHERE key IN ({marks})", chunk).fetchall()
        return rows

    def ids_at(self, seq: int, after: str | None, limit: int) -> tuple[list[str], int]:
        """The first ``limit`` ids after ``after`` among those the index held when mutation ``seq``
        was the last, and how many it held then (``listing.ids_at``)."""
        return listing.ids_at(self.conn, self.count(), seq, after, limit)

    def ids_after(self, after: str | None, limit: int) -> list[str]:
        if after is None:
            cur = self.conn.execute("SELECT id FROM vectors ORDER BY id LIMIT ?", (limit,))
        else:
            cur = self.conn.execute(
                "SELECT id FROM vectors WHERE id > ? ORDER BY id LIMIT ?", (after, limit)
            )
        return [r[0] for r in cur]

    def keys(self, upto_seq: int | None = None) -> sqlite3.Cursor:
        """A cursor over ``(key,)`` of every vector (or of those written at or before ``upto_seq``),
        ascending; read it with ``fetchmany``."""
        if upto_seq is not None:
            return self.conn.execute("SELECT key FROM vectors WHERE seq <= ? ORDER BY key", (upto_seq,))
        return self.conn.execute("SELECT key FROM vectors ORDER BY key")

    def export_rows(self, namespace: str | None = None) -> sqlite3.Cursor:
        """A cursor over ``(id, namespace, metadata JSON, key)`` of every vector (or of one
        namespace's) in key order, i.e. the order they were written; read it with ``fetchmany``."""
        if namespace is None:
            return self.conn.execute("SELECT id, namespace, metadata, key FROM vectors ORDER BY key")
        return self.conn.execute(
            "SELECT id, namespace, metadata, key FROM vectors WHERE namespace = ? ORDER BY key",
            (namespace,),
        )

    def count_since(self, seq: int) -> tuple[int, int]:
        """(rows written after ``seq``, rows removed after ``seq`` that existed at ``seq``)."""
        added = self.conn.execute("SELECT count(*) FROM vectors WHERE seq > ?", (seq,)).fetchone()[0]
        removed = self.conn.execute(
            "SELECT count(*) FROM removed WHERE removed_seq > ? AND added_seq <= ?", (seq, seq)
        ).fetchone()[0]
        return added, removed

    def count_at(self, seq: int) -> int:
        """How many vectors were live just after mutation ``seq``."""
        # All rows minus those written since: counting a range of the seq index is much slower
        # than counting the whole of it, and the rows since are few.
        added, removed = self.count_since(seq)
        return self.count() - added + removed

    def removed_since(self, seq: int) -> list[int]:
        """Keys that existed at ``seq`` and are gone now."""
        return [
            r[0]
            for r in self.conn.execute(
                "SELECT key FROM removed WHERE removed_seq > ? AND added_seq <= ?", (seq, seq)
            )
        ]

    # -- what a search file must agree with (searchfiles.py) --------------------------------
    def key_range(self) -> tuple[int | None, int | None]:
        """The smallest and largest live key."""
        # (Two subqueries: SQLite answers min() or max() alone from the rowid b-tree, but scans the
        # whole table for both in one SELECT.)
        return self.conn.execute(
            "SELECT (SELECT min(key) FROM vectors), (SELECT max(key) FROM vectors)").fetchone()

    def first_key_from(self, key: int, upto_seq: int) -> int | None:
        """The first key at or after ``key`` of a vector written by ``upto_seq``."""
        row = self.conn.execute(
            "SELECT key FROM vectors WHERE key >= ? AND seq <= ? ORDER BY key LIMIT 1",
            (int(key), upto_seq),
        ).fetchone()
        return None if row is None else row[0]

    def written_for_keys(self, keys: Sequence[int]) -> dict[int, int]:
        """``key -> seq that wrote it`` for the live vectors among ``keys``."""
        return dict(self._by_keys("key, seq", keys))

    def removed_since_among(self, keys: Sequence[int], seq: int) -> set[int]:
        """Those of ``keys`` that were live at ``seq`` and are gone now."""
        marks = ",".join("?" * len(keys))
        return {r[0] for r in self.conn.execute(
            f"SELECT key FROM removed WHERE key IN ({marks}) AND added_seq <= ? AND removed_seq > ?",
            (*map(int, keys), seq, seq))}

    def keys_at(self, seq: int) -> Iterator[int]:
        """Every key that was live just after mutation ``seq``, ascending."""
        for (key,) in self.conn.execute(
            "SELECT key FROM vectors WHERE seq <= ? UNION "
            "SELECT key FROM removed WHERE added_seq <= ? AND removed_seq > ? ORDER BY 1", (seq, seq, seq)
        ):
            yield key

    def keys_since(self, seq: int) -> list[int]:
        """The keys of the vectors written after mutation ``seq`` (a search file's delta), ascending."""
        return [r[0] for r in self.conn.execute("SELECT key FROM vectors WHERE seq > ? ORDER BY key", (seq,))]

    def removed_keys_since(self, seq: int) -> list[int]:
        """Keys removed after mutation ``seq``, whenever they were written (the columns hold them
        all: a fold's new tombstones)."""
        return [r[0] for r in self.conn.execute("SELECT key FROM removed WHERE removed_seq > ?", (seq,))]

    # -- the columns' committed rows (``appends``; ``appender.py`` and engine/columns.py) ------
    def format(self) -> int:
        row = self.conn.execute("SELECT v FROM settings WHERE k = 'format'").fetchone()
        return FORMAT if row is None else row[0]

    def newer_format(self) -> int | None:
        """The store's format when a newer vcli wrote it (this one would misread it), else None;
        None too when it cannot be read (``vcli check`` says why)."""
        try:
            found = self.format()
        except sqlite3.Error:
            return None
        return found if isinstance(found, int) and found > FORMAT else None

    def old_format(self) -> bool:
        """Whether the values are still blobs in ``vectors.vec`` (a store of an older vcli, not
        migrated yet: ``migrate.py``)."""
        return self.format() == OLD_FORMAT

    def tail(self) -> tuple[str | None, int]:
        """``(generation, committed rows)`` of the columns; ``(None, 0)`` before the first write."""
        found = dict(self.conn.execute("SELECT k, v FROM settings WHERE k IN ('generation', 'rows')").fetchall())
        return found.get("generation"), int(found.get("rows", 0))

    def record_append(self, generation: str, start: int, end: int, crcs: tuple[int, int], *,
                      replace: bool = False) -> None:
        """Inside a write transaction: rows ``start..end`` of ``generation``'s columns are
        committed, with these CRC-32 of their keys and values; the columns' end moves there.
        ``replace``: a new generation replaces the old one (whose records are dropped)."""
        if replace:
            self.conn.execute("DELETE FROM appends")
            self.conn.execute("DELETE FROM settings WHERE k = 'refused_append'")
        self.conn.execute("INSERT INTO appends VALUES (?, ?, ?, ?, ?)", (generation, start, end, *crcs))
        self.conn.executemany("INSERT INTO settings VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v",
                              [("generation", generation), ("rows", end)])

    def merge_appends(self, generation: str, start: int, end: int, crcs: tuple[int, int]) -> None:
        """Replace the records of the appends to rows ``start..end`` of ``generation`` by one with
        these CRC-32s (a fold that has checked each against its bytes: ``matrix._add_norms``)."""
        with self.mutation_free_transaction():
            self.conn.execute('DELETE FROM appends WHERE gen = ? AND start >= ? AND "end" <= ?',
                              (generation, start, end))
            self.conn.execute("INSERT INTO appends VALUES (?, ?, ?, ?, ?)", (generation, start, end, *crcs))

    def refused_append(self) -> tuple[str, int, int, int, int, int] | None:
        """The damaged append a compaction last refused to copy: ``(generation, start, end, first
        key, last key, vectors then live with keys in that range)``, or None (``record_refusal``)."""
        row = self.conn.execute("SELECT v FROM settings WHERE k = 'refused_append'").fetchone()
        if row is None:
            return None
        try:
            gen, start, end, lo, hi, live = str(row[0]).split()
            return gen, int(start), int(end), int(lo), int(hi), int(live)
        except ValueError:  # (not written by this vcli: as if nothing had been refused)
            return None

    def live_between(self, lo: int, hi: int) -> int:
        """How many vectors have a key in ``lo..hi`` (an append's keys: they ascend)."""
        return self.conn.execute("SELECT count(*) FROM vectors WHERE key BETWEEN ? AND ?", (lo, hi)).fetchone()[0]

    def record_refusal(self, refused: tuple[str, int, int, int, int]) -> None:
        """Remember that a compaction refused the append ``(generation, start, end, first key, last
        key)`` as damaged, with how many of its vectors are live now: it is not tried again while
        that count and the generation stay as they are (a compaction that commits forgets it:
        ``record_append``)."""
        with self.mutation_free_transaction():
            gen, start, end, lo, hi = refused
            state = f"{gen} {start} {end} {lo} {hi} {self.live_between(lo, hi)}"
            self.conn.execute("INSERT INTO settings VALUES ('refused_append', ?) "
                              "ON CONFLICT (k) DO UPDATE SET v = excluded.v", (state,))

    def forget_refusal(self) -> None:
        """Forget a refused compaction (``vcli check --repair``, once the values are sound again)."""
        with self.mutation_free_transaction():
            self.conn.execute("DELETE FROM settings WHERE k = 'refused_append'")

    def appends(self, generation: str) -> list[tuple[int, int, int, int]]:
        """``(start, end, crc of keys, crc of values)`` of each committed append, in order."""
        return self.conn.execute('SELECT start, "end", crc_keys, crc_values FROM appends WHERE gen = ? '
                                 "ORDER BY start", (generation,)).fetchall()

    def old_blobs(self, keys: Iterable[int]) -> dict[int, bytes]:
        """``key -> float32 blob`` in a store of the old format (``old_format``)."""
        return dict(self._by_keys("key, vec", keys))

