"""Image folders (``train/<class>/*.jpg``, ``test/<class>/*.jpg``) and zips of them, decoded with PIL.

A zip is read member by member, never extracted. Decoding 60,000 small JPEGs takes seconds, so the
decoded tensors are cached under ``ROOT/cache`` keyed by the source's path, size and modification
time: the second load only reads that file. Class names are the sorted class folder names; a label is
the index into that list. If any image is in colour, every image is loaded as RGB.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path, PurePosixPath

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from .dataset import Dataset, DatasetError, cached

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
LAYOUT = "train/<class>/*.jpg and test/<class>/*.jpg (or .jpeg, .png)"
_GRAY_MODES = ("1", "L", "LA", "I", "I;16", "F")
REPO = Path(__file__).resolve().parents[2]  # in a source checkout, the repository root


def cifar10_zip_path() -> Path | None:
    """The CIFAR-10 JPEG zip named by ``WORKBENCH_CIFAR10_ZIP`` (default ``../shared/data/cifar10-jpeg.zip``
    beside the repository), or None where that file is absent.

    Example:
        >>> p = cifar10_zip_path()
        >>> p is None or p.suffix == ".zip"
        True
    """
    env = os.environ.get("WORKBENCH_CIFAR10_ZIP")
    path = Path(env).expanduser() if env else REPO.parent / "shared" / "data" / "cifar10-jpeg.zip"
    return path if path.is_file() else None


def load_folder(path: str | Path, root: str | Path = "data") -> Dataset:
    """Load an image folder or a zip of one (the ``folder:PATH`` dataset), caching the decoded tensors.

    Example:
        >>> import tempfile
        >>> from PIL import Image
        >>> d = Path(tempfile.mkdtemp())
        >>> for split, cls in [("train", "cat"), ("train", "dog"), ("test", "cat")]:
        ...     (d / split / cls).mkdir(parents=True)
        ...     Image.new("RGB", (4, 4), "red").save(d / split / cls / "0.png")
        >>> ds = load_folder(d, root=d / "cache")
        >>> ds.classes, tuple(ds.train_x.shape), ds.train_y.tolist()
        (['cat', 'dog'], (2, 3, 4, 4), [0, 1])
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise DatasetError(
            f"Image folder {path} does not exist. Pass folder:PATH with a folder ({LAYOUT}) or a zip of one."
        )
    if path.is_dir():
        files = {
            p.relative_to(path).as_posix(): p
            for p in sorted(path.rglob("*"))
            if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
        }
        stats = [p.stat() for p in files.values()]
        signature = (len(stats), sum(s.st_size for s in stats), max((s.st_mtime_ns for s in stats), default=0))

        def build() -> dict:
            return _decode(path, list(files), lambda name: files[name].read_bytes())
    else:
        st = path.stat()
        signature = (st.st_size, st.st_mtime_ns)

        def build() -> dict:
            return _decode_zip(path)

    key = hashlib.sha256(repr((str(path.resolve()), signature)).encode()).hexdigest()[:16]
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", path.stem)[:40]
    data = cached(Path(root) / "cache" / f"folder-{slug}-{key}.pt", build)
    return Dataset(name=f"folder:{path}", **data)


def _decode_zip(path: Path) -> dict:
    try:
        with zipfile.ZipFile(path) as z:
            members = {info.filename: info for info in z.infolist() if not info.is_dir()}
            return _decode(path, list(members), lambda name: z.read(members[name]))
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as e:
        raise DatasetError(
            f"Could not read {path} as a zip of an image folder ({e}). It looks corrupt or truncated: "
            f"copy it again, or pass folder:PATH of a folder ({LAYOUT})."
        ) from None


def _decode(source: Path, names: list[str], read: Callable[[str], bytes]) -> dict:
    splits: dict[str, list[tuple[str, str]]] = {"train": [], "test": []}
    for name in names:
        p = PurePosixPath(name)
        hidden = any(part.startswith((".", "__MACOSX")) for part in p.parts)
        if len(p.parts) >= 3 and p.parts[-3] in splits and p.suffix.lower() in IMAGE_SUFFIXES and not hidden:
            splits[p.parts[-3]].append((p.parts[-2], name))
    if not splits["train"] and not splits["test"]:
        raise DatasetError(f"No images found in {source}: expected {LAYOUT}.")
    for split, items in splits.items():
        if not items:
            raise DatasetError(f"{source} has no {split}/ images: expected {LAYOUT}. Put each split in its own folder.")
    classes = sorted({cls for cls, _ in splits["train"]})
    stray = sorted({cls for cls, _ in splits["test"]} - set(classes))
    if stray:
        raise DatasetError(
            f"{source}: test class '{stray[0]}' has no train/{stray[0]}/ folder; "
            "add training images for it or remove it."
        )

    # Sorted, so the order (and thus any seeded split or shuffle) does not depend on the zip's order.
    items = [(cls, name) for split in ("train", "test") for cls, name in sorted(splits[split])]
    first = _pixels(source, items[0][1], read)
    h, w = first.shape[:2]
    pixels = np.empty((len(items), h, w, 3), np.uint8)
    rgb = np.zeros(len(items), bool)
    for k, (_, name) in enumerate(
        tqdm(items, desc=f"Decoding {source.name}", unit="img", leave=False, mininterval=1, disable=len(items) < 5000)
    ):
        a = _pixels(source, name, read)
        if a.shape[:2] != (h, w):
            raise DatasetError(
                f"{source}: {name} is {a.shape[1]}x{a.shape[0]} but {items[0][1]} is {w}x{h}; "
                "resize all images to one size first."
            )
        if a.ndim == 2:
            pixels[k, :, :, 0] = a
        else:
            pixels[k], rgb[k] = a, True
    if rgb.any():
        pixels[~rgb, :, :, 1:] = pixels[~rgb, :, :, :1]  # grey to RGB is the value repeated, as PIL does
    else:
        pixels = pixels[..., :1]
    x = torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous()
    index = {cls: i for i, cls in enumerate(classes)}
    y = torch.tensor([index[cls] for cls, _ in items], dtype=torch.int64)
    n = len(splits["train"])
    return {"train_x": x[:n], "train_y": y[:n], "test_x": x[n:], "test_y": y[n:], "classes": classes}


def _pixels(source: Path, name: str, read: Callable[[str], bytes]) -> np.ndarray:
    data = read(name)
    try:
        img = Image.open(io.BytesIO(data))
        if img.mode not in ("L", "RGB"):
            img = img.convert("L" if img.mode in _GRAY_MODES else "RGB")
        return np.asarray(img)
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise DatasetError(f"Could not decode {name} in {source} ({e}); replace or remove that file.") from None
