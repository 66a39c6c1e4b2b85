"""Opening a search: the newest matrix, its graph parts and a store snapshot at least as new,
repaired from the store when they are damaged, missing or too far behind; and the delta (rows
written since the matrix, keys removed since), read once from the snapshot."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from ..columns import Values, missing, open_values
from ..scoring import SAFE_NORM, row_norms
from ..searchfiles import FILE_ERRORS, SearchFiles
from ..verify import StaleFile
from .common import in_sorted

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor
    from contextlib import AbstractContextManager

    from ..graph import Parts
    from ..matrix import Matrix


class _Problem(NamedTuple):
    kind: str  # "damaged" (or foreign, or too old), "missing", "behind"
    text: str


_RETRY = _Problem("retry", "a writer replaced the search file meanwhile")  # (compared by identity)


class Opened:
    """The state every search mode works from (``Searcher`` is the one to use): the matrix,
    the graph parts, the snapshot and its delta, opened on entry (``Searcher``'s docstring says
    how problems are met)."""

    def __init__(self, files: SearchFiles, notes: list[str]):
        self.files = files
        self.tuning = files.tuning
        self.notes = notes
        self.store = files.store
        self.metric = files.metric
        self.dims = files.dimensions
        self.matrix: Matrix | None = None  # the open matrix and graph parts (``_open``)
        self.graph: Parts | None = None
        self.seq = 0
        self.values: Values | None = None  # the snapshot's values (``columns.py``), on entry
        self._snapshot: AbstractContextManager[None] | None = None
        self._removed_keys: np.ndarray | None = None
        self._uncovered: list[slice] = []  # rows of the matrix no graph part covers, searched exactly
        self._uncovered_rows = 0  # how many
        self._uncovered_bound: float | None = None  # their largest norm (``_graph_block``), once found
        self._removed_rows: np.ndarray | None = None
        self._delta_cache: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        # threads for the heavy part of batch queries (see ``begin``; ``Tuning.batch_threads``)
        self._pool: ThreadPoolExecutor | None = None
        # ``Grouped._kept``: the keys, vectors, norms and matrix rows of a subset, by (bfloat16?,
        # the caller's token)
        self._subsets: dict[tuple[bool, object], tuple[np.ndarray, Any, np.ndarray, np.ndarray]] = {}
        self._gathering: dict[tuple[bool, object], Any] = {}  # ... and those coming (``groups._Coming``)
        self._subsets_lock = threading.Lock()  # (the background threads share them)
        self._values: list | None = None  # the graph parts' bfloat16 values (``Grouped._part_values``)
        self._values_lock = threading.Lock()
        self._matrix_prescorable: bool | None = None  # (``Grouped._prescorable``)
        # usearch keeps per-thread search contexts indexed from 0 in every call, so two searches
        # of one graph must not overlap (the background block and a filtered query of a batch).
        self._graph_lock = threading.Lock()

    def __enter__(self):
        tried_repair = False
        for _attempt in range(10):
            problem = self._open(accept_behind=tried_repair)
            if problem is None:
                return self
            if problem is _RETRY:  # a writer replaced the file meanwhile: take the new one
                continue
            if tried_repair:  # still wrong after a rebuild
                self.notes.append(f"{problem.text}; answering from the store")
                break
            tried_repair = True
            why_not = self.files.repair()
            if why_not is None:
                done = "brought it up to date" if problem.kind == "behind" else "rebuilt it from the store"
                self.notes.append(f"{problem.text}; {done}")
                continue
            if problem.kind == "damaged":
                self.notes.append(f"{problem.text}; answering from the store ({why_not})")
                break
            if problem.kind == "missing":
                break
            # behind, and no lock now (the writer holding it refreshes after its commit) or
            # read-only: the delta is scanned exactly, as always
        self._open_store_only()
        return self

    def _open(self, accept_behind: bool = False):
        """Open the newest matrix, its graph parts and a store snapshot. Returns ``None`` when all is
        well, else ``_RETRY`` or a ``_Problem`` (with no snapshot left open)."""
        file = self.files.newest()
        problem = obj = None
        if file is not None:
            try:
                obj = self.files.load(file)
            except FILE_ERRORS as exc:
                if not file.path.exists():
                    return _RETRY
                problem = _Problem("damaged", f"the search file {file.path.name} is damaged ({exc})")
        self._snapshot = self.store.snapshot()
        self._snapshot.__enter__()
        try:
            try:
                self.values = open_values(self.store, self.dims)
            except FileNotFoundError:  # a compaction replaced the generation meanwhile
                self._close_snapshot()
                return _RETRY
            if problem is None and file is not None:
                try:
                    self.files.verify(file, obj, values=self.values)
                except StaleFile:
                    problem = _RETRY if self.files.newest() != file else _Problem(
                        "damaged", f"the search file {file.path.name} is too old to catch up")
                except ValueError as exc:
                    problem = _Problem("damaged", f"the search file {file.path.name} does not match the store ({exc})")
            elif problem is None and self.files.needs_matrix():
                problem = _Problem("missing", "the search file was missing")
            if problem is None and file is not None and not accept_behind:
                added, removed = self.store.count_since(file.seq)
                if self.tuning.due((added, removed)):
                    problem = _Problem("behind", f"the search file was {added + removed} changes behind "
                                                 "the store (an earlier refresh did not finish)")
        except BaseException:
            self._close_snapshot()
            raise
        if problem is not None:
            self._close_snapshot()
            return problem
        if file is not None:
            assert self.values is not None and obj is not None  # (opened above, or a problem returned)
            self.seq, self.matrix = file.seq, obj.sharing(self.values)
            self.graph = self._open_graph(file, self.matrix)
        return None

    def _open_graph(self, file, m):
        """The graph parts of matrix ``file`` (loaded as ``m``) when the index wants a graph and
        they cover at least half of its rows; else None (queries are then exact from the
        matrix). Rows no part covers (``_uncovered``) are scanned exactly beside the parts, and a
        builder is started to cover them; a damaged part is discarded (its rows then too)."""
        if not self.tuning.wants_graph(len(m.keys), self.dims):
            return None
        if len(m.norms) and not float(m.norms.max()) < SAFE_NORM:  # (~4 ms a million rows)
            return None  # the graph's own distances overflow for such values: exact from the matrix
        from ..graph import Parts, uncovered  # lazy: usearch, only for indexes that have a graph

        files, views = [], []
        for part in self.files.folder.graph_parts(file):  # (the store's count would be read again)
            inode = None
            try:
                inode = part.path.stat().st_ino
                view = self.files.load(part)
                self.files.verify(part, view, matrix=m)
            except FILE_ERRORS as exc:
                if inode is not None:
                    self.notes.append(f"the search graph {part.path.name} is unusable ({exc}); answering "
                                      "exactly from the matrix where it was while it is built anew")
                    self.files.discard_graph(part, start=False, inode=inode)
                continue
            files.append(part)
            views.append(view)
        self._uncovered = uncovered(m, files)
        self._uncovered_rows = left = sum(r.stop - r.start for r in self._uncovered)
        self._uncovered_bound = None
        if left:
            self.files.start_graph()
        return Parts(files, views, self.tuning) if files and 2 * left <= len(m.keys) else None

    def _open_store_only(self) -> None:
        """No usable search file: every vector is in the delta (exact, slower)."""
        self.matrix, self.graph, self.seq, self._uncovered, self._uncovered_rows = None, None, 0, [], 0
        for attempt in range(10):
            self._snapshot = self.store.snapshot()
            self._snapshot.__enter__()
            try:
                self.values = open_values(self.store, self.dims)
                return
            except FileNotFoundError as exc:  # a compaction replaced the generation meanwhile
                self._close_snapshot()
                if attempt == 9:
                    raise missing(self.store, exc) from None

    def _open_matrix(self) -> Matrix:
        """The open matrix, on the search paths that only run with one."""
        assert self.matrix is not None  # (for the type checker: those paths check before)
        return self.matrix

    def _open_parts(self) -> Parts:
        """The open graph parts, on the search paths that only run with them."""
        assert self.graph is not None
        return self.graph

    def _close_snapshot(self) -> None:
        if self._snapshot is not None:
            self._snapshot.__exit__(None, None, None)
            self._snapshot = None

    def __exit__(self, *exc) -> None:
        if self._pool is not None:  # (left early, by an error or Ctrl-C: what has not started, won't)
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        if self._snapshot is not None:
            self._snapshot.__exit__(*exc)
            self._snapshot = None

    def _removed(self) -> np.ndarray | None:
        """Keys the search file holds that are gone since (and its tombstones)."""
        if not self.seq:
            return None
        if self._removed_keys is None:
            removed, gone = np.asarray(self.store.removed_since(self.seq), np.int64), self._open_matrix().gone
            # (the two never share a key; np.union1d would import numpy.ma, ~20 ms)
            self._removed_keys = np.sort(np.concatenate([removed, gone])) if len(removed) else gone
        return self._removed_keys

    def delta_keys(self) -> np.ndarray:
        """The keys of the rows written since the search file (the delta), in its order."""
        return self._delta_arrays()[0]

    def _delta_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(keys, vectors, norms)`` of the rows written since the search file."""
        if self._delta_cache is None:
            keys = np.asarray(self.store.keys_since(self.seq), np.int64)
            assert self.values is not None  # (opened on entry)
            vecs = self.values.of(keys)
            self._delta_cache = (keys, vecs, row_norms(vecs))
        return self._delta_cache

    def _removed_columns(self) -> np.ndarray | None:
        """Matrix rows whose keys were removed since the matrix was written (found once)."""
        removed = self._removed()
        if removed is None or not len(removed):
            return None
        if self._removed_rows is None:
            self._removed_rows = np.flatnonzero(in_sorted(self._open_matrix().keys, removed))
        return self._removed_rows
