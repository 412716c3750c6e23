"""A run's model on disk, as it ends the run (float, pruned or quantized), with the config that made
it and the model's constructor arguments: it rebuilds from the registry without loading any data.

Two formats, both read without unpickling code:

- ``state_dict`` (``.pt``): weights, quantization layout and structure (layer widths a structured
  pruning changed) plus ``{"config", "model_args"}``; read with ``torch.load(weights_only=True)``
  into ``create_model(**model_args)``.
- ``export_program`` (``.pt2``): a pt2e int8 model as a ``torch.export`` archive (graph and int8
  weights) with the same metadata inside; read with ``torch.export.load``.

Example:
    >>> import tempfile, os
    >>> from workbench import RunConfig, ModelConfig, create_model
    >>> cfg = RunConfig(model=ModelConfig(name="mlp"))
    >>> args = {"name": "mlp", "num_classes": 10, "in_channels": 1, "image_size": 8}
    >>> path, fmt = save_checkpoint(os.path.join(tempfile.mkdtemp(), "m.pt"), create_model(**args), cfg, args)
    >>> model, again = load_checkpoint(path)
    >>> again == cfg, type(model).__name__, fmt
    (True, 'MLP', 'state_dict')
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from .._errors import one_line
from ..compress import is_pt2e_program, load_quantized, save_quantized, saved_format, saved_metadata
from ..config import RunConfig
from ..data import Tokenizer, tokenizer_from_dict
from ..models import create_model


def save_checkpoint(
    path: str | os.PathLike,
    model: torch.nn.Module,
    config: RunConfig,
    model_args: dict[str, Any],
    *,
    example_inputs: torch.Tensor | None = None,
    extra: dict[str, Any] | None = None,
) -> tuple[Path, str]:
    """Write ``model`` as it is, atomically; returns the path written and its format. A pt2e int8
    program goes to ``path`` with the suffix ``.pt2`` and needs ``example_inputs`` (one input batch).
    ``extra``: what else rebuilding the run needs, kept beside the model (a language model's tokenizer)."""
    path = Path(path)
    if is_pt2e_program(model):
        path = path.with_suffix(".pt2")
    metadata = {**(extra or {}), "config": config.to_dict(), "model_args": dict(model_args)}
    save_quantized(model, path, example_inputs, metadata=metadata)
    return path, saved_format(path)


def load_checkpoint(path: str | os.PathLike) -> tuple[torch.nn.Module, RunConfig]:
    """Rebuild the model a checkpoint holds (in eval mode, on the CPU) and the config that made it."""
    metadata = checkpoint_metadata(path)
    try:
        model = load_quantized(path, model=create_model(**metadata["model_args"]))
        return model, RunConfig.from_dict(metadata["config"])
    except Exception as e:  # noqa: BLE001  (a file that reads but does not rebuild: same one-line answer)
        raise ValueError(f"{path} does not rebuild into its model ({one_line(e)[:120]})") from None


def checkpoint_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The config and model arguments a checkpoint carries, read without building the model; one line
    (never a loader's traceback) for a file that is missing, foreign or unsafe to unpickle."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No checkpoint at {path}: give a stored run id or the path of a saved checkpoint.")
    try:
        metadata = saved_metadata(path)
    except Exception as e:  # noqa: BLE001  (anything unreadable gets the same one-line answer)
        raise ValueError(
            f"{path} is not a Workbench checkpoint ({type(e).__name__}): give a file a run saved."
        ) from None
    if not {"config", "model_args"} <= set(metadata):
        raise ValueError(
            f"{path} has no model arguments (written by an older Workbench, or by save_quantized alone): "
            "rerun the config that made it to save a current checkpoint."
        )
    return metadata


def load_tokenizer(path: str | os.PathLike) -> Tokenizer:
    """The tokenizer a language model's checkpoint was saved with; one line for an image model's.

    Example:
        >>> import tempfile, os
        >>> from workbench import RunConfig, create_model
        >>> from workbench.data import train_tokenizer
        >>> cfg = RunConfig.from_dict({"task": "lm", "data": {"dataset": "pystdlib"}, "model": {"name": "gpt"}})
        >>> args = {"name": "gpt", "vocab_size": 5, "n_layer": 1, "n_head": 1, "n_embd": 8, "block_size": 4}
        >>> extra = {"tokenizer": train_tokenizer("char", "abcde").to_dict()}
        >>> path, _ = save_checkpoint(os.path.join(tempfile.mkdtemp(), "m.pt"), create_model(**args), cfg, args,
        ...                           extra=extra)
        >>> load_tokenizer(path).decode([4, 0])
        'ea'
    """
    metadata = checkpoint_metadata(path)
    if "tokenizer" not in metadata:
        raise ValueError(f"{path} holds an image model, which has no tokenizer: generate from a language-model run")
    return tokenizer_from_dict(metadata["tokenizer"])
