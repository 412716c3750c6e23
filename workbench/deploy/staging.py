"""Writing a bundle safely, for either task: ``--out`` checked before any work, the bundle built in a locked
staging folder beside it and swapped in whole, ``--force`` replacing only a bundle Workbench wrote; and the
versions a card records."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import torch

from .. import __version__
from .._files import try_lock, writable_problem
from .bundle import BUNDLE_FILES, CARD_FILE, LM_CARD_SCHEMA

LOCK_SUFFIX = ".lock"


CARD_SCHEMA = "workbench-model-card/1"


def _check_destination(out: Path, overwrite: bool) -> None:
    """Refuse an ``out`` the export must not write or replace: a file, something under a file or an
    unwritable folder, and, even with ``overwrite``, any folder that is not a bundle Workbench wrote
    (a result store, a folder with other files in it)."""
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise FileExistsError(
            f"--out {out} is {'a link' if out.is_symlink() else 'a file'}, not a bundle folder: choose another --out"
        )
    if out.exists():
        if not overwrite:
            raise FileExistsError(f"{out} exists: choose another --out, or replace it (overwrite=True, --force)")
        if problem := _not_a_bundle(out):
            raise FileExistsError(
                f"--force replaces only a bundle Workbench wrote, and {out} {problem}: choose another --out"
            )
    if problem := writable_problem(out.parent):
        raise OSError(f"{problem} (--out): choose another folder")


def _not_a_bundle(folder: Path) -> str | None:
    """Why ``folder`` is not a bundle ``export`` wrote (None if it is): its card, and nothing else beside
    the model files."""
    try:
        card = json.loads((folder / CARD_FILE).read_text())
    except (OSError, ValueError):
        return f"has no readable {CARD_FILE}"
    if not isinstance(card, dict) or card.get("schema") not in (CARD_SCHEMA, LM_CARD_SCHEMA):
        return f"has a {CARD_FILE} that is not a Workbench model card"
    others = sorted(p.name + "/" * p.is_dir() for p in folder.iterdir() if p.name not in BUNDLE_FILES)
    if others:
        shown = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
        return f"also holds {shown}"
    if any((folder / name).is_symlink() or (folder / name).is_dir() for name in BUNDLE_FILES - {CARD_FILE}):
        return "holds a model file that is a link or a folder"
    return None


@contextlib.contextmanager
def _staging(out: Path) -> Iterator[Path]:
    """A fresh folder beside ``out`` to build the bundle in (removed afterwards unless moved into place),
    locked while this process lives; stale ones that a killed export left are removed first."""
    for stale in out.parent.glob(f".{glob.escape(out.name)}.export-*"):
        if stale.is_dir() and not stale.is_symlink():
            with try_lock(stale.with_name(stale.name + LOCK_SUFFIX)) as free:
                if free:  # its exporter is gone: the system drops a lock with its holder, kill -9 included
                    shutil.rmtree(stale, ignore_errors=True)
    folder = out.parent / f".{out.name}.export-{uuid.uuid4().hex[:12]}"
    lock = folder.with_name(folder.name + LOCK_SUFFIX)
    try:
        with try_lock(lock):
            os.mkdir(folder, 0o777)  # the user's umask applies, as to any folder they make (mkdtemp's is 0700)
            try:
                yield folder
            finally:
                shutil.rmtree(folder, ignore_errors=True)
    finally:
        lock.unlink(missing_ok=True)


def _versions() -> dict[str, str | None]:
    import importlib.metadata as md

    def version(name: str) -> str | None:
        try:
            return md.version(name)
        except md.PackageNotFoundError:
            return None

    return {
        "workbench": __version__,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        **{name: version(name) for name in ("onnx", "onnxscript", "onnxruntime")},
    }
