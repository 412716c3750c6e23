"""``RunConfig``: the single description of an experiment, composed of the parts' own sections.

Each part owns and validates its section (data: ``DataConfig``; models: ``ModelConfig``; train:
``TrainConfig``, ``HardwareConfig``, ``ParallelConfig``, ``DistillConfig``, ``EvalConfig``; measure:
``MeasureConfig``; compress: the ``CompressStep`` configs). This module only composes them: JSON round
trips, hashes, dotted fields. Widgets edit a ``RunConfig``, a search samples them, the CLI parses one, a
notebook writes one. Every leaf field is a ``setting()`` that describes itself (``_plain.leaf_settings``):
the CLI's flags and the panel's controls are generated from those descriptions.

Example:
    >>> from workbench import ModelConfig, TrainConfig
    >>> cfg = RunConfig(model=ModelConfig(name="mlp"), train=TrainConfig(epochs=2))
    >>> RunConfig.from_dict(cfg.to_dict()) == cfg
    True
    >>> cfg.config_hash() == RunConfig.from_dict(cfg.to_dict()).config_hash()
    True
    >>> cfg.replace(**{"measure.iters": 5}).training_hash() == cfg.training_hash()  # timing is not training
    True
    >>> TrainConfig(lr=-1)
    Traceback (most recent call last):
    ...
    workbench.ConfigError: train.lr must be > 0 (got -1.0)
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from ._errors import ConfigError, require
from ._plain import Checked, from_plain, setting, to_plain
from .compress import CompressStep
from .data import DataConfig
from .measure import MeasureConfig
from .models import ModelConfig
from .tasks import list_tasks, task_of
from .train import DistillConfig, EvalConfig, HardwareConfig, ParallelConfig, TrainConfig

# The sections that decide what training produces; two runs equal in these train the same weights.
TRAINING_SECTIONS = ("task", "data", "model", "train", "hardware", "parallel", "distill")


@dataclass(frozen=True)
class RunConfig(Checked):
    """One experiment: its task, the parts' sections (``help(TrainConfig)`` and the others list their
    settings), the compression steps and a name."""

    task: str = setting(
        "image",
        help="image (classify images) or lm (a language model: predict the next token of a text)",
        label="task",
        choices=list_tasks,
        not_in_panel="the panel's task switch sets it, with the task's dataset and model",
    )
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    hardware: HardwareConfig = field(default_factory=HardwareConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    measure: MeasureConfig = field(default_factory=MeasureConfig)
    evaluation: EvalConfig = field(default_factory=EvalConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    compress: tuple[CompressStep, ...] = setting(
        (),
        help="compression steps, applied in order after training",
        not_in_panel="the Compression tab's step list edits it (Add step, Add recommended pruning)",
    )
    name: str = setting("", help="a label for tables and charts; not part of the hash", label="run name")

    def check(self) -> None:
        problems = task_of(self).problems(self)
        if problems:
            raise ConfigError(problems[0])

    def to_dict(self) -> dict[str, Any]:
        d = to_plain(self)
        d["compress"] = [s.to_dict() for s in self.compress]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        require(
            isinstance(d, dict),
            "A RunConfig is a JSON object with a task and the sections data, model, train, hardware, "
            f"parallel, measure, evaluation, distill, compress and a name (got {type(d).__name__})",
        )
        d = dict(d)
        steps = d.pop("compress", ())
        require(isinstance(steps, (list, tuple)), f"compress must be a list of steps (got {steps!r})")
        steps = tuple(CompressStep.from_dict(s) for s in steps)
        return from_plain(cls, {**d, "compress": steps})

    def to_json(self, **kw: Any) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, **kw)

    @classmethod
    def from_json(cls, text: str) -> RunConfig:
        return cls.from_dict(json.loads(text))

    def config_hash(self) -> str:
        """Short stable hash of everything that changes the outcome (the name is left out)."""
        d = self.to_dict()
        d.pop("name")
        return _hash(d)

    def training_hash(self) -> str:
        """Short stable hash of the sections that decide the trained weights (``TRAINING_SECTIONS``):
        runs equal here can share one training (``workbench.run`` reuses it)."""
        d = self.to_dict()
        return _hash({k: d[k] for k in TRAINING_SECTIONS})

    def label(self) -> str:
        """How tables, charts, bars and cards name the run: its ``name``, else its model's.

        Example:
            >>> RunConfig().label(), RunConfig(name="baseline").label()
            ('cnn', 'baseline')
        """
        return self.name or self.model.name

    def flat(self) -> dict[str, Any]:
        """Dotted keys, one per leaf field: ``{"model.name": "cnn", "data.augment.flip": False, ...}``."""
        out: dict[str, Any] = {}
        for key, value in self.to_dict().items():
            if key == "compress":
                out["compress"] = " -> ".join(s.label() for s in self.compress) or "none"
            elif isinstance(value, dict):
                out.update(_flatten(value, key))
            else:
                out[key] = value
        return out

    def replace(self, **changes: Any) -> RunConfig:
        """Replace fields by dotted path: ``cfg.replace(**{"train.lr": 0.1, "model.name": "mlp"})``."""
        d = self.to_dict()
        for path, value in changes.items():
            node = d
            *parents, leaf = path.split(".")
            for p in parents:
                if p not in node or not isinstance(node[p], dict):
                    raise ConfigError(f"Unknown config field '{path}'. Fields: {', '.join(sorted(field_paths()))}.")
                node = node[p]
            if leaf not in node:
                raise ConfigError(f"Unknown config field '{path}'. Fields: {', '.join(sorted(field_paths()))}.")
            node[leaf] = (
                [s.to_dict() if isinstance(s, CompressStep) else s for s in value] if leaf == "compress" else value
            )
        return RunConfig.from_dict(d)


def _hash(d: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]


def _flatten(d: dict[str, Any], prefix: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}.{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key))
        else:
            out[key] = tuple(v) if isinstance(v, list) else v
    return out


def field_paths() -> list[str]:
    """Every dotted field path a user can set (for ``RunConfig.replace`` and the CLI)."""
    return list(RunConfig().flat())
