"""NDJSON lines with ``"text"``: embedded into the ``"values"`` of a vector or the ``"vector"`` of a query.

Each line is parsed once. Texts are embedded up to 100 at a time (``in_order``): while some wait,
the lines after them are held (1,000 at most), so everything comes out in order; while none wait,
a line goes on at once, so a file of vectors streams exactly as before. Errors name the line as
``vcli.ndjson``'s readers do. ``model`` is a name, or a function giving it, called at the first
text (so a file without text never needs a model).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, TypeVar

import orjson

from ..engine.records import VectorLine
from ..engine.validate import check_record
from ..errors import BadInput, BadQuery
from ..ndjson import parse_line, vector_items
from . import MAX_TEXTS, embed

Model = str | Callable[[], str]
T = TypeVar("T")
NUMPY = orjson.OPT_SERIALIZE_NUMPY  # float32 values print as the shortest decimal that round-trips
HELD_LINES = 1000  # lines held back at most while texts wait to be embedded together


def in_order(items: Iterable[tuple[T, str | None]], embed_texts: Callable[[list[str]], Any]
             ) -> Iterator[tuple[T, Any]]:
    """Each item with the vector of its text (None when it has none), in order."""
    held: list[tuple[T, str | None]] = []
    texts: list[str] = []

    def flush() -> Iterator[tuple[T, Any]]:
        vectors = iter(embed_texts(texts) if texts else ())
        for item, text in held:
            yield item, None if text is None else next(vectors)
        held.clear()
        texts.clear()

    for item, text in items:
        if text is None and not texts:
            yield item, None
            continue
        held.append((item, text))
        if text is not None:
            texts.append(text)
        if len(texts) == MAX_TEXTS or len(held) >= HELD_LINES:
            yield from flush()
    yield from flush()


def _parse(raw: bytes, lineno: int) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadInput(f"not valid JSON ({exc})", lineno) from None


def _text(obj: Any, lineno: int, other: tuple[str, ...], query: bool = False) -> str | None:
    """The line's ``"text"`` when it has one, checked; else None."""
    if not isinstance(obj, dict) or "text" not in obj:
        return None

    def fail(message: str) -> Exception:
        if query:
            return BadQuery(f"line {lineno}: {message}")
        return BadInput(message, lineno, obj["id"] if isinstance(obj.get("id"), str) else None)

    if any(k in obj for k in other):
        others = " or ".join(f'"{k}"' for k in other)
        raise fail(f'give "text" or {others}, not both')
    text = obj["text"]
    if not isinstance(text, str) or not text:
        raise fail('"text" must be a string of at least 1 character')
    return text


def _embedder(model: Model, pooling: str, env: Mapping[str, str] | None) -> Callable[[list[str]], Any]:
    name: list[str] = []

    def run(texts: list[str]) -> Any:
        if not name:
            name.append(model() if callable(model) else model)
        return embed(name[0], texts, pooling, env=env)

    return run


def vector_lines(lines: Iterable[bytes], dimensions: int, model: Model, pooling: str = "mean", *,
                 env: Mapping[str, str] | None = None) -> Iterator[VectorLine]:
    """``ndjson.read_vectors`` where a line may give ``"text"`` instead of ``"values"``."""
    def parsed() -> Iterator[tuple[VectorLine | tuple[int, bytes, Any, bool], str | None]]:
        for item in vector_items(lines, dimensions):
            if isinstance(item, VectorLine):
                yield item, None
                continue
            lineno, raw, obj = item
            if type(obj) is dict and "text" in obj and b'"text"' in raw:
                yield (lineno, raw, obj, True), _text(obj, lineno, ("values",))
            else:
                yield (lineno, raw, obj, False), None

    for item, vector in in_order(parsed(), _embedder(model, pooling, env)):
        if isinstance(item, VectorLine):
            yield item
            continue
        lineno, raw, obj, text = item
        if not text:
            yield parse_line(raw, lineno, dimensions)
            continue
        if vector is not None:
            del obj["text"]
            obj["values"] = vector
        yield check_record(obj, lineno, dimensions, may_hold_bools=b"true" in raw or b"false" in raw)


def text_lines(lines: Iterable[bytes], model: Model, pooling: str = "mean", *,
               env: Mapping[str, str] | None = None) -> Iterator[bytes]:
    """``vcli embed``: every non-blank line must have ``"text"``; out comes the line with
    ``"values"`` in its place."""
    def parsed() -> Iterator[tuple[dict, str]]:
        for lineno, raw in enumerate(lines, 1):
            if not raw or raw.isspace():
                continue
            obj = _parse(raw, lineno)
            text = _text(obj, lineno, ("values",))
            if text is None:
                raise BadInput('no "text" to embed (each line is a JSON object with "text")', lineno)
            yield obj, text

    for obj, vector in in_order(parsed(), _embedder(model, pooling, env)):
        del obj["text"]
        obj["values"] = vector
        yield orjson.dumps(obj, option=NUMPY | orjson.OPT_APPEND_NEWLINE)


def text_queries(lines: Iterable[bytes | None], model: Model, pooling: str = "mean", *,
                 env: Mapping[str, str] | None = None) -> Iterator[bytes | None]:
    """``vcli query --file``: a line with ``"text"`` gets ``"vector"`` in its place, one line at a
    time (a query is answered as soon as its line arrives); other lines and pauses pass as they are."""
    run = _embedder(model, pooling, env)
    lineno = 0
    for raw in lines:
        if raw is not None:
            lineno += 1
            text = None
            if b'"text"' in raw:
                try:
                    obj = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    obj = None  # read_queries says what is wrong, with the line number
                text = _text(obj, lineno, ("vector", "vectorId"), query=True)
            if text is not None:
                del obj["text"]
                obj["vector"] = run([text])[0]
                raw = orjson.dumps(obj, option=NUMPY | orjson.OPT_APPEND_NEWLINE)
        yield raw
