"""The roofline model: what bounds a timing, the device's arithmetic or its memory, or neither.

A kernel can go no faster than the device's peak arithmetic (``matmul_ceiling``) nor than its memory
can feed it: bandwidth x arithmetic intensity (FLOPs per byte moved). Below both roofs by far, the time
goes to neither: framework overhead, kernel launches, small layers. ``memory_bandwidth`` measures the
second roof with a STREAM-like triad; ``roofline_point`` places one timing under the two.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from .bench import _sync_any
from .device import device_name, resolve_device

# Each array 32 MiB in float32: three of them are well past any CPU's last-level cache on the machines
# this project runs on (an EPYC has 32 MiB an 8-core complex), so the triad streams from memory.
TRIAD_ELEMENTS = 1 << 23
OVERHEAD_SHARE = 0.10  # under a tenth of what the roofline allows, the arithmetic and bytes explain little
REGIMES = ("compute", "memory", "overhead")


def memory_bandwidth(device: str | torch.device = "cpu", *, repeats: int = 10) -> dict[str, Any]:
    """The device's memory bandwidth in GB/s from a STREAM triad (``a = b + s * c`` on float32 arrays of
    ``TRIAD_ELEMENTS``; 3 arrays' bytes a pass, write-allocate not counted, as STREAM counts), the best of
    ``repeats`` passes after a warm-up, at the current torch thread count. Cached per device and thread count.

    Example:
        >>> probe = memory_bandwidth("cpu", repeats=2)
        >>> probe["gbs"] > 0, probe["bytes_per_pass"] == 3 * 4 * TRIAD_ELEMENTS
        (True, True)
    """
    device = resolve_device(device)
    return dict(_triad(str(device), torch.get_num_threads(), repeats))


@functools.cache
def _triad(device_str: str, threads: int, repeats: int) -> tuple[tuple[str, Any], ...]:
    device = torch.device(device_str)
    a, b, c = (torch.rand(TRIAD_ELEMENTS, device=device) for _ in range(3))
    seconds = []
    for i in range(repeats + 1):
        _sync_any(device)
        start = time.perf_counter()
        torch.add(b, c, alpha=3.0, out=a)
        _sync_any(device)
        if i:  # the first pass faults the pages in
            seconds.append(time.perf_counter() - start)
    moved = 3 * a.element_size() * TRIAD_ELEMENTS
    return (
        ("gbs", moved / min(seconds) / 1e9),
        ("bytes_per_pass", moved),
        ("threads", threads),
        ("device_name", device_name(device)),
    )


def activation_bytes(model: nn.Module, example: torch.Tensor) -> int:
    """Bytes of every leaf module's output in one forward pass of ``example``: the activations a forward
    writes once and the next layer reads once (so they count twice in the bytes a forward moves).

    Example:
        >>> activation_bytes(nn.Sequential(nn.Linear(4, 8), nn.ReLU()), torch.zeros(1, 4))
        64
    """
    total = 0

    def add(_module: nn.Module, _inputs: Any, output: Any) -> None:
        nonlocal total
        outputs = output if isinstance(output, (tuple, list)) else (output,)
        total += sum(t.numel() * t.element_size() for t in outputs if isinstance(t, torch.Tensor))

    forward_hooked(model, example, [m for m in model.modules() if not list(m.children())] or [model], add)
    return total


def forward_hooked(
    model: nn.Module, example: torch.Tensor, modules: list[nn.Module], hook: Callable[[nn.Module, Any, Any], None]
) -> None:
    """One forward pass of ``example`` (no gradients) with ``hook`` on each of ``modules``, removed after."""
    hooks = [m.register_forward_hook(hook) for m in modules]
    try:
        with torch.inference_mode():
            model(example)
    finally:
        for h in hooks:
            h.remove()


def roofline_point(
    flops: float, bytes_moved: float, seconds: float, *, peak_tflops: float, bandwidth_gbs: float
) -> dict[str, Any]:
    """One timing under the two roofs: ``intensity`` (FLOPs per byte), ``achieved_gflops``, ``bound_gflops``
    (the lower roof at that intensity), ``share`` (achieved / bound), ``ridge`` (the intensity where the
    roofs meet) and ``regime``: "overhead" when the share is under ``OVERHEAD_SHARE``, else "memory" left of
    the ridge and "compute" right of it.

    Example:
        >>> p = roofline_point(2e9, 1e6, 0.01, peak_tflops=1.0, bandwidth_gbs=10.0)
        >>> p["intensity"], p["achieved_gflops"], p["bound_gflops"], p["regime"]
        (2000.0, 200.0, 1000.0, 'compute')
        >>> roofline_point(2e6, 1e6, 0.01, peak_tflops=1.0, bandwidth_gbs=10.0)["regime"]
        'overhead'
    """
    intensity = flops / bytes_moved
    peak_gflops = peak_tflops * 1e3
    bound = min(peak_gflops, intensity * bandwidth_gbs)
    achieved = flops / seconds / 1e9
    ridge = peak_gflops / bandwidth_gbs
    share = achieved / bound
    regime = "overhead" if share < OVERHEAD_SHARE else ("memory" if intensity < ridge else "compute")
    return {
        "intensity": intensity,
        "achieved_gflops": achieved,
        "bound_gflops": bound,
        "share": share,
        "ridge": ridge,
        "regime": regime,
    }
