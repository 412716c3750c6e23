"""``run(config)``: the one place where the parts are composed.

preflight -> data -> train (or reuse a stored training) -> compression steps -> evaluate -> measure
-> Result -> store. Every part is a plain function that can be called alone; this module only wires
them, one phase per function: ``_prepare`` takes a config up to its evaluated model, and
``_time_and_store`` times a batch of them together (so runs compared side by side were timed side
by side) and stores each row.

Train once, reuse: a store that already holds a finished training of the same data, model, train,
hardware, parallel and distill sections gives its trained weights to the next run of them, so a baseline and
its compressed variants train once (``reuse=False`` trains again; the row names the reused run).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from tqdm.auto import tqdm

from ._errors import ConfigError
from ._files import try_lock
from .compress import CompressContext, apply_step
from .config import RunConfig
from .data import Dataset, eval_loader, load_dataset, per_example_loss, select_subset, subset_size, train_loader
from .measure import (
    achieved,
    count_flops,
    count_parameters,
    device_name,
    inference_grid,
    matmul_ceiling,
    measure_modes_together,
    measure_together,
    model_size_bytes,
    native_bf16,
    resolve_device,
    timing_device,
    timing_plan,
    track_peak_memory,
)
from .models import WHITEN_IMAGES, ModelConfig, build_model, model_args, whiten_first_conv
from .report import METRICS, Result, ResultStore, epoch_costs, new_run_id, results_frame
from .report.checkpoint import checkpoint_metadata, load_checkpoint, save_checkpoint
from .train import (
    FUSED_OPTIMIZERS,
    SINGLE,
    Callback,
    Checkpoint,
    CheckpointError,
    DistillConfig,
    EpochLines,
    Group,
    LaunchError,
    Placement,
    ProgressBar,
    TrainConfig,
    available_cores,
    backend_for,
    check_precision,
    distillation_loss,
    evaluate,
    in_torchrun,
    launch,
    parameter_bytes,
    rank_device,
    resolve_threads,
    start_group,
    thread_count,
    train,
)

# What a reused run takes over from the run that trained the weights: the schema's training metrics, and where.
TRAINING_METRICS = (*(m.name for m in METRICS.values() if m.source == "training"), "train_device", "backend")
NO_FLIP = ("digits", "mnist")  # datasets where a mirrored image means something else (a mirrored 3 is not a 3)
COMPRESSION_LOSS_POINTS = 2.0  # more accuracy lost than this in compression is worth a warning and a fix
_USER = 5  # warnings point at the caller of run/run_many: helper -> _prepare/_time_and_store -> _run_together -> run


@dataclass
class Preflight:
    """What ``preflight`` found: problems stop a run before any work; notes are advice."""

    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def preflight(config: RunConfig, *, store: ResultStore | str | os.PathLike | None = None) -> Preflight:
    """Check ``config`` against this machine before any data is loaded: the devices it names, its
    precision, where each compression step can run, and (with a store) its teacher. The CLI, the
    panel and ``run`` all ask this, so each gives the same one-line answers.

    Example:
        >>> from workbench import RunConfig, HardwareConfig
        >>> preflight(RunConfig(hardware=HardwareConfig(device="cpu", precision="fp16"))).problems
        ["precision 'fp16' needs a CUDA GPU (device is cpu): use 'bf16' or 'fp32' here."]
        >>> preflight(RunConfig().replace(**{"data.augment.flip": True})).notes
        ['flip mirrors digits: a mirrored digit is often another digit or none']
    """
    check = Preflight()
    try:
        device = resolve_device(config.hardware.device)
        check_precision(config.hardware.precision, device)
        timing_device(config.measure.device, device)
    except ValueError as e:
        check.problems.append(str(e))
        return check
    check.problems += [p for p in (step.problem(device) for step in config.compress) if p]
    check.problems += _parallel_problems(config, device)
    if config.hardware.optimizer_impl == "fused" and config.train.optimizer not in FUSED_OPTIMIZERS:
        check.problems.append(
            f"hardware.optimizer_impl='fused' has no kernel for {config.train.optimizer}: use foreach, "
            f"or one of {', '.join(FUSED_OPTIMIZERS)}"
        )
    store = ResultStore.open(store)
    if config.distill.enabled:
        try:
            checkpoint_metadata(_teacher_checkpoint(config.distill.teacher, store))
        except (ValueError, FileNotFoundError) as e:
            check.problems.append(str(e))
    if store is not None and not check.problems:  # last: it creates the store's folders
        problem = store.writable_problem()
        if problem:
            check.problems.append(f"{problem}: pick a store you can write to (--store / store=)")
    d, h = config.data, config.hardware
    if d.selection != "random" and d.fraction == 1:
        check.notes.append(f"selection '{d.selection}' only matters when data fraction < 1")
    if d.augment.flip and d.dataset in NO_FLIP:
        check.notes.append(f"flip mirrors {d.dataset}: a mirrored digit is often another digit or none")
    if h.precision == "bf16" and device.type == "cpu" and not native_bf16(device):
        check.notes.append(
            "bf16 is emulated on this CPU (no AVX-512 BF16 or AMX): expect it several times slower than fp32"
        )
    if h.compile == "auto":
        check.notes.append(
            "compile auto: a short probe times training steps eager and compiled (it compiles once, "
            "about 15 s on a CPU) and compiles only if the run is long enough to pay that back"
        )
    elif h.compile and device.type == "cpu":
        check.notes.append("torch.compile: the first epoch includes compiling, about 15 s on a CPU")
    if h.compile_mode != "default" and not h.compile:
        check.notes.append(f"compile_mode '{h.compile_mode}' applies only with compile on")
    if device.type != "cuda" and (h.cudnn_benchmark or h.tf32 or (h.compile and h.compile_mode == "reduce-overhead")):
        check.notes.append(
            "tf32, cudnn_benchmark and reduce-overhead's CUDA graphs act on a CUDA GPU only: here they change nothing"
        )
    if config.parallel.world_size > 1 and device.type == "cpu":
        per_rank = _rank_threads(config)
        check.notes.append(
            f"{config.parallel.nproc} processes share this machine's {available_cores()} cores "
            f"({per_rank} thread{'s' * (per_rank > 1)} each): "
            "expect the all-reduce, not the arithmetic, to set the pace"
        )
    for step in config.compress:
        if step.keeps_fake_quant():
            check.notes.append(f"{step.label()} keeps the fake-quant model: float math, to study it, not to ship")
        if step.modes and not set(step.modes) & set(config.measure.modes):
            check.notes.append(
                f"{step.kind}'s model runs in {' or '.join(step.modes)} only, which measure.modes lacks: the baseline "
                f"is not timed there, so the ledger has no speed-up to show; add {step.modes[0]} to measure.modes"
            )
    return check


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
    if config.parallel.world_size > 1 and not in_torchrun():
        return _launched(
            config,
            store=store,
            progress=progress,
            resume=resume,
            reuse=reuse,
            start_from=start_from,
            data_root=data_root,
            tags=tags,
            placement=placement,
        )
    results = _run_together(
        [config],
        store=store,
        callbacks=callbacks,
        progress=progress,
        resume=resume,
        reuse=reuse,
        start_from=start_from,
        data_root=data_root,
        tags=tags,
    )
    return results[0] if results else None  # a torchrun rank other than 0 stores nothing


def run_many(configs: Sequence[RunConfig], **kwargs) -> pd.DataFrame:
    """Run each config (keyword arguments as ``run``'s); returns their rows as one DataFrame.

    Every config is checked before any trains. The finished models are timed together, taking turns
    in rounds (``measure_together``), so a busy machine slows them alike and their latencies compare;
    a training that the batch already did is reused, not repeated. Data-parallel configs are launched
    one by one (``run``), after the others.
    """
    configs = list(configs)
    alone = [c for c in configs if c.parallel.world_size == 1]
    rows = _run_together(alone, **kwargs) if alone else []
    rows += [run(c, **kwargs) for c in configs if c.parallel.world_size > 1]
    return results_frame(rows)


@dataclass
class _Prepared:
    """A run trained (or reused), compressed and evaluated, waiting for its timing."""

    config: RunConfig
    run_id: str
    device: torch.device
    dataset: Dataset
    threads: int
    trained: _Trained
    model: torch.nn.Module
    compress_log: list[dict]
    before: dict[str, Any] | None
    evaluated: dict[str, Any]
    slot: _Slot

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


def _run_together(
    configs: list[RunConfig],
    *,
    store: ResultStore | str | os.PathLike | None = "runs",
    callbacks: Sequence[Callback] = (),
    progress: bool = True,
    resume: bool = True,
    reuse: bool = True,
    start_from: str | Result | None = None,
    data_root: str | os.PathLike = "data",
    tags: dict[str, Any] | None = None,
) -> list[Result]:
    for config in configs:
        if not isinstance(config, RunConfig):
            raise TypeError(
                f"run() takes a RunConfig (got {type(config).__name__}): "
                "build one, e.g. RunConfig(model=ModelConfig(...))"
            )
    store = ResultStore.open(store)
    for config in configs:  # every config's problems before any work
        check = preflight(config, store=store)
        if check.problems:
            raise ConfigError(check.problems[0])
    if any(c.parallel.world_size > 1 for c in configs):
        if len(configs) > 1:
            raise ConfigError(
                "a torchrun rank runs one data-parallel config at a time: call run(config) once per config"
            )
        return _run_as_rank(configs[0], store, callbacks, progress, resume, reuse, start_from, data_root, tags)
    prepared: list[_Prepared] = []
    with contextlib.ExitStack() as held:
        try:
            for config in configs:
                prepared.append(
                    _prepare(
                        config,
                        prepared,
                        held,
                        store=store,
                        callbacks=callbacks,
                        progress=progress,
                        resume=resume,
                        reuse=reuse,
                        start_from=start_from,
                        data_root=data_root,
                    )
                )
        except Exception:
            _time_and_store(prepared, store, progress, tags)  # the runs that finished are kept, not lost
            raise
        return _time_and_store(prepared, store, progress, tags)


def _run_as_rank(
    config: RunConfig,
    store: ResultStore | None,
    callbacks: Sequence[Callback],
    progress: bool,
    resume: bool,
    reuse: bool,
    start_from: str | Result | None,
    data_root: str | os.PathLike,
    tags: dict[str, Any] | None,
) -> list[Result]:
    """One rank of a data-parallel launch: every rank trains its shard; rank 0 alone then compresses,
    evaluates, times and stores the row (the others return no rows)."""
    group = start_group(config.parallel, rank_device(resolve_device(config.hardware.device)))
    with contextlib.ExitStack() as held:
        prepared = _prepare(
            config,
            [],
            held,
            store=store,
            callbacks=callbacks,
            progress=progress,
            resume=resume,
            reuse=reuse,
            start_from=start_from,
            data_root=data_root,
            group=group,
        )
        return [] if prepared is None else _time_and_store([prepared], store, progress, tags)


def _launched(
    config: RunConfig,
    *,
    store: ResultStore | str | os.PathLike | None,
    progress: bool,
    resume: bool,
    reuse: bool,
    start_from: str | Result | None,
    data_root: str | os.PathLike,
    tags: dict[str, Any] | None,
    placement: Placement | None,
) -> Result | None:
    """``config`` run by ``parallel.nproc`` processes on this machine through torchrun; rank 0's row.

    The ranks read the job from a file in the launch folder and rank 0 leaves the run id there; on a
    machine other than node 0 there is no row here (None)."""
    store = ResultStore.open(store)
    if store is None:
        raise ConfigError("a data-parallel run hands its row back through a result store: pass store='runs' (--store)")
    check = preflight(config, store=store)
    if check.problems:
        raise ConfigError(check.problems[0])
    p = config.parallel
    placement = placement or Placement(nproc_per_node=p.nproc, nnodes=p.nnodes)
    if (placement.nproc_per_node, placement.nnodes) != (p.nproc, p.nnodes):
        raise ConfigError(
            f"the placement ({placement.nproc_per_node} per machine x {placement.nnodes}) and the config "
            f"(parallel.nproc={p.nproc} x parallel.nnodes={p.nnodes}) must agree"
        )
    with tempfile.TemporaryDirectory(prefix="workbench-launch-") as folder:
        job = {
            "config": config.to_dict(),
            "store": str(store.root),
            "progress": progress,
            "resume": resume,
            "reuse": reuse,
            "start_from": start_from.run_id if isinstance(start_from, Result) else start_from,
            "data_root": str(data_root),
            "tags": tags,
        }
        (Path(folder) / "job.json").write_text(json.dumps(job, default=str))
        try:
            launch(
                ["-m", "workbench.distributed", "--job", str(Path(folder) / "job.json")],
                placement,
                threads_per_rank=_rank_threads(config),
                echo=progress,
                launch_dir=folder,
            )
        except LaunchError as e:
            raise LaunchError(
                f"the {p.world_size}-process run failed, {e}; nothing was stored, and running it again "
                "resumes from its last finished epoch"
            ) from None
        if placement.node_rank != 0:
            return None
        run_id = json.loads((Path(folder) / "result.json").read_text())["run_id"]
    return store.get(run_id)


def _rank_threads(config: RunConfig) -> int:
    """CPU threads per rank: as set, or this machine's cores shared out among its ranks."""
    setting = config.hardware.threads
    return setting if isinstance(setting, int) else max(1, available_cores() // config.parallel.nproc)


# Ranks a CPU core may carry: past this each rank holds a whole copy of the model and data for a sliver
# of a core, and a typo (--nproc 200) would fork hundreds of torch processes.
MAX_RANKS_PER_CORE = 4


def _parallel_problems(config: RunConfig, device: torch.device) -> list[str]:
    """What stops a data-parallel config before any process starts."""
    p, bs = config.parallel, config.train.batch_size
    if p.world_size == 1:
        return []
    problems = []
    if bs % p.world_size:
        problems.append(
            f"train.batch_size={bs} (the global batch) does not split evenly over {p.world_size} processes: "
            f"use a multiple of {p.world_size}, e.g. {max(bs - bs % p.world_size, p.world_size)}"
        )
    elif config.model.batchnorm and bs // p.world_size < 2:
        problems.append(
            f"train.batch_size={bs} gives each of {p.world_size} processes {bs // p.world_size} example per "
            f"step and BatchNorm needs 2: use at least {2 * p.world_size}"
        )
    if config.hardware.compile == "auto":
        problems.append("hardware.compile='auto' times one process alone: choose true or false for a data-parallel run")
    if config.train.optimizer == "muon" and p.strategy == "fsdp":
        problems.append("train.optimizer=muon needs whole weight matrices and FSDP shards them: use --parallel ddp")
    if device.type == "mps":
        problems.append("data-parallel training runs on CPUs (gloo) or CUDA GPUs (nccl), not mps: use --device cpu")
    elif backend_for(p, device) == "nccl" and device.type != "cuda":
        problems.append(
            f"parallel.backend='nccl' moves CUDA tensors, and this run trains on the {device.type}: use gloo or auto"
        )
    elif device.type == "cpu" and p.nproc > MAX_RANKS_PER_CORE * available_cores():
        problems.append(
            f"parallel.nproc={p.nproc} starts {p.nproc} processes on this machine's {available_cores()} cores: "
            f"each rank needs a share of a core, so use --nproc {MAX_RANKS_PER_CORE * available_cores()} or fewer"
        )
    elif device.type == "cuda" and p.nproc > torch.cuda.device_count():
        problems.append(
            f"parallel.nproc={p.nproc} needs a GPU per process and this machine has {torch.cuda.device_count()}: "
            f"use --nproc {torch.cuda.device_count()}"
        )
    return problems


def _prepare(
    config: RunConfig,
    batch: list[_Prepared],
    held: contextlib.ExitStack,
    *,
    store: ResultStore | None,
    callbacks: Sequence[Callback],
    progress: bool,
    resume: bool,
    reuse: bool,
    start_from: str | Result | None,
    data_root: str | os.PathLike,
    group: Group = SINGLE,
) -> _Prepared | None:
    """The run trained and compressed, ready to time; None on a data-parallel rank other than 0 (it only trains)."""
    device = rank_device(resolve_device(config.hardware.device))
    # Rank 0 decides, so every rank trains (or none does) and resumes from the same file.
    source = group.from_main(_training_to_reuse(config, store, device, reuse, start_from) if group.main else None)
    if source is None and reuse and store is not None:  # trained earlier in this batch, not stored yet
        source = next(
            (
                p.as_source()
                for p in batch
                if p.trained.checkpoint
                and p.device.type == device.type
                and p.config.training_hash() == config.training_hash()
            ),
            None,
        )
    dataset = load_dataset(config.data.dataset, root=data_root)
    _check_sizes(config, dataset)
    run_id = group.from_main(new_run_id())
    threads = _rank_threads(config) if group.world_size > 1 else resolve_threads(config.hardware.threads)
    with thread_count(threads):
        if source is None:
            slot = held.enter_context(_training_slot(store, config, run_id, resume)) if group.main else None
            slot = group.from_main(slot)
            trained = _train(config, dataset, device, store, run_id, callbacks, progress, slot, group)
        else:
            group.finish()
            slot = _Slot()
            trained = _reuse(config, source, device, progress) if group.main else None
        if trained is None:
            return None
        model, compress_log, before = _compress(config, trained, dataset, device, progress)
        start = time.perf_counter()
        evaluated = evaluate(
            model,
            eval_loader(dataset, config.data, device=device),
            device=device,
            precision=config.hardware.precision,
            tta=config.evaluation,
        )
        evaluated["eval_seconds"] = time.perf_counter() - start  # evaluate reads its answers back: the device is done
    return _Prepared(config, run_id, device, dataset, threads, trained, model, compress_log, before, evaluated, slot)


def _time_and_store(
    batch: list[_Prepared], store: ResultStore | None, progress: bool, tags: dict[str, Any] | None = None
) -> list[Result]:
    """Time the batch's models, those with the same timing settings together, then store each row."""
    groups: dict[tuple, list[int]] = {}
    for i, p in enumerate(batch):
        where = timing_device(p.config.measure.device, p.device)
        groups.setdefault((str(where), p.config.measure, p.threads, _chw(p.dataset)), []).append(i)
    timed: dict[int, tuple[dict[str, Any], list[dict]]] = {}
    for (where, cfg, threads, chw), members in groups.items():
        models = [batch[i].model for i in members]
        if progress and len(models) > 1:
            tqdm.write(
                f"timing {len(models)} models together, taking turns so a busy machine slows them alike "
                f"({', '.join(cfg.modes)}; batch sizes {', '.join(map(str, cfg.batch_sizes))}; {threads} threads)"
            )
        with thread_count(threads):
            ceilings = {d: matmul_ceiling(d) for d in {where, *(str(batch[i].device) for i in members)}}
            measured = measure_together(models, chw, cfg, where)
            for other, modes in timing_plan(cfg, torch.device(where)):
                more = measure_modes_together(
                    models,
                    chw,
                    modes=modes,
                    batch_sizes=cfg.batch_sizes,
                    device=other,
                    warmup=cfg.warmup,
                    iters=cfg.iters,
                    progress=progress,
                )
                measured = [(metrics, records + extra) for (metrics, records), extra in zip(measured, more)]
        for i, (metrics, _) in zip(members, measured):
            metrics.update(_achieved(metrics, batch[i], ceilings[where], ceilings[str(batch[i].device)]))
        timed.update(zip(members, measured))
    results = []
    for i, p in enumerate(batch):
        metrics, records = timed[i]
        metrics = {**p.evaluated, **metrics}
        if p.before is not None:
            if metrics["flops"] == 0:
                # FlopCounterMode does not see quantized kernels; the arithmetic is the float model's.
                metrics["flops"] = p.before["flops"]
                metrics["flops_note"] = "counted on the float model: FlopCounterMode cannot see quantized ops"
            metrics["before_compression"] = p.before
            _warn_about_lost_accuracy(p.config, p.before["accuracy"], metrics["accuracy"])
        elif p.trained.metrics.get("train_eval_accuracy") is not None:  # rows stored before it was recorded lack it
            metrics["generalization_gap"] = p.trained.metrics["train_eval_accuracy"] - metrics["accuracy"]
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
            tags=dict(tags or {}),
        )
        if p.compress_log:
            result.metrics["compress_log"] = p.compress_log
        if store is not None:
            _store(result, p.model, p.dataset, store, p.device)
        p.slot.finished()
        results.append(result)
    return results


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
    rows = []
    for seed in seeds:
        for with_teacher in (False, True):
            cfg = student.replace(
                **{
                    "train.seed": seed,
                    "distill": DistillConfig(
                        teacher=teacher if with_teacher else "", alpha=alpha, temperature=temperature
                    ),
                    "name": f"{student.label()} {'distilled' if with_teacher else 'alone'}",
                }
            )
            rows.append(run(cfg, **kwargs))
    df = results_frame(rows)
    df["with_teacher"] = df["distill.teacher"].astype(bool)
    return df


def distill_summary(df: pd.DataFrame) -> pd.DataFrame:
    """Mean and spread of accuracy with and without the teacher, and the gain."""
    table = df.groupby("with_teacher")["accuracy"].agg(["mean", "std", "count"])
    table.index = table.index.map({False: "student alone", True: "distilled"})
    return table


def load_model(run: str | Result, *, store: ResultStore | str | os.PathLike = "runs") -> torch.nn.Module:
    """The model a stored run ended with, as saved (compressed if it was), on the CPU in eval mode.

    Example:
        >>> load_model("no-such-run", store="/nonexistent")
        Traceback (most recent call last):
        ...
        KeyError: "No result 'no-such-run' in /nonexistent/results. Latest ids: none."
    """
    result = run if isinstance(run, Result) else ResultStore.open(store).get(run)
    if not result.checkpoint:
        raise ValueError(
            f"Run '{result.run_id}' saved no model ({result.metrics.get('checkpoint_note', 'run it with a store')})."
        )
    return load_checkpoint(result.checkpoint)[0]


def inference_sweep(
    model_or_run: torch.nn.Module | str | Result,
    *,
    store: ResultStore | str | os.PathLike = "runs",
    input_shape: Sequence[int] | None = None,
    **grid: Any,
) -> pd.DataFrame:
    """Latency and throughput per batch size x precision x mode (``measure.inference_grid``; ``grid``
    takes its keywords: batch_sizes, precisions, modes, device, channels_last, warmup, iters) for a
    module (give ``input_shape``, C, H, W) or a stored run's saved model (its input shape is in the
    checkpoint). Chart it with ``charts.inference_sweep_chart``.

    Example:
        >>> df = inference_sweep(torch.nn.Linear(8, 2), input_shape=(8,), batch_sizes=(1,), precisions=("fp32",),
        ...                      modes=("eager",), device="cpu", warmup=1, iters=3)
        >>> df[["precision", "mode", "batch_size"]].values.tolist()
        [['fp32', 'eager', 1]]
    """
    if isinstance(model_or_run, torch.nn.Module):
        if input_shape is None:
            raise ValueError("inference_sweep(model) needs input_shape=(C, H, W); a stored run knows its own")
        return inference_grid(model_or_run, input_shape, **grid)
    result = model_or_run if isinstance(model_or_run, Result) else ResultStore.open(store).get(model_or_run)
    model = load_model(result)  # says in one line when the run saved no model
    args = checkpoint_metadata(result.checkpoint)["model_args"]
    chw = (args["in_channels"], args["image_size"], args["image_size"])
    df = inference_grid(model, chw if input_shape is None else input_shape, **grid)
    df.insert(0, "run", result.config.name or result.run_id)
    return df


PHASES = ("data", "forward", "backward", "optimizer")


def profile(
    config: RunConfig, *, steps: int = 20, warmup: int = 5, data_root: str | os.PathLike = "data"
) -> pd.DataFrame:
    """Where a training step's time goes: ``warmup`` then ``steps`` real steps of ``config``'s training
    (the trainer's own loop, with its precision, layout and compile settings) under ``torch.profiler``.

    One row per phase (data, forward, backward, optimizer, and the rest of the step: Python overhead,
    launch gaps, idle device) with milliseconds per step and its share of the step's wall time. On a
    GPU a phase's time is the device time of the kernels it launched, so the rest is the GPU idle.
    ``df.attrs["bottleneck"]`` is one sentence naming the largest cost and the switch most likely to
    help; ``charts.profile_chart`` draws it.

    Example:
        >>> from workbench import ModelConfig
        >>> df = profile(RunConfig(model=ModelConfig(name="mlp")), steps=3, warmup=1)
        >>> df["phase"].tolist(), round(float(df["share"].sum()), 6)
        (['data', 'forward', 'backward', 'optimizer', 'other (overhead, gaps, idle)'], 1.0)
    """
    if steps < 1 or warmup < 0:
        raise ConfigError(f"profile needs steps >= 1 and warmup >= 0 (got steps={steps}, warmup={warmup})")
    check = preflight(config)
    if check.problems:
        raise ConfigError(check.problems[0])
    device = resolve_device(config.hardware.device)
    dataset = load_dataset(config.data.dataset, root=data_root)
    indices = training_subset(config, dataset, device)
    batches = train_loader(
        dataset, config.data, config.train.batch_size, seed=config.train.seed, device=device, indices=indices
    )
    model = initial_model(config, dataset, device, indices)
    cuda = device.type == "cuda"
    activities = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if cuda else [])
    clock = _StepClock(warmup, steps, device)
    epochs = -(-(warmup + steps) // len(batches))
    # Only the steps after the warm-up are recorded (the first ones pay for compiling and allocating).
    schedule = torch.profiler.schedule(wait=max(warmup - 1, 0), warmup=min(warmup, 1), active=steps, repeat=1)
    with (
        thread_count(resolve_threads(config.hardware.threads)) as threads,
        torch.profiler.profile(activities=activities, schedule=schedule) as prof,
    ):
        clock.profiler = prof
        train(
            model,
            batches,
            dataclasses.replace(config.train, epochs=epochs),
            hardware=config.hardware,
            device=device,
            callbacks=[clock],
        )
    if clock.timed < steps:
        raise RuntimeError(f"profile: only {clock.timed} of {steps} steps ran")
    events = {e.key: e for e in prof.key_averages() if e.key in PHASES}
    step_ms = 1e3 * clock.seconds / steps
    ms = {
        p: (
            getattr(events[p], "device_time_total" if cuda else "cpu_time_total", 0.0) / 1e3 / steps
            if p in events
            else 0.0
        )
        for p in PHASES
    }
    if sum(ms.values()) > step_ms:  # the profiler's own cost can push the phases past the clock: keep the proportions
        ms = {p: v * step_ms / sum(ms.values()) for p, v in ms.items()}
    rest = max(0.0, step_ms - sum(ms.values()))
    df = pd.DataFrame({"phase": [*PHASES, "other (overhead, gaps, idle)"], "ms_per_step": [*ms.values(), rest]})
    df["share"] = df["ms_per_step"] / df["ms_per_step"].sum()
    df.attrs.update(
        device=str(device),
        device_name=device_name(device),
        steps=steps,
        batch_size=config.train.batch_size,
        step_ms=step_ms,
        threads=threads,
        torch_version=torch.__version__,
        bottleneck=_bottleneck(df.set_index("phase")["share"], cuda),
    )
    return df


class _StepClock(Callback):
    """Wall time of the steps after the warm-up (the device synchronised at each step's end), stepping the
    profiler, and halting the trainer once the steps are in."""

    def __init__(self, warmup: int, steps: int, device: torch.device):
        self.warmup, self.steps, self.device = warmup, steps, device
        self.seen, self.timed, self.seconds, self.mark, self.profiler = 0, 0, 0.0, None, None

    def on_train_start(self, state):
        self.mark = time.perf_counter() if self.warmup == 0 else None

    def on_batch_end(self, state):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        now = time.perf_counter()
        self.seen += 1
        if self.seen > self.warmup:
            self.seconds += now - self.mark
            self.timed += 1
        self.mark = now
        self.profiler.step()
        if self.seen >= self.warmup + self.steps:
            state.halt = True


def _bottleneck(share: pd.Series, cuda: bool) -> str:
    rest = share["other (overhead, gaps, idle)"]
    compute = share["forward"] + share["backward"]
    if share["data"] >= max(0.3, compute):
        return (
            f"data loading: {share['data']:.0%} of the step goes to getting the batch; keep the data on the device "
            "(the GPU-resident loader) or do less augmentation per step"
        )
    if rest >= 0.4:
        where = "launch gaps and an idle GPU" if cuda else "Python and framework overhead between the operations"
        return f"per-step overhead: {rest:.0%} of the step is {where}; try a larger batch, torch.compile" + (
            " or CUDA graphs" if cuda else ""
        )
    if share["optimizer"] >= 0.25:
        return f"the optimizer: {share['optimizer']:.0%} of the step is the update; try a fused or foreach optimizer"
    return (
        f"compute: {compute:.0%} of the step is forward and backward; try mixed precision (bf16), channels-last, "
        "torch.compile or a smaller model"
    )


def evaluator(
    config: RunConfig, *, data_root: str | os.PathLike = "data", device: str | torch.device | None = None
) -> Callable[[torch.nn.Module], float]:
    """A function ``model -> test accuracy`` on ``config``'s test split, normalised as it trains (the
    data is loaded once): what ``sensitivity`` and hand-made checks need.

    Example:
        >>> from workbench import RunConfig, create_model
        >>> accuracy = evaluator(RunConfig())
        >>> 0 <= accuracy(create_model("mlp", 10, 1, 8)) <= 1
        True
    """
    dataset = load_dataset(config.data.dataset, root=data_root)
    where = resolve_device(device or config.hardware.device)
    batches = eval_loader(dataset, config.data, device=where)
    return lambda model: evaluate(model.to(where) if _movable(model) else model, batches, device=where)["accuracy"]


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
    model, _ = load_checkpoint(_teacher_checkpoint(str(ref), ResultStore.open(store)))
    return model.eval()


# ---------------------------------------------------------------------------------------------
# The phases of run()


@dataclass
class _Trained:
    model: torch.nn.Module
    history: list[dict[str, Any]]
    metrics: dict[str, Any]
    status: str = "ok"
    checkpoint: str | None = None  # the float weights right after training
    reused_from: str | None = None
    indices: torch.Tensor | None = None  # the training examples chosen (None: not chosen here)


def _training_to_reuse(
    config: RunConfig, store: ResultStore | None, device: torch.device, reuse: bool, start_from: str | Result | None
) -> Result | None:
    if start_from is not None:
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
    return store.trained_like(config, device) if reuse and store is not None else None


def initial_model(
    config: RunConfig, dataset: Dataset, device: str | torch.device = "cpu", indices: torch.Tensor | None = None
) -> torch.nn.Module:
    """The untrained model of ``config``: built from ``train.seed``, and with ``model.init=whiten`` its first
    conv set from the patches of the first ``WHITEN_IMAGES`` training images (of ``indices``), normalised as
    training sees them.

    Example:
        >>> config = RunConfig(model=ModelConfig(name="speedcnn", width=0.25, init="whiten"))
        >>> net = initial_model(config, load_dataset("digits"))
        >>> torch.equal(net.stem[0].weight[0], -net.stem[0].weight[1])
        True
    """
    model = build_model(config.model, dataset.num_classes, _chw(dataset), seed=config.train.seed)
    if config.model.init == "whiten":
        images = next(
            iter(
                eval_loader(
                    dataset, config.data, device=device, split="train", indices=indices, batch_size=WHITEN_IMAGES
                )
            )
        )[0]
        whiten_first_conv(model, images)
    return model


def _train(
    config: RunConfig,
    dataset: Dataset,
    device: torch.device,
    store: ResultStore | None,
    run_id: str,
    callbacks: Sequence[Callback],
    progress: bool,
    slot: _Slot,
    group: Group = SINGLE,
) -> _Trained | None:
    indices = training_subset(config, dataset, device)
    batches = train_loader(
        dataset,
        config.data,
        config.train.batch_size,
        seed=config.train.seed,
        device=device,
        indices=indices,
        shard=(group.rank, group.world_size),
    )
    criterion = None
    if config.distill.enabled:
        teacher = load_teacher(config.distill.teacher, store=store).to(device)
        criterion = distillation_loss(
            teacher,
            alpha=config.distill.alpha,
            temperature=config.distill.temperature,
            label_smoothing=config.train.label_smoothing,
        )
    # A rank's output reaches the launching process through a pipe: lines per epoch, not a redrawn bar.
    bar = ProgressBar(desc=config.label()) if group.world_size == 1 else EpochLines(config.label())
    hooks = list(callbacks) + ([bar] if progress and group.main else [])
    if slot.path is not None:
        hooks.append(Checkpoint(slot.path))
    if slot.note and group.main:
        warnings.warn(slot.note, stacklevel=_USER)

    def fresh() -> torch.nn.Module:
        return initial_model(config, dataset, device, indices)

    def attempt(resume_from: str | None):
        model = fresh()
        with track_peak_memory(device) as memory:
            outcome = train(
                model,
                batches,
                config.train,
                eval_loader=eval_loader(dataset, config.data, device=device),
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
            warnings.warn(f"{e}: set it aside as {aside.name} and trained from the first epoch", stacklevel=_USER)
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
    group.finish()
    if not group.main:
        return None
    if outcome.status != "ok":
        warnings.warn(f"Training stopped early: {outcome.status}", stacklevel=_USER)
    last = outcome.history[-1] if outcome.history else {}
    # The running train accuracy comes from augmented batches with dropout on; the generalisation gap
    # needs the model as it is used: eval mode, on the training examples as they are.
    seen = evaluate(
        model,
        eval_loader(dataset, config.data, device=device, split="train", indices=indices),
        device=device,
        precision=config.hardware.precision,
    )
    metrics = {
        "train_accuracy": last.get("train_accuracy"),
        "train_eval_accuracy": seen["accuracy"],
        "train_loss": last.get("train_loss"),
        "train_seconds": outcome.seconds,
        **epoch_costs(outcome.history),
        # Every rank's images over the slowest rank's time: the whole launch's speed.
        "train_ips": sum(r["images"] for r in ranks) / max(r["seconds"] for r in ranks) if outcome.seconds else None,
        "train_device": str(device),
        "peak_memory_bytes": memory.peak_bytes,
        "epochs_run": len(outcome.history),
        "resumed_epochs": outcome.resumed_epochs,
        "train_examples": len(indices),
        "steps_per_epoch": len(batches),
    }
    if group.world_size > 1:
        metrics.update(
            world_size=group.world_size,
            backend=group.backend,
            rank_images_per_s=[r["images"] / r["seconds"] if r["seconds"] else None for r in ranks],
            rank_parameter_bytes=[r["parameter_bytes"] for r in ranks],
            rank_peak_memory_bytes=[r["peak_memory_bytes"] for r in ranks],
        )
    if outcome.compile_decision:
        decision = outcome.compile_decision
        metrics.update(
            compiled=decision.compile, compile_reason=decision.reason, compile_probe_seconds=decision.probe_s
        )
    checkpoint = None
    if store is not None:
        path = store.checkpoint_path(run_id if not config.compress else f"{run_id}-trained")
        checkpoint = str(save_checkpoint(path, model, config, _model_args(config, dataset))[0])
    return _Trained(
        model,
        outcome.history,
        metrics,
        status="ok" if outcome.status == "ok" else outcome.status.split(":")[0],
        checkpoint=checkpoint,
        indices=indices,
    )


def _reuse(config: RunConfig, source: Result, device: torch.device, progress: bool) -> _Trained:
    origin = source.reused_from or source.run_id
    if progress:
        trainer = source.config.label()
        tqdm.write(
            f"{config.label()}: reusing the training of run {origin} ({trainer}: same data, "
            "model, train, hardware, parallel and distill settings); reuse=False trains again"
        )
    model, _ = load_checkpoint(source.trained_checkpoint)
    metrics = {k: source.metrics[k] for k in TRAINING_METRICS if k in source.metrics}
    return _Trained(
        model.to(device), list(source.history), metrics, checkpoint=source.trained_checkpoint, reused_from=origin
    )


def _compress(
    config: RunConfig, trained: _Trained, dataset: Dataset, device: torch.device, progress: bool
) -> tuple[torch.nn.Module, list[dict], dict[str, Any] | None]:
    """The compressed model, what the steps logged, and the float model's numbers before them."""
    model = trained.model
    if not config.compress:
        return model, [], None
    indices = trained.indices if trained.indices is not None else training_subset(config, dataset, device)
    test = eval_loader(dataset, config.data, device=device)
    log: list[dict] = []
    ctx = CompressContext(
        example_input=next(iter(test))[0][:8].clone(),
        log=log,
        device=device,
        train=config.train,
        hardware=config.hardware,
        train_loader=train_loader(
            dataset, config.data, config.train.batch_size, seed=config.train.seed, device=device, indices=indices
        ),
        eval_loader=test,
        progress=progress,
    )
    before = {
        **count_parameters(model),
        "size_bytes": model_size_bytes(model),
        "flops": count_flops(model, (1, *_chw(dataset))),
        "accuracy": evaluate(model, test, device=device, precision=config.hardware.precision)["accuracy"],
    }
    torch.manual_seed(config.train.seed)  # fine-tuning draws dropout from here: a reused training compresses alike
    for step in config.compress:
        model = apply_step(model, step, ctx)
    return model, log, before


def _store(result: Result, model: torch.nn.Module, dataset: Dataset, store: ResultStore, device: torch.device) -> None:
    config = result.config
    if not config.compress:  # the model is the trained one, already saved
        result.checkpoint, result.checkpoint_format = result.trained_checkpoint, "state_dict"
    else:
        example = next(iter(eval_loader(dataset, config.data, device=device)))[0][:8]
        try:
            path, result.checkpoint_format = save_checkpoint(
                store.checkpoint_path(result.run_id),
                model,
                config,
                _model_args(config, dataset),
                example_inputs=example,
            )
            result.checkpoint = str(path)
        except ValueError as e:  # a fake-quant model has no deployable form
            result.metrics["checkpoint_note"] = str(e)
    store.append(result)


# ---------------------------------------------------------------------------------------------
# Helpers


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
        recipe = TrainConfig(epochs=2, optimizer="adam", lr=1e-3, seed=config.train.seed)
        proxy = build_model(ModelConfig(name="mlp"), dataset.num_classes, _chw(dataset), seed=recipe.seed).to(device)
        train(
            proxy, train_loader(dataset, d, recipe.batch_size, seed=recipe.seed, device=device), recipe, device=device
        )
        scores = per_example_loss(
            proxy, dataset.train_x, dataset.train_y, mean=dataset.mean, std=dataset.std, device=device
        )
    return select_subset(dataset.train_y, d.fraction, d.selection, seed=config.train.seed, scores=scores)


def _achieved(metrics: dict[str, Any], p: _Prepared, inference_ceiling: dict, train_ceiling: dict) -> dict[str, Any]:
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
        out["train_tflops"] = achieved((p.before or metrics)["flops"], train_ips, training=True)
        out["train_ceiling_tflops"] = train_ceiling["tflops"]
        out["train_ceiling_share"] = out["train_tflops"] / train_ceiling["tflops"]
    return out


def _warn_about_lost_accuracy(config: RunConfig, before: float, after: float) -> None:
    """Say so when compression cost more accuracy than ``COMPRESSION_LOSS_POINTS``, with the likely fix
    (the ``advice`` of the first step that gives one)."""
    lost = 100 * (before - after)
    if lost <= COMPRESSION_LOSS_POINTS:
        return
    # The first step with advice speaks: the earliest lossy step is the likeliest cause.
    fix = next((s.advice for s in config.compress if s.advice), "fine-tune after compressing (finetune:epochs=5)")
    warnings.warn(
        f"compression cost {lost:.1f} accuracy points ({100 * before:.1f}% -> {100 * after:.1f}%): {fix}",
        stacklevel=_USER,
    )


def _check_sizes(config: RunConfig, dataset: Dataset) -> None:
    """What preflight cannot know before the data is loaded: the batch size against the training set."""
    n = subset_size(len(dataset.train_y), config.data.fraction)
    bs = config.train.batch_size
    if bs > n:
        raise ConfigError(
            f"train.batch_size={bs} is more than the {n:,} training examples of {config.data.dataset} "
            f"(data.fraction={config.data.fraction}): use at most {n}"
        )
    if n < 2 and config.model.batchnorm:
        raise ConfigError(
            f"{n} training example is too few for BatchNorm: raise data.fraction or set model.batchnorm=False"
        )


def _teacher_checkpoint(ref: str, store: ResultStore | None) -> str:
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
class _Slot:
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
def _training_slot(store: ResultStore | None, config: RunConfig, run_id: str, resume: bool) -> Iterator[_Slot]:
    """The in-progress checkpoint this run trains into, held under a lock for the whole run.

    Runs of the same training settings share one in-progress checkpoint, so an interrupted run
    resumes where it stopped. While another live process holds it, this run trains on its own into
    a private checkpoint: it never resumes from, or writes to, a file another process is writing.
    """
    if store is None:
        yield _Slot()
        return
    shared = store.root.resolve() / "checkpoints" / f"in-progress-{config.training_hash()}.pt"
    with try_lock(shared.with_suffix(".lock")) as ours:
        if ours:
            yield _Slot(shared, str(shared) if resume and shared.exists() else None)
            return
        private = shared.with_name(f"{shared.stem}-{run_id}.pt")
        try:
            yield _Slot(
                private,
                None,
                "another live run is training the same settings in this store: "
                "this one trains on its own instead of sharing its checkpoint",
            )
        finally:
            private.unlink(missing_ok=True)  # nobody could find it to resume from


def _chw(dataset: Dataset) -> tuple[int, ...]:
    return tuple(dataset.train_x.shape[1:])


def _model_args(config: RunConfig, dataset: Dataset) -> dict[str, Any]:
    return model_args(config.model, dataset.num_classes, _chw(dataset))


def _movable(model: torch.nn.Module) -> bool:
    """Whether ``.to(device)`` is safe: a pt2e int8 program lives on the CPU and stays there."""
    return not isinstance(model, torch.fx.GraphModule)
