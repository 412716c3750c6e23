"""Data-parallel training on PyTorch's own engine: what one process of a ``torchrun`` launch does.

``ParallelConfig`` (the ``parallel`` section of a run) says how many processes train and how they
share the work. In each process a ``Group`` is what the training loop asks: wrap the model
(``DistributedDataParallel``, or FSDP's ``fully_shard``), add up the epoch's counts over the ranks,
gather full state dicts for a checkpoint, hand rank 0 a plain model at the end. ``SINGLE``, the one-
process group, passes everything through, so the loop has no branches for it.

Example:
    >>> ParallelConfig(nproc=2).world_size, ParallelConfig().world_size
    (2, 1)
    >>> SINGLE.sum(torch.tensor(3.0))
    (tensor(3.),)
    >>> ParallelConfig(strategy="zero")
    Traceback (most recent call last):
    ...
    workbench.ConfigError: parallel.strategy must be one of ddp, fsdp (got 'zero')
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from .._errors import require
from .._plain import Checked, setting

STRATEGIES = ("ddp", "fsdp")
BACKENDS = ("auto", "gloo", "nccl")
RANK_TIMEOUT = datetime.timedelta(minutes=10)  # a rank waiting longer than this on its peers gives up with an error
# Why these settings have no control in the panel: the panel trains in its own single process.
LAUNCH_ONLY = "a data-parallel run is a torchrun launch of several processes: workbench run --nproc N"


@dataclass(frozen=True)
class ParallelConfig(Checked):
    field_prefix = "parallel"

    nproc: int = setting(
        1,
        help="processes on each machine (torchrun --nproc-per-node); more than one trains data-parallel, each "
        "process on its shard of every epoch, the global batch train.batch_size split among all of them",
        not_in_panel=LAUNCH_ONLY,
    )
    nnodes: int = setting(
        1,
        help="machines (torchrun --nnodes); each runs the same command with its own --node-rank",
        not_in_panel=LAUNCH_ONLY,
    )
    strategy: str = setting(
        "ddp",
        help="how the processes share the model: ddp (DistributedDataParallel: a full copy in each, gradients "
        "averaged) or fsdp (fully_shard: parameters, gradients and optimizer state split across them, gathered "
        "layer by layer)",
        choices=STRATEGIES,
        not_in_panel=LAUNCH_ONLY,
    )
    backend: str = setting(
        "auto",
        help="collective backend: auto (nccl on CUDA GPUs, gloo on CPUs), gloo or nccl",
        choices=BACKENDS,
        not_in_panel=LAUNCH_ONLY,
    )

    def check(self) -> None:
        require(
            isinstance(self.nproc, int) and self.nproc >= 1,
            f"parallel.nproc must be a whole number >= 1 (got {self.nproc!r})",
        )
        require(
            isinstance(self.nnodes, int) and self.nnodes >= 1,
            f"parallel.nnodes must be a whole number >= 1 (got {self.nnodes!r})",
        )
        require(
            self.strategy in STRATEGIES,
            f"parallel.strategy must be one of {', '.join(STRATEGIES)} (got '{self.strategy}')",
        )
        require(
            self.backend in BACKENDS, f"parallel.backend must be one of {', '.join(BACKENDS)} (got '{self.backend}')"
        )

    @property
    def world_size(self) -> int:
        return self.nproc * self.nnodes


def backend_for(config: ParallelConfig, device: torch.device) -> str:
    """The collective backend a run uses: NCCL moves CUDA tensors between GPUs; gloo works on CPUs."""
    if config.backend != "auto":
        return config.backend
    return "nccl" if device.type == "cuda" else "gloo"


def in_torchrun() -> bool:
    """Whether this process is a rank that ``torchrun`` started (it sets RANK, WORLD_SIZE and the rest)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ and "LOCAL_RANK" in os.environ


