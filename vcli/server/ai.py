"""Workers AI's embedding models, served: a Worker's ``env.AI.run(model, inputs)`` and the REST API's
``POST /accounts/{account}/ai/run/{model}``, answered by ``vcli.embeddings`` (docs/workers.md).

A Worker's AI binding (workerd's ``cloudflare-internal:ai-api``, the code production runs) makes
each ``run`` one ``POST http://workers-binding.ai/run?version=3`` with the model in the header
``cf-consn-model-id`` and the body ``{"inputs": …, "options": …}``. A local Workers runtime sends it
to ``http://<host>:<port>/ai/`` in one of two ways, as for Vectorize (``binding.py``):

* **Miniflare's remote-proxy client**: ``POST /ai/`` with the target in ``MF-URL`` and the Worker's
  headers as ``MF-Header-<name>`` (after a WebSocket attempt, answered 426 by the app);
* **vcli's Miniflare plugin** (``wrangler dev``, ``getPlatformProxy``): ``POST /ai/run?version=3``
  with the Worker's own headers.

The binding takes only an answer whose content type is exactly ``application/json`` as JSON (with
``; charset=…`` the Worker gets a stream), which is what the app sends. A failure is a non-2xx
status with ``{"internalCode", "name", "description"}``, which the binding throws as an error named
``name`` with the message ``"<internalCode>: <description>"`` (``AiError: 5007: No such model …``).
On the REST route the same result and the same codes come in Cloudflare's envelope (``rest.py``).

The models run on the CPU: the handlers run in the app's worker threads, one embedding at a time
(``_EMBEDDING``), so concurrent calls queue instead of splitting two cores between them.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import orjson

from ..errors import VcliError
from .common import JSON_OPTIONS, BodyTooLarge, Call, MethodNotAllowed, NoRoute, media_type

PREFIX = "/ai"
PATH = re.compile(r"/ai(?:/(?P<endpoint>[^/]*))?/?")
ENDPOINT = "run"  # env.AI.run; models(), gateway(), toMarkdown() … take other paths, not served
_EMBEDDING = threading.Lock()


class AiRunError(VcliError):
    """A failed ``run``, with the code Workers AI gives for it (docs/contract.md, "Workers AI")."""

    def __init__(self, code: int, message: str, http_status: int = 400):
        super().__init__(message)
        self.code, self.http_status = code, http_status


def claims(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")


def route(method: str, path: str, headers: Mapping[str, str]) -> Call:
    """The ``Call`` of a binding request: the endpoint from ``MF-URL`` (Miniflare's proxy client) or
    the path (vcli's plugin), the model from ``cf-consn-model-id`` either way."""
    m = PATH.fullmatch(path)
    forwarded = headers.get("mf-url")
    endpoint = urlsplit(forwarded).path.strip("/") if forwarded else (m.group("endpoint") if m else None)
    if m is None or endpoint != ENDPOINT:
        raise NoRoute(f"No route for that URI: {path} (the AI binding's URL is /ai/; vcli serves "
                      f"env.AI.run for embedding models)")
    if method != "POST":
        raise MethodNotAllowed(f"Method not allowed: {method} {path} (use POST)")
    if forwarded:  # the Worker's own headers, as the proxy client forwards them
        headers = {k[len("mf-header-"):]: v for k, v in headers.items() if k.startswith("mf-header-")}
    model = headers.get("cf-consn-model-id")
    if not model:
        raise AiRunError(3003, "Request is missing headers or body: the header cf-consn-model-id (the model)")
    return Call(run_binding, "json", model, media_type(headers))


def rest_call(model: str, headers: Mapping[str, str]) -> Call:
    """The ``Call`` of ``POST /accounts/{account}/ai/run/{model}``: the body is the inputs."""
    return Call(run_rest, "json", model, media_type(headers))


def encode(result: Any) -> bytes:
    return orjson.dumps(result, option=JSON_OPTIONS)


def failure(exc: VcliError) -> tuple[bytes, int]:
    """The body and status the binding reads as a thrown ``AiError``."""
    code = 3006 if isinstance(exc, BodyTooLarge) else exc.code  # Workers AI's "Request is too large"
    body = {"internalCode": code, "name": "AiError", "description": exc.message}
    return orjson.dumps(body), exc.http_status


# == handlers (common.Handler), run in a worker thread ========================================


def run_binding(cat, model: str, body: Any, params: Mapping[str, str]) -> dict:
    if not isinstance(body, dict) or "inputs" not in body:
        raise AiRunError(3003, 'Request is missing headers or body: a JSON body {"inputs": …, "options": …}')
    return run(model, body["inputs"])


def run_rest(cat, model: str, body: Any, params: Mapping[str, str]) -> dict:
    return run(model, body)


def run(model: str, inputs: Any) -> dict:
    """``{shape, data, pooling}`` for ``inputs`` = ``{text: str | [str], pooling?}``, or the
    ``AiRunError`` Workers AI answers instead: 5007 for a model that is not here (with what vcli
    serves, or the pull command), 5006 for inputs the model refuses, in production's form."""
    from ..embeddings import MODELS, embed
    from ..errors import BadEmbedInput, ModelDamaged, ModelNotPulled

    if model not in MODELS:
        raise AiRunError(5007, f"No such model {model} or task (vcli serve computes {', '.join(MODELS)})")
    if not isinstance(inputs, dict) or "text" not in inputs:
        got = "nothing" if inputs is None else orjson.dumps(inputs).decode()[:80]
        raise AiRunError(5006, f'Error: the inputs of {model} are {{"text": string | string[], '
                               f'"pooling"?: "mean" | "cls"}}, got {got}')
    text, pooling = inputs["text"], inputs.get("pooling", "mean")
    try:
        with _EMBEDDING:
            data = embed(model, [text] if isinstance(text, str) else text, pooling)
    except (ModelNotPulled, ModelDamaged) as exc:
        raise AiRunError(5007, f"No such model {model} or task: {exc.message}") from None
    except BadEmbedInput as exc:
        raise AiRunError(5006, f"Error: {exc.message}") from None
    return {"shape": list(data.shape), "data": data, "pooling": pooling}
