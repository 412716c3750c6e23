"""Fine-tuning a trained GPT on other text through ``run``: from its weights (``train.init_from``), every
weight or rank-r LoRA adapters merged at the end (``train.lora_*``), with what training kept (trained parameters,
optimizer state); activation checkpointing as a switch that changes memory, not results; bad settings one line
before any work."""

import json

import pytest
import torch
from test_lm import tiny

from workbench import ConfigError, ResultStore, RunConfig, run
from workbench.report.checkpoint import load_checkpoint
from workbench.tasks import get_task

OTHER_TEXT = "".join(f"Verse {i}: the quick brown fox jumps over the lazy dog, and sings.\n" for i in range(400))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("finetune")
    (root / "other.txt").write_text(OTHER_TEXT)
    store = ResultStore(root / "runs")
    base = run(tiny(), store=store, progress=False)
    other = {"train.init_from": base.run_id, "data.dataset": f"text:{root / 'other.txt'}", "train.steps": 30}
    full = run(tiny(**other), store=store, progress=False)
    lora = run(
        tiny(**other, **{"train.lora_rank": 4, "train.lora_targets": ("c_attn", "mlp.c_fc")}),
        store=store,
        progress=False,
    )
    return store, base, full, lora


def test_full_fine_tuning_starts_from_the_run_and_learns_the_other_text(runs):
    _, base, full, _ = runs
    model, _ = load_checkpoint(base.checkpoint)
    task = get_task("lm")
    data = task.load(full.config, "data")
    before = task.evaluate(full.config, model, data, torch.device("cpu"))["loss"]
    assert full.metrics["loss"] < before  # on the other text's validation windows
    assert full.metrics["trainable_params"] == full.metrics["params"]


def test_lora_trains_a_few_parameters_keeps_little_optimizer_state_and_saves_a_plain_gpt(runs):
    _, base, full, lora = runs
    m = lora.metrics
    # rank 4 on c_attn (32 -> 96) and c_fc (32 -> 128) of one block: 4 x (32 + 96) + 4 x (32 + 128)
    assert m["trainable_params"] == 4 * (32 + 96) + 4 * (32 + 128)
    assert m["optimizer_state_bytes"] < 0.1 * full.metrics["optimizer_state_bytes"]
    assert m["params"] == base.metrics["params"]  # merged: the base model's size and shape
    model, _ = load_checkpoint(lora.checkpoint)
    assert not any("lora" in k for k in model.state_dict())
    assert model.lm_head.weight is model.transformer.wte.weight
    task = get_task("lm")
    data = task.load(lora.config, "data")
    assert task.evaluate(lora.config, model, data, torch.device("cpu"))["loss"] == pytest.approx(m["loss"], rel=1e-5)
    base_model, _ = load_checkpoint(base.checkpoint)
    assert torch.equal(model.transformer.h[0].attn.c_proj.weight, base_model.transformer.h[0].attn.c_proj.weight)
    assert not torch.equal(model.transformer.h[0].attn.c_attn.weight, base_model.transformer.h[0].attn.c_attn.weight)


def test_activation_checkpointing_changes_memory_not_results(tmp_path):
    store = ResultStore(tmp_path / "runs")
    plain = run(tiny(), store=store, progress=False)
    recomputed = run(tiny(**{"hardware.activation_checkpointing": True}), store=store, progress=False)
    assert recomputed.reused_from is None  # its own training: the switch is a training setting
    assert recomputed.metrics["loss"] == pytest.approx(plain.metrics["loss"], rel=1e-5)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"train.lora_rank": 64}, r"LoRA rank 64 is larger than .* use a rank of at most 32"),
        ({"train.lora_rank": 4, "train.lora_targets": ("q_proj",)}, r"'q_proj' names no Linear layer"),
        ({"train.lora_rank": 4, "train.lora_targets": ("lm_head",)}, r"tied to transformer.wte"),
        ({"train.init_from": "no-such-run"}, r"train.init_from: .*no-such-run"),
    ],
)
def test_bad_fine_tuning_settings_are_one_line_before_any_work(tmp_path, changes, message):
    with pytest.raises(ConfigError, match=message):
        run(tiny(**changes), store=ResultStore(tmp_path / "runs"), progress=False)
    assert not list(tmp_path.rglob("*.*"))


def test_starting_from_another_architecture_or_on_images_is_one_line(runs, tmp_path):
    store, base, _, _ = runs
    with pytest.raises(ConfigError, match=r"another architecture: set model.n_embd=32 \(here 64\)"):
        run(tiny(**{"train.init_from": base.run_id, "model.n_embd": 64}), store=store, progress=False)
    for key, value in (("train.lora_rank", 4), ("hardware.activation_checkpointing", True)):
        with pytest.raises(ConfigError, match=f"{key} is built for a language model"):
            run(RunConfig().replace(**{key: value}), store=ResultStore(tmp_path / "runs"), progress=False)


def test_lora_fine_tuning_and_compression_of_a_gpt_from_the_command_line(runs, tmp_path, capsys):
    from workbench.cli import main

    store, base, _, _ = runs
    text = tmp_path / "more.txt"
    text.write_text(OTHER_TEXT[::-1])
    small = ["--depth", "1", "--n-embd", "32", "--n-head", "2", "--block-size", "32", "--batch-size", "16"]
    quick = ["--steps", "10", "--epochs", "1", "--threads", "1", "--measure-batch-sizes", "1", "--measure-iters", "2"]
    common = ["run", "--task", "lm", *small, *quick, "--store", str(store.root), "--json"]
    assert main([*common, "--dataset", f"text:{text}", "--init-from", base.run_id, "--lora-rank", "2"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["metrics"]["trainable_params"] == 2 * (32 + 96)  # rank 2 on the one block's c_attn
    assert main([*common, "--compress", "prune_gpt:heads=0.5,mlp=0.5", "--compress", "kv_int8"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert [e["step"] for e in row["metrics"]["compress_log"]] == ["prune_gpt", "kv_int8"]


def test_an_8_bit_adamw_keeps_about_a_quarter_of_the_optimizer_state():
    from workbench.train import TrainConfig, make_optimizer, optimizer_state_bytes

    # One weight shape: torchao compiles its update once per shape, and a GPT's handful would take a minute here.
    layer = torch.nn.Linear(256, 256, bias=False)
    states = {}
    for name in ("adamw", "adamw_8bit"):
        optimizer = make_optimizer(layer, TrainConfig(optimizer=name, lr=1e-3))
        before = layer.weight.detach().clone()
        layer(torch.randn(4, 256)).square().mean().backward()
        optimizer.step()
        assert not torch.equal(layer.weight, before)  # it updates
        states[name] = optimizer_state_bytes(optimizer)
    # Two moments of 65,536 numbers: float32 against 8 bits with a float32 scale per 256 (and a 256-entry code map).
    assert states["adamw"] == 2 * 65536 * 4 + 4
    assert states["adamw_8bit"] == 2 * (65536 + 256 * 4 + 256 * 4) + 4
