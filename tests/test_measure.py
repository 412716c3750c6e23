"""Measurement layer: FLOPs against the textbook formula, counts, sizes, honest benchmark records."""

import itertools

import pytest
import torch
import torch.nn.utils.prune
from torch import nn

from workbench import ConfigError, MeasureConfig
from workbench.measure import (
    benchmark,
    count_flops,
    count_parameters,
    device_name,
    measure,
    model_size_bytes,
    profile_summary,
    resolve_device,
    track_peak_memory,
)

RECORD_KEYS = {
    "batch_size",
    "latency_ms",
    "latency_ms_q25",
    "latency_ms_q75",
    "throughput_ips",
    "device",
    "device_name",
    "dtype",
    "mode",
    "torch_version",
    "threads",
    "relative_spread",
    "noisy",
    "load_average",
    "cpu_features",
    "timed_with",
}
no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")


def small_net():
    # 3*4*9+4 = 112, BatchNorm 4+4 = 8 (running stats are buffers, not parameters), 4*6*6*10+10 = 1450;
    # the BatchNorm bias starts at zero, so 4 of the 1570 parameters are zeros
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(144, 10))


@pytest.mark.parametrize("cin,cout,k,stride,pad,size", [(3, 8, 3, 1, 0, 10), (4, 6, 5, 2, 2, 16), (2, 3, 1, 1, 0, 7)])
def test_conv_flops_match_formula(cin, cout, k, stride, pad, size):
    conv = nn.Conv2d(cin, cout, k, stride=stride, padding=pad)  # with bias: FlopCounterMode ignores it
    out = (size + 2 * pad - k) // stride + 1
    assert count_flops(conv, (1, cin, size, size)) == 2 * cin * cout * k * k * out * out


def test_linear_flops_scale_with_batch():
    assert count_flops(nn.Linear(12, 7), (5, 12)) == 2 * 12 * 7 * 5


def test_flops_leave_training_mode_alone():
    net = small_net().train()
    count_flops(net, (1, 3, 8, 8))
    assert net.training


def test_parameter_count_of_known_net():
    assert count_parameters(small_net()) == {"params": 1570, "nonzero_params": 1566}


def test_nonzero_after_zeroing_weights():
    net = small_net()
    with torch.no_grad():
        net[4].weight[:3].zero_()  # 3 rows of 144
    assert count_parameters(net) == {"params": 1570, "nonzero_params": 1566 - 3 * 144}


def test_nonzero_sees_through_prune_masks():
    net = nn.Linear(10, 10)
    torch.nn.utils.prune.l1_unstructured(net, "weight", amount=0.3)
    assert count_parameters(net) == {"params": 110, "nonzero_params": 110 - 30}


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")  # eager quantization is deprecated
def test_quantized_model_keeps_its_count_and_shrinks():
    net = nn.Sequential(nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))
    q = torch.ao.quantization.quantize_dynamic(net, {nn.Linear}, dtype=torch.qint8)
    assert count_parameters(q)["params"] == count_parameters(net)["params"]
    assert model_size_bytes(q) < 0.4 * model_size_bytes(net)  # int8 weights at 1 byte each


def test_size_bytes_tracks_parameters_and_dtype():
    small, big = nn.Linear(100, 100), nn.Linear(1000, 1000)
    assert model_size_bytes(small) < model_size_bytes(big)
    params = count_parameters(big)["params"]
    assert 4 * params <= model_size_bytes(big) <= 4 * params + 10_000  # float32 plus pickle overhead
    assert 0.45 < model_size_bytes(big.half()) / (4 * params) < 0.55


def check_records(records, batch_sizes, dtype="float32", mode="eager"):
    assert [r["batch_size"] for r in records] == list(batch_sizes)
    for r in records:
        assert set(r) == RECORD_KEYS
        assert 0 < r["latency_ms_q25"] <= r["latency_ms"] <= r["latency_ms_q75"]
        assert r["throughput_ips"] == pytest.approx(r["batch_size"] / (r["latency_ms"] / 1e3))
        assert (r["device"], r["dtype"], r["mode"]) == ("cpu", dtype, mode)
        assert r["torch_version"] == torch.__version__ and r["threads"] == torch.get_num_threads()
        assert r["device_name"] == device_name("cpu")


def test_benchmark_records_are_complete_and_consistent():
    net = small_net().train()
    records = benchmark(net, (3, 8, 8), batch_sizes=(1, 16), warmup=2, iters=9)
    check_records(records, (1, 16))
    assert net.training  # eval mode only for the timing


