"""Hardware speed: where the time of a run goes (compile and warm-up kept apart from steady epochs,
time to accuracy) and the inference grid of batch size x precision x mode."""

import re

import pytest
import torch

from workbench import ModelConfig, RunConfig, TrainConfig, inference_sweep, run, time_to_accuracy
from workbench.report import charts

pytestmark = pytest.mark.usefixtures("one_thread")


def test_a_run_keeps_its_first_epoch_apart_from_the_steady_ones_and_knows_when_it_reached_a_target():
    r = run(RunConfig(model=ModelConfig(name="mlp"), train=TrainConfig(epochs=3)), store=None, progress=False)
    elapsed = [h["elapsed_s"] for h in r.history]
    assert elapsed == pytest.approx(list(torch.tensor([h["seconds"] for h in r.history]).cumsum(0).tolist()))
    m = r.metrics
    assert m["first_epoch_seconds"] == r.history[0]["seconds"]
    assert m["steady_epoch_seconds"] == pytest.approx(
        sorted(h["seconds"] for h in r.history[1:])[0] / 2 + sorted(h["seconds"] for h in r.history[1:])[1] / 2
    )
    assert m["warmup_seconds"] == pytest.approx(
        max(0.0, m["first_epoch_seconds"] - m["steady_epoch_seconds"]), abs=1e-6
    )
    reached = time_to_accuracy(r.history, 0.5)
    assert reached["epoch"] is not None and reached["seconds"] == elapsed[reached["epoch"] - 1]
    assert time_to_accuracy(r.history, 1.01) == {"epoch": None, "seconds": None}


def test_the_inference_sweep_times_every_combination_that_runs_here_and_says_why_for_the_rest(store):
    trained = run(
        RunConfig(model=ModelConfig(name="cnn", width=0.25), train=TrainConfig(epochs=1)), store=store, progress=False
    )
    df = inference_sweep(
        trained.run_id,
        store=store,
        batch_sizes=(1, 8),
        precisions=("fp32", "tf32", "bf16"),
        modes=("eager", "compiled", "max-autotune"),
        device="cpu",
        warmup=1,
        iters=5,
    )
    assert len(df) == 3 * 3 * 2 and set(df["run"]) == {trained.config.name or trained.run_id}
    ran = df[df["latency_ms"].notna()]
    assert {(p, m) for p, m in ran[["precision", "mode"]].values} == {
        ("fp32", "eager"),
        ("fp32", "compiled"),
        ("bf16", "eager"),
        ("bf16", "compiled"),
    }
    assert (ran["throughput_ips"] > 0).all() and (ran["latency_ms_q25"] <= ran["latency_ms_q75"]).all()
    assert set(ran.loc[ran["precision"] == "bf16", "dtype"]) == {"bfloat16"}
    # Each precision's modes were timed together, in turns.
    assert ran.groupby("precision")["timed_with"].nunique().tolist() == [1, 1]
    skipped = df[df["latency_ms"].isna()]
    assert skipped.loc[skipped["precision"] == "tf32", "skipped"].str.contains("CUDA").all()
    autotune = skipped[
        (skipped["mode"] == "max-autotune") & (skipped["precision"] != "tf32")
    ]  # tf32 rows say tf32's reason
    assert len(autotune) == 4 and autotune["skipped"].str.contains("GPU").all()
    fig = charts.inference_sweep_chart(df)
    assert len(fig.axes[0].lines) == 4 and ran["device_name"].iloc[0] in fig.get_suptitle()
    assert "not run here" in fig._supxlabel.get_text()
    with pytest.raises(ValueError, match="Unknown inference_grid precision 'int3'"):
        inference_sweep(trained.run_id, store=store, precisions=("int3",))
    with pytest.raises(ValueError, match="needs input_shape"):
        inference_sweep(torch.nn.Linear(2, 2))


def test_profile_splits_real_training_steps_into_phases_and_names_the_bottleneck():
    from workbench import AugmentConfig, profile

    plain = RunConfig(model=ModelConfig(name="mlp", width=0.25))
    df = profile(plain, steps=8, warmup=2)
    assert df["phase"].tolist() == ["data", "forward", "backward", "optimizer", "other (overhead, gaps, idle)"]
    assert df["share"].sum() == pytest.approx(1.0) and (df["ms_per_step"] >= 0).all()
    assert df["ms_per_step"].sum() == pytest.approx(df.attrs["step_ms"], rel=0.01)
    assert df.attrs["steps"] == 8 and df.attrs["device"] == "cpu" and df.attrs["bottleneck"]
    # Heavy per-batch augmentation on a tiny model moves the time into fetching the batch.
    augmented = profile(
        plain.replace(**{"data.augment": AugmentConfig(rotate=20.0, crop=2, cutout=3)}), steps=8, warmup=2
    )
    share = lambda d, phase: float(d.set_index("phase").loc[phase, "share"])
    assert share(augmented, "data") > 2 * share(df, "data")
    fig = charts.profile_chart(augmented)
    assert fig.axes[0].get_xlabel() == "share of the training step (%)" and "batch 64" in fig.axes[0].get_title()


