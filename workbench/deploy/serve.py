"""Serve a bundle over HTTP on this machine, and load-test the endpoint.

``serve(BUNDLE)`` (``workbench serve BUNDLE``) runs a small Starlette app under uvicorn on 127.0.0.1;
``serving(BUNDLE)`` runs the same app in a background thread for a notebook or a test and yields its
URL; ``load_test(url)`` sends concurrent requests and reports latency percentiles and throughput.

Endpoints:

``GET /health``
    ``{"status": "ok", "format": "onnx", "input_shape": [C, H, W], "classes": [...], ...}``
``GET /card``
    the bundle's model card.
``POST /predict``
    raw pixels 0-255, as the dataset stores them, in one of three bodies:

    - ``application/json``: ``{"inputs": nested list}``, shape (N, C, H, W) or one (C, H, W);
    - ``image/png``, ``image/jpeg`` (any ``image/*`` Pillow reads): one image of exactly W x H pixels;
    - ``application/x-npy``: a ``numpy.save`` array, uint8, float32 or float64, (N, C, H, W) or (C, H, W).

    The answer is ``{"predictions": [int, ...], "labels": [str, ...], "probabilities": [[...], ...],
    "logits": [[...], ...]}``, one row per image.

A request the server cannot use gets a 4xx and ``{"error": "<one line>"}``: 400 for a body that is
not what it says (bad JSON, JSON nested too deep, not an image, not a .npy, wrong dtype) and for a
request HTTP cannot parse (a bad Content-Length, a malformed chunk, a garbled request line: see
``_http_protocol``), 413 for a body over ``max_body_bytes`` or a batch over ``max_batch``, 415 for
another Content-Type, 422 for the wrong shape, image size or pixel range. A failure inside the model is
a 500 with one line; the server keeps serving either way. Inference runs in a worker thread, so the
event loop keeps taking requests while a batch runs (an ONNX Runtime session's ``run`` is thread-safe).

Example:
    >>> latency_percentiles([0.010, 0.020, 0.030, 0.040])["p50_ms"]
    25.0
    >>> with serving("bundle/") as url:  # doctest: +SKIP
    ...     load_test(url, concurrency=4, requests=200)["p95_ms"]
    3.1
"""

from __future__ import annotations

import contextlib
import errno
import io
import ipaddress
import json
import logging
import math
import os
import socket
import ssl
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from .._errors import one_line, require_modules, root_cause
from .access import check_token
from .bundle import Bundle, load_bundle
from .web import (
    _error,
    _http_protocol,
    _read_body,
    _reason,
    _Refused,
    _require_int,
    guarded_app,
    latency_percentiles,
    server_health,
)

SERVE_PIP = "pip install starlette uvicorn httpx"
NPY = "application/x-npy"
ACCEPTED = f'application/json ({{"inputs": pixels}}), image/png or image/jpeg (one image), or {NPY}'
NPY_DTYPES = {"u1": "uint8", "f4": "float32", "f8": "float64"}  # numpy dtype code (no byte order) -> name
JSON_BYTES_PER_VALUE = 6  # "255, " plus brackets: the default body limit fits max_batch images as JSON
HEADROOM = 64 * 1024
BACKLOG = 2048  # uvicorn's default listen backlog

log = logging.getLogger(__name__)

__all__ = ["load_test", "make_app", "serve", "serving"]


def _as_bundle(bundle_or_path: Bundle | str | os.PathLike) -> Bundle:
    return bundle_or_path if isinstance(bundle_or_path, Bundle) else load_bundle(bundle_or_path)


def default_max_body_bytes(input_shape: Sequence[int], max_batch: int) -> int:
    """Enough for ``max_batch`` images sent as integer JSON, and never under 1 MiB.

    Example:
        >>> default_max_body_bytes((3, 32, 32), 256)
        4784128
        >>> default_max_body_bytes((1, 8, 8), 4)
        1048576
    """
    return max(2**20, max_batch * math.prod(input_shape) * JSON_BYTES_PER_VALUE + HEADROOM)


