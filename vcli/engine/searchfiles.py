"""The search files of an index: derived from the store, listed, opened, verified, refreshed, repaired.

An index has at most one search file at a time (``layout.py`` names them), chosen by size
(``Tuning.wants_graph``): a matrix (``matrix.py``: every vector contiguous and memory-mapped,
searched exactly) or a usearch graph (``graph.py``). A file reflects the store as of the mutation
in its name; rows written or removed since form the *delta*, which every query scans exactly.

* **Refresh** (``refresh``, with the writer lock): when the file is missing, of the wrong kind,
  damaged, foreign, or more than ``Tuning.fold_rows`` changes behind, write a new one (a matrix
  anew; a graph caught up from the old one when it can be), then remove the older files and the
  store's removal records that no file needs. A writer refreshes after its transaction has
  committed (``refresh_after_write``); the common case after a small write is decided from SQLite
  alone, without importing NumPy.
* **Verify** (``verify.py``): cheap checks that a file fits the store, run by every query that
  opens it; ``verify.check_contents`` is ``vcli check``'s thorough one.
* **Repair** (``repair``): a reader that finds its file damaged, missing or far behind rebuilds it
  if it can take the writer lock at once.

Nothing is ever modified in place: every file is written whole under a temporary name and renamed
(``fsutil.replacing``), so a reader or a crash never sees half a file.
"""

from __future__ import annotations

from ..errors import Interrupted, LockTimeout, VcliError
from .layout import Folder, SearchFile, seq_of
from .lock import writer_lock
from .store import Store
from .tuning import Tuning

Notes = list[str]  # a sink of notes for the user (``records.py``)
FILE_ERRORS = (ValueError, OSError, RuntimeError)  # what a damaged file raises when opened or read


class SearchFiles:
    """The search files of the index in ``folder``, whose truth is ``store``."""

    def __init__(self, folder: Folder, store: Store, dimensions: int, metric: str, tuning: Tuning):
        self.folder = folder
        self.store = store
        self.dimensions = dimensions
        self.metric = metric
        self.tuning = tuning

    # -- listing --------------------------------------------------------------------------------
    def newest(self) -> SearchFile | None:
        files = self.folder.search_files()
        return files[0] if files else None

    def behind(self, seq: int) -> bool:
        """Whether the store has changed too much since mutation ``seq`` for a query to scan it."""
        return self.tuning.due(self.store.count_since(seq))

    def remove_temp_files(self) -> None:
        """Delete leftover temporary search files. Call with the writer lock (only a refresh, which
        holds it, writes them)."""
        for path in self.folder.search_temp_files():
            path.unlink(missing_ok=True)

    # -- opening and verifying ----------------------------------------------------------------
    def load(self, file: SearchFile, *, view: bool = True, lookups: bool = True):
        """Open a matrix (``Matrix``) or graph (usearch ``Index``); one of ``FILE_ERRORS`` if it is
        damaged. ``lookups=False`` opens a graph without its key table (see ``graph.load``)."""
        if file.kind == "matrix":
            from .matrix import Matrix

            return Matrix.load(file.path, file.seq, self.dimensions)
        from . import graph  # lazy: usearch, only for indexes that have a graph

        return graph.load(file.path, self.dimensions, self.metric, None, view=view, lookups=lookups)

    def verify(self, file: SearchFile, obj, **options) -> None:
        """Cheap checks that a loaded file fits the store (``verify.verify``, which takes
        ``samples`` and ``lookups``); ``ValueError`` (or ``StaleFile``) says what is wrong."""
        from . import verify  # lazy: NumPy, which a small write does not load

        verify.verify(self.store, file, obj, **options)

    # -- refreshing -----------------------------------------------------------------------------
    def refresh(self, notes: Notes, *, force: bool = False, verify: bool = False) -> None:
        """Bring the search file up to date when it is missing, of the wrong kind, damaged, foreign
        or more than ``fold_rows`` changes behind (or always, with ``force``); remove older files and
        temporary ones left by a killed refresh. Call with the writer lock.

        The common case after a small write (the one file there is of the right kind and at most
        ``fold_rows`` behind) is decided from SQLite alone and returns before NumPy or usearch are
        imported: a one-vector upsert costs about what ``vcli info`` does. The file is not
        re-verified then (unless ``verify``, as a repair asks); every query verifies the file it
        opens and repairs it if needed."""
        self.remove_temp_files()
        kind = "graph" if self.tuning.wants_graph(self.store.count(), self.dimensions) else "matrix"
        files = self.folder.search_files()
        current = next((f for f in files if f.kind == kind), None)
        if not force and not verify and current is not None and len(files) == 1 and not self.behind(current.seq):
            return
        from . import graph, matrix  # lazy: a rebuild needs NumPy, and a graph usearch

        path = None
        if current is not None and not force:
            try:
                self.verify(current, self.load(current))
            except FILE_ERRORS as exc:
                notes.append(f"the search file {current.path.name} was unusable ({exc}); rebuilt it from the store")
                current = None
        if current is not None and not force:
            if not self.behind(current.seq):
                path = current.path
            elif kind == "graph":
                try:
                    g = graph.load(current.path, self.dimensions, self.metric,
                                   self.store.count_at(current.seq), view=False)
                    path = graph.catch_up(g, self.store, current.seq, self.folder)
                except (ValueError, RuntimeError) as exc:
                    notes.append(f"rebuilding the search graph: {exc}")
        if path is None:
            if kind == "graph":
                path = graph.build(self.store, self.folder, self.dimensions, self.metric)
            else:
                path = matrix.build(self.store, self.folder, self.dimensions)
        for other in files:
            if other.path != path:
                other.path.unlink(missing_ok=True)
        self.store.prune_removed(seq_of(path))

    def refresh_after_write(self, notes: Notes) -> None:
        """After a write has committed: refresh if due. A failure here loses nothing (the store has
        committed) and is retried by the next command. When another writer holds the lock this one
        does not wait: that writer refreshes after its own commit."""
        try:
            with writer_lock(self.folder.lock, 0):
                self.refresh(notes)
        except LockTimeout:
            pass
        except (OSError, VcliError, ValueError, RuntimeError) as exc:
            notes.append(f"could not update the search files ({exc}); queries stay correct")
        except KeyboardInterrupt:
            raise Interrupted(
                "interrupted while updating the search files; the write itself was saved "
                "and queries stay correct"
            ) from None

    def repair(self) -> str | None:
        """For a reader that found the search file damaged, missing or far behind: refresh it if
        the writer lock is free right now. ``None`` when done, else why it could not. (The caller
        says what happened, once: the refresh's own notes are dropped.)"""
        try:
            with writer_lock(self.folder.lock, 0):
                self.refresh([], verify=True)
        except LockTimeout:
            return "another command is writing to the index"
        except (OSError, VcliError, ValueError, RuntimeError) as exc:
            return f"cannot rebuild it: {exc}"
        return None
