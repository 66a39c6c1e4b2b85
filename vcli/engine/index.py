"""The operations on one index: insert, upsert, delete, get, list, info and query.

How an index answers a query (see DESIGN.md, "Queries"):

* The store (SQLite) holds every vector. Two kinds of derived file speed up search, and an index
  has at most one of them at a time, chosen by size:
  - below ``GRAPH_MIN_FLOATS`` (vectors x dimensions) a **matrix** file: all vectors contiguous and
    memory-mapped, searched exactly with one NumPy product (perfect recall, a few ms at 60k x 384);
  - above it a usearch HNSW **graph**, which keeps queries interactive at millions of vectors.
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
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import orjson

from ..errors import BadInput, BadQuery, LimitExceeded, StorageError, VcliError
from ..ndjson import VectorLine, check_record, pack_values
from .catalog import STORE_FILE, now_iso
from .lock import DEFAULT_TIMEOUT, writer_lock
from .records import (
    DeleteResult,
    IndexConfig,
    IndexInfo,
    Match,
    QueryResult,
    Vector,
    VectorPage,
    WriteResult,
)
from .store import Row, Store

GRAPH_MIN_FLOATS = 64 * 2**20  # 64M floats (256 MiB): ~175k x 384, ~87k x 768
FOLD_ROWS = 2000  # changes since the derived file that make the writer refresh it
MAX_TOP_K = 100
MAX_TOP_K_WITH_DATA = 50  # with values or all metadata (the live service's cap)
MAX_LIST_COUNT = 1000
RETURN_METADATA = ("none", "indexed", "all")
CURSOR_TTL_SECONDS = 3600
_DERIVED = re.compile(r"(matrix|graph)-(\d+)\.(f32|usearch)")

Progress = Callable[[int], None]


def _lock_timeout() -> float:
    try:
        return float(os.environ.get("VCLI_LOCK_TIMEOUT", DEFAULT_TIMEOUT))
    except ValueError:
        return DEFAULT_TIMEOUT


class VectorIndex:
    """One open index. Use as a context manager, or call ``close()``."""

    def __init__(self, path: Path, config: IndexConfig, *, write: bool = False):
        self.path = path
        self.config = config
        self.name = config.name
        self.dimensions = config.dimensions
        self.metric = config.metric
        self.notes: list[str] = []  # things worth telling the user (repairs), shown on stderr
        self.store = Store.open(path / STORE_FILE)

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

    def _write(
        self, mode: str, vectors: Iterable[VectorLine | dict], batch_size: int,
        progress: Progress | None,
    ) -> WriteResult:
        if not 1 <= batch_size <= 5000:
            raise LimitExceeded(f"batch size must be between 1 and 5000, got {batch_size}")
        write_rows = self.store.insert_rows if mode == "insert" else self.store.upsert_rows
        count = written = 0
        with self._writing(), self.store.mutation(mode, now_iso()) as mut:
            batch: list[VectorLine] = []
            for item in self._checked(vectors):
                batch.append(item)
                if len(batch) >= batch_size:
                    written += write_rows(mut.seq, self._rows(mut.seq, batch))
                    count += len(batch)
                    batch = []
                    if progress:
                        progress(count)
            if batch:
                written += write_rows(mut.seq, self._rows(mut.seq, batch))
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

    def delete(self, ids: Sequence[str]) -> DeleteResult:
        """Delete vectors by id; ids that do not exist are not an error."""
        if not ids:
            raise BadQuery("give at least one vector id to delete")
        with self._writing(), self.store.mutation("delete", now_iso()) as mut:
            deleted = self.store.delete_ids(mut.seq, ids)
        self._after_write()
        return DeleteResult(mut.id, len(ids), deleted)

    def _writing(self):
        return writer_lock(self.path / "lock", _lock_timeout())

    def _after_write(self) -> None:
        """Refresh derived files when the delta has grown; a failure here loses nothing (the
        store has committed) and is retried by the next command."""
        try:
            with self._writing():
                self.refresh()
        except (OSError, VcliError, ValueError) as exc:
            self.notes.append(f"could not update the search files ({exc}); queries stay correct")

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
        import numpy as np

        check_top_k(top_k, return_values, return_metadata)
        if (vector is None) == (vector_id is None):
            raise BadQuery("give either a query vector or a vector id, but not both")
        if vector_id is not None:
            rows = self.store.get_rows([vector_id])
            if vector_id not in rows:
                raise BadQuery(f'vector id "{vector_id}" not found in index "{self.name}"')
            q = np.frombuffer(rows[vector_id][3], "<f4")
        else:
            q = self._query_vector(vector)
        if namespace is not None or filter is not None:
            raise VcliError("filters and namespaces are not supported yet")
        from . import search

        with search.Searcher(self) as searcher:
            keys = searcher.candidates(q, top_k)
            rows = self.store.rows_for_keys(keys)
        return QueryResult(self._matches(q, rows, top_k, return_values, return_metadata))

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
        out = []
        for i in order:
            _key, vid, ns, meta, _blob = rows[i]
            out.append(
                Match(
                    id=vid,
                    score=float(scores[i]),
                    values=vecs[i].copy() if return_values else None,
                    namespace=ns,
                    metadata=self._metadata_for(meta, return_metadata),
                    with_metadata=return_metadata != "none",
                )
            )
        return out

    def _metadata_for(self, meta: bytes | None, mode: str) -> dict | None:
        if mode == "none":
            return None
        return _loads(meta)

    # == derived files ====================================================================
    def derived_files(self) -> list[tuple[str, int, Path]]:
        """``(kind, seq, path)`` of the matrix and graph files, newest first."""
        found = []
        for entry in os.scandir(self.path):
            m = _DERIVED.fullmatch(entry.name)
            if m and {"matrix": "f32", "graph": "usearch"}[m.group(1)] == m.group(3):
                found.append((m.group(1), int(m.group(2)), Path(entry.path)))
        return sorted(found, key=lambda t: -t[1])

    def derived_path(self, kind: str, seq: int) -> Path:
        return self.path / (f"matrix-{seq}.f32" if kind == "matrix" else f"graph-{seq}.usearch")

    def wants_graph(self, count: int) -> bool:
        return count * self.dimensions >= GRAPH_MIN_FLOATS

    def refresh(self, *, force: bool = False) -> None:
        """Bring the derived file up to date when it is missing, of the wrong kind, damaged or more
        than ``FOLD_ROWS`` changes behind (or always, with ``force``). Call with the writer lock."""
        from . import graph, matrix

        count = self.store.count()
        kind = "graph" if self.wants_graph(count) else "matrix"
        files = self.derived_files()
        current = next((f for f in files if f[0] == kind), None)
        path = None
        if current is not None and not force:
            seq = current[1]
            added, removed = self.store.count_since(seq)
            if added + removed <= FOLD_ROWS:
                path = current[2]
            elif kind == "graph":
                try:
                    g = graph.load(current[2], self.dimensions, self.metric,
                                   self.store.count_at(seq), view=False)
                    path = graph.catch_up(g, self.store, seq, lambda s: self.derived_path(kind, s))
                except ValueError as exc:
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


def check_top_k(top_k: int, return_values: bool, return_metadata: str) -> None:
    if return_metadata not in RETURN_METADATA:
        raise BadQuery(f'return-metadata must be none, indexed or all, got "{return_metadata}"')
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= MAX_TOP_K:
        raise LimitExceeded(f"top-k must be between 1 and {MAX_TOP_K}, got {top_k}")
    if (return_values or return_metadata == "all") and top_k > MAX_TOP_K_WITH_DATA:
        raise LimitExceeded(
            f"max top K is {MAX_TOP_K_WITH_DATA} with values or all metadata returned, "
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
