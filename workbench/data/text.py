"""Text corpora for language models: the running Python's standard library, Tiny Shakespeare, ``text:PATH``.

Each loader returns a ``TextCorpus``: the training and validation text and a record of where it came
from (JSON-able), so a stored run says which text it saw and rows from different texts can be told apart.
Nothing here downloads unless asked (``tinyshakespeare(download=True)``).

Splits never let text leak across: several files are split by file (a file's relative path decides its
side, so the rule is the same on every machine and a file added later moves no other file); a single
file is split as nanoGPT does, the first 90% of its characters for training and the last 10% for validation.

Example:
    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "poem.txt"
    >>> _ = p.write_text("The quick brown fox jumps over the lazy dog.\\n")
    >>> c = text_file_corpus(p)
    >>> c
    TextCorpus('text:...poem.txt', train=40 characters, validation=5 characters)
    >>> c.validation, c.source["split"]
    ('dog.\\n', 'first 90% of characters train, last 10% validation')
"""

from __future__ import annotations

import hashlib
import os
import platform
import stat
import sys
import sysconfig
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from .._registry import unknown_name_error
from . import sources
from .dataset import DatasetError

TEXT_CORPORA = ("pystdlib", "tinyshakespeare")  # besides text:PATH
TEXT_PREFIX = "text:"
VALIDATION_FRACTION = 0.1
SHAKESPEARE_ENV = "WORKBENCH_TINYSHAKESPEARE"
# Folders of the standard library that are not the library: test suites, the IDLE editor, third-party
# packages, demo scripts, a frozen-module test fixture, generated help text and the build configuration.
STDLIB_EXCLUDED = (
    "test",
    "tests",
    "idlelib",
    "site-packages",
    "dist-packages",
    "turtledemo",
    "__phello__",
    "pydoc_data",
)
# Limits for text:PATH: a corpus is held in memory as one string, and a zip's member sizes are checked
# before anything is read, so a zip bomb is refused rather than unpacked.
MAX_TEXT_BYTES = 256 * 2**20
MAX_TEXT_FILES = 100_000

_SPLIT_BY_CHARACTERS = "first 90% of characters train, last 10% validation"
_SPLIT_BY_FILE = (
    "by file: validation where the first 8 bytes of sha256(relative path), as a fraction of 2**64, are below 0.1"
)


@dataclass(frozen=True, repr=False)
class TextCorpus:
    """Training and validation text, and ``source``: where it came from (JSON-able)."""

    name: str
    train: str
    validation: str
    source: dict = field(default_factory=dict)

    def __repr__(self) -> str:
        return (
            f"TextCorpus({self.name!r}, train={len(self.train):,} characters, "
            f"validation={len(self.validation):,} characters)"
        )


def utf8_text(data: bytes | str, name: str) -> str:
    """``data`` as text, or one line naming ``name`` and the first byte offset that is not UTF-8.

    A ``str`` is checked too: one read with ``errors="surrogateescape"`` carries the bad bytes as lone surrogates.

    Example:
        >>> utf8_text("héllo".encode(), "greeting")
        'héllo'
        >>> utf8_text(b"ok \\xff", "greeting")  # doctest: +NORMALIZE_WHITESPACE
        Traceback (most recent call last):
        ...
        workbench.data.dataset.DatasetError: greeting is not valid UTF-8 text: byte offset 3 (0xff) cannot be
            decoded; save it as UTF-8 first.
    """
    try:
        if isinstance(data, bytes):
            return data.decode("utf-8")
        data.encode("utf-8")
        return data
    except UnicodeError as e:
        if isinstance(data, bytes):
            offset, what = e.start, f"0x{data[e.start]:02x}"
        else:  # a lone surrogate: surrogateescape's stand-in for a byte, or one a program made
            offset, code = len(data[: e.start].encode("utf-8")), ord(data[e.start])
            what = f"0x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"U+{code:04X}"
        raise DatasetError(
            f"{name} is not valid UTF-8 text: byte offset {offset} ({what}) cannot be decoded; save it as UTF-8 first."
        ) from None