def make_app(
    bundle: Bundle | str | os.PathLike,
    *,
    fmt: str = "auto",
    threads: int = 1,
    max_batch: int | None = None,
    max_body_bytes: int | None = None,
    token: str | None = None,
    rate_limit: float | None = None,
    **lm_options: Any,
) -> Any:
    """An ASGI app serving ``bundle`` (a ``Bundle`` or its folder): ``GET /health``, ``GET /card``,
    ``POST /predict`` (see the module docstring for bodies, answers and errors); for a language-model
    bundle, ``POST /generate`` (``lm_serve.make_lm_app``, which takes ``lm_options``, ``max_batch``: rows
    decoded together, default 16). ``token`` and ``rate_limit``: ``access.Guard``, in front of every route.

    ``fmt`` picks the file (``onnx``, ``torch-export``; ``auto`` takes ONNX where there is one);
    ``threads`` is ONNX Runtime's intra-op thread count (a ``torch.export`` program uses torch's own,
    ``torch.set_num_threads``, which ``serve`` sets). The model runs once on a zero batch here, so a
    bundle that cannot serve fails now, not on the first request. ``max_body_bytes`` defaults to
    ``default_max_body_bytes(bundle.input_shape, max_batch)``.

    Example:
        >>> app = make_app("bundle/", fmt="onnx", max_batch=64)  # doctest: +SKIP
        >>> import uvicorn; uvicorn.run(app, port=8000)  # doctest: +SKIP
    """
    require_modules(["starlette"], "Serving a bundle", SERVE_PIP)
    bundle = _as_bundle(bundle)
    if bundle.task == "lm":
        from .lm_serve import make_lm_app

        batch = {} if max_batch is None else {"max_batch": max_batch}
        body = {} if max_body_bytes is None else {"max_body_bytes": max_body_bytes}
        return make_lm_app(bundle, threads=threads, token=token, rate_limit=rate_limit, **batch, **body, **lm_options)
    if lm_options:
        raise ValueError(
            f"{', '.join(lm_options)}: options of a language-model server, and {bundle.path} holds an image model"
        )
    max_batch = 256 if max_batch is None else max_batch
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import ClientDisconnect
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    _require_int("threads", threads, 1)
    _require_int("max_batch", max_batch, 1)
    shape = tuple(int(d) for d in bundle.input_shape)
    limit = default_max_body_bytes(shape, max_batch) if max_body_bytes is None else int(max_body_bytes)
    if limit < 1:
        raise ValueError(f"max_body_bytes must be >= 1 (got {max_body_bytes!r})")
    if fmt == "auto" and bundle.formats:
        fmt = bundle.formats[0]
    model = bundle.predictor(fmt, threads=threads)
    try:
        model(bundle.preprocess(torch.zeros((1, *shape), dtype=torch.uint8)))
    except Exception as e:
        raise RuntimeError(
            f"{bundle.path} ({fmt}) fails on a zero batch of shape {(1, *shape)}: {root_cause(e)}; "
            "check the card's input.shape matches the model"
        ) from e
    classes = bundle.classes
    info = {
        "status": "ok",
        "format": fmt,
        "input_shape": list(shape),
        "classes": classes,
        "threads": threads if fmt == "onnx" else torch.get_num_threads(),
        "max_batch": max_batch,
        "max_body_bytes": limit,
        "accepts": ["application/json", "image/png", "image/jpeg", NPY],
    }

    def answer(body: bytes, kind: str) -> dict[str, Any]:
        # Decoding runs here, in the worker thread, with the model: a big JSON body takes a while to parse.
        pixels = _decode(body, kind, shape, max_batch)
        logits = model(bundle.preprocess(torch.from_numpy(pixels))).detach().to("cpu", torch.float32)
        if logits.ndim != 2 or logits.shape[0] != pixels.shape[0]:
            raise RuntimeError(f"the model returned shape {tuple(logits.shape)} for {pixels.shape[0]} images")
        probabilities = torch.softmax(logits, dim=1)
        predictions = logits.argmax(dim=1).tolist()
        labels = [classes[i] if i < len(classes) else str(i) for i in predictions]
        return {
            "predictions": predictions,
            "labels": labels,
            "probabilities": probabilities.tolist(),
            "logits": logits.tolist(),
        }

    async def predict(request: Any) -> Any:
        try:
            kind = _content_kind(request.headers.get("content-type"))
            body = await _read_body(request, limit)
            return JSONResponse(await run_in_threadpool(answer, body, kind))
        except _Refused as e:
            return _error(JSONResponse, e.status, e.message)
        except ClientDisconnect:  # the client left mid-upload: nobody reads an answer, and it is no server error
            return _error(JSONResponse, 400, "the client disconnected before the body arrived")
        except Exception as e:  # the model or a bug: say so in one line and keep serving
            log.exception("POST /predict failed")
            return _error(JSONResponse, 500, f"inference failed: {one_line(e)}")

    async def health(request: Any) -> Any:
        return JSONResponse(info)

    async def card(request: Any) -> Any:
        return JSONResponse(bundle.card)

    routes = [Route("/health", health), Route("/card", card), Route("/predict", predict, methods=["POST"])]
    return guarded_app(routes, dict(info, bundle=str(bundle.path)), token=token, rate_limit=rate_limit)


