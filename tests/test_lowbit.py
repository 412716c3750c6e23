"""Simulated low-bit weights: fewer bits, larger rounding error; a GPT's tied head and embedding are left alone;
a bit width or group size that cannot apply is one line."""

import pytest
import torch
from torch import nn

from workbench import ConfigError
from workbench.compress import bits_per_weight, group_quantize, simulate_low_bit
from workbench.models import GPT


def test_each_group_has_at_most_two_to_the_bits_levels_and_error_falls_with_bits():
    w = torch.randn(16, 128, generator=torch.Generator().manual_seed(0))
    errors = []
    for bits in (2, 3, 4, 6, 8):
        q = group_quantize(w, bits, 32)
        assert all(len(g.unique()) <= 2**bits for g in q.reshape(-1, 32))
        errors.append((q - w).abs().max().item())
    assert errors == sorted(errors, reverse=True) and errors[-1] < 0.02
    assert bits_per_weight(4, 32) == 5.0 and bits_per_weight(3, 128) == 3.25


def test_a_gpt_keeps_its_tied_embedding_and_the_original_is_untouched():
    torch.manual_seed(0)
    gpt = GPT(vocab_size=64, n_layer=1, n_head=2, n_embd=32, block_size=8)
    before = {k: v.clone() for k, v in gpt.state_dict().items()}
    low = simulate_low_bit(gpt, bits=3, group_size=16)
    assert torch.equal(low.transformer.wte.weight, gpt.transformer.wte.weight)  # the head is the embedding
    assert not torch.equal(low.transformer.h[0].mlp.c_fc.weight, gpt.transformer.h[0].mlp.c_fc.weight)
    assert all(torch.equal(v, gpt.state_dict()[k]) for k, v in before.items())


BAD = {
    "0 bits": ({"bits": 0, "group_size": 8}, "bits must be a whole number from 2 to 8 .got 0."),
    "9 bits": ({"bits": 9, "group_size": 8}, "bits must be a whole number from 2 to 8 .got 9."),
    "group of 1": ({"bits": 4, "group_size": 1}, "group_size must be a whole number >= 2"),
    "group larger than a layer": ({"bits": 4, "group_size": 256}, "group_size 256 is larger than a layer's 32 inputs"),
    "group not dividing": ({"bits": 4, "group_size": 12}, "group_size 12 does not divide a layer's 32 inputs"),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_a_bit_width_or_group_that_cannot_apply_is_one_line(case):
    options, message = BAD[case]
    net = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 4))
    with pytest.raises(ConfigError, match=message):
        simulate_low_bit(net, **options)
