"""The training sections of a run: the recipe, the hardware it trains on, and distillation."""

from __future__ import annotations

from dataclasses import dataclass

from .._errors import check_positive, require
from .._plain import Checked
from .optim import OPTIMIZER_IMPLS, OPTIMIZERS, SCHEDULES
from .tta import TTA_VIEWS

PRECISIONS = ("fp32", "bf16", "fp16")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


@dataclass(frozen=True)
class TrainConfig(Checked):
    field_prefix = "train"

    epochs: int = 5  # passes over the training data
    batch_size: int = 64  # training examples per optimizer step
    optimizer: str = "sgd"  # sgd, sgd_nesterov, adam, adamw, rmsprop, muon (weight matrices; adamw for the rest)
    lr: float = 0.05  # peak learning rate (after warm-up); muon takes an adamw-sized one
    momentum: float = 0.9  # for the SGD family, RMSprop and Muon
    weight_decay: float = 5e-4  # L2 pull of the weights towards zero (decoupled in adamw)
    schedule: str = "cosine"  # constant, step, cosine, onecycle
    warmup_epochs: float = 0.0  # linear warm-up from 0 to lr over this many epochs (onecycle: replaces its rise)
    label_smoothing: float = 0.0  # share of each target spread over the other classes
    grad_clip: float = 0.0  # max gradient norm; 0 = off
    seed: int = 0  # initial weights, batch order and augmentations

    def check(self) -> None:
        require(self.epochs >= 0, f"train.epochs must be >= 0 (got {self.epochs})")
        check_positive("train", "batch_size", self.batch_size)
        check_positive("train", "lr", self.lr)
        require(0 <= self.momentum < 1, f"train.momentum must be in [0, 1) (got {self.momentum})")
        check_positive("train", "weight_decay", self.weight_decay, allow_zero=True)
        check_positive("train", "warmup_epochs", self.warmup_epochs, allow_zero=True)
        require(0 <= self.label_smoothing < 1, f"train.label_smoothing must be in [0, 1) (got {self.label_smoothing})")
        check_positive("train", "grad_clip", self.grad_clip, allow_zero=True)
        require(0 <= self.seed < 2**32, f"train.seed must be in [0, 2**32) (got {self.seed})")
        OPTIMIZERS.check(self.optimizer)
        SCHEDULES.check(self.schedule)


@dataclass(frozen=True)
class HardwareConfig(Checked):
    field_prefix = "hardware"

    device: str = "auto"  # auto, cpu, cuda, cuda:N, mps; auto picks the best present
    precision: str = "fp32"  # fp32, bf16, fp16 (autocast; fp16 adds a grad scaler)
    channels_last: bool = False  # NHWC memory layout, faster convs on tensor-core GPUs
    # torch.compile the model (slow first epoch, faster after): true, false, or auto (time a few steps both
    # ways first and compile only where the run is long enough to pay the compile back; the result says why)
    compile: bool | str = False
    # torch.compile's mode: default, reduce-overhead (replays CUDA graphs: less launch overhead per step),
    # max-autotune (searches kernel configurations: a longer compile), max-autotune-no-cudagraphs
    compile_mode: str = "default"
    tf32: bool = False  # allow TF32 matmuls on Ampere+ GPUs
    # how the optimizer update runs: auto (torch chooses), for-loop, foreach (batched) or fused (one kernel;
    # sgd, sgd_nesterov, adam, adamw)
    optimizer_impl: str = "auto"
    cudnn_benchmark: bool = False  # let cuDNN time its convolution algorithms for the shapes seen (CUDA)
    # CPU threads for training and timing: auto = the cores not already busy (a second thread sharing a
    # busy core made a training step 2-8x slower here; on idle cores it is 1.25x faster), or a number
    # (a fixed number also keeps CPU reruns bit-identical: auto may choose differently under load)
    threads: int | str = "auto"

    def check(self) -> None:
        require(
            self.precision in PRECISIONS,
            f"hardware.precision must be one of {', '.join(PRECISIONS)} (got '{self.precision}')",
        )
        require(
            self.device == "auto" or self.device.split(":")[0] in ("cpu", "cuda", "mps"),
            f"hardware.device must be auto, cpu, cuda, cuda:N or mps (got '{self.device}')",
        )
        require(
            self.threads == "auto" or (isinstance(self.threads, int) and self.threads >= 1),
            f"hardware.threads must be auto or a whole number >= 1 (got {self.threads!r})",
        )
        require(
            self.compile in (True, False, "auto"),
            f"hardware.compile must be true, false or auto (got {self.compile!r})",
        )
        require(
            self.compile_mode in COMPILE_MODES,
            f"hardware.compile_mode must be one of {', '.join(COMPILE_MODES)} (got '{self.compile_mode}')",
        )
        require(
            self.optimizer_impl in OPTIMIZER_IMPLS,
            f"hardware.optimizer_impl must be one of {', '.join(OPTIMIZER_IMPLS)} (got '{self.optimizer_impl}')",
        )


@dataclass(frozen=True)
class DistillConfig(Checked):
    """Knowledge distillation while training: loss = alpha * T^2 * KL(student/T || teacher/T) + (1 - alpha) * CE."""

    field_prefix = "distill"

    teacher: str = ""  # a stored run id or a checkpoint path; empty = no distillation
    alpha: float = 0.7  # weight of the teacher's soft targets
    temperature: float = 4.0  # softens both distributions so the teacher's "dark knowledge" shows

    def check(self) -> None:
        require(0 <= self.alpha <= 1, f"distill.alpha must be in [0, 1] (got {self.alpha})")
        check_positive("distill", "temperature", self.temperature)

    @property
    def enabled(self) -> bool:
        return bool(self.teacher)


@dataclass(frozen=True)
class EvalConfig(Checked):
    """How the final model is scored on the test split; it changes no weights, so a stored training is reused."""

    field_prefix = "evaluation"

    tta: str = "none"  # test-time augmentation of the final accuracy: none, flip, translate, flip_translate
    tta_shift: int = 1  # pixels each translated view moves, down-right and up-left
    tta_below: float = 1.0  # augment only images whose plain top probability is below this (1 = every image)

    def check(self) -> None:
        require(self.tta in TTA_VIEWS, f"evaluation.tta must be one of {', '.join(TTA_VIEWS)} (got '{self.tta}')")
        check_positive("evaluation", "tta_shift", self.tta_shift)
        require(0 < self.tta_below <= 1, f"evaluation.tta_below must be in (0, 1] (got {self.tta_below})")
