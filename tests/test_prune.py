"""Pruning: configs check themselves, every path keeps output shapes, structured pruning shrinks every model."""

import copy
import dataclasses

import pytest
import torch
from torch import nn

from workbench import ConfigError, RunConfig, TrainConfig
from workbench.compress import (
    CompressContext,
    FineTune,
    StructuredPrune,
    UnstructuredPrune,
    apply_step,
    prune,
    sensitivity,
    sparsity_report,
)
from workbench.measure import count_flops
from workbench.models import create_model, list_models
from workbench.report.charts import sensitivity_chart

pytestmark = pytest.mark.usefixtures("one_thread")


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def prunable_weights(model):
    return [m.weight for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def small(name, shape=(1, 8), seed=0):
    torch.manual_seed(seed)
    # depth 2 keeps a residual (identity) block in every stage of the ResNets and MobileNetV2.
    return create_model(name, num_classes=10, in_channels=shape[0], image_size=shape[1], width=0.25, depth=2)


def random_batches(n=3, shape=(1, 8), seed=0):
    g = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(16, shape[0], shape[1], shape[1], generator=g), torch.randint(0, 10, (16,), generator=g))
        for _ in range(n)
    ]


@pytest.fixture(scope="module")
def digits():
    """sklearn's digits as normalised tensors, and an MLP trained on them to ~95%."""
    from workbench.data import load_dataset

    ds = load_dataset("digits")
    mean, std = ds.mean.view(1, -1, 1, 1), ds.std.view(1, -1, 1, 1)
    norm = lambda x: (x.float() / 255 - mean) / std
    xtr, ytr, xte, yte = norm(ds.train_x), ds.train_y, norm(ds.test_x), ds.test_y
    torch.manual_seed(0)
    model = create_model("mlp", 10, 1, 8, width=0.5)
    from workbench.train import train

    batches = [(xtr[i : i + 64], ytr[i : i + 64]) for i in range(0, len(xtr), 64)]
    train(model, batches, TrainConfig(epochs=8, lr=0.05))
    model.eval()
    accuracy = lambda m: float((m(xte).argmax(1) == yte).float().mean())
    return model, accuracy, batches


# --- configs -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make, field",
    [
        (lambda: UnstructuredPrune(amount=0), "amount"),
        (lambda: UnstructuredPrune(amount=1.5), "amount"),
        (lambda: UnstructuredPrune(method="l3"), "method"),
        (lambda: UnstructuredPrune(scope="net"), "scope"),
        (lambda: StructuredPrune(amount=1.0), "amount"),
        (lambda: StructuredPrune(method="tailor"), "method"),
        (lambda: StructuredPrune(steps=0), "steps"),
        (lambda: StructuredPrune(finetune_epochs=-1), "finetune_epochs"),
        (lambda: UnstructuredPrune(finetune_epochs=-1), "finetune_epochs"),
        (lambda: FineTune(epochs=0), "epochs"),
        (lambda: FineTune(lr=-0.1), "lr"),
    ],
)
def test_bad_arguments_fail_with_one_line(make, field):
    with pytest.raises(ConfigError) as err:
        make()
    message = str(err.value)
    assert "\n" not in message and f".{field}" in message


def test_unknown_method_lists_valid_ones():
    with pytest.raises(ConfigError, match=r"Did you mean 'taylor'.*bn_scale, l1, l2, taylor"):
        StructuredPrune(method="tailor")


def test_config_round_trip():
    cfg = RunConfig(
        compress=(
            StructuredPrune(0.5),
            UnstructuredPrune(0.3, scope="layer"),
            StructuredPrune(0.4, method="taylor", steps=3, finetune_epochs=1, ignore=["conv1"]),
            FineTune(epochs=2, lr=0.01),
        )
    )
    back = RunConfig.from_json(cfg.to_json())
    assert back == cfg and back.config_hash() == cfg.config_hash()
    assert RunConfig.from_json(RunConfig(compress=(StructuredPrune(0.5),)).to_json()) == RunConfig(
        compress=(StructuredPrune(0.5),)
    )


