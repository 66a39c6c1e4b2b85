"""The matrix: every vector, memory-mapped, for exact search, over the columns that are the one
home of the float32 values.

A *generation* is four append-only column files; the store says which generation is current and
how many of its rows are committed (``Store.tail``), and a manifest says how much of them the
matrix is:

    values-<gen>.keys      int64 keys, ascending          } the truth: appended by every write,
    values-<gen>.f32       float32 values, ``dimensions`` } fsynced before it commits
                           a row                          } (``store/appender.py``)
    vectors-<gen>.norms    float32 L2 norm of each row    } derived: appended by a fold, up to
    vectors-<gen>.gone     int64 tombstones: keys of rows } the manifest's end
                           above that the store no longer has
    matrix-<seq>.manifest  the generation, ``dimensions`` and, per fold, a *segment*: the mutation
                           it reflects, the rows and tombstones the columns hold up to its end, and
                           a CRC-32 of each column's bytes in it; itself checksummed
                           (``Manifest.to_bytes``)

``<gen>`` is the mutation the generation began at and 8 random hex digits: never reused, so a
reader holding an old manifest never finds another generation's files under its names.

* **Build** (``build``): a first matrix of a generation no manifest has named is made in place
  (the norms and tombstones of its committed rows written; the values not copied); otherwise the
  live rows are *compacted* into a new generation, which becomes the store's in a transaction.
* **Fold** (``fold``) brings a matrix up to the store: the rows written since its mutation are in
  the columns already, past its end; their norms and the keys removed since are appended
  (``os.pwrite`` at the committed length) and fsynced, then the new manifest is written under a
  temporary name, fsynced and renamed, and the old one removed. A fold costs what it adds, not
  the size of the index. When more than ``Tuning.fold_compact_share`` of the rows are tombstones,
  the fold compacts instead (a copy at disk speed).

Readers map only the prefix their manifest (or, for the values, their store snapshot) names, so
appends beside them change nothing they see, and bytes past the committed length (left by a
write or fold that was killed) are never read: the next writer, which holds the writer lock,
writes over them. Nothing is ever truncated (a mapped file that shrinks kills its reader with
SIGBUS) and nothing committed is written twice. A reader drops tombstoned rows exactly as it
drops keys removed since the manifest's mutation (``gone`` joins them). A compaction's old
generation is removed by the refresh that made it; readers that mapped it keep their mapping, and
one that had not yet is sent to the new one (``columns.reading``, the search's retry).

A matrix file of an older vcli (``matrix-<seq>.f32``: header, keys, norms, values in one file)
still opens (``_load_whole``) until the store is migrated (``migrate.py``).
"""

from __future__ import annotations

import json
import os
import sqlite3
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np

from . import fsutil
from .columns import MissingValues, Values, map_column, open_values
from .layout import VECTOR_COLUMNS as COLUMNS
from .layout import Folder, new_generation
from .store import Store

MAGIC = b"VCLIMAT1"  # the whole-file matrix of vcli before generations
HEADER = struct.Struct("<8sQQI")
HEADER_SIZE = 64
CHUNK = 2048  # rows per step while reading columns (small: the float64 copy for norms is 8 bytes a number)
COPY_ROWS = CHUNK * 32  # rows per step while checksumming a mapped column
MANIFEST_FORMAT = 1
_NO_KEYS = np.zeros(0, np.int64)
_NO_KEYS.flags.writeable = False


class Segment(NamedTuple):
    """What one build or fold appended: the mutation it reflects, the rows and tombstones the
    columns hold up to its end, and the CRC-32 of the bytes it appended to each column."""

    seq: int
    rows: int
    gone: int
    crcs: tuple[int, int, int, int]  # keys, norms, values, gone


