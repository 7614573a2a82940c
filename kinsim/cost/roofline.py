"""The roofline cost model: an op takes the longest of its compute, memory and link times, plus its fixed
costs.

``time = max(flops / (peak x e_c), hbm_bytes / (bandwidth x e_m), link_bytes / (link_bw x e_l)) + launch
+ hops x link latency``, with the efficiencies ``e`` per kernel kind from the hardware file (or a
calibration profile). Overlap of compute and memory inside one kernel is what a well-written kernel
achieves; a kernel's launch gap is not hidden.

Where the hardware's calibration profile has serving-grade terms for a kernel kind (a ``kernel_floor``)
the op is priced by :mod:`kinsim.cost.kernel_model` instead (kernels per op, per-kernel floor, the
in-flight law, per-sequence costs), and an all-reduce by :mod:`kinsim.cost.collective_model` where the
profile has terms for its implementation. ``datasheet`` is the plain roofline: the hardware file's
constant efficiencies, whatever profile it references.
"""

from __future__ import annotations

import numpy as np

from kinsim.cost.base import OpCost
from kinsim.cost.collective_model import allreduce_time, choose_allreduce, multinode_latency
from kinsim.cost.collectives import collective_time, group_bandwidth
from kinsim.cost.efficiency import ConstantEfficiency, Efficiency, FittedEfficiency
from kinsim.cost.kernel_model import kernel_terms
from kinsim.hardware.spec import CalibrationSpec, HardwareSpec
from kinsim.ops.kernel_work import copy_op, kernel_work
from kinsim.ops.op import Op


class RooflineCost:
    """Roofline times on ``hw``, with ``efficiency`` (default: the hardware's calibration profile where it
    has one, else the hardware file's constants)."""

    name = "roofline"

    def __init__(self, hw: HardwareSpec, efficiency: Efficiency | None = None):
        self.hw = hw
        self.profile: CalibrationSpec | None = None
        if efficiency is None and hw.calibration is not None:
            self.profile = hw.calibration.on_clock(hw.gpu.compute.clock)  # fixed times in this GPU's cycles
        if efficiency is None:
            efficiency = (FittedEfficiency(hw.efficiency, hw.calibration) if hw.calibration is not None
                          else ConstantEfficiency(hw.efficiency))
        self.efficiency = efficiency

    def op_cost(self, op: Op) -> OpCost:
        launch = self.hw.gpu.launch_overhead
        profile = self.profile
        if profile is not None:
            calibrated = self._calibrated_cost(op, profile)
            if calibrated is not None:
                return calibrated
        if op.collective is not None:
            network, hop_latency, _ = collective_time(op.collective, self.hw, self.efficiency.link(op),
                                                      op.collective.algorithm)
            if op.collective.gpus == 1:
                return OpCost(time_s=0.0 * network)
            return OpCost(time_s=network + hop_latency + launch, network_s=network, latency_s=hop_latency + launch)
        compute = op.flops / (self.hw.peak(op.dtype) * self.efficiency.compute(op))
        memory = op.bytes / (self.hw.gpu.memory.bandwidth * self.efficiency.memory(op))
        if isinstance(compute, float) and isinstance(memory, float):
            longest = compute if compute >= memory else memory  # scalars: no array machinery
        else:
            longest = np.maximum(compute, memory)
        return OpCost(time_s=longest + launch, compute_s=compute, memory_s=memory, latency_s=launch)

    def _calibrated_cost(self, op: Op, profile: CalibrationSpec) -> OpCost | None:
        """The serving-grade cost of ``op`` where the profile has terms for it, else ``None``."""
        hw = self.hw
        collective = op.collective
        if collective is not None:
            if collective.kind != "allreduce" or collective.gpus == 1:
                return None
            chosen = choose_allreduce(collective.implementation, collective.bytes, collective.gpus, hw)
            other = "nccl" if chosen == "custom" else "custom"
            curve = profile.allreduce(chosen) or profile.allreduce(other)
            if curve is None:
                return None
            # over several nodes: the ring's bandwidth of kinsim.cost.collectives, no in-switch reduction,
            # one node's peers' latency and the network's (collective_model.multinode_latency)
            bandwidth, _ = group_bandwidth(hw, collective.gpus)
            if collective.gpus <= hw.node.gpus:
                network, latency = allreduce_time(curve, collective.bytes, collective.gpus, bandwidth,
                                                  hw.node.gpu_link.in_switch_reduction)
            else:
                peers, network_latency = multinode_latency(hw, collective.gpus)
                network, latency = allreduce_time(curve, collective.bytes, collective.gpus, bandwidth, False,
                                                  latency_peers=peers)
                latency = latency + network_latency
            return OpCost(time_s=network + latency, network_s=network, latency_s=latency)
        curve = profile.curve_for(op.kernel, op.shape.get("kv_bytes_per_element"))
        if curve is None or curve.kernel_floor is None:
            return None
        work = kernel_work(op, hw.gpu.compute.units, hw.gpu.attention_kernels, profile.attention_kernels or "flash3")
        fixed, compute, memory = kernel_terms(curve, work, op.flops, op.bytes, hw, hw.peak(op.dtype))
        copies = work.copies
        # copy kernels besides the op's own (KernelWork.copies), priced as elementwise ops (np.any of a float costs
        # about 3 us: a one-step op's plain float is tested as such)
        if copies != 0.0 if isinstance(copies, float) else np.any(copies):
            fixed = fixed + copies * self.op_cost(copy_op(work.copy_bytes)).time_s
        if isinstance(compute, float) and isinstance(memory, float) and isinstance(fixed, float):
            longest = compute if compute >= memory else memory
            if curve.overlap_loss:
                longest += curve.overlap_loss * (memory if compute >= memory else compute)
        else:
            longest = np.maximum(compute, memory)
            if curve.overlap_loss:
                longest = longest + curve.overlap_loss * np.minimum(compute, memory)
        return OpCost(time_s=fixed + longest, compute_s=compute, memory_s=memory, latency_s=fixed)


class DatasheetCost(RooflineCost):
    """The plain roofline: the hardware file's constant efficiencies and launch overhead, ignoring any
    calibration profile (the simple model, for comparison)."""

    name = "datasheet"

    def __init__(self, hw: HardwareSpec):
        super().__init__(hw, ConstantEfficiency(hw.efficiency))
