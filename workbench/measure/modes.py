"""Timing a model in several execution modes (eager, ``torch.compile``, ONNX Runtime) and on every
device here, so the ledger can show where a compressed model is really faster.

Example:
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    >>> recs = measure_modes(net, (1, 8, 8), modes=("eager",), batch_sizes=(1,), warmup=1, iters=3)
    >>> recs[0]["mode"], recs[0]["batch_size"], recs[0]["latency_ms"] > 0
    ('eager', 1, True)
"""

from __future__ import annotations

import copy
import re
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from .._errors import Unavailable, root_cause
from .._registry import unknown_name_error
from .bench import benchmark_together
from .config import MEASURE_MODES, MeasureConfig
from .device import available_devices, device_name, model_device, resolve_device
from .onnx import export_onnx, export_program, onnxruntime_session

DEFAULT_MODES = ("eager", "compiled", "onnxruntime")


def measure_modes(
    model: nn.Module,
    example_input_chw: Sequence[int],
    *,
    modes: Sequence[str] = DEFAULT_MODES,
    batch_sizes: Sequence[int] = (1, 64),
    device: str | torch.device = "cpu",
    warmup: int = 5,
    iters: int = 30,
) -> list[dict[str, Any]]:
    """Time ``model`` in each execution mode with ``benchmark``; one record per (mode, batch size).

    - ``eager``: the module as it is.
    - ``compiled``: ``torch.compile`` with static shapes and frozen weights (inductor ``freezing``:
      constants folded and weights pre-packed, which is what turns pt2e int8 into real int8 kernels).
      Compiling takes seconds per batch size (about 15 s cold on a CPU) and happens before the timing.
    - ``export``: the ``torch.export`` program (what a bundle's ``model.pt2`` runs), executed op by op.
    - ``onnxruntime``: exported with ``workbench.deploy.export_onnx`` and run by ONNX Runtime: its CPU
      provider (intra-op threads = torch's) on a CPU, its CUDA provider on a GPU (onnxruntime-gpu).
    - ``tensorrt``: the same ONNX graph through ONNX Runtime's TensorRT provider (GPU, tensorrt installed).

    A mode that does not apply (an export that fails, a dtype ONNX Runtime lacks, no GPU or no TensorRT
    here) gives records with ``latency_ms=None`` and a one-line ``skipped`` reason instead of stopping the others.

    Example:
        >>> from torch import nn
        >>> recs = measure_modes(nn.Linear(4, 2), (4,), modes=("eager",), batch_sizes=(1, 8), warmup=1, iters=3)
        >>> [(r["mode"], r["batch_size"]) for r in recs]
        [('eager', 1), ('eager', 8)]
        >>> measure_modes(nn.Linear(4, 2), (4,), modes=("jit",))
        Traceback (most recent call last):
        ...
        ValueError: Unknown execution mode 'jit'. Choose one of: compiled, eager, export, onnxruntime, tensorrt.
    """
    return measure_modes_together(
        [model], example_input_chw, modes=modes, batch_sizes=batch_sizes, device=device, warmup=warmup, iters=iters
    )[0]


def measure_modes_together(
    models: Sequence[nn.Module],
    example_input_chw: Sequence[int],
    *,
    modes: Sequence[str] = DEFAULT_MODES,
    batch_sizes: Sequence[int] = (1, 64),
    device: str | torch.device = "cpu",
    warmup: int = 5,
    iters: int = 30,
    progress: bool = False,
    images: torch.Tensor | None = None,
) -> list[list[dict[str, Any]]]:
    """``measure_modes`` for models that will be compared: in each mode every model is prepared, then
    they are timed interleaved (``benchmark_together``). One list of records per model; ``progress``
    shows a bar while the models are compiled or exported; ``images`` are the real inputs every mode
    and model is timed on (random batches without them)."""
    for mode in modes:
        if mode not in MEASURE_MODES:
            raise unknown_name_error("execution mode", mode, MEASURE_MODES)
    device = resolve_device(device, field="device")
    chw = tuple(example_input_chw)
    out: list[list[dict[str, Any]]] = [[] for _ in models]
    was_training = [m.training for m in models]
    with tempfile.TemporaryDirectory() as tmp, compile_room(8 + 2 * len(models) * len(batch_sizes)):
        for mode in modes:
            runners = {}
            preparing = {
                "compiled": "compiling",
                "export": "exporting",
                "onnxruntime": "exporting to ONNX",
                "tensorrt": "building TensorRT engines",
            }.get(mode)
            for j, model in enumerate(
                tqdm(models, desc=f"{preparing} for timing", unit="model") if progress and preparing else models
            ):
                if getattr(model, "runtime", None) == mode:  # timed in this runtime already, by the main pass
                    continue
                try:
                    runners[j] = _prepare(model, mode, chw, batch_sizes, device, Path(tmp))
                except Exception as e:  # noqa: BLE001 - one mode failing, however, must not hide the others' numbers
                    out[j] += _skipped(mode, device, batch_sizes, skip_reason(mode, e))
            timing = {
                "batch_sizes": batch_sizes,
                "device": device,
                "warmup": warmup,
                "iters": iters,
                "mode": mode,
                "images": images,
            }
            try:
                timed = dict(zip(runners, benchmark_together(list(runners.values()), chw, **timing)))
            except Exception:  # noqa: BLE001 - a runner failed on a real batch: time each alone, only that one skipped
                timed = {}
                for j, runner in runners.items():
                    try:
                        timed[j] = benchmark_together([runner], chw, **timing)[0]
                    except Exception as e:  # noqa: BLE001 - any failure of this runner becomes its skip reason
                        timed[j] = _skipped(mode, device, batch_sizes, skip_reason(mode, e))
            for j, records in timed.items():
                out[j] += records
    for model, training in zip(models, was_training):
        model.train(training)
    return out


