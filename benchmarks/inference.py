"""The inference ladder: each switch added to the one before, on one model and batch size.

On a GPU (ResNet-18 at batch 512 by default): strict fp32 -> TF32 -> bf16 + channels-last ->
+ torch.compile -> + max-autotune, with ratios against reference figures measured on an NVIDIA H100
(torch 2.11, CUDA 13). On a CPU (resnet20 at batch 256 by default): fp32 eager -> channels-last ->
compiled -> static int8 compiled -> ONNX Runtime. Every step's latency has its quartiles; writes
``results/inference-<device>.json``.

    python benchmarks/inference.py                 # the GPU ladder where a GPU is present, else the CPU one
    python benchmarks/inference.py --device cpu --model resnet18 --batch-size 512
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import environment, save
from workbench import create_model, load_dataset, resolve_device
from workbench.compress import CompressContext, StaticInt8, apply_step
from workbench.data import cifar10_zip_path
from workbench.measure import inference_grid, measure_modes
from workbench.train import resolve_threads

# (step, precision, mode, channels_last) and the H100 reference in images/s (ResNet-18, batch 512).
GPU_LADDER = [
    ("strict fp32", "fp32", "eager", False, 19_900),
    ("TF32", "tf32", "eager", False, 66_300),
    ("bf16 + channels-last", "bf16", "eager", True, 157_500),
    ("+ torch.compile", "bf16", "compiled", True, 200_000),
    ("+ max-autotune", "bf16", "max-autotune", True, 218_600),
]
CPU_LADDER = [
    ("fp32 eager", "fp32", "eager", False),
    ("+ channels-last", "fp32", "eager", True),
    ("+ torch.compile", "fp32", "compiled", True),
]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--model", default="")
    p.add_argument("--batch-size", type=int, default=0)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    args = p.parse_args()
    device = resolve_device(args.device)
    gpu = device.type == "cuda"
    model_name = args.model or ("resnet18" if gpu else "resnet20")
    bs = args.batch_size or (512 if gpu else 256)
    if device.type == "cpu":
        torch.set_num_threads(resolve_threads("auto"))
    zip_path = cifar10_zip_path()
    data = load_dataset(f"folder:{zip_path}" if zip_path else "digits")
    chw = tuple(data.train_x.shape[1:])
    torch.manual_seed(0)
    model = create_model(model_name, data.num_classes, data.in_channels, data.image_size).eval()
    rows = []

    def record(step: str, recs: list[dict], reference: float | None = None) -> None:
        r = recs[0]
        row = {
            "step": step,
            **{
                k: r.get(k)
                for k in (
                    "mode",
                    "dtype",
                    "latency_ms",
                    "latency_ms_q25",
                    "latency_ms_q75",
                    "throughput_ips",
                    "relative_spread",
                    "noisy",
                    "skipped",
                )
            },
        }
        if reference:
            row.update(reference_ips=reference, ratio_to_reference=(r["throughput_ips"] or 0) / reference)
        rows.append(row)
        shown = (
            f"{r['throughput_ips']:,.0f} images/s "
            f"({r['latency_ms']:.2f} ms, IQR {r['latency_ms_q25']:.2f}-{r['latency_ms_q75']:.2f})"
            if r.get("latency_ms")
            else f"skipped: {r.get('skipped')}"
        )
        print(
            f"{step:<26} {shown}" + (f"  = {row['ratio_to_reference']:.2f}x the H100 reference" if reference else ""),
            flush=True,
        )

    ladder = GPU_LADDER if gpu else CPU_LADDER
    for step, precision, mode, channels_last, *reference in ladder:
        df = inference_grid(
            model,
            chw,
            batch_sizes=(bs,),
            precisions=(precision,),
            modes=(mode,),
            device=device,
            channels_last=channels_last,
            warmup=args.warmup,
            iters=args.iters,
        )
        record(step, df.to_dict(orient="records"), reference[0] if reference else None)
    if not gpu:
        loader = [
            (
                data.train_x[i : i + 64]
                .float()
                .div(255)
                .sub(data.mean.view(1, -1, 1, 1))
                .div(data.std.view(1, -1, 1, 1)),
                data.train_y[i : i + 64],
            )
            for i in range(0, 64 * 8, 64)
        ]
        int8 = apply_step(
            create_model(model_name, data.num_classes, data.in_channels, data.image_size).eval(),
            StaticInt8(calibration_batches=8),
            CompressContext(loader[0][0], train_loader=loader),
        )
        kw = {"batch_sizes": (bs,), "device": device, "warmup": args.warmup, "iters": args.iters}
        record("static int8 compiled", measure_modes(int8, chw, modes=("compiled",), **kw))
        record("fp32 in ONNX Runtime", measure_modes(model, chw, modes=("onnxruntime",), **kw))
    env = environment(device)
    env.update(load_average=os.getloadavg()[0])
    path = save(
        "inference",
        {"benchmark": "inference", "model": model_name, "batch_size": bs, "environment": env, "steps": rows},
    )
    print(f"saved {path}")


if __name__ == "__main__":
    main()
