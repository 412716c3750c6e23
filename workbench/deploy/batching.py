"""Decode many requests to one GPT together: the scheduler behind ``POST /generate``.

A server that decodes one request at a time leaves most of a CPU's (or GPU's) arithmetic idle: one
decode step reads every weight to compute one token. Decoding the requests in flight as one batch
reads the weights once for all of them. Three policies (``BATCHING``), so they can be compared:

- ``continuous``: between any two decode steps, requests that finished leave and waiting ones join
  (iteration-level scheduling: Orca, Yu et al. 2022; the scheduler vLLM made standard);
- ``static``: waiting requests join only when the batch is empty, so a batch runs until its longest
  request ends;
- ``off``: one request at a time.

The requests that join together are prefilled together (their prompts left-padded into one forward
pass, giving each its first token), then their keys and values are merged into the batch's KV cache.
Rows are right-aligned: a row shorter than the longest is left-padded, and the model is told which cache
slots are padding (``real``), so it attends to its own tokens only and counts positions from its own first
token: every row computes what it would alone (test: each greedy output equals the request's output
served alone). When the longest row leaves, the padding columns every row has are dropped.

A row whose tokens fill the model's context (``block_size``) keeps its last ``block_size // 2`` tokens
and is prefilled again from them (a context shift, as llama.cpp does), since every kept token's
position, so its keys and values, changed; then it rejoins.

Example:
    >>> import torch
    >>> from workbench.data import train_tokenizer
    >>> from workbench.models.gpt import GPT
    >>> _ = torch.manual_seed(0)
    >>> model = GPT(vocab_size=256, n_layer=1, n_head=2, n_embd=16, block_size=16).eval()
    >>> engine = DecodeEngine(model, train_tokenizer("byte", ""), batching="continuous")
    >>> done = [engine.generate("ab", Sampling(max_new_tokens=4, temperature=0)) for _ in range(2)]
    >>> done[0]["tokens"] == done[1]["tokens"], done[0]["finish_reason"], len(done[0]["tokens"])
    (True, 'length', 4)
    >>> engine.close()
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from .._errors import one_line
from ..data import Tokenizer
from ..models.generation import left_pad, sample
from ..models.gpt import GPT, KVCache

BATCHING = ("continuous", "static", "off")
FINISH_REASONS = ("length", "stop", "cancelled", "error")


@dataclass(frozen=True)
class Sampling:
    """How one request's tokens are chosen: ``temperature`` 0 is greedy; above, sampled from the
    ``top_k`` likeliest and/or the fewest reaching ``top_p``, repeatably with ``seed``. Decoding ends
    after ``max_new_tokens`` or where the text reaches one of ``stop`` (which is not returned)."""

    max_new_tokens: int = 64
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()

    def __post_init__(self):
        for problem in sampling_problems(dataclasses.asdict(self)):
            raise ValueError(problem)


def sampling_problems(fields: dict[str, Any]) -> list[str]:
    """Why these sampling fields cannot be used, one line each (a server answers them with a 422).

    Example:
        >>> for line in sampling_problems({"max_new_tokens": 0, "temperature": -1, "top_p": 2}):
        ...     print(line)
        max_new_tokens must be an integer >= 1 (got 0)
        temperature must be a number >= 0 (got -1): 0 is greedy
        top_p must be a number in (0, 1] (got 2)
    """

    def number(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v and abs(v) != float("inf")

    def integer(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    problems = []
    checks = (
        ("max_new_tokens", lambda v: integer(v) and v >= 1, "an integer >= 1"),
        ("temperature", lambda v: number(v) and v >= 0, "a number >= 0"),
        ("top_k", lambda v: v is None or (integer(v) and v >= 1), "an integer >= 1 or null"),
        ("top_p", lambda v: v is None or (number(v) and 0 < v <= 1), "a number in (0, 1]"),
        ("seed", lambda v: v is None or (integer(v) and 0 <= v < 2**63), "an integer in [0, 2**63) or null"),
        (
            "stop",
            lambda v: isinstance(v, (list, tuple)) and all(isinstance(s, str) and s for s in v),
            "a list of non-empty strings",
        ),
    )
    for name, fine, wants in checks:
        if name in fields and not fine(fields[name]):
            hint = ": 0 is greedy" if name == "temperature" else ""
            problems.append(f"{name} must be {wants} (got {fields[name]!r}){hint}")
    return problems


@dataclass(eq=False)
class Stream:
    """One request in flight: its prompt, how to sample, what it produced, and who hears about it.

    ``on_event`` is called from the engine's thread with ``{"type": "token", "token": id, "text": piece}``
    for each token (``text`` is what became printable: held back while it might still start a stop
    string or end inside a character), then once ``{"type": "done", ...}`` (see ``DecodeEngine.submit``).
    """

    prompt: list[int]
    sampling: Sampling
    on_event: Callable[[dict[str, Any]], None]
    tokens: list[int] = field(default_factory=list)
    text: str = ""
    sent_chars: int = 0  # of ``text``, already sent as pieces
    submitted: float = field(default_factory=time.perf_counter)
    first_token_at: float | None = None
    prompt_truncated: int = 0
    context_shifts: int = 0
    cancelled: bool = False
    finish_reason: str | None = None
    generator: torch.Generator | None = None

    def history(self) -> list[int]:
        return self.prompt + self.tokens


class DecodeEngine:
    """A decode loop in a background thread that serves ``submit``-ted requests under a ``BATCHING`` policy,
    at most ``max_batch`` rows at once (the rest wait, first come first served). ``threads``: torch's CPU
    threads in the loop (None: as they are).
    """

    def __init__(
        self,
        model: GPT,
        tokenizer: Tokenizer,
        *,
        batching: str = "continuous",
        max_batch: int = 16,
        threads: int | None = None,
    ):
        if batching not in BATCHING:
            raise ValueError(f"batching must be one of {', '.join(BATCHING)} (got {batching!r})")
        if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
            raise ValueError(f"max_batch must be an integer >= 1 (got {max_batch!r})")
        self.model, self.tokenizer = model.eval(), tokenizer
        self.batching, self.max_batch = batching, 1 if batching == "off" else max_batch
        self.block_size = model.shape.block_size
        self.device = model.transformer.wte.weight.device
        self.steps = 0  # decode steps run: a batch of n rows is one step
        self.rows_decoded = 0  # tokens those steps produced
        self._waiting: deque[Stream] = deque()
        self._rows: list[Stream] = []
        self._cache: KVCache | None = None
        self._real: torch.Tensor | None = None  # (rows, cache.pos): False at left padding
        self._pending: list[int] = []  # per row, the token chosen last, not yet in the cache
        self._wake = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, args=(threads,), name="workbench-decode", daemon=True)
        self._thread.start()

    # ---- the API --------------------------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        """Requests decoding or waiting."""
        with self._wake:
            return len(self._rows) + len(self._waiting)

    def submit(self, prompt: str | Sequence[int], sampling: Sampling, on_event: Callable[[dict], None]) -> Stream:
        """Queue a request; returns its ``Stream`` (pass it to ``cancel``). ``prompt``: text, or token ids.
        Longer than ``block_size`` tokens, only its last ``block_size`` are read (``prompt_truncated`` says
        how many were dropped). The final event: ``{"type": "done", "finish_reason": one of FINISH_REASONS,
        "text", "tokens", "prompt_tokens", "completion_tokens", "prompt_truncated", "context_shifts",
        "ttft_ms", "total_ms", "tokens_per_s", "error" (for "error")}``."""
        ids = self.tokenizer.encode(prompt) if isinstance(prompt, str) else [int(i) for i in prompt]
        if not ids:
            raise ValueError("the prompt is empty: give it at least one token")
        vocab = self.model.shape.vocab_size
        if not all(0 <= i < vocab for i in ids):
            raise ValueError(f"the prompt has token ids outside the vocabulary 0..{vocab - 1}")
        stream = Stream(
            ids[-self.block_size :], sampling, on_event, prompt_truncated=max(0, len(ids) - self.block_size)
        )
        if sampling.seed is not None:
            stream.generator = torch.Generator(self.device).manual_seed(sampling.seed)
        with self._wake:
            if self._closed:
                raise RuntimeError("the decode engine is closed")
            self._waiting.append(stream)
            self._wake.notify()
        return stream

    def cancel(self, stream: Stream) -> None:
        """Stop decoding ``stream`` (its client left): its slot is freed before the next decode step."""
        with self._wake:
            stream.cancelled = True
            self._wake.notify()

    def generate(self, prompt: str | Sequence[int], sampling: Sampling, timeout_s: float | None = None) -> dict:
        """Submit and wait: the final event (see ``submit``)."""
        done: dict[str, Any] = {}
        finished = threading.Event()

        def hear(event: dict) -> None:
            if event["type"] == "done":
                done.update(event)
                finished.set()

        stream = self.submit(prompt, sampling, hear)
        if not finished.wait(timeout_s):
            self.cancel(stream)
            raise TimeoutError(f"no answer within {timeout_s} s")
        return done

    def close(self, timeout_s: float = 10.0) -> None:
        """Cancel what is in flight and stop the thread."""
        with self._wake:
            self._closed = True
            for stream in [*self._rows, *self._waiting]:
                stream.cancelled = True
            self._wake.notify()
        self._thread.join(timeout_s)

    # ---- the loop -------------------------------------------------------------------------------------

    def _loop(self, threads: int | None) -> None:
        if threads is not None:
            torch.set_num_threads(threads)
        while True:
            with self._wake:
                while not self._closed and not self._rows and not self._waiting:
                    self._wake.wait()
                if self._closed and not self._rows and not self._waiting:
                    return
                joining = self._admit()
            try:
                with torch.no_grad():
                    self._drop_finished()
                    if joining:
                        self._join(joining)
                    self._drop_finished()
                    if self._rows:
                        self._step()
                        self._drop_finished()
            except Exception as e:  # noqa: BLE001 - a failed step ends its requests, never the server
                for stream in [*self._rows, *joining]:
                    if stream.finish_reason is None:
                        self._finish(stream, "error", one_line(e))
                self._rows, self._cache, self._real, self._pending = [], None, None, []

    def _admit(self) -> list[Stream]:
        """The waiting requests that join now (under the lock), cancelled ones answered and dropped."""
        joining = []
        if self.batching == "static" and self._rows:
            return joining
        while self._waiting and len(self._rows) + len(joining) < self.max_batch:
            stream = self._waiting.popleft()
            if stream.cancelled:
                self._finish(stream, "cancelled")
            else:
                joining.append(stream)
        for stream in [s for s in self._waiting if s.cancelled]:
            self._waiting.remove(stream)
            self._finish(stream, "cancelled")
        return joining

    def _join(self, streams: list[Stream], keep: int | None = None) -> None:
        """Prefill the ``streams`` that arrived together in one forward pass (left-padded to the longest), each
        its last ``keep`` tokens (all of them: None); choose each one's next token, and merge their keys and
        values into the batch's cache as new rows (one that finished at once is dropped by the next
        ``_drop_finished``)."""
        prompts = [torch.tensor(s.history()[-(keep or self.block_size) :]) for s in streams]
        ids, real = left_pad(prompts, self.device)
        real = torch.ones_like(ids, dtype=torch.bool) if real is None else real
        cache = self.model.new_cache(len(streams))
        logits = self.model(ids, cache=cache, real=real, last_only=True)[:, -1]
        greedy = logits.argmax(dim=-1).tolist()
        for i, stream in enumerate(streams):
            self._emit(stream, logits[i], greedy[i])
        if not self._rows:
            self._cache, self._real = cache, real
        else:
            self._cache, self._real = _merge(self._cache, self._real, cache, real, self.model)
        self._rows += streams
        self._pending += [s.tokens[-1] for s in streams]

    def _step(self) -> None:
        """One token for every row; rows whose context is full shift theirs first."""
        full = [i for i, n in enumerate(self._real.sum(dim=1).tolist()) if n >= self.block_size]
        if full:
            shifted = [self._rows[i] for i in full]
            self._keep_rows([i for i in range(len(self._rows)) if i not in full])
            for stream in shifted:
                stream.context_shifts += 1
            self._join(shifted, keep=self.block_size // 2)
            if not self._rows:
                return
        ids = torch.tensor(self._pending, device=self.device)[:, None]
        real = torch.cat((self._real, torch.ones(len(self._rows), 1, dtype=torch.bool, device=self.device)), dim=1)
        logits = self.model(ids, cache=self._cache, real=real, last_only=True)[:, -1]
        self._real = real
        self.steps += 1
        self.rows_decoded += len(self._rows)
        greedy = logits.argmax(dim=-1).tolist()  # one call for every row; sampled rows draw their own
        for i, stream in enumerate(self._rows):
            self._emit(stream, logits[i], greedy[i])
            self._pending[i] = stream.tokens[-1]

    def _emit(self, stream: Stream, logits: torch.Tensor, greedy: int) -> bool:
        """Choose ``stream``'s next token (``greedy``, the likeliest, where its temperature is 0) and tell its
        client; False once it is finished."""
        s = stream.sampling
        if s.temperature == 0:
            token = greedy
        else:
            token = int(sample(logits[None].float(), s.temperature, s.top_k, s.top_p, stream.generator)[0])
        stream.tokens.append(token)
        if stream.first_token_at is None:
            stream.first_token_at = time.perf_counter()
        stream.text = self.tokenizer.decode(stream.tokens)
        stop_at = min((i for i in (stream.text.find(x) for x in s.stop) if i >= 0), default=-1)
        finished = "stop" if stop_at >= 0 else "length" if len(stream.tokens) >= s.max_new_tokens else None
        if stop_at >= 0:
            stream.text = stream.text[:stop_at]
        ready = len(stream.text) if finished else _printable(stream.text, s.stop)
        piece = stream.text[stream.sent_chars : max(ready, stream.sent_chars)]
        stream.sent_chars = max(ready, stream.sent_chars)
        stream.on_event({"type": "token", "token": token, "text": piece})
        if finished:
            self._finish(stream, finished)
        return not finished

    def _finish(self, stream: Stream, reason: str, error: str | None = None) -> None:
        stream.finish_reason = reason
        now = time.perf_counter()
        first = stream.first_token_at
        decode_s = now - first if first is not None else 0.0
        event = {
            "type": "done",
            "finish_reason": reason,
            "text": stream.text,
            "tokens": list(stream.tokens),
            "prompt_tokens": len(stream.prompt),
            "completion_tokens": len(stream.tokens),
            "prompt_truncated": stream.prompt_truncated,
            "context_shifts": stream.context_shifts,
            "ttft_ms": None if first is None else round((first - stream.submitted) * 1000, 3),
            "total_ms": round((now - stream.submitted) * 1000, 3),
            "tokens_per_s": (len(stream.tokens) - 1) / decode_s if decode_s > 0 and len(stream.tokens) > 1 else None,
        }
        if error:
            event["error"] = error
        stream.on_event(event)

    def _drop_finished(self) -> None:
        with self._wake:
            for stream in self._rows:
                if stream.cancelled and stream.finish_reason is None:
                    self._finish(stream, "cancelled")
        keep = [i for i, s in enumerate(self._rows) if s.finish_reason is None]
        if len(keep) < len(self._rows):
            self._keep_rows(keep)

    def _keep_rows(self, keep: list[int]) -> None:
        """Only rows ``keep`` stay; the padding columns every remaining row has are dropped."""
        self._rows = [self._rows[i] for i in keep]
        self._pending = [self._pending[i] for i in keep]
        if not keep:
            self._cache, self._real = None, None
            return
        index = torch.tensor(keep, device=self.device)
        real = self._real[index]
        start = int(real.any(dim=0).int().argmax())  # the first column any row uses
        for tensors in _cache_tensors(self._cache):
            for layer, t in enumerate(tensors):
                kept = t.index_select(0, index)
                moved = torch.zeros_like(kept)
                moved[:, :, : self._cache.pos - start] = kept[:, :, start : self._cache.pos]
                tensors[layer] = moved
        self._cache.pos -= start
        self._real = real[:, start:]


def _cache_tensors(cache: KVCache) -> list[list[torch.Tensor]]:
    """The per-layer tensor lists of a cache (keys, values, and a quantized cache's scales), as held."""
    names = ("keys", "values", "key_scales", "value_scales")
    return [getattr(cache, n) for n in names if hasattr(cache, n)]


def _merge(
    batch: KVCache, real: torch.Tensor, new: KVCache, new_real: torch.Tensor, model: GPT
) -> tuple[KVCache, torch.Tensor]:
    """A cache of ``batch``'s rows and then ``new``'s, all right-aligned at the longer of the two."""
    rows, pos, added, length = real.size(0), batch.pos, new_real.size(0), new.pos
    end = max(pos, length)
    merged = model.new_cache(rows + added)
    for target, old, more in zip(_cache_tensors(merged), _cache_tensors(batch), _cache_tensors(new), strict=True):
        for layer in range(len(target)):
            target[layer][:rows, :, end - pos : end] = old[layer][:, :, :pos]
            target[layer][rows:, :, end - length : end] = more[layer][:, :, :length]
    merged.pos = end
    mask = torch.zeros(rows + added, end, dtype=torch.bool, device=real.device)
    mask[:rows, end - pos :] = real
    mask[rows:, end - length :] = new_real
    return merged, mask


def _printable(text: str, stops: Sequence[str]) -> int:
    """How much of ``text`` can be sent now: not a trailing U+FFFD (a character whose bytes have not all
    come), nor a tail that could still grow into a stop string.

    Example:
        >>> _printable("hello wor", ["world"]), _printable("caf\\ufffd", []), _printable("abc", [])
        (6, 3, 3)
    """
    end = len(text) - 1 if text.endswith("\ufffd") else len(text)
    held = 0
    for stop in stops:
        for n in range(min(len(stop) - 1, end), 0, -1):
            if text[end - n : end] == stop[:n]:
                held = max(held, n)
                break
    return end - held
