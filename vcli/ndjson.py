"""Streaming NDJSON: read vector lines (checked one by one, with line numbers) and write them back.

A vector line is one JSON object: ``id`` (string, 1..64 UTF-8 bytes), ``values`` (finite numbers,
as many as the index has dimensions, stored as float32), optional ``metadata`` (object, at most
10 KiB as compact JSON, keys non-empty without ``.`` or ``"`` and not starting with ``$``) and
optional ``namespace`` (string, 1..64 bytes). Blank lines are skipped. NumPy is not needed here, so
a small write stays as quick to start as ``vcli info``.
"""

from __future__ import annotations

import math
import os
import stat
import struct
import sys
from array import array
from collections.abc import Iterable, Iterator
from typing import Any, BinaryIO, NamedTuple

import orjson

from .errors import BadInput, DimensionMismatch

MAX_ID_BYTES = 64
MAX_NAMESPACE_BYTES = 64
MAX_METADATA_BYTES = 10 * 1024
MAX_METADATA_DEPTH = 200  # nested objects (orjson writes at most 254 levels)
FIELDS = ("id", "values", "metadata", "namespace")
_BIG_ENDIAN = sys.byteorder == "big"
_INF_PATTERNS = (b"\x00\x00\x80\x7f", b"\x00\x00\x80\xff")


class VectorLine(NamedTuple):
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
    if isinstance(value, (list, tuple)):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


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


def _check_metadata_keys(obj: dict[str, Any], path: str = "", depth: int = 1) -> None:
    if depth > MAX_METADATA_DEPTH:
        raise ValueError(f"metadata is nested more than {MAX_METADATA_DEPTH} levels deep")
    for key, value in obj.items():
        where = f"{path}{key}"
        if not key:
            raise ValueError(f'metadata key "{path}" has an empty property name')
        if "." in key or '"' in key or key.startswith("$"):
            raise ValueError(
                f'metadata key "{where}" may not contain "." or \'"\' or start with "$"'
            )
        if isinstance(value, dict):
            _check_metadata_keys(value, where + ".", depth + 1)


def check_metadata(metadata: Any) -> bytes:
    """Check a metadata object and return its compact JSON."""
    if not isinstance(metadata, dict):
        raise ValueError(f"metadata must be an object, not {json_type(metadata)}")
    _check_metadata_keys(metadata)
    try:
        encoded = orjson.dumps(metadata)
    except orjson.JSONEncodeError as exc:  # e.g. arrays nested past orjson's limit
        raise ValueError(f"metadata cannot be stored as JSON ({exc})") from None
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


_DUMP_LINE = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_APPEND_NEWLINE


def dump_line(obj: dict[str, Any]) -> bytes:
    """One compact NDJSON line; float32 arrays print as their shortest decimals."""
    return orjson.dumps(obj, option=_DUMP_LINE)


def export_lines(rows: list[tuple], dimensions: int, values: Any = None) -> bytes:
    """Vector lines in exactly the insert format for ``(id, namespace, metadata JSON, float32
    blob)`` rows: ``id``, ``values`` (shortest float32 decimals, so they read back bit for bit),
    ``metadata`` and ``namespace`` when set. The stored metadata JSON is spliced in as it is.
    ``values``, when given, is the rows' vectors as one float32 array (and the blobs unused)."""
    import numpy as np

    if not rows:
        return b""
    if values is None:
        values = np.frombuffer(b"".join(r[3] for r in rows), "<f4").reshape(len(rows), dimensions)
    if _BIG_ENDIAN:  # pragma: no cover - orjson wants native floats
        values = values.astype("=f4")
    fragment = orjson.Fragment
    dumps = orjson.dumps
    out = []
    for row, vec in zip(rows, values, strict=True):
        obj: dict[str, Any] = {"id": row[0], "values": vec}
        if row[2] is not None:
            obj["metadata"] = fragment(row[2])
        if row[1] is not None:
            obj["namespace"] = row[1]
        out.append(dumps(obj, option=_DUMP_LINE))
    return b"".join(out)


