"""The single description of an experiment: a validated, serialisable dataclass tree.

Widgets edit a ``RunConfig``, a search samples them, the CLI parses one, a notebook writes one.
Every section checks itself in ``__post_init__`` and fails with one line naming the field.

Example:
    >>> cfg = RunConfig(model=ModelConfig(name="mlp"), train=TrainConfig(epochs=2))
    >>> RunConfig.from_dict(cfg.to_dict()) == cfg
    True
    >>> cfg.config_hash() == RunConfig.from_dict(cfg.to_dict()).config_hash()
    True
    >>> TrainConfig(lr=-1)
    Traceback (most recent call last):
    ...
    workbench.config.ConfigError: train.lr must be > 0 (got -1)
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

PRECISIONS = ("fp32", "bf16", "fp16")
SELECTIONS = ("random", "balanced", "hardest", "easiest")
MEASURE_MODES = ("eager", "compiled", "onnxruntime")


class ConfigError(ValueError):
    """An invalid configuration value; the message names the field and what is allowed."""


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _positive(section: str, name: str, value: float, allow_zero: bool = False) -> None:
    if allow_zero:
        _require(value >= 0, f"{section}.{name} must be >= 0 (got {value})")
    else:
        _require(value > 0, f"{section}.{name} must be > 0 (got {value})")


@dataclass(frozen=True)
class AugmentConfig:
    """Whole-batch augmentations, each switchable; 0 / False means off."""

    flip: bool = False  # random horizontal flip (wrong for digits: a mirrored 3 is not a 3)
    crop: int = 0  # pad by this many pixels, then random-crop back to size
    translate: int = 0  # random shift of up to this many pixels, zero-filled
    cutout: int = 0  # side of a zeroed square at a random place
    rotate: float = 0.0  # maximum rotation in degrees, either way

    def __post_init__(self) -> None:
        for name in ("crop", "translate", "cutout"):
            _positive("augment", name, getattr(self, name), allow_zero=True)
        _require(0 <= self.rotate <= 180, f"augment.rotate must be within [0, 180] degrees (got {self.rotate})")

    @property
    def enabled(self) -> bool:
        return bool(self.flip or self.crop or self.translate or self.cutout or self.rotate)


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "digits"  # a registry name, or folder:PATH for an image folder or a zip of one
    fraction: float = 1.0  # share of the training split to train on
    selection: str = "random"  # how that share is chosen: random, balanced, hardest, easiest
    normalize: bool = True  # subtract the per-channel mean and divide by the std of the train split
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self) -> None:
        _require(0 < self.fraction <= 1, f"data.fraction must be in (0, 1] (got {self.fraction})")
        _require(
            self.selection in SELECTIONS,
            f"data.selection must be one of {', '.join(SELECTIONS)} (got '{self.selection}')",
        )
        from .data import check_dataset_name

        check_dataset_name(self.dataset)


@dataclass(frozen=True)
class ModelConfig:
    name: str = "cnn"  # see workbench.list_models()
    width: float = 1.0  # multiplies every layer's channel count
    depth: int | None = None  # model-specific: blocks per stage (ResNets), layers (MLP, ViT); None = default
    batchnorm: bool = True
    dropout: float = 0.0  # before the classifier

    def __post_init__(self) -> None:
        _positive("model", "width", self.width)
        _require(self.depth is None or self.depth >= 1, f"model.depth must be >= 1 or None (got {self.depth})")
        _require(0 <= self.dropout < 1, f"model.dropout must be in [0, 1) (got {self.dropout})")
        from .models import check_model_name

        check_model_name(self.name)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 5
    batch_size: int = 64
    optimizer: str = "sgd"  # sgd, sgd_nesterov, adam, adamw, rmsprop
    lr: float = 0.05  # peak learning rate (after warm-up)
    momentum: float = 0.9  # for the SGD family and RMSprop
    weight_decay: float = 5e-4
    schedule: str = "cosine"  # constant, step, cosine, onecycle
    warmup_epochs: float = 0.0  # linear warm-up from 0 to lr over this many epochs
    label_smoothing: float = 0.0
    grad_clip: float = 0.0  # max gradient norm; 0 = off
    seed: int = 0

    def __post_init__(self) -> None:
        _require(self.epochs >= 0, f"train.epochs must be >= 0 (got {self.epochs})")
        _positive("train", "batch_size", self.batch_size)
        _positive("train", "lr", self.lr)
        _require(0 <= self.momentum < 1, f"train.momentum must be in [0, 1) (got {self.momentum})")
        _positive("train", "weight_decay", self.weight_decay, allow_zero=True)
        _positive("train", "warmup_epochs", self.warmup_epochs, allow_zero=True)
        _require(0 <= self.label_smoothing < 1, f"train.label_smoothing must be in [0, 1) (got {self.label_smoothing})")
        _positive("train", "grad_clip", self.grad_clip, allow_zero=True)
        from .train.optim import check_optimizer_name, check_schedule_name

        check_optimizer_name(self.optimizer)
        check_schedule_name(self.schedule)


@dataclass(frozen=True)
class HardwareConfig:
    device: str = "auto"  # auto, cpu, cuda, cuda:N, mps; auto picks the best present
    precision: str = "fp32"  # fp32, bf16, fp16 (autocast; fp16 adds a grad scaler)
    channels_last: bool = False  # NHWC memory layout, faster convs on tensor-core GPUs
    compile: bool = False  # torch.compile the model (slow first epoch, faster after)
    tf32: bool = False  # allow TF32 matmuls on Ampere+ GPUs

    def __post_init__(self) -> None:
        _require(
            self.precision in PRECISIONS,
            f"hardware.precision must be one of {', '.join(PRECISIONS)} (got '{self.precision}')",
        )
        _require(
            self.device == "auto" or self.device.split(":")[0] in ("cpu", "cuda", "mps"),
            f"hardware.device must be auto, cpu, cuda, cuda:N or mps (got '{self.device}')",
        )


@dataclass(frozen=True)
class MeasureConfig:
    batch_sizes: tuple[int, ...] = (1, 64)  # latency is measured at each; the largest gives throughput
    warmup: int = 5  # untimed iterations first (caches, allocator, cudnn autotune)
    iters: int = 30  # timed iterations; the median and spread are reported
    device: str = "same"  # where to time inference: same (as training), all (also every other device here), cpu, cuda...
    modes: tuple[str, ...] = ("eager",)  # execution modes to time: eager, compiled, onnxruntime

    def __post_init__(self) -> None:
        object.__setattr__(self, "batch_sizes", tuple(int(b) for b in self.batch_sizes))
        object.__setattr__(self, "modes", tuple(self.modes))
        bad = [m for m in self.modes if m not in MEASURE_MODES]
        _require(not bad and self.modes, f"measure.modes must be among {', '.join(MEASURE_MODES)} (got {self.modes})")
        _require(len(self.batch_sizes) > 0, "measure.batch_sizes must name at least one batch size")
        _require(all(b > 0 for b in self.batch_sizes), f"measure.batch_sizes must be > 0 (got {self.batch_sizes})")
        _positive("measure", "warmup", self.warmup, allow_zero=True)
        _positive("measure", "iters", self.iters)


@dataclass(frozen=True)
class DistillConfig:
    """Knowledge distillation while training: loss = alpha * T^2 * KL(student/T || teacher/T) + (1 - alpha) * CE."""

    teacher: str = ""  # a stored run id or a checkpoint path; empty = no distillation
    alpha: float = 0.7  # weight of the teacher's soft targets
    temperature: float = 4.0  # softens both distributions so the teacher's "dark knowledge" shows

    def __post_init__(self) -> None:
        _require(0 <= self.alpha <= 1, f"distill.alpha must be in [0, 1] (got {self.alpha})")
        _positive("distill", "temperature", self.temperature)

    @property
    def enabled(self) -> bool:
        return bool(self.teacher)


class CompressStep:
    """Base of compression steps listed in ``RunConfig.compress`` (prune, fine-tune, quantize...).

    A step is a frozen dataclass with a unique ``kind``; subclasses register themselves so configs
    round-trip through JSON.
    """

    kind: ClassVar[str] = ""
    _types: ClassVar[dict[str, type]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.kind:
            CompressStep._types[cls.kind] = cls

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **_asdict(self)}

    @staticmethod
    def from_dict(d: dict[str, Any]) -> "CompressStep":
        from . import compress  # noqa: F401  (registers the step types)
        from ._registry import unknown_name_error

        d = dict(d)
        kind = d.pop("kind", None)
        if kind not in CompressStep._types:
            raise unknown_name_error("compression step", kind, CompressStep._types)
        return _build(CompressStep._types[kind], d)


@dataclass(frozen=True)
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    hardware: HardwareConfig = field(default_factory=HardwareConfig)
    measure: MeasureConfig = field(default_factory=MeasureConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    compress: tuple[CompressStep, ...] = ()  # applied in order after training
    name: str = ""  # a label for charts and tables; not part of the hash

    def __post_init__(self) -> None:
        object.__setattr__(self, "compress", tuple(self.compress))
        for step in self.compress:
            _require(isinstance(step, CompressStep), f"compress steps must be CompressStep configs (got {step!r})")

    def to_dict(self) -> dict[str, Any]:
        d = _asdict(self)
        d["compress"] = [s.to_dict() for s in self.compress]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunConfig":
        d = dict(d)
        steps = tuple(CompressStep.from_dict(s) for s in d.pop("compress", ()))
        return _build(cls, {**d, "compress": steps})

    def to_json(self, **kw: Any) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, **kw)

    @classmethod
    def from_json(cls, text: str) -> "RunConfig":
        return cls.from_dict(json.loads(text))

    def config_hash(self) -> str:
        """Short stable hash of everything that changes the outcome (the name is left out)."""
        d = self.to_dict()
        d.pop("name")
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]

    def flat(self) -> dict[str, Any]:
        """Dotted keys, one per leaf field: ``{"model.name": "cnn", "data.augment.flip": False, ...}``."""
        out: dict[str, Any] = {}
        for key, value in self.to_dict().items():
            if key == "compress":
                out["compress"] = " -> ".join(_step_label(s) for s in self.compress) or "none"
            elif isinstance(value, dict):
                out.update(_flatten(value, key))
            else:
                out[key] = value
        return out

    def replace(self, **changes: Any) -> "RunConfig":
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
            node[leaf] = [s.to_dict() if isinstance(s, CompressStep) else s for s in value] if leaf == "compress" else value
        return RunConfig.from_dict(d)


def _step_label(step: CompressStep) -> str:
    args = ",".join(f"{k}={v}" for k, v in _asdict(step).items())
    return f"{step.kind}({args})"


def _asdict(obj: Any) -> dict[str, Any]:
    out = {}
    for f in fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            value = _asdict(value)
        elif isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    return out


def _build(cls: type, d: dict[str, Any]) -> Any:
    """Rebuild a dataclass from a dict, recursing into nested dataclass fields; unknown keys fail."""
    known = {f.name: f for f in fields(cls)}
    unknown = set(d) - set(known)
    if unknown:
        raise ConfigError(f"Unknown field(s) {', '.join(sorted(unknown))} for {cls.__name__}. Known: {', '.join(known)}.")
    kwargs = {}
    for name, value in d.items():
        sub = _DATACLASS_FIELDS.get((cls, name))
        if sub is not None and isinstance(value, dict):
            value = _build(sub, value)
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[name] = value
    return cls(**kwargs)


def _flatten(d: dict[str, Any], prefix: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}.{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key))
        else:
            out[key] = tuple(v) if isinstance(v, list) else v
    return out


_DATACLASS_FIELDS: dict[tuple[type, str], type] = {
    (RunConfig, "data"): DataConfig,
    (RunConfig, "model"): ModelConfig,
    (RunConfig, "train"): TrainConfig,
    (RunConfig, "hardware"): HardwareConfig,
    (RunConfig, "measure"): MeasureConfig,
    (RunConfig, "distill"): DistillConfig,
    (DataConfig, "augment"): AugmentConfig,
}


def field_paths() -> list[str]:
    """Every dotted field path a user can set (for ``RunConfig.replace`` and the CLI)."""
    return list(RunConfig().flat())
