"""One run = one ``Result`` row; rows are appended to a ``ResultStore`` and read back as a DataFrame.

The store is append-only: every row is its own JSON file, written atomically (temporary file, fsync,
rename), so a crash mid-write can never corrupt a row written before it. Nothing is ever rewritten.

``METRICS`` is the one schema of what a row measures (label, unit, scale, which way is better);
the pipeline, ``compare``, the ledger, the charts, the panel, the CLI and the tour all read it.

Example:
    >>> import tempfile
    >>> store = ResultStore(tempfile.mkdtemp())
    >>> r = Result(config=RunConfig(), metrics={"accuracy": 0.9})
    >>> _ = store.append(r)
    >>> store.frame()[["model.name", "accuracy"]].values.tolist()
    [['cnn', 0.9]]
    >>> METRICS["size_bytes"].axis_label, METRICS["size_bytes"].lower_is_better
    ('model size on disk (KiB)', True)
"""

from __future__ import annotations

import json
import math
import os
import time
import uuid
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ._errors import ConfigError, one_line
from ._files import atomic_write_text, writable_problem
from ._registry import unknown_name_error
from .config import RunConfig

DEFAULT_RUNS_DIR = "runs"
PATH_FIELDS = ("checkpoint", "trained_checkpoint")  # stored relative to the store's root


class DamagedRow(ValueError):
    """A result row file that cannot be read."""


class DamagedRowWarning(UserWarning):
    """A damaged row file was skipped while reading a store."""


@dataclass(frozen=True)
class Metric:
    """What one number in a result row means and how to show it."""

    name: str
    label: str  # what it is, e.g. "test accuracy"
    unit: str = ""  # e.g. "%", "KiB", "ms, median"
    scale: float = 1.0  # shown value = stored value * scale (0.97 -> 97 %)
    lower_is_better: bool | None = None  # None: neither direction is better (epochs, learning rate)
    # What produces it: "training" (the training phase, on train_device: a run that reuses a training takes
    # these over), "evaluation" (the final model on the test split), "inference" (timed on measure_device)
    # or "model" (its shape and bytes).
    source: str = "training"
    count: bool = False  # a count that reads best as 15k / 2.3M

    @property
    def axis_label(self) -> str:
        return f"{self.label} ({self.unit})" if self.unit else self.label


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("accuracy", "test accuracy", "%", 100, False, "evaluation"),
        Metric("loss", "test loss", "cross-entropy", 1, True, "evaluation"),
        # With evaluation.tta, accuracy and loss are of the augmented answers; these say what that changed.
        Metric("accuracy_plain", "test accuracy without test-time augmentation", "%", 100, False, "evaluation"),
        Metric("tta_share", "test images given test-time augmentation", "%", 100, None, "evaluation"),
        Metric(
            "eval_seconds", "test-split evaluation time", "s, test-time augmentation included", 1, True, "evaluation"
        ),
        Metric("train_accuracy", "train accuracy (running, augmented)", "%", 100, False),
        Metric("train_eval_accuracy", "train accuracy", "%", 100, False),  # eval mode, unaugmented: for the gap
        Metric("train_loss", "train loss", "cross-entropy", 1, True),
        Metric("test_accuracy", "test accuracy", "%", 100, False),  # per epoch, in the history
        Metric("test_loss", "test loss", "cross-entropy", 1, True),
        Metric("generalization_gap", "train − test accuracy", "percentage points", 100, True, "evaluation"),
        Metric("params", "parameters", "", 1, True, "model", count=True),
        Metric("nonzero_params", "non-zero parameters", "", 1, True, "model", count=True),
        Metric("size_bytes", "model size on disk", "KiB", 1 / 1024, True, "model"),
        Metric("flops", "FLOPs per image", "", 1, True, "model", count=True),
        Metric("latency_ms", "latency per batch", "ms, median", 1, True, "inference"),
        Metric("latency_ms_spread", "latency spread", "ms, interquartile range", 1, True, "inference"),
        Metric(
            "relative_spread", "latency spread", "share of the median", 1, True, "inference"
        ),  # per benchmark record
        Metric("throughput_ips", "throughput", "images/s", 1, False, "inference", count=True),
        Metric("train_seconds", "training time", "s", 1, True),
        Metric("train_ips", "training speed", "images/s", 1, False, count=True),
        Metric("images_per_s", "training speed", "images/s", 1, False, count=True),  # per epoch, in the history
        Metric("seconds", "epoch time", "s", 1, True),  # per epoch, in the history
        Metric("elapsed_s", "training time so far", "s", 1, True),  # per epoch, in the history
        Metric("first_epoch_seconds", "first epoch", "s", 1, True),
        Metric("steady_epoch_seconds", "epoch time once warm", "s, median of the later epochs", 1, True),
        Metric("warmup_seconds", "warm-up and compile cost", "s, first epoch beyond a steady one", 1, True),
        Metric("compile_probe_seconds", "compile=auto probe", "s, counted in the first epoch", 1, True),
        Metric("peak_memory_bytes", "peak memory", "MiB", 1 / 2**20, True),
        Metric("epochs_run", "epochs run"),
        Metric("threads", "CPU threads", source="inference"),
        Metric(
            "inference_tflops", "achieved inference TFLOP/s", "TFLOP/s, at the largest batch", 1, False, "inference"
        ),
        Metric("ceiling_tflops", "matmul ceiling", "TFLOP/s, measured by a probe", 1, False, "inference"),
        Metric("inference_ceiling_share", "inference share of the matmul ceiling", "", 1, False, "inference"),
        Metric("train_tflops", "achieved training TFLOP/s", "TFLOP/s, 3x the forward FLOPs", 1, False, "inference"),
        Metric("train_ceiling_tflops", "matmul ceiling of the training device", "TFLOP/s", 1, False, "inference"),
        Metric("train_ceiling_share", "training share of the matmul ceiling", "", 1, False, "inference"),
        Metric("load_average", "machine load average (1 min)", source="inference"),
        Metric("resumed_epochs", "epochs resumed from an interrupted run"),
        Metric("train_examples", "training examples"),
        Metric("steps_per_epoch", "optimizer steps per epoch"),
        Metric("lr", "learning rate"),
        # A data-parallel run (parallel.nproc x parallel.nnodes processes): recorded by rank 0, per rank in rank order.
        Metric("world_size", "training processes"),
        Metric("rank_images_per_s", "training speed per process", "images/s", 1, False, count=True),
        Metric("rank_parameter_bytes", "parameters held per process", "MiB", 1 / 2**20, True),
        Metric("rank_peak_memory_bytes", "peak memory per process", "MiB", 1 / 2**20, True),
    )
}
# What compare() and the tables show when not told otherwise.
COMPARE_METRICS = (
    "accuracy",
    "params",
    "nonzero_params",
    "size_bytes",
    "flops",
    "latency_ms",
    "throughput_ips",
    "train_seconds",
)


