"""LoRA (Hu et al. 2021): fine-tune a frozen model through a low-rank update of some of its Linear layers.

A targeted ``nn.Linear`` computing ``W x + b`` becomes ``W x + b + (alpha / rank) · B A x``, with ``W`` and ``b``
frozen, ``A`` (rank x in) and ``B`` (out x rank) trained. ``B`` starts at zero, so the adapted model starts as
the base model exactly; only ``rank · (in + out)`` numbers per layer are trained, and the optimizer keeps state
for those alone. ``merge_lora`` folds ``B A`` into ``W``, leaving plain ``nn.Linear`` layers: the merged model
decodes exactly as fast as the base model did.

Written here rather than taken from ``peft``: the GPT is this package's own, the adapter is a few dozen
lines a learner can read beside the paper, and merging must give back a plain ``nn.Linear`` (no wrapper left
in the decoding path); ``peft`` would be one more dependency for that.

Example:
    >>> from workbench.models import GPT
    >>> _ = torch.manual_seed(0)
    >>> gpt = GPT(vocab_size=16, n_layer=2, n_head=2, n_embd=32, block_size=8)
    >>> full = trainable_parameters(gpt)
    >>> add_lora(gpt, rank=4, targets=("c_attn", "attn.c_proj"))  # doctest: +NORMALIZE_WHITESPACE
    ['transformer.h.0.attn.c_attn', 'transformer.h.0.attn.c_proj', 'transformer.h.1.attn.c_attn',
     'transformer.h.1.attn.c_proj']
    >>> trainable_parameters(gpt), full  # 2 layers x (4 x (32 + 96) + 4 x (32 + 32)) against every weight
    (1536, 26240)
    >>> ids = torch.randint(16, (1, 8))
    >>> adapted = gpt(ids)
    >>> torch.allclose(merge_lora(gpt)(ids), adapted, atol=1e-6), trainable_parameters(gpt)
    (True, 0)
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .._errors import require


class LoRALinear(nn.Module):
    """A frozen ``nn.Linear`` (``base``) plus the trained low-rank update ``scale · B A``.

    ``A`` starts as ``nn.Linear`` initialises its weight (Kaiming-uniform), ``B`` at zero (Hu et al.): the
    update is zero at first, yet its gradient is not, since ``B``'s gradient goes through a non-zero ``A``.
    ``dropout`` applies to the input of the update only, as in the paper's code.
    """

    def __init__(self, base: nn.Linear, rank: int, alpha: float, dropout: float = 0.0):
        super().__init__()
        self.base, self.rank, self.scale = base, rank, alpha / rank
        weight = base.weight
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features, dtype=weight.dtype, device=weight.device))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank, dtype=weight.dtype, device=weight.device))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x A^T B^T: two thin matmuls (rank wide), never the out x in product B A
        return self.base(x) + F.linear(F.linear(self.dropout(x), self.lora_A), self.lora_B) * self.scale

    def merged(self) -> nn.Linear:
        """``base`` with ``scale · B A`` added to its weight: the same outputs, as a plain ``nn.Linear``."""
        with torch.no_grad():
            self.base.weight += (self.lora_B.float() @ self.lora_A.float() * self.scale).to(self.base.weight.dtype)
        return self.base

    def extra_repr(self) -> str:
        return f"rank={self.rank}, scale={self.scale:g}"


def add_lora(
    model: nn.Module,
    rank: int,
    alpha: float | None = None,
    targets: Sequence[str] = ("c_attn",),
    dropout: float = 0.0,
) -> list[str]:
    """Freeze every parameter of ``model`` and replace each ``nn.Linear`` whose name ends with one of ``targets``
    by a ``LoRALinear`` (in place); returns the names replaced.

    A target matches whole dotted parts: ``"c_proj"`` takes both of a GPT block's ``c_proj`` layers,
    ``"attn.c_proj"`` the attention's only, ``"mlp.c_fc"`` the MLP's first. ``alpha`` defaults to ``rank``, a
    scale of 1: Hu et al. set alpha to the first rank they tried and left it, since with Adam changing alpha
    is about the same as changing the learning rate. Every bad argument is one line, raised before the model
    is touched.
    """
    targets = (targets,) if isinstance(targets, str) else tuple(targets)
    alpha = rank if alpha is None else alpha
    require(isinstance(rank, int) and rank >= 1, f"LoRA rank must be a whole number >= 1 (got {rank!r}), e.g. 8")
    require(alpha > 0, f"LoRA alpha must be > 0 (got {alpha}): leave it unset for alpha = rank, a scale of 1")
    require(0 <= dropout < 1, f"LoRA dropout must be in [0, 1) (got {dropout})")
    require(len(targets) > 0, "LoRA targets is empty: name at least one Linear layer, e.g. ('c_attn',)")
    require(
        not any(isinstance(m, LoRALinear) for m in model.modules()),
        "this model has LoRA adapters already: merge_lora(model) first, then add new ones",
    )
    linears = {name: m for name, m in model.named_modules() if isinstance(m, nn.Linear)}
    chosen = {name: m for name, m in linears.items() if any(_ends_with(name, t) for t in targets)}
    for target in targets:
        require(
            any(_ends_with(name, target) for name in linears),
            f"LoRA target {target!r} names no Linear layer of this model: choose from {', '.join(_short(linears))}",
        )
    tied = _tied_names(model)
    for name, layer in chosen.items():
        tied_to = next((other for other in tied.get(id(layer.weight), []) if not other.startswith(f"{name}.")), None)
        require(
            tied_to is None,
            f"{name}'s weight is tied to {tied_to} (the same matrix): merging an update into it would change "
            f"{tied_to} too, so the merged model would not compute what the adapted one did; leave {name} "
            "out of the LoRA targets",
        )
        largest = min(layer.in_features, layer.out_features)
        require(
            rank <= largest,
            f"LoRA rank {rank} is larger than {name}'s {layer.out_features} x {layer.in_features}: "
            f"use a rank of at most {largest}",
        )
    model.requires_grad_(False)
    for name, layer in chosen.items():
        parent, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent), attr, LoRALinear(layer, rank, alpha, dropout))
    return list(chosen)


def merge_lora(model: nn.Module) -> nn.Module:
    """Replace every ``LoRALinear`` of ``model`` by its base ``nn.Linear`` with the update folded in (in place),
    so the model has the base model's modules and ``state_dict`` keys again; returns ``model``. Its parameters
    stay frozen as ``add_lora`` left them: ``model.requires_grad_(True)`` to train all of them again."""
    adapted = [name for name, m in model.named_modules() if isinstance(m, LoRALinear)]
    for name in adapted:
        parent, _, attr = name.rpartition(".")
        owner = model.get_submodule(parent)
        setattr(owner, attr, getattr(owner, attr).merged())
    return model


def trainable_parameters(model: nn.Module) -> int:
    """How many numbers training changes: the parameters that take gradients (a tied matrix once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _ends_with(name: str, target: str) -> bool:
    return name == target or name.endswith(f".{target}")


def _short(names) -> list[str]:
    """Each layer's name from after its last block number (``transformer.h.0.attn.c_proj`` -> ``attn.c_proj``),
    once."""
    return list(dict.fromkeys(re.split(r"(?:^|\.)\d+\.", name)[-1] for name in names))


def _tied_names(model: nn.Module) -> dict[int, list[str]]:
    """Parameter names by tensor, for the tensors held under more than one name."""
    names: dict[int, list[str]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        names.setdefault(id(p), []).append(name)
    return {key: group for key, group in names.items() if len(group) > 1}
