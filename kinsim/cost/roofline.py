"""The roofline cost model: an op takes the longest of its compute, memory and link times, plus its fixed
costs.

``time = max(flops / (peak x e_c), hbm_bytes / (bandwidth x e_m), link_bytes / (link_bw x e_l)) + launch
+ hops x link latency``, with the efficiencies ``e`` per kernel kind from the hardware file (or a
calibration profile). Overlap of compute and memory inside one kernel is what a well-written kernel
achieves; a kernel's launch gap is not hidden.
"""

from __future__ import annotations

import numpy as np

from kinsim.cost.base import OpCost
from kinsim.cost.collectives import collective_time
from kinsim.cost.efficiency import ConstantEfficiency, Efficiency, FittedEfficiency
from kinsim.hardware.spec import HardwareSpec
from kinsim.ops.op import Op


class RooflineCost:
    """Roofline times on ``hw``, with ``efficiency`` (default: the hardware's calibration profile where it
    has one, else the hardware file's constants)."""

    name = "roofline"

    def __init__(self, hw: HardwareSpec, efficiency: Efficiency | None = None):
        self.hw = hw
        if efficiency is None:
            efficiency = (FittedEfficiency(hw.efficiency, hw.calibration) if hw.calibration is not None
                          else ConstantEfficiency(hw.efficiency))
        self.efficiency = efficiency

    def op_cost(self, op: Op) -> OpCost:
        launch = self.hw.gpu.launch_overhead
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
