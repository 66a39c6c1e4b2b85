"""NDJSON streams in and out: vector and query lines read with their line numbers, export blocks
written to stdout or to a file.

Each line is one JSON object (docs/contract.md, "Input"); what a line must hold is checked by
``vcli.engine.validate``, this module only reads, numbers and writes. Blank lines are skipped.
NumPy is not needed here, so a small write stays as quick to start as ``vcli info``.

Vector lines are read by ``vector_items``: the usual line checked by ``validate.quick_check``,
every other by ``parse_line`` (docs/performance.md, "Reading the lines").
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from .engine import fsutil
from .engine.records import Query, VectorLine
from .engine.validate import check_query, check_record, quick_check
from .errors import BadInput, VcliError

READ_BUFFER = 1 << 20  # a line of 384 values is ~4.7 KB: read with the default 8 KB, each costs 4x


@contextmanager
def open_input(path: str) -> Iterator[BinaryIO]:
    """The NDJSON source: stdin for ``-``, else the file, with a clear error if it cannot be read."""
    if path == "-":
        try:
            stdin = open(sys.stdin.fileno(), "rb", buffering=READ_BUFFER, closefd=False)
        except (AttributeError, OSError, ValueError):  # no file descriptor (a test's stand-in)
            yield sys.stdin.buffer
            return
        with stdin:
            yield stdin
        return
    p = Path(path)
    if p.is_dir():
        raise BadInput(f"cannot read {path}: it is a directory")
    try:
        f = open(p, "rb", buffering=READ_BUFFER)
    except OSError as exc:
        raise BadInput(f"cannot read {path}: {exc.strerror}") from None
    with f:
        yield f


# == vectors ======================================================================================
def parse_line(raw: bytes, lineno: int, dimensions: int) -> VectorLine:
    """Parse and check one non-blank line, raising ``BadInput`` naming the line and id."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadInput(f"not valid JSON ({exc})", lineno) from None
    return check_record(obj, lineno, dimensions, may_hold_bools=b"true" in raw or b"false" in raw)


def decode(raw: bytes) -> Any:
    """The line as ``orjson.loads`` decodes it, None if it is not JSON (``parse_line`` says why)."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


def vector_items(lines: Iterable[bytes], dimensions: int) -> Iterator[VectorLine | tuple[int, bytes, Any]]:
    """Each non-blank line of ``lines``, in order: the vector when ``quick_check`` reads it, else
    ``(lineno, raw, obj)`` for the caller to read, ``obj`` the decoded line (None if it is not
    JSON). A line whose object has "text" is always handed back so."""
    quick = quick_check(dimensions)
    for lineno, raw in enumerate(lines, 1):
        if not raw or raw.isspace():
            continue
        obj = decode(raw)
        if type(obj) is dict and "text" in obj:
            yield lineno, raw, obj
            continue
        yield quick(raw, lineno, obj) or (lineno, raw, obj)


def read_vectors(stream: BinaryIO | Iterable[bytes], dimensions: int) -> Iterator[VectorLine]:
    """Yield checked vector lines from a binary stream, skipping blank lines."""
    for item in vector_items(stream, dimensions):
        yield item if isinstance(item, VectorLine) else parse_line(item[1], item[0], dimensions)


# == queries (vcli query --file) ==================================================================
def read_queries(lines: BinaryIO | Iterable[bytes | None], defaults: Query | None = None) -> Iterator[Query | None]:
    """Yield queries from a binary stream (or the lines of ``lines_with_pauses``), skipping blank
    lines; a ``None`` (a pause in the input) is passed on as it is. Options a line leaves out come
    from ``defaults`` (``vcli query --file``'s flags)."""
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
        try:
            yield check_query(obj, defaults, line=lineno)
        except VcliError as exc:
            exc.message = f"line {lineno}: {exc.message}"
            exc.args = (exc.message,)
            raise


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
    import select  # lazy: only pipes and terminals need it

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


# == writing ======================================================================================
def write_blocks(blocks: Iterable[tuple[bytes, int]], path: str | os.PathLike[str] | None = None) -> int:
    """Write NDJSON ``blocks`` (``(text, lines in it)``) to stdout as they come, or to ``path``.
    A regular file is written atomically (``fsutil.write_atomic``), so ``path`` is either untouched
    or whole, even after an error or Ctrl-C; it gets the permissions ``>`` would give it. A
    symlink is followed, as ``>`` would; a device or named pipe (``/dev/null``, a FIFO) is written
    straight, never replaced. Returns the number of lines written."""
    if path is None:
        return _write(sys.stdout.buffer, blocks)
    target = os.path.realpath(path)
    try:
        regular = stat.S_ISREG(os.stat(target).st_mode)
    except FileNotFoundError:
        regular = True  # a new file
    if not regular:
        with open(target, "wb") as f:
            return _write(f, blocks)
    lines = 0

    def write(f: BinaryIO) -> None:
        nonlocal lines
        lines = _write(f, blocks)

    fsutil.write_atomic(Path(target), write, mode=0o666)  # the umask applies, as with >
    return lines


def _write(out: BinaryIO, blocks: Iterable[tuple[bytes, int]]) -> int:
    lines = 0
    for text, n in blocks:
        out.write(text)
        lines += n
    out.flush()
    return lines
