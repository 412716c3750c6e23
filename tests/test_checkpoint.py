"""Checkpoints: a run's model as it ends the run (float, pruned or quantized), rebuilt without any data."""

import pytest
import torch

from workbench import (
    QAT,
    CastPrecision,
    DynamicInt8,
    MeasureConfig,
    ModelConfig,
    RunConfig,
    StaticInt8,
    StructuredPrune,
    TrainConfig,
    UnstructuredPrune,
    WeightOnlyInt8,
    count_parameters,
    evaluator,
    load_model,
    load_teacher,
    run,
)
from workbench.report.checkpoint import load_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")
QUICK = MeasureConfig(batch_sizes=(1,), warmup=0, iters=1)


def _cfg(model="cnn", **changes):
    return RunConfig(model=ModelConfig(name=model, width=0.25), train=TrainConfig(epochs=1), measure=QUICK).replace(
        **changes
    )


@pytest.fixture
def no_data(monkeypatch):
    """Any dataset load from here on fails the test."""
    from workbench import tasks
    from workbench.data import registry

    def refuse(*a, **k):
        pytest.fail("a dataset was loaded")

    for module in (registry, tasks):  # each holds its own name for it
        monkeypatch.setattr(module, "load_dataset", refuse)


def test_a_checkpoint_and_a_teacher_rebuild_without_any_data(store, monkeypatch, request):
    result = run(_cfg(), store=store, progress=False)
    x = torch.randn(4, 1, 8, 8)
    expected = load_model(result)(x)
    request.getfixturevalue("no_data")
    model, config = load_checkpoint(result.checkpoint)
    assert config == result.config and torch.equal(model(x), expected)
    teacher = load_teacher(result.run_id, store=store)
    assert not teacher.training and torch.equal(teacher(x), expected)


def test_a_distilled_run_finds_its_teacher_wherever_its_data_lives(store, tmp_path):
    teacher = run(_cfg(name="teacher"), store=store, progress=False)
    student = run(
        _cfg(name="student", **{"distill.teacher": teacher.run_id, "model.width": 0.125}),
        store=store,
        progress=False,
        data_root=tmp_path / "elsewhere",
    )
    assert student.status == "ok" and student.config.distill.teacher == teacher.run_id


# (variant, model family, steps, expected checkpoint format)
VARIANTS = [
    ("unstructured", "cnn", (UnstructuredPrune(0.5),), "state_dict"),
    ("structured", "cnn", (StructuredPrune(0.5),), "state_dict"),
    ("static int8", "cnn", (StaticInt8(calibration_batches=2),), "export_program"),
    ("bf16", "cnn", (CastPrecision("bf16"),), "state_dict"),
    ("dynamic int8", "mlp", (DynamicInt8(),), "state_dict"),
    ("weight-only int8", "mlp", (WeightOnlyInt8(),), "state_dict"),
    ("structured + dynamic int8", "mlp", (StructuredPrune(0.5), DynamicInt8()), "state_dict"),
]


@pytest.fixture(scope="module")
def compressed(tmp_path_factory):
    from workbench import ResultStore

    store = ResultStore(tmp_path_factory.mktemp("compressed") / "runs")
    base = {family: run(_cfg(family, name=family), store=store, progress=False) for family in ("cnn", "mlp")}
    return base, {
        name: run(_cfg(family, name=name, compress=steps), store=store, progress=False)
        for name, family, steps, _ in VARIANTS
    }


@pytest.mark.filterwarnings("ignore:TypedStorage is deprecated")
@pytest.mark.parametrize("name, family, steps, fmt", VARIANTS, ids=[v[0] for v in VARIANTS])
def test_a_compressed_run_saves_the_compressed_model(compressed, name, family, steps, fmt):
    base, runs = compressed
    r = runs[name]
    assert r.reused_from == base[family].run_id  # compressed from the stored training, not a new one
    assert r.checkpoint_format == fmt and r.checkpoint != r.trained_checkpoint == base[family].checkpoint
    if fmt == "state_dict":
        torch.load(r.checkpoint, weights_only=True)  # plain tensors and values: safe to read
    model = load_model(r)
    assert evaluator(r.config, device="cpu")(model) == r.metrics["accuracy"]  # the model the row measured
    if name != "static int8":  # the int8 program's constants are not parameters of the float model's kind
        assert count_parameters(model) == {k: r.metrics[k] for k in ("params", "nonzero_params")}
    if name.startswith("structured"):
        assert r.metrics["params"] < 0.6 * base[family].metrics["params"]
    if name == "unstructured":
        assert r.metrics["params"] == base[family].metrics["params"]  # zeros, still dense
        assert r.metrics["nonzero_params"] < 0.6 * r.metrics["params"]


def test_a_fake_quant_model_saves_nothing_and_says_why(store):
    r = run(_cfg(compress=(QAT(epochs=1, convert=False),)), store=store, progress=False)
    assert r.checkpoint is None and r.checkpoint_format is None and "convert it first" in r.metrics["checkpoint_note"]
    assert r.trained_checkpoint  # the float training is still kept for reuse
    with pytest.raises(ValueError, match="saved no model") as e:
        load_model(r)
    assert "\n" not in str(e.value)


def test_a_foreign_or_old_file_is_refused_in_one_line(tmp_path):
    old = tmp_path / "old.pt"
    torch.save({"config": RunConfig().to_dict(), "model": {}}, old)  # the layout before model arguments were stored
    with pytest.raises(ValueError, match="not a Workbench checkpoint"):
        load_checkpoint(old)
    with pytest.raises(FileNotFoundError, match="No checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")
