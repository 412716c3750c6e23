"""The exercises of notebooks 01-16, one check each, in notebook order.

Every check computes what the right answer gives (with torch, the package or the notebook's own
measurements) and compares; its messages name the usual mistake before the general fix.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from . import Answers, NotYet, exercise, expect


def _close(got, want, rel: float = 1e-4) -> bool:
    return math.isclose(float(got), float(want), rel_tol=rel, abs_tol=1e-9)


# --- 01 measure ---------------------------------------------------------------------------------


@exercise(
    "01.params",
    task="Count `model`'s parameters yourself: every number in every weight and bias tensor.",
    names=("n_params",),
    solution="n_params = sum(p.numel() for p in model.parameters())",
    wrong=(
        "n_params = len(list(model.parameters()))",
        "n_params = sum(p.numel() for p in model.parameters() if p.dim() > 1)",
    ),
    hint="a tensor's .numel() is how many numbers it holds.",
)
def _params(a: Answers) -> str:
    tensors = list(a.model.parameters())
    truth = sum(p.numel() for p in tensors)
    n = a.n_params
    expect(
        n != len(tensors),
        f"{n} is how many parameter tensors `model` has; count the numbers inside them: p.numel() for each.",
    )
    expect(
        not n < truth,
        f"You counted {n:,}, {truth - n:,} short of {truth:,}: "
        "biases and BatchNorm's scale and shift are parameters too.",
    )
    expect(
        n == truth,
        f"You counted {n:,}, but `model` holds {truth:,} numbers in its parameters: "
        "count each tensor once, with p.numel().",
    )
    return (
        f"{truth:,} parameters, {4 * truth / 1024:.0f} KiB in fp32 (4 bytes each): "
        "the size before anything is compressed."
    )


@exercise(
    "01.time_ms",
    task="Write `time_ms(fn, iters)`: the typical time of one call `fn()` in milliseconds, "
    "as an honest benchmark reports it.",
    names=("time_ms",),
    solution="""
import statistics
import time

def time_ms(fn, iters):
    for _ in range(3):  # warm-up, untimed
        fn()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)
""",
    wrong=(
        """
import time

def time_ms(fn, iters):
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    return (time.perf_counter() - start) * 1000 / iters
""",
        """
import time

def time_ms(fn, iters):
    fn()  # one warm-up call
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    return (time.perf_counter() - start) * 1000 / iters
""",
    ),
    hint="the first calls pay for set-up; one slow call should not move the answer.",
)
def _time_ms(a: Answers) -> str:
    calls = {"n": 0}

    def fn():  # 2 ms a call, but the first costs 80 ms and the eighth 60 ms (a hiccup of the machine)
        calls["n"] += 1
        time.sleep({1: 0.08, 8: 0.06}.get(calls["n"], 0.002))

    got = a.time_ms(fn, 15)
    expect(
        isinstance(got, (int, float)) and math.isfinite(got),
        f"time_ms returned {got!r}; return one number of milliseconds.",
    )
    expect(got > 0.5, f"{got:.3g} ms for a call that sleeps 2 ms: are you returning seconds? Multiply by 1000.")
    expect(
        got < 4.5,
        f"{got:.1f} ms for a call that usually takes 2 ms: your figure carries the first call's 80 ms of "
        "warm-up or the one 60 ms hiccup. Run a few calls untimed first, then take the median of the timed ones.",
    )
    return (
        f"{got:.2f} ms for a 2 ms call, although the first call took 80 ms and one other 60 ms: warm-up first, "
        "then the median, which a single hiccup does not move."
    )


# --- 02 model structure -------------------------------------------------------------------------


@exercise(
    "02.half",
    task="Make `half`: the config `base` at half its width, every other setting unchanged.",
    names=("half",),
    solution='half = base.replace(**{"model.width": base.model.width / 2})',
    wrong=(
        'half = base.replace(**{"model.width": 2 * base.model.width})',
        "half = RunConfig(model=ModelConfig(name=model, width=base.model.width / 2))",
    ),
    hint='base.replace(**{"model.width": ...}) copies base with one field changed.',
)
def _half(a: Answers) -> str:
    from ...config import RunConfig
    from ...data import load_dataset
    from ...measure import count_parameters
    from ...models import create_model

    base, half = a.base, a.half
    expect(
        isinstance(half, RunConfig), f"`half` is a {type(half).__name__}; make it a RunConfig, with base.replace(...)."
    )
    want = base.model.width / 2
    expect(
        _close(half.model.width, want),
        f"`half` has width {half.model.width}, base has {base.model.width}: half of it is {want}.",
    )
    changed = sorted(k for k, v in half.flat().items() if k not in ("model.width", "name") and base.flat().get(k) != v)
    expect(
        not changed,
        f"`half` also changes {', '.join(changed)}: start from base (base.replace) so only the width differs.",
    )
    data = load_dataset(base.data.dataset)
    counts = [
        count_parameters(
            create_model(
                c.model.name,
                data.num_classes,
                data.in_channels,
                data.image_size,
                width=c.model.width,
                depth=c.model.depth,
            )
        )["params"]
        for c in (base, half)
    ]
    return (
        f"Only the width changed: {counts[1]:,} parameters against base's {counts[0]:,}, {counts[1] / counts[0]:.2f}x. "
        "About (1/2)² = 0.25, since each convolution loses half its inputs and half its outputs."
    )


# --- 03 training algorithms ---------------------------------------------------------------------


@exercise(
    "03.cosine",
    task="Write `cosine_lr(step, total, peak)`: a cosine schedule's learning rate, "
    "from `peak` at step 0 down to 0 at step `total`.",
    names=("cosine_lr",),
    solution="""
import math

def cosine_lr(step, total, peak):
    return peak * (1 + math.cos(math.pi * step / total)) / 2
