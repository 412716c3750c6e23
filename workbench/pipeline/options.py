"""How ``run`` runs a config, as opposed to what it runs: one frozen object that every phase is handed.

``run``'s keywords (the store, callbacks, progress, resume, reuse, start_from, data_root, tags and
placement) are decided once per call, so they travel together instead of being declared again in each
function they pass through; ``run_many`` and ``sweep`` build the same object from the same keywords.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..report import Result, ResultStore
from ..train import Callback, Placement


@dataclass(frozen=True)
class RunOptions:
    """``run``'s keywords, with ``run``'s defaults; the store is opened and the callbacks and tags copied on
    creation, so from then on ``store`` is a ``ResultStore`` or None and nothing a caller changes later reaches in.

    Example:
        >>> options = RunOptions(store=None, tags={"trial": 3})
        >>> options.store, options.tags, options.reuse
        (None, {'trial': 3}, True)
        >>> RunOptions(stor="runs")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        TypeError: ...got an unexpected keyword argument 'stor'
    """

    store: ResultStore | str | os.PathLike | None = "runs"
    callbacks: Sequence[Callback] = ()
    progress: bool = True
    resume: bool = True
    reuse: bool = True
    start_from: str | Result | None = None
    data_root: str | os.PathLike = "data"
    tags: dict[str, Any] | None = None
    placement: Placement | None = None

    def __post_init__(self) -> None:
        # A frozen dataclass sets its own fields only through object.__setattr__, and only here.
        object.__setattr__(self, "store", ResultStore.open(self.store))
        object.__setattr__(self, "callbacks", tuple(self.callbacks))
        object.__setattr__(self, "tags", dict(self.tags or {}))
