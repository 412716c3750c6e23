"""Hostile and careless input to `workbench serve`, `workbench load-test` and bundle cards: each is
refused with one line naming the fix before any work starts (the CLI: `workbench: error: ...`, exit 2),
or answered with a JSON 4xx while the server keeps serving. Every server here binds 127.0.0.1 only."""

import hashlib
import importlib
import json
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("starlette")
uvicorn = pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")
pytest.importorskip("onnxruntime")

from workbench import cli  # noqa: E402
from workbench.deploy import export_onnx, load_bundle  # noqa: E402
from workbench.deploy.serve import load_test, make_app, serving  # noqa: E402

serve_module = importlib.import_module("workbench.deploy.serve")  # workbench.deploy.serve is also the function

REPO = Path(__file__).resolve().parent.parent
SHAPE = (1, 8, 8)
CARD = {
    "input": {"shape": list(SHAPE), "mean": [0.3], "std": [0.2], "pixel_range": [0, 255]},
    "classes": [f"class{i}" for i in range(10)],
}

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory) -> Path:
    """An ONNX bundle of a tiny digits-shaped CNN, its card naming the file with its SHA-256."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("bundle")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(256, 10)).eval()
    export_onnx(model, torch.randn(2, *SHAPE), folder / "model.onnx")
    data = (folder / "model.onnx").read_bytes()
    card = dict(
        CARD, files={"onnx": {"file": "model.onnx", "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}}
    )
    (folder / "card.json").write_text(json.dumps(card))
    torch.set_num_threads(threads)
    return folder


@pytest.fixture(scope="module")
def url(bundle_dir):
    with serving(bundle_dir, fmt="onnx", max_batch=8) as base:
        yield base


@pytest.fixture
def no_server(monkeypatch):
    """A refusal must come before any server starts: starting one fails the test instead of serving forever."""

    def started(*args, **kwargs):
        raise AssertionError("a server started: the bad input was not refused first")

    monkeypatch.setattr(uvicorn, "run", started)
    monkeypatch.setattr(uvicorn.Server, "run", started)


def refused(capsys, argv: list[str]) -> str:
    """Run the CLI; it must exit 2 with one error line and print no banner. Returns that line."""
    code = cli.main(argv)
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    assert "Serving" not in out, out
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("workbench: error: "), err
    return lines[0]


def pixels(n: int) -> list:
    return np.random.default_rng(0).integers(0, 256, size=(n, *SHAPE)).tolist()


def still_serves(url: str) -> None:
    r = httpx.post(url + "/predict", json={"inputs": pixels(2)}, timeout=10)
    assert r.status_code == 200 and len(r.json()["predictions"]) == 2, r.text


# --- 1, 2: numeric flags ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--port", "99999"], "--port must be 0-65535"),
        (["--port", "-1"], "--port must be 0-65535"),
        (["--threads", "0"], "--threads must be >= 1 (got 0)"),
        (["--threads", "-1"], "--threads must be >= 1 (got -1)"),
        (["--max-batch", "0"], "--max-batch must be >= 1 (got 0)"),
    ],
)
def test_serve_refuses_bad_numbers_naming_the_flag(capsys, no_server, bundle_dir, argv, words):
    assert words in refused(capsys, ["serve", str(bundle_dir), *argv])


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--concurrency", "0"], "--concurrency must be >= 1 (got 0)"),
        (["--requests", "-5"], "--requests must be >= 1 (got -5)"),
        (["--batch-size", "0"], "--batch-size must be >= 1 (got 0)"),
        (["--duration", "0"], "--duration must be a number of seconds > 0"),
        (["--duration", "nan"], "--duration must be a number of seconds > 0"),
    ],
)
def test_load_test_refuses_bad_numbers_naming_the_flag(capsys, argv, words):
    # No server is needed: the flags are refused before the first request.
    assert words in refused(capsys, ["load-test", "http://127.0.0.1:9", *argv])


def test_the_python_api_refuses_bad_threads_and_ports(bundle_dir):
    with pytest.raises(ValueError, match=r"^threads must be an integer >= 1 \(got 0\)$"):
        make_app(bundle_dir, threads=0)
    with pytest.raises(ValueError, match=r"^port must be an integer 0-65535 \(got 70000\)$"):
        serving(bundle_dir, port=70000).__enter__()


# --- 3: cards ---------------------------------------------------------------------------------------

BAD_CARDS = {  # case -> (a change to the card, the field the one line must name)
    "classes not a list": ({"classes": 5}, "classes"),
    "classes not strings": ({"classes": [1, 2]}, "classes"),
    "shape a string": ({"input.shape": "abc"}, "input.shape"),
    "shape of two": ({"input.shape": [8, 8]}, "input.shape"),
    "shape with a zero": ({"input.shape": [1, 0, 8]}, "input.shape"),
    "shape with a float": ({"input.shape": [1, 8.5, 8]}, "input.shape"),
    "shape too large": ({"input.shape": [1, 10**6, 10**6]}, "input.shape"),
    "std zero": ({"input.std": [0]}, "input.std"),
    "std negative": ({"input.std": [-0.2]}, "input.std"),
    "std NaN": ({"input.std": [float("nan")]}, "input.std"),
    "std a string": ({"input.std": "0.2"}, "input.std"),
    "mean per wrong channels": ({"input.mean": [0.3, 0.3, 0.3]}, "input.mean"),
    "mean infinite": ({"input.mean": [float("inf")]}, "input.mean"),
    "input not an object": ({"input": [1, 8, 8]}, "input"),
    "files not an object": ({"files": ["model.onnx"]}, "files"),
}


def write_card(folder: Path, change: dict) -> Path:
    card = json.loads(json.dumps(CARD))
    for key, value in change.items():
        if key.startswith("input."):
            card["input"][key.removeprefix("input.")] = value
        else:
            card[key] = value
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "card.json").write_text(json.dumps(card))  # NaN and Infinity as Python's json writes them
    return folder


@pytest.mark.parametrize("case", list(BAD_CARDS))
def test_bad_cards_are_refused_naming_the_card_and_the_field(tmp_path, case):
    change, field = BAD_CARDS[case]
    folder = write_card(tmp_path / "bundle", change)
    with pytest.raises(ValueError) as e:
        load_bundle(folder)
    message = str(e.value)
    assert str(folder / "card.json") in message and f"{field} must be" in message and "\n" not in message, message


def test_a_card_that_is_not_an_object_is_one_line(tmp_path):
    (tmp_path / "card.json").write_text("5")
    with pytest.raises(ValueError, match=r"card\.json is not a model card"):
        load_bundle(tmp_path)


def test_serve_refuses_a_zero_std_card_before_serving(capsys, no_server, tmp_path):
    # Before: a server started whose every answer was a 500 (the inputs divided by zero).
    folder = write_card(tmp_path / "bundle", {"input.std": [0]})
    line = refused(capsys, ["serve", str(folder), "--port", "0"])
    assert f"{folder / 'card.json'}: input.std must be" in line


# --- 4, 5, 6: the address -----------------------------------------------------------------------------


def test_a_taken_port_is_one_line_before_the_banner(capsys, no_server, bundle_dir):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        line = refused(capsys, ["serve", str(bundle_dir), "--port", str(port)])
        assert line == f"workbench: error: port {port} on 127.0.0.1 is in use: pick another --port"
        with pytest.raises(OSError, match=f"port {port} on 127.0.0.1 is in use"):
            serving(bundle_dir, port=port).__enter__()


def test_a_bad_host_is_one_line_naming_host(capsys, no_server, bundle_dir):
    line = refused(capsys, ["serve", str(bundle_dir), "--host", "999.1.1.1", "--port", "0"])
    assert "--host '999.1.1.1'" in line and "127.0.0.1" in line


class BoundEverywhere:
    """Stands in for a socket bound to 0.0.0.0, so this test binds nothing beyond loopback."""

    def getsockname(self):
        return ("0.0.0.0", 8123)

    def close(self):
        pass


def test_all_interfaces_needs_a_token_and_the_banner_says_so_without_printing_it(capsys, monkeypatch, bundle_dir):
    ran = []
    monkeypatch.setattr(serve_module, "_bind", lambda host, port: BoundEverywhere())
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: ran.append(sockets))
    monkeypatch.delenv("WORKBENCH_SERVE_TOKEN", raising=False)
    line = refused(capsys, ["serve", str(bundle_dir), "--host", "0.0.0.0", "--port", "8123"])
    assert "binding to 0.0.0.0 lets other machines reach the model, so it needs a token" in line and not ran
    token = "a-token-long-enough-0123456789"
    monkeypatch.setenv("WORKBENCH_SERVE_TOKEN", token)
    assert cli.main(["serve", str(bundle_dir), "--host", "0.0.0.0", "--port", "8123"]) == 0
    out, err = capsys.readouterr()
    assert len(ran) == 1 and isinstance(ran[0][0], BoundEverywhere)  # uvicorn serves on the socket bound first
    banner = out.strip()
    assert (
        banner.startswith("Serving ")
        and "on http://0.0.0.0:8123, all interfaces: reachable from other machines" in banner
        and "every request needing its bearer token" in banner
    )
    assert token not in out + err and not err.strip()
    monkeypatch.setenv("WORKBENCH_SERVE_TOKEN", "short")
    assert "at least 16 printable characters" in refused(capsys, ["serve", str(bundle_dir), "--port", "0"])


def test_the_banner_gives_the_port_really_bound_and_ctrl_c_stops(bundle_dir):
    """The real command, on loopback: port 0 takes a free port, and the banner names it."""
    process = subprocess.Popen(
        [sys.executable, "-m", "workbench.cli", "serve", str(bundle_dir), "--port", "0"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        ready, _, _ = select.select([process.stdout], [], [], 60)
        banner = process.stdout.readline() if ready else ""
        assert banner.startswith("Serving ") and " on http://127.0.0.1:" in banner, banner
        base = banner.split(" on ")[1].split(" ")[0]
        assert not base.endswith(":0"), banner
        assert httpx.get(base + "/health", timeout=10).json()["status"] == "ok"
        still_serves(base)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=20) == 0
        assert "Traceback" not in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


# --- 7, 8: requests the server must refuse in JSON ----------------------------------------------------


def test_json_nested_thousands_deep_is_a_400(url):
    deep = "[" * 5000 + "]" * 5000
    r = httpx.post(url + "/predict", content=f'{{"inputs": {deep}}}', headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    assert "nested too deep" in r.json()["error"] and "\n" not in r.json()["error"]
    # Deep enough to parse, but deeper than (N, C, H, W): numpy would stop at 64 dimensions with a 500.
    r = httpx.post(url + "/predict", json={"inputs": json.loads("[" * 200 + "0" + "]" * 200)})
    assert r.status_code == 422 and "nested more than 4 lists deep" in r.json()["error"], r.text
    still_serves(url)


def raw_exchange(url: str, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send bytes as they are and read the answer until the server closes the connection."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(request)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
    return int(status_line.split()[1]), headers, body


PROTOCOL_ERRORS = {  # case -> (raw request, a word the JSON error must hold)
    "Content-Length not a number": (
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: abc\r\n\r\n{}",
        "Content-Length",
    ),
    "malformed chunk size": (
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        "chunk",
    ),
    "chunk longer than its size": (
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n",
        "chunk",
    ),
    "garbled request line": (b"GARBAGE\r\n\r\n", "request line"),
}


@pytest.mark.parametrize("case", list(PROTOCOL_ERRORS))
def test_protocol_errors_answer_in_json_and_the_server_keeps_serving(url, case):
    request, word = PROTOCOL_ERRORS[case]
    status, headers, body = raw_exchange(url, request)
    assert status == 400 and headers.get("content-type") == "application/json", (status, headers, body)
    error = json.loads(body)["error"]
    assert word in error and "\n" not in error, error
    still_serves(url)


# --- 9: load-test bounds ------------------------------------------------------------------------------


def test_load_test_never_warms_up_more_clients_than_requests(url):
    # Before: 200 clients built one by one and warmed up before the clock (2,000 took 63 s).
    start = time.perf_counter()
    result = load_test(url, concurrency=200, requests=10, duration_s=2)
    elapsed = time.perf_counter() - start
    assert elapsed < 4, elapsed
    assert result["concurrency"] == 10 and result["ok"] == result["requests_sent"] == 10, result


def test_load_test_counts_warm_up_within_its_duration(url):
    start = time.perf_counter()
    result = load_test(url, concurrency=100, requests=10**6, duration_s=1.5)
    elapsed = time.perf_counter() - start
    assert elapsed < 3.5, elapsed
    assert result["stopped_by"] == "duration" and result["ok"] > 0 and result["errors"] == 0, result


def test_the_load_test_command_ends_near_its_duration(capsys, url):
    start = time.perf_counter()
    assert cli.main(["load-test", url, "--concurrency", "200", "--requests", "10", "--duration", "2"]) == 0
    assert time.perf_counter() - start < 4
    assert "requests_sent  10" in capsys.readouterr().out