# --- unstructured ------------------------------------------------------------------------------


@pytest.mark.parametrize("scope, method", [("global", "l1"), ("layer", "l1"), ("global", "random")])
def test_unstructured_reaches_the_requested_sparsity(scope, method):
    model, x, log = small("cnn"), torch.randn(2, 1, 8, 8), []
    before = n_params(model)
    out_before = model.eval()(x).shape
    model = prune(model, UnstructuredPrune(amount=0.6, scope=scope, method=method), ctx=CompressContext(x, log=log))
    weights = prunable_weights(model)
    zeros = sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)
    assert zeros == pytest.approx(0.6, abs=0.01)
    if scope == "layer":
        assert all(float((w == 0).float().mean()) == pytest.approx(0.6, abs=0.01) for w in weights)
    assert n_params(model) == before  # dense: nothing removed, only zeroed
    assert model(x).shape == out_before
    assert not any(hasattr(m, "weight_mask") for m in model.modules())  # masks made permanent
    assert log[0]["nonzero_params_after"] < 0.5 * log[0]["nonzero_params_before"]
    assert log[0]["sparsity"] == pytest.approx(zeros)


def test_sparsity_report_counts_zeros():
    model = prune(small("mlp"), UnstructuredPrune(0.5, scope="layer"))
    df = sparsity_report(model)
    assert list(df.columns) == ["layer", "type", "params", "zeros", "sparsity"]
    total = df[df.layer == "total"].iloc[0]
    assert total.params == n_params(model)
    assert total.zeros == sum(int((p == 0).sum()) for p in model.parameters())
    assert df[df.type == "Linear"].sparsity.between(0.4, 0.6).all()  # weights at 0.5, biases untouched


# --- structured --------------------------------------------------------------------------------


def check_structured_shrinks(model, shape):
    x, log = torch.randn(2, shape[0], shape[1], shape[1]), []
    params, flops = n_params(model), count_flops(model, (1, *x.shape[1:]))
    model = prune(model, StructuredPrune(amount=0.5), example_inputs=x, ctx=CompressContext(x, log=log))
    assert model.eval()(x).shape == (2, 10)
    assert n_params(model) < params and count_flops(model, (1, *x.shape[1:])) < flops
    assert log[0]["params_after"] == n_params(model) and log[0]["param_reduction"] > 0.2
    assert log[0]["flops_after"] < log[0]["flops_before"]


@pytest.mark.parametrize("shape", [(1, 8), (3, 32)], ids=["digits", "cifar"])
@pytest.mark.parametrize("name", list_models("images"))
def test_structured_shrinks_every_model(name, shape):
    check_structured_shrinks(small(name, shape), shape)


@pytest.mark.slow
@pytest.mark.parametrize("shape", [(1, 8), (3, 32)], ids=["digits", "cifar"])
@pytest.mark.parametrize("name", list_models("images"))
def test_structured_shrinks_every_model_at_full_size(name, shape):
    torch.manual_seed(0)
    check_structured_shrinks(create_model(name, num_classes=10, in_channels=shape[0], image_size=shape[1]), shape)