class Manifest(NamedTuple):
    generation: str
    dimensions: int
    seq: int
    segments: tuple[Segment, ...]

    @property
    def rows(self) -> int:
        return self.segments[-1].rows if self.segments else 0

    @property
    def gone(self) -> int:
        return self.segments[-1].gone if self.segments else 0

    def to_bytes(self) -> bytes:
        body = json.dumps({"format": MANIFEST_FORMAT, "generation": self.generation,
                           "dimensions": self.dimensions, "seq": self.seq,
                           "segments": [[s.seq, s.rows, s.gone, *s.crcs] for s in self.segments]},
                          separators=(",", ":")).encode()
        return body + b"\n" + f"{zlib.crc32(body):08x}\n".encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Manifest:
        """``ValueError`` when the bytes are not a whole manifest of this format."""
        body, _, tail = data.rstrip(b"\n").rpartition(b"\n")
        if not body or tail != f"{zlib.crc32(body):08x}".encode():
            raise ValueError("its checksum does not match")
        try:
            raw = json.loads(body)
            segments = tuple(Segment(int(s[0]), int(s[1]), int(s[2]), (int(s[3]), int(s[4]), int(s[5]), int(s[6])))
                             for s in raw["segments"])
            man = cls(str(raw["generation"]), int(raw["dimensions"]), int(raw["seq"]), segments)
            if raw["format"] != MANIFEST_FORMAT:
                raise ValueError(f"it is of format {raw['format']!r}, not {MANIFEST_FORMAT}")
        except (KeyError, TypeError, IndexError, AttributeError, json.JSONDecodeError) as exc:
            raise ValueError(f"it is not a manifest ({exc})") from None
        at = (0, 0)
        for s in man.segments:
            if s.rows < at[0] or s.gone < at[1]:
                raise ValueError("its segments do not follow one another")
            at = (s.rows, s.gone)
        return man


class Matrix(NamedTuple):
    seq: int
    keys: np.ndarray  # int64[n]
    norms: np.ndarray  # float32[n]
    values: np.ndarray  # float32[n, d]
    # sorted int64 keys of rows above that the store no longer has (searches drop them, as they
    # drop keys removed since ``seq``); none in a whole-file matrix
    gone: np.ndarray = _NO_KEYS
    manifest: Manifest | None = None  # None: a whole-file matrix of an older vcli

    @classmethod
    def load(cls, path: Path, seq: int, dimensions: int) -> Matrix:
        """Open the matrix whose manifest (or older whole file) is ``path``, memory-mapped (no
        read of its values); ``ValueError`` or ``OSError`` if it is damaged or foreign."""
        if path.suffix == ".f32":
            return _load_whole(path, seq, dimensions)
        for attempt in range(3):
            man = Manifest.from_bytes(path.read_bytes())
            if man.seq != seq or man.dimensions != dimensions:
                raise ValueError(f"{path.name} is damaged or belongs to another index")
            try:
                return _open_generation(Folder(path.parent), man)
            except FileNotFoundError:
                if attempt == 2:  # (a rebuild at the same mutation replaced it meanwhile: read it again)
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def rows_of(self, keys: np.ndarray) -> np.ndarray:
        """Row positions of ``keys`` (which must be present)."""
        return np.searchsorted(self.keys, keys)

    def live(self) -> int:
        """Rows that are not tombstones."""
        return len(self.keys) - len(self.gone)

    def sharing(self, cols: Values) -> Matrix:
        """This matrix reading its keys and values through ``cols``'s map when both are the same
        generation's columns (the matrix's rows are their first rows): queries rescore their
        candidates from ``cols``, and two maps of one file would each count, in the resident
        size, every page a batch touches (+86 MiB at 59k x 384)."""
        n = len(self.keys)
        if self.manifest is None or cols.generation != self.manifest.generation or len(cols.keys) < n:
            return self
        return self._replace(keys=cols.keys[:n], values=cols.values[:n])


def _open_generation(folder: Folder, man: Manifest) -> Matrix:
    n, d = man.rows, man.dimensions
    keys = map_column(_column(folder, man.generation, "keys"), "<i8", n)
    norms = map_column(folder.vector_file(man.generation, "norms"), "<f4", n)
    values = map_column(_column(folder, man.generation, "f32"), "<f4", n * d).reshape(n, d)
    gone = np.sort(map_column(folder.vector_file(man.generation, "gone"), "<i8", man.gone), kind="stable")
    return Matrix(man.seq, keys, norms, values, gone, man)


def _column(folder: Folder, generation: str, column: str) -> Path:
    """A generation's keys or values column; ``vectors-<gen>.keys|f32`` in the matrix generation of
    a vcli before the columns (read until its store is migrated)."""
    path = folder.vector_file(generation, column)
    legacy = folder.path / f"vectors-{generation}.{column}"
    return legacy if not path.exists() and legacy.exists() else path