def _content_kind(content_type: str | None) -> str:
    media = (content_type or "").split(";")[0].strip().lower()
    if media == "application/json" or media.endswith("+json"):
        return "json"
    if media == NPY:
        return "npy"
    if media.startswith("image/"):
        return "image"
    shown = f"Content-Type {media!r}" if media else "no Content-Type"
    raise _Refused(415, f"{shown} is not served: send {ACCEPTED}")


def _decode(body: bytes, kind: str, shape: tuple[int, ...], max_batch: int) -> np.ndarray:
    """A request body -> float32 pixels (N, C, H, W), checked; ``_Refused`` says what is wrong."""
    if kind == "json":
        pixels = _from_json(body, shape)
    elif kind == "npy":
        pixels = _from_npy(body)
    else:
        pixels = _from_image(body, shape)
    if pixels.ndim == len(shape) and tuple(pixels.shape) == shape:
        pixels = pixels[None]
    if pixels.ndim != len(shape) + 1 or tuple(pixels.shape[1:]) != shape:
        raise _Refused(
            422,
            f"inputs have shape {tuple(pixels.shape)}; this model takes (N, {', '.join(map(str, shape))}) or {shape}",
        )
    if pixels.shape[0] == 0:
        raise _Refused(422, f"inputs hold no images: send shape (N, {', '.join(map(str, shape))}) with N >= 1")
    if pixels.shape[0] > max_batch:
        raise _Refused(413, f"batch of {pixels.shape[0]} images is over this server's max_batch={max_batch}: split it")
    if pixels.dtype != np.uint8:
        inside = (pixels >= 0) & (pixels <= 255)  # False for NaN too
        if not inside.all():
            bad = pixels[~inside].flat[0]
            raise _Refused(422, f"pixel values must be raw pixels in [0, 255] (got {bad}); the server normalises them")
    return np.array(pixels, dtype=np.float32, order="C")  # a copy: a .npy body's buffer is read-only


def _from_json(body: bytes, shape: tuple[int, ...]) -> np.ndarray:
    block = f"(N, {', '.join(map(str, shape))})"
    try:
        doc = json.loads(body)
    except json.JSONDecodeError as e:
        raise _Refused(400, f"body is not valid JSON ({e.msg} at character {e.pos})") from None
    except UnicodeDecodeError:
        raise _Refused(400, "body is not valid JSON (not UTF-8 text)") from None
    except RecursionError:  # a body of "[[[[..." thousands deep: the client's mistake, not the server's
        raise _Refused(
            400,
            f'JSON body is nested too deep to parse: send {{"inputs": ...}} with pixels nested '
            f"{len(shape) + 1} lists deep, {block}",
        ) from None
    if not isinstance(doc, dict) or "inputs" not in doc:
        raise _Refused(400, 'JSON body must be an object {"inputs": [...]} of raw pixels 0-255')
    inputs = doc["inputs"]
    if not isinstance(inputs, list):
        raise _Refused(400, f'wrong dtype: "inputs" must be a nested list of numbers 0-255, not {_json_type(inputs)}')
    # Walk the lists level by level: numpy would quietly read true as 1 and make an object array of
    # ragged rows; this also gives the shape without a second pass.
    level, dims = [inputs], []
    while level and all(isinstance(x, list) for x in level):
        if len(dims) > len(shape):  # deeper than (N, C, H, W) cannot be right, and numpy stops at 64 dimensions
            raise _Refused(
                422, f"inputs are nested more than {len(shape) + 1} lists deep; this model takes {block} or {shape}"
            )
        n = len(level[0])
        if any(len(x) != n for x in level):
            raise _Refused(
                422, f"inputs are ragged: lists at depth {len(dims) + 1} differ in length; send one (N, C, H, W) block"
            )
        dims.append(n)
        level = [y for x in level for y in x]
    if any(isinstance(x, list) for x in level):
        raise _Refused(
            422, f"inputs are ragged: depth {len(dims) + 1} mixes lists and numbers; send one (N, C, H, W) block"
        )
    numbers_only = object()  # a sentinel: the first non-number may be JSON null, i.e. None
    bad = next((v for v in level if type(v) not in (int, float)), numbers_only)  # bool is an int subclass
    if bad is not numbers_only:
        raise _Refused(400, f"wrong dtype: inputs must be numbers 0-255, got {_json_type(bad)}")
    try:
        return np.array(level, dtype=np.float64).reshape(dims)
    except OverflowError:
        raise _Refused(
            422, "pixel values must be raw pixels in [0, 255] (got a number too large for a float)"
        ) from None


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    if value is None:
        return "null"
    if isinstance(value, str):
        return f"the string {value[:20]!r}"
    return "an object" if isinstance(value, dict) else type(value).__name__


