"""Honest latency and throughput: warm-up, synchronised clocks, many iterations, median and spread."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from .._registry import unknown_name_error
from ..train import load_average
from .config import MeasureConfig
from .counts import count_flops, count_parameters, model_size_bytes, weight_dtype
from .device import cpu_features, device_name, model_device, resolve_device, timing_device

DTYPES = {
    "fp32": torch.float32,
    "float32": torch.float32,
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "fp16": torch.float16,
    "float16": torch.float16,
}
N_INPUTS = 4  # distinct random batches in rotation, so a warm cache of one input does not flatter
# A latency whose interquartile range exceeds this share of its median is flagged noisy. Measured on a
# quiet 2-core AMD EPYC (one thread, 30 iterations): batch 64 spreads 3-21%, sub-millisecond batch-1
# timings 2-65% (OS jitter is as big as the work); with another job running, spreads reach 10x, which
# is what made a same-architecture variant look 15x slower in the tour's report.
NOISY_SPREAD = 0.5
# Models timed together take turns in this many rounds, so a burst of load from another process lands on
# all of them instead of on whichever happened to be timed during it.
ROUNDS = 5


def benchmark(
    model: Callable[[torch.Tensor], Any],
    input_shape_chw: Sequence[int],
    *,
    batch_sizes: Sequence[int] = (1, 64),
    device: str | torch.device = "cpu",
    dtype: torch.dtype | str = torch.float32,
    warmup: int = 5,
    iters: int = 30,
    mode: str = "eager",
) -> list[dict[str, Any]]:
    """Time ``model`` on random batches; one record per batch size.

    ``model`` is any callable taking a batch tensor: an ``nn.Module`` (put in eval mode and moved to
    ``device`` for the timing, then put back), a compiled module, or a wrapper around an exported
    one; ``mode`` only labels the records ("eager", "compiled", "onnxruntime").

    ``dtype`` bf16/fp16 runs the model under ``torch.autocast`` on the device with float32 inputs,
    as mixed-precision training does; a model already cast (``model.half()``) gets inputs of its
    own dtype and no autocast. Inference runs under ``torch.inference_mode()``; on CUDA each
    iteration is timed with CUDA events, on MPS the device is synchronised before reading the
    clock, on CPU ``time.perf_counter`` is used. Latency is the median over ``iters`` with the
    quartiles beside it; throughput is ``batch_size / median``. Each record carries its relative
    spread (interquartile range / median), ``noisy`` where that exceeds ``NOISY_SPREAD``, the thread
    count and the machine's load average, so a number spoiled by a busy machine says so.

    Example:
        >>> rec = benchmark(nn.Linear(8, 2), (8,), batch_sizes=(1, 4), warmup=1, iters=5)
        >>> [r["batch_size"] for r in rec], rec[0]["dtype"], rec[0]["mode"]
        ([1, 4], 'float32', 'eager')
        >>> rec[0]["latency_ms_q25"] <= rec[0]["latency_ms"] <= rec[0]["latency_ms_q75"]
        True
    """
    return benchmark_together(
        [model],
        input_shape_chw,
        batch_sizes=batch_sizes,
        device=device,
        dtype=dtype,
        warmup=warmup,
        iters=iters,
        mode=mode,
    )[0]


def benchmark_together(
    models: Sequence[Callable[[torch.Tensor], Any]],
    input_shape_chw: Sequence[int],
    *,
    batch_sizes: Sequence[int] = (1, 64),
    device: str | torch.device = "cpu",
    dtype: torch.dtype | str = torch.float32,
    warmup: int = 5,
    iters: int = 30,
    mode: str = "eager",
    images: torch.Tensor | None = None,
) -> list[list[dict[str, Any]]]:
    """``benchmark`` for models that will be compared: per batch size each is warmed up, then they take
    turns in ``ROUNDS`` rounds of ``iters / ROUNDS`` timed calls (the order rotating each round), so
    load from another process slows all of them alike instead of the one timed during it. One list
    of records per model, as ``benchmark`` returns.

    ``images`` (N, C, H, W; real, normalised inputs) are cut into the batches every model gets, the
    same ones for all; without them each model gets random batches.

    Example:
        >>> a, b = nn.Linear(8, 2), nn.Linear(8, 2)
        >>> [len(recs) for recs in benchmark_together([a, b], (8,), batch_sizes=(1, 4), warmup=1, iters=5)]
        [2, 2]
    """
    _check_counts(batch_sizes=batch_sizes, warmup=warmup, iters=iters)
    device = resolve_device(device, field="device")
    dtype = _as_dtype(dtype)
    base = {
        "device": str(device),
        "device_name": device_name(device),
        "dtype": str(dtype).removeprefix("torch."),
        "mode": mode,
        "torch_version": torch.__version__,
        "threads": torch.get_num_threads(),
        **({"cpu_features": list(cpu_features())} if device.type == "cpu" else {}),
        "timed_with": uuid.uuid4().hex[:12],  # the same id on every model timed in this call
    }
    out: list[list[dict[str, Any]]] = [[] for _ in models]
    with contextlib.ExitStack() as ready, torch.inference_mode():
        for m in models:
            ready.enter_context(_ready(m, device))
        callers = [_caller(m, dtype, device) for m in models]
        per_round = max(1, -(-iters // ROUNDS))
        for bs in batch_sizes:
            inputs = [
                [_batch(images, bs, i, input_shape_chw, device, input_dtype) for i in range(N_INPUTS)]
                for _, input_dtype in callers
            ]
            for (call, _), xs in zip(callers, inputs):
                for i in range(warmup):
                    call(xs[i % len(xs)])
            seconds: list[list[float]] = [[] for _ in models]
            for r in range(-(-iters // per_round)):
                for j in (np.arange(len(models)) + r) % len(models):
                    n = min(per_round, iters - len(seconds[j]))
                    seconds[j] += _time(callers[j][0], inputs[j], device, start=len(seconds[j]), iters=n)
            for j, times in enumerate(seconds):
                q25, median, q75 = (float(q) for q in np.percentile(times, [25, 50, 75]))
                spread = (q75 - q25) / median if median > 0 else float("inf")
                out[j].append(
                    {
                        "batch_size": int(bs),
                        "latency_ms": 1e3 * median,
                        "latency_ms_q25": 1e3 * q25,
                        "latency_ms_q75": 1e3 * q75,
                        "throughput_ips": bs / median,
                        "relative_spread": spread,
                        "noisy": spread > NOISY_SPREAD,
                        "load_average": load_average(),
                        **base,
                        # A graph only one runtime runs (ONNX Runtime int8) is timed in it, and says so.
                        "mode": getattr(models[j], "runtime", None) or base["mode"],
                    }
                )
    return out


def _batch(
    images: torch.Tensor | None, bs: int, i: int, chw: Sequence[int], device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    """The ``i``-th of the rotating input batches: cut from ``images`` (wrapping round), else random."""
    if images is None:
        return torch.randn(bs, *chw, device=device, dtype=dtype)
    rows = torch.arange(i * bs, (i + 1) * bs) % len(images)
    return images[rows].to(device, dtype if images.is_floating_point() else images.dtype)  # token ids stay ids


def _caller(model: Callable, dtype: torch.dtype, device: torch.device) -> tuple[Callable, torch.dtype]:
    """What to call for one timed batch, and the input dtype: under autocast unless the model is cast already."""
    input_dtype = _input_dtype(model, dtype)
    if input_dtype == dtype:
        return model, input_dtype

    def autocast_call(x: torch.Tensor) -> Any:
        with torch.autocast(device.type, dtype=dtype):
            return model(x)

    return autocast_call, input_dtype


def measure(
    model: nn.Module,
    input_shape_chw: Sequence[int],
    cfg: MeasureConfig,
    device: str | torch.device,
    *,
    dtype: torch.dtype | str = torch.float32,
    mode: str = "eager",
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Everything the results table shows about a model's cost: (metrics, benchmark records).

    Times on ``device`` unless ``cfg.device`` names another (``same`` and ``all`` both mean ``device``
    here; the pipeline times the other devices of ``all`` with ``measure_modes`` and ``timing_plan``).
    Latency comes from the smallest batch size, throughput from the largest; FLOPs are per image (batch of 1).

    Example:
        >>> metrics, records = measure(nn.Linear(8, 2), (8,), MeasureConfig(batch_sizes=(1, 4), warmup=1, iters=3),
        ...                            "cpu")
        >>> metrics["params"], metrics["flops"], metrics["measure_dtype"], len(records)
        (18, 32, 'float32', 2)
    """
    return measure_together([model], input_shape_chw, cfg, device, dtype=dtype, mode=mode)[0]


