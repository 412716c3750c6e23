"""The speed-up ledger: every compressed variant beside its baseline, timed in each execution mode,
with a machine-written reason wherever a variant is not faster.

A smaller model is not automatically a faster one. Zeroed weights are still multiplied; int8 convs
run as float kernels plus quantize steps until ``torch.compile`` fuses them; a GPU at batch 1 waits
on kernel launches. The ledger puts the numbers in one table so that shows, and says why. The
reasons are decided from what the compression steps each run's config lists say of themselves (their
``family``, ``not_faster``, ``keeps_fake_quant``), and come as a tidy frame too (``why_not_faster``),
so nothing downstream parses text. Its charts are in ``report.charts``.

Example:
    >>> from workbench import Result, RunConfig
    >>> from workbench.compress import UnstructuredPrune
    >>> rec = lambda ms: [{"mode": "eager", "batch_size": 64, "latency_ms": ms, "device": "cpu", "device_name": "x86"}]
    >>> base = Result(RunConfig(name="fp32"), {"params": 100, "nonzero_params": 100, "flops": 200}, benchmarks=rec(2.0))
    >>> sparse = Result(RunConfig(name="sparse", compress=(UnstructuredPrune(0.8),)),
    ...                 {"params": 100, "nonzero_params": 20, "flops": 200}, benchmarks=rec(2.0))
    >>> why_not_faster([base, sparse])[["variant", "device", "mode", "batch_size", "reason"]].values.tolist()
    [['sparse', 'cpu', 'eager', 64, 'dense']]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..compress import QUANTIZATION, CompressStep
from ..measure import MEASURE_MODES
from ..measure.bench import NOISY_SPREAD
from ..tasks import get_task
from . import METRICS, Result, as_frame, baseline_index, latency_key, run_labels

COLUMNS = ("params", "nonzero_params", "size_bytes", "flops")  # the schema's metrics every table shows; then its task's
FASTER = 1.10  # a speed-up below this is "not faster": timing noise on a shared machine reaches several percent
SAME_FLOPS = 0.99  # FLOPs ratio at or above this = unchanged work

REASONS = {  # reason code -> text; {fields} are filled in from the measurements of that cell
    "noisy": (
        "too noisy to compare: these latencies vary by up to {spread:.0%} of their median{load}; "
        "rerun on a quiet machine"
    ),
    "slower": "slower beyond the timing spread, though it does no more work: timing noise or a busy machine",
    "within_spread": (
        "{speed:.2f}x, but inside the timing spread (the interquartile ranges overlap): not a real difference"
    ),
    "implausible": (
        "faster, though it does the same work at {size_ratio:.0%} of the size: timing noise or a busy machine? rerun"
    ),
    "fake_quant": "fake-quant model: convert first",
    "dense": "masked weights are still dense: use structured pruning",
    "int8_compile": "int8 kernels need torch.compile on this backend",
    "step": "{step_reason}",  # the step's own reason (CompressStep.not_faster)
    "int8_no_vnni": "int8 is not faster here: this CPU has no VNNI or AMX int8 instructions",
    "int8_small": (
        "int8 is not faster here although this CPU has {features} int8 instructions: "
        "the layers are too small to pay off"
    ),
    "gpu_bs1": "GPU under-used at batch 1",
    "weight_only": "weight-only int8/int4 dequantizes every call: it pays off only for memory-bound Linear layers",
    "cast_no_native": "{dtype} math is emulated on this CPU (no {needs}): cast on a GPU, or on a CPU that has it",
    "cast_small": "{dtype} runs natively on this CPU ({features}) but is not faster at this size",
    "overhead": "FLOPs fell but latency is bound by memory/overhead at this size",
    "same_work": "same FLOPs on dense kernels: nothing for this mode to skip",
}
REASON_COLUMNS = ["variant", "device", "mode", "batch_size", "reason", "text"]


def ledger(results: pd.DataFrame | Sequence[Result], baseline: str | int | None = None) -> pd.DataFrame:
    """One row per variant: costs and accuracy against the baseline, latency per (device, mode, batch) with
    speed-ups, and ``why_not_faster`` where a variant is not faster than the baseline in some mode.

    ``results`` is ``ResultStore.frame()`` or a list of ``Result``. The baseline is the row whose
    ``compress`` is ``"none"`` unless ``baseline`` names a row (position, run id or name). Latency
    columns read ``cpu/eager/bs1_ms``; speed-ups (baseline latency / latency, same column)
    ``cpu/eager/bs1_speedup``. ``df.attrs["device_names"]`` maps each device to its name and
    ``df.attrs["labels"]`` each metric column to its label and unit. The reasons, one row per
    (variant, device, mode, batch size), come from ``why_not_faster``.

    Example:
        >>> from workbench import Result, RunConfig
        >>> rec = lambda ms: [{"mode": "eager", "batch_size": 1, "latency_ms": ms, "device": "cpu",
        ...                    "device_name": "x86"}]
        >>> rows = [Result(RunConfig(name="base"), {"params": 100, "nonzero_params": 100, "flops": 200},
        ...                benchmarks=rec(2.0)),
        ...         Result(RunConfig(name="half"), {"params": 50, "nonzero_params": 50, "flops": 100},
        ...                benchmarks=rec(1.0))]
        >>> df = ledger(rows)
        >>> row = df.loc[1]
        >>> row["variant"], float(row["flops_ratio"]), float(row["cpu/eager/bs1_speedup"])
        ('half', 0.5, 2.0)
    """
    table, reasons = _ledger(results, baseline)
    grouped: dict[str, dict[str, list[str]]] = {}
    for r in reasons.itertuples():
        grouped.setdefault(r.variant, {}).setdefault(r.text, []).append(f"{r.device}/{r.mode}/bs{r.batch_size}")
    table["why_not_faster"] = [
        "; ".join(f"{text} ({', '.join(where)})" for text, where in grouped.get(v, {}).items())
        for v in table["variant"]
    ]
    return table


def why_not_faster(results: pd.DataFrame | Sequence[Result], baseline: str | int | None = None) -> pd.DataFrame:
    """The ledger's reasons as a tidy frame: one row per (variant, device, mode, batch size) where the
    variant is not clearly faster than the baseline, with a ``reason`` code (a key of ``REASONS``) and
    its ``text``. Where a variant is clearly faster there is no row.

    Example:
        >>> from workbench import Result, RunConfig
        >>> rec = lambda ms: [{"mode": "eager", "batch_size": 1, "latency_ms": ms, "device": "cpu"}]
        >>> rows = [Result(RunConfig(name="a"), {"flops": 10}, benchmarks=rec(1.0)),
        ...         Result(RunConfig(name="b"), {"flops": 10}, benchmarks=rec(1.0))]
        >>> why_not_faster(rows).loc[0, ["variant", "reason"]].tolist()
        ['b', 'same_work']
    """
    return _ledger(results, baseline)[1]


def reason_at(reasons: pd.DataFrame, variant: str, *, device: str, mode: str, batch_size: int) -> str:
    """From ``why_not_faster``'s frame: why ``variant`` is not clearly faster on ``device`` in ``mode`` at
    ``batch_size`` ("" where it is clearly faster, or was not measured there).

    Example:
        >>> reasons = pd.DataFrame([{"variant": "int8", "device": "cpu", "mode": "eager", "batch_size": 64,
        ...                          "reason": "int8_compile", "text": REASONS["int8_compile"]}])
        >>> reason_at(reasons, "int8", device="cpu", mode="eager", batch_size=64)
        'int8 kernels need torch.compile on this backend'
        >>> reason_at(reasons, "int8", device="cpu", mode="compiled", batch_size=64)
        ''
    """
    hit = reasons[
        (reasons["variant"] == variant)
        & (reasons["device"] == device)
        & (reasons["mode"] == mode)
        & (reasons["batch_size"] == batch_size)
    ]
    return str(hit["text"].iloc[0]) if len(hit) else ""


# ---------------------------------------------------------------------------------------------
# Internals


def _ledger(results: pd.DataFrame | Sequence[Result], baseline: str | int | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    try:
        df = as_frame(results)
    except ValueError:
        raise ValueError("The ledger needs results: run some variants first (workbench.run).") from None
    base = baseline_index(df, baseline)
    out = pd.DataFrame(
        {
            "variant": run_labels(df),
            "compress": df["compress"].astype(str) if "compress" in df else "none",
        }
    )
    tasks = [get_task(t) for t in dict.fromkeys(df.get("task", ["image"]))]
    columns = list(dict.fromkeys([*COLUMNS, *(m for t in tasks for m in t.ledger_metrics)]))
    for m in columns:
        out[m] = pd.to_numeric(df[m], errors="coerce") if m in df else np.nan
    if "accuracy" in columns:
        out["accuracy_delta"] = out["accuracy"] - out.loc[base, "accuracy"]
    if "perplexity" in columns:
        out["perplexity_change"] = out["perplexity"] / out.loc[base, "perplexity"] - 1
    out["size_ratio"] = out["size_bytes"] / out.loc[base, "size_bytes"]
    out["flops_ratio"] = out["flops"] / out.loc[base, "flops"]

    cells = [_cells(recs) for recs in df.get("benchmarks", pd.Series([[]] * len(df)))]
    keys = sorted({k for c in cells for k in c}, key=_column_order)
    for key in keys:
        out[f"{key}_ms"] = [c[key]["latency_ms"] if key in c else np.nan for c in cells]
    for key in keys:
        out[f"{key}_speedup"] = out.loc[base, f"{key}_ms"] / out[f"{key}_ms"]
    steps = [_steps(s) for s in df["compress_steps"]] if "compress_steps" in df else [[] for _ in range(len(df))]
    reasons = [
        {
            "variant": out.loc[i, "variant"],
            **dict(zip(("device", "mode", "batch_size"), latency_key(key))),
            "reason": why,
            "text": text,
        }
        for i in range(len(out))
        if i != base
        for key, why, text in _why(out.loc[i], steps[i], cells[i], cells[base], keys)
    ]
    out.attrs["baseline"] = out.loc[base, "variant"]
    # Axis labels with units, from the schema.
    out.attrs["labels"] = {m: METRICS[m].axis_label for m in columns if m in METRICS}
    out.attrs["device_names"] = {k.split("/")[0]: c[k].get("device_name", "") for c in cells for k in c}
    # Per variant and column: (q25, q75, noisy), for spread bars and noisy marks in the charts.
    out.attrs["spreads"] = {
        out.loc[i, "variant"]: {
            f"{k}_ms": (
                r.get("latency_ms_q25", r["latency_ms"]),
                r.get("latency_ms_q75", r["latency_ms"]),
                bool(r.get("relative_spread", 0.0) > NOISY_SPREAD),
            )
            for k, r in c.items()
        }
        for i, c in enumerate(cells)
    }
    return out, pd.DataFrame(reasons, columns=REASON_COLUMNS)


def _steps(dicts: Any) -> list[CompressStep]:
    return [CompressStep.from_dict(d) for d in dicts] if isinstance(dicts, (list, tuple)) else []


def _cells(records: Any) -> dict[str, dict[str, Any]]:
    """Benchmark records keyed ``device/mode/bsN`` (records that were skipped or lack a latency are left out).
    A language model's decoding with the KV cache is a cell too, mode ``decode`` (``decode_compiled``...),
    its latency the milliseconds of one decoding step, so the same comparisons and reasons apply to it."""
    out = {}
    records = list(records) if isinstance(records, (list, tuple)) else []
    for r in records:
        if r.get("kind") == "generation":
            if not r.get("kv_cache"):
                continue
            r = _decode_cell(r, records)
        if r.get("latency_ms") is None or not np.isfinite(r["latency_ms"]):
            continue
        out[f"{str(r.get('device', 'cpu')).split(':')[0]}/{r.get('mode', 'eager')}/bs{r['batch_size']}"] = r
    return out


def _decode_cell(r: dict[str, Any], records: list[dict[str, Any]]) -> dict[str, Any]:
    """A generation record as a latency cell: ms per decoding step of the whole batch (quartiles swap: the
    fastest rate is the shortest step), with the machine facts the run's other records on that device carry."""
    ms, q25, q75 = (
        r["batch_size"] * 1e3 / tps if tps else float("inf")
        for tps in (r["decode_tps"], r.get("decode_tps_q75"), r.get("decode_tps_q25"))
    )
    facts = next((o for o in records if o.get("device") == r.get("device") and "cpu_features" in o), {})
    return {
        **{k: facts[k] for k in ("device_name", "cpu_features") if k in facts},
        **r,
        "mode": "decode" if r["mode"] == "eager" else f"decode_{r['mode']}",
        "latency_ms": ms,
        "latency_ms_q25": q25,
        "latency_ms_q75": q75,
        "relative_spread": (q75 - q25) / ms if np.isfinite(q75) and ms else 0.0,
    }


