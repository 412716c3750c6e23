"""Batches cut straight from uint8 tensors that live on the training device (airbench style).

No worker processes and no per-sample Python: each batch is one index, one float conversion, one
fused normalisation and a handful of whole-batch augmentation ops.

``train_loader`` and ``eval_loader`` build the loaders a run uses from its ``DataConfig``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch

from .augment import augment_batch
from .config import AugmentConfig, DataConfig
from .dataset import Dataset

EVAL_BATCH = 512  # evaluation needs no gradients, so bigger batches are simply faster


class BatchLoader:
    """Iterate (float32 normalised images, int64 labels) batches on ``device``.

    The data is kept as uint8 on ``device`` (a quarter of the float size). Each pass draws a new
    order (and new augmentations) from a seeded generator. ``set_epoch(e)``, which the training loop
    calls before every epoch, derives that generator's state from ``(seed, e)`` alone, so epoch ``e``
    is the same whether the run got there in one go or was resumed. ``mean``/``std`` are
    per-channel, in [0, 1] scale (``Dataset.mean``/``.std``).

    ``shard=(rank, world_size)`` is one process's share of a data-parallel run: every rank draws the
    same order and cuts each batch of ``batch_size`` into ``world_size`` pieces, taking piece ``rank``;
    the ranks' pieces together are the single-process batch, so averaging their gradients gives
    that batch's gradient. Their augmentations are drawn apart (seeded with the rank as well).

    Example:
        >>> x = torch.randint(0, 256, (10, 3, 8, 8), dtype=torch.uint8)
        >>> loader = BatchLoader(x, torch.arange(10), 4, shuffle=True, seed=0)
        >>> len(loader), [tuple(xb.shape) for xb, yb in loader]
        (3, [(4, 3, 8, 8), (4, 3, 8, 8), (2, 3, 8, 8)])
        >>> len(BatchLoader(x, torch.arange(10), 4, drop_last=True))
        2
        >>> [len(yb) for _, yb in BatchLoader(x[:9], torch.arange(9), 4, merge_single=True)]  # no batch of one
        [4, 5]
        >>> loader.set_epoch(3); first = [yb.tolist() for _, yb in loader]
        >>> loader.set_epoch(3); first == [yb.tolist() for _, yb in loader]
        True
        >>> halves = [BatchLoader(x, torch.arange(10), 4, shuffle=True, shard=(r, 2)) for r in (0, 1)]
        >>> for half in halves: half.set_epoch(3)
        >>> [sorted(a.tolist() + b.tolist()) for (_, a), (_, b) in zip(*halves)] == [sorted(b) for b in first]
        True
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        *,
        shuffle: bool = False,
        seed: int = 0,
        device: str | torch.device = "cpu",
        augment: AugmentConfig | None = None,
        mean: Sequence[float] | torch.Tensor | None = None,
        std: Sequence[float] | torch.Tensor | None = None,
        drop_last: bool = False,
        merge_single: bool = False,
        shard: tuple[int, int] = (0, 1),
    ):
        if x.dtype != torch.uint8 or x.dim() != 4:
            raise ValueError(f"BatchLoader needs uint8 images (N, C, H, W), got {x.dtype} {tuple(x.shape)}")
        if len(x) != len(y):
            raise ValueError(f"BatchLoader got {len(x)} images but {len(y)} labels")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1 (got {batch_size})")
        self.rank, self.world_size = shard
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"shard must be (rank, world_size) with 0 <= rank < world_size (got {shard})")
        self.device = torch.device(device)
        self.x, self.y = x.to(self.device), y.to(self.device, torch.int64)
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        # A final batch of one breaks BatchNorm in training ("Expected more than 1 value per channel"), in each
        # process: a final batch too small to give every rank two examples joins the one before.
        rest = len(x) % batch_size
        self.merged_single = merge_single and not drop_last and len(x) > 1 and 0 < rest < 2 * self.world_size
        self.note = (
            (
                f"the final batch of {rest} is merged into the one before (BatchNorm needs 2"
                f"{' in each process' if self.world_size > 1 else ''})"
            )
            if self.merged_single
            else ""
        )
        self.augment = augment if augment is not None and augment.enabled else None
        self.seed, self.pass_seed, self.epoch = seed, seed, 0
        # Alternating flip: one coin per example for the run; an example is mirrored in epoch e iff coin XOR (e odd),
        # so any two epochs in a row show it both ways (random flips leave a quarter of them one way twice).
        self.flip_coins = (
            torch.rand(len(x), generator=torch.Generator().manual_seed(seed)).lt(0.5).to(self.device)
            if self.augment is not None and self.augment.flip == "alternate"
            else None
        )
        self.generator = torch.Generator().manual_seed(seed)
        # uint8 -> normalised float in one multiply-add: x * scale + shift.
        c = x.shape[1]
        mean_t = torch.zeros(c) if mean is None else torch.as_tensor(mean, dtype=torch.float32).reshape(c)
        std_t = torch.ones(c) if std is None else torch.as_tensor(std, dtype=torch.float32).reshape(c)
        self.scale = (1 / (255 * std_t)).reshape(1, c, 1, 1).to(self.device)
        self.shift = (-mean_t / std_t).reshape(1, c, 1, 1).to(self.device)

    def set_epoch(self, epoch: int) -> None:
        """Make the next pass epoch ``epoch``'s: its order and augmentations depend on (seed, epoch) only."""
        self.pass_seed, self.epoch = self.seed * 1_000_003 + epoch, epoch
        self.generator.manual_seed(self.pass_seed + 7_919 * self.rank)

    def __len__(self) -> int:
        n = len(self.x)
        return n // self.batch_size if self.drop_last or self.merged_single else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.x)
        # The ranks of a sharded loader share the order (its own generator) and draw their augmentations apart.
        draws = self.generator if self.world_size == 1 else torch.Generator().manual_seed(self.pass_seed)
        order = torch.randperm(n, generator=draws) if self.shuffle else torch.arange(n)
        order = order.to(self.device)
        for i in range(len(self)):
            last = i == len(self) - 1 and self.merged_single
            idx = order[i * self.batch_size : n if last else (i + 1) * self.batch_size].tensor_split(self.world_size)[
                self.rank
            ]
            # index_select, not x[idx]: indexing 4-D uint8 that way measured 1000x slower on a busy 2-core CPU.
            xb = self.x.index_select(0, idx).float().mul_(self.scale).add_(self.shift)
            # Augment after normalising, so zero padding and cutout fill with the mean colour.
            if self.flip_coins is not None:
                mirrored = self.flip_coins.index_select(0, idx) ^ bool(self.epoch % 2)
                xb = torch.where(mirrored[:, None, None, None], xb.flip(3), xb)
            if self.augment is not None:
                xb = augment_batch(xb, self.augment, self.generator)
            yield xb, self.y.index_select(0, idx)


