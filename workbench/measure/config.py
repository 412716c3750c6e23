"""The measure section of a run: where, how and in which execution modes inference is timed."""

from __future__ import annotations

from dataclasses import dataclass

from .._errors import check_positive, require
from .._plain import Checked, setting

# How inference can run: eager PyTorch, torch.compile, the torch.export program, ONNX Runtime, TensorRT.
MEASURE_MODES = ("eager", "compiled", "export", "onnxruntime", "tensorrt")


@dataclass(frozen=True)
class MeasureConfig(Checked):
    field_prefix = "measure"

    batch_sizes: tuple[int, ...] = setting(
        (1, 64), help="latency is measured at each; the largest gives throughput", label="timed batch sizes"
    )
    warmup: int = setting(
        5, help="untimed iterations first (caches, allocator, cudnn autotune)", label="warm-up calls", range=(0, 20)
    )
    iters: int = setting(
        30, help="timed iterations; the median and spread are reported", label="timed calls", range=(1, 200)
    )
    device: str = setting(
        "same",
        help="where to time inference: same (as training), all (also every other device here), or a device",
        label="time on",
        choices=("same", "all", "cpu", "cuda", "mps"),
        options=lambda: ["same", "all", *_devices_here()[1:]],
    )
    modes: tuple[str, ...] = setting(
        ("eager",),
        help="execution modes to time: eager, compiled, export, onnxruntime, tensorrt",
        label="execution modes",
        choices=MEASURE_MODES,
    )

    def check(self) -> None:
        bad = [m for m in self.modes if m not in MEASURE_MODES]
        require(not bad and self.modes, f"measure.modes must be among {', '.join(MEASURE_MODES)} (got {self.modes})")
        require(len(self.batch_sizes) > 0, "measure.batch_sizes must name at least one batch size")
        require(all(b > 0 for b in self.batch_sizes), f"measure.batch_sizes must be > 0 (got {self.batch_sizes})")
        check_positive("measure", "warmup", self.warmup, allow_zero=True)
        check_positive("measure", "iters", self.iters)


def _devices_here() -> list[str]:
    """The devices present here (the panel's choices), asked of ``measure.device`` only when needed."""
    from .device import device_choices

    return device_choices()
