"""The panel's Search tab: ``workbench.search`` around the panel's current settings, with a Pareto
chart, a trial table and progress that redraw as each trial finishes.

The tab only builds the call's arguments and shows what comes back: the search is the one
``search(...)`` call its code view prints, run synchronously in the cell; the Run-search
button calls ``panel.run_search()``, which a notebook's last cell can call headlessly.

Updates per trial: ``search(on_trial=...)`` hands the tab the study's trials and front after each
trial, and the tab redraws from them.
"""

from __future__ import annotations

import html
import traceback
from typing import Any

import ipywidgets as w
import pandas as pd

from .._errors import ConfigError, one_line
from ..report import METRICS, charts, format_number, readable
from ..search import DEFAULT_OBJECTIVES, Space, default_space, list_strategies, search, strategy_name
from ..search.pareto import direction
from ..tasks import get_task
from .code import search_code
from .live import show

OBJECTIVES = (
    "accuracy",
    "loss",
    "perplexity",
    "size_bytes",
    "latency_ms",
    "params",
    "flops",
    "decode_tps",
    "ttft_ms",
    "throughput_tps",
)  # the choices, in the order a search gets them: the first chosen is the chart's y axis
STYLE = {"description_width": "150px"}
WIDE = w.Layout(width="390px")
SEARCH = "search"  # the panel's "code for" choice that shows this tab's search(...) call (run ids are timestamps)


def _strategy_options() -> list[tuple[str, str]]:
    """The registered strategies, each labelled with its aliases (``nsga2 (genetic)``), and ``auto``,
    which ``search`` resolves by the number of objectives."""
    names = list(dict.fromkeys(strategy_name(n) for n in list_strategies()))
    aliases = {n: [a for a in list_strategies() if a != n and strategy_name(a) == n] for n in names}
    return [(f"{n} ({', '.join(aliases[n])})" if aliases[n] else n, n) for n in names] + [
        ("auto (tpe for one objective, nsga2 for several)", "auto")
    ]


def best_text(trials: pd.DataFrame, objectives: tuple[str, ...]) -> str:
    """``best test accuracy 96.1% (trial #3)``: the best first objective among the feasible complete trials."""
    m = objectives[0] if objectives else None
    done = (
        trials[(trials["trial_state"] == "COMPLETE") & trials["feasible"].astype(bool)]
        if len(trials) and m
        else trials.iloc[:0]
    )
    if not len(done) or m not in done:
        return ""
    values = pd.to_numeric(done[m], errors="coerce")
    at = values.idxmax() if direction(m) == "maximize" else values.idxmin()
    unit = METRICS[m].unit.split(",")[0]
    value = format_number(values[at] * METRICS[m].scale)
    return f"best {METRICS[m].label} {value}{'' if unit == '%' else ' '}{unit} (trial #{done.loc[at, 'trial']})"


def trial_table(trials: pd.DataFrame, front: pd.DataFrame, objectives: tuple[str, ...], space: Space) -> pd.DataFrame:
    """One row per finished trial: number, state, baseline / front, the knobs the space sets, the metrics."""
    if not len(trials):
        return pd.DataFrame()
    fields = {"trial": "trial", "trial_state": "state"}
    fields.update({k: k for k in space.params if not k.startswith("compress.")})
    if space.slots():
        fields["compress"] = "compression"
    metrics = list(dict.fromkeys([*objectives, "accuracy", "size_bytes", "latency_ms"]))
    table = readable(trials, metrics=metrics, fields=fields).drop(columns=["run"])
    on_front = set(front["trial"]) if len(front) else set()
    roles = [
        ", ".join(r for r, holds in (("baseline", bool(b)), ("front", t in on_front)) if holds)
        for b, t in zip(trials["baseline"], trials["trial"])
    ]
    table.insert(2, "role", roles)
    if "error" in trials and trials["error"].notna().any():
        table["error"] = trials["error"].fillna("").to_numpy()
    return table


