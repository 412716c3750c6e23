import itertools
import math

import pytest
import torch

from workbench import HardwareConfig, TrainConfig, load_dataset
from workbench.data import BatchLoader
from workbench.models import create_model
from workbench.train import Callback, Checkpoint, EarlyStopping, evaluate, schedule_factor, train
from workbench.train.optim import list_optimizers


def _digits_loaders(batch_size=64, seed=0):
    ds = load_dataset("digits")
    tr = BatchLoader(ds.train_x, ds.train_y, batch_size, shuffle=True, seed=seed, mean=ds.mean, std=ds.std)
    te = BatchLoader(ds.test_x, ds.test_y, 512, mean=ds.mean, std=ds.std)
    return ds, tr, te


def _mlp(seed=0):
    torch.manual_seed(seed)
    return create_model("mlp", 10, 1, 8)


@pytest.mark.parametrize("optimizer", list_optimizers())
def test_loss_goes_down_on_digits(optimizer):
    _, tr, te = _digits_loaders()
    lr = 0.05 if optimizer.startswith("sgd") else 2e-3
    out = train(_mlp(), tr, TrainConfig(epochs=3, optimizer=optimizer, lr=lr), eval_loader=te)
    losses = [h["train_loss"] for h in out.history]
    assert losses[-1] < losses[0] * 0.7
    assert out.history[-1]["test_accuracy"] > 0.8


def test_cpu_training_is_deterministic():
    accs = []
    for _ in range(2):
        _, tr, te = _digits_loaders(seed=3)
        model = _mlp(seed=3)
        train(model, tr, TrainConfig(epochs=2, seed=3), eval_loader=te)
        accs.append((evaluate(model, te)["accuracy"], [p.detach().clone() for p in model.parameters()]))
    assert accs[0][0] == accs[1][0]
    assert all(torch.equal(a, b) for a, b in zip(accs[0][1], accs[1][1]))


@pytest.mark.parametrize("schedule", ["constant", "step", "cosine", "onecycle"])
def test_schedules_start_and_end_where_expected(schedule):
    total, warmup = 100, 10
    assert schedule_factor(schedule, 0, total, warmup) == pytest.approx(0.1)  # first warm-up step
    peak = max(schedule_factor(schedule, s, total, warmup) for s in range(total))
    assert peak == pytest.approx(1.0)
    end = schedule_factor(schedule, total - 1, total, warmup)
    assert end <= 1.0 and (schedule == "constant" or end < 0.1)


def test_nan_loss_stops_with_history_kept():
    _, tr, te = _digits_loaders()
    out = train(_mlp(), tr, TrainConfig(epochs=5, lr=1e6, momentum=0.0, weight_decay=0), eval_loader=te)
    assert out.status.startswith("nan-loss")
    assert "lower the learning rate" in out.status
    assert 1 <= len(out.history) < 5


def test_early_stopping_callback_stops():
    _, tr, te = _digits_loaders()
    out = train(
        _mlp(),
        tr,
        TrainConfig(epochs=30, lr=1e-5),
        eval_loader=te,
        callbacks=[EarlyStopping(monitor="test_accuracy", patience=1, min_delta=0.05)],
    )
    assert out.status.startswith("early-stopped") and len(out.history) < 30


def test_callback_hooks_are_called():
    calls = []

    class Spy(Callback):
        def on_train_start(self, s):
            calls.append("start")

        def on_epoch_end(self, s, r):
            calls.append("epoch")

        def on_train_end(self, s):
            calls.append("end")

    _, tr, _ = _digits_loaders()
    train(_mlp(), tr, TrainConfig(epochs=2), callbacks=[Spy()])
    assert calls == ["start", "epoch", "epoch", "end"]


def test_resume_continues_from_checkpoint(tmp_path):
    ckpt = tmp_path / "ckpt.pt"

    class Interrupt(Callback):
        def on_epoch_end(self, s, r):
            if r["epoch"] == 2:
                s.stop = "interrupted"

    _, tr, te = _digits_loaders()
    first = train(_mlp(), tr, TrainConfig(epochs=4), eval_loader=te, callbacks=[Checkpoint(ckpt), Interrupt()])
    assert len(first.history) == 2
    _, tr, te = _digits_loaders()
    resumed = train(_mlp(), tr, TrainConfig(epochs=4), eval_loader=te, resume_from=str(ckpt))
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3, 4]


def test_fp16_on_cpu_fails_clearly():
    _, tr, _ = _digits_loaders()
    with pytest.raises(ValueError, match=r"fp16.*needs a CUDA GPU.*bf16"):
        train(_mlp(), tr, TrainConfig(epochs=1), hardware=HardwareConfig(precision="fp16"))


def test_bf16_and_channels_last_train_on_cpu():
    _, tr, te = _digits_loaders()
    torch.manual_seed(0)
    model = create_model("cnn", 10, 1, 8)
    out = train(
        model, tr, TrainConfig(epochs=2), eval_loader=te, hardware=HardwareConfig(precision="bf16", channels_last=True)
    )
    assert out.status == "ok" and out.history[-1]["test_accuracy"] > 0.5
    assert all(math.isfinite(h["train_loss"]) for h in out.history)


def test_onecycle_after_a_warm_up_descends_instead_of_restarting_from_zero():
    from workbench.train import TrainConfig, lr_curve

    lrs = lr_curve(TrainConfig(epochs=4, lr=0.1, schedule="onecycle", warmup_epochs=1), steps_per_epoch=4)
    assert lrs[3] == pytest.approx(0.1) and all(a >= b for a, b in itertools.pairwise(lrs[3:]))  # peak, then only down
    plain = lr_curve(TrainConfig(epochs=4, lr=0.1, schedule="onecycle"), steps_per_epoch=4)
    assert plain[0] == 0 and max(plain) == pytest.approx(0.1)  # without a warm-up, its own rise
