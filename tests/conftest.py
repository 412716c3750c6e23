import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _quiet_threads():
    # Two cores are shared by the whole suite; more threads only add contention.
    torch.set_num_threads(2)
    yield


@pytest.fixture
def store(tmp_path):
    from workbench import ResultStore

    return ResultStore(tmp_path / "runs")


def cifar_zip() -> Path | None:
    from workbench.data import cifar10_zip_path

    return cifar10_zip_path()
