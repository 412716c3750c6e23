"""Low-bit weights, simulated: each Linear weight rounded to ``bits`` bits in groups of ``group_size`` inputs, then
stored back as floats. Nothing gets faster (no kernel runs low-bit here); what it shows is how much quality each
bit width costs, the curve behind GPTQ and AWQ: quality against bits per weight.

Round-to-nearest (RTN), asymmetric: each group of a row keeps its minimum and its step ``(max - min) / (2^bits - 1)``
(two 16-bit numbers a group, so a weight costs ``bits + 32 / group_size`` bits), and every weight becomes the
nearest of the ``2^bits`` levels between them. Smaller groups follow the weights more closely and cost more bits.

Activation-aware scales (AWQ, Lin et al. 2023): a few input channels carry much larger activations than the rest,
so the weights they multiply matter most. Scaling those weight columns up by ``s`` before rounding (and the inputs
down by ``s``) shrinks their rounding error relative to their size; AWQ picks ``s = mean|x|^alpha`` per input
channel, ``alpha`` searched per layer on calibration inputs. Here ``1/s`` is folded back into the rounded weight,
``Q(W diag(s)) diag(s)^-1``, so the model stays a plain float model.

Example:
    >>> w = torch.tensor([[0.0, 0.1, 0.2, 0.3, 1.0, 1.1, 1.2, 1.3]])
    >>> group_quantize(w, bits=2, group_size=4)  # two groups, 4 levels each: exact here
    tensor([[0.0000, 0.1000, 0.2000, 0.3000, 1.0000, 1.1000, 1.2000, 1.3000]])
    >>> round(bits_per_weight(4, 32), 2)
    5.0
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import ClassVar

import pandas as pd
import torch
from torch import nn

from .._errors import require
from .core import CompressContext, CompressStep, implements

SCALE_BITS = 16  # a group's step and minimum, each stored in 16 bits
SCALES = ("rtn", "awq")  # round-to-nearest as it is, or after activation-aware scaling
AWQ_GRID = 20  # alpha in 0, 0.05, ..., 0.95, AWQ's search grid; alpha 0 (s = 1) is plain round-to-nearest


def check_low_bit(bits: int, group_size: int) -> None:
    """One line for a bit width or group size that cannot apply."""
    require(isinstance(bits, int) and 2 <= bits <= 8, f"bits must be a whole number from 2 to 8 (got {bits!r})")
    require(
        isinstance(group_size, int) and group_size >= 2,
        f"group_size must be a whole number >= 2 (got {group_size!r}), e.g. 32, 64 or 128",
    )


def bits_per_weight(bits: int, group_size: int) -> float:
    """What one weight costs on disk: its code and its share of its group's step and minimum."""
    return bits + 2 * SCALE_BITS / group_size


def group_quantize(w: torch.Tensor, bits: int, group_size: int) -> torch.Tensor:
    """``w`` (out x in) rounded to ``bits`` bits a weight in groups of ``group_size`` consecutive inputs, as floats."""
    check_low_bit(bits, group_size)
    rows, inputs = w.shape
    divisors = [d for d in (128, 64, 32, 16, 8) if inputs % d == 0]
    require(
        inputs % group_size == 0,
        f"group_size {group_size} does not divide a layer's {inputs} inputs: choose a divisor of {inputs}"
        + (f", e.g. {divisors[0]}" if divisors else ""),
    )
    groups = w.detach().float().reshape(-1, group_size)
    low, high = groups.amin(dim=1, keepdim=True), groups.amax(dim=1, keepdim=True)
    step = ((high - low) / (2**bits - 1)).clamp(min=torch.finfo(torch.float32).tiny)
    codes = ((groups - low) / step).round().clamp(0, 2**bits - 1)
    return (codes * step + low).reshape(rows, inputs).to(w.dtype)


def check_scales(scales: str, calibration) -> None:
    """One line for an unknown scaling, or activation-aware scales without inputs to be aware of."""
    require(scales in SCALES, f"scales {scales!r} is not one of: {', '.join(SCALES)}")
    require(
        scales != "awq" or calibration is not None,
        "scales='awq' needs calibration inputs to measure activations on: pass calibration=[ids, ...], a few "
        "batches of what the model takes (e.g. 8 training windows)",
    )


