"""Data-parallel runs through a real ``torchrun`` launch (gloo, 2 processes on this CPU): one row per
launch, agreement with one process, clean exits, a killed rank, FSDP's sharding, the launch lines."""

import contextlib
import signal
import subprocess
import sys
import threading
import time

import psutil
import pytest

import workbench as wb
from workbench import ConfigError, ResultStore
from workbench.distributed import LaunchError, Placement, launch, rank_table, torchrun_command
from workbench.train import available_cores

WORKBENCH = [sys.executable, "-m", "workbench.cli"]
QUICK_TIMING = [
    "--measure-batch-sizes",
    "1",
    "--measure-iters",
    "3",
    "--measure-warmup",
    "1",
    "--measure-modes",
    "eager",
]
# BatchNorm off and no dropout: the two ranks' averaged gradient is then the single-process batch's
# gradient, and the runs differ only where an epoch's last, partial batch splits unevenly (15 + 14).
EXACT_MLP = ["--model", "mlp", "--no-batchnorm", "--dropout", "0", "--epochs", "3", "--threads", "1", *QUICK_TIMING]
LOSS_TOLERANCE = 2e-3  # relative, per epoch
ACCURACY_POINTS = 1.0  # digits' test split is 360 images: one image is 0.28 points


def workbench_cli(*args, timeout=240):
    return subprocess.run([*WORKBENCH, *args], capture_output=True, text=True, timeout=timeout)


def test_two_processes_store_one_row_agree_with_one_process_and_exit_cleanly_five_times(tmp_path):
    store = tmp_path / "runs"
    single = wb.run(
        wb.RunConfig().replace(
            **{
                "model.name": "mlp",
                "model.batchnorm": False,
                "train.epochs": 3,
                "hardware.threads": 1,
                "measure.batch_sizes": (1,),
                "measure.iters": 3,
            }
        ),
        store=None,
        progress=False,
    )
    direct = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "workbench.distributed",
        *EXACT_MLP,
        "--store",
        str(store),
        "--no-reuse",
    ]
    for attempt in range(5):  # four through `workbench run --nproc 2`, the last through torchrun itself
        if attempt < 4:
            done = workbench_cli("run", *EXACT_MLP, "--nproc", "2", "--store", str(store), "--no-reuse")
        else:
            done = subprocess.run(direct, capture_output=True, text=True, timeout=240)
        assert done.returncode == 0, f"launch {attempt + 1}: {done.stderr[-2000:]}"
        assert "Traceback" not in done.stdout + done.stderr and "abort" not in (done.stdout + done.stderr).lower()
        assert len(ResultStore(store)) == attempt + 1  # exactly one row per launch
    rows = ResultStore(store).results()
    for row in rows:
        m = row.metrics
        assert (m["world_size"], m["backend"], row.config.parallel.nproc) == (2, "gloo", 2)
        assert len(m["rank_images_per_s"]) == 2 and all(v > 0 for v in m["rank_images_per_s"])
        assert m["train_ips"] == pytest.approx(sum(m["rank_images_per_s"]), rel=0.2)
        assert m["steps_per_epoch"] == single.metrics["steps_per_epoch"]  # the same global batch
        assert abs(m["accuracy"] - single.metrics["accuracy"]) * 100 <= ACCURACY_POINTS
        for mine, theirs in zip(row.history, single.history):
            assert mine["train_loss"] == pytest.approx(theirs["train_loss"], rel=LOSS_TOLERANCE)
    assert not list((store / "checkpoints").glob("in-progress-*.pt"))  # finished runs leave no partial checkpoint


def _rank_process(launcher: subprocess.Popen, rank: int) -> psutil.Process | None:
    for child in psutil.Process(launcher.pid).children(recursive=True):
        try:
            if child.environ().get("RANK") == str(rank) and "workbench.distributed" in " ".join(child.cmdline()):
                return child
        except psutil.Error:
            continue
    return None