def measure_together(
    models: Sequence[nn.Module],
    input_shape_chw: Sequence[int],
    cfg: MeasureConfig,
    device: str | torch.device,
    *,
    dtype: torch.dtype | str = torch.float32,
    mode: str = "eager",
    inputs: torch.Tensor | None = None,
) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """``measure`` for models that will be compared, timed interleaved (``benchmark_together``); ``inputs``
    (real examples, e.g. windows of token ids) are what they are timed and counted on instead of random images."""
    device = timing_device(cfg.device, resolve_device(device))
    timed = benchmark_together(
        models,
        input_shape_chw,
        batch_sizes=cfg.batch_sizes,
        device=device,
        dtype=dtype,
        warmup=cfg.warmup,
        iters=cfg.iters,
        mode=mode,
        images=inputs,
    )
    return [
        ({**cost_metrics(m, input_shape_chw, inputs), **timing_metrics(records)}, records)
        for m, records in zip(models, timed)
    ]


def cost_metrics(
    model: nn.Module, input_shape_chw: Sequence[int], inputs: torch.Tensor | None = None
) -> dict[str, Any]:
    """What a model costs before it runs: parameters, non-zero parameters, bytes, weight dtype, FLOPs per
    example (an image of ``input_shape_chw``, or the first of ``inputs``)."""
    return {
        **count_parameters(model),
        "size_bytes": model_size_bytes(model),
        "weight_dtype": weight_dtype(model),
        "flops": count_flops(model, (1, *input_shape_chw), example=None if inputs is None else inputs[:1]),
    }


