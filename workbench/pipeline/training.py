"""Training, reuse and compression: how a config gets its trained model and then its compressed one.

Train once, reuse: a store that already holds a finished training of the same data, model, train,
hardware, parallel and distill sections gives its trained weights to the next run of them
(``training_to_reuse``), so a baseline and its compressed variants train once. A training that does
run checkpoints every epoch into its slot (``training_slot``), where an interrupted run of the same
sections resumes.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from .._errors import ConfigError
from .._files import try_lock
from ..compress import apply_step
from ..config import RunConfig
from ..data import Dataset
from ..measure import count_flops, count_parameters, model_size_bytes, track_peak_memory
from ..models.lora import add_lora, merge_lora
from ..report import METRICS, Result, ResultStore, epoch_costs
from ..report.checkpoint import load_checkpoint, save_checkpoint
from ..tasks import task_of
from ..train import (
    SINGLE,
    Callback,
    Checkpoint,
    CheckpointError,
    EpochLines,
    Group,
    ProgressBar,
    TrainOutcome,
    distillation_loss,
    parameter_bytes,
    train,
)
from ..train.compile_probe import CompileDecision
from .options import RunOptions
from .user_warning import warn_user

# What a reused run takes over from the run that trained the weights: the schema's training metrics, and where.
TRAINING_METRICS = (*(m.name for m in METRICS.values() if m.source == "training"), "train_device", "backend")


@dataclass
class Trained:
    model: torch.nn.Module
    history: list[dict[str, Any]]
    metrics: dict[str, Any]
    status: str = "ok"
    checkpoint: str | None = None  # the float weights right after training
    reused_from: str | None = None
    indices: torch.Tensor | None = None  # the training examples chosen (None: not chosen here)


def training_to_reuse(config: RunConfig, device: torch.device, options: RunOptions) -> Result | None:
    """The stored run whose trained weights this config takes instead of training: ``start_from``, or
    (with ``reuse``) a finished training of the same sections on this kind of device."""
    store, start_from = options.store, options.start_from
    if start_from is None:
        return store.trained_like(config, device) if options.reuse and store is not None else None
    if store is None:
        raise ValueError("start_from needs the result store that holds that run: pass store=...")
    source = start_from if isinstance(start_from, Result) else store.get(start_from)
    if source.config.training_hash() != config.training_hash():
        raise ConfigError(
            f"start_from={source.run_id} was trained with other data/model/train/hardware/distill "
            "settings: start from its config, store.get(run_id).config.replace(compress=...)"
        )
    if not source.trained_checkpoint or not Path(source.trained_checkpoint).is_file():
        raise ValueError(f"Run '{source.run_id}' kept no trained weights to start from: run it again with a store")
    return source


def train_model(
    config: RunConfig,
    dataset: Dataset,
    device: torch.device,
    run_id: str,
    slot: Slot,
    options: RunOptions,
    group: Group = SINGLE,
) -> Trained | None:
    """``config``'s model trained (this rank's shard of every epoch), checkpointing into ``slot`` and
    saved to the store; rank 0 gets the result, the other ranks None."""
    task = task_of(config)
    indices = task.training_subset(config, dataset, device)
    batches = task.train_batches(config, dataset, device, indices, shard=(group.rank, group.world_size))
    criterion = _distillation_criterion(config, options.store, device)
    hooks = _hooks(config, slot, options, group)
    if slot.note and group.main:
        warn_user(slot.note)

    def fresh() -> torch.nn.Module:
        model = task.initial_model(config, dataset, device, indices)
        if config.train.init_from:  # fine-tuning: the architecture was checked in preflight
            model.load_state_dict(load_teacher(config.train.init_from, options.store).state_dict())
        if config.train.lora_rank:
            t = config.train
            add_lora(model, t.lora_rank, t.lora_alpha or None, t.lora_targets)
        return model

    def attempt(resume_from: str | None):
        model = fresh()
        with track_peak_memory(device) as memory:
            outcome = train(
                model,
                batches,
                config.train,
                eval_loader=task.eval_batches(config, dataset, device),
                hardware=config.hardware,
                device=device,
                callbacks=hooks,
                resume_from=resume_from,
                criterion=criterion,
                parallel=group,
            )
        return model, outcome, memory

    try:
        model, outcome, memory = attempt(slot.resume_from)
    except CheckpointError as e:  # restored before any step ran: set the file aside and start again
        if group.main:
            aside = slot.set_aside()
            warn_user(f"{e}: set it aside as {aside.name} and trained from the first epoch")
        model, outcome, memory = attempt(None)
    ranks = group.gather(
        {
            "images": outcome.images,
            "seconds": outcome.seconds,
            "parameter_bytes": parameter_bytes(model),
            "peak_memory_bytes": memory.peak_bytes,
        }
    )
    model = group.plain_model(model, fresh)
    if config.train.lora_rank:  # the adapters folded into the weights: the saved model is a plain GPT again
        merge_lora(model).requires_grad_(True)
    group.finish()
    if not group.main:
        return None
    if outcome.status != "ok":
        warn_user(f"Training stopped early: {outcome.status}")
    metrics = {
        **_training_metrics(outcome, ranks, device, memory.peak_bytes),
        **task.fit(config, model, dataset, device, indices),
        "train_examples": task.train_examples(indices, batches),
        "steps_per_epoch": len(batches),
        **_rank_metrics(ranks, group),
        **_compile_metrics(outcome.compile_decision),
        "trainable_params": outcome.trainable_params,
        "optimizer_state_bytes": outcome.optimizer_state_bytes,
    }
    metrics[task.train_speed_metric] = metrics["train_ips"]  # in the task's unit: images or tokens a second
    checkpoint = None
    if options.store is not None:
        path = options.store.checkpoint_path(run_id if not config.compress else f"{run_id}-trained")
        args, extra = task.model_args(config, dataset), task.saved_with_model(dataset)
        checkpoint = str(save_checkpoint(path, model, config, args, extra=extra)[0])
    status = "ok" if outcome.status == "ok" else outcome.status.split(":")[0]
    return Trained(model, outcome.history, metrics, status=status, checkpoint=checkpoint, indices=indices)


def _distillation_criterion(config: RunConfig, store: ResultStore | None, device: torch.device) -> Callable | None:
    """The loss against the teacher's answers when the config distills; None trains on the labels alone."""
    if not config.distill.enabled:
        return None
    teacher = load_teacher(config.distill.teacher, store=store).to(device)
    return distillation_loss(
        teacher,
        alpha=config.distill.alpha,
        temperature=config.distill.temperature,
        label_smoothing=config.train.label_smoothing,
    )


