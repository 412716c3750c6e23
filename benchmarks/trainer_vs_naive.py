"""Workbench's trainer against the training loop a typical user writes, same model, data and epochs.

The typical loop is written the way the PyTorch tutorials do it: a ``DataLoader`` over a
``TensorDataset``-like dataset whose ``__getitem__`` pads, crops and flips each image on the CPU,
worker processes, fp32, ``.to(device)`` per batch. Workbench trains with its own loader (the data on
the device, whole-batch augmentation) and the options given by ``--best`` (default: bf16 autocast,
channels-last and ``torch.compile`` on a GPU; on a CPU the thread policy, and bf16 where the CPU has
native bf16). Prints seconds per epoch (first and steady) and for the whole run, compile included,
with the ratios, and writes ``results/trainer_vs_naive-<device>.json``.

    # GPU: resnet18 on the CIFAR-10 zip, batch 256, 10 epochs
    python benchmarks/trainer_vs_naive.py
    # a CPU
    python benchmarks/trainer_vs_naive.py --model resnet20 --width 0.5 --subset 5000 --epochs 3 --batch-size 128
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import environment, save
from workbench import (
    AugmentConfig,
    DataConfig,
    HardwareConfig,
    TrainConfig,
    create_model,
    load_dataset,
    resolve_device,
    train,
    train_loader,
)
from workbench._plain import to_plain
from workbench.data import cifar10_zip_path
from workbench.measure import native_bf16
from workbench.train import resolve_threads


class TutorialDataset(torch.utils.data.Dataset):
    """Per-sample CPU transforms, as torchvision's RandomCrop(32, padding=4) + RandomHorizontalFlip + Normalize do."""

    def __init__(self, x_uint8: torch.Tensor, y: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, pad: int = 4):
        self.x, self.y, self.mean, self.std, self.pad = x_uint8, y, mean.view(-1, 1, 1), std.view(-1, 1, 1), pad

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        img = self.x[i].float().div(255)
        img = (img - self.mean) / self.std
        padded = F.pad(img, (self.pad,) * 4)
        dx, dy = torch.randint(0, 2 * self.pad + 1, (2,)).tolist()
        img = padded[:, dy : dy + img.shape[1], dx : dx + img.shape[2]]
        if torch.rand(()) < 0.5:
            img = img.flip(2)
        return img, self.y[i]


def typical_loop(model, dataset, device, epochs: int, batch_size: int, lr: float, workers: int) -> list[float]:
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        num_workers=workers,
        persistent_workers=workers > 0,
        pin_memory=device.type == "cuda",
    )
    model.to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * len(loader))
    seconds = []
    for _ in range(epochs):
        start = time.perf_counter()
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds.append(time.perf_counter() - start)
    return seconds


def workbench_trainer(
    model, data, device, epochs: int, batch_size: int, lr: float, hardware: HardwareConfig, indices
) -> list[float]:
    batches = train_loader(
        data, DataConfig(augment=AugmentConfig(crop=4, flip=True)), batch_size, device=device, indices=indices
    )
    out = train(
        model,
        batches,
        TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, schedule="onecycle"),
        hardware=hardware,
        device=device,
    )
    return [h["seconds"] for h in out.history]


def summary(seconds: list[float]) -> dict:
    return {
        "epoch_seconds": seconds,
        "first_epoch_s": seconds[0],
        "steady_epoch_s": statistics.median(seconds[1:]) if len(seconds) > 1 else seconds[0],
        "total_s": sum(seconds),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="resnet18")
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=0.2)
    p.add_argument("--subset", type=int, default=0, help="train on the first N training images (0: all)")
    p.add_argument("--workers", type=int, default=4, help="DataLoader workers of the typical loop (default 4)")
    p.add_argument("--device", default="auto")
    p.add_argument("--dataset", default="", help="a dataset name (default: the CIFAR-10 zip, else digits)")
    p.add_argument("--best", default="", help="Workbench's options as precision,channels_last,compile, e.g. bf16,1,1")
    args = p.parse_args()

    device = resolve_device(args.device)
    zip_path = cifar10_zip_path()
    name = args.dataset or (f"folder:{zip_path}" if zip_path else "digits")
    data = load_dataset(name)
    n = args.subset or len(data.train_x)
    indices = torch.arange(n)
    if args.best:
        precision, cl, comp = args.best.split(",")
        hardware = HardwareConfig(precision=precision, channels_last=cl == "1", compile=comp == "1")
    elif device.type == "cuda":
        hardware = HardwareConfig(precision="bf16", channels_last=True, compile=True, optimizer_impl="fused")
    else:
        hardware = HardwareConfig(precision="bf16" if native_bf16(device) else "fp32")
    threads = resolve_threads(hardware.threads) if device.type == "cpu" else torch.get_num_threads()
    torch.set_num_threads(threads)
    workers = min(args.workers, os.cpu_count() or 1)

    def fresh():
        torch.manual_seed(0)
        return create_model(args.model, data.num_classes, data.in_channels, data.image_size, width=args.width)

    tutorial = TutorialDataset(data.train_x[:n], data.train_y[:n], data.mean, data.std)
    print(
        f"{args.model} (width {args.width}) on {name}, {n} images, batch {args.batch_size}, {args.epochs} epochs, "
        f"{device} ({threads} threads, {workers} loader workers)",
        flush=True,
    )
    typical = summary(typical_loop(fresh(), tutorial, device, args.epochs, args.batch_size, args.lr, workers))
    print(
        f"typical loop: first epoch {typical['first_epoch_s']:.2f} s, steady {typical['steady_epoch_s']:.2f} s, "
        f"total {typical['total_s']:.1f} s",
        flush=True,
    )
    ours = summary(workbench_trainer(fresh(), data, device, args.epochs, args.batch_size, args.lr, hardware, indices))
    print(
        f"workbench ({hardware.precision}, channels-last {hardware.channels_last}, compile {hardware.compile}): "
        f"first epoch {ours['first_epoch_s']:.2f} s, steady {ours['steady_epoch_s']:.2f} s, "
        f"total {ours['total_s']:.1f} s"
    )
    ratios = {
        "steady_epoch_speedup": typical["steady_epoch_s"] / ours["steady_epoch_s"],
        "whole_run_speedup": typical["total_s"] / ours["total_s"],
    }
    print(
        f"workbench is {ratios['steady_epoch_speedup']:.2f}x per steady epoch and {ratios['whole_run_speedup']:.2f}x "
        "for the whole run, compile included"
    )
    env = environment(device)
    env.update(threads=threads, load_average=os.getloadavg()[0])
    path = save(
        "trainer_vs_naive",
        {
            "benchmark": "trainer_vs_naive",
            "model": args.model,
            "width": args.width,
            "dataset": name,
            "images": n,
            "batch_size": args.batch_size,
            "epochs": args.epochs,
            "loader_workers": workers,
            "environment": env,
            "workbench_hardware": to_plain(hardware),
            "typical": typical,
            "workbench": ours,
            **ratios,
        },
    )
    print(f"saved {path}")


if __name__ == "__main__":
    main()
