"""Optimizers and learning-rate schedules by name.

Schedules are per-step multipliers of the peak lr (``LambdaLR``), so warm-up composes with any of
them and a reader sees each curve as one line of arithmetic.

Example:
    >>> import torch
    >>> from workbench.train import TrainConfig
    >>> model = torch.nn.Linear(2, 2)
    >>> opt = make_optimizer(model.parameters(), TrainConfig(optimizer="adamw", lr=1e-3))
    >>> type(opt).__name__
    'AdamW'
    >>> sched = make_scheduler(opt, TrainConfig(schedule="cosine", epochs=2), steps_per_epoch=10)
    >>> round(schedule_factor("cosine", 10, 20, 0), 3)
    0.5
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch

from .._errors import require_modules
from .._registry import Registry
from .muon import MuonAdamW

OPTIMIZERS: Registry[Callable[..., torch.optim.Optimizer]] = Registry("optimizer")
SCHEDULES: Registry[Callable[[float], float]] = Registry("schedule")


@OPTIMIZERS.register("sgd")
def _sgd(params, cfg, **impl):
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, **impl)


@OPTIMIZERS.register("sgd_nesterov")
def _sgd_nesterov(params, cfg, **impl):
    # Nesterov needs momentum > 0; fall back to the conventional 0.9 rather than failing.
    return torch.optim.SGD(
        params, lr=cfg.lr, momentum=cfg.momentum or 0.9, weight_decay=cfg.weight_decay, nesterov=True, **impl
    )


@OPTIMIZERS.register("adam")
def _adam(params, cfg, **impl):
    # Adam's weight_decay is L2 in the gradient (coupled); AdamW is the decoupled form.
    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **impl)


@OPTIMIZERS.register("adamw")
def _adamw(params, cfg, **impl):
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **impl)


@OPTIMIZERS.register("adamw_8bit")
def _adamw_8bit(params, cfg, **impl):
    # torchao's AdamW with both moments in 8 bits (block-wise scales, Dettmers et al. 2022): a quarter of AdamW's
    # state. Its update is one torch.compile'd function (the first step compiles); foreach/fused do not apply.
    require_modules(["torchao"], "train.optimizer=adamw_8bit", "pip install torchao==0.18.0")
    from torchao.optim import AdamW8bit

    return AdamW8bit(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


@OPTIMIZERS.register("rmsprop")
def _rmsprop(params, cfg, **impl):
    return torch.optim.RMSprop(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, **impl)


@OPTIMIZERS.register("muon")
def _muon(model, cfg, **impl):
    # Muon's groups come from the model's layers (which weight is a conv's, which the classifier), not from a
    # parameter list.
    if not isinstance(model, torch.nn.Module):
        raise TypeError(
            "train.optimizer=muon picks its matrices from the model's layers: "
            "pass the model, make_optimizer(model, cfg)"
        )
    return MuonAdamW(model, lr=cfg.lr, weight_decay=cfg.weight_decay, momentum=cfg.momentum, **impl)


# Each schedule maps training progress p in [0, 1] to a multiplier of the peak lr.
@SCHEDULES.register("constant")
def _constant(p: float) -> float:
    return 1.0


@SCHEDULES.register("step")
def _step(p: float) -> float:
    # The classic ResNet recipe: divide by 10 at 50% and 75% of training.
    return 0.1 ** ((p >= 0.5) + (p >= 0.75))


@SCHEDULES.register("cosine")
def _cosine(p: float) -> float:
    return 0.5 * (1 + math.cos(math.pi * min(p, 1.0)))


@SCHEDULES.register("onecycle")
def _onecycle(p: float) -> float:
    # Linear up to the peak at 25%, then linear down to zero: airbench's triangle.
    return p / 0.25 if p < 0.25 else max(0.0, (1 - p) / 0.75)


def list_optimizers() -> list[str]:
    return OPTIMIZERS.names()


def list_schedules() -> list[str]:
    return SCHEDULES.names()


# How the update runs: one Python loop per tensor, one batched call per step (foreach), or one fused kernel.
OPTIMIZER_IMPLS = {"auto": {}, "for-loop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}
FUSED_OPTIMIZERS = ("sgd", "sgd_nesterov", "adam", "adamw")  # the ones torch has a fused kernel for


def make_optimizer(
    model: torch.nn.Module | Iterable[torch.nn.Parameter], cfg, impl: str = "auto"
) -> torch.optim.Optimizer:
    """The optimizer named by ``cfg.optimizer`` (a ``TrainConfig``) over ``model``'s parameters (or the
    parameters given; ``muon`` needs the model), its update run as ``impl`` says (``OPTIMIZER_IMPLS``;
    auto lets torch choose: foreach on a GPU, the loop on a CPU).

    Example:
        >>> from workbench.train import TrainConfig
        >>> opt = make_optimizer(torch.nn.Linear(2, 2).parameters(), TrainConfig(optimizer="adamw"), impl="fused")
        >>> type(opt).__name__, opt.defaults["fused"]
        ('AdamW', True)
    """
    if impl == "fused" and cfg.optimizer not in FUSED_OPTIMIZERS:
        raise ValueError(
            f"hardware.optimizer_impl='fused' has no kernel for {cfg.optimizer}: use foreach, or one of "
            f"{', '.join(FUSED_OPTIMIZERS)}"
        )
    build = OPTIMIZERS.get(cfg.optimizer)
    if build is _muon:
        return build(model, cfg, **OPTIMIZER_IMPLS[impl])
    if hasattr(model, "parameter_groups"):  # the model says which of its weights decay (a GPT: matrices only)
        return build(model.parameter_groups(cfg.weight_decay), cfg, **OPTIMIZER_IMPLS[impl])
    return build(model.parameters() if isinstance(model, torch.nn.Module) else model, cfg, **OPTIMIZER_IMPLS[impl])


def schedule_factor(name: str, step: int, total_steps: int, warmup_steps: int) -> float:
    """lr multiplier at ``step``: linear warm-up, then the named schedule over the remaining steps."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    if name == "onecycle" and warmup_steps:
        # One-cycle's rise is a warm-up of its own: after an explicit one, only its descent remains
        # (restarting the cycle would drop the lr back to zero right after warming it up).
        return max(0.0, 1.0 - progress)
    return SCHEDULES.get(name)(progress)


