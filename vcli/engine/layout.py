"""What an index folder holds, by name, and the clock every timestamp comes from.

    <data dir>/<name>/
      index.toml             configuration (catalog.py)
      store.sqlite (-wal, -shm)   every vector: the truth (store/)
      lock                   the writer lock (lock.py)
      matrix-<seq>.f32       every vector as of mutation <seq>, for search (matrix.py, searchfiles.py)
      graph-<seq>.usearch    for large indexes, a usearch graph of that matrix (graph.py)
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
# Files of the index that vcli opens by name (a symbolic link in their place is refused).
OWN_FILES = (CONFIG_FILE, STORE_FILE, STORE_FILE + "-wal", STORE_FILE + "-shm", LOCK_FILE, BUILD_LOCK_FILE)
SEARCH_FILE_SUFFIX = {"matrix": "f32", "graph": "usearch"}
_SEARCH_FILE = re.compile(r"(matrix|graph)-(\d+)\.(f32|usearch)")
_SEARCH_TEMP = re.compile(r"\.(matrix|graph)-\d+\.(f32|usearch)\.tmp-[0-9a-f]+")


def now_iso() -> str:
    """The current UTC time as Vectorize writes timestamps (``2026-01-31T12:00:00.000000Z``)."""
    return iso(datetime.now(timezone.utc))


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class SearchFile(NamedTuple):
    kind: str  # "matrix" or "graph"
    seq: int  # the mutation it reflects
    path: Path


class Folder:
    """The paths of one index folder."""

    def __init__(self, path: Path):
        self.path = path
        self.config = path / CONFIG_FILE
        self.store = path / STORE_FILE
        self.lock = path / LOCK_FILE
        self.build_lock = path / BUILD_LOCK_FILE

    def search_file(self, kind: str, seq: int) -> Path:
        return self.path / f"{kind}-{seq}.{SEARCH_FILE_SUFFIX[kind]}"

    def search_files(self) -> list[SearchFile]:
        """The matrix and graph files, newest first."""
        found = []
        for entry in os.scandir(self.path):
            m = _SEARCH_FILE.fullmatch(entry.name)
            if m and SEARCH_FILE_SUFFIX[m.group(1)] == m.group(3):
                found.append(SearchFile(m.group(1), int(m.group(2)), Path(entry.path)))
        return sorted(found, key=lambda f: -f.seq)

    def newest_matrix(self) -> SearchFile | None:
        return next((f for f in self.search_files() if f.kind == "matrix"), None)

    def newest_graph(self) -> SearchFile | None:
        return next((f for f in self.search_files() if f.kind == "graph"), None)

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
    return int(_SEARCH_FILE.fullmatch(path.name).group(2))
