"""The training loop: one screen, everything else plugs in through callbacks."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch.profiler import record_function

from .callbacks import Callback, CallbackList, Checkpoint, TrainState
from .compile_probe import CompileDecision, first_batch, per_target, probe_compile
from .config import EvalConfig, HardwareConfig, TrainConfig
from .optim import make_optimizer, make_scheduler, optimizer_state_bytes
from .parallel import SINGLE, Group
from .tta import tta_logits

_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
_DEFAULT_HARDWARE = HardwareConfig()  # frozen: one shared default is safe


@dataclass
class TrainOutcome:
    history: list[dict[str, Any]] = field(default_factory=list)
    status: str = "ok"  # ok, nan-loss, or a callback's stop reason
    seconds: float = 0.0  # wall time of the training epochs (evaluation excluded)
    images: int = 0  # training images processed
    resumed_epochs: int = 0  # epochs restored from a checkpoint instead of trained here
    compile_decision: CompileDecision | None = None  # what compile="auto" measured and chose
    trainable_params: int = 0  # the numbers training changed (LoRA: the adapters only)
    optimizer_state_bytes: int = 0  # what the optimizer kept beside them


def check_precision(precision: str, device: torch.device) -> None:
    """fp16 autocast with a grad scaler needs CUDA; bf16 works on CPU and CUDA (slowly where unsupported)."""
    if precision == "fp16" and device.type != "cuda":
        raise ValueError(f"precision 'fp16' needs a CUDA GPU (device is {device.type}): use 'bf16' or 'fp32' here.")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError("precision 'bf16' is not supported by this GPU: use 'fp16' or 'fp32'.")


def autocast_for(precision: str, device: torch.device):
    """The autocast context for a precision name (a no-op for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=_AUTOCAST_DTYPES[precision])


