"""One open index: the operations the CLI, the REST API and the Workers binding call.

    info                                   vector count and the last mutation
    defer / apply_pending                  writes acknowledged now, applied later (pending.py)
    insert / upsert (+ _arrays)            one mutation each; validate.py checks every vector
    delete                                 one mutation
    get / list_ids / export                reads
    query / query_many                     query.py
    list/create/delete_metadata_index      one mutation each (filters.py has the rules)

Every write is one SQLite transaction (``store/``) under the writer lock (``lock.py``): the values
it brings are appended to the columns and fsynced before it commits (``store/appender.py``), so it
lands whole or not at all and is visible when the call returns. A store of an older vcli is
migrated first, once (``migrate.py``). After it commits, the writer refreshes
the search file when the delta has grown past ``Tuning.fold_rows`` (``searchfiles.py``), so small
writes stay small. Results are records (``records.py``) whose ``notes`` say what else happened.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Generator, Iterable, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson

from ..errors import BadInput, BadQuery, LimitExceeded, MetadataIndexError, QuotaExceeded, StorageError
from . import filters, limits
from .batches import HANDOVER_ROWS, BatchWriter
from .interface import Progress
from .layout import Folder, iso, now_iso
from .lock import writer_lock
from .records import (
    DeleteResult,
    IndexConfig,
    IndexInfo,
    MetadataIndex,
    MetadataIndexResult,
    Mutation,
    Query,
    QueryResult,
    Vector,
    VectorLine,
    VectorPage,
    WriteResult,
)
from .searchfiles import SearchFiles
from .store import Row, Store
from .store.appender import Appender
from .store.schema import FORMAT
from .tuning import DEFAULT, Tuning
from .validate import array_lines, check_batch_size, check_list_count, check_query_namespace, check_records


class VectorIndex:
    """One open index. Use as a context manager, or call ``close()``.

    ``lock_timeout`` is how many seconds a write waits for another writer of this index;
    ``max_top_k_with_values`` caps ``top_k`` when values or all metadata are returned (1..50);
    ``max_namespaces`` caps the namespaces a write may leave in the index;
    ``tuning`` sets the thresholds of search and export (``tuning.py``). ``Catalog.open`` passes
    them all from its own settings (``vcli.engine.open_catalog`` reads the configuration)."""

    def __init__(
        self, folder: Folder, config: IndexConfig, *, write: bool = False,
        lock_timeout: float = limits.DEFAULT_LOCK_TIMEOUT,
        max_top_k_with_values: int = limits.MAX_TOP_K_WITH_DATA, tuning: Tuning = DEFAULT,
        max_namespaces: int = limits.DEFAULT_MAX_NAMESPACES,
    ):
        self.folder = folder
        self.path = folder.path
        self.config = config
        self.name = config.name
        self.dimensions = config.dimensions
        self.metric = config.metric
        self.lock_timeout = lock_timeout
        self.tuning = tuning
        # A reader skips setting WAL mode (the store is in it already), so it works in a
        # read-only folder.
        self.store = Store.open(folder.store, readonly=not write)
        newer = self.store.newer_format()
        if newer is not None:
            self.store.close()
            raise StorageError(f"index {self.name!r} was written by a newer vcli (store format {newer}; this "
                               f"vcli reads up to {FORMAT}): upgrade vcli to use it")
        self.search_files = SearchFiles(folder, self.store, self.dimensions, self.metric, tuning)
        self.max_top_k_with_values = max_top_k_with_values
        self._migrated = False  # by this process's first write: see _mutation
        self.max_namespaces = max_namespaces

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> VectorIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def writing(self, timeout: float | None = None) -> AbstractContextManager[None]:
        """Hold this index's writer lock (waiting up to ``lock_timeout`` seconds for another)."""
        return writer_lock(self.folder.lock, self.lock_timeout if timeout is None else timeout)

    @contextmanager
    def _mutation(self, kind: str, pending: tuple[int, str] | None) -> Generator[Mutation, None, None]:
        """The writer lock, then one write transaction (``Store.mutation``), on a store of the
        current format (one of an older vcli is migrated first: ``migrate.py``)."""
        with self.writing():
            if self.store.old_format():
                from .migrate import migrate  # lazy: NumPy, once per index

                migrate(self.store, self.folder, self.dimensions)
                self._migrated = True  # the refresh after it rebuilds the matrix on the new columns
            with self.store.mutation(kind, now_iso(), pending) as mut:
                self.store.listing_open = self._listing_open()
                yield mut

    # == information ======================================================================
    def info(self) -> IndexInfo:
        with self.store.snapshot():
            count = self.store.count()
            last = self.store.last_mutation()
        return IndexInfo(
            vector_count=count,
            dimensions=self.dimensions,
            processed_up_to_datetime=last.at if last else None,
            processed_up_to_mutation=last.id if last else None,
        )

    def wait(self, mutation_id: str, timeout: float) -> IndexInfo:
        """A local write is applied before it returns: there is nothing to wait for."""
        return self.info()

    # == writes acknowledged now, applied later (vcli serve --apply-delay; pending.py) ========
    def defer(self, kind: str, payload: Any, delay: float) -> tuple[str, int]:
        """Check a write now and keep it to apply ``delay`` seconds later; its mutation id and the
        number of vectors (or ids) it holds."""
        from .pending import defer

        return defer(self, kind, payload, delay)

    def apply_pending(self, due_by: float | None = None) -> tuple[str, ...]:
        """Apply the writes kept by ``defer`` that are due by ``due_by`` (all when None), in order,
        each exactly once. A write of this process calls it first, so writes stay in order."""
        if self.store.next_due() is None:
            return ()
        from .pending import apply_pending

        return apply_pending(self, due_by)

    def next_due(self) -> float | None:
        """When the next kept write is due (Unix time), or None."""
        return self.store.next_due()

    # == writes ============================================================================
    def insert(
        self, vectors: Iterable[VectorLine | dict], *, batch_size: int = limits.INSERT_BATCH_SIZE,
        progress: Progress | None = None,
    ) -> WriteResult:
        """Add vectors whose ids are new; an id that exists keeps its first copy."""
        return self._write("insert", check_records(vectors, self.dimensions), batch_size, progress)

    def upsert(
        self, vectors: Iterable[VectorLine | dict], *, batch_size: int = limits.UPSERT_BATCH_SIZE,
        progress: Progress | None = None,
    ) -> WriteResult:
        """Add vectors, replacing whole any vector with the same id (the last copy wins)."""
        return self._write("upsert", check_records(vectors, self.dimensions), batch_size, progress)

    def insert_arrays(
        self, ids: Sequence[str], array: Any, metadata: Sequence[dict | None] | None = None,
        namespace: str | Sequence[str | None] | None = None, *, batch_size: int = limits.INSERT_BATCH_SIZE,
        progress: Progress | None = None,
    ) -> WriteResult:
        """``insert`` from NumPy: ``ids[i]`` gets row ``i`` of the 2-D ``array`` (any real dtype,
        stored as float32), with ``metadata[i]`` and the ``namespace`` (one for all, or one per
        row) when given. Ids that exist keep their first copy."""
        return self._write("insert", array_lines(ids, array, self.dimensions, metadata, namespace),
                           batch_size, progress)

    def upsert_arrays(
        self, ids: Sequence[str], array: Any, metadata: Sequence[dict | None] | None = None,
        namespace: str | Sequence[str | None] | None = None, *, batch_size: int = limits.UPSERT_BATCH_SIZE,
        progress: Progress | None = None,
    ) -> WriteResult:
        """``upsert`` from NumPy, as ``insert_arrays``: ids that exist are replaced whole."""
        return self._write("upsert", array_lines(ids, array, self.dimensions, metadata, namespace),
                           batch_size, progress)

    def _write(self, mode: str, vectors: Iterable[VectorLine], batch_size: int,
               progress: Progress | None, pending: tuple[int, str] | None = None) -> WriteResult:
        check_batch_size(batch_size)
        count = written = 0
        early = self.apply_pending() if pending is None else ()
        appender: Appender | None = None
        try:
            with self._mutation(mode, pending) as mut:
                indexes = self._metadata_indexes()
                appender = Appender(self.store, mut.seq, self.dimensions)
                seen: set[str] = set()  # namespaces the index held before or this write brings
                new = False

                def store(batch: list[VectorLine]) -> int:
                    nonlocal new
                    if not self.store.conn.in_transaction:  # (the write was stopped meanwhile)
                        raise StorageError("the write was stopped before this batch was stored")
                    new = self._new_namespaces(batch, seen) or new
                    assert appender is not None  # (made above)
                    return self._write_batch(mode, mut.seq, batch, indexes, appender)

                writer = BatchWriter(store)  # (from the second batch on, in a thread beside the reading)
                step = min(batch_size, HANDOVER_ROWS)
                try:
                    batch: list[VectorLine] = []
                    for item in vectors:
                        batch.append(item)
                        if len(batch) >= step:
                            writer.put(batch)
                            count += len(batch)
                            batch = []
                            if progress:
                                progress(count)
                    if batch:
                        writer.put(batch)
                        count += len(batch)
                    written = writer.finish()
                    if progress and batch:
                        progress(count)
                    if count == 0:
                        raise BadInput("no vectors in the input (it is empty or only blank lines)")
                    if new:
                        self._check_namespace_count()
                    appender.commit()
                finally:
                    writer.close()  # (before the transaction ends: after finish, nothing to close)
        finally:
            if appender is not None:
                appender.close()  # (once the transaction has ended, committed or not)
        return WriteResult(self.name, count, written, mut.id, early + self._refreshed())

    def _new_namespaces(self, batch: Sequence[VectorLine], seen: set[str]) -> bool:
        """Whether ``batch`` brings a namespace the index did not hold (one indexed look-up per
        namespace not seen yet in this write); adds its namespaces to ``seen``."""
        new = False
        for namespace in {v.namespace for v in batch} - seen:
            if namespace is not None:
                new = new or not self.store.has_namespace(namespace)
                seen.add(namespace)
        return new

    def _check_namespace_count(self) -> None:
        """Refuse a write (its transaction rolls back) that leaves more namespaces than
        ``max_namespaces``; counted only when the write brought a new one."""
        held = self.store.namespace_count()
        if held > self.max_namespaces:
            raise QuotaExceeded(
                f"this write would leave {held:,} namespaces in index '{self.name}'; the most allowed is "
                f"{self.max_namespaces:,} (setting max_namespaces; Vectorize allows 50,000 per index on "
                f"Workers Paid, 1,000 on Free)")

    def _write_batch(self, mode: str, seq: int, batch: Sequence[VectorLine], indexes, appender: Appender) -> int:
        """Write one batch: its rows, their values (appended to the columns) and, when metadata
        indexes exist, what each vector written holds for them (the snapshot that filters use;
        see filters.py)."""
        rows: list[Row] = [(v.id, v.namespace, v.metadata_json) for v in batch]
        write_rows = self.store.insert_rows if mode == "insert" else self.store.upsert_rows
        before = self.store.max_key()
        written = write_rows(seq, rows)
        lines: dict[str, VectorLine] = {}
        for line in batch:  # the copy that was stored: insert keeps the first, upsert the last
            if mode == "upsert" or line.id not in lines:
                lines[line.id] = line
        stored = self.store.ids_above(before)
        if stored:
            appender.add([key for key, _ in stored], b"".join(lines[vid].blob for _, vid in stored))
        values = []
        for key, vid in stored if indexes else ():
            values += filters.snapshot_rows(lines[vid].metadata, indexes, key)
        if values:
            self.store.add_metadata_values(values)
        return written

    def delete(self, ids: Sequence[str], pending: tuple[int, str] | None = None) -> DeleteResult:
        """Delete vectors by id; ids that do not exist are not an error."""
        if not ids:
            raise BadQuery("give at least one vector id to delete")
        early = self.apply_pending() if pending is None else ()
        with self._mutation("delete", pending) as mut:
            deleted = self.store.delete_ids(mut.seq, ids)
        return DeleteResult(mut.id, len(ids), deleted, early + self._refreshed())

    def _refreshed(self) -> tuple[str, ...]:
        """Refresh the search file after a write if it is due; the notes that gave."""
        notes: list[str] = []
        # after a migration, always: the old matrix is a second copy of the values until rebuilt
        self.search_files.refresh_after_write(notes, force=self._migrated)
        self._migrated = False
        return tuple(notes)

    def refresh(self, *, force: bool = False, verify: bool = False, compact: bool = False) -> tuple[str, ...]:
        """Bring the search file up to date now (``SearchFiles.refresh``); call inside
        ``writing()``. Returns the notes."""
        notes: list[str] = []
        self.search_files.refresh(notes, force=force, verify=verify, compact=compact)
        return tuple(notes)

    # == metadata indexes ===================================================================
    def _metadata_indexes(self) -> list[filters.MetadataIndexInfo]:
        return [filters.MetadataIndexInfo(p, t, seq) for p, t, seq in self.store.metadata_indexes()]

    def list_metadata_indexes(self) -> list[MetadataIndex]:
        """The metadata indexes, oldest first."""
        return [MetadataIndex(m.property_name, m.index_type) for m in self._metadata_indexes()]

    def create_metadata_index(self, property_name: str, index_type: str,
                              pending: tuple[int, str] | None = None) -> MetadataIndexResult:
        """Index ``property_name`` (dotted for nested) as ``index_type`` for vectors written from
        now on. Vectors already there are not indexed for it (as in Vectorize): the result says how
        many, and how many of them hold a value of that type there."""
        filters.check_property_name(property_name)
        filters.check_index_type(index_type)
        if pending is None:
            self.apply_pending()
        with self._mutation("create-metadata-index", pending) as mut:
            self.check_metadata_index_change(property_name, creating=True)
            self.store.add_metadata_index(mut.seq, property_name, index_type)
            not_covered = self.store.count()
            with_value = 0
            if not_covered:
                for meta in self.store.metadata_json():
                    found, value = filters.lookup(orjson.loads(meta), property_name)
                    if found and filters.index_value(value, index_type) is not None:
                        with_value += 1
        return MetadataIndexResult(mut.id, property_name, index_type, not_covered, with_value)

    def delete_metadata_index(self, property_name: str, pending: tuple[int, str] | None = None) -> MetadataIndexResult:
        """Drop a metadata index and every vector's indexed value for it."""
        if pending is None:
            self.apply_pending()
        with self._mutation("delete-metadata-index", pending) as mut:
            index_type = self.check_metadata_index_change(property_name, creating=False)
            assert index_type is not None  # (dropping one that does not exist raised)
            self.store.drop_metadata_index(property_name)
        return MetadataIndexResult(mut.id, property_name, index_type)

    def check_metadata_index_change(self, property_name: str, *, creating: bool) -> str | None:
        """Refuse a second metadata index on a property or one past the limit (``creating``), or
        dropping one that does not exist; the type of the one dropped."""
        existing = {m.property_name: m for m in self._metadata_indexes()}
        found = existing.get(property_name)
        if creating and found is not None:
            raise MetadataIndexError(
                f'index "{self.name}" already has a {found.index_type} metadata index on '
                f'"{property_name}" (delete it first to change its type)'
            )
        if creating and len(existing) >= limits.MAX_METADATA_INDEXES:
            raise LimitExceeded(
                f'index "{self.name}" already has {len(existing)} metadata indexes, the limit; '
                f"delete one first with `vcli delete-metadata-index {self.name} --property-name P`"
            )
        if not creating and found is None:
            have = ", ".join(f'"{p}"' for p in existing) or "none"
            raise MetadataIndexError(
                f'index "{self.name}" has no metadata index on "{property_name}" (its metadata indexes: {have})'
            )
        return None if found is None else found.index_type

    # == reads =============================================================================
    def get(self, ids: Sequence[str]) -> list[Vector]:
        """The vectors that exist among ``ids``, in the order asked."""
        # lazy: NumPy (values are float32 arrays, so JSON prints their shortest decimals)
        from .columns import reading

        with reading(self.store, self.dimensions) as values:
            rows = self.store.get_rows(ids)
            found = [vid for vid in dict.fromkeys(ids) if vid in rows]
            vecs = values.of([rows[vid][0] for vid in found])
        out = []
        for vid, vec in zip(found, vecs, strict=True):
            _key, ns, meta = rows[vid]
            out.append(Vector(vid, vec, ns, None if meta is None else orjson.loads(meta)))
        return out

    def list_ids(self, count: int = limits.DEFAULT_LIST_COUNT, cursor: str | None = None) -> VectorPage:
        """A page of ids in ascending order, from ``cursor`` (the last page's ``next_cursor``).

        A listing pages through the index as it was at its first request, as Vectorize's does:
        the cursor carries that snapshot's mutation, vectors written later do not appear, and
        vectors deleted (or replaced) since still do, from ``listed_gone``: every request touches
        the index's ``listing`` file, and while it is less than an hour old (the cursor's
        lifetime) writers keep there what they remove."""
        check_list_count(count)
        seq, after = _decode_cursor(cursor) if cursor else (None, None)
        self._mark_listing()  # before the snapshot is read: a write after it keeps what it removes
        with self.store.snapshot():
            last = self.store.last_seq()
            if seq is None or seq >= last:
                ids, total, seq = self.store.ids_after(after, count + 1), self.store.count(), last
            else:
                ids, total = self.store.ids_at(seq, after, count + 1)
        if len(ids) <= count:
            return VectorPage(ids, total, None, None)
        ids = ids[:count]
        expires = datetime.now(timezone.utc) + timedelta(seconds=limits.CURSOR_TTL_SECONDS)
        return VectorPage(ids, total, _encode_cursor(seq, ids[-1]), iso(expires))

    def _mark_listing(self) -> None:
        try:
            self.folder.listing.touch()
        except OSError:
            pass  # a read-only folder: nobody can write to it either, so nothing can change

    def _listing_open(self) -> bool:
        """Whether a list-vectors listing was served in the last hour (see ``list_ids``)."""
        try:
            return time.time() - self.folder.listing.stat().st_mtime < limits.CURSOR_TTL_SECONDS
        except OSError:
            return False

    def export(
        self, namespace: str | None = None, *, progress: Progress | None = None, block_rows: int | None = None,
    ) -> Generator[tuple[bytes, int], None, None]:
        """The vectors (of one namespace, or all) as NDJSON in exactly the insert format, in the
        order they were written, as ``(text, lines)`` blocks of up to ``block_rows`` lines, read
        from one snapshot (later writes do not show up half-way). ``progress(n)`` is called with
        the lines done so far."""
        from .export import export_blocks  # lazy: NumPy and the worker pool, for this command only

        namespace = check_query_namespace(namespace)
        return export_blocks(self.store, self.dimensions, namespace, self.tuning, progress, block_rows)

    # == query =============================================================================
    def query(
        self,
        vector: Sequence[float] | Any | None = None,
        *,
        vector_id: str | None = None,
        top_k: int = limits.DEFAULT_TOP_K,
        return_values: bool = False,
        return_metadata: str = "none",
        namespace: str | None = None,
        filter: dict | None = None,
    ) -> QueryResult:
        """The ``top_k`` nearest vectors to ``vector`` (or to the stored vector ``vector_id``), in
        ``namespace`` and passing ``filter`` when given (query.py says how)."""
        return self.answer(Query(vector, vector_id, top_k, return_values, return_metadata, namespace, filter))

    def answer(self, query: Query) -> QueryResult:
        """``query`` for a ``Query`` record (``validate.check_query`` reads one from the JSON of the
        Vectorize query API)."""
        return self._answerer().one(query)

    def query_many(
        self, queries: Iterable[Query | dict | None], *, progress: Progress | None = None
    ) -> Generator[QueryResult, None, None]:
        """Answer queries in order, one result each, over one open search file and store snapshot
        (``vcli query --file``). A query is a ``Query`` (``ndjson.read_queries`` reads them) or a
        dict of the Vectorize query API's JSON fields (``vector`` or ``vectorId``, ``topK``,
        ``filter``, ``namespace``, ``returnValues``, ``returnMetadata``). Same answers as ``query``;
        see ``query.Answerer.many``."""
        return self._answerer().many(queries, progress)

    def _answerer(self):
        from .query import Answerer  # lazy: NumPy, which info, get, list and small writes never load

        return Answerer(self.store, self.search_files, self.config, self.max_top_k_with_values)


def _encode_cursor(seq: int, last_id: str) -> str:
    """The listing's snapshot (a mutation's seq) and the last id of the page, opaque."""
    text = f"\0{seq}\0{last_id}"
    return base64.urlsafe_b64encode(text.encode("utf-8", "surrogatepass")).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[int | None, str]:
    """``(seq, last id)``; a cursor of an older vcli holds the last id alone (no snapshot)."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        text = base64.b64decode(padded, altchars=b"-_", validate=True).decode("utf-8")
        if not text.startswith("\0"):
            return None, text
        seq, last_id = text[1:].split("\0", 1)
        return int(seq), last_id
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise BadQuery(f'invalid cursor "{cursor[:80]}"') from None
