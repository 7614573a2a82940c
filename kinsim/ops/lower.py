"""Lowering one forward step of a batch into the operators one GPU of a replica runs.

Per layer: fused residual-add + RMSNorm, QKV projection, QK-norm (Qwen3), RoPE, attention (and block
selection), output projection, tensor-parallel all-reduce, fused residual-add + RMSNorm, then the dense
MLP (gate/up GEMM, SiLU-and-multiply, down GEMM) or the MoE block (router, the routed experts fused and
sized by the experts the step's tokens touch, shared experts), and a second all-reduce. Once per step:
embedding lookup, final norm, LM head, logits gather and sampling.

Multi-head latent attention (``model.mla``, DeepSeek-V3) replaces the QKV and O projections by its
down- and up-projections and the absorbed batched GEMMs around the attention kernel
(:func:`_mla_projection_ops`); an MoE model's first ``moe.dense_layers`` layers run the dense MLP.

Residual adds are fused into the following RMSNorm, as serving engines do (``fused_add_rms_norm``), so
they are not separate kernels; the KV-cache write is part of the attention op.

Under tensor parallelism ``tp`` each GPU holds ``1/tp`` of every weight (columns of QKV and gate/up, rows
of O and down, a slice of the vocabulary) and sees every token. Under expert parallelism ``ep`` (dividing
``tp``) each GPU holds ``experts/ep`` experts, each split ``tp/ep`` ways, and computes its experts' share
of every token (:func:`_moe_ops`). Under data-parallel attention (``deployment.attention_data_parallel``
``D``) the ``tp`` GPUs form ``D`` groups of ``tp / D``: every op but the experts' runs in one group, on its
share of the step's tokens (taken as even: ``T / D``), with its weights split over the group's GPUs; the
experts take all ``T`` tokens, gathered from the groups and scattered back.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field, replace

import numpy as np

from kinsim.dtypes import QUANTIZED_ACTIVATIONS, bytes_per_element
from kinsim.model.spec import ModelSpec
from kinsim.ops.attention import (
    AttentionDims,
    PrefillChunk,
    decode_attention_ops,
    model_attention_dims,
    prefill_attention_op,
)
from kinsim.ops.layers import collective_op, elementwise_op, gemm_op, moe_experts_op, quantize_op
from kinsim.ops.op import Number, Op
from kinsim.workload.spec import AttentionPolicy, DeploymentSpec, SlidingWindowAttention

#: Data type of activations and of the attention computation.
ACT_DTYPE = "bf16"

#: Logits are computed and sampled in fp32.
LOGIT_BYTES = 4.0
#: Bytes a token's QK norm statistics take when normalized over all heads (``qk_norm_type: per_layer``): the
#: query's and the key's sum of squares, fp32 (vLLM's ``MiniMaxText01RMSNormTP.forward_qk`` all-reduces them).
QK_NORM_SUMS_BYTES = 8.0


@dataclass(frozen=True)
class StepBatch:
    """What one step computes.

    Attributes:
        decode_context: tokens cached for each decoding sequence before this step, shape ``(n,)``, or
            ``(steps, n)`` for a segment of decode steps priced at once.
        prefill: prompt chunks computed this step.
        shared_prefix: for each decoding sequence, the length of the prompt it shares with its group.
        group_index: for each decoding sequence, its group (for ``prefix_shared_read``).
    """

    decode_context: np.ndarray = field(default_factory=lambda: np.zeros(0))
    prefill: tuple[PrefillChunk, ...] = ()
    shared_prefix: np.ndarray | None = None
    group_index: np.ndarray | None = None

    @property
    def n_decode(self) -> int:
        return int(np.shape(self.decode_context)[-1])

    @property
    def prefill_tokens(self) -> int:
        return sum(c.tokens for c in self.prefill)

    @property
    def tokens(self) -> int:
        """Tokens through the linear layers: one per decoding sequence plus every prefill token."""
        return self.n_decode + self.prefill_tokens

    @property
    def logit_rows(self) -> int:
        """Sequences that need next-token logits: every decoding one and each that finishes its prompt."""
        return self.n_decode + sum(1 for c in self.prefill if c.completes_prompt)


@dataclass(frozen=True)
class Step:
    """The operators of one forward step on one GPU; ``Op.count`` says how often each runs."""

    ops: tuple[Op, ...]
    tokens: int
    logit_rows: int

    def total(self, attribute: str):
        """Sum of ``count x attribute`` over the ops (``flops``, ``bytes_read``, ``bytes``...)."""
        return sum(op.count * getattr(op, attribute) for op in self.ops)


def decode_batch(context: np.ndarray | list[int]) -> StepBatch:
    """A batch of decoding sequences with the given cached context lengths."""
    return StepBatch(decode_context=np.asarray(context, dtype=float))


def lower_step(model: ModelSpec, deployment: DeploymentSpec, policy: AttentionPolicy, batch: StepBatch,
               attention: bool = True, tokens: np.ndarray | None = None) -> Step:
    """The operators one GPU of a replica runs for ``batch`` (without the :func:`attention_ops` when
    ``attention`` is false).

    ``tokens``: instead of the batch's token count, an array of token counts (positive), priced at once:
    every op's FLOPs, bytes and shape are then arrays over the counts. Only with ``attention=False`` and a
    batch without logit rows: the ops that depend on the token count alone (the engine's table of them,
    :meth:`kinsim.engine.pricer.StepPricer._token_part`)."""
    if tokens is not None and (attention or batch.logit_rows):
        raise ValueError("an array of token counts prices only the ops that depend on the token count alone")
    replica_tp, ep, ranks = deployment.tensor_parallel, deployment.expert_parallel, deployment.attention_data_parallel
    dims = model_attention_dims(model, replica_tp, act_dtype=ACT_DTYPE, ranks=ranks)
    shard = dims.shard
    h, d, layers, wd = model.hidden_size, model.head_dim, model.layers, model.weight_dtype
    all_tokens = batch.tokens if tokens is None else tokens
    # every op but the experts' runs in one attention group (all the replica's GPUs unless attention is
    # data-parallel) on its share of the tokens, taken as even
    tp = replica_tp // ranks
    t = all_tokens if ranks == 1 else all_tokens / ranks
    ops: list[Op] = []

    def per_layer(op: Op) -> None:
        ops.append(op if op.count == layers else replace(op, count=layers))

    if tokens is None and all_tokens == 0:
        return Step((), 0, 0)
    # ---- once per step, before the layers
    ops.append(Op(name="embedding", op_class="other", kernel="elementwise", dtype="fp32",
                  bytes_read=t * h * bytes_per_element(wd), bytes_written=t * h * bytes_per_element(ACT_DTYPE),
                  shape={"tokens": t, "hidden": h}))
    if tp > 1:
        ops.append(collective_op("allreduce_embedding", "allreduce", t * h * bytes_per_element(ACT_DTYPE), tp,
                                 implementation=deployment.allreduce))
    # ---- attention block
    per_layer(elementwise_op("input_norm", 2 * t * h, 2 * t * h, extra_bytes_read=h * bytes_per_element(wd),
                             count=layers))
    if model.mla is None:
        qkv_width = (shard.q_heads + 2 * shard.kv_heads) * d
        ops += _quantize(wd, "qkv_proj", t * h, "linear", layers)
        per_layer(gemm_op("qkv_proj", t, qkv_width, h, weight_dtype=wd, count=layers))
        if model.qk_norm:
            if model.qk_norm_type == "per_layer" and tp > 1:
                # a token's sums of squares over all heads: each GPU sums its heads' (one pass over its queries
                # and keys, two fp32 sums a token out), the GPUs all-reduce them, then each normalizes
                per_layer(elementwise_op("qk_norm_sums", t * (shard.q_heads + shard.kv_heads) * d,
                                         t * QK_NORM_SUMS_BYTES / bytes_per_element(ACT_DTYPE), count=layers))
                per_layer(collective_op("allreduce_qk_norm", "allreduce", t * QK_NORM_SUMS_BYTES, tp, count=layers,
                                        implementation=deployment.allreduce))
            per_layer(elementwise_op("qk_norm", t * (shard.q_heads + shard.kv_heads) * d,
                                     t * (shard.q_heads + shard.kv_heads) * d, count=layers))
        per_layer(elementwise_op("rope", t * (shard.q_heads + shard.kv_heads) * d,
                                 t * (shard.q_heads + shard.kv_heads) * d, count=layers))
        ops += query_quantize(model.kv_dtype, t * shard.q_heads * d, layers)
        if attention:
            ops.extend(attention_ops(dims, deployment, policy, batch, layers, window=window_layers_of(model)))
        ops += _quantize(wd, "o_proj", t * shard.q_heads * d, "linear", layers)
        per_layer(gemm_op("o_proj", t, h, shard.q_heads * d, weight_dtype=wd, count=layers))
    else:
        before, after = _mla_projection_ops(model, shard.q_heads, t)
        ops += [replace(op, count=layers) for op in before]
        if attention:
            ops.extend(attention_ops(dims, deployment, policy, batch, layers))
        ops += [replace(op, count=layers) for op in after]
    activation_bytes = t * h * bytes_per_element(ACT_DTYPE)
    if tp > 1:
        per_layer(collective_op("allreduce_attention", "allreduce", activation_bytes, tp, count=layers,
                                implementation=deployment.allreduce))
    per_layer(elementwise_op("post_attention_norm", 2 * t * h, 2 * t * h,
                             extra_bytes_read=h * bytes_per_element(wd), count=layers))
    # ---- MLP or MoE block (an MoE model's first moe.dense_layers layers keep the dense MLP)
    dense_layers, moe_layers = model.dense_mlp_layers, model.moe_layers
    if dense_layers:
        width = model.intermediate_size / tp
        ops += _quantize(wd, "mlp_gate_up", t * h, "linear", dense_layers)
        ops.append(gemm_op("mlp_gate_up", t, 2 * width, h, weight_dtype=wd, count=dense_layers))
        ops.append(elementwise_op("mlp_act", 2 * t * width, t * width, count=dense_layers))
        ops += _quantize(wd, "mlp_down", t * width, "linear", dense_layers)
        ops.append(gemm_op("mlp_down", t, h, width, weight_dtype=wd, count=dense_layers))
        if tp > 1:
            ops.append(collective_op("allreduce_mlp", "allreduce", activation_bytes, tp, count=dense_layers,
                                     implementation=deployment.allreduce))
    if moe_layers:
        ops += [replace(op, count=moe_layers)
                for op in _moe_ops(model, all_tokens, replica_tp, ep, all_tokens * h * bytes_per_element(ACT_DTYPE),
                                   deployment.allreduce)]
    # ---- once per step, after the layers
    rows = batch.logit_rows
    ops.append(elementwise_op("final_norm", t * h, t * h, extra_bytes_read=h * bytes_per_element(wd)))
    ops.extend(logit_ops(model, deployment, rows))
    return Step(tuple(ops), all_tokens, rows)


def _mla_projection_ops(model: ModelSpec, q_heads: int, t: Number) -> tuple[list[Op], list[Op]]:
    """Multi-head latent attention's projections on one GPU that holds ``q_heads`` query heads, for ``t``
    tokens, one layer: the ops before the attention kernel and those after it.

    As vLLM and SGLang run them: the joint down-projection of the query and of the KV latent
    (``h -> q_lora + kv_lora + rope``) is replicated, every GPU computes it whole for every token; the
    latent norms; the query up-projection (``q_lora -> q_heads x (nope + rope)``, split by heads); RoPE on
    the query's and the shared key's rotary dimensions; the key up-projection absorbed into the query
    (a batched GEMM per head, ``nope -> kv_lora``) before attention and the value up-projection
    (``kv_lora -> v``) after it, then O. The absorbed form is how decode runs; prefill instead projects the
    new tokens' latents up to keys and values (``kv_lora -> q_heads x (nope + v)``), the same weights and
    FLOPs per token, so both are priced per token here and the engine's token-count tables hold. Not
    counted: re-projecting a chunk's cached prefix (chunked prefill of a long prompt up-projects its earlier
    chunks' latents again). The absorbed weights are bf16 (vLLM dequantizes an fp8 checkpoint's
    ``kv_b_proj`` for them)."""
    mla, h, wd = model.mla, model.hidden_size, model.weight_dtype
    bf16 = _kept_bf16(wd)
    qk = q_heads * mla.qk_head_dim
    before = _quantize(wd, "qkv_a_proj", t * h, "linear")
    if mla.q_lora_rank:
        before.append(gemm_op("qkv_a_proj", t, mla.q_lora_rank + mla.latent_width, h, weight_dtype=wd))
        before.append(elementwise_op("q_a_norm", 2 * t * mla.q_lora_rank, t * mla.q_lora_rank))
        before += _quantize(wd, "q_b_proj", t * mla.q_lora_rank, "linear")
        before.append(gemm_op("q_b_proj", t, qk, mla.q_lora_rank, weight_dtype=wd))
    else:
        before.append(gemm_op("qkv_a_proj", t, qk + mla.latent_width, h, weight_dtype=wd))
    before.append(elementwise_op("kv_a_norm", 2 * t * mla.kv_lora_rank, t * mla.kv_lora_rank))
    rotary = t * (q_heads + 1) * mla.qk_rope_head_dim
    before.append(elementwise_op("rope", rotary, rotary))
    before.append(gemm_op("mla_k_absorb", t, q_heads * mla.kv_lora_rank, mla.qk_nope_head_dim, weight_dtype=bf16))
    before += query_quantize(model.kv_dtype, t * q_heads * mla.latent_width, 1)
    after = [gemm_op("mla_v_absorb", t, q_heads * mla.v_head_dim, mla.kv_lora_rank, weight_dtype=bf16)]
    after += _quantize(wd, "o_proj", t * q_heads * mla.v_head_dim, "linear")
    after.append(gemm_op("o_proj", t, h, q_heads * mla.v_head_dim, weight_dtype=wd))
    return before, after


def logit_ops(model: ModelSpec, deployment: DeploymentSpec, rows: int) -> list[Op]:
    """LM head, logits gather and sampling for ``rows`` sequences (none for 0 rows; an array of positive
    numbers of rows prices them at once). With :func:`attention_ops`, the only ops of a step that do not
    depend on its token count alone."""
    if np.ndim(rows) == 0 and not rows:
        return []
    tp, wd, ranks = deployment.tensor_parallel, model.weight_dtype, deployment.attention_data_parallel
    if ranks > 1:  # one attention group's even share of the rows, its vocabulary split over its GPUs
        tp, rows = tp // ranks, rows / ranks
    ops = [gemm_op("lm_head", rows, model.vocab_size / tp, model.hidden_size, weight_dtype=_kept_bf16(wd))]
    if tp > 1:
        ops.append(collective_op("allgather_logits", "allgather", rows * model.vocab_size * LOGIT_BYTES, tp))
    # softmax, top-k/top-p filtering and the draw: three passes over the fp32 logits
    logits = rows * model.vocab_size
    ops.append(Op(name="sampling", op_class="other", kernel="elementwise", dtype="fp32",
                  flops=10.0 * logits, bytes_read=2 * logits * LOGIT_BYTES, bytes_written=logits * LOGIT_BYTES,
                  shape={"rows": rows, "vocab": model.vocab_size}))
    return ops


def attention_ops(dims: AttentionDims, deployment: DeploymentSpec, policy: AttentionPolicy, batch: StepBatch,
                  layers: int, window: tuple[SlidingWindowAttention, int] | None = None) -> list[Op]:
    """The attention ops of a step (decode attention, block selection, prefill attention), one per layer
    (``count=layers``). Every other op of the step depends only on ``batch.tokens`` and
    ``batch.logit_rows``, which lets the engine price those once per token count.

    ``window``: the model's own sliding window and how many of the ``layers`` use it
    (:func:`window_layers_of`); those layers get ops of their own, over the window, with the dense
    kernel (FlashAttention's local window), and ``policy`` applies to the others."""
    window_policy, window_layers = window if window is not None else (None, 0)
    ops: list[Op] = []
    if batch.n_decode:
        # a mixed step runs its decodes in one attention call with its prompts: the call's longest query
        call = max((chunk.tokens for chunk in batch.prefill), default=1)
        if layers > window_layers:
            ops += decode_attention_ops(dims, policy, batch.decode_context, shared_prefix=batch.shared_prefix,
                                        group_index=batch.group_index,
                                        prefix_shared_read=deployment.prefix_shared_read,
                                        count=layers - window_layers, call_queries=call)
        if window_layers:
            ops += decode_attention_ops(dims, window_policy, batch.decode_context, count=window_layers,
                                        model_window=True, call_queries=call)
    if batch.prefill:
        if layers > window_layers:
            ops.append(prefill_attention_op(dims, policy, batch.prefill, count=layers - window_layers))
        if window_layers:
            ops.append(prefill_attention_op(dims, window_policy, batch.prefill, count=window_layers,
                                            model_window=True))
    return ops


def window_layers_of(model: ModelSpec) -> tuple[SlidingWindowAttention, int] | None:
    """The model's own sliding window as a policy and the layers that use it, or None when every layer
    attends over the whole context."""
    if not model.sliding_window_layers:
        return None
    return SlidingWindowAttention(window=model.sliding_window), model.sliding_window_layers


def _kept_bf16(weight_dtype: str) -> str:
    """The weight type of the LM head and the MoE router: fp8 and nvfp4 checkpoints keep them in bf16
    (their outputs, logits and routing scores, are sensitive); other weight types apply to them as to the
    layers. The model's memory footprint still counts them in ``weight_dtype`` (a few percent of the
    model)."""
    return "bf16" if weight_dtype in QUANTIZED_ACTIVATIONS else weight_dtype


def _quantize(weight_dtype: str, gemm: str, elements: Number, op_class: str, count: int = 1) -> list[Op]:
    """The kernel that quantizes an fp8 (nvfp4) GEMM's ``elements`` input activations to fp8 (nvfp4)
    (none for other weight types): fp8 weights are served as W8A8 and nvfp4 ones as W4A4, and vLLM and
    TensorRT-LLM launch a quantization kernel before each such GEMM (a GPU without FP4 tensor cores runs
    nvfp4 weights as W4A16 instead, without it: kinsim counts it there too, an overestimate of a few
    microseconds a layer). The LM head and the MoE router get none: such checkpoints keep them in bf16
    (:func:`_kept_bf16`); the fused routed experts quantize inside
    (:func:`~kinsim.ops.layers.moe_experts_op`).
    Its cost is calibrated by the profile's ``elementwise`` curve, fitted to the measured quantization
    kernel."""
    quantized = QUANTIZED_ACTIVATIONS.get(weight_dtype)
    if quantized is None:
        return []
    return [quantize_op(f"{gemm}_quant", elements, op_class=op_class, count=count, dtype=quantized)]


def query_quantize(kv_dtype: str, elements: Number, count: int = 1) -> list[Op]:
    """The kernel that quantizes the ``elements`` query activations of a step to fp8 before attention over an
    fp8 KV cache (none for other KV types): FlashAttention-3 takes queries, keys and values of one type, so
    vLLM's FlashAttention backend quantizes the query (``scaled_fp8_quant`` in ``FlashAttentionImpl.forward``)
    for decode and prefill alike. Counted in class ``attention``; priced by the profile's ``elementwise``
    curve. The fp8-KV attention rows of the silicon tables include it
    (:func:`kinsim.calibration.rows.query_quantize_s`)."""
    if bytes_per_element(kv_dtype) != 1:
        return []
    return [quantize_op("attention_q_quant", elements, op_class="attention", count=count)]


@functools.lru_cache(maxsize=64)
def _choice_probabilities(experts: int, k: int, skew: float) -> tuple[float, ...]:
    """Each expert's chance of being among a token's ``k`` choices, by popularity rank: proportional to
    ``rank^-skew`` and at most 1, summing to ``k`` (the most popular experts, certain, leave the rest to the
    others; ``skew`` 0: ``k / experts`` each)."""
    if skew == 0.0:
        return (k / experts,) * experts
    weights = [float(rank) ** -skew for rank in range(1, experts + 1)]
    certain, scale = 0, 0.0  # the first ``certain`` experts (the most popular) are chosen by every token
    while certain < k:
        scale = (k - certain) / sum(weights[certain:])
        if weights[certain] * scale <= 1.0:
            break
        certain += 1
    else:
        scale = 0.0  # every choice is certain: the others are never chosen
    return tuple(1.0 if rank < certain else min(1.0, w * scale) for rank, w in enumerate(weights))


def _experts_touched(choose: tuple[float, ...], tokens: float) -> float:
    """Expected experts that receive at least one of ``tokens`` tokens, each token choosing expert ``i`` with
    probability ``choose[i]`` independently of the others: ``sum_i 1 - (1 - choose[i])^tokens``."""
    if len(set(choose)) == 1:  # uniform: one power (the formula kinsim has always used, to the bit)
        return len(choose) * (1.0 - (1.0 - choose[0]) ** tokens)
    return sum(1.0 - (1.0 - p) ** tokens for p in choose)


def experts_touched(moe, tokens: float) -> float:
    """Expected routed experts of one layer that receive at least one of ``tokens`` tokens under ``moe``'s
    routing (:class:`~kinsim.model.spec.MoESpec`: its experts, top-k and ``routing_skew``)."""
    return _experts_touched(_choice_probabilities(moe.experts, moe.active_experts, moe.routing_skew), tokens)


#: Placements of the experts over the expert-parallel GPUs that :func:`_busiest_gpu` averages over.
EP_PLACEMENTS = 32


@functools.lru_cache(maxsize=64)
def _placements(experts: int, ep: int) -> np.ndarray:
    """:data:`EP_PLACEMENTS` placements of the experts, by popularity rank, on ``ep`` GPUs of ``experts /
    ep`` each: shape ``(placements, ep, experts / ep)``, drawn once from a fixed seed (a deployment places
    experts by index, and which of them a workload makes popular is unrelated to it)."""
    rng = np.random.default_rng(0)
    return np.stack([rng.permutation(experts).reshape(ep, -1) for _ in range(EP_PLACEMENTS)])


def _busiest_gpu(choose: tuple[float, ...], ep: int, tokens, expert_bytes: float, pair_bytes: float):
    """(experts touched, token-expert pairs) on the busiest of ``ep`` GPUs that split the experts, ``tokens``
    tokens each choosing expert ``i`` with probability ``choose[i]`` (a count, or an array of counts): for
    each placement of :func:`_placements`, the GPU that moves the most bytes (``expert_bytes`` per touched
    expert, ``pair_bytes`` per pair), its figures averaged over the placements.

    Under skewed routing an even split (``touched / ep``, ``tokens x k / ep``) understates the GPU that
    holds the popular experts, and the all-reduce after the experts waits for it. Against the power-law
    rows of vLLM's H100 MoE table (fused Triton kernel, routing exponent 1.2, up to 4,096 tokens), the
    even split comes out 8-28% too fast at 2 to 256 GPUs and decode sizes; the busiest GPU of random
    placements brings the rows' MAPE from 21.8% to 18.9% (docs/cost-model.md)."""
    if np.ndim(tokens) == 0:
        return _busiest_gpu_at(choose, ep, float(tokens), expert_bytes, pair_bytes)
    figures = [_busiest_gpu_at(choose, ep, float(t), expert_bytes, pair_bytes) for t in tokens]
    return np.array([f[0] for f in figures]), np.array([f[1] for f in figures])


@functools.lru_cache(maxsize=65536)
def _busiest_gpu_at(choose: tuple[float, ...], ep: int, tokens: float, expert_bytes: float,
                    pair_bytes: float) -> tuple[float, float]:
    """:func:`_busiest_gpu` of one count, computed the same way whatever the caller prices with it (a count
    alone or the engine's table of counts: the two must agree to the bit)."""
    p = np.asarray(choose, dtype=float)
    groups = _placements(len(p), ep)
    touched = (1.0 - (1.0 - p) ** tokens)[groups].sum(axis=-1)  # (placements, ep)
    pairs = tokens * p[groups].sum(axis=-1)
    busiest = (touched * expert_bytes + pairs * pair_bytes).argmax(axis=-1)
    rows = np.arange(len(busiest))
    return float(touched[rows, busiest].mean()), float(pairs[rows, busiest].mean())


def _moe_ops(model: ModelSpec, t: int, tp: int, ep: int, activation_bytes: float, allreduce: str) -> list[Op]:
    """The MoE block of one GPU of a replica of ``tp`` GPUs, ``t`` tokens in all. With attention split by
    heads over the ``tp`` GPUs, after attention's all-reduce every GPU holds every token, so with ``ep``
    GPUs splitting the experts each computes the token-expert pairs of its own experts (``t x k / ep``) on
    tokens it already has, and no all-to-all moves them. Either way of splitting leaves every GPU with
    partial sums of every token's output, summed by one all-reduce over the ``tp`` GPUs, as vLLM and
    TensorRT-LLM do with expert parallelism under attention tensor parallelism. With data-parallel
    attention (``deployment.attention_data_parallel``) each group holds only its own tokens: an all-gather
    over the ``tp`` GPUs gives
    every GPU all ``t`` before the experts, and a reduce-scatter returns each group the sums of its own
    (SGLang's data-parallel attention without DeepEP). Together they move an all-reduce's bytes in its two
    halves, so they are priced as one all-reduce of the ``t`` tokens (the profile's all-reduce curves; an
    all-to-all of the routed pairs, as DeepEP's, moves less and is not modelled)."""
    moe = model.moe
    h, wd = model.hidden_size, model.weight_dtype
    k, experts = moe.active_experts, moe.experts
    split = tp // ep  # each expert's width is split this many ways
    width = moe.expert_intermediate_size / split
    choose = _choice_probabilities(experts, k, moe.routing_skew)
    # in Python floats, also for an array of token counts: NumPy's power differs from the C library's pow
    # in the last bit for some counts, and the table must equal the counts priced one by one
    if ep == 1:
        touched = (_experts_touched(choose, float(t)) if np.ndim(t) == 0
                   else np.array([_experts_touched(choose, float(x)) for x in t]))
        touched_local, routed = touched / ep, t * k / ep  # token-expert pairs this GPU computes
    else:  # the busiest of the ep GPUs sets the pace: the all-reduce after the experts waits for it
        expert_bytes = 3.0 * width * h * bytes_per_element(model.expert_weight_dtype)
        pair_bytes = (3.0 * h + 6.0 * width) * bytes_per_element(ACT_DTYPE)  # as moe_experts_op moves them
        touched_local, routed = _busiest_gpu(choose, ep, t, expert_bytes, pair_bytes)
    ops = [gemm_op("moe_router", t, experts, h, weight_dtype=_kept_bf16(wd), op_class="moe")]
    # the routed experts as serving engines run them, fused: sort the pairs by expert, the gate/up grouped
    # GEMM, the activation, the down grouped GEMM, the sum over each token's experts (activations of fp8
    # experts are quantized inside); only the experts that receive a token are read
    ops.append(moe_experts_op("moe_experts", t, routed, touched_local, width, h, pairs=t * k,
                              weight_dtype=model.expert_weight_dtype))
    if moe.shared_experts:
        shared_width = moe.shared_experts * moe.shared_width / tp
        ops += _quantize(wd, "shared_expert_gate_up", t * h, "moe")
        ops.append(gemm_op("shared_expert_gate_up", t, 2 * shared_width, h, weight_dtype=wd, op_class="moe"))
        ops.append(elementwise_op("shared_expert_act", 2 * t * shared_width, t * shared_width, op_class="moe"))
        ops += _quantize(wd, "shared_expert_down", t * shared_width, "moe")
        ops.append(gemm_op("shared_expert_down", t, h, shared_width, weight_dtype=wd, op_class="moe"))
    if tp > 1:  # every GPU holds partial sums of every token: its slices of the experts, or its own experts
        ops.append(collective_op("allreduce_moe", "allreduce", activation_bytes, tp, implementation=allreduce))
    return ops
