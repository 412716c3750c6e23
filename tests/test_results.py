import json
import os

import pytest

from workbench import Result, ResultStore, RunConfig, compare
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
    t = compare([_result("base", 0.9, 100), _result("small", 0.85, 25)], baseline="base", metrics=["accuracy", "params"])
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
