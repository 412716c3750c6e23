"""The speed-up ledger: measured modes, the table's columns and its why-not-faster reasons."""

import copy
import importlib

import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure
from torch import nn

from workbench import MeasureConfig, ModelConfig, Result, RunConfig, TrainConfig, run
from workbench.compress.pruning import UnstructuredPrune, prune
from workbench.compress.quantization import QAT, DynamicInt8, StaticInt8, quantize
from workbench.measure import (
    available_devices,
    count_flops,
    count_parameters,
    measure_modes,
    model_size_bytes,
    timing_plan,
)
from workbench.report.charts import ledger_latency_chart, ledger_size_chart
from workbench.report.ledger import RULE, ledger, reason_at, why_not_faster

CHW = (1, 8, 8)


def small_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(32, 32, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(32 * 64, 10),
    ).eval()


def measured(model: nn.Module, config: RunConfig, **kw) -> Result:
    """A Result built from real measurements of ``model`` (accuracy: agreement with the float net's labels)."""
    x = torch.randn(64, *CHW, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        accuracy = (model(x).argmax(1) == small_net()(x).argmax(1)).float().mean().item()
    metrics = {
        **count_parameters(model),
        "size_bytes": model_size_bytes(model),
        "flops": count_flops(model, (1, *CHW)),
        "accuracy": accuracy,
    }
    return Result(config=config, metrics=metrics, benchmarks=measure_modes(model, CHW, **kw))


def test_unstructured_pruning_is_explained_from_real_measurements():
    torch.set_num_threads(1)  # one thread: timings on a shared machine wobble far less
    # milliseconds, not the jitter of microseconds
    kw = {"modes": ("eager",), "batch_sizes": (16, 64), "warmup": 3, "iters": 30}
    sparse_step = UnstructuredPrune(amount=0.8)
    dense, pruned = small_net(), prune(small_net(), sparse_step)
    for model in (dense, pruned):  # warm the process first: oneDNN builds its kernels for a shape once, and the
        measure_modes(model, CHW, **kw)  # model timed first would pay for both (same shapes) and look slower
    base = measured(dense, RunConfig(name="fp32"), **kw)
    sparse = measured(pruned, RunConfig(name="pruned 80%", compress=(sparse_step,)), **kw)
    df = ledger([base, sparse])
    fixed = [
        "variant",
        "compress",
        "params",
        "nonzero_params",
        "size_bytes",
        "flops",
        "accuracy",
        "accuracy_delta",
        "size_ratio",
        "flops_ratio",
    ]
    timed = ["cpu/eager/bs16_ms", "cpu/eager/bs64_ms", "cpu/eager/bs16_speedup", "cpu/eager/bs64_speedup"]
    assert list(df.columns) == fixed + timed + ["why_not_faster"]
    assert df.loc[0, "why_not_faster"] == "" and df.loc[0, "cpu/eager/bs16_speedup"] == 1.0
    row = df.loc[1]
    assert row["nonzero_params"] < 0.3 * row["params"] and row["flops_ratio"] == 1.0 and row["size_ratio"] > 0.95
    # The same dense work: never credited as a real speed-up; explained as dense, or the timing is doubted.
    codes = set(why_not_faster([base, sparse])["reason"])
    assert codes and codes <= {"dense", "noisy", "implausible", "slower", "within_spread"}, codes
    assert df.attrs["device_names"]["cpu"] == base.benchmarks[0]["device_name"]
    # The same table comes out of a store's DataFrame.
    from workbench.report import results_frame

    assert ledger(results_frame([base, sparse])).equals(df)


def test_modes_that_do_not_apply_are_skipped_with_a_reason():
    packed = quantize(copy.deepcopy(small_net()), DynamicInt8())
    records = measure_modes(packed, CHW, modes=("eager", "onnxruntime"), batch_sizes=(1,), warmup=1, iters=3)
    eager, onnx = records
    assert eager["latency_ms"] > 0 and "skipped" not in eager
    assert onnx["mode"] == "onnxruntime" and onnx["latency_ms"] is None and onnx["skipped"]
    # Skipped records leave no latency column behind.
    df = ledger([Result(RunConfig(name="int8"), {"params": 1}, benchmarks=records)])
    assert "cpu/onnxruntime/bs1_ms" not in df and "cpu/eager/bs1_ms" in df


@pytest.mark.slow
def test_static_int8_is_timed_eager_and_compiled():
    x = torch.randn(8, *CHW)
    q = quantize(small_net(), StaticInt8(calibration_batches=2), example_inputs=x, calibration=[x, x])
    records = measure_modes(q, CHW, modes=("eager", "compiled", "onnxruntime"), batch_sizes=(1,), warmup=2, iters=5)
    assert [r["mode"] for r in records] == ["eager", "compiled", "onnxruntime"]
    assert all(r["latency_ms"] > 0 for r in records), [r.get("skipped") for r in records]


def _records(latencies: dict[str, float], device="cpu", spread=0.04, features=("avx2",)) -> list[dict]:
    """Hand-written timings: these tests check the reasoning rules, the measured test above checks the numbers."""
    out = []
    for key, ms in latencies.items():
        mode, bs = key.split("/")
        out.append(
            {
                "mode": mode,
                "batch_size": int(bs),
                "latency_ms": ms,
                "latency_ms_q25": ms * (1 - spread / 2),
                "latency_ms_q75": ms * (1 + spread / 2),
                "relative_spread": spread,
                "device": device,
                "device_name": "test device",
                "cpu_features": list(features),
                "load_average": 0.3,
            }
        )
    return out


def _row(name, steps, metrics, latencies, device="cpu", **timing):
    base = {"params": 1000, "nonzero_params": 1000, "size_bytes": 4000, "flops": 2000, "accuracy": 0.9}
    return Result(
        RunConfig(name=name, compress=steps), {**base, **metrics}, benchmarks=_records(latencies, device, **timing)
    )


def test_why_not_faster_rules():
    timing = {"eager/1": 1.0, "eager/64": 10.0, "compiled/1": 0.8, "compiled/64": 8.0}
    rows = [
        _row("fp32", (), {}, timing),
        _row("qat fake", (QAT(convert=False),), {}, {**timing, "eager/1": 3.0}),
        _row(
            "int8",
            (StaticInt8(),),
            {"size_bytes": 1000},
            {**timing, "eager/1": 1.2, "compiled/1": 0.4, "compiled/64": 4.0},
        ),
        _row("int8 slow", (StaticInt8(),), {"size_bytes": 1000}, timing),
        _row("thin", (), {"params": 500, "nonzero_params": 500, "flops": 1000}, {**timing, "eager/64": 5.0}),
    ]
    df = ledger(rows, baseline="fp32").set_index("variant")
    # No diagnostics in these rows (stored before they were measured): the reasons say they are rules.
    assert df.loc["qat fake", "why_not_faster"].startswith(RULE + "a fake-quant model simulates int8")
    assert df.loc["int8", "why_not_faster"] == (
        "0.83x eager but 2.00x compiled: int8 kernels need torch.compile on this backend (cpu/eager/bs1); "
        "1.00x eager but 2.00x compiled: int8 kernels need torch.compile on this backend (cpu/eager/bs64)"
    )
    assert df.loc["int8", "cpu/compiled/bs1_speedup"] == 2.0
    assert df.loc["int8 slow", "why_not_faster"].startswith(RULE + "int8 is not faster here")
    assert df.loc["thin", "why_not_faster"].startswith(
        RULE + "FLOPs fell but latency is bound by memory or overhead at this size (cpu/eager/bs1"
    )
    assert "cpu/eager/bs64" not in df.loc["thin", "why_not_faster"]  # twice as fast there
    gpu = ledger(
        [
            _row("fp32", (), {}, {"eager/1": 1.0}, "cuda:0"),
            _row("thin", (), {"flops": 1000}, {"eager/1": 1.0}, "cuda:0"),
        ]
    )
    assert gpu.loc[1, "why_not_faster"] == RULE + "a GPU at batch 1 waits on kernel launches (cuda/eager/bs1)"


def test_baseline_choice_and_errors():
    rows = [_row("a", (StaticInt8(),), {}, {"eager/1": 1.0}), _row("b", (DynamicInt8(),), {}, {"eager/1": 2.0})]
    with pytest.raises(ValueError) as e:
        ledger(rows)
    assert "compress == 'none'" in str(e.value) and "\n" not in str(e.value)
    assert ledger(rows, baseline="b").loc[0, "cpu/eager/bs1_speedup"] == 2.0
    assert ledger(rows, baseline=1).attrs["baseline"] == "b"
    with pytest.raises(ValueError, match="No run with id or name 'c'"):
        ledger(rows, baseline="c")
    with pytest.raises(ValueError, match="run some variants"):
        ledger(pd.DataFrame())


def test_charts_have_labelled_axes_and_name_the_device():
    timing = {"eager/1": 1.0, "eager/64": 10.0, "compiled/1": 0.5}
    df = ledger(
        [_row("fp32", (), {}, timing), _row("int8", (StaticInt8(),), {"size_bytes": 1000, "accuracy": 0.89}, timing)]
    )
    fig = ledger_size_chart(df)
    assert isinstance(fig, Figure) and fig.axes[0].get_xlabel() == "model size on disk (KiB)"
    assert [t.get_text() for t in fig.axes[0].texts] == ["fp32", "int8"]
    fig = ledger_latency_chart(df)
    ax = fig.axes[0]
    assert ax.get_ylabel() == "latency per batch (ms, median), IQR bars" and "cpu: test device" in ax.get_title()
    assert len(ax.patches) == 2 * 3 and ax.get_yscale() == "linear"


def test_timing_plan_covers_every_device_once_per_mode(monkeypatch):
    # Planning only (which device gets which modes): a GPU machine is described, nothing runs on it.
    modes = importlib.import_module("workbench.measure.modes")
    cpu, gpu = torch.device("cpu"), torch.device("cuda", 0)
    monkeypatch.setattr(modes, "available_devices", lambda: [cpu, gpu])
    every = MeasureConfig(modes=("eager", "compiled", "onnxruntime"), device="all")
    # ONNX Runtime runs on each device: its CPU provider there, its CUDA provider on the GPU.
    assert timing_plan(every, gpu) == [(gpu, ["compiled", "onnxruntime"]), (cpu, ["eager", "compiled", "onnxruntime"])]
    assert timing_plan(every, cpu) == [(cpu, ["compiled", "onnxruntime"]), (gpu, ["eager", "compiled", "onnxruntime"])]
    assert timing_plan(MeasureConfig(modes=("eager",), device="same"), gpu) == []
    assert timing_plan(MeasureConfig(modes=("eager",), device="all"), cpu) == [(gpu, ["eager"])]


def test_run_with_measure_device_all_fills_the_ledger_for_this_machine(tmp_path):
    cfg = RunConfig(
        model=ModelConfig(name="mlp", width=0.25),
        train=TrainConfig(epochs=1),
        measure=MeasureConfig(batch_sizes=(1, 8), warmup=1, iters=3, device="all"),
    )
    result = run(cfg, store=tmp_path, progress=False)
    timed = {(r["device"].split(":")[0], r["mode"]) for r in result.benchmarks}
    assert timed == {(d.type, "eager") for d in available_devices()}
    df = ledger([result])
    assert {f"{d.type}/eager/bs8_ms" for d in available_devices()} <= set(df.columns)


def test_reasons_come_as_a_tidy_frame_decided_from_the_step_types():
    from workbench.report.ledger import REASON_COLUMNS, REASONS, reason_at, why_not_faster

    timing = {"eager/1": 1.0, "eager/64": 10.0}
    rows = [
        _row("fp32", (), {}, timing),
        _row("qat fake", (QAT(convert=False),), {}, timing),
        # a name that reads like a step decides nothing: only the config's step types do
        _row("qat(convert=false) in name only", (), {"flops": 1000}, timing),
        _row("sparse", (UnstructuredPrune(0.8),), {"nonzero_params": 200}, {**timing, "eager/64": 4.0}),
    ]
    reasons = why_not_faster(rows)
    assert list(reasons.columns) == REASON_COLUMNS and set(reasons["reason"]) <= set(REASONS)
    by = reasons.set_index(["variant", "batch_size"])["reason"]
    assert by["qat fake", 1] == by["qat fake", 64] == "fake_quant_rule"
    assert by["qat(convert=false) in name only", 1] == "flops_rule"
    assert by["sparse", 1] == "dense"
    assert by["sparse", 64] == "implausible"  # 2.5x faster with the same dense work: the numbers are doubted
    assert reason_at(reasons, "sparse", device="cpu", mode="eager", batch_size=1) == REASONS["dense"].format(
        zeros=0.8, flops_ratio=1.0
    )
    assert reason_at(reasons, "sparse", device="cpu", mode="eager", batch_size=2) == ""  # not measured there
    table = ledger(rows).set_index("variant")
    for variant, part in reasons.groupby("variant"):  # the readable column says the same
        assert all(text in table.loc[variant, "why_not_faster"] for text in part["text"])
    assert (
        table.loc["fp32", "why_not_faster"] == "" and table.attrs["labels"]["size_bytes"] == "model size on disk (KiB)"
    )


def test_reasons_are_read_off_the_measurements_not_guessed():
    from workbench.compress import CastPrecision, WeightOnlyInt8

    timing = {"eager/64": 10.0}
    reasons = lambda *rows: why_not_faster([_row("fp32", (), {}, timing), *rows]).set_index("variant")
    # a spread this wide says the machine was busy, whatever the method
    noisy = reasons(_row("pruned", (UnstructuredPrune(0.5),), {"nonzero_params": 500}, {"eager/64": 28.0}, spread=2.5))
    assert (
        noisy.loc["pruned", "reason"] == "noisy"
        and "250%" in noisy.loc["pruned", "text"]
        and "0.3" in noisy.loc["pruned", "text"]
    )
    # a clear slowdown the method cannot cause is not blamed on dense weights
    slower = reasons(_row("pruned", (UnstructuredPrune(0.5),), {"nonzero_params": 500}, {"eager/64": 28.0}))
    assert slower.loc["pruned", "reason"] == "slower"
    # int8: the CPU's int8 instructions decide the text
    int8 = lambda features: reasons(_row("int8", (StaticInt8(),), {"size_bytes": 1000}, timing, features=features))
    assert int8(("avx2",)).loc["int8", "reason"] == "int8_no_vnni"
    assert (
        int8(("avx2", "avx512", "vnni")).loc["int8", "reason"] == "int8_small"
        and "vnni" in int8(("vnni",)).loc["int8", "text"]
    )
    # a bf16 cast on a CPU with native bf16 is not called emulated
    cast = lambda features: reasons(
        _row("bf16", (CastPrecision("bf16"),), {"size_bytes": 2000}, timing, features=features)
    )
    assert cast(("avx2",)).loc["bf16", "reason"] == "cast_no_native"
    assert cast(("avx512_bf16",)).loc["bf16", "reason"] == "cast_small"
    # faster at nearly the same size and work: doubted, not praised
    wo = reasons(_row("weight-only", (WeightOnlyInt8(),), {"size_bytes": 3960}, {"eager/64": 5.0}))
    assert wo.loc["weight-only", "reason"] == "implausible" and "99%" in wo.loc["weight-only", "text"]
    same = reasons(_row("adam", (), {}, {"eager/64": 5.0}))  # only training changed: the same model
    assert same.loc["adam", "reason"] == "implausible"


def test_identical_models_timed_on_a_busy_machine_never_read_as_a_speed_change():
    """Two copies of one model, timed one after the other while a background process keeps a core
    busy (bounded in time): the ledger may not call either faster or slower without the noise flag."""
    import subprocess
    import sys

    spinners = [
        subprocess.Popen([sys.executable, "-c", "import time\nend = time.time() + 20\nwhile time.time() < end: pass"])
        for _ in range(2)
    ]
    try:
        torch.set_num_threads(2)  # two threads on two cores, one of them taken: the worst case measured
        kw = {"modes": ("eager",), "batch_sizes": (1, 32), "warmup": 2, "iters": 20}
        a = Result(
            RunConfig(name="a"),
            {"params": 1, "nonzero_params": 1, "size_bytes": 1, "flops": 1},
            benchmarks=measure_modes(small_net(), CHW, **kw),
        )
        b = Result(
            RunConfig(name="b"),
            {"params": 1, "nonzero_params": 1, "size_bytes": 1, "flops": 1},
            benchmarks=measure_modes(small_net(), CHW, **kw),
        )
    finally:
        for s in spinners:
            s.kill()
    table, reasons = ledger([a, b], baseline="a"), why_not_faster([a, b], baseline="a")
    for bs in (1, 32):
        speedup = table.loc[1, f"cpu/eager/bs{bs}_speedup"]
        reason = reason_at(reasons, "b", device="cpu", mode="eager", batch_size=bs)
        moved = speedup >= 1.1 or speedup <= 1 / 1.1
        assert (
            not moved
            or "slower beyond the timing spread" in reason
            or reason.startswith("too noisy")
            or "faster, though" in reason
            or "inside the timing spread" in reason
        ), (bs, speedup, reason)


def test_a_ratio_from_overlapping_timings_is_called_inside_the_spread_not_a_change():
    rec = lambda ms, q: [
        {
            "mode": "eager",
            "batch_size": 1,
            "latency_ms": ms,
            "latency_ms_q25": ms - q,
            "latency_ms_q75": ms + q,
            "relative_spread": 2 * q / ms,
            "device": "cpu",
        }
    ]
    metrics = {"params": 1, "nonzero_params": 1, "size_bytes": 1, "flops": 1}
    a = Result(RunConfig(name="a"), metrics, benchmarks=rec(1.0, 0.2))
    b = Result(RunConfig(name="b"), metrics, benchmarks=rec(1.2, 0.2))  # 0.83x, but the IQRs overlap
    reason = reason_at(why_not_faster([a, b], baseline="a"), "b", device="cpu", mode="eager", batch_size=1)
    assert reason.startswith("0.83x, but inside the timing spread"), reason
