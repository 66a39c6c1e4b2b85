"""The operations on one index: insert, upsert, delete, get, list, info and query.

How an index answers a query (see DESIGN.md, "Queries"):

* The store (SQLite) holds every vector. Two kinds of derived file speed up search, and an index
  has at most one of them at a time, chosen by size:
  - below ``GRAPH_MIN_FLOATS`` (vectors x dimensions) a **matrix** file: all vectors contiguous and
    memory-mapped, searched exactly with one NumPy product (perfect recall, ~20 ms at 60k x 384);
  - above it a usearch HNSW **graph**, which keeps queries interactive at millions of vectors
    (recall@10 >= 0.99 by default; see graph.py for the settings and what they were measured at).
* Queries open the derived file memory-mapped (a matrix with ``np.memmap``, a graph with usearch's
  ``view``) and read only what they touch; usearch is imported only when there is a graph. A batch
  (``query_many``) keeps one searcher (file + snapshot) open and answers blocks of queries with one
  matrix product or one multi-threaded graph search each.
* Small writes stay small: a write only touches SQLite. Rows written or removed since the derived
  file was made form a *delta* that every query scans exactly and merges, so a query always sees
  every committed write. Once the delta passes ``FOLD_ROWS`` the writer rebuilds the matrix or
  catches the graph up, under the writer lock, after its transaction has committed.
* Every match is rescored exactly in float64 from the stored float32 values, and ties are broken by
  id, so scores do not depend on which path found the match.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson

from ..errors import (
    BadInput,
    BadQuery,
    Interrupted,
    LimitExceeded,
    LockTimeout,
    MetadataIndexError,
    StorageError,
    VcliError,
)
from ..ndjson import QueryLine, VectorLine, check_record, pack_values
from .catalog import STORE_FILE, now_iso
from .filters import EXACT_ROWS
from .lock import DEFAULT_TIMEOUT, writer_lock
from .records import (
    DeleteResult,
    IndexConfig,
    IndexInfo,
    Match,
    MetadataIndex,
    MetadataIndexResult,
    QueryResult,
    Vector,
    VectorPage,
    WriteResult,
)
from .store import Row, Store

# When the graph pays (measured with benchmarks/run.py on 2 cores, 384 dims): exact search reads
# the whole matrix, ~4 bytes x vectors x dims a query. A fresh `vcli query` spends ~20 ms on it at
# 60k vectors, ~40-80 ms at 175k and ~50-90 ms at 350k; a batch answers ~1,100 queries/s at 60k
# and ~3x fewer at 175k. Building the graph instead costs ~1,800 vectors/s (60k: ~35 s, against
# ~6 s for the whole exact load; 175k: ~100 s). So below 64M numbers (256 MiB of matrix: ~175k x
# 384, ~87k x 768) an index is searched exactly and never waits for a graph; above, a graph keeps
# a one-shot query at a few ms of search however large the index grows.
GRAPH_MIN_FLOATS = 64 * 2**20
# Changes (rows written + rows removed) since the derived file before the writer folds them in.
# Every query scans the delta exactly: 2,000 rows of 384 dims are ~3 MB read from SQLite, a few ms.
# Folding rewrites the matrix (175k x 384: ~1-2 s) or loads, extends and saves the graph, so once
# every 2,000 changes keeps that under ~1 ms a change; a one-vector upsert otherwise decides from
# SQLite alone that nothing is due, without importing NumPy (see ``refresh``).
FOLD_ROWS = 2000
MAX_TOP_K = 100
EXPORT_BLOCK_ROWS = 1024  # lines per block that export yields
# Exports of more numbers than this (~22k x 384) format them in one process per core: one core
# writes a 384-dim vector in ~20 µs, and starting the processes costs ~0.1-0.2 s.
EXPORT_PARALLEL_FLOATS = 8 * 2**20
MAX_TOP_K_WITH_DATA = 50  # with values or all metadata (the live service's cap)
MAX_LIST_COUNT = 1000
RETURN_METADATA = ("none", "indexed", "all")
CURSOR_TTL_SECONDS = 3600
_DERIVED = re.compile(r"(matrix|graph)-(\d+)\.(f32|usearch)")
_DERIVED_TEMP = re.compile(r"\.(matrix-\d+\.f32|graph-\d+\.usearch)\.tmp-[0-9a-f]+")

Progress = Callable[[int], None]


class VectorIndex:
    """One open index. Use as a context manager, or call ``close()``.

    ``lock_timeout`` is how many seconds a write waits for another writer of this index;
    ``max_top_k_with_values`` caps ``top_k`` when values or all metadata are returned (1..50).
    ``Catalog.open`` passes both from the configuration (``vcli.engine.open_catalog``)."""

    filter_exact_rows = EXACT_ROWS  # see filters.py; an attribute so that tests can lower it

    def __init__(
        self, path: Path, config: IndexConfig, *, write: bool = False,
        lock_timeout: float = DEFAULT_TIMEOUT, max_top_k_with_values: int = MAX_TOP_K_WITH_DATA,
    ):
        self.path = path
        self.lock_timeout = lock_timeout
        self.max_top_k_with_values = max_top_k_with_values
        self.config = config
        self.name = config.name
        self.dimensions = config.dimensions
        self.metric = config.metric
        self.notes: list[str] = []  # things worth telling the user (repairs), shown on stderr
        # A reader skips setting WAL mode (the store is in it already), so it works in a
        # read-only folder.
        self.store = Store.open(path / STORE_FILE, readonly=not write)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> VectorIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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

    # == writes ============================================================================
    def insert(
        self, vectors: Iterable[VectorLine | dict], *, batch_size: int = 1000,
        progress: Progress | None = None,
    ) -> WriteResult:
        """Add vectors whose ids are new; an id that exists keeps its first copy."""
        return self._write("insert", vectors, batch_size, progress)

    def upsert(
        self, vectors: Iterable[VectorLine | dict], *, batch_size: int = 5000,
        progress: Progress | None = None,
    ) -> WriteResult:
        """Add vectors, replacing whole any vector with the same id (the last copy wins)."""
        return self._write("upsert", vectors, batch_size, progress)

    def insert_arrays(
        self, ids: Sequence[str], array: Any, metadata: Sequence[dict | None] | None = None,
        namespace: str | Sequence[str | None] | None = None, *, batch_size: int = 1000,
        progress: Progress | None = None,
    ) -> WriteResult:
        """``insert`` from NumPy: ``ids[i]`` gets row ``i`` of the 2-D ``array`` (any real dtype,
        stored as float32), with ``metadata[i]`` and the ``namespace`` (one for all, or one per
        row) when given. Ids that exist keep their first copy."""
        return self._write("insert", array_lines(ids, array, self.dimensions, metadata, namespace),
                           batch_size, progress)

    def upsert_arrays(
        self, ids: Sequence[str], array: Any, metadata: Sequence[dict | None] | None = None,
        namespace: str | Sequence[str | None] | None = None, *, batch_size: int = 5000,
        progress: Progress | None = None,
    ) -> WriteResult:
        """``upsert`` from NumPy, as ``insert_arrays``: ids that exist are replaced whole."""
        return self._write("upsert", array_lines(ids, array, self.dimensions, metadata, namespace),
                           batch_size, progress)

    def _write(
        self, mode: str, vectors: Iterable[VectorLine | dict], batch_size: int,
        progress: Progress | None,
    ) -> WriteResult:
        if not 1 <= batch_size <= 5000:
            raise LimitExceeded(f"batch size must be between 1 and 5000, got {batch_size}")
        write_rows = self.store.insert_rows if mode == "insert" else self.store.upsert_rows
        count = written = 0
        with self._writing(), self.store.mutation(mode, now_iso()) as mut:
            indexes = self._metadata_indexes()
            batch: list[VectorLine] = []
            for item in self._checked(vectors):
                batch.append(item)
                if len(batch) >= batch_size:
                    written += self._write_batch(mode, write_rows, mut.seq, batch, indexes)
                    count += len(batch)
                    batch = []
                    if progress:
                        progress(count)
            if batch:
                written += self._write_batch(mode, write_rows, mut.seq, batch, indexes)
                count += len(batch)
                if progress:
                    progress(count)
            if count == 0:
                raise BadInput("no vectors in the input (it is empty or only blank lines)")
        self._after_write()
        return WriteResult(self.name, count, written, mut.id)

    def _checked(self, vectors: Iterable[VectorLine | dict]) -> Iterable[VectorLine]:
        for n, item in enumerate(vectors, 1):
            yield item if isinstance(item, VectorLine) else check_record(item, n, self.dimensions)

    def _rows(self, seq: int, batch: Sequence[VectorLine]) -> list[Row]:
        return [(v.id, v.namespace, v.metadata_json, v.blob) for v in batch]

    def _write_batch(self, mode: str, write_rows, seq: int, batch: Sequence[VectorLine], indexes) -> int:
        """Write one batch and, when metadata indexes exist, what each vector written holds for
        them (the snapshot that filters use; see filters.py)."""
        if not indexes:
            return write_rows(seq, self._rows(seq, batch))
        from .filters import snapshot_rows

        before = self.store.max_key()
        written = write_rows(seq, self._rows(seq, batch))
        lines: dict[str, VectorLine] = {}
        for line in batch:  # the copy that was stored: insert keeps the first, upsert the last
            if mode == "upsert" or line.id not in lines:
                lines[line.id] = line
        values = []
        for key, vid in self.store.ids_above(before):
            values += snapshot_rows(lines[vid].metadata, indexes, key)
        if values:
            self.store.add_metadata_values(values)
        return written

    # == metadata indexes ===================================================================
    def _metadata_indexes(self):
        from .filters import MetadataIndexInfo

        return [MetadataIndexInfo(p, t, seq) for p, t, seq in self.store.metadata_indexes()]

    def list_metadata_indexes(self) -> list[MetadataIndex]:
        """The metadata indexes, oldest first."""
        return [MetadataIndex(m.property_name, m.index_type) for m in self._metadata_indexes()]

    def create_metadata_index(self, property_name: str, index_type: str) -> MetadataIndexResult:
        """Index ``property_name`` (dotted for nested) as ``index_type`` for vectors written from
        now on. Vectors already there are not indexed for it (as in Vectorize): the result says how
        many, and how many of them hold a value of that type there."""
        from . import filters

        filters.check_property_name(property_name)
        filters.check_index_type(index_type)
        with self._writing(), self.store.mutation("create-metadata-index", now_iso()) as mut:
            existing = self._metadata_indexes()
            for m in existing:
                if m.property_name == property_name:
                    raise MetadataIndexError(
                        f'index "{self.name}" already has a {m.index_type} metadata index on '
                        f'"{property_name}" (delete it first to change its type)'
                    )
            if len(existing) >= filters.MAX_METADATA_INDEXES:
                raise LimitExceeded(
                    f'index "{self.name}" already has {len(existing)} metadata indexes, the limit; '
                    f"delete one first with `vcli delete-metadata-index {self.name} --property-name P`"
                )
            self.store.add_metadata_index(mut.seq, property_name, index_type)
            not_covered = self.store.count()
            with_value = 0
            if not_covered:
                for meta in self.store.metadata_json():
                    found, value = filters.lookup(orjson.loads(meta), property_name)
                    if found and filters.index_value(value, index_type) is not None:
                        with_value += 1
        return MetadataIndexResult(mut.id, property_name, index_type, not_covered, with_value)

    def delete_metadata_index(self, property_name: str) -> MetadataIndexResult:
        """Drop a metadata index and every vector's indexed value for it."""
        with self._writing(), self.store.mutation("delete-metadata-index", now_iso()) as mut:
            existing = {m.property_name: m for m in self._metadata_indexes()}
            if property_name not in existing:
                have = ", ".join(f'"{p}"' for p in existing) or "none"
                raise MetadataIndexError(
                    f'index "{self.name}" has no metadata index on "{property_name}" '
                    f"(its metadata indexes: {have})"
                )
            self.store.drop_metadata_index(property_name)
        return MetadataIndexResult(mut.id, property_name, existing[property_name].index_type)

    def delete(self, ids: Sequence[str]) -> DeleteResult:
        """Delete vectors by id; ids that do not exist are not an error."""
        if not ids:
            raise BadQuery("give at least one vector id to delete")
        with self._writing(), self.store.mutation("delete", now_iso()) as mut:
            deleted = self.store.delete_ids(mut.seq, ids)
        self._after_write()
        return DeleteResult(mut.id, len(ids), deleted)

    def _writing(self):
        return writer_lock(self.path / "lock", self.lock_timeout)

    def _after_write(self) -> None:
        """Refresh derived files when the delta has grown; a failure here loses nothing (the
        store has committed) and is retried by the next command. When another writer holds the
        lock this one does not wait: that writer refreshes after its own commit."""
        try:
            with writer_lock(self.path / "lock", 0):
                self.refresh()
        except LockTimeout:
            pass
        except (OSError, VcliError, ValueError, RuntimeError) as exc:
            self.notes.append(f"could not update the search files ({exc}); queries stay correct")
        except KeyboardInterrupt:
            raise Interrupted(
                "interrupted while updating the search files; the write itself was saved "
                "and queries stay correct"
            ) from None

    # == reads =============================================================================
    def get(self, ids: Sequence[str]) -> list[Vector]:
        """The vectors that exist among ``ids``, in the order asked."""
        import numpy as np

        rows = self.store.get_rows(ids)
        out = []
        for vid in dict.fromkeys(ids):
            if vid in rows:
                _key, ns, meta, blob = rows[vid]
                out.append(Vector(vid, np.frombuffer(blob, "<f4"), ns, _loads(meta)))
        return out

    def list_ids(self, count: int = 100, cursor: str | None = None) -> VectorPage:
        if not 1 <= count <= MAX_LIST_COUNT:
            raise LimitExceeded(f"count must be between 1 and {MAX_LIST_COUNT}, got {count}")
        after = _decode_cursor(cursor) if cursor else None
        with self.store.snapshot():
            ids = self.store.ids_after(after, count + 1)
            total = self.store.count()
        more = len(ids) > count
        ids = ids[:count]
        if more:
            from datetime import datetime, timedelta, timezone

            expires = datetime.now(timezone.utc) + timedelta(seconds=CURSOR_TTL_SECONDS)
            return VectorPage(
                ids, total, _encode_cursor(ids[-1]), expires.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            )
        return VectorPage(ids, total, None, None)

    def export(
        self, namespace: str | None = None, *, progress: Progress | None = None,
        block_rows: int | None = None,
    ) -> Iterator[tuple[bytes, int]]:
        """The vectors (of one namespace, or all) as NDJSON in exactly the insert format, in the
        order they were written, as ``(text, lines)`` blocks of up to ``block_rows`` lines, read
        from one snapshot (later writes do not show up half-way). ``progress(n)`` is called with
        the lines done so far."""
        from . import filters

        namespace = filters.check_namespace(namespace)
        return self._export(namespace, progress, block_rows or EXPORT_BLOCK_ROWS)

    def _export(
        self, namespace: str | None, progress: Progress | None, block_rows: int
    ) -> Iterator[tuple[bytes, int]]:
        from ..ndjson import format_blocks

        done = 0
        with self.store.snapshot():
            # Formatting the numbers is the cost: large exports use every core (see format_blocks).
            big = self.store.count() * self.dimensions >= EXPORT_PARALLEL_FLOATS
            workers = (os.cpu_count() or 1) if big else 1
            cur = self.store.export_rows(namespace)
            for data, n in format_blocks(iter(lambda: cur.fetchmany(block_rows), []), self.dimensions,
                                         workers):
                yield data, n
                done += n
                if progress:
                    progress(done)

    # == query =============================================================================
    def query(
        self,
        vector: Sequence[float] | Any | None = None,
        *,
        vector_id: str | None = None,
        top_k: int = 5,
        return_values: bool = False,
        return_metadata: str = "none",
        namespace: str | None = None,
        filter: dict | None = None,
    ) -> QueryResult:
        request = self._request(vector, vector_id, top_k, return_values, return_metadata, namespace,
                                filter)
        from . import search

        with search.Searcher(self, lookups=False) as searcher:
            return self._answer(searcher, request)

    def query_many(
        self, queries: Iterable[QueryLine | dict | None], *, progress: Progress | None = None
    ) -> Iterator[QueryResult]:
        """Answer queries in order, one result each, over one open searcher (one derived file, one
        store snapshot): ``vcli query --file``. A query is a ``QueryLine`` (``ndjson.read_queries``)
        or a dict of the same JSON fields (``vector`` or ``vectorId``, ``topK``, ``filter``,
        ``namespace``, ``returnValues``, ``returnMetadata``). A wrong query raises its error naming
        its line, once the answers to the lines before it have been yielded.

        Queries with no namespace and no filter are answered a block at a time (one matrix product
        or one graph search on all cores per block; ``Searcher.begin``), with the same answers as
        ``query``. While a block's product is computed in the background, the block before it is
        answered (rows read, rescored, yielded) and the next one read. A ``None`` among the queries
        (a pause in the input, see ``ndjson.lines_with_pauses``) answers everything read so far
        before reading on."""
        from ..ndjson import check_query
        from . import search

        done = n = 0
        pending: list[tuple[int, _Request]] = []  # read, not started
        started: list = []  # at most one block: (block, its Searcher.begin handle)
        with search.Searcher(self) as searcher:
            size = searcher.block_size()

            def advance(everything: bool) -> Iterator[QueryResult]:
                """Start the pending block; answer the one started before it (or all)."""
                nonlocal pending, done
                if pending:
                    started.append((pending, self._begin_block(searcher, pending)))
                    pending = []
                while len(started) > (0 if everything else 1):
                    block, handle = started.pop(0)
                    yield from self._finish_block(searcher, block, handle)
                    done += len(block)
                    if progress:
                        progress(done)

            items = iter(queries)
            while True:
                try:
                    item = next(items)
                    if item is not None:
                        n += 1
                        line = item if isinstance(item, QueryLine) else check_query(item, n)
                        try:
                            request = self._request(**line.options())
                        except VcliError as exc:
                            raise _at_line(exc, line.line) from None
                        pending.append((line.line, request))
                except StopIteration:
                    break
                except VcliError:
                    yield from advance(everything=True)
                    raise
                if item is None or len(pending) >= size:
                    yield from advance(everything=item is None)
            yield from advance(everything=True)

    def _begin_block(self, searcher, block: list[tuple[int, _Request]]):
        import numpy as np

        plain = [r for _line, r in block if r.namespace is None and r.filter is None]
        if not plain:
            return None
        return searcher.begin(np.stack([r.q for r in plain]), [r.top_k for r in plain])

    def _finish_block(self, searcher, block: list[tuple[int, _Request]], handle) -> Iterator[QueryResult]:
        found = iter(searcher.finish(handle) if handle is not None else ())
        keys = [next(found) if r.namespace is None and r.filter is None else None for _line, r in block]
        rows = {row[0]: row for row in self.store.rows_for_keys(k for ks in keys if ks for k in ks)}
        for (line, r), candidates in zip(block, keys, strict=True):
            try:
                yield self._answer(searcher, r, candidates, rows)
            except VcliError as exc:
                raise _at_line(exc, line) from None

    def _request(
        self, vector, vector_id, top_k, return_values, return_metadata, namespace, filter
    ) -> _Request:
        """Check a query's options and resolve its vector: everything that does not need the
        search files."""
        import numpy as np

        check_top_k(top_k, return_values, return_metadata, self.max_top_k_with_values)
        from . import filters

        namespace = filters.check_namespace(namespace)
        parsed = filters.parse(filter) if filter is not None else None
        if (vector is None) == (vector_id is None):
            raise BadQuery("give either a query vector or a vector id, but not both")
        if vector_id is not None:
            rows = self.store.get_rows([vector_id])
            if vector_id not in rows:
                raise BadQuery(f'vector id "{vector_id}" not found in index "{self.name}"')
            q = np.frombuffer(rows[vector_id][3], "<f4")
        else:
            q = self._query_vector(vector)
        return _Request(q, top_k, return_values, return_metadata, namespace, parsed)

    def _answer(
        self, searcher, r: _Request, keys: list[int] | None = None, rows: dict | None = None
    ) -> QueryResult:
        """The matches of one checked query (``keys``: its candidates, when already found; ``rows``:
        their store rows by key, when already read)."""
        if keys is None:
            keys = self._candidates(searcher, r.q, r.top_k, r.namespace, r.filter)
            rows = None
        if rows is None:
            rows = self.store.rows_for_keys(keys)
        else:
            rows = [rows[k] for k in keys if k in rows]
        return QueryResult(self._matches(r.q, rows, r.top_k, r.return_values, r.return_metadata))

    def _candidates(self, searcher, q, top_k: int, namespace: str | None, parsed) -> list[int]:
        """Namespace first, then the filter, then the top k (DESIGN.md, Queries): when few vectors
        match, score them all exactly; when many do, let the search widen, keeping those that pass."""
        if namespace is None and parsed is None:
            return searcher.candidates(q, top_k)
        from .filters import Plan

        plan = Plan.build(self.store.conn, self.name, self._metadata_indexes(), parsed, namespace)
        self.notes += plan.notes
        if not plan.active:
            return searcher.candidates(q, top_k)
        allowed = plan.matching_keys(self.filter_exact_rows)
        if allowed is None:
            return searcher.candidates(q, top_k, accept=plan.accept)
        return searcher.candidates(q, top_k, allowed) if len(allowed) else []

    def _query_vector(self, vector: Any):
        import numpy as np

        if isinstance(vector, np.ndarray):
            vector = vector.tolist()
        try:
            blob = pack_values(list(vector) if isinstance(vector, tuple) else vector, self.dimensions,
                               what="query vector")
        except BadInput as exc:  # dimension mismatch
            raise BadQuery(
                f"invalid query vector, expected {self.dimensions} dimensions, and got "
                f"{len(vector)} dimensions"
            ) from exc
        except ValueError as exc:
            raise BadQuery(str(exc)) from exc
        return np.frombuffer(blob, "<f4")

    def _matches(
        self, q, rows: list[tuple], top_k: int, return_values: bool, return_metadata: str
    ) -> list[Match]:
        import numpy as np

        if not rows:
            return []
        vecs = np.frombuffer(b"".join(r[4] for r in rows), "<f4").reshape(len(rows), self.dimensions)
        scores = exact_scores(self.metric, q, vecs)
        sign = -1.0 if self.metric == "cosine" else 1.0
        order = sorted(range(len(rows)), key=lambda i: (sign * scores[i], rows[i][1]))[:top_k]
        indexed = self._indexed_metadata([rows[i][0] for i in order]) if return_metadata == "indexed" else None
        out = []
        for i in order:
            _key, vid, ns, meta, _blob = rows[i]
            out.append(
                Match(
                    id=vid,
                    score=float(scores[i]),
                    values=vecs[i].copy() if return_values else None,
                    namespace=ns,
                    metadata=(indexed.get(_key, {}) if indexed is not None
                              else self._metadata_for(meta, return_metadata)),
                    with_metadata=return_metadata != "none",
                )
            )
        return out

    def _metadata_for(self, meta: bytes | None, mode: str) -> dict | None:
        if mode == "none":
            return None
        return _loads(meta)

    def _indexed_metadata(self, keys: Sequence[int]) -> dict[int, dict]:
        """``--return-metadata indexed``: per vector, the values its metadata indexes hold (strings
        cut to 64 bytes), nested back under dotted names; vectors written before a metadata index
        existed have nothing for it."""
        from .filters import nest, output_value

        pairs: dict[int, list] = {}
        for key, prop, kind, value in self.store.metadata_values_for(keys):
            pairs.setdefault(key, []).append((prop, output_value(value, kind)))
        return {key: nest(found) for key, found in pairs.items()}

    # == derived files ====================================================================
    def derived_files(self) -> list[tuple[str, int, Path]]:
        """``(kind, seq, path)`` of the matrix and graph files, newest first."""
        found = []
        for entry in os.scandir(self.path):
            m = _DERIVED.fullmatch(entry.name)
            if m and {"matrix": "f32", "graph": "usearch"}[m.group(1)] == m.group(3):
                found.append((m.group(1), int(m.group(2)), Path(entry.path)))
        return sorted(found, key=lambda t: -t[1])

    def temp_files(self) -> list[Path]:
        """Temporary derived files (a refresh killed before its rename leaves one behind)."""
        return [Path(e.path) for e in os.scandir(self.path) if _DERIVED_TEMP.fullmatch(e.name)]

    def remove_temp_files(self) -> None:
        """Delete leftover temporary derived files. Call with the writer lock (only a refresh,
        which holds it, writes them)."""
        for path in self.temp_files():
            path.unlink(missing_ok=True)

    def repair_search_files(self) -> str | None:
        """For a reader that found the derived file damaged, missing or far behind: refresh it if
        the writer lock is free right now. ``None`` when done, else why it could not."""
        before = len(self.notes)
        try:
            with writer_lock(self.path / "lock", 0):
                self.refresh(verify=True)
        except LockTimeout:
            return "another command is writing to the index"
        except (OSError, VcliError, ValueError, RuntimeError) as exc:
            return f"cannot rebuild it: {exc}"
        finally:
            del self.notes[before:]  # the caller says what happened, once
        return None

    def derived_path(self, kind: str, seq: int) -> Path:
        return self.path / (f"matrix-{seq}.f32" if kind == "matrix" else f"graph-{seq}.usearch")

    def wants_graph(self, count: int) -> bool:
        return count * self.dimensions >= GRAPH_MIN_FLOATS

    def refresh(self, *, force: bool = False, verify: bool = False) -> None:
        """Bring the derived file up to date when it is missing, of the wrong kind, damaged,
        foreign or more than ``FOLD_ROWS`` changes behind (or always, with ``force``); remove older
        files and temporary ones left by a killed refresh. Call with the writer lock.

        The common case after a small write (the one file there is of the right kind and at most
        ``FOLD_ROWS`` behind) is decided from SQLite alone and returns before NumPy or usearch are
        imported: a one-vector upsert costs about what ``vcli info`` does. The file is not
        re-verified then (unless ``verify``, as a repair asks); every query verifies the file it
        opens and repairs it if needed."""
        self.remove_temp_files()
        count = self.store.count()
        kind = "graph" if self.wants_graph(count) else "matrix"
        files = self.derived_files()
        current = next((f for f in files if f[0] == kind), None)
        if not force and not verify and current is not None and len(files) == 1:
            added, removed = self.store.count_since(current[1])
            if added + removed <= FOLD_ROWS:
                return
        from . import graph, matrix, search

        path = None
        if current is not None and not force:
            seq = current[1]
            try:
                loaded = search.load_derived(kind, seq, current[2], self.dimensions, self.metric)
                search.verify_derived(kind, seq, loaded, self.store)
                del loaded
            except (ValueError, OSError, RuntimeError) as exc:
                self.notes.append(
                    f"the search file {current[2].name} was unusable ({exc}); rebuilt it from the store"
                )
                current = None
        if current is not None and not force:
            added, removed = self.store.count_since(seq)
            if added + removed <= FOLD_ROWS:
                path = current[2]
            elif kind == "graph":
                try:
                    g = graph.load(current[2], self.dimensions, self.metric,
                                   self.store.count_at(seq), view=False)
                    path = graph.catch_up(g, self.store, seq, lambda s: self.derived_path(kind, s))
                except (ValueError, RuntimeError) as exc:
                    self.notes.append(f"rebuilding the search graph: {exc}")
        if path is None:
            if kind == "graph":
                path = graph.build(self.store, lambda s: self.derived_path(kind, s),
                                   self.dimensions, self.metric)
            else:
                path = matrix.build(self.store, lambda s: self.derived_path(kind, s), self.dimensions)
        kept_seq = int(_DERIVED.fullmatch(path.name).group(2))
        for _kind, _seq, other in files:
            if other != path:
                other.unlink(missing_ok=True)
        self.store.prune_removed(kept_seq)


