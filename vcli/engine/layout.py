"""What an index folder holds, by name, and the clock every timestamp comes from.

    <data dir>/<name>/
      index.toml             configuration (catalog.py)
      store.sqlite (-wal, -shm)   every vector's id, namespace, metadata and key: the truth
                             (store/), with the committed rows of the columns
      lock                   the writer lock (lock.py)
      values-<gen>.keys|f32   the append-only columns that are the one home of the float32
                             values (store/appender.py writes them, columns.py reads them); not
                             named vectors-*, which a vcli before them removes as its own files
      vectors-<gen>.norms|gone   their norms and tombstones, derived, up to the manifest (matrix.py)
      matrix-<seq>.manifest  every vector as of mutation <seq>, for search: the prefix of the
                             columns of generation <gen> that the matrix is (matrix.py, searchfiles.py)
      matrix-<seq>.f32       the matrix of vcli before generations, in one file (still read)
      graph-<seq>-<lo>-<hi>.usearch   for large indexes, a usearch graph of the vectors of
                             matrix-<seq> whose keys are lo..hi: one part of the graph (graph.py)
      build.lock             held by the process building the graph (builder.py)
      .<file>.tmp-<hex>      a file being written (fsutil.py), renamed into place when whole

Nothing here touches the disk beyond listing a folder.
"""

from __future__ import annotations

import os
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import NamedTuple

CONFIG_FILE = "index.toml"
STORE_FILE = "store.sqlite"
LOCK_FILE = "lock"
BUILD_LOCK_FILE = "build.lock"
LISTING_FILE = "listing"  # touched by list-vectors: writers keep what they remove while it is fresh
# Files of the index that vcli opens by name (a symbolic link in their place is refused).
OWN_FILES = (CONFIG_FILE, STORE_FILE, STORE_FILE + "-wal", STORE_FILE + "-shm", LOCK_FILE, BUILD_LOCK_FILE,
             LISTING_FILE)
SEARCH_FILE_SUFFIX = {"matrix": "manifest", "graph": "usearch"}
_SEARCH_FILE = re.compile(r"(matrix|graph)-(\d+)(?:-(\d+)-(\d+))?\.(manifest|f32|usearch)")
_SEARCH_TEMP = re.compile(r"\.(matrix|graph)-[0-9-]+\.(manifest|f32|usearch)\.tmp-[0-9a-f]+")
_SUFFIXES = {"matrix": ("manifest", "f32"), "graph": ("usearch",)}  # (f32: the one-file matrix before generations)
# (vectors-<gen>.keys and .f32: a matrix generation of a vcli before the columns, removed as
# another generation's once the store is migrated)
_VECTOR_FILE = re.compile(r"values-(\d+-[0-9a-f]{8})\.(?:keys|f32)|vectors-(\d+-[0-9a-f]{8})\.(?:keys|norms|f32|gone)")
VECTOR_COLUMNS = ("keys", "norms", "f32", "gone")
VALUE_COLUMNS = ("keys", "f32")  # the truth (``values-<gen>``); norms and gone are derived


def new_generation(seq: int) -> str:
    """A new generation's name: the mutation it begins at and 8 random hex digits (never reused)."""
    return f"{seq}-{os.urandom(4).hex()}"  # (os.urandom: the secrets module costs ~10 ms to import)


def now_iso() -> str:
    """The current UTC time as Vectorize writes timestamps (``2026-01-31T12:00:00.000000Z``)."""
    return iso(datetime.now(timezone.utc))


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class SearchFile(NamedTuple):
    kind: str  # "matrix" or "graph"
    seq: int  # the mutation it reflects
    path: Path
    # a graph part's keys: it holds every vector of matrix-<seq> whose key is lo..hi (inclusive);
    # (0, -1) for a matrix, or a graph file of the one-part layout before parts (superseded)
    lo: int = 0
    hi: int = -1

    @property
    def part(self) -> bool:
        """A graph part (a graph file in the current layout)."""
        return self.kind == "graph" and self.hi >= self.lo

    def overlaps(self, other: SearchFile) -> bool:
        return self.lo <= other.hi and other.lo <= self.hi


class Folder:
    """The paths of one index folder."""

    def __init__(self, path: Path):
        self.path = path
        self.config = path / CONFIG_FILE
        self.store = path / STORE_FILE
        self.lock = path / LOCK_FILE
        self.build_lock = path / BUILD_LOCK_FILE
        self.listing = path / LISTING_FILE

    def search_file(self, kind: str, seq: int, keys: tuple[int, int] | None = None) -> Path:
        """The path of a matrix, or (given its ``keys``, lo and hi) of a graph part."""
        part = "" if keys is None else f"-{keys[0]}-{keys[1]}"
        return self.path / f"{kind}-{seq}{part}.{SEARCH_FILE_SUFFIX[kind]}"

    def search_files(self) -> list[SearchFile]:
        """The matrix and graph files, newest first."""
        found = []
        for entry in os.scandir(self.path):
            m = _SEARCH_FILE.fullmatch(entry.name)
            if m and m.group(5) in _SUFFIXES[m.group(1)] and (m.group(3) is None or m.group(1) == "graph"):
                keys = (0, -1) if m.group(3) is None else (int(m.group(3)), int(m.group(4)))
                found.append(SearchFile(m.group(1), int(m.group(2)), Path(entry.path), *keys))
        # (the wider of two parts first; of two matrices of one mutation, the manifest)
        return sorted(found, key=lambda f: (-f.seq, f.lo, -f.hi, f.path.suffix == ".f32"))

    def newest_matrix(self) -> SearchFile | None:
        return next((f for f in self.search_files() if f.kind == "matrix"), None)

    def graph_parts(self, matrix: SearchFile) -> list[SearchFile]:
        """The graph parts a search of ``matrix`` uses, in key order: of the parts not newer than
        it, the newest first, each taken unless its keys overlap one taken already (an older
        part that a builder has replaced or extended and not removed yet, or an older layout)."""
        taken: list[SearchFile] = []
        for f in self.search_files():
            if f.part and f.seq <= matrix.seq and not any(f.overlaps(t) for t in taken):
                taken.append(f)
        return sorted(taken, key=lambda f: f.lo)

    def vector_file(self, generation: str, column: str) -> Path:
        """A column (keys, norms, f32 or gone) of matrix generation ``generation``."""
        return self.path / f"{'values' if column in VALUE_COLUMNS else 'vectors'}-{generation}.{column}"

    def vector_files(self) -> list[tuple[str, Path]]:
        """``(generation, path)`` of every column file of a matrix generation."""
        found = []
        for entry in os.scandir(self.path):
            m = _VECTOR_FILE.fullmatch(entry.name)
            if m:
                found.append((m.group(1) or m.group(2), Path(entry.path)))
        return sorted(found)

    def search_temp_files(self, kind: str | None = None) -> list[Path]:
        """Search files (of ``kind``, or all) being written, or left half-written by a killed
        refresh or build."""
        found = []
        for entry in os.scandir(self.path):
            m = _SEARCH_TEMP.fullmatch(entry.name)
            if m and kind in (None, m.group(1)):
                found.append(Path(entry.path))
        return found


def seq_of(path: Path) -> int:
    """The mutation a search file's name says it reflects."""
    m = _SEARCH_FILE.fullmatch(path.name)
    if m is None:
        raise ValueError(f"{path.name} is not a search file's name")
    return int(m.group(2))
