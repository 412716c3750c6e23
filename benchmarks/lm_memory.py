"""Memory of training and decoding a small GPT: LoRA against full fine-tuning, activation checkpointing off and on,
an int8 KV cache against fp32. Writes ``results/lm-memory-<device>.json``.

* ``lora``: the ``gpt`` preset's model (4 layers, 4 heads, 128 wide, context 64) trained here on pystdlib
  (``--steps``), then fine-tuned on Tiny Shakespeare (byte tokenizer, so the vocabulary stays 256 and the model
  applies) for the same ``--ft-steps`` two ways, a step of each in turn on the same batch of 32: every weight
  (AdamW at ``--lr-full``, the preset's 1e-3), or LoRA adapters of rank ``--rank`` on ``--targets``, the rest
  frozen (AdamW at ``--lr-lora``: the update starts at zero and is low-rank, so it gets a larger step; not
  tuned). Both with the preset's weight decay, clipping and a cosine schedule. Recorded: trainable parameters,
  AdamW's state bytes, peak memory, step time, validation loss at the end (256 fixed windows); then the merged
  LoRA model's decode tokens/s against the pystdlib model's (the same shapes, so they should decode alike).
* ``checkpointing``: training steps of the preset's shape and batch, fresh weights, ``activation_checkpointing``
  off and on, at the preset's context of 64 and at ``--long-context`` (activations grow with it, weights not):
  peak memory, the activation bytes kept for the backward pass, step time.
* ``kv-int8``: the pystdlib model's KV cache in fp32 and in int8 (``QuantizedKVCache``): bytes, ``cached_loss``
  on 256 validation windows (a quarter of the context as the prompt, then one token at a time), greedy tokens in
  common, decode tokens/s at batch 1.

Peak memory on a CPU is the growth of the process's peak resident set (``track_peak_memory``), which only ever
rises: so each variant's peak is measured in a fresh process of its own (``--child``), over a few training steps
from its weights on, which counts gradients, optimizer state and activations (glibc's mmap threshold fixed, so
a freed tensor leaves the resident set instead of staying in malloc's heap). Beside it the deterministic
account: weights, gradients, optimizer state and kept activations (autograd's saved tensors, each storage once,
weights left out; with checkpointing also each block's input, which the checkpoint keeps for its rerun:
``workbench.measure.saved_activation_bytes``).
Timings take turns on one process (lm.py's rounds, the order reversed every other step).

    python benchmarks/lm_memory.py --lr-lora 0.01   # about 4 minutes on a 2-core AMD EPYC (the committed run)
    python benchmarks/lm_memory.py --smoke    # seconds: tiny models, a few steps
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import environment, save
from benchmarks.lm import ratio, rounds_of, summary
from workbench import load_model, preset, run
from workbench.data import FixedWindows, RandomWindows, load_token_data
from workbench.measure import cached_loss, cpu_features, device_name, saved_activation_bytes, track_peak_memory
from workbench.models import GPT, add_lora, generate, merge_lora, trainable_parameters
from workbench.train import (
    TrainConfig,
    evaluate,
    load_average,
    make_optimizer,
    make_scheduler,
    optimizer_state_bytes,
)

SHARED_TEXT = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare.txt"
LORA_PARAMS_TARGET = 0.05  # the targets: LoRA trains at most 5% of the weights,
LORA_STATE_TARGET = 0.10  # keeps at most 10% of full fine-tuning's optimizer state,
LORA_LOSS_TARGET = 0.05  # and ends within 5% of its validation loss after the same steps
CHECKPOINT_MEMORY_TARGET, CHECKPOINT_TIME_TARGET = 0.6, 1.4  # checkpointing: <= 0.6x peak at <= 1.4x step time
EVAL_WINDOWS = 256
MMAP_THRESHOLD = 128 * 1024  # glibc's default start: blocks from this size get pages of their own
WARMUP_STEPS = 2  # left out of the step times: first-touch allocations and lazy optimizer state


class Trainer:
    """A model, its AdamW (``make_optimizer``: decay on the matrices only) and cosine schedule over ``steps``."""

    def __init__(self, model: GPT, lr: float, steps: int):
        cfg = TrainConfig(epochs=1, optimizer="adamw", lr=lr, weight_decay=0.1, warmup_epochs=0.1, grad_clip=1.0)
        self.model, self.optimizer = model.train(), make_optimizer(model, cfg)
        self.scheduler = make_scheduler(self.optimizer, cfg, steps)

    def step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        F.cross_entropy(self.model(x).flatten(0, 1), y.flatten()).backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)


def interleaved_steps(trainers: dict[str, Trainer], batches) -> dict[str, list[float]]:
    """One step of each trainer per batch, the order reversed every other batch; seconds of each step."""
    seconds: dict[str, list[float]] = {name: [] for name in trainers}
    for i, (x, y) in enumerate(batches):
        for name in list(trainers)[:: 1 if i % 2 == 0 else -1]:
            t0 = time.perf_counter()
            trainers[name].step(x, y)
            seconds[name].append(time.perf_counter() - t0)
    return {name: times[WARMUP_STEPS:] or times for name, times in seconds.items()}


def step_ratio(seconds: dict[str, list[float]], slow: str, fast: str) -> dict:
    """lm.py's ratio of medians, with every step a round."""
    return ratio({"samples": seconds, "per_round": seconds}, slow, fast)


