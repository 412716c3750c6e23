"""The speed-up ledger: every compressed variant beside its baseline, timed in each execution mode,
with a machine-written reason wherever a variant is not faster.

A smaller model is not automatically a faster one. Zeroed weights are still multiplied; int8 convs
run as float kernels plus quantize steps until ``torch.compile`` fuses them; a GPU at batch 1 waits
on kernel launches. The ledger puts the numbers in one table so that shows, and says why.

Example:
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    >>> recs = measure_modes(net, (1, 8, 8), modes=("eager",), batch_sizes=(1,), warmup=1, iters=3)
    >>> recs[0]["mode"], recs[0]["batch_size"], recs[0]["latency_ms"] > 0
    ('eager', 1, True)
"""
from __future__ import annotations

import copy
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from torch import nn

from .config import MEASURE_MODES, MeasureConfig
from .deploy.onnx import root_cause

METRICS = ("params", "nonzero_params", "size_bytes", "flops", "accuracy")
FASTER = 1.10  # a speed-up below this is "not faster": timing noise on a shared machine reaches several percent
SPARSE = 0.95  # non-zero parameters below this share of all parameters = unstructured sparsity
SAME_FLOPS = 0.99  # FLOPs ratio at or above this = unchanged work
INT8_STEPS = ("static_int8", "qat", "dynamic_int8")

REASONS = {
    "fake_quant": "fake-quant model: convert first",
    "dense": "masked weights are still dense: use structured pruning",
    "int8_compile": "int8 kernels need torch.compile on this backend",
    "int8_slow": "int8 is not faster here: layers too small, or a CPU without fast int8 (VNNI/AMX)",
    "gpu_bs1": "GPU under-used at batch 1",
    "weight_only": "weight-only int8/int4 dequantizes every call: it pays off only for memory-bound Linear layers",
    "cast_cpu": "fp16/bf16 math is slow on this CPU: cast on a GPU",
    "overhead": "FLOPs fell but latency is bound by memory/overhead at this size",
    "same_work": "same FLOPs on dense kernels: nothing for this mode to skip",
}


def measure_modes(
    model: nn.Module,
    example_input_chw: Sequence[int],
    *,
    modes: Sequence[str] = MEASURE_MODES,
    batch_sizes: Sequence[int] = (1, 64),
    device: str | torch.device = "cpu",
    warmup: int = 5,
    iters: int = 30,
) -> list[dict[str, Any]]:
    """Time ``model`` in each execution mode with ``workbench.measure.benchmark``; one record per (mode, batch size).

    - ``eager``: the module as it is.
    - ``compiled``: ``torch.compile`` with static shapes and frozen weights (inductor ``freezing``:
      constants folded and weights pre-packed, which is what turns pt2e int8 into real int8 kernels).
      Compiling takes seconds per batch size (about 15 s cold on a CPU) and happens before the timing.
    - ``onnxruntime``: exported with ``workbench.deploy.export_onnx`` and run by ONNX Runtime on the CPU.

    A mode that does not apply (an export that fails, a dtype ONNX Runtime lacks) gives records with
    ``latency_ms=None`` and a ``skipped`` reason instead of stopping the others.

    Example:
        >>> from torch import nn
        >>> recs = measure_modes(nn.Linear(4, 2), (4,), modes=("eager",), batch_sizes=(1, 8), warmup=1, iters=3)
        >>> [(r["mode"], r["batch_size"]) for r in recs]
        [('eager', 1), ('eager', 8)]
        >>> measure_modes(nn.Linear(4, 2), (4,), modes=("jit",))
        Traceback (most recent call last):
        ...
        ValueError: Unknown execution mode 'jit'. Choose one of: compiled, eager, onnxruntime.
    """
    from ._registry import unknown_name_error
    from .measure import benchmark, device_name, resolve_device

    for mode in modes:
        if mode not in MEASURE_MODES:
            raise unknown_name_error("execution mode", mode, MEASURE_MODES)
    device = resolve_device(device, field="device")
    chw = tuple(example_input_chw)
    records: list[dict[str, Any]] = []
    was_training = model.training
    with tempfile.TemporaryDirectory() as tmp:
        for mode in modes:
            # ONNX Runtime runs on the CPU here, so its records say so.
            where = torch.device("cpu") if mode == "onnxruntime" else device
            try:
                runner = _prepare(model, mode, chw, batch_sizes, where, Path(tmp))
                records += benchmark(runner, chw, batch_sizes=batch_sizes, device=where, warmup=warmup, iters=iters, mode=mode)
            except Exception as e:  # one mode failing must not hide the others' numbers
                reason = root_cause(e)
                records += [{"batch_size": int(bs), "latency_ms": None, "device": str(where), "device_name": device_name(where),
                             "mode": mode, "torch_version": torch.__version__, "skipped": reason} for bs in batch_sizes]
    model.train(was_training)
    return records


