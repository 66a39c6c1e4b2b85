"""The Vectorize v2 REST API as an ASGI app over one data dir.

Routes (``wrangler-vectorize.md`` §4), under ``/client/v4/accounts/{account_id}/vectorize/v2`` or
the same without ``/client/v4`` (wrangler joins its base URL and the path verbatim, so ``//`` is
collapsed). The account id is accepted and ignored: one data dir is one account. ``GET /memberships``
and ``GET /accounts`` name that account (``LOCAL_ACCOUNT``): that is how wrangler finds its account
when ``CLOUDFLARE_ACCOUNT_ID`` is not set.

    GET    /indexes                         list            POST /indexes/{name}/query
    POST   /indexes                         create          POST /indexes/{name}/get_by_ids
    GET    /indexes/{name}                  get             POST /indexes/{name}/delete_by_ids
    DELETE /indexes/{name}                  delete          GET  /indexes/{name}/list
    GET    /indexes/{name}/info             info            POST /indexes/{name}/metadata_index/create
    POST   /indexes/{name}/insert           NDJSON          GET  /indexes/{name}/metadata_index/list
    POST   /indexes/{name}/upsert           NDJSON          POST /indexes/{name}/metadata_index/delete

Every answer is Cloudflare's envelope ``{"success", "errors", "messages", "result"}``. A failure is
a ``VcliError`` (the engine's, or one of the request errors below): its ``code`` and
``http_status`` give the envelope's error code and the HTTP status. The engine's calls block, so
each request's engine work and JSON encoding run in a worker thread; the event loop only reads
bodies and writes answers.
"""

from __future__ import annotations

import hmac
import io
import re
import sys
import traceback
from collections.abc import Callable, Iterator, Mapping
from typing import Any, NamedTuple

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from ..errors import (
    BadInput,
    BadQuery,
    DimensionMismatch,
    IndexExists,
    IndexNotFound,
    InvalidConfig,
    InvalidName,
    TooManyIds,
    VcliError,
)

MAX_BODY_BYTES = 100 * 1024 * 1024  # Vectorize's upload limit per request
API_PREFIX = "/client/v4"
INDEXES = re.compile(
    r"/accounts/(?P<account>[^/]+)/vectorize/v2/indexes"
    r"(?:/(?P<name>[^/]+)(?P<action>/info|/insert|/upsert|/query|/get_by_ids|/delete_by_ids|/list"
    r"|/metadata_index/create|/metadata_index/list|/metadata_index/delete)?)?"
)
OTHER_VECTORIZE = re.compile(r"/accounts/[^/]+/vectorize(?:/.*)?")
NDJSON_TYPES = frozenset({
    "application/x-ndjson", "application/ndjson", "application/jsonl", "application/x-jsonlines",
    "application/json", "application/octet-stream", "text/plain",
})
_JSON_OPTS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
# The one account a server is (any account id in a path is accepted all the same).
LOCAL_ACCOUNT = {"id": "0" * 32, "name": "vcli serve (local)"}


# == request errors (the engine's errors cover everything about indexes) ====================
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


def api_message(exc: VcliError) -> str:
    """The envelope's message: Vectorize's own text where the service's is known."""
    if isinstance(exc, IndexNotFound):
        return f'vectorize.index.not_found - Index name "{exc.name}"'
    if isinstance(exc, IndexExists):
        return f'vectorize.index.duplicate_name - Index name "{exc.name}"'
    return exc.message


class Paged(NamedTuple):
    """A page of a list, answered with Cloudflare's ``result_info`` beside the result."""

    result: list
    info: dict[str, int]


def envelope(result: Any) -> bytes:
    body = {"success": True, "errors": [], "messages": [], "result": result}
    if isinstance(result, Paged):
        body["result"], body["result_info"] = result
    return orjson.dumps(body, option=_JSON_OPTS)


def error_body(code: int, message: str) -> bytes:
    return orjson.dumps(
        {"success": False, "errors": [{"code": code, "message": message}], "messages": [],
         "result": None}
    )


def error_response(exc: VcliError) -> Response:
    return Response(error_body(exc.code, api_message(exc)), exc.http_status,
                    media_type="application/json")


def normalize_path(path: str) -> str:
    """Collapse ``//``, drop the ``/client/v4`` prefix and a trailing ``/``."""
    path = re.sub(r"/{2,}", "/", path)
    if path == API_PREFIX or path.startswith(API_PREFIX + "/"):
        path = path[len(API_PREFIX):]
    if len(path) > 1 and path.endswith("/"):
        path = path[:-1]
    return path or "/"


def media_type(request: Request) -> str | None:
    """The media type of the body without parameters: ``application/json; charset=utf-8;`` (as
    wrangler sends it, trailing semicolon included) is ``application/json``."""
    raw = request.headers.get("content-type")
    if raw is None:
        return None
    return raw.split(";", 1)[0].strip().lower() or None


