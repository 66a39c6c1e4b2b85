"""What engine calls take and return: immutable records (``NamedTuple``), turned into the JSON
of docs/contract.md by ``to_json``. (Not dataclasses: eleven frozen dataclasses cost every start
of ``vcli`` ~15 ms.)

Vector values stay float32 NumPy arrays (or ``array('f')``) so that JSON output prints them as the
shortest decimal that round-trips in float32, as Vectorize does. A result's ``notes`` are things
worth telling the user that are not the answer (a search file rebuilt, a filter value that can
never match); front ends show them beside it (the CLI on stderr), never in its JSON.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from .limits import DEFAULT_TOP_K

Notes = tuple[str, ...]


# == what calls take ==============================================================================
class VectorLine(NamedTuple):
    """A checked vector (``validate.check_record``), with the line or row it came from."""

    line: int
    id: str
    blob: bytes  # float32 little-endian
    namespace: str | None
    metadata: dict[str, Any] | None
    metadata_json: bytes | None


class Query(NamedTuple):
    """One query, as asked (``VectorIndex.query``'s keywords; ``validate.check_query`` reads one
    from the JSON of the Vectorize query API). ``line``: where it came from in a batch, for errors."""

    vector: Any = None
    vector_id: str | None = None
    top_k: int = DEFAULT_TOP_K
    return_values: bool = False
    return_metadata: str = "none"
    namespace: str | None = None
    filter: dict | None = None
    line: int | None = None


# == what calls return ============================================================================


class IndexConfig(NamedTuple):
    name: str
    dimensions: int
    metric: str
    description: str | None
    created_on: str
    modified_on: str
    preset: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "created_on": self.created_on,
            "modified_on": self.modified_on,
            "name": self.name,
            "description": self.description,
            "config": {"dimensions": self.dimensions, "metric": self.metric},
        }


class IndexInfo(NamedTuple):
    vector_count: int
    dimensions: int
    processed_up_to_datetime: str | None
    processed_up_to_mutation: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "vectorCount": self.vector_count,
            "dimensions": self.dimensions,
            "processedUpToDatetime": self.processed_up_to_datetime,
            "processedUpToMutation": self.processed_up_to_mutation,
        }


class Mutation(NamedTuple):
    """One write command: its sequence number in the store and its public UUID."""

    seq: int
    id: str
    at: str


class WriteResult(NamedTuple):
    """What insert/upsert did: ``count`` vectors read, ``written`` of them stored (insert skips
    ids that already exist)."""

    index: str  # type: ignore[assignment]  # shadows tuple.index(): the field keeps its public name
    count: int  # type: ignore[assignment]  # shadows tuple.count(): the field keeps its public name
    written: int
    mutation_id: str
    notes: Notes = ()

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "count": self.count}


class DeleteResult(NamedTuple):
    """``count`` ids given, ``deleted`` of them existed (None when not known: the service does
    not say)."""

    mutation_id: str
    count: int  # type: ignore[assignment]  # shadows tuple.count(): the field keeps its public name
    deleted: int | None
    notes: Notes = ()

    def to_json(self) -> dict[str, Any]:
        return {"mutationId": self.mutation_id, "count": self.count}


class Vector(NamedTuple):
    id: str
    values: Any  # float32 array
    namespace: str | None = None
    metadata: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "values": self.values,
            "namespace": self.namespace,
            "metadata": self.metadata,
        }


class Match(NamedTuple):
    id: str
    score: float
    values: Any = None
    namespace: str | None = None
    metadata: dict[str, Any] | None = None
    with_metadata: bool = False

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "score": self.score}
        if self.values is not None:
            out["values"] = self.values
        if self.namespace is not None:
            out["namespace"] = self.namespace
        if self.with_metadata:
            out["metadata"] = self.metadata if self.metadata is not None else {}
        return out


class QueryResult(NamedTuple):
    matches: list[Match]
    notes: Notes = ()

    @property
    def count(self) -> int:  # type: ignore[override]  # shadows tuple.count(): JSON's "count"
        return len(self.matches)

    def to_json(self) -> dict[str, Any]:
        return {"count": self.count, "matches": [m.to_json() for m in self.matches]}


class VectorPage(NamedTuple):
    ids: list[str]
    total_count: int
    next_cursor: str | None
    cursor_expiration: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "count": len(self.ids),
            "totalCount": self.total_count,
            "isTruncated": self.next_cursor is not None,
            "nextCursor": self.next_cursor,
            "cursorExpirationTimestamp": self.cursor_expiration,
            "vectors": [{"id": i} for i in self.ids],
        }


class MetadataIndex(NamedTuple):
    property_name: str
    index_type: str

    def to_json(self) -> dict[str, Any]:
        return {"propertyName": self.property_name, "indexType": self.index_type}


class MetadataIndexResult(NamedTuple):
    """What create/delete-metadata-index did. ``not_covered``: vectors written before the new
    metadata index (not indexed for it until upserted again); ``with_value``: how many of them hold
    a value of its type at that property (the ones a filter would miss)."""

    mutation_id: str
    property_name: str
    index_type: str
    not_covered: int = 0
    with_value: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"mutationId": self.mutation_id}
