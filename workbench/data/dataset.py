"""The in-memory dataset (uint8 image tensors + labels) and its on-disk decoded cache."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import torch

from .._files import atomic_torch_save

# Bump when the cached dict changes shape, so old caches are rebuilt instead of misread.
_CACHE_VERSION = 1


class DatasetError(ValueError):
    """A dataset that cannot be found, fetched or decoded; the message says what to do."""


@dataclass(repr=False)
class Dataset:
    """A decoded image classification set: uint8 images (N, C, H, W), int64 labels, class names.

    Example:
        >>> ds = Dataset("toy", torch.zeros(4, 1, 8, 8, dtype=torch.uint8), torch.tensor([0, 1, 0, 1]),
        ...              torch.zeros(2, 1, 8, 8, dtype=torch.uint8), torch.tensor([0, 1]), ["a", "b"])
        >>> ds
        Dataset('toy', train=4, test=2, classes=2, shape=(1, 8, 8))
        >>> ds.num_classes, ds.in_channels, ds.image_size, ds.mean.tolist()
        (2, 1, 8, [0.0])
    """

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: list[str]

    def __post_init__(self) -> None:
        for split in ("train", "test"):
            x, y = getattr(self, f"{split}_x"), getattr(self, f"{split}_y")
            if x.dtype != torch.uint8 or x.dim() != 4 or len(x) != len(y):
                raise DatasetError(f"{self.name}: {split}_x must be uint8 (N, C, H, W) with one label per image")
            setattr(self, f"{split}_y", y.long())
        if self.train_x.shape[1:] != self.test_x.shape[1:]:
            raise DatasetError(f"{self.name}: train and test images differ in shape")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def in_channels(self) -> int:
        return self.train_x.shape[1]

    @property
    def image_size(self) -> int:
        return self.train_x.shape[2]

    @property
    def mean(self) -> torch.Tensor:
        """Per-channel mean of the train split in [0, 1] scale."""
        return self._moments[0]

    @property
    def std(self) -> torch.Tensor:
        """Per-channel standard deviation of the train split in [0, 1] scale."""
        return self._moments[1]

    @cached_property
    def _moments(self) -> tuple[torch.Tensor, torch.Tensor]:
        # From a 256-bin histogram per channel: exact for uint8, and 10x faster than summing floats.
        levels = torch.arange(256, dtype=torch.float64) / 255
        hist = torch.stack(
            [torch.bincount(self.train_x[:, c].reshape(-1), minlength=256) for c in range(self.in_channels)]
        ).double()
        n = hist.sum(1)
        mean = hist @ levels / n
        var = hist @ levels.square() / n - mean.square()
        return mean.float(), var.clamp_min(0).sqrt().float().clamp_min(1e-6)

    def __repr__(self) -> str:
        return (
            f"Dataset('{self.name}', train={len(self.train_x)}, test={len(self.test_x)}, "
            f"classes={self.num_classes}, shape={tuple(self.train_x.shape[1:])})"
        )


def cached(path: Path, build: Callable[[], dict]) -> dict:
    """The dict of tensors/lists in the cache file at ``path``, built and saved on first use.

    The file is written atomically, so a crash or a failed decode never leaves a half-written cache behind.
    """
    if path.exists():
        try:
            data = torch.load(path, weights_only=True)
            if data.pop("version", None) == _CACHE_VERSION:
                return data
        except Exception:  # noqa: BLE001 - an unreadable cache, whatever the error, is rebuilt, never trusted
            pass
    data = build()
    atomic_torch_save({**data, "version": _CACHE_VERSION}, path)
    return data
