"""One run = one ``Result`` row; rows are appended to a ``ResultStore`` and read back as a DataFrame.

The store is append-only: every row is its own JSON file, written atomically (temporary file, fsync,
rename), so a crash mid-write can never corrupt a row written before it. Nothing is ever rewritten.
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

import pandas as pd
import torch

from .._errors import ConfigError, one_line
from .._files import atomic_write_text, writable_problem
from ..config import RunConfig

DEFAULT_RUNS_DIR = "runs"


PATH_FIELDS = ("checkpoint", "trained_checkpoint")  # stored relative to the store's root


class DamagedRow(ValueError):
    """A result row file that cannot be read."""


class DamagedRowWarning(UserWarning):
    """A damaged row file was skipped while reading a store."""


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
