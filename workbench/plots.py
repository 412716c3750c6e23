"""Every chart: plain functions from a results DataFrame (or a ledger, or a sensitivity table) to a
matplotlib Figure.

Axes carry the labels and units of the results schema (``workbench.results.METRICS``); titles name the device (and dtype) the numbers were measured on, and a chart that
would mix devices says so. Every chart takes ``theme="dark"`` (or any matplotlib style name) for dark
notebooks; the default style reads on light and dark themes alike because it paints its own
background.

Example:
    >>> df = pd.DataFrame({"name": ["a", "b"], "run_id": ["1", "2"], "accuracy": [0.9, 0.8],
    ...                    "size_bytes": [4096, 2048], "measure_device_name": ["Xeon"] * 2})
    >>> fig = accuracy_vs_size(df)
    >>> fig.axes[0].get_ylabel()
    'test accuracy (%)'
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import EngFormatter, FuncFormatter, MaxNLocator, NullLocator

from .measure.bench import NOISY_SPREAD
from .results import METRICS, latency_key, run_labels
from .train import lr_curve

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
    where = _one_or_mixed(df[column] if column in df else [], "device")
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


@_themed
def accuracy_vs_size(df: pd.DataFrame, size: str = "size_bytes", ax=None) -> Figure:
    """Test accuracy against a cost (``size_bytes``, ``params``, ``flops``, ``latency_ms``...), the
    Pareto front (no other run is both cheaper and more accurate) highlighted. For a metric where
    higher is better (``throughput_ips``) the front runs the other way, as the results schema says.

    Example:
        >>> df = pd.DataFrame({"name": list("abc"), "run_id": list("123"), "accuracy": [0.9, 0.8, 0.95],
        ...                    "params": [100, 200, 400]})
        >>> fig = accuracy_vs_size(df, size="params")
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
def pareto_chart(trials: pd.DataFrame, objectives: Sequence[str], front: pd.DataFrame | None = None) -> Figure:
    """A search's trials against its objectives: the first objective (y) against each other one (x),
    one panel each; every trial faint, the front (non-dominated on all the objectives at once, so a
    point can look dominated in one panel's two dimensions) highlighted, the baseline marked.

    Example:
        >>> t = pd.DataFrame({"trial": [0, 1, 2], "trial_state": ["COMPLETE"] * 3, "baseline": [True, False, False],
        ...                   "accuracy": [0.9, 0.95, 0.8], "size_bytes": [4000, 3000, 5000]})
        >>> fig = pareto_chart(t, ["accuracy", "size_bytes"], front=t.iloc[[1]])
        >>> [c.get_label() for c in fig.axes[0].collections]
        ['trials', 'Pareto front', 'baseline']
    """
    y_metric, others = objectives[0], list(objectives[1:]) or ["trial"]
    done = trials[trials["trial_state"] == "COMPLETE"] if len(trials) else trials
    fig, axes = plt.subplots(1, len(others), figsize=(6.2 * len(others), 4.4), layout="constrained", squeeze=False)
    plt.close(fig)
    front = done.iloc[:0] if front is None else front
    for ax, x_metric in zip(axes[0], others):
        ax.grid(alpha=0.3)
        ax.scatter(
            _scaled(done[x_metric], x_metric),
            _scaled(done[y_metric], y_metric),
            color="tab:gray",
            alpha=0.35,
            label="trials",
            zorder=2,
        )
        fx, fy = _scaled(front[x_metric], x_metric), _scaled(front[y_metric], y_metric)
        ax.scatter(fx, fy, color="tab:orange", edgecolors="black", linewidths=0.5, s=60, label="Pareto front", zorder=3)
        base = done[done["baseline"].astype(bool)]
        ax.scatter(
            _scaled(base[x_metric], x_metric),
            _scaled(base[y_metric], y_metric),
            marker="*",
            s=260,
            color="tab:blue",
            edgecolors="black",
            label="baseline",
            zorder=4,
        )
        if "trial" in front:
            place_labels(ax, fx, fy, [f"#{n}" for n in front["trial"]])
        ax.set_xlabel(metric_label(x_metric))
        ax.set_ylabel(metric_label(y_metric))
        _format_axis(ax.xaxis, x_metric)
        ax.legend(loc="best", fontsize=8)
    states = trials["trial_state"].value_counts().to_dict() if len(trials) else {}
    counts = ", ".join(f"{n} {state.lower()}" for state, n in states.items())
    strategy = _one_or_mixed(trials["strategy"], "strategy") if "strategy" in trials else "search"
    fig.suptitle(
        f"{strategy} search: {counts or 'no trials'} — {_dataset(done)}; measured on {device_label(done)}", fontsize=10
    )
    return fig


