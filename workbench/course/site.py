"""The executed notebooks as a static HTML site: one page per notebook, charts and all, under a bar
that links the series and says how long the notebook took on what; and an index with each
notebook's headline numbers and run time. It wears the tour report's theme (``_theme``).

The pages load nothing from the network, so a site CI built opens from ``file://`` or any static
host, offline. nbconvert's page would fetch require.js, MathJax and the ipywidgets renderer from
CDNs: the series needs none of them (no math, no JavaScript outputs), and each widget is replaced by
what it showed when the notebook ran (``freeze_widgets``).

Example:
    >>> format_metric("narrow_params_ratio", 0.2522), format_metric("baseline_accuracy", 0.68333)
    ('0.25×', '68.3%')
"""

from __future__ import annotations

import copy
import html
import json
import logging
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._errors import optional_import
from .._files import atomic_write_text
from ._theme import SITE_CSS, THEME_CSS
from .notebooks import timing_records

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
HEADLINE_COUNT = 4  # numbers an index row shows when its notebook names none (metadata.workbench.headline)
_FIX = (
    "pass the notebooks `workbench notebooks run` executed (OUT/<name>/<name>.ipynb), "
    "or run `workbench notebooks run --all --html SITE`"
)

# nbconvert's JupyterLab page less everything it fetches from a CDN, with the site's bar on top.
_PAGE = """{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block extra_css -%}<style>{{ resources.site_css }}</style>{%- endblock extra_css -%}
{%- block body_header -%}{{ super() }}{{ resources.site_bar }}{%- endblock body_header -%}
"""


@dataclass(frozen=True)
class _Notebook:
    """One executed notebook, as the site shows it."""

    stem: str
    title: str
    node: Any  # the nbformat notebook
    headline: list[tuple[str, str]] | None  # (metric, formatted value); None without a metrics.json
    seconds: float | None
    mode: str | None  # smoke or full; None where no run-time record names it
    machine: dict[str, Any] | None


def build_site(executed: Sequence[str | Path], out: str | Path, title: str = "Workbench notebooks") -> Path:
    """Write ``out/<name>.html`` for each executed notebook (papermill's output,
    ``OUT/<name>/<name>.ipynb`` with ``metrics.json`` beside it) and ``out/index.html``; returns the
    index's path. Run times, modes and machines come from ``OUT/timings.json`` (``run_notebooks``
    writes it), else from papermill's own record of the run's duration."""
    optional_import("nbconvert", "Building the notebook site", "pip install 'workbench[notebooks]'")
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter

    notebooks = [_read(Path(p)) for p in dict.fromkeys(Path(p) for p in executed)]
    if not notebooks:
        raise ValueError(f"no executed notebooks to build a site from: {_FIX}")
    stems = [nb.stem for nb in notebooks]
    twice = sorted({s for s in stems if stems.count(s) > 1})
    if twice:
        raise ValueError(f"two executed notebooks named {', '.join(twice)} would write the same page: pass one of each")
    out = Path(out)
    # nbconvert gives each image without alt text a stock one and warns, once a page: every chart
    # matplotlib draws has none, so the warning would only repeat itself.
    quiet = logging.getLogger(f"{__name__}.nbconvert")
    quiet.setLevel(logging.ERROR)
    exporter = HTMLExporter(
        extra_loaders=[DictLoader({"workbench-page.html.j2": _PAGE})], template_file="workbench-page.html.j2", log=quiet
    )
    for i, nb in enumerate(notebooks):
        page, _ = exporter.from_notebook_node(
            freeze_widgets(nb.node),
            resources={
                "metadata": {"name": f"{nb.title} · {title}"},
                "site_css": SITE_CSS,
                "site_bar": _page_bar(notebooks, i),
            },
        )
        atomic_write_text(out / f"{nb.stem}.html", page)
    return atomic_write_text(out / "index.html", _index(notebooks, title))


def format_metric(name: str, value: Any) -> str:
    """A metric as a person reads it, from its name: accuracies in %, accuracy deltas and gains in
    points, ratios and speed-ups as ×, shares in %, sizes in KiB/MiB, times with their unit.

    Example:
        >>> [format_metric(k, v) for k, v in [("deep_accuracy_delta", -0.2278), ("structured_speedup", 1.5),
        ...  ("params", 85514), ("latency_ms", 0.14096), ("size_bytes", 350000),
        ...  ("best_optimizer", "adam"), ("gap", None)]]
        ['-22.8 points', '1.50×', '85,514', '0.141 ms', '342 KiB', 'adam', '–']
    """
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if not isinstance(value, (int, float)):
        return str(value)
    key = name.lower()
    if "accuracy" in key or key.endswith("_gain"):
        return f"{100 * value:+.1f} points" if key.endswith(("_delta", "_gain")) else f"{100 * value:.1f}%"
    if "ratio" in key or "speedup" in key:
        return f"{value:.2f}×"
    if "share" in key or "efficiency" in key:
        return f"{100 * value:.0f}%"
    if "bytes" in key:
        return f"{value / 2**20:.1f} MiB" if value >= 2**20 else f"{value / 2**10:.0f} KiB"
    if key.endswith("_ms") or "_ms_" in key:
        return f"{value:.3g} ms"
    if "seconds" in key:
        return f"{value:.3g} s"
    if isinstance(value, int) or abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def headline(metrics: dict[str, Any], names: Sequence[str] | None = None) -> list[tuple[str, str]]:
    """The numbers an index row shows: ``names`` (a notebook's ``metadata.workbench.headline``) in
    order, else its first few scalar numbers; each with its formatted value.

    Example:
        >>> headline({"device": "cpu", "accuracy": 0.9, "ok": True, "params": 120, "curve": [1, 2]})
        [('accuracy', '90.0%'), ('params', '120')]
    """
    if names is None:
        names = [
            k
            for k, v in metrics.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        ][:HEADLINE_COUNT]
    missing = [n for n in names if n not in metrics]
    if missing:
        raise ValueError(
            f"metadata.workbench.headline names {', '.join(missing)}, which metrics.json lacks: "
            f"name some of {', '.join(metrics) or '(no metrics)'}"
        )
    return [(n, format_metric(n, metrics[n])) for n in names]


