"""``vcli export``: an index's vectors as NDJSON in exactly the insert format, fast.

Writing numbers as shortest float32 decimals is what an export costs: orjson takes ~50 ns a number,
so one core formats ~40k 384-dim vectors a second, and nothing faster exists in Python. Large
exports (``Tuning.export_parallel_floats``) therefore format their blocks in one forked process per
core (``format_blocks``), while this process reads the next rows from the store and hands results
on in order.
"""

from __future__ import annotations

import mmap
import os
import pickle
import signal
import struct
import sys
import warnings
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from typing import Any

import numpy as np
import orjson

from .columns import reading
from .store import Store
from .tuning import Tuning

_BIG_ENDIAN = sys.byteorder == "big"
LINE_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_APPEND_NEWLINE


def export_blocks(
    store: Store, dimensions: int, namespace: str | None, tuning: Tuning,
    progress: Callable[[int], None] | None = None, block_rows: int | None = None,
) -> Generator[tuple[bytes, int], None, None]:
    """The vectors (of one namespace, or all) in the order they were written, as ``(text, lines)``
    blocks of up to ``block_rows`` lines, read from one snapshot (later writes do not show up
    half-way). ``progress(n)`` is called with the lines done so far."""
    block_rows = block_rows or tuning.export_block_rows
    done = 0
    with reading(store, dimensions) as values:
        big = store.count() * dimensions >= tuning.export_parallel_floats
        workers = (os.cpu_count() or 1) if big else 1
        cur = store.export_rows(namespace)

        def blocks() -> Iterator[list[tuple]]:
            while rows := cur.fetchmany(block_rows):
                vecs = values.of([r[3] for r in rows])
                yield [(*r[:3], vec) for r, vec in zip(rows, vecs, strict=True)]

        for data, n in format_blocks(blocks(), dimensions, workers):
            yield data, n
            done += n
            if progress:
                progress(done)


def export_lines(rows: list[tuple], dimensions: int, values: Any = None) -> bytes:
    """Vector lines in exactly the insert format for ``(id, namespace, metadata JSON, float32
    blob)`` rows: ``id``, ``values`` (shortest float32 decimals, so they read back bit for bit),
    ``metadata`` and ``namespace`` when set. The stored metadata JSON is spliced in as it is.
    ``values``, when given, is the rows' vectors as one float32 array (and the blobs unused)."""

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
        out.append(dumps(obj, option=LINE_OPTIONS))
    return b"".join(out)


def checked_lines(vectors: Iterable, dimensions: int) -> bytes:
    """Checked vector lines (``validate.check_record``'s ``VectorLine``) in the insert format."""
    return export_lines([(v.id, v.namespace, v.metadata_json, v.blob) for v in vectors], dimensions)


def format_blocks(
    blocks: Iterable[list[tuple]], dimensions: int, workers: int = 1
) -> Iterator[tuple[bytes, int]]:
    """``(export_lines(rows), len(rows))`` for each block of rows, in order.

    With ``workers`` > 1 (and ``os.fork``) the blocks are formatted in that many forked processes,
    each with one block at a time. Vectors and results travel through shared memory and only small
    headers through pipes: with pickles through pipes (multiprocessing's pools, or pipes alone)
    moving the 4.7 MB of text a block makes cost this process as much as the formatting saved. The
    workers run no SQLite, only orjson and NumPy, so forking is safe even when other threads use
    the store."""
    if workers <= 1 or not hasattr(os, "fork"):
        for rows in blocks:
            yield export_lines(rows, dimensions), len(rows)
        return
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


# Shared memory per worker, for blocks of 1024 vectors (``Tuning.export_block_rows``): their float32 values
# up to 1536 dimensions, and their text when it is up to ~16 bytes a number.
_BLOCK_VALUES_BYTES = 1024 * 1536 * 4
_BLOCK_TEXT_BYTES = 1024 * 1536 * 16


def _serve(down: int, up: int, values, text, dimensions: int) -> None:  # pragma: no cover - in a worker
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