@_themed
def strategy_comparison_chart(comparison) -> Figure:
    """Which strategy wins on this problem: hypervolume after each trial (mean over seeds, band from
    the lowest to the highest seed) and the best first objective found per seed."""
    fig, (hv_ax, best_ax) = plt.subplots(1, 2, figsize=(12, 4.4), layout="constrained")
    plt.close(fig)
    m = comparison.objectives[0]
    for name, rows in comparison.history.groupby("strategy", sort=False):
        per_trial = rows.groupby("trial")["hypervolume"]
        line = hv_ax.plot(per_trial.mean().index, per_trial.mean(), marker="o", ms=3, label=name)[0]
        hv_ax.fill_between(per_trial.min().index, per_trial.min(), per_trial.max(), color=line.get_color(), alpha=0.2)
    ref = ", ".join(
        f"{_short(k)} {_scaled(pd.Series([v]), k)[0]:.4g} {METRICS[k].unit.split(',')[0] if k in METRICS else ''}"
        for k, v in comparison.reference.items()
    )
    hv_ax.set(
        xlabel="trials run",
        ylabel="hypervolume (share of the box, 0-1)",
        title=f"Dominated hypervolume; reference point: {ref}",
    )
    hv_ax.title.set_fontsize(9)
    hv_ax.grid(alpha=0.3)
    hv_ax.legend(fontsize=8)
    names = list(dict.fromkeys(comparison.runs["strategy"]))
    for i, name in enumerate(names):
        values = _scaled(comparison.runs.loc[comparison.runs["strategy"] == name, f"best_{m}"], m)
        best_ax.scatter(np.full(len(values), i), values, s=40, zorder=3)
        best_ax.hlines(np.median(values), i - 0.25, i + 0.25, color="black")
    best_ax.set_xticks(range(len(names)), names)
    best_ax.set(xlabel="strategy (one dot per seed, line at the median)", ylabel=f"best {metric_label(m)}")
    best_ax.grid(alpha=0.3)
    searches = list(comparison.searches.values())
    trials = pd.concat([s.trials for s in searches], ignore_index=True) if searches else pd.DataFrame()
    fig.suptitle(
        f"Search strategies on the same budget — {_dataset(trials)}; measured on {device_label(trials)}", fontsize=10
    )
    return fig


def _benchmark_frame(df: pd.DataFrame) -> pd.DataFrame:
    records = [dict(rec, run=label) for label, recs in zip(run_labels(df), df["benchmarks"]) for rec in (recs or [])]
    return pd.DataFrame(records)


