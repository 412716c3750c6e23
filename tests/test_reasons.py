"""The ledger's reasons are decided by measurements: a case for every reason code that its diagnostic must
classify, the diagnostics themselves measured for real, and no reason printed without its numbers or the
word "rule"."""

import re
import time

import pytest
import torch
from torch import nn

from workbench import MeasureConfig, ModelConfig, Result, RunConfig, TrainConfig, run
from workbench.compress import (
    QAT,
    CastPrecision,
    DynamicInt8,
    OrtDynamicInt8,
    StaticInt8,
    UnstructuredPrune,
    WeightOnlyInt8,
)
from workbench.measure import activation_bytes, matmul_speedup, memory_bandwidth, op_shares, roofline_point
from workbench.measure.ceiling import matmul_ceiling
from workbench.measure.diagnose import gemm_shapes
from workbench.report.ledger import REASONS, RULE, why_not_faster
from workbench.report.roofline import roofline

# Roofs of a made-up device (100 GFLOP/s, 10 GB/s: the ridge at 10 FLOP/byte) and a model of 2 MFLOP and
# 400 kB of weights an example, 10 kB of activations: at batch 64 a call does 128 MFLOP over 1.68 MB.
ROOFS = {"ceiling_tflops": 0.1, "bandwidth_gbs": 10.0}
BASE = {"params": 1000, "nonzero_params": 1000, "size_bytes": 400_000, "flops": 2e6, "accuracy": 0.9}
PROFILE = {"arithmetic": 0.5, "quantize": 0.0, "layout": 0.05, "other": 0.15, "overhead": 0.3}


def _records(latencies, device="cpu", spread=0.04, features=("avx2",)):
    return [
        {
            "mode": key.split("/")[0],
            "batch_size": int(key.split("/")[1]),
            "latency_ms": ms,
            "latency_ms_q25": ms * (1 - spread / 2),
            "latency_ms_q75": ms * (1 + spread / 2),
            "relative_spread": spread,
            "device": device,
            "device_name": "test device",
            "cpu_features": list(features),
            "threads": 1,
        }
        for key, ms in latencies.items()
    ]


def _row(name, steps=(), metrics=None, latencies=None, diagnostics=None, **timing):
    diagnostics = {
        "activation_bytes": 10_000,
        "profile": {"bs64": {"shares": PROFILE, "batch_size": 64}},
        **(diagnostics or {}),
    }
    return Result(
        RunConfig(name=name, compress=tuple(steps)),
        {**BASE, **ROOFS, "diagnostics": diagnostics, **(metrics or {})},
        benchmarks=_records(latencies or {"eager/64": 10.0}, **timing),
    )


def _reason(variant, base, cell=("eager", 64)):
    reasons = why_not_faster([base, variant])
    hit = reasons[(reasons["mode"] == cell[0]) & (reasons["batch_size"] == cell[1])]
    return (hit["reason"].iloc[0], hit["text"].iloc[0]) if len(hit) else (None, "")


def _latencies(result):
    """The baseline's timings: the variant's cells at the times the test gives the baseline (the same)."""
    return {f"{r['mode']}/{r['batch_size']}": r["latency_ms"] for r in result.benchmarks}


def _no_diagnostics(name, steps=(), metrics=None, latencies=None, **timing):
    r = _row(name, steps, metrics, latencies, **timing)
    r.metrics.pop("diagnostics")
    return r