class SearchTab:
    """The Search tab's controls, its Run-search button and what it shows; ``panel.search_tab`` of a
    ``Workbench`` panel, whose config is the base, whose store takes the trials and whose message line
    and log report.

    ``space`` is the search space (``None``: ``default_space()``), ``constraints`` bounds passed to the
    search as they are (``{"size_bytes": 20_000}``: at most). The base config is always the panel's
    current one.

    Example:
        >>> import tempfile
        >>> from workbench.ui import Workbench
        >>> tab = Workbench(store=tempfile.mkdtemp()).search_tab
        >>> tab.controls["strategy"].value = "random"
        >>> tab.controls["objectives"].value = ("size_bytes", "accuracy")
        >>> {k: tab.settings()[k] for k in ("strategy", "objectives", "n_trials", "timeout")}
        {'strategy': 'random', 'objectives': ('accuracy', 'size_bytes'), 'n_trials': 20, 'timeout': None}
    """

    def __init__(self, panel: Any, space: Space | None = None, constraints: dict[str, float] | None = None):
        self.panel = panel
        self._space = space
        self.constraints = dict(constraints or {})
        self.result = None  # the last search's SearchResult
        self.trials = pd.DataFrame(
            columns=["trial", "trial_state", "strategy", "baseline", "feasible"]
        )  # what the table shows
        self.front = self.trials
        self.figure = None  # the Pareto chart last drawn
        self.redraws: list[
            int
        ] = []  # the trials shown at each redraw of the last search: one per finished trial, then the final
        self._build()

    # --- state -------------------------------------------------------------------------------
    @property
    def space(self) -> Space:
        return self._space or default_space(task=self.panel.config.task)

    def follow_task(self, task: str) -> None:
        """The task's default objectives, when the panel switches task (a given space stays as given)."""
        self.controls["objectives"].value = get_task(task).search_objectives
        self.refresh()

    @space.setter
    def space(self, space: Space | None) -> None:
        self._space = space
        self.refresh()

    def settings(self) -> dict[str, Any]:
        """The ``search()`` arguments the tab describes (the store apart): the panel's config as the base."""
        c = self.controls
        return {
            "space": self._space,
            "base": self.panel.config,
            "strategy": c["strategy"].value,
            # In the options' order, whatever order they were picked in: the first is the chart's y axis.
            "objectives": tuple(o for o in OBJECTIVES if o in c["objectives"].value),
            "constraints": dict(self.constraints),
            "n_trials": int(c["n_trials"].value),
            "timeout": float(c["timeout"].value) or None,
            "storage": c["storage"].value.strip() or None,
            "study_name": c["study_name"].value.strip() or None,
            "seed": int(c["seed"].value),
        }

    def code(self) -> str:
        """The Python that runs this search: the panel's config as the base and one ``search(...)`` call."""
        kw = self.settings()
        return search_code(kw.pop("base"), store=str(self.panel.store.root), **kw)

    def refresh(self, runnable: bool | None = None) -> None:
        """Follow the panel's settings: the code views, and the button while the base config can run."""
        if runnable is not None:
            self.button.disabled = not runnable
        self.code_view.value = f"<pre class='wb-search-code'>{html.escape(self.code())}</pre>"

    def _on_setting(self) -> None:
        self.refresh()
        if self.panel.code_run.value == SEARCH:  # the panel's "code for" shows this search too
            self.panel._show_code()

    # --- running -----------------------------------------------------------------------------
    def run(self):
        """Run the search the tab describes, redrawing after every trial; the ``SearchResult``, or None
        (the panel's message line says why) when it could not run."""
        p = self.panel
        kw = self.settings()
        problem = p.problem(kw["base"])
        if problem:
            p._say(problem, "error")
            return None
        space = self.space
        try:
            strategy = kw["strategy"] if kw["strategy"] == "auto" else strategy_name(kw["strategy"])
        except (ConfigError, ValueError) as e:
            p._say(one_line(e), "error")
            return None

        def on_trial(so_far) -> None:  # search() calls it after each trial, the continued study's earlier ones included
            try:
                self._draw(so_far.trials, so_far.front, kw, "running the next trial…")
            except Exception:  # noqa: BLE001 - no drawing problem of any kind may stop the search
                with p.log:
                    traceback.print_exc()

        self.redraws = []
        self.progress.max, self.progress.value, self.progress.bar_style = kw["n_trials"], 0, "info"
        self.label.value = f"0/{kw['n_trials']} trials: running the first…"
        p._say(f"searching with {strategy}: {kw['n_trials']} trials over {len(space.params)} knobs…", "busy")
        try:
            result = search(**kw, store=p.store, data_root=p.data_root, on_trial=on_trial, progress=False)
        except Exception as e:  # noqa: BLE001 - the panel survives any failed search; the log keeps the traceback
            with p.log:
                traceback.print_exc()
            self.progress.bar_style = "danger"
            p._say(one_line(e), "error")
            return None
        self.result = result
        self._draw(result.trials, result.front, kw, result.note)
        self.progress.bar_style = "success"
        p._refresh_results()  # the whole-store view and the teacher list hold the trials' rows
        better = len(result.dominating_baseline())
        p._say(
            f"search {result.study.study_name}: {len(result.trials)} trials, {len(result.front)} on the Pareto front"
            + (f", {better} dominating the baseline (no worse on any objective, better on one)" if better else "")
            + f"; {result.note}",
            "ok",
        )
        return result

    def _draw(self, trials: pd.DataFrame, front: pd.DataFrame, kw: dict[str, Any], note: str) -> None:
        self.trials, self.front = trials, front
        self.redraws.append(len(trials))
        budget, objectives = kw["n_trials"], kw["objectives"]
        self.progress.max, self.progress.value = max(budget, len(trials)), len(trials)
        self.label.value = "; ".join(
            t for t in (f"{len(trials)}/{budget} trials", best_text(trials, objectives), note) if t
        )
        table = trial_table(trials, front, objectives, self.space)
        self.table.value = table.to_html(index=False, classes="wb-trials", float_format=format_number, na_rep="–")
        if (trials["trial_state"] == "COMPLETE").any():
            self.figure = charts.pareto_chart(trials, objectives, front=front, theme=self.panel.theme)
            show(self.chart_out, self.figure)

    # --- view --------------------------------------------------------------------------------
    def _build(self) -> None:
        labels = {m: METRICS[m].label for m in OBJECTIVES}
        c = self.controls = {
            "strategy": w.Dropdown(
                description="strategy", options=_strategy_options(), value="nsga2", style=STYLE, layout=WIDE
            ),
            "n_trials": w.BoundedIntText(
                description="budget (trials)", value=20, min=1, max=100_000, style=STYLE, layout=WIDE
            ),
            "timeout": w.BoundedFloatText(
                description="time limit (s, 0: none)", value=0, min=0, max=7 * 24 * 3600, style=STYLE, layout=WIDE
            ),
            "seed": w.IntText(description="sampler seed", value=0, style=STYLE, layout=WIDE),
            "objectives": w.SelectMultiple(
                description="objectives",
                options=[(labels[m], m) for m in OBJECTIVES],
                value=DEFAULT_OBJECTIVES,
                rows=len(OBJECTIVES),
                style=STYLE,
                layout=WIDE,
            ),
            "study_name": w.Text(
                description="study",
                placeholder="blank: a new study per search",
                continuous_update=False,
                style=STYLE,
                layout=WIDE,
            ),
            "storage": w.Text(
                description="storage",
                placeholder="blank: studies.db in the store",
                continuous_update=False,
                style=STYLE,
                layout=WIDE,
            ),
        }
        for widget in c.values():
            widget.observe(lambda _: self._on_setting(), names="value")
        self.button = w.Button(
            description="Run search",
            button_style="primary",
            icon="search",
            tooltip="run the search: every trial is a run in the store",
        )
        self.button.add_class("wb-run-search")
        self.button.on_click(self.panel._handler(self.run))
        self.progress = w.IntProgress(value=0, min=0, max=1, layout=w.Layout(width="300px"))
        self.label = w.Label()
        self.chart_out = w.Output()
        self.chart_out.add_class("wb-search-chart")
        self.table = w.HTML("<i>No trials yet: press Run search.</i>")
        self.code_view = w.HTML()
        note = w.HTML(
            "<p>The base config is the other tabs' settings; every trial changes some of them "
            "(the knobs of the search space) and is an ordinary run in the store. A study of the same name "
            "in the same storage continues: its finished trials count toward the budget.</p>"
        )
        self.view = w.VBox(
            [
                note,
                w.GridBox(
                    [
                        c["strategy"],
                        c["objectives"],
                        c["n_trials"],
                        c["timeout"],
                        c["seed"],
                        c["study_name"],
                        c["storage"],
                    ],
                    layout=w.Layout(grid_template_columns="repeat(2, 400px)"),
                ),
                w.HBox([self.button, self.progress, self.label]),
                self.chart_out,
                self.table,
                w.HTML("<b>code for this search</b> (the base is the panel's current settings):"),
                self.code_view,
            ]
        )