# == query lines (vcli query --file) ============================================================
QUERY_FIELDS = ("vector", "vectorId", "topK", "filter", "namespace", "returnValues", "returnMetadata")


class QueryLine:
    """One query of a batch: the fields of ``VectorIndex.query`` under their JSON names (those of
    the Vectorize query API). Values are checked against the index by the engine. (A plain class:
    a dataclass costs ~1.5 ms to create, at every start of ``vcli``.)"""

    __slots__ = ("line", "vector", "vector_id", "top_k", "return_values", "return_metadata",
                 "namespace", "filter")

    def __init__(
        self, line: int, vector: list | None = None, vector_id: str | None = None, top_k: int = 5,
        return_values: bool = False, return_metadata: str = "none", namespace: str | None = None,
        filter: dict | None = None,
    ):
        self.line = line
        self.vector = vector
        self.vector_id = vector_id
        self.top_k = top_k
        self.return_values = return_values
        self.return_metadata = return_metadata
        self.namespace = namespace
        self.filter = filter

    def options(self) -> dict[str, Any]:
        """The keyword arguments of ``VectorIndex.query``."""
        return {
            "vector": self.vector, "vector_id": self.vector_id, "top_k": self.top_k,
            "return_values": self.return_values, "return_metadata": self.return_metadata,
            "namespace": self.namespace, "filter": self.filter,
        }


def check_query(obj: Any, lineno: int, defaults: QueryLine | None = None) -> QueryLine:
    """Check the shape of one decoded query object; ``BadInput`` naming the line if it is wrong.
    Options the object leaves out come from ``defaults`` (``vcli query --file``'s flags)."""
    if not isinstance(obj, dict):
        raise BadInput(f"expected a JSON object, got {json_type(obj)}", lineno)
    unknown = [k for k in obj if k not in QUERY_FIELDS]
    if unknown:
        raise BadInput(
            f'unknown field "{unknown[0]}" (a query has vector or vectorId, and optionally topK, '
            "filter, namespace, returnValues, returnMetadata)", lineno,
        )
    if defaults is None:
        out = QueryLine(lineno)
    else:
        out = QueryLine(lineno, None, None, defaults.top_k, defaults.return_values,
                        defaults.return_metadata, defaults.namespace, defaults.filter)
    vector, vector_id = obj.get("vector"), obj.get("vectorId")
    if (vector is None) == (vector_id is None):
        raise BadInput('give either "vector" or "vectorId", but not both', lineno)
    if vector is not None:
        if not isinstance(vector, list):
            raise BadInput(f'"vector" must be an array of numbers, not {json_type(vector)}', lineno)
        out.vector = vector
    if vector_id is not None:
        if not isinstance(vector_id, str):
            raise BadInput(f'"vectorId" must be a string, not {json_type(vector_id)}', lineno)
        out.vector_id = vector_id
    if "topK" in obj:
        top_k = obj["topK"]
        if isinstance(top_k, bool) or not isinstance(top_k, int):
            raise BadInput(f'"topK" must be a whole number, not {json_type(top_k)}', lineno)
        out.top_k = top_k
    if "returnValues" in obj:
        if not isinstance(obj["returnValues"], bool):
            raise BadInput(f'"returnValues" must be true or false, not {json_type(obj["returnValues"])}',
                           lineno)
        out.return_values = obj["returnValues"]
    if "returnMetadata" in obj:
        mode = obj["returnMetadata"]
        if isinstance(mode, bool):  # Vectorize's first API took true / false
            mode = "all" if mode else "none"
        if mode not in ("none", "indexed", "all"):
            raise BadInput('"returnMetadata" must be "none", "indexed" or "all"', lineno)
        out.return_metadata = mode
    if obj.get("namespace") is not None:
        if not isinstance(obj["namespace"], str):
            raise BadInput(f'"namespace" must be a string, not {json_type(obj["namespace"])}', lineno)
        out.namespace = obj["namespace"]
    if "filter" in obj:
        if not isinstance(obj["filter"], dict):  # null too: never a silent unfiltered query
            raise BadInput(f'"filter" must be a JSON object, not {json_type(obj["filter"])}', lineno)
        out.filter = obj["filter"]
    return out


