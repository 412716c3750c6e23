"""Charts of compression: the ledger's size, accuracy and latency, a layer sensitivity, ablations, a path."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .. import latency_key
from ._style import (
    NOISY_NOTE,
    _figure,
    _log_axis,
    _scaled,
    _themed,
    metric_label,
    place_labels,
)


@_themed
def ablation_chart(table: pd.DataFrame) -> Figure:
    """What each part of a recipe bought (``workbench.ablation``): test-accuracy points and training seconds
    saved, one bar per part; right of zero the part helped.

    Example:
        >>> table = pd.DataFrame({"part": ["muon", "tta"], "accuracy_bought": [6.0, 0.5],
        ...                       "seconds_bought": [-0.2, 0.0]})
        >>> table.attrs.update(baseline="speedrun", train_device=["cpu"], **{"data.dataset": ["digits"]})
        >>> [ax.get_xlabel() for ax in ablation_chart(table).axes]
        ['test accuracy bought (points)', 'training time saved (s)']
    """
    fig, axes = plt.subplots(1, 2, figsize=(9, 0.5 * len(table) + 1.6), sharey=True, layout="constrained")
    plt.close(fig)  # shown once, as the cell's value (see _figure)
    for ax, column, label in zip(
        axes, ("accuracy_bought", "seconds_bought"), ("test accuracy bought (points)", "training time saved (s)")
    ):
        values = table[column].astype(float).to_numpy()
        bars = ax.barh(table["part"], values, color=np.where(values >= 0, "tab:green", "tab:red"))
        ax.bar_label(bars, fmt="%+.2f", fontsize=8, padding=2)
        ax.axvline(0, color="gray", linewidth=0.8)
        ax.set_xlabel(label)
        ax.margins(x=0.25)
    axes[0].invert_yaxis()
    where = ", ".join(table.attrs.get("train_device", [])) or "unknown device"
    fig.suptitle(
        f"What each part of {table.attrs.get('baseline', 'the recipe')} bought — "
        f"{', '.join(table.attrs.get('data.dataset', []))}, trained on {where}",
        fontsize=10,
    )
    return fig


@_themed
def path_chart(table: pd.DataFrame) -> Figure:
    """The path a model took, step by step, from ``workbench.report.ledger`` (one row per step, in order): test
    accuracy, FLOPs and size on disk against the first row, and latency per device and mode at the
    ledger's smallest batch, each step's bar beside the one before.

    Example:
        >>> df = pd.DataFrame({"variant": ["baseline", "int8"], "accuracy": [0.9, 0.89], "size_ratio": [1.0, 0.26],
        ...                    "flops_ratio": [1.0, 1.0], "cpu/eager/bs1_ms": [2.0, 1.0]})
        >>> df.attrs["device_names"] = {"cpu": "AMD EPYC"}
        >>> fig = path_chart(df)
        >>> [ax.get_ylabel() for ax in fig.axes], "AMD EPYC" in fig.get_suptitle()
        (['test accuracy (%)', 'against the first step (x)', 'latency per batch (ms, median)'], True)
    """
    latency = [c for c in table.columns if c.endswith("_ms")]
    if not latency:
        raise ValueError("No latency columns: build the table with ledger(results) from runs with benchmark records")
    smallest = min(latency_key(c[:-3])[2] for c in latency)
    latency = [c for c in latency if latency_key(c[:-3])[2] == smallest]
    steps = np.arange(len(table))
    labels = [f"{i}. {v}" for i, v in enumerate(table["variant"])]
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.4), layout="constrained")
    plt.close(fig)  # shown once, as the cell's value (see _figure)
    acc = _scaled(table["accuracy"], "accuracy")
    axes[0].plot(steps, acc, marker="o")
    for x, y in zip(steps, acc):
        axes[0].annotate(f"{y:.1f}", (x, y), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8)
    axes[0].set_ylabel(metric_label("accuracy"))
    for column, label in (("size_ratio", "size on disk"), ("flops_ratio", "FLOPs")):
        if column in table:
            axes[1].plot(steps, table[column].astype(float), marker="o", label=label)
    axes[1].axhline(1.0, color="gray", linewidth=0.8)
    axes[1].set_ylim(bottom=0)
    axes[1].set_ylabel("against the first step (x)")
    axes[1].legend(fontsize=8)
    width = 0.8 / len(latency)
    for i, column in enumerate(latency):
        device, mode, _ = latency_key(column[:-3])
        axes[2].bar(
            steps + (i - (len(latency) - 1) / 2) * width, table[column].astype(float), width, label=f"{device} {mode}"
        )
    axes[2].set_ylabel("latency per batch (ms, median)")
    axes[2].legend(fontsize=8, title=f"batch {smallest}", title_fontsize=8)
    for ax in axes:
        ax.set_xticks(steps, labels, rotation=35, ha="right", fontsize=8)
        ax.grid(alpha=0.3)
    names = table.attrs.get("device_names") or {}
    fig.suptitle(
        "The path, step by step — latency on " + (", ".join(f"{d}: {n}" for d, n in names.items()) or "unknown device"),
        fontsize=10,
    )
    return fig


@_themed
def ledger_size_chart(table: pd.DataFrame) -> Figure:
    """Accuracy against saved size (KiB) for each row of ``workbench.report.ledger``, points labelled with the variant.

    Example:
        >>> df = pd.DataFrame({"variant": ["fp32", "int8"], "size_bytes": [4096, 1024], "accuracy": [0.97, 0.96]})
        >>> fig = ledger_size_chart(df)
        >>> fig.axes[0].get_xlabel(), fig.axes[0].get_ylabel()
        ('model size on disk (KiB)', 'test accuracy (%)')
    """
    fig, ax = _figure()
    kib, acc = _scaled(table["size_bytes"], "size_bytes"), _scaled(table["accuracy"], "accuracy")
    ax.scatter(kib, acc, s=40, zorder=3)
    ax.set(
        xlabel=metric_label("size_bytes"), ylabel=metric_label("accuracy"), title="Accuracy against size per variant"
    )
    ax.margins(x=0.15, y=0.15)
    place_labels(ax, kib, acc, table["variant"], fontsize="small")
    return fig


@_themed
def ledger_latency_chart(table: pd.DataFrame) -> Figure:
    """Grouped bars of median latency from ``workbench.report.ledger``: one group per (device, mode, batch
    size), one bar per variant; the title names each device.

    Example:
        >>> df = pd.DataFrame({"variant": ["fp32", "int8"], "cpu/eager/bs1_ms": [2.0, 2.5],
        ...                    "cpu/compiled/bs1_ms": [1.0, 0.5]})
        >>> df.attrs["device_names"] = {"cpu": "AMD EPYC"}
        >>> fig = ledger_latency_chart(df)
        >>> fig.axes[0].get_ylabel(), "AMD EPYC" in fig.axes[0].get_title()
        ('latency per batch (ms, median), IQR bars', True)
    """
    columns = [c for c in table.columns if c.endswith("_ms")]
    if not columns:
        raise ValueError(
            "No latency columns to plot: build the table with ledger(results) from runs with benchmark records"
        )
    fig, ax = _figure()
    fig.set_size_inches(max(6.5, 1.2 * len(columns) + 3), 4.2)
    width = 0.8 / len(table)
    x = np.arange(len(columns))
    spreads = table.attrs.get("spreads") or {}
    any_noisy = False
    for i, (_, row) in enumerate(table.iterrows()):
        ms = row[columns].to_numpy(float)
        cells = spreads.get(row["variant"], {})
        q = np.array([cells.get(c, (v, v, False))[:2] for c, v in zip(columns, ms)], float).reshape(-1, 2)
        err = np.vstack([np.clip(ms - q[:, 0], 0, None), np.clip(q[:, 1] - ms, 0, None)])
        bars = ax.bar(x + (i - (len(table) - 1) / 2) * width, ms, width, yerr=err, capsize=2, label=str(row["variant"]))
        for bar, c in zip(bars, columns):
            if cells.get(c, (0, 0, False))[2]:
                bar.set_hatch("///")
                bar.set_alpha(0.5)
                any_noisy = True
    ax.set_xticks(x, [c.removesuffix("_ms").replace("/bs", "\nbatch ") for c in columns], fontsize="small")
    values = table[columns].to_numpy(float)
    if np.nanmax(values) / max(np.nanmin(values), 1e-9) > 30:  # batch 1 and batch 64 differ by orders of magnitude
        _log_axis(ax.yaxis)
    devices = table.attrs.get("device_names") or {}
    where = "; ".join(f"{d}: {n}" for d, n in devices.items()) or "device not recorded"
    ax.set(ylabel=metric_label("latency_ms") + ", IQR bars", title=f"Latency per mode and batch size ({where})")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))  # beside the bars, never over them
    if any_noisy:
        ax.set_xlabel(NOISY_NOTE, fontsize=8, color="tab:red")
    return fig


@_themed
def sensitivity_chart(df: pd.DataFrame) -> Figure:
    """Accuracy against the fraction of each layer pruned (``workbench.sensitivity``), one line per
    layer, the unpruned accuracy dashed.

    Example:
        >>> df = pd.DataFrame({"layer": ["a", "a"], "amount": [0.1, 0.9], "accuracy": [0.9, 0.5],
        ...                    "accuracy_drop": [0.0, 0.4], "params": [10, 2]})
        >>> sensitivity_chart(df).axes[0].get_xlabel()
        'fraction of the layer pruned'
    """
    fig, ax = _figure()
    for layer, rows in df.groupby("layer", sort=False):
        ax.plot(rows["amount"], _scaled(rows["accuracy"], "accuracy"), marker="o", label=layer)
    if "baseline_accuracy" in df.attrs:
        ax.axhline(100 * df.attrs["baseline_accuracy"], color="gray", linestyle="--", label="unpruned")
    ax.set(
        xlabel="fraction of the layer pruned", ylabel=metric_label("accuracy"), title="Pruning sensitivity per layer"
    )
    ax.legend(fontsize="small", loc="center left", bbox_to_anchor=(1.0, 0.5), ncol=1 + len(ax.lines) // 16)
    return fig


@_themed
def ledger_perplexity_chart(table: pd.DataFrame) -> Figure:
    """A language model's ledger (``workbench.report.ledger`` of ``task="lm"`` runs): validation perplexity
    against size on disk (left) and against decode speed at batch 1 (right), one labelled point per variant; lower
    and to the left is smaller, lower and to the right is faster. The title names the device decoding was timed on.

    Example:
        >>> df = pd.DataFrame({"variant": ["fp32", "int8"], "size_bytes": [4096, 1024], "perplexity": [7.1, 7.2],
        ...                    "decode_tps": [900.0, 1200.0]})
        >>> df.attrs["device_names"] = {"cpu": "AMD EPYC"}
        >>> fig = ledger_perplexity_chart(df)
        >>> [ax.get_xlabel() for ax in fig.axes], "AMD EPYC" in fig.get_suptitle()
        (['model size on disk (KiB)', 'decode speed (tokens/s, batch 1, KV cache)'], True)
    """
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True, layout="constrained")
    plt.close(fig)  # shown once, as the cell's value (see _figure)
    quality = _scaled(table["perplexity"], "perplexity")
    for ax, metric in zip(axes, ("size_bytes", "decode_tps")):
        xs = _scaled(table[metric], metric)
        ax.scatter(xs, quality, s=40, zorder=3)
        ax.set_xlabel(metric_label(metric))
        ax.grid(alpha=0.3)
        ax.margins(x=0.2, y=0.15)
        place_labels(ax, xs, quality, table["variant"], fontsize="small")
    axes[0].set_ylabel(metric_label("perplexity"))
    names = table.attrs.get("device_names") or {}
    where = ", ".join(f"{d}: {n}" for d, n in names.items()) or "device not recorded"
    fig.suptitle(f"Perplexity against size and decode speed per variant (decoding timed on {where})", fontsize=10)
    return fig


@_themed
def low_bit_chart(curve: pd.DataFrame) -> Figure:
    """Perplexity against bits per weight (``workbench.bits_curve``; or ``score`` where the frame has no perplexity),
    one line per scaling and group size, the unrounded model dashed: the curve GPTQ and AWQ are judged by. The
    weights are rounded and kept as floats (simulated), so the chart is about quality, not speed.

    Example:
        >>> curve = pd.DataFrame({"bits": [32, 4, 2, 4, 2], "group_size": [None, 32, 32, 32, 32],
        ...                       "scales": [None, "rtn", "rtn", "awq", "awq"],
        ...                       "bits_per_weight": [32.0, 5.0, 3.0, 5.0, 3.0],
        ...                       "perplexity": [7.0, 7.1, 9.0, 7.05, 8.0]})
        >>> ax = low_bit_chart(curve).axes[0]
        >>> ax.get_xlabel(), ax.get_ylabel()
        ('bits per weight (code + group scale and minimum)', 'validation perplexity (per token)')
        >>> [line.get_label() for line in ax.lines]
        ['unrounded (32 bits)', 'rtn, group 32', 'awq, group 32']
    """
    metric = "perplexity" if "perplexity" in curve else "score"
    fig, ax = _figure()
    full = curve[curve["scales"].isna()]
    if len(full):
        ax.axhline(float(full[metric].iloc[0]), color="gray", linestyle="--", label="unrounded (32 bits)")
    rounded = curve[curve["scales"].notna()]
    for (scales, group), rows in rounded.groupby(["scales", "group_size"], sort=False):
        rows = rows.sort_values("bits_per_weight")
        ax.plot(rows["bits_per_weight"], rows[metric], marker="o", ms=4, label=f"{scales}, group {int(group)}")
    ax.set(
        xlabel="bits per weight (code + group scale and minimum)",
        ylabel=metric_label(metric),
        title="Quality against bits per weight (simulated: weights rounded, kept as floats)",
    )
    worst = rounded[metric].max() if len(rounded) else float("nan")
    if len(full) and worst / float(full[metric].iloc[0]) > 3:  # 2 bits can cost orders of magnitude
        _log_axis(ax.yaxis)
    ax.legend(fontsize="small")
    return fig
