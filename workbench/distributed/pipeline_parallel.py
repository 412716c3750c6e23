"""Model parallelism, shown simply: one registry model cut into two stages, each in its own process,
trained with GPipe's schedule (``torch.distributed.pipelining``).

A batch is cut into M micro-batches. Stage 0 runs the first layers on micro-batch 1 and hands its
activation to stage 1, which runs the rest while stage 0 starts on micro-batch 2; backward runs the
same way in reverse. While the pipe fills and drains one stage waits: GPipe's bubble, a share
(S-1)/(M+S-1) of the step for S stages, which shrinks as M grows. Each micro-batch also costs a
hand-off between the processes and runs smaller, less efficient kernels, so on a real machine the
measured bubble and step time stop improving somewhere; ``pipeline_demo`` measures where.

``split_in_two`` picks the cut: the model's modules in the order its forward runs them, cut where the
two halves' FLOPs are closest. ``pipeline_demo`` launches the two ranks with torchrun; this module's
``__main__`` block is what each rank runs.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import os
import time
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from ..data import BatchLoader, load_dataset
from ..measure import count_flops, device_name
from ..models import ModelConfig, build_model
from ..train.launch import LAUNCH_DIR_ENV, Placement, launch, record_failure

STAGES = 2  # one stage per process; GPipe's bubble formula below is for any S
RESULT_FILE = "pipeline.json"  # rank 0's measurements, in the launch folder
LR = 0.05  # plain SGD: the steps train for real, but the demo measures time, not accuracy
HANDOFF_WARMUP, HANDOFF_REPEATS = 5, 50  # ping-pongs of the activation: untimed, then timed
RANK_TIMEOUT = datetime.timedelta(minutes=2)  # a rank waiting longer on its peer gives up with an error


def _chain(module: nn.Module, prefix: str = "") -> list[tuple[str, nn.Module]]:
    """``module``'s children in order, plain ``nn.Sequential`` containers opened up (a named block such
    as ``ConvNormAct`` stays whole), each with its dotted name in the model."""
    out = []
    for name, child in module.named_children():
        if type(child) is nn.Sequential:
            out += _chain(child, f"{prefix}{name}.")
        else:
            out.append((f"{prefix}{name}", child))
    return out


def split_in_two(model: nn.Module, example: torch.Tensor) -> tuple[nn.Sequential, nn.Sequential, dict]:
    """``model`` as two ``nn.Sequential`` stages that share its modules, cut between two of its modules
    where the stages' forward FLOPs are closest (the latest such cut, so a layer keeps its norm and
    activation). Works for models whose forward is a chain of their children, which ``example`` (a
    batch) checks: the two stages in turn must give the model's output. Also returns what went where.

    Example:
        >>> net = build_model(ModelConfig(name="cnn", width=0.25), 10, (1, 8, 8), seed=0)
        >>> first, second, info = split_in_two(net, torch.zeros(2, 1, 8, 8))
        >>> info["stage_modules"][0][-1], info["stage_modules"][1][0], info["activation_shape_per_image"]
        ('features.4', 'features.5', [16, 4, 4])
        >>> x = torch.randn(2, 1, 8, 8)
        >>> torch.equal(second(first(x)), net(x))
        True
    """
    chain = _chain(model)
    name = type(model).__name__
    if len(chain) < 2:
        raise ValueError(f"{name} has {len(chain)} top-level module(s); a pipeline needs at least 2 to cut between")
    was_training = model.training
    model.eval()  # the check must not draw dropout masks or move BatchNorm's running statistics
    shapes, flops = [], []
    try:
        with torch.no_grad():
            x = example
            for _, module in chain:
                flops.append(count_flops(module, tuple(x.shape)))
                x = module(x)
                shapes.append(tuple(x.shape))
            chained = torch.allclose(x, model(example), atol=1e-6)
    except RuntimeError:  # a module got an input its forward reshapes first (a ViT's tokens)
        chained = False
    finally:
        model.train(was_training)
    if not chained:
        raise ValueError(
            f"{name}'s forward is not a chain of its modules (it adds or reshapes between them), "
            "so it cannot be cut into two stages here: choose a model such as mlp, cnn or resnet20"
        )
    total = sum(flops)
    prefix = np.cumsum(flops)[:-1]  # FLOPs of stage 0 for a cut after module k
    imbalance = np.abs(total - 2 * prefix)
    cut = int(np.flatnonzero(imbalance == imbalance.min())[-1]) + 1
    first, second = nn.Sequential(*(m for _, m in chain[:cut])), nn.Sequential(*(m for _, m in chain[cut:]))
    info = {
        "stage_modules": [[n for n, _ in chain[:cut]], [n for n, _ in chain[cut:]]],
        "stage_params": [sum(p.numel() for p in s.parameters()) for s in (first, second)],
        "stage_flops": [int(prefix[cut - 1]), int(total - prefix[cut - 1])],  # for one batch of ``example``
        "activation_shape_per_image": list(shapes[cut - 1][1:]),  # what crosses from stage 0 to 1
    }
    return first, second, info


class _TimedStage:
    """Adds up the seconds a pipeline stage computes (forward, backward, loss), apart from the time it
    waits for its peer: what the bubble is measured against."""

    def __init__(self, stage):
        self.busy = 0.0
        for method in ("forward_one_chunk", "backward_one_chunk"):
            setattr(stage, method, self.timed(getattr(stage, method)))

    def timed(self, fn):
        def run(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.busy += time.perf_counter() - start

        return run


def _handoff_seconds(shape: Sequence[int], rank: int) -> list[float]:
    """One-way seconds to send a float32 tensor of ``shape`` to the other rank: half of each round trip
    (the two processes' clocks are not compared), ``HANDOFF_REPEATS`` times after a warm-up."""
    tensor, peer, times = torch.randn(tuple(shape)), 1 - rank, []
    for i in range(HANDOFF_WARMUP + HANDOFF_REPEATS):
        start = time.perf_counter()
        if rank == 0:
            dist.send(tensor, peer)
            dist.recv(tensor, peer)
        else:
            dist.recv(tensor, peer)
            dist.send(tensor, peer)
        if i >= HANDOFF_WARMUP:
            times.append((time.perf_counter() - start) / 2)
    return times


def _run(microbatches: int, build, batches: list, rank: int, warmup: int) -> dict:
    """Train a fresh copy of the model for ``len(batches)`` GPipe steps of ``microbatches`` micro-batches;
    this rank's wall and busy seconds for the steps after ``warmup``, the hand-off timings, and (on the
    last stage) how far the first step's losses are from the unsplit model's."""
    from torch.distributed.pipelining import PipelineStage, ScheduleGPipe  # imports in 2 s: only in the ranks

    x0 = batches[0][0]
    first, second, split = split_in_two(build(), x0)
    module = (first, second)[rank]
    stage = PipelineStage(module, rank, STAGES, torch.device("cpu"))
    timer = _TimedStage(stage)

    def loss_fn(logits, target):
        start = time.perf_counter()
        loss = F.cross_entropy(logits, target)
        timer.busy += time.perf_counter() - start
        return loss

    schedule = ScheduleGPipe(stage, n_microbatches=microbatches, loss_fn=loss_fn)
    optimizer = torch.optim.SGD(module.parameters(), lr=LR, momentum=0.9)
    walls, busy, loss_diff = [], [], None
    for step, (x, y) in enumerate(batches):
        losses: list[torch.Tensor] = []
        dist.barrier()  # both ranks start the step together, so their walls cover the same span
        timer.busy, start = 0.0, time.perf_counter()
        if rank == 0:
            schedule.step(x, return_outputs=False)
        else:
            schedule.step(target=y, losses=losses, return_outputs=False)
        wall = time.perf_counter() - start
        optimizer.step()
        optimizer.zero_grad()
        if step == 0 and rank == STAGES - 1:  # before any update: the same weights as a fresh build
            reference = build()
            with torch.no_grad():
                expected = [
                    F.cross_entropy(reference(xm), ym) for xm, ym in zip(x.chunk(microbatches), y.chunk(microbatches))
                ]
            loss_diff = max(abs(a.item() - b.item()) for a, b in zip(losses, expected))
        if step >= warmup:
            walls.append(wall)
            busy.append(timer.busy)
    activation = [len(x0) // microbatches, *split["activation_shape_per_image"]]
    return {
        "microbatches": microbatches,
        "wall_s": walls,
        "busy_s": busy,
        "loss_max_diff": loss_diff,
        "handoff_s": _handoff_seconds(activation, rank),
        "activation_shape": activation,
    }


def _rank_main(argv: Sequence[str] | None = None) -> None:
    """One rank of ``pipeline_demo``'s launch: stage ``RANK`` of the model; rank 0 writes the measurements."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="cnn")
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--microbatches", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-root", default="data")
    args = parser.parse_args(argv)

    dist.init_process_group("gloo", timeout=RANK_TIMEOUT)
    rank = dist.get_rank()
    if dist.get_world_size() != STAGES:
        raise ValueError(f"the pipeline has {STAGES} stages: start {STAGES} processes (got {dist.get_world_size()})")
    data = load_dataset(args.dataset, args.data_root)
    loader = BatchLoader(data.train_x, data.train_y, args.batch_size, mean=data.mean, std=data.std, drop_last=True)
    # Consecutive batches of real images, in rotation, so no step reruns a batch still warm in the cache.
    batches = list(itertools.islice(itertools.cycle(loader), args.warmup + args.steps))
    cfg = ModelConfig(name=args.model, width=args.width)
    shape = tuple(data.train_x.shape[1:])

    def build():
        return build_model(cfg, data.num_classes, shape, seed=args.seed)

    runs = [_run(m, build, batches, rank, args.warmup) for m in args.microbatches]
    gathered = [None] * STAGES if rank == 0 else None
    dist.gather_object(runs, gathered, dst=0)
    if rank == 0:
        path = os.path.join(os.environ[LAUNCH_DIR_ENV], RESULT_FILE)
        with open(path, "w") as f:
            json.dump({"ranks": gathered, "threads": torch.get_num_threads()}, f)


def _frame(ranks: list[list[dict]], batch_size: int) -> pd.DataFrame:
    """One row per micro-batch count from both ranks' raw timings."""
    rows = []
    for per_rank in zip(*ranks):
        m = per_rank[0]["microbatches"]
        busy = np.array([r["busy_s"] for r in per_rank])  # (stage, step)
        wall = np.array([r["wall_s"] for r in per_rank]).max(axis=0)  # the step ends when its last stage does
        bubble = np.median(1 - busy / wall, axis=1)
        handoff = np.array(per_rank[0]["handoff_s"])
        shape = per_rank[0]["activation_shape"]
        step_ms = 1e3 * np.median(wall)
        rows.append(
            {
                "microbatches": m,
                "microbatch_size": batch_size // m,
                "step_ms": step_ms,
                "step_ms_p10": 1e3 * np.percentile(wall, 10),
                "step_ms_p90": 1e3 * np.percentile(wall, 90),
                **{f"busy_ms_stage{s}": 1e3 * np.median(busy[s]) for s in range(STAGES)},
                **{f"bubble_share_stage{s}": bubble[s] for s in range(STAGES)},
                "bubble_share": bubble.mean(),
                "bubble_theory": (STAGES - 1) / (m + STAGES - 1),
                "handoff_ms": 1e3 * np.median(handoff),
                "handoff_ms_p10": 1e3 * np.percentile(handoff, 10),
                "handoff_ms_p90": 1e3 * np.percentile(handoff, 90),
                "handoff_bytes": int(np.prod(shape)) * 4,  # float32
                "activation_shape": "x".join(map(str, shape)),
                "images_per_s": 1e3 * batch_size / step_ms,
                "loss_max_diff": per_rank[STAGES - 1]["loss_max_diff"],
            }
        )
    return pd.DataFrame(rows)


def _check_args(microbatches: Sequence[int], batch_size: int, steps: int, warmup: int) -> list[int]:
    counts = [int(m) for m in microbatches]
    if not counts or min(counts) < 1:
        raise ValueError(f"microbatches must be counts >= 1, e.g. (1, 2, 4, 8) (got {tuple(microbatches)})")
    if steps < 1 or warmup < 0:
        raise ValueError(f"steps must be >= 1 and warmup >= 0 (got steps={steps}, warmup={warmup})")
    uneven = [m for m in counts if batch_size % m]
    if uneven:
        every = int(np.lcm.reduce(counts))
        raise ValueError(
            f"batch_size {batch_size} does not split into {uneven[0]} equal micro-batches: choose a "
            f"batch_size divisible by every micro-batch count, e.g. {-(-batch_size // every) * every}"
        )
    if batch_size // max(counts) < 2:
        raise ValueError(
            f"{max(counts)} micro-batches of batch_size {batch_size} leave {batch_size // max(counts)} image each, "
            f"and BatchNorm needs 2 or more: use batch_size >= {2 * max(counts)}"
        )
    return counts


def pipeline_demo(
    model: str = "cnn",
    dataset: str = "digits",
    microbatches: Sequence[int] = (1, 2, 4, 8),
    batch_size: int = 64,
    steps: int = 10,
    warmup: int = 2,
    width: float = 1.0,
    seed: int = 0,
    data_root: str = "data",
    threads_per_rank: int = 1,
    echo: bool = False,
) -> pd.DataFrame:
    """Train ``model`` split into two pipeline stages, one process each (torchrun, gloo, CPU), with
    GPipe's schedule at each micro-batch count, and measure what the pipeline costs.

    Each count trains a fresh copy of the model on consecutive batches of ``dataset`` (``warmup`` steps,
    then ``steps`` timed ones). One row per count: ``step_ms`` (median wall time of a step's forward and
    backward through both stages; the optimizer step is after it) with ``step_ms_p10``/``_p90``;
    ``busy_ms_stage0``/``1`` (each stage's compute in a step); ``bubble_share_stage0``/``1`` (the share of
    the step a stage was not computing: waiting for its peer or on a hand-off) and their mean
    ``bubble_share``; ``bubble_theory``, GPipe's (S-1)/(M+S-1); ``handoff_ms`` (one-way time of one
    micro-batch's activation between the processes, median of 50 ping-pongs, with p10/p90),
    ``handoff_bytes`` and ``activation_shape``; ``images_per_s``; ``loss_max_diff``, how far the first
    step's micro-batch losses are from the unsplit model's on the same images. ``df.attrs`` has the
    device, backend, versions, batch size, threads and the split (modules, parameters and FLOPs per stage).

    The default is the cnn: an mlp's micro-batch computes in a fraction of a millisecond on a CPU, less
    than the machine takes to wake a rank for a hand-off, so its bubble shows only that overhead.

    Example:
        >>> df = pipeline_demo("cnn", microbatches=(1, 4), steps=3)  # doctest: +SKIP
        >>> df[["microbatches", "bubble_theory"]].values.tolist()  # doctest: +SKIP
        [[1.0, 0.5], [4.0, 0.2]]
        >>> pipeline_demo(microbatches=(1, 3))  # doctest: +NORMALIZE_WHITESPACE
        Traceback (most recent call last):
        ...
        ValueError: batch_size 64 does not split into 3 equal micro-batches: choose a batch_size divisible by
            every micro-batch count, e.g. 66
    """
    counts = _check_args(microbatches, batch_size, steps, warmup)
    cfg = ModelConfig(name=model, width=width)  # an unknown name or a bad width fails here, in one line
    data = load_dataset(dataset, data_root)
    if len(data.train_x) < batch_size:
        raise ValueError(
            f"{dataset} has {len(data.train_x)} training images, fewer than batch_size {batch_size}: "
            "use a smaller batch"
        )
    shape = tuple(data.train_x.shape[1:])
    # Cut here, before launching, so a model that cannot be split fails in one line at once.
    _, _, split = split_in_two(build_model(cfg, data.num_classes, shape, seed=seed), torch.zeros(batch_size, *shape))
    args = [
        "--model",
        model,
        "--dataset",
        dataset,
        "--microbatches",
        *map(str, counts),
        "--batch-size",
        str(batch_size),
        "--steps",
        str(steps),
        "--warmup",
        str(warmup),
        "--width",
        str(width),
        "--seed",
        str(seed),
        "--data-root",
        str(data_root),
    ]
    folder = launch(
        ["-m", __name__, *args], Placement(nproc_per_node=STAGES), threads_per_rank=threads_per_rank, echo=echo
    )
    raw = json.loads((folder / RESULT_FILE).read_text())
    df = _frame(raw["ranks"], batch_size)
    df.attrs.update(
        model=model,
        dataset=dataset,
        batch_size=batch_size,
        steps=steps,
        warmup=warmup,
        width=width,
        stages=STAGES,
        schedule="GPipe",
        device="cpu",
        device_name=device_name("cpu"),
        backend="gloo",
        torch_version=torch.__version__,
        threads_per_rank=raw["threads"],
        loss_max_diff=float(df["loss_max_diff"].max()),
        **split,
    )
    return df


if __name__ == "__main__":
    try:
        _rank_main()
    except Exception as e:
        record_failure(e)
        raise
    # gloo ranks can abort at exit if they leave unsynchronised: meet, then leave together.
    dist.barrier()
    dist.destroy_process_group()
    os._exit(0)
