"""What both servers share over HTTP: a refusal and its one-line JSON answer, the request body read within its
limit, the app behind ``access.Guard`` with 404/405 answered as JSON, uvicorn's protocol answering
unparseable HTTP as JSON, and, for the load tests, ``GET /health`` and latency percentiles."""

from __future__ import annotations

import functools
import http
import json
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from .access import Guard


class _Refused(Exception):
    """A request the server cannot use: its HTTP status and the one line that says why."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def guarded_app(routes: list, info: dict[str, Any], *, token: str | None, rate_limit: float | None, close=None) -> Any:
    """A Starlette app of ``routes`` behind ``access.Guard`` (``token``, ``rate_limit``): a path or method
    it lacks (404, 405) is answered as JSON like every other error, naming the routes it has. The app's
    ``state`` is reachable from the guard: ``workbench`` (``info`` and the kind of authentication) and
    ``close`` (``close``, e.g. stopping a decode thread, or nothing)."""
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.responses import JSONResponse

    offered = ", ".join(f"{'POST' if 'POST' in (r.methods or ()) else 'GET'} {r.path}" for r in routes)

    async def http_error(request: Any, exc: Any) -> Any:
        detail = f"{request.method} {request.url.path}: {exc.detail}; this server has {offered}"
        return _error(JSONResponse, exc.status_code, detail, exc.headers)

    app = Starlette(routes=routes, exception_handlers={HTTPException: http_error})
    guard = Guard(app, token=token, rate_limit=rate_limit)
    guard.state = app.state
    app.state.workbench = dict(info, auth="bearer token" if token else "none (loopback only)")
    app.state.close = close or (lambda: None)
    return guard


def _require_int(name: str, value: Any, low: int, high: int | None = None) -> None:
    """``value`` must be an integer in [low, high]; otherwise one ``ValueError`` line naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        allowed = f">= {low}" if high is None else f"{low}-{high}"
        raise ValueError(f"{name} must be an integer {allowed} (got {value!r})")


@functools.cache
def _http_protocol() -> type:
    """uvicorn's h11 protocol, answering a request HTTP cannot parse (a bad Content-Length, a malformed
    chunk, a garbled request line or header) in this server's JSON shape, ``{"error": "..."}``, instead of
    uvicorn's plain text. Such a request never reaches the app, so the app cannot answer it; uvicorn
    funnels all of them into ``send_400_response``, the one method overridden here. The status is h11's
    hint (400, or 431 for headers over its limit); the connection closes, as uvicorn's own answer does.
    h11 is uvicorn's own dependency, so this works wherever uvicorn does (httptools need not be there)."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    CLIENT_ERRORS = {s.value for s in http.HTTPStatus if 400 <= s.value < 500}

    class JSONErrorH11Protocol(H11Protocol):
        def send_400_response(self, msg: str) -> None:
            cause = sys.exc_info()[1]  # uvicorn calls this inside ``except h11.RemoteProtocolError``
            hint = getattr(cause, "error_status_hint", 400)  # 431 for headers over h11's limit; 501 is made a 400
            status = http.HTTPStatus(hint) if hint in CLIENT_ERRORS else http.HTTPStatus.BAD_REQUEST
            detail = " ".join(str(cause or msg).split())[:200]
            body = json.dumps(
                {
                    "error": f"bad HTTP request ({detail}): send a valid request line and headers, a "
                    "numeric Content-Length or a well-formed chunked body"
                }
            ).encode()
            if self.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):  # no answer under way (else just close)
                headers = [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ]
                for event in (
                    h11.Response(status_code=status.value, headers=headers, reason=status.phrase.encode()),
                    h11.Data(data=body),
                    h11.EndOfMessage(),
                ):
                    self.transport.write(self.conn.send(event))
            self.transport.close()

    return JSONErrorH11Protocol


def _error(response_class: Any, status: int, message: str, headers: Any = None) -> Any:
    line = (str(message).strip().splitlines() or ["error"])[0][:500]
    return response_class({"error": line}, status_code=status, headers=headers)


async def _read_body(
    request: Any, limit: int, fix: str = "send fewer images per request (a .npy body takes 1 byte a pixel)"
) -> bytes:
    """The body, refused with a 413 past ``limit`` bytes (``fix`` says what to send instead): the header
    first, then counted while it streams, so a lying or absent Content-Length (chunked upload) cannot fill
    memory."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise _Refused(400, f"Content-Length {declared!r} is not a number") from None
        if size > limit:
            raise _Refused(413, f"body of {size} bytes is over this server's max_body_bytes={limit}: {fix}")
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise _Refused(413, f"body is over this server's max_body_bytes={limit}: {fix}")
        chunks.append(chunk)
    return b"".join(chunks)


def latency_percentiles(seconds: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99, mean and max of latencies given in seconds, in milliseconds (linear interpolation;
    NaN for no samples).

    Example:
        >>> latency_percentiles([i / 1000 for i in range(1, 101)])
        {'p50_ms': 50.5, 'p95_ms': 95.05, 'p99_ms': 99.01, 'mean_ms': 50.5, 'max_ms': 100.0}
        >>> latency_percentiles([])["p99_ms"]
        nan
    """
    keys = ("p50_ms", "p95_ms", "p99_ms", "mean_ms", "max_ms")
    if len(seconds) == 0:
        return dict.fromkeys(keys, float("nan"))
    ms = np.asarray(seconds, dtype=np.float64) * 1000
    values = [*np.percentile(ms, [50, 95, 99]), ms.mean(), ms.max()]
    return {k: round(float(v), 4) for k, v in zip(keys, values)}


def server_health(base: str, timeout_s: float, headers: dict[str, str], **client: Any) -> dict[str, Any] | None:
    """``GET /health`` of the server at ``base`` (None if it answers anything but JSON with 200); one line
    for no server there, or one that wants a token."""
    import httpx

    try:
        reply = httpx.get(base + "/health", timeout=timeout_s, headers=headers, **client)
        health = reply.json() if reply.status_code == 200 else None
    except (httpx.HTTPError, ValueError) as e:
        raise ConnectionError(
            f"No server answers at {base} ({type(e).__name__}): start it with workbench serve BUNDLE"
        ) from None
    if reply.status_code == 401:
        raise ConnectionError(f"{base} requires a token: pass token=... (--token, or $WORKBENCH_SERVE_TOKEN)")
    return health


def _reason(response: Any) -> str:
    try:
        return str(response.json()["error"])
    except (ValueError, KeyError, TypeError):
        return (response.text.strip().splitlines() or [""])[0][:200]
