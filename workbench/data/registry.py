"""Datasets by name: the bundled digits, downloaded CIFAR-10 / MNIST / Fashion-MNIST, and ``folder:PATH``.

Downloaded sets are decoded once into ``ROOT/cache/NAME.pt``; later loads read only that file.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from .._registry import Registry, unknown_name_error
from . import sources
from .dataset import Dataset, DatasetError, cached
from .folder import load_folder
from .text import TEXT_CORPORA

FOLDER_PREFIX = "folder:"
_DATASETS: Registry[Callable[[Path], Dataset]] = Registry("dataset")


def list_datasets() -> list[str]:
    """Names accepted by ``load_dataset`` (besides ``folder:PATH``).

    Example:
        >>> list_datasets()
        ['cifar10', 'digits', 'fashion-mnist', 'mnist']
    """
    return _DATASETS.names()


def check_dataset_name(name: str) -> None:
    """Raise a one-line ``ValueError`` unless ``name`` is a known dataset or ``folder:PATH``; no I/O.

    Example:
        >>> check_dataset_name("folder:/any/path")
        >>> check_dataset_name("mnsit")  # doctest: +NORMALIZE_WHITESPACE
        Traceback (most recent call last):
        ...
        ValueError: Unknown dataset 'mnsit'. Did you mean 'mnist'? Choose one of: cifar10, digits, fashion-mnist,
            folder:PATH, mnist, pystdlib, text:PATH, tinyshakespeare.
    """
    if isinstance(name, str) and name.startswith(FOLDER_PREFIX):
        if not name[len(FOLDER_PREFIX) :].strip():
            raise ValueError("Dataset 'folder:' needs a path, e.g. folder:/data/my-images or folder:/data/images.zip.")
        return
    if name not in _DATASETS:
        raise unknown_name_error(
            "dataset", name, [*list_datasets(), FOLDER_PREFIX + "PATH", *TEXT_CORPORA, "text:PATH"]
        )


def load_dataset(name: str, root: str | Path = "data") -> Dataset:
    """Load a dataset by name; ``root`` holds ``downloads/`` and the decoded ``cache/``.

    Example:
        >>> ds = load_dataset("digits")
        >>> ds
        Dataset('digits', train=1437, test=360, classes=10, shape=(1, 8, 8))
        >>> ds.train_x.dtype, ds.train_y.dtype
        (torch.uint8, torch.int64)
    """
    if sources.manifest().get(name, {}).get("format") != "text":  # a text corpus (tinyshakespeare) is fetched too
        check_dataset_name(name)
    if name.startswith(FOLDER_PREFIX):
        return load_folder(name[len(FOLDER_PREFIX) :], root)
    return _DATASETS.get(name)(Path(root))


def fetch_dataset(name: str, root: str | Path = "data") -> Path:
    """Download a dataset's files ahead of time (for offline use) and return where they are.

    The bundled digits need nothing: its file is returned. A local folder or zip is decoded and cached
    (so a folder without usable images fails here, not at the first run) and its path returned.

    Example:
        >>> fetch_dataset("digits").name
        'digits.csv.gz'
    """
    if sources.manifest().get(name, {}).get("format") != "text":  # a text corpus (tinyshakespeare) is fetched too
        check_dataset_name(name)
    if name.startswith(FOLDER_PREFIX):
        path = Path(name[len(FOLDER_PREFIX) :]).expanduser()
        if not path.exists():
            raise DatasetError(f"Image folder {path} does not exist; pass folder:PATH of an existing folder or zip.")
        load_folder(path, root=root)
        return path
    if name == "digits":
        return _digits_file()
    folder = Path(root) / "downloads" / name
    for entry in sources.manifest()[name]["files"]:
        sources.fetch_file(entry, folder, name)
    return folder


@_DATASETS.register("digits")
def _digits(root: Path) -> Dataset:
    data = np.loadtxt(_digits_file(), delimiter=",")
    x = torch.from_numpy((data[:, :64] * (255 / 16)).round()).to(torch.uint8).reshape(-1, 1, 8, 8)
    y = torch.from_numpy(data[:, 64]).long()
    # A fixed, stratified 80/20 split (1,437 / 360): every run and every notebook sees the same test set.
    test = _stratified_test(y, 0.2, seed=0)
    train = torch.ones(len(y), dtype=torch.bool)
    train[test] = False
    return Dataset("digits", x[train], y[train], x[test], y[test], [str(i) for i in range(10)])


def _digits_file() -> Path:
    # Read scikit-learn's bundled CSV directly: importing sklearn.datasets costs 1-2 s (scipy).
    spec = importlib.util.find_spec("sklearn")
    path = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz" if spec and spec.origin else None
    if path is None or not path.is_file():
        raise DatasetError("The digits dataset ships with scikit-learn, which is missing: pip install scikit-learn")
    return path


def _stratified_test(y: torch.Tensor, fraction: float, seed: int) -> torch.Tensor:
    """Sorted test indices: ``ceil(fraction * N)`` in all, each class's share as close to ``fraction`` as whole
    counts allow."""
    counts = y.bincount()
    exact = counts * fraction
    quota = exact.floor().long()
    extra = math.ceil(len(y) * fraction) - int(quota.sum())
    quota[(exact - quota).argsort(descending=True, stable=True)[:extra]] += 1
    g = torch.Generator().manual_seed(seed)
    picks = []
    for c, q in enumerate(quota.tolist()):
        members = (y == c).nonzero().flatten()
        picks.append(members[torch.randperm(len(members), generator=g)[:q]])
    return torch.cat(picks).sort().values


def _downloaded(name: str, decode: Callable[[dict[str, Path]], dict]) -> Callable[[Path], Dataset]:
    def load(root: Path) -> Dataset:
        def build() -> dict:
            files = {
                e["role"]: sources.fetch_file(e, root / "downloads" / name, name)
                for e in sources.manifest()[name]["files"]
            }
            return {**decode(files), "classes": list(sources.manifest()[name]["classes"])}

        return Dataset(name, **cached(root / "cache" / f"{name}.pt", build))

    return load


def _idx(files: dict[str, Path]) -> dict:
    x = {k: sources.read_idx(files[k]).unsqueeze(1) for k in ("train_x", "test_x")}
    y = {k: sources.read_idx(files[k]).long() for k in ("train_y", "test_y")}
    return {**x, **y}


_DATASETS.register("mnist")(_downloaded("mnist", _idx))
_DATASETS.register("fashion-mnist")(_downloaded("fashion-mnist", _idx))
_DATASETS.register("cifar10")(_downloaded("cifar10", lambda files: sources.read_cifar10_python(files["archive"])))
