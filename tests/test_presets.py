"""The speedrun preset: a RunConfig of ordinary options, per device, that the CLI starts from and flags
change; its ablation variants each take back one part; a shrunk one trains end to end."""

import json

import pytest

from workbench import ResultStore, preset, run
from workbench.cli import main
from workbench.presets import without_each_part
from workbench.report.ledger import ablation

pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_speedrun_is_made_of_general_parts_and_suits_the_device():
    cpu = preset("speedrun", device="cpu")
    assert (cpu.model.name, cpu.model.init, cpu.train.optimizer, cpu.evaluation.tta) == (
        "speedcnn",
        "whiten",
        "muon",
        "flip_translate",
    )
    assert cpu.data.augment.flip == "alternate" and cpu.data.augment.crop == 2 and cpu.train.label_smoothing > 0
    assert cpu.hardware.device == "cpu" and cpu.hardware.compile is False  # a compile costs minutes on a CPU
    from workbench import native_bf16

    assert (cpu.hardware.precision == "bf16") == native_bf16("cpu")  # emulated bf16 is several times slower


def test_each_ablation_variant_takes_back_exactly_one_part():
    cfg = preset("speedrun", device="cpu")
    variants = without_each_part(cfg)
    base = cfg.flat()
    changed = {
        part: {k for k, v in v_cfg.flat().items() if base[k] != v and k != "name"} for part, v_cfg in variants.items()
    }
    assert changed == {
        "muon": {"train.optimizer", "train.lr", "train.weight_decay"},
        "whitening init": {"model.init"},
        "alternating flip": {"data.augment.flip"},
        "label smoothing": {"train.label_smoothing"},
        "test-time augmentation": {"evaluation.tta"},
    }
    assert all(v.name == f"no {part}" for part, v in variants.items())
    assert "muon" not in without_each_part(variants["muon"])  # a part the config does not use is left out


def test_the_cli_starts_from_the_preset_and_flags_override_it(capsys):
    assert (
        main(["run", "--preset", "speedrun", "--device", "cpu", "--width", "0.25", "--epochs", "2", "--print-config"])
        == 0
    )
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["name"] == "speedrun" and cfg["model"]["name"] == "speedcnn" and cfg["model"]["width"] == 0.25
    assert cfg["train"]["epochs"] == 2 and cfg["train"]["optimizer"] == "muon"


def test_a_shrunk_speedrun_and_its_ablation_train_end_to_end(tmp_path):
    """Digits stand in for CIFAR-10 here (mirrored digits are wrong, so this checks the plumbing, not the recipe)."""
    cfg = preset("speedrun", device="cpu").replace(
        **{
            "data.dataset": "digits",
            "model.width": 0.125,
            "train.epochs": 2,
            "train.batch_size": 128,
            "hardware.threads": 1,
            "measure.batch_sizes": (8,),
            "measure.iters": 2,
        }
    )
    store = ResultStore(tmp_path)
    ours = run(cfg, store=store, progress=False)
    assert ours.metrics["tta_share"] == 1 and 0 <= ours.metrics["accuracy"] <= 1
    without = [run(v, store=store, progress=False) for v in without_each_part(cfg).values()]
    no_tta = next(r for r in without if r.config.name == "no test-time augmentation")
    assert no_tta.reused_from == ours.run_id and no_tta.metrics["accuracy"] == ours.metrics["accuracy_plain"]
    table = ablation([ours, *without])
    assert set(table["part"]) == set(without_each_part(cfg)) and (table["runs"] == 1).all()
    row = table.set_index("part").loc["test-time augmentation"]
    assert row["accuracy_bought"] == pytest.approx(100 * (ours.metrics["accuracy"] - ours.metrics["accuracy_plain"]))
    assert row["seconds_bought"] == 0  # the same training
