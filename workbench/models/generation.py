"""New tokens from a GPT, one step at a time: greedy or sampled (temperature, top-k, top-p), with or without
the KV cache, for a batch of prompts of different lengths.

``generate_tokens`` yields each step's new token per prompt as soon as it is chosen (a UI streams
them); ``generate`` collects them. Prompts of different lengths are left-padded so every row's
next token comes out of the same column, and the model is told which tokens are padding (``real``):
it attends to real tokens only and counts positions from each row's first real token, so each row
gets what it would alone. Past ``block_size`` tokens, the model sees the last ``block_size`` only,
as nanoGPT: with the cache that means refilling it from that window at every step, since every
token's position, so its keys and values, changed.

Example:
    >>> import torch
    >>> from workbench.models.gpt import GPT
    >>> _ = torch.manual_seed(0)
    >>> model = GPT(vocab_size=10, n_layer=1, n_head=2, n_embd=16, block_size=8).eval()
    >>> generate(model, [[1, 2, 3], [4]], max_new_tokens=5, temperature=0)  # greedy, two prompts
    [[3, 8, 8, 8, 8], [4, 4, 4, 4, 4]]
    >>> for step in generate_tokens(model, [[1, 2, 3], [4]], max_new_tokens=2, temperature=0):
    ...     print(step)
    [3, 4]
    [8, 4]
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

from .gpt import GPT

Prompts = Sequence[Sequence[int] | torch.Tensor] | torch.Tensor


def generate(
    model: GPT,
    prompts: Prompts,
    max_new_tokens: int,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int | None = None,
    kv_cache: bool = True,
    compiled: bool = False,
    kv_int8: bool | None = None,
) -> list[list[int]]:
    """The ``max_new_tokens`` new tokens of each prompt (the prompt not repeated); see ``generate_tokens``."""
    options = {"temperature": temperature, "top_k": top_k, "top_p": top_p, "seed": seed, "kv_cache": kv_cache}
    steps = list(generate_tokens(model, prompts, max_new_tokens, **options, compiled=compiled, kv_int8=kv_int8))
    return [list(row) for row in zip(*steps)]


def generate_tokens(
    model: GPT,
    prompts: Prompts,
    max_new_tokens: int,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int | None = None,
    kv_cache: bool = True,
    compiled: bool = False,
    kv_int8: bool | None = None,
) -> Iterator[list[int]]:
    """Yield one new token per prompt, ``max_new_tokens`` times.

    ``prompts``: a list of prompts (lists of token ids or 1-D tensors, of any lengths), or a 2-D tensor.
    ``temperature`` 0 is greedy (the likeliest token); above, logits are divided by it and sampled,
    from the ``top_k`` likeliest tokens and/or the fewest whose probability reaches ``top_p``. ``seed``
    makes the sampling repeatable. ``kv_cache=False`` recomputes the whole window at every step: the
    same tokens, slower. The model is run in eval mode (no dropout), and left as it was found.
    ``compiled``: through ``torch.compile`` (with the cache, a ``StaticKVCache``, so a step compiles once; prompts
    of one length): the first call pays for compiling. ``kv_int8``: the cache in int8 (a ``QuantizedKVCache``),
    about a quarter of the memory, its keys and values rounded; not with ``compiled``; None: as the model's
    ``shape.kv_cache`` says.
    """
    if max_new_tokens <= 0:
        raise ValueError(f"max_new_tokens must be > 0 (got {max_new_tokens}): ask for at least one new token")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 (got {temperature}): 0 is greedy, 1 samples the model as is")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be >= 1 (got {top_k}): 1 is greedy, None keeps every token")
    if top_p is not None and not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1] (got {top_p}): 1 keeps every token, e.g. 0.9")
    if kv_int8 and not kv_cache:
        raise ValueError("kv_int8 quantizes the KV cache, and kv_cache is False: set kv_cache=True, or drop kv_int8")
    device = model.transformer.wte.weight.device
    ids, real = left_pad([as_prompt(p, i, model.shape.vocab_size) for i, p in enumerate(prompts)], device)
    if compiled and real is not None:
        raise ValueError("compiled decoding takes prompts of one length: generate unequal prompts uncompiled")
    generator = None if seed is None else torch.Generator(device).manual_seed(seed)
    # dynamic: one graph for every length and batch (the prompt, then one token a step), not one per shape
    forward = torch.compile(model, dynamic=True) if compiled else model
    cache = model.new_cache(len(ids), static=compiled, int8=kv_int8) if kv_cache else None
    return _decode(model, forward, cache, ids, real, max_new_tokens, (temperature, top_k, top_p, generator))


def as_prompt(prompt, index: int, vocab_size: int) -> torch.Tensor:
    """One prompt as a 1-D tensor of ids, checked: not empty, each id in the vocabulary."""
    ids = torch.as_tensor(prompt, dtype=torch.long)
    if ids.dim() != 1:
        raise ValueError(f"prompt {index} is not a list of token ids: pass a list of prompts, e.g. [[1, 2, 3]]")
    if len(ids) == 0:
        raise ValueError(f"prompt {index} is empty: give it at least one token, e.g. a start-of-text id")
    if not ((ids >= 0) & (ids < vocab_size)).all():
        raise ValueError(f"prompt {index} has ids outside the vocabulary 0..{vocab_size - 1}: encode it for this model")
    return ids


def left_pad(prompts: list[torch.Tensor], device) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(ids (batch, longest), real): each prompt right-aligned after padding id 0; ``real`` is False at the
    padding, or None when the prompts are all the same length."""
    longest = max(len(p) for p in prompts)
    ids = torch.zeros(len(prompts), longest, dtype=torch.long)
    real = torch.zeros(len(prompts), longest, dtype=torch.bool)
    for row, prompt in enumerate(prompts):
        ids[row, longest - len(prompt) :] = prompt
        real[row, longest - len(prompt) :] = True
    return ids.to(device), (None if real.all() else real.to(device))


def sample(logits, temperature, top_k, top_p, generator) -> torch.Tensor:
    """The next token per row from its logits (batch, vocab)."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits / temperature
    if top_k is not None:
        kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, [-1]]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = logits.softmax(dim=-1)
    if top_p is not None:  # nucleus sampling (Holtzman et al. 2020): drop the tokens after the mass reaches top_p
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        after = sorted_probs.cumsum(dim=-1) - sorted_probs >= top_p
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs.masked_fill(after, 0.0))
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)  # needs no normalising


@torch.no_grad()
def _decode(model, forward, cache, ids, real, max_new_tokens, sampling):
    was_training = model.training
    model.eval()
    block_size = model.shape.block_size
    try:
        for step in range(max_new_tokens):
            start = max(0, ids.size(1) - block_size)  # the window the model sees: the last block_size tokens
            if cache is not None and step > 0 and start == 0:
                new = ids[:, -1:]  # the cache holds everything before the token just chosen
            else:  # first step, no cache, or the window moved: run the whole window
                new = ids[:, start:]
                if cache is not None:
                    cache.reset()
            logits = forward(new, cache=cache, real=None if real is None else real[:, start:], last_only=True)
            token = sample(logits[:, -1].float(), *sampling)
            ids = torch.cat((ids, token[:, None]), dim=1)
            if real is not None:
                real = torch.cat((real, torch.ones_like(real[:, :1])), dim=1)
            yield token.tolist()
    finally:
        model.train(was_training)