class _Request:
    """A checked query: its float32 vector and options (the filter parsed). (A plain class: a
    dataclass costs ~1.5 ms to create, at every start of ``vcli``.)"""

    __slots__ = ("q", "top_k", "return_values", "return_metadata", "namespace", "filter")

    def __init__(self, q: Any, top_k: int, return_values: bool, return_metadata: str,
                 namespace: str | None, filter: Any):
        self.q = q
        self.top_k = top_k
        self.return_values = return_values
        self.return_metadata = return_metadata
        self.namespace = namespace
        self.filter = filter


def _at_line(exc: VcliError, line: int) -> VcliError:
    """The same error, its message starting with the query's line number."""
    if not exc.message.startswith(f"line {line}"):
        exc.message = f"line {line}: {exc.message}"
        exc.args = (exc.message,)
    return exc


def array_lines(
    ids: Sequence[str], array: Any, dimensions: int, metadata: Sequence[dict | None] | None = None,
    namespace: str | Sequence[str | None] | None = None,
) -> Iterable[VectorLine]:
    """Check ids, a 2-D array and optional metadata / namespaces as ``insert_arrays`` takes them,
    and yield one checked vector per row. Every row is checked before anything is written (the
    write's transaction rolls back on the first bad one)."""
    import numpy as np

    from ..ndjson import check_id, check_metadata, check_namespace

    ids = list(ids.tolist() if isinstance(ids, np.ndarray) else ids)
    try:
        values = np.asarray(array)
        if values.dtype == bool or not (np.issubdtype(values.dtype, np.number)):
            raise ValueError
        with np.errstate(over="ignore", invalid="ignore"):
            values = np.ascontiguousarray(values, dtype="<f4")
    except (TypeError, ValueError):
        raise BadInput("the array must hold real numbers") from None
    if values.ndim != 2:
        raise BadInput(f"the array must be 2-D (one row per vector), got {values.ndim}-D")
    rows = values.shape[0]
    if values.shape[1] != dimensions:
        from ..errors import DimensionMismatch

        raise DimensionMismatch(f"expected {dimensions} dimensions, got an array of {values.shape[1]} columns")
    if len(ids) != rows:
        raise BadInput(f"{len(ids)} ids for {rows} rows")
    if metadata is not None and len(metadata) != rows:
        raise BadInput(f"{len(metadata)} metadata entries for {rows} rows")
    per_row_ns = namespace is not None and not isinstance(namespace, str)
    if per_row_ns and len(namespace) != rows:
        raise BadInput(f"{len(namespace)} namespaces for {rows} rows")
    finite = np.isfinite(values).all(axis=1)
    for i in range(rows):
        vid = ids[i]
        try:
            check_id(vid)
            if not finite[i]:
                raise ValueError("values hold a number that is not finite or too large for float32")
            meta = None if metadata is None else metadata[i]
            meta_json = None if meta is None else check_metadata(meta)
            ns = namespace[i] if per_row_ns else namespace
            if ns is not None:
                check_namespace(ns)
        except ValueError as exc:
            known = vid if isinstance(vid, str) else None
            raise BadInput(f"row {i}: {exc}", vector_id=known) from None
        yield VectorLine(i + 1, vid, values[i].tobytes(), ns, meta, meta_json)


