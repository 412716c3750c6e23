"""Distillation loss and teacher loading."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from workbench import ModelConfig, Result, RunConfig, TrainConfig, create_model, load_dataset, train
from workbench.pipeline import load_teacher
from workbench.report.checkpoint import load_checkpoint, save_checkpoint
from workbench.train import distillation_loss


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    return torch.randn(16, 10, generator=g), torch.randn(16, 6, generator=g), torch.randint(0, 10, (16,), generator=g)


def test_alpha_zero_is_exactly_cross_entropy(batch):
    logits, x, y = batch
    teacher = nn.Linear(6, 10)
    assert torch.equal(distillation_loss(teacher, alpha=0.0, temperature=4.0)(logits, x, y), F.cross_entropy(logits, y))
    smooth = distillation_loss(teacher, alpha=0.0, temperature=4.0, label_smoothing=0.1)(logits, x, y)
    assert torch.equal(smooth, F.cross_entropy(logits, y, label_smoothing=0.1))


def test_loss_matches_the_formula(batch):
    logits, x, y = batch
    teacher = nn.Linear(6, 10)
    alpha, t = 0.7, 3.0
    with torch.no_grad():
        soft_targets = F.softmax(teacher(x) / t, dim=1)
    kl = F.kl_div(F.log_softmax(logits / t, dim=1), soft_targets, reduction="batchmean")
    expected = alpha * t**2 * kl + (1 - alpha) * F.cross_entropy(logits, y)
    assert torch.allclose(distillation_loss(teacher, alpha=alpha, temperature=t)(logits, x, y), expected, atol=1e-6)


def test_temperature_squared_keeps_the_soft_term_from_vanishing(batch):
    # At high T, KL shrinks like 1/T^2; times T^2 it tends to logit matching:
    # (1 / 2C) * sum_i (d_i - mean(d))^2 with d = teacher - student logits (Hinton et al., 2015).
    logits, x, y = (t.double() if t.is_floating_point() else t for t in batch)  # float32 cancels out at T=1000
    teacher = nn.Linear(6, 10).double()
    with torch.no_grad():
        d = teacher(x) - logits
    limit = ((d - d.mean(1, keepdim=True)) ** 2).sum(1).mean() / (2 * logits.shape[1])
    soft = [distillation_loss(teacher, alpha=1.0, temperature=t)(logits, x, y) for t in (10.0, 100.0, 1000.0)]
    assert abs(soft[-1] / limit - 1) < 1e-2
    assert abs(soft[0] / limit - 1) < 0.2  # already close at T=10: the scale does not depend on T


def test_teacher_is_frozen_in_eval_mode_and_gets_no_gradient(batch):
    _, x, y = batch
    teacher = nn.Sequential(nn.Linear(6, 32), nn.Dropout(0.5), nn.BatchNorm1d(32), nn.Linear(32, 10))
    student = nn.Linear(6, 10)
    loss_fn = distillation_loss(teacher, alpha=0.5, temperature=2.0)
    assert not teacher.training
    stats = teacher[2].running_mean.clone()
    loss_fn(student(x), x, y).backward()
    assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())
    assert student.weight.grad is not None and student.weight.grad.abs().sum() > 0
    assert torch.equal(teacher[2].running_mean, stats)  # eval mode: BatchNorm statistics untouched


def test_distillation_trains_a_student_through_the_training_loop(batch):
    _, x, y = batch
    torch.manual_seed(0)
    teacher, student = nn.Linear(6, 10), nn.Linear(6, 10)
    out = train(
        student,
        [(x, y)] * 4,
        TrainConfig(epochs=2, lr=0.1),
        criterion=distillation_loss(teacher, alpha=0.9, temperature=4.0),
    )
    assert out.status == "ok" and out.history[-1]["train_loss"] < out.history[0]["train_loss"]


def test_checkpoint_and_stored_run_load_as_teacher(tmp_path, store):
    cfg = RunConfig(model=ModelConfig(name="cnn", width=0.25), name="teacher")
    ds = load_dataset("digits")
    torch.manual_seed(0)
    model = create_model("cnn", ds.num_classes, ds.in_channels, ds.image_size, width=0.25).eval()
    args = {
        "name": "cnn",
        "num_classes": ds.num_classes,
        "in_channels": ds.in_channels,
        "image_size": ds.image_size,
        "width": 0.25,
    }
    path, _ = save_checkpoint(tmp_path / "ckpt" / "teacher.pt", model, cfg, args)
    loaded, config = load_checkpoint(path)  # weights_only=True inside
    assert config == cfg and set(loaded.state_dict()) == set(model.state_dict())
    x = torch.randn(3, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(load_teacher(path)(x), model(x))
        result = Result(config=cfg, checkpoint=str(path))
        store.append(result)
        teacher = load_teacher(result.run_id, store=store)
        assert not teacher.training and torch.equal(teacher(x), model(x))


def test_bad_teacher_refs_fail_with_one_line(tmp_path, store):
    for ref, kwargs, words in [("nope", {}, "no result store"), ("nope", {"store": store}, "No result 'nope'")]:
        with pytest.raises(ValueError) as e:
            load_teacher(ref, **kwargs)
        assert words in str(e.value) and "\n" not in str(e.value)
    store.append(r := Result(config=RunConfig()))
    with pytest.raises(ValueError, match="no saved checkpoint"):
        load_teacher(r.run_id, store=store)
    bogus = tmp_path / "weights.pt"
    torch.save({"weight": torch.zeros(2)}, bogus)
    with pytest.raises(ValueError, match="not a Workbench checkpoint"):
        load_teacher(bogus)
    with pytest.raises(ValueError, match="alpha"):
        distillation_loss(nn.Linear(2, 2), alpha=1.5, temperature=2.0)
