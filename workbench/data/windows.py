"""Batches for a language model: windows of ``block_size + 1`` tokens cut from one long token stream,
the input the first ``block_size`` and the target the same window shifted by one (each position
predicts the next token).

Training draws its windows at random, each batch from ``(seed, step)`` alone, so a run resumed at step
``s`` sees exactly the batches it would have seen, whatever came before. Validation takes a fixed set
of evenly spaced windows, so every run of the same text is scored on the same tokens.

Both are loaders the training loop takes as it takes image batches: they iterate ``(x, y)``, have a
``len`` (steps per epoch) and ``set_epoch``.

Example:
    >>> stream = torch.arange(100)
    >>> train = RandomWindows(stream, block_size=8, batch_size=4, steps_per_epoch=3, seed=0)
    >>> x, y = next(iter(train))
    >>> x.shape, bool((y == x + 1).all())  # the target is the next token
    (torch.Size([4, 8]), True)
    >>> val = FixedWindows(stream, block_size=8, windows=5, batch_size=2)
    >>> [len(yb) for _, yb in val], val.tokens
    ([2, 2, 1], 40)
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import torch

from .._errors import require


def _check_stream(tokens: torch.Tensor, block_size: int) -> None:
    require(tokens.dim() == 1, f"a token stream is one-dimensional (got shape {tuple(tokens.shape)})")
    require(block_size >= 1, f"block_size must be >= 1 (got {block_size})")
    require(
        len(tokens) > block_size,
        f"the text has {len(tokens):,} tokens, fewer than a window of block_size {block_size} + 1: "
        "use a smaller block_size or more text",
    )


class RandomWindows:
    """``steps_per_epoch`` batches of ``batch_size`` windows at random starts, batch ``s`` of epoch ``e``
    drawn from a generator seeded with ``(seed, e * steps_per_epoch + s)``.

    ``shard=(rank, world_size)`` takes rank's share of each batch (the batch is drawn alike on every rank
    and cut in ``world_size`` pieces), as ``BatchLoader`` does for images.
    """

    def __init__(
        self,
        tokens: torch.Tensor,
        block_size: int,
        batch_size: int,
        steps_per_epoch: int,
        *,
        seed: int = 0,
        device: str | torch.device = "cpu",
        shard: tuple[int, int] = (0, 1),
    ):
        _check_stream(tokens, block_size)
        require(batch_size >= 1 and steps_per_epoch >= 1, "batch_size and steps_per_epoch must be >= 1")
        rank, world = shard
        require(0 <= rank < world <= batch_size, f"shard {shard} needs 0 <= rank < world_size <= batch_size")
        self.tokens, self.block_size, self.batch_size = tokens.to(device), block_size, batch_size
        self.steps_per_epoch, self.seed, self.shard, self.epoch = steps_per_epoch, seed, shard, 0

    def __len__(self) -> int:
        return self.steps_per_epoch

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch of global step ``step``: the same on every call, every rank's share of one draw."""
        # CPU generators keep only the low 32 bits of a seed: mix seed and step into all of them.
        mixed = hashlib.blake2b(f"{self.seed}:{step}".encode(), digest_size=4).digest()
        generator = torch.Generator().manual_seed(int.from_bytes(mixed, "little"))
        starts = torch.randint(len(self.tokens) - self.block_size, (self.batch_size,), generator=generator)
        rank, world = self.shard
        return _windows(self.tokens, starts.tensor_split(world)[rank].to(self.tokens.device), self.block_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        first = self.epoch * self.steps_per_epoch
        return (self.batch(first + s) for s in range(self.steps_per_epoch))


class FixedWindows:
    """``windows`` windows at evenly spaced starts over the whole stream (the same every time), in
    batches of ``batch_size``; ``tokens`` is how many target tokens they score."""

    def __init__(self, tokens: torch.Tensor, block_size: int, windows: int, batch_size: int, device="cpu"):
        _check_stream(tokens, block_size)
        require(windows >= 1 and batch_size >= 1, "windows and batch_size must be >= 1")
        self.tokens_stream, self.block_size, self.batch_size = tokens.to(device), block_size, batch_size
        last = len(tokens) - block_size - 1
        self.starts = torch.linspace(0, last, windows).round().long().unique().to(self.tokens_stream.device)
        self.tokens = len(self.starts) * block_size

    def __len__(self) -> int:
        return -(-len(self.starts) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for chunk in self.starts.split(self.batch_size):
            yield _windows(self.tokens_stream, chunk, self.block_size)


def _windows(tokens: torch.Tensor, starts: torch.Tensor, block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    index = starts[:, None] + torch.arange(block_size + 1, device=tokens.device)
    window = tokens[index]
    return window[:, :-1], window[:, 1:]
