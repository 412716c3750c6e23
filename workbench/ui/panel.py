"""The Workbench panel: controls that edit one ``RunConfig``, a Run button with live training, and
the accuracy / size / speed charts of every run, and a Search tab that runs ``workbench.search``
around the current settings.

State and view are kept apart: ``panel.config`` is the one state; each control writes its
own field through ``RunConfig.replace`` and ``set_config`` writes every control back. The controls are
made from the settings' own descriptions (``setting()`` in each config class), so a new setting gets
one without a change here. The Run button
calls ``panel.run_current()`` and the Run-search button ``panel.run_search()``: plain methods a
notebook's last cell can call headlessly. No
computation lives here: checks, training, measuring and charts are the package's own functions.
"""

from __future__ import annotations

import dataclasses
import html
import math
import traceback
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ipywidgets as w
import pandas as pd
from IPython.display import display

from .._errors import one_line
from .._files import atomic_write_text
from .._plain import Setting, leaf_settings
from ..compress import CompressStep, build_step, recommended_pruning, step_types, steps_for
from ..config import RunConfig
from ..measure import device_choices
from ..pipeline import generate, preflight, run
from ..presets import preset
from ..report import (
    METRICS,
    Result,
    ResultStore,
    charts,
    compare,
    format_number,
    readable,
    results_frame,
    run_labels,
)
from ..search import Space
from ..tasks import get_task
from .code import _default, run_code
from .live import LiveCurve, ProgressWidget, show
from .search_tab import SEARCH, SearchTab

STYLE = {"description_width": "150px"}
WIDE = w.Layout(width="390px")
SESSION, STORE = "this session", "whole store"
CODE_CHOICES = [("current settings", ""), ("the Search tab's search", SEARCH)]


def _dropdown(description: str, options: Any) -> w.Dropdown:
    return w.Dropdown(description=description, options=options, style=STYLE, layout=WIDE)


# The settings' tabs, by config section ("" holds the run's own name); a new section gets a tab of its own.
TABS = {
    "data": "Data",
    "model": "Model",
    "train": "Training",
    "hardware": "Hardware",
    "measure": "Measure",
    "evaluation": "Measure",
    "distill": "Compression",
    "": "Training",
}
# Choices only this machine knows that a setting's own layer cannot ask for: the devices present here.
MACHINE_OPTIONS: dict[str, Callable[[], list]] = {"hardware.device": device_choices}
NONE_SHOWN_AS = 0  # how a dropdown shows None (ipywidgets reads a None value as "nothing selected")


def _optional(hint: Any) -> bool:
    return type(None) in typing.get_args(hint)


def _control(path: str, hint: Any, s: Setting) -> w.Widget:
    """The control a setting's description asks for: a dropdown (or toggle buttons) for choices or preset
    values, a multiple choice for a list of choices, a checkbox for a switch, a slider for a number with a
    range, a number box for any other number, and a text box for the rest (a list as ``1,64``)."""
    label = s.label or path.rsplit(".", 1)[-1].replace("_", " ")
    kw: dict[str, Any] = {
        "description": f"{label} ({s.unit})" if s.unit else label,
        "tooltip": s.help,
        "style": STYLE,
        "layout": WIDE,
    }
    options = [
        o if isinstance(o, tuple) else (str(o), o)
        for o in (MACHINE_OPTIONS[path]() if path in MACHINE_OPTIONS else s.panel_options())
    ]
    if _optional(hint):
        options = [(name, NONE_SHOWN_AS if value is None else value) for name, value in options]
    if typing.get_origin(hint) is tuple:
        if options:
            return w.SelectMultiple(options=options, rows=min(len(options), 5), **kw)
        return w.Text(continuous_update=False, placeholder="comma-separated, e.g. 1,64", **kw)
    if options and s.widget == "toggle":
        return w.ToggleButtons(
            options=options, description=kw["description"], tooltip=s.help, style={**STYLE, "button_width": "60px"}
        )
    if options:
        return w.Dropdown(options=options, **kw)
    if hint is bool:
        return w.Checkbox(**kw)
    if hint in (int, float) and s.range is not None:
        low, high = s.range
        if s.log:
            return w.FloatLogSlider(
                base=10,
                min=math.log10(low),
                max=math.log10(high),
                step=s.step or 0.1,
                readout_format=".2g",
                continuous_update=False,
                **kw,
            )
        slider = w.IntSlider if hint is int else w.FloatSlider
        return slider(min=low, max=high, step=s.step or (1 if hint is int else 0.05), continuous_update=False, **kw)
    if hint in (int, float):
        return (w.IntText if hint is int else w.FloatText)(**kw)
    return w.Text(continuous_update=False, placeholder=s.help, **kw)


