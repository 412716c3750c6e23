"""Run the curated notebooks headless with papermill: the same path CI takes.

Each notebook keeps its small "smoke" parameters in its own metadata (``metadata.workbench.smoke``),
so the notebook, the CLI and the tests agree on what shrinks it to seconds. A notebook's last cell
writes ``metrics.json`` into its ``results_dir``. Every run adds its wall time, mode, parameters and
machine to ``OUT/timings.json`` (one entry per notebook, the latest run's), read back by
``notebook_timings``.
"""

from __future__ import annotations

import ast
import contextlib
import datetime
import json
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from .._errors import optional_import
from .._files import atomic_write_text, writable_problem
from ..measure import device_name
from ..report import jsonable
from ..train.threads import load_average

NOTEBOOK_DIR = Path(__file__).resolve().parents[2] / "notebooks"
TIMINGS = "timings.json"


def list_notebooks(folder: str | Path = NOTEBOOK_DIR) -> list[Path]:
    """The curated notebooks, in order (``NN_name.ipynb``)."""
    return sorted(Path(folder).glob("[0-9][0-9]_*.ipynb"))


def smoke_parameters(path: str | Path) -> dict[str, Any]:
    """The parameters that shrink a notebook to seconds, from its metadata."""
    meta = json.loads(Path(path).read_text())["metadata"]
    return dict(meta.get("workbench", {}).get("smoke", {}))


def _select(names: Iterable[str], folder: Path) -> list[Path]:
    notebooks = list_notebooks(folder)
    if not notebooks:
        raise FileNotFoundError(
            f"No notebooks (NN_name.ipynb) in {folder}: run from a checkout of the repository, "
            "installed with pip install -e ."
        )
    if not names:
        return notebooks
    chosen = []
    for name in names:
        if not str(name).strip():  # "" is a prefix of every name: it would run them all
            raise ValueError("An empty notebook name matches every notebook: name one (e.g. 01) or pass --all")
        hits = [p for p in notebooks if p.stem == name or p.name == name or p.stem.startswith(name)]
        if not hits:
            raise FileNotFoundError(f"No notebook matches '{name}'. Notebooks: {', '.join(p.stem for p in notebooks)}.")
        chosen += hits
    return chosen


