"""What every compression step shares: the ``CompressStep`` config base, the one table of steps
(step type -> the function that applies it), the context a step runs in, fine-tuning, and the one
parser that turns ``kind:key=value,...`` text into a step (the CLI's ``--compress`` and the panel's
step form).

One verb per capability (torchao's ``quantize_(model, Config())``): each step config is a frozen
``CompressStep`` dataclass that checks itself and describes itself (its ``family``, what it
``needs``, the execution ``modes`` that run its model, its ``advice`` when it costs accuracy), and
``apply_step`` looks its function up in the table ``implements`` fills, as torchao's
``_QUANTIZE_CONFIG_HANDLER``. Everything else (the CLI, the panel, preflight, ``quantize``, the
ledger) reads the table and those attributes, so a new step is one module and one import line.

Example:
    >>> step = parse_step("finetune:epochs=2,lr=0.01")
    >>> step, CompressStep.from_dict(step.to_dict()) == step
    (FineTune(epochs=2, lr=0.01, lr_factor=0.1), True)
    >>> sorted({t.family for t in step_types().values()})
    ['cache', 'cast', 'fine-tuning', 'int8', 'pruning', 'simulated', 'sparsity', 'weight-only']
"""

from __future__ import annotations

import ast
import dataclasses
import json
import platform
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from tqdm.auto import tqdm

from .._errors import ConfigError
from .._plain import Checked, from_plain, to_plain
from .._registry import unknown_name_error
from ..measure import MEASURE_MODES
from ..train import HardwareConfig, ProgressBar, TrainConfig, train

# What a step does to the model. The workbench reasons about these: ``prune`` and ``quantize`` apply
# the PRUNING and QUANTIZATION families, the ledger explains each one's latency, the panel shows the text.
FAMILIES = {
    "fine-tuning": "trains the compressed model a little more to win back accuracy",
    "pruning": "removes whole channels: fewer FLOPs and parameters, smaller dense layers",
    "sparsity": "zeroes single weights: the tensors stay dense, so dense kernels do the same work",
    "int8": "int8 weights and activations, run by int8 kernels (once converted)",
    "weight-only": "low-bit weights dequantized as they are used; activations stay float",
    "cast": "every weight in a 16-bit float type",
    "cache": "the KV cache in a smaller type: less memory per token of context, the weights untouched",
    "simulated": "weights rounded to fewer bits but kept as floats: what the bits cost in quality, not speed",
}
PRUNING = ("pruning", "sparsity")
QUANTIZATION = ("int8", "weight-only", "cast")
# What a step may need, in the words messages use. Devices and machines are checked by
# ``CompressStep.problem`` before training; training batches by ``apply_step``.
NEEDS = {
    "data": "training batches (to calibrate or fine-tune on)",
    "cpu": "the model on the CPU",
    "x86": "an x86 CPU",
    "gpu": "the model on a CUDA GPU",
}
X86_MACHINES = ("x86_64", "amd64", "i386", "i686")

_APPLY: dict[type, Callable[..., torch.nn.Module]] = {}  # the one table of steps: step type -> its function


