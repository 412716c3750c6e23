"""A deployable bundle: one folder with the exported model files and a model card saying how to feed them.

```
bundle/
  card.json    what the model is and how well it travels: accuracy, parameters, bytes per file,
               input shape and normalisation, class names, opset, versions, parity, latency
  model.onnx   the ONNX graph (format "onnx" or "both")
  model.pt2    the torch.export program (format "torch-export" or "both")
```

Inputs are raw pixels, 0-255, batch x channels x height x width, as the dataset stores them; the card's
``input.mean`` / ``input.std`` (per channel, 0-1 scale) normalise them exactly as training did, so a
client never needs Workbench to call the model right.

Example:
    >>> import json, tempfile, torch
    >>> from pathlib import Path
    >>> folder = Path(tempfile.mkdtemp())
    >>> card = {"input": {"shape": [1, 2, 2], "mean": [0.5], "std": [0.25], "pixel_range": [0, 255]},
    ...         "classes": ["a", "b"], "files": {}}
    >>> _ = (folder / CARD_FILE).write_text(json.dumps(card))
    >>> bundle = load_bundle(folder)
    >>> bundle.input_shape, bundle.preprocess(torch.full((1, 1, 2, 2), 255, dtype=torch.uint8)).flatten().tolist()
    ((1, 2, 2), [2.0, 2.0, 2.0, 2.0])
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .._errors import one_line
from .._untrusted import UnsafeFileError, load_export_program

CARD_FILE = "card.json"
FILES = {"onnx": "model.onnx", "torch-export": "model.pt2"}  # format -> file name inside a bundle
WEIGHT_FILES = {"safetensors": "model.safetensors", "state_dict": "model.pt"}
TOKENIZER_FILE = "tokenizer.json"
LM_CARD_SCHEMA = "workbench-lm-card/1"
BUNDLE_FILES = {CARD_FILE, *FILES.values(), *WEIGHT_FILES.values(), TOKENIZER_FILE}  # all a bundle may hold


@dataclass(frozen=True)
class Bundle:
    """A bundle folder read back: its path and card, the preprocessing the card states and a predictor."""

    path: Path
    card: dict[str, Any]

    @property
    def task(self) -> str:
        """``image`` or ``lm`` (a language model: weights and a tokenizer, served by ``POST /generate``)."""
        return self.card.get("task", "image")

    @property
    def input_shape(self) -> tuple[int, ...]:
        """(C, H, W) of one image."""
        return tuple(self.card["input"]["shape"])

    @property
    def classes(self) -> list[str]:
        return list(self.card["classes"])

    @property
    def formats(self) -> list[str]:
        """The formats whose files are here, ONNX first."""
        return [f for f in FILES if f in self.card.get("files", {}) and (self.path / FILES[f]).is_file()]

    def preprocess(self, pixels: torch.Tensor) -> torch.Tensor:
        """Raw pixels (0-255; uint8 or float; N x C x H x W) -> the float32 input the model was trained on."""
        spec = self.card["input"]
        c = len(spec["mean"])
        mean = torch.tensor(spec["mean"], dtype=torch.float32).reshape(1, c, 1, 1)
        std = torch.tensor(spec["std"], dtype=torch.float32).reshape(1, c, 1, 1)
        return (pixels.to(torch.float32) / 255 - mean) / std

    def predictor(
        self, fmt: str = "auto", *, threads: int | None = None, verify: bool = True
    ) -> Callable[[torch.Tensor], torch.Tensor]:
        """A callable ``normalised batch -> logits`` over one of the bundle's files: ONNX Runtime (CPU,
        ``threads`` intra-op threads) for ``onnx``, the ``torch.export`` program for ``torch-export``;
        ``auto`` takes ONNX where the bundle has it. The file is read once, checked (``verified_bytes``)
        and loaded from those bytes, so what runs is what was checked; nothing in it is unpickled."""
        have = self.formats
        if not have:
            raise ValueError(
                f"{self.path} holds no model file ({', '.join(FILES.values())}): export one with "
                "workbench export RUN_ID --out DIR"
            )
        fmt = have[0] if fmt == "auto" else fmt
        if fmt not in have:
            raise ValueError(f"{self.path} has no {fmt} file; it has: {', '.join(have)}")
        data = self.verified_bytes(fmt) if verify else (self.path / FILES[fmt]).read_bytes()
        if fmt == "onnx":
            from ..measure.onnx import onnxruntime_session

            try:
                return onnxruntime_session(data, threads=threads)
            except Exception as e:  # noqa: BLE001  (ONNX Runtime's own error types: one line for any)
                raise ValueError(
                    f"{self.path / FILES[fmt]} is not an ONNX graph ONNX Runtime can load "
                    f"({one_line(e)[:160]}): export the run again"
                ) from None
        program = load_export_program(io.BytesIO(data), name=str(self.path / FILES[fmt])).module()
        return torch.no_grad()(program)

    def verified_bytes(self, fmt: str) -> bytes:
        """The bytes of the bundle's ``fmt`` file, checked as ``verified_file`` checks them."""
        return self.verified_file(FILES[fmt], self.card.get("files", {}).get(fmt))

    def verified_file(self, name: str, entry: Any) -> bytes:
        """The bytes of the bundle's file ``name``, refused with one line unless it is a regular file inside
        the bundle (a link that leaves the folder is not followed) whose SHA-256 is ``entry``'s (its card
        entry)."""
        path = self.path / name
        inside = path.resolve().is_relative_to(self.path.resolve())
        if not inside:
            raise UnsafeFileError(
                f"{path} links outside its bundle (to {path.resolve()}): refused; copy the file "
                "into the bundle or export the run again"
            )
        expected = entry.get("sha256") if isinstance(entry, dict) else None
        if not isinstance(expected, str):
            raise UnsafeFileError(
                f"{self.path / CARD_FILE} names no sha256 for {path.name}, so the file cannot be "
                "checked: export the run again"
            )
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != expected.lower():
            raise UnsafeFileError(
                f"{path} is not the file its card describes (sha256 differs: replaced, truncated "
                "or from another export): export the run again"
            )
        return data


