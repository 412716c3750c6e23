"""Named recipes: several compression steps that were measured to work together, under one name the
CLI (``--compress recommended``), the panel and the notebooks share.
"""

from __future__ import annotations

from collections.abc import Callable

from .._errors import ConfigError
from .core import CompressStep, FineTune, _split_top_level, parse_step, read_value
from .pruning import StructuredPrune


def recommended_pruning(amount: float = 0.5) -> tuple[CompressStep, ...]:
    """Structured pruning that keeps accuracy, as measured by ``benchmarks/compression.py`` (resnet20
    and a half-width mobilenetv2 on digits, 50% of channels: parameters -73 to -75%, accuracy within
    0.6 points): Taylor importance, ``amount`` reached in 3 steps with 2 fine-tune epochs between, then
    5 epochs of fine-tuning from 0.4x the training lr. A one-shot L1 prune with one fine-tune epoch at
    a tenth of the lr lost 54 points on resnet20 at width 0.5 (83.9% -> 30.3%).

    Example:
        >>> [s.kind for s in recommended_pruning(0.3)], recommended_pruning(0.3)[0].amount
        (['prune_structured', 'finetune'], 0.3)
    """
    return (
        StructuredPrune(amount=amount, method="taylor", steps=3, finetune_epochs=2),
        FineTune(epochs=5, lr_factor=0.4),
    )


RECIPES: dict[str, Callable[..., tuple[CompressStep, ...]]] = {"recommended": recommended_pruning}


def parse_steps(spec: str) -> tuple[CompressStep, ...]:
    """Like ``parse_step``, and a recipe name (``RECIPES``) gives its steps: ``"recommended:amount=0.3"``.

    Example:
        >>> [s.kind for s in parse_steps("recommended")], [s.kind for s in parse_steps("finetune:epochs=2")]
        (['prune_structured', 'finetune'], ['finetune'])
    """
    kind, _, args = spec.partition(":")
    if kind.strip() not in RECIPES:
        return (parse_step(spec),)
    values = {}
    for pair in _split_top_level(args):
        key, eq, raw = pair.partition("=")
        if not eq or key.strip() != "amount":
            raise ConfigError(
                f"Bad argument '{pair}' in '{spec}': the {kind.strip()} recipe takes amount=FRACTION only."
            )
        values["amount"] = read_value(raw.strip(), float, f"{kind.strip()}.amount")
    return RECIPES[kind.strip()](**values)