def lr_curve(cfg, steps_per_epoch: int) -> list[float]:
    """The learning rate of every optimizer step of a training with ``cfg`` (a ``TrainConfig``), as
    ``make_scheduler`` sets it: the warm-up and the schedule at step resolution, not once per epoch.

    Example:
        >>> from workbench.train import TrainConfig
        >>> lrs = lr_curve(TrainConfig(epochs=2, lr=0.1, schedule="cosine", warmup_epochs=1), steps_per_epoch=4)
        >>> [round(v, 3) for v in lrs]
        [0.025, 0.05, 0.075, 0.1, 0.1, 0.085, 0.05, 0.015]
    """
    total = max(1, cfg.epochs * steps_per_epoch)
    warmup = round(cfg.warmup_epochs * steps_per_epoch)
    return [cfg.lr * schedule_factor(cfg.schedule, step, total, warmup) for step in range(total)]


def make_scheduler(opt: torch.optim.Optimizer, cfg, steps_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-step scheduler for ``cfg.schedule`` with ``cfg.warmup_epochs`` of linear warm-up."""
    total = max(1, cfg.epochs * steps_per_epoch)
    warmup = round(cfg.warmup_epochs * steps_per_epoch)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda step: schedule_factor(cfg.schedule, step, total, warmup))


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes the optimizer keeps beside the weights: every tensor of its state (AdamW: two moments and a step
    count per trained tensor; an optimizer made of others, such as Muon with AdamW, counts theirs).

    Example:
        >>> layer = torch.nn.Linear(10, 10)
        >>> opt = torch.optim.AdamW(layer.parameters())
        >>> layer(torch.ones(1, 10)).sum().backward()
        >>> opt.step()
        >>> optimizer_state_bytes(opt)  # 2 moments x 110 floats x 4 bytes + 2 step counts of 4 bytes
        888
    """

    def walk(value) -> int:
        if hasattr(value, "__tensor_flatten__"):  # a tensor subclass (torchao's 8-bit state): its inner tensors
            return sum(walk(getattr(value, name)) for name in value.__tensor_flatten__()[0])
        if torch.is_tensor(value):
            return value.nbytes
        if isinstance(value, dict):
            return sum(walk(v) for k, v in value.items() if k != "param_groups")
        return 0

    return walk(optimizer.state_dict())
