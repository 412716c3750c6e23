"""Starting processes with ``torchrun`` (PyTorch's own launcher) and turning a failed launch into one line.

``torchrun_command`` builds the command line, for one machine or several (``Placement``); ``launch``
runs it, echoes rank 0's output, and when any rank fails raises ``LaunchError`` with the first
failure's cause: each rank that raises writes its one-line error into the launch folder
(``WORKBENCH_LAUNCH_DIR``, see ``record_failure``), and a rank that died on a signal is named from
its exit code.

Example:
    >>> cmd = torchrun_command(["-m", "workbench.distributed", "--epochs", "2"], Placement(nproc_per_node=2))
    >>> cmd[1:4], cmd[-4:]
    (['-m', 'workbench.train.torchrun_loopback', '--standalone'], ['-m', 'workbench.distributed', '--epochs', '2'])
    >>> multi = Placement(nproc_per_node=4, nnodes=2, node_rank=1, rdzv_endpoint="10.0.0.1:29400")
    >>> print(" ".join(torchrun_command(["train.py"], multi)[3:]))  # doctest: +NORMALIZE_WHITESPACE
    --nnodes 2 --nproc-per-node 4 --node-rank 1 --rdzv-backend c10d --rdzv-endpoint 10.0.0.1:29400
    --rdzv-id workbench --max-restarts 0 train.py
"""

from __future__ import annotations

import collections
import os
import re
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .._errors import require

LAUNCH_DIR_ENV = "WORKBENCH_LAUNCH_DIR"  # where the ranks of one launch leave their errors and results
# torchrun's own chatter, which says nothing about the run: the OMP_NUM_THREADS banner and its frame.
_NOISE = re.compile(r"^\s*([WE]\d{4} .*torch/distributed/(run|elastic)|\*{20,})")


class LaunchError(RuntimeError):
    """A ``torchrun`` launch that did not finish: the message is the first failing rank's cause."""


@dataclass(frozen=True)
class Placement:
    """Where the processes of a launch run: how many per machine, how many machines, and how they meet.

    One machine (``nnodes=1``) uses torchrun's ``--standalone`` rendezvous on a free local port. For
    several machines run the same command on each, with its own ``node_rank`` and node 0's
    ``host:port`` as ``rdzv_endpoint`` (any free port; open it between the machines).
    """

    nproc_per_node: int = 2
    nnodes: int = 1
    node_rank: int = 0
    rdzv_endpoint: str = ""  # host:port of node 0; needed when nnodes > 1
    rdzv_id: str = "workbench"  # the job's name: the same on every machine of one launch

    def __post_init__(self):
        require(self.nproc_per_node >= 1, f"nproc per node must be >= 1 (got {self.nproc_per_node})")
        require(self.nnodes >= 1, f"nnodes must be >= 1 (got {self.nnodes})")
        require(
            0 <= self.node_rank < self.nnodes,
            f"node rank must be in [0, {self.nnodes}) for {self.nnodes} machines (got {self.node_rank})",
        )
        require(
            self.nnodes == 1 or re.fullmatch(r"[\w.\-\[\]:]+:\d+", self.rdzv_endpoint or ""),
            f"{self.nnodes} machines need rdzv_endpoint=HOST:PORT of node 0 (got '{self.rdzv_endpoint}'), "
            "e.g. --rdzv-endpoint 10.0.0.1:29400",
        )

    @property
    def world_size(self) -> int:
        return self.nproc_per_node * self.nnodes


def torchrun_command(target: Sequence[str], placement: Placement, *, python: str = sys.executable) -> list[str]:
    """The ``torchrun`` command line (as ``python -m torch.distributed.run``, so it is this environment's
    torch) that starts ``target`` (a script and its arguments, or ``["-m", module, ...]``) on every rank.
    On one machine it is ``workbench.train.torchrun_loopback``: torchrun with its stores on 127.0.0.1."""
    if placement.nnodes == 1:
        cmd = [
            python,
            "-m",
            "workbench.train.torchrun_loopback",
            "--standalone",
            "--nnodes",
            "1",
            "--nproc-per-node",
            str(placement.nproc_per_node),
        ]
    else:
        cmd = [
            python,
            "-m",
            "torch.distributed.run",
            "--nnodes",
            str(placement.nnodes),
            "--nproc-per-node",
            str(placement.nproc_per_node),
            "--node-rank",
            str(placement.node_rank),
            "--rdzv-backend",
            "c10d",
            "--rdzv-endpoint",
            placement.rdzv_endpoint,
            "--rdzv-id",
            placement.rdzv_id,
        ]
    # A failed rank ends the launch: restarting it would train the epoch again on the other ranks' time.
    return [*cmd, "--max-restarts", "0", *target]


