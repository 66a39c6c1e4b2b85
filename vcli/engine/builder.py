"""The graph builder: makes the graph of a large index's newest matrix, off the writer's path.

A load returns as soon as its vectors are in the store and the matrix (durable, and queryable
exactly); the graph of that matrix, which takes minutes at a million vectors, is built afterwards
by ``python -m vcli.engine.builder <folder> <dimensions> <metric>``, a process of its own that
``start`` launches (detached, at low priority) and that outlives the command that started it.

* One builder per index: it holds ``build.lock`` (``lock.writer_lock``, not the writer lock: writes
  go on meanwhile). A second one finds it taken and leaves; the first looks again before it ends,
  so a matrix written meanwhile is not missed.
* It reads only the matrix (never the store), builds or catches up ``graph-<seq>.usearch`` and
  renames it into place whole; older graphs are removed after. A reader uses a graph only when it
  is of the same mutation as the newest matrix, so until the graph lands queries are answered
  exactly from the matrix, and no reader ever waits for a build.
* Killed at any point it leaves at most a temporary file (removed by the next builder, or by a
  writer when no builder holds the lock) and the index as it was; the next write, or the next
  query that finds the graph missing, starts another.

``Tuning.graph_in_background=False`` builds in the calling process instead (tests use it to get a
graph deterministically).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ..errors import LockTimeout, StorageError
from .layout import Folder, SearchFile
from .lock import writer_lock

NICE = 10  # a builder yields the cores to queries and writes
# the builders this process started (folder path, ``subprocess.Popen``), reaped as they end
_children: list[tuple[Path, object]] = []


def needs_graph(folder: Folder) -> bool:
    """Whether the newest matrix has no graph of its own."""
    matrix, graph = folder.newest_matrix(), folder.newest_graph()
    return matrix is not None and (graph is None or graph.seq != matrix.seq)


def running(folder: Folder) -> bool:
    """Whether a builder is at work on this index: one this process started and that has not
    ended (it may not have taken the lock yet), or one holding the build lock."""
    global _children
    _children = [(path, p) for path, p in _children if p.poll() is None]
    if any(path == folder.path for path, _ in _children):
        return True
    if not folder.build_lock.exists():
        return False
    try:
        with writer_lock(folder.build_lock, 0):
            return False
    except LockTimeout:
        return True
    except (OSError, StorageError):
        return False


def start(folder: Folder, dimensions: int, metric: str) -> bool:
    """Launch a detached builder for the index in ``folder`` unless one is running; whether one
    was launched. Never raises for a folder it cannot build in (read-only, or gone): the builder
    then ends at once, and queries stay exact."""
    import subprocess  # lazy: a write that starts no builder does not need it

    if running(folder) or not os.access(folder.path, os.W_OK):
        return False
    try:
        _children.append((folder.path, subprocess.Popen(
            [sys.executable, "-m", "vcli.engine.builder", str(folder.path), str(dimensions), metric],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True, close_fds=True,
        )))
    except OSError:
        return False
    return True


def build_pending(folder: Folder, dimensions: int, metric: str) -> Path | None:
    """Under the build lock, make graphs until the newest matrix has one; the last graph made (or
    None). ``LockTimeout`` when another builder holds the lock; a damaged matrix raises."""
    made = None
    with writer_lock(folder.build_lock, 0):
        for path in folder.search_temp_files("graph"):
            path.unlink(missing_ok=True)
        while needs_graph(folder):
            made = _build_one(folder, folder.newest_matrix(), dimensions, metric)
    return made


def _build_one(folder: Folder, file: SearchFile, dimensions: int, metric: str) -> Path:
    from . import graph  # lazy: usearch
    from .matrix import Matrix

    m = Matrix.load(file.path, file.seq, dimensions)
    old = folder.newest_graph()
    path = None
    if old is not None and old.seq < file.seq:
        try:
            path = graph.catch_up(old.path, m, folder, metric)
        except (ValueError, RuntimeError, OSError):
            path = None  # unusable: build anew
    if path is None:
        path = graph.build(m, folder, metric)
    for other in folder.search_files():
        if other.kind == "graph" and other.seq < file.seq:
            other.path.unlink(missing_ok=True)
    return path


def main(argv: list[str]) -> int:
    """``python -m vcli.engine.builder <folder> <dimensions> <metric>``: build, then exit 0; 1 when
    another builder is at work or the build failed (nothing is printed: no one is watching)."""
    try:
        os.nice(NICE)
    except OSError:
        pass
    folder = Folder(Path(argv[0]))
    try:
        while True:
            build_pending(folder, int(argv[1]), argv[2])
            # a matrix written after the last look, while this one still held the lock, may have
            # found it taken and started no builder: look once more, now that it is free
            if not needs_graph(folder):
                return 0
    except (LockTimeout, OSError, ValueError, RuntimeError, MemoryError, KeyboardInterrupt):
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
