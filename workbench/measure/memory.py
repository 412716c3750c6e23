"""Memory: the peak of a block of code on the device where it ran, and, counted rather than sampled, what a
training step keeps (weights, gradients, optimizer state, the activations saved for the backward pass)."""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from .._errors import require
from ..models import GPT, add_lora, gpt_args
from ..train import TrainConfig, make_optimizer, optimizer_state_bytes, resolve_threads, thread_count
from .bench import _sync_any
from .device import device_name, resolve_device

try:
    import resource
except ImportError:  # Windows has no getrusage
    resource = None

STATM = Path("/proc/self/statm")  # Linux: the process's current sizes, in pages (the second is resident)
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
RSS_SAMPLE_S = 0.002  # a training step's activations live for most of it: a few ms apart catches them


@dataclass
class PeakMemory:
    """Filled in when the ``with`` block ends; ``peak_bytes`` is None where it cannot be measured."""

    device: str
    peak_bytes: int | None = None


@contextlib.contextmanager
def track_peak_memory(device: str | torch.device = "cpu") -> Iterator[PeakMemory]:
    """Measure the peak memory of the block: ``with track_peak_memory(dev) as mem: ...; mem.peak_bytes``.

    CUDA: ``torch.cuda.max_memory_allocated`` after resetting the peak (tensors only, including the
    model's weights already resident). CPU on Linux: the highest resident set size read every
    ``RSS_SAMPLE_S`` while the block runs, above what it was when the block began: what the block added at
    its peak. Process-wide and coarse: memory the allocator kept from earlier work and reuses shows as no
    growth (glibc keeps freed blocks; ``MALLOC_MMAP_THRESHOLD_=131072`` in the environment makes it return
    large ones, as ``benchmarks/lm_memory.py`` does). Other CPUs: growth of the peak resident set
    (``getrusage``), 0 below an earlier high-water mark. MPS and Windows: None.

    Example:
        >>> with track_peak_memory("cpu") as mem:
        ...     x = torch.ones(256, 1024)
        >>> mem.peak_bytes is None or mem.peak_bytes >= 0
        True
    """
    device = resolve_device(device, field="device")
    peak = PeakMemory(str(device))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        try:
            yield peak
        finally:
            torch.cuda.synchronize(device)
            peak.peak_bytes = torch.cuda.max_memory_allocated(device)
    elif device.type == "cpu" and STATM.exists():
        sampler = _RssPeak()
        sampler.start()
        try:
            yield peak
        finally:
            peak.peak_bytes = sampler.finish()
    elif device.type == "cpu" and resource is not None:
        before = _max_rss()
        try:
            yield peak
        finally:
            peak.peak_bytes = _max_rss() - before
    else:
        yield peak


class _RssPeak(threading.Thread):
    """The process's resident set read every ``RSS_SAMPLE_S`` from a thread of its own; ``finish`` stops it and
    returns the highest reading above the first."""

    def __init__(self):
        super().__init__(daemon=True)
        self.start_bytes = self.peak_bytes = _rss()
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(RSS_SAMPLE_S):
            self.peak_bytes = max(self.peak_bytes, _rss())

    def finish(self) -> int:
        self.done.set()
        self.join()
        return max(self.peak_bytes, _rss()) - self.start_bytes


def _rss() -> int:
    return int(STATM.read_text().split()[1]) * PAGE_BYTES


def _max_rss() -> int:
    scale = 1 if sys.platform == "darwin" else 1024  # macOS reports bytes, Linux KiB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def saved_activation_bytes(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor | None = None) -> int:
    """Bytes one training step of ``model`` on ``x`` keeps for its backward pass: the tensors autograd saves
    (``torch.autograd.graph.saved_tensors_hooks``; each storage once, the weights left out, since they are in
    memory anyway) and, for a GPT with ``activation_checkpointing``, each block's input, which the checkpoint
    holds outside autograd to rerun the block. Counted, not sampled: the same on every machine and run,
    unlike a CPU's peak resident set, which the allocator's kept pages blur.

    The loss is the cross-entropy against ``y`` (logits flattened as the training loop does), or the outputs'
    sum without ``y``. Runs one forward and backward in training mode and clears the gradients after.

    Example:
        >>> from workbench.models import GPT
        >>> gpt = GPT(vocab_size=16, n_layer=2, n_head=2, n_embd=16, block_size=8)
        >>> ids = torch.randint(16, (4, 9))
        >>> plain = saved_activation_bytes(gpt, ids[:, :-1], ids[:, 1:])
        >>> gpt.activation_checkpointing = True
        >>> saved_activation_bytes(gpt, ids[:, :-1], ids[:, 1:]) < plain / 2
        True
    """
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in weights:
            storages[storage.data_ptr()] = storage.nbytes()
        return t

    was_training = model.training
    model.train()
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = model(x)
            loss = out.float().sum() if y is None else F.cross_entropy(out.flatten(0, -2), y.flatten())
        loss.backward()
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    kept = 0
    if getattr(model, "activation_checkpointing", False):  # a GPT: a (batch, tokens, n_embd) input per block
        s = model.shape
        kept = s.n_layer * x.numel() * s.n_embd * model.transformer.wte.weight.element_size()
    return sum(storages.values()) + kept


