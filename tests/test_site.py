"""The notebook site: ``workbench notebooks run --html SITE`` writes a page per executed notebook and an
index with headline numbers and run times. Fast tests build it from hand-made executed notebooks (a
real matplotlib PNG, a saved ipywidgets state); the site of the whole series, as CI builds it, is
checked in tests/test_notebooks.py, which runs the series once.

Leaves screenshots in test-artifacts/site-*.png.
"""

import base64
import html.parser
import io
import json
import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import nbformat
import pytest
from PIL import Image

from workbench.cli import main
from workbench.course.notebooks import notebook_timings, run_notebook
from workbench.course.site import WIDGET_STATE, WIDGET_VIEW, build_site, format_metric, freeze_widgets

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless=new",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--disable-gpu",
]
ARTIFACTS = REPO / "test-artifacts"
MACHINE = {"cpu": "Test CPU 9000", "cores": 2, "torch_threads": 1, "gpu": None}
needs_chromium = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's Chromium at /usr/bin/chromium")


# --- checks every site page must pass -----------------------------------------------------------


class _Refs(html.parser.HTMLParser):
    """Every href/src of a page (tag, attribute, value) and every element id."""

    def __init__(self):
        super().__init__()
        self.refs, self.ids = [], set()

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name == "id" and value:
                self.ids.add(value)
            if name in ("href", "src") and value:
                self.refs.append((tag, name, value))


def _parse(page: Path) -> _Refs:
    parser = _Refs()
    parser.feed(page.read_text())
    return parser


def broken_refs(page: Path) -> list[str]:
    """What on ``page`` does not resolve: a local file that is missing, a #fragment with no such id on its
    page, a data-URI PNG that does not decode, anything loaded (not linked) from the network."""
    refs, problems = _parse(page), []
    css_pngs = re.findall(r"url\(['\"]?(data:image/png;base64,[^'\")]+)", page.read_text())
    for tag, attr, value in refs.refs + [("style", "url", v) for v in css_pngs]:
        parts = urlsplit(value)
        if parts.scheme == "data":
            if value.startswith("data:image/png;base64,"):
                try:
                    Image.open(io.BytesIO(base64.b64decode(value.split(",", 1)[1]))).load()
                except Exception as e:  # noqa: BLE001 - whatever PIL raises for a bad PNG (even SyntaxError) is a problem
                    problems.append(f"{tag} {attr}: a PNG that does not decode ({e})")
        elif parts.scheme in ("http", "https", "mailto"):
            if tag != "a":
                problems.append(f"{tag} {attr}={value}: loads from the network")
        elif parts.scheme:
            problems.append(f"{tag} {attr}={value}: an unexpected scheme")
        else:
            target = (page.parent / unquote(parts.path)) if parts.path else page
            if not target.is_file():
                problems.append(f"{tag} {attr}={value}: no such file")
            elif (
                parts.fragment and not {parts.fragment, unquote(parts.fragment)} & _parse(target).ids
            ):  # as browsers match
                problems.append(f"{tag} {attr}={value}: no such id on {target.name}")
    return problems


def pngs(page: Path) -> int:
    return sum(1 for tag, _, value in _parse(page).refs if tag == "img" and value.startswith("data:image/png"))


def open_in_browser(pages: list[Path], shots: list[str]) -> list[dict]:
    """Open each page from file:// in headless Chromium; per page, each <img> loaded or not, the
    requests it made beyond file: and data:, and its script errors."""
    pytest.importorskip("playwright.sync_api", reason="needs playwright: pip install 'workbench[browser]'")
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    seen = []
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            for page_path, shot in zip(pages, shots):
                page = chromium.new_page(viewport={"width": 1200, "height": 900})
                found = {"page": page_path.name, "network": [], "errors": []}
                page.on(
                    "request",
                    lambda r, *, found=found: (
                        found["network"].append(r.url) if not r.url.startswith(("file:", "data:")) else None
                    ),
                )
                page.on("pageerror", lambda e, *, found=found: found["errors"].append(str(e)))
                page.goto(page_path.resolve().as_uri(), wait_until="load")
                found["images"] = page.eval_on_selector_all(
                    "img", "els => els.map(e => e.complete && e.naturalWidth > 0)"
                )
                page.screenshot(path=str(ARTIFACTS / shot), full_page=True)
                seen.append(found)
                page.close()
        finally:
            chromium.close()
    return seen


# --- hand-made executed notebooks ---------------------------------------------------------------


