"""Named starting configs: a whole recipe in one word, every field of it an ordinary option.

``speedrun`` is the race against the fastest public CIFAR-10 training scripts, put together from parts
any run can use alone: the ``speedcnn`` model with its first conv whitened from the data
(``model.init=whiten``), Muon on the weight matrices (``train.optimizer=muon``), label smoothing,
alternating flips and 2-pixel crops (``data.augment``), a short warm-up then a linear decay, and
test-time augmentation (``evaluation.tta``). On a GPU it trains in bf16, channels-last and compiled;
on a CPU in fp32 unless the CPU has native bf16, and uncompiled (a compile costs minutes there).
Flags and ``RunConfig.replace`` change any field of it, e.g. ``--width 0.25`` for a CPU.

Example:
    >>> cfg = preset("speedrun", device="cpu")
    >>> cfg.model.name, cfg.train.optimizer, cfg.evaluation.tta, cfg.data.augment.flip
    ('speedcnn', 'muon', 'flip_translate', 'alternate')
    >>> sorted(without_each_part(cfg))
    ['alternating flip', 'label smoothing', 'muon', 'test-time augmentation', 'whitening init']
    >>> preset("speedrum")
    Traceback (most recent call last):
    ...
    ValueError: Unknown preset 'speedrum'. Did you mean 'speedrun'? Choose one of: gpt, speedrun.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ._registry import Registry
from .config import RunConfig
from .data import AugmentConfig, DataConfig
from .measure import MeasureConfig, native_bf16, resolve_device
from .models import ModelConfig
from .train import EvalConfig, HardwareConfig, TrainConfig

PRESETS: Registry[Callable[[torch.device], RunConfig]] = Registry("preset")


def preset(name: str, device: str | torch.device = "auto") -> RunConfig:
    """The config the preset ``name`` gives for training on ``device`` (``auto``: the best one here)."""
    build = PRESETS.get(name)
    return build(resolve_device(device))


def list_presets() -> list[str]:
    return PRESETS.names()


@PRESETS.register("speedrun")
def _speedrun(device: torch.device) -> RunConfig:
    gpu = device.type == "cuda"
    return RunConfig(
        name="speedrun",
        data=DataConfig(dataset="cifar10", augment=AugmentConfig(flip="alternate", crop=2)),
        model=ModelConfig(name="speedcnn", init="whiten"),
        train=TrainConfig(
            epochs=8,
            batch_size=1024,
            optimizer="muon",
            lr=0.02,
            momentum=0.9,
            weight_decay=0.01,
            schedule="onecycle",
            warmup_epochs=0.5,
            label_smoothing=0.2,
        ),
        hardware=HardwareConfig(
            device=str(device),
            precision="bf16" if gpu or native_bf16(device) else "fp32",
            channels_last=gpu or native_bf16(device),
            compile=gpu,
            tf32=gpu,
        ),
        evaluation=EvalConfig(tta="flip_translate"),
    )


@PRESETS.register("gpt")
def _gpt(device: torch.device) -> RunConfig:
    """A small GPT on the standard library's source, byte-level: nanoGPT's CPU shape (4 layers, 4 heads, 128
    wide, 64 tokens of context) and its Shakespeare recipe (AdamW at 1e-3, no decay on norms, biases and
    embeddings, clipped gradients), 500 steps of 32 windows, evaluated every 100."""
    return RunConfig(
        task="lm",
        name="gpt",
        data=DataConfig(dataset="pystdlib", tokenizer="byte"),
        model=ModelConfig(name="gpt", depth=4, n_head=4, n_embd=128, block_size=64),
        train=TrainConfig(
            epochs=5,
            steps=500,
            batch_size=32,
            optimizer="adamw",
            lr=1e-3,
            weight_decay=0.1,
            warmup_epochs=0.2,
            grad_clip=1.0,
        ),
        hardware=HardwareConfig(device=str(device)),
        measure=MeasureConfig(batch_sizes=(1, 16), iters=20),
    )


# Each part of the speedrun, and the config without it: what a user would train instead.
_PARTS = {
    "muon": {"train.optimizer": "sgd_nesterov", "train.lr": 0.05, "train.weight_decay": 5e-4},
    "whitening init": {"model.init": "default"},
    "alternating flip": {"data.augment.flip": True},
    "label smoothing": {"train.label_smoothing": 0.0},
    "test-time augmentation": {"evaluation.tta": "none"},
}


def without_each_part(cfg: RunConfig) -> dict[str, RunConfig]:
    """``cfg`` with one speedrun part at a time taken back to the plain choice (Muon -> SGD with Nesterov at
    its usual lr, whitening -> the default init, alternating -> random flips, no label smoothing, no TTA),
    named ``"no <part>"``: train them beside ``cfg`` to see what each part bought. A part ``cfg`` does not
    use is left out.
    """
    fields = cfg.flat()
    plain = {
        part: changes
        for part, changes in _PARTS.items()  # the first field says whether cfg uses the part
        if fields[next(iter(changes))] != next(iter(changes.values()))
    }
    return {part: cfg.replace(name=f"no {part}", **changes) for part, changes in plain.items()}
