"""ONNX export (``torch.onnx.export``, dynamo exporter) and ONNX Runtime inference with a parity check.

Example:
    >>> import tempfile, torch
    >>> net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    >>> path = export_onnx(net, torch.randn(4, 8), tempfile.mkdtemp() + "/net.onnx")
    >>> run = onnxruntime_session(path)
    >>> run(torch.randn(5, 8)).shape  # the batch dimension is dynamic
    torch.Size([5, 3])
    >>> parity(net, run, torch.randn(16, 8))["max_abs_error"] < 1e-4
    True
"""
from __future__ import annotations

import contextlib
import logging
import os
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch import nn

from .._errors import require_modules, root_cause

DEPLOY_PIP = "pip install onnx onnxscript onnxruntime"
TWO_GB = 2**31  # protobuf's limit: bigger models keep their weights in a side file


class OnnxRuntimeModel:
    """An ONNX Runtime session wrapped as ``torch tensor batch -> torch tensor logits`` (CPU execution)."""

    def __init__(self, session: Any, path: Path):
        self.session, self.path = session, path
        self.input_name = session.get_inputs()[0].name

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        (out,) = self.session.run(None, {self.input_name: x.detach().to("cpu", torch.float32).numpy()})
        return torch.from_numpy(out)

    def __repr__(self) -> str:
        return f"OnnxRuntimeModel({self.path.name}, threads={self.session.get_session_options().intra_op_num_threads})"


def export_onnx(model: nn.Module, example_inputs: torch.Tensor, path: str | os.PathLike, *, dynamo: bool = True) -> Path:
    """Export ``model`` (eval mode) to one ONNX file whose batch dimension is dynamic; returns the path.

    ``dynamo=True`` (the default) traces with ``torch.export``; ``dynamo=False`` uses the older
    TorchScript exporter. Raises one line naming the cause when the model cannot be exported.

    Example (each export takes a few seconds, so the module example is the one doctest runs):
        >>> import tempfile, torch
        >>> path = export_onnx(torch.nn.Linear(4, 2), torch.randn(3, 4), tempfile.mkdtemp() + "/lin.onnx")  # doctest: +SKIP
        >>> path.suffix, path.stat().st_size > 0  # doctest: +SKIP
        ('.onnx', True)
    """
    require_modules(["onnx", "onnxscript"], "ONNX export", DEPLOY_PIP)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    x = example_inputs.detach()
    if len(x) < 2:  # a batch of one would be traced as a fixed size
        x = x.repeat(2, *([1] * (x.dim() - 1)))
    was_training = model.training
    model.eval()
    big = sum(t.numel() * t.element_size() for t in model.state_dict().values() if isinstance(t, torch.Tensor)) > TWO_GB
    kwargs: dict[str, Any] = {"dynamic_shapes": ({0: torch.export.Dim("batch")},)} if dynamo else {
        "dynamic_axes": {"input": {0: "batch"}, "logits": {0: "batch"}}}
    try:
        with _quiet():
            torch.onnx.export(model, (x,), str(path), dynamo=dynamo, input_names=["input"], output_names=["logits"],
                              external_data=big, verbose=False, **kwargs)
    except Exception as e:
        raise RuntimeError(f"ONNX export of {type(model).__name__} failed: {root_cause(e)}") from e
    finally:
        model.train(was_training)
    return path


def onnxruntime_session(path: str | os.PathLike, threads: int | None = None) -> OnnxRuntimeModel:
    """Load an ONNX file into ONNX Runtime (CPU) and return a callable ``tensor batch -> tensor logits``.

    ``threads`` sets intra-op threads; ``None`` uses ``torch.get_num_threads()`` so ONNX Runtime and
    PyTorch timings use the same cores. Pass the result to ``workbench.measure.benchmark(...,
    mode="onnxruntime")`` to time it.

    Example (run by the module example):
        >>> run = onnxruntime_session("model.onnx", threads=1)  # doctest: +SKIP
        >>> run(torch.zeros(1, 4)).dtype  # doctest: +SKIP
        torch.float32
    """
    require_modules(["onnxruntime"], "ONNX Runtime", DEPLOY_PIP)
    import onnxruntime as ort

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No ONNX file at {path}: create one with workbench.deploy.export_onnx(model, x, path)")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.log_severity_level = 3  # errors only
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return OnnxRuntimeModel(session, path)


@torch.no_grad()
def parity(model: Callable[[torch.Tensor], torch.Tensor], session: Callable[[torch.Tensor], torch.Tensor],
           x: torch.Tensor) -> dict[str, float]:
    """How closely ``session`` (e.g. ONNX Runtime) reproduces ``model`` on batch ``x``.

    Returns ``max_abs_error`` (largest absolute logit difference) and ``argmax_agreement`` (fraction
    of rows predicting the same class).

    Example:
        >>> import torch
        >>> net = torch.nn.Linear(4, 2)
        >>> parity(net, net, torch.randn(8, 4))
        {'max_abs_error': 0.0, 'argmax_agreement': 1.0}
    """
    was_training = getattr(model, "training", False)
    if isinstance(model, nn.Module):
        model.eval()
    try:
        ref = model(x).float().cpu()
    finally:
        if isinstance(model, nn.Module):
            model.train(was_training)
    out = session(x).float().cpu()
    if out.shape != ref.shape:
        raise ValueError(f"parity: output shapes differ ({tuple(out.shape)} vs the model's {tuple(ref.shape)})")
    return {"max_abs_error": float((out - ref).abs().max()), "argmax_agreement": float((out.argmax(1) == ref.argmax(1)).float().mean())}


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the exporter's progress chatter and its notes about optional torchvision ops."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with open(os.devnull, "w") as devnull, warnings.catch_warnings(), contextlib.redirect_stdout(devnull):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)
