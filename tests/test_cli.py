import json
import subprocess
import sys

import pytest

from workbench.cli import config_from_args, main


def _run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "workbench.cli", *args], capture_output=True, text=True, cwd=cwd)


def test_run_json(tmp_path, capsys):
    code = main(["run", "--dataset", "digits", "--model", "mlp", "--epochs", "1", "--optimizer", "adam", "--lr", "0.002",
                 "--schedule", "cosine", "--json", "--store", str(tmp_path / "runs")])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["config"]["model"]["name"] == "mlp" and out["config"]["train"]["optimizer"] == "adam"
    assert 0 < out["metrics"]["accuracy"] <= 1
    assert out["row"]["params"] > 0
    assert (tmp_path / "runs" / "results" / f"{out['run_id']}.json").exists()


def test_every_field_has_a_flag(capsys):
    code = main(["run", "--model", "resnet20", "--width", "0.5", "--depth", "2", "--no-batchnorm", "--batch-size", "32",
                 "--precision", "bf16", "--device", "cpu", "--augment", "crop=2,cutout", "--fraction", "0.5",
                 "--selection", "balanced", "--measure-batch-sizes", "1,8", "--warmup-epochs", "1", "--print-config"])
    assert code == 0
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["model"] == {"name": "resnet20", "width": 0.5, "depth": 2, "batchnorm": False, "dropout": 0.0}
    assert cfg["data"]["augment"]["crop"] == 2 and cfg["data"]["augment"]["cutout"] == 8
    assert cfg["measure"]["batch_sizes"] == [1, 8]
    assert cfg["train"]["batch_size"] == 32 and cfg["train"]["warmup_epochs"] == 1.0


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
    code = main(["run", "--model", "mlp", "--epochs", "1", "--augment", "flip", "--no-progress", "--store", str(tmp_path)])
    assert code == 0
    err = capsys.readouterr().err
    assert "workbench: note: flip mirrors digits" in err


def test_from_a_stored_run_reuses_its_training(tmp_path, capsys):
    store = str(tmp_path / "runs")
    assert main(["run", "--model", "mlp", "--width", "0.25", "--epochs", "1", "--json", "--store", store]) == 0
    first = json.loads(capsys.readouterr().out)
    assert main(["run", "--from", first["run_id"], "--compress", "prune_unstructured:amount=0.5", "--name", "sparse",
                 "--json", "--store", store]) == 0
    sparse = json.loads(capsys.readouterr().out)
    assert sparse["reused_from"] == first["run_id"] and sparse["config"]["model"]["width"] == 0.25
    assert sparse["metrics"]["nonzero_params"] < first["metrics"]["nonzero_params"]
    assert main(["run", "--from", first["run_id"], "--no-reuse", "--json", "--store", store]) == 0
    assert json.loads(capsys.readouterr().out)["reused_from"] is None
    assert main(["run", "--from", "nope", "--store", store]) == 2
    assert "No result 'nope'" in capsys.readouterr().err
    assert main(["results", "--store", store]) == 0
    assert "sparse" in capsys.readouterr().out