""",
    wrong=(
        """
import math

def cosine_lr(step, total, peak):
    return peak * math.cos(math.pi * step / total)
""",
        """
def cosine_lr(step, total, peak):
    return peak * (1 - step / total)
""",
    ),
    hint="cos goes from 1 to -1 over half a turn; the schedule must go from 1 to 0.",
)
def _cosine(a: Answers) -> str:
    total, peak = 50, 0.1
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=peak)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)
    reference = []
    for _ in range(total + 1):
        reference.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    got = [float(a.cosine_lr(s, total, peak)) for s in range(total + 1)]
    expect(
        not _close(got[-1], -peak, 1e-3),
        f"At the last step yours gives {got[-1]:.3g}, minus the peak: cos alone reaches -1 there. "
        "Shift it up by 1 and halve it, so it ends at 0.",
    )
    bad = next((s for s, (g, r) in enumerate(zip(got, reference)) if abs(g - r) > 1e-6 * peak), None)
    if bad is not None:
        mid = total // 2
        shape = (
            " Yours falls in a straight line; cosine falls slowly at first and last, fastest in the middle."
            if all(abs(got[s] - peak * (1 - s / total)) < 1e-9 for s in range(total + 1))
            else ""
        )
        raise NotYet(
            f"At step {bad} of {total} (peak {peak}) PyTorch's CosineAnnealingLR gives {reference[bad]:.4g}, yours "
            f"{got[bad]:.4g}; at the midpoint it should be half the peak ({reference[mid]:.3g}).{shape}"
        )
    return (
        f"It matches PyTorch's CosineAnnealingLR at all {total + 1} steps: half the peak at the midpoint, "
        f"and only {reference[-5] / peak:.1%} of it four steps from the end, so training ends with gentle steps."
    )


# --- 04 data --------------------------------------------------------------------------------------


@exercise(
    "04.hflip",
    task="Write `hflip(x)`: mirror every image of a batch `x` shaped (N, C, H, W) left to right.",
    names=("hflip",),
    solution="def hflip(x):\n    return x.flip(-1)",
    wrong=("def hflip(x):\n    return x.flip(2)", "def hflip(x):\n    return x.flip(0)"),
    hint="tensor.flip(dim) reverses one dimension; which one runs left to right?",
)
def _hflip(a: Answers) -> str:
    from ...data import load_dataset

    images = load_dataset(a.dataset).train_x[:8]
    x = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 3, 4, 5)  # H != W, every value distinct
    for batch in (x, images):
        before = batch.clone()
        got = a.hflip(batch)
        expect(
            isinstance(got, torch.Tensor) and got.shape == batch.shape,
            f"hflip should return a tensor shaped like its input {tuple(batch.shape)}, "
            f"got {getattr(got, 'shape', type(got).__name__)}.",
        )
        expect(
            torch.equal(batch, before), "hflip changed its input in place; return a new tensor and leave x as it was."
        )
        expect(
            not torch.equal(got, batch.flip(2)) or torch.equal(got, batch.flip(-1)),
            "That mirrors top to bottom: in (N, C, H, W) the height is dimension 2 and the width the last one, -1.",
        )
        expect(
            not torch.equal(got, batch.flip(0)) or torch.equal(got, batch.flip(-1)),
            "That reverses the order of the images in the batch, not each image: flip the width, the last dimension.",
        )
        expect(
            torch.equal(got, batch.flip(-1)),
            "Column j of each image should become column W-1-j, the rows and channels unchanged.",
        )
    return (
        "Column j became column W-1-j in every image and channel, "
        f"on a test tensor and on {len(images)} {a.dataset} images. "
        "A mirrored cat is still a cat; a mirrored digit may not be the same digit, "
        "so check an augmentation suits the data."
    )


# --- 05 hardware ----------------------------------------------------------------------------------


@exercise(
    "05.per_image",
    task="From the two profiles `small` and `step`, compute `per_image_ratio`: how many times more time per image "
    "a training step of batch `small_batch` takes than a step of the default batch.",
    names=("per_image_ratio",),
    solution=(
        'per_image_ratio = (small.attrs["step_ms"] / small.attrs["batch_size"]) / '
        '(step.attrs["step_ms"] / step.attrs["batch_size"])'
    ),
    wrong=(
        'per_image_ratio = small.attrs["step_ms"] / step.attrs["step_ms"]',
        'per_image_ratio = (step.attrs["step_ms"] / step.attrs["batch_size"]) / '
        '(small.attrs["step_ms"] / small.attrs["batch_size"])',
    ),
    hint='each profile keeps its step time and batch size in .attrs["step_ms"] and .attrs["batch_size"].',
)
def _per_image(a: Answers) -> str:
    small, big = a.small.attrs, a.step.attrs
    truth = (small["step_ms"] / small["batch_size"]) / (big["step_ms"] / big["batch_size"])
    got = float(a.per_image_ratio)
    expect(
        not _close(got, small["step_ms"] / big["step_ms"]) or _close(got, truth),
        f"That compares whole steps; a step of batch {small['batch_size']} carries fewer images than one of "
        f"{big['batch_size']}: divide each step's time by its batch size first.",
    )
    expect(
        not _close(got, 1 / truth) or _close(got, truth), "Upside down: put the small batch's time per image on top."
    )
    expect(
        _close(got, truth, 1e-3),
        f"The profiles give {truth:.2f}x, you have {got:.3g}: "
        "(small step ms / small batch) / (default step ms / default batch).",
    )
    return (
        f"{truth:.1f}x the time per image at batch {small['batch_size']}: each step pays a fixed cost (launching every "
        "layer, the optimizer's pass over every weight) that a small batch shares among fewer images."
    )


# --- 06 pruning -----------------------------------------------------------------------------------


@exercise(
    "06.magnitude_mask",
    task="Write `magnitude_mask(w, amount)`: a boolean tensor shaped like `w`, False for the `amount` share of "
    "entries smallest in magnitude (those are pruned), True for the rest.",
    names=("magnitude_mask",),
    solution="""