def train(
    model: torch.nn.Module,
    train_loader: Iterable,
    cfg: TrainConfig,
    *,
    eval_loader: Iterable | None = None,
    hardware: HardwareConfig = _DEFAULT_HARDWARE,
    device: str | torch.device = "cpu",
    callbacks: Sequence[Callback] = (),
    resume_from: str | None = None,
    criterion: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    parallel: Group = SINGLE,
) -> TrainOutcome:
    """Train ``model`` in place for ``cfg.epochs``; returns the per-epoch history and why it stopped.

    A non-finite training loss stops training after that epoch with status ``nan-loss``; the history
    so far is kept. ``resume_from`` continues from a ``Checkpoint`` callback's file. Before each epoch
    the loader's ``set_epoch(epoch)`` is called where it has one, so a resumed run sees the same
    batches. ``criterion(logits, x, y)`` replaces the cross-entropy (distillation passes one that also
    asks a teacher). ``parallel`` is this process's group in a data-parallel run: it wraps the model
    (DDP or FSDP), and each epoch's record counts every rank's examples (``train_loader`` is this
    rank's shard); ``images`` and ``seconds`` stay this rank's own.

    Example:
        >>> import torch
        >>> from workbench.train import TrainConfig
        >>> x, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
        >>> model = torch.nn.Linear(4, 2)
        >>> out = train(model, [(x, y)], TrainConfig(epochs=2, lr=0.1))
        >>> len(out.history), out.status
        (2, 'ok')
    """
    device = torch.device(device)
    check_precision(hardware.precision, device)
    if hardware.tf32 and device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = hardware.cudnn_benchmark
    memory_format = torch.channels_last if hardware.channels_last else torch.contiguous_format
    model.to(device=device, memory_format=memory_format)
    wrapped = parallel.wrap(model)  # FSDP shards the parameters in place: the optimizer must see the shards
    optimizer = make_optimizer(model, cfg, impl=hardware.optimizer_impl)
    updates_per_epoch = -(-len(train_loader) // cfg.accumulate)
    scheduler = make_scheduler(optimizer, cfg, updates_per_epoch)
    # The scaler keeps small fp16 gradients from flushing to zero; it is a pass-through otherwise.
    scaler = torch.amp.GradScaler(device.type, enabled=hardware.precision == "fp16")
    state = TrainState(model, optimizer, scheduler, scaler, cfg.epochs, len(train_loader), parallel=parallel)
    if resume_from:
        Checkpoint(resume_from).restore(state, device)
    hooks = CallbackList(callbacks)
    outcome = TrainOutcome(history=state.history, resumed_epochs=state.epoch)
    forward = torch.compile(wrapped, mode=hardware.compile_mode) if hardware.compile else wrapped
    if hardware.compile == "auto":
        outcome.compile_decision = probe_compile(
            model,
            first_batch(train_loader),
            forward,
            steps_left=(cfg.epochs - state.epoch) * len(train_loader),
            precision_context=lambda: autocast_for(hardware.precision, device),
            memory_format=memory_format,
        )
        forward = forward if outcome.compile_decision.compile else wrapped
    probe_s = outcome.compile_decision.probe_s if outcome.compile_decision else 0.0  # counted in the first epoch
    hooks.on_train_start(state)
    optimizer.zero_grad(set_to_none=True)  # gradients a compression step left behind (Taylor scores)

    for epoch in range(state.epoch, cfg.epochs):
        state.epoch = epoch
        if hasattr(train_loader, "set_epoch"):
            train_loader.set_epoch(epoch)
        model.train()
        t0 = time.perf_counter()
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        seen = 0
        # The named regions are what workbench.profile measures; outside a profiler they cost nothing.
        for i, (x, y) in enumerate(_batches(train_loader)):
            x = x.contiguous(memory_format=memory_format)
            with record_function("forward"), autocast_for(hardware.precision, device):
                logits, y = per_target(forward(x), y)
                if criterion is None:
                    loss = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
                else:
                    loss = criterion(logits, x, y)
            with record_function("backward"):
                scaler.scale(loss / cfg.accumulate).backward()
            if (i + 1) % cfg.accumulate == 0 or i + 1 == len(train_loader):
                with record_function("optimizer"):
                    if cfg.grad_clip:
                        scaler.unscale_(optimizer)
                        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                    scaler.step(optimizer)
                    scaler.update()
                    scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
            # Accumulate on the device: reading .item() every step would sync a GPU each time.
            loss_sum += loss.detach().float() * len(y)
            correct += (logits.argmax(1) == y).sum()
            seen += len(y)
            state.step += 1
            state.last_loss = loss.detach()
            hooks.on_batch_end(state)
            if state.halt:
                break
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds, probe_s = time.perf_counter() - t0 + probe_s, 0.0
        outcome.seconds += seconds
        outcome.images += seen
        loss_sum, correct, everyone = parallel.sum(loss_sum, correct, torch.tensor(seen, device=device))
        everyone = int(everyone.item())
        record = {
            "epoch": epoch + 1,
            "train_loss": loss_sum.item() / max(everyone, 1),
            "train_accuracy": correct.item() / max(everyone, 1),
            "lr": optimizer.param_groups[0]["lr"],
            "seconds": seconds,
            # Training time so far (evaluation left out), across a resume too: the x of time-to-accuracy.
            "elapsed_s": (state.history[-1].get("elapsed_s", 0.0) if state.history else 0.0) + seconds,
            "images_per_s": everyone / seconds if seconds > 0 else float("nan"),
        }
        if getattr(train_loader, "note", ""):  # how the loader cut this epoch, where it matters
            record["note"] = train_loader.note
        if not math.isfinite(record["train_loss"]):
            state.stop = (
                f"nan-loss: training loss became {record['train_loss']} in epoch {epoch + 1}; "
                f"lower the learning rate (train.lr={cfg.lr}), add warm-up or gradient clipping"
            )
        elif eval_loader is not None:
            ev = evaluate(model, eval_loader, device=device, precision=hardware.precision)
            record.update(test_loss=ev["loss"], test_accuracy=ev["accuracy"])
        state.history.append(record)
        hooks.on_epoch_end(state, record)
        state.stop = parallel.from_main(state.stop)  # ranks evaluate apart: rank 0's early stop ends them all
        if state.stop:
            outcome.status = state.stop
            break
        if state.halt:
            break
    hooks.on_train_end(state)
    outcome.trainable_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    outcome.optimizer_state_bytes = optimizer_state_bytes(optimizer)
    return outcome


def _batches(loader: Iterable) -> Iterator:
    batches = iter(loader)
    while True:
        with record_function("data"):
            batch = next(batches, None)
        if batch is None:
            return
        yield batch


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    loader: Iterable,
    *,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
    tta: EvalConfig | None = None,
) -> dict[str, float]:
    """Mean cross-entropy and top-1 accuracy of ``model`` over ``loader``. With ``tta`` (an ``EvalConfig``
    asking for views) they are of the averaged logits, where the plain answer is unsure enough; the
    plain accuracy and the share of images augmented come as ``accuracy_plain`` and ``tta_share``.

    Example:
        >>> import torch
        >>> model = torch.nn.Linear(3, 2)
        >>> sorted(evaluate(model, [(torch.randn(8, 3), torch.zeros(8, dtype=torch.long))]))
        ['accuracy', 'loss']
    """
    device = torch.device(device)
    views = tta.tta if tta is not None else "none"
    was_training = model.training
    model.eval()
    loss_sum, correct, plain_correct, augmented, seen = 0.0, 0, 0, 0, 0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        with autocast_for(precision, device):
            logits, y = per_target(model(x).float(), y)
            plain_correct += (logits.argmax(1) == y).sum().item()
            if views != "none":
                unsure = logits.softmax(1).amax(1) < tta.tta_below
                if unsure.any():
                    logits[unsure] = tta_logits(model, x[unsure], views, tta.tta_shift)
                augmented += unsure.sum().item()
        loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
        seen += len(y)
    model.train(was_training)
    n = max(seen, 1)
    scores = {"loss": loss_sum / n, "accuracy": correct / n}
    return scores if views == "none" else {**scores, "accuracy_plain": plain_correct / n, "tta_share": augmented / n}
