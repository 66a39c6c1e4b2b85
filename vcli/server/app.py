"""The ASGI app of ``vcli serve``: authentication, routing, request bodies and answers.

The protocol (``rest.py``: the Vectorize v2 REST API) decides which handler answers a request and
how its result and its errors are written; this module reads the body (JSON, NDJSON or multipart),
runs the handler in a worker thread (the engine's calls block; the event loop only reads bodies and
writes answers) and turns any failure into the protocol's error answer. A failure is a
``VcliError``: the engine's, or one of the request errors of ``common.py``.
"""

from __future__ import annotations

import hmac
import sys
import traceback
from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import Response

from ..engine import Catalog
from ..engine.limits import MAX_UPLOAD_BYTES
from ..errors import VcliError
from . import rest
from .common import BadContentType, BodyTooLarge, RequestError, Unauthorized, media_type

MAX_BODY_BYTES = MAX_UPLOAD_BYTES  # Vectorize's upload limit per request
NDJSON_TYPES = frozenset({
    "application/x-ndjson", "application/ndjson", "application/jsonl", "application/x-jsonlines",
    "application/json", "application/octet-stream", "text/plain",
})


def error_response(exc: VcliError) -> Response:
    return Response(rest.error_body(exc.code, rest.api_message(exc)), exc.http_status,
                    media_type="application/json")


class VectorizeApp:
    """The ASGI app over a catalog of indexes. ``token``: when set, every request needs
    ``Authorization: Bearer <token>``."""

    def __init__(self, catalog: Any, *, token: str | None = None, max_body: int = MAX_BODY_BYTES):
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
            handler, kind, name = rest.route(scope["method"], scope["path"])
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
                rest.error_body(1001, f"internal error: {type(exc).__name__}: {exc} (see the server's log)"),
                500, media_type="application/json",
            )
        finally:
            await request.close()

    def _run(self, handler: rest.Handler, name, body, params) -> bytes:
        return rest.envelope(handler(self.catalog, name, body, params))

    async def _read(self, request: Request, kind: str | None) -> Any:
        if kind == "json":
            return await self._json(request)
        if kind == "ndjson":
            return await self._ndjson(request)
        return None

    async def _json(self, request: Request) -> Any:
        media = media_type(request.headers)
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
        media = media_type(request.headers)
        if media == "multipart/form-data":
            return await self._multipart(request)
        if media is None or media in NDJSON_TYPES:
            return await request.body()
        raise BadContentType(
            "vectorize.unknown_content_type - send the NDJSON as the body with Content-Type: "
            f'application/x-ndjson, or as the multipart/form-data part "vectors" (got {media})'
        )

    async def _multipart(self, request: Request) -> bytes:
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
