"""What compression changed in a model's answers, beyond the one number that moved: for an image classifier the
test examples whose correctness flipped, accuracy per class and calibration (expected calibration error with its
reliability table); for a language model the loss of every validation token before and after, the tokens that
got most worse and most better, and a stretch of text coloured by the change.

``what_changed(base, variant)`` takes two stored runs of one task scored on the same data (a compressed run and
the run it was compressed from); ``charts.reliability_chart``, ``charts.flips_chart`` and
``charts.token_loss_chart`` draw its answer. The models are scored plainly (no test-time augmentation), each with
its own run's normalisation and precision.

Example:
    >>> table = reliability_table([0.95, 0.95, 0.55, 0.55], [1, 0, 1, 1])
    >>> table.loc[table["count"] > 0, ["bin", "confidence", "accuracy", "count"]].values.tolist()
    [[8.0, 0.55, 1.0, 2.0], [14.0, 0.95, 0.5, 2.0]]
    >>> round(expected_calibration_error(table), 6)  # half the examples 0.45 over-, half 0.45 under-confident
    0.45
"""

from __future__ import annotations

import html
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from ..measure import device_name, resolve_device
from ..tasks import task_of
from ..train import autocast_for, resolve_threads, thread_count
from .checkpoint import load_checkpoint
from .store import Result, ResultStore

CALIBRATION_BINS = 15  # equal-width confidence bins: the usual choice for ECE since Guo et al. (2017)
RIGHT_TO_WRONG, WRONG_TO_RIGHT = "right→wrong", "wrong→right"
CONTEXT_TOKENS = 16  # text shown before a listed token, so a reader sees what the model was predicting from
# What both runs must share to be scored on the same examples (a language model's: the same token windows).
SAME_DATA = {"image": ("task", "data.dataset"), "lm": ("task", "data.dataset", "data.tokenizer", "data.vocab_size")}


def reliability_table(confidence: Any, correct: Any, bins: int = CALIBRATION_BINS) -> pd.DataFrame:
    """Per equal-width confidence bin ``(lower, upper]``: the mean confidence, the accuracy and the count of the
    examples in it (NaN confidence and accuracy where a bin is empty). ``confidence`` is each example's top
    probability, ``correct`` whether its top answer was right."""
    confidence, correct = np.asarray(confidence, float), np.asarray(correct, float)
    edges = np.linspace(0, 1, bins + 1)
    which = np.searchsorted(edges[1:-1], confidence, side="left")  # bin i holds edges[i] < c <= edges[i + 1]
    examples = pd.DataFrame({"bin": which, "confidence": confidence, "accuracy": correct})
    table = examples.groupby("bin").agg(
        confidence=("confidence", "mean"), accuracy=("accuracy", "mean"), count=("bin", "size")
    )
    table = table.reindex(range(bins)).rename_axis("bin").reset_index()
    table["count"] = table["count"].fillna(0).astype(int)
    table.insert(1, "lower", edges[:-1])
    table.insert(2, "upper", edges[1:])
    return table


def expected_calibration_error(table: pd.DataFrame) -> float:
    """The gap between confidence and accuracy, bin by bin, weighted by the share of examples in each bin:
    ``sum |accuracy - confidence| x count / n`` over a ``reliability_table``. 0 is perfectly calibrated."""
    filled = table[table["count"] > 0]
    return float((filled["count"] * (filled["accuracy"] - filled["confidence"]).abs()).sum() / filled["count"].sum())


@dataclass(repr=False)
class _Compared:
    """The two runs compared, as every answer of ``what_changed`` names them."""

    base_run: str
    variant_run: str
    base_name: str
    variant_name: str
    dataset: str
    device: str


