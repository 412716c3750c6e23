"""Deployment: export to ONNX, run in ONNX Runtime, check the exported model agrees with PyTorch.

Optional dependencies (onnx, onnxscript, onnxruntime) are imported only when a function here is called.
"""
from .onnx import OnnxRuntimeModel, export_onnx, onnxruntime_session, parity

__all__ = ["OnnxRuntimeModel", "export_onnx", "onnxruntime_session", "parity"]
