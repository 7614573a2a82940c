"""Reading the JSON that ``kinsim run --json`` writes, with clear errors for anything else.

What ``kinsim report`` and ``kinsim compare`` read of a run is declared in :data:`RUN_SHAPE` and checked
before use, so that a file with the right sections but wrong contents (a string where a number belongs, a
missing nested key, ``"NaN"``) is refused with one line naming the file and the key.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kinsim.errors import SpecError
from kinsim.metrics import SECTIONS
from kinsim.ops.op import OP_CLASSES
from kinsim.reading import read_json

NUMBER, OPTIONAL, POSITIVE, WHOLE, TEXT, NUMBERS, SPEC = (
    "a finite number", "a finite number or null", "a positive number", "a whole number", "a string",
    "a list of numbers", "a mapping or null")
_PERCENTILES = {p: OPTIONAL for p in ("p50", "p90", "p99", "mean")}
_QUANTILES = ("q", "ttft", "tpot", "e2e", "task_e2e")

#: What report and compare read of a run: nested mappings of key -> kind (``"*"``: every key).
RUN_SHAPE: dict[str, Any] = {
    "workload": TEXT, "hardware": TEXT, "model": TEXT, "attention": TEXT, "gpus": WHOLE, "mode": TEXT,
    "sim_time_s": NUMBER, "wall_time_s": NUMBER, "energy_j": NUMBER, "cost_usd": OPTIONAL,
    "requests": {"completed": WHOLE, "unfinished": WHOLE, "preemptions": WHOLE, "unfinished_reasons": {"*": WHOLE}},
    "tasks": {"completed": WHOLE, "total": WHOLE},
    "tokens": {"generated": WHOLE, "prompt": WHOLE, "prefill_computed": WHOLE},
    "throughput": {"output_tokens_per_s": NUMBER, "tasks_per_s": NUMBER},
    "latency": {"request": {"ttft": _PERCENTILES, "tpot": _PERCENTILES, "e2e": _PERCENTILES},
                "task": {"e2e": _PERCENTILES}},
    "kv": {"capacity_bytes": NUMBER, "peak_bytes": NUMBER, "mean_bytes": NUMBER},
    "utilization": {"compute": NUMBER, "hbm": NUMBER, "link": NUMBER},
    "breakdown_s": {c: NUMBER for c in OP_CLASSES},
    "by_class": {c: {"seconds": NUMBER, "flops": NUMBER, "hbm_bytes": NUMBER} for c in OP_CLASSES},
    "ceilings": {"peak_flop_per_s": POSITIVE, "hbm_bandwidth": POSITIVE},
    "series": {"t_s": NUMBERS, "output_tokens_per_s": NUMBERS, "kv_bytes": NUMBERS,
               "latency_quantiles": {k: NUMBERS for k in _QUANTILES}},
    "inputs": {"*": SPEC},
}


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _fits(kind: str, value: Any) -> bool:
    if kind == TEXT:
        return isinstance(value, str)
    if kind == WHOLE:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == SPEC:
        return value is None or isinstance(value, Mapping)
    if kind == NUMBERS:
        return isinstance(value, list) and all(_is_number(v) for v in value)
    if kind == OPTIONAL and value is None:
        return True
    finite = _is_number(value) and math.isfinite(value)
    return finite and (value > 0 if kind == POSITIVE else True)


def check_run(summary: Mapping[str, Any], file: str) -> None:
    """A :class:`SpecError` naming the first key of :data:`RUN_SHAPE` (and of the :data:`LATER_SHAPE`
    sections it has) that ``summary`` lacks or holds wrongly, and series whose lengths do not match."""
    _check_shape(RUN_SHAPE, summary, file)
    _check_shape({key: shape for key, shape in LATER_SHAPE.items() if key in summary}, summary, file)
    series = summary["series"]
    for key in ("output_tokens_per_s", "kv_bytes"):
        if len(series[key]) != len(series["t_s"]):
            raise SpecError(f"has {len(series[key])} values, series.t_s has {len(series['t_s'])}",
                            path=f"series.{key}", file=file)
    quantiles = series["latency_quantiles"]
    for key in _QUANTILES[1:]:
        if quantiles[key] and len(quantiles[key]) != len(quantiles["q"]):
            raise SpecError(f"has {len(quantiles[key])} values, series.latency_quantiles.q has "
                            f"{len(quantiles['q'])}", path=f"series.latency_quantiles.{key}", file=file)


#: Sections that runs of earlier kinsim versions lack (the KV memory hierarchy's figures), or that runs have
#: only with a feature on (speculative decoding, disaggregation): checked like :data:`RUN_SHAPE` where
#: present, so that such a run still loads.
LATER_SHAPE: dict[str, Any] = {
    "host_link": {"bytes": NUMBER},
    "memory": {"prefix": {"hit_tokens": WHOLE, "token_hit_rate": NUMBER},
               "preemptions": {"recompute": WHOLE, "swap": WHOLE},
               "host": {"swap_out_bytes": NUMBER, "load_bytes": NUMBER, "offload_bytes": NUMBER, "stall_s": NUMBER}},
    # present only in runs with deployment.speculative (kinsim.metrics.OPTIONAL_SECTIONS)
    "speculative": {"verify_steps": WHOLE, "acceptance_rate": NUMBER, "tokens_per_verify": NUMBER,
                    "draft_s": NUMBER, "draft_share": NUMBER},
    # present only in runs with deployment.disaggregation
    "disaggregation": {**{role: {"hardware": TEXT, "replicas": WHOLE, "tensor_parallel": WHOLE, "busy_s": NUMBER,
                                 "utilization": NUMBER, "kv_capacity_bytes": NUMBER,
                                 "kv_peak_bytes": NUMBER} for role in ("prefill", "decode")},
                       "transfers": WHOLE, "kv_transferred_bytes": NUMBER, "transfer_s": _PERCENTILES,
                       "decode_queue_s": _PERCENTILES, "transfer_stall_s": _PERCENTILES},
    # present only in runs whose trace has scores (and that keep the request table)
    "scores": {"requests": WHOLE, "tasks": WHOLE, "mean": NUMBER, "task_best_mean": NUMBER,
               "gpu_s_per_request": NUMBER, "gpu_s_per_task": NUMBER,
               "solved": {"tasks": WHOLE, "gpu_s_per_task": OPTIONAL},
               "unsolved": {"tasks": WHOLE, "gpu_s_per_task": OPTIONAL}},
}
LATER_SECTIONS = tuple(LATER_SHAPE)


def _check_shape(shape: Mapping[str, Any], summary: Mapping[str, Any], file: str) -> None:
    stack: list[tuple[str, Mapping[str, Any], Any]] = [("", shape, summary)]
    while stack:
        prefix, shape, node = stack.pop()
        if not isinstance(node, Mapping):
            raise SpecError("expected a mapping", path=prefix, value=node, file=file)
        items = [(k, shape["*"]) for k in node] if "*" in shape else list(shape.items())
        for key, kind in reversed(items):
            path = f"{prefix}.{key}" if prefix else str(key)
            if key not in node:
                raise SpecError("missing key; is this a file written by kinsim run --json?", path=path, file=file)
            if isinstance(kind, dict):
                stack.append((path, kind, node[key]))
            elif not _fits(kind, node[key]):
                raise SpecError(f"expected {kind}", path=path, value=node[key], file=file)


def load_run(path: str | Path) -> dict[str, Any]:
    """The metrics of a run, or :class:`SpecError` naming the file and what is wrong."""
    path = Path(path)
    summary = read_json(path)
    if not isinstance(summary, dict):
        raise SpecError("expected a JSON object written by kinsim run --json", file=str(path))
    for key in SECTIONS:
        if key not in summary and key not in LATER_SECTIONS:
            raise SpecError("missing key; is this a file written by kinsim run --json?", path=key, file=str(path))
    check_run(summary, str(path))
    return summary

