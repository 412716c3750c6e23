"""Charts of what compression changed in a model's answers (``workbench.report.what_changed``): calibration
before and after, the test images whose answer flipped, and the change in a language model's loss per token."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from ..what_changed import RIGHT_TO_WRONG, WRONG_TO_RIGHT, TokensChanged, WhatChanged
from ._style import _figure, _themed


def _check_kind(changed, kind: type, chart: str) -> None:
    if not isinstance(changed, kind):
        other = "token_loss_chart" if kind is WhatChanged else "reliability_chart or flips_chart"
        raise ValueError(
            f"{chart} draws a {kind.__name__} (what_changed of two {'image' if kind is WhatChanged else 'lm'} runs), "
            f"not a {type(changed).__name__}: use {other}"
        )


@_themed
def reliability_chart(changed: WhatChanged, ax=None) -> Figure:
    """Accuracy against confidence bin by bin (equal-width bins of the top probability) for the base and the
    variant, with the diagonal a calibrated model lies on and each model's expected calibration error (ECE) in
    the legend. Points under the diagonal are over-confident."""
    _check_kind(changed, WhatChanged, "reliability_chart")
    fig, ax = _figure(ax)
    ax.plot([0, 100], [0, 100], ls="--", color="gray", lw=1, label="calibrated: accuracy = confidence")
    for role, name, table, ece, marker in (
        ("base", changed.base_name, changed.base_reliability, changed.base_ece, "o"),
        ("variant", changed.variant_name, changed.variant_reliability, changed.variant_ece, "s"),
    ):
        filled = table[table["count"] > 0]
        ax.plot(
            100 * filled["confidence"],
            100 * filled["accuracy"],
            marker=marker,
            ms=4,
            label=f"{role} {name}, ECE {ece:.3f}",
        )
    ax.set(
        xlim=(0, 100),
        ylim=(0, 102),
        xlabel="confidence (mean top probability in the bin, %)",
        ylabel="accuracy in the bin (%)",
    )
    ax.set_title(
        f"Calibration on {changed.dataset}'s test split ({changed.n} images, {len(changed.base_reliability)} bins), "
        f"scored on "
        f"{changed.device}",
        fontsize=10,
    )
    ax.legend(fontsize="small", loc="best")
    return fig


@_themed
def flips_chart(changed: WhatChanged, n: int = 8) -> Figure:
    """The first ``n`` test images whose answer flipped (of the ``examples`` ``what_changed`` kept), each titled
    with its label and both models' answers and confidences: red went right→wrong, green wrong→right."""
    _check_kind(changed, WhatChanged, "flips_chart")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a whole number >= 1 (got {n!r}): how many flipped images to draw")
    shown = min(n, len(changed.images))
    columns = min(4, max(shown, 1))
    rows = max(1, math.ceil(shown / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(2.3 * columns, 2.4 * rows + 0.5), layout="constrained")
    plt.close(fig)  # as _figure: notebooks show the returned figure once
    axes = np.atleast_1d(axes).ravel()
    name = changed.classes
    for ax, image, (index, flip) in zip(axes, changed.images, changed.flips.head(shown).iterrows()):
        picture = image.permute(1, 2, 0).numpy()
        ax.imshow(picture[..., 0] if picture.shape[-1] == 1 else picture, cmap="gray", vmin=0, vmax=1)
        ax.set_title(
            f"#{index}, label {name[flip['label']]}\n"
            f"base {name[flip['base_prediction']]} ({flip['base_confidence']:.0%}), "
            f"variant {name[flip['variant_prediction']]} ({flip['variant_confidence']:.0%})",
            fontsize=8,
            color="tab:red" if flip["direction"] == RIGHT_TO_WRONG else "tab:green",
        )
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes[shown:]:
        ax.axis("off")
    if not shown:
        axes[0].text(0.5, 0.5, "no answer changed", ha="center", va="center")
    fig.suptitle(
        f"{shown} of {len(changed.flips)} flipped answers on {changed.dataset}: {changed.variant_name} vs "
        f"{changed.base_name}\n(red: {RIGHT_TO_WRONG}, {changed.right_to_wrong} in all; green: {WRONG_TO_RIGHT}, "
        f"{changed.wrong_to_right}; confidence = top probability)",
        fontsize=9,
    )
    return fig


@_themed
def token_loss_chart(changed: TokensChanged) -> Figure:
    """How the variant's loss per validation token differs from the base's: their histogram (left; right of 0 is
    worse) and the mean change at each position of the window (right: little context at the left end)."""
    _check_kind(changed, TokensChanged, "token_loss_chart")
    change = changed.change
    fig, (spread, by_position) = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    plt.close(fig)  # as _figure: notebooks show the returned figure once
    spread.hist(change.flatten().numpy(), bins=60, color="tab:blue")
    spread.axvline(0, color="gray", lw=1)
    mean = changed.variant_mean_loss - changed.base_mean_loss
    spread.axvline(mean, color="tab:red", ls="--", lw=1, label=f"mean {mean:+.4f} nats")
    spread.set_yscale("log")
    spread.set(xlabel="change in loss per token (variant - base, nats)", ylabel="tokens (count, log)")
    spread.legend(fontsize="small")
    positions = np.arange(change.shape[1])
    by_position.plot(positions, change.double().mean(0).numpy(), marker="o", ms=2)
    by_position.axhline(0, color="gray", lw=1)
    by_position.set(xlabel="position in the window (tokens of context before it)", ylabel="mean change in loss (nats)")
    for ax in (spread, by_position):
        ax.grid(alpha=0.3)
    fig.suptitle(
        f"Loss per token, {changed.variant_name} vs {changed.base_name}, on {changed.dataset}'s validation text "
        f"({change.numel():,} tokens): {changed.base_mean_loss:.4f} -> {changed.variant_mean_loss:.4f} nats; "
        f"scored on {changed.device}",
        fontsize=10,
    )
    return fig
