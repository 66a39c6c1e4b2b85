"""Every check of what a user or a client gives, against the limits in ``limits.py``.

Index names and configurations, vectors (as decoded JSON objects or as NumPy rows), query options
and listing options are checked here, by the CLI, the Python API, the REST API and the Workers
binding alike. (Filters have a language of their own: ``filters.parse``.) Each check raises the
``vcli.errors`` error a user sees; the lower-level ``check_id``/``check_namespace``/
``check_metadata``/``pack_values`` raise ``ValueError`` with the reason, for callers that say
where it happened (a line, a row); ``quick_check`` reads the usual NDJSON line with less work and
leaves every other to ``check_record``. NumPy is imported only by ``array_lines``.
"""

from __future__ import annotations

import math
import re
import struct
import sys
from array import array
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import orjson

from ..errors import (
    BadInput,
    BadQuery,
    DimensionMismatch,
    InvalidConfig,
    InvalidName,
    LimitExceeded,
    MetadataTooLarge,
)
from . import limits
from .presets import PRESETS
from .records import Query, VectorLine

NAME_RE = re.compile(r"[a-z](?:[a-z0-9_-]*[a-z0-9])?")
_BIG_ENDIAN = sys.byteorder == "big"
_INF_PATTERNS = (b"\x00\x00\x80\x7f", b"\x00\x00\x80\xff")


def json_type(value: Any) -> str:
    """How an error names the JSON type of ``value`` ("a string", "an array", "null")."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def utf8_size(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


# == indexes ======================================================================================
def check_name(name: str) -> str:
    """Refuse any index name that is not Vectorize's kebab-style name, before touching the disk."""
    if not name:
        raise InvalidName("index name is empty")
    if len(name.encode()) > limits.MAX_NAME_BYTES:
        raise InvalidName(f'index name "{name[:70]}" is longer than {limits.MAX_NAME_BYTES} bytes')
    if not NAME_RE.fullmatch(name):
        raise InvalidName(
            f'invalid index name "{name}": use lowercase letters, digits, "-" and "_", '
            "starting with a letter and ending with a letter or digit"
        )
    return name


def check_api_name(name: str) -> str:
    """A name the Vectorize API takes for a new index: ``check_name``, and at least two characters
    (its pattern is ``^[a-z][a-z0-9_-]*[a-z0-9]$``). ``vcli serve`` refuses shorter ones, as
    production does; the CLI keeps taking them for local indexes (docs/contract.md says why)."""
    check_name(name)
    if len(name) < 2:
        raise InvalidName(f'invalid index name "{name}": Vectorize needs at least 2 characters')
    return name


def check_config(dimensions: int | None, metric: str | None, preset: str | None) -> tuple[int, str]:
    """Dimensions and metric from either ``preset`` or both of ``dimensions`` and ``metric``."""
    if preset is not None:
        if preset not in PRESETS:
            raise InvalidConfig(f'unknown preset "{preset}"; known presets: {", ".join(PRESETS)}')
        return PRESETS[preset]
    if dimensions is None or metric is None:
        raise InvalidConfig("you must provide both --dimensions and --metric, or a known model --preset")
    if isinstance(dimensions, bool) or not isinstance(dimensions, int):
        raise InvalidConfig(f"dimensions must be a whole number, got {dimensions!r}")
    if not 1 <= dimensions <= limits.MAX_DIMENSIONS:
        raise InvalidConfig(f"dimensions must be between 1 and {limits.MAX_DIMENSIONS}, got {dimensions}")
    if metric not in limits.METRICS:
        raise InvalidConfig(f'unknown metric "{metric}"; choose one of {", ".join(limits.METRICS)}')
    return dimensions, metric


# == parts of a vector (ValueError: the caller says where) ========================================
def check_id(vid: Any) -> str:
    if not isinstance(vid, str):
        raise ValueError(f'"id" must be a string, not {json_type(vid)}')
    size = utf8_size(vid)
    if size == 0:
        raise ValueError('"id" is empty')
    if size > limits.MAX_ID_BYTES:
        raise ValueError(f'"id" is {size} bytes; the limit is {limits.MAX_ID_BYTES} bytes')
    return vid


