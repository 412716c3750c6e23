"""Charts of scale-out: pipeline bubbles, data-parallel scaling, per-rank memory."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator

from ._style import (
    _figure,
    _themed,
)


@_themed
def pipeline_chart(df: pd.DataFrame) -> Figure:
    """``pipeline_demo``'s rows: the pipeline bubble against micro-batches per step (each stage's
    measured share, their mean, and GPipe's theory dashed), and beside it the step's time (median,
    p10-p90 bars) with each stage's compute in it; the title names the model, device and backend.

    Example:
        >>> df = pd.DataFrame({"microbatches": [1, 4], "bubble_share_stage0": [0.5, 0.3],
        ...                    "bubble_share_stage1": [0.55, 0.35], "bubble_share": [0.52, 0.32],
        ...                    "bubble_theory": [0.5, 0.2], "step_ms": [90.0, 110.0], "step_ms_p10": [85.0, 100.0],
        ...                    "step_ms_p90": [95.0, 120.0], "busy_ms_stage0": [45.0, 75.0],
        ...                    "busy_ms_stage1": [40.0, 70.0]})
        >>> df.attrs.update(model="cnn", batch_size=64, device="cpu", device_name="AMD EPYC", backend="gloo")
        >>> fig = pipeline_chart(df)
        >>> [(a.get_xlabel(), a.get_ylabel()) for a in fig.axes]  # doctest: +NORMALIZE_WHITESPACE
        [('micro-batches per step', 'bubble: share of the step a stage waits (%)'),
         ('micro-batches per step', 'time per training step (ms)')]
    """
    df = df.sort_values("microbatches")
    m = df["microbatches"].to_numpy()
    stages = sorted(c for c in df if c.startswith("bubble_share_stage"))
    fig, (bubble, step) = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    plt.close(fig)
    for column, marker in zip(stages, "v^<>sD"):
        bubble.plot(
            m,
            100 * df[column],
            marker=marker,
            linestyle="none",
            alpha=0.6,
            label=f"measured, stage {column.removeprefix('bubble_share_stage')}",
        )
    bubble.plot(m, 100 * df["bubble_share"], marker="o", label="measured, mean of the stages")
    bubble.plot(
        m,
        100 * df["bubble_theory"],
        linestyle="--",
        color="gray",
        label=f"GPipe theory (S-1)/(M+S-1), S = {len(stages)}",
    )
    bubble.set(ylim=(0, 100), ylabel="bubble: share of the step a stage waits (%)")
    step.errorbar(
        m,
        df["step_ms"],
        yerr=[df["step_ms"] - df["step_ms_p10"], df["step_ms_p90"] - df["step_ms"]],
        marker="o",
        capsize=3,
        label="step (median, p10-p90)",
    )
    for column in sorted(c for c in df if c.startswith("busy_ms_stage")):
        step.plot(
            m, df[column], marker=".", linestyle=":", label=f"compute in stage {column.removeprefix('busy_ms_stage')}"
        )
    step.set(ylim=(0, None), ylabel="time per training step (ms)")
    for ax in (bubble, step):
        ax.set_xscale("log", base=2)
        ax.set_xticks(m, [str(v) for v in m])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xlabel("micro-batches per step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    a = df.attrs
    fig.suptitle(
        f"Pipeline bubble of {a.get('model', 'model?')} in two stages, batch {a.get('batch_size', '?')} — "
        f"{a.get('device_name', 'device?')} ({a.get('device', '?')}), {a.get('backend', '?')}"
    )
    return fig


@_themed
def scaling_chart(df: pd.DataFrame) -> Figure:
    """Training throughput per number of processes beside perfect scaling, and the scaling efficiency,
    from ``distributed.scaling``; the title names the device, backend and threads per process.

    Example:
        >>> df = pd.DataFrame({"nproc": [1, 2], "images_per_s": [1000.0, 1500.0], "efficiency": [1.0, 0.75]})
        >>> df.attrs.update(device_name="EPYC", backend="gloo", model="cnn", batch_size=64, threads_per_process=1)
        >>> fig = scaling_chart(df)
        >>> [a.get_ylabel() for a in fig.axes]
        ['training speed (images/s, steady epoch)', 'scaling efficiency (%)']
    """
    fig, (speed, share) = plt.subplots(1, 2, figsize=(10, 4.2), layout="constrained")
    plt.close(fig)
    n, ips = df["nproc"].to_numpy(), df["images_per_s"].to_numpy()
    speed.plot(n, ips, marker="o", label="measured")
    speed.plot(n, ips[0] / n[0] * n, linestyle="--", color="gray", label="perfect scaling")
    speed.set(xlabel="processes", ylabel="training speed (images/s, steady epoch)", xticks=n)
    speed.legend(fontsize="small")
    share.bar([str(v) for v in n], 100 * df["efficiency"].to_numpy())
    share.axhline(100, color="gray", linestyle="--")
    share.set(xlabel="processes", ylabel="scaling efficiency (%)")
    for ax in (speed, share):
        ax.grid(alpha=0.3)
    a = df.attrs
    fig.suptitle(
        f"{a.get('model', 'model')}, global batch {a.get('batch_size', '?')}: "
        f"{a.get('device_name', 'unknown device')}, "
        f"{a.get('backend', '?')}, {a.get('threads_per_process', '?')} thread(s) per process"
    )
    return fig


@_themed
def rank_chart(table: pd.DataFrame, metric: str = "parameter_bytes") -> Figure:
    """One bar per process of each run (``distributed.rank_table``): the parameters each holds (DDP's
    whole copies against FSDP's shards), its training speed (``images_per_s``) or its peak memory.

    Example:
        >>> table = pd.DataFrame({"run": ["ddp", "ddp", "fsdp", "fsdp"], "rank": [0, 1, 0, 1],
        ...                       "parameter_bytes": [4e6, 4e6, 2e6, 2e6]})
        >>> rank_chart(table).axes[0].get_ylabel()
        'parameters held (MiB)'
    """
    labels = {
        "parameter_bytes": ("parameters held (MiB)", 1 / 2**20),
        "peak_memory_bytes": ("peak memory (MiB)", 1 / 2**20),
        "images_per_s": ("training speed (images/s)", 1.0),
    }
    if metric not in labels:
        raise ValueError(f"rank_chart shows one of {', '.join(labels)} (got '{metric}')")
    ylabel, scale = labels[metric]
    fig, ax = _figure()
    runs = list(dict.fromkeys(table["run"]))
    ranks = sorted(table["rank"].unique())
    width = 0.8 / len(ranks)
    for k, rank in enumerate(ranks):
        rows = table[table["rank"] == rank].set_index("run")
        xs = [i + (k - (len(ranks) - 1) / 2) * width for i, run in enumerate(runs) if run in rows.index]
        ax.bar(
            xs, [scale * rows.loc[run, metric] for run in runs if run in rows.index], width=width, label=f"rank {rank}"
        )
    ax.set_xticks(range(len(runs)), runs)
    ax.set(
        xlabel="run",
        ylabel=ylabel,
        title=f"Per process: {ylabel.split(' (')[0]}"
        + (f" on {table.attrs['device_name']}" if "device_name" in table.attrs else ""),
    )
    ax.legend(fontsize="small")
    return fig
