"""Abuse a served language model over real HTTP: valid requests beside bad ones, clients that leave mid-stream
and mid-upload, a rate-limit burst and a stream flood, all at once. Writes ``results/lm-serve-abuse-cpu.json``.

A GPT of the ``gpt`` preset (4 layers, 4 heads, 128 wide, context 64) is trained here on pystdlib
(``--steps``), exported (``workbench.deploy.export``) and served by the CLI in a process of its own
(``python -m workbench.cli serve BUNDLE --max-streams 24 --rate-limit 20 --max-new-tokens 1024 --threads 1``,
the token in ``WORKBENCH_SERVE_TOKEN``) on a non-loopback address, 10.44.0.1, inside a user and network namespace
of its own (``unshare -rn``: the script runs itself again in it with ``--in-namespace``; the addresses live on the
namespace's ``lo``, so nothing outside can reach them). Each kind of client has its own source address, because
the rate limit is per client address:

* 10.44.0.2, valid clients: 4 threads send ``--valid`` greedy requests (temperature 0, 24 new tokens) for a few
  short prompts, half as JSON, half streamed (server-sent events), paced under the rate limit. The expected answer
  of each prompt is asked for once before the load starts. A valid request counts as answered only if its tokens
  are the expected ones (a stream's: its token events, which must also join into the done event's text); a 429 (the
  stream cap, ``max_streams``) is retried after its Retry-After, up to 20 times. Lost: never answered correctly.
* 10.44.0.3, bad requests: every kind in ``bad_kinds`` (auth, bodies, content types, fields, sizes, HTTP the
  server cannot parse, routes), each sent ``--per-kind`` times, each with the status the server's code gives it
  (``workbench/deploy/lm_serve.py``, ``access.py``, ``serve.py``), paced under the rate limit so that a 429 never
  hides the answer. Every answer must have that status and a JSON body ``{"error": "<string>"}``; a 401 also
  ``WWW-Authenticate``, a 429 ``Retry-After``. Requests httpx will not send go over raw sockets, which stop
  sending once the server has answered. A 100 KB header goes twice: in 4 KB pieces (h11 refuses a request head
  once 16 KiB of it are buffered and incomplete: 431) and in one write (arriving whole in one read, which h11
  never counts: ``access.Guard`` refuses a head over 16 KiB, 431 too).
* 10.44.0.4, a stream flood, then a rate-limit burst. The flood: 20 streams of ``--max-new-tokens`` opened at once
  (the rate limit's bucket: more at once would be rate-limited, not capped), then more, paced, until the server
  has refused 4 with its ``max_streams`` 429 (the valid clients meet that cap too, and retry); all held open a
  moment, unread, then closed (clients leaving mid-stream). The burst, once the bucket is full again: 60
  ``GET /health`` with the token at once (4 threads): the bucket's 20 (plus what refills meanwhile) answer 200,
  the rest 429 with Retry-After.
* 10.44.0.5, leaving clients: ``--disconnects`` streams that read 3 events and close; a few JSON requests closed
  before their answer; a few uploads that declare 1000 bytes, send 10 and close.

After: ``GET /health`` must answer 200 with ``in_flight`` back to 0 within 10 s (every slot of a client that left
freed); the server process must still be alive; its ``served``, ``cancelled`` and ``refused`` counters are kept.
Then, on the quiet server, one leaving client of each kind in turn (a stream 3 events in, a JSON request once in
flight, an upload 10 bytes into its 1000), each asking for ``--max-new-tokens``: 0.25 s after it left, its slot
must be free (``in_flight`` 0) and no row decoding (``decode_steps`` still for the next 0.25 s). Then SIGINT
stops it, and its exit code and the Tracebacks in its stderr are counted. Exit code 1 if the server died, a valid
request was lost, a request got another answer than its kind's, a slot stayed taken (after the load or after a
quiet leaver), or the server's log holds a Traceback.

Without ``unshare`` (or with ``--no-namespace``) the server binds 127.0.0.2 and the clients 127.0.0.3-6, a token
required anyway; the JSON says which (``config.network``).

    python benchmarks/lm_serve_abuse.py            # about 1.5 minutes on a 2-core AMD EPYC (the committed run)
    python benchmarks/lm_serve_abuse.py --smoke    # about 30 s: a tiny model, fewer requests
"""

from __future__ import annotations

import argparse
import collections
import itertools
import json
import math
import os
import re
import secrets
import select
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks._common import cpu_environment, save  # noqa: E402
from workbench.deploy.lm_load import server_sent_events  # noqa: E402

ROLES = ("server", "valid", "bad", "burst", "leave")  # each client role has a source address of its own
NAMESPACE = {role: f"10.44.0.{i}" for i, role in enumerate(ROLES, 1)}
LOOPBACK = {role: f"127.0.0.{i}" for i, role in enumerate(ROLES, 2)}
PROMPTS = ["def ", "import os\n", "class A:\n", "for i in "]
VALID_NEW_TOKENS = 24
VALID_THREADS = 4
RETRIES = 20
BURST = 60
FLOOD_AT_ONCE = 20  # the rate limit's bucket (--rate-limit 20): more at once would be rate-limited, not capped
FLOOD_REFUSALS = 4  # stop the flood once the server refused this many with max_streams
FLOOD_EXTRA = 16  # at most this many paced after the first FLOOD_AT_ONCE
PACE = 0.8  # clients pace themselves at this share of the rate limit
DISCONNECT_EVENTS = 3
QUIET_CHECK_S = 0.25  # a client that left must have its slot back this soon (the server polls every 50 ms)
TIMEOUT_S = 60.0
CLIENT_ERRORS = ("timeout", "connection")


# ---- the server -------------------------------------------------------------------------------------------


