"""ONNX Runtime's own int8 quantization, as compression steps beside torch's and torchao's.

The float model is exported to ONNX (``torch.export`` based), pre-processed (shape inference, graph
optimisation: what ONNX Runtime's quantization guide asks for), then quantized by
``onnxruntime.quantization``:

- ``OrtStaticInt8``: int8 weights and uint8 activations (what ONNX Runtime's x86 kernels take) in QDQ
  form, activation ranges calibrated on training batches (a ``CalibrationDataReader``); per-channel
  weight scales by default.
- ``OrtDynamicInt8``: int8 weights; activation ranges computed per batch as it runs (ConvInteger /
  MatMulInteger), no calibration data. Meant for Linear-heavy models: ONNX Runtime's ConvInteger is
  slow on a CPU (resnet20 on CIFAR-10 ran 8x slower than float32 in ONNX Runtime here), which the ledger shows.

The result is an ``OnnxRuntimeModule``: the int8 graph's bytes as the model (size counted as the file
ships), run by ONNX Runtime on the CPU. It is timed in the ``onnxruntime`` mode only, so the ledger
compares it with the float model in ONNX Runtime.

Example:
    >>> import torch
    >>> from workbench.compress import CompressContext, apply_step
    >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))
    >>> x = torch.randn(16, 1, 8, 8)
    >>> q = apply_step(net, OrtDynamicInt8(), CompressContext(example_input=x))  # doctest: +SKIP
    >>> q(x).shape, q.runtime  # doctest: +SKIP
    (torch.Size([16, 4]), 'onnxruntime')
    >>> OrtStaticInt8(calibration="mean")
    Traceback (most recent call last):
    ...
    workbench.ConfigError: Unknown OrtStaticInt8.calibration 'mean'. Choose one of: entropy, minmax, percentile.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from .._errors import ConfigError, require_modules
from .._registry import unknown_name_error
from ..measure import model_size_bytes
from ..measure.onnx import DEPLOY_PIP, OnnxRuntimeModule, export_onnx
from .core import CompressContext, CompressStep, implements
from .quantization import _batches, _example

CALIBRATION = ("entropy", "minmax", "percentile")  # onnxruntime.quantization.CalibrationMethod names
ACTIVATIONS = ("int8", "uint8")
GRAPH_FORMATS = ("qdq", "qoperator")
ORT_INT8 = "ONNX Runtime's CPU int8 kernels"


@dataclass(frozen=True)
class OrtStaticInt8(CompressStep):
    """ONNX Runtime static int8 (QDQ): every Conv/MatMul int8, activation ranges calibrated on training batches."""

    kind: ClassVar[str] = "ort_static_int8"
    family: ClassVar[str] = "int8"
    needs: ClassVar[frozenset[str]] = frozenset({"cpu", "data"})
    kernels: ClassVar[str] = ORT_INT8
    modes: ClassVar[tuple[str, ...]] = ("onnxruntime",)
    advice: ClassVar[str] = (
        "calibrate on more batches (ort_static_int8:calibration_batches=32) "
        "or choose the ranges another way (ort_static_int8:calibration=percentile)"
    )
    calibration_batches: int = 8  # training batches run to record activation ranges
    calibration: str = "minmax"  # how ranges are chosen: minmax, entropy, percentile (ONNX Runtime's methods)
    per_channel: bool = True  # one weight scale per output channel (conv nets lose much less accuracy)
    # ONNX Runtime's x86 int8 kernels take uint8 activations with int8 weights (U8S8): measured on an AMD
    # EPYC (VNNI, 1 thread), resnet20 on CIFAR-10 ran at 0.35 ms (batch 1) with uint8 against 0.88 ms
    # with int8 activations, which was slower than float32 (0.51 ms); accuracy was the same.
    activations: str = "uint8"  # uint8 or int8
    # qdq: QuantizeLinear/DequantizeLinear pairs around float ops, the portable form (TensorRT reads it);
    # qoperator: fused QLinearConv/QLinearMatMul ops, a little faster in ONNX Runtime's CPU provider.
    graph: str = "qdq"  # qdq or qoperator

    def check(self) -> None:
        if not self.calibration_batches >= 1:
            raise ConfigError(
                f"OrtStaticInt8.calibration_batches must be an integer >= 1 (got {self.calibration_batches})"
            )
        for name, allowed in (("calibration", CALIBRATION), ("activations", ACTIVATIONS), ("graph", GRAPH_FORMATS)):
            if getattr(self, name) not in allowed:
                raise ConfigError(str(unknown_name_error(f"OrtStaticInt8.{name}", getattr(self, name), allowed)))


@dataclass(frozen=True)
class OrtDynamicInt8(CompressStep):
    """ONNX Runtime dynamic int8: int8 weights, activations quantized per batch as they arrive."""

    kind: ClassVar[str] = "ort_dynamic_int8"
    family: ClassVar[str] = "int8"
    needs: ClassVar[frozenset[str]] = frozenset({"cpu"})
    kernels: ClassVar[str] = ORT_INT8
    modes: ClassVar[tuple[str, ...]] = ("onnxruntime",)
    advice: ClassVar[str] = (
        "one weight scale per channel (ort_dynamic_int8:per_channel=true) "
        "or calibrated activation ranges (ort_static_int8)"
    )
    not_faster: ClassVar[str] = (
        "ONNX Runtime's dynamic int8 measures activation ranges on every call and runs convolutions as "
        "ConvInteger, which is slow on CPUs: use OrtStaticInt8 for conv nets"
    )
    per_channel: bool = False  # ONNX Runtime's default for dynamic quantization


@implements(OrtStaticInt8)
def _apply_ort_static(model: nn.Module, step: OrtStaticInt8, ctx: CompressContext) -> nn.Module:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    batches = _batches(ctx)

    class Reader(CalibrationDataReader):
        def __init__(self, input_name: str):
            self.input_name, self.seen, self.batches = input_name, 0, iter(batches)

        def get_next(self) -> dict[str, Any] | None:
            if self.seen == step.calibration_batches:
                return None
            x = next(self.batches, None)
            if x is None:
                return None
            self.seen += 1
            return {self.input_name: x.detach().to("cpu", torch.float32).numpy()}

    readers: list[Reader] = []

    def quantize(src: Path, dst: Path) -> None:
        readers.append(Reader("input"))
        quantize_static(
            str(src),
            str(dst),
            readers[-1],
            per_channel=step.per_channel,
            quant_format=QuantFormat.QDQ if step.graph == "qdq" else QuantFormat.QOperator,
            activation_type=QuantType.QUInt8 if step.activations == "uint8" else QuantType.QInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=getattr(
                CalibrationMethod,
                {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}[step.calibration],
            ),
        )

    quantized = _ort_quantize(model, ctx, quantize)
    ctx.record(
        step=step.kind,
        calibration_batches=readers[-1].seen,
        size_bytes_before=model_size_bytes(model),
        size_bytes_after=model_size_bytes(quantized),
    )
    return quantized


@implements(OrtDynamicInt8)
def _apply_ort_dynamic(model: nn.Module, step: OrtDynamicInt8, ctx: CompressContext) -> nn.Module:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantized = _ort_quantize(
        model,
        ctx,
        lambda src, dst: quantize_dynamic(
            str(src), str(dst), weight_type=QuantType.QInt8, per_channel=step.per_channel
        ),
    )
    ctx.record(step=step.kind, size_bytes_before=model_size_bytes(model), size_bytes_after=model_size_bytes(quantized))
    return quantized


def _ort_quantize(model: nn.Module, ctx: CompressContext, quantize: Any) -> OnnxRuntimeModule:
    """Export ``model`` (on the CPU), pre-process the graph and run ``quantize(src, dst)`` on it."""
    require_modules(["onnx", "onnxscript", "onnxruntime"], "ONNX Runtime quantization", DEPLOY_PIP)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    example = _example(ctx.example_input, "ONNX Runtime quantization").cpu()
    with tempfile.TemporaryDirectory() as tmp, _quiet_quantizer():
        float_path = export_onnx(model.cpu().eval(), example, Path(tmp) / "float.onnx")
        ready, out = Path(tmp) / "ready.onnx", Path(tmp) / "int8.onnx"
        quant_pre_process(str(float_path), str(ready))
        quantize(ready, out)
        quantized = OnnxRuntimeModule(out.read_bytes())
    model.to(ctx.device)
    return quantized


@contextlib.contextmanager
def _quiet_quantizer() -> Iterator[None]:
    """ONNX Runtime's quantizer logs advice at WARNING on the root logger, which papermill would show."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)
