"""Pricing measurement rows: the prediction the fitter minimises and the validator reports, in one place.

A row of a measurement file (:mod:`kinsim.calibration.measurements`) describes one kernel run: its kind,
FLOPs, bytes, data type and the shape columns that give its kernel structure (``batch``, ``context``,
``q_heads``, ``kv_heads``, ``tokens``, ``m``, ``n``, ``k``, ``experts``, ``pairs``, ``gpus``). Rows of one
kind are priced together as one op whose fields are arrays, by the same code the engine uses
(:mod:`kinsim.cost.kernel_model`, :mod:`kinsim.cost.collective_model`), so a fitted profile means the same
thing in both places.

Rows marked ``warm_l2 = 1`` were timed by replaying one kernel without flushing the L2 cache: data that
fits in L2 is then read from it, and their prediction uses the profile's ``l2_bandwidth_ratio``.
"""

from __future__ import annotations

import numpy as np

from kinsim.cost.collective_model import allreduce_time
from kinsim.cost.collectives import group_bandwidth
from kinsim.cost.kernel_model import kernel_time
from kinsim.cost.roofline import DatasheetCost, RooflineCost
from kinsim.hardware.spec import OP_KERNEL, CollectiveCurveSpec, HardwareSpec, KernelCurveSpec
from kinsim.ops.kernel_work import ATTENTION_Q_TILE, FLASH2_TILE_ROWS, copy_op, kernel_work
from kinsim.ops.lower import query_quantize
from kinsim.ops.op import Collective, Op


def _column(rows, name: str, default: float) -> np.ndarray:
    if name not in rows.columns:
        return np.full(len(rows), float(default))
    return rows[name].fillna(default).to_numpy(dtype=float)


def _q_heads(rows) -> np.ndarray:
    """Query heads of each row; where a row does not say, its KV heads (multi-head attention)."""
    q_heads = _column(rows, "q_heads", np.nan)
    return np.where(np.isnan(q_heads), _column(rows, "kv_heads", 1), q_heads)


def row_op(rows, kernel: str) -> Op:
    """One op whose FLOPs, bytes and shape are arrays over ``rows`` (all of kind ``kernel``, a curve kind:
    ``attention_decode_fp8kv`` rows are ``attention_decode`` ops)."""
    kernel = OP_KERNEL.get(kernel, kernel)
    batch = _column(rows, "batch", 1)
    context = _column(rows, "context", 1)
    shape = {
        "batch": batch, "kv_heads": _column(rows, "kv_heads", 1), "q_heads": _q_heads(rows),
        "kv_tokens_read": _column(rows, "kv_tokens_read", np.nan), "sequences": batch,
        "tokens": batch * _column(rows, "tokens", 1), "m": _column(rows, "m", 1), "n": _column(rows, "n", 1),
        "k": _column(rows, "k", 1), "head_dim": _column(rows, "head_dim", 128), "cached": np.zeros(len(rows)),
        "experts": _column(rows, "experts", 1), "pairs": _column(rows, "pairs", 1),
    }
    if "kv_dtype" in rows.columns:  # which attention kernel ran: the fp8-KV one reads 1 byte an element
        shape["kv_bytes_per_element"] = np.where((rows["kv_dtype"] == "fp8").to_numpy(), 1.0, 2.0)
    if kernel == "attention_prefill":  # batch prompts of one length: whole PackGQA tiles of each (FA3), and
        # whole 64-row blocks of each of a prompt's query heads (FA2)
        per_prompt = np.ceil(_column(rows, "tokens", 1) * shape["q_heads"] / (shape["kv_heads"] * ATTENTION_Q_TILE))
        shape["tiles"] = batch * per_prompt
        shape["row_blocks"] = batch * np.ceil(_column(rows, "tokens", 1) / FLASH2_TILE_ROWS)
    # ``context``: tokens a decode step attends over (cache and new token); a sparse row reads its budget
    attended = context
    if "top_k" in rows.columns:
        budget = (_column(rows, "top_k", np.inf) + 1) * _column(rows, "page_size", 16)
        attended = np.minimum(context, budget)
    missing = np.isnan(shape["kv_tokens_read"])
    shape["kv_tokens_read"] = np.where(missing, batch * attended, shape["kv_tokens_read"])
    flops = rows["flops"].to_numpy(dtype=float)
    nbytes = rows["bytes"].to_numpy(dtype=float)
    return Op(name="measured", op_class="other", kernel=kernel, dtype="bf16", flops=flops, bytes_read=nbytes,
              shape=shape)


