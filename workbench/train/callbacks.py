"""Callbacks plug progress bars, live charts, early stopping and checkpoints into the loop.

Every hook is a no-op by default (Lightning's pattern), so the loop never branches on them.
A hook may set ``state.stop = "reason"`` to end training after the current epoch.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from .._errors import one_line
from .._files import atomic_torch_save
from .parallel import SINGLE, Group


@dataclass
class TrainState:
    """What callbacks may read (and ``stop`` is what they may write)."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: Any  # torch.amp.GradScaler (a pass-through unless fp16)
    epochs: int
    steps_per_epoch: int
    epoch: int = 0
    step: int = 0
    last_loss: float = float("nan")
    history: list[dict[str, Any]] = field(default_factory=list)
    stop: str | None = None  # set to a reason to stop after this epoch
    halt: bool = False  # set to stop at once, mid-epoch (a profiler that has its steps)
    parallel: Group = SINGLE  # this process's place in a data-parallel run


class Callback:
    def on_train_start(self, state: TrainState) -> None: ...
    def on_batch_end(self, state: TrainState) -> None: ...
    def on_epoch_end(self, state: TrainState, record: dict[str, Any]) -> None: ...
    def on_train_end(self, state: TrainState) -> None: ...


class CallbackList(Callback):
    def __init__(self, callbacks: Sequence[Callback]):
        self.callbacks = list(callbacks)

    def on_train_start(self, state):
        for c in self.callbacks:
            c.on_train_start(state)

    def on_batch_end(self, state):
        for c in self.callbacks:
            c.on_batch_end(state)

    def on_epoch_end(self, state, record):
        for c in self.callbacks:
            c.on_epoch_end(state, record)

    def on_train_end(self, state):
        for c in self.callbacks:
            c.on_train_end(state)


class ProgressBar(Callback):
    """A ``tqdm.auto`` bar over all steps with the running loss and last test accuracy."""

    def __init__(self, desc: str = "train", leave: bool = True):
        self.desc, self.leave, self.bar = desc, leave, None

    def on_train_start(self, state):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=state.epochs * state.steps_per_epoch, desc=self.desc, leave=self.leave, unit="step")

    def on_batch_end(self, state):
        self.bar.update(1)
        if state.step % 10 == 0:
            self.bar.set_postfix(loss=f"{state.last_loss:.3f}", refresh=False)

    def on_epoch_end(self, state, record):
        acc = record.get("test_accuracy")
        self.bar.set_postfix(loss=f"{record['train_loss']:.3f}", acc="-" if acc is None else f"{acc:.3f}")

    def on_train_end(self, state):
        if self.bar is not None:
            self.bar.close()


class EpochLines(Callback):
    """A printed line per epoch: the ranks of a launch write into a pipe, where a redrawn bar is noise."""

    def __init__(self, desc: str = "train"):
        self.desc = desc

    def on_epoch_end(self, state, record):
        acc = record.get("test_accuracy")
        print(
            f"{self.desc}: epoch {record['epoch']}/{state.epochs}  "
            f"train loss {record['train_loss']:.3f}  test accuracy "
            f"{'-' if acc is None else f'{100 * acc:.1f}%'}  {record['images_per_s']:,.0f} images/s",
            flush=True,
        )


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs."""

    def __init__(self, monitor: str = "test_accuracy", patience: int = 3, min_delta: float = 0.0, mode: str = "max"):
        if mode not in ("max", "min"):
            raise ValueError(f"EarlyStopping mode must be 'max' or 'min' (got '{mode}')")
        self.monitor, self.patience, self.min_delta, self.sign = (
            monitor,
            patience,
            min_delta,
            1 if mode == "max" else -1,
        )
        self.best, self.bad_epochs = -math.inf, 0

    def on_epoch_end(self, state, record):
        value = record.get(self.monitor)
        if value is None:
            return
        if self.sign * value > self.best + self.min_delta:
            self.best, self.bad_epochs = self.sign * value, 0
        else:
            self.bad_epochs += 1
            if self.bad_epochs >= self.patience:
                state.stop = f"early-stopped: {self.monitor} did not improve for {self.patience} epochs"


class TimeBudget(Callback):
    """Stop training once ``seconds`` of it have passed (checked after every step; the epoch in progress is
    evaluated and recorded): models compared at equal training time, not equal steps.

    Example:
        >>> import torch
        >>> from workbench.train import TrainConfig, train
        >>> x, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
        >>> out = train(torch.nn.Linear(4, 2), [(x, y)] * 10, TrainConfig(epochs=50), callbacks=[TimeBudget(0.0)])
        >>> len(out.history), out.status
        (1, 'time budget: 0 s of training')
    """

    def __init__(self, seconds: float):
        if seconds < 0:
            raise ValueError(f"TimeBudget needs seconds >= 0 (got {seconds})")
        self.seconds, self.started = seconds, None

    def on_train_start(self, state):
        self.started = time.perf_counter()

    def on_batch_end(self, state):
        if time.perf_counter() - self.started >= self.seconds:
            state.halt = True
            state.stop = f"time budget: {self.seconds:g} s of training"


class Checkpoint(Callback):
    """Saves everything training needs to continue after every epoch, atomically, and restores it:
    an interrupted run resumed from its last finished epoch ends with the same weights, bit for bit
    on a CPU, as one that ran through (``train(..., resume_from=path)``).

    "Everything" is the model, optimizer, schedule and grad-scaler states, the epoch and step, the
    history, and the random generators' states (dropout draws from them). The batch order and
    augmentations need no saving: the loader derives them from (seed, epoch) (``BatchLoader.set_epoch``).
    In a data-parallel run the states are whole (FSDP's shards gathered) and rank 0 writes the file.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)

    def on_epoch_end(self, state, record):
        model_state, optimizer_state = state.parallel.state_dicts(state.model, state.optimizer)  # every rank takes part
        if not state.parallel.main:
            return
        atomic_torch_save(
            {
                "model": model_state,
                "optimizer": optimizer_state,
                "scheduler": state.scheduler.state_dict(),
                "scaler": state.scaler.state_dict(),
                "epoch": state.epoch,
                "step": state.step,
                "history": state.history,
                "rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            },
            self.path,
        )

    def restore(self, state: TrainState, device: torch.device) -> None:
        """Load the saved states into ``state``'s model, optimizer, schedule and scaler; training then
        continues with the epoch after the saved one. A file that is not such a checkpoint, or one
        saved for another model or recipe, raises ``CheckpointError`` (one line) before anything
        has trained."""
        try:
            ckpt = torch.load(self.path, map_location=device, weights_only=True)
            state.parallel.load_state_dicts(state.model, state.optimizer, ckpt["model"], ckpt["optimizer"])
            state.scheduler.load_state_dict(ckpt["scheduler"])
            state.scaler.load_state_dict(ckpt["scaler"])
            state.epoch, state.step, state.history = ckpt["epoch"] + 1, ckpt["step"], list(ckpt["history"])
            torch.set_rng_state(ckpt["rng"].cpu())
            if ckpt["cuda_rng"] and torch.cuda.is_available():
                torch.cuda.set_rng_state_all([s.cpu() for s in ckpt["cuda_rng"]])
        except Exception as e:  # noqa: BLE001  (whatever is wrong with the file, the answer is the same)
            raise CheckpointError(
                f"{self.path} is not a training checkpoint of this run ({one_line(e)[:100]})"
            ) from None


class CheckpointError(ValueError):
    """An in-progress training checkpoint that cannot be resumed from."""