def timing_plan(cfg: MeasureConfig, main: torch.device) -> list[tuple[torch.device, list[str]]]:
    """The (device, modes) pairs to time after ``workbench.measure`` has timed eager on ``main``.

    ``cfg.modes`` other than eager on ``main``; with ``cfg.device == "all"`` every mode again on each
    other device here (``available_devices``), so one run fills CPU and GPU columns of the ledger.
    ONNX Runtime runs on the CPU whatever the device, so it is timed once.

    Example:
        >>> cfg = MeasureConfig(modes=("eager", "compiled", "onnxruntime"), device="all")
        >>> plan = timing_plan(cfg, torch.device("cpu"))
        >>> plan[0]
        (device(type='cpu'), ['compiled', 'onnxruntime'])
        >>> all(modes == ["eager", "compiled"] for _, modes in plan[1:])  # a GPU, where there is one
        True
    """
    from .measure import available_devices

    others = [d for d in available_devices() if d.type != main.type] if cfg.device == "all" else []
    plan = [(main, [m for m in cfg.modes if m != "eager"])]
    plan += [(d, [m for m in cfg.modes if m != "onnxruntime"]) for d in others]
    return [(d, modes) for d, modes in plan if modes]


def ledger(results: pd.DataFrame | Sequence[Any], baseline: str | int | None = None) -> pd.DataFrame:
    """One row per variant: costs and accuracy against the baseline, latency per (device, mode, batch) with
    speed-ups, and ``why_not_faster`` where a variant is not faster than the baseline in some mode.

    ``results`` is ``ResultStore.frame()`` or a list of ``Result``. The baseline is the row whose
    ``compress`` is ``"none"`` unless ``baseline`` names a row (position, run id or name). Latency
    columns read ``cpu/eager/bs1_ms``; speed-ups (baseline latency / latency, same column)
    ``cpu/eager/bs1_speedup``. ``df.attrs["device_names"]`` maps each device to its name.

    Example:
        >>> from workbench import Result, RunConfig
        >>> rec = lambda ms: [{"mode": "eager", "batch_size": 1, "latency_ms": ms, "device": "cpu", "device_name": "x86"}]
        >>> rows = [Result(RunConfig(name="base"), {"params": 100, "nonzero_params": 100, "flops": 200}, benchmarks=rec(2.0)),
        ...         Result(RunConfig(name="half"), {"params": 50, "nonzero_params": 50, "flops": 100}, benchmarks=rec(1.0))]
        >>> df = ledger(rows)
        >>> row = df.loc[1]
        >>> row["variant"], float(row["flops_ratio"]), float(row["cpu/eager/bs1_speedup"])
        ('half', 0.5, 2.0)
    """
    from .results import results_frame

    df = results if isinstance(results, pd.DataFrame) else results_frame(results)
    if df.empty:
        raise ValueError("The ledger needs results: run some variants first (workbench.run).")
    df = df.reset_index(drop=True)
    base = _baseline_index(df, baseline)
    names = df["name"].astype(str) if "name" in df else pd.Series([f"row {i}" for i in range(len(df))])
    dup = names.duplicated(keep=False)
    out = pd.DataFrame({
        "variant": [f"{n} ({r})" if d else n for n, r, d in zip(names, df.get("run_id", names), dup)],
        "compress": df["compress"].astype(str) if "compress" in df else "none",
    })
    for m in METRICS:
        out[m] = pd.to_numeric(df[m], errors="coerce") if m in df else np.nan
    out["accuracy_delta"] = out["accuracy"] - out.loc[base, "accuracy"]
    out["size_ratio"] = out["size_bytes"] / out.loc[base, "size_bytes"]
    out["flops_ratio"] = out["flops"] / out.loc[base, "flops"]

    cells = [_cells(recs) for recs in df.get("benchmarks", pd.Series([[]] * len(df)))]
    keys = sorted({k for c in cells for k in c}, key=_column_order)
    for key in keys:
        out[f"{key}_ms"] = [c[key]["latency_ms"] if key in c else np.nan for c in cells]
    for key in keys:
        out[f"{key}_speedup"] = out.loc[base, f"{key}_ms"] / out[f"{key}_ms"]
    out["why_not_faster"] = [
        "" if i == base else _why(out.loc[i], cells[i], cells[base], keys) for i in range(len(out))
    ]
    out.attrs["baseline"] = out.loc[base, "variant"]
    out.attrs["device_names"] = {k.split("/")[0]: c[k].get("device_name", "") for c in cells for k in c}
    return out


