"""The one interface every front end calls: ``Catalog`` and ``Index`` name exactly Vectorize's
operations, plus what every front end needs (``wait`` for ``--wait``, ``export``, ``answer`` for a
query read from JSON, the index's configuration, closing).

Two implementations satisfy it: the local one (``catalog.Catalog``, ``index.VectorIndex``) and the
live service (``vcli.remote``'s ``RemoteCatalog``, ``RemoteIndex``). The CLI, the server and
``remote/sync.py`` declare these protocols as their types, so the type checker (mypy, run by
``.ci/run``) refuses a call one side lacks, and ``tests/test_interface.py`` checks both sides have
every member. Conveniences of one side stay on its class: NumPy arrays in, deferred writes,
the writer lock and search-file refreshes are the local index's; upload batches the remote one's.
A new Vectorize call is added here first.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable, Sequence
from typing import Any, Protocol

from .records import (
    DeleteResult,
    IndexConfig,
    IndexInfo,
    MetadataIndex,
    MetadataIndexResult,
    Query,
    QueryResult,
    Vector,
    VectorLine,
    VectorPage,
    WriteResult,
)

Progress = Callable[[int], None]  # called with the number of items done so far


class Index(Protocol):
    """One open index (a context manager: ``close()`` on leaving)."""

    name: str

    @property
    def config(self) -> IndexConfig: ...
    @property
    def dimensions(self) -> int: ...
    @property
    def metric(self) -> str: ...

    def close(self) -> None: ...
    def __enter__(self) -> Index: ...
    def __exit__(self, *exc: object) -> None: ...

    # information
    def info(self) -> IndexInfo: ...
    def wait(self, mutation_id: str, timeout: float) -> IndexInfo:
        """Return once the index has applied ``mutation_id`` (at once for a local index)."""
        ...

    # writes
    def insert(self, vectors: Iterable[VectorLine | dict], *, batch_size: int = ...,
               progress: Progress | None = None) -> WriteResult: ...
    def upsert(self, vectors: Iterable[VectorLine | dict], *, batch_size: int = ...,
               progress: Progress | None = None) -> WriteResult: ...
    def delete(self, ids: Sequence[str]) -> DeleteResult: ...

    # reads
    def get(self, ids: Sequence[str]) -> list[Vector]: ...
    def list_ids(self, count: int = ..., cursor: str | None = None) -> VectorPage: ...
    def export(self, namespace: str | None = None, *, progress: Progress | None = None,
               block_rows: int | None = None) -> Generator[tuple[bytes, int], None, None]:
        """A generator: close it to stop early (its resources are released then)."""
        ...

    # queries
    def query(self, vector: Any = None, *, vector_id: str | None = None, top_k: int = ...,
              return_values: bool = False, return_metadata: str = "none", namespace: str | None = None,
              filter: dict | None = None) -> QueryResult: ...
    def answer(self, query: Query) -> QueryResult: ...
    def query_many(self, queries: Iterable[Query | dict | None], *,
                   progress: Progress | None = None) -> Generator[QueryResult, None, None]: ...

    # metadata indexes
    def list_metadata_indexes(self) -> list[MetadataIndex]: ...
    def create_metadata_index(self, property_name: str, index_type: str) -> MetadataIndexResult: ...
    def delete_metadata_index(self, property_name: str) -> MetadataIndexResult: ...


class Catalog(Protocol):
    """The indexes of one place: a data dir, or an account on the service."""

    def create(self, name: str, dimensions: int | None = None, metric: str | None = None, *,
               preset: str | None = None, description: str | None = None) -> IndexConfig: ...
    def config(self, name: str) -> IndexConfig: ...
    def list(self) -> list[IndexConfig]: ...
    def open(self, name: str, *, write: bool = False) -> Index: ...
    def delete(self, name: str) -> None: ...