import torch

def magnitude_mask(w, amount):
    k = round(amount * w.numel())
    if k == 0:
        return torch.ones_like(w, dtype=torch.bool)
    threshold = w.abs().flatten().kthvalue(k).values
    return w.abs() > threshold
""",
    wrong=(
        """
def magnitude_mask(w, amount):
    return w > w.flatten().quantile(amount)
""",
        """
import torch

def magnitude_mask(w, amount):
    return torch.rand_like(w) > amount
""",
    ),
    hint="sort by w.abs(); tensor.kthvalue(k) finds the k-th smallest.",
)
def _magnitude_mask(a: Answers) -> str:
    from ...pipeline import load_model

    trained = load_model(a.baseline)
    w = max((m.weight.detach() for m in trained.modules() if isinstance(m, torch.nn.Conv2d)), key=lambda t: t.numel())
    for amount in (0.5, 0.3):
        mask = a.magnitude_mask(w, amount)
        expect(
            isinstance(mask, torch.Tensor) and mask.dtype == torch.bool and mask.shape == w.shape,
            f"The mask should be a bool tensor shaped {tuple(w.shape)}; "
            f"got {getattr(mask, 'dtype', type(mask).__name__)} "
            f"{tuple(getattr(mask, 'shape', ()))}. A comparison such as w.abs() > t gives one.",
        )
        pruned = 1 - mask.float().mean().item()
        expect(
            abs(pruned - amount) <= 1 / w.numel() + 0.005,
            f"At amount={amount} your mask prunes {pruned:.1%} of the weights; it should prune {amount:.0%}.",
        )
        kept, dropped = w[mask].abs(), w[~mask].abs()
        if dropped.numel() and kept.numel() and dropped.max() > kept.min():
            negative = w[~mask].min().item()
            expect(
                -negative < kept.min(),
                f"Your mask pruned a weight of {negative:.3f}, larger in magnitude than some it kept: "
                "rank by |w|, so big negative weights stay.",
            )
            raise NotYet(
                f"It pruned a weight of magnitude {dropped.max():.4f} but kept one of {kept.min():.4f}: "
                "prune the smallest |w| first."
            )
    return (
        f"On the trained model's largest convolution ({w.numel():,} weights) your mask zeroes exactly the smallest "
        "magnitudes. The tensor keeps its shape, so the zeros still cost time unless a sparse kernel skips them."
    )


# --- 07 quantization ------------------------------------------------------------------------------


@exercise(
    "07.int8",
    task="Write `quantize_int8(w)` returning `(q, scale)`: symmetric per-tensor int8, `q` a torch.int8 tensor in "
    "[-127, 127] with q * scale as close to w as int8 allows.",
    names=("quantize_int8",),
    solution="""
import torch

def quantize_int8(w):
    scale = w.abs().max() / 127
    q = torch.clamp(torch.round(w / scale), -127, 127).to(torch.int8)
    return q, scale
""",
    wrong=(
        """
import torch

def quantize_int8(w):
    scale = w.max() / 127
    q = torch.clamp(torch.round(w / scale), -127, 127).to(torch.int8)
    return q, scale
""",
        """
import torch

def quantize_int8(w):
    scale = w.abs().max() / 127
    return (w / scale).to(torch.int8), scale
""",
    ),
    hint="the scale must cover the largest magnitude; round to the nearest step.",
)
def _int8(a: Answers) -> str:
    from ...pipeline import load_model

    model = load_model(a.by_name["fp32"])
    weight = next(m.weight.detach() for m in model.modules() if isinstance(m, torch.nn.Linear))
    lopsided = torch.linspace(-3, 1, 1001)  # its largest magnitude is negative
    for w in (weight, lopsided):
        out = a.quantize_int8(w)
        expect(isinstance(out, tuple) and len(out) == 2, "Return two things: (q, scale).")
        q, scale = out
        expect(
            isinstance(q, torch.Tensor) and q.dtype == torch.int8,
            f"q should be a torch.int8 tensor (got {getattr(q, 'dtype', type(q).__name__)}): .to(torch.int8).",
        )
        scale = float(scale)
        step = w.abs().max().item() / 127
        back = (q.float() * scale).flatten()
        worst = (back - w.flatten()).abs().argmax()
        error = (back[worst] - w.flatten()[worst]).abs().item()
        expect(
            error <= step,
            f"A weight of {w.flatten()[worst].item():.3f} comes back as {back[worst].item():.3f}: it was clipped. "
            "The scale must cover the largest magnitude, w.abs().max() / 127, negatives included.",
        )
        expect(
            error <= step / 2 * 1.01,
            f"The largest error is {error:.3g}, more than half a step ({step / 2:.3g}): round to the nearest "
            "step (torch.round) before casting, since .to(torch.int8) cuts towards zero.",
        )
    return (
        "The largest error on the model's first Linear weight is within half a step "
        f"(scale {step:.2g} on the test tensor), "
        f"and {weight.numel():,} weights take {weight.numel():,} bytes instead of {4 * weight.numel():,}."
    )


# --- 08 distillation ------------------------------------------------------------------------------


@exercise(
    "08.soft_loss",
    task="Write `soft_loss(student_logits, teacher_logits, T)`: distillation's soft term, T² times the KL divergence "
    "from softmax(teacher/T) to softmax(student/T), averaged over the batch.",
    names=("soft_loss",),
    solution="""
import torch.nn.functional as F

def soft_loss(student_logits, teacher_logits, T):
    return T**2 * F.kl_div(
        F.log_softmax(student_logits / T, dim=1), F.softmax(teacher_logits / T, dim=1), reduction="batchmean"
    )
