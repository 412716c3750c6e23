"""Deployment: export a run as a bundle (ONNX and/or a ``torch.export`` program, with a model card),
check it agrees with PyTorch, compare runtimes, serve it over HTTP and load-test the endpoint.

Optional dependencies (onnx, onnxscript, onnxruntime, the server's starlette/uvicorn, httpx) are
imported only when a function here is called.
"""

from ..measure.onnx import OnnxRuntimeModel, OnnxRuntimeModule, export_onnx, onnxruntime_session, parity
from .bundle import CARD_FILE, FILES, Bundle, load_bundle
from .export import (
    FORMATS,
    TOLERANCES,
    ParityError,
    Tolerance,
    card_text,
    check_parity,
    export,
    model_card,
    precision_of,
)
from .runtimes import runtime_comparison, runtime_label
from .serve import load_test, make_app, serve, serving

__all__ = [
    "CARD_FILE",
    "FILES",
    "FORMATS",
    "TOLERANCES",
    "Bundle",
    "OnnxRuntimeModel",
    "OnnxRuntimeModule",
    "ParityError",
    "Tolerance",
    "card_text",
    "check_parity",
    "export",
    "export_onnx",
    "load_bundle",
    "load_test",
    "make_app",
    "model_card",
    "onnxruntime_session",
    "parity",
    "precision_of",
    "runtime_comparison",
    "runtime_label",
    "serve",
    "serving",
]
