"""The exercises' checks: each accepts its reference solution and turns down every typical wrong answer
with a reason. Here on small real objects built in the test; tests/test_notebooks.py runs all of them
again inside their notebooks, on what the notebook computed, in instructor and in learner mode."""

import json

import pandas as pd
import pytest

from workbench import DataConfig, MeasureConfig, ModelConfig, RunConfig, TrainConfig, create_model
from workbench.course.exercises import CHECK_SOLUTIONS, EXERCISES, Feedback, exercises_of
from workbench.course.exercises import exercise_checker as checker
from workbench.course.notebooks import list_notebooks


def _profile(step_ms: float, batch_size: int) -> pd.DataFrame:
    df = pd.DataFrame({"phase": ["forward", "other (overhead, gaps, idle)"], "share": [0.6, 0.4]})
    df.attrs.update(step_ms=step_ms, batch_size=batch_size)
    return df


# What each exercise's check reads from its notebook, built small. The ones needing a trained, stored
# run or a search (06, 07, 09) are checked in their notebooks only.
ENVS = {
    "01.params": lambda: {"model": create_model("resnet20", 10, 1, 8, width=0.25)},
    "01.time_ms": dict,
    "02.half": lambda: {
        "base": RunConfig(
            data=DataConfig(dataset="digits"),
            model=ModelConfig(name="cnn", width=0.5, depth=2),
            train=TrainConfig(epochs=2),
            measure=MeasureConfig(iters=3),
        ),
        "RunConfig": RunConfig,
        "ModelConfig": ModelConfig,
        "model": "cnn",
    },
    "03.cosine": dict,
    "04.hflip": lambda: {"dataset": "digits"},
    "05.per_image": lambda: {"small": _profile(6.0, 8), "step": _profile(20.0, 64)},
    "08.soft_loss": dict,
    "10.bubble": lambda: {"pipe": pd.DataFrame({"microbatches": [1, 4], "bubble_theory": [0.5, 0.2]})},
    "11.p95": dict,
    "12.label_smoothing": dict,
    "13.speedup": lambda: {
        "table": pd.DataFrame({"variant": ["baseline", "pruned", "int8"], "cpu/eager/bs1_ms": [2.0, 1.6, 0.8]})
    },
    "14.causal_mask": dict,
    "14.kv_bytes": lambda: {"model": create_model("gpt", vocab_size=64, n_layer=2, n_head=4, n_embd=32, block_size=16)},
    "15.bits_per_weight": dict,
    "15.tokens_per_pass": lambda: {
        "spec": pd.DataFrame(
            {"lookahead": [0, 2, 4], "acceptance": [float("nan"), 0.8, 0.7], "tokens_per_target_pass": [1.0, 2.4, 3.1]}
        )
    },
    "16.int8_kv_bytes": lambda: ENVS["14.kv_bytes"](),  # the same small GPT
    "16.adamw_state": lambda: ENVS["14.kv_bytes"](),
}
IN_NOTEBOOK_ONLY = {"06.magnitude_mask", "07.int8", "09.dominates"}


def test_every_exercise_is_tested_here_or_named_notebook_only():
    assert sorted(ENVS.keys() | IN_NOTEBOOK_ONLY) == EXERCISES.names()


@pytest.mark.parametrize("key", sorted(ENVS))
def test_the_reference_is_right_and_every_typical_mistake_is_turned_down(key):
    env = ENVS[key]()
    feedback = checker(key[:2], env, instructor=True)(key)
    assert feedback.status == "right" and feedback.solution, repr(feedback)
    assert feedback.let_through == [] and len(feedback.rejected) == len(EXERCISES.get(key).wrong) >= 1
    generic = ("Checking your answer raised", "There is no")
    for why in feedback.rejected:
        assert 30 < len(why) < 400 and not why.startswith(generic), why  # a reason, in one or two sentences
        assert why.count(". ") <= 2, why


