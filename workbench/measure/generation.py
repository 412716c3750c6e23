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
from ..models import generate, generate_tokens, kv_cache_bytes, speculative_generate
from ..train import load_average, resolve_threads, thread_count
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
    threads: int | str | None = None,
    uncached_batch_sizes: Sequence[int] = (1,),
) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Per model (metrics, records): ``ttft_ms`` and ``decode_tps`` at batch 1 with the cache (``_uncached``:
    recomputing every step), ``decode_tps_bs8`` at batch 8, ``kv_speedup`` and the cache's bytes at full
    context; a record per mode, batch size and cache setting. ``prompt`` (1-D token ids) starts every row.
    ``modes`` eager and/or compiled (``torch.compile``, the cache a ``StaticKVCache``; the metrics' names end in
    ``_compiled``, and ``generation_compile_s`` is what the first, compiling, call cost beyond a warm one).
    ``threads``: torch's thread count while timing, as ``HardwareConfig.threads`` (``auto``: the cores the load
    average leaves free; decoding's many small operations slow down most when an OpenMP thread waits for a busy
    core); None keeps torch's setting, as a run's measurement, which has set it already. ``uncached_batch_sizes``:
    where decoding without the cache is timed too (batch 1: what the cache buys; recomputing a whole batch's
    windows every step is the slowest timing here, by far the longest for a long context)."""
    device = resolve_device(device, field="device")
    prompt = prompt.to(device)
    used = torch.get_num_threads() if threads is None else resolve_threads(threads)
    out: list[list[dict[str, Any]]] = [[] for _ in models]
    compile_s: list[float] = [0.0 for _ in models]
    # Each model's forward compiles a few graphs (prefill, step; cached, recomputing): room for all of them.
    with compile_room(8 + 4 * len(models)), thread_count(used):
        for mode in modes:
            compiled = mode == "compiled"
            for bs in batch_sizes:
                prompts = prompt.expand(bs, -1)
                for kv in (True, False) if bs in uncached_batch_sizes else (True,):
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
    one, uncached = at.get((1, True)) or records[0], at.get((1, False))
    metrics = {
        "ttft_ms": one["ttft_ms"],
        "decode_tps": one["decode_tps"],
        "gen_prompt_tokens": one["prompt_tokens"],
        "gen_new_tokens": one["new_tokens"],
    }
    if uncached is not None:
        metrics.update(
            ttft_ms_uncached=uncached["ttft_ms"],
            decode_tps_uncached=uncached["decode_tps"],
            kv_speedup=one["decode_tps"] / uncached["decode_tps"],
        )
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


def speculative_curve(
    target: torch.nn.Module,
    draft: torch.nn.Module,
    prompts: Sequence[Sequence[int]] | torch.Tensor,
    new_tokens: int,
    lookaheads: Sequence[int] = (1, 2, 4),
    *,
    device: str | torch.device = "cpu",
    iters: int = 3,
    threads: int | str = "auto",
) -> pd.DataFrame:
    """Speculative decoding (``draft`` proposes ``k`` tokens, ``target`` checks them in one pass) against the target
    decoding alone, greedy at batch 1 with KV caches: a row for the target alone (``lookahead`` 0), then one per
    ``k`` in ``lookaheads``. Each row decodes every prompt (token ids) ``new_tokens`` tokens; ``same_as_target`` says
    whether every output equals the target's own (checked before any timing); ``acceptance`` is the share of
    proposals kept, ``tokens_per_target_pass`` the new tokens per forward pass of the target. Timed ``iters`` times,
    the variants taking turns after one warm-up each: ``tokens_per_s`` is the median (``_q25``/``_q75`` its spread)
    and ``speedup`` its ratio to the target alone's. ``threads`` as ``HardwareConfig.threads`` (``auto``: the cores
    the load average leaves free, as a run's timing uses), so a busy machine's OpenMP threads do not wait on each
    other.

    Example:
        >>> from workbench.models import GPT
        >>> _ = torch.manual_seed(0)
        >>> target = GPT(vocab_size=16, n_layer=2, n_head=2, n_embd=32, block_size=32)
        >>> curve = speculative_curve(target, target, [[1, 2, 3]], 12, lookaheads=(2, 4), iters=1)  # a perfect draft
        >>> curve[["lookahead", "acceptance", "tokens_per_target_pass", "same_as_target"]].values.tolist()
        [[0, nan, 1.0, True], [2, 1.0, 3.0, True], [4, 1.0, 4.0, True]]

    A pass keeps the ``k`` accepted proposals and adds the target's own next token: 12 tokens in 4 passes at k=2,
    in 3 (5, 5, then the 2 still wanted) at k=4.
    """
    require(isinstance(iters, int) and iters >= 1, f"iters must be a whole number >= 1 (got {iters!r})")
    require(bool(lookaheads), "lookaheads is empty: give the draft's tokens per check, e.g. (1, 2, 4)")
    device = resolve_device(device, field="device")
    prompts = [[int(t) for t in p] for p in prompts]
    require(bool(prompts), "prompts is empty: give at least one prompt of token ids")
    variants: dict[int, Any] = {0: lambda p: (generate(target, [p], new_tokens, temperature=0)[0], None)}
    for k in lookaheads:
        variants[k] = lambda p, k=k: speculative_generate(target, draft, p, new_tokens, lookahead=k)
    seconds: dict[int, list[float]] = {k: [] for k in variants}
    rows = {}
    with _ready(target, device), _ready(draft, device), thread_count(resolve_threads(threads)) as used:
        for k, call in variants.items():  # the check, which is also the warm-up
            outs = [call(p) for p in prompts]
            stats = [s for _, s in outs if s is not None]
            proposed = sum(s.proposed for s in stats)
            rows[k] = {
                "decoding": "target alone" if k == 0 else f"speculative, k={k}",
                "lookahead": k,
                "acceptance": sum(s.accepted for s in stats) / proposed if proposed else float("nan"),
                "tokens_per_target_pass": (
                    len(prompts) * new_tokens / sum(s.target_passes for s in stats) if stats else 1.0
                ),
                "tokens": [t for t, _ in outs],
            }
        alone = rows[0]["tokens"]
        for row in rows.values():
            row["same_as_target"] = row.pop("tokens") == alone
        with torch.inference_mode():
            for r in range(iters):
                for k in list(variants)[:: 1 if r % 2 == 0 else -1]:  # turns, the order reversed every other round
                    _sync(device)
                    t0 = time.perf_counter()
                    for p in prompts:
                        variants[k](p)
                    _sync(device)
                    seconds[k].append(time.perf_counter() - t0)
    tokens = len(prompts) * new_tokens
    out = []
    for k, row in rows.items():
        q25, q50, q75 = np.percentile(seconds[k], [25, 50, 75])
        out.append(
            {
                **row,
                "tokens_per_s": tokens / q50,
                "tokens_per_s_q25": tokens / q75,  # a longer time is a lower rate
                "tokens_per_s_q75": tokens / q25,
                "noisy": bool((q75 - q25) / q50 > NOISY_SPREAD),
            }
        )
    frame = pd.DataFrame(out)
    frame["speedup"] = frame["tokens_per_s"] / frame["tokens_per_s"].iloc[0]
    frame.attrs.update(device_name=device_name(device), new_tokens=new_tokens, prompts=len(prompts), threads=used)
    return frame


def kv_cache_sizes(model: torch.nn.Module, contexts: Sequence[int], batch: int = 1) -> pd.DataFrame:
    """Bytes of a KV cache of ``model``'s shape (layers, heads, head_dim) at each context length, for ``batch``
    sequences, kept in float32, in bfloat16 and in int8 (``QuantizedKVCache``: a float32 scale per token and
    head): one row per context and cache, ``kv_cache_bytes`` beside ``weights_bytes`` (the model's fp32 weights;
    a cache longer than the model's ``block_size`` is what the same shape would need with that context).

    Example:
        >>> from workbench.models import GPT
        >>> gpt = GPT(vocab_size=16, n_layer=2, n_head=2, n_embd=64, block_size=16)  # head_dim 32
        >>> sizes = kv_cache_sizes(gpt, [16, 32])
        >>> sizes.pivot(index="context", columns="cache", values="kv_cache_bytes").loc[16].to_dict()
        {'bfloat16': 8192, 'float32': 16384, 'int8': 4608}
    """
    s = model.shape
    weights = sum(p.numel() * 4 for p in model.parameters())
    kinds = {"float32": (torch.float32, False), "bfloat16": (torch.bfloat16, False), "int8": (torch.float32, True)}
    rows = [
        {
            "context": n,
            "cache": name,
            "kv_cache_bytes": kv_cache_bytes(s.n_layer, s.n_head, s.head_dim, n, batch, dtype, int8=int8),
            "weights_bytes": weights,
            "batch": batch,
        }
        for n in contexts
        for name, (dtype, int8) in kinds.items()
    ]
    out = pd.DataFrame(rows)
    out.attrs.update(n_layer=s.n_layer, n_head=s.n_head, head_dim=s.head_dim, block_size=s.block_size)
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
