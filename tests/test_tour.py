"""The main job: ``workbench tour`` trains its variants, times them together and writes a report a
person can read; the report is opened in a real browser (every image loads, the table has its columns).

Leaves a screenshot of the report in test-artifacts/tour-report.png.
"""

import re
from pathlib import Path

import pytest

from workbench.cli import main
from workbench.course.tour import noise_note, report_table, variant_notes, write_report
from workbench.report import ResultStore
from workbench.report.roofline import roofline

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
COLUMNS = [
    "run",
    "test accuracy (%)",
    "Δ accuracy (points)",
    "parameters",
    "model size on disk (KiB)",
    "FLOPs per image",
    "latency at batch 1 (ms, median)",
    "latency × baseline",
    "latency spread (IQR, ms)",
    "throughput at batch 64 (images/s)",
    "training time (s)",
    "same network as the baseline",
]


@pytest.fixture(scope="module")
def toured(tmp_path_factory):
    out = tmp_path_factory.mktemp("tour")
    import io
    from contextlib import redirect_stderr, redirect_stdout

    stdout, stderr = io.StringIO(), io.StringIO()
    with redirect_stdout(stdout), redirect_stderr(stderr):
        code = main(["tour", "--out", str(out), "--epochs", "1"])
    return code, stdout.getvalue() + stderr.getvalue(), out


def test_the_tour_says_what_it_does_and_where_its_report_is(toured):
    code, printed, _out = toured
    assert code == 0
    assert "training them first, then timing all of them together" in printed
    assert re.search(r"timing \d+ models together", printed) and "writing the report" in printed
    path = Path(re.search(r"The report: (\S+)", printed).group(1))
    assert path.is_absolute() and path.is_file() and f"file://{path}" in printed


def test_the_report_table_is_for_people(toured):
    _, _, out = toured
    df = ResultStore(out).frame()
    table = report_table(df)
    assert [c for c in table.columns if c != "timing"] == COLUMNS  # "timing" appears when timings were noisy
    assert table["test accuracy (%)"].between(0, 100).all() and table["test accuracy (%)"].max() > 1  # %, not 0-1
    same = dict(zip(table["run"], table["same network as the baseline"]))
    assert same["adam optimizer"] == "yes" and same["narrower (width 0.25)"] == ""
    notes = variant_notes(df)
    assert len(notes) == len(df) and notes[3].startswith("adam optimizer: changes train.optimizer: sgd → adam")
    assert "same network as the baseline" in notes[3]
    for note, (_, row) in zip(notes[1:], df.iloc[1:].iterrows()):
        assert f"{100 * row['accuracy']:.1f}%" in note


def test_the_report_draws_the_roofline(toured):
    """The tour's runs were timed on the CPU, so every timed cell has a roofline point: the chart is a PNG beside
    the report and inline in it, captioned with the measured roofs and the regimes counted from the points."""
    _, printed, out = toured
    path = Path(re.search(r"The report: (\S+)", printed).group(1))
    assert (path.parent / "roofline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    points = roofline(ResultStore(out).frame())
    assert len(points) >= 2 * 6  # batch 1 and 64 of every variant, at least
    html = path.read_text()
    assert 'alt="roofline.png" src="data:image/png;base64,' in html
    caption = re.search(r'<p class="caption">(Roofline: [^<]*)</p>', html).group(1)
    assert "GB/s STREAM triad" in caption and "GFLOP/s matmul" in caption
    assert f"Of {len(points)} timings here" in caption
    for regime, n in points["regime"].value_counts().items():
        assert f"{n} {regime}-bound" in caption


def test_a_busy_machine_is_named_in_the_report(toured, tmp_path):
    _, _, out = toured
    df = ResultStore(out).frame()
    assert "busy" not in noise_note(df) or any(r.get("noisy") for recs in df["benchmarks"] for r in recs)
    for r in df["benchmarks"].iloc[1]:
        r.update(
            noisy=True, latency_ms_q25=r["latency_ms"] / 3, latency_ms_q75=r["latency_ms"] * 3, relative_spread=8.0
        )
    assert re.search(r"The machine was busy.*vary by up to 9\.0x.*rerun on a quiet machine", noise_note(df))
    assert "no reliable batch-1 latency comparison" in variant_notes(df)[1]
    html = write_report(df, tmp_path / "noisy").read_text()
    assert 'class="noise"' in html and "The machine was busy" in html


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's Chromium at /usr/bin/chromium")
def test_the_report_in_a_real_browser(toured):
    pytest.importorskip("playwright.sync_api", reason="needs playwright: pip install 'workbench[browser]'")
    from playwright.sync_api import sync_playwright

    _, printed, _ = toured
    url = re.search(r"(file://\S+)", printed).group(1)
    (REPO / "test-artifacts").mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--headless=new"])
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto(url)
            images = page.eval_on_selector_all("img", "els => els.map(e => [e.alt, e.complete && e.naturalWidth > 0])")
            assert [alt for alt, _ in images] == [
                "size_accuracy_chart.png",
                "latency.png",
                "training_curves.png",
                "roofline.png",
            ]
            assert all(ok for _, ok in images), images
            headers = page.eval_on_selector_all(
                "table thead tr", "rows => rows.map(r => [...r.cells].map(c => c.innerText))"
            )
            assert len(headers) == 1, headers  # one header row, no empty index row
            shown = [
                re.sub(r"\s+", " ", c) for c in headers[0] if c != "timing"
            ]  # "timing" appears when timings were noisy
            assert shown == COLUMNS, shown
            assert page.locator("table tbody tr").count() >= 6
            page.screenshot(path=str(REPO / "test-artifacts" / "tour-report.png"), full_page=True)
        finally:
            browser.close()
