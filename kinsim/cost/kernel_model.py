"""The serving-grade kernel model: what a calibrated op costs, term by term.

For an op with ``F`` FLOPs and ``B`` HBM bytes whose kernels have the structure ``w`` of
:func:`kinsim.ops.kernel_work.kernel_work` (launches, combines, items, sequences), on a GPU with ``S``
SMs, peak rate ``P`` (the op's data type) and HBM bandwidth ``W``, and a profile curve ``c``:

    fixed   = launches x kernel_floor + combines x combine_floor + sequences x per_sequence x s
              + items x item_cost x s / S                                                 (seconds)
    compute = max(F x c / (P x e_c(F)),  ceil(items / S) x item FLOPs / (item_compute_share x P / S),
                  longest item's FLOPs / (item_compute_share x P / S),
                  [a grid in launch order of more than S items] F x c / (P x e_c(F)) + tail)
    memory  = B / (W x e_m(B))  +  B / (items x item_bandwidth)
    time    = fixed + max(compute, memory)

with ``e(w) = maximum x w / (w + half)`` (``half = 0``: the saturated share ``maximum``) and ``c`` the
op's ``KernelWork.compute_scale`` (prefill attention's exponentials; else 1). Reading the terms:

* ``kernel_floor``: a kernel's shortest duration (launch, ramp-up, tail), which a CUDA graph does not
  remove; an op pays it once per kernel it launches.
* ``item_bandwidth``: Little's law. A work item keeps a fixed number of bytes in flight, so alone it
  streams ``bytes in flight / memory latency``; ``items`` of them together reach at most ``items x
  item_bandwidth``, and the two limits add like resistances in series. A small grid therefore gets less
  than the saturated bandwidth, and on a GPU with twice the bandwidth it needs twice the items to fill it.
* ``item_compute_share``: a tile runs on one SM at a share of the SM's peak; the grid runs in waves of
  ``S`` tiles, so a grid of ``S + 1`` tiles takes two waves. Where the kernel's structure fixes the share
  (``KernelWork.tile_share``: FlashAttention-2's decode blocks, whose padded 64-row tiles a profile
  fitted on FlashAttention-3 has no term for), that share replaces the curve's.
* the launch-order ``tail`` (:func:`launch_order_tail`): where a grid starts its thread blocks in launch
  order and each group's blocks grow in work, the longest last (FlashAttention-2's causal prefill grid,
  ``KernelWork.in_launch_order``), that longest block starts only once nearly all the rest is done and then
  runs alone on its SM, so the kernel ends after its balanced time; FlashAttention-3's scheduler starts a
  head's longest tile first and has no such tail.
* ``per_sequence`` and ``item_cost``: time that grows with the sequences a kernel loops over (for prefill
  attention, its new tokens: the KV-cache write's thread block per token) and with its thread blocks
  (scheduling metadata, prologues), independent of the data; ``s`` (``KernelWork.
  item_scale``) scales them for decode attention of another head dimension than the profile's 128
  (:func:`kinsim.ops.kernel_work.head_dim_scale`), 1 otherwise.

Transfer to another GPU keeps every term as stated: shares apply to the new peaks, the fixed times are
counted in cycles of the fitted GPU's clock and scale by the clock ratio, but for a kernel floor's part
beyond the simplest kernel's and an attention thread block's ``item_cost``, memory latency in seconds
(``CalibrationSpec.on_clock``, applied by the cost model); ``item_bandwidth`` stays (same kernel design,
similar memory latency), ``item_compute_share`` applies to the new per-SM rate; where the new GPU's
engines run other attention kernels (``gpu.attention_kernels``), decode attention's ``item_bandwidth``
scales by their bytes in flight per thread block (``KernelWork.in_flight``). ``docs/calibration.md``
says what error to expect.

Two paths compute the same formula: plain floats for one step's op (the engine prices one op per step
in exact-steps mode, where numpy's scalar overhead would dominate) and arrays for a segment or a table
of measurements; fast = exact checks that they agree.

Where a curve has no ``kernel_floor`` (a profile of the first kind), the op pays the GPU's
``launch_overhead`` once, as before.
"""

from __future__ import annotations

import math

import numpy as np

from kinsim.cost.efficiency import saturating
from kinsim.hardware.spec import HardwareSpec, KernelCurveSpec
from kinsim.ops.kernel_work import KernelWork
from kinsim.ops.op import Number


