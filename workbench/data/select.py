"""Choosing which share of the training set to train on: random, class-balanced, or by difficulty."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .._registry import unknown_name_error
from .config import STRATEGIES
from .loader import BatchLoader


def subset_size(n: int, fraction: float) -> int:
    """How many of ``n`` training examples a ``fraction`` keeps: ``round(fraction * n)``, at least one.

    Example:
        >>> subset_size(1437, 0.25)
        359
    """
    return max(1, round(fraction * n))


def select_subset(
    y: torch.Tensor,
    fraction: float,
    strategy: str = "random",
    *,
    seed: int = 0,
    scores: torch.Tensor | None = None,
) -> torch.Tensor:
    """Sorted indices of ``round(fraction * len(y))`` training examples (at least one).

    ``random``: a seeded random share. ``balanced``: the same count from every class as far as the
    classes allow. ``hardest`` / ``easiest``: the highest / lowest ``scores`` (per-example loss from
    ``per_example_loss``), which shows what a model has or has not learned yet.

    Example:
        >>> y = torch.tensor([0, 0, 0, 0, 1, 1, 2, 2])
        >>> select_subset(y, 0.5, "balanced", seed=0).tolist()
        [0, 1, 4, 7]
        >>> select_subset(y, 0.25, "hardest", scores=torch.arange(8.0)).tolist()
        [6, 7]
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1] (got {fraction})")
    if strategy not in STRATEGIES:
        raise unknown_name_error("selection strategy", strategy, STRATEGIES)
    y = torch.as_tensor(y).cpu().long()
    n = len(y)
    k = subset_size(n, fraction)
    g = torch.Generator().manual_seed(seed)
    if strategy == "random":
        picked = torch.randperm(n, generator=g)[:k]
    elif strategy == "balanced":
        picked = _balanced(y, k, g)
    else:
        if scores is None:
            raise ValueError(
                f"Selection '{strategy}' ranks examples by loss: pass scores=per_example_loss(model, x, y, "
                f"mean=..., std=..., device=...) computed with a trained model."
            )
        scores = torch.as_tensor(scores).cpu().float()
        if scores.shape != y.shape:
            raise ValueError(f"scores must hold one value per example ({n}), got shape {tuple(scores.shape)}")
        picked = scores.topk(k, largest=strategy == "hardest").indices
    return picked.sort().values


def _balanced(y: torch.Tensor, k: int, g: torch.Generator) -> torch.Tensor:
    classes, counts = y.unique(return_counts=True)
    # Fill the smallest classes first: a class too small for an equal share gives its slack to the rest.
    quota = torch.zeros_like(counts)
    left = k
    for rank, i in enumerate(counts.argsort(stable=True).tolist()):
        quota[i] = min(int(counts[i]), left // (len(classes) - rank))
        left -= int(quota[i])
    for i in range(len(classes)):  # the remainder of the division, one each, where room is left
        if left and quota[i] < counts[i]:
            quota[i] += 1
            left -= 1
    parts = []
    for cls, q in zip(classes.tolist(), quota.tolist()):
        members = (y == cls).nonzero().flatten()
        parts.append(members[torch.randperm(len(members), generator=g)[:q]])
    return torch.cat(parts)


@torch.no_grad()
def per_example_loss(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    mean: Sequence[float] | torch.Tensor | None,
    std: Sequence[float] | torch.Tensor | None,
    device: str | torch.device,
    batch_size: int = 512,
) -> torch.Tensor:
    """Cross-entropy of every example under ``model`` (in eval mode, without gradients), on the CPU.

    ``model`` must already be on ``device``; its train/eval mode is restored afterwards.

    Example:
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
        >>> x = torch.randint(0, 256, (5, 3, 2, 2), dtype=torch.uint8)
        >>> per_example_loss(model, x, torch.tensor([0, 1, 2, 0, 1]), mean=None, std=None, device="cpu").shape
        torch.Size([5])
    """
    was_training = model.training
    model.eval()
    try:
        loader = BatchLoader(x, y, batch_size, device=device, mean=mean, std=std)
        losses = [F.cross_entropy(model(xb), yb, reduction="none").float().cpu() for xb, yb in loader]
    finally:
        model.train(was_training)
    return torch.cat(losses)