def plot_ledger_size_accuracy(df: pd.DataFrame) -> Figure:
    """Accuracy against saved size (KiB) for each ledger row, points labelled with the variant name.

    Example:
        >>> df = pd.DataFrame({"variant": ["fp32", "int8"], "size_bytes": [4096, 1024], "accuracy": [0.97, 0.96]})
        >>> fig = plot_ledger_size_accuracy(df)
        >>> fig.axes[0].get_xlabel(), fig.axes[0].get_ylabel()
        ('model size on disk (KiB)', 'test accuracy (%)')
    """
    fig = Figure(figsize=(6.5, 4.2), layout="constrained")
    ax = fig.add_subplot()
    kib, acc = df["size_bytes"].to_numpy(float) / 1024, df["accuracy"].to_numpy(float) * 100
    ax.scatter(kib, acc, s=40, zorder=3)
    for name, x, y in zip(df["variant"], kib, acc):
        ax.annotate(str(name), (x, y), textcoords="offset points", xytext=(5, 4), fontsize="small")
    ax.set(xlabel="model size on disk (KiB)", ylabel="test accuracy (%)", title="Accuracy against size per variant")
    ax.grid(alpha=0.3)
    return fig


def plot_ledger_latency(df: pd.DataFrame) -> Figure:
    """Grouped bars of median latency: one group per (device, mode, batch size), one bar per variant.

    Example:
        >>> df = pd.DataFrame({"variant": ["fp32", "int8"], "cpu/eager/bs1_ms": [2.0, 2.5], "cpu/compiled/bs1_ms": [1.0, 0.5]})
        >>> df.attrs["device_names"] = {"cpu": "AMD EPYC"}
        >>> fig = plot_ledger_latency(df)
        >>> fig.axes[0].get_ylabel(), "AMD EPYC" in fig.axes[0].get_title()
        ('latency per batch (ms, median)', True)
    """
    columns = [c for c in df.columns if c.endswith("_ms")]
    if not columns:
        raise ValueError("No latency columns to plot: build the table with ledger(results) from runs with benchmark records")
    fig = Figure(figsize=(max(6.5, 1.2 * len(columns) + 3), 4.2), layout="constrained")
    ax = fig.add_subplot()
    width = 0.8 / len(df)
    x = np.arange(len(columns))
    for i, (_, row) in enumerate(df.iterrows()):
        ax.bar(x + (i - (len(df) - 1) / 2) * width, row[columns].to_numpy(float), width, label=str(row["variant"]))
    ax.set_xticks(x, [c.removesuffix("_ms").replace("/bs", "\nbatch ") for c in columns], fontsize="small")
    values = df[columns].to_numpy(float)
    if np.nanmax(values) / max(np.nanmin(values), 1e-9) > 30:  # batch 1 and batch 64 differ by orders of magnitude
        ax.set_yscale("log")
    devices = df.attrs.get("device_names") or {}
    where = "; ".join(f"{d}: {n}" for d, n in devices.items()) or "device not recorded"
    ax.set(ylabel="latency per batch (ms, median)", title=f"Latency per mode and batch size ({where})")
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3, axis="y")
    return fig


# ---------------------------------------------------------------------------------------------
# Internals


