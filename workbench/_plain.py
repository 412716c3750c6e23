"""Config dataclasses: their fields checked against their type hints in one place, and their trees
turned into plain JSON-able dicts and back (unknown keys fail with one line).

Every config section derives from ``Checked``: before the class's own range checks (``check``), each
field is checked against its type hint, so ``ModelConfig(width="wide")`` or ``TrainConfig(epochs=2.5)``
is one ``ConfigError`` naming the field, the value and what is allowed, never a bare ``TypeError``
later. Numbers for float fields become floats and lists become tuples, so equal settings hash alike.

Each setting carries its own description: ``setting(default, help=..., label=..., unit=..., range=...,
choices=...)`` is a ``dataclasses.field`` whose metadata the command line's flags (their help and
choices), the panel's controls (slider, dropdown, checkbox or text box) and the class's docstring are
generated from, so a new setting is one edit (``leaf_settings`` walks a config's settings).

Example:
    >>> from dataclasses import dataclass, field
    >>> @dataclass(frozen=True)
    ... class Inner(Checked):
    ...     field_prefix = "inner"
    ...     sizes: tuple = (1, 2)
    >>> @dataclass(frozen=True)
    ... class Outer(Checked):
    ...     inner: Inner = field(default_factory=Inner)
    ...     name: str = ""
    >>> to_plain(Outer())
    {'inner': {'sizes': [1, 2]}, 'name': ''}
    >>> from_plain(Outer, {"inner": {"sizes": [3]}}) == Outer(Inner((3,)))
    True
    >>> from_plain(Outer, {"nmae": "x"})
    Traceback (most recent call last):
    ...
    workbench.ConfigError: Unknown field(s) nmae for Outer. Known: inner, name.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import sys
import textwrap
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

from ._errors import ConfigError, require


class Checked:
    """Base of the config dataclasses: ``__post_init__`` checks every field's type, then ``check()``."""

    field_prefix: ClassVar[str] = ""  # how messages name the fields: "train" gives "train.lr"; "" gives "lr"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """The class's settings (``setting()`` fields) are listed at the end of its docstring: ``help(cls)``."""
        super().__init_subclass__(**kwargs)
        table = describe_settings(cls)
        if table:
            first = cls.__doc__ or f"The {cls.field_prefix or cls.__name__} settings of a run."
            cls.__doc__ = f"{first.rstrip()}\n\n{table}"

    def __post_init__(self) -> None:
        check_types(self, self.field_prefix)
        self.check()

    def check(self) -> None:
        """Range and name checks beyond the types (a subclass's own rules)."""


@dataclasses.dataclass(frozen=True)
class Setting:
    """What one config field says about itself to the command line, the panel and the docs (``setting()``
    makes one; it sits in the field's ``metadata["setting"]``)."""

    help: str  # one line: the flag's help, the control's tooltip, the docstring's entry
    label: str = ""  # the panel control's name; "" = the field's name
    unit: str = ""  # shown after the label and after the default in --help: "px", "epochs"
    range: tuple[float, float] | None = None  # the span of the panel's slider (check() decides what is valid)
    step: float | None = None  # the slider's step
    log: bool = False  # a log-scale slider (a learning rate)
    # the names it takes, listed in --help and offered by the panel's dropdown; a callable (a registry's
    # names) is called only when they are needed, so importing a config stays light
    choices: Sequence[str] | Callable[[], Sequence[str]] = ()
    # the panel's preset values where they differ from the choices: values or (label, value) pairs
    options: Sequence[Any] | Callable[[], Sequence[Any]] = ()
    widget: str = ""  # "toggle": toggle buttons instead of a dropdown
    not_in_panel: str = ""  # why the panel has no control for it; "" = it has one

    def names(self) -> list[str]:
        """The choices, asked of the registry now if they come from one."""
        return list(self.choices() if callable(self.choices) else self.choices)

    def panel_options(self) -> list[Any]:
        """The panel dropdown's options: the presets, else the choices; [] for a slider, checkbox or text."""
        return list(self.options() if callable(self.options) else self.options) or self.names()


