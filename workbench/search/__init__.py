"""Model search: one space over architecture, training and compression, sampled by Optuna's
strategies (random, TPE, NSGA-II) or a greedy coordinate search; every trial is a ``workbench.run``,
so trials land in the same store, ledger and charts. Studies live in an Optuna storage (SQLite in the
result store by default; PostgreSQL or a journal file for several workers).
"""

from .pareto import direction, dominates, hypervolume, non_dominated, pareto_front
from .space import NONE, Choice, Float, Int, Space, default_space
from .strategies import list_strategies, strategy_name
from .study import (
    DEFAULT_OBJECTIVES,
    Comparison,
    SearchResult,
    compare_strategies,
    load_study,
    open_storage,
    search,
    show,
    storage_url,
    trials_frame,
    worker,
)

__all__ = [
    "DEFAULT_OBJECTIVES",
    "NONE",
    "Choice",
    "Comparison",
    "Float",
    "Int",
    "SearchResult",
    "Space",
    "compare_strategies",
    "default_space",
    "direction",
    "dominates",
    "hypervolume",
    "list_strategies",
    "load_study",
    "non_dominated",
    "open_storage",
    "pareto_front",
    "search",
    "show",
    "storage_url",
    "strategy_name",
    "trials_frame",
    "worker",
]
