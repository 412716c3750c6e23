"""Pruning: unstructured (zeros in dense weights) and structured (channels physically removed).

Two different promises, and the difference matters when you measure:

- ``UnstructuredPrune`` zeroes the smallest weights of every ``Conv``/``Linear`` layer (the final
  classifier included) with ``torch.nn.utils.prune`` and makes the masks permanent. The non-zero
  parameter count drops, but the tensors keep their shape: dense kernels do the same work, so latency
  and the file size do not change.
- ``StructuredPrune`` removes whole channels/filters with torch-pruning's dependency graph, which keeps
  every coupled layer consistent (residual adds, BatchNorm, depthwise convs). The model really gets
  smaller and faster. ``amount`` is the fraction of channels removed from *each* prunable layer; a conv
  loses output *and* input channels, so its parameters shrink to about ``(1 - amount)**2``. The final
  classifier keeps its outputs. Attention with a fused ``qkv`` Linear and ``num_heads`` (the ViT here,
  timm) loses the same head dims in every head, q, k and v together, and keeps its number of heads;
  other attention modules keep their widths.

Example:
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3), torch.nn.ReLU(), torch.nn.Flatten(),
    ...                           torch.nn.Linear(288, 10))
    >>> net = prune(net, StructuredPrune(amount=0.5), example_inputs=torch.randn(2, 1, 8, 8))
    >>> net[0].out_channels, net(torch.randn(2, 1, 8, 8)).shape
    (4, torch.Size([2, 10]))
"""

from __future__ import annotations

import copy
import dataclasses
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import ClassVar

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import prune as torch_prune

from .._errors import ConfigError, optional_import
from .._registry import unknown_name_error
from ..measure import count_flops
from .core import PRUNING, CompressContext, CompressStep, apply_step, finetune, implements, step_types

SCOPES = ("global", "layer")
UNSTRUCTURED_METHODS = {"l1": torch_prune.L1Unstructured, "random": torch_prune.RandomUnstructured}
STRUCTURED_METHODS = ("l1", "l2", "bn_scale", "taylor")
TAYLOR_BATCHES = 4  # gradients averaged over a few batches: one batch gives noisy first-order scores
PRUNING_ADVICE = (
    "prune in steps with fine-tuning between and fine-tune longer after: the measured recipe "
    "--compress recommended:amount=0.5 (workbench.compress.recommended_pruning; within a point on digits)"
)


def _check_amount(step: str, amount: float) -> None:
    if not 0 < amount < 1:
        raise ConfigError(f"{step}.amount must be in (0, 1), the fraction to prune (got {amount})")


def _check_name(step: str, field: str, value: str, valid: Iterable[str]) -> None:
    if value not in valid:
        raise ConfigError(str(unknown_name_error(f"{step}.{field}", value, valid)))


@dataclass(frozen=True)
class UnstructuredPrune(CompressStep):
    """Zero the smallest-magnitude weights; tensors stay dense (fewer non-zeros, same latency)."""

    kind: ClassVar[str] = "prune_unstructured"
    family: ClassVar[str] = "sparsity"
    advice: ClassVar[str] = PRUNING_ADVICE
    amount: float = 0.5  # fraction of Conv/Linear weights set to zero
    scope: str = "global"  # global: one threshold over all layers; layer: each layer loses `amount`
    method: str = "l1"  # l1: smallest |w| first; random: a baseline that shows why magnitude matters
    finetune_epochs: int = 0  # fine-tuning with the masks kept (the zeros stay zero), then the masks baked in

    def check(self) -> None:
        _check_amount("UnstructuredPrune", self.amount)
        if not self.finetune_epochs >= 0:
            raise ConfigError(f"UnstructuredPrune.finetune_epochs must be an integer >= 0 (got {self.finetune_epochs})")
        _check_name("UnstructuredPrune", "scope", self.scope, SCOPES)
        _check_name("UnstructuredPrune", "method", self.method, UNSTRUCTURED_METHODS)