def _quantity(name: str, value: float) -> str:
    """A metric as a sentence says it: ``test accuracy 97.2%``, ``decode speed 1,199 tokens/s``."""
    metric = METRICS[name]
    unit = metric.unit.split(",")[0]
    return f"{metric.label} {format_number(value * metric.scale)}{'' if unit in ('', '%') else ' '}{unit}"


def _writes_text(config: RunConfig) -> bool:
    """Whether ``config``'s task models text (its runs get the prompt box)."""
    return get_task(config.task).reads == "tokens"


def _grid(*children: w.Widget) -> w.GridBox:
    return w.GridBox(list(children), layout=w.Layout(grid_template_columns="repeat(2, 400px)"))


def _fit(widget: w.Widget, value: Any) -> None:
    """Widen a slider's range or a dropdown's options so the widget can show ``value`` (a loaded
    config may hold anything valid)."""
    if isinstance(widget, (w.Dropdown, w.ToggleButtons)):
        options = [o if isinstance(o, tuple) else (str(o), o) for o in widget.options]
        if value not in [v for _, v in options]:
            widget.options = [*options, (str(value), value)]
    elif isinstance(widget, w.SelectMultiple):
        options = [o if isinstance(o, tuple) else (str(o), o) for o in widget.options]
        missing = [v for v in value if v not in [known for _, known in options]]
        if missing:
            widget.options = options + [(str(v), v) for v in missing]
    elif isinstance(widget, w.FloatLogSlider):
        widget.min, widget.max = (
            min(widget.min, math.floor(math.log10(value))),
            max(widget.max, math.ceil(math.log10(value))),
        )
    elif isinstance(widget, (w.IntSlider, w.FloatSlider)):
        widget.min, widget.max = min(widget.min, value), max(widget.max, value)


