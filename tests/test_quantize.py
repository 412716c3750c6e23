"""Quantization: every method keeps shapes, StaticInt8 really shrinks a trained net, models save and load back."""

import copy

import pytest
import torch
from torch import nn

from workbench import ConfigError, RunConfig, TrainConfig
from workbench.compress.core import CompressContext
from workbench.compress.quantization import (
    QAT,
    CastPrecision,
    DynamicInt8,
    StaticInt8,
    WeightOnlyInt4,
    WeightOnlyInt8,
    is_fake_quant,
    is_pt2e_program,
    load_quantized,
    quantization_steps,
    quantize,
    save_quantized,
    saved_size_bytes,
)
from workbench.data import BatchLoader, load_dataset
from workbench.measure import count_parameters, model_size_bytes
from workbench.models import create_model
from workbench.train import evaluate, train


def small_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 10),
    )


@pytest.fixture(scope="module")
def digits():
    ds = load_dataset("digits")
    train_loader = BatchLoader(ds.train_x, ds.train_y, 64, shuffle=True, mean=ds.mean, std=ds.std)
    test_loader = BatchLoader(ds.test_x, ds.test_y, 512, mean=ds.mean, std=ds.std)
    return ds, train_loader, test_loader


@pytest.fixture(scope="module")
def trained_cnn(digits):
    """A conv net trained on digits for real: quantization error only shows on meaningful weights."""
    ds, train_loader, _ = digits
    torch.manual_seed(0)
    model = create_model("cnn", ds.num_classes, ds.in_channels, ds.image_size, depth=2)  # 32-64 channels, ~56k params
    train(model, train_loader, TrainConfig(epochs=2, optimizer="adam", lr=3e-3))
    return model.eval()


def _batches(n=2, bs=16):
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(bs, 1, 8, 8, generator=g), torch.randint(0, 10, (bs,), generator=g)) for _ in range(n)]


@pytest.mark.parametrize("kind", sorted(quantization_steps()))
def test_every_method_keeps_output_shapes(kind):
    batches = _batches()
    ctx = CompressContext(example_input=batches[0][0], train_loader=batches, train=TrainConfig(epochs=1, lr=0.01))
    q = quantize(small_net(), kind, ctx=ctx)
    with torch.no_grad():
        for n in (1, 5):
            out = q(torch.randn(n, 1, 8, 8))
            assert out.shape == (n, 10) and out.dtype == torch.float32 and torch.isfinite(out).all()


def test_static_int8_is_4x_smaller_and_as_accurate(digits, trained_cnn):
    _, train_loader, test_loader = digits
    x = next(iter(test_loader))[0]
    q = quantize(copy.deepcopy(trained_cnn), StaticInt8(), example_inputs=x, calibration=train_loader)
    assert is_pt2e_program(q)
    ratio = model_size_bytes(trained_cnn) / model_size_bytes(q)
    assert ratio >= 3.5, f"int8 weights only {ratio:.2f}x smaller"
    # The whole program (graph + weights) is also much smaller than the float program.
    assert saved_size_bytes(q, x) < model_size_bytes(trained_cnn) / 2
    acc32, acc8 = evaluate(trained_cnn, test_loader)["accuracy"], evaluate(q, test_loader)["accuracy"]
    assert acc32 > 0.9 and abs(acc8 - acc32) <= 0.01, (acc32, acc8)
    with torch.no_grad():
        agree = (q(x).argmax(1) == trained_cnn(x).argmax(1)).float().mean().item()
    assert agree >= 0.97
    # Int8 weights are counted as parameters; BatchNorm folded into the convs is gone.
    assert 0.95 < count_parameters(q)["params"] / count_parameters(trained_cnn)["params"] <= 1.0


@pytest.mark.parametrize(
    "step",
    [
        DynamicInt8(),
        StaticInt8(calibration_batches=2),
        WeightOnlyInt8(),
        WeightOnlyInt4(group_size=16),
        CastPrecision("fp16"),
        CastPrecision("bf16"),
    ],
    ids=lambda s: s.kind + getattr(s, "dtype", ""),
)
def test_save_and_load_give_equal_outputs(step, tmp_path):
    batches = _batches()
    x = batches[0][0]
    q = quantize(small_net(), step, example_inputs=x, calibration=batches)
    path = save_quantized(q, tmp_path / "q.bin", example_inputs=x)
    back = load_quantized(path, model=small_net())
    with torch.no_grad():
        for n in (1, 7):
            xb = torch.randn(n, 1, 8, 8)
            assert torch.equal(back(xb), q(xb))
    if not is_pt2e_program(q):  # a state-dict file must load safely on its own
        assert "state_dict" in torch.load(path, weights_only=True)