def _from_npy(body: bytes) -> np.ndarray:
    from numpy.lib import format as npy

    stream = io.BytesIO(body)
    try:
        version = npy.read_magic(stream)
        if version == (1, 0):
            dims, fortran, dtype = npy.read_array_header_1_0(stream)
        elif version == (2, 0):
            dims, fortran, dtype = npy.read_array_header_2_0(stream)
        else:
            raise ValueError(f".npy version {version} (send 1.0 or 2.0, numpy.save's)")
    except (ValueError, EOFError, OSError, SyntaxError) as e:
        raise _Refused(400, f"body is not a .npy array ({one_line(e)}): write it with numpy.save") from None
    code = dtype.str.lstrip("<>|=")
    if dtype.fields is not None or code not in NPY_DTYPES:
        raise _Refused(400, f"wrong dtype: .npy array is {dtype}; send {', '.join(NPY_DTYPES.values())}")
    # Read the header's sizes against the bytes before touching them: a tiny body must not make the
    # server allocate a huge array.
    expected = math.prod(dims) * dtype.itemsize
    if len(body) - stream.tell() != expected:
        raise _Refused(
            400,
            f"body is not a .npy array: its header says {tuple(dims)} {dtype} ({expected} bytes), "
            f"the data is {len(body) - stream.tell()} bytes",
        )
    flat = np.frombuffer(body, dtype=dtype, count=math.prod(dims), offset=stream.tell())
    return flat.reshape(dims, order="F" if fortran else "C")


def _from_image(body: bytes, shape: tuple[int, ...]) -> np.ndarray:
    from PIL import Image

    channels, height, width = shape
    modes = {1: "L", 3: "RGB"}
    if len(shape) != 3 or channels not in modes:
        raise _Refused(415, f"this model takes {shape} inputs, not an image: send JSON or {NPY}")
    try:
        image = Image.open(io.BytesIO(body))  # reads the header only: the size is checked before decoding
    except (OSError, ValueError, Image.DecompressionBombError, SyntaxError) as e:
        raise _Refused(400, f"body is not an image Pillow can read ({type(e).__name__}): send a PNG or JPEG") from None
    if image.size != (width, height):
        raise _Refused(
            422,
            f"image is {image.size[0]}x{image.size[1]} pixels; this model takes {width}x{height} "
            "(width x height): resize it first",
        )
    try:
        pixels = np.asarray(image.convert(modes[channels]), dtype=np.uint8)
    except (OSError, ValueError, SyntaxError) as e:
        raise _Refused(400, f"body is not an image Pillow can decode ({type(e).__name__}: truncated?)") from None
    return pixels[None] if channels == 1 else pixels.transpose(2, 0, 1)


def _url(host: str, port: int) -> str:
    connect = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    return f"http://[{connect}]:{port}" if ":" in connect else f"http://{connect}:{port}"


def _describe(info: dict[str, Any]) -> str:
    if info.get("task") == "lm":
        return f"language model, {info['batching']} batching of up to {info['max_batch']} requests"
    if info["format"] == "onnx":
        return f"onnx, ONNX Runtime {info['threads']} thread{'s' * (info['threads'] != 1)}"
    return f"{info['format']}, torch {info['threads']} thread{'s' * (info['threads'] != 1)}"