""",
    wrong=(
        """
import torch.nn.functional as F

def soft_loss(student_logits, teacher_logits, T):
    return F.kl_div(
        F.log_softmax(student_logits / T, dim=1), F.softmax(teacher_logits / T, dim=1), reduction="batchmean"
    )
""",
        """
import torch.nn.functional as F

def soft_loss(student_logits, teacher_logits, T):
    return T**2 * F.kl_div(
        F.log_softmax(student_logits / T, dim=1), F.softmax(teacher_logits / T, dim=1), reduction="mean"
    )
""",
    ),
    hint="F.kl_div takes the student's log-probabilities first and the teacher's probabilities second.",
)
def _soft_loss(a: Answers) -> str:
    from ...train.distill import distillation_loss

    g = torch.Generator().manual_seed(0)
    student, teacher = torch.randn(16, 10, generator=g) * 3, torch.randn(16, 10, generator=g) * 3
    for T in (1.0, 2.0, 4.0):
        # The package's loss with alpha=1 is the soft term alone; an identity "teacher" passes the teacher's
        # logits through.
        want = distillation_loss(torch.nn.Identity(), alpha=1.0, temperature=T)(
            student, teacher, torch.zeros(16, dtype=torch.long)
        ).item()
        got = float(a.soft_loss(student, teacher, T))
        if _close(got, want, 1e-4):
            continue
        expect(
            not _close(got * T**2, want, 1e-4),
            f"At T={T:g} yours is {got:.4g}, the package's {want:.4g}: 1/T² of it. Multiply by T², "
            "which keeps the soft term's gradients the same size whatever the temperature.",
        )
        expect(
            not _close(got * student.shape[1], want, 1e-4),
            f"Yours is 1/{student.shape[1]} of the package's {want:.4g}: reduction='mean' "
            "averages over the classes too; use reduction='batchmean'.",
        )
        raise NotYet(
            f"At T={T:g} yours gives {got:.4g} where the package's distillation loss gives {want:.4g}: the student's "
            "log_softmax(s / T) first, the teacher's softmax(t / T) second, reduction='batchmean', times T²."
        )
    return "It matches the package's distillation loss at T = 1, 2 and 4, on logits where the two disagree."


# --- 09 model search ------------------------------------------------------------------------------


@exercise(
    "09.dominates",
    task="Write `dominates(a, b)` for two trials given as dicts of accuracy (higher is better), size_bytes and "
    "latency_ms (lower is better): True when a is no worse on all three and better on at least one.",
    names=("dominates",),
    solution="""
def dominates(a, b):
    no_worse = (
        a["accuracy"] >= b["accuracy"] and a["size_bytes"] <= b["size_bytes"] and a["latency_ms"] <= b["latency_ms"]
    )
    better = a["accuracy"] > b["accuracy"] or a["size_bytes"] < b["size_bytes"] or a["latency_ms"] < b["latency_ms"]
    return no_worse and better
""",
    wrong=(
        """
def dominates(a, b):
    return all(a[k] >= b[k] for k in ("accuracy", "size_bytes", "latency_ms"))
""",
        """
def dominates(a, b):
    return a["accuracy"] >= b["accuracy"] and a["size_bytes"] <= b["size_bytes"] and a["latency_ms"] <= b["latency_ms"]
