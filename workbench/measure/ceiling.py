"""What the device can do at best: a short matmul probe, so achieved TFLOP/s can be read as a share."""

from __future__ import annotations

import functools
import time
from typing import Any

import torch

from .device import device_name, resolve_device

# Big enough to run at the device's matmul speed, small enough to take about a second: on a 2-core
# AMD EPYC (1 thread) 1024^3 in fp32 took about 25 ms a product; an H100 needs 8192 in bf16 to fill.
PROBE_SIZE = {"cpu": 1024, "cuda": 8192, "mps": 4096}
PROBE_DTYPE = {"cpu": torch.float32, "cuda": torch.bfloat16, "mps": torch.float16}


def matmul_ceiling(device: str | torch.device = "cpu", *, repeats: int = 10) -> dict[str, Any]:
    """The best TFLOP/s of a square matmul on ``device`` (bf16 on CUDA, fp32 on a CPU, at the current
    torch thread count), the median of ``repeats`` timed products after a warm-up. Cached per device,
    dtype and thread count for the process.

    Example:
        >>> probe = matmul_ceiling("cpu", repeats=3)
        >>> probe["dtype"], probe["tflops"] > 0
        ('float32', True)
    """
    device = resolve_device(device)
    return dict(_probe(str(device), torch.get_num_threads(), repeats))


@functools.cache
def _probe(device_str: str, threads: int, repeats: int) -> tuple[tuple[str, Any], ...]:
    device = torch.device(device_str)
    n, dtype = PROBE_SIZE.get(device.type, 1024), PROBE_DTYPE.get(device.type, torch.float32)
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    seconds = []
    for i in range(repeats + 2):
        _sync(device)
        start = time.perf_counter()
        a @ b
        _sync(device)
        if i >= 2:  # the first products allocate and pick kernels
            seconds.append(time.perf_counter() - start)
    median = sorted(seconds)[len(seconds) // 2]
    return (
        ("tflops", 2 * n**3 / median / 1e12),
        ("dtype", str(dtype).removeprefix("torch.")),
        ("size", n),
        ("threads", threads),
        ("device_name", device_name(device)),
    )


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def achieved(flops_per_image: float, images_per_s: float, *, training: bool) -> float:
    """TFLOP/s a rate of images stands for: the forward FLOPs per image, three times that in training
    (the backward pass costs about twice the forward).

    Example:
        >>> achieved(1e9, 1000, training=True), achieved(1e9, 1000, training=False)
        (3.0, 1.0)
    """
    return (3 if training else 1) * flops_per_image * images_per_s / 1e12
