"""The cost models kinsim knows, by name: an explicit registry, no discovery magic."""

from __future__ import annotations

from collections.abc import Callable

from kinsim.cost.base import CostModel
from kinsim.cost.kinetics import KineticsCost
from kinsim.cost.roofline import DatasheetCost, RooflineCost
from kinsim.errors import SpecError
from kinsim.hardware.spec import HardwareSpec

COST_MODELS: dict[str, Callable[[HardwareSpec], CostModel]] = {
    "roofline": RooflineCost,
    "kinetics": KineticsCost,
    "datasheet": DatasheetCost,
}


def make_cost_model(name: str, hw: HardwareSpec) -> CostModel:
    """The cost model called ``name`` for ``hw``."""
    if name not in COST_MODELS:
        raise SpecError("unknown cost model", path="cost_model", value=name,
                        hint="one of " + ", ".join(COST_MODELS))
    return COST_MODELS[name](hw)
