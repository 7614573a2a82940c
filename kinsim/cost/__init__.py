"""Cost models: the time of an operator on one GPU."""

from kinsim.cost.base import CostModel, OpCost
from kinsim.cost.collectives import collective_time
from kinsim.cost.kinetics import KineticsCost, kinetics_block_topk_cost, kinetics_dense_cost
from kinsim.cost.registry import COST_MODELS, make_cost_model
from kinsim.cost.roofline import RooflineCost
from kinsim.cost.step_cost import StepCost, price_step

__all__ = [
    "COST_MODELS", "CostModel", "KineticsCost", "OpCost", "RooflineCost", "StepCost", "collective_time",
    "kinetics_block_topk_cost", "kinetics_dense_cost", "make_cost_model", "price_step",
]