def check_namespace(namespace: Any) -> str:
    if not isinstance(namespace, str):
        raise ValueError(f"namespace must be a string, not {json_type(namespace)}")
    size = utf8_size(namespace)
    if not 1 <= size <= limits.MAX_NAMESPACE_BYTES:
        raise ValueError(f"namespace must be 1 to {limits.MAX_NAMESPACE_BYTES} bytes, got {size}")
    return namespace


def _check_metadata_keys(obj: dict[str, Any], path: str = "", depth: int = 1) -> None:
    if depth > limits.MAX_METADATA_DEPTH:
        raise ValueError(f"metadata is nested more than {limits.MAX_METADATA_DEPTH} levels deep")
    for key, value in obj.items():
        if not key:
            raise ValueError(f'metadata key "{path}" has an empty property name')
        if "." in key or '"' in key or key[0] == "$":
            raise ValueError(f'metadata key "{path}{key}" may not contain "." or \'"\' or start with "$"')
        if isinstance(value, dict):
            _check_metadata_keys(value, f"{path}{key}.", depth + 1)


class _MetadataTooLarge(ValueError):
    pass


def check_metadata(metadata: Any) -> bytes:
    """Check a metadata object and return its compact JSON."""
    if not isinstance(metadata, dict):
        raise ValueError(f"metadata must be an object, not {json_type(metadata)}")
    _check_metadata_keys(metadata)
    try:
        encoded = orjson.dumps(metadata)
    except orjson.JSONEncodeError as exc:  # e.g. arrays nested past orjson's limit
        raise ValueError(f"metadata cannot be stored as JSON ({exc})") from None
    if len(encoded) > limits.MAX_METADATA_BYTES:
        raise _MetadataTooLarge(
            f"metadata is {len(encoded):,} bytes as compact JSON; the limit is "
            f"{limits.MAX_METADATA_BYTES:,} bytes (10 KiB)"
        )
    return encoded


def pack_values(values: Any, dimensions: int, *, what: str = "values", may_hold_bools: bool = True) -> bytes:
    """Check a list of numbers and pack it as float32 little-endian bytes.

    Raises ``DimensionMismatch`` for a wrong count, else ``ValueError`` with the reason.
    ``may_hold_bools=False`` skips the per-element boolean check when the caller knows the raw text
    has no true/false."""
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
    if packed is None or (may_hold_bools and bool in set(map(type, values))):
        for i, v in enumerate(values):
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ValueError(f"{what}[{i}] is {json_type(v)}, not a number")
            if not math.isfinite(float(v)):  # pragma: no cover - JSON has no such numbers
                raise ValueError(f"{what}[{i}] is not a finite number")
        raise ValueError(f"{what} holds a number too large for float32")
    if _BIG_ENDIAN:  # pragma: no cover
        packed.byteswap()
    blob = packed.tobytes()
    if _INF_PATTERNS[0] in blob or _INF_PATTERNS[1] in blob:  # rare: then look closely
        for i, v in enumerate(packed):
            if math.isinf(v) or math.isnan(v):
                raise ValueError(f"{what}[{i}] = {values[i]!r} is outside the float32 range")
    return blob


# == whole vectors ================================================================================
def check_record(obj: Any, lineno: int, dimensions: int, *, may_hold_bools: bool = True) -> VectorLine:
    """Check one decoded vector object (from an NDJSON line, a request, or the Python API);
    ``BadInput`` names the line and the id."""
    if not isinstance(obj, dict):
        raise BadInput(f"expected a JSON object, got {json_type(obj)}", lineno)
    vid = obj.get("id")
    known = vid if isinstance(vid, str) else None
    try:
        unknown = [k for k in obj if k not in limits.VECTOR_FIELDS]
        if unknown:
            raise ValueError(f'unknown field "{unknown[0]}" (a vector has id, values, metadata, namespace)')
        if "id" not in obj:
            raise ValueError('missing "id"')
        vid = check_id(vid)
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
        raise DimensionMismatch(exc.reason, lineno, known).said_by_the_service_as(
            f'invalid vector for id="{known}", expected {dimensions} dimensions, and got '
            f"{len(values)} dimensions") from None
    except _MetadataTooLarge as exc:
        raise MetadataTooLarge(str(exc), lineno, known) from None
    except ValueError as exc:
        raise BadInput(str(exc), lineno, known) from None
    return VectorLine(lineno, vid, blob, namespace, metadata, metadata_json)