def in_validation(relative_path: str) -> bool:
    """Whether a file goes to validation: its path's sha256, so the same path lands on the same side anywhere.

    Example:
        >>> in_validation("json/decoder.py"), in_validation("json/encoder.py")
        (False, True)
    """
    return _path_position(relative_path) < VALIDATION_FRACTION


def _path_position(relative_path: str) -> float:
    """Where a path falls in [0, 1): the first 8 bytes of its sha256, as a fraction of 2**64."""
    return int.from_bytes(hashlib.sha256(relative_path.encode("utf-8")).digest()[:8], "big") / 2**64


def pystdlib() -> TextCorpus:
    """The ``.py`` files of the running Python's standard library, split by file; files that are not UTF-8 are
    skipped and named in the record, empty ones add nothing and are not counted. Folders named in
    ``STDLIB_EXCLUDED`` and ``config-*`` are left out.

    Example:
        >>> c = pystdlib()
        >>> c.source["python"] == platform.python_version(), c.source["files"] > 100, c.source["skipped_not_utf8"]
        (True, True, [])
    """
    root = Path(sysconfig.get_paths()["stdlib"])
    paths = []
    for folder, subfolders, files in os.walk(root):  # never follows links out of the library
        subfolders[:] = [d for d in subfolders if d not in STDLIB_EXCLUDED and not d.startswith("config-")]
        paths += [Path(folder, f).relative_to(root).as_posix() for f in files if f.endswith(".py")]
    texts, skipped = {}, []
    for rel in sorted(paths):
        try:
            texts[rel] = (root / rel).read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            skipped.append(rel)
    corpus = _split_files("pystdlib", {rel: text for rel, text in texts.items() if text})
    corpus.source.update(
        python=platform.python_version(),
        implementation=sys.implementation.name,
        root=str(root),
        excluded=[*STDLIB_EXCLUDED, "config-*"],
        skipped_not_utf8=skipped,
    )
    return corpus


def tinyshakespeare(path: str | Path | None = None, root: str | Path = "data", download: bool = False) -> TextCorpus:
    """Tiny Shakespeare (karpathy/char-rnn), split 90/10 by characters as nanoGPT does.

    The text is read from ``path``, else from the file named by ``WORKBENCH_TINYSHAKESPEARE``, else from
    ``ROOT/downloads/tinyshakespeare/``, where ``download=True`` fetches it (1.1 MB) if it is missing. Every
    copy is checked against the manifest's sha256; a local copy that differs is refused, never deleted.

    Example:
        >>> import tempfile
        >>> wrong = Path(tempfile.mkdtemp()) / "input.txt"
        >>> _ = wrong.write_text("To be, or not to be")
        >>> tinyshakespeare(wrong)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        workbench.data.dataset.DatasetError: .../input.txt is not Tiny Shakespeare (sha256 ..., expected 86c4...): ...
    """
    entry = sources.manifest()["tinyshakespeare"]["files"][0]
    local = path or os.environ.get(SHAKESPEARE_ENV)
    if local:
        file = Path(local).expanduser()
        named = "" if path else f" (named by {SHAKESPEARE_ENV})"
        if not file.is_file():
            raise DatasetError(f"Tiny Shakespeare file {file}{named} does not exist; point to a copy of input.txt.")
        data = file.read_bytes()  # read once: the bytes checked are the bytes split
        digest = hashlib.sha256(data).hexdigest()
        if digest != entry["sha256"]:
            raise DatasetError(
                f"{file}{named} is not Tiny Shakespeare (sha256 {digest}, expected {entry['sha256']}): "
                f"point to an unchanged copy of {entry['urls'][0]}."
            )
    else:
        folder = Path(root) / "downloads" / "tinyshakespeare"
        if not download and not (folder / entry["name"]).is_file():
            raise DatasetError(
                f"Tiny Shakespeare is not in {folder}: set {SHAKESPEARE_ENV} to a local copy of input.txt, or load "
                f"it with download=True (fetches {entry['size']:,} bytes from {entry['urls'][0]})."
            )
        file = sources.fetch_file(entry, folder, "tinyshakespeare")  # verifies the checksums, downloads if missing
        data = file.read_bytes()
    corpus = _split_characters("tinyshakespeare", utf8_text(data, str(file)), str(file))
    corpus.source.update(path=str(file), url=entry["urls"][0])
    return corpus


