"""Pricing a whole step: the sum of its ops' times, and where the time went."""

from __future__ import annotations

from dataclasses import dataclass

from kinsim.cost.base import CostModel, OpCost
from kinsim.ops.lower import Step
from kinsim.ops.op import OP_CLASSES, Number, Op


@dataclass(frozen=True)
class PricedOp:
    """An op with the cost of one run of it."""

    op: Op
    cost: OpCost

    @property
    def total_s(self) -> Number:
        """Time of all its runs in the step (``count x time``), seconds."""
        return self.op.count * self.cost.time_s


@dataclass(frozen=True)
class StepCost:
    """A step's ops with their costs. Kernels of a step run one after another on the GPU."""

    priced: tuple[PricedOp, ...]

    @property
    def time_s(self) -> Number:
        """Step time, seconds."""
        return sum((p.total_s for p in self.priced), 0.0)

    def by_class(self) -> dict[str, Number]:
        """Seconds per op class (every class present, zero when absent)."""
        out: dict[str, Number] = {c: 0.0 for c in OP_CLASSES}
        for p in self.priced:
            out[p.op.op_class] = out[p.op.op_class] + p.total_s
        return out

    def total(self, attribute: str) -> Number:
        """Sum of ``count x attribute`` of the ops (``flops``, ``bytes``...)."""
        return sum((p.op.count * getattr(p.op, attribute) for p in self.priced), 0.0)


def price_step(step: Step, cost_model: CostModel) -> StepCost:
    """Price every op of ``step``."""
    return StepCost(tuple(PricedOp(op, cost_model.op_cost(op)) for op in step.ops))
