"""Every timed cell of a set of runs on the roofline: its arithmetic intensity (FLOPs per byte moved)
against the FLOP/s it reached, under the device's two measured roofs (``measure.roofline``).

The bytes a forward pass moves are modelled, not counted by hardware: the weights read once per batch
and every layer's output written once and read once (``measure.activation_bytes`` of one example, times
the batch). Caches that keep weights between calls make a small model look better than this; the model
is the one the roofline literature uses for a first placement. A language model's decode step reads its
weights for a batch of single tokens: the same model with one token's share of a window's activations.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..measure.roofline import roofline_point
from . import Result, as_frame, run_labels
from .cells import timing_cells

COLUMNS = [
    "variant",
    "device",
    "device_name",
    "mode",
    "batch_size",
    "latency_ms",
    "flops",
    "bytes",
    "intensity",
    "achieved_gflops",
    "bound_gflops",
    "share",
    "ridge",
    "regime",
    "peak_gflops",
    "bandwidth_gbs",
]


def cell_point(row: pd.Series | dict[str, Any], cell: dict[str, Any]) -> dict[str, Any] | None:
    """One timed cell (a benchmark record with ``mode``, ``batch_size``, ``latency_ms``) of a run's ``row``
    on the roofline, or None where the row lacks what it needs (FLOPs, size, activation bytes from its
    diagnostics, the measured matmul ceiling and bandwidth: rows stored before they were measured), or where
    the cell ran on another device than the one whose roofs the row measured.

    Example:
        >>> row = {"flops": 1e6, "size_bytes": 4e5, "diagnostics": {"activation_bytes": 1e3},
        ...        "ceiling_tflops": 0.1, "bandwidth_gbs": 10.0}
        >>> p = cell_point(row, {"mode": "eager", "batch_size": 100, "latency_ms": 2.0})
        >>> round(p["intensity"], 1), round(p["achieved_gflops"], 1), p["regime"]
        (166.7, 50.0, 'compute')
    """
    primary = row.get("measure_device_name")
    if primary and cell.get("device_name") and cell["device_name"] != primary:
        return None  # the roofs were measured on the run's primary timing device only
    diagnostics = row.get("diagnostics")
    activations = diagnostics.get("activation_bytes") if isinstance(diagnostics, dict) else None
    needed = [row.get(k) for k in ("flops", "size_bytes", "ceiling_tflops", "bandwidth_gbs")] + [activations]
    if any(v is None or not np.isfinite(float(v)) or float(v) <= 0 for v in needed):
        return None
    flops, activations = float(row["flops"]), float(activations)
    if str(cell["mode"]).startswith("decode"):  # one token a sequence: a window's share per token
        block = float(row.get("model.block_size") or 1)
        flops, activations = flops / block, activations / block
    batch = int(cell["batch_size"])
    work, moved = flops * batch, float(row["size_bytes"]) + 2 * activations * batch
    point = roofline_point(
        work,
        moved,
        cell["latency_ms"] / 1e3,
        peak_tflops=float(row["ceiling_tflops"]),
        bandwidth_gbs=float(row["bandwidth_gbs"]),
    )
    return {
        "flops": work,
        "bytes": moved,
        **point,
        "peak_gflops": float(row["ceiling_tflops"]) * 1e3,
        "bandwidth_gbs": float(row["bandwidth_gbs"]),
    }


def roofline(results: pd.DataFrame | Sequence[Result]) -> pd.DataFrame:
    """One row per run x device x mode x batch size that was timed and can be placed (``cell_point``):
    FLOPs and modelled bytes of the call, intensity, achieved and bound GFLOP/s, the share of the bound
    reached and the regime (compute, memory, overhead). Chart it with ``charts.roofline_chart``.

    Example:
        >>> from workbench import RunConfig
        >>> rec = [{"mode": "eager", "batch_size": 1, "latency_ms": 0.02, "device": "cpu", "device_name": "x86"}]
        >>> r = Result(RunConfig(name="a"), {"flops": 1e6, "size_bytes": 1e5, "ceiling_tflops": 0.1,
        ...            "bandwidth_gbs": 10.0, "diagnostics": {"activation_bytes": 1e4}}, benchmarks=rec)
        >>> roofline([r])[["variant", "mode", "regime"]].values.tolist()
        [['a', 'eager', 'memory']]
    """
    df = as_frame(results)
    rows = []
    for label, (_, row) in zip(run_labels(df), df.iterrows()):
        for key, cell in timing_cells(row.get("benchmarks", [])).items():
            point = cell_point(row, cell)
            if point is not None:
                device = key.split("/")[0]
                rows.append(
                    {
                        "variant": label,
                        "device": device,
                        "device_name": cell.get("device_name", ""),
                        "mode": cell["mode"],
                        "batch_size": int(cell["batch_size"]),
                        "latency_ms": cell["latency_ms"],
                        **point,
                    }
                )
    return pd.DataFrame(rows, columns=COLUMNS)
