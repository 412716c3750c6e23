"""``workbench doctor``: check this environment and print exactly one fix line per problem.

Install commands use this interpreter (``python -m pip``) so a fix lands in the environment the
kernel runs in; "Error displaying widget: model not found" usually means ipywidgets and
jupyterlab_widgets disagree or live in different environments.

Example:
    >>> checks = doctor()
    >>> all(c.fix for c in checks if not c.ok)
    True
    >>> "python" in format_report(checks)
    True
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from ..compress.core import X86_MACHINES

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CIFAR10_ZIP = REPO_ROOT.parent / "shared" / "data" / "cifar10-jpeg.zip"
WIDGETS_PAIRS = {7: 1, 8: 3}  # ipywidgets major -> the jupyterlab_widgets major its front end speaks
OPTIONAL = {  # import name -> (distribution, pip spec, what it is for)
    "torchao": ("torchao", "torchao==0.18.*", "quantization"),
    "torch_pruning": ("torch-pruning", "torch-pruning==1.6.1", "structured pruning"),
    "onnxruntime": ("onnxruntime", "onnxruntime onnx onnxscript", "ONNX export, ONNX Runtime timing and int8, bundles"),
    "uvicorn": ("uvicorn", "starlette uvicorn httpx", "serving a bundle over HTTP and load-testing it"),
    "optuna": (
        "optuna",
        "'optuna>=5,<6' 'psycopg[binary]' optuna-dashboard",
        "model search, its studies in PostgreSQL, the dashboard",
    ),
}


@dataclass
class Check:
    """One line of the report. ``ok=False`` is a problem; a ``fix`` on an ok check is a suggestion."""

    name: str
    ok: bool
    detail: str
    fix: str | None = None


def doctor(cache_dir: str | Path = "data/cache") -> list[Check]:
    """Check Python, torch and its devices, the Jupyter/widgets stack, optional extras and data.

    Example:
        >>> [c.name for c in doctor()][:3]
        ['python', 'torch', 'cuda']
    """
    checks = [_python()]
    torch_checks = _torch()
    checks += torch_checks
    torch_pin = f"torch=={_torch_base_version()} " if torch_checks[0].ok else ""
    checks += _widgets()
    for module, label in (("jupyterlab", "JupyterLab"), ("papermill", "papermill")):
        checks.append(_required(module, label))
    for module, (dist, spec, purpose) in OPTIONAL.items():
        version, importable = _package(module, dist)
        if version and importable:
            checks.append(Check(module, True, version))
        else:
            # torch pinned in the same command, or pip may swap the build for another one
            checks.append(Check(module, True, f"not installed (optional: {purpose})", f"{_pip()} {torch_pin}{spec}"))
    checks += [_cache(Path(cache_dir)), _cifar_zip()]
    return checks


def format_report(checks: list[Check]) -> str:
    """The report as text: one line per check, a ``fix:`` line under each problem or suggestion.

    Example:
        >>> print(format_report([Check("python", True, "3.11"),
        ...                      Check("papermill", False, "missing", "pip install papermill")]))
        Workbench doctor
          ok    python     3.11
          FAIL  papermill  missing
                fix: pip install papermill
        1 problem: run the fix line under it.
    """
    width = max((len(c.name) for c in checks), default=0)
    lines = ["Workbench doctor"]
    for c in checks:
        status = "FAIL" if not c.ok else "note" if c.fix else "ok"
        lines.append(f"  {status:<5} {c.name:<{width}}  {c.detail}")
        if c.fix:
            lines.append(f"        fix: {c.fix}")
    problems = sum(not c.ok for c in checks)
    if problems == 0:
        lines.append("All required checks pass.")
    else:
        lines.append(
            f"{problems} problem{'s' if problems > 1 else ''}: "
            f"run the fix line under {'each' if problems > 1 else 'it'}."
        )
    return "\n".join(lines)


def widgets_pairing(ipywidgets_version: str, jupyterlab_widgets_version: str) -> Check:
    """Do these ipywidgets and jupyterlab_widgets versions work together (8 with 3, 7 with 1)?

    Example:
        >>> widgets_pairing("8.1.5", "3.0.13").ok, widgets_pairing("8.1.5", "1.1.7").ok
        (True, False)
    """
    ipw, jlw = _major(ipywidgets_version), _major(jupyterlab_widgets_version)
    pair = f"ipywidgets {ipywidgets_version} + jupyterlab_widgets {jupyterlab_widgets_version}"
    want = WIDGETS_PAIRS.get(ipw)
    if want is None:
        return Check("widgets pairing", True, f"{pair}: unknown ipywidgets major version, not checked")
    if jlw != want:
        return Check(
            "widgets pairing",
            False,
            f"{pair}: ipywidgets {ipw} needs jupyterlab_widgets {want} ('Error displaying widget: model not found')",
            f"{_pip()} 'jupyterlab_widgets=={want}.*'",
        )
    return Check("widgets pairing", True, f"{pair}, both in this environment ({sys.prefix})")


def _python() -> Check:
    version = ".".join(map(str, sys.version_info[:3]))
    if sys.version_info < (3, 10):  # noqa: UP036 - the doctor's job: name the fix for a too-old interpreter
        return Check(
            "python",
            False,
            f"{version} is too old (3.10 or newer needed)",
            "Install Python 3.10+ and recreate the virtual environment with it.",
        )
    return Check("python", True, f"{version} at {sys.executable}")


def _torch() -> list[Check]:
    try:
        import torch
    except ImportError as e:
        return [
            Check(
                "torch",
                False,
                f"cannot import torch ({e})",
                f"{_pip()} torch  (CPU or CUDA build: https://pytorch.org/get-started/locally/)",
            )
        ]
    build = f"CUDA {torch.version.cuda} build" if torch.version.cuda else "CPU build"
    checks = [Check("torch", True, f"{torch.__version__} ({build}, {torch.get_num_threads()} CPU threads)")]
    if torch.cuda.is_available():
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        checks.append(Check("cuda", True, f"{torch.cuda.device_count()} GPU(s): {names}"))
    elif torch.version.cuda:
        checks.append(
            Check("cuda", True, "CUDA build but no GPU visible (driver, CUDA_VISIBLE_DEVICES?); CPU-only is fine")
        )
    else:
        checks.append(Check("cuda", True, "not available: CPU-only is fine, every notebook runs on CPU"))
    mps = hasattr(torch.backends, "mps") and torch.backends.mps.is_available()
    checks.append(Check("mps", True, "available (Apple GPU)" if mps else "not available (Apple silicon only)"))
    checks.append(_distributed(torch))
    checks.append(_compiler())
    checks.append(_cpu_steps())
    return checks


def _compiler() -> Check:
    """``torch.compile`` on a CPU (Inductor) writes C++ and builds it with the compiler torch names (g++ on
    Linux, clang++ on macOS, or $CXX): without one every compiled mode fails, so the notebooks' compiled
    rows are skipped."""
    from torch._inductor import cpp_builder

    try:
        compiler = cpp_builder.get_cpp_compiler()
    except (RuntimeError, OSError) as e:  # torch raises when none of its candidates is on PATH
        compiler, found = str(e).splitlines()[0][:120], None
    else:
        found = shutil.which(compiler)
    if found:
        return Check("c++ compiler", True, f"{compiler} at {found} (torch.compile on the CPU builds C++ with it)")
    fix = (
        "xcode-select --install"
        if sys.platform == "darwin"
        else "install a C++ compiler (Debian/Ubuntu: sudo apt install g++; Fedora: sudo dnf install gcc-c++), "
        "or set CXX to one"
    )
    return Check(
        "c++ compiler",
        True,  # only compiled modes need it: every notebook runs without, skipping those rows
        f"{compiler} not found: torch.compile on the CPU cannot build its kernels (compiled rows are skipped)",
        fix,
    )


def _cpu_steps() -> Check:
    """Which compression steps this CPU can run: pt2e int8 (StaticInt8, QAT) needs x86's int8 kernels."""
    from ..compress import step_types

    machine = platform.machine().lower()
    if machine in X86_MACHINES:
        return Check("cpu steps", True, f"{machine}: every compression step runs here")
    types = step_types().values()
    x86_only = sorted(t.__name__ for t in types if "x86" in t.needs)
    on_cpu = sorted(t.__name__ for t in types if not {"x86", "gpu"} & t.needs)
    return Check(
        "cpu steps",
        True,
        f"{machine}: {', '.join(x86_only)} need an x86 CPU and refuse to run here; these run: {', '.join(on_cpu)}",
        "see docs/workshop.md, 'Apple silicon and other ARM laptops'",
    )


