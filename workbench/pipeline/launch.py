"""The data-parallel launch: a config with ``parallel.world_size > 1`` run by torchrun, and what stops one.

``run`` checks the config (``preflight``, which asks ``parallel_problems`` here) and hands it to
``launched``: the ranks read the job from a file in a launch folder, each runs ``run`` inside torchrun
(``workbench.distributed``), and rank 0 leaves the id of the row it stored there.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch

from .._errors import ConfigError
from ..config import RunConfig
from ..report import Result
from ..train import LaunchError, Placement, available_cores, backend_for, launch
from .options import RunOptions

# Ranks a CPU core may carry: past this each rank holds a whole copy of the model and data for a sliver
# of a core, and a typo (--nproc 200) would fork hundreds of torch processes.
MAX_RANKS_PER_CORE = 4


def launched(config: RunConfig, options: RunOptions) -> Result | None:
    """A checked ``config`` run by ``parallel.nproc`` processes on this machine through torchrun; rank 0's row.

    On a machine other than node 0 there is no row here (None)."""
    store = options.store
    if store is None:
        raise ConfigError("a data-parallel run hands its row back through a result store: pass store='runs' (--store)")
    placement = _placement(config, options.placement)
    with tempfile.TemporaryDirectory(prefix="workbench-launch-") as folder:
        job = Path(folder) / "job.json"
        job.write_text(json.dumps(_job(config, options), default=str))
        try:
            launch(
                ["-m", "workbench.distributed", "--job", str(job)],
                placement,
                threads_per_rank=rank_threads(config),
                echo=options.progress,
                launch_dir=folder,
            )
        except LaunchError as e:
            raise LaunchError(
                f"the {config.parallel.world_size}-process run failed, {e}; nothing was stored, and running it "
                "again resumes from its last finished epoch"
            ) from None
        if placement.node_rank != 0:
            return None
        run_id = json.loads((Path(folder) / "result.json").read_text())["run_id"]
    return store.get(run_id)


def _placement(config: RunConfig, placement: Placement | None) -> Placement:
    """Where the ranks run: as given (for several machines), or all of them here; it must match the config."""
    p = config.parallel
    placement = placement or Placement(nproc_per_node=p.nproc, nnodes=p.nnodes)
    if (placement.nproc_per_node, placement.nnodes) != (p.nproc, p.nnodes):
        raise ConfigError(
            f"the placement ({placement.nproc_per_node} per machine x {placement.nnodes}) and the config "
            f"(parallel.nproc={p.nproc} x parallel.nnodes={p.nnodes}) must agree"
        )
    return placement


def _job(config: RunConfig, options: RunOptions) -> dict:
    """What each rank passes to ``run`` (``workbench.distributed`` reads it back): plain JSON values only."""
    start_from = options.start_from
    return {
        "config": config.to_dict(),
        "store": str(options.store.root),
        "progress": options.progress,
        "resume": options.resume,
        "reuse": options.reuse,
        "start_from": start_from.run_id if isinstance(start_from, Result) else start_from,
        "data_root": str(options.data_root),
        "tags": options.tags,
    }


def rank_threads(config: RunConfig) -> int:
    """CPU threads per rank: as set, or this machine's cores shared out among its ranks."""
    setting = config.hardware.threads
    return setting if isinstance(setting, int) else max(1, available_cores() // config.parallel.nproc)


def parallel_problems(config: RunConfig, device: torch.device) -> list[str]:
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
    problems += _device_problems(config, device)
    return problems


def _device_problems(config: RunConfig, device: torch.device) -> list[str]:
    """Whether this machine's devices can carry the ranks: a backend that moves them, and enough of them."""
    p = config.parallel
    if device.type == "mps":
        return ["data-parallel training runs on CPUs (gloo) or CUDA GPUs (nccl), not mps: use --device cpu"]
    if backend_for(p, device) == "nccl" and device.type != "cuda":
        return [
            f"parallel.backend='nccl' moves CUDA tensors, and this run trains on the {device.type}: use gloo or auto"
        ]
    if device.type == "cpu" and p.nproc > MAX_RANKS_PER_CORE * available_cores():
        return [
            f"parallel.nproc={p.nproc} starts {p.nproc} processes on this machine's {available_cores()} cores: "
            f"each rank needs a share of a core, so use --nproc {MAX_RANKS_PER_CORE * available_cores()} or fewer"
        ]
    if device.type == "cuda" and p.nproc > torch.cuda.device_count():
        return [
            f"parallel.nproc={p.nproc} needs a GPU per process and this machine has {torch.cuda.device_count()}: "
            f"use --nproc {torch.cuda.device_count()}"
        ]
    return []