def metric(name: str) -> Metric:
    """The schema entry for ``name``; an unknown name lists the known ones and the closest match."""
    if name not in METRICS:
        raise unknown_name_error("metric", name, METRICS)
    return METRICS[name]


def format_number(value: float) -> str:
    """Four significant digits, but whole numbers with thousands separators (no 1.955e+05 in tables).

    Example:
        >>> format_number(195512.3), format_number(0.068921), format_number(98.888)
        ('195,512', '0.06892', '98.89')
    """
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"


def new_run_id() -> str:
    """A sortable, unique run id: ``YYYYmmdd-HHMMSS-`` and six hex digits."""
    return time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]


@dataclass
class Result:
    """A run's config, its metrics (accuracy, size, speed... each with the device it was measured on),
    its per-epoch training history and per-batch-size benchmark records, and where its model is."""

    config: RunConfig
    metrics: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    benchmarks: list[dict[str, Any]] = field(default_factory=list)
    run_id: str = field(default_factory=new_run_id)
    created: float = field(default_factory=time.time)
    status: str = "ok"  # ok, or why the run stopped early (e.g. "nan-loss")
    checkpoint: str | None = None  # the model as it ends the run: compressed if compressed (see checkpoint_format)
    checkpoint_format: str | None = None  # state_dict (loads with weights_only=True) or export_program
    trained_checkpoint: str | None = None  # the float model right after training, before any compression
    reused_from: str | None = None  # the run whose training this run reused instead of training again
    tags: dict[str, Any] = field(default_factory=dict)  # where the run came from, e.g. a search's study and trial

    def row(self) -> dict[str, Any]:
        """The flat row: run fields, config fields (dotted), then metrics."""
        return {
            "run_id": self.run_id,
            "name": self.config.label(),
            "created": pd.Timestamp(self.created, unit="s"),
            "status": self.status,
            "config_hash": self.config.config_hash(),
            "training_hash": self.config.training_hash(),
            **{k: v for k, v in self.config.flat().items() if k != "name"},
            "compress_steps": [s.to_dict() for s in self.config.compress],
            **self.metrics,
            "checkpoint": self.checkpoint,
            "checkpoint_format": self.checkpoint_format,
            "reused_from": self.reused_from,
            **self.tags,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "created": self.created,
            "status": self.status,
            "checkpoint": self.checkpoint,
            "checkpoint_format": self.checkpoint_format,
            "trained_checkpoint": self.trained_checkpoint,
            "reused_from": self.reused_from,
            "tags": jsonable(self.tags),
            "config": self.config.to_dict(),
            "metrics": jsonable(self.metrics),
            "history": jsonable(self.history),
            "benchmarks": jsonable(self.benchmarks),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Result:
        return cls(
            config=RunConfig.from_dict(d["config"]),
            metrics=d.get("metrics", {}),
            history=d.get("history", []),
            benchmarks=d.get("benchmarks", []),
            run_id=d["run_id"],
            created=d["created"],
            status=d.get("status", "ok"),
            checkpoint=d.get("checkpoint"),
            checkpoint_format=d.get("checkpoint_format"),
            trained_checkpoint=d.get("trained_checkpoint"),
            reused_from=d.get("reused_from"),
            tags=d.get("tags", {}),
        )

    def __repr__(self) -> str:
        shown = {k: self.metrics[k] for k in ("accuracy", "params", "size_bytes", "latency_ms") if k in self.metrics}
        return f"Result({self.run_id}, {self.config.label()}, status={self.status}, {shown})"


def jsonable(obj: Any) -> Any:
    """Plain JSON values: NaN/inf become None so files stay strict JSON; numpy/torch scalars become numbers."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):  # numpy / torch scalars
        return jsonable(obj.item())
    return obj


class ResultStore:
    """Append-only result rows under ``root`` (default ``runs/``), one JSON file per run.

    Checkpoint paths are stored relative to ``root`` and resolved against it on reading, so a store
    opened from another working directory, or moved as a whole, still finds its models. A damaged
    row file (half-written, empty, foreign) is skipped with one warning naming it; the rest of the
    store opens and appending goes on.
    """

    def __init__(self, root: str | os.PathLike = DEFAULT_RUNS_DIR):
        self.root = Path(root)
        self.rows_dir = self.root / "results"

    @classmethod
    def open(cls, store: ResultStore | str | os.PathLike | None) -> ResultStore | None:
        """The one way a function taking ``store=`` reads it: a ``ResultStore`` as it is, a folder path
        opened (checked: not empty, not another type), ``None`` as no store.

        Example:
            >>> ResultStore.open("runs").root, ResultStore.open(None)
            (PosixPath('runs'), None)
            >>> ResultStore.open(" ")
            Traceback (most recent call last):
            ...
            workbench.ConfigError: store is empty: name a results folder, e.g. runs
        """
        if store is None or isinstance(store, ResultStore):
            return store
        if not isinstance(store, (str, os.PathLike)):
            raise TypeError(f"store must be a folder path, a ResultStore or None (got {store!r})")
        if not str(store).strip():
            raise ConfigError("store is empty: name a results folder, e.g. runs")
        return cls(store)

    def append(self, result: Result) -> Path:
        path = self.rows_dir / f"{result.run_id}.json"
        if path.exists():
            raise FileExistsError(f"Result {result.run_id} is already stored at {path}; the store is append-only.")
        d = result.to_dict()
        for key in PATH_FIELDS:
            d[key] = self._relative(d[key])
        return atomic_write_text(path, json.dumps(d, indent=1))

    def results(self) -> list[Result]:
        """Every stored result, oldest first. Stray temporary files from a crash are ignored; a row file
        that cannot be read is skipped with a warning that names it."""
        if not self.rows_dir.exists():
            return []
        out = []
        for path in sorted(self.rows_dir.glob("*.json")):
            try:
                out.append(self._read(path))
            except DamagedRow as e:
                warnings.warn(str(e), DamagedRowWarning, stacklevel=2)
        return sorted(out, key=lambda r: r.created)

    def get(self, run_id: str) -> Result:
        path = self.rows_dir / f"{run_id}.json"
        if not path.exists():
            known = [p.stem for p in sorted(self.rows_dir.glob("*.json"))][-5:]
            raise KeyError(f"No result '{run_id}' in {self.rows_dir}. Latest ids: {', '.join(known) or 'none'}.")
        return self._read(path)

    def writable_problem(self) -> str | None:
        """Why this store cannot take rows and checkpoints, in one line (None if it can): checked
        before a run trains, so a read-only or missing place fails first, not after the work."""
        return next(filter(None, (writable_problem(d) for d in (self.rows_dir, self.root / "checkpoints"))), None)

    def _read(self, path: Path) -> Result:
        try:
            result = Result.from_dict(json.loads(path.read_text()))
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise DamagedRow(
                f"Skipped {path}: not a readable result row ({one_line(e)[:120]}). Move it out of "
                f"{self.rows_dir} or delete it; the other rows are unaffected."
            ) from None
        for key in PATH_FIELDS:
            setattr(result, key, self._absolute(getattr(result, key)))
        return result

    def _relative(self, path: str | None) -> str | None:
        if path is None:
            return None
        try:
            return Path(path).resolve().relative_to(self.root.resolve()).as_posix()
        except ValueError:  # outside the store: kept as given
            return str(path)

    def _absolute(self, path: str | None) -> str | None:
        if path is None or Path(path).is_absolute():
            return path
        inside = self.root / path
        # Rows written before paths were stored relative to the store hold them relative to the working directory.
        return str(Path(path) if not inside.exists() and Path(path).exists() else inside)

    def trained_like(self, config: RunConfig, device: torch.device) -> Result | None:
        """The latest stored run that finished the training ``config`` describes (same data, model,
        train, hardware, parallel and distill sections, all epochs, status ok) on the same kind of device, with
        its trained weights still on disk; None if there is none."""
        key = config.training_hash()
        for r in reversed(self.results()):
            if (
                r.status == "ok"
                and r.trained_checkpoint
                and r.config.training_hash() == key
                and r.metrics.get("epochs_run") == config.train.epochs
                and str(r.metrics.get("train_device", "")).split(":")[0] == device.type
                and Path(r.trained_checkpoint).is_file()
            ):
                return r
        return None

    def frame(self) -> pd.DataFrame:
        return results_frame(self.results())

    def checkpoint_path(self, run_id: str, suffix: str = ".pt") -> Path:
        return self.root.resolve() / "checkpoints" / f"{run_id}{suffix}"

    def __len__(self) -> int:
        return len(list(self.rows_dir.glob("*.json"))) if self.rows_dir.exists() else 0


def results_frame(results: Iterable[Result]) -> pd.DataFrame:
    """Results as a DataFrame, one row per run; ``history`` and ``benchmarks`` stay as list columns."""
    return pd.DataFrame([{**r.row(), "history": r.history, "benchmarks": r.benchmarks} for r in results])


def as_frame(results: pd.DataFrame | Sequence[Result]) -> pd.DataFrame:
    """A results frame with a fresh index, from a frame or a list of ``Result``; empty input fails."""
    df = results if isinstance(results, pd.DataFrame) else results_frame(results)
    if df.empty:
        raise ValueError("No results to show: run something first (workbench.run).")
    return df.reset_index(drop=True)


def run_labels(df: pd.DataFrame) -> list[str]:
    """One label per row: the run's name, with the end of its run id where names repeat.

    Example:
        >>> run_labels(pd.DataFrame({"name": ["a", "a", "b"], "run_id": ["x-111111", "x-222222", "x-333333"]}))
        ['a (111111)', 'a (222222)', 'b']
    """
    names = df["name"].astype(str) if "name" in df else pd.Series([f"row {i}" for i in range(len(df))])
    ids = df["run_id"].astype(str) if "run_id" in df else pd.Series([str(i) for i in range(len(df))])
    dup = names.duplicated(keep=False)
    return [f"{n} ({r[-6:]})" if d else n for n, r, d in zip(names, ids, dup)]


def baseline_index(df: pd.DataFrame, baseline: str | int | None) -> int:
    """The row position ``baseline`` names: a position, a run id or a name; None = the first row
    without compression.

    Example:
        >>> df = pd.DataFrame({"name": ["int8", "fp32"], "run_id": ["1", "2"], "compress": ["static_int8()", "none"]})
        >>> baseline_index(df, None), baseline_index(df, "int8"), baseline_index(df, 1)
        (1, 0, 1)
    """
    if baseline is None:
        if "compress" not in df or not (df["compress"] == "none").any():
            raise ValueError(
                "No baseline: no row has compress == 'none'. Pass baseline=<row position, run id or name>."
            )
        return int(np.flatnonzero(df["compress"] == "none")[0])
    if isinstance(baseline, (int, np.integer)):
        if not 0 <= baseline < len(df):
            raise ValueError(f"baseline row {baseline} is out of range: there are {len(df)} rows.")
        return int(baseline)
    hits = np.flatnonzero(
        (df.get("run_id", pd.Series(dtype=str)) == baseline) | (df.get("name", pd.Series(dtype=str)) == baseline)
    )
    if not len(hits):
        raise ValueError(f"No run with id or name '{baseline}'. Names: {', '.join(map(str, df.get('name', [])))}.")
    return int(hits[0])


TABLE_FIELDS = {"model.name": "model", "data.dataset": "dataset", "compress": "compression"}
TABLE_METRICS = ("accuracy", "params", "size_bytes", "latency_ms", "throughput_ips", "train_seconds")


def readable(
    results: pd.DataFrame | Sequence[Result],
    metrics: Sequence[str] = TABLE_METRICS,
    fields: dict[str, str] | None = None,
) -> pd.DataFrame:
    """A results table for people: the run's label, a few config fields, then metrics in the units of
    the schema (accuracy in %, size in KiB) with the unit in each header; the latency header names
    its batch size, and a ``timing`` column says where a latency is too noisy to trust.

    Example:
        >>> rows = [Result(RunConfig(name="a"), {"accuracy": 0.9, "size_bytes": 2048})]
        >>> list(readable(rows, metrics=["accuracy", "size_bytes"]).columns)
        ['run', 'model', 'dataset', 'compression', 'test accuracy (%)', 'model size on disk (KiB)', 'run id']
    """
    df = as_frame(results)
    fields = TABLE_FIELDS if fields is None else fields
    table = pd.DataFrame({"run": run_labels(df)})
    for column, header in fields.items():
        if column in df:
            table[header] = df[column].to_numpy()
    for name in metrics:
        if name not in df:
            continue
        header = METRICS[name].axis_label if name in METRICS else name
        if name == "latency_ms" and "measure.batch_sizes" in df:
            sizes = {min(b) for b in df["measure.batch_sizes"] if isinstance(b, (tuple, list)) and b}
            header = f"latency at batch {sizes.pop()} (ms, median)" if len(sizes) == 1 else header
        scale = METRICS[name].scale if name in METRICS else 1
        table[header] = pd.to_numeric(df[name], errors="coerce").to_numpy() * scale
    if "latency_noisy" in df and df["latency_noisy"].fillna(False).astype(bool).any():
        table["timing"] = ["noisy: rerun on a quiet machine" if n is True else "" for n in df["latency_noisy"]]
    if "measure_device_name" in df:
        table["device"] = df["measure_device_name"].to_numpy()
    table["run id"] = df["run_id"].to_numpy()
    return table


def _row(run: Result | pd.Series | dict) -> dict:
    return {**run.row(), "benchmarks": run.benchmarks} if isinstance(run, Result) else dict(run)


def same_architecture(run: Result | pd.Series | dict, baseline: Result | pd.Series | dict) -> bool:
    """True when ``run`` times the same network as ``baseline``: equal model and measure sections and no
    other compression, so only training changed (optimizer, augmentation, training precision...) and
    any latency difference between them is timing noise.

    Example:
        >>> a, b = Result(RunConfig(name="a")), Result(RunConfig(name="b").replace(**{"train.optimizer": "adam"}))
        >>> same_architecture(b, a), same_architecture(Result(RunConfig().replace(**{"model.width": 0.5})), a)
        (True, False)
    """
    a, b = _row(run), _row(baseline)
    keys = {k for k in (*a, *b) if k.startswith(("model.", "measure.")) or k in ("compress", "compress_steps")}
    return all(str(a.get(k)) == str(b.get(k)) for k in keys)


# How far apart separate timings of one network came out here, beyond their spreads (notebook 08's
# identical students, each timed in its own run, on a 2-core AMD EPYC): runs not timed together need this margin.
SEPARATE_TIMING_SPREAD = 1.55


def epoch_costs(history: Sequence[dict]) -> dict[str, float]:
    """The first epoch's seconds, a steady epoch's (the median of the later ones) and what the first
    cost beyond a steady one: compile, autotuning and warm-up, kept apart from steady-state speed.

    Example:
        >>> epoch_costs([{"seconds": 9.0}, {"seconds": 2.0}, {"seconds": 2.2}])
        {'first_epoch_seconds': 9.0, 'steady_epoch_seconds': 2.1, 'warmup_seconds': 6.9}
    """
    seconds = [h["seconds"] for h in history if "seconds" in h]
    if not seconds:
        return {}
    steady = float(np.median(seconds[1:])) if len(seconds) > 1 else seconds[0]
    return {
        "first_epoch_seconds": seconds[0],
        "steady_epoch_seconds": steady,
        "warmup_seconds": round(max(0.0, seconds[0] - steady), 6),
    }


def time_to_accuracy(history: Sequence[dict], target: float) -> dict[str, float | int | None]:
    """When a run's test accuracy first reached ``target`` (a fraction): the epoch and the training
    seconds so far (``elapsed_s``), or None for both where it never did.

    Example:
        >>> h = [{"epoch": 1, "test_accuracy": 0.5, "elapsed_s": 3.0}, {"epoch": 2, "test_accuracy": 0.93, "elapsed_s": 5.0}]
        >>> time_to_accuracy(h, 0.9), time_to_accuracy(h, 0.99)
        ({'epoch': 2, 'seconds': 5.0}, {'epoch': None, 'seconds': None})
    """
    hit = next((h for h in history if (h.get("test_accuracy") or 0) >= target), None)
    return {"epoch": hit["epoch"], "seconds": hit.get("elapsed_s")} if hit else {"epoch": None, "seconds": None}


def latency_comparison(
    run: Result | pd.Series | dict,
    baseline: Result | pd.Series | dict,
    *,
    batch_size: int | None = None,
    mode: str = "eager",
    device: str | None = None,
) -> dict[str, Any]:
    """``run``'s latency against ``baseline``'s at one batch size (default: the smallest both timed),
    mode and device (default: the first the records name): ``ratio`` (run / baseline),
    ``within_noise`` and ``text``, a phrase for a takeaway that prints a ratio only when the timing
    supports it. Runs timed together (``run_many``) differ beyond noise when their interquartile
    ranges do not overlap and neither is flagged noisy; runs timed separately must also differ by
    more than ``SEPARATE_TIMING_SPREAD``, since load between the two timings moves them.

    Example:
        >>> rec = lambda ms, q: [{"mode": "eager", "batch_size": 1, "latency_ms": ms, "latency_ms_q25": ms - q,
        ...                       "latency_ms_q75": ms + q, "noisy": False}]
        >>> base = Result(RunConfig(name="a"), benchmarks=rec(2.0, 0.1))
        >>> latency_comparison(Result(RunConfig(name="b"), benchmarks=rec(1.0, 0.1)), base)["text"]
        '0.50x the batch-1 latency'
        >>> latency_comparison(Result(RunConfig(name="c"), benchmarks=rec(2.1, 0.2)), base)["text"]
        'the same batch-1 latency within the timing noise (1.05x, the spreads overlap)'
    """

    def records(row):
        recs = [
            r for r in row.get("benchmarks") or [] if r.get("mode", "eager") == mode and r.get("latency_ms") is not None
        ]
        where = device or (str(recs[0].get("device", "cpu")).split(":")[0] if recs else "cpu")
        return {r["batch_size"]: r for r in recs if str(r.get("device", "cpu")).split(":")[0] == where}

    mine, theirs = records(_row(run)), records(_row(baseline))
    shared = sorted(set(mine) & set(theirs))
    if batch_size is None and shared:
        batch_size = shared[0]
    if batch_size not in mine or batch_size not in theirs:
        return {
            "ratio": float("nan"),
            "within_noise": True,
            "batch_size": batch_size,
            "text": f"no {mode} latency at batch {batch_size} for both runs",
        }
    a, b = mine[batch_size], theirs[batch_size]
    ratio = a["latency_ms"] / b["latency_ms"]
    overlap = a.get("latency_ms_q25", a["latency_ms"]) <= b.get("latency_ms_q75", b["latency_ms"]) and b.get(
        "latency_ms_q25", b["latency_ms"]
    ) <= a.get("latency_ms_q75", a["latency_ms"])
    noisy = bool(a.get("noisy") or b.get("noisy"))
    together = a.get("timed_with") is not None and a.get("timed_with") == b.get("timed_with")
    apart = not together and 1 / SEPARATE_TIMING_SPREAD < ratio < SEPARATE_TIMING_SPREAD
    what = f"batch-{batch_size} latency" + ("" if mode == "eager" else f" ({mode})")
    if noisy:
        text = f"no reliable {what} comparison: the machine was busy (noisy timing, {ratio:.2f}x); rerun on a quiet machine"
    elif overlap:
        text = f"the same {what} within the timing noise ({ratio:.2f}x, the spreads overlap)"
    elif apart:
        text = (
            f"the same {what} within the timing noise ({ratio:.2f}x, timed in separate runs, which differ by up to "
            f"{SEPARATE_TIMING_SPREAD:.2g}x here: time them together with run_many)"
        )
    else:
        text = f"{ratio:.2f}x the {what}"
    return {
        "ratio": ratio,
        "within_noise": noisy or overlap or apart,
        "batch_size": batch_size,
        "timed_together": together,
        "text": text,
    }


def compare(
    results: pd.DataFrame | Sequence[Result],
    baseline: str | int = 0,
    metrics: Sequence[str] | None = None,
) -> pd.DataFrame:
    """A tidy comparison table: one row per run, each metric with its delta and ratio to a baseline.

    ``baseline`` is a row position, a ``run_id`` or a ``name``. Deltas are ``value - baseline``;
    ratios are ``value / baseline`` (so a latency ratio of 0.5 means twice as fast). ``metrics``
    defaults to the schema's ``COMPARE_METRICS`` the rows have; a metric asked for by name that the
    rows lack is an error, never silently dropped. ``df.attrs["lower_is_better"]`` says, per metric,
    which way is an improvement. ``same_architecture`` marks the runs that time the baseline's own
    network (only training changed), where a latency difference can only be noise.

    Example:
        >>> rows = [Result(RunConfig(name="a"), {"accuracy": 0.9, "params": 100}),
        ...         Result(RunConfig(name="b"), {"accuracy": 0.8, "params": 50})]
        >>> t = compare(rows, baseline="a", metrics=["accuracy", "params"])
        >>> float(t.loc["b", "params_ratio"]), round(float(t.loc["b", "accuracy_delta"]), 3)
        (0.5, -0.1)
        >>> compare(rows, metrics=["latency_ms"])
        Traceback (most recent call last):
        ...
        ValueError: compare: no column 'latency_ms' in these results. Metrics they have: accuracy, params.
    """
    df = as_frame(results)
    base = df.iloc[baseline_index(df, baseline)]
    if metrics is None:
        metrics = [m for m in COMPARE_METRICS if m in df.columns]
    for m in metrics:
        if m not in df.columns:
            have = [c for c in df.columns if c in METRICS]
            raise ValueError(
                f"compare: no column '{m}' in these results. Metrics they have: {', '.join(have) or 'none'}."
            )
    out = pd.DataFrame(index=pd.Index(run_labels(df), name="run"))
    for m in metrics:
        values = pd.to_numeric(df[m], errors="coerce").to_numpy()
        b = pd.to_numeric(pd.Series([base[m]]), errors="coerce").iloc[0]
        out[m] = values
        out[f"{m}_delta"] = values - b
        out[f"{m}_ratio"] = values / b if b not in (0, None) and pd.notna(b) else float("nan")
    out["baseline"] = (df["run_id"] == base["run_id"]).to_numpy()
    # Only training changed: the same network is timed, so a latency ratio away from 1 is noise.
    out["same_architecture"] = [same_architecture(row, base) for _, row in df.iterrows()]
    out.attrs["lower_is_better"] = {m: METRICS[m].lower_is_better if m in METRICS else None for m in metrics}
    return out


def latency_key(key: str) -> tuple[str, str, int]:
    """A latency column's key (``cpu/eager/bs1``, as in ``cpu/eager/bs1_ms``) as (device, mode, batch size).

    Example:
        >>> latency_key("cuda/compiled/bs64")
        ('cuda', 'compiled', 64)
    """
    device, mode, batch = key.split("/")
    return device, mode, int(batch[2:])
