"""Charts of memory: what a KV cache takes against context length, and what a training step holds, part by part,
beside its time."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ._style import _figure, _themed

MIB = 2**20
TRAINING_PARTS = ("weights", "gradients", "optimizer_state", "activations")  # bottom to top


@_themed
def kv_cache_chart(sizes: pd.DataFrame, ax=None) -> Figure:
    """KV cache bytes (MiB, log) against context length (log), one line per way of keeping it, with the model's
    fp32 weights as a dashed line and its trained context dotted; from ``measure.kv_cache_sizes``.

    Example:
        >>> sizes = pd.DataFrame({"context": [64, 64, 1024, 1024], "cache": ["float32", "int8"] * 2,
        ...                       "kv_cache_bytes": [2**17, 2**15, 2**21, 2**19], "weights_bytes": [2**22] * 4,
        ...                       "batch": [1] * 4})
        >>> kv_cache_chart(sizes).axes[0].get_ylabel()
        'KV cache (MiB, log)'
    """
    fig, ax = _figure(ax)
    for cache, part in sizes.groupby("cache", sort=False):
        part = part.sort_values("context")
        ax.plot(part["context"], part["kv_cache_bytes"] / MIB, marker="o", ms=3, label=cache)
    ax.axhline(sizes["weights_bytes"].iloc[0] / MIB, ls="--", color="grey", label="the weights (fp32)")
    if "block_size" in sizes.attrs:
        ax.axvline(sizes.attrs["block_size"], ls=":", color="grey", label="context it was trained for")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("context (tokens, log)")
    ax.set_ylabel("KV cache (MiB, log)")
    a = sizes.attrs
    shape = ""
    if "n_layer" in a:
        shape = f"{a['n_layer']} layer{'s' * (a['n_layer'] != 1)} x {a['n_head']} heads x {a['head_dim']} dims, "
    ax.set_title(f"KV cache of {shape}batch {sizes['batch'].iloc[0]}", fontsize=10)
    ax.legend(fontsize=8)
    return fig


@_themed
def training_memory_chart(table: pd.DataFrame) -> Figure:
    """Per variant, what a training step holds (MiB: weights, gradients, optimizer state and the activations
    kept for the backward pass, stacked) and the step's median time (ms, interquartile range as a bar); from
    ``measure.training_memory``.

    Example:
        >>> table = pd.DataFrame({"weights": [4e6, 4e6], "gradients": [4e6, 1e5], "optimizer_state": [8e6, 2e5],
        ...                       "activations": [3e7, 1e7], "step_ms": [90.0, 110], "step_ms_q25": [88.0, 105],
        ...                       "step_ms_q75": [95.0, 112]}, index=pd.Index(["plain", "lora"], name="variant"))
        >>> [a.get_ylabel() for a in training_memory_chart(table).axes]
        ['memory of one step (MiB)', 'step time (ms, median)']
    """
    fig, (memory, speed) = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained", width_ratios=(3, 2))
    plt.close(fig)
    names, x = list(table.index), np.arange(len(table))
    bottom = np.zeros(len(table))
    for part in TRAINING_PARTS:
        values = table[part].to_numpy(float) / MIB
        memory.bar(x, values, 0.6, bottom=bottom, label=part.replace("_", " "))
        bottom += values
    for i, total in enumerate(bottom):
        memory.text(i, total, f"{total:.1f}", ha="center", va="bottom", fontsize=7)
    memory.set_ylabel("memory of one step (MiB)")
    memory.legend(fontsize=8)
    median = table["step_ms"].to_numpy(float)
    spread = np.vstack([median - table["step_ms_q25"].to_numpy(float), table["step_ms_q75"].to_numpy(float) - median])
    speed.bar(x, median, 0.6, yerr=spread, capsize=3, color="grey")
    speed.set_ylabel("step time (ms, median)")
    for ax in (memory, speed):
        ax.set_xticks(x, names, rotation=30, ha="right", fontsize=8)
        ax.grid(alpha=0.3, axis="y")
    threads = f", {table.attrs['threads']} thread(s)" if "threads" in table.attrs else ""
    fig.suptitle(f"One optimizer step on {table.attrs.get('device_name', 'this machine')}{threads}: memory and time")
    return fig
