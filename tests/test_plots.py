"""Charts: every chart is a Figure with labelled axes and the device in its title; the Pareto front
is the right set of points; rows from different devices are flagged, never silently mixed."""

import io

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from workbench import ModelConfig, RunConfig
from workbench.report import Result, charts, results_frame


def _records(device, latency):
    return [
        {
            "batch_size": b,
            "latency_ms": latency * b,
            "latency_ms_q25": latency * b * 0.9,
            "latency_ms_q75": latency * b * 1.2,
            "throughput_ips": 1000 * b / (latency * b),
            "device": "cpu",
            "device_name": device,
            "dtype": "float32",
            "mode": "eager",
        }
        for b in (1, 64)
    ]


def _frame(devices=("Xeon", "Xeon", "Xeon")):
    # (name, accuracy, size in bytes, params): b is dominated by a (bigger and less accurate).
    rows = [("a", 0.90, 4000, 1000), ("b", 0.85, 8000, 2000), ("c", 0.95, 16000, 4000)]
    results = []
    for (name, acc, size, params), device in zip(rows, devices):
        history = [
            {
                "epoch": e,
                "train_loss": 1 / e,
                "test_loss": 1.1 / e,
                "train_accuracy": acc - 0.1 / e,
                "test_accuracy": acc - 0.2 / e,
            }
            for e in (1, 2, 3)
        ]
        metrics = {
            "accuracy": acc,
            "train_accuracy": acc + 0.03,
            "size_bytes": size,
            "params": params,
            "flops": params * 10,
            "latency_ms": 1.0,
            "throughput_ips": 1000.0,
            "measure_device": "cpu",
            "measure_device_name": device,
            "measure_dtype": "float32",
            "train_device": "cpu",
        }
        results.append(
            Result(
                RunConfig(name=name, model=ModelConfig(name="mlp")),
                metrics,
                history,
                _records(device, 1 + len(results)),
            )
        )
    return results_frame(results)


def _charts(df):
    sweep = df.assign(sweep_field="model.width", sweep_value=[0.25, 0.5, 1.0])
    return {
        "size_accuracy_chart": charts.size_accuracy_chart(df),
        "accuracy_vs_params": charts.size_accuracy_chart(df, size="params"),
        "latency_chart": charts.latency_chart(df),
        "throughput_bars": charts.latency_chart(df, metric="throughput_ips"),
        "batch_latency_chart": charts.batch_latency_chart(pd.DataFrame([r for recs in df["benchmarks"] for r in recs])),
        "history_chart": charts.history_chart(df),
        "sweep_chart": charts.sweep_chart(sweep, "latency_ms"),
        "metric_chart": charts.metric_chart(df),
    }


def _title(fig):
    return " ".join([fig.get_suptitle()] + [ax.get_title() for ax in fig.axes])


@pytest.fixture(scope="module")
def figures():
    return _charts(_frame())


CHARTS = [
    "size_accuracy_chart",
    "accuracy_vs_params",
    "latency_chart",
    "throughput_bars",
    "batch_latency_chart",
    "history_chart",
    "sweep_chart",
    "metric_chart",
]


@pytest.mark.parametrize("name", CHARTS)
def test_chart_is_a_labelled_figure_naming_the_device(figures, name):
    fig = figures[name]
    assert isinstance(fig, Figure)
    for ax in fig.axes:
        assert ax.get_xlabel() or ax.get_xticklabels(), name
        assert ax.get_ylabel(), name
    assert "Xeon" in _title(fig), _title(fig)
    fig.savefig(io.BytesIO(), format="png")  # renders without error


def test_units_on_the_axes():
    df = _frame()
    assert charts.size_accuracy_chart(df).axes[0].get_xlabel().startswith("model size on disk (KiB")
    assert "(ms" in charts.latency_chart(df).axes[0].get_ylabel()
    assert "images/s" in charts.latency_chart(df, metric="throughput_ips").axes[0].get_ylabel()
    assert "float32" in _title(charts.latency_chart(df))


def test_pareto_front_is_highlighted():
    fig = charts.size_accuracy_chart(_frame())
    by_label = {c.get_label(): c.get_offsets() for c in fig.axes[0].collections}
    front_sizes = sorted(np.asarray(by_label["Pareto front"])[:, 0] * 1024)
    dominated_sizes = list(np.asarray(by_label["dominated"])[:, 0] * 1024)
    assert front_sizes == [4000, 16000] and dominated_sizes == [8000]


def test_pareto_mask_ties_and_duplicates():
    assert charts.pareto_mask([1, 1, 2], [0.5, 0.5, 0.4]).tolist() == [True, True, False]


@pytest.mark.parametrize(
    "chart", ["size_accuracy_chart", "latency_chart", "sweep_chart", "history_chart", "metric_chart"]
)
def test_mixed_devices_are_flagged(chart):
    fig = _charts(_frame(devices=("Xeon", "H100", "Xeon")))[chart]
    assert "MIXED devices" in _title(fig) and "H100" in _title(fig)