def freeze_widgets(nb: Any) -> Any:
    """A copy of ``nb`` with each ipywidgets view replaced by what it showed when the notebook ran,
    as plain outputs: its HTML and labels, progress bars as ``<progress>``, the charts and tables its
    ``Output`` widgets captured, and a note where it had controls (they need a live kernel). Without
    this, a static page shows an empty box for each widget, and the charts drawn into one are lost."""
    nb = copy.deepcopy(nb)
    state = nb.metadata.pop("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = [frozen for output in cell.outputs for frozen in _frozen(output, state)]
    return nb


# Widgets that show something without a kernel; every other leaf is a control (a button, a slider).
_DISPLAYS = {"HTMLModel", "HTMLMathModel", "LabelModel", "FloatProgressModel", "IntProgressModel"}


def _frozen(output: Any, state: dict[str, Any]) -> list[Any]:
    view = output.get("data", {}).get(WIDGET_VIEW)
    if view is None:
        return [output]
    if view["model_id"] not in state:  # the kernel saved no state for it: its text is all there is
        return [_output({"text/plain": output["data"].get("text/plain", "")})]
    shown = list(_shown(view["model_id"], state))
    controls = _controls(view["model_id"], state)
    if not controls:
        return shown
    note = (
        f'<p class="wb-widget-note">An interactive panel ({controls} control{"s" * (controls != 1)}): they work in a '
        "live notebook (open it in JupyterLab). Below, what it showed when the notebook ran.</p>"
    )
    return [_output({"text/html": note}), *shown]


def _output(data: dict[str, str]) -> Any:
    from nbformat.v4 import new_output

    return new_output("display_data", data=data)


def _children(model: dict[str, Any]) -> list[str]:
    return [ref.removeprefix("IPY_MODEL_") for ref in model["state"].get("children", [])]


def _leaf_html(model: dict[str, Any]) -> str:
    """A widget without children as HTML; "" for a control, which shows nothing without a kernel."""
    name, s = model["model_name"], model["state"]
    if name in ("HTMLModel", "HTMLMathModel"):
        return s.get("value", "")
    if name == "LabelModel":
        return html.escape(s.get("value", ""))
    if name in ("FloatProgressModel", "IntProgressModel"):
        return f'<progress value="{s.get("value", 0)}" max="{s.get("max", 100)}"></progress>'
    return ""


def _shown(model_id: str, state: dict[str, Any]) -> Iterator[Any]:
    """What a widget tree displays, in order, as outputs."""
    model = state.get(model_id)
    if model is None:
        return
    if model["model_name"] == "OutputModel":  # what it captured, widgets included (a training's progress bar)
        for output in model["state"].get("outputs", []):
            yield from _frozen(output, state)
        return
    if "children" not in model["state"]:
        if leaf := _leaf_html(model):
            yield _output({"text/html": f"<div>{leaf}</div>"})
        return
    kids = [state[c] for c in _children(model) if c in state]
    if model["model_name"] == "HBoxModel" and all(
        "children" not in k["state"] and k["model_name"] != "OutputModel" for k in kids
    ):
        # A row of leaves, such as tqdm's bar between its two texts: one line, as it looked.
        if line := " ".join(filter(None, map(_leaf_html, kids))):
            yield _output({"text/html": f"<div>{line}</div>"})
        return
    titles = model["state"].get("titles") or []  # a Tab's or an Accordion's
    for i, child in enumerate(_children(model)):
        shown = list(_shown(child, state))
        if shown and i < len(titles) and titles[i]:  # a tab of controls only shows nothing, title included
            yield _output({"text/html": f"<h4>{html.escape(titles[i])}</h4>"})
        yield from shown


def _controls(model_id: str, state: dict[str, Any]) -> int:
    model = state.get(model_id)
    if model is None or model["model_name"] == "OutputModel":
        return 0
    if "children" in model["state"]:
        return sum(_controls(c, state) for c in _children(model))
    return int(model["model_name"] not in _DISPLAYS)


def _read(path: Path) -> _Notebook:
    import nbformat

    if not path.is_file():
        raise FileNotFoundError(f"no executed notebook at {path}: {_FIX}")
    try:
        text = path.read_text()
        raw = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raw = None
    if not isinstance(raw, dict) or "papermill" not in raw.get("metadata", {}):
        raise ValueError(f"{path} is not an executed notebook (its metadata has no papermill record): {_FIX}")
    node = nbformat.reads(text, as_version=4)
    metrics_path = path.parent / "metrics.json"
    numbers = None
    if metrics_path.exists():
        try:
            numbers = headline(json.loads(metrics_path.read_text()), node.metadata.get("workbench", {}).get("headline"))
        except ValueError as e:  # a JSONDecodeError is one too
            raise ValueError(f"{metrics_path}: {e}") from None
    record = timing_records(path.parent.parent).get(path.stem, {})
    return _Notebook(
        stem=path.stem,
        title=_title(node) or path.stem,
        node=node,
        headline=numbers,
        seconds=record.get("seconds", node.metadata.papermill.get("duration")),
        mode=record.get("mode"),
        machine=record.get("machine"),
    )


def _title(node: Any) -> str | None:
    """The notebook's first markdown heading, without its #s."""
    for cell in node.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("#"):
                    return line.lstrip("#").strip()
    return None


def _machine(machine: dict[str, Any] | None) -> str:
    if machine is None:
        return "machine not recorded"
    gpu = f"GPU {machine['gpu']}" if machine.get("gpu") else "no GPU"
    return f"{machine['cpu']}, {machine['cores']} cores, {machine['torch_threads']} torch threads, {gpu}"


def _run(nb: _Notebook) -> str:
    seconds = "run time not recorded" if nb.seconds is None else f"{nb.seconds:.1f} s"
    return f"{seconds}, {nb.mode or 'mode not recorded'}"


def _page_bar(notebooks: list[_Notebook], i: int) -> str:
    nb = notebooks[i]
    before = notebooks[i - 1] if i > 0 else None
    after = notebooks[i + 1] if i + 1 < len(notebooks) else None
    parts = [
        '<a href="index.html">index</a>',
        f'<a href="{html.escape(before.stem)}.html" rel="prev">← {html.escape(before.stem)}</a>' if before else "",
        f'<span class="wb-here">{html.escape(nb.stem)}</span>',
        f'<a href="{html.escape(after.stem)}.html" rel="next">{html.escape(after.stem)} →</a>' if after else "",
        f"<span>{html.escape(_run(nb))}</span>",
        f'<span class="wb-muted">{html.escape(_machine(nb.machine))}</span>',
    ]
    return f'<nav class="wb-bar">{"".join(parts)}</nav>'


def _row(nb: _Notebook) -> str:
    numbers = "".join(
        f'<span class="wb-metric"><span class="wb-muted">{html.escape(k)}</span> {html.escape(v)}</span>'
        for k, v in nb.headline or []
    )
    if not numbers:
        missing = "no metrics.json" if nb.headline is None else "no numbers in metrics.json"
        numbers = f'<span class="wb-muted">{missing}</span>'
    return (
        f'<tr><td class="wb-left"><a href="{html.escape(nb.stem)}.html">{html.escape(nb.title)}</a><br>'
        f'<span class="wb-muted">{html.escape(nb.stem)}</span></td>'
        f'<td class="wb-left">{html.escape(nb.mode or "not recorded")}</td>'
        f'<td>{"" if nb.seconds is None else f"{nb.seconds:.1f}"}</td><td class="wb-left">{numbers}</td></tr>'
    )


def _index(notebooks: list[_Notebook], title: str) -> str:
    machines = "; ".join(sorted({_machine(nb.machine) for nb in notebooks}))
    total = sum(nb.seconds or 0 for nb in notebooks)
    smoke = (
        "Smoke mode runs a notebook's small parameters (seconds, not minutes): its numbers show that the "
        "notebook works, not what a full run finds. "
        if any(nb.mode == "smoke" for nb in notebooks)
        else ""
    )
    bar = (
        '<nav class="wb-bar"><span class="wb-here">index</span>'
        f"<span>{len(notebooks)} notebook{'s' * (len(notebooks) != 1)}, {total:.0f} s in all</span>"
        f'<span class="wb-muted">{html.escape(machines)}</span></nav>'
    )
    return f"""<!doctype html><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{THEME_CSS}
{SITE_CSS}</style>
{bar}
<h1>{html.escape(title)}</h1>
<p>Each notebook executed headless with papermill, top to bottom. Run time: the wall seconds of the whole run,
the kernel's start included. {smoke}Built {time.strftime("%Y-%m-%d %H:%M")}.</p>
<table><thead><tr><th class="wb-left">notebook</th><th class="wb-left">mode</th><th>run time (s)</th>
<th class="wb-left">headline numbers</th></tr></thead>
<tbody>{"".join(map(_row, notebooks))}</tbody></table>
"""
