"""A run's benchmark records as timing cells keyed ``device/mode/bsN``: what the ledger compares and the
roofline places."""

from __future__ import annotations

from typing import Any

import numpy as np


def timing_cells(records: Any) -> dict[str, dict[str, Any]]:
    """Benchmark records keyed ``device/mode/bsN`` (records that were skipped or lack a latency are left out).
    A language model's decoding with the KV cache is a cell too, mode ``decode`` (``decode_compiled``...),
    its latency the milliseconds of one decoding step, so the same comparisons and reasons apply to it."""
    out = {}
    records = list(records) if isinstance(records, (list, tuple)) else []
    for r in records:
        if r.get("kind") == "generation":
            if not r.get("kv_cache"):
                continue
            r = decode_cell(r, records)
        if r.get("latency_ms") is None or not np.isfinite(r["latency_ms"]):
            continue
        out[f"{str(r.get('device', 'cpu')).split(':')[0]}/{r.get('mode', 'eager')}/bs{r['batch_size']}"] = r
    return out


def decode_cell(r: dict[str, Any], records: list[dict[str, Any]]) -> dict[str, Any]:
    """A generation record as a latency cell: ms per decoding step of the whole batch (quartiles swap: the
    fastest rate is the shortest step), with the machine facts the run's other records on that device carry."""
    ms, q25, q75 = (
        r["batch_size"] * 1e3 / tps if tps else float("inf")
        for tps in (r["decode_tps"], r.get("decode_tps_q75"), r.get("decode_tps_q25"))
    )
    facts = next((o for o in records if o.get("device") == r.get("device") and "cpu_features" in o), {})
    return {
        **{k: facts[k] for k in ("device_name", "cpu_features") if k in facts},
        **r,
        "mode": "decode" if r["mode"] == "eager" else f"decode_{r['mode']}",
        "latency_ms": ms,
        "latency_ms_q25": q25,
        "latency_ms_q75": q75,
        "relative_spread": (q75 - q25) / ms if np.isfinite(q75) and ms else 0.0,
    }