def check_top_k(
    top_k: int, return_values: bool, return_metadata: str, cap: int = MAX_TOP_K_WITH_DATA
) -> None:
    if return_metadata not in RETURN_METADATA:
        raise BadQuery(f'return-metadata must be none, indexed or all, got "{return_metadata}"')
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= MAX_TOP_K:
        raise LimitExceeded(f"top-k must be between 1 and {MAX_TOP_K}, got {top_k}")
    if (return_values or return_metadata == "all") and top_k > cap:
        raise LimitExceeded(
            f"max top K is {cap} with values or all metadata returned, "
            f"but got {top_k}"
        )


def exact_scores(metric: str, q, vecs):
    """Vectorize's score of each row of ``vecs`` against ``q``, computed in float64."""
    import numpy as np

    q64 = np.asarray(q, np.float64)
    v64 = np.asarray(vecs, np.float64)
    dots = v64 @ q64
    if metric == "dot-product":
        return -dots
    if metric == "euclidean":
        return np.sqrt(np.maximum(((v64 - q64) ** 2).sum(axis=1), 0.0))
    denom = np.linalg.norm(v64, axis=1) * np.linalg.norm(q64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denom > 0, dots / np.where(denom > 0, denom, 1.0), 0.0)


def _loads(meta: bytes | None) -> dict | None:
    return None if meta is None else orjson.loads(meta)


def _encode_cursor(last_id: str) -> str:
    return base64.urlsafe_b64encode(last_id.encode("utf-8", "surrogatepass")).decode().rstrip("=")


def _decode_cursor(cursor: str) -> str:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        return base64.b64decode(padded, altchars=b"-_", validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise BadQuery(f'invalid cursor "{cursor[:80]}"') from None


__all__ = ["VectorIndex", "StorageError"]