def test_the_bottleneck_sentence_follows_the_shares():
    import pandas as pd

    from workbench.pipeline.profiling import _bottleneck

    def shares(data, fwd, bwd, opt, rest):
        return pd.Series(
            {"data": data, "forward": fwd, "backward": bwd, "optimizer": opt, "other (overhead, gaps, idle)": rest}
        )

    assert _bottleneck(shares(0.5, 0.2, 0.2, 0.05, 0.05), cuda=False).startswith("data loading: 50%")
    assert "CUDA graphs" in _bottleneck(shares(0.05, 0.1, 0.1, 0.05, 0.7), cuda=True)
    assert _bottleneck(shares(0.05, 0.1, 0.2, 0.4, 0.25), cuda=False).startswith("the optimizer: 40%")
    assert _bottleneck(shares(0.05, 0.4, 0.45, 0.05, 0.05), cuda=False).startswith("compute: 85%")


def test_a_halted_training_stops_mid_epoch():
    from workbench.train import Callback, train

    class HaltAfterTwo(Callback):
        def on_batch_end(self, state):
            state.halt = state.step >= 2

    x, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
    model = torch.nn.Linear(4, 2)
    out = train(
        model,
        [(x[i : i + 8], y[i : i + 8]) for i in range(0, 64, 8)],
        TrainConfig(epochs=3),
        callbacks=[HaltAfterTwo()],
    )
    assert len(out.history) == 1 and out.status == "ok" and out.images == 16


def test_optimizer_implementations_train_alike_and_fused_is_refused_where_torch_has_no_kernel():
    from workbench import preflight

    base = RunConfig(model=ModelConfig(name="mlp"), train=TrainConfig(epochs=2, optimizer="adamw", lr=2e-3)).replace(
        **{"hardware.threads": 1}
    )
    accuracy = {
        impl: run(base.replace(**{"hardware.optimizer_impl": impl}), store=None, progress=False).metrics["accuracy"]
        for impl in ("for-loop", "foreach", "fused")
    }
    assert max(accuracy.values()) - min(accuracy.values()) < 0.02, accuracy  # the same update, other kernels
    problems = preflight(base.replace(**{"train.optimizer": "rmsprop", "hardware.optimizer_impl": "fused"})).problems
    assert problems and "no kernel for rmsprop" in problems[0]
    notes = preflight(base.replace(**{"hardware.device": "cpu", "hardware.cudnn_benchmark": True})).notes
    assert any("CUDA GPU only" in n for n in notes)


def test_every_hardware_option_is_a_flag_and_a_panel_control(store):
    import dataclasses

    from workbench import HardwareConfig, Workbench
    from workbench.cli import _parser, config_from_args

    args = _parser(with_run_flags=True)[0].parse_args(
        ["run", "--compile-mode", "max-autotune", "--optimizer-impl", "fused", "--cudnn-benchmark", "--tf32"]
    )
    hw = config_from_args(args).hardware
    assert (hw.compile_mode, hw.optimizer_impl, hw.cudnn_benchmark, hw.tf32) == ("max-autotune", "fused", True, True)
    panel = Workbench(store=store)
    assert {f"hardware.{f.name}" for f in dataclasses.fields(HardwareConfig)} <= set(panel.controls)


def test_a_run_records_achieved_tflops_beside_a_measured_matmul_ceiling():
    from workbench.measure import achieved, matmul_ceiling

    r = run(
        RunConfig(model=ModelConfig(name="cnn", width=0.5), train=TrainConfig(epochs=1)).replace(
            **{"hardware.threads": 1}
        ),
        store=None,
        progress=False,
    )
    m = r.metrics
    assert m["inference_tflops"] == pytest.approx(achieved(m["flops"], m["throughput_ips"], training=False))
    # At the speed of a steady epoch, so a compiled run's compiling does not count as slow arithmetic.
    assert m["train_tflops"] == pytest.approx(3 * m["flops"] * m["train_examples"] / m["steady_epoch_seconds"] / 1e12)
    assert m["ceiling_dtype"] == "float32" and m["ceiling_tflops"] > 0
    assert 0 < m["inference_ceiling_share"] == pytest.approx(m["inference_tflops"] / m["ceiling_tflops"])
    # The probe runs at the thread count of its caller and is cached for it.
    torch.set_num_threads(1)
    assert matmul_ceiling("cpu") == matmul_ceiling("cpu") and matmul_ceiling("cpu")["threads"] == 1