@dataclass(repr=False)
class WhatChanged(_Compared):
    """What a variant of an image classifier answers differently from its base on the test split.

    ``flips``: one row per test example whose correctness changed (indexed by its place in the test split):
    label, each model's prediction and confidence (top probability), direction; right→wrong first, the most
    confidently wrong first. ``per_class``: n and each model's accuracy per label, and the change. ``images``: the
    first ``examples`` flips' images, in ``flips``' order, as stored (floats in [0, 1], not normalised).
    ``*_probs`` are the softmax outputs (n, classes) the rest is computed from.
    """

    classes: list[str]
    labels: torch.Tensor
    base_probs: torch.Tensor
    variant_probs: torch.Tensor
    flips: pd.DataFrame
    per_class: pd.DataFrame
    images: torch.Tensor
    base_reliability: pd.DataFrame
    variant_reliability: pd.DataFrame

    @property
    def n(self) -> int:
        return len(self.labels)

    @property
    def right_to_wrong(self) -> int:
        return int((self.flips["direction"] == RIGHT_TO_WRONG).sum())

    @property
    def wrong_to_right(self) -> int:
        return int((self.flips["direction"] == WRONG_TO_RIGHT).sum())

    @property
    def base_accuracy(self) -> float:
        return float((self.base_probs.max(1).indices == self.labels).double().mean())  # max, as flips: ties alike

    @property
    def variant_accuracy(self) -> float:
        return float((self.variant_probs.max(1).indices == self.labels).double().mean())

    @property
    def base_ece(self) -> float:
        return expected_calibration_error(self.base_reliability)

    @property
    def variant_ece(self) -> float:
        return expected_calibration_error(self.variant_reliability)

    def __repr__(self) -> str:
        return (
            f"WhatChanged({self.variant_name} vs {self.base_name} on {self.dataset}: {len(self.flips)} of {self.n} "
            f"answers flipped ({self.right_to_wrong} {RIGHT_TO_WRONG}, {self.wrong_to_right} {WRONG_TO_RIGHT}); "
            f"accuracy {self.base_accuracy:.2%} -> {self.variant_accuracy:.2%}; "
            f"ECE {self.base_ece:.3f} -> {self.variant_ece:.3f})"
        )


class Highlighted:
    """A stretch of text with each token coloured by its change in loss: HTML in Jupyter (red: worse, green:
    better, the change in nats on hover), plain text elsewhere (``[token|+0.41]`` where the change is large)."""

    def __init__(self, html_text: str, plain_text: str):
        self.html, self.text = html_text, plain_text

    def _repr_html_(self) -> str:
        return self.html

    def __str__(self) -> str:
        return self.text

    __repr__ = __str__


@dataclass(repr=False)
class TokensChanged(_Compared):
    """What a variant of a language model predicts differently from its base on the validation windows.

    ``windows``: the token ids of each window (windows, block_size + 1); the targets are ``windows[:, 1:]``.
    ``base_loss``/``variant_loss``: each target token's cross-entropy (nats), ``change`` the variant's minus the
    base's. ``worse``/``better``: the ``examples`` tokens whose loss rose/fell most, decoded, with the text before
    them. ``highlight()`` renders a window coloured by the change.
    """

    windows: torch.Tensor
    base_loss: torch.Tensor
    variant_loss: torch.Tensor
    worse: pd.DataFrame
    better: pd.DataFrame
    tokenizer: Any

    @property
    def change(self) -> torch.Tensor:
        return self.variant_loss - self.base_loss

    @property
    def base_mean_loss(self) -> float:
        return float(self.base_loss.double().mean())

    @property
    def variant_mean_loss(self) -> float:
        return float(self.variant_loss.double().mean())

    @property
    def base_perplexity(self) -> float:
        return math.exp(self.base_mean_loss)

    @property
    def variant_perplexity(self) -> float:
        return math.exp(self.variant_mean_loss)

    def highlight(self, window: int | None = None) -> Highlighted:
        """Window ``window`` of the validation text (default: the one whose loss changed most), each predicted
        token coloured by its change in loss; scaled to the window's largest change."""
        change = self.change
        if window is None:
            window = int(change.abs().sum(1).argmax())
        if not 0 <= window < len(self.windows):
            raise ValueError(f"window must be in 0..{len(self.windows) - 1} (got {window})")
        ids, deltas = self.windows[window].tolist(), change[window].tolist()
        base, variant = self.base_loss[window].tolist(), self.variant_loss[window].tolist()
        largest = max(max(abs(d) for d in deltas), 1e-12)
        first = self.tokenizer.decode(ids[:1])
        spans, plain = [html.escape(first)], [first]
        for token, d, b, v in zip(ids[1:], deltas, base, variant):
            text = self.tokenizer.decode([token])
            rgb = "220,50,47" if d > 0 else "40,160,60"
            spans.append(
                f'<span style="background:rgba({rgb},{0.85 * abs(d) / largest:.2f})" '
                f'title="{d:+.3f} nats (base {b:.2f}, variant {v:.2f})">{html.escape(text)}</span>'
            )
            plain.append(f"[{text}|{d:+.2g}]" if abs(d) >= largest / 2 else text)
        caption = (
            f"window {window}: red = higher loss with {html.escape(self.variant_name)} (worse), green = lower "
            f"(better); darkest = {largest:.3g} nats; hover a token for its change"
        )
        body = f'<pre style="white-space:pre-wrap;font-family:monospace">{"".join(spans)}</pre>'
        legend = f"window {window}: [token|change in nats] where the change is at least {largest / 2:.3g} nats\n"
        return Highlighted(f"<div><small>{caption}</small>{body}</div>", legend + "".join(plain))

    def __repr__(self) -> str:
        return (
            f"TokensChanged({self.variant_name} vs {self.base_name} on {self.dataset}: {self.change.numel()} tokens; "
            f"loss {self.base_mean_loss:.4f} -> {self.variant_mean_loss:.4f} nats, perplexity "
            f"{self.base_perplexity:.3f} -> {self.variant_perplexity:.3f}; "
            f"{int((self.change > 0).sum())} tokens worse, {int((self.change < 0).sum())} better)"
        )


