"""The one schema of what a row measures: each metric's label, unit, scale and which way is better
(``METRICS``); the pipeline, ``compare``, the ledger, the charts, the panel, the CLI and the tour all read it.
"""

from __future__ import annotations

from dataclasses import dataclass

from .._registry import unknown_name_error
from ..tasks import get_task


@dataclass(frozen=True)
class Metric:
    """What one number in a result row means and how to show it."""

    name: str
    label: str  # what it is, e.g. "test accuracy"
    unit: str = ""  # e.g. "%", "KiB", "ms, median"
    scale: float = 1.0  # shown value = stored value * scale (0.97 -> 97 %)
    lower_is_better: bool | None = None  # None: neither direction is better (epochs, learning rate)
    # What produces it: "training" (the training phase, on train_device: a run that reuses a training takes
    # these over), "evaluation" (the final model on the test split), "inference" (timed on measure_device)
    # or "model" (its shape and bytes).
    source: str = "training"
    count: bool = False  # a count that reads best as 15k / 2.3M

    @property
    def axis_label(self) -> str:
        return f"{self.label} ({self.unit})" if self.unit else self.label


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("accuracy", "test accuracy", "%", 100, False, "evaluation"),
        Metric("loss", "test loss", "cross-entropy", 1, True, "evaluation"),
        # With evaluation.tta, accuracy and loss are of the augmented answers; these say what that changed.
        Metric("accuracy_plain", "test accuracy without test-time augmentation", "%", 100, False, "evaluation"),
        Metric("tta_share", "test images given test-time augmentation", "%", 100, None, "evaluation"),
        Metric(
            "eval_seconds", "test-split evaluation time", "s, test-time augmentation included", 1, True, "evaluation"
        ),
        Metric("train_accuracy", "train accuracy (running, augmented)", "%", 100, False),
        Metric("train_eval_accuracy", "train accuracy", "%", 100, False),  # eval mode, unaugmented: for the gap
        Metric("train_loss", "train loss", "cross-entropy", 1, True),
        Metric("test_accuracy", "test accuracy", "%", 100, False),  # per epoch, in the history
        Metric("test_loss", "test loss", "cross-entropy", 1, True),
        Metric("generalization_gap", "train − test accuracy", "percentage points", 100, True, "evaluation"),
        Metric("params", "parameters", "", 1, True, "model", count=True),
        Metric("nonzero_params", "non-zero parameters", "", 1, True, "model", count=True),
        Metric("size_bytes", "model size on disk", "KiB", 1 / 1024, True, "model"),
        Metric("flops", "FLOPs per image", "", 1, True, "model", count=True),
        Metric("latency_ms", "latency per batch", "ms, median", 1, True, "inference"),
        Metric("latency_ms_spread", "latency spread", "ms, interquartile range", 1, True, "inference"),
        Metric(
            "relative_spread", "latency spread", "share of the median", 1, True, "inference"
        ),  # per benchmark record
        Metric("throughput_ips", "throughput", "images/s", 1, False, "inference", count=True),
        Metric("train_seconds", "training time", "s", 1, True),
        Metric("train_ips", "training speed", "images/s", 1, False, count=True),
        Metric("images_per_s", "training speed", "images/s", 1, False, count=True),  # per epoch, in the history
        Metric("seconds", "epoch time", "s", 1, True),  # per epoch, in the history
        Metric("elapsed_s", "training time so far", "s", 1, True),  # per epoch, in the history
        Metric("first_epoch_seconds", "first epoch", "s", 1, True),
        Metric("steady_epoch_seconds", "epoch time once warm", "s, median of the later epochs", 1, True),
        Metric("warmup_seconds", "warm-up and compile cost", "s, first epoch beyond a steady one", 1, True),
        Metric("compile_probe_seconds", "compile=auto probe", "s, counted in the first epoch", 1, True),
        Metric("peak_memory_bytes", "peak memory", "MiB", 1 / 2**20, True),
        Metric("trainable_params", "trained parameters", "", 1, True, count=True),  # LoRA: the adapters only
        Metric("optimizer_state_bytes", "optimizer state", "MiB", 1 / 2**20, True),
        Metric("epochs_run", "epochs run"),
        Metric("threads", "CPU threads", source="inference"),
        Metric(
            "inference_tflops", "achieved inference TFLOP/s", "TFLOP/s, at the largest batch", 1, False, "inference"
        ),
        Metric("ceiling_tflops", "matmul ceiling", "TFLOP/s, measured by a probe", 1, False, "inference"),
        Metric("bandwidth_gbs", "memory bandwidth", "GB/s, a STREAM triad", 1, False, "inference"),
        Metric("inference_ceiling_share", "inference share of the matmul ceiling", "", 1, False, "inference"),
        Metric("train_tflops", "achieved training TFLOP/s", "TFLOP/s, 3x the forward FLOPs", 1, False, "inference"),
        Metric("train_ceiling_tflops", "matmul ceiling of the training device", "TFLOP/s", 1, False, "inference"),
        Metric("train_ceiling_share", "training share of the matmul ceiling", "", 1, False, "inference"),
        Metric("load_average", "machine load average (1 min)", source="inference"),
        Metric("resumed_epochs", "epochs resumed from an interrupted run"),
        Metric("train_examples", "training examples"),
        Metric("steps_per_epoch", "optimizer steps per epoch"),
        Metric("lr", "learning rate"),
        # A language model (task lm): its loss is per token on fixed validation windows; accuracy is next-token.
        Metric("perplexity", "validation perplexity", "per token", 1, True, "evaluation"),
        Metric("bits_per_byte", "validation bits per byte", "bits", 1, True, "evaluation"),
        Metric("train_eval_loss", "train loss (eval mode, fixed windows)", "cross-entropy", 1, True),
        Metric("generalization_gap_loss", "validation − train loss", "cross-entropy", 1, True, "evaluation"),
        Metric("train_tps", "training speed", "tokens/s", 1, False, count=True),
        Metric("throughput_tps", "throughput (a forward of whole windows)", "tokens/s", 1, False, "inference", True),
        Metric("flops_per_token", "FLOPs per token", "", 1, True, "model", count=True),
        Metric("ttft_ms", "time to first token", "ms, median, batch 1, KV cache", 1, True, "inference"),
        Metric("ttft_ms_uncached", "time to first token without the KV cache", "ms, median", 1, True, "inference"),
        Metric("decode_tps", "decode speed", "tokens/s, batch 1, KV cache", 1, False, "inference", True),
        Metric("decode_tps_uncached", "decode speed recomputing", "tokens/s, batch 1", 1, False, "inference", True),
        Metric("decode_tps_bs8", "decode speed at batch 8", "tokens/s, KV cache", 1, False, "inference", True),
        Metric("decode_tps_bs8_uncached", "decode speed at batch 8 recomputing", "tokens/s", 1, False, "inference"),
        Metric("kv_speedup", "KV cache speed-up of decoding", "x, batch 1", 1, False, "inference"),
        # The same, decoding through torch.compile (measure.modes has compiled; the cache a StaticKVCache).
        Metric("ttft_ms_compiled", "time to first token, compiled", "ms, median, batch 1", 1, True, "inference"),
        Metric("ttft_ms_uncached_compiled", "time to first token, compiled, no cache", "ms", 1, True, "inference"),
        Metric("decode_tps_compiled", "decode speed, compiled", "tokens/s, batch 1", 1, False, "inference", True),
        Metric(
            "decode_tps_uncached_compiled", "decode speed, compiled, recomputing", "tokens/s", 1, False, "inference"
        ),
        Metric("decode_tps_bs8_compiled", "decode speed at batch 8, compiled", "tokens/s", 1, False, "inference"),
        Metric(
            "decode_tps_bs8_uncached_compiled",
            "decode at batch 8, compiled, recomputing",
            "tokens/s",
            1,
            False,
            "inference",
        ),
        Metric("kv_speedup_compiled", "KV cache speed-up of compiled decoding", "x, batch 1", 1, False, "inference"),
        Metric(
            "generation_compile_s", "compiling for decoding", "s, first calls beyond warm ones", 1, True, "inference"
        ),
        Metric("kv_cache_bytes", "KV cache at full context", "KiB, batch 1", 1 / 1024, True, "model"),
        Metric("text_sha256", "sha256 of the text as split", source="evaluation"),
        Metric("gen_prompt_tokens", "prompt of the generation timing", "tokens", source="inference"),
        Metric("gen_new_tokens", "tokens generated in the generation timing", "tokens", source="inference"),
        # A data-parallel run (parallel.nproc x parallel.nnodes processes): recorded by rank 0, per rank in rank order.
        Metric("world_size", "training processes"),
        Metric("rank_images_per_s", "training speed per process", "images/s", 1, False, count=True),
        Metric("rank_parameter_bytes", "parameters held per process", "MiB", 1 / 2**20, True),
        Metric("rank_peak_memory_bytes", "peak memory per process", "MiB", 1 / 2**20, True),
    )
}


# What compare() shows when not told otherwise, for image classifiers (task_metrics() answers per task).
COMPARE_METRICS = get_task("image").compare_metrics


def metric(name: str) -> Metric:
    """The schema entry for ``name``; an unknown name lists the known ones and the closest match."""
    if name not in METRICS:
        raise unknown_name_error("metric", name, METRICS)
    return METRICS[name]


def format_number(value: float) -> str:
    """Four significant digits, but whole numbers with thousands separators (no 1.955e+05 in tables).

    Example:
        >>> format_number(195512.3), format_number(0.068921), format_number(98.888)
        ('195,512', '0.06892', '98.89')
    """
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"


def latency_key(key: str) -> tuple[str, str, int]:
    """A latency column's key (``cpu/eager/bs1``, as in ``cpu/eager/bs1_ms``) as (device, mode, batch size).

    Example:
        >>> latency_key("cuda/compiled/bs64")
        ('cuda', 'compiled', 64)
    """
    device, mode, batch = key.split("/")
    return device, mode, int(batch[2:])
