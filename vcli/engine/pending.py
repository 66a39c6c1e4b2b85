"""Writes acknowledged now and applied later, as the live service does (``vcli serve --apply-delay``).

``defer`` checks a write completely (so a bad one fails at once, as on the service), keeps it in
the store's ``pending`` table with the mutation id it will have, and returns that id. Until it is
applied, nothing reads it: queries, get-vectors, list-vectors and ``info`` see the index as before,
and ``info``'s ``processedUpToMutation`` names the last write applied. ``apply_pending`` applies the
due writes in the order they were acknowledged; each one's pending row is deleted in the same
transaction as the write, so a write is applied exactly once even if the process dies part-way or
two processes apply at the same time. A write that can no longer be done when its time comes
(a metadata index created twice) is recorded as an empty mutation, so that a client polling for
its id still sees it processed; any other failure (a lock held too long, a full disk) leaves it
kept, to be tried again.

Payloads: for insert and upsert the checked vectors as NDJSON in the insert format; for delete the
ids; for the metadata-index writes the property (and type), all as JSON.
"""

from __future__ import annotations

import io
import uuid
from typing import Any

import orjson

from ..errors import BadInput, BadQuery, LimitExceeded, MetadataIndexError
from . import filters, limits
from .layout import now_iso
from .store import AlreadyApplied
from .validate import check_record, check_records

KINDS = ("insert", "upsert", "delete", "create-metadata-index", "delete-metadata-index")


def defer(index, kind: str, payload: Any, delay: float) -> tuple[str, int]:
    """``payload``: the vectors (insert, upsert), the ids (delete), or ``(property, type)`` /
    ``property`` (the metadata-index writes). The mutation id the write will have, and how many
    vectors or ids it holds. A metadata-index write is checked against the index as it is now."""
    count = 1
    if kind in ("insert", "upsert"):
        data, count = _vector_lines(payload, index.dimensions)
    elif kind == "delete":
        if not payload:
            raise BadQuery("give at least one vector id to delete")
        data, count = orjson.dumps(list(payload)), len(payload)
    elif kind == "create-metadata-index":
        prop, kind_of = payload
        filters.check_property_name(prop)
        filters.check_index_type(kind_of)
        index.check_metadata_index_change(prop, creating=True)
        data = orjson.dumps([prop, kind_of])
    elif kind == "delete-metadata-index":
        index.check_metadata_index_change(payload, creating=False)
        data = orjson.dumps([payload])
    else:  # pragma: no cover - a programming error
        raise ValueError(f"unknown write kind {kind!r}")
    mid = str(uuid.uuid4())
    with index.writing():
        index.store.add_pending(mid, kind, delay, data)
    return mid, count


def _vector_lines(vectors, dimensions: int) -> tuple[bytes, int]:
    from .export import checked_lines

    lines = list(check_records(vectors, dimensions))
    if not lines:
        raise BadInput("no vectors in the input (it is empty or only blank lines)")
    return checked_lines(lines, dimensions), len(lines)


def apply_pending(index, due_by: float | None) -> tuple[str, ...]:
    """Apply the due writes in order; the notes of any that could not be done."""
    notes = []
    for seq, mid, kind, _due, payload in index.store.pending(due_by):
        pending = (seq, mid)
        try:
            if kind in ("insert", "upsert"):
                lines = (check_record(orjson.loads(raw), n, index.dimensions)
                         for n, raw in enumerate(io.BytesIO(payload), 1))
                index._write(kind, lines, limits.MAX_BATCH_SIZE, None, pending)
            elif kind == "delete":
                index.delete(orjson.loads(payload), pending)
            elif kind == "create-metadata-index":
                index.create_metadata_index(*orjson.loads(payload), pending)
            else:
                index.delete_metadata_index(orjson.loads(payload)[0], pending)
        except AlreadyApplied:
            continue  # another process applied it meanwhile
        except (BadInput, MetadataIndexError, LimitExceeded) as exc:  # never doable; anything else is retried
            notes.append(f"the {kind} acknowledged as mutation {mid} could not be applied: {exc.message}")
            try:
                with index.writing(), index.store.mutation(kind, now_iso(), pending):
                    pass  # processed, with no change
            except AlreadyApplied:
                pass
    return tuple(notes)
