"""Attention operators for each policy, in decode and in prefill, on one GPU for one layer.

Notation (per GPU): ``hq`` query heads, ``hkv`` KV heads, ``d`` head dimension, ``b_kv`` bytes per KV
element, ``b_a`` bytes per activation element. A decode sequence with ``c`` tokens cached attends over
``c + 1`` tokens (its cache and the new token).

Decode, per sequence, for ``n`` tokens of KV read:

* FLOPs ``4 hq d n`` (``q.k`` and ``p.v``, a multiply-add each per head dimension);
* KV bytes read ``2 hkv d b_kv n``; query read and output written ``hq d b_a`` each; the new token's K
  and V written ``2 hkv d b_kv``.

Tokens read per policy: ``dense`` all ``c + 1`` (with ``prefix_shared_read`` a group's shared prompt is
read once per group); ``block_topk`` ``min(c + 1, top_k x block + local + sink)``; ``topk`` ``min(c + 1,
budget)``; ``sliding_window`` ``min(c + 1, window + sink)``.

Block top-k adds a selection op per step: the mean key of each of the ``floor(c / block)`` complete blocks
is read (``hkv d b_kv`` bytes each) and scored against every query head (``2 d`` FLOPs per block and
query head), and the fp32 scores are written and read back for the top-k (``2 x 4 hq`` bytes per block).

Prefill is dense for every policy but ``sliding_window`` (sparse selection is a decode-time technique).
A chunk of ``q`` new tokens after ``c`` cached ones is causal: FLOPs ``4 hq d sum_i min(c + i, w)`` with
``w`` unbounded except for a sliding window. Every tile of 128 query rows reads the keys up to its last row,
but the tiles of one KV head run together (FlashAttention-3's tile scheduler orders them so that a KV head
stays in L2), so HBM serves each key once per chunk: KV bytes ``2 hkv d b_kv (q + min(c, w))``. Counting
the re-reads as HBM traffic instead priced multi-head prefill (one tile per query head) up to 58% too slow
against the H100 tables, where measured throughput is the same with or without grouped queries.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from kinsim.dtypes import bytes_per_element
from kinsim.ops.kernel_work import FLASH2_TILE_ROWS
from kinsim.ops.op import Number, Op
from kinsim.ops.sharding import HeadShard, shard_heads
from kinsim.workload.spec import (
    AttentionPolicy,
    BlockTopKAttention,
    DenseAttention,
    SlidingWindowAttention,
    TopKAttention,
)

#: Query rows per tile of a flash-attention prefill kernel (FlashAttention-3's, a KV head's query heads packed).
PREFILL_QUERY_TILE = 128


@dataclass(frozen=True)
class AttentionDims:
    """Per-GPU attention sizes and data types.

    ``v_dim``: dimensions of a value head where they differ from ``shard.head_dim`` (the query and key
    heads'); ``shared_kv``: keys and values are one cached tensor of ``head_dim`` per KV head (multi-head
    latent attention's latent, which decode attends over as both); ``prefill``: the form prefill attention
    takes where it differs (multi-head latent attention projects the latent up to a key and a value per
    query head and runs multi-head attention on them, :func:`model_attention_dims`); ``ranks``: groups of
    data-parallel attention (``deployment.attention_data_parallel``), each attending for its own share of
    the batch, taken as even: an op of these dims is one GPU's, over ``1 / ranks`` of the sequences,
    tokens and keys it is given."""

    shard: HeadShard
    kv_dtype: str = "bf16"
    act_dtype: str = "bf16"
    v_dim: int = 0
    shared_kv: bool = False
    prefill: AttentionDims | None = None
    ranks: int = 1

    @property
    def value_dim(self) -> int:
        """Dimensions of one value head."""
        return self.v_dim or self.shard.head_dim

    @property
    def kv_bytes_per_token(self) -> float:
        """K and V bytes of one token for one layer on this GPU."""
        width = self.shard.head_dim if self.shared_kv else self.shard.head_dim + self.value_dim
        return self.shard.kv_heads * width * bytes_per_element(self.kv_dtype)

    @property
    def fresh_kv_bytes_per_token(self) -> float:
        """K and V bytes of one new token as the projection writes them (activation type), which the
        KV-cache write reads before it stores them as :attr:`kv_bytes_per_token`."""
        return self.kv_bytes_per_token * bytes_per_element(self.act_dtype) / bytes_per_element(self.kv_dtype)

    @property
    def q_bytes_per_token(self) -> float:
        """Query (or output) bytes of one token for one layer on this GPU."""
        return self.shard.q_heads * self.shard.head_dim * bytes_per_element(self.act_dtype)

    @property
    def flops_per_key(self) -> float:
        """FLOPs of one query token against one key, all query heads of this GPU: a multiply-add per
        dimension of ``q.k`` and of ``p.v``."""
        return 2.0 * self.shard.q_heads * (self.shard.head_dim + self.value_dim)

    @property
    def prefill_form(self) -> AttentionDims:
        """The dims prefill attention runs with (``prefill``, else these)."""
        return self.prefill or self


def model_attention_dims(model, tp: int, *, act_dtype: str = "bf16", path: str = "deployment.tensor_parallel",
                         ranks: int = 1) -> AttentionDims:
    """The attention dims of one GPU of a replica of ``model`` (a :class:`~kinsim.model.ModelSpec`) under
    tensor parallelism ``tp``, its GPUs in ``ranks`` groups of data-parallel attention (each splitting the
    heads over ``tp / ranks`` GPUs).

    Grouped-query attention: the model's heads split as :func:`~kinsim.ops.sharding.shard_heads` says.
    Multi-head latent attention (``model.mla``), as vLLM and SGLang run it: decode attends with the query
    heads of this GPU, absorbed into the latent, over the cached ``kv_lora + rope`` latent of each token as
    one KV head that is both key and value (values ``kv_lora`` wide), replicated on every GPU of the
    replica; prefill projects the latent up and runs multi-head attention with ``qk_nope + rope`` query and
    key dimensions and ``v_head_dim`` value dimensions per head."""
    mla = model.mla
    tp //= ranks
    if mla is None:
        shard = shard_heads(model.attention_heads, model.kv_heads, model.head_dim, tp, path=path)
        return AttentionDims(shard, kv_dtype=model.kv_dtype, act_dtype=act_dtype, ranks=ranks)
    heads = shard_heads(model.attention_heads, model.attention_heads, mla.qk_head_dim, tp, path=path)
    prefill = AttentionDims(heads, kv_dtype=act_dtype, act_dtype=act_dtype, v_dim=mla.v_head_dim, ranks=ranks)
    latent = HeadShard(heads.q_heads, 1, mla.latent_width, tp)
    return AttentionDims(latent, kv_dtype=model.kv_dtype, act_dtype=act_dtype, v_dim=mla.kv_lora_rank,
                         shared_kv=True, prefill=prefill, ranks=ranks)


@dataclass(frozen=True)
class PrefillChunk:
    """``tokens`` prompt tokens computed this step after ``cached`` tokens already in the KV cache;
    ``completes_prompt`` when this chunk ends the prompt (the sequence then needs logits)."""

    tokens: int
    cached: int = 0
    completes_prompt: bool = True


def decode_tokens_read(policy: AttentionPolicy, context: Number) -> Number:
    """KV tokens one decode step reads for a sequence with ``context`` tokens cached (any shape)."""
    attended = np.asarray(context, dtype=float) + 1.0
    cap = token_cap(policy)
    return attended if cap is None else np.minimum(attended, cap)


def decode_attention_ops(
    dims: AttentionDims,
    policy: AttentionPolicy,
    context: Number,
    *,
    shared_prefix: np.ndarray | None = None,
    group_index: np.ndarray | None = None,
    prefix_shared_read: bool = False,
    count: int = 1,
    model_window: bool = False,
    call_queries: int = 1,
) -> list[Op]:
    """Decode attention (and block top-k selection) for sequences with ``context`` tokens cached.

    ``context`` has shape ``(n,)`` for one step or ``(steps, n)`` for a segment; FLOPs and bytes then have
    shape ``()`` or ``(steps,)``. ``shared_prefix`` and ``group_index`` (shape ``(n,)``) give each
    sequence's shared prompt length and group, used when ``prefix_shared_read`` and the policy is dense.
    ``model_window``: the ops of a model's own sliding-window layers (``policy`` their window), named
    ``attention_decode_window`` and run by the dense kernel over the window (FlashAttention's local window),
    not by a sparse-attention kernel. ``call_queries``: the longest query of the attention call the decodes run
    in (a mixed step runs them in one call with its prompts: the longest chunk; 1 for a decode step), which
    decides how FlashAttention-2 runs them (:func:`kinsim.ops.kernel_work.kernel_work`).
    """
    context = np.asarray(context, dtype=float)
    n = context.shape[-1]
    attended = decode_tokens_read(policy, context).sum(axis=-1)
    read = attended
    if prefix_shared_read and isinstance(policy, DenseAttention) and shared_prefix is not None:
        read = attended - _prefix_reread(shared_prefix, group_index)
    blocks = None
    if isinstance(policy, BlockTopKAttention):
        blocks = np.floor(context / policy.block_size).sum(axis=-1)
    return decode_attention_ops_of(dims, policy, n, attended, read, blocks, count=count, model_window=model_window,
                                   call_queries=call_queries)


def _prefix_reread(shared_prefix, group_index) -> float:
    """Shared prompt tokens read more than once per group (what ``prefix_shared_read`` saves)."""
    prefix = np.asarray(shared_prefix, dtype=float)
    _, first = np.unique(np.asarray(group_index), return_index=True)
    return prefix.sum() - prefix[first].sum()


def decode_run_totals(policy: AttentionPolicy, context: np.ndarray, steps: int, *,
                      shared_prefix: np.ndarray | None = None, group_index: np.ndarray | None = None,
                      prefix_shared_read: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """What :func:`decode_attention_ops` reads of a segment's contexts, in closed form.

    The batch decodes ``steps`` steps from ``context`` (integers, shape ``(n,)``): at step ``k`` sequence
    ``i`` has ``context[i] + k`` tokens cached. Returns, per step (shape ``(steps,)``), the tokens attended
    summed over the sequences, the tokens read (less the shared prompt read again, with
    ``prefix_shared_read``) and, for block top-k, the complete blocks scored; the same numbers as
    :func:`decode_attention_ops` computes from the ``(steps, n)`` matrix of contexts, in ``O(n + steps)``.

    Every sum is of whole numbers below 2**53, done in integers (or in floats, which hold such numbers
    exactly), so the results are exact and equal the matrix's sums whatever their order: a segment priced
    here and its steps priced one by one agree to the last bit (the engine's fast = exact rule).
    """
    c = np.asarray(context, dtype=np.int64)
    n = c.shape[0]
    cap = token_cap(policy)
    if cap is None:  # sum(c) + n (k + 1), in floats: whole numbers below 2**53, the same values
        first = float(int(c.sum()) + n)
        attended = np.array([first]) if steps == 1 else first + float(n) * step_indices(steps)
    else:  # min(c + 1 + k, cap): sequences reach the cap at step cap - (c + 1)
        k = np.arange(steps, dtype=np.int64)
        steps_to_cap = np.clip(cap - (c + 1), 0, None)
        order = np.argsort(steps_to_cap, kind="stable")
        reach = steps_to_cap[order]
        below = np.concatenate(([0], np.cumsum((c + 1)[order])))
        capped = np.searchsorted(reach, k, side="right")  # sequences at the cap by step k
        attended = ((below[-1] - below[capped]) + (n - capped) * k + capped * cap).astype(float)
    read = attended
    if prefix_shared_read and isinstance(policy, DenseAttention) and shared_prefix is not None:
        read = attended - _prefix_reread(shared_prefix, group_index)
    blocks = None
    if isinstance(policy, BlockTopKAttention):
        size = policy.block_size
        # floor((c + k) / size) grows by one at the steps where (c + k) % size == 0
        counts = np.bincount(c % size, minlength=size)
        grows = counts[(-np.arange(1, steps, dtype=np.int64)) % size]
        blocks = ((c // size).sum() + np.concatenate(([0], np.cumsum(grows)))).astype(float)
    return attended, read, blocks


#: Step indices 0, 1, ... as floats (read-only), cut to a segment's length by :func:`step_indices`.
_STEP_INDEX = np.arange(4096, dtype=float)
_STEP_INDEX.flags.writeable = False


def step_indices(steps: int) -> np.ndarray:
    """``0.0, 1.0, .. steps - 1`` (a read-only view of a shared array where it is long enough: a segment's
    per-step arithmetic reads it every segment)."""
    return _STEP_INDEX[:steps] if steps <= len(_STEP_INDEX) else np.arange(steps, dtype=float)


def token_cap(policy: AttentionPolicy) -> int | None:
    """Most KV tokens a decode step reads per sequence (``None``: all of them)."""
    if isinstance(policy, DenseAttention):
        return None
    if isinstance(policy, BlockTopKAttention | TopKAttention):
        return int(policy.token_budget)
    if isinstance(policy, SlidingWindowAttention):
        return int(policy.window + policy.sink_tokens)
    raise TypeError(f"unknown attention policy {policy!r}")


def decode_attention_ops_of(dims: AttentionDims, policy: AttentionPolicy, n: int, attended: Number, read: Number,
                            blocks: Number | None, count: int = 1, model_window: bool = False,
                            call_queries: int = 1) -> list[Op]:
    """The decode attention ops of ``n`` sequences from their totals (per step): ``attended`` tokens
    attended over all sequences, ``read`` tokens read from HBM (``attended`` less a shared prompt read once
    per group) and, for block top-k, ``blocks`` complete blocks scored. ``model_window`` and ``call_queries``:
    as for :func:`decode_attention_ops`; the shape says them (``window``, ``call_queries``) only where they are
    not the plain decode step's. Under data-parallel attention (``dims.ranks``) the op is one group's
    even share of them."""
    if dims.ranks > 1:
        ranks = float(dims.ranks)
        n, attended, read = n / ranks, attended / ranks, read / ranks
        blocks = None if blocks is None else blocks / ranks
    sparse = not model_window and isinstance(policy, BlockTopKAttention | TopKAttention | SlidingWindowAttention)
    ops = [Op(
        name="attention_decode_window" if model_window else "attention_decode",
        op_class="attention",
        kernel="attention_sparse" if sparse else "attention_decode",
        dtype=dims.act_dtype,
        flops=dims.flops_per_key * attended,
        bytes_read=dims.kv_bytes_per_token * read + n * dims.q_bytes_per_token,
        bytes_written=n * (dims.q_bytes_per_token + dims.kv_bytes_per_token),
        count=count,
        shape={"batch": n, "q_heads": dims.shard.q_heads, "kv_heads": dims.shard.kv_heads,
               "head_dim": dims.shard.head_dim, "kv_tokens_read": read,
               "kv_bytes_per_element": bytes_per_element(dims.kv_dtype)},
    )]
    if model_window and isinstance(policy, SlidingWindowAttention):
        ops[0].shape["window"] = policy.window
    if call_queries > 1:
        ops[0].shape["call_queries"] = call_queries
    if isinstance(policy, BlockTopKAttention):
        ops.append(block_selection_op_of(dims, policy, n, blocks, count=count))
    return ops


def block_selection_op(dims: AttentionDims, policy: BlockTopKAttention, context: Number, count: int = 1) -> Op:
    """Scoring every complete block's mean key against the queries, and the top-k over the scores
    (:func:`block_selection_op_of` for the contexts ``context``)."""
    context = np.asarray(context, dtype=float)
    return block_selection_op_of(dims, policy, context.shape[-1], np.floor(context / policy.block_size).sum(axis=-1),
                                 count=count)


def block_selection_op_of(dims: AttentionDims, policy: BlockTopKAttention, n: int, blocks: Number,
                          count: int = 1) -> Op:
    """Block selection for ``n`` sequences with ``blocks`` complete blocks in all.

    A block's score is summed over the query heads of a KV head's group, so each KV head keeps its own
    blocks (the attention op reads the same number of tokens for every KV head) and one fp32 score per
    block and KV head is written and read back, as the reference kernel does
    (``kinsim/calibration/kernels/attention.py``)."""
    shard = dims.shard
    summary_bytes = shard.kv_heads * shard.head_dim * bytes_per_element(dims.kv_dtype)
    score_bytes = 4.0 * shard.kv_heads
    return Op(
        name="block_selection",
        op_class="selection",
        kernel="selection",
        dtype=dims.act_dtype,
        flops=2.0 * shard.q_heads * shard.head_dim * blocks,
        bytes_read=summary_bytes * blocks + score_bytes * blocks + n * dims.q_bytes_per_token,
        bytes_written=score_bytes * blocks,
        count=count,
        shape={"batch": n, "blocks_scored": blocks, "block_size": policy.block_size, "top_k": policy.top_k},
    )


def _sum_min_linear(start: int, count: int, cap: int | None) -> int:
    """``sum_{i=1..count} min(start + i, cap)`` (``cap`` ``None``: no cap), in whole numbers."""
    if cap is None:
        return count * start + count * (count + 1) // 2
    linear = min(max(cap - start, 0), count)
    return linear * start + linear * (linear + 1) // 2 + (count - linear) * cap


def prefill_attention_op(
    dims: AttentionDims, policy: AttentionPolicy, chunks: Sequence[PrefillChunk], count: int = 1,
    model_window: bool = False,
) -> Op:
    """Causal attention of prefill chunks (one variable-length kernel for all of them); ``model_window``:
    the op of a model's own sliding-window layers, named ``attention_prefill_window``.

    Counted in Python integers, chunk by chunk: a step has a few chunks, for which NumPy's per-call cost
    would dominate, and whole-number sums are exact whatever their order."""
    dims = dims.prefill_form
    window = None
    if isinstance(policy, SlidingWindowAttention):
        window = int(policy.window + policy.sink_tokens)
    keys = kv_tokens_read = tokens = cached_total = packed_tiles = row_blocks = 0
    # FlashAttention-3 packs the query heads of a KV head into a tile's rows (PackGQA): a chunk of q tokens
    # is ceil(q x group / 128) tiles per KV head, in whole numbers (group = q_heads / kv_heads);
    # FlashAttention-2 runs ceil(q / 64) blocks of rows per query head
    q_heads, kv_heads = int(dims.shard.q_heads), int(dims.shard.kv_heads)
    for chunk in chunks:
        q, cached = int(chunk.tokens), int(chunk.cached)
        keys += _sum_min_linear(cached, q, window)
        packed_tiles += -(-(q * q_heads) // (kv_heads * PREFILL_QUERY_TILE))
        row_blocks += -(-q // FLASH2_TILE_ROWS)
        # the chunk's keys from HBM, once (the tiles' re-reads hit L2): its own and the cached ones in reach
        kv_tokens_read += q + (cached if window is None else min(cached, window))
        tokens += q
        cached_total += cached
    sequences = len(chunks)
    if dims.ranks > 1:  # one group's even share (AttentionDims.ranks)
        ranks = float(dims.ranks)
        keys, kv_tokens_read, tokens, cached_total = (keys / ranks, kv_tokens_read / ranks, tokens / ranks,
                                                       cached_total / ranks)
        packed_tiles, row_blocks, sequences = packed_tiles / ranks, row_blocks / ranks, sequences / ranks
    return Op(
        name="attention_prefill_window" if model_window else "attention_prefill",
        op_class="attention",
        kernel="attention_prefill",
        dtype=dims.act_dtype,
        flops=float(dims.flops_per_key * float(keys)),
        bytes_read=float(dims.kv_bytes_per_token * float(kv_tokens_read)
                         + (dims.q_bytes_per_token + dims.fresh_kv_bytes_per_token) * float(tokens)),
        bytes_written=float((dims.q_bytes_per_token + dims.kv_bytes_per_token) * float(tokens)),
        count=count,
        shape={"sequences": sequences, "tokens": float(tokens), "cached": float(cached_total),
               "tiles": float(packed_tiles), "row_blocks": float(row_blocks), "window": window or 0,
               "q_heads": dims.shard.q_heads, "kv_heads": dims.shard.kv_heads, "head_dim": dims.shard.head_dim,
               "kv_bytes_per_element": bytes_per_element(dims.kv_dtype)},
    )


def resident_kv_bytes_per_token(kv_bytes_per_token: float, policy: AttentionPolicy, kv_heads: int, head_dim: int,
                                layers: int, kv_dtype: str) -> float:
    """KV-cache bytes a token keeps resident, all layers: block top-k adds a mean key per block (the
    footprint does not shrink: every block stays resident); other policies add nothing. A sliding window
    bounds the number of resident tokens instead (see the KV manager)."""
    if isinstance(policy, BlockTopKAttention):
        return kv_bytes_per_token + kv_heads * head_dim * layers * bytes_per_element(kv_dtype) / policy.block_size
    return kv_bytes_per_token
