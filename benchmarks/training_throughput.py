"""Training throughput (images/s) of one model under each hardware option, measured side by side.

    python benchmarks/training_throughput.py --model resnet20 --dataset cifar10zip --steps 30

Every variant trains the same model from the same seed on the same batches for ``--steps`` steps
after ``--warmup`` untimed steps; the ratio column is against fp32 eager in the same run.
``--dataset cifar10zip`` reads the CIFAR-10 JPEG zip named by WORKBENCH_CIFAR10_ZIP.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import environment, save
from workbench import create_model, load_dataset, resolve_device
from workbench.data import BatchLoader, cifar10_zip_path
from workbench.train import autocast_for, check_precision

VARIANTS = {  # name -> (precision, channels_last, compile)
    "fp32": ("fp32", False, False),
    "fp32 channels-last": ("fp32", True, False),
    "bf16 autocast": ("bf16", False, False),
    "fp16 autocast": ("fp16", False, False),
    "bf16 + channels-last": ("bf16", True, False),
    "fp32 compiled": ("fp32", False, True),
}


def images_per_second(model, loader, device, precision, channels_last, steps, warmup) -> float:
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model.to(device=device, memory_format=fmt).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    batches = iter(loader)
    seen, t0 = 0, None
    for step in range(warmup + steps):
        if step == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t0 = time.perf_counter()
        try:
            x, y = next(batches)
        except StopIteration:
            batches = iter(loader)
            x, y = next(batches)
        with autocast_for(precision, device):
            loss = F.cross_entropy(model(x.contiguous(memory_format=fmt)), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        seen += len(y) if step >= warmup else 0
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return seen / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="resnet20")
    p.add_argument("--dataset", default="cifar10zip")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--device", default="auto")
    p.add_argument("--variants", default="", help="comma-separated subset of: " + ", ".join(VARIANTS))
    args = p.parse_args()

    device = resolve_device(args.device)
    name = f"folder:{cifar10_zip_path()}" if args.dataset == "cifar10zip" else args.dataset
    data = load_dataset(name)
    loader = BatchLoader(
        data.train_x,
        data.train_y,
        args.batch_size,
        shuffle=True,
        device=device,
        mean=data.mean,
        std=data.std,
        drop_last=True,
    )
    chosen = list(args.variants.split(",") if args.variants else VARIANTS)
    rows = []
    for variant in chosen:
        precision, channels_last, compiled = VARIANTS[variant]
        try:
            check_precision(precision, device)
        except ValueError as e:
            rows.append({"variant": variant, "dtype": precision, "images_per_s": None, "note": str(e)})
            continue
        torch.manual_seed(0)
        model = create_model(args.model, data.num_classes, data.in_channels, data.image_size)
        runnable = torch.compile(model) if compiled else model
        ips = images_per_second(runnable, loader, device, precision, channels_last, args.steps, args.warmup)
        rows.append({"variant": variant, "dtype": precision, "images_per_s": ips, "note": ""})
        print(f"{variant:>22}: {ips:8.1f} images/s", flush=True)
    df = pd.DataFrame(rows)
    base = df.loc[df["variant"] == "fp32", "images_per_s"]
    df["ratio_vs_fp32"] = df["images_per_s"] / base.iloc[0] if len(base) and base.iloc[0] else None
    print(df.to_string(index=False))
    path = save(
        f"training_throughput-{args.model}",
        {
            "benchmark": "training_throughput",
            "model": args.model,
            "dataset": args.dataset,
            "batch_size": args.batch_size,
            "steps": args.steps,
            "warmup_steps": args.warmup,
            "environment": environment(device),
            "rows": df.to_dict(orient="records"),
        },
    )
    print(f"saved {path}")


if __name__ == "__main__":
    main()