def setting(
    default: Any = dataclasses.MISSING,
    *,
    help: str,
    default_factory: Any = dataclasses.MISSING,
    **described: Any,
) -> Any:
    """A dataclass field that describes itself: ``help``, and any of ``Setting``'s other fields (``label``,
    ``unit``, ``range``, ``step``, ``log``, ``choices``, ``options``, ``widget``, ``not_in_panel``).

    Example:
        >>> from dataclasses import dataclass, fields
        >>> @dataclass(frozen=True)
        ... class Knobs(Checked):
        ...     field_prefix = "knobs"
        ...     lr: float = setting(0.1, help="step size", range=(1e-4, 1.0), log=True)
        >>> Knobs().lr, fields(Knobs)[0].metadata["setting"].help
        (0.1, 'step size')
        >>> print(Knobs.__doc__)
        The knobs settings of a run.
        <BLANKLINE>
            Settings (each is a ``workbench run`` flag and, unless noted, a panel control):
                lr: float = 0.1 -- step size
    """
    return dataclasses.field(
        default=default, default_factory=default_factory, metadata={"setting": Setting(help=help, **described)}
    )


def setting_of(f: dataclasses.Field) -> Setting | None:
    """The ``Setting`` of a field made with ``setting()``; None for any other field."""
    return f.metadata.get("setting")


def leaf_settings(cls: type, prefix: str = "") -> dict[str, tuple[Any, Setting | None]]:
    """Dotted path -> (type hint, ``Setting`` or None) for every leaf field of the config class ``cls``,
    its sections recursed into: ``{"train.lr": (float, Setting(help=...)), ...}``."""
    out: dict[str, tuple[Any, Setting | None]] = {}
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        section = _section_type(f)
        if section is not None:
            out.update(leaf_settings(section, f"{prefix}{f.name}."))
        else:
            out[prefix + f.name] = (hints[f.name], setting_of(f))
    return out


def describe_settings(cls: type) -> str:
    """The settings of a config class as text (its docstring ends with it): each one's type, default and
    unit, help, fixed choices, and why the panel leaves it out where it does; "" if it has none."""
    if "__dataclass_fields__" in vars(cls):
        fields = {f.name: f for f in dataclasses.fields(cls)}
    else:  # while the class is being made (Checked.__init_subclass__ runs before @dataclass)
        fields = {name: f for name, f in vars(cls).items() if isinstance(f, dataclasses.Field)}
    annotations = vars(cls).get("__annotations__", {})
    lines = []
    for name, f in fields.items():
        s = setting_of(f)
        if s is None:
            continue
        hint = annotations.get(name, f.type)
        default = (
            " ".join(map(str, filter(None, (repr(f.default), s.unit))))
            if f.default is not dataclasses.MISSING
            else "..."
        )
        text = s.help
        if s.choices and not callable(s.choices) and not all(c in text for c in s.choices):
            text += f"; one of: {', '.join(s.choices)}"
        if s.not_in_panel:
            text += f" [not in the panel: {s.not_in_panel}]"
        head = f"{name}: {hint if isinstance(hint, str) else getattr(hint, '__name__', hint)} = {default}"
        lines.append(textwrap.fill(f"{head} -- {text}", 108, initial_indent=" " * 8, subsequent_indent=" " * 12))
    if not lines:
        return ""
    return "    Settings (each is a ``workbench run`` flag and, unless noted, a panel control):\n" + "\n".join(lines)


def check_types(obj: Any, prefix: str = "") -> None:
    """Check each field of the dataclass ``obj`` against its type hint; coerce where it is lossless
    (an int for a float field, a list for a tuple field).

    Example:
        >>> from dataclasses import dataclass
        >>> @dataclass(frozen=True)
        ... class Knobs:
        ...     lr: float = 0.1
        ...     depth: int | None = None
        ...     sizes: tuple[int, ...] = (1,)
        >>> k = Knobs(lr=1, sizes=[2, 3]); check_types(k, "knobs"); k
        Knobs(lr=1.0, depth=None, sizes=(2, 3))
        >>> check_types(Knobs(depth=2.5), "knobs")
        Traceback (most recent call last):
        ...
        workbench.ConfigError: knobs.depth must be a whole number or None (got 2.5)
        >>> check_types(Knobs(sizes="64"), "knobs")
        Traceback (most recent call last):
        ...
        workbench.ConfigError: knobs.sizes must be a list of whole numbers (got '64')
    """
    hints = _hints(type(obj))
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        fixed = _conform(value, hints[f.name], f"{prefix}.{f.name}" if prefix else f.name)
        if fixed is not value:
            object.__setattr__(obj, f.name, fixed)