def _png() -> str:
    fig, ax = plt.subplots(figsize=(2, 1.5))
    ax.plot([0, 1, 2], [1, 0, 2])
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _widget_state(chart: str) -> dict:
    """A tqdm bar (HBox: text, progress, text) and a panel (VBox: a dropdown and an Output that shows the
    bar again and a chart)."""

    def model(name, **state):
        return {
            "model_name": name,
            "model_module": "@jupyter-widgets/controls",
            "model_module_version": "2.0.0",
            "state": state,
        }

    return {
        "bar": model("HBoxModel", children=["IPY_MODEL_bar-l", "IPY_MODEL_bar-p", "IPY_MODEL_bar-r"]),
        "bar-l": model("HTMLModel", value="train: 100%"),
        "bar-p": model("FloatProgressModel", value=3.0, max=3.0),
        "bar-r": model("HTMLModel", value=" 3/3 [00:01&lt;00:00]"),
        "panel": model("VBoxModel", children=["IPY_MODEL_pick", "IPY_MODEL_out"]),
        "pick": model("DropdownModel", description="model", index=0, _options_labels=["cnn", "mlp"]),
        "out": {
            "model_name": "OutputModel",
            "model_module": "@jupyter-widgets/output",
            "model_module_version": "1.0.0",
            "state": {
                "outputs": [
                    {
                        "output_type": "display_data",
                        "metadata": {},  # a bar, then a chart
                        "data": {
                            WIDGET_VIEW: {"model_id": "bar", "version_major": 2, "version_minor": 0},
                            "text/plain": "train:   0%",
                        },
                    },
                    {
                        "output_type": "display_data",
                        "metadata": {},
                        "data": {"image/png": chart, "text/plain": "<Figure>"},
                    },
                ]
            },
        },
    }


def _view(model_id: str, text: str):
    return nbformat.v4.new_output(
        "display_data",
        data={WIDGET_VIEW: {"model_id": model_id, "version_major": 2, "version_minor": 0}, "text/plain": text},
    )


def _executed(
    out: Path, stem: str, title: str, metrics: dict, headline: list[str] | None = None, widgets: bool = False
) -> Path:
    """An executed notebook as ``workbench notebooks run`` leaves it: OUT/<stem>/<stem>.ipynb, metrics.json."""
    chart = _png()
    cells = [
        nbformat.v4.new_markdown_cell(f"Some prose first.\n\n# {title}\n\nMore prose."),
        nbformat.v4.new_code_cell(
            "plot()",
            execution_count=1,
            outputs=[
                nbformat.v4.new_output(
                    "execute_result", data={"image/png": chart, "text/plain": "<Figure>"}, execution_count=1
                )
            ],
        ),
    ]
    nb = nbformat.v4.new_notebook(
        cells=cells,
        metadata={"papermill": {"duration": 7.4, "parameters": {"epochs": 1}}, "workbench": {"smoke": {"epochs": 1}}},
    )
    if headline is not None:
        nb.metadata.workbench.headline = headline
    if widgets:
        cells.append(
            nbformat.v4.new_code_cell(
                "train(); panel",
                execution_count=2,
                outputs=[
                    _view("bar", "train:   0%|  | 0/3"),
                    _view("panel", "VBox(children=(Dropdown(...), Output()))"),
                ],
            )
        )
        nb.metadata.widgets = {WIDGET_STATE: {"version_major": 2, "version_minor": 0, "state": _widget_state(chart)}}
    path = out / stem / f"{stem}.ipynb"
    path.parent.mkdir(parents=True)
    nbformat.write(nb, path)
    (path.parent / "metrics.json").write_text(json.dumps(metrics))
    return path


@pytest.fixture
def built(tmp_path):
    """Three executed notebooks (the third without a run-time record) and the site built from them."""
    out = tmp_path / "runs"
    executed = [
        _executed(
            out,
            "01_tiny",
            "01 · A tiny notebook",
            {
                "device": "cpu",
                "accuracy": 0.9123,
                "params_ratio": 0.25,
                "latency_ms": 1.234,
                "params": 1200,
                "extra": 5,
            },
            headline=["params_ratio", "accuracy"],
            widgets=True,
        ),
        _executed(
            out,
            "02_tiny",
            "02 · Another",
            {
                "device": "cpu",
                "accuracy": 0.5,
                "flag": True,
                "curve": [1, 2],
                "speedup": 1.5,
                "params": 99,
                "size_bytes": 4096,
                "extra": 7,
            },
        ),
        _executed(out, "03_tiny", "03 · Unrecorded", {"name": "only text"}),
    ]
    record = {
        "parameters": {"epochs": 1},
        "machine": MACHINE,
        "load_average_before": 0.5,
        "load_average_after": 0.7,
        "utc": "2026-01-01T00:00:00+00:00",
    }
    (out / "timings.json").write_text(
        json.dumps(
            {
                "01_tiny": {**record, "seconds": 12.34, "mode": "smoke"},
                "02_tiny": {**record, "seconds": 56.78, "mode": "full"},
            }
        )
    )
    site = tmp_path / "site"
    return build_site(executed, site), site


