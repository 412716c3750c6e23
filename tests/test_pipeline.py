import pytest
import torch

from workbench import ModelConfig, RunConfig, TrainConfig, count_parameters, run


def _cfg(**changes):
    # One fixed thread: runs compared bit for bit must not differ in how torch split the work.
    return RunConfig(model=ModelConfig(name="mlp"), train=TrainConfig(epochs=2)).replace(
        **{"hardware.threads": 1, **changes}
    )


def test_run_stores_a_complete_row(store):
    r = run(_cfg(), store=store, progress=False)
    row = store.frame().iloc[0]
    for key in (
        "accuracy",
        "loss",
        "params",
        "nonzero_params",
        "size_bytes",
        "flops",
        "latency_ms",
        "throughput_ips",
        "measure_device_name",
        "measure_dtype",
        "torch_version",
        "train_seconds",
        "train_ips",
        "epochs_run",
    ):
        assert key in row and row[key] is not None, key
    assert row["accuracy"] > 0.8
    assert row["epochs_run"] == 2 and len(row["history"]) == 2
    assert {b["batch_size"] for b in row["benchmarks"]} == {1, 64}
    state = torch.load(r.checkpoint, weights_only=True)  # plain tensors and values only
    assert RunConfig.from_dict(state["metadata"]["config"]) == r.config and state["state_dict"]
    assert (
        r.checkpoint == r.trained_checkpoint
        and r.checkpoint_format == "state_dict"
        and row["checkpoint_format"] == "state_dict"
    )


def test_same_config_same_accuracy():
    a = run(_cfg(), store=None, progress=False).metrics["accuracy"]
    b = run(_cfg(), store=None, progress=False).metrics["accuracy"]
    assert a == b


@pytest.mark.parametrize("selection", ["random", "balanced", "hardest", "easiest"])
def test_data_selection_trains_on_the_fraction(selection):
    r = run(_cfg(**{"data.fraction": 0.25, "data.selection": selection}), store=None, progress=False)
    assert r.metrics["train_examples"] == pytest.approx(0.25 * 1437, abs=10)
    assert r.metrics["accuracy"] > 0.3


