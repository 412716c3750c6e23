"""Scale-out on PyTorch's own engine: data-parallel runs through ``torchrun``, FSDP, a pipeline demo, scaling.

- A run whose ``parallel`` section asks for more than one process (``RunConfig.parallel.nproc``,
  ``workbench run --nproc 2``) is launched by ``workbench.run`` itself through ``torchrun``; or start
  it yourself: ``torchrun --nproc-per-node 2 -m workbench.distributed --model cnn --epochs 5`` (the
  ``workbench run`` flags). Each rank trains on its shard of every epoch, DDP (or FSDP, with
  ``--parallel fsdp``) averages the gradients, and rank 0 stores one row (``world_size``, ``backend``,
  ``rank_images_per_s``, ``rank_parameter_bytes``).
- Several machines: the same command on each, ``--nnodes M --node-rank R --rdzv-endpoint HOST:PORT``
  (``torchrun_command`` builds the line, ``workbench run ... --print-launch`` prints it).
- ``scaling`` measures 1, 2, ... processes side by side; ``rank_table`` shows each process's share.
- ``pipeline_demo``: one model split into two stages in two processes (model parallelism), with the
  pipeline bubble measured per number of micro-batches.
- The other scale-out path: search workers on several machines sharing one study database
  (``workbench search worker --storage postgresql+psycopg://...``).
"""

from typing import Any

from ..train import LaunchError, ParallelConfig, Placement, launch, torchrun_command
from .scaling import rank_table, scaling, steady_images_per_s

__all__ = [
    "LaunchError",
    "ParallelConfig",
    "Placement",
    "launch",
    "pipeline_demo",
    "rank_table",
    "scaling",
    "split_in_two",
    "steady_images_per_s",
    "torchrun_command",
]


def __getattr__(name: str) -> Any:
    # Loaded on first use: its ranks run it with `python -m`, which warns when the package imported it first.
    if name in ("pipeline_demo", "split_in_two"):
        from . import pipeline_parallel

        return getattr(pipeline_parallel, name)
    raise AttributeError(f"module 'workbench.distributed' has no attribute '{name}'")