def read_queries(
    lines: BinaryIO | Iterable[bytes | None], defaults: QueryLine | None = None
) -> Iterator[QueryLine | None]:
    """Yield checked query lines from a binary stream (or the lines of ``lines_with_pauses``),
    skipping blank lines; a ``None`` (a pause in the input) is passed on as it is."""
    lineno = 0
    for raw in lines:
        if raw is None:
            yield None
            continue
        lineno += 1
        if raw.isspace() or not raw:
            continue
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise BadInput(f"not valid JSON ({exc})", lineno) from None
        yield check_query(obj, lineno, defaults)


def lines_with_pauses(stream: BinaryIO) -> Iterator[bytes | None]:
    """The lines of ``stream``, and, when it is a pipe or a terminal, ``None`` each time the next
    line has not arrived yet: a reader that answers input in blocks (``query_many``) then answers
    what it has instead of waiting, so a program can send a query and wait for its answer."""
    try:
        fd = stream.fileno()
        regular = stat.S_ISREG(os.fstat(fd).st_mode)
    except (AttributeError, OSError, ValueError):
        regular = True  # no file descriptor (tests, Python callers): plain lines
    if regular:
        yield from stream
        return
    import select

    rest = b""
    while True:
        try:
            waiting = not select.select([fd], [], [], 0)[0]
        except (OSError, ValueError):  # pragma: no cover - select cannot watch this fd
            waiting = False
        if waiting:
            yield None
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            break
        *lines, rest = (rest + chunk).split(b"\n")
        for line in lines:
            yield line + b"\n"
    if rest:
        yield rest


def format_blocks(
    blocks: Iterable[list[tuple]], dimensions: int, workers: int = 1
) -> Iterator[tuple[bytes, int]]:
    """``(export_lines(rows), len(rows))`` for each block of rows, in order.

    Writing numbers as shortest float32 decimals is what an export costs: orjson takes ~50 ns a
    number, so one core formats ~40k 384-dim vectors a second, and nothing faster exists in
    Python. With ``workers`` > 1 (and ``os.fork``) the blocks are formatted in that many forked
    processes, each with one block at a time, while this process reads the next rows from the
    store and hands results on in order. Vectors and results travel through shared memory and
    only small headers through pipes: with pickles through pipes (multiprocessing's pools, or
    pipes alone) moving the 4.7 MB of text a block makes cost this process as much as the
    formatting saved. The workers run no SQLite, only orjson and NumPy, so forking is safe even
    when other threads use the store."""
    if workers <= 1 or not hasattr(os, "fork"):
        for rows in blocks:
            yield export_lines(rows, dimensions), len(rows)
        return
    from collections import deque

    rows_iter = iter(blocks)
    pool = _ForkPool(workers, dimensions)
    try:
        free = deque(range(workers))
        busy: deque = deque()  # (worker, rows in its block), oldest first
        ready = next(rows_iter, None)
        while True:
            while free and ready is not None:
                w = free.popleft()
                pool.send(w, ready)
                busy.append((w, len(ready)))
                ready = next(rows_iter, None)  # read the next rows while the workers format
            if not busy:
                break
            w, n = busy.popleft()
            data = pool.receive(w)
            if ready is not None:  # keep that worker busy before handing the result on
                pool.send(w, ready)
                busy.append((w, len(ready)))
                ready = next(rows_iter, None)
            else:
                free.append(w)
            yield data, n
    finally:
        pool.close()


_FRAME = struct.Struct("<qq")  # (header or result length, vectors or result bytes in shared memory)


