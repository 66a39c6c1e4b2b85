"""An HTTP proxy for the tests of ``--remote``, push and pull: it sits between vcli and ``vcli serve``
(the stand-in for the live service) and, by a plan, answers some requests badly.

``plan(n, method, path)`` gets the request's number (from 1) and says what to do with it:

- ``None``: forward it and pass the answer back;
- ``"429"``: answer 429 with ``Retry-After: 1`` without forwarding (the service did nothing);
- ``"500"``: forward it, then answer 500 (the service did it, the client cannot know);
- ``"502"`` / ``"503"``: answer that status without forwarding;
- ``"drop"``: forward it, then close the connection without an answer;
- ``"slow"``: wait a second, then forward it;
- ``"truncate"``: forward it, then send half of the answer's body and close;
- ``("refuse", code, message)``: answer 400 with that Vectorize error without forwarding.

Every request is logged as ``(arrival time, method, path, fault, body)``.
"""

from __future__ import annotations

import http.client
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import orjson


class FaultProxy:
    def __init__(self, upstream: str, plan=None):
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname, parts.port)
        self.plan = plan or (lambda n, method, path: None)
        self.log: list[tuple[float, str, str, object, bytes]] = []
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def setup(self):
                super().setup()  # headers and body go in two writes: no Nagle delay between them
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def do_GET(self):
                proxy.handle(self)

            do_POST = do_DELETE = do_PUT = do_GET

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def requests(self, path_part: str = "", method: str | None = None) -> list:
        with self.lock:
            return [r for r in self.log if path_part in r[2] and (method is None or r[1] == method)]

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        body = h.rfile.read(int(h.headers.get("Content-Length") or 0))
        with self.lock:
            n = len(self.log) + 1
            fault = self.plan(n, h.command, h.path)
            self.log.append((time.monotonic(), h.command, h.path, fault, body))
        if fault == "429":
            return _answer(h, 429, _error(971, "Please wait and consider throttling your request speed"),
                           {"Retry-After": "1"})
        if fault in ("502", "503"):
            return _answer(h, int(fault), b"<html>bad gateway</html>", {"Content-Type": "text/html"})
        if isinstance(fault, tuple) and fault[0] == "refuse":
            return _answer(h, 400, _error(fault[1], fault[2]))
        if fault == "slow":
            time.sleep(1.0)
        status, data, ctype = self.forward(h, body)
        if fault == "500":
            return _answer(h, 500, _error(1000, "internal error"))
        if fault == "drop":
            h.close_connection = True
            return None
        if fault == "truncate":
            h.send_response(status)
            h.send_header("Content-Type", ctype)
            h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            h.wfile.write(data[: len(data) // 2])
            h.wfile.flush()
            h.close_connection = True
            return None
        return _answer(h, status, data, {"Content-Type": ctype})

    def forward(self, h: BaseHTTPRequestHandler, body: bytes) -> tuple[int, bytes, str]:
        conn = http.client.HTTPConnection(*self.upstream, timeout=120)
        try:
            headers = {k: v for k, v in h.headers.items() if k.lower() not in ("host", "connection")}
            conn.request(h.command, h.path, body=body, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.read(), resp.getheader("Content-Type") or "application/json"
        finally:
            conn.close()


def _error(code: int, message: str) -> bytes:
    return orjson.dumps({"success": False, "errors": [{"code": code, "message": message}],
                         "messages": [], "result": None})


def _answer(h: BaseHTTPRequestHandler, status: int, data: bytes, headers: dict | None = None) -> None:
    h.send_response(status)
    for k, v in {"Content-Type": "application/json", **(headers or {})}.items():
        h.send_header(k, v)
    h.send_header("Content-Length", str(len(data)))
    h.end_headers()
    h.wfile.write(data)


def busiest_window(times: list[float], period: float) -> int:
    """The most requests that arrived within any ``period`` seconds."""
    times = sorted(times)
    most = j = 0
    for i, t in enumerate(times):
        while times[j] <= t - period:
            j += 1
        most = max(most, i - j + 1)
    return most
