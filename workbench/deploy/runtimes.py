"""The same model in every runtime it can ship to, timed side by side on the same real inputs.

PyTorch eager, ``torch.compile``, the ``torch.export`` program, ONNX Runtime on the CPU (threads
stated), and on a GPU ONNX Runtime's CUDA execution provider and TensorRT (through ONNX Runtime's
TensorRT provider). A runtime this machine or install lacks is a row with a one-line ``skipped``
reason, never a gap. Rows are the benchmark records the ledger reads (``device/mode/bsN``), so the
same numbers can sit in a results row; ``charts.runtime_chart`` draws them.

Example:
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    >>> df = runtime_comparison(net, (1, 8, 8), modes=("eager",), batch_sizes=(1,), warmup=1, iters=3)
    >>> df.loc[df["device"] == "cpu", ["runtime", "batch_size", "speedup_vs_eager"]].values.tolist()
    [['PyTorch eager', 1, 1.0]]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..measure import MEASURE_MODES, available_devices, measure_modes_together

GPU_ONLY = ("tensorrt",)


def runtime_label(mode: str, device: str, threads: int | None = None) -> str:
    """How a chart names a runtime on a device.

    Example:
        >>> runtime_label("onnxruntime", "cpu", 2), runtime_label("onnxruntime", "cuda")
        ('ONNX Runtime CPU (2 threads)', 'ONNX Runtime CUDA EP')
    """
    if mode == "onnxruntime":
        return (
            f"ONNX Runtime CPU ({threads} thread{'s' * (threads != 1)})" if device == "cpu" else "ONNX Runtime CUDA EP"
        )
    return {
        "eager": "PyTorch eager",
        "compiled": "torch.compile",
        "export": "torch.export program",
        "tensorrt": "TensorRT (ONNX Runtime EP)",
    }[mode]


def runtime_comparison(
    models: nn.Module | Sequence[nn.Module],
    chw: Sequence[int],
    images: torch.Tensor | None = None,
    *,
    names: Sequence[str] | None = None,
    modes: Sequence[str] = MEASURE_MODES,
    batch_sizes: Sequence[int] = (1, 64),
    warmup: int = 5,
    iters: int = 30,
    progress: bool = False,
) -> pd.DataFrame:
    """One row per (model, runtime, device, batch size): median latency with its quartiles, throughput,
    threads, the speed-up over eager PyTorch on the same device and batch, or why it was skipped.

    Models are timed together (taking turns, ``benchmark_together``), so ratios between them and between
    runtimes come from one run. ``images`` (normalised, N x C x H x W) are the inputs every runtime gets;
    random batches without them. Every device here is used; with no CUDA GPU the GPU runtimes are
    rows skipped for that reason.
    """
    models = [models] if isinstance(models, nn.Module) else list(models)
    names = list(names) if names is not None else [type(m).__name__ for m in models]
    if len(names) != len(models):
        raise ValueError(f"runtime_comparison: {len(names)} names for {len(models)} models")
    devices = available_devices()
    rows = []
    for device in devices:
        here = [m for m in modes if device.type == "cuda" or m not in GPU_ONLY]
        timed = measure_modes_together(
            models,
            chw,
            modes=here,
            batch_sizes=batch_sizes,
            device=device,
            warmup=warmup,
            iters=iters,
            progress=progress,
            images=images,
        )
        rows += [{"model": name, **r} for name, records in zip(names, timed) for r in records]
    if not any(d.type == "cuda" for d in devices):
        rows += [
            {
                "model": name,
                "mode": m,
                "device": "cuda",
                "device_name": "",
                "batch_size": int(bs),
                "latency_ms": None,
                "skipped": "no CUDA GPU on this machine",
            }
            for name in names
            for m in modes
            if m in ("onnxruntime", *GPU_ONLY)
            for bs in batch_sizes
        ]
    df = pd.DataFrame(rows)
    df["device"] = df["device"].astype(str).str.split(":").str[0]
    if "threads" not in df:
        df["threads"] = np.nan
    df.insert(
        1,
        "runtime",
        [
            runtime_label(m, d, int(t) if pd.notna(t) else None)
            for m, d, t in zip(df["mode"], df["device"], df["threads"])
        ],
    )
    eager = df[df["mode"] == "eager"].set_index(["model", "device", "batch_size"])["latency_ms"]
    keys = list(zip(df["model"], df["device"], df["batch_size"]))
    df["speedup_vs_eager"] = [
        eager.get(k, np.nan) / ms if ms == ms and ms else np.nan
        for k, ms in zip(keys, pd.to_numeric(df["latency_ms"], errors="coerce"))
    ]
    if "skipped" not in df:
        df["skipped"] = None
    return df
