"""The panel without a browser: set control values, click buttons, assert on the store,
the table, the charts and the messages."""

import dataclasses

import pytest
import torch
from matplotlib.figure import Figure

from workbench import (
    AugmentConfig,
    DataConfig,
    DistillConfig,
    HardwareConfig,
    MeasureConfig,
    ModelConfig,
    RunConfig,
    TrainConfig,
)
from workbench.compress import parse_step, step_types, steps_for
from workbench.report import ResultStore
from workbench.ui import Workbench, config_code
from workbench.ui.panel import STORE

TINY = RunConfig(
    model=ModelConfig(name="mlp", width=0.25),
    train=TrainConfig(epochs=1),
    measure=MeasureConfig(batch_sizes=(1, 16), warmup=1, iters=3),
)


@pytest.fixture(scope="module")
def clicked(tmp_path_factory):
    """One real training run, started the way a user starts it: controls set, Run clicked."""
    store = ResultStore(tmp_path_factory.mktemp("ui") / "runs")
    panel = Workbench(store=store, config=TINY)
    panel.controls["train.epochs"].value = 2
    panel.controls["train.optimizer"].value = "adam"
    panel.controls["train.lr"].value = 0.003
    panel.controls["name"].value = "clicked"
    panel.run_button.click()
    return panel


def test_run_button_adds_a_row_to_the_store_and_the_table(clicked):
    rows = clicked.store.frame()
    assert len(rows) == 1, clicked.message.value
    row = rows.iloc[0]
    assert (row["name"], row["train.epochs"], row["train.optimizer"], row["train.lr"]) == ("clicked", 2, "adam", 0.003)
    assert row["epochs_run"] == 2 and 0 < row["accuracy"] <= 1
    assert row["run_id"] in clicked.table.value
    assert clicked.table_frame()["run id"].tolist() == [row["run_id"]]
    assert "test accuracy" in clicked.message.value


def test_live_curve_and_charts_are_drawn(clicked):
    live = clicked.live.figure
    assert isinstance(live, Figure)
    assert [len(line.get_xdata()) for line in live.axes[0].get_lines()] == [2, 2]  # train and test loss, 2 epochs
    assert set(clicked.figures) == {"accuracy vs size", "latency", "throughput", "training curves"}
    for title, fig in clicked.figures.items():
        ax = fig.axes[0]
        assert ax.get_lines() or ax.collections or ax.patches, title
    assert "accuracy_delta" in clicked.comparison.value
    assert clicked.progress.value == clicked.progress.max > 0


def test_show_code_reproduces_the_run(clicked):
    run_id = clicked.store.frame()["run_id"].iloc[0]
    clicked.code_run.value = run_id
    code = clicked.code(run_id)
    assert "RunConfig(" in code and code in clicked.code_view.value.replace("&quot;", '"')
    namespace = {}
    exec(code, namespace)  # runs the shown code for real: it trains into the same store
    original = clicked.store.get(run_id)
    assert namespace["config"] == original.config
    assert namespace["result"].config.config_hash() == original.config.config_hash()
    assert len(clicked.store) == 2


def test_teacher_dropdown_lists_stored_runs(clicked):
    run_id = clicked.store.frame()["run_id"].iloc[0]
    assert run_id in [value for _, value in clicked.controls["distill.teacher"].options]


def test_whole_store_toggle_shows_earlier_runs(clicked):
    fresh = Workbench(store=clicked.store, config=TINY)
    assert fresh.frame().empty and "No runs yet" in fresh.table.value
    fresh.scope.value = STORE
    assert len(fresh.table_frame()) == len(clicked.store) and fresh.figures


@pytest.mark.skipif(torch.cuda.is_available(), reason="fp16 is a valid choice where CUDA is present")
def test_fp16_on_cpu_is_explained_not_raised(store):
    panel = Workbench(store=store, config=TINY)
    panel.controls["hardware.device"].value = "cpu"
    panel.controls["hardware.precision"].value = "fp16"
    assert "fp16" in panel.message.value and "bf16" in panel.message.value
    assert panel.run_button.disabled
    panel.run_button.click()  # still clickable from code: it must explain, not raise
    assert panel.run_current() is None and len(store) == 0
    panel.controls["hardware.precision"].value = "bf16"
    assert not panel.run_button.disabled and "fp16" not in panel.message.value


