"""How fast ``workbench --help`` answers, against importing what the CLI imported eagerly before
(torch, pandas, matplotlib and the whole package), each in a fresh process, interleaved.

    python benchmarks/startup.py            # about 30 s

Prints the medians and their ratio, the modules ``-X importtime`` saw, and writes
``results/startup-cpu.json``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import environment, save

COMMANDS = {
    "workbench --help": [sys.executable, "-m", "workbench.cli", "--help"],
    "workbench run --help": [sys.executable, "-m", "workbench.cli", "run", "--help"],
    # What `workbench --help` cost before the public API loaded lazily: everything, at start.
    "eager import (torch, pandas, matplotlib, the package)": [
        sys.executable,
        "-c",
        "import torch, pandas, matplotlib.pyplot; "
        "import workbench.pipeline, workbench.report.charts, workbench.report.ledger",
    ],
}


def seconds(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - start


def heavy_imports(command: list[str]) -> list[str]:
    done = subprocess.run([command[0], "-X", "importtime", *command[1:]], check=True, capture_output=True, text=True)
    tops = {
        line.split("|")[-1].strip().split(".")[0]
        for line in done.stderr.splitlines()
        if line.startswith("import time:")
    }
    return sorted(tops & {"torch", "pandas", "matplotlib", "numpy", "ipywidgets"})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=7, help="fresh processes per command (default 7)")
    args = p.parse_args()
    for command in COMMANDS.values():  # warm the file cache, so the first timing is not a cold disk
        seconds(command)
    times = {name: [] for name in COMMANDS}
    for _ in range(args.repeats):  # interleaved: load from other programs hits every command alike
        for name, command in COMMANDS.items():
            times[name].append(seconds(command))
    rows = {
        name: {
            "median_s": statistics.median(t),
            "min_s": min(t),
            "max_s": max(t),
            "heavy_imports": heavy_imports(COMMANDS[name]),
        }
        for name, t in times.items()
    }
    eager = rows["eager import (torch, pandas, matplotlib, the package)"]["median_s"]
    for name, row in rows.items():
        row["ratio_to_eager"] = row["median_s"] / eager
        print(
            f"{name:<55} {row['median_s']:6.3f} s median ({row['min_s']:.3f}-{row['max_s']:.3f}), "
            f"{row['ratio_to_eager']:.3f}x the eager import; heavy modules: {', '.join(row['heavy_imports']) or 'none'}"
        )
    env = environment(__import__("torch").device("cpu"))
    env["load_average"] = os.getloadavg()[0]
    print(f"load average {env['load_average']:.1f}; {env['device_name']}")
    print("wrote", save("startup", {"environment": env, "repeats": args.repeats, "commands": rows}))


if __name__ == "__main__":
    main()
