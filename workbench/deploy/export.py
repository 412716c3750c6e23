"""Export a stored run (or any model) as a bundle: the model files, a parity check against eager
PyTorch on the real test split that must pass before anything is written, and a model card.

The model is exported as stored: float, pruned (structured pruning leaves a smaller dense model;
unstructured leaves zeros in dense weights) or quantized. Not every format carries every model:

=====================  ===========================  =========================================
model                  onnx                         torch-export
=====================  ===========================  =========================================
float32, pruned        yes                          yes
pt2e int8 (StaticInt8  yes (QDQ graph; ONNX         yes
/ QAT)                 Runtime's int8 kernels)
torchao weight-only    yes                          yes
dynamic int8 (torch)   no: packed Linear weights    no: packed Linear weights
bf16 / fp16 cast       no: ONNX Runtime's CPU       yes
                       provider lacks the kernels
ONNX Runtime int8      yes (the graph itself)       no: it is an ONNX graph
=====================  ===========================  =========================================

A format that cannot carry the model stops the export with one line naming the format and why.

Example:
    >>> import tempfile
    >>> from workbench import RunConfig, create_model
    >>> net = create_model("mlp", 10, 1, 8)
    >>> bundle = export(net, tempfile.mkdtemp() + "/b", config=RunConfig(), fmt="onnx", latency=False)  # doctest: +SKIP
    >>> bundle.card["parity"]["onnx"]["passed"]  # doctest: +SKIP
    True
    >>> export(net, "/tmp/never", fmt="tflite")
    Traceback (most recent call last):
    ...
    ValueError: Unknown export format 'tflite'. Choose one of: both, onnx, torch-export.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from .._errors import has_module
from .._files import atomic_write, replace_dir, sha256_file
from .._registry import unknown_name_error
from ..compress import is_pt2e_program
from ..config import RunConfig
from ..data import eval_loader, load_dataset
from ..measure import MEASURE_MODES, count_parameters, cpu_features, weight_dtype
from ..measure.modes import skip_reason
from ..measure.onnx import OnnxRuntimeModule, export_onnx, export_program, onnxruntime_session, quiet_export
from ..models import model_args as make_model_args
from ..pipeline import load_model
from ..report import Result, ResultStore
from ..train import thread_count
from .bundle import CARD_FILE, FILES, Bundle, load_bundle
from .runtimes import runtime_comparison
from .staging import CARD_SCHEMA, _check_destination, _staging, _versions
from .tolerances import TOLERANCES, ParityError, Tolerance  # noqa: F401 - Tolerance: its home before the split

FORMATS = ("both", "onnx", "torch-export")
# The exporter writes opset 18 and converts to others with ONNX's version converter; asked for 14 or
# lower, it left a conv net at 18 without failing (measured, torch 2.13), so those are refused up front.
MIN_OPSET, MAX_OPSET = 15, 28
TIMING_IMAGES = 1024  # real test images the latency figures rotate through


def export(
    source: Result | str | nn.Module,
    out: str | os.PathLike,
    *,
    fmt: str | None = None,
    store: ResultStore | str | os.PathLike = "runs",
    config: RunConfig | None = None,
    data_root: str | os.PathLike = "data",
    opset: int | None = None,
    check: bool = True,
    latency: bool | Sequence[str] = True,
    batch_sizes: Sequence[int] = (1, 64),
    iters: int = 30,
    threads: int | None = None,
    parity_images: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> Bundle:
    """Write ``source`` (a stored run's id or ``Result``, or a model with the ``config`` it was trained
    with) to the bundle folder ``out`` and return it. A language-model run goes to ``lm_bundle.export_lm``
    (weights, tokenizer and card; ``fmt``, ``opset``, ``latency`` and the batch sizes are image options).

    - ``fmt``: ``onnx`` (``model.onnx``, opset ``opset`` or the exporter's default), ``torch-export``
      (``model.pt2``) or ``both`` (None: both).
    - Parity: each file is loaded back from disk and run on the whole test split (``parity_images``
      caps it) beside eager PyTorch: max absolute and relative logit error, top-1 agreement, and the
      accuracy each reaches. With ``check`` a file outside its precision's ``TOLERANCES`` stops the
      export (``ParityError``) and nothing is written; the folder appears only once complete.
    - ``latency``: the card also gets the runtime comparison (``runtime_comparison``: every runtime, or
      the execution modes listed) at ``batch_sizes`` on real test images, median of ``iters``, with
      ``threads`` CPU threads (torch's current count when None).
    - ``overwrite`` replaces an existing bundle at ``out`` (a folder with a Workbench card and only the
      model files beside it; never a result store or a folder holding anything else), swapped in atomically.
    """
    if fmt is not None and fmt not in FORMATS:
        raise unknown_name_error("export format", fmt, FORMATS)
    formats = ["onnx", "torch-export"] if fmt in (None, "both") else [fmt]
    _check_options(opset if "onnx" in formats else None, threads)
    out = Path(out)
    _check_destination(out, overwrite)  # before the model is even loaded: a bad --out costs nothing
    if not isinstance(source, nn.Module):
        source = source if isinstance(source, Result) else ResultStore.open(store).get(source)
        if source.config.task == "lm":
            from .lm_bundle import export_lm

            if fmt is not None or opset is not None:
                raise ValueError(
                    "a language model's bundle holds its weights and tokenizer (see workbench.deploy.lm_bundle): "
                    "drop --format and --opset"
                )
            return export_lm(
                source, out, store=store, data_root=data_root, threads=threads, overwrite=overwrite, check=check
            )
    model, config, result = _resolve(source, store, config)
    dataset = load_dataset(config.data.dataset, root=data_root)
    chw = tuple(dataset.test_x.shape[1:])
    batches = eval_loader(dataset, config.data, device="cpu")
    images = next(iter(eval_loader(dataset, config.data, device="cpu", batch_size=TIMING_IMAGES)))[0]  # normalised
    precision = precision_of(model)
    threads = threads or torch.get_num_threads()
    with _staging(out) as staging, thread_count(threads):
        files = {}
        for f in formats:
            files[f] = _write_format(
                model, f, staging, images[:8].clone(), opset
            )  # a copy: export saves the example's whole storage
        parity = {
            f: check_parity(
                model,
                bundle_predictor(staging, f, threads),
                batches,
                precision,
                images=parity_images,
                progress=progress,
                label=FILES[f],
            )
            for f in formats
        }
        if (
            precision == "int8"
            and "onnx" in parity
            and not parity["onnx"]["passed"]
            and not parity["onnx"]["nonfinite"]
        ):
            explain_int8_kernels(parity["onnx"], model, staging / FILES["onnx"], batches, threads, parity_images)
        failed = {f: p for f, p in parity.items() if not p["passed"]}
        if check and failed:
            verdicts = "; ".join(f"{FILES[f]}: {p['verdict']}" for f, p in failed.items())
            raise ParityError(
                f"Not written: {verdicts}. {_parity_fix(failed)}, or pass check=False (--no-check) to write it anyway"
            )
        modes = MEASURE_MODES if latency is True else tuple(latency or ())
        timings = (
            runtime_comparison(
                model,
                chw,
                images,
                names=[config.label()],
                modes=modes,
                batch_sizes=batch_sizes,
                iters=iters,
                progress=progress,
            )
            if modes
            else None
        )
        card = model_card(
            model,
            config,
            dataset,
            result=result,
            files=files,
            parity=parity,
            precision=precision,
            threads=threads,
            latency=timings,
        )
        atomic_write(staging / CARD_FILE, lambda fh: fh.write(json.dumps(card, indent=2, default=str).encode()))
        if out.exists():
            _check_destination(out, overwrite)  # again: something else may have appeared there meanwhile
        replace_dir(staging, out)
    return load_bundle(out)


def _parity_fix(failed: dict[str, dict[str, Any]]) -> str:
    if any(p["nonfinite"] for p in failed.values()):
        return "The model computes NaN or inf: train it again (a lower learning rate, or check the run's loss curve)"
    if not all(p.get("unfused", {}).get("passed") for p in failed.values()):
        return "Look for an op the exporter changed"
    if not int8_dot_products():
        return "The file is sound: check it on a CPU with VNNI or AMX"
    return "The file is sound: ONNX Runtime's fused int8 kernels stray from it"


def _check_options(opset: int | None, threads: int | None) -> None:
    """One line for an opset or thread count the export could not honour, before any work."""
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads (--threads) must be an integer >= 1, got {threads!r}")
    if opset is None:
        return
    newest = _newest_opset()
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= newest:
        raise ValueError(
            f"ONNX opset (--opset) {opset!r} is not supported: choose {MIN_OPSET} to {newest}, or leave it "
            "out for the exporter's default"
        )


def _newest_opset() -> int:
    if not has_module("onnx"):
        return MAX_OPSET
    import onnx

    return min(MAX_OPSET, onnx.defs.onnx_opset_version())


def precision_of(model: nn.Module) -> str:
    """The precision class parity is judged by: int8, float16, bfloat16 or float32 (the weights' main dtype).

    Example:
        >>> precision_of(nn.Linear(4, 4)), precision_of(nn.Linear(4, 4).to(torch.bfloat16))
        ('float32', 'bfloat16')
    """
    if is_pt2e_program(model) or isinstance(model, OnnxRuntimeModule):
        return "int8"
    main = weight_dtype(model).split(",")[0].split()[0]
    return {"int8": "int8", "uint8": "int8", "int4": "int8", "float16": "float16", "bfloat16": "bfloat16"}.get(
        main, "float32"
    )


@torch.no_grad()
def check_parity(
    reference: Callable[[torch.Tensor], torch.Tensor],
    candidate: Callable[[torch.Tensor], torch.Tensor],
    batches: Any,
    precision: str = "float32",
    *,
    images: int | None = None,
    progress: bool = False,
    label: str = "exported model",
) -> dict[str, Any]:
    """``candidate`` against ``reference`` over ``(x, y)`` batches (a test split): max absolute and
    relative logit error, top-1 agreement, each one's accuracy, and whether ``TOLERANCES[precision]`` holds.

    Logits that hold NaN or inf on either side fail, whatever the errors elsewhere (``nonfinite``
    counts those images).

    Example:
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
        >>> x, y = torch.randn(10, 1, 2, 2), torch.randint(0, 3, (10,))
        >>> p = check_parity(net, lambda b: net(b) + 1e-7, [(x, y)])
        >>> p["passed"], p["top1_agreement"], p["images"]
        (True, 1.0, 10)
        >>> p = check_parity(net, lambda b: net(b) * float("nan"), [(x, y)])
        >>> p["passed"], p["verdict"]
        (False, 'non-finite logits (NaN or inf) from exported model on 10 of 10 test images')
    """
    bar = TOLERANCES[precision]
    was_training = getattr(reference, "training", False)
    if isinstance(reference, nn.Module):
        reference.eval()
    worst = scale = 0.0
    seen = agree = right_ref = right_out = 0
    nonfinite = {"eager": 0, "exported": 0}  # images whose logits hold NaN or inf, on each side
    for x, y in tqdm(batches, desc=f"parity of {label}", unit="batch", disable=not progress, leave=False):
        if images is not None and seen >= images:
            break
        ref, out = reference(x).float().cpu(), candidate(x).float().cpu()
        if out.shape != ref.shape:
            raise ValueError(f"{label} returns shape {tuple(out.shape)}; eager PyTorch returns {tuple(ref.shape)}")
        finite_ref, finite_out = ref.isfinite().all(1), out.isfinite().all(1)
        nonfinite["eager"] += int((~finite_ref).sum())
        nonfinite["exported"] += int((~finite_out).sum())
        both = finite_ref & finite_out  # max() would drop a NaN: errors are taken where both are numbers
        if both.any():
            worst = max(worst, float((out[both] - ref[both]).abs().max()))
            scale = max(scale, float(ref[both].abs().max()))
        agree += int((out.argmax(1) == ref.argmax(1))[both].sum())
        right_ref += int(((ref.argmax(1) == y.cpu()) & finite_ref).sum())
        right_out += int(((out.argmax(1) == y.cpu()) & finite_out).sum())
        seen += len(x)
    if isinstance(reference, nn.Module):
        reference.train(was_training)
    rel, top1 = worst / max(scale, 1e-12), agree / max(seen, 1)
    broken = {side: n for side, n in nonfinite.items() if n}
    passed = not broken and rel <= bar.max_rel_error and top1 >= bar.top1_agreement
    if broken:
        verdict = "non-finite logits (NaN or inf) from " + " and ".join(
            f"{'eager PyTorch' if side == 'eager' else label} on {n} of {seen} test images"
            for side, n in broken.items()
        )
    elif passed:
        verdict = f"within the {precision} bar"
    else:
        verdict = (
            f"outside the {precision} bar (max relative error {rel:.2g} vs {bar.max_rel_error:g}, "
            f"top-1 agreement {top1:.2%} vs {bar.top1_agreement:.1%})"
        )
    return {
        "max_abs_error": worst,
        "max_rel_error": rel,
        "top1_agreement": top1,
        "images": seen,
        "accuracy_eager": right_ref / max(seen, 1),
        "accuracy_exported": right_out / max(seen, 1),
        "nonfinite": sum(broken.values()),
        "nonfinite_images": nonfinite,
        "precision": precision,
        "tolerance": dataclasses.asdict(bar),
        "passed": passed,
        "verdict": verdict,
    }


def explain_int8_kernels(
    parity: dict[str, Any], reference: nn.Module, path: Path, batches: Any, threads: int, images: int | None = None
) -> None:
    """An int8 ONNX file's ``parity`` that missed its bar gains ``unfused``: the check again with ONNX
    Runtime's graph optimizations off, so QDQ pairs stay around float ops. Within the bar that way, the
    file is sound and the fused int8 kernels stray; the verdict says so. On x86 CPUs without VNNI or AMX,
    ONNX Runtime's uint8 x int8 kernels add products in 16 bits, which can saturate (its x64 U8S8 note):
    a cnn on digits, on an AVX2-only AMD EPYC, measured max relative error 0.23 fused and 0.004 unfused."""
    unfused = check_parity(
        reference,
        onnxruntime_session(path, threads, fuse=False),
        batches,
        "int8",
        images=images,
        label=f"{path.name} unfused",
    )
    parity["unfused"] = {k: unfused[k] for k in ("max_rel_error", "top1_agreement", "accuracy_exported", "passed")}
    if unfused["passed"]:
        here = (
            ""
            if int8_dot_products()
            else "; this CPU has no VNNI or AMX, where those kernels' 16-bit sums can saturate"
        )
        parity["verdict"] += (
            f" in ONNX Runtime's fused int8 kernels, and within it unfused (max relative error "
            f"{unfused['max_rel_error']:.2g}, top-1 agreement {unfused['top1_agreement']:.2%}){here}"
        )


def int8_dot_products() -> bool:
    """Whether this CPU multiplies int8 in 32-bit sums (VNNI, AMX)."""
    return bool({"vnni", "amx"} & set(cpu_features()))


def bundle_predictor(folder: Path, fmt: str, threads: int | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
    """The predictor of one file in a bundle folder that may not have its card yet."""
    return Bundle(folder, {"files": {fmt: FILES[fmt]}, "input": {}, "classes": []}).predictor(
        fmt, threads=threads, verify=False
    )


def model_card(
    model: nn.Module,
    config: RunConfig,
    dataset: Any,
    *,
    result: Result | None,
    files: dict[str, dict[str, Any]],
    parity: dict[str, Any],
    precision: str,
    threads: int,
    latency: Any = None,
) -> dict[str, Any]:
    """The card's JSON: what the model is, how to feed it, how well it travelled, and with which versions.
    ``status`` is the run's (``ok``, or why it stopped early: a search's pruned trial trained only part way),
    ``tags`` where it came from (a study and trial)."""
    normalised = config.data.normalize
    c = dataset.in_channels
    return {
        "schema": CARD_SCHEMA,
        "run_id": result.run_id if result else None,
        "status": result.status if result else "ok",
        "tags": result.tags if result else {},
        "name": config.label(),
        "exported": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "model": {
            "name": config.model.name,
            "args": make_model_args(config.model, dataset.num_classes, tuple(dataset.test_x.shape[1:])),
            "compress": [s.label() for s in config.compress],
            "precision": precision,
            "weight_dtype": weight_dtype(model),
            **count_parameters(model),
        },
        "dataset": config.data.dataset,
        "classes": list(dataset.classes),
        "input": {
            "shape": list(dataset.test_x.shape[1:]),
            "layout": "NCHW",
            "dtype": "float32",
            "pixel_range": [0, 255],
            "mean": dataset.mean.tolist() if normalised else [0.0] * c,
            "std": dataset.std.tolist() if normalised else [1.0] * c,
            "preprocess": "x = (pixels / 255 - mean) / std, per channel",
        },
        "output": {"name": "logits", "shape": ["batch", dataset.num_classes]},
        "metrics": {"accuracy": result.metrics.get("accuracy") if result else None, "test_images": len(dataset.test_x)},
        "files": files,
        "parity": parity,
        "latency": latency.to_dict("records") if latency is not None else None,
        "versions": _versions(),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "threads": threads,
        },
        "config": config.to_dict(),
    }


def card_text(bundle: Bundle) -> str:
    """The card as a person reads it: what was exported, each file's size and parity, the latencies.

    Example:
        >>> card = {"name": "cnn", "run_id": "r1", "model": {"precision": "float32", "params": 10},
        ...         "metrics": {"accuracy": 0.9}, "input": {"shape": [1, 8, 8]},
        ...         "files": {"onnx": {"file": "model.onnx", "bytes": 2048, "opset": 20}},
        ...         "parity": {"onnx": {"max_rel_error": 1e-7, "top1_agreement": 1.0, "images": 360,
        ...                             "verdict": "within the float32 bar"}}}
        >>> print(card_text(Bundle(Path("b"), card)))  # doctest: +NORMALIZE_WHITESPACE
        bundle b: cnn (run r1), float32, 10 parameters, accuracy 90.00%, input 1x8x8
          model.onnx  2.0 KB, opset 20: max relative error 1e-07, top-1 agreement 100.00% on 360 test images,
          within the float32 bar
    """
    card = bundle.card
    if bundle.task == "lm":
        from .lm_bundle import lm_card_text

        return lm_card_text(bundle)
    accuracy = card.get("metrics", {}).get("accuracy")
    lines = [
        f"bundle {bundle.path}: {card.get('name')} (run {card.get('run_id') or 'none'}), {card['model']['precision']}, "
        f"{card['model'].get('params', '?'):,} parameters"
        + (f", accuracy {accuracy:.2%}" if accuracy is not None else "")
        + f", input {'x'.join(map(str, card['input']['shape']))}"
    ]
    if card.get("status", "ok") != "ok":
        lines.append(f"  status: {card['status']} (the run stopped early: this model did not finish its training)")
    for fmt, entry in card["files"].items():
        p = card["parity"][fmt]
        opset = f", opset {entry['opset']}" if entry.get("opset") else ""
        lines.append(
            f"  {entry['file']}  {entry['bytes'] / 1024:.1f} KB{opset}: max relative error {p['max_rel_error']:.2g}, "
            f"top-1 agreement {p['top1_agreement']:.2%} on {p['images']} test images, {p['verdict']}"
        )
    for r in card.get("latency") or []:
        where = f"{r['runtime']} on {r['device']}, batch {r['batch_size']}"
        if r.get("latency_ms") is None or r["latency_ms"] != r["latency_ms"]:
            lines.append(f"  {where}: skipped ({r.get('skipped')})")
        else:
            lines.append(
                f"  {where}: {r['latency_ms']:.3g} ms (IQR {r['latency_ms_q25']:.3g}-{r['latency_ms_q75']:.3g}), "
                f"{r['speedup_vs_eager']:.2f}x eager"
            )
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Internals


def _resolve(
    source: Result | str | nn.Module, store: Any, config: RunConfig | None
) -> tuple[nn.Module, RunConfig, Result | None]:
    if isinstance(source, nn.Module):
        if config is None:
            raise ValueError(
                "export(model) needs config=RunConfig(...) naming the dataset it was trained on: the "
                "parity check runs on its test images and the card states its normalisation"
            )
        return source.eval(), config, None
    result = source if isinstance(source, Result) else ResultStore.open(store).get(source)
    return load_model(result).eval(), result.config, result


def _write_format(model: nn.Module, fmt: str, folder: Path, example: torch.Tensor, opset: int | None) -> dict[str, Any]:
    path = folder / FILES[fmt]
    if fmt == "torch-export" and isinstance(model, OnnxRuntimeModule):
        raise ValueError(
            "torch-export cannot carry this model: it is an ONNX Runtime int8 graph, not a torch "
            "program: export it with --format onnx"
        )
    try:
        with quiet_export():
            if fmt == "onnx" and isinstance(model, OnnxRuntimeModule):  # already an ONNX graph: ship its bytes
                path.write_bytes(model.graph_bytes())
            elif fmt == "onnx":
                export_onnx(model, example, path, opset=opset)
            else:
                torch.export.save(export_program(model, example), path)
        if fmt == "onnx":
            _check_onnx_runs(path)
    except Exception as e:  # noqa: BLE001  (every exporter failure gets the same one-line answer)
        other = "torch-export" if fmt == "onnx" else "onnx"
        reason = skip_reason("onnxruntime" if fmt == "onnx" else "export", e)
        raise ValueError(
            f"{fmt} cannot carry this model ({reason}): export it with --format {other}, "
            "or export the run before that compression step"
        ) from None
    entry = {"file": path.name, "bytes": path.stat().st_size, "sha256": sha256_file(path)}
    if fmt == "onnx" and has_module("onnx"):
        import onnx

        entry["opset"] = next(
            (
                o.version
                for o in onnx.load(str(path), load_external_data=False).opset_import
                if o.domain in ("", "ai.onnx")
            ),
            None,
        )
        if opset is not None and entry["opset"] != opset and not isinstance(model, OnnxRuntimeModule):
            raise ValueError(
                f"ONNX's version converter could not take this model to opset {opset} (the file came out "
                f"at opset {entry['opset']}): use --opset {entry['opset']}, or leave --opset out"
            )
    return entry


def _check_onnx_runs(path: Path) -> None:
    from ..measure.onnx import onnxruntime_session

    onnxruntime_session(path, threads=1)  # a graph ONNX Runtime cannot load (bf16 kernels...) fails here