def _load_whole(path: Path, seq: int, dimensions: int) -> Matrix:
    """A matrix file of vcli before generations: header, keys, norms and values in one file."""
    with open(path, "rb") as f:
        magic, file_seq, n, dims = HEADER.unpack(f.read(HEADER.size))
    size = path.stat().st_size
    expected = HEADER_SIZE + n * 8 + n * 4 + n * dims * 4
    if magic != MAGIC or file_seq != seq or dims != dimensions or size != expected:
        raise ValueError(f"{path.name} is damaged or belongs to another index")
    if n == 0:
        return Matrix(seq, _NO_KEYS, np.zeros(0, np.float32), np.zeros((0, dims), np.float32))
    raw = np.memmap(path, dtype=np.uint8, mode="r").view(np.ndarray)
    keys = raw[HEADER_SIZE : HEADER_SIZE + n * 8].view("<i8")
    off = HEADER_SIZE + n * 8
    norms = raw[off : off + n * 4].view("<f4")
    values = raw[off + n * 4 :].view("<f4").reshape(n, dims)
    return Matrix(seq, keys, norms, values)


def _bytes(a: np.ndarray) -> memoryview:
    """The bytes of ``a`` (copied only if it is not contiguous)."""
    return np.ascontiguousarray(a).reshape(-1).view(np.uint8).data


def _norms(block: np.ndarray) -> np.ndarray:
    """The rows' norms, summed in float64 (float32 squares overflow at 1.8e19): one pass, without
    a float64 copy of the block (a quarter of ``np.linalg.norm``'s CPU on one)."""
    with np.errstate(over="ignore"):  # (a norm past float32's range is inf)
        return np.sqrt(np.einsum("ij,ij->i", block, block, dtype=np.float64)).astype(np.float32)


def _row_blocks(folder: Folder, cols: Values, start: int, stop: int) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """``(first row, keys, values)`` of rows ``start..stop`` of ``cols``, ``CHUNK`` at a time (their
    norms are found in float64), read from the files rather than the maps (a mapped file's pages
    would count as this process's memory: a load's peak RSS would be the whole column)."""
    assert cols.generation is not None
    dims = cols.values.shape[1]
    with open(folder.vector_file(cols.generation, "keys"), "rb") as fk, \
            open(folder.vector_file(cols.generation, "f32"), "rb") as fv:
        for at in range(start, stop, CHUNK):
            n = min(CHUNK, stop - at)
            fk.seek(at * 8)
            fv.seek(at * dims * 4)
            keys, values = np.fromfile(fk, "<i8", n), np.fromfile(fv, "<f4", n * dims).reshape(-1, dims)
            if len(keys) != n or len(values) != n:
                raise ValueError(f"values-{cols.generation}.keys/.f32 hold fewer rows than the {stop:,} committed")
            yield at, keys, values


def crc_of(a: np.ndarray, crc: int = 0) -> int:
    """The CRC-32 of ``a``'s bytes, read ``COPY_ROWS`` rows at a time (a mapped column is not
    read into memory whole)."""
    for start in range(0, len(a), COPY_ROWS):
        crc = zlib.crc32(_bytes(a[start : start + COPY_ROWS]), crc)
    return crc