def train_loader(
    dataset: Dataset,
    cfg: DataConfig,
    batch_size: int,
    *,
    seed: int = 0,
    device: str | torch.device = "cpu",
    indices: torch.Tensor | None = None,
    shard: tuple[int, int] = (0, 1),
) -> BatchLoader:
    """Shuffled batches of ``dataset``'s training split (or the ``indices`` chosen of it), augmented and
    normalised as ``cfg`` says. A final batch of one is merged into the one before it. ``shard`` is
    (rank, world size) in a data-parallel run: this rank's piece of every batch.

    Example:
        >>> from workbench.data import load_dataset
        >>> loader = train_loader(load_dataset("digits"), DataConfig(), 64)
        >>> len(loader), next(iter(loader))[0].shape
        (23, torch.Size([64, 1, 8, 8]))
    """
    x, y = (
        (dataset.train_x, dataset.train_y) if indices is None else (dataset.train_x[indices], dataset.train_y[indices])
    )
    return BatchLoader(
        x,
        y,
        batch_size,
        shuffle=True,
        seed=seed,
        device=device,
        merge_single=True,
        shard=shard,
        augment=cfg.augment if cfg.augment.enabled else None,
        **_normalisation(dataset, cfg),
    )


def eval_loader(
    dataset: Dataset,
    cfg: DataConfig,
    *,
    device: str | torch.device = "cpu",
    split: str = "test",
    batch_size: int = EVAL_BATCH,
    indices: torch.Tensor | None = None,
) -> BatchLoader:
    """A whole split (``test`` or ``train``, or the ``indices`` chosen of it) in order, normalised as
    ``cfg`` says and never augmented.

    Example:
        >>> from workbench.data import load_dataset
        >>> len(eval_loader(load_dataset("digits"), DataConfig()).x)
        360
    """
    if split not in ("test", "train"):
        raise ValueError(f"split must be 'test' or 'train' (got '{split}')")
    x, y = (dataset.test_x, dataset.test_y) if split == "test" else (dataset.train_x, dataset.train_y)
    if indices is not None:
        x, y = x[indices.cpu()], y[indices.cpu()]
    return BatchLoader(x, y, batch_size, device=device, **_normalisation(dataset, cfg))


def _normalisation(dataset: Dataset, cfg: DataConfig) -> dict:
    return {"mean": dataset.mean, "std": dataset.std} if cfg.normalize else {}
