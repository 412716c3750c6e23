"""The data section of a run: which dataset, how much of it, how it is normalised and augmented."""

from __future__ import annotations

from dataclasses import dataclass, field

from .._errors import check_positive, require
from .._plain import Checked
from .registry import check_dataset_name

STRATEGIES = ("random", "balanced", "hardest", "easiest")  # training-subset selection (data/select.py)


@dataclass(frozen=True)
class AugmentConfig(Checked):
    """Whole-batch augmentations, each switchable; 0 / False means off."""

    field_prefix = "data.augment"

    # horizontal flip, true (random) or alternate (each image mirrored every other epoch); wrong for digits
    flip: bool | str = False
    crop: int = 0  # pad by this many pixels, then random-crop back to size
    translate: int = 0  # random shift of up to this many pixels, zero-filled
    cutout: int = 0  # side of a zeroed square at a random place
    rotate: float = 0.0  # maximum rotation in degrees, either way
    # Photometric jitter on the normalised batch: each image's intensity shifted by up to this many
    # standard deviations either way, and its contrast about its own mean scaled by 1 +/- up to this.
    brightness: float = 0.0
    contrast: float = 0.0

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

    dataset: str = "digits"  # a registry name, or folder:PATH for an image folder or a zip of one
    fraction: float = 1.0  # share of the training split to train on
    selection: str = "random"  # how that share is chosen: random, balanced, hardest, easiest
    normalize: bool = True  # subtract the per-channel mean and divide by the std of the train split
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def check(self) -> None:
        require(0 < self.fraction <= 1, f"data.fraction must be in (0, 1] (got {self.fraction})")
        require(
            self.selection in STRATEGIES,
            f"data.selection must be one of {', '.join(STRATEGIES)} (got '{self.selection}')",
        )
        check_dataset_name(self.dataset)