def _interrupt_after_first_epoch(monkeypatch):
    """Make the second epoch's evaluation raise, as a Ctrl-C there would: epoch 1 is checkpointed."""
    from workbench.train import loop

    real_evaluate, calls = loop.evaluate, {"n": 0}

    def flaky(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real_evaluate(*a, **k)

    monkeypatch.setattr(loop, "evaluate", flaky)


def test_interrupted_run_resumes(store, monkeypatch):
    cfg = _cfg(**{"train.epochs": 3})
    _interrupt_after_first_epoch(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        run(cfg, store=store, progress=False)
    monkeypatch.undo()
    assert len(store) == 0 and list((store.root / "checkpoints").glob("in-progress-*.pt"))
    r = run(cfg, store=store, progress=False)
    assert [h["epoch"] for h in r.history] == [1, 2, 3]
    assert not list((store.root / "checkpoints").glob("in-progress-*.pt"))
    assert r.history[0]["seconds"] > 0


@pytest.mark.parametrize(
    "changes",
    [
        {},
        # dropout draws from the global generator, augmentation and shuffling from the loader's
        {
            "model.name": "cnn",
            "model.width": 0.25,
            "model.dropout": 0.3,
            "data.augment.crop": 1,
            "data.augment.cutout": 2,
        },
    ],
    ids=["mlp", "cnn-dropout-augment"],
)
def test_resumed_run_ends_with_the_same_weights_bit_for_bit(tmp_path, monkeypatch, changes):
    from workbench import load_model

    cfg = _cfg(**{"train.epochs": 3, **changes})
    straight = run(cfg, store=tmp_path / "straight", progress=False)
    _interrupt_after_first_epoch(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        run(cfg, store=tmp_path / "resumed", progress=False)
    monkeypatch.undo()
    resumed = run(cfg, store=tmp_path / "resumed", progress=False)
    assert resumed.reused_from is None and [h["epoch"] for h in resumed.history] == [1, 2, 3]
    a, b = load_model(straight).state_dict(), load_model(resumed).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), "resume is not exact"
    assert resumed.metrics["accuracy"] == straight.metrics["accuracy"]
    strip = lambda h: [{k: v for k, v in e.items() if k not in ("seconds", "elapsed_s", "images_per_s")} for e in h]
    assert strip(resumed.history) == strip(straight.history)


def test_a_finished_training_is_reused_not_repeated(store):
    from workbench import UnstructuredPrune, load_model

    first = run(_cfg(name="first"), store=store, progress=False)
    again = run(
        _cfg(name="again", **{"measure.iters": 3}), store=store, progress=False
    )  # timing settings are not training
    assert first.reused_from is None and again.reused_from == first.run_id
    assert again.checkpoint == first.checkpoint == again.trained_checkpoint
    assert again.history == first.history and again.metrics["train_seconds"] == first.metrics["train_seconds"]
    assert again.metrics["accuracy"] == first.metrics["accuracy"]
    assert store.frame().set_index("name").loc["again", "reused_from"] == first.run_id
    # a compressed variant starts from the same weights; the reuse chain names the run that trained
    pruned = run(_cfg(name="pruned", compress=[UnstructuredPrune(0.5)]), store=store, progress=False)
    assert pruned.reused_from == first.run_id and pruned.trained_checkpoint == first.trained_checkpoint
    sparse = count_parameters(load_model(pruned))  # the stored model is the pruned one
    assert pruned.checkpoint != first.checkpoint and sparse["nonzero_params"] < 0.6 * sparse["params"]
    # another training setting, or reuse=False, trains
    other = run(_cfg(name="other", **{"train.lr": 0.01}), store=store, progress=False)
    forced = run(_cfg(name="forced"), store=store, progress=False, reuse=False)
    assert other.reused_from is None and forced.reused_from is None and forced.checkpoint != first.checkpoint
    assert torch.equal(
        _first_weight(load_model(forced)), _first_weight(load_model(first))
    )  # CPU training is deterministic


def _first_weight(model):
    return next(p for p in model.parameters() if p.dim() == 2)


def test_compressing_a_reused_training_gives_what_a_fresh_one_gives(tmp_path):
    from workbench import FineTune, StructuredPrune

    steps = [StructuredPrune(0.5), FineTune(epochs=1)]
    fresh = run(_cfg(compress=steps, **{"model.dropout": 0.2}), store=tmp_path / "a", progress=False)
    run(_cfg(**{"model.dropout": 0.2}), store=tmp_path / "b", progress=False)
    reused = run(_cfg(compress=steps, **{"model.dropout": 0.2}), store=tmp_path / "b", progress=False)
    assert reused.reused_from and fresh.reused_from is None
    assert (
        reused.metrics["accuracy"] == fresh.metrics["accuracy"] and reused.metrics["params"] == fresh.metrics["params"]
    )


def test_start_from_a_stored_run(store):
    from workbench import ConfigError, UnstructuredPrune

    base = run(_cfg(name="base"), store=store, progress=False)
    stored = store.get(base.run_id)
    variant = run(
        stored.config.replace(name="sparse", compress=[UnstructuredPrune(0.3)]),
        store=store,
        progress=False,
        start_from=base.run_id,
    )
    assert variant.reused_from == base.run_id and variant.metrics["nonzero_params"] < base.metrics["nonzero_params"]
    with pytest.raises(ConfigError, match="other data/model/train"):
        run(_cfg(**{"train.lr": 0.2}), store=store, progress=False, start_from=base.run_id)
    with pytest.raises(KeyError, match="No result 'nope'"):
        run(_cfg(), store=store, progress=False, start_from="nope")


def test_every_number_a_run_records_is_in_the_metrics_schema():
    from workbench import METRICS, FineTune, StructuredPrune

    r = run(_cfg(compress=[StructuredPrune(0.5), FineTune(epochs=1)]), store=None, progress=False)
    numbers = {k for k, v in r.metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    assert numbers <= set(METRICS), numbers - set(METRICS)
    history = {k for h in r.history for k, v in h.items() if isinstance(v, (int, float)) and k != "epoch"}
    assert history <= set(METRICS), history - set(METRICS)


def test_preflight_stops_a_run_before_any_data_is_loaded(monkeypatch):
    from workbench import ConfigError, StaticInt8, preflight, tasks

    monkeypatch.setattr(tasks, "load_dataset", lambda *a, **k: pytest.fail("data was loaded"))
    bad = _cfg(**{"hardware.device": "cpu", "hardware.precision": "fp16"})
    assert preflight(bad).problems and not preflight(bad).ok
    with pytest.raises(ConfigError, match="fp16"):
        run(bad, store=None, progress=False)
    with pytest.raises(ConfigError, match="neither a checkpoint file nor a stored run"):
        run(_cfg(**{"distill.teacher": "no-such-run"}), store=None, progress=False)
    if not torch.cuda.is_available():
        return
    gpu_int8 = _cfg(compress=[StaticInt8()], **{"hardware.device": "cuda"})  # int8 kernels are CPU kernels
    assert any("StaticInt8" in p for p in preflight(gpu_int8).problems)


def test_a_run_uses_and_records_the_thread_policy(monkeypatch):
    from workbench.train import threads as policy

    monkeypatch.setattr(policy, "available_cores", lambda: 4)
    monkeypatch.setattr(policy, "load_average", lambda: 2.2)  # two cores already busy
    assert policy.resolve_threads("auto") == 2 and policy.resolve_threads(3) == 3
    monkeypatch.setattr(policy, "load_average", lambda: 7.0)
    assert policy.resolve_threads("auto") == 1  # never fewer than one
    before = torch.get_num_threads()
    r = run(_cfg(**{"hardware.threads": 1, "train.epochs": 1}), store=None, progress=False)
    assert r.metrics["threads"] == 1 and {b["threads"] for b in r.benchmarks} == {1}
    assert all("load_average" in b and "relative_spread" in b and "noisy" in b for b in r.benchmarks)
    assert torch.get_num_threads() == before  # restored after the run


def test_the_generalisation_gap_comes_from_an_eval_mode_pass_over_the_unaugmented_training_examples():
    from workbench import AugmentConfig

    # Strong augmentation and dropout make the running (train-mode, augmented) accuracy a poor stand-in.
    cfg = _cfg(**{"data.augment": AugmentConfig(cutout=4, rotate=20.0), "model.dropout": 0.5, "data.fraction": 0.5})
    r = run(cfg, store=None, progress=False)
    m = r.metrics
    assert m["generalization_gap"] == pytest.approx(m["train_eval_accuracy"] - m["accuracy"])
    assert m["train_eval_accuracy"] != m["train_accuracy"]
    assert m["train_examples"] == 718 and m["steps_per_epoch"] == 12  # 718 examples in batches of 64


def test_the_eval_loader_takes_chosen_training_examples():
    from workbench.data import DataConfig as D
    from workbench.data import eval_loader, load_dataset

    data = load_dataset("digits")
    loader = eval_loader(data, D(), split="train", indices=torch.tensor([3, 1, 4]))
    assert loader.y.tolist() == data.train_y[[3, 1, 4]].tolist()


def test_run_many_times_its_models_together_and_trains_a_shared_training_once(store, monkeypatch):
    from workbench import FineTune, StructuredPrune, run_many
    from workbench.measure import bench

    seen = []
    real = bench.benchmark_together
    monkeypatch.setattr(
        bench, "benchmark_together", lambda models, *a, **k: seen.append(len(models)) or real(models, *a, **k)
    )
    base = _cfg(name="base")
    df = run_many(
        [
            base,
            base.replace(name="pruned", compress=[StructuredPrune(0.25), FineTune(epochs=1)]),
            base.replace(**{"name": "wider", "model.width": 2.0}),
        ],
        store=store,
        progress=False,
    )
    assert seen == [3]  # one interleaved timing of all three
    assert df["reused_from"].tolist()[1] == df["run_id"].tolist()[0] and df["reused_from"].isna().tolist() == [
        True,
        False,
        True,
    ]
    assert len(store.results()) == 3
