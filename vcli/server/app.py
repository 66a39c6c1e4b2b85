"""The ASGI app of ``vcli serve``: authentication, routing, request bodies and answers.

Three protocols share the app, each a module with ``route`` (a request's ``Call``), ``encode`` (a
result's body) and ``failure`` (an error's body and status): the Workers binding (``binding.py``)
under ``/binding/``, Workers AI's binding (``ai.py``) under ``/ai/``, and the Cloudflare REST API
(``rest.py``: Vectorize v2, and Workers AI's ``ai/run``) everywhere else. This module
checks the token, reads the body (JSON, NDJSON or multipart), runs the handler in a worker thread
(the engine's calls block; the event loop only reads bodies and writes answers) and turns any
failure into the protocol's error answer. A failure is a ``VcliError``: the engine's, or one of the
request errors of ``common.py``.
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
from . import ai, binding, rest
from .common import BadContentType, BodyTooLarge, RequestError, Unauthorized

MAX_BODY_BYTES = MAX_UPLOAD_BYTES  # Vectorize's upload limit per request
NDJSON_TYPES = frozenset({
    "application/x-ndjson", "application/ndjson", "application/jsonl", "application/x-jsonlines",
    "application/json", "application/octet-stream", "text/plain",
})


def error_response(protocol, exc: VcliError) -> Response:
    body, status = protocol.failure(exc)
    return Response(body, status, media_type="application/json")


class VectorizeApp:
    """The ASGI app over a catalog of indexes. ``token``: when set, every request needs
    ``Authorization: Bearer <token>``."""

    def __init__(self, catalog: Any, *, token: str | None = None, max_body: int = MAX_BODY_BYTES):
        self.catalog = catalog if isinstance(catalog, Catalog) else Catalog(catalog, background_builds=True)
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

    def _check_auth(self, request: Request, protocol) -> None:
        """With a token, every request carries it as ``Authorization: Bearer <token>``; a binding's
        URL may carry it as ``?token=<token>`` instead (Miniflare's proxy client sends no headers
        of its own)."""
        if self.token is None:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        worker = protocol is not rest  # a Worker's binding: Vectorize's or AI's
        if scheme.lower() != "bearer" and worker:
            scheme, given = "bearer", request.query_params.get("token", "")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), self.token):
            raise Unauthorized(
                "Authentication error: this server needs the header Authorization: Bearer <token>, "
                "with the token given to vcli serve --token"
                + (" (or a binding URL ending in ?token=<token>)" if worker else "")
            )

    async def respond(self, scope, receive) -> Response:
        request = Request(scope, receive)
        protocol = binding if binding.claims(scope["path"]) else ai if ai.claims(scope["path"]) else rest
        if request.headers.get("upgrade", "").lower() == "websocket":
            # Miniflare's proxy client tries a WebSocket beside every binding; none is needed.
            return Response(b"", 426, headers={"connection": "close"})
        try:
            self._check_auth(request, protocol)
            call = protocol.route(scope["method"], scope["path"], request.headers)
            length = request.headers.get("content-length", "")
            if length.isdigit() and int(length) > self.max_body:
                raise BodyTooLarge(self._too_large())
            body = await self._read(request, call.body, call.media_type)
            params = dict(request.query_params)
            data = await run_in_threadpool(lambda: protocol.encode(call.handler(self.catalog, call.name, body, params)))
            return Response(data, getattr(call.handler, "http_status", 200), media_type="application/json")
        except VcliError as exc:
            return error_response(protocol, exc)
        except Exception as exc:  # noqa: BLE001 - one bad request must never stop the server
            print(f"vcli serve: {scope.get('method')} {scope.get('path')} failed:", file=sys.stderr)
            traceback.print_exc(file=sys.stderr)
            internal = RequestError(f"internal error: {type(exc).__name__}: {exc} (see the server's log)")
            internal.code, internal.http_status = 1001, 500
            return error_response(protocol, internal)
        finally:
            await request.close()

    async def _read(self, request: Request, kind: str | None, media: str | None) -> Any:
        if kind == "json":
            return await self._json(request, media)
        if kind == "ndjson":
            return await self._ndjson(request, media)
        return None

    async def _json(self, request: Request, media: str | None) -> Any:
        if media is not None and media != "application/json" and not media.endswith("+json"):
            raise BadContentType("Expected request with `Content-Type: application/json`")
        body = await request.body()
        if not body.strip():
            raise RequestError("the request body is empty; expected a JSON object")
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise RequestError(f"the request body is not valid JSON ({exc})") from None

    async def _ndjson(self, request: Request, media: str | None) -> bytes:
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
    a data dir path (a catalog that builds graphs in the background, as ``vcli serve``'s)."""
    return VectorizeApp(catalog, token=token, max_body=max_body)