def _address(host: str, port: int) -> tuple[int, Any]:
    """(socket family, address) ``host:port`` binds to; one line naming ``--host`` when it resolves to none."""
    _require_int("port", port, 0, 65535)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET  # as uvicorn does: a name binds its IPv4 address
    try:
        return family, socket.getaddrinfo(host, port, family, socket.SOCK_STREAM, 0, socket.AI_PASSIVE)[0][4]
    except (OSError, UnicodeError, ValueError) as e:  # socket.gaierror is an OSError
        raise ValueError(
            f"--host {host!r} is not an address or a name this machine can resolve "
            f"({getattr(e, 'strerror', None) or e}): use 127.0.0.1 (this machine only) or 0.0.0.0 "
            "(all interfaces)"
        ) from None


def _bind(host: str, port: int) -> socket.socket:
    """A socket listening on ``host:port``, made before any model loads (uvicorn then serves on it), so a
    wrong host or a taken port is one line naming the flag to change, and nothing claims to serve before."""
    family, address = _address(host, port)
    # IPPROTO_TCP, not 0: asyncio turns Nagle's algorithm off (TCP_NODELAY) only on sockets that say they are
    # TCP. With proto 0, a streamed token waited for the client's delayed ACK: 40 ms on a kept-alive connection.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn: a restart need not wait out TIME_WAIT
        sock.bind(address)
        sock.listen(BACKLOG)  # now: a second server cannot take the port while the model loads
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise OSError(f"port {port} on {host} is in use: pick another --port") from None
        if e.errno == errno.EADDRNOTAVAIL:
            raise OSError(
                f"--host {host} is not an address of this machine: use 127.0.0.1 (this machine only), "
                "0.0.0.0 (all interfaces) or one of this machine's own addresses"
            ) from None
        if e.errno == errno.EACCES:
            raise OSError(f"port {port} on {host} needs privileges: pick a --port above 1023") from None
        raise OSError(
            f"cannot listen on {host} port {port} ({e.strerror or e}): pick another --host or --port"
        ) from None
    return sock


def _banner(path: Any, info: dict[str, Any], bound: tuple[Any, ...]) -> str:
    """What ``serve`` prints once it listens, from the address really bound (never the token itself).

    Example:
        >>> info = {"format": "onnx", "threads": 1, "auth": "none (loopback only)"}
        >>> _banner("b", info, ("127.0.0.1", 8000))
        'Serving b (onnx, ONNX Runtime 1 thread) on http://127.0.0.1:8000 — POST /predict; Ctrl-C stops'
        >>> print(_banner("b", dict(info, auth="bearer token"), ("0.0.0.0", 8000)))  # doctest: +NORMALIZE_WHITESPACE
        Serving b (onnx, ONNX Runtime 1 thread) on http://0.0.0.0:8000, all interfaces: reachable from other
        machines (http://127.0.0.1:8000 from this one), every request needing its bearer token — POST /predict;
        Ctrl-C stops
    """
    host, port = str(bound[0]), int(bound[1])
    address = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    ip = ipaddress.ip_address(host.split("%")[0])  # an IPv6 link-local address may carry a %zone
    where = address
    if ip.is_unspecified:
        where = f"{address}, all interfaces: reachable from other machines ({_url(host, port)} from this one)"
    if info.get("auth") == "bearer token":
        where += ", every request needing its bearer token"
    route = "POST /generate" if info.get("task") == "lm" else "POST /predict"
    return f"Serving {path} ({_describe(info)}) on {where} — {route}; Ctrl-C stops"


