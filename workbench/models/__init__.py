"""Model registry: MLP, small VGG-style CNN, CIFAR ResNets, MobileNetV2, a small ViT, the speedrun CNN, and
the GPT language model (``gpt``, which reads tokens: ``models/gpt.py``).

Every model takes the same knobs, so a widget, a search or the CLI can turn them without knowing
the family: ``width`` multiplies channel counts, ``depth`` sets the number of blocks (its meaning per
family is in each builder's docstring), ``batchnorm=False`` swaps BatchNorm for Identity and
``dropout`` adds Dropout before the classifier. Every model adapts its downsampling to the image
size, so 8x8 digits, 28x28 MNIST and 32x32 CIFAR all work. This part owns the model section of a run
(``ModelConfig``); ``build_model`` turns one into a module for an input shape, and ``whiten_first_conv``
is the data-dependent init ``model.init=whiten`` asks for.

Example:
    >>> import torch
    >>> digits_net = create_model("resnet20", num_classes=10, in_channels=1, image_size=8, width=0.5)
    >>> digits_net(torch.zeros(2, 1, 8, 8)).shape
    torch.Size([2, 10])
    >>> cifar_net = create_model("resnet20", num_classes=10, in_channels=3, image_size=32)
    >>> sum(p.numel() for p in cifar_net.parameters())  # He et al.: 0.27M
    272474
"""

from __future__ import annotations

from ._common import check_model_name, create_model, list_models, model_input, register_model
from .cnn import CNN
from .config import ModelConfig, build_model, model_args
from .generation import generate, generate_tokens
from .gpt import GPT, KVCache, QuantizedKVCache, StaticKVCache, gpt_args, kv_cache_bytes
from .lora import LoRALinear, add_lora, merge_lora, trainable_parameters
from .mlp import MLP
from .mobilenet import MobileNetV2
from .resnet import CifarResNet
from .speculative import SpeculativeStats, speculative_generate, speculative_tokens
from .speedcnn import SpeedCNN
from .structure import module_structure, restore_structure
from .vit import ViT
from .whiten import WHITEN_IMAGES, whiten_first_conv, whitening_filters

__all__ = [
    "CNN",
    "GPT",
    "MLP",
    "WHITEN_IMAGES",
    "CifarResNet",
    "KVCache",
    "LoRALinear",
    "MobileNetV2",
    "ModelConfig",
    "QuantizedKVCache",
    "SpeculativeStats",
    "SpeedCNN",
    "StaticKVCache",
    "ViT",
    "add_lora",
    "build_model",
    "check_model_name",
    "create_model",
    "generate",
    "generate_tokens",
    "gpt_args",
    "kv_cache_bytes",
    "list_models",
    "merge_lora",
    "model_args",
    "model_input",
    "module_structure",
    "register_model",
    "restore_structure",
    "speculative_generate",
    "speculative_tokens",
    "trainable_parameters",
    "whiten_first_conv",
    "whitening_filters",
]
