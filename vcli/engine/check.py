"""``vcli check``: verify one index, and with ``repair=True`` fix what can be fixed.

What is checked:

* **The store** (the truth): SQLite's own ``PRAGMA integrity_check``; every vector's values are a
  float32 blob of ``dimensions * 4`` bytes holding finite numbers; ids and namespaces are 1..64
  bytes; metadata is a JSON object; every row was written by a recorded mutation; the bookkeeping of
  removed rows is consistent; the integer keys can never be handed out twice.
* **The search files** (derived): no temporary files left by a killed refresh, no superseded files;
  the newest matrix or graph file opens, is not newer than the store (a file from another index)
  nor too old to catch up, holds exactly the keys the store had at its mutation, with the same
  values (all of them for a matrix, a sample for a graph); it is not far behind the store.

Repair never touches a vector: it rebuilds SQLite's indexes (``REINDEX``), drops inconsistent
bookkeeping rows, moves the key counter past every key used, deletes temporary and superseded files
and rebuilds the search file from the store. Damaged vectors are reported, not deleted; what to do
with them is the user's call (upsert them again, or delete them).

The check holds the writer lock (waiting like a writer), so it never mistakes a running writer's
temporary file for a leftover. When the lock cannot be opened (a read-only folder) it checks
without it and cannot repair.
"""

from __future__ import annotations

import sqlite3
from contextlib import ExitStack
from dataclasses import dataclass, field

import numpy as np
import orjson

from ..errors import LockTimeout, StorageError
from . import search
from .lock import writer_lock

MAX_EXAMPLES = 5  # ids named in one problem
VALUE_SAMPLE = 2000  # graph vectors compared with the store
CHUNK = 8192
MAX_ID_BYTES = 64

# Exit codes of ``vcli check`` (also documented in its help)
EXIT_HEALTHY = 0
EXIT_PROBLEMS = 1
EXIT_REPAIRED = 3


@dataclass
class Problem:
    """One thing wrong. ``code`` is stable (for scripts); ``text`` is for people."""

    area: str  # "store" or "search files"
    code: str
    text: str
    repairable: bool
    repaired: bool = False

    def to_json(self) -> dict:
        return {"area": self.area, "code": self.code, "problem": self.text,
                "repairable": self.repairable, "repaired": self.repaired}


@dataclass
class CheckReport:
    name: str
    vector_count: int | None
    last_mutation: str | None
    search_file: str | None
    problems: list[Problem] = field(default_factory=list)
    repair: bool = False  # was a repair asked for
    notes: list[str] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        """Nothing was wrong."""
        return not self.problems

    @property
    def remaining(self) -> list[Problem]:
        return [p for p in self.problems if not p.repaired]

    @property
    def exit_code(self) -> int:
        if self.healthy:
            return EXIT_HEALTHY
        return EXIT_PROBLEMS if self.remaining else EXIT_REPAIRED

    def to_json(self) -> dict:
        return {
            "index": self.name,
            "healthy": self.healthy,
            "repaired": bool(self.problems) and not self.remaining,
            "vectorCount": self.vector_count,
            "processedUpToMutation": self.last_mutation,
            "searchFile": self.search_file,
            "problems": [p.to_json() for p in self.problems],
        }


def check_index(index, *, repair: bool = False) -> CheckReport:
    """Check ``index`` (a ``VectorIndex``); with ``repair`` fix what can be fixed, then check again
    and mark each problem that is gone as repaired."""
    with ExitStack() as stack:
        notes = []
        try:
            stack.enter_context(writer_lock(index.path / "lock", index.lock_timeout))
            locked = True
        except LockTimeout:
            raise
        except StorageError as exc:
            locked = False
            notes.append(f"checked without the writer lock ({exc})")
        report = _inspect(index)
        report.notes += notes
        report.repair = repair
        if repair and report.problems:
            if not locked:
                report.notes.append("cannot repair without the writer lock")
                return report
            _repair(index, report.problems)
            after = _inspect(index)
            still = {p.code for p in after.problems}
            for p in report.problems:
                p.repaired = p.repairable and p.code not in still
            known = {p.code for p in report.problems}
            report.problems += [p for p in after.problems if p.code not in known]
            report.vector_count, report.search_file = after.vector_count, after.search_file
    report.notes += index.notes
    return report


