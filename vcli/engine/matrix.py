"""The matrix: a derived, memory-mapped float32 copy of every vector, for exact search.

A matrix is a *generation* of four append-only column files and a manifest that says how much of
them a reader may use:

    vectors-<gen>.keys     int64 keys, ascending
    vectors-<gen>.norms    float32 L2 norm of each row
    vectors-<gen>.f32      float32 values, ``dimensions`` a row
    vectors-<gen>.gone     int64 tombstones: keys of rows above that the store no longer has
    matrix-<seq>.manifest  the generation, ``dimensions`` and, per fold that appended to it, a
                           *segment*: the mutation it reflects, the rows and tombstones the columns
                           hold up to its end, and a CRC-32 of what it appended to each column;
                           itself checksummed (``Manifest.to_bytes``)

``<gen>`` is the mutation the generation began at and 8 random hex digits: never reused, so a
reader holding an old manifest never finds another generation's files under its names.

* **Build** (``build``) writes a new generation from the store's live vectors, one segment.
* **Fold** (``fold``) brings it up to the store: the rows written since the manifest's mutation
  (new rows always have larger keys) and the keys removed since go at the end of the columns
  (``os.pwrite`` at the committed length), which are fsynced; then the new manifest is written
  under a temporary name, fsynced and renamed, and the old one removed. A fold costs what it adds,
  not the size of the index. When more than ``Tuning.fold_compact_share`` of the rows are
  tombstones, the fold *compacts* instead: the live rows and the new ones are copied into a new
  generation (a copy at disk speed, not a read of the store).

Readers map only the prefix their manifest names (``Matrix.load``), so a fold that grows the files
beside them changes nothing they see, and bytes past the committed length (left by a fold that
was killed) are never read: the next fold, which holds the writer lock, writes over them. Nothing
is ever truncated (a mapped file that shrinks kills its reader with SIGBUS) and nothing committed
is written twice. A reader drops tombstoned rows exactly as it drops keys removed since the
manifest's mutation (``gone`` joins them).

A matrix file of an older vcli (``matrix-<seq>.f32``: header, keys, norms, values in one file)
still opens (``_load_whole``); the first fold copies it into a generation.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np

from . import fsutil
from .layout import Folder
from .store import Store

MAGIC = b"VCLIMAT1"  # the whole-file matrix of vcli before generations
HEADER = struct.Struct("<8sQQI")
HEADER_SIZE = 64
CHUNK = 2048  # rows per step while writing (small: the float64 copy for norms is 8 bytes a number)
COPY_ROWS = CHUNK * 32  # rows per step while copying rows of one generation into another
MANIFEST_FORMAT = 1
COLUMNS = ("keys", "norms", "f32", "gone")
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


def _map(path: Path, dtype: str, count: int) -> np.ndarray:
    """The first ``count`` numbers of column ``path``, memory-mapped read-only."""
    size = path.stat().st_size  # (FileNotFoundError for a generation removed meanwhile)
    need = count * np.dtype(dtype).itemsize
    if size < need:
        raise ValueError(f"{path.name} holds {size:,} bytes, fewer than the {need:,} its manifest names")
    if not count:
        return np.zeros(0, dtype)
    # a plain view of the map: np.memmap's own indexing costs ~25 µs a call in Python
    return np.memmap(path, dtype=dtype, mode="r", shape=(count,)).view(np.ndarray)


def _open_generation(folder: Folder, man: Manifest) -> Matrix:
    n, d = man.rows, man.dimensions
    keys = _map(folder.vector_file(man.generation, "keys"), "<i8", n)
    norms = _map(folder.vector_file(man.generation, "norms"), "<f4", n)
    values = _map(folder.vector_file(man.generation, "f32"), "<f4", n * d).reshape(n, d)
    gone = np.sort(_map(folder.vector_file(man.generation, "gone"), "<i8", man.gone), kind="stable")
    return Matrix(man.seq, keys, norms, values, gone, man)


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
    with np.errstate(over="ignore"):  # in float64: float32 squares overflow at 1.8e19
        return np.linalg.norm(block.astype(np.float64), axis=1).astype(np.float32)


class _Appender:
    """Appends rows and tombstones to a generation's columns from ``at`` (the manifest that
    commits what they hold; None for a new generation, whose files are created), keeping the
    CRC-32 of what it wrote to each; fsyncs them on ``close``."""

    def __init__(self, folder: Folder, generation: str, dimensions: int, at: Manifest | None):
        rows, gone = (at.rows, at.gone) if at is not None else (0, 0)
        self.rows, self.gone = rows, gone
        self.offsets = [rows * 8, rows * 4, rows * dimensions * 4, gone * 8]
        self.crcs = [0, 0, 0, 0]
        flags = os.O_WRONLY | (os.O_CREAT | os.O_EXCL if at is None else 0)
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

    def add(self, keys: np.ndarray, values: np.ndarray) -> None:
        self.copy(keys, _norms(values), values)

    def copy(self, keys: np.ndarray, norms: np.ndarray, values: np.ndarray) -> None:
        """Rows whose norms are known (another generation's)."""
        self._write(0, keys.astype("<i8"))
        self._write(1, norms.astype("<f4"))
        self._write(2, values.astype("<f4", copy=False))
        self.rows += len(keys)

    def add_gone(self, keys: np.ndarray) -> None:
        self._write(3, keys.astype("<i8"))
        self.gone += len(keys)

    def segment(self, seq: int) -> Segment:
        return Segment(seq, self.rows, self.gone, (self.crcs[0], self.crcs[1], self.crcs[2], self.crcs[3]))

    def close(self) -> None:
        """fsync every column (before a manifest may name what was written) and close them."""
        try:
            for fd in self.fds:
                os.fsync(fd)
        finally:
            self._close_fds()

    def _close_fds(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds = []


def _new_generation(seq: int) -> str:
    return f"{seq}-{os.urandom(4).hex()}"  # (os.urandom: the secrets module costs ~10 ms to import)


def _commit(folder: Folder, man: Manifest) -> Path:
    path = folder.search_file("matrix", man.seq)
    fsutil.write_bytes_atomic(path, man.to_bytes())
    return path


def _new(folder: Folder, seq: int, dimensions: int, fill) -> Path:
    """A new generation at mutation ``seq`` whose one segment ``fill(appender)`` writes; its
    manifest's path. Killed or failing before the manifest is renamed into place, it leaves files
    of a generation no manifest names (the next refresh removes them: ``other_generations``)."""
    generation = _new_generation(seq)
    out = _Appender(folder, generation, dimensions, None)
    try:
        fill(out)
    finally:
        out.close()
    return _commit(folder, Manifest(generation, dimensions, seq, (out.segment(seq),)))


def build(store: Store, folder: Folder, dimensions: int) -> Path:
    """Write a new generation from the store's live vectors; return its manifest's path."""
    with store.snapshot():
        seq = store.last_seq()
        n = store.count()

        def fill(out: _Appender) -> None:
            cur = store.vectors()
            while rows := cur.fetchmany(CHUNK):
                block = np.frombuffer(b"".join(r[1] for r in rows), "<f4").reshape(len(rows), dimensions)
                out.add(np.fromiter((r[0] for r in rows), np.int64, len(rows)), block)
            if out.rows != n:  # pragma: no cover - the snapshot makes this impossible
                raise RuntimeError("the store changed while the matrix was written")

        return _new(folder, seq, dimensions, fill)


def fold(old: Matrix, store: Store, folder: Folder, compact_share: float) -> Path | None:
    """Bring ``old`` up to the store: append the rows written since it and tombstone the keys
    removed since (``compact`` into a new generation when ``old`` is a whole file of an older
    vcli, or more than ``compact_share`` of the rows would be tombstones); the new manifest's path.
    None when the store's rows since do not all come after ``old``'s keys (then ``build`` anew);
    ``RuntimeError`` when ``old`` does not add up to the store."""
    dims = old.values.shape[1]
    with store.snapshot():
        seq = store.last_seq()
        removed = np.sort(np.asarray(store.removed_since(old.seq), np.int64))
        rows = sorted(store.rows_since(old.seq))
        new_keys = np.fromiter((r[0] for r in rows), np.int64, len(rows))
        if len(rows) and len(old.keys) and new_keys[0] <= old.keys[-1]:
            return None
        if len(removed) and not in_sorted(removed, old.keys).all():
            raise RuntimeError("keys removed since the matrix are not in it")
        if old.live() - len(removed) + len(rows) != store.count():
            raise RuntimeError(f"{old.live() - len(removed)} kept and {len(rows)} new rows are not the "
                               f"store's {store.count()}")
        new_vecs = np.frombuffer(b"".join(r[1] for r in rows), "<f4").reshape(len(rows), dims)
        man = old.manifest
        if man is None or len(old.gone) + len(removed) > compact_share * (len(old.keys) + len(rows)):
            return compact(old, removed, new_keys, new_vecs, seq, folder)
        if len(rows) or len(removed):
            out = _Appender(folder, man.generation, dims, man)
            try:
                out.add(new_keys, new_vecs)
                out.add_gone(removed)
            finally:
                out.close()
            man = man._replace(segments=(*man.segments, out.segment(seq)))
        return _commit(folder, man._replace(seq=seq))


def compact(old: Matrix, removed: np.ndarray, new_keys: np.ndarray, new_vecs: np.ndarray, seq: int,
            folder: Folder) -> Path:
    """A new generation at ``seq`` of ``old``'s live rows (neither tombstoned nor in ``removed``,
    sorted) followed by ``new_keys`` / ``new_vecs``; its manifest's path."""
    dropped = np.sort(np.concatenate([old.gone, removed]))  # (they never share a key)
    keep = np.flatnonzero(~in_sorted(old.keys, dropped)) if len(dropped) else None

    def fill(out: _Appender) -> None:
        for start in range(0, len(old.keys) if keep is None else len(keep), COPY_ROWS):
            rows = slice(start, start + COPY_ROWS) if keep is None else keep[start : start + COPY_ROWS]
            out.copy(np.asarray(old.keys[rows]), np.asarray(old.norms[rows]), np.asarray(old.values[rows]))
        out.add(new_keys, new_vecs)

    return _new(folder, seq, old.values.shape[1], fill)


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


def other_generations(folder: Folder, keep: Path | None) -> Iterator[Path]:
    """Column files of generations other than the one manifest ``keep`` names: left by a fold
    that compacted, or by a build killed before its manifest was in place."""
    generation = None if keep is None else generation_of(keep)
    for gen, path in folder.vector_files():
        if gen != generation:
            yield path


def segment_problems(m: Matrix, folder: Folder) -> str | None:
    """``vcli check``'s look at a generation's columns: every segment's bytes match its checksums,
    its keys ascend, and its tombstones are keys of its rows, once each. What is wrong, or None."""
    man = m.manifest
    if man is None:
        return None
    raw_gone = _map(folder.vector_file(man.generation, "gone"), "<i8", man.gone)
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