def accounted_bytes(model: GPT, optimizer_state: int, activations: int) -> dict:
    weights = sum(p.nbytes for p in model.parameters())
    grads = sum(p.nbytes for p in model.parameters() if p.requires_grad)
    total = weights + grads + optimizer_state + activations
    parts = {"weights": weights, "gradients": grads, "optimizer_state": optimizer_state, "activations": activations}
    return {**parts, "total": total}


def child(spec: dict) -> dict:
    """In a fresh process: the growth of the peak resident set over ``steps`` training steps of one variant."""
    torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)
    model = GPT(**spec["gpt"])
    if spec["state"]:
        model.load_state_dict(torch.load(spec["state"], weights_only=True))
    if spec["lora"]:
        add_lora(model, spec["lora"]["rank"], targets=spec["lora"]["targets"])
    model.activation_checkpointing = spec["checkpointing"]
    trainer = Trainer(model, 1e-3, spec["steps"])
    ids = torch.randint(model.shape.vocab_size, (spec["steps"], spec["batch"], model.shape.block_size + 1))
    with track_peak_memory("cpu") as mem:
        for window in ids:
            trainer.step(window[:, :-1], window[:, 1:])
    return {"peak_rss_growth_bytes": mem.peak_bytes}


def peaks(specs: dict[str, dict]) -> dict[str, int | None]:
    """Each spec's ``child`` in a process of its own, all at once (memory is per process; nothing is timed).

    glibc's malloc raises its mmap threshold to the largest block freed so far, and then keeps freed blocks of
    that size in its heap: the resident set would show the allocator's high-water mark, not the tensors'. A
    fixed threshold gives every large tensor its own pages, returned when it is freed."""
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD)}
    procs = {
        name: subprocess.Popen(
            [sys.executable, __file__, "--child", json.dumps(spec)], stdout=subprocess.PIPE, text=True, env=env
        )
        for name, spec in specs.items()
    }
    out = {}
    for name, proc in procs.items():
        stdout, _ = proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"the peak-memory process of {name} failed (exit {proc.returncode})")
        out[name] = json.loads(stdout.strip().splitlines()[-1])["peak_rss_growth_bytes"]
    return out


def spec(model: GPT, batch: int, steps: int, threads: int, **variant) -> dict:
    base = {"gpt": dataclasses.asdict(model.shape), "state": None, "lora": None, "checkpointing": False}
    return {**base, "batch": batch, "steps": steps, "threads": threads, **variant}


