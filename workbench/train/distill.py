"""Knowledge distillation: a student learns from a trained teacher's softened outputs as well as the labels
(for a language model, token by token: the KL term compares the two next-token distributions at every position).

``loss = alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T)) + (1 - alpha) * CE(student, y)``

Dividing the logits by a temperature ``T > 1`` flattens both distributions, so the teacher's small
probabilities for wrong classes ("this 7 looks a bit like a 1") carry signal. The soft term's gradients
shrink by ``1/T^2``; the ``T^2`` factor restores their scale, so changing ``T`` leaves the balance of
the soft and the hard term about where it was (Hinton et al., 2015). ``workbench.distill`` trains a
student with and without a teacher over seeds; the pipeline finds the teacher's weights
(``DistillConfig.teacher``).

Example:
    >>> import torch
    >>> teacher, student = torch.nn.Linear(4, 3), torch.nn.Linear(4, 3)
    >>> loss_fn = distillation_loss(teacher, alpha=0.5, temperature=2.0)
    >>> x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))
    >>> loss_fn(student(x), x, y).shape
    torch.Size([])
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .._errors import ConfigError


def distillation_loss(
    teacher: nn.Module, *, alpha: float, temperature: float, label_smoothing: float = 0.0
) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
    """A ``criterion(logits, x, y)`` for ``workbench.train.train`` that blends the teacher's soft targets with
    the labels.

    The teacher is put in eval mode, frozen, and run under ``torch.no_grad`` on the same batch ``x``.
    ``alpha=0`` is plain cross-entropy; ``alpha=1`` ignores the labels.

    Example:
        >>> import torch, torch.nn.functional as F
        >>> teacher = torch.nn.Linear(4, 3)
        >>> logits, x, y = torch.randn(8, 3), torch.randn(8, 4), torch.randint(0, 3, (8,))
        >>> plain = distillation_loss(teacher, alpha=0.0, temperature=4.0)
        >>> torch.equal(plain(logits, x, y), F.cross_entropy(logits, y))
        True
    """
    if not 0 <= alpha <= 1:
        raise ConfigError(f"distill.alpha must be in [0, 1] (got {alpha})")
    if not temperature > 0:
        raise ConfigError(f"distill.temperature must be > 0 (got {temperature})")
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)

    def criterion(logits: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        hard = F.cross_entropy(logits, y, label_smoothing=label_smoothing)
        if alpha == 0:
            return hard
        with torch.no_grad():
            teacher_logits = teacher(x)
        if teacher_logits.dim() > 2:  # a language model's (N, T, vocab): one distribution per token, as the loop's
            teacher_logits = teacher_logits.flatten(0, -2)
        dtype = torch.promote_types(
            logits.dtype, torch.float32
        )  # softmax of fp16/bf16 logits loses the small probabilities
        soft = F.kl_div(
            F.log_softmax(logits.to(dtype) / temperature, dim=1),
            F.log_softmax(teacher_logits.to(dtype) / temperature, dim=1),
            reduction="batchmean",
            log_target=True,
        )
        return alpha * temperature**2 * soft + (1 - alpha) * hard

    return criterion
