"""The Kinetics paper's additive cost model (arXiv 2506.05333), as a baseline to compare with.

The paper prices inference in *eFLOPs*: ``compute FLOPs + I x memory bytes``, with ``I`` the hardware's
peak FLOP/s over its memory bandwidth, arguing that linear-layer compute and KV-cache access do not
overlap. Dividing by the peak gives seconds: ``flops / peak + bytes / bandwidth``. Unlike kinsim's
roofline it adds the terms instead of overlapping them, assumes every kernel reaches the peak rates, and
has no launch, link or capacity costs.

:class:`KineticsCost` applies that rule op by op. :func:`kinetics_dense_cost` and
:func:`kinetics_block_topk_cost` are the paper's closed forms for a whole Best-of-N (or long-CoT, N = 1)
generation. With ``P`` active parameters, ``D`` KV elements per token (2 x kv_heads x head_dim x layers),
``r`` query heads per KV head, ``b`` bytes per KV element, ``N`` trials, prompt ``L_in`` and generation
``L_out`` tokens:

dense:
    ``2 N P L_out + 2 r N L_in D L_out + r N D L_out^2 + I (b L_in D L_out + (b/2) N D L_out^2)``
    — linear compute, attention over the prompt and over the generated tokens, KV reads with the prompt's
    KV read once per step for all N trials (it is shared) and each trial's own KV read by it. With
    ``b = 2`` this is the paper's ``2 I L_in D L_out + I N D L_out^2``.

block top-k with a budget of ``B`` tokens and blocks of ``s`` tokens, per trial and step at context
``c = L_in + t``:
    attention ``2 r D min(B, c)`` FLOPs and ``b D min(B, c)`` bytes; selection ``r D c / s`` FLOPs (one
    dot product of ``d`` per block and query head, all layers) and ``(b/2) D c / s`` bytes (one mean key
    per block and KV head, all layers). Summed over the N trials (each selects its own blocks, so the
    prompt is not shared) and over ``t`` as integrals, as the paper's ``L_out^2`` terms are: ``sum_t c =
    L_in L_out + L_out^2 / 2``. The top-k itself is not costed. Weight reads and prefill are left out, as
    in the paper.
"""

from __future__ import annotations

from dataclasses import dataclass

from kinsim.cost.base import OpCost
from kinsim.dtypes import bytes_per_element
from kinsim.hardware.spec import HardwareSpec
from kinsim.model.spec import ModelSpec
from kinsim.ops.op import Op


class KineticsCost:
    """Per-op eFLOPs time on ``hw``: ``flops / peak + bytes / bandwidth``; communication is free."""

    name = "kinetics"

    def __init__(self, hw: HardwareSpec) -> None:
        self.hw = hw

    def op_cost(self, op: Op) -> OpCost:
        if op.collective is not None:
            return OpCost(time_s=0.0 * op.collective.bytes)
        compute = op.flops / self.hw.peak(op.dtype)
        memory = op.bytes / self.hw.gpu.memory.bandwidth
        return OpCost(time_s=compute + memory, compute_s=compute, memory_s=memory)


def intensity(hw: HardwareSpec, dtype: str = "bf16") -> float:
    """The paper's ``I``: peak FLOP/s over memory bandwidth, FLOP/byte (562.5 for B200 at fp8)."""
    return hw.peak(dtype) / hw.gpu.memory.bandwidth


@dataclass(frozen=True)
class KineticsBreakdown:
    """eFLOPs of a generation by term; ``*_bytes`` are bytes, the rest FLOPs."""

    intensity: float
    linear_flops: float
    attention_flops: float
    selection_flops: float
    kv_bytes: float
    selection_bytes: float

    @property
    def compute_flops(self) -> float:
        return self.linear_flops + self.attention_flops + self.selection_flops

    @property
    def memory_bytes(self) -> float:
        return self.kv_bytes + self.selection_bytes

    @property
    def eflops(self) -> float:
        """compute FLOPs + I x memory bytes."""
        return self.compute_flops + self.intensity * self.memory_bytes

    def seconds(self, peak_flop_per_s: float) -> float:
        """The eFLOPs at ``peak_flop_per_s``."""
        return self.eflops / peak_flop_per_s


def _model_terms(model: ModelSpec) -> tuple[float, float, float, float]:
    return (float(model.params_active), float(model.kv_elements_per_token), float(model.gqa_ratio),
            bytes_per_element(model.kv_dtype))


def kinetics_dense_cost(model: ModelSpec, trials: int, prompt_tokens: float, output_tokens: float,
                        intensity: float) -> KineticsBreakdown:
    """The paper's dense Best-of-N cost (``trials = 1`` for a single long chain of thought)."""
    p, d, r, b = _model_terms(model)
    n, l_in, l_out = float(trials), float(prompt_tokens), float(output_tokens)
    return KineticsBreakdown(
        intensity=intensity,
        linear_flops=2 * n * p * l_out,
        attention_flops=2 * r * n * l_in * d * l_out + r * n * d * l_out**2,
        selection_flops=0.0,
        kv_bytes=b * l_in * d * l_out + b / 2 * n * d * l_out**2,
        selection_bytes=0.0,
    )


def _integral_min(budget: float, start: float, length: float) -> float:
    """``integral_0^length min(budget, start + t) dt``."""
    if start >= budget:
        return budget * length
    linear = min(budget - start, length)
    return start * linear + linear**2 / 2 + (length - linear) * budget


def kinetics_block_topk_cost(model: ModelSpec, trials: int, prompt_tokens: float, output_tokens: float,
                             intensity: float, budget: float, block_size: float) -> KineticsBreakdown:
    """Block top-k Best-of-N cost: attention over at most ``budget`` tokens plus block selection."""
    p, d, r, b = _model_terms(model)
    n, l_in, l_out = float(trials), float(prompt_tokens), float(output_tokens)
    attended = _integral_min(budget, l_in, l_out)
    context = l_in * l_out + l_out**2 / 2
    return KineticsBreakdown(
        intensity=intensity,
        linear_flops=2 * n * p * l_out,
        attention_flops=2 * r * n * d * attended,
        selection_flops=r * n * d * context / block_size,
        kv_bytes=b * n * d * attended,
        selection_bytes=b / 2 * n * d * context / block_size,
    )
