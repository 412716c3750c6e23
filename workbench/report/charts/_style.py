"""What every chart shares: metric labels and units from the results schema, the device and training
labels of titles, themes, label placement, log axes and new figures."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import EngFormatter, FuncFormatter

from ...measure.bench import NOISY_SPREAD
from .. import METRICS

THEMES = {"dark": "dark_background", "light": "default"}


def metric_label(metric: str) -> str:
    """Axis label with unit for a metric column, from the results schema (the column name when unknown).

    Example:
        >>> metric_label("size_bytes")
        'model size on disk (KiB)'
    """
    return METRICS[metric].axis_label if metric in METRICS else metric.replace("_", " ")


def _short(metric: str) -> str:
    return METRICS[metric].label if metric in METRICS else metric.replace("_", " ")


def _format_axis(axis, metric: str) -> None:
    if metric in METRICS and METRICS[metric].count:
        axis.set_major_formatter(EngFormatter(sep=""))


def _scaled(values: Any, metric: str) -> np.ndarray:
    scale = METRICS[metric].scale if metric in METRICS else 1
    return pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(float) * scale


def _zero_based(metric: str) -> bool:
    """Quantities read as ratios (times, sizes, speeds) get an axis from 0, so 201 vs 203 images/s looks
    like the 1% it is; accuracies and losses are zoomed to their range, so a one-point gap shows."""
    return metric in METRICS and METRICS[metric].unit not in ("%", "percentage points", "cross-entropy", "")


NOISY_NOTE = f"hatched: noisy (interquartile range > {NOISY_SPREAD:.0%} of the median; rerun on a quiet machine)"


def place_labels(ax, xs: Sequence[float], ys: Sequence[float], labels: Sequence[str], fontsize: Any = 8) -> list:
    """Label points so no two labels overlap: points at the same place share one label, and each label
    takes the first of several offsets around its point that stays inside the axes and collides with
    no label placed before. Call it last, once the axes' limits are final.

    Example:
        >>> fig, ax = plt.subplots()
        >>> texts = place_labels(ax, [1, 1, 1.001], [0.5, 0.5, 0.5], ["a", "b", "c"])
        >>> [t.get_text() for t in texts]
        ['a, b', 'c']
        >>> bool(texts[0].get_window_extent().overlaps(texts[1].get_window_extent()))
        False
    """
    groups: dict[tuple[float, float], list[str]] = {}
    for x, y, label in zip(xs, ys, labels):
        groups.setdefault((float(x), float(y)), []).append(str(label))
    offsets = [
        (5, 3),
        (5, -3),
        (-5, 3),
        (-5, -3),
        (8, 14),
        (-8, 14),
        (8, -14),
        (-8, -14),
        (12, 26),
        (-12, 26),
        (12, -26),
        (-12, -26),
    ]
    placed, texts = [], []
    ax.figure.draw_without_rendering()  # let the layout engine size the axes first: their frame is the bound
    frame = ax.get_window_extent()
    for (x, y), names in groups.items():
        for i, (dx, dy) in enumerate(offsets):
            text = ax.annotate(
                ", ".join(names),
                (x, y),
                textcoords="offset points",
                xytext=(dx, dy),
                fontsize=fontsize,
                ha="left" if dx > 0 else "right",
                va="bottom" if dy > 0 else "top",
                arrowprops={"arrowstyle": "-", "lw": 0.5, "color": "gray", "shrinkA": 0, "shrinkB": 3},
            )
            box = text.get_window_extent()  # the figure's own renderer, whatever its canvas
            inside = frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
            if (inside and not any(box.overlaps(b) for b in placed)) or i == len(offsets) - 1:
                break
            text.remove()
        placed.append(box)
        texts.append(text)
    return texts


def _eager_quartiles(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row: the q25 and q75 of the eager latency at the smallest batch (what ``latency_ms`` is),
    and whether that timing was noisy; NaN/False where a row has no such record."""
    q25, q75, noisy = [], [], []
    for recs in df["benchmarks"] if "benchmarks" in df else [[]] * len(df):
        eager = [r for r in recs or [] if r.get("mode", "eager") == "eager" and r.get("latency_ms") is not None]
        r = min(eager, key=lambda r: r["batch_size"]) if eager else {}
        q25.append(r.get("latency_ms_q25", np.nan))
        q75.append(r.get("latency_ms_q75", np.nan))
        noisy.append(bool(r.get("noisy", False)))
    return np.asarray(q25, float), np.asarray(q75, float), np.asarray(noisy, bool)