QUANTIZED_PROFILE = {"arithmetic": 0.2, "quantize": 0.25, "layout": 0.2, "other": 0.1, "overhead": 0.25}
CASES = {
    # code: (variant, baseline or None for the same timings as the variant, the cell)
    "noisy": (_row("busy", latencies={"eager/64": 10.0}, spread=0.9), None, ("eager", 64)),
    "slower": (
        _row("slow", [UnstructuredPrune(0.5)], {"nonzero_params": 500}, {"eager/64": 20.0}),
        _row("fp32"),
        ("eager", 64),
    ),
    "within_spread": (
        _row("wobbly", latencies={"eager/64": 11.5}, spread=0.2),
        _row("fp32", spread=0.2),
        ("eager", 64),
    ),
    "implausible": (_row("adam", latencies={"eager/64": 5.0}), _row("fp32"), ("eager", 64)),
    "fake_quant": (
        _row(
            "qat",
            [QAT(convert=False)],
            diagnostics={"profile": {"bs64": {"shares": QUANTIZED_PROFILE, "batch_size": 64}}},
        ),
        None,
        ("eager", 64),
    ),
    "fake_quant_rule": (_no_diagnostics("qat", [QAT(convert=False)]), None, ("eager", 64)),
    "dense": (_row("sparse", [UnstructuredPrune(0.8)], {"nonzero_params": 200}), None, ("eager", 64)),
    "int8_compile": (
        _row("int8", [StaticInt8()], {"size_bytes": 100_000}, {"eager/64": 12.0, "compiled/64": 4.0}),
        _row("fp32", latencies={"eager/64": 10.0, "compiled/64": 8.0}),
        ("eager", 64),
    ),
    "step": (_row("ort", [OrtDynamicInt8()], {"size_bytes": 100_000}), None, ("eager", 64)),
    "int8_kernels_slow": (
        _row("int8", [DynamicInt8()], {"size_bytes": 100_000}, diagnostics={"matmul": {"int8_dynamic": {"bs64": 0.7}}}),
        None,
        ("eager", 64),
    ),
    "int8_overhead": (
        _row(
            "int8",
            [DynamicInt8()],
            {"size_bytes": 100_000},
            diagnostics={
                "matmul": {"int8_dynamic": {"bs64": 2.0}},
                "profile": {"bs64": {"shares": QUANTIZED_PROFILE, "batch_size": 64}},
            },
        ),
        None,
        ("eager", 64),
    ),
    "int8_no_vnni": (_no_diagnostics("int8", [DynamicInt8()], {"size_bytes": 100_000}), None, ("eager", 64)),
    "int8_small": (
        _no_diagnostics("int8", [DynamicInt8()], {"size_bytes": 100_000}, features=("avx512_vnni", "vnni")),
        _no_diagnostics("fp32", features=("avx512_vnni", "vnni")),
        ("eager", 64),
    ),
    "gpu_bs1": (
        _no_diagnostics("adam", latencies={"eager/1": 1.0}, device="cuda:0"),
        _no_diagnostics("fp32", latencies={"eager/1": 1.0}, device="cuda:0"),
        ("eager", 1),
    ),
    "weight_only": (_row("wo", [WeightOnlyInt8()], {"size_bytes": 100_000}), None, ("eager", 64)),
    "weight_only_rule": (_no_diagnostics("wo", [WeightOnlyInt8()], {"size_bytes": 100_000}), None, ("eager", 64)),
    "cast_kernels_slow": (
        _row("bf16", [CastPrecision("bf16")], {"size_bytes": 200_000}, diagnostics={"matmul": {"bf16": {"bs64": 0.3}}}),
        None,
        ("eager", 64),
    ),
    "cast_overhead": (
        _row("bf16", [CastPrecision("bf16")], {"size_bytes": 200_000}, diagnostics={"matmul": {"bf16": {"bs64": 1.6}}}),
        None,
        ("eager", 64),
    ),
    "cast_no_native": (_no_diagnostics("bf16", [CastPrecision("bf16")], {"size_bytes": 200_000}), None, ("eager", 64)),
    "cast_small": (
        _no_diagnostics("bf16", [CastPrecision("bf16")], {"size_bytes": 200_000}, features=("avx512_bf16",)),
        _no_diagnostics("fp32", features=("avx512_bf16",)),
        ("eager", 64),
    ),
    # Half the FLOPs, the same time. At batch 64 and 10 ms the call reaches 6.4 GFLOP/s of a 100 GFLOP/s roof:
    # overhead. At batch 1 and 0.1 ms, 1 MFLOP over 420 kB is 2.4 FLOP/byte, left of the ridge, at 42% of
    # the bandwidth roof: memory. At batch 64 and 1 ms, 64 GFLOP/s at 38 FLOP/byte: compute.
    "overhead": (_row("thin", metrics={"flops": 1e6}), None, ("eager", 64)),
    "memory_bound": (
        _row("thin", metrics={"flops": 1e6}, latencies={"eager/1": 0.1}),
        _row("fp32", latencies={"eager/1": 0.1}),
        ("eager", 1),
    ),
    "compute_bound": (
        _row("thin", metrics={"flops": 1e6}, latencies={"eager/64": 1.0}),
        _row("fp32", latencies={"eager/64": 1.0}),
        ("eager", 64),
    ),
    "flops_rule": (_no_diagnostics("thin", metrics={"flops": 1e6}), None, ("eager", 64)),
    "same_work": (_row("adam"), None, ("eager", 64)),
}