class CompressStep(Checked):
    """Base of the compression steps listed in ``RunConfig.compress`` (prune, fine-tune, quantize...).

    A step is a frozen dataclass with a unique ``kind`` whose function ``implements`` registers, so
    configs round-trip through JSON, and its fields are type-checked like every config's (messages
    name them ``StepClass.field``). The class attributes below describe the step to the rest of the
    workbench; ``problem(device)`` turns ``needs`` into the one line that stops a run before training
    rather than after it.
    """

    kind: ClassVar[str] = ""  # its name in configs, --compress and the panel
    family: ClassVar[str] = ""  # a key of FAMILIES: what it does to the model
    needs: ClassVar[frozenset[str]] = frozenset()  # keys of NEEDS
    kernels: ClassVar[str] = ""  # what runs its model, named when a device cannot
    modes: ClassVar[tuple[str, ...]] = ()  # the execution modes (MEASURE_MODES) that run its model; () = all
    advice: ClassVar[str] = ""  # what to try when it costs accuracy (the run's warning)
    not_faster: ClassVar[str] = ""  # why its model may not be faster, where the step knows better than its family
    tasks: ClassVar[tuple[str, ...]] = ("image",)  # the tasks (workbench.tasks) whose models it applies to

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.field_prefix = cls.__name__

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **to_plain(self)}

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> CompressStep:
        if not isinstance(d, Mapping):
            raise ConfigError(f"A compression step is a JSON object with its 'kind' and fields (got {d!r})")
        d = dict(d)
        return from_plain(step_type(d.pop("kind", None)), d)

    def label(self) -> str:
        """``kind(field=value,...)``: how tables and charts name the step."""
        return f"{self.kind}({','.join(f'{k}={v}' for k, v in to_plain(self).items())})"

    def model_problem(self, model: torch.nn.Module) -> str | None:
        """Why this step cannot apply to ``model`` (one line; preflight asks it of the config's model, built
        without weights), or None."""
        return None

    def matmul_kind(self) -> str:
        """The products its model's arithmetic runs on, as ``measure.matmul_speedup`` names them (int8,
        int8_dynamic, bf16, fp16), so a diagnostic can time them at the model's layer shapes; "" where
        torch's kernels are not what its model runs."""
        return ""

    def keeps_fake_quant(self) -> bool:
        """Whether its model imitates quantized numbers in float math (QAT before converting): slower
        than the float model by design, to study, not to ship."""
        return False

    @classmethod
    def summary(cls) -> str:
        """One line on what the step does and needs, from its class attributes (the panel shows it).

        Example:
            >>> FineTune.summary().split("; ")  # doctest: +NORMALIZE_WHITESPACE
            ['fine-tuning: trains the compressed model a little more to win back accuracy',
             'needs training batches (to calibrate or fine-tune on)']
        """
        parts = [f"{cls.family}: {FAMILIES[cls.family]}"]
        if cls.needs:
            parts.append("needs " + ", ".join(NEEDS[n] for n in sorted(cls.needs)))
        if cls.modes:
            parts.append("its model runs in " + ", ".join(cls.modes) + " only")
        return "; ".join(parts)

    def problem(self, device: torch.device | str) -> str | None:
        """Why this step cannot run on ``device`` (one line), or None: its ``needs`` of the machine and
        device, each with registered steps of its family (or of any quantization family) that do without."""
        device = torch.device(device)
        name, kernels = type(self).__name__, self.kernels or "its kernels"
        machine = platform.machine().lower()
        if "x86" in self.needs and machine not in X86_MACHINES:
            others = _instead(self, "x86")
            return f"{name} uses {kernels}, which need {NEEDS['x86']}, and this machine is {machine}" + (
                f": use {others} here" if others else ""
            )
        for need, wanted, elsewhere in (("cpu", "cpu", "a GPU"), ("gpu", "cuda", "the CPU")):
            if need in self.needs and device.type != wanted:
                others = _instead(self, need)
                return (
                    f"{name} runs on {kernels}, which need {NEEDS[need]}, but the model is on {device}: "
                    f"train on hardware.device='{wanted}'" + (f", or use {others} on {elsewhere}" if others else "")
                )
        return None


def _instead(step: CompressStep, need: str) -> str:
    """``"A / B"``: the registered steps of ``step``'s family that do without ``need`` (for a quantizer
    with none, those of any quantization family); "" where there are none."""
    others = [t for t in step_types().values() if need not in t.needs]
    same = [t for t in others if t.family == step.family]
    quantizers = [t for t in others if t.family in QUANTIZATION] if step.family in QUANTIZATION else []
    return " / ".join(t.__name__ for t in same or quantizers)


def step_types() -> dict[str, type]:
    """Every registered step type by kind (the table ``implements`` fills)."""
    return {t.kind: t for t in sorted(_APPLY, key=lambda t: t.kind)}


def steps_for(task: str) -> list[str]:
    """The kinds of the registered steps that apply to ``task``'s models.

    Example:
        >>> "dynamic_int8" in steps_for("lm"), "static_int8" in steps_for("lm")
        (True, False)
    """
    return [kind for kind, t in step_types().items() if task in t.tasks]


def step_type(kind: str | None) -> type:
    """The step type registered as ``kind``; an unknown kind lists the valid ones."""
    types = step_types()
    if kind not in types:
        raise ConfigError(str(unknown_name_error("compression step", kind, types)))
    return types[kind]


def build_step(kind: str, values: Mapping[str, Any]) -> CompressStep:
    """A step of ``kind`` from field values; text values are read as the field's type (numbers,
    booleans, tuples of names), so the CLI and the panel's text boxes share one reading.

    Example:
        >>> build_step("finetune", {"epochs": "3"})
        FineTune(epochs=3, lr=0.0, lr_factor=0.1)
    """
    cls = step_type(kind)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    parsed = {}
    for name, value in values.items():
        if name not in fields:
            raise ConfigError(f"{cls.__name__} has no field '{name}'. Fields: {', '.join(fields) or 'none'}.")
        parsed[name] = read_value(value, hints[name], f"{cls.__name__}.{name}") if isinstance(value, str) else value
    return cls(**parsed)


