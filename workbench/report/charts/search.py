"""Charts of model search: a study's trials and Pareto front, strategies compared by hypervolume."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .. import METRICS
from ._style import (
    _dataset,
    _format_axis,
    _one_or_mixed,
    _scaled,
    _short,
    _themed,
    device_label,
    metric_label,
    place_labels,
)


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
