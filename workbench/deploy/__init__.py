"""Deployment: export a run as a bundle (ONNX and/or a ``torch.export`` program, with a model card; a
language model's weights and tokenizer), check it agrees with PyTorch, compare runtimes, serve it over
HTTP (a language model with continuous batching and streamed tokens; a token beyond loopback) and
load-test the endpoint.

Optional dependencies (onnx, onnxscript, onnxruntime, the server's starlette/uvicorn, httpx) are
imported only when a function here is called.
"""

from ..measure.onnx import OnnxRuntimeModel, OnnxRuntimeModule, export_onnx, onnxruntime_session, parity
from .access import TOKEN_ENV, check_token
from .batching import BATCHING, DecodeEngine, Sampling
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
from .lm_bundle import export_lm, load_language_model
from .lm_load import load_test_generate, server_sent_events, stream_generate
from .lm_serve import make_lm_app
from .runtimes import runtime_comparison, runtime_label
from .serve import load_test, load_test_levels, make_app, serve, serving

__all__ = [
    "BATCHING",
    "CARD_FILE",
    "FILES",
    "FORMATS",
    "TOKEN_ENV",
    "TOLERANCES",
    "Bundle",
    "DecodeEngine",
    "OnnxRuntimeModel",
    "OnnxRuntimeModule",
    "ParityError",
    "Sampling",
    "Tolerance",
    "card_text",
    "check_parity",
    "check_token",
    "export",
    "export_lm",
    "export_onnx",
    "load_bundle",
    "load_language_model",
    "load_test",
    "load_test_generate",
    "load_test_levels",
    "make_app",
    "make_lm_app",
    "model_card",
    "onnxruntime_session",
    "parity",
    "precision_of",
    "runtime_comparison",
    "runtime_label",
    "serve",
    "server_sent_events",
    "serving",
    "stream_generate",
]