def test_a_killed_rank_fails_the_launch_in_one_line_stores_nothing_and_the_same_command_resumes(tmp_path):
    store = tmp_path / "runs"
    command = [
        *WORKBENCH,
        "run",
        "--model",
        "cnn",
        "--epochs",
        "8",
        "--nproc",
        "2",
        "--store",
        str(store),
        "--no-progress",
        *QUICK_TIMING,
    ]
    launcher = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 180
    while not list((store / "checkpoints").glob("in-progress-*.pt")) and time.time() < deadline:
        assert launcher.poll() is None, launcher.communicate()[1][-2000:]
        time.sleep(0.2)
    victim = _rank_process(launcher, 1)
    assert victim is not None, "rank 1 not found"
    victim.send_signal(signal.SIGKILL)  # a real crash mid-run: no exception, no clean-up
    _out, err = launcher.communicate(timeout=120)
    assert launcher.returncode == 2
    lines = [line for line in err.splitlines() if line.startswith("workbench: error")]
    assert lines == [lines[-1]] and "rank 1 of 2 was killed by SIGKILL" in lines[0] and "resumes" in lines[0], err[
        -3000:
    ]
    assert len(ResultStore(store)) == 0  # no partial row
    assert list((store / "checkpoints").glob("in-progress-*.pt"))

    again = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    (row,) = ResultStore(store).results()
    assert row.metrics["resumed_epochs"] >= 1 and row.metrics["epochs_run"] == 8
    assert [h["epoch"] for h in row.history] == list(range(1, 9))


def test_fsdp_holds_half_the_parameters_in_each_of_two_processes(tmp_path):
    cfg = wb.RunConfig().replace(
        **{
            "model.name": "mlp",
            "train.epochs": 2,
            "parallel.nproc": 2,
            "parallel.strategy": "fsdp",
            "measure.batch_sizes": (1,),
            "measure.iters": 3,
        }
    )
    result = wb.run(cfg, store=tmp_path / "runs", progress=False)
    held, full = result.metrics["rank_parameter_bytes"], 4 * result.metrics["params"]
    # fully_shard splits every parameter along its first dimension; odd sizes pad the last shard a little.
    assert sum(held) >= full and all(0.45 * full <= h <= 0.55 * full for h in held), (held, full)
    assert result.metrics["accuracy"] > 0.7
    table = rank_table([result])
    assert table["strategy"].tolist() == ["fsdp", "fsdp"] and table["parameter_bytes"].tolist() == held
    # Rank 0 gathered the shards into an ordinary model: it loads and predicts like the stored accuracy says.
    model = wb.load_model(result, store=tmp_path / "runs")
    assert not any(hasattr(p, "to_local") for p in model.parameters())
    accuracy = wb.evaluator(cfg)(model)
    assert accuracy == pytest.approx(result.metrics["accuracy"], abs=1e-9)


def test_a_rank_that_raises_names_itself_and_its_error(tmp_path):
    script = tmp_path / "fail.py"
    script.write_text(
        "import os\nfrom workbench.train.launch import record_failure\n"
        "if os.environ['RANK'] == '1':\n    record_failure(ValueError('the shard is empty'))\n    raise SystemExit(1)\n"
    )
    with pytest.raises(LaunchError, match=r"^rank 1 of 2 failed: ValueError: the shard is empty$"):
        launch([str(script)], Placement(nproc_per_node=2), echo=False, launch_dir=tmp_path / "launch")


