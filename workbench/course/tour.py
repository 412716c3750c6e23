"""``workbench tour``: the main job. A baseline and contrasting variants on the embedded digits, then a
self-contained HTML report (tables and charts inline, the roofline among them) plus the PNGs beside it.

Each variant changes one thing against the baseline, so each row of the report answers one question.
"""

from __future__ import annotations

import base64
import html
import io
import os
import time
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from .._errors import ConfigError
from .._files import atomic_write_text
from ..config import RunConfig
from ..data import AugmentConfig
from ..measure import native_bf16, resolve_device
from ..pipeline import run_many
from ..report import ResultStore, latency_comparison, readable, run_labels, same_architecture
from ..report.charts import device_label, history_chart, latency_chart, roofline_chart, size_accuracy_chart
from ..report.roofline import roofline
from ._theme import THEME_CSS


def tour_configs(dataset: str = "digits", epochs: int | None = None) -> list[RunConfig]:
    """The baseline and one-change-each variants the tour runs (sized to finish in about a minute on
    two CPU cores: a half-width CNN on 8x8 digits); ``epochs`` None is the tour's own 6."""
    if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1):
        raise ConfigError(f"tour epochs must be a whole number >= 1 (got {epochs!r}); leave it out for the tour's 6")
    base = RunConfig(name="baseline cnn").replace(
        **{
            "data.dataset": dataset,
            "model.name": "cnn",
            "model.width": 0.5,
            "train.epochs": 6 if epochs is None else epochs,
            "train.optimizer": "sgd",
            "train.lr": 0.05,
            "train.schedule": "cosine",
        }
    )
    variants = [
        base,
        base.replace(**{"name": "narrower (width 0.25)", "model.width": 0.25}),
        base.replace(**{"name": "deeper (resnet20, width 0.5)", "model.name": "resnet20"}),
        base.replace(**{"name": "adam optimizer", "train.optimizer": "adam", "train.lr": 2e-3}),
        base.replace(**{"name": "augmented (crop+translate)", "data.augment": AugmentConfig(crop=1, translate=1)}),
        base.replace(**{"name": "no batchnorm", "model.batchnorm": False}),
    ]
    device = resolve_device("auto")
    if native_bf16(device):
        variants.append(base.replace(**{"name": "bf16 autocast", "hardware.precision": "bf16"}))
    if device.type == "cuda":
        variants.append(
            base.replace(
                **{"name": "fp16 + channels-last", "hardware.precision": "fp16", "hardware.channels_last": True}
            )
        )
    return variants


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()


def _changes(row: pd.Series, base: pd.Series) -> str:
    """What a variant's config changes against the baseline's, as ``field: old → new``."""
    fields = [c for c in row.index if "." in c and not c.startswith(("measure.", "hardware.threads"))]
    changed = [f"{c}: {base[c]} → {row[c]}" for c in fields if str(row[c]) != str(base.get(c))]
    return "; ".join(changed) or "nothing (the baseline)"


def variant_notes(df: pd.DataFrame) -> list[str]:
    """One sentence per variant, written from its numbers: what it changes, its accuracy and size against
    the first row (the baseline), and its latency only as far as the timing spreads support it."""
    base = df.iloc[0]
    notes = []
    for (i, row), name in zip(df.iterrows(), run_labels(df)):
        if i == 0:
            notes.append(
                f"{name}: the baseline; every other row changes one thing against it. Test accuracy "
                f"{100 * row['accuracy']:.1f}%, {row['params']:,.0f} parameters, latency {row['latency_ms']:.2f} ms."
            )
            continue
        speed = latency_comparison(row, base)
        if same_architecture(row, base):
            timing = (
                f"it is the same network as the baseline (only training changed), so its latency should match: "
                f"{speed['text']}" + ("" if speed["within_noise"] else ", which is timing noise or a busy machine")
            )
        else:
            timing = speed["text"]
        notes.append(
            f"{name}: changes {_changes(row, base)}. Test accuracy {100 * row['accuracy']:.1f}% "
            f"({100 * (row['accuracy'] - base['accuracy']):+.1f} points), {row['params'] / base['params']:.2f}x the "
            f"parameters, {row['train_seconds'] / base['train_seconds']:.2f}x the training time; {timing}."
        )
    return notes


def noise_note(df: pd.DataFrame) -> str:
    """A paragraph for when timings were spoiled by a busy machine ("" when none was)."""
    records = [r for recs in df["benchmarks"] for r in recs or [] if r.get("latency_ms") is not None]
    noisy = [r for r in records if r.get("noisy")]
    if not noisy:
        return ""
    worst = max(r["latency_ms_q75"] / max(r["latency_ms_q25"], 1e-9) for r in noisy)
    loads = [r["load_average"] for r in records if r.get("load_average") is not None]
    load = f" (load average up to {max(loads):.1f} on {os.cpu_count()} cores)" if loads else ""
    return (
        f"The machine was busy{load}: {len(noisy)} of {len(records)} latencies vary by up to {worst:.1f}x between "
        "their quartiles, marked noisy in the table and hatched in the charts. Do not read speed differences "
        "from them: rerun on a quiet machine."
    )