def awq_scale(weight: torch.Tensor, inputs: torch.Tensor, bits: int, group_size: int) -> tuple[torch.Tensor, float]:
    """AWQ's per-input-channel scale ``s`` for a Linear ``weight`` (out x in) that saw ``inputs`` (rows x in), and its
    ``alpha``: of ``s = mean|x|^alpha`` for alpha on the grid, the one whose ``Q(W diag(s)) diag(s)^-1`` changes the
    layer's outputs on ``inputs`` least (mean squared error). Alpha 0 is round-to-nearest, so on ``inputs`` the
    result is never worse.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> w, x = torch.randn(8, 32), torch.randn(256, 32)
        >>> x[:, :2] *= 30  # two outlier channels
        >>> s, alpha = awq_scale(w, x, bits=3, group_size=16)
        >>> error = lambda q: (x @ q.T - x @ w.T).pow(2).mean().item()
        >>> error(group_quantize(w * s, 3, 16) / s) < error(group_quantize(w, 3, 16)), alpha > 0
        (True, True)
    """
    w, x = weight.detach().float(), inputs.float()
    activation = x.abs().mean(dim=0)
    exact = x @ w.T
    best = (float("inf"), torch.ones_like(activation), 0.0)
    for alpha in (i / AWQ_GRID for i in range(AWQ_GRID)):
        # AWQ's floor: a channel that never fires must not be divided by zero. (AWQ also divides s by
        # sqrt(max s * min s) to keep fp16 weights in range; min-max rounding ignores a common factor.)
        s = activation.pow(alpha).clamp(min=1e-4)
        error = (x @ (group_quantize(w * s, bits, group_size) / s).T - exact).pow(2).mean().item()
        if error < best[0]:
            best = (error, s, alpha)
    return best[1].to(weight.dtype), best[2]


def simulate_low_bit(
    model: nn.Module,
    bits: int,
    group_size: int,
    skip: Sequence[str] = ("lm_head",),
    scales: str = "rtn",
    calibration: Iterable | None = None,
) -> nn.Module:
    """A copy of ``model`` whose ``nn.Linear`` weights are ``group_quantize``d, except the modules named in ``skip``
    (by default a GPT's head, whose weight is its token embedding: rounding it would round the embedding too).

    ``scales="awq"`` scales each layer's input channels first (``awq_scale``), measured on ``calibration``: batches
    of what the model takes (a tensor each, or a loader's ``(x, y)`` pairs, whose ``x`` is used), a few token
    windows for a GPT. A layer the calibration never reaches is rounded to nearest.

    Example:
        >>> net = nn.Sequential(nn.Linear(64, 8), nn.ReLU(), nn.Linear(8, 2))
        >>> low = simulate_low_bit(net, bits=3, group_size=8)
        >>> len(low[0].weight.unique(dim=None)) <= 8 * 8 * 8  # 8 levels a group, 64 groups
        True
        >>> aware = simulate_low_bit(net, bits=3, group_size=8, scales="awq", calibration=[torch.randn(16, 64)])
        >>> simulate_low_bit(net, bits=9, group_size=8)
        Traceback (most recent call last):
        ...
        workbench.ConfigError: bits must be a whole number from 2 to 8 (got 9)
    """
    check_low_bit(bits, group_size)
    check_scales(scales, calibration)
    names = _linears(model, skip)
    inputs = _layer_inputs(model, names, calibration) if scales == "awq" else {}
    return _rounded_copy(model, names, bits, group_size, inputs)


def low_bit_curve(
    model: nn.Module,
    score: Callable[[nn.Module], float],
    bits: Sequence[int] = (8, 6, 5, 4, 3, 2),
    group_sizes: Sequence[int] = (32, 64, 128),
    scales: Sequence[str] = ("rtn",),
    calibration: Iterable | None = None,
) -> pd.DataFrame:
    """``score`` (e.g. validation loss) of ``model`` and of its simulated low-bit copies, per scaling (``scales``:
    ``rtn`` and/or ``awq``, which needs ``calibration`` as ``simulate_low_bit`` does), group size and bit width, with
    the bits each weight costs: the quality-against-bits curve.

    Example:
        >>> net = nn.Linear(64, 4)
        >>> x = torch.randn(32, 64)
        >>> error = lambda m: (m(x) - net(x)).pow(2).mean().item()
        >>> with torch.no_grad():
        ...     curve = low_bit_curve(net, error, bits=(8, 2), group_sizes=(32,))
        >>> curve.bits.tolist(), bool(curve.score.iloc[1] < curve.score.iloc[2])  # fp32, then 8 bits beat 2
        ([32, 8, 2], True)
        >>> with torch.no_grad():
        ...     curve = low_bit_curve(net, error, bits=(3,), group_sizes=(32,), scales=("rtn", "awq"), calibration=[x])
        >>> curve.scales.tolist()[1:], bool(curve.score.iloc[2] <= curve.score.iloc[1])  # awq: never worse on x
        (['rtn', 'awq'], True)
    """
    for b in bits:
        for group in group_sizes:
            check_low_bit(b, group)
    for kind in scales:
        check_scales(kind, calibration)
    names = _linears(model, ("lm_head",))
    inputs = _layer_inputs(model, names, calibration) if "awq" in scales else {}  # measured once for every copy
    rows = [{"bits": 32, "group_size": None, "scales": None, "bits_per_weight": 32.0, "score": score(model)}]
    for kind in scales:
        for group in group_sizes:
            for b in bits:
                low = _rounded_copy(model, names, b, group, inputs if kind == "awq" else {})
                rows.append(
                    {
                        "bits": b,
                        "group_size": group,
                        "scales": kind,
                        "bits_per_weight": bits_per_weight(b, group),
                        "score": score(low),
                    }
                )
    return pd.DataFrame(rows)


