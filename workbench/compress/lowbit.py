"""Low-bit weights, simulated: each Linear weight rounded to ``bits`` bits in groups of ``group_size`` inputs, then
stored back as floats. Nothing gets faster (no kernel runs low-bit here); what it shows is how much quality each
bit width costs, the curve behind GPTQ and AWQ: quality against bits per weight.

Round-to-nearest (RTN), asymmetric: each group of a row keeps its minimum and its step ``(max - min) / (2^bits - 1)``
(two 16-bit numbers a group, so a weight costs ``bits + 32 / group_size`` bits), and every weight becomes the
nearest of the ``2^bits`` levels between them. Smaller groups follow the weights more closely and cost more bits.

Example:
    >>> w = torch.tensor([[0.0, 0.1, 0.2, 0.3, 1.0, 1.1, 1.2, 1.3]])
    >>> group_quantize(w, bits=2, group_size=4)  # two groups, 4 levels each: exact here
    tensor([[0.0000, 0.1000, 0.2000, 0.3000, 1.0000, 1.1000, 1.2000, 1.3000]])
    >>> round(bits_per_weight(4, 32), 2)
    5.0
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import pandas as pd
import torch
from torch import nn

from .._errors import require

SCALE_BITS = 16  # a group's step and minimum, each stored in 16 bits


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


def simulate_low_bit(model: nn.Module, bits: int, group_size: int, skip: Sequence[str] = ("lm_head",)) -> nn.Module:
    """A copy of ``model`` whose ``nn.Linear`` weights are ``group_quantize``d, except the modules named in ``skip``
    (by default a GPT's head, whose weight is its token embedding: rounding it would round the embedding too).

    Example:
        >>> net = nn.Sequential(nn.Linear(64, 8), nn.ReLU(), nn.Linear(8, 2))
        >>> low = simulate_low_bit(net, bits=3, group_size=8)
        >>> len(low[0].weight.unique(dim=None)) <= 8 * 8 * 8  # 8 levels a group, 64 groups
        True
        >>> simulate_low_bit(net, bits=9, group_size=8)
        Traceback (most recent call last):
        ...
        workbench.ConfigError: bits must be a whole number from 2 to 8 (got 9)
    """
    check_low_bit(bits, group_size)
    linears = {name: m for name, m in model.named_modules() if isinstance(m, nn.Linear) and name not in skip}
    require(bool(linears), f"{type(model).__name__} has no Linear layer to quantize (skipping {', '.join(skip)})")
    narrow = min(linears.values(), key=lambda m: m.in_features)
    require(
        group_size <= narrow.in_features,
        f"group_size {group_size} is larger than a layer's {narrow.in_features} inputs: use at most "
        f"{narrow.in_features}",
    )
    low = copy.deepcopy(model)
    with torch.no_grad():
        for name, module in low.named_modules():
            if name in linears:
                module.weight.copy_(group_quantize(module.weight, bits, group_size))
    return low


def low_bit_curve(
    model: nn.Module,
    score: Callable[[nn.Module], float],
    bits: Sequence[int] = (8, 6, 5, 4, 3, 2),
    group_sizes: Sequence[int] = (32, 64, 128),
) -> pd.DataFrame:
    """``score`` (e.g. validation loss) of ``model`` and of its simulated low-bit copies, per bit width and group
    size, with the bits each weight costs: the quality-against-bits curve.

    Example:
        >>> net = nn.Linear(64, 4)
        >>> x = torch.randn(32, 64)
        >>> error = lambda m: (m(x) - net(x)).pow(2).mean().item()
        >>> with torch.no_grad():
        ...     curve = low_bit_curve(net, error, bits=(8, 2), group_sizes=(32,))
        >>> curve.bits.tolist(), bool(curve.score.iloc[1] < curve.score.iloc[2])  # fp32, then 8 bits beat 2
        ([32, 8, 2], True)
    """
    rows = [{"bits": 32, "group_size": None, "bits_per_weight": 32.0, "score": score(model)}]
    for group in group_sizes:
        for b in bits:
            rows.append(
                {
                    "bits": b,
                    "group_size": group,
                    "bits_per_weight": bits_per_weight(b, group),
                    "score": score(simulate_low_bit(model, b, group)),
                }
            )
    return pd.DataFrame(rows)
