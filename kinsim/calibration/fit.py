"""Fitting efficiency curves to measured kernels (``kinsim calibrate fit``).

For each kernel kind, the four parameters of :func:`kinsim.cost.efficiency.predict_time` (``compute_max``,
``flops_half``, ``memory_max``, ``bytes_half``) minimise the squared log-ratio of predicted to measured
time (so a 10% miss weighs the same on a 5 us and a 5 ms kernel), with bounds that keep the maxima in
(0, 1] and the halves non-negative (scipy's bounded least squares).

* Measurements faster than the ceilings allow (FLOP/s above the peak or bytes/s above the bandwidth,
  after the launch cost) are impossible under the model: they are rejected with a warning.
* Every fifth measurement in order of work is held out of the fit and scores it (``held_out_mape``).
* A side that never bounds the time (the compute side of decode attention) cannot be determined: it
  keeps the hardware file's constant efficiency and no fixed cost, and the curve's ``note`` says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from kinsim.cost.efficiency import ConstantEfficiency, predict_time, saturating
from kinsim.hardware.spec import CALIBRATED_KERNELS, CalibrationSpec, HardwareSpec, KernelCurveSpec
from kinsim.ops.op import Op

#: One measurement in this many is held out of the fit.
HOLD_OUT_EVERY = 5

#: Fewest usable measurements a kernel kind needs for its four parameters.
MIN_POINTS = 4


@dataclass
class KernelFit:
    """The fitted curve of one kernel kind (``None`` when too few measurements: ``skipped`` says why), with
    the measurements that were rejected."""

    kernel: str
    curve: KernelCurveSpec | None
    rejected: list[str] = field(default_factory=list)
    skipped: str = ""


def _constant(hw: HardwareSpec, kernel: str) -> tuple[float, float]:
    op = Op(name="probe", op_class="other", kernel=kernel, dtype="bf16")
    constant = ConstantEfficiency(hw.efficiency)
    return constant.compute(op), constant.memory(op)


def fit_kernel(kernel: str, flops: np.ndarray, nbytes: np.ndarray, time_s: np.ndarray, hw: HardwareSpec,
               peak: float | np.ndarray | None = None, bandwidth: float | None = None) -> KernelFit:
    """Fit one kernel kind's curves to its measurements (arrays of equal length). ``peak`` is the FLOP/s
    ceiling of each row's data type (one number or an array; default the bf16 peak)."""
    from scipy.optimize import least_squares

    bandwidth = hw.gpu.memory.bandwidth if bandwidth is None else bandwidth
    launch = hw.gpu.launch_overhead
    flops, nbytes, time_s = (np.asarray(a, dtype=float) for a in (flops, nbytes, time_s))
    peak = np.broadcast_to(np.asarray(hw.peak("bf16") if peak is None else peak, dtype=float), flops.shape)
    busy = time_s - launch
    possible = (busy > 0) & (flops <= peak * busy * (1 + 1e-9)) & (nbytes <= bandwidth * busy * (1 + 1e-9))
    rejected = [f"{kernel}: {f:.3g} FLOPs, {b:.3g} bytes in {t * 1e6:.3g} us is faster than the ceilings allow"
                for f, b, t in zip(flops[~possible], nbytes[~possible], time_s[~possible])]
    flops, nbytes, time_s, peak = flops[possible], nbytes[possible], time_s[possible], peak[possible]
    if len(time_s) < MIN_POINTS:
        return KernelFit(kernel, None, rejected, skipped=f"{kernel}: {len(time_s)} usable measurements, at least "
                         f"{MIN_POINTS} are needed: the hardware file's constant efficiencies stay")
    order = np.argsort(flops + nbytes * (peak / bandwidth), kind="stable")
    held = np.zeros(len(order), dtype=bool)
    held[order[HOLD_OUT_EVERY - 1::HOLD_OUT_EVERY]] = True
    train = ~held if held.sum() and (~held).sum() >= 4 else np.ones(len(order), dtype=bool)
    f_scale = float(np.median(flops[flops > 0])) if (flops > 0).any() else 1.0
    b_scale = float(np.median(nbytes[nbytes > 0])) if (nbytes > 0).any() else 1.0

    def curve_of(x) -> KernelCurveSpec:
        return KernelCurveSpec(compute_max=float(min(x[0], 1.0)), flops_half=float(x[1] * f_scale),
                               memory_max=float(min(x[2], 1.0)), bytes_half=float(x[3] * b_scale))

    def residuals(x, mask):
        predicted = predict_time(curve_of(x), flops[mask], nbytes[mask], peak[mask], bandwidth, launch)
        return np.log(predicted / time_s[mask])

    start = np.array([0.7, 0.1, 0.8, 0.1])
    solution = least_squares(residuals, start, args=(train,), bounds=([1e-3, 0.0, 1e-3, 0.0], [1.0, 1e6, 1.0, 1e6]),
                             x_scale="jac", xtol=1e-12, ftol=1e-12, gtol=1e-12, max_nfev=20000)
    x = solution.x
    fitted = curve_of(x)
    compute_t = flops / (peak * saturating(flops, fitted.compute_max, fitted.flops_half))
    memory_t = nbytes / (bandwidth * saturating(nbytes, fitted.memory_max, fitted.bytes_half))
    notes = []
    constant_compute, constant_memory = _constant(hw, kernel)
    if not (compute_t[train] > memory_t[train]).any():
        x[0], x[1] = constant_compute, 0.0
        notes.append("compute side never bound the time: constant efficiency kept")
    if not (memory_t[train] >= compute_t[train]).any():
        x[2], x[3] = constant_memory, 0.0
        notes.append("memory side never bound the time: constant efficiency kept")
    fitted = curve_of(x)
    scored = held if held.sum() else train
    predicted = predict_time(fitted, flops[scored], nbytes[scored], peak[scored], bandwidth, launch)
    mape = float(np.mean(np.abs(predicted - time_s[scored]) / time_s[scored]))
    curve = KernelCurveSpec(compute_max=fitted.compute_max, flops_half=fitted.flops_half,
                            memory_max=fitted.memory_max, bytes_half=fitted.bytes_half, points=int(train.sum()),
                            held_out_mape=mape, note="; ".join(notes))
    return KernelFit(kernel, curve, rejected)


