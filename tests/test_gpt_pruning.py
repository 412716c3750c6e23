"""Structured pruning of a GPT: heads, MLP units and blocks really removed (fewer parameters, the same head size);
the smaller model computes exactly what the original does with those parts switched off; it rebuilds from its
arguments; the parts that matter least on data go first; fine-tuning recovers the loss; bad input is one line
before any work."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from workbench import ConfigError
from workbench.compress import gpt_importance, prune_gpt, slice_gpt
from workbench.models import GPT, create_model, generate_tokens, gpt_args
from workbench.train import TrainConfig, train

TEXT = "the cat sat on the mat. the dog sat on the log. a cat and a dog ran to the mat and sat. " * 30
VOCAB = sorted(set(TEXT))
IDS = torch.tensor([VOCAB.index(c) for c in TEXT])
CONTEXT = 16


def windows(count: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``count`` batches of 8 random windows of the toy text: (inputs, next tokens)."""
    generator = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(count):
        starts = torch.randint(len(IDS) - CONTEXT - 1, (8, 1), generator=generator)
        ids = IDS[starts + torch.arange(CONTEXT + 1)]
        out.append((ids[:, :-1], ids[:, 1:]))
    return out


def loss_of(model: GPT, batches) -> float:
    with torch.no_grad():
        return sum(F.cross_entropy(model(x).flatten(0, 1), y.flatten()).item() for x, y in batches) / len(batches)


def fine_tune(model: GPT, steps: int = 30) -> None:
    train(model, windows(steps, seed=7), TrainConfig(epochs=1, optimizer="adamw", lr=3e-3, weight_decay=0.0))


@pytest.fixture(scope="module")
def trained() -> GPT:
    torch.manual_seed(0)
    model = GPT(vocab_size=len(VOCAB), n_layer=2, n_head=4, n_embd=32, block_size=CONTEXT)
    fine_tune(model, steps=100)
    return model.eval()


def test_pruning_removes_heads_units_and_blocks_and_keeps_the_head_size(trained):
    before = copy.deepcopy(trained.state_dict())
    small = prune_gpt(trained, windows(2, seed=1), heads=0.5, mlp=0.5, blocks=1)
    s = small.shape
    assert (s.n_layer, s.n_head, s.head_dim, s.mlp_width, s.n_embd) == (1, 2, 8, 64, 32)
    block = small.transformer.h[0]
    assert block.attn.c_attn.weight.shape == (3 * 2 * 8, 32) and block.attn.c_proj.weight.shape == (32, 16)
    assert block.mlp.c_fc.weight.shape == (64, 32) and block.mlp.c_proj.weight.shape == (32, 64)
    assert sum(p.numel() for p in small.parameters()) < 0.6 * sum(p.numel() for p in trained.parameters())
    assert small(IDS[None, :CONTEXT]).shape == (1, CONTEXT, len(VOCAB))
    assert small.new_cache(batch=1).keys[0].shape == (1, 2, CONTEXT, 8)
    assert all(torch.equal(v, trained.state_dict()[k]) for k, v in before.items())  # the original is untouched


@pytest.mark.parametrize("positions", ["learned", "rotary"])
@pytest.mark.parametrize("attention", ["sdpa", "naive"])
def test_the_smaller_model_is_the_original_with_the_removed_parts_switched_off(positions, attention):
    torch.manual_seed(0)
    gpt = GPT(
        vocab_size=20, n_layer=3, n_head=4, n_embd=32, block_size=CONTEXT, positions=positions, attention=attention
    )
    heads = torch.stack([torch.randperm(4)[:2].sort().values for _ in range(3)])
    units = torch.stack([torch.randperm(128)[:40].sort().values for _ in range(3)])
    small = slice_gpt(gpt, heads=heads, mlp=units, blocks=[0, 2])
    masked = copy.deepcopy(gpt)
    with torch.no_grad():
        for layer, block in enumerate(masked.transformer.h):
            head_off = torch.ones(4, dtype=torch.bool)
            head_off[heads[layer]] = False
            block.attn.c_proj.weight[:, head_off.repeat_interleave(8)] = 0  # the head's output never reaches x
            unit_off = torch.ones(128, dtype=torch.bool)
            unit_off[units[layer]] = False
            block.mlp.c_proj.weight[:, unit_off] = 0
    masked.transformer.h[1].register_forward_hook(lambda module, args, output: args[0])  # block 1 skipped
    ids = torch.randint(20, (2, CONTEXT))
    with torch.no_grad():
        torch.testing.assert_close(small(ids), masked(ids), rtol=1e-5, atol=1e-5)
    cached, recomputed = (list(generate_tokens(small, ids[:, :4], 8, temperature=0, kv_cache=kv)) for kv in (1, 0))
    assert cached == recomputed  # the KV cache of 2 heads of 8 dims in 2 layers decodes as recomputing does
    three = torch.stack([torch.randperm(4)[:3].sort().values for _ in range(3)])
    first = slice_gpt(gpt, heads=three, mlp=units)  # its heads (24 wide) are narrower than n_embd (32)
    twice = slice_gpt(first, heads=torch.tensor([[0, 2]] * 3), mlp=torch.arange(0, 40, 2).expand(3, -1))
    once = slice_gpt(gpt, heads=three[:, [0, 2]], mlp=units[:, ::2])
    assert all(torch.equal(v, once.state_dict()[k]) for k, v in twice.state_dict().items())


