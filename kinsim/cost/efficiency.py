"""Shares of the peak rates kernels reach, per kernel kind.

:class:`ConstantEfficiency` reads the hardware file's ``efficiency`` section (defaults are documented
estimates). :class:`FittedEfficiency` uses the curves of a calibration profile of the first kind (saturating curves
only, no ``kernel_floor``) for the kernel kinds it covers; curves with the serving-grade terms are priced by
:mod:`kinsim.cost.kernel_model` instead.

Fitted curves: a kernel kind's efficiency rises with its work and saturates: for ``w`` FLOPs (or HBM
bytes) ``e(w) = maximum x w / (w + half)``, so a kernel of ``w`` FLOPs takes ``(w + half) / (peak x
maximum)``: the work at the saturated rate plus a fixed cost ``half / (peak x maximum)`` that small kernels
show (too few thread blocks to fill the GPU, tails). The roofline then gives ``time = launch +
max(flops / (peak x e_c(flops)), bytes / (bandwidth x e_m(bytes)))``.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from kinsim.hardware.spec import CalibrationSpec, EfficiencySpec
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
            "moe": spec.gemm_compute,
            "attention_decode": spec.attention_compute,
            "attention_prefill": spec.attention_compute,
            "attention_sparse": spec.attention_compute,
            "selection": spec.attention_compute,
            "elementwise": spec.elementwise_memory,
            "collective": 1.0,
        }
        self._memory = {
            "gemm": spec.gemm_memory,
            "moe": spec.gemm_memory,
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


def saturating(work: Number, maximum: float, half: float) -> Number:
    """``maximum x work / (work + half)``, and ``maximum`` for no work (so that 0 / e is 0, not 0 / 0)."""
    if np.ndim(work) == 0:
        work = float(work)
        return maximum * work / (work + half) if work > 0 else maximum
    work = np.asarray(work, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(work > 0, maximum * work / (work + half), maximum)


class FittedEfficiency:
    """Efficiencies from a calibration profile's curves; kernel kinds it lacks keep the constants."""

    def __init__(self, spec: EfficiencySpec, calibration: CalibrationSpec) -> None:
        self.constant = ConstantEfficiency(spec)
        self.calibration = calibration

    def compute(self, op: Op) -> Number:
        curve = self.calibration.curve(op.kernel)
        if curve is None:
            return self.constant.compute(op)
        return saturating(op.flops, curve.compute_max, curve.flops_half)

    def memory(self, op: Op) -> Number:
        curve = self.calibration.curve(op.kernel)
        if curve is None:
            return self.constant.memory(op)
        return saturating(op.bytes, curve.memory_max, curve.bytes_half)

    def link(self, op: Op) -> Number:
        return self.constant.link(op)
