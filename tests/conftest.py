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
def one_thread():
    """For files of tiny models: on a shared, busy machine a second OpenMP thread mostly spins and waits."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def store(tmp_path):
    from workbench import ResultStore

    return ResultStore(tmp_path / "runs")


def cifar_zip() -> Path | None:
    from workbench.data import cifar10_zip_path

    return cifar10_zip_path()