@pytest.mark.parametrize(
    "flags, problem",
    [
        (
            ["--batch-size", "63"],
            "train.batch_size=63 (the global batch) does not split evenly over 2 processes: "
            "use a multiple of 2, e.g. 62",
        ),
        (
            ["--compile", "auto"],
            "hardware.compile='auto' times one process alone: choose true or false for a data-parallel run",
        ),
        (
            ["--backend", "nccl"],
            "parallel.backend='nccl' moves CUDA tensors, and this run trains on the cpu: use gloo or auto",
        ),
        (["--parallel", "zero"], "parallel.strategy must be one of ddp, fsdp (got 'zero')"),
        (
            ["--parallel", "fsdp", "--optimizer", "muon"],
            "train.optimizer=muon needs whole weight matrices and FSDP shards them: use --parallel ddp",
        ),
    ],
)
def test_a_bad_parallel_config_stops_in_one_line_before_any_process_starts(tmp_path, flags, problem):
    done = workbench_cli(
        "run",
        "--model",
        "mlp",
        "--nproc",
        "2",
        "--device",
        "cpu",
        *flags,
        "--store",
        str(tmp_path / "runs"),
        timeout=60,
    )
    assert (done.returncode, done.stderr.strip().splitlines()[-1]) == (2, f"workbench: error: {problem}")
    assert not (tmp_path / "runs" / "checkpoints").exists() or not list((tmp_path / "runs" / "checkpoints").iterdir())


def test_far_more_ranks_than_cores_is_refused_before_any_process_starts(tmp_path):
    limit = 4 * available_cores()
    done = workbench_cli(
        "run",
        "--model",
        "mlp",
        "--nproc",
        str(limit + 1),
        "--batch-size",
        str(2 * (limit + 1)),
        "--store",
        str(tmp_path / "runs"),
        timeout=60,
    )
    assert done.returncode == 2 and f"use --nproc {limit} or fewer" in done.stderr.strip().splitlines()[-1]


def test_a_one_machine_launch_listens_on_loopback_only(tmp_path):
    """torchrun's own TCPStore servers bind every interface; the loopback launcher's bind 127.0.0.1."""
    script = tmp_path / "wait.py"
    script.write_text("import time\ntime.sleep(6)\n")
    seen, done = set(), threading.Event()

    def watch():
        me = psutil.Process()
        while not done.is_set():
            for child in me.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    seen.update(
                        (c.laddr.ip, child.pid) for c in child.net_connections("tcp") if c.status == psutil.CONN_LISTEN
                    )
            time.sleep(0.2)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        launch([str(script)], Placement(nproc_per_node=2), echo=False, launch_dir=tmp_path / "launch")
    finally:
        done.set()
        watcher.join()
    assert seen, "no listening socket seen during the launch: the check saw nothing"
    assert {ip for ip, _ in seen} == {"127.0.0.1"}, seen


def test_a_parallel_run_needs_a_store_to_hand_its_row_back():
    with pytest.raises(ConfigError, match="through a result store"):
        wb.run(wb.RunConfig().replace(**{"parallel.nproc": 2}), store=None)


def test_the_multi_node_launch_line(tmp_path):
    done = workbench_cli(
        "run",
        "--model",
        "cnn",
        "--epochs",
        "5",
        "--nproc",
        "4",
        "--nnodes",
        "2",
        "--node-rank",
        "1",
        "--rdzv-endpoint",
        "10.0.0.1:29400",
        "--print-launch",
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        "python -m torch.distributed.run --nnodes 2 --nproc-per-node 4 --node-rank 1 --rdzv-backend c10d "
        "--rdzv-endpoint 10.0.0.1:29400 --rdzv-id workbench --max-restarts 0 "
        "-m workbench.distributed --model cnn --epochs 5 --nproc 4 --nnodes 2"
    )
    assert torchrun_command(["x.py"], Placement(nproc_per_node=2))[2:6] == [
        "workbench.train.torchrun_loopback",
        "--standalone",
        "--nnodes",
        "1",
    ]
    missing = workbench_cli("run", "--nproc", "2", "--nnodes", "2", "--print-launch", timeout=60)
    assert missing.returncode == 2 and "need rdzv_endpoint=HOST:PORT of node 0" in missing.stderr
    with pytest.raises(ConfigError, match=r"node rank must be in \[0, 2\)"):
        Placement(nproc_per_node=1, nnodes=2, node_rank=2, rdzv_endpoint="h:1")
