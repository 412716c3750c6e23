"""The muon optimizer: torch.optim.Muon's own update on every conv and hidden linear weight (seen as a
matrix, in place), AdamW's on the rest, one schedule, resumable, and what it buys on real training."""

import copy
import io

import pytest
import torch
from torch import nn

from workbench import HardwareConfig, MeasureConfig, ModelConfig, RunConfig, TrainConfig, run
from workbench.train import make_optimizer, make_scheduler
from workbench.train.muon import MuonAdamW, hidden_matrices

pytestmark = pytest.mark.usefixtures("one_thread")
CFG = TrainConfig(optimizer="muon", lr=0.01, weight_decay=0.01, momentum=0.9, epochs=1)


def _net(channels_last=False):
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(8 * 6 * 6, 16),
        nn.ReLU(),
        nn.Linear(16, 4),
    )
    return net.to(memory_format=torch.channels_last) if channels_last else net


def _steps(net, opt, n, seed=1):
    g = torch.Generator().manual_seed(seed)
    for _ in range(n):
        x, y = torch.randn(8, 3, 8, 8, generator=g), torch.randint(0, 4, (8,), generator=g)
        nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)


@pytest.mark.parametrize("channels_last", [False, True])
def test_matrices_take_torchs_muon_step_and_the_rest_adamws(channels_last):
    net = _net(channels_last)
    opt = make_optimizer(net, CFG)
    assert isinstance(opt, MuonAdamW)
    assert [p.shape for p in hidden_matrices(net)] == [torch.Size([8, 3, 3, 3]), torch.Size([16, 288])]
    # The reference: torch's Muon on plain 2-D copies of the matrices, torch's AdamW on the others.
    ref = copy.deepcopy(net)
    matrices = [ref[0].weight, ref[4].weight]
    flat = [
        nn.Parameter(
            matrices[0].detach().permute(0, 2, 3, 1).reshape(8, -1)
            if channels_last
            else matrices[0].detach().reshape(8, -1).clone()
        ),
        nn.Parameter(matrices[1].detach().clone()),
    ]
    rest = [p for p in ref.parameters() if all(p is not m for m in matrices)]
    ref_muon = torch.optim.Muon(flat, lr=0.01, weight_decay=0.01, momentum=0.9, adjust_lr_fn="match_rms_adamw")
    ref_adamw = torch.optim.AdamW(rest, lr=0.01, weight_decay=0.01)
    g = torch.Generator().manual_seed(1)
    for _ in range(3):
        x, y = torch.randn(8, 3, 8, 8, generator=g), torch.randint(0, 4, (8,), generator=g)
        for model in (net, ref):
            nn.functional.cross_entropy(model(x), y).backward()
        flat[0].grad = (
            (matrices[0].grad.permute(0, 2, 3, 1) if channels_last else matrices[0].grad).reshape(8, -1).clone()
        )
        flat[1].grad = matrices[1].grad.clone()
        opt.step(), ref_muon.step(), ref_adamw.step()
        opt.zero_grad(), ref_muon.zero_grad(), ref_adamw.zero_grad(), ref.zero_grad()
        with torch.no_grad():  # the reference model runs on the matrices its Muon updated
            matrices[0].copy_(
                flat[0].view(8, 3, 3, 3).permute(0, 3, 1, 2) if channels_last else flat[0].view(8, 3, 3, 3)
            )
            matrices[1].copy_(flat[1])
    for (name, got), want in zip(net.named_parameters(), ref.parameters()):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-6, msg=name)
    assert net[0].weight.is_contiguous(memory_format=torch.channels_last) == channels_last  # updated in place
    assert all(v.grad is None for v in opt.views)  # no gradient kept alive between steps


def test_a_schedule_drives_both_groups_and_a_saved_state_resumes_exactly():
    straight, resumed = _net(), _net()
    opt = make_optimizer(straight, CFG)
    sched = make_scheduler(opt, TrainConfig(schedule="cosine", epochs=1), steps_per_epoch=10)
    _steps(straight, opt, 2), sched.step(), sched.step()
    _steps(straight, opt, 1)  # the step hands the scheduled lr on to both
    assert opt.muon.param_groups[0]["lr"] == opt.adamw.param_groups[0]["lr"] == opt.param_groups[0]["lr"] < 0.01

    first = make_optimizer(resumed, CFG)
    _steps(resumed, first, 2, seed=1)
    buffer = io.BytesIO()
    torch.save({"model": resumed.state_dict(), "optimizer": first.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)  # what Checkpoint does: nothing but tensors and plain values
    again = _net()
    again.load_state_dict(saved["model"])
    second = make_optimizer(again, CFG)
    second.load_state_dict(saved["optimizer"])
    _steps(again, second, 3, seed=2)
    _steps(resumed, first, 3, seed=2)
    for got, want in zip(again.parameters(), resumed.parameters()):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


@pytest.mark.parametrize(
    "model, says",
    [
        (
            nn.Sequential(nn.Flatten(), nn.Linear(12, 3)),
            "train.optimizer=muon needs weight matrices besides the classifier",
        ),
    ],
)
def test_a_model_muon_cannot_take_is_one_line(model, says):
    with pytest.raises(ValueError, match=says):
        make_optimizer(model, CFG)
    with pytest.raises(TypeError, match=r"pass the model, make_optimizer\(model, cfg\)"):
        make_optimizer(_net().parameters(), CFG)
    with pytest.raises(ValueError, match="no kernel for muon"):
        make_optimizer(_net(), CFG, impl="fused")


def test_muon_trains_a_cnn_on_digits_further_than_sgd_in_three_epochs(tmp_path):
    """Measured on a 2-core AMD EPYC, 1 thread, cnn width 0.5, 3 epochs: muon lr 0.01 reached 99.17%,
    sgd at its default 0.05 95.56%, adamw 0.002 96.67%."""
    base = RunConfig(
        model=ModelConfig(name="cnn", width=0.5),
        train=TrainConfig(epochs=3),
        hardware=HardwareConfig(threads=1),
        measure=MeasureConfig(batch_sizes=(1,), warmup=1, iters=2, modes=("eager",)),
    )
    sgd = run(base, store=tmp_path, progress=False)
    muon = run(
        base.replace(**{"train.optimizer": "muon", "train.lr": 0.01, "train.weight_decay": 0.01}),
        store=tmp_path,
        progress=False,
    )
    assert muon.metrics["accuracy"] >= 0.97 and muon.metrics["accuracy"] > sgd.metrics["accuracy"]
    assert muon.history[-1]["train_loss"] < sgd.history[-1]["train_loss"] / 2