@_themed
def latency_bars(df: pd.DataFrame, metric: str = "latency_ms", ax=None) -> Figure:
    """Per run, bars of median latency (or ``metric="throughput_ips"``) at each measured batch size and
    execution mode, from the ``benchmarks`` records; latency bars carry the interquartile range.

    Example:
        >>> rec = {"batch_size": 1, "mode": "eager", "latency_ms": 2.0, "latency_ms_q25": 1.9, "latency_ms_q75": 2.2,
        ...        "throughput_ips": 500.0, "device_name": "Xeon", "dtype": "float32"}
        >>> df = pd.DataFrame({"name": ["a"], "run_id": ["1"], "benchmarks": [[rec]]})
        >>> latency_bars(df).axes[0].get_title()
        'Inference latency per batch on Xeon, float32'
    """
    fig, ax = _figure(ax)
    bench = _benchmark_frame(df)
    if bench.empty:
        ax.text(0.5, 0.5, "no latency measured", ha="center", transform=ax.transAxes)
        return fig
    bench["series"] = bench["mode"] + " bs" + bench["batch_size"].astype(str)
    series = list(dict.fromkeys(bench["series"]))
    runs = list(dict.fromkeys(bench["run"]))
    width = 0.8 / len(series)
    for i, s in enumerate(series):
        part = bench[bench["series"] == s].groupby("run").first().reindex(runs)
        err = None
        if metric == "latency_ms":
            err = np.vstack([part["latency_ms"] - part["latency_ms_q25"], part["latency_ms_q75"] - part["latency_ms"]])
        bars = ax.bar(np.arange(len(runs)) + i * width, part[metric], width, yerr=err, capsize=2, label=s)
        noisy = part["noisy"].fillna(False).astype(bool) if "noisy" in part else pd.Series(False, index=part.index)
        for bar, is_noisy in zip(bars, noisy):
            if is_noisy:
                bar.set_hatch("///")
                bar.set_alpha(0.5)
    ax.set_xticks(np.arange(len(runs)) + width * (len(series) - 1) / 2, runs, rotation=30, ha="right")
    values = bench[metric][bench[metric] > 0]
    if (
        len(values) and values.max() / values.min() > 20
    ):  # batch 1 and batch 256 bars on one linear axis: one would vanish
        _log_axis(ax.yaxis)
    ax.set_ylabel(metric_label(metric) + (", IQR bars" if metric == "latency_ms" else ""))
    what = "Inference latency per batch" if metric == "latency_ms" else "Inference throughput"
    dtypes = "/".join(sorted(bench["dtype"].astype(str).unique())) if "dtype" in bench else ""
    ax.set_title(
        f"{what} on {_one_or_mixed(bench['device_name'], 'device')}"
        + (f", {dtypes}" if dtypes else "")
        + (" (log scale)" if ax.get_yscale() == "log" else "")
    )
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    if "noisy" in bench and bench["noisy"].fillna(False).astype(bool).any():
        ax.set_xlabel(NOISY_NOTE, fontsize=8, color="tab:red")
    return fig


@_themed
def latency_vs_batch(records: pd.DataFrame | Sequence[dict], by: Sequence[str] | None = None) -> Figure:
    """Latency (left, with IQR band) and throughput (right) against batch size, from ``benchmark``
    records; one line per combination of the ``by`` columns (default: whichever of name, model,
    mode and dtype are present).

    Example:
        >>> recs = [{"batch_size": b, "latency_ms": b / 10, "latency_ms_q25": b / 11, "latency_ms_q75": b / 9,
        ...          "throughput_ips": 1e4, "device_name": "Xeon", "dtype": "float32", "mode": "eager"} for b in (1, 8, 64)]
        >>> fig = latency_vs_batch(recs)
        >>> [a.get_xlabel() for a in fig.axes]
        ['batch size (log)', 'batch size (log)']
    """
    bench = pd.DataFrame(records)
    if "latency_ms" in bench:  # combinations that could not run carry a reason, not a number
        bench = bench[bench["latency_ms"].notna()]
    fig, (lat, thr) = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
    plt.close(fig)
    by = [c for c in (by or ("name", "model", "mode", "dtype")) if c in bench]
    groups = bench.groupby(by, sort=False) if by else [((), bench)]
    for key, part in groups:
        part = part.sort_values("batch_size")
        label = " ".join(map(str, key if isinstance(key, tuple) else (key,))) or None
        (line,) = lat.plot(part["batch_size"], part["latency_ms"], marker="o", ms=3, label=label)
        if {"latency_ms_q25", "latency_ms_q75"} <= set(part):
            lat.fill_between(
                part["batch_size"], part["latency_ms_q25"], part["latency_ms_q75"], color=line.get_color(), alpha=0.2
            )
        thr.plot(part["batch_size"], part["throughput_ips"], marker="o", ms=3, label=label)
    for ax in (lat, thr):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("batch size (log)")
        ax.grid(alpha=0.3)
    lat.set_yscale("log")
    lat.set_ylabel(metric_label("latency_ms") + ", log; band = IQR")
    thr.set_ylabel(metric_label("throughput_ips"))
    if by:
        lat.legend(fontsize=8)
    device = _one_or_mixed(bench["device_name"] if "device_name" in bench else [], "device")
    dtypes = "/".join(sorted(bench["dtype"].astype(str).unique())) if "dtype" in bench else ""
    fig.suptitle(f"Latency and throughput vs batch size on {device}" + (f", {dtypes}" if dtypes else ""))
    return fig