def launch(
    target: Sequence[str],
    placement: Placement,
    *,
    threads_per_rank: int = 1,
    echo: bool = True,
    timeout: float | None = None,
    launch_dir: str | os.PathLike | None = None,
) -> Path:
    """Run ``target`` on every rank through ``torchrun`` and wait; returns the launch folder, where the
    ranks may have left files (rank 0's result, say). Raises ``LaunchError`` (one line: which rank, and
    why) when a rank fails or the launch runs past ``timeout`` seconds.

    Each rank gets ``threads_per_rank`` CPU threads (``OMP_NUM_THREADS``): ranks that share a machine
    share its cores, and more threads than cores makes every collective wait for the slowest.
    ``echo`` prints the ranks' output (progress lines) as it comes, torchrun's banner left out.
    """
    folder = Path(launch_dir or tempfile.mkdtemp(prefix="workbench-launch-"))
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("rank*.error"):
        stale.unlink()
    env = {**os.environ, LAUNCH_DIR_ENV: str(folder), "OMP_NUM_THREADS": str(threads_per_rank), "PYTHONUNBUFFERED": "1"}
    tail: collections.deque[str] = collections.deque(maxlen=60)
    echoing = echo
    process = subprocess.Popen(
        torchrun_command(target, placement),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    )
    try:
        for line in process.stdout:
            if _NOISE.match(line):
                continue
            tail.append(line.rstrip())
            # The ranks report their errors in one line; a traceback is torchrun's own, summed up by LaunchError.
            echoing = echoing and not line.startswith("Traceback (most recent call last)")
            if echoing:
                print(line, end="", flush=True)
        code = process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise LaunchError(f"torchrun ran past {timeout:.0f} s and was stopped") from None
    except BaseException:  # an interrupted notebook cell: take the ranks down with it
        process.kill()
        process.wait()
        raise
    if code != 0:
        raise LaunchError(failure_message(folder, code, list(tail), placement.world_size))
    return folder


def record_failure(error: BaseException) -> None:
    """In a rank: leave ``error`` as one line in the launch folder, for ``launch`` to report."""
    folder = os.environ.get(LAUNCH_DIR_ENV)
    if not folder:
        return
    text = " ".join(str(error).split()) or type(error).__name__
    rank = os.environ.get("RANK", "0")
    (Path(folder) / f"rank{rank}.error").write_text(f"{type(error).__name__}: {text}"[:2000])


def failure_message(folder: Path, code: int, tail: Sequence[str], world_size: int) -> str:
    """The one line a failed launch reports: the rank that started it, and why.

    A rank killed by a signal (other than the SIGTERM torchrun sends the survivors) started it: its
    peers then fail with a lost connection, sometimes before torchrun notices the death, so that
    comes first. Else the rank torchrun saw fail first ("Root Cause"), with its own one-line error if
    it left one; else the first error any rank left; else torchrun's last words.

    Example:
        >>> failure_message(Path("/nonexistent"), 1, ["Failures:", "  rank      : 0 (local_rank: 0)",
        ...                 "  exitcode  : 1 (pid: 5)", "Root Cause (first observed failure):",
        ...                 "  rank      : 1 (local_rank: 1)",
        ...                 "  exitcode  : -9 (pid: 5755)  (SIGKILL)"], 2)
        'rank 1 of 2 was killed by SIGKILL'
    """
    errors = {
        p.stem.removeprefix("rank"): p for p in sorted(folder.glob("rank*.error"), key=lambda p: p.stat().st_mtime)
    }
    text = "\n".join(tail)
    exits = re.findall(r"rank\s*:\s*(\d+).*?exitcode\s*:\s*(-?\d+)", text, re.S)
    signals = {s.value: s.name for s in signal.Signals}
    killed = next(
        ((r, -int(c)) for r, c in exits if int(c) < 0 and -int(c) in signals and -int(c) != signal.SIGTERM), None
    )
    if killed:
        return f"rank {killed[0]} of {world_size} was killed by {signals[killed[1]]}"
    root = re.search(r"Root Cause.*?rank\s*:\s*(\d+).*?exitcode\s*:\s*(-?\d+)", text, re.S)
    if root and root.group(1) in errors:
        return f"rank {root.group(1)} of {world_size} failed: {errors[root.group(1)].read_text().strip()}"
    if errors:
        rank, path = next(iter(errors.items()))
        return f"rank {rank} of {world_size} failed: {path.read_text().strip()}"
    if root:
        return f"rank {root.group(1)} of {world_size} exited with code {root.group(2)}"
    last = next((line for line in reversed(tail) if line.strip()), "no output")
    return f"torchrun exited with code {code}: {last.strip()[:300]}"