def serve(
    bundle_or_path: Bundle | str | os.PathLike,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    fmt: str = "auto",
    threads: int = 1,
    max_batch: int | None = None,
    max_body_bytes: int | None = None,
    token: str | None = None,
    rate_limit: float | None = None,
    log_level: str = "warning",
    **lm_options: Any,
) -> None:
    """Serve a bundle until Ctrl-C (uvicorn, one process). ``workbench serve BUNDLE``.

    The arguments, the card, the token and the address are checked first, each failure one line (a taken
    port: ``port 8000 on 127.0.0.1 is in use: pick another --port``); then the model loads, and the banner
    gives the address really bound (``port=0`` takes a free port). A host other machines can reach
    (``0.0.0.0``, all interfaces, or a network address) needs a ``token`` (or ``$WORKBENCH_SERVE_TOKEN``):
    see ``access``. ``threads`` is the inference thread count: ONNX Runtime's for ``onnx``; for
    ``torch-export`` and language models, torch's. The other arguments are ``make_app``'s; ``log_level``
    is uvicorn's (``info`` shows each request's log line, never its headers).

    Example:
        >>> serve("bundle/", port=8000)  # doctest: +SKIP
        Serving bundle (onnx, ONNX Runtime 1 thread) on http://127.0.0.1:8000 — POST /predict; Ctrl-C stops
    """
    require_modules(["starlette", "uvicorn"], "Serving a bundle", SERVE_PIP)
    import uvicorn

    _require_int("port", port, 0, 65535)
    _require_int("threads", threads, 1)
    if max_batch is not None:
        _require_int("max_batch", max_batch, 1)
    _address(host, port)  # a wrong host is named before a missing token
    token = check_token(host, token)
    bundle = _as_bundle(bundle_or_path)  # reads and checks the card
    sock = _bind(host, port)
    app = None
    try:
        if bundle.task == "lm" or (bundle.formats[:1] if fmt == "auto" else [fmt]) == ["torch-export"]:
            torch.set_num_threads(threads)
        app = make_app(
            bundle,
            fmt=fmt,
            threads=threads,
            max_batch=max_batch,
            max_body_bytes=max_body_bytes,
            token=token,
            rate_limit=rate_limit,
            **lm_options,
        )
        bound = sock.getsockname()
        config = uvicorn.Config(
            app,
            host=bound[0],
            port=bound[1],
            http=_http_protocol(),
            log_level=log_level,
            access_log=log_level in ("debug", "trace", "info"),
        )
        print(_banner(bundle.path, app.state.workbench, bound), flush=True)
        with contextlib.suppress(KeyboardInterrupt):  # uvicorn shuts down on Ctrl-C, then raises it again
            uvicorn.Server(config).run(sockets=[sock])
    finally:
        if app is not None:
            app.state.close()
        sock.close()


@contextlib.contextmanager
def serving(
    bundle_or_path: Bundle | str | os.PathLike,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    fmt: str = "auto",
    threads: int = 1,
    max_batch: int | None = None,
    max_body_bytes: int | None = None,
    token: str | None = None,
    rate_limit: float | None = None,
    startup_timeout_s: float = 30.0,
    log_level: str = "warning",
    **lm_options: Any,
) -> Iterator[str]:
    """Serve a bundle from a background thread while the block runs; yields the base URL
    (``http://127.0.0.1:PORT``; ``port=0`` takes a free one). The server answers ``/health`` before the
    block starts and is shut down when it ends. Arguments as ``make_app``; a taken port, a wrong host or
    a missing token fails at once, as in ``serve``.

    Example:
        >>> with serving("bundle/") as url:  # doctest: +SKIP
        ...     httpx.post(url + "/predict", json={"inputs": pixels.tolist()}).json()["labels"]
        ['cat']
    """
    require_modules(["starlette", "uvicorn", "httpx"], "Serving a bundle", SERVE_PIP)
    import httpx
    import uvicorn

    _address(host, port)
    token = check_token(host, token)
    sock = _bind(host, port)
    app = None
    try:
        app = make_app(
            bundle_or_path,
            fmt=fmt,
            threads=threads,
            max_batch=max_batch,
            max_body_bytes=max_body_bytes,
            token=token,
            rate_limit=rate_limit,
            **lm_options,
        )
        bound = sock.getsockname()
        config = uvicorn.Config(
            app,
            host=bound[0],
            port=bound[1],
            http=_http_protocol(),
            log_level=log_level,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=5,
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name=f"workbench-serve-{bound[1]}", daemon=True
        )
        thread.start()
        url = _url(bound[0], bound[1])
        try:
            deadline = time.monotonic() + startup_timeout_s
            while not server.started:
                if not thread.is_alive():  # uvicorn logs why and exits the thread
                    raise RuntimeError(f"The server did not start on {url}: see uvicorn's log above")
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"The server on {url} did not start within {startup_timeout_s:g} s: raise startup_timeout_s"
                    )
                time.sleep(0.01)
            while True:
                try:
                    auth = {"authorization": f"Bearer {token}"} if token else {}
                    if httpx.get(url + "/health", timeout=2.0, headers=auth).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"{url}/health did not answer within {startup_timeout_s:g} s: raise startup_timeout_s"
                    )
                time.sleep(0.05)
            yield url
        finally:
            server.should_exit = True
            thread.join(timeout=15)
    finally:
        if app is not None:
            app.state.close()
        sock.close()


