"""The real CIFAR-10 images from the shared JPEG zip (``WORKBENCH_CIFAR10_ZIP``): decode once, then cached.

The decoded tensors are cached under the repository's ``data/cache`` (not tmp_path), so only the
first run of this file pays the decode (about 6-10 s on 2 cores); later runs read the cache.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

from workbench.data import cifar10_zip_path, load_dataset

pytestmark = [pytest.mark.cifar, pytest.mark.slow]

ZIP = cifar10_zip_path()
if ZIP is None:
    pytest.skip(
        "CIFAR-10 zip not found: set WORKBENCH_CIFAR10_ZIP (default ../shared/data/cifar10-jpeg.zip)",
        allow_module_level=True,
    )
ROOT = Path(__file__).resolve().parents[1] / "data"
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@pytest.fixture(scope="module")
def cifar():
    return load_dataset(f"folder:{ZIP}", root=ROOT)


def test_cifar_zip_contents(cifar):
    assert cifar.classes == CLASSES
    assert cifar.train_x.shape == (50_000, 3, 32, 32) and cifar.test_x.shape == (10_000, 3, 32, 32)
    assert cifar.train_x.dtype == torch.uint8 and cifar.train_y.dtype == torch.int64
    assert cifar.train_y.bincount().tolist() == [5000] * 10
    assert cifar.test_y.bincount().tolist() == [1000] * 10
    assert cifar.image_size == 32 and cifar.in_channels == 3
    # Published CIFAR-10 channel means are about (0.49, 0.48, 0.45); JPEG moves them a little.
    assert torch.allclose(cifar.mean, torch.tensor([0.491, 0.482, 0.447]), atol=0.01)


def test_second_load_comes_from_the_cache(cifar):
    start = time.perf_counter()
    again = load_dataset(f"folder:{ZIP}", root=ROOT)
    seconds = time.perf_counter() - start
    assert seconds < 1.0, f"cached load took {seconds:.2f} s"
    assert torch.equal(again.train_x, cifar.train_x) and torch.equal(again.test_y, cifar.test_y)


def test_small_model_beats_chance_on_a_short_budget(cifar, tmp_path):
    """A real training run through the pipeline: 10% of CIFAR-10 (class-balanced), two epochs of a
    half-width CNN, evaluated on all 10,000 test images. Chance is 10%."""
    from workbench import DataConfig, MeasureConfig, ModelConfig, RunConfig, TrainConfig, run

    cfg = RunConfig(
        data=DataConfig(dataset=f"folder:{ZIP}", fraction=0.1, selection="balanced"),
        model=ModelConfig(name="cnn", width=0.5),
        train=TrainConfig(epochs=2, batch_size=128, optimizer="adam", lr=2e-3, weight_decay=0.0),
        measure=MeasureConfig(batch_sizes=(1, 64), iters=5),
    )
    result = run(cfg, store=tmp_path, progress=False, data_root=ROOT)
    assert result.metrics["train_examples"] == 5000
    assert result.metrics["accuracy"] > 0.30, result.metrics["accuracy"]