def load_bundle(path: str | os.PathLike) -> Bundle:
    """Read a bundle folder (or its ``card.json``); one line naming the fix when it is not one.

    Example:
        >>> load_bundle("/no/such/bundle")
        Traceback (most recent call last):
        ...
        FileNotFoundError: No bundle at /no/such/bundle: write one with workbench export RUN_ID --out /no/such/bundle
    """
    path = Path(path)
    if path.name == CARD_FILE:
        path = path.parent
    if not path.is_dir():
        raise FileNotFoundError(f"No bundle at {path}: write one with workbench export RUN_ID --out {path}")
    card_path = path / CARD_FILE
    if not card_path.is_file():
        raise FileNotFoundError(
            f"{path} has no {CARD_FILE}, so it is not a Workbench bundle: write one with "
            f"workbench export RUN_ID --out {path}"
        )
    try:
        card = json.loads(card_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise ValueError(f"{card_path} is not a model card ({type(e).__name__}): export the run again") from None
    if isinstance(card, dict) and card.get("task") == "lm":
        if problem := lm_card_problem(card):
            raise ValueError(f"{card_path}: {problem}: export the run again with workbench export")
    else:
        _check_card(card, card_path)
    return Bundle(path, card)


def _check_card(card: Any, card_path: Path) -> None:
    """The card fields serving relies on, checked before anything loads: one ``ValueError`` line naming
    ``card_path`` and the field. ``classes`` a list of strings; ``input.shape`` [C, H, W], positive
    integers (C <= 64, H and W <= 8192); ``input.mean`` and ``input.std`` one finite number per channel,
    ``std`` > 0 (a zero would divide every input by zero); ``files``, where present, an object.

    Example:
        >>> _check_card({"input": {"shape": [1, 8, 8], "mean": [0.5], "std": [0]}, "classes": ["a"]},
        ...             Path("b/card.json"))  # doctest: +NORMALIZE_WHITESPACE
        Traceback (most recent call last):
        ...
        ValueError: b/card.json: input.std must be a list of 1 finite number > 0, one per channel of input.shape
            (got [0]): export the run again with workbench export
    """
    import math

    max_channels, max_side = 64, 8192  # an input shape beyond these is a corrupt card, not a model to serve

    def bad(field: str, wants: str, got: Any) -> ValueError:
        shown = json.dumps(got)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        return ValueError(
            f"{card_path}: {field} must be {wants} (got {shown}): export the run again with workbench export"
        )

    if not isinstance(card, dict):
        raise ValueError(
            f"{card_path} is not a model card (a JSON {type(card).__name__}, not an object): "
            "export the run again with workbench export"
        )
    spec = card.get("input")
    missing = [k for k in ("input", "classes") if k not in card] + [
        f"input.{k}" for k in ("shape", "mean", "std") if isinstance(spec, dict) and k not in spec
    ]
    if missing:
        raise ValueError(f"{card_path} lacks {', '.join(missing)}: export the run again with workbench export")
    if not isinstance(spec, dict):
        raise bad("input", "an object with shape, mean and std", spec)
    classes = card["classes"]
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise bad("classes", "a list of class names (strings)", classes)
    shape = spec["shape"]
    if (
        not isinstance(shape, list)
        or len(shape) != 3
        or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in shape)
        or shape[0] > max_channels
        or max(shape[1:]) > max_side
    ):
        raise bad("input.shape", f"[C, H, W], 3 positive integers (C <= {max_channels}, H and W <= {max_side})", shape)
    channels = shape[0]
    for key in ("mean", "std"):
        values = spec[key]
        numbers = isinstance(values, list) and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in values
        )
        if (
            not numbers
            or len(values) != channels
            or not all(math.isfinite(v) for v in values)
            or (key == "std" and not all(v > 0 for v in values))
        ):
            wants = f"{channels} finite number{'s' * (channels != 1)}{' > 0' if key == 'std' else ''}, one per channel"
            raise bad(f"input.{key}", f"a list of {wants} of input.shape", values)
    if "files" in card and not isinstance(card["files"], dict):
        raise bad("files", "an object (format -> file)", card["files"])


def lm_card_problem(card: dict[str, Any]) -> str | None:
    """What a language-model card lacks for serving (None if nothing)."""
    files = card.get("files")
    if not isinstance(files, dict) or not all(isinstance(files.get(k), dict) for k in ("weights", "tokenizer")):
        return "files.weights and files.tokenizer must be objects"
    if files["weights"].get("format") not in WEIGHT_FILES:
        return f"files.weights.format must be one of {', '.join(WEIGHT_FILES)}"
    for entry in files.values():
        name = entry.get("file")
        if not isinstance(name, str) or "/" in name or "\\" in name or name.startswith("."):
            return f"file {name!r} must be a plain name inside the bundle"
    args = card.get("model", {}).get("args") if isinstance(card.get("model"), dict) else None
    if not isinstance(args, dict) or not all(
        k in args for k in ("vocab_size", "n_layer", "n_head", "n_embd", "block_size")
    ):
        return "model.args must hold the GPT's vocab_size, n_layer, n_head, n_embd and block_size"
    return None