def parse_step(spec: str) -> CompressStep:
    """``"prune_structured:amount=0.5,steps=2"`` -> the step config. A tuple field takes names joined
    by ``+`` (``ignore=conv1+classifier``) or a bracketed list.

    Example:
        >>> parse_step("prune_structured:amount=0.5,ignore=[conv1,layer1]").ignore
        ('conv1', 'layer1')
        >>> parse_step("finetune:epochs")
        Traceback (most recent call last):
        ...
        workbench.ConfigError: Bad compression argument 'epochs' in 'finetune:epochs': write key=value, e.g. amount=0.5.
    """
    kind, _, args = spec.partition(":")
    values = {}
    for pair in _split_top_level(args):
        key, eq, raw = pair.partition("=")
        if not eq:
            raise ConfigError(f"Bad compression argument '{pair}' in '{spec}': write key=value, e.g. amount=0.5.")
        if key.strip() in values:
            raise ConfigError(f"'{key.strip()}' is given twice in '{spec}': give each field once.")
        values[key.strip()] = raw.strip()
    return build_step(kind.strip(), values)


@dataclass
class CompressContext:
    """Everything a step may need besides the model: data to fine-tune or calibrate on, the device,
    and the training recipe a fine-tune reuses."""

    example_input: torch.Tensor  # one normalised batch (N, C, H, W) on ``device``
    train_loader: Iterable | None = None
    eval_loader: Iterable | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    train: TrainConfig = field(default_factory=TrainConfig)
    hardware: HardwareConfig = field(default_factory=HardwareConfig)
    log: list[dict[str, Any]] | None = None  # steps append what they did (sparsity, sizes...) here
    progress: bool = False  # progress bars for fine-tuning, calibration and compiling

    def training_bars(self, desc: str) -> list:
        """The callbacks a step's training passes to ``train``: a progress bar named ``desc`` when asked."""
        return [ProgressBar(desc=desc)] if self.progress else []

    def bar(self, items: Iterable, desc: str, total: int | None = None) -> Iterable:
        """``items`` with a progress bar named ``desc`` when asked."""
        return tqdm(items, desc=desc, total=total, unit="batch") if self.progress else items

    def record(self, **entry: Any) -> None:
        """Append what a step did to the log, when there is one."""
        if self.log is not None:
            self.log.append(entry)


def implements(step_type: type) -> Callable:
    """Register ``step_type`` and the function that applies it, ``fn(model, step, ctx) -> model``: the
    one place a step is registered. Its description is checked here, so a typo fails at import."""

    def add(fn: Callable) -> Callable:
        name = step_type.__name__
        taken = step_types().get(step_type.kind)
        if not step_type.kind or taken not in (None, step_type):
            raise TypeError(f"{name}.kind must be a name no other step has (got {step_type.kind!r})")
        if step_type.family not in FAMILIES:
            raise TypeError(str(unknown_name_error(f"{name}.family", step_type.family, FAMILIES)))
        for attr, valid in (("needs", NEEDS), ("modes", MEASURE_MODES)):
            wrong = set(getattr(step_type, attr)) - set(valid)
            if wrong:
                raise TypeError(f"{name}.{attr} may hold {', '.join(valid)} (got {', '.join(sorted(wrong))})")
        _APPLY[step_type] = fn
        return fn

    return add


def apply_step(model: torch.nn.Module, step: CompressStep, ctx: CompressContext) -> torch.nn.Module:
    """Apply one compression step; returns the (possibly new) model. What the step ``needs`` is checked
    first, so every step fails the same way before any work."""
    if type(step) not in _APPLY:
        raise TypeError(f"No implementation registered for compression step {type(step).__name__}.")
    problem = step.problem(ctx.device)
    if problem:
        raise ValueError(problem)
    if "data" in step.needs and ctx.train_loader is None:
        raise ValueError(
            f"{type(step).__name__} needs {NEEDS['data']}: pass ctx=CompressContext(..., train_loader=...), "
            "or calibration=<loader> to quantize()"
        )
    return _APPLY[type(step)](model, step, ctx)


