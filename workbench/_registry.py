"""Small named registries (timm's ``register_model`` / ``create_model`` / ``list_models``).

Every registry raises the same kind of error for an unknown name: it lists the valid names and the
closest match, so the message alone tells the user what to type.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

T = TypeVar("T")


def unknown_name_error(kind: str, name: str, valid: Iterable[str]) -> ValueError:
    """A one-line error for an unknown name that lists the valid ones and the closest match.

    Example:
        >>> str(unknown_name_error("optimizer", "adamz", ["adam", "sgd"]))
        "Unknown optimizer 'adamz'. Did you mean 'adam'? Choose one of: adam, sgd."
    """
    valid = sorted(valid)
    close = difflib.get_close_matches(str(name), valid, n=1, cutoff=0.5)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    return ValueError(f"Unknown {kind} '{name}'.{hint} Choose one of: {', '.join(valid)}.")


class Registry(Generic[T]):
    """A name -> object table with a decorator to fill it.

    Example:
        >>> colors = Registry("color")
        >>> @colors.register("red")
        ... def red():
        ...     return "#f00"
        >>> colors.get("red")()
        '#f00'
        >>> colors.names()
        ['red']
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._items[name] = obj
            return obj

        return add

    def get(self, name: str) -> T:
        if name not in self._items:
            raise unknown_name_error(self.kind, name, self._items)
        return self._items[name]

    def check(self, name: str) -> None:
        self.get(name)

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items
