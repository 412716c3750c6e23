"""The data section of a run: which dataset, how much of it, how it is normalised and augmented."""

from __future__ import annotations

from dataclasses import dataclass, field

from .._errors import check_positive, require
from .._plain import Checked, setting
from .registry import check_dataset_name, list_datasets
from .text import TEXT_CORPORA
from .tokenizers import list_tokenizers
from .tokens import check_tokenizer, is_text_dataset

STRATEGIES = ("random", "balanced", "hardest", "easiest")  # training-subset selection (data/select.py)


@dataclass(frozen=True)
class AugmentConfig(Checked):
    """Whole-batch augmentations, each switchable; 0 / False means off."""

    field_prefix = "data.augment"

    flip: bool | str = setting(
        False,
        help="horizontal flip, true (random) or alternate (each image mirrored every other epoch); wrong for digits",
        label="horizontal flip",
        options=(("off", False), ("random", True), ("alternate epochs", "alternate")),
    )
    crop: int = setting(
        0, help="pad by this many pixels, then random-crop back to size", label="pad + crop", unit="px", range=(0, 8)
    )
    translate: int = setting(
        0, help="random shift of up to this many pixels, zero-filled", label="translate", unit="px", range=(0, 8)
    )
    cutout: int = setting(
        0, help="side of a zeroed square at a random place", label="cutout square", unit="px", range=(0, 16)
    )
    rotate: float = setting(
        0.0, help="maximum rotation, either way", label="rotation", unit="degrees", range=(0, 45), step=1
    )
    brightness: float = setting(
        0.0,
        help="each image's intensity shifted by up to this many standard deviations either way "
        "(photometric jitter on the normalised batch)",
        label="brightness ±",
        unit="std",
        range=(0, 1),
        step=0.05,
    )
    contrast: float = setting(
        0.0,
        help="each image's contrast about its own mean scaled by 1 +/- up to this (photometric jitter)",
        label="contrast ± (×)",
        range=(0, 0.9),
        step=0.05,
    )

    def check(self) -> None:
        require(
            self.flip in (True, False, "alternate"),
            f"data.augment.flip must be true, false or alternate (got {self.flip!r})",
        )
        for name in ("crop", "translate", "cutout"):
            check_positive("data.augment", name, getattr(self, name), allow_zero=True)
        require(0 <= self.rotate <= 180, f"data.augment.rotate must be within [0, 180] degrees (got {self.rotate})")
        require(
            self.brightness >= 0,
            f"data.augment.brightness must be 0 or more standard deviations (got {self.brightness})",
        )
        require(
            0 <= self.contrast < 1,
            f"data.augment.contrast must be within [0, 1): a factor of 1 - contrast must "
            f"stay positive (got {self.contrast})",
        )

    @property
    def enabled(self) -> bool:
        return bool(
            self.flip or self.crop or self.translate or self.cutout or self.rotate or self.brightness or self.contrast
        )


@dataclass(frozen=True)
class DataConfig(Checked):
    field_prefix = "data"

    dataset: str = setting(
        "digits",
        help="a registry name, or folder:PATH for an image folder or a zip of one; for a language model "
        "pystdlib, tinyshakespeare or text:PATH (a text file, a folder or a zip of them)",
        label="dataset",
        choices=lambda: [*list_datasets(), "folder:PATH", *TEXT_CORPORA, "text:PATH"],
        options=lambda: _dataset_options(),
    )
    fraction: float = setting(
        1.0, help="share of the training split to train on", label="data fraction", range=(0.05, 1.0), step=0.05
    )
    selection: str = setting(
        "random", help="how that share is chosen: random, balanced, hardest, easiest", choices=STRATEGIES
    )
    normalize: bool = setting(
        True,
        help="subtract the per-channel mean and divide by the std of the train split",
        label="normalize (mean/std)",
    )
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    tokenizer: str = setting(
        "byte",
        help="text: byte (256 ids, nothing to train), char (the training text's characters) or bpe (trained here)",
        label="tokenizer",
        choices=list_tokenizers,
    )
    vocab_size: int | None = setting(
        None,
        help="text: the bpe tokenizer's vocabulary (None: 1,024)",
        label="BPE vocabulary",
        options=(("bpe default (1,024)", None), *((f"{n:,}", n) for n in (512, 2048, 4096, 8192))),
    )

    def check(self) -> None:
        require(0 < self.fraction <= 1, f"data.fraction must be in (0, 1] (got {self.fraction})")
        require(
            self.selection in STRATEGIES,
            f"data.selection must be one of {', '.join(STRATEGIES)} (got '{self.selection}')",
        )
        if not is_text_dataset(self.dataset):
            check_dataset_name(self.dataset)
        check_tokenizer(self.tokenizer, self.vocab_size)


def _dataset_options() -> list[tuple[str, str]]:
    """The panel's datasets: the registry's, and a CIFAR-10 zip where one lies on this machine."""
    from .folder import cifar10_zip_path

    options = [(name, name) for name in list_datasets()]
    if cifar10_zip_path() is not None:
        options.append(("cifar10 (local zip)", f"folder:{cifar10_zip_path()}"))
    return options