def run_notebook(
    path: str | Path,
    parameters: dict[str, Any] | None = None,
    *,
    out: str | Path = "runs/notebooks",
    smoke: bool = False,
    timeout: float = 900,
    progress: bool = False,
    check_solutions: bool = False,
) -> Path:
    """Execute one notebook with papermill into ``out/<name>/``; returns the executed notebook's path.

    ``results_dir`` defaults to that folder, so ``metrics.json`` lands beside the executed notebook.
    ``progress`` shows a bar of the cells executed so far (cell k of n); ``timeout`` is per cell, in
    seconds. ``check_solutions`` keeps the learner's view and also judges every exercise's reference
    solution and typical wrong answers (``workbench.course.exercises``), so one run checks both.
    """
    papermill = optional_import("papermill", "Running notebooks", "pip install 'workbench[notebooks]'")
    path = Path(path)
    target = Path(out) / path.stem
    target.mkdir(parents=True, exist_ok=True)
    params = {**(smoke_parameters(path) if smoke else {}), "results_dir": str(target.resolve()), **(parameters or {})}
    known = papermill.inspect_notebook(str(path))
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise ValueError(f"{path.name} has no parameter(s) {', '.join(unknown)}. Its parameters: {', '.join(known)}.")
    for name, value in params.items():
        check_parameter(path.name, name, value, known[name]["default"])
    executed = target / path.name
    load_before, start = load_average(), time.perf_counter()
    from .exercises import CHECK_SOLUTIONS

    with _kernel_environment({CHECK_SOLUTIONS: "1"} if check_solutions else {}):
        try:
            papermill.execute_notebook(
                str(path),
                str(executed),
                parameters=params,
                cwd=str(path.parent.parent),
                kernel_name="python3",
                progress_bar={"desc": path.stem, "unit": "cell"} if progress else False,
                execution_timeout=timeout,
                engine_name=_section_engine(),  # the bar names each cell's section
                # A client that cannot sleep through a reply (see workbench/course/_nbclient.py).
                kernel_manager_class="workbench.course._nbclient.SlicedKernelManager",
                # The kernel's own start-up notes (TCP on localhost is unencrypted) are not for this user.
                extra_arguments=["--IPKernelApp.log_level=ERROR"],
            )
        except papermill.PapermillExecutionError as e:
            raise RuntimeError(
                f"{path.name} failed in cell {e.exec_count}: {e.ename}: {e.evalue} (see {executed})"
            ) from e
    _record_timing(
        Path(out),
        path.stem,
        {
            "seconds": time.perf_counter() - start,
            "mode": "smoke" if smoke else "full",
            "parameters": params,
            "machine": machine(),
            "load_average_before": load_before,
            "load_average_after": load_average(),
            "utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        },
    )
    return executed


@contextlib.contextmanager
def _kernel_environment(variables: dict[str, str]) -> Iterator[None]:
    """``variables`` set in this process's environment while a kernel starts from it, then restored."""
    before = {k: os.environ.get(k) for k in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def machine() -> dict[str, Any]:
    """What runs the notebooks: the CPU model and its cores, torch's thread count in this process (a
    kernel inherits the same environment, so it starts with the same), the GPU (None without CUDA)."""
    return {
        "cpu": device_name("cpu"),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": device_name("cuda") if torch.cuda.is_available() else None,
    }


def timing_records(out: str | Path = "runs/notebooks") -> dict[str, dict[str, Any]]:
    """``OUT/timings.json`` as written: notebook name -> its latest run's record ({} before any run)."""
    path = Path(out) / TIMINGS
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e}): delete it, and the next run writes a fresh one") from None


def notebook_timings(out: str | Path = "runs/notebooks") -> pd.DataFrame:
    """The run-time records of the notebooks executed into ``out``, one row each: ``seconds`` (wall time
    of the papermill run, kernel start included), ``mode`` (smoke or full), ``parameters``, the machine
    (``machine.cpu``, ``machine.cores``, ``machine.torch_threads``, ``machine.gpu``), the 1-minute load
    average before and after, and when it ran (``utc``).

    Example:
        >>> import tempfile
        >>> notebook_timings(tempfile.mkdtemp()).empty  # nothing ran there yet
        True
    """
    return pd.DataFrame(
        [
            {
                "notebook": name,
                **{k: v for k, v in record.items() if k != "machine"},
                **{f"machine.{k}": v for k, v in record["machine"].items()},
            }
            for name, record in sorted(timing_records(out).items())
        ]
    )


def _record_timing(out: Path, name: str, record: dict[str, Any]) -> None:
    # Merged, so that runs of single notebooks into one folder add up to the series' record.
    records = {**timing_records(out), name: jsonable(record)}
    atomic_write_text(out / TIMINGS, json.dumps(dict(sorted(records.items())), indent=1))


def cell_sections(cells: list[dict]) -> list[str]:
    """For each cell, the heading of the notebook section it is in (the last markdown heading above it,
    without its #s), so a progress bar can say what the cell is for.

    Example:
        >>> cells = [{"cell_type": "markdown", "source": "# 01 · Measure\\ntext"},
        ...          {"cell_type": "code", "source": "x = 1"},
        ...          {"cell_type": "markdown", "source": "## Why warm-up matters"},
        ...          {"cell_type": "code", "source": "y"}]
        >>> cell_sections(cells)
        ['01 · Measure', '01 · Measure', 'Why warm-up matters', 'Why warm-up matters']
    """
    section, out = "parameters", []
    for cell in cells:
        source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
        if cell["cell_type"] == "markdown":
            heading = next((line.lstrip("#").strip() for line in source.splitlines() if line.startswith("#")), None)
            section = heading or section
        out.append(section)
    return out


