"""The live service behind the interface the CLI already calls: ``RemoteCatalog`` and
``RemoteIndex`` satisfy ``engine/interface.py``'s ``Catalog`` and ``Index`` as the local classes do,
and return the engine's records, so every command prints the same tables and ``--json`` whichever
side it ran on.

Each call becomes the service's requests, in its chunk sizes (``engine/limits.py``): get_by_ids
20 ids at a time, delete_by_ids 100, list pages of up to 1,000, uploads of up to 5,000 vectors and
100 MB. A write checks every line here before the first byte is sent, and if the service refuses
a batch, the error says which batches it had already accepted.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Generator, Iterable, Iterator, Sequence
from typing import IO, Any
from urllib.parse import quote

from ..engine import filters, limits
from ..engine.interface import Index, Progress
from ..engine.records import (
    DeleteResult,
    IndexConfig,
    IndexInfo,
    Match,
    MetadataIndex,
    MetadataIndexResult,
    Query,
    QueryResult,
    Vector,
    VectorLine,
    VectorPage,
    WriteResult,
)
from ..engine.validate import (
    check_batch_size,
    check_config,
    check_list_count,
    check_name,
    check_query,
    check_query_namespace,
    check_records,
)
from ..errors import BadInput, BadQuery, Interrupted, VcliError
from .client import Client, RemoteError, Target, Unreachable

NOT_FOUND = 3000  # the service's code for a missing index

WAIT_POLL = (0.1, 1.0)  # seconds between info polls of --wait: first, most (growing by half each time)


def _config(obj: dict) -> IndexConfig:
    cfg = obj.get("config") or {}
    return IndexConfig(obj["name"], int(cfg.get("dimensions", 0)), str(cfg.get("metric", "")),
                       obj.get("description"), obj.get("created_on", ""), obj.get("modified_on", ""))


class RemoteCatalog:
    """The account's indexes on the live service (or anything speaking its API, as ``vcli serve``)."""

    def __init__(self, target: Target):
        self.target = target
        self.client = Client(target)

    def __repr__(self) -> str:
        return f"RemoteCatalog({self.target!r})"

    def create(self, name: str, dimensions: int | None = None, metric: str | None = None, *,
               preset: str | None = None, description: str | None = None) -> IndexConfig:
        check_name(name)
        config: dict[str, Any] = {"preset": preset} if preset else {}
        dims = None
        if not preset:
            dims, metric = check_config(dimensions, metric, None)
            config = {"dimensions": dims, "metric": metric}
        body: dict[str, Any] = {"name": name, "config": config}
        if description is not None:
            body["description"] = description
        try:
            return _config(self.client.call("POST", "/indexes", json=body, idempotent=False))
        except VcliError as exc:
            if not _uncertain(exc):
                raise
            have = self._maybe(name)  # did it happen?
            if have is None or (not preset and (have.dimensions, have.metric) != (dims, metric)):
                raise
            return have

    def config(self, name: str) -> IndexConfig:
        return _config(self.client.call("GET", f"/indexes/{_segment(name)}"))

    def list(self) -> list[IndexConfig]:
        return [_config(obj) for obj in self.client.call("GET", "/indexes") or []]

    def open(self, name: str, *, write: bool = False) -> RemoteIndex:
        return RemoteIndex(self.client, check_name(name))

    def delete(self, name: str) -> None:
        try:
            self.client.call("DELETE", f"/indexes/{_segment(name)}", idempotent=False)
        except VcliError as exc:
            if not _uncertain(exc) or self._maybe(name) is not None:
                raise

    def _maybe(self, name: str) -> IndexConfig | None:
        try:
            return self.config(name)
        except RemoteError as exc:
            if exc.code == NOT_FOUND:
                return None
            raise


def _uncertain(exc: VcliError) -> bool:
    """A request whose outcome is unknown: no answer, or the service failed while doing it."""
    return isinstance(exc, Unreachable) or (isinstance(exc, RemoteError) and exc.http_status >= 500)


def _segment(name: str) -> str:
    return quote(check_name(name), safe="")


