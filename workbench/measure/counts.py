"""Static measures of a model: parameter counts, bytes on disk, FLOPs per forward pass."""

from __future__ import annotations

import io
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .device import model_device
from .onnx import OnnxRuntimeModule


def count_parameters(model: nn.Module) -> dict[str, int]:
    """Parameters and non-zero parameters (what unstructured pruning lowers).

    Sees through ``torch.nn.utils.prune`` masks (counts ``weight_orig * weight_mask``), eager
    quantized modules (weights packed outside ``parameters()``) and torchao tensor subclasses.

    Example:
        >>> net = nn.Linear(4, 3)
        >>> with torch.no_grad():
        ...     _ = net.weight[0].zero_()
        >>> count_parameters(net)
        {'params': 15, 'nonzero_params': 11}
    """
    if isinstance(model, OnnxRuntimeModule):  # an ONNX graph: its weights are the graph's initializers
        arrays = model.weights()
        return {"params": sum(a.size for a in arrays), "nonzero_params": sum(int(np.count_nonzero(a)) for a in arrays)}
    params = nonzero = 0
    for w in _weights(model):
        params += w.numel()
        if w.is_quantized or type(w) not in (torch.Tensor, nn.Parameter):  # packed / subclass weights
            w = w.dequantize()
        nonzero += int(torch.count_nonzero(w.detach()))
    return {"params": params, "nonzero_params": nonzero}


def weight_dtype(model: nn.Module) -> str:
    """The storage dtype of the model's weights, as shipped: ``float32``, ``bfloat16``, ``int8``...; with
    each dtype's share where they mix (``int8 94%, float32 6%``). Quantized and torchao tensors report
    the dtype of their stored values, not the float dtype they stand for.

    Example:
        >>> weight_dtype(nn.Linear(4, 4)), weight_dtype(nn.Linear(4, 4).half())
        ('float32', 'float16')
    """
    counts: dict[str, int] = {}
    if isinstance(model, OnnxRuntimeModule):
        for a in model.weights():
            counts[str(a.dtype)] = counts.get(str(a.dtype), 0) + a.size
    for w in _weights(model):
        if w.is_quantized:
            dtype = str(w.dtype).removeprefix("torch.q")  # qint8 -> int8
        elif type(w) not in (torch.Tensor, nn.Parameter) and hasattr(w, "__tensor_flatten__"):
            inner = [getattr(w, name) for name in w.__tensor_flatten__()[0]]
            dtype = str(max(inner, key=lambda t: t.numel()).dtype).removeprefix("torch.")
        else:
            dtype = str(w.dtype).removeprefix("torch.")
        counts[dtype] = counts.get(dtype, 0) + w.numel()
    total = sum(counts.values()) or 1
    ranked = sorted(counts.items(), key=lambda kv: -kv[1])
    if len(ranked) == 1:
        return ranked[0][0]
    return ", ".join(f"{d} {n / total:.0%}" for d, n in ranked)


def model_size_bytes(model: nn.Module) -> int:
    """Bytes of ``torch.save(model.state_dict())``: the weights as shipped, quantized ones at their real width.

    Zeroed (pruned) weights still take their full space here; only a smaller shape or a narrower
    dtype shrinks the file.

    Example:
        >>> model_size_bytes(nn.Linear(1000, 100)) > 4 * 100_100
        True
    """
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.getbuffer().nbytes


def count_flops(
    model: nn.Module, input_shape: tuple[int, ...] = (1, 3, 32, 32), example: torch.Tensor | None = None
) -> int:
    """FLOPs of one forward pass on a zeros input of ``input_shape`` (batch included), or on ``example``
    (an input that is not a float tensor of one shape: a window of token ids).

    Counted by ``torch.utils.flop_counter.FlopCounterMode``: a multiply-add is 2 FLOPs; bias adds,
    activations, norms and pooling are not counted, nor are quantized ops it does not know (they
    count 0). Runs in eval mode without gradients on the model's own device.

    Example:
        >>> count_flops(nn.Linear(10, 5), (4, 10))  # 2 * in * out * batch
        400
    """
    model = getattr(model, "_orig_mod", model)  # a torch.compile wrapper: count the original graph
    device, dtype = _home(model)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(input_shape, device=device, dtype=dtype) if example is None else example.to(device))
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())


def _weights(model: nn.Module) -> Iterator[torch.Tensor]:
    seen: set[int] = set()
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if id(p) in seen:  # tied weights count once
                continue
            seen.add(id(p))
            if name.endswith("_orig") and hasattr(module, name[:-5] + "_mask"):  # torch.nn.utils.prune
                p = getattr(module, name[:-5])
            yield p
        if callable(getattr(module, "weight", None)):  # torch.ao quantized modules: weight() / bias() methods
            yield module.weight()
            bias = module.bias() if callable(getattr(module, "bias", None)) else None
            if bias is not None:
                yield bias


def _home(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    """The model's device and its floating dtype (float32 when it has none)."""
    floats = [t.dtype for t in [*model.parameters(), *model.buffers()] if t.is_floating_point()]
    return model_device(model), floats[0] if floats else torch.float32