def test_a_page_per_notebook_and_an_index_of_their_numbers(built):
    index, site = built
    assert index == site / "index.html"
    assert sorted(p.name for p in site.iterdir()) == ["01_tiny.html", "02_tiny.html", "03_tiny.html", "index.html"]
    text = index.read_text()
    rows = re.findall(r"<tr>(.*?)</tr>", text, re.S)[1:]  # after the header row
    assert len(rows) == 3
    first, second, third = rows
    # The first markdown heading is the title; the notebook's own headline list, in its order.
    assert '<a href="01_tiny.html">01 · A tiny notebook</a>' in first and ">smoke<" in first and ">12.3<" in first
    assert re.search(r"params_ratio</span> 0\.25×.*accuracy</span> 91\.2%", first) and "latency_ms" not in first
    # No list: the first four scalar numbers (no text, flag or list), each formatted.
    assert re.findall(r'wb-muted">(\w+)</span> ([^<]+)<', second) == [
        ("accuracy", "50.0%"),
        ("speedup", "1.50×"),
        ("params", "99"),
        ("size_bytes", "4 KiB"),
    ]
    assert ">full<" in second and ">56.8<" in second
    # No run-time record: papermill's duration, and says what it does not know.
    assert ">7.4<" in third and "not recorded" in third and "no numbers in metrics.json" in third
    assert "Smoke mode runs" in text and "Test CPU 9000, 2 cores, 1 torch threads, no GPU" in text


def test_every_link_resolves_and_every_image_decodes(built):
    _, site = built
    for page in sorted(site.glob("*.html")):
        assert broken_refs(page) == [], page.name
    assert pngs(site / "01_tiny.html") == 2  # the cell's chart and the one the Output widget captured
    assert pngs(site / "02_tiny.html") == 1


def test_the_checker_catches_what_it_is_for(tmp_path):
    page = tmp_path / "p.html"
    page.write_text(
        '<a href="gone.html">x</a><a href="#nowhere">y</a><img src="data:image/png;base64,AAAA">'
        '<script src="https://cdn.example/x.js"></script><a href="https://example.org">fine</a><b id="here"></b>'
        '<a href="#here">fine</a>'
    )
    assert [p.split(":")[0] for p in broken_refs(page)] == [
        "a href=gone.html",
        "a href=#nowhere",
        "img src",
        "script src=https",
    ]


def test_the_bar_links_the_series_and_says_how_long_on_what(built):
    _, site = built
    bar = lambda name: re.search(r'<nav class="wb-bar">(.*?)</nav>', (site / name).read_text()).group(1)
    first, second = bar("01_tiny.html"), bar("02_tiny.html")
    assert 'href="index.html"' in first and 'href="02_tiny.html" rel="next"' in first and 'rel="prev"' not in first
    assert 'href="01_tiny.html" rel="prev"' in second and 'href="03_tiny.html" rel="next"' in second
    assert "12.3 s, smoke" in first and "Test CPU 9000, 2 cores, 1 torch threads, no GPU" in first
    assert "7.4 s, mode not recorded" in bar("03_tiny.html") and "machine not recorded" in bar("03_tiny.html")
    assert "<title>01 · A tiny notebook · Workbench notebooks</title>" in (site / "01_tiny.html").read_text()


def test_widgets_become_what_they_showed(built):
    _, site = built
    page = (site / "01_tiny.html").read_text()
    assert WIDGET_VIEW not in page and WIDGET_STATE not in page  # no widget JavaScript left to fail
    bars = re.findall(
        r'<div>train: 100% <progress (?=[^>]*max="3.0")[^>]*value="3.0"[^>]*></progress>\s+3/3 '
        r"\[00:01&lt;00:00\]</div>",
        page,
    )
    assert len(bars) == 2  # tqdm's bar, one line: in the cell, and again inside the panel's Output widget
    assert "An interactive panel (1 control): they work in a live notebook" in page
    assert "unpkg" not in page and "require.js" not in page and "mathjax" not in page.lower()


def test_a_widget_without_saved_state_keeps_its_text():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("w", outputs=[_view("gone", "IntSlider(value=3)")])])
    frozen = freeze_widgets(nb)
    assert [o.data for o in frozen.cells[0].outputs] == [{"text/plain": "IntSlider(value=3)"}]
    assert WIDGET_VIEW in nb.cells[0].outputs[0].data  # a copy: the notebook itself is left as it was


def test_the_site_theme_is_the_tour_theme(built):
    from workbench.course._theme import THEME_CSS

    index, site = built
    assert THEME_CSS in index.read_text()
    assert ".wb-bar{" in (site / "01_tiny.html").read_text()