""",
    ),
    hint="write 'no worse on every objective' and 'better on one' as two conditions.",
)
def _dominates(a: Answers) -> str:
    from ...search.pareto import pareto_front

    p = {"accuracy": 0.9, "size_bytes": 1000, "latency_ms": 1.0}
    smaller = {**p, "size_bytes": 500}
    expect(
        bool(a.dominates(smaller, p)),
        "A trial as accurate and fast but half the size should dominate: size and latency are better lower.",
    )
    expect(
        not a.dominates(p, smaller),
        "A bigger model with the same accuracy and latency does not dominate the smaller one: lower size is better.",
    )
    expect(
        not a.dominates(p, dict(p)),
        "Two trials equal on every objective do not dominate each other: a must be better on at least one.",
    )
    expect(
        not a.dominates({**p, "accuracy": 0.95, "latency_ms": 2.0}, p),
        "A trade (more accurate but slower) is not domination: a must be no worse on every objective.",
    )
    objectives = ["accuracy", "size_bytes", "latency_ms"]
    trials = a.found.trials
    done = trials[trials["trial_state"] == "COMPLETE"].dropna(subset=objectives)
    rows = [{k: float(r[k]) for k in objectives} for _, r in done.iterrows()]
    yours = {i for i, r in zip(done.index, rows) if not any(a.dominates(o, r) for o in rows)}
    package = set(pareto_front(done, objectives).index)
    expect(
        yours == package,
        f"On this search's {len(rows)} trials your rule keeps {len(yours)} on the front "
        f"where the package keeps {len(package)}.",
    )
    return f"Your rule finds the same {len(package)}-trial front as the package on this search's {len(rows)} trials."


# --- 10 distributed -------------------------------------------------------------------------------


@exercise(
    "10.bubble",
    task="Write `bubble(m, s)`: the share of a GPipe step each of `s` pipeline stages spends idle, "
    "with `m` micro-batches per step.",
    names=("bubble",),
    solution="def bubble(m, s):\n    return (s - 1) / (m + s - 1)",
    wrong=("def bubble(m, s):\n    return 1 / m", "def bubble(m, s):\n    return (s - 1) / m"),
    hint="draw the timeline: how many time slots does a step last, and in how many does one stage work?",
)
def _bubble(a: Answers) -> str:
    measured = {int(m): float(t) for m, t in zip(a.pipe.microbatches, a.pipe.bubble_theory)}
    cases = [(m, 2, t) for m, t in measured.items()] + [
        (m, s, (s - 1) / (m + s - 1)) for m in (1, 3, 8) for s in (3, 4)
    ]
    for m, s, want in cases:
        got = float(a.bubble(m, s))
        if _close(got, want, 1e-6):
            continue
        expect(
            not (m == 1 and got >= 0.999),
            f"At m=1 yours says the stages are always idle, but each of the {s} stages works one "
            f"slot of the {s}: the step lasts m+s-1 slots and a stage works m of them.",
        )
        raise NotYet(
            f"With m={m} micro-batches and s={s} stages a step lasts {m + s - 1} slots "
            f"and each stage works {m} of them, "
            f"so it idles {want:.3f} of the step; yours gives {got:.3g}."
        )
    return (
        f"It matches the demo's GPipe theory at m = {', '.join(map(str, measured))} (2 stages) and the other cases: "
        "more micro-batches shrink the bubble, and the measured one sits above it by the hand-off cost."
    )


# --- 11 deployment --------------------------------------------------------------------------------


@exercise(
    "11.p95",
    task="Write `p95(latencies_ms)`: the 95th percentile of a list of latencies, "
    "the time 19 requests in 20 finish within.",
    names=("p95",),
    solution="import numpy as np\n\ndef p95(latencies_ms):\n    return float(np.percentile(latencies_ms, 95))",
    wrong=(
        "def p95(latencies_ms):\n    return 0.95 * sum(latencies_ms) / len(latencies_ms)",
        "def p95(latencies_ms):\n    return max(latencies_ms)",
    ),
    hint="sort them and read the value 95% of the way along (numpy.percentile does it).",
)
def _p95(a: Answers) -> str:
    from ...measure import time_calls

    tail = [1.0] * 180 + [10.0 * i for i in range(1, 21)]  # 180 fast requests, then 20 ever slower ones
    timed = time_calls(torch.nn.Linear(64, 64), torch.randn(1, 64), iters=200)
    for sample in (tail, timed):
        ordered = sorted(sample)
        at = 0.95 * (len(ordered) - 1)
        low, high = ordered[math.floor(at)], ordered[math.ceil(at)]
        got = float(a.p95(list(sample)))
        expect(
            not _close(got, max(sample)) or _close(high, max(sample)),
            "That is the slowest request (p100): one outlier decides it.",
        )
        expect(
            low - 1e-9 <= got <= high + 1e-9,
            f"On {len(sample)} latencies whose 95th percentile lies between {low:.3g} and {high:.3g} ms "
            f"yours gives {got:.3g}: sort them and read the value 95% of the way along, not an average.",
        )
    return (
        f"p95 = {float(np.percentile(timed, 95)):.3f} ms on 200 timed calls of a small layer (median "
        f"{float(np.median(timed)):.3f} ms): "
        "the tail, not the middle, decides whether a service meets its latency target."
    )


# --- 12 speedrun ----------------------------------------------------------------------------------


@exercise(
    "12.label_smoothing",
    task="Write `smoothed_ce(logits, target, eps)`: cross-entropy against smoothed labels, where every one of the K "
    "classes gets eps/K and the true class 1 - eps on top, averaged over the batch.",
    names=("smoothed_ce",),
    solution="""
import torch
import torch.nn.functional as F

def smoothed_ce(logits, target, eps):
    k = logits.shape[1]
    soft = torch.full_like(logits, eps / k).scatter(1, target[:, None], 1 - eps + eps / k)
    return -(soft * F.log_softmax(logits, dim=1)).sum(1).mean()
""",
    wrong=(
        """
import torch
import torch.nn.functional as F

def smoothed_ce(logits, target, eps):
    k = logits.shape[1]
    soft = torch.full_like(logits, eps / (k - 1)).scatter(1, target[:, None], 1 - eps)
    return -(soft * F.log_softmax(logits, dim=1)).sum(1).mean()
""",
        """
import torch.nn.functional as F

def smoothed_ce(logits, target, eps):
    return F.cross_entropy(logits, target)
""",
    ),
    hint="build the soft targets with torch.full_like and .scatter, then -(targets * log_softmax).sum(1).mean().",
)
def _label_smoothing(a: Answers) -> str:
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(0)
    logits, target = torch.randn(32, 10, generator=g) * 2, torch.randint(0, 10, (32,), generator=g)
    for eps in (0.2, 0.0):
        want = F.cross_entropy(logits, target, label_smoothing=eps).item()
        got = float(a.smoothed_ce(logits, target, eps))
        if _close(got, want, 1e-4):
            continue
        expect(
            not _close(got, F.cross_entropy(logits, target).item(), 1e-4),
            f"At eps={eps} that is plain cross-entropy: the labels are not smoothed.",
        )
        raise NotYet(
            f"At eps={eps} yours gives {got:.4f}, PyTorch's label_smoothing={eps} gives {want:.4f}. "
            "PyTorch (and the preset) "
            "spreads eps over all K classes, the true one included: it gets 1 - eps + eps/K, every other class eps/K."
        )
    return (
        "It matches F.cross_entropy(label_smoothing=...) at eps 0.2 and 0: the preset's 0.2 stops the net from "
        "pushing its logits ever further apart for examples it already gets right."
    )


# --- 13 capstone ----------------------------------------------------------------------------------


@exercise(
    "13.speedup",
    task="From the ledger `table` (one row per step, the baseline first), compute `speedup`: how many times faster the "
    "final model answers one image on the CPU than the baseline did, from the column `cpu/eager/bs1_ms`.",
    names=("speedup",),
    solution='speedup = table["cpu/eager/bs1_ms"].iloc[0] / table["cpu/eager/bs1_ms"].iloc[-1]',
    wrong=(
        'speedup = table["cpu/eager/bs1_ms"].iloc[-1] / table["cpu/eager/bs1_ms"].iloc[0]',
        'speedup = table["cpu/eager/bs1_ms"].iloc[0] - table["cpu/eager/bs1_ms"].iloc[-1]',
    ),
    hint="a speed-up above 1 means faster: the old time over the new one.",
)
def _speedup(a: Answers) -> str:
    column = "cpu/eager/bs1_ms"
    expect(
        column in a.table,
        f"The ledger has no {column} column: keep 1 in batch_sizes so batch-1 latency on the CPU is measured.",
    )
    before, after = float(a.table[column].iloc[0]), float(a.table[column].iloc[-1])
    truth, got = before / after, float(a.speedup)
    expect(
        not _close(got, after / before) or _close(got, truth),
        "Upside down: the baseline's latency over the final one, so faster gives more than 1.",
    )
    expect(
        not _close(got, before - after) or _close(got, truth),
        "That is the milliseconds saved; a speed-up is a ratio, old time over new.",
    )
    expect(
        _close(got, truth, 1e-3),
        f"The ledger gives {before:.3f} ms before and {after:.3f} ms after, "
        f"a speed-up of {truth:.2f}x; you have {got:.3g}.",
    )
    return (
        f"{truth:.2f}x: {before:.3f} ms at the start, {after:.3f} ms at the end of the path. Check the spreads "
        "before quoting it: a ratio inside the timing noise is no speed-up."
    )


# --- 14 language model ----------------------------------------------------------------------------


@exercise(
    "14.causal_mask",
    task="Write `causal_mask(T)`: a `T x T` boolean tensor, True where position `i` (row) may attend to position `j` "
    "(column). A language model predicts each next token from the tokens before it, never from later ones.",
    names=("causal_mask",),
    solution="""
