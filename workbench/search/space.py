"""A search space: dotted ``RunConfig`` fields mapped to choices and ranges, plus compression slots.

Each key is either a ``RunConfig`` field (``"train.lr"``, ``"model.width"``, ``"distill.teacher"``) or a
compression slot: ``"compress.<slot>"`` takes a step kind or ``"none"``, and ``"compress.<slot>.<field>"``
sets that step's field, sampled only while the slot holds a step. Slots become steps in the order
they are written. ``when={"key": [values]}`` samples a parameter only while another key holds one of
those values (the teacher only when distilling).

Example:
    >>> space = Space({"train.lr": Float(0.01, 0.3, log=True), "compress.prune": Choice(["none", "prune_unstructured"]),
    ...                "compress.prune.amount": Float(0.3, 0.9)})
    >>> cfg = space.config(RunConfig(), {"train.lr": 0.1, "compress.prune": "prune_unstructured",
    ...                                  "compress.prune.amount": 0.5})
    >>> cfg.train.lr, [s.label() for s in cfg.compress]
    (0.1, ['prune_unstructured(amount=0.5,scope=global,method=l1,finetune_epochs=0)'])
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .._errors import ConfigError, one_line
from ..compress import build_step, step_type
from ..config import RunConfig, field_paths
from ..models import list_models
from ..tasks import get_task

NONE = "none"  # a compression slot that holds no step
# What one search space may name, as JSON: the shape every error about a space's JSON points back to.
SHAPE = (
    '{"KEY": {"float": [low, high]} or {"int": [low, high]} (optional "log": true/false, "step": N) or '
    '{"choice": [values]}, each with an optional "when": {"EARLIER_KEY": [values]}}'
)
_EXTRAS = {"choice": {"when"}, "int": {"step", "log", "when"}, "float": {"step", "log", "when"}}
# Upper bounds, by field name, that a search range must keep and the config sections leave open: one
# trial at the top of a range must finish before the study goes on, so train.epochs = 10**9 (which
# TrainConfig accepts: a single run of any length is the user's call) would stall a study for ever, and
# 10**6 pixels of padding or 10**6 timing iterations would fill the memory or the week. Generous for these
# small models and datasets (the tour trains 6 epochs on 8x8 and 32x32 images). Fields whose section
# bounds them itself (model.width, model.depth) are not here: the check builds the config at both ends.
LIMITS = {
    "epochs": 1000,
    "finetune_epochs": 1000,
    "warmup_epochs": 1000,  # passes over the training data
    "batch_size": 65_536,
    "calibration_batches": 10_000,
    "steps": 100,
    "iters": 100_000,
    "warmup": 100_000,  # timing iterations
    "crop": 256,
    "translate": 256,
    "cutout": 256,
    "tta_shift": 256,  # pixels: past the side of any image here
}


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _finite(value: Any) -> bool:
    try:
        return _number(value) and math.isfinite(value)
    except OverflowError:  # an int past any float: 10**400
        return False


def _plain(value: Any) -> bool:
    """What Optuna stores as a categorical choice (and JSON writes back the same)."""
    return value is None or isinstance(value, (bool, str)) or _finite(value)


@dataclass(frozen=True)
class Choice:
    choices: tuple
    when: Mapping[str, Sequence] = field(default_factory=dict)

    def __init__(self, choices: Sequence, when: Mapping[str, Sequence] | None = None):
        # Text or a mapping is kept as given (not split into letters or keys), so problem() can name it.
        listed = isinstance(choices, (list, tuple, range))
        object.__setattr__(self, "choices", tuple(choices) if listed else choices)
        object.__setattr__(self, "when", dict(when) if isinstance(when, Mapping) else when or {})

    def problem(self) -> str | None:
        if not isinstance(self.choices, tuple):
            return f"takes a list of choices (got {self.choices!r})"
        if not self.choices:
            return "has no choices: give at least one"
        odd = next((c for c in self.choices if not _plain(c)), _MISSING)
        if odd is not _MISSING:
            return f"has the choice {odd!r}: a choice is a finite number, text, true/false or null (what Optuna stores)"
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
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (self.low, self.high, self.step)):
            return f"needs whole numbers (got low={self.low!r}, high={self.high!r}, step={self.step!r})"
        if not isinstance(self.log, bool):
            return f"takes log=True or False (got {self.log!r})"
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
        return {
            "int": [self.low, self.high],
            "step": self.step,
            "log": self.log,
            **({"when": self.when} if self.when else {}),
        }


@dataclass(frozen=True)
class Float:
    low: float
    high: float
    log: bool = False
    step: float | None = None  # sample on a grid (not with log): readable values, repeats a cache can reuse
    when: Mapping[str, Sequence] = field(default_factory=dict)

    def problem(self) -> str | None:
        if not all(_finite(v) for v in (self.low, self.high)):
            return f"needs finite numbers (got low={self.low!r}, high={self.high!r})"
        if not isinstance(self.log, bool):
            return f"takes log=True or False (got {self.log!r})"
        if self.step is not None and not _finite(self.step):
            return f"takes a finite number as step (got {self.step!r})"
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
        return {
            "float": [self.low, self.high],
            "log": self.log,
            **({"step": self.step} if self.step else {}),
            **({"when": self.when} if self.when else {}),
        }


Param = Choice | Int | Float
_MISSING = object()


class Space:
    """Named parameters (``Choice``, ``Int``, ``Float``) over a base ``RunConfig``; see the module doc."""

    def __init__(self, params: Mapping[str, Param]):
        if not isinstance(params, Mapping):
            raise ConfigError(
                f"A search space is a dict of dotted keys to Choice, Int or Float, e.g. "
                f"{{'train.lr': Float(0.01, 0.3, log=True)}} (got {_shown(params)})"
            )
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
            # A step of the slot, and of those its own ``when`` allows (a field that only one step has).
            out[slot] = tuple(c for c in self.params[slot].choices if c != NONE and c in out.get(slot, (c,)))
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
                steps.append(build_step(kind, {k[len(prefix) :]: v for k, v in values.items() if k.startswith(prefix)}))
        return base.replace(**fields, compress=steps)

    def slots(self) -> list[str]:
        return [k for k in self.params if k.startswith("compress.") and k.count(".") == 1]

    def check(self, base: RunConfig) -> None:
        """Every problem a trial would hit, before any trains: one ``ConfigError`` line naming the key."""
        known = set(field_paths()) - {"compress", "name"}
        if not self.params:
            raise ConfigError(
                "The search space is empty: give at least one parameter, e.g. {'train.lr': Float(0.01, 0.3, log=True)}"
            )
        order = list(self.params)
        for name, param in self.params.items():
            if not isinstance(name, str):
                raise ConfigError(f"Search space key {name!r} is not text: name a config field, e.g. 'train.lr'")
            if not isinstance(param, (Choice, Int, Float)):
                raise ConfigError(f"Search space '{name}': {param!r} is not a Choice, Int or Float")
            problem = param.problem()
            if problem:
                raise ConfigError(f"Search space '{name}' {problem}")
            parts = name.split(".")
            if parts[0] == "compress":
                slot = f"compress.{parts[1]}" if len(parts) == 3 else name
                if len(parts) not in (2, 3) or slot not in self.params or order.index(slot) > order.index(name):
                    raise ConfigError(
                        f"Search space '{name}': a compression key is compress.SLOT (a step kind or 'none') "
                        f"or compress.SLOT.FIELD after its slot"
                    )
                if len(parts) == 2:
                    if not isinstance(param, Choice):
                        raise ConfigError(
                            f"Search space '{name}' is a compression slot: make it a Choice of step kinds and 'none'"
                        )
                    for kind in param.choices:
                        if kind != NONE:
                            try:
                                step_type(kind)
                            except ConfigError as e:
                                raise ConfigError(f"Search space '{name}': {e}") from None
            elif name not in known:
                from .._registry import unknown_name_error

                raise ConfigError(f"Search space: {unknown_name_error('config field', name, sorted(known))}")
            self._check_when(name, order)
        for name, param in self.params.items():  # each value alone on the base config, as the config checks it
            for value in param.extremes():
                values = self._completed({name: value})
                try:
                    self.config(base, values)
                except (ConfigError, ValueError, TypeError) as e:
                    raise ConfigError(
                        f"Search space '{name}' = {value!r} is refused by the config: {one_line(e)}"
                    ) from None
            leaf = name.rsplit(".", 1)[-1]
            top = max((v for v in param.extremes() if _number(v)), default=None)
            if leaf in LIMITS and top is not None and top > LIMITS[leaf]:
                raise ConfigError(
                    f"Search space '{name}' reaches {top!r}: a search keeps {name} at most {LIMITS[leaf]}, "
                    f"since each trial must finish before the study goes on"
                )

    def _check_when(self, name: str, order: list[str]) -> None:
        """``name``'s condition names earlier keys, and values they can take: else it is never sampled."""
        when = self.params[name].when
        if not isinstance(when, Mapping):
            raise ConfigError(f"Search space '{name}': when takes {{'EARLIER_KEY': [values]}} (got {_shown(when)})")
        for key, allowed in when.items():
            if key == name:
                raise ConfigError(
                    f"Search space '{name}': its condition names '{name}' itself: name a key written before it"
                )
            if key not in self.params or order.index(key) > order.index(name):
                raise ConfigError(
                    f"Search space '{name}': its condition names '{key}', which must be a key written before it"
                )
            if not isinstance(allowed, (list, tuple)) or not allowed:
                raise ConfigError(
                    f"Search space '{name}': its condition on '{key}' takes a non-empty list of values "
                    f"(got {_shown(allowed)})"
                )
            never = [v for v in allowed if not _can_take(self.params[key], v)]
            if never:
                raise ConfigError(
                    f"Search space '{name}': its condition wants '{key}' = {never[0]!r}, which '{key}' never "
                    f"takes ({_range_text(self.params[key])}), so '{name}' would never be sampled"
                )

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
    def from_dict(cls, d: Mapping[str, Mapping]) -> Space:
        """The inverse of ``to_dict`` (how a study stores its space for its workers, and how the CLI reads
        one from JSON): anything of another shape is one ``ConfigError`` line naming ``SHAPE``.

        Example:
            >>> Space.from_dict({"train.lr": {"float": [0.01, 0.3], "log": "yes"}})
            Traceback (most recent call last):
            ...
            workbench.ConfigError: Search space 'train.lr': "log" takes true or false (got 'yes')
        """
        if not isinstance(d, Mapping):
            raise ConfigError(f"A search space is a JSON object of the shape {SHAPE} (got {_json_type(d)})")
        params: dict[str, Param] = {}
        for name, spec in d.items():
            params[name] = _param(name, spec)
        return cls(params)