# == reading request bodies ================================================================
def _object(body: Any) -> dict:
    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object")
    return body


def _whole(value: Any, what: str, error: type[VcliError]) -> int | None:
    """A JSON whole number (``3`` or ``3.0``) as an int; ``None`` stays ``None``."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise error(f"{what} must be a whole number, got {orjson.dumps(value).decode()}")


def _string(body: dict, key: str, error: type[VcliError], *, required: bool = True) -> str | None:
    value = body.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        got = "nothing" if value is None else orjson.dumps(value).decode()
        raise error(f'"{key}" must be a string, got {got}')
    return value


def _ids(body: Any) -> list[str]:
    ids = _object(body).get("ids")
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise BadQuery('the body must be {"ids": [...]}, an array of vector ids (strings)')
    return ids


def _lines(data: bytes, dimensions: int, discard: bool) -> Iterator:
    """The vector lines of an NDJSON body; with ``discard`` a line that cannot be read is skipped
    (Vectorize's ``unparsable-behavior=discard``), though a wrong dimension count still fails."""
    from ..ndjson import parse_line

    for lineno, raw in enumerate(io.BytesIO(data), 1):
        if not raw.strip():
            continue
        try:
            yield parse_line(raw, lineno, dimensions)
        except DimensionMismatch:
            raise
        except BadInput:
            if not discard:
                raise


def _mutation(result: Any) -> dict:
    return {"mutationId": result.mutation_id}


# == handlers: (catalog, index name, body, query parameters) -> result; run in a thread =====
Handler = Callable[[Any, "str | None", Any, Mapping[str, str]], Any]


def list_indexes(cat, name, body, params):
    return [c.to_json() for c in cat.list()]


def create_index(cat, name, body, params):
    body = _object(body)
    index_name = _string(body, "name", InvalidName)
    description = _string(body, "description", InvalidConfig, required=False)
    config = body.get("config")
    if not isinstance(config, dict):
        raise InvalidConfig(
            'the body needs "config": {"dimensions": N, "metric": "cosine"|"euclidean"|"dot-product"} '
            'or {"preset": "@cf/baai/bge-small-en-v1.5"}'
        )
    preset = _string(config, "preset", InvalidConfig, required=False)
    metric = _string(config, "metric", InvalidConfig, required=False)
    dimensions = _whole(config.get("dimensions"), "dimensions", InvalidConfig)
    cfg = cat.create(index_name, dimensions, metric, preset=preset, description=description)
    return cfg.to_json()


def get_index(cat, name, body, params):
    return cat.config(name).to_json()


def delete_index(cat, name, body, params):
    cat.delete(name)
    return None


def info(cat, name, body, params):
    with cat.open(name) as index:
        return index.info().to_json()


def _write(mode: str):
    def handler(cat, name, body, params):
        discard = params.get("unparsable-behavior", "error") == "discard"
        with cat.open(name, write=True) as index:
            write = index.insert if mode == "insert" else index.upsert
            return _mutation(write(_lines(body, index.dimensions, discard), batch_size=5000))

    handler.__name__ = mode
    return handler


def query(cat, name, body, params):
    body = _object(body)
    return_metadata = body.get("returnMetadata", "none")
    if isinstance(return_metadata, bool):  # the Workers binding's spelling
        return_metadata = "all" if return_metadata else "none"
    if not isinstance(return_metadata, str):
        raise BadQuery('"returnMetadata" must be "none", "indexed" or "all"')
    return_values = body.get("returnValues", False)
    if not isinstance(return_values, bool):
        raise BadQuery('"returnValues" must be true or false')
    top_k = _whole(body.get("topK", 5), "topK", BadQuery)
    namespace = _string(body, "namespace", BadQuery, required=False)
    vector_id = _string(body, "vectorId", BadQuery, required=False)
    with cat.open(name) as index:
        result = index.query(
            body.get("vector"), vector_id=vector_id, top_k=5 if top_k is None else top_k,
            return_values=return_values, return_metadata=return_metadata,
            namespace=namespace or None, filter=body.get("filter"),
        )
    return result.to_json()


# Ids per request that Vectorize takes (more fail with 40007), kept so that a program tested
# against vcli serve fails here as it would in production. The CLI takes any number.
MAX_GET_IDS = 20
MAX_DELETE_IDS = 100


def get_by_ids(cat, name, body, params):
    ids = _ids(body)
    if len(ids) > MAX_GET_IDS:
        raise TooManyIds(f"too many ids in payload; max id count is {MAX_GET_IDS}, got {len(ids)}")
    with cat.open(name) as index:
        return [v.to_json() for v in index.get(ids)]


def delete_by_ids(cat, name, body, params):
    ids = _ids(body)
    if len(ids) > MAX_DELETE_IDS:
        raise TooManyIds(f"too many ids in payload; max id count is {MAX_DELETE_IDS}, got {len(ids)}")
    with cat.open(name, write=True) as index:
        return _mutation(index.delete(ids))


def list_vectors(cat, name, body, params):
    raw = params.get("count")
    try:
        count = 100 if raw in (None, "") else int(raw)
    except ValueError:
        raise BadQuery(f'count must be a whole number from 1 to 1000, got "{raw[:40]}"') from None
    with cat.open(name) as index:
        return index.list_ids(count, params.get("cursor") or None).to_json()


def create_metadata_index(cat, name, body, params):
    body = _object(body)
    prop = _string(body, "propertyName", BadQuery)
    kind = _string(body, "indexType", BadQuery)
    with cat.open(name, write=True) as index:
        return _mutation(index.create_metadata_index(prop, kind))


def list_metadata_indexes(cat, name, body, params):
    with cat.open(name) as index:
        return {"metadataIndexes": [m.to_json() for m in index.list_metadata_indexes()]}


def delete_metadata_index(cat, name, body, params):
    prop = _string(_object(body), "propertyName", BadQuery)
    with cat.open(name, write=True) as index:
        return _mutation(index.delete_metadata_index(prop))


def _page(items: list, params: Mapping[str, str]) -> Paged:
    """Cloudflare's page/per_page paging (20 a page unless asked, at most 50)."""
    numbers = {}
    for key, default, top in (("page", 1, None), ("per_page", 20, 50)):
        raw = params.get(key) or str(default)
        if not raw.isdigit() or int(raw) < 1 or (top and int(raw) > top):
            span = f"1 to {top}" if top else "1 up"
            raise BadQuery(f'{key} must be a whole number from {span}, got "{raw[:40]}"')
        numbers[key] = int(raw)
    page, per = numbers["page"], numbers["per_page"]
    chunk = items[(page - 1) * per : page * per]
    return Paged(chunk, {"page": page, "per_page": per, "count": len(chunk), "total_count": len(items),
                         "total_pages": max(1, -(-len(items) // per))})


def list_accounts(cat, name, body, params):
    return _page([{**LOCAL_ACCOUNT, "type": "standard", "settings": {"enforce_twofactor": False},
                   "created_on": "2000-01-01T00:00:00.000000Z"}], params)


def list_memberships(cat, name, body, params):
    return _page([{"id": "1" * 32, "status": "accepted", "account": LOCAL_ACCOUNT,
                   "roles": ["Administrator"]}], params)


ACCOUNT_ROUTES: dict[str, Handler] = {"/accounts": list_accounts, "/memberships": list_memberships}

# route key (None: the collection, "": one index, else the action) -> method -> (handler, body)
ROUTES: dict[str | None, dict[str, tuple[Handler, str | None]]] = {
    None: {"GET": (list_indexes, None), "POST": (create_index, "json")},
    "": {"GET": (get_index, None), "DELETE": (delete_index, None)},
    "/info": {"GET": (info, None)},
    "/insert": {"POST": (_write("insert"), "ndjson")},
    "/upsert": {"POST": (_write("upsert"), "ndjson")},
    "/query": {"POST": (query, "json")},
    "/get_by_ids": {"POST": (get_by_ids, "json")},
    "/delete_by_ids": {"POST": (delete_by_ids, "json")},
    "/list": {"GET": (list_vectors, None)},
    "/metadata_index/create": {"POST": (create_metadata_index, "json")},
    "/metadata_index/list": {"GET": (list_metadata_indexes, None)},
    "/metadata_index/delete": {"POST": (delete_metadata_index, "json")},
}


def route(method: str, path: str) -> tuple[Handler, str | None, str | None]:
    """``(handler, body kind, index name)`` for a request, or ``NoRoute``/``MethodNotAllowed``."""
    path = normalize_path(path)
    if path in ACCOUNT_ROUTES:
        if method != "GET":
            raise MethodNotAllowed(f"Method not allowed: {method} {path} (use GET)")
        return ACCOUNT_ROUTES[path], None, None
    m = INDEXES.fullmatch(path)
    if m is None:
        if OTHER_VECTORIZE.fullmatch(path):
            raise NoRoute(
                f"No route for that URI: {path} (vcli serve speaks the Vectorize v2 API, "
                "/accounts/<account>/vectorize/v2/indexes/…)"
            )
        raise NoRoute(f"No route for that URI: {path}")
    name = m.group("name")
    key = None if name is None else (m.group("action") or "")
    methods = ROUTES[key]
    if method not in methods:
        raise MethodNotAllowed(
            f"Method not allowed: {method} {path} (use {' or '.join(sorted(methods))})"
        )
    handler, kind = methods[method]
    return handler, kind, name


# == the app ================================================================================
class VectorizeApp:
    """The ASGI app over a catalog of indexes. ``token``: when set, every request needs
    ``Authorization: Bearer <token>``."""

    def __init__(self, catalog: Any, *, token: str | None = None, max_body: int = MAX_BODY_BYTES):
        from ..engine import Catalog

        self.catalog = catalog if isinstance(catalog, Catalog) else Catalog(catalog)
        self.token = token.encode() if token else None
        self.max_body = max_body

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1003})
            return
        response = await self.respond(scope, self._limited(receive))
        await response(scope, receive, send)

    def _limited(self, receive):
        """``receive`` that fails with ``BodyTooLarge`` once the body passes the limit (for bodies
        sent without Content-Length, or longer than it says)."""
        seen = 0

        async def limited():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    raise BodyTooLarge(self._too_large())
            return message

        return limited

    def _too_large(self) -> str:
        return f"the request body is larger than {self.max_body:,} bytes (Vectorize's upload limit)"

    def _check_auth(self, request: Request) -> None:
        if self.token is None:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), self.token):
            raise Unauthorized(
                "Authentication error: this server needs the header Authorization: Bearer <token>, "
                "with the token given to vcli serve --token"
            )

    async def respond(self, scope, receive) -> Response:
        request = Request(scope, receive)
        try:
            self._check_auth(request)
            handler, kind, name = route(scope["method"], scope["path"])
            length = request.headers.get("content-length", "")
            if length.isdigit() and int(length) > self.max_body:
                raise BodyTooLarge(self._too_large())
            body = await self._read(request, kind)
            params = dict(request.query_params)
            data = await run_in_threadpool(self._run, handler, name, body, params)
            return Response(data, 200, media_type="application/json")
        except VcliError as exc:
            return error_response(exc)
        except Exception as exc:  # noqa: BLE001 - one bad request must never stop the server
            print(f"vcli serve: {scope.get('method')} {scope.get('path')} failed:", file=sys.stderr)
            traceback.print_exc(file=sys.stderr)
            return Response(
                error_body(1001, f"internal error: {type(exc).__name__}: {exc} (see the server's log)"),
                500, media_type="application/json",
            )
        finally:
            await request.close()

    def _run(self, handler: Handler, name, body, params) -> bytes:
        return envelope(handler(self.catalog, name, body, params))

    async def _read(self, request: Request, kind: str | None) -> Any:
        if kind == "json":
            return await self._json(request)
        if kind == "ndjson":
            return await self._ndjson(request)
        return None

    async def _json(self, request: Request) -> Any:
        media = media_type(request)
        if media is not None and media != "application/json" and not media.endswith("+json"):
            raise BadContentType("Expected request with `Content-Type: application/json`")
        body = await request.body()
        if not body.strip():
            raise RequestError("the request body is empty; expected a JSON object")
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise RequestError(f"the request body is not valid JSON ({exc})") from None

    async def _ndjson(self, request: Request) -> bytes:
        media = media_type(request)
        if media == "multipart/form-data":
            return await self._multipart(request)
        if media is None or media in NDJSON_TYPES:
            return await request.body()
        raise BadContentType(
            "vectorize.unknown_content_type - send the NDJSON as the body with Content-Type: "
            f'application/x-ndjson, or as the multipart/form-data part "vectors" (got {media})'
        )

    async def _multipart(self, request: Request) -> bytes:
        from starlette.exceptions import HTTPException
        from starlette.formparsers import MultiPartException

        try:
            form = await request.form(max_files=64, max_fields=64, max_part_size=self.max_body)
        except MultiPartException as exc:
            raise RequestError(f"malformed multipart body: {exc.message}") from None
        except HTTPException as exc:  # pragma: no cover - Starlette's wrapper, when an app is set
            raise RequestError(f"malformed multipart body: {exc.detail}") from None
        except (ValueError, AssertionError) as exc:
            raise RequestError(f"malformed multipart body: {exc}") from None
        try:
            part = form.get("vectors")
            if part is None:
                raise RequestError(
                    'the multipart body has no part named "vectors" (the NDJSON of the vectors)'
                )
            if isinstance(part, str):
                return part.encode()
            return await part.read()
        finally:
            await form.close()


def create_app(catalog: Any, *, token: str | None = None, max_body: int = MAX_BODY_BYTES) -> VectorizeApp:
    """The app over ``catalog``: a ``vcli.engine.Catalog`` (as ``open_catalog`` configures it), or
    a data dir path."""
    return VectorizeApp(catalog, token=token, max_body=max_body)
