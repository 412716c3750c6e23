"""What notebook 15 reads from the package: a stored language model's quality against bits per weight
(``bits_curve``), speculative decoding timed against the target alone per lookahead (``speculative_curve``),
and their charts and the language model's ledger chart, each with labelled axes and units."""

import io
import math

import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure

import workbench as wb
from workbench.models import GPT

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny GPT trained a few steps on pystdlib (enough that rounding to 2 bits costs more than to 8), stored."""
    store = wb.ResultStore(tmp_path_factory.mktemp("runs"))
    cfg = wb.preset("gpt", device="cpu").replace(
        **{"train.steps": 40, "train.epochs": 1, "train.batch_size": 8, "model.depth": 1, "model.n_embd": 32,
           "model.n_head": 2, "model.block_size": 32, "measure.iters": 1, "measure.batch_sizes": (1,)}
    )  # fmt: skip
    return wb.run(cfg, store=store, progress=False), store


def test_the_bits_curve_scores_each_rounding_as_the_run_was_scored(trained):
    result, store = trained
    curve = wb.bits_curve(result.run_id, store=store, bits=(8, 2), group_sizes=(32,), calibration_examples=4)
    assert curve.bits.tolist() == [32, 8, 2, 8, 2] and curve.scales.tolist()[1:] == ["rtn", "rtn", "awq", "awq"]
    assert curve.scales.isna().iloc[0]
    assert math.isclose(curve.loss.iloc[0], result.metrics["loss"], rel_tol=1e-5)  # the unrounded row is the run's
    assert (curve.perplexity == curve.loss.map(math.exp)).all() and curve.change.iloc[0] == 0
    assert curve.bits_per_weight.tolist() == [32.0, 9.0, 3.0, 9.0, 3.0]
    for scales in ("rtn", "awq"):
        line = curve[curve.scales == scales].set_index("bits").perplexity
        assert line[2] > line[8], scales  # 2 bits cost more than 8
    assert abs(curve[curve.bits == 8].change).max() < 0.01
    assert curve.attrs == {"run_id": result.run_id, "metric": "perplexity"}
    fig = wb.low_bit_chart(curve)
    ax = fig.axes[0]
    assert ax.get_xlabel().startswith("bits per weight") and "perplexity" in ax.get_ylabel()
    assert [line.get_label() for line in ax.lines] == ["unrounded (32 bits)", "rtn, group 32", "awq, group 32"]
    fig.savefig(io.BytesIO(), format="png")


def test_the_bits_curve_needs_an_example_to_calibrate_on(trained):
    result, store = trained
    with pytest.raises(ValueError, match="calibration_examples must be a whole number >= 1"):
        wb.bits_curve(result.run_id, store=store, calibration_examples=0)


def _wide(seed, n_layer=2, n_embd=32):
    """Weights wider than GPT-2's init, so greedy tokens vary with the context and a draft is sometimes wrong."""
    torch.manual_seed(seed)
    model = GPT(vocab_size=40, n_layer=n_layer, n_head=2, n_embd=n_embd, block_size=48).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.5)
    return model


def test_speculative_decoding_is_checked_then_timed_against_the_target_alone():
    target, draft = _wide(0), _wide(1, n_layer=1, n_embd=16)
    curve = wb.speculative_curve(target, draft, [[3], [5, 9, 2, 7]], 12, lookaheads=(1, 3), iters=2)
    assert curve.lookahead.tolist() == [0, 1, 3] and curve.same_as_target.all()
    assert curve.decoding.tolist() == ["target alone", "speculative, k=1", "speculative, k=3"]
    assert math.isnan(curve.acceptance.iloc[0]) and curve.speedup.iloc[0] == 1.0
    spec = curve.iloc[1:]
    assert spec.acceptance.between(0, 1).all() and (spec.tokens_per_target_pass >= 1).all()
    assert (spec.tokens_per_target_pass <= spec.lookahead + 1).all()
    assert (curve.tokens_per_s_q25 <= curve.tokens_per_s).all() and (curve.tokens_per_s <= curve.tokens_per_s_q75).all()
    assert curve.attrs["prompts"] == 2 and curve.attrs["new_tokens"] == 12 and curve.attrs["device_name"]
    fig = wb.speculative_chart(curve)
    assert isinstance(fig, Figure) and curve.attrs["device_name"] in fig.axes[0].get_title()
    assert fig.axes[0].get_ylabel() == "decode speed (tokens/s, batch 1, greedy)"
    assert fig.axes[1].get_ylabel() == "proposals accepted (%)"
    fig.savefig(io.BytesIO(), format="png")


def test_speculative_curve_refuses_what_cannot_run_in_one_line():
    target = _wide(0)
    with pytest.raises(wb.ConfigError, match="lookaheads is empty"):
        wb.speculative_curve(target, target, [[1]], 4, lookaheads=())
    with pytest.raises(wb.ConfigError, match="prompts is empty"):
        wb.speculative_curve(target, target, [], 4)
    with pytest.raises(ValueError, match="keeps within the context"):
        wb.speculative_curve(target, target, [[1]], 46, lookaheads=(4,))


def test_the_language_model_ledger_chart_plots_perplexity_against_size_and_decode_speed():
    table = pd.DataFrame(
        {"variant": ["fp32", "int8", "pruned"], "size_bytes": [4096, 1500, 2600], "perplexity": [7.1, 7.12, 7.6],
         "decode_tps": [900.0, 800.0, 1500.0]}
    )  # fmt: skip
    table.attrs["device_names"] = {"cpu": "AMD EPYC"}
    fig = wb.ledger_perplexity_chart(table)
    assert [ax.get_xlabel() for ax in fig.axes] == [
        "model size on disk (KiB)",
        "decode speed (tokens/s, batch 1, KV cache)",
    ]
    assert fig.axes[0].get_ylabel() == "validation perplexity (per token)" and "AMD EPYC" in fig.get_suptitle()
    assert sorted(t.get_text() for t in fig.axes[1].texts) == ["fp32", "int8", "pruned"]
    fig.savefig(io.BytesIO(), format="png")
