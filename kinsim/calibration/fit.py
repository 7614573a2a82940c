"""Fitting a calibration profile to measured kernels (``kinsim calibrate fit``).

Per kernel kind, the free terms of the serving-grade kernel model (:mod:`kinsim.cost.kernel_model`)
minimise the squared log-ratio of predicted to measured time (so a 10% miss weighs the same on a 5 us and
a 5 ms kernel), within physical bounds (shares in (0, 1], times and bandwidths non-negative), by scipy's
bounded least squares. Which terms are free depends on the kind (:data:`FREE_TERMS`): decode attention is
memory-bound, so its compute share keeps the hardware file's constant; GEMMs and prefill attention have a
compute side and waves of tiles.

All-reduce rows (kind ``allreduce``, one implementation each: ``nccl``, ``custom``) fit the two-protocol
model of :mod:`kinsim.cost.collective_model`: NCCL's small protocol is ring traffic, its large one uses the
switch's reduction where the fabric has it; the custom all-reduce is one-shot for small buffers and
two-shot (ring traffic) for large ones.

* Measurements faster than the datasheet ceilings allow (cold rows only) are impossible under the
  model: they are rejected with a warning.
* Every fifth measurement in order of work is held out of the fit and scores it (``held_out_mape``).
* Rows of one implementation are fitted per kind: by default the one with most rows (for GEMMs, the
  bf16 rows of the vendor library, ``torch.*``, which serving engines call).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from kinsim.calibration.rows import predict_allreduce, predict_kernel, row_peaks, warm_bytes
from kinsim.cost.efficiency import ConstantEfficiency
from kinsim.hardware.spec import (
    CALIBRATED_KERNELS,
    OP_KERNEL,
    CalibrationSpec,
    CollectiveCurveSpec,
    HardwareSpec,
    KernelCurveSpec,
)
from kinsim.ops.op import Op

#: One measurement in this many is held out of the fit.
HOLD_OUT_EVERY = 5

#: Fewest usable measurements a kernel kind needs.
MIN_POINTS = 4

#: (start, lower bound, upper bound, scale) of each term, SI units.
TERM_BOUNDS: dict[str, tuple[float, float, float, float]] = {
    "kernel_floor": (3e-6, 0.0, 1e-4, 1e-6),
    "combine_floor": (1e-6, 0.0, 1e-4, 1e-6),
    "per_sequence": (1e-8, 0.0, 1e-5, 1e-6),
    "item_cost": (1e-6, 0.0, 1e-4, 1e-6),
    "memory_max": (0.85, 0.05, 1.0, 1.0),
    "compute_max": (0.7, 0.05, 1.0, 1.0),
    "item_compute_share": (0.5, 0.01, 1.0, 1.0),
    "item_bandwidth": (5e10, 1e8, 1e13, 1e9),
    "l2_bandwidth_ratio": (2.0, 1.0, 10.0, 1.0),
    "flops_half": (1e9, 0.0, 1e13, 1e9),
    "bytes_half": (1e6, 0.0, 1e10, 1e6),
    "overlap_loss": (0.1, 0.0, 1.0, 1.0),
}

#: Terms fitted per kernel kind; the others keep their defaults (or the hardware file's constants).
FREE_TERMS: dict[str, tuple[str, ...]] = {
    "attention_decode": ("kernel_floor", "combine_floor", "per_sequence", "item_cost", "memory_max",
                         "item_bandwidth", "l2_bandwidth_ratio"),
    "attention_decode_fp8kv": ("kernel_floor", "combine_floor", "per_sequence", "item_cost", "memory_max",
                               "item_bandwidth", "l2_bandwidth_ratio"),
    "attention_sparse": ("kernel_floor", "combine_floor", "per_sequence", "item_cost", "memory_max",
                         "item_bandwidth", "l2_bandwidth_ratio"),
    "attention_prefill": ("kernel_floor", "combine_floor", "per_sequence", "item_cost", "compute_max",
                          "item_compute_share", "memory_max", "l2_bandwidth_ratio", "overlap_loss"),
    "attention_prefill_fp8kv": ("kernel_floor", "combine_floor", "per_sequence", "item_cost", "compute_max",
                                "item_compute_share", "memory_max", "l2_bandwidth_ratio", "overlap_loss"),
    "gemm": ("kernel_floor", "combine_floor", "item_cost", "compute_max", "item_compute_share", "memory_max",
             "item_bandwidth", "overlap_loss"),
    "selection": ("kernel_floor", "per_sequence", "memory_max", "item_bandwidth"),
    "elementwise": ("kernel_floor", "memory_max", "item_bandwidth", "l2_bandwidth_ratio"),
    "moe": ("kernel_floor", "per_sequence", "item_cost", "compute_max", "item_compute_share", "memory_max",
            "item_bandwidth"),
}

#: Traffic of the (small, large) protocols of each all-reduce implementation; NCCL's in-switch protocol
#: (NVLS) is a third one, fitted where the fabric has it.
ALLREDUCE_PROTOCOLS = {"nccl": ("ring", "ring"), "custom": ("oneshot", "ring")}


@dataclass
class KernelFit:
    """The fitted terms of one kernel kind or all-reduce implementation (``None`` when too few
    measurements: ``skipped`` says why), with the measurements that were rejected and the free terms no
    measurement depended on (kept at their defaults)."""

    kernel: str
    curve: KernelCurveSpec | CollectiveCurveSpec | None
    rejected: list[str] = field(default_factory=list)
    skipped: str = ""
    unused: list[str] = field(default_factory=list)


def _constants(hw: HardwareSpec, kernel: str) -> tuple[float, float]:
    op = Op(name="probe", op_class="other", kernel=OP_KERNEL.get(kernel, kernel), dtype="bf16")
    constant = ConstantEfficiency(hw.efficiency)
    return constant.compute(op), constant.memory(op)


def held_out_mask(order_key: np.ndarray) -> np.ndarray:
    """Every fifth row in order of ``order_key`` (stable), as a boolean mask."""
    order = np.argsort(order_key, kind="stable")
    held = np.zeros(len(order), dtype=bool)
    held[order[HOLD_OUT_EVERY - 1::HOLD_OUT_EVERY]] = True
    return held


def _possible(rows, hw: HardwareSpec) -> np.ndarray:
    """Rows not faster than the datasheet ceilings (a warm-L2 row is only checked against the peak)."""
    time = rows["time_s"].to_numpy(dtype=float)
    flops = rows["flops"].to_numpy(dtype=float)
    nbytes = rows["bytes"].to_numpy(dtype=float)
    slack = 1 + 1e-9
    ok = flops <= row_peaks(rows, hw) * time * slack
    warm = warm_bytes(rows)
    cold = np.ones(len(rows), dtype=bool) if warm is None else ~np.isfinite(warm)
    return ok & (~cold | (nbytes <= hw.gpu.memory.bandwidth * time * slack))


def _least_cost(residuals, start, free, scales, bounds):
    """The solution of lower squared cost of two least-squares runs: from ``start``, and from the same point
    with every share (a term bounded by 1) at 0.95. Where rows leave two shares nearly interchangeable (the
    whole GPU's ``compute_max`` and a tile's ``item_compute_share`` bind together on grids of whole waves),
    the solver can stop at a point of twice the cost of the truth from one start (synthetic GEMM rows with
    SciPy 1.17); starting saturated it comes down the other side."""
    from scipy.optimize import least_squares

    saturated = np.array([0.95 / scale if TERM_BOUNDS[name][2] == 1.0 else x
                          for name, x, scale in zip(free, start, scales)])
    runs = [least_squares(residuals, x0, bounds=bounds, x_scale="jac", max_nfev=400) for x0 in (start, saturated)]
    return min(runs, key=lambda run: run.cost).x


def fit_kernel(kernel: str, rows, hw: HardwareSpec, elementwise: KernelCurveSpec | None = None) -> KernelFit:
    """Fit one kernel kind's terms to its measurement rows (a DataFrame of one implementation).

    ``elementwise``: the fitted elementwise curve, which prices the query quantization that fp8-KV
    attention rows include (:func:`~kinsim.calibration.rows.query_quantize_s`)."""

    possible = _possible(rows, hw)
    rejected = [f"{kernel}: {r.flops:.3g} FLOPs, {r.bytes:.3g} bytes in {r.time_s * 1e6:.3g} us is faster than "
                "the ceilings allow" for r in rows[~possible].itertuples(index=False)]
    rows = rows[possible]
    if len(rows) < MIN_POINTS:
        return KernelFit(kernel, None, rejected, skipped=f"{kernel}: {len(rows)} usable measurements, at least "
                         f"{MIN_POINTS} are needed: the hardware file's constant efficiencies stay")
    compute_constant, memory_constant = _constants(hw, kernel)
    free = [name for name in FREE_TERMS[kernel] if name != "l2_bandwidth_ratio" or warm_bytes(rows) is not None]
    base = KernelCurveSpec(compute_max=compute_constant, memory_max=memory_constant, kernel_floor=0.0)
    time = rows["time_s"].to_numpy(dtype=float)
    peak = row_peaks(rows, hw)
    key = rows["flops"].to_numpy(dtype=float) + rows["bytes"].to_numpy(dtype=float) * peak / hw.gpu.memory.bandwidth
    held = held_out_mask(key)
    train = ~held if held.sum() and (~held).sum() >= MIN_POINTS else np.ones(len(rows), dtype=bool)
    scales = np.array([TERM_BOUNDS[n][3] for n in free])

    def curve_of(x) -> KernelCurveSpec:
        values = {name: float(min(v, 1.0)) if TERM_BOUNDS[name][2] == 1.0 else float(v)
                  for name, v in zip(free, x * scales)}
        return replace(base, **values)

    train_rows = rows[train]

    def residuals(x):
        return np.log(predict_kernel(train_rows, kernel, curve_of(x), hw, elementwise) / time[train])

    start = np.array([TERM_BOUNDS[n][0] for n in free]) / scales
    # a term no row depends on (a combine floor where no row splits) would drift in the solver: it keeps
    # its default, with a note
    at_start = residuals(start)
    unused = [n for i, n in enumerate(free)
              if np.array_equal(residuals(np.where(np.arange(len(free)) == i, 0.5 * start, start)), at_start)]
    declared = list(free)
    if unused:
        free = [n for n in free if n not in unused]
        scales = np.array([TERM_BOUNDS[n][3] for n in free])
        start = np.array([TERM_BOUNDS[n][0] for n in free]) / scales
    low = np.array([TERM_BOUNDS[n][1] for n in free]) / scales
    high = np.array([TERM_BOUNDS[n][2] for n in free]) / scales
    fitted = curve_of(_least_cost(residuals, start, free, scales, (low, high)) if free else start)
    # a per-item limit fitted at its upper bound limits nothing: no such term
    unbounded = [n for n in ("item_bandwidth",) if n in free
                 and getattr(fitted, n) >= TERM_BOUNDS[n][2] * (1 - 1e-6)]
    fitted = replace(fitted, **{n: None for n in unbounded})
    scored = held if held.sum() else train
    predicted = predict_kernel(rows[scored], kernel, fitted, hw, elementwise)
    mape = float(np.mean(np.abs(predicted - time[scored]) / time[scored]))
    fixed = [n for n in ("compute_max", "memory_max") if n not in declared]
    notes = [f"{n} kept from the hardware file (never bounds this kind)" for n in fixed]
    notes += [f"{n}: no limit found" for n in unbounded]
    notes += [_unused_note(n, getattr(base, n)) for n in unused]
    note = "; ".join(notes)
    curve = replace(fitted, points=int(train.sum()), held_out_mape=mape, note=note)
    return KernelFit(kernel, curve, rejected, unused=unused)


def _unused_note(term: str, default: float) -> str:
    """The profile note of a free term that no measurement depends on (kept at ``default``)."""
    return f"{term}: no measurement depends on it (default {default})"


def fit_allreduce(impl: str, rows, hw: HardwareSpec) -> KernelFit:
    """Fit one all-reduce implementation's protocols to its rows (columns ``gpus``, ``bytes``): small and
    large message protocols, and for NCCL on a fabric that reduces in the switch, the in-switch protocol."""
    from scipy.optimize import least_squares

    name = f"allreduce_{impl}"
    rows = rows[rows["gpus"] > 1]
    if len(rows) < MIN_POINTS:
        return KernelFit(name, None, skipped=f"{name}: {len(rows)} measurements, at least {MIN_POINTS} needed")
    small, large = ALLREDUCE_PROTOCOLS.get(impl, ("ring", "ring"))
    switch = impl == "nccl" and hw.node.gpu_link.in_switch_reduction and bool((rows["gpus"] > 2).any())
    time = rows["time_s"].to_numpy(dtype=float)
    held = held_out_mask(rows["gpus"].to_numpy(dtype=float) * 1e12 + rows["bytes"].to_numpy(dtype=float))
    train = ~held

    def curve_of(x) -> CollectiveCurveSpec:
        x = [float(v) for v in x]
        extra = ({"switch_latency": x[6] * 1e-6, "switch_per_peer": x[7] * 1e-6,
                  "switch_efficiency": min(x[8], 1.0)} if switch else {})
        return CollectiveCurveSpec(small_latency=x[0] * 1e-6, small_per_peer=x[1] * 1e-6,
                                   small_efficiency=min(x[2], 1.0), small_traffic=small,
                                   large_latency=x[3] * 1e-6, large_per_peer=x[4] * 1e-6,
                                   large_efficiency=min(x[5], 1.0), large_traffic=large, **extra)

    train_rows = rows[train]

    def residuals(x):
        return np.log(predict_allreduce(train_rows, curve_of(x), hw) / time[train])

    start, low, high = [5.0, 1.0, 0.3, 15.0, 1.0, 0.7], [0, 0, 0.01, 0, 0, 0.01], [200, 50, 1, 500, 50, 1]
    if switch:
        start, low, high = start + [15.0, 1.0, 0.6], low + [0, 0, 0.01], high + [500, 50, 1]
    solution = least_squares(residuals, start, bounds=(low, high), max_nfev=4000)
    fitted = curve_of(solution.x)
    predicted = predict_allreduce(rows[held], fitted, hw)
    mape = float(np.mean(np.abs(predicted - time[held]) / time[held]))
    return KernelFit(name, replace(fitted, points=int(train.sum()), held_out_mape=mape))


#: Head dimension of every model preset (Qwen3, Llama 3.1): attention rows of other head dimensions are
#: imported and validated but not fitted by default.
PRESET_HEAD_DIM = 128


def default_rows(frame, kernel: str):
    """The rows of ``kernel`` the fit uses by default: GEMMs of the vendor library in bf16 where present,
    MoE rows in bf16 where present, then the implementation with most rows; attention rows of the presets'
    head dimension where the measurements have a ``head_dim`` column with such rows."""
    rows = frame[frame["kernel"] == OP_KERNEL.get(kernel, kernel)]
    fp8_kind = kernel.endswith("_fp8kv")
    if kernel.startswith(("attention_decode", "attention_prefill")) and "kv_dtype" in rows.columns:
        fp8kv = rows["kv_dtype"] == "fp8"  # attention over an fp8 KV cache has its own curve
        rows = rows[fp8kv] if fp8_kind else rows[~fp8kv] if (~fp8kv).any() else rows
    elif fp8_kind:
        return rows.iloc[:0]
    if not len(rows):
        return rows
    if kernel.startswith("attention") and "head_dim" in rows.columns and (rows["head_dim"] == PRESET_HEAD_DIM).any():
        rows = rows[rows["head_dim"] == PRESET_HEAD_DIM]
    if kernel == "gemm":
        vendor = rows[rows["impl"].astype(str).str.startswith("torch") & (rows["dtype"] == "bf16")]
        if len(vendor):
            return vendor
    if kernel == "moe" and (rows["dtype"] == "bf16").any():  # the bf16 kernels, as for GEMMs
        rows = rows[rows["dtype"] == "bf16"]
    impl = rows["impl"].value_counts().index[0]
    return rows[rows["impl"] == impl]


def fit_selection(frame, hw: HardwareSpec) -> tuple[np.ndarray, np.ndarray]:
    """(rows a default fit uses, rows it holds out), as boolean masks over ``frame``: the same selection,
    rejection and hold-out as :func:`fit_profile`, for the validator to report held-out error."""
    used = np.zeros(len(frame), dtype=bool)
    held = np.zeros(len(frame), dtype=bool)
    positions = {index: i for i, index in enumerate(frame.index)}
    for kernel in CALIBRATED_KERNELS:
        rows = default_rows(frame, kernel)
        if not len(rows):
            continue
        rows = rows[_possible(rows, hw)]
        peak = row_peaks(rows, hw)
        key = rows["flops"].to_numpy(dtype=float) + rows["bytes"].to_numpy(dtype=float) * peak / hw.gpu.memory.bandwidth
        where = np.array([positions[i] for i in rows.index], dtype=int)
        used[where] = True
        held[where[held_out_mask(key)]] = True
    for name in ("nccl", "custom"):
        rows = frame[(frame["kernel"] == "allreduce") & (frame["impl"] == name)]
        if not len(rows):
            continue
        rows = rows[rows["gpus"] > 1]
        where = np.array([positions[i] for i in rows.index], dtype=int)
        used[where] = True
        key = rows["gpus"].to_numpy(dtype=float) * 1e12 + rows["bytes"].to_numpy(dtype=float)
        held[where[held_out_mask(key)]] = True
    return used, held


def fit_profile(frame, hw: HardwareSpec, source: str, device: str, impl: str | None = None,
                elementwise: KernelCurveSpec | None = None) -> tuple[CalibrationSpec, list[KernelFit]]:
    """A calibration profile from measurements (a DataFrame as ``read_measurements`` returns).

    ``impl`` keeps only rows of one implementation (by default :func:`default_rows`). Shares are of the
    hardware file's datasheet peaks, so that a profile composes with the hardware file that references it.
    ``elementwise``: the elementwise curve the profile will take where the measurements have no elementwise
    rows (``--fill-from``'s, on this GPU's clock), so that the attention fits price the elementwise kernels
    inside their rows (the query's quantization, FlashAttention-2's copies) as the profile will.
    """
    fits = []
    # fitted first: it prices the query quantization inside fp8-KV attention rows and FlashAttention-2's copies
    for kernel in sorted(CALIBRATED_KERNELS, key=lambda kind: kind != "elementwise"):
        rows = frame[(frame["kernel"] == kernel) & (frame["impl"] == impl)] if impl else default_rows(frame, kernel)
        if len(rows):
            fits.append(fit_kernel(kernel, rows.reset_index(drop=True), hw, elementwise))
            if kernel == "elementwise" and fits[-1].curve is not None:  # (else the lent curve, if any)
                elementwise = fits[-1].curve
    reduce_rows = frame[frame["kernel"] == "allreduce"]
    for name in ("nccl", "custom"):
        rows = reduce_rows[reduce_rows["impl"] == name]
        if len(rows):
            fits.append(fit_allreduce(name, rows.reset_index(drop=True), hw))
    if all(fit.curve is None for fit in fits):
        raise ValueError(f"no kernel kind has {MIN_POINTS} usable measurements: "
                         + "; ".join(fit.skipped for fit in fits))
    _lend_combine_floors(fits)
    profile = CalibrationSpec(source=source, device=device, clock=hw.gpu.compute.clock,
                              attention_kernels=hw.gpu.attention_kernels,
                              **{fit.kernel: fit.curve for fit in fits if fit.curve is not None})
    return profile, fits


#: The decode kind whose combine floor a prefill kind takes where none of its rows splits: FlashAttention's
#: split-KV combine is one kernel for both (FA2's ``flash_fwd_splitkv_combine_kernel``, FA3's combine), and a
#: prefill call splits only when it is decode-like (one new token per sequence; FlashAttention-2 never
#: splits a prompt, so the A100's context rows never run it).
COMBINE_FROM = {"attention_prefill": "attention_decode", "attention_prefill_fp8kv": "attention_decode_fp8kv"}


def _lend_combine_floors(fits: list[KernelFit]) -> None:
    """Give each prefill kind whose rows never split (``combine_floor`` unused) the combine floor its decode
    kind fitted (:data:`COMBINE_FROM`), in place, with a note."""
    by_kind = {fit.kernel: fit for fit in fits if fit.curve is not None}
    for kind, source in COMBINE_FROM.items():
        fit, lender = by_kind.get(kind), by_kind.get(source)
        if fit is None or "combine_floor" not in fit.unused or lender is None or "combine_floor" in lender.unused:
            continue
        floor = lender.curve.combine_floor
        note = fit.curve.note.replace(
            _unused_note("combine_floor", fit.curve.combine_floor),
            f"combine_floor: {source}'s (the same combine kernel; no measurement here splits)")
        fit.curve = replace(fit.curve, combine_floor=floor, note=note)
        fit.unused = [name for name in fit.unused if name != "combine_floor"]


#: Curve kinds that price attention kernels: their op model's structure is per family of attention kernels
#: (``gpu.attention_kernels``), so another GPU's curves of these carry over only from the same family.
ATTENTION_KINDS = ("attention_decode", "attention_decode_fp8kv", "attention_sparse", "attention_prefill",
                   "attention_prefill_fp8kv")


def fill_missing(profile: CalibrationSpec, other: CalibrationSpec, label: str) -> tuple[CalibrationSpec, list[str]]:
    """``profile`` with the kinds it has no curve for taken from ``other``, a profile fitted on another GPU,
    as ``calibration: {from: ...}`` would apply them to this one (the terms counted in cycles scaled by the
    two clocks, :meth:`~kinsim.hardware.spec.CalibrationSpec.on_clock`), each with a note saying so, and the
    kinds filled. Attention kinds are taken only from a profile fitted on the same attention kernels.

    For a GPU whose tables lack some kinds (aiconfigurator-core's A100 tables have no MoE or quantization
    rows): a filled kind is as good as the transfer from ``other``'s GPU, no better."""
    moved = other.on_clock(profile.clock) if profile.clock is not None else other
    same_attention = (other.attention_kernels or "flash3") == (profile.attention_kernels or "flash3")
    filled, changes = [], {}
    for kind in (*CALIBRATED_KERNELS, "allreduce_nccl", "allreduce_custom"):
        curve = getattr(moved, kind)
        if getattr(profile, kind) is not None or curve is None or (kind in ATTENTION_KINDS and not same_attention):
            continue
        note = f"transferred from {other.device} ({label}): no measurements of this kind here"
        changes[kind] = replace(curve, note=f"{note}; {curve.note}" if curve.note else note)
        filled.append(kind)
    if not filled:
        return profile, []
    source = f"{profile.source}; {', '.join(filled)} transferred from {other.device} ({label})"
    return replace(profile, source=source, **changes), filled
