"""Operators: one forward step as kernels with FLOPs and bytes (no timing here)."""

from kinsim.ops.attention import AttentionDims, PrefillChunk, decode_attention_ops, prefill_attention_op
from kinsim.ops.lower import Step, StepBatch, decode_batch, lower_step
from kinsim.ops.op import OP_CLASSES, Collective, Op
from kinsim.ops.sharding import HeadShard, shard_heads

__all__ = [
    "OP_CLASSES", "AttentionDims", "Collective", "HeadShard", "Op", "PrefillChunk", "Step", "StepBatch",
    "decode_attention_ops", "decode_batch", "lower_step", "prefill_attention_op", "shard_heads",
]
