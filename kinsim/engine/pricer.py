"""Step times for the engine: what a step (or a segment of decode steps) costs on one GPU of a replica.

A decode step's operators depend on the batch only through the batch size, except attention (and block
selection), which depend on each sequence's context. :class:`StepPricer` therefore prices the
context-independent operators once per batch size and the attention operators for a whole segment of
steps at once, as arrays with one entry per step. Mixed steps with prefill are lowered and priced whole.
Both paths use :func:`kinsim.ops.lower.lower_step` and the same cost model, so a segment priced at once
and the same steps priced one by one give the same figures (a test checks it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kinsim.cost.base import CostModel
from kinsim.model.spec import ModelSpec
from kinsim.ops.attention import AttentionDims, decode_attention_ops
from kinsim.ops.lower import ACT_DTYPE, StepBatch, lower_step
from kinsim.ops.op import OP_CLASSES, Op
from kinsim.ops.sharding import shard_heads
from kinsim.workload.spec import AttentionPolicy, DeploymentSpec

#: Operators whose cost depends on the sequences' contexts (priced per step of a segment).
CONTEXT_OPS = ("attention_decode", "block_selection")


@dataclass
class StepFigures:
    """Figures of ``steps`` consecutive steps, each an array of shape ``(steps,)``, per GPU.

    Attributes:
        time_s: duration of each step, seconds.
        class_s: seconds of each step per op class (keys: :data:`OP_CLASSES`).
        flops: FLOPs executed.
        hbm_bytes: bytes read from and written to HBM.
        compute_s, memory_s, network_s: busy seconds of the compute units (at their achievable rate),
            of HBM and of the links (the cost model's terms, summed over the step's ops).
    """

    time_s: np.ndarray
    class_s: dict[str, np.ndarray]
    flops: np.ndarray
    hbm_bytes: np.ndarray
    compute_s: np.ndarray
    memory_s: np.ndarray
    network_s: np.ndarray

    @property
    def steps(self) -> int:
        return len(self.time_s)


def _accumulate(ops: tuple[Op, ...] | list[Op], cost_model: CostModel, steps: int) -> StepFigures:
    zeros = np.zeros(steps)
    fig = StepFigures(zeros.copy(), {c: zeros.copy() for c in OP_CLASSES}, zeros.copy(), zeros.copy(),
                      zeros.copy(), zeros.copy(), zeros.copy())
    for op in ops:
        cost = cost_model.op_cost(op)
        n = op.count
        time = n * np.asarray(cost.time_s, dtype=float)
        fig.time_s += time
        fig.class_s[op.op_class] += time
        fig.flops += n * np.asarray(op.flops, dtype=float)
        fig.hbm_bytes += n * np.asarray(op.bytes, dtype=float) if op.collective is None else 0.0
        fig.compute_s += n * np.asarray(cost.compute_s, dtype=float)
        fig.memory_s += n * np.asarray(cost.memory_s, dtype=float)
        fig.network_s += n * np.asarray(cost.network_s, dtype=float)
    return fig


class StepPricer:
    """Prices steps of one replica's batches."""

    def __init__(self, model: ModelSpec, deployment: DeploymentSpec, policy: AttentionPolicy,
                 cost_model: CostModel) -> None:
        self.model, self.deployment, self.policy, self.cost_model = model, deployment, policy, cost_model
        shard = shard_heads(model.attention_heads, model.kv_heads, model.head_dim, deployment.tensor_parallel,
                            path="deployment.tensor_parallel")
        self.dims = AttentionDims(shard, kv_dtype=model.kv_dtype, act_dtype=ACT_DTYPE)
        self._static: dict[int, StepFigures] = {}

    def step(self, batch: StepBatch) -> StepFigures:
        """One step of any batch (decode and prefill mixed)."""
        return _accumulate(lower_step(self.model, self.deployment, self.policy, batch).ops, self.cost_model, 1)

    def decode_segment(self, context: np.ndarray, shared_prefix: np.ndarray | None = None,
                       group_index: np.ndarray | None = None) -> StepFigures:
        """Decode-only steps; ``context`` has shape ``(steps, n)``: tokens cached per sequence per step."""
        steps, n = context.shape
        static = self._static_part(n)
        ops = decode_attention_ops(self.dims, self.policy, context, shared_prefix=shared_prefix,
                                   group_index=group_index, prefix_shared_read=self.deployment.prefix_shared_read,
                                   count=self.model.layers)
        fig = _accumulate(ops, self.cost_model, steps)
        fig.time_s += static.time_s
        for c in OP_CLASSES:
            fig.class_s[c] += static.class_s[c]
        fig.flops += static.flops
        fig.hbm_bytes += static.hbm_bytes
        fig.compute_s += static.compute_s
        fig.memory_s += static.memory_s
        fig.network_s += static.network_s
        return fig

    def _static_part(self, n: int) -> StepFigures:
        """Figures of the context-independent ops of a decode step of ``n`` sequences (cached)."""
        fig = self._static.get(n)
        if fig is None:
            step = lower_step(self.model, self.deployment, self.policy, StepBatch(decode_context=np.zeros(n)))
            fig = _accumulate([op for op in step.ops if op.name not in CONTEXT_OPS], self.cost_model, 1)
            self._static[n] = fig
        return fig
