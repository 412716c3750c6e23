"""Load-test a served language model: concurrent clients streaming ``POST /generate``, timed token by token.

What a person waiting for text feels is the time to the first token (``ttft``) and the time between the
tokens after it (``tbt``, also called inter-token latency); what the server's owner pays for is the total
tokens a second. Each client is a thread with its own keep-alive ``httpx`` client; it reads the
server-sent events as they arrive and stamps each token with ``time.perf_counter``.

Example:
    >>> load_test_generate("http://127.0.0.1:8000", concurrency=0)
    Traceback (most recent call last):
    ...
    ValueError: concurrency must be an integer >= 1 (got 0)
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import pandas as pd

from .._errors import require_modules

DEFAULT_PROMPTS = ("def ", "import os\n", "class Config:\n", "for i in range(", "    return ", "# ", "with open(")


def load_test_generate(
    url: str,
    *,
    concurrency: int = 8,
    requests: int = 64,
    duration_s: float = 60.0,
    prompts: Sequence[str] = DEFAULT_PROMPTS,
    max_new_tokens: int = 32,
    temperature: float = 0.0,
    warmup: int = 1,
    timeout_s: float = 60.0,
    token: str | None = None,
) -> dict[str, Any]:
    """``concurrency`` clients send streamed ``POST /generate`` requests back to back (prompt ``i`` of
    ``prompts`` in turn) until ``requests`` have been sent or ``duration_s`` has passed; each first sends
    ``warmup`` requests that are not counted, all clients at once.

    Returns one dict: url, batching (the server's, from ``/health``), concurrency, requests_sent, ok,
    errors, errors_by_kind (``{"HTTP 429": n, "ReadTimeout": n, ...}``), first_error, stopped_by,
    duration_s, completion_tokens (of the ok requests), ``ttft_{p50,p95,p99}_ms``, ``tbt_{p50,p95,p99}_ms``
    (every gap between two tokens of a request, pooled), ``latency_{p50,p99}_ms`` (whole requests),
    ``tokens_per_s_per_request`` (median over requests of their tokens after the first over the time
    after the first) and ``tokens_per_s`` (all tokens over the wall time: the server's throughput)."""
    from .web import latency_percentiles, server_health

    for name, value in (("concurrency", concurrency), ("requests", requests), ("max_new_tokens", max_new_tokens)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1 (got {value!r})")
    for name, value in (("duration_s", duration_s), ("timeout_s", timeout_s)):
        if not isinstance(value, (int, float)) or not value > 0:
            raise ValueError(f"{name} must be > 0 seconds (got {value!r})")
    if not prompts or not all(isinstance(p, str) and p for p in prompts):
        raise ValueError("prompts must be a list of non-empty strings")
    require_modules(["httpx"], "load_test_generate", "pip install httpx")
    import httpx

    base = url.rstrip("/").removesuffix("/generate")
    headers = {"authorization": f"Bearer {token}"} if token else {}
    health = server_health(base, timeout_s, headers)
    if not isinstance(health, dict) or health.get("task") != "lm":
        raise ConnectionError(f"{base} does not serve a language model: serve an LM bundle, or drop --generate")

    concurrency = min(concurrency, requests)
    lock = threading.Lock()
    sent = 0
    ttft, tbt, latency, per_request, kinds = [], [], [], [], Counter()
    tokens_done, first_error, last_done = 0, None, 0.0

    def one(client: Any, index: int) -> tuple[float, list[float], dict | None, str | None]:
        """(sent at, token arrival times, final answer, problem) of one streamed request."""
        body = {
            "prompt": prompts[index % len(prompts)],
            "max_new_tokens": max_new_tokens,
            "temperature": temperature,
            "stream": True,
        }
        t0, arrivals, done = time.perf_counter(), [], None
        try:
            with client.stream("POST", base + "/generate", json=body) as r:
                if r.status_code != 200:
                    r.read()
                    return t0, arrivals, None, f"HTTP {r.status_code}: {_reason(r)}"
                for kind, data in server_sent_events(r.iter_lines()):
                    if kind == "done":
                        done = data
                    else:
                        arrivals.append(time.perf_counter())
        except httpx.HTTPError as e:
            return t0, arrivals, None, type(e).__name__
        if done is None:
            return t0, arrivals, None, "no done event"
        if done.get("finish_reason") == "error":
            return t0, arrivals, done, "finish_reason error"
        return t0, arrivals, done, None

    def worker(i: int) -> None:
        nonlocal sent, tokens_done, first_error, last_done
        with httpx.Client(timeout=timeout_s, headers=headers) as client:
            for w in range(warmup):
                one(client, i + w)
            barrier.wait()
            while True:
                with lock:
                    if sent >= requests or time.perf_counter() >= deadline:
                        return
                    index, sent = sent, sent + 1
                t0, arrivals, _, problem = one(client, index)
                t1 = time.perf_counter()
                with lock:
                    last_done = max(last_done, t1)
                    if problem:
                        kinds[problem.split(":")[0]] += 1
                        first_error = first_error or problem
                        continue
                    tokens_done += len(arrivals)
                    latency.append(t1 - t0)
                    if arrivals:
                        ttft.append(arrivals[0] - t0)
                        tbt.extend(b - a for a, b in itertools.pairwise(arrivals))
                        if len(arrivals) > 1 and arrivals[-1] > arrivals[0]:
                            per_request.append((len(arrivals) - 1) / (arrivals[-1] - arrivals[0]))

    start_box: list[float] = []
    deadline = float("inf")

    def set_deadline() -> None:
        nonlocal deadline
        start_box.append(time.perf_counter())
        deadline = start_box[-1] + duration_s

    barrier = threading.Barrier(concurrency, action=set_deadline)
    threads = [threading.Thread(target=worker, args=(i,), name=f"load-test-generate-{i}") for i in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    start = start_box[-1] if start_box else time.perf_counter()
    wall = max(last_done - start, 0.0)

    def pct(values: list[float], prefix: str, keys: Sequence[str] = ("p50", "p95", "p99")) -> dict[str, float]:
        got = latency_percentiles(values)
        return {f"{prefix}_{k}_ms": got[f"{k}_ms"] for k in keys}

    ok = len(latency)
    return {
        "url": base,
        "batching": health.get("batching"),
        "max_batch": health.get("max_batch"),
        "concurrency": concurrency,
        "requests_sent": sent,
        "ok": ok,
        "errors": sum(kinds.values()),
        "errors_by_kind": dict(kinds),
        "first_error": first_error,
        "stopped_by": "requests" if sent >= requests else "duration",
        "duration_s": round(wall, 4),
        "max_new_tokens": max_new_tokens,
        "completion_tokens": tokens_done,
        **pct(ttft, "ttft"),
        **pct(tbt, "tbt"),
        **pct(latency, "latency", ("p50", "p99")),
        "tokens_per_s_per_request": float(pd.Series(per_request).median()) if per_request else float("nan"),
        "tokens_per_s": tokens_done / wall if wall > 0 else 0.0,
    }


def server_sent_events(lines: Iterable[str]) -> Iterator[tuple[str, dict]]:
    """(event name, its JSON data) of each event in a ``/generate`` stream's lines, as they come; an event
    without a name is a ``token``.

    Example:
        >>> list(server_sent_events(['data: {"token": 7, "text": "a"}', "", "event: done", 'data: {"text": "a"}', ""]))
        [('token', {'token': 7, 'text': 'a'}), ('done', {'text': 'a'})]
    """
    kind = None
    for line in lines:
        if line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("data: "):
            yield kind or "token", json.loads(line[6:])
            kind = None


def stream_generate(url: str, prompt: str, *, token: str | None = None, timeout_s: float = 60.0, **options: Any):
    """Stream one completion from a served language model: yields each new piece of text as it arrives,
    and returns the final answer (the generator's return value: ``StopIteration.value``). ``options``
    are ``POST /generate``'s fields (``max_new_tokens``, ``temperature``, ``top_k``, ``top_p``, ``seed``,
    ``stop``). A refusal raises ``ValueError`` with the server's one line.

    Example:
        >>> for piece in stream_generate(url, "def ", max_new_tokens=16, temperature=0):  # doctest: +SKIP
        ...     print(piece, end="", flush=True)
    """
    require_modules(["httpx"], "stream_generate", "pip install httpx")
    import httpx

    headers = {"authorization": f"Bearer {token}"} if token else {}
    body = {"prompt": prompt, **options, "stream": True}
    base = url.rstrip("/").removesuffix("/generate")
    with httpx.stream("POST", base + "/generate", json=body, headers=headers, timeout=timeout_s) as r:
        if r.status_code != 200:
            r.read()
            raise ValueError(f"{base}/generate answered {r.status_code}: {_reason(r)}")
        for kind, data in server_sent_events(r.iter_lines()):
            if kind == "done":
                return data
            yield data["text"]
    raise ConnectionError(f"{base}/generate ended the stream without its done event")


def _reason(response: Any) -> str:
    from .web import _reason as reason

    return reason(response)
