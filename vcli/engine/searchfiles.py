"""The search files of an index: derived from the store and the columns that hold the values
(``columns.py``), listed, opened, verified, refreshed, repaired.

Every index of more than ``Tuning.fold_rows`` vectors has a matrix (``matrix.py``: every vector
contiguous and memory-mapped, the columns with their norms and tombstones; a smaller one's columns
are scanned as a delta); a large one
(``Tuning.wants_graph``) also usearch graphs of its rows in parts (``graph.py``), built afterwards
by a builder (``builder.py``). A file reflects the store as of the mutation in its name; rows
written or removed since form the *delta*, which every query scans exactly. Small indexes are
searched in the matrix exactly; large ones find candidates in the graph parts, scan the rows no
part covers yet exactly, and score every candidate from the matrix, so answers are exact-scored
whichever file finds them.

* **Refresh** (``refresh``, with the writer lock): when the matrix is missing, damaged, foreign, or
  more than ``Tuning.fold_rows`` changes behind, fold the changes into it (appended to its
  generation's columns, or compacted into a new generation: ``matrix.fold``) or build it anew,
  remove the older manifests, other generations' columns and the store's removal records that no
  file needs; then, for a large index, start the builder when a new matrix was written or there
  are no graph parts. A writer refreshes after its transaction has committed (``refresh_after_write``); the common case after a small write is
  decided from SQLite and a folder listing alone, without importing NumPy.
* **Verify** (``verify.py``): cheap checks that a file fits the store, run by every query that
  opens it; ``verify.check_contents`` is ``vcli check``'s thorough one.
* **Repair** (``repair``): a reader that finds its file damaged, missing or far behind rebuilds it
  if it can take the writer lock at once.

Nothing a reader may see is ever modified in place: manifests and graph parts are written whole
under a temporary name and renamed (``fsutil.replacing``), and a generation's columns only grow
past what its newest manifest names, fsynced before the manifest that names it (``matrix.py``), so
a reader or a crash never sees half a file.
"""

from __future__ import annotations

import math

