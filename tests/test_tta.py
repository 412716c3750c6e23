"""Test-time augmentation: the views are the image mirrored and shifted, the averaged answer replaces
the plain one only where it is unsure, and a run records both without training again."""

import pytest
import torch
from torch import nn

from workbench import ConfigError, MeasureConfig, ModelConfig, RunConfig, TrainConfig, load_dataset, load_model, run
from workbench.data import eval_loader
from workbench.train import EvalConfig, evaluate, tta_logits, tta_views

pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_views_are_the_image_mirrored_and_moved_with_the_edge_reflected():
    x = torch.rand(2, 3, 6, 6)
    plain, mirrored = tta_views(x, "flip")
    assert plain is x and mirrored.equal(x.flip(3))
    views = tta_views(x, "flip_translate", shift=2)
    assert len(views) == 6 and all(v.shape == x.shape for v in views)
    down_right, up_left = views[2], views[4]
    assert down_right[..., 2:, 2:].equal(x[..., :-2, :-2]) and up_left[..., :-2, :-2].equal(x[..., 2:, 2:])
    assert down_right[..., 0, 2:].equal(x[..., 2, :-2])  # the rows shifted in are the image reflected, not zeros
    assert views[3][..., 2:, 2:].equal(x.flip(3)[..., :-2, :-2])  # the mirror image moves too
    with pytest.raises(ValueError, match=r"evaluation\.tta must be one of none, flip, translate, flip_translate"):
        tta_views(x, "rotate")


def test_averaged_logits_replace_only_the_unsure_answers():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Flatten(), nn.Linear(4 * 8 * 8, 3)).eval()
    x, y = torch.randn(32, 1, 8, 8), torch.randint(0, 3, (32,))
    with torch.no_grad():
        want = tta_logits(model, x, "translate")
        assert torch.allclose(want, torch.stack([model(v) for v in tta_views(x, "translate")]).mean(0), atol=1e-6)
        confidence = model(x).softmax(1).amax(1)
    every = evaluate(model, [(x, y)], tta=EvalConfig(tta="translate"))
    assert every["tta_share"] == 1 and every["accuracy"] == (want.argmax(1) == y).float().mean().item()
    assert every["accuracy_plain"] == evaluate(model, [(x, y)])["accuracy"]
    below = float(confidence.median())
    some = evaluate(model, [(x, y)], tta=EvalConfig(tta="translate", tta_below=below))
    unsure = confidence < below
    mixed = torch.where(unsure[:, None], want, model(x).detach())
    assert some["tta_share"] == unsure.float().mean().item() and 0 < some["tta_share"] < 1
    assert some["accuracy"] == pytest.approx((mixed.argmax(1) == y).float().mean().item())


@pytest.mark.parametrize(
    "field, value, says",
    [
        ("tta", "mirror", "evaluation.tta must be one of none, flip, translate, flip_translate (got 'mirror')"),
        ("tta_shift", 0, "evaluation.tta_shift must be > 0"),
        ("tta_below", 0.0, "evaluation.tta_below must be in (0, 1] (got 0.0)"),
    ],
)
def test_a_bad_evaluation_setting_is_one_line(field, value, says):
    with pytest.raises(ConfigError, match=f"^{says}".replace("(", r"\(").replace(")", r"\)")):
        EvalConfig(**{field: value})


def test_a_run_records_both_accuracies_and_reuses_the_training(tmp_path):
    base = RunConfig(
        model=ModelConfig(name="cnn", width=0.5),
        train=TrainConfig(epochs=2),
        measure=MeasureConfig(batch_sizes=(8,), warmup=1, iters=2),
    )
    plain = run(base, store=tmp_path, progress=False)
    augmented = run(base.replace(**{"evaluation.tta": "translate"}), store=tmp_path, progress=False)
    assert augmented.reused_from == plain.run_id  # scoring is not training
    m = augmented.metrics
    assert m["accuracy_plain"] == plain.metrics["accuracy"] and m["tta_share"] == 1.0
    assert "tta_share" not in plain.metrics and "accuracy_plain" not in plain.metrics
    model = load_model(augmented.run_id, store=tmp_path)
    again = evaluate(model, eval_loader(load_dataset("digits"), base.data), tta=EvalConfig(tta="translate"))
    assert again["accuracy"] == m["accuracy"] and again["loss"] == pytest.approx(m["loss"])