def val_loss(model: GPT, ids: torch.Tensor) -> float:
    return evaluate(model, FixedWindows(ids, model.shape.block_size, EVAL_WINDOWS, batch_size=64))["loss"]


def greedy_calls(models: dict[str, GPT], prompts: list[list[int]], new_tokens: int, **options) -> dict:
    def call(model, extra):
        return lambda: [generate(model, [p], new_tokens, temperature=0, **extra) for p in prompts]

    return {name: call(model, options.get(name, {})) for name, model in models.items()}


def lora_part(base: GPT, text, args, state_path: str) -> dict:
    full, adapted = copy.deepcopy(base), copy.deepcopy(base)
    names = add_lora(adapted, args.rank, targets=args.targets)
    before = val_loss(base, text.val_ids)
    trainers = {
        "full": Trainer(full, args.lr_full, args.ft_steps),
        "lora": Trainer(adapted, args.lr_lora, args.ft_steps),
    }
    batch, block = args.batch, base.shape.block_size
    x, y = next(iter(RandomWindows(text.train_ids, block, batch, 1, seed=1)))
    kept = {name: saved_activation_bytes(t.model, x, y) for name, t in trainers.items()}
    lora = {"rank": args.rank, "targets": list(args.targets)}
    memory = peaks(
        {
            "full": spec(base, batch, args.peak_steps, args.threads, state=state_path),
            "lora": spec(base, batch, args.peak_steps, args.threads, state=state_path, lora=lora),
        }
    )
    seconds = interleaved_steps(trainers, RandomWindows(text.train_ids, block, batch, args.ft_steps, seed=0))
    variants = {}
    for name, t in trainers.items():
        state = optimizer_state_bytes(t.optimizer)
        variants[name] = {
            "trainable_params": trainable_parameters(t.model),
            "optimizer_state_bytes": state,
            "peak_rss_growth_bytes": memory[name],
            "accounted_bytes": accounted_bytes(t.model, state, kept[name]),
            "step": summary(seconds[name], batch * block),
            "val_loss": val_loss(t.model.eval(), text.val_ids),
        }
    with torch.no_grad():  # merging must keep the adapted model's outputs
        before_merge = adapted(x)
        merge_lora(adapted)
        merge_error = (adapted(x) - before_merge).abs().max().item()
    params = sum(p.numel() for p in base.parameters())
    prompts = [row[:8].tolist() for row in next(iter(FixedWindows(text.val_ids, block, 4, 4)))[0]]
    new_tokens = block - 8
    calls = greedy_calls({"base": base.eval(), "merged LoRA": adapted.eval()}, prompts, new_tokens)
    with torch.inference_mode():
        for call in calls.values():
            call()
        decode = rounds_of(calls, torch.device("cpu"), args.rounds, 0.0)
    tokens = len(prompts) * new_tokens
    return {
        "targets": names,
        "rank": args.rank,
        "params": params,
        "val_loss_before": before,
        "variants": variants,
        "step_time_ratio_lora_over_full": step_ratio(seconds, "lora", "full"),
        "merge_max_abs_logit_change": merge_error,
        "decode": {
            "prompts": len(prompts),
            "prompt_tokens": 8,
            "new_tokens": new_tokens,
            **{name: summary(decode["samples"][name], tokens) for name in calls},
            "base_over_merged_time": ratio(decode, "merged LoRA", "base"),
        },
    }