from ..errors import Interrupted, LockTimeout, VcliError
from .layout import Folder, SearchFile, seq_of
from .lock import writer_lock
from .store import Store
from .tuning import Tuning, physical_memory, search_file_bytes

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
        """The newest matrix (the file a query starts from)."""
        return self.folder.newest_matrix()

    def graph_parts(self, matrix: SearchFile) -> list[SearchFile]:
        """The graph parts a search of ``matrix`` uses (``Folder.graph_parts``), none when the
        index is too small for a graph."""
        if not self.tuning.wants_graph(self.store.count(), self.dimensions):
            return []
        return self.folder.graph_parts(matrix)

    def needs_matrix(self) -> bool:
        """Whether an index without a matrix needs one: not while a query can scan all its rows
        as a delta (at most ``Tuning.fold_rows``) and it wants no graph, so that a
        small load imports no NumPy and writes no file it does not need."""
        count = self.store.count()
        return self.tuning.due((count, 0)) or self.tuning.wants_graph(count, self.dimensions)

    def values_to_compact(self) -> bool:
        """Whether an index without a matrix has piled up rows upserted again or deleted in its
        columns: more than ``Tuning.fold_rows`` of them and more than ``fold_compact_share`` of
        the committed rows (from SQLite alone: a small write imports no NumPy)."""
        rows = self.store.tail()[1]
        dead = rows - self.store.count()
        return dead > self.tuning.fold_rows and dead > self.tuning.fold_compact_share * rows

    def behind(self, seq: int) -> bool:
        """Whether the store has changed too much since mutation ``seq`` for a query to scan it."""
        return self.tuning.due(self.store.count_since(seq))

    def remove_temp_files(self) -> None:
        """Delete leftover temporary search files. Call with the writer lock: only a refresh, which
        holds it, writes matrices; graphs are written by a builder, so a graph's temporary file is
        left alone while a builder holds its lock."""
        from . import builder

        building = None
        for path in self.folder.search_temp_files():
            if path.name.startswith(".graph-"):
                if building is None:
                    building = builder.running(self.folder)
                if building:
                    continue
            path.unlink(missing_ok=True)

    # -- opening and verifying ----------------------------------------------------------------
    def load(self, file: SearchFile, *, keys: bool = False):
        """Open a matrix (``Matrix``) or graph (a usearch ``Index`` view, without its key table
        unless ``keys``: see ``graph.load``); one of ``FILE_ERRORS`` if it is damaged."""
        if file.kind == "matrix":
            from .matrix import Matrix

            return Matrix.load(file.path, file.seq, self.dimensions)
        from . import graph  # lazy: usearch, only for indexes that have a graph

        return graph.load(file.path, self.dimensions, self.metric, self.tuning, keys=keys)

    def verify(self, file: SearchFile, obj, *, samples: int | None = None, matrix=None, values=None) -> None:
        """Cheap checks that a loaded file fits the store (``verify.verify``: ``samples`` store
        vectors compared, ``Tuning.verify_samples`` unless given; for a graph part ``matrix``,
        the loaded newest matrix; ``values``: the snapshot's, when open); ``ValueError`` (or ``StaleFile``) says what is wrong."""
        from . import verify  # lazy: NumPy, which a small write does not load

        if samples is None:
            samples = self.tuning.verify_samples
        verify.verify(self.store, file, obj, samples=samples, matrix=matrix, values=values)

    # -- refreshing -----------------------------------------------------------------------------
    def refresh(self, notes: Notes, *, force: bool = False, verify: bool = False, compact: bool = False) -> None:
        """Bring the matrix up to date when it is missing, damaged, foreign or more than
        ``fold_rows`` changes behind (or always, with ``force``); remove older files and temporary
        ones left by a killed refresh; then see to the graph (``_see_to_graph``). An index too
        small for a matrix has its columns compacted when rows upserted again or deleted pile up
        (``values_to_compact``); ``compact`` (a repair) compacts any index that has such rows.
        Call with the writer lock.

        The common case after a small write (one matrix, at most ``fold_rows`` behind) is decided
        from SQLite alone and imports neither NumPy nor usearch: a one-vector upsert costs about
        what ``vcli info`` does. The file is not re-verified then (unless ``verify``, as a repair
        asks); every query verifies the file it opens and repairs it if needed."""
        self.remove_temp_files()
        if self.store.old_format():
            from .migrate import migrate  # lazy: NumPy, once per index

            migrate(self.store, self.folder, self.dimensions)
            force = True
        matrices = [f for f in self.folder.search_files() if f.kind == "matrix"]
        current = matrices[0] if matrices else None
        wrote = False
        due = self.behind(current.seq) if current else (self.needs_matrix() or self.values_to_compact())
        if force or verify or compact or len(matrices) > 1 or due:
            wrote = self._refresh_matrix(notes, None if force else current, matrices, compact)
        elif current is None and self.store.removed_rows() > self.tuning.fold_rows:
            self.store.prune_removed(self.store.last_seq())  # no file needs to catch up with them
        self._see_to_graph(notes, verify, wrote)

    def _refresh_matrix(self, notes: Notes, current: SearchFile | None, matrices: list[SearchFile],
                        compact: bool = False) -> bool:
        """Bring the matrix up to date; whether a new one was written. An index small enough to
        need none (``needs_matrix``) is left without one instead, its columns compacted when due
        (or with ``compact``, when any row is dead)."""
        from . import matrix  # lazy: NumPy
        from .columns import MissingValues

        share = 0.0 if compact else self.tuning.fold_compact_share
        if not self.needs_matrix():
            if (self.values_to_compact() and not self._refusal_holds()) or (
                    compact and self.store.tail()[1] > self.store.count()):
                try:
                    matrix.compact_values(self.store, self.folder, self.dimensions)
                except MissingValues as exc:
                    if compact:
                        raise
                    self._refused(notes, exc)
            for stale in [*(f.path for f in matrices), *matrix.other_generations(self.folder, self.store, None)]:
                stale.unlink(missing_ok=True)
            self.store.prune_removed(self.store.last_seq())
            return False

        path = old = None
        if current is not None:
            try:
                old = self.load(current)
                self.verify(current, old)
            except FILE_ERRORS as exc:
                notes.append(f"the search file {current.path.name} was unusable ({exc}); rebuilt it from the store")
                old = None
        if current is not None and old is not None and not self.behind(current.seq) and not compact:
            path = current.path
        elif old is not None:
            if not compact and self._refusal_holds():
                share = math.inf  # (refused before, and nothing it depends on has changed)
            try:
                path = matrix.fold(old, self.store, self.folder, share)
            except MissingValues as exc:
                if share == math.inf:
                    raise  # (damaged values the fold needs: a build would refuse them too)
                # A compaction refused to copy damaged values (it would record fresh checksums of
                # them): the matrix goes on by appending, so that queries need no repair, and
                # `vcli check` names the vectors.
                self._refused(notes, exc)
                path = matrix.fold(old, self.store, self.folder, math.inf)
            except (RuntimeError, ValueError) as exc:
                notes.append(f"rebuilding the search file: {exc}")
        if path is None:
            path = matrix.build(self.store, self.folder, self.dimensions, share)
        if path != getattr(current, "path", None):
            self._note_outgrown(notes, None if old is None else old.live())
        for other in matrices:
            if other.path != path:
                other.path.unlink(missing_ok=True)
        for column in matrix.other_generations(self.folder, self.store, path):
            column.unlink(missing_ok=True)
        self.store.prune_removed(seq_of(path))
        return path != getattr(current, "path", None)

    def _refusal_holds(self) -> bool:
        """Whether a compaction was refused over damaged values and nothing that could change
        that has happened since: the generation is the same and no vector of the damaged append
        was upserted again or deleted (counted from SQLite). The columns are then not read again
        for a compaction that would be refused again; `vcli check` reports the damage."""
        refused = self.store.refused_append()
        if refused is None:
            return False
        generation, _start, _end, lo, hi, live = refused
        return self.store.tail()[0] == generation and self.store.live_between(lo, hi) == live

    def _refused(self, notes: Notes, exc: Exception) -> None:
        """A compaction refused damaged values: say so, and remember it (``_refusal_holds``)."""
        notes.append(f"not compacted: {exc}")
        refused = getattr(exc, "refused", None)
        if refused is not None:
            self.store.record_refusal(refused)

    def _note_outgrown(self, notes: Notes, before: int | None) -> None:
        """Once, when a new matrix takes the index past the machine's memory (``before``: the
        vectors of the matrix it replaces, None when built from the store)."""
        count, tuning = self.store.count(), self.tuning
        if not tuning.outgrows_memory(count, self.dimensions) or (
                before is not None and tuning.outgrows_memory(before, self.dimensions)):
            return
        need = search_file_bytes(count, self.dimensions) / 2**30
        have = (tuning.memory_bytes or physical_memory()) / 2**30
        notes.append(
            f"at {count:,} vectors this index's search files take ~{need:,.1f} GiB, more than the "
            f"{have:,.1f} GiB of memory here: queries will wait on the disk and its graph takes hours "
            "to build. An index this size belongs on Vectorize itself: `vcli push` it, and develop "
            "against a sample here (docs/scale.md)")

    def _see_to_graph(self, notes: Notes, verify: bool, wrote: bool) -> None:
        """A large index's newest matrix gets graph parts (``start_graph``) when a matrix was just
        written (``wrote``), or it has none; a small index's graphs, and graphs newer than the
        matrix (another index's), are removed, and with ``verify`` a damaged part too."""
        matrix = self.folder.newest_matrix()
        wanted = matrix is not None and self.tuning.wants_graph(self.store.count(), self.dimensions)
        for g in self.folder.search_files():
            if g.kind == "graph" and (matrix is None or not wanted or g.seq > matrix.seq):
                g.path.unlink(missing_ok=True)
        if matrix is None or not wanted:  # (wanted implies a matrix; the type checker is told)
            return
        parts = self.folder.graph_parts(matrix)  # (graph_parts would count the store's rows again)
        if verify and parts:
            m = self.load(matrix)
            for part in parts:
                try:
                    self.verify(part, self.load(part), matrix=m)
                except FILE_ERRORS as exc:
                    notes.append(f"the search graph {part.path.name} was unusable ({exc}); building it anew")
                    self.discard_graph(part, start=False)
        if wrote or verify or not parts:
            self.start_graph()

    def start_graph(self) -> None:
        """Have a builder see to the newest matrix's graph parts: one started now (which does
        nothing if one is at work, and ends at once when nothing is to be done), or, with
        ``Tuning.graph_in_background=False``, here and now. Never fails: until the parts exist,
        queries scan what they do not cover exactly."""
        from . import builder

        args = (self.folder, self.dimensions, self.metric, self.tuning)
        if self.tuning.graph_in_background:
            builder.start(*args)
            return
        try:
            builder.build_pending(*args)
        except (LockTimeout, VcliError, *FILE_ERRORS):
            pass  # a builder is at it, or the folder is read-only: the next write tries again

    def discard_graph(self, graph: SearchFile, start: bool = True, inode: int | None = None) -> None:
        """Remove a damaged graph part, unless a builder is at work (which replaces it) or (given
        the ``inode`` of the file found damaged) a sound one has replaced it under the same name
        since, and (``start``) start a builder to make it anew."""
        try:
            with writer_lock(self.folder.build_lock, 0):
                if inode is None or graph.path.stat().st_ino == inode:
                    graph.path.unlink(missing_ok=True)
        except (LockTimeout, VcliError, OSError):
            return
        if start:
            self.start_graph()

    def refresh_after_write(self, notes: Notes, force: bool = False) -> None:
        """After a write has committed: refresh if due (or always, with ``force``). A failure here
        loses nothing (the store has committed) and is retried by the next command. When another
        writer holds the lock this one does not wait: that writer refreshes after its own commit."""
        try:
            with writer_lock(self.folder.lock, 0):
                self.refresh(notes, force=force)
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