def _section_engine() -> str:
    """Register (once) and name a papermill engine whose progress bar shows each cell's section."""
    import papermill
    from papermill.engines import NBClientEngine

    class SectionEngine(NBClientEngine):
        @classmethod
        def execute_managed_notebook(cls, nb_man, kernel_name, **kwargs):
            sections = cell_sections(nb_man.nb.cells)
            index = {id(cell): i for i, cell in enumerate(nb_man.nb.cells)}
            total = len(sections)
            nb_man.get_cell_description = lambda cell, **_: (
                f"cell {index[id(cell)] + 1}/{total}: {sections[index[id(cell)]][:40]}" if id(cell) in index else None
            )
            return super().execute_managed_notebook(nb_man, kernel_name, **kwargs)

    if "workbench" not in papermill.engines.papermill_engines._engines:
        papermill.engines.papermill_engines.register("workbench", SectionEngine)
    return "workbench"


def check_parameter(notebook: str, name: str, value: Any, default_source: str) -> None:
    """A parameter must have the type of the default in the notebook's parameters cell (a whole
    number for ``epochs = 20``, a list for ``batch_sizes = [1, 64]``), or the run would fail cells later.

    Example:
        >>> check_parameter("01_measure.ipynb", "iters", 3, "30")
        >>> check_parameter("01_measure.ipynb", "batch_sizes", "abc", "[1, 8, 32]")
        Traceback (most recent call last):
        ...
        ValueError: 01_measure.ipynb parameter batch_sizes must be a list like [1, 8, 32] (got 'abc')
    """
    try:
        default = ast.literal_eval(default_source)
    except (ValueError, SyntaxError):
        return  # an expression, not a literal: nothing to compare with
    kinds = {bool: "true or false", int: "a whole number", float: "a number", str: "text", list: "a list"}
    expected = type(default)
    ok = isinstance(value, expected) and not (expected is int and isinstance(value, bool))
    if expected is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if expected is list and ok and default:
        item = type(default[0])
        ok = all(isinstance(v, item) or (item is float and isinstance(v, int)) for v in value)
    if expected in kinds and not ok:
        raise ValueError(f"{notebook} parameter {name} must be {kinds[expected]} like {default_source} (got {value!r})")


def run_notebooks(
    names: Iterable[str] = (),
    parameters: dict[str, Any] | None = None,
    *,
    out: str | Path = "runs/notebooks",
    smoke: bool = False,
    folder: str | Path = NOTEBOOK_DIR,
    progress: bool = False,
    timeout: float = 900,
    check_solutions: bool = False,
) -> list[Path]:
    """Execute the named notebooks (all when none are named); values given on the command line are
    parsed as JSON where they can be (``-p epochs 3`` gives an int). ``timeout`` and ``check_solutions``
    are ``run_notebook``'s."""
    parsed = {k: _parse(v) for k, v in (parameters or {}).items()}
    chosen = _select(names, Path(folder))
    if problem := writable_problem(out):  # before the first notebook runs, not as a bare errno after
        raise OSError(f"{problem} (--out): choose another folder")
    if not timeout > 0:
        raise ValueError(f"timeout is seconds per cell, > 0 (got {timeout})")
    return [
        run_notebook(
            p, parsed, out=out, smoke=smoke, progress=progress, timeout=timeout, check_solutions=check_solutions
        )
        for p in chosen
    ]


def _parse(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def write_metrics(results_dir: str | Path, **metrics: Any) -> Path:
    """What a notebook's last cell calls: ``metrics.json`` for the test harness (NaN -> null)."""
    return atomic_write_text(Path(results_dir) / "metrics.json", json.dumps(jsonable(metrics), indent=1))
