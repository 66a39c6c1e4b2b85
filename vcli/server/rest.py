"""The Vectorize v2 REST API: its routes, its handlers and Cloudflare's envelope.

Routes (docs/contract.md, "vcli serve"), under ``/client/v4/accounts/{account_id}/vectorize/v2``
or the same without ``/client/v4`` (wrangler joins its base URL and the path verbatim, so ``//`` is
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

and Workers AI's ``POST /accounts/{account_id}/ai/run/{model}`` (the body is the model's inputs;
handled by ``ai.py``).

Every answer is Cloudflare's envelope ``{"success", "errors", "messages", "result"}``; a failure's
``code`` and ``http_status`` give the envelope's error code and the HTTP status. Handlers take
``(catalog, index name, body, query parameters)`` and run in a worker thread (``app.py``).
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

import orjson

from ..engine import limits
from ..engine.records import VectorLine
from ..engine.validate import check_api_name, check_query
from ..errors import (
    BadInput,
    BadQuery,
    DimensionMismatch,
    InvalidConfig,
    InvalidName,
    TooManyIds,
    TooManyVectors,
    VcliError,
)
from ..ndjson import parse_line, vector_items
from . import ai
from .common import (
    JSON_OPTIONS,
    Call,
    Handler,
    MethodNotAllowed,
    NoRoute,
    ids,
    json_object,
    media_type,
    service_message,
    string,
    whole,
)

if TYPE_CHECKING:
    from ..engine.interface import Catalog

API_PREFIX = "/client/v4"
INDEXES = re.compile(
    r"/accounts/(?P<account>[^/]+)/vectorize/v2/indexes"
    r"(?:/(?P<name>[^/]+)(?P<action>/info|/insert|/upsert|/query|/get_by_ids|/delete_by_ids|/list"
    r"|/metadata_index/create|/metadata_index/list|/metadata_index/delete)?)?"
)
AI_RUN = re.compile(r"/accounts/[^/]+/ai/run/(?P<model>.+)")  # model names hold slashes: @cf/baai/…
OTHER_VECTORIZE = re.compile(r"/accounts/[^/]+/vectorize(?:/.*)?")
# The one account a server is (any account id in a path is accepted all the same).
LOCAL_ACCOUNT = {"id": "0" * 32, "name": "vcli serve (local)"}


class Paged(NamedTuple):
    """A page of a list, answered with Cloudflare's ``result_info`` beside the result."""

    result: list
    info: dict[str, int]


def encode(result: Any) -> bytes:
    """A result in Cloudflare's envelope."""
    body = {"success": True, "errors": [], "messages": [], "result": result}
    if isinstance(result, Paged):
        body["result"], body["result_info"] = result
    return orjson.dumps(body, option=JSON_OPTIONS)


def error_body(code: int, message: str) -> bytes:
    return orjson.dumps(
        {"success": False, "errors": [{"code": code, "message": message}], "messages": [],
         "result": None}
    )


def failure(exc: VcliError) -> tuple[bytes, int]:
    """The body and status of the answer to a failed request."""
    return error_body(exc.code, service_message(exc)), exc.http_status


def normalize_path(path: str) -> str:
    """Collapse ``//``, drop the ``/client/v4`` prefix and a trailing ``/``."""
    path = re.sub(r"/{2,}", "/", path)
    if path == API_PREFIX or path.startswith(API_PREFIX + "/"):
        path = path[len(API_PREFIX):]
    if len(path) > 1 and path.endswith("/"):
        path = path[:-1]
    return path or "/"


def ndjson_lines(data: bytes, dimensions: int, discard: bool = False) -> Iterator:
    """The vector lines of an NDJSON body (the last one may lack its newline); with ``discard`` a
    line that cannot be read is skipped (Vectorize's ``unparsable-behavior=discard``), though a
    wrong dimension count still fails."""
    for item in vector_items(io.BytesIO(data), dimensions):
        if isinstance(item, VectorLine):
            yield item
            continue
        lineno, raw, _obj = item
        try:
            yield parse_line(raw, lineno, dimensions)
        except DimensionMismatch:
            raise
        except BadInput:
            if not discard:
                raise


def _mutation(result: Any) -> dict:
    return {"mutationId": result.mutation_id}


# == handlers (common.Handler), run in a worker thread ========================================


def list_indexes(cat: Catalog, name, body, params):
    return [c.to_json() for c in cat.list()]


def create_index(cat: Catalog, name, body, params):
    body = json_object(body)
    index_name = string(body, "name", InvalidName)
    description = string(body, "description", InvalidConfig, required=False)
    config = body.get("config")
    if not isinstance(config, dict):
        raise InvalidConfig(
            'the body needs "config": {"dimensions": N, "metric": "cosine"|"euclidean"|"dot-product"} '
            'or {"preset": "@cf/baai/bge-small-en-v1.5"}'
        )
    preset = string(config, "preset", InvalidConfig, required=False)
    metric = string(config, "metric", InvalidConfig, required=False)
    dimensions = whole(config.get("dimensions"), "dimensions", InvalidConfig)
    check_api_name(index_name)
    cfg = cat.create(index_name, dimensions, metric, preset=preset, description=description)
    return cfg.to_json()


create_index.http_status = 201  # type: ignore[attr-defined]  # as Cloudflare's API documents it


def get_index(cat: Catalog, name, body, params):
    return cat.config(name).to_json()


