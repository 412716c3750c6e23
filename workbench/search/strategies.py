"""Search strategies by name: Optuna's samplers for random, TPE and NSGA-II (genetic), and a greedy
coordinate search written on Optuna's ask-and-tell interface (``enqueue_trial`` / ``ask`` / ``tell``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

from .._registry import Registry

# name -> (make a sampler from a seed, the objective count and the constraints function), or None for greedy
STRATEGIES: Registry[Callable[..., Any]] = Registry("search strategy")
ALIASES = {"genetic": "nsga2"}


def _optuna():
    from .._errors import optional_import

    optuna = optional_import("optuna", "Model search", "pip install 'optuna>=5,<6'")
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the search's progress bar says what matters
    return optuna


@STRATEGIES.register("random")
def _random(seed: int, objectives: int, constraints: Callable | None, budget: int):
    return _optuna().samplers.RandomSampler(seed=seed)


@STRATEGIES.register("tpe")
def _tpe(seed: int, objectives: int, constraints: Callable | None, budget: int):
    # The strong single-objective default: a model of good and bad regions, fitted after a few random trials.
    optuna = _optuna()
    with warnings.catch_warnings():  # multivariate and group are marked experimental; they handle conditional spaces
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(
            seed=seed,
            constraints_func=constraints,
            n_startup_trials=min(10, max(2, budget // 4)),
            multivariate=True,
            group=True,
        )


@STRATEGIES.register("nsga2")
def _nsga2(seed: int, objectives: int, constraints: Callable | None, budget: int):
    # Optuna's default population of 50 would leave a 20-trial budget in the random first generation:
    # a third of the budget a generation gives selection, crossover and mutation a few rounds.
    return _optuna().samplers.NSGAIISampler(
        seed=seed, constraints_func=constraints, population_size=max(4, min(50, budget // 3))
    )


@STRATEGIES.register("greedy")
def _greedy(seed: int, objectives: int, constraints: Callable | None, budget: int):
    # Every greedy trial is enqueued with all its parameters; the sampler only answers what is not fixed.
    return _optuna().samplers.RandomSampler(seed=seed)


def strategy_name(name: str) -> str:
    """The registered name for ``name`` (``genetic`` is NSGA-II); an unknown one lists the valid names.

    Example:
        >>> strategy_name("genetic"), strategy_name("tpe")
        ('nsga2', 'tpe')
    """
    name = ALIASES.get(name, name)
    STRATEGIES.check(name)
    return name


def list_strategies() -> list[str]:
    """The names ``search`` takes (``auto`` besides: TPE for one objective, NSGA-II for several)."""
    return [*STRATEGIES.names(), *ALIASES]
