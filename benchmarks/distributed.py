"""Scale-out numbers on this machine: data-parallel scaling per model, DDP against FSDP, the pipeline bubble.

    python benchmarks/distributed.py                          # digits; 1 vs 2 processes, 2 rounds
    python benchmarks/distributed.py --nprocs 1,2,4 --device cuda --dataset cifar10 --epochs 3   # a GPU machine

- scaling: each model trained at every world size with the same global batch, the world sizes taking
  turns (--repeats rounds), 1 thread per process: steady-epoch images/s (median and range),
  speed-up, efficiency, accuracy; plus one process with as many threads as the largest world size
  has processes (the same cores without gradient traffic).
- fsdp: the same 2-process run as DDP and as FSDP: parameter bytes held per process, speed, accuracy.
- pipeline: ``pipeline_demo`` (two stages, GPipe) at 1-8 micro-batches: bubble share against
  GPipe's formula, step time, activation hand-off.

Writes results/distributed-<device>.json with the CPU, cores, load average and versions.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import environment, save
from workbench import ResultStore, RunConfig, pipeline_demo, rank_table, run, scaling
from workbench.distributed import steady_images_per_s
from workbench.measure import cpu_features, resolve_device
from workbench.train import available_cores, load_average


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="digits")
    p.add_argument("--models", default="mlp,cnn,resnet20")
    p.add_argument("--nprocs", default="1,2")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--store", default="runs/bench-distributed")
    args = p.parse_args()
    nprocs = [int(n) for n in args.nprocs.split(",")]
    device = resolve_device(args.device)
    store = ResultStore(args.store)
    base = RunConfig().replace(
        **{
            "data.dataset": args.dataset,
            "train.epochs": args.epochs,
            "train.batch_size": args.batch_size,
            "hardware.device": args.device,
            "measure.batch_sizes": (1,),
            "measure.iters": 5,
            "measure.modes": ("eager",),
        }
    )
    payload = {
        "environment": {
            **environment(device),
            "cores": available_cores(),
            "load_average_start": load_average(),
            "cpu_features": list(cpu_features()),
        },
        "settings": {**vars(args), "threads_per_process": 1},
        "scaling": {},
    }
    for model in args.models.split(","):
        cfg = base.replace(**{"model.name": model, "name": model})
        df = scaling(cfg, nprocs=nprocs, repeats=args.repeats, store=store, progress=False)
        ips = {n: [steady_images_per_s(store.get(i)) for i in ids] for n, ids in zip(df.nproc, df.run_ids)}
        threads = run(
            cfg.replace(**{"hardware.threads": max(nprocs), "name": f"{model} x1, {max(nprocs)} threads"}),
            store=store,
            progress=False,
            reuse=False,
        )
        payload["scaling"][model] = {
            "backend": df.attrs["backend"],
            "rows": [
                {
                    "nproc": int(r.nproc),
                    "images_per_s_median": r.images_per_s,
                    "images_per_s_range": [min(ips[r.nproc]), max(ips[r.nproc])],
                    "epoch_seconds": r.epoch_seconds,
                    "speedup": r.speedup,
                    "efficiency": r.efficiency,
                    "accuracy": r.accuracy,
                }
                for r in df.itertuples()
            ],
            f"one_process_{max(nprocs)}_threads_images_per_s": steady_images_per_s(threads),
        }
        print(model, df.drop(columns="run_ids").round(3).to_string(index=False), sep="\n", flush=True)
    two = base.replace(**{"model.name": "resnet20", "parallel.nproc": 2})
    split = rank_table(
        [
            run(
                two.replace(**{"parallel.strategy": s, "name": f"resnet20 {s} x2"}),
                store=store,
                progress=False,
                reuse=False,
            )
            for s in ("ddp", "fsdp")
        ]
    )
    payload["fsdp"] = split.to_dict("records")
    print(split.to_string(index=False), flush=True)
    pipe = pipeline_demo(
        model="cnn", dataset=args.dataset, microbatches=(1, 2, 4, 8), batch_size=args.batch_size, steps=10
    )
    payload["pipeline"] = {
        "attrs": {k: v for k, v in pipe.attrs.items() if k not in ("stage_modules",)},
        "rows": pipe.drop(columns=["activation_shape"], errors="ignore").to_dict("records"),
    }
    print(
        pipe[["microbatches", "step_ms", "bubble_share", "bubble_theory", "handoff_ms"]].round(3).to_string(index=False)
    )
    payload["environment"]["load_average_end"] = load_average()
    print(save("distributed", payload))


if __name__ == "__main__":
    main()