def delete_index(cat: Catalog, name, body, params):
    cat.delete(name)
    return None


def info(cat: Catalog, name, body, params):
    with cat.open(name) as index:
        return index.info().to_json()


def vector_lines(body: bytes) -> int:
    """The vectors an NDJSON body holds (its non-blank lines)."""
    return sum(1 for line in body.split(b"\n") if line.strip())


def write_handler(mode: str):
    def handler(cat: Catalog, name, body, params):
        discard = params.get("unparsable-behavior", "error") == "discard"
        count = vector_lines(body)
        if count > limits.MAX_BATCH_SIZE:  # the API's cap a request (the CLI splits a file into batches)
            raise TooManyVectors(f"too many vectors in payload; max vector count is {limits.MAX_BATCH_SIZE}, "
                                 f"got {count}")
        with cat.open(name, write=True) as index:
            write = index.insert if mode == "insert" else index.upsert
            return _mutation(write(ndjson_lines(body, index.dimensions, discard), batch_size=limits.MAX_BATCH_SIZE))

    handler.__name__ = mode
    return handler


def query(cat: Catalog, name, body, params):
    body = json_object(body)
    if body.get("namespace") == "":  # an empty namespace is none
        body = {k: v for k, v in body.items() if k != "namespace"}
    with cat.open(name) as index:
        return index.answer(check_query(body)).to_json()


def checked_ids(body: Any, most: int) -> list[str]:
    """The ``ids`` of a get or delete request: Vectorize takes at most ``most`` (40007 beyond), so
    a program tested against vcli serve fails here as it would in production. The CLI takes any."""
    found = ids(body)
    if len(found) > most:
        raise TooManyIds(f"too many ids in payload; max id count is {most}, got {len(found)}")
    return found


def get_by_ids(cat: Catalog, name, body, params):
    found = checked_ids(body, limits.MAX_GET_IDS)
    with cat.open(name) as index:
        return [v.to_json() for v in index.get(found)]


def delete_by_ids(cat: Catalog, name, body, params):
    found = checked_ids(body, limits.MAX_DELETE_IDS)
    with cat.open(name, write=True) as index:
        return _mutation(index.delete(found))


def list_vectors(cat: Catalog, name, body, params):
    raw = params.get("count")
    try:
        count = 100 if raw in (None, "") else int(raw)
    except ValueError:
        raise BadQuery(f'count must be a whole number from 1 to 1000, got "{raw[:40]}"') from None
    with cat.open(name) as index:
        return index.list_ids(count, params.get("cursor") or None).to_json()


def create_metadata_index(cat: Catalog, name, body, params):
    body = json_object(body)
    prop = string(body, "propertyName", BadQuery)
    kind = string(body, "indexType", BadQuery)
    with cat.open(name, write=True) as index:
        return _mutation(index.create_metadata_index(prop, kind))


def list_metadata_indexes(cat: Catalog, name, body, params):
    with cat.open(name) as index:
        return {"metadataIndexes": [m.to_json() for m in index.list_metadata_indexes()]}


def delete_metadata_index(cat: Catalog, name, body, params):
    prop = string(json_object(body), "propertyName", BadQuery)
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


def list_accounts(cat: Catalog, name, body, params):
    return _page([{**LOCAL_ACCOUNT, "type": "standard", "settings": {"enforce_twofactor": False},
                   "created_on": "2000-01-01T00:00:00.000000Z"}], params)


def list_memberships(cat: Catalog, name, body, params):
    return _page([{"id": "1" * 32, "status": "accepted", "account": LOCAL_ACCOUNT,
                   "roles": ["Administrator"]}], params)


ACCOUNT_ROUTES: dict[str, Handler] = {"/accounts": list_accounts, "/memberships": list_memberships}

# route key (None: the collection, "": one index, else the action) -> method -> (handler, body)
ROUTES: dict[str | None, dict[str, tuple[Handler, str | None]]] = {
    None: {"GET": (list_indexes, None), "POST": (create_index, "json")},
    "": {"GET": (get_index, None), "DELETE": (delete_index, None)},
    "/info": {"GET": (info, None)},
    "/insert": {"POST": (write_handler("insert"), "ndjson")},
    "/upsert": {"POST": (write_handler("upsert"), "ndjson")},
    "/query": {"POST": (query, "json")},
    "/get_by_ids": {"POST": (get_by_ids, "json")},
    "/delete_by_ids": {"POST": (delete_by_ids, "json")},
    "/list": {"GET": (list_vectors, None)},
    "/metadata_index/create": {"POST": (create_metadata_index, "json")},
    "/metadata_index/list": {"GET": (list_metadata_indexes, None)},
    "/metadata_index/delete": {"POST": (delete_metadata_index, "json")},
}


def route(method: str, path: str, headers: Mapping[str, str]) -> Call:
    """The ``Call`` a request makes, or ``NoRoute``/``MethodNotAllowed``."""
    path = normalize_path(path)
    if path in ACCOUNT_ROUTES:
        if method != "GET":
            raise MethodNotAllowed(f"Method not allowed: {method} {path} (use GET)")
        return Call(ACCOUNT_ROUTES[path], None, None, None)
    m = AI_RUN.fullmatch(path)
    if m is not None:
        if method != "POST":
            raise MethodNotAllowed(f"Method not allowed: {method} {path} (use POST)")
        return ai.rest_call(m.group("model"), headers)
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
    return Call(handler, kind, name, media_type(headers))


