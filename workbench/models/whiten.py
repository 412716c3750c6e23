"""Patch whitening: a data-dependent init of a model's first convolution.

Natural images are dominated by a few smooth directions (neighbouring pixels are alike). Setting the
first conv's filters to the principal directions of the training images' patches, each divided by its
standard deviation, hands the next layer decorrelated inputs of equal scale from the first step: the
trick (Coates & Ng's ZCA features, in the record CIFAR-10 scripts as a frozen 2x2 layer) that saves
the epochs a net spends learning it.
"""

from __future__ import annotations

import torch
from torch import nn

WHITEN_IMAGES = 5000  # training images whose patches set the filters: the covariance settles well before this


def whitening_filters(images: torch.Tensor, kernel: tuple[int, int], eps: float = 5e-4) -> torch.Tensor:
    """Filters ``(2 * C*kh*kw, C, kh, kw)``: each principal direction of ``images``' kh x kw patches divided by
    the square root of its variance (plus ``eps``), and its negative next to it, the strongest first.

    Example:
        >>> x = torch.randn(64, 3, 8, 8)
        >>> w = whitening_filters(x, (2, 2))
        >>> w.shape
        torch.Size([24, 3, 2, 2])
        >>> patches = x.unfold(2, 2, 1).unfold(3, 2, 1).permute(0, 2, 3, 1, 4, 5).reshape(-1, 12)
        >>> out = patches @ w[::2].reshape(12, -1).T  # one of each +/- pair: the whitened patches
        >>> torch.allclose(out.T @ out / len(out), torch.eye(12), atol=1e-2)
        True
    """
    kh, kw = kernel
    c = images.shape[1]
    patches = images.float().unfold(2, kh, 1).unfold(3, kw, 1).permute(0, 2, 3, 1, 4, 5).reshape(-1, c * kh * kw)
    covariance = patches.T @ patches / len(patches)
    variances, directions = torch.linalg.eigh(covariance)  # ascending
    scaled = (directions / (variances.clamp_min(0) + eps).sqrt()).T.flip(0)  # one direction per row, strongest first
    return torch.stack([scaled, -scaled], 1).reshape(-1, c, kh, kw)


def whiten_first_conv(model: nn.Module, images: torch.Tensor, eps: float = 5e-4) -> nn.Module:
    """Set ``model``'s first ``nn.Conv2d`` to the whitening filters of ``images`` (normalised as the model
    will see them): as many of them as it has filters, the strongest first; a conv with more filters
    keeps its own init for the rest, and its bias starts at zero.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(1, 8, 2), nn.ReLU())
        >>> _ = whiten_first_conv(net, torch.randn(16, 1, 8, 8))
        >>> torch.equal(net[0].weight[0], -net[0].weight[1])
        True
    """
    conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    if conv is None or conv.groups != 1:
        raise ValueError(
            f"model.init=whiten sets the first convolution, and {type(model).__name__} has "
            f"{'no convolution' if conv is None else 'a grouped one first'}: use model.init=default"
        )
    filters = whitening_filters(images, conv.kernel_size, eps).to(conv.weight)
    n = min(len(filters), conv.out_channels)
    with torch.no_grad():
        conv.weight[:n] = filters[:n]
        if conv.bias is not None:
            conv.bias.zero_()
    return model
