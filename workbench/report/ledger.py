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
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..compress import QUANTIZATION, CompressStep
from ..measure import MEASURE_MODES
from ..measure.bench import NOISY_SPREAD
from ..tasks import get_task
from . import METRICS, Result, as_frame, baseline_index, latency_key, run_labels
from .cells import timing_cells
from .roofline import cell_point

COLUMNS = ("params", "nonzero_params", "size_bytes", "flops")  # the schema's metrics every table shows; then its task's
FASTER = 1.10  # a speed-up below this is "not faster": timing noise on a shared machine reaches several percent
SAME_FLOPS = 0.99  # FLOPs ratio at or above this = unchanged work

RULE = "rule (no diagnostic ran): "  # where no measurement decided a reason, its text starts so
REASONS = {  # reason code -> text; {fields} are filled in from the measurements of that cell
    "noisy": (
        "too noisy to compare: these latencies vary by up to {spread:.0%} of their median{load}; "
        "rerun on a quiet machine"
    ),
    "slower": (
        "{speed:.2f}x: slower beyond the timing spread, though it does no more work (FLOPs {flops_ratio:.2f}x): "
        "timing noise or a busy machine{load}"
    ),
    "within_spread": (
        "{speed:.2f}x, but inside the timing spread (the interquartile ranges overlap): not a real difference"
    ),
    "implausible": (
        "{speed:.2f}x faster, though it does the same work (FLOPs {flops_ratio:.2f}x) at {size_ratio:.0%} of the "
        "size: timing noise or a busy machine? rerun"
    ),
    "fake_quant": (
        "fake-quant model: quantize/dequantize steps take {quantize:.0%} of an eager forward (profile, batch "
        "{profile_batch}) on top of float arithmetic: convert first"
    ),
    "fake_quant_rule": RULE + "a fake-quant model simulates int8 in float32: convert first",
    "dense": (
        "masked weights are still dense: {zeros:.0%} of the weights are zero but the counted FLOPs are "
        "{flops_ratio:.2f}x the baseline's: use structured pruning"
    ),
    "int8_compile": (
        "{speed:.2f}x eager but {compiled_speed:.2f}x compiled: int8 kernels need torch.compile on this backend"
    ),
    "step": RULE + "{step_reason}",  # the step's own note (CompressStep.not_faster)
    "int8_kernels_slow": (
        "{kernel} products at this model's layer shapes run {matmul:.2f}x float32 on this CPU (micro-benchmark "
        "of its int8 kernels, threads: {threads}): no int8 arithmetic to gain here"
    ),
    "int8_overhead": (
        "{kernel} products at this model's layer shapes run {matmul:.2f}x float32 here, but an eager forward spends "
        "{quantize:.0%} in quantize/dequantize, {layout:.0%} in layout conversions and {overhead:.0%} in "
        "framework overhead (baseline: {base_layout:.0%}, {base_overhead:.0%}; profile, batch {profile_batch})"
    ),
    "int8_no_vnni": RULE + "int8 is not faster here: this CPU has no VNNI or AMX int8 instructions",
    "int8_small": RULE + "this CPU has {features} int8 instructions, but the layers may be too small to pay off",
    "gpu_bs1": RULE + "a GPU at batch 1 waits on kernel launches",
    "weight_only": (
        "weight-only int8/int4 dequantizes its weights every call: quantize/dequantize and layout steps take "
        "{quantize_layout:.0%} of an eager forward (baseline {base_quantize_layout:.0%}; profile, batch "
        "{profile_batch}); it pays off only where reading the weights bounds the time"
    ),
    "weight_only_rule": (
        RULE + "weight-only int8/int4 dequantizes every call: it pays off only for memory-bound Linear layers"
    ),
    "cast_kernels_slow": (
        "{dtype} products at this model's layer shapes run {matmul:.2f}x float32 on this CPU (micro-benchmark, "
        "threads: {threads}; {native})"
    ),
    "cast_overhead": (
        "{dtype} products at this model's layer shapes run {matmul:.2f}x float32 here, but an eager forward "
        "spends {layout:.0%} in conversions and {overhead:.0%} in framework overhead (profile, batch "
        "{profile_batch})"
    ),
    "cast_no_native": RULE + "{dtype} math is emulated on this CPU (no {needs}): cast on a GPU, or a CPU that has it",
    "cast_small": RULE + "{dtype} runs natively on this CPU ({features}) but is not faster at this size",
    "overhead": (
        "FLOPs {flops_ratio:.2f}x but latency {latency_ratio:.2f}x: at {achieved_gflops:.2g} GFLOP/s the call "
        "reaches {share:.0%} of its roofline bound ({bound_gflops:.3g} GFLOP/s at {intensity:.3g} FLOP/byte): "
        "overhead-bound, so fewer FLOPs buy little"
    ),
    "memory_bound": (
        "FLOPs {flops_ratio:.2f}x but latency {latency_ratio:.2f}x: at {intensity:.3g} FLOP/byte, left of the "
        "ridge ({ridge:.3g}), the call is memory-bound ({share:.0%} of the bandwidth roof) and its bytes "
        "moved fell only to {bytes_ratio:.2f}x"
    ),
    "compute_bound": (
        "FLOPs {flops_ratio:.2f}x but latency {latency_ratio:.2f}x: compute-bound at {share:.0%} of the roof, "
        "its kernels run the smaller shapes at {achieved_gflops:.3g} GFLOP/s against the baseline's "
        "{base_gflops:.3g}"
    ),
    "flops_rule": RULE + "FLOPs fell but latency is bound by memory or overhead at this size",
    "same_work": "same FLOPs ({flops_ratio:.2f}x, counted) on dense kernels: nothing for this mode to skip",
}
REASON_COLUMNS = ["variant", "device", "mode", "batch_size", "reason", "text", "regime", "intensity", "achieved_gflops"]


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
        ...                          "reason": "int8_compile", "text": "0.50x eager but 2.00x compiled"}])
        >>> reason_at(reasons, "int8", device="cpu", mode="eager", batch_size=64)
        '0.50x eager but 2.00x compiled'
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

    cells = [timing_cells(recs) for recs in df.get("benchmarks", pd.Series([[]] * len(df)))]
    keys = sorted({k for c in cells for k in c}, key=_column_order)
    for key in keys:
        out[f"{key}_ms"] = [c[key]["latency_ms"] if key in c else np.nan for c in cells]
    for key in keys:
        out[f"{key}_speedup"] = out.loc[base, f"{key}_ms"] / out[f"{key}_ms"]
    steps = [_steps(s) for s in df["compress_steps"]] if "compress_steps" in df else [[] for _ in range(len(df))]
    measured = [Measured(df.iloc[i], cells[i]) for i in range(len(df))]
    reasons = [
        {
            "variant": out.loc[i, "variant"],
            **dict(zip(("device", "mode", "batch_size"), latency_key(key))),
            "reason": why,
            "text": text,
            **{k: (point or {}).get(k) for k in ("regime", "intensity", "achieved_gflops")},
        }
        for i in range(len(out))
        if i != base
        for key, why, text, point in _why(out.loc[i], steps[i], measured[i], measured[base], keys)
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


@dataclass
class Measured:
    """What was measured of one run, for its reasons: its row (metrics and diagnostics) and timing cells."""

    row: pd.Series
    cells: dict[str, dict[str, Any]]

    @property
    def diagnostics(self) -> dict[str, Any]:
        d = self.row.get("diagnostics")
        return d if isinstance(d, dict) else {}

    def point(self, key: str) -> dict[str, Any] | None:
        return cell_point(self.row, self.cells[key]) if key in self.cells else None

    def shares(self, mode: str, batch_size: int) -> dict[str, float]:
        """The eager profile's time shares at this batch size (a decode step: the smallest batch profiled),
        with the batch size it ran at; empty where no profile ran."""
        profiles = self.diagnostics.get("profile") or {}
        if not profiles:
            return {}
        key = f"bs{batch_size}"
        if key not in profiles or mode.startswith("decode"):
            key = min(profiles, key=lambda k: profiles[k]["batch_size"])
        return {**profiles[key]["shares"], "profile_batch": profiles[key]["batch_size"]}

    def matmul(self, kind: str, mode: str, batch_size: int) -> float | None:
        by_cell = self.diagnostics.get("matmul", {}).get(kind, {})
        return by_cell.get(f"decode/bs{batch_size}" if mode.startswith("decode") else f"bs{batch_size}")


def _why(
    row: pd.Series, steps: list[CompressStep], run: Measured, base_run: Measured, keys: list[str]
) -> list[tuple[str, str, str, dict[str, Any] | None]]:
    """(cell key, reason code, text, roofline point) for every measured cell where ``row`` is not clearly
    faster than the baseline, or is faster in a way its method cannot explain. Each reason is decided by a
    measurement and its text carries the numbers: the timing spread, the counted work and size, the same
    variant compiled, its int8/bf16 products at the model's layer shapes, its operator profile, and its
    point on the roofline. Where no diagnostic ran, the text says its reason is a rule."""
    step_reason = next((s.not_faster for s in steps if s.not_faster), "")
    out = []
    for key in keys:
        if key not in run.cells or key not in base_run.cells:
            continue
        cell, base = run.cells[key], base_run.cells[key]
        _, mode, bs = latency_key(key)
        shares, base_shares = run.shares(mode, bs), base_run.shares(mode, bs)
        point, base_point = run.point(key), base_run.point(key)
        spread = max(cell.get("relative_spread", 0.0), base.get("relative_spread", 0.0))
        facts = {
            "spread": spread,
            "load": _load(cell, base),
            "size_ratio": row["size_ratio"],
            "flops_ratio": row["flops_ratio"],
            "speed": base["latency_ms"] / cell["latency_ms"],
            "latency_ratio": cell["latency_ms"] / base["latency_ms"],
            "features": "/".join(cell.get("cpu_features", [])) or "no listed",
            "step_reason": step_reason,
            "threads": cell.get("threads", "?"),
            **shares,
            **{f"base_{k}": v for k, v in base_shares.items()},
        }
        if shares:
            facts["quantize_layout"] = shares["quantize"] + shares["layout"]
        if base_shares:
            facts["base_quantize_layout"] = base_shares["quantize"] + base_shares["layout"]
        why = _decide(row, steps, key, run, base_run, facts)
        if why is None:
            continue
        if why in ("overhead", "memory_bound", "compute_bound"):
            facts.update(
                point, bytes_ratio=point["bytes"] / base_point["bytes"], base_gflops=base_point["achieved_gflops"]
            )
        out.append((key, why, REASONS[why].format(**facts), point))
    return out


def _decide(
    row: pd.Series, steps: list[CompressStep], key: str, run: Measured, base_run: Measured, facts: dict[str, Any]
) -> str | None:
    """The reason code of one cell (None: clearly faster, as its method explains); fills ``facts`` with
    the numbers of the diagnostic that decided it."""
    device, mode, bs = latency_key(key)
    cell, base = run.cells[key], base_run.cells[key]
    families = {s.family for s in steps}
    fake_quant = any(s.keeps_fake_quant() for s in steps)
    slows_down = fake_quant or bool(families & set(QUANTIZATION))  # quantize/dequantize or cast steps cost time
    same_work = row["flops_ratio"] >= SAME_FLOPS and "int8" not in families
    if facts["spread"] > NOISY_SPREAD:
        return "noisy"
    if _clearly_faster(cell, base):
        return "implausible" if same_work and row["size_ratio"] >= 0.9 else None
    if _clearly_slower(cell, base) and not slows_down:
        return "slower"
    if not _clearly_slower(cell, base) and not 1 / FASTER < facts["speed"] < FASTER:
        return "within_spread"  # a ratio that looks like a change, from timings that overlap
    profiled = "quantize" in facts
    if fake_quant:
        return "fake_quant" if profiled else "fake_quant_rule"
    if "sparsity" in families and row["flops_ratio"] >= SAME_FLOPS:
        facts["zeros"] = 1 - row["nonzero_params"] / row["params"] if row["params"] else 0.0
        return "dense"
    if facts["step_reason"]:
        return "step"
    if "int8" in families:
        # Compare compiled with compiled where the baseline has it: compiling speeds up float32 too.
        compiled = f"{device}/compiled/bs{bs}"
        ref = base_run.cells.get(compiled, base)
        if mode == "eager" and compiled in run.cells and _clearly_faster(run.cells[compiled], ref):
            facts["compiled_speed"] = ref["latency_ms"] / run.cells[compiled]["latency_ms"]
            return "int8_compile"
        kind = next((s.matmul_kind() for s in steps if s.family == "int8" and s.matmul_kind()), "")
        matmul = run.matmul(kind, mode, bs) if kind else None
        if matmul is not None:
            facts.update(matmul=matmul, kernel="dynamic int8" if kind == "int8_dynamic" else "int8")
            if matmul < FASTER:
                return "int8_kernels_slow"
            if profiled and "base_quantize" in facts:
                return "int8_overhead"
        return "int8_small" if {"vnni", "amx"} & set(cell.get("cpu_features", [])) else "int8_no_vnni"
    if device == "cuda" and bs == 1 and run.point(key) is None:
        return "gpu_bs1"
    if "weight-only" in families:
        return "weight_only" if profiled and "base_quantize" in facts else "weight_only_rule"
    if "cast" in families and device == "cpu":
        dtype = next(s.dtype for s in steps if s.family == "cast")  # a cast step names its dtype
        needs = {"bf16": {"avx512_bf16", "amx"}, "fp16": {"amx_fp16"}}[dtype]
        has = needs & set(cell.get("cpu_features", []))
        facts.update(dtype=dtype, needs="/".join(sorted(needs)), features="/".join(sorted(has)))
        matmul = run.matmul(dtype, mode, bs)
        if matmul is not None:
            facts.update(
                matmul=matmul, native=f"listed: {facts['features']}" if has else f"none of {facts['needs']} listed"
            )
            if matmul < FASTER:
                return "cast_kernels_slow"
            if profiled:
                return "cast_overhead"
        return "cast_small" if has else "cast_no_native"
    if row["flops_ratio"] < SAME_FLOPS:
        point, base_point = run.point(key), base_run.point(key)
        if point is None or base_point is None:
            return "flops_rule"
        return {"overhead": "overhead", "memory": "memory_bound", "compute": "compute_bound"}[point["regime"]]
    if device == "cuda" and bs == 1:
        return "gpu_bs1"
    return "same_work"


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
