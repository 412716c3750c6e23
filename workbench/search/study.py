"""Searches as Optuna studies whose every trial is an ordinary ``workbench.run``.

The study holds what a worker needs to join it (space, base config, objectives, constraints,
strategy, budget) as a user attribute, so ``workbench search worker --study NAME --storage URL`` needs
nothing else. Each trial records the run id of its result row and each row records the study and
trial number (``search_study``, ``search_trial``). A trial a killed process left running is, on the
next start, told the values its stored row already holds, or failed and enqueued again when it never
finished: no finished trial is lost or run twice.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import socket
import stat
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .._errors import ConfigError, one_line
from ..config import RunConfig
from ..report import ResultStore
from ..tasks import get_task, task_of
from ..train import Callback
from .pareto import as_costs, direction, dominates, hypervolume, pareto_front
from .space import Space, default_space
from .strategies import STRATEGIES, _optuna, strategy_name

SETTINGS = "workbench"  # the study's user attribute that holds its settings
DEFAULT_OBJECTIVES = get_task("image").search_objectives  # an image classifier's; a search asks its base's task
# Copied into each trial, so every worker sees the numbers even when the row sits in another machine's store.
HEADLINE = (
    "accuracy",
    "size_bytes",
    "latency_ms",
    "latency_ms_spread",
    "latency_noisy",
    "params",
    "nonzero_params",
    "flops",
    "throughput_ips",
    "train_seconds",
    "measure_device_name",
    "train_device",
    # a language model's
    "loss",
    "perplexity",
    "decode_tps",
    "ttft_ms",
    "throughput_tps",
)
MAX_FAILURES_IN_A_ROW = 3
# Seconds a database server gets to answer a connection (WORKBENCH_STORAGE_TIMEOUT overrides): a port that
# accepts but never speaks (a firewall, a wrong service) would otherwise hang the search for minutes.
CONNECT_TIMEOUT_S = 10
JOURNAL_PROBE_BYTES = 1 << 20  # how much of a journal's first line is read to tell it is one


@dataclass(frozen=True)
class Settings:
    space: Space
    base: RunConfig
    objectives: tuple[str, ...]
    constraints: dict[str, float]  # metric -> bound: at most for lower-is-better metrics, at least otherwise
    strategy: str
    n_trials: int
    seed: int
    prune: bool  # stop poor trials early (one objective, accuracy): Optuna's median pruner
    # The budget the study began with: it sizes NSGA-II's population and TPE's random start, which must
    # not change when a later call raises or lowers n_trials.
    shaped_for: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "space": self.space.to_dict(),
            "base": self.base.to_dict(),
            "objectives": list(self.objectives),
            "constraints": self.constraints,
            "strategy": self.strategy,
            "n_trials": self.n_trials,
            "seed": self.seed,
            "prune": self.prune,
            "shaped_for": self.shaped_for,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Settings:
        return cls(
            Space.from_dict(d["space"]),
            RunConfig.from_dict(d["base"]),
            tuple(d["objectives"]),
            dict(d["constraints"]),
            d["strategy"],
            d["n_trials"],
            d["seed"],
            d["prune"],
            d.get("shaped_for", d["n_trials"]),
        )

    @property
    def prunes(self) -> bool:
        return self.prune and self.objectives == ("accuracy",)

    def violations(self, metrics: Mapping[str, Any]) -> list[float]:
        """Optuna's constraint values: <= 0 where a bound holds."""
        return [
            (metrics[m] - bound) if direction(m) == "minimize" else (bound - metrics[m])
            for m, bound in self.constraints.items()
        ]


@dataclass
class SearchResult:
    """A study's trials as result rows, their Pareto front and the baseline, and how the search ended."""

    study: Any  # optuna.Study
    settings: Settings
    trials: pd.DataFrame  # one row per finished trial: trial number, state, parameters, the run's row
    front: pd.DataFrame  # the feasible complete trials no other dominates on the objectives
    note: str = ""  # why it stopped (budget, time, greedy found no better neighbour)

    @property
    def baseline(self) -> pd.Series | None:
        rows = self.trials[self.trials["baseline"]] if len(self.trials) else self.trials
        return rows.iloc[0] if len(rows) else None

    def dominating_baseline(self) -> pd.DataFrame:
        """The complete, feasible trials not worse than the baseline on any objective and better on one."""
        base = self.baseline
        done = _complete(self.trials)
        if base is None or not len(done):
            return done.iloc[:0]
        costs, reference = (
            as_costs(done, self.settings.objectives),
            as_costs(base.to_frame().T, self.settings.objectives)[0],
        )
        return done[[dominates(c, reference) for c in costs]]

    def chart(self, objectives: Sequence[str] | None = None):
        from ..report.charts import pareto_chart

        return pareto_chart(self.trials, objectives or self.settings.objectives, front=self.front)