def checkpointing_part(shape: dict, contexts: list[int], args) -> list[dict]:
    rows = []
    for context in contexts:
        torch.manual_seed(0)
        plain = GPT(**{**shape, "block_size": context})
        recomputing = copy.deepcopy(plain)
        recomputing.activation_checkpointing = True
        trainers = {"off": Trainer(plain, 1e-3, args.ckpt_steps), "on": Trainer(recomputing, 1e-3, args.ckpt_steps)}
        ids = torch.randint(shape["vocab_size"], (args.ckpt_steps, args.batch, context + 1))
        x, y = ids[0, :, :-1], ids[0, :, 1:]
        kept = {name: saved_activation_bytes(t.model, x, y) for name, t in trainers.items()}
        memory = peaks(
            {
                name: spec(t.model, args.batch, args.peak_steps, args.threads, checkpointing=name == "on")
                for name, t in trainers.items()
            }
        )
        seconds = interleaved_steps(trainers, ((w[:, :-1], w[:, 1:]) for w in ids))
        row = {"context": context, "batch": args.batch}
        for name, t in trainers.items():
            state = optimizer_state_bytes(t.optimizer)
            row[name] = {
                "peak_rss_growth_bytes": memory[name],
                "accounted_bytes": accounted_bytes(t.model, state, kept[name]),
                "step": summary(seconds[name], args.batch * context),
            }
        row["peak_ratio"] = (memory["on"] / memory["off"]) if memory["off"] else None
        row["accounted_ratio"] = row["on"]["accounted_bytes"]["total"] / row["off"]["accounted_bytes"]["total"]
        row["step_time_ratio"] = step_ratio(seconds, "on", "off")
        rows.append(row)
    return rows


