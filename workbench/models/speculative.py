"""Speculative decoding (Leviathan et al. 2023; Chen et al. 2023), greedy: a small draft model proposes
``lookahead`` tokens one at a time, the target checks all of them in one forward pass, and the longest prefix
the target agrees with is kept, plus the target's own next token. The output is exactly the target's greedy
output; what changes is how many target passes it takes: one per accepted run instead of one per token.

Both models keep a KV cache; a rejected proposal is undone by moving the cache's position back (the keys past
it are overwritten by the next pass).

Example:
    >>> from workbench.models import generate
    >>> _ = torch.manual_seed(0)
    >>> target = GPT(vocab_size=16, n_layer=2, n_head=2, n_embd=32, block_size=64).eval()
    >>> tokens, stats = speculative_generate(target, target, [1, 2, 3], 12, lookahead=4)  # a perfect draft
    >>> tokens == generate(target, [[1, 2, 3]], 12, temperature=0)[0], stats.acceptance
    (True, 1.0)
    >>> stats.target_passes  # 12 tokens in 3 passes of 4 proposals each (the last one's bonus token unused)
    3
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from .generation import as_prompt
from .gpt import GPT


@dataclass
class SpeculativeStats:
    """What a speculative generation did: draft tokens proposed and accepted, and target forward passes."""

    proposed: int = 0
    accepted: int = 0
    target_passes: int = 0
    new_tokens: int = 0

    @property
    def acceptance(self) -> float:
        """The share of the draft's proposals the target kept."""
        return self.accepted / self.proposed if self.proposed else 0.0

    @property
    def tokens_per_target_pass(self) -> float:
        return self.new_tokens / self.target_passes if self.target_passes else 0.0


def check_draft(target: GPT, draft: GPT, lookahead: int) -> None:
    """One line for a draft that cannot serve ``target``: another vocabulary, or ``lookahead`` < 1."""
    if not isinstance(draft, GPT):
        raise ValueError(f"the draft must be a GPT language model (got {type(draft).__name__})")
    if draft.shape.vocab_size != target.shape.vocab_size:
        raise ValueError(
            f"the draft's vocabulary has {draft.shape.vocab_size} ids and the target's {target.shape.vocab_size}: "
            "a draft must share the target's tokenizer (train it on the same text and tokenizer)"
        )
    if not isinstance(lookahead, int) or lookahead < 1:
        raise ValueError(f"lookahead must be a whole number >= 1 (got {lookahead!r}): the draft's tokens per check")


def speculative_tokens(
    target: GPT,
    draft: GPT,
    prompt: Sequence[int] | torch.Tensor,
    max_new_tokens: int,
    *,
    lookahead: int = 4,
    stats: SpeculativeStats | None = None,
) -> Iterator[int]:
    """Yield the target's greedy tokens after ``prompt`` (one prompt), ``max_new_tokens`` of them, as each
    check accepts them; ``stats`` (if given) counts proposals, acceptances and target passes."""
    check_draft(target, draft, lookahead)
    if max_new_tokens <= 0:
        raise ValueError(f"max_new_tokens must be > 0 (got {max_new_tokens}): ask for at least one new token")
    device = target.transformer.wte.weight.device
    ids = as_prompt(prompt, 0, target.shape.vocab_size).to(device)
    context = min(target.shape.block_size, draft.shape.block_size)
    if len(ids) + max_new_tokens + lookahead > context:
        raise ValueError(
            f"speculative decoding keeps within the context: prompt ({len(ids)}) + max_new_tokens ({max_new_tokens}) "
            f"+ lookahead ({lookahead}) is more than {context} tokens; ask for fewer"
        )
    stats = stats if stats is not None else SpeculativeStats()
    return _speculate(target, draft, ids, max_new_tokens, lookahead, stats)


@torch.no_grad()
def _speculate(target, draft, ids, max_new_tokens, lookahead, stats) -> Iterator[int]:
    modes = target.training, draft.training
    target.eval(), draft.eval()
    try:
        # Both caches hold every token but the last; the last is fed at the start of each round.
        caches = target.new_cache(1), draft.new_cache(1)
        if len(ids) > 1:
            for model, cache in zip((target, draft), caches):
                model(ids[None, :-1], cache=cache, last_only=True)
        t_cache, d_cache = caches
        last, produced = ids[-1:], 0
        while produced < max_new_tokens:
            start = t_cache.pos
            k = min(lookahead, max_new_tokens - produced)
            proposal, token = [], last
            for _ in range(k):  # the draft writes k tokens, one pass each
                token = draft(token[None], cache=d_cache, last_only=True)[0, -1].argmax()[None]
                proposal.append(token)
            proposal = torch.cat(proposal)
            # The target checks them all in one pass: its choice after last, after d1, ..., after dk.
            checked = target(torch.cat((last, proposal))[None], cache=t_cache)[0].argmax(dim=-1)
            stats.target_passes += 1
            agree = (checked[:k] == proposal).long()
            n = int(agree.cumprod(0).sum())  # the proposals before the first disagreement
            kept = torch.cat((proposal[:n], checked[n : n + 1]))[: max_new_tokens - produced]
            stats.proposed, stats.accepted = stats.proposed + k, stats.accepted + n
            for t in kept.tolist():
                produced += 1
                stats.new_tokens += 1
                yield t
            # Undo what was not kept: the caches keep last and the accepted proposals.
            t_cache.pos = start + 1 + n
            if n == k:  # the draft never read its own last proposal: read it now
                draft(proposal[-1:][None], cache=d_cache, last_only=True)
            d_cache.pos = start + 1 + n
            last = kept[-1:]
    finally:
        target.train(modes[0]), draft.train(modes[1])


def speculative_generate(
    target: GPT, draft: GPT, prompt: Sequence[int] | torch.Tensor, max_new_tokens: int, *, lookahead: int = 4
) -> tuple[list[int], SpeculativeStats]:
    """The new tokens (the target's greedy output) and what the speculation did."""
    stats = SpeculativeStats()
    tokens = list(speculative_tokens(target, draft, prompt, max_new_tokens, lookahead=lookahead, stats=stats))
    return tokens, stats