def row_peaks(rows, hw: HardwareSpec) -> np.ndarray:
    """FLOP/s ceiling of each row's data type."""
    dtypes = rows["dtype"] if "dtype" in rows.columns else ["bf16"] * len(rows)
    return np.array([hw.peak(str(d)) for d in dtypes], dtype=float)


def warm_bytes(rows) -> np.ndarray | None:
    """Bytes read by each warm-L2 row (infinite for cold rows), or ``None`` when no row is warm."""
    if "warm_l2" not in rows.columns or not (rows["warm_l2"].fillna(0) > 0).any():
        return None
    read = rows["bytes_read"] if "bytes_read" in rows.columns else rows["bytes"]
    return np.where(rows["warm_l2"].fillna(0).to_numpy() > 0, read.to_numpy(dtype=float), np.inf)


def predict_kernel(rows, kernel: str, curve: KernelCurveSpec, hw: HardwareSpec,
                   elementwise: KernelCurveSpec | None = None, fitted: str | None = None) -> np.ndarray:
    """Predicted seconds of ``rows`` (one kernel kind) under ``curve``, fitted on a GPU whose attention
    kernels were ``fitted`` (``None``: ``hw``'s own); attention rows over an fp8 KV cache add the query's
    quantization kernel (:func:`query_quantize_s`, priced by ``elementwise``)."""
    op = row_op(rows, kernel)
    kernels = hw.gpu.attention_kernels
    work = kernel_work(op, hw.gpu.compute.units, kernels, fitted or kernels)
    time = np.asarray(kernel_time(curve, work, op.flops, op.bytes, hw, row_peaks(rows, hw),
                                  warm_l2_bytes=warm_bytes(rows)), dtype=float)
    return time + query_quantize_s(rows, kernel, hw, elementwise) + copies_s(work, hw, elementwise)


def copies_s(work, hw: HardwareSpec, elementwise: KernelCurveSpec | None) -> np.ndarray | float:
    """Seconds of the copy kernels the rows' ops launch besides their own (``KernelWork.copies``:
    FlashAttention-2's swapped query heads), priced as the cost model prices them: by ``elementwise``, or by
    the datasheet roofline without it."""
    if not np.any(work.copies):
        return 0.0
    return work.copies * _elementwise_s(copy_op(np.asarray(work.copy_bytes, dtype=float)), hw, elementwise)


def _elementwise_s(op: Op, hw: HardwareSpec, elementwise: KernelCurveSpec | None) -> np.ndarray:
    """Seconds of an elementwise ``op`` (fields may be arrays) as the cost model prices it: by the profile's
    ``elementwise`` curve, or by the datasheet roofline without one."""
    if elementwise is not None and elementwise.kernel_floor is not None:
        time = kernel_time(elementwise, kernel_work(op, hw.gpu.compute.units), op.flops, op.bytes, hw,
                           hw.peak(op.dtype))
    else:
        time = DatasheetCost(hw).op_cost(op).time_s
    return np.asarray(time, dtype=float)


