"""The model-parallel demo: a registry model cut into two pipeline stages (in-process checks over the
registry), and one real ``torchrun`` launch of GPipe on this CPU (gloo, 2 processes) in smoke size."""

import pytest
import torch

from workbench.data import load_dataset
from workbench.distributed import pipeline_parallel
from workbench.distributed.pipeline_parallel import pipeline_demo, split_in_two
from workbench.models import ModelConfig, build_model, list_models
from workbench.report.charts import pipeline_chart

# cnn, not mlp: the mlp's micro-batch computes in ~0.3 ms, less than this 2-core machine takes to wake a
# rank for its hand-off, so its measured bubble stays near 65% at every count and shows only overhead.
SMOKE = {"model": "cnn", "microbatches": (1, 2, 4), "batch_size": 64, "steps": 4, "warmup": 1}
# A measured bubble cannot beat GPipe's (S-1)/(M+S-1) (uneven stages only add to it); the margin is the
# barrier's skew between the two processes' start of a step.
BELOW_THEORY = 0.05


@pytest.fixture(scope="module")
def demo():
    return pipeline_demo(**SMOKE)


@pytest.mark.parametrize("name", list_models("images"))
def test_every_chain_model_splits_into_two_stages_that_give_its_output(name, one_thread):
    net = build_model(ModelConfig(name=name, width=0.25), 10, (1, 8, 8), seed=0).eval()
    x = torch.randn(4, 1, 8, 8)
    if name == "vit":  # tokens reshaped and a position embedding added between its modules: not a chain
        with pytest.raises(
            ValueError, match=r"^ViT's forward is not a chain of its modules[^\n]*mlp, cnn or resnet20$"
        ):
            split_in_two(net, x)
        return
    first, second, info = split_in_two(net, x)
    with torch.no_grad():
        assert torch.equal(second(first(x)), net(x))
        assert list(first(x).shape[1:]) == info["activation_shape_per_image"]
    assert sum(info["stage_params"]) == sum(p.numel() for p in net.parameters())
    assert all(len(modules) >= 1 for modules in info["stage_modules"])
    total = sum(info["stage_flops"])
    assert min(info["stage_flops"]) >= 0.1 * total, info  # neither stage is left (nearly) empty


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            {"microbatches": (1, 3)},
            "batch_size 64 does not split into 3 equal micro-batches: choose a batch_size divisible "
            "by every micro-batch count, e.g. 66",
        ),
        (
            {"microbatches": (4,), "batch_size": 4},
            "4 micro-batches of batch_size 4 leave 1 image each, and BatchNorm needs 2 or more: use batch_size >= 8",
        ),
        ({"model": "resnet21"}, "Unknown model 'resnet21'. Did you mean 'resnet20'?"),
        ({"model": "vit"}, "ViT's forward is not a chain of its modules"),
    ],
)
def test_bad_input_fails_in_one_line_without_launching(kwargs, message, monkeypatch):
    monkeypatch.setattr(pipeline_parallel, "launch", lambda *a, **k: pytest.fail("launched despite bad input"))
    with pytest.raises(ValueError) as error:
        pipeline_demo(**kwargs)
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


@pytest.mark.slow
def test_gpipe_on_two_processes_matches_the_unsplit_loss_and_measures_its_bubble(demo):
    df = demo
    assert df["microbatches"].tolist() == list(SMOKE["microbatches"])
    assert (df.attrs["device"], df.attrs["backend"], df.attrs["threads_per_rank"], df.attrs["model"]) == (
        "cpu",
        "gloo",
        1,
        "cnn",
    )
    assert df.attrs["loss_max_diff"] < 1e-4 and (df["loss_max_diff"] < 1e-4).all()
    assert df["bubble_theory"].tolist() == [1 / 2, 1 / 3, 1 / 5]
    # How far the bubble shrinks is a timing, so benchmarks/distributed.py measures it on a quiet machine (51% -> 29%
    # from 1 to 8 micro-batches); here other work on the same cores moved M=4 above M=1 once (59% vs 51%).
    assert ((df["bubble_share"] > 0) & (df["bubble_share"] < 1)).all()
    assert (df["bubble_share"] >= df["bubble_theory"] - BELOW_THEORY).all(), df[["bubble_share", "bubble_theory"]]
    for stage in (0, 1):
        assert ((df[f"bubble_share_stage{stage}"] > 0) & (df[f"bubble_share_stage{stage}"] < 1)).all()
        assert (df[f"busy_ms_stage{stage}"] < df["step_ms_p90"]).all()
    assert ((df["step_ms_p10"] <= df["step_ms"]) & (df["step_ms"] <= df["step_ms_p90"])).all()
    assert df["images_per_s"].tolist() == pytest.approx((1e3 * SMOKE["batch_size"] / df["step_ms"]).tolist())
    assert (df["handoff_ms"] > 0).all()


@pytest.mark.slow
def test_the_handoff_is_stage_zeros_output_for_one_microbatch(demo):
    """Found apart from the split's own bookkeeping: a hook on the unsplit model's last stage-0 module."""
    data = load_dataset("digits")
    net = build_model(ModelConfig(name="cnn"), data.num_classes, (1, 8, 8), seed=0)
    last = dict(net.named_modules())[demo.attrs["stage_modules"][0][-1]]
    seen = {}
    last.register_forward_hook(lambda module, args, out: seen.update(out=out))
    for row in demo.itertuples():
        with torch.no_grad():
            net(torch.zeros(row.microbatch_size, 1, 8, 8))
        assert row.handoff_bytes == seen["out"].numel() * 4
        assert row.activation_shape == "x".join(map(str, seen["out"].shape))
    assert sum(demo.attrs["stage_params"]) == sum(p.numel() for p in net.parameters())


@pytest.mark.slow
def test_the_chart_labels_its_axes_and_names_model_device_and_backend(demo):
    fig = pipeline_chart(demo)
    bubble, step = fig.axes
    assert (bubble.get_xlabel(), step.get_xlabel()) == ("micro-batches per step",) * 2
    assert bubble.get_ylabel().endswith("(%)") and step.get_ylabel().endswith("(ms)")
    title = fig.get_suptitle()
    assert all(s in title for s in ("cnn", demo.attrs["device_name"], "gloo"))
    measured = next(line for line in bubble.lines if line.get_label().startswith("measured, mean"))
    assert measured.get_ydata().tolist() == pytest.approx((100 * demo["bubble_share"]).tolist())
