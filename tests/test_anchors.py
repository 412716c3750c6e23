"""The race harness for the reference scripts (benchmarks/_anchors.py): the data files their loaders read,
the torchvision stand-in and the scripts themselves importing unchanged. The race itself needs CUDA."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from benchmarks._anchors import SCRIPTS, _Normalize, load_script, torchvision_or_stand_in, write_reference_data
from workbench.data import Dataset

ANCHORS = Path(__file__).resolve().parents[2] / "shared" / "anchors"


@pytest.fixture(scope="module")
def toy() -> Dataset:
    g = torch.Generator().manual_seed(0)
    train_y = torch.arange(10).repeat_interleave(12)  # class by class, as the zip stores it
    return Dataset(
        "toy",
        torch.randint(0, 256, (120, 3, 32, 32), dtype=torch.uint8, generator=g),
        train_y,
        torch.randint(0, 256, (20, 3, 32, 32), dtype=torch.uint8, generator=g),
        torch.arange(10).repeat(2),
        [f"class{i}" for i in range(10)],
    )


def test_reference_data_files_hold_what_the_reference_loaders_read(toy, tmp_path):
    folder = write_reference_data(toy, tmp_path)
    assert folder == tmp_path / "cifar10"
    train = torch.load(folder / "train.pt", weights_only=True)
    test = torch.load(folder / "test.pt", weights_only=True)
    assert train["images"].shape == (120, 32, 32, 3) and train["images"].dtype == torch.uint8
    assert train["labels"].dtype == torch.int64 and train["classes"] == toy.classes
    # Shuffled once, images still with their own labels; the test split in its order.
    assert not torch.equal(train["labels"], toy.train_y) and sorted(train["labels"].tolist()) == sorted(
        toy.train_y.tolist()
    )
    first = train["images"][0].permute(2, 0, 1)
    match = [i for i in range(120) if torch.equal(toy.train_x[i], first)]
    assert match and toy.train_y[match[0]] == train["labels"][0]
    assert torch.equal(test["images"], toy.test_x.permute(0, 2, 3, 1)) and torch.equal(test["labels"], toy.test_y)
    again = torch.load(write_reference_data(toy, tmp_path / "again") / "train.pt", weights_only=True)
    assert torch.equal(again["labels"], train["labels"])  # the same seed, the same order


def test_the_normalize_stand_in_computes_per_channel_standardisation():
    x = torch.rand(4, 3, 8, 8)
    mean, std = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
    expected = torch.stack([(x[:, c] - mean[c]) / std[c] for c in range(3)], 1)
    assert torch.allclose(_Normalize(mean, std)(x), expected, atol=1e-6)


@pytest.mark.skipif(
    not all((ANCHORS / f"{n}.py").is_file() for n in SCRIPTS), reason="../shared/anchors holds no reference scripts"
)
@pytest.mark.parametrize("name", SCRIPTS)
def test_each_reference_script_imports_unchanged_and_its_net_reads_our_files(name, toy, tmp_path, monkeypatch):
    for module_name in ("torchvision", "torchvision.transforms"):  # whatever it imports here leaves with the test
        monkeypatch.setitem(sys.modules, module_name, None)
        del sys.modules[module_name]
    torchvision_or_stand_in()
    module = load_script(ANCHORS, name)
    assert callable(module.main) and callable(module.CifarLoader)
    data = torch.load(write_reference_data(toy, tmp_path) / "train.pt", weights_only=True)
    # As its loader prepares them (there on the GPU in half precision): 0-1 floats, channels first, normalised.
    images = module.T.Normalize(module.CIFAR_MEAN, module.CIFAR_STD)(data["images"].float().permute(0, 3, 1, 2) / 255)
    net = module.CifarNet().float()
    net.init_whiten(images[:100])
    assert net(images[:8]).shape == (8, 10)


def test_load_script_names_the_folder_to_use(tmp_path):
    with pytest.raises(FileNotFoundError, match="point --race at the folder holding airbench94_muon"):
        load_script(tmp_path, "airbench94_muon")