def train_and_export(args, tmp: Path) -> tuple[Any, Path, dict]:
    """The ``gpt`` preset (or a tiny one for --smoke) trained in a throwaway store, and its bundle."""
    import torch

    import workbench
    from workbench import ResultStore, preset

    torch.set_num_threads(2)
    cfg = preset("gpt", device="cpu").replace(
        **{"train.steps": args.steps, "measure.iters": 3, "measure.warmup": 1, "measure.batch_sizes": (1, 4)}
    )
    if args.smoke:  # tests/test_lm.py's tiny shapes
        cfg = cfg.replace(
            **{"model.depth": 1, "model.n_embd": 32, "model.n_head": 2, "model.block_size": 32}
            | {"train.batch_size": 16, "train.steps": args.steps, "train.epochs": 2}
        )
    store = ResultStore(tmp / "runs")
    result = workbench.run(cfg, store=store, progress=False)
    from workbench.deploy import export

    bundle = export(result.run_id, tmp / "bundle", store=store)
    model = cfg.to_dict()["model"]
    shape = {k: model[k] for k in ("depth", "n_embd", "n_head", "block_size")}
    return result, bundle.path, {"config": cfg.to_dict(), "shape": shape, "params": result.metrics.get("params")}


class Server:
    """``python -m workbench.cli serve`` in a process of its own; stdout and stderr to files."""

    def __init__(self, bundle: Path, host: str, token: str, args, logs: Path):
        self.flags = [
            "--host",
            host,
            "--port",
            "0",
            "--max-streams",
            str(args.max_streams),
            "--rate-limit",
            f"{args.rate_limit:g}",
            "--max-new-tokens",
            str(args.max_new_tokens),
            "--threads",
            str(args.server_threads),
        ]
        self.out, self.err = logs / "server.out", logs / "server.err"
        env = {**os.environ, "WORKBENCH_SERVE_TOKEN": token, "PYTHONUNBUFFERED": "1"}
        with open(self.out, "wb") as out, open(self.err, "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "workbench.cli", "serve", str(bundle), *self.flags],
                stdout=out,
                stderr=err,
                env=env,
                cwd=REPO,
            )

    def wait_for_banner(self, timeout_s: float = 120.0) -> tuple[str, int]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = re.search(r"Serving .* on http://([0-9.]+):(\d+)", self.out.read_text(errors="replace"))
            if found:
                return found.group(1), int(found.group(2))
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited ({self.proc.returncode}):\n{self.err.read_text()[-3000:]}")
            time.sleep(0.1)
        raise TimeoutError(f"no banner within {timeout_s:g} s:\n{self.err.read_text()[-3000:]}")

    def stop(self) -> int | None:
        """SIGINT, as Ctrl-C; killed after 20 s. The exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode

    def log_lines(self) -> tuple[int, int, str]:
        """Tracebacks in stderr; asyncio's "socket.send() raised exception." lines (writes to a client that
        left, before the server noticed); the log's tail."""
        text = self.err.read_text(errors="replace")
        lines = text.splitlines()
        return sum("Traceback" in x for x in lines), sum("socket.send() raised" in x for x in lines), text[-4000:]


# ---- clients ----------------------------------------------------------------------------------------------


class Pacer:
    """At most ``rate`` sends a second from one source address, evenly spaced: the server's per-client bucket
    (``rate_limit`` a second, holding as many) never runs dry, so a 429 can only be the stream cap."""

    def __init__(self, rate: float):
        self.gap, self.next, self.lock = 1.0 / rate, time.monotonic(), threading.Lock()

    def wait(self) -> None:
        with self.lock:
            now = time.monotonic()
            at = max(now, self.next)
            self.next = at + self.gap
        time.sleep(max(0.0, at - now))


@dataclass
class Answer:
    status: int | str  # an HTTP status, or "timeout" / "connection" / "closed" when none came
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    note: str = ""

    def error_line(self) -> str | None:
        try:
            doc = json.loads(self.body)
        except ValueError:
            return None
        return doc["error"] if isinstance(doc, dict) and isinstance(doc.get("error"), str) else None


