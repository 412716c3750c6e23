import os
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

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


class Series(NamedTuple):
    """One smoke run of every notebook, as CI builds the site: ``out/<name>/`` holds each executed
    notebook and its ``metrics.json``; ``site`` the HTML."""

    done: subprocess.CompletedProcess
    out: Path
    site: Path


@pytest.fixture(scope="session")
def series(tmp_path_factory) -> Series:
    """Every notebook executed once, through the CLI, in learner mode with solutions checked (each
    exercise's reference solution and typical wrong answers judged in a copy of the namespace): the
    notebook tests and the site tests read this one run. A cell gets 180 s: the kernel client once
    waited out whole timeouts (workbench/_nbclient.py), and a tight one makes a relapse a failure."""
    root = tmp_path_factory.mktemp("series")
    out, site = root / "runs", root / "site"
    command = [sys.executable, "-m", "workbench.cli", "notebooks", "run", "--all", "--smoke", "--check-solutions"]
    command += ["--timeout", "180", "--html", str(site), "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    return Series(done, out, site)


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's loadgroup reads the groups
def pytest_collection_modifyitems(items):
    # The tests reading the series share one worker under pytest-xdist (make test: --dist loadgroup), so
    # the notebooks run once a suite; they are slow, and wait for the whole series.
    for item in items:
        if "series" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("notebooks"))
            item.add_marker(pytest.mark.slow)
            item.add_marker(pytest.mark.timeout(3600))
