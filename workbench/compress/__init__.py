"""Compression that really shrinks and speeds up: pruning and quantization, with fine-tuning between.

One verb per capability and one small config per option (torchao's style):
``prune(model, StructuredPrune(amount=0.5), example_inputs=x)``, ``quantize(model, StaticInt8(), ...)``.
The same configs listed in ``RunConfig.compress`` are applied in order by ``workbench.run``; this part
owns them (``CompressStep``, which each step describes itself with, and the one step table that
``implements`` fills). A new step is one module with its config and function, imported below.
Optional libraries (torch-pruning,
torchao, ONNX Runtime) are imported only when a step needs them. Distillation trains rather than
compresses: its loss lives in ``workbench.train``.
"""

from .core import (
    FAMILIES,
    NEEDS,
    PRUNING,
    QUANTIZATION,
    CompressContext,
    CompressStep,
    FineTune,
    apply_step,
    build_step,
    finetune,
    implements,
    parse_step,
    read_value,
    step_type,
    step_types,
    steps_for,
)
from .gpt_pruning import PruneGPT, check_prune_gpt, gpt_importance, prune_gpt, slice_gpt
from .kv_cache import KVCacheInt8
from .lowbit import LowBitWeights, awq_scale, bits_per_weight, group_quantize, low_bit_curve, simulate_low_bit
from .onnx_int8 import OrtDynamicInt8, OrtStaticInt8
from .pruning import StructuredPrune, UnstructuredPrune, prune, sensitivity, sparsity_report
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
    quantization_steps,
    quantize,
    save_quantized,
    saved_format,
    saved_metadata,
    saved_size_bytes,
)
from .recipes import RECIPES, parse_steps, recommended_pruning

__all__ = [
    "FAMILIES",
    "NEEDS",
    "PRUNING",
    "QAT",
    "QUANTIZATION",
    "RECIPES",
    "CastPrecision",
    "CompressContext",
    "CompressStep",
    "DynamicInt8",
    "FineTune",
    "KVCacheInt8",
    "LowBitWeights",
    "OrtDynamicInt8",
    "OrtStaticInt8",
    "PruneGPT",
    "StaticInt8",
    "StructuredPrune",
    "UnstructuredPrune",
    "WeightOnlyInt4",
    "WeightOnlyInt8",
    "apply_step",
    "awq_scale",
    "bits_per_weight",
    "build_step",
    "check_prune_gpt",
    "finetune",
    "gpt_importance",
    "group_quantize",
    "implements",
    "is_fake_quant",
    "is_pt2e_program",
    "load_quantized",
    "low_bit_curve",
    "parse_step",
    "parse_steps",
    "prune",
    "prune_gpt",
    "quantization_steps",
    "quantize",
    "read_value",
    "recommended_pruning",
    "save_quantized",
    "saved_format",
    "saved_metadata",
    "saved_size_bytes",
    "sensitivity",
    "simulate_low_bit",
    "slice_gpt",
    "sparsity_report",
    "step_type",
    "step_types",
    "steps_for",
]
