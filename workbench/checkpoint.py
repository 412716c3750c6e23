"""Trained weights with the config that made them, saved and loaded safely (``weights_only=True``).

A checkpoint is ``{"config": RunConfig.to_dict(), "model": state_dict}``: enough to rebuild the model
from the registry, e.g. as a distillation teacher.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from .config import RunConfig


def save_checkpoint(path: str | os.PathLike, model: torch.nn.Module, config: RunConfig) -> Path:
    """Write atomically: a crash leaves the old file or none, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save({"config": config.to_dict(), "model": model.state_dict()}, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | os.PathLike, *, data_root: str | os.PathLike = "data") -> tuple[torch.nn.Module, RunConfig]:
    """Rebuild the model a checkpoint was saved from and load its weights.

    Example:
        >>> import tempfile, os
        >>> from workbench import RunConfig, ModelConfig, create_model
        >>> cfg = RunConfig(model=ModelConfig(name="mlp"))
        >>> path = save_checkpoint(os.path.join(tempfile.mkdtemp(), "m.pt"), create_model("mlp", 10, 1, 8), cfg)
        >>> model, again = load_checkpoint(path)
        >>> again == cfg, type(model).__name__
        (True, 'MLP')
    """
    from .data import load_dataset
    from .pipeline import build_model

    if not Path(path).exists():
        raise FileNotFoundError(f"No checkpoint at {path}: give a stored run id or the path of a saved checkpoint.")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not {"config", "model"} <= set(state):
        raise ValueError(f"{path} is not a Workbench checkpoint (expected 'config' and 'model' keys).")
    config = RunConfig.from_dict(state["config"])
    model = build_model(config, load_dataset(config.data.dataset, root=data_root))
    model.load_state_dict(state["model"])
    return model, config
