"""Model registry: MLP, small VGG-style CNN, CIFAR ResNets, MobileNetV2 and a small ViT.

Every model takes the same knobs, so a widget, a search or the CLI can turn them without knowing
the family: ``width`` multiplies channel counts, ``depth`` sets the number of blocks (its meaning per
family is in each builder's docstring), ``batchnorm=False`` swaps BatchNorm for Identity and
``dropout`` adds Dropout before the classifier. Every model adapts its downsampling to the image
size, so 8x8 digits, 28x28 MNIST and 32x32 CIFAR all work.

Example:
    >>> import torch
    >>> digits_net = create_model("resnet20", num_classes=10, in_channels=1, image_size=8, width=0.5)
    >>> digits_net(torch.zeros(2, 1, 8, 8)).shape
    torch.Size([2, 10])
    >>> cifar_net = create_model("resnet20", num_classes=10, in_channels=3, image_size=32)
    >>> sum(p.numel() for p in cifar_net.parameters())  # He et al.: 0.27M
    272474
"""
from __future__ import annotations

from torch import nn

from ._common import MODELS, register_model
from .cnn import CNN
from .mlp import MLP
from .mobilenet import MobileNetV2
from .resnet import CifarResNet
from .vit import ViT

__all__ = ["list_models", "check_model_name", "register_model", "create_model",
           "MLP", "CNN", "CifarResNet", "MobileNetV2", "ViT"]


def list_models() -> list[str]:
    """Names of all registered models, sorted.

    Example:
        >>> list_models()
        ['cnn', 'mlp', 'mobilenetv2', 'resnet18', 'resnet20', 'resnet56', 'vit']
    """
    return MODELS.names()


def check_model_name(name: str) -> None:
    """Raise ``ValueError`` listing the valid names (and the closest one) if ``name`` is unknown.

    Example:
        >>> check_model_name("resnet21")
        Traceback (most recent call last):
        ...
        ValueError: Unknown model 'resnet21'. Did you mean 'resnet20'? Choose one of: cnn, mlp, mobilenetv2, resnet18, resnet20, resnet56, vit.
    """
    MODELS.check(name)


def create_model(name: str, num_classes: int, in_channels: int, image_size: int, width: float = 1.0,
                 depth: int | None = None, batchnorm: bool = True, dropout: float = 0.0) -> nn.Module:
    """Build a registered model for ``(N, in_channels, image_size, image_size)`` inputs.

    ``depth=None`` is the family's default (e.g. 3 blocks per stage for ``resnet20``). Initialisation
    draws from torch's global generator, so ``torch.manual_seed`` makes it reproducible.

    Example:
        >>> import torch
        >>> model = create_model("mlp", num_classes=10, in_channels=1, image_size=8, width=0.5, dropout=0.1)
        >>> model(torch.zeros(4, 1, 8, 8)).shape
        torch.Size([4, 10])
    """
    builder = MODELS.get(name)
    if width <= 0:
        raise ValueError(f"width must be > 0 (got {width}); 1.0 is the model's standard size")
    if depth is not None and depth < 1:
        raise ValueError(f"depth must be >= 1 or None for the default (got {depth})")
    if not 0 <= dropout < 1:
        raise ValueError(f"dropout must be in [0, 1) (got {dropout})")
    return builder(num_classes=num_classes, in_channels=in_channels, image_size=image_size,
                   width=width, depth=depth, batchnorm=batchnorm, dropout=dropout)
