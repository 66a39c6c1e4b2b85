"""What ``list-vectors`` pages from: the ids the index held at one mutation, kept in ``listed_gone``
(see ``schema.py``) for the versions that writes removed while a listing may be open.

A write calls ``begin_removals`` once, then ``keep_removed`` for each chunk of ids it removes,
before the rows go; ``ids_at`` reads a page as of one mutation.
"""

from __future__ import annotations

import sqlite3

from .connection import has_table
from .schema import LISTED_GONE_SCHEMA


def begin_removals(conn: sqlite3.Connection, listing_open: bool) -> None:
    """Make ``listed_gone`` when a listing may be open, else empty it (no listing needs it now)."""
    if listing_open:
        if not has_table(conn, "listed_gone"):
            for statement in LISTED_GONE_SCHEMA:
                conn.execute(statement)
    elif has_table(conn, "listed_gone"):
        conn.execute("DELETE FROM listed_gone")


def keep_removed(conn: sqlite3.Connection, seq: int, ids: list[str]) -> None:
    """Keep the live versions of ``ids`` that mutation ``seq`` is about to remove."""
    marks = ",".join("?" * len(ids))
    conn.execute(f"INSERT INTO listed_gone (id, born, died) SELECT id, seq, ? FROM vectors "
                 f"WHERE id IN ({marks})", (seq, *ids))


def ids_at(conn: sqlite3.Connection, count: int, seq: int, after: str | None,
           limit: int) -> tuple[list[str], int]:
    """The first ``limit`` ids after ``after`` among those the index held when mutation ``seq``
    was the last, and how many it held then (``count``: how many it holds now): the live ones
    written at or before ``seq``, and the versions in ``listed_gone`` alive at ``seq`` (a vector's
    versions never overlap, so no id is counted twice)."""
    start = "" if after is None else after
    live = [r[0] for r in conn.execute(
        "SELECT id FROM vectors WHERE id > ? AND seq <= ? ORDER BY id LIMIT ?", (start, seq, limit))]
    # the count now, less what was written since (few rows, on the seq index: no full scan)
    total = count - conn.execute("SELECT COUNT(*) FROM vectors WHERE seq > ?", (seq,)).fetchone()[0]
    if not has_table(conn, "listed_gone"):
        return live, total
    gone = [r[0] for r in conn.execute(
        "SELECT DISTINCT id FROM listed_gone WHERE id > ? AND born <= ? AND died > ? ORDER BY id LIMIT ?",
        (start, seq, seq, limit))]
    total += conn.execute("SELECT COUNT(*) FROM listed_gone WHERE born <= ? AND died > ?",
                          (seq, seq)).fetchone()[0]
    return sorted(set(live) | set(gone))[:limit], total
