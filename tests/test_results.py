import json
import os

import pytest

from workbench import Result, RunConfig, compare
from workbench._files import atomic_write_text


def _result(name, acc, params):
    return Result(RunConfig(name=name), {"accuracy": acc, "params": params, "latency_ms": 2.0})


def test_append_and_read_back(store):
    a, b = _result("a", 0.9, 100), _result("b", 0.8, 50)
    store.append(a)
    store.append(b)
    df = store.frame()
    assert list(df["name"]) == ["a", "b"]
    assert list(df["accuracy"]) == [0.9, 0.8]
    assert store.get(a.run_id).metrics == a.metrics
    assert len(store) == 2


def test_store_is_append_only(store):
    r = _result("a", 0.9, 1)
    store.append(r)
    with pytest.raises(FileExistsError, match="append-only"):
        store.append(r)


def test_crash_mid_write_leaves_earlier_rows_intact(store, monkeypatch):
    store.append(_result("a", 0.9, 1))
    before = store.frame()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        store.append(_result("b", 0.5, 1))
    monkeypatch.undo()
    assert store.frame()[["name", "accuracy"]].equals(before[["name", "accuracy"]])
    assert not list(store.rows_dir.glob("*.tmp"))  # the half-written temp file was removed


def test_nan_metrics_stay_strict_json(store):
    path = store.append(Result(RunConfig(), {"accuracy": float("nan")}))
    assert json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))


def test_compare_deltas_and_ratios():
    t = compare(
        [_result("base", 0.9, 100), _result("small", 0.85, 25)], baseline="base", metrics=["accuracy", "params"]
    )
    assert t.loc["small", "params_ratio"] == 0.25
    assert t.loc["small", "accuracy_delta"] == pytest.approx(-0.05)
    assert t.loc["base", "baseline"]


def test_compare_unknown_baseline():
    with pytest.raises(ValueError, match="No run with id or name 'zzz'"):
        compare([_result("a", 0.9, 1)], baseline="zzz")


def test_atomic_write_replaces_whole_file(tmp_path):
    p = tmp_path / "x.json"
    atomic_write_text(p, "one")
    atomic_write_text(p, "two")
    assert p.read_text() == "two"


def test_compare_names_a_metric_it_cannot_compare_instead_of_dropping_it():
    rows = [_result("a", 0.9, 100), _result("b", 0.8, 50)]
    with pytest.raises(ValueError, match=r"no column 'flops'.*Metrics they have: accuracy, params, latency_ms"):
        compare(rows, metrics=["accuracy", "flops"])
    table = compare(rows)  # by default: the schema's comparable metrics these rows have
    assert [c for c in table.columns if not c.endswith(("_delta", "_ratio"))] == [
        "accuracy",
        "params",
        "latency_ms",
        "baseline",
        "same_architecture",
    ]
    assert table["same_architecture"].tolist() == [True, True]  # _result changes only the name and metrics
    assert table.attrs["lower_is_better"] == {"accuracy": False, "params": True, "latency_ms": True}


def test_the_schema_labels_every_metric_with_its_unit_and_direction():
    from workbench.report import COMPARE_METRICS, METRICS, metric

    assert set(COMPARE_METRICS) <= set(METRICS)
    assert (
        metric("latency_ms").axis_label == "latency per batch (ms, median)"
        and metric("throughput_ips").lower_is_better is False
    )
    with pytest.raises(ValueError, match="Did you mean 'latency_ms'"):
        metric("latency")


def test_duplicate_names_get_the_end_of_their_run_id_everywhere():
    from workbench import ledger

    rows = [_result("same", 0.9, 100), _result("same", 0.8, 50)]
    labels = [f"same ({r.run_id[-6:]})" for r in rows]
    assert list(compare(rows).index) == labels
    assert list(ledger(rows, baseline=0)["variant"]) == labels


def test_latency_comparison_trusts_a_ratio_only_as_far_as_the_timing_does():
    from workbench.report import SEPARATE_TIMING_SPREAD, latency_comparison

    def rec(ms, together="x", device="cpu", noisy=False):
        return [
            {
                "mode": "eager",
                "batch_size": 1,
                "latency_ms": ms,
                "latency_ms_q25": 0.95 * ms,
                "latency_ms_q75": 1.05 * ms,
                "noisy": noisy,
                "device": device,
                "timed_with": together,
            }
        ]

    base = Result(RunConfig(name="a"), benchmarks=rec(2.0))
    faster = latency_comparison(Result(RunConfig(name="b"), benchmarks=rec(1.6)), base)
    assert faster["timed_together"] and not faster["within_noise"] and faster["text"] == "0.80x the batch-1 latency"
    apart = latency_comparison(Result(RunConfig(name="c"), benchmarks=rec(1.6, together="y")), base)
    assert not apart["timed_together"] and apart["within_noise"] and "timed in separate runs" in apart["text"]
    far = latency_comparison(
        Result(RunConfig(name="d"), benchmarks=rec(2.0 / (SEPARATE_TIMING_SPREAD + 0.5), together="y")), base
    )
    assert not far["within_noise"]
    busy = latency_comparison(Result(RunConfig(name="e"), benchmarks=rec(1.0, noisy=True)), base)
    assert busy["within_noise"] and "machine was busy" in busy["text"]
    both = Result(RunConfig(name="f"), benchmarks=rec(1.0, device="cuda:0") + rec(4.0))
    assert latency_comparison(both, base, device="cpu")["ratio"] == 2.0


def test_models_timed_in_one_call_share_a_timing_id():
    from torch import nn

    from workbench.measure import benchmark_together

    a, b = benchmark_together([nn.Linear(4, 2), nn.Linear(4, 2)], (4,), batch_sizes=(1,), warmup=1, iters=3)
    c = benchmark_together([nn.Linear(4, 2)], (4,), batch_sizes=(1,), warmup=1, iters=3)[0]
    assert a[0]["timed_with"] == b[0]["timed_with"] != c[0]["timed_with"]
