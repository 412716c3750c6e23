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
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._errors import Unavailable, require_modules, root_cause
from .._registry import unknown_name_error

DEPLOY_PIP = "pip install onnx onnxscript onnxruntime"
TWO_GB = 2**31  # protobuf's limit: bigger models keep their weights in a side file


class OnnxRuntimeModel:
    """An ONNX Runtime session wrapped as ``torch tensor batch -> torch tensor logits`` (logits on the CPU)."""

    def __init__(self, session: Any, path: Path | None):
        self.session, self.path = session, path
        self.input_name = session.get_inputs()[0].name

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        (out,) = self.session.run(None, {self.input_name: x.detach().to("cpu", torch.float32).numpy()})
        return torch.from_numpy(out)

    @property
    def provider(self) -> str:
        """The execution provider that runs the graph (the first of the session's list)."""
        return self.session.get_providers()[0]

    def __repr__(self) -> str:
        name = self.path.name if self.path else "in-memory graph"
        threads = self.session.get_session_options().intra_op_num_threads
        return f"OnnxRuntimeModel({name}, {self.provider}, threads={threads})"


class OnnxRuntimeModule(nn.Module):
    """An ONNX graph held as a module, for models only ONNX Runtime runs (its own int8 quantization).

    The graph's bytes are a uint8 buffer, so the state dict, ``model_size_bytes`` and checkpoints carry
    the model exactly as shipped; ONNX Runtime runs it on the CPU, with the thread count torch has
    when it is first called. ``runtime`` tells the timing code it runs in ONNX Runtime, not eager.

    Example:
        >>> import tempfile
        >>> path = export_onnx(nn.Linear(4, 2), torch.randn(2, 4), tempfile.mkdtemp() + "/lin.onnx")  # doctest: +SKIP
        >>> OnnxRuntimeModule(path.read_bytes())(torch.randn(3, 4)).shape  # doctest: +SKIP
        torch.Size([3, 2])
    """

    runtime = "onnxruntime"

    def __init__(self, graph: bytes | torch.Tensor):
        super().__init__()
        data = graph if isinstance(graph, torch.Tensor) else torch.frombuffer(bytearray(graph), dtype=torch.uint8)
        self.register_buffer("onnx_graph", data.clone())
        self._session: OnnxRuntimeModel | None = None

    def graph_bytes(self) -> bytes:
        return self.onnx_graph.numpy().tobytes()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._session is None:
            self._session = onnxruntime_session(self.graph_bytes())
        return self._session(x).to(x.device)

    def weights(self) -> list[Any]:
        """The graph's weight tensors as numpy arrays (quantization scales, zero points and int64 shape constants
        left out)."""
        import onnx
        from onnx import numpy_helper

        graph = onnx.load_from_string(self.graph_bytes()).graph
        return [
            numpy_helper.to_array(t)
            for t in graph.initializer
            if not t.name.endswith(("_scale", "_zero_point"))
            and len(t.dims) > 0
            and t.data_type != onnx.TensorProto.INT64
        ]

    def __getstate__(self) -> dict[str, Any]:  # a session does not copy: the copy opens its own
        return {**self.__dict__, "_session": None}


