"""Tasks: what a run learns to do, and everything that differs between them, answered in one place.

``image`` classifies images (digits, CIFAR-10, MNIST, an image folder); ``lm`` models text, predicting
each next token (a GPT on the standard library's source, Tiny Shakespeare or any text). A run's
``task`` names one; the pipeline, the store, train-once reuse, resume, search, the CLI and the tables
are the same for both and ask the task what differs: which datasets and models it takes, how its data
loads and batches, how its model is built and rebuilt, what evaluation reports, what timing is fed and
what it adds (a language model's time to first token and decode speed), and which metrics its table
shows, with their direction.

Example:
    >>> list_tasks()
    ['image', 'lm']
    >>> lm = get_task("lm")
    >>> lm.reads, lm.headline, lm.throughput_metric, lm.starting_preset
    ('tokens', ('loss', 'perplexity', 'decode_tps'), 'throughput_tps', 'gpt')
    >>> get_task("text")
    Traceback (most recent call last):
    ...
    ValueError: Unknown task 'text'. Choose one of: image, lm.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from ._errors import ConfigError
from ._registry import Registry
from .compress import CompressContext, steps_for
from .data import (
    Dataset,
    FixedWindows,
    RandomWindows,
    TokenData,
    eval_loader,
    is_text_dataset,
    load_dataset,
    load_token_data,
    per_example_loss,
    select_subset,
    subset_size,
    train_loader,
)
from .data import (
    perplexity as perplexity_of,
)
from .measure import GENERATION_BATCH_SIZES, generation_timing
from .models import (
    WHITEN_IMAGES,
    ModelConfig,
    build_model,
    create_model,
    gpt_args,
    list_models,
    model_args,
    model_input,
    whiten_first_conv,
)
from .models.config import text_model_args
from .models.lora import add_lora
from .train import TrainConfig, evaluate, train

# A workbench.config.RunConfig: the config composes the tasks' choices, so it sits above this module.
RunConfig = Any

TASKS: Registry[Task] = Registry("task")
LM_STEPS_PER_EPOCH = 100  # a language model's epoch when neither train.steps nor train.tokens says otherwise
LM_EVAL_WINDOWS = 256  # validation windows, evenly spaced over the validation text: the same every run
LM_TIMING_WINDOWS = 16  # validation windows the timing cuts its batches from
COMPRESSION_LOSS_POINTS = 2.0  # more accuracy lost than this in compression is worth a warning and a fix
# A rule of thumb, not a measurement: int8 inference of LLMs is usually judged acceptable within a few percent.
COMPRESSION_PERPLEXITY_RISE = 0.05


def get_task(name: str) -> Task:
    return TASKS.get(name)


def list_tasks() -> list[str]:
    return TASKS.names()


def task_of(config: RunConfig) -> Task:
    return TASKS.get(config.task)


class Task:
    """What one task answers; ``ImageTask`` and ``LanguageTask`` are the two."""

    name: str
    title: str
    reads: str  # what its models read: images or tokens (models.model_input)
    headline: tuple[str, ...]  # what a one-line summary of a run says, its quality first
    throughput_metric: str  # images/s or tokens/s (its unit is in report.METRICS)
    train_speed_metric: str
    compare_metrics: tuple[str, ...]  # what compare() shows
    table_metrics: tuple[str, ...]  # the few columns of the results table
    ledger_metrics: tuple[str, ...]  # what the speed-up ledger shows beside sizes and latencies
    search_objectives: tuple[str, ...]  # what a search optimises when not told
    default_dataset: str
    default_model: str
    starting_preset: str | None = None  # the preset `workbench run --task NAME` starts from
    decode_batch_sizes: tuple[int, ...] = ()  # batch sizes its decoding is timed at (a language model's)

    def datasets_hint(self) -> str:
        raise NotImplementedError

    def teacher_problem(self, config: RunConfig, teacher: dict[str, Any], role: str = "teacher") -> str | None:
        """Why the checkpoint whose metadata is ``teacher`` cannot teach ``config``'s model (one line), or None.
        ``role`` names the checkpoint in the message (``train.init_from``'s "starting weights")."""
        task = teacher["config"].get("task", "image")
        if task != self.name:
            return f"the {role} is a model of task {task}: use a run of task {self.name}"
        return None

    def init_problem(self, config: RunConfig, start: dict[str, Any]) -> str | None:
        """Why ``config`` cannot start from the checkpoint whose metadata is ``start`` (``train.init_from``)."""
        problem = self.teacher_problem(config, start, role=f"starting point {config.train.init_from}")
        if problem:
            return problem
        theirs, mine = start["config"]["model"], config.to_dict()["model"]
        differ = [f"model.{k}={theirs.get(k)!r} (here {v!r})" for k, v in mine.items() if theirs.get(k) != v]
        if differ:
            return (
                f"train.init_from {config.train.init_from} is another architecture: set "
                + ", ".join(differ)
                + " to start from its weights"
            )
        return None

    def example_input(self, config: RunConfig, data, device) -> torch.Tensor:
        """Eight evaluation examples: what tracing or saving a compressed model feeds it."""
        return next(iter(self.eval_batches(config, data, device)))[0][:8].clone()

    def compress_context(self, config: RunConfig, data, device, indices, **options) -> CompressContext:
        """What compression steps are given: training batches (to calibrate or fine-tune on), evaluation batches,
        an example input, the device and the training recipe."""
        batches = self.train_batches(config, data, device, indices)
        test = self.eval_batches(config, data, device)
        example = self.example_input(config, data, device)
        return CompressContext(example, batches, test, device, config.train, config.hardware, **options)

    def problems(self, config: RunConfig) -> list[str]:
        """What stops ``config`` under this task before any data is read (one line each)."""
        found = []
        if is_text_dataset(config.data.dataset) != (self.reads == "tokens"):
            found.append(
                f"dataset {config.data.dataset} is {'text' if self.reads == 'images' else 'not text'}, and task "
                f"{self.name} {self.title}: {self.datasets_hint()}"
            )
        if model_input(config.model.name) != self.reads:
            others = ", ".join(list_models(self.reads))
            found.append(
                f"model {config.model.name} reads {model_input(config.model.name)}, and task {self.name} feeds "
                f"{self.reads}: choose one of {others}"
            )
        for step in config.compress:
            if self.name not in step.tasks:
                found.append(
                    f"compression step {step.kind} does not apply to task {self.name}'s models: use one of "
                    + ", ".join(steps_for(self.name))
                )
        return found


class ImageTask(Task):
    """Image classification: a label per image; accuracy on the test split, images per second."""

    name, title, reads = "image", "classifies images", "images"
    throughput_metric, train_speed_metric = "throughput_ips", "train_ips"
    compare_metrics = (
        "accuracy",
        "params",
        "nonzero_params",
        "size_bytes",
        "flops",
        "latency_ms",
        "throughput_ips",
        "train_seconds",
    )
    table_metrics = ("accuracy", "params", "size_bytes", "latency_ms", "throughput_ips", "train_seconds")
    headline = ("accuracy",)
    ledger_metrics = ("accuracy",)  # what the speed-up ledger shows beside sizes and latencies
    search_objectives = ("accuracy", "size_bytes", "latency_ms")
    default_dataset, default_model = "digits", "cnn"

    def datasets_hint(self) -> str:
        return "use digits, cifar10, mnist, fashion-mnist or folder:PATH, or --task lm for text"

    def problems(self, config: RunConfig) -> list[str]:
        found = super().problems(config)
        for key, value in (
            ("train.lora_rank", config.train.lora_rank),
            ("hardware.activation_checkpointing", config.hardware.activation_checkpointing),
        ):
            if value:
                found.append(f"{key} is built for a language model's blocks: leave it off (0/false) for images")
        return found

    def load(self, config: RunConfig, root: str | Path) -> Dataset:
        return load_dataset(config.data.dataset, root=root)

    def check_sizes(self, config: RunConfig, dataset: Dataset) -> None:
        """What cannot be known before the data: the batch size against the training set."""
        n = subset_size(len(dataset.train_y), config.data.fraction)
        bs = config.train.batch_size
        if bs > n:
            raise ConfigError(
                f"train.batch_size={bs} is more than the {n:,} training examples of {config.data.dataset} "
                f"(data.fraction={config.data.fraction}): use at most {n}"
            )
        if n < 2 and config.model.batchnorm:
            raise ConfigError(
                f"{n} training example is too few for BatchNorm: raise data.fraction or set model.batchnorm=False"
            )

    def training_subset(self, config: RunConfig, dataset: Dataset, device: torch.device) -> torch.Tensor:
        return training_subset(config, dataset, device)

    def train_batches(self, config: RunConfig, dataset: Dataset, device, indices, shard=(0, 1)):
        return train_loader(
            dataset,
            config.data,
            config.train.batch_size,
            seed=config.train.seed,
            device=device,
            indices=indices,
            shard=shard,
        )

    def eval_batches(self, config: RunConfig, dataset: Dataset, device, split: str = "test", indices=None):
        return eval_loader(dataset, config.data, device=device, split=split, indices=indices)

    def initial_model(self, config: RunConfig, dataset: Dataset, device="cpu", indices=None) -> torch.nn.Module:
        return initial_model(config, dataset, device, indices)

    def model_args(self, config: RunConfig, dataset: Dataset, model=None) -> dict[str, Any]:
        """What rebuilds the model (a pruned one's narrower layers are saved with its weights)."""
        return model_args_for(config, dataset)

    def saved_with_model(self, dataset: Dataset) -> dict[str, Any]:
        return {}

    def train_examples(self, indices: torch.Tensor | None, batches) -> int:
        return len(indices)

    def fit(self, config: RunConfig, model, dataset: Dataset, device, indices) -> dict[str, Any]:
        """How well the trained model fits its own training examples (eval mode, unaugmented), for the gap:
        the running train accuracy comes from augmented batches with dropout on."""
        seen = evaluate(
            model,
            self.eval_batches(config, dataset, device, split="train", indices=indices),
            device=device,
            precision=config.hardware.precision,
        )
        return {"train_eval_accuracy": seen["accuracy"]}

    def evaluate(self, config: RunConfig, model, dataset: Dataset, device) -> dict[str, Any]:
        return evaluate(
            model,
            self.eval_batches(config, dataset, device),
            device=device,
            precision=config.hardware.precision,
            tta=config.evaluation,
        )

    def gap(self, fit: dict[str, Any], evaluated: dict[str, Any]) -> dict[str, Any]:
        if fit.get("train_eval_accuracy") is None:  # rows stored before it was recorded lack it
            return {}
        return {"generalization_gap": fit["train_eval_accuracy"] - evaluated["accuracy"]}

    def example_shape(self, dataset: Dataset) -> tuple[int, ...]:
        return chw(dataset)

    def quality(self, evaluated: dict[str, Any]) -> dict[str, Any]:
        return {"accuracy": evaluated["accuracy"]}

    def compression_cost(self, before: dict[str, Any], after: dict[str, Any]) -> str | None:
        lost = 100 * (before["accuracy"] - after["accuracy"])
        if lost <= COMPRESSION_LOSS_POINTS:
            return None
        was, now = 100 * before["accuracy"], 100 * after["accuracy"]
        return f"compression cost {lost:.1f} accuracy points ({was:.1f}% -> {now:.1f}%)"

    def timing_inputs(self, config: RunConfig, dataset: Dataset) -> torch.Tensor | None:
        return None  # random batches of the image shape

    def more_timing(self, config: RunConfig, models, data, device) -> list[tuple[dict, list[dict]]]:
        return [({}, []) for _ in models]

    def modes_on_inputs(self, modes) -> list[str]:
        """The measure modes to time on the task's inputs (``measure_modes``): all of them for images."""
        return list(modes)

    def flops_per_train_example(self, config: RunConfig, metrics: dict[str, Any]) -> float:
        return metrics["flops"]  # of one image

    def row_metrics(self, config: RunConfig, metrics: dict[str, Any]) -> dict[str, Any]:
        return {}


class LanguageTask(Task):
    """Language modelling: the next token at every position of a window of text; validation loss, perplexity
    and bits per byte, tokens per second, time to first token."""

    name, title, reads = "lm", "models text", "tokens"
    throughput_metric, train_speed_metric = "throughput_tps", "train_tps"
    compare_metrics = (
        "loss",
        "perplexity",
        "bits_per_byte",
        "params",
        "size_bytes",
        "flops_per_token",
        "throughput_tps",
        "ttft_ms",
        "decode_tps",
        "kv_cache_bytes",
        "train_seconds",
        "train_tps",
    )
    table_metrics = ("loss", "perplexity", "params", "ttft_ms", "decode_tps", "throughput_tps", "train_seconds")
    headline = ("loss", "perplexity", "decode_tps")
    decode_batch_sizes = GENERATION_BATCH_SIZES
    ledger_metrics = (
        "loss",
        "perplexity",
        "bits_per_byte",
        "ttft_ms",
        "decode_tps",
        "decode_tps_bs8",
        "kv_cache_bytes",
        "peak_memory_bytes",
    )
    search_objectives = ("perplexity", "size_bytes", "decode_tps")
    default_dataset, default_model, starting_preset = "pystdlib", "gpt", "gpt"

    def datasets_hint(self) -> str:
        return "use pystdlib, tinyshakespeare or text:PATH, or --task image for images"

    def problems(self, config: RunConfig) -> list[str]:
        found = super().problems(config)
        if config.data.fraction != 1 or config.data.augment.enabled:
            found.append("data.fraction and data.augment are for images: a language model trains on random windows")
        if config.evaluation.tta != "none":
            found.append("test-time augmentation is for images: set evaluation.tta=none for a language model")
        found += self._shape_problems(config)
        other = sorted(set(config.measure.modes) - {"eager", "compiled"})
        if other:
            found.append(
                f"measure.modes {', '.join(other)}: a language model is timed eager and compiled here (export, ONNX "
                "Runtime and TensorRT take image models so far): use measure.modes=eager,compiled"
            )
        return found

    def teacher_problem(self, config: RunConfig, teacher: dict[str, Any], role: str = "") -> str | None:
        role = role or f"teacher {config.distill.teacher}"
        problem = super().teacher_problem(config, teacher, role)
        if problem:
            return problem
        data, args = teacher["config"]["data"], teacher["model_args"]
        mine = (config.data.tokenizer, config.data.vocab_size)
        theirs = (data.get("tokenizer"), data.get("vocab_size"))
        # A byte tokenizer is the same on every text; a char or BPE one is fitted to its text.
        if mine != theirs or (mine[0] != "byte" and data.get("dataset") != config.data.dataset):
            return (
                f"the {role} reads {theirs[0]} tokens of {data.get('dataset')} and this model {mine[0]} tokens of "
                f"{config.data.dataset}: the two must share a tokenizer (data.tokenizer=byte reads any text alike)"
            )
        if args["block_size"] < config.model.block_size:
            return (
                f"the {role} sees {args['block_size']} tokens at once and this model's windows are "
                f"{config.model.block_size}: use model.block_size={args['block_size']} or less"
            )
        return None

    def _shape_problems(self, config: RunConfig) -> list[str]:
        """What the compression steps and LoRA say of the config's GPT, built on the meta device (shapes, no
        weights); nothing where there is no GPT to build (another model, a bad shape: said elsewhere)."""
        if model_input(config.model.name) != "tokens":
            return []
        try:
            with torch.device("meta"):
                skeleton = create_model(**text_model_args(config.model, vocab_size=256))
        except ConfigError:
            return []
        found = [p for p in (step.model_problem(skeleton) for step in config.compress) if p]
        if config.train.lora_rank:
            try:
                add_lora(skeleton, config.train.lora_rank, config.train.lora_alpha or None, config.train.lora_targets)
            except ConfigError as e:
                found.append(f"train.lora_*: {e}")
        return found

    def load(self, config: RunConfig, root: str | Path) -> TokenData:
        return load_token_data(config.data.dataset, config.data.tokenizer, config.data.vocab_size, root=root)

    def check_sizes(self, config: RunConfig, data: TokenData) -> None:
        block = config.model.block_size
        for split, ids in (("training", data.train_ids), ("validation", data.val_ids)):
            if len(ids) <= block:
                raise ConfigError(
                    f"model.block_size={block} is longer than {data.name}'s {split} text ({len(ids):,} tokens): "
                    f"use a block size under {len(ids)} or a longer text"
                )

    def training_subset(self, config: RunConfig, data: TokenData, device) -> None:
        return None  # every window of the training text can be drawn

    def total_steps(self, train_cfg: TrainConfig, block_size: int) -> int:
        """Optimizer steps in all: ``train.steps``, else ``train.tokens`` over the tokens a step sees, else
        ``LM_STEPS_PER_EPOCH`` an epoch."""
        if train_cfg.steps is not None:
            return train_cfg.steps
        if train_cfg.tokens is not None:
            per_step = train_cfg.batch_size * train_cfg.accumulate * block_size
            return max(1, math.ceil(train_cfg.tokens / per_step))
        return LM_STEPS_PER_EPOCH * max(train_cfg.epochs, 1)

    def train_batches(self, config: RunConfig, data: TokenData, device, indices=None, shard=(0, 1)):
        t = config.train
        per_epoch = math.ceil(self.total_steps(t, config.model.block_size) / max(t.epochs, 1))
        return RandomWindows(
            data.train_ids,
            config.model.block_size,
            t.batch_size,
            per_epoch * t.accumulate,
            seed=t.seed,
            device=device,
            shard=shard,
        )

    def eval_batches(self, config: RunConfig, data: TokenData, device, split: str = "test", indices=None):
        ids = data.train_ids if split == "train" else data.val_ids
        return FixedWindows(ids, config.model.block_size, LM_EVAL_WINDOWS, batch_size=64, device=device)

    def initial_model(self, config: RunConfig, data: TokenData, device="cpu", indices=None) -> torch.nn.Module:
        torch.manual_seed(config.train.seed)
        model = create_model(**self.model_args(config, data))
        model.activation_checkpointing = config.hardware.activation_checkpointing
        return model

    def model_args(self, config: RunConfig, data: TokenData, model=None) -> dict[str, Any]:
        """What rebuilds the model: ``model``'s own shape where given (pruning changes it), else the config's."""
        if model is None:
            return text_model_args(config.model, data.tokenizer.vocab_size)
        return {"name": config.model.name, **gpt_args(model)}

    def saved_with_model(self, data: TokenData) -> dict[str, Any]:
        return {"tokenizer": data.tokenizer.to_dict()}

    def train_examples(self, indices, batches) -> int:
        return len(batches) * batches.batch_size * batches.block_size  # tokens an epoch: each one is predicted

    def fit(self, config: RunConfig, model, data: TokenData, device, indices) -> dict[str, Any]:
        seen = evaluate(
            model,
            self.eval_batches(config, data, device, split="train"),
            device=device,
            precision=config.hardware.precision,
        )
        return {"train_eval_loss": seen["loss"]}

    def evaluate(self, config: RunConfig, model, data: TokenData, device) -> dict[str, Any]:
        scores = evaluate(
            model, self.eval_batches(config, data, device), device=device, precision=config.hardware.precision
        )
        return {
            **scores,
            "perplexity": perplexity_of(scores["loss"]),
            # Bits per byte: the loss spread over the text's bytes, comparable across tokenizers.
            "bits_per_byte": scores["loss"] / (data.val_bytes_per_token * math.log(2)),
            # Which text exactly (Python version and file list for pystdlib): compare() flags rows of others.
            "text_sha256": data.corpus.source["sha256"],
            "text_source": data.corpus.source,
        }

    def gap(self, fit: dict[str, Any], evaluated: dict[str, Any]) -> dict[str, Any]:
        if fit.get("train_eval_loss") is None:
            return {}
        return {"generalization_gap_loss": evaluated["loss"] - fit["train_eval_loss"]}

    def example_shape(self, data: TokenData) -> tuple[int, ...]:
        return ()  # token windows come from timing_inputs

    def quality(self, evaluated: dict[str, Any]) -> dict[str, Any]:
        return {"loss": evaluated["loss"], "perplexity": evaluated["perplexity"]}

    def compression_cost(self, before: dict[str, Any], after: dict[str, Any]) -> str | None:
        rise = after["perplexity"] / before["perplexity"] - 1
        if rise <= COMPRESSION_PERPLEXITY_RISE:
            return None
        return f"compression raised perplexity {rise:.1%} ({before['perplexity']:.3f} -> {after['perplexity']:.3f})"

    def timing_inputs(self, config: RunConfig, data: TokenData) -> torch.Tensor:
        windows = FixedWindows(data.val_ids, config.model.block_size, LM_TIMING_WINDOWS, LM_TIMING_WINDOWS)
        return next(iter(windows))[0]

    def more_timing(self, config: RunConfig, models, data: TokenData, device) -> list[tuple[dict, list[dict]]]:
        block = config.model.block_size
        prompt = data.val_ids[: max(1, block // 4)]
        return generation_timing(
            models,
            prompt,
            new_tokens=max(2, block // 2),
            device=device,
            iters=max(3, config.measure.iters // 10),
            # Decoding modes every compression step's model runs in (an int8 KV cache: eager).
            modes=[
                m
                for m in config.measure.modes
                if m in ("eager", "compiled") and all(not s.modes or m in s.modes for s in config.compress)
            ],
        )

    def modes_on_inputs(self, modes) -> list[str]:
        return []  # a window forward is timed eager; compiled is timed where it matters, in decoding (more_timing)

    def flops_per_train_example(self, config: RunConfig, metrics: dict[str, Any]) -> float:
        return metrics["flops"] / config.model.block_size  # of one window; a language model's examples are tokens

    def row_metrics(self, config: RunConfig, metrics: dict[str, Any]) -> dict[str, Any]:
        """Per token what the timing measured per window of ``block_size`` tokens."""
        block = config.model.block_size
        return {"flops_per_token": metrics["flops"] / block, "throughput_tps": metrics["throughput_ips"] * block}


TASKS.register("image")(ImageTask())
TASKS.register("lm")(LanguageTask())


def chw(dataset: Dataset) -> tuple[int, ...]:
    """One example's shape (channels, height, width): what the model is built for and timed on."""
    return tuple(dataset.train_x.shape[1:])


def model_args_for(config: RunConfig, dataset: Dataset) -> dict[str, Any]:
    """The arguments a checkpoint keeps to rebuild ``config``'s model without loading any data."""
    return model_args(config.model, dataset.num_classes, chw(dataset))


def initial_model(
    config: RunConfig, dataset: Dataset, device: str | torch.device = "cpu", indices: torch.Tensor | None = None
) -> torch.nn.Module:
    """The untrained image model of ``config``: built from ``train.seed``, and with ``model.init=whiten`` its
    first conv set from the patches of the first ``WHITEN_IMAGES`` training images (of ``indices``),
    normalised as training sees them.

    Example:
        >>> from workbench import RunConfig
        >>> config = RunConfig(model=ModelConfig(name="speedcnn", width=0.25, init="whiten"))
        >>> net = initial_model(config, load_dataset("digits"))
        >>> torch.equal(net.stem[0].weight[0], -net.stem[0].weight[1])
        True
    """
    model = build_model(config.model, dataset.num_classes, chw(dataset), seed=config.train.seed)
    if config.model.init == "whiten":
        loader = eval_loader(
            dataset, config.data, device=device, split="train", indices=indices, batch_size=WHITEN_IMAGES
        )
        whiten_first_conv(model, next(iter(loader))[0])
    return model


def training_subset(config: RunConfig, dataset: Dataset, device: torch.device) -> torch.Tensor:
    """Indices of the training images to use, chosen by ``config.data.selection``.

    ``hardest`` / ``easiest`` rank examples by the loss of a quick proxy (a small MLP trained for two
    epochs on all the data): cheap, and it ranks the same "obviously easy" examples low as a big model.
    """
    d = config.data
    if d.fraction == 1.0:
        return torch.arange(len(dataset.train_y))
    scores = None
    if d.selection in ("hardest", "easiest"):
        recipe = TrainConfig(epochs=2, optimizer="adam", lr=1e-3, seed=config.train.seed)
        proxy = build_model(ModelConfig(name="mlp"), dataset.num_classes, chw(dataset), seed=recipe.seed).to(device)
        train(
            proxy, train_loader(dataset, d, recipe.batch_size, seed=recipe.seed, device=device), recipe, device=device
        )
        scores = per_example_loss(
            proxy, dataset.train_x, dataset.train_y, mean=dataset.mean, std=dataset.std, device=device
        )
    return select_subset(dataset.train_y, d.fraction, d.selection, seed=config.train.seed, scores=scores)
