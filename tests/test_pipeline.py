import json

import pytest
import torch

from workbench import DataConfig, ModelConfig, RunConfig, TrainConfig, run


def _cfg(**changes):
    return RunConfig(model=ModelConfig(name="mlp"), train=TrainConfig(epochs=2)).replace(**changes)


def test_run_stores_a_complete_row(store):
    r = run(_cfg(), store=store, progress=False)
    row = store.frame().iloc[0]
    for key in ("accuracy", "loss", "params", "nonzero_params", "size_bytes", "flops", "latency_ms", "throughput_ips",
                "measure_device_name", "measure_dtype", "torch_version", "train_seconds", "train_ips", "epochs_run"):
        assert key in row and row[key] is not None, key
    assert row["accuracy"] > 0.8
    assert row["epochs_run"] == 2 and len(row["history"]) == 2
    assert {b["batch_size"] for b in row["benchmarks"]} == {1, 64}
    state = torch.load(r.checkpoint, weights_only=True)  # plain tensors and values only
    assert RunConfig.from_dict(state["metadata"]["config"]) == r.config and state["state_dict"]
    assert r.checkpoint == r.trained_checkpoint and r.checkpoint_format == "state_dict" and row["checkpoint_format"] == "state_dict"


def test_same_config_same_accuracy():
    a = run(_cfg(), store=None, progress=False).metrics["accuracy"]
    b = run(_cfg(), store=None, progress=False).metrics["accuracy"]
    assert a == b


@pytest.mark.parametrize("selection", ["random", "balanced", "hardest", "easiest"])
def test_data_selection_trains_on_the_fraction(selection):
    r = run(_cfg(**{"data.fraction": 0.25, "data.selection": selection}), store=None, progress=False)
    assert r.metrics["train_examples"] == pytest.approx(0.25 * 1437, abs=10)
    assert r.metrics["accuracy"] > 0.3


def test_interrupted_run_resumes(store, monkeypatch):
    from workbench.train import loop

    cfg = _cfg(**{"train.epochs": 3})
    real_evaluate = loop.evaluate
    calls = {"n": 0}

    def flaky(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real_evaluate(*a, **k)

    monkeypatch.setattr(loop, "evaluate", flaky)
    with pytest.raises(KeyboardInterrupt):
        run(cfg, store=store, progress=False)
    monkeypatch.undo()
    assert len(store) == 0 and list((store.root / "checkpoints").glob("in-progress-*.pt"))
    r = run(cfg, store=store, progress=False)
    assert [h["epoch"] for h in r.history] == [1, 2, 3]
    assert not list((store.root / "checkpoints").glob("in-progress-*.pt"))
    assert r.history[0]["seconds"] > 0