def kv_int8_part(model: GPT, data, args) -> dict:
    block = model.shape.block_size
    prefill = max(1, block // 4)
    losses = {"fp32": [], "int8": []}
    rows = []
    for x, y in FixedWindows(data.val_ids, block, args.kv_windows, batch_size=64):
        windows = torch.cat((x, y[:, -1:]), dim=1)
        rows.append(len(windows))
        for name in losses:
            losses[name].append(cached_loss(model, windows, prefill, kv_int8=name == "int8"))
    loss = {name: sum(v * n for v, n in zip(values, rows)) / sum(rows) for name, values in losses.items()}
    prompts = [row[:prefill].tolist() for row in next(iter(FixedWindows(data.val_ids, block, 4, 4)))[0]]
    new_tokens = block - prefill
    calls = greedy_calls(
        {"fp32 cache": model, "int8 cache": model}, prompts, new_tokens, **{"int8 cache": {"kv_int8": True}}
    )
    with torch.inference_mode():
        outputs = {name: call() for name, call in calls.items()}
        decode = rounds_of(calls, torch.device("cpu"), args.rounds, 0.0)
    same = sum(a == b for p, q in zip(outputs["fp32 cache"], outputs["int8 cache"]) for a, b in zip(p[0], q[0])) / (
        len(prompts) * new_tokens
    )
    tokens = len(prompts) * new_tokens
    return {
        "cache_bytes": {"fp32": model.new_cache(1).nbytes, "int8": model.new_cache(1, int8=True).nbytes},
        "head_dim": model.shape.head_dim,
        "prefill": prefill,
        "windows": sum(rows),
        "cached_loss": loss,
        "perplexity": {name: math.exp(v) for name, v in loss.items()},
        "perplexity_increase": math.exp(loss["int8"] - loss["fp32"]) - 1,
        "greedy_tokens_in_common": same,
        "decode": {
            "prompts": len(prompts),
            "prompt_tokens": prefill,
            "new_tokens": new_tokens,
            **{name: summary(decode["samples"][name], tokens) for name in calls},
            "int8_over_fp32_time": ratio(decode, "int8 cache", "fp32 cache"),
        },
    }


def targets_of(lora: dict, checkpointing: list[dict]) -> list[dict]:
    full, adapted = lora["variants"]["full"], lora["variants"]["lora"]
    found = [
        ("LoRA: share of the weights trained", adapted["trainable_params"] / lora["params"], LORA_PARAMS_TARGET),
        (
            "LoRA: optimizer state / full fine-tuning's",
            adapted["optimizer_state_bytes"] / full["optimizer_state_bytes"],
            LORA_STATE_TARGET,
        ),
        (
            "LoRA: validation loss over full fine-tuning's - 1",
            adapted["val_loss"] / full["val_loss"] - 1,
            LORA_LOSS_TARGET,
        ),
    ]
    for row in checkpointing:
        at = f"context {row['context']}"
        found.append((f"checkpointing: peak memory on / off ({at})", row["peak_ratio"], CHECKPOINT_MEMORY_TARGET))
        found.append(
            (f"checkpointing: step time on / off ({at})", row["step_time_ratio"]["ratio"], CHECKPOINT_TIME_TARGET)
        )
    return [
        {
            "name": name,
            "target": f"<= {limit:g}",
            "measured": measured,
            "met": None if measured is None else measured <= limit,
            "gap": None if measured is None else measured - limit,
        }
        for name, measured, limit in found
    ]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=500, help="training steps of the pystdlib model (default 500)")
    p.add_argument("--ft-steps", type=int, default=300, help="fine-tuning steps of each variant (default 300)")
    p.add_argument("--rank", type=int, default=4, help="LoRA rank (default 4)")
    p.add_argument(
        "--targets",
        type=lambda text: tuple(text.split(",")),
        default=("c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"),
        help="LoRA's Linear layers, comma-separated (default: all of a block's, as QLoRA found best)",
    )
    p.add_argument("--lr-full", type=float, default=1e-3, help="full fine-tuning's learning rate (default 1e-3)")
    p.add_argument("--lr-lora", type=float, default=3e-3, help="LoRA's learning rate (default 3e-3)")
    p.add_argument("--batch", type=int, default=32, help="windows a training step (default 32, the preset's)")
    p.add_argument("--long-context", type=int, default=256, help="the longer context of checkpointing (default 256)")
    p.add_argument("--ckpt-steps", type=int, default=12, help="timed steps per checkpointing variant (default 12)")
    p.add_argument("--peak-steps", type=int, default=3, help="steps per peak-memory process (default 3)")
    p.add_argument("--kv-windows", type=int, default=EVAL_WINDOWS, help="windows cached_loss scores (default 256)")
    p.add_argument("--rounds", type=int, default=5, help="decode turns each variant takes (default 5)")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    p.add_argument("--smoke", action="store_true", help="seconds long: tiny models, a few steps")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    torch.set_num_threads(args.threads)
    cfg = preset("gpt", device="cpu").replace(**{"train.steps": args.steps, "measure.iters": 3})
    if args.smoke:
        cfg = cfg.replace(**{"train.steps": 20, "train.epochs": 1, "model.depth": 1, "model.n_embd": 32})
        args.ft_steps, args.batch, args.long_context, args.ckpt_steps = 6, 8, 128, 4
        args.peak_steps, args.kv_windows, args.rounds = 2, 16, 2
    if SHARED_TEXT.is_file():
        os.environ.setdefault("WORKBENCH_TINYSHAKESPEARE", str(SHARED_TEXT))
    env = environment(torch.device("cpu"))
    env.update(cpu_name=device_name("cpu"), cpu_features=list(cpu_features()), load_average_before=load_average())
    print(f"{env['cpu_name']} [{', '.join(env['cpu_features'])}], {args.threads} thread(s)", flush=True)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        trained = run(cfg, store=Path(tmp) / "runs", progress=False)
        model = load_model(trained.run_id, store=Path(tmp) / "runs")
        state_path = str(Path(tmp) / "pystdlib.pt")
        torch.save(model.state_dict(), state_path)
        code, text = load_token_data("pystdlib", "byte"), load_token_data("tinyshakespeare", "byte")
        assert code.tokenizer.vocab_size == text.tokenizer.vocab_size == model.shape.vocab_size
        print("lora: fine-tuning on Tiny Shakespeare", flush=True)
        lora = lora_part(model, text, args, state_path)
    print("checkpointing", flush=True)
    checkpointing = checkpointing_part(
        dataclasses.asdict(model.shape), sorted({model.shape.block_size, args.long_context}), args
    )
    print("kv-int8", flush=True)
    kv = kv_int8_part(model, code, args)
    targets = targets_of(lora, checkpointing)
    payload = {
        "benchmark": "lm-memory",
        "smoke": args.smoke,
        "environment": {**env, "load_average_after": load_average(), "wall_s": time.perf_counter() - started},
        "model": {"config": cfg.to_dict(), "params": trained.metrics["params"], "loss": trained.metrics["loss"]},
        "settings": {k: v for k, v in vars(args).items() if k != "child"},
        "method": "peak memory: growth of the peak resident set of a fresh process per variant over "
        f"{args.peak_steps} training steps (CPU; glibc's mmap threshold fixed at {MMAP_THRESHOLD} bytes so that "
        "freed tensors leave the resident set); accounted bytes: weights + gradients + AdamW state + "
        "activations kept for the backward pass; step times interleaved in one process, "
        f"the first {WARMUP_STEPS} left out",
        "lora": lora,
        "checkpointing": checkpointing,
        "kv_int8": kv,
        "targets": targets,
    }
    path = save("lm-memory-smoke" if args.smoke else "lm-memory", payload)
    report(lora, checkpointing, kv, targets)
    print(f"saved {path}")


