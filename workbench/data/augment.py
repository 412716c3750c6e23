"""Augmentations applied to a whole float batch at once, on whatever device the batch lives on.

Each op draws one small set of per-sample parameters (offsets, flip bits, angles) from a CPU
``torch.Generator`` (so a seed gives the same augmentations on any device), then transforms the
batch with tensor indexing, ``torch.where`` and ``grid_sample``: no Python loop over samples.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .config import AugmentConfig


def augment_batch(x: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator | None = None) -> torch.Tensor:
    """Randomly crop, translate, flip, rotate, jitter brightness and contrast, and cut out a float batch
    (B, C, H, W), as ``cfg`` says.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> x = torch.rand(16, 3, 32, 32)
        >>> y = augment_batch(x, AugmentConfig(flip=True, crop=4, cutout=8, rotate=10), g)
        >>> y.shape, y.dtype
        (torch.Size([16, 3, 32, 32]), torch.float32)
    """
    if cfg.crop:
        x = _shift(x, cfg.crop, generator, reflect=True)
    if cfg.translate:
        x = _shift(x, cfg.translate, generator, reflect=False)
    if cfg.flip is True:  # "alternate" needs to know each example and the epoch: BatchLoader mirrors those
        flip = torch.rand(len(x), generator=generator).lt(0.5).to(x.device)
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
    if cfg.rotate:
        angles = (torch.rand(len(x), generator=generator) * 2 - 1) * cfg.rotate
        x = _rotate(x, angles.to(x.device))
    if cfg.brightness or cfg.contrast:
        x = _jitter(x, cfg.brightness, cfg.contrast, generator)
    if cfg.cutout:
        x = _cutout(x, cfg.cutout, generator)
    return x


def _shift(x: torch.Tensor, pad: int, generator: torch.Generator | None, reflect: bool) -> torch.Tensor:
    """Pad each side by ``pad`` and cut every sample's own H x W window back out (a random shift)."""
    b, c, h, w = x.shape
    # Reflection (crop) keeps image statistics at the border; zeros (translate) shift in blank space.
    mode = "reflect" if reflect and pad < min(h, w) else "constant"
    padded = F.pad(x, (pad, pad, pad, pad), mode=mode)
    dy, dx = torch.randint(0, 2 * pad + 1, (2, b), generator=generator).to(x.device)
    # One gather with a flat (row * width + col) index per sample: 4x faster than 4-way indexing on CPU.
    rows = dy[:, None, None] + torch.arange(h, device=x.device)[:, None]
    cols = dx[:, None, None] + torch.arange(w, device=x.device)
    index = (rows * (w + 2 * pad) + cols).reshape(b, 1, h * w).expand(b, c, h * w)
    return padded.reshape(b, c, -1).gather(2, index).reshape(b, c, h, w)


def _rotate(x: torch.Tensor, degrees: torch.Tensor) -> torch.Tensor:
    """Rotate each sample by its own angle (degrees, counter-clockwise) about the centre; corners fill with 0."""
    a = degrees.to(x.dtype) * (math.pi / 180)
    cos, sin, zero = a.cos(), a.sin(), torch.zeros_like(a)
    # grid_sample reads the input at theta @ (output x, y); with y pointing down the image, this theta
    # turns the picture counter-clockwise as shown on screen (90 degrees == torch.rot90(k=1)).
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _jitter(x: torch.Tensor, brightness: float, contrast: float, generator: torch.Generator | None) -> torch.Tensor:
    """Scale each sample's deviation from its own mean by 1 +/- up to ``contrast``, then shift it by up to
    +/- ``brightness``: one multiply-add over the batch."""
    b = len(x)
    scale = 1 + (torch.rand(b, generator=generator) * 2 - 1) * contrast
    shift = (torch.rand(b, generator=generator) * 2 - 1) * brightness
    scale, shift = (t.to(x.device, x.dtype)[:, None, None, None] for t in (scale, shift))
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * scale + mean + shift


def _cutout(x: torch.Tensor, size: int, generator: torch.Generator | None) -> torch.Tensor:
    """Zero one size x size square per sample, placed fully inside the image."""
    b, _, h, w = x.shape
    size = min(size, h, w)
    top = torch.randint(0, h - size + 1, (b,), generator=generator).to(x.device)
    left = torch.randint(0, w - size + 1, (b,), generator=generator).to(x.device)
    r = torch.arange(h, device=x.device)
    c = torch.arange(w, device=x.device)
    in_rows = (r >= top[:, None]) & (r < top[:, None] + size)
    in_cols = (c >= left[:, None]) & (c < left[:, None] + size)
    return x.masked_fill((in_rows[:, :, None] & in_cols[:, None, :])[:, None], 0)
