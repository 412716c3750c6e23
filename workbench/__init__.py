"""Workbench: make deep-learning models faster, smaller and cheaper, and see what each technique does.

Flow: ``RunConfig`` -> ``run(config)`` -> ``Result`` -> ``ResultStore`` -> DataFrame -> charts.
Everything a notebook uses is exported here, so notebooks import only from ``workbench``.
"""
from . import plots
from ._errors import ConfigError
from .checkpoint import load_checkpoint, save_checkpoint
from .compress import (
    QAT,
    CastPrecision,
    CompressContext,
    CompressStep,
    DynamicInt8,
    FineTune,
    StaticInt8,
    StructuredPrune,
    UnstructuredPrune,
    WeightOnlyInt4,
    WeightOnlyInt8,
    load_quantized,
    parse_step,
    prune,
    quantize,
    save_quantized,
    sensitivity,
    sparsity_report,
)
from .config import RunConfig
from .data import AugmentConfig, BatchLoader, DataConfig, eval_loader, list_datasets, load_dataset, train_loader
from .ledger import ledger, reason_at, why_not_faster
from .measure import (MeasureConfig, benchmark, count_flops, count_parameters, device_name, measure, measure_modes,
                      model_size_bytes, resolve_device, time_calls)
from .models import ModelConfig, build_model, create_model, list_models
from .notebooks import write_metrics
from .pipeline import distill, distill_summary, evaluator, load_model, load_teacher, preflight, run, run_many, sweep
from .plots import (accuracy_vs_size, history_curves, latency_bars, latency_vs_batch, metric_bars,
                    plot_ledger_latency, plot_ledger_size_accuracy, plot_sensitivity, sweep_lines)
from .results import METRICS, Result, ResultStore, compare, results_frame
from .train import DistillConfig, HardwareConfig, TrainConfig, evaluate, list_optimizers, list_schedules, train

__version__ = "0.1.0"


def __getattr__(name: str):
    # The panel needs ipywidgets; import it only when asked for, so scripts and CI need no widgets.
    if name == "Workbench":
        from .ui import Workbench

        return Workbench
    raise AttributeError(f"module 'workbench' has no attribute '{name}'")


__all__ = [
    # configs
    "RunConfig", "DataConfig", "AugmentConfig", "ModelConfig", "TrainConfig", "HardwareConfig", "DistillConfig",
    "MeasureConfig", "CompressStep", "ConfigError",
    # compression steps and verbs
    "UnstructuredPrune", "StructuredPrune", "FineTune", "DynamicInt8", "StaticInt8", "QAT", "WeightOnlyInt8",
    "WeightOnlyInt4", "CastPrecision", "CompressContext", "parse_step", "prune", "quantize", "sensitivity",
    "sparsity_report", "save_quantized", "load_quantized",
    # the pipeline
    "run", "run_many", "sweep", "distill", "distill_summary", "preflight", "load_model", "load_teacher", "evaluator",
    # parts usable alone
    "list_datasets", "load_dataset", "train_loader", "eval_loader", "BatchLoader", "list_models", "create_model",
    "build_model", "list_optimizers", "list_schedules", "train", "evaluate", "benchmark", "measure", "measure_modes",
    "count_flops", "count_parameters", "model_size_bytes", "resolve_device", "device_name", "time_calls",
    "save_checkpoint", "load_checkpoint",
    # results and their views
    "Result", "ResultStore", "METRICS", "compare", "results_frame", "ledger", "why_not_faster", "reason_at", "plots",
    "accuracy_vs_size", "latency_bars", "latency_vs_batch", "history_curves", "sweep_lines", "metric_bars",
    "plot_ledger_size_accuracy", "plot_ledger_latency", "plot_sensitivity", "write_metrics", "Workbench",
]
