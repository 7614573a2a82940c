"""Shares of the peak rates kernels reach, per kernel kind.

:class:`ConstantEfficiency` reads the hardware file's ``efficiency`` section (defaults are documented
estimates). A calibration profile replaces it with curves fitted to measured kernels.
"""

from __future__ import annotations

from typing import Protocol

from kinsim.hardware.spec import EfficiencySpec
from kinsim.ops.op import Number, Op


class Efficiency(Protocol):
    def compute(self, op: Op) -> Number:
        """Share of the peak FLOP rate ``op`` reaches."""
        ...

    def memory(self, op: Op) -> Number:
        """Share of the HBM bandwidth ``op`` reaches."""
        ...

    def link(self, op: Op) -> Number:
        """Share of the link bandwidth a collective reaches."""
        ...


class ConstantEfficiency:
    """One compute and one memory efficiency per kernel kind, from an :class:`EfficiencySpec`."""

    def __init__(self, spec: EfficiencySpec) -> None:
        self.spec = spec
        self._compute = {
            "gemm": spec.gemm_compute,
            "attention_decode": spec.attention_compute,
            "attention_prefill": spec.attention_compute,
            "attention_sparse": spec.attention_compute,
            "selection": spec.attention_compute,
            "elementwise": spec.elementwise_memory,
            "collective": 1.0,
        }
        self._memory = {
            "gemm": spec.gemm_memory,
            "attention_decode": spec.attention_memory,
            "attention_prefill": spec.attention_memory,
            "attention_sparse": spec.sparse_attention_memory,
            "selection": spec.sparse_attention_memory,
            "elementwise": spec.elementwise_memory,
            "collective": spec.elementwise_memory,
        }

    def compute(self, op: Op) -> float:
        return self._compute[op.kernel]

    def memory(self, op: Op) -> float:
        return self._memory[op.kernel]

    def link(self, op: Op) -> float:
        return self.spec.link
