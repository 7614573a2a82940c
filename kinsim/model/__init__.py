"""Model architectures: the spec, presets, Hugging Face configs."""

from kinsim.model.load import expand_model_ref, load_model
from kinsim.model.presets import PRESETS
from kinsim.model.spec import ModelSpec, MoESpec

__all__ = ["PRESETS", "ModelSpec", "MoESpec", "expand_model_ref", "load_model"]
