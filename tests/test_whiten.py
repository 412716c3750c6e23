"""Patch whitening as a model init: the first conv's filters decorrelate the training images' patches,
the pipeline sets them from the data before training, and a model it cannot set says so in one line."""

import subprocess
import sys

import pytest
import torch
from torch import nn

from workbench import ModelConfig, RunConfig, load_dataset
from workbench.data import eval_loader
from workbench.models import whiten_first_conv, whitening_filters
from workbench.pipeline import initial_model

pytestmark = pytest.mark.usefixtures("one_thread")


def _patches(x, k):
    return x.unfold(2, k, 1).unfold(3, k, 1).permute(0, 2, 3, 1, 4, 5).reshape(-1, x.shape[1] * k * k)


def test_the_filters_turn_real_patches_into_uncorrelated_unit_variance_features():
    digits = load_dataset("digits")
    x = next(iter(eval_loader(digits, RunConfig().data, split="train", batch_size=2000)))[0]
    for k in (2, 3):
        filters = whitening_filters(x, (k, k), eps=1e-6)
        assert filters.shape == (2 * k * k, 1, k, k) and torch.equal(filters[1::2], -filters[::2])
        features = _patches(x, k) @ filters[::2].reshape(k * k, -1).T
        covariance = features.T @ features / len(features)
        torch.testing.assert_close(covariance, torch.eye(k * k), atol=2e-3, rtol=0)
        raw = _patches(x, k).T @ _patches(x, k) / len(_patches(x, k))
        assert raw[0, 1] > 0.3  # neighbouring pixels of real digits are strongly correlated before


def test_a_conv_takes_as_many_filters_as_it_has_and_keeps_its_init_for_the_rest():
    x = torch.randn(200, 3, 8, 8)
    wide = nn.Sequential(nn.Conv2d(3, 30, 2), nn.ReLU())
    before = wide[0].weight.detach().clone()
    whiten_first_conv(wide, x)
    torch.testing.assert_close(wide[0].weight[:24], whitening_filters(x, (2, 2)))
    assert torch.equal(wide[0].weight[24:], before[24:]) and not wide[0].bias.any()
    narrow = nn.Sequential(nn.Conv2d(3, 6, 2))
    whiten_first_conv(narrow, x)
    torch.testing.assert_close(narrow[0].weight, whitening_filters(x, (2, 2))[:6])  # the three strongest, with signs
    for model, says in (
        (nn.Sequential(nn.Flatten(), nn.Linear(192, 2)), "no convolution"),
        (nn.Sequential(nn.Conv2d(3, 6, 3, groups=3)), "a grouped one first"),
    ):
        with pytest.raises(
            ValueError, match=f"model.init=whiten sets the first convolution, and Sequential has {says}"
        ):
            whiten_first_conv(model, x)


def test_the_pipeline_whitens_from_the_training_images_it_will_train_on():
    digits = load_dataset("digits")
    cfg = RunConfig(model=ModelConfig(name="speedcnn", width=0.25, init="whiten"))
    model = initial_model(cfg, digits)
    x = next(iter(eval_loader(digits, cfg.data, split="train", batch_size=5000)))[0]
    torch.testing.assert_close(model.stem[0].weight, whitening_filters(x, (2, 2)))
    plain = initial_model(cfg.replace(**{"model.init": "default"}), digits)
    assert not torch.equal(plain.stem[0].weight, model.stem[0].weight)
    assert cfg.training_hash() != cfg.replace(**{"model.init": "default"}).training_hash()


def test_whitening_a_model_without_a_first_conv_is_one_cli_line(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "workbench.cli",
            "run",
            "--model",
            "mlp",
            "--init",
            "whiten",
            "--epochs",
            "1",
            "--store",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        "workbench: error: model.init=whiten sets the first convolution, and MLP "
        "has no convolution: use model.init=default"
    )
