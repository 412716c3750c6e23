"""``run(config)``: the one place where the parts are composed.

data -> model -> train -> compression steps -> evaluate -> measure -> Result -> store.
Every part is a plain function that can be called alone; this module only wires them.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Sequence

import pandas as pd
import torch

from .checkpoint import save_checkpoint
from .config import RunConfig
from .data import BatchLoader, Dataset, load_dataset, per_example_loss, select_subset
from .measure import count_flops, measure, resolve_device, timing_device, track_peak_memory
from .models import create_model
from .results import Result, ResultStore, results_frame
from .config import TrainConfig
from .train import Callback, Checkpoint, ProgressBar, evaluate, train

EVAL_BATCH = 512  # evaluation needs no gradients, so bigger batches are simply faster


def build_model(config: RunConfig, dataset: Dataset) -> torch.nn.Module:
    """The model ``config.model`` describes, shaped for ``dataset``; initialised from ``config.train.seed``."""
    torch.manual_seed(config.train.seed)
    m = config.model
    return create_model(
        m.name, dataset.num_classes, dataset.in_channels, dataset.image_size,
        width=m.width, depth=m.depth, batchnorm=m.batchnorm, dropout=m.dropout,
    )


def training_subset(config: RunConfig, dataset: Dataset, device: torch.device) -> torch.Tensor:
    """Indices of the training examples to use, chosen by ``config.data.selection``.

    ``hardest`` / ``easiest`` rank examples by the loss of a quick proxy (a small MLP trained for two
    epochs on all the data): cheap, and it ranks the same "obviously easy" examples low as a big model.
    """
    d = config.data
    if d.fraction == 1.0:
        return torch.arange(len(dataset.train_y))
    scores = None
    if d.selection in ("hardest", "easiest"):
        proxy_cfg = RunConfig(data=d.__class__(dataset=d.dataset), model=config.model.__class__(name="mlp"),
                              train=TrainConfig(epochs=2, optimizer="adam", lr=1e-3, seed=config.train.seed))
        proxy = build_model(proxy_cfg, dataset).to(device)
        train(proxy, train_loader(proxy_cfg, dataset, torch.arange(len(dataset.train_y)), device), proxy_cfg.train, device=device)
        scores = per_example_loss(proxy, dataset.train_x, dataset.train_y, mean=dataset.mean, std=dataset.std, device=device)
    return select_subset(dataset.train_y, d.fraction, d.selection, seed=config.train.seed, scores=scores)


def train_loader(config: RunConfig, dataset: Dataset, indices: torch.Tensor, device: torch.device) -> BatchLoader:
    """Shuffled, augmented (as configured), normalised batches of the chosen training examples."""
    return BatchLoader(
        dataset.train_x[indices], dataset.train_y[indices], config.train.batch_size, shuffle=True,
        seed=config.train.seed, device=device, augment=config.data.augment if config.data.augment.enabled else None,
        mean=dataset.mean if config.data.normalize else None, std=dataset.std if config.data.normalize else None,
    )


def eval_loader(config: RunConfig, dataset: Dataset, device: torch.device, split: str = "test") -> BatchLoader:
    """Normalised, unaugmented batches of a whole split, in order."""
    x, y = (dataset.test_x, dataset.test_y) if split == "test" else (dataset.train_x, dataset.train_y)
    return BatchLoader(
        x, y, EVAL_BATCH, device=device,
        mean=dataset.mean if config.data.normalize else None, std=dataset.std if config.data.normalize else None,
    )


def _open_store(store: ResultStore | str | os.PathLike | None) -> ResultStore | None:
    if store is None or isinstance(store, ResultStore):
        return store
    return ResultStore(store)


def run(
    config: RunConfig,
    *,
    store: ResultStore | str | os.PathLike | None = "runs",
    callbacks: Sequence[Callback] = (),
    progress: bool = True,
    resume: bool = True,
    data_root: str | os.PathLike = "data",
) -> Result:
    """Train, compress, evaluate and measure what ``config`` describes; store and return the row.

    With a store, training checkpoints every epoch under ``store/checkpoints`` and ``resume=True``
    continues an interrupted run of the same config from its last finished epoch.

    Example:
        >>> from workbench import RunConfig, ModelConfig, TrainConfig
        >>> cfg = RunConfig(model=ModelConfig(name="mlp"), train=TrainConfig(epochs=1))
        >>> r = run(cfg, store=None, progress=False)
        >>> 0.5 < r.metrics["accuracy"] <= 1.0
        True
    """
    store = _open_store(store)
    device = resolve_device(config.hardware.device)
    dataset = load_dataset(config.data.dataset, root=data_root)
    indices = training_subset(config, dataset, device)
    model = build_model(config, dataset)
    train_batches = train_loader(config, dataset, indices, device)
    test_loader = eval_loader(config, dataset, device)

    criterion = None
    if config.distill.enabled:
        from .compress.distill import distillation_loss, load_teacher

        teacher = load_teacher(config.distill.teacher, store=store).to(device)
        criterion = distillation_loss(
            teacher, alpha=config.distill.alpha, temperature=config.distill.temperature,
            label_smoothing=config.train.label_smoothing,
        )

    hooks = list(callbacks) + ([ProgressBar(desc=config.name or config.model.name)] if progress else [])
    resume_from = None
    if store is not None:
        in_progress = store.root / "checkpoints" / f"in-progress-{config.config_hash()}.pt"
        hooks.append(Checkpoint(in_progress))
        resume_from = str(in_progress) if resume and in_progress.exists() else None
    with track_peak_memory(device) as memory:
        outcome = train(
            model, train_batches, config.train, eval_loader=test_loader, hardware=config.hardware,
            device=device, callbacks=hooks, resume_from=resume_from, criterion=criterion,
        )
    if outcome.status != "ok":
        warnings.warn(f"Training stopped early: {outcome.status}", stacklevel=2)
    trained_state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    chw = tuple(dataset.train_x.shape[1:])
    compress_log: list[dict] = []
    flops_note = None
    if config.compress:
        from .compress import CompressContext, apply_step

        float_flops = count_flops(model, (1, *chw))
        ctx = CompressContext(
            example_input=next(iter(test_loader))[0][:8].clone(), train_loader=train_batches, eval_loader=test_loader,
            device=device, train=config.train, hardware=config.hardware, log=compress_log,
        )
        for step in config.compress:
            model = apply_step(model, step, ctx)

    final = evaluate(model, test_loader, device=device, precision=config.hardware.precision)
    measure_device = timing_device(config.measure.device, device)
    size_metrics, records = measure(model, chw, config.measure, measure_device)
    from .ledger import measure_modes, timing_plan

    for where, modes in timing_plan(config.measure, measure_device):
        records += measure_modes(model, chw, modes=modes, batch_sizes=config.measure.batch_sizes,
                                 device=where, warmup=config.measure.warmup, iters=config.measure.iters)
    if config.compress and size_metrics["flops"] == 0:
        # FlopCounterMode does not see quantized kernels; the arithmetic is the float model's.
        size_metrics["flops"] = float_flops
        flops_note = "counted on the float model: FlopCounterMode cannot see quantized ops"
    last = outcome.history[-1] if outcome.history else {}
    metrics = {
        "accuracy": final["accuracy"],
        "loss": final["loss"],
        "train_accuracy": last.get("train_accuracy"),
        "train_loss": last.get("train_loss"),
        **size_metrics,
        "train_seconds": outcome.seconds,
        "train_ips": outcome.images / outcome.seconds if outcome.seconds else None,
        "train_device": str(device),
        "peak_memory_bytes": memory.peak_bytes,
        "epochs_run": len(outcome.history),
        "train_examples": len(indices),
    }
    if flops_note:
        metrics["flops_note"] = flops_note
    result = Result(config=config, metrics=metrics, history=outcome.history, benchmarks=records,
                    status="ok" if outcome.status == "ok" else outcome.status.split(":")[0])
    if compress_log:
        result.metrics["compress_log"] = compress_log
    if store is not None:
        path = store.checkpoint_path(result.run_id)
        model_for_ckpt = build_model(config, dataset)
        model_for_ckpt.load_state_dict(trained_state)
        save_checkpoint(path, model_for_ckpt, config)
        result.checkpoint = str(path)
        store.append(result)
        in_progress.unlink(missing_ok=True)
    return result


def run_many(configs: Sequence[RunConfig], **kwargs) -> pd.DataFrame:
    """Run each config in turn; returns their rows as one DataFrame."""
    return results_frame([run(c, **kwargs) for c in configs])


def sweep(base: RunConfig, field: str, values: Sequence, **kwargs) -> pd.DataFrame:
    """Run ``base`` once per value of one dotted field (``"model.width"``, ``"train.optimizer"``...);
    each run is named ``field=value``. The frame has a ``sweep_value`` column for plotting."""
    configs = [base.replace(**{field: v, "name": f"{field.rsplit('.', 1)[-1]}={v}"}) for v in values]
    df = run_many(configs, **kwargs)
    df["sweep_field"], df["sweep_value"] = field, list(values)
    return df


def distill(
    student: RunConfig,
    teacher: str,
    *,
    seeds: Sequence[int] = (0, 1, 2),
    alpha: float = 0.7,
    temperature: float = 4.0,
    **kwargs,
) -> pd.DataFrame:
    """Train the same student with and without the teacher for each seed, so the gain is measured.

    ``teacher`` is a stored run id or a checkpoint path. Returns one row per run with a ``with_teacher``
    column; ``distill_summary`` averages them.
    """
    from dataclasses import asdict

    from .config import DistillConfig

    rows = []
    for seed in seeds:
        for with_teacher in (False, True):
            cfg = student.replace(**{
                "train.seed": seed,
                "distill": asdict(DistillConfig(teacher=teacher if with_teacher else "", alpha=alpha, temperature=temperature)),
                "name": f"{student.name or student.model.name} {'distilled' if with_teacher else 'alone'}",
            })
            rows.append(run(cfg, **kwargs))
    df = results_frame(rows)
    df["with_teacher"] = df["distill.teacher"].astype(bool)
    return df


def distill_summary(df: pd.DataFrame) -> pd.DataFrame:
    """Mean and spread of accuracy with and without the teacher, and the gain."""
    table = df.groupby("with_teacher")["accuracy"].agg(["mean", "std", "count"])
    table.index = table.index.map({False: "student alone", True: "distilled"})
    return table
