"""A language model exported and served: the bundle's logits match the run's, batched decoding gives each request
what it gets alone, answers come as JSON or streamed events, limits and the token answer with 4xx while the
server keeps serving, a client that leaves frees its slot, and the load test times each token. Every server
here is a real uvicorn on 127.0.0.1."""

import json
import threading
import time

import pytest
from test_lm import tiny

from workbench import ResultStore, cli, run
from workbench._untrusted import UnsafeFileError
from workbench.compress import parse_step
from workbench.deploy import (
    DecodeEngine,
    Sampling,
    card_text,
    export,
    load_bundle,
    load_language_model,
    load_test,
    load_test_levels,
    serving,
    stream_generate,
)
from workbench.models.gpt import GPT, gpt_args
from workbench.report.charts import serving_chart

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")
pytest.importorskip("safetensors")

TOKEN = "s3cret-token-for-tests-0123456789"
PROMPTS = ["def ", "import os\n", "class Config:\n    def __init__(self", "x", "return None  # and a long comment"]


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    root = tmp_path_factory.mktemp("lmserve")
    store = ResultStore(root / "runs")
    float_run = run(tiny(), store=store, progress=False)
    int8_run = run(tiny(name="int8", compress=(parse_step("dynamic_int8"),)), store=store, progress=False)
    return {
        "float": (float_run, export(float_run.run_id, root / "float", store=store)),
        "int8": (int8_run, export(int8_run, root / "int8", store=store)),
        "store": store,
    }


def test_a_bundle_holds_weights_whose_logits_match_the_run(bundles, tmp_path):
    for kind, fmt, file in (("float", "safetensors", "model.safetensors"), ("int8", "state_dict", "model.pt")):
        result, bundle = bundles[kind]
        card = bundle.card
        assert bundle.task == "lm" and card["files"]["weights"]["format"] == fmt and (bundle.path / file).is_file()
        assert card["parity"]["passed"] and card["parity"]["max_abs_error"] == 0.0  # the same weights, read back
        assert card["metrics"]["perplexity"] == pytest.approx(result.metrics["perplexity"], rel=1e-6)
        assert card["decode"]["tokens_per_s"] > 0 and card["run_id"] == result.run_id
        assert file in card_text(bundle) and "perplexity" in card_text(bundle)
    assert "packed" in bundles["int8"][1].card["files"]["weights"]["why"]
    again = export(bundles["float"][0].run_id, tmp_path / "again", store=bundles["store"])
    assert export(bundles["int8"][0].run_id, again.path, store=bundles["store"], overwrite=True).card["run_id"] == (
        bundles["int8"][0].run_id  # --force replaces a language-model bundle too
    )
    float_bytes = bundles["float"][1].card["files"]["weights"]["bytes"]
    assert bundles["int8"][1].card["files"]["weights"]["bytes"] < float_bytes  # int8 Linear weights
    # A weights file that is not the one the card describes is refused before anything loads.
    import shutil

    copy = tmp_path / "b"
    shutil.copytree(bundles["float"][1].path, copy)
    data = bytearray((copy / "model.safetensors").read_bytes())
    data[-1] ^= 1
    (copy / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(UnsafeFileError, match="sha256 differs"):
        load_language_model(load_bundle(copy))


def test_image_only_export_options_are_refused_for_a_language_model(bundles, tmp_path, capsys):
    run_id = bundles["float"][0].run_id
    store = str(bundles["store"].root)
    assert cli.main(["export", run_id, "--out", str(tmp_path / "x"), "--store", store, "--format", "onnx"]) == 2
    assert "drop --format" in capsys.readouterr().err


def _served_alone(model, tokenizer, prompts, max_new_tokens):
    engine = DecodeEngine(model, tokenizer, batching="off")
    try:
        return [engine.generate(p, Sampling(max_new_tokens=max_new_tokens, temperature=0))["tokens"] for p in prompts]
    finally:
        engine.close()


@pytest.mark.parametrize("cache", ["float", "int8"])
def test_batched_greedy_decoding_gives_each_request_its_output_alone(bundles, cache):
    model, tokenizer = load_language_model(bundles["float"][1])
    if cache == "int8":  # the int8 KV cache has its own tensors (scales) to merge and drop
        int8 = GPT(**{**gpt_args(model), "kv_cache": "int8"})
        int8.load_state_dict(model.state_dict())
        model = int8.eval()
    lengths = [70 - 9 * i for i in range(len(PROMPTS))]  # past the 32-token context: rows shift theirs
    alone = _served_alone(model, tokenizer, PROMPTS, max(lengths))
    for batching in ("continuous", "static"):
        engine = DecodeEngine(model, tokenizer, batching=batching, max_batch=3)  # 5 requests, 3 slots: some wait
        answers = [None] * len(PROMPTS)

        def ask(i, engine=engine, answers=answers):
            time.sleep(0.002 * i)  # arriving while others decode
            answers[i] = engine.generate(PROMPTS[i], Sampling(max_new_tokens=lengths[i], temperature=0), timeout_s=60)

        threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(PROMPTS))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        engine.close()
        for i, answer in enumerate(answers):
            assert answer["tokens"] == alone[i][: lengths[i]], (batching, i)
        assert any(a["context_shifts"] > 0 for a in answers)
        assert engine.rows_decoded > engine.steps  # rows really shared decode steps