import torch

def causal_mask(T):
    return torch.ones(T, T, dtype=torch.bool).tril()
""",
    wrong=(
        """
import torch

def causal_mask(T):
    return torch.ones(T, T, dtype=torch.bool).triu()
""",
        """
import torch

def causal_mask(T):
    return torch.ones(T, T, dtype=torch.bool).tril(-1)
""",
    ),
    hint="torch.tril keeps the lower triangle: row i, columns 0..i.",
)
def _causal_mask(a: Answers) -> str:
    import torch.nn.functional as F

    for T in (1, 4, 9):
        mask = a.causal_mask(T)
        expect(
            isinstance(mask, torch.Tensor) and mask.dtype == torch.bool and tuple(mask.shape) == (T, T),
            f"causal_mask({T}) should be a bool tensor of shape ({T}, {T}); got "
            f"{getattr(mask, 'dtype', type(mask).__name__)} {tuple(getattr(mask, 'shape', ()))}.",
        )
        truth = torch.ones(T, T, dtype=torch.bool).tril()
        expect(
            not (T > 1 and mask[0, 1:].any()),
            "Row 0 may attend to later positions in your mask: that lets the model read the answer. "
            "Keep only j <= i (the lower triangle).",
        )
        expect(
            bool(mask.diagonal().all()),
            "Your mask hides each position from itself: row 0 then attends to nothing and its softmax is 0/0 "
            "(NaN). Keep the diagonal: j <= i, not j < i.",
        )
        expect(
            torch.equal(mask, truth),
            f"causal_mask({T}) differs from the lower triangle at {(mask != truth).sum()} "
            "places: True exactly where column <= row.",
        )
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, 9, 8, generator=g) for _ in range(3))
    scores = (q @ k.transpose(-2, -1) / 8**0.5).masked_fill(~a.causal_mask(9), float("-inf"))
    spelled_out = scores.softmax(-1) @ v
    fused = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    expect(torch.allclose(spelled_out, fused, atol=1e-5), "Your mask, used in a softmax, differs from is_causal=True.")
    return (
        "Right: the lower triangle. Used as the mask of a softmax over q·k / sqrt(d), it gives what "
        "F.scaled_dot_product_attention(is_causal=True) fuses into one kernel (checked on random q, k, v). During "
        "decoding with a KV cache the one new query may see every cached key, so no mask is needed there."
    )


@exercise(
    "14.kv_bytes",
    task="Write `kv_bytes(model, batch)`: the bytes of `model`'s KV cache holding a full context for `batch` "
    "sequences, from its shape (`model.shape`: n_layer, n_head, head_dim, block_size) and its weights' bytes per "
    "number (`model.transformer.wte.weight.element_size()`).",
    names=("kv_bytes",),
    solution="""
def kv_bytes(model, batch):
    s = model.shape
    per_number = model.transformer.wte.weight.element_size()
    return 2 * s.n_layer * s.n_head * s.head_dim * s.block_size * batch * per_number
""",
    wrong=(
        """
def kv_bytes(model, batch):
    s = model.shape
    return s.n_layer * s.n_head * s.head_dim * s.block_size * batch * 4
""",
        """
def kv_bytes(model, batch):
    s = model.shape
    return 2 * s.n_layer * s.n_head * s.n_embd * s.block_size * batch * 4
""",
    ),
    hint="a key and a value vector per layer, per head, per token of context, per sequence.",
)
def _kv_bytes(a: Answers) -> str:
    model = a.model
    for batch in (1, 8):
        truth, got = model.new_cache(batch=batch).nbytes, a.kv_bytes(model, batch)
        expect(
            got != truth // 2,
            f"You have {got:,} bytes, half of the {truth:,} the cache holds: it keeps a value vector beside each key.",
        )
        s = model.shape
        expect(
            got != truth * s.n_head,
            f"{got:,} is {s.n_head}x too much: head_dim = n_embd / n_head, so the heads together are n_embd wide.",
        )
        expect(got == truth, f"At batch {batch} the cache holds {truth:,} bytes; you have {got:,}.")
    full = model.new_cache(batch=1).nbytes
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    return (
        f"{full / 1024:,.0f} KiB at batch 1, {8 * full / 1024:,.0f} KiB at batch 8: it grows with context and batch, "
        f"not with the vocabulary. Against the weights' {weights / 1024:,.0f} KiB "
        "it is small here; for a large model serving long contexts to many users the cache outgrows the weights."
    )


# --- 15 compressing a language model -----------------------------------------------------------------


@exercise(
    "15.bits_per_weight",
    task="Write `bits_per_weight(bits, group_size)`: what one weight costs on disk when a Linear's weights are rounded "
    "to `bits` bits in groups of `group_size` inputs, each group also storing its scale and its minimum as 16-bit "
    "numbers (the x axis of the bits curve above).",
    names=("bits_per_weight",),
    solution="""
