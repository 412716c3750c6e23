"""Reading files that may come from someone else (bundles, checkpoints, teachers, stores copied between
machines) without running code they carry.

``torch.load(..., weights_only=True)`` refuses pickled code, but ``torch.export.load`` does not stop
there: when a pickled member of a ``.pt2`` archive fails the weights-only load, torch retries it with
``weights_only=False`` (``deserialize_torch_artifact``), and it unpickles weight, constant and object
members with plain ``pickle``. So every member that torch could unpickle is checked with
``weights_only=True`` here first, and an archive holding one that fails, or a pickled Python object
(torchbind or opaque constants, which Workbench never writes), is refused before torch's loader sees it.

Example:
    >>> import tempfile, zipfile
    >>> path = tempfile.mkdtemp() + "/model.pt2"
    >>> with zipfile.ZipFile(path, "w") as z:
    ...     z.writestr("m/archive_format", "pt2")
    ...     z.writestr("m/data/sample_inputs/model.pt", b"cos\\nsystem\\n(S'true'\\ntR.")
    >>> check_export_archive(path)  # doctest: +ELLIPSIS, +NORMALIZE_WHITESPACE
    Traceback (most recent call last):
    ...
    workbench._untrusted.UnsafeFileError: ...model.pt2 is refused: its member data/sample_inputs/model.pt is not
        plain tensors (UnpicklingError), so loading it could run code: use a file you exported yourself
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path
from typing import IO

import torch

# Members torch.export.load reads only as text or JSON, relative to the archive's root folder.
_TEXT_MEMBERS = {"archive_format", "archive_version", "byteorder", ".data/version", ".data/serialization_id"}
_EXTRA_DIR = "extra/"  # extra_files: handed back as strings
_MAX_MEMBERS = 100_000  # a zip of more entries is no model of ours, and listing it must stay cheap


class UnsafeFileError(ValueError):
    """A file that could run code (or is not what it claims) when loaded; nothing of it was unpickled."""


def check_export_archive(source: str | os.PathLike | IO[bytes], *, name: str | None = None) -> None:
    """Raise ``UnsafeFileError`` (one line) unless ``source`` (a path, or an open binary file called
    ``name`` in messages) is a ``torch.export`` archive whose every member torch might unpickle loads
    with ``weights_only=True``."""
    path = Path(name or getattr(source, "name", None) or str(source))
    source = source if hasattr(source, "read") else Path(source)
    if not zipfile.is_zipfile(source):
        raise UnsafeFileError(
            f"{path} is not a torch.export archive (not a zip: truncated, or another kind of file): "
            "export the run again"
        )
    try:
        with zipfile.ZipFile(source) as archive:
            names = archive.namelist()
            if len(names) > _MAX_MEMBERS:
                raise UnsafeFileError(f"{path} holds {len(names):,} members: it is no torch.export archive")
            root = _root(names)
            if root + "archive_format" not in names:
                raise UnsafeFileError(
                    f"{path} is a zip but not a torch.export archive (no archive_format; a plain "
                    "torch.save file?): export the run again"
                )
            raw = _raw_payloads(archive, root, names, path)
            for name in names:
                member = name[len(root) :]
                if (
                    name.endswith("/")
                    or member in raw
                    or member in _TEXT_MEMBERS
                    or member.endswith(".json")
                    or member.startswith(_EXTRA_DIR)
                ):
                    continue
                _check_tensors_only(archive.read(name), path, member)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, KeyError) as e:
        raise UnsafeFileError(
            f"{path} is not a readable torch.export archive ({type(e).__name__}: truncated?): export the run again"
        ) from None


def load_export_program(
    source: str | os.PathLike | IO[bytes], *, name: str | None = None
) -> torch.export.ExportedProgram:
    """``torch.export.load`` after ``check_export_archive``: the program, or one line saying why not.
    A path is read once, so the bytes torch loads are the bytes that were checked."""
    path = name or str(source)
    if not hasattr(source, "read"):
        try:
            source = io.BytesIO(Path(source).read_bytes())
        except OSError as e:
            raise UnsafeFileError(f"{path} cannot be read ({e.strerror or e})") from None
    check_export_archive(source, name=path)
    source.seek(0)
    try:
        return torch.export.load(source)
    except Exception as e:  # noqa: BLE001  (a checked archive torch still cannot read: the same one-line answer)
        first = (str(e).strip().splitlines() or [""])[0][:160]
        raise UnsafeFileError(
            f"{path} is not a loadable torch.export archive ({type(e).__name__}: {first}): export the run again"
        ) from None


def _root(names: list[str]) -> str:
    """The archive's root folder ("model/"), which torch.export.save names after the file."""
    first = next((n for n in names if n.endswith("/archive_format")), names[0] if names else "")
    return first.rsplit("archive_format", 1)[0] if first.endswith("archive_format") else ""


def _raw_payloads(archive: zipfile.ZipFile, root: str, names: list[str], path: Path) -> set[str]:
    """Members the archive's own configs call raw tensor bytes (read with ``as_strided``, never unpickled);
    refuses pickled Python objects, which torch unpickles with plain ``pickle``."""
    raw = set()
    for name in names:
        member = name[len(root) :]
        folder = next((d for d in ("data/weights/", "data/constants/") if member.startswith(d)), None)
        if folder is None or not member.endswith("_config.json"):
            continue
        try:
            config = json.loads(archive.read(name)).get("config", {})
            entries = list(config.values())
            paths = [(e["path_name"], bool(e.get("use_pickle"))) for e in entries]
        except (ValueError, AttributeError, KeyError, TypeError):
            raise UnsafeFileError(f"{path} has a malformed {member}: export the run again") from None
        for path_name, pickled in paths:
            if not isinstance(path_name, str):
                raise UnsafeFileError(f"{path} has a malformed {member}: export the run again")
            if folder == "data/constants/" and not path_name.startswith("tensor_"):
                raise UnsafeFileError(
                    f"{path} is refused: it holds a pickled Python object ({path_name}), which "
                    "loading would run; Workbench never writes one: use a file you exported yourself"
                )
            if not pickled:
                raw.add(folder + path_name)
    return raw


def _check_tensors_only(data: bytes, path: Path, member: str) -> None:
    try:
        torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001  (whatever stops the safe loader stops us too)
        raise UnsafeFileError(
            f"{path} is refused: its member {member} is not plain tensors ({type(e).__name__}), "
            "so loading it could run code: use a file you exported yourself"
        ) from None
