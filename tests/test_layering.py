"""The package's layering, checked on its source: no import cycles (function-level imports included),
and no module importing a layer above its own.

The flow: the parts, each owning its config section -> compression -> ``RunConfig`` ->
checkpoints and result rows -> the pipeline -> views of the results -> the UI, CLI and tools.
"""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "workbench"

# Lowest first. A module may import its own component and the layers below it, never above.
LAYERS = [
    {"_registry", "_errors", "_files", "_untrusted"},  # helpers every layer shares
    {"_plain"},  # config dataclasses <-> plain dicts (its errors are ConfigErrors)
    {"data", "models", "train"},  # the parts
    {"measure"},  # times models in each runtime (eager, compiled, torch.export, ONNX Runtime...)
    {"compress"},  # pruning and quantization steps (they fine-tune and count)
    {"tasks"},  # image classification, language modelling: what differs between them, answered in one place
    {"config"},  # RunConfig composes the parts' configs and the compression steps
    {"presets"},  # named RunConfigs (the speedrun recipe)
    {"report"},  # what a run leaves behind (rows, checkpoints) and its views (compare, ledger, charts)
    {"pipeline"},  # the one place that composes
    {"deploy"},  # a stored run exported as a bundle, checked, compared across runtimes, served
    {"search", "distributed"},  # searches (studies whose trials are runs); torchrun launches, scaling, pipeline demo
    {"ui", "course"},  # the panel; the notebooks, their exercises and site, the tour, the set-up check
    {"cli", "__init__"},  # entry points: the command line and the public API
    {"__main__"},  # what `python -m` runs (a torchrun rank's entry takes the command line's flags)
]
RANK = {component: i for i, layer in enumerate(LAYERS) for component in layer}


def module_name(path: Path, root: Path = PACKAGE) -> str:
    parts = [root.name, *path.relative_to(root).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules_of(root: Path) -> dict[str, Path]:
    return {module_name(p, root): p for p in root.rglob("*.py")}


MODULES = modules_of(PACKAGE)


def component(module: str) -> str:
    parts = module.split(".")
    if parts[-1] == "__main__":  # what `python -m` runs is an entry point, wherever it lives
        return "__main__"
    return parts[1] if len(parts) > 1 else "__init__"


def imports_of(module: str, modules: dict[str, Path] = MODULES) -> set[str]:
    """Every module of the package ``module`` imports anywhere in its source (function bodies
    included), and the packages that importing those runs first (their ``__init__``), except the
    packages ``module`` already lives in."""
    root = module.split(".")[0]
    path = modules[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found |= {f"{target}.{alias.name}" for alias in node.names if f"{target}.{alias.name}" in modules}
    targets = set()
    for name in found:
        if name.split(".")[0] != root:
            continue
        parts = name.split(".")
        for i in range(2, len(parts) + 1):  # a.b.c runs a.b's __init__ first; the root package is already running
            candidate = ".".join(parts[:i])
            if candidate in modules and not (module == candidate or module.startswith(candidate + ".")):
                targets.add(candidate)
    return targets


GRAPH = {m: imports_of(m) for m in MODULES}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            scc = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                scc.append(w)
                if w == v:
                    break
            if len(scc) > 1:
                found.append(sorted(scc))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_checker_sees_cycles_through_function_level_imports_and_package_inits(tmp_path):
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    pkg = tmp_path / "pkg"
    for name, source in {
        "__init__.py": "",
        "low/__init__.py": "from .core import thing\n",
        "low/core.py": "def thing():\n    from ..high import other  # hidden in a function\n",
        "high.py": "from .low.core import thing\ndef other(): ...\n",
    }.items():
        (pkg / name).parent.mkdir(parents=True, exist_ok=True)
        (pkg / name).write_text(source)
    modules = modules_of(pkg)
    graph = {m: imports_of(m, modules) for m in modules}
    assert graph["pkg.high"] == {"pkg.low", "pkg.low.core"}  # importing low.core runs low/__init__ first
    assert cycles(graph) == [["pkg.high", "pkg.low", "pkg.low.core"]]


def test_no_import_cycles():
    found = cycles(GRAPH)
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_every_component_has_a_layer():
    assert {component(m) for m in MODULES} <= set(RANK), sorted({component(m) for m in MODULES} - set(RANK))


def test_no_module_imports_a_layer_above_its_own():
    upward = [
        f"{m} (layer {RANK[component(m)]}) imports {t} (layer {RANK[component(t)]})"
        for m, targets in GRAPH.items()
        for t in sorted(targets)
        if component(t) != component(m) and RANK[component(t)] >= RANK[component(m)]
    ]
    assert not upward, "\n".join(upward)
