"""How training speed grows with processes: the same run at 1, 2, ... processes, side by side.

``scaling`` runs a config once per world size with the same global batch (each process takes its
share of it) and reads the rows back: throughput of a steady epoch, time per epoch, speed-up over one
process and scaling efficiency (speed-up / processes: 1.0 is perfect). ``rank_table`` spreads any
rows' per-process numbers (speed, parameters held, peak memory) into one row per process: the DDP
copies against FSDP's shards.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Sequence
from typing import Any

import pandas as pd
import torch

from .._errors import ConfigError
from ..config import RunConfig
from ..measure import device_name, resolve_device
from ..pipeline import run
from ..report import Result, ResultStore
from ..train import available_cores, load_average


def scaling(
    config: RunConfig,
    nprocs: Sequence[int] = (1, 2),
    *,
    store: ResultStore | str | os.PathLike = "runs",
    repeats: int = 1,
    strategy: str | None = None,
    progress: bool = True,
    data_root: str | os.PathLike = "data",
) -> pd.DataFrame:
    """Train ``config`` with each number of processes in ``nprocs`` (one machine), ``repeats`` times,
    the world sizes taking turns so a busy spell slows them alike; one row per world size (medians).

    The global batch (``train.batch_size``) stays the same, so every world size takes the same
    optimizer steps on the same examples: only who computes them changes. ``hardware.threads`` "auto"
    becomes 1 thread per process, so each process stands for one device. Columns: ``nproc``,
    ``images_per_s`` (a steady epoch's training images per second, all processes together),
    ``images_per_s_per_process``, ``epoch_seconds``, ``speedup`` (over the first world size given,
    scaled to one process), ``efficiency``, ``accuracy``, ``run_ids``. ``df.attrs`` names the device,
    backend, cores, load average and versions.

    Example:
        >>> scaling(RunConfig(), nprocs=(1, 0))
        Traceback (most recent call last):
        ...
        workbench.ConfigError: scaling needs process counts >= 1 (got (1, 0))
    """
    if not nprocs or any(not isinstance(n, int) or n < 1 for n in nprocs):
        raise ConfigError(f"scaling needs process counts >= 1 (got {tuple(nprocs)})")
    if repeats < 1:
        raise ConfigError(f"scaling needs repeats >= 1 (got {repeats})")
    threads = 1 if config.hardware.threads == "auto" else config.hardware.threads
    base = config.replace(
        **{"hardware.threads": threads, "parallel.nnodes": 1, **({"parallel.strategy": strategy} if strategy else {})}
    )
    runs: dict[int, list[Result]] = {n: [] for n in nprocs}
    for _ in range(repeats):
        for n in nprocs:
            cfg = base.replace(**{"parallel.nproc": n, "name": f"{base.label()} x{n}"})
            # Train every time: a stored training of the same settings would be reused, not timed.
            runs[n].append(run(cfg, store=store, progress=progress, reuse=False, resume=False, data_root=data_root))
    rows = [_scaling_row(n, results) for n, results in runs.items()]
    df = pd.DataFrame(rows)
    first = df.iloc[0]
    df["speedup"] = df["images_per_s"] / (first["images_per_s"] / first["nproc"])
    df["efficiency"] = df["speedup"] / df["nproc"]
    device = resolve_device(config.hardware.device)
    df.attrs.update(
        device=str(device),
        device_name=device_name(device),
        backend=_backend(runs),
        strategy=base.parallel.strategy,
        cores=available_cores(),
        load_average=load_average(),
        threads_per_process=threads,
        batch_size=config.train.batch_size,
        dataset=config.data.dataset,
        model=config.model.name,
        repeats=repeats,
        torch_version=torch.__version__,
    )
    return df


def _scaling_row(n: int, results: list[Result]) -> dict[str, Any]:
    def median(values):
        values = [v for v in values if v is not None]
        return statistics.median(values) if values else None

    ips = [steady_images_per_s(r) for r in results]
    return {
        "nproc": n,
        "images_per_s": median(ips),
        "images_per_s_per_process": median(ips) / n,
        "epoch_seconds": median(r.metrics.get("steady_epoch_seconds") for r in results),
        "accuracy": median(r.metrics["accuracy"] for r in results),
        "run_ids": [r.run_id for r in results],
    }


def steady_images_per_s(result: Result) -> float:
    """A run's training images per second once warm, all processes together (the first epoch pays for
    start-up and allocation); the whole training's where it ran one epoch."""
    steady = result.metrics.get("steady_epoch_seconds")
    return result.metrics["train_examples"] / steady if steady else result.metrics["train_ips"]


def _backend(runs: dict[int, list[Result]]) -> str:
    return next((r.metrics["backend"] for results in runs.values() for r in results if "backend" in r.metrics), "none")


def rank_table(results: Sequence[Result]) -> pd.DataFrame:
    """One row per process of each run: its rank, training speed, the parameter bytes it held (the
    whole model under DDP, about 1/world under FSDP) and its peak memory. A one-process run is one row.

    Example:
        >>> r = Result(config=RunConfig(), metrics={"world_size": 2, "train_ips": 10.0, "rank_images_per_s": [5.0, 5.0],
        ...            "rank_parameter_bytes": [40, 40], "rank_peak_memory_bytes": [0, 0]}, run_id="a")
        >>> rank_table([r])[["rank", "images_per_s", "parameter_bytes"]].to_dict("list")
        {'rank': [0, 1], 'images_per_s': [5.0, 5.0], 'parameter_bytes': [40, 40]}
    """
    rows = []
    for result in results:
        m = result.metrics
        world = int(m.get("world_size") or 1)
        speeds = m.get("rank_images_per_s") or [m.get("train_ips")]
        held = m.get("rank_parameter_bytes") or [4 * m.get("params", 0)]  # a one-process run: float32 parameters
        peaks = m.get("rank_peak_memory_bytes") or [m.get("peak_memory_bytes")]
        for rank in range(world):
            rows.append(
                {
                    "run": result.config.label(),
                    "run_id": result.run_id,
                    "world_size": world,
                    "strategy": result.config.parallel.strategy if world > 1 else "one process",
                    "rank": rank,
                    "images_per_s": speeds[rank],
                    "parameter_bytes": held[rank],
                    "peak_memory_bytes": peaks[rank],
                }
            )
    return pd.DataFrame(rows)