def storage_url(storage: str | None, store: ResultStore) -> str:
    """Where a study lives: ``None`` is an SQLite file in the result store (``runs/studies.db``)."""
    if storage is None:
        if store is None:
            raise ConfigError(
                "A study needs a storage URL when there is no result store: pass storage=... or store='runs'"
            )
        store.root.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{(store.root / 'studies.db').resolve()}"
    return str(storage)


def open_storage(storage: str | None, store: ResultStore):
    """An Optuna storage for a URL: ``sqlite:///FILE``, ``postgresql://...`` or ``journal:FILE`` (Optuna's
    journal file, safe for many processes on one machine); one line if it cannot be opened. A database
    server gets ``CONNECT_TIMEOUT_S`` seconds to answer; a journal file that holds something else is
    refused before anything is written to it.

    Example:
        >>> open_storage("journal:", None)
        Traceback (most recent call last):
        ...
        workbench.ConfigError: journal: needs a file, e.g. journal:runs/studies.log
    """
    optuna = _optuna()
    url = storage_url(storage, store)
    if url.startswith("journal:"):
        _check_journal(url)
    timeout = _connect_timeout()
    started = time.monotonic()
    try:
        if url == "memory":  # nothing kept: for examples and quick looks
            return optuna.storages.InMemoryStorage()
        if url.startswith("journal:"):
            from optuna.storages.journal import JournalFileBackend

            return optuna.storages.JournalStorage(JournalFileBackend(url[len("journal:") :]))
        # SQLite locks the whole file per write: several processes wait their turn instead of failing.
        engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}
        if url.startswith(("postgresql", "mysql")):  # libpq, psycopg and the MySQL drivers all take connect_timeout
            engine["connect_args"] = {"connect_timeout": max(1, math.ceil(timeout))}
        return optuna.storages.RDBStorage(url, engine_kwargs=engine)
    except Exception as e:  # noqa: BLE001 - any storage failure gets one clear line; sqlalchemy's errors span pages
        waited = time.monotonic() - started
        if url.startswith(("postgresql", "mysql")) and waited >= 0.9 * timeout:
            raise ConfigError(
                f"The study storage '{_shown_url(url)}' did not answer within {timeout:g} s: check that a "
                f"database server listens at that host and port ({one_line(e)})"
            ) from None
        raise ConfigError(f"Cannot open the study storage '{_shown_url(url)}': {one_line(e)}") from None


def _connect_timeout() -> float:
    text = os.environ.get("WORKBENCH_STORAGE_TIMEOUT", "")
    if not text:
        return CONNECT_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"WORKBENCH_STORAGE_TIMEOUT must be a number of seconds > 0 (got {text!r})")
    return value


def _shown_url(url: str) -> str:
    """``url`` with any password as ``***``: errors are printed and logged."""
    if "://" not in url:
        return url
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - a URL sqlalchemy cannot render, whyever: shown as given; it will say so itself
        return url


def _check_journal(url: str) -> None:
    """Refuse a ``journal:FILE`` that is not a file, or holds something other than an Optuna journal:
    Optuna would append a record to it first and only then fail to read it."""
    path = url[len("journal:") :]
    if not path:
        raise ConfigError("journal: needs a file, e.g. journal:runs/studies.log")
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return  # a new journal
    except OSError as e:
        raise ConfigError(f"Cannot open the study storage '{url}': {one_line(e)}") from None
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"The study storage '{url}' is not a regular file: give a journal file (a new one is made)")
    if info.st_size == 0:
        return
    try:
        with open(path, "rb") as f:
            first = f.readline(JOURNAL_PROBE_BYTES)
        record = json.loads(first)
    except OSError as e:
        raise ConfigError(f"Cannot open the study storage '{url}': {one_line(e)}") from None
    except (ValueError, RecursionError):  # not JSON, not UTF-8, no line end within the probe, or nested past reading
        record = None
    if not (isinstance(record, dict) and "op_code" in record):
        raise ConfigError(
            f"The study storage '{url}' holds something other than an Optuna journal (its first line is "
            f"not a journal record): give a new file or a study's journal; nothing was written to it"
        )


def _unused_name(stem: str, storage: Any) -> str:
    """``stem``, or ``stem-2``, ``stem-3``...: a default name must start a new study, and two searches
    started within the same second would otherwise share one."""
    taken = set(_optuna().study.get_all_study_names(storage=storage))
    return next(name for name in (stem, *(f"{stem}-{k}" for k in range(2, len(taken) + 3))) if name not in taken)


