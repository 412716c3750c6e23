"""Every chart: a plain function from a results DataFrame (or a ledger, a sensitivity table, a study's
trials) to a matplotlib Figure, named ``<what it shows>_chart``, one module per subject: quality, speed,
training, compression, search, scale-out, what compression changed in the answers.

Axes carry the labels and units of the results schema (``workbench.report.METRICS``); titles name the
device (and dtype) the numbers were measured on, and a chart that would mix devices says so. Every chart
takes ``theme="dark"`` (or any matplotlib style name) for dark notebooks; the default style reads on light
and dark themes alike because it paints its own background.

Example:
    >>> import pandas as pd
    >>> df = pd.DataFrame({"name": ["a", "b"], "run_id": ["1", "2"], "accuracy": [0.9, 0.8],
    ...                    "size_bytes": [4096, 2048], "measure_device_name": ["Xeon"] * 2})
    >>> fig = size_accuracy_chart(df)
    >>> fig.axes[0].get_ylabel()
    'test accuracy (%)'
"""

from ._style import device_label, metric_label, pareto_mask, place_labels, train_label
from .compression import (
    ablation_chart,
    ledger_latency_chart,
    ledger_perplexity_chart,
    ledger_size_chart,
    low_bit_chart,
    path_chart,
    sensitivity_chart,
)
from .memory import kv_cache_chart, training_memory_chart
from .quality import metric_chart, size_accuracy_chart, sweep_chart
from .scaleout import pipeline_chart, rank_chart, scaling_chart
from .search import pareto_chart, strategy_comparison_chart
from .speed import (
    attention_chart,
    batch_latency_chart,
    decode_chart,
    inference_sweep_chart,
    latency_chart,
    profile_chart,
    roofline_chart,
    runtime_chart,
    serving_chart,
    speculative_chart,
)
from .training import history_chart, lr_schedule_chart, run_history_chart
from .what_changed import flips_chart, reliability_chart, token_loss_chart

__all__ = [
    "ablation_chart",
    "attention_chart",
    "batch_latency_chart",
    "decode_chart",
    "device_label",
    "flips_chart",
    "history_chart",
    "inference_sweep_chart",
    "kv_cache_chart",
    "latency_chart",
    "ledger_latency_chart",
    "ledger_perplexity_chart",
    "ledger_size_chart",
    "low_bit_chart",
    "lr_schedule_chart",
    "metric_chart",
    "metric_label",
    "pareto_chart",
    "pareto_mask",
    "path_chart",
    "pipeline_chart",
    "place_labels",
    "profile_chart",
    "rank_chart",
    "reliability_chart",
    "roofline_chart",
    "run_history_chart",
    "runtime_chart",
    "scaling_chart",
    "sensitivity_chart",
    "serving_chart",
    "size_accuracy_chart",
    "speculative_chart",
    "strategy_comparison_chart",
    "sweep_chart",
    "token_loss_chart",
    "train_label",
    "training_memory_chart",
]
