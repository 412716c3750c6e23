"""Tokenizers for language models (bytes, characters, byte-level BPE), saved with a run as plain JSON-able dicts,
and the conversions that make losses under different tokenizers comparable.

A model's loss is in nats per token, and a token is a byte, a character or a BPE piece, so losses under two
tokenizers are not comparable; bits per byte of the same text are. ``ByteTokenizer`` is the default: nothing to
train, and any text encodes.

Example:
    >>> tok = train_tokenizer("char", "hello world")
    >>> tok.encode("hello"), tok.vocab_size
    ([3, 2, 4, 4, 5], 8)
    >>> tokenizer_from_dict(tok.to_dict()) == tok
    True
"""

from __future__ import annotations

import json
import math
import re
from abc import ABC, abstractmethod

from .._errors import optional_import, require
from .._registry import Registry
from .text import utf8_text

BPE_VOCAB_SIZE = 1024
# The byte-level pre-tokenizer (GPT-2's pattern) always splits between a character that is not whitespace and
# a newline, without looking further, and BPE merges only within its pieces: so text cut there encodes to the same
# ids piece by piece, and the pieces encode in parallel (2x faster on two cores). Not after a newline: a run of
# newlines at the end of a piece is one pre-token, but two before a letter.
_PIECE_BOUNDARY = re.compile(r"(?<=\S)(?=\n)")


class Tokenizer(ABC):
    """What every tokenizer has: ``name``, ``vocab_size``, ``encode``, ``decode``, ``to_dict``/``from_dict`` and
    ``train`` (a classmethod: a tokenizer fitted to a training text). Two are equal when their dicts are."""

    name: str

    @property
    @abstractmethod
    def vocab_size(self) -> int: ...

    @abstractmethod
    def encode(self, text: str) -> list[int]: ...

    @abstractmethod
    def decode(self, ids: list[int]) -> str: ...

    @abstractmethod
    def to_dict(self) -> dict: ...

    @classmethod
    @abstractmethod
    def from_dict(cls, data: dict) -> Tokenizer: ...

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Tokenizer) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size})"


_TOKENIZERS: Registry[type[Tokenizer]] = Registry("tokenizer")


def list_tokenizers() -> list[str]:
    """Names accepted by ``train_tokenizer``.

    Example:
        >>> list_tokenizers()
        ['bpe', 'byte', 'char']
    """
    return _TOKENIZERS.names()


def train_tokenizer(name: str, text: str, vocab_size: int | None = None) -> Tokenizer:
    """A tokenizer by name, fitted to ``text``; ``vocab_size`` is the BPE vocabulary (default 1024). The byte and
    char tokenizers' vocabularies are fixed by what they are, so giving them ``vocab_size`` is an error.

    Example:
        >>> train_tokenizer("bytes", "")
        Traceback (most recent call last):
        ...
        ValueError: Unknown tokenizer 'bytes'. Did you mean 'byte'? Choose one of: bpe, byte, char.
    """
    cls = _TOKENIZERS.get(name)
    if cls is BPETokenizer:
        return BPETokenizer.train(text, vocab_size or BPE_VOCAB_SIZE)
    require(
        vocab_size is None,
        f"vocab_size is a setting of the bpe tokenizer only: the {name} tokenizer's vocabulary is "
        f"{'the 256 byte values' if name == 'byte' else 'the characters of the training text'}",
    )
    return cls.train(text)


def tokenizer_from_dict(data: dict) -> Tokenizer:
    """The tokenizer ``to_dict`` saved (with a run, as JSON).

    Example:
        >>> tokenizer_from_dict({"name": "byte"})
        ByteTokenizer(vocab_size=256)
    """
    return _TOKENIZERS.get(data.get("name")).from_dict(data)


@_TOKENIZERS.register("byte")
class ByteTokenizer(Tokenizer):
    """UTF-8 bytes: 256 symbols, nothing to train. Decoding replaces byte sequences that are not UTF-8 (a model
    may generate them) with U+FFFD.

    Example:
        >>> tok = ByteTokenizer()
        >>> tok.encode("hé"), tok.decode([104, 195, 169]), tok.decode([104, 195])
        ([104, 195, 169], 'hé', 'h�')
    """

    name = "byte"

    @property
    def vocab_size(self) -> int:
        return 256

    def encode(self, text: str) -> list[int]:
        return list(utf8_text(text, "The text to encode").encode("utf-8"))

    def decode(self, ids: list[int]) -> str:
        _check_ids(ids, self)
        return bytes(ids).decode("utf-8", errors="replace")

    def to_dict(self) -> dict:
        return {"name": self.name}

    @classmethod
    def from_dict(cls, data: dict) -> ByteTokenizer:
        return cls()

    @classmethod
    def train(cls, text: str) -> ByteTokenizer:
        return cls()


