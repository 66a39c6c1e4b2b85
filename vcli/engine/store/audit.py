"""The SQL of ``vcli check``: what it reads to judge a store, and the repairs it may make.

Repairs never touch a vector: they rebuild SQLite's indexes, drop inconsistent bookkeeping rows and
move the key counters past every number in use. ``check.py`` decides what is wrong and what to do.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

from .schema import FORMAT, OLD_FORMAT

CHUNK = 8192  # rows per step of the row scan
COUNTERS = ("vectors", "mutations")  # AUTOINCREMENT tables whose numbers must never be reused
_USED = {
    "vectors": "SELECT max(k) FROM (SELECT max(key) AS k FROM vectors UNION ALL SELECT max(key) FROM removed)",
    "mutations": "SELECT max(seq) FROM mutations",
}
_BAD_REMOVED = ("r.added_seq > r.removed_seq "
                "OR NOT EXISTS (SELECT 1 FROM mutations m WHERE m.seq = r.removed_seq) "
                "OR EXISTS (SELECT 1 FROM vectors v WHERE v.key = r.key)")


def integrity_messages(store) -> list[str]:
    """SQLite's ``PRAGMA integrity_check``: ``["ok"]`` for a sound file."""
    return [r[0] for r in store.conn.execute("PRAGMA integrity_check").fetchall()]


def format_problem(store) -> str | None:
    row = store.conn.execute("SELECT v FROM settings WHERE k = 'format'").fetchone()
    if row is None or row[0] not in (FORMAT, OLD_FORMAT):
        return f"the store's format is {row[0] if row else 'missing'}, expected {FORMAT}"
    return None


def row_blocks(store) -> Iterator[list[tuple]]:
    """Every vector row as ``(id, namespace, metadata JSON, key)``, ``CHUNK`` rows at a time."""
    cur = store.conn.execute("SELECT id, namespace, metadata, key FROM vectors")
    while rows := cur.fetchmany(CHUNK):
        yield rows


def orphan_vectors(store) -> int:
    """Vectors written by a mutation the store has no record of."""
    return store.conn.execute(
        "SELECT count(*) FROM vectors v WHERE NOT EXISTS (SELECT 1 FROM mutations m WHERE m.seq = v.seq)"
    ).fetchone()[0]


def repeated_mutation_ids(store) -> int:
    return store.conn.execute("SELECT count(*) - count(DISTINCT uuid) FROM mutations").fetchone()[0]


def inconsistent_removals(store) -> int:
    """Records of removed vectors that cannot be right (removed before added, by no mutation, or
    of a key that is live)."""
    return store.conn.execute(f"SELECT count(*) FROM removed r WHERE {_BAD_REMOVED}").fetchone()[0]


def counter(store, table: str, used_elsewhere: int = 0) -> tuple[int, int]:
    """``(the AUTOINCREMENT counter, the largest number in use)`` of one of ``COUNTERS``;
    ``used_elsewhere``: a number the store no longer shows but a file still uses (a graph part
    covers keys up to its range's end, some of them since deleted and forgotten)."""
    used = max(store.conn.execute(_USED[table]).fetchone()[0] or 0, used_elsewhere)
    row = store.conn.execute("SELECT seq FROM sqlite_sequence WHERE name = ?", (table,)).fetchone()
    return (row[0] if row else 0), used


# -- repairs ------------------------------------------------------------------------------------
def reindex(store) -> str | None:
    """Rebuild every SQLite index from its table; the error's text if that fails."""
    try:
        store.conn.execute("REINDEX")
    except sqlite3.DatabaseError as exc:
        return str(exc)
    return None


def repair_bookkeeping(store, *, removals: bool, counters: dict[str, int]) -> None:
    """Drop inconsistent removal records and move the named counters past every number in use
    (and past the number each is mapped to: ``counter``'s ``used_elsewhere``), in one
    transaction."""
    with store.mutation_free_transaction():
        if removals:
            store.conn.execute(f"DELETE FROM removed WHERE key IN (SELECT r.key FROM removed r WHERE {_BAD_REMOVED})")
        for table, elsewhere in counters.items():
            used = counter(store, table, elsewhere)[1]
            store.conn.execute("DELETE FROM sqlite_sequence WHERE name = ?", (table,))
            store.conn.execute("INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)", (table, used))