@pytest.mark.parametrize(
    "name, value, shown",
    [
        ("accuracy", 0.5, "50.0%"),
        ("batchnorm_gain", 0.031, "+3.1 points"),
        ("train_ceiling_share", 0.42, "42%"),
        ("saved_fp32_bytes", 3 * 2**20, "3.0 MiB"),
        ("baseline_seconds", 1.5074, "1.51 s"),
        ("rank_images_per_s", 1234.5, "1,234"),
        ("chosen_dominates", True, "yes"),
        ("hypervolume", float("nan"), "–"),
        ("best_lr", 0.05, "0.05"),
    ],
)
def test_format_metric(name, value, shown):
    assert format_metric(name, value) == shown


def test_what_is_not_an_executed_notebook_says_what_to_pass(tmp_path):
    (tmp_path / "notes.txt").write_text("not json")
    for bad in [tmp_path / "notes.txt", REPO / "notebooks" / "00_quickstart.ipynb"]:  # the latter was never run
        with pytest.raises(
            ValueError,
            match=r"is not an executed notebook .*: pass the notebooks `workbench notebooks run` "
            r"executed .*--all --html SITE",
        ) as e:
            build_site([bad], tmp_path / "site")
        assert "\n" not in str(e.value)
    with pytest.raises(FileNotFoundError, match=r"no executed notebook at .*missing\.ipynb: pass"):
        build_site([tmp_path / "missing.ipynb"], tmp_path / "site")
    with pytest.raises(ValueError, match="no executed notebooks to build a site from"):
        build_site([], tmp_path / "site")


def test_a_headline_naming_a_missing_metric_names_the_ones_there(tmp_path):
    path = _executed(tmp_path / "runs", "01_x", "X", {"accuracy": 0.9}, headline=["acuracy"])
    with pytest.raises(
        ValueError,
        match=r"metrics.json: metadata.workbench.headline names acuracy, which metrics.json "
        r"lacks: name some of accuracy",
    ):
        build_site([path], tmp_path / "site")


def test_the_cli_refuses_names_with_all_and_an_unwritable_site_before_running(capsys):
    assert main(["notebooks", "run", "01", "--all"]) == 2
    assert capsys.readouterr().err == (
        "workbench: error: --all runs every notebook: give it or the names (01), not both\n"
    )
    assert main(["notebooks", "run", "01", "--html", "/proc/no-site"]) == 2
    assert re.fullmatch(
        r"workbench: error: cannot write to /proc/no-site: .* \(--html\): choose another folder\n",
        capsys.readouterr().err,
    )


@pytest.mark.browser
@needs_chromium
def test_the_site_in_a_real_browser(built):
    index, site = built
    seen = open_in_browser([index, site / "01_tiny.html"], ["site-tiny-index.png", "site-tiny-page.png"])
    for page in seen:
        assert page["network"] == [] and page["errors"] == [], page
        assert all(page["images"]), page
    assert len(seen[1]["images"]) == 2


def test_each_run_adds_its_record_to_timings_json(tmp_path):
    """Two single runs into one folder add up; a rerun replaces that notebook's record."""
    folder = tmp_path / "notebooks"
    folder.mkdir()
    for name in ("01_a", "02_b"):
        nb = nbformat.v4.new_notebook(
            cells=[
                nbformat.v4.new_code_cell("n = 1\nresults_dir = ''", metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell("n * 2"),
            ],
            metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        )
        nbformat.write(nb, folder / f"{name}.ipynb")
    out = tmp_path / "runs"
    run_notebook(folder / "01_a.ipynb", {"n": 3}, out=out, timeout=60)
    run_notebook(folder / "02_b.ipynb", out=out, smoke=True, timeout=60)
    records = json.loads((out / "timings.json").read_text())
    assert sorted(records) == ["01_a", "02_b"]
    a = records["01_a"]
    assert a["mode"] == "full" and records["02_b"]["mode"] == "smoke"
    assert a["parameters"] == {"n": 3, "results_dir": str((out / "01_a").resolve())}
    assert 0 < a["seconds"] < 60 and a["utc"].endswith("+00:00")
    assert set(a["machine"]) == {"cpu", "cores", "torch_threads", "gpu"} and a["machine"]["cores"] >= 1
    assert {"load_average_before", "load_average_after"} <= set(a)
    df = notebook_timings(out)
    assert list(df.notebook) == ["01_a", "02_b"] and df["seconds"].gt(0).all()
    assert {"mode", "parameters", "machine.cpu", "machine.cores", "machine.torch_threads", "machine.gpu", "utc"} <= set(
        df.columns
    )
    index = build_site([out / "01_a" / "01_a.ipynb", out / "02_b" / "02_b.ipynb"], tmp_path / "site")
    assert f">{a['seconds']:.1f}<" in index.read_text() and "no metrics.json" in index.read_text()


# --- the whole series, as CI builds it (slow) ---------------------------------------------------
