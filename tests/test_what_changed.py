"""What compression changed in the answers: flips that account exactly for the accuracy change, per-class changes
that add up to it, calibration error as defined, a language model's per-token losses that average to its loss,
the charts, and bad inputs refused in one line before any work."""

import dataclasses
import itertools
import re

import numpy as np
import pytest
import torch
from test_lm import tiny

from workbench import (
    DynamicInt8,
    MeasureConfig,
    ModelConfig,
    ResultStore,
    RunConfig,
    TrainConfig,
    UnstructuredPrune,
    load_dataset,
    run,
)
from workbench.report.charts import flips_chart, reliability_chart, token_loss_chart
from workbench.report.what_changed import RIGHT_TO_WRONG, WRONG_TO_RIGHT, what_changed

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.filterwarnings("ignore::UserWarning")]
QUICK = MeasureConfig(batch_sizes=(4,), warmup=0, iters=1)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A digits MLP and the same training pruned hard (answers flip both ways), a tiny GPT and its int8 twin."""
    store = ResultStore(tmp_path_factory.mktemp("changed") / "runs")
    image = RunConfig(
        model=ModelConfig(name="mlp", width=0.25, batchnorm=False), train=TrainConfig(epochs=1), measure=QUICK
    )
    lm = tiny(**{"train.steps": 20, "train.epochs": 1})
    made = {
        "image": run(image, store=store, progress=False),
        "pruned": run(image.replace(compress=(UnstructuredPrune(0.7),)), store=store, progress=False),
        "lm": run(lm, store=store, progress=False),
        "int8": run(lm.replace(compress=(DynamicInt8(),)), store=store, progress=False),
    }
    return store, made


@pytest.fixture(scope="module")
def pruned(runs):
    store, made = runs
    return what_changed(made["image"].run_id, made["pruned"].run_id, store=store, examples=5)


@pytest.fixture(scope="module")
def quantized(runs):
    _, made = runs
    return what_changed(made["lm"], made["int8"])


def test_the_flips_account_exactly_for_the_accuracy_change(runs, pruned):
    _, made = runs
    c, flips = pruned, pruned.flips
    assert c.right_to_wrong > 0 and c.wrong_to_right > 0 and c.n == 360  # digits' test split
    assert c.variant_accuracy - c.base_accuracy == pytest.approx((c.wrong_to_right - c.right_to_wrong) / c.n, abs=1e-12)
    # The accuracies are the ones the runs stored: the same saved models, scored the same way.
    assert c.base_accuracy == pytest.approx(made["image"].metrics["accuracy"], abs=1e-12)
    assert c.variant_accuracy == pytest.approx(made["pruned"].metrics["accuracy"], abs=1e-12)
    rows = torch.tensor(flips.index.tolist())
    assert flips["base_prediction"].tolist() == c.base_probs.argmax(1)[rows].tolist()
    assert flips["variant_prediction"].tolist() == c.variant_probs.argmax(1)[rows].tolist()
    was_right = flips["label"] == flips["base_prediction"]
    assert (was_right != (flips["label"] == flips["variant_prediction"])).all()  # a flip changes correctness
    assert (flips["direction"] == np.where(was_right, RIGHT_TO_WRONG, WRONG_TO_RIGHT)).all()
    assert flips["base_confidence"].tolist() == pytest.approx(c.base_probs.amax(1)[rows].tolist())
    # The images kept are the first flips' test images, as stored ([0, 1], not normalised).
    assert len(c.images) == 5
    assert torch.equal(c.images, load_dataset("digits").test_x[rows[:5]].float() / 255)


def test_per_class_changes_weighted_by_size_add_up_to_the_overall_change(pruned):
    table = pruned.per_class
    assert table["n"].sum() == pruned.n and table["class"].tolist() == pruned.classes
    overall = pruned.variant_accuracy - pruned.base_accuracy
    assert (table["n"] * table["change"]).sum() / table["n"].sum() == pytest.approx(overall, abs=1e-12)


def test_calibration_error_is_the_binned_gap_between_confidence_and_accuracy(pruned):
    for probs, table, ece in (
        (pruned.base_probs, pruned.base_reliability, pruned.base_ece),
        (pruned.variant_probs, pruned.variant_reliability, pruned.variant_ece),
    ):
        confidence, prediction = probs.double().max(1)
        right = (prediction == pruned.labels).double()
        edges = torch.linspace(0, 1, 16, dtype=torch.float64)
        by_hand = sum(
            inside.sum() * (right[inside].mean() - confidence[inside].mean()).abs()
            for lo, hi in itertools.pairwise(edges)
            if (inside := (confidence > lo) & (confidence <= hi)).any()
        ) / len(right)
        assert 0 <= ece <= 1 and ece == pytest.approx(float(by_hand), abs=1e-6)
        assert len(table) == 15 and table["count"].sum() == pruned.n


def test_a_run_against_itself_changed_nothing(runs):
    store, made = runs
    same = what_changed(made["image"].run_id, made["image"].run_id, store=store)  # by run id, from the store
    assert same.flips.empty and same.right_to_wrong == same.wrong_to_right == 0 and len(same.images) == 0
    assert same.base_accuracy == same.variant_accuracy and (same.per_class["change"] == 0).all()
    assert same.base_ece == same.variant_ece


def test_per_token_changes_average_to_the_change_in_mean_loss(runs, quantized):
    _, made = runs
    q = quantized
    assert q.base_loss.shape == q.variant_loss.shape == (256, 32)  # the task's validation windows x block size
    assert q.windows.shape == (256, 33)  # each window: its first token, then the 32 it predicts
    assert q.change.double().mean().item() == pytest.approx(q.variant_mean_loss - q.base_mean_loss, abs=1e-12)
    assert q.base_mean_loss == pytest.approx(made["lm"].metrics["loss"], rel=1e-5)
    assert q.variant_mean_loss == pytest.approx(made["int8"].metrics["loss"], rel=1e-5)
    assert q.base_perplexity == pytest.approx(np.exp(q.base_mean_loss))
    assert len(q.worse) == len(q.better) == 16  # int8 moves many tokens both ways
    assert (q.worse["change"] > 0).all() and q.worse["change"].is_monotonic_decreasing
    assert (q.better["change"] < 0).all() and q.better["change"].is_monotonic_increasing
    top = q.worse.iloc[0]
    assert top["change"] == pytest.approx(q.change.max().item())
    assert top["token"] == repr(q.tokenizer.decode([int(q.windows[top["window"], top["position"] + 1])]))[1:-1]


def test_a_window_is_rendered_coloured_for_jupyter_and_marked_in_plain_text(quantized):
    shown = quantized.highlight(window=3)
    assert shown._repr_html_().count("<span") == 32  # one per predicted token
    assert "rgba(220,50,47" in shown.html and "rgba(40,160,60" in shown.html  # red worse, green better
    assert str(shown).startswith("window 3:") and re.search(r"\|[+-]\d", str(shown)) and "<span" not in str(shown)
    with pytest.raises(ValueError, match=r"window must be in 0\.\.255"):
        quantized.highlight(window=256)


def test_the_charts_have_labelled_axes_and_refuse_the_other_task(pruned, quantized):
    ax = reliability_chart(pruned).axes[0]
    assert (
        ax.get_xlabel().startswith("confidence")
        and "(%)" in ax.get_ylabel()
        and "ECE" in str(ax.get_legend_handles_labels())
    )
    grid = flips_chart(pruned, n=8)
    titles = [a.get_title() for a in grid.axes if a.get_title()]
    assert len(titles) == 5 and all("label" in t and "variant" in t for t in titles)  # 5 images were kept
    assert all(a.get_xlabel() and a.get_ylabel() for a in token_loss_chart(quantized).axes)
    with pytest.raises(ValueError, match="use token_loss_chart"):
        reliability_chart(quantized)
    with pytest.raises(ValueError, match="n must be"):
        flips_chart(pruned, n=0)


def test_bad_inputs_are_refused_in_one_line_before_any_work(runs, tmp_path):
    _, made = runs
    unsaved = dataclasses.replace(made["pruned"], checkpoint=None)
    other_windows = dataclasses.replace(made["int8"], config=made["int8"].config.replace(**{"model.block_size": 16}))
    cases = [
        ((made["image"], made["lm"]), {}, "different data .*task image vs lm"),
        ((made["image"], unsaved), {}, "variant run .* has no saved model"),
        ((made["lm"], other_windows), {}, "windows of 32 and 16 tokens"),
        ((made["image"], made["pruned"]), {"examples": 0}, "examples must be a whole number >= 1"),
    ]
    for args, kwargs, message in cases:
        with pytest.raises(ValueError, match=message) as e:
            what_changed(*args, data_root=tmp_path / "never-read", **kwargs)
        assert "\n" not in str(e.value)
