"""Training: the loop, optimizers and schedules, mixed precision, callbacks, distillation loss."""
from .callbacks import Callback, Checkpoint, EarlyStopping, ProgressBar, TrainState
from .loop import TrainOutcome, autocast_for, check_precision, evaluate, train
from .optim import list_optimizers, list_schedules, make_optimizer, make_scheduler, schedule_factor

__all__ = [
    "Callback", "Checkpoint", "EarlyStopping", "ProgressBar", "TrainState", "TrainOutcome", "autocast_for",
    "check_precision", "evaluate", "train", "list_optimizers", "list_schedules", "make_optimizer",
    "make_scheduler", "schedule_factor",
]
