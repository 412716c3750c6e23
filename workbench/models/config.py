"""The model section of a run, and the model it describes for a given input shape."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .._errors import check_positive, require
from .._plain import Checked, setting
from ._common import check_model_name, create_model, list_models

INITS = ("default", "whiten")
# Upper bounds that keep a typo from hanging or exhausting the machine while the model is built:
# width 64 gives a cnn 4,096 to 16,384 channels a layer, depth 1,000 is five times ResNet-1202's 200
# blocks a stage. Nothing a run on one machine trains is near either.
MAX_WIDTH, MAX_DEPTH = 64.0, 1000


@dataclass(frozen=True)
class ModelConfig(Checked):
    field_prefix = "model"

    name: str = setting("cnn", help="the architecture (workbench.list_models())", label="model", choices=list_models)
    width: float = setting(
        1.0, help="multiplies every layer's channel count", label="width ×", range=(0.25, 4), step=0.25
    )
    depth: int | None = setting(
        None,
        help="model-specific: blocks per stage (ResNets), layers (MLP, ViT); None = default",
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
