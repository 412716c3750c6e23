"""Muon on the weight matrices, AdamW on the rest, as one optimizer.

Muon (MomentUm Orthogonalized by Newton-Schulz) replaces each weight matrix's momentum update by
the nearest semi-orthogonal matrix, so every direction of the update moves at the same rate; both
CIFAR-10 speedrun scripts kept as anchors (airbench94_muon, cifar10_speedrun) train with it, as do Keller
Jordan's modded-nanogpt records. ``torch.optim.Muon`` does the
matrices: a conv's filter bank is the matrix ``out x (in * kh * kw)``, handed to it as a view of the
weight, so the update lands in the weight itself. Its ``match_rms_adamw`` scaling makes the update's
size match AdamW's, so one learning rate and weight decay serve both groups (Moonshot AI's recipe,
"Muon is Scalable for LLM Training", 2025). Biases, norms, embeddings and the classifier go to AdamW.

Example:
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 16), nn.ReLU(), nn.Linear(16, 3))
    >>> opt = MuonAdamW(net, lr=1e-3, weight_decay=0.0, momentum=0.9)
    >>> [(g["kind"], len(g["params"])) for g in opt.param_groups]
    [('muon', 2), ('adamw', 4)]
    >>> net(torch.randn(2, 1, 8, 8)).sum().backward(); opt.step(); opt.zero_grad()
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def hidden_matrices(model: nn.Module) -> list[nn.Parameter]:
    """The weights Muon updates: every conv's and every ``nn.Linear``'s, except the last ``nn.Linear``
    (the classifier, whose rows are per-class scores rather than features: Muon's authors leave it to AdamW).

    Example:
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
        >>> [tuple(p.shape) for p in hidden_matrices(net)]
        [(8, 4)]
    """
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    head = linears[-1] if linears else None
    return [
        m.weight
        for m in model.modules()
        if isinstance(m, (nn.Linear, nn.modules.conv._ConvNd)) and m is not head and m.weight.requires_grad
    ]


def _matrix_view(weight: torch.Tensor) -> torch.Tensor:
    """``weight`` as the matrix ``out x rest``, sharing its memory. A channels-last filter bank is read in
    its memory order (out, kh, kw, in): a permutation of the columns, which Muon's update follows exactly."""
    w = weight.detach()
    if w.dim() == 4 and not w.is_contiguous() and w.is_contiguous(memory_format=torch.channels_last):
        w = w.permute(0, 2, 3, 1)
    return w.view(w.shape[0], -1)


class MuonAdamW(torch.optim.Optimizer):
    """``torch.optim.Muon`` on ``hidden_matrices(model)``, ``torch.optim.AdamW`` on every other trainable
    parameter, with one ``lr``, ``weight_decay`` (decoupled in both) and ``momentum`` (Muon's; AdamW keeps
    its betas). Its two param groups (``kind`` muon and adamw) hold the model's own parameters, so lr
    schedules, gradient scaling and clipping see them as with any optimizer; ``impl`` (foreach, fused)
    goes to AdamW, as Muon has a single implementation."""

    def __init__(self, model: nn.Module, lr: float, weight_decay: float, momentum: float, **impl: Any):
        matrices = hidden_matrices(model)
        if not matrices:
            raise ValueError(
                f"train.optimizer=muon needs weight matrices besides the classifier, and "
                f"{type(model).__name__} has none: use adamw"
            )
        if any(type(p).__name__ == "DTensor" for p in matrices):
            raise ValueError(
                "train.optimizer=muon cannot update FSDP's sharded weights (Muon needs whole matrices): "
                "use parallel.strategy=ddp"
            )
        taken = {id(p) for p in matrices}
        rest = [p for p in model.parameters() if p.requires_grad and id(p) not in taken]
        super().__init__(
            [{"params": matrices, "kind": "muon"}, {"params": rest, "kind": "adamw"}],
            {"lr": lr, "weight_decay": weight_decay},
        )
        self.views = [_matrix_view(p) for p in matrices]
        self.muon = torch.optim.Muon(
            self.views, lr=lr, weight_decay=weight_decay, momentum=momentum, adjust_lr_fn="match_rms_adamw"
        )
        self.adamw = torch.optim.AdamW(rest, lr=lr, weight_decay=weight_decay, **impl) if rest else None

    def _inner(self) -> list[tuple[dict, torch.optim.Optimizer | None]]:
        return [(self.param_groups[0], self.muon), (self.param_groups[1], self.adamw)]

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group, inner in self._inner():
            if inner is not None:  # a schedule sets the lr on this optimizer's groups: pass it on
                inner.param_groups[0].update(lr=group["lr"], weight_decay=group["weight_decay"])
        for view, p in zip(self.views, self.param_groups[0]["params"]):
            view.grad = None if p.grad is None else _matrix_view(p.grad)
        self.muon.step()
        for view in self.views:
            view.grad = None  # the view would otherwise keep this step's gradient alive
        if self.adamw is not None:
            self.adamw.step()
        return loss

    def state_dict(self) -> dict[str, Any]:
        return {"muon": self.muon.state_dict(), "adamw": self.adamw.state_dict() if self.adamw else None}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        for (group, inner), key in zip(self._inner(), ("muon", "adamw")):
            if inner is not None:
                inner.load_state_dict(state_dict[key])
                group.update(lr=inner.param_groups[0]["lr"], weight_decay=inner.param_groups[0]["weight_decay"])