@_themed
def runtime_chart(df: pd.DataFrame) -> Figure:
    """Latency per runtime (bars, IQR whiskers, log axis), one panel per batch size, from
    ``deploy.runtime_comparison``; one bar colour per model when several were compared. Runtimes that
    were skipped are listed under the chart with their reason; each panel names its device(s).

    Example:
        >>> rows = [{"model": "cnn", "runtime": r, "device": "cpu", "device_name": "EPYC", "batch_size": b,
        ...          "latency_ms": ms * b, "latency_ms_q25": ms * b * 0.9, "latency_ms_q75": ms * b * 1.1, "skipped": None}
        ...         for r, ms in (("PyTorch eager", 0.4), ("ONNX Runtime CPU (1 thread)", 0.1)) for b in (1, 64)]
        >>> rows.append({"model": "cnn", "runtime": "TensorRT", "device": "cuda", "batch_size": 1, "latency_ms": None,
        ...              "skipped": "no CUDA GPU on this machine"})
        >>> fig = runtime_chart(pd.DataFrame(rows))
        >>> [a.get_title() for a in fig.axes], fig.axes[0].get_ylabel()
        (['batch 1 on EPYC', 'batch 64 on EPYC'], 'latency per batch (ms), log; whiskers = IQR')
    """
    ran = df[pd.to_numeric(df["latency_ms"], errors="coerce").notna()]
    skipped = df[pd.to_numeric(df["latency_ms"], errors="coerce").isna()]
    sizes = sorted(ran["batch_size"].unique())
    fig, axes = plt.subplots(
        1, max(1, len(sizes)), figsize=(5.5 * max(1, len(sizes)), 4.6), layout="constrained", squeeze=False
    )
    plt.close(fig)
    models = list(dict.fromkeys(ran["model"])) if "model" in ran else [""]
    for ax, bs in zip(axes[0], sizes):
        part = ran[ran["batch_size"] == bs]
        runtimes = list(dict.fromkeys(part["runtime"] + " · " + part["device"]))
        width = 0.8 / len(models)
        for k, model in enumerate(models):
            rows = part[part["model"] == model] if "model" in part else part
            at = {f"{r.runtime} · {r.device}": r for r in rows.itertuples()}
            xs = [i + (k - (len(models) - 1) / 2) * width for i, key in enumerate(runtimes) if key in at]
            cells = [at[key] for key in runtimes if key in at]
            ms = np.array([c.latency_ms for c in cells])
            q25 = np.array([getattr(c, "latency_ms_q25", c.latency_ms) for c in cells])
            q75 = np.array([getattr(c, "latency_ms_q75", c.latency_ms) for c in cells])
            ax.bar(xs, ms, width=width, label=model, yerr=[ms - q25, q75 - ms], capsize=3)
        ax.set_xticks(
            range(len(runtimes)), [r.replace(" · ", "\n") for r in runtimes], rotation=30, ha="right", fontsize=8
        )
        _log_axis(ax.yaxis)
        ax.set_ylabel("latency per batch (ms), log; whiskers = IQR")
        ax.set_title(f"batch {bs} on {_one_or_mixed(part.get('device_name', []), 'device')}")
        ax.grid(alpha=0.3, axis="y")
    if len(models) > 1:
        axes[0][0].legend(fontsize=8)
    if len(skipped):
        notes = sorted({f"{r.runtime} ({r.device}): {r.skipped}" for r in skipped.itertuples()})
        fig.text(0.01, -0.02, "not run: " + "; ".join(notes), fontsize=7, va="top", wrap=True)
    fig.suptitle("The same model in each runtime, on the same test images")
    return fig


@_themed
def serving_chart(reports: Sequence[dict]) -> Figure:
    """Served latency percentiles (p50/p95/p99) and throughput per concurrency level, from ``load_test`` reports.

    Example:
        >>> reps = [{"concurrency": c, "p50_ms": 2.0 * c, "p95_ms": 3.0 * c, "p99_ms": 4.0 * c, "throughput_rps": 400 / c ** 0.5,
        ...          "batch_size": 1} for c in (1, 4)]
        >>> fig = serving_chart(reps)
        >>> [a.get_xlabel() for a in fig.axes]
        ['requests in flight (concurrency)', 'requests in flight (concurrency)']
    """
    df = pd.DataFrame(list(reports)).sort_values("concurrency")
    fig, (lat, thr) = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
    plt.close(fig)
    for q in ("p50", "p95", "p99"):
        lat.plot(df["concurrency"], df[f"{q}_ms"], marker="o", label=q)
    thr.plot(df["concurrency"], df["throughput_rps"], marker="o")
    lat.set_ylabel("request latency (ms)")
    thr.set_ylabel("throughput (requests/s)")
    for ax in (lat, thr):
        ax.set_xlabel("requests in flight (concurrency)")
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    lat.legend(fontsize=8)
    batch = "/".join(str(b) for b in sorted(df["batch_size"].unique())) if "batch_size" in df else "?"
    where = df["server"].iloc[0] if "server" in df else "this machine"
    fig.suptitle(f"Served over HTTP on {where} (client on the same machine), batch {batch} per request")
    return fig


