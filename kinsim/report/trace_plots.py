"""Plots of a trace before it is simulated (``kinsim info TRACE --plot OUT``): arrival rate over time
and the distributions of prompt and output lengths."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from kinsim.files import save_figure
from kinsim.report.plaintext import plain
from kinsim.workload.replay import Selection

#: Bin widths (seconds) the arrival-rate plot chooses from: the smallest that gives at most 400 bins.
RATE_BINS_S = (1.0, 10.0, 60.0, 600.0, 3600.0, 86400.0)


def rate_bin_s(duration_s: float, most_bins: int = 400) -> float:
    """The arrival-rate plot's bin width for a trace lasting ``duration_s`` seconds."""
    for width in RATE_BINS_S:
        if duration_s / width <= most_bins:
            return width
    return RATE_BINS_S[-1]


def plot_trace(selection: Selection, title: str) -> Figure:
    """Arrival rate (requests per second, mean over each bin) and log-scaled length histograms."""
    figure = Figure(figsize=(11, 3.4))
    rate, prompts, outputs = figure.subplots(1, 3)
    arrival = selection.arrival_s - selection.arrival_s.min()
    width = rate_bin_s(float(arrival.max()))
    counts = np.bincount(np.floor(arrival / width).astype(np.int64))
    minutes = width >= 60
    scale = 60.0 if minutes else 1.0
    rate.stairs(counts / width, np.arange(len(counts) + 1) * width / scale, linewidth=0.8)
    rate.set_xlabel("time, " + ("min" if minutes else "s"))
    rate.set_ylabel(f"arrivals per second ({width:g} s bins)")
    rate.set_title("arrival rate")
    panels = ((prompts, selection.prompt_tokens, "prompt"), (outputs, selection.output_tokens, "output"))
    for axes, values, name in panels:
        top = max(int(values.max()), 2)
        edges = np.unique(np.geomspace(1, top + 1, 60).astype(np.int64))
        axes.hist(values, bins=edges, color="C1" if name == "output" else "C0")
        axes.set_xscale("log")
        axes.set_xlabel(f"{name} tokens")
        axes.set_ylabel("requests")
        axes.set_title(f"{name} length (p50 {np.percentile(values, 50):,.0f}, p99 {np.percentile(values, 99):,.0f})")
    figure.suptitle(plain(title))
    figure.tight_layout()
    return figure


def write_trace_plot(selection: Selection, path: str | Path, title: str) -> Path:
    """Write :func:`plot_trace` to ``path`` (PNG, SVG or PDF by its suffix)."""
    return save_figure(plot_trace(selection, title), path)