def _param(name: str, spec: Any) -> Param:
    """One key's JSON as a parameter; its values are checked later by ``Space.check``."""
    if not isinstance(spec, Mapping):
        raise ConfigError(
            f'Search space \'{name}\': write {{"float": [low, high]}}, {{"int": [low, high]}} or '
            f'{{"choice": [values]}} (got {_shown(spec)})'
        )
    kinds = [k for k in _EXTRAS if k in spec]
    if len(kinds) != 1:
        raise ConfigError(
            f'Search space \'{name}\': give exactly one of "float", "int" or "choice" '
            f'(got {", ".join(map(repr, kinds)) or "none"}), e.g. {{"float": [0.01, 0.3], "log": true}}'
        )
    kind = kinds[0]
    unknown = sorted(map(str, set(spec) - {kind} - _EXTRAS[kind]))
    if unknown:
        raise ConfigError(
            f"Search space '{name}': \"{kind}\" takes {', '.join(sorted(_EXTRAS[kind]))} besides, "
            f"not {', '.join(unknown)}"
        )
    if "log" in spec and not isinstance(
        spec["log"], bool
    ):  # "yes" and "false" are both truthy: JSON true or false only
        raise ConfigError(f"Search space '{name}': \"log\" takes true or false (got {_shown(spec['log'])})")
    when = spec.get("when") or {}
    if kind == "choice":
        if not isinstance(spec["choice"], list):
            raise ConfigError(
                f"Search space '{name}': \"choice\" takes a list of values (got {_shown(spec['choice'])})"
            )
        return Choice(spec["choice"], when=when)
    span = spec[kind]
    if not (isinstance(span, list) and len(span) == 2):
        raise ConfigError(
            f"Search space '{name}': \"{kind}\" takes [low, high], two numbers (got {_shown(span)}), "
            f'e.g. {{"{kind}": {[1, 4] if kind == "int" else [0.01, 0.3]}}}'
        )
    if kind == "int":
        return Int(*span, step=spec.get("step", 1), log=spec.get("log", False), when=when)
    return Float(*span, log=spec.get("log", False), step=spec.get("step"), when=when)


