"""Output: JSON for machines, rich tables for people, and everything else on stderr.

JSON never goes through rich (it would wrap lines and eat ``[bold]``-like text): it is written with
orjson straight to stdout, 2-space indented like wrangler's, float32 values as their shortest
decimals. Tables use a console made per call, so tests can set width and colour.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Sequence
from typing import Any

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


def line(text: str = "") -> None:
    """A sentence for people on stdout."""
    print(text, flush=True)


def note(text: str) -> None:
    """Notes, warnings and progress: stderr, so stdout stays clean for pipes."""
    print(text, file=sys.stderr, flush=True)


def error(text: str) -> None:
    print(f"Error: {text}", file=sys.stderr, flush=True)


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
