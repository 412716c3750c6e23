"""A search space: dotted ``RunConfig`` fields mapped to choices and ranges, plus compression slots.

Each key is either a ``RunConfig`` field (``"train.lr"``, ``"model.width"``, ``"distill.teacher"``) or a
compression slot: ``"compress.<slot>"`` takes a step kind or ``"none"``, and ``"compress.<slot>.<field>"``
sets that step's field, sampled only while the slot holds a step. Slots become steps in the order
they are written. ``when={"key": [values]}`` samples a parameter only while another key holds one of
those values (the teacher only when distilling).

Example:
    >>> space = Space({"train.lr": Float(0.01, 0.3, log=True), "compress.prune": Choice(["none", "prune_unstructured"]),
    ...                "compress.prune.amount": Float(0.3, 0.9)})
    >>> cfg = space.config(RunConfig(), {"train.lr": 0.1, "compress.prune": "prune_unstructured", "compress.prune.amount": 0.5})
    >>> cfg.train.lr, [s.label() for s in cfg.compress]
    (0.1, ['prune_unstructured(amount=0.5,scope=global,method=l1)'])
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from .._errors import ConfigError
from ..compress import build_step, step_type
from ..config import RunConfig, field_paths
from ..models import list_models

NONE = "none"  # a compression slot that holds no step


@dataclass(frozen=True)
class Choice:
    choices: tuple
    when: Mapping[str, Sequence] = field(default_factory=dict)

    def __init__(self, choices: Sequence, when: Mapping[str, Sequence] | None = None):
        object.__setattr__(self, "choices", tuple(choices))
        object.__setattr__(self, "when", dict(when or {}))

    def problem(self) -> str | None:
        if not self.choices:
            return "has no choices: give at least one"
        if len(set(map(repr, self.choices))) < len(self.choices):
            return f"repeats a choice in {list(self.choices)}"
        return None

    def extremes(self) -> tuple:
        return self.choices

    def suggest(self, trial, name: str):
        return trial.suggest_categorical(name, self.choices)

    def neighbours(self, value) -> list:
        return [c for c in self.choices if c != value]

    def to_dict(self) -> dict:
        return {"choice": list(self.choices), **({"when": self.when} if self.when else {})}


@dataclass(frozen=True)
class Int:
    low: int
    high: int
    step: int = 1
    log: bool = False
    when: Mapping[str, Sequence] = field(default_factory=dict)

    def problem(self) -> str | None:
        if not (isinstance(self.low, int) and isinstance(self.high, int) and isinstance(self.step, int)):
            return f"needs whole numbers (got low={self.low!r}, high={self.high!r}, step={self.step!r})"
        if self.low > self.high:
            return f"has low {self.low} > high {self.high}: swap them"
        if self.step < 1 or (self.log and self.low < 1):
            return f"needs step >= 1{' and low >= 1 on a log scale' if self.log else ''}"
        return None

    def extremes(self) -> tuple:
        return (self.low, self.high)

    def suggest(self, trial, name: str):
        return trial.suggest_int(name, self.low, self.high, step=self.step, log=self.log)

    def neighbours(self, value) -> list:
        moves = (value // 2, value * 2) if self.log else (value - self.step, value + self.step)
        return sorted({min(self.high, max(self.low, v)) for v in moves} - {value})

    def to_dict(self) -> dict:
        return {"int": [self.low, self.high], "step": self.step, "log": self.log, **({"when": self.when} if self.when else {})}


@dataclass(frozen=True)
class Float:
    low: float
    high: float
    log: bool = False
    step: float | None = None  # sample on a grid (not with log): readable values, repeats a cache can reuse
    when: Mapping[str, Sequence] = field(default_factory=dict)

    def problem(self) -> str | None:
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in (self.low, self.high)):
            return f"needs finite numbers (got low={self.low!r}, high={self.high!r})"
        if self.low > self.high:
            return f"has low {self.low} > high {self.high}: swap them"
        if self.log and self.low <= 0:
            return f"is on a log scale, so low must be > 0 (got {self.low})"
        if self.step is not None and (self.log or not self.step > 0):
            return f"takes a step > 0 only on a linear scale (got step={self.step!r}, log={self.log})"
        return None

    def extremes(self) -> tuple:
        return (float(self.low), float(self.high))

    def suggest(self, trial, name: str):
        value = trial.suggest_float(name, self.low, self.high, log=self.log, step=self.step)
        return round(value, 12) if self.step else value  # 0.6, not the grid's 0.6000000000000001, in labels

    def neighbours(self, value) -> list:
        # A step a greedy search can see: a factor of 2 on a log scale, a quarter of the range otherwise.
        delta = self.step or (self.high - self.low) / 4
        moves = (value / 2, value * 2) if self.log else (value - delta, value + delta)
        return sorted({round(min(self.high, max(self.low, v)), 10) for v in moves} - {value})

    def to_dict(self) -> dict:
        return {"float": [self.low, self.high], "log": self.log, **({"step": self.step} if self.step else {}),
                **({"when": self.when} if self.when else {})}


Param = Choice | Int | Float


class Space:
    """Named parameters (``Choice``, ``Int``, ``Float``) over a base ``RunConfig``; see the module doc."""

    def __init__(self, params: Mapping[str, Param]):
        self.params = dict(params)

    def __repr__(self) -> str:
        return f"Space({', '.join(self.params)})"

    # -- what is active ------------------------------------------------------------------------
    def conditions(self, name: str) -> dict[str, tuple]:
        """The keys (and values) that must hold for ``name`` to be sampled: its ``when`` and, for a
        compression field, its slot holding a step."""
        out = {k: tuple(v) for k, v in self.params[name].when.items()}
        parts = name.split(".")
        if parts[0] == "compress" and len(parts) == 3:
            slot = f"compress.{parts[1]}"
            out[slot] = tuple(c for c in self.params[slot].choices if c != NONE)
        return out

    def active(self, name: str, values: Mapping[str, Any]) -> bool:
        return all(k in values and values[k] in allowed for k, allowed in self.conditions(name).items())

    def suggest(self, trial) -> dict[str, Any]:
        """Ask an Optuna trial for every active parameter, in order (a condition names an earlier key)."""
        values: dict[str, Any] = {}
        for name, param in self.params.items():
            if self.active(name, values):
                values[name] = param.suggest(trial, name)
        return values

    # -- from values to a config -----------------------------------------------------------------
    def config(self, base: RunConfig, values: Mapping[str, Any]) -> RunConfig:
        """``base`` with ``values`` applied: config fields replaced, compression slots built into steps
        (after ``base``'s own steps)."""
        fields = {k: v for k, v in values.items() if not k.startswith("compress.")}
        steps = list(base.compress)
        for slot in self.slots():
            kind = values.get(slot, NONE)
            if kind != NONE:
                prefix = slot + "."
                steps.append(build_step(kind, {k[len(prefix):]: v for k, v in values.items() if k.startswith(prefix)}))
        return base.replace(**fields, compress=steps)

    def slots(self) -> list[str]:
        return [k for k in self.params if k.startswith("compress.") and k.count(".") == 1]

    def check(self, base: RunConfig) -> None:
        """Every problem a trial would hit, before any trains: one ``ConfigError`` line naming the key."""
        known = set(field_paths()) - {"compress", "name"}
        if not self.params:
            raise ConfigError("The search space is empty: give at least one parameter, e.g. {'train.lr': Float(0.01, 0.3, log=True)}")
        for name, param in self.params.items():
            if not isinstance(param, (Choice, Int, Float)):
                raise ConfigError(f"Search space '{name}': {param!r} is not a Choice, Int or Float")
            problem = param.problem()
            if problem:
                raise ConfigError(f"Search space '{name}' {problem}")
            parts = name.split(".")
            if parts[0] == "compress":
                order = list(self.params)
                slot = f"compress.{parts[1]}" if len(parts) == 3 else name
                if len(parts) not in (2, 3) or slot not in self.params or order.index(slot) > order.index(name):
                    raise ConfigError(f"Search space '{name}': a compression key is compress.SLOT (a step kind or 'none') "
                                      f"or compress.SLOT.FIELD after its slot")
                if len(parts) == 2:
                    if not isinstance(param, Choice):
                        raise ConfigError(f"Search space '{name}' is a compression slot: make it a Choice of step kinds and 'none'")
                    for kind in param.choices:
                        if kind != NONE:
                            try:
                                step_type(kind)
                            except ConfigError as e:
                                raise ConfigError(f"Search space '{name}': {e}") from None
            elif name not in known:
                from .._registry import unknown_name_error
                raise ConfigError(f"Search space: {unknown_name_error('config field', name, sorted(known))}")
            for key in param.when:
                if key not in self.params or list(self.params).index(key) > list(self.params).index(name):
                    raise ConfigError(f"Search space '{name}': its condition names '{key}', which must be a key written before it")
        for name, param in self.params.items():  # each value alone on the base config, as the config checks it
            for value in param.extremes():
                values = self._completed({name: value})
                try:
                    self.config(base, values)
                except (ConfigError, ValueError, TypeError) as e:
                    raise ConfigError(f"Search space '{name}' = {value!r} is refused by the config: {e}") from None

    def _completed(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """``values`` plus the first extreme of every other key needed to make them active."""
        out = dict(values)
        for name in list(values):
            for key, allowed in self.conditions(name).items():
                out.setdefault(key, allowed[0] if allowed else NONE)
        return out

    def baseline(self, base: RunConfig) -> dict[str, Any]:
        """The values that describe ``base`` itself (slots 'none'; a field outside its range or choices
        takes the nearest allowed value): where a greedy search starts."""
        flat = base.flat()
        values: dict[str, Any] = {}
        for name, param in self.params.items():
            if not self.active(name, values):
                continue
            current = NONE if name.startswith("compress.") and name.count(".") == 1 else flat.get(name)
            values[name] = _nearest(param, current)
        return values

    def to_dict(self) -> dict[str, dict]:
        return {k: p.to_dict() for k, p in self.params.items()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Mapping]) -> "Space":
        """The inverse of ``to_dict`` (how a study stores its space for its workers)."""
        params: dict[str, Param] = {}
        for name, spec in d.items():
            when = spec.get("when")
            if "choice" in spec:
                params[name] = Choice(spec["choice"], when=when)
            elif "int" in spec:
                params[name] = Int(*spec["int"], step=spec.get("step", 1), log=spec.get("log", False), when=when or {})
            elif "float" in spec:
                params[name] = Float(*spec["float"], log=spec.get("log", False), step=spec.get("step"), when=when or {})
            else:
                raise ConfigError(f"Search space '{name}': write {{'choice': [...]}}, {{'int': [low, high]}} or {{'float': [low, high]}}")
        return cls(params)


def _nearest(param: Param, value: Any) -> Any:
    if isinstance(param, Choice):
        return value if value in param.choices else (NONE if NONE in param.choices else param.choices[0])
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return param.low
    nearest = min(param.high, max(param.low, value))
    return int(nearest) if isinstance(param, Int) else float(nearest)


def default_space(models: Sequence[str] = ("mlp", "cnn", "resnet20")) -> Space:
    """Architecture, training and compression in one space, over registry models that train in
    seconds to minutes on a CPU.

    Example:
        >>> [k for k in default_space().params if k.startswith("compress.")]
        ['compress.prune', 'compress.prune.amount', 'compress.finetune', 'compress.finetune.epochs', 'compress.quantize']
    """
    unknown = [m for m in models if m not in list_models()]
    if unknown:
        from .._registry import unknown_name_error
        raise unknown_name_error("model", unknown[0], list_models())
    return Space({
        "model.name": Choice(models),
        "model.width": Float(0.25, 1.0, step=0.125),
        "model.batchnorm": Choice([True, False]),
        "model.dropout": Float(0.0, 0.3, step=0.05),
        "train.optimizer": Choice(["sgd", "sgd_nesterov", "adamw"]),
        "train.lr": Float(0.003, 0.3, log=True),
        "train.batch_size": Choice([32, 64, 128]),
        "data.augment.crop": Choice([0, 2]),
        "compress.prune": Choice([NONE, "prune_unstructured", "prune_structured"]),
        "compress.prune.amount": Float(0.2, 0.7, step=0.05),
        "compress.finetune": Choice([NONE, "finetune"]),  # after pruning, before quantizing: slots keep this order
        "compress.finetune.epochs": Int(1, 2),
        "compress.quantize": Choice([NONE, "dynamic_int8", "weight_only_int8"]),
    })
