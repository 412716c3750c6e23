"""Deployment: export a run as a bundle (ONNX and/or a ``torch.export`` program, with a model card),
check it agrees with PyTorch, compare runtimes, quantize with ONNX Runtime, serve it over HTTP.

Optional dependencies (onnx, onnxscript, onnxruntime, the server's starlette/uvicorn, httpx) are
imported only when a function here is called.
"""
from ..measure.onnx import OnnxRuntimeModel, export_onnx, onnxruntime_session, parity
from .bundle import CARD_FILE, FILES, Bundle, load_bundle

__all__ = ["Bundle", "CARD_FILE", "FILES", "OnnxRuntimeModel", "export_onnx", "load_bundle", "onnxruntime_session", "parity"]