# Failures whose raw text names internals: (what the innermost message contains, what it means).
KNOWN_SKIPS = (
    (
        "LinearPackedParamsBase",
        "ONNX export cannot express dynamic int8's packed Linear weights (a PyTorch-only format)",
    ),
    ("__obj_flatten__", "the exporter cannot trace this model's packed (TorchScript-class) weights"),
    ("tensor(bfloat16)", "ONNX Runtime has no bfloat16 kernels for this graph: time the float32 model in it"),
    ("Type 'tensor(bfloat", "ONNX Runtime has no bfloat16 kernels for this graph: time the float32 model in it"),
)
STAGES = {
    "compiled": "torch.compile",
    "export": "torch.export",
    "onnxruntime": "ONNX export or ONNX Runtime",
    "tensorrt": "TensorRT",
    "eager": "the model",
}


def skip_reason(mode: str, error: BaseException) -> str:
    """Why ``mode`` could not time a model, in one readable line: a known cause in words, else the stage
    that failed and the first sentence of the innermost error, temporary paths left out, cut at a word.

    Example:
        >>> skip_reason("onnxruntime",
        ...             RuntimeError("Load model from /tmp/x/1.onnx failed: Type 'tensor(bfloat16)' bad"))
        'ONNX Runtime has no bfloat16 kernels for this graph: time the float32 model in it'
        >>> skip_reason("compiled", ValueError("Unsupported op foo.bar in /tmp/a/b.py. More detail follows"))
        'torch.compile failed: ValueError: Unsupported op foo.bar in <file>'
    """
    if isinstance(error, Unavailable):
        return str(error)
    inner = error
    while inner.__cause__ is not None:
        inner = inner.__cause__
    text = str(inner)
    for needle, meaning in KNOWN_SKIPS:
        if needle in text:
            return meaning
    cause = re.sub(r"(?:/[\w.+-]*[\w+-])+", "<file>", root_cause(error))
    cause = re.split(r"(?<=[.!?])\s", cause, maxsplit=1)[0].rstrip(".")
    if len(cause) > 140:
        cause = cause[:140].rsplit(" ", 1)[0] + "…"
    return f"{STAGES.get(mode, mode)} failed: {cause}"


def compile_room(graphs: int):
    """Room for ``graphs`` compiled graphs of one ``forward``: every model of a class shares its code
    object, timing compiles one graph per batch size and precision, and past dynamo's recompile limit
    (8) a further one silently runs eager, which would time eager under the label "compiled"."""
    import torch._dynamo.config as dynamo

    limit = max(dynamo.recompile_limit, graphs)
    return dynamo.patch(
        recompile_limit=limit, accumulated_recompile_limit=max(dynamo.accumulated_recompile_limit, 2 * limit)
    )


def _skipped(mode: str, where: torch.device, batch_sizes: Sequence[int], reason: str) -> list[dict[str, Any]]:
    return [
        {
            "batch_size": int(bs),
            "latency_ms": None,
            "device": str(where),
            "device_name": device_name(where),
            "mode": mode,
            "torch_version": torch.__version__,
            "skipped": reason,
        }
        for bs in batch_sizes
    ]


