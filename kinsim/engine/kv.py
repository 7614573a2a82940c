"""The paged KV cache of one replica: capacity, blocks per sequence, shared prompt blocks.

Capacity (per GPU of the replica, all GPUs of a tensor-parallel group hold the same number of blocks)::

    usable    = GPU memory x gpu_memory_fraction
    kv bytes  = usable - weights / tp - activation workspace
    blocks    = floor(kv bytes / (kv_block_size x resident KV bytes per token per GPU))

The activation workspace is what a serving engine reserves for the largest step: ``max_num_batched_tokens``
rows of the widest activations (QKV, gate/up, residual) in bf16, plus fp32 logits for ``max_num_seqs``
rows. It is an estimate of vLLM's profiled peak, written out so it can be checked.

Sharing (Best-of-N): the whole blocks of a group's prompt (``floor(P / block) x block`` tokens) are held
once per replica while any member is resident; each member holds private blocks for the rest of its
tokens, starting with its own copy of the prompt's partial last block (copy-on-write, made when the
member is admitted). Sliding-window attention keeps at most the window (plus sink tokens, plus one
partly filled block) per sequence and shares nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from kinsim.dtypes import bytes_per_element
from kinsim.errors import SpecError
from kinsim.hardware.spec import HardwareSpec
from kinsim.model.spec import ModelSpec
from kinsim.ops.attention import AttentionDims, resident_kv_bytes_per_token
from kinsim.ops.lower import ACT_DTYPE, LOGIT_BYTES
from kinsim.ops.sharding import shard_heads
from kinsim.workload.spec import AttentionPolicy, DeploymentSpec, SlidingWindowAttention

#: Share of the blocks kept free when admitting new sequences (vLLM's watermark), so that running
#: sequences can grow without immediate preemption.
WATERMARK = 0.01


@dataclass(frozen=True)
class KVLayout:
    """Block arithmetic of one replica.

    Attributes:
        block_size: tokens per block.
        total_blocks: blocks in the cache (per GPU; every GPU of the replica holds the same blocks).
        block_bytes: bytes of one block on one GPU (including block top-k summaries).
        gpus: GPUs of the replica (tensor parallel); replica bytes are ``gpus x`` per-GPU bytes.
        window_blocks: most blocks a sequence holds under a sliding window, else ``None``.
        shares_prompt: whether a group's whole prompt blocks are shared.
    """

    block_size: int
    total_blocks: int
    block_bytes: float
    gpus: int
    window_blocks: int | None = None
    shares_prompt: bool = True

    @property
    def watermark_blocks(self) -> int:
        return math.ceil(WATERMARK * self.total_blocks)

    @property
    def capacity_bytes(self) -> float:
        """KV bytes the replica can hold (all its GPUs)."""
        return self.total_blocks * self.block_bytes * self.gpus

    def shared_tokens(self, prompt_tokens: int) -> int:
        """Prompt tokens held in shared blocks."""
        return (prompt_tokens // self.block_size) * self.block_size if self.shares_prompt else 0

    def private_blocks_of(self, tokens: int, shared_tokens: int) -> int:
        """:meth:`private_blocks` for one sequence, in integer arithmetic (the scheduler's hot path)."""
        if self.window_blocks is not None:
            return min(-(-tokens // self.block_size), self.window_blocks)
        return -(-(tokens - shared_tokens) // self.block_size)

    def private_blocks(self, tokens, shared_tokens):
        """Private blocks of a sequence with ``tokens`` in its KV (int or integer array)."""
        if self.window_blocks is not None:
            return np.minimum(-(-np.asarray(tokens) // self.block_size), self.window_blocks)
        return -(-(np.asarray(tokens) - shared_tokens) // self.block_size)


def activation_workspace_bytes(model: ModelSpec, deployment: DeploymentSpec) -> float:
    """Bytes per GPU reserved for activations of the largest step (see the module docstring)."""
    tp = deployment.tensor_parallel
    shard = shard_heads(model.attention_heads, model.kv_heads, model.head_dim, tp, path="deployment.tensor_parallel")
    qkv = (shard.q_heads + 2 * shard.kv_heads) * model.head_dim
    if model.moe is None:
        mlp = 2 * model.intermediate_size / tp
    else:
        mlp = 2 * model.moe.expert_intermediate_size * model.moe.active_experts
    rows = deployment.max_num_batched_tokens
    activations = rows * (2 * model.hidden_size + qkv + mlp) * bytes_per_element(ACT_DTYPE)
    logits = deployment.max_num_seqs * model.vocab_size * LOGIT_BYTES
    return activations + logits


def kv_layout(model: ModelSpec, deployment: DeploymentSpec, policy: AttentionPolicy, hw: HardwareSpec, *,
              workload_file: str | None = None, hardware_file: str | None = None) -> KVLayout:
    """The KV layout of one replica, or :class:`SpecError` when the model leaves no room for KV (naming
    ``workload_file`` and ``hardware_file`` where given)."""
    tp = deployment.tensor_parallel
    shard = shard_heads(model.attention_heads, model.kv_heads, model.head_dim, tp, path="deployment.tensor_parallel")
    per_token = AttentionDims(shard, kv_dtype=model.kv_dtype).kv_bytes_per_token * model.layers
    resident = resident_kv_bytes_per_token(per_token, policy, shard.kv_heads, shard.head_dim, model.layers,
                                           model.kv_dtype)
    block_bytes = resident * deployment.kv_block_size
    usable = hw.gpu.memory.capacity * deployment.gpu_memory_fraction
    weights = model.weight_bytes / tp
    workspace = activation_workspace_bytes(model, deployment)
    free = usable - weights - workspace
    blocks = int(free // block_bytes) if free > 0 else 0
    if blocks < 1:
        gb = 1e9
        on = f"{hw.name} ({hardware_file})" if hardware_file else hw.name
        raise SpecError(
            f"the model ({model.name}, {model.weight_dtype} weights) does not fit on the GPUs of {on}: "
            f"{usable / gb:.1f} GB usable per GPU (hw gpu.memory.capacity {hw.gpu.memory.capacity / gb:.0f} GB x "
            f"deployment.gpu_memory_fraction {deployment.gpu_memory_fraction:g}) minus {weights / gb:.1f} GB of "
            f"weights (split over deployment.tensor_parallel {tp} GPUs) and {workspace / gb:.1f} GB of activation "
            f"workspace leaves no room for one KV block of {block_bytes / 1e6:.2f} MB",
            path="deployment.tensor_parallel", value=tp, file=workload_file,
            hint="raise deployment.tensor_parallel, use hardware with more gpu.memory.capacity, a smaller model "
                 "(model) or a lower deployment.max_num_batched_tokens")
    window_blocks = None
    if isinstance(policy, SlidingWindowAttention):
        window_blocks = -(-(policy.window + policy.sink_tokens) // deployment.kv_block_size) + 1
    return KVLayout(deployment.kv_block_size, blocks, block_bytes, tp, window_blocks,
                    shares_prompt=window_blocks is None)
