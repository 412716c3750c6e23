"""Serve a language-model bundle: ``POST /generate``, answered whole as JSON or streamed as server-sent events.

``make_lm_app(bundle)`` builds the Starlette app; ``serve`` and ``serving`` (``workbench serve BUNDLE``)
pick it for a bundle whose card says ``task: lm``. Requests decode in a ``DecodeEngine`` (continuous
batching unless told otherwise).

``POST /generate`` takes ``application/json``::

    {"prompt": "def ", "max_new_tokens": 64, "temperature": 0, "top_k": null, "top_p": null,
     "seed": null, "stop": ["\\n\\n"], "stream": false}

Only ``prompt`` is required (defaults as shown, temperature 1.0). The answer is ``{"text", "tokens",
"finish_reason" (length | stop | cancelled | error), "prompt_tokens", "completion_tokens",
"prompt_truncated", "context_shifts", "ttft_ms", "total_ms", "tokens_per_s"}``. With ``"stream": true``
it comes as ``text/event-stream``: one ``data: {"token": id, "text": piece}`` event per token (the pieces
join into the text), then ``event: done`` with the whole answer as its data.

Refused, each with ``{"error": "<one line>"}`` and the server serving on: 400 (not JSON, not an object,
a body HTTP cannot parse), 401 (token: see ``access``), 404/405, 413 (body over ``max_body_bytes``), 415
(not JSON), 422 (a missing or wrong field, an unknown field, ``max_new_tokens`` over the server's cap, a
prompt over ``max_prompt_tokens``), 429 (``max_streams`` requests in flight already, or the client's
rate limit). A client that disconnects frees its slot before the next decode step.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from typing import Any

from .._errors import one_line, require_modules
from .batching import BATCHING, DecodeEngine, Sampling, sampling_problems
from .bundle import Bundle, load_bundle

log = logging.getLogger(__name__)

FIELDS = ("prompt", "max_new_tokens", "temperature", "top_k", "top_p", "seed", "stop", "stream")
DEFAULT_MAX_NEW_TOKENS = 64
JSON_KINDS = {
    list: "an array",
    str: "a string",
    type(None): "null",
    bool: "a boolean",
    int: "a number",
    float: "a number",
}
MAX_BODY_BYTES = 64 * 1024
DISCONNECT_POLL_S = 0.05  # how often a JSON answer in the making checks that its client is still there
STREAM_CLAIM_S = 5.0  # a stream whose response has not started by then lost its client


def make_lm_app(
    bundle: Bundle | str | os.PathLike,
    *,
    batching: str = "continuous",
    max_batch: int = 16,
    threads: int | None = None,
    max_new_tokens: int = 256,
    max_prompt_tokens: int | None = None,
    max_streams: int = 64,
    max_body_bytes: int = MAX_BODY_BYTES,
    token: str | None = None,
    rate_limit: float | None = None,
) -> Any:
    """The app for a language-model bundle. ``batching`` (``continuous``, ``static``, ``off``) and
    ``max_batch`` (rows decoded together) go to the ``DecodeEngine``; ``threads`` is torch's CPU threads
    in its loop. Limits: ``max_new_tokens`` per request, ``max_prompt_tokens`` (default: the model's
    context, ``block_size``), ``max_streams`` requests in flight (decoding or waiting), ``max_body_bytes``;
    ``token`` and ``rate_limit`` as ``access.Guard``. One greedy token is decoded here, so a bundle that
    cannot serve fails now. ``app.state.close()`` stops the decode thread."""
    require_modules(["starlette"], "Serving a bundle", "pip install starlette uvicorn httpx")
    from starlette.requests import ClientDisconnect
    from starlette.responses import JSONResponse, StreamingResponse
    from starlette.routing import Route

    from .lm_bundle import load_language_model
    from .web import _error, _read_body, _Refused, _require_int, guarded_app

    if batching not in BATCHING:
        raise ValueError(f"batching must be one of {', '.join(BATCHING)} (got {batching!r})")
    for name, value in (("max_batch", max_batch), ("max_new_tokens", max_new_tokens), ("max_streams", max_streams)):
        _require_int(name, value, 1)
    _require_int("max_body_bytes", max_body_bytes, 1)
    bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
    model, tokenizer = load_language_model(bundle)
    block_size = model.shape.block_size
    max_prompt_tokens = block_size if max_prompt_tokens is None else max_prompt_tokens
    _require_int("max_prompt_tokens", max_prompt_tokens, 1)
    engine = DecodeEngine(model, tokenizer, batching=batching, max_batch=max_batch, threads=threads)
    try:
        engine.generate(tokenizer.encode("\n") or [0], Sampling(max_new_tokens=1, temperature=0), timeout_s=60)
    except Exception as e:
        engine.close()
        raise RuntimeError(f"{bundle.path} cannot decode a token ({one_line(e)}): export the run again") from e
    in_flight = {"streams": 0, "served": 0, "cancelled": 0}
    info = {
        "status": "ok",
        "task": "lm",
        "model": bundle.card.get("name"),
        "batching": batching,
        "max_batch": engine.max_batch,
        "threads": threads,
        "block_size": block_size,
        "vocab_size": model.shape.vocab_size,
        "tokenizer": tokenizer.name,
        "limits": {
            "max_new_tokens": max_new_tokens,
            "max_prompt_tokens": max_prompt_tokens,
            "max_streams": max_streams,
            "max_body_bytes": max_body_bytes,
            "rate_limit": rate_limit,
        },
        "auth": "bearer token" if token else "none (loopback only)",
    }

    def parse(body: bytes) -> tuple[list[int], Sampling, bool]:
        try:
            doc = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
            raise _Refused(400, f'the body is not JSON ({type(e).__name__}): send {{"prompt": "..."}}') from None
        if not isinstance(doc, dict):
            kind = JSON_KINDS.get(type(doc), type(doc).__name__)
            raise _Refused(400, f'the body is JSON {kind}, not an object: send {{"prompt": "..."}}')
        unknown = sorted(set(doc) - set(FIELDS))
        if unknown:
            raise _Refused(
                422, f"unknown field {', '.join(map(repr, unknown[:5]))}: this endpoint takes {', '.join(FIELDS)}"
            )
        prompt = doc.get("prompt")
        if not isinstance(prompt, str) or not prompt:
            raise _Refused(422, f"prompt must be a non-empty string (got {json.dumps(prompt)[:40]})")
        stop = doc.get("stop", [])
        fields = {
            "max_new_tokens": doc.get("max_new_tokens", DEFAULT_MAX_NEW_TOKENS),
            "temperature": doc.get("temperature", 1.0),
            "top_k": doc.get("top_k"),
            "top_p": doc.get("top_p"),
            "seed": doc.get("seed"),
            "stop": [stop] if isinstance(stop, str) else stop,
        }
        if problems := sampling_problems(fields):
            raise _Refused(422, problems[0])
        if fields["max_new_tokens"] > max_new_tokens:
            raise _Refused(
                422,
                f"max_new_tokens={fields['max_new_tokens']} is over this server's cap of {max_new_tokens}: "
                "ask for fewer",
            )
        if not isinstance(doc.get("stream", False), bool):
            raise _Refused(422, f"stream must be true or false (got {json.dumps(doc['stream'])[:40]})")
        try:
            ids = tokenizer.encode(prompt)
        except ValueError as e:
            raise _Refused(422, f"the prompt cannot be encoded: {one_line(e)}") from None
        if not ids:
            raise _Refused(422, "the prompt encodes to no tokens: give it some text")
        if len(ids) > max_prompt_tokens:
            raise _Refused(
                422,
                f"the prompt is {len(ids)} tokens, over this server's max_prompt_tokens={max_prompt_tokens}: "
                "shorten it",
            )
        if any(not 0 <= i < model.shape.vocab_size for i in ids):
            raise _Refused(422, "the prompt encodes to ids outside the model's vocabulary")
        fields["stop"] = tuple(fields["stop"])
        return ids, Sampling(**fields), doc.get("stream", False)

    async def generate(request: Any) -> Any:
        try:
            media = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
            if media != "application/json" and not media.endswith("+json"):
                raise _Refused(415, f"Content-Type {media or 'none'!r} is not served: send application/json")
            ids, sampling, stream = parse(await _read_body(request, max_body_bytes, "send a shorter prompt"))
            if in_flight["streams"] >= max_streams:
                raise _Refused(429, f"this server's max_streams={max_streams} requests are in flight: retry shortly")
        except _Refused as e:
            headers = {"retry-after": "1"} if e.status == 429 else None
            return _error(JSONResponse, e.status, e.message, headers)
        except ClientDisconnect:
            return _error(JSONResponse, 400, "the client disconnected before the body arrived")
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()

        def hear(event: dict) -> None:  # the engine's thread
            with contextlib.suppress(RuntimeError):  # the event loop has closed: the server is shutting down
                loop.call_soon_threadsafe(events.put_nowait, event)

        in_flight["streams"] += 1
        try:
            handle = engine.submit(ids, sampling, hear)
        except Exception as e:  # noqa: BLE001 - the engine closed under the request
            in_flight["streams"] -= 1
            return _error(JSONResponse, 500, f"generation failed: {one_line(e)}")
        if stream:
            # A client that leaves before the response starts leaves its generator unstarted, and an unstarted
            # generator's finally never runs: whichever comes first, the stream or this check, frees the slot.
            claim = {"claimed": False}
            loop.call_later(STREAM_CLAIM_S, lambda: claim["claimed"] or _claim(claim, handle))
            return StreamingResponse(
                _sse(handle, events, claim), media_type="text/event-stream", headers={"cache-control": "no-cache"}
            )
        try:
            checked = loop.time()
            while True:
                try:
                    event = await asyncio.wait_for(events.get(), DISCONNECT_POLL_S)
                except TimeoutError:
                    event = None
                if event is not None and event["type"] == "done":
                    break
                if loop.time() - checked >= DISCONNECT_POLL_S:  # tokens may come faster than that: check anyway
                    checked = loop.time()
                    if await request.is_disconnected():
                        engine.cancel(handle)
        finally:
            _finished(handle)
        answer = {k: v for k, v in event.items() if k != "type"}
        return JSONResponse(answer, status_code=500 if event["finish_reason"] == "error" else 200)

    def _claim(claim: dict, handle: Any) -> None:
        claim["claimed"] = True
        _finished(handle)

    async def _sse(handle: Any, events: asyncio.Queue, claim: dict) -> Any:
        if claim["claimed"]:  # its slot was already freed: the client was gone for STREAM_CLAIM_S
            return
        claim["claimed"] = True
        try:
            while True:
                event = await events.get()
                if event["type"] == "token":
                    yield f"data: {json.dumps({'token': event['token'], 'text': event['text']})}\n\n"
                else:
                    answer = {k: v for k, v in event.items() if k != "type"}
                    yield f"event: done\ndata: {json.dumps(answer)}\n\n"
                    return
        finally:  # also when the client left: the response task is cancelled here
            _finished(handle)

    def _finished(handle: Any) -> None:
        if handle.finish_reason is None:
            engine.cancel(handle)
        if handle.cancelled:  # its client left, mid-stream or while its JSON answer was being made
            in_flight["cancelled"] += 1
        in_flight["streams"] -= 1
        in_flight["served"] += 1

    async def health(request: Any) -> Any:
        return JSONResponse(
            {
                **info,
                "in_flight": in_flight["streams"],
                "served": in_flight["served"],
                "cancelled": in_flight["cancelled"],
                "decode_steps": engine.steps,
                "rows_decoded": engine.rows_decoded,
                "refused": guard.refused,
            }
        )

    async def card(request: Any) -> Any:
        return JSONResponse(bundle.card)

    routes = [Route("/health", health), Route("/card", card), Route("/generate", generate, methods=["POST"])]
    info["bundle"] = str(bundle.path)
    guard = guarded_app(routes, info, token=token, rate_limit=rate_limit, close=engine.close)
    return guard