def roofline_caption(points: pd.DataFrame) -> str:
    """The roofline chart's one-line caption, from its points (``report.roofline``): what it shows, the two
    measured roofs and how many timings fell in each regime.

    Example:
        >>> pts = pd.DataFrame({"regime": ["overhead", "compute", "overhead"], "bandwidth_gbs": [17.0] * 3,
        ...                     "peak_gflops": [48.0] * 3})
        >>> print(roofline_caption(pts))  # doctest: +NORMALIZE_WHITESPACE
        Roofline: each timing by its arithmetic intensity (FLOPs per modelled byte moved) under the measured roofs
        (17 GB/s STREAM triad, 48 GFLOP/s matmul); far below both is overhead-bound (framework, small kernels).
        Of 3 timings here: 1 compute-bound, 2 overhead-bound.
    """
    counts = ", ".join(f"{n} {regime}-bound" for regime, n in points["regime"].value_counts().sort_index().items())
    return (
        "Roofline: each timing by its arithmetic intensity (FLOPs per modelled byte moved) under the measured roofs "
        f"({points['bandwidth_gbs'].iloc[0]:.0f} GB/s STREAM triad, {points['peak_gflops'].iloc[0]:.0f} GFLOP/s "
        "matmul); far below both is overhead-bound (framework, small kernels). "
        f"Of {len(points)} timings here: {counts}."
    )


def report_table(df: pd.DataFrame) -> pd.DataFrame:
    """The report's table: named columns with units, accuracy in %, the batch size in latency headers."""
    table = readable(
        df,
        metrics=("accuracy", "params", "size_bytes", "flops", "latency_ms", "throughput_ips", "train_seconds"),
        fields={},
    )
    base = df.iloc[0]
    table.insert(2, "Δ accuracy (points)", 100 * (df["accuracy"] - base["accuracy"]).to_numpy())
    latency = next(c for c in table.columns if c.startswith("latency"))
    table.insert(
        table.columns.get_loc(latency) + 1,
        "latency × baseline",
        [latency_comparison(row, base)["ratio"] for _, row in df.iterrows()],
    )
    table.insert(table.columns.get_loc(latency) + 2, "latency spread (IQR, ms)", df["latency_ms_spread"].to_numpy())
    sizes = sorted({max(b) for b in df["measure.batch_sizes"]})
    throughput = next(c for c in table.columns if c.startswith("throughput"))
    if len(sizes) == 1:
        table = table.rename(columns={throughput: f"throughput at batch {sizes[0]} (images/s)"})
    table["same network as the baseline"] = [
        "(the baseline)" if i == 0 else "yes" if same_architecture(row, base) else "" for i, row in df.iterrows()
    ]
    return table.drop(columns=["run id", "device"], errors="ignore")  # the device is named above the table


def write_report(df: pd.DataFrame, folder: str | Path, title: str = "Workbench tour") -> Path:
    """Write ``report.html`` (self-contained: charts inlined) and the chart PNGs into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    df = df.reset_index(drop=True)
    charts = {
        "size_accuracy_chart.png": size_accuracy_chart(df),
        "latency.png": latency_chart(df),
        "training_curves.png": history_chart(df),
    }
    points = roofline(df)
    captions = {}
    if len(points):  # runs stored before the roofline's measurements were recorded cannot be placed
        charts["roofline.png"] = roofline_chart(points)
        captions["roofline.png"] = roofline_caption(points)
    images = []
    for name, fig in charts.items():
        data = _png(fig)
        (folder / name).write_bytes(data)
        images.append(f'<img alt="{name}" src="data:image/png;base64,{base64.b64encode(data).decode()}">')
        if name in captions:
            images.append(f'<p class="caption">{html.escape(captions[name])}</p>')
    if not len(points):
        images.append(
            '<p class="caption">No roofline: these runs lack the activation bytes and measured roofs a point '
            "needs (runs stored by an older Workbench).</p>"
        )
    shown = report_table(df)
    counts = {c: (lambda v: f"{v:,}") for c in shown.columns if pd.api.types.is_integer_dtype(shown[c])}
    table = shown.to_html(
        index=False, na_rep="", formatters=counts, float_format=lambda v: f"{v:,.4g}" if abs(v) < 1000 else f"{v:,.0f}"
    )
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in variant_notes(df))
    noise = noise_note(df)
    threads = "/".join(sorted({str(t) for t in df["threads"].dropna().astype(int)})) if "threads" in df else "?"
    no_bf16 = (
        ""
        if any(df["hardware.precision"] == "bf16")
        else "Mixed precision was left out: this device has no native bf16 "
        "(emulated bf16 is several times slower than fp32 on such CPUs)."
    )
    body = f"""<!doctype html><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{THEME_CSS}</style>
<h1>{html.escape(title)}</h1>
<p>Dataset <b>{html.escape(str(df["data.dataset"].iloc[0]))}</b>; measured on <b>{html.escape(device_label(df))}</b>
with {threads} CPU threads, torch {html.escape(str(df["torch_version"].iloc[0]))}; {len(df)} runs, timed together in
turns so that load from other programs hits all of them; written {time.strftime("%Y-%m-%d %H:%M")}.
Δ and × are against the first row (the baseline).
{no_bf16}</p>
{f'<p class="noise">{html.escape(noise)}</p>' if noise else ""}
{table}
<h2>What each variant shows</h2>
<ul>{notes}</ul>
{"".join(images)}"""
    path = folder / "report.html"
    atomic_write_text(path, body)
    return path


def tour(out: str | Path = "runs", dataset: str = "digits", epochs: int | None = None) -> Path:
    """Run the tour's configs into the store at ``out`` and write the report; returns its path."""
    configs = tour_configs(dataset, epochs)
    tqdm.write(
        f"workbench tour: {len(configs)} variants of a small CNN on {dataset}, each changing one thing; "
        "training them first, then timing all of them together"
    )
    df = run_many(configs, store=ResultStore(out))
    tqdm.write("writing the report (tables and charts)...")
    return write_report(df, Path(out) / f"tour-{time.strftime('%Y%m%d-%H%M%S')}")
