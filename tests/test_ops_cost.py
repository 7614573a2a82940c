"""Operators and their costs: FLOPs and bytes checked by hand, roofline properties, collectives, the
Kinetics closed forms and the ``kinsim op`` command."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import kinsim
from kinsim.cli import main
from kinsim.cost import RooflineCost, kinetics_block_topk_cost, kinetics_dense_cost, price_step
from kinsim.cost.collectives import collective_terms, group_bandwidth
from kinsim.cost.kinetics import intensity
from kinsim.model.spec import ModelSpec
from kinsim.ops.attention import AttentionDims, PrefillChunk, decode_attention_ops
from kinsim.ops.layers import collective_op, gemm_op
from kinsim.ops.lower import StepBatch, decode_batch, lower_step
from kinsim.ops.op import Collective, Op
from kinsim.ops.sharding import HeadShard
from kinsim.workload.spec import BlockTopKAttention, DenseAttention, DeploymentSpec

from .conftest import HARDWARE, WORKLOADS

# The roofline and alpha-beta collectives with the hardware files' constants, worked by hand here (the
# calibrated kernel model, which the shipped files reference: tests/test_kernel_model.py).
H100 = kinsim.load_hardware(HARDWARE / "h100.yaml", {"calibration": None})
MI300X = kinsim.load_hardware(HARDWARE / "mi300x.yaml", {"calibration": None})
QWEN = kinsim.load_model("Qwen3-8B")
TINY = ModelSpec(name="tiny", layers=2, hidden_size=64, attention_heads=4, kv_heads=2, head_dim=16,
                 intermediate_size=128, vocab_size=100)
# Tiny model, bf16 everywhere: hq=4, hkv=2, d=16, h=64, I=128, V=100, 2 bytes per element.
HQ, HKV, D, H, I_MLP, V, B = 4, 2, 16, 64, 128, 100, 2
TINY_DIMS = AttentionDims(HeadShard(HQ, HKV, D, 1))
ROOF = RooflineCost(H100)
MIB16 = 16 * 2**20


def ops_by_name(step) -> dict[str, Op]:
    return {op.name: op for op in step.ops}


def gemm_bytes(m, n, k):
    """(read, written) of an m x k by k x n bf16 GEMM: weights n k, input m k, output m n."""
    return n * k * B + m * k * B, m * n * B


def run_cli(capsys, *argv: str):
    code = main(["op", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def decode_kv_bytes(policy, contexts) -> float:
    return decode_attention_ops(TINY_DIMS, policy, np.asarray(contexts, dtype=float))[0].bytes_read


# ----------------------------------------------------------------------------- 1. FLOPs and bytes


def test_tiny_decode_step_by_hand():
    ops = ops_by_name(lower_step(TINY, DeploymentSpec(), DenseAttention(), decode_batch([10, 20])))
    t = 2  # one token per decoding sequence
    qkv = ops["qkv_proj"]
    assert qkv.flops == 2 * 2 * (4 + 2 * 2) * 16 * 64
    assert (qkv.bytes_read, qkv.bytes_written) == gemm_bytes(t, (HQ + 2 * HKV) * D, H)
    assert qkv.bytes_read == 128 * 64 * 2 + 2 * 64 * 2 and qkv.bytes_written == 2 * 128 * 2
    att = ops["attention_decode"]
    assert att.kernel == "attention_decode"
    assert att.flops == 4 * 4 * 16 * (11 + 21)  # 4 hq d x tokens attended (context + 1)
    q_bytes = HQ * D * B  # one query (or output) row
    assert att.bytes_read == 2 * 2 * 16 * 2 * (11 + 21) + 2 * q_bytes  # KV read + the queries
    assert att.bytes_written == 2 * (q_bytes + 2 * HKV * D * B)  # outputs + the new tokens' K and V
    assert att.shape["kv_tokens_read"] == 32
    o = ops["o_proj"]
    assert o.flops == 2 * t * H * (HQ * D) and (o.bytes_read, o.bytes_written) == gemm_bytes(t, H, HQ * D)
    up, down = ops["mlp_gate_up"], ops["mlp_down"]
    assert up.flops == 2 * 2 * 256 * 64  # gate and up side by side: n = 2 I = 256
    assert (up.bytes_read, up.bytes_written) == (256 * 64 * 2 + 2 * 64 * 2, 2 * 256 * 2)
    assert down.flops == 2 * 2 * 64 * 128 and (down.bytes_read, down.bytes_written) == gemm_bytes(t, H, I_MLP)
    act = ops["mlp_act"]  # reads gate and up (2 x t x I), writes t x I
    assert (act.bytes_read, act.bytes_written) == (2 * t * I_MLP * B, t * I_MLP * B)
    lm = ops["lm_head"]
    assert lm.flops == 2 * 2 * 100 * 64 and (lm.bytes_read, lm.bytes_written) == gemm_bytes(2, V, H)
    sampling = ops["sampling"]  # three fp32 passes over 2 x 100 logits
    assert (sampling.bytes_read, sampling.bytes_written) == (2 * 200 * 4, 200 * 4)
    for name in ("input_norm", "qkv_proj", "rope", "attention_decode", "o_proj", "post_attention_norm",
                 "mlp_gate_up", "mlp_act", "mlp_down"):
        assert ops[name].count == TINY.layers
    for name in ("embedding", "final_norm", "lm_head", "sampling"):
        assert ops[name].count == 1
    assert "qk_norm" not in ops and not any(op.collective for op in ops.values())


def test_a_qk_norm_over_all_heads_all_reduces_each_tokens_sums_under_tensor_parallelism():
    # MiniMax-M2's QK norm (qk_norm_type: per_layer) normalizes a token's queries over all 4 heads and its keys
    # over both KV heads; on 2 GPUs each holds 2 query heads and 1 KV head, so each sums the squares of its
    # (2 + 1) x 16 elements a token, the two GPUs all-reduce the two fp32 sums (8 bytes a token), then normalize
    per_layer = ModelSpec(**{**TINY.__dict__, "qk_norm": True, "qk_norm_type": "per_layer"})
    t = 3
    ops = ops_by_name(lower_step(per_layer, DeploymentSpec(tensor_parallel=2), DenseAttention(),
                                 decode_batch([10, 20, 30])))
    sums, reduce, norm = ops["qk_norm_sums"], ops["allreduce_qk_norm"], ops["qk_norm"]
    assert (sums.bytes_read, sums.bytes_written) == (t * 3 * D * B, t * 8)
    assert (reduce.collective.kind, reduce.collective.bytes, reduce.collective.gpus) == ("allreduce", t * 8, 2)
    assert (norm.bytes_read, norm.bytes_written) == (t * 3 * D * B, t * 3 * D * B)
    assert sums.count == reduce.count == norm.count == TINY.layers
    names = [op.name for op in lower_step(per_layer, DeploymentSpec(tensor_parallel=2), DenseAttention(),
                                          decode_batch([10, 20, 30])).ops]
    assert names.index("qk_norm_sums") < names.index("allreduce_qk_norm") < names.index("qk_norm")
    # one GPU holds every head: nothing to reduce; a per-head norm (Qwen3) never reduces
    alone = ops_by_name(lower_step(per_layer, DeploymentSpec(), DenseAttention(), decode_batch([10, 20, 30])))
    assert "qk_norm" in alone and "qk_norm_sums" not in alone and "allreduce_qk_norm" not in alone
    per_head = ModelSpec(**{**TINY.__dict__, "qk_norm": True})
    split = ops_by_name(lower_step(per_head, DeploymentSpec(tensor_parallel=2), DenseAttention(),
                                   decode_batch([10, 20, 30])))
    assert "qk_norm" in split and "allreduce_qk_norm" not in split
    # its weights: one per dimension of all heads, (4 + 2) x 16, against a per-head norm's 2 x 16
    assert per_layer.attention_params_per_layer - per_head.attention_params_per_layer == (HQ + HKV) * D - 2 * D


def test_tiny_prefill_chunk_by_hand():
    batch = StepBatch(prefill=(PrefillChunk(tokens=200, cached=0),))
    ops = ops_by_name(lower_step(TINY, DeploymentSpec(), DenseAttention(), batch))
    att = ops["attention_prefill"]
    assert att.flops == 4 * HQ * D * (200 * 201 / 2)  # causal: row i attends i keys
    # two 128-row tiles read the KV up to rows 128 and 200, the re-read from L2: 200 keys from HBM; the
    # cache write reads the 200 new K and V, attention the 200 queries
    kv_per_token = 2 * HKV * D * B
    assert att.bytes_read == kv_per_token * 200 + (kv_per_token + HQ * D * B) * 200
    assert att.bytes_written == (HQ * D * B + kv_per_token) * 200
    assert ops["qkv_proj"].flops == 2 * 200 * (HQ + 2 * HKV) * D * H
    assert ops["lm_head"].shape["m"] == 1  # only the completed prompt needs logits


def test_prefill_after_cached_tokens():
    batch = StepBatch(prefill=(PrefillChunk(tokens=200, cached=50),))
    att = ops_by_name(lower_step(TINY, DeploymentSpec(), DenseAttention(), batch))["attention_prefill"]
    assert att.flops == 4 * HQ * D * (200 * 50 + 200 * 201 / 2)
    assert att.bytes_read == 2 * HKV * D * B * (50 + 200) + (2 * HKV * D * B + HQ * D * B) * 200


# ----------------------------------------------------------------------------- 2. block top-k


BLOCK = BlockTopKAttention(block_size=16, top_k=4, local_window=32, sink_tokens=4)  # budget 64+32+4 = 100


def test_block_topk_decode_by_hand():
    contexts = [50, 99, 100, 500]
    att, sel = decode_attention_ops(TINY_DIMS, BLOCK, np.array(contexts, dtype=float))
    tokens = [min(c + 1, 4 * 16 + 32 + 4) for c in contexts]
    assert tokens == [51, 100, 100, 100]
    assert att.kernel == "attention_sparse"
    assert att.flops == 4 * HQ * D * sum(tokens)
    assert att.bytes_read == 2 * HKV * D * B * sum(tokens) + 4 * HQ * D * B
    blocks = 50 // 16 + 99 // 16 + 100 // 16 + 500 // 16
    assert blocks == 3 + 6 + 6 + 31 and sel.shape["blocks_scored"] == blocks
    assert sel.flops == 2 * HQ * D * blocks
    # mean key per block (hkv d b), fp32 scores summed over a group, written and read back (4 hkv each),
    # the 4 queries
    assert sel.bytes_read == HKV * D * B * blocks + 4 * HKV * blocks + 4 * HQ * D * B
    assert sel.bytes_written == 4 * HKV * blocks


budgets = st.builds(BlockTopKAttention, block_size=st.integers(1, 64), top_k=st.integers(1, 64),
                    local_window=st.integers(0, 256), sink_tokens=st.integers(0, 16))


@settings(max_examples=200, deadline=None)
@given(contexts=st.lists(st.integers(0, 20_000), min_size=1, max_size=8), policy=budgets)
def test_block_topk_never_reads_more_than_dense(contexts, policy):
    dense, sparse = decode_kv_bytes(DenseAttention(), contexts), decode_kv_bytes(policy, contexts)
    assert sparse <= dense
    if any(c + 1 > policy.token_budget for c in contexts):
        assert sparse < dense


# ----------------------------------------------------------------------------- 3. shared prompt


def test_prefix_shared_read():
    contexts = [150, 160, 170, 180]
    batch = StepBatch(decode_context=np.array(contexts, dtype=float), shared_prefix=np.full(4, 100.0),
                      group_index=np.zeros(4, dtype=int))
    shared = ops_by_name(lower_step(TINY, DeploymentSpec(prefix_shared_read=True), DenseAttention(), batch))
    plain = ops_by_name(lower_step(TINY, DeploymentSpec(), DenseAttention(), batch))
    tokens = sum(c + 1 for c in contexts) - 4 * 100 + 100  # the prompt read once for the group
    assert shared["attention_decode"].shape["kv_tokens_read"] == tokens == 364
    saved = 2 * HKV * D * B * (4 * 100 - 100)
    assert plain["attention_decode"].bytes_read - shared["attention_decode"].bytes_read == saved
    assert shared["attention_decode"].flops == plain["attention_decode"].flops  # every key still attended


# ----------------------------------------------------------------------------- 4. properties


@settings(max_examples=50, deadline=None)
@given(low=st.integers(500, 20_000), extra=st.integers(0, 20_000), m=st.integers(1, 32),
       context=st.integers(0, 50_000))
def test_more_bandwidth_never_slows_memory_bound_ops(low, extra, m, context):
    slow = RooflineCost(kinsim.with_overrides(H100, {"gpu.memory.bandwidth": f"{low} GB/s"}))
    fast = RooflineCost(kinsim.with_overrides(H100, {"gpu.memory.bandwidth": f"{low + extra} GB/s"}))
    for op in (gemm_op("g", m, 4096, 4096, weight_dtype="bf16"),
               *decode_attention_ops(TINY_DIMS, DenseAttention(), np.full(4, float(context)))):
        assert fast.op_cost(op).time_s <= slow.op_cost(op).time_s


@settings(max_examples=50, deadline=None)
@given(contexts=st.lists(st.integers(0, 30_000), min_size=1, max_size=6), extra=st.integers(0, 5_000),
       which=st.integers(0, 5))
def test_more_context_never_cheaper(contexts, extra, which):
    longer = list(contexts)
    longer[which % len(longer)] += extra
    for model in (TINY, QWEN):
        short = price_step(lower_step(model, DeploymentSpec(), DenseAttention(), decode_batch(contexts)), ROOF)
        long = price_step(lower_step(model, DeploymentSpec(), DenseAttention(), decode_batch(longer)), ROOF)
        assert long.time_s >= short.time_s
        attention = {p.op.name: p.cost.time_s for p in long.priced}["attention_decode"]
        assert attention >= {p.op.name: p.cost.time_s for p in short.priced}["attention_decode"]


@settings(max_examples=100, deadline=None)
@given(flops=st.floats(0, 1e15), read=st.floats(0, 1e12), written=st.floats(0, 1e12),
       kernel=st.sampled_from(["gemm", "attention_decode", "attention_prefill", "attention_sparse",
                               "selection", "elementwise"]), dtype=st.sampled_from(["bf16", "fp8", "fp32"]))
def test_roofline_time_at_least_each_term(flops, read, written, kernel, dtype):
    cost = ROOF.op_cost(Op("x", "other", kernel, dtype, flops=flops, bytes_read=read, bytes_written=written))
    assert cost.time_s >= max(cost.compute_s, cost.memory_s)
    assert cost.time_s == pytest.approx(max(cost.compute_s, cost.memory_s) + H100.gpu.launch_overhead)


# ----------------------------------------------------------------------------- 5. Qwen3-8B


def test_qwen3_8b_batch1_decode_is_weight_and_kv_bound():
    step = lower_step(QWEN, DeploymentSpec(), DenseAttention(), decode_batch([1000]))
    cost = price_step(step, ROOF)
    compute = sum(p.op.count * p.cost.compute_s for p in cost.priced)
    memory = sum(p.op.count * p.cost.memory_s for p in cost.priced)
    assert memory > 10 * compute  # batch 1: about 2 FLOPs per weight byte, far below the ridge (~295)
    # Batch 1 decode streams every weight once and the sequence's KV (1001 tokens) once, at HBM
    # bandwidth times the GEMM memory efficiency; activations, norms and launches are small change. The
    # embedding table is not streamed (only the token's row is gathered), so the bytes read are
    # weight_bytes less (vocab - 1) x hidden x 2; the pricing should land within 10% of either estimate.
    kv = 1001 * QWEN.kv_bytes_per_token
    efficiency = H100.efficiency.gemm_memory
    assert H100.gpu.memory.bandwidth == 3.35e12
    naive = (QWEN.weight_bytes + kv) / (3.35e12 * efficiency)
    streamed = (QWEN.weight_bytes - (QWEN.vocab_size - 1) * QWEN.hidden_size * 2 + kv) / (3.35e12 * efficiency)
    assert cost.time_s == pytest.approx(naive, rel=0.10)
    assert cost.time_s == pytest.approx(streamed, rel=0.10)


# ----------------------------------------------------------------------------- 6. vectorised pricing


@pytest.mark.parametrize("policy", [DenseAttention(), BLOCK], ids=["dense", "block_topk"])
@pytest.mark.parametrize("tp", [1, 2])
def test_vectorised_pricing_equals_scalar(policy, tp):
    contexts = np.array([[100, 2000, 15], [101, 2001, 16], [4000, 9000, 300]], dtype=float)
    deployment = DeploymentSpec(tensor_parallel=tp)
    whole = price_step(lower_step(QWEN, deployment, policy, decode_batch(contexts)), ROOF)
    assert np.shape(whole.time_s) == (3,)
    for row, time_s in zip(contexts, whole.time_s):
        single = price_step(lower_step(QWEN, deployment, policy, decode_batch(row)), ROOF)
        assert time_s == pytest.approx(single.time_s, rel=1e-12)


# ----------------------------------------------------------------------------- 7. collectives


@pytest.mark.parametrize("p", [2, 4, 8])
def test_collective_traffic_factors(p):
    nbytes = float(MIB16)
    ring = collective_terms(Collective("allreduce", nbytes, p), H100, "ring")
    assert (ring.link_bytes, ring.hops) == (2 * (p - 1) / p * nbytes, 2 * (p - 1))
    tree = collective_terms(Collective("allreduce", nbytes, p), H100, "tree")
    assert (tree.link_bytes, tree.hops) == (2 * nbytes, 2 * math.ceil(math.log2(p)))
    gather = collective_terms(Collective("allgather", nbytes, p), H100)
    assert (gather.link_bytes, gather.hops) == ((p - 1) / p * nbytes, p - 1)
    assert ring.bandwidth == 450e9  # NVSwitch: one port each way, whatever the group size


def test_one_gpu_collective_is_free():
    terms = collective_terms(Collective("allreduce", float(MIB16), 1), H100)
    assert (terms.link_bytes, terms.hops) == (0.0, 0)
    assert ROOF.op_cost(collective_op("ar", "allreduce", float(MIB16), 1)).time_s == 0.0


def test_full_mesh_bandwidth():
    assert group_bandwidth(MI300X, 4)[0] == pytest.approx(448e9 * 3 / 7)  # 3 of a GPU's 7 links
    assert group_bandwidth(MI300X, 8)[0] == pytest.approx(448e9)


# ----------------------------------------------------------------------------- 8. Kinetics


def test_kinetics_dense_closed_form():
    n, l_in, l_out, i = 32, 150, 10_000, intensity(H100)
    p, d, r = QWEN.params_active, QWEN.kv_elements_per_token, 4
    assert QWEN.gqa_ratio == r and i == 989e12 / 3.35e12
    cost = kinetics_dense_cost(QWEN, n, l_in, l_out, i)
    expected = (2 * n * p * l_out + 2 * r * n * l_in * d * l_out + r * n * d * l_out**2
                + i * (2 * l_in * d * l_out + n * d * l_out**2))
    assert cost.eflops == pytest.approx(expected, rel=1e-12)
    assert cost.linear_flops == pytest.approx(2 * n * p * l_out, rel=1e-12)


def test_kinetics_block_topk_closed_forms():
    n, l_in, l_out, i, block = 32, 150, 10_000, intensity(H100), 16
    d, r, b = QWEN.kv_elements_per_token, 4, 2
    context = l_in * l_out + l_out**2 / 2
    huge = kinetics_block_topk_cost(QWEN, n, l_in, l_out, i, budget=l_in + l_out, block_size=block)
    assert huge.attention_flops == pytest.approx(2 * r * d * n * context, rel=1e-12)
    dense = kinetics_dense_cost(QWEN, n, l_in, l_out, i)
    assert huge.attention_flops == pytest.approx(dense.attention_flops, rel=1e-12)
    small = kinetics_block_topk_cost(QWEN, n, l_in, l_out, i, budget=100, block_size=block)
    assert small.kv_bytes == pytest.approx(b * n * d * 100 * l_out, rel=1e-12)
    assert small.selection_bytes == pytest.approx(b / 2 * n * d * context / block, rel=1e-12)
    assert small.selection_flops == pytest.approx(r * n * d * context / block, rel=1e-12)


# ----------------------------------------------------------------------------- 9. CLI


HW_ARGS = ("--hw", str(HARDWARE / "h100.yaml"))
DECODE = ("decode_attention", *HW_ARGS, "--batch", "8", "--kv-len", "4096", "--heads", "32",
          "--kv-heads", "8")


def test_cli_gemm_json(capsys):
    code, out, _ = run_cli(capsys, "gemm", *HW_ARGS, "--m", "4096", "--n", "4096", "--k", "4096", "--json")
    result = json.loads(out)
    assert code == 0 and result["flops"] == 2 * 4096**3 and result["bound"] == "compute"


def test_cli_decode_attention_json(capsys):
    code, out, _ = run_cli(capsys, *DECODE, "--json")
    result = json.loads(out)
    assert code == 0
    assert {"time_s", "flops", "bytes", "bound", "compute_s", "memory_s"} <= set(result)
    assert result["flops"] == 4 * 32 * 128 * 8 * 4097 and result["bound"] == "memory"


def test_cli_shapes_csv(capsys, tmp_path):
    csv_file = tmp_path / "shapes.csv"
    csv_file.write_text("batch,kv_len\n1,100\n4,2000\n2,50\n", encoding="utf-8")
    code, out, _ = run_cli(capsys, "decode_attention", *HW_ARGS, "--heads", "32", "--kv-heads", "8",
                           "--shapes", str(csv_file), "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and len(rows) == 3
    assert [(r["params"]["batch"], r["params"]["kv_len"]) for r in rows] == [(1, 100), (4, 2000), (2, 50)]


@pytest.mark.parametrize("argv, flag", [
    (("decode_attention", *HW_ARGS, "--batch=-4", "--kv-len", "10", "--heads", "32", "--kv-heads", "8"),
     "--batch"),
    (("decode_attention", *HW_ARGS, "--batch", "1", "--kv-len", "10", "--heads", "0", "--kv-heads", "8"),
     "--heads"),
    ((*DECODE[:-1], "6"), "--kv-heads"),
    ((*DECODE, "--tp", "3"), "--tp"),
    ((*DECODE, "--dtype", "fp9"), "--dtype"),
])
def test_cli_bad_shapes(capsys, argv, flag):
    code, out, err = run_cli(capsys, *argv)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and flag in err


def test_cli_bad_csv_row_names_line_and_column(capsys, tmp_path):
    csv_file = tmp_path / "shapes.csv"
    csv_file.write_text("batch,kv_len,heads,kv_heads\n1,100,32,8\n1,100,32,6\n", encoding="utf-8")
    code, _, err = run_cli(capsys, "decode_attention", *HW_ARGS, "--shapes", str(csv_file), "--json")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "line 3.kv_heads" in err


def test_cli_allreduce(capsys):
    code, out, _ = run_cli(capsys, "allreduce", *HW_ARGS, "--bytes", "16MiB", "--gpus", "8", "--json")
    result = json.loads(out)
    assert code == 0 and result["network_s"] > 0
    assert result["link_bytes"] in (pytest.approx(2 * MIB16), pytest.approx(2 * 7 / 8 * MIB16))


def test_cli_step_attention_dominates_at_long_context(capsys):
    code, out, _ = run_cli(capsys, "step", *HW_ARGS, "--workload", str(WORKLOADS / "aime_bon32.yaml"),
                           "--batch-size", "64", "--context", "16384", "--json")
    result = json.loads(out)
    assert code == 0 and result["by_class"]["attention"] > result["by_class"]["linear"]


def test_cli_too_many_gpus_names_the_flag(capsys):
    code, _, err = run_cli(capsys, "allreduce", *HW_ARGS, "--bytes", "1MiB", "--gpus", "9")
    assert code == 2 and "--gpus: more GPUs than h100 has (8), got 9" in err


def test_cli_too_many_gpus_in_csv_names_the_line(capsys, tmp_path):
    csv_file = tmp_path / "shapes.csv"
    csv_file.write_text("bytes,gpus\n1MiB,2\n1MiB,9\n", encoding="utf-8")
    code, _, err = run_cli(capsys, "allreduce", *HW_ARGS, "--shapes", str(csv_file))
    assert code == 2 and "shapes.csv: line 3.gpus: more GPUs" in err