class _ForkPool:
    """Forked workers that turn blocks of rows into NDJSON, one block each at a time (so neither
    side ever waits on a full pipe the other is not reading: no deadlock). Each worker has two
    shared memory areas: the block's float32 values in, its NDJSON out (a result that does not
    fit goes through the pipe instead)."""

    def __init__(self, workers: int, dimensions: int):
        import mmap
        import warnings

        self.dimensions = dimensions
        self.workers: list[tuple[int, int, int, mmap.mmap, mmap.mmap]] = []
        for _ in range(workers):
            values = mmap.mmap(-1, max(1, _BLOCK_VALUES_BYTES))  # shared with the forked child
            text = mmap.mmap(-1, _BLOCK_TEXT_BYTES)
            down_r, down_w = os.pipe()
            up_r, up_w = os.pipe()
            with warnings.catch_warnings():  # 3.12+ warns when a process with threads forks
                warnings.simplefilter("ignore", DeprecationWarning)
                pid = os.fork()
            if pid == 0:  # pragma: no cover - the worker (coverage does not follow forks)
                code = 1
                try:
                    for other in self.workers:
                        os.close(other[1])
                        os.close(other[2])
                    os.close(down_w)
                    os.close(up_r)
                    _serve(down_r, up_w, values, text, dimensions)
                    code = 0
                finally:
                    os._exit(code)
            os.close(down_r)
            os.close(up_w)
            self.workers.append((pid, down_w, up_r, values, text))

    def send(self, w: int, rows: list[tuple]) -> None:
        """Give worker ``w`` a block of ``(id, namespace, metadata JSON, blob)`` rows."""
        import pickle

        _pid, down, _up, values, _text = self.workers[w]
        step = self.dimensions * 4
        size = len(rows) * step
        if size <= len(values):
            for i, r in enumerate(rows):  # straight into shared memory: no joined copy
                values[i * step : (i + 1) * step] = r[3]
            head = pickle.dumps([r[:3] for r in rows], protocol=pickle.HIGHEST_PROTOCOL)
            _write_all(down, _FRAME.pack(len(head), size) + head)
        else:  # pragma: no cover - blocks are sized to fit
            head = pickle.dumps(rows, protocol=pickle.HIGHEST_PROTOCOL)
            _write_all(down, _FRAME.pack(len(head), -1) + head)

    def receive(self, w: int) -> bytes:
        _pid, _down, up, _values, text = self.workers[w]
        head = _read_exactly(up, _FRAME.size)
        if head is None:
            raise RuntimeError("an export worker process stopped unexpectedly")
        size, in_shared = _FRAME.unpack(head)
        if in_shared:
            return text[:size]
        data = _read_exactly(up, size)
        if data is None:
            raise RuntimeError("an export worker process stopped unexpectedly")
        return data

    def close(self) -> None:
        for pid, down, up, values, text in self.workers:
            for fd in (down, up):
                try:
                    os.close(fd)
                except OSError:
                    pass
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
            values.close()
            text.close()
        self.workers = []


# Shared memory per worker, for blocks of EXPORT_BLOCK_ROWS (1024) vectors: their float32 values
# up to 1536 dimensions, and their text when it is up to ~16 bytes a number.
_BLOCK_VALUES_BYTES = 1024 * 1536 * 4
_BLOCK_TEXT_BYTES = 1024 * 1536 * 16


def _serve(down: int, up: int, values, text, dimensions: int) -> None:  # pragma: no cover - in a worker
    import pickle
    import signal

    import numpy as np

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    while (head := _read_exactly(down, _FRAME.size)) is not None:
        size, blob_size = _FRAME.unpack(head)
        meta = pickle.loads(_read_exactly(down, size) or b"")
        if blob_size < 0:
            out = export_lines(meta, dimensions)
        else:  # the block's vectors, read in place from shared memory
            shared = np.frombuffer(values, "<f4", count=blob_size // 4).reshape(len(meta), dimensions)
            out = export_lines(meta, dimensions, shared)
            del shared
        if len(out) <= len(text):
            text[: len(out)] = out
            _write_all(up, _FRAME.pack(len(out), 1))
        else:
            _write_all(up, _FRAME.pack(len(out), 0) + out)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _read_exactly(fd: int, size: int) -> bytes | None:
    """``size`` bytes from ``fd``, or None at end of file."""
    parts = []
    while size:
        chunk = os.read(fd, min(size, 1 << 20))
        if not chunk:
            return None
        parts.append(chunk)
        size -= len(chunk)
    return b"".join(parts)
