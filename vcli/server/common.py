"""What the server's protocols share: a routed call, the errors of a request itself, the service's
words for an error, and reading request values.

Everything about indexes and vectors is checked by the engine (``vcli.engine.validate``) and fails
with the engine's errors; these are the failures of the HTTP request around it. Each error's
``code`` and ``http_status`` say how a protocol answers it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, overload

import orjson

from ..errors import BadQuery, IndexExists, IndexNotFound, VcliError

if TYPE_CHECKING:
    from ..engine.interface import Catalog

# A handler: (catalog, the name the route holds, body, query parameters) -> the result, as JSON-able
# data. The name is an index's (None for the collection) or, for Workers AI, a model's. A handler
# calls only the ``Catalog`` protocol, which the local indexes and the live service both have.
Handler = Callable[["Catalog", Any, Any, Mapping[str, str]], Any]


class Call(NamedTuple):
    """A request routed: its handler, the kind of its body (``"json"``, ``"ndjson"`` or None), the
    index it names, and the media type of its body."""

    handler: Handler
    body: str | None
    name: str | None
    media_type: str | None

JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


class RequestError(VcliError):
    """A request the API cannot take: wrong route, method, credentials or body."""


class NoRoute(RequestError):
    code = 7000
    http_status = 404


class MethodNotAllowed(RequestError):
    code = 7001
    http_status = 405


class Unauthorized(RequestError):
    code = 10000
    http_status = 401


class BadContentType(RequestError):
    code = 40026


class BodyTooLarge(RequestError):
    http_status = 413


def service_message(exc: VcliError) -> str:
    """What the live service says for ``exc``, where its words are known; else vcli's message."""
    if isinstance(exc, IndexNotFound):
        return f'vectorize.index.not_found - Index name "{exc.name}"'
    if isinstance(exc, IndexExists):
        return f'vectorize.index.duplicate_name - Index name "{exc.name}"'
    return exc.service_message or exc.message


def media_type(headers) -> str | None:
    """The media type of the body without parameters: ``application/json; charset=utf-8;`` (as
    wrangler sends it, trailing semicolon included) is ``application/json``."""
    raw = headers.get("content-type")
    if raw is None:
        return None
    return raw.split(";", 1)[0].strip().lower() or None


def json_object(body: Any) -> dict:
    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object")
    return body


def whole(value: Any, what: str, error: type[VcliError]) -> int | None:
    """A JSON whole number (``3`` or ``3.0``) as an int; ``None`` stays ``None``."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise error(f"{what} must be a whole number, got {orjson.dumps(value).decode()}")


@overload
def string(body: dict, key: str, error: type[VcliError], *, required: Literal[True] = True) -> str: ...
@overload
def string(body: dict, key: str, error: type[VcliError], *, required: bool) -> str | None: ...
def string(body: dict, key: str, error: type[VcliError], *, required: bool = True) -> str | None:
    value = body.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        got = "nothing" if value is None else orjson.dumps(value).decode()
        raise error(f'"{key}" must be a string, got {got}')
    return value


def ids(body: Any) -> list[str]:
    found = json_object(body).get("ids")
    if not isinstance(found, list) or not all(isinstance(i, str) for i in found):
        raise BadQuery('the body must be {"ids": [...]}, an array of vector ids (strings)')
    return found
