"""How fast a language model writes: time to first token (the prompt's forward pass and the first choice)
and decode speed (new tokens a second after the first), at batch 1 and 8, with the KV cache and without,
the models compared taking turns so a busy machine slows them alike.

Greedy decoding (temperature 0) makes every call do the same work. Each (batch, cache) setting is
warmed up once, then timed ``iters`` times per model in turn; the median is reported with its spread.

Example:
    >>> from workbench.models import GPT
    >>> _ = torch.manual_seed(0)
    >>> gpt = GPT(vocab_size=16, n_layer=1, n_head=2, n_embd=16, block_size=16)
    >>> [(metrics, records)] = generation_timing([gpt], torch.arange(4), new_tokens=4, iters=2, batch_sizes=(1,))
    >>> sorted(metrics)  # doctest: +NORMALIZE_WHITESPACE
    ['decode_tps', 'decode_tps_uncached', 'gen_new_tokens', 'gen_prompt_tokens', 'kv_cache_bytes', 'kv_speedup',
     'ttft_ms', 'ttft_ms_uncached']
    >>> metrics["kv_cache_bytes"]  # k and v x 1 layer x 16 dims x 16 tokens x 4 bytes (2 heads of 8)
    2048
    >>> sorted(records[0])  # doctest: +NORMALIZE_WHITESPACE
    ['batch_size', 'decode_tps', 'decode_tps_q25', 'decode_tps_q75', 'device', 'kind', 'kv_cache', 'load_average',
     'mode', 'new_tokens', 'noisy', 'prompt_tokens', 'threads', 'ttft_ms', 'ttft_ms_q25', 'ttft_ms_q75']
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from .._errors import require
from ..models import generate_tokens, kv_cache_bytes
from ..train import load_average
from .bench import NOISY_SPREAD, _ready, _sync
from .device import device_name, resolve_device
from .modes import compile_room

GENERATION_BATCH_SIZES = (1, 8)


def generation_timing(
    models: Sequence[torch.nn.Module],
    prompt: torch.Tensor,
    *,
    new_tokens: int,
    device: str | torch.device = "cpu",
    iters: int = 3,
    batch_sizes: Sequence[int] = GENERATION_BATCH_SIZES,
    modes: Sequence[str] = ("eager",),
) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Per model (metrics, records): ``ttft_ms`` and ``decode_tps`` at batch 1 with the cache (``_uncached``:
    recomputing every step), ``decode_tps_bs8`` at batch 8, ``kv_speedup`` and the cache's bytes at full
    context; a record per mode, batch size and cache setting. ``prompt`` (1-D token ids) starts every row.
    ``modes`` eager and/or compiled (``torch.compile``, the cache a ``StaticKVCache``; the metrics' names end in
    ``_compiled``, and ``generation_compile_s`` is what the first, compiling, call cost beyond a warm one)."""
    device = resolve_device(device, field="device")
    prompt = prompt.to(device)
    out: list[list[dict[str, Any]]] = [[] for _ in models]
    compile_s: list[float] = [0.0 for _ in models]
    # Each model's forward compiles a few graphs (prefill, step; cached, recomputing): room for all of them.
    with compile_room(8 + 4 * len(models)):
        for mode in modes:
            compiled = mode == "compiled"
            for bs in batch_sizes:
                prompts = prompt.expand(bs, -1)
                for kv in (True, False):
                    samples: list[list[tuple[float, float]]] = [[] for _ in models]
                    for j, m in enumerate(models):  # warm-up: allocator, caches, lazy init, compiling
                        with _ready(m, device):
                            first = sum(_one_call(m, prompts, new_tokens, kv, device, compiled))
                            again = sum(_one_call(m, prompts, new_tokens, kv, device, compiled))
                        compile_s[j] += max(first - again, 0.0) if compiled else 0.0
                    for r in range(iters):
                        for j in (np.arange(len(models)) + r) % len(models):
                            with _ready(models[j], device):
                                samples[j].append(_one_call(models[j], prompts, new_tokens, kv, device, compiled))
                    for j, timed in enumerate(samples):
                        out[j].append(_record(timed, mode, bs, kv, len(prompt), new_tokens, device))
    results = []
    for model, records, seconds in zip(models, out, compile_s):
        metrics = {"kv_cache_bytes": model.new_cache(batch=1).nbytes}
        for mode in modes:
            metrics.update(_metrics([r for r in records if r["mode"] == mode], "" if mode == "eager" else f"_{mode}"))
        if "compiled" in modes:
            metrics["generation_compile_s"] = seconds
        results.append((metrics, records))
    return results


