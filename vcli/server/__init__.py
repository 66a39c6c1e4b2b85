"""``vcli serve``: the Cloudflare Vectorize v2 REST API over local indexes.

Any client of the Vectorize REST API (wrangler, the ``cloudflare`` Python SDK, plain HTTP) works
against the indexes of one data dir by changing its base URL. The server is a front end like the
CLI: it calls the same engine, so the CLI and the server see the same indexes, and writes go through
the engine's writer lock.

    from vcli.server import create_app      # an ASGI app (Starlette request/response types)
    app = create_app("/tmp/indexes", token=None)

``app`` holds the routes, the Cloudflare envelope and the error mapping; ``run`` binds a socket
and serves the app with uvicorn until SIGINT or SIGTERM.
"""

from __future__ import annotations

from .app import MAX_BODY_BYTES, VectorizeApp, create_app

__all__ = ["MAX_BODY_BYTES", "VectorizeApp", "create_app"]
