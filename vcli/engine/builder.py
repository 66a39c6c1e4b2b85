"""The graph builder: makes the graph parts of a large index's newest matrix, off the writer's path.

A load returns as soon as its vectors are in the store and the matrix (durable, and queryable
exactly); the graph parts of that matrix (``graph.py``), which take minutes for a million vectors, are
built afterwards by ``python -m vcli.graph_builder <folder> <dimensions> <metric> <part rows>
[<stale share>]``, a process of its own that ``start`` launches (detached, at low priority) and that outlives the
command that started it.

* One builder per index: it holds ``build.lock`` (``lock.writer_lock``, not the writer lock: writes
  go on meanwhile). A second one finds it taken and leaves; the first looks again before it ends,
  so a matrix written meanwhile is not missed.
* It reads only the newest matrix (never the store) and does one step at a time (``plan``):
  rows no part covers get a part (the last part is extended while it has room, else a new one is
  built), then parts with too many stale vectors are rebuilt. Each part is renamed into place
  whole, and the parts it replaces are removed after. A reader uses whatever parts there are and
  scans the rows they do not cover exactly, so queries are exact-scored throughout, get faster as
  parts land, and never wait for a build.
* Killed at any point it leaves at most a temporary file (removed by the next builder, or by a
  writer when no builder holds the lock) and the index as it was; the next write that folds, or
  the next query that finds rows no part covers, starts another.

``Tuning.graph_in_background=False`` builds in the calling process instead (tests use it to get
graphs deterministically).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from ..errors import ExitCode, LockTimeout, StorageError
from .layout import Folder, SearchFile
from .lock import writer_lock
from .tuning import DEFAULT, Tuning

if TYPE_CHECKING:
    import subprocess

# the builders this process started (folder path, ``subprocess.Popen``), reaped as they end
_children: list[tuple[Path, subprocess.Popen]] = []


class Step(NamedTuple):
    """One piece of a builder's work on the newest matrix: build the part for keys ``keys`` (lo,
    hi) anew (``base``: the part it replaces, if any; parts it overlaps are dropped after),
    extend ``base`` up to ``keys[1]``, or drop ``base`` (none of its vectors is left)."""

    kind: str  # "build", "extend" or "drop"
    keys: tuple[int, int]
    base: SearchFile | None = None


def plan(m, parts: list[SearchFile], part_rows: int, stale_share: float) -> Step | None:
    """The next step towards parts that cover every row of matrix ``m`` (loaded) with few stale
    vectors, given the parts a search uses now (``Folder.graph_parts``); None when there is none.

    Rows no part covers come first: a gap between parts gets parts of its own; the rows after the
    last part fill it while it holds fewer than ``part_rows`` vectors (it is rebuilt with them if
    it is stale), then go into new parts of at most that many. Then a part of which more than
    ``stale_share`` (``Tuning.graph_stale_share``) is gone is dropped when nothing of it is left, else rebuilt together
    with the parts after it that fit beside it, so that parts do not pile up as an index is
    rewritten. Every step covers more rows or leaves fewer stale vectors or fewer parts, so a
    builder taking steps until there is none ends."""
    import numpy as np  # lazy: a write that starts no builder does not need it

    from . import graph  # lazy: usearch
    from .matrix import in_sorted

    keys = np.asarray(m.keys)
    if len(m.gone):  # tombstoned rows need no part (and a part leaves them out)
        keys = keys[~in_sorted(keys, m.gone)]
    n = len(keys)
    live = [int(np.searchsorted(keys, part.hi, side="right") - np.searchsorted(keys, part.lo)) for part in parts]
    sizes = [graph.size_of(part.path) for part in parts]
    stale = [size - alive > stale_share * size or not alive for size, alive in zip(sizes, live, strict=True)]
    below = -1  # every row with a key up to this one is covered
    for part in parts:
        first, last = (int(i) for i in np.searchsorted(keys, [below, part.lo - 1], side="right"))
        if last > first:  # rows between two parts (a part was discarded)
            stop = min(last, first + part_rows)
            return Step("build", (below + 1, part.lo - 1 if stop == last else int(keys[stop - 1])))
        below = part.hi
    first = int(np.searchsorted(keys, below, side="right"))
    if first < n:  # rows after the last part
        if parts and stale[-1]:  # rebuilt with them (what fits)
            stop = min(n, first + max(part_rows - live[-1], 0))
            return Step("build", (parts[-1].lo, int(keys[stop - 1]) if stop > first else parts[-1].hi), parts[-1])
        if parts and (room := part_rows - sizes[-1]) > 0:
            return Step("extend", (parts[-1].lo, int(keys[min(n, first + room) - 1])), parts[-1])
        return Step("build", (below + 1, int(keys[min(n, first + part_rows) - 1])))
    for i, part in enumerate(parts):
        if not stale[i]:
            continue
        if not live[i]:
            return Step("drop", (part.lo, part.hi), part)
        j, total = i, live[i]
        while j + 1 < len(parts) and total + live[j + 1] <= part_rows:
            j, total = j + 1, total + live[j + 1]
        return Step("build", (part.lo, parts[j].hi), part)
    return None


def needs_graph(folder: Folder, dimensions: int, part_rows: int,
                stale_share: float = DEFAULT.graph_stale_share) -> bool:
    """Whether the newest matrix is not yet covered by graph parts with few stale vectors."""
    from .matrix import Matrix  # lazy: NumPy

    file = folder.newest_matrix()
    if file is None:
        return False
    m = Matrix.load(file.path, file.seq, dimensions)
    return plan(m, folder.graph_parts(file), part_rows, stale_share) is not None


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


def start(folder: Folder, dimensions: int, metric: str, tuning: Tuning = DEFAULT) -> bool:
    """Launch a detached builder for the index in ``folder`` unless one is running, handing it
    ``tuning`` (on its command line); whether one was launched. Never raises for a folder it
    cannot build in (read-only, or gone): the builder then ends at once, and queries stay exact."""
    import json
    import subprocess  # lazy: a write that starts no builder does not need it

    if running(folder) or not os.access(folder.path, os.W_OK):
        return False
    try:
        _children.append((folder.path, subprocess.Popen(
            [sys.executable, "-m", "vcli.graph_builder", str(folder.path), str(dimensions), metric,
             str(tuning.graph_part_rows), repr(tuning.graph_stale_share), json.dumps(tuning._asdict())],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True, close_fds=True,
        )))
    except OSError:
        return False
    return True


def build_pending(folder: Folder, dimensions: int, metric: str, tuning: Tuning = DEFAULT) -> Path | None:
    """Under the build lock, take steps (``plan``) until the newest matrix needs none; the last
    part made (or None). ``LockTimeout`` when another builder holds the lock; a damaged matrix
    raises."""
    from .matrix import Matrix  # lazy: NumPy

    made = None
    with writer_lock(folder.build_lock, 0):
        for path in folder.search_temp_files("graph"):
            path.unlink(missing_ok=True)
        while (file := folder.newest_matrix()) is not None:
            m = Matrix.load(file.path, file.seq, dimensions)
            parts = folder.graph_parts(file)
            _remove_superseded(folder, file, parts)
            parts = [part for part in parts if _readable(part)]
            step = plan(m, parts, tuning.graph_part_rows, tuning.graph_stale_share)
            if step is None:
                break
            made = _take(step, m, folder, metric, tuning) or made
    return made


def _take(step: Step, m, folder: Folder, metric: str, tuning: Tuning) -> Path | None:
    """Make the part ``step`` asks for, then remove the part it replaces (parts it overlaps are
    superseded: the next look removes them)."""
    from . import graph  # lazy: usearch

    if step.kind == "drop":
        assert step.base is not None  # (a drop always names its part: for the type checker)
        step.base.path.unlink(missing_ok=True)
        return None
    path = None
    if step.kind == "extend":
        assert step.base is not None  # (an extend too)
        try:
            path = graph.extend_part(step.base, m, folder, metric, step.keys[1], tuning)
        except (ValueError, RuntimeError, OSError):
            path = None  # unusable: build it anew
    if path is None:
        path = graph.build_part(m, folder, metric, step.keys, tuning)
    if step.base is not None and step.base.path != path:
        step.base.path.unlink(missing_ok=True)
    return path


def _readable(part: SearchFile) -> bool:
    """Whether a part's header can be read; one that cannot is removed (its rows are then in no
    part, and get one)."""
    from . import graph  # lazy: usearch

    try:
        graph.size_of(part.path)
        return True
    except (ValueError, OSError):
        part.path.unlink(missing_ok=True)
        return False


def _remove_superseded(folder: Folder, matrix: SearchFile, parts: list[SearchFile]) -> None:
    """Graph files that searches of ``matrix`` no longer use: parts replaced by newer ones over
    the same keys, and graphs of the layout before parts. (Graphs newer than the matrix belong to
    another index's history; the writer's refresh removes those.)"""
    for f in folder.search_files():
        if f.kind == "graph" and f.seq <= matrix.seq and f not in parts:
            f.path.unlink(missing_ok=True)


def run(folder: Folder, dimensions: int, metric: str, tuning: Tuning = DEFAULT) -> int:
    """What a builder process does (``vcli/graph_builder.py`` is its entry point): build until
    nothing is left to do; 0, or 1 when another builder is at work or the build failed."""
    try:
        while True:
            build_pending(folder, dimensions, metric, tuning)
            # a matrix written after the last look, while this one still held the lock, may have
            # found it taken and started no builder: look once more, now that it is free
            if not needs_graph(folder, dimensions, tuning.graph_part_rows, tuning.graph_stale_share):
                return ExitCode.OK
    except (LockTimeout, OSError, ValueError, RuntimeError, MemoryError, KeyboardInterrupt):
        return ExitCode.FAILURE
