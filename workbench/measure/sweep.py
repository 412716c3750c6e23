"""Inference speed over the grid that decides deployment: batch size x precision x execution mode."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from .bench import benchmark_together
from .device import device_name, resolve_device
from .modes import _prepare, compile_room, skip_reason

SWEEP_PRECISIONS = ("fp32", "tf32", "bf16", "fp16")
SWEEP_MODES = ("eager", "compiled", "max-autotune")


def inference_grid(
    model: nn.Module,
    input_shape_chw: Sequence[int],
    *,
    batch_sizes: Sequence[int] = (1, 8, 64, 256),
    precisions: Sequence[str] = ("fp32", "bf16"),
    modes: Sequence[str] = ("eager", "compiled"),
    device: str | torch.device = "auto",
    channels_last: bool = False,
    warmup: int = 3,
    iters: int = 20,
) -> pd.DataFrame:
    """Latency and throughput of ``model`` per batch size x precision x mode, one row each.

    Precisions: ``fp32`` (strict: no TF32), ``tf32`` (TF32 matmuls and convs, CUDA only), ``bf16`` and
    ``fp16`` (autocast). Modes: ``eager``, ``compiled`` (``torch.compile``, frozen weights) and
    ``max-autotune`` (inductor's kernel search; timed here on CUDA only: on a CPU Inductor's max-autotune
    tunes C++ GEMM templates, a prototype this sweep does not run). The modes of one precision are timed
    together in turns, so load hits them alike. A combination that cannot run here gets a row with
    ``skipped`` saying why, never a made-up number.

    Example:
        >>> df = inference_grid(nn.Linear(8, 2), (8,), batch_sizes=(1, 4), precisions=("fp32",), modes=("eager",),
        ...                     device="cpu", warmup=1, iters=3)
        >>> df[["precision", "mode", "batch_size"]].values.tolist()
        [['fp32', 'eager', 1], ['fp32', 'eager', 4]]
    """
    for name, given, known in (("precision", precisions, SWEEP_PRECISIONS), ("mode", modes, SWEEP_MODES)):
        unknown = [g for g in given if g not in known]
        if unknown:
            raise ValueError(f"Unknown inference_grid {name} {unknown[0]!r}. Choose from: {', '.join(known)}.")
    device = resolve_device(device)
    chw = tuple(input_shape_chw)
    memory_format = torch.channels_last if channels_last and len(chw) == 3 else torch.contiguous_format
    model = model.eval().to(device=device, memory_format=memory_format)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp, compile_room(8 + 2 * len(precisions) * len(modes) * len(batch_sizes)):
        for precision in precisions:
            why_not = _unavailable(precision, None, device)
            runners, skipped = {}, {}
            for mode in modes:
                why_not_mode = why_not or _unavailable(precision, mode, device)
                if why_not_mode:
                    skipped[mode] = why_not_mode
                    continue
                try:
                    with _precision(precision, device):
                        runners[mode] = _runner(model, mode, chw, batch_sizes, device, Path(tmp))
                except Exception as e:  # noqa: BLE001 - one combination failing, however, must not hide the others
                    skipped[mode] = skip_reason("compiled" if mode != "eager" else mode, e)
            by_mode = {
                mode: [
                    {
                        "precision": precision,
                        "mode": mode,
                        "batch_size": int(bs),
                        "latency_ms": None,
                        "device": str(device),
                        "device_name": device_name(device),
                        "skipped": reason,
                    }
                    for bs in batch_sizes
                ]
                for mode, reason in skipped.items()
            }
            if runners:
                with _precision(precision, device):
                    timed = benchmark_together(
                        list(runners.values()),
                        chw,
                        batch_sizes=batch_sizes,
                        device=device,
                        dtype="fp32" if precision in ("fp32", "tf32") else precision,
                        warmup=warmup,
                        iters=iters,
                    )
                by_mode.update(
                    {
                        mode: [{"precision": precision, **r, "mode": mode} for r in records]
                        for mode, records in zip(runners, timed)
                    }
                )
            rows += [row for mode in modes for row in by_mode[mode]]
    df = pd.DataFrame(rows)
    df["channels_last"] = memory_format == torch.channels_last
    return df


def _unavailable(precision: str, mode: str | None, device: torch.device) -> str:
    if mode is None:
        if precision == "tf32" and device.type != "cuda":
            return "TF32 is a CUDA (Ampere or newer) format: on this device fp32 is the same run"
        if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
            return "this GPU has no bfloat16 support"
        return ""
    if mode == "max-autotune" and device.type != "cuda":
        return (
            "max-autotune is timed on a GPU here: Inductor's CPU max-autotune (C++ GEMM templates) is a "
            "prototype this sweep does not run; the compiled row is its CPU counterpart"
        )
    return ""


def _runner(
    model: nn.Module, mode: str, chw: tuple[int, ...], batch_sizes: Sequence[int], device: torch.device, tmp: Path
):
    if mode != "max-autotune":
        return _prepare(model, mode, chw, batch_sizes, device, tmp)
    compiled = torch.compile(model, mode="max-autotune", dynamic=False)
    with torch.inference_mode():
        for bs in batch_sizes:
            compiled(torch.randn(bs, *chw, device=device))
    return compiled


@contextlib.contextmanager
def _precision(precision: str, device: torch.device) -> Iterator[None]:
    """TF32 on for ``tf32`` and off for strict ``fp32`` on CUDA, restored after."""
    if device.type != "cuda":
        yield
        return
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = precision == "tf32"
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before
