"""Talking to Cloudflare's API: where it is, who we are, and how we behave on the wire.

``Client.call`` sends one request and returns the envelope's ``result``. It keeps one connection
open, paces requests under the account's rate limit (``Pacer``), and retries what is safe to
retry: any request the service answered with 429 (it did nothing; ``Retry-After`` is honoured),
and, for requests that may run twice without changing the outcome, 5xx answers, dropped
connections and bodies cut short. The service's own errors become ``RemoteError`` with their
code. The token is sent in a header and never appears in an error, a note or a repr.
"""

from __future__ import annotations

import email.utils
import http.client
import ipaddress
import random
import socket
import ssl
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple
from urllib.parse import quote, urlencode, urlsplit

import orjson

from ..errors import ConfigError, VcliError

USER_AGENT = "vcli"
TIMEOUT = 60.0  # seconds without an answer before a request counts as lost
ATTEMPTS = 8  # tries of one request, the first included
BACKOFF = (0.25, 20.0)  # the first retry's delay and the longest, in seconds (doubling, jittered)
IDLE_RECONNECT = 4.0  # a connection idle this long is reopened first (servers close idle ones)


class RemoteError(VcliError):
    """The service refused a request: its error code and message, as it said them."""

    def __init__(self, code: int, message: str, status: int):
        super().__init__(f"{message} (code {code})")
        self.code = code
        self.http_status = status
        self.service_text = message


class Unreachable(VcliError):
    """No answer from the service after every retry."""

    code = 1002
    http_status = 503


class Target(NamedTuple):
    """Where --remote goes: the API's base URL, the account and the token."""

    base_url: str
    account_id: str | None
    token: str | None = None
    rate: tuple[int, float] = (1200, 300.0)

    def __repr__(self) -> str:  # never the token
        return f"Target(base_url={self.base_url!r}, account_id={self.account_id!r})"

    @classmethod
    def from_settings(cls, settings) -> Target:
        base = settings.value("api_base_url")
        check_base_url(base)
        token = settings.value("api_token")
        if token is None and not _loopback(urlsplit(base).hostname or ""):
            raise ConfigError(
                "--remote needs a Cloudflare API token: set CLOUDFLARE_API_TOKEN (a token with "
                "Vectorize edit rights), or api_token in the user config file"
            )
        return cls(base, settings.value("account_id"), token, settings.value("remote_rate"))


