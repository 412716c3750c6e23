"""Downloads with checksums, and readers for the published file formats (IDX, CIFAR python archive).

What to download and the checksums to expect live in ``manifest.json`` beside this module, shipped
as package data so an installed (non-editable) Workbench finds it too.
Downloads land in ``ROOT/downloads/NAME/``; a file is renamed into place only after its checksum
matches, so a partial or corrupt download never looks finished.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import json
import os
import pickle
import struct
import tarfile
import urllib.error
import urllib.request
import uuid
from functools import cache
from pathlib import Path, PurePosixPath

import numpy as np
import torch
from tqdm.auto import tqdm

from .dataset import DatasetError

MANIFEST = Path(__file__).resolve().with_name("manifest.json")


@cache
def manifest() -> dict:
    """The dataset manifest: per dataset, its classes, file format and files (urls, md5, sha256, size).

    Example:
        >>> manifest()["mnist"]["files"][0]["md5"]
        'f68b3c2dcbeaaa9fbdd348bbdeb94873'
    """
    return json.loads(MANIFEST.read_text())


def fetch_file(entry: dict, folder: Path, dataset: str) -> Path:
    """Download one manifest file into ``folder`` (trying each url in turn) and verify it.

    Example:
        >>> import hashlib, tempfile
        >>> src = Path(tempfile.mkdtemp()) / "x.bin"; _ = src.write_bytes(b"hello")
        >>> entry = {"name": "x.bin", "urls": [src.as_uri()], "md5": hashlib.md5(b"hello").hexdigest()}
        >>> fetch_file(entry, Path(tempfile.mkdtemp()), "toy").read_bytes()
        b'hello'
    """
    dest = folder / entry["name"]
    if not dest.exists():
        folder.mkdir(parents=True, exist_ok=True)
        part = dest.with_name(f"{dest.name}.{uuid.uuid4().hex[:8]}.part")  # one per download: two never share it
        for url in entry["urls"]:
            try:
                _download(url, part, entry.get("size", 0))
                break
            except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError):
                part.unlink(missing_ok=True)
        else:
            raise DatasetError(
                f"Could not download {dataset} from {entry['urls'][0]} (no network?). Fetch it on a connected "
                f"machine with `workbench datasets fetch {dataset}`, or copy the file to {dest}."
            )
        _verify(part, entry, dataset, dest)
        os.replace(part, dest)
    else:
        _verify(dest, entry, dataset, dest)
    return dest


def _download(url: str, path: Path, size: int) -> None:
    request = urllib.request.Request(url, headers={"User-Agent": "workbench"})
    with urllib.request.urlopen(request, timeout=30) as response, open(path, "wb") as f:
        total = int(response.headers.get("Content-Length") or size)
        with tqdm(
            total=total, unit="B", unit_scale=True, desc=path.name.rsplit(".", 2)[0], leave=False, disable=total < 2**20
        ) as bar:
            while chunk := response.read(1 << 20):
                f.write(chunk)
                bar.update(len(chunk))


def _verify(path: Path, entry: dict, dataset: str, dest: Path) -> None:
    for algo in ("md5", "sha256"):
        if algo not in entry:
            continue
        digest = hashlib.new(algo)
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
        if digest.hexdigest() != entry[algo]:
            path.unlink()
            raise DatasetError(
                f"Checksum mismatch for {entry['name']} ({algo} {digest.hexdigest()}, expected {entry[algo]}): "
                f"the file was corrupt or incomplete and has been deleted. Fetch it again with "
                f"`workbench datasets fetch {dataset}`, or copy a good copy to {dest}."
            )


def read_idx(path: Path) -> torch.Tensor:
    """A gzipped IDX file of unsigned bytes (MNIST's format) as a uint8 tensor of its shape.

    Example:
        >>> import gzip, tempfile
        >>> p = Path(tempfile.mkdtemp()) / "t.gz"
        >>> _ = p.write_bytes(gzip.compress(bytes([0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3, 1, 2, 3, 4, 5, 6])))
        >>> read_idx(p).tolist()
        [[1, 2, 3], [4, 5, 6]]
    """
    fix = "delete it and fetch it again, or copy a good copy there"
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise DatasetError(f"{path} is corrupt or truncated ({e}); {fix}.") from None
    if len(raw) < 4 or raw[:3] != b"\x00\x00\x08":
        raise DatasetError(f"{path} is not an IDX file of unsigned bytes; {fix}.")
    ndim = raw[3]
    dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim]) if len(raw) >= 4 + 4 * ndim else None
    data = raw[4 + 4 * ndim :]
    if dims is None or len(data) != int(np.prod(dims)):
        raise DatasetError(f"{path} is truncated (its header promises {dims}); {fix}.")
    return torch.from_numpy(np.frombuffer(data, dtype=np.uint8).reshape(dims).copy())


def read_cifar10_python(path: Path) -> dict:
    """Decode the CIFAR-10 python archive (``cifar-10-python.tar.gz``) straight from the tar.

    Members are read in place, never extracted; an archive holding links, absolute paths or names
    that climb out with ``..`` is refused outright, since the genuine archive has none.
    Returns ``train_x, train_y, test_x, test_y`` (uint8 N,3,32,32 and int64 labels).

    Example:
        >>> read_cifar10_python(Path("missing.tar.gz"))  # doctest: +ELLIPSIS, +NORMALIZE_WHITESPACE
        Traceback (most recent call last):
        ...
        workbench.data.dataset.DatasetError: Could not open missing.tar.gz as a tar.gz archive (...);
            delete it and fetch it again.
    """
    batches: dict[str, dict] = {}
    try:
        with tarfile.open(path, "r:gz") as tar:
            for member in tar:
                _check_member(member, path)
                base = PurePosixPath(member.name).name
                if member.isfile() and (base.startswith("data_batch_") or base == "test_batch"):
                    batches[base] = _ArrayUnpickler(tar.extractfile(member), encoding="bytes").load()
    except (tarfile.TarError, OSError, EOFError, pickle.UnpicklingError) as e:
        raise DatasetError(f"Could not open {path} as a tar.gz archive ({e}); delete it and fetch it again.") from None
    train = sorted(k for k in batches if k.startswith("data_batch_"))
    if not train or "test_batch" not in batches:
        raise DatasetError(f"{path} holds no CIFAR-10 data_batch_*/test_batch files; delete it and fetch it again.")

    def stack(names: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        x = np.concatenate([np.asarray(batches[n][b"data"], dtype=np.uint8) for n in names])
        y = np.concatenate([np.asarray(batches[n][b"labels"], dtype=np.int64) for n in names])
        return torch.from_numpy(x.reshape(-1, 3, 32, 32).copy()), torch.from_numpy(y)

    train_x, train_y = stack(train)
    test_x, test_y = stack(["test_batch"])
    return {"train_x": train_x, "train_y": train_y, "test_x": test_x, "test_y": test_y}


def _check_member(member: tarfile.TarInfo, archive: Path) -> None:
    name = PurePosixPath(member.name)
    if name.is_absolute() or member.name.startswith(("/", "\\")):
        problem = "is an absolute path"
    elif ".." in name.parts:
        problem = "escapes the archive folder"
    elif member.issym() or member.islnk():
        problem = "is a link"
    elif not (member.isfile() or member.isdir()):
        problem = "is a device or other special file"
    else:
        return
    raise DatasetError(
        f"Refusing {archive}: member '{member.name}' {problem}. It is not the expected archive; "
        f"delete it and fetch it again."
    )


try:  # numpy >= 2 moved the module the CIFAR pickles name; both resolve to the same function
    from numpy._core.multiarray import _reconstruct
except ImportError:  # pragma: no cover
    from numpy.core.multiarray import _reconstruct

# The only globals a CIFAR batch pickle needs: anything else in the file is refused, never run.
_PICKLE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _PICKLE_GLOBALS:
            raise pickle.UnpicklingError(f"unexpected object {module}.{name} in a CIFAR batch")
        return _PICKLE_GLOBALS[(module, name)]
