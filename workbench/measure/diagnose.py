"""Diagnostics that separate the causes of a timing: what the ledger's reasons are decided by.

- ``matmul_speedup``: int8 (or bf16) against float32 matrix products at a model's own layer shapes, with
  the kernels this device's quantized engine runs: can the low-precision arithmetic itself be faster here?
- ``op_shares``: where a forward pass's time goes, in classes the reasons name: arithmetic, quantize and
  dequantize steps, layout conversions, other operators, and framework overhead (the time no operator took).
- ``diagnose``: both, for a model as a run ends, with the activation bytes the roofline needs.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F
from torch.profiler import ProfilerActivity, profile

from .bench import _ready
from .device import model_device
from .profile import quiet_profiler
from .roofline import activation_bytes, forward_hooked

MAX_ROWS = 4096  # a layer's GEMM is timed on at most this many rows; beyond it the time grows in proportion
KERNEL_KINDS = ("int8", "int8_dynamic", "bf16", "fp16")
# Operator names by class, matched as substrings of the profiler's lower-cased names.
OP_CLASSES = {
    "quantize": ("quantize", "dequantize", "fake_quant", "q_scale", "q_zero_point", "int_repr"),
    "layout": ("contiguous", "copy_", "_to_copy", "aten::to", "clone", "permute", "to_dense", "to_mkldnn", "reorder"),
    "arithmetic": ("conv", "linear", "addmm", "matmul", "aten::mm", "bmm", "_int_mm", "attention", "baddbmm"),
}


def gemm_shapes(model: nn.Module, example: torch.Tensor) -> list[tuple[int, int, int]]:
    """(M, K, N) of each Linear and (ungrouped) Conv2d as a matrix product, in one forward pass of
    ``example``: a convolution is ``M = batch x output pixels`` rows of ``K = in channels x kernel area``
    against ``N = out channels`` (im2col). Grouped convolutions are left out (they are not one GEMM).

    Example:
        >>> gemm_shapes(nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(), nn.Linear(8 * 4 * 4, 10)),
        ...             torch.zeros(2, 3, 6, 6))
        [(32, 27, 8), (2, 128, 10)]
    """
    shapes: list[tuple[int, int, int]] = []

    def record(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
        if hasattr(module, "in_features"):
            shapes.append((inputs[0].numel() // module.in_features, module.in_features, module.out_features))
        elif module.groups == 1:
            k = module.in_channels * math.prod(module.kernel_size)
            shapes.append((output.numel() // module.out_channels, k, module.out_channels))

    # By what they hold, so int8 modules that replaced Linear and Conv2d (torch.ao's) count too.
    layers = [
        m for m in model.modules() if hasattr(m, "in_features") or (hasattr(m, "kernel_size") and hasattr(m, "groups"))
    ]
    forward_hooked(model, example, [m for m in layers if not list(m.children())], record)
    return shapes


def matmul_speedup(
    shapes: Iterable[tuple[int, int, int]], kind: str = "int8", *, repeats: int = 5, min_seconds: float = 2e-3
) -> pd.DataFrame:
    """float32 time / ``kind`` time of each (M, K, N) product on the CPU, one row per distinct shape with
    ``count`` (how often the model runs it), ``fp32_ms``, ``<kind>_ms`` and ``speedup``; ``attrs["speedup"]``
    is the whole model's: the float32 times summed over its layers against the ``kind`` ones. int8 is the
    quantized engine's static linear (uint8 activations x int8 weights, torch's x86/FBGEMM/oneDNN kernels:
    what compiled int8 programs call); int8_dynamic the same with the activations' range measured and
    quantized every call (what dynamic int8 runs); bf16 and fp16 are plain products in that dtype. Rows beyond
    ``MAX_ROWS`` are timed at ``MAX_ROWS`` and scaled. Medians of ``repeats`` timings, each call repeated
    to at least ``min_seconds``.

    Example:
        >>> df = matmul_speedup([(64, 64, 64), (64, 64, 64)], "int8", repeats=2)
        >>> int(df.loc[0, "count"]), df.attrs["speedup"] > 0
        (2, True)
    """
    if kind not in KERNEL_KINDS:
        raise ValueError(f"matmul_speedup kind '{kind}': use one of {', '.join(KERNEL_KINDS)}")
    counts: dict[tuple[int, int, int], int] = {}
    for shape in shapes:
        counts[tuple(shape)] = counts.get(tuple(shape), 0) + 1
    rows = []
    for (m, k, n), count in counts.items():
        rows_timed = min(m, MAX_ROWS)
        float_call, low_call = _products(rows_timed, k, n, kind)
        scale = m / rows_timed
        fp32_ms, low_ms = (1e3 * scale * _median_seconds(c, repeats, min_seconds) for c in (float_call, low_call))
        rows.append(
            {
                "m": m,
                "k": k,
                "n": n,
                "count": count,
                "fp32_ms": fp32_ms,
                f"{kind}_ms": low_ms,
                "speedup": fp32_ms / low_ms,
            }
        )
    df = pd.DataFrame(rows, columns=["m", "k", "n", "count", "fp32_ms", f"{kind}_ms", "speedup"])
    total = (df["fp32_ms"] * df["count"]).sum(), (df[f"{kind}_ms"] * df["count"]).sum()
    df.attrs.update(
        kind=kind, speedup=float(total[0] / total[1]) if total[1] else float("nan"), threads=torch.get_num_threads()
    )
    return df


def _products(m: int, k: int, n: int, kind: str) -> tuple[Callable[[], Any], Callable[[], Any]]:
    x, w, bias = torch.randn(m, k), torch.randn(n, k), torch.zeros(n)
    if not kind.startswith("int8"):
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[kind]
        xl, wl, bl = x.to(dtype), w.to(dtype), bias.to(dtype)
        return (lambda: F.linear(x, w, bias)), (lambda: F.linear(xl, wl, bl))
    with warnings.catch_warnings():  # torch deprecates the quantized tensor types its int8 kernels still take
        warnings.simplefilter("ignore")
        qx = torch.quantize_per_tensor(x, 0.05, 128, torch.quint8)
        packed = torch.ops.quantized.linear_prepack(torch.quantize_per_tensor(w, 0.05, 0, torch.qint8), bias)
    if kind == "int8_dynamic":
        return (lambda: F.linear(x, w, bias)), (lambda: torch.ops.quantized.linear_dynamic(x, packed))
    return (lambda: F.linear(x, w, bias)), (lambda: torch.ops.quantized.linear(qx, packed, 0.1, 128))


def _median_seconds(call: Callable[[], Any], repeats: int, min_seconds: float) -> float:
    call()  # the first call packs and allocates
    start = time.perf_counter()
    call()
    loops = max(1, int(min_seconds / max(time.perf_counter() - start, 1e-7)))
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(loops):
            call()
        seconds.append((time.perf_counter() - start) / loops)
    return sorted(seconds)[len(seconds) // 2]


def op_class(name: str) -> str:
    """The class of a profiler operator name: arithmetic, quantize, layout or other.

    Example:
        >>> [op_class(n) for n in ("aten::conv2d", "quantized_decomposed::dequantize_per_tensor", "aten::copy_",
        ...                        "aten::relu")]
        ['arithmetic', 'quantize', 'layout', 'other']
    """
    lowered = name.lower()
    if lowered.startswith("quantized::"):  # the int8 kernels themselves (quantized::linear, ::conv2d)
        return "arithmetic"
    return next((cls for cls, needles in OP_CLASSES.items() if any(n in lowered for n in needles)), "other")


def op_shares(model: Callable[[torch.Tensor], Any], example: torch.Tensor, *, steps: int = 3) -> dict[str, Any]:
    """Where the time of a forward pass of ``example`` goes on the CPU: ``ms`` per pass (wall time, under
    the profiler) and ``shares`` of it: arithmetic, quantize, layout and other operators' self time, and
    ``overhead``, the wall time no operator accounts for (Python, dispatch, the framework between kernels).

    Example:
        >>> out = op_shares(nn.Sequential(nn.Linear(8, 8), nn.ReLU()), torch.zeros(1, 8), steps=2)
        >>> sorted(out["shares"]), abs(sum(out["shares"].values()) - 1) < 1e-6
        (['arithmetic', 'layout', 'other', 'overhead', 'quantize'], True)
    """
    with torch.inference_mode():
        model(example)  # one-time setup would otherwise count as the first pass's time
        with quiet_profiler(), profile(activities=[ProfilerActivity.CPU]) as prof:
            start = time.perf_counter()
            for _ in range(steps):
                model(example)
            wall_us = (time.perf_counter() - start) * 1e6
    by_class = dict.fromkeys(("arithmetic", "quantize", "layout", "other"), 0.0)
    for event in prof.key_averages():
        by_class[op_class(event.key)] += event.self_cpu_time_total
    ops_us = sum(by_class.values())
    total = max(wall_us, ops_us)
    shares = {k: v / total for k, v in by_class.items()} | {"overhead": (total - ops_us) / total}
    return {"ms": total / steps / 1e3, "shares": shares, "steps": steps, "batch_size": len(example)}


def diagnose(
    float_model: nn.Module,
    model: Callable[[torch.Tensor], Any],
    example: torch.Tensor,
    *,
    kinds: Sequence[str] = (),
    batch_sizes: Sequence[int] = (1,),
    decode_batch_sizes: Sequence[int] = (),
    kernels: bool = True,
) -> dict[str, Any]:
    """The measurements the ledger decides its reasons by, for a run's final ``model`` (its float form
    ``float_model`` gives the layer shapes): ``activation_bytes`` of one example (``example`` is one
    example with its batch dimension), the operator ``profile`` of an eager forward at each batch size, and
    for each low-precision ``kinds`` (int8, bf16) its ``matmul`` speed-up over float32 at the
    model's layer shapes, keyed like the ledger's cells: ``bs8`` for a batch of 8 examples, ``decode/bs8``
    for a language model's decode step of 8 sequences (one row each). The profile and the products are the
    CPU's kernels; with ``kernels=False`` (a run timed on a GPU) only the activation bytes are measured, on
    the device the model is on.

    Example:
        >>> net = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
        >>> d = diagnose(net, net, torch.zeros(1, 16), kinds=("int8",), batch_sizes=(1, 8))
        >>> d["activation_bytes"], sorted(d["matmul"]["int8"])
        (272, ['bs1', 'bs8'])
    """
    if not kernels:
        home = model_device(float_model)
        with _ready(float_model, home):  # eval mode (BatchNorm, dropout), restored after
            return {"activation_bytes": activation_bytes(float_model, example.to(home))}
    cpu = torch.device("cpu")
    with _ready(float_model, cpu), _ready(model, cpu):  # eval mode (BatchNorm, dropout), restored after
        out: dict[str, Any] = {"activation_bytes": activation_bytes(float_model, example)}
        out["profile"] = {
            f"bs{bs}": op_shares(model, example.expand(bs, *example.shape[1:]).contiguous()) for bs in batch_sizes
        }
        shapes = gemm_shapes(float_model, example)
    cells = [(f"bs{bs}", bs, False) for bs in batch_sizes] + [(f"decode/bs{bs}", bs, True) for bs in decode_batch_sizes]
    out["matmul"] = {
        kind: {
            key: matmul_speedup([(bs if decoding else m * bs, k, n) for m, k, n in shapes], kind).attrs["speedup"]
            for key, bs, decoding in cells
        }
        for kind in kinds
        if shapes
    }
    return out
