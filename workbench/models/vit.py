"""A small vision transformer (Dosovitskiy et al. 2021) for small images: conv patch embedding,
learned position embedding, pre-norm blocks, mean-pooled tokens instead of a class token."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._common import channels, register_model


class Attention(nn.Module):
    """Multi-head self-attention through ``F.scaled_dot_product_attention`` (fused kernels on GPU).

    The head size is read from the tensor, so pruning the qkv/proj head dimensions keeps it working.
    """

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, _ = x.shape
        q, k, v = self.qkv(x).reshape(B, N, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        return self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, N, -1))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float):
        super().__init__()
        hidden = round(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    """Conv patch embedding -> + position embedding -> ``depth`` blocks -> LayerNorm -> token mean ->
    Dropout -> Linear classifier. Pixels past the last whole patch are dropped."""

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        image_size: int,
        patch: int,
        dim: int,
        depth: int,
        num_heads: int,
        mlp_ratio: float = 2.0,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.patch_embed = nn.Conv2d(in_channels, dim, patch, patch)
        self.pos_embed = nn.Parameter(torch.randn(1, (image_size // patch) ** 2, dim) * 0.02)
        self.blocks = nn.Sequential(*[Block(dim, num_heads, mlp_ratio) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(dim, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Linear):  # ViT's init; PyTorch's default is too wide for deep stacks
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x).flatten(2).transpose(1, 2) + self.pos_embed
        x = self.norm(self.blocks(x)).mean(dim=1)
        return self.classifier(self.dropout(x))


@register_model("vit")
def vit(num_classes, in_channels, image_size, width=1.0, depth=None, batchnorm=True, dropout=0.0):
    """Small ViT: 4 heads of 32 x ``width`` dims, MLP ratio 2; ``depth`` = transformer blocks (default 6).

    Patches aim at an 8x8 token grid and are never smaller than 2 pixels: patch 2 on 8x8 digits
    (4x4 tokens), 4 on 28x28 MNIST (7x7) and 32x32 CIFAR (8x8). It normalises with LayerNorm, so
    ``batchnorm`` has no effect.

    Example:
        >>> model = vit(num_classes=10, in_channels=3, image_size=32)
        >>> sum(p.numel() for p in model.parameters())
        810890
    """
    heads = 4
    patch = max(2, round(image_size / 8))
    return ViT(
        num_classes, in_channels, image_size, patch, heads * channels(32, width), depth or 6, heads, dropout=dropout
    )
