"""Binding and running the server: loopback unless a token guards it, clean stop on SIGINT/SIGTERM.

The socket is bound before uvicorn starts, so a port in use or an unknown host is a clear error,
``--port 0`` picks a free port, and the address printed is the one really bound.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import signal
import socket
import threading
from collections.abc import Callable
from typing import Any

import uvicorn

from ..errors import VcliError
from .app import MAX_BODY_BYTES, create_app, local_catalog
from .delay import with_apply_delay

BACKLOG = 1024  # connections waiting to be accepted: a test runner's Worker makes 200 calls at once
# uvicorn's warnings for each WebSocket attempt of Miniflare's proxy client (answered 426)
_UPGRADE_WARNINGS = ("Unsupported upgrade request.", "No supported WebSocket library detected.")


class _Quiet(logging.Filter):
    """Drops what must not be logged: the WebSocket warnings, and a ``token=`` in a logged URL."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.getMessage().startswith(_UPGRADE_WARNINGS):
            return False
        if record.args and any("token=" in str(a) for a in record.args):
            record.args = tuple(re.sub(r"token=[^&\s]*", "token=***", str(a)) if isinstance(a, str) else a
                                for a in record.args)
        return True


class ServeError(VcliError):
    """The server cannot start: an address it may not or cannot listen on."""


def resolve(host: str, port: int) -> list[tuple]:
    try:
        return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        raise ServeError(f'cannot listen on "{host}": {getattr(exc, "strerror", None) or exc}') from None


def is_loopback(infos: list[tuple]) -> bool:
    """True when every address of ``infos`` (from ``resolve``) is a loopback address."""
    return bool(infos) and all(
        ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]).is_loopback for info in infos
    )


def bind(infos: list[tuple], host: str, port: int) -> socket.socket:
    family, kind, proto, _, addr = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        raise ServeError(f"cannot listen on {host} port {port}: {exc.strerror or exc}") from None
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def serve(
    catalog: Any,
    *,
    host: str = "127.0.0.1",
    port: int = 8787,
    token: str | None = None,
    access_log: bool = False,
    max_body: int = MAX_BODY_BYTES,
    apply_delay: float = 0.0,
    apply_jitter: float = 0.0,
    notify: Callable[[str], None] = print,
) -> None:
    """Serve the Vectorize API over ``catalog`` (a ``Catalog`` or a data dir) on ``host:port``
    until SIGINT or SIGTERM, then return. With ``apply_delay`` (seconds, plus up to
    ``apply_jitter``), writes are acknowledged at once and applied that much later (``delay.py``)."""
    infos = resolve(host, port)
    if not token and not is_loopback(infos):
        raise ServeError(
            f"refusing to listen on {host} without --token: anyone who can reach it could read and "
            "change your indexes. Pass --token T (or set VCLI_SERVE_TOKEN); clients then send "
            "Authorization: Bearer T (wrangler: CLOUDFLARE_API_TOKEN=T)"
        )
    sock = bind(infos, host, port)
    import numpy  # noqa: F401 - loaded once here rather than inside the first query

    local = local_catalog(catalog)
    app = create_app(local, token=token, max_body=max_body)
    app.catalog, applier = with_apply_delay(local, apply_delay, apply_jitter, notify)
    config = uvicorn.Config(
        app, lifespan="off", log_level="warning", access_log=access_log, server_header=False,
        backlog=BACKLOG,
        timeout_graceful_shutdown=10,
        # Longer than clients keep idle connections (httpx 5 s, undici 4 s), so a client never
        # sends a request on a connection the server is closing at that moment.
        timeout_keep_alive=75,
    )
    if access_log:  # one line a request, without uvicorn's other info lines
        logging.getLogger("uvicorn.access").setLevel(logging.INFO)
    for name in ("uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).addFilter(_Quiet())
    server = uvicorn.Server(config)
    url = url_of(sock)
    notify(f"vcli serve: the Vectorize v2 API and the Workers binding for the indexes in {local.data_dir}")
    notify(f"Listening on {url} (Ctrl-C to stop)")
    notify(
        f"  wrangler: CLOUDFLARE_API_BASE_URL={url}/client/v4 CLOUDFLARE_API_TOKEN="
        f"{'<token>' if token else 'any'} wrangler vectorize list"
    )
    notify(f"  a Worker's binding: {url}/binding/<index>/ (vcli workers-config writes the configuration)")
    if apply_delay or apply_jitter:
        spread = f" to {apply_delay + apply_jitter:g}" if apply_jitter else ""
        notify(f"  writes are acknowledged at once and applied {apply_delay:g}{spread} s later, in order, "
               "as on the live service")
    # uvicorn stops on SIGINT/SIGTERM, then raises the signal again for the handler that was in
    # place before it. That handler only asks the server to stop (which also covers a signal that
    # comes before uvicorn's handlers are in place), so a stop is a clean return.
    def stop(_sig: int, _frame: object) -> None:
        server.should_exit = True

    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.run(sockets=[sock])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sock.close()
        if applier is not None:
            applier.stop()  # what is still kept is applied by the next server (or CLI write)
    notify("Stopped.")