def test_learner_mode_leaves_an_unanswered_exercise_alone_and_says_what_to_do():
    env = {"n_params": ..., "model": create_model("mlp", 10, 1, 8)}
    feedback = checker("01_measure", env, instructor=False)("01.params")
    assert feedback.status == "unanswered" and env["n_params"] is ...
    assert "`n_params`" in feedback.message and "..." in feedback.message


@pytest.mark.parametrize("key", sorted(ENVS))
def test_checking_solutions_keeps_the_learners_view_and_judges_the_reference_and_mistakes(key, monkeypatch):
    """What CI runs every notebook with (``notebooks run --check-solutions``): one run checks both modes."""
    monkeypatch.setenv(CHECK_SOLUTIONS, "1")
    env = ENVS[key]()
    before = dict(env)
    check = checker(key[:2], env, instructor=False)
    feedback = check(key)
    assert feedback.status == "unanswered" and feedback.solution is None, repr(feedback)
    assert env.keys() == before.keys() and all(env[k] is v for k, v in before.items())  # the notebook's names
    said = check.summary()[key]
    assert said["solution_status"] == "right" and not said["filled_in"]
    assert said["let_through"] == [] and len(said["rejected"]) == len(EXERCISES.get(key).wrong)
    monkeypatch.delenv(CHECK_SOLUTIONS)
    assert checker(key[:2], ENVS[key](), instructor=False)(key).rejected == []  # plain learner mode


def test_a_wrong_answer_and_a_broken_one_are_not_yet_with_a_reason():
    env = {"model": create_model("mlp", 10, 1, 8)}
    check = checker("01_measure", env)
    env["n_params"] = len(list(env["model"].parameters()))
    assert check("01.params").status == "not yet" and "tensors" in check.results["01.params"].message
    env["n_params"] = "many"
    broken = check("01.params")
    assert broken.status == "not yet" and broken.crashed and "TypeError" in broken.message
    env["n_params"] = sum(p.numel() for p in env["model"].parameters())
    assert check("01.params").passed


def test_an_answer_the_learner_wrote_is_checked_not_replaced_in_instructor_mode():
    env = {"model": create_model("mlp", 10, 1, 8), "n_params": 5}
    feedback = checker("01_measure", env, instructor=True)("01.params")
    assert feedback.status == "not yet" and feedback.solution is None and env["n_params"] == 5


def test_a_check_reads_only_its_own_notebook_and_names_the_missing_cell():
    with pytest.raises(ValueError, match="another notebook"):
        checker("01_measure", {})("02.half")
    with pytest.raises(ValueError, match=r"Did you mean '01\.params'"):
        checker("01_measure", {})("01.param")
    feedback = checker("04_data", {"hflip": lambda x: x})("04.hflip")
    assert feedback.status == "not yet" and "`dataset`" in feedback.message and "cells above" in feedback.message


def test_feedback_renders_in_a_notebook():
    html = Feedback("01.params", "right", "Because <b> is escaped.")._repr_html_()
    assert "&lt;b&gt;" in html and "Right" in html


@pytest.mark.parametrize("nb", [p for p in list_notebooks() if "01" <= p.stem[:2] <= "13"], ids=lambda p: p.stem)
def test_each_notebook_has_one_to_three_exercises_each_with_a_marked_answer_cell_and_a_check(nb):
    cells = json.loads(nb.read_text())["cells"]
    code = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
    keys = [e.key for e in exercises_of(nb.stem)]
    assert 1 <= len(keys) <= 3
    answer_cells = [c for c in cells if "exercise" in c["metadata"].get("tags", [])]
    assert len(answer_cells) == len(keys), "one cell tagged 'exercise' per exercise"
    for key in keys:
        assert sum(f'check("{key}")' in s for s in code) == 1, key
        names = EXERCISES.get(key).names
        assert any(all(f"{n} = ..." in "".join(c["source"]) for n in names) for c in answer_cells), key
    params = next("".join(c["source"]) for c in cells if "parameters" in c["metadata"].get("tags", []))
    assert "instructor = False" in params
    assert any("exercises=check.summary()" in s for s in code), "metrics.json records what each check said"