def kernel_terms(curve: KernelCurveSpec, work: KernelWork, flops: Number, nbytes: Number, hw: HardwareSpec,
                 peak: float, *, warm_l2_bytes: Number | None = None) -> tuple[Number, Number, Number]:
    """(fixed, compute, memory) seconds of one run (arrays allowed).

    ``warm_l2_bytes``: only when pricing a measurement that replays one kernel without flushing L2: the
    bytes the kernel reads, so that data that fits in L2 is priced at the profile's L2 bandwidth."""
    sms = hw.gpu.compute.units
    bandwidth = hw.gpu.memory.bandwidth
    floor = hw.gpu.launch_overhead if curve.kernel_floor is None else work.launches * curve.kernel_floor
    fixed = (floor + work.combines * curve.combine_floor + work.sequences * (curve.per_sequence * work.item_scale)
             + work.items * (curve.item_cost * work.item_scale) / sms)
    items = work.items
    if (warm_l2_bytes is None and isinstance(flops, float) and isinstance(nbytes, float) and isinstance(items, float)
            and isinstance(peak, float)):  # one step's op in plain floats: numpy's scalar overhead would dominate
        if items < 1.0:
            items = 1.0
        e_c = curve.compute_max if not curve.flops_half else saturating(flops, curve.compute_max, curve.flops_half)
        compute = whole = flops * work.compute_scale / (peak * e_c)
        share = curve.item_compute_share if work.tile_share is None else work.tile_share
        if share is not None:
            item_rate = share * peak / sms
            item_flops = flops / items if work.item_flops is None else work.item_flops
            compute = max(compute, math.ceil(items / sms) * item_flops / item_rate)
            if work.longest_item_flops is not None:
                compute = max(compute, work.longest_item_flops / item_rate)
                if work.in_launch_order and items > sms:
                    tail = launch_order_tail(work.longest_item_flops, work.shortest_item_flops, item_rate,
                                             e_c * peak / sms)
                    compute = max(compute, whole + max(tail, 0.0))
        e_m = curve.memory_max if not curve.bytes_half else saturating(nbytes, curve.memory_max, curve.bytes_half)
        memory = nbytes / (bandwidth * e_m)
        if curve.item_bandwidth is not None:
            memory += nbytes / (items * (curve.item_bandwidth * work.in_flight))
        return fixed, compute, memory
    flops = np.asarray(flops, dtype=float)
    nbytes = np.asarray(nbytes, dtype=float)
    items = np.maximum(work.items, 1.0)
    # a curve without a half-saturation point is its maximum everywhere (as in the scalar path)
    e_c = curve.compute_max if not curve.flops_half else saturating(flops, curve.compute_max, curve.flops_half)
    compute = whole = flops * work.compute_scale / (peak * e_c)
    share = curve.item_compute_share if work.tile_share is None else work.tile_share
    if share is not None:
        waves = np.ceil(items / sms)
        item_flops = flops / items if work.item_flops is None else work.item_flops
        item_rate = share * peak / sms
        compute = np.maximum(compute, waves * item_flops / item_rate)
        if work.longest_item_flops is not None:
            compute = np.maximum(compute, work.longest_item_flops / item_rate)
            if np.any(work.in_launch_order):
                with np.errstate(invalid="ignore", divide="ignore"):  # (rows without work: not ordered below)
                    tail = launch_order_tail(work.longest_item_flops, work.shortest_item_flops, item_rate,
                                             e_c * peak / sms)
                ordered = (np.asarray(work.in_launch_order) > 0.0) & (items > sms)
                compute = np.where(ordered, np.maximum(compute, whole + np.maximum(tail, 0.0)), compute)
    memory_rate = bandwidth * (curve.memory_max if not curve.bytes_half else
                               saturating(nbytes, curve.memory_max, curve.bytes_half))
    if warm_l2_bytes is not None and curve.l2_bandwidth_ratio is not None:
        memory_rate = np.where(np.asarray(warm_l2_bytes) <= hw.gpu.l2_cache,
                               bandwidth * curve.l2_bandwidth_ratio, memory_rate)
    memory = nbytes / memory_rate
    if curve.item_bandwidth is not None:
        memory = memory + nbytes / (items * (curve.item_bandwidth * work.in_flight))
    return fixed, compute, memory


def launch_order_tail(longest: Number, shortest: Number, item_rate: float, sm_rate: Number) -> Number:
    """Seconds by which a grid whose thread blocks start in launch order, each group's blocks growing in work
    from ``shortest`` to ``longest`` FLOPs (the longest last), ends after its balanced time (its FLOPs at the
    whole GPU's rate); negative where it does not.

    Each SM takes the next block when it frees one, so the last block, the longest, starts about when the
    blocks still running elsewhere have on average ``remainder`` FLOPs left, and then runs alone on its SM at
    ``item_rate`` (FLOP/s: the profile's per-tile share of an SM's peak) while the balanced time had that
    remainder at ``sm_rate`` (FLOP/s: one SM's part of the whole GPU's sustained rate). The blocks' work is
    spread evenly from ``shortest`` to ``longest``; a block running at a random instant is picked in
    proportion to its length and is on average half done, so ``remainder = E[w^2] / (2 E[w]) =
    (longest^2 + longest x shortest + shortest^2) / (3 (longest + shortest))``: a third of the longest for a
    prompt without a cached prefix, half of it where every block is as long. An event-by-event schedule of
    such grids (16 to 128 row blocks a head, 8 to 128 heads, 108 SMs, the H100 prefill profile's two rates)
    ends 0.51-0.57 of the longest block's time alone after the balanced time (0.44 for 256 row blocks a head,
    more than the SMs), where this gives 0.58.
    """
    remainder = (longest * longest + longest * shortest + shortest * shortest) / (3.0 * (longest + shortest))
    return longest / item_rate - remainder / sm_rate


def kernel_time(curve: KernelCurveSpec, work: KernelWork, flops: Number, nbytes: Number, hw: HardwareSpec,
                peak: float, *, warm_l2_bytes: Number | None = None) -> Number:
    """Seconds of one run: ``fixed + max(compute, memory)``."""
    fixed, compute, memory = kernel_terms(curve, work, flops, nbytes, hw, peak, warm_l2_bytes=warm_l2_bytes)
    if curve.overlap_loss:
        return fixed + np.maximum(compute, memory) + curve.overlap_loss * np.minimum(compute, memory)
    return fixed + np.maximum(compute, memory)
