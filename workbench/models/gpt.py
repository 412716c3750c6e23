"""A GPT language model in nanoGPT's shape (Radford et al. 2019; Karpathy's nanoGPT), with a KV cache.

Token and position embeddings -> ``n_layer`` pre-norm blocks (causal self-attention, then a 4x GELU
MLP) -> LayerNorm -> a head tied to the token embedding. Module names follow nanoGPT's
(``transformer.h.0.attn.c_attn``...), so its checkpoints load. ``attention="naive"`` spells out the
masked softmax that ``F.scaled_dot_product_attention`` fuses; ``positions="rotary"`` turns queries and
keys by their position (RoPE) instead of adding a learned position vector. ``head_dim`` and ``mlp_width``
(n_embd / n_head and 4 x n_embd unless given) let a pruned GPT keep fewer heads of the same size and a narrower
MLP (``workbench.compress.prune_gpt``); ``gpt_args`` gives the keywords that rebuild any GPT.

Decoding one token at a time would recompute every earlier token's keys and values at each step; a
``KVCache`` keeps them, so each step computes the new token only.

Example:
    >>> _ = torch.manual_seed(0)
    >>> model = GPT(vocab_size=65, n_layer=2, n_head=2, n_embd=32, block_size=16)
    >>> ids, next_ids = torch.randint(65, (2, 1, 16))
    >>> logits = model(ids)
    >>> logits.shape
    torch.Size([1, 16, 65])
    >>> loss = F.cross_entropy(logits.flatten(0, 1), next_ids.flatten())
    >>> round(loss.item(), 1)  # about ln(65) = 4.17 at init: every token about equally likely
    4.1
    >>> model.new_cache(batch=1).nbytes  # k and v x 2 layers x 2 heads x 16 dims x 16 tokens x 1 row x 4 bytes
    8192
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from .._errors import require
from ._common import register_model

ATTENTIONS = ("sdpa", "naive")
CAUSAL = "causal"  # the attention mask of queries that are the keys from position 0: SDPA's is_causal
POSITIONS = ("learned", "rotary")
KV_CACHES = ("float", "int8")


@dataclass(frozen=True)
class GPTShape:
    """The sizes and choices that make a GPT; each bad value fails with one line that says what to pick."""

    vocab_size: int
    n_layer: int
    n_head: int
    n_embd: int
    block_size: int  # the context: the most tokens the model sees at once
    dropout: float = 0.0
    bias: bool = True  # in Linears and LayerNorms, like GPT-2; False is a bit better and faster
    attention: str = "sdpa"
    positions: str = "learned"
    # Pruned heads keep their size, so the heads together may be narrower than n_embd. None: n_embd // n_head.
    head_dim: int | None = None
    mlp_width: int | None = None  # the MLP's hidden units; None: 4 x n_embd, GPT-2's
    kv_cache: str = "float"  # what decoding caches keys and values in: the model's float type, or int8

    def __post_init__(self):
        for name in ("vocab_size", "n_layer", "n_head", "n_embd", "block_size"):
            value = getattr(self, name)
            require(isinstance(value, int) and value > 0, f"{name} must be a positive integer (got {value!r})")
        derived = self.head_dim is None
        if derived:
            multiple = max(self.n_head, self.n_embd // self.n_head * self.n_head)
            require(
                self.n_embd % self.n_head == 0,
                f"n_embd {self.n_embd} is not divisible by n_head {self.n_head}: "
                f"choose n_embd a multiple of n_head, e.g. {multiple}",
            )
        # The defaults filled in, so a shape equals its spelled-out self and new_cache reads one number.
        for name, default in (("head_dim", self.n_embd // self.n_head), ("mlp_width", 4 * self.n_embd)):
            value = getattr(self, name)
            require(
                value is None or (isinstance(value, int) and value > 0),
                f"{name} must be a positive integer, or None for {default} (got {value!r})",
            )
            object.__setattr__(self, name, default if value is None else value)
        require(0 <= self.dropout < 1, f"dropout must be in [0, 1) (got {self.dropout})")
        require(self.attention in ATTENTIONS, f"attention {self.attention!r} is not one of: {', '.join(ATTENTIONS)}")
        require(self.positions in POSITIONS, f"positions {self.positions!r} is not one of: {', '.join(POSITIONS)}")
        require(self.kv_cache in KV_CACHES, f"kv_cache {self.kv_cache!r} is not one of: {', '.join(KV_CACHES)}")
        require(
            self.positions != "rotary" or self.head_dim % 2 == 0,
            f"rotary positions turn pairs of dimensions, so the head size "
            f"{'n_embd / n_head' if derived else 'head_dim'} must be even (got {self.head_dim}): "
            + ("change n_embd or n_head" if derived else "choose an even head_dim"),
        )


def gpt_args(model: GPT) -> dict:
    """The keywords that build ``model``'s architecture again, a pruned one's narrower widths included:
    ``GPT(**gpt_args(model))`` then ``load_state_dict`` restores it.

    Example:
        >>> gpt = GPT(vocab_size=16, n_layer=1, n_head=2, n_embd=8, block_size=4)
        >>> args = gpt_args(gpt)
        >>> args["head_dim"], args["mlp_width"]  # the defaults, spelled out
        (4, 32)
        >>> GPT(**args).load_state_dict(gpt.state_dict())
        <All keys matched successfully>
    """
    return dataclasses.asdict(model.shape)


def kv_cache_bytes(
    n_layer: int, n_head: int, head_dim: int, context: int, batch: int, dtype=torch.float32, int8: bool = False
) -> int:
    """Memory of a KV cache: a key and a value vector per layer, head, token of context and row of the batch.
    ``int8``: a ``QuantizedKVCache``, each vector ``head_dim`` int8 numbers and one scale in ``dtype``.

    Example:
        >>> kv_cache_bytes(n_layer=12, n_head=12, head_dim=64, context=1024, batch=1) / 2**20  # GPT-2 small, fp32
        72.0
        >>> kv_cache_bytes(12, 12, 64, context=1024, batch=1, int8=True) / 2**20  # 72 x (64 + 4) / 256
        19.125
    """
    per_vector = head_dim + dtype.itemsize if int8 else head_dim * dtype.itemsize
    return 2 * n_layer * n_head * context * batch * per_vector


class KVCache:
    """The keys and values of the tokens seen so far, preallocated for the whole context.

    Per layer one key and one value tensor of shape (batch, n_head, context, head_dim); the first
    ``pos`` tokens are filled. Preallocating means a step writes in place instead of concatenating
    (which would copy the whole cache every token).
    """

    def __init__(self, n_layer, batch, n_head, context, head_dim, dtype=torch.float32, device=None):
        shape = (batch, n_head, context, head_dim)
        self.keys = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(n_layer)]
        self.values = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(n_layer)]
        self.pos = 0

    @property
    def context(self) -> int:
        return self.keys[0].size(2)

    @property
    def nbytes(self) -> int:
        return sum(t.nbytes for t in self.keys + self.values)

    def store(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write the new tokens' keys and values after the filled ones; return all filled ones (views, no copy)."""
        end = self.pos + k.size(2)
        self.keys[layer][:, :, self.pos : end] = k
        self.values[layer][:, :, self.pos : end] = v
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]

    def reset(self) -> None:
        """Empty: the next tokens go to position 0 (the old keys are overwritten as they come)."""
        self.pos = 0


