"""Charts of training: accuracy and loss over epochs or seconds, learning-rate schedules, one live run."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ...train import lr_curve
from .. import run_labels
from ._style import (
    _dataset,
    _figure,
    _scaled,
    _short,
    _themed,
    metric_label,
    train_label,
)


@_themed
def history_chart(df: pd.DataFrame, metric: str = "test_accuracy", ax=None, x: str = "epoch") -> Figure:
    """One training curve per run, overlaid: ``metric`` from each run's history, per epoch or, with
    ``x="elapsed_s"``, against training seconds (time to accuracy: a faster recipe's curve rises
    sooner even when it needs as many epochs, and a compile's cost shows as a late start).

    Example:
        >>> df = pd.DataFrame({"name": ["a"], "run_id": ["1"], "train_device": ["cpu"],
        ...                    "history": [[{"epoch": 1, "test_accuracy": 0.5, "elapsed_s": 2.0},
        ...                                 {"epoch": 2, "test_accuracy": 0.7, "elapsed_s": 3.5}]]})
        >>> history_chart(df).axes[0].get_ylabel(), history_chart(df, x="elapsed_s").axes[0].get_xlabel()
        ('test accuracy (%)', 'training time so far (s)')
    """
    if x not in ("epoch", "elapsed_s"):
        raise ValueError(f"history_chart x must be 'epoch' or 'elapsed_s' (got {x!r})")
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
def lr_schedule_chart(df: pd.DataFrame, ax=None) -> Figure:
    """The learning rate at every optimizer step of each run (warm-up included), from its train
    section and its recorded steps per epoch: the same function the training's scheduler used.

    Example:
        >>> df = pd.DataFrame({"name": ["cosine"], "run_id": ["1"], "train.lr": [0.1], "train.schedule": ["cosine"],
        ...                    "train.warmup_epochs": [1.0], "train.epochs": [3], "steps_per_epoch": [10],
        ...                    "train_device": ["cpu"]})
        >>> line = lr_schedule_chart(df).axes[0].lines[0]
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
def run_history_chart(history: Sequence[dict], title: str = "") -> Figure:
    """One run's loss (left) and accuracy (right) per epoch, train and test: the live training chart.

    Example:
        >>> h = [{"epoch": 1, "train_loss": 1.0, "test_loss": 0.9, "train_accuracy": 0.6, "test_accuracy": 0.7}]
        >>> [a.get_ylabel() for a in run_history_chart(h).axes]
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
