import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from workbench.cli import main

REPO = Path(__file__).resolve().parent.parent


def _run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "workbench.cli", *args], capture_output=True, text=True, cwd=cwd)


def test_run_json(tmp_path, capsys):
    code = main(
        [
            "run",
            "--dataset",
            "digits",
            "--model",
            "mlp",
            "--epochs",
            "1",
            "--optimizer",
            "adam",
            "--lr",
            "0.002",
            "--schedule",
            "cosine",
            "--json",
            "--store",
            str(tmp_path / "runs"),
        ]
    )
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["config"]["model"]["name"] == "mlp" and out["config"]["train"]["optimizer"] == "adam"
    assert 0 < out["metrics"]["accuracy"] <= 1
    assert out["row"]["params"] > 0
    assert (tmp_path / "runs" / "results" / f"{out['run_id']}.json").exists()


def test_every_field_has_a_flag(capsys):
    code = main(
        [
            "run",
            "--model",
            "resnet20",
            "--width",
            "0.5",
            "--depth",
            "2",
            "--no-batchnorm",
            "--batch-size",
            "32",
            "--precision",
            "bf16",
            "--device",
            "cpu",
            "--augment",
            "crop=2,cutout",
            "--fraction",
            "0.5",
            "--selection",
            "balanced",
            "--measure-batch-sizes",
            "1,8",
            "--warmup-epochs",
            "1",
            "--init",
            "whiten",
            "--tta",
            "flip",
            "--tta-below",
            "0.9",
            "--print-config",
        ]
    )
    assert code == 0
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["model"] == {
        "name": "resnet20",
        "width": 0.5,
        "depth": 2,
        "batchnorm": False,
        "dropout": 0.0,
        "init": "whiten",
        "n_embd": 128,
        "n_head": 4,
        "block_size": 64,
        "bias": True,
        "attention": "sdpa",
        "positions": "learned",
    }
    assert cfg["evaluation"] == {"tta": "flip", "tta_shift": 1, "tta_below": 0.9}
    assert cfg["data"]["augment"]["crop"] == 2 and cfg["data"]["augment"]["cutout"] == 8
    assert cfg["measure"]["batch_sizes"] == [1, 8]
    assert cfg["train"]["batch_size"] == 32 and cfg["train"]["warmup_epochs"] == 1.0


def test_augment_shorthand_takes_alternate_flips_and_photometric_jitter(capsys):
    assert main(["run", "--augment", "flip=alternate,brightness,contrast=0.3", "--print-config"]) == 0
    augment = json.loads(capsys.readouterr().out)["data"]["augment"]
    assert augment == {
        "flip": "alternate",
        "crop": 0,
        "translate": 0,
        "cutout": 0,
        "rotate": 0.0,
        "brightness": 0.2,
        "contrast": 0.3,
    }


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--model", "resnet21"], "Did you mean 'resnet20'"),
        (["--lr", "-1"], "train.lr must be > 0"),
        (["--batch-size", "0"], "train.batch_size must be > 0"),
        (["--fraction", "2"], "data.fraction must be in (0, 1]"),
        (["--device", "cuda"], "CUDA"),
        (["--augment", "blur"], "Unknown augmentation 'blur'"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, args, needle):
    if args == ["--device", "cuda"]:
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA")
    p = _run("run", "--epochs", "1", "--no-progress", "--store", str(tmp_path), *args)
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], p.stderr


def test_models_and_datasets_lists(capsys):
    assert main(["models"]) == 0 and "resnet20" in capsys.readouterr().out
    assert main(["datasets", "list"]) == 0 and "digits" in capsys.readouterr().out


def test_run_gives_the_panels_advice_before_training(tmp_path, capsys):
    code = main(
        ["run", "--model", "mlp", "--epochs", "1", "--augment", "flip", "--no-progress", "--store", str(tmp_path)]
    )
    assert code == 0
    err = capsys.readouterr().err
    assert "workbench: note: flip mirrors digits" in err


def test_from_a_stored_run_reuses_its_training(tmp_path, capsys):
    store = str(tmp_path / "runs")
    assert main(["run", "--model", "mlp", "--width", "0.25", "--epochs", "1", "--json", "--store", store]) == 0
    first = json.loads(capsys.readouterr().out)
    assert (
        main(
            [
                "run",
                "--from",
                first["run_id"],
                "--compress",
                "prune_unstructured:amount=0.5",
                "--name",
                "sparse",
                "--json",
                "--store",
                store,
            ]
        )
        == 0
    )
    sparse = json.loads(capsys.readouterr().out)
    assert sparse["reused_from"] == first["run_id"] and sparse["config"]["model"]["width"] == 0.25
    assert sparse["metrics"]["nonzero_params"] < first["metrics"]["nonzero_params"]
    assert main(["run", "--from", first["run_id"], "--no-reuse", "--json", "--store", store]) == 0
    assert json.loads(capsys.readouterr().out)["reused_from"] is None
    assert main(["run", "--from", "nope", "--store", store]) == 2
    assert "No result 'nope'" in capsys.readouterr().err
    assert main(["results", "--store", store]) == 0
    assert "sparse" in capsys.readouterr().out


