"""A real browser: JupyterLab in headless Chromium runs the quickstart, a control is changed, Run is
clicked, and the panel gains a row, a live curve and charts. It catches what the widget tests cannot:
"Error displaying widget", front-end / kernel version skew, output routed to the wrong place.

Leaves a screenshot of the panel in test-artifacts/quickstart.png.
"""

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO / "test-artifacts"
NOTEBOOK = "notebooks/00_quickstart.ipynb"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless=new",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--disable-gpu",
]
# JupyterLab user settings for the test's own profile: no news/update pop-ups over the page, and every
# cell attached to the DOM (the default virtualises off-screen cells, which hides the panel from selectors).
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
}
ROWS = "document.querySelectorAll('.wb-panel table.wb-results tbody tr').length"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.timeout(600),
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's Chromium at /usr/bin/chromium"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _api(url: str, token: str, path: str, body: dict | None = None) -> dict:
    request = urllib.request.Request(
        f"{url}{path}",
        data=None if body is None else json.dumps(body).encode(),
        method="GET" if body is None else "POST",
        headers={"Authorization": f"token {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


@pytest.fixture
def lab(tmp_path):
    """A JupyterLab server on a free local port, serving a copy of the quickstart; stopped afterwards."""
    pytest.importorskip("playwright.sync_api", reason="needs playwright: pip install 'workbench[browser]'")
    root = tmp_path / "lab"
    (root / "notebooks").mkdir(parents=True)
    shutil.copy(REPO / NOTEBOOK, root / NOTEBOOK)
    for name, settings in LAB_SETTINGS.items():
        (tmp_path / "settings" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "settings" / name).write_text(json.dumps(settings))
    port, token = _free_port(), secrets.token_hex(16)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            [str(REPO), os.environ.get("PYTHONPATH", "")]
        ),  # the kernel imports workbench from here
        "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        # Server, browser and kernel share the cores: one OpenMP thread keeps the kernel from spin-waiting.
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
    }
    with open(tmp_path / "server.log", "w") as log:  # the server writes to its own copy of the descriptor
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "jupyter",
                "lab",
                "--no-browser",
                "--ServerApp.ip=127.0.0.1",
                f"--ServerApp.port={port}",
                "--ServerApp.port_retries=0",
                f"--IdentityProvider.token={token}",
                "--allow-root",
                f"--ServerApp.root_dir={root}",
                "--LabApp.news_url=None",
            ],
            cwd=root,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if server.poll() is not None:
                pytest.fail(
                    f"JupyterLab exited with {server.returncode}:\n{(tmp_path / 'server.log').read_text()[-3000:]}"
                )
            try:
                _api(url, token, "/api/status")
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"JupyterLab did not answer in 90 s:\n{(tmp_path / 'server.log').read_text()[-3000:]}")
                time.sleep(0.5)
        # Start the notebook's kernel up front, so the page attaches to it instead of asking which to start.
        _api(
            url,
            token,
            "/api/sessions",
            {"path": NOTEBOOK, "name": Path(NOTEBOOK).name, "type": "notebook", "kernel": {"name": "python3"}},
        )
        yield url, token, root
    finally:
        server.terminate()  # the server shuts its kernels down on SIGTERM
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, 9)
            server.wait()


def test_quickstart_panel_in_a_real_browser(lab):
    from playwright.sync_api import sync_playwright

    url, token, root = lab
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 2400})
        page.set_default_timeout(60_000)
        try:
            page.goto(f"{url}/lab/tree/{NOTEBOOK}?reset&token={token}")
            page.locator(".jp-Notebook").wait_for()
            page.get_by_text("| Idle").wait_for(timeout=120_000)  # kernel attached and ready
            page.get_by_role("menuitem", name="Run", exact=True).click()
            page.get_by_role("menuitem", name="Run All Cells", exact=True).click()

            panel = page.locator(".wb-panel")
            panel.wait_for(state="attached", timeout=240_000)
            page.wait_for_function(f"{ROWS} >= 1", timeout=240_000)  # the last cell's panel.run_current()
            page.wait_for_function("!document.querySelector('.jp-Notebook').innerText.includes('[*]')", timeout=120_000)
            assert "✔" in panel.locator(".wb-ok").inner_text()
            rows_before = page.evaluate(ROWS)

            panel.get_by_role("tab", name="Training", exact=True).click()
            batch_size = panel.locator(".widget-dropdown", has=page.locator("label", has_text="batch size")).locator(
                "select"
            )
            batch_size.select_option(label="128")
            panel.locator(".wb-run").click()
            page.wait_for_function(f"{ROWS} > {rows_before}", timeout=180_000)
            panel.locator(".wb-ok").wait_for(timeout=60_000)

            assert panel.locator(".wb-live img").count() >= 1, "the live training curve is drawn"
            panel.locator(".wb-chart img").first.wait_for(timeout=60_000)
            assert panel.locator(".wb-chart img").count() == 4, "accuracy vs size, latency, throughput, curves"
            assert "batch_size=128" in panel.locator(".wb-code").inner_text(), "the run used the changed control"
            stored = list((root / "notebooks" / "runs" / "notebooks" / "00_quickstart" / "results").glob("*.json"))
            assert len(stored) == 5, "3 comparison runs, the last cell's run and the clicked run"
            page.locator(".jp-Notebook").evaluate("nb => nb.scrollTop = 0")
            panel.scroll_into_view_if_needed()
            panel.screenshot(path=str(ARTIFACTS / "quickstart.png"))
            text = page.locator(".jp-Notebook").inner_text()
            assert "Error displaying widget" not in text
            assert "Traceback (most recent call last)" not in text
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "quickstart-failure.png"))
            raise
        finally:
            browser.close()