# -- inspection ------------------------------------------------------------------------------
def _inspect(index) -> CheckReport:
    store = index.store
    problems: list[Problem] = []
    count = last = None
    store_readable = True
    try:
        with store.snapshot():
            count = store.count()
            mutation = store.last_mutation()
            last = mutation.id if mutation else None
            problems += _store_problems(store, index.dimensions)
    except sqlite3.DatabaseError as exc:
        store_readable = False
        problems.append(Problem("store", "store-unreadable",
                                f"the store cannot be read ({exc}); restore it from a copy or "
                                "load the vectors into a new index", False))
    search_file = None
    if store_readable and not any(p.code == "store-integrity" for p in problems):
        try:
            with store.snapshot():
                found, search_file = _search_file_problems(index, count or 0)
            problems += found
        except sqlite3.DatabaseError as exc:
            problems.append(Problem("store", "store-unreadable", f"the store cannot be read ({exc})", False))
    return CheckReport(index.name, count, last, search_file, problems)


def _examples(ids: list[str], total: int) -> str:
    shown = ", ".join(f'"{i}"' for i in ids[:MAX_EXAMPLES])
    return shown + (f" and {total - MAX_EXAMPLES} more" if total > MAX_EXAMPLES else "")


def _store_problems(store, dims: int) -> list[Problem]:
    conn = store.conn
    out: list[Problem] = []
    messages = [r[0] for r in conn.execute("PRAGMA integrity_check").fetchall()]
    if messages != ["ok"]:
        # Index entries that disagree with their table are rebuilt by REINDEX; other damage is not.
        fixable = all((" index " in m or m.startswith("wrong # of entries")) and "non-unique" not in m
                      for m in messages)
        out.append(Problem("store", "store-integrity",
                           f"SQLite integrity check failed: {'; '.join(messages[:3])}", fixable))
        if not fixable:
            return out
    fmt = conn.execute("SELECT v FROM settings WHERE k = 'format'").fetchone()
    if fmt is None or fmt[0] != 1:
        out.append(Problem("store", "store-format",
                           f"the store's format is {fmt[0] if fmt else 'missing'}, expected 1", False))

    # Values, ids, namespaces and metadata, row by row.
    bad_size: list[str] = []
    not_finite: list[str] = []
    bad_meta: list[str] = []
    bad_id: list[str] = []
    bad_ns: list[str] = []
    size = dims * 4
    cur = conn.execute("SELECT id, namespace, metadata, vec FROM vectors")
    while rows := cur.fetchmany(CHUNK):
        good = []
        for vid, ns, meta, vec in rows:
            if not isinstance(vid, str) or not 1 <= len(vid.encode("utf-8", "surrogatepass")) <= MAX_ID_BYTES:
                bad_id.append(str(vid))
            if ns is not None and (not isinstance(ns, str)
                                   or not 1 <= len(ns.encode("utf-8", "surrogatepass")) <= MAX_ID_BYTES):
                bad_ns.append(str(vid))
            if not isinstance(vec, bytes) or len(vec) != size:
                bad_size.append(str(vid))
            else:
                good.append((vid, vec))
            if meta is not None:
                try:
                    ok = isinstance(orjson.loads(meta), dict)
                except (orjson.JSONDecodeError, TypeError):
                    ok = False
                if not ok:
                    bad_meta.append(str(vid))
        if good:
            block = np.frombuffer(b"".join(v for _i, v in good), "<f4").reshape(len(good), dims)
            for i in np.flatnonzero(~np.isfinite(block).all(axis=1)):
                not_finite.append(good[int(i)][0])
    for ids, code, what in (
        (bad_size, "vector-size", f"values that are not {dims} float32 numbers"),
        (not_finite, "vector-not-finite", "values that are not finite numbers"),
        (bad_id, "vector-id", "an id that is not 1 to 64 bytes of text"),
        (bad_ns, "vector-namespace", "a namespace that is not 1 to 64 bytes of text"),
        (bad_meta, "vector-metadata", "metadata that is not a JSON object"),
    ):
        if ids:
            out.append(Problem("store", code,
                               f"{len(ids)} vectors have {what} ({_examples(ids, len(ids))}); "
                               "upsert them again or delete them", False))

    orphans = conn.execute(
        "SELECT count(*) FROM vectors v WHERE NOT EXISTS (SELECT 1 FROM mutations m WHERE m.seq = v.seq)"
    ).fetchone()[0]
    if orphans:
        out.append(Problem("store", "vector-mutation",
                           f"{orphans} vectors were written by a mutation the store has no record of",
                           False))
    dup = conn.execute("SELECT count(*) - count(DISTINCT uuid) FROM mutations").fetchone()[0]
    if dup:
        out.append(Problem("store", "mutation-ids", f"{dup} mutation ids are used twice", False))
    bad_removed = conn.execute(
        "SELECT count(*) FROM removed r WHERE r.added_seq > r.removed_seq "
        "OR NOT EXISTS (SELECT 1 FROM mutations m WHERE m.seq = r.removed_seq) "
        "OR EXISTS (SELECT 1 FROM vectors v WHERE v.key = r.key)"
    ).fetchone()[0]
    if bad_removed:
        out.append(Problem("store", "removed-rows",
                           f"{bad_removed} records of removed vectors are inconsistent", True))
    for table, used_sql in (
        ("vectors", "SELECT max(k) FROM (SELECT max(key) AS k FROM vectors "
                    "UNION ALL SELECT max(key) FROM removed)"),
        ("mutations", "SELECT max(seq) FROM mutations"),
    ):
        used = conn.execute(used_sql).fetchone()[0] or 0
        row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = ?", (table,)).fetchone()
        counter = row[0] if row else 0
        if counter < used:
            out.append(Problem("store", f"sequence-{table}",
                               f"the {table} counter ({counter}) is behind the largest number in use "
                               f"({used}): numbers could be handed out twice", True))
    return out


