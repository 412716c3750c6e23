"""The model registry and the few building blocks the families share.

Every model is built from plain ``nn.Conv2d`` / ``nn.Linear`` / ``nn.BatchNorm2d`` modules and ends in
an ``nn.Linear`` named ``classifier``, so structured pruning tools can trace it and know which layer
to leave alone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from .._registry import Registry

MODELS: Registry[Callable[..., nn.Module]] = Registry("model")
# What each model reads: "images" (N, C, H, W) or "tokens" (N, T) ids; a task takes the models of its input.
MODEL_INPUTS: dict[str, str] = {}


def channels(base: int, width: float) -> int:
    """``base`` scaled by ``width``, never below one channel."""
    return max(1, round(base * width))


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round to a multiple of ``divisor`` (MobileNet's rule: hardware likes multiples of 8, and
    rounding may not shrink a layer by more than 10%)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def fit_strides(strides: list[int], image_size: int, min_size: int = 4) -> list[int]:
    """Turn the *earliest* stride-2 steps into stride 1 where the image is too small for all of them.

    A CIFAR net halves 32 -> 4; on 8x8 digits the same strides would leave nothing, so the feature
    map may not shrink below ``min_size`` pixels (smaller inputs keep their size). Dropping early
    strides rather than late ones keeps the first layers at full resolution, where the detail is.
    """
    size, allowed = image_size, 0
    while (size + 1) // 2 >= min_size:  # a 3x3/pad-1 stride-2 conv gives ceil(size / 2)
        size, allowed = (size + 1) // 2, allowed + 1
    excess = sum(s > 1 for s in strides) - allowed
    fitted = []
    for s in strides:
        if s > 1 and excess > 0:
            s, excess = 1, excess - 1
        fitted.append(s)
    return fitted


def norm2d(num_channels: int, batchnorm: bool) -> nn.Module:
    return nn.BatchNorm2d(num_channels) if batchnorm else nn.Identity()


class ConvNormAct(nn.Sequential):
    """Conv -> BatchNorm (or Identity) -> activation; the conv gets a bias only when there is no BN."""

    def __init__(self, cin, cout, kernel=3, stride=1, groups=1, batchnorm=True, act: type | None = nn.ReLU):
        super().__init__(
            nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=not batchnorm),
            norm2d(cout, batchnorm),
            act() if act else nn.Identity(),
        )


def init_conv_weights(model: nn.Module) -> nn.Module:
    """He et al.'s normal init for convs; linears and norms keep PyTorch's defaults.

    Fan-in keeps the forward signal's scale without BatchNorm too; fan-out (torchvision's choice)
    shrinks it layer by layer, and a deep net without BN then starts with all-zero features.
    """
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return model


def register_model(name: str, reads: str = "images"):
    """Decorator that adds a model builder to the registry under ``name``; ``reads`` is its input:
    ``images`` or ``tokens`` (a language model, built from ``GPTShape``'s fields, e.g. ``gpt``).

    An image builder takes ``(num_classes, in_channels, image_size, width, depth, batchnorm, dropout)`` as
    keywords and returns an ``nn.Module`` that maps ``(N, in_channels, image_size, image_size)`` to
    ``(N, num_classes)`` logits. Adding a model is this one decorated function (plus an import line in
    ``models/__init__.py`` when it lives in a new module); no list elsewhere names the models.

    Example (skipped by the test suite so it does not add a model to everybody's dropdown):
        >>> @register_model("linear")  # doctest: +SKIP
        ... def linear(num_classes, in_channels, image_size, **knobs):
        ...     return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * image_size**2, num_classes))
    """

    def add(builder):
        MODEL_INPUTS[name] = reads
        return MODELS.register(name)(builder)

    return add


def list_models(reads: str | None = None) -> list[str]:
    """Names of all registered models (those that read ``reads``: images or tokens), sorted.

    Example:
        >>> models = list_models()
        >>> models == sorted(models), {"cnn", "mlp", "resnet20", "gpt"} <= set(models)
        (True, True)
        >>> list_models("tokens")
        ['gpt']
    """
    return [n for n in MODELS.names() if reads is None or MODEL_INPUTS[n] == reads]


def model_input(name: str) -> str:
    """What model ``name`` reads: ``images`` or ``tokens``."""
    MODELS.check(name)
    return MODEL_INPUTS[name]


def check_model_name(name: str) -> None:
    """Raise ``ValueError`` listing the valid names (and the closest one) if ``name`` is unknown.

    Example:
        >>> check_model_name("resnet21")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: Unknown model 'resnet21'. Did you mean 'resnet20'? Choose one of: cnn, gpt, mlp, ...
    """
    MODELS.check(name)


def create_model(name: str, *args: Any, **kwargs: Any) -> nn.Module:
    """Build a registered model. An image model takes ``(num_classes, in_channels, image_size, width=1.0,
    depth=None, batchnorm=True, dropout=0.0)`` and maps ``(N, in_channels, image_size, image_size)`` to
    logits; a token model takes its own arguments (``gpt``: ``GPTShape``'s fields).

    ``depth=None`` is the family's default (e.g. 3 blocks per stage for ``resnet20``). Initialisation
    draws from torch's global generator, so ``torch.manual_seed`` makes it reproducible.

    Example:
        >>> import torch
        >>> model = create_model("mlp", num_classes=10, in_channels=1, image_size=8, width=0.5, dropout=0.1)
        >>> model(torch.zeros(4, 1, 8, 8)).shape
        torch.Size([4, 10])
        >>> gpt = create_model("gpt", vocab_size=256, n_layer=1, n_head=2, n_embd=16, block_size=8)
        >>> gpt(torch.zeros(1, 8, dtype=torch.long)).shape  # a next-token score per position
        torch.Size([1, 8, 256])
    """
    builder = MODELS.get(name)
    if MODEL_INPUTS[name] == "tokens":
        return builder(*args, **kwargs)
    return _image_model(builder, *args, **kwargs)


def _image_model(
    builder: Callable[..., nn.Module],
    num_classes: int,
    in_channels: int,
    image_size: int,
    width: float = 1.0,
    depth: int | None = None,
    batchnorm: bool = True,
    dropout: float = 0.0,
) -> nn.Module:
    if width <= 0:
        raise ValueError(f"width must be > 0 (got {width}); 1.0 is the model's standard size")
    if depth is not None and depth < 1:
        raise ValueError(f"depth must be >= 1 or None for the default (got {depth})")
    if not 0 <= dropout < 1:
        raise ValueError(f"dropout must be in [0, 1) (got {dropout})")
    return builder(
        num_classes=num_classes,
        in_channels=in_channels,
        image_size=image_size,
        width=width,
        depth=depth,
        batchnorm=batchnorm,
        dropout=dropout,
    )