def export_onnx(
    model: nn.Module,
    example_inputs: torch.Tensor,
    path: str | os.PathLike,
    *,
    dynamo: bool = True,
    opset: int | None = None,
) -> Path:
    """Export ``model`` (eval mode) to one ONNX file whose batch dimension is dynamic; returns the path.

    ``dynamo=True`` (the default) traces with ``torch.export``; ``dynamo=False`` uses the older
    TorchScript exporter; ``opset`` the ONNX opset (None: the exporter's default). Raises one line
    naming the cause when the model cannot be exported.

    Example (each export takes a few seconds, so the module example is the one doctest runs):
        >>> import tempfile, torch
        >>> path = export_onnx(torch.nn.Linear(4, 2), torch.randn(3, 4),
        ...                    tempfile.mkdtemp() + "/lin.onnx")  # doctest: +SKIP
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
    kwargs: dict[str, Any] = (
        {"dynamic_shapes": ({0: torch.export.Dim("batch")},)}
        if dynamo
        else {"dynamic_axes": {"input": {0: "batch"}, "logits": {0: "batch"}}}
    )
    try:
        with quiet_export():
            torch.onnx.export(
                model,
                (x,),
                str(path),
                dynamo=dynamo,
                input_names=["input"],
                output_names=["logits"],
                external_data=big,
                verbose=False,
                opset_version=opset,
                **kwargs,
            )
    except Exception as e:
        raise RuntimeError(f"ONNX export of {type(model).__name__} failed: {root_cause(e)}") from e
    finally:
        model.train(was_training)
    return path


PROVIDERS = {  # where ONNX Runtime runs -> its execution providers, best first; pip names what installs them
    "cpu": (["CPUExecutionProvider"], "pip install onnxruntime"),
    "cuda": (["CUDAExecutionProvider"], "pip install onnxruntime-gpu (and a CUDA GPU)"),
    "tensorrt": (
        ["TensorrtExecutionProvider", "CUDAExecutionProvider"],
        "pip install onnxruntime-gpu tensorrt (and a CUDA GPU)",
    ),
}


def onnxruntime_session(
    model: str | os.PathLike | bytes, threads: int | None = None, *, provider: str = "cpu", fuse: bool = True
) -> OnnxRuntimeModel:
    """Load an ONNX file (or its bytes) into ONNX Runtime; returns a callable ``tensor batch -> tensor logits``.

    ``threads`` sets intra-op threads; ``None`` uses ``torch.get_num_threads()`` so ONNX Runtime and
    PyTorch timings use the same cores. ``provider`` is ``cpu``, ``cuda`` (the CUDA execution provider,
    from onnxruntime-gpu) or ``tensorrt`` (TensorRT's provider, CUDA behind it); one that this install
    lacks raises ``Unavailable`` with the pip line. Pass the result to ``workbench.measure.benchmark(...,
    mode="onnxruntime")`` to time it. ``fuse=False`` runs the graph as written, without ONNX Runtime's
    graph optimizations: an int8 QDQ graph then stays float ops between QuantizeLinear/DequantizeLinear
    pairs instead of fused int8 kernels, which tells a kernel's rounding apart from the file's.

    Example (run by the module example):
        >>> run = onnxruntime_session("model.onnx", threads=1)  # doctest: +SKIP
        >>> run(torch.zeros(1, 4)).dtype  # doctest: +SKIP
        torch.float32
        >>> onnxruntime_session(b"", provider="tpu")
        Traceback (most recent call last):
        ...
        ValueError: Unknown ONNX Runtime provider 'tpu'. Did you mean 'cpu'? Choose one of: cpu, cuda, tensorrt.
    """
    if provider not in PROVIDERS:
        raise unknown_name_error("ONNX Runtime provider", provider, PROVIDERS)
    require_modules(["onnxruntime"], "ONNX Runtime", DEPLOY_PIP)
    import onnxruntime as ort

    providers, pip = PROVIDERS[provider]
    if providers[0] not in ort.get_available_providers():
        raise Unavailable(f"ONNX Runtime here has no {providers[0]}: {pip}")
    path = None if isinstance(model, bytes) else Path(model)
    if path is not None and not path.exists():
        raise FileNotFoundError(f"No ONNX file at {path}: create one with workbench.deploy.export_onnx(model, x, path)")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.log_severity_level = 3  # errors only
    if not fuse:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model if path is None else str(path), options, providers=providers)
    return OnnxRuntimeModel(session, path)


def export_program(model: nn.Module, example_inputs: torch.Tensor) -> torch.export.ExportedProgram:
    """``torch.export`` of ``model`` with a dynamic batch dimension (what a bundle's ``model.pt2`` holds), quietly.

    Example:
        >>> export_program(nn.Linear(4, 2), torch.randn(2, 4)).module()(torch.randn(5, 4)).shape
        torch.Size([5, 2])
    """
    with quiet_export():
        return torch.export.export(model, (example_inputs,), dynamic_shapes=({0: torch.export.Dim("batch")},))


@torch.no_grad()
def parity(
    model: Callable[[torch.Tensor], torch.Tensor], session: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor
) -> dict[str, float]:
    """How closely ``session`` (e.g. ONNX Runtime) reproduces ``model`` on batch ``x``.

    Returns ``max_abs_error`` (largest absolute logit difference), ``max_rel_error`` (that error over
    the largest reference logit's magnitude: element-wise ratios explode near zero logits) and
    ``argmax_agreement`` (fraction of rows predicting the same class).

    Example:
        >>> import torch
        >>> net = torch.nn.Linear(4, 2)
        >>> parity(net, net, torch.randn(8, 4))
        {'max_abs_error': 0.0, 'max_rel_error': 0.0, 'argmax_agreement': 1.0}
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
    error = float((out - ref).abs().max())
    return {
        "max_abs_error": error,
        "max_rel_error": error / max(float(ref.abs().max()), 1e-12),
        "argmax_agreement": float((out.argmax(1) == ref.argmax(1)).float().mean()),
    }


@contextlib.contextmanager
def quiet_export() -> Iterator[None]:
    """Silence the exporters' chatter: ONNX progress lines, notes about optional torchvision ops, and
    the tracebacks torch.export logs (at ERROR) for meta kernels it retries and then handles."""
    # torch.export's handled-and-retried failures are logged at ERROR: only CRITICAL gets through here.
    levels = {
        "torch.onnx": logging.ERROR,
        "torch.export": logging.CRITICAL,
        "torch._export": logging.CRITICAL,
        "torch._subclasses.fake_tensor": logging.CRITICAL,
    }
    loggers = {name: logging.getLogger(name) for name in levels}
    before = {name: logger.level for name, logger in loggers.items()}
    for name, logger in loggers.items():
        logger.setLevel(levels[name])
    try:
        with open(os.devnull, "w") as devnull, warnings.catch_warnings(), contextlib.redirect_stdout(devnull):
            warnings.simplefilter("ignore")
            yield
    finally:
        for name, logger in loggers.items():
            logger.setLevel(before[name])
