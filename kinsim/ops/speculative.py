"""Operators of speculative decoding's verify pass, and the draft model's KV footprint.

A verify pass runs the target over ``k + 1`` query tokens per decoding sequence: the sequence's newest
token and its ``k`` draft tokens. A sequence with ``c`` tokens cached attends causally: its query ``i``
(``i = 0..k``) sees ``c + i + 1`` tokens, as a decode step at context ``c + i`` would. Per layer, on one GPU:

* FLOPs ``flops_per_key x sum_{i=0..k} attended(c + i)`` (``attended`` under the target's policy:
  :func:`kinsim.ops.attention.decode_tokens_read`);
* KV bytes read once per sequence, for its largest window: ``attended(c + k)`` tokens (the queries share one
  pass over the cache; with ``prefix_shared_read`` a group's shared prompt is read once per group);
* query bytes read, output bytes written and the K and V written: ``k + 1`` times a decode step's;
* block top-k: the block selection runs once per query token (each query picks its own blocks): blocks
  scored ``sum_i floor((c + i) / block)`` for ``n (k + 1)`` queries.

The kernel is the decode kernel (one work item per sequence and KV head, the ``k + 1`` queries packed
into its rows, as FlashAttention's decode does with a short query).

Draft passes are ordinary decode attention (:func:`kinsim.ops.attention.decode_attention_ops`) at contexts
``c + i``, ``i = 0..k-1``.
"""

from __future__ import annotations

import numpy as np

from kinsim.model.spec import ModelSpec
from kinsim.ops.attention import (
    AttentionDims,
    _prefix_reread,
    block_selection_op_of,
    decode_attention_ops_of,
    model_attention_dims,
)
from kinsim.ops.op import Op
from kinsim.workload.spec import (
    AttentionPolicy,
    BlockTopKAttention,
    DenseAttention,
    SlidingWindowAttention,
    TopKAttention,
)


def tokens_read(policy: AttentionPolicy, context: np.ndarray) -> np.ndarray:
    """KV tokens a decode query reads for sequences with ``context`` tokens cached (integers, any shape):
    :func:`kinsim.ops.attention.decode_tokens_read` in int64, so that sums of them are exact."""
    attended = np.asarray(context, dtype=np.int64) + 1
    if isinstance(policy, DenseAttention):
        return attended
    if isinstance(policy, BlockTopKAttention | TopKAttention):
        return np.minimum(attended, int(policy.token_budget))
    if isinstance(policy, SlidingWindowAttention):
        return np.minimum(attended, int(policy.window + policy.sink_tokens))
    raise TypeError(f"unknown attention policy {policy!r}")


def verify_attention_ops(dims: AttentionDims, policy: AttentionPolicy, context: np.ndarray, k: int, *,
                         shared_prefix: np.ndarray | None = None, group_index: np.ndarray | None = None,
                         prefix_shared_read: bool = False, count: int = 1) -> list[Op]:
    """The verify pass's attention ops (and block selection) for sequences with ``context`` tokens cached
    (integers, shape ``(steps, n)``), each verifying ``k`` draft tokens; FLOPs and bytes have shape
    ``(steps,)``. Every total is summed in integers (exact whatever the order)."""
    context = np.asarray(context, dtype=np.int64)
    n = context.shape[-1]
    attended = sum(tokens_read(policy, context + i).sum(axis=-1) for i in range(k + 1)).astype(float)
    read = tokens_read(policy, context + k).sum(axis=-1).astype(float)
    if prefix_shared_read and isinstance(policy, DenseAttention) and shared_prefix is not None:
        read = read - _prefix_reread(shared_prefix, group_index)
    queries = n * (k + 1)
    base = decode_attention_ops_of(dims, policy, n, attended, read, 0.0, count=count)[0]  # its kernel and shape
    # k + 1 queries per sequence: their query and output bytes and their K and V written, k + 1 times
    op = Op(name="attention_verify", op_class="attention", kernel=base.kernel, dtype=base.dtype, flops=base.flops,
            bytes_read=dims.kv_bytes_per_token * read + queries * dims.q_bytes_per_token,
            bytes_written=queries * (dims.q_bytes_per_token + dims.kv_bytes_per_token), count=count,
            shape={**base.shape, "queries": queries})
    ops = [op]
    if isinstance(policy, BlockTopKAttention):
        size = policy.block_size
        blocks = sum((context + i) // size for i in range(k + 1)).sum(axis=-1).astype(float)
        ops.append(block_selection_op_of(dims, policy, queries, blocks, count=count))
    return ops


def draft_kv_bytes_per_token(draft: ModelSpec, tensor_parallel: int) -> float:
    """KV bytes a separate draft model keeps per cached token on one GPU, all its layers: its layers x KV
    heads per GPU x head dimension x 2 (K and V) x bytes per element."""
    return model_attention_dims(draft, tensor_parallel, path="deployment.speculative.draft").kv_bytes_per_token \
        * draft.layers
