"""Errors that say what to do: invalid config values, missing optional dependencies, one-line causes.

Example:
    >>> require(1 > 2, "train.lr must be > 0 (got -1)")
    Traceback (most recent call last):
    ...
    workbench.ConfigError: train.lr must be > 0 (got -1)
    >>> optional_import("no_such_module", "This feature", "pip install no-such-module")
    Traceback (most recent call last):
    ...
    ImportError: This feature needs no_such_module: pip install no-such-module
"""

from __future__ import annotations

import importlib
import importlib.util
import re
from collections.abc import Sequence
from types import ModuleType


class ConfigError(ValueError):
    """An invalid configuration value; the message names the field and what is allowed."""


ConfigError.__module__ = "workbench"  # tracebacks show the public name, workbench.ConfigError


def require(ok: bool, message: str) -> None:
    """Raise ``ConfigError(message)`` unless ``ok``."""
    if not ok:
        raise ConfigError(message)


def check_positive(section: str, name: str, value: float, allow_zero: bool = False) -> None:
    """``section.name`` must be > 0 (or >= 0 with ``allow_zero``)."""
    if allow_zero:
        require(value >= 0, f"{section}.{name} must be >= 0 (got {value})")
    else:
        require(value > 0, f"{section}.{name} must be > 0 (got {value})")


def has_module(name: str) -> bool:
    """Whether ``name`` can be imported here, without importing it."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def require_modules(modules: Sequence[str], feature: str, pip: str) -> None:
    """Raise one ``ImportError`` line naming the missing optional dependencies and the ``pip install``
    to run (Optuna's ``try_import``): importing ``workbench`` never needs them, using ``feature`` does."""
    missing = [m.split(".")[0] for m in modules if not has_module(m)]
    if missing:
        raise ImportError(f"{feature} needs {', '.join(dict.fromkeys(missing))}: {pip}")


def optional_import(module: str, feature: str, pip: str) -> ModuleType:
    """Import an optional dependency, or fail as ``require_modules`` does."""
    require_modules([module], feature, pip)
    return importlib.import_module(module)


def root_cause(e: BaseException) -> str:
    """``Type: first line`` of the innermost cause: exporters and compilers wrap the real reason in layers.

    Example:
        >>> try:
        ...     try:
        ...         raise KeyError("weight")
        ...     except KeyError as inner:
        ...         raise RuntimeError("export failed at step 1/3") from inner
        ... except RuntimeError as outer:
        ...     root_cause(outer)
        "KeyError: 'weight'"
    """
    while e.__cause__ is not None:
        e = e.__cause__
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(e))  # exporters colour their messages
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    return f"{type(e).__name__}: {line[:160]}" if line else type(e).__name__


def one_line(error: BaseException) -> str:
    """An error as one line for a person: a ``ValueError``'s message is written for the user; any
    other error needs its type to make sense.

    Example:
        >>> one_line(ValueError("bad width\\nmore")), one_line(KeyError("x"))
        ('bad width', "KeyError: 'x'")
    """
    first = (str(error).strip().splitlines() or [""])[0]
    return first if isinstance(error, ValueError) and first else f"{type(error).__name__}: {first}"


class Unavailable(RuntimeError):
    """A runtime or feature this machine or install lacks (no GPU, no TensorRT); the message says why and what
    installs it."""
