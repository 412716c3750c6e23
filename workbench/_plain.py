"""Config dataclass trees to plain JSON-able dicts and back; unknown keys fail with one line.

Example:
    >>> from dataclasses import dataclass, field
    >>> @dataclass(frozen=True)
    ... class Inner:
    ...     sizes: tuple = (1, 2)
    >>> @dataclass(frozen=True)
    ... class Outer:
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
from typing import Any

from ._errors import ConfigError


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


def from_plain(cls: type, d: dict[str, Any]) -> Any:
    """Rebuild ``cls`` from ``to_plain`` output, recursing into nested dataclass fields."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(d) - set(fields)
    if unknown:
        raise ConfigError(f"Unknown field(s) {', '.join(sorted(unknown))} for {cls.__name__}. Known: {', '.join(fields)}.")
    kwargs = {}
    for name, value in d.items():
        section = _section_type(fields[name])
        if section is not None and isinstance(value, dict):
            value = from_plain(section, value)
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[name] = value
    return cls(**kwargs)


def _section_type(f: dataclasses.Field) -> type | None:
    """The dataclass type of a nested section, read off its default (every section has one)."""
    default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
    return type(default) if dataclasses.is_dataclass(default) else None