def to_plain(obj: Any) -> dict[str, Any]:
    """A dataclass as a dict of plain values: nested dataclasses as dicts, tuples as lists."""
    out = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            value = to_plain(value)
        elif isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    return out


def from_plain(cls: type, d: Mapping[str, Any]) -> Any:
    """Rebuild ``cls`` from ``to_plain`` output, recursing into nested dataclass fields."""
    require(isinstance(d, Mapping), f"{cls.__name__} must be given as a JSON object of its fields (got {_shown(d)})")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(d) - set(fields)
    if unknown:
        raise ConfigError(
            f"Unknown field(s) {', '.join(sorted(map(str, unknown)))} for {cls.__name__}. Known: {', '.join(fields)}."
        )
    kwargs = {}
    for name, value in d.items():
        section = _section_type(fields[name])
        if section is not None and isinstance(value, Mapping):
            value = from_plain(section, value)
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[name] = value
    return cls(**kwargs)


def _section_type(f: dataclasses.Field) -> type | None:
    """The dataclass type of a nested section, read off its default (every section has one)."""
    default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
    return type(default) if dataclasses.is_dataclass(default) else None


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    """Each field's type hint, evaluated; one that names something out of reach (a class defined in a
    function, say) is not checked."""
    try:
        return typing.get_type_hints(cls)
    except NameError:
        namespace = vars(sys.modules[cls.__module__]) if cls.__module__ in sys.modules else {}
        return {f.name: _evaluated(f.type, namespace) for f in dataclasses.fields(cls)}


def _evaluated(annotation: Any, namespace: dict[str, Any]) -> Any:
    if not isinstance(annotation, str):
        return annotation
    try:
        return eval(annotation, dict(namespace))  # noqa: S307  (a type annotation of our own source)
    except NameError:
        return Any


def _conform(value: Any, hint: Any, field: str) -> Any:
    """``value`` as ``hint`` allows it, or a ConfigError saying what ``field`` takes."""
    ok, fixed = _fits(value, hint)
    require(ok, f"{field} must be {_describe(hint)} (got {_shown(value)})")
    return fixed


def _fits(value: Any, hint: Any) -> tuple[bool, Any]:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True, value
    if origin in (typing.Union, types.UnionType):
        for option in args:
            ok, fixed = _fits(value, option)
            if ok:
                return True, fixed
        return False, value
    if hint is type(None):
        return value is None, value
    if hint is bool:
        return isinstance(value, bool), value
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        return ok, float(value) if ok and type(value) is not float else value
    if hint is str:
        return isinstance(value, str), value
    if origin is tuple:
        if not isinstance(value, (tuple, list)):
            return False, value
        items = [_fits(v, args[0]) for v in value] if args else [(True, v) for v in value]
        ok = all(item_ok for item_ok, _ in items)
        fixed = tuple(v for _, v in items)
        return ok, value if ok and isinstance(value, tuple) and all(a is b for a, b in zip(fixed, value)) else fixed
    if isinstance(hint, type):
        return isinstance(value, hint), value
    return True, value


def _describe(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if origin is tuple:
        return f"a list of {_plural(args[0])}" if args else "a list"
    return {
        bool: "true or false",
        int: "a whole number",
        float: "a finite number",
        str: "text",
        type(None): "None",
    }.get(hint) or f"a {getattr(hint, '__name__', hint)}"


def _plural(hint: Any) -> str:
    return {int: "whole numbers", float: "numbers", str: "names"}.get(hint) or f"{getattr(hint, '__name__', hint)}s"


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
