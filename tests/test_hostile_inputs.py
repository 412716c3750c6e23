"""Hostile inputs to the run, notebooks and datasets commands: each is one line naming the fix, before any work."""

import zipfile

import pytest

from workbench import ModelConfig
from workbench.cli import main


@pytest.mark.parametrize(
    "argv, says",
    [
        (["--width", "1e300"], "model.width must be at most 64 (got 1e+300)"),
        (["--width", "inf"], "model.width must be a finite number (got inf)"),
        (["--depth", "100000000"], "model.depth must be 1 to 1000 or None (got 100000000)"),
    ],
)
def test_absurd_model_sizes_are_refused_before_building(capsys, argv, says):
    assert main(["run", *argv, "--print-config"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"workbench: error: {says}") and "\n" not in err


def test_the_largest_allowed_sizes_are_still_accepted():
    assert ModelConfig(width=64.0, depth=1000).width == 64.0


def test_an_empty_notebook_name_does_not_run_them_all(capsys):
    assert main(["notebooks", "run", ""]) == 2
    assert "An empty notebook name matches every notebook: name one (e.g. 01) or pass --all" in capsys.readouterr().err


def test_an_unwritable_notebook_out_is_refused_before_running(capsys):
    assert main(["notebooks", "run", "01", "--out", "/proc/nb"]) == 2
    assert capsys.readouterr().err.strip() == (
        "workbench: error: cannot write to /proc/nb: No such file or directory (--out): choose another folder"
    )


def test_fetching_a_folder_zip_without_usable_images_fails(tmp_path, capsys):
    archive = tmp_path / "e.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("readme.txt", "no images here")
        z.writestr("train/cat/notes.txt", "nor here")
    assert main(["datasets", "fetch", f"folder:{archive}", "--root", str(tmp_path / "data")]) == 1
    assert f"folder:{archive}: failed: No images found in {archive}" in capsys.readouterr().err
