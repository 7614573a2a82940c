"""The paged KV cache of one replica: capacity, blocks per sequence, shared prompt blocks.

Capacity (per GPU of the replica, all GPUs of a tensor-parallel group hold the same number of blocks)::

    kv bytes  = what the serving engine leaves (kinsim.engine.memory_budget) - sliding-window reserve
    blocks    = floor(kv bytes / (kv_block_size x resident KV bytes per token per GPU))

:mod:`kinsim.engine.memory_budget` takes the memory CUDA exposes, the weights on one GPU, the engine's
profiling peak (activations of the largest step, the sampler over ``max_num_seqs`` sequences) and the
memory outside PyTorch (workspaces, collective buffers), as each engine applies
``deployment.gpu_memory_fraction``. A model with sliding-window layers (gpt-oss) counts its full-attention
layers in a token's KV bytes; the windows of the others come off the top (:func:`window_reserve_bytes`).

Sharing (Best-of-N): the whole blocks of a group's prompt (``floor(P / block) x block`` tokens) are held
once per replica while any member is resident; each member holds private blocks for the rest of its
tokens, starting with its own copy of the prompt's partial last block (copy-on-write, made when the
member is admitted). Sliding-window attention keeps at most the window (plus sink tokens, plus one
partly filled block) per sequence and shares nothing.

Block top-k with ``offload`` keeps the full KV in host memory (``host_bytes_per_token`` per GPU) and in HBM,
per sequence, at most ``window_blocks`` blocks of full KV (the sink tokens, the local window with the last
incomplete selection block, and the GPU cache of recently selected blocks) plus the summaries (mean keys)
of its complete selection blocks, paged like KV: a block of ``block_bytes`` holds ``summaries_per_block`` of
them. It shares nothing either. So a sequence of ``t`` tokens holds::

    min(ceil(t / kv_block_size), window_blocks) + ceil(floor(t / selection_block) / summaries_per_block)

blocks, and the scheduler's arithmetic (blocks per sequence as a function of its tokens) is unchanged.

Speculative decoding with a separate draft model (``deployment.speculative.draft``): the draft caches its
own KV for every token the target caches, so a block's bytes grow by the draft's KV bytes per token x
``kv_block_size``, and the draft's weights (split over ``tp``) come out of the KV memory with the target's.
A self draft reads the target's own cache: nothing more. The verify pass's ``k + 1`` slots per sequence
are scratch that the step frees; only accepted tokens take blocks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from kinsim.dtypes import bytes_per_element
from kinsim.engine.memory_budget import GIB, kv_budget_bytes, memory_fraction, overhead_bytes, visible_bytes
from kinsim.errors import SpecError
from kinsim.hardware.spec import HardwareSpec
from kinsim.model.spec import ModelSpec
from kinsim.ops.attention import model_attention_dims, resident_kv_bytes_per_token
from kinsim.ops.offload import offloads
from kinsim.ops.speculative import draft_kv_bytes_per_token
from kinsim.units import readable_quantity
from kinsim.workload.spec import AttentionPolicy, BlockTopKAttention, DeploymentSpec, SlidingWindowAttention

#: Share of the blocks kept free when admitting new sequences (vLLM's watermark), so that running
#: sequences can grow without immediate preemption.
WATERMARK = 0.01


@dataclass(frozen=True)
class KVLayout:
    """Block arithmetic of one replica.

    Attributes:
        block_size: tokens per block.
        total_blocks: blocks in the cache (every GPU of the replica holds the same blocks; under
            data-parallel attention, the groups' blocks together, each group's GPUs holding their own).
        block_bytes: bytes of one block on one GPU (including block top-k summaries).
        gpus: GPUs that hold one block: the replica's (tensor parallel), or one attention group's under
            data-parallel attention (whose groups hold different sequences); a block's bytes on all of them
            are ``gpus x`` its per-GPU bytes.
        window_blocks: most blocks of full KV a sequence holds under a sliding window or with offloaded
            block top-k, else ``None``.
        shares_prompt: whether a group's whole prompt blocks are shared.
        summaries_per_block: with offloaded block top-k, selection-block summaries one block holds (its
            summaries are paged apart from its KV); else ``None`` (summaries, if any, are in ``block_bytes``).
        selection_block: tokens per selection block (block top-k), for counting summaries.
        host_bytes_per_token: host memory one cached token's full KV takes, per GPU, all layers (bytes; 0
            unless the KV is offloaded). The replica needs ``gpus x`` that; the node's host memory is shared
            by its GPUs. The scheduler holds it to the host share (:mod:`kinsim.engine.host_tier`).
    """

    block_size: int
    total_blocks: int
    block_bytes: float
    gpus: int
    window_blocks: int | None = None
    shares_prompt: bool = True
    summaries_per_block: int | None = None
    selection_block: int = 1
    host_bytes_per_token: float = 0.0

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
            full = min(-(-tokens // self.block_size), self.window_blocks)
            if self.summaries_per_block is None:
                return full
            return full + -(-(tokens // self.selection_block) // self.summaries_per_block)
        return -(-(tokens - shared_tokens) // self.block_size)

    def private_blocks(self, tokens, shared_tokens):
        """Private blocks of a sequence with ``tokens`` in its KV (int or integer array)."""
        if self.window_blocks is not None:
            tokens = np.asarray(tokens)
            full = np.minimum(-(-tokens // self.block_size), self.window_blocks)
            if self.summaries_per_block is None:
                return full
            return full + -(-(tokens // self.selection_block) // self.summaries_per_block)
        return -(-(np.asarray(tokens) - shared_tokens) // self.block_size)


def weight_bytes_per_gpu(model: ModelSpec, deployment: DeploymentSpec) -> float:
    """Weight bytes on one GPU of a replica: all of them over ``tensor_parallel`` GPUs, or, under
    data-parallel attention, the routed experts over all the replica's GPUs and every other weight over one
    group's (each group holds its own copy)."""
    tp, ranks = deployment.tensor_parallel, deployment.attention_data_parallel
    if ranks == 1 or model.moe is None:
        return model.weight_bytes / tp
    experts = model.moe_layers * model.moe.experts * model.expert_params * bytes_per_element(model.expert_weight_dtype)
    return experts / tp + (model.weight_bytes - experts) / (tp // ranks)


def kv_layout(model: ModelSpec, deployment: DeploymentSpec, policy: AttentionPolicy, hw: HardwareSpec, *,
              workload_file: str | None = None, hardware_file: str | None = None) -> KVLayout:
    """The KV layout of one replica, or :class:`SpecError` when the model leaves no room for KV (naming
    ``workload_file`` and ``hardware_file`` where given)."""
    tp, ranks = deployment.tensor_parallel, deployment.attention_data_parallel
    dims = model_attention_dims(model, tp, ranks=ranks)
    shard = dims.shard
    layer_kv = dims.kv_bytes_per_token  # one token, one layer, one GPU
    layers = model.full_attention_layers  # a model's sliding-window layers hold a bounded window instead
    per_token = layer_kv * layers
    offload = offloads(policy)
    if offload:  # summaries are paged apart from the KV (see the module docstring)
        resident = per_token
    else:
        resident = resident_kv_bytes_per_token(per_token, policy, shard.kv_heads, shard.head_dim, layers,
                                               model.kv_dtype)
    draft = deployment.speculative.draft if deployment.speculative is not None else None
    if draft is not None:  # a separate draft model caches its own KV for every token the target caches
        resident += draft_kv_bytes_per_token(draft, tp)
    block_bytes = resident * deployment.kv_block_size
    weights = weight_bytes_per_gpu(model, deployment)
    if draft is not None:
        weights += draft.weight_bytes / tp
    budget = kv_budget_bytes(model, deployment, hw, weights)
    free = budget - window_reserve_bytes(model, deployment, layer_kv)
    # under data-parallel attention each group's GPUs hold their own sequences' blocks: the replica's pool is
    # the groups' together, a block on tp / ranks GPUs
    blocks = int(free // block_bytes) * ranks if free > 0 else 0
    if blocks < 1:
        reserve = budget - free
        windows = f" ({reserve / GIB:.2f} GiB of it for the sliding-window layers)" if reserve else ""
        if deployment.kv_cache_memory is not None:
            raise SpecError(
                f"holds no KV block of {block_bytes / 1e6:.2f} MB per GPU{windows}", path="deployment.kv_cache_memory",
                value=readable_quantity("bytes", deployment.kv_cache_memory), file=workload_file,
                hint="give the KV cache per GPU as the server's log states it, or leave it out to estimate it")
        on = f"{hw.name} ({hardware_file})" if hardware_file else hw.name
        raise SpecError(
            f"the model ({model.name}, {model.weight_dtype} weights) does not fit on the GPUs of {on}: of "
            f"{visible_bytes(hw) / GIB:.1f} GiB visible per GPU (hw gpu.memory.capacity "
            f"{hw.gpu.memory.capacity / GIB:.1f} GiB) the {deployment.engine} engine leaves {budget / GIB:.2f} GiB "
            f"for KV{windows} at deployment.gpu_memory_fraction {memory_fraction(deployment, hw):g}, after "
            f"{weights / GIB:.1f} GiB of weights (split over deployment.tensor_parallel {tp} GPUs) and "
            f"{overhead_bytes(model, deployment) / GIB:.1f} GiB of activations and runtime buffers: no room for one "
            f"KV block of {block_bytes / 1e6:.2f} MB",
            path="deployment.tensor_parallel", value=tp, file=workload_file,
            hint="raise deployment.tensor_parallel, use hardware with more gpu.memory.capacity, a smaller model "
                 "(model) or a lower deployment.max_num_batched_tokens")
    window_blocks = None
    if isinstance(policy, SlidingWindowAttention):
        window_blocks = -(-(policy.window + policy.sink_tokens) // deployment.kv_block_size) + 1
    if offload:
        page = deployment.kv_block_size
        summary_bytes = shard.kv_heads * shard.head_dim * bytes_per_element(model.kv_dtype) * layers
        return KVLayout(page, blocks, block_bytes, tp // ranks, offloaded_blocks(policy, page), shares_prompt=False,
                        summaries_per_block=int(block_bytes // summary_bytes), selection_block=policy.block_size,
                        host_bytes_per_token=per_token)
    return KVLayout(deployment.kv_block_size, blocks, block_bytes, tp // ranks, window_blocks,
                    shares_prompt=window_blocks is None)


def window_reserve_bytes(model: ModelSpec, deployment: DeploymentSpec, layer_kv: float) -> float:
    """Bytes per GPU set aside for the KV of a model's sliding-window layers (0 without them): each of
    ``max_num_seqs`` sequences keeps, in each such layer, the blocks that cover its window,
    ``ceil(window / kv_block_size) + 1`` of them (the window straddles a block boundary); ``layer_kv``: one
    token's KV in one layer on one GPU.

    vLLM's hybrid KV-cache manager pages both kinds of layer from one pool and frees a sliding layer's
    blocks once they leave the window; kinsim's blocks count the full-attention layers, and the windows
    come off the pool up front, as many as the replica could run at once."""
    if not model.sliding_window_layers:
        return 0.0
    block = deployment.kv_block_size
    tokens = (-(-model.sliding_window // block) + 1) * block
    return deployment.max_num_seqs * model.sliding_window_layers * tokens * layer_kv


def offloaded_blocks(policy: BlockTopKAttention, page: int) -> int:
    """Most blocks (of ``page`` tokens) of full KV a sequence keeps in HBM when block top-k offloads its KV:
    the sink, ``ceil(s / page)``; the local window with the last incomplete selection block (fewer than
    ``block_size`` tokens), at most ``ceil((w + block_size) / page) + 1`` blocks as they may straddle block
    boundaries; and the GPU cache, ``gpu_cache_blocks x block_size / page`` (a selection block is whole
    pages)."""
    sink = -(-policy.sink_tokens // page)
    recent = -(-(policy.local_window + policy.block_size) // page) + 1
    return sink + recent + policy.gpu_cache_blocks * (policy.block_size // page)