def _search_file_problems(index, count: int) -> tuple[list[Problem], str | None]:
    from .index import FOLD_ROWS

    store = index.store
    out: list[Problem] = []
    for path in index.temp_files():
        out.append(Problem("search files", f"temp:{path.name}",
                           f"leftover temporary file {path.name} from an interrupted refresh", True))
    files = index.derived_files()
    for _kind, _seq, path in files[1:]:
        out.append(Problem("search files", f"old:{path.name}",
                           f"superseded search file {path.name} (the newest is {files[0][2].name})", True))
    if not files:
        if count:
            out.append(Problem("search files", "search-missing",
                               "the search file is missing (queries read every vector from the store)",
                               True))
        return out, None
    kind, seq, path = files[0]

    def damaged(text: str) -> tuple[list[Problem], str]:
        out.append(Problem("search files", "search-damaged", f"the search file {path.name} {text}", True))
        return out, path.name

    try:
        obj = search.load_derived(kind, seq, path, index.dimensions, index.metric)
        search.verify_derived(kind, seq, obj, store, samples=64)
    except (ValueError, OSError, RuntimeError) as exc:
        return damaged(f"is unusable ({exc})")
    expected = np.fromiter(
        (r[0] for r in store.conn.execute(
            "SELECT key FROM vectors WHERE seq <= ? UNION "
            "SELECT key FROM removed WHERE added_seq <= ? AND removed_seq > ? ORDER BY 1",
            (seq, seq, seq))),
        np.int64,
    )
    if kind == "matrix":
        keys = np.asarray(obj.keys, np.int64)
    else:
        keys = np.sort(np.asarray(obj.keys, np.uint64).astype(np.int64))
    if len(keys) != len(expected) or not np.array_equal(keys, expected):
        missing = np.setdiff1d(expected, keys).size
        extra = np.setdiff1d(keys, expected).size
        return damaged(f"does not hold the vectors the store had at mutation {seq} "
                       f"({missing} missing, {extra} extra)")
    if kind == "matrix":
        bad = _matrix_differences(obj, store, seq)
    else:
        bad = _graph_differences(obj, store, seq)
    if bad:
        return damaged(bad)
    added, removed = store.count_since(seq)
    if added + removed > FOLD_ROWS:
        out.append(Problem("search files", "search-behind",
                           f"the search file {path.name} is {added + removed} changes behind the store "
                           "(queries scan them one by one until a refresh folds them in)", True))
    return out, path.name