def _one_call(
    model, prompts: torch.Tensor, new_tokens: int, kv: bool, device: torch.device, compiled: bool = False
) -> tuple[float, float]:
    """(seconds to the first token, seconds for the rest) of one greedy generation."""
    _sync(device)
    t0 = time.perf_counter()
    steps = generate_tokens(model, prompts, new_tokens, temperature=0, kv_cache=kv, compiled=compiled)
    next(steps)
    _sync(device)
    t1 = time.perf_counter()
    for _ in steps:
        pass
    _sync(device)
    return t1 - t0, time.perf_counter() - t1


def _record(
    timed, mode: str, bs: int, kv: bool, prompt_tokens: int, new_tokens: int, device: torch.device
) -> dict[str, Any]:
    first = np.array([t for t, _ in timed]) * 1e3
    rate = np.array([bs * (new_tokens - 1) / rest if rest > 0 else float("inf") for _, rest in timed])
    q = {name: np.percentile(values, [25, 50, 75]) for name, values in (("ttft", first), ("decode", rate))}
    spread = max((v[2] - v[0]) / v[1] if v[1] > 0 else float("inf") for v in q.values())
    return {
        "kind": "generation",
        "mode": mode,
        "batch_size": bs,
        "kv_cache": kv,
        "prompt_tokens": prompt_tokens,
        "new_tokens": new_tokens,
        "ttft_ms": float(q["ttft"][1]),
        "ttft_ms_q25": float(q["ttft"][0]),
        "ttft_ms_q75": float(q["ttft"][2]),
        "decode_tps": float(q["decode"][1]),
        "decode_tps_q25": float(q["decode"][0]),
        "decode_tps_q75": float(q["decode"][2]),
        "noisy": bool(spread > NOISY_SPREAD),
        "device": str(device),
        "threads": torch.get_num_threads(),
        "load_average": load_average(),
    }


def _metrics(records: list[dict[str, Any]], suffix: str) -> dict[str, Any]:
    """One mode's headline numbers (names ending in ``suffix``): batch 1 with and without the cache, and the
    other batch sizes."""
    at = {(r["batch_size"], r["kv_cache"]): r for r in records}
    one, uncached = at.get((1, True)) or records[0], at.get((1, False)) or records[1]
    metrics = {
        "ttft_ms": one["ttft_ms"],
        "ttft_ms_uncached": uncached["ttft_ms"],
        "decode_tps": one["decode_tps"],
        "decode_tps_uncached": uncached["decode_tps"],
        "kv_speedup": one["decode_tps"] / uncached["decode_tps"],
        "gen_prompt_tokens": one["prompt_tokens"],
        "gen_new_tokens": one["new_tokens"],
    }
    for (bs, kv), r in at.items():
        if bs != 1:
            metrics[f"decode_tps_bs{bs}" + ("" if kv else "_uncached")] = r["decode_tps"]
    named = {k: v for k, v in metrics.items() if k.startswith("gen_")}  # the same in every mode
    return {**named, **{f"{k}{suffix}": v for k, v in metrics.items() if k not in named}}


def decode_curve(
    model: torch.nn.Module,
    prompt: torch.Tensor,
    lengths: Sequence[int],
    *,
    device: str | torch.device = "cpu",
    iters: int = 3,
) -> pd.DataFrame:
    """Decode speed at batch 1 against the number of tokens generated, with the KV cache and recomputing, and
    the bytes the cache holds by then (of the preallocated ``kv_cache_bytes`` for the whole context).

    Example:
        >>> from workbench.models import GPT
        >>> gpt = GPT(vocab_size=16, n_layer=1, n_head=2, n_embd=16, block_size=32)
        >>> curve = decode_curve(gpt, torch.arange(2), [4, 8], iters=1)
        >>> list(curve.columns)
        ['new_tokens', 'kv_cache', 'decode_tps', 'ttft_ms', 'noisy', 'kv_bytes_used', 'kv_cache_bytes']
        >>> curve.kv_bytes_used.tolist()  # k and v x 1 layer x 16 dims x (2 + new) tokens x 4 bytes
        [768, 768, 1280, 1280]
    """
    s = model.shape
    per_token = kv_cache_bytes(s.n_layer, s.n_head, s.head_dim, 1, 1, model.transformer.wte.weight.dtype)
    rows = []
    for n in lengths:
        [(_, records)] = generation_timing([model], prompt, new_tokens=n, device=device, iters=iters, batch_sizes=(1,))
        for r in records:
            rows.append(
                {
                    "new_tokens": n,
                    "kv_cache": r["kv_cache"],
                    "decode_tps": r["decode_tps"],
                    "ttft_ms": r["ttft_ms"],
                    "noisy": r["noisy"],
                    "kv_bytes_used": per_token * min(len(prompt) + n, s.block_size),
                    "kv_cache_bytes": model.new_cache(batch=1).nbytes,
                }
            )
    out = pd.DataFrame(rows)
    out.attrs["device_name"] = device_name(resolve_device(device, field="device"))
    return out


