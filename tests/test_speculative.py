"""Speculative decoding: a draft proposes, the target checks; the output is the target's own greedy output,
whatever the draft, and a bad draft or lookahead is one line."""

import pytest
import torch

from workbench.models import GPT, generate, speculative_generate

pytestmark = pytest.mark.usefixtures("one_thread")

VOCAB = 40


def wide_gpt(seed, n_layer=2, n_embd=32, block_size=48):
    """Weights wider than GPT-2's init, so greedy tokens vary with the context (a tied model at init mostly
    repeats its last token, and any draft would be right)."""
    torch.manual_seed(seed)
    model = GPT(vocab_size=VOCAB, n_layer=n_layer, n_head=2, n_embd=n_embd, block_size=block_size).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.5)
    return model


@pytest.mark.parametrize("lookahead", [1, 2, 3, 5])
def test_the_output_is_the_targets_greedy_output_whatever_the_draft(lookahead):
    target, draft = wide_gpt(0), wide_gpt(1, n_layer=1, n_embd=16)
    for prompt in ([3], [5, 9, 2, 7], list(range(1, 12))):
        alone = generate(target, [prompt], 20, temperature=0)[0]
        tokens, stats = speculative_generate(target, draft, prompt, 20, lookahead=lookahead)
        assert tokens == alone and len(set(alone)) >= 3
        assert stats.new_tokens == 20 and 0 <= stats.accepted <= stats.proposed
        # Every pass adds its accepted proposals and the target's own token (the last pass may drop that one).
        assert stats.new_tokens - stats.accepted in (stats.target_passes, stats.target_passes - 1)


def test_a_draft_that_is_the_target_is_always_accepted():
    target = wide_gpt(0)
    tokens, stats = speculative_generate(target, target, [4, 4, 8], 15, lookahead=4)
    assert tokens == generate(target, [[4, 4, 8]], 15, temperature=0)[0]
    assert stats.acceptance == 1.0 and stats.target_passes == 3  # 5 tokens a pass: 4 proposals and the bonus


def test_fewer_target_passes_than_tokens_when_the_draft_agrees_often():
    target = wide_gpt(0)
    draft = wide_gpt(0)  # the same weights, so it agrees; then nudged so it disagrees now and then
    with torch.no_grad():
        draft.transformer.h[1].mlp.c_fc.weight.add_(0.05 * torch.randn_like(draft.transformer.h[1].mlp.c_fc.weight))
    tokens, stats = speculative_generate(target, draft, [1, 2, 3], 30, lookahead=4)
    assert tokens == generate(target, [[1, 2, 3]], 30, temperature=0)[0]
    assert stats.target_passes < 30 and stats.tokens_per_target_pass > 1


BAD = {
    "another vocabulary": (
        lambda t: GPT(vocab_size=VOCAB + 1, n_layer=1, n_head=1, n_embd=8, block_size=48),
        {},
        "the draft's vocabulary has 41 ids and the target's 40",
    ),
    "lookahead 0": (lambda t: t, {"lookahead": 0}, "lookahead must be a whole number >= 1"),
    "past the context": (lambda t: t, {"max_new_tokens": 46}, "speculative decoding keeps within the context"),
    "no new tokens": (lambda t: t, {"max_new_tokens": 0}, "max_new_tokens must be > 0"),
    "not a GPT": (lambda t: torch.nn.Linear(2, 2), {}, "the draft must be a GPT language model"),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_a_draft_or_lookahead_that_cannot_work_is_one_line(case):
    make_draft, options, message = BAD[case]
    target = wide_gpt(0)
    kwargs = {"max_new_tokens": 5, "lookahead": 4, **options}
    with pytest.raises(ValueError, match=message):
        speculative_generate(target, make_draft(target), [1, 2], kwargs.pop("max_new_tokens"), **kwargs)
