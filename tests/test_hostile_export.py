"""Hostile inputs to export, bundles and checkpoints: files that would run code when loaded (real payloads
that create a marker file), `--force` that must not delete what export did not write, parity that sees
NaN and inf, cards whose hashes do not match their files, and destinations checked before any work."""

import dataclasses
import io
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from torch import nn

pytest.importorskip("onnxruntime")
pytest.importorskip("torchao")

from workbench import ModelConfig, ResultStore, RunConfig, StaticInt8, TrainConfig, run_many
from workbench._files import sha256_file, try_lock
from workbench._untrusted import UnsafeFileError, check_export_archive
from workbench.cli import main
from workbench.compress import load_quantized
from workbench.deploy import FILES, ParityError, card_text, export, load_bundle

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.usefixtures("one_thread")
QUICK = {"fmt": "onnx", "latency": False, "progress": False}


class Payload:
    """Unpickling this runs a shell command that creates ``marker``: what an attacker would put in a file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A float run and a pt2e int8 run (its checkpoint is a torch.export archive), and a float bundle."""
    root = tmp_path_factory.mktemp("hostile")
    store = ResultStore(root / "runs")
    fp32 = RunConfig(name="fp32", model=ModelConfig(name="cnn", width=0.25), train=TrainConfig(epochs=1))
    int8 = dataclasses.replace(fp32, name="int8", compress=(StaticInt8(calibration_batches=2),))
    df = run_many([fp32, int8], store=store, progress=False)
    ids = dict(zip(df["name"], df["run_id"]))
    export(ids["fp32"], root / "bundle", store=store, fmt="both", latency=False, progress=False)
    return store, ids, root


def copy_bundle(root: Path, name: str) -> Path:
    folder = root / name
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(root / "bundle", folder)
    return folder


def rewrite_member(archive: Path, member_suffix: str, data: bytes, config_edit=None) -> None:
    """Replace one member of a zip archive (and optionally edit a JSON member), as an attacker would."""
    with zipfile.ZipFile(archive) as z:
        members = {n: z.read(n) for n in z.namelist()}
    name = next((n for n in members if n.endswith(member_suffix)), None)
    name = name or next(iter(members)).split("/")[0] + "/" + member_suffix
    members[name] = data
    if config_edit:
        config_edit(members)
    with zipfile.ZipFile(archive, "w") as z:
        for n, b in members.items():
            z.writestr(n, b)


def rehash(folder: Path) -> None:
    """Make the card's hashes match the tampered files, so only the content check stands in the way."""
    card = json.loads((folder / "card.json").read_text())
    for fmt, entry in card["files"].items():
        entry["sha256"] = sha256_file(folder / FILES[fmt])
    (folder / "card.json").write_text(json.dumps(card))


def torch_save_payload(marker: Path) -> bytes:
    buf = io.BytesIO()
    torch.save({"x": Payload(marker)}, buf)
    return buf.getvalue()


def protocol0_payload(marker: Path) -> bytes:
    return f"cos\nsystem\n(S'touch {marker}'\ntR.".encode()


def pickle_payload(marker: Path) -> bytes:
    return pickle.dumps(Payload(marker))


def weight_as_pickle(marker: Path):
    """Turn the first weight into a pickled member holding the payload (torch unpickles it with plain pickle)."""

    def edit(members):
        config_name = next(n for n in members if n.endswith("_weights_config.json"))
        config = json.loads(members[config_name])
        first = next(iter(config["config"].values()))
        first["use_pickle"] = True
        members[config_name] = json.dumps(config).encode()
        members[config_name.rsplit("/", 1)[0] + "/" + first["path_name"]] = torch_save_payload(marker)

    return edit


def opaque_constant(marker: Path):
    def edit(members):
        config_name = next(n for n in members if n.endswith("_constants_config.json"))
        members[config_name] = json.dumps(
            {"config": {"c": {"path_name": "opaque_obj_0", "is_param": False, "use_pickle": True, "tensor_meta": None}}}
        ).encode()
        members[config_name.rsplit("/", 1)[0] + "/opaque_obj_0"] = pickle_payload(marker)

    return edit


