"""Hardware speed: where the time of a run goes (compile and warm-up kept apart from steady epochs,
time to accuracy) and the inference grid of batch size x precision x mode."""
import pytest
import torch

from workbench import ModelConfig, RunConfig, TrainConfig, inference_sweep, plots, run, time_to_accuracy

pytestmark = pytest.mark.usefixtures("one_thread")


def test_a_run_keeps_its_first_epoch_apart_from_the_steady_ones_and_knows_when_it_reached_a_target():
    r = run(RunConfig(model=ModelConfig(name="mlp"), train=TrainConfig(epochs=3)), store=None, progress=False)
    elapsed = [h["elapsed_s"] for h in r.history]
    assert elapsed == pytest.approx(list(torch.tensor([h["seconds"] for h in r.history]).cumsum(0).tolist()))
    m = r.metrics
    assert m["first_epoch_seconds"] == r.history[0]["seconds"]
    assert m["steady_epoch_seconds"] == pytest.approx(sorted(h["seconds"] for h in r.history[1:])[0] / 2
                                                      + sorted(h["seconds"] for h in r.history[1:])[1] / 2)
    assert m["warmup_seconds"] == pytest.approx(max(0.0, m["first_epoch_seconds"] - m["steady_epoch_seconds"]), abs=1e-6)
    reached = time_to_accuracy(r.history, 0.5)
    assert reached["epoch"] is not None and reached["seconds"] == elapsed[reached["epoch"] - 1]
    assert time_to_accuracy(r.history, 1.01) == {"epoch": None, "seconds": None}


def test_the_inference_sweep_times_every_combination_that_runs_here_and_says_why_for_the_rest(store):
    trained = run(RunConfig(model=ModelConfig(name="cnn", width=0.25), train=TrainConfig(epochs=1)), store=store, progress=False)
    df = inference_sweep(trained.run_id, store=store, batch_sizes=(1, 8), precisions=("fp32", "tf32", "bf16"),
                         modes=("eager", "compiled", "max-autotune"), device="cpu", warmup=1, iters=5)
    assert len(df) == 3 * 3 * 2 and set(df["run"]) == {trained.config.name or trained.run_id}
    ran = df[df["latency_ms"].notna()]
    assert {(p, m) for p, m in ran[["precision", "mode"]].values} == {
        ("fp32", "eager"), ("fp32", "compiled"), ("bf16", "eager"), ("bf16", "compiled")}
    assert (ran["throughput_ips"] > 0).all() and (ran["latency_ms_q25"] <= ran["latency_ms_q75"]).all()
    assert set(ran.loc[ran["precision"] == "bf16", "dtype"]) == {"bfloat16"}
    # Each precision's modes were timed together, in turns.
    assert ran.groupby("precision")["timed_with"].nunique().tolist() == [1, 1]
    skipped = df[df["latency_ms"].isna()]
    assert skipped.loc[skipped["precision"] == "tf32", "skipped"].str.contains("CUDA").all()
    autotune = skipped[(skipped["mode"] == "max-autotune") & (skipped["precision"] != "tf32")]  # tf32 rows say tf32's reason
    assert len(autotune) == 4 and autotune["skipped"].str.contains("GPU").all()
    fig = plots.inference_sweep_chart(df)
    assert len(fig.axes[0].lines) == 4 and ran["device_name"].iloc[0] in fig.get_suptitle()
    assert "not run here" in fig._supxlabel.get_text()
    with pytest.raises(ValueError, match="Unknown inference_grid precision 'int3'"):
        inference_sweep(trained.run_id, store=store, precisions=("int3",))
    with pytest.raises(ValueError, match="needs input_shape"):
        inference_sweep(torch.nn.Linear(2, 2))