def timing_metrics(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The results table's timing columns from ``benchmark`` records: latency (with its spread) at the
    smallest batch, throughput at the largest, whether any timing was noisy, and where it ran."""
    small = min(records, key=lambda r: r["batch_size"])
    large = max(records, key=lambda r: r["batch_size"])
    return {
        "latency_ms": small["latency_ms"],
        "latency_ms_spread": small["latency_ms_q75"] - small["latency_ms_q25"],
        "latency_noisy": any(r["noisy"] for r in records),
        "load_average": small["load_average"],
        "throughput_ips": large["throughput_ips"],
        "measure_device": small["device"],
        "measure_device_name": small["device_name"],
        "measure_dtype": small["dtype"],
        "torch_version": small["torch_version"],
    }


def time_calls(
    model: Callable[[torch.Tensor], Any],
    x: torch.Tensor,
    *,
    iters: int = 10,
    device: str | torch.device = "cpu",
    synchronize: bool = True,
) -> list[float]:
    """Milliseconds of each of ``iters`` consecutive calls, with no warm-up: the raw material for
    showing why warm-up matters, and (``synchronize=False`` on a GPU) why an unsynchronised clock
    measures only how fast work was queued.

    Example:
        >>> ms = time_calls(nn.Linear(8, 2), torch.randn(4, 8), iters=3)
        >>> len(ms), all(t > 0 for t in ms)
        (3, True)
    """
    _check_counts(iters=iters)
    device = resolve_device(device, field="device")
    x = x.to(device)
    out = []
    with _ready(model, device), torch.inference_mode():
        for _ in range(iters):
            if synchronize:
                _sync_any(device)
            t0 = time.perf_counter()
            model(x)
            if synchronize:
                _sync_any(device)
            out.append(1e3 * (time.perf_counter() - t0))
    return out


def _check_counts(*, batch_sizes: Sequence[int] = (1,), warmup: int = 0, iters: int = 1) -> None:
    """The same rules as ``MeasureConfig``, for callers that pass the numbers directly."""
    MeasureConfig(
        batch_sizes=tuple(batch_sizes) if isinstance(batch_sizes, (list, tuple)) else batch_sizes,
        warmup=warmup,
        iters=iters,
    )


def _sync_any(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    _sync(device)


def _time(call: Callable, xs: list[torch.Tensor], device: torch.device, *, start: int, iters: int) -> list[float]:
    """Seconds of each of ``iters`` calls, cycling through the inputs from ``xs[start]``."""
    if device.type == "cuda":
        # Events are recorded on the stream, so host-side launch time does not count as GPU time.
        events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(iters)]
        torch.cuda.synchronize(device)
        for i, (begin, end) in enumerate(events):
            begin.record()
            call(xs[(start + i) % len(xs)])
            end.record()
        torch.cuda.synchronize(device)
        return [begin.elapsed_time(end) / 1e3 for begin, end in events]
    seconds = []
    for i in range(iters):
        _sync(device)
        t0 = time.perf_counter()
        call(xs[(start + i) % len(xs)])
        _sync(device)
        seconds.append(time.perf_counter() - t0)
    return seconds


def _sync(device: torch.device) -> None:
    if device.type == "mps":
        torch.mps.synchronize()


@contextlib.contextmanager
def _ready(model: Callable, device: torch.device) -> Iterator[None]:
    """Eval mode on ``device`` for the timing; the model's mode and device are restored after."""
    if not isinstance(model, nn.Module):
        yield
        return
    tensors = [*model.parameters(), *model.buffers()]
    home = model_device(model)
    was_training = model.training
    # Move only when needed: .to() swaps torchao's quantized weights, which a compiled wrapper's weakrefs forbid.
    moving = any(t.device != device for t in tensors)
    model.eval()
    if moving:
        model.to(device)
    try:
        yield
    finally:
        if moving:
            model.to(home)
        model.train(was_training)


def _input_dtype(model: Callable, dtype: torch.dtype) -> torch.dtype:
    """``dtype`` for a model already cast to it, else float32 (then autocast does the low precision)."""
    if isinstance(model, nn.Module):
        floats = [p.dtype for p in model.parameters() if p.is_floating_point()]
        if floats and floats[0] == dtype:
            return dtype
    return torch.float32


def _as_dtype(dtype: torch.dtype | str) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        if dtype not in DTYPES.values():
            raise unknown_name_error("benchmark dtype", str(dtype).removeprefix("torch."), DTYPES)
        return dtype
    if dtype not in DTYPES:
        raise unknown_name_error("benchmark dtype", dtype, DTYPES)
    return DTYPES[dtype]
