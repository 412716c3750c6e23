"""The parity bar an exported model must stay within, per precision, and the error that stops an export."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Tolerance:
    """The parity bar for one precision: an exported model must stay within both numbers."""

    max_rel_error: float  # largest |exported - eager| logit difference over the largest |eager| logit
    top1_agreement: float  # share of test images where both predict the same class
    why: str


TOLERANCES = {
    # Same float32 math, other kernels: only the order of summation differs (measured ~1e-7 relative).
    "float32": Tolerance(1e-4, 0.999, "float32 on both sides: only the kernels' order of summation differs"),
    "float16": Tolerance(1e-2, 0.99, "float16 keeps 11 significant bits: kernels round differently"),
    "bfloat16": Tolerance(3e-2, 0.99, "bfloat16 keeps 8 significant bits: kernels round differently"),
    # ONNX Runtime's int8 kernels requantize between layers where PyTorch's reference dequantizes: one
    # rounding step per layer can move a logit by a few quantization steps, and flip near-ties.
    "int8": Tolerance(0.1, 0.98, "int8 kernels round activations at other places than PyTorch's int8 reference"),
}


class ParityError(ValueError):
    """An exported model disagrees with eager PyTorch beyond its precision's bar; nothing was written."""
