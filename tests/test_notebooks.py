"""Notebooks are tests: the series runs once, headless, through ``workbench notebooks run --all --smoke
--check-solutions --html``; each notebook leaves a metrics.json the assertions below read, and the site
built from the run is checked too. Committed notebooks carry no outputs."""

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest
from conftest import THREADS
from test_site import broken_refs, needs_chromium, open_in_browser, pngs

from workbench.course.exercises import EXERCISES, exercises_of
from workbench.course.notebooks import list_notebooks, smoke_parameters
from workbench.course.site import WIDGET_VIEW

REPO = Path(__file__).resolve().parent.parent


class Series(NamedTuple):
    """One smoke run of every notebook, as CI builds the site: ``out/<name>/`` holds each executed
    notebook and its ``metrics.json``; ``site`` the HTML."""

    done: subprocess.CompletedProcess
    out: Path
    site: Path


@pytest.fixture(scope="module")
def series(tmp_path_factory) -> Series:
    """Every notebook executed once, through the CLI, in learner mode with solutions checked (each
    exercise's reference solution and typical wrong answers judged in a copy of the namespace): every
    test below reads this one run (make test keeps a file on one pytest-xdist worker: --dist loadfile).
    A cell gets 180 s: the kernel client once waited out whole timeouts (workbench/course/_nbclient.py),
    and a tight one makes a relapse a failure."""
    root = tmp_path_factory.mktemp("series")
    out, site = root / "runs", root / "site"
    command = [sys.executable, "-m", "workbench.cli", "notebooks", "run", "--all", "--smoke", "--check-solutions"]
    command += ["--timeout", "180", "--html", str(site), "--out", str(out)]
    # The kernels time things while the other pytest-xdist worker runs: with torch's default of a thread
    # per core, two processes on two cores stall each other (a warm call measured 6x the first). The
    # suite's thread policy, a worker's share of the cores, reaches the kernels through OMP_NUM_THREADS.
    env = {**os.environ, "OMP_NUM_THREADS": str(THREADS)}
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=env)
    return Series(done, out, site)


NOTEBOOKS = list_notebooks()


def _roofline_placed(m):
    """Every timing the notebook charted is a roofline point in one of the three regimes."""
    return (
        m["roofline_points"] > 0
        and m["roofline_points"] == len(m["roofline"])
        and set(m["roofline_regimes"]) <= {"compute", "memory", "overhead"}
        and m["roofline_regimes"] == sorted({p["regime"] for p in m["roofline"]})
    )


def _batching_raises_gflops(m, modes=None):
    """Each run, device and mode (of ``modes``, else all) timed at several batch sizes reached more GFLOP/s at its
    largest batch than at its smallest: the weights are read once for the whole batch, the fixed costs paid once."""
    cells = {}
    for p in m["roofline"]:
        if modes is None or p["mode"] in modes:
            cells.setdefault((p["variant"], p["device"], p["mode"]), {})[p["batch_size"]] = p["achieved_gflops"]
    several = [by for by in cells.values() if len(by) > 1]
    return bool(several) and all(by[max(by)] > by[min(by)] for by in several)


ROOFLINE_KEYS = ["roofline_points", "roofline_regimes", "roofline"]
WHAT_CHANGED_KEYS = [
    f"changed_{k}"
    for k in ("n", "right_to_wrong", "wrong_to_right", "base_accuracy", "variant_accuracy", "base_ece", "variant_ece")
]
ROOFLINE_PLACED = ("every timing is placed on the roofline, in one of its three regimes", _roofline_placed)


WHAT_CHANGED = [  # the relations every notebook's what_changed section holds to
    (
        "what changed: the flips account exactly for the accuracy change",
        lambda m: (
            abs(
                (m["changed_variant_accuracy"] - m["changed_base_accuracy"]) * m["changed_n"]
                - (m["changed_wrong_to_right"] - m["changed_right_to_wrong"])
            )
            < 1e-6
        ),
    ),
    (
        "what changed: both calibration errors lie in [0, 1]",
        lambda m: 0 <= m["changed_base_ece"] <= 1 and 0 <= m["changed_variant_ece"] <= 1,
    ),
    (
        "what changed scores the saved models as their runs did: the same accuracies",
        lambda m: (
            abs(m["changed_base_accuracy"] - m["changed_base_run_accuracy"]) < 1e-6
            and abs(m["changed_variant_accuracy"] - m["changed_variant_run_accuracy"]) < 1e-6
        ),
    ),
]


