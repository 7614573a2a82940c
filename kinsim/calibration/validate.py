"""Predicted against measured kernel times (``kinsim calibrate validate``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kinsim.cost.roofline import RooflineCost
from kinsim.hardware.spec import HardwareSpec
from kinsim.ops.op import Op


@dataclass(frozen=True)
class KernelError:
    """Error of the predictions for one kernel kind (fractions: 0.05 is 5%)."""

    kernel: str
    impl: str
    points: int
    mape: float
    worst: float
    worst_row: int


def predictions(frame, hw: HardwareSpec):
    """``frame`` with ``predicted_s`` (the roofline on ``hw``, its calibration profile included) and
    ``error`` ((predicted - measured) / measured) per row."""
    cost = RooflineCost(hw)
    predicted = [float(np.sum(cost.op_cost(Op(name="measured", op_class="other", kernel=row.kernel,
                                               dtype=str(row.dtype), flops=float(row.flops),
                                               bytes_read=float(row.bytes))).time_s))
                 for row in frame.itertuples(index=False)]
    out = frame.copy()
    out["predicted_s"] = predicted
    out["error"] = (out["predicted_s"] - out["time_s"]) / out["time_s"]
    return out


def errors_by_kernel(table) -> list[KernelError]:
    """MAPE and worst case per kernel kind and implementation, from :func:`predictions`."""
    out = []
    for (kernel, impl), rows in table.groupby(["kernel", "impl"], sort=True):
        absolute = rows["error"].abs()
        out.append(KernelError(kernel, impl, len(rows), float(absolute.mean()), float(absolute.max()),
                               int(absolute.idxmax())))
    return out


def plot_validation(table, title: str):
    """Predicted against measured time per kernel kind, log-log, with the line of equality."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 5), layout="constrained")
    ax = fig.add_subplot()
    for (kernel, impl), rows in table.groupby(["kernel", "impl"], sort=True):
        ax.loglog(rows["time_s"] * 1e6, rows["predicted_s"] * 1e6, "o", markersize=4, label=f"{kernel} ({impl})")
    low = float(min(table["time_s"].min(), table["predicted_s"].min())) * 1e6
    high = float(max(table["time_s"].max(), table["predicted_s"].max())) * 1e6
    ax.loglog([low, high], [low, high], color="black", linewidth=0.8, label="predicted = measured")
    ax.set_xlabel("measured time (us)")
    ax.set_ylabel("predicted time (us)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, which="both")
    return fig