@dataclass
class Target:
    host: str
    port: int
    token: str
    sources: dict[str, str]
    block_size: int
    cap: int
    body_limit: int
    rate_limit: float

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def auth(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"}

    def client(self, who: str, **kw: Any):
        import httpx

        transport = httpx.HTTPTransport(local_address=self.sources[who])
        return httpx.Client(base_url=self.url, transport=transport, timeout=TIMEOUT_S, **kw)


def http_answer(send: Callable[[], Any]) -> Answer:
    import httpx

    try:
        r = send()
    except httpx.TimeoutException as e:
        return Answer("timeout", note=type(e).__name__)
    except httpx.HTTPError as e:
        return Answer("connection", note=f"{type(e).__name__}: {e}"[:200])
    return Answer(r.status_code, {k.lower(): v for k, v in r.headers.items()}, r.content)


def raw_exchange(t: Target, who: str, pieces: list[bytes], *, gap_s: float = 0.0) -> Answer:
    """Send ``pieces`` over a fresh socket from ``who``'s address, stopping early once the server answers (it
    may refuse before the rest arrives), then read one HTTP response up to its Content-Length or the close."""
    try:
        sock = socket.create_connection((t.host, t.port), timeout=TIMEOUT_S, source_address=(t.sources[who], 0))
    except OSError as e:
        return Answer("connection", note=f"connect: {e}")
    note = ""
    try:
        for piece in pieces:
            if select.select([sock], [], [], 0)[0]:
                note = "the server answered before the whole request was sent"
                break
            try:
                sock.sendall(piece)
            except OSError as e:  # the server answered and closed: read what it said
                note = f"send stopped: {type(e).__name__}"
                break
            if gap_s:
                time.sleep(gap_s)
        return read_response(sock, note)
    finally:
        sock.close()


def read_response(sock: socket.socket, note: str = "") -> Answer:
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                return Answer("closed", note=(note + "; closed without an answer").strip("; "), body=data)
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        want = int(headers.get("content-length", -1))
        while want < 0 or len(body) < want:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
        return Answer(status, headers, body, note)
    except TimeoutError:
        return Answer("timeout", note=note)
    except OSError as e:
        return Answer("connection", note=f"{note}; recv: {type(e).__name__}".strip("; "))


def request_bytes(t: Target, method: str, path: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    """An HTTP/1.1 request as bytes; a header whose value is None is sent as its name alone (no colon)."""
    fields = [k if v is None else f"{k}: {v}" for k, v in headers.items()]
    lines = [f"{method} {path} HTTP/1.1", f"Host: {t.host}:{t.port}", *fields]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def in_pieces(data: bytes, size: int = 4096) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def parse_sse(lines) -> tuple[list[dict], dict | None, int]:
    """Token events, the done event's data, and how many events were read."""
    tokens = []
    for n, (kind, data) in enumerate(server_sent_events(lines), 1):
        if kind == "done":
            return tokens, data, n
        tokens.append(data)
    return tokens, None, len(tokens)


# ---- the bad requests -------------------------------------------------------------------------------------


@dataclass
class Kind:
    name: str
    expected: int
    send: Callable[[Target], Answer]
    group: str


def bad_kinds(t: Target) -> list[Kind]:
    """Each kind of bad request, its status from the server's code, and how it is sent (from 10.44.0.3)."""
    ok = {"prompt": "def ", "max_new_tokens": 4, "temperature": 0}
    body = json.dumps(ok).encode()
    kinds: list[Kind] = []

    def post(
        name,
        expected,
        group,
        doc=None,
        *,
        raw=None,
        ctype="application/json",
        auth=True,
        path="/generate",
        method="POST",
    ):
        """httpx from the bad address: ``doc`` as JSON (or ``raw`` bytes) with ``ctype`` (None: no Content-Type);
        ``auth`` True sends the token, False nothing, a string that Authorization header."""

        def send(t: Target) -> Answer:
            h = t.auth() if auth is True else ({"authorization": auth} if auth else {})
            if ctype and (doc is not None or raw is not None):
                h["content-type"] = ctype
            content = raw if raw is not None else (None if doc is None else json.dumps(doc).encode())
            with t.client("bad") as c:
                return http_answer(lambda: c.request(method, path, content=content, headers=h))

        kinds.append(Kind(name, expected, send, group))

    def wrong_field(name, **fields):
        post(name, 422, "fields", {**ok, **fields})

    def raw(name, expected, group, pieces: Callable[[Target], list[bytes]], gap_s: float = 0.0):
        kinds.append(Kind(name, expected, lambda t: raw_exchange(t, "bad", pieces(t), gap_s=gap_s), group))

    def head(t: Target, headers: dict, tail: bytes = b"") -> bytes:
        """POST /generate with the token and a JSON Content-Type (``headers`` add or replace), then ``tail``."""
        base = {"Authorization": f"Bearer {t.token}", "Content-Type": "application/json"}
        return request_bytes(t, "POST", "/generate", {**base, **headers}, tail)

    # 401: access.Guard, before the app: the Authorization header must be "Bearer <token>" (the scheme in any case).
    wrong = secrets.token_urlsafe(len(t.token))[: len(t.token)]
    post("no token", 401, "auth", ok, auth=False)
    post("wrong token", 401, "auth", ok, auth=f"Bearer {wrong}")
    post("token without 'Bearer '", 401, "auth", ok, auth=t.token)
    post("token plus one char", 401, "auth", ok, auth=f"Bearer {t.token}x")
    post("token less its last char", 401, "auth", ok, auth=f"Bearer {t.token[:-1]}")
    raw("'Bearer ' and no token (raw)", 401, "auth", lambda t: [head(t, {"Authorization": "Bearer "}, body)])
    post("Basic scheme", 401, "auth", ok, auth=f"Basic {t.token}")
    post("token in the query only", 401, "auth", ok, auth=False, path=f"/generate?token={t.token}")
    post("GET /health, wrong token", 401, "auth", auth=f"Bearer {wrong}", method="GET", path="/health")
    # 400: lm_serve.parse, a body that is not a JSON object.
    post("body not JSON", 400, "body", raw=b"prompt=def")
    post("body a JSON array", 400, "body", ["def "])
    post("body a JSON string", 400, "body", "def ")
    post("body JSON null", 400, "body", raw=b"null")
    post("empty body", 400, "body", raw=b"")
    post("invalid UTF-8", 400, "body", raw=b'{"prompt": "\xff\xfe"}')
    post("truncated JSON", 400, "body", raw=b'{"prompt": "def ')
    post("JSON then garbage", 400, "body", raw=b'{"prompt": "def "} x')
    deep = (t.body_limit - 2) // 2 - 100  # closed, under the body limit
    post(f"JSON nested {deep:,} deep", 400, "body", raw=b"[" * deep + b"]" * deep)
    post("JSON nested 50,000 deep, unclosed", 400, "body", raw=b"[" * 50_000)
    # 415: anything but application/json (parameters such as charset allowed).
    post("Content-Type text/plain", 415, "content-type", ok, ctype="text/plain")
    post("no Content-Type", 415, "content-type", ok, ctype=None)
    post("Content-Type form", 415, "content-type", raw=b"prompt=def", ctype="application/x-www-form-urlencoded")
    # 422: a missing or wrong field (lm_serve.parse, batching.sampling_problems).
    post("missing prompt", 422, "fields", {"max_new_tokens": 4})
    wrong_field("prompt a number", prompt=7)
    wrong_field("prompt null", prompt=None)
    wrong_field("prompt a list of ids", prompt=[100, 101, 102])
    wrong_field("empty prompt", prompt="")
    wrong_field(f"prompt of {t.block_size + 1} tokens (context {t.block_size})", prompt="x" * (t.block_size + 1))
    wrong_field("prompt a lone surrogate", prompt="\ud800")
    wrong_field("max_new_tokens 0", max_new_tokens=0)
    wrong_field(f"max_new_tokens {t.cap + 1} (cap {t.cap})", max_new_tokens=t.cap + 1)
    wrong_field("max_new_tokens a string", max_new_tokens="8")
    wrong_field("max_new_tokens 1.5", max_new_tokens=1.5)
    wrong_field("max_new_tokens true", max_new_tokens=True)
    wrong_field("temperature -1", temperature=-1)
    post("temperature NaN", 422, "fields", raw=b'{"prompt": "def ", "temperature": NaN}')
    post("temperature Infinity", 422, "fields", raw=b'{"prompt": "def ", "temperature": Infinity}')
    wrong_field("temperature a string", temperature="hot")
    wrong_field("top_p 0", top_p=0)
    wrong_field("top_p 1.5", top_p=1.5)
    wrong_field("top_k -1", top_k=-1)
    wrong_field("top_k 0", top_k=0)
    wrong_field("top_k 2.5", top_k=2.5)
    wrong_field("seed -5", seed=-5)
    wrong_field("seed 2**63", seed=2**63)
    wrong_field("stop a number", stop=5)
    wrong_field('stop [""]', stop=[""])
    wrong_field("stop [1]", stop=[1])
    wrong_field('stream "yes"', stream="yes")
    wrong_field("stream 1", stream=1)
    wrong_field("an unknown field", prompts="def ")
    # 413: serve._read_body, the declared length first, then the bytes counted as they stream.
    big = t.body_limit + 4096
    post(f"body of {big:,} bytes", 413, "size", raw=json.dumps({"prompt": "x" * big}).encode()[:big])
    raw("Content-Length 10,000,000, no body (raw)", 413, "size", lambda t: [head(t, {"Content-Length": "10000000"})])
    chunk = b"x" * 8192
    chunks = [b"%x\r\n%s\r\n" % (len(chunk), chunk)] * (t.body_limit // len(chunk) + 4) + [b"0\r\n\r\n"]
    chunked = {"Transfer-Encoding": "chunked"}
    raw("chunked body growing past the limit (raw)", 413, "size", lambda t: [head(t, chunked), *chunks], 0.002)
    # 400 / 431: h11 cannot parse it (serve._http_protocol answers in JSON and closes).
    size = str(len(body))
    raw("Content-Length 'abc' (raw)", 400, "http", lambda t: [head(t, {"Content-Length": "abc"}, body)])
    raw("garbled request line (raw)", 400, "http", lambda t: [b"POST/generate HTTP/1.1 nonsense\r\n\r\n"])
    junk = bytes(b for b in range(256) if b not in b"\r\n") * 4 + b"\r\n\r\n"
    raw("binary junk (raw)", 400, "http", lambda t: [junk])
    raw(
        "header without a colon (raw)",
        400,
        "http",
        lambda t: [head(t, {"Content-Length": size, "NoColon": None}, body)],
    )
    raw("malformed chunk size (raw)", 400, "http", lambda t: [head(t, chunked, b"zz\r\n{}\r\n0\r\n\r\n")])
    raw("Transfer-Encoding gzip (raw)", 400, "http", lambda t: [head(t, {"Transfer-Encoding": "gzip"}, body)])
    two = {"Content-Length": size, "content-length": "3"}  # two keys, two header lines
    raw("two different Content-Lengths (raw)", 400, "http", lambda t: [head(t, two, body)])
    # h11 counts the bytes of an incomplete request head only (max_incomplete_event_size, 16 KiB): a head that
    # arrives in pieces is refused once 16 KiB are in and it is not complete; one that arrives whole in a read
    # is not counted at all. Both are sent, a slow client's pieces and a real client's one write.
    padded = {"Content-Length": size, "X-Padding": "a" * 100_000}
    raw("100 KB header, 4 KB pieces 10 ms apart (raw)", 431, "http", lambda t: in_pieces(head(t, padded, body)), 0.01)
    raw("100 KB header, one write (raw)", 431, "http", lambda t: [head(t, padded, body)])
    # 404 / 405: Starlette's routing, answered in JSON by lm_serve's handler.
    post("GET /generate", 405, "route", method="GET")
    post("DELETE /generate", 405, "route", method="DELETE")
    post("POST /health", 405, "route", ok, path="/health")
    post("POST /nope", 404, "route", ok, path="/nope")
    post("GET /generate/../etc/passwd", 404, "route", method="GET", path="/generate/%2e%2e/etc/passwd")
    return kinds


def judge(answer: Answer, expected: int) -> list[str]:
    """What is wrong with an answer to a bad request ([] if nothing)."""
    if answer.status != expected:
        return [f"answered {answer.status}{f' ({answer.note})' if answer.note else ''}"]
    problems = []
    if answer.error_line() is None:
        problems.append(f'body is not {{"error": "..."}}: {answer.body[:80]!r}')
    if expected == 401 and "www-authenticate" not in answer.headers:
        problems.append("401 without WWW-Authenticate")
    if expected == 429 and not answer.headers.get("retry-after", "").isdigit():
        problems.append("429 without a Retry-After in seconds")
    return problems


# ---- the load ---------------------------------------------------------------------------------------------


def valid_request(t: Target, client, pacer: Pacer, prompt: str, stream: bool, want: list[int], tally: dict) -> bool:
    """One valid request, retried after a 429 or a lost connection: True once answered correctly."""
    import httpx

    body = {"prompt": prompt, "max_new_tokens": VALID_NEW_TOKENS, "temperature": 0, "stream": stream}
    media = "application/json" if tally["sent"] % 2 else "application/json; charset=utf-8"
    headers = {**t.auth(), "content-type": media}
    for _ in range(RETRIES + 1):
        pacer.wait()
        t0 = time.perf_counter()
        try:
            if stream:
                with client.stream("POST", "/generate", content=json.dumps(body), headers=headers) as r:
                    if r.status_code == 200:
                        tokens, done, _ = parse_sse(r.iter_lines())
                        ids = [e["token"] for e in tokens]
                        if done is None:
                            tally["problems"].append(f"stream {prompt!r}: no done event")
                            return False
                        if ids != done["tokens"] or "".join(e["text"] for e in tokens) != done["text"]:
                            tally["problems"].append(f"stream {prompt!r}: events do not join to the done event")
                            return False
                        got = ids
                    else:
                        r.read()
            else:
                r = client.post("/generate", content=json.dumps(body), headers=headers)
                got = r.json().get("tokens") if r.status_code == 200 else None
        except (httpx.HTTPError, ValueError) as e:
            tally["transport_errors"] += 1
            tally["problems"].append(f"{'stream' if stream else 'json'} {prompt!r}: {type(e).__name__}: {e}"[:200])
            time.sleep(0.5)
            continue
        if r.status_code == 429:
            tally["retried_429"] += 1
            tally["429_reasons"][
                "max_streams" if "max_streams" in (r.json().get("error", "") if r.content else "") else "other"
            ] += 1
            time.sleep(float(r.headers.get("retry-after", "1")))
            continue
        if r.status_code != 200:
            tally["problems"].append(f"{prompt!r}: answered {r.status_code}: {r.text[:120]}")
            return False
        if got != want:
            tally["problems"].append(f"{'stream' if stream else 'json'} {prompt!r}: tokens {got} != {want}")
            return False
        tally["latency_s"].append(time.perf_counter() - t0)
        return True
    tally["problems"].append(f"{prompt!r}: still refused after {RETRIES} retries")
    return False


def run_valid(t: Target, n: int, expected: dict[str, list[int]], pacer: Pacer) -> dict:
    jobs = collections.deque((PROMPTS[i % len(PROMPTS)], bool(i % 2)) for i in range(n))
    lock = threading.Lock()
    tally = {
        "sent": 0,
        "answered_correctly": 0,
        "lost": 0,
        "retried_429": 0,
        "transport_errors": 0,
        "429_reasons": collections.Counter(),
        "problems": [],
        "latency_s": [],
        "streamed": 0,
    }

    def worker() -> None:
        with t.client("valid") as client:
            while True:
                with lock:
                    if not jobs:
                        return
                    prompt, stream = jobs.popleft()
                    tally["sent"] += 1
                    tally["streamed"] += stream
                ok = valid_request(t, client, pacer, prompt, stream, expected[prompt], tally)
                with lock:
                    tally["answered_correctly" if ok else "lost"] += 1

    threads = [threading.Thread(target=worker, name=f"valid-{i}") for i in range(VALID_THREADS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    lat = sorted(tally.pop("latency_s"))
    tally["median_latency_ms"] = round(1000 * lat[len(lat) // 2], 1) if lat else None
    tally["429_reasons"] = dict(tally["429_reasons"])
    tally["problems"] = tally["problems"][:20]
    return tally


def run_bad(t: Target, kinds: list[Kind], per_kind: int, pacer: Pacer) -> dict:
    """Every kind ``per_kind`` times, round-robin, so each kind is spread over the whole load."""
    table = {
        k.name: {"group": k.group, "expected": k.expected, "sent": 0, "got": collections.Counter(), "problems": []}
        for k in kinds
    }
    for _ in range(per_kind):
        for k in kinds:
            pacer.wait()
            answer = k.send(t)
            row = table[k.name]
            row["sent"] += 1
            row["got"][str(answer.status)] += 1
            row["problems"] += [p for p in judge(answer, k.expected) if p not in row["problems"]]
            row.setdefault("error", (answer.error_line() or "")[:200])  # the first answer's, to read
            if answer.note and answer.status == k.expected:
                row.setdefault("notes", [])
                if answer.note not in row["notes"]:
                    row["notes"].append(answer.note)
    for row in table.values():
        row["got"] = dict(row["got"])
        row["ok"] = not row["problems"]
    return table


def run_burst(t: Target) -> dict:
    """BURST ``GET /health`` from one address at once: the bucket's worth answered, the rest 429."""
    answers: list[Answer] = []
    lock = threading.Lock()
    barrier = threading.Barrier(4)

    def worker(n: int) -> None:
        with t.client("burst", headers=t.auth()) as c:
            c.get("/card")  # connect first; not counted (its bucket token comes back in the pause)
            barrier.wait()
            time.sleep(0.3)
            for _ in range(n):
                a = http_answer(lambda: c.get("/health"))
                with lock:
                    answers.append(a)

    threads = [threading.Thread(target=worker, args=(BURST // 4,)) for _ in range(4)]
    for th in threads:
        th.start()
    t0 = time.perf_counter()
    for th in threads:
        th.join()
    took = time.perf_counter() - t0
    got = collections.Counter(str(a.status) for a in answers)
    problems = sorted({p for a in answers if a.status == 429 for p in judge(a, 429)})
    problems += [f"answered {s}" for s in got if s not in ("200", "429")]
    most = t.rate_limit + math.ceil(took * t.rate_limit) + 1
    if not got.get("429"):
        problems.append("no 429: the rate limit did not hold")
    if got.get("200", 0) > most:
        problems.append(f"{got['200']} answered 200, over the bucket's {t.rate_limit:g} + refill ({most})")
    return {
        "group": "rate",
        "expected": 429,
        "sent": len(answers),
        "got": dict(got),
        "problems": problems,
        "ok": not problems,
        "seconds": round(took, 3),
        "most_200": most,
    }


def run_flood(t: Target) -> dict:
    """More streams than max_streams from one address: FLOOD_AT_ONCE at once (the rate bucket's worth), then
    paced ones until FLOOD_REFUSALS were refused with the stream cap; all held open, then closed."""
    close = threading.Event()
    results: list[dict] = []
    lock = threading.Lock()
    body = json.dumps({"prompt": "def ", "max_new_tokens": t.cap, "temperature": 0, "stream": True})

    def one(started: threading.Event) -> None:
        res: dict = {}
        try:
            with t.client("burst") as c:
                h = {**t.auth(), "content-type": "application/json"}
                with c.stream("POST", "/generate", content=body, headers=h) as r:
                    res["status"] = r.status_code
                    res["headers"] = {k.lower(): v for k, v in r.headers.items()}
                    if r.status_code == 200:  # the headers came: the server took the stream (it may wait for a row)
                        started.set()
                        close.wait(TIMEOUT_S)  # held open, unread; leaving the block closes the connection
                    else:
                        res["body"] = r.read()
                        started.set()
        except Exception as e:  # noqa: BLE001 - recorded
            res["status"] = "connection"
            res["note"] = f"{type(e).__name__}: {e}"[:200]
        finally:
            started.set()
            with lock:
                results.append(res)

    threads = []

    def launch() -> threading.Event:
        started = threading.Event()
        th = threading.Thread(target=one, args=(started,), name=f"flood-{len(threads)}")
        threads.append(th)
        th.start()
        return started

    def refused_by_cap() -> int:
        with lock:
            return sum(r.get("status") == 429 and b"max_streams" in r.get("body", b"") for r in results)

    firsts = [launch() for _ in range(FLOOD_AT_ONCE)]
    for s in firsts:
        s.wait(TIMEOUT_S)
    extra = 0
    while refused_by_cap() < FLOOD_REFUSALS and extra < FLOOD_EXTRA:
        time.sleep(1.0 / (PACE * t.rate_limit))
        launch().wait(TIMEOUT_S)
        extra += 1
    time.sleep(0.5)
    close.set()
    for th in threads:
        th.join()
    got = collections.Counter(str(r.get("status")) for r in results)
    problems = []
    for r in results:
        if r.get("status") == 429:
            a = Answer(429, r["headers"], r.get("body", b""))
            problems += judge(a, 429)
            if "max_streams" not in (a.error_line() or ""):
                problems.append(f"a 429 that is not the stream cap: {a.error_line()}")
        elif r.get("status") != 200:
            problems.append(f"answered {r.get('status')} {r.get('note', '')}".strip())
    if refused_by_cap() == 0:
        problems.append("no stream refused: max_streams did not hold")
    problems = sorted(set(problems))
    return {
        "group": "streams",
        "expected": 429,
        "sent": len(results),
        "got": dict(got),
        "problems": problems,
        "ok": not problems,
        "held_open_then_closed": got.get("200", 0),
    }


def run_leavers(t: Target, n_streams: int, n_raw: int, pacer: Pacer) -> dict:
    """Clients that leave: streams closed after DISCONNECT_EVENTS events, JSON requests closed before their
    answer, uploads closed mid-body."""
    import httpx

    out = {
        "streams": n_streams,
        "streams_closed_mid_stream": 0,
        "streams_finished_before_close": 0,
        "retried_429": 0,
        "json_abandoned": n_raw,
        "uploads_abandoned": n_raw,
        "early_answers": {},
        "problems": [],
    }
    body = json.dumps({"prompt": "class A:\n", "max_new_tokens": t.cap, "temperature": 0.8, "stream": True})
    headers = {**t.auth(), "content-type": "application/json"}
    with t.client("leave") as c:
        for _ in range(n_streams):
            for _ in range(RETRIES + 1):
                pacer.wait()
                try:
                    with c.stream("POST", "/generate", content=body, headers=headers) as r:
                        if r.status_code == 429:
                            r.read()
                            out["retried_429"] += 1
                            time.sleep(float(r.headers.get("retry-after", "1")))
                            continue
                        if r.status_code != 200:
                            out["problems"].append(f"answered {r.status_code}: {r.read()[:100]!r}")
                            break
                        _, done, _ = parse_sse(itertools.islice(r.iter_lines(), 2 * DISCONNECT_EVENTS))
                        out["streams_finished_before_close" if done else "streams_closed_mid_stream"] += 1
                        break
                except httpx.HTTPError as e:
                    out["problems"].append(f"{type(e).__name__}: {e}"[:200])
                    break
    early = collections.Counter()
    json_body = json.dumps({"prompt": "import os\n", "max_new_tokens": t.cap, "temperature": 0}).encode()
    for _ in range(n_raw):
        for what, head, payload in (
            ("json", {**headers, "Content-Length": str(len(json_body))}, json_body),
            ("upload", {**headers, "Content-Length": "1000"}, b'{"prompt":'),
        ):
            pacer.wait()
            try:
                sock = socket.create_connection((t.host, t.port), timeout=5, source_address=(t.sources["leave"], 0))
                sock.sendall(request_bytes(t, "POST", "/generate", head, payload))
                if select.select([sock], [], [], 0.1)[0]:  # an answer before we leave: a 429 in the flood
                    a = read_response(sock)
                    early[f"{what} {a.status}"] += 1
                sock.close()
            except OSError as e:
                out["problems"].append(f"{what}: {type(e).__name__}: {e}"[:200])
    out["early_answers"] = dict(early)
    return out


def health(t: Target) -> tuple[int | str, dict]:
    with t.client("valid") as c:
        a = http_answer(lambda: c.get("/health", headers=t.auth()))
    try:
        return a.status, json.loads(a.body) if a.status == 200 else {"error": a.error_line(), "note": a.note}
    except ValueError:
        return a.status, {"body": a.body[:200].decode(errors="replace")}


def wait_idle(t: Target, limit_s: float) -> tuple[int | str, dict, float | None]:
    """/health until ``in_flight`` is 0 (polled 4 times a second, under the rate limit), at most ``limit_s``;
    the seconds it took (None: it did not)."""
    t0 = time.monotonic()
    while True:
        status, info = health(t)
        took = time.monotonic() - t0
        if status == 200 and info.get("in_flight") == 0:
            return status, info, round(took, 2)
        if took > limit_s or status != 200:
            return status, info, None
        time.sleep(0.25)


def leave_checks(t: Target) -> dict:
    """One client of each kind leaves a quiet server: its slot must be free QUIET_CHECK_S later and no row
    decoding (``decode_steps`` still), long before the ``--max-new-tokens`` it asked for would have taken.
    A stream read 3 events in; a JSON request once in flight; an upload 10 bytes into the 1000 it declared."""
    results = {}
    json_body = json.dumps({"prompt": "import os\n", "max_new_tokens": t.cap, "temperature": 0}).encode()
    stream_body = json.dumps({"prompt": "def ", "max_new_tokens": t.cap, "temperature": 0, "stream": True})
    headers = {**t.auth(), "content-type": "application/json"}
    for kind in ("stream closed after 3 events", "JSON request closed once in flight", "upload closed mid-body"):
        row: dict = {}
        _, before, row["idle_before_s"] = wait_idle(t, 30)
        if kind.startswith("stream"):
            with t.client("leave") as c, c.stream("POST", "/generate", content=stream_body, headers=headers) as r:
                row["status"] = r.status_code
                lines = r.iter_lines()  # kept: a dropped iterator closes the response, leaving before the check
                _, done, row["events_read"] = parse_sse(itertools.islice(lines, 2 * DISCONNECT_EVENTS))
                row["in_flight_before_leaving"] = health(t)[1].get("in_flight")
            row["finished_before_leaving"] = done is not None
        else:
            sock = socket.create_connection((t.host, t.port), timeout=5, source_address=(t.sources["leave"], 0))
            if kind.startswith("JSON"):
                sock.sendall(
                    request_bytes(t, "POST", "/generate", {**headers, "Content-Length": str(len(json_body))}, json_body)
                )
                for _ in range(20):  # until the server has it decoding
                    if health(t)[1].get("in_flight"):
                        break
                    time.sleep(0.05)
            else:
                sock.sendall(
                    request_bytes(t, "POST", "/generate", {**headers, "Content-Length": "1000"}, b'{"prompt":')
                )
                time.sleep(0.2)
            row["in_flight_before_leaving"] = health(t)[1].get("in_flight")
            row["answered_before_leaving"] = bool(select.select([sock], [], [], 0)[0])
            sock.close()
        time.sleep(QUIET_CHECK_S)
        _, h1 = health(t)
        time.sleep(QUIET_CHECK_S)
        _, h2 = health(t)
        row.update(
            in_flight_after=h1.get("in_flight"),
            decode_steps_after_leaving=h2.get("decode_steps", 0) - h1.get("decode_steps", 0),
            cancelled_delta=h2.get("cancelled", 0) - before.get("cancelled", 0),
            served_delta=h2.get("served", 0) - before.get("served", 0),
        )
        row["freed"] = h1.get("in_flight") == 0 and row["decode_steps_after_leaving"] == 0
        results[kind] = row
    return results


def expected_answers(t: Target, pacer: Pacer) -> dict[str, list[int]]:
    out = {}
    with t.client("valid") as c:
        for prompt in PROMPTS:
            pacer.wait()
            r = c.post(
                "/generate",
                json={"prompt": prompt, "max_new_tokens": VALID_NEW_TOKENS, "temperature": 0},
                headers=t.auth(),
            )
            r.raise_for_status()
            out[prompt] = r.json()["tokens"]
    return out


def chaos(t: Target, args) -> dict:
    rate = PACE * t.rate_limit
    pacers = {who: Pacer(rate) for who in ("valid", "bad", "leave")}
    expected = expected_answers(t, pacers["valid"])
    kinds = bad_kinds(t)
    out: dict = {"expected": {p: len(v) for p, v in expected.items()}}

    def flood_then_burst() -> None:
        time.sleep(0.3)
        out["flood"] = run_flood(t)
        time.sleep(1.5)  # the address's bucket fills again (20 a second)
        out["burst"] = run_burst(t)

    jobs = {
        "valid": lambda: out.__setitem__("valid", run_valid(t, args.valid, expected, pacers["valid"])),
        "bad": lambda: out.__setitem__("bad", run_bad(t, kinds, args.per_kind, pacers["bad"])),
        "burst": flood_then_burst,
        "leave": lambda: out.__setitem__(
            "disconnects", run_leavers(t, args.disconnects, max(2, args.disconnects // 5), pacers["leave"])
        ),
    }
    errors = {}

    def guarded(name, job):
        try:
            job()
        except Exception:  # noqa: BLE001 - a client bug must not hide the server's state
            import traceback

            errors[name] = traceback.format_exc()[-2000:]

    threads = [threading.Thread(target=guarded, args=item, name=item[0]) for item in jobs.items()]
    t0 = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    out["load_s"] = round(time.perf_counter() - t0, 2)
    out["client_errors"] = errors
    out["kinds"] = len(kinds)
    return out


# ---- the run ----------------------------------------------------------------------------------------------


def in_namespace_command(argv: list[str]) -> list[str] | None:
    """The command that runs this script again in a new user + network namespace, the addresses on its lo;
    None where unshare cannot make one here."""
    unshare, ip = shutil.which("unshare"), shutil.which("ip") or "/usr/sbin/ip"
    if unshare is None or not Path(ip).exists():
        return None
    setup = " && ".join([f"{ip} link set lo up"] + [f"{ip} addr add {a}/32 dev lo" for a in NAMESPACE.values()])
    probe = subprocess.run([unshare, "-rn", "sh", "-c", setup], capture_output=True, timeout=30)
    if probe.returncode != 0:
        return None
    again = shlex.join([sys.executable, str(Path(__file__).resolve()), "--in-namespace", *argv])
    return [unshare, "-rn", "sh", "-c", f"{setup} && exec {again}"]


def benchmark(args, network: dict) -> int:
    started = time.perf_counter()
    env = cpu_environment()
    addresses = network["addresses"]
    print(f"{env['cpu_name']}; server on {addresses['server']} ({network['how']})", flush=True)
    token = secrets.token_urlsafe(32)
    server = None
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        try:
            t_train = time.perf_counter()
            result, bundle, model = train_and_export(args, tmp)
            train_s = time.perf_counter() - t_train
            print(f"trained {args.steps} steps and exported in {train_s:.0f} s; serving", flush=True)
            server = Server(bundle, addresses["server"], token, args, tmp)
            host, port = server.wait_for_banner()
            t = Target(host, port, token, addresses, 0, args.max_new_tokens, 0, args.rate_limit)
            status, info = health(t)
            if status != 200:
                raise RuntimeError(f"GET /health answered {status}: {info}")
            t.block_size, t.body_limit = info["block_size"], info["limits"]["max_body_bytes"]
            t.cap = info["limits"]["max_new_tokens"]
            print(f"listening on {t.url}; the load starts", flush=True)
            load = chaos(t, args)
            alive = server.proc.poll() is None
            status_after, health_after, waited = wait_idle(t, 10)
            print(f"the load took {load['load_s']:.0f} s; one client of each kind leaves the quiet server", flush=True)
            left = leave_checks(t)
            _, health_final, drained = wait_idle(t, 30)  # a request left running would hold SIGINT up
            alive = alive and server.proc.poll() is None
            exit_code = server.stop()
            tracebacks, send_warnings, log_tail = server.log_lines()
        finally:
            if server is not None and server.proc.poll() is None:
                server.proc.kill()
                server.proc.wait(10)
    table = {**load.get("bad", {})}
    for name, key in (
        ("over the rate limit (burst of 60 GET /health)", "burst"),
        ("streams beyond max_streams (flood)", "flood"),
    ):
        if key in load:
            table[name] = load[key]
    valid = load.get("valid", {"sent": 0, "answered_correctly": 0, "lost": args.valid})
    mismatched = [k for k, row in table.items() if not row["ok"]]
    freed = waited is not None
    not_freed = [k for k, row in left.items() if not row["freed"]]
    crashed = not alive
    passed = (
        not crashed
        and valid["lost"] == 0
        and valid["answered_correctly"] == args.valid
        and not mismatched
        and freed
        and not not_freed
        and tracebacks == 0
        and not load["client_errors"]
        and len(load.get("bad", {})) >= 30
    )
    bad_sent = sum(row["sent"] for row in load.get("bad", {}).values())
    summary = (
        f"{'PASS' if passed else 'FAIL'}: {int(crashed)} server crashes; valid {valid['answered_correctly']}/"
        f"{args.valid} answered correctly ({valid['lost']} lost, {valid.get('retried_429', 0)} retried after 429); "
        f"{len(load.get('bad', {})) - len([k for k in mismatched if k in load.get('bad', {})])}/"
        f"{len(load.get('bad', {}))} bad kinds ({bad_sent} requests) answered as expected; "
        f"burst {load.get('burst', {}).get('got')}; flood {load.get('flood', {}).get('got')}; "
        f"{load.get('disconnects', {}).get('streams_closed_mid_stream', 0)} streams left mid-stream; "
        f"in_flight after: {health_after.get('in_flight')}; quiet leavers freed {len(left) - len(not_freed)}/"
        f"{len(left)}{' (not: ' + ', '.join(not_freed) + ')' if not_freed else ''}; "
        f"{tracebacks} tracebacks; server exit {exit_code}"
    )
    payload = {
        "benchmark": "lm-serve-abuse",
        "smoke": args.smoke,
        "environment": {**env, "wall_s": round(time.perf_counter() - started, 1)},
        "config": {
            "model": model["shape"],
            "params": model["params"],
            "loss": result.metrics.get("loss"),
            "steps": args.steps,
            "train_and_export_s": round(train_s, 1),
            "server_command": ["python", "-m", "workbench.cli", "serve", "BUNDLE", *server.flags],
            "server_limits": info["limits"],
            "network": network,
            "settings": {k: v for k, v in vars(args).items() if k not in ("in_namespace",)},
            "valid_new_tokens": VALID_NEW_TOKENS,
            "client_pace_per_s": PACE * args.rate_limit,
        },
        "kinds": table,
        "valid": valid,
        "disconnects": load.get("disconnects"),
        "crashes": int(crashed),
        "server_alive_after": alive,
        "health_after": {"http_status": status_after, **health_after},
        "in_flight_freed_within_s": waited,
        "leave_checks": left,
        "health_final": {"drained_within_s": drained, **health_final},
        "server_exit_code": exit_code,
        "tracebacks_in_server_log": tracebacks,
        "send_to_departed_client_warnings": send_warnings,
        "server_log_tail": log_tail if tracebacks else "",
        "client_errors": load["client_errors"],
        "mismatches": {k: table[k]["problems"] for k in mismatched},
        "load_s": load["load_s"],
        "duration_s": round(time.perf_counter() - started, 1),
        "passed": passed,
        "summary": summary,
    }
    path = save("lm-serve-abuse-smoke" if args.smoke else "lm-serve-abuse", payload)
    report(payload)
    print(f"saved {path}")
    return 0 if passed else 1


def report(payload: dict) -> None:
    import pandas as pd

    rows = [
        {
            "kind": name,
            "group": row["group"],
            "expected": row["expected"],
            "sent": row["sent"],
            "got": ", ".join(f"{s}: {n}" for s, n in sorted(row["got"].items())),
            "ok": row["ok"],
        }
        for name, row in payload["kinds"].items()
    ]
    with pd.option_context("display.max_rows", None, "display.width", 200, "display.max_colwidth", 60):
        print(pd.DataFrame(rows).to_string(index=False))
    for name, problems in payload["mismatches"].items():
        print(f"  mismatch, {name}: {'; '.join(problems)}")
    v, d, h = payload["valid"], payload["disconnects"] or {}, payload["health_after"]
    print(f"valid: {json.dumps({k: v[k] for k in v if k != 'problems'})}")
    for p in v.get("problems", [])[:5]:
        print(f"  {p}")
    print(f"disconnects: {json.dumps(d)}")
    print(
        f"after: /health {h.get('http_status')}, in_flight {h.get('in_flight')}, served {h.get('served')}, "
        f"cancelled {h.get('cancelled')}, refused {h.get('refused')}; alive {payload['server_alive_after']}, "
        f"exit {payload['server_exit_code']}, tracebacks {payload['tracebacks_in_server_log']}"
    )
    for kind, row in payload["leave_checks"].items():
        print(f"quiet server, {kind}: {'freed' if row['freed'] else 'NOT FREED'} {json.dumps(row)}")
    for name, tb in payload["client_errors"].items():
        print(f"client error in {name}:\n{tb}")
    print(payload["summary"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=200, help="training steps of the served model (default 200)")
    p.add_argument("--valid", type=int, default=200, help="valid requests, JSON and streamed (default 200)")
    p.add_argument("--per-kind", type=int, default=5, help="requests of each bad kind (default 5)")
    p.add_argument("--disconnects", type=int, default=20, help="streams closed after a few events (default 20)")
    p.add_argument("--max-streams", type=int, default=24, help="the server's --max-streams (default 24)")
    p.add_argument("--rate-limit", type=float, default=20, help="the server's --rate-limit (default 20)")
    p.add_argument("--max-new-tokens", type=int, default=1024, help="the server's --max-new-tokens (default 1024)")
    p.add_argument("--server-threads", type=int, default=1, help="the server's --threads (default 1)")
    p.add_argument("--smoke", action="store_true", help="seconds long: a tiny model, fewer requests")
    p.add_argument("--no-namespace", action="store_true", help="serve on 127.0.0.2 without a network namespace")
    p.add_argument("--in-namespace", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.smoke:
        defaults = {"steps": 200, "valid": 200, "per_kind": 5, "disconnects": 20}
        smoke = {"steps": 40, "valid": 20, "per_kind": 2, "disconnects": 4}
        for k, v in smoke.items():
            if getattr(args, k) == defaults[k]:
                setattr(args, k, v)
    if args.in_namespace:
        how = "a user + network namespace of its own (unshare -rn), the addresses on its lo"
        sys.exit(benchmark(args, {"namespace": True, "how": how, "addresses": NAMESPACE}))
    command = None if args.no_namespace else in_namespace_command(sys.argv[1:])
    if command is not None:
        sys.exit(subprocess.run(command, cwd=REPO).returncode)
    why = "--no-namespace" if args.no_namespace else "unshare -rn is not available here"
    how = f"loopback 127.0.0.x ({why}), the token required anyway"
    sys.exit(benchmark(args, {"namespace": False, "how": how, "addresses": LOOPBACK}))


if __name__ == "__main__":
    main()
