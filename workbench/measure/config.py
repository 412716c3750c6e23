"""The measure section of a run: where, how and in which execution modes inference is timed."""

from __future__ import annotations

from dataclasses import dataclass

from .._errors import check_positive, require
from .._plain import Checked

# How inference can run: eager PyTorch, torch.compile, the torch.export program, ONNX Runtime, TensorRT.
MEASURE_MODES = ("eager", "compiled", "export", "onnxruntime", "tensorrt")


@dataclass(frozen=True)
class MeasureConfig(Checked):
    field_prefix = "measure"

    batch_sizes: tuple[int, ...] = (1, 64)  # latency is measured at each; the largest gives throughput
    warmup: int = 5  # untimed iterations first (caches, allocator, cudnn autotune)
    iters: int = 30  # timed iterations; the median and spread are reported
    device: str = (
        "same"  # where to time inference: same (as training), all (also every other device here), cpu, cuda...
    )
    modes: tuple[str, ...] = ("eager",)  # execution modes to time: eager, compiled, export, onnxruntime, tensorrt

    def check(self) -> None:
        bad = [m for m in self.modes if m not in MEASURE_MODES]
        require(not bad and self.modes, f"measure.modes must be among {', '.join(MEASURE_MODES)} (got {self.modes})")
        require(len(self.batch_sizes) > 0, "measure.batch_sizes must name at least one batch size")
        require(all(b > 0 for b in self.batch_sizes), f"measure.batch_sizes must be > 0 (got {self.batch_sizes})")
        check_positive("measure", "warmup", self.warmup, allow_zero=True)
        check_positive("measure", "iters", self.iters)
