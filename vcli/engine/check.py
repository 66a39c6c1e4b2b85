"""``vcli check``: verify one index, and with ``repair=True`` fix what can be fixed.

What is checked:

* **The store and the columns** (the truth): SQLite's own ``PRAGMA integrity_check``; every
  append to the columns that hold the values reads back with the CRC-32s recorded with it (a
  store of an older vcli: every blob is ``dimensions * 4`` bytes); every vector has values there,
  finite numbers; ids and namespaces are 1..64 bytes; metadata is a JSON object; every row was written by a recorded mutation; the bookkeeping of
  removed rows is consistent; the integer keys can never be handed out twice.
* **The search files** (derived): no temporary files left by a killed refresh or build (a running
  builder's is left alone), no superseded files (manifests, other generations' columns); the
  newest matrix opens, its columns match their per-segment checksums, is not newer than the
  store (a file from another index) nor too old to catch up, holds exactly the keys the store had
  at its mutation with the same values and norms, and is not far behind the store; a large
  index's graph parts cover every row of that matrix (or a builder is at work), and each opens,
  holds every key the matrix has in its key range and none outside it, and reports the distances
  the matrix's vectors have.

Repair never touches a vector: it rebuilds SQLite's indexes (``REINDEX``), drops inconsistent
bookkeeping rows, moves the key counter past every key used, deletes temporary and superseded files,
rebuilds the matrix (norms, tombstones, manifest) from the columns, compacts away column rows that
are damaged but hold no vector any more, and has a builder make damaged or missing graph parts
anew. Damaged vectors are reported, not deleted; what to do with them is the user's call (upsert
them again, or delete them). No compaction copies values that differ from their checksums
(``matrix._copy_rows``): a rebuild that needs one is refused while they are there.

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
from .columns import open_values
from .limits import MAX_ID_BYTES, MAX_NAMESPACE_BYTES
from .matrix import crc_of
from .searchfiles import FILE_ERRORS
from .store import audit
from .validate import utf8_size
from .verify import check_contents

MAX_EXAMPLES = 5  # ids named in one problem


@dataclass
class Problem:
    """One thing wrong. ``code`` is stable (for scripts); ``text`` is for people."""

    area: str  # "store" or "search files"
    code: str
    text: str
    repairable: bool
    repaired: bool = False
    file: str | None = None  # the search file it is about, when one

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
        notes: list[str] = []
        try:
            stack.enter_context(index.writing())
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
            report.notes += _repair(index, report.problems)
            after = _inspect(index)
            still = {p.code for p in after.problems}
            for p in report.problems:
                p.repaired = p.repairable and p.code not in still
            known = {p.code for p in report.problems}
            report.problems += [p for p in after.problems if p.code not in known]
            report.vector_count, report.search_file = after.vector_count, after.search_file
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
            problems += _store_problems(store, index.dimensions, _used_elsewhere(index))
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


def _used_elsewhere(index) -> dict[str, int]:
    """Numbers the search files use that the store's counters must stay past: the keys graph
    parts cover (new vectors must get keys above every part's range)."""
    return {"vectors": max((f.hi for f in index.folder.search_files() if f.part), default=0)}


def _store_problems(store, dims: int, elsewhere: dict[str, int]) -> list[Problem]:
    out: list[Problem] = []
    messages = audit.integrity_messages(store)
    if messages != ["ok"]:
        # Index entries that disagree with their table are rebuilt by REINDEX; other damage is not.
        fixable = all((" index " in m or m.startswith("wrong # of entries")) and "non-unique" not in m
                      for m in messages)
        out.append(Problem("store", "store-integrity",
                           f"SQLite integrity check failed: {'; '.join(messages[:3])}", fixable))
        if not fixable:
            return out
    wrong_format = audit.format_problem(store)
    if wrong_format:
        out.append(Problem("store", "store-format", wrong_format, False))
    return out + _column_problems(store, dims) + _row_problems(store, dims) + _bookkeeping_problems(store, elsewhere)


def _column_problems(store, dims: int) -> list[Problem]:
    """The columns that hold the values: present, and every committed append's bytes match the
    CRC-32 recorded with it (the values are not derived: damage is reported, not repaired)."""
    generation, rows = store.tail()
    if generation is None or store.old_format():
        return []
    try:
        values = open_values(store, dims)
    except (OSError, RuntimeError) as exc:  # (RuntimeError: MissingValues, a column cut short)
        return [Problem("store", "columns-missing",
                        f"the columns that hold the vectors' values cannot be read ({exc}); restore "
                        "them from a copy or load the vectors into a new index", False)]
    bad, at = [], 0
    for start, end, crc_keys, crc_values in store.appends(generation):
        if start != at or crc_of(values.keys[start:end]) != crc_keys or crc_of(values.values[start:end]) != crc_values:
            bad.append((start, end))
        at = end
    if at != rows:
        bad.append((at, rows))
    if not bad:
        if store.refused_append() is not None:  # (the damage was mended in place, from a copy)
            return [Problem("store", "compaction-held-back",
                            "a compaction is held back over damaged values that are sound now; "
                            "repair lets it run", True)]
        return []
    out = []
    blocks = [np.asarray(values.keys[a:b]) for a, b in bad]
    live = {r[0]: r[1] for r in store.rows_for_keys(int(k) for k in np.concatenate(blocks))}
    used = [b for b in blocks if any(int(k) in live for k in b)]
    dead = sum(len(b) for b in blocks) - sum(len(b) for b in used)
    if used:
        ids = [live[int(k)] for b in used for k in b if int(k) in live]
        rows = sum(len(b) for b in used)
        out.append(Problem("store", "columns-damaged",
                           f"{len(used)} block{'s' if len(used) > 1 else ''} of rows of values-{generation}.keys/.f32 "
                           f"differ from their checksums: the values of {len(ids)} of the {rows:,} vectors "
                           f"they hold may be damaged ({_examples(ids, len(ids))}); upsert them again or "
                           "delete them, or restore the index from a copy", False))
    if dead:
        out.append(Problem("store", "columns-damaged-dead",
                           f"{dead:,} rows of values-{generation}.keys/.f32 differ from their checksums but "
                           "hold no vector any more (upserted again or deleted since); repair compacts them away",
                           True))
    return out


def _row_problems(store, dims: int) -> list[Problem]:
    """Values, ids, namespaces and metadata, row by row."""
    out: list[Problem] = []
    try:
        values = open_values(store, dims)
    except (OSError, RuntimeError):
        values = None  # (reported by ``_column_problems``)
    bad_size: list[str] = []
    not_finite: list[str] = []
    bad_meta: list[str] = []
    bad_id: list[str] = []
    bad_ns: list[str] = []
    for rows in audit.row_blocks(store):
        present = values.present([r[3] for r in rows]) if values is not None else np.ones(len(rows), bool)
        good = []
        for (vid, ns, meta, key), here in zip(rows, present, strict=True):
            if not isinstance(vid, str) or not 1 <= utf8_size(vid) <= MAX_ID_BYTES:
                bad_id.append(str(vid))
            if ns is not None and (not isinstance(ns, str) or not 1 <= utf8_size(ns) <= MAX_NAMESPACE_BYTES):
                bad_ns.append(str(vid))
            if not here:
                bad_size.append(str(vid))
            else:
                good.append((vid, key))
            if meta is not None:
                try:
                    ok = isinstance(orjson.loads(meta), dict)
                except (orjson.JSONDecodeError, TypeError):
                    ok = False
                if not ok:
                    bad_meta.append(str(vid))
        if good and values is not None:
            block = values.of([k for _i, k in good])
            for i in np.flatnonzero(~np.isfinite(block).all(axis=1)):
                not_finite.append(good[int(i)][0])
    for ids, code, what in (
        (bad_size, "vector-size", f"no values of {dims} float32 numbers (no row in the columns, or a "
                                  "blob of another size in a store of an older vcli)"),
        (not_finite, "vector-not-finite", "values that are not finite numbers"),
        (bad_id, "vector-id", "an id that is not 1 to 64 bytes of text"),
        (bad_ns, "vector-namespace", "a namespace that is not 1 to 64 bytes of text"),
        (bad_meta, "vector-metadata", "metadata that is not a JSON object"),
    ):
        if ids:
            out.append(Problem("store", code,
                               f"{len(ids)} vectors have {what} ({_examples(ids, len(ids))}); "
                               "upsert them again or delete them", False))
    return out


def _bookkeeping_problems(store, elsewhere: dict[str, int]) -> list[Problem]:
    """Mutation records, removal records and key counters."""
    out: list[Problem] = []
    orphans = audit.orphan_vectors(store)
    if orphans:
        out.append(Problem("store", "vector-mutation",
                           f"{orphans} vectors were written by a mutation the store has no record of", False))
    dup = audit.repeated_mutation_ids(store)
    if dup:
        out.append(Problem("store", "mutation-ids", f"{dup} mutation ids are used twice", False))
    bad_removed = audit.inconsistent_removals(store)
    if bad_removed:
        out.append(Problem("store", "removed-rows", f"{bad_removed} records of removed vectors are inconsistent",
                           True))
    for table in audit.COUNTERS:
        counter, used = audit.counter(store, table, elsewhere.get(table, 0))
        if counter < used:
            out.append(Problem("store", f"sequence-{table}",
                               f"the {table} counter ({counter}) is behind the largest number in use "
                               f"({used}): numbers could be handed out twice", True))
    return out


def _search_file_problems(index, count: int) -> tuple[list[Problem], str | None]:
    from . import builder

    files, folder = index.search_files, index.folder
    out: list[Problem] = []
    building = builder.running(folder)
    for path in folder.search_temp_files():
        if building and path.name.startswith(".graph-"):
            continue  # the builder's file in progress
        out.append(Problem("search files", f"temp:{path.name}",
                           f"leftover temporary file {path.name} from an interrupted refresh or build", True))
    found = folder.search_files()
    file = next((f for f in found if f.kind == "matrix"), None)
    parts = files.graph_parts(file) if file is not None else []
    for old in found:
        if old != file and old not in parts and not (building and old.kind == "graph"):  # (the builder's to remove)
            out.append(Problem("search files", f"old:{old.path.name}",
                               f"superseded search file {old.path.name}", True))
    from .matrix import generation_of, other_generations  # (NumPy: the check has it already)

    unreadable = file is not None and file.path.suffix == ".manifest" and generation_of(file.path) is None
    for column in [] if unreadable else other_generations(folder, index.store, None if file is None else file.path):
        out.append(Problem("search files", f"old:{column.name}",
                           f"column file {column.name} of a generation neither the store nor a manifest uses",
                           True))
    if file is None:
        if files.needs_matrix():
            out.append(Problem("search files", "search-missing",
                               "the search file is missing (queries read every vector from the store)", True))
        return out, None
    name = file.path.name
    try:
        obj = files.load(file)
        files.verify(file, obj, samples=files.tuning.check_samples)
        wrong = check_contents(index.store, file, obj)
    except FILE_ERRORS as exc:
        wrong = f"is unusable ({exc})"
    if wrong:
        out.append(Problem("search files", "search-damaged", f"the search file {name} {wrong}", True))
        return out, name
    added, removed = index.store.count_since(file.seq)
    if files.tuning.due((added, removed)):
        out.append(Problem("search files", "search-behind",
                           f"the search file {name} is {added + removed} changes behind the store "
                           "(queries scan them one by one until a refresh folds them in)", True))
    if not files.tuning.wants_graph(len(obj.keys), index.dimensions):
        return out, name
    from .graph import uncovered  # lazy: usearch

    for part in parts:
        try:
            g = files.load(part, keys=True)
            files.verify(part, g, samples=files.tuning.check_samples, matrix=obj)
            wrong = check_contents(index.store, part, g, matrix=obj)
        except FILE_ERRORS as exc:
            wrong = f"is unusable ({exc})"
        if wrong:
            out.append(Problem("search files", "graph-damaged", f"the search graph {part.path.name} {wrong}", True,
                               file=part.path.name))
    left = sum(r.stop - r.start for r in uncovered(obj, parts))
    if left and not building:
        out.append(Problem("search files", "graph-missing",
                           f"{left:,} of the vectors of {name} are in no search graph yet (queries scan "
                           "them exactly, which is slower; repair starts a builder)", True))
    return out, " + ".join([name, *(p.path.name for p in parts)])


# -- repair ----------------------------------------------------------------------------------
def _repair(index, problems: list[Problem]) -> list[str]:
    """Repair what ``problems`` say can be; the notes of what did not go as planned."""
    notes: list[str] = []
    store = index.store
    codes = {p.code for p in problems if p.repairable}
    if "store-integrity" in codes:
        failed = audit.reindex(store)
        if failed:
            notes.append(f"REINDEX failed: {failed}")
    used = _used_elsewhere(index)
    counters = {t: used.get(t, 0) for t in audit.COUNTERS if f"sequence-{t}" in codes}
    if "removed-rows" in codes or counters:
        audit.repair_bookkeeping(store, removals="removed-rows" in codes, counters=counters)
    # The search file: rebuild it whole when it was wrong (or when the store's bookkeeping that
    # catching up relies on was); otherwise a refresh folds in what it lacks and tidies up.
    rebuild = bool(codes & {"search-damaged", "store-integrity", "removed-rows"})
    damaged = {p.file for p in problems if p.code == "graph-damaged"}
    for graph in index.folder.search_files():
        if graph.path.name in damaged:
            index.search_files.discard_graph(graph, start=False)
    if "compaction-held-back" in codes:
        store.forget_refusal()
    try:
        notes += index.refresh(force=rebuild, verify=True,
                               compact=bool(codes & {"columns-damaged-dead", "compaction-held-back"}))
    except (OSError, ValueError, RuntimeError, StorageError, sqlite3.DatabaseError) as exc:
        notes.append(f"could not rebuild the search file: {exc}")
    return notes
