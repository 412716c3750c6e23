"""ONNX export, ONNX Runtime inference and parity; optional dependencies stay optional."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from workbench.deploy import export_onnx, onnxruntime_session, parity
from workbench.measure import benchmark

REPO = Path(__file__).resolve().parent.parent


def small_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(128, 10)
    ).eval()


def test_export_runs_in_onnxruntime_with_tiny_error(tmp_path):
    net = small_net()
    path = export_onnx(net, torch.randn(4, 1, 8, 8), tmp_path / "net.onnx")
    run = onnxruntime_session(path, threads=1)
    for n in (1, 9):  # dynamic batch dimension
        result = parity(net, run, torch.randn(n, 1, 8, 8))
        assert result["max_abs_error"] < 1e-4 and result["argmax_agreement"] == 1.0
    records = benchmark(run, (1, 8, 8), batch_sizes=(1, 4), warmup=1, iters=3, mode="onnxruntime")
    assert [r["mode"] for r in records] == ["onnxruntime"] * 2 and all(r["latency_ms"] > 0 for r in records)


def test_export_failure_and_missing_file_are_one_line(tmp_path):
    from workbench.compress.quantization import DynamicInt8, quantize

    packed = quantize(nn.Sequential(nn.Flatten(), nn.Linear(64, 4)), DynamicInt8())  # packed params: not exportable
    with pytest.raises(RuntimeError) as e:
        export_onnx(packed, torch.randn(2, 1, 8, 8), tmp_path / "q.onnx")
    assert str(e.value).startswith("ONNX export of Sequential failed") and "\n" not in str(e.value)
    with pytest.raises(FileNotFoundError, match="export_onnx"):
        onnxruntime_session(tmp_path / "missing.onnx")


def test_missing_onnxruntime_says_what_to_install(monkeypatch, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    with pytest.raises(ImportError) as e:
        onnxruntime_session(tmp_path / "x.onnx")
    assert "pip install onnx onnxscript onnxruntime" in str(e.value) and "\n" not in str(e.value)


def test_importing_workbench_needs_no_optional_dependency():
    blocked = ["torchao", "onnx", "onnxruntime", "onnxscript", "torch_pruning", "papermill", "ipywidgets"]
    code = (
        f"import sys; sys.modules.update(dict.fromkeys({blocked!r}));"
        "import workbench, workbench.compress.quantization, workbench.train.distill, workbench.deploy, "
        "workbench.report.ledger;"
        "print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "ok", out.stderr[-2000:]