def _column_order(key: str) -> tuple:
    device, mode, bs = latency_key(key)
    order = list(MEASURE_MODES)
    return device, order.index(mode) if mode in order else len(order), mode, bs


def _clearly_faster(cell: dict[str, Any], base: dict[str, Any]) -> bool:
    """Faster by ``FASTER`` and beyond the timing noise: the interquartile ranges do not overlap."""
    speedup = base["latency_ms"] / cell["latency_ms"]
    q75, base_q25 = cell.get("latency_ms_q75", cell["latency_ms"]), base.get("latency_ms_q25", base["latency_ms"])
    return speedup >= FASTER and q75 < base_q25


def _clearly_slower(cell: dict[str, Any], base: dict[str, Any]) -> bool:
    return _clearly_faster(base, cell)


def _why(
    row: pd.Series, steps: list[CompressStep], cells: dict, base_cells: dict, keys: list[str]
) -> list[tuple[str, str, str]]:
    """(cell key, reason code, text) for every measured cell where ``row`` is not clearly faster than the
    baseline, or is faster in a way its method cannot explain. Causes are read off the measurements:
    the timing spread, the work and size the method changed, the CPU features the records carry."""
    families = {s.family for s in steps}
    fake_quant = any(s.keeps_fake_quant() for s in steps)
    slows_down = fake_quant or bool(families & set(QUANTIZATION))  # quantize/dequantize or cast steps cost time
    same_work = row["flops_ratio"] >= SAME_FLOPS and "int8" not in families
    step_reason = next((s.not_faster for s in steps if s.not_faster), "")
    out = []
    for key in keys:
        if key not in cells or key not in base_cells:
            continue
        cell, base = cells[key], base_cells[key]
        device, mode, bs = latency_key(key)
        spread = max(cell.get("relative_spread", 0.0), base.get("relative_spread", 0.0))
        facts = {
            "spread": spread,
            "load": _load(cell, base),
            "size_ratio": row["size_ratio"],
            "speed": base["latency_ms"] / cell["latency_ms"],
            "features": "/".join(cell.get("cpu_features", [])) or "no listed",
            "step_reason": step_reason,
        }
        if spread > NOISY_SPREAD:
            why = "noisy"
        elif _clearly_faster(cell, base):
            if not same_work or row["size_ratio"] < 0.9:
                continue
            why = "implausible"
        elif _clearly_slower(cell, base) and not slows_down:
            why = "slower"
        elif not _clearly_slower(cell, base) and not 1 / FASTER < facts["speed"] < FASTER:
            why = "within_spread"  # a ratio that looks like a change, from timings that overlap
        elif fake_quant:
            why = "fake_quant"
        elif "sparsity" in families and row["flops_ratio"] >= SAME_FLOPS:
            why = "dense"
        elif step_reason:
            why = "step"
        elif "int8" in families:
            # Compare compiled with compiled where the baseline has it: compiling speeds up float32 too.
            compiled = f"{device}/compiled/bs{bs}"
            ref = base_cells.get(compiled, base)
            if mode == "eager" and compiled in cells and _clearly_faster(cells[compiled], ref):
                why = "int8_compile"
            else:
                why = "int8_small" if {"vnni", "amx"} & set(cell.get("cpu_features", [])) else "int8_no_vnni"
        elif device == "cuda" and bs == 1:
            why = "gpu_bs1"
        elif "weight-only" in families:
            why = "weight_only"
        elif "cast" in families and device == "cpu":
            dtype = next(s.dtype for s in steps if s.family == "cast")  # a cast step names its dtype
            needs = {"bf16": {"avx512_bf16", "amx"}, "fp16": {"amx_fp16"}}[dtype]
            has = needs & set(cell.get("cpu_features", []))
            why = "cast_small" if has else "cast_no_native"
            facts.update(dtype=dtype, needs="/".join(sorted(needs)), features="/".join(sorted(has)))
        elif row["flops_ratio"] < SAME_FLOPS:
            why = "overhead"
        else:
            why = "same_work"
        out.append((key, why, REASONS[why].format(**facts)))
    return out