@dataclass(frozen=True)
class FineTune(CompressStep):
    """Train a little more after compression (cosine schedule) to recover accuracy."""

    kind: ClassVar[str] = "finetune"
    family: ClassVar[str] = "fine-tuning"
    tasks: ClassVar[tuple[str, ...]] = ("image", "lm")
    needs: ClassVar[frozenset[str]] = frozenset({"data"})
    epochs: int = 1
    lr: float = 0.0  # peak lr; 0 = lr_factor times the training lr
    lr_factor: float = 0.1  # with lr 0: the peak lr as a fraction of the training lr

    def check(self) -> None:
        if not self.epochs >= 1:
            raise ConfigError(f"FineTune.epochs must be an integer >= 1 (got {self.epochs})")
        if not self.lr >= 0:
            raise ConfigError(f"FineTune.lr must be >= 0; 0 means lr_factor times the training lr (got {self.lr})")
        if not 0 < self.lr_factor <= 10:
            raise ConfigError(f"FineTune.lr_factor must be in (0, 10] (got {self.lr_factor})")


def finetune(
    model: torch.nn.Module,
    epochs: int,
    lr: float,
    ctx: CompressContext,
    *,
    lr_factor: float = 0.1,
    desc: str = "fine-tune",
) -> dict[str, Any]:
    """Train ``model`` in place for ``epochs`` on ``ctx``'s batches with a cosine schedule from ``lr``
    (0 = ``lr_factor`` times the training lr, warm-up off), with a progress bar when ``ctx.progress``;
    returns what happened, for the log."""
    if ctx.train_loader is None:
        raise ValueError("fine-tuning needs training batches: pass ctx=CompressContext(..., train_loader=...)")
    cfg = dataclasses.replace(
        ctx.train, epochs=epochs, lr=lr or ctx.train.lr * lr_factor, schedule="cosine", warmup_epochs=0.0
    )
    outcome = train(
        model,
        ctx.train_loader,
        cfg,
        eval_loader=ctx.eval_loader,
        hardware=ctx.hardware,
        device=ctx.device,
        callbacks=ctx.training_bars(desc),
    )
    last = outcome.history[-1] if outcome.history else {}
    return {
        "finetune_lr": cfg.lr,
        "finetune_epochs": epochs,
        "status": outcome.status,
        **{k: last[k] for k in ("train_accuracy", "test_accuracy") if k in last},
    }


@implements(FineTune)
def _apply_finetune(model: torch.nn.Module, step: FineTune, ctx: CompressContext) -> torch.nn.Module:
    ctx.record(step=step.kind, **finetune(model, step.epochs, step.lr, ctx, lr_factor=step.lr_factor))
    return model


def _split_top_level(text: str) -> list[str]:
    """Split on commas outside brackets: ``a=1,b=[x,y]`` -> ``["a=1", "b=[x,y]"]``."""
    parts, depth, current = [], 0, ""
    for ch in text:
        depth += ch in "(["
        depth -= ch in ")]"
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    return [p for p in [*parts, current] if p.strip()]


def read_value(text: str, hint: Any, field: str) -> Any:
    """A value typed as text, read as the field's type ``hint``: JSON or Python literals,
    ``true``/``false`` for booleans, bare names for strings, ``a+b`` or ``[a,b]`` for tuples.

    Numbers are read as the field's own type (``10`` for a float field is ``10.0``), so equal
    settings always hash alike.

    Example:
        >>> read_value("4", int, "augment.crop"), read_value("10", float, "augment.rotate"), read_value("on", bool, "x")
        (4, 10.0, True)
        >>> read_value("l1", str, "method"), read_value("2.5", int, "FineTune.epochs")
        Traceback (most recent call last):
        ...
        workbench.ConfigError: FineTune.epochs must be a whole number (got '2.5')
    """
    text = text.strip()
    if hint is str:
        return text
    if hint in (int, float):
        try:
            number = float(text)
        except ValueError:
            raise ConfigError(f"{field} must be a number (got '{text}')") from None
        if hint is int and not number.is_integer():
            raise ConfigError(f"{field} must be a whole number (got '{text}')")
        return hint(number)
    if typing.get_origin(hint) is tuple:
        if text.startswith(("[", "(")):
            if text[-1] != {"[": "]", "(": ")"}[text[0]]:
                raise ConfigError(f"{field} has an unclosed '{text[0]}' (got '{text}'): write [a,b] or a+b")
            return tuple(v.strip().strip("'\"") for v in _split_top_level(text[1:-1]))
        return tuple(v for v in text.split("+") if v) if text else ()
    if hint is bool:
        if text.lower() in ("true", "1", "yes", "on"):
            return True
        if text.lower() in ("false", "0", "no", "off"):
            return False
        raise ConfigError(f"{field} must be true or false (got '{text}')")
    for parse in (json.loads, ast.literal_eval):
        try:
            return parse(text)
        except (ValueError, SyntaxError):
            pass
    return text
