"""Warnings meant for the person who called ``run``: they point at that person's own line.

A fixed ``stacklevel`` ties a warning to how deep the pipeline happens to call it, so moving a function
or adding a layer silently points it at workbench's own code. Here the level is counted at the moment
of warning: the first frame outside the workbench package is the user's (a script, a notebook cell, a
test, or their own helper around ``run``), however many workbench frames stand between.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parents[1]  # the workbench folder: every frame in it is ours


def warn_user(message: str) -> None:
    """``warnings.warn(message)`` reported at the first line outside workbench that led here.

    Example:
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     warn_user("look here")
        >>> caught[0].filename.startswith("<doctest")  # this example's own line, not warn_user's
        True
    """
    warnings.warn(message, stacklevel=_user_stacklevel())


def _user_stacklevel() -> int:
    """The ``stacklevel`` that makes ``warn_user``'s ``warnings.warn`` name the first frame outside workbench
    (1 would name ``warn_user`` itself, 2 its caller, and so on)."""
    frame, level = sys._getframe(2), 2  # warn_user's caller, at level 2
    while frame is not None and _ours(frame.f_code.co_filename):
        frame, level = frame.f_back, level + 1
    return level


def _ours(filename: str) -> bool:
    # "<stdin>", "<doctest ...>", "<frozen runpy>": code with no file is never workbench's.
    return not filename.startswith("<") and Path(filename).resolve().is_relative_to(_PACKAGE)
