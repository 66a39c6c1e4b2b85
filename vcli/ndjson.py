"""Streaming NDJSON: read vector lines (checked one by one, with line numbers) and write them back.

A vector line is one JSON object: ``id`` (string, 1..64 UTF-8 bytes), ``values`` (finite numbers,
as many as the index has dimensions, stored as float32), optional ``metadata`` (object, at most
10 KiB as compact JSON, keys non-empty without ``.`` or ``"`` and not starting with ``$``) and
optional ``namespace`` (string, 1..64 bytes). Blank lines are skipped. NumPy is not needed here, so
a small write stays as quick to start as ``vcli info``.
"""

from __future__ import annotations

import math
import sys
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

import orjson

from .errors import BadInput, DimensionMismatch

MAX_ID_BYTES = 64
MAX_NAMESPACE_BYTES = 64
MAX_METADATA_BYTES = 10 * 1024
FIELDS = ("id", "values", "metadata", "namespace")
_BIG_ENDIAN = sys.byteorder == "big"
_INF_PATTERNS = (b"\x00\x00\x80\x7f", b"\x00\x00\x80\xff")


@dataclass(slots=True)
class VectorLine:
    line: int
    id: str
    blob: bytes  # float32 little-endian
    namespace: str | None
    metadata: dict[str, Any] | None
    metadata_json: bytes | None


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def pack_values(
    values: Any, dimensions: int, *, what: str = "values", may_hold_bools: bool = True
) -> bytes:
    """Check a list of numbers and pack it as float32 little-endian bytes.

    Raises ``ValueError`` with the reason (callers add where it happened). ``may_hold_bools=False``
    skips the per-element boolean check when the caller knows the raw text has no true/false."""
    if not isinstance(values, list):
        raise ValueError(f"{what} must be an array of numbers, not {json_type(values)}")
    if not values:
        raise ValueError(f"{what} is empty; expected {dimensions} numbers")
    if len(values) != dimensions:
        raise DimensionMismatch(f"expected {dimensions} dimensions, got {len(values)}")
    try:
        packed = array("f", values)
    except (TypeError, OverflowError):
        packed = None
    if packed is None or (may_hold_bools and any(v is True or v is False for v in values)):
        for i, v in enumerate(values):
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ValueError(f"{what}[{i}] is {json_type(v)}, not a number")
            if not math.isfinite(float(v)):  # pragma: no cover - JSON has no such numbers
                raise ValueError(f"{what}[{i}] is not a finite number")
        raise ValueError(f"{what} holds a number too large for float32")
    if _BIG_ENDIAN:  # pragma: no cover
        packed.byteswap()
    blob = packed.tobytes()
    if any(p in blob for p in _INF_PATTERNS):
        for i, v in enumerate(packed):
            if math.isinf(v) or math.isnan(v):
                raise ValueError(f"{what}[{i}] = {values[i]!r} is outside the float32 range")
    return blob


def _check_metadata_keys(obj: dict[str, Any], path: str = "") -> None:
    for key, value in obj.items():
        where = f"{path}{key}"
        if not key:
            raise ValueError(f'metadata key "{path}" has an empty property name')
        if "." in key or '"' in key or key.startswith("$"):
            raise ValueError(
                f'metadata key "{where}" may not contain "." or \'"\' or start with "$"'
            )
        if isinstance(value, dict):
            _check_metadata_keys(value, where + ".")


def check_metadata(metadata: Any) -> bytes:
    """Check a metadata object and return its compact JSON."""
    if not isinstance(metadata, dict):
        raise ValueError(f"metadata must be an object, not {json_type(metadata)}")
    _check_metadata_keys(metadata)
    encoded = orjson.dumps(metadata)
    if len(encoded) > MAX_METADATA_BYTES:
        raise ValueError(
            f"metadata is {len(encoded):,} bytes as compact JSON; the limit is "
            f"{MAX_METADATA_BYTES:,} bytes (10 KiB)"
        )
    return encoded


def check_namespace(namespace: Any) -> str:
    if not isinstance(namespace, str):
        raise ValueError(f"namespace must be a string, not {json_type(namespace)}")
    size = len(namespace.encode("utf-8", "surrogatepass"))
    if not 1 <= size <= MAX_NAMESPACE_BYTES:
        raise ValueError(f"namespace must be 1 to {MAX_NAMESPACE_BYTES} bytes, got {size}")
    return namespace


def check_id(vid: Any) -> str:
    if not isinstance(vid, str):
        raise ValueError(f'"id" must be a string, not {json_type(vid)}')
    size = len(vid.encode("utf-8", "surrogatepass"))
    if size == 0:
        raise ValueError('"id" is empty')
    if size > MAX_ID_BYTES:
        raise ValueError(f'"id" is {size} bytes; the limit is {MAX_ID_BYTES} bytes')
    return vid


def parse_line(raw: bytes, lineno: int, dimensions: int) -> VectorLine:
    """Parse and check one non-blank line, raising ``BadInput`` naming the line and id."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadInput(f"not valid JSON ({exc})", lineno) from None
    return check_record(obj, lineno, dimensions, may_hold_bools=b"true" in raw or b"false" in raw)


def check_record(
    obj: Any, lineno: int, dimensions: int, *, may_hold_bools: bool = True
) -> VectorLine:
    """Check one decoded vector object (from a line, or from the Python API)."""
    if not isinstance(obj, dict):
        raise BadInput(f"expected a JSON object, got {json_type(obj)}", lineno)
    vid = obj.get("id")
    known = vid if isinstance(vid, str) else None
    try:
        unknown = [k for k in obj if k not in FIELDS]
        if unknown:
            raise ValueError(
                f'unknown field "{unknown[0]}" (a vector has id, values, metadata, namespace)'
            )
        if "id" not in obj:
            raise ValueError('missing "id"')
        check_id(vid)
        if "values" not in obj:
            raise ValueError('missing "values"')
        values = obj["values"]
        if type(values).__module__ == "numpy":
            values = values.tolist()
        blob = pack_values(values, dimensions, may_hold_bools=may_hold_bools)
        metadata = obj.get("metadata")
        metadata_json = None if metadata is None else check_metadata(metadata)
        namespace = obj.get("namespace")
        if namespace is not None:
            check_namespace(namespace)
    except DimensionMismatch as exc:
        raise DimensionMismatch(exc.reason, lineno, known) from None
    except ValueError as exc:
        raise BadInput(str(exc), lineno, known) from None
    return VectorLine(lineno, vid, blob, namespace, metadata, metadata_json)


def read_vectors(stream: BinaryIO | Iterable[bytes], dimensions: int) -> Iterator[VectorLine]:
    """Yield checked vector lines from a binary stream, skipping blank lines."""
    for lineno, raw in enumerate(stream, 1):
        if raw.isspace() or not raw:
            continue
        yield parse_line(raw, lineno, dimensions)


def dump_line(obj: dict[str, Any]) -> bytes:
    """One compact NDJSON line; float32 arrays print as their shortest decimals."""
    return orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_APPEND_NEWLINE)
