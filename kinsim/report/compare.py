"""Side-by-side comparison of runs: a table of headline metrics with ratios to the first run, and a plot."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from kinsim.metrics import better_direction, figure_unit
from kinsim.report.plaintext import plain
from kinsim.result import metric_at
from kinsim.units import format_figure, format_number

#: (dotted key, label) of the compared metrics; each value is shown in its unit (kinsim.metrics.figure_unit).
HEADLINE = (
    ("sim_time_s", "makespan"),
    ("throughput.tasks_per_s", "task throughput"),
    ("throughput.output_tokens_per_s", "output token throughput"),
    ("latency.request.ttft.p50", "TTFT p50"),
    ("latency.request.tpot.p50", "TPOT p50"),
    ("latency.request.e2e.p99", "request e2e p99"),
    ("latency.task.e2e.p99", "task e2e p99"),
    ("kv.peak_bytes", "KV peak per replica"),
    ("kv.mean_bytes", "KV mean per replica"),
    ("utilization.hbm", "HBM utilisation"),
    ("utilization.compute", "compute utilisation"),
    ("requests.preemptions", "preemptions"),
    ("requests.unfinished", "unfinished requests"),
    ("energy_j", "energy"),
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
    """One row per headline metric: its unit (values are SI), which way is better, its values per run and
    the ratios to the first run."""
    rows = []
    for key, label in HEADLINE:
        values = [metric_at(summary, key) for _, summary in runs]
        rows.append({"key": key, "label": label, "unit": figure_unit(key),
                     "better": "higher" if better_direction(key) > 0 else "lower", "values": values,
                     "ratios": [ratio(v, values[0]) for v in values]})
    return rows


def format_table(runs: Sequence[tuple[str, Mapping[str, Any]]]) -> list[str]:
    """The comparison as aligned text lines."""
    labels = [label for label, _ in runs]
    header = ["metric", *labels] + [f"{label} / {labels[0]}" for label in labels[1:]]
    lines = [header]
    for row in compare_rows(runs):
        cells = [row["label"]]
        cells += [format_figure(row["unit"], v) for v in row["values"]]
        cells += ["-" if r is None else f"{format_number(r, 3)}x" for r in row["ratios"][1:]]
        lines.append(cells)
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(line, widths)))
            for line in lines]


def plot_compare(runs: Sequence[tuple[str, Mapping[str, Any]]]) -> Figure:
    """Grouped bars: each plotted metric of each run relative to the first run (1 = the same), in two
    panels, metrics where higher is better on the left and those where lower is better on the right."""
    rows = {row["key"]: row for row in compare_rows(runs)}
    labels = [label for label, _ in runs]
    panels = [(side, [rows[key] for key in PLOTTED if rows[key]["better"] == side]) for side in ("higher", "lower")]
    panels = [(side, metrics) for side, metrics in panels if metrics]
    fig = Figure(figsize=(9, 4.2), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False,
                        gridspec_kw={"width_ratios": [len(metrics) for _, metrics in panels]})[0]
    width = 0.8 / len(runs)
    for ax, (side, metrics) in zip(axes, panels):
        x = np.arange(len(metrics))
        for i, label in enumerate(labels):
            heights = [np.nan if m["ratios"][i] is None else m["ratios"][i] for m in metrics]
            ax.bar(x + (i - (len(runs) - 1) / 2) * width, heights, width, label=plain(label))
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_xticks(x, [m["label"] for m in metrics], rotation=20, ha="right", fontsize=8)
        ax.set_ylabel(plain(f"ratio to {labels[0]} (1 = the same)"))
        ax.set_title(f"{side} is better", fontsize=9)
    axes[0].legend(fontsize=8)
    fig.suptitle(plain("Comparison: " + " vs ".join(labels)), fontsize=9)
    return fig
