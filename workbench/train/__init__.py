"""Training: the loop, optimizers and schedules, mixed precision, callbacks, distillation loss.

This part owns the training sections of a run (``TrainConfig``, ``HardwareConfig``, ``DistillConfig``,
``ParallelConfig``), the scoring of the trained model (``EvalConfig``: test-time augmentation) and the
data-parallel ranks of a ``torchrun`` launch (``parallel``, ``launch``).
"""

from .callbacks import (
    Callback,
    Checkpoint,
    CheckpointError,
    EarlyStopping,
    EpochLines,
    ProgressBar,
    TimeBudget,
    TrainState,
)
from .config import COMPILE_MODES, PRECISIONS, DistillConfig, EvalConfig, HardwareConfig, TrainConfig
from .distill import distillation_loss
from .launch import LaunchError, Placement, launch, record_failure, torchrun_command
from .loop import TrainOutcome, autocast_for, check_precision, evaluate, train
from .optim import (
    FUSED_OPTIMIZERS,
    OPTIMIZER_IMPLS,
    list_optimizers,
    list_schedules,
    lr_curve,
    make_optimizer,
    make_scheduler,
    optimizer_state_bytes,
    schedule_factor,
)
from .parallel import SINGLE, Group, ParallelConfig, backend_for, in_torchrun, parameter_bytes, rank_device, start_group
from .threads import available_cores, load_average, resolve_threads, thread_count
from .tta import TTA_VIEWS, tta_logits, tta_views

__all__ = [
    "COMPILE_MODES",
    "FUSED_OPTIMIZERS",
    "OPTIMIZER_IMPLS",
    "PRECISIONS",
    "SINGLE",
    "TTA_VIEWS",
    "Callback",
    "Checkpoint",
    "CheckpointError",
    "DistillConfig",
    "EarlyStopping",
    "EpochLines",
    "EvalConfig",
    "Group",
    "HardwareConfig",
    "LaunchError",
    "ParallelConfig",
    "Placement",
    "ProgressBar",
    "TimeBudget",
    "TrainConfig",
    "TrainOutcome",
    "TrainState",
    "autocast_for",
    "available_cores",
    "backend_for",
    "check_precision",
    "distillation_loss",
    "evaluate",
    "in_torchrun",
    "launch",
    "list_optimizers",
    "list_schedules",
    "load_average",
    "lr_curve",
    "make_optimizer",
    "make_scheduler",
    "optimizer_state_bytes",
    "parameter_bytes",
    "rank_device",
    "record_failure",
    "resolve_threads",
    "schedule_factor",
    "start_group",
    "thread_count",
    "torchrun_command",
    "train",
    "tta_logits",
    "tta_views",
]