def _matrix_differences(m, store, seq: int) -> str | None:
    """Every vector still live since the matrix was written must be equal, with its norm."""
    n_bad = 0
    cur = store.conn.execute("SELECT key, vec FROM vectors WHERE seq <= ? ORDER BY key", (seq,))
    size = m.values.shape[1] * 4
    while rows := cur.fetchmany(CHUNK):
        rows = [r for r in rows if isinstance(r[1], bytes) and len(r[1]) == size]  # others: reported
        if not rows:
            continue
        keys = np.fromiter((r[0] for r in rows), np.int64, len(rows))
        pos = np.searchsorted(m.keys, keys)
        mine = np.asarray(m.values[pos])
        stored = np.frombuffer(b"".join(r[1] for r in rows), "<f4").reshape(len(rows), -1)
        n_bad += int((mine != stored).any(axis=1).sum())
        norms = np.linalg.norm(stored, axis=1)
        n_bad += int((~np.isclose(np.asarray(m.norms[pos]), norms, rtol=1e-5, atol=1e-30)).sum())
    return f"holds {n_bad} vectors or norms that differ from the store" if n_bad else None


def _graph_differences(g, store, seq: int) -> str | None:
    rows = store.conn.execute(
        "SELECT key, vec FROM vectors WHERE seq <= ? ORDER BY random() LIMIT ?", (seq, VALUE_SAMPLE)
    ).fetchall()
    n_bad = 0
    for key, blob in rows:
        got = g.get(key) if g.contains(key) else None
        if got is None or np.asarray(got, "<f4").tobytes() != blob:
            n_bad += 1
    return f"holds {n_bad} of {len(rows)} sampled vectors that differ from the store" if n_bad else None


# -- repair ----------------------------------------------------------------------------------
def _repair(index, problems: list[Problem]) -> None:
    store = index.store
    codes = {p.code for p in problems if p.repairable}
    if "store-integrity" in codes:
        try:
            store.conn.execute("REINDEX")
        except sqlite3.DatabaseError as exc:
            index.notes.append(f"REINDEX failed: {exc}")
    if codes & {"removed-rows", "sequence-vectors", "sequence-mutations"}:
        with store.mutation_free_transaction():
            if "removed-rows" in codes:
                store.conn.execute(
                    "DELETE FROM removed WHERE added_seq > removed_seq "
                    "OR NOT EXISTS (SELECT 1 FROM mutations m WHERE m.seq = removed.removed_seq) "
                    "OR EXISTS (SELECT 1 FROM vectors v WHERE v.key = removed.key)"
                )
            for table, used_sql in (
                ("vectors", "SELECT max(k) FROM (SELECT max(key) AS k FROM vectors "
                            "UNION ALL SELECT max(key) FROM removed)"),
                ("mutations", "SELECT max(seq) FROM mutations"),
            ):
                if f"sequence-{table}" in codes:
                    used = store.conn.execute(used_sql).fetchone()[0] or 0
                    store.conn.execute("DELETE FROM sqlite_sequence WHERE name = ?", (table,))
                    store.conn.execute("INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)", (table, used))
    # The search file: rebuild it whole when it was wrong (or when the store's bookkeeping that
    # catching up relies on was); otherwise a refresh folds in what it lacks and tidies up.
    rebuild = bool(codes & {"search-damaged", "store-integrity", "removed-rows"})
    try:
        index.refresh(force=rebuild, verify=True)
    except (OSError, ValueError, RuntimeError, StorageError, sqlite3.DatabaseError) as exc:
        index.notes.append(f"could not rebuild the search file: {exc}")
