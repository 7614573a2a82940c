"""How an op runs as kernels: how many it launches, how much parallel work its main kernel has, how many
sequences it loops over. Structure, not time: the calibration profile prices these counts
(:mod:`kinsim.cost.kernel_model`).

The counts follow the kernels serving engines run (vLLM with FlashAttention-3 and cuBLAS, the kernels
that the public silicon measurements time):

* **decode attention** (dense or sparse): the attention kernel and the KV-cache write (2 launches). Work
  items are (sequence, KV head, split) triples. FlashAttention-3 splits the KV of each (sequence, KV head)
  when those alone would leave the GPU idle: with ``m = batch x kv_heads`` below 80% of the SMs, the
  context is split into ``min(ceil(SMs / m), ceil(tokens / 128), 128)`` parts, merged by a combine kernel
  (FlashAttention's ``num_splits_heuristic``, simplified to its first rule). On a GPU whose engines run
  FlashAttention-2 (``gpu.attention_kernels: flash2``, vLLM on Ampere), :func:`_flash2_decode` instead:
  vLLM's FlashAttention-2 splits only when the query heads of a KV head can be packed into the rows of
  one tile (grouped-query attention): a multi-head batch runs one thread block per (sequence, head) over
  the whole context; a grouped one splits by FlashAttention-2's full heuristic over ``2 x SMs`` slots
  (two 128-thread blocks per SM), and with two sequences or more and two KV heads or more moving the heads
  into the rows copies the query and the output (two elementwise kernels). FlashAttention-2's thread block
  keeps one 128-key tile of K or V in flight where FlashAttention-3's keeps two stages of K and V tiles of
  176 keys (:data:`IN_FLIGHT_TILE_KEYS`), so a profile fitted on one prices the other's ``item_bandwidth``
  by the ratio (``KernelWork.in_flight``).
* **prefill attention**: the attention kernel and the KV-cache write; items are (tile of 128 query
  rows, KV head) pairs, the query heads of a KV head's group packed into the rows (FlashAttention-3's
  PackGQA): a chunk of ``q`` new tokens is ``ceil(q x group / 128)`` tiles per KV head, counted chunk by
  chunk (the op's ``tiles``; from the totals where an op does not say). When those tiles would leave the
  GPU idle and a sequence spans more than 4 KV blocks, the keys are split as FlashAttention-3 does
  (:func:`_prefill_splits`), and a combine kernel merges the splits. On a FlashAttention-2 GPU the items
  are FA2's split-KV kernel's thread blocks (vLLM's paged KV cache always takes that kernel): 64 rows of
  one query head each, ``ceil(q / 64)`` per query head (the op's ``row_blocks``), never split, started in
  launch order (a head's shortest block first, so its longest starts last: FlashAttention-3's scheduler
  starts the longest first); a call whose sequences have one new token each of a grouped-query model
  swaps the heads into the rows as decode does (FA3's packed count), with its two copies. A tile's time
  per key is its tensor-core work plus the part of its softmax exponentials that does not hide under it
  (:func:`prefill_exp_scale`), so a small head dimension costs more per FLOP than a large one; the
  exponentials slow the whole GPU's rate as much as a tile's (``KernelWork.compute_scale``). The KV-cache
  write runs a thread block per new token (vLLM's ``reshape_and_cache_flash``), whatever the heads: the
  op's ``sequences`` are its tokens, priced by the profile's ``per_sequence`` (the same term as a decode
  step's, whose sequences each write one token).
* **GEMM**: one kernel over 64 x 128 output tiles; when the tiles do not fill the SMs the K dimension is
  split (at most one split per 1,024 of K) and the partial sums are reduced by a second kernel, as
  cuBLAS's split-K kernels do.
* **MoE experts** (fused): :data:`MOE_LAUNCHES` kernels; items are the gate/up grouped GEMM's tiles,
  each touched expert's rows padded to whole tiles; the sequences it loops over are the layer's
  token-expert pairs, all of them on every GPU (sorting them by expert, and the tiles of other GPUs'
  experts, which exit at once).
* **block selection**: scoring and top-k (2 launches), one item per (sequence, KV head).
* **elementwise**: one kernel; one item per 64 KiB moved.

All counts work element-wise on arrays (one entry per decode step of a segment), so a segment stays
priced in one vectorised call.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from kinsim.ops.op import Number, Op

#: Key positions per FlashAttention KV block (head dimension 128).
ATTENTION_KV_BLOCK = 128
#: Query rows per prefill attention tile.
ATTENTION_Q_TILE = 128
#: Output tile of a GEMM: rows (tokens) and columns (output features).
GEMM_TILE_M = 64
GEMM_TILE_N = 128
#: Smallest K slice of a split-K GEMM.
GEMM_SPLIT_K_SLICE = 1024
#: Most KV splits FlashAttention makes.
MAX_SPLITS = 128
#: Dense bf16 tensor-core FLOPs per softmax exponential at equal time on an H100: 4,096 FLOPs a clock per
#: SM (989.4 TFLOP/s over 132 SMs at 1.83 GHz) against 16 exponentials a clock per SM on the
#: special-function units (CUDA C++ Programming Guide, throughput of native arithmetic instructions,
#: ``exp2``, compute capability 8.x to 10.x).
TENSOR_FLOPS_PER_EXP = 256.0
#: The share of a prefill tile's exponential time that does not hide under its tensor-core work: chosen over
#: the bf16 rows of head dimensions 64, 192 and 256 of aiconfigurator-core's H100 context-attention table,
#: which the fit does not use (docs/calibration.md).
EXP_EXPOSED = 0.7
#: Kernels of a fused MoE layer: sorting the token-expert pairs by expert, the gate/up grouped GEMM, the
#: activation, the down grouped GEMM, the sum over each token's experts (vLLM's ``fused_experts``).
MOE_LAUNCHES = 5.0
#: Bytes one elementwise work item moves.
ELEMENTWISE_ITEM_BYTES = 65536.0
#: Keys of K and V a decode attention thread block keeps in flight (head dimension 128), per kernel family:
#: FlashAttention-3's Hopper kernel pipelines 2 stages of a K and a V tile of 176 keys (``tile_size_fwd_sm90``:
#: 128 x 176 tiles for head dimension 128 without a causal mask); FlashAttention-2's split-KV kernel
#: (4 warps, 128-key tiles for head dimension 128, ``run_mha_fwd_splitkv_dispatch``) loads the next K or V
#: tile while it computes on the other: one tile in flight.
IN_FLIGHT_TILE_KEYS = {"flash3": 2 * 2 * 176, "flash2": 128}
#: Query rows of a FlashAttention-2 thread block. vLLM's paged KV cache sends every call, decode or prefill,
#: to the split-KV kernel (``mha_varlen_fwd`` calls ``run_mha_fwd(..., force_split_kernel=paged_KV)``), whose
#: tile is ``kBlockM = 64`` rows by ``kBlockN = 128`` keys for head dimension 128
#: (``run_mha_fwd_splitkv_dispatch``). A decode block's tensor cores compute all 64 rows, however few queries
#: are real (one per sequence, or a group's heads); a prefill block holds 64 of one head's queries.
FLASH2_TILE_ROWS = 64
#: The share of an SM's tensor-core peak a FlashAttention-2 thread block's tiles reach: the FlashAttention-2
#: paper's lower figure for its forward pass on an A100 (50-73% of the theoretical maximum, Dao 2023,
#: abstract), the low end for a 4-warp block with 64 rows. A FlashAttention-3 profile fitted on
#: Hopper has no term for it (its decode tiles hide under their memory traffic), so the kernel's structure
#: carries it.
FLASH2_TILE_SHARE = 0.5
#: Bytes of a query or output element of FlashAttention-2's decode (bf16 activations).
FLASH2_ACTIVATION_BYTES = 2.0


def _swap_copy_bytes(sequences: Number, q_heads: Number, head_dim: Number) -> Number:
    """HBM bytes one of FlashAttention-2's swap copies moves: the query's (or the output's) elements of
    ``sequences`` one-token queries, read and written."""
    return 2.0 * sequences * q_heads * head_dim * FLASH2_ACTIVATION_BYTES
#: Head dimension of the attention rows a profile's decode terms are fitted on (every preset's but gpt-oss's).
PROFILE_HEAD_DIM = 128.0
#: How a decode attention work item's fixed costs (``item_cost``, ``per_sequence``) grow with the head
#: dimension: a thread block loads its queries and writes its outputs, rescales and sums per head
#: dimension, and has a part that does not depend on it (scheduling, barriers, the softmax over a tile).
#: Chosen over the H100 vLLM decode rows of head dimensions 64 to 512 with the 128-dimension profile
#: (bf16 / fp8 KV MAPE, exponent 0 -> 0.5 -> 1): 64: 11.5 / 17.9% -> 8.5 / 12.9% -> 10.8 / 14.6%;
#: 192: 7.1 / 13.5% -> 7.5 / 12.2% -> 9.6 / 12.8%; 256: 8.0 / 24.0% -> 8.1 / 20.0% -> 14.8 / 20.2%.
HEAD_DIM_EXPONENT = 0.5


@dataclass(frozen=True)
class KernelWork:
    """The kernel structure of one run of an op.

    Attributes:
        launches: kernels launched every run (each costs at least the profile's ``kernel_floor``).
        combines: 1 where the op splits its work and merges it with an extra kernel, else 0.
        items: parallel work items (thread blocks) of the main kernel.
        sequences: sequences the kernel loops over (0 when it does not); for prefill attention, the new
            tokens, one KV-cache write thread block each (a decode sequence writes one token).
        item_flops: FLOPs one work item computes on average, padding included (``None``: the op's FLOPs
            over its items).
        longest_item_flops: FLOPs of the largest work item (``None``: the average), which bounds the
            kernel's time from below however many SMs are idle.
        in_flight: the work item's bytes in flight relative to the kernel family the profile was fitted on.
        item_scale: the per-item and per-sequence costs relative to the profile's head dimension (decode
            attention of another head size: :func:`head_dim_scale`; else 1).
        tile_share: the share of an SM's peak at which a work item computes its FLOPs where the kernel's
            structure fixes it rather than the profile (FlashAttention-2 decode: :data:`FLASH2_TILE_SHARE`);
            ``None``: the profile's ``item_compute_share``, if any.
        compute_scale: the op's FLOPs' time at the whole GPU's rate relative to their count (prefill
            attention: :func:`prefill_exp_scale`, the exponentials that do not hide; else 1).
        copies: copy kernels the op launches besides its own (FlashAttention-2's swapped query heads:
            :func:`_flash2_decode`), priced as elementwise kernels by the profile's ``elementwise`` curve.
        copy_bytes: HBM bytes each copy moves (read and written).
        in_launch_order: 1 where the grid's thread blocks start in launch order with each group's blocks
            growing in work, the longest last (FlashAttention-2's causal prefill grid: its m-block index
            varies fastest, shortest first), else 0; the kernel then ends later than a balanced schedule
            would (``kinsim.cost.kernel_model.launch_order_tail``).
        shortest_item_flops: FLOPs of a group's first (shortest) work item, where ``in_launch_order``.
    """

    launches: Number
    combines: Number
    items: Number
    sequences: Number
    item_flops: Number | None = None
    longest_item_flops: Number | None = None
    in_flight: float = 1.0
    item_scale: Number = 1.0
    tile_share: float | None = None
    compute_scale: Number = 1.0
    copies: Number = 0.0
    copy_bytes: Number = 0.0
    in_launch_order: Number = 0.0
    shortest_item_flops: Number = 0.0


def copy_op(nbytes: Number) -> Op:
    """The elementwise kernel of one of :attr:`KernelWork.copies`: it moves ``nbytes`` (a number or an array),
    half of them read and half written."""
    half = nbytes / 2.0
    return Op(name="attention_copy", op_class="attention", kernel="elementwise", dtype="bf16", bytes_read=half,
              bytes_written=half)


def prefill_exp_scale(head_dim: Number) -> Number:
    """A prefill tile's time per key for ``head_dim`` relative to its tensor-core work, as a share of the
    same at :data:`PROFILE_HEAD_DIM` (exactly 1 there, where the profile's terms are fitted).

    A query row and a key cost ``4 d`` tensor-core FLOPs and one exponential, which takes as long as
    :data:`TENSOR_FLOPS_PER_EXP` FLOPs; :data:`EXP_EXPOSED` of it is not hidden: ``(4 d + e) / (4 d)`` with
    ``e = EXP_EXPOSED x TENSOR_FLOPS_PER_EXP``, over its value at 128. Head dimension 64: x1.26; 256:
    x0.87. Only FlashAttention-3's bf16 kernel follows it: its fp8 kernel's rows of other head dimensions
    do not (its tiles change with the head dimension), so an fp8 KV cache keeps a scale of 1. The ratio is
    the H100's, kept on other GPUs: kernels of GPUs whose tensor cores outpace their exponential units by
    more (Blackwell) compute part of the exponentials on the FMA units instead (FlashAttention-4)."""
    exposed = EXP_EXPOSED * TENSOR_FLOPS_PER_EXP / 4.0
    head_dim = np.asarray(head_dim, dtype=float) if np.ndim(head_dim) else float(head_dim)
    return (1.0 + exposed / head_dim) / (1.0 + exposed / PROFILE_HEAD_DIM)


def head_dim_scale(head_dim: Number) -> Number:
    """The per-item and per-sequence costs of a decode attention kernel of ``head_dim`` (a number or an
    array), relative to one of :data:`PROFILE_HEAD_DIM`: ``(head_dim / 128) ** HEAD_DIM_EXPONENT`` (exactly
    1 for 128)."""
    if np.ndim(head_dim):
        return (np.asarray(head_dim, dtype=float) / PROFILE_HEAD_DIM) ** HEAD_DIM_EXPONENT
    head_dim = float(head_dim)
    return 1.0 if head_dim == PROFILE_HEAD_DIM else (head_dim / PROFILE_HEAD_DIM) ** HEAD_DIM_EXPONENT


def kernel_work(op: Op, sms: int, kernels: str = "flash3", fitted: str = "flash3") -> KernelWork:
    """The kernel structure of ``op`` on a GPU with ``sms`` streaming multiprocessors whose serving engines
    run the attention ``kernels`` (``gpu.attention_kernels``), priced by a profile fitted on a GPU that ran
    the ``fitted`` ones."""
    if op.kernel in ("attention_decode", "attention_sparse"):
        scale = head_dim_scale(op.shape.get("head_dim", PROFILE_HEAD_DIM))
        if np.ndim(scale) or scale != 1.0:
            return replace(_kernel_work(op, sms, kernels, fitted), item_scale=scale)
    return _kernel_work(op, sms, kernels, fitted)


def _kernel_work(op: Op, sms: int, kernels: str, fitted: str) -> KernelWork:
    shape = op.shape
    if op.kernel == "attention_decode" and (kernels, fitted) != ("flash3", "flash3"):
        in_flight = IN_FLIGHT_TILE_KEYS[kernels] / IN_FLIGHT_TILE_KEYS[fitted]
        if kernels == "flash2":
            return _flash2_decode(shape, sms, in_flight)
        # FA3's structure, another's bytes in flight
        return replace(_kernel_work(op, sms, "flash3", "flash3"), in_flight=in_flight)
    if op.kernel in ("attention_decode", "attention_sparse"):
        total = shape.get("kv_tokens_read")
        if isinstance(total, _SCALAR):
            return _decode_work_scalar(float(shape.get("batch", 1)), float(shape.get("kv_heads", 1)), total, sms)
        batch = _value(shape.get("batch", 1))
        kv_heads = _value(shape.get("kv_heads", 1))
        tokens = _value(shape.get("kv_tokens_read", batch)) / _maximum(batch, 1.0)
        pairs = batch * kv_heads
        splits = _decode_splits(pairs, tokens, sms)
        return KernelWork(2.0, _where(splits > 1, 1.0, 0.0), pairs * splits, batch)
    if op.kernel == "attention_prefill":
        sequences = _value(shape.get("sequences", 1))
        tokens = _value(shape.get("tokens", 1))
        kv_heads = _value(shape.get("kv_heads", 1))
        if "tiles" in shape:  # counted chunk by chunk (prefill_attention_op, measurement rows)
            tiles = _value(shape["tiles"])
        else:  # from the totals: the chunks' tokens as one, at least a tile per sequence
            group = _value(shape.get("q_heads", 1)) / _maximum(kv_heads, 1.0)
            tiles = _maximum(sequences, _ceil(tokens * group / ATTENTION_Q_TILE))
        # a tile computes its rows (128, fewer for a short prompt) against the keys up to its last row, in
        # blocks of 128 keys: on average the cached prefix, half the chunk and half a block (at least one
        # block); under a sliding window of w tokens a tile reads at most its own rows' window, w + 128 keys
        queries = tokens / _maximum(sequences, 1.0)
        length = (tokens + _value(shape.get("cached", 0))) / _maximum(sequences, 1.0)
        span = length
        window = shape.get("window", 0)
        if window:
            span = _minimum(length, _value(window) + ATTENTION_Q_TILE)
        average = (length - queries) + queries / 2 + ATTENTION_KV_BLOCK / 2
        keys = _maximum(ATTENTION_KV_BLOCK, _minimum(average, span))
        # a sequence shorter than a tile fills only its packed rows (queries x group), and the tensor cores
        # and softmax run on those rows only
        group_rows = queries * _value(shape.get("q_heads", 1)) / _maximum(kv_heads, 1.0)
        rows = _minimum(ATTENTION_Q_TILE, _maximum(group_rows, 1.0))
        head_dim = _value(shape.get("head_dim", PROFILE_HEAD_DIM))
        per_key = 4.0 * rows * head_dim
        # the bf16 kernel's exponentials (prefill_exp_scale); the fp8 kernel (1 byte a KV element) keeps 1
        exp_scale = _where(_value(shape.get("kv_bytes_per_element", 2.0)) == 1.0, 1.0, prefill_exp_scale(head_dim))
        per_key = per_key * exp_scale
        kv_blocks = _ceil(_maximum(span, 1.0) / ATTENTION_KV_BLOCK)
        longest = per_key * kv_blocks * ATTENTION_KV_BLOCK
        grid = tiles * kv_heads
        splits = _prefill_splits(grid, kv_blocks, sms)
        # the KV-cache write: a thread block per new token
        work = KernelWork(2.0, _where(splits > 1, 1.0, 0.0), grid * splits, tokens, per_key * keys / splits,
                          longest / splits, compute_scale=exp_scale)
        if kernels == "flash2":
            q_heads = _value(shape.get("q_heads", 1))
            # one query a sequence of a grouped-query model: FlashAttention-2 swaps the heads into the rows,
            # as for decode (FA3's packed tiles, the same count for a group of up to 64 heads); otherwise its
            # own grid, one 64-row block per (sequence, query head, 64 queries), never split
            grouped_one = (queries <= 1.0) & (q_heads > kv_heads)
            if np.ndim(grouped_one) or not grouped_one:
                if "row_blocks" in shape:  # counted chunk by chunk (prefill_attention_op, measurement rows)
                    row_blocks = _value(shape["row_blocks"])
                else:
                    row_blocks = sequences * _ceil(_maximum(queries, 1.0) / FLASH2_TILE_ROWS)
                # a block's real rows: the new tokens over the blocks (64 but in a prompt's last block)
                per_key2 = 4.0 * (tokens / _maximum(row_blocks, 1.0)) * head_dim * exp_scale
                # a (sequence, head)'s blocks start shortest first: the first reads the cached prefix and its
                # own rows' keys, in whole 128-key blocks
                first_keys = _ceil((length - queries + _minimum(queries, FLASH2_TILE_ROWS)) / ATTENTION_KV_BLOCK)
                first_keys = _minimum(_maximum(first_keys, 1.0), kv_blocks) * ATTENTION_KV_BLOCK
                own = KernelWork(2.0, 0.0, row_blocks * q_heads, tokens, per_key2 * keys,
                                 per_key2 * kv_blocks * ATTENTION_KV_BLOCK, compute_scale=exp_scale,
                                 in_launch_order=1.0, shortest_item_flops=per_key2 * first_keys)
                work = own if not np.ndim(grouped_one) else _choose(grouped_one, work, own)
            swapped = (grouped_one & (sequences >= 2.0) & (kv_heads >= 2.0)
                       & (_value(window) == 0))  # (FlashAttention-2 does not swap under a local window)
            work = replace(work, copies=_where(swapped, 2.0, 0.0),
                           copy_bytes=_swap_copy_bytes(sequences, q_heads, head_dim))
        return work
    if op.kernel == "gemm":
        m, n, k = (_value(shape.get(key, 1)) for key in ("m", "n", "k"))
        tiles = _ceil(_maximum(m, 1.0) / GEMM_TILE_M) * _ceil(n / GEMM_TILE_N)
        split_k = _maximum(1.0, _minimum(_ceil(sms / tiles), _ceil(k / GEMM_SPLIT_K_SLICE)))
        return KernelWork(1.0, _where(split_k > 1, 1.0, 0.0), tiles * split_k, 0.0)
    if op.kernel == "moe":
        routed, width = _value(shape.get("m", 1)), _value(shape.get("n", 1))
        experts = _maximum(_value(shape.get("experts", 1)), 1.0)
        # a grouped GEMM pads each expert's rows to whole tiles: the gate/up GEMM's grid
        tiles = experts * _ceil(_maximum(routed / experts, 1.0) / GEMM_TILE_M) * _ceil(2.0 * width / GEMM_TILE_N)
        # the kernels sort and scan every token-expert pair of the layer, also those of other GPUs' experts
        return KernelWork(MOE_LAUNCHES, 0.0, tiles, _value(shape.get("pairs", 0.0)))
    if op.kernel == "selection":
        batch = _value(shape.get("batch", 1))
        return KernelWork(2.0, 0.0, batch * _value(shape.get("kv_heads", 1)), batch)
    items = _maximum(1.0, _ceil(_value(op.bytes) / ELEMENTWISE_ITEM_BYTES))
    return KernelWork(1.0, 0.0, items, 0.0)


def _choose(mask: np.ndarray, a: KernelWork, b: KernelWork) -> KernelWork:
    """Per measurement row, ``a``'s counts where ``mask`` holds and ``b``'s elsewhere (both of one op; the
    fields that neither sets stay unset)."""
    def pick(x, y):
        return None if x is None and y is None else np.where(mask, x, y)

    return KernelWork(pick(a.launches, b.launches), pick(a.combines, b.combines), pick(a.items, b.items),
                      pick(a.sequences, b.sequences), pick(a.item_flops, b.item_flops),
                      pick(a.longest_item_flops, b.longest_item_flops),
                      compute_scale=pick(a.compute_scale, b.compute_scale),
                      in_launch_order=pick(a.in_launch_order, b.in_launch_order),
                      shortest_item_flops=pick(a.shortest_item_flops, b.shortest_item_flops))


def _flash2_decode(shape: dict, sms: int, in_flight: float) -> KernelWork:
    """Decode attention as vLLM's FlashAttention-2 runs it (``mha_varlen_fwd`` with a block table).

    With one query per sequence and more query heads than KV heads (grouped queries), in a call whose queries
    are all one token (``call_queries``: not a mixed step's, whose prompts run in the same call) and without a
    local window, the query heads of a KV head become the rows of one tile (``seqlenq_ngroups_swapped``:
    ``ceil(group / 64)`` row blocks) and the keys are split by :func:`_flash2_splits` over ``2 x SMs`` slots,
    merged by a combine kernel; otherwise (multi-head attention, a mixed step, a local window, or a
    speculative verify pass's several queries per sequence) the keys are never split: one thread block per
    (sequence, head, 64 queries) streams the whole context.

    Each thread block computes :data:`FLASH2_TILE_ROWS` rows against its keys in 128-key blocks,
    padding included, at :data:`FLASH2_TILE_SHARE` of the SM's peak: its tiles beyond the first block (which
    the profile's fixed terms price) are the op's ``longest_item_flops``, so a block alone on its SM over a
    long context is bound by its padded tiles, not by its memory traffic.

    Swapping the heads into the rows is a reshape of the query, ``(b, kv_heads, group, d)`` transposed to
    ``(b x group, kv_heads, d)``, and of the output back: with two sequences or more and two KV heads or more
    the transposed tensor cannot be viewed in that shape, and each reshape copies it (two elementwise
    kernels, ``KernelWork.copies``, of ``b x q_heads x d`` elements read and written each)."""
    batch = _value(shape.get("batch", 1))
    kv_heads = _value(shape.get("kv_heads", 1))
    q_heads = _value(shape.get("q_heads", kv_heads))
    queries = _value(shape.get("queries", batch)) / _maximum(batch, 1.0)  # per sequence
    tokens = _value(shape.get("kv_tokens_read", batch)) / _maximum(batch, 1.0)
    head_dim = _value(shape.get("head_dim", PROFILE_HEAD_DIM))
    key_flops = 4.0 * FLASH2_TILE_ROWS * head_dim * ATTENTION_KV_BLOCK  # one 128-key block of a tile
    # the swap needs a call whose queries are all one token (not a mixed step's) and no local window
    single = shape.get("call_queries", 1) <= 1 and not shape.get("window", 0)
    if all(isinstance(x, _SCALAR) for x in (batch, kv_heads, q_heads, queries, tokens, head_dim)):  # floats
        blocks = float(math.ceil((tokens if tokens > 1.0 else 1.0) / ATTENTION_KV_BLOCK))
        if q_heads > kv_heads and queries <= 1.0 and single:
            rows = batch * kv_heads * math.ceil(q_heads / (kv_heads if kv_heads > 1.0 else 1.0) / 64.0)
            splits = _flash2_splits(rows, blocks, 2 * sms)
            tile = key_flops * (math.ceil(blocks / splits) - 1.0)
            copies = 2.0 if batch >= 2.0 and kv_heads >= 2.0 else 0.0
            return KernelWork(2.0, 1.0 if splits > 1.0 else 0.0, rows * splits, batch, None, tile,
                              in_flight=in_flight, tile_share=FLASH2_TILE_SHARE, copies=copies,
                              copy_bytes=_swap_copy_bytes(batch, q_heads, head_dim))
        tile = key_flops * (blocks - 1.0)
        return KernelWork(2.0, 0.0, batch * q_heads * math.ceil(queries / 64.0), batch, None, tile,
                          in_flight=in_flight, tile_share=FLASH2_TILE_SHARE)
    swapped = (q_heads > kv_heads) & (queries <= 1.0) & single
    blocks = _ceil(_maximum(tokens, 1.0) / ATTENTION_KV_BLOCK)
    rows = batch * kv_heads * _ceil(q_heads / _maximum(kv_heads, 1.0) / 64.0)
    splits = _flash2_splits(rows, blocks, 2 * sms)
    splits = _where(swapped, splits, 1.0)
    items = _where(swapped, rows * splits, batch * q_heads * _ceil(queries / 64.0))
    tile = key_flops * (_ceil(blocks / splits) - 1.0)
    copies = _where(swapped & (batch >= 2.0) & (kv_heads >= 2.0), 2.0, 0.0)
    return KernelWork(2.0, _where(splits > 1, 1.0, 0.0), items, batch, None, tile, in_flight=in_flight,
                      tile_share=FLASH2_TILE_SHARE, copies=copies,
                      copy_bytes=_swap_copy_bytes(batch, q_heads, head_dim))


def _flash2_splits(rows: Number, kv_blocks: Number, slots: int) -> Number:
    """FlashAttention-2's ``num_splits_heuristic``: no split when the ``rows`` thread blocks fill 80% of the
    ``slots``; otherwise, among split counts 1 to ``min(128, slots, kv_blocks)`` that change the blocks per
    split, the fewest whose wave efficiency (``rows x splits / slots`` over its ceiling) is within 85% of the
    best."""
    if isinstance(rows, _SCALAR) and isinstance(kv_blocks, _SCALAR):
        return _flash2_splits_scalar(int(rows), int(kv_blocks), slots)
    rows, kv_blocks = np.broadcast_arrays(np.asarray(rows, dtype=float), np.asarray(kv_blocks, dtype=float))
    candidates = np.arange(1, min(MAX_SPLITS, slots) + 1, dtype=float)
    blocks = kv_blocks[..., None]
    # a split count that leaves the blocks per split as the one before it is that one in effect
    changes = np.ceil(blocks / candidates) != np.ceil(blocks / np.maximum(candidates - 1, 1))
    eligible = (candidates <= blocks) & ((candidates == 1) | changes)
    # in single precision, as FlashAttention-2 computes it (then compared in double): exact 85% ties break
    # as they do there
    waves = (rows[..., None] * candidates).astype(np.float32) / np.float32(slots)
    efficiency = np.where(eligible, waves / np.maximum(np.ceil(waves), np.float32(1.0)), np.float32(0.0))
    best = efficiency.max(axis=-1, keepdims=True).astype(float)
    good = eligible & (efficiency.astype(float) >= 0.85 * best)
    first = candidates[np.argmax(good, axis=-1)]
    splits = np.where(rows >= 0.8 * slots, 1.0, first)
    return float(splits) if splits.ndim == 0 else splits


def _flash2_splits_scalar(rows: int, kv_blocks: int, slots: int) -> float:
    """:func:`_flash2_splits` of one kernel in plain numbers (the engine prices one op per step in exact-steps
    mode); single-precision wave efficiencies as there."""
    if rows >= 0.8 * slots:
        return 1.0
    eligible, efficiency = [], []
    for splits in range(1, min(MAX_SPLITS, slots, kv_blocks) + 1):
        if splits == 1 or -(-kv_blocks // splits) != -(-kv_blocks // (splits - 1)):
            waves = np.float32(rows * splits) / np.float32(slots)
            eligible.append(splits)
            efficiency.append(float(waves / np.float32(math.ceil(waves))))
    best = max(efficiency, default=0.0)
    return float(next((s for s, e in zip(eligible, efficiency) if e >= 0.85 * best), 1))


def _decode_work_scalar(batch: float, kv_heads: float, total_tokens: float, sms: int) -> KernelWork:
    """:func:`kernel_work` of one step's decode attention, in plain floats: the same rules as the array
    path (:func:`_decode_splits`), written out because the engine prices one op per step in exact mode."""
    pairs = batch * kv_heads
    if pairs >= 0.8 * sms:
        splits = 1.0
    else:
        tokens = total_tokens / (batch if batch > 1.0 else 1.0)
        blocks = math.ceil((tokens if tokens > 1.0 else 1.0) / ATTENTION_KV_BLOCK)
        splits = float(max(1, min(math.ceil(sms / (pairs if pairs > 1.0 else 1.0)), blocks, MAX_SPLITS)))
    return KernelWork(2.0, 1.0 if splits > 1.0 else 0.0, pairs * splits, batch)


def _prefill_splits(grid: Number, kv_blocks: Number, sms: int) -> Number:
    """KV splits of a prefill attention kernel whose ``grid`` tiles (query tile, KV head) would leave the
    GPU idle: FlashAttention-3's ``num_splits_heuristic``. No split when the tiles fill 80% of the SMs or a
    sequence has at most 4 KV blocks; otherwise the fewest splits whose wave efficiency (``grid x splits /
    sms`` over its ceiling) is within 85% of the best over 1 to ``min(128, sms, kv_blocks)`` splits."""
    if isinstance(grid, _SCALAR) and isinstance(kv_blocks, _SCALAR):
        if grid >= 0.8 * sms or kv_blocks <= 4 or grid <= 0:
            return 1.0
        top = int(min(MAX_SPLITS, sms, kv_blocks))
        efficiency = [w / math.ceil(w) for w in (grid * s / sms for s in range(1, top + 1))]
        best = max(efficiency)
        return float(next(s for s, e in enumerate(efficiency, 1) if e >= 0.85 * best))
    grid, kv_blocks = np.broadcast_arrays(np.asarray(grid, dtype=float), np.asarray(kv_blocks, dtype=float))
    candidates = np.arange(1, min(MAX_SPLITS, sms) + 1, dtype=float)
    waves = grid[..., None] * candidates / sms
    efficiency = np.where(candidates <= kv_blocks[..., None], waves / np.ceil(waves), 0.0)
    good = efficiency >= 0.85 * efficiency.max(axis=-1, keepdims=True)
    first = candidates[np.argmax(good, axis=-1)]
    return np.where((grid >= 0.8 * sms) | (kv_blocks <= 4), 1.0, first)


def _value(value) -> Number:
    """A float, or a float array where the shape holds one value per step or per measurement."""
    if isinstance(value, _SCALAR):
        return float(value)
    return float(value) if np.ndim(value) == 0 else np.asarray(value, dtype=float)


def _decode_splits(pairs: Number, tokens: Number, sms: int) -> np.ndarray:
    """KV splits per (sequence, KV head) of a decode attention kernel."""
    blocks = _ceil(_maximum(tokens, 1.0) / ATTENTION_KV_BLOCK)
    fill = _ceil(sms / _maximum(pairs, 1.0))
    splits = _minimum(_minimum(fill, blocks), MAX_SPLITS)
    return _where(pairs >= 0.8 * sms, 1.0, _maximum(splits, 1.0))


# Scalar-or-array helpers: plain floats take the math path (numpy's scalar overhead would dominate the
# engine's pricing of one step), arrays the vectorised one.
_SCALAR = (int, float)


def _ceil(x):
    return float(math.ceil(x)) if isinstance(x, _SCALAR) else np.ceil(x)


def _maximum(a, b):
    if isinstance(a, _SCALAR) and isinstance(b, _SCALAR):
        return float(a if a >= b else b)
    return np.maximum(a, b)


def _minimum(a, b):
    if isinstance(a, _SCALAR) and isinstance(b, _SCALAR):
        return float(a if a <= b else b)
    return np.minimum(a, b)


def _where(condition, a, b):
    if isinstance(condition, (bool, np.bool_)):
        return a if condition else b
    return np.where(condition, a, b)