def _can_take(param: Param, value: Any) -> bool:
    """Whether sampling ``param`` can give ``value`` (a condition on any other value never holds)."""
    if isinstance(param, Choice):
        return value in param.choices  # as Space.active compares
    if not _finite(value) or not param.low <= value <= param.high:
        return False
    if isinstance(param, Int):
        return value == int(value) and (param.log or (int(value) - param.low) % param.step == 0)
    # A continuous float equals a given value with probability zero: only a grid (step) can hit it.
    return (
        param.step is not None and abs(round((value - param.low) / param.step) * param.step + param.low - value) < 1e-9
    )


def _range_text(param: Param) -> str:
    if isinstance(param, Choice):
        return f"its choices are {list(param.choices)}"
    grid = f" in steps of {param.step}" if param.step is not None and not (isinstance(param, Int) and param.log) else ""
    if isinstance(param, Float) and param.step is None:
        return f"it is a continuous Float in [{param.low}, {param.high}]: give it a step, or make it a Choice"
    return f"it spans [{param.low}, {param.high}]{grid}"


def _json_type(value: Any) -> str:
    name = {list: "a list", str: "text", bool: "true/false", type(None): "null", int: "a number", float: "a number"}
    return f"{name.get(type(value), type(value).__name__)} {_shown(value)}"


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _nearest(param: Param, value: Any) -> Any:
    if isinstance(param, Choice):
        return value if value in param.choices else (NONE if NONE in param.choices else param.choices[0])
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return param.low
    nearest = min(param.high, max(param.low, value))
    return int(nearest) if isinstance(param, Int) else float(nearest)