class Group:
    """One process training alone: every collective is the identity. The base of the real groups."""

    rank, world_size, local_rank, local_world_size, backend = 0, 1, 0, 1, "none"

    @property
    def main(self) -> bool:
        """Rank 0: the one that evaluates, measures, writes checkpoints and stores the row."""
        return self.rank == 0

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """The module the training steps call (its parameters are the ones the optimizer updates)."""
        return model

    def sum(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Each tensor added up over the ranks (this process's share of an epoch -> the epoch's)."""
        return tensors

    def gather(self, value: Any) -> list[Any]:
        """Every rank's ``value``, in rank order, on every rank."""
        return [value]

    def from_main(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank: one decision (resume from where?) that all ranks follow."""
        return value

    def state_dicts(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
        """Whole (unsharded) model and optimizer states, for a checkpoint that any world size can resume."""
        return model.state_dict(), optimizer.state_dict()

    def load_state_dicts(
        self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, model_state: dict, optimizer_state: dict
    ) -> None:
        model.load_state_dict(model_state)
        optimizer.load_state_dict(optimizer_state)

    def plain_model(self, model: torch.nn.Module, fresh: Callable[[], torch.nn.Module]) -> torch.nn.Module:
        """The trained model as an ordinary module (FSDP's sharded one is rebuilt with ``fresh()``)."""
        return model

    def finish(self) -> None:
        """Leave the group: after this, rank 0 works alone and the other ranks exit."""


SINGLE = Group()


class DataParallel(Group):
    """A rank of a ``torchrun`` launch training with ``DistributedDataParallel``: a whole model in each
    process; backward averages the gradients over the ranks (all-reduce, overlapped with the backward)."""

    def __init__(self, config: ParallelConfig, device: torch.device):
        import torch.distributed as dist

        self.dist = dist
        self.rank, self.world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        self.local_rank, self.local_world_size = int(os.environ["LOCAL_RANK"]), int(os.environ["LOCAL_WORLD_SIZE"])
        require(
            self.world_size == config.world_size,
            f"torchrun started {self.world_size} processes but the config asks for parallel.nproc x parallel.nnodes = "
            f"{config.world_size}: make them agree (--nproc {self.local_world_size} "
            f"--nnodes {self.world_size // self.local_world_size})",
        )
        self.device = device
        self.backend = backend_for(config, device)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(self.backend, timeout=RANK_TIMEOUT)

    def wrap(self, model):
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(model, device_ids=[self.device] if self.device.type == "cuda" else None)

    def sum(self, *tensors):
        # One all-reduce for all of them: on gloo each collective costs a round trip.
        flat = torch.stack([t.detach().to(torch.float64) for t in tensors])
        self.dist.all_reduce(flat)
        return tuple(flat[i].to(t.dtype) for i, t in enumerate(tensors))

    def gather(self, value):
        out = [None] * self.world_size
        self.dist.all_gather_object(out, value)
        return out

    def from_main(self, value):
        box = [value if self.main else None]
        self.dist.broadcast_object_list(box, src=0)
        return box[0]

    def finish(self):
        # gloo ranks can abort at exit if they leave unsynchronised: meet, then leave together.
        self.dist.barrier()
        self.dist.destroy_process_group()


class ShardedDataParallel(DataParallel):
    """A rank training with FSDP (``fully_shard``): each rank holds 1/world of every parameter, its
    gradient and optimizer state, and all-gathers a layer's weights just before that layer runs."""

    def wrap(self, model):
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        mesh = init_device_mesh(self.device.type, (self.world_size,))
        # A unit per module that owns weights, innermost first, then the root: each is gathered only while it runs.
        for module in list(model.modules())[::-1]:
            if module is not model and any(True for _ in module.parameters(recurse=False)):
                fully_shard(module, mesh=mesh)
        fully_shard(model, mesh=mesh)
        return model

    def state_dicts(self, model, optimizer):
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            get_model_state_dict,
            get_optimizer_state_dict,
        )

        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        return get_model_state_dict(model, options=options), get_optimizer_state_dict(model, optimizer, options=options)

    def load_state_dicts(self, model, optimizer, model_state, optimizer_state):
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            set_model_state_dict,
            set_optimizer_state_dict,
        )

        options = StateDictOptions(full_state_dict=True)
        set_model_state_dict(model, model_state, options=options)
        set_optimizer_state_dict(model, optimizer, optimizer_state, options=options)

    def plain_model(self, model, fresh):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        # Every rank takes part in gathering the shards; rank 0 keeps them.
        state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        if not self.main:
            return model
        plain = fresh()
        plain.load_state_dict(state)
        return plain.to(self.device)


def start_group(config: ParallelConfig, device: torch.device) -> Group:
    """This process's group: ``SINGLE`` for a one-process run, else its rank of the torchrun launch.

    Example:
        >>> start_group(ParallelConfig(), torch.device("cpu")) is SINGLE
        True
    """
    if config.world_size == 1:
        return SINGLE
    require(
        in_torchrun(),
        f"parallel.nproc x parallel.nnodes = {config.world_size} processes: start them with "
        f"workbench run --nproc {config.nproc}, or torchrun --nproc-per-node {config.nproc} -m workbench.distributed",
    )
    return (ShardedDataParallel if config.strategy == "fsdp" else DataParallel)(config, device)


def rank_device(device: torch.device) -> torch.device:
    """The device this rank trains on: its own GPU (``cuda:LOCAL_RANK``) on a GPU machine, else ``device``."""
    if device.type == "cuda" and in_torchrun():
        return torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    return device


def parameter_bytes(model: torch.nn.Module) -> int:
    """Bytes of parameters this process holds: its shards under FSDP, the whole model otherwise."""
    total = 0
    for p in model.parameters():
        local = p.to_local() if hasattr(p, "to_local") else p
        total += local.numel() * local.element_size()
    return total