PAYLOADS = {
    "sample inputs as torch.save": lambda m: ("data/sample_inputs/model.pt", torch_save_payload(m), None),
    "sample inputs as a protocol-0 pickle": lambda m: ("data/sample_inputs/model.pt", protocol0_payload(m), None),
    "a weight marked as pickled": lambda m: ("data/weights/unused", b"", weight_as_pickle(m)),
    "an opaque constant": lambda m: ("data/constants/unused", b"", opaque_constant(m)),
}


def test_the_payload_is_real_torch_export_load_would_run_it(runs, tmp_path):
    """The guard's reason to exist: plain torch.export.load runs the payload (in a child process)."""
    _store, _ids, root = runs
    folder, marker = copy_bundle(root, "real"), tmp_path / "ran"
    rewrite_member(folder / "model.pt2", "data/sample_inputs/model.pt", torch_save_payload(marker))
    code = f"import torch; torch.export.load({str(folder / 'model.pt2')!r})"
    subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120)
    assert marker.exists(), "the payload did not run under torch.export.load: this test proves nothing"


@pytest.mark.parametrize("kind", list(PAYLOADS))
def test_a_tampered_bundle_is_refused_before_anything_is_unpickled(runs, tmp_path, kind):
    _store, _ids, root = runs
    folder, marker = copy_bundle(root, "tampered"), tmp_path / "ran"
    member, data, edit = PAYLOADS[kind](marker)
    rewrite_member(folder / "model.pt2", member, data, edit)
    with pytest.raises(ValueError, match="sha256 differs"):  # the card's hash alone catches it...
        load_bundle(folder).predictor("torch-export")
    rehash(folder)  # ...and an attacker who also rewrote the card meets the content check
    with pytest.raises(UnsafeFileError, match="refused"):
        load_bundle(folder).predictor("torch-export")
    assert main(["serve", str(folder), "--format", "torch-export", "--port", "0"]) == 2
    assert not marker.exists()


@pytest.fixture
def int8_checkpoint(runs):
    """The int8 run's checkpoint (a torch.export archive), put back as it was after the test."""
    store, ids, _root = runs
    path = Path(store.get(ids["int8"]).checkpoint)
    saved = path.read_bytes()
    yield path
    path.write_bytes(saved)


@pytest.mark.parametrize("kind", list(PAYLOADS))
def test_a_tampered_checkpoint_is_refused_by_load_quantized_and_export(runs, int8_checkpoint, tmp_path, kind):
    store, ids, _root = runs
    assert int8_checkpoint.suffix == ".pt2" and load_quantized(int8_checkpoint) is not None  # untouched, it loads
    marker = tmp_path / "ran"
    member, data, edit = PAYLOADS[kind](marker)
    rewrite_member(int8_checkpoint, member, data, edit)  # a store copied from someone else
    with pytest.raises(UnsafeFileError, match="refused"):
        load_quantized(int8_checkpoint)
    with pytest.raises(ValueError, match="refused"):
        main(["export", ids["int8"], "--out", str(tmp_path / "b"), "--store", str(store.root)], raise_errors=True)
    assert not marker.exists()


