"""Rows side by side: readable tables, a baseline's deltas and ratios, latencies measured together,
epoch costs and time to an accuracy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..tasks import get_task
from .metrics import METRICS
from .store import (
    Result,
    as_frame,
)


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


TABLE_METRICS = get_task("image").table_metrics  # an image classifier's; task_metrics() answers per task


def task_metrics(df: pd.DataFrame, kind: str = "table") -> list[str]:
    """The metrics the rows' tasks show (``kind`` table: a few; compare: more) that the rows have, in order:
    accuracy and images/s for image classifiers, loss, perplexity and tokens/s for language models.

    Example:
        >>> task_metrics(pd.DataFrame({"task": ["lm"], "loss": [1.5], "accuracy": [0.4], "params": [9]}))
        ['loss', 'params']
    """
    tasks = df["task"].dropna().unique() if "task" in df else ["image"]  # rows stored before tasks: images
    names = [m for t in tasks for m in getattr(get_task(t), f"{kind}_metrics")]
    return [m for m in dict.fromkeys(names) if m in df.columns]


def readable(
    results: pd.DataFrame | Sequence[Result],
    metrics: Sequence[str] | None = None,
    fields: dict[str, str] | None = None,
) -> pd.DataFrame:
    """A results table for people: the run's label, a few config fields, then metrics in the units of
    the schema (accuracy in %, size in KiB) with the unit in each header (``metrics``: the rows' tasks'
    ``table_metrics``); the latency header names
    its batch size, and a ``timing`` column says where a latency is too noisy to trust.

    Example:
        >>> from workbench import Result, RunConfig
        >>> rows = [Result(RunConfig(name="a"), {"accuracy": 0.9, "size_bytes": 2048})]
        >>> list(readable(rows, metrics=["accuracy", "size_bytes"]).columns)
        ['run', 'model', 'dataset', 'compression', 'test accuracy (%)', 'model size on disk (KiB)', 'run id']
    """
    df = as_frame(results)
    metrics = task_metrics(df) if metrics is None else metrics
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
        >>> from workbench import Result, RunConfig
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
        >>> h = [{"epoch": 1, "test_accuracy": 0.5, "elapsed_s": 3.0},
        ...      {"epoch": 2, "test_accuracy": 0.93, "elapsed_s": 5.0}]
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
        >>> from workbench import Result, RunConfig
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
        text = (
            f"no reliable {what} comparison: the machine was busy (noisy timing, {ratio:.2f}x); "
            "rerun on a quiet machine"
        )
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
    ratios are ``value / baseline`` (so a latency ratio of 0.5 means twice as fast). Language-model rows get
    ``same_text``: False where a run saw another text than the baseline (another corpus, or another Python's
    standard library), so its loss does not compare. ``metrics``
    defaults to the ``compare_metrics`` of the rows' tasks that the rows have; a metric asked for by name that the
    rows lack is an error, never silently dropped. ``df.attrs["lower_is_better"]`` says, per metric,
    which way is an improvement. ``same_architecture`` marks the runs that time the baseline's own
    network (only training changed), where a latency difference can only be noise.

    Example:
        >>> from workbench import Result, RunConfig
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
        metrics = task_metrics(df, "compare")
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
    if "text_sha256" in df:  # language models: losses on another text (another Python's library) do not compare
        out["same_text"] = (df["text_sha256"] == base["text_sha256"]).to_numpy()
    # Only training changed: the same network is timed, so a latency ratio away from 1 is noise.
    out["same_architecture"] = [same_architecture(row, base) for _, row in df.iterrows()]
    out.attrs["lower_is_better"] = {m: METRICS[m].lower_is_better if m in METRICS else None for m in metrics}
    return out
