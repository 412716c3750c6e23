"""Atomic file writes, shared by the result store, checkpoints and caches.

A writer fills a temporary file with a name of its own in the target's folder, flushes and fsyncs
it, then renames it over the target (``os.replace``, atomic on POSIX and Windows): readers see the
old file or the whole new one, never half of one, and two writers never share a temporary file.

Example:
    >>> import tempfile, torch
    >>> folder = Path(tempfile.mkdtemp())
    >>> atomic_write_text(folder / "a.json", "{}")
    PosixPath('...a.json')
    >>> atomic_torch_save({"x": torch.ones(2)}, folder / "t.pt").name
    't.pt'
    >>> sorted(p.name for p in folder.iterdir())
    ['a.json', 't.pt']
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import IO, Any, Callable


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], Any]) -> Path:
    """Call ``write(f)`` on a fresh temporary file beside ``path``, then move it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) atomically."""
    return atomic_write(path, lambda f: f.write(text.encode()))


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save(obj)`` atomically."""
    import torch

    return atomic_write(path, lambda f: torch.save(obj, f))
