"""Workbench: make deep-learning models faster, smaller and cheaper, and see what each technique does.

Flow: ``RunConfig`` -> ``run(config)`` -> ``Result`` -> ``ResultStore`` -> DataFrame -> charts.
Notebooks import only from here.
"""
from .config import (
    AugmentConfig,
    CompressStep,
    ConfigError,
    DataConfig,
    DistillConfig,
    HardwareConfig,
    MeasureConfig,
    ModelConfig,
    RunConfig,
    TrainConfig,
)
from .data import list_datasets, load_dataset
from .ledger import ledger
from .measure import benchmark, count_flops, count_parameters, measure, model_size_bytes, resolve_device
from .models import create_model, list_models
from .pipeline import distill, distill_summary, run, run_many, sweep
from .results import Result, ResultStore, compare, results_frame
from .train import evaluate, list_optimizers, list_schedules, train

__version__ = "0.1.0"


def __getattr__(name: str):
    # The panel needs ipywidgets; import it only when asked for, so scripts and CI need no widgets.
    if name == "Workbench":
        from .ui import Workbench

        return Workbench
    raise AttributeError(f"module 'workbench' has no attribute '{name}'")

__all__ = [
    "AugmentConfig", "CompressStep", "ConfigError", "DataConfig", "DistillConfig", "HardwareConfig",
    "MeasureConfig", "ModelConfig", "RunConfig", "TrainConfig", "list_datasets", "load_dataset", "benchmark",
    "count_flops", "count_parameters", "measure", "model_size_bytes", "resolve_device", "create_model",
    "list_models", "distill", "distill_summary", "run", "run_many", "sweep", "Result", "ResultStore", "compare",
    "results_frame", "ledger", "Workbench", "evaluate", "list_optimizers", "list_schedules", "train",
]