def profile_chart(df: pd.DataFrame, ax=None) -> Figure:
    """``workbench.profile``'s phases as bars of their share of a training step, with milliseconds on the
    bars; the title names the device and the step time, the sentence under it the bottleneck.

    Example:
        >>> df = pd.DataFrame({"phase": ["data", "forward"], "ms_per_step": [1.0, 3.0], "share": [0.25, 0.75]})
        >>> df.attrs.update(device_name="Xeon", step_ms=4.0, batch_size=64, bottleneck="compute: 75% ...")
        >>> profile_chart(df).axes[0].get_xlabel()
        'share of the training step (%)'
    """
    fig, ax = _figure(ax)
    bars = ax.barh(df["phase"], 100 * df["share"], color="tab:blue")
    ax.bar_label(bars, [f"{ms:.2f} ms" for ms in df["ms_per_step"]], fontsize=8, padding=2)
    ax.invert_yaxis()  # in the order a step runs
    ax.set_xlim(0, 100 * max(df["share"].max() * 1.25, 0.1))
    ax.set_xlabel("share of the training step (%)")
    a = df.attrs
    ax.set_title(
        f"Where a training step goes — {a.get('device_name', 'device?')}, batch {a.get('batch_size', '?')}, "
        f"{a.get('step_ms', float('nan')):.1f} ms a step\n{a.get('bottleneck', '')}",
        fontsize=9,
        wrap=True,
    )
    return fig


def inference_sweep_chart(df: pd.DataFrame) -> Figure:
    """``inference_sweep``'s rows as latency (with its IQR band) and throughput against batch size, one
    line per precision and mode; the device in the title, skipped combinations left out (and named).

    Example:
        >>> recs = [{"precision": "fp32", "mode": m, "batch_size": b, "latency_ms": b / 10, "latency_ms_q25": b / 11,
        ...          "latency_ms_q75": b / 9, "throughput_ips": 1e4, "device_name": "Xeon", "dtype": "float32"}
        ...         for m in ("eager", "compiled") for b in (1, 8)]
        >>> [line.get_label() for line in inference_sweep_chart(pd.DataFrame(recs)).axes[0].lines]
        ['fp32 eager', 'fp32 compiled']
    """
    fig = latency_vs_batch(
        df.drop(columns=["dtype"], errors="ignore"), by=[c for c in ("run", "precision", "mode") if c in df]
    )
    if "skipped" in df and df["skipped"].notna().any():
        missing = sorted({f"{p} {m}" for p, m in df.loc[df["skipped"].notna(), ["precision", "mode"]].values})
        fig.supxlabel(f"not run here: {', '.join(missing)} (see the rows' skipped reasons)", fontsize=8)
    return fig


@_themed
def history_curves(df: pd.DataFrame, metric: str = "test_accuracy", ax=None, x: str = "epoch") -> Figure:
    """One training curve per run, overlaid: ``metric`` from each run's history, per epoch or, with
    ``x="elapsed_s"``, against training seconds (time to accuracy: a faster recipe's curve rises
    sooner even when it needs as many epochs, and a compile's cost shows as a late start).

    Example:
        >>> df = pd.DataFrame({"name": ["a"], "run_id": ["1"], "train_device": ["cpu"],
        ...                    "history": [[{"epoch": 1, "test_accuracy": 0.5, "elapsed_s": 2.0},
        ...                                 {"epoch": 2, "test_accuracy": 0.7, "elapsed_s": 3.5}]]})
        >>> history_curves(df).axes[0].get_ylabel(), history_curves(df, x="elapsed_s").axes[0].get_xlabel()
        ('test accuracy (%)', 'training time so far (s)')
    """
    if x not in ("epoch", "elapsed_s"):
        raise ValueError(f"history_curves x must be 'epoch' or 'elapsed_s' (got {x!r})")
    fig, ax = _figure(ax)
    for label, history in zip(run_labels(df), df["history"]):
        h = pd.DataFrame(history or [])
        if metric in h and x in h:
            ax.plot(h[x], _scaled(h[metric], metric), marker="o", ms=3, label=label)
    if x == "epoch":
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    else:
        ax.set_xlabel(metric_label("elapsed_s"))
        ax.set_xlim(left=0)
    ax.set_ylabel(metric_label(metric))
    per = "per epoch" if x == "epoch" else "against training time"
    ax.set_title(f"{_short(metric)} {per} — {_dataset(df)}, {train_label(df)}", fontsize=10)
    if ax.get_legend_handles_labels()[1]:
        ax.legend(fontsize=8)
    return fig


