"""What runs leave behind, and the views of it, in the pipeline's order: the metrics schema
(``metrics``), rows appended to a store and checkpoints on disk (``store``, ``checkpoint``), rows side by
side (``comparison``), the speed-up ledger with its measured reasons (``ledger``) and every chart (``charts``).

This package's ``__init__`` gives the schema, the store and the comparisons; the checkpoint, the ledger
and the charts load when imported (they need torch's exporters and matplotlib).

Example:
    >>> import tempfile
    >>> from workbench.config import RunConfig
    >>> store = ResultStore(tempfile.mkdtemp())
    >>> _ = store.append(Result(config=RunConfig(), metrics={"accuracy": 0.9}))
    >>> store.frame()[["model.name", "accuracy"]].values.tolist()
    [['cnn', 0.9]]
    >>> METRICS["size_bytes"].axis_label, METRICS["size_bytes"].lower_is_better
    ('model size on disk (KiB)', True)
"""

from .comparison import (
    SEPARATE_TIMING_SPREAD,
    TABLE_FIELDS,
    TABLE_METRICS,
    baseline_index,
    compare,
    epoch_costs,
    latency_comparison,
    readable,
    run_labels,
    same_architecture,
    time_to_accuracy,
)
from .metrics import COMPARE_METRICS, METRICS, Metric, format_number, latency_key, metric
from .store import (
    DEFAULT_RUNS_DIR,
    PATH_FIELDS,
    DamagedRow,
    DamagedRowWarning,
    Result,
    ResultStore,
    as_frame,
    jsonable,
    new_run_id,
    results_frame,
)

__all__ = [
    "COMPARE_METRICS",
    "DEFAULT_RUNS_DIR",
    "METRICS",
    "PATH_FIELDS",
    "SEPARATE_TIMING_SPREAD",
    "TABLE_FIELDS",
    "TABLE_METRICS",
    "DamagedRow",
    "DamagedRowWarning",
    "Metric",
    "Result",
    "ResultStore",
    "as_frame",
    "baseline_index",
    "compare",
    "epoch_costs",
    "format_number",
    "jsonable",
    "latency_comparison",
    "latency_key",
    "metric",
    "new_run_id",
    "readable",
    "results_frame",
    "run_labels",
    "same_architecture",
    "time_to_accuracy",
]
