"""A text corpus as a language model reads it: a tokenizer fitted to its training text, and both splits as
streams of token ids (what ``RandomWindows`` and ``FixedWindows`` cut their windows from).

Example:
    >>> data = load_token_data("text:" + str(_example_file()), "char")
    >>> data
    TokenData('text:...fox.txt', tokenizer=char (29 ids), train=405 tokens, validation=45 tokens)
    >>> data.tokenizer.decode(data.train_ids[:9].tolist())
    'The quick'
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from .._errors import require
from .dataset import DatasetError
from .text import TEXT_CORPORA, TEXT_PREFIX, TextCorpus, load_text_corpus
from .tokenizers import Tokenizer, list_tokenizers, train_tokenizer


@dataclass(frozen=True, repr=False)
class TokenData:
    """A corpus, its tokenizer and its two splits as 1-D ``int64`` token streams."""

    corpus: TextCorpus
    tokenizer: Tokenizer
    train_ids: torch.Tensor
    val_ids: torch.Tensor

    @property
    def name(self) -> str:
        return self.corpus.name

    @property
    def val_bytes_per_token(self) -> float:
        """UTF-8 bytes per token over the whole validation text: turns a loss per token into bits per byte."""
        return len(self.corpus.validation.encode("utf-8")) / max(len(self.val_ids), 1)

    def __repr__(self) -> str:
        return (
            f"TokenData({self.name!r}, tokenizer={self.tokenizer.name} ({self.tokenizer.vocab_size} ids), "
            f"train={len(self.train_ids):,} tokens, validation={len(self.val_ids):,} tokens)"
        )


def is_text_dataset(name: str) -> bool:
    """Whether ``name`` names text (a corpus or ``text:PATH``) rather than images.

    Example:
        >>> is_text_dataset("pystdlib"), is_text_dataset("text:notes.txt"), is_text_dataset("digits")
        (True, True, False)
    """
    return isinstance(name, str) and (name in TEXT_CORPORA or name.startswith(TEXT_PREFIX))


def check_tokenizer(name: str, vocab_size: int | None) -> None:
    """One line for an unknown tokenizer, or a vocabulary size given to one that has its own."""
    if name not in list_tokenizers():
        train_tokenizer(name, "")  # raises the registry's line: the names and the closest one
    require(
        vocab_size is None or name == "bpe",
        f"data.vocab_size is a setting of the bpe tokenizer only (data.tokenizer is {name}): leave it unset",
    )
    require(vocab_size is None or vocab_size >= 257, f"data.vocab_size must be at least 257 (got {vocab_size})")


def load_token_data(
    dataset: str, tokenizer: str = "byte", vocab_size: int | None = None, root: str | Path = "data"
) -> TokenData:
    """``dataset``'s text, a ``tokenizer`` trained on its training split, and both splits encoded."""
    check_tokenizer(tokenizer, vocab_size)
    corpus = load_text_corpus(dataset, root=root)
    if not corpus.train.strip() or not corpus.validation.strip():
        raise DatasetError(
            f"{corpus.name} has no text in its {'training' if not corpus.train.strip() else 'validation'} split: "
            "give a longer text (a file of at least a few hundred characters)"
        )
    tok = train_tokenizer(tokenizer, corpus.train, vocab_size)
    try:
        val_ids = tok.encode(corpus.validation)
    except ValueError as e:  # the char tokenizer meets a character only validation has
        raise DatasetError(f"{corpus.name}'s validation text: {e}") from None
    return TokenData(corpus, tok, _ids(tok.encode(corpus.train)), _ids(val_ids))


def _ids(ids: list[int]) -> torch.Tensor:
    return torch.tensor(ids, dtype=torch.long)


def _example_file() -> Path:
    import tempfile

    path = Path(tempfile.mkdtemp()) / "fox.txt"
    path.write_text("The quick brown fox jumps over the lazy dog. " * 10)
    return path
