"""``generate``: text from a stored language-model run (or a GPT and its tokenizer), streamed as it comes.

A ``Generation`` is iterated for the new text piece by piece (the CLI prints each piece, the panel adds
it to its box) and its ``text`` is the whole of it (generating what was not iterated yet). A byte
tokenizer's token can be half a character: a piece is released only once its characters are whole.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

import pandas as pd
import torch

from .._errors import ConfigError
from ..data import Tokenizer
from ..models import GPT, SpeculativeStats, generate_tokens, speculative_tokens
from ..report import Result, ResultStore
from ..report.checkpoint import load_checkpoint, load_tokenizer
from ..train import Callback


class Generation:
    """New text for one prompt (or a list of them): iterate for pieces as they come; ``text`` for all of it."""

    def __init__(
        self,
        steps: Iterator[list[int]],
        tokenizer: Tokenizer,
        rows: int,
        batched: bool,
        stats: SpeculativeStats | None = None,
    ):
        self._steps, self._tokenizer, self._batched = steps, tokenizer, batched
        self.stats = stats  # with a draft: what the speculation did (acceptance, target passes)
        self._ids: list[list[int]] = [[] for _ in range(rows)]
        self._shown = [""] * rows

    def __iter__(self) -> Iterator[str | list[str]]:
        for step in self._steps:
            for ids, token in zip(self._ids, step):
                ids.append(token)
            pieces = [self._release(i, final=False) for i in range(len(self._ids))]
            yield pieces if self._batched else pieces[0]
        pieces = [self._release(i, final=True) for i in range(len(self._ids))]
        if any(pieces):
            yield pieces if self._batched else pieces[0]

    def _release(self, row: int, final: bool) -> str:
        text = self._tokenizer.decode(self._ids[row])
        if not final:
            text = text.rstrip("\ufffd")  # the bytes of a character still coming
        piece = text[len(self._shown[row]) :] if text.startswith(self._shown[row]) else ""
        self._shown[row] += piece
        return piece

    @property
    def text(self) -> str | list[str]:
        """All the new text (the prompt not repeated): generates whatever is still to come."""
        for _ in self:
            pass
        return self._shown if self._batched else self._shown[0]


def generate(
    run_or_model: str | Result | GPT,
    prompt: str | Sequence[str],
    max_new_tokens: int = 200,
    *,
    temperature: float = 0.8,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int | None = None,
    kv_cache: bool = True,
    tokenizer: Tokenizer | None = None,
    store: ResultStore | str | os.PathLike = "runs",
    draft: str | Result | GPT | None = None,
    lookahead: int = 4,
) -> Generation:
    """Continue ``prompt`` (a string, or a list of them of any lengths) with a language model: a stored run's
    (its id or ``Result``; the tokenizer saved with it) or a ``GPT`` given with its ``tokenizer``.
    Sampling as ``models.generate_tokens`` (temperature 0: greedy; top-k; top-p; ``seed`` repeats a draw).
    ``draft`` (a smaller run or GPT with the same tokenizer) decodes speculatively: it proposes ``lookahead``
    tokens, the model checks them in one pass; greedy (temperature 0), one prompt, the same text as without
    it, and ``.stats`` says how many proposals were kept.

    Example:
        >>> from workbench.data import train_tokenizer
        >>> _ = torch.manual_seed(0)
        >>> tok = train_tokenizer("char", "abc")
        >>> gpt = GPT(vocab_size=3, n_layer=1, n_head=1, n_embd=8, block_size=8)
        >>> out = generate(gpt, "ab", 5, temperature=0, tokenizer=tok)
        >>> len(out.text), set(out.text) <= set("abc")
        (5, True)
        >>> generate(gpt, "abz", 5, tokenizer=tok)  # doctest: +NORMALIZE_WHITESPACE
        Traceback (most recent call last):
        ...
        ValueError: The char tokenizer never saw 'z' in its training text (its vocabulary is 3 characters): use
            only those characters, or the byte tokenizer
    """
    model, tokenizer = _model_and_tokenizer(run_or_model, tokenizer, store)
    if max_new_tokens <= 0:
        raise ValueError(f"max_new_tokens must be > 0 (got {max_new_tokens}): ask for at least one new token")
    batched = not isinstance(prompt, str)
    prompts = list(prompt) if batched else [prompt]
    if not prompts or any(not isinstance(p, str) or not p for p in prompts):
        raise ValueError("prompt must be a text that is not empty, or a list of them, e.g. 'def '")
    ids = [tokenizer.encode(p) for p in prompts]
    if draft is not None:
        return _speculative(model, tokenizer, draft, ids, max_new_tokens, lookahead, temperature, batched, store)
    options = {"temperature": temperature, "top_k": top_k, "top_p": top_p, "seed": seed, "kv_cache": kv_cache}
    return Generation(generate_tokens(model, ids, max_new_tokens, **options), tokenizer, len(prompts), batched)


def _speculative(model, tokenizer, draft, ids, max_new_tokens, lookahead, temperature, batched, store) -> Generation:
    if temperature != 0:
        raise ValueError(f"speculative decoding here is greedy: pass temperature=0 with a draft (got {temperature})")
    if len(ids) != 1:
        raise ValueError(f"speculative decoding takes one prompt at a time (got {len(ids)})")
    draft_model, draft_tokenizer = _model_and_tokenizer(draft, tokenizer if isinstance(draft, GPT) else None, store)
    if draft_tokenizer != tokenizer:
        raise ValueError(
            f"the draft's tokenizer ({draft_tokenizer!r}) is not the model's ({tokenizer!r}): "
            "a draft must be trained on the same tokenizer"
        )
    stats = SpeculativeStats()
    tokens = speculative_tokens(model, draft_model, ids[0], max_new_tokens, lookahead=lookahead, stats=stats)
    return Generation(([t] for t in tokens), tokenizer, 1, batched, stats)


def _model_and_tokenizer(
    run_or_model: str | Result | GPT, tokenizer: Tokenizer | None, store: ResultStore | str | os.PathLike
) -> tuple[GPT, Tokenizer]:
    if isinstance(run_or_model, torch.nn.Module):
        if not isinstance(run_or_model, GPT):
            raise ValueError(f"generate needs a GPT language model (got {type(run_or_model).__name__})")
        if tokenizer is None:
            raise ValueError("a model alone has no tokenizer: pass tokenizer=..., or give a stored run's id")
        return run_or_model, tokenizer
    result = run_or_model if isinstance(run_or_model, Result) else ResultStore.open(store).get(run_or_model)
    if result.config.task != "lm":
        raise ConfigError(
            f"run {result.run_id} is an image classifier (task {result.config.task}): generate writes text "
            "with a language-model run (workbench run --task lm)"
        )
    if not result.checkpoint:
        raise ValueError(f"run {result.run_id} saved no model: run it with a store to generate from it")
    return load_checkpoint(result.checkpoint)[0], load_tokenizer(result.checkpoint)


class Samples(Callback):
    """A training callback that writes a sample after every epoch, beside that epoch's validation loss: watch
    the text turn into the language as the loss falls. The same prompt and seed each time, so only the model
    changes between samples.

    Example:
        >>> from workbench.data import train_tokenizer
        >>> from workbench.train import TrainConfig, train
        >>> tok = train_tokenizer("char", "ab")
        >>> gpt = GPT(vocab_size=2, n_layer=1, n_head=1, n_embd=8, block_size=4)
        >>> ids = torch.tensor([[0, 1, 0, 1]])
        >>> samples = Samples(tok, "a", max_new_tokens=3)
        >>> _ = train(gpt, [(ids[:, :3], ids[:, 1:])], TrainConfig(epochs=2, optimizer="adamw", lr=0.01),
        ...           callbacks=[samples])
        >>> samples.frame().columns.tolist(), len(samples.frame())
        (['epoch', 'val_loss', 'train_loss', 'sample'], 2)
    """

    def __init__(self, tokenizer: Tokenizer, prompt: str, max_new_tokens: int = 100, temperature: float = 0.8):
        self.tokenizer, self.prompt, self.max_new_tokens, self.temperature = (
            tokenizer,
            prompt,
            max_new_tokens,
            temperature,
        )
        self.rows: list[dict] = []

    def on_epoch_end(self, state, record):
        text = generate(
            state.model,
            self.prompt,
            self.max_new_tokens,
            temperature=self.temperature,
            seed=0,
            tokenizer=self.tokenizer,
        ).text
        self.rows.append(
            {
                "epoch": record["epoch"],
                "val_loss": record.get("test_loss"),
                "train_loss": record["train_loss"],
                "sample": self.prompt + text,
            }
        )

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=["epoch", "val_loss", "train_loss", "sample"])