@dataclass(frozen=True)
class StructuredPrune(CompressStep):
    """Remove whole channels (filters, hidden units) so the model is really smaller and faster."""

    kind: ClassVar[str] = "prune_structured"
    family: ClassVar[str] = "pruning"
    advice: ClassVar[str] = PRUNING_ADVICE
    amount: float = 0.5  # fraction of channels removed from each prunable layer
    method: str = "l1"  # channel importance: l1/l2 weight norm, bn_scale (|gamma|), taylor (|w * grad|)
    steps: int = 1  # reach `amount` in this many equal pruning steps
    finetune_epochs: int = 0  # fine-tuning after each step (lr: a tenth of the training lr)
    ignore: tuple[str, ...] = ()  # module names (as in model.named_modules()) whose outputs are kept

    def check(self) -> None:
        _check_amount("StructuredPrune", self.amount)
        _check_name("StructuredPrune", "method", self.method, STRUCTURED_METHODS)
        if not self.steps >= 1:
            raise ConfigError(f"StructuredPrune.steps must be an integer >= 1 (got {self.steps})")
        if not self.finetune_epochs >= 0:
            raise ConfigError(f"StructuredPrune.finetune_epochs must be an integer >= 0 (got {self.finetune_epochs})")


# ---------------------------------------------------------------------------------------------
# Plain functions


def prune(
    model: nn.Module,
    config: UnstructuredPrune | StructuredPrune,
    *,
    example_inputs: torch.Tensor | None = None,
    ctx: CompressContext | None = None,
) -> nn.Module:
    """Prune ``model`` in place as ``config`` says and return it (structured pruning needs ``example_inputs``,
    one input batch, to trace the model; ``ctx`` supplies training data for Taylor scores and fine-tuning).

    Example:
        >>> import torch
        >>> net = prune(torch.nn.Linear(100, 10), UnstructuredPrune(amount=0.3))
        >>> int((net.weight == 0).sum())
        300
    """
    steps = [t for t in step_types().values() if t.family in PRUNING]
    if type(config) not in steps:
        raise TypeError(
            f"prune() takes one of {', '.join(t.__name__ for t in steps)} (got {type(config).__name__}); "
            "apply other steps with workbench.compress.apply_step"
        )
    if ctx is None:
        ctx = CompressContext(example_input=example_inputs)
    elif example_inputs is not None:
        ctx = dataclasses.replace(ctx, example_input=example_inputs)
    return apply_step(model, config, ctx)


def sparsity_report(model: nn.Module) -> pd.DataFrame:
    """One row per module that owns parameters (layer, type, params, zeros, sparsity) and a ``total`` row.

    Example:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Linear(10, 10), torch.nn.Linear(10, 2))
        >>> net = prune(net, UnstructuredPrune(0.5, scope="layer"))
        >>> sparsity_report(net)[["layer", "params", "zeros"]].values.tolist()
        [['0', 110, 50], ['1', 22, 10], ['total', 132, 60]]
    """
    rows = []
    for name, module in model.named_modules():
        params = list(module.parameters(recurse=False))
        if params:
            zeros = sum(int((p == 0).sum()) for p in params)
            rows.append(
                {
                    "layer": name or "(root)",
                    "type": type(module).__name__,
                    "params": sum(p.numel() for p in params),
                    "zeros": zeros,
                }
            )
    df = pd.DataFrame(rows, columns=["layer", "type", "params", "zeros"])
    df.loc[len(df)] = {"layer": "total", "type": "", "params": int(df["params"].sum()), "zeros": int(df["zeros"].sum())}
    df["params"], df["zeros"] = df["params"].astype(int), df["zeros"].astype(int)
    df["sparsity"] = df["zeros"] / df["params"].clip(lower=1)
    return df