@_TOKENIZERS.register("char")
class CharTokenizer(Tokenizer):
    """One id per distinct character of the training text, in sorted order.

    Example:
        >>> tok = CharTokenizer.train("abba")
        >>> tok.encode("ab"), tok.decode([1, 0])
        ([0, 1], 'ba')
        >>> tok.encode("abc!")  # doctest: +NORMALIZE_WHITESPACE
        Traceback (most recent call last):
        ...
        ValueError: The char tokenizer never saw '!', 'c' in its training text (its vocabulary is 2 characters):
            use only those characters, or the byte tokenizer
    """

    name = "char"

    def __init__(self, chars: str):
        require(len(set(chars)) == len(chars), "A char tokenizer's characters must be distinct")
        self.chars = chars
        self._ids = {c: i for i, c in enumerate(chars)}

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> list[int]:
        unseen = set(utf8_text(text, "The text to encode")) - self._ids.keys()
        if unseen:
            raise ValueError(
                f"The char tokenizer never saw {', '.join(map(repr, sorted(unseen)))} in its training text (its "
                f"vocabulary is {self.vocab_size} characters): use only those characters, or the byte tokenizer"
            )
        return [self._ids[c] for c in text]

    def decode(self, ids: list[int]) -> str:
        _check_ids(ids, self)
        return "".join(self.chars[i] for i in ids)

    def to_dict(self) -> dict:
        return {"name": self.name, "chars": self.chars}

    @classmethod
    def from_dict(cls, data: dict) -> CharTokenizer:
        return cls(data["chars"])

    @classmethod
    def train(cls, text: str | bytes) -> CharTokenizer:
        """Bytes are decoded first: bytes that are not UTF-8 fail with their offset."""
        text = utf8_text(text, "The training text")
        require(bool(text), "A char tokenizer needs a training text that is not empty")
        return cls("".join(sorted(set(text))))


@_TOKENIZERS.register("bpe")
class BPETokenizer(Tokenizer):
    """Byte-level BPE (GPT-2's kind) trained here with Hugging Face ``tokenizers``: its vocabulary starts with the
    256 bytes, so any text encodes; merges fill it up to ``vocab_size`` (fewer on a small text).

    Example:
        >>> tok = BPETokenizer.train("the cat and the hat and the bat " * 20, vocab_size=260)
        >>> tok.vocab_size, tok.decode(tok.encode("the rat 🐀"))
        (260, 'the rat 🐀')
    """

    name = "bpe"

    def __init__(self, tokenizer):
        self._tokenizer = tokenizer  # a tokenizers.Tokenizer

    @property
    def vocab_size(self) -> int:
        return self._tokenizer.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        pieces = _PIECE_BOUNDARY.split(utf8_text(text, "The text to encode"))
        return [i for encoding in self._tokenizer.encode_batch(pieces) for i in encoding.ids]

    def decode(self, ids: list[int]) -> str:
        _check_ids(ids, self)
        return self._tokenizer.decode(ids)

    def to_dict(self) -> dict:
        return {"name": self.name, "tokenizer": json.loads(self._tokenizer.to_str())}

    @classmethod
    def from_dict(cls, data: dict) -> BPETokenizer:
        return cls(_hf().Tokenizer.from_str(json.dumps(data["tokenizer"])))

    @classmethod
    def train(cls, text: str, vocab_size: int = BPE_VOCAB_SIZE) -> BPETokenizer:
        require(vocab_size >= 256, f"The bpe tokenizer's vocab_size must be >= 256, its bytes (got {vocab_size})")
        hf = _hf()
        byte_level = hf.pre_tokenizers.ByteLevel(add_prefix_space=False)  # no space added: decoding returns the text
        tokenizer = hf.Tokenizer(hf.models.BPE())
        tokenizer.pre_tokenizer = byte_level
        tokenizer.decoder = hf.decoders.ByteLevel()
        trainer = hf.trainers.BpeTrainer(
            vocab_size=vocab_size, initial_alphabet=byte_level.alphabet(), special_tokens=[], show_progress=False
        )
        tokenizer.train_from_iterator(_PIECE_BOUNDARY.split(utf8_text(text, "The training text")), trainer)
        return cls(tokenizer)


def _check_ids(ids: list[int], tokenizer: Tokenizer) -> None:
    bad = [i for i in ids if not 0 <= i < tokenizer.vocab_size]
    if bad:
        raise ValueError(f"Token ids {bad[:5]} are outside the {tokenizer.name} tokenizer's {tokenizer.vocab_size} ids")


def _hf():
    return optional_import("tokenizers", "The bpe tokenizer", "pip install 'workbench[lm]'")


def bits_per_byte(mean_loss_nats_per_token: float, n_tokens: int, n_bytes: int) -> float:
    """Bits per byte of text: the loss spread over the text's UTF-8 bytes rather than its tokens, in base 2. It
    compares tokenizers: a BPE model with a higher loss per token can still predict the text better.

    Example:
        >>> round(bits_per_byte(math.log(256), n_tokens=1000, n_bytes=1000), 6)  # uniform over bytes: 8 bits
        8.0
        >>> round(bits_per_byte(3.0, n_tokens=300, n_bytes=1000), 4)  # 3 nats per BPE token, 3.3 bytes a token
        1.2984
    """
    require(
        n_bytes > 0 and n_tokens >= 0, f"bits per byte needs n_bytes > 0, n_tokens >= 0 (got {n_bytes}, {n_tokens})"
    )
    return mean_loss_nats_per_token * n_tokens / (n_bytes * math.log(2))


def perplexity(mean_loss: float) -> float:
    """``exp(mean loss in nats per token)``: the number of equally likely tokens the model is choosing among.
    Like the loss, it depends on the tokenizer.

    Example:
        >>> round(perplexity(math.log(65)), 6)  # uniform over Tiny Shakespeare's 65 characters
        65.0
    """
    return math.exp(mean_loss)
