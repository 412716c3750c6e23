"""Export a language-model run as a bundle a server loads without the run's store or its text.

```
bundle/
  card.json           task "lm": perplexity and bits per byte of the bundle itself, bytes, the parity of
                      its logits with the run's model on the validation windows, decode speed, versions
  model.safetensors   the weights (a float, cast, pruned or int8-cache GPT), or
  model.pt            the state dict of a model whose Linear weights are packed int8 (dynamic_int8,
                      torchao's weight-only int8/int4): read with torch.load(weights_only=True)
  tokenizer.json      the tokenizer the run was trained with
```

Why weights and not a ``torch.export`` program: a served decode step reads and extends a KV cache
whose length changes every step and whose rows come and go with continuous batching. A program would
have to take the whole cache as inputs and return it, at one shape per batch and context, and lose
what the server does between steps (padding, joining, dropping rows). Servers that batch this way
(vLLM, TGI, llama.cpp) load weights into their own decoding code too. safetensors holds plain tensors
only, and reading it runs no code; a packed int8 layout is not a plain tensor, so those models go in
``model.pt``, read with ``weights_only=True``.

Example:
    >>> bundle = export_lm(run_id, "bundle/", store="runs")  # doctest: +SKIP
    >>> model, tokenizer = load_language_model(bundle)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._errors import require_modules
from .._files import atomic_write, replace_dir, sha256_file
from ..compress import load_quantized, save_quantized
from ..data import Tokenizer, tokenizer_from_dict
from ..measure import count_parameters, weight_dtype
from ..models import create_model
from ..models.gpt import GPT, gpt_args
from ..report import Result, ResultStore
from ..train import thread_count
from .bundle import CARD_FILE, LM_CARD_SCHEMA, TOKENIZER_FILE, WEIGHT_FILES, Bundle, load_bundle
from .staging import _check_destination, _staging, _versions
from .tolerances import TOLERANCES, ParityError

PARITY_WINDOWS = 64  # validation windows the bundle's logits are compared on
DECODE_TOKENS = 32  # new tokens per timed greedy decode on the card


def export_lm(
    source: Result | str,
    out: str | os.PathLike,
    *,
    store: ResultStore | str | os.PathLike = "runs",
    data_root: str | os.PathLike = "data",
    threads: int | None = None,
    overwrite: bool = False,
    check: bool = True,
) -> Bundle:
    """Write a stored language-model run (its id or ``Result``) to the bundle folder ``out``.

    The weights are written, read back from the staging folder as a server reads them, and the reloaded
    model's logits are compared with the run's on ``PARITY_WINDOWS`` validation windows (max absolute and
    relative error, top-1 agreement, loss of each); with ``check`` a bundle outside the float32 bar is not
    written (``ParityError``). The card's perplexity and bits per byte are the reloaded bundle's own, on the
    run's validation windows; its decode speed is timed greedy decoding at batch 1 with the KV cache."""
    from ..pipeline import load_model
    from ..tasks import task_of

    require_modules(["safetensors"], "Exporting a language model", "pip install safetensors")
    out = Path(out)
    _check_destination(out, overwrite)
    result = source if isinstance(source, Result) else ResultStore.open(store).get(source)
    config = result.config
    if config.task != "lm":
        raise ValueError(f"run {result.run_id} is an image model: export it with workbench.deploy.export")
    task = task_of(config)
    data = task.load(config, data_root)
    model = load_model(result).eval()
    threads = threads or torch.get_num_threads()
    with _staging(out) as staging, thread_count(threads):
        files = {"weights": write_weights(model, staging), "tokenizer": _write_tokenizer(data.tokenizer, staging)}
        reloaded = read_weights(staging, files["weights"], gpt_args(model))
        validation = torch.cat([x for x, _ in task.eval_batches(config, data, "cpu")])
        windows = validation[:PARITY_WINDOWS]
        parity = logit_parity(model, reloaded, windows, TOLERANCES["float32"].max_rel_error)
        if check and not parity["passed"]:
            raise ParityError(f"Not written: the reloaded weights {parity['verdict']}; export the run again")
        evaluated = task.evaluate(config, reloaded, data, "cpu")
        card = {
            "schema": LM_CARD_SCHEMA,
            "task": "lm",
            "run_id": result.run_id,
            "status": result.status,
            "name": config.label(),
            "exported": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "model": {
                "name": config.model.name,
                "args": gpt_args(model),
                "compress": [s.label() for s in config.compress],
                "weight_dtype": weight_dtype(model),
                **count_parameters(model),
            },
            "dataset": config.data.dataset,
            "tokenizer": {"name": data.tokenizer.name, "vocab_size": data.tokenizer.vocab_size},
            "metrics": {
                "loss": evaluated["loss"],
                "perplexity": evaluated["perplexity"],
                "bits_per_byte": evaluated["bits_per_byte"],
                "run_perplexity": result.metrics.get("perplexity"),
                "validation_windows": len(validation),
            },
            "files": files,
            "parity": parity,
            "decode": decode_speed(reloaded, windows[0, : model.shape.block_size // 2]),
            "versions": {**_versions(), "safetensors": _version("safetensors")},
            "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine()},
            "config": config.to_dict(),
        }
        atomic_write(staging / CARD_FILE, lambda fh: fh.write(json.dumps(card, indent=2, default=str).encode()))
        if out.exists():
            _check_destination(out, overwrite)
        replace_dir(staging, out)
    return load_bundle(out)


def plain_weights(model: nn.Module) -> bool:
    """Whether safetensors can hold ``model``'s weights: a ``GPT`` whose state is plain tensors."""
    state = model.state_dict()
    return type(model) is GPT and all(
        type(t) in (torch.Tensor, nn.Parameter) and not t.is_quantized for t in state.values()
    )


def write_weights(model: nn.Module, folder: Path) -> dict[str, Any]:
    """The weights file of ``model`` in ``folder``: its card entry (file, format, why, bytes, sha256)."""
    if plain_weights(model):
        from safetensors.torch import save_file

        # The head is tied to the token embedding: one matrix, stored once, tied again on loading.
        state = {k: v.detach().contiguous() for k, v in model.state_dict().items() if k != "lm_head.weight"}
        fmt = "safetensors"
        save_file(state, str(folder / WEIGHT_FILES[fmt]), metadata={"format": "pt"})
        why = "plain tensors: safetensors stores them without any code to run on loading"
    else:
        fmt = "state_dict"
        save_quantized(model, folder / WEIGHT_FILES[fmt])
        why = (
            f"{weight_dtype(model)} weights in a packed or wrapped layout that safetensors cannot hold: the state "
            "dict, read with torch.load(weights_only=True)"
        )
    path = folder / WEIGHT_FILES[fmt]
    return {"file": path.name, "format": fmt, "why": why, "bytes": path.stat().st_size, "sha256": sha256_file(path)}


def read_weights(folder: Path, entry: dict[str, Any], args: dict[str, Any], data: bytes | None = None) -> nn.Module:
    """The model a weights file holds, rebuilt as ``GPT(**args)`` and in eval mode; ``data``: the file's bytes,
    already read (and checked)."""
    path = Path(folder) / entry["file"]
    model = create_model(name="gpt", **{k: v for k, v in args.items() if k != "name"})
    if entry["format"] == "safetensors":
        from safetensors.torch import load

        missing, unexpected = model.load_state_dict(load(data or path.read_bytes()), strict=False)
        if list(missing) != ["lm_head.weight"] or unexpected:
            raise ValueError(f"{path} does not fit the card's model (missing {missing}, unexpected {unexpected})")
        model.lm_head.weight = model.transformer.wte.weight
        return model.eval()
    return load_quantized(path, model=model).eval()


def load_language_model(bundle: Bundle) -> tuple[nn.Module, Tokenizer]:
    """The model and tokenizer of a language-model bundle, each file checked against its card's SHA-256."""
    files = bundle.card["files"]
    weights = bundle.verified_file(files["weights"]["file"], files["weights"])
    model = read_weights(bundle.path, files["weights"], bundle.card["model"]["args"], data=weights)
    tokenizer = tokenizer_from_dict(json.loads(bundle.verified_file(files["tokenizer"]["file"], files["tokenizer"])))
    return model, tokenizer


@torch.no_grad()
def logit_parity(reference: nn.Module, candidate: nn.Module, windows: torch.Tensor, max_rel_error: float) -> dict:
    """The two models' next-token logits on ``windows`` (batch, block): errors, top-1 agreement, each loss.

    Example:
        >>> net = GPT(vocab_size=8, n_layer=1, n_head=1, n_embd=8, block_size=4).eval()
        >>> p = logit_parity(net, net, torch.randint(8, (2, 4)), 1e-4)
        >>> p["passed"], p["max_abs_error"], p["top1_agreement"]
        (True, 0.0, 1.0)
    """
    ref, out = reference(windows).float(), candidate(windows).float()
    targets = windows[:, 1:].flatten()
    worst = float((out - ref).abs().max())
    rel = worst / max(float(ref.abs().max()), 1e-12)
    top1 = float((out.argmax(-1) == ref.argmax(-1)).float().mean())

    def loss(logits: torch.Tensor) -> float:
        return float(torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), targets))

    passed = math.isfinite(rel) and rel <= max_rel_error and top1 >= 0.999
    return {
        "windows": len(windows),
        "positions": int(windows.numel()),
        "max_abs_error": worst,
        "max_rel_error": rel,
        "top1_agreement": top1,
        "loss_run": loss(ref),
        "loss_bundle": loss(out),
        "passed": passed,
        "verdict": "match the run's logits"
        if passed
        else f"differ from the run's logits (max relative error {rel:.2g} > {max_rel_error:g} or top-1 {top1:.2%})",
    }


