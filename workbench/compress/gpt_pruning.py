"""Structured pruning of a GPT by importance measured on data: attention heads, MLP hidden units and whole blocks
removed, so the model is really smaller and decodes faster.

Every layer keeps the same number of heads and the same MLP width, each layer its own most important ones: the
pruned model is again a ``GPT`` (``n_head`` and ``mlp_width`` smaller, ``head_dim`` unchanged, fewer layers), its
KV cache one tensor shape for all layers, and ``GPT(**gpt_args(pruned))`` rebuilds it.

Importance, measured on a few batches:

- **A head, an MLP unit**: how much the loss changes if its output is switched off, to first order. A gate ``g = 1``
  on a head's output has ``dL/dg`` = the sum of ``grad x weight`` over the head's columns of ``attn.c_proj`` (which
  is linear in that output; likewise a unit's column of ``mlp.c_proj``), so one backward pass scores every head and
  unit. Its absolute value is taken per batch, then averaged (Michel et al. 2019, "Are Sixteen Heads Really Better
  than One?"; Molchanov et al. 2019's group Taylor score): a gate whose gradient changes sign between batches still
  matters. Weight norms would miss a large head that attends uselessly; the gate's gradient sees the loss.
- **A block**: the loss increase when it is skipped (the residual stream passes it unchanged), measured rather than
  estimated: removing a whole block is too large a change for a first-order estimate, and one forward pass per block
  is cheap.

Example:
    >>> from workbench.models import GPT
    >>> _ = torch.manual_seed(0)
    >>> gpt = GPT(vocab_size=32, n_layer=2, n_head=4, n_embd=32, block_size=16)
    >>> ids = torch.randint(32, (4, 17))  # windows of 16 inputs and the next token
    >>> small = prune_gpt(gpt, [ids], heads=0.5, mlp=0.25, blocks=1)
    >>> s = small.shape
    >>> s.n_layer, s.n_head, s.head_dim, s.mlp_width  # was 2, 4, 8, 128
    (1, 2, 8, 96)
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from .._errors import ConfigError, require
from ..models.gpt import GPT, GPTShape, gpt_args
from .core import CompressContext, CompressStep, finetune, implements


def gpt_importance(model: GPT, batches: Iterable) -> dict[str, torch.Tensor | float]:
    """How much ``model``'s loss on ``batches`` depends on each head, MLP unit and block (larger: more).

    ``batches``: a loader's ``(x, y)`` pairs, or id tensors (batch, length + 1) whose last ``length`` ids are the
    targets. Returns ``heads`` (n_layer x n_head) and ``mlp`` (n_layer x mlp_width), first-order gate scores,
    ``blocks`` (n_layer), the loss increase when a block is skipped (it can be negative), and ``loss``.

    Example:
        >>> from workbench.models import GPT
        >>> gpt = GPT(vocab_size=16, n_layer=2, n_head=2, n_embd=8, block_size=8)
        >>> with torch.no_grad():
        ...     _ = gpt.transformer.h[0].attn.c_proj.weight[:, :4].zero_()  # head 0 of layer 0 writes nothing
        >>> scores = gpt_importance(gpt, [torch.randint(16, (2, 9))])
        >>> scores["heads"].shape, scores["mlp"].shape, scores["blocks"].shape, scores["heads"][0, 0].item()
        (torch.Size([2, 2]), torch.Size([2, 32]), torch.Size([2]), 0.0)
    """
    _check_gpt(model)
    return _importance(model, _pairs(model, batches))


def slice_gpt(
    model: GPT,
    heads: torch.Tensor | None = None,
    mlp: torch.Tensor | None = None,
    blocks: Sequence[int] | None = None,
) -> GPT:
    """A new, smaller GPT that keeps the given heads, MLP units and blocks of ``model`` (which is left as it is).

    ``heads`` (n_layer x kept) and ``mlp`` (n_layer x kept): per layer of ``model``, the indices kept, as many in
    every layer; ``blocks``: the layers kept. None keeps all. The new model computes what ``model`` computes with
    the other heads' and units' ``c_proj`` columns zeroed and the other blocks skipped.

    Example:
        >>> from workbench.models import GPT
        >>> gpt = GPT(vocab_size=16, n_layer=3, n_head=4, n_embd=16, block_size=8)
        >>> small = slice_gpt(gpt, heads=torch.tensor([[0, 3]] * 3), blocks=[0, 2])
        >>> small.shape.n_layer, small.transformer.h[0].attn.c_attn.weight.shape  # q, k, v of 2 heads of 4 dims
        (2, torch.Size([24, 16]))
    """
    _check_gpt(model)
    s = model.shape
    heads = torch.arange(s.n_head).expand(s.n_layer, -1) if heads is None else torch.as_tensor(heads)
    mlp = torch.arange(s.mlp_width).expand(s.n_layer, -1) if mlp is None else torch.as_tensor(mlp)
    blocks = list(range(s.n_layer)) if blocks is None else [int(b) for b in blocks]
    for name, kept, count in (("heads", heads, s.n_head), ("mlp", mlp, s.mlp_width)):
        require(
            kept.dim() == 2 and kept.size(0) == s.n_layer and kept.size(1) >= 1,
            f"{name} must hold the indices kept in each of the {s.n_layer} layers, as many in each "
            f"(shape ({s.n_layer}, kept)); got shape {tuple(kept.shape)}",
        )
        require(
            bool(((kept >= 0) & (kept < count)).all()) and all(len(set(row.tolist())) == len(row) for row in kept),
            f"{name} indices must be distinct and in 0..{count - 1}",
        )
    require(
        len(blocks) >= 1 and len(set(blocks)) == len(blocks) and all(0 <= b < s.n_layer for b in blocks),
        f"blocks must be distinct layer indices in 0..{s.n_layer - 1}, at least one (got {blocks})",
    )
    weight = model.transformer.wte.weight
    small = GPT(**{**gpt_args(model), "n_layer": len(blocks), "n_head": heads.size(1), "mlp_width": mlp.size(1)})
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("transformer.h.")}
    hd, inner = s.head_dim, s.n_head * s.head_dim
    for new, old in enumerate(blocks):
        block = model.transformer.h[old].state_dict()
        dims = (heads[old][:, None] * hd + torch.arange(hd)).flatten()  # the kept heads' rows of q (or k, or v)
        qkv = torch.cat([dims + part * inner for part in range(3)])
        rows = {
            "attn.c_attn.weight": qkv,
            "attn.c_attn.bias": qkv,
            "mlp.c_fc.weight": mlp[old],
            "mlp.c_fc.bias": mlp[old],
        }
        columns = {"attn.c_proj.weight": dims, "mlp.c_proj.weight": mlp[old]}
        for name, value in block.items():
            if name in rows:
                value = value[rows[name]]
            elif name in columns:
                value = value[:, columns[name]]
            state[f"transformer.h.{new}.{name}"] = value
    small.load_state_dict(state)
    return small.to(device=weight.device, dtype=weight.dtype).train(model.training)


def prune_gpt(
    model: GPT,
    batches: Iterable,
    heads: float = 0.5,
    mlp: float = 0.5,
    blocks: int = 0,
    steps: int = 1,
    finetune: Callable[[GPT], object] | None = None,
) -> GPT:
    """A smaller copy of ``model`` without the least important heads, MLP units and blocks (``gpt_importance`` on
    ``batches``); ``model`` is left as it is.

    ``heads`` and ``mlp``: the fraction of each layer's heads and MLP units removed (rounded to whole ones), the
    same number in every layer; ``blocks``: how many blocks are dropped. ``steps > 1`` gets there gradually,
    importance measured again on the model of each step; ``finetune(model)`` (training in place) runs after each
    step, the last included, so a model that lost a little at a time recovers before losing more.
    """
    _check_gpt(model)
    s = model.shape
    check_prune_gpt(s, heads, mlp, blocks, steps)
    require(finetune is None or callable(finetune), "finetune must be a function that trains a model, or None")
    pairs = _pairs(model, batches)
    removed_heads, removed_units = _whole(heads * s.n_head), _whole(mlp * s.mlp_width)
    for step in range(1, steps + 1):
        scores = _importance(model, pairs)
        share = step / steps  # of the removals, done by the end of this step
        model = slice_gpt(
            model,
            heads=_most(scores["heads"], s.n_head - _whole(removed_heads * share)),
            mlp=_most(scores["mlp"], s.mlp_width - _whole(removed_units * share)),
            blocks=_most(scores["blocks"][None], s.n_layer - _whole(blocks * share))[0].tolist(),
        )
        if finetune is not None:
            finetune(model)
    return model


def check_prune_gpt(shape: GPTShape, heads: float, mlp: float, blocks: int, steps: int = 1) -> None:
    """One line for a pruning that cannot apply to a GPT of ``shape`` (all of a layer's heads or units, every
    block), raised before any work."""
    for name, fraction, count, what in (
        ("heads", heads, shape.n_head, "heads"),
        ("mlp", mlp, shape.mlp_width, "MLP units"),
    ):
        require(
            isinstance(fraction, (int, float)) and 0 <= fraction < 1,
            f"{name} must be the fraction of each layer's {what} to remove, in [0, 1) (got {fraction!r})",
        )
        require(
            _whole(fraction * count) < count,
            f"{name}={fraction} would prune {_whole(fraction * count)} {what} of {count} in each layer: keep at least "
            f"one, e.g. {name}={(count - 1) / count:.3g}",
        )
    require(
        isinstance(blocks, int) and 0 <= blocks < shape.n_layer,
        f"blocks={blocks!r} must be a whole number of blocks to drop, 0 to {shape.n_layer - 1}: keep at least one "
        f"of the {shape.n_layer}",
    )
    require(isinstance(steps, int) and steps >= 1, f"steps must be a whole number >= 1 (got {steps!r})")


@dataclass(frozen=True)
class PruneGPT(CompressStep):
    """A GPT's least important heads, MLP units and blocks removed (``prune_gpt``), in ``steps`` with
    ``finetune_epochs`` of fine-tuning after each; importance measured on ``calibration_batches`` training batches."""

    kind: ClassVar[str] = "prune_gpt"
    family: ClassVar[str] = "pruning"
    needs: ClassVar[frozenset[str]] = frozenset({"data"})
    tasks: ClassVar[tuple[str, ...]] = ("lm",)
    advice: ClassVar[str] = "prune in steps with fine-tuning between (prune_gpt:steps=2,finetune_epochs=1)"
    heads: float = 0.5  # of each layer's heads
    mlp: float = 0.5  # of each layer's MLP units
    blocks: int = 0  # whole blocks dropped
    steps: int = 1
    finetune_epochs: int = 0  # after each step
    calibration_batches: int = 8

    def check(self) -> None:
        for name in ("heads", "mlp"):
            value = getattr(self, name)
            require(0 <= value < 1, f"PruneGPT.{name} is the fraction to remove, in [0, 1) (got {value})")
        require(self.blocks >= 0, f"PruneGPT.blocks must be >= 0 (got {self.blocks})")
        require(self.steps >= 1, f"PruneGPT.steps must be >= 1 (got {self.steps})")
        require(self.finetune_epochs >= 0, f"PruneGPT.finetune_epochs must be >= 0 (got {self.finetune_epochs})")
        batches = self.calibration_batches
        require(batches >= 1, f"PruneGPT.calibration_batches must be >= 1 (got {batches})")

    def model_problem(self, model: torch.nn.Module) -> str | None:
        try:
            _check_gpt(model)
            check_prune_gpt(model.shape, self.heads, self.mlp, self.blocks, self.steps)
        except ConfigError as e:
            return f"{self.kind}: {e}"
        return None


@implements(PruneGPT)
def _apply_prune_gpt(model: GPT, step: PruneGPT, ctx: CompressContext) -> GPT:
    batches = list(itertools.islice(ctx.train_loader, step.calibration_batches))

    def tune(pruned: GPT) -> None:
        ctx.record(step="finetune", **finetune(pruned, step.finetune_epochs, 0.0, ctx, desc="fine-tune after pruning"))

    before = model.shape
    small = prune_gpt(
        model, batches, step.heads, step.mlp, step.blocks, step.steps, finetune=tune if step.finetune_epochs else None
    )
    after = small.shape
    ctx.record(
        step=step.kind,
        **{f"{k}_before": getattr(before, k) for k in ("n_layer", "n_head", "mlp_width")},
        **{f"{k}_after": getattr(after, k) for k in ("n_layer", "n_head", "mlp_width")},
    )
    return small


def _check_gpt(model) -> None:
    require(
        isinstance(model, GPT),
        f"GPT pruning takes a workbench GPT (got {type(model).__name__}): prune other models with "
        "prune(model, StructuredPrune(...))",
    )


def _whole(count: float) -> int:
    """Rounded half up (Python's ``round`` rounds 2.5 to 2)."""
    return int(count + 0.5)


def _most(scores: torch.Tensor, keep: int) -> torch.Tensor:
    """Per row, the indices of the ``keep`` largest scores, in their original order."""
    return scores.topk(keep, dim=1).indices.sort(dim=1).values


def _pairs(model: GPT, batches: Iterable) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(inputs, targets) on the model's device: loader pairs as they are, id tensors split into both."""
    device = model.transformer.wte.weight.device
    pairs = [b if isinstance(b, (tuple, list)) else (b[:, :-1], b[:, 1:]) for b in batches]
    require(bool(pairs), "batches holds no batches: pass a few (x, y) batches of token windows, e.g. 8 of 32")
    return [(x.to(device), y.to(device)) for x, y in pairs]


def _loss(model: GPT, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(model(x).flatten(0, 1), y.flatten())


@contextlib.contextmanager
def _evaluating(model: GPT):
    """Dropout off while scoring, the mode restored after."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _importance(model: GPT, pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, torch.Tensor | float]:
    s, layers = model.shape, model.transformer.h
    projections = [w for block in layers for w in (block.attn.c_proj.weight, block.mlp.c_proj.weight)]
    heads, units = torch.zeros(s.n_layer, s.n_head), torch.zeros(s.n_layer, s.mlp_width)
    loss = 0.0
    with _evaluating(model):
        for x, y in pairs:
            batch_loss = _loss(model, x, y)
            grads = torch.autograd.grad(batch_loss, projections)  # into no .grad: the model is left untouched
            for i in range(s.n_layer):
                attn, mlp = (g * w for g, w in zip(grads[2 * i : 2 * i + 2], projections[2 * i : 2 * i + 2]))
                heads[i] += attn.sum(0).view(s.n_head, s.head_dim).sum(1).abs().cpu()  # dL/dgate of each head
                units[i] += mlp.sum(0).abs().cpu()
            loss += batch_loss.item()
        skipped = torch.zeros(s.n_layer)
        with torch.no_grad():
            for i, block in enumerate(layers):
                hook = block.register_forward_hook(lambda module, args, output: args[0])  # the block passes x on
                try:
                    skipped[i] = sum(_loss(model, x, y).item() for x, y in pairs)
                finally:
                    hook.remove()
    n = len(pairs)
    return {"heads": heads / n, "mlp": units / n, "blocks": (skipped - loss) / n, "loss": loss / n}
