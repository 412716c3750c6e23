"""Training-step time per CPU thread policy, on a quiet machine and with one core kept busy.

Each policy runs in its own process (OpenMP reads its wait policy once, at start-up) and times the same
training steps: resnet20 at width 0.5 on digits, batch 64, SGD. "busy" starts a spinning process on one
core for as long as that measurement lasts. Prints the median and p90 step time side by side and
writes ``results/threads-cpu.json``.

    python benchmarks/threads.py            # about 3 minutes on 2 cores

Measured on a 2-core AMD EPYC (results/threads-cpu.json): quiet, 1 thread 19.4 ms, 2 threads 15.5 ms,
2 threads with OpenMP's passive wait 37.7 ms, auto (chose 2) 15.2 ms; with one core busy, 1 thread
22.0 ms, 2 threads 50.5 ms (p90 190 ms), passive 71.8 ms, auto (chose 1) 26.1 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import environment, save

POLICIES = {  # name -> (threads setting, extra environment)
    "1 thread": ("1", {}),
    "all cores": (str(os.cpu_count()), {}),
    "all cores, passive OpenMP wait": (str(os.cpu_count()), {"OMP_WAIT_POLICY": "PASSIVE"}),
    "auto": ("auto", {}),
}

STEPS = r"""
import json, sys, time, torch
from workbench import ModelConfig, build_model, load_dataset, train_loader, DataConfig
from workbench.train.threads import resolve_threads
threads = resolve_threads(sys.argv[1])
torch.set_num_threads(threads)
ds = load_dataset("digits")
model = build_model(ModelConfig(name="resnet20", width=0.5), 10, (1, 8, 8), seed=0)
opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
loader = train_loader(ds, DataConfig(), 64, seed=0)
batches = [b for _, b in zip(range(20), loader)]
times = []
for i in range(int(sys.argv[2])):
    x, y = batches[i % len(batches)]
    t0 = time.perf_counter()
    loss = torch.nn.functional.cross_entropy(model(x), y)
    opt.zero_grad(); loss.backward(); opt.step()
    times.append(time.perf_counter() - t0)
print(json.dumps({"threads": threads, "step_s": times[10:]}))
"""

SPIN = "import time\nend = time.time() + float(__import__('sys').argv[1])\nwhile time.time() < end: pass\n"


def measure(policy: str, load: str, steps: int) -> dict:
    setting, extra = POLICIES[policy]
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")} | extra
    spinner = subprocess.Popen([sys.executable, "-c", SPIN, "600"]) if load == "one core busy" else None
    try:
        if spinner:
            time.sleep(2)  # let the load average and the scheduler see it
        started = time.time()
        out = subprocess.run(
            [sys.executable, "-c", STEPS, setting, str(steps)],
            capture_output=True,
            text=True,
            env=env,
            check=True,
            timeout=900,
            cwd=Path(__file__).resolve().parents[1],
        )
        step_s = json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        if spinner:
            spinner.kill()
    times = sorted(step_s["step_s"])
    return {
        "policy": policy,
        "load": load,
        "threads": step_s["threads"],
        "steps": len(times),
        "median_ms": 1e3 * statistics.median(times),
        "p90_ms": 1e3 * times[int(0.9 * (len(times) - 1))],
        "wall_s": time.time() - started,
        "load_average_before": os.getloadavg()[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--steps", type=int, default=110, help="training steps per measurement (the first 10 are warm-up)"
    )
    args = parser.parse_args()
    rows = []
    for load in ("quiet", "one core busy"):
        for policy in POLICIES:
            rows.append(measure(policy, load, args.steps))
            r = rows[-1]
            print(
                f"{load:14s} {policy:32s} threads={r['threads']}  "
                f"median {r['median_ms']:7.1f} ms  p90 {r['p90_ms']:7.1f} ms",
                flush=True,
            )
    import torch

    payload = {
        "environment": environment(torch.device("cpu")),
        "workload": "resnet20 width 0.5, digits, batch 64, SGD",
        "rows": rows,
    }
    print(save("threads", payload))


if __name__ == "__main__":
    main()
