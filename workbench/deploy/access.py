"""Who may use a served model, and how often: a bearer token and a per-client request rate, in front of
either server (images or a language model) as one ASGI middleware.

- A server bound to anything but loopback (127.0.0.0/8, ::1, localhost) must have a token (``--token``
  or the ``WORKBENCH_SERVE_TOKEN`` environment variable); with a token, on any address, every request
  needs ``Authorization: Bearer <token>``, or gets a 401. The token is compared in constant time
  (``hmac.compare_digest``) and never printed or logged.
- request headers over 16 KiB get a 431 (h11 refuses a head that size only when it arrives in pieces).
- ``rate_limit`` requests a second per client address (a token bucket holding ``rate_limit`` requests,
  at least 1): beyond it a 429 with ``Retry-After``.

Example:
    >>> check_token("0.0.0.0", None, environ={})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: binding to 0.0.0.0 lets other machines reach the model, so it needs a token: pass --token ...
    >>> check_token("127.0.0.1", None, environ={}) is None
    True
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import math
import os
import time
from collections.abc import Mapping
from typing import Any

TOKEN_ENV = "WORKBENCH_SERVE_TOKEN"
MIN_TOKEN_CHARS = 16
MAX_HEADER_BYTES = 16 * 1024  # h11's own limit on a request head, which uvicorn enforces only on one in pieces
MAX_TRACKED_CLIENTS = 10_000  # rate-limit buckets kept; the idlest are forgotten past this
MAKE_TOKEN = 'python -c "import secrets; print(secrets.token_urlsafe(32))"'


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only.

    Example:
        >>> [is_loopback(h) for h in ("127.0.0.2", "localhost", "::1", "0.0.0.0", "10.1.2.3")]
        [True, True, True, False, False]
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_token(host: str, token: str | None, environ: Mapping[str, str] | None = None) -> str | None:
    """The token to require (``token``, else ``$WORKBENCH_SERVE_TOKEN``, else None), refused with one line
    when ``host`` is not loopback and there is none, or when it is too short to resist guessing."""
    environ = os.environ if environ is None else environ
    token = token or environ.get(TOKEN_ENV) or None
    if token is None:
        if not is_loopback(host):
            raise ValueError(
                f"binding to {host} lets other machines reach the model, so it needs a token: pass --token "
                f"(token=...) or set {TOKEN_ENV}, e.g. to the output of {MAKE_TOKEN}"
            )
        return None
    if len(token) < MIN_TOKEN_CHARS or not token.isprintable() or any(c.isspace() for c in token):
        raise ValueError(
            f"the token must be at least {MIN_TOKEN_CHARS} printable characters without spaces: "
            f"make one with {MAKE_TOKEN}"
        )
    return token


class Guard:
    """ASGI middleware: the bearer token and the per-client rate, checked before the app sees a request.
    Answers in the servers' shape, ``{"error": "<one line>"}``."""

    def __init__(self, app: Any, *, token: str | None = None, rate_limit: float | None = None):
        if rate_limit is not None and not (isinstance(rate_limit, (int, float)) and 0 < rate_limit < math.inf):
            raise ValueError(f"rate_limit must be a number of requests a second > 0, or None (got {rate_limit!r})")
        self.app = app
        self.expected = None if token is None else token.encode()
        self.rate = rate_limit
        self.burst = max(1.0, float(rate_limit or 1))
        self.buckets: dict[str, tuple[float, float]] = {}  # client -> (tokens left, when counted)
        self.refused = {"unauthorized": 0, "rate_limited": 0, "headers_too_large": 0}

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = scope.get("headers") or []
        size = sum(len(name) + len(value) + 4 for name, value in headers)  # ": " and CRLF
        if size > MAX_HEADER_BYTES:  # h11 counts only a head that arrives in pieces; one read escapes it
            self.refused["headers_too_large"] += 1
            return await _answer(
                send,
                431,
                f"request headers of {size:,} bytes are over this server's {MAX_HEADER_BYTES:,}: send fewer",
                [],
            )
        if self.expected is not None:
            given = dict(headers).get(b"authorization", b"")
            scheme, _, credentials = given.partition(b" ")
            # The scheme is case-insensitive (RFC 9110); the token is compared in constant time.
            if scheme.lower() != b"bearer" or not hmac.compare_digest(credentials, self.expected):
                self.refused["unauthorized"] += 1
                why = "no Authorization header" if not given else "a wrong token"
                return await _answer(
                    send,
                    401,
                    f"{why}: send Authorization: Bearer <the server's token>",
                    [(b"www-authenticate", b'Bearer realm="workbench"')],
                )
        if self.rate is not None:
            wait = self._take(scope.get("client"))
            if wait > 0:
                self.refused["rate_limited"] += 1
                return await _answer(
                    send,
                    429,
                    f"over this server's rate limit of {self.rate:g} requests a second per client: retry in "
                    f"{wait:.2f} s",
                    [(b"retry-after", str(max(1, math.ceil(wait))).encode())],
                )
        return await self.app(scope, receive, send)

    def _take(self, client: Any) -> float:
        """Take one request from the client's bucket: 0 if there was one, else the seconds until there is."""
        key = client[0] if client else "?"
        now = time.monotonic()
        left, then = self.buckets.get(key, (self.burst, now))
        left = min(self.burst, left + (now - then) * self.rate)
        if left < 1:
            self.buckets[key] = (left, now)
            return (1 - left) / self.rate
        self.buckets[key] = (left - 1, now)
        if len(self.buckets) > MAX_TRACKED_CLIENTS:
            for stale in sorted(self.buckets, key=lambda k: self.buckets[k][1])[: MAX_TRACKED_CLIENTS // 10]:
                del self.buckets[stale]
        return 0.0


async def _answer(send: Any, status: int, message: str, headers: list[tuple[bytes, bytes]]) -> None:
    body = json.dumps({"error": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers],
        }
    )
    await send({"type": "http.response.body", "body": body})