def _distributed(torch) -> Check:
    """Data-parallel runs need torch.distributed with gloo (CPUs) or NCCL (GPUs)."""
    dist = torch.distributed
    if not dist.is_available():
        return Check(
            "torch.distributed",
            False,
            "this torch build has no torch.distributed: --nproc > 1 cannot run",
            f"{_pip()} torch  (a build with distributed support, as the PyPI wheels are)",
        )
    backends = [name for name, ok in (("gloo", dist.is_gloo_available()), ("nccl", dist.is_nccl_available())) if ok]
    return Check(
        "torch.distributed",
        bool(backends),
        f"backends: {', '.join(backends) or 'none'} (torchrun for --nproc)",
        None if backends else f"{_pip()} torch  (a build with gloo)",
    )


def _widgets() -> list[Check]:
    ipw, ipw_ok = _package("ipywidgets")
    jlw, jlw_ok = _package("jupyterlab_widgets")
    want = WIDGETS_PAIRS.get(_major(ipw), 3)  # the pair for the installed ipywidgets, else for ipywidgets 8
    checks = [
        Check("ipywidgets", True, f"{ipw}, importable here")
        if ipw and ipw_ok
        else Check(
            "ipywidgets",
            False,
            "not installed in this environment (the kernel's)",
            f"{_pip()} ipywidgets 'jupyterlab_widgets=={want}.*'",
        ),
    ]
    if jlw and jlw_ok:
        checks.append(Check("jupyterlab_widgets", True, f"{jlw}, importable here"))
    else:
        fix = f"{_pip()} 'jupyterlab_widgets=={want}.*'"
        checks.append(
            Check(
                "jupyterlab_widgets",
                False,
                "not installed in this environment (widgets then show 'model not found')",
                fix,
            )
        )
    if ipw and ipw_ok and jlw and jlw_ok:
        checks.append(widgets_pairing(ipw, jlw))
    return checks