def query_quantize_s(rows, kernel: str, hw: HardwareSpec, elementwise: KernelCurveSpec | None) -> np.ndarray:
    """Seconds of the query quantization kernel in each of ``rows`` (0 for rows that have none).

    A serving engine's attention over an fp8 KV cache quantizes the query first
    (:func:`kinsim.ops.lower.query_quantize`), and the silicon tables time the attention layer: a decode
    or prefill row with ``kv_dtype`` fp8 includes that kernel, over ``batch x tokens`` rows (one per
    sequence in decode) of ``q_heads x head_dim`` elements. Priced by ``elementwise`` (a profile's curve,
    fitted before the attention kinds), or by the datasheet roofline without one."""
    kernel = OP_KERNEL.get(kernel, kernel)
    if kernel not in ("attention_decode", "attention_prefill") or "kv_dtype" not in rows.columns:
        return np.zeros(len(rows))
    fp8 = (rows["kv_dtype"] == "fp8").to_numpy()
    if not fp8.any():
        return np.zeros(len(rows))
    tokens = _column(rows, "tokens", 1) if kernel == "attention_prefill" else np.ones(len(rows))
    elements = _column(rows, "batch", 1) * tokens * _q_heads(rows) * _column(rows, "head_dim", 128)
    (op,) = query_quantize("fp8", elements)
    return np.where(fp8, _elementwise_s(op, hw, elementwise), 0.0)


def predict_allreduce(rows, curve: CollectiveCurveSpec, hw: HardwareSpec) -> np.ndarray:
    """Predicted seconds of all-reduce ``rows`` under ``curve``."""
    out = np.empty(len(rows))
    gpus = rows["gpus"].to_numpy(dtype=int)
    nbytes = rows["bytes"].to_numpy(dtype=float)
    for p in np.unique(gpus):
        mask = gpus == p
        if p == 1:
            out[mask] = 0.0
            continue
        bandwidth, _ = group_bandwidth(hw, int(p))
        network, latency = allreduce_time(curve, nbytes[mask], int(p), bandwidth, hw.node.gpu_link.in_switch_reduction)
        out[mask] = network + latency
    return out


def predict(frame, hw: HardwareSpec, *, datasheet: bool = False) -> np.ndarray:
    """Predicted seconds of every row of ``frame`` on ``hw``: its calibration profile's terms where it has
    them, else the roofline with the hardware file's efficiencies (always so with ``datasheet``)."""
    out = np.empty(len(frame))
    profile = None if datasheet or hw.calibration is None else hw.calibration.on_clock(hw.gpu.compute.clock)
    fallback = DatasheetCost(hw) if datasheet else RooflineCost(hw)
    for kernel, rows in frame.groupby("kernel", sort=False):
        if kernel == "allreduce":
            for impl, part in rows.groupby("impl", sort=False):
                where = frame.index.get_indexer(part.index)
                curve = profile.allreduce(str(impl)) if profile is not None else None
                if curve is not None:
                    out[where] = predict_allreduce(part, curve, hw)
                else:
                    out[where] = [float(fallback.op_cost(Op(
                        name="measured", op_class="communication", kernel="collective", dtype="bf16",
                        collective=Collective("allreduce", float(r.bytes), int(r.gpus), "auto", str(impl)))).time_s)
                        for r in part.itertuples(index=False)]
            continue
        fp8kv = (rows["kv_dtype"] == "fp8").to_numpy() if "kv_dtype" in rows.columns else np.zeros(len(rows), bool)
        for part, element in ((rows[~fp8kv], 2), (rows[fp8kv], 1)):
            if not len(part):
                continue
            where = frame.index.get_indexer(part.index)
            curve = profile.curve_for(str(kernel), element) if profile is not None else None
            if curve is not None and curve.kernel_floor is not None:
                out[where] = predict_kernel(part, str(kernel), curve, hw, profile.elementwise,
                                            profile.attention_kernels or "flash3")
            else:
                out[where] = [float(np.sum(fallback.op_cost(Op(
                    name="measured", op_class="other", kernel=str(r.kernel), dtype=str(r.dtype), flops=float(r.flops),
                    bytes_read=float(r.bytes))).time_s)) for r in part.itertuples(index=False)]
    return out
