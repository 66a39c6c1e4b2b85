"""Output: JSON for machines, rich tables for people, and everything else on stderr.

A command hands its answer to ``show`` as a ``Reply``: the data (an engine record, a list of
them, or plain JSON) and how people see it (``Table``s and ``Text``s). With ``--json`` the data
is printed as JSON and nothing else goes to stdout; notes (the record's own and the reply's) go to
stderr either way. JSON never goes through rich (it would wrap lines and eat ``[bold]``-like text):
it is written with orjson straight to stdout, 2-space indented like wrangler's, float32 values as
their shortest decimals. Tables use a console made per call, so tests can set width and colour.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple

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


def as_json(data: Any) -> Any:
    """What ``--json`` prints for ``data``: a record's ``to_json()``, a list of them, or the data."""
    if hasattr(data, "to_json"):
        return data.to_json()
    if isinstance(data, list):
        return [as_json(item) for item in data]
    return data


class Table(NamedTuple):
    """A boxed table on stdout, with a rule between rows, like wrangler's."""

    columns: Sequence[str]
    rows: Iterable[Sequence[Any]]


class Text(NamedTuple):
    """A sentence for people: on stdout, or on stderr (``err``) when it says there is nothing."""

    text: str
    err: bool = False


class Reply(NamedTuple):
    """What a command shows. ``data`` is what ``--json`` prints (``None``: nothing); ``human`` is
    what people see instead; ``notes`` go to stderr in both cases, after the data's own notes."""

    data: Any
    human: Sequence[Table | Text] = ()
    notes: Sequence[str] = ()


def show(reply: Reply, json: bool) -> None:
    show_notes((*getattr(reply.data, "notes", ()), *reply.notes))
    if json:
        if reply.data is not None:
            emit_json(as_json(reply.data))
        return
    for piece in reply.human:
        if isinstance(piece, Table):
            table(piece.columns, piece.rows)
        elif piece.err:
            note(piece.text)
        else:
            line(piece.text)


def show_lines(results: Iterable[Any]) -> None:
    """One compact JSON document a line on stdout, each flushed as soon as it is made (so a
    program reading the answers of ``vcli query --file -`` gets each without waiting), each
    result's notes on stderr before it."""
    out = sys.stdout.buffer
    for result in results:
        show_notes(getattr(result, "notes", ()))
        out.write(json_bytes(as_json(result), indent=False))
        out.flush()


def show_notes(notes: Iterable[str]) -> None:
    for text in notes:
        note(f"Note: {text}")


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