def _required(module: str, label: str) -> Check:
    version, importable = _package(module)
    if version and importable:
        return Check(module, True, f"{version}, in this environment")
    return Check(module, False, f"{label} is not installed in this environment", f"{_pip()} {module}")


def _cache(cache_dir: Path) -> Check:
    names = (
        sorted({p.name.split(".")[0] for p in cache_dir.glob("*") if not p.name.startswith(".")})
        if cache_dir.is_dir()
        else []
    )
    if names:
        return Check("dataset cache", True, f"{cache_dir}: {', '.join(names)}")
    return Check(
        "dataset cache",
        True,
        f"nothing in {cache_dir} yet: datasets are downloaded and decoded there on first use "
        "(digits ships with scikit-learn)",
    )


def _cifar_zip() -> Check:
    env = os.environ.get("WORKBENCH_CIFAR10_ZIP")
    path = Path(env) if env else DEFAULT_CIFAR10_ZIP
    if path.is_file():
        return Check("cifar10 zip", True, f"{path} ({path.stat().st_size / 1e6:.0f} MB)")
    if env:
        return Check(
            "cifar10 zip",
            False,
            f"WORKBENCH_CIFAR10_ZIP={env} does not exist",
            "Point WORKBENCH_CIFAR10_ZIP at cifar10-jpeg.zip, or unset it.",
        )
    return Check(
        "cifar10 zip",
        True,
        f"not at {path}: CIFAR tests skip; dataset 'cifar10' downloads instead",
        "export WORKBENCH_CIFAR10_ZIP=/path/to/cifar10-jpeg.zip",
    )


def _package(module: str, dist: str | None = None) -> tuple[str | None, bool]:
    """(installed version or None, importable from this interpreter) without importing the module."""
    try:
        version = importlib.metadata.version(dist or module)
    except importlib.metadata.PackageNotFoundError:
        version = None
    return version, importlib.util.find_spec(module) is not None


def _major(version: str | None) -> int | None:
    try:
        return int(str(version).split(".")[0])
    except ValueError:
        return None


def _torch_base_version() -> str:
    import torch

    return torch.__version__.split("+")[0]  # "2.13.0+cpu" -> "2.13.0", which pip matches to the installed build


def _pip() -> str:
    return f"{sys.executable} -m pip install"
