"""Preflight: what stops a config before any work (problems), and what is worth knowing first (notes).

The CLI, the panel and ``run`` all ask ``preflight``, so each gives the same one-line answers;
The checks that must wait for the data are the task's (``Task.check_sizes``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from .._errors import ConfigError
from ..config import RunConfig
from ..measure import native_bf16, resolve_device, timing_device
from ..report import ResultStore
from ..report.checkpoint import checkpoint_metadata
from ..tasks import task_of
from ..train import FUSED_OPTIMIZERS, available_cores, check_precision
from .launch import parallel_problems, rank_threads
from .training import teacher_checkpoint

NO_FLIP = ("digits", "mnist")  # datasets where a mirrored image means something else (a mirrored 3 is not a 3)


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
    check.problems += _problems(config, device, ResultStore.open(store))
    check.notes += _notes(config, device)
    return check


def require_ready(configs: Sequence[RunConfig], store: ResultStore | None) -> None:
    """Every config's first problem as a ``ConfigError``, before any of them does any work."""
    for config in configs:
        check = preflight(config, store=store)
        if check.problems:
            raise ConfigError(check.problems[0])


def _problems(config: RunConfig, device: torch.device, store: ResultStore | None) -> list[str]:
    problems = [p for p in (step.problem(device) for step in config.compress) if p]
    problems += parallel_problems(config, device)
    if config.hardware.optimizer_impl == "fused" and config.train.optimizer not in FUSED_OPTIMIZERS:
        problems.append(
            f"hardware.optimizer_impl='fused' has no kernel for {config.train.optimizer}: use foreach, "
            f"or one of {', '.join(FUSED_OPTIMIZERS)}"
        )
    if config.distill.enabled:
        try:
            teacher = checkpoint_metadata(teacher_checkpoint(config.distill.teacher, store))
            problems += [p for p in [task_of(config).teacher_problem(config, teacher)] if p]
        except (ValueError, FileNotFoundError) as e:
            problems.append(str(e))
    if config.train.init_from:
        try:
            start = checkpoint_metadata(teacher_checkpoint(config.train.init_from, store))
            problems += [p for p in [task_of(config).init_problem(config, start)] if p]
        except (ValueError, FileNotFoundError) as e:
            problems.append(f"train.init_from: {e}")
    if store is not None and not problems:  # last: it creates the store's folders
        problem = store.writable_problem()
        if problem:
            problems.append(f"{problem}: pick a store you can write to (--store / store=)")
    return problems


def _notes(config: RunConfig, device: torch.device) -> list[str]:
    notes = _data_notes(config) + _hardware_notes(config, device)
    for step in config.compress:
        if step.keeps_fake_quant():
            notes.append(f"{step.label()} keeps the fake-quant model: float math, to study it, not to ship")
        if step.modes and not set(step.modes) & set(config.measure.modes):
            notes.append(
                f"{step.kind}'s model runs in {' or '.join(step.modes)} only, which measure.modes lacks: the baseline "
                f"is not timed there, so the ledger has no speed-up to show; add {step.modes[0]} to measure.modes"
            )
    return notes


def _data_notes(config: RunConfig) -> list[str]:
    d, notes = config.data, []
    if d.selection != "random" and d.fraction == 1:
        notes.append(f"selection '{d.selection}' only matters when data fraction < 1")
    if d.augment.flip and d.dataset in NO_FLIP:
        notes.append(f"flip mirrors {d.dataset}: a mirrored digit is often another digit or none")
    return notes


def _hardware_notes(config: RunConfig, device: torch.device) -> list[str]:
    h, notes = config.hardware, []
    if h.precision == "bf16" and device.type == "cpu" and not native_bf16(device):
        notes.append("bf16 is emulated on this CPU (no AVX-512 BF16 or AMX): expect it several times slower than fp32")
    if h.compile == "auto":
        notes.append(
            "compile auto: a short probe times training steps eager and compiled (it compiles once, "
            "about 15 s on a CPU) and compiles only if the run is long enough to pay that back"
        )
    elif h.compile and device.type == "cpu":
        notes.append("torch.compile: the first epoch includes compiling, about 15 s on a CPU")
    if h.compile_mode != "default" and not h.compile:
        notes.append(f"compile_mode '{h.compile_mode}' applies only with compile on")
    if device.type != "cuda" and (h.cudnn_benchmark or h.tf32 or (h.compile and h.compile_mode == "reduce-overhead")):
        notes.append(
            "tf32, cudnn_benchmark and reduce-overhead's CUDA graphs act on a CUDA GPU only: here they change nothing"
        )
    if config.parallel.world_size > 1 and device.type == "cpu":
        per_rank = rank_threads(config)
        notes.append(
            f"{config.parallel.nproc} processes share this machine's {available_cores()} cores "
            f"({per_rank} thread{'s' * (per_rank > 1)} each): "
            "expect the all-reduce, not the arithmetic, to set the pace"
        )
    return notes
