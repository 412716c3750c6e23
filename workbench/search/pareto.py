"""Objectives with directions, the Pareto front of several, and the hypervolume they dominate."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from .._errors import ConfigError
from ..report import METRICS


def direction(metric: str) -> str:
    """``maximize`` or ``minimize`` from the results schema (accuracy up, size and latency down).

    Example:
        >>> direction("accuracy"), direction("size_bytes")
        ('maximize', 'minimize')
    """
    if metric not in METRICS or METRICS[metric].lower_is_better is None:
        from .._registry import unknown_name_error

        known = objective_metrics()
        raise ConfigError(
            str(unknown_name_error("objective", metric, known))
            if metric not in METRICS
            else f"Objective '{metric}' has no better direction: choose one of {', '.join(known)}"
        )
    return "minimize" if METRICS[metric].lower_is_better else "maximize"


def objective_metrics() -> list[str]:
    """The result metrics with a better direction that a search can aim for or bound (measured, not
    read off the training curve), as error messages list them."""
    return [m for m, spec in METRICS.items() if spec.lower_is_better is not None and spec.source != "training"]


def as_costs(df: pd.DataFrame, objectives: Sequence[str]) -> np.ndarray:
    """Each objective as a cost to minimise (maximised ones negated), one row per trial."""
    return np.column_stack([df[m].to_numpy(float) * (-1 if direction(m) == "maximize" else 1) for m in objectives])


def non_dominated(costs: np.ndarray) -> np.ndarray:
    """The mask of rows no other row dominates (not worse on every cost and better on one).

    Example:
        >>> non_dominated(np.array([[1, 2], [2, 1], [2, 2], [1, 2]])).tolist()
        [True, True, False, True]
    """
    costs = np.asarray(costs, float)
    keep = np.ones(len(costs), bool)
    for i, c in enumerate(costs):
        worse_or_equal = np.all(costs <= c, axis=1) & np.any(costs < c, axis=1)
        keep[i] = not worse_or_equal.any()
    return keep


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """Cost vector ``a`` is no worse than ``b`` everywhere and strictly better somewhere."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    return bool(np.all(a <= b) and np.any(a < b))


def pareto_front(df: pd.DataFrame, objectives: Sequence[str]) -> pd.DataFrame:
    """The rows of ``df`` on the front of ``objectives`` (rows missing an objective left out), sorted
    by the first objective, best first."""
    rows = df.dropna(subset=list(objectives))
    front = rows[non_dominated(as_costs(rows, objectives))] if len(rows) else rows
    return front.sort_values(objectives[0], ascending=direction(objectives[0]) == "minimize")


def hypervolume(costs: np.ndarray, reference: Sequence[float], ideal: Sequence[float]) -> float:
    """The share of the box between ``ideal`` and ``reference`` (both costs) that ``costs`` dominate:
    0 is nothing better than the reference, 1 is the ideal point itself. Each objective is scaled to
    that box first, so bytes do not outweigh a fraction of accuracy. Optuna's exact WFG computes it.

    Example:
        >>> hypervolume(np.array([[0.5, 0.5]]), reference=[1, 1], ideal=[0, 0])
        0.25
    """
    from optuna._hypervolume import compute_hypervolume

    costs, reference, ideal = np.asarray(costs, float), np.asarray(reference, float), np.asarray(ideal, float)
    span = np.where(reference > ideal, reference - ideal, 1.0)
    scaled = (costs - ideal) / span
    inside = scaled[np.all(scaled < 1, axis=1)]
    return float(compute_hypervolume(inside, np.ones(len(reference)))) if len(inside) else 0.0
