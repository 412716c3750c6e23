"""A multilayer perceptron: the baseline every other model has to beat, and the tiny smoke-test model."""

from __future__ import annotations

import torch
from torch import nn

from ._common import channels, register_model


class MLP(nn.Module):
    """Flatten -> ``depth`` x (Linear -> BatchNorm1d -> ReLU -> Dropout) -> Linear classifier."""

    def __init__(
        self,
        num_classes: int,
        in_features: int,
        hidden: int = 256,
        depth: int = 2,
        batchnorm: bool = True,
        dropout: float = 0.0,
    ):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        for i in range(depth):
            layers += [
                nn.Linear(in_features if i == 0 else hidden, hidden, bias=not batchnorm),
                nn.BatchNorm1d(hidden) if batchnorm else nn.Identity(),
                nn.ReLU(),
                nn.Dropout(dropout),
            ]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@register_model("mlp")
def mlp(num_classes, in_channels, image_size, width=1.0, depth=None, batchnorm=True, dropout=0.0):
    """MLP with 256 x ``width`` units per hidden layer; ``depth`` = hidden layers (default 2).

    Example:
        >>> model = mlp(num_classes=10, in_channels=1, image_size=8)
        >>> sum(p.numel() for p in model.parameters())
        85514
    """
    return MLP(num_classes, in_channels * image_size**2, channels(256, width), depth or 2, batchnorm, dropout)
