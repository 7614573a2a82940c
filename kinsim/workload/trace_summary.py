"""Figures of a trace before it is simulated: how many requests, over how long, at what rate, how long
their prompts and outputs are, and how much of their prompts they share (``kinsim info TRACE``).

Every figure describes the requests a workload would replay, after its options (model, window, rate
scale, sample, caps; :mod:`kinsim.workload.replay`). Times are replayed seconds.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kinsim.workload.replay import Selection

#: Percentiles given for prompt and output lengths.
PERCENTILES = (50, 90, 99)


def peak_rate(arrival_s: np.ndarray, window_s: float) -> int:
    """Most arrivals in one window of ``window_s`` seconds, windows laid end to end from the first arrival."""
    if len(arrival_s) == 0:
        return 0
    bins = np.floor((arrival_s - arrival_s.min()) / window_s).astype(np.int64)
    return int(np.bincount(bins).max())


def lengths(values: np.ndarray) -> dict[str, Any]:
    """Total, mean, percentiles and max of token lengths."""
    out: dict[str, Any] = {"total": int(values.sum()), "mean": float(values.mean())}
    for q in PERCENTILES:
        out[f"p{q}"] = float(np.percentile(values, q))
    out["max"] = int(values.max())
    return out


def shared_prefix_share(selection: Selection) -> float | None:
    """Share of the replayed requests' prefix blocks (hash ids) that an earlier block of the replay
    already had: what a prefix cache of unbounded size could reuse. It is 1 - distinct ids / all ids,
    whatever the order (each id is new once). None without hash ids."""
    table = selection.table
    if table.hash_offsets is None or table.hash_values is None:
        return None
    counts = np.diff(table.hash_offsets)
    chosen = np.zeros(len(table), dtype=bool)
    chosen[selection.rows] = True
    ids = table.hash_values if chosen.all() else table.hash_values[np.repeat(chosen, counts)]
    if len(ids) == 0:
        return 0.0
    low, high = int(ids.min()), int(ids.max())
    if low >= 0 and high < 8 * len(ids):  # dense ids (as published): mark them, no sort
        seen = np.zeros(high + 1, dtype=bool)
        seen[ids] = True
        distinct = int(np.count_nonzero(seen))
    else:
        distinct = len(np.unique(ids))
    return 1.0 - distinct / len(ids)


def summarize_trace(selection: Selection) -> dict[str, Any]:
    """Figures of the requests a trace replays (keys name their units: ``*_s`` seconds, ``*_per_s``)."""
    arrival = selection.arrival_s
    duration = float(arrival.max() - arrival.min())
    n = len(arrival)
    report = selection.report.as_dict()
    return {
        "kind": "trace",
        "format": report["format"],
        "rows": report["rows"],
        "requests": n,
        "skipped": report["skipped"],
        "failed_replayed": report["failed_replayed"],
        "capped_prompt": report["capped_prompt"],
        "capped_output": report["capped_output"],
        "unsorted": report["unsorted"],
        "models": report["models"],
        "first_arrival_s": float(arrival.min()),
        "last_arrival_s": float(arrival.max()),
        "duration_s": duration,
        "rate_mean_per_s": n / duration if duration > 0 else None,
        "rate_mean_per_min": 60 * n / duration if duration > 0 else None,
        "rate_peak_per_s": peak_rate(arrival, 1.0),
        "rate_peak_per_min": peak_rate(arrival, 60.0),
        "prompt_tokens": lengths(selection.prompt_tokens),
        "output_tokens": lengths(selection.output_tokens),
        "hash_block_tokens": report["hash_block_tokens"],
        "shared_prefix_share": shared_prefix_share(selection),
    }
