"""Compression steps describe themselves, and one table registers them: a step added in one module
shows up in the CLI, the panel, preflight, quantize and the ledger without a line changed elsewhere."""

import importlib
import json
import sys
from dataclasses import dataclass
from typing import ClassVar

import pytest

from workbench import ConfigError, MeasureConfig, ModelConfig, Result, RunConfig, TrainConfig, preflight, run, tasks
from workbench.cli import main
from workbench.compress import (
    CompressStep,
    FineTune,
    OrtDynamicInt8,
    OrtStaticInt8,
    StructuredPrune,
    core,
    implements,
    quantization_steps,
    step_types,
)
from workbench.pipeline import training
from workbench.report import ResultStore
from workbench.report.ledger import REASONS, RULE, ledger, why_not_faster

# A whole new step, as a user would write it: one module, its config and the function that applies it.
TOY_MODULE = '''
"""Weights rounded to a grid of 2**bits levels per tensor; said to need a GPU, so preflight has work."""

from dataclasses import dataclass
from typing import ClassVar

import torch

from workbench.compress import CompressStep, implements


@dataclass(frozen=True)
class ToyRound(CompressStep):
    """Round every weight to 2**bits levels per tensor."""

    kind: ClassVar[str] = "toy_round"
    family: ClassVar[str] = "weight-only"
    needs: ClassVar[frozenset[str]] = frozenset({"gpu"})
    kernels: ClassVar[str] = "toy rounding kernels"
    advice: ClassVar[str] = "round to more levels (toy_round:bits=8)"
    bits: int = 4


@implements(ToyRound)
def _apply_toy_round(model, step, ctx):
    with torch.no_grad():
        for p in model.parameters():
            scale = p.abs().max().clamp(min=1e-12) / (2 ** (step.bits - 1) - 1)
            p.copy_(torch.round(p / scale) * scale)
    return model
'''

TINY = RunConfig(
    model=ModelConfig(name="mlp", width=0.25),
    train=TrainConfig(epochs=1),
    measure=MeasureConfig(batch_sizes=(1,), warmup=1, iters=3),
).replace(**{"hardware.device": "cpu"})