_FIELDS = frozenset(limits.VECTOR_FIELDS)
_ONE, _ZERO = struct.pack("<f", 1.0), bytes(4)  # what true and false pack as


def quick_check(dimensions: int) -> Callable[[bytes, int, Any], VectorLine | None]:
    """``ndjson.parse_line``'s shortcut for the usual line of ``dimensions`` values: ``quick(raw,
    lineno, obj)``, ``obj`` the line as ``orjson.loads`` decoded it (None if it is not JSON), gives
    the vector ``check_record`` would, or None for any other line (which ``check_record`` then
    reads, to give the vector or the error). The usual line is an object of a
    string id, a list of numbers, and optionally metadata and a namespace, each right; it is
    checked by the same checks with less work: its values packed by one ``struct`` call, which
    refuses anything but a number and a number too large for float32 (orjson gives no infinity),
    and searched for a ``true`` or ``false`` only when a value packed as 1 or 0."""
    pack = struct.Struct(f"<{dimensions}f").pack

    def quick(raw: bytes, lineno: int, obj: Any) -> VectorLine | None:
        if type(obj) is dict and obj.keys() <= _FIELDS:
            values, vid = obj.get("values"), obj.get("id")
            if type(values) is list and len(values) == dimensions and type(vid) is str:
                try:
                    blob = pack(*values)
                    check_id(vid)
                    metadata = obj.get("metadata")
                    metadata_json = None if metadata is None else check_metadata(metadata)
                    namespace = obj.get("namespace")
                    if namespace is not None:
                        check_namespace(namespace)
                except (struct.error, ValueError, OverflowError):
                    return None
                if not ((_ONE in blob or _ZERO in blob) and (b"true" in raw or b"false" in raw)):
                    return VectorLine(lineno, vid, blob, namespace, metadata, metadata_json)
        return None

    return quick


def check_records(vectors: Iterable[VectorLine | dict], dimensions: int) -> Iterable[VectorLine]:
    """Checked vectors from checked ones or dicts (numbered from 1 as they come)."""
    for n, item in enumerate(vectors, 1):
        yield item if isinstance(item, VectorLine) else check_record(item, n, dimensions)


def array_lines(
    ids: Sequence[str], array: Any, dimensions: int, metadata: Sequence[dict | None] | None = None,
    namespace: str | Sequence[str | None] | None = None,
) -> Iterable[VectorLine]:
    """Check ids, a 2-D array and optional metadata / namespaces as ``insert_arrays`` takes them,
    and yield one checked vector per row. Every row is checked before anything is written (the
    write's transaction rolls back on the first bad one)."""
    import numpy as np

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
        raise DimensionMismatch(f"expected {dimensions} dimensions, got an array of {values.shape[1]} columns")
    if len(ids) != rows:
        raise BadInput(f"{len(ids)} ids for {rows} rows")
    if metadata is not None and len(metadata) != rows:
        raise BadInput(f"{len(metadata)} metadata entries for {rows} rows")
    per_row: Sequence[str | None] | None = None  # a namespace for each row, or ``shared`` for all
    shared: str | None = None
    if isinstance(namespace, str) or namespace is None:
        shared = namespace
    else:
        per_row = namespace
        if len(per_row) != rows:
            raise BadInput(f"{len(per_row)} namespaces for {rows} rows")
    finite = np.isfinite(values).all(axis=1)
    for i in range(rows):
        vid = ids[i]
        try:
            check_id(vid)
            if not finite[i]:
                raise ValueError("values hold a number that is not finite or too large for float32")
            meta = None if metadata is None else metadata[i]
            meta_json = None if meta is None else check_metadata(meta)
            ns = per_row[i] if per_row is not None else shared
            if ns is not None:
                check_namespace(ns)
        except ValueError as exc:
            raise BadInput(f"row {i}: {exc}", vector_id=vid if isinstance(vid, str) else None) from None
        yield VectorLine(i + 1, vid, values[i].tobytes(), ns, meta, meta_json)


def check_batch_size(batch_size: int) -> int:
    if not 1 <= batch_size <= limits.MAX_BATCH_SIZE:
        raise LimitExceeded(f"batch size must be between 1 and {limits.MAX_BATCH_SIZE}, got {batch_size}")
    return batch_size


