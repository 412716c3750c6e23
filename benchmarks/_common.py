"""What every benchmark script records beside its numbers: device, versions, threads, time."""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import torch

from workbench._files import atomic_write_text
from workbench.measure import device_name

RESULTS = Path(__file__).resolve().parent / "results"


def environment(device: torch.device) -> dict:
    return {
        "device": str(device),
        "device_name": device_name(device),
        "torch_version": torch.__version__,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def save(name: str, payload: dict) -> Path:
    """``results/<name>-<device>.json``: one file per benchmark and device kind, replaced on re-run."""
    path = RESULTS / f"{name}-{payload['environment']['device'].split(':')[0]}.json"
    atomic_write_text(path, json.dumps(payload, indent=1))
    return path