def test_a_pruned_gpt_rebuilds_from_its_arguments_and_weights(trained):
    small = prune_gpt(trained, windows(2, seed=1), heads=0.25, mlp=0.5)
    args = gpt_args(small)
    assert (args["n_head"], args["head_dim"], args["mlp_width"]) == (3, 8, 64)
    again = create_model(name="gpt", **args)  # as a checkpoint's model_args rebuild it
    again.load_state_dict(small.state_dict())
    with torch.no_grad():
        assert torch.equal(again.eval()(IDS[None, :CONTEXT]), small.eval()(IDS[None, :CONTEXT]))


def test_the_parts_that_matter_least_on_data_go_first(trained):
    model = copy.deepcopy(trained)
    with torch.no_grad():  # layer 0's head 2 writes nothing; block 1 adds nothing to the residual stream
        model.transformer.h[0].attn.c_proj.weight[:, 16:24] = 0
        for linear in (model.transformer.h[1].attn.c_proj, model.transformer.h[1].mlp.c_proj):
            linear.weight.zero_()
            linear.bias.zero_()
    batches = windows(2, seed=1)
    scores = gpt_importance(model, batches)
    assert scores["heads"][0, 2] == 0 and bool((scores["heads"][0, [0, 1, 3]] > 0).all())
    assert scores["blocks"][1] == pytest.approx(0, abs=1e-5) and scores["blocks"][0] > 0.1  # block 0 does the work
    assert scores["loss"] == pytest.approx(loss_of(model, batches), abs=1e-5)
    small = prune_gpt(model, batches, heads=0.25, mlp=0, blocks=1)
    assert small.shape.n_layer == 1 and small.shape.n_head == 3  # block 1 dropped, one head of each layer
    queries = model.transformer.h[0].attn.c_attn.weight[:32]  # layer 0's q rows: 4 heads of 8
    kept = [*range(16), *range(24, 32)]  # heads 0, 1 and 3
    assert torch.equal(small.transformer.h[0].attn.c_attn.weight[:24], queries[kept])


def test_fine_tuning_between_steps_recovers_the_loss_the_pruning_cost(trained):
    batches, held_out = windows(4, seed=1), windows(4, seed=2)
    just_pruned = prune_gpt(trained, batches, heads=0.5, mlp=0.5)
    calls = []
    tuned = prune_gpt(trained, batches, heads=0.5, mlp=0.5, steps=2, finetune=lambda m: calls.append(fine_tune(m)))
    assert len(calls) == 2 and tuned.shape == just_pruned.shape
    assert loss_of(trained, held_out) < loss_of(just_pruned, held_out)
    assert loss_of(tuned, held_out) < loss_of(just_pruned, held_out)


def untouchable():
    """Batches that fail if read: checks must come before any work."""
    raise AssertionError("the batches were read before the arguments were checked")
    yield


BAD = {
    "all the heads": ({"heads": 0.9}, "heads=0.9 would prune 4 heads of 4 in each layer: keep at least one"),
    "a fraction of 1": ({"heads": 1.0}, r"heads must be the fraction of each layer's heads to remove, in \[0, 1\)"),
    "a negative fraction": ({"mlp": -0.1}, r"mlp must be the fraction of each layer's MLP units to remove"),
    "every block": ({"blocks": 2}, "blocks=2 must be a whole number of blocks to drop, 0 to 1"),
    "half a block": ({"blocks": 0.5}, "blocks=0.5 must be a whole number of blocks to drop"),
    "no steps": ({"steps": 0}, "steps must be a whole number >= 1"),
    "a finetune that is no function": ({"finetune": "yes"}, "finetune must be a function"),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_bad_pruning_arguments_are_one_line_before_any_work(trained, case):
    options, message = BAD[case]
    with pytest.raises(ConfigError, match=message) as error:
        prune_gpt(trained, untouchable(), **options)
    assert "\n" not in str(error.value)


def test_a_model_that_is_no_gpt_or_no_batches_is_one_line(trained):
    with pytest.raises(ConfigError, match=r"GPT pruning takes a workbench GPT \(got Linear\): prune other models with"):
        prune_gpt(nn.Linear(4, 4), untouchable())
    with pytest.raises(ConfigError, match="batches holds no batches"):
        prune_gpt(trained, [])
    with pytest.raises(ConfigError, match=r"heads indices must be distinct and in 0..3"):
        slice_gpt(trained, heads=torch.tensor([[0, 0], [1, 2]]))
    with pytest.raises(ConfigError, match=r"blocks must be distinct layer indices in 0..1, at least one"):
        slice_gpt(trained, blocks=[])
