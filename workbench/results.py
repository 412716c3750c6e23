"""One run = one ``Result`` row; rows are appended to a ``ResultStore`` and read back as a DataFrame.

The store is append-only: every row is its own JSON file, written to a temporary name, flushed and
renamed into place, so a crash mid-write can never corrupt a row written before it. Nothing is ever
rewritten.

Example:
    >>> import tempfile
    >>> store = ResultStore(tempfile.mkdtemp())
    >>> r = Result(config=RunConfig(), metrics={"accuracy": 0.9})
    >>> _ = store.append(r)
    >>> store.frame()[["model.name", "accuracy"]].values.tolist()
    [['cnn', 0.9]]
"""
from __future__ import annotations

import json
import math
import os
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import pandas as pd

from .config import RunConfig

DEFAULT_RUNS_DIR = "runs"


@dataclass
class Result:
    """A run's config, its metrics (accuracy, size, speed... each with the device it was measured on),
    its per-epoch training history and per-batch-size benchmark records."""

    config: RunConfig
    metrics: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    benchmarks: list[dict[str, Any]] = field(default_factory=list)
    run_id: str = field(default_factory=lambda: time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6])
    created: float = field(default_factory=time.time)
    status: str = "ok"  # ok, or why the run stopped early (e.g. "nan-loss")
    checkpoint: str | None = None  # path of the trained weights (state_dict), when saved

    def row(self) -> dict[str, Any]:
        """The flat row: run fields, config fields (dotted), then metrics."""
        return {
            "run_id": self.run_id,
            "name": self.config.name or self.config.model.name,
            "created": pd.Timestamp(self.created, unit="s"),
            "status": self.status,
            "config_hash": self.config.config_hash(),
            **{k: v for k, v in self.config.flat().items() if k != "name"},
            **self.metrics,
            "checkpoint": self.checkpoint,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "created": self.created,
            "status": self.status,
            "checkpoint": self.checkpoint,
            "config": self.config.to_dict(),
            "metrics": _jsonable(self.metrics),
            "history": _jsonable(self.history),
            "benchmarks": _jsonable(self.benchmarks),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Result":
        return cls(
            config=RunConfig.from_dict(d["config"]),
            metrics=d.get("metrics", {}),
            history=d.get("history", []),
            benchmarks=d.get("benchmarks", []),
            run_id=d["run_id"],
            created=d["created"],
            status=d.get("status", "ok"),
            checkpoint=d.get("checkpoint"),
        )

    def __repr__(self) -> str:
        shown = {k: self.metrics[k] for k in ("accuracy", "params", "size_bytes", "latency_ms") if k in self.metrics}
        return f"Result({self.run_id}, {self.config.name or self.config.model.name}, status={self.status}, {shown})"


def _jsonable(obj: Any) -> Any:
    """NaN/inf become None so the files stay strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):  # numpy / torch scalars
        return _jsonable(obj.item())
    return obj


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` so readers see either nothing or the whole file, never a half-written one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class ResultStore:
    """Append-only result rows under ``root`` (default ``runs/``), one JSON file per run."""

    def __init__(self, root: str | os.PathLike = DEFAULT_RUNS_DIR):
        self.root = Path(root)
        self.rows_dir = self.root / "results"

    def append(self, result: Result) -> Path:
        path = self.rows_dir / f"{result.run_id}.json"
        if path.exists():
            raise FileExistsError(f"Result {result.run_id} is already stored at {path}; the store is append-only.")
        atomic_write_text(path, json.dumps(result.to_dict(), indent=1))
        return path

    def results(self) -> list[Result]:
        """Every stored result, oldest first. Stray temporary files from a crash are ignored."""
        if not self.rows_dir.exists():
            return []
        out = [Result.from_dict(json.loads(p.read_text())) for p in sorted(self.rows_dir.glob("*.json"))]
        return sorted(out, key=lambda r: r.created)

    def get(self, run_id: str) -> Result:
        path = self.rows_dir / f"{run_id}.json"
        if not path.exists():
            known = [p.stem for p in sorted(self.rows_dir.glob("*.json"))][-5:]
            raise KeyError(f"No result '{run_id}' in {self.rows_dir}. Latest ids: {', '.join(known) or 'none'}.")
        return Result.from_dict(json.loads(path.read_text()))

    def frame(self) -> pd.DataFrame:
        return results_frame(self.results())

    def checkpoint_path(self, run_id: str) -> Path:
        return self.root / "checkpoints" / f"{run_id}.pt"

    def __len__(self) -> int:
        return len(list(self.rows_dir.glob("*.json"))) if self.rows_dir.exists() else 0


def results_frame(results: Iterable[Result]) -> pd.DataFrame:
    """Results as a DataFrame, one row per run; ``history`` and ``benchmarks`` stay as list columns."""
    rows = []
    for r in results:
        rows.append({**r.row(), "history": r.history, "benchmarks": r.benchmarks})
    return pd.DataFrame(rows)


# Metrics where a smaller value is better: a delta's sign means "better" differently for these.
LOWER_IS_BETTER = ("loss", "params", "nonzero_params", "size_bytes", "flops", "latency_ms", "peak_memory_bytes", "train_seconds")
COMPARE_METRICS = ("accuracy", "params", "nonzero_params", "size_bytes", "flops", "latency_ms", "throughput_ips", "train_seconds")


def compare(
    results: pd.DataFrame | Sequence[Result],
    baseline: str | int = 0,
    metrics: Sequence[str] = COMPARE_METRICS,
) -> pd.DataFrame:
    """A tidy comparison table: one row per run, each metric with its delta and ratio to a baseline.

    ``baseline`` is a row position, a ``run_id`` or a ``name``. Deltas are ``value - baseline``;
    ratios are ``value / baseline`` (so a latency ratio of 0.5 means twice as fast).

    Example:
        >>> rows = [Result(RunConfig(name="a"), {"accuracy": 0.9, "params": 100}),
        ...         Result(RunConfig(name="b"), {"accuracy": 0.8, "params": 50})]
        >>> t = compare(rows, baseline="a", metrics=["accuracy", "params"])
        >>> float(t.loc["b", "params_ratio"]), round(float(t.loc["b", "accuracy_delta"]), 3)
        (0.5, -0.1)
    """
    df = results if isinstance(results, pd.DataFrame) else results_frame(results)
    if df.empty:
        raise ValueError("Nothing to compare: the results are empty. Run something first (workbench.run).")
    df = df.reset_index(drop=True)
    if isinstance(baseline, int):
        if not 0 <= baseline < len(df):
            raise ValueError(f"baseline row {baseline} is out of range: there are {len(df)} rows.")
        base = df.iloc[baseline]
    else:
        match = df[(df["run_id"] == baseline) | (df["name"] == baseline)]
        if match.empty:
            raise ValueError(f"No run with id or name '{baseline}'. Names: {', '.join(map(str, df['name'].unique()))}.")
        base = match.iloc[0]
    present = [m for m in metrics if m in df.columns]
    out = pd.DataFrame(index=df["name"].astype(str).where(~df["name"].duplicated(keep=False), df["name"] + " (" + df["run_id"] + ")"))
    out.index.name = "run"
    for m in present:
        values = pd.to_numeric(df[m], errors="coerce").to_numpy()
        b = pd.to_numeric(pd.Series([base[m]]), errors="coerce").iloc[0]
        out[m] = values
        out[f"{m}_delta"] = values - b
        out[f"{m}_ratio"] = values / b if b not in (0, None) and pd.notna(b) else float("nan")
    out["baseline"] = (df["run_id"] == base["run_id"]).to_numpy()
    return out