@pytest.mark.parametrize(
    "content, says",
    [
        (lambda good: good[: len(good) // 2], "truncated"),
        (lambda good: os.urandom(4096), "not a torch.export archive"),
        (lambda good: torch_save_payload(Path("/tmp/never-created")), "not a torch.export archive"),
    ],
)
def test_a_broken_or_foreign_model_pt2_is_one_line(runs, content, says):
    _store, _ids, root = runs
    folder = copy_bundle(root, "broken-pt2")
    path = folder / "model.pt2"
    path.write_bytes(content(path.read_bytes()))
    rehash(folder)
    with pytest.raises(UnsafeFileError, match=says):
        load_bundle(folder).predictor("torch-export")
    assert not Path("/tmp/never-created").exists()


@pytest.mark.parametrize("content", [lambda good: good[: len(good) // 2], lambda good: os.urandom(4096)])
def test_a_truncated_or_random_model_onnx_is_one_line(runs, content):
    _store, _ids, root = runs
    folder = copy_bundle(root, "broken-onnx")
    path = folder / "model.onnx"
    path.write_bytes(content(path.read_bytes()))
    with pytest.raises(ValueError, match="sha256 differs"):
        load_bundle(folder).predictor("onnx")
    rehash(folder)
    with pytest.raises(ValueError, match="not an ONNX graph ONNX Runtime can load") as e:
        load_bundle(folder).predictor("onnx")
    assert "\n" not in str(e.value)


def test_a_model_file_swapped_for_another_exports_is_refused(runs, tmp_path):
    _store, _ids, root = runs
    folder = copy_bundle(root, "swapped")
    other = tmp_path / "other.onnx"
    from workbench.deploy import export_onnx

    export_onnx(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)), torch.randn(2, 1, 8, 8), other)
    shutil.copy(other, folder / "model.onnx")
    with pytest.raises(ValueError, match="not the file its card describes"):
        load_bundle(folder).predictor("onnx")
    assert main(["serve", str(folder), "--port", "0"]) == 2


def test_a_model_file_linking_out_of_its_bundle_is_not_followed(runs, tmp_path):
    _store, _ids, root = runs
    folder = copy_bundle(root, "linked")
    outside = tmp_path / "elsewhere.onnx"
    shutil.move(folder / "model.onnx", outside)
    (folder / "model.onnx").symlink_to(outside)  # same bytes, same hash: only the link is wrong
    with pytest.raises(ValueError, match="links outside its bundle"):
        load_bundle(folder).predictor("onnx")


def test_a_card_without_hashes_cannot_be_checked_and_is_refused(runs):
    _store, _ids, root = runs
    folder = copy_bundle(root, "unhashed")
    card = json.loads((folder / "card.json").read_text())
    del card["files"]["onnx"]["sha256"]
    (folder / "card.json").write_text(json.dumps(card))
    with pytest.raises(ValueError, match="names no sha256"):
        load_bundle(folder).predictor("onnx")


# --- --force --------------------------------------------------------------------------------------


def test_force_never_deletes_a_result_store(runs):
    store, ids, _root = runs
    before = sorted(p.relative_to(store.root) for p in store.root.rglob("*"))
    rows = len(store.results())
    assert main(["export", ids["fp32"], "--out", str(store.root), "--store", str(store.root), "--force"]) == 2
    assert sorted(p.relative_to(store.root) for p in store.root.rglob("*")) == before and len(store.results()) == rows


def test_force_never_deletes_a_folder_with_other_files(runs, tmp_path):
    store, ids, root = runs
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "thesis.txt").write_text("four years")
    with pytest.raises(FileExistsError, match="replaces only a bundle"):
        export(ids["fp32"], folder, store=store, overwrite=True, **QUICK)
    bundle = copy_bundle(root, "bundle-plus")  # a real bundle with a stranger in it is not replaced either
    (bundle / "notes.md").write_text("mine")
    with pytest.raises(FileExistsError, match=r"also holds notes\.md"):
        export(ids["fp32"], bundle, store=store, overwrite=True, **QUICK)
    assert (folder / "thesis.txt").read_text() == "four years" and (bundle / "notes.md").exists()


def test_force_replaces_a_bundle_export_wrote(runs):
    store, ids, root = runs
    folder = copy_bundle(root, "replace-me")
    old = json.loads((folder / "card.json").read_text())["exported"]
    (folder / "card.json").write_text((folder / "card.json").read_text().replace(old, "2000-01-01T00:00:00Z"))
    bundle = export(ids["fp32"], folder, store=store, overwrite=True, **QUICK)
    assert bundle.card["exported"] != "2000-01-01T00:00:00Z" and bundle.formats == ["onnx"]
    assert sorted(p.name for p in folder.parent.iterdir() if p.name.startswith(".replace-me")) == []


@pytest.mark.parametrize(
    "where, says",
    [
        ("/proc/workbench-bundle", "cannot write to /proc"),
        ("FILE/below", "cannot write to"),
        ("FILE", "is a file"),
    ],
)
def test_a_bad_out_is_refused_before_the_model_is_loaded(runs, tmp_path, where, says):
    store, _ids, _root = runs
    (tmp_path / "FILE").write_text("keep me")
    out = where.replace("FILE", str(tmp_path / "FILE"))
    with pytest.raises(OSError, match=says):
        export("no-such-run", out, store=store, overwrite=True, **QUICK)  # the run id is never looked at
    assert (tmp_path / "FILE").read_text() == "keep me"


# --- options, parity, staging, permissions, card ---------------------------------------------------


@pytest.mark.parametrize(
    "argv, says",
    [
        (["--opset", "3"], "opset (--opset) 3 is not supported: choose 15 to"),
        (["--opset", "-1"], "opset (--opset) -1 is not supported"),
        (["--threads", "-3"], "threads (--threads) must be an integer >= 1"),
        (["--threads", "0"], "threads (--threads) must be an integer >= 1"),
    ],
)
def test_bad_export_options_are_refused_before_exporting(runs, tmp_path, capsys, argv, says):
    store, ids, _root = runs
    out = tmp_path / "b"
    assert main(["export", ids["fp32"], "--out", str(out), "--store", str(store.root), *argv]) == 2
    assert says in capsys.readouterr().err and not out.exists()


class Broken(nn.Module):
    def __init__(self, value: float):
        super().__init__()
        self.linear, self.value = nn.Linear(64, 10), value

    def forward(self, x):
        y = self.linear(x.flatten(1))
        return torch.where(torch.arange(10) == 3, torch.full_like(y, self.value), y)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_a_model_that_outputs_nan_or_inf_fails_parity(tmp_path, value):
    with pytest.raises(
        ParityError,
        match=r"non-finite logits \(NaN or inf\) from eager PyTorch on 360 of 360 .*"
        "The model computes NaN or inf",
    ):
        export(Broken(value).eval(), tmp_path / "b", config=RunConfig(), **QUICK)
    assert not (tmp_path / "b").exists()


def test_a_killed_exports_staging_folder_is_removed_by_the_next_export(runs, tmp_path):
    store, ids, _root = runs
    out = tmp_path / "bundle"
    code = (
        "import os, sys; from pathlib import Path; from workbench.deploy.export import _staging\n"
        f"with _staging(Path({str(out)!r})) as s:\n"
        "    (s / 'model.onnx').write_bytes(b'0' * 700_000); print(s, flush=True); os.kill(os.getpid(), 9)\n"
    )
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert child.returncode == -signal.SIGKILL
    stale = Path(child.stdout.strip())
    assert stale.is_dir()  # what kill -9 left behind
    live = tmp_path / ".bundle.export-live"  # another export still running: its lock is held
    live.mkdir()
    with try_lock(tmp_path / ".bundle.export-live.lock") as held:
        assert held
        export(ids["fp32"], out, store=store, **QUICK)
        assert not stale.exists() and live.exists()


def test_bundles_are_created_with_the_users_umask(runs, tmp_path):
    store, ids, _root = runs
    old = os.umask(0o022)
    try:
        export(ids["fp32"], tmp_path / "b", store=store, **QUICK)
    finally:
        os.umask(old)
    assert (tmp_path / "b").stat().st_mode & 0o777 == 0o755


def test_a_pruned_trials_card_says_it_stopped_early(runs, tmp_path):
    store, ids, _root = runs
    pruned = dataclasses.replace(store.get(ids["fp32"]), status="pruned", tags={"study": "s", "trial": 3})
    bundle = export(pruned, tmp_path / "b", **QUICK)
    assert bundle.card["status"] == "pruned" and bundle.card["tags"] == {"study": "s", "trial": 3}
    assert "status: pruned (the run stopped early" in card_text(bundle)


def test_check_export_archive_accepts_what_torch_export_save_writes(tmp_path):
    program = torch.export.export(nn.Linear(4, 2), (torch.randn(2, 4),))
    torch.export.save(program, tmp_path / "p.pt2")
    check_export_archive(tmp_path / "p.pt2")