@torch.no_grad()
def cached_loss(model: torch.nn.Module, windows: torch.Tensor, prefill: int, kv_int8: bool = False) -> float:
    """Mean next-token cross-entropy of the tokens of ``windows`` (batch, length) after the first ``prefill``, each
    predicted as decoding predicts it: the first ``prefill`` tokens go into the KV cache at once, then one token a
    step. With a float cache it is the plain forward's loss on those tokens (rounding aside); with ``kv_int8``
    (a ``QuantizedKVCache``) the rise over it is what rounding the cache costs, exp(rise) - 1 in perplexity.

    Example:
        >>> from workbench.models import GPT
        >>> _ = torch.manual_seed(0)
        >>> gpt = GPT(vocab_size=16, n_layer=1, n_head=2, n_embd=16, block_size=16)
        >>> windows = torch.randint(16, (4, 17))
        >>> plain = F.cross_entropy(gpt(windows[:, :-1])[:, 7:].flatten(0, 1), windows[:, 8:].flatten()).item()
        >>> abs(cached_loss(gpt, windows, prefill=8) - plain) < 1e-5
        True
        >>> abs(cached_loss(gpt, windows, prefill=8, kv_int8=True) - plain) < 1e-3
        True
    """
    require(windows.dim() == 2, f"windows must be (batch, length) token ids (got shape {tuple(windows.shape)})")
    length, context = windows.size(1), model.shape.block_size
    require(1 <= prefill < length, f"prefill must be in 1..{length - 1} (got {prefill}): tokens after it are scored")
    require(
        length - 1 <= context,
        f"windows of {length} tokens feed {length - 1}, more than the context of {context}: "
        f"cut them to at most {context + 1}",
    )
    windows = windows.to(model.transformer.wte.weight.device)
    was_training = model.training
    model.eval()
    try:
        cache = model.new_cache(windows.size(0), int8=kv_int8)
        logits = [model(windows[:, :prefill], cache=cache, last_only=True)]
        logits += [model(windows[:, [t]], cache=cache) for t in range(prefill, length - 1)]
    finally:
        model.train(was_training)
    scored = torch.cat(logits, dim=1).float()  # (batch, length - prefill, vocab)
    return F.cross_entropy(scored.flatten(0, 1), windows[:, prefill:].flatten()).item()


def attention_timing(
    model: torch.nn.Module, lengths: Sequence[int], *, device: str | torch.device = "cpu", iters: int = 10
) -> pd.DataFrame:
    """One forward of ``model``'s shape at batch 1 per sequence length (its context widened where needed), with
    PyTorch's fused attention (``sdpa``) and the masked softmax spelled out (``naive``), the same weights in both,
    timed in turns (``benchmark_together``).

    Example:
        >>> from workbench.models import GPT
        >>> gpt = GPT(vocab_size=16, n_layer=1, n_head=2, n_embd=16, block_size=64)
        >>> attention_timing(gpt, [16, 32], iters=2).columns.tolist()
        ['tokens', 'attention', 'latency_ms', 'latency_ms_q25', 'latency_ms_q75', 'noisy']
    """
    from ..models import GPT
    from .bench import benchmark_together

    s = model.shape
    rows = []
    for n in lengths:
        shape = {**dataclasses.asdict(s), "block_size": max(n, s.block_size)}  # room for n tokens
        variants = {kind: GPT(**{**shape, "attention": kind}).to(device) for kind in ("sdpa", "naive")}
        variants["naive"].load_state_dict(variants["sdpa"].state_dict())  # the same weights (timing needs no training)
        ids = torch.arange(n).remainder(s.vocab_size)[None]
        timed = benchmark_together(
            list(variants.values()), (n,), batch_sizes=(1,), device=device, warmup=2, iters=iters, images=ids
        )
        for kind, [record] in zip(variants, timed):
            rows.append(
                {
                    "tokens": n,
                    "attention": kind,
                    **{k: record[k] for k in ("latency_ms", "latency_ms_q25", "latency_ms_q75", "noisy")},
                }
            )
    out = pd.DataFrame(rows)
    out.attrs["device_name"] = device_name(resolve_device(device, field="device"))
    return out
