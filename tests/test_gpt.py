"""The GPT and its decoding: the KV cache and left padding change the speed, never the tokens."""

import dataclasses
import math

import pytest
import torch

from workbench import ConfigError
from workbench.models.generation import generate, generate_tokens
from workbench.models.gpt import GPT, GPTShape, kv_cache_bytes

pytestmark = pytest.mark.usefixtures("one_thread")

VOCAB, CONTEXT = 50, 12


def tiny_gpt(seed=0, **choices):
    """A 2-layer GPT whose weights are wider than GPT-2's init, so that greedy tokens depend on the whole
    context (at init a tied model mostly repeats its last token, and any decoding would agree)."""
    torch.manual_seed(seed)
    model = GPT(vocab_size=VOCAB, n_layer=2, n_head=2, n_embd=32, block_size=CONTEXT, **choices).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.5)
    return model


def prompt(length, seed=1):
    return torch.randint(VOCAB, (length,), generator=torch.Generator().manual_seed(seed + length)).tolist()


@pytest.mark.parametrize("positions", ["learned", "rotary"])
def test_cache_gives_the_tokens_of_recomputing(positions):
    model = tiny_gpt(positions=positions)
    for length in (1, 5, CONTEXT, CONTEXT + 4):  # 20 new tokens take every prompt past the context
        [cached] = generate(model, [prompt(length)], 20, temperature=0)
        [recomputed] = generate(model, [prompt(length)], 20, temperature=0, kv_cache=False)
        assert cached == recomputed, length
        assert len(set(cached)) >= 3  # the tokens vary, so the comparison means something


@pytest.mark.parametrize("static", [False, True], ids=["KVCache", "StaticKVCache"])
@pytest.mark.parametrize("positions", ["learned", "rotary"])
def test_cached_steps_give_the_logits_of_the_full_forward(positions, static):
    model, ids = tiny_gpt(positions=positions), torch.tensor([prompt(CONTEXT)])
    full = model(ids)
    cache = model.new_cache(batch=1, static=static)
    first = model(ids[:, :4], cache=cache, last_only=True)
    steps = [model(ids[:, [t]], cache=cache) for t in range(4, CONTEXT)]
    torch.testing.assert_close(torch.cat([first, *steps], dim=1), full[:, 3:])
    if static:  # its position is a tensor, so a compiled step never reads it back to check the context
        assert int(cache.next) == CONTEXT
        return
    assert cache.pos == CONTEXT
    with pytest.raises(ValueError, match="exceed the context of 12"):
        model(ids[:, :1], cache=cache)


@pytest.mark.parametrize("kv_cache", [True, False])
@pytest.mark.parametrize("positions", ["learned", "rotary"])
def test_each_row_of_an_unequal_batch_is_that_prompt_alone(positions, kv_cache):
    model = tiny_gpt(positions=positions)
    prompts = [prompt(3), prompt(1), prompt(8), prompt(CONTEXT + 2)]
    batch = generate(model, prompts, 15, temperature=0, kv_cache=kv_cache)
    assert batch == [generate(model, [p], 15, temperature=0)[0] for p in prompts]


@pytest.mark.parametrize("positions", ["learned", "rotary"])
def test_naive_attention_matches_sdpa(positions):
    sdpa, naive = tiny_gpt(positions=positions), tiny_gpt(positions=positions, attention="naive")
    ids = torch.tensor([prompt(CONTEXT), prompt(CONTEXT, seed=2)])
    torch.testing.assert_close(naive(ids), sdpa(ids))
    prompts = [prompt(2), prompt(7)]  # padded: both take the explicit mask
    assert generate(naive, prompts, 8, temperature=0) == generate(sdpa, prompts, 8, temperature=0)


def test_loss_at_init_is_about_log_vocab():
    torch.manual_seed(0)
    model = GPT(vocab_size=VOCAB, n_layer=2, n_head=2, n_embd=32, block_size=CONTEXT)
    ids, next_ids = torch.randint(VOCAB, (2, 8, CONTEXT))
    loss = torch.nn.functional.cross_entropy(model(ids).flatten(0, 1), next_ids.flatten())
    assert abs(loss.item() - math.log(VOCAB)) < 0.15
    residual = model.transformer.h[0].mlp.c_proj.weight
    assert residual.std().item() == pytest.approx(0.02 / math.sqrt(2 * 2), rel=0.1)  # GPT-2's scaled init


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_kv_cache_bytes(dtype):
    layers, heads, head_dim, context, batch = 3, 4, 8, 20, 5
    expected = 2 * layers * heads * head_dim * context * batch * (4 if dtype == torch.float32 else 2)
    assert kv_cache_bytes(layers, heads, head_dim, context, batch, dtype) == expected
    model = GPT(vocab_size=VOCAB, n_layer=layers, n_head=heads, n_embd=heads * head_dim, block_size=context)
    cache = model.to(dtype).new_cache(batch)
    assert cache.nbytes == expected
    assert cache.keys[0].shape == (batch, heads, context, head_dim) and len(cache.values) == layers


def test_embeddings_are_tied():
    model = tiny_gpt()
    assert model.lm_head.weight is model.transformer.wte.weight
    weights = sum(p.numel() for p in model.parameters())
    assert weights == sum(p.numel() for name, p in model.named_parameters(remove_duplicate=False)) - VOCAB * 32