def _check_timeout(timeout: float | None, *, zero_runs_nothing: bool) -> None:
    if timeout is None:
        return
    ok = isinstance(timeout, (int, float)) and not isinstance(timeout, bool) and math.isfinite(timeout)
    if zero_runs_nothing and not (ok and timeout >= 0):
        raise ConfigError(
            f"timeout must be a number of seconds >= 0 (0 makes the study and runs no trial; leave it "
            f"out for no limit), got {timeout!r}"
        )
    if not zero_runs_nothing and not (ok and timeout > 0):
        raise ConfigError(f"timeout must be a number of seconds > 0 (leave it out for no limit), got {timeout!r}")


def search(
    space: Space | None = None,
    *,
    base: RunConfig | None = None,
    strategy: str = "auto",
    objectives: Sequence[str] | None = None,
    constraints: Mapping[str, float] | None = None,
    n_trials: int = 20,
    timeout: float | None = None,
    storage: str | None = None,
    study_name: str | None = None,
    seed: int = 0,
    prune: bool = True,
    store: ResultStore | str | os.PathLike = "runs",
    data_root: str | os.PathLike = "data",
    on_trial: Callable[[SearchResult], None] | None = None,
    progress: bool = True,
) -> SearchResult:
    """Search ``space`` (default: ``default_space()`` of the base's task) around ``base`` (default:
    ``RunConfig()``) with ``strategy`` (random, greedy, tpe, nsga2 / genetic; auto: TPE for one objective,
    NSGA-II for several) for the best ``objectives`` (result metrics, each in its schema direction; default:
    the task's, accuracy up, size and latency down for images, loss and size down and decode speed up for a
    language model) subject to ``constraints`` (``{"size_bytes": 20_000}``: at most;
    ``{"accuracy": 0.9}``: at least). The budget is ``n_trials`` trials in the study, all workers
    together, and ``timeout`` seconds for this call. The first trial is the baseline (``base`` itself).

    A study of the same name in the same storage is continued: its finished trials count toward the
    budget and are never run again, and its sampler is seeded past them, so it proposes new trials.
    ``on_trial(result_so_far)`` is called after each trial (the panel redraws from it).

    Example:
        >>> from workbench import ModelConfig, TrainConfig
        >>> from workbench.search import Float, Space
        >>> tiny = RunConfig(model=ModelConfig(name="mlp"), train=TrainConfig(epochs=1)).replace(**{"measure.iters": 3})
        >>> s = search(Space({"model.width": Float(0.25, 1.0)}), base=tiny, strategy="random", objectives=["accuracy"],
        ...            n_trials=2, storage="memory", store=None, progress=False)
        >>> len(s.trials), s.trials["baseline"].tolist()
        (2, [True, False])
    """
    optuna = _optuna()
    base = base or RunConfig()
    space = space or default_space(task=base.task)
    objectives = task_of(base).search_objectives if objectives is None else objectives
    objectives = (objectives,) if isinstance(objectives, str) else tuple(objectives)
    if not objectives:
        raise ConfigError("Give at least one objective, e.g. objectives=['accuracy', 'size_bytes']")
    directions = [direction(m) for m in objectives]
    twice = next((m for i, m in enumerate(objectives) if m in objectives[:i]), None)
    if twice is not None:
        raise ConfigError(f"The objectives name '{twice}' twice: give each metric once, e.g. accuracy,size_bytes")
    if constraints is not None and not isinstance(constraints, Mapping):
        raise ConfigError(
            f"constraints is a dict of metric -> bound, e.g. {{'size_bytes': 40000}} (got {constraints!r})"
        )
    for m, bound in (constraints or {}).items():
        direction(m)
        if not (isinstance(bound, (int, float)) and not isinstance(bound, bool) and math.isfinite(bound)):
            raise ConfigError(f"The constraint on {m} must be a finite number (got {bound!r}), e.g. {m}=40000")
    if not (isinstance(n_trials, int) and not isinstance(n_trials, bool) and n_trials >= 1):
        raise ConfigError(f"n_trials must be a whole number >= 1 (got {n_trials!r})")
    _check_timeout(timeout, zero_runs_nothing=True)
    if strategy == "auto":
        strategy = "tpe" if len(objectives) == 1 else "nsga2"
    settings = Settings(
        space,
        base,
        objectives,
        dict(constraints or {}),
        strategy_name(strategy),
        n_trials,
        seed,
        prune,
        shaped_for=n_trials,
    )
    space.check(base)
    store = ResultStore.open(store)
    opened = open_storage(storage, store)
    name = study_name or _unused_name(
        f"{settings.strategy}-{base.data.dataset}-{time.strftime('%Y%m%d-%H%M%S')}", opened
    )
    study = optuna.create_study(study_name=name, storage=opened, directions=directions, load_if_exists=True)
    stored = study.user_attrs.get(SETTINGS)
    if stored is not None:
        settings = dataclasses.replace(settings, shaped_for=stored.get("shaped_for", stored["n_trials"]))
    wanted = json.loads(json.dumps(settings.to_dict()))
    if stored is not None and {**stored, "n_trials": n_trials, "shaped_for": settings.shaped_for} != wanted:
        raise ConfigError(
            f"Study '{name}' exists with other settings (space, base, objectives, constraints, strategy or "
            "seed): continue it with the same ones (n_trials may change), or pick another study_name"
        )
    if stored != wanted:  # new, or a budget raised or lowered: workers read it from here
        study.set_user_attr(SETTINGS, wanted)
    study.sampler, study.pruner = _sampler(settings, seed + len(study.trials)), _pruner(settings)
    return _drive(_Driver(study, settings, store, data_root, on_trial), timeout, progress)


