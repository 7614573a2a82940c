"""Plots of a run, from its summary alone (the JSON ``kinsim run`` writes), so that ``kinsim run --plots``
and ``kinsim report`` draw the same pictures.

Each ``plot_*`` function returns a matplotlib ``Figure`` (made without pyplot, so no display is needed);
:func:`write_plots` saves them as PNG and SVG.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from kinsim.files import save_figure
from kinsim.ops.op import OP_CLASSES
from kinsim.report.plaintext import plain

#: Plot names and what they show, in the order reports list them.
PLOTS = {
    "breakdown": "Time by op class",
    "timeline": "Throughput and KV-cache occupancy over time",
    "latency": "Latency distributions",
    "roofline": "Op classes against the GPU's roofline",
}

COLORS = {"attention": "#4c72b0", "selection": "#dd8452", "linear": "#55a868", "moe": "#c44e52",
          "communication": "#8172b3", "other": "#937860"}


def run_title(summary: Mapping[str, Any]) -> str:
    """What was simulated on what (plain text; plots draw it through :func:`plot_title`)."""
    return (f"{summary['workload']}: {summary['model']}, {summary['attention']} attention, "
            f"{summary['gpus']} x {summary['hardware']}")


def plot_title(what: str, summary: Mapping[str, Any]) -> str:
    """A plot's title: ``what`` over :func:`run_title`, user names escaped (:func:`plain`)."""
    return f"{what}\n{plain(run_title(summary))}"


def plot_breakdown(summary: Mapping[str, Any]) -> Figure:
    """Horizontal bars: replica-seconds per op class that took any time."""
    fig = Figure(figsize=(7, 3.2), layout="constrained")
    ax = fig.add_subplot()
    classes = [c for c in OP_CLASSES if summary["breakdown_s"][c] > 0]
    if not classes:
        ax.text(0.5, 0.5, "no step ran", ha="center", va="center", transform=ax.transAxes)
    seconds = [summary["breakdown_s"][c] for c in classes]
    total = sum(seconds) or 1.0
    bars = ax.barh(classes, seconds, color=[COLORS[c] for c in classes])
    for bar, value in zip(bars, seconds):
        if value > 0:
            ax.annotate(f"{value / total:.0%}", (bar.get_width(), bar.get_y() + bar.get_height() / 2),
                        xytext=(3, 0), textcoords="offset points", va="center", fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("time (replica-seconds)")
    ax.set_title(plot_title("Time by op class", summary), fontsize=9)
    return fig


def plot_timeline(summary: Mapping[str, Any]) -> Figure:
    """Output tokens/s and mean KV bytes per replica over simulated time."""
    series = summary["series"]
    t = np.asarray(series["t_s"])
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True)
    top.plot(t, series["output_tokens_per_s"], color="#4c72b0")
    top.set_ylabel("output tokens/s")
    top.set_title(plot_title("Throughput and KV-cache occupancy", summary), fontsize=9)
    bottom.plot(t, np.asarray(series["kv_bytes"]) / 1e9, color="#55a868", label="mean per replica")
    bottom.axhline(summary["kv"]["capacity_bytes"] / 1e9, color="#c44e52", linestyle="--", label="capacity")
    bottom.set_ylabel("KV cache (GB)")
    bottom.set_xlabel("simulated time (s)")
    bottom.legend(fontsize=8, loc="lower right")
    return fig


LATENCY_PANELS = (("ttft", "request TTFT (ms)", 1e3), ("tpot", "request TPOT (ms)", 1e3),
                  ("e2e", "request end-to-end (s)", 1.0), ("task_e2e", "task end-to-end (s)", 1.0))


def plot_latency(summary: Mapping[str, Any]) -> Figure:
    """Cumulative distributions of TTFT, TPOT and end-to-end latency (requests and tasks)."""
    quantiles = summary["series"]["latency_quantiles"]
    fig = Figure(figsize=(8, 5), layout="constrained")
    axes = fig.subplots(2, 2).ravel()
    for ax, (key, label, scale) in zip(axes, LATENCY_PANELS):
        values = quantiles[key]
        if values:
            ax.plot(np.asarray(values) * scale, quantiles["q"], color="#4c72b0")
        else:
            ax.text(0.5, 0.5, "none finished", ha="center", va="center", transform=ax.transAxes)
        ax.set_xlabel(label)
        ax.set_ylabel("fraction")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    fig.suptitle(plot_title("Latency CDFs", summary), fontsize=9)
    return fig


def roofline_points(summary: Mapping[str, Any]) -> dict[str, tuple[float, float]]:
    """Per op class with FLOPs and HBM bytes: (FLOP per HBM byte, achieved FLOP/s per GPU)."""
    points = {}
    for c in OP_CLASSES:  # the declared classes only (a run file may carry keys kinsim does not read)
        entry = summary["by_class"][c]
        if entry["flops"] > 0 and entry["hbm_bytes"] > 0 and entry["seconds"] > 0:
            points[c] = (entry["flops"] / entry["hbm_bytes"], entry["flops"] / entry["seconds"])
    return points


def plot_roofline(summary: Mapping[str, Any]) -> Figure:
    """Each op class at its arithmetic intensity and achieved rate, under the bf16 peak and HBM ceilings.
    Communication moves link bytes, not HBM bytes, so it has no place on this chart."""
    peak = summary["ceilings"]["peak_flop_per_s"]
    bandwidth = summary["ceilings"]["hbm_bandwidth"]
    points = roofline_points(summary)
    fig = Figure(figsize=(6.5, 4.5), layout="constrained")
    ax = fig.add_subplot()
    intensities = [p[0] for p in points.values()] or [1.0]
    x = np.logspace(np.log10(min(intensities + [1.0]) / 4), np.log10(max(intensities + [peak / bandwidth]) * 4), 200)
    ax.loglog(x, np.minimum(peak, bandwidth * x), color="black", linewidth=1.2, label="roofline (bf16, HBM)")
    for c, (intensity, rate) in points.items():
        ax.loglog([intensity], [rate], "o", color=COLORS[c], label=c, markersize=8)
    ax.set_xlabel("arithmetic intensity (FLOP per HBM byte)")
    ax.set_ylabel("achieved FLOP/s per GPU")
    ax.set_title(plot_title("Op classes on the roofline", summary), fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return fig


PLOTTERS = {"breakdown": plot_breakdown, "timeline": plot_timeline, "latency": plot_latency,
            "roofline": plot_roofline}


def write_plots(summary: Mapping[str, Any], directory: str | Path,
                formats: tuple[str, ...] = ("png", "svg")) -> list[Path]:
    """Save every plot of :data:`PLOTS` as ``DIR/<name>.<format>``; return the paths written."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name in PLOTS:
        fig = PLOTTERS[name](summary)
        for fmt in formats:
            path = directory / f"{name}.{fmt}"
            written.append(save_figure(fig, path))
    return written
