"""Accuracy against cost per task: one panel per strategy (rows) and cost unit (columns), log cost, a line
per model and attention setting (colour: model; solid: dense, dashed and dotted: sparse settings) through
its N or budgets, and the strategy's global frontier as a black step (the best accuracy at a cost no
more than x). Matplotlib is imported when a plot is drawn, without pyplot (the Agg canvas)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from kinsim.frontier.pareto import frontier

#: Axis labels of the cost units.
UNIT_LABELS = {"flops": "FLOPs per task", "eflops": "eFLOPs per task", "gpu_s": "GPU-seconds per task",
               "joules": "joules per task", "usd": "dollars per task"}
_SPARSE_STYLES = ("--", ":", "-.")


def plot_frontier(frame: pd.DataFrame, units: Sequence[str], title: str = ""):
    """The figure (matplotlib ``Figure``) of ``frame``'s rows in each of ``units`` (columns with costs)."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullFormatter

    from kinsim.report.plaintext import plain

    strategies = list(dict.fromkeys(frame["strategy"]))
    fig = Figure(figsize=(4.4 * len(units), 3.5 * len(strategies) + 0.6), layout="constrained")
    axes = fig.subplots(len(strategies), len(units), squeeze=False)
    models = list(dict.fromkeys(frame["model"]))
    colours = {m: f"C{i % 10}" for i, m in enumerate(models)}
    sparse = [a for a in dict.fromkeys(frame.loc[frame["policy"] != "dense", "attention"])]
    styles = {a: _SPARSE_STYLES[i % len(_SPARSE_STYLES)] for i, a in enumerate(sparse)}
    for row, strategy in enumerate(strategies):
        rows = frame[frame["strategy"] == strategy]
        for col, unit in enumerate(units):
            ax = axes[row][col]
            column = f"cost_{unit}"
            for (model, attention), line in rows.groupby(["model", "attention"], sort=False):
                line = line[np.isfinite(line[column].to_numpy(float))].sort_values(column)
                if line.empty:
                    continue
                ax.plot(line[column], line["accuracy"] * 100, marker="o", markersize=3, linewidth=1.2,
                        color=colours[model], linestyle=styles.get(attention, "-"),
                        label=plain(f"{model}, {attention}"))
            front = frontier(rows, unit)
            if not front.empty:
                xs = list(front[column])
                ys = list(front["accuracy"] * 100)
                right = max(xs) * 1.5
                ax.step([*xs, right], [*ys, ys[-1]], where="post", color="black", linewidth=1.6, alpha=0.55,
                        label="frontier")
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())  # labelled minor ticks overlap on a short range
            ax.set_xlabel(UNIT_LABELS.get(unit, unit))
            ax.set_ylabel("accuracy (%)")
            ax.set_ylim(-2, 102)
            ax.set_title(plain(f"{strategy}: accuracy against {UNIT_LABELS.get(unit, unit)}"), fontsize=9)
            ax.grid(alpha=0.3, which="both")
    handles, labels = axes[0][0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncols=min(4, len(handles)), fontsize=7)
    if title:
        fig.suptitle(plain(title), fontsize=10)
    return fig
