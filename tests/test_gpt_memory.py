"""Memory savers of the GPT: activation checkpointing keeps fewer activations for the same gradients, and an int8
KV cache takes 0.28x the bytes for about the same tokens and loss; what a training step holds, counted part by part
(saved_activation_bytes, training_memory)."""

import pytest
import torch
import torch.nn.functional as F

from workbench import ConfigError
from workbench.data import RandomWindows
from workbench.measure import cached_loss, saved_activation_bytes, training_memory
from workbench.models import GPT, KVCache, QuantizedKVCache, generate, kv_cache_bytes
from workbench.train import TrainConfig, train

pytestmark = pytest.mark.usefixtures("one_thread")

TEXT = b"the quick brown fox jumps over the lazy dog. pack my box with five dozen liquor jugs. " * 40
CONTEXT = 32


def tiny_gpt(seed=0, **choices) -> GPT:
    torch.manual_seed(seed)
    return GPT(vocab_size=128, n_layer=2, n_head=2, n_embd=64, block_size=CONTEXT, **choices)  # head_dim 32


def loss_and_grads(model, ids, seed=0):
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)  # the same dropout masks in both runs
    loss = F.cross_entropy(model(ids[:, :-1]).flatten(0, 1), ids[:, 1:].flatten())
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("positions", ["learned", "rotary"])
def test_activation_checkpointing_gives_the_same_gradients_and_keeps_fewer_activations(positions):
    model = tiny_gpt(positions=positions, dropout=0.1).train()
    ids = torch.randint(128, (4, CONTEXT + 1), generator=torch.Generator().manual_seed(1))
    plain_loss, plain = loss_and_grads(model, ids)
    plain_saved = saved_activation_bytes(model, ids[:, :-1], ids[:, 1:])
    assert not GPT.activation_checkpointing  # off unless asked for
    model.activation_checkpointing = True
    loss, grads = loss_and_grads(model, ids)
    torch.testing.assert_close(loss, plain_loss)
    for name, grad in plain.items():
        torch.testing.assert_close(grads[name], grad, msg=name)
    assert saved_activation_bytes(model, ids[:, :-1], ids[:, 1:]) < 0.5 * plain_saved
    model.eval()  # evaluating keeps no graph either way: the switch does nothing there
    with torch.no_grad():
        torch.testing.assert_close(model(ids[:, :-1]), tiny_gpt(positions=positions, dropout=0.1).eval()(ids[:, :-1]))


@pytest.fixture(scope="module")
def trained() -> GPT:
    """A tiny GPT that has learnt the text, so greedy tokens follow it and the loss means something."""
    model, threads = tiny_gpt(), torch.get_num_threads()
    windows = RandomWindows(torch.tensor(list(TEXT)), CONTEXT, 16, 100, seed=0)
    torch.set_num_threads(1)  # a module's fixture runs before one_thread does
    try:
        train(model, windows, TrainConfig(epochs=1, lr=3e-3, optimizer="adamw", grad_clip=1.0))
    finally:
        torch.set_num_threads(threads)
    return model.eval()


def text_windows(count=8, length=CONTEXT + 1):
    starts = torch.arange(count) * 37
    return torch.tensor(list(TEXT))[starts[:, None] + torch.arange(length)]


def test_the_int8_cache_takes_36_bytes_where_fp32_takes_128():
    model = tiny_gpt()
    fp32, int8 = model.new_cache(batch=3), model.new_cache(batch=3, int8=True)
    assert isinstance(int8, QuantizedKVCache) and type(fp32) is KVCache
    vectors = 2 * 2 * 3 * 2 * CONTEXT  # k and v x layers x batch x heads x tokens
    assert fp32.nbytes == vectors * 32 * 4
    assert int8.nbytes == vectors * (32 + 4)  # 32 int8 numbers and one fp32 scale each
    assert int8.nbytes / fp32.nbytes == 36 / 128  # 0.28125


def test_int8_rounding_is_at_most_half_a_step_of_each_vectors_scale():
    cache = QuantizedKVCache(n_layer=1, batch=2, n_head=3, context=8, head_dim=32)
    k = torch.randn(2, 3, 5, 32) * torch.logspace(-3, 2, 5)[:, None]  # tokens of very different sizes
    k[0, 0, 0, 7] = 500.0  # an outlier coarsens its own vector's step only
    restored, _ = cache.store(0, k, -k)
    step = k.abs().amax(dim=-1, keepdim=True) / 127
    assert ((restored - k).abs() <= step / 2 * (1 + 1e-5)).all()
    assert restored.shape == (2, 3, 5, 32)


def test_greedy_tokens_with_the_int8_cache_mostly_match_the_fp32_cache(trained):
    prompts = text_windows(count=6, length=8).tolist()
    fp32 = generate(trained, prompts, 24, temperature=0)
    int8 = generate(trained, prompts, 24, temperature=0, kv_int8=True)
    same = sum(a == b for row, other in zip(fp32, int8) for a, b in zip(row, other))
    assert same >= 0.9 * 6 * 24, (fp32, int8)
    assert len({t for row in fp32 for t in row}) >= 8  # the tokens vary: the agreement means something