def worker(
    study_name: str,
    storage: str,
    *,
    store: ResultStore | str | os.PathLike = "runs",
    timeout: float | None = None,
    data_root: str | os.PathLike = "data",
    on_trial: Callable[[SearchResult], None] | None = None,
    progress: bool = True,
) -> SearchResult:
    """Join study ``study_name`` in ``storage`` and run its trials until its budget is spent. The
    settings come from the study; this worker's sampler seed is the study's plus its process id (and
    the trials so far), so workers do not propose the same trials."""
    _check_timeout(timeout, zero_runs_nothing=False)
    study, settings = load_study(study_name, storage, store=ResultStore.open(store), seed_offset=os.getpid())
    return _drive(_Driver(study, settings, ResultStore.open(store), data_root, on_trial), timeout, progress)


def load_study(study_name: str, storage: str | None, *, store: ResultStore | None = None, seed_offset: int = 0):
    """The Optuna study and its search settings; one line if there is no such study."""
    optuna = _optuna()
    opened = open_storage(storage, store)
    names = [s.study_name for s in optuna.get_all_study_summaries(opened)]
    if study_name not in names:
        raise ConfigError(
            f"No study '{study_name}' in {_shown_url(storage_url(storage, store))}: studies there: "
            f"{', '.join(names) or 'none'}"
        )
    probe = optuna.load_study(study_name=study_name, storage=opened)
    if SETTINGS not in probe.user_attrs:
        raise ConfigError(f"Study '{study_name}' was not made by workbench.search (no '{SETTINGS}' settings)")
    settings = Settings.from_dict(probe.user_attrs[SETTINGS])
    study = optuna.load_study(
        study_name=study_name,
        storage=opened,
        pruner=_pruner(settings),
        sampler=_sampler(settings, settings.seed + seed_offset + len(probe.trials)),
    )
    return study, settings


def show(
    study_name: str, storage: str | None = None, *, store: ResultStore | str | os.PathLike = "runs"
) -> SearchResult:
    """A stored study as a ``SearchResult``, without running anything."""
    study, settings = load_study(study_name, storage, store=ResultStore.open(store))
    return _result(study, settings, ResultStore.open(store), note="")


# ---------------------------------------------------------------------------------------------
# Driving a study


def _sampler(settings: Settings, seed: int):
    return STRATEGIES.get(settings.strategy)(
        seed % 2**32, len(settings.objectives), _constraints if settings.constraints else None, settings.shaped_for
    )


def _constraints(trial) -> list[float]:
    return trial.user_attrs.get("constraints", [])


def _pruner(settings: Settings):
    optuna = _optuna()
    # Prune from the second epoch on, once three trials finished: an epoch-1 test accuracy says little.
    return (
        optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1)
        if settings.prunes
        else optuna.pruners.NopPruner()
    )


