"""The model-search acceptance runs, side by side in one process:

1. ``compare``: random vs greedy vs NSGA-II vs TPE on the same space, base and budget, once per seed, on
   digits: the best accuracy found and the dominated hypervolume per strategy (reference point stated).
2. ``front``: one multi-objective NSGA-II search (accuracy up, size down, latency down) on CIFAR-10 from
   the shared JPEG zip (a subset, short epochs): its Pareto front, and the trials that dominate the
   baseline (the base config itself, trial 0), each with the latency comparison of its timings.

Writes ``results/search-<device>.json`` (``search-compare-...`` / ``search-front-...`` with ``--only``).
Latency is an objective of ``front`` only: on a shared CPU the timings of studies run minutes apart are
not comparable (the compare would rank noise).

    python benchmarks/search.py                                   # both, the sizes of the closing note
    python benchmarks/search.py --only compare --seeds 0 --trials 4 --epochs 1   # a quick look
    python benchmarks/search.py --only front --space short-run --cifar-epochs 4 --fraction 0.04 --threads 2 \
        --store runs/bench-search --cifar-trials 30 --study cifar-nsga2-170935   # continue a study to 30 trials
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import environment, save
from workbench import ModelConfig, RunConfig, TrainConfig, latency_comparison, load_dataset
from workbench.data import cifar10_zip_path
from workbench.search import Choice, Float, Space, compare_strategies, default_space, search
from workbench.train import load_average

HEADLINE = [
    "trial",
    "accuracy",
    "size_bytes",
    "latency_ms",
    "latency_ms_spread",
    "params",
    "model.name",
    "model.width",
    "train.optimizer",
    "train.lr",
    "train.batch_size",
    "compress",
]


# For 2-epoch trials. In the default space's two searches here (16 and 30 trials), every pruned trial
# and every one without BatchNorm lost 9 points or more against the baseline, and NSGA-II spent its
# budget there. This space keeps the architecture, the training recipe and dynamic int8 quantization.
SHORT_RUN_SPACE = Space(
    {
        "model.name": Choice(["cnn", "resnet20"]),
        "model.width": Float(0.25, 1.0, step=0.125),
        "train.optimizer": Choice(["sgd", "sgd_nesterov", "adamw"]),
        "train.lr": Float(0.01, 0.2, log=True),
        "train.batch_size": Choice([32, 64]),
        "compress.quantize": Choice(["none", "dynamic_int8"]),
    }
)


def _rows(df) -> list[dict]:
    cols = [c for c in HEADLINE if c in df]
    return df[cols].astype(object).where(df[cols].notna(), None).to_dict("records")


def compare(args, store: Path) -> dict:
    base = RunConfig(model=ModelConfig(name="cnn"), train=TrainConfig(epochs=args.epochs)).replace(
        **{"hardware.threads": 1, "measure.iters": 10, "measure.batch_sizes": [64]}
    )
    objectives = ["accuracy", "size_bytes"]
    t0 = time.perf_counter()
    c = compare_strategies(
        ["random", "greedy", "nsga2", "tpe"],
        n_trials=args.trials,
        seeds=args.seeds,
        space=default_space(),
        base=base,
        objectives=objectives,
        store=store,
        progress=True,
    )
    table = c.table
    print(f"\ncompare_strategies on digits, {args.trials} trials each, seeds {args.seeds}, objectives {objectives}")
    print(f"reference point {c.reference}, ideal point {c.ideal}")
    print(table.to_string(float_format=lambda v: f"{v:.4f}"))
    return {
        "dataset": "digits",
        "objectives": objectives,
        "budget_trials": args.trials,
        "seeds": list(args.seeds),
        "base": base.to_dict(),
        "reference": c.reference,
        "ideal": c.ideal,
        "seconds": time.perf_counter() - t0,
        "table": table.reset_index().to_dict("records"),
        "runs": c.runs.to_dict("records"),
    }


def front(args, store: Path) -> dict:
    zip_path = cifar10_zip_path()
    if zip_path is None:
        print("front: the CIFAR-10 zip is not here (WORKBENCH_CIFAR10_ZIP); skipped")
        return {"skipped": "no CIFAR-10 zip"}
    load_dataset(f"folder:{zip_path}")  # decode once (cached) before any trial is timed
    base = RunConfig(train=TrainConfig(epochs=args.cifar_epochs)).replace(
        **{
            "data.dataset": f"folder:{zip_path}",
            "data.fraction": args.fraction,
            "hardware.threads": args.threads,
            "measure.iters": 20,
            "measure.batch_sizes": [64],
        }
    )
    space = default_space(models=("cnn", "resnet20")) if args.space == "default" else SHORT_RUN_SPACE
    t0 = time.perf_counter()
    s = search(
        space,
        base=base,
        strategy="nsga2",
        objectives=["accuracy", "size_bytes", "latency_ms"],
        n_trials=args.cifar_trials,
        study_name=args.study or f"cifar-nsga2-{time.strftime('%H%M%S')}",
        seed=0,
        store=store,
        progress=True,
    )
    seconds = time.perf_counter() - t0
    baseline, better = s.baseline, s.dominating_baseline()
    checks = (
        [
            dict(trial=int(r["trial"]), **{k: v for k, v in latency_comparison(r, baseline).items() if k != "records"})
            for _, r in better.iterrows()
        ]
        if "benchmarks" in s.trials
        else []
    )
    print(
        f"\nNSGA-II on CIFAR-10 ({args.fraction:.0%} of the training set, {args.cifar_epochs} epochs): "
        f"{len(s.trials)} trials in {seconds:.0f} s; {s.note}"
    )
    print("baseline:", _rows(baseline.to_frame().T)[0])
    print(f"front ({len(s.front)}):")
    print(s.front[[c for c in HEADLINE if c in s.front]].to_string())
    print(f"dominating the baseline ({len(better)}):", [int(t) for t in better["trial"]])
    for c in checks:
        print("  latency check", c)
    s.chart().savefig(Path(args.chart), dpi=110)
    return {
        "dataset": "cifar10 (shared JPEG zip)",
        "space_name": args.space,
        "fraction": args.fraction,
        "epochs": args.cifar_epochs,
        "budget_trials": args.cifar_trials,
        "seconds": seconds,
        "note": s.note,
        "base": base.to_dict(),
        "space": space.to_dict(),
        "baseline": _rows(baseline.to_frame().T)[0],
        "front": _rows(s.front),
        "dominating_baseline": _rows(better),
        "latency_checks": checks,
        "trial_states": s.trials["trial_state"].value_counts().to_dict(),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", choices=["compare", "front"], default=None)
    p.add_argument("--trials", type=int, default=12, help="compare: trials per strategy and seed")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=3, help="compare: epochs per digits trial")
    p.add_argument("--cifar-trials", type=int, default=24)
    p.add_argument("--cifar-epochs", type=int, default=3)
    p.add_argument("--fraction", type=float, default=0.1, help="front: share of CIFAR-10's 50,000 training images")
    p.add_argument("--threads", type=int, default=1, help="front: CPU threads per trial (training and timing)")
    p.add_argument(
        "--space",
        choices=["default", "short-run"],
        default="default",
        help="front: default_space(cnn, resnet20), or SHORT_RUN_SPACE (no pruning, BatchNorm on)",
    )
    p.add_argument("--store", default=None, help="result store (default: a temporary folder)")
    p.add_argument(
        "--study", default=None, help="front: continue this study (in the store's studies.db) instead of a new one"
    )
    p.add_argument("--chart", default="test-artifacts/search-cifar-front.png")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    Path(args.chart).parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(args.store or tmp)
        payload = {"environment": environment(torch.device("cpu")), "load_average_before": load_average()}
        if args.only in (None, "compare"):
            payload["compare"] = compare(args, store)
        if args.only in (None, "front"):
            payload["front"] = front(args, store)
        payload["load_average_after"] = load_average()
    print("wrote", save("search" + (f"-{args.only}" if args.only else ""), payload))


if __name__ == "__main__":
    main()
