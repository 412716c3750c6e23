"""Charts of speed: latency and throughput per batch size, runtimes, serving under load, profiles."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from .. import run_labels
from ._style import (
    NOISY_NOTE,
    _figure,
    _log_axis,
    _one_or_mixed,
    _themed,
    metric_label,
)


def _benchmark_frame(df: pd.DataFrame) -> pd.DataFrame:
    records = [
        dict(rec, run=label)
        for label, recs in zip(run_labels(df), df["benchmarks"])
        for rec in (recs or [])
        if rec.get("kind") != "generation"  # a language model's decoding: decode_chart shows it
    ]
    return pd.DataFrame(records)


@_themed
def latency_chart(df: pd.DataFrame, metric: str = "latency_ms", ax=None) -> Figure:
    """Per run, bars of median latency (or ``metric="throughput_ips"``) at each measured batch size and
    execution mode, from the ``benchmarks`` records; latency bars carry the interquartile range.

    Example:
        >>> rec = {"batch_size": 1, "mode": "eager", "latency_ms": 2.0, "latency_ms_q25": 1.9, "latency_ms_q75": 2.2,
        ...        "throughput_ips": 500.0, "device_name": "Xeon", "dtype": "float32"}
        >>> df = pd.DataFrame({"name": ["a"], "run_id": ["1"], "benchmarks": [[rec]]})
        >>> latency_chart(df).axes[0].get_title()
        'Inference latency per batch on Xeon, float32'
    """
    fig, ax = _figure(ax)
    bench = _benchmark_frame(df)
    if bench.empty:
        ax.text(0.5, 0.5, "no latency measured", ha="center", transform=ax.transAxes)
        return fig
    bench["series"] = bench["mode"] + " bs" + bench["batch_size"].astype(str)
    series = list(dict.fromkeys(bench["series"]))
    runs = list(dict.fromkeys(bench["run"]))
    width = 0.8 / len(series)
    for i, s in enumerate(series):
        part = bench[bench["series"] == s].groupby("run").first().reindex(runs)
        err = None
        if metric == "latency_ms":
            err = np.vstack([part["latency_ms"] - part["latency_ms_q25"], part["latency_ms_q75"] - part["latency_ms"]])
        bars = ax.bar(np.arange(len(runs)) + i * width, part[metric], width, yerr=err, capsize=2, label=s)
        noisy = part["noisy"].fillna(False).astype(bool) if "noisy" in part else pd.Series(False, index=part.index)
        for bar, is_noisy in zip(bars, noisy):
            if is_noisy:
                bar.set_hatch("///")
                bar.set_alpha(0.5)
    ax.set_xticks(np.arange(len(runs)) + width * (len(series) - 1) / 2, runs, rotation=30, ha="right")
    values = bench[metric][bench[metric] > 0]
    if (
        len(values) and values.max() / values.min() > 20
    ):  # batch 1 and batch 256 bars on one linear axis: one would vanish
        _log_axis(ax.yaxis)
    ax.set_ylabel(metric_label(metric) + (", IQR bars" if metric == "latency_ms" else ""))
    what = "Inference latency per batch" if metric == "latency_ms" else "Inference throughput"
    dtypes = "/".join(sorted(bench["dtype"].astype(str).unique())) if "dtype" in bench else ""
    ax.set_title(
        f"{what} on {_one_or_mixed(bench['device_name'], 'device')}"
        + (f", {dtypes}" if dtypes else "")
        + (" (log scale)" if ax.get_yscale() == "log" else "")
    )
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    if "noisy" in bench and bench["noisy"].fillna(False).astype(bool).any():
        ax.set_xlabel(NOISY_NOTE, fontsize=8, color="tab:red")
    return fig


@_themed
def batch_latency_chart(records: pd.DataFrame | Sequence[dict], by: Sequence[str] | None = None) -> Figure:
    """Latency (left, with IQR band) and throughput (right) against batch size, from ``benchmark``
    records; one line per combination of the ``by`` columns (default: whichever of name, model,
    mode and dtype are present).

    Example:
        >>> recs = [{"batch_size": b, "latency_ms": b / 10, "latency_ms_q25": b / 11, "latency_ms_q75": b / 9,
        ...          "throughput_ips": 1e4, "device_name": "Xeon", "dtype": "float32", "mode": "eager"}
        ...         for b in (1, 8, 64)]
        >>> fig = batch_latency_chart(recs)
        >>> [a.get_xlabel() for a in fig.axes]
        ['batch size (log)', 'batch size (log)']
    """
    bench = pd.DataFrame(records)
    if "latency_ms" in bench:  # combinations that could not run carry a reason, not a number
        bench = bench[bench["latency_ms"].notna()]
    fig, (lat, thr) = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
    plt.close(fig)
    by = [c for c in (by or ("name", "model", "mode", "dtype")) if c in bench]
    groups = bench.groupby(by, sort=False) if by else [((), bench)]
    for key, part in groups:
        part = part.sort_values("batch_size")
        label = " ".join(map(str, key if isinstance(key, tuple) else (key,))) or None
        (line,) = lat.plot(part["batch_size"], part["latency_ms"], marker="o", ms=3, label=label)
        if {"latency_ms_q25", "latency_ms_q75"} <= set(part):
            lat.fill_between(
                part["batch_size"], part["latency_ms_q25"], part["latency_ms_q75"], color=line.get_color(), alpha=0.2
            )
        thr.plot(part["batch_size"], part["throughput_ips"], marker="o", ms=3, label=label)
    for ax in (lat, thr):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("batch size (log)")
        ax.grid(alpha=0.3)
    lat.set_yscale("log")
    lat.set_ylabel(metric_label("latency_ms") + ", log; band = IQR")
    thr.set_ylabel(metric_label("throughput_ips"))
    if by:
        lat.legend(fontsize=8)
    device = _one_or_mixed(bench.get("device_name", []), "device")
    dtypes = "/".join(sorted(bench["dtype"].astype(str).unique())) if "dtype" in bench else ""
    fig.suptitle(f"Latency and throughput vs batch size on {device}" + (f", {dtypes}" if dtypes else ""))
    return fig


@_themed
def runtime_chart(df: pd.DataFrame) -> Figure:
    """Latency per runtime (bars, IQR whiskers, log axis), one panel per batch size, from
    ``deploy.runtime_comparison``; one bar colour per model when several were compared. Runtimes that
    were skipped are listed under the chart with their reason; each panel names its device(s).

    Example:
        >>> rows = [{"model": "cnn", "runtime": r, "device": "cpu", "device_name": "EPYC", "batch_size": b,
        ...          "latency_ms": ms * b, "latency_ms_q25": ms * b * 0.9, "latency_ms_q75": ms * b * 1.1,
        ...          "skipped": None}
        ...         for r, ms in (("PyTorch eager", 0.4), ("ONNX Runtime CPU (1 thread)", 0.1)) for b in (1, 64)]
        >>> rows.append({"model": "cnn", "runtime": "TensorRT", "device": "cuda", "batch_size": 1, "latency_ms": None,
        ...              "skipped": "no CUDA GPU on this machine"})
        >>> fig = runtime_chart(pd.DataFrame(rows))
        >>> [a.get_title() for a in fig.axes], fig.axes[0].get_ylabel()
        (['batch 1 on EPYC', 'batch 64 on EPYC'], 'latency per batch (ms), log; whiskers = IQR')
    """
    ran = df[pd.to_numeric(df["latency_ms"], errors="coerce").notna()]
    skipped = df[pd.to_numeric(df["latency_ms"], errors="coerce").isna()]
    sizes = sorted(ran["batch_size"].unique())
    fig, axes = plt.subplots(
        1, max(1, len(sizes)), figsize=(5.5 * max(1, len(sizes)), 4.6), layout="constrained", squeeze=False
    )
    plt.close(fig)
    models = list(dict.fromkeys(ran["model"])) if "model" in ran else [""]
    for ax, bs in zip(axes[0], sizes):
        part = ran[ran["batch_size"] == bs]
        runtimes = list(dict.fromkeys(part["runtime"] + " · " + part["device"]))
        width = 0.8 / len(models)
        for k, model in enumerate(models):
            rows = part[part["model"] == model] if "model" in part else part
            at = {f"{r.runtime} · {r.device}": r for r in rows.itertuples()}
            xs = [i + (k - (len(models) - 1) / 2) * width for i, key in enumerate(runtimes) if key in at]
            cells = [at[key] for key in runtimes if key in at]
            ms = np.array([c.latency_ms for c in cells])
            q25 = np.array([getattr(c, "latency_ms_q25", c.latency_ms) for c in cells])
            q75 = np.array([getattr(c, "latency_ms_q75", c.latency_ms) for c in cells])
            ax.bar(xs, ms, width=width, label=model, yerr=[ms - q25, q75 - ms], capsize=3)
        ax.set_xticks(
            range(len(runtimes)), [r.replace(" · ", "\n") for r in runtimes], rotation=30, ha="right", fontsize=8
        )
        _log_axis(ax.yaxis)
        ax.set_ylabel("latency per batch (ms), log; whiskers = IQR")
        ax.set_title(f"batch {bs} on {_one_or_mixed(part.get('device_name', []), 'device')}")
        ax.grid(alpha=0.3, axis="y")
    if len(models) > 1:
        axes[0][0].legend(fontsize=8)
    if len(skipped):
        notes = sorted({f"{r.runtime} ({r.device}): {r.skipped}" for r in skipped.itertuples()})
        fig.text(0.01, -0.02, "not run: " + "; ".join(notes), fontsize=7, va="top", wrap=True)
    fig.suptitle("The same model in each runtime, on the same test images")
    return fig


@_themed
def serving_chart(reports: Sequence[dict]) -> Figure:
    """Served latency percentiles (p50/p95/p99) and throughput per concurrency level, from ``load_test`` reports;
    for a language model (``load_test_generate`` reports), time to first token and between tokens, and tokens/s,
    a line per batching policy.

    Example:
        >>> reps = [{"concurrency": c, "p50_ms": 2.0 * c, "p95_ms": 3.0 * c, "p99_ms": 4.0 * c,
        ...          "throughput_rps": 400 / c ** 0.5, "batch_size": 1} for c in (1, 4)]
        >>> fig = serving_chart(reps)
        >>> [a.get_xlabel() for a in fig.axes]
        ['requests in flight (concurrency)', 'requests in flight (concurrency)']
    """
    df = pd.DataFrame(list(reports)).sort_values("concurrency")
    if "ttft_p50_ms" in df:
        return _generation_serving_chart(df)
    fig, (lat, thr) = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
    plt.close(fig)
    for q in ("p50", "p95", "p99"):
        lat.plot(df["concurrency"], df[f"{q}_ms"], marker="o", label=q)
    thr.plot(df["concurrency"], df["throughput_rps"], marker="o")
    lat.set_ylabel("request latency (ms)")
    thr.set_ylabel("throughput (requests/s)")
    _concurrency_axes(lat, thr)
    lat.legend(fontsize=8)
    batch = "/".join(str(b) for b in sorted(df["batch_size"].unique())) if "batch_size" in df else "?"
    where = df["server"].iloc[0] if "server" in df else "this machine"
    fig.suptitle(f"Served over HTTP on {where} (client on the same machine), batch {batch} per request")
    return fig


def _concurrency_axes(*axes) -> None:
    for ax in axes:
        ax.set_xlabel("requests in flight (concurrency)")
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)


def _generation_serving_chart(df: pd.DataFrame) -> Figure:
    """Time to first token (p50, p99) and tokens/s against concurrency, a colour per batching policy.

    Example:
        >>> reps = [{"concurrency": c, "batching": b, "ttft_p50_ms": 5.0 * c, "ttft_p99_ms": 9.0 * c,
        ...          "tbt_p50_ms": 2.0, "tokens_per_s": 100.0 * c} for c in (1, 8) for b in ("off", "continuous")]
        >>> [a.get_ylabel() for a in serving_chart(reps).axes]
        ['time to first token (ms)', 'tokens/s, all requests together']
    """
    fig, (lat, thr) = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
    plt.close(fig)
    groups = df.groupby("batching", sort=False) if "batching" in df else [("served", df)]
    for i, (name, part) in enumerate(groups):
        colour = f"C{i}"
        lat.plot(part["concurrency"], part["ttft_p50_ms"], marker="o", color=colour, label=f"{name}: p50")
        lat.plot(part["concurrency"], part["ttft_p99_ms"], marker="^", ls="--", color=colour, label=f"{name}: p99")
        thr.plot(part["concurrency"], part["tokens_per_s"], marker="o", color=colour, label=f"{name} batching")
    lat.set_ylabel("time to first token (ms)")
    thr.set_ylabel("tokens/s, all requests together")
    _concurrency_axes(lat, thr)
    lat.legend(fontsize=8)
    thr.legend(fontsize=8)
    where = df["server"].iloc[0] if "server" in df else "this machine"
    fig.suptitle(f"A language model served over HTTP on {where} (client on the same machine), streamed tokens")
    return fig


def profile_chart(df: pd.DataFrame, ax=None) -> Figure:
    """``workbench.profile``'s phases as bars of their share of a training step, with milliseconds on the
    bars; the title names the device and the step time, the sentence under it the bottleneck.

    Example:
        >>> df = pd.DataFrame({"phase": ["data", "forward"], "ms_per_step": [1.0, 3.0], "share": [0.25, 0.75]})
        >>> df.attrs.update(device_name="Xeon", step_ms=4.0, batch_size=64, bottleneck="compute: 75% ...")
        >>> profile_chart(df).axes[0].get_xlabel()
        'share of the training step (%)'
    """
    fig, ax = _figure(ax)
    bars = ax.barh(df["phase"], 100 * df["share"], color="tab:blue")
    ax.bar_label(bars, [f"{ms:.2f} ms" for ms in df["ms_per_step"]], fontsize=8, padding=2)
    ax.invert_yaxis()  # in the order a step runs
    ax.set_xlim(0, 100 * max(df["share"].max() * 1.25, 0.1))
    ax.set_xlabel("share of the training step (%)")
    a = df.attrs
    ax.set_title(
        f"Where a training step goes — {a.get('device_name', 'device?')}, batch {a.get('batch_size', '?')}, "
        f"{a.get('step_ms', float('nan')):.1f} ms a step\n{a.get('bottleneck', '')}",
        fontsize=9,
        wrap=True,
    )
    return fig


def inference_sweep_chart(df: pd.DataFrame) -> Figure:
    """``inference_sweep``'s rows as latency (with its IQR band) and throughput against batch size, one
    line per precision and mode; the device in the title, skipped combinations left out (and named).

    Example:
        >>> recs = [{"precision": "fp32", "mode": m, "batch_size": b, "latency_ms": b / 10, "latency_ms_q25": b / 11,
        ...          "latency_ms_q75": b / 9, "throughput_ips": 1e4, "device_name": "Xeon", "dtype": "float32"}
        ...         for m in ("eager", "compiled") for b in (1, 8)]
        >>> [line.get_label() for line in inference_sweep_chart(pd.DataFrame(recs)).axes[0].lines]
        ['fp32 eager', 'fp32 compiled']
    """
    fig = batch_latency_chart(
        df.drop(columns=["dtype"], errors="ignore"), by=[c for c in ("run", "precision", "mode") if c in df]
    )
    if "skipped" in df and df["skipped"].notna().any():
        missing = sorted({f"{p} {m}" for p, m in df.loc[df["skipped"].notna(), ["precision", "mode"]].values})
        fig.supxlabel(f"not run here: {', '.join(missing)} (see the rows' skipped reasons)", fontsize=8)
    return fig


@_themed
def decode_chart(curve: pd.DataFrame) -> Figure:
    """Decode speed (tokens/s, batch 1) against tokens generated, with the KV cache and recomputing (left), and
    the bytes the cache holds by then against its preallocated size (right); from ``measure.decode_curve``.

    Example:
        >>> curve = pd.DataFrame({"new_tokens": [8, 8, 16, 16], "kv_cache": [True, False] * 2,
        ...                       "decode_tps": [900.0, 500, 880, 300], "ttft_ms": [1.0] * 4, "noisy": [False] * 4,
        ...                       "kv_bytes_used": [1024, 1024, 2048, 2048], "kv_cache_bytes": [4096] * 4})
        >>> [a.get_ylabel() for a in decode_chart(curve).axes]
        ['decode speed (tokens/s, batch 1)', 'KV cache (KiB)']
    """
    fig, (speed, memory) = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
    plt.close(fig)
    for cached, part in curve.groupby("kv_cache", sort=False):
        part = part.sort_values("new_tokens")
        label = "KV cache" if cached else "recomputing every step"
        speed.plot(part["new_tokens"], part["decode_tps"], marker="o", ms=3, label=label)
    cached = curve[curve["kv_cache"]].sort_values("new_tokens")
    memory.plot(cached["new_tokens"], cached["kv_bytes_used"] / 1024, marker="o", ms=3, label="holding")
    memory.axhline(cached["kv_cache_bytes"].iloc[0] / 1024, ls="--", color="grey", label="preallocated (full context)")
    speed.set_ylabel("decode speed (tokens/s, batch 1)")
    memory.set_ylabel("KV cache (KiB)")
    for ax in (speed, memory):
        ax.set_xlabel("tokens generated")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"Greedy decoding on {curve.attrs.get('device_name', 'this machine')}")
    return fig


@_themed
def attention_chart(timing: pd.DataFrame) -> Figure:
    """Whole-model forward time (ms, batch 1) against sequence length, fused (sdpa) and naive attention, with the
    naive/sdpa ratio on a second axis; from ``measure.attention_timing``.

    Example:
        >>> t = pd.DataFrame({"tokens": [64, 64, 128, 128], "attention": ["sdpa", "naive"] * 2,
        ...                   "latency_ms": [1.0, 1.2, 2.0, 3.0], "latency_ms_q25": [0.9, 1.1, 1.9, 2.9],
        ...                   "latency_ms_q75": [1.1, 1.3, 2.1, 3.1], "noisy": [False] * 4})
        >>> attention_chart(t).axes[0].get_ylabel()
        'forward time (ms, median, batch 1)'
    """
    fig, ax = _figure()
    for kind, part in timing.groupby("attention", sort=False):
        part = part.sort_values("tokens")
        (line,) = ax.plot(part["tokens"], part["latency_ms"], marker="o", ms=3, label=kind)
        ax.fill_between(
            part["tokens"], part["latency_ms_q25"], part["latency_ms_q75"], color=line.get_color(), alpha=0.2
        )
    wide = timing.pivot_table(index="tokens", columns="attention", values="latency_ms")
    ratio = ax.twinx()
    ratio.plot(wide.index, wide["naive"] / wide["sdpa"], ls="--", color="grey", label="naive / sdpa")
    ratio.set_ylabel("naive / sdpa (x)")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("sequence length (tokens, log)")
    ax.set_ylabel("forward time (ms, median, batch 1)")
    ax.legend(loc="upper left", fontsize=8)
    ratio.legend(loc="lower right", fontsize=8)
    ax.set_title(f"Attention, fused vs spelled out, on {timing.attrs.get('device_name', 'this machine')}")
    return fig


@_themed
def speculative_chart(curve: pd.DataFrame) -> Figure:
    """Speculative decoding against the target alone (``measure.speculative_curve``): tokens/s (median, interquartile
    bars) per lookahead ``k``, the target alone dashed, and the share of the draft's proposals the target kept on a
    second axis. The title names the device and how much was decoded.

    Example:
        >>> curve = pd.DataFrame({"lookahead": [0, 2, 4], "tokens_per_s": [500.0, 700, 650],
        ...                       "tokens_per_s_q25": [480.0, 690, 600], "tokens_per_s_q75": [520.0, 720, 700],
        ...                       "acceptance": [float("nan"), 0.8, 0.6]})
        >>> fig = speculative_chart(curve)
        >>> fig.axes[0].get_xlabel(), fig.axes[0].get_ylabel(), fig.axes[1].get_ylabel()
        ('lookahead k (draft tokens per check)', 'decode speed (tokens/s, batch 1, greedy)', 'proposals accepted (%)')
    """
    fig, ax = _figure()
    alone = curve[curve["lookahead"] == 0]
    spec = curve[curve["lookahead"] > 0].sort_values("lookahead")
    err = np.vstack(
        [
            (spec["tokens_per_s"] - spec["tokens_per_s_q25"]).clip(lower=0),
            (spec["tokens_per_s_q75"] - spec["tokens_per_s"]).clip(lower=0),
        ]
    )
    ax.errorbar(spec["lookahead"], spec["tokens_per_s"], yerr=err, marker="o", capsize=3, label="draft + target")
    if len(alone):
        ax.axhline(float(alone["tokens_per_s"].iloc[0]), color="gray", linestyle="--", label="target alone")
    ax.set_ylim(bottom=0)
    ax.set_xticks(spec["lookahead"])
    ax.set(xlabel="lookahead k (draft tokens per check)", ylabel="decode speed (tokens/s, batch 1, greedy)")
    kept = ax.twinx()
    kept.plot(spec["lookahead"], 100 * spec["acceptance"], color="tab:green", marker="s", ms=4, ls=":")
    kept.set_ylim(0, 105)
    kept.set_ylabel("proposals accepted (%)", color="tab:green")
    ax.legend(fontsize="small", loc="lower left")
    a = curve.attrs
    ax.set_title(
        f"Speculative decoding on {a.get('device_name', 'this machine')}"
        + (f": {a['prompts']} prompts x {a['new_tokens']} tokens" if "prompts" in a and "new_tokens" in a else "")
        + (f", {a['threads']} thread(s)" if "threads" in a else ""),
        fontsize=10,
    )
    return fig


@_themed
def roofline_chart(points: pd.DataFrame, ax=None) -> Figure:
    """``report.roofline``'s cells on the roofline: achieved GFLOP/s against arithmetic intensity (FLOPs per
    byte moved), log-log, under the device's two measured roofs (the bandwidth slope and the matmul
    ceiling); a marker per mode, a colour per variant, the batch size beside each point. Points far under
    both roofs are overhead-bound: their time goes to neither arithmetic nor memory.

    Example:
        >>> pts = pd.DataFrame({"variant": ["fp32", "int8"], "device": ["cpu"] * 2, "device_name": ["EPYC"] * 2,
        ...     "mode": ["eager"] * 2, "batch_size": [64, 64], "intensity": [20.0, 30.0],
        ...     "achieved_gflops": [40.0, 30.0], "peak_gflops": [100.0] * 2, "bandwidth_gbs": [10.0] * 2})
        >>> ax = roofline_chart(pts).axes[0]
        >>> ax.get_xlabel(), ax.get_xscale()
        ('arithmetic intensity (FLOP per byte moved)', 'log')
    """
    if points.empty:
        raise ValueError(
            "no timed cell could be placed on the roofline: its runs need activation bytes and the device's "
            "measured roofs (runs made before they were recorded lack them: run them again)"
        )
    fig, ax = _figure(ax)
    markers = dict(zip(dict.fromkeys(points["mode"]), "os^Dv<>P*X"))
    colours = {v: f"C{i % 10}" for i, v in enumerate(dict.fromkeys(points["variant"]))}
    low, high = points["intensity"].min() / 4, points["intensity"].max() * 4
    for device, roofs in points.groupby("device", sort=False):
        peak, bandwidth = roofs["peak_gflops"].iloc[0], roofs["bandwidth_gbs"].iloc[0]
        xs = np.geomspace(min(low, peak / bandwidth / 4), max(high, peak / bandwidth * 4), 200)
        ax.plot(
            xs, np.minimum(peak, xs * bandwidth), color="gray", lw=1.5,
            label=f"{device} roofs: {bandwidth:.0f} GB/s, {peak:.0f} GFLOP/s (measured)",
        )  # fmt: skip
    for p in points.itertuples():
        ax.scatter(p.intensity, p.achieved_gflops, marker=markers[p.mode], color=colours[p.variant], s=30, zorder=3)
        ax.annotate(f"bs{p.batch_size}", (p.intensity, p.achieved_gflops), fontsize=7, xytext=(3, 3),
                    textcoords="offset points")  # fmt: skip
    for variant, colour in colours.items():
        ax.scatter([], [], color=colour, label=variant)
    for mode, marker in markers.items():
        ax.scatter([], [], color="gray", marker=marker, label=f"mode: {mode}")
    ax.set(xscale="log", yscale="log", xlabel="arithmetic intensity (FLOP per byte moved)",
           ylabel="achieved GFLOP/s")  # fmt: skip
    names = ", ".join(f"{d}: {n}" for d, n in dict.fromkeys(zip(points["device"], points["device_name"])))
    ax.set_title(f"Roofline — {names}", fontsize=10)
    ax.legend(fontsize="x-small", loc="lower right")
    return fig
