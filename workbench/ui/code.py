"""The "Show code" text: readable Python that rebuilds a ``RunConfig`` (and runs it).

Only fields that differ from their defaults are written, so the code reads like a recipe:
``RunConfig(model=ModelConfig(name="resnet20", width=0.5), train=TrainConfig(epochs=3))``.
"""
from __future__ import annotations

import json
import sys
from dataclasses import MISSING, fields, is_dataclass
from typing import Any

from ..config import RunConfig


def _default(f) -> Any:
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return MISSING


def _literal(value: Any, classes: dict[str, type]) -> str:
    if is_dataclass(value):
        return _call(value, classes)
    if isinstance(value, tuple):
        items = [_literal(v, classes) for v in value]
        return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"
    if isinstance(value, str):
        return json.dumps(value)  # double quotes; its escapes are valid Python too
    return repr(value)


def _call(obj: Any, classes: dict[str, type], indent: str = "") -> str:
    """``Cls(field=value, ...)`` with only the non-default fields; ``indent`` puts one per line."""
    classes[type(obj).__name__] = type(obj)
    args = []
    for f in fields(obj):
        value = getattr(obj, f.name)
        if _default(f) is MISSING or value != _default(f):
            args.append(f"{f.name}={_literal(value, classes)}")
    if not args:
        return f"{type(obj).__name__}()"
    if indent:
        return f"{type(obj).__name__}(\n" + "".join(f"{indent}{a},\n" for a in args) + ")"
    return f"{type(obj).__name__}({', '.join(args)})"


def _home(cls: type) -> str:
    """The shortest module path that exports ``cls``: ``workbench`` before ``workbench.compress.pruning``."""
    parts = cls.__module__.split(".")
    for i in range(1, len(parts) + 1):
        module = sys.modules.get(".".join(parts[:i]))
        if module is not None and getattr(module, cls.__name__, None) is cls:
            return module.__name__
    return cls.__module__


def _import_lines(classes: dict[str, type], extra: tuple[str, ...] = ()) -> list[str]:
    by_module: dict[str, list[str]] = {}
    for name, cls in classes.items():
        by_module.setdefault(_home(cls), []).append(name)
    by_module.setdefault("workbench", []).extend(extra)
    return [f"from {m} import {', '.join(sorted(names))}" for m, names in sorted(by_module.items()) if names]


def _code(config: RunConfig, extra: tuple[str, ...] = ()) -> str:
    classes: dict[str, type] = {}
    body = _call(config, classes, indent="    ")
    return "\n".join(_import_lines(classes, extra)) + f"\n\nconfig = {body}"


def config_code(config: RunConfig) -> str:
    """Python that rebuilds ``config`` as ``config = RunConfig(...)``, with its imports.

    Example:
        >>> from workbench import ModelConfig, TrainConfig
        >>> code = config_code(RunConfig(model=ModelConfig(name="resnet20", width=0.5), train=TrainConfig(epochs=3)))
        >>> print(code)
        from workbench import ModelConfig, RunConfig, TrainConfig
        <BLANKLINE>
        config = RunConfig(
            model=ModelConfig(name="resnet20", width=0.5),
            train=TrainConfig(epochs=3),
        )
        >>> namespace = {}
        >>> exec(code, namespace)
        >>> namespace["config"] == RunConfig(model=ModelConfig(name="resnet20", width=0.5), train=TrainConfig(epochs=3))
        True
    """
    return _code(config)


def run_code(config: RunConfig, store: str = "runs") -> str:
    """``config_code`` plus the ``run`` call that reproduces the run into ``store``.

    Example:
        >>> print(run_code(RunConfig()).splitlines()[-1])
        result = run(config, store="runs")
    """
    return _code(config, extra=("run",)) + f"\nresult = run(config, store={json.dumps(str(store))})"