def test_measure_device_all_is_accepted_and_a_missing_gpu_is_explained(store):
    panel = Workbench(store=store, config=TINY.replace(**{"measure.device": "all"}))
    assert panel.problem() is None and not panel.run_button.disabled
    if not torch.cuda.is_available():
        assert "CUDA" in panel.problem(TINY.replace(**{"measure.device": "cuda"}))


def test_a_failing_run_is_one_line_in_the_panel(store):
    panel = Workbench(store=store, config=TINY.replace(**{"data.dataset": "folder:/nonexistent/images.zip"}))
    panel.run_button.click()
    assert len(store) == 0
    assert "nonexistent" in panel.message.value and "Traceback" not in panel.message.value
    assert panel.message.value.count("\n") == 0


def test_state_lives_apart_from_the_view(store):
    panel = Workbench(store=store, config=TINY)
    panel.controls["model.depth"].value = 2
    panel.controls["data.augment.crop"].value = 1
    assert panel.config.model.depth == 2 and panel.config.data.augment.crop == 1
    panel.controls["model.depth"].value = 0  # "model default"
    assert panel.config.model.depth is None
    # Values outside a control's preset range still show exactly (the range widens).
    panel.config = TINY.replace(**{"train.lr": 3.0, "train.epochs": 400, "train.batch_size": 100})
    assert panel.controls["train.lr"].value == 3.0 and panel.controls["train.epochs"].value == 400
    assert panel.controls["train.batch_size"].value == 100
    assert panel.config == TINY.replace(**{"train.lr": 3.0, "train.epochs": 400, "train.batch_size": 100})


def test_save_and_load_round_trip(store, tmp_path):
    panel = Workbench(store=store, config=TINY)
    panel.controls["model.width"].value = 0.5
    panel.controls["data.augment.flip"].value = True
    panel.controls["hardware.precision"].value = "bf16"
    panel.config_path.value = str(tmp_path / "settings.json")
    panel.buttons["Save"].click()
    other = Workbench(store=store)
    other.load(tmp_path / "settings.json")
    assert other.config == panel.config
    assert other.controls["model.width"].value == 0.5 and other.controls["hardware.precision"].value == "bf16"
    other.config_path.value = str(tmp_path / "missing.json")
    other.buttons["Load"].click()
    assert "missing.json" in other.message.value and other.config == panel.config


def test_config_code_round_trips_every_section():
    steps = tuple(cls() for cls in step_types().values() if "image" in cls.tasks)  # the config is an image one
    config = RunConfig(
        name='a "quoted" name',
        data=DataConfig(fraction=0.5, selection="balanced", augment=AugmentConfig(flip=True, crop=2, rotate=10.0)),
        model=ModelConfig(name="resnet20", width=0.5, depth=2, batchnorm=False),
        train=TrainConfig(epochs=3, optimizer="adamw", lr=1e-3, schedule="onecycle", warmup_epochs=0.5),
        hardware=HardwareConfig(precision="bf16", channels_last=True),
        measure=MeasureConfig(batch_sizes=(1,), modes=("eager",)),
        distill=DistillConfig(teacher="20250101-000000-abcdef", alpha=0.5),
        compress=steps,
    )
    namespace = {}
    exec(config_code(config), namespace)
    assert namespace["config"] == config
    assert "RunConfig()" in config_code(RunConfig())  # defaults are left out


def test_compression_controls_come_from_the_registry(store):
    panel = Workbench(store=store, config=TINY)
    assert list(panel.step_kind.options) == steps_for("image")  # the registered steps for an image classifier
    panel.switch_task("lm")
    assert {"prune_gpt", "kv_int8"} <= set(panel.step_kind.options) and "static_int8" not in panel.step_kind.options
    panel.switch_task("image")
    kind = panel.step_kind.value  # fine-tuning: a step of every task
    fields = [f.name for f in dataclasses.fields(step_types()[kind])]
    assert list(panel.step_fields) == fields
    panel.buttons["Add step"].click()
    assert [step.kind for step in panel.config.compress] == [kind] and kind in panel.steps_view.value
    namespace = {}
    exec(config_code(panel.config), namespace)
    assert namespace["config"] == panel.config


def test_the_recommended_recipe_is_one_click_and_the_cli_names_it_alike(store):
    from workbench.compress import parse_steps, recommended_pruning

    panel = Workbench(store=store, config=TINY)
    panel.buttons["Add recommended pruning"].click()
    assert panel.config.compress == recommended_pruning() == parse_steps("recommended")
    assert "taylor" in panel.steps_view.value


