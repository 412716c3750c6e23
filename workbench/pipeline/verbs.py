"""The public verbs built on ``run`` and on stored runs: a sweep over one field, a distillation study,
a stored run's model, its inference grid, and a test-set accuracy function."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd
import torch

from ..compress import low_bit_curve
from ..config import RunConfig
from ..measure import inference_grid, resolve_device
from ..report import Result, ResultStore, results_frame
from ..report.checkpoint import checkpoint_metadata, load_checkpoint
from ..tasks import get_task, task_of
from ..train import DistillConfig, evaluate, resolve_threads, thread_count
from .orchestration import run, run_many


def sweep(base: RunConfig, field: str, values: Sequence, **kwargs) -> pd.DataFrame:
    """Run ``base`` once per value of one dotted field (``"model.width"``, ``"train.optimizer"``...);
    each run is named ``field=value``. The frame has a ``sweep_value`` column for plotting."""
    configs = [base.replace(**{field: v, "name": f"{field.rsplit('.', 1)[-1]}={v}"}) for v in values]
    df = run_many(configs, **kwargs)
    df["sweep_field"], df["sweep_value"] = field, list(values)
    return df


def distill(
    student: RunConfig,
    teacher: str,
    *,
    seeds: Sequence[int] = (0, 1, 2),
    alpha: float = 0.7,
    temperature: float = 4.0,
    **kwargs,
) -> pd.DataFrame:
    """Train the same student with and without the teacher for each seed, so the gain is measured.

    ``teacher`` is a stored run id or a checkpoint path. Returns one row per run with a ``with_teacher``
    column; ``distill_summary`` averages them.
    """
    rows = []
    for seed in seeds:
        for with_teacher in (False, True):
            cfg = student.replace(
                **{
                    "train.seed": seed,
                    "distill": DistillConfig(
                        teacher=teacher if with_teacher else "", alpha=alpha, temperature=temperature
                    ),
                    "name": f"{student.label()} {'distilled' if with_teacher else 'alone'}",
                }
            )
            rows.append(run(cfg, **kwargs))
    df = results_frame(rows)
    df["with_teacher"] = df["distill.teacher"].astype(bool)
    return df


def distill_summary(df: pd.DataFrame) -> pd.DataFrame:
    """Mean and spread of the task's quality (accuracy; a language model's validation loss) with and without
    the teacher; ``attrs["metric"]`` names it."""
    metric = get_task(df["task"].iloc[0] if "task" in df else "image").headline[0]
    table = df.groupby("with_teacher")[metric].agg(["mean", "std", "count"])
    table.attrs["metric"] = metric
    table.index = table.index.map({False: "student alone", True: "distilled"})
    return table


def load_model(run: str | Result, *, store: ResultStore | str | os.PathLike = "runs") -> torch.nn.Module:
    """The model a stored run ended with, as saved (compressed if it was), on the CPU in eval mode.

    Example:
        >>> load_model("no-such-run", store="/nonexistent")
        Traceback (most recent call last):
        ...
        KeyError: "No result 'no-such-run' in /nonexistent/results. Latest ids: none."
    """
    result = run if isinstance(run, Result) else ResultStore.open(store).get(run)
    if not result.checkpoint:
        raise ValueError(
            f"Run '{result.run_id}' saved no model ({result.metrics.get('checkpoint_note', 'run it with a store')})."
        )
    return load_checkpoint(result.checkpoint)[0]


def inference_sweep(
    model_or_run: torch.nn.Module | str | Result,
    *,
    store: ResultStore | str | os.PathLike = "runs",
    input_shape: Sequence[int] | None = None,
    **grid: Any,
) -> pd.DataFrame:
    """Latency and throughput per batch size x precision x mode (``measure.inference_grid``; ``grid``
    takes its keywords: batch_sizes, precisions, modes, device, channels_last, warmup, iters) for a
    module (give ``input_shape``, C, H, W) or a stored run's saved model (its input shape is in the
    checkpoint). Chart it with ``charts.inference_sweep_chart``.

    Example:
        >>> df = inference_sweep(torch.nn.Linear(8, 2), input_shape=(8,), batch_sizes=(1,), precisions=("fp32",),
        ...                      modes=("eager",), device="cpu", warmup=1, iters=3)
        >>> df[["precision", "mode", "batch_size"]].values.tolist()
        [['fp32', 'eager', 1]]
    """
    if isinstance(model_or_run, torch.nn.Module):
        if input_shape is None:
            raise ValueError("inference_sweep(model) needs input_shape=(C, H, W); a stored run knows its own")
        return inference_grid(model_or_run, input_shape, **grid)
    result = model_or_run if isinstance(model_or_run, Result) else ResultStore.open(store).get(model_or_run)
    model = load_model(result)  # says in one line when the run saved no model
    args = checkpoint_metadata(result.checkpoint)["model_args"]
    if "image_size" not in args:
        raise ValueError(
            f"run {result.run_id} is a language model: inference_sweep times image batches; its row has its "
            "timing (ttft_ms, decode_tps, throughput_tps) and measure.decode_curve times decoding by length"
        )
    chw = (args["in_channels"], args["image_size"], args["image_size"])
    df = inference_grid(model, chw if input_shape is None else input_shape, **grid)
    df.insert(0, "run", result.config.name or result.run_id)
    return df


def evaluator(
    config: RunConfig, *, data_root: str | os.PathLike = "data", device: str | torch.device | None = None
) -> Callable[[torch.nn.Module], float]:
    """A function ``model -> test accuracy`` on ``config``'s test split, normalised as it trains (the
    data is loaded once; a language model's: next-token accuracy on the validation windows): what
    ``sensitivity`` and hand-made checks need.

    Example:
        >>> from workbench import RunConfig, create_model
        >>> accuracy = evaluator(RunConfig())
        >>> 0 <= accuracy(create_model("mlp", 10, 1, 8)) <= 1
        True
    """
    task = task_of(config)
    dataset = task.load(config, data_root)
    where = resolve_device(device or config.hardware.device)
    batches = task.eval_batches(config, dataset, where)
    return lambda model: evaluate(model.to(where) if _movable(model) else model, batches, device=where)["accuracy"]


def bits_curve(
    run: str | Result,
    *,
    store: ResultStore | str | os.PathLike = "runs",
    bits: Sequence[int] = (8, 6, 5, 4, 3, 2),
    group_sizes: Sequence[int] = (32, 128),
    scales: Sequence[str] = ("rtn", "awq"),
    calibration_examples: int = 8,
    data_root: str | os.PathLike = "data",
) -> pd.DataFrame:
    """Quality against bits per weight for a stored run's model (``compress.low_bit_curve``: every Linear but a GPT's
    head rounded to ``bits`` bits in groups of ``group_sizes`` inputs, simulated in floats), scored as the run was
    (a language model's validation loss, with its ``perplexity``; an image model's test ``accuracy``). AWQ's
    activation-aware scales (``scales`` "awq") are measured on the first ``calibration_examples`` training examples
    (token windows of a language model: 8 windows of 64 tokens are 512 activation rows a layer); the search for them
    multiplies every layer's inputs 20 times per width and group size, so a few examples keep it to seconds.
    The first row is the model unrounded (32 bits); ``change`` is each row's quality against it (perplexity's, for
    a language model). Chart it with ``charts.low_bit_chart``.

    Example:
        >>> bits_curve("no-such-run", store="/nonexistent")
        Traceback (most recent call last):
        ...
        KeyError: "No result 'no-such-run' in /nonexistent/results. Latest ids: none."
    """
    result = run if isinstance(run, Result) else ResultStore.open(store).get(run)
    model, config = load_model(result), result.config
    if not isinstance(calibration_examples, int) or calibration_examples < 1:
        raise ValueError(f"calibration_examples must be a whole number >= 1 (got {calibration_examples!r})")
    task, cpu = task_of(config), torch.device("cpu")  # load_model's model is on the CPU
    data = task.load(config, data_root)
    metric = task.headline[0]
    calibration = None
    if "awq" in scales:
        seen, calibration = 0, []
        for x, _ in task.train_batches(config, data, cpu, task.training_subset(config, data, cpu)):
            calibration.append(x[: calibration_examples - seen])
            seen += len(calibration[-1])
            if seen >= calibration_examples:
                break

    def score(m: torch.nn.Module) -> float:
        return float(task.evaluate(config, m, data, cpu)[metric])

    # The run's thread policy (hardware.threads; auto: the cores the load average leaves free), as run() trains and
    # times with: on a busy machine, more OpenMP threads than free cores wait on each other.
    with torch.no_grad(), thread_count(resolve_threads(config.hardware.threads)):
        curve = low_bit_curve(model, score, bits, group_sizes, scales, calibration).rename(columns={"score": metric})
    quality = metric
    if metric == "loss":
        curve["perplexity"] = curve["loss"].map(math.exp)
        quality = "perplexity"
    curve["change"] = curve[quality] / curve[quality].iloc[0] - 1
    curve.attrs.update(run_id=result.run_id, metric=quality)
    return curve


def _movable(model: torch.nn.Module) -> bool:
    """Whether ``.to(device)`` is safe: a pt2e int8 program lives on the CPU and stays there."""
    return not isinstance(model, torch.fx.GraphModule)
