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


def _space_code(space, classes: dict[str, type]) -> str:
    """``default_space()`` when ``space`` is the default one, else a ``Space({...})`` literal."""
    from ..search import Space, default_space

    if space is None or space.to_dict() == default_space().to_dict():
        classes["default_space"] = default_space
        return "default_space()"
    classes["Space"] = Space
    lines = "".join(f"    {json.dumps(key)}: {_literal(param, classes)},\n" for key, param in space.params.items())
    return "Space({\n" + lines + "})"


def search_code(
    config: RunConfig,
    *,
    space=None,
    strategy: str = "nsga2",
    objectives: tuple[str, ...] = ("accuracy", "size_bytes", "latency_ms"),
    constraints: dict[str, float] | None = None,
    n_trials: int = 20,
    timeout: float | None = None,
    storage: str | None = None,
    study_name: str | None = None,
    seed: int = 0,
    store: str = "runs",
) -> str:
    """Python that runs the search the panel's Search tab describes: ``config`` as the base, ``space``
    (``None``: ``default_space()``) and one ``search(...)`` call with the tab's settings.

    Example:
        >>> code = search_code(RunConfig(), strategy="random", objectives=("accuracy",), n_trials=5)
        >>> print(code.splitlines()[-1])
        result = search(space, base=base, strategy="random", objectives=["accuracy"], n_trials=5, store="runs")
        >>> namespace = {}
        >>> exec(code.rpartition("result = ")[0], namespace)  # the settings, without running the search
        >>> namespace["base"] == RunConfig(), list(namespace["space"].params)[:2]
        (True, ['model.name', 'model.width'])
    """
    from ..search import search

    classes: dict[str, type] = {}
    base = _call(config, classes, indent="    ")
    space_text = _space_code(space, classes)
    classes["search"] = search
    args = [f"strategy={json.dumps(strategy)}", f"objectives={json.dumps(list(objectives))}"]
    if constraints:
        args.append(f"constraints={{{', '.join(f'{json.dumps(k)}: {v!r}' for k, v in constraints.items())}}}")
    args.append(f"n_trials={n_trials!r}")
    if timeout is not None:
        args.append(f"timeout={timeout!r}")
    if seed:
        args.append(f"seed={seed!r}")
    if storage:
        args.append(f"storage={json.dumps(storage)}")
    if study_name:
        args.append(f"study_name={json.dumps(study_name)}")
    args.append(f"store={json.dumps(str(store))}")
    call = f"result = search(space, base=base, {', '.join(args)})"
    if len(call) > 110:  # one setting per line once it no longer reads at a glance
        call = "result = search(\n    space,\n    base=base,\n" + "".join(f"    {a},\n" for a in args) + ")"
    return "\n".join(_import_lines(classes)) + f"\n\nbase = {base}\nspace = {space_text}\n{call}"