def _events(lines):
    events, kind = [], None
    for line in lines:
        if line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("data: "):
            events.append((kind or "token", json.loads(line[6:])))
            kind = None
    return events


def test_generate_answers_as_json_and_as_streamed_events(bundles):
    with serving(bundles["int8"][1].path) as url:
        health = httpx.get(url + "/health").json()
        assert health["task"] == "lm" and health["batching"] == "continuous"
        whole = httpx.post(url + "/generate", json={"prompt": "def ", "max_new_tokens": 12, "temperature": 0}).json()
        assert whole["finish_reason"] == "length" and whole["completion_tokens"] == 12 and whole["ttft_ms"] > 0
        body = {"prompt": "def ", "max_new_tokens": 12, "temperature": 0, "stream": True}
        with httpx.stream("POST", url + "/generate", json=body) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            events = _events(r.iter_lines())
        tokens = [e for kind, e in events if kind == "token"]
        kind, done = events[-1]
        assert kind == "done" and done["tokens"] == whole["tokens"] == [e["token"] for e in tokens]
        assert "".join(e["text"] for e in tokens) == done["text"] == whole["text"]
        # A stop string ends the text before it; the same seed samples the same tokens.
        stop = whole["text"][3:5] or whole["text"][:1]
        stopped = httpx.post(
            url + "/generate", json={"prompt": "def ", "max_new_tokens": 12, "temperature": 0, "stop": [stop]}
        )
        assert stopped.json()["finish_reason"] == "stop" and stop not in stopped.json()["text"]
        sampled = [
            httpx.post(url + "/generate", json={"prompt": "a", "max_new_tokens": 8, "seed": 7, "top_k": 20}).json()
            for _ in range(2)
        ]
        assert sampled[0]["tokens"] == sampled[1]["tokens"]
        assert httpx.get(url + "/card").json()["task"] == "lm"
        pieces = stream_generate(url, "def ", max_new_tokens=12, temperature=0)
        text = ""
        with pytest.raises(StopIteration) as finished:
            while True:
                text += next(pieces)
        assert text == finished.value.value["text"] == whole["text"]
        with pytest.raises(ValueError, match="answered 422: max_new_tokens must be"):
            next(stream_generate(url, "def ", max_new_tokens=0))


def test_the_load_test_command_takes_levels_and_says_when_generate_is_missing(bundles, capsys):
    with serving(bundles["float"][1].path) as url:
        argv = ["load-test", url, "--generate", "--concurrency", "1", "2", "--requests", "2", "--max-new-tokens", "3"]
        assert cli.main(argv) == 0
        table = capsys.readouterr().out
        assert "tokens_per_s" in table and "ttft_p99_ms" in table and len(table.strip().splitlines()) == 3
        assert cli.main(["load-test", url, "--requests", "2"]) == 2
        assert "serves a language model: load-test it with generate=True (--generate)" in capsys.readouterr().err


BAD = [
    ({"content": b"{", "headers": {"content-type": "application/json"}}, 400, "not JSON"),
    ({"content": b"[1]", "headers": {"content-type": "application/json"}}, 400, "not an object"),
    ({"content": b"prompt", "headers": {"content-type": "text/plain"}}, 415, "application/json"),
    ({"json": {}}, 422, "prompt must be"),
    ({"json": {"prompt": 5}}, 422, "prompt must be"),
    ({"json": {"prompt": "a", "max_new_tokens": 0}}, 422, "max_new_tokens"),
    ({"json": {"prompt": "a", "max_new_tokens": 10_000}}, 422, "cap"),
    ({"json": {"prompt": "a", "temperature": -1}}, 422, "temperature"),
    ({"json": {"prompt": "a", "top_p": 1.5}}, 422, "top_p"),
    ({"json": {"prompt": "a", "top_k": 0}}, 422, "top_k"),
    ({"json": {"prompt": "a", "seed": "x"}}, 422, "seed"),
    ({"json": {"prompt": "a", "stop": [""]}}, 422, "stop"),
    ({"json": {"prompt": "a", "stream": "yes"}}, 422, "stream"),
    ({"json": {"prompt": "a", "model": "gpt-4"}}, 422, "unknown field"),
    ({"json": {"prompt": "a" * 100}}, 422, "max_prompt_tokens"),
    ({"content": b"x" * 70_000, "headers": {"content-type": "application/json"}}, 413, "max_body_bytes"),
]


