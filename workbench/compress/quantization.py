"""Quantization: fewer bits per weight (and activation), one small config per method.

=================  =======================================  ===============================================
step               what changes                             where it pays off
=================  =======================================  ===============================================
DynamicInt8        Linear/LSTM weights int8, activations    CPU; models dominated by Linear layers
                   quantized per batch on the fly
StaticInt8         every Conv/Linear int8, activation       x86 CPU, under ``torch.compile`` (eager runs
                   ranges calibrated once (pt2e)            the same float kernels plus quantize steps)
QAT                StaticInt8 after fine-tuning with        as StaticInt8; recovers accuracy that
                   fake quantization in the loop (BN        calibration alone loses
                   folded, statistics frozen)
WeightOnlyInt8     Linear weights int8 (torchao)            memory-bound Linear layers (LLM decoding)
WeightOnlyInt4     Linear weights 4-bit, one scale per      as WeightOnlyInt8; here stored unpacked in int8
                   ``group_size`` inputs (torchao)          bytes, so the file is no smaller than int8
CastPrecision      all weights fp16 or bf16                 GPUs; on CPU fp16 matmuls may be slow
=================  =======================================  ===============================================

Sizes are what the weights take when saved (``torch.save`` of the state dict), quantized tensors at
their real width. A pt2e program is converted with ``fold_quantize=True`` and its float weight copies
are dropped, so its state dict holds int8 weights only (about 4x smaller than float32).

Example:
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))
    >>> q = quantize(net, DynamicInt8())
    >>> q(torch.randn(2, 16)).shape
    torch.Size([2, 4])
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import logging
import types
import warnings
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from .._errors import ConfigError, has_module, require_modules
from .._files import atomic_write
from .._registry import unknown_name_error
from .._untrusted import load_export_program
from ..measure import model_device, model_size_bytes
from ..measure.onnx import OnnxRuntimeModule, quiet_export
from ..models import module_structure, restore_structure
from ..train import train
from .core import QUANTIZATION, CompressContext, CompressStep, apply_step, implements, step_types

TORCHAO_PIP = "pip install torchao==0.18.0"
CAST_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}
SAVE_FORMAT = "workbench-quantized-state/1"
METADATA_FILE = "workbench.json"  # inside a torch.export archive, beside the graph
# Debug metadata torch.export keeps per node (source lines, module paths); running needs none of it,
# and for a small int8 net it is a third of the saved program.
_DEBUG_META = ("stack_trace", "nn_module_stack", "source_fn_stack", "from_node", "torch_fn", "seq_nr", "custom")
X86_INT8 = "x86 int8 kernels (X86InductorQuantizer)"
INT8_ADVICE = "calibrate on more batches (static_int8:calibration_batches=32) or fine-tune with quantization (qat)"


@dataclass(frozen=True)
class DynamicInt8(CompressStep):
    """int8 Linear/LSTM weights; activations are quantized per batch as they arrive (CPU only)."""

    kind: ClassVar[str] = "dynamic_int8"
    tasks: ClassVar[tuple[str, ...]] = ("image", "lm")
    family: ClassVar[str] = "int8"
    needs: ClassVar[frozenset[str]] = frozenset({"cpu"})
    kernels: ClassVar[str] = "torch's int8 dynamic kernels (fbgemm/x86/qnnpack)"
    advice: ClassVar[str] = INT8_ADVICE

    def matmul_kind(self) -> str:
        return "int8_dynamic"


@dataclass(frozen=True)
class StaticInt8(CompressStep):
    """Post-training int8 for every Conv/Linear with activation ranges calibrated on training batches (x86 CPU)."""

    kind: ClassVar[str] = "static_int8"
    family: ClassVar[str] = "int8"
    needs: ClassVar[frozenset[str]] = frozenset({"cpu", "x86", "data"})
    kernels: ClassVar[str] = X86_INT8
    advice: ClassVar[str] = INT8_ADVICE
    calibration_batches: int = 8  # training batches run to record activation ranges

    def matmul_kind(self) -> str:
        return "int8"

    def check(self) -> None:
        if not self.calibration_batches >= 1:
            raise ConfigError(
                f"StaticInt8.calibration_batches must be an integer >= 1 (got {self.calibration_batches})"
            )


@dataclass(frozen=True)
class QAT(CompressStep):
    """Quantization-aware training: fine-tune with fake int8 in the forward pass, then convert to int8 (x86 CPU)."""

    kind: ClassVar[str] = "qat"
    family: ClassVar[str] = "int8"
    needs: ClassVar[frozenset[str]] = frozenset({"cpu", "x86", "data"})
    kernels: ClassVar[str] = X86_INT8
    advice: ClassVar[str] = "fine-tune with quantization longer (qat:epochs=3)"
    epochs: int = 1  # fine-tuning epochs with fake quantization
    lr: float = 0.0  # peak lr; 0 = a tenth of the training lr
    convert: bool = True  # False keeps the fake-quant model (float math: to study QAT, not to ship)

    def check(self) -> None:
        if not self.epochs >= 1:
            raise ConfigError(f"QAT.epochs must be an integer >= 1 (got {self.epochs})")
        if not self.lr >= 0:
            raise ConfigError(f"QAT.lr must be >= 0; 0 means a tenth of the training lr (got {self.lr})")

    def keeps_fake_quant(self) -> bool:
        return not self.convert

    def matmul_kind(self) -> str:
        return "int8" if self.convert else ""


@dataclass(frozen=True)
class WeightOnlyInt8(CompressStep):
    """int8 Linear weights with one scale per output channel (torchao); activations stay float."""

    kind: ClassVar[str] = "weight_only_int8"
    tasks: ClassVar[tuple[str, ...]] = ("image", "lm")
    family: ClassVar[str] = "weight-only"
    advice: ClassVar[str] = INT8_ADVICE


@dataclass(frozen=True)
class WeightOnlyInt4(CompressStep):
    """4-bit Linear weights with one scale per ``group_size`` inputs (torchao); activations stay float."""

    kind: ClassVar[str] = "weight_only_int4"
    tasks: ClassVar[tuple[str, ...]] = ("image", "lm")
    family: ClassVar[str] = "weight-only"
    advice: ClassVar[str] = "use smaller groups (weight_only_int4:group_size=16) or 8-bit weights (weight_only_int8)"
    group_size: int = 32  # inputs sharing one scale: smaller = more accurate, more scales to store

    def check(self) -> None:
        if not self.group_size > 0:
            raise ConfigError(
                f"WeightOnlyInt4.group_size must be a positive integer such as 32 (got {self.group_size})"
            )


@dataclass(frozen=True)
class CastPrecision(CompressStep):
    """All weights in fp16 or bf16; inputs are cast in and logits back to float32."""

    kind: ClassVar[str] = "cast_precision"
    tasks: ClassVar[tuple[str, ...]] = ("image", "lm")
    family: ClassVar[str] = "cast"
    dtype: str = "bf16"  # fp16 (GPUs; CPU fp16 matmuls may be slow) or bf16 (wider range, CPU-friendly)

    def check(self) -> None:
        if self.dtype not in CAST_DTYPES:
            raise ConfigError(str(unknown_name_error("CastPrecision.dtype", self.dtype, CAST_DTYPES)))

    def matmul_kind(self) -> str:
        return self.dtype


class Casted(nn.Module):
    """``model`` with its weights in ``dtype``: float32 in, ``dtype`` math inside, float32 logits out. Token ids
    go in as they are, keyword arguments (a GPT's ``cache``) pass through, and what the wrapper lacks is asked
    of the model inside (a GPT's ``new_cache`` and ``shape``), so a cast language model still generates."""

    def __init__(self, model: nn.Module, dtype: torch.dtype):
        super().__init__()
        self.model, self.dtype = model.to(dtype), dtype

    def forward(self, x: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        return self.model(x.to(self.dtype) if x.is_floating_point() else x, **kwargs).float()

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)  # parameters, buffers and submodules (self.model itself)
        except AttributeError:
            return getattr(super().__getattr__("model"), name)


# ---------------------------------------------------------------------------------------------
# Plain functions


def quantization_steps() -> dict[str, type[CompressStep]]:
    """The registered steps of the quantization families (``core.QUANTIZATION``) by kind: what ``quantize`` takes.

    Example:
        >>> [kind for kind in quantization_steps() if "int8" in kind]
        ['dynamic_int8', 'ort_dynamic_int8', 'ort_static_int8', 'static_int8', 'weight_only_int8']
    """
    return {kind: t for kind, t in step_types().items() if t.family in QUANTIZATION}


def quantize(
    model: nn.Module,
    config: CompressStep | str,
    *,
    example_inputs: torch.Tensor | None = None,
    calibration: Iterable | None = None,
    ctx: CompressContext | None = None,
) -> nn.Module:
    """Quantize ``model`` as ``config`` says (a step of ``quantization_steps()`` or its kind) and return the result.

    ``example_inputs`` is one input batch (pt2e methods trace with it); ``calibration`` yields batches
    (``x`` or ``(x, y)``) for StaticInt8's activation ranges and QAT's fine-tuning; ``ctx`` supplies
    both plus the device and training recipe when called from a pipeline. The input model may be
    modified; keep a ``copy.deepcopy`` if you need the float one.

    Example:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))
        >>> q = quantize(net, "weight_only_int8")
        >>> q(torch.randn(3, 64)).shape
        torch.Size([3, 4])
        >>> quantize(net, "int9")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: Unknown quantization method 'int9'. Choose one of: cast_precision, dynamic_int8, ...
    """
    steps = quantization_steps()
    if isinstance(config, str):
        if config not in steps:
            raise unknown_name_error("quantization method", config, steps)
        config = steps[config]()
    if type(config) not in steps.values():
        raise TypeError(
            f"quantize() takes one of {', '.join(c.__name__ for c in steps.values())} "
            f"(got {type(config).__name__}); apply other steps with workbench.compress.apply_step"
        )
    if ctx is None:
        ctx = CompressContext(example_input=example_inputs, train_loader=calibration, device=model_device(model))
    else:
        changes = {"example_input": example_inputs, "train_loader": calibration}
        ctx = dataclasses.replace(ctx, **{k: v for k, v in changes.items() if v is not None})
    return apply_step(model, config, ctx)


def is_pt2e_program(model: Any) -> bool:
    """Whether ``model`` is a converted pt2e int8 program (a GraphModule of quantize/dequantize ops)."""
    return isinstance(model, torch.fx.GraphModule) and any(
        n.op == "call_function" and "quantized_decomposed" in str(n.target) for n in model.graph.nodes
    )


def is_fake_quant(model: nn.Module) -> bool:
    """Whether ``model`` still simulates quantization in float (QAT before ``convert``): slower than fp32."""
    fake = _pt2e().FakeQuantizeBase if has_module("torchao") else ()
    return bool(fake) and any(isinstance(m, fake) for m in model.modules())


def save_quantized(
    model: nn.Module,
    path: str | Path,
    example_inputs: torch.Tensor | None = None,
    *,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Save a compressed (or float) model so ``load_quantized`` gives back one with equal outputs.

    A pt2e int8 program is saved whole with ``torch.export.save`` (graph and int8 weights; needs
    ``example_inputs`` to re-export it). Any other model is saved as its state dict with its layout
    (dynamic int8, a cast, or plain) and its structure (layer widths a structured pruning changed),
    which ``load_quantized`` reads with ``weights_only=True`` into the float architecture it came
    from. ``metadata`` (plain JSON values) travels in the file; ``saved_metadata`` reads it back.
    The file is written atomically.

    Example:
        >>> import tempfile, torch
        >>> net = quantize(torch.nn.Sequential(torch.nn.Linear(8, 4)), DynamicInt8())
        >>> path = save_quantized(net, tempfile.mkdtemp() + "/net.pt", metadata={"note": "demo"})
        >>> back = load_quantized(path, model=torch.nn.Sequential(torch.nn.Linear(8, 4)))
        >>> x = torch.randn(2, 8)
        >>> torch.equal(back(x), net(x)), saved_metadata(path), saved_format(path)
        (True, {'note': 'demo'}, 'state_dict')
    """
    return atomic_write(path, lambda f: _write(model, f, example_inputs, metadata or {}))


def load_quantized(path: str | Path, model: nn.Module | None = None) -> nn.Module:
    """Load what ``save_quantized`` wrote. A state-dict file needs ``model``: the float architecture it came from.

    Files are read without running code they may carry: a program's pickled members are checked with
    ``weights_only=True`` before ``torch.export.load`` sees them (``_untrusted``),
    ``torch.load(weights_only=True)`` otherwise (torchao's quantized tensor types are allow-listed by
    torchao itself).

    Example:
        >>> import tempfile, torch
        >>> net = quantize(torch.nn.Sequential(torch.nn.Linear(8, 4)), CastPrecision("bf16"))
        >>> path = save_quantized(net, tempfile.mkdtemp() + "/net.pt")
        >>> load_quantized(path, model=torch.nn.Sequential(torch.nn.Linear(8, 4))).dtype
        torch.bfloat16
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No saved model at {path}")
    if _is_export_archive(path):
        if has_module("torchao"):
            _import_torchao()  # torchao's tensor types, allow-listed for the weights-only check
        return _inference_only(load_export_program(path).module())
    ckpt = _read_state(path)
    if model is None:
        raise ValueError(
            f"{path} holds a state dict: pass model=<the float architecture>, e.g. "
            "load_quantized(path, model=create_model(...))"
        )
    layout = ckpt["layout"]
    if layout == "onnxruntime":  # the graph is the model: no float architecture to rebuild
        return OnnxRuntimeModule(ckpt["state_dict"]["onnx_graph"]).eval()
    if layout == "dynamic_int8":
        model = _quantize_dynamic(model)
    elif layout.startswith("cast:"):
        model = Casted(model, CAST_DTYPES[layout.removeprefix("cast:")])
    return restore_structure(model, ckpt.get("structure", {}), ckpt["state_dict"]).eval()


def saved_format(path: str | Path) -> str:
    """How ``save_quantized`` stored a model: ``export_program`` (a ``torch.export`` archive: graph and
    int8 weights, loads alone) or ``state_dict`` (weights, layout and structure: loads into its float
    architecture)."""
    return "export_program" if _is_export_archive(Path(path)) else "state_dict"


def saved_metadata(path: str | Path) -> dict[str, Any]:
    """The ``metadata`` given to ``save_quantized``, read without loading the model."""
    path = Path(path)
    if _is_export_archive(path):
        with zipfile.ZipFile(path) as z:
            name = next((n for n in z.namelist() if n.endswith(f"/extra/{METADATA_FILE}")), None)
            return json.loads(z.read(name)) if name else {}
    return _read_state(path).get("metadata", {})


def saved_size_bytes(model: nn.Module, example_inputs: torch.Tensor | None = None) -> int:
    """Bytes of the file ``save_quantized`` writes for ``model``.

    For a pt2e program that is the whole ``torch.export`` archive: the int8 weights plus the graph,
    whose fixed cost (tens of KB) dominates for tiny nets. ``workbench.measure.model_size_bytes`` counts
    the weights alone, the same way for every model, which is what size ratios compare.

    Example:
        >>> import torch
        >>> net = torch.nn.Linear(256, 256)
        >>> saved_size_bytes(quantize(torch.nn.Sequential(net), DynamicInt8())) < saved_size_bytes(net) / 3
        True
    """
    buf = io.BytesIO()
    _write(model, buf, example_inputs, {})
    return buf.getbuffer().nbytes


# ---------------------------------------------------------------------------------------------
# Step implementations


@implements(DynamicInt8)
def _apply_dynamic(model: nn.Module, step: DynamicInt8, ctx: CompressContext) -> nn.Module:
    if not any(isinstance(m, (nn.Linear, nn.LSTM)) for m in model.modules()):
        raise ValueError(
            f"DynamicInt8 quantizes Linear and LSTM layers and {type(model).__name__} has none: "
            "use StaticInt8 for conv nets"
        )
    before = model_size_bytes(model)
    model = _quantize_dynamic(model)
    ctx.record(step=step.kind, size_bytes_before=before, size_bytes_after=model_size_bytes(model))
    return model


@implements(StaticInt8)
def _apply_static(model: nn.Module, step: StaticInt8, ctx: CompressContext) -> nn.Module:
    pt2e = _pt2e()
    before = model_size_bytes(model)
    batches = _batches(ctx)
    model.eval()  # BatchNorm folds into the conv with its running statistics
    prepared = pt2e.prepare_pt2e(
        _export(model, _example(ctx.example_input, "StaticInt8")).module(), _quantizer(is_qat=False)
    )
    seen = 0
    with torch.no_grad():
        for x in ctx.bar(batches, "calibrating int8 activation ranges", total=step.calibration_batches):
            if seen == step.calibration_batches:
                break
            prepared(x)
            seen += 1
    program = _finish(pt2e.convert_pt2e(prepared, fold_quantize=True))
    ctx.record(
        step=step.kind, calibration_batches=seen, size_bytes_before=before, size_bytes_after=model_size_bytes(program)
    )
    return program


@implements(QAT)
def _apply_qat(model: nn.Module, step: QAT, ctx: CompressContext) -> nn.Module:
    pt2e = _pt2e()
    before = model_size_bytes(model)
    # BatchNorm is folded into the convs first, its statistics frozen at their trained values (the usual
    # last phase of QAT). Fake-quant training with live BatchNorm makes torchao's convert re-trace about a
    # hundred patterns: a minute of CPU time for a short fine-tune.
    graph = _export(model.eval(), _example(ctx.example_input, "QAT")).module()
    pt2e.fold_conv_bn(graph)
    prepared = pt2e.prepare_qat_pt2e(graph, _quantizer(is_qat=True))
    _trainable(prepared)
    cfg = dataclasses.replace(
        ctx.train, epochs=step.epochs, lr=step.lr or ctx.train.lr * 0.1, schedule="cosine", warmup_epochs=0.0
    )
    hardware = dataclasses.replace(ctx.hardware, compile=False, channels_last=False)
    outcome = train(
        prepared,
        ctx.train_loader,
        cfg,
        eval_loader=ctx.eval_loader,
        hardware=hardware,
        device=ctx.device,
        callbacks=ctx.training_bars("QAT fine-tune (fake quantization)"),
    )
    prepared.eval()
    result = _finish(pt2e.convert_pt2e(prepared, fold_quantize=True)) if step.convert else prepared
    last = outcome.history[-1] if outcome.history else {}
    ctx.record(
        step=step.kind,
        qat_lr=cfg.lr,
        qat_epochs=step.epochs,
        converted=step.convert,
        status=outcome.status,
        size_bytes_before=before,
        size_bytes_after=model_size_bytes(result),
        **{k: last[k] for k in ("train_accuracy", "test_accuracy") if k in last},
    )
    return result


@implements(WeightOnlyInt8)
def _apply_weight_only_int8(model: nn.Module, step: WeightOnlyInt8, ctx: CompressContext) -> nn.Module:
    _import_torchao()
    from torchao.quantization import Int8WeightOnlyConfig

    return _torchao_quantize(model, Int8WeightOnlyConfig(), step, ctx)


@implements(WeightOnlyInt4)
def _apply_weight_only_int4(model: nn.Module, step: WeightOnlyInt4, ctx: CompressContext) -> nn.Module:
    _import_torchao()
    from torchao.quantization import IntxWeightOnlyConfig
    from torchao.quantization.granularity import PerGroup

    bad = [
        (n, m.in_features)
        for n, m in model.named_modules()
        if isinstance(m, nn.Linear) and m.in_features % step.group_size
    ]
    if bad:
        name, width = bad[0]
        raise ConfigError(
            f"WeightOnlyInt4.group_size={step.group_size} must divide every Linear's inputs, "
            f"but '{name}' has {width}: pick a divisor of {width}"
        )
    # Int4WeightOnlyConfig needs CUDA-only packing in torchao 0.18; the intx path runs anywhere.
    config = IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=PerGroup(step.group_size))
    return _torchao_quantize(model, config, step, ctx)


@implements(CastPrecision)
def _apply_cast(model: nn.Module, step: CastPrecision, ctx: CompressContext) -> nn.Module:
    before = model_size_bytes(model)
    model = Casted(model.eval(), CAST_DTYPES[step.dtype])
    ctx.record(step=step.kind, dtype=step.dtype, size_bytes_before=before, size_bytes_after=model_size_bytes(model))
    return model


# ---------------------------------------------------------------------------------------------
# Internals


def _write(model: nn.Module, f: Any, example_inputs: torch.Tensor | None, metadata: dict[str, Any]) -> None:
    if is_fake_quant(model):
        raise ValueError(
            "This is a fake-quant model (QAT with convert=False): convert it first, e.g. QAT(convert=True)"
        )
    if is_pt2e_program(model):
        if example_inputs is None:
            raise ValueError("save_quantized needs example_inputs (one input batch) to save a pt2e int8 program")
        program = _export(model, _example(example_inputs), strip=True)
        with quiet_export():  # torch.export warns about the file object atomic_write hands it, though it writes fine
            torch.export.save(program, f, extra_files={METADATA_FILE: json.dumps(metadata)})
        return
    with _quiet_storage():
        torch.save(
            {
                "format": SAVE_FORMAT,
                "layout": _layout(model),
                "structure": module_structure(model),
                "metadata": metadata,
                "state_dict": model.state_dict(),
            },
            f,
        )


def _read_state(path: Path) -> dict[str, Any]:
    if has_module("torchao"):
        _import_torchao()  # registers torchao's tensor types as safe for weights_only loading
    with _quiet_storage():
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if not (isinstance(ckpt, dict) and ckpt.get("format") == SAVE_FORMAT):
        raise ValueError(f"{path} was not written by save_quantized (no '{SAVE_FORMAT}' header)")
    return ckpt


def _import_torchao() -> None:
    """Import torchao quietly (it logs about optional CUDA kernels a CPU build lacks) or say how to install it."""
    require_modules(["torchao"], "This quantization method", TORCHAO_PIP)
    loggers = [logging.getLogger(n) for n in ("torchao", "torch.utils._pytree")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        import torchao  # noqa: F401
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _pt2e() -> types.SimpleNamespace:
    """torchao's pt2e functions, imported on first use (torchao is an optional extra)."""
    _import_torchao()
    from torchao.quantization.pt2e import FakeQuantizeBase, disable_observer, enable_observer
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e, prepare_qat_pt2e
    from torchao.quantization.pt2e.utils import _fuse_conv_bn_ as fold_conv_bn  # what prepare_pt2e does for PTQ

    return types.SimpleNamespace(
        FakeQuantizeBase=FakeQuantizeBase,
        disable_observer=disable_observer,
        enable_observer=enable_observer,
        convert_pt2e=convert_pt2e,
        prepare_pt2e=prepare_pt2e,
        prepare_qat_pt2e=prepare_qat_pt2e,
        fold_conv_bn=fold_conv_bn,
    )


def _quantizer(is_qat: bool):
    from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
        X86InductorQuantizer,
        get_default_x86_inductor_quantization_config,
    )

    quantizer = X86InductorQuantizer()
    quantizer.set_global(get_default_x86_inductor_quantization_config(is_qat=is_qat))
    return quantizer


@contextlib.contextmanager
def _quiet_storage() -> Iterator[None]:
    """Serialising torch.ao's packed int8 weights goes through a deprecated storage API that warns each time;
    a foreign file's pickle protocol draws a warning too, before the safe loader refuses it in one line."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="TypedStorage is deprecated")
        warnings.filterwarnings("ignore", message="Detected pickle protocol")
        yield


def _quantize_dynamic(model: nn.Module) -> nn.Module:
    with warnings.catch_warnings():
        # torch.ao.quantization is deprecated in favour of torchao, but it is still the CPU dynamic-int8 path.
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(model.eval(), {nn.Linear, nn.LSTM}, dtype=torch.qint8)


def _torchao_quantize(model: nn.Module, config: Any, step: CompressStep, ctx: CompressContext) -> nn.Module:
    from torchao.quantization import quantize_

    if not any(isinstance(m, nn.Linear) for m in model.modules()):
        raise ValueError(
            f"{type(step).__name__} quantizes Linear layers and {type(model).__name__} has none: "
            "use StaticInt8 for conv nets"
        )
    before = model_size_bytes(model)
    quantize_(model.eval(), config)
    if ctx.example_input is not None:  # torchao kernels differ per device: fail here, not mid-benchmark
        try:
            with torch.no_grad():
                model(ctx.example_input[:2])
        except (RuntimeError, NotImplementedError) as e:
            raise ValueError(
                f"{type(step).__name__} does not run on {ctx.device} with this torchao build "
                f"({str(e).splitlines()[0][:120]}): try WeightOnlyInt8 or CastPrecision"
            ) from None
    ctx.record(step=step.kind, size_bytes_before=before, size_bytes_after=model_size_bytes(model))
    return model


def _example(x: torch.Tensor | None, who: str = "this method") -> torch.Tensor:
    if x is None:
        raise ValueError(f"{who} traces the model and needs example_inputs (one input batch)")
    # A copy: export saves the sample input's whole storage, and a slice of a big batch drags it all along.
    # Two rows at least, so the batch dimension is traced as dynamic instead of specialised to 1.
    return x[:8].detach().clone() if len(x) >= 2 else x.detach().repeat(2, *([1] * (x.dim() - 1)))


def _export(model: nn.Module, x: torch.Tensor, strip: bool = False) -> torch.export.ExportedProgram:
    program = torch.export.export(model, (x,), dynamic_shapes=({0: torch.export.Dim.DYNAMIC},))
    if strip:
        for node in program.graph.nodes:
            for key in _DEBUG_META:
                node.meta.pop(key, None)
    return program


def _batches(ctx: CompressContext) -> Iterator[torch.Tensor]:
    """The inputs of ``ctx``'s training batches (``apply_step`` has checked there are some), on its device."""
    for batch in ctx.train_loader:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        yield x.to(ctx.device)


def _finish(program: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """Make a converted pt2e program behave like a deployable module.

    ``convert_pt2e(fold_quantize=True)`` adds int8 weight constants but leaves the float weights
    attached, unused: the state dict would be larger than float32. They are dropped here, and the int8
    constants become (frozen) parameters so parameter counts see them.
    """
    used = {n.target for n in program.graph.nodes if n.op == "get_attr"}
    for name, tensor in [*program.named_parameters(), *program.named_buffers()]:
        owner_name, _, attr = name.rpartition(".")
        owner = program.get_submodule(owner_name)
        if name not in used:
            delattr(owner, attr)
        elif tensor.dtype == torch.int8 and not isinstance(tensor, nn.Parameter):
            delattr(owner, attr)
            owner.register_parameter(attr, nn.Parameter(tensor, requires_grad=False))
    program.graph.eliminate_dead_code()
    program.recompile()
    return _inference_only(program)


def _inference_only(program: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """An exported program refuses ``.train()``/``.eval()``; an int8 program has one behaviour, so both
    just set the flag."""

    def train(self, mode: bool = True):
        for m in self.modules():
            m.training = mode
        return self

    program.train = types.MethodType(train, program)
    program.eval = types.MethodType(lambda self: self.train(False), program)
    return program.eval()


def _trainable(prepared: torch.fx.GraphModule) -> None:
    """``train()`` / ``eval()`` for a QAT graph: observers record activation ranges in training only,
    so evaluating on test data cannot move the quantization scales."""
    pt2e = _pt2e()

    def train(self, mode: bool = True):
        self.apply(pt2e.enable_observer if mode else pt2e.disable_observer)
        for m in self.modules():
            m.training = mode
        return self

    prepared.train = types.MethodType(train, prepared)
    prepared.eval = types.MethodType(lambda self: self.train(False), prepared)


def _layout(model: nn.Module) -> str:
    """How to rebuild the module structure around a saved state dict from the float architecture."""
    if isinstance(model, OnnxRuntimeModule):
        return "onnxruntime"
    if isinstance(model, Casted):
        return "cast:" + next(k for k, v in CAST_DTYPES.items() if v == model.dtype)
    if any(type(m).__module__.startswith("torch.ao.nn.quantized.dynamic") for m in model.modules()):
        return "dynamic_int8"
    return "plain"  # float, or torchao weights (their tensors carry their own layout)


def _is_export_archive(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any(name.endswith("/archive_format") for name in z.namelist())
