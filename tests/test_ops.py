"""Operators of a step: FLOPs and bytes worked out by hand for a tiny model."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kinsim.model.spec import ModelSpec, MoESpec
from kinsim.ops import PrefillChunk, StepBatch, decode_batch, lower_step
from kinsim.ops.attention import AttentionDims, decode_attention_ops, prefill_attention_op
from kinsim.ops.sharding import shard_heads
from kinsim.workload.spec import BlockTopKAttention, DenseAttention, DeploymentSpec, SlidingWindowAttention

TINY = ModelSpec(name="tiny", layers=2, hidden_size=64, attention_heads=4, kv_heads=2, head_dim=16,
                 intermediate_size=128, vocab_size=100)


def ops_by_name(step):
    return {op.name: op for op in step.ops}


def test_tiny_decode_step_by_hand():
    step = lower_step(TINY, DeploymentSpec(), DenseAttention(), decode_batch([10, 20]))
    ops = ops_by_name(step)
    t, h, d = 2, 64, 16
    # QKV: (4 + 2*2) heads x 16 = 128 outputs from 64 inputs, two tokens, bf16 everywhere.
    assert ops["qkv_proj"].flops == 2 * t * 128 * h
    assert ops["qkv_proj"].bytes_read == 128 * h * 2 + t * h * 2
    assert ops["qkv_proj"].bytes_written == t * 128 * 2
    assert ops["qkv_proj"].count == 2
    # Attention over 11 and 21 tokens: 4 FLOPs per head dim per query head per key.
    attention = ops["attention_decode"]
    assert attention.flops == 4 * 4 * d * (11 + 21)
    kv_per_token = 2 * 2 * d * 2  # K and V, 2 KV heads, bf16
    q_bytes = 4 * d * 2
    assert attention.bytes_read == kv_per_token * (11 + 21) + t * q_bytes
    assert attention.bytes_written == t * (q_bytes + kv_per_token)
    # MLP: gate and up (2 x 128 outputs), down back to 64.
    assert ops["mlp_gate_up"].flops == 2 * t * 256 * h
    assert ops["mlp_down"].flops == 2 * t * h * 128
    assert ops["mlp_down"].bytes_read == h * 128 * 2 + t * 128 * 2
    # LM head once per step, one row per decoding sequence.
    assert ops["lm_head"].count == 1 and ops["lm_head"].flops == 2 * t * 100 * h
    assert "allreduce_attention" not in ops  # no tensor parallelism
    assert step.tokens == 2 and step.logit_rows == 2


def test_tensor_parallel_splits_weights_and_adds_allreduces():
    step = lower_step(TINY, DeploymentSpec(tensor_parallel=2), DenseAttention(), decode_batch([10, 20]))
    ops = ops_by_name(step)
    assert ops["qkv_proj"].flops == 2 * 2 * (2 + 2 * 1) * 16 * 64
    assert ops["allreduce_attention"].collective.bytes == 2 * 64 * 2
    assert ops["allreduce_mlp"].collective.gpus == 2


def test_prefill_attention_by_hand():
    dims = AttentionDims(shard_heads(4, 2, 16, 1))
    op = prefill_attention_op(dims, DenseAttention(), [PrefillChunk(tokens=200, cached=0)])
    assert op.flops == 4 * 4 * 16 * (200 * 201 / 2)
    # Two tiles of 128 query rows read keys up to rows 128 and 200, but the second tile's re-read of the
    # first 128 keys hits L2: HBM serves each of the 200 keys once. The KV-cache write reads the 200 new
    # tokens' K and V as the projection wrote them; attention reads the queries.
    kv_per_token = 2 * 2 * 16 * 2
    q_bytes = 4 * 16 * 2
    assert op.bytes_read == kv_per_token * 200 + 200 * (kv_per_token + q_bytes)
    assert op.bytes_written == 200 * (q_bytes + kv_per_token)


def test_prefill_after_cache_reads_each_cached_key_once():
    dims = AttentionDims(shard_heads(4, 2, 16, 1))
    op = prefill_attention_op(dims, DenseAttention(), [PrefillChunk(tokens=100, cached=50)])
    assert op.flops == 4 * 4 * 16 * (100 * 50 + 100 * 101 / 2)
    kv_per_token = 2 * 2 * 16 * 2
    assert op.bytes_read == kv_per_token * (50 + 100) + 100 * (kv_per_token + 4 * 16 * 2)


def test_prefill_over_fp8_cache_reads_new_keys_in_activation_type():
    dims = AttentionDims(shard_heads(4, 2, 16, 1), kv_dtype="fp8")
    op = prefill_attention_op(dims, DenseAttention(), [PrefillChunk(tokens=10, cached=30)])
    # cache read in fp8 (1 byte), the 10 new tokens' K and V read in bf16 by the cache write, queries bf16
    assert op.bytes_read == 2 * 2 * 16 * 1 * 40 + 10 * (2 * 2 * 16 * 2 + 4 * 16 * 2)
    assert op.bytes_written == 10 * (4 * 16 * 2 + 2 * 2 * 16 * 1)


def test_prefill_sliding_window_reads_only_keys_in_reach():
    dims = AttentionDims(shard_heads(4, 2, 16, 1))
    policy = SlidingWindowAttention(window=20)
    op = prefill_attention_op(dims, policy, [PrefillChunk(tokens=10, cached=100)])
    kv_per_token = 2 * 2 * 16 * 2
    # the first new row reaches back 20 keys into the cache; the chunk's own 10 keys
    assert op.bytes_read == kv_per_token * (20 + 10) + 10 * (kv_per_token + 4 * 16 * 2)


def test_block_topk_reads_budget_and_scores_blocks():
    dims = AttentionDims(shard_heads(4, 2, 16, 1))
    policy = BlockTopKAttention(block_size=16, top_k=4, local_window=16)  # budget 80 tokens
    attention, selection = decode_attention_ops(dims, policy, np.array([1000.0, 50.0]))
    assert attention.shape["kv_tokens_read"] == 80 + 51
    assert selection.shape["blocks_scored"] == 62 + 3  # floor(1000/16), floor(50/16)
    assert selection.flops == 2 * 4 * 16 * 65
    # mean keys (2 KV heads x 16 x bf16) + fp32 scores (one per block and KV head) read back + queries
    assert selection.bytes_read == 65 * 2 * 16 * 2 + 65 * 2 * 4 + 2 * 4 * 16 * 2
    assert selection.bytes_written == 65 * 2 * 4


def test_prefix_shared_read_reads_the_prompt_once_per_group():
    context = np.array([150.0, 160.0, 170.0, 180.0])
    batch = StepBatch(decode_context=context, shared_prefix=np.full(4, 100.0), group_index=np.zeros(4))
    shared = lower_step(TINY, DeploymentSpec(prefix_shared_read=True), DenseAttention(), batch)
    separate = lower_step(TINY, DeploymentSpec(), DenseAttention(), batch)
    tokens = (context + 1).sum()
    assert ops_by_name(separate)["attention_decode"].shape["kv_tokens_read"] == tokens
    assert ops_by_name(shared)["attention_decode"].shape["kv_tokens_read"] == tokens - 4 * 100 + 100


@given(context=st.integers(0, 200_000), top_k=st.integers(1, 256), local=st.integers(0, 512))
def test_block_topk_never_reads_more_than_dense(context, top_k, local):
    dims = AttentionDims(shard_heads(32, 8, 128, 1))
    policy = BlockTopKAttention(block_size=16, top_k=top_k, local_window=local)
    sparse = decode_attention_ops(dims, policy, np.array([float(context)]))[0]
    dense = decode_attention_ops(dims, DenseAttention(), np.array([float(context)]))[0]
    assert sparse.bytes_read <= dense.bytes_read
    if context + 1 > policy.token_budget:
        assert sparse.bytes_read < dense.bytes_read


def test_segment_of_steps_matches_steps_one_by_one():
    contexts = np.array([[10.0, 20.0], [11.0, 21.0], [12.0, 22.0]])
    segment = lower_step(TINY, DeploymentSpec(), DenseAttention(), StepBatch(decode_context=contexts))
    for i, row in enumerate(contexts):
        single = lower_step(TINY, DeploymentSpec(), DenseAttention(), decode_batch(row))
        assert segment.total("bytes")[i] == pytest.approx(single.total("bytes"), rel=1e-12)
        assert segment.total("flops")[i] == pytest.approx(single.total("flops"), rel=1e-12)


def test_moe_reads_only_experts_that_receive_tokens():
    moe_model = ModelSpec(name="tiny-moe", layers=1, hidden_size=64, attention_heads=4, kv_heads=2, head_dim=16,
                          intermediate_size=0, vocab_size=100,
                          moe=MoESpec(experts=8, active_experts=2, expert_intermediate_size=32))
    ops = ops_by_name(lower_step(moe_model, DeploymentSpec(), DenseAttention(), decode_batch([5.0])))
    # One token chooses 2 of 8 experts: expected experts touched 8 * (1 - (1 - 2/8)^1) = 2.
    experts = ops["moe_experts"]  # the routed experts, fused: 2 token-expert pairs
    assert experts.kernel == "moe" and experts.shape["experts"] == pytest.approx(2.0)
    assert experts.flops == 2 * 2 * (2 * 32) * 64 + 2 * 2 * 64 * 32  # gate/up then down GEMMs
    # weights of the 2 touched experts (3 x 32 x 64 each, bf16), and the pairs' activations: the input
    # gathered (64), gate/up out (2 x 32) and activation out (32) each written and read, the down GEMM's
    # output (64) written and read by the sum, which writes the token's 64 outputs
    assert experts.bytes_read == pytest.approx(2 * 3 * 32 * 64 * 2 + 2 * (2 * 64 + 3 * 32) * 2)
    assert experts.bytes_written == pytest.approx(2 * (64 + 3 * 32) * 2 + 1 * 64 * 2)


def test_expert_parallel_moe_computes_its_own_experts_and_all_reduces_without_all_to_all():
    moe_model = ModelSpec(name="tiny-moe", layers=1, hidden_size=64, attention_heads=4, kv_heads=2, head_dim=16,
                          intermediate_size=0, vocab_size=100,
                          moe=MoESpec(experts=8, active_experts=2, expert_intermediate_size=32, routing_skew=0.0))
    deployment = DeploymentSpec(tensor_parallel=2, expert_parallel=2)
    ops = ops_by_name(lower_step(moe_model, deployment, DenseAttention(), decode_batch([5.0, 5.0, 5.0])))
    # 3 tokens x 2 experts each, over 2 GPUs: 3 token-expert pairs per GPU, each at the expert's full width
    assert ops["moe_experts"].flops == 2 * 3 * (2 * 32) * 64 + 2 * 3 * 64 * 32
    assert ops["moe_experts"].shape["m"] == 3 and ops["moe_experts"].shape["n"] == 32
    # experts expected to receive one of 3 tokens, 8 (1 - (1 - 2/8)^3), half of them on this GPU
    assert ops["moe_experts"].shape["experts"] == pytest.approx(8 * (1 - 0.75 ** 3) / 2)
    # attention is split by heads: every GPU holds every token, so no all-to-all moves them; the partial
    # outputs are summed by one all-reduce of the 3 tokens' activations
    assert not any(name.startswith("alltoall") for name in ops)
    assert ops["allreduce_moe"].collective.bytes == 3 * 64 * 2 and ops["allreduce_moe"].collective.gpus == 2


def test_under_skewed_routing_the_gpu_of_the_popular_expert_sets_the_pace():
    # 2 experts, 1 choice, skew 1.2, one expert per GPU: whatever the placement, the busiest GPU holds the
    # popular expert, chosen with probability 1 / (1 + 2^-1.2) by each token
    moe_model = ModelSpec(name="tiny-moe", layers=1, hidden_size=64, attention_heads=4, kv_heads=2, head_dim=16,
                          intermediate_size=0, vocab_size=100,
                          moe=MoESpec(experts=2, active_experts=1, expert_intermediate_size=32, routing_skew=1.2))
    deployment = DeploymentSpec(tensor_parallel=2, expert_parallel=2)
    experts = ops_by_name(lower_step(moe_model, deployment, DenseAttention(), decode_batch([5.0] * 3)))["moe_experts"]
    popular = 1 / (1 + 2 ** -1.2)
    assert experts.shape["m"] == pytest.approx(3 * popular, rel=1e-12)  # its pairs, not half of all 3
    assert experts.shape["experts"] == pytest.approx(1 - (1 - popular) ** 3, rel=1e-12)
    assert experts.shape["pairs"] == 3  # the layer's pairs, sorted on every GPU


def test_skewed_routing_touches_fewer_experts():
    def experts_touched(experts, k, skew, tokens):
        moe = MoESpec(experts=experts, active_experts=k, expert_intermediate_size=32, routing_skew=skew)
        model = ModelSpec(name="tiny-moe", layers=1, hidden_size=64, attention_heads=4, kv_heads=2, head_dim=16,
                          intermediate_size=0, vocab_size=100, moe=moe)
        step = lower_step(model, DeploymentSpec(), DenseAttention(), decode_batch([5.0] * tokens))
        return ops_by_name(step)["moe_experts"].shape["experts"]

    # 8 experts, 2 choices, skew 1: rank i chosen with probability 2 (1/i) / H_8, H_8 = 761/280 (none capped)
    choose = [2 * (1 / i) / (761 / 280) for i in range(1, 9)]
    assert experts_touched(8, 2, 1.0, 3) == pytest.approx(sum(1 - (1 - p) ** 3 for p in choose), rel=1e-12)
    assert experts_touched(8, 2, 1.0, 3) < experts_touched(8, 2, 0.0, 3) == pytest.approx(8 * (1 - 0.75 ** 3))
    # 4 experts, 2 choices, skew 2: 2 / (1 + 1/4 + 1/9 + 1/16) = 1.40 for the first, so it is certain and the
    # other choice spreads over the rest: 1 / (1/4 + 1/9 + 1/16) per unit weight
    rest = 1 / (1 / 4 + 1 / 9 + 1 / 16)
    choose = [1.0, rest / 4, rest / 9, rest / 16]
    assert sum(choose) == pytest.approx(2.0)
    assert experts_touched(4, 2, 2.0, 5) == pytest.approx(sum(1 - (1 - p) ** 5 for p in choose), rel=1e-12)
    assert experts_touched(4, 2, 2.0, 1) == pytest.approx(2.0)  # one token touches its k experts
    assert experts_touched(4, 4, 1.2, 3) == 4.0  # every expert chosen by every token


def test_fp8_gemms_quantize_their_inputs_first():
    fp8 = ModelSpec(name="tiny-fp8", layers=2, hidden_size=64, attention_heads=4, kv_heads=2, head_dim=16,
                    intermediate_size=128, vocab_size=100, weight_dtype="fp8")
    step = lower_step(fp8, DeploymentSpec(), DenseAttention(), decode_batch([10, 20]))
    names = [op.name for op in step.ops]
    ops = ops_by_name(step)
    t = 2
    # one quantization kernel right before each fp8 GEMM of the layers, over the GEMM's input elements
    for gemm, elements in (("qkv_proj", t * 64), ("o_proj", t * 4 * 16), ("mlp_gate_up", t * 64),
                           ("mlp_down", t * 128)):
        quant = ops[f"{gemm}_quant"]
        assert names.index(f"{gemm}_quant") == names.index(gemm) - 1
        assert quant.bytes_read == elements * 2 and quant.bytes_written == elements * 1  # bf16 in, fp8 out
        assert quant.kernel == "elementwise" and quant.count == 2  # every layer
    assert "lm_head_quant" not in ops  # the LM head stays bf16 in fp8 checkpoints
    assert ops["lm_head"].bytes_read == 100 * 64 * 2 + t * 64 * 2  # bf16 weights, not fp8
    assert ops["qkv_proj"].bytes_read == 128 * 64 * 1 + t * 64 * 2  # the layers' weights in fp8
    bf16 = lower_step(TINY, DeploymentSpec(), DenseAttention(), decode_batch([10, 20]))
    assert not any(op.name.endswith("_quant") for op in bf16.ops)


def test_nvfp4_gemms_quantize_their_inputs_to_nine_sixteenths_of_a_byte():
    # NVFP4: 4-bit elements and an fp8 scale per 16, 0.5 + 1/16 bytes an element; W4A4 quantizes the input too
    nvfp4 = ModelSpec(name="tiny-nvfp4", layers=2, hidden_size=64, attention_heads=4, kv_heads=2, head_dim=16,
                      intermediate_size=128, vocab_size=100, weight_dtype="nvfp4")
    ops = ops_by_name(lower_step(nvfp4, DeploymentSpec(), DenseAttention(), decode_batch([10, 20])))
    t = 2
    assert ops["qkv_proj_quant"].bytes_written == t * 64 * 9 / 16
    assert ops["qkv_proj"].bytes_read == 128 * 64 * 9 / 16 + t * 64 * 2
    assert ops["lm_head"].dtype == "bf16" and "lm_head_quant" not in ops
    assert nvfp4.weight_bytes == nvfp4.params_total * 9 / 16


def test_fp8_kv_cache_quantizes_the_query_before_attention():
    # vLLM's FlashAttention backend quantizes the query to fp8 when the KV cache is fp8 (FA3 takes one type)
    fp8kv = ModelSpec(name="tiny-fp8kv", layers=2, hidden_size=64, attention_heads=4, kv_heads=2, head_dim=16,
                      intermediate_size=128, vocab_size=100, kv_dtype="fp8")
    batch = StepBatch(decode_context=np.array([10.0, 20.0]), prefill=(PrefillChunk(tokens=5, cached=0),))
    step = lower_step(fp8kv, DeploymentSpec(), DenseAttention(), batch)
    names = [op.name for op in step.ops]
    quant = ops_by_name(step)["attention_q_quant"]
    elements = (2 + 5) * 4 * 16  # every token of the step (2 decode rows, 5 prompt tokens) x q heads x head dim
    assert quant.bytes_read == elements * 2 and quant.bytes_written == elements * 1
    assert quant.op_class == "attention" and quant.kernel == "elementwise" and quant.count == 2
    assert names.index("attention_q_quant") < names.index("attention_decode")
    bf16 = lower_step(TINY, DeploymentSpec(), DenseAttention(), batch)
    assert "attention_q_quant" not in [op.name for op in bf16.ops]


def test_fused_moe_work_pads_each_expert_to_whole_tiles_and_scans_every_pair():
    from kinsim.ops.kernel_work import GEMM_TILE_M, GEMM_TILE_N, MOE_LAUNCHES, kernel_work
    from kinsim.ops.layers import moe_experts_op

    # 100 pairs over 3 experts (34 rows each, one tile of 64), gate/up 2 x 96 = 192 wide: 2 tiles of 128
    op = moe_experts_op("moe_experts", 50.0, 100.0, 3.0, 96.0, 64.0, pairs=400.0, weight_dtype="bf16")
    work = kernel_work(op, 132)
    assert (GEMM_TILE_M, GEMM_TILE_N) == (64, 128)
    assert work.items == 3 * 1 * 2 and work.launches == MOE_LAUNCHES
    assert work.sequences == 400.0  # every pair of the layer, this GPU's experts' or not
    # 300 pairs over 3 experts: 100 rows each, two tiles of 64
    assert kernel_work(moe_experts_op("m", 50.0, 300.0, 3.0, 96.0, 64.0, pairs=400.0, weight_dtype="bf16"),
                       132).items == 3 * 2 * 2


def test_a_profile_without_moe_terms_prices_the_experts_as_gemms():
    from kinsim.hardware.spec import CalibrationSpec, KernelCurveSpec

    gemm = KernelCurveSpec(compute_max=0.8, memory_max=0.9, kernel_floor=2e-6)
    profile = CalibrationSpec(source="test", device="test", gemm=gemm)
    assert profile.curve_for("moe") is gemm
    moe = KernelCurveSpec(compute_max=0.7, memory_max=0.8, kernel_floor=8e-6)
    from dataclasses import replace
    assert replace(profile, moe=moe).curve_for("moe") is moe


def _decode_op(batch, q_heads, kv_heads, tokens):
    dims = AttentionDims(shard_heads(q_heads, kv_heads, 128, 1))
    return decode_attention_ops(dims, DenseAttention(), np.full(batch, float(tokens - 1)))[0]


def test_flash2_decode_never_splits_multi_head_attention():
    from kinsim.ops.kernel_work import IN_FLIGHT_TILE_KEYS, kernel_work

    op = _decode_op(batch=2, q_heads=8, kv_heads=8, tokens=4096)
    flash2 = kernel_work(op, 108, "flash2", "flash3")
    assert (flash2.items, flash2.combines, flash2.sequences) == (2 * 8, 0, 2)  # one block per (sequence, head)
    # FlashAttention-3 splits the 16 pairs to fill the SMs: min(ceil(108 / 16), 4096 / 128) = 7 ways
    flash3 = kernel_work(op, 108)
    assert (flash3.items, flash3.combines) == (16 * 7, 1)
    # one 128-key tile in flight against two stages of K and V tiles of 176 keys
    assert IN_FLIGHT_TILE_KEYS == {"flash3": 704, "flash2": 128}
    assert flash2.in_flight == 128 / 704 and flash3.in_flight == 1.0
    assert kernel_work(op, 108, "flash2", "flash2").in_flight == 1.0  # a profile fitted on FlashAttention-2
    assert kernel_work(op, 108, "flash3", "flash2").in_flight == 704 / 128


def test_flash2_decode_splits_grouped_queries_by_its_full_heuristic():
    from kinsim.ops.kernel_work import kernel_work

    # 8 KV heads of 4 query heads: 8 row blocks (4 rows each, under 64), 8,192 tokens = 64 blocks of 128 keys,
    # 2 x 108 = 216 slots. Split counts that change the blocks per split: 1-8, 10, 11, 13, 16, 22, 32, 64;
    # wave efficiency 8 s / 216 up to 27 splits, so 22 is the best (0.815) and no smaller eligible count
    # reaches 85% of it (16: 0.593); 32 (1.19 waves: 0.593) and 64 (2.37 waves: 0.79) are worse
    op = _decode_op(batch=1, q_heads=32, kv_heads=8, tokens=8192)
    work = kernel_work(op, 108, "flash2")
    assert (work.items, work.combines) == (8 * 22, 1)
    # 176 row blocks fill 80% of the 216 slots: no split
    wide = kernel_work(_decode_op(batch=22, q_heads=32, kv_heads=8, tokens=8192), 108, "flash2")
    assert (wide.items, wide.combines) == (22 * 8, 0)
    # the same as arrays (one entry per step of a segment)
    steps = decode_attention_ops(AttentionDims(shard_heads(32, 8, 128, 1)), DenseAttention(),
                                 np.array([[8191.0], [8191.0]]))[0]
    assert list(kernel_work(steps, 108, "flash2").items) == [176.0, 176.0]
