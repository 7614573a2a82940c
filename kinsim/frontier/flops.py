"""FLOPs and Kinetics eFLOPs of one task (a problem's prompt and the samples generated for it) for the
samples' real lengths.

The paper's cost (arXiv 2506.05333) is ``eFLOPs = compute FLOPs + I x memory bytes``. ``I`` is a
parameter, :data:`PAPER_INTENSITY` = 562.5 FLOP/byte by default: the paper's value, B200's dense fp8 peak
(4.5 PFLOP/s) over its HBM bandwidth (8 TB/s) (``kinsim.cost.kinetics.intensity(b200, "fp8")``). *FLOPs*
below is the compute part alone (linear layers, attention, block selection), the cost FLOP-based scaling
laws count.

Notation as in :mod:`kinsim.cost.kinetics`: ``P`` active parameters, ``D`` KV elements per token (2 x
kv_heads x head_dim x layers), ``r`` query heads per KV head, ``b`` bytes per KV element, prompt ``L``
tokens, sample ``i`` of the task generating ``l_i`` tokens. Sums over decode steps are integrals, as in
the paper's closed forms (``sum_t (L + t) = L l + l^2 / 2``); prefill and weight reads are left out, as
in the paper.

dense, samples of unequal length:
    linear ``2 P sum_i l_i``; attention ``2 r D sum_i (L l_i + l_i^2 / 2)``; KV bytes
    ``b D (L max_i l_i + sum_i l_i^2 / 2)``. The prompt's KV is shared by the task's samples and read once
    per step while any sample still generates, that is for ``max_i l_i`` steps; each sample reads its own
    generated KV. With every ``l_i = l`` this is :func:`~kinsim.cost.kinetics.kinetics_dense_cost`
    exactly: ``b L D l + (b / 2) N D l^2``.
block_topk, budget ``B = top_k x block_size + local_window + sink_tokens``, blocks of ``s`` tokens:
    per sample, attention ``2 r D A_i`` FLOPs and ``b D A_i`` bytes with ``A_i = integral_0^l_i min(B, L +
    t) dt``; selection ``r D (L l_i + l_i^2 / 2) / s`` FLOPs and ``(b / 2) D (L l_i + l_i^2 / 2) / s``
    bytes. Each sample selects its own blocks, so nothing is shared. Equal lengths give
    :func:`~kinsim.cost.kinetics.kinetics_block_topk_cost` exactly. Offloading (``offload``) is not seen:
    eFLOPs count HBM bytes as if every block were resident.
topk (oracle token top-k, budget ``token_budget``):
    as block top-k without the selection terms (the oracle finds its tokens for free).
sliding_window (``window + sink_tokens`` tokens):
    as top-k with that budget: each sample reads its own window (the prompt leaves it as it slides).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from kinsim.cost.kinetics import KineticsBreakdown
from kinsim.dtypes import bytes_per_element
from kinsim.model.spec import ModelSpec
from kinsim.ops.attention import token_cap
from kinsim.workload.spec import AttentionPolicy, BlockTopKAttention, DenseAttention

#: The paper's ``I``, FLOP/byte: B200's dense fp8 peak, 4.5 PFLOP/s, over its HBM bandwidth, 8 TB/s.
PAPER_INTENSITY = 562.5


def attended_tokens(budget: float, prompt_tokens: float | np.ndarray, output_tokens: np.ndarray) -> np.ndarray:
    """``integral_0^l min(budget, L + t) dt`` for each ``l`` of ``output_tokens`` (and ``L`` of
    ``prompt_tokens``, one or one per sample): KV tokens a sample with a budget of ``budget`` tokens reads
    over its generation, token-steps."""
    lengths = np.asarray(output_tokens, dtype=np.float64)
    prompts = np.asarray(prompt_tokens, dtype=np.float64)
    linear = np.clip(budget - prompts, 0.0, lengths)  # steps before the context reaches the budget
    return prompts * linear + linear**2 / 2 + (lengths - linear) * budget


def _sample_terms(model: ModelSpec, attention: AttentionPolicy, prompts: np.ndarray,
                  lengths: np.ndarray) -> dict[str, np.ndarray]:
    """Per-sample FLOPs and bytes, the shared prompt's KV reads of dense attention left out."""
    p, d = float(model.params_active), float(model.kv_elements_per_token)
    r, b = float(model.gqa_ratio), bytes_per_element(model.kv_dtype)
    context = prompts * lengths + lengths**2 / 2  # token-steps of full context
    terms = {"linear_flops": 2 * p * lengths}
    budget = token_cap(attention)  # KV tokens a sparse policy reads per step; None for dense (all of them)
    if budget is None:
        terms.update(attention_flops=2 * r * d * context, kv_bytes=b * d * lengths**2 / 2)
        return terms
    attended = attended_tokens(budget, prompts, lengths)
    terms.update(attention_flops=2 * r * d * attended, kv_bytes=b * d * attended)
    if isinstance(attention, BlockTopKAttention):
        terms.update(selection_flops=r * d * context / attention.block_size,
                     selection_bytes=b / 2 * d * context / attention.block_size)
    return terms


def _prompt_read_bytes(model: ModelSpec, prompt_tokens: float | np.ndarray, steps: float | np.ndarray):
    """Bytes of a shared dense prompt's KV read once per step for ``steps`` steps."""
    return bytes_per_element(model.kv_dtype) * float(model.kv_elements_per_token) * prompt_tokens * steps


def task_cost(model: ModelSpec, attention: AttentionPolicy, prompt_tokens: float,
              output_tokens: Sequence[float] | np.ndarray, intensity: float = PAPER_INTENSITY) -> KineticsBreakdown:
    """FLOPs and eFLOPs (``.compute_flops``, ``.eflops``) of one task: a prompt of ``prompt_tokens`` and
    samples of ``output_tokens`` tokens each (module docstring)."""
    lengths = np.asarray(output_tokens, dtype=np.float64)
    if lengths.size == 0:
        raise ValueError("a task needs at least one sample")
    terms = {key: float(value.sum()) for key, value in
             _sample_terms(model, attention, np.float64(prompt_tokens), lengths).items()}
    if isinstance(attention, DenseAttention):
        terms["kv_bytes"] += _prompt_read_bytes(model, float(prompt_tokens), float(lengths.max()))
    return KineticsBreakdown(intensity=intensity, linear_flops=terms["linear_flops"],
                             attention_flops=terms["attention_flops"],
                             selection_flops=terms.get("selection_flops", 0.0), kv_bytes=terms["kv_bytes"],
                             selection_bytes=terms.get("selection_bytes", 0.0))


def single_sample_costs(model: ModelSpec, attention: AttentionPolicy, prompt_tokens: np.ndarray,
                        output_tokens: np.ndarray, intensity: float = PAPER_INTENSITY) -> tuple[np.ndarray, np.ndarray]:
    """(FLOPs, eFLOPs) of each sample as a task of its own (N = 1: a long chain of thought), vectorised:
    ``task_cost(model, attention, L_i, [l_i])`` for every ``i``."""
    prompts = np.asarray(prompt_tokens, dtype=np.float64)
    lengths = np.asarray(output_tokens, dtype=np.float64)
    terms = _sample_terms(model, attention, prompts, lengths)
    kv = terms["kv_bytes"] + (_prompt_read_bytes(model, prompts, lengths)
                              if isinstance(attention, DenseAttention) else 0.0)
    flops = terms["linear_flops"] + terms["attention_flops"] + terms.get("selection_flops", 0.0)
    return flops, flops + intensity * (kv + terms.get("selection_bytes", 0.0))