def sensitivity(
    model: nn.Module,
    evaluate_fn: Callable[[nn.Module], float],
    *,
    amounts: Sequence[float] = (0.1, 0.3, 0.5, 0.7, 0.9),
    structured: bool = False,
    example_inputs: torch.Tensor | None = None,
    layers: Sequence[str] | int | None = None,
) -> pd.DataFrame:
    """Prune one layer at a time (on a copy) to each amount and evaluate: which layers can lose the most?

    ``layers`` names the layers to try (default: every prunable one); an integer ``n`` takes ``n``
    of them spread evenly from the first to the last, which keeps a deep net's analysis short.

    Unstructured: the layer's weights are L1-pruned alone. Structured: the layer's output channels are
    removed with everything coupled to them (in a residual stage that is the whole stage's stream).
    Columns: layer, amount, accuracy, accuracy_drop (baseline minus accuracy), params (non-zero
    parameters of the whole pruned model). ``df.attrs`` holds ``baseline_accuracy`` and ``baseline_params``.

    Example:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
        >>> x = torch.randn(32, 4); y = net(x).argmax(1)
        >>> acc = lambda m: float((m(x).argmax(1) == y).float().mean())
        >>> df = sensitivity(net, acc, amounts=(0.5, 0.9))
        >>> df.shape, df.attrs["baseline_accuracy"]
        ((4, 5), 1.0)
        >>> sensitivity(net, acc, amounts=(0.5,), layers=1).layer.tolist()
        ['0']
    """
    if structured and example_inputs is None:
        raise ValueError("sensitivity(structured=True) needs example_inputs (one input batch) to trace the model")
    for a in amounts:
        _check_amount("sensitivity", a)
    candidates = _structured_candidates(model, example_inputs) if structured else [n for n, _ in _prunable(model)]
    if layers is None:
        layers = candidates
    elif isinstance(layers, int):
        if layers < 1:
            raise ValueError(f"sensitivity(layers={layers}): give at least 1 layer, or names, or None for all")
        n = min(layers, len(candidates))
        layers = [candidates[round(i * (len(candidates) - 1) / max(n - 1, 1))] for i in range(n)]
    else:
        layers = list(layers)
    for name in layers:
        if name not in candidates:
            raise unknown_name_error("prunable layer", name, candidates)
    baseline = float(evaluate_fn(model))
    rows = []
    for name in layers:
        for amount in amounts:
            pruned = copy.deepcopy(model)
            if structured:
                _structured(
                    pruned,
                    example_inputs,
                    StructuredPrune(amount),
                    CompressContext(example_inputs),
                    only=pruned.get_submodule(name),
                )
            else:
                layer = pruned.get_submodule(name)
                torch_prune.l1_unstructured(layer, "weight", amount)
                torch_prune.remove(layer, "weight")
            accuracy = float(evaluate_fn(pruned))
            rows.append(
                {
                    "layer": name,
                    "amount": amount,
                    "accuracy": accuracy,
                    "accuracy_drop": baseline - accuracy,
                    "params": _nonzero(pruned),
                }
            )
    df = pd.DataFrame(rows, columns=["layer", "amount", "accuracy", "accuracy_drop", "params"])
    df.attrs.update(baseline_accuracy=baseline, baseline_params=_nonzero(model))
    return df


# ---------------------------------------------------------------------------------------------
# Step implementations


@implements(UnstructuredPrune)
def _apply_unstructured(model: nn.Module, step: UnstructuredPrune, ctx: CompressContext) -> nn.Module:
    before = _nonzero(model)
    layers = _prunable(model)
    if not layers:
        raise ValueError(f"{type(model).__name__} has no Conv or Linear layers to prune")
    if step.finetune_epochs and ctx.train_loader is None:
        raise ValueError(
            "UnstructuredPrune with finetune_epochs > 0 needs training batches: "
            "pass ctx=CompressContext(..., train_loader=...)"
        )
    method = UNSTRUCTURED_METHODS[step.method]
    if step.scope == "global":
        torch_prune.global_unstructured([(m, "weight") for _, m in layers], pruning_method=method, amount=step.amount)
    else:
        for _, m in layers:
            method.apply(m, "weight", amount=step.amount)
    if step.finetune_epochs:
        # torch's masks stay on while it trains: each forward multiplies weight_orig by the mask, so the
        # pruned weights get no gradient and stay zero (a FineTune after the bake-in would grow them back).
        finetune(model, step.finetune_epochs, 0.0, ctx, desc="fine-tune with the masks kept")
    for _, m in layers:
        torch_prune.remove(m, "weight")  # bake the mask in: a plain dense weight with zeros
    weights = [m.weight for _, m in layers]
    zeros, total = sum(int((w == 0).sum()) for w in weights), sum(w.numel() for w in weights)
    ctx.record(
        step=step.kind,
        method=step.method,
        scope=step.scope,
        amount=step.amount,
        sparsity=zeros / total,
        nonzero_params_before=before,
        nonzero_params_after=_nonzero(model),
        params=sum(p.numel() for p in model.parameters()),
        finetune_epochs=step.finetune_epochs,
        note="weights are zeroed, not removed: dense kernels do the same work, so latency and size do not change",
    )
    return model


