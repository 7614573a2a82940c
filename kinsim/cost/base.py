"""What a cost model is: something that turns an operator into seconds on one GPU."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from kinsim.ops.op import Number, Op

if TYPE_CHECKING:
    from kinsim.hardware.spec import HardwareSpec

BOUNDS = ("compute", "memory", "network", "latency")


@dataclass(frozen=True)
class OpCost:
    """Time of one run of an op, seconds, with its terms.

    ``time_s`` is what the op takes. The terms say why: ``compute_s`` (FLOPs at the achievable rate),
    ``memory_s`` (HBM bytes at the achievable bandwidth), ``network_s`` (link bytes at the achievable link
    bandwidth) and ``latency_s`` (fixed costs: kernel launch, per-hop link latency). How they combine is
    the cost model's business (the roofline overlaps the first three and adds the last).
    """

    time_s: Number
    compute_s: Number = 0.0
    memory_s: Number = 0.0
    network_s: Number = 0.0
    latency_s: Number = 0.0

    @property
    def bound(self) -> str:
        """The largest term: ``compute``, ``memory``, ``network`` or ``latency`` (scalar costs only)."""
        terms = [float(np.max(getattr(self, f"{b}_s"))) for b in BOUNDS]
        return BOUNDS[int(np.argmax(terms))]

    def terms(self) -> dict[str, Number]:
        return {"time_s": self.time_s, "compute_s": self.compute_s, "memory_s": self.memory_s,
                "network_s": self.network_s, "latency_s": self.latency_s}


class CostModel(Protocol):
    """Prices operators on the hardware it was made for."""

    name: str
    hw: HardwareSpec  #: the hardware it prices for (the engine reads the host link from it)

    def op_cost(self, op: Op) -> OpCost:
        """Time of one run of ``op``."""
        ...