@dataclass
class _Driver:
    """What running a study's trials needs, in one place."""

    study: Any
    settings: Settings
    store: ResultStore | None
    data_root: str | os.PathLike
    on_trial: Callable[[SearchResult], None] | None
    bar: Any = None
    deadline: float | None = None

    def past_deadline(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def budget_left(self) -> bool:
        return _used(self.study) < self.settings.n_trials and not self.past_deadline()


def _drive(d: _Driver, timeout: float | None, progress: bool) -> SearchResult:
    from tqdm.auto import tqdm

    study, settings = d.study, d.settings
    _recover(study, settings, d.store)
    if not study.trials:
        study.enqueue_trial(settings.space.baseline(settings.base), user_attrs={"baseline": True})
    d.deadline = time.monotonic() + timeout if timeout is not None else None
    d.bar = tqdm(
        total=settings.n_trials,
        initial=_used(study),
        desc=f"search {study.study_name}",
        unit="trial",
        disable=not progress,
    )
    note = ""
    try:
        if settings.strategy == "greedy":
            note = _greedy(d)
        else:
            failures = 0
            while d.budget_left():
                failures = failures + 1 if _run_one(d) == "FAIL" else 0
                if failures >= MAX_FAILURES_IN_A_ROW:
                    raise RuntimeError(
                        f"{failures} trials in a row failed; the last: {study.trials[-1].user_attrs.get('error', '?')}"
                    )
        note = note or (
            "stopped at the time limit"
            if d.past_deadline() and _used(study) < settings.n_trials
            else f"budget of {settings.n_trials} trials spent"
        )
    finally:
        d.bar.close()
    return _result(study, settings, d.store, note)


def _used(study) -> int:
    """Trials that count toward the budget: finished (failed ones too) or running; an interrupted trial
    does not count, its retry does."""
    optuna = _optuna()
    S = optuna.trial.TrialState
    return sum(
        1
        for t in study.get_trials(deepcopy=False)
        if t.state in (S.COMPLETE, S.PRUNED, S.RUNNING) or (t.state == S.FAIL and not t.user_attrs.get("interrupted"))
    )


class _ReportAccuracy(Callback):
    """Feeds each epoch's test accuracy to the trial; stops training when Optuna's pruner says so."""

    def __init__(self, trial):
        self.trial, self.reported = trial, False

    def on_epoch_end(self, state, record):
        if record.get("test_accuracy") is None:
            return
        self.trial.report(record["test_accuracy"], step=record["epoch"])
        self.reported = True
        if self.trial.should_prune():
            state.stop = (
                f"pruned: test accuracy {record['test_accuracy']:.1%} after epoch {record['epoch']} is below "
                "the median of the earlier trials there"
            )


def _run_one(d: _Driver, fixed: Mapping[str, Any] | None = None) -> str:
    """Ask for a trial (``fixed`` parameters enqueued first), run it, tell the study; returns its state."""
    from ..pipeline import run

    optuna = _optuna()
    study, settings, store, bar = d.study, d.settings, d.store, d.bar
    if fixed is not None:
        study.enqueue_trial(dict(fixed))
    trial = study.ask()
    trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
    try:
        values = settings.space.suggest(trial)
        config = settings.space.config(settings.base, values).replace(name=f"{study.study_name} #{trial.number}")
        reporter = _ReportAccuracy(trial)
        with warnings.catch_warnings(record=True) as caught:  # kept with the trial, not printed once per trial
            warnings.simplefilter("always")
            result = run(
                config,
                store=store,
                progress=False,
                callbacks=[reporter] if settings.prunes else [],
                data_root=d.data_root,
                tags={"search_study": study.study_name, "search_trial": trial.number},
            )
        if caught:
            trial.set_user_attr("warnings", list(dict.fromkeys(str(w.message).splitlines()[0] for w in caught)))
        if settings.prunes and not reporter.reported:
            for record in result.history:  # a reused training reported nothing: its curve still informs the pruner
                if record.get("test_accuracy") is not None:
                    trial.report(record["test_accuracy"], step=record["epoch"])
    except (KeyboardInterrupt, SystemExit):
        trial.set_user_attr("interrupted", True)
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        raise
    except Exception as e:  # noqa: BLE001 - a trial that cannot run, whyever, is recorded as failed; the search goes on
        trial.set_user_attr("error", one_line(e))
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        state = "FAIL"
    else:
        state = _tell(study, settings, trial.number, result.run_id, result.status, result.metrics)
    bar.update(1)
    bar.set_postfix_str(_best_text(study, settings))
    if d.on_trial is not None:
        d.on_trial(_result(study, settings, store, note=f"{_used(study)}/{settings.n_trials} trials"))
    return state


def _tell(study, settings: Settings, number: int, run_id: str, status: str, metrics: Mapping[str, Any]) -> str:
    optuna = _optuna()
    S = optuna.trial.TrialState
    storage, trial_id = study._storage, study._storage.get_trial_id_from_study_id_trial_number(study._study_id, number)
    keep = dict.fromkeys((*HEADLINE, *settings.objectives, *settings.constraints))
    headline = {k: metrics[k] for k in keep if metrics.get(k) is not None}
    storage.set_trial_user_attr(trial_id, "run_id", run_id)
    storage.set_trial_user_attr(trial_id, "metrics", headline)
    missing = [m for m in (*settings.objectives, *settings.constraints) if metrics.get(m) is None]
    if status == "pruned":
        study.tell(number, state=S.PRUNED)
        return "PRUNED"
    if missing:
        storage.set_trial_user_attr(trial_id, "error", f"the run measured no {', '.join(missing)} (status {status})")
        study.tell(number, state=S.FAIL)
        return "FAIL"
    storage.set_trial_user_attr(trial_id, "constraints", settings.violations(metrics))
    study.tell(number, [float(metrics[m]) for m in settings.objectives])
    return "COMPLETE"


def _best_text(study, settings: Settings) -> str:
    done = [t for t in study.get_trials(deepcopy=False) if t.values and _feasible(t)]
    if not done:
        return ""
    m = settings.objectives[0]
    pick = (max if direction(m) == "maximize" else min)(done, key=lambda t: t.values[0])
    from ..report import METRICS, format_number

    return f"best {METRICS[m].label} {format_number(pick.values[0] * METRICS[m].scale)} {METRICS[m].unit.split(',')[0]}"


def _feasible(trial) -> bool:
    return all(v <= 0 for v in trial.user_attrs.get("constraints", []))


def _recover(study, settings: Settings, store: ResultStore | None) -> None:
    """Trials a dead process on this machine left running: told their stored row's values when the
    run finished, else failed as interrupted; every interrupted trial not yet retried is enqueued again."""
    optuna = _optuna()
    S = optuna.trial.TrialState
    host = socket.gethostname()
    rows = {}
    if store is not None:
        rows = {
            r.tags.get("search_trial"): r for r in store.results() if r.tags.get("search_study") == study.study_name
        }
    for t in study.get_trials(deepcopy=False, states=(S.RUNNING,)):
        where, _, pid = t.user_attrs.get("worker", "").rpartition(":")
        if where != host or not pid.isdigit() or (_alive(int(pid)) and int(pid) != os.getpid()):
            continue  # another machine's, or a live worker's
        row = rows.get(t.number)
        if row is not None:
            _tell(study, settings, t.number, row.run_id, row.status, row.metrics)
        else:
            study._storage.set_trial_user_attr(t._trial_id, "interrupted", True)
            study.tell(t.number, state=S.FAIL)
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get("retry_of") for t in trials}
    for t in trials:
        if t.state == S.FAIL and t.user_attrs.get("interrupted") and t.number not in retried:
            study.enqueue_trial(
                t.params,
                user_attrs={"retry_of": t.number, **({"baseline": True} if t.user_attrs.get("baseline") else {})},
            )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ---------------------------------------------------------------------------------------------