def test_every_reason_code_has_a_case():
    assert set(CASES) == set(REASONS)


@pytest.mark.parametrize("code", sorted(CASES))
def test_each_reason_code_is_what_its_diagnostic_decides(code):
    variant, base, cell = CASES[code]
    reason, text = _reason(variant, base or _row("fp32", latencies=_latencies(variant), **_timing_of(variant)), cell)
    assert reason == code, (code, reason, text)
    # The text carries the measurement (a number) or says it is a rule.
    assert text.startswith(RULE) or re.search(r"\d", text), text


def _timing_of(result):
    r = result.benchmarks[0]
    return {"device": r["device"], "features": tuple(r["cpu_features"])}


def test_no_reason_is_written_without_a_measurement_or_the_word_rule():
    for code, template in REASONS.items():
        measured = re.search(r"\{(?!step_reason|dtype|needs|features)\w+", template)
        assert template.startswith(RULE) or measured, f"{code}: {template}"
        assert not (template.startswith(RULE) and code.endswith(("_overhead", "_slow", "_bound"))), code


def test_the_diagnostic_numbers_are_in_the_text():
    _, text = _reason(CASES["int8_overhead"][0], _row("fp32"))
    assert (
        "dynamic int8 products at this model's layer shapes run 2.00x float32" in text
        and "25% in quantize/dequantize" in text
        and "baseline: 5%, 30%" in text
    )
    _, text = _reason(CASES["overhead"][0], _row("fp32"))
    assert "FLOPs 0.50x but latency 1.00x" in text and "6.4 GFLOP/s" in text and "overhead-bound" in text
    reasons = why_not_faster([_row("fp32"), CASES["overhead"][0]])
    assert reasons.loc[0, "regime"] == "overhead" and reasons.loc[0, "achieved_gflops"] == pytest.approx(6.4)


# ---------------------------------------------------------------------------------------------
# The diagnostics, measured


def test_a_fake_quant_model_spends_measured_time_in_quantize_steps_and_a_float_one_none():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10)).eval()

    class FakeQuant(nn.Module):
        def forward(self, x):
            return torch.fake_quantize_per_tensor_affine(x, 0.05, 0, -128, 127)

    fake = nn.Sequential(FakeQuant(), net[0], FakeQuant(), net[1], net[2], FakeQuant()).eval()
    x = torch.randn(8, 64)
    float_shares, fake_shares = op_shares(net, x)["shares"], op_shares(fake, x)["shares"]
    assert float_shares["quantize"] == 0 and fake_shares["quantize"] > 0
    assert float_shares["arithmetic"] > 0 and sum(fake_shares.values()) == pytest.approx(1)


def test_int8_products_are_timed_at_the_models_own_layer_shapes():
    net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(16 * 8 * 8, 10))
    shapes = gemm_shapes(net, torch.zeros(1, 3, 8, 8))
    assert shapes == [(64, 27, 16), (1, 1024, 10)]
    df = matmul_speedup([(m * 4, k, n) for m, k, n in shapes], "int8", repeats=3)
    assert list(df[["m", "k", "n"]].itertuples(index=False, name=None)) == [(256, 27, 16), (4, 1024, 10)]
    # The model's speed-up is its summed float32 time over its summed int8 time, not a mean of ratios.
    assert df.attrs["speedup"] == pytest.approx(df["fp32_ms"].sum() / df["int8_ms"].sum())
    assert (df["speedup"] > 0).all() and df.attrs["kind"] == "int8"
    with pytest.raises(ValueError, match="use one of int8, int8_dynamic, bf16, fp16"):
        matmul_speedup(shapes, "int4")