# What each notebook's metrics.json must hold; every notebook listed here must exist and vice versa.
EXPECTED = {
    "00_quickstart": [
        "accuracy",
        "params",
        "latency_ms",
        "baseline_accuracy",
        "narrow_params_ratio",
        "deep_accuracy_delta",
        "measure_device_name",
    ],
    "01_measure": [
        "params",
        "flops",
        "size_bytes",
        "latency_ms_bs1",
        "throughput_ips_max",
        "measure_device_name",
        *ROOFLINE_KEYS,
        "peak_memory_bytes",
        "weights_bytes",
        "peak_memory_ratio",
    ],
    "02_model_structure": [
        "width_params_ratio",
        "width_accuracy_delta",
        "depth_flops_ratio",
        "depth_accuracy_delta",
        "batchnorm_gain",
        "dropout_gain",
        "switch_accuracy",
        "epochs_to_target",
        "measure_device_name",
    ],
    "03_training_algorithms": [
        "best_optimizer",
        "best_optimizer_accuracy",
        "best_schedule",
        "best_lr",
        "best_lr_accuracy",
        "batch_speedup",
        "train_device",
    ],
    "04_data": [
        "normalize_gain",
        "normalize_gain_without_batchnorm",
        "best_augmentation",
        "best_augmentation_gain",
        "best_selection",
        "selection_accuracy",
        "max_generalization_gap",
        "train_eval_accuracy",
        "augmentation_speed",
    ],
    "05_hardware": [
        "variants",
        "steady_epoch_seconds",
        "first_epoch_seconds",
        "warmup_seconds",
        "train_ceiling_share",
        "profile_shares",
        "per_image_ratio",
        "sweep_rows",
        "sweep_ran",
        "sweep_skipped",
        "measure_device_name",
        *ROOFLINE_KEYS,
    ],
    "06_pruning": [
        "baseline_accuracy",
        "unstructured_nonzero_ratio",
        "unstructured_size_ratio",
        "structured_params_ratio",
        "structured_flops_ratio",
        "structured_accuracy_delta",
        "structured_speedup",
        "iterative_accuracy_delta",
        "most_sensitive_layer",
        "unstructured_flops_ratio",
        *WHAT_CHANGED_KEYS,
        "measure_device_name",
        "hidden_effects",
    ],
    "07_quantization": [
        "baseline_accuracy",
        "static_size_ratio",
        "static_accuracy_delta",
        "qat_accuracy_delta",
        "static_eager_speedup",
        "dynamic_linear_share",
        "bf16_size_ratio",
        "saved_fp32_bytes",
        "saved_static_int8_bytes",
        "skipped_lines",
        *WHAT_CHANGED_KEYS,
        "roofline_points",
        "roofline_regimes",
        "measure_device_name",
        "hidden_effects",
    ],
    "08_distillation": [
        "teacher_accuracy",
        "student_accuracy_mean",
        "distilled_accuracy_mean",
        "distill_gain",
        "accuracy_std",
        "seeds_improved",
        "student_params_ratio",
        "student_speedup",
        *WHAT_CHANGED_KEYS,
        "measure_device_name",
    ],
    "10_distributed": [
        "world_size",
        "backend",
        "rank_images_per_s",
        "speedup",
        "scaling_efficiency",
        "accuracy_by_nproc",
        "ddp_parameter_bytes",
        "fsdp_parameter_bytes",
        "bubble_share",
        "bubble_theory",
        "handoff_ms",
        "multinode_command",
        "measure_device_name",
    ],
    "11_deployment": [
        "formats",
        "parity",
        "runtimes_timed",
        "runtimes_skipped",
        "latency_bs_max",
        "fastest_runtime",
        "ort_static_size_ratio",
        "torchao_static_size_ratio",
        "served_matches",
        "serving",
        "measure_device_name",
    ],
    "12_speedrun": [
        "variants",
        "baseline_accuracy",
        "baseline_seconds",
        "parts",
        "accuracy_bought",
        "seconds_bought",
        "time_to_target",
        "race_files",
        "train_device",
        "tta_eval_ratio",
    ],
    "13_capstone": [
        "steps",
        "accuracy",
        "baseline_accuracy",
        "final_accuracy",
        "size_ratio",
        "flops_ratio",
        "params_ratio",
        "cpu_bs1_speedup",
        "chosen_width",
        "trained_runs",
        *WHAT_CHANGED_KEYS,
        "measure_device_name",
    ],
    "14_language_model": [
        "val_losses",
        "samples",
        "loss",
        "perplexity",
        "bits_per_byte",
        "kv_cache_bytes",
        "decode_curve",
        "attention",
        "shape_losses",
        "better_shape",
        "measure_device_name",
        *ROOFLINE_KEYS,
    ],
    "15_llm_compression": [
        "fp32_perplexity",
        "smallest_size_ratio",
        "speculative_speedup",
        "variants",
        "perplexity",
        "perplexity_change",
        "size_bytes",
        "params",
        "kv_cache_bytes",
        "decode_tps",
        "decode_speedup",
        "curve",
        "distill",
        "distill_means",
        "speculative",
        "generate_same",
        "measure_device_name",
        *ROOFLINE_KEYS,
        "changed_variant",
        "changed_base_mean_loss",
        "changed_variant_mean_loss",
        "changed_mean_change",
        "changed_base_loss",
        "changed_variant_loss",
    ],
    "16_llm_memory": [
        "kv_float_bytes",
        "kv_int8_bytes",
        "cached_perplexity_change",
        "cache_sizes",
        "training_memory",
        "dominant_part",
        "finetune_dataset",
        "finetune",
        "decode",
        "measure_device_name",
        "training_memory_device",
        *ROOFLINE_KEYS,
    ],
    "17_llm_serving": [
        "perplexity",
        "parity",
        "weights",
        "levels",
        "gain",
        "rows_per_step",
        "stranger_status",
        "friend_status",
        "measure_device_name",
    ],
    "09_model_search": [
        "hypervolume_mean",
        "best_strategy",
        "trials_mean",
        "front_size",
        "chosen_trial",
        "chosen_dominates",
        "chosen_size_ratio",
        "chosen_accuracy_delta",
        "dominating_baseline",
        "panel_trials",
        "measure_device_name",
    ],
}