def _inference(metric: str) -> bool:
    """Timed by the inference benchmark, so a chart names the measuring device (else the training one)."""
    return metric in METRICS and METRICS[metric].source == "inference"


def _themed(fn):
    """Adds ``theme=None`` to a chart function: ``"dark"``, ``"light"`` or any matplotlib style name."""

    @functools.wraps(fn)
    def wrapper(*args, theme: str | None = None, **kwargs):
        with plt.style.context(THEMES.get(theme, theme) if theme else {}):
            return fn(*args, **kwargs)

    return wrapper


def _one_or_mixed(values: Iterable, what: str) -> str:
    values = sorted({str(v) for v in values if v is not None and not (isinstance(v, float) and np.isnan(v))})
    if not values:
        return f"unknown {what}"
    return values[0] if len(values) == 1 else f"MIXED {what}s: {' / '.join(values)}"


def device_label(df: pd.DataFrame, column: str = "measure_device_name") -> str:
    """The device the rows were measured on, or a warning that they mix devices.

    Example:
        >>> device_label(pd.DataFrame({"measure_device_name": ["Xeon", "Xeon"], "measure_dtype": ["float32"] * 2}))
        'Xeon, float32'
        >>> device_label(pd.DataFrame({"measure_device_name": ["Xeon", "H100"]}))
        'MIXED devices: H100 / Xeon'
    """
    where = _one_or_mixed(df.get(column, []), "device")
    dtypes = sorted(df["measure_dtype"].dropna().astype(str).unique()) if "measure_dtype" in df else []
    return where + (f", {'/'.join(dtypes)}" if dtypes else "")


def train_label(df: pd.DataFrame) -> str:
    """Where and at what precision the rows were trained, or a warning that they mix devices. The
    device's name comes from the benchmark when it ran on the training device.

    Example:
        >>> train_label(pd.DataFrame({"train_device": ["cpu"], "hardware.precision": ["bf16"]}))
        'trained on cpu, bf16'
        >>> train_label(pd.DataFrame({"train_device": ["cuda:0"], "measure_device": ["cuda:0"],
        ...                           "measure_device_name": ["NVIDIA H100"]}))
        'trained on NVIDIA H100 (cuda:0)'
    """
    if "train_device" not in df:
        return "trained on unknown device"
    devices = df["train_device"].astype(str)
    if {"measure_device", "measure_device_name"} <= set(df):
        same = df["measure_device"].astype(str) == devices
        devices = devices.where(~same, df["measure_device_name"].astype(str) + " (" + devices + ")")
    precision = (
        "/".join(sorted(df["hardware.precision"].dropna().astype(str).unique())) if "hardware.precision" in df else ""
    )
    return f"trained on {_one_or_mixed(devices, 'device')}" + (f", {precision}" if precision else "")


def _dataset(df: pd.DataFrame) -> str:
    return _one_or_mixed(df["data.dataset"], "dataset") if "data.dataset" in df else ""


def pareto_mask(cost: Sequence[float], value: Sequence[float]) -> np.ndarray:
    """True for points no other point beats on both lower cost and higher value.

    Example:
        >>> pareto_mask([1, 2, 3], [0.5, 0.4, 0.9]).tolist()
        [True, False, True]
    """
    cost, value = np.asarray(cost, float), np.asarray(value, float)
    mask = np.ones(len(cost), bool)
    for i in range(len(cost)):
        better = (cost <= cost[i]) & (value >= value[i]) & ((cost < cost[i]) | (value > value[i]))
        mask[i] = not better.any()
    return mask


def _log_axis(axis) -> None:
    """A log scale whose ticks read as plain numbers (0.3, 1, 6), not as powers of ten."""
    axis.axes.set_yscale("log") if axis is axis.axes.yaxis else axis.axes.set_xscale("log")
    plain = FuncFormatter(lambda v, _: f"{v:g}")
    axis.set_major_formatter(plain)
    axis.set_minor_formatter(
        FuncFormatter(lambda v, _: f"{v:g}" if v > 0 and round(v / 10 ** np.floor(np.log10(v))) in (2, 5) else "")
    )


def _figure(ax=None):
    """A new figure, or ``ax``'s. Made through pyplot so notebooks get their inline PNG display, then
    closed at once so the inline backend does not show it a second time at the end of the cell."""
    if ax is not None:
        return ax.figure, ax
    fig, ax = plt.subplots(figsize=(7, 4.2), layout="constrained")
    plt.close(fig)
    ax.grid(alpha=0.3)
    return fig, ax