def _load(cell: dict[str, Any], base: dict[str, Any]) -> str:
    loads = [r.get("load_average") for r in (cell, base) if r.get("load_average") is not None]
    return f" (the machine's load average was {max(loads):.1f})" if loads else ""


def ablation(results: pd.DataFrame | Sequence[Result], baseline: str = "speedrun") -> pd.DataFrame:
    """What each part of a recipe bought: one row per ``"no <part>"`` variant (``presets.without_each_part``)
    against the ``baseline`` runs (Results, or ``run_many``'s rows), each the mean over the runs of that
    name (seeds). ``accuracy_bought`` is the baseline's accuracy minus the variant's (points; > 0: the
    part helped); ``seconds_bought`` its training seconds saved (> 0: the part made training faster).
    Test-time augmentation costs evaluation, not training: its seconds are the same training.

    Example:
        >>> from workbench import Result, RunConfig
        >>> rows = [Result(RunConfig(name=n), {"accuracy": a, "train_seconds": s}) for n, a, s in
        ...         [("speedrun", 0.90, 10.0), ("speedrun", 0.92, 12.0), ("no muon", 0.85, 11.0)]]
        >>> ablation(rows)[["part", "accuracy_bought", "seconds_bought", "runs"]].values.tolist()
        [['muon', 6.0, 0.0, 1]]
    """
    frame = as_frame(results)
    if baseline not in set(frame.get("name", ())):
        raise ValueError(
            f"no run named '{baseline}' among the results: name the recipe's runs so (RunConfig(name=...))"
        )
    mean = frame.groupby("name").agg(
        accuracy=("accuracy", "mean"), train_seconds=("train_seconds", "mean"), runs=("accuracy", "size")
    )
    base = mean.loc[baseline]
    rows = [
        {
            "part": name.removeprefix("no "),
            "accuracy": row.accuracy,
            "accuracy_bought": round(100 * (base.accuracy - row.accuracy), 6),
            "train_seconds": row.train_seconds,
            "seconds_bought": round(row.train_seconds - base.train_seconds, 6),
            "runs": int(row.runs),
        }
        for name, row in mean.iterrows()
        if name.startswith("no ")
    ]
    out = pd.DataFrame(rows, columns=["part", "accuracy", "accuracy_bought", "train_seconds", "seconds_bought", "runs"])
    out.attrs.update(
        baseline=baseline,
        baseline_accuracy=float(base.accuracy),
        baseline_seconds=float(base.train_seconds),
        baseline_runs=int(base.runs),
        **{k: sorted(frame[k].dropna().astype(str).unique()) for k in ("train_device", "data.dataset") if k in frame},
    )
    return out.sort_values("accuracy_bought", ascending=False, ignore_index=True)