@pytest.fixture(scope="module")
def compressed_run(tmp_path_factory):
    """One compressed run timed in two modes, and what `workbench run` printed for it."""
    import io
    from contextlib import redirect_stderr, redirect_stdout

    store = tmp_path_factory.mktemp("cli") / "runs"
    out = io.StringIO()
    with redirect_stdout(out), redirect_stderr(io.StringIO()):
        code = main(
            [
                "run",
                "--model",
                "cnn",
                "--width",
                "0.25",
                "--epochs",
                "1",
                "--compress",
                "prune_structured:amount=0.5",
                "--compress",
                "dynamic_int8",
                "--measure-modes",
                "eager,compiled",
                "--measure-batch-sizes",
                "1,8",
                "--measure-iters",
                "5",
                "--store",
                str(store),
                "--no-progress",
            ]
        )
    assert code == 0
    return store, out.getvalue()


def test_run_prints_before_and_after_every_mode_and_the_real_weight_dtype(compressed_run):
    _, printed = compressed_run
    lines = dict(line.split("  ", 1) for line in printed.splitlines() if "  " in line)
    lines = {k.strip(): v.strip() for k, v in lines.items()}
    for what in (
        "test accuracy (%)",
        "parameters",
        "non-zero parameters",
        "model size on disk (KiB)",
        "FLOPs per image",
    ):
        assert re.fullmatch(r"[\d.,]+ -> [\d.,]+ \(.+\)", lines[what]), (what, lines[what])
    assert re.search(r"int8 \d+%", lines["weights stored as"])  # dynamic int8 weights are int8, not "float32"
    for mode in ("eager", "compiled"):
        for bs in (1, 8):
            assert re.fullmatch(
                r"[\d.]+ ms \(spread \d+%\)( NOISY: the machine was busy; rerun on a quiet machine)?",
                lines[f"latency, cpu {mode}, batch {bs}"],
            )
    assert re.search(r"\d+ thread\(s\), load average [\d.]+", lines["measured on"])


def test_results_is_a_readable_table_in_every_format(compressed_run, capsys):
    store, _ = compressed_run
    assert main(["results", "--store", str(store)]) == 0
    table = capsys.readouterr().out
    assert "test accuracy (%)" in table and "latency at batch 1 (ms, median)" in table and "..." not in table
    assert (
        main(
            ["results", "--store", str(store), "--columns", "accuracy,params", "--sort", "accuracy", "--format", "csv"]
        )
        == 0
    )
    import csv
    import io

    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert (
        list(rows[0])[-4:] == ["test accuracy (%)", "parameters", "device", "run id"]
        and 0 < float(rows[0]["test accuracy (%)"]) <= 100
    )
    assert main(["results", "--store", str(store), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["parameters"] > 0
    assert main(["results", "--store", str(store), "--format", "markdown"]) == 0
    assert capsys.readouterr().out.splitlines()[1].startswith("|---")
    assert main(["results", "--store", str(store), "--columns", "nope"]) == 2
    assert "nope" in capsys.readouterr().err


def test_help_is_plain_text_with_choices_and_a_working_example(capsys):
    from workbench.compress import parse_steps

    for argv in (["--help"], ["run", "--help"]):
        with pytest.raises(SystemExit):
            main(argv)
        text = capsys.readouterr().out
        assert "``" not in text and ":class:" not in text and ":func:" not in text
    flat = " ".join(text.split())
    assert re.search(r"--optimizer \S+ .*sgd, sgd_nesterov, adam, adamw, rmsprop", flat)
    assert re.search(r"--schedule \S+ .*constant, step, cosine, onecycle", flat)
    example = re.search(
        r"e\.g\. (--compress \S+(?: --compress \S+)*)", flat.replace("or --compress", "--compress")
    ).group(1)
    steps = [s for spec in example.split("--compress ")[1:] for s in parse_steps(spec.strip(" ;,"))]
    assert steps  # the help's example parses as written


def test_datasets_without_a_subcommand_prints_its_usage_and_fetch_tries_every_name(capsys):
    assert main(["datasets"]) == 2
    assert "usage: workbench datasets" in capsys.readouterr().err
    assert main(["datasets", "fetch", "nope1", "mnist2"]) == 1
    err = capsys.readouterr().err
    assert "nope1: failed" in err and "mnist2: failed" in err and "Did you mean 'mnist'" in err


def test_help_imports_neither_torch_nor_pandas_nor_matplotlib():
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "workbench.cli", "--help"], capture_output=True, text=True
    )
    assert done.returncode == 0
    imported = {
        line.split("|")[-1].strip().split(".")[0]
        for line in done.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert "workbench" in imported and not imported & {"torch", "pandas", "matplotlib", "numpy"}, imported & {
        "torch",
        "pandas",
    }
