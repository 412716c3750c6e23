"""``profile(config)``: where a training step's time goes, phase by phase, and the one switch most likely to help."""

from __future__ import annotations

import dataclasses
import os
import time

import pandas as pd
import torch

from .._errors import ConfigError
from ..config import RunConfig
from ..measure import device_name, resolve_device
from ..tasks import task_of
from ..train import Callback, resolve_threads, thread_count, train
from .checks import require_ready

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
    require_ready([config], store=None)
    device = resolve_device(config.hardware.device)
    task = task_of(config)
    dataset = task.load(config, data_root)
    indices = task.training_subset(config, dataset, device)
    batches = task.train_batches(config, dataset, device, indices)
    model = task.initial_model(config, dataset, device, indices)
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
