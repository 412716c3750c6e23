"""The language-model task end to end: a GPT trained on the standard library's source through the same
``run`` as the image classifiers, with its metrics, stored and reused, resumed exactly, sampled from,
shown in the tables, and every bad input one line before any work."""

import json
import math

import pytest
import torch

from workbench import ResultStore, RunConfig, generate, run
from workbench.cli import main
from workbench.data import load_token_data
from workbench.presets import preset
from workbench.report import compare, readable
from workbench.report.checkpoint import load_checkpoint, load_tokenizer
from workbench.tasks import get_task

QUICK = {"measure.batch_sizes": (1, 4), "measure.iters": 3, "measure.warmup": 1}
SMALL = {"model.depth": 1, "model.n_embd": 32, "model.n_head": 2, "model.block_size": 32, "train.batch_size": 16}


def tiny(**changes) -> RunConfig:
    return preset("gpt", device="cpu").replace(
        **{**SMALL, **QUICK, "train.steps": 40, "train.epochs": 2, "hardware.threads": 1, **changes}
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    store = ResultStore(tmp_path_factory.mktemp("lm") / "runs")
    return store, run(tiny(), store=store, progress=False)


def test_a_gpt_trains_on_the_standard_library_and_records_the_language_model_metrics(trained):
    _, r = trained
    m = r.metrics
    assert r.status == "ok" and r.config.task == "lm" and r.config.data.dataset == "pystdlib"
    assert m["loss"] < math.log(256) - 0.5  # 40 steps learn the byte frequencies at least: below uniform
    assert r.history[0]["test_loss"] > r.history[1]["test_loss"]
    assert m["perplexity"] == pytest.approx(math.exp(m["loss"]))
    assert m["bits_per_byte"] == pytest.approx(m["loss"] / math.log(2))  # byte tokens: a token is a byte
    assert m["throughput_tps"] == pytest.approx(m["throughput_ips"] * 32)
    assert m["flops_per_token"] == pytest.approx(m["flops"] / 32)
    assert m["kv_cache_bytes"] == 2 * 1 * 2 * 16 * 32 * 1 * 4  # k and v x layers x heads x head_dim x context x 4 B
    assert m["decode_tps"] > 0 and m["decode_tps_bs8"] > 0 and m["ttft_ms"] > 0 and m["kv_speedup"] > 0
    assert m["train_tps"] == m["train_ips"] > 0 and m["train_examples"] == 20 * 16 * 32  # tokens an epoch
    assert [h["epoch"] for h in r.history] == [1, 2] and r.history[-1]["test_loss"] == pytest.approx(m["loss"])
    kinds = {(b.get("kind"), b["batch_size"], b.get("kv_cache")) for b in r.benchmarks}
    assert {("generation", 1, True), ("generation", 1, False), ("generation", 8, True)} <= kinds


def test_the_checkpoint_keeps_the_tokenizer_and_rebuilds_the_gpt(trained):
    _, r = trained
    model, config = load_checkpoint(r.checkpoint)
    assert type(model).__name__ == "GPT" and config == r.config
    assert load_tokenizer(r.checkpoint).name == "byte"


def test_the_same_training_is_reused_and_the_tables_show_language_model_metrics(trained):
    store, first = trained
    again = run(tiny(**{"measure.iters": 4}), store=store, progress=False)
    assert again.reused_from == first.run_id and again.metrics["loss"] == pytest.approx(first.metrics["loss"])
    df = store.frame()
    table = readable(df)
    assert "validation perplexity (per token)" in table.columns and "test accuracy (%)" not in table.columns
    table = compare(df)
    assert {"loss", "perplexity", "decode_tps", "throughput_tps"} <= set(table.columns) and table["same_text"].all()
    assert df["text_sha256"].nunique() == 1 and first.metrics["text_source"]["python"]  # which Python's library


def test_an_interrupted_training_resumes_to_the_same_weights(tmp_path):
    from workbench.train import Checkpoint, train

    cfg = tiny(**{"train.epochs": 3, "train.steps": 30})
    task, data = get_task("lm"), load_token_data("pystdlib")
    store = ResultStore(tmp_path / "runs")
    in_progress = store.root.resolve() / "checkpoints" / f"in-progress-{cfg.training_hash()}.pt"
    in_progress.parent.mkdir(parents=True, exist_ok=True)

    class StopAfterOne(Checkpoint):
        def on_epoch_end(self, state, record):
            super().on_epoch_end(state, record)
            state.stop = "interrupted"

    with torch.random.fork_rng():
        model = task.initial_model(cfg, data)
        train(model, task.train_batches(cfg, data, "cpu"), cfg.train, callbacks=[StopAfterOne(in_progress)])
    resumed = run(cfg, store=store, progress=False)
    whole = run(cfg, store=ResultStore(tmp_path / "other"), progress=False)
    assert resumed.metrics["resumed_epochs"] == 1 and whole.metrics["resumed_epochs"] == 0
    assert resumed.metrics["loss"] == whole.metrics["loss"]  # the same batches, from (seed, step) alone


def test_generate_streams_text_from_a_stored_run(trained, capsys):
    store, r = trained
    writing = generate(r.run_id, "def ", 30, temperature=0, store=store)
    pieces = list(writing)
    assert "".join(pieces) == writing.text and len(writing.text.encode()) <= 30 and len(pieces) > 1
    batch = generate(r.run_id, ["import ", "x"], 10, temperature=0, store=store).text
    assert batch[0] == generate(r.run_id, "import ", 10, temperature=0, store=store).text
    assert main(["generate", r.run_id, "--prompt", "class ", "--max-new-tokens", "12", "--store", str(store.root)]) == 0
    assert capsys.readouterr().out.startswith("class ")


def test_generate_refuses_an_image_run_and_bad_requests_in_one_line(trained, tmp_path):
    store, r = trained
    image = run(RunConfig().replace(**{"model.name": "mlp", "train.epochs": 1, **QUICK}), store=store, progress=False)
    with pytest.raises(ValueError, match=r"is an image classifier .* generate writes text with a language-model run"):
        generate(image.run_id, "def ", 5, store=store)
    with pytest.raises(ValueError, match="max_new_tokens must be > 0"):
        generate(r.run_id, "def ", 0, store=store)
    with pytest.raises(ValueError, match="prompt must be a text that is not empty"):
        generate(r.run_id, "", 5, store=store)


def test_the_command_line_trains_a_language_model(tmp_path, capsys):
    flags = ["--depth", "1", "--n-embd", "32", "--n-head", "2", "--block-size", "16", "--steps", "10"]
    store = str(tmp_path / "runs")
    args = ["run", "--task", "lm", *flags, "--epochs", "1", "--measure-iters", "2", "--json", "--store", store]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["config"]["task"] == "lm" and out["config"]["model"]["name"] == "gpt" and out["metrics"]["decode_tps"]


TEXT_PROBLEMS = {
    "unknown dataset": ({"data.dataset": "stdlib"}, "Unknown dataset 'stdlib'. Did you mean 'pystdlib'?"),
    "unknown tokenizer": ({"data.tokenizer": "chars"}, "Unknown tokenizer 'chars'. Did you mean 'char'?"),
    "n_head": ({"model.n_head": 3}, "n_embd 32 is not divisible by n_head 3"),
    "image dataset": ({"data.dataset": "digits"}, "dataset digits is not text, and task lm models text"),
    "image model": ({"model.name": "cnn"}, "model cnn reads images, and task lm feeds tokens: choose one of gpt"),
    "image step": ({"compress": [{"kind": "static_int8"}]}, "compression step static_int8 does not apply to task lm"),
    "two budgets": ({"train.tokens": 1000}, r"train.steps \(40\) and train.tokens \(1000\) are two budgets"),
}


@pytest.mark.parametrize("case", TEXT_PROBLEMS, ids=list(TEXT_PROBLEMS))
def test_bad_language_model_input_is_one_line_before_any_work(tmp_path, case):
    changes, message = TEXT_PROBLEMS[case]
    store = ResultStore(tmp_path / "runs")
    with pytest.raises(ValueError, match=message) as caught:
        run(tiny(**changes), store=store, progress=False)
    assert "\n" not in str(caught.value) and not list(store.root.glob("results/*"))


def _text_file(tmp_path, data: bytes):
    path = tmp_path / "t.txt"
    path.write_bytes(data)
    return f"text:{path}"


FILE_PROBLEMS = {
    "empty": (b"", "empty|no text"),
    "binary": (b"\x00\x01\xff\xfe" * 64, "is a binary file, not text"),
    "not UTF-8": (b"caf\xe9 au lait " * 40, r"not valid UTF-8 text: byte offset 3 \(0xe9\)"),
    "shorter than a window": ("ab" * 150, "model.block_size=32 is longer than .*validation text \\(30 tokens\\)"),
}


@pytest.mark.parametrize("case", FILE_PROBLEMS, ids=list(FILE_PROBLEMS))
def test_a_text_file_that_cannot_train_is_one_line_and_nothing_is_stored(tmp_path, case):
    data, message = FILE_PROBLEMS[case]
    store = ResultStore(tmp_path / "runs")
    data = data.encode() if isinstance(data, str) else data
    with pytest.raises(ValueError, match=message):
        run(tiny(**{"data.dataset": _text_file(tmp_path, data)}), store=store, progress=False)
    assert not list(store.root.glob("results/*"))


def test_the_char_tokenizer_names_a_character_it_never_saw(trained):
    data = load_token_data("pystdlib", "char")
    with pytest.raises(ValueError, match="never saw '☃'"):
        data.tokenizer.encode("x = '☃'")


def test_a_search_over_language_model_configs_minimises_perplexity_size_and_decode_time(tmp_path):
    from workbench.search import search

    result = search(
        base=tiny(**{"train.steps": 10, "train.epochs": 1}),
        strategy="random",
        n_trials=2,
        storage="memory",
        store=tmp_path / "runs",
        progress=False,
    )
    assert result.settings.objectives == ("perplexity", "size_bytes", "decode_tps")
    assert "model.n_embd" in result.settings.space.params
    assert len(result.trials) == 2 and result.trials["perplexity"].notna().all()


def test_compiled_decoding_is_timed_beside_eager():
    from workbench.measure import generation_timing
    from workbench.models import GPT

    torch.manual_seed(0)
    gpt = GPT(vocab_size=32, n_layer=1, n_head=2, n_embd=16, block_size=16)
    [(m, records)] = generation_timing(
        [gpt], torch.arange(4), new_tokens=6, iters=1, batch_sizes=(1,), modes=("eager", "compiled")
    )
    assert {(r["mode"], r["kv_cache"]) for r in records} == {
        (mode, kv) for mode in ("eager", "compiled") for kv in (True, False)
    }
    assert m["decode_tps_compiled"] > 0 and m["kv_speedup_compiled"] > 0 and m["generation_compile_s"] > 0
    assert tiny(**{"measure.modes": ("eager", "compiled")}).measure.modes == ("eager", "compiled")
    with pytest.raises(ValueError, match=r"measure.modes onnxruntime: a language model is timed eager and compiled"):
        tiny(**{"measure.modes": ("eager", "onnxruntime")})


def test_a_smaller_run_drafts_for_a_larger_one_and_the_text_is_the_same(trained, capsys):
    store, target = trained
    draft = run(tiny(**{"model.n_embd": 16, "model.n_head": 1, "train.steps": 20}), store=store, progress=False)
    alone = generate(target.run_id, "def ", 20, temperature=0, store=store).text
    writing = generate(target.run_id, "def ", 20, temperature=0, store=store, draft=draft.run_id, lookahead=3)
    assert writing.text == alone and writing.stats.new_tokens == 20 and writing.stats.proposed > 0
    args = ["generate", target.run_id, "--draft", draft.run_id, "--max-new-tokens", "20", "--store", str(store.root)]
    assert main(args) == 0  # greedy by default with a draft
    out = capsys.readouterr()
    assert out.out == "def " + alone + "\n" and "the draft's proposals kept" in out.err
    with pytest.raises(ValueError, match="speculative decoding here is greedy: pass temperature=0"):
        generate(target.run_id, "def ", 5, store=store, draft=draft.run_id)
    char = run(tiny(**{"data.tokenizer": "char", "train.steps": 10, "train.epochs": 1}), store=store, progress=False)
    with pytest.raises(
        ValueError, match=r"the draft's tokenizer \(CharTokenizer.*\) is not the model's \(ByteTokenizer"
    ):
        generate(target.run_id, "def ", 5, temperature=0, store=store, draft=char.run_id)


def test_compile_auto_probes_a_language_model_and_records_its_decision(tmp_path):
    r = run(tiny(**{"hardware.compile": "auto", "train.steps": 20, "train.epochs": 1}), store=None, progress=False)
    assert r.status == "ok" and isinstance(r.metrics["compiled"], bool) and r.metrics["compile_probe_seconds"] > 0
    assert "compile" in r.metrics["compile_reason"]


def test_fewer_bits_cost_a_trained_gpt_more_validation_loss(trained):
    from workbench.compress import low_bit_curve

    _, r = trained
    task, data = get_task("lm"), load_token_data("pystdlib")
    model, config = load_checkpoint(r.checkpoint)
    with torch.no_grad():
        curve = low_bit_curve(
            model, lambda m: task.evaluate(config, m, data, "cpu")["loss"], bits=(8, 4, 2), group_sizes=(16,)
        )
    fp32, eight, four, two = curve.score.tolist()
    assert abs(eight - fp32) < 0.01 * fp32 and two > four > fp32 * 0.99
