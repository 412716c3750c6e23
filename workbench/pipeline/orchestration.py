"""``run(config)``: the one place where the parts are composed, one phase per function.

preflight -> data -> train (or reuse a stored training) -> compression steps -> evaluate -> measure
-> Result -> store. ``_prepare`` takes a config up to its evaluated model, and ``_time_and_store``
times a batch of them together (so runs compared side by side were timed side by side) and stores
each row. A data-parallel config is launched through torchrun (``launch``), and inside each rank
``run`` comes back here as ``run_as_rank``.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch
from tqdm.auto import tqdm

from .._errors import ConfigError
from ..config import RunConfig
from ..data import Dataset
from ..measure import (
    achieved,
    diagnose,
    matmul_ceiling,
    measure_modes_together,
    measure_together,
    memory_bandwidth,
    resolve_device,
    timing_device,
    timing_plan,
)
from ..report import Result, ResultStore, new_run_id, results_frame
from ..report.checkpoint import save_checkpoint
from ..tasks import task_of
from ..train import (
    SINGLE,
    Callback,
    Group,
    Placement,
    in_torchrun,
    rank_device,
    resolve_threads,
    start_group,
    thread_count,
)
from .checks import require_ready
from .launch import launched, rank_threads
from .options import RunOptions
from .training import (
    Slot,
    Trained,
    compress_trained,
    reuse_training,
    train_model,
    training_slot,
    training_to_reuse,
    warn_about_lost_accuracy,
)


def run(
    config: RunConfig,
    *,
    store: ResultStore | str | os.PathLike | None = "runs",
    callbacks: Sequence[Callback] = (),
    progress: bool = True,
    resume: bool = True,
    reuse: bool = True,
    start_from: str | Result | None = None,
    data_root: str | os.PathLike = "data",
    tags: dict[str, Any] | None = None,
    placement: Placement | None = None,
) -> Result:
    """Train, compress, evaluate and measure what ``config`` describes; store and return the row.

    With a store, training checkpoints every epoch under ``store/checkpoints`` and ``resume=True``
    continues an interrupted training of the same sections from its last finished epoch; ``reuse=True``
    takes the weights of a stored run that already finished the same training instead of training
    again. ``start_from`` (a run id or ``Result`` in the store) names that run explicitly, e.g. to
    compress a model you liked: its training sections must equal ``config``'s. ``tags`` go into the
    row as columns (a search records its study and trial number there).

    A config with ``parallel.nproc x parallel.nnodes > 1`` trains data-parallel: ``run`` launches that
    many processes through ``torchrun`` (``placement`` says where, for several machines), each trains
    its shard of every epoch, and rank 0 evaluates, measures and stores the one row, returned here
    (inside a torchrun rank, the other ranks get None). A rank that fails ends the launch with
    ``LaunchError``; nothing is stored and the same call resumes from the last finished epoch.

    Example:
        >>> from workbench import RunConfig, ModelConfig, TrainConfig
        >>> cfg = RunConfig(model=ModelConfig(name="mlp"), train=TrainConfig(epochs=1))
        >>> r = run(cfg, store=None, progress=False)
        >>> 0.5 < r.metrics["accuracy"] <= 1.0
        True
    """
    _require_run_configs([config])
    options = RunOptions(
        store=store,
        callbacks=callbacks,
        progress=progress,
        resume=resume,
        reuse=reuse,
        start_from=start_from,
        data_root=data_root,
        tags=tags,
        placement=placement,
    )
    return _run_one(config, options)


def run_many(configs: Sequence[RunConfig], **kwargs) -> pd.DataFrame:
    """Run each config (keyword arguments as ``run``'s); returns their rows as one DataFrame.

    Every config is checked before any trains. The finished models are timed together, taking turns
    in rounds (``measure_together``), so a busy machine slows them alike and their latencies compare;
    a training that the batch already did is reused, not repeated. Data-parallel configs are launched
    one by one (``run``), after the others.
    """
    configs = list(configs)
    _require_run_configs(configs)
    options = RunOptions(**kwargs)
    alone = [c for c in configs if c.parallel.world_size == 1]
    rows = _run_together(alone, options) if alone else []
    rows += [_run_one(c, options) for c in configs if c.parallel.world_size > 1]
    return results_frame(rows)


def _require_run_configs(configs: Sequence[RunConfig]) -> None:
    for config in configs:
        if not isinstance(config, RunConfig):
            raise TypeError(
                f"run() takes a RunConfig (got {type(config).__name__}): "
                "build one, e.g. RunConfig(model=ModelConfig(...))"
            )


def _run_one(config: RunConfig, options: RunOptions) -> Result | None:
    if config.parallel.world_size > 1 and not in_torchrun():
        require_ready([config], options.store)
        return launched(config, options)
    results = _run_together([config], options)
    return results[0] if results else None  # a torchrun rank other than 0 stores nothing


def _run_together(configs: list[RunConfig], options: RunOptions) -> list[Result]:
    require_ready(configs, options.store)  # every config's problems before any work
    if any(c.parallel.world_size > 1 for c in configs):
        if len(configs) > 1:
            raise ConfigError(
                "a torchrun rank runs one data-parallel config at a time: call run(config) once per config"
            )
        return run_as_rank(configs[0], options)
    prepared: list[Prepared] = []
    with contextlib.ExitStack() as held:
        try:
            for config in configs:
                prepared.append(_prepare(config, prepared, held, options))
        except Exception:
            _time_and_store(prepared, options)  # the runs that finished are kept, not lost
            raise
        return _time_and_store(prepared, options)


def run_as_rank(config: RunConfig, options: RunOptions) -> list[Result]:
    """One rank of a data-parallel launch: every rank trains its shard; rank 0 alone then compresses,
    evaluates, times and stores the row (the others return no rows)."""
    group = start_group(config.parallel, rank_device(resolve_device(config.hardware.device)))
    with contextlib.ExitStack() as held:
        prepared = _prepare(config, [], held, options, group)
        return [] if prepared is None else _time_and_store([prepared], options)


@dataclass
class Prepared:
    """A run trained (or reused), compressed and evaluated, waiting for its timing."""

    config: RunConfig
    run_id: str
    device: torch.device
    dataset: Dataset
    threads: int
    trained: Trained
    model: torch.nn.Module
    compress_log: list[dict]
    before: dict[str, Any] | None
    evaluated: dict[str, Any]
    slot: Slot

    def as_source(self) -> Result:
        """This run as the stored row a later config of the same batch would reuse."""
        return Result(
            config=self.config,
            metrics=self.trained.metrics,
            history=self.trained.history,
            run_id=self.run_id,
            trained_checkpoint=self.trained.checkpoint,
            reused_from=self.trained.reused_from,
        )


def _prepare(
    config: RunConfig,
    batch: list[Prepared],
    held: contextlib.ExitStack,
    options: RunOptions,
    group: Group = SINGLE,
) -> Prepared | None:
    """The run trained and compressed, ready to time; None on a data-parallel rank other than 0 (it only trains)."""
    device = rank_device(resolve_device(config.hardware.device))
    # Rank 0 decides, so every rank trains (or none does) and resumes from the same file.
    source = group.from_main(training_to_reuse(config, device, options) if group.main else None)
    if source is None and options.reuse and options.store is not None:
        source = _trained_earlier_in(batch, config, device)
    task = task_of(config)
    dataset = task.load(config, options.data_root)
    task.check_sizes(config, dataset)
    run_id = group.from_main(new_run_id())
    threads = rank_threads(config) if group.world_size > 1 else resolve_threads(config.hardware.threads)
    with thread_count(threads):
        if source is None:
            slot = held.enter_context(training_slot(config, run_id, options)) if group.main else None
            slot = group.from_main(slot)
            trained = train_model(config, dataset, device, run_id, slot, options, group)
        else:
            group.finish()
            slot = Slot()
            trained = reuse_training(config, source, device, options.progress) if group.main else None
        if trained is None:
            return None
        model, compress_log, before = compress_trained(config, trained, dataset, device, options.progress)
        evaluated = _evaluate(config, model, dataset, device)
    return Prepared(config, run_id, device, dataset, threads, trained, model, compress_log, before, evaluated, slot)


def _trained_earlier_in(batch: list[Prepared], config: RunConfig, device: torch.device) -> Result | None:
    """A run of this batch that trained the same sections on this kind of device: stored only at the batch's end."""
    return next(
        (
            p.as_source()
            for p in batch
            if p.trained.checkpoint
            and p.device.type == device.type
            and p.config.training_hash() == config.training_hash()
        ),
        None,
    )


def _evaluate(config: RunConfig, model: torch.nn.Module, dataset: Dataset, device: torch.device) -> dict[str, Any]:
    start = time.perf_counter()
    evaluated = task_of(config).evaluate(config, model, dataset, device)
    evaluated["eval_seconds"] = time.perf_counter() - start  # evaluate reads its answers back: the device is done
    return evaluated


def _time_and_store(batch: list[Prepared], options: RunOptions) -> list[Result]:
    """Time the batch's models, those with the same timing settings together, then store each row."""
    timed = _time(batch, options.progress)
    results = []
    for i, p in enumerate(batch):
        result = _row(p, *timed[i], options.tags)
        if options.store is not None:
            _store(result, p.model, p.dataset, options.store, p.device)
        p.slot.finished()
        results.append(result)
    return results


def _time(batch: list[Prepared], progress: bool) -> dict[int, tuple[dict[str, Any], list[dict]]]:
    """Each run's timing metrics and records, by its place in the batch; runs timed alike are timed together."""
    groups: dict[tuple, list[int]] = {}
    inputs_of: dict[int, Any] = {}
    for i, p in enumerate(batch):
        where = timing_device(p.config.measure.device, p.device)
        task = task_of(p.config)
        # Models timed together see the same inputs: the same shape, or (text) the same windows.
        inputs_of[i] = task.timing_inputs(p.config, p.dataset)
        key = None if inputs_of[i] is None else (p.config.data, p.config.model.block_size)
        groups.setdefault((str(where), p.config.measure, p.threads, task.example_shape(p.dataset), key), []).append(i)
    timed: dict[int, tuple[dict[str, Any], list[dict]]] = {}
    for (where, cfg, threads, shape, _), members in groups.items():
        first = batch[members[0]]
        task, inputs = task_of(first.config), inputs_of[members[0]]
        models = [batch[i].model for i in members]
        if progress and len(models) > 1:
            tqdm.write(
                f"timing {len(models)} models together, taking turns so a busy machine slows them alike "
                f"({', '.join(cfg.modes)}; batch sizes {', '.join(map(str, cfg.batch_sizes))}; {threads} threads)"
            )
        with thread_count(threads):
            ceilings = {d: matmul_ceiling(d) for d in {where, *(str(batch[i].device) for i in members)}}
            bandwidth = memory_bandwidth(where)
            measured = measure_together(models, shape, cfg, where, inputs=inputs)
            more = task.more_timing(first.config, models, first.dataset, where)
            measured = [({**metrics, **m}, records + r) for (metrics, records), (m, r) in zip(measured, more)]
            for other, planned in timing_plan(cfg, torch.device(where)):
                modes = task.modes_on_inputs(planned)
                if not modes:
                    continue
                more = measure_modes_together(
                    models,
                    shape,
                    modes=modes,
                    batch_sizes=cfg.batch_sizes,
                    device=other,
                    warmup=cfg.warmup,
                    iters=cfg.iters,
                    progress=progress,
                )
                measured = [(metrics, records + extra) for (metrics, records), extra in zip(measured, more)]
            for i, (metrics, _) in zip(members, measured):
                metrics["diagnostics"] = _diagnostics(batch[i], cfg.batch_sizes, torch.device(where))
        for i, (metrics, _) in zip(members, measured):
            if metrics["flops"] == 0 and batch[i].before is not None:
                # FlopCounterMode does not see quantized kernels; the arithmetic is the float model's.
                metrics["flops"] = batch[i].before["flops"]
                metrics["flops_note"] = "counted on the float model: FlopCounterMode cannot see quantized ops"
            metrics.update(task.row_metrics(batch[i].config, metrics))
            metrics.update(_achieved(metrics, batch[i], ceilings[where], ceilings[str(batch[i].device)]))
            metrics["bandwidth_gbs"] = bandwidth["gbs"]
        timed.update(zip(members, measured))
    return timed


def _row(p: Prepared, timing: dict[str, Any], records: list[dict], tags: dict[str, Any]) -> Result:
    """The run's row: its evaluation, timing, compression and training metrics together."""
    task = task_of(p.config)
    metrics = {**p.evaluated, **timing}
    if p.before is not None:
        metrics["before_compression"] = p.before
        warn_about_lost_accuracy(p.config, p.before, metrics)
    else:
        metrics.update(task.gap(p.trained.metrics, metrics))
    metrics.update(threads=p.threads)  # training and timing both ran with these
    result = Result(
        config=p.config,
        metrics={**metrics, **p.trained.metrics},
        history=p.trained.history,
        benchmarks=records,
        run_id=p.run_id,
        status=p.trained.status,
        trained_checkpoint=p.trained.checkpoint,
        reused_from=p.trained.reused_from,
        tags=dict(tags),
    )
    if p.compress_log:
        result.metrics["compress_log"] = p.compress_log
    return result


def _store(result: Result, model: torch.nn.Module, dataset: Dataset, store: ResultStore, device: torch.device) -> None:
    """Save the run's final model beside its row (the trained one is saved already) and append the row."""
    config = result.config
    if not config.compress:  # the model is the trained one, already saved
        result.checkpoint, result.checkpoint_format = result.trained_checkpoint, "state_dict"
    else:
        task = task_of(config)
        try:
            path, result.checkpoint_format = save_checkpoint(
                store.checkpoint_path(result.run_id),
                model,
                config,
                task.model_args(config, dataset, model),
                example_inputs=task.example_input(config, dataset, device),
                extra=task.saved_with_model(dataset),
            )
            result.checkpoint = str(path)
        except ValueError as e:  # a fake-quant model has no deployable form
            result.metrics["checkpoint_note"] = str(e)
    store.append(result)


def _diagnostics(p: Prepared, batch_sizes: Sequence[int], where: torch.device) -> dict[str, Any]:
    """What the ledger decides its reasons by (``measure.diagnose``), for a model timed on the CPU: activation
    bytes for the roofline, an operator profile, and int8/bf16 products at the model's layer shapes where a
    step made it int8 or cast it. Off the CPU only the activation bytes (the kernel diagnostics are CPU
    kernels). A diagnostic that cannot run is recorded as such: the ledger then says its reason is a rule."""
    task = task_of(p.config)
    kinds = sorted({s.matmul_kind() for s in p.config.compress} - {""})
    example = task.example_input(p.config, p.dataset, p.device)[:1]
    try:
        return diagnose(
            p.trained.model,
            p.model,
            example,
            kinds=kinds,
            batch_sizes=batch_sizes,
            decode_batch_sizes=task.decode_batch_sizes,
            kernels=where.type == "cpu" and p.device.type == "cpu",
        )
    except (RuntimeError, NotImplementedError, TypeError) as e:  # e.g. a model only ONNX Runtime can run
        return {"skipped": f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"}


def _achieved(metrics: dict[str, Any], p: Prepared, inference_ceiling: dict, train_ceiling: dict) -> dict[str, Any]:
    """Achieved TFLOP/s in inference (at the largest batch) and in training (the float model's FLOPs at
    the speed of a steady epoch), each beside the matmul ceiling probed on the device that ran it."""
    out = {
        "inference_tflops": achieved(metrics["flops"], metrics["throughput_ips"], training=False),
        "ceiling_tflops": inference_ceiling["tflops"],
        "ceiling_dtype": inference_ceiling["dtype"],
    }
    out["inference_ceiling_share"] = out["inference_tflops"] / inference_ceiling["tflops"]
    # Steady epochs: a compiled run's first epoch would count its compiling as slow arithmetic.
    steady = p.trained.metrics.get("steady_epoch_seconds")
    train_ips = p.trained.metrics.get("train_examples", 0) / steady if steady else p.trained.metrics.get("train_ips")
    if train_ips:
        per_example = task_of(p.config).flops_per_train_example(p.config, p.before or metrics)
        out["train_tflops"] = achieved(per_example, train_ips, training=True)
        out["train_ceiling_tflops"] = train_ceiling["tflops"]
        out["train_ceiling_share"] = out["train_tflops"] / train_ceiling["tflops"]
    return out