def what_changed(
    base: str | Result,
    variant: str | Result,
    *,
    store: ResultStore | str | os.PathLike = "runs",
    data_root: str | os.PathLike = "data",
    device: str | torch.device | None = None,
    examples: int = 16,
) -> WhatChanged | TokensChanged:
    """What ``variant``'s saved model (compressed, typically) answers differently from ``base``'s on the test
    split: a ``WhatChanged`` for an image classifier, a ``TokensChanged`` for a language model. Runs are
    ``Result``s or run ids in ``store``; ``device`` defaults to the variant's ``hardware.device`` (where its
    compressed model runs). ``examples``: how many flipped images to keep, or tokens to list each way.

    Example:
        >>> what_changed("a", "b", store="/nonexistent", examples=0)
        Traceback (most recent call last):
        ...
        ValueError: examples must be a whole number >= 1 (got 0): how many flipped images to keep or tokens to list
    """
    if isinstance(examples, bool) or not isinstance(examples, int) or examples < 1:
        raise ValueError(
            f"examples must be a whole number >= 1 (got {examples!r}): how many flipped images to keep or tokens to "
            "list"
        )
    base, variant = _with_model(base, store, "base"), _with_model(variant, store, "variant")
    problem = _comparison_problem(base, variant)
    if problem:
        raise ValueError(problem)
    task = task_of(base.config)
    where = resolve_device(device or variant.config.hardware.device, field="device")
    data = task.load(base.config, data_root)
    names = {
        "base_run": base.run_id,
        "variant_run": variant.run_id,
        "base_name": _name(base),
        "variant_name": _name(variant),
        "dataset": base.config.data.dataset,
        "device": device_name(where),
    }
    # The run's thread policy, as bits_curve scores with: on a busy machine spare threads only wait.
    with torch.no_grad(), thread_count(resolve_threads(base.config.hardware.threads)):
        if task.reads == "tokens":
            return _tokens_changed(base, variant, data, where, examples, names)
        return _answers_changed(base, variant, data, where, examples, names)


def _with_model(run: str | Result, store: ResultStore | str | os.PathLike, role: str) -> Result:
    result = run if isinstance(run, Result) else ResultStore.open(store).get(run)
    if not result.checkpoint or not Path(result.checkpoint).is_file():
        why = result.metrics.get("checkpoint_note") or f"no file at {result.checkpoint}"
        raise ValueError(
            f"{role} run {result.run_id} has no saved model ({why}): rerun it with a store so its model is kept"
        )
    return result


def _name(result: Result) -> str:
    """The run's label; an unnamed variant (which would share its base's label) gets its steps' kinds, short
    enough for a chart's legend."""
    if result.config.name or not result.config.compress:
        return result.config.label()
    return f"{result.config.label()} ({' + '.join(s.kind for s in result.config.compress)})"


def _comparison_problem(base: Result, variant: Result) -> str | None:
    """Why the two runs are not scored on the same examples (one line), or None."""
    mine, theirs = base.config.flat(), variant.config.flat()
    differ = [k for k in SAME_DATA.get(mine["task"], ("task",)) if mine[k] != theirs[k]]
    if differ:
        return (
            f"base {base.run_id} and variant {variant.run_id} are scored on different data ("
            + ", ".join(f"{k} {mine[k]} vs {theirs[k]}" for k in differ)
            + "): compare a compressed run with the run it was compressed from (same task and dataset)"
        )
    if mine["task"] == "lm" and mine["model.block_size"] != theirs["model.block_size"]:
        return (
            f"base {base.run_id} and variant {variant.run_id} read windows of {mine['model.block_size']} and "
            f"{theirs['model.block_size']} tokens: compare runs of one model.block_size, so every token is scored "
            "with the same context"
        )
    return None


