"""Several `workbench search worker` processes on one study, as the CLI runs them: two workers on a
real PostgreSQL server (as two machines would, each with its own result store), two on one machine
sharing a journal file or an SQLite file, and optuna-dashboard reading a study as it is.

Each check holds the study to what workbench.search promises: the budget counts finished and running
trials and a worker checks it before it asks, so W workers finish at most W - 1 trials past it; every
trial number once; every complete trial's run id in exactly one row of one store, the row pointing
back at the trial; no row left over; the same best trials from Optuna and from either store.
"""

import contextlib
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna", reason="needs Optuna: pip install 'workbench[search]'")

from workbench import ResultStore  # noqa: E402

BIN = Path(sys.executable).parent
WORKBENCH = str(BIN / "workbench")
# Tiny trials (a few seconds each): the MLP on the embedded digits, one epoch, three timing iterations.
RUN_FLAGS = ["--model", "mlp", "--epochs", "1", "--measure-iters", "3", "--threads", "1"]
SPACE = {"model.width": {"float": [0.25, 1.0]}, "train.lr": {"float": [0.01, 0.3], "log": True}}
OBJECTIVES = "accuracy,size_bytes"
BUDGET = 6
WORKERS = 2

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _workbench(*args: str, cwd: Path, timeout: float = 120) -> str:
    done = subprocess.run([WORKBENCH, *args], cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"workbench {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}"
    return done.stdout


def _create_study(tmp: Path, name: str, storage: str) -> None:
    """`workbench search run --timeout 0`: the study, its settings and the enqueued baseline, no trial run."""
    space = tmp / "space.json"
    space.write_text(json.dumps(SPACE))
    _workbench(
        "search",
        "run",
        *RUN_FLAGS,
        "--space",
        str(space),
        "--strategy",
        "random",
        "--trials",
        str(BUDGET),
        "--study",
        name,
        "--storage",
        storage,
        "--objectives",
        OBJECTIVES,
        "--timeout",
        "0",
        "--store",
        str(tmp / "creator"),
        "--no-progress",
        cwd=tmp,
    )


def _run_workers(tmp: Path, name: str, storage: str) -> dict[int, Path]:
    """WORKERS workers started at once, each with its own store; waits for all. Returns pid -> store."""
    stores = {}
    procs = []
    for k in range(WORKERS):
        store = tmp / f"machine-{k}" / "runs"
        p = subprocess.Popen(
            [
                WORKBENCH,
                "search",
                "worker",
                "--study",
                name,
                "--storage",
                storage,
                "--store",
                str(store),
                "--no-progress",
            ],
            cwd=tmp,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        stores[p.pid] = store
        procs.append(p)
    outputs = []
    try:
        for p in procs:
            outputs.append(p.communicate(timeout=200))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, (_out, err) in zip(procs, outputs):
        assert p.returncode == 0, f"worker {p.pid} failed ({p.returncode}):\n{err[-3000:]}"
        assert "database is locked" not in err, err[-3000:]
    return stores


def _check_study(study, name: str, stores: dict[int, Path], storage: str, tmp: Path) -> None:
    S = optuna.trial.TrialState
    trials = study.get_trials(deepcopy=False)
    states = Counter(t.state.name for t in trials)
    errors = {t.number: t.user_attrs.get("error") for t in trials if t.state != S.COMPLETE}
    print(
        f"\n{name}: {len(trials)} trials for a budget of {BUDGET} ({dict(states)}); by worker: "
        f"{dict(Counter(t.user_attrs.get('worker') for t in trials))}"
    )

    # Every trial finished and complete, numbered once each from 0; the budget overshot by at most W - 1.
    assert set(states) == {"COMPLETE"}, errors
    assert sorted(t.number for t in trials) == list(range(len(trials)))
    assert BUDGET <= len(trials) <= BUDGET + WORKERS - 1, len(trials)
    assert [t.number for t in trials if t.user_attrs.get("baseline")] == [0]

    # Each trial ran in one of the workers, and both workers took part.
    host = socket.gethostname()
    ran_in = {t.number: int(t.user_attrs["worker"].rpartition(":")[2]) for t in trials}
    assert all(t.user_attrs["worker"].startswith(f"{host}:") for t in trials)
    assert set(ran_in.values()) == set(stores), (ran_in, list(stores))

    # Each trial's run id is one row in its own worker's store, pointing back at the trial; no other rows.
    rows: dict[str, list[tuple[int, object]]] = {}
    for pid, store in stores.items():
        for r in ResultStore(store).results():
            rows.setdefault(r.run_id, []).append((pid, r))
    run_ids = [t.user_attrs.get("run_id") for t in trials]
    assert len(set(run_ids)) == len(run_ids) and None not in run_ids, run_ids
    for t in trials:
        found = rows.get(t.user_attrs["run_id"], [])
        assert len(found) == 1, (t.number, found)
        pid, row = found[0]
        assert pid == ran_in[t.number]
        assert (row.tags.get("search_study"), row.tags.get("search_trial")) == (name, t.number), row.tags
        assert t.values == [row.metrics["accuracy"], row.metrics["size_bytes"]]
    assert sorted(rows) == sorted(run_ids), "rows no trial points at"

    # The front: Optuna's best trials, and `workbench search show` from either store, name the same trials.
    best = sorted(t.number for t in study.best_trials)
    fronts = [
        json.loads(
            _workbench("search", "show", name, "--storage", storage, "--store", str(store), "--format", "json", cwd=tmp)
        )
        for store in stores.values()
    ]
    for front in fronts:
        assert sorted(r["trial"] for r in front) == best
    # Every column alike, the noisy-latency note too: each trial carries the numbers its row's table shows.
    assert all(front == fronts[0] for front in fronts), fronts


# ---------------------------------------------------------------------------------------------
# A real PostgreSQL server


def _postgres_bin() -> Path | None:
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0
    )
    if found:
        return found[-1].parent
    pg_ctl = shutil.which("pg_ctl")
    return Path(pg_ctl).parent if pg_ctl else None


@contextlib.contextmanager
def _postgres_server():
    """A throwaway PostgreSQL server on 127.0.0.1 (trust auth); yields (port, log). As root it runs as the
    `postgres` user, since PostgreSQL refuses to run as root."""
    bindir = _postgres_bin()
    if bindir is None or not (bindir / "initdb").exists():
        pytest.skip("PostgreSQL not found (no initdb/pg_ctl): `make postgres-deps` installs Debian's postgresql")
    as_user: list[str] = []
    owner = None
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no `postgres` user to run PostgreSQL as")
        if not shutil.which("runuser"):
            pytest.skip("running as root and there is no runuser to run PostgreSQL as `postgres`")
        as_user = ["runuser", "-u", "postgres", "--"]
    root = Path(tempfile.mkdtemp(prefix="workbench-pg-"))
    if owner is not None:
        os.chown(root, owner.pw_uid, owner.pw_gid)
    data, log, port = root / "data", root / "server.log", _free_port()

    def pg(*cmd: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([*as_user, *cmd], capture_output=True, text=True, timeout=timeout, cwd=root)

    started = False
    try:
        init = pg(
            str(bindir / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        )
        if init.returncode != 0:
            pytest.skip(f"PostgreSQL's initdb failed: {(init.stderr or init.stdout).strip()[-500:]}")
        options = (
            f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={root} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off"
        )
        start = pg(
            str(bindir / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(log),
            "-o",
            options,
            "-w",
            "-t",
            "60",
            "start",
            timeout=90,
        )
        started = start.returncode == 0
        if not started:
            tail = log.read_text()[-800:] if log.exists() else start.stderr
            pytest.skip(f"PostgreSQL did not start on 127.0.0.1:{port}: {tail.strip()}")
        yield port, log
    finally:
        if started:
            pg(str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres():
    """A database on a fresh local PostgreSQL server; yields its SQLAlchemy URL (psycopg 3)."""
    psycopg = pytest.importorskip("psycopg", reason="needs psycopg: pip install 'workbench[search]'")
    with _postgres_server() as (port, _log):
        with psycopg.connect(f"host=127.0.0.1 port={port} user=postgres dbname=postgres", autocommit=True) as conn:
            conn.execute("CREATE DATABASE workbench_search")
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/workbench_search"


def test_two_workers_share_a_study_in_postgresql(postgres, tmp_path):
    name = "pg-two-workers"
    _create_study(tmp_path, name, postgres)
    study = optuna.load_study(study_name=name, storage=postgres)
    assert [t.state.name for t in study.trials] == ["WAITING"]  # --timeout 0: the baseline enqueued, nothing run
    started = time.monotonic()
    stores = _run_workers(tmp_path, name, postgres)
    print(f"two workers on PostgreSQL: {time.monotonic() - started:.1f} s")
    _check_study(optuna.load_study(study_name=name, storage=postgres), name, stores, postgres, tmp_path)


# ---------------------------------------------------------------------------------------------
# One machine: a journal file or an SQLite file


def _one_machine_storage(kind: str, tmp: Path):
    """(the URL the CLI takes, the same storage opened by Optuna itself)."""
    if kind == "journal":
        from optuna.storages.journal import JournalFileBackend

        path = tmp / "study.log"
        return f"journal:{path}", lambda: optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    url = f"sqlite:///{tmp / 'studies.db'}"
    return url, lambda: url


@pytest.mark.parametrize("kind", ["journal", "sqlite"])
def test_two_workers_share_a_study_on_one_machine(kind, tmp_path):
    name = f"{kind}-two-workers"
    url, opened = _one_machine_storage(kind, tmp_path)
    _create_study(tmp_path, name, url)
    started = time.monotonic()
    stores = _run_workers(tmp_path, name, url)
    print(f"two workers on {kind}: {time.monotonic() - started:.1f} s")
    _check_study(optuna.load_study(study_name=name, storage=opened()), name, stores, url, tmp_path)


# ---------------------------------------------------------------------------------------------
# optuna-dashboard reads a workbench study as it is


def _get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def test_optuna_dashboard_shows_a_study(tmp_path):
    dashboard = BIN / "optuna-dashboard"
    if not dashboard.exists():
        pytest.skip("needs optuna-dashboard: pip install 'workbench[search]'")
    name = "dashboard-study"
    store = tmp_path / "runs"
    space = tmp_path / "space.json"
    space.write_text(json.dumps(SPACE))
    _workbench(
        "search",
        "run",
        *RUN_FLAGS,
        "--space",
        str(space),
        "--strategy",
        "random",
        "--trials",
        "2",
        "--study",
        name,
        "--objectives",
        OBJECTIVES,
        "--store",
        str(store),
        "--no-progress",
        cwd=tmp_path,
    )
    db = store / "studies.db"  # the default storage
    assert db.exists()
    port = _free_port()
    log = (tmp_path / "dashboard.log").open("w")
    server = subprocess.Popen(
        [str(dashboard), f"sqlite:///{db}", "--port", str(port), "--host", "127.0.0.1"],
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                studies = _get_json(f"{base}/api/studies")["study_summaries"]
                break
            except OSError:
                assert server.poll() is None, (tmp_path / "dashboard.log").read_text()[-2000:]
                assert time.monotonic() < deadline, "optuna-dashboard did not answer in 60 s"
                time.sleep(0.5)
        mine = [s for s in studies if s["study_name"] == name]
        assert len(mine) == 1, studies
        assert mine[0]["directions"] == ["maximize", "minimize"]
        assert "workbench" in [a["key"] for a in mine[0]["user_attrs"]]  # the settings workers read
        detail = _get_json(f"{base}/api/studies/{mine[0]['study_id']}")
        assert detail["name"] == name
        assert len(detail["trials"]) == 2 and {t["state"] for t in detail["trials"]} == {"Complete"}
        front = json.loads(_workbench("search", "show", name, "--store", str(store), "--format", "json", cwd=tmp_path))
        assert sorted(t["number"] for t in detail["best_trials"]) == sorted(r["trial"] for r in front)
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()