def _hooks(config: RunConfig, slot: Slot, options: RunOptions, group: Group) -> list[Callback]:
    """The user's callbacks, the progress display (rank 0's) and the per-epoch checkpoint into the slot."""
    # A rank's output reaches the launching process through a pipe: lines per epoch, not a redrawn bar.
    bar = ProgressBar(desc=config.label()) if group.world_size == 1 else EpochLines(config.label())
    hooks = [*options.callbacks, *([bar] if options.progress and group.main else [])]
    if slot.path is not None:
        hooks.append(Checkpoint(slot.path))
    return hooks


def _training_metrics(
    outcome: TrainOutcome, ranks: list[dict], device: torch.device, peak_memory_bytes: int
) -> dict[str, Any]:
    """What a training's row records of how it went: its last epoch, its time and speed, its epochs."""
    last = outcome.history[-1] if outcome.history else {}
    return {
        "train_accuracy": last.get("train_accuracy"),
        "train_loss": last.get("train_loss"),
        "train_seconds": outcome.seconds,
        **epoch_costs(outcome.history),
        # Every rank's images over the slowest rank's time: the whole launch's speed.
        "train_ips": sum(r["images"] for r in ranks) / max(r["seconds"] for r in ranks) if outcome.seconds else None,
        "train_device": str(device),
        "peak_memory_bytes": peak_memory_bytes,
        "epochs_run": len(outcome.history),
        "resumed_epochs": outcome.resumed_epochs,
    }


def _rank_metrics(ranks: list[dict], group: Group) -> dict[str, Any]:
    """Each rank's speed and memory, for a data-parallel training (none for one process)."""
    if group.world_size == 1:
        return {}
    return {
        "world_size": group.world_size,
        "backend": group.backend,
        "rank_images_per_s": [r["images"] / r["seconds"] if r["seconds"] else None for r in ranks],
        "rank_parameter_bytes": [r["parameter_bytes"] for r in ranks],
        "rank_peak_memory_bytes": [r["peak_memory_bytes"] for r in ranks],
    }


def _compile_metrics(decision: CompileDecision | None) -> dict[str, Any]:
    """What ``compile='auto'`` decided and why (nothing when it was not asked)."""
    if not decision:
        return {}
    return {"compiled": decision.compile, "compile_reason": decision.reason, "compile_probe_seconds": decision.probe_s}


def reuse_training(config: RunConfig, source: Result, device: torch.device, progress: bool) -> Trained:
    """``source``'s trained weights and training metrics, taken over as this run's training."""
    origin = source.reused_from or source.run_id
    if progress:
        trainer = source.config.label()
        tqdm.write(
            f"{config.label()}: reusing the training of run {origin} ({trainer}: same data, "
            "model, train, hardware, parallel and distill settings); reuse=False trains again"
        )
    model, _ = load_checkpoint(source.trained_checkpoint)
    metrics = {k: source.metrics[k] for k in TRAINING_METRICS if k in source.metrics}
    return Trained(
        model.to(device), list(source.history), metrics, checkpoint=source.trained_checkpoint, reused_from=origin
    )


