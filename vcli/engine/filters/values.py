"""Metadata values as a metadata index keeps them (coerced to its type, strings cut) and as
``--return-metadata indexed`` shows them."""

from __future__ import annotations

import math
from typing import Any

from ..limits import INDEXED_STRING_BYTES


def cut_string(text: str, limit: int = INDEXED_STRING_BYTES) -> str:
    """The longest prefix of ``text`` that is at most ``limit`` UTF-8 bytes (whole characters)."""
    data = text.encode("utf-8", "surrogatepass")
    if len(data) <= limit:
        return text
    return data[:limit].decode("utf-8", "ignore")


def value_type(value: Any) -> str | None:
    """The metadata index type a JSON value would be indexed as, or None (null, array, object)."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return None


def index_value(value: Any, index_type: str) -> str | float | int | None:
    """What a metadata index of ``index_type`` keeps of ``value`` (None: not indexed)."""
    kind = value_type(value)
    if kind != index_type:
        return None
    if kind == "string":
        return cut_string(value)
    if kind == "boolean":
        return int(value)
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def lookup(metadata: Any, prop: str) -> tuple[bool, Any]:
    """``(found, value)`` of a dotted property in a metadata object."""
    node = metadata
    for part in prop.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def output_value(value: Any, index_type: str) -> Any:
    """An indexed value as ``--return-metadata indexed`` shows it."""
    if index_type == "boolean":
        return bool(value)
    if index_type == "number":
        number = float(value)
        return int(number) if number.is_integer() and abs(number) < 2**53 else number
    return value


def nest(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``[("a.b", 1), ("c", 2)]`` -> ``{"a": {"b": 1}, "c": 2}``."""
    out: dict[str, Any] = {}
    for prop, value in pairs:
        *parents, last = prop.split(".")
        node = out
        for part in parents:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[last] = value
    return out