def test_vit_head_dims_are_pruned_alike_in_q_k_v_and_keep_the_function():
    torch.manual_seed(0)
    model, x = create_model("vit", 10, 1, 8, width=0.5).eval(), torch.randn(4, 1, 8, 8)
    attn = model.blocks[0].attn
    dim = attn.proj.in_features
    head = dim // attn.num_heads
    dead = torch.tensor([h * head + d for h in range(attn.num_heads) for d in range(0, head, 2)])
    with torch.no_grad():  # half of every head's dims carry nothing: removing them must change nothing
        attn.qkv.weight.mul_(20)  # sharp attention, so a changed softmax temperature would show
        for chunk in (0, 2):  # q and v; k's dims then only meet zeros
            attn.qkv.weight[chunk * dim + dead] = 0
            attn.qkv.bias[chunk * dim + dead] = 0
        attn.proj.weight[:, dead] = 0
    ref = model(x)
    max_error = lambda m: float((m(x) - ref).abs().max().detach())
    df = sensitivity(model, max_error, amounts=(0.5,), structured=True, example_inputs=x, layers=["blocks.0.attn.qkv"])
    assert df.accuracy[0] < 1e-5  # the "accuracy" here is the largest output change
    assert df.params[0] < df.attrs["baseline_params"]  # k's weights for the dead dims are gone
    pruned = prune(model, StructuredPrune(0.5), example_inputs=x)
    assert pruned.blocks[0].attn.qkv.out_features == 3 * pruned.blocks[0].attn.proj.in_features == 3 * dim // 2


@pytest.mark.parametrize("method", ["l1", "l2", "bn_scale", "taylor"])
def test_structured_methods(method):
    model, x = small("resnet20"), torch.randn(4, 1, 8, 8)
    params = n_params(model)
    ctx = CompressContext(x, train_loader=random_batches())
    model = prune(model, StructuredPrune(amount=0.5, method=method), example_inputs=x, ctx=ctx)
    assert model.eval()(x).shape == (4, 10)
    assert n_params(model) < 0.4 * params  # convs lose in and out channels: ~(1 - 0.5)^2


@pytest.mark.parametrize("method", ["l1", "bn_scale"])
def test_methods_keep_the_channels_they_rank_highest(method):
    model, x = small("cnn"), torch.randn(2, 1, 8, 8)
    (conv, bn, _), next_conv = model.features[0], model.features[1][0]
    rank = torch.tensor([3, 7, 0, 5, 1, 6, 2, 4])  # the first conv's 8 channels, 7 = most important
    with torch.no_grad():
        if method == "l1":  # the group's weight norms follow the rank; nothing else differs
            conv.weight.div_(conv.weight.abs().sum((1, 2, 3), keepdim=True)).mul_((1.0 + rank).view(-1, 1, 1, 1))
            next_conv.weight.fill_(0.1)
        else:
            bn.weight.copy_(1.0 + rank)
    original = conv.weight.detach().clone()
    prune(model, StructuredPrune(0.5, method=method), example_inputs=x)
    kept = [i for i in range(len(original)) if any(torch.equal(original[i], w) for w in conv.weight)]
    assert kept == sorted(rank.argsort()[4:].tolist())


def test_iterative_steps_with_finetune_match_one_shot_widths():
    x, log = torch.randn(4, 1, 8, 8), []
    one_shot = prune(small("cnn"), StructuredPrune(0.5), example_inputs=x)
    ctx = CompressContext(x, train_loader=random_batches(2), train=TrainConfig(lr=0.05), log=log)
    model = small("cnn")
    trained_from = copy.deepcopy(model)
    model = prune(model, StructuredPrune(0.5, steps=3, finetune_epochs=1), example_inputs=x, ctx=ctx)
    history = log[0]["history"]
    assert [h["step"] for h in history] == [1, 2, 3]
    assert history[0]["params"] > history[1]["params"] > history[2]["params"] == n_params(model)
    assert n_params(model) == n_params(one_shot)  # same final widths, reached gradually
    assert history[0]["finetune_lr"] == pytest.approx(0.005)
    kept_conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    first_conv = next(m for m in trained_from.modules() if isinstance(m, nn.Conv2d))
    assert not any(torch.equal(w, v) for w in kept_conv.weight for v in first_conv.weight)  # fine-tuning moved them


