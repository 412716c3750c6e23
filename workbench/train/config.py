"""The training sections of a run: the recipe, the hardware it trains on, and distillation."""

from __future__ import annotations

from dataclasses import dataclass

from .._errors import check_positive, require
from .._plain import Checked, setting
from .optim import OPTIMIZER_IMPLS, OPTIMIZERS, SCHEDULES
from .threads import available_cores
from .tta import TTA_VIEWS

PRECISIONS = ("fp32", "bf16", "fp16")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


@dataclass(frozen=True)
class TrainConfig(Checked):
    field_prefix = "train"

    epochs: int = setting(5, help="passes over the training data", range=(1, 100))
    batch_size: int = setting(
        64, help="training examples per optimizer step", label="batch size", options=(16, 32, 64, 128, 256, 512, 1024)
    )
    optimizer: str = setting(
        "sgd",
        help="sgd, sgd_nesterov, adam, adamw, rmsprop, muon (weight matrices; adamw for the rest), adamw_8bit "
        "(torchao: AdamW with 8-bit moments)",
        choices=OPTIMIZERS.names,
    )
    lr: float = setting(
        0.05,
        help="peak learning rate (after warm-up); muon takes an adamw-sized one",
        label="learning rate",
        range=(1e-5, 1.0),
        log=True,
    )
    momentum: float = setting(0.9, help="for the SGD family, RMSprop and Muon", range=(0, 0.99), step=0.01)
    weight_decay: float = setting(
        5e-4, help="L2 pull of the weights towards zero (decoupled in adamw)", label="weight decay"
    )
    schedule: str = setting("cosine", help="constant, step, cosine, onecycle", choices=SCHEDULES.names)
    warmup_epochs: float = setting(
        0.0,
        help="linear warm-up from 0 to lr over this many epochs (onecycle: replaces its rise)",
        label="warm-up",
        unit="epochs",
        range=(0, 10),
        step=0.5,
    )
    label_smoothing: float = setting(
        0.0,
        help="share of each target spread over the other classes",
        label="label smoothing",
        range=(0, 0.3),
        step=0.05,
    )
    grad_clip: float = setting(0.0, help="max gradient norm; 0 = off", label="gradient clip (norm)")
    accumulate: int = setting(
        1,
        help="batches whose gradients add up before each optimizer step: a larger batch in the same memory",
        label="gradient accumulation",
        unit="batches",
        range=(1, 16),
    )
    seed: int = setting(0, help="initial weights, batch order and augmentations")
    # A language model's budget: its batches are random windows, so "an epoch" is a share of a step count.
    steps: int | None = setting(
        None,
        help="language model: optimizer steps in all, the epochs evaluation points among them "
        "(None: 100 steps an epoch)",
        label="LM steps",
        options=(("100 an epoch", None), *((f"{n:,}", n) for n in (200, 500, 1000, 2000, 5000, 10000))),
    )
    tokens: int | None = setting(
        None,
        help="language model: training tokens in all, instead of steps (steps = tokens / (batch_size x context))",
        label="LM tokens",
        not_in_panel="the panel sets a language model's budget in steps (LM steps)",
    )
    init_from: str = setting(
        "",
        help="a stored run id or checkpoint path whose trained weights this training starts from (fine-tuning "
        "them, e.g. on other text); empty = from the initial weights",
        label="start from",
        options=(("initial weights", ""),),  # the panel adds the stored runs
    )
    lora_rank: int = setting(
        0,
        help="language model: 0 trains every weight; r > 0 freezes them and trains rank-r adapters (LoRA) on the "
        "lora_targets layers, merged into the weights when training ends",
        label="LoRA rank",
        range=(0, 64),
    )
    lora_targets: tuple[str, ...] = setting(
        ("c_attn",),
        help="the Linear layers LoRA adapts, by the end of their names: c_attn (q, k, v), attn.c_proj, mlp.c_fc, "
        "c_proj (both)",
        label="LoRA targets",
    )
    lora_alpha: float = setting(
        0.0,
        help="LoRA's update is alpha / rank x B A; 0 = alpha equal to the rank (a scale of 1)",
        label="LoRA alpha",
    )

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
        check_positive("train", "accumulate", self.accumulate)
        require(
            self.steps is None or self.tokens is None,
            f"train.steps ({self.steps}) and train.tokens ({self.tokens}) are two budgets: set one of them",
        )
        if self.steps is not None:
            check_positive("train", "steps", self.steps)
        if self.tokens is not None:
            check_positive("train", "tokens", self.tokens)
        OPTIMIZERS.check(self.optimizer)
        SCHEDULES.check(self.schedule)
        require(
            isinstance(self.lora_rank, int) and self.lora_rank >= 0,
            f"train.lora_rank must be a whole number >= 0, 0 for no LoRA (got {self.lora_rank!r})",
        )
        check_positive("train", "lora_alpha", self.lora_alpha, allow_zero=True)
        require(
            not self.lora_rank or self.lora_targets,
            "train.lora_targets is empty: name the layers to adapt, e.g. c_attn",
        )