# == queries ======================================================================================
def check_top_k(top_k: int, return_values: bool, return_metadata: str, cap: int = limits.MAX_TOP_K_WITH_DATA) -> None:
    """``--top-k`` and what is returned with each match (``cap``: the setting
    ``max_top_k_with_values``)."""
    if return_metadata not in limits.RETURN_METADATA:
        raise BadQuery(f'return-metadata must be none, indexed or all, got "{return_metadata}"')
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= limits.MAX_TOP_K:
        raise LimitExceeded(f"top-k must be between 1 and {limits.MAX_TOP_K}, got {top_k}").said_by_the_service_as(
            f"max top K is {limits.MAX_TOP_K}, but got {top_k}")
    if (return_values or return_metadata == "all") and top_k > cap:
        raise LimitExceeded(f"max top K is {cap} with values or all metadata returned, but got {top_k}"
                            ).said_by_the_service_as(f"max top K is {cap}, but got {top_k}")


def check_query_namespace(namespace: Any) -> str | None:
    if namespace is None:
        return None
    try:
        return check_namespace(namespace)
    except ValueError as exc:
        raise BadQuery(str(exc)) from None


def check_query(obj: Any, defaults: Query | None = None, line: int | None = None) -> Query:
    """The shape of one decoded query object (the Vectorize query API's JSON fields: ``vector`` or
    ``vectorId``, and optionally ``topK``, ``filter``, ``namespace``, ``returnValues``,
    ``returnMetadata``); ``BadQuery`` if it is wrong. Fields it leaves out (or sets to null) come
    from ``defaults``. The values themselves are checked against the index when it is answered."""
    if not isinstance(obj, dict):
        raise BadQuery(f"expected a JSON object, got {json_type(obj)}")
    unknown = [k for k in obj if k not in limits.QUERY_FIELDS]
    if unknown:
        raise BadQuery(
            f'unknown field "{unknown[0]}" (a query has vector or vectorId, and optionally topK, '
            "filter, namespace, returnValues, returnMetadata)"
        )
    out = (defaults or Query())._replace(vector=None, vector_id=None, line=line)
    vector, vector_id = obj.get("vector"), obj.get("vectorId")
    if (vector is None) == (vector_id is None):
        raise BadQuery('give either "vector" or "vectorId", but not both')
    if vector is not None:
        if not isinstance(vector, list):
            raise BadQuery(f'"vector" must be an array of numbers, not {json_type(vector)}')
        out = out._replace(vector=vector)
    if vector_id is not None:
        if not isinstance(vector_id, str):
            raise BadQuery(f'"vectorId" must be a string, not {json_type(vector_id)}')
        out = out._replace(vector_id=vector_id)
    top_k = obj.get("topK")
    if top_k is not None:
        if isinstance(top_k, float) and top_k.is_integer():
            top_k = int(top_k)
        if isinstance(top_k, bool) or not isinstance(top_k, int):
            raise BadQuery(f'"topK" must be a whole number, not {json_type(top_k)}')
        out = out._replace(top_k=top_k)
    values = obj.get("returnValues")
    if values is not None:
        if not isinstance(values, bool):
            raise BadQuery(f'"returnValues" must be true or false, not {json_type(values)}')
        out = out._replace(return_values=values)
    mode = obj.get("returnMetadata")
    if mode is not None:
        if isinstance(mode, bool):  # Vectorize's first API (and the Workers binding) took true / false
            mode = "all" if mode else "none"
        if mode not in limits.RETURN_METADATA:
            raise BadQuery('"returnMetadata" must be "none", "indexed" or "all"')
        out = out._replace(return_metadata=mode)
    namespace = obj.get("namespace")
    if namespace is not None:
        if not isinstance(namespace, str):
            raise BadQuery(f'"namespace" must be a string, not {json_type(namespace)}')
        out = out._replace(namespace=namespace)
    if "filter" in obj:
        if not isinstance(obj["filter"], dict):  # null too: never a silent unfiltered query
            raise BadQuery(f'"filter" must be a JSON object, not {json_type(obj["filter"])}')
        out = out._replace(filter=obj["filter"])
    return out


def check_list_count(count: int) -> int:
    if not 1 <= count <= limits.MAX_LIST_COUNT:
        raise LimitExceeded(f"count must be between 1 and {limits.MAX_LIST_COUNT}, got {count}")
    return count