def test_the_step_form_and_the_cli_read_steps_with_one_parser(store):
    panel = Workbench(store=store, config=TINY)
    panel.step_kind.value = "prune_structured"
    fields = {name: widget for name, (widget, _) in panel.step_fields.items()}
    fields["amount"].value, fields["steps"].value, fields["ignore"].value = 0.3, 2, "features.0+classifier"
    assert panel.add_step() == parse_step("prune_structured:amount=0.3,steps=2,ignore=features.0+classifier")
    fields["ignore"].value = "('features.0',)"  # what the form shows for a tuple, typed back
    assert panel.add_step().ignore == ("features.0",)
    fields["steps"].value = 0
    panel.buttons["Add step"].click()  # an impossible value is one line in the panel, not a traceback
    assert "StructuredPrune.steps" in panel.message.value and len(panel.config.compress) == 2
    fields["steps"].value, fields["ignore"].value = 1, "[features.0"  # text that does not parse
    panel.buttons["Add step"].click()
    assert "StructuredPrune" in panel.message.value and len(panel.config.compress) == 2
    fields["ignore"].value = ""
    panel.buttons["Add step"].click()  # fixed: the stale error goes
    assert "StructuredPrune" not in panel.message.value and len(panel.config.compress) == 3


def test_running_the_same_settings_again_reuses_the_training(clicked):
    again = Workbench(store=clicked.store, config=clicked.results[0].config.replace(name="again"))
    result = again.run_current()
    assert result.reused_from == clicked.results[0].run_id
    assert "reused the training" in again.progress_label.value
    assert [len(line.get_xdata()) for line in again.live.figure.axes[0].get_lines()] == [2, 2]  # the reused curves


# --- the Search tab ---------------------------------------------------------------------------------

SEARCH_BASE = TINY.replace(**{"hardware.threads": 1})


def small_space():
    from workbench.search import Choice, Float, Space

    return Space(
        {
            "model.width": Float(0.25, 1.0, step=0.25),
            "train.lr": Float(0.01, 0.3, log=True),
            "compress.quantize": Choice(["none", "dynamic_int8"]),
        }
    )


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """A search started the way a user starts it: the tab's controls set, Run search clicked."""
    store = ResultStore(tmp_path_factory.mktemp("search") / "runs")
    panel = Workbench(store=store, config=SEARCH_BASE, search_space=small_space())
    tab = panel.search_tab
    tab.controls["strategy"].value = "random"
    tab.controls["n_trials"].value = 3
    tab.controls["objectives"].value = ("size_bytes", "accuracy")  # picked in any order; accuracy stays the y axis
    tab.button.click()
    return panel


def test_search_button_fills_the_trial_table_and_the_pareto_chart(searched):
    tab = searched.search_tab
    result = tab.result
    assert result is not None, searched.message.value
    assert result.settings.objectives == ("accuracy", "size_bytes") and result.settings.strategy == "random"
    assert len(result.trials) == 3 and result.trials["baseline"].tolist() == [True, False, False]
    rows = searched.store.frame()
    assert len(rows) == 3 and set(rows["search_study"]) == {result.study.study_name}
    for run_id in rows["run_id"]:
        assert run_id in tab.table.value
    assert "baseline" in tab.table.value and "front" in tab.table.value
    points = {c.get_label(): len(c.get_offsets()) for c in tab.figure.axes[0].collections}
    assert points["trials"] == 3 and points["baseline"] == 1 and points["Pareto front"] == len(result.front) >= 1
    assert tab.progress.value == tab.progress.max == 3
    assert "3/3 trials" in tab.label.value and "best test accuracy" in tab.label.value
    assert result.study.study_name in searched.message.value


def test_the_search_redraws_after_every_trial(searched):
    assert searched.search_tab.redraws == [1, 2, 3, 3]  # each finished trial, then the study's own frame
    # One search() call with one sampler: calling search(n_trials=k) per trial instead re-seeds the
    # sampler each time, and random proposed the same configuration at every call.
    trials = searched.search_tab.result.trials
    assert not trials[[c for c in trials if c.startswith("param.")]].duplicated().any()