@dataclass(frozen=True)
class HardwareConfig(Checked):
    field_prefix = "hardware"

    device: str = setting(
        "auto",
        help="auto, cpu, cuda, cuda:N, mps; auto picks the best present",
        choices=("auto", "cpu", "cuda", "cuda:N", "mps"),  # the panel offers the devices present instead
    )
    precision: str = setting(
        "fp32", help="fp32, bf16, fp16 (autocast; fp16 adds a grad scaler)", choices=PRECISIONS, widget="toggle"
    )
    channels_last: bool = setting(
        False, help="NHWC memory layout, faster convs on tensor-core GPUs", label="channels-last memory"
    )
    compile: bool | str = setting(
        False,
        help="torch.compile the model (slow first epoch, faster after): true, false, or auto (time a few steps both "
        "ways first and compile only where the run is long enough to pay the compile back; the result says why)",
        label="torch.compile",
        options=(("off", False), ("on", True), ("auto (probe first)", "auto")),
    )
    compile_mode: str = setting(
        "default",
        help="torch.compile's mode: default, reduce-overhead (replays CUDA graphs: less launch overhead per step), "
        "max-autotune (searches kernel configurations: a longer compile), max-autotune-no-cudagraphs",
        label="compile mode",
        choices=COMPILE_MODES,
    )
    tf32: bool = setting(False, help="allow TF32 matmuls on Ampere+ GPUs", label="TF32 matmuls (CUDA)")
    optimizer_impl: str = setting(
        "auto",
        help="how the optimizer update runs: auto (torch chooses), for-loop, foreach (batched) or fused (one kernel; "
        "sgd, sgd_nesterov, adam, adamw)",
        label="optimizer update",
        choices=tuple(OPTIMIZER_IMPLS),
    )
    cudnn_benchmark: bool = setting(
        False,
        help="let cuDNN time its convolution algorithms for the shapes seen (CUDA)",
        label="cuDNN autotuning (CUDA)",
    )
    activation_checkpointing: bool = setting(
        False,
        help="language model: keep each block's input only and recompute its activations in the backward pass: "
        "less memory for more time",
        label="activation checkpointing",
    )
    threads: int | str = setting(
        "auto",
        help="CPU threads for training and timing: auto = the cores not already busy (a second thread sharing a "
        "busy core made a training step 2-8x slower here; on idle cores it is 1.25x faster), or a number "
        "(a fixed number also keeps CPU reruns bit-identical: auto may choose differently under load)",
        label="CPU threads",
        options=lambda: [("auto (free cores)", "auto")] + [(str(n), n) for n in range(1, available_cores() + 1)],
    )

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

    teacher: str = setting(
        "",
        help="a stored run id or a checkpoint path; empty = no distillation",
        label="distill from",
        options=(("none", ""),),  # the panel adds the stored runs
    )
    alpha: float = setting(
        0.7, help="weight of the teacher's soft targets", label="teacher weight α", range=(0, 1), step=0.05
    )
    temperature: float = setting(
        4.0,
        help='softens both distributions so the teacher\'s "dark knowledge" shows',
        range=(1, 10),
        step=0.5,
    )

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

    tta: str = setting(
        "none",
        help="test-time augmentation of the final accuracy: none, flip, translate, flip_translate",
        label="test-time augmentation",
        choices=TTA_VIEWS,
    )
    tta_shift: int = setting(
        1, help="pixels each translated view moves, down-right and up-left", label="TTA shift", unit="px", range=(1, 4)
    )
    tta_below: float = setting(
        1.0,
        help="augment only images whose plain top probability is below this (1 = every image)",
        label="TTA below confidence",
        range=(0.05, 1.0),
        step=0.05,
    )

    def check(self) -> None:
        require(self.tta in TTA_VIEWS, f"evaluation.tta must be one of {', '.join(TTA_VIEWS)} (got '{self.tta}')")
        check_positive("evaluation", "tta_shift", self.tta_shift)
        require(0 < self.tta_below <= 1, f"evaluation.tta_below must be in (0, 1] (got {self.tta_below})")