def _linears(model: nn.Module, skip: Sequence[str]) -> list[str]:
    names = [name for name, m in model.named_modules() if isinstance(m, nn.Linear) and name not in skip]
    require(bool(names), f"{type(model).__name__} has no Linear layer to quantize (skipping {', '.join(skip)})")
    return names


def _layer_inputs(model: nn.Module, names: Sequence[str], calibration: Iterable) -> dict[str, torch.Tensor]:
    """Each named Linear's inputs over the calibration batches, one row per token or example (rows x in)."""
    seen: dict[str, list[torch.Tensor]] = {name: [] for name in names}
    modules = dict(model.named_modules())

    def keep(name):
        return lambda module, args, output: seen[name].append(args[0].detach().flatten(0, -2))

    hooks = [modules[name].register_forward_hook(keep(name)) for name in names]
    was_training = model.training
    model.eval()  # no dropout: the activations the model sees when it is used
    try:
        with torch.no_grad():
            for batch in calibration:
                model(batch[0] if isinstance(batch, (tuple, list)) else batch)
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    require(
        any(seen.values()),
        "calibration holds no batches: pass a few batches of model inputs, e.g. [ids] of shape (8, block_size)",
    )
    return {name: torch.cat(rows) for name, rows in seen.items() if rows}


def _rounded_copy(
    model: nn.Module, names: Sequence[str], bits: int, group_size: int, inputs: dict[str, torch.Tensor]
) -> nn.Module:
    """A copy of ``model`` with the named Linears' weights rounded, scaled first where ``inputs`` has the layer's."""
    modules = dict(model.named_modules())
    narrow = min(modules[name].in_features for name in names)
    require(
        group_size <= narrow,
        f"group_size {group_size} is larger than a layer's {narrow} inputs: use at most {narrow}",
    )
    low = copy.deepcopy(model)
    with torch.no_grad():
        for name, module in low.named_modules():
            if name not in names:
                continue
            if name in inputs:
                s, _ = awq_scale(module.weight, inputs[name], bits, group_size)
                module.weight.copy_(group_quantize(module.weight * s, bits, group_size) / s)
            else:
                module.weight.copy_(group_quantize(module.weight, bits, group_size))
    return low


@dataclass(frozen=True)
class LowBitWeights(CompressStep):
    """Linear weights rounded to ``bits`` bits in groups of ``group_size`` inputs, round-to-nearest (``rtn``) or
    with activation-aware scales (``awq``, measured on ``calibration_batches`` training batches), simulated: the
    model stays float. It measures what the bits cost in quality; ``bits_per_weight`` what they would save."""

    kind: ClassVar[str] = "low_bit"
    family: ClassVar[str] = "simulated"
    tasks: ClassVar[tuple[str, ...]] = ("image", "lm")
    advice: ClassVar[str] = "use more bits, smaller groups or activation-aware scales (low_bit:bits=4,scales=awq)"
    not_faster: ClassVar[str] = (
        "simulated low-bit weights are stored and multiplied as float32: the step measures what the bits cost in "
        "quality, not speed"
    )
    bits: int = 4
    group_size: int = 32
    scales: str = "rtn"
    calibration_batches: int = 8  # with scales=awq: training batches the activations are measured on

    def check(self) -> None:
        check_low_bit(self.bits, self.group_size)
        require(self.scales in SCALES, f"LowBitWeights.scales must be one of {', '.join(SCALES)} (got {self.scales!r})")
        require(
            self.calibration_batches >= 1,
            f"LowBitWeights.calibration_batches must be >= 1 (got {self.calibration_batches})",
        )

    def model_problem(self, model: nn.Module) -> str | None:
        linears = [m for name, m in model.named_modules() if isinstance(m, nn.Linear) and name != "lm_head"]
        narrow = min((m.in_features for m in linears), default=0)
        if not linears or self.group_size > narrow or any(m.in_features % self.group_size for m in linears):
            widths = sorted({m.in_features for m in linears})
            return (
                f"low_bit: group_size {self.group_size} must divide every Linear layer's inputs "
                f"({', '.join(map(str, widths)) or 'none here'}): choose a divisor of all of them, e.g. 32"
            )
        return None


@implements(LowBitWeights)
def _apply_low_bit(model: nn.Module, step: LowBitWeights, ctx: CompressContext) -> nn.Module:
    calibration = None
    if step.scales == "awq":
        require(ctx.train_loader is not None, "low_bit with scales=awq needs training batches to measure activations")
        calibration = list(itertools.islice(ctx.train_loader, step.calibration_batches))
    low = simulate_low_bit(model, step.bits, step.group_size, scales=step.scales, calibration=calibration)
    names = set(_linears(low, ("lm_head",)))
    rounded = sum(m.weight.numel() for name, m in low.named_modules() if name in names)
    ctx.record(
        step=step.kind,
        bits_per_weight=bits_per_weight(step.bits, step.group_size),
        rounded_weights=rounded,
        # What the rounded weights would take packed (codes and group scales), beside the float bytes they take here.
        packed_bytes_saved=int(rounded * (4 - bits_per_weight(step.bits, step.group_size) / 8)),
    )
    return low
