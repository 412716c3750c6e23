"""`workbench doctor`: every problem comes with exactly one fix line."""

from workbench.course import doctor as doc
from workbench.course.doctor import Check, doctor, format_report, widgets_pairing


def test_doctor_covers_the_environment_and_fixes_every_problem():
    checks = doctor()
    names = {c.name for c in checks}
    assert {
        "python",
        "torch",
        "cuda",
        "mps",
        "ipywidgets",
        "jupyterlab_widgets",
        "jupyterlab",
        "papermill",
        "torchao",
        "torch_pruning",
        "onnxruntime",
        "optuna",
        "dataset cache",
        "cifar10 zip",
    } <= names
    assert all(isinstance(c, Check) and c.detail for c in checks)
    assert all(c.fix for c in checks if not c.ok)
    assert next(c for c in checks if c.name == "cuda").ok  # CPU-only is never a failure


def test_format_report_prints_one_fix_line_per_fix():
    checks = [Check("python", True, "3.11"), Check("a", False, "broken", "do x"), Check("b", True, "optional", "do y")]
    report = format_report(checks)
    assert report.count("fix:") == 2 and "FAIL  a" in report and "note  b" in report
    assert report.splitlines()[-1] == "1 problem: run the fix line under it."
    assert "\n" not in "".join(c.fix or "" for c in doctor())  # a fix is always one line


def test_widgets_pairing():
    assert widgets_pairing("8.1.5", "3.0.13").ok and widgets_pairing("7.8.0", "1.1.7").ok
    bad = widgets_pairing("8.1.5", "1.1.7")
    assert not bad.ok and "jupyterlab_widgets==3.*" in bad.fix and "-m pip install" in bad.fix


def test_missing_cifar_zip_named_in_env_is_a_problem(monkeypatch, tmp_path):
    monkeypatch.setenv("WORKBENCH_CIFAR10_ZIP", str(tmp_path / "missing.zip"))
    check = next(c for c in doctor() if c.name == "cifar10 zip")
    assert not check.ok and "WORKBENCH_CIFAR10_ZIP" in check.fix


def test_missing_optional_package_is_a_note_with_a_pinned_install(monkeypatch):
    monkeypatch.setitem(doc.OPTIONAL, "no_such_pkg_xyz", ("no-such-pkg-xyz", "no-such-pkg-xyz", "testing"))
    check = next(c for c in doctor() if c.name == "no_such_pkg_xyz")
    assert check.ok and "not installed" in check.detail
    assert "torch==" in check.fix and check.fix.endswith("no-such-pkg-xyz")


def test_dataset_cache_lists_cached_names(tmp_path):
    (tmp_path / "mnist").mkdir()
    (tmp_path / "cifar10.pt").write_bytes(b"")
    (tmp_path / ".lock").write_bytes(b"")
    check = next(c for c in doctor(cache_dir=tmp_path) if c.name == "dataset cache")
    assert check.ok and check.detail.endswith("cifar10, mnist")


def test_an_arm_cpu_is_told_which_steps_refuse_it_and_a_missing_compiler_is_named(monkeypatch):
    monkeypatch.setattr(doc.platform, "machine", lambda: "arm64")
    monkeypatch.setattr(doc.shutil, "which", lambda name: None)
    checks = {c.name: c for c in doctor()}
    steps, compiler = checks["cpu steps"], checks["c++ compiler"]
    assert steps.ok and "StaticInt8" in steps.detail and "QAT" in steps.detail and "arm64" in steps.detail
    assert "DynamicInt8" in steps.detail.split("these run:")[1] and "Apple silicon" in steps.fix
    assert compiler.ok and "not found" in compiler.detail and "torch.compile" in compiler.detail and compiler.fix


def test_this_machine_has_the_compiler_torch_compile_uses():
    import shutil

    from torch._inductor import cpp_builder

    check = next(c for c in doctor() if c.name == "c++ compiler")
    assert (shutil.which(cpp_builder.get_cpp_compiler()) is not None) == (check.fix is None)
