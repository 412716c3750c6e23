"""Compression that really shrinks and speeds up: pruning, quantization, distillation.

One verb per capability and one small config per option (torchao's style):
``prune(model, StructuredPrune(amount=0.5), example_inputs=x)``, ``quantize(model, StaticInt8(), ...)``.
The same configs listed in ``RunConfig.compress`` are applied in order by ``workbench.run``.
Optional libraries (torch-pruning, torchao, ONNX Runtime) are imported only when a step needs them.
"""
from .core import CompressContext, apply_step, implements
from .distill import distillation_loss, load_teacher
from .pruning import FineTune, StructuredPrune, UnstructuredPrune, plot_sensitivity, prune, sensitivity, sparsity_report
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
    saved_size_bytes,
)

__all__ = [
    "CompressContext", "apply_step", "implements", "distillation_loss", "load_teacher", "FineTune",
    "StructuredPrune", "UnstructuredPrune", "plot_sensitivity", "prune", "sensitivity", "sparsity_report", "QAT",
    "CastPrecision", "DynamicInt8", "StaticInt8", "WeightOnlyInt4", "WeightOnlyInt8", "is_fake_quant",
    "is_pt2e_program", "load_quantized", "quantize", "save_quantized", "saved_size_bytes",
]
