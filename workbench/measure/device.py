"""Which device to run on, and what that device is called (every number carries the name)."""

from __future__ import annotations

import functools
import platform
import subprocess
import sys

import torch
from torch import nn

from .._errors import ConfigError
from .._registry import unknown_name_error

DEVICE_NAMES = ("auto", "cpu", "cuda", "cuda:N", "mps")


def resolve_device(name: str | torch.device = "auto", *, field: str = "hardware.device") -> torch.device:
    """Turn ``auto``/``cpu``/``cuda``/``cuda:N``/``mps`` into a ``torch.device`` that exists here.

    ``auto`` picks CUDA, then MPS, then CPU. Asking for a GPU this machine lacks raises one line that
    says what to use instead; ``field`` names the config field the request came from.

    Example:
        >>> resolve_device("cpu")
        device(type='cpu')
        >>> resolve_device("auto").type in ("cuda", "mps", "cpu")
        True
    """
    name = str(name)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "mps" if _mps_available() else "cpu"
    kind = name.split(":")[0]
    try:
        device = torch.device(name)
    except RuntimeError:
        kind = None
    if kind not in ("cpu", "cuda", "mps"):
        raise unknown_name_error("device", name, DEVICE_NAMES)
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"CUDA was asked for ({field}='{name}') but this torch build/machine has no CUDA GPU: "
                "use device='cpu' or 'auto', or install a CUDA build of torch."
            )
        count = torch.cuda.device_count()
        index = torch.cuda.current_device() if device.index is None else device.index
        if index >= count:
            raise ConfigError(
                f"{field}='{name}' but only {count} CUDA device(s) are visible: "
                f"use cuda:0 to cuda:{count - 1}, or 'auto'."
            )
        return torch.device("cuda", index)  # with its index, so records say which GPU
    if kind == "mps" and not _mps_available():
        raise ConfigError(
            f"MPS was asked for ({field}='{name}') but this torch build/machine has no Apple MPS GPU: "
            "use device='cpu' or 'auto'."
        )
    return torch.device("cpu") if kind == "cpu" else device


def available_devices() -> list[torch.device]:
    """Every device this machine can time a model on: the CPU first, then the current CUDA GPU or MPS.

    Example:
        >>> available_devices()[0]
        device(type='cpu')
    """
    devices = [torch.device("cpu")]
    if torch.cuda.is_available():
        devices.append(torch.device("cuda", torch.cuda.current_device()))
    if _mps_available():
        devices.append(torch.device("mps"))
    return devices


def device_choices() -> list[str]:
    """The device names a user can pick on this machine (the panel's dropdown): auto, cpu, then the GPUs.

    Example:
        >>> device_choices()[:2]
        ['auto', 'cpu']
    """
    names = ["auto", "cpu"]
    if torch.cuda.is_available():
        names += ["cuda"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if _mps_available():
        names.append("mps")
    return names


def model_device(model: nn.Module) -> torch.device:
    """The device of a model's first parameter or buffer (the CPU for a model that has none).

    Example:
        >>> model_device(nn.Linear(2, 2)), model_device(nn.ReLU())
        (device(type='cpu'), device(type='cpu'))
    """
    return next((t.device for t in [*model.parameters(), *model.buffers()]), torch.device("cpu"))


# What torch itself detects (the same probes its kernels dispatch on), by the name a CPU's flags use.
_CPU_PROBES = {
    "avx2": "_is_avx2_supported",
    "avx512": "_is_avx512_supported",
    "vnni": "_is_vnni_supported",
    "avx512_bf16": "_is_avx512_bf16_supported",
    "amx": "_is_amx_tile_supported",
    "amx_fp16": "_is_amx_fp16_supported",
}


@functools.cache
def cpu_features() -> tuple[str, ...]:
    """The CPU's vector and matrix extensions that decide whether low-precision math is fast here:
    ``vnni``/``amx`` (int8 dot products), ``avx512_bf16``/``amx`` (bf16), ``amx_fp16``; as torch
    detects them, so what is recorded is what its kernels can use.

    Example:
        >>> set(cpu_features()) <= set(_CPU_PROBES)
        True
    """
    return tuple(name for name, probe in _CPU_PROBES.items() if getattr(torch.cpu, probe, lambda: False)())


def native_bf16(device: str | torch.device) -> bool:
    """Whether bf16 math has hardware support on ``device``: emulated bf16 on older CPUs (AVX2 only) is
    several times slower than fp32, so the flags decide, never a guess.

    Example:
        >>> isinstance(native_bf16("cpu"), bool)
        True
    """
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and bool({"avx512_bf16", "amx"} & set(cpu_features()))


def timing_device(measure_device: str, train_device: torch.device) -> torch.device:
    """Where a run times inference first: ``train_device`` for ``same`` and ``all`` (``all`` then adds
    the other devices here), else the device ``measure_device`` names, checked like ``resolve_device``.

    Example:
        >>> timing_device("all", torch.device("cpu")), timing_device("cpu", torch.device("cpu"))
        (device(type='cpu'), device(type='cpu'))
    """
    if measure_device in ("same", "all"):
        return train_device
    return resolve_device(measure_device, field="measure.device")


def device_name(device: str | torch.device = "cpu") -> str:
    """A human name for the hardware behind ``device``: the GPU model, or the CPU model.

    Example:
        >>> isinstance(device_name("cpu"), str) and len(device_name("cpu")) > 0
        True
    """
    device = resolve_device(device, field="device")
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return f"{_cpu_name()} GPU (MPS)"
    return _cpu_name()


def _mps_available() -> bool:
    return hasattr(torch.backends, "mps") and torch.backends.mps.is_available()


@functools.cache
def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    if sys.platform == "darwin":  # platform.processor() only says "arm" or "i386" there
        try:
            out = subprocess.run(
                ["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True, timeout=5
            )
            if out.stdout.strip():
                return out.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return platform.processor() or platform.machine() or "unknown CPU"