def mib(n: int | None) -> str:
    return "n/a" if n is None else f"{n / 2**20:.1f} MiB"


def report(lora: dict, checkpointing: list[dict], kv: dict, targets: list[dict]) -> None:
    print(f"LoRA rank {lora['rank']} on {len(lora['targets'])} layers; val loss before {lora['val_loss_before']:.3f}")
    for name, v in lora["variants"].items():
        print(
            f"  {name:4s}: {v['trainable_params']:,} trained, AdamW state {mib(v['optimizer_state_bytes'])}, "
            f"peak +{mib(v['peak_rss_growth_bytes'])} (accounted {mib(v['accounted_bytes']['total'])}), "
            f"step {v['step']['median_ms']:.0f} ms, val loss {v['val_loss']:.3f}"
        )
    d = lora["decode"]
    print(
        f"  decode: base {d['base']['per_s']:.0f} tokens/s, merged LoRA {d['merged LoRA']['per_s']:.0f} tokens/s; "
        f"merging changed the logits by {lora['merge_max_abs_logit_change']:.1e}"
    )
    for row in checkpointing:
        off, on = row["off"], row["on"]
        print(
            f"checkpointing, context {row['context']}: peak +{mib(off['peak_rss_growth_bytes'])} -> "
            f"+{mib(on['peak_rss_growth_bytes'])}, accounted {mib(off['accounted_bytes']['total'])} -> "
            f"{mib(on['accounted_bytes']['total'])} ({row['accounted_ratio']:.2f}x), step "
            f"{off['step']['median_ms']:.0f} -> {on['step']['median_ms']:.0f} ms "
            f"({row['step_time_ratio']['ratio']:.2f}x)"
        )
    d, size = kv["decode"], kv["cache_bytes"]
    print(
        f"int8 KV cache: {size['int8']:,} bytes against {size['fp32']:,} ({size['int8'] / size['fp32']:.3f}x); "
        f"perplexity {kv['perplexity']['fp32']:.4f} -> {kv['perplexity']['int8']:.4f} "
        f"({kv['perplexity_increase']:+.3%}); greedy tokens in common {kv['greedy_tokens_in_common']:.0%}; "
        f"decode {d['fp32 cache']['per_s']:.0f} -> {d['int8 cache']['per_s']:.0f} tokens/s"
    )
    for t in targets:
        verdict = "no number" if t["met"] is None else "met" if t["met"] else "not met"
        measured = "n/a" if t["measured"] is None else f"{t['measured']:.3f}"
        gap = "" if t["gap"] is None else f" (gap {t['gap']:+.3f})"
        print(f"  {t['name']}: {measured}, target {t['target']}: {verdict}{gap}")


if __name__ == "__main__":
    main()
