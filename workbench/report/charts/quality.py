"""Charts of quality against cost: accuracy against size, metric bars, a swept setting's lines."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator

from ...measure.bench import NOISY_SPREAD
from .. import METRICS, run_labels
from ._style import (
    _dataset,
    _eager_quartiles,
    _figure,
    _format_axis,
    _inference,
    _scaled,
    _short,
    _themed,
    _zero_based,
    device_label,
    metric_label,
    pareto_mask,
    place_labels,
    train_label,
)


@_themed
def size_accuracy_chart(df: pd.DataFrame, size: str = "size_bytes", ax=None) -> Figure:
    """Test accuracy against a cost (``size_bytes``, ``params``, ``flops``, ``latency_ms``...), the
    Pareto front (no other run is both cheaper and more accurate) highlighted. For a metric where
    higher is better (``throughput_ips``) the front runs the other way, as the results schema says.

    Example:
        >>> df = pd.DataFrame({"name": list("abc"), "run_id": list("123"), "accuracy": [0.9, 0.8, 0.95],
        ...                    "params": [100, 200, 400]})
        >>> fig = size_accuracy_chart(df, size="params")
        >>> [c.get_label() for c in fig.axes[0].collections]
        ['dominated', 'Pareto front']
    """
    fig, ax = _figure(ax)
    x, y = _scaled(df[size], size), _scaled(df["accuracy"], "accuracy")
    ok = np.isfinite(x) & np.isfinite(y)
    labels = [lab for lab, keep in zip(run_labels(df), ok) if keep]
    q25, q75, noisy = (a[ok] for a in _eager_quartiles(df))
    x, y = x[ok], y[ok]
    higher_is_better = size in METRICS and METRICS[size].lower_is_better is False
    front = pareto_mask(-x if higher_is_better else x, y)
    ax.scatter(x[~front], y[~front], color="tab:gray", label="dominated", zorder=2)
    ax.scatter(x[front], y[front], color="tab:orange", label="Pareto front", zorder=3)
    order = np.argsort(x[front])
    ax.plot(x[front][order], y[front][order], color="tab:orange", alpha=0.5)
    spread = size == "latency_ms" and np.isfinite(q25).any()
    if spread:  # the timing's interquartile range, so overlapping latencies read as a tie
        ax.errorbar(
            x,
            y,
            xerr=np.vstack([np.clip(x - q25, 0, None), np.clip(q75 - x, 0, None)]),
            fmt="none",
            ecolor="tab:gray",
            alpha=0.6,
            capsize=2,
            zorder=1,
        )
        if noisy.any():
            ax.scatter(
                x[noisy],
                y[noisy],
                s=160,
                facecolors="none",
                edgecolors="tab:red",
                zorder=4,
                label=f"noisy timing (IQR > {NOISY_SPREAD:.0%} of median)",
            )
    if len(x) and x.min() > 0 and x.max() / x.min() > 10:
        ax.set_xscale("log")
    ax.set_xlabel(metric_label(size) + (" (log)" if ax.get_xscale() == "log" else ""))
    _format_axis(ax.xaxis, size)
    ax.set_ylabel(metric_label("accuracy"))
    ax.margins(x=0.12, y=0.1)  # room for the run labels at the edges
    ax.set_title(
        f"Accuracy vs {_short(size)}{', IQR bars' if spread else ''} — {_dataset(df)}\nmeasured on {device_label(df)}",
        fontsize=10,
    )
    ax.legend(loc="best", fontsize=8)
    place_labels(ax, x, y, labels)
    return fig


@_themed
def metric_chart(df: pd.DataFrame, metrics: Sequence[str] = ("train_accuracy", "accuracy"), ax=None) -> Figure:
    """Grouped bars: for each run, one bar per metric (same unit), e.g. train vs test accuracy to
    show the generalisation gap.

    Example:
        >>> df = pd.DataFrame({"name": ["a", "b"], "run_id": ["1", "2"], "train_accuracy": [1.0, 0.9],
        ...                    "accuracy": [0.9, 0.88], "train_device": ["cpu"] * 2})
        >>> len(metric_chart(df).axes[0].patches)
        4
    """
    fig, ax = _figure(ax)
    runs = run_labels(df)
    width = 0.8 / len(metrics)
    for i, m in enumerate(metrics):
        bars = ax.bar(np.arange(len(runs)) + i * width, _scaled(df[m], m), width, label=_short(m))
        ax.bar_label(bars, fmt="%.1f", fontsize=7, padding=1)
    ax.set_xticks(np.arange(len(runs)) + width * (len(metrics) - 1) / 2, runs, rotation=30, ha="right")
    values = np.concatenate([_scaled(df[m], m) for m in metrics])
    values = values[np.isfinite(values)]
    if len(values) and not any(_zero_based(m) for m in metrics) and values.min() > 0:
        # Accuracies cluster near the top: an axis from 0 hides a one-point gap. Zoom, and the bar labels keep
        # the values.
        low, high = values.min(), values.max()
        pad = max(1.0, 0.25 * (high - low))
        ax.set_ylim(max(0.0, low - 2 * pad), high + pad)
    elif len(values) and values.min() < 0:
        ax.axhline(0, color="gray", linewidth=0.8)
    units = {metric_label(m)[len(_short(m)) :] for m in metrics}
    ax.set_ylabel(" / ".join(_short(m) for m in metrics) + (units.pop() if len(units) == 1 else ""))
    where = device_label(df) if any(_inference(m) for m in metrics) else train_label(df)
    ax.set_title(f"{', '.join(_short(m) for m in metrics)} per run — {_dataset(df)}, {where}", fontsize=10)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig


@_themed
def sweep_chart(
    df: pd.DataFrame, metric: str = "accuracy", x: str = "sweep_value", by: str | None = None, ax=None
) -> Figure:
    """``metric`` against one knob, from ``workbench.sweep`` output; one line per value of ``by``.

    Numeric knobs get a line (log axis when they span more than 10x); named ones (optimizers,
    schedules, selection strategies) unconnected points, since nothing lies between two names.

    Example:
        >>> df = pd.DataFrame({"sweep_field": ["model.width"] * 2, "sweep_value": [0.5, 1.0],
        ...                    "accuracy": [0.8, 0.9], "measure_device_name": ["Xeon"] * 2})
        >>> sweep_chart(df).axes[0].get_xlabel()
        'model.width'
    """
    fig, ax = _figure(ax)
    field = str(df["sweep_field"].iloc[0]) if x == "sweep_value" and "sweep_field" in df else x
    values = df[x].tolist()
    numeric = all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in values)
    categories = list(dict.fromkeys(map(str, values)))
    for key, part in df.groupby(by, sort=False) if by else [(None, df)]:
        xs = part[x].astype(float).to_numpy() if numeric else np.array([categories.index(str(v)) for v in part[x]])
        order = np.argsort(xs)
        ax.plot(
            xs[order],
            _scaled(part[metric], metric)[order],
            marker="o",
            ms=5 if numeric else 8,
            linestyle="-" if numeric else "none",
            label=None if by is None else f"{by}={key}",
        )
    if numeric:
        xs = np.unique(np.asarray(values, float))
        if xs.min() > 0 and xs.max() / xs.min() > 10:
            ax.set_xscale("log")
        if len(xs) <= 12:  # a tick at each swept value reads better than 2x10^1
            ax.set_xticks(xs, [f"{v:g}" for v in xs])
            ax.xaxis.set_minor_locator(NullLocator())
    else:
        ax.set_xticks(range(len(categories)), categories, rotation=20)
    ax.set_xlabel(field + (" (log)" if ax.get_xscale() == "log" else ""))
    ax.set_ylabel(metric_label(metric))
    _format_axis(ax.yaxis, metric)
    if _zero_based(metric):
        ax.set_ylim(bottom=0)
    where = f"measured on {device_label(df)}" if _inference(metric) else train_label(df)
    ax.set_title(f"{_short(metric)} vs {field} — {_dataset(df)}\n{where}", fontsize=10)
    if by:
        ax.legend(fontsize=8)
    return fig