def training_memory(
    model: torch.nn.Module,
    variants: Mapping[str, Mapping[str, Any]],
    *,
    steps: int = 5,
    warmup: int = 1,
    lr: float = 1e-3,
    device: str | torch.device = "cpu",
    seed: int = 0,
    threads: int | str = "auto",
) -> pd.DataFrame:
    """What one training step of a GPT of ``model``'s shape holds in memory, part by part, and how long it takes,
    per variant: a row each with the bytes of the ``weights``, the ``gradients`` (trained parameters only), the
    AdamW ``optimizer_state`` and the ``activations`` kept for the backward pass (``saved_activation_bytes`` of
    one micro-batch: with accumulation each micro-batch's are freed by its backward), their ``total``, and the
    optimizer step's median time (``step_ms``, quartiles beside it) and ``tokens_per_s``.

    A variant is a dict of ``batch_size`` (windows per micro-batch, default 32), ``accumulate`` (micro-batches
    per optimizer step, default 1), ``context`` (tokens per window, default the model's), ``checkpointing``
    (``activation_checkpointing``, default False), ``lora_rank`` and ``lora_targets`` (LoRA adapters, the rest
    frozen; default none). Each variant trains a fresh model of that shape (memory and time do not depend on
    the weights' values) on random token ids drawn outside the timer, with ``make_optimizer``'s AdamW and
    clipped gradients, as ``run`` trains. After ``warmup`` untimed steps each, the variants take turns for
    ``steps`` steps, the order reversed every other round, so a burst of load lands on all of them. ``threads``
    as ``HardwareConfig.threads`` (``auto``: the cores the load average leaves free, as a run trains).

    Example:
        >>> from workbench.models import GPT
        >>> gpt = GPT(vocab_size=16, n_layer=1, n_head=2, n_embd=16, block_size=8)
        >>> table = training_memory(gpt, {"plain": {"batch_size": 4}, "2 x 2": {"batch_size": 2, "accumulate": 2}},
        ...                         steps=1, warmup=0)
        >>> print(round(table.loc["2 x 2", "activations"] / table.loc["plain", "activations"], 1))  # half the windows
        0.5
        >>> plain = table.loc["plain"]
        >>> int(plain.optimizer_state - 2 * plain.weights)  # AdamW: 2 moments a weight, a 4-byte step count a tensor
        64
    """
    device = resolve_device(device, field="device")
    require(steps >= 1 and warmup >= 0, f"steps must be >= 1 and warmup >= 0 (got {steps}, {warmup})")
    known = {"batch_size", "accumulate", "context", "checkpointing", "lora_rank", "lora_targets"}
    cfg = TrainConfig(optimizer="adamw", lr=lr, weight_decay=0.1, grad_clip=1.0)
    runs = {}
    for name, variant in variants.items():
        unknown = sorted(set(variant) - known)
        require(
            not unknown, f"variant '{name}': unknown setting(s) {', '.join(unknown)}; use {', '.join(sorted(known))}"
        )
        v = {"batch_size": 32, "accumulate": 1, "context": model.shape.block_size, "checkpointing": False}
        v.update(variant)
        torch.manual_seed(seed)
        net = GPT(**{**gpt_args(model), "block_size": v["context"]}).to(device).train()
        net.activation_checkpointing = bool(v["checkpointing"])
        if v.get("lora_rank"):
            add_lora(net, v["lora_rank"], targets=v.get("lora_targets", ("c_attn",)))
        g = torch.Generator().manual_seed(seed)
        ids = torch.randint(net.shape.vocab_size, (v["accumulate"], v["batch_size"], v["context"] + 1), generator=g)
        runs[name] = {"v": v, "model": net, "optimizer": make_optimizer(net, cfg), "ids": ids.to(device)}

    def step(r: dict) -> None:
        for window in r["ids"]:
            x, y = window[:, :-1], window[:, 1:]
            loss = F.cross_entropy(r["model"](x).flatten(0, 1), y.flatten())
            (loss / r["v"]["accumulate"]).backward()
        torch.nn.utils.clip_grad_norm_(r["model"].parameters(), cfg.grad_clip)
        r["optimizer"].step()
        r["optimizer"].zero_grad(set_to_none=True)

    seconds: dict[str, list[float]] = {name: [] for name in runs}
    with thread_count(resolve_threads(threads)) as used:
        for i in range(warmup + steps):
            for name in list(runs)[:: 1 if i % 2 == 0 else -1]:
                _sync_any(device)
                start = time.perf_counter()
                step(runs[name])
                _sync_any(device)
                if i >= warmup:
                    seconds[name].append(time.perf_counter() - start)
    rows = []
    for name, r in runs.items():
        v, net = r["v"], r["model"]
        window = r["ids"][0]
        params = list(net.parameters())
        parts = {
            "weights": sum(p.nbytes for p in params),
            "gradients": sum(p.nbytes for p in params if p.requires_grad),
            "optimizer_state": optimizer_state_bytes(r["optimizer"]),
            "activations": saved_activation_bytes(net, window[:, :-1], window[:, 1:]),
        }
        q25, median, q75 = np.percentile(seconds[name], [25, 50, 75]) * 1000
        tokens = v["batch_size"] * v["accumulate"] * v["context"]
        rows.append(
            {
                "variant": name,
                "batch_size": v["batch_size"],
                "accumulate": v["accumulate"],
                "effective_batch": v["batch_size"] * v["accumulate"],
                "context": v["context"],
                "checkpointing": bool(v["checkpointing"]),
                "lora_rank": v.get("lora_rank") or 0,
                **parts,
                "total": sum(parts.values()),
                "step_ms": median,
                "step_ms_q25": q25,
                "step_ms_q75": q75,
                "tokens_per_s": tokens / (median / 1000),
            }
        )
    table = pd.DataFrame(rows).set_index("variant")
    table.attrs.update(device_name=device_name(device), steps=steps, threads=used)
    return table