class _Appender:
    """Appends to a generation's columns from ``at`` = (rows of keys and values, rows of norms,
    tombstones) (a new generation's files are created: ``create``), keeping the CRC-32 of what it
    wrote to each column; fsyncs them on ``close``."""

    def __init__(self, folder: Folder, generation: str, dimensions: int, at: tuple[int, int, int] = (0, 0, 0),
                 create: bool = False):
        rows, norms, gone = at
        self.rows, self.gone, self.dimensions = rows, gone, dimensions
        self.offsets = [rows * 8, norms * 4, rows * dimensions * 4, gone * 8]
        self.crcs = [0, 0, 0, 0]
        self.created = create
        self.folder = folder
        flags = os.O_WRONLY | (os.O_CREAT | os.O_EXCL if create else 0)
        self.fds: list[int] = []
        try:
            for column in COLUMNS:
                self.fds.append(os.open(folder.vector_file(generation, column), flags, fsutil.FILE_MODE))
        except BaseException:
            self._close_fds()
            raise

    def _write(self, column: int, data: np.ndarray) -> None:
        view = _bytes(data)
        while len(view):  # (pwrite may write less than asked)
            done = os.pwrite(self.fds[column], view, self.offsets[column])
            self.crcs[column] = zlib.crc32(view[:done], self.crcs[column])
            self.offsets[column] += done
            view = view[done:]

    def copy(self, keys: np.ndarray, norms: np.ndarray | None, values: np.ndarray) -> None:
        """Rows with their norms (None: no norms, for an index without a matrix)."""
        self._write(0, keys.astype("<i8"))
        if norms is not None:
            self._write(1, norms.astype("<f4"))
        self._write(2, values.astype("<f4", copy=False))
        self.rows += len(keys)

    def add_norms(self, norms: np.ndarray) -> None:
        """Norms of rows whose keys and values are in the columns already."""
        self._write(1, norms.astype("<f4"))

    def add_gone(self, keys: np.ndarray) -> None:
        self._write(3, keys.astype("<i8"))
        self.gone += len(keys)

    def close(self) -> None:
        """fsync every column (before a manifest or the store may name what was written) and
        close them."""
        try:
            for fd in self.fds:
                os.fsync(fd)
            if self.created:
                fsutil.fsync_dir(self.folder.path)
        finally:
            self._close_fds()

    def _close_fds(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds = []


def _commit(folder: Folder, man: Manifest) -> Path:
    path = folder.search_file("matrix", man.seq)
    fsutil.write_bytes_atomic(path, man.to_bytes())
    return path


Merge = tuple[str, int, int, tuple[int, int]]  # appends to record as one: generation, rows, CRC-32s


def _add_norms(out: _Appender, folder: Folder, cols: Values, start: int, stop: int,
               records: list[tuple[int, int, int, int]]) -> tuple[tuple[int, int], Merge | None]:
    """Append the norms of rows ``start..stop`` of ``cols`` (in the columns already); the CRC-32 of
    their keys and of their values (for the manifest's segment) and, when the store's ``records``
    of those rows' appends tile them and each matches its bytes, the one record that may replace
    them (``Store.merge_appends``: so that many small writes do not leave as many records)."""
    assert cols.generation is not None
    crc_keys = crc_values = 0
    # (only two or more records can merge: one, as after a load, is not checksummed twice)
    found = [[s, e, 0, 0] for s, e, _k, _v in records] if len(records) > 1 else []
    i = 0
    for at, keys, values in _row_blocks(folder, cols, start, stop):
        out.add_norms(_norms(values))
        crc_keys, crc_values = zlib.crc32(_bytes(keys), crc_keys), zlib.crc32(_bytes(values), crc_values)
        pos, end = at, at + len(keys)
        while pos < end and i < len(found):  # the same bytes, cut at the records' bounds
            r = found[i]
            hi = min(r[1], end)
            r[2] = zlib.crc32(_bytes(keys[pos - at : hi - at]), r[2])
            r[3] = zlib.crc32(_bytes(values[pos - at : hi - at]), r[3])
            pos = hi
            i += pos == r[1]
    tiled = len(records) > 1 and records[0][0] == start and records[-1][1] == stop and all(
        a[1] == b[0] for a, b in zip(records, records[1:], strict=False))
    sound = tiled and all(tuple(f) == tuple(r) for f, r in zip(found, records, strict=True))
    merge = (cols.generation, start, stop, (crc_keys, crc_values)) if sound else None
    return (crc_keys, crc_values), merge


def _fresh(folder: Folder, generation: str) -> bool:
    """Whether no manifest has ever named rows of ``generation`` (its norms and tombstones are
    empty): a first matrix may then be made in place, without copying its values."""
    try:
        return all(folder.vector_file(generation, c).stat().st_size == 0 for c in ("norms", "gone"))
    except FileNotFoundError:
        return False


def build(store: Store, folder: Folder, dimensions: int, compact_share: float) -> Path:
    """A new matrix of the store's live vectors; its manifest's path. In place over the store's
    generation when no manifest has named it yet (its norms and tombstones written, its values
    not copied) and few of its rows are gone, else a compaction into a new generation. Call with
    the writer lock."""
    with store.snapshot():
        seq = store.last_seq()
        cols = open_values(store, dimensions)
        keep = _live_rows(store, cols)  # (MissingValues: a column lacks rows the store has)
        gone = len(cols.keys) - len(keep)
        in_place = cols.generation is not None and _fresh(folder, cols.generation) and (
            gone <= compact_share * len(cols.keys))
        if in_place:
            path, merge = _matrix_in_place(folder, cols, keep, seq, _records(store, cols, 0))
    if not in_place:
        return _compact(store, folder, cols, keep, seq)
    if merge is not None:
        store.merge_appends(*merge)
    return path


def _live_rows(store: Store, cols: Values, block: int = 1 << 16) -> np.ndarray:
    """The rows of ``cols`` that hold the store's vectors (call in the snapshot ``cols`` was opened
    in), ascending; ``MissingValues`` when one is not there. Found a block of keys at a time: the
    whole list of keys, and the temporaries of finding them, cost ~40 bytes a vector at once
    (841 MB of peak RSS after a 20M load), the rows alone 8."""
    keep = np.empty(store.count(), np.intp)
    cursor, at = store.keys(), 0
    while rows := cursor.fetchmany(block):
        keep[at : at + len(rows)] = cols.rows_of(np.fromiter((r[0] for r in rows), np.int64, len(rows)))
        at += len(rows)
    return keep[:at]


def _records(store: Store, cols: Values, start: int) -> list[tuple[int, int, int, int]]:
    """The store's records of the appends to ``cols``' generation from row ``start`` on."""
    assert cols.generation is not None
    return [r for r in store.appends(cols.generation) if r[0] >= start and r[1] <= len(cols.keys)]


def _matrix_in_place(folder: Folder, cols: Values, keep: np.ndarray, seq: int,
                     records: list[tuple[int, int, int, int]]) -> tuple[Path, Merge | None]:
    """The first matrix of generation ``cols``: its norms and tombstones (the rows not in
    ``keep``) written, one segment; its manifest's path and the appends' records to merge."""
    assert cols.generation is not None
    rows, dimensions = cols.values.shape
    out = _Appender(folder, cols.generation, dimensions, (rows, 0, 0))
    try:
        (crc_keys, crc_values), merge = _add_norms(out, folder, cols, 0, rows, records)
        dropped = np.ones(rows, bool)
        dropped[keep] = False
        out.add_gone(cols.keys[dropped])
    finally:
        out.close()
    crcs = (crc_keys, out.crcs[1], crc_values, out.crcs[3])
    return _commit(folder, Manifest(cols.generation, dimensions, seq, (Segment(seq, rows, out.gone, crcs),))), merge


def fold(old: Matrix, store: Store, folder: Folder, compact_share: float) -> Path | None:
    """Bring ``old`` up to the store: the rows written since it are in its generation's columns
    already (past its end); write their norms and tombstone the keys removed since (``_compact``
    into a new generation instead when more than ``compact_share`` of the rows would be
    tombstones); the new manifest's path. None when ``old`` is not of the store's generation
    (a whole file of an older vcli, or replaced): then ``build``. ``RuntimeError`` when ``old``
    does not add up to the store. Call with the writer lock."""
    man = old.manifest
    dims = old.values.shape[1]
    with store.snapshot():
        seq = store.last_seq()
        generation, rows = store.tail()
        if man is None or generation != man.generation or rows < man.rows:
            return None
        cols = open_values(store, dims)
        removed = np.sort(np.asarray(store.removed_keys_since(old.seq), np.int64))
        if len(removed) and not in_sorted(removed, cols.keys).all():
            raise RuntimeError("keys removed since the matrix are not in its columns")
        if rows - man.gone - len(removed) != store.count():
            raise RuntimeError(f"the columns' {rows - man.gone - len(removed)} live rows are not the "
                               f"store's {store.count()}")
        compacting = man.gone + len(removed) > compact_share * rows
        if compacting:
            dropped = np.sort(np.concatenate([old.gone, removed]))  # (they never share a key)
            keep = np.flatnonzero(~in_sorted(cols.keys, dropped))
        else:
            path, merge = _append_norms(man, cols, removed, folder, seq, _records(store, cols, man.rows))
    if compacting:
        return _compact(store, folder, cols, keep, seq)
    if merge is not None:
        store.merge_appends(*merge)
    return path


def _append_norms(man: Manifest, cols: Values, removed: np.ndarray, folder: Folder, seq: int,
                  records: list[tuple[int, int, int, int]]) -> tuple[Path, Merge | None]:
    """``fold``'s common case: the norms of the rows past ``man``'s end and the keys removed since
    appended, one segment more; the new manifest's path and the appends' records to merge."""
    rows, dims = cols.values.shape
    merge = None
    if rows > man.rows or len(removed):
        out = _Appender(folder, man.generation, dims, (rows, man.rows, man.gone))
        try:
            (crc_keys, crc_values), merge = _add_norms(out, folder, cols, man.rows, rows, records)
            out.add_gone(removed)
        finally:
            out.close()
        crcs = (crc_keys, out.crcs[1], crc_values, out.crcs[3])
        man = man._replace(segments=(*man.segments, Segment(seq, rows, out.gone, crcs)))
    return _commit(folder, man._replace(seq=seq)), merge


def _compact(store: Store, folder: Folder, cols: Values, keep: np.ndarray, seq: int) -> Path:
    """A new generation at ``seq`` of rows ``keep`` (ascending) of ``cols``, which becomes the
    store's (``_copy_rows``; call it with the writer lock, after the snapshot ``cols`` was read in
    has ended); its manifest's path. The old generation's files are removed by the refresh
    (``other_generations``); a reader that has them open keeps reading them."""
    generation, out = _copy_rows(store, folder, cols, keep, seq, norms=True)
    crcs = (out.crcs[0], out.crcs[1], out.crcs[2], out.crcs[3])
    return _commit(folder, Manifest(generation, out.dimensions, seq, (Segment(seq, out.rows, 0, crcs),)))


def compact_values(store: Store, folder: Folder, dimensions: int) -> None:
    """For an index too small for a matrix: its live rows copied into a new generation (without
    norms: a first matrix may later be made in place) once the rows upserted again or deleted
    have piled up (``SearchFiles.refresh``). Call with the writer lock."""
    with store.snapshot():
        seq = store.last_seq()
        cols = open_values(store, dimensions)
        keep = _live_rows(store, cols)
    _copy_rows(store, folder, cols, keep, seq, norms=False)


def _copy_rows(store: Store, folder: Folder, cols: Values, keep: np.ndarray, seq: int, *,
               norms: bool) -> tuple[str, _Appender]:
    """Rows ``keep`` (ascending) of ``cols`` copied into a new generation at ``seq`` (with their
    norms: ``norms``), which becomes the store's in a transaction of its own; the generation and
    its appender (closed). Every append a kept row comes from is checked against the CRC-32s the
    store recorded with it as it is copied (``_AppendChecks``): a damaged one raises
    ``MissingValues`` and the store and its generation are left as they were, for the copy would
    record fresh checksums of damaged values. The new generation's files go on any failure."""
    generation = new_generation(seq)
    out = _Appender(folder, generation, cols.values.shape[1], create=True)
    committed = False
    try:
        try:
            if len(keep):
                checks = _AppendChecks(store, cols, keep)
                for at, keys, values in _row_blocks(folder, cols, 0, len(cols.keys)):
                    checks.feed(at, keys, values)
                    rows = keep[np.searchsorted(keep, at) : np.searchsorted(keep, at + len(keys))] - at
                    out.copy(keys[rows], _norms(values[rows]) if norms else None, values[rows])
        finally:
            out.close()
        with store.mutation_free_transaction():
            if store.tail() != (cols.generation, len(cols.keys)):
                raise RuntimeError("the columns changed while they were compacted")
            store.record_append(generation, 0, out.rows, (out.crcs[0], out.crcs[2]), replace=True)
        committed = True
    finally:
        # (the writer lock is held: nobody else knows this generation unless the store names it,
        # as it does when an interrupt landed between the commit and ``committed = True``)
        if not committed and not _named(store, generation):
            for column in COLUMNS:
                folder.vector_file(generation, column).unlink(missing_ok=True)
    return generation, out


def _named(store: Store, generation: str) -> bool:
    """Whether the store's committed generation is ``generation`` (True when it cannot tell: the
    files are then kept, and a later refresh removes them if they are not the store's)."""
    try:
        return store.tail()[0] == generation
    except sqlite3.Error:
        return True


class _AppendChecks:
    """The CRC-32s of the rows a compaction reads, cut at the bounds of the store's records of
    their appends: ``feed`` raises ``MissingValues`` at the end of an append that holds a kept
    row and whose bytes differ from its record (or rows no record covers). Appends whose rows are
    all dropped are not judged: a compaction is how their damage goes away."""

    def __init__(self, store: Store, cols: Values, keep: np.ndarray):
        assert cols.generation is not None
        self.generation, n, self.keys = cols.generation, len(cols.keys), cols.keys
        spans: list[list] = []  # [start, end, crc of keys, crc of values] (None: no record)
        at = 0
        for start, end, crc_keys, crc_values in store.appends(cols.generation):
            if end > n:
                break
            if start > at:  # rows no record covers
                spans.append([at, start, None, None])
            elif start < at:  # records that overlap: not to be trusted
                if end > at:
                    spans.append([at, end, None, None])
                at = max(at, end)
                continue
            spans.append([start, end, crc_keys, crc_values])
            at = end
        if at < n:
            spans.append([at, n, None, None])
        lo, hi = np.searchsorted(keep, [s[0] for s in spans]), np.searchsorted(keep, [s[1] for s in spans])
        self.spans = [(s, bool(h > lo_)) for s, lo_, h in zip(spans, lo, hi, strict=True) if s[1] > s[0]]
        self.found = [0, 0]
        self.i = 0

    def feed(self, at: int, keys: np.ndarray, values: np.ndarray) -> None:
        pos, end = at, at + len(keys)
        while pos < end and self.i < len(self.spans):
            (start, stop, crc_keys, crc_values), kept = self.spans[self.i]
            hi = min(stop, end)
            self.found[0] = zlib.crc32(_bytes(keys[pos - at : hi - at]), self.found[0])
            self.found[1] = zlib.crc32(_bytes(values[pos - at : hi - at]), self.found[1])
            pos = hi
            if pos == stop:
                if kept and self.found != [crc_keys, crc_values]:
                    exc = MissingValues(
                        f"rows {start:,} to {stop:,} of values-{self.generation}.keys/.f32 differ from the "
                        "checksums recorded when they were written: not compacted, the index was left as it "
                        "was; run `vcli check` on this index")
                    exc.refused = (self.generation, start, stop, int(self.keys[start]), int(self.keys[stop - 1]))
                    raise exc
                self.found = [0, 0]
                self.i += 1


def in_sorted(keys: np.ndarray, sorted_keys: np.ndarray) -> np.ndarray:
    """Which of ``keys`` are in ``sorted_keys`` (ascending), by binary search."""
    if not len(sorted_keys):
        return np.zeros(len(keys), bool)
    pos = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
    return sorted_keys[pos] == keys


def generation_of(path: Path) -> str | None:
    """The generation the manifest ``path`` names; None for a whole-file matrix or an unreadable
    manifest."""
    if path.suffix != ".manifest":
        return None
    try:
        return Manifest.from_bytes(path.read_bytes()).generation
    except (OSError, ValueError):
        return None


def other_generations(folder: Folder, store: Store, keep: Path | None) -> Iterator[Path]:
    """Column files of generations other than the store's and the one manifest ``keep`` names:
    left by a compaction, or by a write or build killed before it committed."""
    wanted = {store.tail()[0], None if keep is None else generation_of(keep)}
    for gen, path in folder.vector_files():
        if gen not in wanted:
            yield path


def segment_problems(m: Matrix, folder: Folder) -> str | None:
    """``vcli check``'s look at a generation's columns: every segment's bytes match its checksums,
    its keys ascend, and its tombstones are keys of its rows, once each. What is wrong, or None."""
    man = m.manifest
    if man is None:
        return None
    raw_gone = map_column(folder.vector_file(man.generation, "gone"), "<i8", man.gone)
    bad = []
    rows = tombs = 0
    for i, s in enumerate(man.segments):
        parts = (m.keys[rows : s.rows], m.norms[rows : s.rows], m.values[rows : s.rows], raw_gone[tombs : s.gone])
        if tuple(zlib.crc32(_bytes(p)) for p in parts) != s.crcs:
            bad.append(str(i + 1))
        rows, tombs = s.rows, s.gone
    if bad:
        return (f"has {len(bad)} of its {len(man.segments)} segments damaged (segment {', '.join(bad[:5])}: "
                "the bytes differ from their checksums)")
    keys, gone = np.asarray(m.keys), np.asarray(m.gone)
    if len(keys) > 1 and not (np.diff(keys) > 0).all():
        return "has keys out of order"
    if len(gone) and ((np.diff(gone) == 0).any() or not in_sorted(gone, keys).all()):
        return "has tombstones that are not keys of its rows, or that repeat"
    return None