def test_latency_vs_batch_is_log_log_with_a_line_per_mode():
    records = pd.DataFrame(_records("Xeon", 1.0) + [dict(r, mode="compiled") for r in _records("Xeon", 0.5)])
    fig = charts.batch_latency_chart(records)
    latency_ax = fig.axes[0]
    assert latency_ax.get_xscale() == "log" and latency_ax.get_yscale() == "log"
    assert [line.get_label() for line in latency_ax.get_lines()] == ["eager float32", "compiled float32"]


def test_sweep_lines_on_named_values_uses_categories():
    df = _frame().assign(sweep_field="train.optimizer", sweep_value=["sgd", "adam", "adamw"])
    ax = charts.sweep_chart(df, "accuracy").axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["sgd", "adam", "adamw"]
    assert ax.get_xlabel() == "train.optimizer"
    assert list(ax.get_lines()[0].get_ydata()) == pytest.approx([90, 85, 95])


def test_history_curves_one_line_per_run_in_percent():
    ax = charts.history_chart(_frame()).axes[0]
    assert len(ax.get_lines()) == 3
    assert max(ax.get_lines()[2].get_ydata()) == pytest.approx(95 - 20 / 3)


def test_dark_theme_paints_a_dark_background():
    light, dark = charts.history_chart(_frame()), charts.history_chart(_frame(), theme="dark")
    assert sum(light.get_facecolor()[:3]) > 2.5 and sum(dark.get_facecolor()[:3]) < 0.5


def test_charts_do_not_pile_up_in_pyplot():
    import matplotlib.pyplot as plt

    before = len(plt.get_fignums())
    _charts(_frame())
    assert len(plt.get_fignums()) == before


def test_the_pareto_front_follows_the_schemas_direction():
    import pandas as pd

    from workbench.report.charts import size_accuracy_chart

    df = pd.DataFrame(
        {
            "name": list("abc"),
            "run_id": list("123"),
            "accuracy": [0.7, 0.8, 0.95],
            "throughput_ips": [100.0, 300.0, 50.0],
            "measure_device_name": ["x"] * 3,
        }
    )
    ax = size_accuracy_chart(df, size="throughput_ips").axes[0]
    front = (
        ax.collections[1].get_offsets()[:, 0].tolist()
    )  # higher throughput is better: b and c are the front (lower-is-better would keep c alone)
    assert sorted(front) == [50.0, 300.0]


def _noisy_frame():
    df = _frame()
    for recs in df["benchmarks"][:1]:
        for r in recs:
            r.update(noisy=True, relative_spread=3.0)
    return df


def test_noisy_latencies_are_hatched_and_explained_on_the_charts():
    fig = charts.latency_chart(_noisy_frame())
    ax = fig.axes[0]
    hatched = [p for p in ax.patches if p.get_hatch()]
    assert len(hatched) == 2  # run a's two batch sizes, not the others
    assert "noisy" in ax.get_xlabel()
    clean = charts.latency_chart(_frame()).axes[0]
    assert not any(p.get_hatch() for p in clean.patches) and "noisy" not in clean.get_xlabel()
    scatter = charts.size_accuracy_chart(_noisy_frame(), size="latency_ms").axes[0]
    assert any("noisy" in c.get_label() for c in scatter.collections)
    assert "IQR" in scatter.get_title()


def test_labels_of_points_at_one_place_are_merged_and_none_overlap():
    df = _frame()
    df["size_bytes"] = [4000, 4000, 4100]
    df["accuracy"] = [0.9, 0.9, 0.9]
    ax = charts.size_accuracy_chart(df).axes[0]
    texts = list(ax.texts)
    assert sorted(t.get_text() for t in texts) == ["a, b", "c"]
    boxes = [t.get_window_extent() for t in texts]
    assert not boxes[0].overlaps(boxes[1])


def test_accuracy_bars_zoom_to_their_range_and_speeds_start_at_zero():
    df = _frame()
    low, high = charts.metric_chart(df, ["accuracy"]).axes[0].get_ylim()
    assert 50 < low < 85 and high > 95  # accuracies 85-95%: a one-point gap is visible
    speed = df.assign(sweep_field="train.batch_size", sweep_value=[32, 64, 128], train_ips=[201.0, 202.0, 203.0])
    assert charts.sweep_chart(speed, "train_ips").axes[0].get_ylim()[0] == 0


def test_the_learning_rate_chart_has_one_point_per_optimizer_step():
    df = pd.DataFrame(
        {
            "name": ["warm"],
            "run_id": ["1"],
            "train.lr": [0.1],
            "train.schedule": ["constant"],
            "train.warmup_epochs": [1.0],
            "train.epochs": [2],
            "steps_per_epoch": [5],
            "train_device": ["cpu"],
        }
    )
    line = charts.lr_schedule_chart(df).axes[0].lines[0]
    assert list(np.round(line.get_ydata(), 3)) == [0.02, 0.04, 0.06, 0.08, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]
