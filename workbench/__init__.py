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
from typing import Any

__version__ = "0.1.0"

# Where each public name lives, by module (relative to this package).
_EXPORTS: dict[str, tuple[str, ...]] = {
    "._errors": ("ConfigError",),
    ".checkpoint": ("load_checkpoint", "save_checkpoint"),
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
        "load_dataset",
        "train_loader",
    ),
    ".deploy": ("Bundle", "export", "load_bundle", "load_test", "runtime_comparison", "serving"),
    ".ledger": ("ablation", "ledger", "reason_at", "why_not_faster"),
    ".measure": (
        "MeasureConfig",
        "benchmark",
        "count_flops",
        "count_parameters",
        "device_name",
        "matmul_ceiling",
        "measure",
        "measure_modes",
        "model_size_bytes",
        "native_bf16",
        "resolve_device",
        "time_calls",
    ),
    ".models": ("ModelConfig", "build_model", "create_model", "list_models"),
    ".exercises": ("exercise_checker",),
    ".notebooks": ("notebook_timings", "write_metrics"),
    ".site": ("build_site",),
    ".pipeline": (
        "distill",
        "distill_summary",
        "evaluator",
        "inference_sweep",
        "load_model",
        "load_teacher",
        "preflight",
        "profile",
        "run",
        "run_many",
        "sweep",
    ),
    ".plots": (
        "accuracy_vs_size",
        "runtime_chart",
        "serving_chart",
        "history_curves",
        "inference_sweep_chart",
        "latency_bars",
        "latency_vs_batch",
        "profile_chart",
        "lr_schedules",
        "metric_bars",
        "plot_ledger_latency",
        "plot_ledger_size_accuracy",
        "plot_sensitivity",
        "sweep_lines",
        "scaling_chart",
        "rank_chart",
        "pipeline_chart",
        "ablation_chart",
        "path_chart",
    ),
    ".results": (
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
# Functions named like their subpackage: importing the subpackage binds its name here, and the function
# must still win, as it did when this file imported everything eagerly.
_SHADOWED = frozenset({"measure", "train", "ledger", "search"})


def __getattr__(name: str) -> Any:
    if name == "plots":
        return importlib.import_module(".plots", __name__)
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


__all__ = [
    # configs
    "RunConfig",
    "DataConfig",
    "AugmentConfig",
    "ModelConfig",
    "TrainConfig",
    "HardwareConfig",
    "DistillConfig",
    "MeasureConfig",
    "EvalConfig",
    "CompressStep",
    "ConfigError",
    "preset",
    "list_presets",
    "without_each_part",
    # compression steps and verbs
    "UnstructuredPrune",
    "StructuredPrune",
    "FineTune",
    "DynamicInt8",
    "StaticInt8",
    "QAT",
    "WeightOnlyInt8",
    "WeightOnlyInt4",
    "CastPrecision",
    "OrtStaticInt8",
    "OrtDynamicInt8",
    "CompressContext",
    "parse_step",
    "prune",
    "quantize",
    "sensitivity",
    "sparsity_report",
    "save_quantized",
    "load_quantized",
    # the pipeline
    "run",
    "run_many",
    "sweep",
    "inference_sweep",
    "profile",
    "distill",
    "distill_summary",
    "preflight",
    "load_model",
    "load_teacher",
    "evaluator",
    # parts usable alone
    "list_datasets",
    "load_dataset",
    "train_loader",
    "eval_loader",
    "BatchLoader",
    "list_models",
    "create_model",
    "build_model",
    "list_optimizers",
    "list_schedules",
    "lr_curve",
    "train",
    "evaluate",
    "benchmark",
    "measure",
    "measure_modes",
    "count_flops",
    "count_parameters",
    "model_size_bytes",
    "resolve_device",
    "device_name",
    "time_calls",
    "native_bf16",
    "matmul_ceiling",
    "resolve_threads",
    "save_checkpoint",
    "load_checkpoint",
    # results and their views
    "Result",
    "ResultStore",
    "METRICS",
    "compare",
    "latency_comparison",
    "same_architecture",
    "readable",
    "time_to_accuracy",
    "epoch_costs",
    "results_frame",
    "ledger",
    "ablation",
    "why_not_faster",
    "reason_at",
    "plots",
    "accuracy_vs_size",
    "latency_bars",
    "latency_vs_batch",
    "inference_sweep_chart",
    "profile_chart",
    "lr_schedules",
    "history_curves",
    "sweep_lines",
    "metric_bars",
    "plot_ledger_size_accuracy",
    "plot_ledger_latency",
    "plot_sensitivity",
    "write_metrics",
    "exercise_checker",
    "Workbench",
    # the notebook series: run-time records and a static site of the executed notebooks
    "notebook_timings",
    "build_site",
    # deployment
    "export",
    "load_bundle",
    "Bundle",
    "runtime_comparison",
    "serving",
    "load_test",
    "runtime_chart",
    "serving_chart",
    # model search
    "search",
    "compare_strategies",
    "Space",
    "Choice",
    "Int",
    "Float",
    "default_space",
    "list_strategies",
    # scale-out
    "ParallelConfig",
    "Placement",
    "LaunchError",
    "scaling",
    "rank_table",
    "pipeline_demo",
    "torchrun_command",
    "steady_images_per_s",
    "scaling_chart",
    "rank_chart",
    "pipeline_chart",
    "ablation_chart",
    "path_chart",
]