@pytest.mark.parametrize("positions", ["learned", "rotary"])
def test_cached_loss_with_a_float_cache_is_the_plain_forwards_loss(trained, positions):
    model = trained if positions == "learned" else tiny_gpt(positions="rotary")
    windows = text_windows()
    for prefill in (1, 8, CONTEXT):
        logits = model(windows[:, :-1])[:, prefill - 1 :]
        plain = F.cross_entropy(logits.flatten(0, 1), windows[:, prefill:].flatten()).item()
        assert cached_loss(model, windows, prefill) == pytest.approx(plain, rel=1e-5, abs=1e-6)


def test_cached_loss_with_the_int8_cache_costs_little_but_not_nothing(trained):
    windows = text_windows()
    fp32, int8 = cached_loss(trained, windows, 8), cached_loss(trained, windows, 8, kv_int8=True)
    assert fp32 < 2.5  # the text is learnt: ln(128) = 4.85 at random
    assert int8 != fp32  # the rounding is real
    assert abs(int8 - fp32) < 0.01 * fp32


def test_int8_cache_bad_requests_are_one_line():
    model = tiny_gpt()
    with pytest.raises(ConfigError, match="int8 KV cache is not built for compiled decoding"):
        model.new_cache(batch=1, static=True, int8=True)
    with pytest.raises(ValueError, match="kv_cache is False: set kv_cache=True, or drop kv_int8"):
        generate(model, [[1, 2]], 3, kv_cache=False, kv_int8=True)
    with pytest.raises(ConfigError, match=r"prefill must be in 1\.\.32 \(got 33\)"):
        cached_loss(model, text_windows(), 33)
    with pytest.raises(ConfigError, match="more than the context of 32: cut them to at most 33"):
        cached_loss(model, text_windows(length=40), 4)


def test_saved_activation_bytes_counts_what_autograd_keeps_once_and_leaves_no_gradients():
    net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4)).eval()
    x = torch.randn(5, 8)
    # the first Linear keeps its input (5 x 8), ReLU its output (5 x 16), which the second Linear keeps too (once)
    assert saved_activation_bytes(net, x) == (5 * 8 + 5 * 16) * 4
    assert not net.training and all(p.grad is None for p in net.parameters())  # its mode and no gradients left
    y = torch.randint(4, (5,))
    with_loss = saved_activation_bytes(net, x, y)
    assert with_loss > (5 * 8 + 5 * 16) * 4 and with_loss == saved_activation_bytes(net, x, y)  # counted, not sampled


def test_training_memory_splits_a_step_into_its_parts_as_each_memory_saver_predicts():
    model = tiny_gpt()
    table = training_memory(
        model,
        {
            "plain": {"batch_size": 8},
            "4 x 2": {"batch_size": 2, "accumulate": 4},
            "checkpointing": {"batch_size": 8, "checkpointing": True},
            "long": {"batch_size": 8, "context": 2 * CONTEXT},
            "lora": {"batch_size": 8, "lora_rank": 2, "lora_targets": ("c_attn", "mlp.c_fc")},
        },
        steps=1,
        warmup=0,
    )
    plain, accumulated, recomputed, long, lora = (table.loc[k] for k in table.index)
    weights = sum(p.nbytes for p in model.parameters())
    assert (
        plain.weights == plain.gradients == weights
        and plain.total == plain[["weights", "gradients", "optimizer_state", "activations"]].sum()
    )
    assert plain.optimizer_state == 2 * weights + 4 * len(list(model.parameters()))  # AdamW: 2 moments, a step count
    # accumulating: a quarter of the windows at once, the same effective batch, weights, gradients and state
    assert accumulated.effective_batch == plain.effective_batch == 8
    assert accumulated.activations < 0.3 * plain.activations
    assert (
        accumulated[["weights", "gradients", "optimizer_state"]] == plain[["weights", "gradients", "optimizer_state"]]
    ).all()
    assert recomputed.activations < 0.5 * plain.activations and recomputed.weights == weights
    # twice the context: twice the activations (the fused attention keeps no context x context scores), and the
    # learned position table grows by the new positions only
    assert long.activations == pytest.approx(2 * plain.activations, rel=0.01)
    assert long.weights == weights + CONTEXT * 64 * 4
    assert lora.gradients < 0.1 * plain.gradients and lora.optimizer_state < 0.1 * plain.optimizer_state
    assert (table.step_ms > 0).all() and table.attrs["device_name"]
    with pytest.raises(ConfigError, match=r"variant 'x': unknown setting\(s\) batch; use accumulate, batch_size"):
        training_memory(model, {"x": {"batch": 8}})


def test_an_int8_cache_takes_a_byte_a_number_and_a_scale_a_vector():
    model = tiny_gpt()
    s = model.shape
    assert (
        kv_cache_bytes(s.n_layer, s.n_head, s.head_dim, CONTEXT, 3, int8=True) == model.new_cache(3, int8=True).nbytes
    )
    assert kv_cache_bytes(s.n_layer, s.n_head, s.head_dim, CONTEXT, 3) == model.new_cache(3).nbytes
