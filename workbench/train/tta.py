"""Test-time augmentation: the model's logits averaged over mirrored and shifted copies of each image.

A classifier trained with flips and crops has seen each picture in many poses; asking it about a few
of them at test time and averaging its answers removes part of its error for a few forward passes more
(airbench94 gains about 0.4 points on CIFAR-10 this way). Asking only where the plain answer is unsure
(``tta_below``) keeps most of the gain at a fraction of the cost. Flips suit photographs, not digits.

Example:
    >>> import torch
    >>> x = torch.arange(16.0).reshape(1, 1, 4, 4)
    >>> [tuple(v.shape) for v in tta_views(x, "flip_translate", shift=1)]
    [(1, 1, 4, 4), (1, 1, 4, 4), (1, 1, 4, 4), (1, 1, 4, 4), (1, 1, 4, 4), (1, 1, 4, 4)]
    >>> tta_views(x, "translate", shift=1)[1][0, 0, 1:, 1:].equal(x[0, 0, :-1, :-1])  # moved down-right by one
    True
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

TTA_VIEWS = ("none", "flip", "translate", "flip_translate")


def tta_views(x: torch.Tensor, views: str, shift: int = 1) -> list[torch.Tensor]:
    """The copies of the batch ``x`` (B, C, H, W) that ``views`` names, the batch itself first: its mirror
    image (``flip``); each of those moved ``shift`` pixels down-right and up-left, the edge reflected in
    (``translate``)."""
    if views not in TTA_VIEWS:
        raise ValueError(f"evaluation.tta must be one of {', '.join(TTA_VIEWS)} (got '{views}')")
    out = [x, x.flip(3)] if "flip" in views else [x]
    if "translate" in views:
        h, w = x.shape[2:]
        padded = [F.pad(v, (shift, shift, shift, shift), mode="reflect") for v in out]
        out += [p[..., :h, :w] for p in padded] + [p[..., 2 * shift :, 2 * shift :] for p in padded]
    return out


def tta_logits(model: torch.nn.Module, x: torch.Tensor, views: str, shift: int = 1) -> torch.Tensor:
    """``model``'s logits for ``x``, averaged over ``tta_views(x, views, shift)`` in one forward pass."""
    copies = tta_views(x, views, shift)
    return model(torch.cat(copies)).float().view(len(copies), len(x), -1).mean(0)
