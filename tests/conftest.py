import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
# Threads per test: the cores shared among pytest-xdist's workers (make test runs two on two cores);
# a thread more than a core only adds contention.
THREADS = max(1, (os.cpu_count() or 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))


@pytest.fixture(autouse=True)
def _quiet_threads():
    torch.set_num_threads(min(2, THREADS))
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