def test_ignore_keeps_a_layer_and_unknown_names_fail():
    model, x = small("cnn"), torch.randn(2, 1, 8, 8)
    name, conv = next((n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d))
    width = conv.out_channels
    prune(model, StructuredPrune(0.5, ignore=(name,)), example_inputs=x)
    assert conv.out_channels == width
    with pytest.raises(ValueError, match="Unknown module to ignore 'nope'"):
        prune(small("cnn"), StructuredPrune(0.5, ignore=("nope",)), example_inputs=x)


def test_structured_errors_say_what_is_missing():
    x = torch.randn(2, 1, 8, 8)
    with pytest.raises(ValueError, match="needs example_inputs"):
        prune(small("cnn"), StructuredPrune(0.5))
    with pytest.raises(ValueError, match="train_loader"):
        prune(small("cnn"), StructuredPrune(0.5, method="taylor"), example_inputs=x)
    no_bn = create_model("cnn", 10, 1, 8, width=0.25, batchnorm=False)
    with pytest.raises(ValueError, match=r"needs BatchNorm layers.*method='l1'"):
        prune(no_bn, StructuredPrune(0.5, method="bn_scale"), example_inputs=x)
    with pytest.raises(TypeError, match="apply_step"):
        prune(small("cnn"), FineTune(), example_inputs=x)


def test_finetune_step_trains_and_logs():
    model, x, log = small("cnn"), torch.randn(2, 1, 8, 8), []
    before = copy.deepcopy(model.state_dict())
    ctx = CompressContext(x, train_loader=random_batches(2), train=TrainConfig(lr=0.1), log=log)
    model = apply_step(model, FineTune(epochs=1), ctx)
    assert log[0]["step"] == "finetune" and log[0]["finetune_lr"] == pytest.approx(0.01)
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    with pytest.raises(ValueError, match="train_loader"):
        apply_step(model, FineTune(), CompressContext(x))


def test_unstructured_fine_tuning_keeps_the_masks(digits):
    """Fine-tuned with torch's masks on, the pruned weights stay zero while the others move and win back
    accuracy; baked in first and then fine-tuned (FineTune), the zeros grow back."""
    model, accuracy, batches = digits
    ctx = CompressContext(torch.zeros(2, 1, 8, 8), train_loader=batches, train=TrainConfig(lr=0.05))
    step = UnstructuredPrune(amount=0.9)
    alone = apply_step(copy.deepcopy(model), step, ctx)
    kept = apply_step(copy.deepcopy(model), dataclasses.replace(step, finetune_epochs=3), ctx)
    regrown = apply_step(copy.deepcopy(alone), FineTune(epochs=3, lr_factor=1.0), ctx)
    for m in (alone, kept, regrown):
        assert not any(hasattr(mod, "weight_orig") for mod in m.modules())  # plain weights again
    zeros = lambda m: [mod.weight == 0 for mod in m.modules() if isinstance(mod, nn.Linear)]
    assert all(torch.equal(a, k) for a, k in zip(zeros(alone), zeros(kept)))  # the same weights stay zero
    assert sum(int(z.sum()) for z in zeros(regrown)) < sum(int(z.sum()) for z in zeros(alone)) / 2
    assert accuracy(kept) > accuracy(alone)
    with pytest.raises(ValueError, match="finetune_epochs > 0 needs training batches"):
        apply_step(copy.deepcopy(model), dataclasses.replace(step, finetune_epochs=1), CompressContext(None))


def test_fine_tuning_inside_steps_shows_progress_and_takes_its_lr_factor(capsys):
    model, x, log = small("cnn"), torch.randn(2, 1, 8, 8), []
    ctx = CompressContext(x, train_loader=random_batches(2), train=TrainConfig(lr=0.1), log=log, progress=True)
    apply_step(model, StructuredPrune(amount=0.5, steps=2, finetune_epochs=1), ctx)
    apply_step(model, FineTune(epochs=1, lr_factor=0.4), ctx)
    err = capsys.readouterr().err
    assert "fine-tune after prune step 1/2" in err and "fine-tune after prune step 2/2" in err and "fine-tune:" in err
    assert log[-1]["finetune_lr"] == pytest.approx(0.04)
    apply_step(model, FineTune(epochs=1), dataclasses.replace(ctx, progress=False))
    assert "fine-tune" not in capsys.readouterr().err