@_themed
def lr_schedules(df: pd.DataFrame, ax=None) -> Figure:
    """The learning rate at every optimizer step of each run (warm-up included), from its train
    section and its recorded steps per epoch: the same function the training's scheduler used.

    Example:
        >>> df = pd.DataFrame({"name": ["cosine"], "run_id": ["1"], "train.lr": [0.1], "train.schedule": ["cosine"],
        ...                    "train.warmup_epochs": [1.0], "train.epochs": [3], "steps_per_epoch": [10], "train_device": ["cpu"]})
        >>> line = lr_schedules(df).axes[0].lines[0]
        >>> len(line.get_xdata()), round(float(max(line.get_ydata())), 3)
        (30, 0.1)
    """
    from types import SimpleNamespace

    fig, ax = _figure(ax)
    for label, (_, row) in zip(run_labels(df), df.iterrows()):
        steps = int(row["steps_per_epoch"])
        cfg = SimpleNamespace(
            lr=float(row["train.lr"]),
            schedule=row["train.schedule"],
            warmup_epochs=float(row["train.warmup_epochs"]),
            epochs=int(row["train.epochs"]),
        )
        lrs = lr_curve(cfg, steps)
        ax.plot(np.arange(1, len(lrs) + 1) / steps, lrs, label=label)
    ax.set_xlabel(f"epoch ({', '.join(sorted({str(int(v)) for v in df['steps_per_epoch']}))} optimizer steps each)")
    ax.set_ylabel(metric_label("lr"))
    ax.set_ylim(bottom=0)
    ax.set_title(f"Learning rate per optimizer step — {_dataset(df)}, {train_label(df)}", fontsize=10)
    ax.legend(fontsize=8)
    return fig


@_themed
def run_curves(history: Sequence[dict], title: str = "") -> Figure:
    """One run's loss (left) and accuracy (right) per epoch, train and test: the live training chart.

    Example:
        >>> h = [{"epoch": 1, "train_loss": 1.0, "test_loss": 0.9, "train_accuracy": 0.6, "test_accuracy": 0.7}]
        >>> [a.get_ylabel() for a in run_curves(h).axes]
        ['loss (cross-entropy)', 'accuracy (%)']
    """
    h = pd.DataFrame(list(history))
    fig, (loss, acc) = plt.subplots(1, 2, figsize=(8, 3), layout="constrained")
    plt.close(fig)
    for ax, metric in ((loss, "loss"), (acc, "accuracy")):
        for split in ("train", "test"):
            if f"{split}_{metric}" in h:
                ax.plot(h["epoch"], _scaled(h[f"{split}_{metric}"], f"{split}_{metric}"), marker="o", ms=3, label=split)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[1]:
            ax.legend(fontsize=8)
    loss.set_ylabel("loss (cross-entropy)")
    acc.set_ylabel("accuracy (%)")
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