class StaticKVCache(KVCache):
    """A KV cache for a compiled decoder: the next position is a tensor (``next``) and every call reads the whole
    preallocated context, the slots not written yet masked out. Each decoding step then has the same shapes and
    no Python number changes between steps, so ``torch.compile`` compiles it once instead of once per position
    (a ``KVCache``'s ``pos`` is a Python int that the compiled code would be specialised on). Prompts of one
    length only: no padding mask.

    Example:
        >>> cache = StaticKVCache(n_layer=1, batch=1, n_head=1, context=4, head_dim=2)
        >>> k, v = cache.store(0, torch.ones(1, 1, 2, 2), torch.ones(1, 1, 2, 2))
        >>> k.shape, k[0, 0, :, 0].tolist()  # the whole context comes back; slots 2 and 3 are still empty
        (torch.Size([1, 1, 4, 2]), [1.0, 1.0, 0.0, 0.0])
    """

    def __init__(self, n_layer, batch, n_head, context, head_dim, dtype=torch.float32, device=None):
        super().__init__(n_layer, batch, n_head, context, head_dim, dtype, device)
        self.next = torch.zeros((), dtype=torch.long, device=device)

    def store(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        slots = self.next + torch.arange(k.size(2), device=k.device)
        self.keys[layer].index_copy_(2, slots, k)
        self.values[layer].index_copy_(2, slots, v)
        return self.keys[layer], self.values[layer]

    def reset(self) -> None:
        self.pos = 0
        self.next.zero_()


class QuantizedKVCache(KVCache):
    """A KV cache in int8: each key and value vector (one row, head and token: ``head_dim`` numbers) is stored
    as int8 with one scale, its largest magnitude / 127 (symmetric absmax), so the cache takes a quarter of
    fp32's bytes plus the scales: (head_dim + 4) / (4 head_dim) of an fp32 cache, 0.28x at head_dim 32.

    One scale per vector, computed as its token arrives, needs no calibration and is never outgrown by a later
    token. vLLM's fp8 cache instead takes one scale per tensor or per head, calibrated on data beforehand (or
    1.0); KIVI (Liu et al. 2024) quantizes keys per channel, since a few key channels are large, which needs a
    group of tokens before it can quantize (it keeps the latest in full precision meanwhile). Here the keys
    are per token like the values, the simplest streaming form; ``cached_loss`` measures what it costs.

    Every read dequantizes the filled range, the prompt's own keys included; without a kernel that fuses the
    dequantizing into attention this saves memory, not time.

    Example:
        >>> cache = QuantizedKVCache(n_layer=1, batch=1, n_head=1, context=4, head_dim=32)
        >>> k = torch.linspace(-1, 1, 64).view(1, 1, 2, 32)
        >>> restored, _ = cache.store(0, k, k)
        >>> (restored - k).abs().max().item() <= 1 / 127 / 2 + 1e-7  # half a step of the scale 1/127
        True
        >>> cache.nbytes, KVCache(1, 1, 1, 4, 32).nbytes  # k and v x 4 tokens x (32 int8 + a 4-byte scale)
        (288, 1024)
    """

    def __init__(self, n_layer, batch, n_head, context, head_dim, dtype=torch.float32, device=None):
        super().__init__(n_layer, batch, n_head, context, head_dim, torch.int8, device)
        self.dtype = dtype  # of the keys and values going in and coming out
        shape = (batch, n_head, context, 1)
        self.key_scales = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(n_layer)]
        self.value_scales = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(n_layer)]

    @property
    def nbytes(self) -> int:
        return super().nbytes + sum(t.nbytes for t in self.key_scales + self.value_scales)

    def store(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Quantize and write the new tokens' keys and values; return all filled ones, dequantized."""
        end = self.pos + k.size(2)
        filled = []
        for new, ints, scales in ((k, self.keys, self.key_scales), (v, self.values, self.value_scales)):
            ints[layer][:, :, self.pos : end], scales[layer][:, :, self.pos : end] = _int8(new)
            filled.append(ints[layer][:, :, :end].to(self.dtype) * scales[layer][:, :, :end])
        return filled[0], filled[1]


def _int8(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(int8 values, scale per vector of the last dimension): the largest magnitude maps to 127."""
    scale = x.abs().amax(dim=-1, keepdim=True) / 127
    ints = (x / scale.clamp(min=torch.finfo(x.dtype).tiny)).round().clamp(-127, 127).to(torch.int8)
    return ints, scale


def attention_mask(start: int, length: int, real: torch.Tensor | None, device) -> torch.Tensor:
    """True where a query may attend: (length, start + length), or (batch, 1, length, start + length) with ``real``.

    Queries are tokens ``start..start+length-1`` and see the keys at or before themselves. With left
    padding (``real`` False) they see real keys only, and a padding query sees itself, so no row is
    all masked (its softmax would be NaN, and 0 x NaN spreads into the real rows).
    """
    query = torch.arange(start, start + length, device=device)[:, None]
    key = torch.arange(start + length, device=device)[None, :]
    allowed = key <= query
    if real is None:
        return allowed
    return (allowed & (real[:, None, :] | (key == query)))[:, None]


def naive_attention(q, k, v, mask, dropout_p):
    """softmax(q kᵀ / √d, masked) v, the textbook form: it builds the whole (length x keys) score matrix that
    SDPA's fused kernels never store."""
    if mask is None or isinstance(mask, str):  # plain causal: the queries are the last of the keys
        mask = torch.ones(q.size(2), k.size(2), dtype=torch.bool, device=q.device).tril(k.size(2) - q.size(2))
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.size(-1))
    weights = scores.masked_fill(~mask, float("-inf")).softmax(dim=-1)
    return F.dropout(weights, dropout_p) @ v


def rotate(x, cos, sin):
    """RoPE (Su et al. 2021): turn each pair of dimensions (i, i + d/2) by position x frequency_i, so that
    a query·key product depends on the two positions only through their distance."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)


class CausalSelfAttention(nn.Module):
    def __init__(self, shape: GPTShape, layer: int):
        super().__init__()
        self.inner = shape.n_head * shape.head_dim  # the heads side by side: n_embd, unless heads were pruned
        self.c_attn = nn.Linear(shape.n_embd, 3 * self.inner, bias=shape.bias)  # q, k, v of all heads at once
        self.c_proj = nn.Linear(self.inner, shape.n_embd, bias=shape.bias)
        self.resid_dropout = nn.Dropout(shape.dropout)
        self.n_head, self.dropout = shape.n_head, shape.dropout
        self.naive = shape.attention == "naive"
        self.layer = layer  # which of the cache's layers is this one's

    def forward(self, x, rope, mask, cache):
        B, T, _ = x.shape
        qkv = self.c_attn(x).split(self.inner, dim=2)
        q, k, v = (t.view(B, T, self.n_head, -1).transpose(1, 2) for t in qkv)  # (B, nh, T, hs)
        if rope is not None:
            q, k = rotate(q, *rope), rotate(k, *rope)
        if cache is not None:
            k, v = cache.store(self.layer, k, v)
        dropout_p = self.dropout if self.training else 0.0
        if self.naive:
            y = naive_attention(q, k, v, mask, dropout_p)
        else:  # CAUSAL: queries are the keys from position 0; None: one new token sees every key
            causal = isinstance(mask, str)  # decided in Python: a compiled graph's length may be symbolic
            y = F.scaled_dot_product_attention(q, k, v, None if causal else mask, dropout_p, is_causal=causal)
        return self.resid_dropout(self.c_proj(y.transpose(1, 2).reshape(B, T, self.inner)))


class MLP(nn.Module):
    def __init__(self, shape: GPTShape):
        super().__init__()
        self.c_fc = nn.Linear(shape.n_embd, shape.mlp_width, bias=shape.bias)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(shape.mlp_width, shape.n_embd, bias=shape.bias)
        self.dropout = nn.Dropout(shape.dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    """Pre-norm: x + attn(ln(x)), then x + mlp(ln(x)); the residual stream itself is never normalised."""

    def __init__(self, shape: GPTShape, layer: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(shape.n_embd, bias=shape.bias)
        self.attn = CausalSelfAttention(shape, layer)
        self.ln_2 = nn.LayerNorm(shape.n_embd, bias=shape.bias)
        self.mlp = MLP(shape)

    def forward(self, x, rope, mask, cache):
        x = x + self.attn(self.ln_1(x), rope, mask, cache)
        return x + self.mlp(self.ln_2(x))


@register_model("gpt", reads="tokens")
class GPT(nn.Module):
    """A decoder-only transformer that predicts each next token; the arguments are ``GPTShape``'s fields.

    ``activation_checkpointing = True`` (a switch, not part of the shape: the weights are the same) makes
    training keep only each block's input and recompute the block's activations in the backward pass
    (Chen et al. 2016): less memory for about one more forward pass of time. The gradients are the same.
    """

    activation_checkpointing: bool = False

    def __init__(
        self,
        vocab_size: int,
        n_layer: int,
        n_head: int,
        n_embd: int,
        block_size: int,
        dropout: float = 0.0,
        bias: bool = True,
        attention: str = "sdpa",
        positions: str = "learned",
        head_dim: int | None = None,
        mlp_width: int | None = None,
        kv_cache: str = "float",
    ):
        super().__init__()
        self.shape = s = GPTShape(
            vocab_size,
            n_layer,
            n_head,
            n_embd,
            block_size,
            dropout,
            bias,
            attention,
            positions,
            head_dim,
            mlp_width,
            kv_cache,
        )
        self.transformer = nn.ModuleDict({"wte": nn.Embedding(vocab_size, n_embd)})
        if positions == "learned":
            self.transformer["wpe"] = nn.Embedding(block_size, n_embd)
        else:  # one angle per position and pair of dimensions; buffers, not weights, so checkpoints skip them
            frequencies = 10000 ** (-torch.arange(0, s.head_dim, 2) / s.head_dim)
            angles = torch.outer(torch.arange(block_size), frequencies)
            self.register_buffer("rope_cos", angles.cos(), persistent=False)
            self.register_buffer("rope_sin", angles.sin(), persistent=False)
        self.transformer["drop"] = nn.Dropout(dropout)
        self.transformer["h"] = nn.ModuleList(Block(s, layer) for layer in range(n_layer))
        self.transformer["ln_f"] = nn.LayerNorm(n_embd, bias=bias)
        self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)
        # Tied (Press & Wolf 2017): one matrix maps ids to vectors and vectors back to scores, saving
        # vocab x n_embd weights; the embedding now also learns from every output gradient.
        self.lm_head.weight = self.transformer.wte.weight
        for name, p in self.named_parameters():  # GPT-2's init
            if p.dim() == 2:  # each residual projection adds to the stream: scale so its variance stays put
                std = 0.02 / math.sqrt(2 * n_layer) if name.endswith("c_proj.weight") else 0.02
                nn.init.normal_(p, mean=0.0, std=std)
            elif name.endswith("bias"):
                nn.init.zeros_(p)

    def parameter_groups(self, weight_decay: float) -> list[dict]:
        """The optimizer's groups: weight decay on the Linear layers' matrices only. Decaying norms, biases or
        embeddings pulls a scale, an offset or a rare token's vector to zero for no gain in generalisation.

        Example:
            >>> groups = GPT(vocab_size=10, n_layer=1, n_head=1, n_embd=8, block_size=4).parameter_groups(0.1)
            >>> [(g["weight_decay"], len(g["params"])) for g in groups]  # c_attn, attn c_proj, c_fc, mlp c_proj
            [(0.1, 4), (0.0, 12)]
        """
        decayed = {id(m.weight) for m in self.modules() if isinstance(m, nn.Linear)} - {id(self.lm_head.weight)}
        params = list(self.parameters())  # the tied head/embedding matrix once
        return [
            {"params": [p for p in params if id(p) in decayed], "weight_decay": weight_decay},
            {"params": [p for p in params if id(p) not in decayed], "weight_decay": 0.0},
        ]

    def new_cache(self, batch: int, static: bool = False, int8: bool | None = None) -> KVCache:
        """An empty KV cache for ``batch`` sequences of up to ``block_size`` tokens, in the model's dtype and
        device; ``static``: a ``StaticKVCache``, for a compiled decoder; ``int8``: a ``QuantizedKVCache`` (None:
        as ``shape.kv_cache`` says)."""
        int8 = self.shape.kv_cache == "int8" if int8 is None else int8
        require(
            not (static and int8),
            "an int8 KV cache is not built for compiled decoding (a static cache): use one or the other",
        )
        s, weight = self.shape, self.transformer.wte.weight
        kind = StaticKVCache if static else QuantizedKVCache if int8 else KVCache
        return kind(s.n_layer, batch, s.n_head, s.block_size, s.head_dim, weight.dtype, weight.device)

    def forward(
        self, idx, *, cache: KVCache | None = None, real: torch.Tensor | None = None, last_only: bool = False
    ) -> torch.Tensor:
        """Next-token logits (batch, length, vocab) for token ids ``idx`` (batch, length): the training loop's
        cross-entropy against the ids shifted by one is the language-model loss.

        ``last_only``: the last position's logits only (batch, 1, vocab), all that choosing a next token needs.
        ``cache``: ``idx`` continues the ``cache.pos`` tokens cached; their keys and values are read,
        ``idx``'s are added. ``real`` (batch, cached + length), False at left padding: rows of different
        lengths, right-aligned. Padding is never attended to and positions count real tokens only, so
        each row computes what it would alone.
        """
        T = idx.size(1)
        start = 0 if cache is None else cache.pos
        context = self.shape.block_size if cache is None else cache.context
        if start + T > context:
            raise ValueError(f"{start + T} tokens exceed the context of {context}: keep the last {context} at most")
        if isinstance(cache, StaticKVCache):  # tensor positions, every key slot, the empty ones masked
            if real is not None:
                raise ValueError("a static KV cache takes prompts of one length: pad nothing, or use a KVCache")
            positions = (cache.next + torch.arange(T, device=idx.device))[None]
            mask = torch.arange(context, device=idx.device)[None, :] <= positions[0][:, None]
        elif real is None:
            positions = torch.arange(start, start + T, device=idx.device)[None]
            mask = CAUSAL if start == 0 else None if T == 1 else attention_mask(start, T, None, idx.device)
        else:
            positions = (real.cumsum(dim=1) - 1).clamp(min=0)[:, -T:]
            mask = attention_mask(start, T, real, idx.device)
        x = self.transformer.wte(idx)
        rope = None
        if self.shape.positions == "learned":
            x = x + self.transformer.wpe(positions)
        else:
            rope = self.rope_cos[positions][:, None], self.rope_sin[positions][:, None]  # broadcast over heads
        x = self.transformer.drop(x)
        # Not with a cache: the backward pass's rerun of a block would write its keys again, after the
        # cache's position moved on. Decoding needs no gradients anyway.
        recompute = self.activation_checkpointing and self.training and cache is None and torch.is_grad_enabled()
        for block in self.transformer.h:
            if recompute:
                x = checkpoint(block, x, rope, mask, cache, use_reentrant=False)
            else:
                x = block(x, rope, mask, cache)
        if isinstance(cache, StaticKVCache):
            cache.next += T  # in place: the compiled step sees the same tensor every time
        elif cache is not None:
            cache.pos += T
        x = self.transformer.ln_f(x)
        return self.lm_head(x[:, [-1]] if last_only else x)
