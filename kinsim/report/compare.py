"""Side-by-side comparison of runs: a table of headline metrics with ratios to the first run, and a plot."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from kinsim.report.plaintext import plain
from kinsim.result import metric_at

#: (dotted key, label, unit scale, unit) of the compared metrics.
HEADLINE = (
    ("sim_time_s", "makespan", 1.0, "s"),
    ("throughput.tasks_per_s", "tasks/s", 1.0, "1/s"),
    ("throughput.output_tokens_per_s", "output tokens/s", 1.0, "1/s"),
    ("latency.request.ttft.p50", "TTFT p50", 1e3, "ms"),
    ("latency.request.tpot.p50", "TPOT p50", 1e3, "ms"),
    ("latency.request.e2e.p99", "request e2e p99", 1.0, "s"),
    ("latency.task.e2e.p99", "task e2e p99", 1.0, "s"),
    ("kv.peak_bytes", "KV peak per replica", 1e-9, "GB"),
    ("kv.mean_bytes", "KV mean per replica", 1e-9, "GB"),
    ("utilization.hbm", "HBM utilisation", 100.0, "%"),
    ("utilization.compute", "compute utilisation", 100.0, "%"),
    ("requests.preemptions", "preemptions", 1.0, ""),
    ("requests.unfinished", "unfinished requests", 1.0, ""),
    ("energy_j", "energy", 1 / 3.6e6, "kWh"),
)

#: Metrics drawn in the comparison plot.
PLOTTED = ("throughput.tasks_per_s", "throughput.output_tokens_per_s", "latency.request.tpot.p50",
           "latency.task.e2e.p99", "kv.mean_bytes", "energy_j")


def ratio(value: float | None, base: float | None) -> float | None:
    """``value / base``, or ``None`` when either is missing or the base is 0."""
    if value is None or base is None or base == 0:
        return None
    return value / base


def compare_rows(runs: Sequence[tuple[str, Mapping[str, Any]]]) -> list[dict[str, Any]]:
    """One row per headline metric: its values per run and the ratios to the first run."""
    rows = []
    for key, label, scale, unit in HEADLINE:
        values = [metric_at(summary, key) for _, summary in runs]
        rows.append({"key": key, "label": label, "unit": unit, "scale": scale, "values": values,
                     "ratios": [ratio(v, values[0]) for v in values]})
    return rows


def format_table(runs: Sequence[tuple[str, Mapping[str, Any]]]) -> list[str]:
    """The comparison as aligned text lines."""
    labels = [label for label, _ in runs]
    header = ["metric", *labels] + [f"{label} / {labels[0]}" for label in labels[1:]]
    lines = [header]
    for row in compare_rows(runs):
        cells = [f"{row['label']} ({row['unit']})" if row["unit"] else row["label"]]
        cells += ["-" if v is None else f"{v * row['scale']:,.4g}" for v in row["values"]]
        cells += ["-" if r is None else f"{r:.3f}x" for r in row["ratios"][1:]]
        lines.append(cells)
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(line, widths)))
            for line in lines]


def plot_compare(runs: Sequence[tuple[str, Mapping[str, Any]]]) -> Figure:
    """Grouped bars: each plotted metric of each run relative to the first run (1 = the same)."""
    rows = {row["key"]: row for row in compare_rows(runs)}
    labels = [label for label, _ in runs]
    metrics = [rows[key] for key in PLOTTED]
    fig = Figure(figsize=(8, 4.2), layout="constrained")
    ax = fig.add_subplot()
    width = 0.8 / len(runs)
    x = np.arange(len(metrics))
    for i, label in enumerate(labels):
        heights = [np.nan if m["ratios"][i] is None else m["ratios"][i] for m in metrics]
        ax.bar(x + (i - (len(runs) - 1) / 2) * width, heights, width, label=plain(label))
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks(x, [m["label"] for m in metrics], rotation=20, ha="right", fontsize=8)
    ax.set_ylabel(plain(f"relative to {labels[0]}"))
    ax.set_title(plain("Comparison: " + " vs ".join(labels)), fontsize=9)
    ax.legend(fontsize=8)
    return fig