def bits_per_weight(bits, group_size):
    return bits + 2 * 16 / group_size
""",
    wrong=(
        """
def bits_per_weight(bits, group_size):
    return bits
""",
        """
def bits_per_weight(bits, group_size):
    return bits + 16 / group_size
""",
        """
def bits_per_weight(bits, group_size):
    return bits + 2 * 16 * group_size
""",
    ),
    hint="the group's two 16-bit numbers are shared by its group_size weights.",
)
def _bits_per_weight(a: Answers) -> str:
    from ...compress import bits_per_weight

    for bits, group in ((4, 32), (3, 128), (8, 64), (2, 32)):
        truth, got = bits_per_weight(bits, group), float(a.bits_per_weight(bits, group))
        expect(
            not _close(got, bits),
            f"{got:g} bits counts the codes only: each group of {group} weights also keeps a 16-bit scale and a "
            "16-bit minimum, and each weight carries its share of them.",
        )
        expect(
            not _close(got, bits + 16 / group),
            "You counted one 16-bit number per group; asymmetric rounding keeps two (the step and the minimum), "
            "since a group's values need not be centred on zero.",
        )
        expect(
            not _close(got, bits + 32 * group),
            f"{got:g} bits a weight is more than fp32's 32: the group's 32 bits are shared by its {group} weights, "
            "so divide by group_size rather than multiply.",
        )
        expect(_close(got, truth), f"{bits} bits in groups of {group} cost {truth:g} bits a weight; you have {got:g}.")
    small, large = bits_per_weight(4, 32), bits_per_weight(4, 128)
    return (
        f"Right: 4 bits in groups of 32 cost {small:g} bits a weight ({32 / small:.1f}x smaller than fp32), in groups "
        f"of 128 {large:g} ({32 / large:.1f}x). The "
        "larger group is cheaper, but one scale then spans more weights and follows them less closely: the curve "
        "shows what that costs at each bit width."
    )


@exercise(
    "15.tokens_per_pass",
    task="Write `tokens_per_pass(p, k)`: the expected tokens one check of the target produces in speculative "
    "decoding, when the draft proposes `k` tokens and each is accepted with probability `p`, independently. The "
    "check keeps the proposals up to the first rejection, then adds one token of the target's own.",
    names=("tokens_per_pass",),
    solution="""
def tokens_per_pass(p, k):
    return sum(p**i for i in range(k + 1))  # the i-th proposal counts if all i are accepted; p**0: the target's own
""",
    wrong=(
        """
def tokens_per_pass(p, k):
    return 1 + k * p
""",
        """
def tokens_per_pass(p, k):
    return sum(p**i for i in range(1, k + 1))
""",
        """
def tokens_per_pass(p, k):
    return (1 - p**k) / (1 - p)
""",
    ),
    hint="the i-th proposal is kept only if it and all before it are accepted: probability p**i.",
)
def _tokens_per_pass(a: Answers) -> str:
    for p, k in ((0.5, 4), (0.8, 2), (0.3, 1), (0.9, 6), (0.0, 3)):
        truth, got = sum(p**i for i in range(k + 1)), float(a.tokens_per_pass(p, k))
        expect(
            not _close(got, truth - 1) or _close(got, truth),
            f"At p={p}, k={k} you have {got:.3f}, one short: every check adds the target's own next token, even when "
            "it rejects the first proposal, so a pass is never worth less than 1.",
        )
        expect(
            not _close(got, 1 + k * p) or _close(got, truth),
            "1 + k*p counts each proposal as if those before it were kept; a rejection ends the run, so the i-th "
            "counts only if all i are accepted, with probability p**i.",
        )
        expect(
            not _close(got, truth - p**k) or _close(got, truth),
            f"At p={p}, k={k} you are one term short: k proposals and the target's own token make up to k + 1 "
            "tokens, p**0 + p**1 + ... + p**k.",
        )
        expect(_close(got, truth), f"At p={p}, k={k} a check yields {truth:.4f} tokens on average; you have {got:.4f}.")
    measured = a.spec[a.spec.lookahead > 0].sort_values("lookahead").iloc[-1]
    k, p, made = int(measured.lookahead), float(measured.acceptance), float(measured.tokens_per_target_pass)
    return (
        f"Right: (1 - p^(k+1)) / (1 - p), Leviathan et al.'s formula. At k={k} the acceptance measured above "
        f"({p:.0%}) gives {a.tokens_per_pass(p, k):.2f} tokens a pass; the run made {made:.2f}. "
        "They differ where acceptances are not independent (easy stretches of text are accepted in runs), and a pass "
        "of draft and target costs more than one of the target alone, so the speed-up is below this."
    )


# --- 16 memory of a language model -----------------------------------------------------------------


@exercise(
    "16.int8_kv_bytes",
    task="Write `int8_kv_bytes(model, context, batch)`: the bytes of an int8 KV cache of `model`'s shape "
    "(`model.shape`: n_layer, n_head, head_dim) holding `context` tokens for `batch` sequences. Each key and each "
    "value vector (one per layer, head, token and sequence) is kept as `head_dim` int8 numbers and one float32 scale.",
    names=("int8_kv_bytes",),
    solution="""
