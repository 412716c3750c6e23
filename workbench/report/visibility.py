"""Effects too small to see at this size: where a comparison's numbers cannot tell variants apart, say so.

On the embedded 8x8 digits a small model reaches 99% test accuracy and runs a batch in a millisecond: an
accuracy change is a few test images, and a latency change hides inside the timing spread. A notebook
that reads such numbers as results teaches noise. ``hidden_effects`` finds those comparisons in a set of
runs, from the same measurements the ledger reads, so the notebook can say which effects need a bigger
setting (CIFAR-10) to show.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from . import Result
from .ledger import ledger, why_not_faster

CEILING = 0.99  # a baseline this accurate has at most a point to win: differences are a handful of test images
HIDDEN_REASONS = ("noisy", "within_spread")  # the ledger's codes for a latency comparison the spread hides


def hidden_effects(
    results: pd.DataFrame | Sequence[Result], baseline: str | int | None = None, *, ceiling: float = CEILING
) -> pd.DataFrame:
    """One row per effect the runs cannot show: ``effect`` (accuracy or latency), ``where`` and ``detail`` (a
    sentence with the numbers). Accuracy is hidden when the baseline's is at or above ``ceiling`` (for an
    image task); latency where the ledger finds a variant's timing inside the spread or too noisy.

    Example:
        >>> from workbench import RunConfig
        >>> rec = lambda ms, s: [{"mode": "eager", "batch_size": 1, "latency_ms": ms, "latency_ms_q25": ms - s,
        ...                       "latency_ms_q75": ms + s, "relative_spread": 2 * s / ms, "device": "cpu"}]
        >>> m = {"params": 1, "nonzero_params": 1, "size_bytes": 1, "flops": 1}
        >>> rows = [Result(RunConfig(name="a"), {**m, "accuracy": 0.995}, benchmarks=rec(1.0, 0.2)),
        ...         Result(RunConfig(name="b"), {**m, "accuracy": 0.99}, benchmarks=rec(1.2, 0.2))]
        >>> hidden_effects(rows, baseline="a")[["effect", "where"]].values.tolist()
        [['accuracy', 'a'], ['latency', 'b: cpu/eager/bs1']]
    """
    table = ledger(results, baseline)
    rows = []
    base = table.loc[table["variant"] == table.attrs["baseline"]].iloc[0]
    if "accuracy" in table and pd.notna(base.get("accuracy")) and base["accuracy"] >= ceiling:
        spread = table["accuracy"].max() - table["accuracy"].min()
        rows.append(
            {
                "effect": "accuracy",
                "where": base["variant"],
                "detail": (
                    f"the baseline's test accuracy is {base['accuracy']:.1%}, at the ceiling: the variants span "
                    f"{100 * spread:.1f} points, a few test images, so accuracy cannot rank them here"
                ),
            }
        )
    reasons = why_not_faster(results, baseline)
    hidden = reasons[reasons["reason"].isin(HIDDEN_REASONS)]
    for r in hidden.itertuples():
        rows.append(
            {
                "effect": "latency",
                "where": f"{r.variant}: {r.device}/{r.mode}/bs{r.batch_size}",
                "detail": r.text,
            }
        )
    return pd.DataFrame(rows, columns=["effect", "where", "detail"])