# Greedy: coordinate descent from the baseline on the ask-and-tell interface


def _greedy(d: _Driver) -> str:
    study, settings, space = d.study, d.settings, d.settings.space
    current = space.baseline(settings.base)
    scored = _scores(study, settings)
    if d.past_deadline():
        return "stopped at the time limit"
    if _key(current) not in scored:
        waiting = study.get_trials(deepcopy=False, states=(_optuna().trial.TrialState.WAITING,))
        _run_one(d, fixed=None if waiting else current)  # asks the enqueued baseline
        scored = _scores(study, settings)
    while True:
        best, best_score = None, scored.get(_key(current))
        if best_score is None:
            return "greedy stopped: the baseline trial did not complete"
        for candidate in _neighbours(space, current):
            if _key(candidate) not in scored:
                if not d.budget_left():
                    spent = f"with the budget of {settings.n_trials} trials spent"
                    why = "at the time limit" if d.past_deadline() else spent
                    return f"greedy stopped {why}, before its neighbours were all tried"
                _run_one(d, fixed=candidate)
                scored = _scores(study, settings)
            score = scored.get(_key(candidate))
            if score is not None and _better(score, best_score, len(settings.objectives)):
                best, best_score = candidate, score
        if best is None:
            return "greedy converged: no neighbour (one knob changed) improves on the current configuration"
        current = best


