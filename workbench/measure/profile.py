"""Where the time goes: the top operators of a few forward passes, as a DataFrame."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator, Sequence

import pandas as pd
import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile

from .bench import _ready
from .device import device_name, resolve_device


@contextlib.contextmanager
def quiet_profiler() -> Iterator[None]:
    """Hold the process's stderr (file descriptor 2) on /dev/null while torch's profiler runs: its native
    layer writes a line as it starts and stops ("USDT: ... profiler_start"), which Jupyter shows as cell
    output, and no setting of torch 2.13 turns it off. Python exceptions still propagate."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def profile_summary(
    model: nn.Module,
    input_shape_chw: Sequence[int],
    device: str | torch.device = "cpu",
    steps: int = 3,
    *,
    batch_size: int = 1,
    top: int = 15,
) -> pd.DataFrame:
    """The ``top`` operators by self time over ``steps`` forward passes (after one warm-up pass).

    Columns: ``op``, ``calls``, ``self_cpu_ms``, ``cpu_total_ms`` and, on CUDA, ``self_cuda_ms``
    (sorted by it there), all per forward pass. ``df.attrs`` records device, device name, batch
    size and torch version.

    Example:
        >>> df = profile_summary(nn.Sequential(nn.Linear(8, 8), nn.ReLU()), (8,), steps=2)
        >>> {"op", "calls", "self_cpu_ms"} <= set(df.columns) and len(df) > 0
        True
    """
    device = resolve_device(device, field="device")
    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    x = torch.randn(batch_size, *input_shape_chw, device=device)
    with _ready(model, device), torch.inference_mode():
        model(x)  # one-time setup (allocator, kernel choice) would otherwise top the table
        with quiet_profiler(), profile(activities=activities) as prof:
            for _ in range(steps):
                model(x)
            if cuda:
                torch.cuda.synchronize(device)
    rows = []
    for e in prof.key_averages():
        row = {
            "op": e.key,
            "calls": e.count / steps,
            "self_cpu_ms": e.self_cpu_time_total / 1e3 / steps,
            "cpu_total_ms": e.cpu_time_total / 1e3 / steps,
        }
        if cuda:
            row["self_cuda_ms"] = e.self_device_time_total / 1e3 / steps
        rows.append(row)
    key = "self_cuda_ms" if cuda else "self_cpu_ms"
    df = pd.DataFrame(rows).sort_values(key, ascending=False).head(top).reset_index(drop=True)
    df.attrs.update(
        device=str(device),
        device_name=device_name(device),
        batch_size=batch_size,
        steps=steps,
        torch_version=torch.__version__,
    )
    return df