def fit_profile(frame, hw: HardwareSpec, source: str, device: str,
                impl: str | None = None) -> tuple[CalibrationSpec, list[KernelFit]]:
    """A calibration profile from measurements (a DataFrame as :func:`read_measurements` returns).

    ``impl`` keeps only rows of one implementation (by default GEMMs measured through ``torch.matmul``
    when present, since serving engines use the vendor library, and every other kernel as it comes).
    Efficiencies are shares of the hardware file's datasheet peaks, so that a profile composes with the
    hardware file that references it; the ceilings measured on the device are kept in the provenance.
    """
    fits = []
    for kernel in CALIBRATED_KERNELS:
        rows = frame[frame["kernel"] == kernel]
        if impl is not None:
            rows = rows[rows["impl"] == impl]
        elif kernel == "gemm" and (rows["impl"] == "torch.matmul").any():
            rows = rows[rows["impl"] == "torch.matmul"]
        if len(rows) == 0:
            continue
        dtypes = rows["dtype"] if "dtype" in rows.columns else ["bf16"] * len(rows)  # the measurement file's default
        peaks = np.array([hw.peak(str(dtype)) for dtype in dtypes])  # as validate prices each row
        fits.append(fit_kernel(kernel, rows["flops"].to_numpy(), rows["bytes"].to_numpy(), rows["time_s"].to_numpy(),
                               hw, peak=peaks))
    if all(fit.curve is None for fit in fits):
        raise ValueError(f"no kernel kind has {MIN_POINTS} usable measurements: "
                         + "; ".join(fit.skipped for fit in fits))
    profile = CalibrationSpec(source=source, device=device,
                              **{fit.kernel: fit.curve for fit in fits if fit.curve is not None})
    return profile, fits