class Workbench:
    """An ipywidgets panel over ``workbench.run``: pick a dataset, model and recipe, press Run, watch
    the loss curve, compare runs in a table and charts, see the code that reproduces a run.

    Example:
        >>> import tempfile
        >>> panel = Workbench(store=tempfile.mkdtemp())
        >>> panel.controls["model.name"].value = "mlp"
        >>> panel.config.model.name
        'mlp'
        >>> panel.controls["hardware.device"].value = "cpu"
        >>> panel.controls["hardware.precision"].value = "fp16"
        >>> panel.problem()
        "precision 'fp16' needs a CUDA GPU (device is cpu): use 'bf16' or 'fp32' here."
    """

    def __init__(
        self,
        store: str | Path | ResultStore = "runs",
        config: RunConfig | None = None,
        *,
        data_root: str | Path = "data",
        theme: str | None = None,
        search_space: Space | None = None,
    ):
        self.store = ResultStore.open(store)
        self.data_root, self.theme = data_root, theme
        self._search_space = search_space  # the Search tab's space; None: default_space()
        self.results: list[Result] = []  # this session's runs, in order
        self.figures: dict[str, Any] = {}  # the charts last drawn, by tab title
        self.live: LiveCurve | None = None  # the last run's live curve (its .figure is the final drawing)
        self._config = RunConfig()
        self._syncing = False
        self._build()
        self.set_config(config or RunConfig())
        self._refresh_results()

    # --- state -------------------------------------------------------------------------------
    @property
    def config(self) -> RunConfig:
        """The run the controls describe; assigning one updates every control."""
        return self._config

    @config.setter
    def config(self, config: RunConfig) -> None:
        self.set_config(config)

    def set_config(self, config: RunConfig) -> None:
        """Make ``config`` the panel's state and show it in the controls."""
        self._config = config
        flat = config.flat()
        self._syncing = True
        try:
            self.task.value = config.task
            self.writing.layout.display = "" if _writes_text(config) else "none"
            kinds = steps_for(config.task)  # the steps that apply to this task's models
            if list(self.step_kind.options) != kinds:
                self.step_kind.options = kinds
                self.step_kind.value = "finetune" if "finetune" in kinds else kinds[0]
            for path, widget in self.controls.items():
                value = self._to_widget(path, flat[path])
                _fit(widget, value)
                widget.value = value
        finally:
            self._syncing = False
        self._show_steps()
        self._check()

    def _to_widget(self, path: str, value: Any) -> Any:
        """A setting's value as its control shows it: None as ``NONE_SHOWN_AS`` in a dropdown, a list in a
        text box as ``1,64``."""
        widget = self.controls[path]
        if value is None and isinstance(widget, w.Dropdown):
            return NONE_SHOWN_AS
        if isinstance(value, tuple) and isinstance(widget, w.Text):
            return ",".join(map(str, value))
        return value

    def _from_widget(self, path: str, value: Any) -> Any:
        """A control's value as the setting's: the inverse of ``_to_widget``."""
        hint, widget = self._hints[path], self.controls[path]
        if _optional(hint) and isinstance(widget, w.Dropdown) and value == NONE_SHOWN_AS:
            return None
        if typing.get_origin(hint) is tuple and isinstance(widget, w.Text):
            item = typing.get_args(hint)[0]
            try:
                return tuple(item(v.strip()) for v in value.split(",") if v.strip())
            except ValueError:
                raise ValueError(f"{path} is a comma-separated list, e.g. 1,64 (got {value!r})") from None
        return value

    def _on_control(self, path: str, change: dict) -> None:
        if self._syncing:
            return
        try:
            self._config = self._config.replace(**{path: self._from_widget(path, change["new"])})
        except ValueError as e:
            self.set_config(self._config)  # put the control back to the last valid value
            self._say(one_line(e), "error")
            return
        self._check()

    def switch_task(self, task: str) -> RunConfig:
        """Start over from ``task``'s starting settings (a language model: the ``gpt`` preset; images: the
        defaults), on the same device: what the task buttons call."""
        start = get_task(task).starting_preset
        device = self._config.hardware.device
        self.set_config(preset(start, device=device) if start else RunConfig().replace(**{"hardware.device": device}))
        self.search_tab.follow_task(task)
        return self._config

    def problem(self, config: RunConfig | None = None) -> str | None:
        """Why ``config`` (default: the panel's) cannot run on this machine, in one line; None if it can.
        The checks are the pipeline's own (``workbench.preflight``), run before any data is loaded."""
        problems = preflight(config or self._config, store=self.store).problems
        return problems[0] if problems else None

    def _check(self) -> None:
        if self.code_run.value in (
            "",
            SEARCH,
        ):  # the code view follows the controls while it shows the current settings
            self._show_code()
        check = preflight(self._config, store=self.store)
        self.run_button.disabled = not check.ok
        self.search_tab.refresh(runnable=check.ok)  # the search's base is these settings
        if check.problems:
            self._say(check.problems[0], "error")
        else:
            self._say("; ".join(check.notes), "note")

    def _say(self, text: str, level: str = "note") -> None:
        icon = {"error": "⚠", "note": "ℹ", "ok": "✔", "busy": "▶"}[level]
        self.message.value = f"<span class='wb-{level}'>{icon} {html.escape(text)}</span>" if text else ""

    # --- running -----------------------------------------------------------------------------
    def run_current(self) -> Result | None:
        """Train, measure and store the current settings: what the Run button calls."""
        return self.run(self._config)

    def run(self, config: RunConfig) -> Result | None:
        """Run ``config`` with the live chart and progress bar, then add its row to the table and charts.

        A configuration this machine cannot run, or an error while running, is shown as one line in
        the panel (the traceback goes to the panel's log) and None is returned.
        """
        problem = self.problem(config)
        if problem:
            self._say(problem, "error")
            return None
        label = config.label()
        self._say(f"running {label}…", "busy")
        live = LiveCurve(self.live_out, title=f"{label} on {config.data.dataset}", theme=self.theme)
        try:
            result = run(
                config,
                store=self.store,
                callbacks=[live, ProgressWidget(self.progress, self.progress_label)],
                progress=False,
                data_root=self.data_root,
            )
        except Exception as e:  # noqa: BLE001  (the panel must survive any failed run; the message says what went wrong)
            with self.log:
                traceback.print_exc()
            self._say(one_line(e), "error")
            return None
        if result.reused_from:  # no training ran: show the curves of the training it reused
            live.replay(result.history)
        self.live = live
        self.results.append(result)
        self.progress_label.value = (
            f"reused the training of run {result.reused_from}"
            if result.reused_from
            else f"trained {result.metrics['epochs_run']} epochs in {result.metrics['train_seconds']:.1f} s"
        )
        self._refresh_results(select=result.run_id)
        m = result.metrics
        stopped = "" if result.status == "ok" else f" (stopped early: {result.status})"
        quality = ", ".join(_quantity(k, m[k]) for k in get_task(config.task).headline)
        self._say(
            f"{label}: {quality}, {m['params']:,} parameters, "
            f"{m['latency_ms']:.2f} ms at batch {min(config.measure.batch_sizes)} "
            f"on {m['measure_device_name']}{stopped}",
            "ok" if not stopped else "error",
        )
        return result

    def generate(self, run_id: str | None = None, prompt: str | None = None, max_new_tokens: int | None = None) -> str:
        """Continue the prompt box's text (or ``prompt``) with a language-model run (``run_id``; default: this
        session's last one), showing each piece in the panel as it comes: what the Generate button calls."""
        if run_id is None:
            run_id = next((r.run_id for r in reversed(self.results) if _writes_text(r.config)), None)
        if run_id is None:
            raise ValueError("no language-model run yet: switch the task to language model and press Run")
        prompt = self.prompt.value if prompt is None else prompt
        writing = generate(
            self._result(run_id), prompt, max_new_tokens or self.new_tokens.value, seed=0, store=self.store
        )
        shown = prompt
        for piece in writing:
            shown += piece
            self.generated.value = f"<pre class='wb-generated'>{html.escape(shown)}</pre>"
        self._say(f"wrote {len(shown) - len(prompt):,} characters with run {run_id}", "ok")
        return writing.text

    # --- searching ---------------------------------------------------------------------------
    def run_search(self):
        """Search around the current settings as the Search tab describes, redrawing its Pareto chart and
        trial table after each trial: what the Run-search button calls. Returns the ``SearchResult``,
        or None when the search could not run (the message line says why)."""
        return self.search_tab.run()

    def search_code(self) -> str:
        """Python that runs the Search tab's search: the current settings as ``base``, one ``search(...)`` call."""
        return self.search_tab.code()

    @property
    def search_space(self) -> Space:
        """The Search tab's space (``default_space()`` unless one was given)."""
        return self.search_tab.space

    @search_space.setter
    def search_space(self, space: Space | None) -> None:
        self.search_tab.space = space

    # --- results -----------------------------------------------------------------------------
    def frame(self) -> pd.DataFrame:
        """The runs the table and charts show: this session's, or the whole store's."""
        return self.store.frame() if self.scope.value == STORE else results_frame(self.results)

    def table_frame(self) -> pd.DataFrame:
        """The results table as shown: one row per run, units in the headers."""
        df = self.frame()
        return readable(df) if len(df) else pd.DataFrame()

    def _result(self, run_id: str) -> Result:
        for r in self.results:
            if r.run_id == run_id:
                return r
        return self.store.get(run_id)

    def _refresh_results(self, select: str | None = None) -> None:
        df = self.frame()
        runs = list(zip(run_labels(df), df["run_id"])) if len(df) else []
        ids = [rid for _, rid in runs]
        self._syncing = True
        try:
            baseline = self.baseline.value
            self.baseline.options = runs
            self.baseline.value = baseline if baseline in ids else (ids[0] if ids else None)
            shown = self.code_run.value
            self.code_run.options = CODE_CHOICES + runs
            self.code_run.value = select or (shown if shown == SEARCH else "")
            stored = [(f"{r.config.label()} ({r.run_id})", r.run_id) for r in self.store.results()]
            for key in ("distill.teacher", "train.init_from"):  # settings that name a stored run's weights
                control, chosen = self.controls[key], self._config.flat()[key]
                choices = [control.options[0], *stored]  # its "none" choice first
                if chosen not in [value for _, value in choices]:  # a checkpoint path from a loaded config
                    choices.append((chosen, chosen))
                control.options, control.value = choices, chosen
        finally:
            self._syncing = False
        table = self.table_frame()
        self.table.value = (
            table.to_html(index=False, classes="wb-results", float_format=format_number, na_rep="–")
            if len(table)
            else "<i>No runs yet: press Run.</i>"
        )
        self._draw_charts(df)
        self._show_code()

    def _draw_charts(self, df: pd.DataFrame) -> None:
        if df.empty:
            self.figures = {}
            for out in self.chart_outs.values():
                show(out, w.HTML("<i>No runs to chart yet.</i>"))
            self.comparison.value = ""
            return
        t = self.theme
        self.figures = {
            "accuracy vs size": charts.size_accuracy_chart(df, theme=t),
            "latency": charts.latency_chart(df, theme=t),
            "throughput": charts.latency_chart(df, metric="throughput_ips", theme=t),
            "training curves": charts.history_chart(df, theme=t),
        }
        for title, out in self.chart_outs.items():
            show(out, self.figures[title])
        table = compare(df, baseline=self.baseline.value or 0)
        shown = table[[c for c in table.columns if not c.endswith("_ratio")]]
        self.comparison.value = (
            f"<p>Deltas are against <b>{html.escape(str(table.index[table['baseline']][0]))}</b> "
            "(value − baseline).</p>" + shown.to_html(classes="wb-compare", float_format=format_number, na_rep="–")
        )

    # --- code, files -------------------------------------------------------------------------
    def code(self, run_id: str | None = None) -> str:
        """Python that reproduces a stored run (``run_id``) or, without one, the current settings;
        ``run_id="search"`` gives the Search tab's ``search(...)`` call (``search_code()``)."""
        if run_id == SEARCH:
            return self.search_code()
        config = self._result(run_id).config if run_id else self._config
        return run_code(config, store=str(self.store.root))

    def _show_code(self) -> None:
        self.code_view.value = f"<pre class='wb-code'>{html.escape(self.code(self.code_run.value or None))}</pre>"

    def save(self, path: str | Path | None = None) -> Path:
        """Write the current settings as a JSON config file (``RunConfig.from_json`` reads it back)."""
        path = Path(path or self.config_path.value)
        atomic_write_text(path, self._config.to_json(indent=1))
        self._say(f"saved the settings to {path}", "ok")
        return path

    def load(self, path: str | Path | None = None) -> RunConfig:
        """Read a JSON config file into the panel's state and controls."""
        path = Path(path or self.config_path.value)
        self.set_config(RunConfig.from_json(path.read_text()))
        self._say(f"loaded the settings from {path}", "ok")
        return self._config

    # --- view --------------------------------------------------------------------------------
    def _build(self) -> None:
        # One control per setting, as its description asks (``_control``); settings the panel leaves out
        # say why in their ``not_in_panel``.
        self._hints: dict[str, Any] = {}
        c = self.controls = {}
        for path, (hint, described) in leaf_settings(RunConfig).items():
            if described is not None and not described.not_in_panel:
                self._hints[path] = hint
                c[path] = _control(path, hint, described)
        for path, widget in c.items():
            widget.observe(lambda change, path=path: self._on_control(path, change), names="value")

        self.task = w.ToggleButtons(
            options=[("image classifier", "image"), ("language model", "lm")],
            description="task",
            tooltip="what the run learns: labels for images, or the next token of a text",
        )
        self.task.observe(lambda change: None if self._syncing else self.switch_task(change["new"]), names="value")
        self.prompt = w.Text(value="def ", description="prompt", continuous_update=False, style=STYLE, layout=WIDE)
        self.new_tokens = w.IntSlider(
            value=200, min=10, max=1000, step=10, description="new tokens", style=STYLE, layout=WIDE
        )
        self.generate_button = w.Button(description="Generate", icon="pencil", tooltip="continue the prompt")
        self.generated = w.HTML()
        self.writing = w.VBox([w.HBox([self.prompt, self.new_tokens, self.generate_button]), self.generated])
        self.message = w.HTML()
        self.run_button = w.Button(
            description="Run", button_style="primary", icon="play", tooltip="train, measure and store"
        )
        self.run_button.add_class("wb-run")
        self.progress = w.IntProgress(value=0, min=0, max=1, layout=w.Layout(width="300px"))
        self.progress_label = w.Label()
        self.live_out = w.Output()
        self.live_out.add_class("wb-live")
        self.log = w.Output()
        self.scope = w.ToggleButtons(
            options=[SESSION, STORE], description="show runs of", style={"description_width": "initial"}
        )
        self.baseline = _dropdown("baseline", [])
        self.table = w.HTML()
        self.chart_outs = {
            title: w.Output() for title in ("accuracy vs size", "latency", "throughput", "training curves")
        }
        for out in self.chart_outs.values():
            out.add_class("wb-chart")
        self.comparison = w.HTML()
        self.code_run = _dropdown("code for", CODE_CHOICES)
        self.code_view = w.HTML()
        self.config_path = w.Text(
            value=str(self.store.root / "panel-config.json"),
            description="config file",
            continuous_update=False,
            style=STYLE,
            layout=w.Layout(width="500px"),
        )
        buttons = self.buttons = {name: w.Button(description=name) for name in ("Use these settings", "Save", "Load")}

        self.run_button.on_click(self._handler(self.run_current))
        self.generate_button.on_click(self._handler(self.generate))
        buttons["Use these settings"].on_click(
            self._handler(
                lambda: (
                    self.set_config(self._result(self.code_run.value).config)
                    if self.code_run.value not in ("", SEARCH)
                    else None
                )
            )
        )
        buttons["Save"].on_click(self._handler(self.save))
        buttons["Load"].on_click(self._handler(self.load))
        self.scope.observe(lambda _: self._refresh_results(), names="value")
        self.baseline.observe(lambda _: None if self._syncing else self._draw_charts(self.frame()), names="value")
        self.code_run.observe(lambda _: None if self._syncing else self._show_code(), names="value")

        tabs: dict[str, list[w.Widget]] = {}
        for path, widget in c.items():
            section = path.split(".")[0] if "." in path else ""
            tabs.setdefault(TABS.get(section, section.title()), []).append(widget)
        sections = {title: _grid(*widgets) for title, widgets in tabs.items() if title != "Compression"}
        sections["Compression"] = w.VBox([self._compression_box(), _grid(*tabs.get("Compression", []))])
        self.search_tab = SearchTab(self, self._search_space)
        sections["Search"] = self.search_tab.view
        charts = w.Tab(children=[*self.chart_outs.values(), self.comparison], titles=[*self.chart_outs, "comparison"])
        self.view = w.VBox(
            [
                self.task,
                w.Tab(children=list(sections.values()), titles=list(sections)),
                w.HBox([self.run_button, self.progress, self.progress_label]),
                self.message,
                self.live_out,
                self.writing,
                w.HBox([self.scope, self.baseline]),
                self.table,
                charts,
                w.HBox([self.code_run, buttons["Use these settings"]]),
                self.code_view,
                w.HBox([self.config_path, buttons["Save"], buttons["Load"]]),
                w.Accordion(children=[self.log], titles=["log (tracebacks of failed runs)"]),
            ]
        )
        self.view.add_class("wb-panel")

    def _handler(self, action: Callable[[], Any]) -> Callable[[w.Button], None]:
        """A button callback that shows any error as one line; anything else it prints or raises lands
        in the panel's log instead of vanishing."""

        @self.log.capture()
        def on_click(_button: w.Button) -> None:
            try:
                action()
            except (OSError, ValueError, KeyError) as e:
                self._say(one_line(e), "error")

        return on_click

    # --- compression -------------------------------------------------------------------------
    def _compression_box(self) -> w.Widget:
        """A step-kind dropdown and the step's fields, built from whatever step types are registered."""
        self.step_kind = _dropdown("add step", steps_for(self._config.task))
        self.step_form = w.VBox()
        self.steps_view = w.HTML()
        add, clear = w.Button(description="Add step", icon="plus"), w.Button(description="Clear steps")
        recipe = w.Button(
            description="Add recommended pruning",
            layout=WIDE,
            tooltip="the measured recipe: Taylor pruning of half the channels in 3 steps with fine-tuning "
            "between, then 5 fine-tune epochs (within a point of accuracy on digits)",
        )
        self.buttons.update({"Add step": add, "Clear steps": clear, "Add recommended pruning": recipe})
        add.on_click(self._handler(self.add_step))
        clear.on_click(self._handler(lambda: self._set_steps(())))
        recipe.on_click(self._handler(lambda: self._set_steps(self._config.compress + recommended_pruning())))
        self.step_kind.observe(lambda _: self._build_step_form(), names="value")
        self._build_step_form()
        return w.VBox([self.steps_view, self.step_kind, self.step_form, w.HBox([add, clear]), recipe])

    def _build_step_form(self) -> None:
        """The chosen step's fields, under the line it describes itself with (family, needs, modes)."""
        self.step_fields = {}
        step = step_types()[self.step_kind.value]
        self.step_summary = w.HTML(f"<i>{html.escape(step.summary())}</i>")
        for f in dataclasses.fields(step):
            default = _default(f)
            if isinstance(default, bool):
                widget = w.Checkbox(value=default, description=f.name, style=STYLE, layout=WIDE)
            elif isinstance(default, (int, float)):
                widget = (w.IntText if isinstance(default, int) else w.FloatText)(
                    value=default, description=f.name, style=STYLE, layout=WIDE
                )
            else:  # str as typed; anything else as a Python literal, e.g. ("conv1",)
                text = (
                    default
                    if isinstance(default, str)
                    else ""
                    if default in (None, dataclasses.MISSING)
                    else repr(default)
                )
                widget = w.Text(value=text, description=f.name, style=STYLE, layout=WIDE)
            self.step_fields[f.name] = (widget, default)
        self.step_form.children = [self.step_summary, *(widget for widget, _ in self.step_fields.values())]

    def add_step(self) -> CompressStep:
        """Append the step the compression form describes to the config's ``compress`` list; text fields are
        read by the same parser as the CLI's ``--compress`` (``workbench.parse_step``)."""
        values = {name: widget.value for name, (widget, _) in self.step_fields.items()}
        step = build_step(self.step_kind.value, values)
        self._set_steps((*self._config.compress, step))
        return step

    def _set_steps(self, steps: tuple) -> None:
        self._config = dataclasses.replace(self._config, compress=tuple(steps))
        self._show_steps()
        self._check()  # the message line says what holds now, not what an earlier attempt said

    def _show_steps(self) -> None:
        if hasattr(self, "steps_view"):
            self.steps_view.value = f"<b>compression after training:</b> {html.escape(self._config.flat()['compress'])}"

    def _ipython_display_(self) -> None:
        display(self.view)

    def __repr__(self) -> str:
        return f"Workbench(store={str(self.store.root)!r}, runs this session={len(self.results)})"
