"""A small GPT served over HTTP under load: continuous batching against one request at a time (and static
batching), 8 concurrent streaming clients on this machine's CPU cores. Writes ``results/lm-serve-<device>.json``.

The ``gpt`` preset's model (4 layers, 4 heads, 128 wide, context 64, byte tokens) is trained here on pystdlib
(``--steps``) and exported as a bundle; three servers (``workbench serve BUNDLE --batching off|static|continuous
--threads T``) run side by side as processes of their own, each idle while another is tested. The client
(``load_test_generate``) runs in this process: ``--clients`` threads, each sending streamed ``POST /generate``
requests back to back (greedy, ``--new-tokens`` each, seven short Python prompts in turn), stamping every token
as it arrives. Each round tests every policy once, the order reversed every other round; the ratio is of the
medians over rounds, with the per-round ratios' quartiles. Then a sweep over 1, 2, 4 and 8 clients for the
chart. Recorded per test: time to first token and between tokens (p50/p95/p99), tokens/s per request and in
all, errors by kind; per server the mean rows per decode step (``/health``: rows decoded over steps).

The target: at 8 clients continuous batching gives at least 3x the total tokens/s of one at a time.

    python benchmarks/lm_serve.py            # 4 min 45 s on a 2-core AVX2-only AMD EPYC (the committed run)
    python benchmarks/lm_serve.py --smoke    # under a minute: a tiny model, short tests
"""

from __future__ import annotations

import argparse
import os
import select
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import cpu_environment, save
from workbench import preset, run
from workbench.deploy import export, load_test_generate
from workbench.train import load_average

REPO = Path(__file__).resolve().parents[1]
POLICIES = ("off", "static", "continuous")
TARGET = 3.0  # continuous / one at a time, total tokens/s at 8 clients
SMOKE = {
    "model.depth": 1,
    "model.n_head": 2,
    "model.n_embd": 32,
    "model.block_size": 32,
    "train.batch_size": 16,
}


def start_server(bundle: Path, batching: str, threads: int, max_batch: int) -> tuple[subprocess.Popen, str]:
    """``workbench serve BUNDLE`` in a process of its own on a free port; its URL once the banner names it."""
    command = [sys.executable, "-m", "workbench.cli", "serve", str(bundle), "--port", "0", "--batching", batching]
    command += ["--threads", str(threads), "--max-batch", str(max_batch), "--max-streams", "256"]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ready, _, _ = select.select([process.stdout], [], [], 120)
    banner = process.stdout.readline() if ready else ""
    if " on http://" not in banner:
        process.kill()
        raise RuntimeError(f"the {batching} server did not start: {banner or process.stderr.read()[-500:]}")
    return process, banner.split(" on ")[1].split(" ")[0].rstrip(",")


def server_batching(url: str) -> dict:
    import httpx

    health = httpx.get(url + "/health", timeout=10).json()
    steps = health["decode_steps"]
    return {
        "decode_steps": steps,
        "rows_decoded": health["rows_decoded"],
        "mean_rows": health["rows_decoded"] / max(steps, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--steps", type=int, default=500, help="training steps of the preset's model (default: its 500)"
    )
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=48, help="requests per test (default: 48, 6 per client)")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of each server (default: 1)")
    parser.add_argument("--max-batch", type=int, default=16, help="rows a batching server decodes together")
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    if args.smoke:
        args.steps, args.requests, args.new_tokens, args.rounds = 20, 16, 16, 1
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    env = cpu_environment()
    changes = {"train.steps": args.steps, "train.epochs": 1}
    if args.smoke:
        changes.update(SMOKE)
    config = preset("gpt", device="cpu").replace(**changes)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        result = run(config, store=Path(tmp) / "runs", progress=False)
        bundle = export(result.run_id, Path(tmp) / "bundle", store=Path(tmp) / "runs")
        print(
            f"trained and exported in {time.perf_counter() - t0:.0f} s: "
            f"perplexity {bundle.card['metrics']['perplexity']:.2f}"
        )
        servers = {p: start_server(bundle.path, p, args.threads, args.max_batch) for p in POLICIES}
        try:
            urls = {p: url for p, (_, url) in servers.items()}
            test = {"requests": args.requests, "max_new_tokens": args.new_tokens, "duration_s": 300.0}
            rounds = {p: [] for p in POLICIES}
            for r in range(args.rounds):
                for policy in POLICIES[:: 1 if r % 2 == 0 else -1]:
                    report = load_test_generate(urls[policy], concurrency=args.clients, **test)
                    report["round"], report["load_average"] = r, load_average()
                    rounds[policy].append(report)
                    print(
                        f"round {r} {policy:>10}: {report['tokens_per_s']:7.0f} tokens/s, ttft p99 "
                        f"{report['ttft_p99_ms']:.0f} ms, errors {report['errors']}"
                    )
            sweep = [
                load_test_generate(urls[p], concurrency=c, **test) for p in ("off", "continuous") for c in (1, 2, 4, 8)
            ]
            batching = {p: server_batching(urls[p]) for p in POLICIES}
        finally:
            for process, _ in servers.values():
                process.terminate()
                process.wait(timeout=30)

    def median(policy: str, key: str) -> float:
        return statistics.median(r[key] for r in rounds[policy])

    per_round = [c["tokens_per_s"] / o["tokens_per_s"] for c, o in zip(rounds["continuous"], rounds["off"])]
    speedup = median("continuous", "tokens_per_s") / median("off", "tokens_per_s")
    headline = {
        p: {
            "tokens_per_s": median(p, "tokens_per_s"),
            "ttft_p50_ms": median(p, "ttft_p50_ms"),
            "ttft_p99_ms": median(p, "ttft_p99_ms"),
            "tbt_p50_ms": median(p, "tbt_p50_ms"),
            "tbt_p99_ms": median(p, "tbt_p99_ms"),
            "tokens_per_s_per_request": median(p, "tokens_per_s_per_request"),
            "errors": sum(r["errors"] for r in rounds[p]),
            **batching[p],
        }
        for p in POLICIES
    }
    payload = {
        "environment": {**env, "load_average_after": load_average(), "server_threads": args.threads},
        "config": {**vars(args), "model": result.config.to_dict()["model"]},
        "model": {"perplexity": bundle.card["metrics"]["perplexity"], "params": bundle.card["model"]["params"]},
        "headline": headline,
        "continuous_over_off": {
            "ratio": speedup,
            "round_ratio_median": statistics.median(per_round),
            "round_ratio_min": min(per_round),
            "round_ratio_max": max(per_round),
            "target": TARGET,
            "met": speedup >= TARGET,
        },
        "static_over_off": median("static", "tokens_per_s") / median("off", "tokens_per_s"),
        "rounds": rounds,
        "sweep": sweep,
    }
    path = save("lm-serve-smoke" if args.smoke else "lm-serve", payload)
    for p in POLICIES:
        h = headline[p]
        print(
            f"{p:>10}: {h['tokens_per_s']:7.0f} tokens/s in all, {h['tokens_per_s_per_request']:6.0f} per request, "
            f"ttft p50 {h['ttft_p50_ms']:.0f} ms p99 {h['ttft_p99_ms']:.0f} ms, {h['mean_rows']:.1f} rows a step"
        )
    print(
        f"continuous / off at {args.clients} clients: {speedup:.2f}x (target {TARGET}x: "
        f"{'met' if speedup >= TARGET else 'missed'}) -> {path}"
    )


if __name__ == "__main__":
    main()
