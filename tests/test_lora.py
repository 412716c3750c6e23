"""LoRA on the GPT: only the adapters train, the loss falls, merging gives the base model's modules back with the
adapted model's outputs, and every bad request is one line that leaves the model untouched."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from workbench import ConfigError
from workbench.data import RandomWindows
from workbench.models import GPT, LoRALinear, add_lora, merge_lora, trainable_parameters
from workbench.train import TrainConfig, optimizer_state_bytes, train

pytestmark = pytest.mark.usefixtures("one_thread")

TEXT = b"the quick brown fox jumps over the lazy dog. pack my box with five dozen liquor jugs. " * 40
NEW_TEXT = b"to be, or not to be, that is the question: whether 'tis nobler in the mind to suffer. " * 40


def tiny_gpt(seed=0) -> GPT:
    torch.manual_seed(seed)
    return GPT(vocab_size=128, n_layer=2, n_head=2, n_embd=32, block_size=32)


def windows(steps=1, batch=16, seed=0, text=TEXT) -> RandomWindows:
    return RandomWindows(torch.tensor(list(text)), 32, batch, steps, seed=seed)


@pytest.fixture(scope="module")
def pretrained() -> dict:
    """A tiny GPT trained on one text (weights), to fine-tune on another: at init its tied embedding is so small
    that no adapter could move its logits far."""
    model, threads = tiny_gpt(), torch.get_num_threads()
    torch.set_num_threads(1)  # a module's fixture runs before one_thread does
    try:
        train(model, windows(steps=150), TrainConfig(epochs=1, lr=3e-3, optimizer="adamw", grad_clip=1.0))
    finally:
        torch.set_num_threads(threads)
    return model.state_dict()


def loss_on(model, batch) -> float:
    x, y = batch
    with torch.no_grad():
        return F.cross_entropy(model(x).flatten(0, 1), y.flatten()).item()


@pytest.mark.parametrize(
    ("targets", "replaced"),
    [
        (("c_attn",), ["attn.c_attn"]),
        (("c_proj",), ["attn.c_proj", "mlp.c_proj"]),  # a bare name takes it wherever it is
        (("attn.c_proj",), ["attn.c_proj"]),  # a dotted one, that place only
        (("mlp.c_fc", "mlp.c_proj"), ["mlp.c_fc", "mlp.c_proj"]),
    ],
)
def test_targets_match_whole_dotted_parts(targets, replaced):
    model = tiny_gpt()
    names = add_lora(model, rank=2, targets=targets)
    assert names == [f"transformer.h.{i}.{r}" for i in range(2) for r in replaced]
    assert names == [n for n, m in model.named_modules() if isinstance(m, LoRALinear)]
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trained == {f"{n}.lora_{ab}" for n in names for ab in "AB"}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rank": 0}, "LoRA rank must be a whole number >= 1 (got 0), e.g. 8"),
        (
            {"rank": 64, "targets": ("attn.c_proj",)},
            "LoRA rank 64 is larger than transformer.h.0.attn.c_proj's 32 x 32: use a rank of at most 32",
        ),
        (
            {"rank": 2, "targets": ("c_attn", "proj")},  # "proj" is part of a name, not a whole part
            "LoRA target 'proj' names no Linear layer of this model: choose from "
            "attn.c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj, lm_head",
        ),
        (
            {"rank": 2, "targets": ("lm_head",)},
            "lm_head's weight is tied to transformer.wte.weight (the same matrix): merging an update into it would "
            "change transformer.wte.weight too",
        ),
        ({"rank": 2, "alpha": 0}, "LoRA alpha must be > 0"),
    ],
)
def test_a_bad_request_is_one_line_and_the_model_is_untouched(kwargs, message):
    model = tiny_gpt()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ConfigError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        add_lora(model, **kwargs)
    assert not any(isinstance(m, LoRALinear) for m in model.modules())
    assert all(p.requires_grad for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_twice_is_refused():
    model = tiny_gpt()
    add_lora(model, rank=2)
    with pytest.raises(ConfigError, match="has LoRA adapters already: merge_lora"):
        add_lora(model, rank=2, targets=("mlp.c_fc",))


def test_training_changes_only_the_adapters_and_lowers_the_loss(pretrained):
    model = tiny_gpt()
    model.load_state_dict(pretrained)
    base = {k: v.clone() for k, v in model.state_dict().items()}
    names = add_lora(model, rank=4, targets=("c_attn", "c_proj"))
    start = {n: p.clone() for n, p in model.named_parameters() if p.requires_grad}
    held_out = next(iter(windows(seed=99, text=NEW_TEXT)))
    before = loss_on(model, held_out)
    train(model, windows(steps=80, text=NEW_TEXT), TrainConfig(epochs=1, lr=1e-2, optimizer="adamw", grad_clip=1.0))
    after = loss_on(model, held_out)
    assert after < 0.8 * before, (before, after)
    state = model.state_dict()
    for key, value in base.items():  # the base weights, bit for bit (an adapted layer's under .base)
        layer, _, kind = key.rpartition(".")
        assert torch.equal(state[f"{layer}.base.{kind}" if layer in names else key], value), key
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert not torch.equal(p, start[name]), name  # each adapter moved, A and B


def test_merging_gives_the_adapted_outputs_from_plain_linears():
    model = tiny_gpt()
    base_keys = list(model.state_dict())
    add_lora(model, rank=4, alpha=8, targets=("c_attn", "c_proj", "mlp.c_fc"))
    with torch.no_grad():  # B starts at zero: give it values, or merging would add nothing to check
        for m in model.modules():
            if isinstance(m, LoRALinear):
                m.lora_B.normal_(0, 0.1)
    x, _ = next(iter(windows(batch=4)))
    model.eval()
    adapted = model(x)
    unmerged_base = tiny_gpt()(x)
    assert not torch.allclose(adapted, unmerged_base, atol=1e-3)  # the adapters change the outputs
    assert merge_lora(model) is model
    torch.testing.assert_close(model(x), adapted, rtol=1e-5, atol=1e-5)
    assert not any(isinstance(m, LoRALinear) for m in model.modules())
    assert all(type(model.get_submodule(n)) is nn.Linear for n in ("transformer.h.0.attn.c_attn", "lm_head"))
    assert list(model.state_dict()) == base_keys


def test_lora_trains_a_few_percent_of_the_weights_and_keeps_that_much_optimizer_state():
    def one_step(model):
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
        x, y = next(iter(windows(batch=2)))
        F.cross_entropy(model(x).flatten(0, 1), y.flatten()).backward()
        opt.step()
        return opt

    full, adapted = tiny_gpt(), tiny_gpt()
    add_lora(adapted, rank=2, targets=("c_attn",))
    assert trainable_parameters(adapted) == 2 * 2 * (32 + 96)  # layers x rank x (in + out)
    assert trainable_parameters(full) == sum(p.numel() for p in full.parameters())
    tensors = len([p for p in adapted.parameters() if p.requires_grad])
    # AdamW: two moments of 4 bytes per trained number, and a 4-byte step count per tensor
    assert optimizer_state_bytes(one_step(adapted)) == 8 * trainable_parameters(adapted) + 4 * tensors
    ratio = optimizer_state_bytes(one_step(adapted)) / optimizer_state_bytes(one_step(full))
    assert 0 < ratio < 0.05
