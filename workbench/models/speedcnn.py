"""A fast small CNN for 32x32 images, shaped like the record CIFAR-10 training scripts' nets.

Few layers and wide ones keep a GPU busy with large convolutions instead of many small kernels:
a 2x2 stem conv (the layer ``model.init=whiten`` sets from the data), then stages of
conv3x3 -> max-pool -> BN -> GELU -> conv3x3 -> BN -> GELU, a global max pool and a linear classifier.
Pooling inside each stage, before the BatchNorm, makes the second half of the stage four times cheaper.
"""

from __future__ import annotations

import torch
from torch import nn

from ._common import channels, fit_strides, init_conv_weights, norm2d, register_model


class SpeedStage(nn.Sequential):
    def __init__(self, cin: int, cout: int, pool: bool, batchnorm: bool):
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding=1, bias=not batchnorm),
            nn.MaxPool2d(2, ceil_mode=True) if pool else nn.Identity(),
            norm2d(cout, batchnorm),
            nn.GELU(),
            nn.Conv2d(cout, cout, 3, padding=1, bias=not batchnorm),
            norm2d(cout, batchnorm),
            nn.GELU(),
        )


class SpeedCNN(nn.Module):
    """Stem (2x2 conv to ``2 * in_channels * 4`` channels, GELU), ``len(widths)`` pooling stages, global
    max pool, Dropout, Linear."""

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
        stem = 2 * in_channels * 4  # every whitening direction of a 2x2 patch, with its sign flipped too
        self.stem = nn.Sequential(nn.Conv2d(in_channels, stem, 2), nn.GELU())
        pools = fit_strides([2] * len(widths), image_size - 1, min_size=2)
        cins = [stem, *widths[:-1]]
        self.features = nn.Sequential(
            *(SpeedStage(cin, cout, pool > 1, batchnorm) for cin, cout, pool in zip(cins, widths, pools))
        )
        self.pool = nn.Sequential(nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Dropout(dropout))
        self.classifier = nn.Linear(widths[-1], num_classes)
        init_conv_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(self.stem(x))))


@register_model("speedcnn")
def speedcnn(num_classes, in_channels, image_size, width=1.0, depth=None, batchnorm=True, dropout=0.0):
    """The speedrun family; ``depth`` = pooling stages (default 3: 64-256-256 channels x ``width``).

    Example:
        >>> model = speedcnn(num_classes=10, in_channels=3, image_size=32)
        >>> sum(p.numel() for p in model.parameters())
        1972802
        >>> model(torch.zeros(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """
    widths = [channels(64 if i == 0 else 256, width) for i in range(depth or 3)]
    return SpeedCNN(num_classes, in_channels, image_size, widths, batchnorm, dropout)