def text_file_corpus(path: str | Path) -> TextCorpus:
    """``text:PATH``: a UTF-8 text file, a folder of them (sorted, recursive) or a zip of them. Several files are
    split by file, one by characters; hidden files (``.*``, ``__MACOSX``) are skipped. Each file must be UTF-8
    text, and a zip may not hold links or names that leave it.

    Example:
        >>> import tempfile
        >>> d = Path(tempfile.mkdtemp())
        >>> for i in range(20):
        ...     _ = (d / f"{i:02}.txt").write_text(f"line {i}\\n")
        >>> c = text_file_corpus(d)
        >>> c.source["files"], c.source["train_files"], c.source["validation_files"]
        (20, 17, 3)
    """
    path = Path(path).expanduser()
    name = f"{TEXT_PREFIX}{path}"
    if path.is_file() and not zipfile.is_zipfile(path):
        _check_limits(path, 1, path.stat().st_size)
        text = _file_text(path.read_bytes(), str(path))
        if not text:
            raise DatasetError(f"{path} is empty: pass text:PATH of a file with text in it.")
        corpus = _split_characters(name, text, str(path))
    else:
        if not path.exists():
            raise DatasetError(f"Text source {path} does not exist; pass text:PATH of a text file, a folder or a zip.")
        files = _folder_files(path) if path.is_dir() else _zip_files(path)
        texts = {file: _file_text(data, f"{file} in {path}") for file, data in files.items()}
        texts = {file: text for file, text in texts.items() if text}  # an empty __init__.py adds nothing
        if not texts:
            raise DatasetError(f"{path} holds no text: pass a folder or zip with UTF-8 text files in it.")
        if len(texts) == 1:
            corpus = _split_characters(name, *texts.values(), str(path))
        else:
            corpus = _split_files(name, texts)
    corpus.source.update(path=str(path))
    return corpus


def load_text_corpus(name: str, root: str | Path = "data", download: bool = False) -> TextCorpus:
    """A corpus by name: ``pystdlib``, ``tinyshakespeare`` or ``text:PATH``.

    Example:
        >>> load_text_corpus("shakespeare")  # doctest: +NORMALIZE_WHITESPACE
        Traceback (most recent call last):
        ...
        ValueError: Unknown text corpus 'shakespeare'. Did you mean 'tinyshakespeare'? Choose one of: pystdlib,
            text:PATH, tinyshakespeare.
    """
    if name.startswith(TEXT_PREFIX):
        return text_file_corpus(name[len(TEXT_PREFIX) :])
    if name == "pystdlib":
        return pystdlib()
    if name == "tinyshakespeare":
        return tinyshakespeare(root=root, download=download)
    raise unknown_name_error("text corpus", name, [*TEXT_CORPORA, f"{TEXT_PREFIX}PATH"])


def _split_characters(name: str, text: str, where: str) -> TextCorpus:
    cut = int(len(text) * (1 - VALIDATION_FRACTION))
    if cut == 0 or cut == len(text):
        raise DatasetError(f"{where} holds {len(text)} characters, too few to split 90/10: give it more text.")
    return TextCorpus(name, text[:cut], text[cut:], _record(name, text[:cut], text[cut:], _SPLIT_BY_CHARACTERS))


