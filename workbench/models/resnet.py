"""ResNets for small images: He et al. 2016's CIFAR ResNets (resnet20, resnet56) and the CIFAR-style
ResNet-18 (3x3 stem, no max-pool)."""

from __future__ import annotations

import torch
from torch import nn

from ._common import ConvNormAct, channels, fit_strides, init_conv_weights, register_model


class BasicBlock(nn.Module):
    """Two 3x3 convs plus a shortcut: identity, or a 1x1 conv + BN where the shape changes.

    That is He et al.'s option B. Option A (subsample and zero-pad the new channels) saves 2.8k of
    ResNet-20's 0.27M parameters, but torch-pruning cannot follow the padding through the residual
    add, and structured pruning then breaks the network.
    """

    def __init__(self, cin: int, cout: int, stride: int, batchnorm: bool):
        super().__init__()
        self.conv1 = ConvNormAct(cin, cout, 3, stride, batchnorm=batchnorm)
        self.conv2 = ConvNormAct(cout, cout, 3, 1, batchnorm=batchnorm, act=None)
        reshape = stride != 1 or cin != cout
        self.shortcut = ConvNormAct(cin, cout, 1, stride, batchnorm=batchnorm, act=None) if reshape else nn.Identity()
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv2(self.conv1(x)) + self.shortcut(x))


class CifarResNet(nn.Module):
    """3x3 stem -> one stage of ``per_stage`` BasicBlocks per entry of ``widths``, each stage but the
    first opening with stride 2 as far as the image allows -> global average pool -> Dropout -> Linear."""

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        image_size: int,
        widths: list[int],
        per_stage: int,
        batchnorm: bool = True,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.stem = ConvNormAct(in_channels, widths[0], 3, batchnorm=batchnorm)
        blocks, cin = [], widths[0]
        for stride, cout in zip(fit_strides([1] + [2] * (len(widths) - 1), image_size), widths):
            blocks += [
                BasicBlock(cin if i == 0 else cout, cout, stride if i == 0 else 1, batchnorm) for i in range(per_stage)
            ]
            cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout))
        self.classifier = nn.Linear(cin, num_classes)
        init_conv_weights(self)
        if not batchnorm:  # nothing rescales the residual sums then: start each block as identity (Fixup)
            for block in self.blocks:
                nn.init.zeros_(block.conv2[0].weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.blocks(self.stem(x))))


def _cifar_resnet(default_blocks, num_classes, in_channels, image_size, width, depth, batchnorm, dropout):
    widths = [channels(c, width) for c in (16, 32, 64)]
    return CifarResNet(num_classes, in_channels, image_size, widths, depth or default_blocks, batchnorm, dropout)


@register_model("resnet20")
def resnet20(num_classes, in_channels, image_size, width=1.0, depth=None, batchnorm=True, dropout=0.0):
    """He et al.'s ResNet-20 (16-32-64 channels x ``width``); ``depth`` = blocks per stage n, so the
    network has 6n+2 layers (default n=3; ``depth=9`` gives ResNet-56).

    Example:
        >>> model = resnet20(num_classes=10, in_channels=3, image_size=32)
        >>> sum(p.numel() for p in model.parameters())
        272474
    """
    return _cifar_resnet(3, num_classes, in_channels, image_size, width, depth, batchnorm, dropout)


@register_model("resnet56")
def resnet56(num_classes, in_channels, image_size, width=1.0, depth=None, batchnorm=True, dropout=0.0):
    """He et al.'s ResNet-56: ResNet-20 with ``depth`` = blocks per stage n defaulting to 9.

    Example:
        >>> model = resnet56(num_classes=10, in_channels=3, image_size=32)
        >>> sum(p.numel() for p in model.parameters())
        855770
    """
    return _cifar_resnet(9, num_classes, in_channels, image_size, width, depth, batchnorm, dropout)


@register_model("resnet18")
def resnet18(num_classes, in_channels, image_size, width=1.0, depth=None, batchnorm=True, dropout=0.0):
    """CIFAR-style ResNet-18: 3x3 stem, no max-pool, 64-128-256-512 channels x ``width``;
    ``depth`` = BasicBlocks per stage (default 2).

    Example:
        >>> model = resnet18(num_classes=10, in_channels=3, image_size=32)
        >>> sum(p.numel() for p in model.parameters())
        11173962
    """
    widths = [channels(c, width) for c in (64, 128, 256, 512)]
    return CifarResNet(num_classes, in_channels, image_size, widths, depth or 2, batchnorm, dropout)