def timing_plan(cfg: MeasureConfig, main: torch.device) -> list[tuple[torch.device, list[str]]]:
    """The (device, modes) pairs to time after ``workbench.measure`` has timed eager on ``main``.

    ``cfg.modes`` other than eager on ``main``; with ``cfg.device == "all"`` every mode again on each
    other device here (``available_devices``), so one run fills CPU and GPU columns of the ledger.
    On a GPU, ``onnxruntime`` is ONNX Runtime's CUDA execution provider and ``tensorrt`` its TensorRT one.

    Example:
        >>> cfg = MeasureConfig(modes=("eager", "compiled", "onnxruntime"), device="all")
        >>> plan = timing_plan(cfg, torch.device("cpu"))
        >>> plan[0]
        (device(type='cpu'), ['compiled', 'onnxruntime'])
        >>> all(modes == ["eager", "compiled", "onnxruntime"] for _, modes in plan[1:])  # a GPU, where there is one
        True
    """
    others = [d for d in available_devices() if d.type != main.type] if cfg.device == "all" else []
    plan = [(main, [m for m in cfg.modes if m != "eager"])]
    plan += [(d, list(cfg.modes)) for d in others]
    return [(d, modes) for d, modes in plan if modes]


def _eager(
    model: nn.Module, chw: tuple[int, ...], batch_sizes: Sequence[int], device: torch.device, tmp: Path
) -> Callable:
    return model


def _compiled(
    model: nn.Module, chw: tuple[int, ...], batch_sizes: Sequence[int], device: torch.device, tmp: Path
) -> Callable:
    import torch._inductor.config as inductor_config

    # Static shapes: one graph per batch size (the int8 conv lowering rejects a dynamic batch here).
    compiled = torch.compile(model, dynamic=False)
    # Compile now, with freezing on: weights become constants, so pt2e's dequantize -> conv patterns
    # lower to fused int8 kernels. torch.compile(options={"freezing": True}) misses that lowering.
    with torch.inference_mode(), inductor_config.patch(freezing=True), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="To copy construct from a tensor")  # inside inductor's int8 lowering
        for bs in batch_sizes:
            compiled(torch.randn(bs, *chw, device=device))
    return compiled


def _exported(
    model: nn.Module, chw: tuple[int, ...], batch_sizes: Sequence[int], device: torch.device, tmp: Path
) -> Callable:
    # What a bundle's model.pt2 runs: the torch.export graph (dynamic batch), executed op by op.
    program = export_program(model, torch.randn(2, *chw, device=device)).module()
    return lambda x: program(x)  # a plain callable: an exported module refuses .eval(), which timing calls on modules


def _onnxruntime(
    model: nn.Module,
    chw: tuple[int, ...],
    batch_sizes: Sequence[int],
    device: torch.device,
    tmp: Path,
    provider: str | None = None,
) -> Callable:
    provider = provider or ("cuda" if device.type == "cuda" else "cpu")
    if provider != "cpu" and device.type != "cuda":
        raise Unavailable(
            f"{'TensorRT' if provider == 'tensorrt' else 'the CUDA execution provider'} needs a CUDA GPU; "
            "this run times on the CPU"
        )
    cpu_model = model if model_device(model).type == "cpu" else copy.deepcopy(model).cpu()
    path = export_onnx(cpu_model, torch.randn(2, *chw), tmp / f"{id(model)}.onnx")
    return onnxruntime_session(path, provider=provider)


def _tensorrt(
    model: nn.Module, chw: tuple[int, ...], batch_sizes: Sequence[int], device: torch.device, tmp: Path
) -> Callable:
    return _onnxruntime(model, chw, batch_sizes, device, tmp, provider="tensorrt")


# Execution mode -> how to make a callable of it (each raises Unavailable, in one line, where it cannot run).
RUNTIMES: dict[str, Callable[..., Callable]] = {
    "eager": _eager,
    "compiled": _compiled,
    "export": _exported,
    "onnxruntime": _onnxruntime,
    "tensorrt": _tensorrt,
}
assert tuple(RUNTIMES) == MEASURE_MODES


def _prepare(
    model: nn.Module, mode: str, chw: tuple[int, ...], batch_sizes: Sequence[int], device: torch.device, tmp: Path
) -> Callable:
    if getattr(model, "runtime", "eager") != "eager":  # a graph only its own runtime runs (ONNX Runtime int8)
        raise Unavailable(f"this model is a {model.runtime} graph: it runs in {model.runtime} only")
    if mode != "eager":
        model.eval()
    return RUNTIMES[mode](model, chw, batch_sizes, device, tmp)