def test_many_compiled_shapes_of_one_model_each_get_a_graph_instead_of_silently_running_eager():
    import torch._dynamo
    from torch._dynamo.utils import counters

    from workbench.measure.modes import compile_room

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(4, 2)

        def forward(self, x):
            return self.fc(x).relu()

    def graphs_for(shapes):
        torch._dynamo.reset()
        counters.clear()
        compiled = torch.compile(Tiny(), backend="eager", dynamic=False)  # as timing compiles: one graph per shape
        for n in range(1, shapes + 1):
            compiled(torch.randn(n, 4))
        return counters["stats"]["unique_graphs"]

    assert graphs_for(12) < 12  # dynamo's default limit: past it the other shapes ran eager
    with compile_room(24):
        assert graphs_for(12) == 12
    torch._dynamo.reset()


def test_training_curves_can_be_read_against_training_time():
    r = run(RunConfig(model=ModelConfig(name="mlp"), train=TrainConfig(epochs=2)), store=None, progress=False)
    from workbench.report import results_frame

    ax = charts.history_chart(results_frame([r]), "test_accuracy", x="elapsed_s").axes[0]
    assert ax.get_xlabel() == "training time so far (s)" and "against training time" in ax.get_title()
    assert list(ax.lines[0].get_xdata()) == [h["elapsed_s"] for h in r.history]
    with pytest.raises(ValueError, match="x must be 'epoch' or 'elapsed_s'"):
        charts.history_chart(results_frame([r]), x="step")


def test_compile_auto_probes_real_steps_decides_from_them_and_leaves_the_training_unchanged(store):
    """auto times real steps and decides from those numbers (its reason carries them), and the model it then
    trains is bit-identical to the same choice made by hand (the probe restores weights, BatchNorm statistics
    and RNG). The verdict itself is a timing: a 2-epoch digits run usually cannot pay back a CPU compile, but a
    warm compile cache or a busy machine can tip it, so the test checks the decision against the probe's own
    numbers rather than a fixed answer."""
    from workbench.report.checkpoint import load_checkpoint

    base = RunConfig(model=ModelConfig(name="cnn", width=0.5), train=TrainConfig(epochs=2)).replace(
        **{"hardware.threads": 1}
    )
    auto = run(base.replace(**{"hardware.compile": "auto"}), store=store, progress=False)
    m = auto.metrics
    saved, compile_s = map(
        float, re.search(r"save (-?[\d.]+) s against a ([\d.]+) s compile", m["compile_reason"]).groups()
    )
    assert m["compile_reason"].startswith("compile on: " if m["compiled"] else "compile off: ")
    assert m["compiled"] == (saved > compile_s) or abs(saved - compile_s) <= 0.1  # the reason rounds to 0.1 s
    assert m["compile_probe_seconds"] > 0 and m["first_epoch_seconds"] > m["compile_probe_seconds"]
    same_choice = run(base.replace(**{"hardware.compile": m["compiled"]}), store=store, progress=False, reuse=False)
    weights = [load_checkpoint(r.checkpoint)[0].state_dict() for r in (auto, same_choice)]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[1])
    assert auto.history[-1]["test_accuracy"] == same_choice.history[-1]["test_accuracy"]


def test_the_compile_probe_compiles_where_the_saved_steps_outweigh_the_compile():
    import contextlib
    import time as clock

    from workbench.train.compile_probe import probe_compile

    class SlowEager(torch.nn.Linear):  # eager pays 5 ms a step that the "compiled" path does not
        def forward(self, x):
            clock.sleep(0.005)
            return super().forward(x)

    model = SlowEager(4, 2)
    fast = lambda x: torch.nn.functional.linear(x, model.weight, model.bias)
    batch = torch.randn(8, 4), torch.zeros(8, dtype=torch.long)
    long_run = probe_compile(model, batch, fast, steps_left=10_000, precision_context=contextlib.nullcontext)
    short_run = probe_compile(model, batch, fast, steps_left=1, precision_context=contextlib.nullcontext)
    assert long_run.eager_step_s > long_run.compiled_step_s + 0.004
    assert long_run.compile and long_run.reason.startswith("compile on: ")
    assert not short_run.compile or short_run.compile_s < 0.005  # 1 step saves 5 ms: only a free compile pays


def test_compile_is_on_off_or_auto_from_the_command_line():
    from workbench.cli import _parser, config_from_args

    parse = lambda *flags: (
        config_from_args(_parser(with_run_flags=True)[0].parse_args(["run", *flags])).hardware.compile
    )
    assert (parse(), parse("--compile"), parse("--compile", "auto"), parse("--no-compile")) == (
        False,
        True,
        "auto",
        False,
    )
    with pytest.raises(ValueError, match=r"hardware\.compile must be true, false or auto"):
        parse("--compile", "maybe")
