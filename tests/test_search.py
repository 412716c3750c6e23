"""Model search: bad spaces fail in one line before any training; conditionals, greedy steps,
constraints and pruning behave as documented on real trials; a study killed with kill -9 resumes
with no finished trial lost or run twice; strategies compare by hypervolume."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

optuna = pytest.importorskip("optuna")

from workbench import ConfigError, ModelConfig, RunConfig, TrainConfig  # noqa: E402
from workbench.report import ResultStore  # noqa: E402
from workbench.search import (  # noqa: E402 - after the optuna importorskip
    Choice,
    Float,
    Int,
    Space,
    compare_strategies,
    default_space,
    hypervolume,
    non_dominated,
    search,
)

pytestmark = pytest.mark.usefixtures("one_thread")
TINY = RunConfig(model=ModelConfig(name="mlp"), train=TrainConfig(epochs=1)).replace(
    **{"measure.iters": 3, "measure.warmup": 1, "measure.batch_sizes": [64], "hardware.threads": 1}
)
PRUNE = {"compress.prune": Choice(["none", "prune_structured"]), "compress.prune.amount": Float(0.25, 0.75, step=0.25)}


@pytest.mark.parametrize(
    "params, message",
    [
        ({}, "The search space is empty"),
        ({"model.name": Choice([])}, "'model.name' has no choices"),
        ({"train.lr": Float(0.3, 0.01)}, "'train.lr' has low 0.3 > high 0.01: swap them"),
        ({"train.lrr": Float(0.01, 0.3)}, "Unknown config field 'train.lrr'. Did you mean 'train.lr'?"),
        ({"train.lr": Float(-1.0, 0.1)}, "'train.lr' = -1.0 is refused by the config: train.lr must be > 0"),
        (
            {"model.name": Choice(["cnn", "resnet"])},
            "'model.name' = 'resnet' is refused by the config: Unknown model 'resnet'",
        ),
        ({"compress.prune": Choice(["none", "prune_magic"])}, "Unknown compression step 'prune_magic'"),
        ({"compress.prune.amount": Float(0.1, 0.5)}, "a compression key is compress.SLOT"),
        (
            {"compress.prune.amount": Float(0.1, 0.5), "compress.prune": Choice(["none", "prune_structured"])},
            "compress.SLOT.FIELD after its slot",
        ),
        (
            {"compress.prune": Choice(["none", "prune_structured"]), "compress.prune.amont": Float(0.1, 0.5)},
            "StructuredPrune has no field 'amont'",
        ),
        (
            {"compress.prune": Choice(["none", "prune_structured"]), "compress.prune.amount": Float(0.1, 1.5)},
            "StructuredPrune.amount must be in (0, 1)",
        ),
        ({"compress.prune": Float(0.1, 0.5)}, "is a compression slot: make it a Choice"),
        ({"train.lr": Float(0, 0.1, log=True)}, "on a log scale, so low must be > 0"),
        ({"train.epochs": Int(1, 2.5)}, "'train.epochs' needs whole numbers"),
        ({"model.width": Float(0.0, 1.0)}, "'model.width' = 0.0 is refused by the config: model.width must be > 0"),
        (
            {"distill.alpha": Choice([0.5], when={"distill.teacher": ["run"]}), "distill.teacher": Choice(["", "run"])},
            "its condition names 'distill.teacher', which must be a key written before it",
        ),
        ({"train.lr": (0.01, 0.3)}, "is not a Choice, Int or Float"),
    ],
)
def test_a_bad_space_fails_in_one_line_naming_the_key_before_any_training(params, message, tmp_path):
    with pytest.raises(ConfigError) as e:
        search(Space(params), base=TINY, n_trials=2, store=tmp_path, progress=False)
    assert message in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "results").exists()  # nothing trained


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"strategy": "annealing"}, "Unknown search strategy 'annealing'"),
        ({"objectives": ["acc"]}, "Unknown objective 'acc'. Did you mean 'accuracy'?"),
        ({"objectives": []}, "Give at least one objective"),
        ({"constraints": {"sizee": 1}}, "Unknown objective 'sizee'"),
        ({"n_trials": 0}, "n_trials must be a whole number >= 1"),
        ({"storage": "postgresql+psycopg://nobody@127.0.0.1:1/none"}, "Cannot open the study storage"),
    ],
)
def test_bad_search_settings_fail_in_one_line(kwargs, message, tmp_path):
    with pytest.raises((ConfigError, ValueError)) as e:
        search(
            Space({"model.width": Float(0.5, 1.0)}),
            base=TINY,
            store=tmp_path,
            progress=False,
            **{"n_trials": 2, **kwargs},
        )
    assert message in str(e.value) and "\n" not in str(e.value)


def test_the_default_space_spans_architecture_training_and_compression_and_survives_its_own_check():
    space = default_space()
    sections = {k.split(".")[0] for k in space.params}
    assert {"model", "train", "data", "compress"} <= sections
    space.check(RunConfig())
    assert Space.from_dict(json.loads(json.dumps(space.to_dict()))).to_dict() == space.to_dict()
    with pytest.raises(ValueError, match="Unknown model 'resnet'"):
        default_space(models=["mlp", "resnet"])


def test_trials_are_ordinary_runs_each_pointing_at_its_row_and_conditionals_sample_only_when_active(tmp_path):
    space = Space({"model.width": Float(0.25, 1.0, step=0.25), **PRUNE})
    s = search(
        space,
        base=TINY,
        strategy="random",
        objectives=["accuracy", "size_bytes"],
        n_trials=6,
        seed=3,
        store=tmp_path,
        progress=False,
    )
    t = s.trials
    assert len(t) == 6 and t["baseline"].tolist() == [True] + [False] * 5
    assert set(t["trial_state"]) == {"COMPLETE"}
    pruning = t["param.compress.prune"] == "prune_structured"
    assert pruning.any() and (~pruning).any()
    assert t.loc[pruning, "param.compress.prune.amount"].notna().all()
    assert t.loc[~pruning, "param.compress.prune.amount"].isna().all()  # never sampled with pruning off
    rows = {r.run_id: r for r in ResultStore(tmp_path).results()}
    for _, trial in t.iterrows():  # the trial names its row and the row names its trial
        assert rows[trial["run_id"]].tags == {"search_study": s.study.study_name, "search_trial": trial["trial"]}
        assert rows[trial["run_id"]].config.compress != () or not pruning[_]
    assert len(rows) == 6
    # The baseline is the base config itself; the front is what no trial dominates.
    assert rows[t.loc[0, "run_id"]].config.replace(name="") == TINY
    front_costs = np.column_stack([-s.front["accuracy"], s.front["size_bytes"]])
    assert non_dominated(front_costs).all() and len(s.front) >= 1


def test_greedy_changes_one_knob_at_a_time_from_the_baseline_and_stops_when_no_neighbour_improves(tmp_path):
    space = Space({"model.width": Choice([0.5, 1.0]), "train.lr": Choice([0.05, 0.2])})
    s = search(
        space,
        base=TINY,
        strategy="greedy",
        objectives=["accuracy", "size_bytes"],
        n_trials=10,
        store=tmp_path,
        progress=False,
    )
    params = s.trials[["param.model.width", "param.train.lr"]].to_numpy()
    assert tuple(params[0]) == (1.0, 0.05)  # the base config's own values
    for row in params[1:]:  # every later trial is one knob away from an earlier one
        assert any((row != earlier).sum() == 1 for earlier in params[: list(map(tuple, params)).index(tuple(row))])
    assert len({tuple(p) for p in params}) == len(params)  # no configuration tried twice
    assert s.note.startswith("greedy converged") and len(s.trials) < 10


def test_constraints_keep_infeasible_trials_off_the_front(tmp_path):
    space = Space({"model.width": Choice([0.25, 0.5, 1.0])})
    base_size = None
    s = search(
        space,
        base=TINY,
        strategy="random",
        objectives=["accuracy"],
        constraints={"size_bytes": 150_000},
        n_trials=5,
        seed=1,
        store=tmp_path,
        progress=False,
    )
    t = s.trials
    base_size = t.loc[t["baseline"], "size_bytes"].iloc[0]
    assert base_size > 150_000 and not t.loc[t["baseline"], "feasible"].iloc[0]
    assert (t["feasible"] == (t["size_bytes"] <= 150_000)).all()
    assert len(s.front) and (s.front["size_bytes"] <= 150_000).all()


def test_poor_trials_are_pruned_from_their_per_epoch_accuracy(tmp_path):
    base = TINY.replace(**{"train.epochs": 3})
    # 1e-6 learns nothing in 3 epochs; distinct seeds keep trials from reusing an earlier trial's training
    space = Space({"train.lr": Choice([0.05, 1e-6]), "train.seed": Int(0, 10_000)})
    s = search(
        space, base=base, strategy="random", objectives=["accuracy"], n_trials=8, seed=0, store=tmp_path, progress=False
    )
    t = s.trials
    late_hopeless = t[(t["param.train.lr"] == 1e-6) & (t["trial"] >= 4)]  # after the pruner's 3 startup trials
    assert len(late_hopeless) and (late_hopeless["trial_state"] == "PRUNED").all()
    rows = {r.run_id: r for r in ResultStore(tmp_path).results()}
    for run_id in late_hopeless["run_id"]:
        assert rows[run_id].status == "pruned" and len(rows[run_id].history) < 3
    assert (t.loc[t["param.train.lr"] == 0.05, "trial_state"] == "COMPLETE").all()


def test_a_trial_whose_process_died_after_storing_its_row_is_told_that_row_not_run_again(tmp_path):
    from workbench import run
    from workbench.search.study import load_study

    space = Space({"model.width": Choice([0.5, 1.0])})
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    search(
        space,
        base=TINY,
        strategy="random",
        objectives=["accuracy"],
        n_trials=3,
        timeout=0,
        storage=storage,
        study_name="died",
        store=tmp_path,
        progress=False,
    )
    study, _ = load_study("died", storage, store=ResultStore(tmp_path))
    trial = study.ask()  # the enqueued baseline, asked by a process that then died before telling
    dead = subprocess.Popen(["true"])
    dead.wait()
    trial.set_user_attr("worker", f"{os.uname().nodename}:{dead.pid}")
    width = trial.suggest_categorical("model.width", [0.5, 1.0])
    row = run(
        TINY.replace(**{"model.width": width}),
        store=tmp_path,
        progress=False,
        tags={"search_study": "died", "search_trial": trial.number},
    )
    s = search(
        space,
        base=TINY,
        strategy="random",
        objectives=["accuracy"],
        n_trials=3,
        storage=storage,
        study_name="died",
        store=tmp_path,
        progress=False,
    )
    assert s.trials.loc[0, "run_id"] == row.run_id and s.trials.loc[0, "trial_state"] == "COMPLETE"
    assert s.trials.loc[0, "accuracy"] == row.metrics["accuracy"]
    assert len(ResultStore(tmp_path)) == 3 == len(s.trials)  # 1 recovered + 2 new runs, none repeated


def test_a_search_killed_with_kill_9_resumes_losing_and_repeating_no_finished_trial(tmp_path):
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    (tmp_path / "space.json").write_text(
        json.dumps(
            Space({"model.width": Float(0.25, 1.0, step=0.125), "train.lr": Float(0.01, 0.2, log=True)}).to_dict()
        )
    )
    command = [
        sys.executable,
        "-m",
        "workbench.cli",
        "search",
        "run",
        "--model",
        "mlp",
        "--epochs",
        "20",
        "--measure-iters",
        "3",
        "--threads",
        "1",
        "--strategy",
        "random",
        "--trials",
        "6",
        "--study",
        "killed",
        "--storage",
        storage,
        "--store",
        str(tmp_path),
        "--space",
        str(tmp_path / "space.json"),
        "--objectives",
        "accuracy,size_bytes",
        "--no-progress",
    ]
    log = (tmp_path / "first.log").open("w")
    # 20 epochs: a trial lasts seconds, so the kill lands mid-study (at 4 epochs a clean clone finished all 6 first)
    first = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)

    def trials(states):
        study = optuna.load_study(study_name="killed", storage=storage)
        return [t for t in study.get_trials(deepcopy=False) if t.state.name in states]

    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:  # kill it while a trial is running, after two have finished
        time.sleep(0.2)
        try:
            if len(trials({"COMPLETE"})) >= 2 and trials({"RUNNING"}):
                break
        except Exception:  # noqa: BLE001 - a study or database not created yet fails in many ways: poll again
            pass
        assert first.poll() is None, (tmp_path / "first.log").read_text()[-2000:]
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    log.close()
    finished_before = {t.number: t.user_attrs["run_id"] for t in trials({"COMPLETE"})}
    killed = [t.number for t in trials({"RUNNING"})]  # none only if the kill fell between a tell and the next ask
    assert len(finished_before) >= 2 and len(killed) <= 1

    second = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-2000:]
    done = trials({"COMPLETE"})
    assert len(done) == 6  # the budget, with nothing lost
    assert {t.number: t.user_attrs["run_id"] for t in done if t.number in finished_before} == finished_before
    rows = ResultStore(tmp_path).results()
    by_trial = [r.tags["search_trial"] for r in rows]
    assert len(by_trial) == len(set(by_trial))  # no trial has two rows: none ran twice
    assert {t.user_attrs["run_id"] for t in done} <= {r.run_id for r in rows}
    interrupted = [t for t in trials({"FAIL"}) if t.user_attrs.get("interrupted")]
    if not killed or killed[0] in {t.number for t in done}:  # nothing in flight, or its row was stored: told, not rerun
        assert not interrupted
    else:  # it never finished: failed as interrupted and retried with the same parameters
        assert [t.number for t in interrupted] == killed
        retry = next(t for t in done if t.user_attrs.get("retry_of") == killed[0])
        assert retry.params == interrupted[0].params
    assert "study killed (random): 6 trials" in second.stdout


def test_compare_strategies_gives_each_the_same_budget_and_a_hypervolume_in_one_box(tmp_path):
    space = Space({"model.width": Choice([0.25, 0.5, 1.0]), **PRUNE})
    c = compare_strategies(
        ["random", "greedy", "nsga2"],
        n_trials=4,
        seeds=[0, 1],
        space=space,
        base=TINY,
        objectives=["accuracy", "size_bytes"],
        store=tmp_path,
        progress=False,
    )
    table = c.table
    assert list(table.index) == ["random", "greedy", "nsga2"] and (table["seeds"] == 2).all()
    assert ((c.runs["hypervolume"] >= 0) & (c.runs["hypervolume"] <= 1)).all()
    for _, h in c.history.groupby(["strategy", "seed"]):  # a study's hypervolume never falls as trials are added
        assert (np.diff(h["hypervolume"]) >= -1e-12).all()
    assert c.reference["size_bytes"] > c.ideal["size_bytes"] and c.reference["accuracy"] < c.ideal["accuracy"]
    fig = c.chart()
    assert "reference point" in fig.axes[0].get_title() and fig.axes[0].get_ylabel().startswith("hypervolume")


def test_hypervolume_is_the_dominated_share_of_the_box():
    pts = np.array([[0.2, 0.6], [0.6, 0.2]])  # two rectangles overlapping in [0.6,1]x[0.6,1]
    assert hypervolume(pts, reference=[1, 1], ideal=[0, 0]) == pytest.approx(0.8 * 0.4 * 2 - 0.4 * 0.4)
    assert hypervolume(np.array([[1.5, 0.1]]), reference=[1, 1], ideal=[0, 0]) == 0.0  # beyond the reference


def test_a_study_reads_the_same_from_a_machine_whose_store_holds_none_of_its_rows(tmp_path):
    from workbench.search import show

    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    here = search(
        Space({"model.width": Choice([0.5, 1.0])}),
        base=TINY,
        strategy="random",
        objectives=["accuracy", "loss"],
        n_trials=3,
        storage=storage,
        study_name="elsewhere",
        store=tmp_path / "a",
        progress=False,
    )
    there = show("elsewhere", storage, store=tmp_path / "b")  # another machine: its store is empty
    assert there.trials["run_id"].tolist() == here.trials["run_id"].tolist()
    assert there.trials[["accuracy", "loss"]].equals(here.trials[["accuracy", "loss"]])
    assert there.front["trial"].tolist() == here.front["trial"].tolist()


def test_auto_is_tpe_for_one_objective_and_nsga2_for_several(tmp_path):
    space = Space({"model.width": Choice([0.5, 1.0])})
    one = search(
        space, base=TINY, objectives=["accuracy"], n_trials=1, storage="memory", store=tmp_path, progress=False
    )
    two = search(
        space,
        base=TINY,
        objectives=["accuracy", "size_bytes"],
        n_trials=1,
        storage="memory",
        store=tmp_path,
        progress=False,
    )
    assert (one.settings.strategy, two.settings.strategy) == ("tpe", "nsga2")
    assert type(one.study.sampler).__name__ == "TPESampler" and type(two.study.sampler).__name__ == "NSGAIISampler"


def test_a_continued_study_proposes_new_trials_and_reports_each_one(tmp_path):
    space = Space({"model.width": Float(0.25, 1.0, step=0.05), "train.lr": Float(0.01, 0.2, log=True)})
    seen = []
    kw = {
        "base": TINY,
        "strategy": "random",
        "objectives": ["accuracy"],
        "storage": f"sqlite:///{tmp_path / 's.db'}",
        "study_name": "grow",
        "store": tmp_path,
        "progress": False,
        "on_trial": lambda r: seen.append(len(r.trials)),
    }
    search(space, n_trials=3, **kw)
    s = search(space, n_trials=6, **kw)  # a raised budget: three more, not the first three again
    params = [tuple(p) for p in s.trials[["param.model.width", "param.train.lr"]].to_numpy()]
    assert len(params) == 6 and len(set(params)) == 6
    assert seen == [1, 2, 3, 4, 5, 6]
    assert all(
        str(w) == str(round(w, 2)) for w, _ in params
    )  # grid values read as written: 0.6, not 0.6000000000000001
    assert s.settings.shaped_for == 3  # the sampler keeps the shape the study began with


def test_a_default_study_name_never_continues_another_study(tmp_path):
    """Names are STRATEGY-DATASET-TIME to the second: a second search in the same second gets -2,
    not the first's study."""
    import optuna

    from workbench.search.study import _unused_name

    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'studies.db'}")
    names = []
    for _ in range(3):
        names.append(_unused_name("random-digits-20261206-152116", storage))
        optuna.create_study(study_name=names[-1], storage=storage)
    assert names == [
        "random-digits-20261206-152116",
        "random-digits-20261206-152116-2",
        "random-digits-20261206-152116-3",
    ]