def test_qat_converts_and_can_stay_fake_quant(digits, trained_cnn):
    _, train_loader, test_loader = digits
    x = next(iter(test_loader))[0][:8]
    batches = [b for _, b in zip(range(6), train_loader)]  # a short fine-tune keeps the test quick
    fake = quantize(copy.deepcopy(trained_cnn), QAT(convert=False), example_inputs=x, calibration=batches)
    assert is_fake_quant(fake) and not is_pt2e_program(fake)
    scales = [b.clone() for n, b in fake.named_buffers() if n.endswith("scale")]
    evaluate(fake, test_loader)  # evaluation must not move the activation ranges
    assert all(torch.equal(a, b) for a, b in zip(scales, [b for n, b in fake.named_buffers() if n.endswith("scale")]))
    with pytest.raises(ValueError, match="convert it first"):
        save_quantized(fake, "unused.pt2", example_inputs=x)
    log: list = []
    ctx = CompressContext(example_input=x, train_loader=batches, train=TrainConfig(lr=0.05), log=log)
    q = quantize(copy.deepcopy(trained_cnn), QAT(), ctx=ctx)
    assert is_pt2e_program(q) and not is_fake_quant(q)
    assert log[-1]["step"] == "qat" and log[-1]["qat_lr"] == pytest.approx(0.005)
    assert evaluate(q, test_loader)["accuracy"] >= evaluate(trained_cnn, test_loader)["accuracy"] - 0.02
    assert model_size_bytes(trained_cnn) / model_size_bytes(q) >= 3.5


def test_weight_only_shrinks_linear_weights():
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))
    fp32 = model_size_bytes(mlp)
    assert model_size_bytes(quantize(copy.deepcopy(mlp), WeightOnlyInt8())) < fp32 / 3
    # torchao 0.18 stores int4 unpacked, one value per int8 byte: no smaller than int8 on disk.
    assert model_size_bytes(quantize(copy.deepcopy(mlp), WeightOnlyInt4(group_size=32))) < fp32 / 3
    assert model_size_bytes(quantize(copy.deepcopy(mlp), CastPrecision("fp16"))) < fp32 * 0.55


def test_steps_round_trip_through_json():
    cfg = RunConfig(
        compress=(
            StaticInt8(calibration_batches=4),
            QAT(epochs=2, convert=False),
            WeightOnlyInt4(group_size=64),
            CastPrecision("fp16"),
            DynamicInt8(),
            WeightOnlyInt8(),
        )
    )
    assert RunConfig.from_json(cfg.to_json()) == cfg
    assert cfg.flat()["compress"].startswith("static_int8(calibration_batches=4) -> qat(")


def _one_line(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


def test_bad_arguments_fail_with_one_clear_line():
    net, x = small_net(), torch.randn(4, 1, 8, 8)
    with pytest.raises(ValueError) as e:
        quantize(net, "int3")
    assert "Choose one of: cast_precision, dynamic_int8" in _one_line(e)
    with pytest.raises(ConfigError) as e:
        WeightOnlyInt4(group_size=0)
    assert "positive integer" in _one_line(e)
    with pytest.raises(ConfigError) as e:
        quantize(nn.Sequential(nn.Linear(48, 4)), WeightOnlyInt4(group_size=32))
    assert "must divide" in _one_line(e) and "48" in str(e.value)
    with pytest.raises(ConfigError) as e:
        CastPrecision("fp8")
    assert "Did you mean" in _one_line(e)
    with pytest.raises(ConfigError):
        StaticInt8(calibration_batches=0)
    with pytest.raises(ValueError) as e:  # the x86 int8 backend does not exist on a GPU
        quantize(net, StaticInt8(), ctx=CompressContext(example_input=x, train_loader=[x], device=torch.device("cuda")))
    assert "x86" in _one_line(e) and "cuda" in str(e.value)
    with pytest.raises(ValueError) as e:
        quantize(net, StaticInt8(), example_inputs=x)
    assert "calibration" in _one_line(e)
    with pytest.raises(ValueError) as e:
        quantize(net, QAT(), example_inputs=x)
    assert "training batches" in _one_line(e)
    with pytest.raises(ValueError) as e:  # only Linear/LSTM layers have dynamic int8 kernels
        quantize(nn.Sequential(nn.Conv2d(1, 4, 3)), DynamicInt8())
    assert "StaticInt8" in _one_line(e)
    with pytest.raises(TypeError):
        quantize(net, TrainConfig())


def test_missing_torchao_says_what_to_install(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torchao" else real(name, *a))
    with pytest.raises(ImportError) as e:
        quantize(nn.Sequential(nn.Linear(8, 4)), WeightOnlyInt8())
    assert "pip install torchao" in _one_line(e)