def int8_kv_bytes(model, context, batch):
    s = model.shape
    vectors = 2 * s.n_layer * s.n_head * context * batch  # a key and a value per layer, head, token and sequence
    return vectors * (s.head_dim + 4)  # head_dim int8 numbers (1 byte each) and a 4-byte scale
""",
    wrong=(
        """
def int8_kv_bytes(model, context, batch):
    s = model.shape
    return 2 * s.n_layer * s.n_head * s.head_dim * context * batch
""",
        """
def int8_kv_bytes(model, context, batch):
    s = model.shape
    return s.n_layer * s.n_head * context * batch * (s.head_dim + 4)
""",
        """
def int8_kv_bytes(model, context, batch):
    s = model.shape
    return 2 * s.n_layer * s.n_head * context * batch * s.head_dim * (1 + 4)
""",
    ),
    hint="count the vectors first (a key and a value per layer, head, token and sequence), then the bytes of one.",
)
def _int8_kv_bytes(a: Answers) -> str:
    from ...models import kv_cache_bytes

    s = a.model.shape
    for context, batch in ((s.block_size, 1), (3 * s.block_size, 8)):
        truth, got = (
            kv_cache_bytes(s.n_layer, s.n_head, s.head_dim, context, batch, int8=True),
            a.int8_kv_bytes(a.model, context, batch),
        )
        fp32 = kv_cache_bytes(s.n_layer, s.n_head, s.head_dim, context, batch)
        expect(
            got != fp32 // 4,
            f"{got:,} is exactly a quarter of the float32 cache: the int8 numbers alone. Each vector also keeps its "
            "4-byte scale, without which its numbers cannot be turned back into keys and values.",
        )
        expect(
            got != truth // 2,
            f"{got:,} is half of the {truth:,} bytes: the cache keeps a value vector beside each key.",
        )
        expect(
            got != 2 * s.n_layer * s.n_head * context * batch * s.head_dim * 5,
            "That is a scale per number, more than float32 itself takes: one scale serves a whole vector of "
            f"{s.head_dim} numbers.",
        )
        expect(
            got == truth,
            f"At context {context} and batch {batch} the int8 cache takes {truth:,} bytes; you have {got:,}.",
        )
    full = a.model.new_cache(batch=1, int8=True).nbytes
    expect(a.int8_kv_bytes(a.model, s.block_size, 1) == full, "Your count differs from the cache the model allocates.")
    ratio = (s.head_dim + 4) / (4 * s.head_dim)
    return (
        f"Right: {full:,} bytes at the full context and batch 1, as the model's QuantizedKVCache allocates: "
        f"({s.head_dim} + 4) / (4 x {s.head_dim}) = {ratio:.3f} of float32's. The scale's share shrinks as head_dim "
        "grows: at GPT-2's 64 the cache takes 0.266x."
    )


@exercise(
    "16.adamw_state",
    task="Write `adamw_state_bytes(model)`: the bytes AdamW keeps beside `model`'s weights, two float32 moments "
    "(running means of each gradient and of its square) for every number that trains. The check also passes a copy "
    "of `model` with LoRA adapters, whose other weights are frozen (`requires_grad` is False).",
    names=("adamw_state_bytes",),
    solution="""
def adamw_state_bytes(model):
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return 2 * trained * 4  # two moments, 4 bytes each
""",
    wrong=(
        """
def adamw_state_bytes(model):
    return 2 * sum(p.numel() for p in model.parameters()) * 4
""",
        """
def adamw_state_bytes(model):
    return sum(p.numel() for p in model.parameters() if p.requires_grad) * 4
""",
    ),
    hint="model.parameters() lists the frozen weights too: keep those with p.requires_grad.",
)
def _adamw_state(a: Answers) -> str:
    import copy

    import torch.nn.functional as F

    from ...models import add_lora
    from ...train import optimizer_state_bytes

    plain, adapted = copy.deepcopy(a.model), copy.deepcopy(a.model)  # the notebook's model stays as it is
    add_lora(adapted, 4, targets=("c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"))  # in place
    said = {}
    for name, net in (("the model", plain), ("the LoRA copy", adapted)):
        trained = [p for p in net.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(trained)
        ids = torch.randint(net.shape.vocab_size, (2, net.shape.block_size + 1), device=trained[0].device)
        F.cross_entropy(net(ids[:, :-1]).flatten(0, 1), ids[:, 1:].flatten()).backward()
        optimizer.step()
        exact, got = optimizer_state_bytes(optimizer), a.adamw_state_bytes(net)
        numbers = sum(p.numel() for p in trained)
        expect(
            got != 8 * sum(p.numel() for p in net.parameters()) or numbers == sum(p.numel() for p in net.parameters()),
            f"For {name} you counted its frozen weights too: AdamW keeps state only for what trains (requires_grad), "
            f"here {numbers:,} numbers.",
        )
        expect(
            got != 4 * numbers,
            "Half of it: AdamW keeps two moments per trained number, the running means of the gradient and of its "
            "square.",
        )
        # torch also keeps a 4-byte step count per trained tensor: with or without it is right
        expect(abs(got - exact) <= 4 * len(trained), f"AdamW keeps {exact:,} bytes for {name}; you have {got:,}.")
        said[name] = (exact, numbers, len(trained))
    (full, _, tensors), (lora, numbers, _) = said["the model"], said["the LoRA copy"]
    return (
        f"Right: {full:,} bytes to train every weight, {lora:,} for LoRA's {numbers:,} adapter numbers "
        f"({lora / full:.1%}). torch also keeps a 4-byte step count per trained tensor ({tensors} tensors in the "
        "whole model), which wb.training_memory counts."
    )
