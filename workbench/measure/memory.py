"""Peak memory of a block of code, on the device where it ran."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from .device import resolve_device

try:
    import resource
except ImportError:  # Windows has no getrusage
    resource = None


@dataclass
class PeakMemory:
    """Filled in when the ``with`` block ends; ``peak_bytes`` is None where it cannot be measured."""

    device: str
    peak_bytes: int | None = None


@contextlib.contextmanager
def track_peak_memory(device: str | torch.device = "cpu") -> Iterator[PeakMemory]:
    """Measure the peak memory of the block: ``with track_peak_memory(dev) as mem: ...; mem.peak_bytes``.

    CUDA: ``torch.cuda.max_memory_allocated`` after resetting the peak (tensors only, including the
    model's weights already resident). CPU: growth of the process's peak resident set size
    (``getrusage``), which is process-wide and coarse: memory freed and reused below an earlier
    high-water mark shows as 0 growth. MPS and Windows: None.

    Example:
        >>> with track_peak_memory("cpu") as mem:
        ...     x = torch.ones(256, 1024)
        >>> mem.peak_bytes is None or mem.peak_bytes >= 0
        True
    """
    device = resolve_device(device, field="device")
    peak = PeakMemory(str(device))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        try:
            yield peak
        finally:
            torch.cuda.synchronize(device)
            peak.peak_bytes = torch.cuda.max_memory_allocated(device)
    elif device.type == "cpu" and resource is not None:
        before = _max_rss()
        try:
            yield peak
        finally:
            peak.peak_bytes = _max_rss() - before
    else:
        yield peak


def _max_rss() -> int:
    scale = 1 if sys.platform == "darwin" else 1024  # macOS reports bytes, Linux KiB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
