"""The HTTP serving check: a real bundle served on 127.0.0.1 answers as the in-process model does,
refuses bad requests with a one-line 4xx and keeps serving, and load_test is bounded and honest."""

import io
import json
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
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")
pytest.importorskip("onnxruntime")

from workbench._files import sha256_file  # noqa: E402
from workbench.deploy import export_onnx, load_bundle  # noqa: E402
from workbench.deploy.bundle import Bundle  # noqa: E402
from workbench.deploy.serve import load_test, serving  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SHAPE = (1, 8, 8)
CLASSES = [f"class{i}" for i in range(10)]
MAX_BATCH, MAX_BODY = 8, 8192  # small limits, so the over-limit cases stay small

pytestmark = pytest.mark.usefixtures("one_thread")


def small_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(128, 10)
    ).eval()


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A bundle with both formats, and the model it came from."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("bundle")
    model, x = small_net(), torch.randn(2, *SHAPE)
    export_onnx(model, x, folder / "model.onnx")
    program = torch.export.export(model, (x,), dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(program, folder / "model.pt2")
    card = {
        "input": {"shape": list(SHAPE), "mean": [0.3], "std": [0.2], "pixel_range": [0, 255]},
        "classes": CLASSES,
        "files": {
            fmt: {"file": name, "sha256": sha256_file(folder / name)}
            for fmt, name in (("onnx", "model.onnx"), ("torch-export", "model.pt2"))
        },
    }
    (folder / "card.json").write_text(json.dumps(card))
    torch.set_num_threads(threads)
    return load_bundle(folder), model


@pytest.fixture(scope="module")
def url(made):
    with serving(made[0], fmt="onnx", max_batch=MAX_BATCH, max_body_bytes=MAX_BODY) as base:
        yield base


def pixels(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, *SHAPE), dtype=np.uint8)


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def png(image: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def expected(made, batch: np.ndarray) -> torch.Tensor:
    bundle, model = made
    with torch.no_grad():
        return model(bundle.preprocess(torch.from_numpy(batch)))


def check_answer(made, response, batch: np.ndarray) -> None:
    assert response.status_code == 200, response.text
    answer = response.json()
    reference = expected(made, batch)
    assert answer["predictions"] == reference.argmax(1).tolist()
    assert answer["labels"] == [CLASSES[i] for i in answer["predictions"]]
    torch.testing.assert_close(torch.tensor(answer["logits"]), reference, atol=1e-4, rtol=1e-4)
    probabilities = torch.tensor(answer["probabilities"])
    torch.testing.assert_close(probabilities, torch.softmax(reference, 1), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("fmt", ["onnx", "torch-export"])
def test_answers_match_the_in_process_model(made, url, fmt):
    batch = pixels(5)
    if fmt == "onnx":
        base = url
    else:
        context = serving(made[0], fmt=fmt, max_batch=MAX_BATCH)
        base = context.__enter__()
    try:
        health = httpx.get(base + "/health").json()
        assert health["status"] == "ok" and health["format"] == fmt
        assert health["input_shape"] == list(SHAPE) and health["classes"] == CLASSES
        check_answer(made, httpx.post(base + "/predict", json={"inputs": batch.tolist()}), batch)
        if fmt == "onnx":  # the other bodies once: they share everything after decoding
            assert httpx.get(base + "/card").json() == made[0].card
            check_answer(made, httpx.post(base + "/predict", json={"inputs": batch[0].tolist()}), batch[:1])
            floats = {"inputs": (batch[:2] / 2).tolist()}  # fractional pixels are fine
            check_answer(made, httpx.post(base + "/predict", json=floats), (batch[:2] / 2).astype(np.float32))
            check_answer(
                made,
                httpx.post(base + "/predict", content=png(batch[1, 0]), headers={"content-type": "image/png"}),
                batch[1:2],
            )
            check_answer(
                made,
                httpx.post(base + "/predict", content=npy(batch), headers={"content-type": "application/x-npy"}),
                batch,
            )
            check_answer(
                made,
                httpx.post(
                    base + "/predict",
                    content=npy(batch[2].astype(np.float32)),
                    headers={"content-type": "application/x-npy"},
                ),
                batch[2:3],
            )
    finally:
        if fmt != "onnx":
            context.__exit__(None, None, None)


def chunks(total: int):
    for _ in range(total // 1024):
        yield b"x" * 1024


JSON, NPY, PNG = "application/json", "application/x-npy", "image/png"
BAD = {  # case -> (content type, body, status, a word the reason must hold)
    "wrong shape": (JSON, json.dumps({"inputs": np.zeros((2, 3, 8, 8)).tolist()}), 422, "(N, 1, 8, 8)"),
    "wrong shape npy": (NPY, npy(np.zeros((8, 8), np.uint8)), 422, "(8, 8)"),
    "ragged": (JSON, json.dumps({"inputs": [[[1, 2], [3]]]}), 422, "ragged"),
    "strings": (JSON, json.dumps({"inputs": [[["a"] * 8] * 8]}), 400, "dtype"),
    "a boolean among numbers": (JSON, json.dumps({"inputs": [[[1] * 7 + [True]] * 8]}), 400, "dtype"),
    "null": (JSON, json.dumps({"inputs": [[[None] * 8] * 8]}), 400, "dtype"),
    "inputs not a list": (JSON, json.dumps({"inputs": "pixels"}), 400, "dtype"),
    "out of range": (JSON, json.dumps({"inputs": [[[300] * 8] * 8]}), 422, "[0, 255]"),
    "negative": (NPY, npy(np.full(SHAPE, -1.0, np.float32)), 422, "[0, 255]"),
    "npy int64": (NPY, npy(np.zeros(SHAPE, np.int64)), 400, "dtype"),
    "npy complex": (NPY, npy(np.zeros(SHAPE, np.complex64)), 400, "dtype"),
    "npy object": (NPY, npy(np.array([1, "a"], dtype=object)), 400, "npy"),
    "npy header lies": (NPY, npy(np.zeros((100, 1, 8, 8), np.uint8))[:200], 400, "header"),
    "not a npy": (NPY, b"hello", 400, "npy"),
    "not an image": (PNG, np.random.default_rng(1).bytes(300), 400, "not an image"),
    "image of the wrong size": (PNG, png(np.zeros((16, 12), np.uint8)), 422, "12x16"),
    "bad JSON": (JSON, b'{"inputs": [1, 2', 400, "JSON"),
    "JSON without inputs": (JSON, b'{"pixels": []}', 400, "inputs"),
    "empty batch": (NPY, npy(np.zeros((0, *SHAPE), np.uint8)), 422, "no images"),
    "batch over max_batch": (NPY, npy(np.zeros((MAX_BATCH + 1, *SHAPE), np.uint8)), 413, "max_batch"),
    "oversized body": (JSON, b" " * (MAX_BODY + 1), 413, "max_body_bytes"),
    "unsupported content type": ("text/plain", b"1 2 3", 415, "application/json"),
    "no content type": ("", b"1 2 3", 415, "Content-Type"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_requests_get_a_one_line_4xx(url, case):
    content_type, body, status, word = BAD[case]
    headers = {"content-type": content_type} if content_type else {}
    response = httpx.post(url + "/predict", content=body, headers=headers)
    assert response.status_code == status, (case, response.text)
    error = response.json()["error"]
    assert word in error and "\n" not in error and error, (case, error)


def test_server_survives_bad_requests(made, url):
    client = httpx.Client()
    # A chunked upload has no Content-Length: the server counts while it reads.
    r = client.post(url + "/predict", content=chunks(4 * MAX_BODY), headers={"content-type": JSON})
    assert r.status_code == 413 and "max_body_bytes" in r.json()["error"]
    assert client.get(url + "/nowhere").status_code == 404 and "error" in client.get(url + "/nowhere").json()
    assert client.get(url + "/predict").status_code == 405
    for content_type, body, status, _ in BAD.values():
        assert client.post(url + "/predict", content=body, headers={"content-type": content_type}).status_code == status
    assert client.get(url + "/health").json()["status"] == "ok"
    batch = pixels(3, seed=2)
    check_answer(made, client.post(url + "/predict", json={"inputs": batch.tolist()}), batch)
    client.close()


def test_a_failing_model_is_a_500_and_the_server_keeps_serving(made, monkeypatch):
    model = made[1]

    def picky(self, fmt="auto", *, threads=None):
        def run(x):
            if x.shape[0] > 1:
                raise RuntimeError("kernel exploded\nsecond line")
            return model(x)

        return torch.no_grad()(run)

    monkeypatch.setattr(Bundle, "predictor", picky)
    with serving(made[0]) as base:
        r = httpx.post(base + "/predict", json={"inputs": pixels(2).tolist()})
        assert r.status_code == 500 and r.json()["error"] == "inference failed: RuntimeError: kernel exploded"
        check_answer(made, httpx.post(base + "/predict", json={"inputs": pixels(1).tolist()}), pixels(1))


def test_load_test_reports_percentiles_and_throughput(url):
    result = load_test(url, concurrency=2, requests=20, batch_size=2)
    assert result["ok"] == result["requests_sent"] == 20 and result["errors"] == 0, result
    assert result["p50_ms"] <= result["p95_ms"] <= result["p99_ms"] <= result["max_ms"]
    assert result["throughput_rps"] > 0 and result["throughput_ips"] == pytest.approx(2 * result["throughput_rps"])
    assert result["stopped_by"] == "requests" and result["client"] == "httpx" and result["batch_size"] == 2


def test_load_test_stops_at_its_duration(url):
    start = time.perf_counter()
    result = load_test(url, concurrency=2, requests=10**6, duration_s=1.0)
    assert time.perf_counter() - start < 5 and result["stopped_by"] == "duration"
    assert (
        0 < result["ok"] < 10**6 and result["errors"] == 0 and 0.5 <= result["duration_s"] < 3
    )  # warm-up spends up to half the budget


def test_load_test_counts_refused_requests_and_checks_its_arguments(url):
    with pytest.raises(ValueError, match="answered 422 to a warm-up request: inputs have shape"):
        load_test(url, payload=np.zeros((2, 8, 8)), requests=2)
    result = load_test(url, payload=b"nope", requests=4, warmup=0)
    assert (
        result["ok"] == 0 and result["errors"] == 4 and result["first_error"].startswith("400: body is not valid JSON")
    )
    for bad in ({"concurrency": 0}, {"requests": 0}, {"duration_s": 0}, {"batch_size": -1}):
        with pytest.raises(ValueError, match="must be"):
            load_test(url, **bad)


def test_an_unreachable_server_is_one_line():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ConnectionError) as e:
        load_test(f"http://127.0.0.1:{port}", requests=1)
    assert "workbench serve BUNDLE" in str(e.value) and str(port) in str(e.value) and "\n" not in str(e.value)


def test_serving_needs_its_dependencies_only_when_used(made, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "uvicorn" else real(name, *a))
    with pytest.raises(ImportError) as e:
        serving(made[0]).__enter__()
    assert str(e.value) == "Serving a bundle needs uvicorn: pip install starlette uvicorn httpx"
    blocked = ["starlette", "uvicorn", "httpx"]
    code = f"import sys; sys.modules.update(dict.fromkeys({blocked!r}));import workbench.deploy.serve; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "ok", out.stderr[-2000:]
