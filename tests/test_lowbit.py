"""Simulated low-bit weights: fewer bits, larger rounding error; a GPT's tied head and embedding are left alone;
activation-aware scales beat round-to-nearest where a few input channels are large; a bit width, group size or
scaling that cannot apply is one line."""

import pytest
import torch
from torch import nn

from workbench import ConfigError
from workbench.compress import awq_scale, bits_per_weight, group_quantize, low_bit_curve, simulate_low_bit
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


def outlier_inputs(rows: int, generator: torch.Generator) -> torch.Tensor:
    """Inputs whose first 4 of 128 channels are 20x larger than the rest, the activations AWQ is built for."""
    x = torch.randn(rows, 128, generator=generator)
    x[:, :4] *= 20
    return x


def test_activation_aware_scales_cut_the_3_bit_error_where_a_few_input_channels_are_large():
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(128, 64))
    calibration, held_out = outlier_inputs(256, generator), outlier_inputs(256, generator)
    with torch.no_grad():
        exact = net(held_out)
        rtn = (simulate_low_bit(net, 3, 32)(held_out) - exact).pow(2).mean()
        awq = (simulate_low_bit(net, 3, 32, scales="awq", calibration=[calibration])(held_out) - exact).pow(2).mean()
    assert awq < 0.5 * rtn  # about 0.3x here, on inputs the search never saw


def test_awq_scale_prefers_the_large_channels_and_alpha_zero_is_round_to_nearest():
    generator = torch.Generator().manual_seed(1)
    w, x = torch.randn(16, 128, generator=generator), outlier_inputs(128, generator)
    s, alpha = awq_scale(w, x, bits=3, group_size=32)
    assert 0 < alpha < 1 and s[:4].min() > s[4:].max()  # the outlier channels' weights are scaled up most
    plain, _ = awq_scale(w, torch.ones(8, 128), bits=3, group_size=32)  # equal activations: nothing to prefer
    assert torch.equal(plain, torch.ones(128))


def test_a_gpt_under_awq_keeps_its_tied_embedding_and_takes_ids_or_loader_pairs():
    torch.manual_seed(0)
    gpt = GPT(vocab_size=64, n_layer=1, n_head=2, n_embd=32, block_size=8)
    ids = torch.randint(64, (4, 9))
    from_ids = simulate_low_bit(gpt, bits=3, group_size=16, scales="awq", calibration=[ids[:, :-1]])
    from_pairs = simulate_low_bit(gpt, bits=3, group_size=16, scales="awq", calibration=[(ids[:, :-1], ids[:, 1:])])
    assert torch.equal(from_ids.transformer.wte.weight, gpt.transformer.wte.weight)
    assert torch.equal(from_ids.transformer.h[0].mlp.c_fc.weight, from_pairs.transformer.h[0].mlp.c_fc.weight)
    assert not torch.equal(from_ids.transformer.h[0].mlp.c_fc.weight, gpt.transformer.h[0].mlp.c_fc.weight)


SCALING = {
    "awq without calibration": ({"scales": "awq"}, "scales='awq' needs calibration inputs"),
    "awq with no batches": ({"scales": "awq", "calibration": []}, "calibration holds no batches"),
    "unknown scaling": ({"scales": "gptq"}, "scales 'gptq' is not one of: rtn, awq"),
}


@pytest.mark.parametrize("case", SCALING, ids=list(SCALING))
def test_a_scaling_that_cannot_apply_is_one_line(case):
    options, message = SCALING[case]
    net = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 4))
    with pytest.raises(ConfigError, match=message) as error:
        simulate_low_bit(net, bits=4, group_size=16, **options)
    assert "\n" not in str(error.value)
    with pytest.raises(ConfigError, match=message):  # the curve checks before scoring anything
        low_bit_curve(
            net,
            lambda m: 0.0,
            bits=(4,),
            group_sizes=(16,),
            scales=("rtn", options["scales"]),
            calibration=options.get("calibration"),
        )
