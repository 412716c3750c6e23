"""The KV cache in int8: a GPT decodes with its cached keys and values rounded to int8, one scale per token and
head (``QuantizedKVCache``), about a quarter of the float32 cache's memory. The weights are untouched; the model
records the choice in its shape (``kv_cache="int8"``), so its checkpoint decodes the same way.

What it costs in quality is measured where the cache is used: the validation windows scored token by token
through the cache (``cached_loss``), with the float cache and with the int8 one; the step logs both.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from .._errors import require
from ..measure import cached_loss
from .core import CompressContext, CompressStep, implements


@dataclass(frozen=True)
class KVCacheInt8(CompressStep):
    """A GPT's KV cache in int8 (per-token, per-head scales): less memory per token of context."""

    kind: ClassVar[str] = "kv_int8"
    family: ClassVar[str] = "cache"
    tasks: ClassVar[tuple[str, ...]] = ("lm",)
    modes: ClassVar[tuple[str, ...]] = ("eager",)  # a compiled decoder's static cache is float
    not_faster: ClassVar[str] = (
        "an int8 KV cache saves memory, not time: every step dequantizes the cached keys and values "
        "(no fused int8 attention kernel here)"
    )
    windows: int = 8  # validation windows whose cached loss is measured both ways

    def check(self) -> None:
        require(self.windows >= 1, f"KVCacheInt8.windows must be >= 1 (got {self.windows})")

    def model_problem(self, model: nn.Module) -> str | None:
        return None if hasattr(model, "new_cache") else f"kv_int8 takes a GPT (got {type(model).__name__})"


@implements(KVCacheInt8)
def _apply_kv_int8(model: nn.Module, step: KVCacheInt8, ctx: CompressContext) -> nn.Module:
    require(ctx.eval_loader is not None, "kv_int8 measures its cost on validation windows: pass ctx.eval_loader")
    pairs = list(itertools.islice(ctx.eval_loader, 1))
    windows = torch.cat([pairs[0][0], pairs[0][1][:, -1:]], dim=1)[: step.windows]  # inputs and the last target
    prefill = max(1, windows.size(1) // 4)
    losses = {int8: cached_loss(model, windows, prefill, kv_int8=int8) for int8 in (False, True)}
    float_bytes, int8_bytes = (model.new_cache(batch=1, int8=int8).nbytes for int8 in (False, True))
    model.shape = dataclasses.replace(model.shape, kv_cache="int8")
    ctx.record(
        step=step.kind,
        cached_loss_float=losses[False],
        cached_loss_int8=losses[True],
        cached_perplexity_change=math.exp(losses[True] - losses[False]) - 1,
        kv_cache_bytes_before=float_bytes,
        kv_cache_bytes_after=int8_bytes,
    )
    return model