def test_benchmark_bf16_autocast_and_plain_callables():
    records = benchmark(small_net(), (3, 8, 8), batch_sizes=(2,), dtype="bf16", warmup=1, iters=3)
    check_records(records, (2,), dtype="bfloat16")
    net = small_net().eval()
    records = benchmark(lambda x: net(x), (3, 8, 8), batch_sizes=(1,), warmup=1, iters=3, mode="compiled")
    check_records(records, (1,), mode="compiled")
    with pytest.raises(ValueError, match="Unknown benchmark dtype 'int3'"):
        benchmark(net, (3, 8, 8), dtype="int3")


def test_measure_metrics_use_smallest_and_largest_batch():
    metrics, records = measure(small_net(), (3, 8, 8), MeasureConfig(batch_sizes=(8, 1), warmup=1, iters=5), "cpu")
    assert set(metrics) == {
        "params",
        "nonzero_params",
        "size_bytes",
        "flops",
        "latency_ms",
        "latency_ms_spread",
        "throughput_ips",
        "latency_noisy",
        "load_average",
        "weight_dtype",
        "measure_device",
        "measure_device_name",
        "measure_dtype",
        "torch_version",
    }
    by_bs = {r["batch_size"]: r for r in records}
    assert metrics["latency_ms"] == by_bs[1]["latency_ms"]
    assert metrics["latency_ms_spread"] == pytest.approx(by_bs[1]["latency_ms_q75"] - by_bs[1]["latency_ms_q25"])
    assert metrics["throughput_ips"] == by_bs[8]["throughput_ips"]
    assert metrics["flops"] == count_flops(small_net(), (1, 3, 8, 8)) > 0
    assert (metrics["params"], metrics["measure_device"], metrics["measure_dtype"]) == (1570, "cpu", "float32")
    assert metrics["weight_dtype"] == "float32" and metrics["latency_noisy"] == by_bs[1]["noisy"]


@no_gpu
def test_resolve_device_cuda_fails_with_one_clear_line():
    with pytest.raises(ConfigError, match=r"CUDA was asked for \(hardware.device='cuda'\).*use device='cpu' or 'auto'"):
        resolve_device("cuda")
    with pytest.raises(ConfigError, match=r"measure.device='cuda:1'"):
        measure(small_net(), (3, 8, 8), MeasureConfig(device="cuda:1"), "cpu")


@pytest.mark.skipif(torch.cuda.is_available() or torch.backends.mps.is_available(), reason="auto picks a GPU here")
def test_resolve_device_auto_is_cpu_without_gpu():
    assert resolve_device("auto") == torch.device("cpu")


def test_resolve_device_unknown_name_lists_choices():
    with pytest.raises(ValueError, match=r"Unknown device 'tpu'.*auto, cpu, cuda, cuda:N, mps"):
        resolve_device("tpu")


def test_device_name_matches_cpuinfo():
    name = device_name("cpu")
    try:
        with open("/proc/cpuinfo") as f:
            expected = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), None)
    except OSError:
        expected = None
    assert name and (expected is None or name == expected)


def test_track_peak_memory_cpu():
    with track_peak_memory("cpu") as mem:
        x = torch.ones(4 * 2**20)  # 16 MB, written so the pages are resident
    assert x.sum() > 0 and mem.device == "cpu"
    assert mem.peak_bytes is None or mem.peak_bytes >= 0


def test_profile_summary_lists_top_ops():
    df = profile_summary(small_net(), (3, 8, 8), "cpu", steps=2, top=5)
    assert 0 < len(df) <= 5 and {"op", "calls", "self_cpu_ms", "cpu_total_ms"} <= set(df.columns)
    assert df["self_cpu_ms"].is_monotonic_decreasing
    assert df.attrs["device"] == "cpu" and df.attrs["torch_version"] == torch.__version__


def test_models_timed_together_take_turns_in_rounds():
    from workbench.measure import benchmark_together
    from workbench.measure.bench import ROUNDS

    calls = []

    def model(name):
        return lambda x: calls.append(name)

    recs = benchmark_together([model("a"), model("b")], (3,), batch_sizes=(2,), warmup=1, iters=10)
    timed = calls[2:]  # after one warm-up call each
    assert len(timed) == 20 and timed.count("a") == timed.count("b") == 10
    switches = sum(x != y for x, y in itertools.pairwise(timed))
    assert switches >= ROUNDS  # interleaved in rounds, not all of a then all of b (one switch)
    assert [len(r) for r in recs] == [1, 1] and all(r[0]["batch_size"] == 2 for r in recs)