def test_search_code_reproduces_the_search(searched):
    code = searched.search_code()
    assert "search(" in code and "Space({" in code
    searched.code_run.value = "search"  # the panel's "code for" shows the same call
    assert code in searched.code_view.value.replace("&quot;", '"').replace("&#x27;", "'")
    namespace = {}
    exec(code, namespace)  # runs the shown search for real, into the same store
    again, first = namespace["result"], searched.search_tab.result
    assert again.study.study_name != first.study.study_name
    assert again.settings.to_dict() == first.settings.to_dict()
    params = [c for c in first.trials if c.startswith("param.")]
    assert again.trials[params].equals(first.trials[params])  # same sampler seed: the same trials


def test_search_code_with_the_default_space_runs(store):
    from workbench.search import default_space

    panel = Workbench(store=store, config=SEARCH_BASE)
    tab = panel.search_tab
    assert [value for _, value in tab.controls["strategy"].options] == ["greedy", "nsga2", "random", "tpe", "auto"]
    tab.controls["strategy"].value, tab.controls["n_trials"].value, tab.controls["seed"].value = "auto", 1, 3
    tab.controls["objectives"].value = ("accuracy",)
    tab.controls["timeout"].value = 600
    code = panel.search_code()
    assert "default_space()" in code and 'strategy="auto"' in code and "seed=3" in code and "timeout=600.0" in code
    namespace = {}
    exec(code, namespace)  # a budget of one: the baseline only
    result = namespace["result"]
    assert result.settings.space.to_dict() == default_space().to_dict()
    assert result.settings.base == panel.config and (result.settings.strategy, result.settings.seed) == (
        "tpe",
        3,
    )  # auto, one objective
    assert len(result.trials) == 1 and result.trials["baseline"].all()


def test_a_named_search_study_continues_with_a_larger_budget(store):
    panel = Workbench(store=store, config=SEARCH_BASE, search_space=small_space())
    tab = panel.search_tab
    tab.controls["strategy"].value, tab.controls["study_name"].value = "greedy", "grow"
    tab.controls["objectives"].value = ("accuracy", "size_bytes")
    tab.controls["n_trials"].value = 2
    assert len(panel.run_search().trials) == 2  # the headless path is the clicked path
    tab.controls["n_trials"].value = 3
    result = panel.run_search()
    assert result.study.study_name == "grow" and result.trials["trial"].tolist() == [0, 1, 2]
    assert tab.redraws == [3, 3]  # the live table started from the study's two earlier trials
    params = [c for c in result.trials if c.startswith("param.")]
    assert not result.trials[params].duplicated().any() and len(store) == 3


def test_a_search_that_cannot_start_is_one_line(store):
    panel = Workbench(store=store, config=SEARCH_BASE, search_space=small_space())
    panel.search_tab.controls["objectives"].value = ()
    panel.search_tab.button.click()
    assert panel.search_tab.result is None and "objective" in panel.message.value and len(store) == 0
    from workbench.search import Float, Space

    panel.search_tab.controls["objectives"].value = ("accuracy",)
    panel.search_space = Space({"model.widht": Float(0.25, 1.0)})
    assert panel.run_search() is None and "model.widht" in panel.message.value and "model.width" in panel.message.value


def test_the_language_model_task_trains_and_writes_text_in_the_panel(store):
    panel = Workbench(store=store)
    assert panel.writing.layout.display == "none"  # no prompt box for an image classifier
    panel.task.value = "lm"  # the task buttons: the gpt preset's settings
    assert panel.config.task == "lm" and panel.config.model.name == "gpt" and panel.writing.layout.display == ""
    assert panel.search_tab.settings()["objectives"] == ("perplexity", "size_bytes", "decode_tps")
    assert "model.n_embd" in panel.search_tab.space.params
    for path, value in {"model.depth": 1, "model.n_embd": 32, "model.block_size": 32, "train.steps": 200}.items():
        panel.controls[path].value = value
    panel.controls["train.epochs"].value = 1
    panel.controls["measure.iters"].value = 3
    panel.run_button.click()
    result = panel.results[-1]
    assert result.config.task == "lm" and "validation perplexity" in panel.message.value, panel.message.value
    assert "validation perplexity" in panel.table.value
    panel.prompt.value = "import "
    panel.new_tokens.value = 20
    panel.generate_button.click()
    shown = panel.generated.value
    assert shown.startswith("<pre class='wb-generated'>import ") and len(shown) > len(
        "<pre class='wb-generated'>import "
    )
    panel.task.value = "image"
    assert panel.config.task == "image" and panel.config.model.name == "cnn" and panel.writing.layout.display == "none"
