"""``workbench tour``: the main job. A baseline and contrasting variants on the embedded digits, then a
self-contained HTML report (tables and charts inline) plus the PNGs beside it.

Each variant changes one thing against the baseline, so each row of the report answers one question.
"""
from __future__ import annotations

import base64
import html
import io
import time
from pathlib import Path

import pandas as pd

from ._errors import ConfigError
from .config import RunConfig
from .data import AugmentConfig
from .measure import native_bf16, resolve_device
from .pipeline import run
from .plots import accuracy_vs_size, device_label, history_curves, latency_bars
from .results import COMPARE_METRICS, ResultStore, compare, results_frame


def tour_configs(dataset: str = "digits", epochs: int | None = None) -> list[RunConfig]:
    """The baseline and one-change-each variants the tour runs (sized to finish in about a minute on
    two CPU cores: a half-width CNN on 8x8 digits); ``epochs`` None is the tour's own 6."""
    if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1):
        raise ConfigError(f"tour epochs must be a whole number >= 1 (got {epochs!r}); leave it out for the tour's 6")
    base = RunConfig(name="baseline cnn").replace(**{
        "data.dataset": dataset, "model.name": "cnn", "model.width": 0.5, "train.epochs": 6 if epochs is None else epochs,
        "train.optimizer": "sgd", "train.lr": 0.05, "train.schedule": "cosine",
    })
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
        variants.append(base.replace(**{"name": "fp16 + channels-last", "hardware.precision": "fp16", "hardware.channels_last": True}))
    return variants


# Each compared metric of the schema, with the change that answers the variant's question beside it.
REPORT_COLUMNS = tuple(c for m in COMPARE_METRICS if m != "nonzero_params"
                       for c in (m, f"{m}_delta" if m == "accuracy" else f"{m}_ratio"))


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()


def write_report(df: pd.DataFrame, folder: str | Path, title: str = "Workbench tour") -> Path:
    """Write ``report.html`` (self-contained: charts inlined) and the chart PNGs into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    charts = {
        "accuracy_vs_size.png": accuracy_vs_size(df),
        "latency.png": latency_bars(df),
        "training_curves.png": history_curves(df),
    }
    images = []
    for name, fig in charts.items():
        data = _png(fig)
        (folder / name).write_bytes(data)
        images.append(f'<img alt="{name}" src="data:image/png;base64,{base64.b64encode(data).decode()}">')
    table = compare(df, baseline=0)
    shown = table[[c for c in REPORT_COLUMNS if c in table.columns]]
    body = f"""<!doctype html><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}} table{{border-collapse:collapse;font-size:13px}}
td,th{{border:1px solid #ccc;padding:3px 6px;text-align:right}} img{{max-width:100%}}</style>
<h1>{html.escape(title)}</h1>
<p>Dataset <b>{html.escape(str(df['data.dataset'].iloc[0]))}</b>; measured on <b>{html.escape(device_label(df))}</b>,
torch {html.escape(str(df['torch_version'].iloc[0]))}; {len(df)} runs, written {time.strftime('%Y-%m-%d %H:%M')}.
Deltas are against the first row (the baseline).
{"" if any(df["hardware.precision"] == "bf16") else "Mixed precision was left out: this device has no native bf16 (emulated bf16 is several times slower than fp32 on such CPUs)."}</p>
{shown.to_html(float_format=lambda v: f"{v:.4g}")}
{''.join(images)}"""
    path = folder / "report.html"
    path.write_text(body)
    return path


def tour(out: str | Path = "runs", dataset: str = "digits", epochs: int | None = None) -> Path:
    """Run the tour's configs into the store at ``out`` and write the report; returns its path."""
    store = ResultStore(out)
    results = [run(cfg, store=store) for cfg in tour_configs(dataset, epochs)]
    return write_report(results_frame(results), Path(out) / f"tour-{time.strftime('%Y%m%d-%H%M%S')}")