# The relation each notebook's takeaway states, checked on what the smoke run produced. Each holds for
# the smoke sizes too (checked on the numbers, never on the printed text).
TAKEAWAYS = {
    "00_quickstart": [("the narrower cnn has fewer parameters", lambda m: m["narrow_params_ratio"] < 0.5)],
    "01_measure": [
        ("batching raises throughput", lambda m: m["throughput_ips_max"] > m["throughput_ips_bs1"]),
        ("the static costs are positive", lambda m: m["params"] > 0 and m["flops"] > 0),
        ROOFLINE_PLACED,
        ("the largest batch reaches more GFLOP/s than batch 1", _batching_raises_gflops),
        ("a training run's measured peak memory is more than its weights' bytes", lambda m: m["peak_memory_ratio"] > 1),
    ],
    "02_model_structure": [
        ("wider means more parameters", lambda m: m["width_params_ratio"] > 1.5),
        ("deeper means more FLOPs", lambda m: m["depth_flops_ratio"] > 1.2),
        ("the base config trained once, not once per section", lambda m: m["reused_runs"] == 2),
        (
            "the BatchNorm/Dropout takeaway reports all four runs, the fourth (no BN + dropout) included",
            lambda m: (
                len(m["switch_accuracy"]) == 4
                and set(m["epochs_to_target"]) == set(m["switch_accuracy"])
                and any(k.startswith("no BN + dropout") for k in m["switch_accuracy"])
            ),
        ),
        (
            "a run 'never' reached the target exactly when no epoch of it did; else the epoch is one it ran",
            lambda m: all(
                (e is None) == (m["switch_best_epoch_accuracy"][k] < m["target_accuracy"])
                and (e is None or 1 <= e <= m["epochs"])
                for k, e in m["epochs_to_target"].items()
            ),
        ),
        (
            "the BatchNorm gain is the final accuracy with BN minus without",
            lambda m: math.isclose(
                m["batchnorm_gain"], m["switch_accuracy"]["BN, no dropout"] - m["switch_accuracy"]["no BN"]
            ),
        ),
    ],
    "03_training_algorithms": [("a bigger batch trains more images per second", lambda m: m["batch_speedup"] > 1)],
    "04_data": [
        (
            "selection strategies train on the same budget",
            lambda m: abs(m["selection_data_share"] - m["budget"]) < 0.02,
        ),
        (
            "every run's generalisation gap is eval-mode train accuracy minus test accuracy, "
            "not the running train accuracy",
            lambda m: (
                set(m["generalization_gap"]) == set(m["test_accuracy"])
                and all(
                    math.isclose(gap, m["train_eval_accuracy"][k] - m["test_accuracy"][k], abs_tol=1e-9)
                    for k, gap in m["generalization_gap"].items()
                )
                and math.isclose(m["max_generalization_gap"], max(m["generalization_gap"].values()), abs_tol=1e-9)
            ),
        ),
        (
            "every augmentation's training speed is measured against none",
            lambda m: (
                m["augmentation_speed"]["baseline"] == 1.0 and all(v > 0 for v in m["augmentation_speed"].values())
            ),
        ),
    ],
    "05_hardware": [
        (
            "every variant's warm-up cost is its first epoch beyond a steady one",
            lambda m: all(
                math.isclose(
                    m["warmup_seconds"][k],
                    max(0.0, m["first_epoch_seconds"][k] - m["steady_epoch_seconds"][k]),
                    abs_tol=1e-5,
                )
                for k in m["variants"]
            ),
        ),
        ("the profile's phases make up the whole step", lambda m: math.isclose(sum(m["profile_shares"].values()), 1.0)),
        ("a small batch costs more per image", lambda m: m["per_image_ratio"] > 1),
        ("training used a measured share of the matmul ceiling", lambda m: m["train_ceiling_share"] > 0),
        (
            "the sweep times what runs here and gives a reason for the rest",
            lambda m: (
                m["sweep_ran"] > 0
                and m["sweep_ran"] + len(m["sweep_batch_sizes"]) * len(m["sweep_skipped"]) == m["sweep_rows"]
                and all(m["sweep_skipped"].values())
            ),
        ),
        ROOFLINE_PLACED,
        ("every variant reaches more GFLOP/s at its largest batch than at batch 1", _batching_raises_gflops),
    ],
    "06_pruning": [
        (
            "unstructured: fewer non-zeros, same file",
            lambda m: m["unstructured_nonzero_ratio"] < 0.6 and m["unstructured_size_ratio"] > 0.95,
        ),
        (
            "structured: fewer parameters and FLOPs",
            lambda m: m["structured_params_ratio"] < 0.6 and m["structured_flops_ratio"] < 0.6,
        ),
        ("unstructured: the same FLOPs as the baseline", lambda m: m["unstructured_flops_ratio"] > 0.99),
        ("one training for every variant", lambda m: m["trained_runs"] == 1),
        *WHAT_CHANGED,
    ],
    "07_quantization": [
        ("static int8 weights are smaller", lambda m: m["static_size_ratio"] < 0.5),
        (
            "the saved int8 program is smaller than the saved float model",
            lambda m: m["saved_static_int8_bytes"] < m["saved_fp32_bytes"],
        ),
        ("every saved model loads back with its run's accuracy", lambda m: m["reload_accuracy_gap"] < 0.005),
        ("one training for every variant", lambda m: m["trained_runs"] == 1),
        (
            "every skipped mode is one readable line: its variant and mode, then the reason's first sentence "
            "or its start cut at a word boundary",
            lambda m: _readable_skip_lines(m),
        ),
        *WHAT_CHANGED,
        (
            "every timed cell of the baseline is a point on the roofline",
            lambda m: (
                m["roofline_baseline_cells"] >= 1
                and m["roofline_baseline_unplaced"] == []
                and m["roofline_points"] >= m["roofline_baseline_cells"]
            ),
        ),
        (
            "every roofline point is compute-, memory- or overhead-bound",
            lambda m: bool(m["roofline_regimes"]) and set(m["roofline_regimes"]) <= {"compute", "memory", "overhead"},
        ),
    ],
    "08_distillation": [
        ("a distilled row beside an alone row for every seed", lambda m: m["pairs"] == m["seeds"] >= 2),
        ("the student is smaller than the teacher", lambda m: m["student_params_ratio"] < 0.5),
        *WHAT_CHANGED,
    ],
    "10_distributed": [
        (
            "the 2-process launch stored one row, with both ranks' measured speed, over gloo",
            lambda m: (
                m["world_size"] == 2
                and m["backend"] == "gloo"
                and m["rows_per_launch"] == [1, 1]
                and len(m["rank_images_per_s"]) == 2
                and all(v > 0 for v in m["rank_images_per_s"])
            ),
        ),
        (
            "efficiency is the speed-up over the processes, and the speed-up is measured against one process",
            lambda m: (
                m["nprocs"][0] == 1
                and math.isclose(m["speedup"][0], 1.0)
                and all(math.isclose(e, s / n) for e, s, n in zip(m["scaling_efficiency"], m["speedup"], m["nprocs"]))
                and all(math.isclose(s, ips / m["images_per_s"][0]) for s, ips in zip(m["speedup"], m["images_per_s"]))
            ),
        ),
        (
            "the mlp, with little arithmetic per weight, scales worse than the conv net",
            lambda m: m["tiny_efficiency"][-1] < m["scaling_efficiency"][-1],
        ),
        (
            "1 and 2 processes agree on accuracy within the stated tolerance",
            lambda m: abs(m["accuracy_by_nproc"]["1"] - m["accuracy_by_nproc"]["2"]) * 100 <= m["agreement_points"],
        ),
        (
            "FSDP holds about half the parameters in each process; DDP holds them all",
            lambda m: (
                all(b == 4 * m["params"] for b in m["ddp_parameter_bytes"])
                and all(0.45 <= b / (4 * m["params"]) <= 0.55 for b in m["fsdp_parameter_bytes"])
            ),
        ),
        # Whether the bubble shrinks is a timing, moved by other work on the cores: benchmarks/distributed.py has it.
        (
            "the pipeline is the unsplit model, and its bubble is never below GPipe's",
            lambda m: (
                m["loss_max_diff"] < 1e-4 and all(b >= t - 0.05 for b, t in zip(m["bubble_share"], m["bubble_theory"]))
            ),
        ),
        (
            "the several-machine line names torchrun's node rank and rendezvous",
            lambda m: (
                "--nnodes 2" in m["multinode_command"]
                and "--node-rank 1" in m["multinode_command"]
                and "--rdzv-endpoint 10.0.0.1:29400" in m["multinode_command"]
            ),
        ),
    ],
    "11_deployment": [
        (
            "every bundle file passed parity within its precision's bar, on the whole test split",
            lambda m: (
                m["formats"] == ["onnx", "torch-export"]
                and all(
                    p["passed"] and p["max_rel_error"] <= p["tolerance"]["max_rel_error"] and p["images"] == 360
                    for p in m["parity"].values()
                )
            ),
        ),
        (
            "the runtime named fastest has the lowest latency, and every skipped runtime says why",
            lambda m: (
                m["fastest_runtime"] == min(m["latency_bs_max"], key=m["latency_bs_max"].get)
                and all(m["runtimes_skipped"].values())
                and "PyTorch eager" in m["runtimes_timed"]
            ),
        ),
        (
            "the ORT int8 bundle is ONNX only and smaller than the float ONNX file",
            lambda m: m["ort_bundle_formats"] == ["onnx"] and m["ort_bundle_bytes"] < m["fp32_onnx_bytes"],
        ),
        (
            "the server answers as the in-process model, refuses a bad shape with a 4xx, and every load test "
            "ran its requests without an error, p50 <= p95 <= p99",
            lambda m: (
                m["served_matches"]
                and 400 <= m["refused_status"] < 500
                and all(
                    r["ok"] == m["requests"] and r["errors"] == 0 and r["p50_ms"] <= r["p95_ms"] <= r["p99_ms"]
                    for r in m["serving"]
                )
            ),
        ),
    ],
    "13_capstone": [
        (
            "the path is the baseline and seven steps, in the order the notebook states",
            lambda m: (
                len(m["steps"]) == 8
                and m["steps"][0] == "baseline"
                and m["steps"][-1] == "+ static int8"
                and m["steps"][5] == "+ distillation"
            ),
        ),
        (
            "the final model is narrower, pruned and int8: far fewer parameters, FLOPs and bytes",
            lambda m: m["params_ratio"] < 0.5 and m["flops_ratio"] < 0.5 and m["size_ratio"] < 0.25,
        ),
        (
            "the search's pick is one of the widths it tried, and the student learned from step 3",
            lambda m: m["chosen_width"] in m["search_widths"] and m["distilled_from"] == m["teacher_run"],
        ),
        (
            "pruning and int8 reused the distilled student's training, not a new one",
            lambda m: m["reused_from"][6] is not None and m["reused_from"][6] == m["reused_from"][7],
        ),
        *WHAT_CHANGED,
    ],
    "14_language_model": [
        (
            "the validation loss fell from the first evaluation to the last, with a sample at each",
            lambda m: (
                m["val_losses"][-1] < m["val_losses"][0]
                and len(m["samples"]) == len(m["val_losses"])
                and all(s.startswith("def ") for s in m["samples"])
            ),
        ),
        (
            "perplexity is exp(loss) and bits per byte the loss over ln 2 and the bytes per token",
            lambda m: (
                math.isclose(m["perplexity"], math.exp(m["loss"]), rel_tol=1e-9)
                and math.isclose(m["bits_per_byte"], m["loss"] / (math.log(2) * m["bytes_per_token"]), rel_tol=1e-9)
            ),
        ),
        (
            "the KV cache holds 2 x layers x n_embd x context x 4 bytes",
            lambda m: m["kv_cache_bytes"] == m["kv_formula_bytes"],
        ),
        (
            "every decode length was timed cached and recomputed, every attention length sdpa and naive",
            lambda m: (
                sorted((r["new_tokens"], r["kv_cache"]) for r in m["decode_curve"])
                == sorted({(r["new_tokens"], kv) for r in m["decode_curve"] for kv in (True, False)})
                and all(r["decode_tps"] > 0 for r in m["decode_curve"])
                and all(
                    sorted(r["attention"] for r in m["attention"] if r["tokens"] == n) == ["naive", "sdpa"]
                    for n in {r["tokens"] for r in m["attention"]}
                )
            ),
        ),
        (
            "the shape named better reached the lower loss, and each shape trained about its time budget "
            "(the budget's clock starts before the first epoch's: a little under it is the budget)",
            lambda m: (
                m["better_shape"] == min(m["shape_losses"], key=m["shape_losses"].get)
                and all(
                    0.8 * m["shape_seconds"] <= seconds <= m["shape_seconds"] + 5
                    for seconds in m["shape_seconds_run"].values()
                )
            ),
        ),
        ROOFLINE_PLACED,
        (
            "every run, forward and decoding alike, reaches more GFLOP/s at its largest batch than at batch 1",
            _batching_raises_gflops,
        ),
    ],
    "15_llm_compression": [
        (
            "every variant is a ledger row from one training: fp32 first and unchanged, the others reusing it",
            lambda m: (
                m["variants"][0] == "fp32"
                and len(m["variants"]) == 6
                and m["perplexity_change"]["fp32"] == 0
                and m["reused_from"]["fp32"] is None
                and all(m["reused_from"][v] == m["teacher_run"] for v in m["variants"][1:])
            ),
        ),
        (
            "int8, dynamic and weight-only, changes perplexity by under 2%",
            lambda m: all(abs(m["perplexity_change"][v]) < 0.02 for v in ("dynamic int8", "weight-only int8")),
        ),
        (
            "every variant is smaller on disk than fp32 (the ratio said is the smallest's); bf16 halves the KV cache",
            lambda m: (
                all(m["size_bytes"][v] < m["size_bytes"]["fp32"] for v in m["variants"][1:])
                and math.isclose(m["smallest_size_ratio"], min(m["size_bytes"].values()) / m["size_bytes"]["fp32"])
                and m["kv_cache_bytes"]["bf16"] * 2 == m["kv_cache_bytes"]["fp32"]
            ),
        ),
        (
            "the pruned model has fewer parameters and half the KV cache (half its heads)",
            lambda m: (
                all(
                    m["params"][v] < m["params"]["fp32"] and m["kv_cache_bytes"][v] * 2 == m["kv_cache_bytes"]["fp32"]
                    for v in m["variants"]
                    if m["compress"][v].startswith("prune_gpt")
                )
                and any(m["compress"][v].startswith("prune_gpt") for v in m["variants"])
            ),
        ),
        (
            "the bits curve has every width x group x scaling and the unrounded model; the fewest bits cost more "
            "than the most (on the worst line)",
            lambda m: (
                len(m["curve"]) == 1 + 2 * len(m["bits"]) * len(m["group_sizes"])
                and max(r["perplexity"] for r in m["curve"] if r["bits"] == min(m["bits"]))
                > max(r["perplexity"] for r in m["curve"] if r["bits"] == max(m["bits"]))
            ),
        ),
        (
            "a student alone and one distilled from the fp32 run per seed, smaller than it, scored by validation loss",
            lambda m: (
                m["distill_metric"] == "loss"
                and len(m["distill"]) >= 4
                and 2 * sum(r["with_teacher"] for r in m["distill"]) == len(m["distill"])
                and all((r["distill.teacher"] == m["teacher_run"]) == r["with_teacher"] for r in m["distill"])
                and all(r["params"] < m["params"]["fp32"] for r in m["distill"])
                and math.isclose(
                    m["distill_means"]["distilled"],
                    sum(r["loss"] for r in m["distill"] if r["with_teacher"]) / (len(m["distill"]) // 2),
                )
            ),
        ),
        (
            "speculative decoding wrote the target's own greedy output at every lookahead, through generate too; "
            "the speed-up said is the fastest lookahead's",
            lambda m: (
                m["generate_same"]
                and m["speculative_speedup"] == max(r["speedup"] for r in m["speculative"][1:])
                and [r["lookahead"] for r in m["speculative"]] == [0, *m["lookaheads"]]
                and all(r["same_as_target"] for r in m["speculative"])
                and all(
                    0 <= r["acceptance"] <= 1 and 1 <= r["tokens_per_target_pass"] <= r["lookahead"] + 1
                    for r in m["speculative"][1:]
                )
            ),
        ),
        ROOFLINE_PLACED,
        (
            "every variant decodes at more GFLOP/s at batch 8 than at batch 1 (not claimed for the forward pass: "
            "emulated bf16 is compute-bound there, 1.03x in one smoke run)",
            lambda m: _batching_raises_gflops(m, modes={"decode"}),
        ),
        (
            "what_changed's mean change per token is the variant's mean loss minus the base's",
            lambda m: math.isclose(
                m["changed_mean_change"], m["changed_variant_mean_loss"] - m["changed_base_mean_loss"], abs_tol=1e-6
            ),
        ),
        (
            "what_changed scores the windows the runs were scored on: its mean losses are the runs' stored losses",
            lambda m: (
                math.isclose(m["changed_base_mean_loss"], m["changed_base_loss"], rel_tol=1e-5)
                and math.isclose(m["changed_variant_mean_loss"], m["changed_variant_loss"], rel_tol=1e-5)
            ),
        ),
    ],
    "17_llm_serving": [
        (
            "the bundle's weights are safetensors whose reloaded logits equal the run's",
            lambda m: m["weights"] == "safetensors" and m["parity"]["passed"] and m["parity"]["max_abs_error"] == 0,
        ),
        (
            "streamed answers end at new_tokens; an over-cap request gets a 422, a stranger a 401, the token a 200",
            lambda m: (
                all(a["completion_tokens"] == m["new_tokens"] and a["finish_reason"] == "length" for a in m["streamed"])
                and (m["refused_status"], m["stranger_status"], m["friend_status"]) == (422, 401, 200)
            ),
        ),
        (
            "every request of the load test was answered; one at a time decodes one request a step, continuous "
            "batching more than one, and the gain is its tokens/s over one at a time's at the most clients",
            lambda m: (
                all(r["errors"] == 0 and r["ok"] == r["requests_sent"] > 0 for r in m["levels"])
                and m["rows_per_step"]["off"] == 1.0
                and m["rows_per_step"]["continuous"] > 1.0
                and math.isclose(
                    m["gain"],
                    next(
                        r["tokens_per_s"]
                        for r in m["levels"]
                        if r["batching"] == "continuous" and r["concurrency"] == m["top_clients"]
                    )
                    / next(
                        r["tokens_per_s"]
                        for r in m["levels"]
                        if r["batching"] == "off" and r["concurrency"] == m["top_clients"]
                    ),
                    rel_tol=1e-9,
                )
            ),
        ),
    ],
    "16_llm_memory": [
        (
            "the int8 cache takes a byte a number and a float32 scale a vector, (head_dim + 4) / (4 head_dim) of "
            "float32's, from a step that reused the base training",
            lambda m: (
                m["kv_int8_bytes"] == m["kv_int8_formula_bytes"]
                and m["kv_int8_bytes"] * 4 * m["head_dim"] == m["kv_float_bytes"] * (m["head_dim"] + 4)
                and m["kv_reused_from"] == m["base_run"]
            ),
        ),
        (
            "the perplexity change is exp(int8's cached loss - float's) - 1, and under 1%",
            lambda m: (
                math.isclose(
                    m["cached_perplexity_change"],
                    math.exp(m["cached_loss_int8"] - m["cached_loss_float"]) - 1,
                    rel_tol=1e-6,
                    abs_tol=1e-9,
                )
                and abs(m["cached_perplexity_change"]) < 0.01
            ),
        ),
        (
            "in the cache chart float32 is twice bfloat16 and int8 below bfloat16 at every context; a cache outgrows "
            "the weights at the first context where it holds more bytes than them",
            lambda m: (
                all(
                    _cache(m, n, "float32") == 2 * _cache(m, n, "bfloat16")
                    and _cache(m, n, "int8") < _cache(m, n, "bfloat16")
                    for n in {r["context"] for r in m["cache_sizes"]}
                )
                and all(
                    at
                    == min(
                        (
                            r["context"]
                            for r in m["cache_sizes"]
                            if r["cache"] == c and r["kv_cache_bytes"] > r["weights_bytes"]
                        ),
                        default=None,
                    )
                    for c, at in m["cache_outgrows_weights"].items()
                )
            ),
        ),
        (
            "checkpointing keeps under 0.75x the activations at every context, with the same weights, gradients and "
            "optimizer state",
            lambda m: all(
                _step(m, f"context {n}, checkpointing")["activations"] < 0.75 * _step(m, f"context {n}")["activations"]
                and all(
                    _step(m, f"context {n}, checkpointing")[k] == _step(m, f"context {n}")[k]
                    for k in ("weights", "gradients", "optimizer_state")
                )
                for n in m["contexts"]
            ),
        ),
        (
            "the activations grow in step with the context (within 10%), the weights by the position table only",
            lambda m: (
                abs(
                    _step(m, f"context {m['contexts'][-1]}")["activations"]
                    / _step(m, f"context {m['contexts'][0]}")["activations"]
                    / (m["contexts"][-1] / m["contexts"][0])
                    - 1
                )
                < 0.1
                and _step(m, f"context {m['contexts'][-1]}")["weights"]
                < 1.1 * _step(m, f"context {m['contexts'][0]}")["weights"]
            ),
        ),
        (
            "accumulating: the same windows per optimizer step, about 1/accumulate of the activations, the same "
            "gradients and optimizer state",
            lambda m: (
                (acc := _step(m, f"{m['batch_size'] // m['accumulate']} x {m['accumulate']} accumulated"))
                and (plain := _step(m, f"context {m['block_size']}"))
                and acc["effective_batch"] == plain["effective_batch"] == m["batch_size"]
                and acc["activations"] <= 1.2 / m["accumulate"] * plain["activations"]
                and all(acc[k] == plain[k] for k in ("gradients", "optimizer_state"))
            ),
        ),
        (
            "each step's parts add up to its total, AdamW keeping two moments per trained number (and a step count "
            "per tensor); the part named largest is the largest",
            lambda m: (
                all(
                    r["total"] == r["weights"] + r["gradients"] + r["optimizer_state"] + r["activations"]
                    and 2 * r["gradients"] <= r["optimizer_state"] <= 2 * r["gradients"] + 4 * 1000
                    for r in m["training_memory"]
                )
                and m["dominant_part"]
                == max(
                    ("weights", "gradients", "optimizer_state", "activations"),
                    key=_step(m, f"context {m['block_size']}").get,
                )
            ),
        ),
        (
            "both fine-tunes started from the base run, on another text, for the same steps; LoRA trained under 15% of "
            "the numbers and kept the same share of optimizer state; merged, it has the base's parameter count",
            lambda m: (
                (full := m["finetune"]["full fine-tuning"])
                and (lora := next(r for name, r in m["finetune"].items() if name.startswith("LoRA")))
                and all(
                    r["train.init_from"] == m["base_run"] and r["train.steps"] == m["finetune_steps"]
                    for r in (full, lora)
                )
                and m["finetune_dataset"] != "pystdlib"
                and full["trainable_params"] == full["params"] == lora["params"] == m["params"]
                and lora["trainable_params"] < 0.15 * lora["params"]
                and abs(
                    lora["optimizer_state_bytes"] / full["optimizer_state_bytes"]
                    - lora["trainable_params"] / full["trainable_params"]
                )
                < 0.01
            ),
        ),
        (
            "all four models decoded; the int8 cache is the smaller one, the fine-tuned models' caches the base's",
            lambda m: (
                all(r["decode_tps"] > 0 for r in m["decode"].values())
                and m["decode"]["base, int8 cache"]["kv_cache_bytes"] == m["kv_int8_bytes"]
                and all(
                    r["kv_cache_bytes"] == m["kv_float_bytes"]
                    for name, r in m["decode"].items()
                    if name != "base, int8 cache"
                )
            ),
        ),
        ROOFLINE_PLACED,
        (
            "every run, forward and decoding alike, reaches more GFLOP/s at its largest batch than at batch 1",
            _batching_raises_gflops,
        ),
    ],
    "09_model_search": [
        (
            "the strategy named best found the highest mean hypervolume",
            lambda m: m["best_strategy"] == max(m["hypervolume_mean"], key=m["hypervolume_mean"].get),
        ),
        (
            "hypervolumes are shares of one box, and a mean is of its seeds",
            lambda m: all(
                0 <= v <= 1 and math.isclose(v, sum(m["hypervolume_per_seed"][s]) / len(m["hypervolume_per_seed"][s]))
                for s, v in m["hypervolume_mean"].items()
            ),
        ),
        (
            "every strategy spent the same budget (greedy may stop earlier, once converged)",
            lambda m: all(
                t == m["n_trials"] if s != "greedy" else 1 <= t <= m["n_trials"] for s, t in m["trials_mean"].items()
            ),
        ),
        (
            "the chosen configuration is on the front, within the accuracy allowance",
            lambda m: (
                m["chosen_trial"] in m["front_trials"]
                and m["chosen"]["accuracy"] >= m["baseline"]["accuracy"] - m["max_accuracy_drop"] / 100 - 1e-12
            ),
        ),
        (
            "the chosen configuration is said to dominate the baseline exactly when its numbers do",
            lambda m: m["chosen_dominates"] == _dominates(m["chosen"], m["baseline"]),
        ),
        (
            "the panel's search is the clicked path: its whole budget ran, "
            "redrawn after each trial's row and at the end",
            lambda m: (
                m["panel_trials"] == m["panel_budget"]
                and m["panel_redraws"] == [*range(1, m["panel_rows"] + 1), m["panel_trials"]]
            ),
        ),
    ],
    "12_speedrun": [
        (
            "every part of the preset has its own line, over every seed",
            lambda m: (
                sorted(m["parts"]) == sorted(v for v in m["variants"] if v != "speedrun")
                and all(n == m["seeds"] for n in m["part_runs"].values())
            ),
        ),
        (
            "test-time augmentation changes evaluation only: it reused the training and saved no seconds",
            lambda m: m["seconds_bought"]["test-time augmentation"] == 0.0,
        ),
        ("the committed CPU race figures are shown", lambda m: "speedrun-cpu.json" in m["race_files"]),
        (
            "test-time augmentation multiplies the evaluation work: the preset's evaluation took at least twice "
            "as long as the one without TTA (it runs 7 views of each image)",
            lambda m: m["tta_eval_ratio"] > 2,
        ),
    ],
}


def _dominates(a: dict, b: dict) -> bool:
    """``a`` no worse than ``b`` on every objective and better on one (accuracy up, the rest down)."""
    from workbench.search import direction

    gains = [(a[k] - b[k]) * (1 if direction(k) == "maximize" else -1) for k in a]
    return all(g >= 0 for g in gains) and any(g > 0 for g in gains)


def _readable_skip_lines(m: dict) -> bool:
    """07's skip lines: ``<variant> in <mode>: skipped — <why>``, one short line each, where ``why`` is the
    stored reason whole, its first sentence, or its start cut between two words and marked with "…"."""
    lines, where, reasons = m["skipped_lines"], m["skipped_modes"], m["skipped_reasons"]
    if not len(lines) == len(where) == len(reasons):
        return False
    for line, at, raw in zip(lines, where, reasons):
        head, raw = f"{at}: skipped — ", " ".join(raw.split())
        if not line.startswith(head) or "\n" in line or len(line) > 220:
            return False
        why = line[len(head) :]
        if why.endswith(" …"):
            why = why[:-2]
            ok = raw.startswith(why) and raw[len(why) : len(why) + 1] == " "
        else:
            ok = why == raw or (raw.startswith(why) and why[-1] in ".;")
        if not ok:
            return False
    return True


def test_every_notebook_has_expectations():
    assert sorted(p.stem for p in NOTEBOOKS) == sorted(EXPECTED) == sorted(TAKEAWAYS)


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs(nb):
    doc = json.loads(nb.read_text())
    code = [c for c in doc["cells"] if c["cell_type"] == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code)
    assert "widgets" not in doc["metadata"]


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_smoke_parameters_exist_in_parameters_cell(nb):
    import papermill

    doc = json.loads(nb.read_text())
    tagged = [c for c in doc["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged 'parameters'"
    known = papermill.inspect_notebook(str(nb))
    assert set(smoke_parameters(nb)) <= set(known), "papermill only warns about unknown parameters"
    assert "results_dir" in known


def check_exercises(stem: str, metrics: dict) -> None:
    """The learner's view: every exercise left for the learner, the notebook having run to its end anyway.
    The instructor's checks, run beside it in copies of the namespace: every reference solution judged
    right, every typical wrong answer turned down with a reason."""
    said = metrics.get("exercises", {})
    assert sorted(said) == [e.key for e in exercises_of(stem)]
    for key, verdict in said.items():
        assert verdict["status"] == "unanswered" and not verdict["filled_in"], (key, verdict)
        assert verdict["solution_status"] == "right", (key, verdict["message"])
        assert verdict["let_through"] == [] and len(verdict["rejected"]) == len(EXERCISES.get(key).wrong), (
            key,
            verdict,
        )


@pytest.mark.slow
@pytest.mark.timeout(3600)
@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_smoke_run(nb, series):
    """The smoke run of the series (tests/conftest.py): its metrics, takeaways, exercises and a chart."""
    assert series.done.returncode == 0 or (series.out / nb.stem / "metrics.json").exists(), series.done.stderr[-3000:]
    executed = series.out / nb.stem / nb.name
    metrics = json.loads((executed.parent / "metrics.json").read_text())
    check_exercises(nb.stem, metrics)
    for key in EXPECTED[nb.stem]:
        assert key in metrics, key
        value = metrics[key]
        assert value is not None and (not isinstance(value, float) or math.isfinite(value)), (key, value)
    for claim, holds in TAKEAWAYS[nb.stem]:
        assert holds(metrics), f"{nb.stem}: {claim} ({metrics})"
    doc = json.loads(executed.read_text())
    images = [o for c in doc["cells"] for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert images, "the notebook shows at least one chart as a PNG"


def test_running_where_there_are_no_notebooks_says_where_to_run_from(tmp_path):
    from workbench.course.notebooks import run_notebooks

    with pytest.raises(FileNotFoundError, match="run from a checkout"):
        run_notebooks(folder=tmp_path)


# --- the site built from the series -------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_the_series_builds_a_site_with_a_page_per_notebook(series):
    assert series.done.returncode == 0, series.done.stderr[-3000:]
    stems = [p.stem for p in list_notebooks()]
    assert sorted(p.stem for p in series.site.glob("*.html")) == sorted([*stems, "index"])
    assert f"The site: {series.site.resolve() / 'index.html'}" in series.done.stdout
    assert sorted(json.loads((series.out / "timings.json").read_text())) == sorted(stems)
    index = (series.site / "index.html").read_text()
    assert all(f'href="{stem}.html"' in index for stem in stems)
    for page in sorted(series.site.glob("*.html")):
        assert broken_refs(page) == [], page.name
        assert WIDGET_VIEW not in page.read_text(), f"{page.name}: a widget left for JavaScript that is not there"
    assert all(pngs(series.site / f"{stem}.html") for stem in stems), "every notebook shows a chart"


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_the_series_runs_with_each_cell_named_in_the_bar(series):
    """The bar names each cell's section (the exercises' learner and solution checks: tests/test_notebooks.py)."""
    assert series.done.returncode == 0, series.done.stderr[-3000:]
    bar = series.done.stderr.replace("\r", "\n")
    assert re.search(r"cell 1/\d+: 01 · Measure", bar) and "Why warm-up matters" in bar
    assert "without encryption" not in series.done.stderr  # the kernel's TCP note is not for this user


@pytest.mark.slow
@pytest.mark.timeout(3600)
@pytest.mark.browser
@needs_chromium
def test_the_series_site_in_a_real_browser(series):
    assert series.done.returncode == 0, series.done.stderr[-3000:]
    seen = open_in_browser(
        [series.site / "index.html", series.site / "00_quickstart.html"], ["site-index.png", "site-quickstart.png"]
    )
    for page in seen:
        assert page["network"] == [] and page["errors"] == [], page
        assert all(page["images"]), page
    assert seen[1]["images"], "the quickstart page shows its charts"


def _step(m: dict, variant: str) -> dict:
    """Notebook 16: one variant's row of ``training_memory``."""
    return next(r for r in m["training_memory"] if r["variant"] == variant)


def _cache(m: dict, context: int, cache: str) -> int:
    """Notebook 16: the bytes of one cache at one context, from the cache chart's table."""
    return next(r["kv_cache_bytes"] for r in m["cache_sizes"] if r["context"] == context and r["cache"] == cache)
