"""What a metadata index keeps of a vector written now: its ``metadata_values`` rows."""

from __future__ import annotations

from typing import NamedTuple

from .values import index_value, lookup


class MetadataIndexInfo(NamedTuple):
    """A metadata index as the store keeps it: ``slot`` is the mutation that created it (its id in
    ``metadata_values``; never reused)."""

    property_name: str
    index_type: str
    slot: int


def snapshot_rows(metadata: dict | None, indexes: list[MetadataIndexInfo], key: int) -> list[tuple]:
    """``(slot, value, key)`` rows of ``metadata_values`` for one vector written now."""
    if not metadata:
        return []
    rows = []
    for meta in indexes:
        found, value = lookup(metadata, meta.property_name)
        if found:
            kept = index_value(value, meta.index_type)
            if kept is not None:
                rows.append((meta.slot, kept, key))
    return rows