def check_base_url(base: str) -> None:
    """HTTPS, or plain HTTP to this machine only: a token must not cross a network in clear."""
    parts = urlsplit(base)
    if parts.scheme == "https":
        return
    if parts.scheme == "http" and _loopback(parts.hostname or ""):
        return
    raise ConfigError(
        f"refusing to send requests to {parts.scheme}://{parts.hostname or ''}: plain http is only "
        "for this machine (127.0.0.1, ::1, localhost); use an https:// CLOUDFLARE_API_BASE_URL"
    )


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Pacer:
    """At most ``limit`` requests in any ``period`` seconds (a sliding window of send times, with a
    small margin so the far side never counts one too many), and a pause everyone honours after a
    429."""

    def __init__(self, limit: int, period: float, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self.limit, self.period = limit, period * 1.02 + 0.01
        self.sent: deque[float] = deque()
        self.resume_at = 0.0
        self.clock, self.sleep = clock, sleep

    def wait_turn(self) -> None:
        while True:
            now = self.clock()
            while self.sent and self.sent[0] <= now - self.period:
                self.sent.popleft()
            wait = max(self.resume_at - now,
                       self.sent[0] + self.period - now if len(self.sent) >= self.limit else 0.0)
            if wait <= 0:
                self.sent.append(now)
                return
            self.sleep(wait)

    def pause(self, seconds: float) -> None:
        self.resume_at = max(self.resume_at, self.clock() + seconds)


class _Lost(Exception):
    """The request may or may not have reached the service (dropped, timed out, cut short)."""


class Client:
    """Requests to ``{base}/accounts/{account}/vectorize/v2``: ``call(method, path, ...)``."""

    def __init__(self, target: Target, *, sleep: Callable[[float], None] = time.sleep):
        self.target = target
        parts = urlsplit(target.base_url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or ""
        self._port = parts.port
        self._prefix = parts.path.rstrip("/")
        self._conn: http.client.HTTPConnection | None = None
        self._last_used = 0.0
        self._sleep = sleep
        self.pacer = Pacer(*target.rate, sleep=sleep)
        self._account = target.account_id
        self.requests = 0  # sent, retries included
        self.bytes_sent = 0

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -- the account -------------------------------------------------------------------------
    def account(self) -> str:
        """``CLOUDFLARE_ACCOUNT_ID``, else the one account the token can see (as wrangler does)."""
        if self._account is None:
            found = self.request("GET", "/accounts", params={"per_page": "50"})
            if not isinstance(found, list) or not found:
                raise ConfigError("the API token can see no Cloudflare account; set CLOUDFLARE_ACCOUNT_ID")
            if len(found) > 1:
                names = ", ".join(f"{a.get('name')} ({a.get('id')})" for a in found[:5])
                raise ConfigError(f"the API token can see {len(found)} accounts ({names}); "
                                  "set CLOUDFLARE_ACCOUNT_ID to the one to use")
            self._account = str(found[0]["id"])
        return self._account

    def call(self, method: str, path: str, *, json: Any = None, ndjson: bytes | None = None,
             params: Mapping[str, str] | None = None, idempotent: bool = True) -> Any:
        """One Vectorize request (``path`` under ``/vectorize/v2``); its ``result``."""
        return self.request(method, f"/accounts/{quote(self.account(), safe='')}/vectorize/v2{path}",
                            json=json, ndjson=ndjson, params=params, idempotent=idempotent)

    # -- the wire ----------------------------------------------------------------------------
    def request(self, method: str, path: str, *, json: Any = None, ndjson: bytes | None = None,
                params: Mapping[str, str] | None = None, idempotent: bool = True) -> Any:
        url = self._prefix + path + (f"?{urlencode(params)}" if params else "")
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if self.target.token:
            headers["Authorization"] = f"Bearer {self.target.token}"
        body = None
        if json is not None:
            body, headers["Content-Type"] = orjson.dumps(json, option=orjson.OPT_SERIALIZE_NUMPY), "application/json"
        elif ndjson is not None:
            body, headers["Content-Type"] = ndjson, "application/x-ndjson"
        why = ""
        for attempt in range(ATTEMPTS):
            if attempt:
                self._sleep(_backoff(attempt))
            self.pacer.wait_turn()
            try:
                status, raw, retry_after = self._send(method, url, body, headers)
            except _Lost as exc:
                why = str(exc)
                if idempotent:
                    continue
                raise Unreachable(
                    f"{why} during {method} {path}; it may or may not have been done: check with "
                    "`vcli ... --remote` before running it again"
                ) from None
            except ssl.SSLError as exc:  # retrying will not mend a certificate
                raise Unreachable(f"cannot talk to {self._host} over TLS: {exc.reason or exc}") from None
            except OSError as exc:  # not sent at all (refused, no route, DNS): safe to retry
                why = f"cannot reach {self._host}: {exc.strerror or exc}"
                continue
            if status == 429 or (status in (502, 503, 504) and retry_after is not None):
                why = f"the service answered {status} (too many requests)" if status == 429 else \
                    f"the service answered {status}"
                self.pacer.pause(retry_after if retry_after is not None else _backoff(attempt + 1))
                if status == 429 or idempotent:
                    continue
            elif status >= 500 and idempotent:
                why = f"the service answered {status}"
                continue
            return _result(status, raw)
        raise Unreachable(f"no answer from the service for {method} {path} after {ATTEMPTS} tries ({why})")

    def _send(self, method: str, url: str, body: bytes | None, headers: dict) -> tuple[int, bytes, float | None]:
        now = time.monotonic()
        if self._conn is not None and now - self._last_used > IDLE_RECONNECT:
            self.close()
        if self._conn is None:
            if self._https:
                self._conn = http.client.HTTPSConnection(self._host, self._port, timeout=TIMEOUT,
                                                         context=ssl.create_default_context())
            else:
                self._conn = http.client.HTTPConnection(self._host, self._port, timeout=TIMEOUT)
            try:
                self._conn.connect()
            except OSError:  # nothing was sent
                self.close()
                raise
        self.requests += 1
        self.bytes_sent += len(body or b"")
        try:
            self._conn.request(method, url, body=body, headers=headers)
            resp = self._conn.getresponse()
            raw = resp.read()
        except (TimeoutError, http.client.HTTPException, OSError) as exc:
            self.close()
            raise _Lost(_lost_reason(exc)) from None
        finally:
            self._last_used = time.monotonic()
        if resp.will_close:
            self.close()
        return resp.status, raw, _retry_after(resp.getheader("Retry-After"))


def _lost_reason(exc: BaseException) -> str:
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return f"no answer within {TIMEOUT:g} s"
    if isinstance(exc, http.client.IncompleteRead):
        return "the answer was cut short"
    return "the connection dropped"


def _backoff(attempt: int) -> float:
    """Full jitter: anywhere up to the doubled delay, so many clients do not retry in step."""
    first, most = BACKOFF
    return random.uniform(first / 2, min(most, first * 2 ** (attempt - 1)))


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, min(float(value), 300.0))
    except ValueError:
        pass
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, min(moment.timestamp() - time.time(), 300.0))


def _result(status: int, raw: bytes) -> Any:
    """The ``result`` of an answer, or its first error as a ``RemoteError``."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        body = None
    if not isinstance(body, dict):
        head = raw[:120].decode("utf-8", "replace").strip() or "(empty)"
        raise RemoteError(status if status >= 400 else 1000,
                          f"the service answered {status} with a body that is not its JSON envelope: {head}",
                          status)
    if body.get("success") is True and status < 400:
        return body.get("result")
    errors = body.get("errors")
    first = errors[0] if isinstance(errors, list) and errors and isinstance(errors[0], dict) else {}
    given = first.get("code")
    code = given if isinstance(given, int) else status
    message = str(first.get("message") or f"the service answered {status}")
    if code in (10000, 9106, 9109) or status in (401, 403):
        message += " (is CLOUDFLARE_API_TOKEN a valid token with Vectorize rights for this account?)"
    raise RemoteError(code, message, status)