def _neighbours(space: Space, current: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every configuration one knob away; changing a knob that switches others on gives them their
    baseline value (the first of their range), switching others off drops them."""
    out = []
    for name, value in current.items():
        for other in space.params[name].neighbours(value):
            candidate = dict(current)
            candidate[name] = other
            out.append(_settle(space, candidate))
    return out


def _settle(space: Space, values: dict[str, Any]) -> dict[str, Any]:
    settled: dict[str, Any] = {}
    for name, param in space.params.items():
        if space.active(name, settled):
            settled[name] = values[name] if name in values else param.extremes()[0]
    return settled


def _key(values: Mapping[str, Any]) -> tuple:
    return tuple(sorted((k, repr(v)) for k, v in values.items()))


def _scores(study, settings: Settings) -> dict[tuple, tuple]:
    """Params -> (feasible, total violation, costs) of every complete trial; a pruned or failed trial
    scores worst."""
    optuna = _optuna()
    out = {}
    for t in study.get_trials(deepcopy=False):
        if t.state == optuna.trial.TrialState.COMPLETE:
            costs = tuple(v * (-1 if direction(m) == "maximize" else 1) for m, v in zip(settings.objectives, t.values))
            violation = sum(max(0.0, v) for v in t.user_attrs.get("constraints", []))
            out[_key(t.params)] = (violation == 0, violation, costs)
        elif t.state in (optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL) and not t.user_attrs.get(
            "interrupted"
        ):
            out.setdefault(_key(t.params), (False, float("inf"), ()))
    return out


def _better(a: tuple, b: tuple, n: int) -> bool:
    """Feasible beats infeasible, less violation beats more; then one objective compares, several
    must dominate."""
    if a[0] != b[0]:
        return a[0]
    if not a[0]:
        return a[1] < b[1]
    return a[2][0] < b[2][0] if n == 1 else dominates(a[2], b[2])


# ---------------------------------------------------------------------------------------------
# Results


def _result(study, settings: Settings, store: ResultStore | None, note: str) -> SearchResult:
    trials = trials_frame(study, store)
    done = _complete(trials)
    feasible = done[done["feasible"]] if len(done) else done
    return SearchResult(
        study, settings, trials, pareto_front(feasible, settings.objectives) if len(feasible) else feasible, note
    )


def _complete(trials: pd.DataFrame) -> pd.DataFrame:
    return trials[trials["trial_state"] == "COMPLETE"] if len(trials) else trials


def trials_frame(study, store: ResultStore | None = None) -> pd.DataFrame:
    """One row per finished trial: trial number, state, strategy, whether it is the baseline and
    feasible, its parameters (``param.<key>``), the headline metrics it recorded and, where its row is
    in ``store``, the whole result row."""
    optuna = _optuna()
    S = optuna.trial.TrialState
    rows = {}
    if store is not None:
        rows = {r.run_id: r for r in store.results() if r.tags.get("search_study") == study.study_name}
    settings = study.user_attrs.get(SETTINGS, {})
    out = []
    for t in study.get_trials(deepcopy=False, states=(S.COMPLETE, S.PRUNED, S.FAIL)):
        if t.user_attrs.get("interrupted"):
            continue
        record: dict[str, Any] = {}
        run_id = t.user_attrs.get("run_id")
        if run_id in rows:
            record.update(rows[run_id].row())
        record.update({k: v for k, v in t.user_attrs.get("metrics", {}).items() if k not in record})
        for m, v in zip(settings.get("objectives", []), t.values or []):  # the objectives, whoever holds the row
            record.setdefault(m, v)
        record.update(
            {
                "trial": t.number,
                "trial_state": t.state.name,
                "strategy": settings.get("strategy"),
                "baseline": bool(t.user_attrs.get("baseline")),
                "feasible": _feasible(t),
                "trial_seconds": (t.datetime_complete - t.datetime_start).total_seconds()
                if t.datetime_complete
                else None,
                "error": t.user_attrs.get("error"),
                "run_id": run_id,
                **{f"param.{k}": round(v, 12) if isinstance(v, float) else v for k, v in t.params.items()},
            }
        )
        record.setdefault("name", f"{study.study_name} #{t.number}")
        out.append(record)
    df = pd.DataFrame(out)
    return (
        df.sort_values("trial").reset_index(drop=True)
        if len(df)
        else pd.DataFrame(columns=["trial", "trial_state", "strategy", "baseline", "feasible"])
    )


# ---------------------------------------------------------------------------------------------
# Which strategy wins here


@dataclass
class Comparison:
    """Per strategy and seed: the best found and the hypervolume after each trial; the reference and
    ideal points the hypervolume is measured between."""

    runs: pd.DataFrame  # one row per (strategy, seed): best, hypervolume, trials
    history: pd.DataFrame  # strategy, seed, trial (1-based count), hypervolume so far
    objectives: tuple[str, ...]
    reference: dict[str, float]  # a tenth of the range beyond the worst value seen on each objective, over all trials
    ideal: dict[str, float]  # the best value seen on each objective
    searches: dict[tuple[str, int], SearchResult] = field(default_factory=dict)

    @property
    def table(self) -> pd.DataFrame:
        """Per strategy: the best found (median over seeds, and its range) and the hypervolume (mean, std)."""
        m = self.objectives[0]
        g = self.runs.groupby("strategy", sort=False)
        table = pd.DataFrame(
            {
                "seeds": g.size(),
                f"best {m} (median)": g[f"best_{m}"].median(),
                f"best {m} (min)": g[f"best_{m}"].min(),
                f"best {m} (max)": g[f"best_{m}"].max(),
                "hypervolume (mean)": g["hypervolume"].mean(),
                "hypervolume (std)": g["hypervolume"].std(ddof=1),
                "trials (mean)": g["trials"].mean(),
            }
        )
        table.attrs["reference"] = self.reference
        return table

    def chart(self):
        from ..report.charts import strategy_comparison_chart

        return strategy_comparison_chart(self)


def compare_strategies(
    strategies: Sequence[str] = ("random", "greedy", "nsga2"),
    *,
    n_trials: int = 12,
    seeds: Sequence[int] = (0, 1, 2),
    space: Space | None = None,
    base: RunConfig | None = None,
    objectives: Sequence[str] = DEFAULT_OBJECTIVES,
    constraints: Mapping[str, float] | None = None,
    storage: str | None = None,
    study_prefix: str | None = None,
    store: ResultStore | str | os.PathLike = "runs",
    data_root: str | os.PathLike = "data",
    progress: bool = True,
) -> Comparison:
    """Run every strategy with the same budget, space, base and objectives once per seed (each its own
    study) and compare: the best found on the first objective, and the hypervolume the feasible
    trials dominate, as a share of the box between the worst value seen on each objective (the
    reference point) and the best (the ideal), both over every strategy's trials so all share one box.

    Trials that repeat a configuration reuse its training (``workbench.run``'s train-once reuse); the
    timing is measured again.
    """
    prefix = study_prefix or f"compare-{time.strftime('%Y%m%d-%H%M%S')}"
    objectives = tuple(objectives)
    searches = {}
    for seed in seeds:
        for name in strategies:
            searches[(strategy_name(name), seed)] = search(
                space,
                base=base,
                strategy=name,
                objectives=objectives,
                constraints=constraints,
                n_trials=n_trials,
                storage=storage,
                study_name=f"{prefix}-{strategy_name(name)}-s{seed}",
                seed=seed,
                store=store,
                data_root=data_root,
                progress=progress,
            )
    every = pd.concat([_complete(s.trials) for s in searches.values()], ignore_index=True)
    every = every[every["feasible"]] if len(every) else every
    if not len(every):
        raise RuntimeError("No strategy completed a feasible trial: loosen the constraints or raise n_trials")
    costs = as_costs(every, objectives)
    # A reference a tenth of the range beyond the worst seen, so the worst trials still add a sliver.
    worst, ideal = costs.max(axis=0), costs.min(axis=0)
    reference = worst + 0.1 * np.where(worst > ideal, worst - ideal, np.abs(worst) + 1e-12)
    runs, history = [], []
    for (name, seed), s in searches.items():
        done = _complete(s.trials)
        done = done[done["feasible"]] if len(done) else done
        so_far = []
        for k, (_, trial) in enumerate(s.trials.iterrows(), start=1):
            if trial["trial_state"] == "COMPLETE" and trial["feasible"]:
                so_far.append(as_costs(trial.to_frame().T, objectives)[0])
            history.append(
                {
                    "strategy": name,
                    "seed": seed,
                    "trial": k,
                    "hypervolume": hypervolume(np.array(so_far), reference, ideal) if so_far else 0.0,
                }
            )
        m = objectives[0]
        best = (done[m].max() if direction(m) == "maximize" else done[m].min()) if len(done) else np.nan
        runs.append(
            {
                "strategy": name,
                "seed": seed,
                f"best_{m}": best,
                "trials": len(s.trials),
                "hypervolume": history[-1]["hypervolume"],
                "study": s.study.study_name,
                "note": s.note,
            }
        )
    sign = np.array([-1 if direction(m) == "maximize" else 1 for m in objectives])
    return Comparison(
        pd.DataFrame(runs),
        pd.DataFrame(history),
        objectives,
        dict(zip(objectives, (reference * sign).tolist())),
        dict(zip(objectives, (ideal * sign).tolist())),
        searches,
    )
