"""Faults: nothing lost, nothing shared by accident. Damaged stores open, interrupted and concurrent runs
never collide, writes that fail leave nothing behind and say so in one line."""

import json
import os
import pickle
import re
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch

from workbench import MeasureConfig, ModelConfig, Result, ResultStore, RunConfig, TrainConfig, run
from workbench.report import DamagedRowWarning

REPO = Path(__file__).resolve().parent.parent
QUICK = MeasureConfig(batch_sizes=(1,), warmup=0, iters=1)


def _cfg(**changes):
    return RunConfig(model=ModelConfig(name="mlp", width=0.25), train=TrainConfig(epochs=2), measure=QUICK).replace(
        **changes
    )


def _cli(*args, cwd=REPO, timeout=600):
    return subprocess.run(
        [sys.executable, "-m", "workbench.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


def _in_process(args, capsys) -> subprocess.CompletedProcess:
    from workbench.cli import main

    try:
        code = main(args)
    except SystemExit as e:  # argparse's errors exit
        code = e.code
    out = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out.out, out.err)


def _one_error_line(p):
    """Exit code 2 and exactly one ``workbench: error:`` line; progress bars and notes may come before it."""
    lines = [ln for ln in p.stderr.replace("\r", "\n").splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("workbench: error: ")]
    bar = re.compile(r"\| *\d+/\d+ \[")  # a tqdm progress line: "| 4/17 [00:04<00:13, 1.01s/cell]"
    other = [ln for ln in lines if not ln.startswith(("workbench: note:", "workbench: error: ")) and not bar.search(ln)]
    assert p.returncode == 2 and len(errors) == 1 and not other, p.stderr[-2000:]
    assert "Traceback" not in p.stderr and "weights_only=False" not in p.stderr
    return errors[0]


# --- a damaged store still opens ------------------------------------------------------------------

DAMAGED = {
    "half-written": lambda good: good[: len(good) // 2],
    "empty object": lambda good: "{}",
    "unknown field": lambda good: json.dumps({**json.loads(good), "config": {"modle": {}}}),
    "binary": lambda good: "\x00\xff\xfe" * 10,
}


@pytest.mark.parametrize("damage", DAMAGED, ids=list(DAMAGED))
def test_a_damaged_row_is_skipped_with_one_warning_and_the_store_keeps_working(store, damage):
    good = Result(RunConfig(name="good"), {"accuracy": 0.9})
    store.append(good)
    bad = store.rows_dir / "20990101-000000-badbad.json"
    bad.write_bytes(DAMAGED[damage]((store.rows_dir / f"{good.run_id}.json").read_text()).encode("latin-1"))
    with pytest.warns(DamagedRowWarning) as caught:
        frame = store.frame()
    assert list(frame["name"]) == ["good"] and len(caught) == 1
    message = str(caught[0].message)
    assert bad.name in message and "Move it out" in message and "\n" not in message
    store.append(Result(RunConfig(name="after"), {"accuracy": 0.8}))  # appending goes on
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DamagedRowWarning)
        assert sorted(store.frame()["name"]) == ["after", "good"]
        from workbench.ui import Workbench

        Workbench(store=store)  # the panel opens on it too
    p = _cli("results", "--store", str(store.root))
    assert p.returncode == 0 and "good" in p.stdout
    assert p.stderr.strip().splitlines() == [f"workbench: warning: {message}"]


# --- in-progress checkpoints: resumed only when safe --------------------------------------------


def _in_progress(store, cfg):
    return store.root / "checkpoints" / f"in-progress-{cfg.training_hash()}.pt"


@pytest.mark.parametrize("content", ["garbage", "foreign"])
def test_an_unreadable_in_progress_checkpoint_is_set_aside_and_training_starts_fresh(store, content):
    cfg = _cfg()
    path = _in_progress(store, cfg)
    path.parent.mkdir(parents=True)
    if content == "garbage":
        path.write_bytes(b"174812789")
    else:  # another model's training state under this config's name
        net = torch.nn.Linear(3, 2)
        opt = torch.optim.SGD(net.parameters(), lr=0.1)
        torch.save(
            {
                "model": net.state_dict(),
                "optimizer": opt.state_dict(),
                "scheduler": {},
                "scaler": {},
                "epoch": 0,
                "step": 1,
                "history": [],
                "rng": torch.get_rng_state(),
                "cuda_rng": [],
            },
            path,
        )
    with pytest.warns(UserWarning, match="not a training checkpoint of this run.*set it aside") as caught:
        r = run(cfg, store=store, progress=False)
    assert len([w for w in caught if "set it aside" in str(w.message)]) == 1
    assert r.status == "ok" and r.metrics["resumed_epochs"] == 0 and [h["epoch"] for h in r.history] == [1, 2]
    assert list(path.parent.glob(f"{path.name}.unreadable-*")) and not path.exists()


def test_no_resume_trains_from_the_first_epoch(store, tmp_path):
    from workbench.train import Checkpoint, train

    cfg = _cfg(**{"train.epochs": 3})
    interrupted = _in_progress(store, cfg)

    class StopAfterOne(Checkpoint):
        def on_epoch_end(self, state, record):
            super().on_epoch_end(state, record)
            state.stop = "interrupted"

    from workbench import build_model, load_dataset, train_loader

    ds = load_dataset("digits")
    model = build_model(cfg.model, ds.num_classes, (1, 8, 8), seed=0)
    train(model, train_loader(ds, cfg.data, cfg.train.batch_size), cfg.train, callbacks=[StopAfterOne(interrupted)])
    assert interrupted.exists()
    fresh = _cli(
        "run",
        "--model",
        "mlp",
        "--width",
        "0.25",
        "--epochs",
        "3",
        "--measure-batch-sizes",
        "1",
        "--measure-iters",
        "1",
        "--no-resume",
        "--no-progress",
        "--json",
        "--store",
        str(store.root),
    )
    assert fresh.returncode == 0, fresh.stderr
    assert json.loads(fresh.stdout)["metrics"]["resumed_epochs"] == 0
    resumed = run(cfg, store=ResultStore(tmp_path / "other"), progress=False)  # a store without it: fresh too
    assert resumed.metrics["resumed_epochs"] == 0


def test_a_second_live_run_of_the_same_training_trains_on_its_own(store):
    from workbench._files import try_lock

    cfg = _cfg()
    shared = _in_progress(store, cfg)
    shared.parent.mkdir(parents=True)
    with try_lock(shared.with_suffix(".lock")) as held:  # as another live process running the same settings would
        assert held
        shared.write_bytes(b"being written by the other run")
        with pytest.warns(UserWarning, match="another live run is training the same settings"):
            r = run(cfg, store=store, progress=False)
        assert r.metrics["resumed_epochs"] == 0 and r.status == "ok"
        assert shared.read_bytes() == b"being written by the other run"  # neither resumed from nor written
        assert not list(shared.parent.glob(f"{shared.stem}-*.pt"))  # its private checkpoint is gone


@pytest.mark.slow
def test_two_processes_with_a_kill_between_store_every_finished_run_once(tmp_path):
    store = tmp_path / "runs"
    args = [
        "run",
        "--model",
        "cnn",
        "--width",
        "0.25",
        "--epochs",
        "40",
        "--measure-batch-sizes",
        "1",
        "--measure-iters",
        "1",
        "--no-progress",
        "--store",
        str(store),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen(
        [sys.executable, "-m", "workbench.cli", *args, "--name", "first"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    checkpoints = store / "checkpoints"
    deadline = time.time() + 300
    while not list(checkpoints.glob("in-progress-*.pt")) and time.time() < deadline:
        time.sleep(0.2)  # the first process has finished an epoch
    second = subprocess.Popen(
        [sys.executable, "-m", "workbench.cli", *args, "--name", "second"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    while not list(checkpoints.glob("in-progress-*-*.pt")) and time.time() < deadline:
        time.sleep(0.2)  # the second, finding the first alive, has finished an epoch into its own checkpoint
    assert first.poll() is None, "the first run ended before the second started: raise --epochs"
    first.send_signal(signal.SIGKILL)
    first.wait()
    first.stdout.close(), first.stderr.close()
    _out, err = second.communicate(timeout=600)
    assert second.returncode == 0, err[-2000:]
    assert "another live run is training the same settings" in err
    again = _cli("run", *args[1:], "--name", "first again", "--no-reuse")
    assert again.returncode == 0, again.stderr[-2000:]
    rows = [json.loads(p.read_text()) for p in (store / "results").glob("*.json")]  # every row parses
    assert sorted(r["config"]["name"] for r in rows) == ["first again", "second"]
    by_name = {r["config"]["name"]: r for r in rows}
    assert by_name["second"]["metrics"]["resumed_epochs"] == 0  # never resumed from the live first run
    assert by_name["first again"]["metrics"]["resumed_epochs"] >= 1  # picked up where the killed run stopped
    assert all(h["epoch"] == i + 1 for r in rows for i, h in enumerate(r["history"]))
    assert not list(checkpoints.glob("in-progress-*.pt")) and not list(store.rglob("*.tmp"))


# --- unwritable stores fail first, in one line ------------------------------------------------------


def _mount_tmpfs(path: Path, options: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip(f"needs a small tmpfs to fill (mount: {p.stderr.strip()[:80]})")


@pytest.fixture
def tiny_disk(tmp_path):
    disk = tmp_path / "tiny"
    _mount_tmpfs(disk, "size=96k")
    yield disk
    subprocess.run(["umount", str(disk)], check=False)


def test_a_full_disk_is_one_line_and_leaves_no_temporary_file(tiny_disk):
    p = _cli("run", "--model", "mlp", "--epochs", "1", "--no-progress", "--store", str(tiny_disk / "runs"))
    line = _one_error_line(p)
    assert "cannot write to" in line and "No space left on device" in line
    assert not list(tiny_disk.rglob("*.tmp")) and not list(tiny_disk.rglob("results/*.json"))


def test_a_read_only_store_fails_before_training(tmp_path):
    disk = tmp_path / "ro"
    _mount_tmpfs(disk, "size=1m,ro")
    try:
        started = time.time()
        line = _one_error_line(_cli("run", "--model", "resnet20", "--epochs", "30", "--store", str(disk / "runs")))
        assert "cannot write to" in line and "Read-only file system" in line
        assert time.time() - started < 60  # thirty epochs of resnet20 did not run first
    finally:
        subprocess.run(["umount", str(disk)], check=False)


# --- paths, batch sizes --------------------------------------------------------------------------


def test_a_store_finds_its_checkpoints_from_any_working_directory_and_after_a_move(tmp_path):
    here, elsewhere = tmp_path / "here", tmp_path / "elsewhere"
    here.mkdir(), elsewhere.mkdir()
    teacher = _cli(
        "run",
        "--model",
        "mlp",
        "--width",
        "0.25",
        "--epochs",
        "1",
        "--measure-iters",
        "1",
        "--no-progress",
        "--json",
        "--store",
        "runs",
        cwd=here,
    )
    assert teacher.returncode == 0, teacher.stderr
    run_id = json.loads(teacher.stdout)["run_id"]
    stored = json.loads((here / "runs" / "results" / f"{run_id}.json").read_text())
    assert stored["checkpoint"] == f"checkpoints/{run_id}.pt"  # relative to the store
    moved = elsewhere / "moved-runs"
    (here / "runs").rename(moved)
    student = _cli(
        "run",
        "--model",
        "mlp",
        "--width",
        "0.125",
        "--epochs",
        "1",
        "--measure-iters",
        "1",
        "--no-progress",
        "--distill-teacher",
        run_id,
        "--store",
        str(moved),
        cwd=tmp_path,
    )
    assert student.returncode == 0, student.stderr


def test_a_final_batch_of_one_is_merged_and_said(tmp_path):
    r = run(_cfg(**{"train.batch_size": 4, "train.epochs": 1}), store=None, progress=False)  # 1,437 = 359 * 4 + 1
    assert r.status == "ok" and "merged" in r.history[0]["note"]


def test_files_are_written_with_one_mode(store):
    r = run(_cfg(**{"train.epochs": 1}), store=store, progress=False)
    modes = {oct(p.stat().st_mode & 0o777) for p in [store.rows_dir / f"{r.run_id}.json", Path(r.checkpoint)]}
    umask = os.umask(0)
    os.umask(umask)
    assert modes == {oct(0o666 & ~umask)}


# --- bad input: one line, before any work -------------------------------------------------------------


def _files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


def _evil_pickle(path: Path) -> Path:
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > /tmp/workbench-pwned",))

    path.write_bytes(pickle.dumps(Evil()))
    return path


BAD_RUNS = {
    "compress amount not a number": (["--compress", "prune_structured:amount=abc"], "StructuredPrune.amount"),
    "compress amount nan": (["--compress", "prune_structured:amount=nan"], "StructuredPrune.amount"),
    "compress unclosed list": (["--compress", "prune_structured:ignore=[conv1"], "unclosed"),
    "recipe with a step's field": (
        ["--compress", "recommended:steps=2"],
        "the recommended recipe takes amount=FRACTION only",
    ),
    "recipe amount out of range": (["--compress", "recommended:amount=1.5"], "StructuredPrune.amount"),
    "config width wide": ({"model": {"width": "wide"}}, "model.width must be a finite number"),
    "config a list": ([1, 2], "A RunConfig is a JSON object"),
    "config epochs 2.5": ({"train": {"epochs": 2.5}}, "train.epochs must be a whole number"),
    "config batch sizes a string": ({"measure": {"batch_sizes": "64"}}, "measure.batch_sizes must be a list"),
    "config model a name": ({"model": "cnn"}, "model must be a ModelConfig"),
    "config not json": ("not json at all", "is not a RunConfig JSON file"),
    "config missing": (None, "cannot read it"),
    "lr inf": (["--lr", "inf"], "train.lr must be a finite number"),
    "huge seed": (["--seed", str(10**20)], "train.seed must be in"),
    "augment crop abc": (["--augment", "crop=abc"], "augment.crop must be a number"),
    "teacher pickle": ("evil", "not a Workbench checkpoint"),
    "teacher junk": ("junk", "not a Workbench checkpoint"),
    "teacher unknown run": (
        ["--distill-teacher", "20990101-000000-nosuch"],
        "neither a checkpoint file nor a stored run",
    ),
    "measure device tpu": (["--measure-device", "tpu"], "Unknown device 'tpu'"),
    "measure device cuda": (["--measure-device", "cuda"], "CUDA was asked for"),
    "store in /proc": (["--store", "/proc/workbench-forbidden"], "cannot write to /proc/workbench-forbidden"),
    "batch size over the data": (
        ["--batch-size", "5000"],
        "train.batch_size=5000 is more than the 1,437 training examples",
    ),
    "fraction too small for batchnorm": (["--fraction", "0.0001", "--batch-size", "1"], "too few for BatchNorm"),
    "from an unknown run": (["--from", "nope"], "No result 'nope'"),
    "an empty store": (["--store", ""], "store is empty"),
    "batch size not a number": (["--batch-size", "abc"], "argument --batch-size: invalid int value: 'abc'"),
    "batch sizes not numbers": (["--measure-batch-sizes", "a,b"], "invalid comma-separated int value: 'a,b'"),
    "a flag without its value": (["--name"], "argument --name: expected one argument"),
    "a step field given twice": (["--compress", "finetune:epochs=1,epochs=2"], "'epochs' is given twice"),
    "a missing image folder": (["--dataset", "folder:/nonexistent/images.zip"], "does not exist"),
}


@pytest.mark.parametrize("case", BAD_RUNS, ids=list(BAD_RUNS))
def test_bad_run_input_is_one_line_before_any_work(tmp_path, case, capsys):
    spec, needle = BAD_RUNS[case]
    if "cuda" in case and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    store = tmp_path / "runs"
    args = ["run", "--epochs", "50", "--model", "resnet20"]  # work that would take minutes if it started
    if (isinstance(spec, list) and case.startswith("config")) or isinstance(spec, dict):
        (tmp_path / "c.json").write_text(json.dumps(spec))
        args += ["--config", str(tmp_path / "c.json")]
    elif spec == "not json at all":
        (tmp_path / "c.pt").write_text(spec)
        args += ["--config", str(tmp_path / "c.pt")]
    elif spec is None:
        args += ["--config", str(tmp_path / "missing.json")]
    elif spec == "evil":
        args += ["--distill-teacher", str(_evil_pickle(tmp_path / "evil.pt"))]
    elif spec == "junk":
        (tmp_path / "junk.pt").write_bytes(os.urandom(256))
        args += ["--distill-teacher", str(tmp_path / "junk.pt")]
    else:
        args += spec
    if "--store" not in args:
        args += ["--store", str(store)]
    started = time.time()
    line = _one_error_line(_in_process(args, capsys))  # the CLI's own entry point, without a process start each
    assert needle in line, line
    assert time.time() - started < 60
    assert not _files(store), _files(store)  # nothing written
    assert not Path("/tmp/workbench-pwned").exists()


BAD_OTHERS = {
    "tour epochs 0": (["tour", "--epochs", "0"], "tour epochs must be a whole number >= 1"),
    "notebook parameter type": (["notebooks", "run", "01", "-p", "batch_sizes", '"abc"'], "batch_sizes must be a list"),
    "notebook parameter value": (["notebooks", "run", "01", "-p", "iters", "-3"], "measure.iters must be > 0 (got -3)"),
    "notebook unknown": (["notebooks", "run", "99"], "No notebook matches '99'"),
    "notebook parameter unknown": (["notebooks", "run", "01", "-p", "epoch", "3"], "has no parameter(s) epoch"),
}


@pytest.mark.parametrize("case", BAD_OTHERS, ids=list(BAD_OTHERS))
def test_bad_input_to_the_other_commands_is_one_line(tmp_path, case):
    args, needle = BAD_OTHERS[case]
    args = [*args, "--out", str(tmp_path / "out")]
    started = time.time()
    assert needle in _one_error_line(_cli(*args))
    if case == "notebook parameter value":  # a range only the notebook's own config knows: its first code cell stops it
        assert time.time() - started < 120
        return
    assert not _files(tmp_path / "out")


API_CASES = {
    "ModelConfig(width='wide')": ("model.width", lambda w: w.ModelConfig(width="wide")),
    "TrainConfig(lr='0.1')": ("train.lr", lambda w: w.TrainConfig(lr="0.1")),
    "DataConfig(fraction='0.5')": ("data.fraction", lambda w: w.DataConfig(fraction="0.5")),
    "ModelConfig(depth=2.5)": ("model.depth", lambda w: w.ModelConfig(depth=2.5)),
    "ModelConfig(batchnorm='no')": ("model.batchnorm", lambda w: w.ModelConfig(batchnorm="no")),
    "AugmentConfig(flip='yes')": ("augment.flip", lambda w: w.AugmentConfig(flip="yes")),
    "AugmentConfig(crop=2.5)": ("augment.crop", lambda w: w.AugmentConfig(crop=2.5)),
    "DistillConfig(teacher=123)": ("distill.teacher", lambda w: w.DistillConfig(teacher=123)),
    "RunConfig(model='cnn')": ("model must be a ModelConfig", lambda w: w.RunConfig(model="cnn")),
    "HardwareConfig(device=None)": ("hardware.device", lambda w: w.HardwareConfig(device=None)),
    "MeasureConfig(batch_sizes='64')": ("measure.batch_sizes", lambda w: w.MeasureConfig(batch_sizes="64")),
    "TrainConfig(lr=inf)": ("train.lr", lambda w: w.TrainConfig(lr=float("inf"))),
    "TrainConfig(seed=10**20)": ("train.seed", lambda w: w.TrainConfig(seed=10**20)),
    "TrainConfig(epochs=True)": ("train.epochs", lambda w: w.TrainConfig(epochs=True)),
    "StructuredPrune(ignore=[1])": ("StructuredPrune.ignore", lambda w: w.StructuredPrune(ignore=[1])),
    "QAT(convert='no')": ("QAT.convert", lambda w: w.QAT(convert="no")),
    "RunConfig(compress=['prune'])": ("compress", lambda w: w.RunConfig(compress=["prune"])),
}


@pytest.mark.parametrize("case", API_CASES, ids=list(API_CASES))
def test_every_config_field_checks_its_type(case):
    import workbench

    field, build = API_CASES[case]
    with pytest.raises(workbench.ConfigError) as e:
        build(workbench)
    assert field in str(e.value) and "\n" not in str(e.value)