def _scored(result: Result, data, where: torch.device):
    """The run's saved model's logits and the targets, batch by batch over its task's test split as the run
    normalises it, on ``where`` (a pt2e int8 program runs where it can: the CPU); both returned on the CPU."""
    config = result.config
    model = load_checkpoint(result.checkpoint)[0]
    if isinstance(model, torch.fx.GraphModule):
        where = torch.device("cpu")
    else:
        model = model.to(where)
    for x, y in task_of(config).eval_batches(config, data, where):
        with autocast_for(config.hardware.precision, where):
            yield model(x).float().cpu(), y.cpu()


def _answers_changed(base: Result, variant: Result, dataset, where, examples: int, names: dict) -> WhatChanged:
    labels = dataset.test_y
    base_probs = torch.cat([logits.softmax(1) for logits, _ in _scored(base, dataset, where)])
    variant_probs = torch.cat([logits.softmax(1) for logits, _ in _scored(variant, dataset, where)])
    (base_conf, base_pred), (variant_conf, variant_pred) = base_probs.max(1), variant_probs.max(1)
    base_right, variant_right = base_pred == labels, variant_pred == labels
    flipped = torch.nonzero(base_right != variant_right).flatten()
    flips = pd.DataFrame(
        {
            "label": labels[flipped].numpy(),
            "base_prediction": base_pred[flipped].numpy(),
            "variant_prediction": variant_pred[flipped].numpy(),
            "direction": np.where(base_right[flipped].numpy(), RIGHT_TO_WRONG, WRONG_TO_RIGHT),
            "base_confidence": base_conf[flipped].numpy(),
            "variant_confidence": variant_conf[flipped].numpy(),
        },
        index=pd.Index(flipped.numpy(), name="index"),
    )
    flips = flips.sort_values(["direction", "variant_confidence"], ascending=[True, False], kind="stable")
    answers = pd.DataFrame({"label": labels.numpy(), "base": base_right.numpy(), "variant": variant_right.numpy()})
    per_class = answers.groupby("label").agg(
        n=("base", "size"), base_accuracy=("base", "mean"), variant_accuracy=("variant", "mean")
    )
    per_class.insert(0, "class", [dataset.classes[i] for i in per_class.index])
    per_class["change"] = per_class["variant_accuracy"] - per_class["base_accuracy"]
    shown = torch.tensor(flips.index[:examples].tolist(), dtype=torch.long)
    return WhatChanged(
        **names,
        classes=list(dataset.classes),
        labels=labels,
        base_probs=base_probs,
        variant_probs=variant_probs,
        flips=flips,
        per_class=per_class,
        images=dataset.test_x[shown].float() / 255,  # the stored uint8 images: what a person would see
        base_reliability=reliability_table(base_conf.numpy(), base_right.numpy()),
        variant_reliability=reliability_table(variant_conf.numpy(), variant_right.numpy()),
    )


def _token_losses(result: Result, data, where) -> torch.Tensor:
    return torch.cat(
        [
            F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view_as(y)
            for logits, y in _scored(result, data, where)
        ]
    )


def _tokens_changed(base: Result, variant: Result, data, where, examples: int, names: dict) -> TokensChanged:
    windows = torch.cat(
        [torch.cat([x[:, :1], y], 1) for x, y in task_of(base.config).eval_batches(base.config, data, "cpu")]
    )
    base_loss, variant_loss = _token_losses(base, data, where), _token_losses(variant, data, where)
    change = (variant_loss - base_loss).flatten()
    decode = data.tokenizer.decode

    def listed(order: torch.Tensor) -> pd.DataFrame:
        columns = ["window", "position", "context", "token", "base_loss", "variant_loss", "change"]
        rows = []
        for flat in order[:examples].tolist():
            w, t = divmod(flat, base_loss.shape[1])
            ids = windows[w].tolist()
            rows.append(
                {
                    "window": w,
                    "position": t,
                    "context": repr(decode(ids[max(0, t + 1 - CONTEXT_TOKENS) : t + 1]))[1:-1],
                    "token": repr(decode(ids[t + 1 : t + 2]))[1:-1],
                    "base_loss": float(base_loss[w, t]),
                    "variant_loss": float(variant_loss[w, t]),
                    "change": float(change[flat]),
                }
            )
        return pd.DataFrame(rows, columns=columns)

    return TokensChanged(
        **names,
        windows=windows,
        base_loss=base_loss,
        variant_loss=variant_loss,
        worse=listed(change.argsort(descending=True)[: int((change > 0).sum())]),
        better=listed(change.argsort()[: int((change < 0).sum())]),
        tokenizer=data.tokenizer,
    )
