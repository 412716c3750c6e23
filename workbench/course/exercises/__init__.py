"""Exercises that check themselves, in the pattern of otter-grader's ``grader.check("q1")``.

A notebook makes one checker over its own namespace, a learner answers in a marked cell, and the
next cell calls ``check("01.params")``: the check runs real computation on the learner's objects (it
builds, counts, times or compares them) and answers in one or two sentences, right or not yet and why.

In instructor mode (each notebook's ``instructor`` parameter) an unanswered exercise is filled in
with its reference solution, run in the notebook's namespace, so the notebook runs end to end; every
typical wrong answer the exercise lists is run in a copy of the namespace too, and must be turned
down, so a checker that would wave a mistake through shows up in the instructor's run.

With ``WORKBENCH_CHECK_SOLUTIONS=1`` in the environment (``workbench notebooks run --check-solutions``)
a learner-mode run checks both at once: the learner's view is untouched (unanswered exercises stay
unanswered and the notebook must run to its end without them), while each reference solution and each
typical wrong answer is run and judged in a copy of the namespace. CI executes every notebook once so.

Example:
    >>> env = {"x": ...}
    >>> check = exercise_checker("01_measure", env, instructor=False)
    >>> check("01.params").status
    'unanswered'
"""

from __future__ import annotations

import html
import os
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..._registry import Registry

EXERCISES: Registry[Exercise] = Registry("exercise")
CHECK_SOLUTIONS = "WORKBENCH_CHECK_SOLUTIONS"  # set to 1: learner mode also judges solutions in copies


class NotYet(Exception):
    """Raised by a check with the one or two sentences that say what is wrong and how to fix it."""


def expect(condition: bool, why: str) -> None:
    """The check's verb: go on if ``condition`` holds, else stop with ``why``."""
    if not condition:
        raise NotYet(why)


class Answers:
    """The notebook's namespace as attributes, for checks: ``a.model``, ``a.bench``."""

    def __init__(self, env: dict[str, Any]):
        self._env = env

    def __getattr__(self, name: str) -> Any:
        try:
            return self._env[name]
        except KeyError:
            raise NotYet(
                f"There is no `{name}` yet: run the cells above this one first, then your answer's cell."
            ) from None


@dataclass(frozen=True)
class Exercise:
    """One exercise: what to do, which names the answer defines, its check, its reference solution and
    the typical wrong answers the check must turn down."""

    key: str  # "NN.name": NN is the notebook's number
    task: str  # one sentence, shown while unanswered
    names: tuple[str, ...]  # what the answer cell defines
    check: Callable[[Answers], str]  # returns why a right answer is right; raises NotYet
    solution: str  # reference code, run in instructor mode
    wrong: tuple[str, ...]  # typical mistakes, as code
    hint: str = ""

    def __post_init__(self):
        if not self.wrong:
            raise ValueError(f"exercise {self.key} needs at least one typical wrong answer to test its check on")


def exercise(
    key: str, *, task: str, names: tuple[str, ...], solution: str, wrong: tuple[str, ...], hint: str = ""
) -> Callable[[Callable[[Answers], str]], Callable[[Answers], str]]:
    """Register the decorated check as exercise ``key``."""

    def add(check: Callable[[Answers], str]) -> Callable[[Answers], str]:
        EXERCISES.register(key)(
            Exercise(key, task, names, check, solution.strip(), tuple(w.strip() for w in wrong), hint)
        )
        return check

    return add


def exercises_of(notebook: str) -> list[Exercise]:
    """The exercises of a notebook (``"02_model_structure"`` or ``"02"``), in key order."""
    number = notebook[:2]
    return [EXERCISES.get(k) for k in EXERCISES.names() if k.split(".")[0] == number]


@dataclass
class Feedback:
    """What a check says: ``status`` is right, not yet or unanswered; ``message`` says why."""

    key: str
    status: str
    message: str
    solution: str | None = None  # the reference code, where instructor mode ran it
    rejected: list[str] = field(default_factory=list)  # what each typical wrong answer was told
    let_through: list[str] = field(default_factory=list)  # wrong answers not turned down with a reason (a bug)
    crashed: bool = False  # the check itself raised on the answer, instead of saying what is wrong

    @property
    def passed(self) -> bool:
        return self.status == "right"

    def __repr__(self) -> str:
        mark = {"right": "✓ Right", "not yet": "✗ Not yet", "unanswered": "✏ Not answered yet"}[self.status]
        lines = [f"{self.key} · {mark}: {self.message}"]
        if self.solution:
            lines.append("Instructor mode ran the reference solution:\n" + self.solution)
        lines += [f"CHECKER BUG: this wrong answer was not turned down with a reason:\n{w}" for w in self.let_through]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        colour = {"right": "#2e7d32", "not yet": "#c62828", "unanswered": "#9e6a00"}[self.status]
        body = html.escape(repr(self)).replace("\n", "<br>")
        return (
            f'<div class="wb-check" style="border-left:4px solid {colour};padding:.4em .8em;'
            f'font-family:sans-serif;white-space:pre-wrap">{body}</div>'
        )


