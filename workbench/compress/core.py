"""What every compression step shares: its context and the step-type -> function table.

One verb per capability (torchao's ``quantize_(model, Config())``): each step config is a frozen
``CompressStep`` dataclass that checks itself, and ``apply_step`` looks its function up here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable

import torch

from ..config import CompressStep, HardwareConfig, TrainConfig

_APPLY: dict[type, Callable[..., torch.nn.Module]] = {}


@dataclass
class CompressContext:
    """Everything a step may need besides the model: data to fine-tune or calibrate on, the device,
    and the training recipe a fine-tune reuses."""

    example_input: torch.Tensor  # one normalised batch (N, C, H, W) on ``device``
    train_loader: Iterable | None = None
    eval_loader: Iterable | None = None
    device: torch.device = torch.device("cpu")
    train: TrainConfig = TrainConfig()
    hardware: HardwareConfig = HardwareConfig()
    log: list[dict[str, Any]] | None = None  # steps append what they did (sparsity, sizes...) here


def implements(step_type: type) -> Callable:
    """Register the function that applies ``step_type``: ``fn(model, step, ctx) -> model``."""

    def add(fn: Callable) -> Callable:
        _APPLY[step_type] = fn
        return fn

    return add


def apply_step(model: torch.nn.Module, step: CompressStep, ctx: CompressContext) -> torch.nn.Module:
    """Apply one compression step; returns the (possibly new) model."""
    if type(step) not in _APPLY:
        raise TypeError(f"No implementation registered for compression step {type(step).__name__}.")
    return _APPLY[type(step)](model, step, ctx)