class RemoteIndex:
    """One index on the service. ``dimensions`` and ``metric`` are fetched when first needed."""

    def __init__(self, client: Client, name: str, config: IndexConfig | None = None):
        self.client = client
        self.name = name
        self._path = f"/indexes/{_segment(name)}"
        self._config = config

    def __enter__(self) -> RemoteIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        pass  # the connection belongs to the catalog's client

    @property
    def config(self) -> IndexConfig:
        if self._config is None:
            self._config = _config(self.client.call("GET", self._path))
        return self._config

    @property
    def dimensions(self) -> int:
        return self.config.dimensions

    @property
    def metric(self) -> str:
        return self.config.metric

    # == information ======================================================================
    def info(self) -> IndexInfo:
        obj = self.client.call("GET", f"{self._path}/info")
        return IndexInfo(int(obj.get("vectorCount") or 0), int(obj.get("dimensions") or 0),
                         obj.get("processedUpToDatetime"), obj.get("processedUpToMutation"))

    def wait(self, mutation_id: str, timeout: float) -> IndexInfo:
        """Poll ``info`` until the service has applied ``mutation_id`` (and so every write before
        it), for at most ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        delay = WAIT_POLL[0]
        while True:
            info = self.info()
            if info.processed_up_to_mutation == mutation_id:
                return info
            if time.monotonic() + delay > deadline:
                raise VcliError(
                    f"the service had not applied mutation {mutation_id} after {timeout:g} s (it has "
                    f"applied up to {info.processed_up_to_mutation}); it is accepted and will be applied"
                )
            time.sleep(delay)
            delay = min(delay * 1.5, WAIT_POLL[1])

    # == writes ============================================================================
    def insert(self, vectors: Iterable[VectorLine | dict], *, batch_size: int = limits.INSERT_BATCH_SIZE,
               progress: Progress | None = None) -> WriteResult:
        return self._write("insert", vectors, batch_size, progress)

    def upsert(self, vectors: Iterable[VectorLine | dict], *, batch_size: int = limits.UPSERT_BATCH_SIZE,
               progress: Progress | None = None) -> WriteResult:
        return self._write("upsert", vectors, batch_size, progress)

    def _write(self, mode: str, vectors: Iterable[VectorLine | dict], batch_size: int,
               progress: Progress | None) -> WriteResult:
        check_batch_size(batch_size)
        with tempfile.TemporaryFile(prefix="vcli-upload-") as spool:
            batches = spool_batches(check_records(vectors, self.dimensions), self.dimensions, batch_size, spool)
            if not batches:
                raise BadInput("no vectors in the input (it is empty or only blank lines)")
            count, mutation = self.send_batches(mode, spool, batches, progress)
        return WriteResult(self.name, count, count, mutation)

    def send_batches(self, mode: str, spool: IO[bytes], batches: list[Batch],
                     progress: Progress | None = None) -> tuple[int, str]:
        """Upload ``batches`` of ``spool`` in order; the vectors sent and the last mutation id."""
        mutation = ""
        accepted = done = 0
        try:
            for i, b in enumerate(batches):
                spool.seek(b.start)
                body = spool.read(b.end - b.start)
                try:
                    mutation = self.upload(mode, body)
                except VcliError as exc:
                    raise _refused(exc, batches, i) from None
                accepted += 1
                done += b.count
                if progress:
                    progress(done)
        except KeyboardInterrupt:
            done_part = (f"the service had accepted batches 1-{accepted} of {len(batches)} (lines 1-"
                         f"{batches[accepted - 1].last_line})" if accepted else "the service had accepted no batch")
            raise Interrupted(f"interrupted: {done_part}; batch {accepted + 1}, in flight, may have been "
                              "received; nothing after it was sent") from None
        return sum(b.count for b in batches), mutation

    def upload(self, mode: str, body: bytes) -> str:
        """One insert or upsert request of NDJSON ``body``; its mutation id."""
        result = self.client.call("POST", f"{self._path}/{mode}", ndjson=body)
        return _mutation_id(result)

    def delete(self, ids: Sequence[str]) -> DeleteResult:
        if not ids:
            raise BadQuery("give at least one vector id to delete")
        mutation = ""
        for chunk in _chunks(list(dict.fromkeys(ids)), limits.MAX_DELETE_IDS):
            mutation = _mutation_id(self.client.call("POST", f"{self._path}/delete_by_ids", json={"ids": chunk}))
        return DeleteResult(mutation, len(ids), None)

    # == metadata indexes ===================================================================
    def list_metadata_indexes(self) -> list[MetadataIndex]:
        found = self.client.call("GET", f"{self._path}/metadata_index/list") or {}
        return [MetadataIndex(m["propertyName"], m["indexType"]) for m in found.get("metadataIndexes") or []]

    def create_metadata_index(self, property_name: str, index_type: str) -> MetadataIndexResult:
        filters.check_property_name(property_name)
        filters.check_index_type(index_type)
        try:
            result = self.client.call("POST", f"{self._path}/metadata_index/create", idempotent=False,
                                      json={"propertyName": property_name, "indexType": index_type})
        except VcliError as exc:
            if not _uncertain(exc) or MetadataIndex(property_name, index_type) not in self.list_metadata_indexes():
                raise
            return MetadataIndexResult("", property_name, index_type)  # it was done; its id is lost
        return MetadataIndexResult(_mutation_id(result), property_name, index_type)

    def delete_metadata_index(self, property_name: str) -> MetadataIndexResult:
        try:
            result = self.client.call("POST", f"{self._path}/metadata_index/delete", idempotent=False,
                                      json={"propertyName": property_name})
        except VcliError as exc:
            if not _uncertain(exc) or any(m.property_name == property_name for m in self.list_metadata_indexes()):
                raise
            result = {"mutationId": ""}
        return MetadataIndexResult(_mutation_id(result), property_name, "")  # (the service does not say)

    # == reads =============================================================================
    def get(self, ids: Sequence[str]) -> list[Vector]:
        """The vectors that exist among ``ids``, in the order asked (get_by_ids, 20 at a time)."""
        import numpy as np  # lazy, as locally: values are float32 arrays, printed alike

        found: dict[str, Vector] = {}
        wanted = list(dict.fromkeys(ids))
        for chunk in _chunks(wanted, limits.MAX_GET_IDS):
            for obj in self.client.call("POST", f"{self._path}/get_by_ids", json={"ids": chunk}) or []:
                found[obj["id"]] = Vector(obj["id"], np.asarray(obj.get("values") or [], np.float32),
                                          obj.get("namespace"), obj.get("metadata"))
        return [found[i] for i in wanted if i in found]

    def list_ids(self, count: int = limits.DEFAULT_LIST_COUNT, cursor: str | None = None) -> VectorPage:
        check_list_count(count)
        params = {"count": str(count)}
        if cursor:
            params["cursor"] = cursor
        obj = self.client.call("GET", f"{self._path}/list", params=params) or {}
        ids = [v["id"] for v in obj.get("vectors") or []]
        nxt = obj.get("nextCursor") if obj.get("isTruncated") else None
        return VectorPage(ids, int(obj.get("totalCount") or 0), nxt or None,
                          obj.get("cursorExpirationTimestamp") if nxt else None)

    def export(self, namespace: str | None = None, *, progress: Progress | None = None,
               block_rows: int | None = None) -> Generator[tuple[bytes, int], None, None]:
        """Every vector (of one namespace, or all) as NDJSON in the insert format, in id order: each
        page of list-vectors, then its vectors by get_by_ids."""
        from ..engine.export import export_lines

        namespace = check_query_namespace(namespace)
        done = 0
        for page in id_pages(self):
            rows = [(v.id, v.namespace, _metadata_json(v.metadata), v.values.tobytes())
                    for v in self.get(page.ids) if namespace is None or v.namespace == namespace]
            if rows:
                yield export_lines(rows, self.dimensions), len(rows)
                done += len(rows)
                if progress:
                    progress(done)

    # == query =============================================================================
    def query(self, vector: Any = None, *, vector_id: str | None = None, top_k: int = limits.DEFAULT_TOP_K,
              return_values: bool = False, return_metadata: str = "none", namespace: str | None = None,
              filter: dict | None = None) -> QueryResult:
        return self.answer(Query(vector, vector_id, top_k, return_values, return_metadata, namespace, filter))

    def answer(self, query: Query) -> QueryResult:
        import numpy as np

        body: dict[str, Any] = {"topK": query.top_k, "returnValues": query.return_values,
                                "returnMetadata": query.return_metadata}
        if query.vector_id is not None:
            body["vectorId"] = query.vector_id
        else:
            body["vector"] = np.asarray(query.vector, np.float32)
        if query.namespace is not None:
            body["namespace"] = query.namespace
        if query.filter:
            body["filter"] = query.filter
        obj = self.client.call("POST", f"{self._path}/query", json=body) or {}
        with_metadata = query.return_metadata != "none"
        return QueryResult([
            Match(m["id"], float(m["score"]),
                  np.asarray(m["values"], np.float32) if m.get("values") is not None else None,
                  m.get("namespace"), m.get("metadata"), with_metadata or "metadata" in m)
            for m in obj.get("matches") or []
        ])

    def query_many(self, queries: Iterable[Query | dict | None], *,
                   progress: Progress | None = None) -> Generator[QueryResult, None, None]:
        """One request a query, in order; a query the service refuses stops the batch, naming its line."""
        n = 0
        for item in queries:
            if item is None:
                continue
            n += 1
            query = item if isinstance(item, Query) else check_query(item, line=n)
            try:
                yield self.answer(query)
            except VcliError as exc:
                exc.message = f"line {query.line or n}: {exc.message}"
                raise
            if progress:
                progress(n)


def id_pages(index: Index, first: VectorPage | None = None) -> Iterator[VectorPage]:
    """Every page of ``index``'s ids (a local or a remote index; 1,000 a page), from ``first``
    when given."""
    page = first or index.list_ids(limits.MAX_LIST_COUNT)
    while True:
        yield page
        if not page.next_cursor:
            return
        page = index.list_ids(limits.MAX_LIST_COUNT, page.next_cursor)


class Batch:
    """One upload: its byte range in the spool, its vector count and the input lines it holds."""

    __slots__ = ("start", "end", "count", "first_line", "last_line")

    def __init__(self, start: int, end: int, count: int, first_line: int, last_line: int):
        self.start, self.end, self.count = start, end, count
        self.first_line, self.last_line = first_line, last_line


def spool_batches(lines: Iterable[VectorLine], dimensions: int, batch_size: int, spool: IO[bytes]) -> list[Batch]:
    """Write every checked line to ``spool`` in the insert format and cut it into uploads of at
    most ``batch_size`` vectors and ``MAX_UPLOAD_BYTES`` bytes. A bad line raises before anything
    is sent (the caller sends only once this returns)."""
    from ..engine.export import checked_lines

    batches: list[Batch] = []
    rows: list[VectorLine] = []

    def flush(part: list[VectorLine]) -> None:
        data = checked_lines(part, dimensions)
        if len(data) > limits.MAX_UPLOAD_BYTES and len(part) > 1:  # wide vectors, big metadata
            half = len(part) // 2
            flush(part[:half])
            flush(part[half:])
            return
        start = spool.tell()
        spool.write(data)
        batches.append(Batch(start, spool.tell(), len(part), part[0].line, part[-1].line))

    for line in lines:
        rows.append(line)
        if len(rows) >= batch_size:
            flush(rows)
            rows = []
    if rows:
        flush(rows)
    spool.flush()
    return batches


def _refused(exc: VcliError, batches: list[Batch], i: int) -> VcliError:
    b = batches[i]
    where = f"batch {i + 1} of {len(batches)} (lines {b.first_line}-{b.last_line})"
    if i == 0:
        before = "nothing before it was written"
    else:
        before = (f"batches 1-{i} (lines 1-{batches[i - 1].last_line}) had been accepted and stay "
                  "written")
    exc.message = f"{where}: {exc.message}; {before}, and nothing after it was sent"
    return exc


def _mutation_id(result: Any) -> str:
    return str(result.get("mutationId") or "") if isinstance(result, dict) else ""


def _chunks(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _metadata_json(metadata: Any) -> bytes | None:
    import orjson

    return None if metadata is None else orjson.dumps(metadata)


__all__ = ["RemoteCatalog", "RemoteError", "RemoteIndex", "Target"]
