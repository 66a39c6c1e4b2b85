"""The Workers binding's protocol: a Worker's ``env.VECTORIZE``, served from the local indexes.

A Worker's Vectorize binding (workerd's ``cloudflare-internal:vectorize-api``, the same code as in
production) turns each method into one request to ``http://vector-search/<endpoint>``; a local
Workers runtime forwards it to ``http://<host>:<port>/binding/<index>/`` in one of two ways
(docs/workers.md):

* **Miniflare 4's remote-proxy client** (``remoteProxyConnectionString``): every call goes to the base
  URL itself, with the endpoint in the ``MF-URL`` header and the original headers as
  ``MF-Header-<name>``; it also tries a WebSocket at the base URL, which is answered 426 quietly.
* **vcli's Miniflare plugin** (``wrangler dev``, ``getPlatformProxy``, and on Miniflare 5 also
  vitest and plain Miniflare): plain requests to ``/binding/<index>/<endpoint>``.

    describe()            GET  info          the index's info object
    insert / upsert       POST insert|upsert NDJSON (no trailing newline)   {"mutationId"}
    query / queryById     POST query         the query API's JSON           {"count", "matches"}
    getByIds              POST getByIds      {"ids": [...]}                 [vectors]
    deleteByIds           POST deleteByIds   {"ids": [...]}                 {"mutationId"}

The handlers are the REST API's (``rest.py``): the same engine calls, checks and limits. What
differs is the framing: success is exactly 200 with the bare JSON result, a failure is another
status with ``{"code": <Vectorize code>, "error": "<message>"}``, which the binding throws in the
Worker as ``VECTOR_QUERY_ERROR (code = 40025): max top K is 50, but got 60`` and the like.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import urlsplit

import orjson

from ..engine import limits
from ..errors import LimitExceeded, VcliError
from . import rest
from .common import JSON_OPTIONS, Call, MethodNotAllowed, NoRoute, media_type, service_message

PREFIX = "/binding/"
PATH = re.compile(r"/binding/(?P<name>[^/]+)(?:/(?P<endpoint>[^/]*))?")


def _write(mode: str):
    """insert or upsert, at most ``limits.MAX_WORKER_BATCH`` vectors a call (as a Worker's binding
    takes in production)."""
    write = rest.write_handler(mode)

    def handler(cat, name, body, params):
        count = rest.vector_lines(body)
        if count > limits.MAX_WORKER_BATCH:
            raise LimitExceeded(
                f"too many vectors in one {mode}: a Worker's binding takes at most "
                f"{limits.MAX_WORKER_BATCH} a call, got {count}"
            )
        return write(cat, name, body, {})

    return handler


# endpoint -> (method, handler, body kind)
ENDPOINTS = {
    "info": ("GET", rest.info, None),
    "insert": ("POST", _write("insert"), "ndjson"),
    "upsert": ("POST", _write("upsert"), "ndjson"),
    "query": ("POST", rest.query, "json"),
    "getByIds": ("POST", rest.get_by_ids, "json"),
    "deleteByIds": ("POST", rest.delete_by_ids, "json"),
}


def claims(path: str) -> bool:
    return path.startswith(PREFIX)


def route(method: str, path: str, headers: Mapping[str, str]) -> Call:
    """The ``Call`` of a binding request: the endpoint and the body's media type from ``MF-URL`` and
    ``MF-Header-Content-Type`` (Miniflare's proxy client), or from the path and ``Content-Type``
    (vcli's plugin)."""
    m = PATH.fullmatch(path)
    if m is None:
        raise NoRoute(f"No route for that URI: {path} (a binding's URL is /binding/<index>/)")
    forwarded = headers.get("mf-url")
    endpoint = urlsplit(forwarded).path.strip("/") if forwarded else (m.group("endpoint") or "")
    if endpoint not in ENDPOINTS:
        raise NoRoute(f'"{endpoint}" is not an endpoint of the Vectorize binding '
                      f"({', '.join(ENDPOINTS)})")
    wanted, handler, kind = ENDPOINTS[endpoint]
    if method != wanted:
        raise MethodNotAllowed(f"Method not allowed: {method} {endpoint} (use {wanted})")
    if forwarded:  # the Worker's own headers, as the proxy client forwards them
        headers = {"content-type": headers.get("mf-header-content-type")}
    return Call(handler, kind, m.group("name"), media_type(headers))


def encode(result) -> bytes:
    return orjson.dumps(result, option=JSON_OPTIONS)


def failure(exc: VcliError) -> tuple[bytes, int]:
    """The body and status of the answer to a failed call."""
    return orjson.dumps({"code": exc.code, "error": service_message(exc)}), exc.http_status
