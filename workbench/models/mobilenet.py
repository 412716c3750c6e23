"""MobileNetV2 (Sandler et al. 2018) adapted to small images: stride-1 stem and second stage, as in
the usual CIFAR ports, so 32x32 inputs end at 4x4 rather than 1x1."""

from __future__ import annotations

import torch
from torch import nn

from ._common import ConvNormAct, fit_strides, init_conv_weights, make_divisible, register_model

# (expansion t, output channels c, blocks n, first stride s) from the paper's Table 2, with the
# 24-channel stage at stride 1 (and the stem, below) for small images.
STAGES = [(1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]


class InvertedResidual(nn.Module):
    """1x1 expand (ReLU6) -> depthwise 3x3 (ReLU6) -> 1x1 project with no activation (the linear
    bottleneck), plus the input when the shape is unchanged."""

    def __init__(self, cin: int, cout: int, stride: int, expansion: int, batchnorm: bool):
        super().__init__()
        hidden = cin * expansion
        expand = [ConvNormAct(cin, hidden, 1, batchnorm=batchnorm, act=nn.ReLU6)] if expansion != 1 else []
        self.block = nn.Sequential(
            *expand,
            ConvNormAct(hidden, hidden, 3, stride, groups=hidden, batchnorm=batchnorm, act=nn.ReLU6),
            ConvNormAct(hidden, cout, 1, batchnorm=batchnorm, act=None),
        )
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x) if self.residual else self.block(x)


class MobileNetV2(nn.Module):
    """Stem conv -> inverted-residual stages -> 1x1 conv to ``last`` channels -> pool -> Dropout -> Linear."""

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        image_size: int,
        stages=STAGES,
        width: float = 1.0,
        last: int = 1280,
        batchnorm: bool = True,
        dropout: float = 0.0,
    ):
        super().__init__()
        cin = make_divisible(32 * width)
        layers: list[nn.Module] = [ConvNormAct(in_channels, cin, 3, 1, batchnorm=batchnorm, act=nn.ReLU6)]
        strides = fit_strides([s for _, _, _, s in stages], image_size)
        for (t, c, n, _), stride in zip(stages, strides):
            cout = make_divisible(c * width)
            for i in range(n):
                layers.append(InvertedResidual(cin, cout, stride if i == 0 else 1, t, batchnorm))
                cin = cout
        last = make_divisible(last * width)
        layers.append(ConvNormAct(cin, last, 1, batchnorm=batchnorm, act=nn.ReLU6))
        self.features = nn.Sequential(*layers)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout))
        self.classifier = nn.Linear(last, num_classes)
        init_conv_weights(self)
        if not batchnorm:  # nothing rescales the residual sums then: start each block as identity (Fixup)
            for block in self.features:
                if isinstance(block, InvertedResidual) and block.residual:
                    nn.init.zeros_(block.block[-1][0].weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(x)))


@register_model("mobilenetv2")
def mobilenetv2(num_classes, in_channels, image_size, width=1.0, depth=None, batchnorm=True, dropout=0.0):
    """MobileNetV2 with channels x ``width`` rounded to multiples of 8; ``depth`` = blocks in each of
    the five repeated stages (default: the paper's 2, 3, 4, 3, 3; the first and last stage keep one).

    Example:
        >>> model = mobilenetv2(num_classes=10, in_channels=3, image_size=32)
        >>> sum(p.numel() for p in model.parameters())
        2236682
    """
    stages = STAGES if depth is None else [(t, c, n if n == 1 else depth, s) for t, c, n, s in STAGES]
    return MobileNetV2(num_classes, in_channels, image_size, stages, width, batchnorm=batchnorm, dropout=dropout)