def load_test(
    url: str,
    *,
    concurrency: int = 4,
    requests: int = 200,
    batch_size: int = 1,
    duration_s: float = 30.0,
    payload: Any = None,
    content_type: str = "application/json",
    warmup: int = 2,
    timeout_s: float = 10.0,
    token: str | None = None,
    generate: bool = False,
    **generate_options: Any,
) -> dict[str, Any]:
    """Load-test a running server (``serve``/``serving``): ``concurrency`` clients, each a thread with its
    own keep-alive ``httpx.Client``, send ``POST /predict`` back to back until ``requests`` have been
    sent or ``duration_s`` has passed, whichever comes first (a request in flight then may take up
    to ``timeout_s`` more). Never more clients than ``requests``: the extra ones would have nothing to
    send. Each client first sends ``warmup`` requests that are not counted (connection set-up,
    first-call allocations), all clients at once; a warm-up the server refuses raises ``ValueError``
    with its reason. ``duration_s`` bounds the clients' set-up and warm-up too: its clock starts once
    ``GET /health`` has answered, and warm-up stops at half of it at the latest, so many clients cannot
    stretch a 2-second test into a minute, nor leave it no time to measure.

    ``payload``: ``None`` sends random uint8 pixels of shape (``batch_size``, *input_shape), the shape
    read from ``GET /health``, as JSON; an array or tensor of raw pixels is sent as JSON (its batch size
    replaces ``batch_size``); ``bytes`` are sent as they are, with ``content_type``.

    Returns one dict (``pandas.DataFrame([result])`` makes it a row): url, client, concurrency (the
    clients that ran: at most ``requests``), batch_size, requests_sent, ok, errors, first_error,
    stopped_by (``requests`` or ``duration``), duration_s (wall time of the timed part), p50_ms, p95_ms,
    p99_ms, mean_ms, max_ms (over the ok requests, each timed with ``time.perf_counter`` around the whole
    request and answer), throughput_rps (ok requests a second) and throughput_ips (images a second).

    ``token``: sent as ``Authorization: Bearer``, for a server that requires one. ``generate``: a
    language-model server, tested with ``lm_load.load_test_generate`` (``generate_options``: its
    ``prompts``, ``max_new_tokens``, ``temperature``).

    Example:
        >>> load_test("http://127.0.0.1:8000", concurrency=0)
        Traceback (most recent call last):
        ...
        ValueError: concurrency must be an integer >= 1 (got 0)
        >>> load_test("http://127.0.0.1:8000", concurrency=4, requests=200)  # doctest: +SKIP
        {'url': 'http://127.0.0.1:8000', 'client': 'httpx', 'concurrency': 4, ..., 'p95_ms': 2.9, ...}
    """
    for name, value in (("concurrency", concurrency), ("requests", requests), ("batch_size", batch_size)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1 (got {value!r})")
    for name, value in (("duration_s", duration_s), ("timeout_s", timeout_s)):
        if not isinstance(value, (int, float)) or not value > 0:
            raise ValueError(f"{name} must be > 0 seconds (got {value!r})")
    if not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup must be an integer >= 0 (got {warmup!r})")
    if generate:
        from .lm_load import load_test_generate

        limits = {"concurrency": concurrency, "requests": requests, "duration_s": duration_s, "warmup": warmup}
        return load_test_generate(url, **limits, timeout_s=timeout_s, token=token, **generate_options)
    if generate_options:
        raise ValueError(f"{', '.join(generate_options)}: options of a language-model load test: pass generate=True")
    require_modules(["httpx"], "load_test", SERVE_PIP)
    import httpx

    # One TLS context for every client: building one per client (certificates loaded each time) takes
    # ~20 ms, a minute for 2,000 clients.
    tls = ssl.create_default_context()
    base = url.rstrip("/").removesuffix("/predict")
    auth = {"authorization": f"Bearer {token}"} if token else {}
    health = server_health(base, timeout_s, auth, verify=tls)
    if isinstance(health, dict) and health.get("task") == "lm":
        raise ValueError(f"{base} serves a language model: load-test it with generate=True (--generate)")
    if not isinstance(health, dict) or "input_shape" not in health:
        raise ConnectionError(
            f"{base}/health does not answer as a Workbench server: start one with workbench serve BUNDLE"
        )
    body, batch = _payload(payload, batch_size, health["input_shape"])
    headers = {"content-type": content_type if isinstance(payload, (bytes, bytearray)) else "application/json", **auth}
    target = base + "/predict"

    concurrency = min(concurrency, requests)
    began = time.perf_counter()
    deadline = began + duration_s  # for the clients' set-up and warm-up too
    warm_until = began + duration_s / 2  # so at least half the time is measured
    clients: list[Any] = [None] * concurrency
    lock = threading.Lock()
    sent, latencies, errors, first_error, last_done, refused = 0, [], 0, None, 0.0, None

    def warm(i: int) -> None:
        nonlocal refused
        clients[i] = client = httpx.Client(timeout=timeout_s, headers=headers, verify=tls)
        for _ in range(warmup):
            if refused is not None or time.perf_counter() >= warm_until:
                return
            try:
                r = client.post(target, content=body)
            except httpx.HTTPError:  # not counted; a server that stays down shows in the timed requests
                continue
            if r.status_code != 200:
                with lock:
                    refused = refused or f"{target} answered {r.status_code} to a warm-up request: {_reason(r)}"

    def worker(client: Any) -> None:
        nonlocal sent, errors, first_error, last_done
        while True:
            with lock:
                if sent >= requests or time.perf_counter() >= deadline:
                    return
                sent += 1
            t0 = time.perf_counter()
            try:
                r = client.post(target, content=body)
                problem = None if r.status_code == 200 else f"{r.status_code}: {_reason(r)}"
            except Exception as e:  # noqa: BLE001 - any failure is counted; uncaught, it would end this thread
                problem = one_line(e)
            t1 = time.perf_counter()
            with lock:
                last_done = max(last_done, t1)
                if problem is None:
                    latencies.append(t1 - t0)
                else:
                    errors += 1
                    first_error = first_error or problem

    try:
        _each(warm, range(concurrency), "load-test-warm-up")
        if refused is not None:
            raise ValueError(refused)
        start = time.perf_counter()
        _each(worker, clients, "load-test")
    finally:
        for client in clients:
            if client is not None:
                client.close()
    wall = last_done - start if last_done else 0.0
    ok = len(latencies)
    return {
        "url": base,
        "client": "httpx",
        "concurrency": concurrency,
        "batch_size": batch,
        "requests_sent": sent,
        "ok": ok,
        "errors": errors,
        "first_error": first_error,
        "stopped_by": "requests" if sent >= requests else "duration",
        "duration_s": round(wall, 4),
        **latency_percentiles(latencies),
        "throughput_rps": ok / wall if wall > 0 else 0.0,
        "throughput_ips": ok * batch / wall if wall > 0 else 0.0,
    }


def _each(function: Any, items: Any, name: str) -> None:
    """``function(item)`` for every item, each in its own thread, all at once; returns when all are done."""
    threads = [threading.Thread(target=function, args=(item,), name=f"{name}-{i}") for i, item in enumerate(items)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def _payload(payload: Any, batch_size: int, input_shape: Sequence[int]) -> tuple[bytes, int]:
    """The request body and the number of images in it."""
    if isinstance(payload, (bytes, bytearray)):
        return bytes(payload), batch_size
    if payload is None:
        rng = np.random.default_rng(0)
        pixels = rng.integers(0, 256, size=(batch_size, *input_shape), dtype=np.uint8)
    else:
        pixels = payload.detach().cpu().numpy() if isinstance(payload, torch.Tensor) else np.asarray(payload)
    batch = 1 if pixels.ndim == len(input_shape) else int(pixels.shape[0])
    return json.dumps({"inputs": pixels.tolist()}).encode(), batch


def load_test_levels(url: str, levels: Sequence[int], *, generate: bool = False, **options: Any) -> pd.DataFrame:
    """One load test per concurrency level, a row each (``load_test``'s, or with ``generate``
    ``load_test_generate``'s); the runs follow each other, lowest level first.

    Example:
        >>> load_test_levels("http://127.0.0.1:8000", [])
        Traceback (most recent call last):
        ...
        ValueError: levels must be concurrency levels, integers >= 1 (got [])
    """
    from .lm_load import load_test_generate

    if not levels or not all(isinstance(c, int) and not isinstance(c, bool) and c >= 1 for c in levels):
        raise ValueError(f"levels must be concurrency levels, integers >= 1 (got {list(levels)!r})")
    test = load_test_generate if generate else load_test
    return pd.DataFrame([test(url, concurrency=level, **options) for level in sorted(set(levels))])
