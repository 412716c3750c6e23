"""How many CPU threads torch uses, chosen so training and timing hold up on a shared machine.

torch's default is one thread per core. On a laptop a browser and a Jupyter server always run beside
the kernel, and an OpenMP thread that shares its core with them spins and waits at every parallel
region: on a 2-core machine with one core partly busy, a resnet20 training step measured 24 ms with
one thread and 219 ms (p90 2.7 s) with two. ``auto`` therefore counts only the cores that are free.

Example:
    >>> resolve_threads(3), resolve_threads("auto") >= 1
    (3, True)
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator

import torch


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, which containers and ``taskset`` narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS and Windows have no affinity call
        return os.cpu_count() or 1


def load_average() -> float | None:
    """The machine's 1-minute load average (runnable processes), or None where the OS has none."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def resolve_threads(setting: int | str = "auto") -> int:
    """The thread count a ``HardwareConfig.threads`` setting stands for: a number as given; ``auto``
    the cores left free by what already runs (the 1-minute load average), at least one."""
    if setting != "auto":
        return int(setting)
    cores, load = available_cores(), load_average()
    busy = 0 if load is None else load
    return max(1, min(cores, math.floor(cores - busy + 0.5)))


@contextlib.contextmanager
def thread_count(threads: int) -> Iterator[int]:
    """torch uses ``threads`` inside the block; the count before is restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield threads
    finally:
        torch.set_num_threads(before)