def compress_trained(
    config: RunConfig, trained: Trained, dataset: Dataset, device: torch.device, progress: bool
) -> tuple[torch.nn.Module, list[dict], dict[str, Any] | None]:
    """The compressed model, what the steps logged, and the float model's numbers before them."""
    model = trained.model
    if not config.compress:
        return model, [], None
    task = task_of(config)
    indices = trained.indices if trained.indices is not None else task.training_subset(config, dataset, device)
    log: list[dict] = []
    ctx = task.compress_context(config, dataset, device, indices, log=log, progress=progress)
    before = {
        **count_parameters(model),
        "size_bytes": model_size_bytes(model),
        "flops": count_flops(model, example=ctx.example_input[:1]),
        **task.quality(task.evaluate(config, model, dataset, device)),  # as the compressed model will be
    }
    torch.manual_seed(config.train.seed)  # fine-tuning draws dropout from here: a reused training compresses alike
    for step in config.compress:
        model = apply_step(model, step, ctx)
    return model, log, before


def warn_about_lost_accuracy(config: RunConfig, before: dict[str, Any], after: dict[str, Any]) -> None:
    """Say so when compression cost more quality than the task tolerates, with the likely fix (the
    ``advice`` of the first step that gives one)."""
    cost = task_of(config).compression_cost(before, after)
    if cost is None:
        return
    # The first step with advice speaks: the earliest lossy step is the likeliest cause.
    fix = next((s.advice for s in config.compress if s.advice), "fine-tune after compressing (finetune:epochs=5)")
    warn_user(f"{cost}: {fix}")


def load_teacher(ref: str | os.PathLike, store: ResultStore | str | os.PathLike | None = None) -> torch.nn.Module:
    """The trained model behind ``ref``: a checkpoint file path, or the run id of a stored result.

    The architecture is rebuilt from the checkpoint's model arguments (no data is loaded), the
    weights loaded, and the model returned in eval mode on the CPU.

    Example:
        >>> load_teacher("no-such-run")  # doctest: +NORMALIZE_WHITESPACE
        Traceback (most recent call last):
        ...
        ValueError: Teacher 'no-such-run' is neither a checkpoint file nor a stored run id
        (no result store given): pass a path or store=ResultStore(...)
    """
    model, _ = load_checkpoint(teacher_checkpoint(str(ref), ResultStore.open(store)))
    return model.eval()


def teacher_checkpoint(ref: str, store: ResultStore | None) -> str:
    """The checkpoint file a teacher reference (a path or a stored run id) points at."""
    if Path(ref).is_file():
        return ref
    if store is None:
        raise ValueError(
            f"Teacher '{ref}' is neither a checkpoint file nor a stored run id (no result store given): "
            "pass a path or store=ResultStore(...)"
        )
    try:
        result = store.get(ref)
    except KeyError as e:
        raise ValueError(f"Teacher '{ref}' is neither a checkpoint file nor a stored run: {e.args[0]}") from None
    if not result.checkpoint or not Path(result.checkpoint).is_file():
        raise ValueError(
            f"Run '{ref}' has no saved checkpoint to use as a teacher: run it with a store so weights are saved"
        )
    return result.checkpoint


@dataclass
class Slot:
    """Where a run's training checkpoints itself while it runs, and whether it may resume from it."""

    path: Path | None = None  # None: no store, nowhere to checkpoint
    resume_from: str | None = None
    note: str | None = None  # why this run does not use the shared in-progress checkpoint

    def set_aside(self) -> Path:
        """Move an unreadable in-progress checkpoint out of the way (kept, for a look), and do not resume."""
        aside = self.path.with_name(f"{self.path.name}.unreadable-{time.strftime('%Y%m%d-%H%M%S')}")
        os.replace(self.path, aside)
        self.resume_from = None
        return aside

    def finished(self) -> None:
        """The run is stored: its in-progress checkpoint has done its job."""
        if self.path is not None:
            self.path.unlink(missing_ok=True)


@contextlib.contextmanager
def training_slot(config: RunConfig, run_id: str, options: RunOptions) -> Iterator[Slot]:
    """The in-progress checkpoint this run trains into, held under a lock for the whole run.

    Runs of the same training settings share one in-progress checkpoint, so an interrupted run
    resumes where it stopped. While another live process holds it, this run trains on its own into
    a private checkpoint: it never resumes from, or writes to, a file another process is writing.
    """
    if options.store is None:
        yield Slot()
        return
    shared = options.store.root.resolve() / "checkpoints" / f"in-progress-{config.training_hash()}.pt"
    with try_lock(shared.with_suffix(".lock")) as ours:
        if ours:
            yield Slot(shared, str(shared) if options.resume and shared.exists() else None)
            return
        private = shared.with_name(f"{shared.stem}-{run_id}.pt")
        try:
            yield Slot(
                private,
                None,
                "another live run is training the same settings in this store: "
                "this one trains on its own instead of sharing its checkpoint",
            )
        finally:
            private.unlink(missing_ok=True)  # nobody could find it to resume from