@pytest.fixture
def toy(tmp_path, monkeypatch):
    """The toy step's module, written and imported (its one import line); registered in a copy of the
    step table, so no other test sees it."""
    (tmp_path / "toy_step.py").write_text(TOY_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(core, "_APPLY", dict(core._APPLY))
    yield importlib.import_module("toy_step").ToyRound
    sys.modules.pop("toy_step", None)


def test_a_step_added_in_one_module_is_in_the_cli_and_quantize(toy, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    assert "toy_round" in " ".join(capsys.readouterr().out.split())
    assert main(["run", "--compress", "toy_round:bits=8", "--print-config"]) == 0
    assert json.loads(capsys.readouterr().out)["compress"] == [{"kind": "toy_round", "bits": 8}]
    assert quantization_steps()["toy_round"] is toy  # a weight-only step: quantize takes it by its family
    # Preflight: a need the device cannot meet stops the run in one line, before any data is loaded.
    code = main(["run", "--compress", "toy_round", "--device", "cpu", "--store", str(tmp_path)])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "ToyRound runs on toy rounding kernels" in lines[0]


def test_a_step_added_in_one_module_is_in_preflight_and_the_ledger(toy, monkeypatch):
    problems = preflight(TINY.replace(compress=(toy(),))).problems
    assert problems == [
        "ToyRound runs on toy rounding kernels, which need the model on a CUDA GPU, but the model is on cpu: "
        "train on hardware.device='cuda', or use WeightOnlyInt4 / WeightOnlyInt8 on the CPU"
    ]
    monkeypatch.setattr(tasks, "load_dataset", lambda *a, **k: pytest.fail("data was loaded"))
    with pytest.raises(ConfigError, match="ToyRound"):
        run(TINY.replace(compress=(toy(),)), store=None, progress=False)
    # The ledger explains it by its family, like any weight-only step.
    timing = [{"mode": "eager", "batch_size": 64, "latency_ms": 10.0, "device": "cpu"}]
    metrics = {"params": 100, "size_bytes": 400, "flops": 200, "accuracy": 0.9}
    rows = [
        Result(RunConfig(name="fp32"), metrics, benchmarks=timing),
        Result(RunConfig(name="toy", compress=(toy(bits=4),)), {**metrics, "size_bytes": 100}, benchmarks=timing),
    ]
    table = ledger(rows).set_index("variant")
    assert table.loc["toy", "compress"] == "toy_round(bits=4)"
    assert (
        why_not_faster(rows).set_index("variant").loc["toy", "reason"] == "weight_only_rule"
    )  # no diagnostics in a hand-made row


def test_a_step_added_in_one_module_is_in_the_panels_step_form(toy, tmp_path):
    from workbench.ui import Workbench

    panel = Workbench(store=ResultStore(tmp_path / "runs"), config=TINY)
    assert "toy_round" in panel.step_kind.options
    panel.step_kind.value = "toy_round"
    assert list(panel.step_fields) == ["bits"]
    assert "weight-only" in panel.step_summary.value and "CUDA GPU" in panel.step_summary.value
    panel.step_fields["bits"][0].value = 8
    panel.buttons["Add step"].click()
    assert panel.config.compress == (toy(bits=8),)
    assert "ToyRound runs on toy rounding kernels" in panel.message.value and panel.run_button.disabled


def test_the_table_refuses_a_step_that_describes_itself_wrongly(monkeypatch):
    monkeypatch.setattr(core, "_APPLY", dict(core._APPLY))

    @dataclass(frozen=True)
    class Typo(CompressStep):
        kind: ClassVar[str] = "typo"
        family: ClassVar[str] = "weight_only"

    with pytest.raises(TypeError, match="Did you mean 'weight-only'"):
        implements(Typo)(lambda model, step, ctx: model)

    @dataclass(frozen=True)
    class Twin(CompressStep):
        kind: ClassVar[str] = "finetune"
        family: ClassVar[str] = "fine-tuning"

    with pytest.raises(TypeError, match="no other step has"):
        implements(Twin)(lambda model, step, ctx: model)
    assert step_types()["finetune"] is FineTune and "typo" not in step_types()


def test_a_lossy_run_gets_the_advice_of_its_first_lossy_step():
    def advice(*steps) -> str:
        with pytest.warns(UserWarning) as caught:
            training.warn_about_lost_accuracy(RunConfig(compress=steps), {"accuracy": 0.9}, {"accuracy": 0.5})
        return str(caught[0].message)

    # ONNX Runtime's int8 loses accuracy to its calibration, as torch's does: fine-tuning is not the fix.
    assert "ort_static_int8:calibration_batches=32" in advice(OrtStaticInt8())
    assert "--compress recommended" in advice(StructuredPrune(0.5), FineTune(), OrtStaticInt8())
    assert "finetune:epochs=5" in advice(FineTune())


def test_steps_say_which_modes_run_them_and_why_they_are_not_faster():
    ort = TINY.replace(compress=(OrtStaticInt8(),))
    assert any("runs in onnxruntime only" in n for n in preflight(ort).notes)
    timed = ort.replace(**{"measure.modes": ("eager", "onnxruntime")})
    assert not any("runs in onnxruntime only" in n for n in preflight(timed).notes)
    timing = [{"mode": "onnxruntime", "batch_size": 1, "latency_ms": 1.0, "device": "cpu"}]
    rows = [
        Result(RunConfig(name="fp32"), {"flops": 10}, benchmarks=timing),
        Result(RunConfig(name="ort", compress=(OrtDynamicInt8(),)), {"flops": 10}, benchmarks=timing),
    ]
    reason = why_not_faster(rows).set_index("variant").loc["ort"]
    assert reason["reason"] == "step" and reason["text"] == RULE + OrtDynamicInt8.not_faster and "step" in REASONS
