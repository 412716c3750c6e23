"""The deployment numbers, measured side by side in one run.

    python benchmarks/deployment.py                         # CIFAR-10 from the shared zip where it is here, else digits
    python benchmarks/deployment.py --epochs 3 --fraction 0.2 --threads 1 --store runs/bench-deploy
    python benchmarks/deployment.py --parts int8,serving   # again, keeping the other parts' numbers in the JSON

- runtimes: resnet20 and mobilenetv2 (depthwise-separable), trained briefly, each exported as a bundle
  (ONNX and torch.export, parity on the whole test split), then timed together in every runtime here
  (eager, torch.compile, the torch.export program, ONNX Runtime CPU; the GPU runtimes where present)
  on the same test images at batch 1 and 64.
- int8: resnet20's torchao pt2e static int8 against ONNX Runtime's static (calibrated) and dynamic
  int8, as rows of one compression ledger: accuracy, bytes, latency eager / compiled / ONNX Runtime.
- serving: resnet20's bundle served on 127.0.0.1 (ONNX Runtime, one thread) and load-tested at two
  concurrency levels, the client on the same machine.

Writes results/deployment-<device>.json with the CPU, threads, load average and versions.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import RESULTS, environment, save
from workbench import (
    DataConfig,
    HardwareConfig,
    MeasureConfig,
    ModelConfig,
    OrtDynamicInt8,
    OrtStaticInt8,
    ResultStore,
    RunConfig,
    StaticInt8,
    TrainConfig,
    ledger,
    load_model,
    run_many,
)
from workbench.data import cifar10_zip_path, eval_loader, load_dataset
from workbench.deploy import export, load_test, runtime_comparison, serving
from workbench.measure import cpu_features


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--fraction", type=float, default=0.2, help="share of the CIFAR-10 training split to train on")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--iters", type=int, default=30)
    p.add_argument("--requests", type=int, default=400)
    p.add_argument("--concurrency", default="1,8")
    p.add_argument("--store", default="runs/bench-deploy")
    p.add_argument("--parts", default="runtimes,int8,serving")
    args = p.parse_args()
    parts = set(args.parts.split(","))
    torch.set_num_threads(args.threads)
    zip_path = cifar10_zip_path()
    dataset = f"folder:{zip_path}" if zip_path else "digits"
    store = ResultStore(args.store)
    measure = MeasureConfig(batch_sizes=(1, 64), iters=args.iters, warmup=5, modes=("eager", "compiled", "onnxruntime"))
    base = RunConfig(
        data=DataConfig(dataset=dataset, fraction=args.fraction if zip_path else 1.0),
        train=TrainConfig(epochs=args.epochs),
        hardware=HardwareConfig(device="cpu", threads=args.threads),
        measure=measure,
    )
    resnet = base.replace(name="resnet20 fp32", model=ModelConfig(name="resnet20"))
    mobile = base.replace(
        name="mobilenetv2 fp32",
        model=ModelConfig(name="mobilenetv2"),
        measure=dataclasses.replace(measure, modes=("eager",)),
    )
    variants = [
        resnet.replace(name=f"resnet20 {name}", compress=(step,))
        for name, step in (
            ("torchao static int8", StaticInt8()),
            ("ORT static int8", OrtStaticInt8()),
            ("ORT dynamic int8", OrtDynamicInt8()),
        )
    ]
    runs = run_many([resnet, mobile, *variants], store=store)
    ids = dict(zip(runs["name"], runs["run_id"]))

    out = Path(tempfile.mkdtemp(prefix="bench-deploy-"))
    shipped = ("resnet20 fp32", "mobilenetv2 fp32") if "runtimes" in parts else ("resnet20 fp32",)
    bundles = {
        name: export(ids[name], out / name.split()[0], store=store, latency=False, threads=args.threads)
        for name in shipped
    }
    payload = {
        "environment": {
            **environment(torch.device("cpu")),
            "cpu_features": list(cpu_features()),
            "load_average": os.getloadavg(),
        },
        "settings": {
            **vars(args),
            "dataset": dataset.split("/")[-1],
            "train_images": int(len(load_dataset(dataset).train_x) * base.data.fraction),
        },
        "parity": {name: b.card["parity"] for name, b in bundles.items()},
        "bundle_bytes": {name: {f: e["bytes"] for f, e in b.card["files"].items()} for name, b in bundles.items()},
    }
    if "runtimes" in parts:
        data = load_dataset(dataset)
        images = next(iter(eval_loader(data, base.data, batch_size=1024)))[0]
        models = [load_model(ids[name], store=store) for name in bundles]
        timing = runtime_comparison(
            models,
            tuple(data.test_x.shape[1:]),
            images,
            names=list(bundles),
            batch_sizes=(1, 64),
            iters=args.iters,
            progress=True,
        )
        print(
            timing[
                ["model", "runtime", "device", "batch_size", "latency_ms", "speedup_vs_eager", "skipped"]
            ].to_string()
        )
        payload["runtimes"] = timing.to_dict("records")
    if "int8" in parts:
        table = ledger(store.frame().query("run_id in @runs.run_id and name != 'mobilenetv2 fp32'"))
        keep = (
            ["variant", "accuracy", "accuracy_delta", "size_bytes", "size_ratio", "weight_dtype"]
            + [c for c in table.columns if c.endswith(("_ms", "_speedup"))]
            + ["why_not_faster"]
        )
        table = table.assign(weight_dtype=[store.get(ids[v]).metrics.get("weight_dtype") for v in table["variant"]])[
            keep
        ]
        print(table.drop(columns=["why_not_faster"]).to_string())
        payload["int8_ledger"] = table.to_dict("records")
    if "serving" in parts:
        payload["serving"] = []
        with serving(bundles["resnet20 fp32"], threads=args.threads) as url:
            for c in (int(x) for x in args.concurrency.split(",")):
                payload["serving"].append(load_test(url, concurrency=c, requests=args.requests, duration_s=60))
                print(
                    {
                        k: payload["serving"][-1][k]
                        for k in ("concurrency", "ok", "errors", "p50_ms", "p95_ms", "p99_ms", "throughput_rps")
                    }
                )
    path = RESULTS / "deployment-cpu.json"
    if path.exists():  # parts not run this time keep their earlier numbers, each with the environment it had
        earlier = json.loads(path.read_text())
        for key in ("runtimes", "int8_ledger", "serving"):
            if key not in payload and key in earlier:
                payload[key] = earlier[key]
                payload.setdefault("earlier_parts", {})[key] = earlier.get("earlier_parts", {}).get(
                    key, earlier["environment"]
                )
        payload["parity"] = {**earlier.get("parity", {}), **payload["parity"]}
    print(save("deployment", payload))


if __name__ == "__main__":
    main()
