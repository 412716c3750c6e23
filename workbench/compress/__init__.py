"""Compression that really shrinks and speeds up: pruning and quantization, with fine-tuning between.

One verb per capability and one small config per option (torchao's style):
``prune(model, StructuredPrune(amount=0.5), example_inputs=x)``, ``quantize(model, StaticInt8(), ...)``.
The same configs listed in ``RunConfig.compress`` are applied in order by ``workbench.run``; this part
owns them (``CompressStep`` and its kind and handler tables). Optional libraries (torch-pruning,
torchao, ONNX Runtime) are imported only when a step needs them. Distillation trains rather than
compresses: its loss lives in ``workbench.train``.
"""
from .core import (CompressContext, CompressStep, FineTune, apply_step, build_step, finetune, implements, parse_step,
                   read_value, step_type, step_types)
from .pruning import StructuredPrune, UnstructuredPrune, prune, sensitivity, sparsity_report
from .recipes import RECIPES, parse_steps, recommended_pruning
from .quantization import (
    QAT,
    CastPrecision,
    DynamicInt8,
    StaticInt8,
    WeightOnlyInt4,
    WeightOnlyInt8,
    is_fake_quant,
    is_pt2e_program,
    load_quantized,
    quantize,
    save_quantized,
    saved_format,
    saved_metadata,
    saved_size_bytes,
)
from .onnx_int8 import OrtDynamicInt8, OrtStaticInt8

__all__ = [
    "CompressContext", "CompressStep", "FineTune", "apply_step", "build_step", "finetune", "implements", "parse_step",
    "read_value", "step_type", "step_types", "StructuredPrune", "UnstructuredPrune", "prune", "sensitivity", "sparsity_report", "QAT",
    "CastPrecision", "DynamicInt8", "StaticInt8", "WeightOnlyInt4", "WeightOnlyInt8", "is_fake_quant",
    "is_pt2e_program", "load_quantized", "quantize", "save_quantized", "saved_format", "saved_metadata",
    "saved_size_bytes", "OrtDynamicInt8", "OrtStaticInt8", "RECIPES", "parse_steps", "recommended_pruning",
]
