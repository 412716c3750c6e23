"""``hardware.compile="auto"``: time a few real training steps eager and compiled, and compile only
where the steps saved over the run's length outweigh the compile itself.

A compile costs seconds to minutes up front (about 15 s for a small CNN on a CPU, 28 s for a ResNet-18
on an H100) and saves a share of every later step; a short run can end slower overall. The probe
measures both on the run's own model, batch, precision and layout instead of guessing.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

PROBE_STEPS = 5  # timed forward+backward passes per variant, after one warm-up (eager) or the compile


@dataclass(frozen=True)
class CompileDecision:
    compile: bool
    reason: str  # one sentence with the measured numbers, recorded in the result
    eager_step_s: float
    compiled_step_s: float
    compile_s: float  # the first compiled call beyond a steady compiled step
    probe_s: float  # all the probe took, compile included: spent whichever way it decides


def probe_compile(
    model: torch.nn.Module,
    batch: tuple[torch.Tensor, torch.Tensor],
    forward,
    *,
    steps_left: int,
    precision_context,
    memory_format=torch.contiguous_format,
    steps: int = PROBE_STEPS,
) -> CompileDecision:
    """Time ``steps`` forward+backward passes of ``model`` eager and through ``forward`` (its compiled
    wrapper) on ``batch``; decide whether compiling pays over ``steps_left`` optimizer steps.

    The weights, buffers (BatchNorm statistics), gradients and random state are restored afterwards:
    the probe changes nothing the run then trains.

    Example:
        >>> import torch, contextlib
        >>> model = torch.nn.Linear(4, 2)
        >>> batch = torch.randn(8, 4), torch.zeros(8, dtype=torch.long)
        >>> d = probe_compile(model, batch, model, steps_left=0, precision_context=contextlib.nullcontext)
        >>> d.compile, d.reason.startswith("compile off")
        (False, True)
    """
    t_start = time.perf_counter()
    saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
    x, y = batch
    x = x.contiguous(memory_format=memory_format)
    sync = torch.cuda.synchronize if x.device.type == "cuda" else (lambda: None)

    def step(fn) -> float:
        t0 = time.perf_counter()
        with precision_context():
            loss = F.cross_entropy(*per_target(fn(x), y))
        loss.backward()
        sync()
        return time.perf_counter() - t0

    was_training = model.training
    model.train()
    with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):  # dropout draws stay the run's
        step(model)  # warm-up: allocator, first-call costs eager pays too
        eager = statistics.median(step(model) for _ in range(steps))
        first = step(forward)
        compiled = statistics.median(step(forward) for _ in range(steps))
    model.load_state_dict(saved)
    model.zero_grad(set_to_none=True)
    model.train(was_training)

    compile_s = max(0.0, first - compiled)
    saved_s = (eager - compiled) * steps_left
    numbers = (
        f"a compiled step took {compiled * 1e3:.1f} ms vs {eager * 1e3:.1f} ms eager, so {steps_left:,} steps "
        f"save {saved_s:.1f} s against a {compile_s:.1f} s compile"
    )
    if saved_s > compile_s:
        reason = f"compile on: {numbers}"
    else:
        reason = (
            f"compile off: {numbers} (the probe's compile is spent; a longer run would pay it back)"
            if compiled < eager
            else f"compile off: {numbers}; compiling does not speed this step up"
        )
    return CompileDecision(saved_s > compile_s, reason, eager, compiled, compile_s, time.perf_counter() - t_start)


def per_target(logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, targets) one row per prediction: a language model predicts at every position of its window
    ((N, T, vocab) against (N, T)), and each position counts as one example, scored alike.

    Example:
        >>> [t.shape for t in per_target(torch.zeros(2, 5, 7), torch.zeros(2, 5, dtype=torch.long))]
        [torch.Size([10, 7]), torch.Size([10])]
    """
    return (logits.flatten(0, -2), y.flatten()) if logits.dim() > 2 else (logits, y)


def first_batch(loader: Iterable) -> tuple[torch.Tensor, torch.Tensor]:
    """The loader's first batch (for a loader with ``set_epoch``, the training loop sets the epoch again
    before it iterates, so the run sees the same batches)."""
    return next(iter(loader))
