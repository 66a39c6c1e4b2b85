"""NDJSON lines with ``"text"``: embedded into the ``"values"`` of a vector or the ``"vector"`` of a query.

A line that does not mention ``"text"`` is passed on untouched (not even parsed), so the readers
of ``vcli.ndjson`` still see every line, in order, and name the same line numbers in errors.
``model`` is a name, or a function giving it, called at the first text (so a file without text
never needs a model).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping

import orjson

from ..errors import BadInput, BadQuery
from . import MAX_TEXTS, embed

Model = str | Callable[[], str]
NUMPY = orjson.OPT_SERIALIZE_NUMPY  # float32 values print as the shortest decimal that round-trips
HELD_LINES = 1000  # lines held back at most while texts wait to be embedded together


def _text_of(raw: bytes, lineno: int, other: tuple[str, ...], error: type[BadInput] | type[BadQuery]):
    """The line's object and text when it has a ``"text"`` key, else None."""
    if b'"text"' not in raw:
        return None
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None  # the reader after us says what is wrong with it, with its line number
    if not isinstance(obj, dict) or "text" not in obj:
        return None
    text = obj["text"]

    def fail(message: str) -> Exception:
        vector_id = obj.get("id") if isinstance(obj.get("id"), str) else None
        return BadInput(message, lineno, vector_id) if error is BadInput else BadQuery(f"line {lineno}: {message}")

    if any(k in obj for k in other):
        others = " or ".join(f'"{k}"' for k in other)
        raise fail(f'give "text" or {others}, not both')
    if not isinstance(text, str) or not text:
        raise fail('"text" must be a string of at least 1 character')
    return obj, text


def _name(model: Model) -> str:
    return model() if callable(model) else model


def text_lines(lines: Iterable[bytes], model: Model, pooling: str = "mean", *, require: bool = False,
               env: Mapping[str, str] | None = None) -> Iterator[bytes]:
    held: list[bytes | dict] = []  # lines in order; a dict waits for its values
    texts: list[str] = []
    name: str | None = None

    def flush() -> Iterator[bytes]:
        nonlocal name
        if texts:
            name = name or _name(model)
            vectors = iter(embed(name, texts, pooling, env=env))
            for i, item in enumerate(held):
                if isinstance(item, dict):
                    del item["text"]
                    item["values"] = next(vectors)
                    held[i] = orjson.dumps(item, option=NUMPY) + b"\n"
        yield from held  # type: ignore[misc]
        held.clear()
        texts.clear()

    for lineno, raw in enumerate(lines, 1):
        found = None if not raw or raw.isspace() else _text_of(raw, lineno, ("values",), BadInput)
        if found is None:
            if require:
                if not raw or raw.isspace():
                    continue
                raise BadInput('no "text" to embed (each line is a JSON object with "text")', lineno)
            if not texts:  # nothing waits: the line goes on at once (a file of vectors streams)
                yield raw
                continue
            held.append(raw)
        else:
            held.append(found[0])
            texts.append(found[1])
        if len(texts) == MAX_TEXTS or len(held) >= HELD_LINES:
            yield from flush()
    yield from flush()


def text_queries(lines: Iterable[bytes | None], model: Model, pooling: str = "mean", *,
                 env: Mapping[str, str] | None = None) -> Iterator[bytes | None]:
    lineno = 0
    for raw in lines:
        if raw is not None:
            lineno += 1
            found = _text_of(raw, lineno, ("vector", "vectorId"), BadQuery)
            if found is not None:
                obj, text = found
                del obj["text"]
                obj["vector"] = embed(_name(model), [text], pooling, env=env)[0]
                raw = orjson.dumps(obj, option=NUMPY) + b"\n"
        yield raw
