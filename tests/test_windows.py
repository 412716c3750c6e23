"""Language-model batches: random windows drawn from (seed, step), fixed validation windows."""

import pytest
import torch

from workbench import ConfigError
from workbench.data.windows import FixedWindows, RandomWindows

STREAM = torch.arange(1_000)


def _batches(loader, epoch):
    loader.set_epoch(epoch)
    return [x for x, _ in loader]


def test_each_target_is_the_next_token_of_its_window():
    for x, y in RandomWindows(STREAM, block_size=16, batch_size=8, steps_per_epoch=4, seed=1):
        assert x.shape == y.shape == (8, 16) and (y == x + 1).all() and (x[:, 1:] == x[:, :-1] + 1).all()


def test_a_batch_depends_on_seed_and_step_only_so_a_resumed_epoch_is_the_same():
    loader = RandomWindows(STREAM, block_size=16, batch_size=8, steps_per_epoch=4, seed=1)
    second = _batches(loader, 1)
    fresh = RandomWindows(STREAM, block_size=16, batch_size=8, steps_per_epoch=4, seed=1)
    assert all(torch.equal(a, b) for a, b in zip(second, _batches(fresh, 1)))  # straight to epoch 1
    assert not torch.equal(second[0], _batches(loader, 0)[0])  # another epoch, other windows
    other_seed = RandomWindows(STREAM, block_size=16, batch_size=8, steps_per_epoch=4, seed=2)
    assert not torch.equal(second[0], _batches(other_seed, 1)[0])


def test_the_shards_of_a_batch_make_the_whole_batch():
    whole = RandomWindows(STREAM, block_size=16, batch_size=8, steps_per_epoch=2, seed=3).batch(5)[0]
    parts = [RandomWindows(STREAM, 16, 8, 2, seed=3, shard=(r, 2)).batch(5)[0] for r in (0, 1)]
    assert torch.equal(torch.cat(parts), whole)


def test_windows_reach_both_ends_and_never_past_them():
    starts = torch.cat([x[:, 0] for x in _batches(RandomWindows(STREAM, 16, 64, 50, seed=0), 0)])
    assert starts.min() >= 0 and starts.max() <= len(STREAM) - 17
    val = FixedWindows(STREAM, block_size=16, windows=10, batch_size=4)
    xs = torch.cat([x for x, _ in val])
    assert xs[0, 0] == 0 and xs[-1, -1] == len(STREAM) - 2 and val.tokens == 10 * 16 and len(val) == 3
    assert all(torch.equal(a, b) for a, b in zip([x for x, _ in val], [x for x, _ in val]))


def test_a_text_shorter_than_a_window_says_what_to_change():
    with pytest.raises(ConfigError, match="fewer than a window of block_size 64 \\+ 1: use a smaller block_size"):
        FixedWindows(torch.arange(50), block_size=64, windows=4, batch_size=2)
