"""What a model costs: parameters, bytes on disk, FLOPs, latency and throughput per execution mode,
memory, a profile. This part owns the measure section of a run (``MeasureConfig``).

Every timing carries the device name, dtype, batch size and torch version beside it.

Example:
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
    >>> count_parameters(net)["params"], count_flops(net, (1, 8))
    (178, 320)
"""

from .bench import benchmark, benchmark_together, cost_metrics, measure, measure_together, time_calls, timing_metrics
from .ceiling import achieved, matmul_ceiling
from .config import MEASURE_MODES, MeasureConfig
from .counts import count_flops, count_parameters, model_size_bytes, weight_dtype
from .device import (
    available_devices,
    cpu_features,
    device_choices,
    device_name,
    model_device,
    native_bf16,
    resolve_device,
    timing_device,
)
from .diagnose import diagnose, gemm_shapes, matmul_speedup, op_shares
from .generation import (
    GENERATION_BATCH_SIZES,
    attention_timing,
    cached_loss,
    decode_curve,
    generation_timing,
    kv_cache_sizes,
    speculative_curve,
)
from .memory import PeakMemory, saved_activation_bytes, track_peak_memory, training_memory
from .modes import measure_modes, measure_modes_together, timing_plan
from .profile import profile_summary
from .roofline import activation_bytes, memory_bandwidth, roofline_point
from .sweep import SWEEP_MODES, SWEEP_PRECISIONS, inference_grid

__all__ = [
    "GENERATION_BATCH_SIZES",
    "MEASURE_MODES",
    "SWEEP_MODES",
    "SWEEP_PRECISIONS",
    "MeasureConfig",
    "PeakMemory",
    "achieved",
    "activation_bytes",
    "attention_timing",
    "available_devices",
    "benchmark",
    "benchmark_together",
    "cached_loss",
    "cost_metrics",
    "count_flops",
    "count_parameters",
    "cpu_features",
    "decode_curve",
    "device_choices",
    "device_name",
    "diagnose",
    "gemm_shapes",
    "generation_timing",
    "inference_grid",
    "kv_cache_sizes",
    "matmul_ceiling",
    "matmul_speedup",
    "measure",
    "measure_modes",
    "measure_modes_together",
    "measure_together",
    "memory_bandwidth",
    "model_device",
    "model_size_bytes",
    "native_bf16",
    "op_shares",
    "profile_summary",
    "resolve_device",
    "roofline_point",
    "saved_activation_bytes",
    "speculative_curve",
    "time_calls",
    "timing_device",
    "timing_metrics",
    "timing_plan",
    "track_peak_memory",
    "training_memory",
    "weight_dtype",
]