def test_real_timings_land_in_the_regime_their_shapes_predict():
    """Three calls whose regime follows from their shapes on any CPU: a 4096x4096 matrix-vector product
    reads 64 MiB for 34 MFLOP (memory), a 1024-wide product at batch 512 does 128 FLOPs a byte (compute),
    a stack of 8x8 layers at batch 1 does almost nothing a call (overhead)."""
    torch.set_num_threads(1)
    roofs = {"peak_tflops": matmul_ceiling("cpu")["tflops"], "bandwidth_gbs": memory_bandwidth("cpu")["gbs"]}

    def regime(model, x):
        with torch.inference_mode():
            for _ in range(3):
                model(x)
            times = []
            for _ in range(7):
                t0 = time.perf_counter()
                model(x)
                times.append(time.perf_counter() - t0)
        seconds = sorted(times)[3]
        flops = sum(2 * m * k * n for m, k, n in gemm_shapes(model, x))
        weights = sum(p.numel() * p.element_size() for p in model.parameters())
        moved = weights + 2 * activation_bytes(model, x)
        return roofline_point(flops, moved, seconds, **roofs)["regime"]

    assert regime(nn.Linear(4096, 4096, bias=False), torch.randn(1, 4096)) == "memory"
    assert regime(nn.Linear(1024, 1024, bias=False), torch.randn(512, 1024)) == "compute"
    tiny = nn.Sequential(*[nn.Sequential(nn.Linear(8, 8), nn.ReLU()) for _ in range(16)])
    assert regime(tiny, torch.randn(1, 8)) == "overhead"


def test_a_run_records_its_diagnostics_and_the_ledger_places_every_cell_on_the_roofline(tmp_path):
    cfg = RunConfig(
        name="fp32",
        model=ModelConfig(name="mlp", width=0.25),
        train=TrainConfig(epochs=1),
        measure=MeasureConfig(batch_sizes=(1, 8), warmup=1, iters=3),
    )
    base = run(cfg, store=tmp_path, progress=False)
    int8 = run(cfg.replace(name="int8", compress=(DynamicInt8(),)), store=tmp_path, progress=False)
    for r in (base, int8):
        d = r.metrics["diagnostics"]
        assert d["activation_bytes"] > 0 and set(d["profile"]) == {"bs1", "bs8"}
        assert sum(d["profile"]["bs8"]["shares"].values()) == pytest.approx(1)
        assert r.metrics["bandwidth_gbs"] > 0
    assert base.metrics["diagnostics"]["matmul"] == {}
    assert set(int8.metrics["diagnostics"]["matmul"]["int8_dynamic"]) == {"bs1", "bs8"}
    points = roofline([base, int8])
    assert len(points) == 4 and set(points["regime"]) <= {"compute", "memory", "overhead"}
    assert (points["achieved_gflops"] <= points["peak_gflops"] * 1.5).all()
    for text in why_not_faster([base, int8])["text"]:
        assert text.startswith(RULE) or re.search(r"\d", text), text


def test_effects_too_small_to_see_are_named_from_the_measurements():
    from workbench import hidden_effects

    base = _row("fp32", metrics={"accuracy": 0.995}, spread=0.2)
    same_speed = _row("wobbly", metrics={"accuracy": 0.99}, latencies={"eager/64": 11.5}, spread=0.2)
    hidden = hidden_effects([base, same_speed], baseline="fp32")
    assert list(hidden["effect"]) == ["accuracy", "latency"]
    assert "99.5%" in hidden.loc[0, "detail"] and "0.5 points" in hidden.loc[0, "detail"]
    assert hidden.loc[1, "where"] == "wobbly: cpu/eager/bs64" and "inside the timing spread" in hidden.loc[1, "detail"]
    # A baseline below the ceiling and a clearly faster variant hide nothing.
    faster = _row("half", metrics={"accuracy": 0.8, "flops": 1e6}, latencies={"eager/64": 4.0})
    assert hidden_effects([_row("fp32", metrics={"accuracy": 0.9}), faster], baseline="fp32").empty