@_themed
def sweep_lines(
    df: pd.DataFrame, metric: str = "accuracy", x: str = "sweep_value", by: str | None = None, ax=None
) -> Figure:
    """``metric`` against one knob, from ``workbench.sweep`` output; one line per value of ``by``.

    Numeric knobs get a line (log axis when they span more than 10x); named ones (optimizers,
    schedules, selection strategies) unconnected points, since nothing lies between two names.

    Example:
        >>> df = pd.DataFrame({"sweep_field": ["model.width"] * 2, "sweep_value": [0.5, 1.0],
        ...                    "accuracy": [0.8, 0.9], "measure_device_name": ["Xeon"] * 2})
        >>> sweep_lines(df).axes[0].get_xlabel()
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


@_themed
def metric_bars(df: pd.DataFrame, metrics: Sequence[str] = ("train_accuracy", "accuracy"), ax=None) -> Figure:
    """Grouped bars: for each run, one bar per metric (same unit), e.g. train vs test accuracy to
    show the generalisation gap.

    Example:
        >>> df = pd.DataFrame({"name": ["a", "b"], "run_id": ["1", "2"], "train_accuracy": [1.0, 0.9],
        ...                    "accuracy": [0.9, 0.88], "train_device": ["cpu"] * 2})
        >>> len(metric_bars(df).axes[0].patches)
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
        # Accuracies cluster near the top: an axis from 0 hides a one-point gap. Zoom, and the bar labels keep the values.
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
def ablation_chart(table: pd.DataFrame) -> Figure:
    """What each part of a recipe bought (``workbench.ablation``): test-accuracy points and training seconds
    saved, one bar per part; right of zero the part helped.

    Example:
        >>> table = pd.DataFrame({"part": ["muon", "tta"], "accuracy_bought": [6.0, 0.5], "seconds_bought": [-0.2, 0.0]})
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
    """The path a model took, step by step, from ``workbench.ledger`` (one row per step, in order): test
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
def plot_ledger_size_accuracy(table: pd.DataFrame) -> Figure:
    """Accuracy against saved size (KiB) for each row of ``workbench.ledger``, points labelled with the variant.

    Example:
        >>> df = pd.DataFrame({"variant": ["fp32", "int8"], "size_bytes": [4096, 1024], "accuracy": [0.97, 0.96]})
        >>> fig = plot_ledger_size_accuracy(df)
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
def plot_ledger_latency(table: pd.DataFrame) -> Figure:
    """Grouped bars of median latency from ``workbench.ledger``: one group per (device, mode, batch
    size), one bar per variant; the title names each device.

    Example:
        >>> df = pd.DataFrame({"variant": ["fp32", "int8"], "cpu/eager/bs1_ms": [2.0, 2.5], "cpu/compiled/bs1_ms": [1.0, 0.5]})
        >>> df.attrs["device_names"] = {"cpu": "AMD EPYC"}
        >>> fig = plot_ledger_latency(df)
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
def plot_sensitivity(df: pd.DataFrame) -> Figure:
    """Accuracy against the fraction of each layer pruned (``workbench.sensitivity``), one line per
    layer, the unpruned accuracy dashed.

    Example:
        >>> df = pd.DataFrame({"layer": ["a", "a"], "amount": [0.1, 0.9], "accuracy": [0.9, 0.5],
        ...                    "accuracy_drop": [0.0, 0.4], "params": [10, 2]})
        >>> plot_sensitivity(df).axes[0].get_xlabel()
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


@_themed
def pipeline_chart(df: pd.DataFrame) -> Figure:
    """``pipeline_demo``'s rows: the pipeline bubble against micro-batches per step (each stage's
    measured share, their mean, and GPipe's theory dashed), and beside it the step's time (median,
    p10-p90 bars) with each stage's compute in it; the title names the model, device and backend.

    Example:
        >>> df = pd.DataFrame({"microbatches": [1, 4], "bubble_share_stage0": [0.5, 0.3], "bubble_share_stage1": [0.55, 0.35],
        ...                    "bubble_share": [0.52, 0.32], "bubble_theory": [0.5, 0.2], "step_ms": [90.0, 110.0],
        ...                    "step_ms_p10": [85.0, 100.0], "step_ms_p90": [95.0, 120.0], "busy_ms_stage0": [45.0, 75.0],
        ...                    "busy_ms_stage1": [40.0, 70.0]})
        >>> df.attrs.update(model="cnn", batch_size=64, device="cpu", device_name="AMD EPYC", backend="gloo")
        >>> fig = pipeline_chart(df)
        >>> [(a.get_xlabel(), a.get_ylabel()) for a in fig.axes]
        [('micro-batches per step', 'bubble: share of the step a stage waits (%)'), ('micro-batches per step', 'time per training step (ms)')]
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
        f"{a.get('model', 'model')}, global batch {a.get('batch_size', '?')}: {a.get('device_name', 'unknown device')}, "
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
