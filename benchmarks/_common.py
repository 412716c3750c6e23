"""What every benchmark script records beside its numbers: device, versions, threads, time."""

from __future__ import annotations

import json
import platform
import tempfile
import time
from pathlib import Path

import torch

from workbench._files import atomic_write_text
from workbench.measure import cpu_features, device_name
from workbench.train import load_average

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


def cpu_environment() -> dict:
    """``environment`` on the CPU, with the CPU's name, the feature flags its kernels choose by, and its load."""
    env = environment(torch.device("cpu"))
    env.update(cpu_name=device_name("cpu"), cpu_features=list(cpu_features()), load_average_before=load_average())
    return env


def trained_model(config) -> tuple:
    """``config`` trained by ``workbench.run`` in a throwaway store: its row, and its model as the run saved it."""
    from workbench import load_model, run

    with tempfile.TemporaryDirectory() as tmp:
        result = run(config, store=Path(tmp) / "runs", progress=False)
        return result, load_model(result.run_id, store=Path(tmp) / "runs")
