"""A small VGG-style CNN: blocks of two 3x3 convs, each block but the first halving the image."""

from __future__ import annotations

import torch
from torch import nn

from ._common import ConvNormAct, channels, fit_strides, init_conv_weights, register_model


class CNN(nn.Module):
    """``len(widths)`` blocks of (conv3x3 -> BN -> ReLU) x 2, max-pooling between blocks, then
    global average pooling -> Dropout -> Linear classifier."""

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        image_size: int,
        widths: list[int],
        batchnorm: bool = True,
        dropout: float = 0.0,
    ):
        super().__init__()
        # The first block works at full resolution; the others pool first, as far as the image allows.
        pools = fit_strides([1] + [2] * (len(widths) - 1), image_size)
        layers: list[nn.Module] = []
        cin = in_channels
        for pool, cout in zip(pools, widths):
            if pool > 1:
                layers.append(nn.MaxPool2d(2, ceil_mode=True))  # ceil: 7 -> 4, like a stride-2 conv
            layers += [ConvNormAct(cin, cout, batchnorm=batchnorm), ConvNormAct(cout, cout, batchnorm=batchnorm)]
            cin = cout
        self.features = nn.Sequential(*layers)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout))
        self.classifier = nn.Linear(cin, num_classes)
        init_conv_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(x)))


@register_model("cnn")
def cnn(num_classes, in_channels, image_size, width=1.0, depth=None, batchnorm=True, dropout=0.0):
    """VGG-style CNN; ``depth`` = conv blocks (default 3: 32-64-128 channels x ``width``,
    doubling per block up to 256).

    Example:
        >>> model = cnn(num_classes=10, in_channels=3, image_size=32)
        >>> sum(p.numel() for p in model.parameters())
        288746
    """
    widths = [channels(min(32 * 2**i, 256), width) for i in range(depth or 3)]
    return CNN(num_classes, in_channels, image_size, widths, batchnorm, dropout)