class Checker:
    """``check = exercise_checker("02_model_structure", globals(), instructor=instructor)``, then
    ``check("02.half")``."""

    def __init__(self, notebook: str, env: dict[str, Any], instructor: bool = False):
        self.notebook, self.env, self.instructor = notebook, env, bool(instructor)
        self.check_solutions = not self.instructor and os.environ.get(CHECK_SOLUTIONS) == "1"
        self.exercises = {e.key: e for e in exercises_of(notebook)}
        if not self.exercises:
            raise ValueError(
                f"{notebook} has no exercises. Notebooks with exercises: "
                f"{', '.join(sorted({k[:2] for k in EXERCISES.names()}))}."
            )
        self.results: dict[str, Feedback] = {}
        self.solution_status: dict[str, str] = {}  # how the check judged each reference solution it ran

    def __call__(self, key: str) -> Feedback:
        if key not in self.exercises:
            EXERCISES.get(key)  # an unknown key: the registry's error names the close ones
            raise ValueError(f"exercise {key} belongs to another notebook than {self.notebook}")
        ex = self.exercises[key]
        rejected, let_through = [], []
        if self.instructor or self.check_solutions:
            for code in ex.wrong:
                verdict = _judge_in_copy(ex, code, self.env, f"<a typical wrong answer to {key}>")
                if verdict.status == "not yet" and not verdict.crashed:
                    rejected.append(verdict.message)
                else:
                    let_through.append(code)
        if self.check_solutions:
            self.solution_status[key] = _judge_in_copy(ex, ex.solution, self.env, f"<solution {key}>").status
        solution = None
        if self.instructor and _unanswered(ex, self.env):
            exec(compile(ex.solution, f"<solution {key}>", "exec"), self.env)  # noqa: S102 - the package's own code
            solution = ex.solution
        feedback = _judge(ex, self.env)
        if solution is not None:
            self.solution_status[key] = feedback.status
        feedback.solution, feedback.rejected, feedback.let_through = solution, rejected, let_through
        self.results[key] = feedback
        return feedback

    def summary(self) -> dict[str, dict[str, Any]]:
        """Per exercise, for metrics.json: its status; where solutions were checked, what each typical wrong
        answer was told and how the reference solution was judged."""
        return {
            k: {
                "status": f.status,
                "message": f.message,
                "filled_in": f.solution is not None,
                "crashed": f.crashed,
                "rejected": f.rejected,
                "let_through": f.let_through,
                "solution_status": self.solution_status.get(k),
            }
            for k, f in self.results.items()
        }


def exercise_checker(notebook: str, env: dict[str, Any], instructor: bool = False) -> Checker:
    """The checker a notebook makes once, over its namespace (``globals()``)."""
    return Checker(notebook, env, instructor)


def _judge_in_copy(ex: Exercise, code: str, env: dict[str, Any], name: str) -> Feedback:
    """``code`` run and judged in a shallow copy of ``env``, so the notebook's own names stay as they were."""
    trial = dict(env)
    with warnings.catch_warnings():  # what a mistake makes torch warn about is not the instructor's concern
        warnings.simplefilter("ignore")
        exec(compile(code, name, "exec"), trial)  # noqa: S102 - the package's own code
        return _judge(ex, trial)


def _unanswered(ex: Exercise, env: dict[str, Any]) -> bool:
    return any(env.get(name, ...) is ... for name in ex.names)


def _judge(ex: Exercise, env: dict[str, Any]) -> Feedback:
    if _unanswered(ex, env):
        missing = ", ".join(f"`{n}`" for n in ex.names)
        return Feedback(
            ex.key,
            "unanswered",
            f"{ex.task} Define {missing} in the cell above (replace the ...), run it, then run this cell."
            + (f" Hint: {ex.hint}" if ex.hint else ""),
        )
    try:
        return Feedback(ex.key, "right", ex.check(Answers(env)))
    except NotYet as e:
        return Feedback(ex.key, "not yet", str(e))
    except Exception as e:  # noqa: BLE001 - whatever the learner's object broke in the check: say where, in one line
        where = traceback.extract_tb(e.__traceback__)[-1]
        return Feedback(
            ex.key,
            "not yet",
            f"Checking your answer raised {type(e).__name__}: {e} (in {where.name}). "
            "Is each name the kind of object the task asks for?",
            crashed=True,
        )


from . import catalogue  # noqa: E402,F401 - registers every exercise
