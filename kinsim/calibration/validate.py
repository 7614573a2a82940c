"""Predicted against measured kernel times (``kinsim calibrate validate``)."""

from __future__ import annotations

from dataclasses import dataclass

from kinsim.calibration.rows import predict
from kinsim.hardware.spec import HardwareSpec


@dataclass(frozen=True)
class KernelError:
    """Error of the predictions for one kernel kind (fractions: 0.05 is 5%)."""

    kernel: str
    impl: str
    points: int
    mape: float
    worst: float
    worst_row: int
    held_points: int = 0
    held_mape: float | None = None


def predictions(frame, hw: HardwareSpec, *, datasheet: bool = False):
    """``frame`` with ``predicted_s`` (``hw`` with its calibration profile, or its datasheet roofline) and
    ``error`` ((predicted - measured) / measured) per row, and ``held_out`` (the rows the fitter holds out
    of a fit of this kind: every fifth in order of work)."""
    from kinsim.calibration.fit import fit_selection

    out = frame.copy()
    out["predicted_s"] = predict(frame, hw, datasheet=datasheet)
    out["in_fit"], out["held_out"] = fit_selection(frame, hw)
    out["error"] = (out["predicted_s"] - out["time_s"]) / out["time_s"]
    return out


def errors_by_kernel(table) -> list[KernelError]:
    """MAPE and worst case per kernel kind and implementation, from :func:`predictions`."""
    out = []
    for (kernel, impl), rows in table.groupby(["kernel", "impl"], sort=True):
        absolute = rows["error"].abs()
        held = rows["held_out"] if "held_out" in rows.columns else rows["error"] != rows["error"]
        out.append(KernelError(kernel, impl, len(rows), float(absolute.mean()), float(absolute.max()),
                               int(absolute.idxmax()), int(held.sum()),
                               float(absolute[held].mean()) if held.any() else None))
    return out


def plot_validation(table, title: str):
    """Predicted against measured time per kernel kind, log-log, with the line of equality."""
    from matplotlib.figure import Figure

    from kinsim.report.plaintext import plain

    fig = Figure(figsize=(6, 5), layout="constrained")
    ax = fig.add_subplot()
    for (kernel, impl), rows in table.groupby(["kernel", "impl"], sort=True):
        ax.loglog(rows["time_s"] * 1e6, rows["predicted_s"] * 1e6, "o", markersize=4, label=plain(f"{kernel} ({impl})"))
    low = float(min(table["time_s"].min(), table["predicted_s"].min())) * 1e6
    high = float(max(table["time_s"].max(), table["predicted_s"].max())) * 1e6
    ax.loglog([low, high], [low, high], color="black", linewidth=0.8, label="predicted = measured")
    ax.set_xlabel("measured time (us)")
    ax.set_ylabel("predicted time (us)")
    ax.set_title(plain(title), fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, which="both")
    return fig


def plot_end_to_end(points, title: str):
    """Simulated against measured TTFT and TPOT of serving benchmarks (one panel each, log-log, one colour per
    backend), with the line of equality and the band of the end-to-end targets (TTFT within 20%, TPOT within
    10%: ``docs/calibration.md``). ``points``: a DataFrame with ``backend``, ``ttft_s`` and ``tpot_s``
    (measured, seconds) and ``sim_ttft_s`` and ``sim_tpot_s`` (kinsim's, seconds)."""
    from matplotlib.figure import Figure

    from kinsim.report.plaintext import plain

    fig = Figure(figsize=(11, 5), layout="constrained")
    for ax, (figure, band) in zip(fig.subplots(1, 2), (("ttft", 0.20), ("tpot", 0.10))):
        measured, simulated = points[f"{figure}_s"] * 1e3, points[f"sim_{figure}_s"] * 1e3
        for backend, rows in points.groupby("backend", sort=True):
            error = (rows[f"sim_{figure}_s"] / rows[f"{figure}_s"] - 1.0).abs().mean()
            ax.loglog(rows[f"{figure}_s"] * 1e3, rows[f"sim_{figure}_s"] * 1e3, "o", markersize=3, alpha=0.6,
                      label=plain(f"{backend}: {len(rows)} rows, MAPE {error:.1%}"))
        low = float(min(measured.min(), simulated.min()))
        high = float(max(measured.max(), simulated.max()))
        line = [low, high]
        ax.loglog(line, line, color="black", linewidth=0.8, label="simulated = measured")
        ax.fill_between(line, [v * (1 - band) for v in line], [v * (1 + band) for v in line], color="grey",
                        alpha=0.2, label=f"within {band:.0%} (the target)")
        ax.set_xlabel(f"measured {figure.upper()} (ms)")
        ax.set_ylabel(f"simulated {figure.upper()} (ms)")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.suptitle(plain(title), fontsize=9)
    return fig
