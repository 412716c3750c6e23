"""Atomic file writes and per-file locks, shared by the result store, checkpoints and caches.

A writer fills a temporary file with a name of its own in the target's folder, flushes and fsyncs
it, then renames it over the target (``os.replace``, atomic on POSIX and Windows): readers see the
old file or the whole new one, never half of one, and two writers never share a temporary file. A
failed write removes its temporary file and raises one ``OSError`` line: "cannot write to PATH: why".

Files are created with mode 0666 less the umask (0644 usually), like any file the user writes:
result rows and checkpoints are meant to be read by others (a report, a colleague, a search worker
under another account sharing the store); a umask is the place to make a store private.

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

import contextlib
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None
    import msvcrt


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], Any]) -> Path:
    """Call ``write(f)`` on a fresh temporary file beside ``path``, then move it into place."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        with os.fdopen(fd, "wb") as raw:
            f = _Recording(raw)
            try:
                write(f)
            except RuntimeError as e:  # torch.save reports a failed write as "unexpected pos ..."
                raise (f.failure or e) from None
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        if str(e).startswith("cannot write to"):
            raise
        raise OSError(f"cannot write to {path}: {e.strerror or e}") from e
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) atomically."""
    return atomic_write(path, lambda f: f.write(text.encode()))


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save(obj)`` atomically."""
    import torch

    return atomic_write(path, lambda f: torch.save(obj, f))


def sha256_file(path: str | os.PathLike) -> str:
    """The file's SHA-256 as hex, read in 1 MiB chunks.

    Example:
        >>> import tempfile
        >>> sha256_file(atomic_write_text(Path(tempfile.mkdtemp()) / "e", ""))[:12]
        'e3b0c44298fc'
    """
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def replace_dir(new: str | os.PathLike, target: str | os.PathLike) -> None:
    """Move the folder ``new`` to ``target``; an existing ``target`` is swapped out atomically where the
    system can (Linux's ``renameat2(RENAME_EXCHANGE)``: readers see the old folder or the new, never
    neither) and then deleted; elsewhere it is renamed aside first, so a crash leaves it beside, not lost.

    Example:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp())
        >>> for name in ("old", "new"):
        ...     _ = atomic_write_text(root / name / "f", name)
        >>> replace_dir(root / "new", root / "old")
        >>> (root / "old" / "f").read_text(), sorted(p.name for p in root.iterdir())
        ('new', ['old'])
    """
    import shutil

    new, target = Path(new), Path(target)
    if not target.exists():
        os.replace(new, target)
        return
    if not _exchange(new, target):
        aside = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.old")
        os.replace(target, aside)
        os.replace(new, target)
        new = aside
    shutil.rmtree(new)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one system call (Linux 3.15+, glibc 2.28+); False where that is not available."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


def writable_problem(folder: str | os.PathLike) -> str | None:
    """Why files cannot be written into ``folder`` (created if missing), in one line; None if they can.

    Example:
        >>> writable_problem("/proc/no-such-store")
        'cannot write to /proc/no-such-store: No such file or directory'
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write(folder / ".write-check", lambda f: f.write(b"ok"))
        (folder / ".write-check").unlink()
    except OSError as e:
        reason = str(e).split(": ", 1)[1] if str(e).startswith("cannot write to") else e.strerror or str(e)
        return f"cannot write to {folder}: {reason}"
    return None


@contextlib.contextmanager
def try_lock(path: str | os.PathLike) -> Iterator[bool]:
    """Hold an exclusive lock on ``path`` (created if missing) for the block if no other holder has it;
    yields whether this caller got it. The operating system drops the lock when its holder exits,
    however it exits (kill -9 included), so a crashed run never blocks the next one.

    Example:
        >>> import tempfile
        >>> lock = Path(tempfile.mkdtemp()) / "x.lock"
        >>> with try_lock(lock) as first, try_lock(lock) as second:
        ...     first, second
        (True, False)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            else:
                msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            got = True
        except OSError:
            got = False
        yield got
    finally:
        os.close(fd)  # closing releases the lock


class _Recording:
    """A file wrapper that remembers the OSError a write raised, so a library that turns it into
    another error (torch.save: RuntimeError) cannot hide the real cause (a full disk)."""

    def __init__(self, raw: IO[bytes]):
        self.raw, self.failure = raw, None

    def write(self, data: Any) -> int:
        try:
            return self.raw.write(data)
        except OSError as e:
            self.failure = e
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self.raw, name)