@implements(StructuredPrune)
def _apply_structured(model: nn.Module, step: StructuredPrune, ctx: CompressContext) -> nn.Module:
    if ctx.example_input is None:
        raise ValueError("StructuredPrune needs example_inputs (one input batch) to trace the model")
    return _structured(model, ctx.example_input, step, ctx)


# ---------------------------------------------------------------------------------------------
# Internals


def _prunable(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Conv and Linear layers, the ones whose weights unstructured pruning zeroes."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear))]


def _nonzero(model: nn.Module) -> int:
    return sum(int(torch.count_nonzero(p)) for p in model.parameters())


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _flops(model: nn.Module, x: torch.Tensor) -> int:
    return count_flops(model, tuple(x.shape))


def _torch_pruning():
    return optional_import("torch_pruning", "Structured pruning", "pip install torch-pruning==1.6.1")


def _is_attention(module: nn.Module) -> bool:
    name = type(module).__name__.lower()
    return isinstance(module, nn.MultiheadAttention) or "attention" in name or "attn" in name


def _head_layout(module: nn.Module) -> int | None:
    """Heads of a timm-style attention (a fused ``qkv`` Linear and ``num_heads``), else None."""
    qkv, heads = getattr(module, "qkv", None), getattr(module, "num_heads", None)
    return heads if isinstance(qkv, nn.Linear) and isinstance(heads, int) and _is_attention(module) else None


def _classifier(model: nn.Module, example_input: torch.Tensor) -> nn.Module:
    """The last Conv/Linear layer to run: its outputs are the classes, which must stay."""
    order: list[nn.Module] = []
    hooks = [m.register_forward_hook(lambda m, i, o: order.append(m)) for _, m in _prunable(model)]
    try:
        with torch.no_grad(), _eval(model):
            model(example_input)
    finally:
        for h in hooks:
            h.remove()
    if not order:
        raise ValueError(f"{type(model).__name__} runs no Conv or Linear layer: there are no channels to prune")
    return order[-1]


class _eval:
    """Eval mode inside the block, so tracing does not update BatchNorm statistics."""

    def __init__(self, model: nn.Module):
        self.model, self.was_training = model, model.training

    def __enter__(self):
        self.model.eval()

    def __exit__(self, *exc):
        self.model.train(self.was_training)


def _head_dims(model: nn.Module) -> dict[nn.Module, int]:
    return {m: m.qkv.out_features // (3 * _head_layout(m)) for m in model.modules() if _head_layout(m)}


@torch.no_grad()
def _keep_attention_temperature(model: nn.Module, before: dict[nn.Module, int]) -> None:
    """Attention that scales by 1/sqrt(head size read from the tensor) would get sharper when head dims
    are removed; scaling q by sqrt(new/old) keeps the logits. A fixed ``scale`` attribute (timm) needs nothing."""
    for m, old in before.items():
        new = m.qkv.out_features // (3 * _head_layout(m))
        if new != old and not hasattr(m, "scale"):
            q = slice(0, m.qkv.out_features // 3)
            m.qkv.weight[q] *= (new / old) ** 0.5
            if m.qkv.bias is not None:
                m.qkv.bias[q] *= (new / old) ** 0.5


def _kept(model: nn.Module, example_input: torch.Tensor) -> list[nn.Module]:
    """Layers whose output widths must not change: the classifier, and attention whose head layout we
    cannot read (pruning it would mix heads up)."""
    kept = [_classifier(model, example_input)]
    kept += [m for m in model.modules() if _is_attention(m) and _head_layout(m) is None]
    return kept


def _structured_candidates(model: nn.Module, example_input: torch.Tensor) -> list[str]:
    """Names of the layers structured pruning may shrink (for sensitivity analysis)."""
    kept = {id(s) for m in _kept(model, example_input) for s in m.modules()}
    return [n for n, m in _prunable(model) if id(m) not in kept]


def _importance(method: str):
    tp = _torch_pruning()
    if method == "l1":
        return tp.importance.MagnitudeImportance(p=1)
    if method == "l2":
        return tp.importance.MagnitudeImportance(p=2)
    if method == "bn_scale":
        return tp.importance.BNScaleImportance()
    return tp.importance.TaylorImportance()


def _structured(
    model: nn.Module,
    example_input: torch.Tensor,
    step: StructuredPrune,
    ctx: CompressContext,
    only: nn.Module | None = None,
) -> nn.Module:
    tp = _torch_pruning()
    names = dict(model.named_modules())
    for name in step.ignore:
        if name not in names:
            raise unknown_name_error("module to ignore", name, [n for n in names if n])
    if step.method == "bn_scale" and not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        raise ValueError(
            f"StructuredPrune method 'bn_scale' needs BatchNorm layers and {type(model).__name__} has none: "
            "use method='l1'"
        )
    needs_data = step.method == "taylor" or step.finetune_epochs > 0
    if needs_data and ctx.train_loader is None:
        raise ValueError(
            "StructuredPrune with method='taylor' or finetune_epochs > 0 needs training batches: "
            "pass ctx=CompressContext(..., train_loader=...)"
        )
    # One sample is enough to trace, and one input shape everywhere lets oneDNN reuse its kernels.
    x = example_input[:1]
    logging = ctx.log is not None  # FLOPs are counted only for the log: sensitivity sweeps skip them
    params_before, flops_before = _count(model), _flops(model, x) if logging else 0
    with torch.no_grad(), _eval(model):
        out_shape = model(x).shape
    ignored = _kept(model, x) + [names[n] for n in step.ignore]
    with _eval(model), warnings.catch_warnings():
        # Free parameters (a ViT's position embedding) are pruned along their last dim, which is right here.
        warnings.filterwarnings("ignore", message="Unwrapped parameters")
        pruner = tp.pruner.MetaPruner(
            model,
            x,
            importance=_importance(step.method),
            pruning_ratio=0.0 if only is not None else step.amount,
            pruning_ratio_dict={only: step.amount} if only is not None else None,
            iterative_steps=step.steps,
            ignored_layers=ignored,
            # Head dims are pruned alike in every head (q, k and v together); the number of heads stays.
            num_heads={m.qkv: _head_layout(m) for m in model.modules() if _head_layout(m)},
            prune_head_dims=True,
        )
    history = []
    for i in range(step.steps):
        if step.method == "taylor":
            _taylor_gradients(model, ctx)
        head_dims = _head_dims(model)
        pruner.step()
        _keep_attention_temperature(model, head_dims)
        model.zero_grad(set_to_none=True)
        record = {"step": i + 1, "params": _count(model)}
        if step.finetune_epochs:
            record.update(
                finetune(model, step.finetune_epochs, 0.0, ctx, desc=f"fine-tune after prune step {i + 1}/{step.steps}")
            )
        history.append(record)
    with torch.no_grad(), _eval(model):
        new_shape = model(x).shape
    if new_shape != out_shape:
        raise RuntimeError(f"structured pruning changed the output shape from {tuple(out_shape)} to {tuple(new_shape)}")
    params_after, flops_after = _count(model), _flops(model, x) if logging else 0
    if params_after == params_before:
        warnings.warn(
            f"StructuredPrune removed nothing from {type(model).__name__}: no prunable channels were found",
            stacklevel=2,
        )
    ctx.record(
        step=step.kind,
        method=step.method,
        amount=step.amount,
        steps=step.steps,
        finetune_epochs=step.finetune_epochs,
        params_before=params_before,
        params_after=params_after,
        param_reduction=1 - params_after / params_before,
        flops_before=flops_before,
        flops_after=flops_after,
        flop_reduction=1 - flops_after / max(flops_before, 1),
        history=history,
    )
    return model


def _taylor_gradients(model: nn.Module, ctx: CompressContext) -> None:
    """Accumulate loss gradients over a few training batches: Taylor importance reads ``w * grad``."""
    model.zero_grad(set_to_none=True)
    with _eval(model):  # eval: fixed BatchNorm statistics, so scoring does not change the model
        for i, (x, y) in enumerate(ctx.train_loader):
            if i == TAYLOR_BATCHES:
                break
            F.cross_entropy(model(x.to(ctx.device)), y.to(ctx.device)).backward()
