"""Workbench: make deep-learning models faster, smaller and cheaper, and see what each technique does.

Flow: ``RunConfig`` -> ``run(config)`` -> ``Result`` -> ``ResultStore`` -> DataFrame -> charts.
Everything a notebook uses is exported here, so notebooks import only from ``workbench``.

The names load on first use (PEP 562): ``import workbench`` itself imports neither torch nor pandas,
so ``workbench --help`` answers at once, and the panel's ipywidgets are needed only by the panel.
"""

from __future__ import annotations

import importlib
import sys
import types
import warnings
from typing import Any

__version__ = "0.1.0"

# The public API, in one list: each name by the module it lives in (relative to this package).
_EXPORTS: dict[str, tuple[str, ...]] = {
    "._errors": ("ConfigError",),
    ".report.checkpoint": ("load_checkpoint", "save_checkpoint"),
    ".compress": (
        "QAT",
        "CastPrecision",
        "CompressContext",
        "CompressStep",
        "DynamicInt8",
        "FineTune",
        "StaticInt8",
        "StructuredPrune",
        "UnstructuredPrune",
        "WeightOnlyInt4",
        "WeightOnlyInt8",
        "OrtStaticInt8",
        "OrtDynamicInt8",
        "load_quantized",
        "parse_step",
        "prune",
        "quantize",
        "save_quantized",
        "sensitivity",
        "sparsity_report",
    ),
    ".config": ("RunConfig",),
    ".data": (
        "AugmentConfig",
        "BatchLoader",
        "DataConfig",
        "eval_loader",
        "list_datasets",
        "list_tokenizers",
        "load_dataset",
        "load_token_data",
        "train_loader",
    ),
    ".deploy": ("Bundle", "export", "load_bundle", "load_test", "load_test_levels", "runtime_comparison", "serving"),
    ".report.ledger": ("ablation", "ledger", "reason_at", "why_not_faster"),
    ".report.roofline": ("roofline",),
    ".report.visibility": ("hidden_effects",),
    ".measure": (
        "MeasureConfig",
        "benchmark",
        "count_flops",
        "count_parameters",
        "device_name",
        "matmul_ceiling",
        "memory_bandwidth",
        "measure",
        "measure_modes",
        "model_size_bytes",
        "native_bf16",
        "attention_timing",
        "decode_curve",
        "generation_timing",
        "resolve_device",
        "speculative_curve",
        "time_calls",
        "kv_cache_sizes",
        "saved_activation_bytes",
        "training_memory",
    ),
    ".models": ("GPT", "ModelConfig", "build_model", "create_model", "list_models"),
    ".tasks": ("get_task", "list_tasks"),
    ".course.exercises": ("exercise_checker",),
    ".course.notebooks": ("notebook_timings", "write_metrics"),
    ".course.site": ("build_site",),
    ".pipeline": (
        "bits_curve",
        "distill",
        "distill_summary",
        "evaluator",
        "generate",
        "Samples",
        "inference_sweep",
        "load_model",
        "load_teacher",
        "preflight",
        "profile",
        "run",
        "run_many",
        "sweep",
    ),
    ".report.charts": (
        "attention_chart",
        "decode_chart",
        "kv_cache_chart",
        "training_memory_chart",
        "size_accuracy_chart",
        "runtime_chart",
        "serving_chart",
        "history_chart",
        "inference_sweep_chart",
        "latency_chart",
        "batch_latency_chart",
        "profile_chart",
        "roofline_chart",
        "lr_schedule_chart",
        "metric_chart",
        "ledger_latency_chart",
        "ledger_size_chart",
        "ledger_perplexity_chart",
        "low_bit_chart",
        "speculative_chart",
        "sensitivity_chart",
        "sweep_chart",
        "scaling_chart",
        "rank_chart",
        "pipeline_chart",
        "ablation_chart",
        "path_chart",
        "reliability_chart",
        "flips_chart",
        "token_loss_chart",
    ),
    ".report.what_changed": ("what_changed", "WhatChanged", "TokensChanged"),
    ".report": (
        "METRICS",
        "Result",
        "ResultStore",
        "compare",
        "epoch_costs",
        "latency_comparison",
        "readable",
        "results_frame",
        "same_architecture",
        "time_to_accuracy",
    ),
    ".presets": ("list_presets", "preset", "without_each_part"),
    ".train": (
        "DistillConfig",
        "EvalConfig",
        "HardwareConfig",
        "TrainConfig",
        "evaluate",
        "list_optimizers",
        "list_schedules",
        "lr_curve",
        "resolve_threads",
        "train",
        "TimeBudget",
    ),
    ".search": ("Choice", "Float", "Int", "Space", "compare_strategies", "default_space", "list_strategies", "search"),
    ".ui": ("Workbench",),
    ".distributed": (
        "LaunchError",
        "ParallelConfig",
        "Placement",
        "pipeline_demo",
        "rank_table",
        "scaling",
        "steady_images_per_s",
        "torchrun_command",
    ),
}
_HOME = {name: module for module, names in _EXPORTS.items() for name in names}
_MODULES = {"charts": ".report.charts"}  # public modules: ``wb.charts.latency_chart``
# Old names, still answered with a DeprecationWarning: the charts took one scheme, <what it shows>_chart.
_RENAMED = {
    "plots": "charts",
    "accuracy_vs_size": "size_accuracy_chart",
    "latency_bars": "latency_chart",
    "latency_vs_batch": "batch_latency_chart",
    "history_curves": "history_chart",
    "lr_schedules": "lr_schedule_chart",
    "sweep_lines": "sweep_chart",
    "metric_bars": "metric_chart",
    "plot_ledger_size_accuracy": "ledger_size_chart",
    "plot_ledger_latency": "ledger_latency_chart",
    "plot_sensitivity": "sensitivity_chart",
}
# Functions named like their subpackage: importing the subpackage binds its name here, and the function
# must still win, as it did when this file imported everything eagerly.
_SHADOWED = frozenset({"measure", "train", "ledger", "search"})
__all__ = [*_HOME, *_MODULES]


def __getattr__(name: str) -> Any:
    if name in _RENAMED:
        warnings.warn(f"workbench.{name} is now workbench.{_RENAMED[name]}", DeprecationWarning, stacklevel=2)
        return __getattr__(_RENAMED[name])
    if name in _MODULES:
        return importlib.import_module(_MODULES[name], __name__)
    if name not in _HOME:
        raise AttributeError(f"module 'workbench' has no attribute '{name}'")
    value = getattr(importlib.import_module(_HOME[name], __name__), name)
    if name not in _SHADOWED:
        globals()[name] = value  # later look-ups are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


class _Package(types.ModuleType):
    def __getattribute__(self, name: str) -> Any:
        if name in _SHADOWED:
            return __getattr__(name)
        return super().__getattribute__(name)


sys.modules[__name__].__class__ = _Package