# --- sensitivity -------------------------------------------------------------------------------


def test_sensitivity_unstructured_hurts_more_at_high_amounts(digits):
    model, accuracy, _ = digits
    baseline = accuracy(model)
    df = sensitivity(model, accuracy, amounts=(0.1, 0.5, 0.95))
    layers = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    assert list(df.columns) == ["layer", "amount", "accuracy", "accuracy_drop", "params"]
    assert len(df) == 3 * len(layers) and df.attrs["baseline_accuracy"] == pytest.approx(baseline)
    assert baseline > 0.85
    low, high = df[df.amount == 0.1], df[df.amount == 0.95]
    assert low.accuracy_drop.abs().max() < 0.03  # 10% of the smallest weights barely matter
    assert high.accuracy_drop.max() > 0.1  # 95% of some layer does
    assert (high.params.values < low.params.values).all()
    assert accuracy(model) == baseline  # the model itself was not touched


def test_sensitivity_structured_and_plot(digits):
    model, accuracy, batches = digits
    df = sensitivity(model, accuracy, amounts=(0.2, 0.9), structured=True, example_inputs=batches[0][0])
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    assert set(df.layer) == set(linears[:-1])  # the classifier's outputs are the classes: not prunable
    for _, rows in df.groupby("layer"):
        assert rows.params.iloc[1] < rows.params.iloc[0]
    assert df[df.amount == 0.9].accuracy_drop.mean() > df[df.amount == 0.2].accuracy_drop.mean()
    fig = sensitivity_chart(df)
    ax = fig.axes[0]
    assert (
        ax.get_xlabel() and ax.get_ylabel() == "test accuracy (%)" and max(ax.lines[0].get_ydata()) > 1
    )  # in %, like every chart
    assert len(ax.get_legend().get_texts()) == len(linears[:-1]) + 1  # one per layer + baseline
    with pytest.raises(ValueError, match="Unknown prunable layer"):
        sensitivity(model, accuracy, layers=["nope"])


@pytest.mark.slow
def test_resnet20_on_digits_halved_channels_keeps_accuracy():
    """The issue's acceptance: 50% of channels off, params and FLOPs down >= 40%, accuracy within 1.5 points."""
    from workbench.data import BatchLoader, load_dataset
    from workbench.train import evaluate, train

    ds = load_dataset("digits")
    cfg = TrainConfig(epochs=15, batch_size=64, lr=0.05)
    train_loader = BatchLoader(ds.train_x, ds.train_y, 64, shuffle=True, seed=0, mean=ds.mean, std=ds.std)
    test_loader = BatchLoader(ds.test_x, ds.test_y, 256, mean=ds.mean, std=ds.std)
    torch.manual_seed(0)
    model = create_model("resnet20", ds.num_classes, ds.in_channels, ds.image_size)
    train(model, train_loader, cfg)
    before = evaluate(model, test_loader)["accuracy"]
    params, flops = n_params(model), count_flops(model, (1, 1, 8, 8))
    ctx = CompressContext(next(iter(train_loader))[0], train_loader=train_loader, train=cfg)
    # A lighter cousin of benchmarks/compression.py's recipe (L1 instead of Taylor, two steps, default fine-tune lr).
    model = prune(model, StructuredPrune(0.5, steps=2, finetune_epochs=2), ctx=ctx)
    model = apply_step(model, FineTune(epochs=5), ctx)  # fine-tuning is a step of its own, not a pruning
    after = evaluate(model, test_loader)["accuracy"]
    assert n_params(model) <= 0.6 * params and count_flops(model, (1, 1, 8, 8)) <= 0.6 * flops
    assert before > 0.97 and before - after <= 0.015, (before, after)