def test_bad_requests_get_their_4xx_and_the_server_keeps_serving(bundles):
    with serving(bundles["float"][1].path) as url:
        for request, status, words in BAD:
            r = httpx.post(url + "/generate", **request)
            assert r.status_code == status and words in r.json()["error"], (request, r.text)
        assert httpx.get(url + "/generate").status_code == 405
        assert httpx.post(url + "/predict", json={}).status_code == 404
        ok = httpx.post(url + "/generate", json={"prompt": "a", "max_new_tokens": 2})
        assert ok.status_code == 200 and ok.json()["completion_tokens"] == 2


def test_a_token_is_required_beyond_loopback_and_checked_on_every_request(bundles, capsys):
    path = str(bundles["float"][1].path)
    assert cli.main(["serve", path, "--host", "0.0.0.0", "--port", "0"]) == 2
    assert "needs a token" in capsys.readouterr().err
    with serving(path, token=TOKEN) as url:
        for headers in (
            {},
            {"authorization": "Bearer wrong"},
            {"authorization": TOKEN},
            {"authorization": f"Basic {TOKEN}"},
        ):
            r = httpx.post(url + "/generate", json={"prompt": "a", "max_new_tokens": 1}, headers=headers)
            assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
            assert TOKEN not in r.text
        good = {"authorization": f"Bearer {TOKEN}"}
        assert httpx.get(url + "/health", headers=good).json()["refused"]["unauthorized"] == 4
        assert httpx.get(url + "/health", headers={"authorization": f"bearer {TOKEN}"}).status_code == 200  # any case
        big = httpx.get(url + "/health", headers={**good, "x-padding": "a" * 20_000})  # one write, one read
        assert big.status_code == 431 and "over this server's 16,384" in big.json()["error"]
        assert httpx.post(url + "/generate", json={"prompt": "a", "max_new_tokens": 1}, headers=good).status_code == 200
        report = load_test(url, generate=True, token=TOKEN, concurrency=2, requests=4, max_new_tokens=4)
        assert report["ok"] == 4 and report["errors"] == 0


def test_max_streams_and_a_client_that_leaves(bundles):
    # 20,000 tokens take this model over 10 s (about 1 ms a token, measured): the slot stays taken unless freed.
    with serving(bundles["float"][1].path, max_streams=1, max_new_tokens=20_000) as url:
        long = {"prompt": "a", "max_new_tokens": 20_000, "temperature": 0, "stream": True}
        with httpx.stream("POST", url + "/generate", json=long) as r:
            lines = r.iter_lines()  # kept: a dropped iterator closes the connection
            next(lines)  # decoding has started: the one stream is taken
            busy = httpx.post(url + "/generate", json={"prompt": "a", "max_new_tokens": 1})
            assert busy.status_code == 429 and busy.headers["retry-after"] == "1"
        # The client left after one token: its slot is free again long before its tokens would all be decoded.
        deadline = time.monotonic() + 10
        while httpx.get(url + "/health").json()["in_flight"] and time.monotonic() < deadline:
            time.sleep(0.02)
        health = httpx.get(url + "/health").json()
        assert health["in_flight"] == 0 and health["cancelled"] == 1
        # The same for a client waiting for a JSON answer: it gives up, the server notices within 50 ms.
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(url + "/generate", json={**long, "stream": False}, timeout=0.5)
        while httpx.get(url + "/health").json()["in_flight"] and time.monotonic() < deadline + 10:
            time.sleep(0.02)
        health = httpx.get(url + "/health").json()
        assert health["in_flight"] == 0 and health["cancelled"] == 2
        assert httpx.post(url + "/generate", json={"prompt": "a", "max_new_tokens": 1}).status_code == 200


def test_a_client_over_the_rate_limit_gets_429_with_retry_after(bundles):
    with serving(bundles["float"][1].path, rate_limit=1) as url, httpx.Client() as client:
        time.sleep(1.1)  # the bucket (one request) refills after serving's own health check
        answers = [client.get(url + "/health") for _ in range(6)]  # far faster than one a second
        refused = [a for a in answers if a.status_code == 429]
        assert answers[0].status_code == 200 and refused
        assert refused[0].headers["retry-after"] == "1" and "rate limit of 1 requests a second" in refused[0].text
        time.sleep(1.1)
        assert client.get(url + "/health").json()["refused"]["rate_limited"] == len(refused)


def test_the_load_test_times_each_token_and_the_chart_shows_both_policies(bundles):
    rows = []
    for batching in ("off", "continuous"):
        with serving(bundles["float"][1].path, batching=batching) as url:
            rows.append(load_test_levels(url, [1, 4], generate=True, requests=8, max_new_tokens=8, duration_s=60))
    import pandas as pd

    table = pd.concat(rows)
    assert (table["ok"] == 8).all() and (table["errors"] == 0).all()
    assert (table["completion_tokens"] == 64).all()
    assert (table["ttft_p50_ms"] > 0).all() and (table["tbt_p50_ms"] > 0).all() and (table["tokens_per_s"] > 0).all()
    assert set(table["batching"]) == {"off", "continuous"}
    fig = serving_chart(table.to_dict("records"))
    assert [a.get_ylabel() for a in fig.axes] == ["time to first token (ms)", "tokens/s, all requests together"]