@pytest.mark.parametrize(
    ("choices", "message"),
    [
        (
            {"n_embd": 130, "n_head": 4},
            "n_embd 130 is not divisible by n_head 4: choose n_embd a multiple of n_head, e.g. 128",
        ),
        ({"n_layer": 0}, "n_layer must be a positive integer (got 0)"),
        ({"block_size": 8.5}, "block_size must be a positive integer (got 8.5)"),
        ({"attention": "flash"}, "attention 'flash' is not one of: sdpa, naive"),
        ({"positions": "alibi"}, "positions 'alibi' is not one of: learned, rotary"),
        ({"n_embd": 6, "n_head": 2, "positions": "rotary"}, "head size n_embd / n_head must be even (got 3)"),
        ({"dropout": 1.0}, "dropout must be in [0, 1) (got 1.0)"),
        ({"head_dim": 0}, "head_dim must be a positive integer, or None for 8 (got 0)"),
        ({"mlp_width": 2.5}, "mlp_width must be a positive integer, or None for 64 (got 2.5)"),
        ({"head_dim": 5, "positions": "rotary"}, "head size head_dim must be even (got 5): choose an even head_dim"),
    ],
)
def test_bad_shapes_say_what_to_choose(choices, message):
    sizes = {"vocab_size": VOCAB, "n_layer": 2, "n_head": 2, "n_embd": 16, "block_size": CONTEXT} | choices
    with pytest.raises(ConfigError) as error:
        GPTShape(**sizes)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_heads_narrower_than_the_stream_and_any_mlp_width_build_and_decode():
    shape = GPTShape(vocab_size=VOCAB, n_layer=1, n_head=3, n_embd=16, block_size=CONTEXT, head_dim=4, mlp_width=24)
    model = GPT(**dataclasses.asdict(shape))  # n_embd 16 need not be divisible by 3 heads when head_dim is given
    attn, mlp = model.transformer.h[0].attn, model.transformer.h[0].mlp
    assert attn.c_attn.weight.shape == (3 * 3 * 4, 16) and attn.c_proj.weight.shape == (16, 12)
    assert mlp.c_fc.weight.shape == (24, 16) and model.new_cache(batch=1).keys[0].shape == (1, 3, CONTEXT, 4)
    sizes = {"vocab_size": VOCAB, "n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": CONTEXT}
    assert GPTShape(**sizes) == GPTShape(**sizes, head_dim=8, mlp_width=64)  # the defaults, filled in


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"max_new_tokens": 0}, "max_new_tokens must be > 0 (got 0): ask for at least one new token"),
        ({"prompts": [[1], []]}, "prompt 1 is empty"),
        ({"prompts": [1, 2, 3]}, "prompt 0 is not a list of token ids: pass a list of prompts"),
        ({"prompts": [[VOCAB]]}, "prompt 0 has ids outside the vocabulary 0..49"),
        ({"temperature": -1}, "temperature must be >= 0"),
        ({"top_k": 0}, "top_k must be >= 1"),
        ({"top_p": 0}, "top_p must be in (0, 1]"),
    ],
)
def test_bad_generation_arguments_fail_at_the_call(arguments, message):
    call = {"prompts": [[1, 2]], "max_new_tokens": 3} | arguments
    with pytest.raises(ValueError) as error:
        generate_tokens(tiny_gpt(), **call)  # before the first token is asked for
    assert message in str(error.value) and "\n" not in str(error.value)


def test_a_seed_reproduces_a_sample():
    model, prompts = tiny_gpt(), [prompt(4), prompt(2)]
    first = generate(model, prompts, 20, seed=7)
    assert generate(model, prompts, 20, seed=7) == first
    assert generate(model, prompts, 20, seed=7, kv_cache=False) == first
    assert generate(model, prompts, 20, seed=8) != first


def test_top_k_1_and_a_tiny_top_p_are_greedy():
    model, prompts = tiny_gpt(), [prompt(4), prompt(9)]
    greedy = generate(model, prompts, 15, temperature=0)
    assert generate(model, prompts, 15, top_k=1, seed=0) == greedy
    assert generate(model, prompts, 15, top_p=1e-6, seed=0) == greedy


def test_streaming_yields_each_step_and_restores_training_mode():
    model = tiny_gpt().train()
    steps = list(generate_tokens(model, torch.tensor([prompt(3), prompt(3, seed=2)]), 4, temperature=0))
    assert len(steps) == 4 and all(len(step) == 2 for step in steps)
    assert [list(row) for row in zip(*steps)] == generate(model, [prompt(3), prompt(3, seed=2)], 4, temperature=0)
    assert model.training


@pytest.mark.parametrize("positions", ["learned", "rotary"])
def test_compiled_decoding_gives_the_eager_tokens(positions):
    """torch.compile with a StaticKVCache (a tensor position, every slot read and masked): the same tokens as
    eager decoding, cached and recomputing, for a prompt that runs past the context (the cache refills)."""
    model = tiny_gpt(positions=positions)
    prompts = [prompt(5), prompt(5, seed=3)]
    eager = generate(model, prompts, CONTEXT + 3, temperature=0)
    assert generate(model, prompts, CONTEXT + 3, temperature=0, compiled=True) == eager
    assert generate(model, prompts, 6, temperature=0, compiled=True, kv_cache=False) == [t[:6] for t in eager]
    with pytest.raises(ValueError, match="compiled decoding takes prompts of one length"):
        generate(model, [prompt(2), prompt(4)], 3, compiled=True)
