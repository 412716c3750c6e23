"""The model section of a run, and the model it describes for a given input shape."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .._errors import ConfigError, check_positive, require
from .._plain import Checked, setting
from ._common import check_model_name, create_model, list_models, model_input
from .gpt import ATTENTIONS, POSITIONS, GPTShape

INITS = ("default", "whiten")
# Upper bounds that keep a typo from hanging or exhausting the machine while the model is built:
# width 64 gives a cnn 4,096 to 16,384 channels a layer, depth 1,000 is five times ResNet-1202's 200
# blocks a stage. Nothing a run on one machine trains is near either.
MAX_WIDTH, MAX_DEPTH = 64.0, 1000
GPT_LAYERS = 4  # depth=None for a GPT: nanoGPT's CPU recipe (4 layers, 4 heads, 128 wide, 64 tokens of context)


@dataclass(frozen=True)
class ModelConfig(Checked):
    field_prefix = "model"

    name: str = setting("cnn", help="the architecture (workbench.list_models())", label="model", choices=list_models)
    width: float = setting(
        1.0, help="multiplies every layer's channel count", label="width ×", range=(0.25, 4), step=0.25
    )
    depth: int | None = setting(
        None,
        help="model-specific: blocks per stage (ResNets), layers (MLP, ViT, GPT's n_layer); None = default",
        options=(("model default", None), *((str(d), d) for d in (1, 2, 3, 4, 6, 8, 9))),
    )
    batchnorm: bool = setting(True, help="BatchNorm after each conv; off swaps in an identity", label="BatchNorm")
    dropout: float = setting(0.0, help="before the classifier", range=(0, 0.8), step=0.05)
    init: str = setting(
        "default",
        help="default, or whiten: the first conv's filters from the training images' patches",
        label="first-conv init",
        choices=INITS,
    )
    # A language model's shape (nanoGPT's names); image models ignore these.
    n_embd: int = setting(128, help="GPT: width of every token's vector", label="GPT n_embd", range=(16, 768), step=16)
    n_head: int = setting(4, help="GPT: attention heads; must divide n_embd", label="GPT n_head", range=(1, 16))
    block_size: int = setting(
        64,
        help="GPT: the context, the most tokens it sees at once",
        label="GPT context",
        unit="tokens",
        range=(8, 1024),
    )
    bias: bool = setting(True, help="GPT: biases in Linears and LayerNorms (GPT-2 has them)", label="GPT biases")
    attention: str = setting(
        "sdpa",
        help="GPT: sdpa (PyTorch's fused attention) or naive (the masked softmax spelled out, to compare)",
        label="GPT attention",
        choices=ATTENTIONS,
    )
    positions: str = setting(
        "learned", help="GPT: learned position vectors, or rotary (RoPE)", label="GPT positions", choices=POSITIONS
    )

    def check(self) -> None:
        check_positive("model", "width", self.width)
        require(
            self.width <= MAX_WIDTH,
            f"model.width must be at most {MAX_WIDTH:g} (got {self.width:g}): it multiplies "
            "every layer's channel count",
        )
        require(
            self.depth is None or 1 <= self.depth <= MAX_DEPTH,
            f"model.depth must be 1 to {MAX_DEPTH} or None (got {self.depth})",
        )
        require(0 <= self.dropout < 1, f"model.dropout must be in [0, 1) (got {self.dropout})")
        check_model_name(self.name)
        require(self.init in INITS, f"model.init must be one of {', '.join(INITS)} (got '{self.init}')")
        if model_input(self.name) == "tokens":
            require(self.init == "default", f"model.init={self.init} is for image models: a GPT starts as GPT-2 does")
            self.gpt_shape(vocab_size=1)  # its one-line errors: n_head not dividing n_embd, ...

    def gpt_shape(self, vocab_size: int) -> GPTShape:
        """The GPT this section describes for a tokenizer of ``vocab_size`` ids.

        Example:
            >>> ModelConfig(name="gpt", n_embd=96, n_head=3).gpt_shape(256).head_dim
            32
            >>> ModelConfig(name="gpt", n_embd=100, n_head=3)  # doctest: +NORMALIZE_WHITESPACE
            Traceback (most recent call last):
            ...
            workbench.ConfigError: model: n_embd 100 is not divisible by n_head 3: choose n_embd a multiple of
                n_head, e.g. 99
        """
        try:
            return GPTShape(
                vocab_size=vocab_size,
                n_layer=self.depth or GPT_LAYERS,
                n_head=self.n_head,
                n_embd=self.n_embd,
                block_size=self.block_size,
                dropout=self.dropout,
                bias=self.bias,
                attention=self.attention,
                positions=self.positions,
            )
        except ValueError as e:
            raise ConfigError(f"model: {e}") from None


def text_model_args(cfg: ModelConfig, vocab_size: int) -> dict[str, Any]:
    """The ``create_model`` keywords of ``cfg``'s language model for ``vocab_size`` token ids.

    Example:
        >>> text_model_args(ModelConfig(name="gpt"), 256)  # doctest: +NORMALIZE_WHITESPACE
        {'name': 'gpt', 'vocab_size': 256, 'n_layer': 4, 'n_head': 4, 'n_embd': 128, 'block_size': 64,
         'dropout': 0.0, 'bias': True, 'attention': 'sdpa', 'positions': 'learned', 'head_dim': 32,
         'mlp_width': 512, 'kv_cache': 'float'}
    """
    return {"name": cfg.name, **dataclasses.asdict(cfg.gpt_shape(vocab_size))}


def model_args(cfg: ModelConfig, num_classes: int, input_shape: Sequence[int]) -> dict[str, Any]:
    """The ``create_model`` keywords for ``cfg`` on inputs of shape ``(C, H, W)``: everything needed to
    rebuild the architecture later without the data (checkpoints store it).

    Example:
        >>> model_args(ModelConfig(name="mlp", width=0.5), 10, (1, 8, 8))  # doctest: +NORMALIZE_WHITESPACE
        {'name': 'mlp', 'num_classes': 10, 'in_channels': 1, 'image_size': 8, 'width': 0.5, 'depth': None,
         'batchnorm': True, 'dropout': 0.0}
    """
    channels, height, width = (int(s) for s in input_shape)
    if height != width:
        raise ValueError(f"the models here take square images; got {height}x{width}")
    return {
        "name": cfg.name,
        "num_classes": int(num_classes),
        "in_channels": channels,
        "image_size": height,
        "width": cfg.width,
        "depth": cfg.depth,
        "batchnorm": cfg.batchnorm,
        "dropout": cfg.dropout,
    }


def build_model(
    cfg: ModelConfig, num_classes: int, input_shape: Sequence[int], *, seed: int | None = None
) -> nn.Module:
    """The model ``cfg`` describes for ``(C, H, W)`` inputs; ``seed`` makes its initial weights reproducible.

    Example:
        >>> net = build_model(ModelConfig(name="cnn", width=0.25), 10, (1, 8, 8), seed=0)
        >>> net(torch.zeros(2, 1, 8, 8)).shape
        torch.Size([2, 10])
    """
    if seed is not None:
        torch.manual_seed(seed)
    return create_model(**model_args(cfg, num_classes, input_shape))