@torch.no_grad()
def decode_speed(model: nn.Module, prompt: torch.Tensor, new_tokens: int = DECODE_TOKENS, repeats: int = 3) -> dict:
    """Greedy decoding of one prompt with the KV cache: median tokens/s of ``repeats`` runs after a warm-up."""
    from ..models.generation import generate

    times = []
    for i in range(repeats + 1):
        t0 = time.perf_counter()
        generate(model, [prompt], new_tokens, temperature=0)
        if i:
            times.append(time.perf_counter() - t0)
    median = sorted(times)[len(times) // 2]
    return {
        "batch_size": 1,
        "prompt_tokens": len(prompt),
        "new_tokens": new_tokens,
        "tokens_per_s": new_tokens / median,
        "ms_per_token": 1000 * median / new_tokens,
        "threads": torch.get_num_threads(),
        "repeats": repeats,
    }


def lm_card_text(bundle: Bundle) -> str:
    """A language-model card as a person reads it.

    Example:
        >>> card = {"name": "gpt", "run_id": "r1", "model": {"params": 10, "compress": []},
        ...         "metrics": {"perplexity": 3.2, "bits_per_byte": 1.68},
        ...         "files": {"weights": {"file": "model.safetensors", "bytes": 2048, "why": "plain tensors"}},
        ...         "parity": {"max_rel_error": 0.0, "top1_agreement": 1.0, "windows": 64, "verdict": "match"},
        ...         "decode": {"tokens_per_s": 900.0, "threads": 2}}
        >>> print(lm_card_text(Bundle(Path("b"), card)))  # doctest: +NORMALIZE_WHITESPACE
        bundle b: gpt (run r1), language model, 10 parameters, perplexity 3.200, 1.680 bits per byte
          model.safetensors  2.0 KB (plain tensors): max relative error 0 against the run on 64 validation windows,
          top-1 agreement 100.00%, match
          greedy decoding, batch 1: 900 tokens/s on 2 threads
    """
    card = bundle.card
    m, w, p = card["metrics"], card["files"]["weights"], card["parity"]
    steps = card["model"].get("compress") or []
    lines = [
        f"bundle {bundle.path}: {card.get('name')} (run {card.get('run_id') or 'none'}), language model"
        + (f" compressed by {', '.join(steps)}" if steps else "")
        + f", {card['model'].get('params', '?'):,} parameters, perplexity {m['perplexity']:.3f}, "
        f"{m['bits_per_byte']:.3f} bits per byte",
        f"  {w['file']}  {w['bytes'] / 1024:.1f} KB ({w['why']}): max relative error {p['max_rel_error']:.2g} against "
        f"the run on {p['windows']} validation windows, top-1 agreement {p['top1_agreement']:.2%}, {p['verdict']}",
        f"  greedy decoding, batch 1: {card['decode']['tokens_per_s']:.0f} tokens/s on {card['decode']['threads']} "
        "threads",
    ]
    return "\n".join(lines)


def _write_tokenizer(tokenizer: Tokenizer, folder: Path) -> dict[str, Any]:
    path = folder / TOKENIZER_FILE
    path.write_text(json.dumps(tokenizer.to_dict()))
    return {"file": path.name, "name": tokenizer.name, "bytes": path.stat().st_size, "sha256": sha256_file(path)}


def _version(name: str) -> str | None:
    import importlib.metadata as md

    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None