def _split_files(name: str, texts: dict[str, str]) -> TextCorpus:
    """Join the files in sorted order, each ending in a newline, into train and validation by ``in_validation``;
    with few files that rule can leave a side empty, so then the file whose hash is nearest the threshold moves."""
    names = sorted(texts)
    validation = {n for n in names if in_validation(n)}
    if not validation or len(validation) == len(names):
        by_hash = sorted(names, key=_path_position)
        validation = {by_hash[0]} if not validation else validation - {by_hash[-1]}
    parts = {side: [] for side in ("train", "validation")}
    for n in names:
        parts["validation" if n in validation else "train"].append(
            texts[n] if texts[n].endswith("\n") else texts[n] + "\n"
        )
    train, valid = "".join(parts["train"]), "".join(parts["validation"])
    source = _record(name, train, valid, _SPLIT_BY_FILE)
    source.update(
        files=len(names),
        train_files=len(names) - len(validation),
        validation_files=len(validation),
        files_sha256=hashlib.sha256("\n".join(names).encode("utf-8")).hexdigest(),
    )
    return TextCorpus(name, train, valid, source)


def _record(name: str, train: str, validation: str, split: str) -> dict:
    train_bytes, valid_bytes = train.encode("utf-8"), validation.encode("utf-8")
    return {
        "corpus": name,
        "split": split,
        "bytes": len(train_bytes) + len(valid_bytes),
        "train_bytes": len(train_bytes),
        "validation_bytes": len(valid_bytes),
        "sha256": hashlib.sha256(train_bytes + valid_bytes).hexdigest(),  # of the text as split: train, then validation
    }


def _file_text(data: bytes, where: str) -> str:
    if b"\0" in data:  # text files have no NUL bytes, and most binary files do
        raise DatasetError(f"{where} is a binary file, not text: remove it, or pass text:PATH of text files only.")
    return utf8_text(data, where)


def _hidden(name: str) -> bool:
    return any(part.startswith((".", "__MACOSX")) for part in PurePosixPath(name).parts)


def _folder_files(folder: Path) -> dict[str, bytes]:
    inside = folder.resolve()
    paths = sorted(p for p in folder.rglob("*") if p.is_file() and not _hidden(p.relative_to(folder).as_posix()))
    _check_limits(folder, len(paths), sum(p.stat().st_size for p in paths))
    for p in paths:
        if not p.resolve().is_relative_to(inside):
            raise DatasetError(f"Refusing {folder}: {p} links to a file outside the folder; copy the file in instead.")
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in paths}


def _zip_files(path: Path) -> dict[str, bytes]:
    try:
        with zipfile.ZipFile(path) as z:
            for m in z.infolist():
                _check_member(m, path)
            members = [m for m in z.infolist() if not m.is_dir() and not _hidden(m.filename)]
            _check_limits(path, len(members), sum(m.file_size for m in members))
            # zipfile stops at each member's declared size and checks its CRC, so the sizes checked above hold
            return {m.filename: z.read(m) for m in sorted(members, key=lambda m: m.filename)}
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError) as e:
        raise DatasetError(f"Could not read {path} as a zip of text files ({e}); copy it again.") from None


def _check_member(member: zipfile.ZipInfo, archive: Path) -> None:
    name = PurePosixPath(member.filename.replace("\\", "/"))
    if name.is_absolute() or (name.parts and name.parts[0].endswith(":")):
        problem = "is an absolute path"
    elif ".." in name.parts:
        problem = "escapes the archive folder"
    elif stat.S_ISLNK(member.external_attr >> 16):
        problem = "is a link"
    elif member.flag_bits & 0x1:
        problem = "is encrypted"
    else:
        return
    raise DatasetError(f"Refusing {archive}: member '{member.filename}' {problem}; zip plain text files instead.")


def _check_limits(source: Path, files: int, size: int) -> None:
    if files > MAX_TEXT_FILES or size > MAX_TEXT_BYTES:
        raise DatasetError(
            f"Refusing {source}: {files:,} files, {size:,} bytes is over the limit of {MAX_TEXT_FILES:,} files and "
            f"{MAX_TEXT_BYTES:,} bytes for a text corpus; pass a smaller part of it."
        )