def default_space(models: Sequence[str] = ("mlp", "cnn", "resnet20"), task: str = "image") -> Space:
    """Architecture, training and compression in one space, over registry models that train in
    seconds to minutes on a CPU; for ``task="lm"`` a GPT's shape (layers, width, heads, context), its
    learning rate and batch size, and its compression: heads and MLP pruned, int8 or low-bit weights.

    Example:
        >>> [k for k in default_space().params if k.startswith("compress.")]  # doctest: +NORMALIZE_WHITESPACE
        ['compress.prune', 'compress.prune.amount', 'compress.finetune', 'compress.finetune.epochs',
         'compress.quantize']
        >>> list(default_space(task="lm").params)  # doctest: +NORMALIZE_WHITESPACE
        ['model.depth', 'model.n_embd', 'model.n_head', 'model.block_size', 'train.lr', 'train.batch_size',
         'compress.prune', 'compress.prune.heads', 'compress.prune.mlp', 'compress.finetune', 'compress.quantize',
         'compress.quantize.bits']
    """
    if task == "lm":  # every width here divides by every head count
        return Space(
            {
                "model.depth": Int(1, 6),
                "model.n_embd": Choice([64, 96, 128, 192]),
                "model.n_head": Choice([2, 4]),
                "model.block_size": Choice([32, 64, 128]),
                "train.lr": Float(5e-4, 5e-3, log=True),
                "train.batch_size": Choice([16, 32, 64]),
                "compress.prune": Choice([NONE, "prune_gpt"]),
                "compress.prune.heads": Choice([0.0, 0.5]),  # of 2 or 4 heads: none, or half of them
                "compress.prune.mlp": Float(0.0, 0.75, step=0.25),
                "compress.finetune": Choice([NONE, "finetune"]),
                "compress.quantize": Choice([NONE, "dynamic_int8", "low_bit"]),
                "compress.quantize.bits": Choice([3, 4, 8], when={"compress.quantize": ["low_bit"]}),
            }
        )
    get_task(task)  # an unknown task: one line naming the tasks
    unknown = [m for m in models if m not in list_models()]
    if unknown:
        from .._registry import unknown_name_error

        raise unknown_name_error("model", unknown[0], list_models())
    return Space(
        {
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
        }
    )
