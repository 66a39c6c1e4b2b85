"""Output: JSON for machines, rich tables for people, and everything else on stderr.

JSON never goes through rich (it would wrap lines and eat ``[bold]``-like text): it is written with
orjson straight to stdout, 2-space indented like wrangler's, float32 values as their shortest
decimals. Tables use a console made per call, so tests can set width and colour.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, BinaryIO

import orjson

_JSON_OPTS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE


def json_bytes(obj: Any, *, indent: bool = True) -> bytes:
    if indent:
        return orjson.dumps(obj, option=_JSON_OPTS)
    return orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_APPEND_NEWLINE)


def emit_json(obj: Any, *, indent: bool = True) -> None:
    out = sys.stdout.buffer if hasattr(sys.stdout, "buffer") else None
    data = json_bytes(obj, indent=indent)
    if out is not None:
        out.write(data)
        out.flush()
    else:  # pragma: no cover - a replaced stdout without a buffer
        sys.stdout.write(data.decode())
        sys.stdout.flush()


def emit_json_lines(objs: Iterable[Any]) -> None:
    """One compact JSON document a line on stdout, each flushed as soon as it is made (so a
    program reading the answers of ``vcli query --file -`` gets each without waiting)."""
    out = sys.stdout.buffer
    for obj in objs:
        out.write(json_bytes(obj, indent=False))
        out.flush()


def write_stream(
    blocks: Iterable[tuple[bytes, int]], path: str | os.PathLike[str] | None = None
) -> int:
    """Write NDJSON ``blocks`` (``(text, lines in it)``) to stdout as they come, or to ``path``.
    A regular file is written atomically: into a temporary file beside it, fsynced, then renamed
    over it, so ``path`` is either untouched or whole, even after an error or Ctrl-C. A symlink is
    followed, as ``>`` would; a device or named pipe (``/dev/null``, a FIFO) is written straight,
    never replaced. Returns the number of lines written."""
    if path is None:
        return _write_blocks(sys.stdout.buffer, blocks)
    target = os.path.realpath(path)
    try:
        regular = stat.S_ISREG(os.stat(target).st_mode)
    except FileNotFoundError:
        regular = True  # a new file
    if not regular:
        with open(target, "wb") as f:
            return _write_blocks(f, blocks)
    folder, base = os.path.split(target)
    tmp = os.path.join(folder, f".{base}.tmp-{os.urandom(4).hex()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies, as with >
    try:
        with os.fdopen(fd, "wb") as f:
            lines = _write_blocks(f, blocks)
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return lines


def _write_blocks(out: BinaryIO, blocks: Iterable[tuple[bytes, int]]) -> int:
    lines = 0
    for text, n in blocks:
        out.write(text)
        lines += n
    out.flush()
    return lines


def line(text: str = "") -> None:
    """A sentence for people on stdout."""
    print(text, flush=True)


def note(text: str) -> None:
    """Notes, warnings and progress: stderr, so stdout stays clean for pipes."""
    print(text, file=sys.stderr, flush=True)


def error(text: str) -> None:
    print(f"Error: {text}", file=sys.stderr, flush=True)


@contextmanager
def progress(label: str, unit: str = "vectors") -> Iterator[Callable[[int], None] | None]:
    """A progress line on stderr (spinner, count, rate, elapsed time) while the block runs, when
    stderr is a terminal; yields the callback to give it the running count. When stderr is not a
    terminal it yields ``None`` and prints nothing."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.progress import Progress, ProgressColumn, SpinnerColumn, TextColumn, TimeElapsedColumn
    from rich.text import Text

    class Rate(ProgressColumn):
        def render(self, task) -> Text:
            speed = task.finished_speed or task.speed
            return Text("" if speed is None else f"{speed:,.0f} {unit}/s")

    bar = Progress(
        SpinnerColumn(), TextColumn(f"{label} [progress.percentage]{{task.completed:,}} {unit}"),
        Rate(), TimeElapsedColumn(), console=_console(stderr=True), transient=False,
    )
    with bar:
        task = bar.add_task(label, total=None)
        yield lambda count: bar.update(task, completed=count)


def _console(stderr: bool = False):
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    is_tty = stream.isatty()
    width = None if is_tty else int(os.environ.get("COLUMNS", "0") or 0) or 100_000
    return Console(file=stream, width=width, highlight=False, soft_wrap=False,
                   no_color=not is_tty or bool(os.environ.get("NO_COLOR")))


def table(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """A boxed table with a rule between rows, like wrangler's."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    t = Table(box=box.SQUARE, show_lines=True, header_style="bold", pad_edge=True)
    for col in columns:
        t.add_column(col, overflow="fold")
    for row in rows:
        t.add_row(*(Text("" if cell is None else str(cell)) for cell in row))
    _console().print(t)


def values_text(values: Any, limit: int = 8) -> str:
    """A vector's values as shortest float32 decimals, cut after ``limit`` for tables."""
    text = orjson.dumps(values[:limit], option=orjson.OPT_SERIALIZE_NUMPY).decode()
    if len(values) > limit:
        text = text[:-1] + f", … ({len(values)} values)]"
    return text


def compact(obj: Any) -> str:
    return "" if obj is None else orjson.dumps(obj).decode()


def score_text(score: float) -> str:
    return format(score, ".6g")