def _prepare(model: nn.Module, mode: str, chw: tuple[int, ...], batch_sizes: Sequence[int], device: torch.device,
             tmp: Path) -> Callable:
    if mode == "eager":
        return model
    model.eval()
    if mode == "compiled":
        import torch._inductor.config as inductor_config

        # Static shapes: one graph per batch size (the int8 conv lowering rejects a dynamic batch here).
        compiled = torch.compile(model, dynamic=False)
        # Compile now, with freezing on: weights become constants, so pt2e's dequantize -> conv patterns
        # lower to fused int8 kernels. torch.compile(options={"freezing": True}) misses that lowering.
        with torch.inference_mode(), inductor_config.patch(freezing=True), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="To copy construct from a tensor")  # inside inductor's int8 lowering
            for bs in batch_sizes:
                compiled(torch.randn(bs, *chw, device=device))
        return compiled
    from .deploy import export_onnx, onnxruntime_session

    cpu_model = model if _device_of(model).type == "cpu" else copy.deepcopy(model).cpu()
    path = export_onnx(cpu_model, torch.randn(2, *chw), tmp / f"{id(model)}.onnx")
    return onnxruntime_session(path)


def _device_of(model: nn.Module) -> torch.device:
    return next((t.device for t in [*model.parameters(), *model.buffers()]), torch.device("cpu"))


def _baseline_index(df: pd.DataFrame, baseline: str | int | None) -> int:
    if baseline is None:
        if "compress" not in df or not (df["compress"] == "none").any():
            raise ValueError("No baseline: no row has compress == 'none'. Pass baseline=<row position, run id or name>.")
        return int(np.flatnonzero(df["compress"] == "none")[0])
    if isinstance(baseline, (int, np.integer)):
        if not 0 <= baseline < len(df):
            raise ValueError(f"baseline row {baseline} is out of range: there are {len(df)} rows.")
        return int(baseline)
    hits = np.flatnonzero((df.get("run_id", pd.Series(dtype=str)) == baseline) | (df.get("name", pd.Series(dtype=str)) == baseline))
    if not len(hits):
        raise ValueError(f"No run with id or name '{baseline}'. Names: {', '.join(map(str, df.get('name', [])))}.")
    return int(hits[0])


def _cells(records: Any) -> dict[str, dict[str, Any]]:
    """Benchmark records keyed ``device/mode/bsN`` (records that were skipped or lack a latency are left out)."""
    out = {}
    for r in records if isinstance(records, (list, tuple)) else []:
        if r.get("latency_ms") is None or not np.isfinite(r["latency_ms"]):
            continue
        out[f"{str(r.get('device', 'cpu')).split(':')[0]}/{r.get('mode', 'eager')}/bs{r['batch_size']}"] = r
    return out


def _column_order(key: str) -> tuple:
    device, mode, bs = key.split("/")
    order = list(MEASURE_MODES)
    return device, order.index(mode) if mode in order else len(order), mode, int(bs[2:])


def _clearly_faster(cell: dict[str, Any], base: dict[str, Any]) -> bool:
    """Faster by ``FASTER`` and beyond the timing noise: the interquartile ranges do not overlap."""
    speedup = base["latency_ms"] / cell["latency_ms"]
    q75, base_q25 = cell.get("latency_ms_q75", cell["latency_ms"]), base.get("latency_ms_q25", base["latency_ms"])
    return speedup >= FASTER and q75 < base_q25


def _why(row: pd.Series, cells: dict, base_cells: dict, keys: list[str]) -> str:
    label = row["compress"].lower()
    reasons: dict[str, list[str]] = {}
    for key in keys:
        if key not in cells or key not in base_cells or _clearly_faster(cells[key], base_cells[key]):
            continue
        device, mode, bs = key.split("/")
        compiled = f"{device}/compiled/{bs}"
        if "qat(" in label and "convert=false" in label:
            why = "fake_quant"
        elif row["nonzero_params"] < SPARSE * row["params"] and row["flops_ratio"] >= SAME_FLOPS:
            why = "dense"
        elif any(s in label for s in INT8_STEPS):
            # Compare compiled with compiled where the baseline has it: compiling speeds up float32 too.
            ref = base_cells.get(compiled, base_cells[key])
            why = "int8_compile" if mode == "eager" and compiled in cells and _clearly_faster(cells[compiled], ref) else "int8_slow"
        elif device == "cuda" and bs == "bs1":
            why = "gpu_bs1"
        elif "weight_only" in label:
            why = "weight_only"
        elif "cast_precision" in label and device == "cpu":
            why = "cast_cpu"
        elif row["flops_ratio"] < SAME_FLOPS:
            why = "overhead"
        else:
            why = "same_work"
        reasons.setdefault(REASONS[why], []).append(key)
    return "; ".join(f"{reason} ({', '.join(where)})" for reason, where in reasons.items())
