"""What a model costs: parameters, bytes on disk, FLOPs, latency and throughput, memory, a profile.

Every timing carries the device name, dtype, batch size and torch version beside it.

Example:
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
    >>> count_parameters(net)["params"], count_flops(net, (1, 8))
    (178, 320)
"""
from .bench import benchmark, measure, time_calls
from .counts import count_flops, count_parameters, model_size_bytes
from .device import available_devices, device_name, resolve_device, timing_device
from .memory import PeakMemory, track_peak_memory
from .profile import profile_summary

__all__ = [
    "PeakMemory",
    "available_devices",
    "benchmark",
    "count_flops",
    "count_parameters",
    "device_name",
    "measure",
    "model_size_bytes",
    "profile_summary",
    "resolve_device",
    "time_calls",
    "timing_device",
    "track_peak_memory",
]
